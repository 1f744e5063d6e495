// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_CORE_WORKER_CORE_HPP
#define SEKUIRE_CORE_WORKER_CORE_HPP

/// @file
/// `worker_core`: the TaskWorker's decisions (authentication in the TaskWorker's order,
/// the task stream and its pacing, task admission, handler deadlines, results and their
/// retries, worker heartbeats, policy fetches, commands, the kill switch and the drain) as
/// a plain state machine without I/O. `basic_worker` and the asynchronous worker drive it.
///
/// @par Driving it
/// As `beacon_core` (see `<sekuire/core/beacon_core.hpp>`), with two more kinds of input
/// and effect:
///
/// - The task stream: `stream_connect(now)` says when to open it and gives the request;
///   the driver feeds what the connection brings (`on_stream_head`, `on_stream_data`,
///   `on_stream_end`) and closes it when asked (`close_stream`). A threaded driver may
///   decode the bytes first, without the core (`stream_decoder`: the SSE framing and each
///   task's JSON), and feed the result with `on_stream_chunk` instead of `on_stream_data`:
///   the work done under its lock is then only the decisions.
/// - Handlers: `run_handler` asks the driver to run the handler of a task on its executor;
///   the driver asks `handler_starting()` right before it runs (false: skip it) and feeds
///   its outcome with `on_handler_done()`; `cancel_handler` fires the handler's stop token.
///   The effect's task owns the input (the core keeps no copy of it): a driver whose
///   executor refuses the run gives the task back with `on_handler_refused()`.
///
/// Unlike the beacon's, several operations may be outstanding at once (the stream, the
/// results of several tasks, a worker heartbeat, a policy fetch): each names its result
/// by its operation id. Authentication (a bootstrap or a refresh) is one flow at a time;
/// what needs credentials meanwhile waits for it. `wake_control` and `wake_stream` tell a
/// threaded driver that the control work or the stream's next connection moved earlier.
///
/// @par Thread Safety
/// Distinct objects: Safe. Shared objects: Unsafe (the caller serialises every call).

#include <sekuire/core/auth_chain.hpp>
#include <sekuire/core/common.hpp>
#include <sekuire/detail/pacing.hpp>
#include <sekuire/mask.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/sse.hpp>
#include <sekuire/worker_options.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sekuire {

/// Something a `worker_core` asks its driver to do, or to tell the user.
struct worker_effect {
    /// The kinds of effect; each names the fields it uses.
    enum class type : std::uint8_t {
        send,           ///< send `request`; result: `on_response(op, ...)`
        close_stream,   ///< end the stream connection `op` (fire its stop token)
        run_handler,    ///< run the handler of `task` on the executor (see `handler_starting`)
        cancel_handler, ///< fire the stop token of the handler of task `text`
        lock_refresh,   ///< as `beacon_effect`
        unlock_refresh, ///< as `beacon_effect`
        save,           ///< as `beacon_effect`
        clear,          ///< as `beacon_effect`
        adopt_token,    ///< never asked for by a worker
        forget_token,   ///< never asked for by a worker
        check_writable, ///< as `beacon_effect`
        wake_control,   ///< the control work is due earlier than the driver knew: `advance()` soon
        wake_stream,    ///< the stream may connect earlier than the driver knew: `stream_connect()` soon
        log,            ///< hand `line` to the logger
        command,        ///< call the command callbacks with `command`
        revoked,        ///< call `on_revoked` with `revocation`
        finished,       ///< the worker has stopped (the drain is over)
    };
    /// Which effect this is.
    type what = type::log;
    /// The operation to name when feeding its result back, or the stream connection for
    /// `close_stream` (0 for notifications).
    operation_id op = 0;
    /// For `send`: the request to send.
    http_request request;
    /// For `save`: what to save.
    std::optional<installation_credentials> credentials;
    /// Unused by a worker (its `adopt_token` never comes); kept so both effect types match.
    protocol::refreshed_token token;
    /// Unused by a worker, as `token`.
    wall_time_point when{};
    /// For `cancel_handler`: the task id.
    std::string text;
    /// For `log`: the line to log.
    log_line line;
    /// For `command`: the command.
    protocol::command command;
    /// For `revoked`: the revocation.
    revocation_info revocation;
    /// For `run_handler`: the task to run, with its input (which the core does not keep).
    protocol::task task;
    /// For `run_handler`: the task's effective deadline, in wall time.
    wall_time_point deadline{};
};

