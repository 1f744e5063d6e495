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
#include <sekuire/detail/worker_base.hpp>
#include <sekuire/detail/worker_driver.hpp>
#include <sekuire/error.hpp>
#include <sekuire/executor.hpp>
#include <sekuire/fwd.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/transport.hpp>
#include <sekuire/worker_options.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>

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
class basic_worker : private detail::worker_base {
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
    explicit basic_worker(Options options);

    /** A worker over the given policies.

        @throws sekuire::error with `errc::invalid_option` when an option is out of range
        (see `validate(const worker_options&, error_code&)`), or when a runtime token (or a
        `token_provider`) is the only credential and nothing names the installation: no
        installation id in the options or the environment, none in the store, no refresh
        or install token.
    */
    basic_worker(worker_options options, Transport transport, Clock clock = Clock(),
                 CredentialStore store = CredentialStore(), Executor executor = Executor());

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
    ~basic_worker() override;

    /// Registers the handler of `capability` (replacing an earlier one). Thread-safe.
    void on_task(std::string capability, task_handler handler) {
        worker_base::on_task(std::move(capability), std::move(handler));
    }

    /// Registers a command callback, called once per command id. Thread-safe.
    void on_command(command_handler handler) { worker_base::on_command(std::move(handler)); }

    /** Starts the worker: authenticates (waiting at most `start_timeout`, after the startup
        jitter), then runs the control loop and the task stream on two threads. Fails with
        `already_started`, or `shutting_down` for a worker already stopped.
        Without usable credentials the worker keeps retrying in the background (see
        `get_status()`).
    */
    void start(error_code& ec) { worker_base::start(ec); }

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
    void stop() noexcept { worker_base::stop(); }

    /// Blocks until the worker has stopped (after `stop()`, a terminate command or a
    /// revocation). Real time: for programs, not for fake-clock tests.
    void wait() { worker_base::wait(); }

    /// As `wait()`, for at most `timeout` of real time; true when stopped.
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> timeout) {
        return worker_base::wait_for(timeout);
    }

    /// Whether a pause command is in force.
    bool is_paused() const { return worker_base::is_paused(); }

    /** Pauses (`true`) or resumes (`false`) the worker as a pause or resume command would
        (a paused worker refuses new tasks with `worker_paused` and keeps heartbeating),
        without calling the command callbacks. A later command overrides it. Thread-safe.
    */
    void set_paused(bool paused) { worker_base::set_paused(paused); }

    /// A snapshot of the status. Thread-safe.
    worker_status get_status() const { return worker_base::get_status(); }

    /// Metrics for a beacon's heartbeat: tasks handled, errors, average handler latency.
    protocol::heartbeat_metrics metrics() const { return worker_base::metrics(); }

    /// True when the calling thread is running one of this worker's steps, callbacks or
    /// handlers (where waiting for the worker to stop would wait for itself).
    bool in_own_context() const noexcept { return worker_base::in_own_context(); }

    /// Applies a command that arrived another way (a beacon's heartbeat); each command id
    /// acts once. Thread-safe.
    void apply_command(const protocol::command& cmd) { worker_base::apply_command(cmd); }

    /// Applies a revocation that arrived another way (a beacon's heartbeat). Thread-safe.
    void apply_revocation(const protocol::revocation& r) { worker_base::apply_revocation(r); }

    /// Tells the worker the backend's active policy hash seen elsewhere (a beacon's
    /// heartbeat); the policy is fetched again when it changed. Thread-safe.
    void apply_policy_hash(const std::string& hash) { worker_base::apply_policy_hash(hash); }

    /** Starts the graceful shutdown of protocol.md section 5 without waiting: no new tasks,
        in-flight handlers get until `timeout`, results are reported. During a drain already
        under way, a shorter `timeout` (a revocation's) brings its end forward. Makes no
        network call on the calling thread. Thread-safe.
    */
    void begin_shutdown(std::chrono::milliseconds timeout, const std::string& why) {
        worker_base::begin_shutdown(timeout, why);
    }

    /** Does the control work due now (authentication, worker heartbeats, policy fetches,
        result retries, handler deadlines, the stream's idle watchdog, the drain) and
        returns the next deadline. Never throws.
    */
    steady_time_point step() noexcept { return worker_base::step(); }

    /** Opens the task stream when a connection is due and reads it until it ends (the
        backend closes it, it fails, it falls silent, or the worker shuts down), handling
        its events; returns when the next connection is due. Never throws.
    */
    steady_time_point stream_step() noexcept { return worker_base::stream_step(); }

    /// The options the worker was built with (validated, completed from the environment).
    const worker_options& options() const noexcept { return worker_base::options(); }
    /// The policy gateway that admits each task (rate limits, capability allow and deny).
    policy_gateway& gateway() noexcept { return worker_base::gateway(); }
    /// The transport (a handle: copies share its connections).
    Transport& transport() noexcept { return transport_; }
    /// The clock every deadline is read from.
    Clock& clock() noexcept { return clock_; }
    /// The credential store (shared with a beacon when it was given the same handle).
    CredentialStore& credential_store() noexcept { return store_; }

