// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/basic_worker.hpp>

#include <sekuire/basic_beacon.hpp>

#include "failing_store.hpp"
#include "worker_fixture.hpp"

#include <sekuire/testing/fixed_probe.hpp>

#include <boost/test/unit_test.hpp>

#include <sekuire/file_store.hpp>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

using namespace worker_test;

BOOST_AUTO_TEST_SUITE(basic_worker)

namespace {
boost::json::value echo(const sekuire::task_context&, const boost::json::value& input) { return input; }

template <class Completion>
const proto::completion_request* find_result(const std::vector<Completion>& all, const std::string& id) {
    for (const auto& c : all)
        if (c.task_id == id) return &c.body;
    return nullptr;
}
} // namespace

// ---- dispatch and results ---------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(dispatch_passes_every_context_field, fixture) {
    auto& w = make();
    sekuire::task_context seen;
    boost::json::value seen_input;
    w.on_task("summarize", [&](const sekuire::task_context& ctx, const boost::json::value& input) {
        seen = ctx;
        seen_input = input;
        const std::string text(input.at("text").as_string());
        return boost::json::value{{"summary", text.substr(0, 3)}};
    });
    auto t = make_task("task_1", "summarize", boost::json::object{{"text", "hello world"}});
    t.requester_agent_id = "agent-req";
    t.parent_task_id = "task_0";
    t.workflow_id = "wf_1";
    t.deadline_at = clock.wall_now() + 30s;
    stream({": hello\n\n", task_event(t, "1")});
    w.step();
    connect();

    BOOST_TEST(seen.task_id == "task_1");
    BOOST_TEST(seen.capability == "summarize");
    BOOST_TEST(seen.workspace_id.value_or("") == "ws_test");
    BOOST_TEST(seen.trace_id.value_or("") == "trace-task_1");
    BOOST_TEST(seen.requester_agent_id.value_or("") == "agent-req");
    BOOST_TEST(seen.parent_task_id.value_or("") == "task_0");
    BOOST_TEST(seen.workflow_id.value_or("") == "wf_1");
    BOOST_TEST((seen.deadline == clock.wall_now() + 30s)); // earlier than the handler timeout
    BOOST_TEST(seen.stop.stop_possible());
    BOOST_TEST(!seen.stop.stop_requested());
    BOOST_TEST(seen_input.at("text").as_string() == "hello world");

    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u);
    BOOST_TEST(all[0].task_id == "task_1");
    BOOST_TEST(all[0].body.installation_id == installation);
    BOOST_TEST((all[0].body.status == proto::task_status::completed));
    BOOST_TEST(all[0].body.output.at("summary").as_string() == "hel");
    BOOST_TEST(!all[0].body.error.has_value());
    BOOST_TEST(all[0].body.trace_id.value_or("") == "trace-task_1");

    // The stream request.
    const auto streams = stream_requests();
    BOOST_TEST_REQUIRE(streams.size() == 1u);
    BOOST_TEST(header(streams[0], "Accept") == "text/event-stream");
    BOOST_TEST(header(streams[0], "Authorization") == "Bearer " + runtime_1);
    BOOST_TEST(streams[0].request.target == proto::path::task_stream(installation, {"summarize"}));
    BOOST_TEST(header(streams[0], "Last-Event-ID").empty());
    const auto s = w.get_status();
    BOOST_TEST(s.completed == 1u);
    BOOST_TEST(s.received == 1u);
    BOOST_TEST(s.last_event_id == "1");
}

BOOST_FIXTURE_TEST_CASE(handler_failures_are_reported_with_their_codes, fixture) {
    auto& w = make();
    w.on_task("throws", [](const sekuire::task_context&, const boost::json::value&) -> boost::json::value {
        throw std::runtime_error("model unavailable");
    });
    w.on_task("invalid", [](const sekuire::task_context&, const boost::json::value&) -> boost::json::value {
        throw sekuire::task_failure(proto::task_error::invalid_input, "text is required");
    });
    w.on_task("odd", [](const sekuire::task_context&, const boost::json::value&) -> boost::json::value { throw 42; });
    stream({task_event(make_task("t1", "throws")), task_event(make_task("t2", "invalid")),
            task_event(make_task("t3", "odd")), task_event(make_task("t4", "nobody"))});
    w.step();
    connect();
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 4u);
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
    check("t3", proto::task_status::failed, proto::task_error::handler_error, "non-standard");
    check("t4", proto::task_status::rejected, proto::task_error::no_handler, "nobody");
    const auto s = w.get_status();
    BOOST_TEST(s.failed == 3u);
    BOOST_TEST(s.rejected == 1u);
}

BOOST_FIXTURE_TEST_CASE(aliases_and_malformed_task_events, fixture) {
    auto& w = make();
    w.on_task("summarize", echo);
    stream({sse("task", R"({"id":"t_alias","target_capability":"summarize","input":{"a":1}})"),
            sse("task", R"({"task_id":"t_bad","capability":42})"), sse("task", "not json at all"),
            sse("unknown_type", "{}"), sse("message", "hello")});
    w.step();
    connect();
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 2u);
    BOOST_TEST(all[0].task_id == "t_alias");
    BOOST_TEST((all[0].body.status == proto::task_status::completed));
    BOOST_TEST(all[1].task_id == "t_bad");
    BOOST_TEST((all[1].body.status == proto::task_status::rejected));
    BOOST_TEST((all[1].body.error->code == proto::task_error::invalid_input));
}

BOOST_FIXTURE_TEST_CASE(explicit_capabilities_are_offered_on_the_stream, fixture) {
    auto o = options();
    o.capabilities = {"a", "b c"};
    auto& w = make(o);
    w.on_task("a", echo);
    stream({});
    connect();
    BOOST_TEST(stream_requests().at(0).request.target == proto::path::task_stream(installation, {"a", "b c"}));
}

// ---- duplicates ---------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(a_task_id_delivered_twice_runs_once, fixture) {
    auto& w = make();
    int runs = 0;
    w.on_task("summarize", [&](const sekuire::task_context&, const boost::json::value&) {
        ++runs;
        return boost::json::value{{"n", runs}};
    });
    // The first report fails: the backend redelivers the task.
    transport.on(http_method::post, proto::path::complete("task_dup")).respond(503).respond(200, R"({"accepted":true})");
    const auto t = make_task("task_dup", "summarize");
    stream({task_event(t, "1"), task_event(t, "2"), task_event(t, "3")});
    w.step();
    connect();
    BOOST_TEST(runs == 1);
    // A redelivery of a finished task repeats its result (idempotent for the backend); once
    // the backend has accepted it, the copy is gone and a further delivery sends nothing.
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 2u);
    BOOST_TEST(all[0].body.output.at("n").as_int64() == 1);
    BOOST_TEST(all[1].body.output.at("n").as_int64() == 1);
    BOOST_TEST(w.get_status().duplicates == 2u);
    run_for(1min); // the retry queue holds nothing for it: the resend settled it
    BOOST_TEST(completions().size() == 2u);
    BOOST_TEST(w.get_status().pending_results == 0u);
}

// ---- results: retries, 409, 404 -------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(completion_is_retried_with_backoff_then_409_counts_as_done, fixture) {
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
    auto& w = make(o);
    w.on_task("summarize", echo);
    stream({task_event(make_task("task_r", "summarize"))});
    w.step();
    connect();
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

BOOST_FIXTURE_TEST_CASE(completion_for_an_unknown_task_is_dropped_with_a_log_line, fixture) {
    transport.on(http_method::post, proto::path::complete("task_gone"))
        .respond(404, R"({"error":{"code":"unknown_task","message":"no such task"}})");
    auto& w = make();
    w.on_task("summarize", echo);
    stream({task_event(make_task("task_gone", "summarize"))});
    w.step();
    connect();
    run_for(10min);
    BOOST_TEST(transport.count(http_method::post, proto::path::complete("task_gone")) == 1u);
    BOOST_TEST(w.get_status().results_dropped == 1u);
    BOOST_TEST(w.get_status().pending_results == 0u);
    std::lock_guard<std::mutex> lock(log_mutex);
    bool logged = false;
    for (const auto& l : logs)
        if (l.find("task_gone") != std::string::npos && l.find("dropped") != std::string::npos) logged = true;
    BOOST_TEST(logged);
}

BOOST_FIXTURE_TEST_CASE(completion_after_401_refreshes_and_retries_once, fixture) {
    transport.on(http_method::post, proto::path::complete("task_a")).handle([](const sekuire::http_request& r) {
        const std::string* auth = sekuire::find_header(r.headers, "Authorization");
        if (auth && *auth == "Bearer " + runtime_1) return st::fake_transport::reply{401, {}, {}, {}};
        return st::fake_transport::reply{200, R"({"accepted":true})", {}, {}};
    });
    transport.on(http_method::post, refresh_path).handle([this](const sekuire::http_request&) {
        proto::refresh_response r;
        r.runtime_token = runtime_2;
        r.expires_at = clock.wall_now() + 24h;
        return st::fake_transport::reply{200, proto::encode(r), {}, {}};
    });
    auto& w = make();
    w.on_task("summarize", echo);
    stream({task_event(make_task("task_a", "summarize"))});
    w.step();
    connect();
    BOOST_TEST(transport.count(http_method::post, refresh_path) == 1u);
    BOOST_TEST(transport.count(http_method::post, proto::path::complete("task_a")) == 2u);
    BOOST_TEST(w.get_status().pending_results == 0u);
    sekuire::error_code ec;
    BOOST_TEST(store.load(ec)->runtime_token == runtime_2);
}

