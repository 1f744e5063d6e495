// SPDX-License-Identifier: MIT
// A heartbeat-sized POST round trip against a local httplib server on 127.0.0.1 (keep-alive,
// TCP_NODELAY at both ends), side by side in one run: raw httplib doing the same request,
// httplib_transport, and beast_transport (its asynchronous call, run on the benchmark's
// thread). Reports time per round trip and heap allocations per request made by the
// client's thread (the server's threads are not counted).
//
//   build/release/bench/sekuire_transport_bench --benchmark_repetitions=5
//     (add --benchmark_report_aggregates_only=true for the medians only)
//
// Issue 11's figures (round trip ratio to raw httplib; the transport's allocations against
// httplib's own) come from the medians of interleaved repetitions, so that load from
// elsewhere falls on all three alike (bench/README.md):
//
//   build/rel/bench/sekuire_transport_bench --benchmark_enable_random_interleaving=true
//     --benchmark_repetitions=15 --benchmark_min_time=0.2 --benchmark_report_aggregates_only=true
#include <sekuire/httplib_transport.hpp>
#if __has_include(<sekuire/beast_transport.hpp>)
#include <sekuire/beast_transport.hpp>
#define SEKUIRE_BENCH_HAS_BEAST 1
#include <boost/asio/io_context.hpp>
#endif

#include <benchmark/benchmark.h>

#include <httplib.h>

#include "local_server.hpp"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <new>
#include <string>

// Counts heap allocations per thread. (GCC sees the free() below paired with the library's
// operator new when it inlines; these replacements are a matched pair.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
thread_local std::uint64_t thread_allocations = 0;
}
void* operator new(std::size_t n) {
    ++thread_allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using namespace std::chrono_literals;

const std::string request_body =
    R"({"installation_id":"inst_4f2a9c1e7b3d","status":"running","uptime_s":86400,)"
    R"("tasks_in_flight":3,"sdk":"sekuire-cpp/0.1.0","platform":"linux-x86_64"})";
const std::string response_body =
    R"({"ok":true,"lease_expires_at":"2030-01-01T00:05:00Z","next_heartbeat_in_s":60,)"
    R"("commands":[],"server_time":"2030-01-01T00:00:00Z"})";
const std::string bearer = "Bearer srt_9b1f0c3e5a7d4e2f8c6b0a1d3e5f7a9c";

// One local server for the whole run.
class local_server {
public:
    int port() const { return http_.port(); }
    std::string url() const { return http_.url(); }

private:
    sekuire_bench::local_http_server http_{[](httplib::Server& svr) {
        svr.Post("/v1/installations/inst_4f2a9c1e7b3d/heartbeat",
                 [](const httplib::Request&, httplib::Response& res) { res.set_content(response_body, "application/json"); });
    }};
};

local_server& server() {
    static local_server s;
    return s;
}

const char* const path = "/v1/installations/inst_4f2a9c1e7b3d/heartbeat";

sekuire::http_request heartbeat() {
    sekuire::http_request req;
    req.method = sekuire::http_method::post;
    req.target = path;
    req.headers = {{"Authorization", bearer}};
    req.body = request_body;
    return req;
}

void report(benchmark::State& state, std::uint64_t allocations, int failures) {
    state.counters["allocs_per_req"] =
        benchmark::Counter(static_cast<double>(allocations), benchmark::Counter::kAvgIterations);
    if (failures) state.SkipWithError("requests failed");
}

// The same request through httplib alone: the same fields (Authorization, User-Agent, Host,
// Content-Type), the body copied into the request as the transports do.
void raw_httplib(benchmark::State& state) {
    httplib::Client cli("127.0.0.1", server().port());
    cli.set_keep_alive(true);
    cli.set_tcp_nodelay(true);
    const std::string host = "127.0.0.1:" + std::to_string(server().port());
    int failures = 0;
    std::uint64_t allocations = 0;
    for (auto _ : state) {
        const auto before = thread_allocations;
        httplib::Request req;
        req.method = "POST";
        req.path = path;
        req.headers.emplace("Authorization", bearer);
        req.headers.emplace("User-Agent", "sekuire-cpp/" SEKUIRE_VERSION_STRING);
        req.headers.emplace("Host", host);
        req.headers.emplace("Content-Type", "application/json");
        req.body = request_body;
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        if (!cli.send(req, res, err) || res.status != 200 || res.body != response_body) ++failures;
        allocations += thread_allocations - before;
    }
    report(state, allocations, failures);
}
BENCHMARK(raw_httplib)->Unit(benchmark::kMicrosecond);

void httplib_transport(benchmark::State& state) {
    sekuire::transport_options o;
    o.proxy.from_environment = false;
    sekuire::httplib_transport t(server().url(), o);
    const auto req = heartbeat();
    int failures = 0;
    std::uint64_t allocations = 0;
    for (auto _ : state) {
        const auto before = thread_allocations;
        sekuire::error_code ec;
        const auto res = t.send(req, ec);
        if (ec || res.status != 200 || res.body != response_body) ++failures;
        allocations += thread_allocations - before;
    }
    report(state, allocations, failures);
}
BENCHMARK(httplib_transport)->Unit(benchmark::kMicrosecond);

#if defined(SEKUIRE_BENCH_HAS_BEAST)
void beast_transport(benchmark::State& state) {
    boost::asio::io_context io;
    sekuire::transport_options o;
    o.proxy.from_environment = false;
    sekuire::beast_transport t(io.get_executor(), server().url(), o);
    const auto req = heartbeat();
    int failures = 0;
    std::uint64_t allocations = 0;
    for (auto _ : state) {
        const auto before = thread_allocations;
        t.async_send(req, [&failures](sekuire::error_code ec, sekuire::http_response res) {
            if (ec || res.status != 200 || res.body != response_body) ++failures;
        });
        io.run();
        io.restart();
        allocations += thread_allocations - before;
    }
    report(state, allocations, failures);
}
BENCHMARK(beast_transport)->Unit(benchmark::kMicrosecond);
#endif

} // namespace

BENCHMARK_MAIN();
