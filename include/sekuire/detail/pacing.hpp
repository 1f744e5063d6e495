// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_PACING_HPP
#define SEKUIRE_DETAIL_PACING_HPP

// The pacing rules of docs/protocol.md as plain functions of their inputs: when the next
// heartbeat goes out (regular, directed by the backend, after a failure), how a server's
// wait is bounded by the lease, and when the task stream reconnects. No clock is read and
// nothing is remembered here: the caller passes the time, the jitter draw and the counts.

#include <sekuire/protocol.hpp>
#include <sekuire/retry.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

namespace sekuire {
namespace detail {
namespace pacing {

using ms = std::chrono::milliseconds;

/// Failed heartbeats back off up to this many heartbeat intervals (then the lease bounds
/// them, while there is one).
inline constexpr int heartbeat_backoff_intervals = 4;

/// The task stream never reconnects sooner than this after a connection ends.
inline constexpr ms min_stream_reconnect_delay{1000};
/// A connection that stayed open this long was healthy: its end resets the backoff.
inline constexpr ms stream_healthy_after{protocol::timing::stream_keepalive};
/// The longest a refused stream honours `Retry-After` (the worker heartbeat still runs
/// meanwhile, and the next refusal can ask again).
inline constexpr ms max_stream_retry_after{std::chrono::minutes(5)};

/// The delay of a regular beat: the interval, up to 10% early by the draw `u` in [0, 1), so
/// that a fleet started together drifts apart.
inline ms regular_delay(ms interval, double u) noexcept {
    const double early = clamp_unit(u) * 0.1 * static_cast<double>(interval.count());
    return interval - ms(static_cast<std::int64_t>(early));
}

/// The latest a heartbeat retry may wait while the lease has `lease_left` to run, so that
/// the retry still renews it: one request timeout before the expiry. Nullopt when no lease
/// bounds the wait (none known, lost, or less than a request timeout left: then the lease
/// is lost whatever the retry does, and the failure backoff alone paces it).
inline std::optional<ms> lease_bound(std::optional<ms> lease_left, ms request_timeout) noexcept {
    if (!lease_left || *lease_left <= request_timeout) return std::nullopt;
    return *lease_left - request_timeout;
}

/** The wait before retrying a failed heartbeat.

    `failures` counts consecutive failures, this one included (1 for the first). The wait
    is drawn with full jitter under a ceiling that starts at half the interval and doubles
    with each failure up to `heartbeat_backoff_intervals` intervals, so a fleet sends fewer
    heartbeats while its backend struggles, never more. A server's `Retry-After` is a
    minimum. Whatever the draw or the server asks, the wait ends before the lease is lost
    (`lease_bound`), or within `heartbeat_backoff_intervals` intervals when no lease is
    held, so a kill switch always reaches the agent; and it is never below the protocol's
    `min_heartbeat_delay`.
*/
inline ms heartbeat_retry_delay(unsigned failures, ms interval, double u, double min_fraction,
                                std::optional<ms> retry_after, std::optional<ms> lease_left,
                                ms request_timeout) noexcept {
    backoff_options o;
    o.base = std::max(interval / 2, ms(1));
    o.factor = 2.0;
    o.cap = interval * heartbeat_backoff_intervals;
    const unsigned attempt = failures == 0 ? 0 : std::min(failures - 1, 62u);
    const ms ceiling = backoff_ceiling(o, attempt);
    const double fraction = std::clamp(min_fraction > 0.0 ? min_fraction : 0.0, 0.0, 1.0);
    ms delay = std::max(full_jitter(ceiling, u), ms(static_cast<std::int64_t>(fraction * static_cast<double>(ceiling.count()))));
    if (retry_after) delay = std::max(delay, *retry_after);
    const std::optional<ms> latest = lease_bound(lease_left, request_timeout);
    delay = std::min(delay, latest ? *latest : o.cap);
    return std::max<ms>(delay, protocol::timing::min_heartbeat_delay);
}

/** The delay of a beat the backend directed with `next_heartbeat_at`, `ahead` from the
    backend's now (negative when already past), or nullopt when the direction is not
    believed (further in the past than one interval, or more than a day ahead). A time
    just passed (a slow answer) means as soon as allowed. The result is at least
    `min_heartbeat_delay` and at most the lease (`lease_left`, when known).
*/
inline std::optional<ms> directed_delay(ms ahead, ms interval, std::optional<ms> lease_left) noexcept {
    std::optional<ms> d;
    if (ahead.count() < 0) {
        if (ahead >= -interval) d = protocol::timing::min_heartbeat_delay;
    } else if (ahead <= ms(std::chrono::hours(24))) {
        d = ahead;
    }
    if (!d) return d;
    d = std::max<ms>(*d, protocol::timing::min_heartbeat_delay);
    if (lease_left) d = std::min(*d, std::max<ms>(*lease_left, protocol::timing::min_heartbeat_delay));
    return d;
}

/// What ended a connection of the task stream, for `stream_reconnect`.
struct stream_end {
    /// How long the connection stayed open (0 when it never opened).
    ms open_for{0};
    /// The stream's last `retry:` value, when it sent one.
    std::optional<ms> retry_field;
    /// `Retry-After` of a refused stream (429, 503 ...), when it sent one.
    std::optional<ms> retry_after;
};

/** The wait before the next connection of the task stream, given how the last one ended;
    `stream_backoff` counts the failures and is reset here when the connection was healthy.

    A connection open for `stream_healthy_after` resets the backoff; anything shorter counts
    as a failure, whatever it delivered, so that a backend (or proxy) cutting every
    connection after one event cannot drive a reconnect storm. The stream's `retry:` value
    sets the base of the backoff (within the floor and the cap); a `Retry-After` is a minimum, up to
    `max_stream_retry_after`. The result is never below `min_stream_reconnect_delay`.
*/
inline ms stream_reconnect(backoff& stream_backoff, const backoff_options& options, const stream_end& end, double u) {
    if (end.open_for >= stream_healthy_after) stream_backoff.reset();
    backoff_options o = options;
    const std::optional<ms> retry = end.retry_field ? std::optional<ms>(std::min(*end.retry_field, o.cap)) : std::nullopt;
    if (retry) o.base = std::max<ms>(*retry, min_stream_reconnect_delay);
    stream_backoff.set_options(o);
    ms delay = stream_backoff.next([u] { return u; });
    if (retry && stream_backoff.attempts() == 1) delay = std::max(delay, *retry);
    if (end.retry_after) delay = std::max(delay, std::min(*end.retry_after, max_stream_retry_after));
    return std::max(delay, min_stream_reconnect_delay);
}

} // namespace pacing
} // namespace detail
} // namespace sekuire

#endif
