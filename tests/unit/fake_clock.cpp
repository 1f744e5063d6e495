// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/testing/fake_clock.hpp>

#include <boost/test/unit_test.hpp>

#include <future>
#include <thread>

using namespace std::chrono_literals;
namespace st = sekuire::testing;

BOOST_AUTO_TEST_SUITE(fake_clock)

BOOST_AUTO_TEST_CASE(starts_at_a_fixed_date_and_moves_only_when_told) {
    static_assert(sekuire::is_clock<st::fake_clock>::value, "");
    st::fake_clock c;
    BOOST_TEST(sekuire::format_rfc3339(c.wall_now()) == "2026-01-01T00:00:00Z");
    BOOST_TEST((c.steady_now() == sekuire::steady_time_point{}));
    c.advance(90s);
    BOOST_TEST(sekuire::format_rfc3339(c.wall_now()) == "2026-01-01T00:01:30Z");
    BOOST_TEST((c.steady_now() == sekuire::steady_time_point{} + 90s));
    BOOST_CHECK_THROW(c.advance(-1s), std::invalid_argument);
    c.advance_to(sekuire::steady_time_point{} + 10s); // earlier: no-op
    BOOST_TEST((c.steady_now() == sekuire::steady_time_point{} + 90s));
}

BOOST_AUTO_TEST_CASE(copies_share_time) {
    st::fake_clock a;
    st::fake_clock b = a;
    a.advance(5s);
    BOOST_TEST((b.steady_now() == sekuire::steady_time_point{} + 5s));
}

BOOST_AUTO_TEST_CASE(wall_time_can_jump_back_steady_cannot) {
    st::fake_clock c;
    c.advance(10s);
    c.jump_wall(-3h);
    BOOST_TEST(sekuire::format_rfc3339(c.wall_now()) == "2025-12-31T21:00:10Z");
    BOOST_TEST((c.steady_now() == sekuire::steady_time_point{} + 10s));
    c.set_wall(st::fake_clock::default_start());
    BOOST_TEST(sekuire::format_rfc3339(c.wall_now()) == "2026-01-01T00:00:00Z");
    c.advance(1s); // both move together again
    BOOST_TEST(sekuire::format_rfc3339(c.wall_now()) == "2026-01-01T00:00:01Z");
}

BOOST_AUTO_TEST_CASE(wait_until_without_blocking_when_due_or_true) {
    st::fake_clock c;
    std::mutex m;
    std::condition_variable cv;
    std::unique_lock<std::mutex> lock(m);
    BOOST_TEST(c.wait_until(lock, cv, sekuire::steady_time_point{} + 1h, [] { return true; }));
    BOOST_TEST(!c.wait_until(lock, cv, sekuire::steady_time_point{}, [] { return false; }));
    BOOST_TEST(c.waiter_count() == 0u);
}

BOOST_AUTO_TEST_CASE(advance_wakes_waiters_in_deadline_order) {
    st::fake_clock c;
    std::mutex m;
    std::condition_variable cv1, cv2;
    std::vector<int> order;
    std::mutex order_mutex;
    auto waiter = [&](std::condition_variable& cv, std::chrono::seconds d, int id) {
        std::unique_lock<std::mutex> lock(m);
        c.wait_until(lock, cv, sekuire::steady_time_point{} + d, [] { return false; });
        std::lock_guard<std::mutex> g(order_mutex);
        order.push_back(id);
    };
    std::thread late(waiter, std::ref(cv2), 20s, 2);
    std::thread early(waiter, std::ref(cv1), 10s, 1);
    BOOST_TEST_REQUIRE(c.block_until_waiters(2));
    BOOST_TEST((c.next_deadline() == sekuire::steady_time_point{} + 10s));
    c.advance(15s); // only the first is due
    early.join();
    BOOST_TEST(c.waiter_count() == 1u);
    BOOST_TEST((order == std::vector<int>{1}));
    c.advance(5s);
    late.join();
    BOOST_TEST((order == std::vector<int>{1, 2}));
    BOOST_TEST(c.waiter_count() == 0u);
}

BOOST_AUTO_TEST_CASE(notification_with_a_true_predicate_wakes_a_waiter) {
    st::fake_clock c;
    std::mutex m;
    std::condition_variable cv;
    bool stop = false;
    std::promise<bool> result;
    std::thread t([&] {
        std::unique_lock<std::mutex> lock(m);
        result.set_value(c.wait_until(lock, cv, sekuire::steady_time_point::max(), [&] { return stop; }));
    });
    BOOST_TEST_REQUIRE(c.block_until_waiters(1));
    {
        std::lock_guard<std::mutex> lock(m);
        stop = true;
    }
    cv.notify_all();
    auto f = result.get_future();
    BOOST_TEST_REQUIRE((f.wait_for(10s) == std::future_status::ready));
    BOOST_TEST(f.get());
    t.join();
    BOOST_TEST((c.steady_now() == sekuire::steady_time_point{})); // time did not move
}

BOOST_AUTO_TEST_CASE(run_until_moves_from_deadline_to_deadline) {
    st::fake_clock c;
    std::vector<std::int64_t> seen;
    auto next = sekuire::steady_time_point{} + 7s;
    const auto calls = st::run_for(c, 30s, [&] {
        const auto now = c.steady_now();
        if (now >= next) {
            seen.push_back(std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
            next = now + 7s;
        }
        return next;
    });
    BOOST_TEST((seen == std::vector<std::int64_t>{7, 14, 21, 28}));
    BOOST_TEST(calls == 5u);
    BOOST_TEST((c.steady_now() == sekuire::steady_time_point{} + 30s));
}

BOOST_AUTO_TEST_CASE(run_until_catches_a_busy_loop) {
    st::fake_clock c;
    BOOST_CHECK_THROW(st::run_for(c, 1s, [&] { return c.steady_now(); }, 1000), st::runaway_step_error);
}

BOOST_AUTO_TEST_SUITE_END()
