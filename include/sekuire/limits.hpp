// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_LIMITS_HPP
#define SEKUIRE_LIMITS_HPP

/// @file
/// The allowed ranges of every duration and size option, in one place: the options of the
/// beacon, the worker and the SDK are checked against them at construction, and the
/// environment (`SEKUIRE_*`) and the command-line tools accept the same ranges.

#include <sekuire/error.hpp>
#include <sekuire/retry.hpp>
#include <sekuire/transport.hpp>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

namespace sekuire {

/// A closed range of durations, `[min, max]`.
struct duration_range {
    /// The smallest value allowed.
    std::chrono::milliseconds min;
    /// The largest value allowed.
    std::chrono::milliseconds max;
};

/// A closed range of counts or sizes, `[min, max]`.
struct size_range {
    /// The smallest value allowed.
    std::size_t min;
    /// The largest value allowed.
    std::size_t max;
};

/// The allowed ranges of the options (checked at construction: `errc::invalid_option`).
namespace limits {
using std::chrono::milliseconds;
using namespace std::chrono_literals;

/// `heartbeat_interval` of a beacon (also `SEKUIRE_HEARTBEAT_INTERVAL`, in seconds).
inline constexpr duration_range heartbeat_interval{1s, 24h};
/// `heartbeat_interval` of a worker.
inline constexpr duration_range worker_heartbeat_interval{1s, 24h};
/// `request_timeout`: the time limit of one request.
inline constexpr duration_range request_timeout{100ms, 10min};
/// `stop_timeout` of a beacon: the time limit of the final heartbeat.
inline constexpr duration_range stop_timeout{0ms, 10min};
/// `start_timeout`: how long `start()` waits for the first authentication.
inline constexpr duration_range start_timeout{0ms, 1h};
/// `startup_jitter` (also `SEKUIRE_STARTUP_JITTER`, in seconds).
inline constexpr duration_range startup_jitter{0ms, 5min};
/// `handler_timeout` of a worker.
inline constexpr duration_range handler_timeout{1ms, 24h};
/// `drain_timeout` of a worker.
inline constexpr duration_range drain_timeout{0ms, 24h};
/// `stream_idle_timeout` of a worker.
inline constexpr duration_range stream_idle_timeout{1s, 24h};
/// `backoff.base`.
inline constexpr duration_range backoff_base{1ms, 1h};
/// `backoff.cap` (and at least `backoff.base`).
inline constexpr duration_range backoff_cap{1ms, 24h};
/// `transport.connect_timeout`.
inline constexpr duration_range connect_timeout{1ms, 10min};
/// `max_concurrent_handlers` of a worker.
inline constexpr size_range max_concurrent_handlers{1, 4096};
/// `max_queued_tasks` of a worker.
inline constexpr size_range max_queued_tasks{1, 10000000};
/// `max_pending_results` of a worker.
inline constexpr size_range max_pending_results{1, 10000000};
/// `handler_threads` of an SDK (0: chosen from the hardware).
inline constexpr size_range handler_threads{0, 4096};
/// `transport.max_response_size`.
inline constexpr size_range max_response_size{1024, std::size_t(1) << 30};
/// `transport.max_idle_connections`.
inline constexpr size_range max_idle_connections{0, 4096};
} // namespace limits

namespace detail {

// "90 s", "1500 ms": a duration as the user wrote it, in its own unit when it is seconds
// or milliseconds (never converted, so that seconds::max() prints without overflow).
template <class Rep, class Period>
std::string describe_duration(std::chrono::duration<Rep, Period> d) {
    if constexpr (std::is_same<Period, std::ratio<1>>::value) {
        return std::to_string(d.count()) + " s";
    } else if constexpr (std::is_same<Period, std::milli>::value) {
        return std::to_string(d.count()) + " ms";
    } else {
        return std::to_string(std::chrono::duration_cast<std::chrono::duration<double, std::milli>>(d).count()) + " ms";
    }
}

inline std::string describe_limit(std::chrono::milliseconds d) {
    const auto c = d.count();
    if (c != 0 && c % 3600000 == 0) return std::to_string(c / 3600000) + " h";
    if (c != 0 && c % 60000 == 0) return std::to_string(c / 60000) + " min";
    if (c % 1000 == 0) return std::to_string(c / 1000) + " s";
    return std::to_string(c) + " ms";
}

/// Whether `d` lies in `r`, compared in `d`'s own unit (a range bound is rounded inwards),
/// so that no conversion of a huge user value can overflow.
template <class Rep, class Period>
bool in_range(std::chrono::duration<Rep, Period> d, const duration_range& r) noexcept {
    using D = std::chrono::duration<Rep, Period>;
    return d >= std::chrono::ceil<D>(r.min) && d <= std::chrono::floor<D>(r.max);
}

/// Checks one duration option; on failure sets `ec` to `errc::invalid_option` and `what` to
/// "<owner> option <name> must be from <min> to <max> (got <value>)". Keeps a first failure.
template <class Rep, class Period>
void check_option(const char* owner, const char* name, std::chrono::duration<Rep, Period> d, const duration_range& r,
                  error_code& ec, std::string& what) {
    if (ec || in_range(d, r)) return;
    ec = errc::invalid_option;
    what = std::string(owner) + " option " + name + " must be from " + describe_limit(r.min) + " to " +
           describe_limit(r.max) + " (got " + describe_duration(d) + ")";
}

/// Checks one count or size option (see the duration overload).
inline void check_option(const char* owner, const char* name, std::size_t v, const size_range& r, error_code& ec,
                         std::string& what) {
    if (ec || (v >= r.min && v <= r.max)) return;
    ec = errc::invalid_option;
    what = std::string(owner) + " option " + name + " must be from " + std::to_string(r.min) + " to " +
           std::to_string(r.max) + " (got " + std::to_string(v) + ")";
}

/// Checks backoff options: base and cap in their ranges, cap at least base, a finite factor
/// from 1 to 16, a floor fraction from 0 to 1.
inline void check_backoff(const char* owner, const backoff_options& b, error_code& ec, std::string& what) {
    check_option(owner, "backoff.base", b.base, limits::backoff_base, ec, what);
    check_option(owner, "backoff.cap", b.cap, limits::backoff_cap, ec, what);
    if (ec) return;
    auto fail = [&](const std::string& m) {
        ec = errc::invalid_option;
        what = std::string(owner) + " option " + m;
    };
    if (b.cap < b.base)
        fail("backoff.cap must be at least backoff.base (got " + describe_duration(b.cap) + " < " +
             describe_duration(b.base) + ")");
    else if (!(b.factor >= 1.0 && b.factor <= 16.0))
        fail("backoff.factor must be from 1 to 16 (got " + std::to_string(b.factor) + ")");
    else if (!(b.min_fraction >= 0.0 && b.min_fraction <= 1.0))
        fail("backoff.min_fraction must be from 0 to 1 (got " + std::to_string(b.min_fraction) + ")");
}

/// Checks the settings of a network transport.
inline void check_transport_options(const char* owner, const transport_options& t, error_code& ec, std::string& what) {
    check_option(owner, "transport.connect_timeout", t.connect_timeout, limits::connect_timeout, ec, what);
    check_option(owner, "transport.max_response_size", t.max_response_size, limits::max_response_size, ec, what);
    check_option(owner, "transport.max_idle_connections", t.max_idle_connections, limits::max_idle_connections, ec,
                 what);
}

/// Throws `sekuire::error` with `what` when `ec` is set.
inline void throw_invalid_option(const error_code& ec, const std::string& what) {
    if (ec) throw error(ec, what);
}

} // namespace detail
} // namespace sekuire

#endif
