// SPDX-License-Identifier: MIT
// The asynchronous worker on a fake asynchronous transport, fake timers and the fake clock:
// the synchronous worker's main flows (dispatch and results, retries, commands, the kill
// switch, the stream's pacing and refusals, the policy gateway, the drain), asynchronous
// handlers, start and stop completions. No sockets, no sleeping: time moves only through
// run_async_for().
#include <sekuire/async/worker.hpp>

#include "worker_fixture.hpp"

#include <sekuire/testing/fake_async.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#endif

#include <algorithm>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace worker_test;

BOOST_AUTO_TEST_SUITE(async_worker)

namespace {

using async_test_worker =
    sekuire::async::basic_worker<st::fake_async_transport, st::fake_clock, sekuire::memory_store, st::fake_timer>;

boost::json::value echo(const sekuire::task_context&, const boost::json::value& input) { return input; }

template <class Completion>
const proto::completion_request* find_result(const std::vector<Completion>& all, const std::string& id) {
    for (const auto& c : all)
        if (c.task_id == id) return &c.body;
    return nullptr;
}

// The synchronous worker's fixture (scripts, tokens, recorded callbacks) driving an
// asynchronous worker on one io_context.
struct async_fixture : fixture {
    boost::asio::io_context ioc;
    st::fake_timer_queue timers;
    std::optional<st::fake_async_transport> async_transport;
    std::unique_ptr<async_test_worker> aw;
    std::vector<std::string> done; // "start:<message>", "stop:<message>"

    ~async_fixture() {
        transport.clear_scripts();
        if (aw) {
            aw.reset(); // begins the stop: the drain runs while ioc runs
            st::run_async_for(clock, ioc, timers, 60s);
        }
        if (async_transport) {
            async_transport->close_streams();
            async_transport->hold(false);
            async_transport->release();
        }
        ioc.restart();
        ioc.poll();
    }

    async_test_worker& make_async(sekuire::worker_options o) {
        async_transport.emplace(ioc.get_executor(), transport);
        aw = std::make_unique<async_test_worker>(ioc.get_executor(), std::move(o), *async_transport, clock, store,
                                                 st::fake_timer(ioc.get_executor(), timers));
        return *aw;
    }
    async_test_worker& make_async() { return make_async(options()); }

    void start() {
        aw->async_start([this](sekuire::error_code ec) { done.push_back("start:" + ec.message()); });
    }
    void stop() {
        aw->async_stop([this](sekuire::error_code ec) { done.push_back("stop:" + ec.message()); });
    }
    std::size_t run_for(std::chrono::milliseconds d) { return st::run_async_for(clock, ioc, timers, d); }
    bool completed(const std::string& what) const {
        return std::find(done.begin(), done.end(), what + ":" + sekuire::error_code().message()) != done.end();
    }

    /// Scripts one stream connection delivering `chunks`, then held open.
    void held_stream(std::vector<std::string> chunks = {}) {
        st::fake_transport::stream_script s;
        s.chunks = std::move(chunks);
        s.hold_open = true;
        transport.on_stream(stream_path, s);
    }
    /// Delivers `chunk` to the open stream now and runs what it makes ready.
    void push(const std::string& chunk) {
        async_transport->push_chunk(chunk);
        run_for(0ms);
    }
};

} // namespace