/** The TaskWorker as a state machine without I/O (see the file comment).

    Built from validated options (`detail::prepare`). Jitter is drawn from `options.random`.
    The policy gateway of the options decides admission (it is called from the core: a
    gateway must not block). A `token_provider` is called when credentials are needed (it
    must not block either).
*/
class worker_core {
public:
    /// What `stream_connect()` decided.
    struct stream_decision {
        /// The connection to open now, with its operation id (none: not now).
        std::optional<http_request> request;
        /// The operation id of that connection: its events and its end are fed back with it.
        operation_id op = 0;
        /// When to ask again (when no connection is to be opened now).
        steady_time_point next = steady_time_point::max();
    };

    /** One event of the task stream, decoded by a `stream_decoder` (without the core).

        A `task` event carries its task decoded (`task`), or, when it could not be decoded,
        its data and why (`data`, `error`); any other event carries its data as it came.
    */
    struct decoded_event {
        /// The SSE event type (`"message"` when the event named none).
        std::string type;
        /// The stream's last event ID when the event was dispatched.
        std::string last_event_id;
        /// The event's data; empty for a `task` event that was decoded.
        std::string data;
        /// For a `task` event: the task, when its data could be decoded.
        std::optional<protocol::task> task;
        /// For a `task` event that could not be decoded: why.
        protocol::decode_error error;
    };

    /** What a `stream_decoder` made of the bytes of a stream connection, for
        `on_stream_chunk()`. A driver may reuse one (`clear()` keeps its capacity).
    */
    struct stream_chunk {
        /// The events completed by the bytes, in order.
        std::vector<decoded_event> events;
        /// The bytes of a refused connection's body (head not 200), the first 4 KiB of it.
        std::string error_body;
        /// The stream's `retry:` value after the bytes (none: never set).
        std::optional<std::chrono::milliseconds> retry;
        /// A line or event over the parser's limits: the connection must end.
        bool line_error = false;

        /// Empties it, keeping its storage.
        void clear() noexcept {
            events.clear();
            error_body.clear();
            retry.reset();
            line_error = false;
        }
    };

    /** Decodes a task stream's bytes (SSE framing, and the JSON of each task) into
        `stream_chunk`s without touching the core, so that a threaded driver can do it
        outside the lock that serialises the core's calls; `on_stream_chunk()` then acts on
        the result exactly as `on_stream_data()` acts on the bytes.

        One decoder serves the stream connections of one core one after the other: like the
        core's own parser, it keeps the last event ID and the `retry:` value from one
        connection to the next.

        @par Thread Safety
        Distinct objects: Safe. Shared objects: Unsafe.
    */
    class stream_decoder {
    public:
        /// A new connection whose head said `status` (only a 200's body is a stream).
        void start(int status) noexcept {
            parser_.reset();
            status_ = status;
            error_bytes_ = 0;
        }

        /** Decodes the next bytes of the connection into `out` (appended to what it holds).
            A line over the limits sets `out.line_error`; every later call until `start()`
            sets it again. Throws only what allocation throws.
        */
        SEKUIRE_DECL void decode(std::string_view bytes, stream_chunk& out);

    private:
        sse::parser parser_;
        int status_ = 0;
        std::size_t error_bytes_ = 0;
    };

    /// A core for validated `options`; nothing happens before the first `advance()`.
    explicit worker_core(worker_options options)
        : options_(std::move(options)), random_(options_.random ? options_.random : default_random_source()),
          auth_(options_.request_timeout) {
        stream_backoff_.set_options(options_.backoff);
        session_backoff_.set_options(options_.backoff);
        policy_backoff_.set_options(options_.backoff);
    }

