// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_BASIC_WORKER_HPP
#define SEKUIRE_BASIC_WORKER_HPP

/// @file
/// `basic_worker`: receives tasks over the Server-Sent Events task stream, runs capability
/// handlers under the policy gateway, reports results, obeys commands and the kill switch
/// (protocol.md section 6), over any Transport, Clock, CredentialStore and Executor.
///
/// This header does not include httplib; `<sekuire/worker.hpp>` adds the default policies
/// and the `sekuire::worker` typedef.

#include <sekuire/basic_beacon.hpp>
#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/detail/auth.hpp>
#include <sekuire/detail/pacing.hpp>
#include <sekuire/env.hpp>
#include <sekuire/error.hpp>
#include <sekuire/executor.hpp>
#include <sekuire/fwd.hpp>
#include <sekuire/limits.hpp>
#include <sekuire/log.hpp>
#include <sekuire/mask.hpp>
#include <sekuire/policy_gateway.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/retry.hpp>
#include <sekuire/sse.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/transport.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sekuire {

/** What a task handler knows about its task.

    `stop` fires at the task's deadline (the earlier of the task's `deadline_at` and the
    worker's handler timeout) or when the worker shuts down: a handler that runs long
    should check it and return.
*/
struct task_context {
    std::string task_id;
    std::string capability;
    std::optional<std::string> workspace_id;
    std::optional<std::string> trace_id;
    std::optional<std::string> requester_agent_id;
    std::optional<std::string> parent_task_id;
    std::optional<std::string> workflow_id;
    /// The effective deadline (wall time).
    wall_time_point deadline{};
    stop_token stop;
};

/** Thrown by a handler to fail a task with a specific error code (by default a handler
    that throws fails with `handler_error`), e.g.
    `throw sekuire::task_failure(sekuire::protocol::task_error::invalid_input, "no text")`.
*/
class task_failure : public std::runtime_error {
public:
    task_failure(protocol::task_error code, const std::string& message) : std::runtime_error(message), code_(code) {}
    protocol::task_error code() const noexcept { return code_; }

private:
    protocol::task_error code_;
};

/// A capability handler: returns the task's output, or throws to fail it.
using task_handler = std::function<boost::json::value(const task_context& ctx, const boost::json::value& input)>;

/// Receives control commands (pause, resume, terminate).
using command_handler = std::function<void(const protocol::command& cmd)>;

/// Where a worker stands.
enum class worker_state {
    idle,         ///< not started
    connecting,   ///< (re)connecting the task stream
    connected,    ///< the task stream is open
    degraded,     ///< no usable credentials; retrying
    draining,     ///< shutting down gracefully: no new tasks, finishing and reporting
    stopped,      ///< stopped
    revoked,      ///< the installation was revoked; stopped
};

/// The name of a state.
inline const char* to_string(worker_state s) noexcept {
    switch (s) {
    case worker_state::idle: return "idle";
    case worker_state::connecting: return "connecting";
    case worker_state::connected: return "connected";
    case worker_state::degraded: return "degraded";
    case worker_state::draining: return "draining";
    case worker_state::stopped: return "stopped";
    case worker_state::revoked: return "revoked";
    }
    return "idle";
}

/// A snapshot of a worker. Never holds a token in full.
struct worker_status {
    worker_state state = worker_state::idle;
    bool paused = false;
    bool revoked = false;
    std::string revoked_reason;
    std::string installation_id;
    /// The runtime token, masked.
    std::string runtime_token;
    /// True when the credentials in use came from the environment.
    bool recovered_from_env = false;
    bool stream_connected = false;
    std::uint64_t stream_connects = 0;
    std::string last_event_id;
    std::size_t in_flight = 0;
    std::size_t queued = 0;
    std::uint64_t received = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t completed = 0;
    std::uint64_t failed = 0;
    std::uint64_t rejected = 0;
    /// Results waiting to be (re)sent.
    std::size_t pending_results = 0;
    /// Results given up (unknown task, permanent refusal, or still unsent at the end of the
    /// drain); each is logged with its task id.
    std::uint64_t results_dropped = 0;
    std::string policy_hash;
    std::string last_error;
    error_code last_error_code;
};

/// A one-line summary of a worker's status, for logs and consoles (tokens masked).
inline std::string to_string(const worker_status& s) {
    std::string out = "state=";
    out += to_string(s.state);
    if (!s.installation_id.empty()) out += " installation=" + s.installation_id;
    out += " stream=";
    out += s.stream_connected ? "open" : "closed";
    out += " in_flight=" + std::to_string(s.in_flight) + " queued=" + std::to_string(s.queued);
    out += " completed=" + std::to_string(s.completed) + " failed=" + std::to_string(s.failed) +
           " rejected=" + std::to_string(s.rejected);
    if (s.pending_results) out += " pending_results=" + std::to_string(s.pending_results);
    if (s.results_dropped) out += " results_dropped=" + std::to_string(s.results_dropped);
    if (s.paused) out += " paused=true";
    if (s.revoked) out += " revoked=\"" + s.revoked_reason + "\"";
    if (!s.policy_hash.empty()) out += " policy=" + s.policy_hash;
    if (!s.last_error.empty()) out += " last_error=\"" + s.last_error + "\"";
    return out;
}

/** Options of a worker; the names follow the TypeScript SDK's `createWorker` options in
    C++ style.
*/
struct worker_options {
    std::string api_base_url{protocol::default_api_url};
    std::string agent_id;
    /// Credentials, tried in the order of protocol.md section 4: runtime token (or
    /// `token_provider`, or the store), then installation id + refresh token, then the
    /// install token.
    std::string install_token;
    std::string runtime_token;
    std::string installation_id;
    std::string refresh_token;
    /// Whether the recovery credentials came from the environment (set by `from_env()` and
    /// by the lookup of `environment`).
    bool recovered_from_env = false;
    /// Where recovery credentials are looked up when the options give none (no installation
    /// id, runtime or refresh token, nor a `token_provider`): `SEKUIRE_INSTALLATION_ID`,
    /// `SEKUIRE_REFRESH_TOKEN`, `SEKUIRE_RUNTIME_TOKEN`. Empty: the process environment.
    env_lookup environment;
    /// Supplies the runtime token for each request (overrides the stored one).
    std::function<std::optional<std::string>()> token_provider;
    /// The platform sent when this worker bootstraps on its own with the install token
    /// (protocol.md section 7). `create_worker()` fills it with `auto_probe` when unset;
    /// a `basic_worker` does not probe, and sends `bare_metal` with nothing else.
    std::optional<platform_info> platform;
    /// The workspace, for fetching the active policy.
    std::string workspace_id;
    /// Capabilities offered on the stream; empty: the capabilities with a handler.
    std::vector<std::string> capabilities;
    /// Interval of worker heartbeats (protocol.md section 6.3).
    std::chrono::milliseconds heartbeat_interval{protocol::timing::default_worker_heartbeat_interval};
    /// Enforced before handlers run; share one with the SDK to share policy state.
    policy_gateway gateway;
    /// Fetch the workspace's active policy at start and when its hash changes.
    bool fetch_policy = true;
    /// Handlers running at once; further tasks wait in a queue of `max_queued_tasks`.
    std::size_t max_concurrent_handlers = 4;
    std::size_t max_queued_tasks = 10000;
    /// Results waiting for a retry (the backend slow or down). At this many, new tasks are
    /// refused (`rate_limited`) and further rejections are not kept (see `results_dropped`).
    std::size_t max_pending_results = 10000;
    /// The longest a handler may run (a task's own `deadline_at` may be earlier).
    std::chrono::milliseconds handler_timeout{std::chrono::minutes(5)};
    /// How long `stop()` waits for in-flight handlers and unsent results.
    std::chrono::milliseconds drain_timeout{std::chrono::seconds(30)};
    std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};
    /// Silence on the task stream after which it is reconnected.
    std::chrono::milliseconds stream_idle_timeout{protocol::timing::stream_idle_timeout};
    /// How long `start()` waits for the first authentication.
    std::chrono::milliseconds start_timeout{std::chrono::seconds(15)};
    /// The first authentication and stream connection wait a random time in
    /// [0, startup_jitter), so that a fleet restarted together does not arrive together
    /// (also `SEKUIRE_STARTUP_JITTER`, seconds). Workers created by an SDK take none (its
    /// beacon spread the start already).
    std::chrono::milliseconds startup_jitter{std::chrono::seconds(2)};
    backoff_options backoff;
    random_source random;
    log_handler logger;
    command_handler on_command;
    std::function<void(const revocation_info&)> on_revoked;
    /// Settings of the default transport, and the default store's file.
    transport_options transport;
    std::string credentials_file;

    /// Options from the `SEKUIRE_*` environment (protocol.md section 8).
    static worker_options from_env() { return from_env(process_env()); }
    static worker_options from_env(const env_lookup& lookup) {
        worker_options o;
        const env_settings e = read_env(lookup);
        detail::apply_common_env(e, o);
        o.recovered_from_env = e.credentials().has_value();
        o.environment = lookup;
        return o;
    }
};