// ---- dispatch and results ---------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(a_task_on_the_open_stream_runs_its_handler_and_is_reported, async_fixture) {
    auto& w = make_async();
    sekuire::task_context seen;
    w.on_task("summarize", [&](const sekuire::task_context& ctx, const boost::json::value& input) {
        seen = ctx;
        const std::string text(input.at("text").as_string());
        return boost::json::value{{"summary", text.substr(0, 3)}};
    });
    held_stream({": hello\n\n"});
    start();
    BOOST_TEST(transport.total() == 0u); // nothing happens inside the call
    BOOST_TEST(done.empty());
    run_for(0ms);
    BOOST_TEST(completed("start"));
    BOOST_TEST(async_transport->open_streams() == 1u);
    BOOST_TEST(w.get_status().stream_connected);
    auto t = make_task("task_1", "summarize", boost::json::object{{"text", "hello world"}});
    t.workflow_id = "wf_1";
    t.deadline_at = clock.wall_now() + 30s;
    push(task_event(t, "1"));

    BOOST_TEST(seen.task_id == "task_1");
    BOOST_TEST(seen.workflow_id.value_or("") == "wf_1");
    BOOST_TEST((seen.deadline == clock.wall_now() + 30s));
    BOOST_TEST(seen.stop.stop_possible());
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u);
    BOOST_TEST(all[0].task_id == "task_1");
    BOOST_TEST(all[0].body.installation_id == installation);
    BOOST_TEST((all[0].body.status == proto::task_status::completed));
    BOOST_TEST(all[0].body.output.at("summary").as_string() == "hel");
    BOOST_TEST(all[0].body.trace_id.value_or("") == "trace-task_1");
    const auto streams = stream_requests();
    BOOST_TEST_REQUIRE(streams.size() == 1u);
    BOOST_TEST(header(streams[0], "Accept") == "text/event-stream");
    BOOST_TEST(header(streams[0], "Authorization") == "Bearer " + runtime_1);
    BOOST_TEST(streams[0].request.target == proto::path::task_stream(installation, {"summarize"}));
    const auto s = w.get_status();
    BOOST_TEST(s.completed == 1u);
    BOOST_TEST(s.received == 1u);
    BOOST_TEST(s.last_event_id == "1");
    BOOST_TEST(w.metrics().requests_handled == 1);
    // The stream stays open: a later task arrives on the same connection.
    run_for(20s);
    push(task_event(make_task("task_2", "summarize"), "2"));
    BOOST_TEST(completions().size() == 2u);
    BOOST_TEST(stream_requests().size() == 1u);
    BOOST_TEST(transport.unscripted_count() == 0u);
}

BOOST_FIXTURE_TEST_CASE(events_pushed_at_fake_times_arrive_as_the_clock_moves, async_fixture) {
    auto& w = make_async();
    std::vector<std::int64_t> at;
    const auto t0 = clock.steady_now();
    w.on_task("summarize", [&](const sekuire::task_context&, const boost::json::value& v) {
        at.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now() - t0).count());
        return v;
    });
    held_stream();
    start();
    run_for(0ms);
    async_transport->push_chunk_at(timers, t0 + 5s, task_event(make_task("a", "summarize")));
    async_transport->push_chunk_at(timers, t0 + 12s, task_event(make_task("b", "summarize")));
    run_for(4s);
    BOOST_TEST(at.empty());
    run_for(10s);
    BOOST_TEST((at == std::vector<std::int64_t>{5000, 12000}));
    BOOST_TEST(completions().size() == 2u);
}

BOOST_FIXTURE_TEST_CASE(handler_failures_are_reported_with_their_codes, async_fixture) {
    auto& w = make_async();
    w.on_task("throws", [](const sekuire::task_context&, const boost::json::value&) -> boost::json::value {
        throw std::runtime_error("model unavailable");
    });
    w.on_task("invalid", [](const sekuire::task_context&, const boost::json::value&) -> boost::json::value {
        throw sekuire::task_failure(proto::task_error::invalid_input, "text is required");
    });
    w.on_task_async("async_throws", [](const sekuire::task_context&, const boost::json::value&, sekuire::async::task_done) {
        throw std::runtime_error("could not start");
    });
    w.on_task_async("async_fails", [](const sekuire::task_context&, const boost::json::value&, sekuire::async::task_done d) {
        d.fail(proto::task_error::invalid_input, "bad input");
        d(boost::json::value("ignored: a completion counts once"));
    });
    w.on_task_async("async_exception", [](const sekuire::task_context&, const boost::json::value&,
                                          sekuire::async::task_done d) {
        d.fail(std::make_exception_ptr(sekuire::task_failure(proto::task_error::handler_error, "from a future")));
    });
    held_stream({task_event(make_task("t1", "throws")), task_event(make_task("t2", "invalid")),
                 task_event(make_task("t3", "async_throws")), task_event(make_task("t4", "async_fails")),
                 task_event(make_task("t5", "async_exception")), task_event(make_task("t6", "nobody"))});
    start();
    run_for(0ms);
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 6u);
    auto check = [&](const std::string& id, proto::task_status st, proto::task_error code, const std::string& msg) {
        const auto* r = find_result(all, id);
        BOOST_TEST_REQUIRE(r != nullptr);
        BOOST_TEST((r->status == st));
        BOOST_TEST_REQUIRE(r->error.has_value());
        BOOST_TEST((r->error->code == code));
        BOOST_TEST(r->error->message.find(msg) != std::string::npos);
    };
    check("t1", proto::task_status::failed, proto::task_error::handler_error, "model unavailable");
    check("t2", proto::task_status::failed, proto::task_error::invalid_input, "text is required");
    check("t3", proto::task_status::failed, proto::task_error::handler_error, "could not start");
    check("t4", proto::task_status::failed, proto::task_error::invalid_input, "bad input");
    check("t5", proto::task_status::failed, proto::task_error::handler_error, "from a future");
    check("t6", proto::task_status::rejected, proto::task_error::no_handler, "nobody");
    const auto s = w.get_status();
    BOOST_TEST(s.failed == 5u);
    BOOST_TEST(s.rejected == 1u);
}