    // ---- registration ------------------------------------------------------------------

    /// A handler exists for `capability` (the driver keeps the handler itself).
    void add_capability(const std::string& capability) { handlers_.insert(capability); }

    // ---- inputs ------------------------------------------------------------------------

    /// The store's contents (or why they could not be read), current as of now.
    SEKUIRE_DECL void store_seen(std::optional<installation_credentials> stored, const error_code& ec);

    /// The control work due at `now`: authentication, worker heartbeats, policy fetches,
    /// result retries, handler deadlines, the stream's idle watchdog, the drain.
    SEKUIRE_DECL void advance(const clock_reading& now);

    /// Whether (and with what request) the task stream connects now.
    SEKUIRE_DECL stream_decision stream_connect(const clock_reading& now);

    /// The head of the stream connection `op`.
    SEKUIRE_DECL void on_stream_head(operation_id op, int status, const header_list& headers, const clock_reading& now);

    /// A chunk of the stream connection `op`; false: end the connection.
    SEKUIRE_DECL bool on_stream_data(operation_id op, std::string_view chunk, const clock_reading& now);

    /** The events of the stream connection `op` decoded by a `stream_decoder` (started with
        the head's status); false: end the connection. Acts as `on_stream_data()` on the
        bytes that `chunk` was decoded from (the same effects, the same status, the same log
        lines, malformed tasks reported the same way); takes the decoded tasks out of
        `chunk`. A driver uses one of the two for a connection, not both.
    */
    SEKUIRE_DECL bool on_stream_chunk(operation_id op, stream_chunk& chunk, const clock_reading& now);

    /** Bytes of the stream connection `op` arrived at `at` (steady time) that completed
        nothing: no event, no refusal body, no `retry:` change (a `stream_decoder` gave an
        empty chunk). A driver may feed such bytes this way, later (before its next call
        that may run the control work), instead of with `on_stream_chunk()`: only the idle
        watchdog reads it. An earlier `at` than already known, or another connection's
        `op`, changes nothing.
    */
    SEKUIRE_DECL void on_stream_bytes(operation_id op, steady_time_point at) noexcept;

    /// The end of the stream connection `op` (`ec` set when it failed).
    SEKUIRE_DECL void on_stream_end(operation_id op, const error_code& ec, const clock_reading& now);

    /// When the stream's next connection is due (after `stream_connect()` said not now).
    SEKUIRE_DECL steady_time_point stream_next() const noexcept;

    /// The answer to request `op` (or the transport's error).
    SEKUIRE_DECL void on_response(operation_id op, const error_code& transport_error, http_response&& response, const clock_reading& now);

    /** Whether the request of operation `op` is still wanted, right before it goes out
        (false: do not send it; its result would be ignored). A revocation found by one
        request makes the heartbeats and policy fetches asked for with it moot.
    */
    bool wants(operation_id op) const { return op == auth_op_ || inflight_.count(op) != 0; }

    /// A handler is about to run; false (skip it) when its task was given up meanwhile, never without a `cancel_handler` for it.
    SEKUIRE_DECL bool handler_starting(const std::string& task_id, const clock_reading& now);

    /** The executor could not take the handler of `task`, the task of a `run_handler`
        effect, given back whole (the core kept no copy of its input): it goes back to the
        head of the queue, tried again at the next dispatch.
    */
    SEKUIRE_DECL void on_handler_refused(protocol::task task);

    /// A handler's outcome: its output, or the failure it threw.
    SEKUIRE_DECL void on_handler_done(const std::string& task_id, protocol::task_status status, boost::json::value output, std::optional<protocol::completion_error> err, const clock_reading& now);

    /// The result of `lock_refresh`: whether the lock was taken, and the store's contents read
    /// under it (or why not).
    SEKUIRE_DECL void on_refresh_lock(operation_id op, bool owned, std::optional<installation_credentials> stored, const error_code& ec, const clock_reading& now);

    /// The result of a `save` or `clear`.
    SEKUIRE_DECL void on_stored(operation_id op, const error_code& ec, const clock_reading& now);

