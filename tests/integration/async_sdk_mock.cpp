// SPDX-License-Identifier: MIT
// The asynchronous SDK (beacon and worker over beast_transport on one io_context thread)
// against the in-process mock backend on 127.0.0.1: the beacon bootstraps, the worker takes
// that installation's tasks, the stop drains and ends with the beacon's final heartbeat;
// a terminate command stops both parts.
#include <sekuire/async/sdk.hpp>

#include <sekuire/credential_store.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/fixed_probe.hpp>
#include <sekuire/testing/mock_backend.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace st = sekuire::testing;
namespace json = boost::json;
using namespace std::chrono_literals;

using mem_sdk = sekuire::async::basic_sdk<sekuire::beast_transport, sekuire::system_clock, sekuire::memory_store,
                                          st::fixed_probe>;

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

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds budget = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + budget;
    for (;;) {
        if (pred()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return pred();
        std::this_thread::sleep_for(2ms);
    }
}

sekuire::sdk_options options_for(const st::mock_backend& backend) {
    sekuire::sdk_options o;
    o.api_base_url = backend.url();
    o.install_token = std::string(st::mock_default_install_token);
    o.agent_id = "async-sdk-agent";
    o.workspace_id = std::string(st::mock_default_workspace);
    o.capabilities = {"echo"};
    o.heartbeat_interval = 1s;
    o.startup_jitter = 0ms;
    o.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; };
    return o;
}

st::mock_backend_options backend_options() {
    st::mock_backend_options o;
    o.keep_alive_timeout = 1s;
    o.keepalive = 1000ms;
    return o;
}

std::unique_ptr<mem_sdk> make_sdk(loop& l, const st::mock_backend& backend) {
    auto ex = l.ioc.get_executor();
    auto o = options_for(backend);
    sekuire::worker_options wo;
    wo.heartbeat_interval = 1s;
    wo.drain_timeout = 5s;
    auto s = std::make_unique<mem_sdk>(ex, o, wo, sekuire::beast_transport(ex, backend.url(), o.transport));
    s->on_task("echo", [](const sekuire::task_context&, const json::value& in) {
        return json::value{{"echo", in}};
    });
    return s;
}

} // namespace

BOOST_AUTO_TEST_SUITE(async_sdk_mock)

BOOST_AUTO_TEST_CASE(beacon_and_worker_share_the_installation_and_stop_in_order) {
    st::mock_backend backend(backend_options());
    backend.start();
    loop l;
    auto s = make_sdk(l, backend);
    s->async_start(boost::asio::use_future).get();
    BOOST_TEST(s->is_connected());
    BOOST_REQUIRE(backend.wait_for_open_streams(1, 10s));
    std::vector<std::string> ids;
    for (int i = 0; i < 50; ++i) {
        st::mock_task_request r;
        r.capability = "echo";
        r.input = json::object{{"i", i}};
        ids.push_back(backend.enqueue_task(std::move(r)));
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
        BOOST_TEST_REQUIRE(backend.wait_for_task(ids[i], st::mock_task_status::completed, 10s));
        const auto t = backend.task(ids[i]);
        BOOST_TEST((t->output == json::value{{"echo", json::object{{"i", static_cast<std::int64_t>(i)}}}}));
    }
    BOOST_TEST(backend.request_count(sekuire::protocol::path::bootstrap) == 1u); // the beacon's only
    const auto installations = backend.installations();
    BOOST_TEST_REQUIRE(installations.size() == 1u);
    BOOST_TEST(installations[0].installation_id == s->get_worker_status().installation_id);
    s->async_stop(boost::asio::use_future).get();
    BOOST_TEST(s->worker().is_finished());
    BOOST_TEST(!s->get_beacon_status().is_running);
    BOOST_TEST((backend.installations()[0].state == st::mock_installation_state::stopped));
    BOOST_TEST(backend.open_streams() == 0u);
}

BOOST_AUTO_TEST_CASE(a_terminate_command_stops_both_parts) {
    st::mock_backend backend(backend_options());
    backend.start();
    loop l;
    auto s = make_sdk(l, backend);
    s->async_start(boost::asio::use_future).get();
    BOOST_REQUIRE(backend.wait_for_open_streams(1, 10s));
    backend.send_command(s->get_worker_status().installation_id, "terminate", "decommissioned");
    BOOST_REQUIRE_MESSAGE(eventually([&] { return s->worker().is_finished() && !s->get_beacon_status().is_running; }),
                          "the SDK did not stop on terminate");
    s->async_stop(boost::asio::use_future).get(); // completes at once
    BOOST_TEST((backend.installations()[0].state == st::mock_installation_state::stopped));
}

BOOST_AUTO_TEST_SUITE_END()
