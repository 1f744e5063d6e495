// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_ASYNC_WORKER_HPP
#define SEKUIRE_ASYNC_WORKER_HPP

/// @file
/// `sekuire::async::basic_worker`: the TaskWorker on an Asio executor the user gives. The
/// task stream is an `async_stream` of an AsyncTransport, every other request an
/// `async_send`, every wake-up a timer; it has no thread of its own, so one thread can carry
/// thousands of workers with open task streams. `worker_core` decides everything, as for the
/// synchronous `sekuire::basic_worker`.
///
/// The default typedef `sekuire::async::worker` runs over `beast_transport`, the system
/// clock and the default credential store.

#include <sekuire/async/beacon.hpp>
#include <sekuire/beast_transport.hpp>
#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
#include <sekuire/core/worker_core.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/detail/driver_support.hpp>
#include <sekuire/detail/erased_handler.hpp>
#include <sekuire/detail/make_policy.hpp>
#include <sekuire/detail/store_effects.hpp>
#include <sekuire/detail/worker_driver.hpp>
#include <sekuire/error.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/transport.hpp>
#include <sekuire/worker_options.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace sekuire {
namespace async {

/** The completion of one task given to an asynchronous handler (`async_task_handler`):
    call it once with the task's output, or `fail()` it.

    A cheap handle: copies share the completion, and only the first call of any copy
    counts (later ones are ignored). It may be called from any thread, inside the handler
    or long after it returned; the result reaches the worker's strand by a post. A
    completion never called is not lost: the task fails with `handler_timeout` at its
    deadline (the earlier of the task's `deadline_at` and `worker_options::handler_timeout`),
    as a synchronous handler that overruns does; the handler's `task_context::stop` fires
    then.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class task_done {
public:
    /// The worker's end of a completion: receives the outcome once (used by the worker).
    using report_type = std::function<void(detail::handler_outcome)>;

    /// A completion that hands its outcome to `report` (built by the worker).
    explicit task_done(report_type report) : shared_(std::make_shared<shared>(std::move(report))) {}

    /// Completes the task with `output`.
    void operator()(boost::json::value output) const {
        detail::handler_outcome o;
        o.output = std::move(output);
        report(std::move(o));
    }

    /// Fails the task with `code` and `message` (as a handler throwing `task_failure`).
    void fail(protocol::task_error code, const std::string& message) const {
        detail::handler_outcome o;
        o.status = protocol::task_status::failed;
        o.error = protocol::completion_error{code, message};
        report(std::move(o));
    }

    /** Fails the task with what `e` holds, as a synchronous handler that threw it: a
        `task_failure` keeps its code, anything else is a `handler_error`. */
    void fail(std::exception_ptr e) const {
        report(detail::run_handler(
            [&](const task_context&, const boost::json::value&) -> boost::json::value { std::rethrow_exception(e); },
            protocol::task(), wall_time_point{}, stop_token()));
    }

    /// Whether a copy of this completion was called already.
    bool done() const noexcept { return shared_->used.load(); }

private:
    struct shared {
        explicit shared(report_type r) : report(std::move(r)) {}
        report_type report;
        std::atomic<bool> used{false};
    };
    void report(detail::handler_outcome o) const {
        if (shared_->used.exchange(true)) return;
        shared_->report(std::move(o));
    }
    std::shared_ptr<shared> shared_;
};

/** An asynchronous capability handler: starts the work for a task and returns at once;
    the work completes through `done` (see `task_done`), from any thread, at any later
    time. It runs on the worker's strand, so it must not block; an exception it throws
    before returning fails the task as a synchronous handler's would (unless `done` was
    called already). With C++20 coroutines, `co_spawn` the work and call `done` from its
    completion.
*/
using async_task_handler =
    std::function<void(const task_context& ctx, const boost::json::value& input, task_done done)>;