    /// Accepted for drivers shared with `beacon_core`; a worker never asks for `adopt_token`, so
    /// this does nothing.
    void on_adopted(operation_id, detail::adopt_result, const clock_reading&) {}
    /// Accepted for drivers shared with `beacon_core`; a worker never asks for `forget_token`, so
    /// this does nothing.
    void on_forgot(operation_id, std::optional<installation_credentials>, const error_code&, const clock_reading&) {}

    /// The result of `check_writable`; `where` describes the store for the message.
    SEKUIRE_DECL void on_writable(operation_id op, const error_code& ec, const std::string& where, const clock_reading& now);

    /** Starts the graceful shutdown of protocol.md section 5 without waiting: no new tasks,
        in-flight handlers get until `timeout`, results are reported. During a drain already
        under way, a shorter `timeout` (a revocation's) brings its end forward.
    */
    SEKUIRE_DECL void begin_shutdown(std::chrono::milliseconds timeout, const std::string& why, const clock_reading& now);

    /// Ends now (a driver that cannot wait for the drain, or a worker never started): what
    /// is pending is given up, each with a log line. `gave_up` says the drain was cut short.
    SEKUIRE_DECL void force_finish(const clock_reading& now, bool gave_up = true);

    /// Applies a command that arrived another way (a beacon's heartbeat) at `now`: a
    /// terminate's drain deadline counts from then.
    SEKUIRE_DECL void apply_command(const protocol::command& cmd, const clock_reading& now);
    /// As above, at the time the core was last fed (a terminate's drain deadline counts from
    /// then, which may be long past: prefer the overload with `now`).
    void apply_command(const protocol::command& cmd) { handle_command(cmd); }

    /// Applies a revocation that arrived another way (a beacon's heartbeat) at `now`: its
    /// `shutdown_timeout_ms` counts from then.
    SEKUIRE_DECL void apply_revocation(const protocol::revocation& r, const clock_reading& now);
    /// As above, at the time the core was last fed (the shutdown timeout counts from then,
    /// which may be long past: prefer the overload with `now`).
    void apply_revocation(const protocol::revocation& r) { handle_revocation(r); }

    /// The backend's active policy hash seen elsewhere: fetched again when it changed.
    SEKUIRE_DECL void apply_policy_hash(const std::string& hash);

    /// Pauses or resumes as a command would, without the command callbacks.
    SEKUIRE_DECL void set_paused(bool paused);

    // ---- outputs -----------------------------------------------------------------------

    /// The effects asked for since the last call, in order (the caller takes them).
    std::vector<worker_effect>& effects() noexcept { return effects_; }

    /// When the control work is next due (`advance()`), steady time.
    steady_time_point next_wake() const noexcept { return next_; }

    /// Whether the worker has stopped.
    bool finished() const noexcept { return finished_; }
    /// Whether a shutdown (drain) is under way or over.
    bool shutting_down() const noexcept { return shutting_down_; }
    /// Whether the installation was revoked.
    bool revoked() const noexcept { return revoked_; }
    /// Whether a pause is in force.
    bool paused() const noexcept { return paused_; }
    /// Whether the first authentication was attempted (after the startup jitter).
    bool first_step_done() const noexcept { return start_at_ && now_.steady >= *start_at_; }

    /// The status (tokens masked). `started` and `stepped` are the driver's.
    SEKUIRE_DECL worker_status status(bool started) const;

    /// Metrics for a beacon's heartbeat: tasks handled, errors, average handler latency.
    SEKUIRE_DECL protocol::heartbeat_metrics metrics() const;

    /// The options it was built with.
    const worker_options& options() const noexcept { return options_; }
    /// The policy gateway that admits tasks (the options' own).
    policy_gateway& gateway() noexcept { return options_.gateway; }

private:
    enum class request_kind : std::uint8_t { heartbeat, policy, completion };
    enum class auth_state : std::uint8_t { idle, writable, bootstrap, refresh_lock, refresh };
    enum class refresh_purpose : std::uint8_t { session, request, stream };
    enum class store_purpose : std::uint8_t { seed, unsaved, bootstrap, refresh, gone, revoke };

