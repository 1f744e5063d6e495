// SPDX-License-Identifier: MIT
// The asynchronous beacon (`sekuire::async::beacon`: beast_transport, system clock, Asio
// steady timers) against the in-process mock backend on 127.0.0.1, on one io_context
// thread: start, real heartbeats at a 1 s interval, stop with the final heartbeat; many
// beacons on the one thread; a stop during a request the backend delays.
#include <sekuire/async/beacon.hpp>

#include <sekuire/credential_store.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/fixed_probe.hpp>
#include <sekuire/testing/mock_backend.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#endif

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace st = sekuire::testing;
namespace proto = sekuire::protocol;
using namespace std::chrono_literals;

using mem_beacon = sekuire::async::basic_beacon<sekuire::beast_transport, sekuire::system_clock, sekuire::memory_store,
                                                st::fixed_probe>;

// An io_context run by one thread for the test's duration.
struct loop {
    boost::asio::io_context ioc;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{ioc.get_executor()};
    std::thread thread{[this] { ioc.run(); }};
    ~loop() {
        work.reset();
        ioc.stop();
        thread.join();
    }
};

sekuire::beacon_options options_for(const st::mock_backend& backend, const std::string& token, int i) {
    sekuire::beacon_options o;
    o.api_base_url = backend.url();
    o.install_token = token;
    o.agent_id = "async-agent-" + std::to_string(i);
    o.capabilities = {"summarize"};
    o.heartbeat_interval = 1s;
    o.startup_jitter = 0ms;
    o.stop_timeout = 2000ms;
    o.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; };
    return o;
}

std::size_t heartbeat_requests(const st::mock_backend& backend) {
    std::size_t n = 0;
    for (const auto& [path, count] : backend.request_counts())
        if (path.size() > 10 && path.compare(path.size() - 10, 10, "/heartbeat") == 0) n += count;
    return n;
}

} // namespace

BOOST_AUTO_TEST_SUITE(async_beacon_mock)

BOOST_AUTO_TEST_CASE(starts_beats_and_stops_with_a_final_heartbeat) {
    st::mock_backend backend;
    backend.start();
    loop l;
    auto ex = l.ioc.get_executor();
    auto o = options_for(backend, std::string(st::mock_default_install_token), 0);
    sekuire::memory_store store;
    mem_beacon b(ex, o, sekuire::beast_transport(ex, backend.url(), o.transport), sekuire::system_clock(), store,
                 st::fixed_probe{});
    b.async_start(boost::asio::use_future).get();
    BOOST_TEST(b.is_connected());
    BOOST_TEST(backend.request_count(proto::path::bootstrap) == 1u);
    // Real heartbeats at the interval (the interval is 1 s, jitter 10 %): bounded wait.
    for (int i = 0; i < 100 && b.get_status().heartbeats_sent < 3; ++i) std::this_thread::sleep_for(50ms);
    BOOST_TEST(b.get_status().heartbeats_sent >= 3u);
    b.async_stop(boost::asio::use_future).get();
    const auto s = b.get_status();
    BOOST_TEST(!s.is_running);
    BOOST_TEST((s.state == sekuire::beacon_state::stopped));
    // Every heartbeat the beacon counted, plus the final one, reached the backend.
    BOOST_TEST(heartbeat_requests(backend) == s.heartbeats_sent + 1);
    const auto installations = backend.installations();
    BOOST_TEST_REQUIRE(installations.size() == 1u);
    BOOST_TEST((installations[0].state == st::mock_installation_state::stopped));
}

