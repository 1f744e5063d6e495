// SPDX-License-Identifier: MIT
// The asynchronous beacon on a fake asynchronous transport, fake timers and the fake clock:
// the request sequences of the synchronous beacon's main flows, start and stop completions,
// cancellation. No sockets, no sleeping: time moves only through run_async_for().
#include <sekuire/async/beacon.hpp>

#include "beacon_fixture.hpp"

#include <sekuire/testing/fake_async.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#endif

#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace beacon_test;

BOOST_AUTO_TEST_SUITE(async_beacon)

namespace {

using async_test_beacon = sekuire::async::basic_beacon<st::fake_async_transport, st::fake_clock, sekuire::memory_store,
                                                       st::fixed_probe, st::fake_timer>;

// The synchronous beacon's fixture (scripts, tokens, recorded callbacks) driving an
// asynchronous beacon on one io_context.
struct async_fixture : fixture {
    boost::asio::io_context ioc;
    st::fake_timer_queue timers;
    std::optional<st::fake_async_transport> async_transport;
    std::unique_ptr<async_test_beacon> ab;
    std::vector<std::string> completions; // "start:<message>", "stop:<message>"

    ~async_fixture() {
        transport.clear_scripts();
        ab.reset(); // begins the stop: the final heartbeat goes out while ioc runs
        if (async_transport) async_transport->hold(false);
        if (async_transport) async_transport->release();
        ioc.restart();
        ioc.poll();
    }

    async_test_beacon& make_async(sekuire::beacon_options o) {
        async_transport.emplace(ioc.get_executor(), transport);
        ab = std::make_unique<async_test_beacon>(ioc.get_executor(), std::move(o), *async_transport, clock, store,
                                                 st::fixed_probe{}, st::fake_timer(ioc.get_executor(), timers));
        return *ab;
    }
    async_test_beacon& make_async() { return make_async(options()); }

    void start() {
        ab->async_start([this](sekuire::error_code ec) { completions.push_back("start:" + ec.message()); });
    }
    void stop() {
        ab->async_stop([this](sekuire::error_code ec) { completions.push_back("stop:" + ec.message()); });
    }
    std::size_t run_for(std::chrono::milliseconds d) { return st::run_async_for(clock, ioc, timers, d); }
    bool completed(const std::string& what) const {
        return std::find(completions.begin(), completions.end(), what + ":" + sekuire::error_code().message()) !=
               completions.end();
    }
};

} // namespace

BOOST_FIXTURE_TEST_CASE(install_token_bootstrap_then_registration_heartbeat, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make_async();
    start();
    BOOST_TEST(transport.total() == 0u); // nothing happens inside the call
    BOOST_TEST(completions.empty());
    run_for(0ms);
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(heartbeats() == 1u);
    BOOST_TEST_REQUIRE(completions.size() == 1u);
    BOOST_TEST(completed("start"));
    const auto all = transport.requests();
    BOOST_TEST_REQUIRE(all.size() == 2u);
    BOOST_TEST(all[0].path() == bootstrap_path);
    BOOST_TEST(all[1].path() == heartbeat_path);
    BOOST_TEST(bearer(all[1]) == runtime_1);
    sekuire::error_code ec;
    const auto creds = store.load(ec);
    BOOST_TEST_REQUIRE(creds.has_value());
    BOOST_TEST(creds->refresh_token == refresh_1);
    const auto s = b.get_status();
    BOOST_TEST((s.state == sekuire::beacon_state::connected));
    BOOST_TEST(s.is_running);
    BOOST_TEST(b.is_connected());
    BOOST_TEST(s.runtime_token == sekuire::mask_token(runtime_1));
    BOOST_TEST(!statuses.empty()); // on_status_change ran
    BOOST_TEST(transport.unscripted_count() == 0u);
}