/** The TaskWorker on an executor: authenticates, keeps the task stream open, runs the
    handler registered for each task's capability, reports every result, obeys commands
    and the kill switch, all as asynchronous operations.

    @tparam AsyncTransport an AsyncTransport (`<sekuire/transport.hpp>`): `async_stream`
    carries the task stream, `async_send` every other request; each handler is bound to the
    worker's strand and to a cancellation slot.
    @tparam Clock a Clock: the time fed to the core.
    @tparam CredentialStore a CredentialStore (share one with a beacon: a token refreshed by
    either is used by both); its operations never wait, so they run inline on the strand.
    @tparam Timer a Timer (see `sekuire::async::steady_timer`) reading the same steady time
    as `Clock`.

    **Handlers.** `on_task(capability, task_handler)` registers a synchronous handler: it
    runs on the worker's strand, between the worker's other work, so it must be quick (a
    computation, not a wait); a handler that blocks blocks every agent on that thread.
    `on_task_async(capability, async_task_handler)` registers an asynchronous one: it
    starts the work and returns, and completes the task later through its `task_done` (a
    handler that sleeps does so with a timer and holds nothing up). Either way a task runs
    under `worker_options::max_concurrent_handlers`, its `task_context::stop` fires at its
    deadline or when a drain runs out, and its result is reported and retried until the
    backend has it, exactly as `sekuire::basic_worker` does.

    **Starting and stopping.** `async_start()` completes (`void(error_code)`) once the
    first authentication was tried and answered (after the startup jitter), or after
    `start_timeout`, as `basic_worker::start()` returns; without usable credentials the
    worker keeps retrying in the background. `async_stop()` runs the graceful shutdown of
    protocol.md section 5 (no new tasks, handlers under way get until `drain_timeout`,
    results reported, the stream closed) and completes when it is over. Both take any Asio
    completion token: a callback, `boost::asio::use_future`, or in C++20
    `boost::asio::use_awaitable`.

    Destroying a running worker begins its stop without calling the user's callbacks again;
    the drain still runs while the executor runs.

    The user's callbacks (`worker_options::logger`, `on_command`, `on_revoked`, and the
    handlers) run on the strand.

    @par Thread Safety
    Every member function is safe from any thread (work is posted to the strand), except
    that destroying the object must not race with calls to it.
*/
template <class AsyncTransport, class Clock = system_clock, class CredentialStore = credential_store,
          class Timer = steady_timer>
class basic_worker {
    static_assert(detail::transport_has_async_send<AsyncTransport>::value,
                  "AsyncTransport requirements not met: missing `async_send(const http_request&, CompletionToken)`");
    static_assert(detail::transport_has_async_stream<AsyncTransport>::value,
                  "AsyncTransport requirements not met: missing `async_stream(const http_request&, stream_callbacks, "
                  "CompletionToken)`");
    static_assert(check_clock<Clock>::value, "");
    static_assert(check_credential_store<CredentialStore>::value, "");

public:
    using transport_type = AsyncTransport;          ///< the AsyncTransport policy
    using clock_type = Clock;                       ///< the Clock policy
    using credential_store_type = CredentialStore; ///< the CredentialStore policy
    using timer_type = Timer;                       ///< the Timer policy
    /// The executor given (the worker runs on a strand of it).
    using executor_type = boost::asio::any_io_executor;

    /** A worker on `ex` whose policies are built from the options: the transport from
        `(ex, api_base_url, transport)`, the store from `credentials_file`, the timer from
        `ex`, the clock by default.
        @throws sekuire::error when an option is out of range (`errc::invalid_option`, as
        for `sekuire::basic_worker`) or the base URL is refused by the transport.
    */
    template <class Options = worker_options, class = std::enable_if_t<std::is_convertible<Options, worker_options>::value>>
    basic_worker(const executor_type& ex, Options options) : basic_worker(prepared{}, ex, detail::prepare(std::move(options))) {}

    /** A worker on `ex` over the given policies (copies of handles share state with the
        caller's); the timer is built from `ex`.
        @throws sekuire::error as the options-only constructor.
    */
    template <class T = Timer, class = std::enable_if_t<std::is_constructible<T, const executor_type&>::value>>
    basic_worker(const executor_type& ex, worker_options options, AsyncTransport transport, Clock clock = Clock(),
                 CredentialStore store = CredentialStore())
        : basic_worker(ex, std::move(options), std::move(transport), std::move(clock), std::move(store),
                       Timer(boost::asio::any_io_executor(ex))) {}