// A handler that sleeps (a timer) holds nothing up: other tasks complete meanwhile.
BOOST_FIXTURE_TEST_CASE(a_sleeping_asynchronous_handler_does_not_block_the_loop, async_fixture) {
    auto o = options();
    o.max_concurrent_handlers = 4;
    auto& w = make_async(o);
    std::vector<std::shared_ptr<st::fake_timer>> sleeps;
    w.on_task_async("sleep", [&](const sekuire::task_context&, const boost::json::value& input,
                                 sekuire::async::task_done d) {
        auto t = std::make_shared<st::fake_timer>(ioc.get_executor(), timers);
        sleeps.push_back(t);
        t->async_wait_until(clock.steady_now() + 10s, [d, input](sekuire::error_code) { d(input); });
    });
    w.on_task("quick", echo);
    held_stream({task_event(make_task("slow", "sleep")), task_event(make_task("fast", "quick"))});
    start();
    run_for(0ms);
    auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u);
    BOOST_TEST(all[0].task_id == "fast");
    BOOST_TEST(w.get_status().in_flight == 1u);
    run_for(9s);
    BOOST_TEST(completions().size() == 1u);
    run_for(1s);
    all = completions();
    BOOST_TEST_REQUIRE(all.size() == 2u);
    BOOST_TEST(all[1].task_id == "slow");
    BOOST_TEST((all[1].body.status == proto::task_status::completed));
    BOOST_TEST(all[1].body.output.at("text").as_string() == "hello");
    BOOST_TEST(w.get_status().in_flight == 0u);
}

// A completion never called is not lost: the task times out at its deadline, its stop
// token fires, and a late call is ignored.
BOOST_FIXTURE_TEST_CASE(an_asynchronous_handler_that_never_completes_times_out, async_fixture) {
    auto o = options();
    o.handler_timeout = 30s;
    auto& w = make_async(o);
    std::optional<sekuire::async::task_done> kept;
    sekuire::stop_token token;
    w.on_task_async("hang", [&](const sekuire::task_context& ctx, const boost::json::value&, sekuire::async::task_done d) {
        kept = d;
        token = ctx.stop;
    });
    held_stream({task_event(make_task("h", "hang"))});
    start();
    run_for(29s);
    BOOST_TEST(completions().empty());
    BOOST_TEST(!token.stop_requested());
    run_for(1s);
    BOOST_TEST(token.stop_requested());
    auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u);
    BOOST_TEST((all[0].body.error->code == proto::task_error::handler_timeout));
    (*kept)(boost::json::value("late"));
    run_for(1s);
    BOOST_TEST(completions().size() == 1u);
    BOOST_TEST(w.get_status().failed == 1u);
}

BOOST_FIXTURE_TEST_CASE(completion_is_retried_with_backoff_then_409_counts_as_done, async_fixture) {
    std::vector<std::int64_t> tries;
    int call = 0;
    transport.on(http_method::post, proto::path::complete("task_r")).handle([&](const sekuire::http_request&) {
        tries.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now().time_since_epoch()).count());
        ++call;
        if (call <= 3) return st::fake_transport::reply{503, {}, {}, {}};
        return st::fake_transport::reply{409, R"({"error":{"code":"already_completed","message":"done"}})", {}, {}};
    });
    auto o = options();
    o.random = [] { return 0.999999; };
    auto& w = make_async(o);
    w.on_task("summarize", echo);
    held_stream({task_event(make_task("task_r", "summarize"))});
    start();
    run_for(0ms);
    BOOST_TEST(w.get_status().pending_results == 1u);
    run_for(30s);
    BOOST_TEST_REQUIRE(tries.size() == 4u);
    BOOST_TEST(tries[1] - tries[0] == 1000);
    BOOST_TEST(tries[2] - tries[1] == 2000);
    BOOST_TEST(tries[3] - tries[2] == 4000);
    const auto s = w.get_status();
    BOOST_TEST(s.pending_results == 0u);
    BOOST_TEST(s.results_dropped == 0u);
}