/** Checks every duration and size option of `o` against `sekuire::limits` (see
    `validate(const beacon_options&, error_code&)`). Returns an empty string when all are
    valid; else sets `ec` to `errc::invalid_option` and returns a message naming the first
    option at fault, its range and its value.
*/
inline std::string validate(const worker_options& o, error_code& ec) {
    ec = {};
    std::string what;
    const char* w = "worker";
    detail::check_option(w, "heartbeat_interval", o.heartbeat_interval, limits::worker_heartbeat_interval, ec, what);
    detail::check_option(w, "max_concurrent_handlers", o.max_concurrent_handlers, limits::max_concurrent_handlers, ec,
                         what);
    detail::check_option(w, "max_queued_tasks", o.max_queued_tasks, limits::max_queued_tasks, ec, what);
    detail::check_option(w, "max_pending_results", o.max_pending_results, limits::max_pending_results, ec, what);
    detail::check_option(w, "handler_timeout", o.handler_timeout, limits::handler_timeout, ec, what);
    detail::check_option(w, "drain_timeout", o.drain_timeout, limits::drain_timeout, ec, what);
    detail::check_option(w, "request_timeout", o.request_timeout, limits::request_timeout, ec, what);
    detail::check_option(w, "stream_idle_timeout", o.stream_idle_timeout, limits::stream_idle_timeout, ec, what);
    detail::check_option(w, "start_timeout", o.start_timeout, limits::start_timeout, ec, what);
    detail::check_option(w, "startup_jitter", o.startup_jitter, limits::startup_jitter, ec, what);
    detail::check_backoff(w, o.backoff, ec, what);
    detail::check_transport_options(w, o.transport, ec, what);
    return what;
}

namespace detail {
/// Validates `o` (throwing `sekuire::error` with `errc::invalid_option`) and completes its
/// recovery credentials from the environment when it names none.
inline worker_options prepare(worker_options o) {
    error_code ec;
    const std::string what = validate(o, ec);
    throw_invalid_option(ec, what);
    if (!o.token_provider) recover_from_env(o);
    return o;
}
} // namespace detail

/** The TaskWorker: receives tasks on the task stream, runs the handler registered for each
    task's capability, and reports every result.

    @tparam Transport a Transport; @tparam Clock a Clock; @tparam CredentialStore a
    CredentialStore (share one with a beacon: a token refreshed by either is used by both);
    @tparam Executor an Executor (`thread_pool_executor` by default, `inline_executor` for
    deterministic tests).

    Work runs in two step functions: `step()` (heartbeats, result retries, handler
    deadlines, the stream's idle watchdog, policy fetches, the drain) and `stream_step()`
    (one connection of the task stream, read until it ends). `start()` runs each on its own
    thread; tests call them directly.

    @par Thread Safety
    `on_task()`, `on_command()`, `get_status()`, `is_paused()`, `metrics()`,
    `apply_command()`, `apply_revocation()` and `begin_shutdown()` are safe from any
    thread. `start()` and `stop()` must not race each other. Without `start()`, `step()` and
    `stream_step()` may run on two threads, but each on one at a time.
*/
template <class Transport, class Clock, class CredentialStore, class Executor>
class basic_worker {
    static_assert(check_transport<Transport>::value, "");
    static_assert(check_clock<Clock>::value, "");
    static_assert(check_credential_store<CredentialStore>::value, "");
    static_assert(check_executor<Executor>::value, "");

public:
    using transport_type = Transport;
    using clock_type = Clock;
    using credential_store_type = CredentialStore;
    using executor_type = Executor;

    /// A worker whose policies are built from the options (see `basic_beacon`).
    /// (A template only so that an explicit instantiation needs no default-constructible
    /// policies.)
    template <class Options = worker_options, class = std::enable_if_t<std::is_convertible<Options, worker_options>::value>>
    explicit basic_worker(Options options) : basic_worker(prepared{}, detail::prepare(std::move(options))) {}

    /** A worker over the given policies.

        @throws sekuire::error with `errc::invalid_option` when an option is out of range
        (see `validate(const worker_options&, error_code&)`), or when a runtime token (or a
        `token_provider`) is the only credential and nothing names the installation: no
        installation id in the options or the environment, none in the store, no refresh
        or install token.
    */
    basic_worker(worker_options options, Transport transport, Clock clock = Clock(),
                 CredentialStore store = CredentialStore(), Executor executor = Executor())
        : options_(detail::prepare(std::move(options))), transport_(std::move(transport)), clock_(std::move(clock)),
          store_(std::move(store)), executor_(std::move(executor)),
          random_(options_.random ? options_.random : default_random_source()) {
        refuse_a_runtime_token_alone();
        stream_backoff_.set_options(options_.backoff);
        session_backoff_.set_options(options_.backoff);
    }

    basic_worker(const basic_worker&) = delete;
    basic_worker& operator=(const basic_worker&) = delete;

private:
    struct prepared {};
    // Options already checked: the policies are built from them only once they are valid.
    // (A template, as the options-only constructor is.)
    template <class Options>
    basic_worker(prepared, const Options& options)
        : basic_worker(options, detail::make_transport<Transport>(options.api_base_url, options.transport), Clock(),
                       detail::make_store<CredentialStore>(options.credentials_file), make_executor(options)) {}

public:

    /// Stops the worker (see `stop()`).
    ~basic_worker() {
        stop();
        // Handlers under way use this object: wait for them (their stop tokens have fired).
        gate_->close_and_wait();
    }

    /// Registers the handler of `capability` (replacing an earlier one). Thread-safe.
    void on_task(std::string capability, task_handler handler) {
        std::lock_guard<std::mutex> lock(mutex_);
        handlers_[std::move(capability)] = std::move(handler);
    }

    /// Registers a command callback, called once per command id. Thread-safe.
    void on_command(command_handler handler) {
        std::lock_guard<std::mutex> lock(mutex_);
        command_handler_ = std::move(handler);
    }

