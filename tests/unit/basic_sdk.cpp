// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/basic_sdk.hpp>

#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fake_transport.hpp>
#include <sekuire/testing/fixed_probe.hpp>

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>

namespace st = sekuire::testing;
namespace proto = sekuire::protocol;
using namespace std::chrono_literals;
using sekuire::http_method;

namespace {

using test_sdk = sekuire::basic_sdk<st::fake_transport, st::fake_clock, sekuire::memory_store, st::fixed_probe,
                                    sekuire::inline_executor>;

const std::string installation = "inst_sdk";
const std::string token = "srt_sdk_0123456789abcdefghijklmnopq";
const std::string heartbeat_path = proto::path::heartbeat(installation);
const std::string worker_heartbeat_path = proto::path::worker_heartbeat(installation);
const std::string stream_path = proto::path::task_stream(installation, {});

// The bootstrap endpoint: installation `installation` with runtime token `token`.
void script_bootstrap(st::fake_transport& transport, st::fake_clock& clock) {
    transport.on(http_method::post, std::string(proto::path::bootstrap)).handle([&clock](const sekuire::http_request&) {
        proto::bootstrap_response r;
        r.installation_id = installation;
        r.runtime_token = token;
        r.runtime_token_expires_at = clock.wall_now() + 24h * 90;
        r.refresh_token = "rft_sdk_0123456789abcdefghijklmnopq";
        r.lease_expires_at = clock.wall_now() + 180s;
        return st::fake_transport::reply{201, proto::encode(r), {}, {}};
    });
}

struct fixture {
    st::fake_clock clock;
    st::fake_transport transport;
    sekuire::memory_store store;
    std::unique_ptr<test_sdk> sdk;
    std::vector<proto::command> sdk_commands;
    std::vector<sekuire::revocation_info> sdk_revocations;
    std::function<void(const proto::command&)> also_on_command; // set by a test

    fixture() {
        script_bootstrap(transport, clock);
        script_beacon({});
        transport.on(http_method::post, worker_heartbeat_path).respond(200, R"({"active_policy_hash":"h0"})");
        transport.on(http_method::get, proto::path::active_policy("ws_sdk")).respond(200, policy("h0"));
        transport.on_prefix(http_method::post, std::string(proto::path::tasks_prefix)).respond(200, R"({"accepted":true})");
        sekuire::sdk_options o;
        o.startup_jitter = std::chrono::milliseconds(0);
        o.agent_id = "agent-sdk";
        o.install_token = "skt_sdk_0123456789abcdefghijklmnop";
        o.workspace_id = "ws_sdk";
        o.random = [] { return 0.0; };
        o.on_command = [this](const proto::command& c) {
            sdk_commands.push_back(c);
            if (also_on_command) also_on_command(c);
        };
        o.on_revoked = [this](const sekuire::revocation_info& r) { sdk_revocations.push_back(r); };
        sdk = std::make_unique<test_sdk>(o, transport, clock, store, st::fixed_probe{}, sekuire::inline_executor{});
    }
    ~fixture() {
        transport.clear_scripts();
        sdk.reset();
    }

    static std::string policy(const std::string& hash) {
        proto::policy_document p;
        p.hash = hash;
        p.workspace_id = "ws_sdk";
        return proto::encode(p);
    }

    void script_beacon(std::optional<proto::command> cmd, std::optional<std::string> hash = std::nullopt) {
        transport.on(http_method::post, heartbeat_path).clear().handle([this, cmd, hash](const sekuire::http_request&) {
            proto::heartbeat_response r;
            r.lease_renewed = true;
            r.lease_expires_at = clock.wall_now() + 180s;
            r.command = cmd;
            r.active_policy_hash = hash;
            return st::fake_transport::reply{200, proto::encode(r), {}, {}};
        });
    }

