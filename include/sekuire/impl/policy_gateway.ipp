// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_IMPL_POLICY_GATEWAY_IPP
#define SEKUIRE_IMPL_POLICY_GATEWAY_IPP

// The out-of-line members of policy_gateway.hpp: included by the header (header-only) or by
// <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/policy_gateway.hpp>

namespace sekuire {

struct default_policy_gateway::state {
    std::mutex mutex;
    std::optional<protocol::policy_document> policy;
    std::deque<steady_time_point> accepted;
};

namespace detail {

inline std::size_t as_count(std::int64_t limit) noexcept { return limit < 0 ? 0 : static_cast<std::size_t>(limit); }

// Accepted tasks in the half-open window (now - window, now].
inline std::size_t count_accepted_since(const std::deque<steady_time_point>& accepted, steady_time_point now,
                               steady_time_point::duration window) {
    // Sorted by time: the entries after now - window are the ones that count.
    const auto first = std::upper_bound(accepted.begin(), accepted.end(), now - window);
    return static_cast<std::size_t>(accepted.end() - first);
}

} // namespace detail

SEKUIRE_DECL default_policy_gateway::default_policy_gateway() : state_(std::make_shared<state>()) {}

SEKUIRE_DECL default_policy_gateway::default_policy_gateway(protocol::policy_document policy) : default_policy_gateway() {
    set_policy(std::move(policy));
}

SEKUIRE_DECL admission default_policy_gateway::admit(std::string_view capability, steady_time_point now) {
    std::lock_guard<std::mutex> lock(state_->mutex);
    const auto& p = state_->policy;
    if (!p) return {};
    for (const auto& pattern : p->denied_tools)
        if (capability_matches(pattern, capability))
            return {false, protocol::task_error::capability_denied,
                    "capability '" + std::string(capability) + "' is denied by pattern '" + pattern + "'"};
    if (!p->allowed_tools.empty()) {
        bool any = false;
        for (const auto& pattern : p->allowed_tools)
            if (capability_matches(pattern, capability)) any = true;
        if (!any)
            return {false, protocol::task_error::capability_denied,
                    "capability '" + std::string(capability) + "' is not in the allowed list"};
    }
    const auto& limits = p->rate_limits;
    if (limits.max_per_minute || limits.max_per_hour) {
        auto& accepted = state_->accepted;
        // Forget what no window can see any more.
        const auto keep = limits.max_per_hour ? hour : minute;
        while (!accepted.empty() && accepted.front() + keep <= now) accepted.pop_front();
        if (limits.max_per_minute && detail::count_accepted_since(accepted, now, minute) >= detail::as_count(*limits.max_per_minute))
            return {false, protocol::task_error::rate_limited,
                    "rate limit of " + std::to_string(*limits.max_per_minute) + " tasks per minute reached"};
        if (limits.max_per_hour && detail::count_accepted_since(accepted, now, hour) >= detail::as_count(*limits.max_per_hour))
            return {false, protocol::task_error::rate_limited,
                    "rate limit of " + std::to_string(*limits.max_per_hour) + " tasks per hour reached"};
        // Kept sorted even if callers on several threads pass times slightly out of order.
        accepted.insert(std::upper_bound(accepted.begin(), accepted.end(), now), now);
    }
    return {};
}

SEKUIRE_DECL void default_policy_gateway::set_policy(protocol::policy_document policy) {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->policy = std::move(policy);
}

SEKUIRE_DECL std::string default_policy_gateway::policy_hash() const {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->policy ? state_->policy->hash : std::string();
}

SEKUIRE_DECL std::optional<protocol::policy_document> default_policy_gateway::policy() const {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->policy;
}

SEKUIRE_DECL bool default_policy_gateway::on_heartbeat_response(const std::optional<std::string>& active_policy_hash) const {
    if (!active_policy_hash) return false;
    std::lock_guard<std::mutex> lock(state_->mutex);
    return !state_->policy || state_->policy->hash != *active_policy_hash;
}

SEKUIRE_DECL policy_gateway::policy_gateway() : policy_gateway(default_policy_gateway{}) {}

SEKUIRE_DECL policy_gateway::policy_gateway(protocol::policy_document policy)
    : policy_gateway(default_policy_gateway(std::move(policy))) {}

} // namespace sekuire

#endif
