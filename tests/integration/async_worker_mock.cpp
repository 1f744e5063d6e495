// SPDX-License-Identifier: MIT
// The asynchronous worker (`sekuire::async::basic_worker` over beast_transport, the system
// clock and Asio steady timers) against the in-process mock backend on 127.0.0.1, on one
// io_context thread: tasks enqueued through the admin API complete with the right outputs
// (synchronous handlers and handlers that sleep on a timer), pause and resume, a
// revocation, and twenty workers with open task streams sharing the thread.
#include <sekuire/async/worker.hpp>

#include <sekuire/credential_store.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/mock_backend.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace st = sekuire::testing;
namespace json = boost::json;
using namespace std::chrono_literals;
using st::mock_task_status;

using mem_worker = sekuire::async::basic_worker<sekuire::beast_transport, sekuire::system_clock, sekuire::memory_store>;

// An io_context run by `n` threads for the test's duration.
struct loop {
    explicit loop(int n = 1) {
        for (int i = 0; i < n; ++i) threads.emplace_back([this] { ioc.run(); });
    }
    boost::asio::io_context ioc;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{ioc.get_executor()};
    std::vector<std::thread> threads;
    ~loop() {
        work.reset();
        ioc.stop();
        for (auto& t : threads) t.join();
    }
};

/// Polls `pred` every few milliseconds for at most `budget` of real time.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds budget = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + budget;
    for (;;) {
        if (pred()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return pred();
        std::this_thread::sleep_for(2ms);
    }
}

st::mock_backend_options backend_options() {
    st::mock_backend_options o;
    o.keep_alive_timeout = 1s;
    o.keepalive = 1000ms;
    return o;
}

sekuire::worker_options options_for(const st::mock_backend& backend, const std::string& token, int i) {
    sekuire::worker_options o;
    o.api_base_url = backend.url();
    o.install_token = token;
    o.agent_id = "async-worker-" + std::to_string(i);
    o.workspace_id = std::string(st::mock_default_workspace);
    o.heartbeat_interval = 1s;
    o.startup_jitter = 0ms;
    o.drain_timeout = 5s;
    o.max_concurrent_handlers = 16;
    o.backoff.base = 20ms;
    o.backoff.cap = 200ms;
    o.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; };
    return o;
}

json::value echo_output(std::int64_t n) { return json::object{{"n", n}, {"doubled", 2 * n}}; }

std::vector<std::string> enqueue(st::mock_backend& backend, int count, int first, const std::string& capability) {
    std::vector<std::string> ids;
    for (int i = 0; i < count; ++i) {
        st::mock_task_request r;
        r.capability = capability;
        r.input = json::object{{"n", first + i}};
        ids.push_back(backend.enqueue_task(std::move(r)));
    }
    return ids;
}

/// Waits (bounded) until every task has `want`; the number that do not.
std::size_t wait_all(st::mock_backend& backend, const std::vector<std::string>& ids, mock_task_status want,
                     std::chrono::milliseconds budget) {
    const auto deadline = std::chrono::steady_clock::now() + budget;
    std::size_t behind = 0;
    for (const auto& id : ids) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left < 0ms) left = 0ms;
        if (!backend.wait_for_task(id, want, left)) ++behind;
    }
    return behind;
}

// A worker with `echo` (synchronous) and `sleepy` (asynchronous: answers after 20 ms on a
// timer) handlers.
std::unique_ptr<mem_worker> make_worker(boost::asio::io_context& ioc, const st::mock_backend& backend,
                                        const std::string& token, int i) {
    auto ex = ioc.get_executor();
    auto o = options_for(backend, token, i);
    auto w = std::make_unique<mem_worker>(ex, o, sekuire::beast_transport(ex, backend.url(), o.transport));
    w->on_task("echo", [](const sekuire::task_context&, const json::value& input) {
        return echo_output(input.at("n").as_int64());
    });
    w->on_task_async("sleepy", [ex](const sekuire::task_context&, const json::value& input, sekuire::async::task_done d) {
        auto t = std::make_shared<boost::asio::steady_timer>(ex, 20ms);
        const std::int64_t n = input.at("n").as_int64();
        t->async_wait([t, d, n](boost::system::error_code) { d(echo_output(n)); });
    });
    return w;
}

} // namespace

BOOST_AUTO_TEST_SUITE(async_worker_mock)

BOOST_AUTO_TEST_CASE(enqueued_tasks_complete_with_their_outputs) {
    st::mock_backend backend(backend_options());
    backend.start();
    loop l;
    auto w = make_worker(l.ioc, backend, std::string(st::mock_default_install_token), 0);
    w->async_start(boost::asio::use_future).get();
    BOOST_REQUIRE_MESSAGE(eventually([&] { return w->get_status().stream_connected; }), "no task stream");
    BOOST_REQUIRE(backend.wait_for_open_streams(1, 10s));
    const auto quick = enqueue(backend, 150, 0, "echo");
    const auto slow = enqueue(backend, 50, 1000, "sleepy");
    BOOST_TEST(wait_all(backend, quick, mock_task_status::completed, 60s) == 0u);
    BOOST_TEST(wait_all(backend, slow, mock_task_status::completed, 60s) == 0u);
    for (std::size_t i = 0; i < quick.size(); ++i) {
        const auto t = backend.task(quick[i]);
        BOOST_TEST_REQUIRE(t.has_value());
        BOOST_TEST(t->output == echo_output(static_cast<std::int64_t>(i)));
    }
    for (std::size_t i = 0; i < slow.size(); ++i) {
        const auto t = backend.task(slow[i]);
        BOOST_TEST_REQUIRE(t.has_value());
        BOOST_TEST(t->output == echo_output(1000 + static_cast<std::int64_t>(i)));
    }
    BOOST_REQUIRE(eventually([&] { return w->get_status().completed == 200u; }));
    w->async_stop(boost::asio::use_future).get();
    const auto s = w->get_status();
    BOOST_TEST((s.state == sekuire::worker_state::stopped));
    BOOST_TEST(s.completed == 200u);
    BOOST_TEST(s.failed == 0u);
    BOOST_TEST(s.results_dropped == 0u);
    BOOST_TEST(s.pending_results == 0u);
    BOOST_TEST(backend.open_streams() == 0u);
}

