// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/stop_token.hpp>

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <future>
#include <thread>

BOOST_AUTO_TEST_SUITE(stop_token)

BOOST_AUTO_TEST_CASE(default_token_never_stops) {
    sekuire::stop_token t;
    BOOST_TEST(!t.stop_possible());
    BOOST_TEST(!t.stop_requested());
    int calls = 0;
    sekuire::stop_callback cb(t, [&] { ++calls; });
    BOOST_TEST(calls == 0);
}

BOOST_AUTO_TEST_CASE(request_runs_callbacks_once) {
    sekuire::stop_source s;
    auto t = s.get_token();
    int a = 0, b = 0;
    sekuire::stop_callback ca(t, [&] { ++a; });
    {
        sekuire::stop_callback cb(t, [&] { ++b; });
    } // deregistered before the stop
    BOOST_TEST(s.request_stop());
    BOOST_TEST(!s.request_stop());
    BOOST_TEST(a == 1);
    BOOST_TEST(b == 0);
    BOOST_TEST(t.stop_requested());
    BOOST_TEST(s.stop_requested());
}

BOOST_AUTO_TEST_CASE(callback_after_the_stop_runs_at_once) {
    sekuire::stop_source s;
    s.request_stop();
    int calls = 0;
    sekuire::stop_callback cb(s.get_token(), [&] { ++calls; });
    BOOST_TEST(calls == 1);
}

BOOST_AUTO_TEST_CASE(throwing_callback_does_not_stop_the_others) {
    sekuire::stop_source s;
    int calls = 0;
    sekuire::stop_callback c1(s.get_token(), [] { throw 1; });
    sekuire::stop_callback c2(s.get_token(), [&] { ++calls; });
    s.request_stop();
    BOOST_TEST(calls == 1);
}

BOOST_AUTO_TEST_CASE(destructor_waits_for_a_running_callback) {
    sekuire::stop_source s;
    std::promise<void> entered, release;
    auto release_f = release.get_future().share();
    std::atomic<bool> finished{false};
    auto cb = std::make_unique<sekuire::stop_callback<std::function<void()>>>(
        s.get_token(), std::function<void()>([&] {
            entered.set_value();
            release_f.wait();
            finished = true;
        }));
    std::thread t([&] { s.request_stop(); });
    entered.get_future().wait();
    std::thread destroyer([&] { cb.reset(); }); // blocks until the callback returns
    release.set_value();
    destroyer.join();
    BOOST_TEST(finished.load());
    t.join();
}

BOOST_AUTO_TEST_CASE(callback_may_destroy_itself_from_its_own_thread) {
    sekuire::stop_source s;
    std::unique_ptr<sekuire::stop_callback<std::function<void()>>> cb;
    cb = std::make_unique<sekuire::stop_callback<std::function<void()>>>(s.get_token(),
                                                                         std::function<void()>([&] { cb.reset(); }));
    s.request_stop(); // no deadlock
    BOOST_TEST(!cb);
}

BOOST_AUTO_TEST_SUITE_END()
