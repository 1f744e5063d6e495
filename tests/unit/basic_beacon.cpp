// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/basic_beacon.hpp>

#include "beacon_fixture.hpp"
#include "failing_store.hpp"

#include <boost/test/unit_test.hpp>

#include <sekuire/file_store.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <future>
#include <thread>

using namespace beacon_test;

BOOST_AUTO_TEST_SUITE(basic_beacon)

namespace {
// Steps from deadline to deadline until the beacon counts `n` consecutive failures.
void run_until_failures(fixture& f, test_beacon& b, std::uint32_t n) {
    for (int i = 0; i < 1000 && b.get_status().failed_heartbeats < n; ++i) f.clock.advance_to(b.step());
    BOOST_TEST(b.get_status().failed_heartbeats == n);
}

// A fresh directory, removed with its contents at the end.
struct scratch_dir {
    std::string dir;
    scratch_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "sekuire-beacon-XXXXXX").string();
        BOOST_REQUIRE(::mkdtemp(&pattern[0]) != nullptr);
        dir = pattern;
    }
    ~scratch_dir() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    std::string path(const std::string& name) const { return dir + "/" + name; }
};

using file_beacon = sekuire::basic_beacon<st::fake_transport, st::fake_clock, sekuire::file_store, st::fixed_probe>;
} // namespace

// ---- the auth chain ---------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(install_token_bootstrap_then_registration_heartbeat, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make();
    b.step();

    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(heartbeats() == 1u); // the registration heartbeat, right after auth
    const auto boot = transport.requests(http_method::post, bootstrap_path).front();
    proto::bootstrap_request body;
    proto::decode_error err;
    BOOST_TEST_REQUIRE(proto::decode(boot.request.body, body, err));
    BOOST_TEST(body.install_token == install_token);
    BOOST_TEST(body.agent_id == "agent-0123");
    BOOST_TEST(body.capabilities.size() == 2u);
    BOOST_TEST(body.platform.type == "bare_metal");
    BOOST_TEST(body.sdk.name == "sekuire-cpp");

    const auto hb = transport.requests(http_method::post, heartbeat_path).front();
    BOOST_TEST(bearer(hb) == runtime_1);

    sekuire::error_code ec;
    auto creds = store.load(ec);
    BOOST_TEST_REQUIRE(creds.has_value());
    BOOST_TEST(creds->installation_id == installation);
    BOOST_TEST(creds->refresh_token == refresh_1);
    BOOST_TEST(creds->runtime_token == runtime_1);

    const auto s = b.get_status();
    BOOST_TEST((s.state == sekuire::beacon_state::connected));
    BOOST_TEST(b.is_connected());
    BOOST_TEST(s.installation_id == installation);
    BOOST_TEST(s.runtime_token == sekuire::mask_token(runtime_1));
    BOOST_TEST(s.deployment_url == "https://dashboard.example/installations/" + installation);
    BOOST_TEST(s.last_heartbeat.has_value());
    BOOST_TEST(!s.degraded_mode);
    BOOST_TEST(s.heartbeats_sent == 1u);
    BOOST_TEST(s.lease_expires_at.has_value());
    BOOST_TEST(transport.unscripted_count() == 0u);

    auto got = b.get_installation_credentials();
    BOOST_TEST_REQUIRE(got.has_value());
    BOOST_TEST(got->refresh_token == refresh_1);
}

BOOST_FIXTURE_TEST_CASE(recovery_credentials_without_runtime_token_refresh_first, fixture) {
    script_refresh_ok(runtime_2);
    script_heartbeat_ok();
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    auto& b = make(o);
    b.step();
    BOOST_TEST(bootstraps() == 0u); // the install token is never spent on a restart
    BOOST_TEST(refreshes() == 1u);
    BOOST_TEST_REQUIRE(heartbeats() == 1u);
    BOOST_TEST(bearer(transport.requests(http_method::post, heartbeat_path).front()) == runtime_2);
    // The refresh call carries the refresh token in its body and no bearer.
    const auto r = transport.requests(http_method::post, refresh_path).front();
    BOOST_TEST(r.request.body.find(refresh_1) != std::string::npos);
    BOOST_TEST(sekuire::find_header(r.request.headers, "Authorization") == nullptr);
    BOOST_TEST(b.is_connected());
}

BOOST_FIXTURE_TEST_CASE(a_structured_logger_gets_the_event_and_the_installation, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    std::vector<std::pair<std::string, std::string>> records; // event, installation id
    auto o = options();
    o.logger = [&](const sekuire::log_record& r) {
        records.emplace_back(std::string(r.event), std::string(r.installation_id));
    };
    auto& b = make(o);
    b.step();
    BOOST_TEST_REQUIRE(b.is_connected());
    beacon.reset(); // its last lines (the final heartbeat) go to `records` while they exist
    bool bootstrapped = false;
    for (const auto& r : records) {
        BOOST_TEST(!r.first.empty());
        if (r.first == "bootstrapped") {
            bootstrapped = true;
            BOOST_TEST(r.second == installation);
        }
    }
    BOOST_TEST(bootstrapped);
}

namespace {
// A memory_store that counts its loads (its version() is memory_store's).
struct counting_store {
    sekuire::memory_store inner;
    std::shared_ptr<std::atomic<int>> loads = std::make_shared<std::atomic<int>>(0);
    std::optional<sekuire::installation_credentials> load(sekuire::error_code& ec) const {
        ++*loads;
        return inner.load(ec);
    }
    void save(const sekuire::installation_credentials& c, sekuire::error_code& ec) { inner.save(c, ec); }
    void clear(sekuire::error_code& ec) { inner.clear(ec); }
    void lock_refresh() { inner.lock_refresh(); }
    void unlock_refresh() { inner.unlock_refresh(); }
    bool try_lock_refresh(sekuire::error_code& ec) { return inner.try_lock_refresh(ec); }
    std::optional<std::uint64_t> version() const noexcept { return inner.version(); }
};
} // namespace

BOOST_FIXTURE_TEST_CASE(the_store_is_loaded_again_only_when_its_version_changed, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    counting_store cs;
    sekuire::basic_beacon<st::fake_transport, st::fake_clock, counting_store, st::fixed_probe> b(options(), transport,
                                                                                                 clock, cs, {});
    b.step();
    BOOST_TEST_REQUIRE(b.is_connected());
    // The bootstrap saved the credentials (a new version): the next step loads them once.
    st::run_for(clock, 60s, [&] { return b.step(); });
    const int after_start = cs.loads->load();
    // Ten heartbeats, nothing written to the store meanwhile: no load at all.
    st::run_for(clock, 600s, [&] { return b.step(); });
    BOOST_TEST(heartbeats() >= 11u);
    BOOST_TEST(cs.loads->load() == after_start);
    // Another holder writes: the next step loads once, and the next heartbeat uses it.
    sekuire::error_code load_ec;
    auto c = *cs.inner.load(load_ec);
    c.runtime_token = runtime_2;
    sekuire::error_code ec;
    cs.inner.save(c, ec);
    clock.advance(60s);
    b.step();
    BOOST_TEST(cs.loads->load() == after_start + 1);
    BOOST_TEST(bearer(transport.requests(http_method::post, heartbeat_path).back()) == runtime_2);
    b.stop();
}

BOOST_FIXTURE_TEST_CASE(present_runtime_token_is_validated_before_refreshing, fixture) {
    script_refresh_ok(runtime_2);
    script_heartbeat_ok();
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    o.runtime_token = runtime_1;
    o.recovered_from_env = true;
    auto& b = make(o);
    b.step();
    BOOST_TEST(refreshes() == 0u);
    BOOST_TEST_REQUIRE(heartbeats() == 1u);
    BOOST_TEST(bearer(transport.requests(http_method::post, heartbeat_path).front()) == runtime_1);
    BOOST_TEST(b.get_status().recovered_from_env);
    BOOST_TEST(b.is_connected());
}

BOOST_FIXTURE_TEST_CASE(unauthorized_runtime_token_refreshes_once_and_retries_once, fixture) {
    script_refresh_ok(runtime_2);
    transport.on(http_method::post, heartbeat_path).handle([this](const sekuire::http_request& req) {
        const std::string* auth = sekuire::find_header(req.headers, "Authorization");
        if (auth && *auth == "Bearer " + runtime_1)
            return st::fake_transport::reply{401, error_body("unauthorized"), {}, {}};
        return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
    });
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    o.runtime_token = runtime_1;
    auto& b = make(o);
    b.step();
    BOOST_TEST(refreshes() == 1u);
    const auto hbs = transport.requests(http_method::post, heartbeat_path);
    BOOST_TEST_REQUIRE(hbs.size() == 2u);
    BOOST_TEST(bearer(hbs[0]) == runtime_1);
    BOOST_TEST(bearer(hbs[1]) == runtime_2);
    BOOST_TEST(b.is_connected());
}

BOOST_FIXTURE_TEST_CASE(second_unauthorized_is_an_auth_failure_with_backoff, fixture) {
    script_refresh_ok(runtime_2);
    transport.on(http_method::post, heartbeat_path).respond(401, error_body("unauthorized"));
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    o.runtime_token = runtime_1;
    o.random = [] { return 0.5; };
    auto& b = make(o);
    b.step();
    BOOST_TEST(refreshes() == 1u);
    BOOST_TEST(heartbeats() == 2u); // one retry only
    BOOST_TEST(!b.is_connected());
    BOOST_TEST(b.get_status().degraded_mode);
    BOOST_TEST((b.get_status().last_error_code == sekuire::errc::unauthorized));
    // Walked again later with a growing backoff: no storm.
    run_for(10min);
    BOOST_TEST(heartbeats() < 100u);
    BOOST_TEST(heartbeats() > 4u);
    BOOST_TEST(bootstraps() == 0u);
}

BOOST_FIXTURE_TEST_CASE(rejected_refresh_token_falls_through_to_the_install_token, fixture) {
    transport.on(http_method::post, refresh_path).respond(401, error_body("invalid_refresh_token"));
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    auto& b = make(o);
    b.step();
    BOOST_TEST(refreshes() == 1u);
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(b.is_connected());
}