// A result whose POST is under way when the worker is stopped is still delivered: the
// drain waits for it (the answer is held until the test releases it).
BOOST_FIXTURE_TEST_CASE(stop_during_a_task_lets_it_finish_and_reports_it, async_fixture) {
    auto& w = make_async();
    std::optional<sekuire::async::task_done> kept;
    w.on_task_async("work", [&](const sekuire::task_context&, const boost::json::value&, sekuire::async::task_done d) {
        kept = d;
    });
    held_stream({task_event(make_task("w1", "work"))});
    start();
    run_for(0ms);
    BOOST_TEST(w.get_status().in_flight == 1u);
    stop();
    run_for(1s);
    BOOST_TEST(!completed("stop")); // the handler has until drain_timeout
    BOOST_TEST(async_transport->open_streams() == 0u); // no new tasks: the stream is closed
    BOOST_TEST((w.get_status().state == sekuire::worker_state::draining));
    async_transport->hold(true);
    (*kept)(boost::json::value{{"ok", true}});
    run_for(0ms);
    BOOST_TEST(async_transport->held() >= 1u);
    BOOST_TEST(!completed("stop"));
    async_transport->hold(false);
    async_transport->release();
    run_for(1s);
    BOOST_TEST(completed("stop"));
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u);
    BOOST_TEST((all[0].body.status == proto::task_status::completed));
    BOOST_TEST((w.get_status().state == sekuire::worker_state::stopped));
    BOOST_TEST(w.is_finished());
    // Stopped: a second stop completes at once, a start is refused.
    stop();
    aw->async_start([this](sekuire::error_code ec) { done.push_back("restart:" + ec.message()); });
    run_for(0ms);
    BOOST_TEST(std::count(done.begin(), done.end(), "stop:" + sekuire::error_code().message()) == 2);
    BOOST_TEST(std::count(done.begin(), done.end(),
                          "restart:" + sekuire::make_error_code(sekuire::errc::shutting_down).message()) == 1);
}

BOOST_FIXTURE_TEST_CASE(a_drain_that_runs_out_fires_the_stop_token_and_reports_the_task, async_fixture) {
    auto o = options();
    o.drain_timeout = 5s;
    auto& w = make_async(o);
    sekuire::stop_token token;
    w.on_task_async("hang", [&](const sekuire::task_context& ctx, const boost::json::value&, sekuire::async::task_done) {
        token = ctx.stop;
    });
    held_stream({task_event(make_task("h", "hang"))});
    start();
    run_for(0ms);
    stop();
    run_for(4900ms);
    BOOST_TEST(!completed("stop"));
    run_for(200ms);
    BOOST_TEST(token.stop_requested());
    BOOST_TEST(completed("stop"));
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u);
    BOOST_TEST((all[0].body.error->code == proto::task_error::shutting_down));
}