BOOST_AUTO_TEST_CASE(a_hundred_beacons_share_one_thread) {
    const int n = 100;
    st::mock_backend_options mo;
    for (int i = 0; i < n; ++i) mo.install_tokens.push_back("skt_async_test_token_" + std::to_string(i));
    st::mock_backend backend(mo);
    backend.start();
    loop l;
    auto ex = l.ioc.get_executor();
    std::vector<std::unique_ptr<mem_beacon>> beacons;
    std::vector<std::future<void>> started;
    for (int i = 0; i < n; ++i) {
        auto o = options_for(backend, mo.install_tokens[static_cast<std::size_t>(i)], i);
        beacons.push_back(std::make_unique<mem_beacon>(ex, o, sekuire::beast_transport(ex, backend.url(), o.transport),
                                                       sekuire::system_clock(), sekuire::memory_store(),
                                                       st::fixed_probe{}));
        started.push_back(beacons.back()->async_start(boost::asio::use_future));
    }
    for (auto& f : started) f.get();
    std::size_t connected = 0;
    for (auto& b : beacons) connected += b->is_connected() ? 1 : 0;
    BOOST_TEST(connected == static_cast<std::size_t>(n));
    std::this_thread::sleep_for(1500ms); // at least one regular heartbeat each
    std::vector<std::future<void>> stopped;
    for (auto& b : beacons) stopped.push_back(b->async_stop(boost::asio::use_future));
    for (auto& f : stopped) f.get();
    std::uint64_t sent = 0;
    for (auto& b : beacons) {
        sent += b->get_status().heartbeats_sent;
        BOOST_TEST(b->get_status().heartbeats_sent >= 2u);
    }
    BOOST_TEST(backend.request_count(proto::path::bootstrap) == static_cast<std::size_t>(n));
    BOOST_TEST(heartbeat_requests(backend) == sent + static_cast<std::uint64_t>(n)); // + the final ones
}

BOOST_AUTO_TEST_CASE(stop_during_a_delayed_heartbeat_is_prompt) {
    st::mock_backend backend;
    backend.start();
    loop l;
    auto ex = l.ioc.get_executor();
    auto o = options_for(backend, std::string(st::mock_default_install_token), 0);
    o.request_timeout = 30s;
    o.stop_timeout = 500ms;
    mem_beacon b(ex, o, sekuire::beast_transport(ex, backend.url(), o.transport), sekuire::system_clock(),
                 sekuire::memory_store(), st::fixed_probe{});
    b.async_start(boost::asio::use_future).get();
    BOOST_TEST_REQUIRE(b.is_connected());
    st::mock_fault f;
    f.delay = std::chrono::milliseconds(20000);
    f.path_prefix = proto::path::heartbeat(b.get_status().installation_id);
    f.count = 2; // the next heartbeat and the final one
    backend.add_fault(f);
    const auto before = b.get_status().heartbeats_sent;
    std::this_thread::sleep_for(1300ms); // the next heartbeat is out, held by the fault
    const auto t0 = std::chrono::steady_clock::now();
    b.async_stop(boost::asio::use_future).get();
    const auto took = std::chrono::steady_clock::now() - t0;
    // The held heartbeat was cancelled and the final one bounded by stop_timeout (the
    // fault holds it too): far less than the 20 s delay.
    BOOST_TEST((took < 10s));
    BOOST_TEST(b.get_status().heartbeats_sent == before);
    BOOST_TEST((b.get_status().state == sekuire::beacon_state::stopped));
}

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
BOOST_AUTO_TEST_CASE(a_coroutine_awaits_start_and_stop) {
    st::mock_backend backend;
    backend.start();
    boost::asio::io_context ioc;
    auto ex = ioc.get_executor();
    auto o = options_for(backend, std::string(st::mock_default_install_token), 0);
    mem_beacon b(ex, o, sekuire::beast_transport(ex, backend.url(), o.transport), sekuire::system_clock(),
                 sekuire::memory_store(), st::fixed_probe{});
    bool connected = false;
    auto done = boost::asio::co_spawn(
        ioc,
        [&]() -> boost::asio::awaitable<void> {
            co_await b.async_start(boost::asio::use_awaitable);
            connected = b.is_connected();
            co_await b.async_stop(boost::asio::use_awaitable);
        },
        boost::asio::use_future);
    ioc.run_for(20s);
    BOOST_TEST_REQUIRE((done.wait_for(0s) == std::future_status::ready));
    done.get();
    BOOST_TEST(connected);
    BOOST_TEST(heartbeat_requests(backend) == 2u);
}
#endif

BOOST_AUTO_TEST_SUITE_END()
