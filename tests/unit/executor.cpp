// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/executor.hpp>

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <future>

BOOST_AUTO_TEST_SUITE(executor)

BOOST_AUTO_TEST_CASE(executors_meet_the_requirements) {
    static_assert(sekuire::is_executor<sekuire::inline_executor>::value, "");
    static_assert(sekuire::is_executor<sekuire::thread_pool_executor>::value, "");
    static_assert(sekuire::check_executor<sekuire::thread_pool_executor>::value, "");
    BOOST_TEST(true);
}

BOOST_AUTO_TEST_CASE(inline_executor_runs_at_once) {
    int n = 0;
    sekuire::inline_executor{}.post([&] { ++n; });
    BOOST_TEST(n == 1);
}

BOOST_AUTO_TEST_CASE(pool_runs_everything_posted_before_it_is_destroyed) {
    std::atomic<int> n{0};
    {
        sekuire::thread_pool_executor pool(3);
        BOOST_TEST(pool.size() == 3u);
        auto copy = pool;
        for (int i = 0; i < 1000; ++i) (i % 2 ? pool : copy).post([&] { ++n; });
    }
    BOOST_TEST(n.load() == 1000);
}

BOOST_AUTO_TEST_CASE(pool_runs_on_several_threads_and_survives_a_throw) {
    std::promise<void> first_in, second_in;
    auto f1 = first_in.get_future();
    auto f2 = second_in.get_future().share();
    sekuire::thread_pool_executor pool(2); // after what its tasks use: destroyed (joined) first
    pool.post([] { throw 1; });
    pool.post([&] {
        first_in.set_value();
        f2.wait(); // both run at once, or this would wait forever (bounded below)
    });
    BOOST_TEST_REQUIRE((f1.wait_for(std::chrono::seconds(10)) == std::future_status::ready));
    pool.post([&] { second_in.set_value(); });
    BOOST_TEST((f2.wait_for(std::chrono::seconds(10)) == std::future_status::ready));
}

BOOST_AUTO_TEST_CASE(last_copy_may_die_on_a_pool_thread) {
    std::promise<void> done;
    auto f = done.get_future();
    {
        auto pool = std::make_shared<sekuire::thread_pool_executor>(1);
        auto keep = pool;
        pool->post([keep, &done]() mutable {
            keep.reset(); // not the last copy yet
            done.set_value();
        });
    }
    BOOST_TEST((f.wait_for(std::chrono::seconds(10)) == std::future_status::ready));
}

BOOST_AUTO_TEST_SUITE_END()