// ---- commands and the kill switch -------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(pause_rejects_new_tasks_and_resume_accepts_them_again, async_fixture) {
    auto& w = make_async();
    w.on_task("summarize", echo);
    std::vector<proto::command> via_method;
    w.on_command([&](const proto::command& c) { via_method.push_back(c); });
    held_stream();
    start();
    run_for(0ms);
    push(sse("command", R"({"id":"cmd_1","type":"pause","reason":"maintenance"})") +
         task_event(make_task("t_paused", "summarize")));
    BOOST_TEST(w.is_paused());
    BOOST_TEST_REQUIRE(via_method.size() == 1u);
    BOOST_TEST(via_method[0].reason == "maintenance");
    BOOST_TEST(commands.size() == 1u);
    auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u);
    BOOST_TEST((all[0].body.status == proto::task_status::rejected));
    BOOST_TEST((all[0].body.error->code == proto::task_error::worker_paused));
    run_for(10s);
    BOOST_TEST_REQUIRE(!worker_heartbeats().empty());
    BOOST_TEST((worker_heartbeats().back().state == proto::worker_state::paused));
    push(sse("command", R"({"id":"cmd_1","type":"pause","reason":"again"})") +
         sse("command", R"({"id":"cmd_2","type":"resume","reason":""})") + task_event(make_task("t_resumed", "summarize")));
    BOOST_TEST(!w.is_paused());
    BOOST_TEST(via_method.size() == 2u);
    all = completions();
    BOOST_TEST_REQUIRE(all.size() == 2u);
    BOOST_TEST((all[1].body.status == proto::task_status::completed));
    // From elsewhere (the SDK's beacon): the same command id acts once.
    proto::command again;
    again.id = "cmd_3";
    again.type = proto::command_type::pause;
    again.reason = "from the beacon";
    w.apply_command(again);
    w.apply_command(again);
    run_for(0ms);
    BOOST_TEST(w.is_paused());
    BOOST_TEST(via_method.size() == 3u);
}

BOOST_FIXTURE_TEST_CASE(terminate_starts_the_graceful_shutdown, async_fixture) {
    auto& w = make_async();
    w.on_task("summarize", echo);
    held_stream({sse("command", R"({"id":"cmd_t","type":"terminate","reason":"decommissioned"})"),
                 task_event(make_task("t_after", "summarize"))});
    start();
    run_for(1s);
    BOOST_TEST(completions().empty()); // the task behind the command is never taken
    BOOST_TEST(commands.size() == 1u);
    BOOST_TEST((w.get_status().state == sekuire::worker_state::stopped));
    BOOST_TEST(w.is_finished());
    BOOST_TEST(async_transport->open_streams() == 0u);
    BOOST_TEST((worker_heartbeats().back().state == proto::worker_state::draining));
    stop();
    run_for(0ms);
    BOOST_TEST(completed("stop"));
}

BOOST_FIXTURE_TEST_CASE(revoked_event_is_acted_on_before_the_next_event, async_fixture) {
    auto& w = make_async();
    int runs = 0;
    w.on_task("summarize", [&](const sekuire::task_context&, const boost::json::value& v) {
        ++runs;
        return v;
    });
    held_stream({task_event(make_task("t_before", "summarize")) +
                 sse("revoked", R"({"lease_renewed":false,"revoked":true,"reason":"kill switch","shutdown_timeout_ms":3000})") +
                 task_event(make_task("t_after", "summarize"))});
    start();
    run_for(0ms);
    BOOST_TEST(runs == 1);
    const auto before = worker_heartbeats().size();
    const auto s = w.get_status();
    BOOST_TEST(s.revoked);
    BOOST_TEST(s.revoked_reason == "kill switch");
    BOOST_TEST_REQUIRE(revocations.size() == 1u);
    BOOST_TEST(revocations[0].shutdown_timeout.count() == 3000);
    sekuire::error_code ec;
    BOOST_TEST(!store.load(ec).has_value()); // the revoked credentials are removed
    run_for(1min);
    BOOST_TEST(stream_requests().size() == 1u); // no new stream
    BOOST_TEST(worker_heartbeats().size() == before);
    BOOST_TEST((w.get_status().state == sekuire::worker_state::revoked));
    BOOST_TEST(w.is_finished());
}

BOOST_FIXTURE_TEST_CASE(stream_403_installation_revoked_shuts_down, async_fixture) {
    st::fake_transport::stream_script s;
    s.status = 403;
    s.chunks = {R"({"error":{"code":"installation_revoked","message":"revoked by admin"}})"};
    transport.on_stream(stream_path, s);
    auto& w = make_async();
    start();
    run_for(1s);
    BOOST_TEST(w.get_status().revoked);
    BOOST_TEST(w.get_status().revoked_reason == "revoked by admin");
}