BOOST_FIXTURE_TEST_CASE(exactly_n_heartbeats_after_n_intervals, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    make_async();
    start();
    run_for(0ms);
    BOOST_TEST(heartbeats() == 1u);
    for (int n = 1; n <= 10; ++n) {
        run_for(60s);
        BOOST_TEST(heartbeats() == static_cast<std::size_t>(n + 1));
    }
    run_for(59s);
    BOOST_TEST(heartbeats() == 11u);
    const auto bodies = heartbeat_bodies();
    BOOST_TEST_REQUIRE(bodies.size() == 11u);
    for (std::size_t i = 0; i < bodies.size(); ++i) {
        BOOST_TEST(bodies[i].sequence == static_cast<std::int64_t>(i + 1));
        BOOST_TEST((bodies[i].status == proto::heartbeat_status::healthy));
        BOOST_TEST(bodies[i].uptime_seconds == static_cast<std::int64_t>(i * 60));
    }
    BOOST_TEST(timers.pending() == 1u); // one wake-up scheduled, not one per round
}

BOOST_FIXTURE_TEST_CASE(unauthorized_runtime_token_refreshes_once_and_retries_once, async_fixture) {
    script_refresh_ok(runtime_2);
    transport.on(http_method::post, heartbeat_path).handle([this](const sekuire::http_request& req) {
        const std::string* auth = sekuire::find_header(req.headers, "Authorization");
        if (auth && *auth == "Bearer " + runtime_1) return st::fake_transport::reply{401, error_body("unauthorized"), {}, {}};
        return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
    });
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    o.runtime_token = runtime_1;
    auto& b = make_async(o);
    start();
    run_for(0ms);
    const auto all = transport.requests();
    BOOST_TEST_REQUIRE(all.size() == 3u);
    BOOST_TEST(all[0].path() == heartbeat_path);
    BOOST_TEST(bearer(all[0]) == runtime_1);
    BOOST_TEST(all[1].path() == refresh_path);
    BOOST_TEST(all[2].path() == heartbeat_path);
    BOOST_TEST(bearer(all[2]) == runtime_2);
    BOOST_TEST(b.is_connected());
    BOOST_TEST(completed("start"));
}

BOOST_FIXTURE_TEST_CASE(revocation_by_heartbeat_stops_everything, async_fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path)
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        })
        .respond(200, R"({"lease_renewed": false, "revoked": true,
                          "reason": "Emergency shutdown initiated by admin", "shutdown_timeout_ms": 5000})");
    auto& b = make_async();
    start();
    run_for(60s);
    const auto s = b.get_status();
    BOOST_TEST(s.revoked);
    BOOST_TEST((s.state == sekuire::beacon_state::revoked));
    BOOST_TEST_REQUIRE(revocations.size() == 1u);
    BOOST_TEST(revocations[0].reason == "Emergency shutdown initiated by admin");
    BOOST_TEST(revocations[0].shutdown_timeout.count() == 5000);
    sekuire::error_code ec;
    BOOST_TEST(!store.load(ec).has_value());
    const auto before = transport.total();
    run_for(1h);
    BOOST_TEST(timers.pending() == 0u); // nothing scheduled any more
    stop();
    run_for(0ms);
    BOOST_TEST(completed("stop"));
    BOOST_TEST(transport.total() == before); // no heartbeat, not even a final one
}

BOOST_FIXTURE_TEST_CASE(a_revocation_from_another_source_is_acted_on_at_once, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make_async();
    start();
    run_for(0ms);
    b.apply_revocation(proto::revocation{"revoked by the task stream", 1000});
    run_for(0ms);
    BOOST_TEST(b.get_status().revoked);
    BOOST_TEST_REQUIRE(revocations.size() == 1u);
    BOOST_TEST(revocations[0].reason == "revoked by the task stream");
    const auto before = transport.total();
    run_for(10min);
    BOOST_TEST(transport.total() == before);
}

