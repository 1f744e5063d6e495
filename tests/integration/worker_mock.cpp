// SPDX-License-Identifier: MIT
// The TaskWorker against the in-process mock backend on 127.0.0.1: a thousand tasks, each
// completed exactly once, also with stream cuts and 503s on completion; revocation,
// terminate, pause and resume, and the policy gateway with the backend's policy; a beacon
// and a worker sharing one credential store through several token refreshes (fake clock).
#include <sekuire/worker.hpp>

#include <sekuire/basic_beacon.hpp>
#include <sekuire/basic_worker.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/executor.hpp>
#include <sekuire/httplib_transport.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fixed_probe.hpp>
#include <sekuire/testing/mock_backend.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
namespace proto = sekuire::protocol;
namespace st = sekuire::testing;
using st::mock_task_status;

const std::string agent_id = "agent-worker-mock";
const std::string workspace(st::mock_default_workspace);

// ---- small helpers ----------------------------------------------------------------------

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

/// Log lines of the worker, kept for the failure messages.
class log_sink {
public:
    sekuire::log_handler handler() {
        return [this](sekuire::log_level level, std::string_view m) {
            if (level < sekuire::log_level::warning) return;
            std::lock_guard<std::mutex> lock(mutex_);
            if (lines_.size() < 200) lines_.emplace_back(m);
        };
    }
    std::string tail() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::string out;
        const std::size_t from = lines_.size() > 20 ? lines_.size() - 20 : 0;
        for (std::size_t i = from; i < lines_.size(); ++i) out += "\n  log: " + lines_[i];
        return out;
    }

private:
    mutable std::mutex mutex_;
    std::vector<std::string> lines_;
};

/// Counts handler runs per task id.
class run_counter {
public:
    void record(const std::string& id) {
        std::lock_guard<std::mutex> lock(mutex_);
        ++runs_[id];
    }
    int runs(const std::string& id) const {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = runs_.find(id);
        return it == runs_.end() ? 0 : it->second;
    }
    std::size_t distinct() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return runs_.size();
    }
    std::size_t total() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::size_t n = 0;
        for (const auto& kv : runs_) n += static_cast<std::size_t>(kv.second);
        return n;
    }

private:
    mutable std::mutex mutex_;
    std::map<std::string, int> runs_;
};

/** A gate that blocking handlers wait on: a handle to shared state, so that a handler may
    outlive the test's copy. The wait is bounded, so that a failed test never hangs.
*/
class gate {
public:
    void enter() const {
        std::unique_lock<std::mutex> lock(s_->mutex);
        ++s_->entered;
        s_->cv.notify_all();
        s_->cv.wait_for(lock, 20s, [&] { return s_->open; });
    }
    void open() const {
        {
            std::lock_guard<std::mutex> lock(s_->mutex);
            s_->open = true;
        }
        s_->cv.notify_all();
    }
    bool wait_entered(int n, std::chrono::milliseconds budget = 10s) const {
        std::unique_lock<std::mutex> lock(s_->mutex);
        return s_->cv.wait_for(lock, budget, [&] { return s_->entered >= n; });
    }

private:
    struct state {
        std::mutex mutex;
        std::condition_variable cv;
        int entered = 0;
        bool open = false;
    };
    std::shared_ptr<state> s_ = std::make_shared<state>();
};

/// Opens a gate when the test ends, failed or not, so that the worker's drain is quick.
struct gate_guard {
    explicit gate_guard(gate gate_to_open) : g(std::move(gate_to_open)) {}
    gate g;
    gate_guard(const gate_guard&) = delete;
    gate_guard& operator=(const gate_guard&) = delete;
    ~gate_guard() { g.open(); }
};

json::value echo_output(std::int64_t n) { return json::object{{"n", n}, {"twice", 2 * n}}; }

/// The handler of the `echo` capability: counts its runs and answers `echo_output(n)`.
sekuire::task_handler echo_handler(run_counter& runs) {
    return [&runs](const sekuire::task_context& ctx, const json::value& input) {
        runs.record(ctx.task_id);
        return echo_output(input.at("n").as_int64());
    };
}

// Short retries, so that fault runs finish quickly.
sekuire::backoff_options fast_backoff() {
    sekuire::backoff_options b;
    b.base = 20ms;
    b.factor = 2.0;
    b.cap = 200ms;
    return b;
}

// Backend options for tests: a short keep-alive of idle connections so that stop() never
// waits long for a client that holds one.
st::mock_backend_options backend_options() {
    st::mock_backend_options o;
    o.keep_alive_timeout = 1s;
    o.keepalive = 1000ms;
    return o;
}

sekuire::worker_options worker_options_for(const std::string& url, const std::string& install_token, log_sink& log) {
    sekuire::worker_options o;
    o.startup_jitter = std::chrono::milliseconds(0);
    o.api_base_url = url;
    o.agent_id = agent_id;
    o.install_token = install_token;
    o.workspace_id = workspace;
    o.heartbeat_interval = 1s;
    o.backoff = fast_backoff();
    o.drain_timeout = 10s;
    o.start_timeout = 10s;
    o.logger = log.handler();
    return o;
}

/// Queues `count` echo tasks with inputs `{"n": first..}`; returns their ids in order.
template <class Backend>
std::vector<std::string> enqueue_echo(Backend& backend, int count, int first = 0,
                                      const std::string& capability = "echo") {
    std::vector<std::string> ids;
    ids.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        st::mock_task_request r;
        r.capability = capability;
        r.input = json::object{{"n", first + i}};
        ids.push_back(backend.enqueue_task(std::move(r)));
    }
    return ids;
}