BOOST_FIXTURE_TEST_CASE(spent_install_token_falls_through_to_the_recovery_bootstrap, fixture) {
    transport.on(http_method::post, bootstrap_path).respond(409, error_body("install_token_used"));
    transport.on(http_method::post, recover_path).handle([this](const sekuire::http_request&) {
        return st::fake_transport::reply{201, proto::encode(bootstrap_response()), date_header(), {}};
    });
    script_heartbeat_ok();
    auto o = options();
    o.api_key = api_key;
    o.workspace_id = "ws_test";
    auto& b = make(o);
    b.step();
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST_REQUIRE(recovers() == 1u);
    const auto rec = transport.requests(http_method::post, recover_path).front();
    const std::string* key = sekuire::find_header(rec.request.headers, "X-API-Key");
    BOOST_TEST_REQUIRE(key != nullptr);
    BOOST_TEST(*key == api_key);
    proto::recover_request body;
    proto::decode_error err;
    BOOST_TEST_REQUIRE(proto::decode(rec.request.body, body, err));
    BOOST_TEST(body.workspace_id == "ws_test");
    BOOST_TEST(b.is_connected());
}

BOOST_FIXTURE_TEST_CASE(every_path_failing_permanently_leaves_it_degraded_for_good, fixture) {
    transport.on(http_method::post, bootstrap_path).respond(410, error_body("install_token_expired"));
    transport.on(http_method::post, recover_path).respond(401, error_body("invalid_api_key"));
    auto o = options();
    o.api_key = api_key;
    o.workspace_id = "ws_test";
    auto& b = make(o);
    const auto next = b.step();
    BOOST_TEST((next == sekuire::steady_time_point::max())); // nothing left to do: costs nothing
    const auto s = b.get_status();
    BOOST_TEST(s.degraded_mode);
    BOOST_TEST((s.state == sekuire::beacon_state::degraded));
    BOOST_TEST((s.last_error_code == sekuire::errc::invalid_api_key));
    BOOST_TEST(s.last_error.find("degraded mode") != std::string::npos);
    const auto before = transport.total();
    run_for(24h);
    BOOST_TEST(transport.total() == before);
}

BOOST_FIXTURE_TEST_CASE(nothing_to_authenticate_with_is_degraded_without_any_request, fixture) {
    auto o = options();
    o.install_token.clear();
    auto& b = make(o);
    b.step();
    BOOST_TEST(transport.total() == 0u);
    const auto s = b.get_status();
    BOOST_TEST(s.degraded_mode);
    BOOST_TEST((s.last_error_code == sekuire::errc::no_credentials));
}

BOOST_FIXTURE_TEST_CASE(transient_bootstrap_failure_does_not_fall_through, fixture) {
    transport.on(http_method::post, bootstrap_path)
        .respond(503, "<html>busy</html>")
        .respond(502)
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{201, proto::encode(bootstrap_response()), date_header(), {}};
        });
    transport.on(http_method::post, recover_path).respond(500);
    script_heartbeat_ok();
    auto o = options();
    o.api_key = api_key;
    o.workspace_id = "ws_test";
    auto& b = make(o);
    b.step();
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(recovers() == 0u);
    BOOST_TEST(b.get_status().degraded_mode);
    BOOST_TEST((b.get_status().state == sekuire::beacon_state::degraded));
    run_for(5min);
    BOOST_TEST(bootstraps() == 3u);
    BOOST_TEST(recovers() == 0u);
    BOOST_TEST(b.is_connected());
    BOOST_TEST(!b.get_status().degraded_mode);
    // The callback saw degraded mode entered and then left.
    std::lock_guard<std::mutex> lock(log_mutex);
    BOOST_TEST_REQUIRE(statuses.size() >= 2u);
    BOOST_TEST(statuses.front().degraded_mode);
    BOOST_TEST(!statuses.back().degraded_mode);
    BOOST_TEST((statuses.back().state == sekuire::beacon_state::connected));
}

BOOST_FIXTURE_TEST_CASE(transient_refresh_failure_does_not_fall_through, fixture) {
    transport.on(http_method::post, refresh_path).fail(sekuire::errc::connection_failed);
    script_bootstrap_ok();
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    auto& b = make(o);
    b.step();
    run_for(10min);
    BOOST_TEST(refreshes() >= 2u);
    BOOST_TEST(bootstraps() == 0u);
    BOOST_TEST(b.get_status().degraded_mode);
    BOOST_TEST((b.get_status().last_error_code == sekuire::errc::connection_failed));
}

BOOST_FIXTURE_TEST_CASE(unknown_installation_drops_the_credentials_and_bootstraps, fixture) {
    transport.on(http_method::post, heartbeat_path)
        .respond(404, error_body("not_found"))
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        });
    script_bootstrap_ok();
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    o.runtime_token = runtime_3;
    auto& b = make(o);
    b.step();
    BOOST_TEST(heartbeats() == 1u);
    BOOST_TEST(bootstraps() == 0u); // paced by the auth backoff (at most its 1 s base)
    {
        sekuire::error_code ec;
        BOOST_TEST(!store.load(ec).has_value()); // dropped at once
    }
    run_for(1s);
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(heartbeats() == 2u);
    sekuire::error_code ec;
    const auto stored = store.load(ec);
    BOOST_REQUIRE(stored);
    BOOST_TEST(stored->runtime_token == runtime_1);
    BOOST_TEST(b.is_connected());
}

// ---- heartbeats -------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(exactly_n_heartbeats_after_n_intervals, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make();
    b.step();
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
        BOOST_TEST(bodies[i].capabilities.size() == 2u);
    }
}

BOOST_FIXTURE_TEST_CASE(jitter_stays_within_ten_percent_of_the_interval, fixture) {
    script_bootstrap_ok();
    record_heartbeat_times();
    auto o = options();
    o.random = sekuire::make_random_source(42);
    auto& b = make(o);
    b.step();
    run_for(2h);
    BOOST_TEST_REQUIRE(heartbeat_times.size() > 100u);
    std::int64_t min_gap = 1 << 30, max_gap = 0;
    for (std::size_t i = 1; i < heartbeat_times.size(); ++i) {
        const auto gap = heartbeat_times[i] - heartbeat_times[i - 1];
        min_gap = std::min(min_gap, gap);
        max_gap = std::max(max_gap, gap);
    }
    BOOST_TEST(min_gap >= 54000);
    BOOST_TEST(max_gap <= 60000);
    BOOST_TEST(max_gap - min_gap > 1000); // the gaps do vary
}

BOOST_FIXTURE_TEST_CASE(extreme_random_values_keep_the_jitter_bounds, fixture) {
    script_bootstrap_ok();
    record_heartbeat_times();
    auto o = options();
    o.random = [] { return 1.0; }; // out of range: clamped
    auto& b = make(o);
    b.step();
    run_for(10min);
    BOOST_TEST_REQUIRE(heartbeat_times.size() >= 10u);
    for (std::size_t i = 1; i < heartbeat_times.size(); ++i) {
        const auto gap = heartbeat_times[i] - heartbeat_times[i - 1];
        BOOST_TEST(gap >= 54000);
        BOOST_TEST(gap <= 60000);
    }
}

BOOST_FIXTURE_TEST_CASE(server_directed_pacing_within_bounds, fixture) {
    script_bootstrap_ok();
    std::vector<std::chrono::seconds> directions = {20s, 0s, 3600s};
    std::size_t call = 0;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        heartbeat_times.push_back(
            std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now().time_since_epoch()).count());
        auto r = live_response();
        if (call < directions.size()) r.next_heartbeat_at = server_now() + directions[call];
        ++call;
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    auto& b = make();
    b.step();
    run_for(10min);
    BOOST_TEST_REQUIRE(heartbeat_times.size() >= 4u);
    BOOST_TEST(heartbeat_times[1] - heartbeat_times[0] == 20000);  // as directed
    BOOST_TEST(heartbeat_times[2] - heartbeat_times[1] == 1000);   // "now" is bounded below by 1 s
    BOOST_TEST(heartbeat_times[3] - heartbeat_times[2] == 180000); // an hour is bounded by the lease
}

BOOST_FIXTURE_TEST_CASE(backend_interval_from_the_bootstrap_is_used, fixture) {
    transport.on(http_method::post, bootstrap_path).handle([this](const sekuire::http_request&) {
        auto r = bootstrap_response();
        r.heartbeat_interval_seconds = 30;
        return st::fake_transport::reply{201, proto::encode(r), date_header(), {}};
    });
    script_heartbeat_ok();
    auto& b = make();
    b.step();
    run_for(300s);
    BOOST_TEST(heartbeats() == 11u);
    BOOST_TEST(b.get_status().heartbeat_interval.count() == 30);
}

// Issue 10, item 3: during an outage the heartbeat rate goes down, not up; the lease bounds
// the backoff while it lives; the first success restores the regular cadence.
BOOST_FIXTURE_TEST_CASE(failures_back_off_over_intervals_within_the_lease, fixture) {
    script_bootstrap_ok();
    std::size_t call = 0;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        heartbeat_times.push_back(
            std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now().time_since_epoch()).count());
        ++call;
        if (call == 1 || call > 5) return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        return st::fake_transport::reply{503, error_body("unavailable"), {}, {}};
    });
    auto o = options();
    o.random = [] { return 0.999999; }; // the top of each backoff range
    auto& b = make(o);
    b.step(); // registration at 0 s: the lease runs to 180 s
    run_for(55s); // first failure at 54.001 s (the jitter is at its top too)
    BOOST_TEST(b.get_status().failed_heartbeats == 1u);
    run_for(10min);
    BOOST_TEST_REQUIRE(heartbeat_times.size() == 10u);
    const std::vector<std::int64_t> expected = {
        0,      // registration
        54001,  // the first regular beat (10% early), fails
        84001,  // + 30 s: half an interval
        144001, // + 60 s: an interval
        170000, // the lease bound: one request timeout (10 s) before the lease ends at 180 s
        410000, // the lease is lost: + 240 s, the cap of four intervals; succeeds
        464001, 518002, 572003, 626004, // the regular cadence again
    };
    for (std::size_t i = 0; i < expected.size(); ++i) BOOST_TEST(heartbeat_times[i] == expected[i]);
    // Fewer requests during the outage (54 s to 410 s) than the regular cadence would send.
    BOOST_TEST(5 < (410000 - 54001) / 54001);
    BOOST_TEST(b.get_status().failed_heartbeats == 0u);
    BOOST_TEST(!b.get_status().lease_expired);
}

