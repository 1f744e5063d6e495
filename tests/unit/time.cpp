// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/time.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using sekuire::format_http_date;
using sekuire::format_rfc3339;
using sekuire::parse_http_date;
using sekuire::parse_rfc3339;
using sekuire::wall_time_point;

wall_time_point at(std::int64_t epoch_seconds) { return wall_time_point(std::chrono::seconds(epoch_seconds)); }

wall_time_point at_ms(std::int64_t epoch_ms) { return wall_time_point(std::chrono::milliseconds(epoch_ms)); }

// A time as text for failure messages: nanoseconds since the epoch, or "nullopt".
std::string show(const std::optional<wall_time_point>& t) {
    if (!t) return "nullopt";
    return std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(t->time_since_epoch()).count()) +
           " ns";
}
std::string show(wall_time_point t) { return show(std::optional<wall_time_point>(t)); }

// `epoch_seconds + nanos` as the clock holds it (truncated to the clock's tick).
wall_time_point at_ns(std::int64_t epoch_seconds, std::int64_t nanos) {
    return at(epoch_seconds) + std::chrono::duration_cast<wall_time_point::duration>(std::chrono::nanoseconds(nanos));
}

// The largest number of whole seconds after the epoch that the system clock holds.
constexpr std::int64_t clock_max_seconds =
    std::chrono::duration_cast<std::chrono::seconds>(wall_time_point::duration::max()).count();
constexpr std::int64_t clock_min_seconds =
    std::chrono::duration_cast<std::chrono::seconds>(wall_time_point::duration::min()).count();

// Epoch seconds of the instants used below (from `date -u -d ... +%s`).
constexpr std::int64_t t_2026_02_03_12_05 = 1770120300;   // 2026-02-03T12:05:00Z
constexpr std::int64_t t_1994_11_06_08_49_37 = 784111777; // 1994-11-06T08:49:37Z
constexpr std::int64_t t_2024_02_29 = 1709164800;         // 2024-02-29T00:00:00Z
constexpr std::int64_t t_2017_01_01 = 1483228800;         // 2017-01-01T00:00:00Z
constexpr std::int64_t t_1900_01_01 = -2208988800;        // 1900-01-01T00:00:00Z
constexpr std::int64_t t_2000_02_29_12 = 951825600;       // 2000-02-29T12:00:00Z
constexpr std::int64_t t_2069_12_31 = 3155673600;         // 2069-12-31T00:00:00Z
constexpr std::int64_t t_9999_12_31_23_59_59 = 253402300799;
constexpr std::int64_t day = 86400;

} // namespace