// ---- the stream ---------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(the_reconnect_gaps_are_the_synchronous_workers, async_fixture) {
    st::fake_transport::stream_script fail;
    fail.end_error = sekuire::errc::connection_failed;
    std::vector<std::int64_t> at;
    const auto t0 = clock.steady_now();
    transport.on_stream(stream_path, fail);
    auto o = options();
    o.random = [] { return 0.999999; };
    auto& w = make_async(o);
    start();
    std::size_t seen = 0;
    for (int i = 0; i < 400 && at.size() < 8; ++i) {
        run_for(i == 0 ? 0ms : 500ms);
        const auto n = stream_requests().size();
        if (n > seen) {
            at.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now() - t0).count());
            seen = n;
        }
    }
    // 1, 2, 4, 8, 16, 32, 60 s apart (observed at a 500 ms grain).
    BOOST_TEST_REQUIRE(at.size() == 8u);
    const std::vector<std::int64_t> gaps_expected = {1000, 2000, 4000, 8000, 16000, 32000, 60000};
    std::vector<std::int64_t> gaps;
    for (std::size_t i = 1; i < at.size(); ++i) gaps.push_back(at[i] - at[i - 1]);
    BOOST_TEST(gaps == gaps_expected, boost::test_tools::per_element());
    BOOST_TEST(at[0] == 0);
    BOOST_TEST((w.get_status().last_error_code == sekuire::errc::connection_failed));
}

BOOST_FIXTURE_TEST_CASE(a_refused_stream_honours_retry_after, async_fixture) {
    st::fake_transport::stream_script dated;
    dated.status = 503;
    dated.headers = {{"Retry-After", sekuire::format_http_date(clock.wall_now() + 30s)},
                     {"Date", sekuire::format_http_date(clock.wall_now())}};
    transport.on_stream(stream_path, dated);
    st::fake_transport::stream_script refused;
    refused.status = 429;
    refused.headers = {{"Retry-After", "15"}};
    refused.chunks = {proto::encode(proto::error_body{"unavailable", "try later"})};
    transport.on_stream(stream_path, refused);
    held_stream();
    auto& w = make_async();
    start();
    run_for(0ms);
    BOOST_TEST(stream_requests().size() == 1u);
    run_for(29999ms);
    BOOST_TEST(stream_requests().size() == 1u);
    run_for(1ms);
    BOOST_TEST(stream_requests().size() == 2u);
    run_for(14999ms);
    BOOST_TEST(stream_requests().size() == 2u);
    run_for(1ms);
    BOOST_TEST(stream_requests().size() == 3u);
    BOOST_TEST(w.get_status().stream_connected);
    BOOST_TEST(w.get_status().stream_connects == 3u);
}

BOOST_FIXTURE_TEST_CASE(stream_401_refreshes_and_reconnects_at_once, async_fixture) {
    st::fake_transport::stream_script unauthorized;
    unauthorized.status = 401;
    transport.on_stream(stream_path, unauthorized);
    held_stream({": ok\n\n"});
    transport.on(http_method::post, refresh_path).handle([this](const sekuire::http_request&) {
        proto::refresh_response r;
        r.runtime_token = runtime_2;
        r.expires_at = clock.wall_now() + 24h;
        return st::fake_transport::reply{200, proto::encode(r), {}, {}};
    });
    auto& w = make_async();
    start();
    run_for(0ms);
    const auto streams = stream_requests();
    BOOST_TEST_REQUIRE(streams.size() == 2u);
    BOOST_TEST(header(streams[1], "Authorization") == "Bearer " + runtime_2);
    BOOST_TEST(transport.count(http_method::post, refresh_path) == 1u);
    BOOST_TEST(w.get_status().stream_connected);
}

BOOST_FIXTURE_TEST_CASE(garbage_and_oversized_lines_end_the_connection_with_an_error, async_fixture) {
    auto& w = make_async();
    w.on_task("summarize", echo);
    held_stream({std::string("\xff\xfe\x00garbage\x01\n", 12), std::string(2u << 20, 'x')});
    held_stream({task_event(make_task("t_ok", "summarize"), "1")});
    start();
    run_for(0ms);
    BOOST_TEST((w.get_status().last_error_code == sekuire::errc::stream_line_too_long));
    BOOST_TEST(async_transport->open_streams() == 0u);
    run_for(2s);
    BOOST_TEST(completions().size() == 1u);
    BOOST_TEST(async_transport->open_streams() == 1u);
}

BOOST_FIXTURE_TEST_CASE(silent_stream_is_reconnected_after_the_idle_timeout, async_fixture) {
    held_stream({": hello\n\n"});
    auto& w = make_async();
    start();
    run_for(44999ms);
    BOOST_TEST(async_transport->open_streams() == 1u);
    run_for(1ms);
    BOOST_TEST((w.get_status().last_error_code == sekuire::errc::stream_idle));
    BOOST_TEST(stream_requests().size() == 1u);
    run_for(2s);
    BOOST_TEST(stream_requests().size() == 2u); // reconnected after the backoff
}