// Issue 10, item 2: one 429 with a day-long Retry-After does not silence the beacon; the
// retry comes before the lease is lost.
BOOST_FIXTURE_TEST_CASE(a_huge_retry_after_is_bounded_by_the_lease, fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path)
        .handle([this](const sekuire::http_request&) {
            heartbeat_times.push_back(0);
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        })
        .handle([this](const sekuire::http_request&) {
            heartbeat_times.push_back(
                std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now().time_since_epoch()).count());
            return st::fake_transport::reply{429, error_body("rate_limited"), {{"Retry-After", "86400"}}, {}};
        });
    record_heartbeat_times(); // answers every later heartbeat, recording its time
    auto& b = make();
    b.step(); // registration at 0 s: the lease runs to 180 s
    run_for(61s);
    BOOST_TEST_REQUIRE(heartbeat_times.size() == 2u);
    BOOST_TEST(heartbeat_times[1] == 60000);
    BOOST_TEST(b.get_status().failed_heartbeats == 1u);
    BOOST_TEST(b.get_status().last_error.find("retry in 110000 ms") != std::string::npos);
    run_for(120s);
    BOOST_TEST_REQUIRE(heartbeat_times.size() == 3u);
    BOOST_TEST(heartbeat_times[2] == 170000); // 10 s (the request timeout) before the lease ends
    BOOST_TEST(b.get_status().failed_heartbeats == 0u);
    BOOST_TEST(!b.get_status().lease_expired);
    BOOST_TEST(b.is_connected());
}

// The same after the lease was lost: the backoff cap (four intervals) bounds the wait, so a
// kill switch still reaches the agent.
BOOST_FIXTURE_TEST_CASE(a_huge_retry_after_without_a_lease_waits_at_most_four_intervals, fixture) {
    script_bootstrap_ok();
    std::size_t call = 0;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        heartbeat_times.push_back(
            std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now().time_since_epoch()).count());
        if (++call == 1) return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        return st::fake_transport::reply{429, error_body("rate_limited"), {{"Retry-After", "86400"}}, {}};
    });
    auto& b = make();
    b.step();
    run_for(30min);
    BOOST_TEST(b.get_status().lease_expired);
    BOOST_TEST_REQUIRE(heartbeat_times.size() >= 5u);
    for (std::size_t i = 1; i < heartbeat_times.size(); ++i)
        BOOST_TEST(heartbeat_times[i] - heartbeat_times[i - 1] <= 240000);
}

BOOST_FIXTURE_TEST_CASE(zero_jitter_backoff_still_moves_time, fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path)
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        })
        .fail(sekuire::errc::connection_failed);
    auto& b = make(); // random is 0: every backoff draw is 0 ms
    b.step();
    // run_for throws on a storm; a failing heartbeat at zero delay would be one.
    run_for(10min);
    BOOST_TEST(heartbeats() < 1000u);
    BOOST_TEST(b.get_status().failed_heartbeats > 0u);
}

BOOST_FIXTURE_TEST_CASE(retry_after_is_honoured_as_the_minimum_wait, fixture) {
    script_bootstrap_ok();
    std::size_t call = 0;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        heartbeat_times.push_back(
            std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now().time_since_epoch()).count());
        ++call;
        if (call == 2) return st::fake_transport::reply{429, error_body("rate_limited"), {{"Retry-After", "45"}}, {}};
        if (call == 3)
            return st::fake_transport::reply{
                503, {}, {{"Retry-After", sekuire::format_http_date(server_now() + 30s)}}, {}};
        return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
    });
    auto& b = make();
    b.step();
    run_for(5min);
    BOOST_TEST_REQUIRE(heartbeat_times.size() >= 4u);
    BOOST_TEST(heartbeat_times[2] - heartbeat_times[1] == 45000);
    // An HTTP date interpreted against the agent's wall clock (which equals the backend's
    // here): 30 s.
    BOOST_TEST(heartbeat_times[3] - heartbeat_times[2] == 30000);
}

BOOST_FIXTURE_TEST_CASE(failed_heartbeats_count_consecutive_failures, fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path)
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        })
        .fail(sekuire::errc::timeout)
        .respond(500)
        .respond(200, "{not json")
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        });
    auto& b = make();
    b.step();
    BOOST_TEST(b.get_status().failed_heartbeats == 0u);
    run_until_failures(*this, b, 1);
    run_until_failures(*this, b, 2);
    run_until_failures(*this, b, 3);
    BOOST_TEST((b.get_status().last_error_code == sekuire::errc::malformed_json));
    BOOST_TEST((b.get_status().state == sekuire::beacon_state::connected)); // still within the lease
    run_for(60s);
    BOOST_TEST(b.get_status().failed_heartbeats == 0u);
    BOOST_TEST(b.get_status().last_error.empty());
}

BOOST_FIXTURE_TEST_CASE(permanent_refusal_is_retried_at_the_interval_not_blindly, fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path)
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        })
        .respond(400, error_body("bad_request"));
    auto& b = make();
    b.step();
    run_for(10min);
    BOOST_TEST(heartbeats() == 11u);
    BOOST_TEST((b.get_status().last_error_code == sekuire::errc::http_error));
}

BOOST_FIXTURE_TEST_CASE(heartbeat_carries_metrics_and_paused_status, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto o = options();
    o.metrics = [] {
        proto::heartbeat_metrics m;
        m.requests_handled = 1500;
        m.errors = 2;
        m.avg_latency_ms = 145;
        return m;
    };
    auto& b = make(o);
    b.step();
    b.set_reported_status(proto::heartbeat_status::draining);
    run_for(60s);
    b.set_reported_status(std::nullopt);
    run_for(60s);
    const auto bodies = heartbeat_bodies();
    BOOST_TEST_REQUIRE(bodies.size() == 3u);
    BOOST_TEST(bodies[0].metrics.requests_handled == 1500);
    BOOST_TEST(bodies[0].metrics.errors == 2);
    BOOST_TEST(bodies[0].metrics.avg_latency_ms == 145);
    BOOST_TEST((bodies[1].status == proto::heartbeat_status::draining));
    BOOST_TEST((bodies[2].status == proto::heartbeat_status::healthy));
}

BOOST_FIXTURE_TEST_CASE(a_slow_failed_heartbeat_backs_off_from_its_failure_not_its_start, fixture) {
    // Each attempt takes the whole request timeout (10 s) and then fails. Measured from the
    // attempt's start, the 1 s backoff would already be over: one step() would send attempt
    // after attempt back to back (the backend slow, the beacon pressing it hardest).
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make();
    b.step();
    BOOST_TEST_REQUIRE(b.is_connected());
    transport.on(http_method::post, heartbeat_path).clear().handle([this](const sekuire::http_request&) {
        clock.advance(10s);
        return st::fake_transport::reply{0, {}, {}, sekuire::error_code(sekuire::errc::timeout)};
    });
    clock.advance(60s);
    const auto before = heartbeats();
    const auto next = b.step();
    BOOST_TEST(heartbeats() == before + 1); // one attempt per step
    BOOST_TEST((next > clock.steady_now()));
    BOOST_TEST(b.get_status().failed_heartbeats == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_stop_asked_for_during_a_step_ends_its_run_of_due_requests, fixture) {
    // The auth chain and the registration heartbeat run in one step; a stop asked for
    // (from a callback) in between must not be followed by further requests, since
    // stop() waits for the stepping thread.
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make();
    transport.on(http_method::post, bootstrap_path).clear().handle([this](const sekuire::http_request&) {
        beacon->stop(); // on the stepping thread: only asks
        return st::fake_transport::reply{201, proto::encode(bootstrap_response()), date_header(), {}};
    });
    b.step();
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(heartbeats() == 0u); // the registration heartbeat was not started
    b.stop();
    BOOST_TEST(!b.get_status().is_running);
}

// ---- the lease --------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(lease_expired_then_regained, fixture) {
    script_bootstrap_ok();
    bool down = false;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        if (down) return st::fake_transport::reply{0, {}, {}, sekuire::errc::connection_failed};
        return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
    });
    auto& b = make();
    b.step();
    BOOST_TEST(b.is_connected());
    down = true;
    run_for(179s);
    BOOST_TEST(b.is_connected()); // the lease (180 s) still holds
    BOOST_TEST(b.get_status().failed_heartbeats > 0u);
    run_for(2s);
    BOOST_TEST(!b.is_connected());
    auto s = b.get_status();
    BOOST_TEST(s.lease_expired);
    BOOST_TEST((s.state == sekuire::beacon_state::lease_expired));
    {
        std::lock_guard<std::mutex> lock(log_mutex);
        BOOST_TEST_REQUIRE(!statuses.empty());
        BOOST_TEST(statuses.back().lease_expired);
    }
    down = false;
    run_for(60s);
    BOOST_TEST(b.is_connected());
    s = b.get_status();
    BOOST_TEST(!s.lease_expired);
    BOOST_TEST(s.failed_heartbeats == 0u);
    std::lock_guard<std::mutex> lock(log_mutex);
    BOOST_TEST((statuses.back().state == sekuire::beacon_state::connected));
}

BOOST_FIXTURE_TEST_CASE(lease_without_expiry_lasts_three_intervals, fixture) {
    script_bootstrap_ok();
    bool down = false;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        if (down) return st::fake_transport::reply{503, {}, {}, {}};
        proto::heartbeat_response r;
        r.lease_renewed = true;
        return st::fake_transport::reply{200, proto::encode(r), {}, {}};
    });
    auto& b = make();
    b.step();
    down = true;
    run_for(179s);
    BOOST_TEST(b.is_connected());
    run_for(2s);
    BOOST_TEST(!b.is_connected());
}

BOOST_FIXTURE_TEST_CASE(lease_not_renewed_counts_as_a_failure, fixture) {
    script_bootstrap_ok();
    auto ok = [this](const sekuire::http_request&) {
        return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
    };
    transport.on(http_method::post, heartbeat_path)
        .handle(ok)
        .handle([this](const sekuire::http_request&) {
            auto r = live_response();
            r.lease_renewed = false;
            return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
        })
        .handle(ok);
    auto& b = make();
    b.step();
    run_for(60s);
    BOOST_TEST(b.get_status().failed_heartbeats == 1u);
    BOOST_TEST(b.get_status().last_error.find("did not renew") != std::string::npos);
    run_for(3s); // the bottom of the first backoff range: a tenth of half an interval
    BOOST_TEST(b.get_status().failed_heartbeats == 0u);
}