/// Waits (bounded) until every task has `want`; empty when they all do, else what is wrong.
template <class Backend>
std::string wait_all(Backend& backend, const std::vector<std::string>& ids, mock_task_status want,
                     std::chrono::milliseconds budget) {
    const auto deadline = std::chrono::steady_clock::now() + budget;
    for (const auto& id : ids) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left < 0ms) left = 0ms;
        if (backend.wait_for_task(id, want, left)) continue;
        std::size_t behind = 0;
        for (const auto& other : ids) {
            const auto t = backend.task(other);
            if (!t || t->status != want) ++behind;
        }
        const auto t = backend.task(id);
        std::ostringstream out;
        out << behind << " of " << ids.size() << " tasks are not " << st::to_string(want) << " after "
            << budget.count() << " ms; task " << id << " is " << (t ? st::to_string(t->status) : "unknown");
        return out.str();
    }
    return {};
}

/// Checks that every task completed with the output of its input and that its handler ran
/// exactly once; returns a description of the first problems (empty when none).
template <class Backend>
std::string check_completed_once(Backend& backend, const std::vector<std::string>& ids, const run_counter& runs,
                                 int first = 0) {
    std::ostringstream out;
    int problems = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto t = backend.task(ids[i]);
        std::string what;
        if (!t)
            what = "unknown to the backend";
        else if (t->status != mock_task_status::completed)
            what = std::string("is ") + st::to_string(t->status);
        else if (t->output != echo_output(first + static_cast<int>(i)))
            what = "has the wrong output " + json::serialize(t->output);
        else if (runs.runs(ids[i]) != 1)
            what = "ran " + std::to_string(runs.runs(ids[i])) + " times";
        if (what.empty()) continue;
        if (++problems <= 5) out << "task " << i << " (" << ids[i] << ") " << what << "; ";
    }
    if (problems > 5) out << "and " << (problems - 5) << " more";
    return out.str();
}

/// Completion requests the backend received (every `/api/v1/tasks/...` path).
template <class Backend>
std::size_t completion_requests(const Backend& backend) {
    std::size_t n = 0;
    for (const auto& kv : backend.request_counts())
        if (kv.first.rfind(std::string(proto::path::tasks_prefix), 0) == 0) n += kv.second;
    return n;
}

/// A started worker on the default policies with an `echo` handler.
struct threaded_env {
    st::mock_backend backend;
    log_sink log;
    run_counter runs;
    std::unique_ptr<sekuire::worker> worker;

    explicit threaded_env(st::mock_backend_options o = backend_options()) : backend(std::move(o)) { backend.start(); }
    threaded_env(const threaded_env&) = delete;
    threaded_env& operator=(const threaded_env&) = delete;
    ~threaded_env() {
        // The worker first: its pooled connections would hold the backend's stop().
        worker.reset();
        backend.stop();
    }

    sekuire::worker_options options() { return worker_options_for(backend.url(), backend.create_install_token(), log); }

    sekuire::worker& make(sekuire::worker_options o) {
        worker = sekuire::create_worker(std::move(o));
        worker->on_task("echo", echo_handler(runs));
        return *worker;
    }

    /// Registers `slow`: a handler that counts its run, waits at `g`, then answers like echo.
    void add_slow_handler(const gate& g) {
        worker->on_task("slow", [this, g](const sekuire::task_context& ctx, const json::value& input) {
            runs.record(ctx.task_id);
            g.enter();
            return echo_output(input.at("n").as_int64());
        });
    }

    /// Starts the worker; returns once its task stream is open.
    void start() {
        worker->start();
        BOOST_REQUIRE_MESSAGE(eventually([&] { return worker->get_status().stream_connected; }),
                              "the worker did not connect its task stream" << log.tail());
        BOOST_REQUIRE(backend.wait_for_open_streams(1, 10s));
    }

    std::string installation_id() const { return worker->get_status().installation_id; }

    /// Queues `n` echo tasks and checks (waiting at most 60 s) that every one was
    /// completed, and ran and was reported exactly once. Returns their ids.
    std::vector<std::string> run_each_once(int n) {
        const auto ids = enqueue_echo(backend, n);
        const std::string late = wait_all(backend, ids, mock_task_status::completed, 60s);
        BOOST_REQUIRE_MESSAGE(late.empty(), late << log.tail());
        const std::string wrong = check_completed_once(backend, ids, runs);
        BOOST_TEST(wrong.empty(), wrong);
        BOOST_TEST(runs.total() == static_cast<std::size_t>(n));
        return ids;
    }
};

std::optional<std::string> error_code_of(const std::optional<st::mock_task_info>& t) {
    if (!t || !t->error) return std::nullopt;
    return t->error->code;
}

// ---- a Transport that records what goes over the wire (for the sharing test) -----------

struct exchange {
    std::string who;
    sekuire::steady_time_point at{}; // fake steady time when the request went out
    std::string path; // without the query
    int status = 0;   // 0: no HTTP answer
    std::string bearer;
};

class exchange_log {
public:
    void add(exchange e) {
        std::lock_guard<std::mutex> lock(mutex_);
        all_.push_back(std::move(e));
    }
    std::vector<exchange> all() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return all_;
    }

private:
    mutable std::mutex mutex_;
    std::vector<exchange> all_;
};

/// An `httplib_transport` that logs each exchange (who, path, status, bearer token).
class recording_transport {
public:
    recording_transport(std::string who, const std::string& url, st::fake_clock clock,
                        std::shared_ptr<exchange_log> log)
        : who_(std::move(who)), inner_(url, sekuire::transport_options{}), clock_(std::move(clock)),
          log_(std::move(log)) {}

    sekuire::http_response send(const sekuire::http_request& req, sekuire::error_code& ec) {
        const auto at = clock_.steady_now();
        sekuire::http_response r = inner_.send(req, ec);
        record(req, at, ec ? 0 : r.status);
        return r;
    }

