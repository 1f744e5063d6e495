// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_POLICY_GATEWAY_HPP
#define SEKUIRE_POLICY_GATEWAY_HPP

/// @file
/// The policy gateway: capability allow and deny patterns, and sliding per-minute and
/// per-hour rate limits, decided before a task handler runs (protocol.md section 6.4).
/// `policy_gateway` holds any gateway meeting the PolicyGateway requirements
/// (`is_policy_gateway`); `default_policy_gateway` is the one sekuire ships.

#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
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
#include <type_traits>
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
    /// True when the task may run.
    bool allowed = true;
    /// `capability_denied` or `rate_limited` when refused.
    protocol::task_error code = protocol::task_error::capability_denied;
    /// Why, readable (names the pattern or the limit).
    std::string reason;
};

/** The policy gateway sekuire ships: enforces the active policy of a workspace before
    task handlers run. `policy_gateway` holds one unless you give it your own.

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
class default_policy_gateway {
public:
    /// A gateway that allows everything until a policy is set.
    SEKUIRE_DECL default_policy_gateway();

    /// A gateway enforcing `policy`.
    SEKUIRE_DECL explicit default_policy_gateway(protocol::policy_document policy);

    /// Decides about a task for `capability` at steady time `now`, counting it when
    /// accepted.
    SEKUIRE_DECL admission admit(std::string_view capability, steady_time_point now);

    /// Replaces the policy (the rate-limit windows keep their history).
    SEKUIRE_DECL void set_policy(protocol::policy_document policy);

    /// The hash of the active policy (empty without one).
    SEKUIRE_DECL std::string policy_hash() const;

    /// The active policy, if any.
    SEKUIRE_DECL std::optional<protocol::policy_document> policy() const;

    /** Called with the `active_policy_hash` of a heartbeat response; true when the policy
        must be fetched again (the hash differs from the active policy's).
    */
    SEKUIRE_DECL bool on_heartbeat_response(const std::optional<std::string>& active_policy_hash) const;

private:
    static constexpr steady_time_point::duration minute = std::chrono::minutes(1);
    static constexpr steady_time_point::duration hour = std::chrono::hours(1);

    struct state;
    std::shared_ptr<state> state_;
};

namespace detail {

template <class T, class = void>
struct gateway_has_admit : std::false_type {};
template <class T>
struct gateway_has_admit<T, std::void_t<decltype(std::declval<T&>().admit(std::declval<std::string_view>(),
                                                                          std::declval<steady_time_point>()))>>
    : std::is_convertible<decltype(std::declval<T&>().admit(std::declval<std::string_view>(),
                                                            std::declval<steady_time_point>())),
                          admission> {};

template <class T, class = void>
struct gateway_has_set_policy : std::false_type {};
template <class T>
struct gateway_has_set_policy<T, std::void_t<decltype(std::declval<T&>().set_policy(std::declval<protocol::policy_document>()))>>
    : std::true_type {};

template <class T, class = void>
struct gateway_has_policy_hash : std::false_type {};
template <class T>
struct gateway_has_policy_hash<T, std::void_t<decltype(std::declval<const T&>().policy_hash())>>
    : std::is_convertible<decltype(std::declval<const T&>().policy_hash()), std::string> {};

template <class T, class = void>
struct gateway_has_on_heartbeat_response : std::false_type {};
template <class T>
struct gateway_has_on_heartbeat_response<
    T, std::void_t<decltype(std::declval<T&>().on_heartbeat_response(std::declval<const std::optional<std::string>&>()))>>
    : std::is_convertible<decltype(std::declval<T&>().on_heartbeat_response(
                              std::declval<const std::optional<std::string>&>())),
                          bool> {};

template <class T, class = void>
struct gateway_has_policy : std::false_type {};
template <class T>
struct gateway_has_policy<T, std::void_t<decltype(std::declval<const T&>().policy())>>
    : std::is_convertible<decltype(std::declval<const T&>().policy()), std::optional<protocol::policy_document>> {};

} // namespace detail

/** True when `T` meets the PolicyGateway requirements: for `g` an lvalue of `T`,

    | expression | type | semantics |
    |---|---|---|
    | `T(g)` | | copyable; copies share one state (the worker and the SDK hold copies) |
    | `g.admit(capability, now)` | `admission` | decides about one task before its handler runs (`std::string_view`, steady time); counts it when accepted |
    | `g.set_policy(doc)` | | takes the workspace's active policy (`protocol::policy_document`) |
    | `g.policy_hash()` | `std::string` | the hash of the policy in force (empty without one) |
    | `g.on_heartbeat_response(hash)` | `bool` | given a heartbeat's `active_policy_hash` (`const std::optional<std::string>&`): true when the policy must be fetched again |

    Optional: `g.policy()` returning `std::optional<protocol::policy_document>`. Every
    member may be called from several threads at once. `default_policy_gateway` meets
    them; see docs/concepts/policy_gateway.md.
*/
template <class T>
struct is_policy_gateway
    : std::bool_constant<std::is_copy_constructible<T>::value && detail::gateway_has_admit<T>::value &&
                         detail::gateway_has_set_policy<T>::value && detail::gateway_has_policy_hash<T>::value &&
                         detail::gateway_has_on_heartbeat_response<T>::value> {};

