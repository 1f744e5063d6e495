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

#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
#include <sekuire/core/worker_core.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/detail/make_policy.hpp>
#include <sekuire/detail/store_effects.hpp>
#include <sekuire/detail/worker_driver.hpp>
#include <sekuire/error.hpp>
#include <sekuire/executor.hpp>
#include <sekuire/fwd.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/transport.hpp>
#include <sekuire/worker_options.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sekuire {

/** The TaskWorker: receives tasks on the task stream, runs the handler registered for each
    task's capability, and reports every result.

    @tparam Transport a Transport; @tparam Clock a Clock; @tparam CredentialStore a
    CredentialStore (share one with a beacon: a token refreshed by either is used by both);
    @tparam Executor an Executor (`thread_pool_executor` by default, `inline_executor` for
    deterministic tests).

    Every decision is `worker_core`'s (`<sekuire/core/worker_core.hpp>`); this template moves
    data between it and the policies. Work runs in two step functions: `step()` (heartbeats,
    result retries, handler deadlines, the stream's idle watchdog, policy fetches, the
    drain) and `stream_step()` (one connection of the task stream, read until it ends).
    `start()` runs each on its own thread; tests call them directly. Requests go out from
    the thread whose input asked for them (a handler's result from the handler's thread).

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
    using transport_type = Transport;             ///< The Transport policy.
    using clock_type = Clock;                     ///< The Clock policy.
    using credential_store_type = CredentialStore; ///< The CredentialStore policy.
    using executor_type = Executor;               ///< The Executor that runs the handlers.

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
        : transport_(std::move(transport)), clock_(std::move(clock)), store_(std::move(store)),
          executor_(std::move(executor)), core_(detail::prepare(std::move(options))) {
        // The stream's path names the installation, which a runtime token alone does not
        // (tokens are opaque): unless the store names it, say at once what else to give.
        error_code ec;
        const std::string why = detail::runtime_token_alone(core_.options(), store_.load(ec));
        if (!why.empty()) throw error(errc::invalid_option, why);
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
        core_.add_capability(capability);
        handlers_[std::move(capability)] = std::move(handler);
    }

    /// Registers a command callback, called once per command id. Thread-safe.
    void on_command(command_handler handler) {
        std::lock_guard<std::mutex> lock(mutex_);
        command_handler_ = std::move(handler);
    }

    /** Starts the worker: authenticates (waiting at most `start_timeout`, after the startup
        jitter), then runs the control loop and the task stream on two threads. Fails with
        `already_started`, or `shutting_down` for a worker already stopped.
        Without usable credentials the worker keeps retrying in the background (see
        `get_status()`).
    */
    void start(error_code& ec) {
        ec = {};
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (core_.finished()) { // stopped before it was started (its SDK shut down, say)
                ec = errc::shutting_down;
                return;
            }
            if (started_) {
                ec = errc::already_started;
                return;
            }
            started_ = true;
            threaded_ = true;
            control_thread_ = std::thread([this] { loop(true); });
        }
        std::unique_lock<std::mutex> lock(mutex_);
        start_cv_.wait_for(lock, options().start_timeout, [&] { return first_step_done_ || core_.finished(); });
        // A stop() meanwhile (from another thread: an SDK shutting down) found no stream
        // thread to end: none is started.
        if (!quit_) stream_thread_ = std::thread([this] { loop(false); });
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
            if (in_own_context()) {
                // From a callback or a handler of this worker: waiting here would wait for
                // the very thread (or handler) that asked. Start the drain and return;
                // `wait()`, a later `stop()` from elsewhere, or the destructor ends it.
                begin_shutdown(options().drain_timeout, "stopping");
                return;
            }
            {
                std::unique_lock<std::mutex> lock(mutex_);
                if (!threaded_ && !first_step_done_ && !core_.finished()) {
                    // Never started nor stepped: nothing to drain, nothing to tell anyone.
                    core_.force_finish(read_clock(clock_), false);
                    pump(lock);
                    lock.unlock();
                    flush();
                    return;
                }
            }
            begin_shutdown(options().drain_timeout, "stopping");
            std::thread control, stream;
            bool threaded = false;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                threaded = threaded_;
                control.swap(control_thread_);
            }
            if (threaded) {
                if (control.joinable()) control.join();
                {
                    std::lock_guard<std::mutex> lock(mutex_);
                    quit();
                    stream.swap(stream_thread_);
                }
                if (stream.joinable()) stream.join();
            } else {
                for (int i = 0; i < 64 && !finished(); ++i) {
                    const steady_time_point next = step();
                    if (next > clock_.steady_now()) break;
                }
                std::unique_lock<std::mutex> lock(mutex_);
                if (!core_.finished()) {
                    core_.force_finish(read_clock(clock_));
                    pump(lock);
                }
                lock.unlock();
                flush();
            }
        } catch (...) {
        }
    }

    /// Blocks until the worker has stopped (after `stop()`, a terminate command or a
    /// revocation). Real time: for programs, not for fake-clock tests.
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        finished_cv_.wait(lock, [&] { return core_.finished(); });
    }

    /// As `wait()`, for at most `timeout` of real time; true when stopped.
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> timeout) {
        std::unique_lock<std::mutex> lock(mutex_);
        return finished_cv_.wait_for(lock, timeout, [&] { return core_.finished(); });
    }

    /// Whether a pause command is in force.
    bool is_paused() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return core_.paused();
    }

    /** Pauses (`true`) or resumes (`false`) the worker as a pause or resume command would
        (a paused worker refuses new tasks with `worker_paused` and keeps heartbeating),
        without calling the command callbacks. A later command overrides it. Thread-safe.
    */
    void set_paused(bool paused) { feed([&] { core_.set_paused(paused); }); }

    /// A snapshot of the status. Thread-safe.
    worker_status get_status() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return core_.status(started_);
    }

    /// Metrics for a beacon's heartbeat: tasks handled, errors, average handler latency.
    protocol::heartbeat_metrics metrics() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return core_.metrics();
    }

    /// True when the calling thread is running one of this worker's steps, callbacks or
    /// handlers (where waiting for the worker to stop would wait for itself).
    bool in_own_context() const noexcept { return scope::inside(this); }

    /// Applies a command that arrived another way (a beacon's heartbeat); each command id
    /// acts once. Thread-safe.
    void apply_command(const protocol::command& cmd) {
        feed([&] { core_.apply_command(cmd, read_clock(clock_)); });
    }

    /// Applies a revocation that arrived another way (a beacon's heartbeat). Thread-safe.
    void apply_revocation(const protocol::revocation& r) {
        feed([&] { core_.apply_revocation(r, read_clock(clock_)); });
    }

    /// Tells the worker the backend's active policy hash seen elsewhere (a beacon's
    /// heartbeat); the policy is fetched again when it changed. Thread-safe.
    void apply_policy_hash(const std::string& hash) { feed([&] { core_.apply_policy_hash(hash); }); }

    /** Starts the graceful shutdown of protocol.md section 5 without waiting: no new tasks,
        in-flight handlers get until `timeout`, results are reported. During a drain already
        under way, a shorter `timeout` (a revocation's) brings its end forward. Makes no
        network call on the calling thread. Thread-safe.
    */
    void begin_shutdown(std::chrono::milliseconds timeout, const std::string& why) {
        feed([&] { core_.begin_shutdown(timeout, why, read_clock(clock_)); });
    }

    /** Does the control work due now (authentication, worker heartbeats, policy fetches,
        result retries, handler deadlines, the stream's idle watchdog, the drain) and
        returns the next deadline. Never throws.
    */
    steady_time_point step() noexcept {
        const scope active(this);
        try {
            std::unique_lock<std::mutex> lock(mutex_);
            see_store();
            core_.advance(read_clock(clock_));
            pump(lock);
            if (!first_step_done_ && core_.first_step_done()) {
                first_step_done_ = true;
                start_cv_.notify_all();
            }
            const steady_time_point next = core_.next_wake();
            lock.unlock();
            flush();
            return next;
        } catch (const std::exception& e) {
            detail::deliver_log(options().logger, log_level::error, std::string("internal error: ") + e.what());
        } catch (...) {
        }
        return clock_.steady_now() + std::chrono::seconds(1);
    }

    /** Opens the task stream when a connection is due and reads it until it ends (the
        backend closes it, it fails, it falls silent, or the worker shuts down), handling
        its events; returns when the next connection is due. Never throws.
    */
    steady_time_point stream_step() noexcept {
        const scope active(this);
        try {
            return stream_once();
        } catch (const std::exception& e) {
            detail::deliver_log(options().logger, log_level::error, std::string("internal error: ") + e.what());
        } catch (...) {
        }
        return clock_.steady_now() + std::chrono::seconds(1);
    }

    /// The options the worker was built with (validated, completed from the environment).
    const worker_options& options() const noexcept { return core_.options(); }
    /// The policy gateway that admits each task (rate limits, capability allow and deny).
    policy_gateway& gateway() noexcept { return core_.gateway(); }
    /// The transport (a handle: copies share its connections).
    Transport& transport() noexcept { return transport_; }
    /// The clock every deadline is read from.
    Clock& clock() noexcept { return clock_; }
    /// The credential store (shared with a beacon when it was given the same handle).
    CredentialStore& credential_store() noexcept { return store_; }