// ---- tokens -----------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(refreshed_token_is_swapped_and_persisted_before_the_next_request, fixture) {
    script_bootstrap_ok();
    std::size_t call = 0;
    std::string store_token_seen_by_second_beat;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        ++call;
        auto r = live_response();
        if (call == 1) {
            r.refreshed_token = proto::refreshed_token{runtime_2, server_now() + std::chrono::hours(24 * 90), 2};
        } else if (call == 2) {
            sekuire::error_code ec;
            store_token_seen_by_second_beat = store.load(ec)->runtime_token;
        }
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    auto& b = make();
    b.step();
    sekuire::error_code ec;
    auto c = store.load(ec);
    BOOST_TEST(c->runtime_token == runtime_2);
    BOOST_TEST(c->token_version == 2);
    BOOST_TEST(c->refresh_token == refresh_1);
    run_for(60s);
    const auto hbs = transport.requests(http_method::post, heartbeat_path);
    BOOST_TEST_REQUIRE(hbs.size() == 2u);
    BOOST_TEST(bearer(hbs[1]) == runtime_2);
    BOOST_TEST(store_token_seen_by_second_beat == runtime_2);
    BOOST_TEST(refreshes() == 0u);
}

BOOST_FIXTURE_TEST_CASE(token_within_six_days_without_a_heartbeat_refresh_uses_the_endpoint, fixture) {
    // The backend never refreshes through heartbeats here; the token expires in 10 days.
    transport.on(http_method::post, bootstrap_path).handle([this](const sekuire::http_request&) {
        auto r = bootstrap_response();
        r.runtime_token_expires_at = server_now() + std::chrono::hours(24 * 10);
        r.heartbeat_interval_seconds = 3600;
        return st::fake_transport::reply{201, proto::encode(r), date_header(), {}};
    });
    lease = std::chrono::seconds(3 * 3600);
    script_heartbeat_ok();
    script_refresh_ok(runtime_2);
    auto& b = make();
    b.step();
    run_for(std::chrono::hours(24 * 4) - 1min);
    BOOST_TEST(refreshes() == 0u);
    run_for(2min);
    BOOST_TEST(refreshes() == 1u);
    sekuire::error_code ec;
    BOOST_TEST(store.load(ec)->runtime_token == runtime_2);
    run_for(std::chrono::hours(24));
    BOOST_TEST(refreshes() == 1u); // the new token is good for 90 days
    BOOST_TEST(bearer(transport.requests(http_method::post, heartbeat_path).back()) == runtime_2);
}

BOOST_FIXTURE_TEST_CASE(token_refreshed_by_heartbeats_never_needs_the_endpoint, fixture) {
    transport.on(http_method::post, bootstrap_path).handle([this](const sekuire::http_request&) {
        auto r = bootstrap_response();
        r.runtime_token_expires_at = server_now() + std::chrono::hours(24 * 10);
        r.heartbeat_interval_seconds = 3600;
        return st::fake_transport::reply{201, proto::encode(r), date_header(), {}};
    });
    lease = std::chrono::seconds(3 * 3600);
    // The backend's 7-day rule: a refreshed token when within 7 days of expiry.
    sekuire::wall_time_point expiry = server_now() + std::chrono::hours(24 * 10);
    int version = 1;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        auto r = live_response();
        if (expiry - server_now() <= std::chrono::hours(24 * 7)) {
            expiry = server_now() + std::chrono::hours(24 * 10);
            r.refreshed_token = proto::refreshed_token{version % 2 ? runtime_2 : runtime_3, expiry, ++version};
        }
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    script_refresh_ok(runtime_2);
    auto& b = make();
    b.step();
    run_for(std::chrono::hours(24 * 20));
    BOOST_TEST(refreshes() == 0u);
    BOOST_TEST(version >= 3);
}

BOOST_FIXTURE_TEST_CASE(short_lived_tokens_are_refreshed_two_thirds_into_their_life_not_in_a_loop, fixture) {
    // A backend that issues 1-hour tokens (each "within 6 days of expiry" from birth) and
    // never refreshes through heartbeats: the beacon refreshes each token once, a third into
    // its life (20 minutes), not at every step.
    transport.on(http_method::post, bootstrap_path).handle([this](const sekuire::http_request&) {
        auto r = bootstrap_response();
        r.runtime_token_expires_at = server_now() + 1h;
        return st::fake_transport::reply{201, proto::encode(r), date_header(), {}};
    });
    transport.on(http_method::post, refresh_path).handle([this](const sekuire::http_request&) {
        proto::refresh_response r;
        r.runtime_token = runtime_2;
        r.expires_at = server_now() + 1h;
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    script_heartbeat_ok();
    auto& b = make();
    b.step();
    run_for(19min);
    BOOST_TEST(refreshes() == 0u);
    run_for(2min);
    BOOST_TEST(refreshes() == 1u);
    run_for(3h);
    BOOST_TEST(refreshes() >= 9u);  // one per 20 minutes...
    BOOST_TEST(refreshes() <= 11u); // ...and no more
    BOOST_TEST(b.is_connected());
}

BOOST_FIXTURE_TEST_CASE(expired_token_is_refreshed_before_any_other_call, fixture) {
    sekuire::installation_credentials c;
    c.installation_id = installation;
    c.refresh_token = refresh_1;
    c.runtime_token = runtime_1;
    c.runtime_token_expires_at = clock.wall_now() - 1h;
    sekuire::error_code ec;
    store.save(c, ec);
    script_refresh_ok(runtime_2);
    script_heartbeat_ok();
    auto& b = make();
    b.step();
    const auto all = transport.requests();
    BOOST_TEST_REQUIRE(all.size() == 2u);
    BOOST_TEST(all[0].path() == refresh_path);
    BOOST_TEST(bearer(all[1]) == runtime_2);
    BOOST_TEST(b.is_connected());
}

BOOST_FIXTURE_TEST_CASE(token_expiring_while_running_is_refreshed_before_the_next_heartbeat, fixture) {
    transport.on(http_method::post, bootstrap_path).handle([this](const sekuire::http_request&) {
        auto r = bootstrap_response();
        r.runtime_token_expires_at = server_now() + 90s; // shorter than the refresh window
        return st::fake_transport::reply{201, proto::encode(r), date_header(), {}};
    });
    transport.on(http_method::post, refresh_path)
        .respond(503)
        .handle([this](const sekuire::http_request&) {
            proto::refresh_response r;
            r.runtime_token = runtime_2;
            r.expires_at = server_now() + std::chrono::hours(24 * 90);
            return st::fake_transport::reply{200, proto::encode(r), {}, {}};
        });
    script_heartbeat_ok();
    auto& b = make();
    b.step();
    run_for(10min);
    // The old token served the registration only (the first refresh failed); every later
    // heartbeat, all after its expiry, used the new one.
    std::size_t old_token = 0;
    for (const auto& r : transport.requests(http_method::post, heartbeat_path)) {
        if (bearer(r) == runtime_1) {
            ++old_token;
            continue;
        }
        BOOST_TEST(bearer(r) == runtime_2);
    }
    BOOST_TEST(old_token == 1u);
    BOOST_TEST(refreshes() == 2u);
    BOOST_TEST(b.is_connected());
}

BOOST_FIXTURE_TEST_CASE(rotated_refresh_token_is_persisted_before_it_is_used, fixture) {
    script_refresh_ok(runtime_2, refresh_2);
    std::string refresh_in_store_at_heartbeat;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        sekuire::error_code ec;
        refresh_in_store_at_heartbeat = store.load(ec)->refresh_token;
        return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
    });
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    auto& b = make(o);
    b.step();
    BOOST_TEST(refresh_in_store_at_heartbeat == refresh_2);
    auto creds = b.get_installation_credentials();
    BOOST_TEST_REQUIRE(creds.has_value());
    BOOST_TEST(creds->refresh_token == refresh_2);
    BOOST_TEST(creds->runtime_token == runtime_2);
}

BOOST_FIXTURE_TEST_CASE(two_holders_of_one_store_refresh_once, fixture) {
    // Two beacons share the store. When the backend starts rejecting the token, the first
    // to notice refreshes it; the second uses the refreshed token at once: one refresh call,
    // and no 401 for the second.
    script_refresh_ok(runtime_2);
    bool reject_old = false;
    std::size_t rejected = 0;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request& req) {
        const std::string* auth = sekuire::find_header(req.headers, "Authorization");
        if (reject_old && auth && *auth == "Bearer " + runtime_1) {
            ++rejected;
            return st::fake_transport::reply{401, {}, {}, {}};
        }
        return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
    });
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    o.runtime_token = runtime_1;
    test_beacon first(o, transport, clock, store, st::fixed_probe{});
    auto o2 = o;
    o2.random = [] { return 0.5; }; // beats a little earlier than the first
    test_beacon second(o2, transport, clock, store, st::fixed_probe{});
    first.step();
    second.step();
    BOOST_TEST(heartbeats() == 2u);
    reject_old = true;
    st::run_for(clock, 5min, [&] { return std::min(first.step(), second.step()); });
    BOOST_TEST(refreshes() == 1u);
    BOOST_TEST(rejected == 1u);
    BOOST_TEST(first.is_connected());
    BOOST_TEST(second.is_connected());
    for (const auto& r : transport.requests(http_method::post, heartbeat_path))
        if (bearer(r) != runtime_1) BOOST_TEST(bearer(r) == runtime_2);
}

// ---- the kill switch and commands -----------------------------------------------------

BOOST_FIXTURE_TEST_CASE(revocation_by_heartbeat_stops_everything, fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path)
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        })
        .respond(200, R"({"lease_renewed": false, "revoked": true,
                          "reason": "Emergency shutdown initiated by admin", "shutdown_timeout_ms": 5000})");
    auto& b = make();
    b.step();
    run_for(60s);
    const auto s = b.get_status();
    BOOST_TEST(s.revoked);
    BOOST_TEST(s.revoked_reason == "Emergency shutdown initiated by admin");
    BOOST_TEST((s.state == sekuire::beacon_state::revoked));
    BOOST_TEST_REQUIRE(s.shutdown_timeout.has_value());
    BOOST_TEST(s.shutdown_timeout->count() == 5000);
    BOOST_TEST(!b.is_connected());
    BOOST_TEST_REQUIRE(revocations.size() == 1u);
    BOOST_TEST(revocations[0].reason == "Emergency shutdown initiated by admin");
    BOOST_TEST(revocations[0].shutdown_timeout.count() == 5000);
    sekuire::error_code ec;
    BOOST_TEST(!store.load(ec).has_value()); // the revoked credentials are gone
    BOOST_TEST(!b.get_installation_credentials().has_value());
    const auto before = transport.total();
    run_for(1h);
    b.stop();
    BOOST_TEST(transport.total() == before); // no heartbeat, not even a final one
}

BOOST_FIXTURE_TEST_CASE(revocation_by_403_installation_revoked, fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path)
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        })
        .respond(403, error_body("installation_revoked"));
    auto& b = make();
    b.step();
    run_for(60s);
    BOOST_TEST(b.get_status().revoked);
    BOOST_TEST_REQUIRE(revocations.size() == 1u);
    BOOST_TEST(revocations[0].shutdown_timeout.count() == sekuire::default_shutdown_timeout.count());
    sekuire::error_code ec;
    BOOST_TEST(!store.load(ec).has_value());
}