    /** Starts the worker: authenticates (waiting at most `start_timeout`), then runs the
        control loop and the task stream on two threads. Fails with `already_started`, or
        `shutting_down` for a worker already stopped.
        Without usable credentials the worker keeps retrying in the background (see
        `get_status()`).
    */
    void start(error_code& ec) {
        ec = {};
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (finished_) { // stopped before it was started (its SDK shut down, say)
                ec = errc::shutting_down;
                return;
            }
            if (started_) {
                ec = errc::already_started;
                return;
            }
            started_ = true;
            threaded_ = true;
        }
        control_thread_ = std::thread([this] { loop([this] { return step(); }, control_cv_, control_wake_); });
        std::unique_lock<std::mutex> lock(mutex_);
        start_cv_.wait_for(lock, options_.start_timeout, [&] { return first_step_done_; });
        lock.unlock();
        stream_thread_ = std::thread([this] { loop([this] { return stream_step(); }, stream_cv_, stream_wake_); });
    }

    /// As `start(error_code&)`, throwing `sekuire::error`.
    void start() {
        error_code ec;
        start(ec);
        detail::throw_if(ec, "worker start");
    }

    /** Stops gracefully: no new tasks; in-flight handlers finish (their stop tokens fire
        when `drain_timeout` runs out) and their results, and any still unsent, are reported
        within `drain_timeout`; then the threads end. Never throws.

        Without `start()` (a worker driven by its step functions), `stop()` does not wait:
        it runs what is due now, and what is still pending is given up with a log line.
    */
    void stop() noexcept {
        try {
            if (active_ == this) {
                // From a callback or a handler of this worker: waiting here would wait for
                // the very thread (or handler) that asked. Start the drain and return;
                // `wait()`, a later `stop()` from elsewhere, or the destructor ends it.
                begin_shutdown(options_.drain_timeout, "stopping");
                return;
            }
            {
                std::unique_lock<std::mutex> lock(mutex_);
                if (!threaded_ && !first_step_done_ && !finished_) {
                    // Never started nor stepped: nothing to drain, nothing to tell anyone.
                    lock.unlock();
                    finish(false);
                    return;
                }
            }
            begin_shutdown(options_.drain_timeout, "stopping");
            if (threaded_) {
                if (control_thread_.joinable()) control_thread_.join();
                {
                    std::lock_guard<std::mutex> lock(mutex_);
                    quit_ = true;
                }
                wake_all();
                if (stream_thread_.joinable()) stream_thread_.join();
            } else {
                for (int i = 0; i < 64 && !finished(); ++i) {
                    const steady_time_point next = step();
                    if (next > clock_.steady_now()) break;
                }
                if (!finished()) finish(true);
            }
        } catch (...) {
        }
    }

    /// Blocks until the worker has stopped (after `stop()`, a terminate command or a
    /// revocation). Real time: for programs, not for fake-clock tests.
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        finished_cv_.wait(lock, [&] { return finished_; });
    }

    /// As `wait()`, for at most `timeout` of real time; true when stopped.
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> timeout) {
        std::unique_lock<std::mutex> lock(mutex_);
        return finished_cv_.wait_for(lock, timeout, [&] { return finished_; });
    }

    /// Whether a pause command is in force.
    bool is_paused() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return paused_;
    }

    /** Pauses (`true`) or resumes (`false`) the worker as a pause or resume command would
        (a paused worker refuses new tasks with `worker_paused` and keeps heartbeating),
        without calling the command callbacks. A later command overrides it. Thread-safe.
    */
    void set_paused(bool paused) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (paused_ == paused) return;
            paused_ = paused;
        }
        log(log_level::info, paused ? "paused" : "resumed");
        wake_all();
    }

    /// A snapshot of the status. Thread-safe.
    worker_status get_status() const {
        std::lock_guard<std::mutex> lock(mutex_);
        worker_status s = status_;
        s.paused = paused_;
        s.in_flight = running_.size();
        s.queued = queued_.size();
        s.pending_results = results_.size();
        s.stream_connected = stream_open_;
        s.last_event_id = last_event_id_;
        s.policy_hash = options_.gateway.policy_hash();
        s.state = derive_state();
        return s;
    }

    /// Metrics for a beacon's heartbeat: tasks handled, errors, average handler latency.
    protocol::heartbeat_metrics metrics() const {
        std::lock_guard<std::mutex> lock(mutex_);
        protocol::heartbeat_metrics m;
        m.requests_handled = static_cast<std::int64_t>(status_.completed + status_.failed);
        m.errors = static_cast<std::int64_t>(status_.failed + status_.rejected);
        const std::uint64_t n = status_.completed + status_.failed;
        m.avg_latency_ms = n ? static_cast<std::int64_t>(latency_total_ms_ / n) : 0;
        return m;
    }

    /// True when the calling thread is running one of this worker's steps, callbacks or
    /// handlers (where waiting for the worker to stop would wait for itself).
    bool in_own_context() const noexcept { return active_ == this; }

    /// Applies a command that arrived another way (a beacon's heartbeat); each command id
    /// acts once. Thread-safe.
    void apply_command(const protocol::command& cmd) { handle_command(cmd); }

    /// Applies a revocation that arrived another way (a beacon's heartbeat). Thread-safe.
    void apply_revocation(const protocol::revocation& r) { handle_revocation(r); }

    /// Tells the worker the backend's active policy hash seen elsewhere (a beacon's
    /// heartbeat); the policy is fetched again when it changed. Thread-safe.
    void apply_policy_hash(const std::string& hash) {
        if (options_.gateway.on_heartbeat_response(hash)) {
            policy_fetch_due_ = true;
            wake_control();
        }
    }

    /** Starts the graceful shutdown of protocol.md section 5 without waiting: no new tasks,
        in-flight handlers get until `timeout`, results are reported. During a drain already
        under way, a shorter `timeout` (a revocation's) brings its end forward. Makes no
        network call on the calling thread. Thread-safe.
    */
    void begin_shutdown(std::chrono::milliseconds timeout, const std::string& why) {
        timeout = std::clamp(timeout, std::chrono::milliseconds(0), protocol::timing::max_shutdown_timeout);
        std::vector<protocol::task> rejected;
        std::shared_ptr<stop_source> stream_stop;
        bool first = false, shortened = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (finished_) return;
            const steady_time_point deadline = clock_.steady_now() + timeout;
            if (shutting_down_) {
                shortened = deadline < drain_deadline_;
                if (shortened) drain_deadline_ = deadline;
            } else {
                first = true;
                shutting_down_ = true;
                heartbeat_now_ = true;
                drain_deadline_ = deadline;
                rejected.assign(queued_.begin(), queued_.end());
                queued_.clear();
                stream_stop = stream_stop_;
            }
        }
        if (!first) {
            if (shortened) {
                log(log_level::info, "the drain now ends in " + std::to_string(timeout.count()) + " ms (" + why + ")");
                wake_all();
            }
            return;
        }
        log(log_level::info, "shutting down (" + why + ")");
        if (stream_stop) stream_stop->request_stop();
        // The control step reports these (due at once): no network call here.
        for (auto& t : rejected)
            queue_result(t, protocol::task_status::rejected, {},
                         protocol::completion_error{protocol::task_error::shutting_down, "the worker is shutting down"}, 0);
        wake_all();
    }

    /** Does the control work due now (authentication, worker heartbeats, policy fetches,
        result retries, handler deadlines, the stream's idle watchdog, the drain) and
        returns the next deadline. Never throws.
    */
    steady_time_point step() noexcept {
        const active_scope active(this);
        steady_time_point next = steady_time_point::max();
        try {
            next = control_step(clock_.steady_now());
        } catch (const std::exception& e) {
            set_error(errc::invalid_value, std::string("internal error: ") + e.what());
            next = clock_.steady_now() + std::chrono::seconds(1);
        } catch (...) {
            next = clock_.steady_now() + std::chrono::seconds(1);
        }
        {
            // The first step is done once it got past the startup jitter.
            std::lock_guard<std::mutex> lock(mutex_);
            if (!first_step_done_ && start_at_ && clock_.steady_now() >= *start_at_) {
                first_step_done_ = true;
                start_cv_.notify_all();
            }
        }
        return next;
    }

    /** Opens the task stream when a connection is due and reads it until it ends (the
        backend closes it, it fails, it falls silent, or the worker shuts down), handling
        its events; returns when the next connection is due. Never throws.
    */
    steady_time_point stream_step() noexcept {
        const active_scope active(this);
        try {
            return stream_once(clock_.steady_now());
        } catch (const std::exception& e) {
            set_error(errc::invalid_value, std::string("internal error: ") + e.what());
        } catch (...) {
        }
        return clock_.steady_now() + std::chrono::seconds(1);
    }

    const worker_options& options() const noexcept { return options_; }
    policy_gateway& gateway() noexcept { return options_.gateway; }
    Transport& transport() noexcept { return transport_; }
    Clock& clock() noexcept { return clock_; }
    CredentialStore& credential_store() noexcept { return store_; }