// ---- commands -----------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(pause_rejects_new_tasks_and_resume_accepts_them_again, fixture) {
    auto& w = make();
    w.on_task("summarize", echo);
    std::vector<proto::command> via_method;
    w.on_command([&](const proto::command& c) { via_method.push_back(c); });
    stream({sse("command", R"({"id":"cmd_1","type":"pause","reason":"maintenance"})"),
            task_event(make_task("t_paused", "summarize"))});
    w.step();
    connect();
    BOOST_TEST(w.is_paused());
    BOOST_TEST_REQUIRE(via_method.size() == 1u);
    BOOST_TEST(via_method[0].reason == "maintenance");
    BOOST_TEST(commands.size() == 1u);
    auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u);
    BOOST_TEST((all[0].body.status == proto::task_status::rejected));
    BOOST_TEST((all[0].body.error->code == proto::task_error::worker_paused));
    // Paused, it keeps heartbeating, and says so.
    run_for(10s);
    BOOST_TEST_REQUIRE(!worker_heartbeats().empty());
    BOOST_TEST((worker_heartbeats().back().state == proto::worker_state::paused));
    // The same command id again: ignored. Then resume.
    stream({sse("command", R"({"id":"cmd_1","type":"pause","reason":"again"})"),
            sse("command", R"({"id":"cmd_2","type":"resume","reason":""})"),
            task_event(make_task("t_resumed", "summarize"))});
    clock.advance(1s);
    connect();
    BOOST_TEST(!w.is_paused());
    BOOST_TEST(via_method.size() == 2u);
    all = completions();
    BOOST_TEST_REQUIRE(all.size() == 2u);
    BOOST_TEST((all[1].body.status == proto::task_status::completed));
}

BOOST_FIXTURE_TEST_CASE(a_structured_logger_gets_the_event_installation_task_and_capability, fixture) {
    struct record {
        std::string event, installation, task, capability, trace, message;
    };
    std::vector<record> records;
    auto o = options();
    o.logger = [&](const sekuire::log_record& r) {
        records.push_back({std::string(r.event), std::string(r.installation_id), std::string(r.task_id),
                           std::string(r.capability), std::string(r.trace_id), std::string(r.message)});
    };
    auto& w = make(o);
    w.on_task("summarize", echo);
    stream({sse("command", R"({"id":"cmd_1","type":"pause","reason":"maintenance"})"),
            task_event(make_task("t_paused", "summarize"))});
    w.step();
    connect();
    const auto find = [&](const std::string& event) -> const record* {
        for (const auto& r : records)
            if (r.event == event) return &r;
        return nullptr;
    };
    const record* command = find("command_received");
    BOOST_TEST_REQUIRE(command != nullptr);
    BOOST_TEST(command->installation == installation);
    BOOST_TEST(command->task.empty());
    const record* rejected = find("task_rejected");
    BOOST_TEST_REQUIRE(rejected != nullptr);
    BOOST_TEST(rejected->installation == installation);
    BOOST_TEST(rejected->task == "t_paused");
    BOOST_TEST(rejected->capability == "summarize");
    BOOST_TEST(rejected->trace == "trace-t_paused");
    BOOST_TEST(rejected->message.find("t_paused") != std::string::npos);
    BOOST_TEST_REQUIRE(find("stream_connected") != nullptr);
    worker.reset(); // its last lines go to `records` while they exist
    BOOST_TEST(find("worker_stopped") != nullptr);
    for (const auto& r : records) BOOST_TEST(!r.event.empty(), "no event name for: " << r.message);
}

BOOST_FIXTURE_TEST_CASE(a_task_refused_while_paused_runs_when_delivered_again, fixture) {
    auto& w = make();
    int runs = 0;
    w.on_task("summarize", [&](const sekuire::task_context&, const boost::json::value& v) {
        ++runs;
        return v;
    });
    w.apply_command(proto::command{"cmd_p", proto::command_type::pause, "pause", "", std::nullopt});
    stream({task_event(make_task("t_again", "summarize"))});
    const auto next = connect();
    BOOST_TEST(runs == 0);
    w.apply_command(proto::command{"cmd_r", proto::command_type::resume, "resume", "", std::nullopt});
    clock.advance_to(next);
    stream({task_event(make_task("t_again", "summarize"))}); // the backend offers it again
    connect();
    BOOST_TEST(runs == 1);
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 2u);
    BOOST_TEST((all[0].body.status == proto::task_status::rejected));
    BOOST_TEST((all[1].body.status == proto::task_status::completed));
    BOOST_TEST(w.get_status().duplicates == 0u);
}

BOOST_FIXTURE_TEST_CASE(commands_from_the_beacon_are_deduplicated_with_the_stream, fixture) {
    auto& w = make();
    w.on_task("summarize", echo);
    w.apply_command(proto::command{"cmd_7", proto::command_type::pause, "pause", "from the beacon", std::nullopt});
    BOOST_TEST(w.is_paused());
    stream({sse("command", R"({"id":"cmd_7","type":"pause","reason":"from the stream"})")});
    connect();
    BOOST_TEST(commands.size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(terminate_starts_the_graceful_shutdown, fixture) {
    auto& w = make();
    w.on_task("summarize", echo);
    stream({sse("command", R"({"id":"cmd_t","type":"terminate","reason":"decommissioned"})"),
            task_event(make_task("t_after", "summarize"))});
    w.step();
    connect();
    // The stream is closed at once: the task behind the command is never taken (the
    // backend redelivers it elsewhere).
    BOOST_TEST(completions().empty());
    BOOST_TEST(commands.size() == 1u);
    w.step();
    const auto s = w.get_status();
    BOOST_TEST((s.state == sekuire::worker_state::stopped));
    BOOST_TEST(w.wait_for(0s));
    BOOST_TEST((worker_heartbeats().back().state == proto::worker_state::draining));
}

// ---- revocation ---------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(revoked_event_is_acted_on_before_the_next_event, fixture) {
    auto& w = make();
    int runs = 0;
    w.on_task("summarize", [&](const sekuire::task_context&, const boost::json::value& v) {
        ++runs;
        return v;
    });
    // The revoked event and a task arrive in one chunk.
    stream({task_event(make_task("t_before", "summarize")) +
            sse("revoked", R"({"lease_renewed":false,"revoked":true,"reason":"kill switch","shutdown_timeout_ms":3000})") +
            task_event(make_task("t_after", "summarize"))});
    w.step();
    const auto before = worker_heartbeats().size();
    connect();
    BOOST_TEST(runs == 1);
    const auto s = w.get_status();
    BOOST_TEST(s.revoked);
    BOOST_TEST(s.revoked_reason == "kill switch");
    BOOST_TEST_REQUIRE(revocations.size() == 1u);
    BOOST_TEST(revocations[0].shutdown_timeout.count() == 3000);
    sekuire::error_code ec;
    BOOST_TEST(!store.load(ec).has_value()); // the revoked credentials are removed
    // No new stream, no further heartbeats.
    run_for(1min);
    BOOST_TEST((w.stream_step() == sekuire::steady_time_point::max()));
    BOOST_TEST(worker_heartbeats().size() == before);
    BOOST_TEST((w.get_status().state == sekuire::worker_state::revoked));
}

BOOST_FIXTURE_TEST_CASE(revoked_worker_heartbeat_shuts_down, fixture) {
    transport.on(http_method::post, worker_heartbeat_path)
        .clear()
        .respond(200, R"({"active_policy_hash":"h0"})")
        .respond(200, R"({"lease_renewed":false,"revoked":true,"reason":"admin","shutdown_timeout_ms":100})");
    auto& w = make();
    w.step();
    run_for(10s);
    BOOST_TEST(w.get_status().revoked);
    BOOST_TEST(revocations.size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(stream_403_installation_revoked_shuts_down, fixture) {
    st::fake_transport::stream_script s;
    s.status = 403;
    s.chunks = {R"({"error":{"code":"installation_revoked","message":"revoked by admin"}})"};
    transport.on_stream(stream_path, s);
    auto& w = make();
    connect();
    BOOST_TEST(w.get_status().revoked);
    BOOST_TEST(w.get_status().revoked_reason == "revoked by admin");
}

// ---- the stream ---------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(reconnect_sends_last_event_id_and_a_fresh_token, fixture) {
    auto& w = make();
    w.on_task("summarize", echo);
    stream({task_event(make_task("t1", "summarize"), "7"), "retry: 5000\n\n"});
    stream({task_event(make_task("t2", "summarize"), "8")});
    auto next = connect();
    // retry: 5000 sets the reconnection delay.
    BOOST_TEST((next - clock.steady_now() >= 5000ms));
    // Another holder of the store refreshes the token meanwhile.
    sekuire::error_code ec;
    auto c = *store.load(ec);
    c.runtime_token = runtime_2;
    store.save(c, ec);
    clock.advance_to(next);
    connect();
    const auto streams = stream_requests();
    BOOST_TEST_REQUIRE(streams.size() == 2u);
    BOOST_TEST(header(streams[1], "Last-Event-ID") == "7");
    BOOST_TEST(header(streams[1], "Authorization") == "Bearer " + runtime_2);
    BOOST_TEST(completions().size() == 2u);
}

BOOST_FIXTURE_TEST_CASE(reconnects_back_off_while_the_stream_fails, fixture) {
    st::fake_transport::stream_script fail;
    fail.end_error = sekuire::errc::connection_failed;
    transport.on_stream(stream_path, fail);
    auto o = options();
    o.random = [] { return 0.999999; };
    auto& w = make(o);
    std::vector<std::int64_t> gaps;
    auto at = clock.steady_now();
    for (int i = 0; i < 8; ++i) {
        const auto next = w.stream_step();
        gaps.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(next - at).count());
        clock.advance_to(next);
        at = next;
    }
    const std::vector<std::int64_t> expected = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
    BOOST_TEST(gaps == expected, boost::test_tools::per_element());
    BOOST_TEST(w.get_status().stream_connects == 8u);
}

// Issue 10, item 4: a refused stream honours Retry-After, in seconds or as an HTTP date.
BOOST_FIXTURE_TEST_CASE(a_refused_stream_honours_retry_after, fixture) {
    st::fake_transport::stream_script dated;
    dated.status = 503;
    dated.headers = {{"Retry-After", sekuire::format_http_date(clock.wall_now() + 30s)},
                     {"Date", sekuire::format_http_date(clock.wall_now())}};
    transport.on_stream(stream_path, dated);
    for (const int status : {429, 503}) {
        st::fake_transport::stream_script refused;
        refused.status = status;
        refused.headers = {{"Retry-After", "15"}};
        refused.chunks = {proto::encode(proto::error_body{"unavailable", "try later"})};
        transport.on_stream(stream_path, refused);
    }
    auto& w = make();
    const std::int64_t expected[] = {30000, 15000, 15000};
    for (const std::int64_t e : expected) {
        const auto start = clock.steady_now();
        const auto next = w.stream_step();
        BOOST_TEST(std::chrono::duration_cast<std::chrono::milliseconds>(next - start).count() == e);
        clock.advance_to(next);
    }
    BOOST_TEST(w.get_status().stream_connects == 3u);
}

// Issue 10, item 5: `retry: 1` and one event per connection made 659 reconnects a second.
// Reconnects are a second apart at least, and back off while connections stay short, even
// when each delivered an event.
BOOST_FIXTURE_TEST_CASE(short_connections_cannot_drive_a_reconnect_storm, fixture) {
    auto& w = make();
    w.on_task("summarize", echo);
    for (int i = 0; i < 10; ++i)
        stream({"retry: 1\n\n", task_event(make_task("storm" + std::to_string(i), "summarize"), std::to_string(i))});
    std::vector<std::int64_t> gaps;
    for (int i = 0; i < 10; ++i) {
        const auto start = clock.steady_now();
        const auto next = w.stream_step();
        gaps.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(next - start).count());
        clock.advance_to(next);
    }
    for (const auto g : gaps) BOOST_TEST(g >= 1000);
    // The tenth wait is longer than the first: the backoff was never reset by an event.
    BOOST_TEST(gaps.back() > gaps.front());
    BOOST_TEST(completions().size() == 10u);
    BOOST_TEST(w.get_status().stream_connects == 10u);
}

