// SPDX-License-Identifier: MIT
// The asynchronous SDK (one beacon and one worker on one executor) on the fake asynchronous
// transport, fake timers and the fake clock: the worker takes the installation the beacon
// bootstrapped, metrics reach the beacon's heartbeats, commands and the kill switch reach
// both parts, and the stop drains the worker before the beacon's final heartbeat.
#include <sekuire/async/sdk.hpp>

#include "beacon_fixture.hpp"

#include <sekuire/testing/fake_async.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace beacon_test;

BOOST_AUTO_TEST_SUITE(async_sdk)

namespace {

using test_sdk = sekuire::async::basic_sdk<st::fake_async_transport, st::fake_clock, sekuire::memory_store,
                                           st::fixed_probe, st::fake_timer>;

const std::string stream_path = proto::path::task_stream(installation, {});
const std::string worker_heartbeat_path = proto::path::worker_heartbeat(installation);

std::string sse(const std::string& type, const std::string& data) {
    return "event: " + type + "\ndata: " + data + "\n\n";
}

std::string task_event(const std::string& id) {
    proto::task t;
    t.task_id = id;
    t.capability = "summarize";
    t.input = boost::json::object{{"text", "hello"}};
    return sse("task", proto::encode(t));
}

struct sdk_fixture : fixture {
    boost::asio::io_context ioc;
    st::fake_timer_queue timers;
    std::optional<st::fake_async_transport> async_transport;
    std::unique_ptr<test_sdk> sdk;
    std::vector<std::string> done;

