// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/clock.hpp>

#include <boost/test/unit_test.hpp>

// The suite opens a namespace named like a C library function: keep it apart.
namespace sekuire_clock_tests {
BOOST_AUTO_TEST_SUITE(clock)

BOOST_AUTO_TEST_CASE(system_clock_meets_the_requirements) {
    static_assert(sekuire::is_clock<sekuire::system_clock>::value, "");
    static_assert(sekuire::check_clock<sekuire::system_clock>::value, "");
    sekuire::system_clock c;
    const auto a = c.steady_now();
    const auto b = c.steady_now();
    BOOST_TEST((b >= a));
    BOOST_TEST((c.wall_now() > sekuire::wall_time_point{}));
}

BOOST_AUTO_TEST_CASE(wait_until_returns_the_predicate_without_blocking) {
    sekuire::system_clock c;
    std::mutex m;
    std::condition_variable cv;
    std::unique_lock<std::mutex> lock(m);
    // A true predicate returns at once; a deadline in the past returns at once too.
    BOOST_TEST(c.wait_until(lock, cv, c.steady_now() + std::chrono::hours(1), [] { return true; }));
    BOOST_TEST(!c.wait_until(lock, cv, c.steady_now() - std::chrono::seconds(1), [] { return false; }));
}

BOOST_AUTO_TEST_SUITE_END()
} // namespace sekuire_clock_tests