BOOST_FIXTURE_TEST_CASE(revocation_by_refresh_403, fixture) {
    transport.on(http_method::post, refresh_path).respond(403, error_body("installation_revoked"));
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    auto& b = make(o);
    b.step();
    BOOST_TEST(b.get_status().revoked);
    BOOST_TEST(bootstraps() == 0u);
    BOOST_TEST(revocations.size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(revocation_from_another_source_is_acted_on_at_the_next_step, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make();
    b.step();
    b.apply_revocation(proto::revocation{"kill switch from the stream", 2500});
    b.apply_revocation(proto::revocation{"a second one", 1});
    b.step();
    BOOST_TEST(b.get_status().revoked);
    BOOST_TEST_REQUIRE(revocations.size() == 1u);
    BOOST_TEST(revocations[0].reason == "kill switch from the stream");
    BOOST_TEST(revocations[0].shutdown_timeout.count() == 2500);
    const auto before = heartbeats();
    run_for(10min);
    BOOST_TEST(heartbeats() == before);
}

BOOST_FIXTURE_TEST_CASE(commands_reach_the_callback_and_status_once_each, fixture) {
    script_bootstrap_ok();
    std::vector<std::optional<proto::command>> script = {
        std::nullopt,
        proto::command{"cmd_1", proto::command_type::pause, "pause", "maintenance", std::nullopt},
        proto::command{"cmd_1", proto::command_type::pause, "pause", "maintenance", std::nullopt}, // again
        proto::command{"cmd_2", proto::command_type::resume, "resume", "", std::nullopt},
        proto::command{"cmd_3", proto::command_type::unknown, "reboot", "", std::nullopt},
        proto::command{"cmd_4", proto::command_type::terminate, "terminate", "decommissioned", std::nullopt},
    };
    std::size_t call = 0;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        auto r = live_response();
        if (call < script.size()) r.command = script[call];
        ++call;
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    auto& b = make();
    b.step();
    BOOST_TEST(commands.empty());
    run_for(60s);
    BOOST_TEST_REQUIRE(commands.size() == 1u);
    BOOST_TEST((commands[0].type == proto::command_type::pause));
    BOOST_TEST(commands[0].reason == "maintenance");
    BOOST_TEST(b.get_status().paused);
    run_for(60s); // the same command id again: not delivered again
    BOOST_TEST(commands.size() == 1u);
    BOOST_TEST(b.get_status().paused);
    run_for(60s);
    BOOST_TEST(commands.size() == 2u);
    BOOST_TEST(!b.get_status().paused);
    run_for(60s); // unknown type: ignored, with a log line
    BOOST_TEST(commands.size() == 2u);
    run_for(60s);
    BOOST_TEST_REQUIRE(commands.size() == 3u);
    BOOST_TEST((commands[2].type == proto::command_type::terminate));
    BOOST_TEST(b.get_status().terminate_requested);
    // While paused, heartbeats said so.
    const auto bodies = heartbeat_bodies();
    BOOST_TEST_REQUIRE(bodies.size() >= 4u);
    BOOST_TEST((bodies[2].status == proto::heartbeat_status::paused));
    BOOST_TEST((bodies[3].status == proto::heartbeat_status::paused));
    BOOST_TEST((bodies[4].status == proto::heartbeat_status::healthy));
}

BOOST_FIXTURE_TEST_CASE(commands_from_another_source_are_deduplicated_with_heartbeats, fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path)
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        })
        .handle([this](const sekuire::http_request&) {
            auto r = live_response();
            r.command = proto::command{"cmd_9", proto::command_type::pause, "pause", "from both", std::nullopt};
            return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
        });
    auto& b = make();
    b.step();
    b.apply_command(proto::command{"cmd_9", proto::command_type::pause, "pause", "from both", std::nullopt});
    BOOST_TEST(commands.size() == 1u);
    BOOST_TEST(b.get_status().paused);
    run_for(60s);
    BOOST_TEST(commands.size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(policy_hash_changes_are_reported, fixture) {
    script_bootstrap_ok();
    std::vector<std::string> hashes = {"h1", "h1", "h2"};
    std::size_t call = 0;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        auto r = live_response();
        r.active_policy_hash = hashes[std::min(call++, hashes.size() - 1)];
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    std::vector<std::string> seen;
    auto o = options();
    o.on_policy_hash = [&](const std::string& h) { seen.push_back(h); };
    auto& b = make(o);
    b.step();
    run_for(5min);
    BOOST_TEST((seen == std::vector<std::string>{"h1", "h2"}));
    BOOST_TEST(b.get_status().active_policy_hash == "h2");
}

// ---- stop -------------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(stop_sends_exactly_one_final_heartbeat, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto o = options();
    o.stop_timeout = 1500ms;
    auto& b = make(o);
    b.step();
    run_for(120s);
    BOOST_TEST(heartbeats() == 3u);
    b.stop();
    b.stop();
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
    // A stopped beacon stays stopped.
    BOOST_TEST((b.step() == sekuire::steady_time_point::max()));
    sekuire::error_code ec;
    b.start(ec);
    BOOST_TEST((ec == sekuire::errc::already_started));
    BOOST_TEST(heartbeats() == 4u);
}

BOOST_FIXTURE_TEST_CASE(final_heartbeat_failure_is_not_retried, fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path)
        .handle([this](const sekuire::http_request&) {
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        })
        .fail(sekuire::errc::timeout);
    auto& b = make();
    b.step();
    b.stop();
    BOOST_TEST(heartbeats() == 2u);
}

BOOST_FIXTURE_TEST_CASE(stop_before_start_sends_nothing, fixture) {
    auto& b = make();
    b.stop();
    BOOST_TEST(transport.total() == 0u);
}

BOOST_FIXTURE_TEST_CASE(destructor_stops_a_running_beacon, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    make().step();
    beacon.reset();
    BOOST_TEST(heartbeats() == 2u); // registration + final
}

// ---- time -------------------------------------------------------------------------------

void check_steady_beats(fixture& f, std::chrono::hours jump) {
    f.script_bootstrap_ok();
    f.record_heartbeat_times();
    auto& b = f.make();
    b.step();
    f.run_for(30min);
    f.clock.jump_wall(jump);
    f.run_for(30min);
    f.clock.jump_wall(-jump);
    f.run_for(30min);
    // One beat at start and one per minute: no storm, no missed beat.
    BOOST_TEST(f.heartbeat_times.size() == 91u);
    for (std::size_t i = 1; i < f.heartbeat_times.size(); ++i)
        BOOST_TEST(f.heartbeat_times[i] - f.heartbeat_times[i - 1] == 60000);
    BOOST_TEST(b.is_connected());
    BOOST_TEST(!b.get_status().lease_expired);
    BOOST_TEST(b.get_status().failed_heartbeats == 0u);
    BOOST_TEST(f.refreshes() == 0u);
}

BOOST_FIXTURE_TEST_CASE(wall_clock_jumping_backwards_causes_no_storm_and_no_missed_beat, fixture) {
    check_steady_beats(*this, std::chrono::hours(-5));
}

BOOST_FIXTURE_TEST_CASE(wall_clock_jumping_forwards_causes_no_storm_and_no_missed_beat, fixture) {
    check_steady_beats(*this, std::chrono::hours(5));
}

BOOST_FIXTURE_TEST_CASE(wall_clock_jumps_without_a_date_header_keep_the_lease, fixture) {
    send_date = false;
    check_steady_beats(*this, std::chrono::hours(7));
}

// ---- threads ----------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(start_and_stop_on_a_thread_with_the_fake_clock, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make();
    b.start(); // returns once the registration heartbeat is done
    BOOST_TEST(heartbeats() == 1u);
    BOOST_TEST(b.is_connected());
    BOOST_TEST(b.get_status().is_running);
    BOOST_TEST_REQUIRE(clock.block_until_waiters(1));
    BOOST_TEST((clock.next_deadline() == sekuire::steady_time_point{} + 60s));
    clock.advance(60s);
    BOOST_TEST_REQUIRE(clock.block_until_waiters(1)); // asleep again after the beat
    BOOST_TEST(heartbeats() == 2u);
    clock.advance(59s);
    BOOST_TEST_REQUIRE(clock.block_until_waiters(1));
    BOOST_TEST(heartbeats() == 2u);
    BOOST_CHECK_THROW(b.start(), sekuire::error);
    b.stop();
    BOOST_TEST(heartbeats() == 3u); // the final one
    BOOST_TEST(clock.waiter_count() == 0u);
    BOOST_TEST(!b.get_status().is_running);
}

BOOST_FIXTURE_TEST_CASE(revocation_from_another_thread_wakes_the_beacon, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    std::promise<void> revoked;
    auto o = options();
    o.on_revoked = [&](const sekuire::revocation_info&) { revoked.set_value(); };
    auto& b = make(o);
    b.start();
    BOOST_TEST_REQUIRE(clock.block_until_waiters(1));
    std::thread t([&] { b.apply_revocation(proto::revocation{"from the stream", 100}); });
    t.join();
    // The wake-up makes the thread step at once, without time moving.
    BOOST_TEST_REQUIRE((revoked.get_future().wait_for(10s) == std::future_status::ready));
    BOOST_TEST(b.get_status().revoked);
    BOOST_TEST((clock.steady_now() == sekuire::steady_time_point{}));
    b.stop();
    BOOST_TEST(heartbeats() == 1u);
}