    void stream(const sekuire::http_request& req, sekuire::stream_callbacks& cb, const sekuire::stop_token& stop,
                sekuire::error_code& ec) {
        const auto at = clock_.steady_now();
        int status = 0;
        sekuire::stream_callbacks wrapped;
        wrapped.on_response = [&](const sekuire::http_response& head) {
            status = head.status;
            return cb.on_response ? cb.on_response(head) : true;
        };
        wrapped.on_data = cb.on_data;
        inner_.stream(req, wrapped, stop, ec);
        record(req, at, status);
    }

private:
    void record(const sekuire::http_request& req, sekuire::steady_time_point at, int status) {
        exchange e;
        e.who = who_;
        e.at = at;
        e.path = req.target.substr(0, req.target.find('?'));
        e.status = status;
        if (const std::string* a = sekuire::find_header(req.headers, proto::header::authorization)) {
            const std::string prefix(proto::header::bearer_prefix);
            if (a->rfind(prefix, 0) == 0) e.bearer = a->substr(prefix.size());
        }
        log_->add(std::move(e));
    }

    std::string who_;
    sekuire::httplib_transport inner_;
    st::fake_clock clock_;
    std::shared_ptr<exchange_log> log_;
};

using fake_backend = st::basic_mock_backend<st::fake_clock>;
using shared_beacon =
    sekuire::basic_beacon<recording_transport, st::fake_clock, sekuire::memory_store, st::fixed_probe>;
using shared_worker =
    sekuire::basic_worker<recording_transport, st::fake_clock, sekuire::memory_store, sekuire::inline_executor>;

/** A beacon and a worker over one memory_store and one fake clock, against a fake-clock
    mock backend. The test drives `beacon.step()` and `worker.step()`; the worker's
    `stream_step()` runs on a thread of its own (it returns only when a connection ends).
*/
struct shared_env {
    st::fake_clock clock;
    std::shared_ptr<exchange_log> wire = std::make_shared<exchange_log>();
    fake_backend backend;
    sekuire::memory_store store;
    log_sink log;
    run_counter runs;
    std::unique_ptr<shared_beacon> beacon;
    std::unique_ptr<shared_worker> worker;
    std::atomic<bool> quit{false};
    std::thread stream_thread;

    explicit shared_env(st::mock_backend_options o) : backend(std::move(o), clock) { backend.start(); }
    shared_env(const shared_env&) = delete;
    shared_env& operator=(const shared_env&) = delete;
    ~shared_env() { shut_down(); }

    void make() {
        sekuire::beacon_options bo;
        bo.startup_jitter = std::chrono::milliseconds(0);
        bo.api_base_url = backend.url();
        bo.agent_id = agent_id;
        bo.install_token = std::string(st::mock_default_install_token);
        bo.workspace_id = workspace;
        bo.capabilities = {"echo"};
        bo.heartbeat_interval = 60s;
        bo.backoff = fast_backoff();
        bo.random = sekuire::make_random_source(7);
        bo.logger = log.handler();
        beacon = std::make_unique<shared_beacon>(bo, recording_transport("beacon", backend.url(), clock, wire), clock,
                                                 store, st::fixed_probe{});

        sekuire::worker_options wo;
        wo.startup_jitter = std::chrono::milliseconds(0);
        wo.api_base_url = backend.url();
        wo.agent_id = agent_id;
        wo.workspace_id = workspace;
        wo.heartbeat_interval = 60s;
        wo.backoff = fast_backoff();
        wo.random = sekuire::make_random_source(11);
        // Fake time runs much faster than the keep-alive comments arrive (they are written
        // within about 50 ms of real time): a long idle timeout keeps the stream open
        // while the test moves the clock by the hour.
        wo.stream_idle_timeout = 3h;
        wo.logger = log.handler();
        worker = std::make_unique<shared_worker>(wo, recording_transport("worker", backend.url(), clock, wire), clock,
                                                 store, sekuire::inline_executor{});
        worker->on_task("echo", echo_handler(runs));
    }

    void start_stream_thread() {
        stream_thread = std::thread([this] {
            while (!quit) {
                const auto next = worker->stream_step();
                // The next connection is due at `next` in fake time: the test moves the clock.
                while (!quit && clock.steady_now() < next) std::this_thread::sleep_for(1ms);
            }
        });
    }

    void shut_down() {
        quit = true;
        if (worker) worker->begin_shutdown(1s, "test over");
        if (stream_thread.joinable()) stream_thread.join();
        if (worker) worker->stop();
        if (beacon) beacon->stop();
        worker.reset();
        beacon.reset();
        backend.stop();
    }

    std::optional<sekuire::installation_credentials> stored() const {
        sekuire::error_code ec;
        return store.load(ec);
    }

    std::string installation_id() const {
        auto c = stored();
        return c ? c->installation_id : std::string();
    }

    std::int64_t backend_token_version() const {
        auto i = backend.installation(installation_id());
        return i ? i->token_version : -1;
    }

    std::size_t refresh_calls() const { return backend.request_count(proto::path::refresh(installation_id())); }

    /** Runs the beacon's and the worker's step functions in fake time for `d`, moving the
        clock to each next deadline; after each round, checks that the store holds the
        backend's newest token. Returns a description of the first problem (empty: none).
    */
    std::string drive_for(sekuire::steady_time_point::duration d, int max_rounds = 20000) {
        const auto target = clock.steady_now() + d;
        for (int round = 0; round < max_rounds; ++round) {
            const auto nb = beacon->step();
            const auto nw = worker->step();
            // (A refresh by the worker's stream thread may be between the backend's answer
            // and the store's update: a short grace.)
            const bool newest = eventually(
                [&] {
                    const auto c = stored();
                    return c && c->token_version == backend_token_version();
                },
                2s);
            if (!newest) {
                const auto c = stored();
                return c ? "the store holds token version " + std::to_string(c->token_version) +
                               " while the backend's newest is " + std::to_string(backend_token_version())
                         : std::string("the store is empty");
            }
            const auto now = clock.steady_now();
            if (now >= target) return {};
            auto next = std::min({nb, nw, target});
            if (next <= now) next = now + 1ms;
            clock.advance_to(next);
        }
        return "the step functions did not become idle within " + std::to_string(max_rounds) + " rounds";
    }