    void stream(std::vector<std::string> chunks) {
        st::fake_transport::stream_script s;
        s.chunks = std::move(chunks);
        transport.on_stream(stream_path, s);
    }
};

boost::json::value echo(const sekuire::task_context&, const boost::json::value& v) { return v; }

std::string task_event(const std::string& id) {
    proto::task t;
    t.task_id = id;
    t.capability = "summarize";
    t.input = boost::json::object{{"text", "x"}};
    return "event: task\ndata: " + proto::encode(t) + "\n\n";
}

std::string command_event(const std::string& id, const std::string& type) {
    return "event: command\ndata: {\"id\":\"" + id + "\",\"type\":\"" + type + "\",\"reason\":\"\"}\n\n";
}

// A threaded test whose SDK did not finish shutting down has deadlocked: destroying the
// SDK would hang the whole suite, so the process ends with a message instead.
void require_done_or_exit(test_sdk& sdk, const char* what) {
    if (sdk.wait_for(std::chrono::seconds(30))) return;
    std::fprintf(stderr, "%s: the SDK did not finish its shutdown within 30 s (deadlock)\n", what);
    std::_Exit(3);
}

} // namespace

BOOST_AUTO_TEST_SUITE(basic_sdk)

BOOST_FIXTURE_TEST_CASE(worker_uses_the_beacons_credentials_and_never_bootstraps, fixture) {
    sdk->beacon().step();
    BOOST_TEST(sdk->is_connected());
    auto& w = sdk->create_task_worker();
    w.on_task("summarize", echo);
    w.step();
    stream({task_event("t1")});
    w.stream_step();
    BOOST_TEST(transport.count(http_method::post, std::string(proto::path::bootstrap)) == 1u);
    const auto hb = transport.requests(http_method::post, worker_heartbeat_path);
    BOOST_TEST_REQUIRE(!hb.empty());
    BOOST_TEST(*sekuire::find_header(hb[0].request.headers, "Authorization") == "Bearer " + token);
    BOOST_TEST(w.get_status().completed == 1u);
    // The beacon's heartbeats carry the worker's metrics.
    st::run_for(clock, 60s, [&] { return sdk->beacon().step(); });
    proto::heartbeat_request body;
    proto::decode_error err;
    BOOST_TEST_REQUIRE(proto::decode(transport.requests(http_method::post, heartbeat_path).back().request.body, body, err));
    BOOST_TEST(body.metrics.requests_handled == 1);
    auto creds = sdk->get_installation_credentials();
    BOOST_TEST_REQUIRE(creds.has_value());
    BOOST_TEST(creds->installation_id == installation);
}

BOOST_FIXTURE_TEST_CASE(pause_from_a_beacon_heartbeat_pauses_the_worker, fixture) {
    sdk->beacon().step();
    auto& w = sdk->create_task_worker();
    w.on_task("summarize", echo);
    script_beacon(proto::command{"cmd_p", proto::command_type::pause, "pause", "hold on", std::nullopt});
    st::run_for(clock, 60s, [&] { return sdk->beacon().step(); });
    BOOST_TEST(w.is_paused());
    BOOST_TEST(sdk->get_beacon_status().paused);
    BOOST_TEST_REQUIRE(sdk_commands.size() == 1u); // once, though both parts saw it
    // The same command on the stream is not delivered again.
    stream({"event: command\ndata: {\"id\":\"cmd_p\",\"type\":\"pause\",\"reason\":\"hold on\"}\n\n", task_event("t2")});
    w.stream_step();
    BOOST_TEST(sdk_commands.size() == 1u);
    BOOST_TEST(w.get_status().rejected == 1u);
}

BOOST_FIXTURE_TEST_CASE(resume_on_the_stream_resumes_the_beacon_status_too, fixture) {
    sdk->beacon().step();
    auto& w = sdk->create_task_worker();
    stream({"event: command\ndata: {\"id\":\"c1\",\"type\":\"pause\",\"reason\":\"\"}\n\n"});
    w.stream_step();
    BOOST_TEST(sdk->get_beacon_status().paused);
    clock.advance(1s);
    stream({"event: command\ndata: {\"id\":\"c2\",\"type\":\"resume\",\"reason\":\"\"}\n\n"});
    w.stream_step();
    BOOST_TEST(!sdk->get_beacon_status().paused);
    BOOST_TEST(!w.is_paused());
    BOOST_TEST(sdk_commands.size() == 2u);
}