// A connection that stayed open a keep-alive period was healthy: its end resets the backoff.
BOOST_FIXTURE_TEST_CASE(a_healthy_connection_resets_the_stream_backoff, fixture) {
    st::fake_transport::stream_script fail;
    fail.end_error = sekuire::errc::connection_failed;
    for (int i = 0; i < 4; ++i) transport.on_stream(stream_path, fail);
    st::fake_transport::stream_script held;
    held.chunks = {": ok\n\n"};
    held.hold_open = true;
    transport.on_stream(stream_path, held);
    transport.on_stream(stream_path, fail);
    auto o = options();
    o.random = [] { return 0.999999; };
    auto& w = make(o);
    for (int i = 0; i < 4; ++i) clock.advance_to(w.stream_step()); // waits of 1, 2, 4, 8 s
    // The fifth connection is held open 20 s, then cut by the test.
    std::thread cutter;
    {
        std::atomic<bool> done{false};
        cutter = std::thread([&] {
            if (transport.wait_for_open_streams(1, 10s)) {
                clock.advance(20s);
                transport.close_streams();
            }
            done = true;
        });
        const auto start = clock.steady_now();
        const auto next = w.stream_step();
        cutter.join();
        BOOST_TEST(done.load());
        // After 20 s open, the backoff starts again from its first range.
        BOOST_TEST(std::chrono::duration_cast<std::chrono::milliseconds>(next - start).count() == 20000 + 1000);
    }
}