    /** A worker on `ex` over the given policies and timer.
        @throws sekuire::error with `errc::invalid_option` when an option is out of range,
        or when a runtime token (or a `token_provider`) is the only credential and nothing
        names the installation (see `sekuire::basic_worker`).
    */
    basic_worker(const executor_type& ex, worker_options options, AsyncTransport transport, Clock clock,
                 CredentialStore store, Timer timer)
        : state_(std::make_shared<state>(ex, detail::prepare(std::move(options)), std::move(transport), std::move(clock),
                                         std::move(store), std::move(timer))) {
        error_code ec;
        const std::string why = detail::runtime_token_alone(state_->core_.options(), state_->store_.load(ec));
        if (!why.empty()) throw error(errc::invalid_option, why);
    }

    basic_worker(const basic_worker&) = delete;
    basic_worker& operator=(const basic_worker&) = delete;

    /// Begins the stop of a running worker without calling the user's callbacks again (see
    /// the class comment). Never throws.
    ~basic_worker() {
        try {
            auto st = state_;
            boost::asio::post(st->strand_, [st] {
                st->detached_ = true;
                st->begin_stop();
            });
        } catch (...) {
        }
    }

private:
    struct prepared {};
    template <class Options>
    basic_worker(prepared, const executor_type& ex, const Options& options)
        : basic_worker(ex, options, AsyncTransport(ex, options.api_base_url, options.transport), Clock(),
                       detail::make_store<CredentialStore>(options.credentials_file)) {}

public:
    /** Registers the synchronous handler of `capability` (replacing an earlier one): it
        runs on the worker's strand and must not block (see the class comment). Takes
        effect on the strand, before anything posted later. Thread-safe. */
    void on_task(std::string capability, task_handler handler) {
        auto st = state_;
        boost::asio::post(st->strand_, [st, c = std::move(capability), h = std::move(handler)]() mutable {
            st->core_.add_capability(c);
            st->handlers_[std::move(c)] = entry{std::move(h), nullptr};
        });
    }

    /** Registers the asynchronous handler of `capability` (replacing an earlier one): it
        starts the work and completes the task through its `task_done` (see
        `async_task_handler`). Thread-safe. */
    void on_task_async(std::string capability, async_task_handler handler) {
        auto st = state_;
        boost::asio::post(st->strand_, [st, c = std::move(capability), h = std::move(handler)]() mutable {
            st->core_.add_capability(c);
            st->handlers_[std::move(c)] = entry{nullptr, std::move(h)};
        });
    }

    /// Registers a command callback, called once per command id (before the options'
    /// `on_command`), on the strand. Thread-safe.
    void on_command(command_handler handler) {
        auto st = state_;
        boost::asio::post(st->strand_, [st, h = std::move(handler)]() mutable { st->command_handler_ = std::move(h); });
    }

    /** Starts the worker: authenticates (after the startup jitter), then opens the task
        stream and runs the control work at its cadence. Completes (signature
        `void(error_code)`) once the first authentication was tried and answered, or after
        `start_timeout`, without an error: check `get_status()`. Completes with
        `errc::already_started` when started before, `errc::shutting_down` when stopped
        already. Completion never happens inside this call.
    */
    template <class CompletionToken>
    auto async_start(CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(error_code)>(
            [st = state_](auto handler) {
                auto h = detail::erase_handler<error_code>(std::move(handler), st->strand_);
                boost::asio::post(st->strand_, [st, h = std::move(h)]() mutable { st->start(std::move(h)); });
            },
            token);
    }

    /** Stops gracefully: no new tasks; handlers under way get until `drain_timeout` (their
        stop tokens fire then), their results and any still unsent are reported, the stream
        is closed; completes (signature `void(error_code)`, never an error) when all that is
        over and no request is left under way. A worker never started stops at once. A
        pending `async_start` completes too. Completion never happens inside this call.
    */
    template <class CompletionToken>
    auto async_stop(CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(error_code)>(
            [st = state_](auto handler) {
                auto h = detail::erase_handler<error_code>(std::move(handler), st->strand_);
                boost::asio::post(st->strand_, [st, h = std::move(h)]() mutable { st->stop(std::move(h)); });
            },
            token);
    }

    /// A snapshot of the status (as of the end of the worker's last round of work).
    /// Thread-safe.
    worker_status get_status() const {
        std::lock_guard<std::mutex> lock(state_->status_mutex_);
        return state_->status_;
    }

    /// Whether a pause is in force (as of the last round of work). Thread-safe.
    bool is_paused() const {
        std::lock_guard<std::mutex> lock(state_->status_mutex_);
        return state_->status_.paused;
    }

