// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/detail/pacing.hpp>

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cmath>
#include <optional>
#include <ostream>

namespace pc = sekuire::detail::pacing;
namespace bdata = boost::unit_test::data;
using ms = std::chrono::milliseconds;
using namespace std::chrono_literals;

namespace {
// A draw just below 1: the top of a jitter range.
const double top = std::nextafter(1.0, 0.0);
} // namespace

BOOST_AUTO_TEST_SUITE(pacing)

// ---- regular beats ------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(regular_beats_are_up_to_ten_percent_early) {
    BOOST_TEST(pc::regular_delay(60s, 0.0).count() == 60000);
    BOOST_TEST(pc::regular_delay(60s, 0.5).count() == 57000);
    BOOST_TEST(pc::regular_delay(60s, top).count() == 54001);
    // Draws outside [0, 1) are clamped (NaN counts as 0).
    BOOST_TEST(pc::regular_delay(60s, -3.0).count() == 60000);
    BOOST_TEST(pc::regular_delay(60s, std::nan("")).count() == 60000);
    BOOST_TEST(pc::regular_delay(60s, 7.0).count() == 54001);
}

// ---- heartbeat retries (issue 10, items 2 and 3) ------------------------------------------

struct retry_row {
    unsigned failures;
    double u;
    std::optional<ms> retry_after;
    std::optional<ms> lease_left;
    ms expected;
};
std::ostream& operator<<(std::ostream& os, const retry_row& r) {
    return os << "failures=" << r.failures << " u=" << r.u << " expected=" << r.expected.count() << "ms";
}

// Interval 10 s, request timeout 2 s, floor a tenth of the ceiling.
const retry_row retry_rows[] = {
    // The ceiling starts at half the interval and doubles up to four intervals.
    {1, top, {}, {}, 5000ms},
    {2, top, {}, {}, 10000ms},
    {3, top, {}, {}, 20000ms},
    {4, top, {}, {}, 40000ms},
    {5, top, {}, {}, 40000ms},
    {60, top, {}, {}, 40000ms},
    {1000, top, {}, {}, 40000ms},
    // The bottom of the range is a tenth of the ceiling, but never under a second.
    {1, 0.0, {}, {}, 1000ms},
    {3, 0.0, {}, {}, 2000ms},
    {5, 0.0, {}, {}, 4000ms},
    // Retry-After is a minimum...
    {1, 0.0, 15s, 180s, 15000ms},
    // ...bounded by the lease: the retry leaves the request timeout before the expiry...
    {1, 0.0, 86400s, 180s, 178000ms},
    {1, 0.0, 86400s, 4s, 2000ms},
    // ...unless less than that is left: the lease is lost anyway, the backoff cap rules.
    {1, 0.0, 86400s, 2s, 40000ms},
    // Without a lease, by the backoff cap (the kill switch must reach the agent).
    {1, 0.0, 86400s, {}, 40000ms},
    {1, 0.0, 86400s, 0ms, 40000ms},
    // The lease also bounds the backoff itself.
    {5, top, {}, 20s, 18000ms},
    // Never under the protocol's minimum.
    {1, 0.0, {}, 500ms, 1000ms},
    {1, 0.0, {}, 2001ms, 1000ms},
    {4, top, 30s, 800ms, 40000ms},
};

BOOST_DATA_TEST_CASE(heartbeat_retry_delays, bdata::make(retry_rows), row) {
    const ms d = pc::heartbeat_retry_delay(row.failures, 10s, row.u, 0.1, row.retry_after, row.lease_left, 2s);
    BOOST_TEST(d.count() == row.expected.count());
}

BOOST_AUTO_TEST_CASE(an_outage_sends_fewer_heartbeats_than_the_normal_cadence) {
    // Over a long outage, with any draws, the mean wait grows past the interval.
    for (double u : {0.0, 0.25, 0.5, 0.75, top}) {
        ms total{0};
        for (unsigned k = 1; k <= 20; ++k) total += pc::heartbeat_retry_delay(k, 5s, u, 0.1, {}, {}, 10s);
        if (u >= 0.5) BOOST_TEST(total.count() > 20 * 5000); // at most one request per interval
        BOOST_TEST(total.count() >= 20 * 1000);                // and never a tight loop
    }
}

BOOST_AUTO_TEST_CASE(no_failure_counts_as_the_first) {
    BOOST_TEST(pc::heartbeat_retry_delay(0, 10s, top, 0.1, {}, {}, 2s).count() == 5000);
}