    sdk_fixture() {
        script_bootstrap_ok();
        script_heartbeat_ok();
        transport.on(http_method::post, worker_heartbeat_path).respond(200, R"({"command":null})");
        transport.on_prefix(http_method::post, std::string(proto::path::tasks_prefix)).respond(200, R"({"accepted":true})");
    }
    ~sdk_fixture() {
        transport.clear_scripts();
        if (sdk) {
            sdk.reset();
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

    sekuire::sdk_options sdk_options() {
        sekuire::sdk_options o;
        static_cast<sekuire::beacon_options&>(o) = options();
        return o;
    }

    test_sdk& make(sekuire::sdk_options o) {
        async_transport.emplace(ioc.get_executor(), transport);
        sekuire::worker_options wo;
        wo.heartbeat_interval = 30s;
        sdk = std::make_unique<test_sdk>(ioc.get_executor(), std::move(o), wo, *async_transport, clock, store,
                                         st::fixed_probe{}, st::fake_timer(ioc.get_executor(), timers),
                                         st::fake_timer(ioc.get_executor(), timers));
        sdk->on_task("summarize", [](const sekuire::task_context&, const boost::json::value& v) { return v; });
        return *sdk;
    }
    test_sdk& make() { return make(sdk_options()); }

    void held_stream(std::vector<std::string> chunks = {}) {
        st::fake_transport::stream_script s;
        s.chunks = std::move(chunks);
        s.hold_open = true;
        transport.on_stream(stream_path, s);
    }
    void start() {
        sdk->async_start([this](sekuire::error_code ec) { done.push_back("start:" + ec.message()); });
    }
    void stop() {
        sdk->async_stop([this](sekuire::error_code ec) { done.push_back("stop:" + ec.message()); });
    }
    std::size_t run_for(std::chrono::milliseconds d) { return st::run_async_for(clock, ioc, timers, d); }
    bool completed(const std::string& what) const {
        return std::find(done.begin(), done.end(), what + ":" + sekuire::error_code().message()) != done.end();
    }
    std::size_t completions() const {
        std::size_t n = 0;
        for (const auto& r : transport.requests())
            if (r.path().rfind(std::string(proto::path::tasks_prefix), 0) == 0) ++n;
        return n;
    }
};

} // namespace

BOOST_FIXTURE_TEST_CASE(the_worker_takes_the_installation_the_beacon_bootstrapped, sdk_fixture) {
    auto& s = make();
    held_stream({task_event("t1")});
    start();
    run_for(0ms);
    BOOST_TEST(completed("start"));
    BOOST_TEST(bootstraps() == 1u); // the beacon's; the worker never bootstraps
    BOOST_TEST(s.is_connected());
    const auto all = transport.requests();
    BOOST_TEST_REQUIRE(all.size() >= 3u);
    BOOST_TEST(all[0].path() == bootstrap_path);
    BOOST_TEST(all[1].path() == heartbeat_path);
    std::size_t streams = 0;
    for (const auto& r : all)
        if (r.streamed) {
            ++streams;
            BOOST_TEST(bearer(r) == runtime_1); // the token the beacon stored
        }
    BOOST_TEST(streams == 1u);
    BOOST_TEST(completions() == 1u);
    BOOST_TEST(s.get_worker_status().completed == 1u);
    // The next heartbeat of the beacon carries the worker's metrics.
    run_for(60s);
    const auto bodies = heartbeat_bodies();
    BOOST_TEST_REQUIRE(bodies.size() >= 2u);
    BOOST_TEST(bodies.back().metrics.requests_handled == 1);
}

BOOST_FIXTURE_TEST_CASE(a_pause_from_the_beacon_pauses_the_worker_and_is_reported_once, sdk_fixture) {
    auto& s = make();
    held_stream();
    start();
    run_for(0ms);
    auto r = live_response();
    proto::command pause;
    pause.id = "cmd_p";
    pause.type = proto::command_type::pause;
    pause.reason = "maintenance";
    r.command = pause;
    transport.on(http_method::post, heartbeat_path).clear().respond(200, proto::encode(r));
    run_for(60s);
    BOOST_TEST(s.worker().is_paused());
    BOOST_TEST(commands.size() == 1u);
    // The same command on the task stream: acted on once.
    async_transport->push_chunk(sse("command", proto::encode(pause)));
    run_for(0ms);
    BOOST_TEST(commands.size() == 1u);
    async_transport->push_chunk(task_event("t_paused"));
    run_for(0ms);
    BOOST_TEST(s.get_worker_status().rejected == 1u);
}

BOOST_FIXTURE_TEST_CASE(stop_drains_the_worker_then_sends_the_final_heartbeat, sdk_fixture) {
    auto& s = make();
    held_stream();
    start();
    run_for(0ms);
    stop();
    run_for(1s);
    BOOST_TEST(completed("stop"));
    BOOST_TEST(s.worker().is_finished());
    BOOST_TEST(!s.get_beacon_status().is_running);
    const auto all = transport.requests();
    BOOST_TEST_REQUIRE(!all.empty());
    BOOST_TEST(all.back().path() == heartbeat_path); // the beacon's final heartbeat comes last
    const auto bodies = heartbeat_bodies();
    BOOST_TEST((bodies.back().status == proto::heartbeat_status::stopped));
    BOOST_TEST(async_transport->open_streams() == 0u);
    // A second stop completes too; a start is refused.
    stop();
    start();
    run_for(0ms);
    BOOST_TEST(std::count(done.begin(), done.end(), "stop:" + sekuire::error_code().message()) == 2);
    BOOST_TEST(done.back() != "start:" + sekuire::error_code().message());
}

BOOST_FIXTURE_TEST_CASE(a_terminate_on_the_task_stream_stops_both_parts, sdk_fixture) {
    auto& s = make();
    held_stream({sse("command", R"({"id":"cmd_t","type":"terminate","reason":"decommissioned"})")});
    start();
    run_for(1s);
    BOOST_TEST(commands.size() == 1u); // the SDK's on_command, once
    BOOST_TEST(s.worker().is_finished());
    BOOST_TEST(!s.get_beacon_status().is_running);
    BOOST_TEST((heartbeat_bodies().back().status == proto::heartbeat_status::stopped));
    stop();
    run_for(0ms);
    BOOST_TEST(completed("stop"));
}

BOOST_FIXTURE_TEST_CASE(a_revocation_on_the_task_stream_reaches_the_beacon_and_is_reported_once, sdk_fixture) {
    auto& s = make();
    held_stream({sse("revoked", R"({"lease_renewed":false,"revoked":true,"reason":"kill switch","shutdown_timeout_ms":1000})")});
    start();
    run_for(2s);
    BOOST_TEST(revocations.size() == 1u);
    BOOST_TEST(s.get_worker_status().revoked);
    BOOST_TEST(s.get_beacon_status().revoked);
    BOOST_TEST(s.worker().is_finished());
    BOOST_TEST(!s.get_beacon_status().is_running);
    const auto hb = heartbeats();
    run_for(5min);
    BOOST_TEST(heartbeats() == hb); // nothing more after a revocation
}

BOOST_AUTO_TEST_SUITE_END()