// ---- secrets ----------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(no_token_appears_in_logs_status_or_errors, fixture) {
    // A run through every path that handles tokens: bootstrap failing over to recovery,
    // refreshes with rotation, 401s, a refreshed token, commands, revocation.
    transport.on(http_method::post, bootstrap_path).respond(409, error_body("install_token_used"));
    transport.on(http_method::post, recover_path).handle([this](const sekuire::http_request&) {
        return st::fake_transport::reply{201, proto::encode(bootstrap_response()), date_header(), {}};
    });
    script_refresh_ok(runtime_3, refresh_2);
    std::size_t call = 0;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request& req) {
        ++call;
        auto r = live_response();
        if (call == 2) r.refreshed_token = proto::refreshed_token{runtime_2, server_now() + 1h, 2};
        if (call == 3) {
            const std::string* auth = sekuire::find_header(req.headers, "Authorization");
            if (auth && *auth == "Bearer " + runtime_2) return st::fake_transport::reply{401, {}, {}, {}};
        }
        if (call == 5) return st::fake_transport::reply{500, "<html>" + runtime_3 + "</html>", {}, {}};
        if (call == 7) return st::fake_transport::reply{200, "{\"lease_renewed\": \"" + refresh_2 + "\"}", {}, {}};
        if (call == 9) return st::fake_transport::reply{403, error_body("installation_revoked"), {}, {}};
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    auto o = options();
    o.api_key = api_key;
    o.workspace_id = "ws_test";
    auto& b = make(o);
    std::vector<sekuire::beacon_status> snapshots;
    b.step();
    snapshots.push_back(b.get_status());
    for (int i = 0; i < 20; ++i) {
        run_for(30s);
        snapshots.push_back(b.get_status());
    }
    b.stop();
    snapshots.push_back(b.get_status());
    BOOST_TEST(b.get_status().revoked);
    BOOST_TEST(refreshes() >= 1u);

    const std::vector<std::string> secrets = {install_token, api_key, runtime_1, runtime_2,
                                              runtime_3,     refresh_1, refresh_2};
    std::vector<std::string> texts;
    {
        std::lock_guard<std::mutex> lock(log_mutex);
        texts = logs;
        for (const auto& s : statuses) snapshots.push_back(s);
    }
    BOOST_TEST(!texts.empty());
    for (const auto& s : snapshots) {
        texts.push_back(s.installation_id);
        texts.push_back(s.runtime_token);
        texts.push_back(s.deployment_url);
        texts.push_back(s.last_error);
        texts.push_back(s.last_error_code.message());
        texts.push_back(s.revoked_reason);
        texts.push_back(s.active_policy_hash);
    }
    for (const auto& text : texts)
        for (const auto& secret : secrets) {
            BOOST_TEST(text.find(secret) == std::string::npos, "a token leaked: " << sekuire::mask_token(secret));
            // Nor any long piece of one.
            BOOST_TEST(text.find(secret.substr(secret.size() - 12)) == std::string::npos);
        }
}

// ---- stores shared with other holders, and stores that fail -------------------------------

namespace {

using store_test::failing_store;
using failing_store_beacon = sekuire::basic_beacon<st::fake_transport, st::fake_clock, failing_store, st::fixed_probe>;

std::string with_field(const std::string& body, const std::string& key, const std::string& value) {
    auto j = boost::json::parse(body).as_object();
    j[key] = value;
    return boost::json::serialize(j);
}

} // namespace