    /// Queues one echo task and waits (real time, bounded) for its completion, moving the
    /// fake clock a little meanwhile so that a due stream reconnection happens (at most
    /// `max_advance` in all: a reconnection is due within the stream's 1 s floor, and a slow
    /// run, under TSan say, must not age the tokens into a refresh nobody asked for).
    bool run_one_task(int n, std::string& id, sekuire::steady_time_point::duration max_advance = 3s) {
        st::mock_task_request r;
        r.capability = "echo";
        r.input = json::object{{"n", n}};
        id = backend.enqueue_task(std::move(r));
        const auto limit = clock.steady_now() + max_advance;
        return eventually(
            [&] {
                const auto t = backend.task(id);
                if (t && t->status == mock_task_status::completed) return true;
                if (clock.steady_now() < limit) clock.advance(5ms);
                return false;
            },
            15s);
    }

    /// Waits (real time, bounded) until the client has recorded the exchange on `path`: the
    /// backend can count a request done before the client logged its answer.
    bool recorded(const std::string& path) const {
        return eventually(
            [&] {
                for (const auto& e : wire->all())
                    if (e.path == path) return true;
                return false;
            },
            10s);
    }
};

} // namespace

BOOST_AUTO_TEST_SUITE(worker_mock)

// ---- a thousand tasks ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_thousand_tasks_each_complete_exactly_once) {
    threaded_env env;
    auto& w = env.make(env.options());
    env.start();

    const auto ids = env.run_each_once(1000);
    BOOST_TEST(env.runs.distinct() == 1000u);

    const std::string inst = env.installation_id();
    std::size_t foreign = 0, redelivered = 0, reported_twice = 0;
    for (const auto& id : ids) {
        const auto t = env.backend.task(id);
        if (t->installation_id != inst) ++foreign;
        if (t->delivery_count != 1) ++redelivered;
        if (env.backend.request_count(proto::path::complete(id)) != 1) ++reported_twice;
    }
    BOOST_TEST(foreign == 0u);
    // Without faults (and with the default 60 s redelivery timeout) every task goes out
    // once and its result is reported once.
    BOOST_TEST(redelivered == 0u);
    BOOST_TEST(reported_twice == 0u);
    BOOST_TEST(completion_requests(env.backend) == 1000u);

    const auto s = w.get_status();
    BOOST_TEST(s.received == 1000u);
    BOOST_TEST(s.completed == 1000u);
    BOOST_TEST(s.failed == 0u);
    BOOST_TEST(s.rejected == 0u);
    BOOST_TEST(s.duplicates == 0u);
    BOOST_TEST(s.results_dropped == 0u);
    BOOST_TEST(s.pending_results == 0u);
}

BOOST_AUTO_TEST_CASE(a_thousand_tasks_through_repeated_stream_cuts) {
    auto o = backend_options();
    o.redelivery_timeout = 2s;
    threaded_env env(o);
    // Six connections in a row are cut abruptly after 120 events each.
    for (int i = 0; i < 3; ++i) {
        st::mock_fault cut;
        cut.path_prefix = std::string(proto::path::installations_prefix);
        cut.cut_stream_after_events = 120;
        cut.count = 2;
        env.backend.add_fault(cut);
    }
    auto& w = env.make(env.options());
    env.start();

    env.run_each_once(1000);

    const auto s = w.get_status();
    BOOST_TEST(s.stream_connects >= 7u); // six cut connections, then one that stays
    BOOST_TEST(s.completed == 1000u);
    BOOST_TEST(s.failed == 0u);
    BOOST_TEST(s.rejected == 0u);
    BOOST_TEST(s.results_dropped == 0u);
    BOOST_TEST(s.received == 1000u + s.duplicates);
}

BOOST_AUTO_TEST_CASE(a_thousand_tasks_while_completions_get_503) {
    auto o = backend_options();
    o.redelivery_timeout = 2s;
    threaded_env env(o);
    // The first 1500 completion requests are refused with 503: every result waits in the
    // retry queue at least once, many several times.
    st::mock_fault refuse;
    refuse.path_prefix = std::string(proto::path::tasks_prefix);
    refuse.status = 503;
    refuse.count = 1500;
    env.backend.add_fault(refuse);
    auto& w = env.make(env.options());
    env.start();

    env.run_each_once(1000);
    // Every refused attempt was followed by another: none was given up.
    BOOST_TEST(completion_requests(env.backend) >= 2500u);

    BOOST_REQUIRE(eventually([&] { return w.get_status().pending_results == 0; }));
    const auto s = w.get_status();
    BOOST_TEST(s.completed == 1000u);
    BOOST_TEST(s.failed == 0u);
    BOOST_TEST(s.rejected == 0u);
    BOOST_TEST(s.results_dropped == 0u);
}