BOOST_FIXTURE_TEST_CASE(a_revocation_during_a_heartbeat_is_acted_on_after_its_answer, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make_async();
    start();
    run_for(0ms);
    async_transport->hold(true);
    run_for(60s);
    BOOST_TEST(async_transport->held() == 1u);
    b.apply_revocation(proto::revocation{"revoked meanwhile", std::nullopt});
    run_for(0ms);
    BOOST_TEST(!b.get_status().revoked);
    async_transport->hold(false);
    async_transport->release();
    run_for(0ms); // no time passes: acted on at once
    BOOST_TEST(b.get_status().revoked);
    BOOST_TEST(revocations.size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(commands_from_another_source_are_deduplicated, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make_async();
    start();
    run_for(0ms);
    proto::command c;
    c.id = "cmd-1";
    c.type = proto::command_type::pause;
    c.type_name = "pause";
    b.apply_command(c);
    b.apply_command(c);
    run_for(0ms);
    BOOST_TEST(commands.size() == 1u);
    BOOST_TEST(b.get_status().paused);
    run_for(60s);
    const auto bodies = heartbeat_bodies();
    BOOST_TEST_REQUIRE(bodies.size() == 2u);
    BOOST_TEST((bodies.back().status == proto::heartbeat_status::paused));
}

BOOST_FIXTURE_TEST_CASE(stop_sends_exactly_one_final_heartbeat, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto o = options();
    o.stop_timeout = 1500ms;
    auto& b = make_async(o);
    start();
    run_for(120s);
    BOOST_TEST(heartbeats() == 3u);
    stop();
    stop();
    run_for(0ms);
    BOOST_TEST(std::count(completions.begin(), completions.end(), "stop:" + sekuire::error_code().message()) == 2);
    const auto hbs = transport.requests(http_method::post, heartbeat_path);
    BOOST_TEST_REQUIRE(hbs.size() == 4u);
    proto::heartbeat_request last;
    proto::decode_error err;
    BOOST_TEST_REQUIRE(proto::decode(hbs.back().request.body, last, err));
    BOOST_TEST((last.status == proto::heartbeat_status::stopped));
    BOOST_TEST(hbs.back().request.timeout.count() == 1500);
    const auto s = b.get_status();
    BOOST_TEST(!s.is_running);
    BOOST_TEST((s.state == sekuire::beacon_state::stopped));
    BOOST_TEST(timers.pending() == 0u);
    run_for(1h);
    BOOST_TEST(heartbeats() == 4u);
    // A stopped beacon cannot start again.
    completions.clear();
    start();
    run_for(0ms);
    BOOST_TEST_REQUIRE(completions.size() == 1u);
    BOOST_TEST(completions[0] == "start:" + sekuire::error_code(sekuire::errc::already_started).message());
    BOOST_TEST(heartbeats() == 4u);
}

BOOST_FIXTURE_TEST_CASE(final_heartbeat_failure_is_not_retried, async_fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path)
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        })
        .fail(sekuire::errc::timeout);
    make_async();
    start();
    run_for(0ms);
    stop();
    run_for(10min);
    BOOST_TEST(completed("stop"));
    BOOST_TEST(heartbeats() == 2u);
}

BOOST_FIXTURE_TEST_CASE(stop_before_start_sends_nothing_and_start_is_refused_after, async_fixture) {
    make_async();
    stop();
    run_for(0ms);
    BOOST_TEST(completed("stop"));
    start();
    run_for(1min);
    BOOST_TEST(transport.total() == 0u);
    BOOST_TEST(completions.back() == "start:" + sekuire::error_code(sekuire::errc::already_started).message());
}

BOOST_FIXTURE_TEST_CASE(a_second_start_is_refused, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    make_async();
    start();
    start();
    run_for(0ms);
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST_REQUIRE(completions.size() == 2u);
    BOOST_TEST(completed("start"));
    BOOST_TEST(std::count(completions.begin(), completions.end(),
                          "start:" + sekuire::error_code(sekuire::errc::already_started).message()) == 1);
}

BOOST_FIXTURE_TEST_CASE(stop_cancels_the_heartbeat_under_way_then_sends_the_final_one, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make_async();
    start();
    run_for(0ms);
    async_transport->hold(true);
    run_for(60s);
    BOOST_TEST(heartbeats() == 2u);
    BOOST_TEST(async_transport->held() == 1u); // the second heartbeat waits for its answer
    BOOST_TEST(timers.pending() == 0u);        // no wake-up while a request is out
    stop();
    run_for(0ms);
    // The held heartbeat was cancelled; the final heartbeat is out, held too.
    BOOST_TEST(heartbeats() == 3u);
    BOOST_TEST(async_transport->held() == 1u);
    BOOST_TEST(!completed("stop"));
    async_transport->release();
    run_for(0ms);
    BOOST_TEST(completed("stop"));
    BOOST_TEST(async_transport->outstanding() == 0u);
    const auto bodies = heartbeat_bodies();
    BOOST_TEST_REQUIRE(bodies.size() == 3u);
    BOOST_TEST((bodies.back().status == proto::heartbeat_status::stopped));
    BOOST_TEST((b.get_status().state == sekuire::beacon_state::stopped));
}