private:
    // A template: only the options-only constructor needs it.
    template <class E = Executor>
    static E make_executor(const worker_options& o) {
        if constexpr (std::is_constructible<E, std::size_t>::value) {
            return E(o.max_concurrent_handlers);
        } else {
            return E();
        }
    }

    // The policies, as detail::worker_base reaches them.
    clock_reading read_now() override;
    steady_time_point steady_now() override;
    void see_store() override;
    void store_effect(const worker_effect& e) override;
    http_response send_request(const http_request& req, error_code& ec) override;
    void open_stream(const http_request& req, stream_callbacks& cb, stop_token stop, error_code& ec) override;
    void post_handler(std::function<void()> run) override;
    bool wait_loop(detail::wake_loop& loop, steady_time_point next) override;

    Transport transport_;
    Clock clock_;
    CredentialStore store_;
    Executor executor_;

    template <class, class, class, class, class>
    friend class basic_sdk; // holds its workers as detail::worker_base
};

// Defined outside the class: not inline, so that `extern template` (SEKUIRE_SEPARATE_COMPILATION)
// keeps every file but the one including <sekuire/src.hpp> from instantiating them.

template <class Transport, class Clock, class CredentialStore, class Executor>
template <class Options, class>
basic_worker<Transport, Clock, CredentialStore, Executor>::basic_worker(Options options)
    : basic_worker(prepared{}, detail::prepare(std::move(options))) {}

template <class Transport, class Clock, class CredentialStore, class Executor>
basic_worker<Transport, Clock, CredentialStore, Executor>::basic_worker(worker_options options, Transport transport,
                                                                        Clock clock, CredentialStore store,
                                                                        Executor executor)
    : worker_base(detail::prepare(std::move(options))), transport_(std::move(transport)), clock_(std::move(clock)),
      store_(std::move(store)), executor_(std::move(executor)) {
    // The stream's path names the installation, which a runtime token alone does not
    // (tokens are opaque): unless the store names it, say at once what else to give.
    error_code ec;
    const std::string why = detail::runtime_token_alone(core_.options(), store_.load(ec));
    if (!why.empty()) throw error(errc::invalid_option, why);
}

template <class Transport, class Clock, class CredentialStore, class Executor>
basic_worker<Transport, Clock, CredentialStore, Executor>::~basic_worker() {
    stop();
    close_gate(); // before the policies the handlers under way reach are gone
}

template <class Transport, class Clock, class CredentialStore, class Executor>
clock_reading basic_worker<Transport, Clock, CredentialStore, Executor>::read_now() {
    return read_clock(clock_);
}

template <class Transport, class Clock, class CredentialStore, class Executor>
steady_time_point basic_worker<Transport, Clock, CredentialStore, Executor>::steady_now() {
    return clock_.steady_now();
}

template <class Transport, class Clock, class CredentialStore, class Executor>
void basic_worker<Transport, Clock, CredentialStore, Executor>::see_store() {
    detail::see_store(store_, core_, store_version_);
}

template <class Transport, class Clock, class CredentialStore, class Executor>
void basic_worker<Transport, Clock, CredentialStore, Executor>::store_effect(const worker_effect& e) {
    detail::perform_store_effect(store_, core_, e, clock_);
}

template <class Transport, class Clock, class CredentialStore, class Executor>
http_response basic_worker<Transport, Clock, CredentialStore, Executor>::send_request(const http_request& req,
                                                                                     error_code& ec) {
    return transport_.send(req, ec);
}

template <class Transport, class Clock, class CredentialStore, class Executor>
void basic_worker<Transport, Clock, CredentialStore, Executor>::open_stream(const http_request& req, stream_callbacks& cb,
                                                                            stop_token stop, error_code& ec) {
    transport_.stream(req, cb, std::move(stop), ec);
}

template <class Transport, class Clock, class CredentialStore, class Executor>
void basic_worker<Transport, Clock, CredentialStore, Executor>::post_handler(std::function<void()> run) {
    executor_.post(std::move(run));
}

template <class Transport, class Clock, class CredentialStore, class Executor>
bool basic_worker<Transport, Clock, CredentialStore, Executor>::wait_loop(detail::wake_loop& loop, steady_time_point next) {
    return loop.wait(clock_, next);
}

} // namespace sekuire

#endif