BOOST_AUTO_TEST_CASE(a_thousand_tasks_with_cuts_and_503s_together) {
    auto o = backend_options();
    o.redelivery_timeout = 1s;
    threaded_env env(o);
    st::mock_fault cut;
    cut.path_prefix = std::string(proto::path::installations_prefix);
    cut.cut_stream_after_events = 200;
    cut.count = 3;
    env.backend.add_fault(cut);
    st::mock_fault refuse;
    refuse.path_prefix = std::string(proto::path::tasks_prefix);
    refuse.status = 503;
    refuse.count = 800;
    env.backend.add_fault(refuse);
    auto& w = env.make(env.options());
    env.start();

    env.run_each_once(1000);
    BOOST_TEST(completion_requests(env.backend) >= 1800u);
    BOOST_REQUIRE(eventually([&] { return w.get_status().pending_results == 0; }));
    const auto s = w.get_status();
    BOOST_TEST(s.stream_connects >= 4u);
    BOOST_TEST(s.completed == 1000u);
    BOOST_TEST(s.results_dropped == 0u);
}

// ---- commands, revocation, policy ---------------------------------------------------------

// The kill switch while handlers run: the worker refuses what it had queued, starts
// nothing new, and reports the results of the running handlers with its last credentials
// (the store is cleared at once), which the backend takes during the shutdown timeout
// (protocol.md section 5: "results already computed are reported").
BOOST_AUTO_TEST_CASE(revocation_while_tasks_run_reports_their_results_and_starts_nothing_new) {
    threaded_env env;
    gate slow;
    const gate_guard release{slow};
    auto o = env.options();
    o.max_concurrent_handlers = 2;
    auto& w = env.make(o);
    env.add_slow_handler(slow);
    env.start();
    const std::string inst = env.installation_id();

    const auto running = enqueue_echo(env.backend, 2, 0, "slow");
    BOOST_REQUIRE(slow.wait_entered(2));
    const auto waiting = enqueue_echo(env.backend, 1, 2, "slow");
    BOOST_REQUIRE(eventually([&] { return w.get_status().queued == 1; }));

    env.backend.revoke(inst, "kill switch test", 5000);
    BOOST_REQUIRE_MESSAGE(eventually([&] { return w.get_status().revoked; }), "the worker missed the revocation");
    BOOST_TEST(w.get_status().revoked_reason == "kill switch test");
    // The task waiting in the worker's queue is rejected at once, without running.
    BOOST_TEST(env.backend.wait_for_task(waiting[0], mock_task_status::rejected, 5s));
    // A task queued after the revocation is never delivered.
    const auto after = enqueue_echo(env.backend, 1, 3);

    // The running handlers finish a moment later, well within the shutdown timeout.
    std::this_thread::sleep_for(100ms);
    slow.open();
    BOOST_REQUIRE_MESSAGE(w.wait_for(10s), "the worker did not stop after the revocation" << env.log.tail());
    const auto s = w.get_status();
    BOOST_TEST(to_string(s.state) == std::string("revoked"));
    BOOST_TEST(s.results_dropped == 0u);

    // The two running handlers finished within the shutdown timeout: their results were
    // taken. (Waited for: the worker may report `revoked` while the last result is still
    // on its way, see drain_waits_for_results_still_being_sent.) The queued task never
    // ran: it was rejected.
    BOOST_TEST(wait_all(env.backend, running, mock_task_status::completed, 5s).empty());
    for (int i = 0; i < 2; ++i)
        BOOST_TEST(env.backend.task(running[static_cast<std::size_t>(i)])->output == echo_output(i));
    const auto rejected = env.backend.task(waiting[0]);
    BOOST_TEST(st::to_string(rejected->status) == std::string("rejected"));
    BOOST_TEST(error_code_of(rejected).value_or("") == "shutting_down");
    BOOST_TEST(env.runs.runs(waiting[0]) == 0);
    const auto never = env.backend.task(after[0]);
    BOOST_TEST(st::to_string(never->status) == std::string("queued"));
    BOOST_TEST(never->delivery_count == 0);
    BOOST_TEST(env.runs.total() == 2u);
    // Nothing tried to bootstrap again.
    BOOST_TEST(env.backend.request_count(proto::path::bootstrap) == 1u);
    // The revoked credentials are gone from the store.
    sekuire::error_code ec;
    BOOST_TEST(!w.credential_store().load(ec).has_value());
}

BOOST_AUTO_TEST_CASE(terminate_command_drains) {
    std::vector<std::string> commands; // before the worker, which may call back until it is gone
    std::mutex commands_mutex;
    threaded_env env;
    gate slow;
    const gate_guard release{slow};
    auto o = env.options();
    o.max_concurrent_handlers = 2;
    auto& w = env.make(o);
    w.on_command([&](const proto::command& c) {
        std::lock_guard<std::mutex> lock(commands_mutex);
        commands.push_back(c.type_name);
    });
    env.add_slow_handler(slow);
    env.start();
    const std::string inst = env.installation_id();

    const auto ids = enqueue_echo(env.backend, 4, 0, "slow");
    BOOST_REQUIRE(slow.wait_entered(2));
    BOOST_REQUIRE(eventually([&] { return w.get_status().queued == 2; }));

    env.backend.send_command(inst, "terminate", "scale down", 10000);
    BOOST_REQUIRE(eventually([&] { return w.get_status().state == sekuire::worker_state::draining; }));
    slow.open();
    BOOST_REQUIRE_MESSAGE(w.wait_for(10s), "the worker did not stop after terminate" << env.log.tail());
    const auto s = w.get_status();
    BOOST_TEST(to_string(s.state) == std::string("stopped"));
    BOOST_TEST(!s.revoked);
    BOOST_TEST(s.results_dropped == 0u);
    {
        std::lock_guard<std::mutex> lock(commands_mutex);
        BOOST_TEST(commands == std::vector<std::string>{"terminate"});
    }

    // The two running tasks finished and were reported (waited for: see
    // drain_waits_for_results_still_being_sent); the two waiting ones were rejected
    // without running.
    BOOST_TEST(wait_all(env.backend, {ids[0], ids[1]}, mock_task_status::completed, 5s).empty());
    for (std::size_t i = 0; i < 4; ++i) {
        const auto t = env.backend.task(ids[i]);
        BOOST_TEST_REQUIRE(t.has_value());
        if (i < 2) {
            BOOST_TEST(st::to_string(t->status) == std::string("completed"));
            BOOST_TEST(t->output == echo_output(static_cast<std::int64_t>(i)));
        } else {
            BOOST_TEST(st::to_string(t->status) == std::string("rejected"));
            BOOST_TEST(error_code_of(t).value_or("") == "shutting_down");
        }
    }
    BOOST_TEST(env.runs.total() == 2u);
    // The worker said it was draining, and closed its stream: new tasks stay queued.
    const auto i = env.backend.installation(inst);
    BOOST_TEST_REQUIRE(i.has_value());
    BOOST_TEST_REQUIRE(i->worker.has_value());
    BOOST_TEST((i->worker->state == proto::worker_state::draining));
    BOOST_TEST(eventually([&] { return env.backend.open_streams(inst) == 0; }));
    const auto later = enqueue_echo(env.backend, 1, 10);
    BOOST_TEST(!env.backend.wait_for_task(later[0], mock_task_status::completed, 300ms));
    BOOST_TEST(st::to_string(env.backend.task(later[0])->status) == std::string("queued"));
}

