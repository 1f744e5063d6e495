// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_RETRY_HPP
#define SEKUIRE_RETRY_HPP

/// @file
/// Retrying: exponential backoff with full jitter, `Retry-After` in both of its forms,
/// and the injectable random source that jitter draws from.

#include <sekuire/clock.hpp>
#include <sekuire/time.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>

namespace sekuire {

/** A source of uniformly distributed doubles in [0, 1), used for every jitter.

    Tests inject a deterministic one; `default_random_source()` seeds a generator from
    `std::random_device`. A value outside [0, 1) is clamped by its users.
*/
using random_source = std::function<double()>;

namespace detail {
// splitmix64: a small, fast generator with good statistical quality for jitter.
struct splitmix64 {
    std::uint64_t state;
    std::uint64_t next() noexcept {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
};

inline double clamp_unit(double u) noexcept {
    if (!(u >= 0.0)) return 0.0; // also catches NaN
    if (u >= 1.0) return std::nextafter(1.0, 0.0);
    return u;
}
} // namespace detail

/// A deterministic random source (for tests and reproducible runs). Thread-safe.
inline random_source make_random_source(std::uint64_t seed) {
    struct state {
        std::mutex mutex;
        detail::splitmix64 gen;
    };
    auto s = std::make_shared<state>();
    s->gen.state = seed;
    return [s]() {
        std::lock_guard<std::mutex> lock(s->mutex);
        return static_cast<double>(s->gen.next() >> 11) * (1.0 / 9007199254740992.0);
    };
}

/// A random source seeded from `std::random_device`. Thread-safe.
inline random_source default_random_source() {
    std::random_device rd;
    const std::uint64_t seed = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    return make_random_source(seed);
}

/** Parameters of exponential backoff (protocol.md section 0: base 1 s, factor 2, cap 60 s).

    Delays are drawn with full jitter from [floor, ceiling], where the ceiling of attempt n
    is `min(cap, base * factor^n)` and the floor is `min_fraction` of it. The default
    floor of a tenth keeps an unlucky (or stuck) random source from retrying in a busy
    loop while leaving the spread of full jitter; 0 gives the textbook [0, ceiling].
*/
struct backoff_options {
    /// The ceiling of the first attempt.
    std::chrono::milliseconds base{1000};
    /// The ceiling grows by this factor per attempt (below 1 counts as 1).
    double factor = 2.0;
    /// The ceiling never exceeds this.
    std::chrono::milliseconds cap{60000};
    /// The floor, as a fraction of the ceiling (0: full jitter down to 0).
    double min_fraction = 0.1;
};

/** The largest delay of attempt `attempt` (0-based): `min(cap, base * factor^attempt)`.

    A factor below 1 (or NaN) counts as 1; a base or cap that is not positive gives 0.
*/
inline std::chrono::milliseconds backoff_ceiling(const backoff_options& o, unsigned attempt) noexcept {
    if (o.base.count() <= 0 || o.cap.count() <= 0) return std::chrono::milliseconds(0);
    const double factor = o.factor >= 1.0 ? o.factor : 1.0; // NaN fails the comparison
    const double raw = static_cast<double>(o.base.count()) * std::pow(factor, static_cast<double>(attempt));
    // Converted to an integer only below the cap: near milliseconds::max() the double
    // reaches 2^63, which no int64 holds.
    if (!(raw < static_cast<double>(o.cap.count()))) return o.cap;
    return std::min(std::chrono::milliseconds(static_cast<std::int64_t>(raw)), o.cap);
}

/** Full jitter: a delay drawn uniformly from [0, ceiling] with `u` in [0, 1).

    `u` outside [0, 1) is clamped (NaN counts as 0); a ceiling that is not positive gives 0.
*/
inline std::chrono::milliseconds full_jitter(std::chrono::milliseconds ceiling, double u) noexcept {
    if (ceiling.count() <= 0) return std::chrono::milliseconds(0);
    // ceiling + 1 in double: in integers it overflows at milliseconds::max().
    const double v = detail::clamp_unit(u) * (static_cast<double>(ceiling.count()) + 1.0);
    if (!(v < static_cast<double>(ceiling.count()))) return ceiling;
    return std::chrono::milliseconds(static_cast<std::int64_t>(v));
}

/** Exponential backoff with full jitter: each `next()` draws from [floor(n), ceiling(n)]
    (see `backoff_options`) and counts the attempt; `reset()` after a success.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Unsafe.
*/
class backoff {
public:
    /// A backoff with parameters `o` and no attempt counted.
    explicit backoff(backoff_options o = {}) noexcept : options_(o) {}

    /// The delay before the next attempt, in [floor, ceiling] (see `backoff_options`),
    /// drawn with `rnd` (an empty source draws the midpoint, 0.5); counts the attempt.
    std::chrono::milliseconds next(const random_source& rnd) {
        const auto ceiling = backoff_ceiling(options_, attempts_);
        if (attempts_ < 64) ++attempts_;
        const double fraction = options_.min_fraction > 0.0 ? std::min(options_.min_fraction, 1.0) : 0.0;
        const auto floor = std::chrono::milliseconds(
            static_cast<std::int64_t>(fraction * static_cast<double>(ceiling.count())));
        return std::max(full_jitter(ceiling, rnd ? rnd() : 0.5), floor);
    }

    /// The ceiling the next `next()` will draw under.
    std::chrono::milliseconds ceiling() const noexcept { return backoff_ceiling(options_, attempts_); }

    /// Forgets the failures (after a success).
    void reset() noexcept { attempts_ = 0; }

    /// Failures counted since the last reset.
    unsigned attempts() const noexcept { return attempts_; }

    /// The parameters.
    const backoff_options& options() const noexcept { return options_; }
    /// Changes the parameters; the attempts counted so far stay.
    void set_options(const backoff_options& o) noexcept { options_ = o; }

private:
    backoff_options options_;
    unsigned attempts_ = 0;
};

/// The longest `Retry-After` honoured (a day); larger values are clamped to it.
inline constexpr std::chrono::milliseconds max_retry_after{std::chrono::hours(24)};

/** Parses a `Retry-After` value: delay-seconds (ASCII digits) or an HTTP date, which is
    turned into a delay from `now` (a date in the past is a zero delay). Anything else is
    `nullopt`. Delays are clamped to `max_retry_after`.
*/
inline std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                                  wall_time_point now) noexcept {
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (value.empty()) return std::nullopt;
    if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        std::int64_t secs = 0;
        for (char c : value) {
            secs = secs * 10 + (c - '0');
            if (secs > max_retry_after.count() / 1000) return max_retry_after;
        }
        return std::chrono::milliseconds(secs * 1000);
    }
    const auto when = parse_http_date(value);
    if (!when) return std::nullopt;
    // In seconds: two representable instants far apart can overflow a nanosecond difference.
    const auto when_s = std::chrono::duration_cast<std::chrono::seconds>(when->time_since_epoch()).count();
    const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    if (when_s <= now_s) return std::chrono::milliseconds(0);
    const std::int64_t delta_s = when_s - now_s;
    if (delta_s > max_retry_after.count() / 1000) return max_retry_after;
    return std::chrono::milliseconds(delta_s * 1000);
}

} // namespace sekuire

#endif
