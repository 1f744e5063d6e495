// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_POLICY_GATEWAY_HPP
#define SEKUIRE_POLICY_GATEWAY_HPP

/// @file
/// The policy gateway: capability allow and deny patterns, and sliding per-minute and
/// per-hour rate limits, decided before a task handler runs (protocol.md section 6.4).

#include <sekuire/clock.hpp>
#include <sekuire/protocol.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sekuire {

/// Whether `capability` matches `pattern`: exactly, or by prefix when the pattern ends in
/// `*` (`google:docs:*` matches `google:docs:read`; `*` matches everything).
inline bool capability_matches(std::string_view pattern, std::string_view capability) noexcept {
    if (!pattern.empty() && pattern.back() == '*') {
        const auto prefix = pattern.substr(0, pattern.size() - 1);
        return capability.substr(0, prefix.size()) == prefix;
    }
    return pattern == capability;
}

/// What the gateway decided about one task.
struct admission {
    bool allowed = true;
    /// `capability_denied` or `rate_limited` when refused.
    protocol::task_error code = protocol::task_error::capability_denied;
    /// Why, readable (names the pattern or the limit).
    std::string reason;
};

/** Enforces the active policy of a workspace before task handlers run.

    A cheap handle: copies share one state, so a worker and the SDK that owns it see the
    same policy and the same rate-limit windows.

    Rules (protocol.md section 6.4): a capability matching a `denied_tools` pattern is
    refused; when `allowed_tools` is non-empty, a capability matching none of its patterns
    is refused; then the rate limits: a task is refused when the tasks accepted in the
    sliding minute (or hour) before it reach `max_per_minute` (or `max_per_hour`). Only
    accepted tasks count. An acceptance at steady time t counts against decisions made
    before t + 60 s (t + 1 h): the window is half-open. Without a policy everything is
    allowed.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class policy_gateway {
public:
    /// A gateway that allows everything until a policy is set.
    policy_gateway() : state_(std::make_shared<state>()) {}

    /// A gateway enforcing `policy`.
    explicit policy_gateway(protocol::policy_document policy) : policy_gateway() { set_policy(std::move(policy)); }

    /// Decides about a task for `capability` at steady time `now`, counting it when
    /// accepted.
    admission admit(std::string_view capability, steady_time_point now) {
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
            if (limits.max_per_minute && count_since(accepted, now, minute) >= as_count(*limits.max_per_minute))
                return {false, protocol::task_error::rate_limited,
                        "rate limit of " + std::to_string(*limits.max_per_minute) + " tasks per minute reached"};
            if (limits.max_per_hour && count_since(accepted, now, hour) >= as_count(*limits.max_per_hour))
                return {false, protocol::task_error::rate_limited,
                        "rate limit of " + std::to_string(*limits.max_per_hour) + " tasks per hour reached"};
            // Kept sorted even if callers on several threads pass times slightly out of order.
            accepted.insert(std::upper_bound(accepted.begin(), accepted.end(), now), now);
        }
        return {};
    }

    /// Replaces the policy (the rate-limit windows keep their history).
    void set_policy(protocol::policy_document policy) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->policy = std::move(policy);
    }

    /// The hash of the active policy (empty without one).
    std::string policy_hash() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->policy ? state_->policy->hash : std::string();
    }

    /// The active policy, if any.
    std::optional<protocol::policy_document> policy() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->policy;
    }

    /** Called with the `active_policy_hash` of a heartbeat response; true when the policy
        must be fetched again (the hash differs from the active policy's).
    */
    bool on_heartbeat_response(const std::optional<std::string>& active_policy_hash) const {
        if (!active_policy_hash) return false;
        std::lock_guard<std::mutex> lock(state_->mutex);
        return !state_->policy || state_->policy->hash != *active_policy_hash;
    }

private:
    static constexpr steady_time_point::duration minute = std::chrono::minutes(1);
    static constexpr steady_time_point::duration hour = std::chrono::hours(1);

    static std::size_t as_count(std::int64_t limit) noexcept { return limit < 0 ? 0 : static_cast<std::size_t>(limit); }

    // Accepted tasks in the half-open window (now - window, now].
    static std::size_t count_since(const std::deque<steady_time_point>& accepted, steady_time_point now,
                                   steady_time_point::duration window) {
        // Sorted by time: the entries after now - window are the ones that count.
        const auto first = std::upper_bound(accepted.begin(), accepted.end(), now - window);
        return static_cast<std::size_t>(accepted.end() - first);
    }

    struct state {
        std::mutex mutex;
        std::optional<protocol::policy_document> policy;
        std::deque<steady_time_point> accepted;
    };
    std::shared_ptr<state> state_;
};

} // namespace sekuire

#endif