// BUG: basic_worker::run_task() erases a finished task from `running_` before it hands
// the result to send_result(). A drain step in between (woken by another task's end, or
// by the heartbeat timer) sees no running handler, no pending result and the stream
// closed, and finishes the worker: `wait()` returns and the state is `stopped` while the
// result is still on its way. When that first attempt fails (a 503 here), the result is
// queued after the end: never retried, never counted in `results_dropped` — lost
// silently, against protocol.md section 6.2 and the promise of `stop()`.
BOOST_AUTO_TEST_CASE(drain_waits_for_results_still_being_sent) {
    threaded_env env;
    gate slow;
    const gate_guard release{slow};
    auto o = env.options();
    o.max_concurrent_handlers = 2;
    auto& w = env.make(o);
    env.add_slow_handler(slow);
    env.start();
    const auto ids = enqueue_echo(env.backend, 2, 0, "slow");
    BOOST_REQUIRE(slow.wait_entered(2));
    // The second result's first attempt takes 2 s and is refused with 503; the drain
    // timeout (10 s) leaves time for a retry.
    st::mock_fault refuse;
    refuse.path_prefix = proto::path::complete(ids[1]);
    refuse.delay = 2s;
    refuse.status = 503;
    env.backend.add_fault(refuse);

    env.backend.send_command(env.installation_id(), "terminate", "scale down", 10000);
    BOOST_REQUIRE(eventually([&] { return w.get_status().state == sekuire::worker_state::draining; }));
    slow.open();
    BOOST_REQUIRE(w.wait_for(15s));
    // Both results are reported before the worker says it stopped: nothing pending, nothing
    // dropped, both tasks completed.
    const auto s = w.get_status();
    BOOST_TEST(s.pending_results == 0u);
    BOOST_TEST(s.results_dropped == 0u);
    BOOST_TEST(st::to_string(env.backend.task(ids[0])->status) == std::string("completed"));
    BOOST_TEST(st::to_string(env.backend.task(ids[1])->status) == std::string("completed"));
    // Not even later: nobody retries the refused attempt, which waits for ever in the
    // queue of a stopped worker.
    BOOST_TEST(env.backend.wait_for_task(ids[1], mock_task_status::completed, 3s));
    BOOST_TEST(w.get_status().pending_results == 0u);
    BOOST_TEST(env.runs.total() == 2u);
}

BOOST_AUTO_TEST_CASE(pause_rejects_new_tasks_and_resume_accepts_again) {
    threaded_env env;
    auto& w = env.make(env.options());
    env.start();
    const std::string inst = env.installation_id();

    const auto before = enqueue_echo(env.backend, 3, 0);
    BOOST_REQUIRE(wait_all(env.backend, before, mock_task_status::completed, 10s).empty());

    env.backend.send_command(inst, "pause", "maintenance");
    BOOST_REQUIRE_MESSAGE(eventually([&] { return w.is_paused(); }), "the pause command was not applied");
    const auto paused = enqueue_echo(env.backend, 3, 3);
    BOOST_REQUIRE(wait_all(env.backend, paused, mock_task_status::rejected, 10s).empty());
    for (const auto& id : paused) {
        BOOST_TEST(error_code_of(env.backend.task(id)).value_or("") == "worker_paused");
        BOOST_TEST(env.runs.runs(id) == 0);
    }
    // Its worker heartbeats say so.
    BOOST_TEST(eventually([&] {
        const auto i = env.backend.installation(inst);
        return i && i->worker && i->worker->state == proto::worker_state::paused;
    }));

    env.backend.send_command(inst, "resume");
    BOOST_REQUIRE_MESSAGE(eventually([&] { return !w.is_paused(); }), "the resume command was not applied");
    const auto resumed = enqueue_echo(env.backend, 3, 6);
    BOOST_REQUIRE(wait_all(env.backend, resumed, mock_task_status::completed, 10s).empty());
    const std::string wrong = check_completed_once(env.backend, resumed, env.runs, 6);
    BOOST_TEST(wrong.empty(), wrong);
    const auto s = w.get_status();
    BOOST_TEST(s.completed == 6u);
    BOOST_TEST(s.rejected == 3u);
}