// A namespace around the suite: the suite's own namespace `time` would clash with ::time().
namespace sekuire_time_tests {

BOOST_AUTO_TEST_SUITE(time)

// =========================================================================================
// RFC 3339
// =========================================================================================

BOOST_AUTO_TEST_CASE(rfc3339_valid_forms) {
    struct c {
        const char* text;
        wall_time_point expected;
    };
    const c cases[] = {
        {"2026-02-03T12:05:00Z", at(t_2026_02_03_12_05)},
        {"2026-02-03t12:05:00z", at(t_2026_02_03_12_05)},
        {"2026-02-03T12:05:00z", at(t_2026_02_03_12_05)},
        {"2026-02-03t12:05:00Z", at(t_2026_02_03_12_05)},
        {"2026-02-03T13:05:00+01:00", at(t_2026_02_03_12_05)},
        {"2026-02-03T07:35:00-04:30", at(t_2026_02_03_12_05)},
        {"2026-02-03T12:05:00+00:00", at(t_2026_02_03_12_05)},
        {"2026-02-03T12:05:00-00:00", at(t_2026_02_03_12_05)}, // RFC 3339 4.3: UTC, local offset unknown
        {"2026-02-04T00:35:00+12:30", at(t_2026_02_03_12_05)}, // the offset crosses midnight
        {"2026-02-02T22:06:00-13:59", at(t_2026_02_03_12_05)},
        {"2026-02-04T12:04:00+23:59", at(t_2026_02_03_12_05)},
        {"1970-01-01T00:00:00Z", at(0)},
        {"1969-12-31T23:59:59Z", at(-1)},
        {"1900-01-01T00:00:00Z", at(t_1900_01_01)},
        {"2000-02-29T12:00:00Z", at(t_2000_02_29_12)},
        {"2024-02-29T00:00:00Z", at(t_2024_02_29)},
        // A leap second is the first second of the next minute.
        {"2016-12-31T23:59:60Z", at(t_2017_01_01)},
        {"2017-01-01T00:59:60+01:00", at(t_2017_01_01)},
    };
    for (const auto& k : cases) {
        BOOST_TEST_CONTEXT(k.text) { BOOST_TEST(show(parse_rfc3339(k.text)) == show(k.expected)); }
    }
}

BOOST_AUTO_TEST_CASE(rfc3339_fractions) {
    struct c {
        const char* text;
        std::int64_t seconds;
        std::int64_t nanos;
    };
    const c cases[] = {
        {"2026-02-03T12:05:00.5Z", t_2026_02_03_12_05, 500000000},
        {"2026-02-03T12:05:00.25Z", t_2026_02_03_12_05, 250000000},
        {"2026-02-03T12:05:00.123Z", t_2026_02_03_12_05, 123000000},
        {"2026-02-03T12:05:00.0001Z", t_2026_02_03_12_05, 100000},
        {"2026-02-03T12:05:00.12345Z", t_2026_02_03_12_05, 123450000},
        {"2026-02-03T12:05:00.123456Z", t_2026_02_03_12_05, 123456000},
        {"2026-02-03T12:05:00.1234567Z", t_2026_02_03_12_05, 123456700},
        {"2026-02-03T12:05:00.12345678Z", t_2026_02_03_12_05, 123456780},
        {"2026-02-03T12:05:00.123456789Z", t_2026_02_03_12_05, 123456789},
        {"2026-02-03T12:05:00.1234567891Z", t_2026_02_03_12_05, 123456789},  // 10 digits: kept to the ns
        {"2026-02-03T12:05:00.12345678912Z", t_2026_02_03_12_05, 123456789}, // 11
        {"2026-02-03T12:05:00.999999999999Z", t_2026_02_03_12_05, 999999999}, // 12, never rounds up
        {"2026-02-03T12:05:00.000000000000Z", t_2026_02_03_12_05, 0},
        {"2026-02-03T13:05:00.750+01:00", t_2026_02_03_12_05, 750000000},
        {"1969-12-31T23:59:59.5Z", -1, 500000000}, // half a second before the epoch
        {"1969-12-31T23:59:59.999Z", -1, 999000000},
    };
    for (const auto& k : cases) {
        BOOST_TEST_CONTEXT(k.text) { BOOST_TEST(show(parse_rfc3339(k.text)) == show(at_ns(k.seconds, k.nanos))); }
    }
    // A very long fraction is read in linear time and kept to the nanosecond.
    const std::string long_fraction = "2026-02-03T12:05:00." + std::string(100000, '9') + "Z";
    BOOST_TEST(show(parse_rfc3339(long_fraction)) == show(at_ns(t_2026_02_03_12_05, 999999999)));
}

BOOST_AUTO_TEST_CASE(rfc3339_invalid_dates_and_fields) {
    const char* bad[] = {
        "2026-02-30T00:00:00Z", // February has no 30th
        "2025-02-29T00:00:00Z", // 2025 is not a leap year
        "1900-02-29T00:00:00Z", // nor is 1900 (divisible by 100)
        "2100-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-01-32T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-13-01T00:00:00Z", // month 13
        "2026-00-10T00:00:00Z",
        "2026-02-03T24:00:00Z", // hour 24
        "2026-02-03T12:60:00Z", // minute 60
        "2026-02-03T12:05:61Z",
        "2026-02-03T12:05:99Z",
        "2026-02-03T12:05:00+24:00", // offset hour 24
        "2026-02-03T12:05:00+01:60",
        "2026-02-03T12:05:00-99:00",
    };
    for (const char* s : bad) {
        BOOST_TEST_CONTEXT(s) { BOOST_TEST(show(parse_rfc3339(s)) == "nullopt"); }
    }
    // Same instants, valid: the parser is not refusing the whole neighbourhood.
    for (const char* s : {"2024-02-29T00:00:00Z", "2026-02-28T23:59:59Z", "2026-12-31T23:59:59Z",
                          "2026-02-03T23:59:59+23:59"}) {
        BOOST_TEST(parse_rfc3339(s).has_value(), s);
    }
}

BOOST_AUTO_TEST_CASE(rfc3339_invalid_syntax) {
    const std::string valid = "2026-02-03T12:05:00.250+01:00";
    const char* bad[] = {
        "",
        "Z",
        "2026-02-03",
        "2026-02-03T12:05:00",       // no offset
        "2026-02-03T12:05:00.250",   // no offset after a fraction
        "2026-02-03T12:05Z",         // no seconds
        "2026-02-03T12:05:00Zx",     // trailing text
        "2026-02-03T12:05:00Z ",     // trailing space
        " 2026-02-03T12:05:00Z",     // leading space
        "2026-02-03T12:05:00+01:00Z",
        "2026-02-03T12:05:00+01:00:00",
        "2026-02-03 12:05:00Z",      // space instead of T (allowed by an RFC 3339 note, not by this parser)
        "2026-02-03_12:05:00Z",
        "2026/02/03T12:05:00Z",
        "2026-02-03T12-05-00Z",
        "2026-2-03T12:05:00Z",
        "26-02-03T12:05:00Z",
        "+2026-02-03T12:05:00Z",
        "-2026-02-03T12:05:00Z",
        "20260-02-03T12:05:00Z",
        "2026-0a-03T12:05:00Z",      // non-digits
        "2026-02-0xT12:05:00Z",
        "2026-02-03T1a:05:00Z",
        "2026-02-03T12:05:0aZ",
        "2026-02-03T12:05:00+0a:00",
        "2026-02-03T12:05:00+01:0a",
        "2026-02-03T12:05:00.Z",     // a dot without digits
        "2026-02-03T12:05:00.+01:00",
        "2026-02-03T12:05:00,5Z",    // a comma fraction
        "2026-02-03T12:05:00.5.5Z",
        "2026-02-03T12:05:00+0100",  // offset without colon
        "2026-02-03T12:05:00+01",
        "2026-02-03T12:05:00+1:00",
        "2026-02-03T12:05:00 +01:00",
        "2026-02-03T12:05:00UTC",
        "2026-02-03T12:05:00GMT",
        "\xEF\xBC\x92\xEF\xBC\x90\xEF\xBC\x92\xEF\xBC\x96-02-03T12:05:00Z", // full-width digits
    };
    for (const char* s : bad) {
        BOOST_TEST_CONTEXT("'" << s << "'") { BOOST_TEST(show(parse_rfc3339(s)) == "nullopt"); }
    }
    // Every proper prefix of a valid timestamp, and with a NUL inside.
    for (std::size_t n = 0; n < valid.size(); ++n) {
        BOOST_TEST(show(parse_rfc3339(valid.substr(0, n))) == "nullopt", valid.substr(0, n));
    }
    BOOST_TEST(show(parse_rfc3339(std::string_view("2026-02-03T12:05:00Z\0", 21))) == "nullopt");
    BOOST_TEST(show(parse_rfc3339(std::string_view("2026-02-03T12:05:00\0Z", 21))) == "nullopt");
    BOOST_TEST(parse_rfc3339(valid).has_value());
    // Not NUL-terminated: the parser reads only the view.
    const std::string longer = "2026-02-03T12:05:00Z and more";
    BOOST_TEST(show(parse_rfc3339(std::string_view(longer).substr(0, 20))) == show(at(t_2026_02_03_12_05)));
}

BOOST_AUTO_TEST_CASE(rfc3339_far_dates) {
    // What the system clock cannot hold is nullopt, never undefined behaviour. With a
    // nanosecond clock (libstdc++) that is anything outside about 1677..2262; with a
    // microsecond one (libc++) all four-digit years fit.
    const bool year_9999_fits = clock_max_seconds > t_9999_12_31_23_59_59;
    const auto y9999 = parse_rfc3339("9999-12-31T23:59:59Z");
    BOOST_TEST(y9999.has_value() == year_9999_fits);
    if (y9999) BOOST_TEST(show(*y9999) == show(at(t_9999_12_31_23_59_59)));
    BOOST_TEST(parse_rfc3339("9999-12-31T23:59:59.999999999+00:00").has_value() == year_9999_fits);
    const bool year_0_fits = clock_min_seconds < -62167219200; // 0000-01-01T00:00:00Z
    BOOST_TEST(parse_rfc3339("0000-01-01T00:00:00Z").has_value() == year_0_fits);
    BOOST_TEST(parse_rfc3339("0001-01-01T00:00:00Z").has_value() == year_0_fits);

    if (clock_max_seconds < 9300000000) { // a nanosecond clock: the limits are near 2262 and 1677
        BOOST_TEST(show(parse_rfc3339("2262-04-12T00:00:00Z")) == "nullopt");
        BOOST_TEST(show(parse_rfc3339("3000-01-01T00:00:00Z")) == "nullopt");
        BOOST_TEST(show(parse_rfc3339("1677-09-20T00:00:00Z")) == "nullopt");
        BOOST_TEST(show(parse_rfc3339("1000-01-01T00:00:00Z")) == "nullopt");
        // Just inside the range, and pushed out of it by the offset.
        BOOST_TEST(parse_rfc3339("2262-04-10T00:00:00Z").has_value());
        BOOST_TEST(show(parse_rfc3339("2262-04-10T00:00:00-23:59")) != "nullopt");
        BOOST_TEST(show(parse_rfc3339("2262-04-11T23:47:15-01:00")) == "nullopt");
        BOOST_TEST(parse_rfc3339("1677-09-22T00:00:00Z").has_value());
        BOOST_TEST(show(parse_rfc3339("1677-09-21T00:12:45+01:00")) == "nullopt");
    }
}

BOOST_AUTO_TEST_CASE(rfc3339_clamped_saturates_valid_far_dates) {
    const auto lo = at(0);
    const auto hi = at(7258118400); // 2200-01-01T00:00:00Z
    BOOST_TEST(show(sekuire::parse_rfc3339_clamped("9999-12-31T23:59:59Z", lo, hi)) == show(hi));
    BOOST_TEST(show(sekuire::parse_rfc3339_clamped("2262-04-12T00:00:00Z", lo, hi)) == show(hi));
    BOOST_TEST(show(sekuire::parse_rfc3339_clamped("2199-12-31T23:59:59.5Z", lo, hi)) ==
               show(at(7258118399) + std::chrono::milliseconds(500)));
    BOOST_TEST(show(sekuire::parse_rfc3339_clamped("0000-01-01T00:00:00Z", lo, hi)) == show(lo));
    BOOST_TEST(show(sekuire::parse_rfc3339_clamped("1969-12-31T23:59:59Z", lo, hi)) == show(lo));
    BOOST_TEST(show(sekuire::parse_rfc3339_clamped("2026-02-03T12:05:00Z", lo, hi)) == show(at(t_2026_02_03_12_05)));
    // Invalid text stays invalid: only the range is forgiven.
    BOOST_TEST(show(sekuire::parse_rfc3339_clamped("9999-02-30T00:00:00Z", lo, hi)) == "nullopt");
    BOOST_TEST(show(sekuire::parse_rfc3339_clamped("9999-12-31T23:59:59", lo, hi)) == "nullopt");
    BOOST_TEST(show(sekuire::parse_rfc3339_clamped("not a date", lo, hi)) == "nullopt");
}

BOOST_AUTO_TEST_CASE(rfc3339_formatting) {
    BOOST_TEST(format_rfc3339(at(t_2026_02_03_12_05)) == "2026-02-03T12:05:00Z");
    BOOST_TEST(format_rfc3339(at(0)) == "1970-01-01T00:00:00Z");
    BOOST_TEST(format_rfc3339(at(-1)) == "1969-12-31T23:59:59Z");
    BOOST_TEST(format_rfc3339(at(t_1900_01_01)) == "1900-01-01T00:00:00Z");
    BOOST_TEST(format_rfc3339(at(t_2024_02_29)) == "2024-02-29T00:00:00Z");
    BOOST_TEST(format_rfc3339(at(t_2000_02_29_12)) == "2000-02-29T12:00:00Z");
    // Milliseconds when there is a sub-second part, always three digits.
    BOOST_TEST(format_rfc3339(at_ms(t_2026_02_03_12_05 * 1000 + 250)) == "2026-02-03T12:05:00.250Z");
    BOOST_TEST(format_rfc3339(at_ms(t_2026_02_03_12_05 * 1000 + 1)) == "2026-02-03T12:05:00.001Z");
    BOOST_TEST(format_rfc3339(at_ms(t_2026_02_03_12_05 * 1000 + 10)) == "2026-02-03T12:05:00.010Z");
    BOOST_TEST(format_rfc3339(at_ms(t_2026_02_03_12_05 * 1000 + 999)) == "2026-02-03T12:05:00.999Z");
    BOOST_TEST(format_rfc3339(at_ms(-1)) == "1969-12-31T23:59:59.999Z");
    BOOST_TEST(format_rfc3339(at_ms(-999)) == "1969-12-31T23:59:59.001Z");
    BOOST_TEST(format_rfc3339(at_ms(-1000)) == "1969-12-31T23:59:59Z");
    BOOST_TEST(format_rfc3339(at_ms(-1001)) == "1969-12-31T23:59:58.999Z");
    // Below a millisecond is dropped.
    BOOST_TEST(format_rfc3339(at_ns(t_2026_02_03_12_05, 999999)) == "2026-02-03T12:05:00Z");
    BOOST_TEST(format_rfc3339(at_ns(t_2026_02_03_12_05, 123999999)) == "2026-02-03T12:05:00.123Z");
    // Toward the past before 1970 as well: half a millisecond before the epoch is in the
    // last millisecond of 1969, not at the epoch.
    BOOST_TEST(format_rfc3339(at_ns(0, -500000)) == "1969-12-31T23:59:59.999Z");
    BOOST_TEST(format_rfc3339(at_ns(-1, 999999)) == "1969-12-31T23:59:59Z");
    BOOST_TEST(format_http_date(at_ns(0, -1)) == "Wed, 31 Dec 1969 23:59:59 GMT");
    // The extremes of the clock format without overflow, as valid-looking text.
    for (const wall_time_point t : {wall_time_point::min(), wall_time_point::max()}) {
        const std::string s = format_rfc3339(t);
        BOOST_TEST((s.size() == 20u || s.size() == 24u), s);
        BOOST_TEST(s.back() == 'Z');
        BOOST_TEST(s[4] == '-');
        BOOST_TEST(s[10] == 'T');
    }
    if (clock_max_seconds < 9300000000) {
        BOOST_TEST(format_rfc3339(wall_time_point::max()) == "2262-04-11T23:47:16.854Z");
        BOOST_TEST(format_rfc3339(wall_time_point::min()) == "1677-09-21T00:12:43.145Z");
    }
}

BOOST_AUTO_TEST_CASE(rfc3339_round_trips) {
    // format then parse gives the instant back, at millisecond precision, over about
    // 1811..2128 (inside what every system clock holds), before and after 1970.
    std::mt19937_64 gen(20260203);
    std::uniform_int_distribution<std::int64_t> ms(-5000000000000, 5000000000000);
    std::vector<std::int64_t> instants = {0, -1, 1, -1000, 1000, -86400000, 86400000, 951782400000, 951868800000};
    for (int i = 0; i < 20000; ++i) instants.push_back(ms(gen));
    for (int i = 0; i < 2000; ++i) instants.push_back(ms(gen) / 1000 * 1000); // whole seconds
    int failures = 0;
    for (const std::int64_t m : instants) {
        const wall_time_point t = at_ms(m);
        const std::string s = format_rfc3339(t);
        const auto back = parse_rfc3339(s);
        if (!back || *back != t) {
            if (++failures <= 5) BOOST_TEST(show(back) == show(t), "instant " << m << " ms formatted as " << s);
        }
        // Whole seconds have no fraction, others have exactly three digits.
        const bool whole = m % 1000 == 0;
        if (s.size() != (whole ? 20u : 24u) && ++failures <= 5) BOOST_TEST(false, s << " for " << m << " ms");
    }
    BOOST_TEST(failures == 0);
    // And parse then format gives the canonical text back.
    for (const char* s : {"2026-02-03T12:05:00Z", "1969-07-20T20:17:40Z", "1999-12-31T23:59:59.999Z",
                          "2000-01-01T00:00:00.001Z", "1900-03-01T00:00:00Z"}) {
        const auto t = parse_rfc3339(s);
        BOOST_TEST_REQUIRE(t.has_value(), s);
        BOOST_TEST(format_rfc3339(*t) == s);
    }
    // Offsets and lower case come back as canonical UTC.
    BOOST_TEST(format_rfc3339(*parse_rfc3339("2026-02-03t13:05:00.5+01:00")) == "2026-02-03T12:05:00.500Z");
}

// =========================================================================================
// HTTP dates (RFC 9110 section 5.6.7)
// =========================================================================================

BOOST_AUTO_TEST_CASE(http_date_three_forms) {
    // The three forms of RFC 9110 section 5.6.7, all for the same instant (its own example).
    BOOST_TEST(show(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")) == show(at(t_1994_11_06_08_49_37)));
    BOOST_TEST(show(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT")) == show(at(t_1994_11_06_08_49_37)));
    BOOST_TEST(show(parse_http_date("Sun Nov  6 08:49:37 1994")) == show(at(t_1994_11_06_08_49_37)));
    // Two-digit days in the asctime form; every long day name in the RFC 850 form.
    BOOST_TEST(show(parse_http_date("Wed Nov 16 08:49:37 1994")) == show(at(t_1994_11_06_08_49_37 + 10 * day)));
    for (const char* s : {"Monday, 06-Nov-94 08:49:37 GMT", "Tuesday, 06-Nov-94 08:49:37 GMT",
                          "Wednesday, 06-Nov-94 08:49:37 GMT", "Thursday, 06-Nov-94 08:49:37 GMT",
                          "Friday, 06-Nov-94 08:49:37 GMT", "Saturday, 06-Nov-94 08:49:37 GMT"}) {
        BOOST_TEST(show(parse_http_date(s)) == show(at(t_1994_11_06_08_49_37)), s);
    }
    // Every month name.
    const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int m = 0; m < 12; ++m) {
        const std::string text = std::string("Thu, 01 ") + months[m] + " 2026 00:00:00 GMT";
        const auto t = parse_http_date(text);
        BOOST_TEST_REQUIRE(t.has_value(), text);
        const std::string expected_prefix = "2026-" + std::string(m < 9 ? "0" : "") + std::to_string(m + 1) + "-01";
        BOOST_TEST(format_rfc3339(*t) == expected_prefix + "T00:00:00Z");
    }
    BOOST_TEST(show(parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT")) == show(at(t_2024_02_29)));
    BOOST_TEST(show(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT")) == show(at(0)));
    BOOST_TEST(show(parse_http_date("Wed, 31 Dec 1969 23:59:59 GMT")) == show(at(-1)));
}

BOOST_AUTO_TEST_CASE(http_date_two_digit_years) {
    // Read as 1970..2069, as documented in time.hpp.
    BOOST_TEST(show(parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT")) == show(at(0)));
    BOOST_TEST(show(parse_http_date("Wednesday, 31-Dec-69 00:00:00 GMT")) == show(at(t_2069_12_31)));
    BOOST_TEST(format_rfc3339(*parse_http_date("Friday, 31-Dec-99 23:59:59 GMT")) == "1999-12-31T23:59:59Z");
    BOOST_TEST(format_rfc3339(*parse_http_date("Saturday, 01-Jan-00 00:00:00 GMT")) == "2000-01-01T00:00:00Z");
    BOOST_TEST(format_rfc3339(*parse_http_date("Tuesday, 03-Feb-26 12:05:00 GMT")) == "2026-02-03T12:05:00Z");
    BOOST_TEST(format_rfc3339(*parse_http_date("Tuesday, 29-Feb-00 12:00:00 GMT")) == "2000-02-29T12:00:00Z");
}

BOOST_AUTO_TEST_CASE(http_date_invalid) {
    const char* bad[] = {
        "",
        "GMT",
        "Sun, 06 Nov 1994 08:49:37",       // no zone
        "Sun, 06 Nov 1994 08:49:37 UTC",   // only GMT
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "Sun, 06 Nov 1994 08:49:37 GMT ",  // trailing space
        " Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMTx",
        "Sun, 6 Nov 1994 08:49:37 GMT",    // one-digit day
        "Sun, 06 Nov 94 08:49:37 GMT",     // two-digit year in the IMF form
        "Sun,06 Nov 1994 08:49:37 GMT",
        "Sun, 06  Nov 1994 08:49:37 GMT",
        "Sun, 06-Nov-1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        // bad names
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "sun, 06 Nov 1994 08:49:37 GMT",   // names are case-sensitive
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 NOV 1994 08:49:37 GMT",
        "Sundae, 06-Nov-94 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",     // the RFC 850 form needs the long day name
        "Sunday, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 UTC",
        "Sunday, 06-Xyz-94 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Xyz Nov  6 08:49:37 1994",
        "Sun Foo  6 08:49:37 1994",
        "Sun Nov 6 08:49:37 1994",         // asctime pads the day with a space
        "Sun Nov  6 08:49:37 94",
        "Sun Nov  6 08:49:37 1994 ",
        // bad days and times
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",   // November has 30 days
        "Sun, 32 Dec 1994 08:49:37 GMT",
        "Thu, 29 Feb 2001 00:00:00 GMT",   // not a leap year
        "Thu, 29 Feb 1900 00:00:00 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 0a Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 19a4 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:4a:37 GMT",
        "Sunday, 31-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-9a 08:49:37 GMT",
        "Sun Nov  0 08:49:37 1994",
        "Sun Nov 31 08:49:37 1994",
        "Sun Nov  6 25:49:37 1994",
        "Sun Nov  a 08:49:37 1994",
        // far outside the clock (a nanosecond clock ends in 2262)
        "Fri, 31 Dec 9999 23:59:59 GMT",
        // other date formats
        "1994-11-06T08:49:37Z",
        "784111777",
        "Sun Nov  6 08:49:37 UTC 1994",
    };
    for (const char* s : bad) {
        BOOST_TEST_CONTEXT("'" << s << "'") {
            if (std::string_view(s) == "Fri, 31 Dec 9999 23:59:59 GMT" && clock_max_seconds > t_9999_12_31_23_59_59)
                continue;
            BOOST_TEST(show(parse_http_date(s)) == "nullopt");
        }
    }
    // Every proper prefix of each valid form.
    for (const std::string valid :
         {"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"}) {
        BOOST_TEST_REQUIRE(parse_http_date(valid).has_value());
        for (std::size_t n = 0; n < valid.size(); ++n)
            BOOST_TEST(show(parse_http_date(valid.substr(0, n))) == "nullopt", valid.substr(0, n));
    }
}

BOOST_AUTO_TEST_CASE(http_date_formatting) {
    // The example of RFC 9110 section 5.6.7 (IMF-fixdate).
    BOOST_TEST(format_http_date(at(t_1994_11_06_08_49_37)) == "Sun, 06 Nov 1994 08:49:37 GMT");
    BOOST_TEST(format_http_date(at(0)) == "Thu, 01 Jan 1970 00:00:00 GMT");
    BOOST_TEST(format_http_date(at(-1)) == "Wed, 31 Dec 1969 23:59:59 GMT");
    BOOST_TEST(format_http_date(at(t_1900_01_01)) == "Mon, 01 Jan 1900 00:00:00 GMT");
    BOOST_TEST(format_http_date(at(t_2024_02_29)) == "Thu, 29 Feb 2024 00:00:00 GMT");
    BOOST_TEST(format_http_date(at(t_2026_02_03_12_05)) == "Tue, 03 Feb 2026 12:05:00 GMT");
    BOOST_TEST(format_http_date(at(t_2000_02_29_12)) == "Tue, 29 Feb 2000 12:00:00 GMT");
    // Sub-seconds are dropped (toward the past).
    BOOST_TEST(format_http_date(at_ms(t_1994_11_06_08_49_37 * 1000 + 999)) == "Sun, 06 Nov 1994 08:49:37 GMT");
    BOOST_TEST(format_http_date(at_ms(-1)) == "Wed, 31 Dec 1969 23:59:59 GMT");
    // A week of days names each day once, in order.
    const char* names[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
    for (int d = -14; d < 14; ++d) {
        BOOST_TEST(format_http_date(at(d * day)).substr(0, 3) == names[((d % 7) + 7) % 7], "day " << d);
    }
    // The clock's extremes format without overflow.
    for (const wall_time_point t : {wall_time_point::min(), wall_time_point::max()}) {
        const std::string s = format_http_date(t);
        BOOST_TEST(s.size() == 29u, s);
        BOOST_TEST(s.substr(25) == " GMT");
    }
}

BOOST_AUTO_TEST_CASE(http_date_round_trips) {
    std::mt19937_64 gen(784111777);
    std::uniform_int_distribution<std::int64_t> secs(-5000000000, 5000000000);
    int failures = 0;
    for (int i = 0; i < 20000; ++i) {
        const wall_time_point t = at(secs(gen));
        const std::string s = format_http_date(t);
        const auto back = parse_http_date(s);
        if ((!back || *back != t) && ++failures <= 5) BOOST_TEST(show(back) == show(t), s);
    }
    BOOST_TEST(failures == 0);
}

BOOST_AUTO_TEST_SUITE_END()

} // namespace sekuire_time_tests