private:
    // The worker whose callback or handler this thread is running: stop() from there must
    // not wait for itself.
    using scope = detail::inside_scope<basic_worker>;

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

    void loop(bool control) noexcept {
        detail::wake_loop& l = control ? control_loop_ : stream_loop_;
        for (;;) {
            const steady_time_point next = control ? step() : stream_step();
            if (control && finished()) break;
            if (!l.wait(clock_, next)) break;
        }
    }

    // mutex_ held.
    void wake(bool control, bool stream) {
        if (control) control_loop_.wake();
        if (stream) stream_loop_.wake();
    }

    // mutex_ held.
    void quit() {
        quit_ = true;
        control_loop_.request_stop();
        stream_loop_.request_stop();
    }

    bool finished() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return core_.finished();
    }

    // ---- driving the core --------------------------------------------------------------

    // An input from any thread: fed under the mutex, its effects performed here.
    template <class Input>
    void feed(Input&& input) {
        std::unique_lock<std::mutex> lock(mutex_);
        input();
        pump(lock);
        lock.unlock();
        flush();
    }

    void see_store() { detail::see_store(store_, core_, store_version_); }

    // Performs the core's effects until it asks for none: store operations and wake-ups at
    // once; a request, a handler run, or a stop token fired without the mutex (a handler
    // or a stop callback may call back in). Notifications wait for flush().
    void pump(std::unique_lock<std::mutex>& lock) {
        std::vector<worker_effect> batch;
        for (int rounds = 0; rounds < 100000 && !core_.effects().empty(); ++rounds) {
            batch.clear();
            batch.swap(core_.effects());
            for (worker_effect& e : batch) {
                using t = worker_effect::type;
                if (detail::perform_store_effect(store_, core_, e, clock_)) continue;
                switch (e.what) {
                case t::send: {
                    if (!core_.wants(e.op)) break; // moot since it was asked for
                    lock.unlock();
                    flush();
                    error_code ec;
                    http_response res = transport_.send(e.request, ec);
                    lock.lock();
                    core_.on_response(e.op, ec, std::move(res), read_clock(clock_));
                    break;
                }
                case t::run_handler: run_handler(lock, std::move(e)); break;
                case t::cancel_handler: {
                    auto it = handler_stops_.find(e.text);
                    if (it == handler_stops_.end()) break;
                    std::shared_ptr<stop_source> s = it->second;
                    lock.unlock();
                    s->request_stop();
                    lock.lock();
                    break;
                }
                case t::close_stream: {
                    std::shared_ptr<stop_source> s = e.op == stream_op_ ? stream_stop_ : nullptr;
                    if (!s) break;
                    lock.unlock();
                    s->request_stop();
                    lock.lock();
                    break;
                }
                case t::wake_control: wake(true, false); break;
                case t::wake_stream: wake(false, true); break;
                case t::finished:
                    quit();
                    finished_cv_.notify_all();
                    notifications_.push_back(std::move(e));
                    break;
                default: notifications_.push_back(std::move(e)); break;
                }
            }
        }
    }

    // Hands a task to the executor. The gate keeps a run that starts after the worker is
    // gone (an executor draining its queue late) away from it, and lets the worker wait for
    // the runs under way.
    void run_handler(std::unique_lock<std::mutex>& lock, worker_effect e) {
        auto stop = std::make_shared<stop_source>();
        handler_stops_[e.task.task_id] = stop;
        task_handler handler;
        if (auto h = handlers_.find(e.task.capability); h != handlers_.end()) handler = h->second;
        const std::string id = e.task.task_id;
        lock.unlock();
        try {
            executor_.post([this, gate = gate_, task = std::move(e.task), deadline = e.deadline, stop,
                            handler = std::move(handler)]() mutable {
                if (!gate->enter()) return;
                run_task(std::move(task), deadline, stop, std::move(handler));
                gate->leave();
            });
            lock.lock();
        } catch (...) {
            // The executor could not take it (no thread could be started).
            lock.lock();
            handler_stops_.erase(id);
            core_.on_handler_refused(id);
        }
    }

    void run_task(protocol::task task, wall_time_point deadline, const std::shared_ptr<stop_source>& stop,
                  task_handler handler) noexcept {
        const scope active(this);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!core_.handler_starting(task.task_id, read_clock(clock_))) {
                handler_stops_.erase(task.task_id);
                return;
            }
        }
        detail::handler_outcome out = detail::run_handler(handler, task, deadline, stop->get_token());
        try {
            feed([&] {
                handler_stops_.erase(task.task_id);
                core_.on_handler_done(task.task_id, out.status, std::move(out.output), std::move(out.error), read_clock(clock_));
            });
        } catch (...) {
            // Out of memory while reporting: the result stays unreported and is redelivered.
        }
    }

    steady_time_point stream_once() {
        std::unique_lock<std::mutex> lock(mutex_);
        see_store();
        worker_core::stream_decision d = core_.stream_connect(read_clock(clock_));
        pump(lock);
        if (!d.request) {
            lock.unlock();
            flush();
            return d.next;
        }
        const operation_id op = d.op;
        auto stop = std::make_shared<stop_source>();
        stream_stop_ = stop;
        stream_op_ = op;
        lock.unlock();
        flush();
        stream_callbacks cb;
        cb.on_response = [&](const http_response& head) {
            feed([&] { core_.on_stream_head(op, head.status, head.headers, read_clock(clock_)); });
            return !stop->stop_requested();
        };
        cb.on_data = [&](std::string_view chunk) {
            bool go = false;
            feed([&] { go = core_.on_stream_data(op, chunk, read_clock(clock_)); });
            return go && !stop->stop_requested();
        };
        error_code ec;
        // Whatever ends this connection (a callback or the executor throwing included), the
        // stream must be closed in the core, or a drain would wait for it for ever.
        struct end_guard {
            basic_worker& w;
            operation_id op;
            error_code& ec;
            ~end_guard() {
                try {
                    w.feed([&] {
                        w.core_.on_stream_end(op, ec, read_clock(w.clock_));
                        w.stream_stop_.reset();
                    });
                } catch (...) {
                }
            }
        };
        {
            end_guard guard{*this, op, ec};
            transport_.stream(*d.request, cb, stop->get_token(), ec);
        }
        std::lock_guard<std::mutex> relock(mutex_);
        return core_.stream_next();
    }

    // Calls the user's callbacks, without the mutex (a callback may call back in).
    void flush() {
        std::vector<worker_effect> ready;
        command_handler own;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (notifications_.empty()) return;
            ready.swap(notifications_);
            own = command_handler_;
        }
        detail::deliver(options(), own, ready);
    }

    // ---- members -----------------------------------------------------------------------

    Transport transport_;
    Clock clock_;
    CredentialStore store_;
    Executor executor_;

    mutable std::mutex mutex_; // everything below
    worker_core core_;
    std::map<std::string, task_handler> handlers_;
    command_handler command_handler_;
    std::map<std::string, std::shared_ptr<stop_source>> handler_stops_;
    std::shared_ptr<stop_source> stream_stop_;
    operation_id stream_op_ = 0;
    std::vector<worker_effect> notifications_;
    std::optional<std::uint64_t> store_version_; // of the contents the core last saw
    bool started_ = false;
    bool threaded_ = false;
    bool quit_ = false;
    bool first_step_done_ = false;
    std::condition_variable start_cv_, finished_cv_;
    detail::wake_loop control_loop_, stream_loop_;
    std::thread control_thread_, stream_thread_;
    std::shared_ptr<detail::run_gate> gate_ = std::make_shared<detail::run_gate>();
};

} // namespace sekuire

#endif