    /// Whether the worker has stopped (its drain is over). Thread-safe.
    bool is_finished() const {
        std::lock_guard<std::mutex> lock(state_->status_mutex_);
        return state_->finished_published_;
    }

    /// Metrics for a beacon's heartbeat: tasks handled, errors, average handler latency (as
    /// of the last round of work). Thread-safe.
    protocol::heartbeat_metrics metrics() const {
        std::lock_guard<std::mutex> lock(state_->status_mutex_);
        return state_->metrics_;
    }

    /// Pauses (`true`) or resumes (`false`) as a pause or resume command would, without the
    /// command callbacks, on the strand. Thread-safe.
    void set_paused(bool paused) {
        post_input([paused](state& s) { s.core_.set_paused(paused); });
    }

    /// Applies a command that arrived another way (a beacon's heartbeat); each command id
    /// acts once. Thread-safe.
    void apply_command(const protocol::command& cmd) {
        post_input([cmd](state& s) { s.core_.apply_command(cmd, read_clock(s.clock_)); });
    }

    /// Applies a revocation that arrived another way (a beacon's heartbeat). Thread-safe.
    void apply_revocation(const protocol::revocation& r) {
        post_input([r](state& s) { s.core_.apply_revocation(r, read_clock(s.clock_)); });
    }

    /// Tells the worker the backend's active policy hash seen elsewhere (a beacon's
    /// heartbeat); the policy is fetched again when it changed. Thread-safe.
    void apply_policy_hash(const std::string& hash) {
        post_input([hash](state& s) { s.core_.apply_policy_hash(hash); });
    }

    /** Starts the graceful shutdown without waiting for it (see `async_stop`); a shorter
        `timeout` during a drain brings its end forward. Thread-safe. */
    void begin_shutdown(std::chrono::milliseconds timeout, const std::string& why) {
        post_input([timeout, why](state& s) { s.core_.begin_shutdown(timeout, why, read_clock(s.clock_)); });
    }

    /// The options the worker was built with (validated).
    const worker_options& options() const noexcept { return state_->core_.options(); }
    /// The strand the worker runs on.
    boost::asio::strand<executor_type> get_executor() const { return state_->strand_; }
    /// The transport (a handle; use from the strand only when it is not thread-safe).
    AsyncTransport& transport() noexcept { return state_->transport_; }
    /// The clock.
    Clock& clock() noexcept { return state_->clock_; }
    /// The credential store (shared with a beacon when it was given the same handle).
    CredentialStore& credential_store() noexcept { return state_->store_; }

private:
    using handler_type = detail::erased_handler<error_code>;

    struct entry {
        task_handler sync;
        async_task_handler async;
    };

    struct state;

    template <class F>
    void post_input(F f) {
        auto st = state_;
        boost::asio::post(st->strand_, [st, f = std::move(f)]() mutable {
            st->guarded([&] {
                f(*st);
                st->pump();
            });
            st->after();
        });
    }

    // Everything the operations under way need; they hold it alive.
    struct state : std::enable_shared_from_this<state> {
        state(const executor_type& ex, worker_options o, AsyncTransport t, Clock c, CredentialStore s, Timer tm)
            : strand_(boost::asio::make_strand(ex)), transport_(std::move(t)), clock_(std::move(c)), store_(std::move(s)),
              timer_(std::move(tm)), core_(std::move(o)) {
            status_ = core_.status(false);
        }

        // ---- on the strand -----------------------------------------------------------

        void start(handler_type h) {
            if (core_.finished() || stop_requested_) {
                h(errc::shutting_down);
                return;
            }
            if (started_) {
                h(errc::already_started);
                return;
            }
            started_ = true;
            start_waiters_.push_back(std::move(h));
            start_deadline_ = clock_.steady_now() + core_.options().start_timeout;
            run();
        }

        void stop(handler_type h) {
            if (stopped_) {
                h(error_code());
                return;
            }
            stop_waiters_.push_back(std::move(h));
            begin_stop();
        }

        void begin_stop() {
            if (stop_requested_ || core_.finished()) {
                after();
                return;
            }
            stop_requested_ = true;
            guarded([&] {
                if (!started_) {
                    // Never started: nothing to drain, nothing to tell anyone.
                    core_.force_finish(read_clock(clock_), false);
                } else {
                    core_.begin_shutdown(core_.options().drain_timeout, "stopping", read_clock(clock_));
                }
                pump();
            });
            after();
        }