BOOST_FIXTURE_TEST_CASE(stop_during_the_bootstrap_cancels_it_and_sends_no_final_heartbeat, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    make_async();
    async_transport->hold(true);
    start();
    run_for(0ms);
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(async_transport->held() == 1u);
    stop();
    run_for(0ms);
    BOOST_TEST(async_transport->held() == 0u); // cancelled
    BOOST_TEST(async_transport->outstanding() == 0u);
    BOOST_TEST(completed("stop"));
    BOOST_TEST(completed("start")); // a pending start completes with the stop
    BOOST_TEST(heartbeats() == 0u);
}

BOOST_FIXTURE_TEST_CASE(start_completes_after_start_timeout_when_the_first_pass_is_slow, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto o = options();
    o.start_timeout = 5s;
    make_async(o);
    async_transport->hold(true);
    start();
    run_for(4999ms);
    BOOST_TEST(!completed("start"));
    run_for(1ms);
    BOOST_TEST(completed("start"));
    BOOST_TEST(async_transport->held() == 1u); // the bootstrap is still out
    async_transport->hold(false);
    async_transport->release();
    run_for(0ms);
    BOOST_TEST(heartbeats() == 1u);
}

BOOST_FIXTURE_TEST_CASE(destructor_sends_the_final_heartbeat_without_calling_back, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    make_async();
    start();
    run_for(0ms);
    const auto logged = logs.size();
    const auto changes = statuses.size();
    ab.reset();
    run_for(0ms);
    BOOST_TEST(heartbeats() == 2u); // registration + final
    BOOST_TEST(logs.size() == logged);
    BOOST_TEST(statuses.size() == changes);
}

// use_future's handler runs on Asio's system executor (another thread): waited for, bounded.
BOOST_FIXTURE_TEST_CASE(use_future_completes, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make_async();
    std::future<void> started = b.async_start(boost::asio::use_future);
    run_for(0ms);
    BOOST_TEST_REQUIRE((started.wait_for(30s) == std::future_status::ready));
    BOOST_CHECK_NO_THROW(started.get());
    std::future<void> again = b.async_start(boost::asio::use_future);
    run_for(0ms);
    BOOST_TEST_REQUIRE((again.wait_for(30s) == std::future_status::ready));
    BOOST_CHECK_THROW(again.get(), boost::system::system_error);
}

BOOST_FIXTURE_TEST_CASE(invalid_options_are_refused_with_a_clear_error, async_fixture) {
    auto o = options();
    o.heartbeat_interval = 0s;
    try {
        make_async(o);
        BOOST_FAIL("expected sekuire::error");
    } catch (const sekuire::error& e) {
        BOOST_TEST((e.code() == sekuire::errc::invalid_option));
        BOOST_TEST(std::string(e.what()).find("heartbeat_interval") != std::string::npos);
    }
}

BOOST_FIXTURE_TEST_CASE(no_token_appears_in_logs_or_status, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make_async();
    start();
    run_for(5min);
    stop();
    run_for(0ms);
    const auto s = b.get_status();
    for (const std::string& secret : {install_token, runtime_1, refresh_1}) {
        for (const auto& line : logs) BOOST_TEST(line.find(secret) == std::string::npos);
        BOOST_TEST(s.runtime_token.find(secret) == std::string::npos);
        BOOST_TEST(s.last_error.find(secret) == std::string::npos);
    }
}

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
BOOST_FIXTURE_TEST_CASE(coroutines_await_start_and_stop, async_fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make_async();
    std::vector<std::string> steps;
    boost::asio::co_spawn(
        ioc,
        [&]() -> boost::asio::awaitable<void> {
            co_await b.async_start(boost::asio::use_awaitable);
            steps.push_back(b.is_connected() ? "connected" : "not connected");
            co_await b.async_stop(boost::asio::use_awaitable);
            steps.push_back("stopped");
        },
        boost::asio::detached);
    run_for(0ms);
    BOOST_TEST_REQUIRE(steps.size() == 2u);
    BOOST_TEST(steps[0] == "connected");
    BOOST_TEST(steps[1] == "stopped");
    BOOST_TEST(heartbeats() == 2u);
}
#endif

BOOST_AUTO_TEST_SUITE_END()