BOOST_FIXTURE_TEST_CASE(stream_401_refreshes_and_reconnects_at_once, fixture) {
    st::fake_transport::stream_script unauthorized;
    unauthorized.status = 401;
    transport.on_stream(stream_path, unauthorized);
    stream({": ok\n\n"});
    transport.on(http_method::post, refresh_path).handle([this](const sekuire::http_request&) {
        proto::refresh_response r;
        r.runtime_token = runtime_2;
        r.expires_at = clock.wall_now() + 24h;
        return st::fake_transport::reply{200, proto::encode(r), {}, {}};
    });
    make();
    const auto next = connect();
    BOOST_TEST((next == clock.steady_now()));
    connect();
    const auto streams = stream_requests();
    BOOST_TEST_REQUIRE(streams.size() == 2u);
    BOOST_TEST(header(streams[1], "Authorization") == "Bearer " + runtime_2);
    BOOST_TEST(transport.count(http_method::post, refresh_path) == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_stream_step_that_had_to_authenticate_first_asks_again_soon, fixture) {
    // The stored runtime token has expired: the stream's step refreshes it before it can
    // connect, and returns without a connection. It must name a near time to ask again
    // (the stream's 1 s floor), not "never": a driver that misses the wake-up (a loop that
    // only watches the clock) would otherwise never connect again.
    sekuire::installation_credentials c;
    c.installation_id = installation;
    c.runtime_token = runtime_1;
    c.refresh_token = refresh_1;
    c.runtime_token_expires_at = clock.wall_now() - 1s;
    sekuire::error_code ec;
    store.save(c, ec);
    BOOST_TEST_REQUIRE(!ec);
    transport.on(http_method::post, refresh_path).handle([this](const sekuire::http_request&) {
        proto::refresh_response r;
        r.runtime_token = runtime_2;
        r.expires_at = clock.wall_now() + 24h;
        return st::fake_transport::reply{200, proto::encode(r), {}, {}};
    });
    stream({": ok\n\n"});
    auto o = options();
    o.runtime_token.clear();
    o.refresh_token.clear();
    auto& w = make(o);
    const auto t0 = clock.steady_now();
    const auto next = w.stream_step();
    BOOST_TEST(transport.count(http_method::post, refresh_path) == 1u);
    BOOST_TEST(stream_requests().empty());
    BOOST_TEST((next <= t0 + 1s));
    clock.advance_to(next);
    w.stream_step();
    const auto streams = stream_requests();
    BOOST_TEST_REQUIRE(streams.size() == 1u);
    BOOST_TEST(header(streams[0], "Authorization") == "Bearer " + runtime_2);
}

BOOST_FIXTURE_TEST_CASE(garbage_and_oversized_lines_end_the_connection_with_an_error, fixture) {
    auto o = options();
    auto& w = make(o);
    w.on_task("summarize", echo);
    stream({std::string("\xff\xfe\x00garbage\x01\n", 12), std::string(2u << 20, 'x')});
    stream({task_event(make_task("t_ok", "summarize"), "1")});
    const auto next = connect();
    BOOST_TEST((w.get_status().last_error_code == sekuire::errc::stream_line_too_long));
    clock.advance_to(next);
    connect();
    BOOST_TEST(completions().size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(silent_stream_is_reconnected_after_the_idle_timeout, fixture) {
    st::fake_transport::stream_script held;
    held.chunks = {": hello\n\n"};
    held.hold_open = true;
    transport.on_stream(stream_path, held);
    auto& w = make();
    w.step();
    std::promise<sekuire::steady_time_point> result;
    auto done = result.get_future();
    std::thread t([&] { result.set_value(w.stream_step()); });
    BOOST_TEST_REQUIRE(transport.wait_for_open_streams(1, 10s));
    // 44.999 s of silence: still open.
    run_for(44999ms);
    BOOST_TEST(transport.open_streams() == 1u);
    run_for(1ms);
    BOOST_TEST_REQUIRE((done.wait_for(10s) == std::future_status::ready));
    t.join();
    BOOST_TEST((w.get_status().last_error_code == sekuire::errc::stream_idle));
    BOOST_TEST(transport.open_streams() == 0u);
}

// ---- policy gateway -----------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(allow_and_deny_patterns_are_enforced_before_the_handler, fixture) {
    auto p = policy("h1");
    p.allowed_tools = {"summarize", "google:docs:*"};
    p.denied_tools = {"google:docs:delete", "shell:*"};
    transport.on(http_method::get, policy_path).clear().respond(200, proto::encode(p));
    transport.on(http_method::post, worker_heartbeat_path).clear().respond(200, R"({"active_policy_hash":"h1"})");
    auto& w = make();
    int runs = 0;
    for (const char* cap : {"summarize", "google:docs:read", "google:docs:delete", "classify", "shell:rm"})
        w.on_task(cap, [&](const sekuire::task_context&, const boost::json::value& v) {
            ++runs;
            return v;
        });
    w.step();
    BOOST_TEST(w.get_status().policy_hash == "h1");
    stream({task_event(make_task("a", "summarize")), task_event(make_task("b", "google:docs:read")),
            task_event(make_task("c", "google:docs:delete")), task_event(make_task("d", "classify")),
            task_event(make_task("e", "shell:rm"))});
    connect();
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

BOOST_FIXTURE_TEST_CASE(rate_limits_at_their_exact_boundaries, fixture) {
    auto p = policy("h_rl");
    p.rate_limits.max_per_minute = 2;
    p.rate_limits.max_per_hour = 3;
    transport.on(http_method::get, policy_path).clear().respond(200, proto::encode(p));
    auto o = options();
    o.backoff.min_fraction = 0; // reconnections at the stream's floor of 1 s, however many
    auto& w = make(o);
    w.on_task("summarize", echo);
    w.step();
    int n = 0;
    auto deliver = [&](sekuire::steady_time_point at) {
        clock.advance_to(at);
        const std::string id = "rl" + std::to_string(++n);
        stream({task_event(make_task(id, "summarize"))});
        w.stream_step();
        const auto all = completions();
        const auto* r = find_result(all, id);
        BOOST_TEST_REQUIRE(r != nullptr);
        return r->status == proto::task_status::completed;
    };
    const sekuire::steady_time_point t0{};
    BOOST_TEST(deliver(t0 + 1s));
    BOOST_TEST(deliver(t0 + 2s));
    BOOST_TEST(!deliver(t0 + 3s));                 // 2 per minute
    // Reconnections are at least a second apart (the stream's floor), so the boundaries are
    // probed a second early; tests/unit/policy_gateway.cpp probes them to the nanosecond.
    BOOST_TEST(!deliver(t0 + 60s));                // the first still counts
    BOOST_TEST(deliver(t0 + 61s));                 // ... and no longer: a sliding minute
    BOOST_TEST(!deliver(t0 + 10min));              // 3 per hour
    BOOST_TEST(!deliver(t0 + 1h));                 // the first still counts in the hour
    BOOST_TEST(deliver(t0 + 1h + 1s));             // now it does not
    const auto all = completions();
    BOOST_TEST((find_result(all, "rl3")->error->code == proto::task_error::rate_limited));
}

BOOST_FIXTURE_TEST_CASE(a_slow_failed_policy_fetch_backs_off_from_its_failure, fixture) {
    // The fetch takes 10 s and fails: its 1 s backoff runs from the failure, so the next
    // step does not fetch again at once.
    transport.on(http_method::get, policy_path).clear().handle([this](const sekuire::http_request&) {
        clock.advance(10s);
        return st::fake_transport::reply{503, "{}", {}, {}};
    });
    auto& w = make();
    w.step();
    BOOST_TEST(transport.count(http_method::get, policy_path) == 1u);
    w.step(); // (the heartbeat is due by now: 10 s went by; the fetch is not)
    BOOST_TEST(transport.count(http_method::get, policy_path) == 1u);
    clock.advance(1s);
    w.step();
    BOOST_TEST(transport.count(http_method::get, policy_path) == 2u);
}

BOOST_FIXTURE_TEST_CASE(policy_is_fetched_again_only_on_a_new_hash, fixture) {
    transport.on(http_method::get, policy_path)
        .clear()
        .respond(200, proto::encode(policy("h1")))
        .respond(200, proto::encode(policy("h2")));
    transport.on(http_method::post, worker_heartbeat_path)
        .clear()
        .respond(200, R"({"active_policy_hash":"h1"})")
        .respond(200, R"({"active_policy_hash":"h1"})")
        .respond(200, R"({"active_policy_hash":"h2"})");
    auto& w = make();
    w.step(); // the initial fetch, and the first heartbeat (h1: nothing to fetch)
    BOOST_TEST(transport.count(http_method::get, policy_path) == 1u);
    run_for(10s); // h1 again
    BOOST_TEST(transport.count(http_method::get, policy_path) == 1u);
    run_for(10s); // h2: fetched
    BOOST_TEST(transport.count(http_method::get, policy_path) == 2u);
    BOOST_TEST(w.get_status().policy_hash == "h2");
    run_for(60s);
    BOOST_TEST(transport.count(http_method::get, policy_path) == 2u);
    // A policy event with the same hash changes nothing; a new one fetches.
    transport.on(http_method::get, policy_path).clear().respond(200, proto::encode(policy("h3")));
    stream({sse("policy", R"({"active_policy_hash":"h2"})"), sse("policy", R"({"active_policy_hash":"h3"})")});
    connect();
    w.step();
    BOOST_TEST(transport.count(http_method::get, policy_path) == 3u);
    BOOST_TEST(w.get_status().policy_hash == "h3");
}

// ---- heartbeats ---------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(worker_heartbeats_every_interval_with_the_counts, fixture) {
    auto& w = make();
    w.on_task("summarize", echo);
    w.on_task("fail", [](const sekuire::task_context&, const boost::json::value&) -> boost::json::value {
        throw std::runtime_error("x");
    });
    w.step();
    stream({task_event(make_task("a", "summarize")), task_event(make_task("b", "fail"))});
    connect();
    run_for(60s);
    const auto hbs = worker_heartbeats();
    BOOST_TEST(hbs.size() == 7u); // at 0 s, then every 10 s
    BOOST_TEST(hbs.back().completed == 1);
    BOOST_TEST(hbs.back().failed == 1);
    BOOST_TEST(hbs.back().in_flight == 0);
    BOOST_TEST((hbs.back().state == proto::worker_state::running));
    BOOST_TEST(hbs.back().policy_hash.value_or("") == "h0");
    BOOST_TEST(hbs.back().capabilities.size() == 2u);
}

// ---- deadlines, concurrency and the drain (handlers held by a manual executor) ----------

BOOST_FIXTURE_TEST_CASE(handler_timeout_fires_the_stop_token_and_reports, manual_fixture) {
    auto o = options();
    o.handler_timeout = 30s;
    auto& w = make(o);
    std::promise<void> started;
    bool saw_stop = false;
    w.on_task("slow", [&](const sekuire::task_context& ctx, const boost::json::value&) {
        started.set_value();
        // A handler that works until its stop token fires (bounded, in real time).
        std::mutex m;
        std::condition_variable cv;
        bool stopped = false;
        sekuire::stop_callback on_stop(ctx.stop, [&] {
            std::lock_guard<std::mutex> lock(m);
            stopped = true;
            cv.notify_all();
        });
        std::unique_lock<std::mutex> lock(m);
        cv.wait_for(lock, 10s, [&] { return stopped; });
        saw_stop = stopped;
        return boost::json::value{{"late", true}};
    });
    w.step();
    stream({task_event(make_task("t_slow", "slow"))});
    connect();
    BOOST_TEST(w.get_status().in_flight == 1u);
    std::thread runner([&] { executor.run_one(); }); // the handler runs on its own thread
    BOOST_TEST_REQUIRE((started.get_future().wait_for(10s) == std::future_status::ready));
    run_for(29999ms);
    BOOST_TEST(completions().empty());
    run_for(1ms); // the deadline: the token fires, the timeout is reported
    runner.join();
    BOOST_TEST(saw_stop);
    auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u); // the late output is dropped
    BOOST_TEST((all[0].body.status == proto::task_status::failed));
    BOOST_TEST((all[0].body.error->code == proto::task_error::handler_timeout));
    BOOST_TEST(w.get_status().in_flight == 0u);
}

BOOST_FIXTURE_TEST_CASE(task_whose_deadline_passes_before_it_starts_never_runs, manual_fixture) {
    auto o = options();
    o.handler_timeout = 30s;
    auto& w = make(o);
    int runs = 0;
    w.on_task("slow", [&](const sekuire::task_context&, const boost::json::value& v) {
        ++runs;
        return v;
    });
    w.step();
    stream({task_event(make_task("t_late", "slow"))});
    connect();
    run_for(30s); // no executor thread took it in time
    BOOST_TEST(completions().size() == 1u);
    executor.run_all(); // it starts now, too late: skipped
    BOOST_TEST(runs == 0);
    BOOST_TEST(completions().size() == 1u);
    BOOST_TEST(w.get_status().in_flight == 0u);
}

// A task given up while the worker sends a request (its cancellation next in the same step)
// does not start in that window: the worker lets its mutex go for the request, and a handler
// starting then asks the core only when its task was given up.
BOOST_FIXTURE_TEST_CASE(a_task_given_up_does_not_start_while_the_worker_sends_a_request, manual_fixture) {
    auto o = options();
    o.handler_timeout = 30s; // as the heartbeat interval's third beat: the same step
    auto& w = make(o);
    int runs = 0;
    w.on_task("slow", [&](const sekuire::task_context&, const boost::json::value& v) {
        ++runs;
        return v;
    });
    std::size_t started_in_send = 0;
    const auto t0 = clock.steady_now();
    transport.clear_scripts();
    transport.on(http_method::get, policy_path).respond(200, proto::encode(policy("h0")));
    transport.on_prefix(http_method::post, std::string(proto::path::tasks_prefix)).respond(200, R"({"accepted":true})");
    transport.on(http_method::post, worker_heartbeat_path).handle([&](const sekuire::http_request&) {
        // The heartbeat of the step that gives the task up goes out first: the executor's
        // thread takes the task during it.
        if (clock.steady_now() >= t0 + 30s) started_in_send += executor.run_all();
        return st::fake_transport::reply{200, R"({"active_policy_hash":"h0","command":null})", {}, {}};
    });
    w.step();
    stream({task_event(make_task("t_late", "slow"))});
    connect();
    run_for(30s);
    BOOST_TEST(started_in_send == 1u); // the run was taken during the heartbeat
    BOOST_TEST(runs == 0);             // and skipped
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u);
    BOOST_TEST((all[0].body.error->code == proto::task_error::handler_timeout));
    BOOST_TEST(w.get_status().in_flight == 0u);
}

BOOST_FIXTURE_TEST_CASE(at_most_max_concurrent_handlers_run, manual_fixture) {
    auto o = options();
    o.max_concurrent_handlers = 2;
    auto& w = make(o);
    w.on_task("summarize", echo);
    stream({task_event(make_task("a", "summarize")), task_event(make_task("b", "summarize")),
            task_event(make_task("c", "summarize"))});
    connect();
    BOOST_TEST(executor.pending() == 2u);
    BOOST_TEST(w.get_status().in_flight == 2u);
    BOOST_TEST(w.get_status().queued == 1u);
    BOOST_TEST(executor.run_one());
    BOOST_TEST(executor.pending() == 2u); // the third started when a slot freed
    executor.run_all();
    BOOST_TEST(completions().size() == 3u);
}

BOOST_FIXTURE_TEST_CASE(task_past_its_deadline_is_not_run, fixture) {
    auto& w = make();
    int runs = 0;
    w.on_task("summarize", [&](const sekuire::task_context&, const boost::json::value& v) {
        ++runs;
        return v;
    });
    auto t = make_task("late", "summarize");
    t.deadline_at = clock.wall_now() - 1s;
    stream({task_event(t)});
    connect();
    BOOST_TEST(runs == 0);
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u);
    BOOST_TEST((all[0].body.error->code == proto::task_error::handler_timeout));
}