// ---- policy gateway -----------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(allow_and_deny_patterns_are_enforced_before_the_handler, async_fixture) {
    auto p = policy("h1");
    p.allowed_tools = {"summarize", "google:docs:*"};
    p.denied_tools = {"google:docs:delete", "shell:*"};
    transport.on(http_method::get, policy_path).clear().respond(200, proto::encode(p));
    transport.on(http_method::post, worker_heartbeat_path).clear().respond(200, R"({"active_policy_hash":"h1"})");
    auto& w = make_async();
    int runs = 0;
    for (const char* cap : {"summarize", "google:docs:read", "google:docs:delete", "classify", "shell:rm"})
        w.on_task(cap, [&](const sekuire::task_context&, const boost::json::value& v) {
            ++runs;
            return v;
        });
    held_stream();
    start();
    run_for(0ms);
    BOOST_TEST(w.get_status().policy_hash == "h1");
    push(task_event(make_task("a", "summarize")) + task_event(make_task("b", "google:docs:read")) +
         task_event(make_task("c", "google:docs:delete")) + task_event(make_task("d", "classify")) +
         task_event(make_task("e", "shell:rm")));
    BOOST_TEST(runs == 2);
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 5u);
    BOOST_TEST((find_result(all, "a")->status == proto::task_status::completed));
    BOOST_TEST((find_result(all, "b")->status == proto::task_status::completed));
    for (const char* id : {"c", "d", "e"}) {
        BOOST_TEST((find_result(all, id)->status == proto::task_status::rejected));
        BOOST_TEST((find_result(all, id)->error->code == proto::task_error::capability_denied));
    }
}

BOOST_FIXTURE_TEST_CASE(rate_limits_at_their_exact_boundaries, async_fixture) {
    auto p = policy("h_rl");
    p.rate_limits.max_per_minute = 2;
    p.rate_limits.max_per_hour = 3;
    transport.on(http_method::get, policy_path).clear().respond(200, proto::encode(p));
    auto& w = make_async();
    w.on_task("summarize", echo);
    held_stream();
    start();
    run_for(0ms);
    int n = 0;
    const auto t0 = clock.steady_now();
    // The stream stays open throughout: the backend's keep-alive comments every 30 s keep
    // its idle watchdog (45 s) from cutting it.
    auto advance_to = [&](sekuire::steady_time_point at) {
        while (clock.steady_now() + 30s < at) {
            run_for(30s);
            push(": keep-alive\n\n");
        }
        run_for(std::chrono::duration_cast<std::chrono::milliseconds>(at - clock.steady_now()));
    };
    auto deliver = [&](sekuire::steady_time_point at) {
        advance_to(at);
        const std::string id = "rl" + std::to_string(++n);
        push(task_event(make_task(id, "summarize")));
        const auto all = completions();
        const auto* r = find_result(all, id);
        BOOST_TEST_REQUIRE(r != nullptr);
        return r->status == proto::task_status::completed;
    };
    BOOST_TEST(deliver(t0 + 1s));
    BOOST_TEST(deliver(t0 + 2s));
    BOOST_TEST(!deliver(t0 + 3s));        // 2 per minute
    BOOST_TEST(!deliver(t0 + 60s));       // the first still counts
    BOOST_TEST(deliver(t0 + 61s));        // ... and no longer: a sliding minute
    BOOST_TEST(!deliver(t0 + 10min));     // 3 per hour
    BOOST_TEST(!deliver(t0 + 1h));        // the first still counts in the hour
    BOOST_TEST(deliver(t0 + 1h + 1s));    // now it does not
    const auto all = completions();
    BOOST_TEST((find_result(all, "rl3")->error->code == proto::task_error::rate_limited));
    BOOST_TEST(stream_requests().size() == 1u); // one connection all along
}