BOOST_AUTO_TEST_CASE(policy_from_the_backend_denies_capabilities_and_limits_the_rate) {
    int shell_runs = 0, other_runs = 0; // before the worker, whose handlers use them
    std::mutex m;
    threaded_env env;
    auto& w = env.make(env.options());
    w.on_task("shell:exec", [&](const sekuire::task_context&, const json::value&) {
        std::lock_guard<std::mutex> lock(m);
        ++shell_runs;
        return json::value(nullptr);
    });
    w.on_task("other", [&](const sekuire::task_context&, const json::value&) {
        std::lock_guard<std::mutex> lock(m);
        ++other_runs;
        return json::value(nullptr);
    });
    env.start();

    // Changed while the worker runs: the `policy` event makes it fetch the new policy.
    const std::string hash = env.backend.set_policy(json::parse(R"({
        "agent": {"capabilities": {"allowed_tools": ["echo", "shell:*"], "denied_tools": ["shell:exec"]}},
        "rate_limits": {"requests": {"max_per_minute": 5}}})")
                                                        .as_object());
    BOOST_REQUIRE_MESSAGE(eventually([&] { return w.get_status().policy_hash == hash; }),
                          "the worker did not take the new policy" << env.log.tail());

    const auto denied = enqueue_echo(env.backend, 1, 0, "shell:exec");
    const auto unlisted = enqueue_echo(env.backend, 1, 0, "other");
    const auto echo = enqueue_echo(env.backend, 7, 0);
    BOOST_REQUIRE(wait_all(env.backend, denied, mock_task_status::rejected, 10s).empty());
    BOOST_REQUIRE(wait_all(env.backend, unlisted, mock_task_status::rejected, 10s).empty());
    BOOST_TEST(error_code_of(env.backend.task(denied[0])).value_or("") == "capability_denied");
    BOOST_TEST(error_code_of(env.backend.task(unlisted[0])).value_or("") == "capability_denied");

    // The first five in the minute run; the rest are refused without running.
    const std::vector<std::string> first(echo.begin(), echo.begin() + 5), rest(echo.begin() + 5, echo.end());
    BOOST_REQUIRE(wait_all(env.backend, first, mock_task_status::completed, 10s).empty());
    BOOST_REQUIRE(wait_all(env.backend, rest, mock_task_status::rejected, 10s).empty());
    const std::string wrong = check_completed_once(env.backend, first, env.runs);
    BOOST_TEST(wrong.empty(), wrong);
    for (const auto& id : rest) {
        BOOST_TEST(error_code_of(env.backend.task(id)).value_or("") == "rate_limited");
        BOOST_TEST(env.runs.runs(id) == 0);
    }
    std::lock_guard<std::mutex> lock(m);
    BOOST_TEST(shell_runs == 0);
    BOOST_TEST(other_runs == 0);
}

// ---- a beacon and a worker sharing one store ------------------------------------------------

BOOST_AUTO_TEST_CASE(beacon_and_worker_share_one_store_through_refreshes) {
    // Tokens live 30 s of fake time: the beacon refreshes each a third into its life.
    // Heartbeats never carry a refreshed token here, so every new token comes from the
    // refresh endpoint (single-flight among the holders of the store).
    auto o = backend_options();
    o.token_lifetime = 30s;
    o.refresh_window = 0s;
    o.keepalive = 15000ms;
    shared_env env(o);
    // Every stream connection ends after one event: the worker reconnects for each task,
    // with whatever token the store holds then.
    st::mock_fault cut;
    cut.path_prefix = std::string(proto::path::installations_prefix);
    cut.cut_stream_after_events = 1;
    cut.count = 1000;
    env.backend.add_fault(cut);
    env.make();

    env.beacon->step(); // bootstrap and registration heartbeat
    BOOST_REQUIRE_MESSAGE(env.beacon->is_connected(), "the beacon did not connect" << env.log.tail());
    BOOST_REQUIRE(env.stored().has_value());
    const std::string inst = env.installation_id();
    const std::string refresh_path = proto::path::refresh(inst);
    env.worker->step(); // the worker takes the beacon's credentials from the store
    BOOST_TEST(env.worker->get_status().installation_id == inst);
    env.start_stream_thread();
    const auto t0 = env.clock.steady_now();

    int n = 0;
    for (int round = 0; round < 6; ++round, ++n) {
        std::string id;
        BOOST_REQUIRE_MESSAGE(env.run_one_task(n, id), "task " << n << " was not completed" << env.log.tail());
        BOOST_TEST(env.backend.task(id)->output == echo_output(n));
        const std::string problem = env.drive_for(45s);
        BOOST_REQUIRE_MESSAGE(problem.empty(), problem << env.log.tail());
    }
    const auto elapsed = env.clock.steady_now() - t0;
    const auto refreshes = env.refresh_calls();
    // One refresh per token, about every 10 s: few, and none twice for one token.
    const auto per_token = static_cast<std::size_t>(elapsed / 10s);
    BOOST_TEST(refreshes + 2 >= per_token);
    BOOST_TEST(refreshes <= per_token + 1);
    BOOST_TEST(env.stored()->token_version == static_cast<std::int64_t>(refreshes) + 1);

    // Let the token expire unseen; then the beacon and the worker step at once, on two
    // threads (and the stream thread may reconnect meanwhile): one refresh call.
    env.clock.advance(40s);
    {
        std::thread b([&] { env.beacon->step(); });
        env.worker->step();
        b.join();
    }
    BOOST_TEST(env.refresh_calls() == refreshes + 1);
    const std::string problem = env.drive_for(20s);
    BOOST_REQUIRE_MESSAGE(problem.empty(), problem << env.log.tail());
    BOOST_TEST(env.beacon->is_connected());
    std::string id;
    BOOST_REQUIRE_MESSAGE(env.run_one_task(n, id), "the task after the expiry was not completed" << env.log.tail());
    BOOST_TEST(env.backend.task(id)->output == echo_output(n));
    BOOST_TEST(env.runs.total() == static_cast<std::size_t>(n + 1));
    // Deterministic from here (issue 10, item 15): the clock no longer moves, so no token
    // ages into a refresh, and the completion is in the client's log before it is read.
    BOOST_REQUIRE(env.recorded(proto::path::complete(id)));

    // The backend records the result before its answer reaches the worker's transport,
    // which logs the exchange after that: wait for the log's record.
    BOOST_REQUIRE(eventually([&] {
        for (const auto& e : env.wire->all())
            if (e.path == proto::path::complete(id)) return true;
        return false;
    }));
    const auto wire = env.wire->all();
    const std::string newest = env.stored()->runtime_token;
    std::size_t unauthorized = 0, worker_calls = 0, beacon_calls = 0, refresh_calls = 0;
    std::vector<sekuire::steady_time_point> refresh_times;
    std::vector<std::string> stream_tokens;
    std::string last_completion_token;
    for (const auto& e : wire) {
        if (e.status == 401) {
            ++unauthorized;
            BOOST_TEST_MESSAGE("401: " << e.who << " " << e.path << " at "
                                       << std::chrono::duration_cast<std::chrono::milliseconds>(e.at - t0).count()
                                       << " ms, bearer is newest: " << (e.bearer == newest));
        }
        ++(e.who == "worker" ? worker_calls : beacon_calls);
        if (e.path == refresh_path) {
            ++refresh_calls;
            refresh_times.push_back(e.at);
        }
        if (e.path == proto::path::task_stream(inst, {}) && e.status == 200) stream_tokens.push_back(e.bearer);
        if (e.path == proto::path::complete(id)) last_completion_token = e.bearer;
    }
    BOOST_TEST(worker_calls > 0u);
    BOOST_TEST(beacon_calls > 0u);
    BOOST_TEST(refresh_calls == env.refresh_calls());
    // Two refreshes are never closer than a third of a token's life (single-flight).
    std::sort(refresh_times.begin(), refresh_times.end());
    for (std::size_t i = 1; i < refresh_times.size(); ++i)
        BOOST_TEST((refresh_times[i] - refresh_times[i - 1] >= 9s),
                   "refreshes " << i - 1 << " and " << i << " are too close");
    // No request was refused for a stale token more often than there were refreshes.
    BOOST_TEST(unauthorized <= refresh_calls);
    // The stream was reconnected with refreshed tokens; the last result went out with the
    // newest one.
    std::sort(stream_tokens.begin(), stream_tokens.end());
    stream_tokens.erase(std::unique(stream_tokens.begin(), stream_tokens.end()), stream_tokens.end());
    BOOST_TEST(stream_tokens.size() >= 4u);
    BOOST_TEST((last_completion_token == newest));
    BOOST_TEST_MESSAGE("sharing: " << refresh_calls << " refreshes over "
                                   << std::chrono::duration_cast<std::chrono::seconds>(elapsed).count()
                                   << " s of fake time, " << unauthorized << " refused requests, "
                                   << stream_tokens.size() << " stream tokens");
}

