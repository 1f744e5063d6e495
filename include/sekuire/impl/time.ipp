// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_IMPL_TIME_IPP
#define SEKUIRE_IMPL_TIME_IPP

// The bodies of time.hpp's functions: included by time.hpp (header-only) or compiled once by
// <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/time.hpp>

namespace sekuire {

auto detail::days_in_month(std::int64_t y, int m) noexcept -> int {
    static constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return (m == 2 && is_leap_year(y)) ? 29 : days[m - 1];
}

auto detail::days_from_civil(std::int64_t y, int m, int d) noexcept -> std::int64_t {
    y -= m <= 2 ? 1 : 0;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const std::int64_t year_of_era = y - era * 400;
    const std::int64_t shifted_month = m > 2 ? m - 3 : m + 9;
    const std::int64_t day_of_year = (153 * shifted_month + 2) / 5 + d - 1;
    const std::int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

auto detail::civil_from_days(std::int64_t z) noexcept -> civil_date {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const std::int64_t day_of_era = z - era * 146097;
    const std::int64_t year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    const std::int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    const std::int64_t mp = (5 * day_of_year + 2) / 153;
    const int day = static_cast<int>(day_of_year - (153 * mp + 2) / 5 + 1);
    const int month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
    return {year_of_era + era * 400 + (month <= 2 ? 1 : 0), month, day};
}

auto detail::make_time_point(std::int64_t seconds, std::int64_t nanos) noexcept -> std::optional<wall_time_point> {
    using dur = wall_time_point::duration;
    const std::int64_t max_s = std::chrono::duration_cast<std::chrono::seconds>(dur::max()).count() - 1;
    const std::int64_t min_s = std::chrono::duration_cast<std::chrono::seconds>(dur::min()).count() + 1;
    if (seconds > max_s || seconds < min_s) return std::nullopt;
    const auto d = std::chrono::duration_cast<dur>(std::chrono::seconds(seconds)) +
                   std::chrono::duration_cast<dur>(std::chrono::nanoseconds(nanos));
    return wall_time_point(d);
}

auto detail::parse_digits(std::string_view s, std::size_t pos, std::size_t n, int& out) noexcept -> bool {
    if (pos + n > s.size()) return false;
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        const char c = s[i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    out = v;
    return true;
}

auto detail::from_fields(std::int64_t year, int month, int day, int hour, int minute, int second, std::int64_t nanos, std::int64_t offset_seconds) noexcept -> std::optional<wall_time_point> {
    if (month < 1 || month > 12) return std::nullopt;
    if (day < 1 || day > days_in_month(year, month)) return std::nullopt;
    if (hour > 23 || minute > 59 || second > 60) return std::nullopt;
    const std::int64_t secs =
        days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset_seconds;
    return make_time_point(secs, nanos);
}

auto detail::append_padded(std::string& out, std::int64_t v, int width) -> void {
    char buf[24];
    int n = 0;
    std::uint64_t u = static_cast<std::uint64_t>(v < 0 ? -v : v);
    do {
        buf[n++] = static_cast<char>('0' + u % 10);
        u /= 10;
    } while (u != 0 && n < 20);
    if (v < 0) out.push_back('-');
    for (int i = n; i < width; ++i) out.push_back('0');
    while (n > 0) out.push_back(buf[--n]);
}

auto detail::split(wall_time_point t) noexcept -> split_time {
    // floor, not duration_cast: a sub-millisecond part before 1970 must round toward the
    // past, as it does after 1970, so that formatting never moves an instant later.
    const auto ms = std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
    std::int64_t secs = ms / 1000;
    std::int64_t rem_ms = ms % 1000;
    if (rem_ms < 0) {
        rem_ms += 1000;
        --secs;
    }
    std::int64_t days = secs / 86400;
    std::int64_t sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        --days;
    }
    return {civil_from_days(days), static_cast<int>(sod / 3600), static_cast<int>(sod % 3600 / 60),
            static_cast<int>(sod % 60), rem_ms, days};
}

auto detail::append_clock_time(std::string& out, const split_time& p) -> void {
    append_padded(out, p.hour, 2);
    out.push_back(':');
    append_padded(out, p.minute, 2);
    out.push_back(':');
    append_padded(out, p.second, 2);
}

auto detail::month_from_name(std::string_view s) noexcept -> int {
    for (int i = 0; i < 12; ++i)
        if (s == month_names[i]) return i + 1;
    return 0;
}

auto detail::parse_rfc3339_parts(std::string_view s, std::int64_t& seconds, std::int64_t& nanos_out) noexcept -> bool {
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (s.size() < 20) return false;
    if (!parse_digits(s, 0, 4, year) || s[4] != '-' || !parse_digits(s, 5, 2, month) ||
        s[7] != '-' || !parse_digits(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't') ||
        !parse_digits(s, 11, 2, hour) || s[13] != ':' || !parse_digits(s, 14, 2, minute) ||
        s[16] != ':' || !parse_digits(s, 17, 2, second))
        return false;
    std::size_t pos = 19;
    std::int64_t nanos = 0;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        const std::size_t start = pos;
        std::int64_t scale = 100000000;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            if (scale > 0) {
                nanos += (s[pos] - '0') * scale;
                scale /= 10;
            }
            ++pos;
        }
        if (pos == start) return false;
    }
    if (pos >= s.size()) return false;
    std::int64_t offset = 0;
    if (s[pos] == 'Z' || s[pos] == 'z') {
        ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
        int oh = 0, om = 0;
        if (!parse_digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
            !parse_digits(s, pos + 4, 2, om) || oh > 23 || om > 59)
            return false;
        offset = (oh * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
        pos += 6;
    } else {
        return false;
    }
    if (pos != s.size()) return false;
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)) return false;
    if (hour > 23 || minute > 59 || second > 60) return false;
    seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
    nanos_out = nanos;
    return true;
}

