// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/retry.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using ms = std::chrono::milliseconds;
using sekuire::backoff;
using sekuire::backoff_options;
using sekuire::wall_time_point;

wall_time_point at(std::int64_t epoch_seconds) { return wall_time_point(std::chrono::seconds(epoch_seconds)); }

constexpr std::int64_t t_1994_11_06_08_49_37 = 784111777; // Sun, 06 Nov 1994 08:49:37 GMT
constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();
constexpr double inf = std::numeric_limits<double>::infinity();

// A random source that returns the given values in turn, then repeats the last one.
sekuire::random_source sequence(std::vector<double> values) {
    auto i = std::make_shared<std::size_t>(0);
    return [values, i]() {
        const double v = values[std::min(*i, values.size() - 1)];
        ++*i;
        return v;
    };
}

sekuire::random_source constant(double v) {
    return [v]() { return v; };
}

std::string show(const std::optional<ms>& d) { return d ? std::to_string(d->count()) + " ms" : "nullopt"; }

} // namespace

BOOST_AUTO_TEST_SUITE(retry)

// =========================================================================================
// backoff_ceiling and full_jitter
// =========================================================================================

BOOST_AUTO_TEST_CASE(ceiling_progression_and_cap) {
    const backoff_options defaults; // protocol.md section 0: base 1 s, factor 2, cap 60 s
    BOOST_TEST(defaults.base.count() == 1000);
    BOOST_TEST(defaults.factor == 2.0);
    BOOST_TEST(defaults.cap.count() == 60000);
    const std::int64_t expected[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
    for (unsigned n = 0; n < std::size(expected); ++n) {
        BOOST_TEST(sekuire::backoff_ceiling(defaults, n).count() == expected[n], "attempt " << n);
    }
    for (unsigned n : {10u, 63u, 64u, 100u, 1023u, 1024u, 100000u, std::numeric_limits<unsigned>::max()}) {
        BOOST_TEST(sekuire::backoff_ceiling(defaults, n).count() == 60000, "attempt " << n);
    }

    backoff_options o;
    o.base = ms(500);
    o.factor = 3.0;
    o.cap = ms(10000);
    const std::int64_t triple[] = {500, 1500, 4500, 10000, 10000};
    for (unsigned n = 0; n < std::size(triple); ++n) {
        BOOST_TEST(sekuire::backoff_ceiling(o, n).count() == triple[n], "attempt " << n);
    }
    // The ceiling never decreases from one attempt to the next.
    for (const double factor : {1.0, 1.5, 2.0, 10.0}) {
        o.factor = factor;
        ms previous{0};
        for (unsigned n = 0; n < 80; ++n) {
            const ms c = sekuire::backoff_ceiling(o, n);
            BOOST_TEST((c >= previous), "factor " << factor << " attempt " << n);
            BOOST_TEST((c <= o.cap));
            previous = c;
        }
    }
}

BOOST_AUTO_TEST_CASE(ceiling_edge_options) {
    backoff_options o;
    // A factor below 1, or not a number, counts as 1: a constant delay.
    for (const double factor : {1.0, 0.5, 0.0, -2.0, not_a_number}) {
        o.factor = factor;
        for (unsigned n : {0u, 1u, 5u, 1000u}) {
            BOOST_TEST(sekuire::backoff_ceiling(o, n).count() == 1000, "factor " << factor << " attempt " << n);
        }
    }
    // An infinite factor reaches the cap at the second attempt.
    o.factor = inf;
    BOOST_TEST(sekuire::backoff_ceiling(o, 0).count() == 1000);
    BOOST_TEST(sekuire::backoff_ceiling(o, 1).count() == 60000);
    o.factor = 2.0;
    // A base above the cap is the cap.
    o.base = ms(120000);
    BOOST_TEST(sekuire::backoff_ceiling(o, 0).count() == 60000);
    // A base or cap that is not positive gives no delay.
    o.base = ms(0);
    BOOST_TEST(sekuire::backoff_ceiling(o, 3).count() == 0);
    o.base = ms(-5);
    BOOST_TEST(sekuire::backoff_ceiling(o, 3).count() == 0);
    o.base = ms(1000);
    o.cap = ms(0);
    BOOST_TEST(sekuire::backoff_ceiling(o, 3).count() == 0);
    o.cap = ms(-1);
    BOOST_TEST(sekuire::backoff_ceiling(o, 3).count() == 0);
    // A cap near the largest duration: no overflow converting 2^63 back to an integer.
    o.cap = ms::max();
    BOOST_TEST(sekuire::backoff_ceiling(o, 10).count() == 1024000);
    BOOST_TEST(sekuire::backoff_ceiling(o, 62).count() > 0);
    for (unsigned n : {63u, 64u, 1000u, std::numeric_limits<unsigned>::max()}) {
        BOOST_TEST((sekuire::backoff_ceiling(o, n) == ms::max()), "attempt " << n);
    }
    o.base = ms::max();
    BOOST_TEST((sekuire::backoff_ceiling(o, 0) == ms::max()));
    o.cap = ms(std::int64_t{1} << 62);
    BOOST_TEST(sekuire::backoff_ceiling(o, 0).count() == (std::int64_t{1} << 62));
}

BOOST_AUTO_TEST_CASE(full_jitter_bounds) {
    const ms c(1000);
    BOOST_TEST(sekuire::full_jitter(c, 0.0).count() == 0);
    BOOST_TEST(sekuire::full_jitter(c, 0.5).count() == 500);
    BOOST_TEST(sekuire::full_jitter(c, 0.25).count() == 250);
    BOOST_TEST(sekuire::full_jitter(c, 0.999999).count() == 1000);
    // Out of [0, 1): clamped.
    BOOST_TEST(sekuire::full_jitter(c, 1.0).count() == 1000);
    BOOST_TEST(sekuire::full_jitter(c, 7.5).count() == 1000);
    BOOST_TEST(sekuire::full_jitter(c, inf).count() == 1000);
    BOOST_TEST(sekuire::full_jitter(c, -1.0).count() == 0);
    BOOST_TEST(sekuire::full_jitter(c, -inf).count() == 0);
    BOOST_TEST(sekuire::full_jitter(c, not_a_number).count() == 0);
    BOOST_TEST(sekuire::full_jitter(c, -0.0).count() == 0);
    // No ceiling, no delay.
    for (const double u : {0.0, 0.5, 0.999999, 1.0, -1.0, not_a_number}) {
        BOOST_TEST(sekuire::full_jitter(ms(0), u).count() == 0);
        BOOST_TEST(sekuire::full_jitter(ms(-100), u).count() == 0);
        BOOST_TEST(sekuire::full_jitter(ms(1), u).count() <= 1);
    }
    // The largest ceiling: no overflow of ceiling + 1, and the result is in range.
    BOOST_TEST(sekuire::full_jitter(ms::max(), 0.0).count() == 0);
    // (Doubles near 2^63 are 1024 apart, so the top draw lands within that of the ceiling.)
    BOOST_TEST((sekuire::full_jitter(ms::max(), 1.0) <= ms::max()));
    BOOST_TEST((sekuire::full_jitter(ms::max(), 1.0) >= ms::max() - ms(2048)));
    BOOST_TEST((sekuire::full_jitter(ms::max(), 0.999999999999) <= ms::max()));
    BOOST_TEST(sekuire::full_jitter(ms::max(), 0.5).count() > (std::int64_t{1} << 61));
}

BOOST_AUTO_TEST_CASE(full_jitter_is_uniform_over_the_closed_range) {
    // u in equal steps over [0, 1) reaches every delay in [0, ceiling], each equally often,
    // and the delay never decreases as u grows.
    const ms c(9);
    std::array<int, 10> counts{};
    std::int64_t previous = 0;
    const int steps = 100000;
    for (int i = 0; i < steps; ++i) {
        const double u = static_cast<double>(i) / steps;
        const std::int64_t d = sekuire::full_jitter(c, u).count();
        BOOST_TEST_REQUIRE(d >= 0);
        BOOST_TEST_REQUIRE(d <= 9);
        BOOST_TEST_REQUIRE(d >= previous);
        previous = d;
        ++counts[static_cast<std::size_t>(d)];
    }
    for (std::size_t k = 0; k < counts.size(); ++k) {
        BOOST_TEST(std::abs(counts[k] - steps / 10) <= 1, "delay " << k << " drawn " << counts[k] << " times");
    }
}

// =========================================================================================
// backoff
// =========================================================================================

BOOST_AUTO_TEST_CASE(next_with_fixed_draws) {
    backoff_options textbook;
    textbook.min_fraction = 0.0; // [0, ceiling]
    {
        backoff b(textbook);
        const std::int64_t expected[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
        for (const std::int64_t e : expected) BOOST_TEST(b.next(constant(0.5)).count() == e);
        BOOST_TEST(b.attempts() == std::size(expected));
    }
    {
        backoff b(textbook);
        const std::int64_t expected[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
        for (const std::int64_t e : expected) BOOST_TEST(b.next(constant(0.999999)).count() == e);
    }
    {
        backoff b(textbook);
        for (int i = 0; i < 10; ++i) BOOST_TEST(b.next(constant(0.0)).count() == 0);
    }
    {
        // A sequence of draws: 0.25 * 1001, 0.75 * 2001, 0.5 * 4001, 0.125 * 8001, then clamped values.
        backoff b(textbook);
        const auto rnd = sequence({0.25, 0.75, 0.5, 0.125, 1.5, -3.0, not_a_number});
        const std::int64_t expected[] = {250, 1500, 2000, 1000, 16000, 0, 0};
        for (const std::int64_t e : expected) BOOST_TEST(b.next(rnd).count() == e);
    }
    {
        // An empty source draws the midpoint.
        backoff b(textbook);
        BOOST_TEST(b.next(sekuire::random_source()).count() == 500);
        BOOST_TEST(b.next(nullptr).count() == 1000);
    }
}

BOOST_AUTO_TEST_CASE(next_with_the_default_floor) {
    // By default a delay is at least a tenth of its ceiling, so that a source stuck at 0
    // cannot make a busy loop.
    const backoff_options defaults;
    BOOST_TEST(defaults.min_fraction == 0.1);
    backoff b;
    const std::int64_t floors[] = {100, 200, 400, 800, 1600, 3200, 6000, 6000};
    for (const std::int64_t f : floors) BOOST_TEST(b.next(constant(0.0)).count() == f);
    b.reset();
    const std::int64_t halves[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000};
    for (const std::int64_t h : halves) BOOST_TEST(b.next(constant(0.5)).count() == h);
    // Every draw stays in [floor, ceiling].
    backoff c;
    const auto rnd = sekuire::make_random_source(7);
    for (int i = 0; i < 1000; ++i) {
        const ms ceiling = c.ceiling();
        const ms d = c.next(rnd);
        BOOST_TEST_REQUIRE(d.count() >= ceiling.count() / 10);
        BOOST_TEST_REQUIRE((d <= ceiling));
        if (i % 10 == 9) c.reset();
    }
    // A floor of the whole ceiling is a fixed delay; fractions past 1 count as 1.
    for (const double f : {1.0, 2.0, inf}) {
        backoff_options o;
        o.min_fraction = f;
        backoff fixed(o);
        BOOST_TEST(fixed.next(constant(0.0)).count() == 1000, "fraction " << f);
        BOOST_TEST(fixed.next(constant(0.3)).count() == 2000, "fraction " << f);
    }
    // Negative or NaN fractions count as 0.
    for (const double f : {-1.0, not_a_number}) {
        backoff_options o;
        o.min_fraction = f;
        backoff zero(o);
        BOOST_TEST(zero.next(constant(0.0)).count() == 0, "fraction " << f);
    }
}

BOOST_AUTO_TEST_CASE(attempts_ceiling_and_reset) {
    backoff b;
    BOOST_TEST(b.attempts() == 0u);
    BOOST_TEST(b.ceiling().count() == 1000);
    b.next(constant(0.5));
    b.next(constant(0.5));
    BOOST_TEST(b.attempts() == 2u);
    BOOST_TEST(b.ceiling().count() == 4000);
    b.reset();
    BOOST_TEST(b.attempts() == 0u);
    BOOST_TEST(b.ceiling().count() == 1000);
    BOOST_TEST(b.next(constant(0.999999)).count() == 1000); // back to the first ceiling
    // The count saturates; the ceiling stays at the cap.
    for (int i = 0; i < 10000; ++i) b.next(constant(0.5));
    BOOST_TEST(b.attempts() == 64u);
    BOOST_TEST(b.ceiling().count() == 60000);
    BOOST_TEST(b.next(constant(0.999999)).count() == 60000);
    // New options take effect at the next draw; the count is kept.
    backoff_options o;
    o.cap = ms(5000);
    b.set_options(o);
    BOOST_TEST(b.options().cap.count() == 5000);
    BOOST_TEST(b.attempts() == 64u);
    BOOST_TEST(b.ceiling().count() == 5000);
    BOOST_TEST(b.next(constant(0.999999)).count() == 5000);
}

// =========================================================================================
// Random sources
// =========================================================================================

BOOST_AUTO_TEST_CASE(seeded_source_is_deterministic) {
    for (const std::uint64_t seed : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{42},
                                     std::numeric_limits<std::uint64_t>::max()}) {
        const auto a = sekuire::make_random_source(seed);
        const auto b = sekuire::make_random_source(seed);
        bool same = true;
        for (int i = 0; i < 1000; ++i) same = same && a() == b();
        BOOST_TEST(same, "seed " << seed);
    }
    // Different seeds give different streams.
    const auto a = sekuire::make_random_source(42);
    const auto b = sekuire::make_random_source(43);
    int equal = 0;
    for (int i = 0; i < 1000; ++i) equal += a() == b() ? 1 : 0;
    BOOST_TEST(equal == 0);
}

BOOST_AUTO_TEST_CASE(seeded_source_range_and_distribution) {
    const auto rnd = sekuire::make_random_source(20260203);
    const int n = 100000;
    double sum = 0;
    double sum_sq = 0;
    std::array<int, 10> buckets{};
    double lo = 1;
    double hi = 0;
    for (int i = 0; i < n; ++i) {
        const double u = rnd();
        BOOST_TEST_REQUIRE(u >= 0.0);
        BOOST_TEST_REQUIRE(u < 1.0);
        sum += u;
        sum_sq += u * u;
        lo = std::min(lo, u);
        hi = std::max(hi, u);
        ++buckets[static_cast<std::size_t>(u * 10)];
    }
    const double mean = sum / n;
    const double variance = sum_sq / n - mean * mean;
    // The standard error of the mean is 0.29 / sqrt(n) = 0.0009: these bounds are > 5 sigma.
    BOOST_TEST(mean > 0.495);
    BOOST_TEST(mean < 0.505);
    BOOST_TEST(std::abs(variance - 1.0 / 12) < 0.003);
    BOOST_TEST(lo < 0.001);
    BOOST_TEST(hi > 0.999);
    for (std::size_t k = 0; k < buckets.size(); ++k) {
        BOOST_TEST(std::abs(buckets[k] - n / 10) < 500, "bucket " << k << ": " << buckets[k]);
    }
}

BOOST_AUTO_TEST_CASE(seeded_source_is_thread_safe) {
    // Two threads draw from one source: together they see exactly the stream that one
    // thread alone sees, without repeats or losses.
    const int per_thread = 20000;
    const auto shared = sekuire::make_random_source(99);
    std::vector<double> a;
    std::vector<double> b;
    a.reserve(per_thread);
    b.reserve(per_thread);
    std::thread ta([&] {
        for (int i = 0; i < per_thread; ++i) a.push_back(shared());
    });
    std::thread tb([&] {
        for (int i = 0; i < per_thread; ++i) b.push_back(shared());
    });
    ta.join();
    tb.join();
    std::vector<double> together = a;
    together.insert(together.end(), b.begin(), b.end());
    std::sort(together.begin(), together.end());
    const auto alone = sekuire::make_random_source(99);
    std::vector<double> expected;
    for (int i = 0; i < 2 * per_thread; ++i) expected.push_back(alone());
    std::sort(expected.begin(), expected.end());
    BOOST_TEST((together == expected));
}

BOOST_AUTO_TEST_CASE(default_source) {
    const auto a = sekuire::default_random_source();
    const auto b = sekuire::default_random_source();
    BOOST_TEST_REQUIRE(static_cast<bool>(a));
    int equal = 0;
    for (int i = 0; i < 1000; ++i) {
        const double u = a();
        BOOST_TEST_REQUIRE(u >= 0.0);
        BOOST_TEST_REQUIRE(u < 1.0);
        equal += u == b() ? 1 : 0;
    }
    // Two independently seeded sources (64-bit seeds) do not share a stream.
    BOOST_TEST(equal < 5);
}

// =========================================================================================
// Retry-After (RFC 9110 section 10.2.3)
// =========================================================================================

BOOST_AUTO_TEST_CASE(retry_after_seconds) {
    const wall_time_point now = at(t_1994_11_06_08_49_37);
    struct c {
        const char* text;
        std::int64_t expected_ms;
    };
    const c cases[] = {
        {"0", 0},
        {"1", 1000},
        {"120", 120000},
        {"  120", 120000},
        {"120  ", 120000},
        {"\t120\t", 120000},
        {" \t 7 \t ", 7000},
        {"000000000000000000000000000005", 5000},
        {"86400", 86400000},
        // Huge values are clamped to a day, without overflow.
        {"86401", 86400000},
        {"4294967296", 86400000},
        {"9223372036854775807", 86400000},
        {"9223372036854775808", 86400000},
        {"99999999999999999999999999999999999999999999999999", 86400000},
    };
    for (const auto& k : cases) {
        BOOST_TEST_CONTEXT("'" << k.text << "'") {
            BOOST_TEST(show(sekuire::parse_retry_after(k.text, now)) == show(ms(k.expected_ms)));
        }
    }
    BOOST_TEST(sekuire::max_retry_after.count() == 86400000);
}

BOOST_AUTO_TEST_CASE(retry_after_http_dates) {
    const std::int64_t t = t_1994_11_06_08_49_37;
    for (const char* date : {"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                             "Sun Nov  6 08:49:37 1994", "  Sun, 06 Nov 1994 08:49:37 GMT\t"}) {
        BOOST_TEST_CONTEXT(date) {
            // In the future: the difference.
            BOOST_TEST(show(sekuire::parse_retry_after(date, at(t - 30))) == show(ms(30000)));
            BOOST_TEST(show(sekuire::parse_retry_after(date, at(t - 1))) == show(ms(1000)));
            // Now or in the past: no wait.
            BOOST_TEST(show(sekuire::parse_retry_after(date, at(t))) == show(ms(0)));
            BOOST_TEST(show(sekuire::parse_retry_after(date, at(t + 10))) == show(ms(0)));
            BOOST_TEST(show(sekuire::parse_retry_after(date, at(t + 86400 * 365))) == show(ms(0)));
            // More than a day ahead: a day.
            BOOST_TEST(show(sekuire::parse_retry_after(date, at(t - 86400))) == show(ms(86400000)));
            BOOST_TEST(show(sekuire::parse_retry_after(date, at(t - 86401))) == show(ms(86400000)));
            BOOST_TEST(show(sekuire::parse_retry_after(date, at(t - 10 * 365 * 86400))) == show(ms(86400000)));
        }
    }
    // `now` with a fraction: the wait is never shorter than the time left.
    const auto d = sekuire::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(t) - ms(500));
    BOOST_TEST_REQUIRE(d.has_value());
    BOOST_TEST(d->count() >= 500);
    BOOST_TEST(d->count() <= 1000);
    // The extremes of the clock as `now`: no overflow.
    BOOST_TEST(show(sekuire::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", wall_time_point::min())) ==
               show(ms(86400000)));
    BOOST_TEST(show(sekuire::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", wall_time_point::max())) ==
               show(ms(0)));
}

BOOST_AUTO_TEST_CASE(retry_after_garbage) {
    const wall_time_point now = at(t_1994_11_06_08_49_37);
    for (const char* s : {"", " ", "\t\t", "-1", "+5", "1.5", "1e3", "5s", "5 5", "0x10", "abc", "120\n", "\n120",
                          "\xEF\xBC\x91", // full-width digit one
                          "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994", "1994-11-06T08:49:37Z",
                          "Sun, 31 Nov 1994 08:49:37 GMT", "tomorrow"}) {
        BOOST_TEST(show(sekuire::parse_retry_after(s, now)) == "nullopt", "'" << s << "'");
    }
    // A NUL inside the value is not a digit.
    BOOST_TEST(show(sekuire::parse_retry_after(std::string_view("12\0", 3), now)) == "nullopt");
}

BOOST_AUTO_TEST_SUITE_END()
