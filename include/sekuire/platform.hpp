// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_PLATFORM_HPP
#define SEKUIRE_PLATFORM_HPP

/// @file
/// The PlatformProbe policy: what the agent runs on (protocol.md section 7).
///
/// @par Requirements
/// A type `P` is a PlatformProbe when, for `p` an lvalue of `P`:
///
/// | expression  | type            | semantics |
/// |-------------|-----------------|-----------|
/// | `P(p)`      |                 | copyable |
/// | `p.probe()` | `platform_info` | detects the platform; called once when a beacon is built (a worker bootstrapping on its own sends `worker_options::platform`), never throws for a platform it cannot read (unknown values are omitted) |
///
/// The default is `auto_probe`; tests use `testing::fixed_probe`.

#include <sekuire/config.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace sekuire {

/** Platform metadata sent in bootstrap and heartbeat requests (protocol.md section 7).

    `type` is one of `kubernetes`, `lambda`, `docker`, `bare_metal`. `attributes` holds the
    string-valued keys in the order they are sent (`pod_name`, `namespace`, `node`,
    `function_name`, `region`, `container_id`, `image`, `hostname`, `os`, `arch`); values
    that could not be found are absent, never invented. `pid` is sent as a number.
*/
struct platform_info {
    /// The platform type (`protocol::platform::type_*`).
    std::string type = "bare_metal";
    /// The string-valued keys and their values, in the order sent.
    std::vector<std::pair<std::string, std::string>> attributes;
    /// The process id, when known.
    std::optional<std::int64_t> pid;

    /// The value of attribute `key`, or null.
    const std::string* find(std::string_view key) const noexcept {
        for (const auto& kv : attributes)
            if (kv.first == key) return &kv.second;
        return nullptr;
    }

    /// Sets attribute `key` (replacing an earlier value).
    void set(std::string key, std::string value) {
        for (auto& kv : attributes)
            if (kv.first == key) {
                kv.second = std::move(value);
                return;
            }
        attributes.emplace_back(std::move(key), std::move(value));
    }

    /// True when type, attributes (in order) and pid are equal.
    friend bool operator==(const platform_info& a, const platform_info& b) {
        return a.type == b.type && a.attributes == b.attributes && a.pid == b.pid;
    }
    /// True when they differ.
    friend bool operator!=(const platform_info& a, const platform_info& b) { return !(a == b); }
};

namespace detail {
template <class T, class = void>
struct probe_has_probe : std::false_type {};
template <class T>
struct probe_has_probe<T, std::void_t<decltype(std::declval<T&>().probe())>>
    : std::is_same<decltype(std::declval<T&>().probe()), platform_info> {};
} // namespace detail

/// True when `T` meets the PlatformProbe requirements.
template <class T>
struct is_platform_probe
    : std::bool_constant<std::is_copy_constructible<T>::value && detail::probe_has_probe<T>::value> {};

/// Instantiating this names every PlatformProbe requirement that `T` misses.
template <class T>
struct check_platform_probe {
    static_assert(std::is_copy_constructible<T>::value,
                  "PlatformProbe requirements not met: T must be copy constructible");
    static_assert(detail::probe_has_probe<T>::value,
                  "PlatformProbe requirements not met: missing `platform_info probe()`");
    /// Always true: naming it instantiates the checks above.
    static constexpr bool value = true;
};

#if SEKUIRE_HAS_CONCEPTS
/// The PlatformProbe requirements as a C++20 concept. The macro below names it in a template head of
/// your own (`template <SEKUIRE_... T>`), and is plain `class` before C++20.
template <class T>
concept platform_probe_policy = is_platform_probe<T>::value;
/// Names `platform_probe_policy` in a template head of your own:
/// `template <SEKUIRE_PLATFORM_PROBE T>`. Plain `class` before C++20.
#define SEKUIRE_PLATFORM_PROBE ::sekuire::platform_probe_policy
#else
#define SEKUIRE_PLATFORM_PROBE class
#endif

} // namespace sekuire

#endif
