// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/testing/fake_transport.hpp>

#include <boost/test/unit_test.hpp>

#include <future>
#include <thread>

using namespace std::chrono_literals;
namespace st = sekuire::testing;
using sekuire::http_method;

namespace {
sekuire::http_request req(http_method m, std::string target, std::string body = {}) {
    sekuire::http_request r;
    r.method = m;
    r.target = std::move(target);
    r.body = std::move(body);
    return r;
}
} // namespace

BOOST_AUTO_TEST_SUITE(fake_transport)

BOOST_AUTO_TEST_CASE(answers_in_order_then_the_last_one_keeps_answering) {
    static_assert(sekuire::is_transport<st::fake_transport>::value, "");
    st::fake_transport t;
    t.on(http_method::post, "/a").respond(503).respond(200, "ok");
    sekuire::error_code ec;
    BOOST_TEST(t.send(req(http_method::post, "/a"), ec).status == 503);
    BOOST_TEST(t.send(req(http_method::post, "/a?x=1"), ec).status == 200); // query ignored
    BOOST_TEST(t.send(req(http_method::post, "/a"), ec).body == "ok");
    t.on(http_method::post, "/a").respond(201); // appended later: used next
    BOOST_TEST(t.send(req(http_method::post, "/a"), ec).status == 201);
    BOOST_TEST(t.send(req(http_method::post, "/a"), ec).status == 201);
    t.on(http_method::post, "/a").clear();
    BOOST_TEST(t.send(req(http_method::post, "/a"), ec).status == 404);
    BOOST_TEST(t.unscripted_count() == 1u);
    BOOST_TEST(t.count(http_method::post, "/a") == 6u);
}

BOOST_AUTO_TEST_CASE(exact_routes_beat_prefixes_and_longer_prefixes_win) {
    st::fake_transport t;
    t.on_prefix(http_method::get, "/x").respond(1);
    t.on_prefix(http_method::get, "/x/y").respond(2);
    t.on(http_method::get, "/x/y/z").respond(3);
    sekuire::error_code ec;
    BOOST_TEST(t.send(req(http_method::get, "/x/a"), ec).status == 1);
    BOOST_TEST(t.send(req(http_method::get, "/x/y/a"), ec).status == 2);
    BOOST_TEST(t.send(req(http_method::get, "/x/y/z"), ec).status == 3);
    BOOST_TEST(t.send(req(http_method::post, "/x/y/z"), ec).status == 404); // other method
}

BOOST_AUTO_TEST_CASE(failures_handlers_and_the_nth_call) {
    st::fake_transport t;
    t.on(http_method::get, "/f").fail(sekuire::errc::timeout);
    t.on(http_method::get, "/h").handle([](const sekuire::http_request& r) {
        return st::fake_transport::reply{200, "echo:" + r.body, {{"X", "1"}}, {}};
    });
    sekuire::error_code ec;
    t.send(req(http_method::get, "/f"), ec);
    BOOST_TEST((ec == sekuire::errc::timeout));
    auto res = t.send(req(http_method::get, "/h", "b"), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(res.body == "echo:b");
    BOOST_TEST(*sekuire::find_header(res.headers, "x") == "1");
    t.fail_call(2, sekuire::errc::connection_lost);
    t.send(req(http_method::get, "/h"), ec);
    BOOST_TEST(!ec);
    t.send(req(http_method::get, "/h"), ec);
    BOOST_TEST((ec == sekuire::errc::connection_lost));
    t.send(req(http_method::get, "/h"), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(t.total() == 5u);
    t.clear_requests();
    BOOST_TEST(t.requests().empty());
}

BOOST_AUTO_TEST_CASE(streams_deliver_scripted_chunks) {
    st::fake_transport t;
    st::fake_transport::stream_script s1;
    s1.chunks = {"a", "b"};
    st::fake_transport::stream_script s2;
    s2.status = 401;
    s2.end_error = sekuire::errc::connection_lost;
    t.on_stream("/s", s1);
    t.on_stream("/s", s2);
    std::string got;
    int status = 0;
    sekuire::stream_callbacks cb;
    cb.on_response = [&](const sekuire::http_response& h) {
        status = h.status;
        return true;
    };
    cb.on_data = [&](std::string_view c) {
        got += c;
        return true;
    };
    sekuire::error_code ec;
    sekuire::stop_source never;
    t.stream(req(http_method::get, "/s?q"), cb, never.get_token(), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(got == "ab");
    BOOST_TEST(status == 200);
    t.stream(req(http_method::get, "/s"), cb, never.get_token(), ec);
    BOOST_TEST(status == 401);
    BOOST_TEST((ec == sekuire::errc::connection_lost));
    t.stream(req(http_method::get, "/s"), cb, never.get_token(), ec); // the last one again
    BOOST_TEST(status == 401);
    BOOST_TEST(t.requests().back().streamed);
}

BOOST_AUTO_TEST_CASE(held_stream_takes_pushed_chunks_and_stops) {
    st::fake_transport t;
    st::fake_transport::stream_script s;
    s.hold_open = true;
    t.on_stream("/s", s);
    std::promise<sekuire::error_code> done;
    std::string got;
    std::mutex m;
    sekuire::stop_source stop;
    std::thread th([&] {
        sekuire::stream_callbacks cb;
        cb.on_data = [&](std::string_view c) {
            std::lock_guard<std::mutex> lock(m);
            got += c;
            return true;
        };
        sekuire::error_code ec;
        t.stream(req(http_method::get, "/s"), cb, stop.get_token(), ec);
        done.set_value(ec);
    });
    BOOST_TEST_REQUIRE(t.wait_for_open_streams(1, 10s));
    t.push_chunk("x");
    t.push_chunk("y");
    stop.request_stop();
    auto f = done.get_future();
    BOOST_TEST_REQUIRE((f.wait_for(10s) == std::future_status::ready));
    BOOST_TEST((f.get() == sekuire::errc::canceled));
    th.join();
    BOOST_TEST(t.open_streams() == 0u);
    // Pushed chunks are delivered in order before the stop is seen, or not at all after it.
    std::lock_guard<std::mutex> lock(m);
    BOOST_TEST((got == "" || got == "x" || got == "xy"));
}

BOOST_AUTO_TEST_CASE(close_streams_ends_held_streams_cleanly) {
    st::fake_transport t;
    st::fake_transport::stream_script s;
    s.hold_open = true;
    t.on_stream("/s", s);
    std::promise<sekuire::error_code> done;
    std::thread th([&] {
        sekuire::stream_callbacks cb;
        sekuire::error_code ec;
        sekuire::stop_source never;
        t.stream(req(http_method::get, "/s"), cb, never.get_token(), ec);
        done.set_value(ec);
    });
    BOOST_TEST_REQUIRE(t.wait_for_open_streams(1, 10s));
    t.close_streams();
    auto f = done.get_future();
    BOOST_TEST_REQUIRE((f.wait_for(10s) == std::future_status::ready));
    BOOST_TEST(!f.get());
    th.join();
}

BOOST_AUTO_TEST_SUITE_END()
