// SPDX-License-Identifier: MIT
// The fakes for asynchronous agents: timers fired in fake time, a scripted asynchronous
// transport that can hold and cancel its answers, and run_async_until().
#include <sekuire/testing/fake_async.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace st = sekuire::testing;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(fake_async)

BOOST_AUTO_TEST_CASE(timers_fire_in_deadline_order_in_fake_time) {
    boost::asio::io_context ioc;
    st::fake_clock clock;
    st::fake_timer_queue q;
    st::fake_timer a(ioc.get_executor(), q), b(ioc.get_executor(), q);
    std::vector<std::string> fired;
    const auto t0 = clock.steady_now();
    a.async_wait_until(t0 + 2s, [&](sekuire::error_code ec) { fired.push_back("a:" + std::to_string(!ec)); });
    b.async_wait_until(t0 + 1s, [&](sekuire::error_code ec) { fired.push_back("b:" + std::to_string(!ec)); });
    BOOST_TEST(q.pending() == 2u);
    BOOST_TEST((q.next_deadline() == t0 + 1s));
    st::run_async_for(clock, ioc, q, 1500ms);
    BOOST_TEST(fired == std::vector<std::string>{"b:1"});
    BOOST_TEST((clock.steady_now() == t0 + 1500ms));
    st::run_async_for(clock, ioc, q, 1s);
    BOOST_TEST((fired == std::vector<std::string>{"b:1", "a:1"}));
    BOOST_TEST(q.pending() == 0u);
}

BOOST_AUTO_TEST_CASE(a_new_wait_or_cancel_aborts_the_pending_one) {
    boost::asio::io_context ioc;
    st::fake_clock clock;
    st::fake_timer_queue q;
    st::fake_timer t(ioc.get_executor(), q);
    std::vector<sekuire::error_code> results;
    t.async_wait_until(clock.steady_now() + 1s, [&](sekuire::error_code ec) { results.push_back(ec); });
    t.async_wait_until(clock.steady_now() + 5s, [&](sekuire::error_code ec) { results.push_back(ec); });
    ioc.poll();
    BOOST_TEST_REQUIRE(results.size() == 1u);
    BOOST_TEST((results[0] == boost::asio::error::operation_aborted));
    t.cancel();
    ioc.restart();
    ioc.poll();
    BOOST_TEST_REQUIRE(results.size() == 2u);
    BOOST_TEST((results[1] == boost::asio::error::operation_aborted));
    BOOST_TEST(q.pending() == 0u);
}

BOOST_AUTO_TEST_CASE(a_busy_loop_of_timers_is_reported) {
    boost::asio::io_context ioc;
    st::fake_clock clock;
    st::fake_timer_queue q;
    st::fake_timer t(ioc.get_executor(), q);
    std::function<void(sekuire::error_code)> again = [&](sekuire::error_code) {
        t.async_wait_until(clock.steady_now(), again); // always due at once
    };
    t.async_wait_until(clock.steady_now(), again);
    BOOST_CHECK_THROW(st::run_async_for(clock, ioc, q, 1s, 1000), st::runaway_step_error);
}

BOOST_AUTO_TEST_CASE(sends_answer_from_the_script_never_inside_the_call) {
    boost::asio::io_context ioc;
    st::fake_transport script;
    script.on(sekuire::http_method::get, "/x").respond(200, "hello");
    st::fake_async_transport t(ioc.get_executor(), script);
    sekuire::http_request req;
    req.method = sekuire::http_method::get;
    req.target = "/x";
    std::vector<std::string> got;
    t.async_send(req, [&](sekuire::error_code ec, sekuire::http_response r) {
        got.push_back(std::to_string(r.status) + ":" + r.body + ":" + std::to_string(!ec));
    });
    BOOST_TEST(got.empty());
    BOOST_TEST(t.outstanding() == 1u);
    ioc.poll();
    BOOST_TEST((got == std::vector<std::string>{"200:hello:1"}));
    BOOST_TEST(script.total() == 1u);
    BOOST_TEST(t.outstanding() == 0u);
}

