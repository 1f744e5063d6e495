// SPDX-License-Identifier: MIT
// Issue 12's third figure: a whole heartbeat round trip of the asynchronous beacon against
// the synchronous one and a raw request, side by side in one run, against one local httplib
// server on 127.0.0.1 (keep-alive, TCP_NODELAY) that answers the bootstrap and the
// heartbeat with prepared bodies.
//
// - raw_request: what a heartbeat costs with the dependencies alone: httplib::Client POSTs
//   the body the beacon sends (captured from the beacon's registration heartbeat) with the
//   same headers, and boost::json parses the answer and reads the lease fields.
// - sync_beacon: `sekuire::basic_beacon` over `httplib_transport`; each iteration moves a
//   fake clock by one interval and calls `step()`, which sends exactly one heartbeat and
//   handles its answer.
// - async_beacon: `sekuire::async::basic_beacon` over `beast_transport` on an io_context run
//   by the benchmark's thread; each iteration moves a fake clock by one interval, fires the
//   beacon's (fake) timer and runs the io_context until the heartbeat's answer was handled.
//
// Both beacons keep their own cadence, lease and status bookkeeping (that is what is
// measured); the fake clock only removes the 60 s wait between heartbeats. Run with random
// interleaving so that load from elsewhere falls on all three alike:
//
//   build/rel/bench/sekuire_heartbeat_round_trip --benchmark_enable_random_interleaving=true
//     --benchmark_repetitions=15 --benchmark_min_time=0.2 --benchmark_report_aggregates_only=true
#include <sekuire/async/beacon.hpp>
#include <sekuire/basic_beacon.hpp>
#include <sekuire/beast_transport.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/httplib_transport.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/fake_async.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fixed_probe.hpp>

#include <benchmark/benchmark.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <httplib.h>

#include "local_server.hpp"

#include <chrono>
#include <mutex>
#include <string>

namespace {

using namespace std::chrono_literals;
namespace proto = sekuire::protocol;
namespace st = sekuire::testing;

const std::string installation = "inst_bench_0123456789";
const std::string runtime_token = "srt_bench_0123456789abcdefghijklmnopqrstuvwxyz";

// The backend's answers: tokens and leases far beyond any run.
struct answers {
    std::string bootstrap, heartbeat;
    answers() {
        const auto far = std::chrono::system_clock::now() + std::chrono::hours(24 * 365 * 50);
        proto::bootstrap_response boot;
        boot.installation_id = installation;
        boot.runtime_token = runtime_token;
        boot.runtime_token_expires_at = far;
        boot.refresh_token = "rft_bench_0123456789abcdefghijklmnopqrstuvwxyz";
        boot.lease_expires_at = far;
        proto::heartbeat_response hb;
        hb.installation_id = installation;
        hb.lease_renewed = true;
        hb.lease_expires_at = far;
        hb.active_policy_hash = "9f2c0b7e";
        bootstrap = proto::encode(boot);
        heartbeat = proto::encode(hb);
    }
};
const answers& prepared() {
    static const answers a;
    return a;
}

class local_server {
public:
    int port() const { return http_.port(); }
    std::string url() const { return http_.url(); }
    // The body of the first heartbeat a beacon sent, for the raw side to send alike.
    std::string heartbeat_body() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return heartbeat_body_;
    }

private:
    mutable std::mutex mutex_;
    std::string heartbeat_body_;
    // Last: stopped (its handlers joined) before the members they use are destroyed.
    sekuire_bench::local_http_server http_{[this](httplib::Server& svr) {
        svr.Post(std::string(proto::path::bootstrap), [](const httplib::Request&, httplib::Response& res) {
            res.status = 201;
            res.set_content(prepared().bootstrap, "application/json");
        });
        svr.Post(proto::path::heartbeat(installation), [this](const httplib::Request& req, httplib::Response& res) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                if (heartbeat_body_.empty()) heartbeat_body_ = req.body;
            }
            res.set_content(prepared().heartbeat, "application/json");
        });
    }};
};

local_server& server() {
    static local_server s;
    return s;
}

sekuire::beacon_options options() {
    sekuire::beacon_options o;
    o.api_base_url = server().url();
    o.agent_id = "agent-bench";
    o.install_token = "skt_bench_0123456789abcdefghijklmnop";
    o.capabilities = {"summarize", "classify"};
    o.heartbeat_interval = 60s;
    o.startup_jitter = 0ms;
    o.random = [] { return 0.0; };
    o.transport.proxy.from_environment = false;
    return o;
}

using sync_beacon_type = sekuire::basic_beacon<sekuire::httplib_transport, st::fake_clock, sekuire::memory_store, st::fixed_probe>;
using async_beacon_type = sekuire::async::basic_beacon<sekuire::beast_transport, st::fake_clock, sekuire::memory_store,
                                                       st::fixed_probe, st::fake_timer>;