BOOST_FIXTURE_TEST_CASE(drain_finishes_in_flight_work_and_reports_it, manual_fixture) {
    auto o = options();
    o.max_concurrent_handlers = 2;
    auto& w = make(o);
    int calls = 0;
    w.on_task("summarize", [&](const sekuire::task_context&, const boost::json::value& v) {
        ++calls;
        return v;
    });
    w.step();
    stream({task_event(make_task("a", "summarize")), task_event(make_task("b", "summarize")),
            task_event(make_task("c", "summarize"))});
    connect();
    w.begin_shutdown(5s, "test");
    BOOST_TEST(completions().empty()); // no network call on the caller's thread
    w.step();
    // The queued task is refused at the next step; the two in flight may finish.
    auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 1u);
    BOOST_TEST(all[0].task_id == "c");
    BOOST_TEST((all[0].body.error->code == proto::task_error::shutting_down));
    BOOST_TEST(executor.run_one()); // "a" finishes and is reported
    w.step();
    BOOST_TEST(completions().size() == 2u);
    BOOST_TEST((w.get_status().state == sekuire::worker_state::draining));
    // New tasks are refused while draining; the stream is not reconnected.
    BOOST_TEST((w.stream_step() == sekuire::steady_time_point::max()));
    // "b" never ran: at the drain deadline it is cancelled and reported.
    run_for(5s);
    all = completions();
    BOOST_TEST_REQUIRE(all.size() == 3u);
    BOOST_TEST(all[2].task_id == "b");
    BOOST_TEST((all[2].body.error->code == proto::task_error::shutting_down));
    BOOST_TEST((w.get_status().state == sekuire::worker_state::stopped));
    executor.run_all(); // "b" starts now, after the drain: skipped
    BOOST_TEST(calls == 1);
    BOOST_TEST(completions().size() == 3u);
    // The draining worker said so in a heartbeat as soon as the drain began.
    const auto hbs = worker_heartbeats();
    BOOST_TEST_REQUIRE(hbs.size() >= 2u);
    BOOST_TEST((hbs[1].state == proto::worker_state::draining));
    BOOST_TEST(hbs[1].in_flight == 2); // "a" and "b" were in flight when the drain began
}

BOOST_FIXTURE_TEST_CASE(results_still_pending_at_shutdown_are_flushed, fixture) {
    transport.on(http_method::post, proto::path::complete("p1")).respond(503).respond(200, R"({"accepted":true})");
    auto& w = make();
    w.on_task("summarize", echo);
    stream({task_event(make_task("p1", "summarize"))});
    connect();
    BOOST_TEST(w.get_status().pending_results == 1u);
    w.begin_shutdown(10s, "test");
    w.step(); // draining: a pending result is tried at once
    BOOST_TEST(w.get_status().pending_results == 0u);
    BOOST_TEST((w.get_status().state == sekuire::worker_state::stopped));
    BOOST_TEST(transport.count(http_method::post, proto::path::complete("p1")) == 2u);
}

BOOST_FIXTURE_TEST_CASE(unsent_results_at_the_end_of_the_drain_are_logged, fixture) {
    transport.on(http_method::post, proto::path::complete("lost")).fail(sekuire::errc::connection_failed);
    auto& w = make();
    w.on_task("summarize", echo);
    stream({task_event(make_task("lost", "summarize"))});
    connect();
    w.begin_shutdown(3s, "test");
    run_for(3s);
    BOOST_TEST((w.get_status().state == sekuire::worker_state::stopped));
    BOOST_TEST(w.get_status().results_dropped == 1u);
    std::lock_guard<std::mutex> lock(log_mutex);
    bool logged = false;
    for (const auto& l : logs)
        if (l.find("lost") != std::string::npos && l.find("could not be reported") != std::string::npos) logged = true;
    BOOST_TEST(logged);
}

// ---- authentication order -----------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(auth_order_runtime_token_first, fixture) {
    auto& w = make();
    w.step();
    BOOST_TEST(transport.count(http_method::post, refresh_path) == 0u);
    BOOST_TEST(transport.count(http_method::post, std::string(proto::path::bootstrap)) == 0u);
    const auto hb = transport.requests(http_method::post, worker_heartbeat_path);
    BOOST_TEST_REQUIRE(!hb.empty());
    BOOST_TEST(header(hb[0], "Authorization") == "Bearer " + runtime_1);
}

BOOST_FIXTURE_TEST_CASE(auth_order_refresh_before_install_token, fixture) {
    transport.on(http_method::post, refresh_path).handle([this](const sekuire::http_request&) {
        proto::refresh_response r;
        r.runtime_token = runtime_2;
        r.expires_at = clock.wall_now() + 24h;
        return st::fake_transport::reply{200, proto::encode(r), {}, {}};
    });
    auto o = options();
    o.runtime_token.clear();
    o.install_token = "skt_unused_0123456789abcdefghijklmnop";
    auto& w = make(o);
    w.step();
    BOOST_TEST(transport.count(http_method::post, refresh_path) == 1u);
    BOOST_TEST(transport.count(http_method::post, std::string(proto::path::bootstrap)) == 0u);
}

BOOST_FIXTURE_TEST_CASE(auth_order_install_token_last, fixture) {
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
    sekuire::platform_info platform;
    platform.type = "kubernetes";
    platform.set("pod_name", "agent-7f9c");
    o.platform = platform;
    auto& w = make(o);
    w.step();
    BOOST_TEST(transport.count(http_method::post, std::string(proto::path::bootstrap)) == 1u);
    proto::bootstrap_request sent;
    proto::decode_error err;
    BOOST_REQUIRE(proto::decode(transport.requests(http_method::post, std::string(proto::path::bootstrap))[0].request.body,
                                sent, err));
    BOOST_TEST((sent.platform == platform)); // the options' platform, not a default
    sekuire::error_code ec;
    BOOST_TEST(store.load(ec)->runtime_token == runtime_2);
    const auto hb = transport.requests(http_method::post, worker_heartbeat_path);
    BOOST_TEST_REQUIRE(!hb.empty());
    BOOST_TEST(header(hb[0], "Authorization") == "Bearer " + runtime_2);
}

BOOST_FIXTURE_TEST_CASE(no_credentials_is_degraded_and_retried_slowly, fixture) {
    auto o = options();
    o.runtime_token.clear();
    o.refresh_token.clear();
    o.installation_id.clear();
    auto& w = make(o);
    w.step();
    BOOST_TEST((w.get_status().state == sekuire::worker_state::degraded));
    BOOST_TEST(transport.total() == 0u);
    run_for(10min);
    BOOST_TEST(transport.total() == 0u);
}

BOOST_FIXTURE_TEST_CASE(token_provider_supplies_the_token, fixture) {
    auto o = options();
    o.runtime_token.clear();
    // Shared, not a local: the worker outlives this scope (the fixture destroys it).
    auto calls = std::make_shared<int>(0);
    o.token_provider = [calls]() -> std::optional<std::string> {
        ++*calls;
        return std::string("srt_from_provider_0123456789abcdef");
    };
    auto& w = make(o);
    w.step();
    BOOST_TEST(*calls >= 1);
    const auto hb = transport.requests(http_method::post, worker_heartbeat_path);
    BOOST_TEST_REQUIRE(!hb.empty());
    BOOST_TEST(header(hb[0], "Authorization") == "Bearer srt_from_provider_0123456789abcdef");
}

// ---- a beacon and a worker sharing one store ------------------------------------------------

BOOST_FIXTURE_TEST_CASE(tokens_refreshed_by_either_holder_are_seen_by_the_other, fixture) {
    // The worker refreshes on a 401; the beacon's next heartbeat uses the new token at once.
    transport.on(http_method::post, refresh_path).handle([this](const sekuire::http_request&) {
        proto::refresh_response r;
        r.runtime_token = runtime_2;
        r.expires_at = clock.wall_now() + 24h * 90;
        return st::fake_transport::reply{200, proto::encode(r), {}, {}};
    });
    transport.on(http_method::post, worker_heartbeat_path).clear().handle([](const sekuire::http_request& r) {
        const std::string* auth = sekuire::find_header(r.headers, "Authorization");
        if (auth && *auth == "Bearer " + runtime_1) return st::fake_transport::reply{401, {}, {}, {}};
        return st::fake_transport::reply{200, R"({"active_policy_hash":"h0"})", {}, {}};
    });
    const std::string beacon_path = proto::path::heartbeat(installation);
    transport.on(http_method::post, beacon_path).handle([this](const sekuire::http_request&) {
        proto::heartbeat_response r;
        r.lease_renewed = true;
        r.lease_expires_at = clock.wall_now() + 180s;
        return st::fake_transport::reply{200, proto::encode(r), {}, {}};
    });
    auto& w = make();
    sekuire::beacon_options bo;
    bo.startup_jitter = std::chrono::milliseconds(0);
    bo.installation_id = installation;
    bo.refresh_token = refresh_1;
    bo.runtime_token = runtime_1;
    bo.random = [] { return 0.0; };
    sekuire::basic_beacon<st::fake_transport, st::fake_clock, sekuire::memory_store, sekuire::testing::fixed_probe>
        beacon(bo, transport, clock, store, {});
    beacon.step(); // registration heartbeat with runtime_1 (still accepted by the beacon route)
    w.step();      // worker heartbeat: 401, refresh, retry with runtime_2
    BOOST_TEST(transport.count(http_method::post, refresh_path) == 1u);
    st::run_for(clock, 60s, [&] { return std::min(beacon.step(), w.step()); });
    const auto beats = transport.requests(http_method::post, beacon_path);
    BOOST_TEST_REQUIRE(beats.size() >= 2u);
    BOOST_TEST(header(beats.back(), "Authorization") == "Bearer " + runtime_2);
    BOOST_TEST(transport.count(http_method::post, refresh_path) == 1u);
    beacon.stop();
}