BOOST_AUTO_TEST_CASE(held_answers_wait_for_release_or_cancellation) {
    boost::asio::io_context ioc;
    st::fake_transport script;
    script.on(sekuire::http_method::post, "/y").respond(201);
    st::fake_async_transport t(ioc.get_executor(), script);
    t.hold(true);
    sekuire::http_request req;
    req.method = sekuire::http_method::post;
    req.target = "/y";
    std::vector<sekuire::error_code> results;
    boost::asio::cancellation_signal sig;
    t.async_send(req, boost::asio::bind_cancellation_slot(sig.slot(), [&](sekuire::error_code ec, sekuire::http_response) {
                     results.push_back(ec);
                 }));
    t.async_send(req, [&](sekuire::error_code ec, sekuire::http_response r) {
        results.push_back(ec);
        BOOST_TEST(r.status == 201);
    });
    ioc.poll();
    BOOST_TEST(script.total() == 2u); // recorded when sent
    BOOST_TEST(t.held() == 2u);
    BOOST_TEST(results.empty());
    sig.emit(boost::asio::cancellation_type::terminal);
    ioc.restart();
    ioc.poll();
    BOOST_TEST_REQUIRE(results.size() == 1u);
    BOOST_TEST((results[0] == sekuire::errc::canceled));
    BOOST_TEST(t.release() == 1u);
    ioc.restart();
    ioc.poll();
    BOOST_TEST_REQUIRE(results.size() == 2u);
    BOOST_TEST(!results[1]);
    BOOST_TEST(t.outstanding() == 0u);
}

BOOST_AUTO_TEST_CASE(streams_replay_finite_scripts) {
    boost::asio::io_context ioc;
    st::fake_transport script;
    st::fake_transport::stream_script s;
    s.chunks = {"data: a\n\n", "data: b\n\n"};
    script.on_stream("/s", s);
    st::fake_async_transport t(ioc.get_executor(), script);
    sekuire::http_request req;
    req.target = "/s";
    std::string body;
    int status = 0;
    sekuire::stream_callbacks cb;
    cb.on_response = [&](const sekuire::http_response& head) {
        status = head.status;
        return true;
    };
    cb.on_data = [&](std::string_view chunk) {
        body += chunk;
        return true;
    };
    std::vector<sekuire::error_code> ends;
    t.async_stream(req, cb, [&](sekuire::error_code ec) { ends.push_back(ec); });
    BOOST_TEST(ends.empty());
    ioc.poll();
    BOOST_TEST_REQUIRE(ends.size() == 1u);
    BOOST_TEST(!ends[0]);
    BOOST_TEST(status == 200);
    BOOST_TEST(body == "data: a\n\ndata: b\n\n");
}

namespace {
// A stream on `t` for path /h recording its chunks and its end.
struct stream_probe {
    std::string body;
    std::vector<sekuire::error_code> ends;
    bool more = true; // what on_data answers
    sekuire::stream_callbacks callbacks() {
        sekuire::stream_callbacks cb;
        cb.on_data = [this](std::string_view chunk) {
            body += chunk;
            return more;
        };
        return cb;
    }
};
sekuire::http_request stream_request() {
    sekuire::http_request req;
    req.target = "/h";
    return req;
}
} // namespace