BOOST_AUTO_TEST_CASE(lease_bound_leaves_room_for_one_request) {
    BOOST_TEST(!pc::lease_bound(std::nullopt, 10s).has_value());
    BOOST_TEST(!pc::lease_bound(0ms, 10s).has_value());
    BOOST_TEST(!pc::lease_bound(-5ms, 10s).has_value());
    BOOST_TEST(pc::lease_bound(ms(180000), 10s)->count() == 170000);
    BOOST_TEST(pc::lease_bound(ms(10001), 10s)->count() == 1);
    BOOST_TEST(!pc::lease_bound(ms(10000), 10s).has_value());
    BOOST_TEST(!pc::lease_bound(ms(8000), 10s).has_value());
}

// ---- directed beats -------------------------------------------------------------------------

struct directed_row {
    ms ahead;
    std::optional<ms> lease_left;
    std::optional<ms> expected;
};
std::ostream& operator<<(std::ostream& os, const directed_row& r) {
    return os << "ahead=" << r.ahead.count() << "ms";
}

const directed_row directed_rows[] = {
    {30s, 180s, 30000ms},            // as directed
    {200ms, 180s, 1000ms},           // never sooner than a second
    {-5s, 180s, 1000ms},             // just passed (a slow answer): as soon as allowed
    {-60s, 180s, 1000ms},            // one interval in the past still counts as just passed
    {-61s, 180s, std::nullopt},      // further in the past: not believed
    {300s, 180s, 180000ms},          // never beyond the lease
    {300s, std::nullopt, 300000ms},  // no lease known: as directed
    {ms(std::chrono::hours(24)), std::nullopt, ms(std::chrono::hours(24))},
    {ms(std::chrono::hours(24)) + 1ms, std::nullopt, std::nullopt}, // more than a day ahead
    {30s, 500ms, 1000ms},            // the lease nearly gone: still the minimum
};

BOOST_DATA_TEST_CASE(directed_delays, bdata::make(directed_rows), row) {
    const auto d = pc::directed_delay(row.ahead, 60s, row.lease_left);
    BOOST_TEST(d.has_value() == row.expected.has_value());
    if (d && row.expected) BOOST_TEST(d->count() == row.expected->count());
}

// ---- the task stream (issue 10, items 4 and 5) ----------------------------------------------

BOOST_AUTO_TEST_CASE(stream_reconnects_never_sooner_than_the_floor) {
    sekuire::backoff b;
    pc::stream_end end;
    end.retry_field = 1ms; // a server asking for a reconnect storm
    for (int i = 0; i < 5; ++i) {
        const ms d = pc::stream_reconnect(b, {}, end, 0.0);
        BOOST_TEST(d.count() >= pc::min_stream_reconnect_delay.count());
    }
}

BOOST_AUTO_TEST_CASE(short_connections_back_off_even_when_they_delivered_events) {
    sekuire::backoff b;
    pc::stream_end end;
    end.open_for = 50ms;
    std::vector<ms> delays;
    for (int i = 0; i < 8; ++i) delays.push_back(pc::stream_reconnect(b, {}, end, top));
    // The ceilings grow 1, 2, 4, ... s up to the 60 s cap.
    BOOST_TEST(delays[0].count() == 1000);
    BOOST_TEST(delays[1].count() == 2000);
    BOOST_TEST(delays[2].count() == 4000);
    BOOST_TEST(delays[6].count() == 60000);
    BOOST_TEST(delays[7].count() == 60000);
}

BOOST_AUTO_TEST_CASE(a_healthy_connection_resets_the_backoff) {
    sekuire::backoff b;
    pc::stream_end short_end;
    short_end.open_for = 2s;
    for (int i = 0; i < 5; ++i) pc::stream_reconnect(b, {}, short_end, top);
    BOOST_TEST(b.attempts() == 5u);
    pc::stream_end healthy;
    healthy.open_for = pc::stream_healthy_after;
    BOOST_TEST(pc::stream_reconnect(b, {}, healthy, top).count() == 1000);
    BOOST_TEST(b.attempts() == 1u);
}

BOOST_AUTO_TEST_CASE(retry_after_on_a_refused_stream_is_a_minimum) {
    sekuire::backoff b;
    pc::stream_end end;
    end.retry_after = 15s;
    BOOST_TEST(pc::stream_reconnect(b, {}, end, 0.0).count() == 15000);
    // A day is bounded: the next refusal can ask again.
    end.retry_after = ms(std::chrono::hours(24));
    BOOST_TEST(pc::stream_reconnect(b, {}, end, 0.0).count() == pc::max_stream_retry_after.count());
}

BOOST_AUTO_TEST_CASE(retry_field_sets_the_base_within_the_cap) {
    sekuire::backoff b;
    pc::stream_end end;
    end.retry_field = 5s;
    BOOST_TEST(pc::stream_reconnect(b, {}, end, 0.0).count() == 5000); // the first wait is the field
    end.retry_field = ms(std::chrono::hours(24));
    sekuire::backoff b2;
    BOOST_TEST(pc::stream_reconnect(b2, {}, end, 0.0).count() == 60000); // within the 60 s cap
}

BOOST_AUTO_TEST_SUITE_END()