void sync_beacon(benchmark::State& state) {
    st::fake_clock clock;
    const auto o = options();
    sync_beacon_type b(o, sekuire::httplib_transport(o.api_base_url, o.transport), clock, sekuire::memory_store{},
                       st::fixed_probe{});
    b.step(); // bootstrap and registration
    const auto first = b.get_status().heartbeats_sent;
    std::uint64_t cycles = 0;
    for (auto _ : state) {
        clock.advance(60s);
        benchmark::DoNotOptimize(b.step());
        ++cycles;
    }
    if (b.get_status().heartbeats_sent != first + cycles) state.SkipWithError("not one heartbeat per iteration");
}
BENCHMARK(sync_beacon)->Unit(benchmark::kMicrosecond);

void async_beacon(benchmark::State& state) {
    boost::asio::io_context ioc;
    // The fake timers' waits are no work of the io_context's: without the guard it would
    // stop whenever only a timer waits, and run_one_for() would then return at once.
    auto guard = boost::asio::make_work_guard(ioc);
    st::fake_clock clock;
    st::fake_timer_queue timers;
    const auto o = options();
    async_beacon_type b(ioc.get_executor(), o, sekuire::beast_transport(ioc.get_executor(), o.api_base_url, o.transport),
                        clock, sekuire::memory_store{}, st::fixed_probe{}, st::fake_timer(ioc.get_executor(), timers));
    bool started = false;
    b.async_start([&](sekuire::error_code) { started = true; });
    // Bounded: the first pass of the auth chain is two local requests.
    for (int i = 0; i < 1000 && !started; ++i) ioc.run_one_for(10ms);
    if (!started || b.get_status().heartbeats_sent != 1) {
        state.SkipWithError("the asynchronous beacon did not register");
        return;
    }
    std::uint64_t sent = b.get_status().heartbeats_sent;
    bool lost = false;
    for (auto _ : state) {
        clock.advance(60s);
        timers.fire_due(clock.steady_now());
        // Run until the heartbeat's answer was handled (bounded: at most 5 s per heartbeat).
        int spins = 0;
        while (b.get_status().heartbeats_sent == sent && spins++ < 5000) ioc.run_one_for(1ms);
        if (b.get_status().heartbeats_sent != sent + 1) {
            lost = true;
            break;
        }
        ++sent;
    }
    b.async_stop([](sekuire::error_code) {});
    guard.reset();
    for (int i = 0; i < 1000 && !ioc.stopped(); ++i) ioc.run_one_for(10ms);
    if (lost) state.SkipWithError("an iteration did not complete exactly one heartbeat");
}
BENCHMARK(async_beacon)->Unit(benchmark::kMicrosecond);

// The same heartbeat with httplib and Boost.JSON alone: the beacon's body and headers, the
// answer parsed and its lease fields read.
void raw_request(benchmark::State& state) {
    {
        // A beacon's registration heartbeat gives the body to send.
        st::fake_clock clock;
        const auto o = options();
        sync_beacon_type b(o, sekuire::httplib_transport(o.api_base_url, o.transport), clock, sekuire::memory_store{},
                           st::fixed_probe{});
        b.step();
    }
    const std::string body = server().heartbeat_body();
    if (body.empty()) {
        state.SkipWithError("no heartbeat body captured");
        return;
    }
    httplib::Client cli("127.0.0.1", server().port());
    cli.set_keep_alive(true);
    cli.set_tcp_nodelay(true);
    const std::string target = proto::path::heartbeat(installation);
    const std::string bearer = "Bearer " + runtime_token;
    const std::string host = "127.0.0.1:" + std::to_string(server().port());
    int failures = 0;
    for (auto _ : state) {
        httplib::Request req;
        req.method = "POST";
        req.path = target;
        req.headers.emplace("Authorization", bearer);
        req.headers.emplace("User-Agent", "sekuire-cpp/" SEKUIRE_VERSION_STRING);
        req.headers.emplace("Host", host);
        req.headers.emplace("Content-Type", "application/json");
        req.body = body;
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        if (!cli.send(req, res, err) || res.status != 200) {
            ++failures;
            continue;
        }
        boost::system::error_code jec;
        const auto v = boost::json::parse(res.body, jec);
        const auto* obj = v.if_object();
        if (jec || !obj || !obj->if_contains("lease_expires_at") || !obj->if_contains("lease_renewed")) ++failures;
        benchmark::DoNotOptimize(v);
    }
    if (failures) state.SkipWithError("requests failed");
}
BENCHMARK(raw_request)->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();