    struct running_task {
        protocol::task task;
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

    struct inflight {
        request_kind kind = request_kind::heartbeat;
        http_request request;
        wall_time_point sent_backend_now{};
        bool retried = false;
        detail::http_outcome rejected; // the 401 that asked for a refresh
        pending_result result;         // a completion's
        bool from_queue = false;       // a completion sent from the retry queue
    };

    // ---- the control work --------------------------------------------------------------

    SEKUIRE_DECL void control();

    SEKUIRE_DECL steady_time_point start_at();

    // ---- authentication (the TaskWorker's order) ---------------------------------------

    /** The credentials to call with now, or null: then `ec` says why (nothing to
        authenticate with, a store error), or is clear while an authentication flow (a
        bootstrap, a refresh) is under way or has just been started.
    */
    SEKUIRE_DECL const installation_credentials* session(error_code& ec);

    // A session that could not be had: the control work tries again after a backoff.
    SEKUIRE_DECL void session_failed(const error_code& ec, std::optional<std::chrono::milliseconds> retry_after = std::nullopt);

    // The flow under way ended with usable credentials, or without: whoever waited for it
    // (the control work, the stream, requests answered 401) goes on.
    SEKUIRE_DECL void auth_settled(bool ok, const error_code& ec = {}, std::optional<std::chrono::milliseconds> retry_after = std::nullopt);

    SEKUIRE_DECL void bootstrap();

    SEKUIRE_DECL void send_bootstrap();

    SEKUIRE_DECL void start_refresh(refresh_purpose p, std::string stale);

    SEKUIRE_DECL void refresh_next(auth_chain::refresh_step step);

    SEKUIRE_DECL void unlock();

    SEKUIRE_DECL void auth_answered(const error_code& transport_error, http_response&& response);

    SEKUIRE_DECL void refresh_done();

    // A 404 on an installation path: the stored credentials are dropped and the chain is
    // walked again after the auth backoff (docs/protocol.md), so that a backend refusing
    // each installation in turn cannot drive a loop.
    SEKUIRE_DECL void installation_gone();

    SEKUIRE_DECL void stored_answered(store_purpose p, const error_code& ec);

    SEKUIRE_DECL void store_op(worker_effect::type t, store_purpose p, std::optional<installation_credentials> c = std::nullopt);

    /// The backend's clock (token expiry and task deadlines are in it).
    wall_time_point backend_now() const { return auth_.backend_now(now_.wall); }

    SEKUIRE_DECL void observe(const std::optional<wall_time_point>& server_time);

    static SEKUIRE_DECL std::string bearer_of(const http_request& req);

    // ---- requests ----------------------------------------------------------------------

    // Sends `req` with the current credentials; false (nothing sent) without them.
    bool send(request_kind kind, http_request req) { return send(kind, std::move(req), pending_result(), false); }

    SEKUIRE_DECL bool send(request_kind kind, http_request req, pending_result result, bool from_queue);

    SEKUIRE_DECL void resend(inflight f);

    SEKUIRE_DECL void answered(inflight f, detail::http_outcome out);

    // ---- worker heartbeats and policy --------------------------------------------------

    SEKUIRE_DECL void send_worker_heartbeat();

    SEKUIRE_DECL void heartbeat_answered(const detail::http_outcome& out);

    SEKUIRE_DECL void fetch_policy();

    SEKUIRE_DECL void policy_answered(const detail::http_outcome& out);

    // ---- deadlines, the idle watchdog, the drain ---------------------------------------

    SEKUIRE_DECL void check_deadlines();

    SEKUIRE_DECL void check_stream_idle();

    SEKUIRE_DECL void close_stream();

    SEKUIRE_DECL std::size_t completions_inflight() const;

    // True when the drain is complete.
    SEKUIRE_DECL bool drain_step();

    SEKUIRE_DECL void finish(bool gave_up);