BOOST_FIXTURE_TEST_CASE(revoked_event_on_the_stream_revokes_the_beacon, fixture) {
    sdk->beacon().step();
    auto& w = sdk->create_task_worker();
    stream({"event: revoked\ndata: {\"revoked\":true,\"reason\":\"kill\",\"shutdown_timeout_ms\":500}\n\n"});
    w.stream_step();
    sdk->beacon().step(); // acts on it at its next step
    const auto s = sdk->get_beacon_status();
    BOOST_TEST(s.revoked);
    BOOST_TEST(s.revoked_reason == "kill");
    BOOST_TEST(sdk->shutdown_requested());
    BOOST_TEST(sdk_revocations.size() == 1u); // once, though both parts revoked
    const auto before = transport.count(http_method::post, heartbeat_path);
    sdk->shutdown();
    BOOST_TEST(transport.count(http_method::post, heartbeat_path) == before); // no final heartbeat
    BOOST_TEST(sdk->wait_for(0s));
}

BOOST_FIXTURE_TEST_CASE(revocation_by_the_beacon_shuts_the_worker_down, fixture) {
    sdk->beacon().step();
    auto& w = sdk->create_task_worker();
    transport.on(http_method::post, heartbeat_path).clear().respond(200, R"({"revoked":true,"reason":"admin"})");
    st::run_for(clock, 60s, [&] { return sdk->beacon().step(); });
    BOOST_TEST(w.get_status().revoked);
    BOOST_TEST(sdk->shutdown_requested());
    BOOST_TEST(sdk_revocations.size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(terminate_shuts_down_workers_first_then_the_beacon, fixture) {
    sdk->beacon().step();
    auto& w = sdk->create_task_worker();
    w.on_task("summarize", echo);
    stream({task_event("t_last"), "event: command\ndata: {\"id\":\"ct\",\"type\":\"terminate\",\"reason\":\"bye\"}\n\n"});
    w.stream_step();
    BOOST_TEST(sdk->shutdown_requested());
    BOOST_TEST(sdk->get_beacon_status().terminate_requested);
    sdk->shutdown();
    const auto all = transport.requests();
    BOOST_TEST_REQUIRE(!all.empty());
    // The last request is the beacon's final heartbeat, after the worker's last result.
    BOOST_TEST(all.back().path() == heartbeat_path);
    proto::heartbeat_request last;
    proto::decode_error err;
    BOOST_TEST_REQUIRE(proto::decode(all.back().request.body, last, err));
    BOOST_TEST((last.status == proto::heartbeat_status::stopped));
    BOOST_TEST((w.get_status().state == sekuire::worker_state::stopped));
    BOOST_TEST(!sdk->get_beacon_status().is_running);
}

BOOST_FIXTURE_TEST_CASE(shutdown_starts_every_workers_drain_before_waiting_for_any, fixture) {
    // The drains overlap: while the first worker finishes, the second takes no new task.
    sdk->beacon().step();
    test_sdk::worker_type* second = nullptr;
    std::string second_state;
    sekuire::worker_options o1;
    o1.logger = [&](sekuire::log_level, std::string_view line) {
        if (line == "worker stopped" && second_state.empty() && second)
            second_state = sekuire::to_string(second->get_status().state);
    };
    auto& w1 = sdk->create_task_worker(o1);
    auto& w2 = sdk->create_task_worker();
    second = &w2;
    w1.on_task("summarize", echo);
    w2.on_task("summarize", echo);
    w1.step();
    w2.step();
    sdk->shutdown();
    BOOST_TEST(second_state == "draining");
    BOOST_TEST((w2.get_status().state == sekuire::worker_state::stopped));
}

BOOST_FIXTURE_TEST_CASE(policy_hash_from_the_beacon_makes_the_worker_fetch, fixture) {
    sdk->beacon().step();
    sekuire::worker_options wo;
    wo.startup_jitter = std::chrono::milliseconds(0);
    wo.heartbeat_interval = 10min; // so that only the beacon can tell the worker
    auto& w = sdk->create_task_worker(wo);
    w.step(); // initial fetch: h0
    BOOST_TEST(transport.count(http_method::get, proto::path::active_policy("ws_sdk")) == 1u);
    // The backend's policy changes; the beacon's next heartbeat is the first to say so.
    transport.on(http_method::get, proto::path::active_policy("ws_sdk")).clear().respond(200, policy("h9"));
    script_beacon(std::nullopt, std::string("h9"));
    st::run_for(clock, 70s, [&] { return sdk->beacon().step(); });
    w.step(); // (a started worker is woken for this; here the test steps it)
    BOOST_TEST(transport.count(http_method::get, proto::path::active_policy("ws_sdk")) == 2u);
    BOOST_TEST(sdk->gateway().policy_hash() == "h9");
}

BOOST_FIXTURE_TEST_CASE(sdk_is_movable, fixture) {
    sdk->beacon().step();
    test_sdk moved = std::move(*sdk);
    BOOST_TEST(moved.is_connected());
    moved.shutdown();
    BOOST_TEST(!moved.get_beacon_status().is_running);
}

BOOST_AUTO_TEST_CASE(options_from_env) {
    const auto o = sekuire::sdk_options::from_env([](const char* n) -> std::optional<std::string> {
        if (std::string(n) == "SEKUIRE_AGENT_ID") return std::string("a1");
        return std::nullopt;
    });
    BOOST_TEST(o.agent_id == "a1");
    BOOST_TEST(o.auto_heartbeat);
    BOOST_TEST(o.api_base_url == "https://api.sekuire.ai");
}

BOOST_FIXTURE_TEST_CASE(a_workers_own_command_callback_keeps_the_sdk_wiring, fixture) {
    // The seed's worker.onCommand(cb): setting it must not cut the worker off the SDK.
    sdk->beacon().step();
    auto& w = sdk->create_task_worker();
    int mine = 0;
    w.on_command([&](const proto::command&) { ++mine; });
    stream({command_event("c1", "pause"), command_event("c2", "terminate")});
    w.stream_step();
    BOOST_TEST(mine == 2);
    BOOST_TEST(sdk->get_beacon_status().paused);
    BOOST_TEST(sdk_commands.size() == 2u);
    BOOST_TEST(sdk->shutdown_requested());
}

BOOST_FIXTURE_TEST_CASE(a_worker_created_while_paused_starts_paused_and_resumes_with_the_rest, fixture) {
    sdk->beacon().step();
    script_beacon(proto::command{"cmd_p", proto::command_type::pause, "pause", "hold", std::nullopt});
    st::run_for(clock, 60s, [&] { return sdk->beacon().step(); });
    BOOST_TEST_REQUIRE(sdk->get_beacon_status().paused);
    auto& w = sdk->create_task_worker();
    w.on_task("summarize", echo);
    BOOST_TEST(w.is_paused());
    stream({task_event("t_paused")});
    w.stream_step();
    BOOST_TEST(w.get_status().rejected == 1u);
    BOOST_TEST(w.get_status().completed == 0u);
    // A resume after that reaches it like any other worker.
    script_beacon(proto::command{"cmd_r", proto::command_type::resume, "resume", "", std::nullopt});
    st::run_for(clock, 60s, [&] { return sdk->beacon().step(); });
    BOOST_TEST(!w.is_paused());
    // And a worker created after the resume is not paused.
    auto& w2 = sdk->create_task_worker();
    BOOST_TEST(!w2.is_paused());
}

BOOST_FIXTURE_TEST_CASE(a_worker_created_after_a_revocation_is_revoked, fixture) {
    sdk->beacon().step();
    transport.on(http_method::post, heartbeat_path).clear().respond(200, R"({"revoked":true,"reason":"admin"})");
    st::run_for(clock, 60s, [&] { return sdk->beacon().step(); });
    BOOST_TEST_REQUIRE(sdk->shutdown_requested());
    auto& w = sdk->create_task_worker();
    const auto s = w.get_status();
    BOOST_TEST(s.revoked);
    BOOST_TEST(s.revoked_reason == "admin");
    BOOST_TEST(sdk_revocations.size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_worker_created_after_shutdown_is_stopped_and_sends_nothing, fixture) {
    sdk->beacon().step();
    sdk->shutdown();
    const auto before = transport.requests().size();
    auto& w = sdk->create_task_worker();
    BOOST_TEST((w.get_status().state == sekuire::worker_state::stopped));
    sekuire::error_code ec;
    w.start(ec);
    BOOST_TEST((ec == sekuire::errc::shutting_down));
    w.step();
    BOOST_TEST(transport.requests().size() == before);
    // The SDK itself does not start again either.
    sdk->start(ec);
    BOOST_TEST((ec == sekuire::errc::shutting_down));
}

BOOST_FIXTURE_TEST_CASE(a_worker_created_during_a_shutdown_is_drained_by_it, fixture) {
    // A terminate can start the shutdown at any moment; a worker created then must not be
    // left running after the beacon's final heartbeat.
    sdk->beacon().step();
    auto& w1 = sdk->create_task_worker();
    test_sdk::worker_type* late = nullptr;
    sekuire::worker_options o1;
    o1.logger = [&](sekuire::log_level, std::string_view line) {
        // The first worker is being stopped by the shutdown: create another right then.
        if (line.rfind("shutting down", 0) == 0 && !late) late = &sdk->create_task_worker();
    };
    auto& w0 = sdk->create_task_worker(o1);
    w0.step();
    w1.step();
    sdk->shutdown();
    BOOST_TEST_REQUIRE(late != nullptr);
    BOOST_TEST((late->get_status().state == sekuire::worker_state::stopped));
    BOOST_TEST(!sdk->get_beacon_status().is_running);
}

BOOST_FIXTURE_TEST_CASE(shutdown_from_a_callback_of_a_stepped_sdk_asks_and_a_later_call_carries_it_out, fixture) {
    sdk->beacon().step();
    auto& w = sdk->create_task_worker();
    w.step();
    also_on_command = [this](const proto::command&) { sdk->shutdown(); };
    script_beacon(proto::command{"cmd_p", proto::command_type::pause, "pause", "hold", std::nullopt});
    st::run_for(clock, 60s, [&] { return sdk->beacon().step(); });
    BOOST_TEST(sdk->shutdown_requested());
    BOOST_TEST(!sdk->wait_for(0s)); // asked for, not carried out from inside the callback
    BOOST_TEST(sdk->get_beacon_status().is_running);
    also_on_command = nullptr;
    const auto before = transport.count(http_method::post, heartbeat_path);
    sdk->shutdown();
    BOOST_TEST(sdk->wait_for(0s));
    BOOST_TEST(!sdk->get_beacon_status().is_running);
    BOOST_TEST((w.get_status().state == sekuire::worker_state::stopped));
    BOOST_TEST(transport.count(http_method::post, heartbeat_path) == before + 1); // one final heartbeat
}

BOOST_FIXTURE_TEST_CASE(shutdown_from_a_task_handler_asks_and_returns, fixture) {
    sdk->beacon().step();
    auto& w = sdk->create_task_worker();
    w.on_task("summarize", [this](const sekuire::task_context&, const boost::json::value& v) {
        sdk->shutdown(); // on the worker's own thread (inline executor): must not wait
        return v;
    });
    w.step();
    stream({task_event("t_bye")});
    w.stream_step();
    BOOST_TEST(w.get_status().completed == 1u);
    BOOST_TEST(sdk->shutdown_requested());
    sdk->shutdown();
    BOOST_TEST(sdk->wait_for(0s));
}

BOOST_FIXTURE_TEST_CASE(shutdown_from_the_beacons_thread_does_not_deadlock, fixture) {
    also_on_command = [this](const proto::command&) { sdk->shutdown(); };
    sdk->start();
    BOOST_TEST_REQUIRE(sdk->is_connected());
    script_beacon(proto::command{"cmd_p", proto::command_type::pause, "pause", "hold", std::nullopt});
    clock.advance(61s); // the next heartbeat brings the pause; its callback calls shutdown()
    require_done_or_exit(*sdk, "shutdown_from_the_beacons_thread_does_not_deadlock");
    BOOST_TEST(!sdk->get_beacon_status().is_running);
}

BOOST_AUTO_TEST_CASE(shutdown_from_a_status_callback_during_start_is_carried_out) {
    st::fake_clock clock;
    st::fake_transport transport;
    sekuire::memory_store store;
    std::unique_ptr<test_sdk> sdk;
    script_bootstrap(transport, clock);
    transport.on(http_method::post, heartbeat_path).respond(200, R"({"lease_renewed":true})");
    sekuire::sdk_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.agent_id = "agent-sdk";
    o.install_token = "skt_sdk_0123456789abcdefghijklmnop";
    o.random = [] { return 0.0; };
    o.on_status_change = [&](const sekuire::beacon_status& s) {
        if (s.state == sekuire::beacon_state::connected) sdk->shutdown();
    };
    sdk = std::make_unique<test_sdk>(o, transport, clock, store, st::fixed_probe{}, sekuire::inline_executor{});
    sdk->create_task_worker();
    sdk->start();
    require_done_or_exit(*sdk, "shutdown_from_a_status_callback_during_start_is_carried_out");
    BOOST_TEST(!sdk->get_beacon_status().is_running);
    sdk.reset();
}

BOOST_FIXTURE_TEST_CASE(shutdown_from_two_threads_at_once_shuts_down_once, fixture) {
    sdk->start();
    BOOST_TEST_REQUIRE(sdk->is_connected());
    const auto before = transport.count(http_method::post, heartbeat_path);
    std::atomic<int> returned{0};
    std::thread a([&] {
        sdk->shutdown();
        ++returned;
    });
    std::thread b([&] {
        sdk->shutdown();
        ++returned;
    });
    a.join();
    b.join();
    BOOST_TEST(returned.load() == 2);
    BOOST_TEST(sdk->wait_for(0s));
    BOOST_TEST(transport.count(http_method::post, heartbeat_path) == before + 1);
}

BOOST_AUTO_TEST_CASE(without_auto_heartbeat_workers_use_the_credentials_given) {
    st::fake_clock clock;
    st::fake_transport transport;
    sekuire::memory_store store;
    transport.on(http_method::post, worker_heartbeat_path).respond(200, R"({"active_policy_hash":"h0"})");
    sekuire::sdk_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.agent_id = "agent-sdk";
    o.auto_heartbeat = false;
    o.installation_id = installation;
    o.runtime_token = token;
    o.random = [] { return 0.0; };
    test_sdk sdk(o, transport, clock, store, st::fixed_probe{}, sekuire::inline_executor{});
    auto& w = sdk.create_task_worker();
    w.step();
    const auto hb = transport.requests(http_method::post, worker_heartbeat_path);
    BOOST_TEST_REQUIRE(hb.size() == 1u);
    BOOST_TEST(*sekuire::find_header(hb[0].request.headers, "Authorization") == "Bearer " + token);
    BOOST_TEST(transport.count(http_method::post, heartbeat_path) == 0u);
    BOOST_TEST(transport.count(http_method::post, std::string(proto::path::bootstrap)) == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_worker_with_another_base_url_is_refused, fixture) {
    sekuire::worker_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.api_base_url = "http://127.0.0.1:1";
    try {
        sdk->create_task_worker(o);
        BOOST_FAIL("create_task_worker accepted a base URL the SDK's transport does not serve");
    } catch (const sekuire::error& e) {
        BOOST_TEST((e.code() == sekuire::errc::invalid_option));
        BOOST_TEST(std::string(e.what()).find("http://127.0.0.1:1") != std::string::npos);
    }
}

BOOST_FIXTURE_TEST_CASE(a_user_metrics_callback_replaces_the_workers_sum, fixture) {
    sekuire::sdk_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.agent_id = "agent-sdk";
    o.install_token = "skt_sdk_0123456789abcdefghijklmnop";
    o.random = [] { return 0.0; };
    o.metrics = [] {
        proto::heartbeat_metrics m;
        m.requests_handled = 42;
        return m;
    };
    sekuire::memory_store other_store;
    test_sdk own(o, transport, clock, other_store, st::fixed_probe{}, sekuire::inline_executor{});
    own.beacon().step();
    proto::heartbeat_request body;
    proto::decode_error err;
    BOOST_TEST_REQUIRE(proto::decode(transport.requests(http_method::post, heartbeat_path).back().request.body, body, err));
    BOOST_TEST(body.metrics.requests_handled == 42);
}

// Issue 15, item 5: the beacon's heartbeat carries the workers' metrics whole: tasks handled
// (completed and failed), errors (failed and rejected), and the average handler latency
// weighted by each worker's count.
BOOST_FIXTURE_TEST_CASE(heartbeat_metrics_sum_every_worker_whole, fixture) {
    sdk->beacon().step();
    auto& a = sdk->create_task_worker();
    auto& b = sdk->create_task_worker();
    // Each handler takes the time its input says, on the fake clock.
    auto timed = [this](const sekuire::task_context&, const boost::json::value& v) {
        clock.advance(std::chrono::milliseconds(v.at("ms").as_int64()));
        if (v.as_object().contains("fail")) throw std::runtime_error("handler failed");
        return v;
    };
    a.on_task("summarize", timed);
    b.on_task("summarize", timed);
    a.step();
    b.step();
    auto event = [](const std::string& id, std::int64_t ms, bool fail = false, const std::string& cap = "summarize") {
        proto::task t;
        t.task_id = id;
        t.capability = cap;
        boost::json::object in{{"ms", ms}};
        if (fail) in["fail"] = true;
        t.input = std::move(in);
        return "event: task\ndata: " + proto::encode(t) + "\n\n";
    };
    stream({event("a1", 100), event("a2", 300)});                                     // a: 2 completed, 200 ms on average
    stream({event("b1", 50), event("b2", 30, true), event("b3", 0, false, "nothing")}); // b: 1 completed, 1 failed, 1 rejected
    a.stream_step();
    b.stream_step();
    BOOST_TEST(a.metrics().requests_handled == 2);
    BOOST_TEST(a.metrics().avg_latency_ms == 200);
    BOOST_TEST(b.metrics().requests_handled == 2);
    BOOST_TEST(b.metrics().errors == 2);
    BOOST_TEST(b.metrics().avg_latency_ms == 40);
    st::run_for(clock, 61s, [&] { return sdk->beacon().step(); });
    proto::heartbeat_request body;
    proto::decode_error err;
    BOOST_TEST_REQUIRE(proto::decode(transport.requests(http_method::post, heartbeat_path).back().request.body, body, err));
    BOOST_TEST(body.metrics.requests_handled == 4);
    BOOST_TEST(body.metrics.errors == 2);
    BOOST_TEST(body.metrics.avg_latency_ms == (200 * 2 + 40 * 2) / 4);
}

// Issue 15, item 1: a gateway given to the SDK is wired into every worker it creates.
BOOST_AUTO_TEST_CASE(the_sdks_gateway_is_every_workers_gateway) {
    struct counting {
        std::shared_ptr<std::atomic<int>> admitted = std::make_shared<std::atomic<int>>(0);
        sekuire::admission admit(std::string_view, sekuire::steady_time_point) {
            ++*admitted;
            return {};
        }
        void set_policy(proto::policy_document) {}
        std::string policy_hash() const { return "shared"; }
        bool on_heartbeat_response(const std::optional<std::string>&) const { return false; }
    } mine;
    st::fake_clock clock;
    st::fake_transport transport;
    script_bootstrap(transport, clock);
    transport.on(http_method::post, heartbeat_path).respond(200, R"({"lease_renewed":true})");
    transport.on(http_method::post, worker_heartbeat_path).respond(200, R"({"active_policy_hash":"shared"})");
    transport.on_prefix(http_method::post, std::string(proto::path::tasks_prefix)).respond(200, R"({"accepted":true})");
    sekuire::sdk_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.agent_id = "agent-sdk";
    o.install_token = "skt_sdk_0123456789abcdefghijklmnop";
    o.random = [] { return 0.0; };
    o.gateway = mine;
    test_sdk sdk(o, transport, clock, sekuire::memory_store{}, st::fixed_probe{}, sekuire::inline_executor{});
    sdk.beacon().step();
    sekuire::worker_options wo;
    wo.fetch_policy = false;
    auto& a = sdk.create_task_worker(wo);
    auto& b = sdk.create_task_worker(wo);
    for (auto* w : {&a, &b}) {
        w->on_task("summarize", echo);
        w->step();
    }
    st::fake_transport::stream_script s1, s2;
    s1.chunks = {task_event("ga")};
    s2.chunks = {task_event("gb")};
    transport.on_stream(stream_path, s1);
    transport.on_stream(stream_path, s2);
    a.stream_step();
    b.stream_step();
    BOOST_TEST(*mine.admitted == 2);
    BOOST_TEST(a.get_status().policy_hash == "shared");
    BOOST_TEST(b.get_status().policy_hash == "shared");
    BOOST_TEST(sdk.gateway().policy_hash() == "shared");
    sdk.shutdown();
}

BOOST_AUTO_TEST_SUITE_END()