auto parse_rfc3339(std::string_view s) noexcept -> std::optional<wall_time_point> {
    std::int64_t seconds = 0, nanos = 0;
    if (!detail::parse_rfc3339_parts(s, seconds, nanos)) return std::nullopt;
    return detail::make_time_point(seconds, nanos);
}

auto parse_rfc3339_clamped(std::string_view s, wall_time_point earliest, wall_time_point latest) noexcept -> std::optional<wall_time_point> {
    std::int64_t seconds = 0, nanos = 0;
    if (!detail::parse_rfc3339_parts(s, seconds, nanos)) return std::nullopt;
    const auto lo = std::chrono::duration_cast<std::chrono::seconds>(earliest.time_since_epoch()).count();
    const auto hi = std::chrono::duration_cast<std::chrono::seconds>(latest.time_since_epoch()).count();
    if (seconds < lo) return earliest;
    if (seconds > hi) return latest;
    const auto t = detail::make_time_point(seconds, nanos);
    if (!t) return seconds < 0 ? earliest : latest;
    return std::clamp(*t, earliest, latest);
}

auto format_rfc3339(wall_time_point t) -> std::string {
    auto p = detail::split(t);
    if (p.date.year < 0) p = {{0, 1, 1}, 0, 0, 0, 0, 0};
    if (p.date.year > 9999) p = {{9999, 12, 31}, 23, 59, 59, 999, 0};
    std::string out;
    out.reserve(24);
    detail::append_padded(out, p.date.year, 4);
    out.push_back('-');
    detail::append_padded(out, p.date.month, 2);
    out.push_back('-');
    detail::append_padded(out, p.date.day, 2);
    out.push_back('T');
    detail::append_clock_time(out, p);
    if (p.millis != 0) {
        out.push_back('.');
        detail::append_padded(out, p.millis, 3);
    }
    out.push_back('Z');
    return out;
}

auto parse_http_date(std::string_view s) noexcept -> std::optional<wall_time_point> {
    auto day_name_ok = [](std::string_view name, bool long_form) {
        for (int i = 0; i < 7; ++i)
            if (name == (long_form ? detail::long_day_names[i] : detail::day_names[i])) return true;
        return false;
    };
    auto parse_clock = [](std::string_view t, int& h, int& m, int& sec) {
        return t.size() == 8 && detail::parse_digits(t, 0, 2, h) && t[2] == ':' && detail::parse_digits(t, 3, 2, m) &&
               t[5] == ':' && detail::parse_digits(t, 6, 2, sec);
    };
    int year = 0, month = 0, day = 0, h = 0, m = 0, sec = 0;
    const auto comma = s.find(',');
    if (comma == 3 && s.size() == 29) {
        // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
        if (!day_name_ok(s.substr(0, 3), false) || s[4] != ' ' || !detail::parse_digits(s, 5, 2, day) ||
            s[7] != ' ' || (month = detail::month_from_name(s.substr(8, 3))) == 0 || s[11] != ' ' ||
            !detail::parse_digits(s, 12, 4, year) || s[16] != ' ' || !parse_clock(s.substr(17, 8), h, m, sec) ||
            s.substr(25) != " GMT")
            return std::nullopt;
    } else if (comma != std::string_view::npos && comma >= 6 && comma <= 9) {
        // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
        const auto rest = s.substr(comma);
        if (!day_name_ok(s.substr(0, comma), true) || rest.size() != 24 || rest[1] != ' ' ||
            !detail::parse_digits(rest, 2, 2, day) || rest[4] != '-' ||
            (month = detail::month_from_name(rest.substr(5, 3))) == 0 || rest[8] != '-' ||
            !detail::parse_digits(rest, 9, 2, year) || rest[11] != ' ' || !parse_clock(rest.substr(12, 8), h, m, sec) ||
            rest.substr(20) != " GMT")
            return std::nullopt;
        year += year < 70 ? 2000 : 1900;
    } else if (comma == std::string_view::npos && s.size() == 24) {
        // asctime: "Sun Nov  6 08:49:37 1994"
        if (!day_name_ok(s.substr(0, 3), false) || s[3] != ' ' || (month = detail::month_from_name(s.substr(4, 3))) == 0 ||
            s[7] != ' ' || s[19] != ' ' || !parse_clock(s.substr(11, 8), h, m, sec) || s[10] != ' ' ||
            !detail::parse_digits(s, 20, 4, year))
            return std::nullopt;
        if (s[8] == ' ') {
            if (!detail::parse_digits(s, 9, 1, day)) return std::nullopt;
        } else if (!detail::parse_digits(s, 8, 2, day)) {
            return std::nullopt;
        }
    } else {
        return std::nullopt;
    }
    if (sec > 59) return std::nullopt;
    return detail::from_fields(year, month, day, h, m, sec, 0, 0);
}

auto format_http_date(wall_time_point t) -> std::string {
    auto p = detail::split(t);
    if (p.date.year < 0 || p.date.year > 9999) p = {{1970, 1, 1}, 0, 0, 0, 0, 0};
    // 1970-01-01 was a Thursday (index 3 with Monday as 0).
    std::int64_t wd = (p.days % 7 + 7 + 3) % 7;
    std::string out;
    out.reserve(29);
    out += detail::day_names[wd];
    out += ", ";
    detail::append_padded(out, p.date.day, 2);
    out.push_back(' ');
    out += detail::month_names[p.date.month - 1];
    out.push_back(' ');
    detail::append_padded(out, p.date.year, 4);
    out.push_back(' ');
    detail::append_clock_time(out, p);
    out += " GMT";
    return out;
}

} // namespace sekuire

#endif