BOOST_AUTO_TEST_CASE(a_held_stream_stays_open_and_takes_pushed_chunks_without_blocking) {
    boost::asio::io_context ioc;
    st::fake_transport script;
    st::fake_transport::stream_script s;
    s.chunks = {"data: first\n\n"};
    s.hold_open = true;
    script.on_stream("/h", s);
    st::fake_async_transport t(ioc.get_executor(), script);
    stream_probe p;
    t.async_stream(stream_request(), p.callbacks(), [&](sekuire::error_code ec) { p.ends.push_back(ec); });
    BOOST_TEST(t.open_streams() == 0u); // nothing inside the call
    ioc.poll();                         // returns: the open stream blocks nothing
    BOOST_TEST(t.open_streams() == 1u);
    BOOST_TEST(p.body == "data: first\n\n");
    BOOST_TEST(p.ends.empty());
    t.push_chunk("data: second\n\n");
    BOOST_TEST(p.body == "data: first\n\n"); // delivered on the executor, not inside the call
    ioc.restart();
    ioc.poll();
    BOOST_TEST(p.body == "data: first\n\ndata: second\n\n");
    t.close_streams();
    ioc.restart();
    ioc.poll();
    BOOST_TEST_REQUIRE(p.ends.size() == 1u);
    BOOST_TEST(!p.ends[0]);
    BOOST_TEST(t.open_streams() == 0u);
    // Closed: a later chunk reaches nobody.
    t.push_chunk("data: third\n\n");
    ioc.restart();
    ioc.poll();
    BOOST_TEST(p.body == "data: first\n\ndata: second\n\n");
    BOOST_TEST(p.ends.size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_held_stream_ends_on_cancellation_or_when_a_callback_says_so) {
    boost::asio::io_context ioc;
    st::fake_transport script;
    st::fake_transport::stream_script s;
    s.hold_open = true;
    script.on_stream("/h", s);
    st::fake_async_transport t(ioc.get_executor(), script);
    stream_probe cancelled, refusing;
    boost::asio::cancellation_signal sig;
    t.async_stream(stream_request(), cancelled.callbacks(),
                   boost::asio::bind_cancellation_slot(sig.slot(), [&](sekuire::error_code ec) { cancelled.ends.push_back(ec); }));
    refusing.more = false;
    t.async_stream(stream_request(), refusing.callbacks(), [&](sekuire::error_code ec) { refusing.ends.push_back(ec); });
    ioc.poll();
    BOOST_TEST(t.open_streams() == 2u);
    sig.emit(boost::asio::cancellation_type::terminal);
    ioc.restart();
    ioc.poll();
    BOOST_TEST_REQUIRE(cancelled.ends.size() == 1u);
    BOOST_TEST((cancelled.ends[0] == sekuire::errc::canceled));
    BOOST_TEST(t.open_streams() == 1u);
    t.push_chunk("x");
    ioc.restart();
    ioc.poll();
    BOOST_TEST(refusing.body == "x");
    BOOST_TEST_REQUIRE(refusing.ends.size() == 1u);
    BOOST_TEST(!refusing.ends[0]);
    BOOST_TEST(cancelled.body.empty()); // ended before the chunk
    BOOST_TEST(t.open_streams() == 0u);
}

BOOST_AUTO_TEST_CASE(a_stream_cancelled_before_it_starts_never_reaches_the_script_callbacks) {
    boost::asio::io_context ioc;
    st::fake_transport script;
    st::fake_transport::stream_script s;
    s.chunks = {"data: a\n\n"};
    s.hold_open = true;
    script.on_stream("/h", s);
    st::fake_async_transport t(ioc.get_executor(), script);
    stream_probe p;
    boost::asio::cancellation_signal sig;
    t.async_stream(stream_request(), p.callbacks(),
                   boost::asio::bind_cancellation_slot(sig.slot(), [&](sekuire::error_code ec) { p.ends.push_back(ec); }));
    sig.emit(boost::asio::cancellation_type::terminal);
    ioc.poll();
    BOOST_TEST_REQUIRE(p.ends.size() == 1u);
    BOOST_TEST((p.ends[0] == sekuire::errc::canceled));
    BOOST_TEST(p.body.empty());
    BOOST_TEST(t.open_streams() == 0u);
}

BOOST_AUTO_TEST_CASE(chunks_pushed_at_a_fake_time_arrive_when_the_clock_gets_there) {
    boost::asio::io_context ioc;
    st::fake_clock clock;
    st::fake_timer_queue timers;
    st::fake_transport script;
    st::fake_transport::stream_script s;
    s.hold_open = true;
    script.on_stream("/h", s);
    st::fake_async_transport t(ioc.get_executor(), script);
    stream_probe p;
    t.async_stream(stream_request(), p.callbacks(), [&](sekuire::error_code ec) { p.ends.push_back(ec); });
    const auto t0 = clock.steady_now();
    t.push_chunk_at(timers, t0 + 10s, "late;");
    t.push_chunk_at(timers, t0 + 5s, "early;");
    st::run_async_for(clock, ioc, timers, 4s);
    BOOST_TEST(p.body.empty());
    st::run_async_for(clock, ioc, timers, 1s);
    BOOST_TEST(p.body == "early;");
    st::run_async_for(clock, ioc, timers, 10s);
    BOOST_TEST(p.body == "early;late;");
    BOOST_TEST(timers.pending() == 0u);
    BOOST_TEST(p.ends.empty());
    t.close_streams();
    ioc.restart();
    ioc.poll();
    BOOST_TEST(p.ends.size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