    SEKUIRE_DECL void shutdown(std::chrono::milliseconds timeout, const std::string& why);

    // ---- results -----------------------------------------------------------------------

    // Counts a task's outcome, keeps its result for a redelivery, and returns the body.
    SEKUIRE_DECL protocol::completion_request record_result(const protocol::task& t, protocol::task_status status, boost::json::value output, std::optional<protocol::completion_error> err, std::int64_t execution_ms);

    // Reports a task's outcome now.
    SEKUIRE_DECL void finish_task(const protocol::task& t, protocol::task_status status, boost::json::value output, std::optional<protocol::completion_error> err, std::int64_t execution_ms);

    // Hands a task's outcome to the control work, due at once.
    SEKUIRE_DECL void queue_result(const protocol::task& t, protocol::task_status status, boost::json::value output, std::optional<protocol::completion_error> err, std::int64_t execution_ms);

    SEKUIRE_DECL void reject(const protocol::task& t, protocol::task_error code, const std::string& why);

    SEKUIRE_DECL std::string current_installation_id() const;

    /// Sends a result now; without credentials (or on a failure) it waits in the queue.
    SEKUIRE_DECL void send_result(const std::string& task_id, protocol::completion_request body, bool from_queue = false, std::chrono::milliseconds timeout = std::chrono::milliseconds(0), backoff retry = backoff());

    SEKUIRE_DECL void completion_answered(pending_result p, detail::http_outcome out, bool from_queue);

    SEKUIRE_DECL void delay_result(pending_result p, const error_code& ec, std::optional<std::chrono::milliseconds> retry_after);

    /** Puts a result in the retry queue: one entry per task id (a newer one replaces it).
        Above `max_pending_results` a rejection is not kept (the backend redelivers a task
        it has no answer for, and the worker decides again); a handler's result always is,
        and new tasks are refused meanwhile. After the end, nothing is kept. Each result not
        kept is logged and counted in `results_dropped`.
    */
    SEKUIRE_DECL void keep_pending(pending_result p);

    // The backend has the result (or refused it for good): a redelivery needs no copy of it,
    // and an older attempt waiting in the retry queue is settled too.
    SEKUIRE_DECL void release_result(const std::string& task_id);

    // Sends the results that are due, one at a time: after a transient failure the rest
    // wait as long as the one that failed (the backend is likely down or slow); during a
    // drain, nothing is sent past its deadline, and no request outlives it.
    SEKUIRE_DECL void flush_results();

    // ---- the task stream ---------------------------------------------------------------

    SEKUIRE_DECL void stream_refused();

    // The next connection, by the stream pacing rules (docs/protocol.md): a floor, a
    // backoff reset only by a healthy connection, `retry:` and `Retry-After` honoured.
    SEKUIRE_DECL void schedule_reconnect(const error_code& ec, std::chrono::milliseconds open_for, std::optional<std::chrono::milliseconds> retry_after = std::nullopt);

    SEKUIRE_DECL void handle_event(const sse::event& e);

    SEKUIRE_DECL void handle_event(decoded_event& e);

    // An event other than a task.
    SEKUIRE_DECL void handle_other_event(const std::string& type, const std::string& data);

    SEKUIRE_DECL void handle_task_event(const std::string& data);

    // A task event that could not be decoded (`data` as it came).
    SEKUIRE_DECL void task_malformed(const std::string& data, const protocol::decode_error& err);

    SEKUIRE_DECL void handle_task(protocol::task t);

    SEKUIRE_DECL void remember(const std::string& id);

    /// Starts queued tasks while handler slots are free.
    SEKUIRE_DECL void dispatch();

    // ---- commands and revocation -------------------------------------------------------

    SEKUIRE_DECL void handle_command(const protocol::command& cmd);

    SEKUIRE_DECL void handle_revocation(const protocol::revocation& r);

    // ---- status ------------------------------------------------------------------------

    SEKUIRE_DECL std::vector<std::string> capabilities() const;

    SEKUIRE_DECL worker_state derive_state(bool started) const;

