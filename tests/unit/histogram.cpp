// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/histogram.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(histogram)

BOOST_AUTO_TEST_CASE(observations_fall_in_their_buckets) {
    sekuire::latency_histogram h({0.01, 0.1, 1});
    h.observe(5ms);     // <= 0.01
    h.observe(10ms);    // == 0.01: the bound is inclusive
    h.observe(50ms);    // <= 0.1
    h.observe(2s);      // above every bound
    h.observe(-3ms);    // counts as zero
    h.observe_seconds(std::nan(""));
    h.observe_seconds(0.5);
    const auto s = h.snapshot();
    const std::vector<std::uint64_t> expected{3, 1, 1, 1};
    BOOST_TEST(s.counts == expected, boost::test_tools::per_element());
    BOOST_TEST(s.count == 6u);
    BOOST_TEST(std::fabs(s.sum - (0.005 + 0.010 + 0.050 + 2 + 0 + 0.5)) < 1e-9);
    const std::vector<double> bounds{0.01, 0.1, 1};
    BOOST_TEST(s.upper_bounds == bounds, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(bounds_are_checked) {
    BOOST_CHECK_THROW(sekuire::latency_histogram({0.1, 0.1}), sekuire::error);
    BOOST_CHECK_THROW(sekuire::latency_histogram({1, 0.5}), sekuire::error);
    BOOST_CHECK_THROW(sekuire::latency_histogram({0}), sekuire::error);
    BOOST_CHECK_THROW(sekuire::latency_histogram({std::numeric_limits<double>::infinity()}), sekuire::error);
    sekuire::latency_histogram only_inf(std::vector<double>{});
    only_inf.observe(1s);
    BOOST_TEST(only_inf.snapshot().count == 1u);
    sekuire::latency_histogram d;
    BOOST_TEST(d.upper_bounds() == sekuire::latency_histogram::default_bounds(), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(snapshots_count_what_their_buckets_hold_under_concurrent_observations) {
    sekuire::latency_histogram h;
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t)
        threads.emplace_back([&h, t] {
            for (int i = 0; i < 5000; ++i) h.observe(std::chrono::microseconds(i * (t + 1)));
        });
    for (int i = 0; i < 200; ++i) {
        const auto s = h.snapshot();
        std::uint64_t sum = 0;
        for (const auto c : s.counts) sum += c;
        BOOST_TEST_REQUIRE(sum == s.count);
    }
    for (auto& t : threads) t.join();
    BOOST_TEST(h.snapshot().count == 15000u);
}

BOOST_AUTO_TEST_SUITE_END()
