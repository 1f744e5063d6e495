// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TIME_HPP
#define SEKUIRE_TIME_HPP

/// @file
/// RFC 3339 timestamps (the protocol's time format) and HTTP dates (`Retry-After`, `Date`).
///
/// All functions are pure and thread-safe; parsers never throw and reject anything that is
/// not a valid date (`2026-02-30`), out of range, or representable only with overflow.

#include <sekuire/config.hpp>
#include <sekuire/clock.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sekuire {

namespace detail {

inline bool is_leap_year(std::int64_t y) noexcept { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

SEKUIRE_DECL int days_in_month(std::int64_t y, int m) noexcept;

// Days since 1970-01-01 of a proleptic Gregorian date. The arithmetic treats March as the
// first month so that the leap day falls at the end of the year (the method of H. Hinnant,
// "chrono-Compatible Low-Level Date Algorithms").
SEKUIRE_DECL std::int64_t days_from_civil(std::int64_t y, int m, int d) noexcept;

struct civil_date {
    std::int64_t year;
    int month;
    int day;
};

SEKUIRE_DECL civil_date civil_from_days(std::int64_t z) noexcept;

// Seconds since the epoch to a time_point, refusing what the clock cannot represent.
SEKUIRE_DECL std::optional<wall_time_point> make_time_point(std::int64_t seconds, std::int64_t nanos) noexcept;

SEKUIRE_DECL bool parse_digits(std::string_view s, std::size_t pos, std::size_t n, int& out) noexcept;

SEKUIRE_DECL std::optional<wall_time_point> from_fields(std::int64_t year, int month, int day, int hour, int minute, int second, std::int64_t nanos, std::int64_t offset_seconds) noexcept;

SEKUIRE_DECL void append_padded(std::string& out, std::int64_t v, int width);

struct split_time {
    civil_date date;
    int hour, minute, second;
    std::int64_t millis;
    std::int64_t days;
};

SEKUIRE_DECL split_time split(wall_time_point t) noexcept;

// `hh:mm:ss`, shared by RFC 3339 and HTTP dates.
SEKUIRE_DECL void append_clock_time(std::string& out, const split_time& p);

inline constexpr const char* month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
inline constexpr const char* day_names[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
inline constexpr const char* long_day_names[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                                 "Friday", "Saturday", "Sunday"};

SEKUIRE_DECL int month_from_name(std::string_view s) noexcept;

// Parses an RFC 3339 date-time into seconds since the epoch (any four-digit year fits)
// and nanoseconds; false when it is not one.
SEKUIRE_DECL bool parse_rfc3339_parts(std::string_view s, std::int64_t& seconds, std::int64_t& nanos_out) noexcept;
} // namespace detail

/** Parses an RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`.

    `T` and `Z` may be lower case; the fraction may have any number of digits (kept to the
    nanosecond); offsets are converted to UTC; a leap second (`:60`) is accepted. Invalid
    dates (`2026-02-30`), out-of-range fields, trailing text and instants the system clock
    cannot represent give `nullopt`.
*/
SEKUIRE_DECL std::optional<wall_time_point> parse_rfc3339(std::string_view s) noexcept;

/** As `parse_rfc3339`, but a valid timestamp before `earliest` or after `latest` gives that
    bound instead of `nullopt`: a backend's "never expires" of `9999-12-31T23:59:59Z` is
    read as `latest`, whatever the system clock can represent. `earliest <= latest`.
*/
SEKUIRE_DECL std::optional<wall_time_point> parse_rfc3339_clamped(std::string_view s, wall_time_point earliest, wall_time_point latest) noexcept;

/** Formats a time as RFC 3339 in UTC: `2026-02-03T12:05:00Z`, with milliseconds
    (`12:05:00.250Z`) when the time has a sub-second part (truncated toward the past).
    Years outside 0000..9999 cannot be formatted faithfully and are clamped to that range.
*/
SEKUIRE_DECL std::string format_rfc3339(wall_time_point t);

/** Parses an HTTP date (RFC 9110 section 5.6.7) in any of its three forms:
    IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, the obsolete RFC 850 form
    `Sunday, 06-Nov-94 08:49:37 GMT`, and ANSI C's asctime form `Sun Nov  6 08:49:37 1994`.
    Two-digit years are read as 1970..2069.
*/
SEKUIRE_DECL std::optional<wall_time_point> parse_http_date(std::string_view s) noexcept;

/// Formats a time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); sub-seconds dropped.
SEKUIRE_DECL std::string format_http_date(wall_time_point t);

} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/impl/time.ipp>
#endif

#endif