// ---- secrets ------------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(no_token_appears_in_logs_or_status, fixture) {
    transport.on(http_method::post, proto::path::complete("t1")).respond(500, "<html>" + runtime_1 + "</html>").respond(200, "{}");
    auto& w = make();
    w.on_task("summarize", echo);
    stream({task_event(make_task("t1", "summarize"))});
    w.step();
    connect();
    run_for(1min);
    w.stop();
    std::vector<std::string> texts;
    {
        std::lock_guard<std::mutex> lock(log_mutex);
        texts = logs;
    }
    const auto s = w.get_status();
    texts.push_back(s.last_error);
    texts.push_back(s.runtime_token);
    BOOST_TEST(texts.size() > 3u);
    for (const auto& t : texts)
        for (const auto& secret : {runtime_1, runtime_2, refresh_1})
            BOOST_TEST(t.find(secret.substr(secret.size() - 12)) == std::string::npos);
}

// ---- clocks and stores -------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(task_deadlines_are_judged_on_the_backends_clock, fixture) {
    // The agent's clock is 2 h ahead of the backend's; a deadline 10 minutes out by the
    // backend's clock must not look 110 minutes past.
    clock.jump_wall(2h);
    transport.on(http_method::post, worker_heartbeat_path).clear().handle([this](const sekuire::http_request&) {
        return st::fake_transport::reply{200, R"({"active_policy_hash":"h0","command":null})",
                                         {{"Date", sekuire::format_http_date(clock.wall_now() - 2h)}}, {}};
    });
    auto& w = make();
    int runs = 0;
    w.on_task("summarize", [&](const sekuire::task_context&, const boost::json::value& v) {
        ++runs;
        return v;
    });
    w.step(); // the worker heartbeat shows the backend's clock
    BOOST_TEST(transport.count(http_method::post, worker_heartbeat_path) == 1u);
    auto t = make_task("soon", "summarize");
    t.deadline_at = clock.wall_now() - 2h + 10min;
    stream({task_event(t)});
    connect();
    BOOST_TEST(runs == 1);
    const auto all = completions();
    BOOST_REQUIRE(all.size() == 1u);
    BOOST_TEST((all[0].body.status == proto::task_status::completed));
}

BOOST_AUTO_TEST_CASE(a_rotated_refresh_token_survives_a_failed_save_in_the_worker) {
    using store_worker =
        sekuire::basic_worker<st::fake_transport, st::fake_clock, store_test::failing_store, sekuire::inline_executor>;
    st::fake_clock clock;
    st::fake_transport transport;
    store_test::failing_store store;
    sekuire::installation_credentials c;
    c.installation_id = installation;
    c.refresh_token = refresh_1;
    c.runtime_token = runtime_1;
    c.runtime_token_expires_at = clock.wall_now() - 1h; // refreshed before the first call
    sekuire::error_code ec;
    store.inner.save(c, ec);
    *store.failing_saves = 1;
    std::string live = refresh_1;
    int rotations = 0;
    transport.on(http_method::post, refresh_path).handle([&](const sekuire::http_request& req) {
        if (req.body.find(live) == std::string::npos)
            return st::fake_transport::reply{401, R"({"error":{"code":"invalid_refresh_token","message":"x"}})", {}, {}};
        proto::refresh_response r;
        r.runtime_token = runtime_2;
        r.expires_at = clock.wall_now() + 24h;
        r.token_version = 2 + rotations;
        live = "rft_rotated_" + std::to_string(++rotations) + "_0123456789abcdefghijk";
        r.refresh_token = live;
        return st::fake_transport::reply{200, proto::encode(r), {}, {}};
    });
    transport.on(http_method::get, policy_path).respond(200, proto::encode(policy("h0")));
    transport.on(http_method::post, worker_heartbeat_path).respond(200, R"({"active_policy_hash":"h0","command":null})");
    std::vector<std::string> logs;
    sekuire::worker_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.workspace_id = "ws_test";
    o.random = [] { return 0.0; };
    o.logger = [&](sekuire::log_level, std::string_view m) { logs.emplace_back(m); };
    {
        store_worker w(o, transport, clock, store, sekuire::inline_executor{});
        st::run_for(clock, 1min, [&] { return w.step(); });
        BOOST_TEST(rotations == 1);
        const auto hb = transport.requests(http_method::post, worker_heartbeat_path);
        BOOST_REQUIRE(!hb.empty());
        BOOST_TEST(*sekuire::find_header(hb.back().request.headers, "Authorization") == "Bearer " + runtime_2);
        // (The scripts stay for the drain of the destructor: an unscripted call is a 404,
        // which would drop the credentials this test reads below.)
    }
    transport.clear_scripts();
    const auto stored = store.inner.load(ec);
    BOOST_REQUIRE(stored);
    BOOST_TEST(stored->refresh_token == live); // saved again once the store worked
    bool logged = false;
    for (const auto& l : logs) logged = logged || l.find("could not be saved") != std::string::npos;
    BOOST_TEST(logged);
}

// ---- re-entrancy, bounded drains, bounded memory ------------------------------------------

namespace {

// Runs `f` on a thread and waits at most `bound` of real time for it: a regression to a
// deadlock fails with a message instead of hanging the suite (the stuck thread is left
// behind, and the process aborted, since it cannot be joined).
template <class F>
void returns_within(std::chrono::seconds bound, const char* what, F f) {
    auto done = std::make_shared<std::promise<void>>();
    auto fut = done->get_future();
    std::thread t([done, f]() mutable {
        f();
        done->set_value();
    });
    if (fut.wait_for(bound) != std::future_status::ready) {
        BOOST_ERROR(std::string(what) + " did not return: deadlock");
        t.detach();
        std::abort();
    }
    t.join();
}

} // namespace

BOOST_FIXTURE_TEST_CASE(a_refresh_refused_as_revoked_with_tasks_queued_does_not_deadlock, manual_fixture) {
    // session() refreshes under its auth lock; the revocation it finds starts the shutdown,
    // which reports the queued task, which authenticates again.
    sekuire::installation_credentials c;
    c.installation_id = installation;
    c.runtime_token = runtime_1;
    c.refresh_token = refresh_1;
    c.runtime_token_expires_at = clock.wall_now() + 1h;
    sekuire::error_code ec;
    store.save(c, ec);
    auto o = options();
    o.max_concurrent_handlers = 1;
    auto& w = make(o);
    w.on_task("summarize", echo);
    stream({task_event(make_task("task_1", "summarize")) + task_event(make_task("task_2", "summarize"))});
    w.step();
    connect();
    BOOST_REQUIRE(w.get_status().queued == 1u);
    transport.on(http_method::post, refresh_path)
        .respond(403, R"({"error":{"code":"installation_revoked","message":"revoked by admin"}})");
    clock.advance(2h); // the runtime token expires: the next call refreshes first
    returns_within(10s, "step()", [&] { w.step(); });
    BOOST_TEST(w.get_status().revoked);
    executor.run_all();
    run_for(1min);
    const auto all = completions();
    const auto* refused = find_result(all, "task_2");
    BOOST_REQUIRE(refused);
    BOOST_TEST((refused->error->code == proto::task_error::shutting_down));
    BOOST_TEST((w.get_status().state == sekuire::worker_state::revoked));
}

BOOST_FIXTURE_TEST_CASE(stop_from_a_stream_callback_starts_the_drain_and_returns, fixture) {
    // on_command runs on the stream thread; stop() there used to wait for a drain that
    // waited for the stream thread.
    transport.on_stream(stream_path, [] {
        st::fake_transport::stream_script s;
        s.chunks = {sse("command", R"({"id":"cmd_t","type":"terminate","reason":"bye"})")};
        s.hold_open = true;
        return s;
    }());
    std::unique_ptr<worker_type>* self = &worker;
    auto o = options();
    o.on_command = [self](const proto::command& c) {
        if (c.type == proto::command_type::terminate) (*self)->stop();
    };
    auto& w = make(o);
    w.start();
    BOOST_TEST(w.wait_for(10s)); // real time, bounded: no sleeping
    BOOST_TEST((w.get_status().state == sekuire::worker_state::stopped));
}

BOOST_AUTO_TEST_CASE(stop_from_a_handler_lets_that_handler_report_its_result) {
    using pool_worker = sekuire::basic_worker<st::fake_transport, st::fake_clock, sekuire::memory_store,
                                              sekuire::thread_pool_executor>;
    st::fake_clock clock;
    st::fake_transport transport;
    sekuire::memory_store store;
    transport.on(http_method::get, policy_path).respond(200, proto::encode(policy("h0")));
    transport.on(http_method::post, worker_heartbeat_path).respond(200, R"({"active_policy_hash":"h0","command":null})");
    transport.on_prefix(http_method::post, std::string(proto::path::tasks_prefix)).respond(200, R"({"accepted":true})");
    st::fake_transport::stream_script s;
    s.chunks = {task_event(make_task("t_last", "summarize"))};
    s.hold_open = true;
    transport.on_stream(stream_path, s);
    sekuire::worker_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.installation_id = installation;
    o.runtime_token = runtime_1;
    o.workspace_id = "ws_test";
    {
        pool_worker w(o, transport, clock, store, sekuire::thread_pool_executor(2));
        w.on_task("summarize", [&w](const sekuire::task_context&, const boost::json::value& in) {
            w.stop(); // "this was the last task": must not wait for this very handler
            return in;
        });
        w.start();
        BOOST_TEST(w.wait_for(10s));
        transport.clear_scripts();
    }
    bool reported = false;
    for (const auto& r : transport.requests(http_method::post, proto::path::complete("t_last"))) {
        proto::completion_request body;
        proto::decode_error err;
        if (proto::decode(r.request.body, body, err))
            reported = reported || body.status == proto::task_status::completed;
    }
    BOOST_TEST(reported);
}