private:
    // The worker whose callback or handler this thread is running (nested scopes restore
    // the outer one): stop() from there must not wait for itself.
    inline static thread_local const void* active_ = nullptr;
    struct active_scope {
        const void* outer;
        explicit active_scope(const void* w) noexcept : outer(active_) { active_ = w; }
        ~active_scope() { active_ = outer; }
        active_scope(const active_scope&) = delete;
        active_scope& operator=(const active_scope&) = delete;
    };

    struct running_task {
        protocol::task task;
        std::shared_ptr<stop_source> stop = std::make_shared<stop_source>();
        steady_time_point started_at{};
        steady_time_point deadline{};
        bool abandoned = false; // timed out or given up: its result is already decided
    };

    struct pending_result {
        std::string task_id;
        protocol::completion_request body;
        steady_time_point next_try{};
        backoff retry;
    };

    struct seen_task {
        bool done = false;
        bool reported = false; // the backend has the result: it is not kept
        std::optional<protocol::completion_request> result;
    };

    // Counts the handler runs under way; once closed, no run starts.
    struct run_gate {
        std::mutex mutex;
        std::condition_variable idle;
        std::size_t inside = 0;
        bool closed = false;
        bool enter() {
            std::lock_guard<std::mutex> lock(mutex);
            if (closed) return false;
            ++inside;
            return true;
        }
        void leave() {
            std::lock_guard<std::mutex> lock(mutex);
            if (--inside == 0) idle.notify_all();
        }
        void close_and_wait() {
            std::unique_lock<std::mutex> lock(mutex);
            closed = true;
            idle.wait(lock, [&] { return inside == 0; });
        }
    };

    // A template: only the options-only constructor needs it.
    template <class E = Executor>
    static E make_executor(const worker_options& o) {
        if constexpr (std::is_constructible<E, std::size_t>::value) {
            return E(o.max_concurrent_handlers);
        } else {
            return E();
        }
    }

    // ---- threads -----------------------------------------------------------------------

    template <class Step>
    void loop(Step step_fn, std::condition_variable& cv, bool& wake) noexcept {
        for (;;) {
            const steady_time_point next = step_fn();
            std::unique_lock<std::mutex> lock(mutex_);
            if (quit_ || (finished_ && &cv == &control_cv_)) break;
            try {
                clock_.wait_until(lock, cv, next, [&] { return quit_ || wake; });
            } catch (...) {
                break;
            }
            wake = false;
            if (quit_) break;
        }
    }

    void wake_all() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            control_wake_ = true;
            stream_wake_ = true;
        }
        control_cv_.notify_all();
        stream_cv_.notify_all();
    }

    void wake_control() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            control_wake_ = true;
        }
        control_cv_.notify_all();
    }

    bool finished() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return finished_;
    }

    // ---- authentication ----------------------------------------------------------------

    // The stream's path names the installation, which a runtime token alone does not
    // (tokens are opaque: protocol.md section 0). Unless the store already holds it, or an
    // install token can make one, say at once what else to give (docs/protocol.md).
    void refuse_a_runtime_token_alone() {
        const auto& o = options_;
        if (o.runtime_token.empty() && !o.token_provider) return;
        if (!o.installation_id.empty() || !o.refresh_token.empty() || !o.install_token.empty()) return;
        error_code ec;
        const std::optional<installation_credentials> stored = store_.load(ec);
        if (!ec && stored && !stored->installation_id.empty()) return;
        throw error(errc::invalid_option,
                    std::string("worker: a runtime token") + (o.token_provider ? " (from token_provider)" : "") +
                        " alone does not name the installation whose task stream to open; give installation_id "
                        "(SEKUIRE_INSTALLATION_ID) with it, or a credential store that holds the installation (share "
                        "the beacon's), or an install token");
    }

    /// The credentials to call with, authenticating when needed (protocol.md section 4,
    /// TaskWorker order). Serialised among this worker's threads; refreshes are
    /// single-flight among all holders of the store.
    std::optional<installation_credentials> session(error_code& ec) {
        std::optional<protocol::revocation> revoked;
        std::optional<installation_credentials> c;
        {
            std::lock_guard<std::mutex> auth(auth_mutex_);
            c = session_locked(ec, revoked);
        }
        // Outside auth_mutex_: the shutdown it starts reports results, which authenticate.
        if (revoked) handle_revocation(*revoked);
        return c;
    }

    std::optional<installation_credentials> session_locked(error_code& ec, std::optional<protocol::revocation>& revoked) {
        ec = {};
        {
            // Revoked: the store no longer holds the credentials (they were removed), but the
            // results computed before the kill switch are still reported with the last ones.
            std::lock_guard<std::mutex> lock(mutex_);
            if (revoked_) {
                if (last_session_) return last_session_;
                ec = errc::revoked;
                return std::nullopt;
            }
        }
        const wall_time_point now = backend_now();
        std::optional<installation_credentials> c = store_.load(ec);
        if (ec) {
            set_error(ec, "the credential store cannot be read: " + ec.message());
            return std::nullopt;
        }
        {
            error_code save_ec;
            c = unsaved_.reconcile(store_, std::move(c), save_ec);
            if (save_ec)
                log(log_level::error, "the refreshed credentials still cannot be saved (" + save_ec.message() +
                                          "); they stay in memory");
        }
        if (!c || c->installation_id.empty()) {
            if (!options_.installation_id.empty() &&
                (!options_.runtime_token.empty() || !options_.refresh_token.empty() || options_.token_provider)) {
                installation_credentials seeded;
                seeded.installation_id = options_.installation_id;
                seeded.runtime_token = options_.runtime_token;
                seeded.refresh_token = options_.refresh_token;
                store_.save(seeded, ec);
                if (ec) set_error(ec, "the credential store cannot be written: " + ec.message());
                ec = {};
                c = seeded;
                std::lock_guard<std::mutex> lock(mutex_);
                status_.recovered_from_env = options_.recovered_from_env;
            } else if (!options_.install_token.empty() && !install_token_spent_) {
                c = bootstrap(ec);
                if (!c) return std::nullopt;
            } else {
                // Nothing (left) to authenticate with. When the install token was refused,
                // that is the cause to report, not the absence of credentials.
                if (spent_code_) {
                    ec = spent_code_;
                    set_error(ec, spent_reason_ + "; no other credentials to try");
                } else {
                    ec = errc::no_credentials;
                    set_error(ec, ec.message());
                }
                std::lock_guard<std::mutex> lock(mutex_);
                credentials_exhausted_ = true;
                return std::nullopt;
            }
        }
        if (c->runtime_token.empty() && !options_.runtime_token.empty() &&
            (options_.installation_id.empty() || options_.installation_id == c->installation_id)) {
            // The store names the installation; the runtime token came with the options.
            c->runtime_token = options_.runtime_token;
        }
        if (options_.token_provider) {
            try {
                if (auto t = options_.token_provider()) {
                    c->runtime_token = *t;
                    c->runtime_token_expires_at.reset();
                    c->runtime_token_issued_at.reset();
                }
            } catch (...) {
                log(log_level::warning, "the token provider threw");
            }
        }
        if (detail::token_expired(*c, now) && !c->refresh_token.empty()) {
            const detail::refresh_result r = refresh(c->runtime_token);
            if (!handle_refresh(r, ec, &revoked)) return std::nullopt;
            c = r.credentials;
        }
        if (!c || c->runtime_token.empty()) {
            ec = errc::no_credentials;
            set_error(ec, "no runtime token and no way to get one");
            return std::nullopt;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            status_.installation_id = c->installation_id;
            status_.runtime_token = mask_token(c->runtime_token);
            last_session_ = c;
            credentials_exhausted_ = false;
        }
        return c;
    }

    std::optional<installation_credentials> bootstrap(error_code& ec) {
        if (options_.agent_id.empty()) {
            install_token_spent_ = true;
            ec = errc::invalid_option;
            set_error(ec, "an agent id is required to bootstrap with an install token");
            return std::nullopt;
        }
        // Never spend the single-use install token on credentials the store cannot keep.
        detail::check_writable(store_, ec);
        if (ec) {
            const std::string where = detail::describe_store(store_);
            set_error(ec, "the credential store" + (where.empty() ? std::string() : " (" + where + ")") +
                              " cannot be written, so the bootstrap was not attempted: " + ec.message());
            return std::nullopt;
        }
        protocol::bootstrap_request body;
        body.install_token = options_.install_token;
        if (options_.platform) body.platform = *options_.platform;
        body.agent_id = options_.agent_id;
        body.capabilities = capabilities();
        const auto r = detail::bootstrap_install(transport_, body, options_.request_timeout, backend_now());
        observe(r.server_time);
        if (r.status != detail::bootstrap_status::ok) {
            ec = r.error;
            const std::string& m = r.error_message;
            const std::string why = "bootstrap with the install token failed: " + ec.message() + (m.empty() ? "" : " (" + m + ")");
            if (r.status == detail::bootstrap_status::permanent) {
                install_token_spent_ = true;
                spent_code_ = ec;
                spent_reason_ = why;
            }
            set_error(ec, why);
            return std::nullopt;
        }
        installation_credentials c =
            detail::credentials_from(r.response, r.server_time ? *r.server_time : backend_now());
        store_.save(c, ec);
        if (ec) set_error(ec, "the credential store cannot be written: " + ec.message());
        ec = {};
        log(log_level::info, "bootstrapped installation " + c.installation_id + " (runtime token " +
                                 mask_token(c.runtime_token) + ")");
        return c;
    }

    // False when the refresh did not give usable credentials (`ec` says why). A revocation
    // is handed to `revoked` when given (the caller acts on it later), else acted on here.
    bool handle_refresh(const detail::refresh_result& r, error_code& ec,
                        std::optional<protocol::revocation>* revoked = nullptr) {
        switch (r.status) {
        case detail::refresh_status::refreshed:
            if (r.called) log(log_level::info, "runtime token refreshed (" + mask_token(r.credentials->runtime_token) + ")");
            return r.credentials.has_value();
        case detail::refresh_status::revoked: {
            ec = errc::revoked;
            protocol::revocation rv{"installation revoked (refresh refused)", std::nullopt};
            if (revoked)
                *revoked = std::move(rv);
            else
                handle_revocation(rv);
            return false;
        }
        case detail::refresh_status::gone: {
            ec = errc::installation_not_found;
            error_code ignored;
            store_.clear(ignored);
            set_error(ec, "the backend does not know the installation; the credentials were dropped");
            return false;
        }
        default:
            ec = r.error ? r.error : error_code(errc::invalid_refresh_token);
            set_error(ec, "token refresh failed: " + ec.message());
            return false;
        }
    }

    detail::refresh_result refresh(const std::string& stale_token) {
        detail::refresh_result r = detail::refresh_single_flight(transport_, store_, stale_token, backend_now(),
                                                                 options_.request_timeout, &unsaved_);
        observe(r.server_time);
        if (r.persist_error)
            log(log_level::error, "the refreshed credentials could not be saved (" + r.persist_error.message() +
                                      "); they are kept in memory and saved again at each use");
        return r;
    }

    /// The backend's clock (token expiry and task deadlines are in it).
    wall_time_point backend_now() { return skew_.now(clock_.wall_now()); }

    void observe(const std::optional<wall_time_point>& server_time) {
        if (skew_.observe(server_time, clock_.wall_now()))
            log(log_level::warning, skew_.describe_offset() + "; token expiry and task deadlines are judged on the backend's clock");
    }

    /// One authenticated exchange: a 401 refreshes the token (single-flight) and retries
    /// once; a revocation (403 installation_revoked) starts the shutdown.
    detail::http_outcome authed(http_request req, bool installation_path) {
        error_code ec;
        auto c = session(ec);
        if (!c) {
            detail::http_outcome out;
            out.error = ec;
            out.cls = ec == errc::revoked ? protocol::status_class::revoked : protocol::status_class::transient;
            return out;
        }
        detail::set_bearer(req, c->runtime_token);
        detail::http_outcome out = detail::perform(transport_, req, true, installation_path, backend_now());
        observe(out.server_time);
        if (out.cls == protocol::status_class::token_rejected) {
            const auto r = refresh(c->runtime_token);
            error_code rec;
            if (handle_refresh(r, rec)) {
                detail::set_bearer(req, r.credentials->runtime_token);
                out = detail::perform(transport_, req, true, installation_path, backend_now());
                observe(out.server_time);
            }
        }
        if (out.cls == protocol::status_class::revoked)
            handle_revocation(protocol::revocation{protocol::error_message_of(out.response.body), std::nullopt});
        return out;
    }

    std::vector<std::string> capabilities() const {
        if (!options_.capabilities.empty()) return options_.capabilities;
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<std::string> caps;
        for (const auto& kv : handlers_) caps.push_back(kv.first);
        return caps;
    }

    // ---- the control step --------------------------------------------------------------

    steady_time_point control_step(steady_time_point now) {
        steady_time_point next = steady_time_point::max();
        bool draining = false, revoked = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (finished_) return steady_time_point::max();
            draining = shutting_down_;
            revoked = revoked_;
        }
        if (!draining && !session_ready_) {
            if (now < start_at(now)) return start_at(now);
            if (now < session_retry_at_) return session_retry_at_;
            error_code ec;
            if (session(ec)) {
                session_ready_ = true;
                session_backoff_.reset();
            } else if (!draining) {
                const auto delay = session_backoff_.next(random_);
                session_retry_at_ = std::max(now, clock_.steady_now()) + delay; // from the failure
                return session_retry_at_;
            }
        }
        if (!draining && options_.fetch_policy && policy_fetch_due_ && now >= policy_retry_at_) fetch_policy(now);
        if (!draining) dispatch(); // tasks left queued by an executor that refused them
        // Heartbeats go on while draining (saying so, at once when the drain begins), but
        // never after a revocation (also one found earlier in this step).
        {
            std::lock_guard<std::mutex> lock(mutex_);
            revoked = revoked_;
        }
        if (!revoked && (now >= next_heartbeat_at_ || heartbeat_now_.exchange(false))) send_worker_heartbeat(now);
        check_deadlines(now);
        check_stream_idle(now);
        flush_results(now, draining);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            draining = shutting_down_;
            revoked = revoked_;
        }
        if (!revoked) next = std::min(next, next_heartbeat_at_);
        if (draining) {
            if (drain_step(now)) return steady_time_point::max();
            // Past its deadline the drain waits only for the stream to close, which wakes
            // this step: no deadline in the past (a busy loop) is returned.
            const steady_time_point end = drain_deadline();
            if (end > now) next = std::min(next, end);
        } else {
            if (policy_fetch_due_ && options_.fetch_policy) next = std::min(next, std::max(policy_retry_at_, now));
        }
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& kv : running_)
            if (!kv.second->abandoned) next = std::min(next, kv.second->deadline);
        for (const auto& r : results_) next = std::min(next, std::max(r.second.next_try, now + std::chrono::milliseconds(1)));
        if (stream_open_) next = std::min(next, last_byte_at_ + options_.stream_idle_timeout);
        return next;
    }

    // When the worker may first authenticate and connect: its first step plus the startup
    // jitter, drawn once.
    steady_time_point start_at(steady_time_point now) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!start_at_)
            start_at_ = now + std::chrono::milliseconds(static_cast<std::int64_t>(
                                  detail::clamp_unit(random_()) * static_cast<double>(options_.startup_jitter.count())));
        return *start_at_;
    }

    steady_time_point drain_deadline() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return drain_deadline_;
    }

    void send_worker_heartbeat(steady_time_point now) {
        protocol::worker_heartbeat_request body;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            body.state = shutting_down_ ? protocol::worker_state::draining
                                        : (paused_ ? protocol::worker_state::paused : protocol::worker_state::running);
            body.in_flight = static_cast<std::int64_t>(running_.size());
            body.completed = static_cast<std::int64_t>(status_.completed);
            body.failed = static_cast<std::int64_t>(status_.failed + status_.rejected);
        }
        body.capabilities = capabilities();
        const std::string hash = options_.gateway.policy_hash();
        if (!hash.empty()) body.policy_hash = hash;
        error_code ec;
        auto c = session(ec);
        next_heartbeat_at_ = now + detail::pacing::regular_delay(options_.heartbeat_interval, random_());
        if (!c) return;
        http_request req = detail::make_request(http_method::post, protocol::path::worker_heartbeat(c->installation_id),
                                                protocol::encode(body), options_.request_timeout);
        detail::http_outcome out = authed(std::move(req), true);
        if (!out.ok()) {
            if (out.cls != protocol::status_class::revoked)
                set_error(out.error, "worker heartbeat failed: " + out.error.message());
            return;
        }
        protocol::worker_heartbeat_response r;
        protocol::decode_error derr;
        if (!protocol::decode(out.response.body, r, derr)) {
            set_error(derr.code, "malformed worker heartbeat response: " + derr.message());
            return;
        }
        if (r.revoked) {
            handle_revocation(*r.revoked);
            return;
        }
        if (options_.gateway.on_heartbeat_response(r.active_policy_hash)) policy_fetch_due_ = true;
        if (r.command) handle_command(*r.command);
    }

    void fetch_policy(steady_time_point now) {
        if (options_.workspace_id.empty()) {
            policy_fetch_due_ = false;
            log(log_level::warning, "no workspace id: the active policy cannot be fetched");
            return;
        }
        http_request req = detail::make_request(http_method::get, protocol::path::active_policy(options_.workspace_id),
                                                {}, options_.request_timeout);
        detail::http_outcome out = authed(std::move(req), false);
        protocol::policy_document doc;
        protocol::decode_error derr;
        if (out.ok() && protocol::decode(out.response.body, doc, derr)) {
            log(log_level::info, "policy " + doc.hash + " is active");
            options_.gateway.set_policy(std::move(doc));
            policy_fetch_due_ = false;
            policy_backoff_.reset();
            return;
        }
        const error_code ec = out.ok() ? derr.code : out.error;
        set_error(ec, "the active policy could not be fetched: " + ec.message());
        policy_retry_at_ = std::max(now, clock_.steady_now()) + policy_backoff_.next(random_); // from the failure
    }

    void check_deadlines(steady_time_point now) {
        std::vector<std::pair<std::shared_ptr<running_task>, bool>> expired;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (auto& kv : running_) {
                auto& t = kv.second;
                if (t->abandoned) continue;
                const bool drain_over = shutting_down_ && now >= drain_deadline_;
                if (now >= t->deadline || drain_over) {
                    t->abandoned = true;
                    expired.emplace_back(t, drain_over && now < t->deadline);
                }
            }
        }
        for (auto& e : expired) {
            e.first->stop->request_stop();
            const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - e.first->started_at).count();
            if (e.second)
                finish_task(e.first->task, protocol::task_status::failed, {},
                            protocol::completion_error{protocol::task_error::shutting_down,
                                                       "cancelled: the worker shut down"},
                            ms);
            else
                finish_task(e.first->task, protocol::task_status::failed, {},
                            protocol::completion_error{protocol::task_error::handler_timeout,
                                                       "the handler did not finish before its deadline"},
                            ms);
        }
    }

    void check_stream_idle(steady_time_point now) {
        std::shared_ptr<stop_source> s;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!stream_open_ || now < last_byte_at_ + options_.stream_idle_timeout) return;
            idle_cut_ = true;
            s = stream_stop_;
        }
        log(log_level::warning, "the task stream was silent too long; reconnecting");
        if (s) s->request_stop();
    }

    // True when the drain is complete.
    bool drain_step(steady_time_point now) {
        bool done = false, give_up = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            bool busy = false;
            for (const auto& kv : running_)
                if (!kv.second->abandoned) busy = true;
            done = !busy && reporting_ == 0 && results_.empty() && !stream_open_;
            give_up = now >= drain_deadline_ && !stream_open_;
        }
        if (done || give_up) {
            finish(give_up && !done);
            return true;
        }
        return false;
    }

    void finish(bool gave_up) {
        std::vector<std::string> lost;
        std::vector<std::shared_ptr<stop_source>> stops;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (finished_) return;
            for (const auto& r : results_) lost.push_back(r.first);
            status_.results_dropped += results_.size();
            results_.clear();
            for (auto& kv : running_) {
                stops.push_back(kv.second->stop);
                kv.second->abandoned = true;
            }
            finished_ = true;
        }
        // Outside the mutex: a handler's stop callback may call back into the worker.
        for (auto& st : stops) st->request_stop();
        for (const auto& id : lost) log(log_level::error, "result of task " + id + " could not be reported before the end of the drain");
        if (gave_up && lost.empty()) log(log_level::warning, "the drain ended with handlers still running");
        log(log_level::info, "worker stopped");
        finished_cv_.notify_all();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            quit_ = true;
        }
        wake_all();
    }

    // ---- results -----------------------------------------------------------------------

    // Counts a task's outcome, keeps its result for a redelivery, and returns the body.
    protocol::completion_request record_result(const protocol::task& t, protocol::task_status status,
                                               boost::json::value output, std::optional<protocol::completion_error> err,
                                               std::int64_t execution_ms) {
        protocol::completion_request body;
        body.installation_id = current_installation_id();
        body.status = status;
        body.output = std::move(output);
        body.error = std::move(err);
        body.execution_time_ms = execution_ms;
        body.trace_id = t.trace_id;
        std::lock_guard<std::mutex> lock(mutex_);
        switch (status) {
        case protocol::task_status::completed: ++status_.completed; break;
        case protocol::task_status::failed: ++status_.failed; break;
        case protocol::task_status::rejected: ++status_.rejected; break;
        }
        if (status != protocol::task_status::rejected) latency_total_ms_ += static_cast<std::uint64_t>(execution_ms);
        auto it = seen_.find(t.task_id);
        if (it != seen_.end()) {
            it->second.done = true;
            it->second.result = body;
        }
        return body;
    }

    // Reports a task's outcome now, on this thread (a handler's, or the stream's).
    void finish_task(const protocol::task& t, protocol::task_status status, boost::json::value output,
                     std::optional<protocol::completion_error> err, std::int64_t execution_ms) {
        // The drain is not over while a result is on its way to the backend.
        struct reporting_guard {
            basic_worker& w;
            explicit reporting_guard(basic_worker& worker) : w(worker) {
                std::lock_guard<std::mutex> lock(w.mutex_);
                ++w.reporting_;
            }
            ~reporting_guard() {
                {
                    std::lock_guard<std::mutex> lock(w.mutex_);
                    --w.reporting_;
                }
                w.wake_control();
            }
        } guard(*this);
        send_result(t.task_id, record_result(t, status, std::move(output), std::move(err), execution_ms));
    }

    // Hands a task's outcome to the control step, due at once: no network call here.
    void queue_result(const protocol::task& t, protocol::task_status status, boost::json::value output,
                      std::optional<protocol::completion_error> err, std::int64_t execution_ms) {
        pending_result p;
        p.task_id = t.task_id;
        p.body = record_result(t, status, std::move(output), std::move(err), execution_ms);
        p.retry.set_options(options_.backoff);
        p.next_try = clock_.steady_now();
        keep_pending(std::move(p));
        wake_control();
    }

    void reject(const protocol::task& t, protocol::task_error code, const std::string& why) {
        log(log_level::info, "task " + t.task_id + " rejected: " + why);
        finish_task(t, protocol::task_status::rejected, {}, protocol::completion_error{code, why}, 0);
    }

    std::string current_installation_id() {
        error_code ec;
        auto c = store_.load(ec);
        if (c && !c->installation_id.empty()) return c->installation_id;
        std::lock_guard<std::mutex> lock(mutex_);
        if (last_session_) return last_session_->installation_id; // after a revocation
        return options_.installation_id;
    }

    /// Sends a result now; on a transient failure it waits in the retry queue.
    void send_result(const std::string& task_id, protocol::completion_request body) {
        pending_result p;
        p.task_id = task_id;
        p.body = std::move(body);
        p.retry.set_options(options_.backoff);
        if (!try_send(p, options_.request_timeout)) {
            keep_pending(std::move(p));
            wake_control();
        }
    }

    /** Puts a result in the retry queue: one entry per task id (a newer one replaces it).
        Above `max_pending_results` a rejection is not kept (the backend redelivers a task
        it has no answer for, and the worker decides again); a handler's result always is,
        and new tasks are refused meanwhile. After the end, nothing is kept. Each result not
        kept is logged and counted in `results_dropped`.
    */
    void keep_pending(pending_result p) {
        std::string why;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (finished_) {
                why = "the worker has stopped";
            } else if (auto it = results_.find(p.task_id); it != results_.end()) {
                p.retry = it->second.retry;
                p.next_try = std::min(p.next_try, it->second.next_try);
                it->second = std::move(p);
                return;
            } else if (results_.size() >= options_.max_pending_results &&
                       p.body.status == protocol::task_status::rejected) {
                why = "too many results are waiting; the backend will deliver the task again";
            } else {
                std::string id = p.task_id;
                results_.emplace(std::move(id), std::move(p));
                return;
            }
            ++status_.results_dropped;
        }
        log(log_level::error, "result of task " + p.task_id + " could not be reported: " + why);
    }

    // True when the result needs no further attempt (accepted, or given up with a log line).
    bool try_send(pending_result& p, std::chrono::milliseconds timeout) {
        if (p.body.installation_id.empty()) p.body.installation_id = current_installation_id();
        http_request req = detail::make_request(http_method::post, protocol::path::complete(p.task_id),
                                                protocol::encode(p.body), timeout);
        const detail::http_outcome out = authed(std::move(req), false);
        const bool revoked = [&] {
            std::lock_guard<std::mutex> lock(mutex_);
            return revoked_;
        }();
        if (out.ok() || out.response.status == 409) { // 409 already_completed: done
            release_result(p.task_id);
            return true;
        }
        if (out.response.status == 404 || out.cls == protocol::status_class::permanent ||
            (out.cls == protocol::status_class::revoked && revoked)) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                ++status_.results_dropped;
            }
            release_result(p.task_id);
            log(log_level::error, "result of task " + p.task_id + " refused (" + out.error.message() +
                                      describe_body(out) + "); dropped");
            return true;
        }
        auto delay = p.retry.next(random_);
        if (out.retry_after) delay = std::max(delay, *out.retry_after);
        p.next_try = clock_.steady_now() + delay;
        set_error(out.error, "reporting task " + p.task_id + " failed, retrying in " + std::to_string(delay.count()) +
                                 " ms: " + out.error.message());
        return false;
    }

    // The backend has the result (or refused it for good): a redelivery needs no copy of it,
    // and an older attempt waiting in the retry queue is settled too.
    void release_result(const std::string& task_id) {
        std::lock_guard<std::mutex> lock(mutex_);
        results_.erase(task_id);
        auto it = seen_.find(task_id);
        if (it == seen_.end()) return;
        it->second.result.reset();
        it->second.reported = true;
    }

    // Sends the results that are due, on the control thread. After a transient failure the
    // rest wait as long as the one that failed (the backend is likely down or slow), so
    // that one step costs at most one request timeout; during a drain, nothing is sent
    // past its deadline, and no request outlives it.
    void flush_results(steady_time_point now, bool draining) {
        std::vector<pending_result> due;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (auto it = results_.begin(); it != results_.end();) {
                if (it->second.next_try <= now || (draining && it->second.retry.attempts() <= 1)) {
                    due.push_back(std::move(it->second));
                    it = results_.erase(it);
                } else {
                    ++it;
                }
            }
        }
        const steady_time_point drain_end = draining ? drain_deadline() : steady_time_point::max();
        std::optional<steady_time_point> held_until;
        for (auto& p : due) {
            if (held_until) {
                p.next_try = std::max(p.next_try, *held_until);
                keep_pending(std::move(p));
                continue;
            }
            const steady_time_point t = clock_.steady_now();
            std::chrono::milliseconds timeout = options_.request_timeout;
            if (draining) {
                if (t >= drain_end) {
                    keep_pending(std::move(p)); // given up, with a log line, when the drain ends
                    continue;
                }
                timeout = std::min(timeout, std::max(std::chrono::duration_cast<std::chrono::milliseconds>(drain_end - t),
                                                     std::chrono::milliseconds(1)));
            }
            if (!try_send(p, timeout)) {
                held_until = p.next_try;
                keep_pending(std::move(p));
            }
        }
    }

    // ---- the task stream ---------------------------------------------------------------

    steady_time_point stream_once(steady_time_point now) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (shutting_down_ || finished_) return steady_time_point::max();
        }
        if (now < start_at(now)) return start_at(now);
        if (now < next_connect_at_) return next_connect_at_;
        error_code ec;
        auto c = session(ec);
        if (!c) {
            schedule_reconnect(now, ec, {});
            return next_connect_at_;
        }
        http_request req = detail::make_request(http_method::get,
                                                protocol::path::task_stream(c->installation_id, capabilities()), {},
                                                options_.stream_idle_timeout);
        req.headers.front().value = std::string(protocol::header::event_stream_type); // Accept
        req.headers.push_back({std::string(protocol::header::cache_control), "no-cache"});
        if (!resume_id_.empty()) req.headers.push_back({std::string(protocol::header::last_event_id), resume_id_});
        detail::set_bearer(req, c->runtime_token);

        auto stop = std::make_shared<stop_source>();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (shutting_down_) return steady_time_point::max();
            stream_stop_ = stop;
            stream_open_ = true;
            idle_cut_ = false;
            last_byte_at_ = now;
            ++status_.stream_connects;
        }
        wake_control(); // so that the idle watchdog is armed
        // Whatever ends this connection (a callback or the executor throwing included), the
        // stream must be closed in the state, or a drain would wait for it for ever.
        struct close_guard {
            basic_worker& w;
            bool armed = true;
            ~close_guard() {
                if (!armed) return;
                {
                    std::lock_guard<std::mutex> lock(w.mutex_);
                    w.stream_open_ = false;
                    w.stream_stop_.reset();
                }
                w.wake_control();
            }
        } closing{*this};
        parser_.reset();
        int status = 0;
        std::string error_body;
        bool line_error = false;
        const steady_time_point opened_at = now;
        stream_callbacks cb;
        std::optional<std::chrono::milliseconds> retry_after;
        cb.on_response = [&](const http_response& head) {
            status = head.status;
            if (const std::string* ra = find_header(head.headers, protocol::header::retry_after)) {
                const std::string* date = find_header(head.headers, protocol::header::date);
                const std::optional<wall_time_point> d = date ? parse_http_date(*date) : std::nullopt;
                retry_after = parse_retry_after(*ra, d ? detail::within_date(*d, backend_now()) : backend_now());
            }
            if (status == 200) log(log_level::info, "task stream connected");
            return true;
        };
        cb.on_data = [&](std::string_view chunk) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                last_byte_at_ = clock_.steady_now();
            }
            if (status != 200) {
                if (error_body.size() < 4096) error_body.append(chunk.substr(0, 4096 - error_body.size()));
                return true;
            }
            try {
                parser_.feed(chunk, [&](const sse::event& e) {
                    // After a stop, the rest of the chunk is not handled, and Last-Event-ID
                    // stays at the last event that was: the backend sends the rest again.
                    if (stop->stop_requested()) return;
                    handle_event(e);
                    resume_id_ = e.last_event_id;
                });
            } catch (const error&) {
                line_error = true;
                return false;
            }
            return !stop->stop_requested();
        };
        error_code sec;
        transport_.stream(req, cb, stop->get_token(), sec);
        bool idle = false, stopping = false;
        closing.armed = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stream_open_ = false;
            stream_stop_.reset();
            idle = idle_cut_;
            stopping = shutting_down_;
            last_event_id_ = resume_id_;
        }
        wake_control();
        if (stopping) return steady_time_point::max();
        const steady_time_point end = clock_.steady_now();
        const auto open_for = std::chrono::duration_cast<std::chrono::milliseconds>(end - opened_at);
        if (idle) {
            schedule_reconnect(end, errc::stream_idle, open_for);
        } else if (line_error) {
            schedule_reconnect(end, errc::stream_line_too_long, open_for);
        } else if (sec) {
            schedule_reconnect(end, sec, open_for);
        } else if (status == 200) {
            // The backend ended the stream: reconnect after the retry delay.
            schedule_reconnect(end, errc::connection_lost, open_for);
        } else {
            handle_stream_refusal(end, status, error_body, c->runtime_token, retry_after);
        }
        return next_connect_at_;
    }

    void handle_stream_refusal(steady_time_point now, int status, const std::string& body, const std::string& token,
                               std::optional<std::chrono::milliseconds> retry_after) {
        const std::string code = protocol::error_code_of(body);
        const auto cls = protocol::classify_status(status, code, true, true);
        const error_code ec = protocol::status_error(status, code, true, true);
        switch (cls) {
        case protocol::status_class::token_rejected: {
            const auto r = refresh(token);
            error_code rec;
            if (handle_refresh(r, rec) && !refreshed_for_stream_) {
                // Reconnect at once with the new token, once.
                refreshed_for_stream_ = true;
                next_connect_at_ = now;
                return;
            }
            refreshed_for_stream_ = false;
            schedule_reconnect(now, ec, {}, retry_after);
            return;
        }
        case protocol::status_class::revoked:
            handle_revocation(protocol::revocation{protocol::error_message_of(body), std::nullopt});
            return;
        case protocol::status_class::installation_gone: {
            error_code ignored;
            store_.clear(ignored);
            session_ready_ = false;
            schedule_reconnect(now, ec, {}, retry_after);
            return;
        }
        default: schedule_reconnect(now, ec, {}, retry_after); return;
        }
    }

    // The next connection, by the stream pacing rules (docs/protocol.md): a floor, a
    // backoff reset only by a healthy connection, `retry:` and `Retry-After` honoured.
    void schedule_reconnect(steady_time_point now, const error_code& ec, std::chrono::milliseconds open_for,
                            std::optional<std::chrono::milliseconds> retry_after = std::nullopt) {
        refreshed_for_stream_ = false;
        detail::pacing::stream_end end;
        end.open_for = open_for;
        end.retry_field = parser_.retry();
        end.retry_after = retry_after;
        const auto delay = detail::pacing::stream_reconnect(stream_backoff_, options_.backoff, end, random_());
        // From the end of the connection (or of the attempt), not its start.
        next_connect_at_ = std::max(now, clock_.steady_now()) + delay;
        set_error(ec, "task stream: " + ec.message() + "; reconnecting in " + std::to_string(delay.count()) + " ms");
    }

    void handle_event(const sse::event& e) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (revoked_) return; // a revoked event ends everything after it
        }
        if (e.type == protocol::event_type::task) {
            handle_task_event(e.data);
        } else if (e.type == protocol::event_type::command) {
            protocol::command cmd;
            protocol::decode_error err;
            if (protocol::decode(e.data, cmd, err))
                handle_command(cmd);
            else
                log(log_level::warning, "malformed command event ignored: " + err.message());
        } else if (e.type == protocol::event_type::revoked) {
            protocol::revocation r;
            protocol::decode_error err;
            if (!protocol::decode(e.data, r, err)) r.reason = "installation revoked";
            handle_revocation(r);
        } else if (e.type == protocol::event_type::policy) {
            protocol::policy_event p;
            protocol::decode_error err;
            if (protocol::decode(e.data, p, err) && options_.gateway.on_heartbeat_response(p.active_policy_hash)) {
                policy_fetch_due_ = true;
                wake_control();
            }
        }
        // Other event types are ignored.
    }

    void handle_task_event(const std::string& data) {
        protocol::task t;
        protocol::decode_error err;
        if (!protocol::decode(data, t, err)) {
            // Report it when at least its id can be read, so that it is not redelivered forever.
            const std::string id = protocol::task_id_of(data);
            log(log_level::warning, "malformed task event (" + err.message() + ")" + (id.empty() ? "; ignored" : ""));
            if (!id.empty()) {
                protocol::task stub;
                stub.task_id = id;
                remember(id);
                reject(stub, protocol::task_error::invalid_input, "malformed task: " + err.message());
            }
            return;
        }
        std::optional<protocol::completion_request> resend;
        bool duplicate = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++status_.received;
            auto it = seen_.find(t.task_id);
            if (it != seen_.end()) {
                duplicate = true;
                ++status_.duplicates;
                if (it->second.done && it->second.result) resend = it->second.result;
            }
        }
        if (duplicate) {
            // The same task id runs once; a redelivered finished task gets its result again
            // (unless the backend already accepted it: then the copy is gone, and the backend
            // would only answer 409).
            if (resend) send_result(t.task_id, *resend);
            return;
        }
        bool shutting_down = false, paused = false, has_handler = false, full = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            shutting_down = shutting_down_;
            paused = paused_;
            has_handler = handlers_.count(t.capability) != 0;
            full = queued_.size() >= options_.max_queued_tasks || results_.size() >= options_.max_pending_results;
        }
        // A refused task is not remembered: delivered again later, it is decided again.
        if (shutting_down) return reject(t, protocol::task_error::shutting_down, "the worker is shutting down");
        if (paused) return reject(t, protocol::task_error::worker_paused, "the worker is paused");
        if (!has_handler) return reject(t, protocol::task_error::no_handler, "no handler for capability '" + t.capability + "'");
        if (full) return reject(t, protocol::task_error::rate_limited, "the worker's queue is full");
        const admission a = options_.gateway.admit(t.capability, clock_.steady_now());
        if (!a.allowed) return reject(t, a.code, a.reason);
        if (t.deadline_at && *t.deadline_at <= backend_now()) { // the backend's time
            finish_task(t, protocol::task_status::failed, {},
                        protocol::completion_error{protocol::task_error::handler_timeout,
                                                   "the task's deadline passed before it could start"},
                        0);
            return;
        }
        remember(t.task_id);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            queued_.push_back(std::move(t));
        }
        dispatch();
    }

    void remember(const std::string& id) {
        std::lock_guard<std::mutex> lock(mutex_);
        seen_.emplace(id, seen_task{});
        seen_order_.push_back(id);
        while (seen_order_.size() > 50000) {
            auto it = seen_.find(seen_order_.front());
            // Keep what is still running.
            if (it != seen_.end() && !it->second.done && running_.count(it->first)) break;
            if (it != seen_.end()) seen_.erase(it);
            seen_order_.pop_front();
        }
    }

    /// Starts queued tasks while handler slots are free.
    void dispatch() {
        for (;;) {
            std::shared_ptr<running_task> rt;
            task_handler handler;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                // A timed-out handler still holds its thread, so it still counts.
                if (queued_.empty() || running_.size() >= options_.max_concurrent_handlers || shutting_down_) return;
                rt = std::make_shared<running_task>();
                rt->task = std::move(queued_.front());
                queued_.pop_front();
                auto h = handlers_.find(rt->task.capability);
                if (h != handlers_.end()) handler = h->second;
                const steady_time_point now = clock_.steady_now();
                rt->started_at = now;
                rt->deadline = now + options_.handler_timeout;
                if (rt->task.deadline_at) {
                    const auto left = *rt->task.deadline_at - backend_now();
                    rt->deadline = std::min(rt->deadline, now + std::chrono::duration_cast<steady_time_point::duration>(left));
                }
                running_.emplace(rt->task.task_id, rt);
            }
            wake_control(); // arms the deadline
            // The gate keeps a run that starts after the worker is gone (an executor draining
            // its queue late) away from it, and lets the worker wait for the runs under way.
            try {
                executor_.post([this, gate = gate_, rt, handler]() mutable {
                    if (!gate->enter()) return;
                    run_task(rt, std::move(handler));
                    gate->leave();
                });
            } catch (...) {
                // The executor could not take it (no thread could be started): the task
                // goes back to the head of the queue, tried again at the next dispatch.
                {
                    std::lock_guard<std::mutex> lock(mutex_);
                    running_.erase(rt->task.task_id);
                    queued_.push_front(std::move(rt->task));
                }
                log(log_level::error, "a handler could not be started (the executor refused it); the task waits in the queue");
                return;
            }
        }
    }

    void run_task(const std::shared_ptr<running_task>& rt, task_handler handler) noexcept {
        const active_scope active(this);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (rt->abandoned) { // given up before it started (the drain ended)
                running_.erase(rt->task.task_id);
                return;
            }
        }
        task_context ctx;
        ctx.task_id = rt->task.task_id;
        ctx.capability = rt->task.capability;
        ctx.workspace_id = rt->task.workspace_id;
        ctx.trace_id = rt->task.trace_id;
        ctx.requester_agent_id = rt->task.requester_agent_id;
        ctx.parent_task_id = rt->task.parent_task_id;
        ctx.workflow_id = rt->task.workflow_id;
        ctx.deadline = clock_.wall_now() +
                       std::chrono::duration_cast<wall_time_point::duration>(rt->deadline - clock_.steady_now());
        ctx.stop = rt->stop->get_token();
        protocol::task_status status = protocol::task_status::completed;
        boost::json::value output;
        std::optional<protocol::completion_error> err;
        try {
            if (!handler) throw task_failure(protocol::task_error::no_handler, "the handler was removed");
            output = handler(ctx, rt->task.input);
        } catch (const task_failure& f) {
            status = protocol::task_status::failed;
            err = protocol::completion_error{f.code(), f.what()};
        } catch (const std::exception& e) {
            status = protocol::task_status::failed;
            err = protocol::completion_error{protocol::task_error::handler_error, e.what()};
        } catch (...) {
            status = protocol::task_status::failed;
            err = protocol::completion_error{protocol::task_error::handler_error, "the handler threw a non-standard exception"};
        }
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.steady_now() - rt->started_at).count();
        bool abandoned = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            abandoned = rt->abandoned;
            rt->abandoned = true;
            running_.erase(rt->task.task_id);
            // Counted from the moment it is no longer running: a drain must not end between
            // the two.
            if (!abandoned) ++reporting_;
        }
        try {
            if (!abandoned) finish_task(rt->task, status, std::move(output), std::move(err), ms);
        } catch (...) {
            // Out of memory while reporting: the result stays unreported and is redelivered.
        }
        if (!abandoned) {
            std::lock_guard<std::mutex> lock(mutex_);
            --reporting_;
        }
        try {
            dispatch();
        } catch (...) {
        }
        wake_control();
    }

    // ---- commands and revocation -------------------------------------------------------

    void handle_command(const protocol::command& cmd) {
        command_handler cb;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!commands_.first_time(cmd.id)) return;
            switch (cmd.type) {
            case protocol::command_type::pause: paused_ = true; break;
            case protocol::command_type::resume: paused_ = false; break;
            default: break;
            }
            cb = command_handler_;
        }
        if (cmd.type == protocol::command_type::unknown) {
            log(log_level::warning, "ignoring a command of unknown type '" + cmd.type_name + "'");
            return;
        }
        log(log_level::info, std::string("command ") + protocol::to_string(cmd.type) +
                                 (cmd.reason.empty() ? std::string() : ": " + cmd.reason));
        detail::invoke_callback(cb, options_.logger, "on_command", cmd);
        detail::invoke_callback(options_.on_command, options_.logger, "on_command", cmd);
        if (cmd.type == protocol::command_type::terminate)
            begin_shutdown(cmd.shutdown_timeout_ms ? std::chrono::milliseconds(*cmd.shutdown_timeout_ms)
                                                   : options_.drain_timeout,
                           "terminate command");
        wake_all();
    }

    void handle_revocation(const protocol::revocation& r) {
        const std::string reason = r.reason.empty() ? std::string("installation revoked") : r.reason;
        const auto timeout =
            r.shutdown_timeout_ms ? std::chrono::milliseconds(*r.shutdown_timeout_ms) : default_shutdown_timeout;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (revoked_) return;
            revoked_ = true;
            status_.revoked = true;
            status_.revoked_reason = reason;
        }
        set_error(errc::revoked, "installation revoked: " + reason);
        begin_shutdown(timeout, "revoked");
        error_code ec;
        store_.clear(ec);
        detail::invoke_callback(options_.on_revoked, options_.logger, "on_revoked", revocation_info{reason, timeout});
    }

    // ---- status ------------------------------------------------------------------------

    // Requires mutex_.
    worker_state derive_state() const {
        if (revoked_ && finished_) return worker_state::revoked;
        if (finished_) return worker_state::stopped;
        if (shutting_down_) return worker_state::draining;
        if (!started_ && !first_step_done_) return worker_state::idle;
        if (stream_open_) return worker_state::connected;
        if (credentials_exhausted_ || status_.last_error_code == errc::no_credentials ||
            status_.last_error_code == errc::invalid_option)
            return worker_state::degraded;
        return worker_state::connecting;
    }

    std::string describe_body(const detail::http_outcome& out) const {
        const std::string m = protocol::error_message_of(out.response.body);
        return m.empty() ? std::string() : " (" + m + ")";
    }

    void set_error(const error_code& ec, const std::string& what) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            status_.last_error = what;
            status_.last_error_code = ec;
        }
        log(ec == errc::revoked ? log_level::error : log_level::warning, what);
    }

    void log(log_level level, const std::string& message) const {
        if (!options_.logger) return;
        try {
            options_.logger(level, message);
        } catch (...) {
        }
    }

    // ---- members -----------------------------------------------------------------------

    worker_options options_;
    Transport transport_;
    Clock clock_;
    CredentialStore store_;
    Executor executor_;
    random_source random_;
    detail::backend_clock skew_;          // thread-safe
    detail::unsaved_credentials unsaved_; // thread-safe

    // Guarded by mutex_.
    mutable std::mutex mutex_;
    std::map<std::string, task_handler> handlers_;
    command_handler command_handler_;
    std::map<std::string, std::shared_ptr<running_task>> running_;
    std::deque<protocol::task> queued_;
    std::map<std::string, pending_result> results_; // by task id
    std::unordered_map<std::string, seen_task> seen_;
    std::deque<std::string> seen_order_;
    detail::command_log commands_;
    worker_status status_;
    std::uint64_t latency_total_ms_ = 0;
    std::size_t reporting_ = 0; // results between their task and the retry queue
    bool paused_ = false;
    bool revoked_ = false;
    bool shutting_down_ = false;
    bool finished_ = false;
    bool started_ = false;
    bool threaded_ = false;
    bool quit_ = false;
    bool first_step_done_ = false;
    bool control_wake_ = false;
    bool stream_wake_ = false;
    bool stream_open_ = false;
    bool idle_cut_ = false;
    bool credentials_exhausted_ = false; // no way left to authenticate
    std::optional<steady_time_point> start_at_; // the first step plus the startup jitter

    std::string last_event_id_;
    std::optional<installation_credentials> last_session_;
    steady_time_point drain_deadline_{};
    steady_time_point last_byte_at_{};
    std::shared_ptr<stop_source> stream_stop_;
    std::condition_variable control_cv_, stream_cv_, start_cv_, finished_cv_;

    // Owned by the control step.
    std::mutex auth_mutex_;
    std::atomic<bool> session_ready_{false};
    bool install_token_spent_ = false;
    error_code spent_code_;     // why the install token was refused for good
    std::string spent_reason_;
    steady_time_point session_retry_at_{};
    backoff session_backoff_;
    steady_time_point next_heartbeat_at_{};
    std::atomic<bool> policy_fetch_due_{true};
    std::atomic<bool> heartbeat_now_{false};
    steady_time_point policy_retry_at_{};
    backoff policy_backoff_;

    // Owned by the stream step.
    sse::parser parser_;
    backoff stream_backoff_;
    steady_time_point next_connect_at_{};
    bool refreshed_for_stream_ = false;
    std::string resume_id_; // the id of the last event handled: the next Last-Event-ID

    std::thread control_thread_, stream_thread_;
    std::shared_ptr<run_gate> gate_ = std::make_shared<run_gate>();
};

} // namespace sekuire

#endif