/// Instantiating this names every PolicyGateway requirement that `T` misses.
template <class T>
struct check_policy_gateway {
    static_assert(std::is_copy_constructible<T>::value,
                  "PolicyGateway requirements not met: T must be copy constructible (a handle to shared state)");
    static_assert(detail::gateway_has_admit<T>::value,
                  "PolicyGateway requirements not met: missing `admission admit(std::string_view, steady_time_point)`");
    static_assert(detail::gateway_has_set_policy<T>::value,
                  "PolicyGateway requirements not met: missing `void set_policy(protocol::policy_document)`");
    static_assert(detail::gateway_has_policy_hash<T>::value,
                  "PolicyGateway requirements not met: missing `std::string policy_hash() const`");
    static_assert(detail::gateway_has_on_heartbeat_response<T>::value,
                  "PolicyGateway requirements not met: missing `bool on_heartbeat_response(const "
                  "std::optional<std::string>&)`");
    /// Always true: naming it instantiates the checks above.
    static constexpr bool value = true;
};

#if SEKUIRE_HAS_CONCEPTS
/// The PolicyGateway requirements as a C++20 concept. The macro below names it in a template head of
/// your own (`template <SEKUIRE_... T>`), and is plain `class` before C++20.
template <class T>
concept policy_gateway_policy = is_policy_gateway<T>::value;
/// Names `policy_gateway_policy` in a template head of your own:
/// `template <SEKUIRE_POLICY_GATEWAY T>`. Plain `class` before C++20.
#define SEKUIRE_POLICY_GATEWAY ::sekuire::policy_gateway_policy
#else
#define SEKUIRE_POLICY_GATEWAY class
#endif

/** The policy gateway of a worker (`worker_options::gateway`, the seed's `policyGateway`): a
    cheap handle to any PolicyGateway, by default a new `default_policy_gateway`.

    Bring your own (your own allow rules, a limiter shared across processes) by assigning
    it: `options.gateway = my_gateway{...};`. Its requirements are checked when it is
    assigned, one `static_assert` per member (see `is_policy_gateway`). Copies share the
    gateway they hold.

    @par Thread Safety
    As thread-safe as the gateway it holds (the PolicyGateway requirements ask for it).
*/
class policy_gateway {
public:
    /// Holds a new `default_policy_gateway` (everything allowed until a policy is set).
    SEKUIRE_DECL policy_gateway();

    /// Holds a new `default_policy_gateway` enforcing `policy`.
    SEKUIRE_DECL explicit policy_gateway(protocol::policy_document policy);

    /// Holds `gateway` (a copy, which shares its state).
    template <class Gateway, class = std::enable_if_t<!std::is_same<std::decay_t<Gateway>, policy_gateway>::value>>
    policy_gateway(Gateway gateway) { // NOLINT: implicit on purpose, as the seed's option
        static_assert(check_policy_gateway<Gateway>::value, "");
        impl_ = std::make_shared<model<Gateway>>(std::move(gateway));
    }

    /// See the PolicyGateway requirements.
    admission admit(std::string_view capability, steady_time_point now) { return impl_->admit(capability, now); }
    /// See the PolicyGateway requirements.
    void set_policy(protocol::policy_document policy) { impl_->set_policy(std::move(policy)); }
    /// See the PolicyGateway requirements.
    std::string policy_hash() const { return impl_->policy_hash(); }
    /// See the PolicyGateway requirements.
    bool on_heartbeat_response(const std::optional<std::string>& active_policy_hash) const {
        return impl_->on_heartbeat_response(active_policy_hash);
    }
    /// The policy in force, when the held gateway can tell (`policy()` is optional).
    std::optional<protocol::policy_document> policy() const { return impl_->policy(); }

private:
    struct concept_t {
        virtual ~concept_t() = default;
        virtual admission admit(std::string_view capability, steady_time_point now) = 0;
        virtual void set_policy(protocol::policy_document policy) = 0;
        virtual std::string policy_hash() const = 0;
        virtual bool on_heartbeat_response(const std::optional<std::string>& hash) = 0;
        virtual std::optional<protocol::policy_document> policy() const = 0;
    };
    template <class Gateway>
    struct model final : concept_t {
        explicit model(Gateway g) : gateway(std::move(g)) {}
        admission admit(std::string_view capability, steady_time_point now) override { return gateway.admit(capability, now); }
        void set_policy(protocol::policy_document policy) override { gateway.set_policy(std::move(policy)); }
        std::string policy_hash() const override { return gateway.policy_hash(); }
        bool on_heartbeat_response(const std::optional<std::string>& hash) override {
            return gateway.on_heartbeat_response(hash);
        }
        std::optional<protocol::policy_document> policy() const override {
            if constexpr (detail::gateway_has_policy<Gateway>::value) {
                return gateway.policy();
            } else {
                return std::nullopt;
            }
        }
        Gateway gateway;
    };
    std::shared_ptr<concept_t> impl_;
};

} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/impl/policy_gateway.ipp>
#endif

#endif