        // The control work due now, and the stream's next connection when it is due.
        void run() {
            if (!started_) return;
            guarded([&] {
                see_store();
                core_.advance(read_clock(clock_));
                pump();
                connect_if_due();
            });
            after();
        }

        void connect_if_due() {
            if (!started_ || stream_signal_ || core_.finished()) return;
            const steady_time_point now = clock_.steady_now();
            if (core_.stream_next() > now || stream_retry_at_ > now) return;
            worker_core::stream_decision d = core_.stream_connect(read_clock(clock_));
            pump();
            if (d.request) {
                stream_retry_at_ = steady_time_point::min();
                open_stream(*d.request, d.op);
            } else {
                // Not now (authentication under way, say): asked again then, or at a wake_stream.
                stream_retry_at_ = d.next;
            }
        }

        template <class F>
        void guarded(F&& f) {
            try {
                f();
            } catch (const std::exception& e) {
                log(log_level::error, std::string("internal error: ") + e.what());
            } catch (...) {
                log(log_level::error, "internal error");
            }
        }

        void see_store() { detail::see_store(store_, core_, store_version_); }

        // Performs the core's effects: store operations and stop tokens at once; requests,
        // the stream and handler runs as asynchronous operations whose results come back
        // to the strand.
        void pump() {
            for (int rounds = 0; rounds < 100000 && !core_.effects().empty(); ++rounds) {
                batch_.clear();
                batch_.swap(core_.effects());
                for (worker_effect& e : batch_) {
                    using t = worker_effect::type;
                    if (detail::perform_store_effect(store_, core_, e, clock_)) continue;
                    switch (e.what) {
                    case t::send: send(e); break;
                    case t::run_handler: run_handler(std::move(e)); break;
                    case t::cancel_handler: {
                        auto it = handler_stops_.find(e.text);
                        if (it != handler_stops_.end()) {
                            std::shared_ptr<stop_source> s = it->second;
                            s->request_stop(); // stop callbacks run here, on the strand
                        }
                        break;
                    }
                    case t::close_stream:
                        if (e.op == stream_op_ && stream_signal_) close_stream_now();
                        break;
                    case t::wake_control: break; // after() arms the timer from the core's times
                    case t::wake_stream: stream_retry_at_ = steady_time_point::min(); break;
                    case t::finished: notifications_.push_back(std::move(e)); break;
                    default: notifications_.push_back(std::move(e)); break;
                    }
                }
            }
        }

        void send(const worker_effect& e) {
            if (!core_.wants(e.op)) return; // moot since it was asked for
            auto signal = std::make_shared<boost::asio::cancellation_signal>();
            requests_[e.op] = signal;
            const operation_id op = e.op;
            auto self = this->shared_from_this();
            transport_.async_send(e.request,
                                  boost::asio::bind_cancellation_slot(
                                      signal->slot(), boost::asio::bind_executor(strand_, [self, signal, op](error_code ec,
                                                                                                             http_response res) {
                                          self->answered(op, ec, std::move(res));
                                      })));
        }

        void answered(operation_id op, error_code ec, http_response res) {
            requests_.erase(op);
            guarded([&] {
                core_.on_response(op, ec, std::move(res), read_clock(clock_));
                pump();
                connect_if_due();
            });
            after();
        }

        // ---- the task stream ---------------------------------------------------------

        void open_stream(const http_request& req, operation_id op) {
            auto signal = std::make_shared<boost::asio::cancellation_signal>();
            auto closing = std::make_shared<std::atomic<bool>>(false);
            stream_signal_ = signal;
            stream_closing_ = closing;
            stream_op_ = op;
            std::weak_ptr<state> weak = this->shared_from_this();
            // The callbacks run on the transport's executor: they hand what came to the
            // strand, in order, and end the connection once the core asked for that.
            stream_callbacks cb;
            cb.on_response = [weak, op, closing](const http_response& head) {
                if (auto st = weak.lock())
                    boost::asio::post(st->strand_, [st, op, status = head.status, headers = head.headers] {
                        st->stream_head(op, status, headers);
                    });
                return !closing->load();
            };
            cb.on_data = [weak, op, closing](std::string_view chunk) {
                if (auto st = weak.lock())
                    boost::asio::post(st->strand_, [st, op, c = std::string(chunk)] { st->stream_data(op, c); });
                return !closing->load();
            };
            auto self = this->shared_from_this();
            transport_.async_stream(req, std::move(cb),
                                    boost::asio::bind_cancellation_slot(
                                        signal->slot(), boost::asio::bind_executor(strand_, [self, signal, op](error_code ec) {
                                            self->stream_ended(signal, op, ec);
                                        })));
        }