BOOST_AUTO_TEST_CASE(pause_rejects_tasks_and_resume_accepts_them_again) {
    st::mock_backend backend(backend_options());
    backend.start();
    loop l;
    auto w = make_worker(l.ioc, backend, std::string(st::mock_default_install_token), 0);
    w->async_start(boost::asio::use_future).get();
    BOOST_REQUIRE(eventually([&] { return w->get_status().stream_connected; }));
    const std::string inst = w->get_status().installation_id;
    backend.send_command(inst, "pause", "maintenance");
    BOOST_REQUIRE_MESSAGE(eventually([&] { return w->is_paused(); }), "the pause command was not applied");
    const auto paused = enqueue(backend, 3, 0, "echo");
    BOOST_TEST(wait_all(backend, paused, mock_task_status::rejected, 10s) == 0u);
    for (const auto& id : paused) {
        const auto t = backend.task(id);
        BOOST_TEST_REQUIRE((t && t->error));
        BOOST_TEST(t->error->code == "worker_paused");
    }
    backend.send_command(inst, "resume");
    BOOST_REQUIRE_MESSAGE(eventually([&] { return !w->is_paused(); }), "the resume command was not applied");
    const auto resumed = enqueue(backend, 3, 10, "sleepy");
    BOOST_TEST(wait_all(backend, resumed, mock_task_status::completed, 10s) == 0u);
    w->async_stop(boost::asio::use_future).get();
}

BOOST_AUTO_TEST_CASE(a_revocation_stops_the_worker) {
    st::mock_backend backend(backend_options());
    backend.start();
    loop l;
    auto w = make_worker(l.ioc, backend, std::string(st::mock_default_install_token), 0);
    w->async_start(boost::asio::use_future).get();
    BOOST_REQUIRE(eventually([&] { return w->get_status().stream_connected; }));
    const auto before = enqueue(backend, 5, 0, "echo");
    BOOST_TEST(wait_all(backend, before, mock_task_status::completed, 10s) == 0u);
    backend.revoke(w->get_status().installation_id, "kill switch test", 2000);
    BOOST_REQUIRE_MESSAGE(eventually([&] { return w->get_status().revoked; }), "the worker missed the revocation");
    BOOST_TEST(w->get_status().revoked_reason == "kill switch test");
    BOOST_REQUIRE_MESSAGE(eventually([&] { return w->is_finished(); }), "the revoked worker did not stop");
    BOOST_TEST((w->get_status().state == sekuire::worker_state::revoked));
    sekuire::error_code ec;
    BOOST_TEST(!w->credential_store().load(ec).has_value()); // the revoked credentials are gone
    // No new stream: the backend sees none open for a while.
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(backend.open_streams() == 0u);
    w->async_stop(boost::asio::use_future).get(); // completes at once
}

namespace {
// `n` workers on an io_context run by `threads` threads complete 200 tasks between them.
void many_workers(int n, int threads) {
    st::mock_backend_options mo = backend_options();
    for (int i = 0; i < n; ++i) mo.install_tokens.push_back("skt_async_worker_token_" + std::to_string(i));
    st::mock_backend backend(mo);
    backend.start();
    loop l(threads);
    std::vector<std::unique_ptr<mem_worker>> workers;
    std::vector<std::future<void>> started;
    for (int i = 0; i < n; ++i) {
        workers.push_back(make_worker(l.ioc, backend, mo.install_tokens[static_cast<std::size_t>(i)], i));
        started.push_back(workers.back()->async_start(boost::asio::use_future));
    }
    for (auto& f : started) f.get();
    BOOST_REQUIRE(backend.wait_for_open_streams(static_cast<std::size_t>(n), 20s));
    const auto ids = enqueue(backend, 200, 0, "sleepy");
    BOOST_TEST(wait_all(backend, ids, mock_task_status::completed, 60s) == 0u);
    std::vector<std::future<void>> stopped;
    for (auto& w : workers) stopped.push_back(w->async_stop(boost::asio::use_future));
    for (auto& f : stopped) f.get();
    std::uint64_t completed = 0;
    for (auto& w : workers) completed += w->get_status().completed;
    BOOST_TEST(completed == 200u);
}
} // namespace

BOOST_AUTO_TEST_CASE(twenty_workers_share_one_thread) { many_workers(20, 1); }

// Each worker runs on a strand: an io_context run by two threads carries them as well.
BOOST_AUTO_TEST_CASE(twenty_workers_on_two_threads) { many_workers(20, 2); }

BOOST_AUTO_TEST_SUITE_END()
