// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/limits.hpp>

#include <sekuire/basic_beacon.hpp>
#include <sekuire/basic_sdk.hpp>
#include <sekuire/basic_worker.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fake_transport.hpp>
#include <sekuire/testing/fixed_probe.hpp>

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <ostream>
#include <string>

namespace st = sekuire::testing;
namespace bdata = boost::unit_test::data;
using namespace std::chrono_literals;
using sekuire::errc;

namespace {

using test_beacon = sekuire::basic_beacon<st::fake_transport, st::fake_clock, sekuire::memory_store, st::fixed_probe>;
using test_worker = sekuire::basic_worker<st::fake_transport, st::fake_clock, sekuire::memory_store, sekuire::inline_executor>;

struct beacon_case {
    const char* name;
    std::function<void(sekuire::beacon_options&)> set;
    std::string message;
};
std::ostream& operator<<(std::ostream& os, const beacon_case& c) { return os << c.name; }

// Issue 10, item 12: -5 s and 0 s were clamped silently, 100 years accepted, and
// seconds::max() overflowed (UBSan: signed integer overflow).
const beacon_case beacon_cases[] = {
    {"negative interval", [](auto& o) { o.heartbeat_interval = -5s; },
     "beacon option heartbeat_interval must be from 1 s to 24 h (got -5 s)"},
    {"zero interval", [](auto& o) { o.heartbeat_interval = 0s; },
     "beacon option heartbeat_interval must be from 1 s to 24 h (got 0 s)"},
    {"a century", [](auto& o) { o.heartbeat_interval = std::chrono::seconds(100LL * 366 * 86400); },
     "beacon option heartbeat_interval must be from 1 s to 24 h (got 3162240000 s)"},
    {"seconds::max()", [](auto& o) { o.heartbeat_interval = std::chrono::seconds::max(); },
     "beacon option heartbeat_interval must be from 1 s to 24 h (got " +
         std::to_string(std::chrono::seconds::max().count()) + " s)"},
    {"milliseconds::min() timeout", [](auto& o) { o.request_timeout = std::chrono::milliseconds::min(); },
     "beacon option request_timeout must be from 100 ms to 10 min (got " +
         std::to_string(std::chrono::milliseconds::min().count()) + " ms)"},
    {"stop_timeout", [](auto& o) { o.stop_timeout = -1ms; }, "beacon option stop_timeout must be from 0 s to 10 min (got -1 ms)"},
    {"start_timeout", [](auto& o) { o.start_timeout = 2h; }, "beacon option start_timeout must be from 0 s to 1 h (got 7200000 ms)"},
    {"startup_jitter", [](auto& o) { o.startup_jitter = 6min; },
     "beacon option startup_jitter must be from 0 s to 5 min (got 360000 ms)"},
    {"backoff base", [](auto& o) { o.backoff.base = 0ms; }, "beacon option backoff.base must be from 1 ms to 1 h (got 0 ms)"},
    {"backoff cap below base", [](auto& o) { o.backoff.cap = 10ms; o.backoff.base = 20ms; },
     "beacon option backoff.cap must be at least backoff.base (got 10 ms < 20 ms)"},
    {"NaN factor", [](auto& o) { o.backoff.factor = std::nan(""); }, "beacon option backoff.factor must be from 1 to 16 (got nan)"},
    {"fraction", [](auto& o) { o.backoff.min_fraction = 2.0; },
     "beacon option backoff.min_fraction must be from 0 to 1 (got 2.000000)"},
    {"connect timeout", [](auto& o) { o.transport.connect_timeout = 0ms; },
     "beacon option transport.connect_timeout must be from 1 ms to 10 min (got 0 ms)"},
    {"response size", [](auto& o) { o.transport.max_response_size = 0; },
     "beacon option transport.max_response_size must be from 1024 to 1073741824 (got 0)"},
};

BOOST_AUTO_TEST_SUITE(limits)

BOOST_DATA_TEST_CASE(invalid_beacon_options_are_refused_by_name, bdata::make(beacon_cases), c) {
    sekuire::beacon_options o;
    c.set(o);
    sekuire::error_code ec;
    BOOST_TEST(sekuire::validate(o, ec) == c.message);
    BOOST_TEST((ec == errc::invalid_option));
    st::fake_clock clock;
    st::fake_transport transport;
    try {
        test_beacon b(o, transport, clock);
        BOOST_FAIL("no exception");
    } catch (const sekuire::error& e) {
        BOOST_TEST((e.code() == errc::invalid_option));
        BOOST_TEST(std::string(e.what()).find(c.message) == 0u);
    }
    BOOST_TEST(transport.requests().empty());
}

BOOST_AUTO_TEST_CASE(the_range_bounds_are_valid) {
    sekuire::beacon_options o;
    sekuire::error_code ec;
    o.heartbeat_interval = 1s;
    BOOST_TEST(sekuire::validate(o, ec).empty());
    BOOST_TEST(!ec);
    o.heartbeat_interval = 86400s;
    o.stop_timeout = 0ms;
    o.startup_jitter = 5min;
    o.request_timeout = 100ms;
    BOOST_TEST(sekuire::validate(o, ec).empty());
    BOOST_TEST(!ec);
    // The defaults are valid.
    BOOST_TEST(sekuire::validate(sekuire::beacon_options{}, ec).empty());
    BOOST_TEST(sekuire::validate(sekuire::worker_options{}, ec).empty());
    BOOST_TEST(sekuire::validate(sekuire::sdk_options{}, ec).empty());
    BOOST_TEST(!ec);
}

BOOST_AUTO_TEST_CASE(invalid_worker_options_are_refused_by_name) {
    const std::pair<std::function<void(sekuire::worker_options&)>, std::string> cases[] = {
        {[](auto& o) { o.heartbeat_interval = 0ms; }, "worker option heartbeat_interval must be from 1 s to 24 h (got 0 ms)"},
        {[](auto& o) { o.max_concurrent_handlers = 0; }, "worker option max_concurrent_handlers must be from 1 to 4096 (got 0)"},
        {[](auto& o) { o.max_queued_tasks = 0; }, "worker option max_queued_tasks must be from 1 to 10000000 (got 0)"},
        {[](auto& o) { o.max_pending_results = 0; }, "worker option max_pending_results must be from 1 to 10000000 (got 0)"},
        {[](auto& o) { o.handler_timeout = std::chrono::milliseconds::max(); },
         "worker option handler_timeout must be from 1 ms to 24 h (got " +
             std::to_string(std::chrono::milliseconds::max().count()) + " ms)"},
        {[](auto& o) { o.drain_timeout = -1ms; }, "worker option drain_timeout must be from 0 s to 24 h (got -1 ms)"},
        {[](auto& o) { o.stream_idle_timeout = 10ms; }, "worker option stream_idle_timeout must be from 1 s to 24 h (got 10 ms)"},
    };
    for (const auto& c : cases) {
        sekuire::worker_options o;
        c.first(o);
        sekuire::error_code ec;
        BOOST_TEST(sekuire::validate(o, ec) == c.second);
        st::fake_clock clock;
        st::fake_transport transport;
        BOOST_CHECK_EXCEPTION(test_worker(o, transport, clock), sekuire::error, [&](const sekuire::error& e) {
            return e.code() == errc::invalid_option && std::string(e.what()).find(c.second) == 0u;
        });
    }
}

BOOST_AUTO_TEST_CASE(invalid_sdk_options_are_refused_by_name) {
    sekuire::sdk_options o;
    o.handler_threads = 100000;
    sekuire::error_code ec;
    BOOST_TEST(sekuire::validate(o, ec) == "sdk option handler_threads must be from 0 to 4096 (got 100000)");
    o.handler_threads = 0;
    o.heartbeat_interval = 0s;
    BOOST_TEST(sekuire::validate(o, ec) == "beacon option heartbeat_interval must be from 1 s to 24 h (got 0 s)");
}

BOOST_AUTO_TEST_SUITE_END()

} // namespace