        void close_stream_now() {
            if (stream_closing_) stream_closing_->store(true);
            if (stream_signal_ && !stream_cancelled_) {
                stream_cancelled_ = true;
                stream_signal_->emit(boost::asio::cancellation_type::terminal);
            }
        }

        void stream_head(operation_id op, int status, const header_list& headers) {
            guarded([&] {
                core_.on_stream_head(op, status, headers, read_clock(clock_));
                pump();
            });
            after();
        }

        void stream_data(operation_id op, const std::string& chunk) {
            guarded([&] {
                const bool go = core_.on_stream_data(op, chunk, read_clock(clock_));
                pump();
                if (!go && op == stream_op_ && stream_signal_) close_stream_now();
            });
            after();
        }

        void stream_ended(const std::shared_ptr<boost::asio::cancellation_signal>& signal, operation_id op, error_code ec) {
            if (stream_signal_ == signal) {
                stream_signal_.reset();
                stream_closing_.reset();
                stream_cancelled_ = false;
            }
            guarded([&] {
                core_.on_stream_end(op, ec, read_clock(clock_));
                pump();
            });
            run(); // the control work it woke, and the next connection when due now
        }

        // ---- handlers ----------------------------------------------------------------

        void run_handler(worker_effect e) {
            auto stop = std::make_shared<stop_source>();
            handler_stops_[e.task.task_id] = stop;
            auto self = this->shared_from_this();
            boost::asio::post(strand_, [self, task = std::move(e.task), deadline = e.deadline, stop]() mutable {
                self->run_task(std::move(task), deadline, stop);
            });
        }

        void run_task(protocol::task task, wall_time_point deadline, const std::shared_ptr<stop_source>& stop) {
            bool go = false;
            guarded([&] { go = core_.handler_starting(task.task_id, read_clock(clock_)); });
            if (!go) {
                handler_stops_.erase(task.task_id);
                after();
                return;
            }
            entry handler;
            if (auto it = handlers_.find(task.capability); it != handlers_.end()) handler = it->second;
            if (!handler.async) {
                detail::handler_outcome out = detail::run_handler(handler.sync, task, deadline, stop->get_token());
                handler_done(task.task_id, std::move(out));
                return;
            }
            std::weak_ptr<state> weak = this->shared_from_this();
            task_done done([weak, id = task.task_id](detail::handler_outcome out) {
                auto st = weak.lock();
                if (!st) return; // the worker is gone, and its core with it
                boost::asio::post(st->strand_, [st, id, out = std::move(out)]() mutable { st->handler_done(id, std::move(out)); });
            });
            const async_task_handler& h = handler.async;
            detail::handler_outcome started = detail::run_handler(
                [&](const task_context& ctx, const boost::json::value& input) -> boost::json::value {
                    h(ctx, input, done);
                    return nullptr;
                },
                task, deadline, stop->get_token());
            // Thrown before returning: the task fails as a synchronous handler's would.
            if (started.status != protocol::task_status::completed && started.error)
                done.fail(started.error->code, started.error->message);
        }

        void handler_done(const std::string& id, detail::handler_outcome out) {
            handler_stops_.erase(id);
            guarded([&] {
                core_.on_handler_done(id, out.status, std::move(out.output), std::move(out.error), read_clock(clock_));
                pump();
            });
            after();
        }

        // ---- after every input -------------------------------------------------------