// Issue 15, item 2: the seed's manual setup, "pass the same credentialsStore to both Beacon
// and Worker", with the worker made by the factory: a token refreshed by either is used by
// both, and each token is refreshed once.
BOOST_AUTO_TEST_CASE(a_beacon_and_a_factory_worker_share_refreshes) {
    auto mo = backend_options();
    mo.token_lifetime = 3s; // refreshed a third into its life: every second
    mo.refresh_window = 0s;
    st::mock_backend backend(mo);
    backend.start();
    log_sink log;
    sekuire::credential_store store; // in memory, shared by the two
    sekuire::beacon_options bo;
    bo.api_base_url = backend.url();
    bo.agent_id = agent_id;
    bo.install_token = std::string(st::mock_default_install_token);
    bo.heartbeat_interval = 1s;
    bo.startup_jitter = 0ms;
    bo.backoff = fast_backoff();
    bo.logger = log.handler();
    bo.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; };
    sekuire::basic_beacon<sekuire::httplib_transport, sekuire::system_clock, sekuire::credential_store, st::fixed_probe> beacon(
        bo, sekuire::httplib_transport(backend.url(), bo.transport), sekuire::system_clock{}, store, st::fixed_probe{});
    beacon.start();
    BOOST_REQUIRE_MESSAGE(beacon.is_connected(), "the beacon did not connect" << log.tail());

    auto wo = worker_options_for(backend.url(), "", log);
    wo.install_token.clear();
    wo.fetch_policy = false;
    wo.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; };
    auto worker = sekuire::create_worker(wo, store);
    worker->on_task("echo", [](const sekuire::task_context&, const json::value& v) { return v; });
    worker->start();
    const auto inst = beacon.get_status().installation_id;
    const auto start = std::chrono::steady_clock::now();
    int n = 0;
    while (std::chrono::steady_clock::now() - start < 7s) {
        const auto ids = enqueue_echo(backend, 1, n++);
        BOOST_REQUIRE_MESSAGE(backend.wait_for_task(ids.front(), mock_task_status::completed, 10s),
                              "task " << n << " was not completed" << log.tail());
        std::this_thread::sleep_for(200ms);
    }
    worker->stop();
    beacon.stop();
    const auto refreshes = backend.request_count(proto::path::refresh(inst));
    const auto version = backend.installation(inst)->token_version;
    // About one refresh a second over the 7 s, and none twice for a token (single-flight
    // between the beacon and the worker).
    BOOST_TEST(refreshes >= 4u);
    BOOST_TEST(refreshes <= 10u);
    BOOST_TEST(version == static_cast<std::int64_t>(refreshes) + 1);
    BOOST_TEST(worker->get_status().completed == static_cast<std::uint64_t>(n));
    BOOST_TEST(worker->get_status().failed == 0u);
    sekuire::error_code ec;
    BOOST_TEST(store.load(ec).value_or(sekuire::installation_credentials{}).token_version == version);
}

BOOST_AUTO_TEST_SUITE_END()