namespace {
// An executor that refuses its first `refusals` posts (as a pool that cannot start a
// thread does) and runs the others inline.
struct refusing_executor {
    std::shared_ptr<int> refusals = std::make_shared<int>(1);
    void post(std::function<void()> f) const {
        if (*refusals > 0) {
            --*refusals;
            throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
        }
        f();
    }
};

// For a worker of another executor than the fixture's: every route answers, the stream
// holds one `summarize` task (t_1), and the options carry runtime credentials.
sekuire::worker_options script_one_task(st::fake_transport& transport) {
    transport.on(http_method::get, policy_path).respond(200, proto::encode(policy("h0")));
    transport.on(http_method::post, worker_heartbeat_path).respond(200, R"({"active_policy_hash":"h0","command":null})");
    transport.on_prefix(http_method::post, std::string(proto::path::tasks_prefix)).respond(200, R"({"accepted":true})");
    st::fake_transport::stream_script s;
    s.chunks = {task_event(make_task("t_1", "summarize"))};
    transport.on_stream(stream_path, s);
    sekuire::worker_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.installation_id = installation;
    o.runtime_token = runtime_1;
    o.workspace_id = "ws_test";
    return o;
}
} // namespace

BOOST_AUTO_TEST_CASE(a_refused_post_keeps_the_task_queued_and_the_worker_consistent) {
    using refusing_worker =
        sekuire::basic_worker<st::fake_transport, st::fake_clock, sekuire::memory_store, refusing_executor>;
    st::fake_clock clock;
    st::fake_transport transport;
    sekuire::memory_store store;
    sekuire::worker_options o = script_one_task(transport);
    o.random = [] { return 0.0; };
    refusing_worker w(o, transport, clock, store, refusing_executor{});
    int runs = 0;
    w.on_task("summarize", [&](const sekuire::task_context&, const boost::json::value& in) {
        ++runs;
        return in;
    });
    w.step();
    w.stream_step();
    BOOST_TEST(runs == 0);
    BOOST_TEST(w.get_status().queued == 1u);
    BOOST_TEST(w.get_status().in_flight == 0u);
    BOOST_TEST(!w.get_status().stream_connected);
    w.step(); // the executor takes it now
    BOOST_TEST(runs == 1);
    BOOST_TEST(transport.count(http_method::post, proto::path::complete("t_1")) == 1u);
    w.stop();
    BOOST_TEST((w.get_status().state == sekuire::worker_state::stopped));
    transport.clear_scripts();
}

BOOST_FIXTURE_TEST_CASE(a_revoked_drain_schedules_no_past_deadlines, manual_fixture) {
    auto& w = make();
    w.on_task("summarize", echo);
    stream({task_event(make_task("t_1", "summarize"))});
    w.step();
    connect();
    w.apply_revocation(proto::revocation{"kill switch", 30000});
    w.step();
    // The handler is still running, heartbeats are over: no step may be due in the past.
    for (int i = 0; i < 5; ++i) {
        clock.advance(11s); // past where the next heartbeat would have been
        BOOST_TEST((w.step() > clock.steady_now()));
    }
    BOOST_TEST(worker_heartbeats().size() <= 2u); // none after the revocation
    executor.run_all();
}

BOOST_FIXTURE_TEST_CASE(no_worker_heartbeat_after_a_revocation_found_earlier_in_the_step, fixture) {
    transport.on(http_method::get, policy_path)
        .clear()
        .respond(403, R"({"error":{"code":"installation_revoked","message":"revoked by admin"}})");
    auto& w = make();
    w.step();
    BOOST_TEST(w.get_status().revoked);
    BOOST_TEST(worker_heartbeats().empty());
}

BOOST_FIXTURE_TEST_CASE(the_drain_does_not_overrun_its_deadline_against_a_slow_backend, fixture) {
    // Each completion takes 300 ms and fails; ten are pending; the drain has 500 ms.
    auto o = options();
    o.drain_timeout = 500ms;
    auto& w = make(o);
    w.on_task("summarize", echo);
    transport.on_prefix(http_method::post, std::string(proto::path::tasks_prefix))
        .clear()
        .handle([this](const sekuire::http_request&) {
            clock.advance(300ms);
            return st::fake_transport::reply{503, "", {}, {}};
        });
    std::vector<std::string> chunks;
    for (int i = 0; i < 10; ++i) chunks.push_back(task_event(make_task("t_" + std::to_string(i), "summarize")));
    stream(chunks);
    w.step();
    connect();
    const auto attempts_before = completions().size();
    const auto start = clock.steady_now();
    w.stop();
    BOOST_TEST((w.get_status().state == sekuire::worker_state::stopped));
    BOOST_TEST((clock.steady_now() - start <= 1s)); // not 10 x 300 ms
    BOOST_TEST(completions().size() - attempts_before <= 3u);
    for (const auto& r : transport.requests())
        if (r.request.method == http_method::post && r.path().rfind(std::string(proto::path::tasks_prefix), 0) == 0)
            BOOST_TEST((r.request.timeout <= o.request_timeout));
    BOOST_TEST(w.get_status().results_dropped == 10u); // each given up with a log line
}

BOOST_FIXTURE_TEST_CASE(pending_results_are_one_per_task_and_bounded, fixture) {
    transport.on_prefix(http_method::post, std::string(proto::path::tasks_prefix)).clear().respond(503);
    auto o = options();
    o.max_pending_results = 5;
    auto& w = make(o);
    w.on_task("summarize", echo);
    // The same two tasks delivered again and again: their results are kept once each.
    std::vector<std::string> chunks;
    for (int i = 0; i < 200; ++i) {
        chunks.push_back(task_event(make_task("a", "summarize")));
        chunks.push_back(task_event(make_task("b", "summarize")));
    }
    stream(chunks);
    w.step();
    connect();
    BOOST_TEST(w.get_status().pending_results == 2u);
    // Tasks refused while paused: rejections beyond the bound are not kept (the backend
    // delivers them again), each counted and logged.
    w.apply_command(proto::command{"cmd_p", proto::command_type::pause, "pause", "", std::nullopt});
    chunks.clear();
    for (int i = 0; i < 10; ++i) chunks.push_back(task_event(make_task("p_" + std::to_string(i), "summarize")));
    stream(chunks);
    clock.advance(2min); // past the reconnection delay
    connect();
    BOOST_TEST(w.get_status().pending_results == 5u);
    BOOST_TEST(w.get_status().results_dropped == 7u);
    // At the bound, a new task is refused rather than run.
    w.apply_command(proto::command{"cmd_r", proto::command_type::resume, "resume", "", std::nullopt});
    int runs = 0;
    w.on_task("other", [&](const sekuire::task_context&, const boost::json::value& in) {
        ++runs;
        return in;
    });
    stream({task_event(make_task("new", "other"))});
    clock.advance(2min);
    connect();
    BOOST_TEST(runs == 0);
    BOOST_TEST(stream_requests().size() == 3u);
}

BOOST_FIXTURE_TEST_CASE(a_revocation_during_a_drain_brings_its_end_forward, manual_fixture) {
    auto& w = make();
    w.on_task("summarize", echo);
    stream({task_event(make_task("t_1", "summarize"))});
    w.step();
    connect();
    w.begin_shutdown(30s, "stopping");
    w.step();
    w.apply_revocation(proto::revocation{"kill switch", 1000});
    run_for(2s);
    BOOST_TEST((w.get_status().state == sekuire::worker_state::revoked));
    const auto all = completions();
    const auto* r = find_result(all, "t_1");
    BOOST_REQUIRE(r);
    BOOST_TEST((r->error->code == proto::task_error::shutting_down));
    executor.run_all();
}

BOOST_FIXTURE_TEST_CASE(last_event_id_stays_at_the_last_event_handled, fixture) {
    // The stream is cut (the idle watchdog) while a connection is delivering: the events
    // after the cut were not handled, so the reconnection must ask for them again. (The
    // core decides a chunk's events at once, and callbacks run after them: the cut falls
    // between two chunks.)
    auto o = options();
    worker_type** self = nullptr;
    worker_type* w_ptr = nullptr;
    self = &w_ptr;
    o.on_command = [this, self](const proto::command&) {
        clock.advance(46s); // silence longer than the idle timeout...
        (*self)->step();    // ...found by the control step: the stream is cut here
    };
    auto& w = make(o);
    w_ptr = &w;
    int runs = 0;
    w.on_task("summarize", [&](const sekuire::task_context&, const boost::json::value& in) {
        ++runs;
        return in;
    });
    stream({sse("command", R"({"id":"cmd_1","type":"pause","reason":"x"})", "1"),
            task_event(make_task("t_2", "summarize"), "2") + task_event(make_task("t_3", "summarize"), "3")});
    w.step();
    connect();
    BOOST_TEST(runs == 0);
    BOOST_TEST(w.get_status().last_event_id == "1");
    stream({});
    clock.advance(1min);
    connect();
    const auto reqs = stream_requests();
    BOOST_REQUIRE(reqs.size() == 2u);
    BOOST_TEST(header(reqs[1], "Last-Event-ID") == "1");
}

BOOST_FIXTURE_TEST_CASE(a_huge_retry_field_is_capped_by_the_backoff_cap, fixture) {
    auto& w = make();
    stream({"retry: 86400000\n\n"});
    w.step();
    const auto next = connect();
    BOOST_TEST((next - clock.steady_now() <= 60s));
}