        // Status, callbacks, completions, the next wake-up.
        void after() {
            publish();
            flush();
            if (!start_waiters_.empty() && core_.first_step_done() && requests_.empty()) complete_start();
            if (core_.finished()) {
                if (!stopped_ && requests_.empty() && !stream_signal_) finish();
                if (stream_signal_) close_stream_now();
                if (!stopped_) return; // the answers under way come back here
                timer_.cancel();
                return;
            }
            if (!started_) return;
            steady_time_point next = core_.next_wake();
            if (!stream_signal_) next = std::min(next, std::max(core_.stream_next(), stream_retry_at_));
            if (!start_waiters_.empty()) next = std::min(next, start_deadline_);
            const std::uint64_t gen = ++timer_generation_;
            if (next == steady_time_point::max()) {
                armed_ = false;
                timer_.cancel();
                return;
            }
            if (armed_ && next == armed_at_) {
                timer_generation_ = armed_gen_; // the wait armed already is the right one
                return;
            }
            armed_ = true;
            armed_at_ = next;
            armed_gen_ = gen;
            // A destroyed worker's drain is kept alive by its timer until it is over.
            std::weak_ptr<state> weak = this->shared_from_this();
            std::shared_ptr<state> keep = detached_ ? this->shared_from_this() : nullptr;
            timer_.async_wait_until(next, boost::asio::bind_executor(strand_, [weak, keep, gen](error_code ec) {
                                        auto st = weak.lock();
                                        if (!st || gen != st->timer_generation_) return;
                                        st->armed_ = false;
                                        if (ec) return;
                                        st->woken();
                                    }));
        }

        void woken() {
            if (!start_waiters_.empty() && clock_.steady_now() >= start_deadline_) complete_start();
            run();
            if (!started_) after();
        }

        void finish() {
            if (stopped_) return;
            stopped_ = true;
            ++timer_generation_;
            armed_ = false;
            timer_.cancel();
            for (auto& kv : requests_) kv.second->emit(boost::asio::cancellation_type::terminal);
            publish();
            complete_start();
            auto waiters = std::move(stop_waiters_);
            stop_waiters_.clear();
            for (auto& h : waiters) h(error_code());
        }

        void complete_start() {
            if (start_waiters_.empty()) return;
            auto waiters = std::move(start_waiters_);
            start_waiters_.clear();
            for (auto& h : waiters) h(error_code());
        }

        void publish() {
            worker_status s = core_.status(started_);
            protocol::heartbeat_metrics m = core_.metrics();
            std::lock_guard<std::mutex> lock(status_mutex_);
            status_ = std::move(s);
            metrics_ = m;
            finished_published_ = core_.finished();
        }

        // Calls the user's callbacks (on the strand; none once the worker is destroyed).
        void flush() {
            if (notifications_.empty()) return;
            std::vector<worker_effect> ready;
            ready.swap(notifications_);
            if (detached_) return;
            detail::deliver(core_.options(), command_handler_, ready);
        }

        void log(log_level level, const std::string& message) const {
            if (!detached_) detail::deliver_log(core_.options().logger, level, message);
        }

        boost::asio::strand<executor_type> strand_;
        AsyncTransport transport_;
        Clock clock_;
        CredentialStore store_;
        Timer timer_;
        worker_core core_;
        std::map<std::string, entry> handlers_;
        command_handler command_handler_;
        std::map<std::string, std::shared_ptr<stop_source>> handler_stops_;
        std::map<operation_id, std::shared_ptr<boost::asio::cancellation_signal>> requests_;
        std::shared_ptr<boost::asio::cancellation_signal> stream_signal_;
        std::shared_ptr<std::atomic<bool>> stream_closing_;
        bool stream_cancelled_ = false;
        steady_time_point stream_retry_at_ = steady_time_point::min(); // a "not now" of stream_connect
        operation_id stream_op_ = 0;
        std::vector<worker_effect> batch_;
        std::vector<worker_effect> notifications_;
        std::vector<handler_type> start_waiters_;
        std::vector<handler_type> stop_waiters_;
        std::uint64_t timer_generation_ = 0;
        bool armed_ = false;
        steady_time_point armed_at_{};
        std::uint64_t armed_gen_ = 0;
        steady_time_point start_deadline_ = steady_time_point::max();
        bool started_ = false;
        bool stop_requested_ = false;
        bool stopped_ = false;
        bool detached_ = false;
        std::optional<std::uint64_t> store_version_;

        mutable std::mutex status_mutex_;
        worker_status status_;
        protocol::heartbeat_metrics metrics_;
        bool finished_published_ = false;
    };

    std::shared_ptr<state> state_;
};

/// The asynchronous worker over `beast_transport` and the default policies.
using worker = basic_worker<beast_transport>;

} // namespace async
} // namespace sekuire

#endif