BOOST_FIXTURE_TEST_CASE(worker_heartbeats_every_interval_with_the_counts, async_fixture) {
    auto& w = make_async();
    w.on_task("summarize", echo);
    held_stream({task_event(make_task("a", "summarize"))});
    start();
    run_for(0ms);
    const auto first = worker_heartbeats().size();
    BOOST_TEST(first >= 1u);
    for (int i = 1; i <= 3; ++i) {
        run_for(10s);
        push(": keep-alive\n\n");
    }
    const auto hbs = worker_heartbeats();
    BOOST_TEST(hbs.size() == first + 3);
    BOOST_TEST(hbs.back().completed == 1);
    BOOST_TEST(hbs.back().capabilities == std::vector<std::string>{"summarize"});
    BOOST_TEST(w.get_status().completed == 1u);
}

// ---- authentication -----------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(an_install_token_bootstraps_before_the_stream_opens, async_fixture) {
    transport.on(http_method::post, std::string(proto::path::bootstrap)).handle([this](const sekuire::http_request&) {
        proto::bootstrap_response r;
        r.installation_id = installation;
        r.runtime_token = runtime_2;
        r.runtime_token_expires_at = clock.wall_now() + 24h;
        r.refresh_token = refresh_1;
        r.lease_expires_at = clock.wall_now() + 180s;
        return st::fake_transport::reply{201, proto::encode(r), {}, {}};
    });
    auto o = options();
    o.runtime_token.clear();
    o.refresh_token.clear();
    o.installation_id.clear();
    o.install_token = "skt_install_0123456789abcdefghijklmnop";
    held_stream();
    auto& w = make_async(o);
    async_transport->hold(true); // the bootstrap's answer waits: start waits for it
    start();
    run_for(0ms);
    BOOST_TEST(transport.count(http_method::post, std::string(proto::path::bootstrap)) == 1u);
    BOOST_TEST(!completed("start"));
    BOOST_TEST(stream_requests().empty());
    async_transport->hold(false);
    async_transport->release();
    run_for(0ms);
    BOOST_TEST(completed("start"));
    sekuire::error_code ec;
    BOOST_TEST(store.load(ec)->runtime_token == runtime_2);
    const auto streams = stream_requests();
    BOOST_TEST_REQUIRE(streams.size() == 1u);
    BOOST_TEST(header(streams[0], "Authorization") == "Bearer " + runtime_2);
    BOOST_TEST(w.get_status().stream_connected);
}

BOOST_FIXTURE_TEST_CASE(start_twice_and_stop_before_start, async_fixture) {
    make_async();
    stop(); // never started: stops at once, sends nothing
    run_for(0ms);
    BOOST_TEST(completed("stop"));
    BOOST_TEST(transport.total() == 0u);
    aw->async_start([this](sekuire::error_code ec) { done.push_back("start:" + ec.message()); });
    run_for(0ms);
    BOOST_TEST(done.back() == "start:" + sekuire::make_error_code(sekuire::errc::shutting_down).message());
}

BOOST_FIXTURE_TEST_CASE(a_second_start_is_refused_and_futures_work, async_fixture) {
    make_async();
    held_stream();
    auto f1 = aw->async_start(boost::asio::use_future);
    auto f2 = aw->async_start(boost::asio::use_future);
    run_for(0ms);
    // use_future's handler runs on Asio's system executor (another thread): waited for, bounded.
    BOOST_TEST_REQUIRE((f1.wait_for(30s) == std::future_status::ready));
    BOOST_TEST_REQUIRE((f2.wait_for(30s) == std::future_status::ready));
    BOOST_CHECK_NO_THROW(f1.get());
    BOOST_CHECK_THROW(f2.get(), boost::system::system_error);
}

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
BOOST_FIXTURE_TEST_CASE(start_and_stop_with_coroutines, async_fixture) {
    auto& w = make_async();
    w.on_task("summarize", echo);
    held_stream({task_event(make_task("co", "summarize"))});
    std::vector<std::string> steps;
    boost::asio::co_spawn(
        ioc,
        [&]() -> boost::asio::awaitable<void> {
            co_await aw->async_start(boost::asio::use_awaitable);
            steps.push_back("started");
            co_await aw->async_stop(boost::asio::use_awaitable);
            steps.push_back("stopped");
        },
        boost::asio::detached);
    run_for(1s);
    BOOST_TEST((steps == std::vector<std::string>{"started", "stopped"}));
    BOOST_TEST(completions().size() == 1u);
    BOOST_TEST(w.is_finished());
}
#endif

BOOST_AUTO_TEST_SUITE_END()