BOOST_FIXTURE_TEST_CASE(a_store_emptied_by_another_holder_is_checked_with_the_backend_not_bootstrapped_past,
                        fixture) {
    // A worker sharing the store heard the kill switch first and removed the credentials.
    // Walking the auth chain again would let the API-key recovery create a new installation
    // past the kill switch; the beacon asks the backend about the one it holds instead.
    script_bootstrap_ok();
    bool revoked = false;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        if (!revoked) return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        proto::heartbeat_response r;
        r.lease_renewed = false;
        r.revoked = proto::revocation{"kill switch", 5000};
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    transport.on(http_method::post, recover_path).respond(201, proto::encode(bootstrap_response(runtime_3, refresh_2)));
    auto o = options();
    o.api_key = api_key;
    o.workspace_id = "ws_1";
    auto& b = make(o);
    b.step();
    BOOST_REQUIRE(b.is_connected());
    const auto before = heartbeats();
    revoked = true;
    sekuire::error_code ec;
    store.clear(ec);
    b.step(); // asks at once, not at the next regular beat
    BOOST_TEST(heartbeats() == before + 1);
    run_for(10min);
    BOOST_TEST(recovers() == 0u);
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(b.get_status().revoked);
    BOOST_TEST(!store.load(ec).has_value());
    BOOST_TEST(revocations.size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_store_emptied_by_mistake_is_restored_after_the_backend_confirms, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make();
    b.step();
    sekuire::error_code ec;
    store.clear(ec);
    run_for(5min);
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(b.is_connected());
    const auto stored = store.load(ec);
    BOOST_REQUIRE(stored);
    BOOST_TEST(stored->installation_id == installation);
    BOOST_TEST(stored->refresh_token == refresh_1);
}

BOOST_FIXTURE_TEST_CASE(a_store_that_cannot_be_read_at_start_is_retried_not_bootstrapped_past, fixture) {
    failing_store fs;
    sekuire::installation_credentials c;
    c.installation_id = installation;
    c.refresh_token = refresh_1;
    c.runtime_token = runtime_1;
    c.runtime_token_expires_at = server_now() + std::chrono::hours(24 * 60);
    sekuire::error_code ec;
    fs.inner.save(c, ec);
    *fs.failing_loads = 2; // begin() and the first session attempt
    transport.on(http_method::post, bootstrap_path).respond(409, error_body("install_token_used"));
    transport.on(http_method::post, recover_path).respond(201, proto::encode(bootstrap_response(runtime_3, refresh_2)));
    script_heartbeat_ok();
    auto o = options();
    o.api_key = api_key;
    o.workspace_id = "ws_1";
    failing_store_beacon b(o, transport, clock, fs, st::fixed_probe{});
    b.step();
    BOOST_TEST((b.get_status().state == sekuire::beacon_state::degraded));
    BOOST_TEST((b.get_status().last_error_code == sekuire::errc::store_io));
    st::run_for(clock, 5min, [&] { return b.step(); });
    BOOST_TEST(bootstraps() == 0u);
    BOOST_TEST(recovers() == 0u);
    BOOST_TEST(b.is_connected());
    BOOST_TEST(fs.inner.load(ec)->installation_id == installation);
    transport.clear_scripts();
}

BOOST_FIXTURE_TEST_CASE(a_rotated_refresh_token_survives_a_failed_save, fixture) {
    // The backend rotates the refresh token on each refresh; the old one dies at once. One
    // failed save must not throw the only live one away.
    failing_store fs;
    sekuire::installation_credentials c;
    c.installation_id = installation;
    c.refresh_token = refresh_1;
    c.runtime_token = runtime_1;
    c.runtime_token_expires_at = server_now() - std::chrono::hours(1);
    sekuire::error_code ec;
    fs.inner.save(c, ec);
    std::string live = refresh_1;
    int rotations = 0;
    transport.on(http_method::post, refresh_path).handle([&](const sekuire::http_request& req) {
        if (req.body.find(live) == std::string::npos)
            return st::fake_transport::reply{401, error_body("invalid_refresh_token"), {}, {}};
        proto::refresh_response r;
        r.runtime_token = runtime_2;
        r.expires_at = server_now() + std::chrono::hours(24 * 90);
        r.token_version = 2 + rotations;
        live = "rt_rotated_" + std::to_string(++rotations) + "_0123456789abcdefghijkl";
        r.refresh_token = live;
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    script_heartbeat_ok();
    auto o = options();
    o.install_token.clear();
    *fs.failing_saves = 1;
    failing_store_beacon b(o, transport, clock, fs, st::fixed_probe{});
    b.step();
    BOOST_TEST(b.is_connected());
    st::run_for(clock, 5min, [&] { return b.step(); });
    BOOST_TEST(b.is_connected());
    BOOST_TEST(rotations == 1);
    // Saved again at the next step, once the store works.
    const auto stored = fs.inner.load(ec);
    BOOST_REQUIRE(stored);
    BOOST_TEST(stored->refresh_token == live);
    BOOST_TEST(stored->runtime_token == runtime_2);
    transport.clear_scripts();
}

BOOST_FIXTURE_TEST_CASE(a_heartbeat_token_does_not_undo_a_rotation_saved_meanwhile, fixture) {
    script_bootstrap_ok();
    std::size_t call = 0;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        auto r = live_response();
        if (++call == 2) {
            // While this heartbeat is on its way, a worker sharing the store refreshes and
            // the backend rotates the refresh token.
            sekuire::refresh_lock<sekuire::memory_store> lock(store);
            sekuire::error_code ec;
            auto c = *store.load(ec);
            c.runtime_token = runtime_3;
            c.refresh_token = refresh_2;
            c.token_version = 3;
            store.save(c, ec);
            r.refreshed_token = proto::refreshed_token{runtime_2, server_now() + std::chrono::hours(24 * 90), 2};
        }
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    auto& b = make();
    b.step();
    run_for(61s);
    BOOST_TEST(call == 2u);
    sekuire::error_code ec;
    const auto stored = store.load(ec);
    BOOST_REQUIRE(stored);
    BOOST_TEST(stored->refresh_token == refresh_2); // the only live one
    BOOST_TEST(stored->runtime_token == runtime_3); // newer than the heartbeat's
    BOOST_TEST(stored->token_version == 3);
}

BOOST_FIXTURE_TEST_CASE(a_heartbeat_token_is_merged_into_the_store, fixture) {
    script_bootstrap_ok();
    std::size_t call = 0;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        auto r = live_response();
        if (++call == 2) r.refreshed_token = proto::refreshed_token{runtime_2, server_now() + std::chrono::hours(24 * 90), 2};
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    auto& b = make();
    b.step();
    run_for(61s);
    sekuire::error_code ec;
    const auto stored = store.load(ec);
    BOOST_REQUIRE(stored);
    BOOST_TEST(stored->runtime_token == runtime_2);
    BOOST_TEST(stored->refresh_token == refresh_1);
    BOOST_TEST(stored->token_version == 2);
    BOOST_TEST(b.get_status().runtime_token == sekuire::mask_token(runtime_2));
}

BOOST_FIXTURE_TEST_CASE(a_refused_refresh_after_a_401_walks_down_the_chain, fixture) {
    // protocol.md section 3: invalid_refresh_token is permanent. The rejected token must not
    // be sent again and again until it expires.
    transport.on(http_method::post, refresh_path).respond(401, error_body("invalid_refresh_token"));
    // Only the token of the new installation (runtime_1, from the bootstrap) is accepted.
    transport.on(http_method::post, heartbeat_path).handle([this](const sekuire::http_request& req) {
        const std::string* auth = sekuire::find_header(req.headers, "Authorization");
        if (auth && auth->find(runtime_1) != std::string::npos)
            return st::fake_transport::reply{200, proto::encode(live_response()), date_header(), {}};
        return st::fake_transport::reply{401, error_body("unauthorized"), {}, {}};
    });
    script_bootstrap_ok();
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_2;
    o.runtime_token = runtime_3; // rejected by the backend
    auto& b = make(o);
    b.step();
    run_for(1h);
    BOOST_TEST(refreshes() == 1u);
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(b.is_connected());
    std::size_t with_rejected = 0;
    for (const auto& r : transport.requests(http_method::post, heartbeat_path))
        if (bearer(r) == runtime_3) ++with_rejected;
    BOOST_TEST(with_rejected == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_backend_refusing_every_installation_cannot_drive_a_tight_loop, fixture) {
    // Each bootstrap succeeds, each heartbeat gets 404: the chain is walked again, paced by
    // the auth backoff rather than at once.
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path).respond(404, error_body("not_found"));
    auto o = options();
    o.random = [] { return 0.999; }; // full backoff delays (the fixture's 0 gives the 10% floor)
    auto& b = make(o);
    run_for(10min);
    BOOST_TEST(bootstraps() >= 5u);
    BOOST_TEST(bootstraps() <= 30u); // 1 s doubling to the 60 s cap: about 14 in 10 minutes
    BOOST_TEST(!b.is_connected());
}

// ---- clocks that disagree with the backend's -------------------------------------------

// Issue 10, item 10: a Date header names a whole second. Judged against the Date itself, a
// directed 1 s cadence became 1.6-2.0 s; the local clock, inside that second, is right.
BOOST_FIXTURE_TEST_CASE(directed_pacing_is_not_delayed_by_the_whole_seconds_of_date, fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path).handle([this](const sekuire::http_request&) {
        heartbeat_times.push_back(
            std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now().time_since_epoch()).count());
        auto r = live_response();
        r.next_heartbeat_at = server_now() + 1s;
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    auto o = options();
    o.heartbeat_interval = 1s;
    clock.advance(700ms); // the backend's clock is 0.7 s into a second
    auto& b = make(o);
    b.step();
    run_for(10s);
    BOOST_TEST_REQUIRE(heartbeat_times.size() >= 10u);
    for (std::size_t i = 1; i < heartbeat_times.size(); ++i) BOOST_TEST(heartbeat_times[i] - heartbeat_times[i - 1] == 1000);
    BOOST_TEST(b.get_status().clock_offset.count() == 0);
}

BOOST_FIXTURE_TEST_CASE(a_local_clock_ahead_by_more_than_a_token_lifetime_causes_no_refresh_storm, fixture) {
    transport.on(http_method::post, bootstrap_path).handle([this](const sekuire::http_request&) {
        auto r = bootstrap_response();
        r.runtime_token_expires_at = server_now() + 1h;
        return st::fake_transport::reply{201, proto::encode(r), date_header(), {}};
    });
    script_refresh_ok(runtime_2);
    script_heartbeat_ok();
    clock.jump_wall(2h); // the agent's clock is 2 h ahead of the backend's
    auto& b = make();
    run_for(10min);
    BOOST_TEST(refreshes() == 0u); // the 1-hour token is 10 minutes old by the backend's clock
    BOOST_TEST(heartbeats() == 11u);
    // The backend's second (its Date) ends 2 h - 1 s before the local clock: the offset is
    // corrected to that edge, nothing beyond what the Date header can tell.
    BOOST_TEST(b.get_status().clock_offset.count() == -std::chrono::milliseconds(2h - 1s).count());
    BOOST_TEST(sekuire::to_string(b.get_status()).find("clock_offset_ms=-7199000") != std::string::npos);
    bool warned = false;
    for (const auto& l : logs) warned = warned || l.find("7199 s ahead of the backend's") != std::string::npos;
    BOOST_TEST(warned);
    run_for(1h);
    BOOST_TEST(refreshes() == 1u); // two thirds into its lifetime, by the backend's clock
}

BOOST_FIXTURE_TEST_CASE(a_local_clock_behind_does_not_keep_an_expired_token, fixture) {
    transport.on(http_method::post, bootstrap_path).handle([this](const sekuire::http_request&) {
        auto r = bootstrap_response();
        r.runtime_token_expires_at = server_now() + 1h;
        return st::fake_transport::reply{201, proto::encode(r), date_header(), {}};
    });
    script_refresh_ok(runtime_2);
    script_heartbeat_ok();
    clock.jump_wall(-3h); // 3 h behind: by the local clock the token would look fresh for 4 h
    make();
    run_for(41min);
    BOOST_TEST(refreshes() == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_token_issued_already_expired_is_used_and_refreshed_with_backoff, fixture) {
    // A backend that hands out tokens expiring in 1970, by its own clock: refreshing at once
    // would repeat for ever. The beacon uses the token (the backend decides) and retries the
    // refresh with backoff.
    transport.on(http_method::post, bootstrap_path).handle([this](const sekuire::http_request&) {
        auto r = bootstrap_response();
        r.runtime_token_expires_at = sekuire::wall_time_point{} + 1s;
        return st::fake_transport::reply{201, proto::encode(r), date_header(), {}};
    });
    transport.on(http_method::post, refresh_path).handle([this](const sekuire::http_request&) {
        proto::refresh_response r;
        r.runtime_token = runtime_2;
        r.expires_at = sekuire::wall_time_point{} + 1s;
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    script_heartbeat_ok();
    auto o = options();
    o.random = [] { return 0.999; }; // full backoff delays (the fixture's 0 gives the 10% floor)
    auto& b = make(o);
    run_for(10min);
    BOOST_TEST(refreshes() >= 3u);
    BOOST_TEST(refreshes() <= 20u);
    BOOST_TEST(heartbeats() >= 10u);
    BOOST_TEST(b.is_connected());
}

BOOST_FIXTURE_TEST_CASE(timestamps_beyond_the_clock_range_are_clamped_not_refused, fixture) {
    // "Never expires" as 9999-12-31: the nanosecond system clock ends in 2262. The bootstrap
    // must not be thrown away as malformed (its install token is spent by then).
    int n = 0;
    transport.on(http_method::post, bootstrap_path).handle([&](const sekuire::http_request&) {
        if (++n > 1) return st::fake_transport::reply{409, error_body("install_token_used"), {}, {}};
        return st::fake_transport::reply{
            201, with_field(proto::encode(bootstrap_response()), "runtime_token_expires_at", "9999-12-31T23:59:59Z"),
            date_header(), {}};
    });
    script_heartbeat_ok();
    auto& b = make();
    b.step();
    BOOST_TEST(b.is_connected());
    BOOST_TEST(bootstraps() == 1u);
    const auto st_ = b.get_status();
    BOOST_REQUIRE(st_.runtime_token_expires_at);
    BOOST_TEST(sekuire::format_rfc3339(*st_.runtime_token_expires_at) == "2200-01-01T00:00:00Z");
    run_for(1h);
    BOOST_TEST(refreshes() == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_next_heartbeat_at_just_passed_means_as_soon_as_allowed, fixture) {
    script_bootstrap_ok();
    std::size_t call = 0;
    transport.on(http_method::post, heartbeat_path).handle([&](const sekuire::http_request&) {
        heartbeat_times.push_back(
            std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now().time_since_epoch()).count());
        auto r = live_response();
        if (call == 0) r.next_heartbeat_at = server_now() - 1ms;   // just passed: 1 s
        if (call == 1) r.next_heartbeat_at = server_now() - 10min; // long past: not believed
        ++call;
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    make();
    run_for(3min);
    BOOST_REQUIRE(heartbeat_times.size() >= 3u);
    BOOST_TEST(heartbeat_times[1] - heartbeat_times[0] == 1000);
    BOOST_TEST(heartbeat_times[2] - heartbeat_times[1] == 60000);
}

// ---- stop from callbacks, and revocations not yet stepped ------------------------------

BOOST_FIXTURE_TEST_CASE(stop_from_a_callback_inside_step_completes_later, fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path).handle([this](const sekuire::http_request&) {
        auto r = live_response();
        r.command = proto::command{"cmd_t", proto::command_type::terminate, "terminate", "bye", std::nullopt};
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    auto o = options();
    test_beacon* self = nullptr;
    o.on_command = [&](const proto::command&) { self->stop(); };
    auto& b = make(o);
    self = &b;
    b.step();
    BOOST_TEST(heartbeats() == 1u); // no final heartbeat from inside the step
    b.stop();
    BOOST_TEST(heartbeats() == 2u);
    BOOST_TEST((heartbeat_bodies().back().status == proto::heartbeat_status::stopped));
    BOOST_TEST((b.get_status().state == sekuire::beacon_state::stopped));
}

BOOST_FIXTURE_TEST_CASE(stop_from_a_callback_on_the_beacon_thread_does_not_end_the_process, fixture) {
    script_bootstrap_ok();
    transport.on(http_method::post, heartbeat_path).handle([this](const sekuire::http_request&) {
        auto r = live_response();
        r.command = proto::command{"cmd_t", proto::command_type::terminate, "terminate", "bye", std::nullopt};
        return st::fake_transport::reply{200, proto::encode(r), date_header(), {}};
    });
    auto o = options();
    test_beacon* self = nullptr;
    std::atomic<bool> on_thread{false};
    const auto test_thread = std::this_thread::get_id();
    o.on_command = [&](const proto::command&) {
        on_thread = std::this_thread::get_id() != test_thread;
        self->stop();
    };
    auto& b = make(o);
    self = &b;
    b.start(); // the first pass (and the command) happens before start() returns
    BOOST_TEST(on_thread.load());
    beacon.reset(); // joins the thread that asked to stop, then sends the final heartbeat
    BOOST_TEST(heartbeats() == 2u);
    BOOST_TEST((heartbeat_bodies().back().status == proto::heartbeat_status::stopped));
}

BOOST_FIXTURE_TEST_CASE(a_revocation_applied_before_stop_wins_over_the_final_heartbeat, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make();
    b.step();
    BOOST_REQUIRE(b.is_connected());
    b.apply_revocation(proto::revocation{"kill switch", 5000});
    b.stop();
    BOOST_TEST(heartbeats() == 1u);
    BOOST_TEST(b.get_status().revoked);
    BOOST_TEST((b.get_status().state == sekuire::beacon_state::revoked));
    sekuire::error_code ec;
    BOOST_TEST(!store.load(ec).has_value());
    BOOST_TEST(revocations.size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_revoked_answer_to_the_final_heartbeat_is_obeyed, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto& b = make();
    b.step();
    proto::heartbeat_response revoked;
    revoked.lease_renewed = false;
    revoked.revoked = proto::revocation{"kill switch", 1000};
    transport.on(http_method::post, heartbeat_path).clear().respond(200, proto::encode(revoked));
    b.stop();
    BOOST_TEST(b.get_status().revoked);
    sekuire::error_code ec;
    BOOST_TEST(!store.load(ec).has_value());
    BOOST_TEST(revocations.size() == 1u);
}

// ---- the credential store never hangs nor wastes the install token (issue 10) -----------

// Item 1: another process holding the refresh lock (`flock -o F.lock sleep 120`) made the
// beacon thread block in flock() for ever. A busy lock is a transient store error: the step
// returns, heartbeats go on, the refresh is retried and happens once the lock is free.
BOOST_FIXTURE_TEST_CASE(a_refresh_lock_held_by_another_process_never_blocks_the_beacon, fixture) {
    scratch_dir d;
    sekuire::file_store fs(d.path("creds.json"));
    transport.on(http_method::post, bootstrap_path).handle([this](const sekuire::http_request&) {
        auto r = bootstrap_response();
        r.runtime_token_expires_at = server_now() + 1h; // due for refresh after 40 minutes
        return st::fake_transport::reply{201, proto::encode(r), date_header(), {}};
    });
    script_refresh_ok(runtime_2);
    script_heartbeat_ok();
    file_beacon b(options(), transport, clock, fs, st::fixed_probe{});
    b.step();
    BOOST_TEST_REQUIRE(b.is_connected());
    const int fd = ::open((d.path("creds.json") + ".lock").c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    st::run_for(clock, 45min, [&] { return b.step(); });
    BOOST_TEST(refreshes() == 0u);
    BOOST_TEST(b.is_connected());
    BOOST_TEST(heartbeats() >= 45u);
    bool logged = false;
    for (const auto& l : logs) logged = logged || l.find("refresh lock is held") != std::string::npos;
    BOOST_TEST(logged); // a transient store error, logged (the heartbeats since cleared last_error)
    ::flock(fd, LOCK_UN);
    ::close(fd);
    st::run_for(clock, 3min, [&] { return b.step(); });
    BOOST_TEST(refreshes() == 1u);
    BOOST_TEST(b.get_status().runtime_token == sekuire::mask_token(runtime_2));
    b.stop();
}

// Item 8: a credentials file in a directory that does not exist spent the single-use install
// token on credentials that could not be saved. The store is checked first; the token is
// kept for when it can be written, and the error names the path.
BOOST_FIXTURE_TEST_CASE(an_unwritable_store_never_spends_the_install_token, fixture) {
    scratch_dir d;
    const std::string dir = d.path("not-yet");
    sekuire::file_store fs(dir + "/creds.json");
    script_bootstrap_ok();
    script_heartbeat_ok();
    file_beacon b(options(), transport, clock, fs, st::fixed_probe{});
    b.step();
    BOOST_TEST(bootstraps() == 0u);
    auto s = b.get_status();
    BOOST_TEST(s.degraded_mode);
    BOOST_TEST(s.last_error.find(dir + "/creds.json") != std::string::npos);
    BOOST_TEST(s.last_error.find("bootstrap was not attempted") != std::string::npos);
    st::run_for(clock, 30s, [&] { return b.step(); });
    BOOST_TEST(bootstraps() == 0u);
    std::filesystem::create_directory(dir);
    st::run_for(clock, 2min, [&] { return b.step(); });
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(b.is_connected());
    sekuire::error_code ec;
    const auto saved = fs.load(ec);
    BOOST_TEST(!ec);
    BOOST_TEST_REQUIRE(saved.has_value());
    BOOST_TEST(saved->refresh_token == refresh_1);
    b.stop();
}

// ---- restart recovery from the environment (issue 10, item 9) ---------------------------

namespace {
sekuire::env_lookup env_of(std::map<std::string, std::string> vars) {
    return [vars](const char* name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}
} // namespace

// The seed: "On restart, set SEKUIRE_INSTALLATION_ID + SEKUIRE_REFRESH_TOKEN; Beacon recovers
// without consuming a new install token". Its program builds the options by hand (with its
// now-spent install token, or without one); the recovery credentials come from the
// environment all the same.
BOOST_FIXTURE_TEST_CASE(a_restart_recovers_from_the_environment_without_an_install_token, fixture) {
    for (const bool with_spent_token : {true, false}) {
        BOOST_TEST_CONTEXT("with the spent install token: " << with_spent_token) {
            transport.clear_scripts();
            transport.on(http_method::post, bootstrap_path).respond(409, error_body("install_token_used"));
            script_refresh_ok(runtime_2);
            script_heartbeat_ok();
            store = sekuire::memory_store{};
            const auto bootstraps_before = bootstraps(), refreshes_before = refreshes();
            auto o = options();
            if (!with_spent_token) o.install_token.clear();
            o.environment = env_of({{"SEKUIRE_INSTALLATION_ID", installation}, {"SEKUIRE_REFRESH_TOKEN", refresh_1}});
            auto& b = make(o);
            b.step();
            BOOST_TEST(bootstraps() == bootstraps_before); // the install token is never spent
            BOOST_TEST(refreshes() == refreshes_before + 1);
            BOOST_TEST(b.is_connected());
            const auto st = b.get_status();
            BOOST_TEST(st.recovered_from_env);
            BOOST_TEST(st.installation_id == installation);
            BOOST_TEST(!st.degraded_mode);
            beacon.reset();
        }
    }
}

// Recovered credentials the backend no longer knows are dropped: the bootstrap that follows
// makes a new installation, which did not come from the environment.
BOOST_FIXTURE_TEST_CASE(recovered_from_env_ends_with_the_recovered_credentials, fixture) {
    transport.on(http_method::post, refresh_path).respond(404, error_body("not_found"));
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto o = options();
    o.environment = env_of({{"SEKUIRE_INSTALLATION_ID", installation}, {"SEKUIRE_REFRESH_TOKEN", "rt_gone"}});
    auto& b = make(o);
    st::run_for(clock, 10s, [&] { return b.step(); });
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(b.is_connected());
    BOOST_TEST(!b.get_status().recovered_from_env);
}

BOOST_FIXTURE_TEST_CASE(a_runtime_token_from_the_environment_is_tried_first, fixture) {
    script_heartbeat_ok();
    auto o = options();
    o.environment = env_of({{"SEKUIRE_INSTALLATION_ID", installation},
                            {"SEKUIRE_REFRESH_TOKEN", refresh_1},
                            {"SEKUIRE_RUNTIME_TOKEN", runtime_1}});
    auto& b = make(o);
    b.step();
    BOOST_TEST(refreshes() == 0u);
    BOOST_TEST(bootstraps() == 0u);
    BOOST_TEST_REQUIRE(heartbeats() == 1u);
    BOOST_TEST(bearer(transport.requests(http_method::post, heartbeat_path).front()) == runtime_1);
    BOOST_TEST(b.get_status().recovered_from_env);
}

BOOST_FIXTURE_TEST_CASE(the_environment_fills_only_what_the_options_leave_out, fixture) {
    // Options with credentials of their own: the environment is not read.
    script_refresh_ok(runtime_2);
    script_heartbeat_ok();
    auto o = options();
    o.installation_id = installation;
    o.refresh_token = refresh_1;
    o.environment = env_of({{"SEKUIRE_INSTALLATION_ID", "inst_other"}, {"SEKUIRE_REFRESH_TOKEN", "rt_other"}});
    auto& b = make(o);
    b.step();
    BOOST_TEST(b.get_status().installation_id == installation);
    BOOST_TEST(!b.get_status().recovered_from_env);
    // An installation id alone (what sekuire-run gives its command) is no recovery.
    beacon.reset();
    store = sekuire::memory_store{};
    script_bootstrap_ok();
    auto o2 = options();
    o2.environment = env_of({{"SEKUIRE_INSTALLATION_ID", "inst_other"}});
    auto& b2 = make(o2);
    b2.step();
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(!b2.get_status().recovered_from_env);
}

BOOST_FIXTURE_TEST_CASE(a_store_that_holds_credentials_wins_over_the_environment, fixture) {
    sekuire::installation_credentials c;
    c.installation_id = installation;
    c.refresh_token = refresh_1;
    c.runtime_token = runtime_1;
    sekuire::error_code ec;
    store.save(c, ec);
    script_heartbeat_ok();
    auto o = options();
    o.environment = env_of({{"SEKUIRE_INSTALLATION_ID", "inst_stale"}, {"SEKUIRE_REFRESH_TOKEN", "rt_stale"}});
    auto& b = make(o);
    b.step();
    BOOST_TEST(b.get_status().installation_id == installation);
    BOOST_TEST(!b.get_status().recovered_from_env); // the store's credentials are in use
}

// ---- startup jitter (issue 10, item 11) ---------------------------------------------------

BOOST_FIXTURE_TEST_CASE(the_first_bootstrap_waits_the_startup_jitter, fixture) {
    script_bootstrap_ok();
    script_heartbeat_ok();
    auto o = options();
    o.startup_jitter = 4s;
    o.random = [] { return 0.5; };
    auto& b = make(o);
    const auto next = b.step();
    BOOST_TEST(bootstraps() == 0u);
    BOOST_TEST(heartbeats() == 0u);
    BOOST_TEST(std::chrono::duration_cast<std::chrono::milliseconds>(next - clock.steady_now()).count() == 2000);
    BOOST_TEST(!b.get_status().degraded_mode);
    clock.advance_to(next);
    b.step();
    BOOST_TEST(bootstraps() == 1u);
    BOOST_TEST(heartbeats() == 1u); // the registration heartbeat comes with it
    BOOST_TEST(b.is_connected());
}

BOOST_AUTO_TEST_CASE(a_fleet_started_together_spreads_over_the_jitter_window) {
    st::fake_clock clock;
    st::fake_transport transport;
    transport.on(http_method::post, bootstrap_path).respond(503, "");
    std::vector<std::int64_t> firsts;
    for (std::uint64_t i = 0; i < 50; ++i) {
        sekuire::beacon_options o;
        o.agent_id = "agent";
        o.install_token = install_token;
        o.startup_jitter = 5s;
        o.random = sekuire::make_random_source(1000 + i);
        o.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; };
        test_beacon b(o, transport, clock, sekuire::memory_store{}, st::fixed_probe{});
        const auto next = b.step();
        firsts.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(next - clock.steady_now()).count());
    }
    BOOST_TEST(transport.count(http_method::post, bootstrap_path) == 0u); // none at once
    std::sort(firsts.begin(), firsts.end());
    BOOST_TEST(firsts.front() >= 0);
    BOOST_TEST(firsts.back() < 5000);
    BOOST_TEST(firsts.back() - firsts.front() > 3000); // spread over most of the window
    BOOST_TEST(static_cast<int>(std::unique(firsts.begin(), firsts.end()) - firsts.begin()) > 45);
}

BOOST_AUTO_TEST_SUITE_END()