BOOST_AUTO_TEST_CASE(stop_callbacks_of_handlers_may_call_back_into_the_worker) {
    // A worker driven by its step functions, with handlers on a pool: stop() gives up on a
    // handler still running at the end and fires its stop token, whose callback reads the
    // status (it used to be fired with the worker's mutex held).
    using pool_worker = sekuire::basic_worker<st::fake_transport, st::fake_clock, sekuire::memory_store,
                                              sekuire::thread_pool_executor>;
    st::fake_clock clock;
    st::fake_transport transport;
    sekuire::memory_store store;
    sekuire::worker_options o = script_one_task(transport);
    // Declared before the worker, so destroyed after it: the handler, given up by stop(),
    // may still be waking on them until the worker's destruction waits for it.
    std::mutex m;
    std::condition_variable cv;
    bool started = false, stopped = false, status_read = false;
    pool_worker w(o, transport, clock, store, sekuire::thread_pool_executor(1));
    w.on_task("summarize", [&](const sekuire::task_context& ctx, const boost::json::value& in) {
        sekuire::stop_callback<std::function<void()>> cb(ctx.stop, [&] {
            const auto st = w.get_status(); // takes the worker's mutex
            std::lock_guard<std::mutex> lock(m);
            status_read = st.in_flight <= 1u;
            stopped = true;
            cv.notify_all();
        });
        std::unique_lock<std::mutex> lock(m);
        started = true;
        cv.notify_all();
        cv.wait_for(lock, 10s, [&] { return stopped; }); // bounded
        return in;
    });
    w.step();
    w.stream_step();
    {
        std::unique_lock<std::mutex> lock(m);
        BOOST_REQUIRE(cv.wait_for(lock, 10s, [&] { return started; }));
    }
    returns_within(10s, "stop()", [&] { w.stop(); });
    std::lock_guard<std::mutex> lock(m);
    BOOST_TEST(stopped);
    BOOST_TEST(status_read);
    transport.clear_scripts();
}


// Issue 10, item 9, for the worker's order: recovery credentials missing from the options
// come from the environment.
BOOST_FIXTURE_TEST_CASE(a_worker_recovers_from_the_environment, fixture) {
    auto o = options();
    o.installation_id.clear();
    o.runtime_token.clear();
    o.refresh_token.clear();
    o.environment = [](const char* name) -> std::optional<std::string> {
        const std::string n = name;
        if (n == "SEKUIRE_INSTALLATION_ID") return installation;
        if (n == "SEKUIRE_RUNTIME_TOKEN") return runtime_1;
        if (n == "SEKUIRE_REFRESH_TOKEN") return refresh_1;
        return std::nullopt;
    };
    auto& w = make(o);
    w.on_task("summarize", echo);
    stream({task_event(make_task("env1", "summarize"))});
    w.step();
    connect();
    const auto streams = stream_requests();
    BOOST_TEST_REQUIRE(streams.size() == 1u);
    BOOST_TEST(header(streams[0], "Authorization") == "Bearer " + runtime_1);
    BOOST_TEST(completions().size() == 1u);
    const auto st = w.get_status();
    BOOST_TEST(st.recovered_from_env);
    BOOST_TEST(st.installation_id == installation);
}

// Issue 10, item 11: the first authentication and connection wait the startup jitter.
BOOST_FIXTURE_TEST_CASE(a_worker_waits_the_startup_jitter, fixture) {
    auto o = options();
    o.startup_jitter = 4s;
    o.random = [] { return 0.5; };
    auto& w = make(o);
    w.on_task("summarize", echo);
    stream({task_event(make_task("late", "summarize"))});
    const auto next = w.step();
    BOOST_TEST(std::chrono::duration_cast<std::chrono::milliseconds>(next - clock.steady_now()).count() == 2000);
    BOOST_TEST((connect() == next)); // the stream waits for the same moment
    BOOST_TEST(transport.requests().empty());
    clock.advance_to(next);
    w.step();
    connect();
    BOOST_TEST(worker_heartbeats().size() == 1u);
    BOOST_TEST(completions().size() == 1u);
}

// Issue 15, item 1: the seed's "Pass `policyGateway` in worker config": a gateway of the
// user's own decides before the handler runs.
BOOST_FIXTURE_TEST_CASE(a_users_own_gateway_decides_before_the_handler, fixture) {
    struct allow_list {
        std::shared_ptr<std::vector<std::string>> seen = std::make_shared<std::vector<std::string>>();
        sekuire::admission admit(std::string_view capability, sekuire::steady_time_point) {
            seen->emplace_back(capability);
            if (capability == "summarize") return {};
            return {false, proto::task_error::capability_denied, "not on my list"};
        }
        void set_policy(proto::policy_document) {}
        std::string policy_hash() const { return "mine"; }
        bool on_heartbeat_response(const std::optional<std::string>&) const { return false; }
    } mine;
    auto o = options();
    o.gateway = mine;
    o.fetch_policy = false;
    auto& w = make(o);
    int runs = 0;
    w.on_task("summarize", [&](const sekuire::task_context&, const boost::json::value& v) { ++runs; return v; });
    w.on_task("classify", [&](const sekuire::task_context&, const boost::json::value& v) { ++runs; return v; });
    w.step();
    stream({task_event(make_task("g1", "summarize")), task_event(make_task("g2", "classify"))});
    connect();
    BOOST_TEST(runs == 1);
    BOOST_TEST((*mine.seen == std::vector<std::string>{"summarize", "classify"}));
    const auto all = completions();
    BOOST_TEST_REQUIRE(all.size() == 2u);
    BOOST_TEST((all[1].body.status == proto::task_status::rejected));
    BOOST_TEST(all[1].body.error->message == "not on my list");
    BOOST_TEST(w.get_status().policy_hash == "mine");
    BOOST_TEST(worker_heartbeats().front().policy_hash.value_or("") == "mine");
}

// Issue 15, item 3: the seed's worker order starts with a runtime token by itself; the
// stream's path needs the installation. Refused at construction, saying what else to give,
// unless the store names the installation.
BOOST_FIXTURE_TEST_CASE(a_runtime_token_alone_needs_the_installation_from_somewhere, fixture) {
    auto o = options();
    o.installation_id.clear();
    o.refresh_token.clear();
    BOOST_CHECK_EXCEPTION(make(o), sekuire::error, [](const sekuire::error& e) {
        const std::string w = e.what();
        return e.code() == sekuire::errc::invalid_option && w.find("runtime token alone") != std::string::npos &&
               w.find("installation_id (SEKUIRE_INSTALLATION_ID)") != std::string::npos &&
               w.find(runtime_1) == std::string::npos;
    });
    auto p = o;
    p.runtime_token.clear();
    p.token_provider = [] { return std::optional<std::string>(runtime_2); };
    BOOST_CHECK_EXCEPTION(make(p), sekuire::error, [](const sekuire::error& e) {
        return std::string(e.what()).find("from token_provider") != std::string::npos;
    });
    // A store that holds the installation (the beacon's, shared) names it.
    sekuire::installation_credentials c;
    c.installation_id = installation;
    sekuire::error_code ec;
    store.save(c, ec);
    auto& w = make(o);
    w.on_task("summarize", echo);
    stream({task_event(make_task("solo", "summarize"))});
    w.step();
    connect();
    const auto streams = stream_requests();
    BOOST_TEST_REQUIRE(streams.size() == 1u);
    BOOST_TEST(header(streams[0], "Authorization") == "Bearer " + runtime_1);
    BOOST_TEST(completions().size() == 1u);
}

// ---- the worker's authentication (issue 10) ----------------------------------------------

namespace {
struct scratch_dir {
    std::string dir;
    scratch_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "sekuire-worker-XXXXXX").string();
        BOOST_REQUIRE(::mkdtemp(&pattern[0]) != nullptr);
        dir = pattern;
    }
    ~scratch_dir() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};
const std::string worker_install_token = "skt_worker_install_0123456789abcdefghij";
} // namespace

// Item 13: with an already used install token, last_error said "no usable credentials",
// although one was given; the cause is the refused token.
BOOST_FIXTURE_TEST_CASE(a_refused_install_token_is_reported_as_the_cause, fixture) {
    transport.on(http_method::post, std::string(proto::path::bootstrap))
        .respond(409, proto::encode(proto::error_body{"install_token_used", "this install token was used already"}));
    auto o = options();
    o.installation_id.clear();
    o.runtime_token.clear();
    o.refresh_token.clear();
    o.install_token = worker_install_token;
    auto& w = make(o);
    for (int i = 0; i < 3; ++i) clock.advance_to(w.step());
    BOOST_TEST(transport.count(http_method::post, std::string(proto::path::bootstrap)) == 1u); // spent once, never again
    const auto s = w.get_status();
    BOOST_TEST((s.last_error_code == sekuire::errc::install_token_used));
    BOOST_TEST(s.last_error.find("install token") != std::string::npos);
    BOOST_TEST(s.last_error.find("this install token was used already") != std::string::npos);
    BOOST_TEST(s.last_error.find("no usable credentials") == std::string::npos);
    BOOST_TEST((s.state == sekuire::worker_state::degraded));
    for (const auto& l : logs) BOOST_TEST(l.find(worker_install_token) == std::string::npos);
}

// Item 8, for the worker's own bootstrap.
BOOST_AUTO_TEST_CASE(a_worker_never_spends_the_install_token_on_an_unwritable_store) {
    scratch_dir d;
    const std::string path = d.dir + "/missing/creds.json";
    st::fake_clock clock;
    st::fake_transport transport;
    sekuire::worker_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.agent_id = "agent-0123";
    o.install_token = worker_install_token;
    o.fetch_policy = false;
    o.random = [] { return 0.0; };
    sekuire::basic_worker<st::fake_transport, st::fake_clock, sekuire::file_store, sekuire::inline_executor> w(
        o, transport, clock, sekuire::file_store(path));
    w.on_task("summarize", [](const sekuire::task_context&, const boost::json::value& v) { return v; });
    for (int i = 0; i < 3; ++i) clock.advance_to(w.step());
    BOOST_TEST(transport.count(http_method::post, std::string(proto::path::bootstrap)) == 0u);
    const auto s = w.get_status();
    BOOST_TEST((s.last_error_code == sekuire::errc::store_io));
    BOOST_TEST(s.last_error.find(path) != std::string::npos);
    BOOST_TEST(s.last_error.find("bootstrap was not attempted") != std::string::npos);
    w.stop();
}

BOOST_AUTO_TEST_SUITE_END()