    static SEKUIRE_DECL std::string describe_body(const detail::http_outcome& out);

    SEKUIRE_DECL void set_error(const error_code& ec, const std::string& what);

    // `event` names what happened, for structured loggers (log_record::event); a line about
    // a task names it (and its capability and trace id when the task is at hand).
    SEKUIRE_DECL void log(const char* event, log_level level, std::string message);
    SEKUIRE_DECL void log(const char* event, const protocol::task* task, log_level level, std::string message);
    SEKUIRE_DECL void log(const char* event, const protocol::task* task, const std::string& task_id, log_level level, std::string message);

    // The control work is due now: tells a threaded driver, and `next_wake()` says so.
    SEKUIRE_DECL void wake_control();

    // The control work is due at `at`: a threaded driver is woken only when that is earlier
    // than the time it already waits for.
    SEKUIRE_DECL void wake_control_at(steady_time_point at);

    SEKUIRE_DECL worker_effect& emit(worker_effect::type t);

    // ---- members -----------------------------------------------------------------------

    worker_options options_;
    random_source random_;
    std::vector<worker_effect> effects_;
    clock_reading now_{};
    steady_time_point next_ = steady_time_point::min();
    operation_id last_op_ = 0;

    auth_chain auth_;
    auth_state auth_state_ = auth_state::idle;
    operation_id auth_op_ = 0;
    wall_time_point auth_sent_backend_now_{};
    refresh_purpose refresh_purpose_ = refresh_purpose::session;
    std::map<operation_id, store_purpose> store_ops_;
    std::optional<installation_credentials> last_session_;
    bool session_ready_ = false;
    bool install_token_spent_ = false;
    bool credentials_exhausted_ = false; // no way left to authenticate
    bool unsaved_tried_ = false;
    error_code spent_code_; // why the install token was refused for good
    std::string spent_reason_;
    steady_time_point session_retry_at_{};
    backoff session_backoff_;
    error_code last_send_error_;
    error_code auth_error_; // why the last authentication flow failed (cleared by a session)

    std::set<std::string> handlers_;
    std::map<std::string, running_task> running_;
    std::deque<protocol::task> queued_;
    std::map<std::string, pending_result> results_; // by task id
    std::unordered_map<std::string, seen_task> seen_;
    std::deque<std::string> seen_order_;
    std::map<operation_id, inflight> inflight_;
    std::vector<inflight> waiting_refresh_; // answered 401, waiting for the refresh
    std::optional<steady_time_point> held_until_;
    bool queue_inflight_ = false;
    detail::command_log commands_;
    worker_status status_;
    std::uint64_t latency_total_ms_ = 0;
    bool paused_ = false;
    bool revoked_ = false;
    bool shutting_down_ = false;
    bool finished_ = false;
    std::optional<steady_time_point> start_at_; // the first step plus the startup jitter
    steady_time_point drain_deadline_{};
    steady_time_point next_heartbeat_at_{};
    bool heartbeat_now_ = false;
    bool heartbeat_inflight_ = false;
    bool policy_fetch_due_ = true;
    bool policy_inflight_ = false;
    steady_time_point policy_retry_at_{};
    backoff policy_backoff_;

    // The stream.
    sse::parser parser_;
    std::optional<std::chrono::milliseconds> retry_field_; // the stream's last retry: value
    backoff stream_backoff_;
    steady_time_point next_connect_at_{};
    bool refreshed_for_stream_ = false;
    std::string resume_id_; // the id of the last event handled: the next Last-Event-ID
    operation_id stream_op_ = 0;
    bool stream_open_ = false;
    bool stream_closing_ = false;
    bool idle_cut_ = false;
    bool line_error_ = false;
    int stream_status_ = 0;
    std::string stream_error_body_;
    std::optional<std::chrono::milliseconds> stream_retry_after_;
    std::string stream_token_;
    error_code stream_refusal_error_;
    steady_time_point stream_opened_at_{};
    steady_time_point last_byte_at_{};
};

} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/core/impl/worker_core.ipp>
#endif

#endif
