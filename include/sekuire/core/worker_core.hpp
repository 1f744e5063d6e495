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
///   `on_stream_end`) and closes it when asked (`close_stream`).
/// - Handlers: `run_handler` asks the driver to run the handler of a task on its executor;
///   the driver asks `handler_starting()` right before it runs (false: skip it) and feeds
///   its outcome with `on_handler_done()`; `cancel_handler` fires the handler's stop token.
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
#include <sekuire/sse.hpp>
#include <sekuire/worker_options.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
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
    /// For `run_handler`: the task to run.
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
    void store_seen(std::optional<installation_credentials> stored, const error_code& ec) {
        auth_.store_seen(std::move(stored), ec);
    }

    /// The control work due at `now`: authentication, worker heartbeats, policy fetches,
    /// result retries, handler deadlines, the stream's idle watchdog, the drain.
    void advance(const clock_reading& now) {
        now_ = now;
        unsaved_tried_ = false;
        control();
    }

    /// Whether (and with what request) the task stream connects now.
    stream_decision stream_connect(const clock_reading& now) {
        now_ = now;
        stream_decision d;
        if (shutting_down_ || finished_) return d;
        if (now.steady < start_at()) {
            d.next = start_at();
            return d;
        }
        if (stream_open_) return d; // one connection at a time
        if (now.steady < next_connect_at_) {
            d.next = next_connect_at_;
            return d;
        }
        error_code ec;
        const installation_credentials* c = session(ec);
        if (!c) {
            if (ec) {
                schedule_reconnect(ec, {});
                d.next = next_connect_at_;
            }
            // Else authentication is under way: `wake_stream` follows it. A driver that
            // does not see wake-ups (or misses one) asks again at the stream's floor.
            if (!ec) d.next = now.steady + detail::pacing::min_stream_reconnect_delay;
            return d;
        }
        http_request req = detail::make_request(http_method::get,
                                                protocol::path::task_stream(c->installation_id, capabilities()), {},
                                                options_.stream_idle_timeout);
        req.headers.front().value = std::string(protocol::header::event_stream_type); // Accept
        req.headers.push_back({std::string(protocol::header::cache_control), "no-cache"});
        if (!resume_id_.empty()) req.headers.push_back({std::string(protocol::header::last_event_id), resume_id_});
        detail::set_bearer(req, c->runtime_token);
        stream_op_ = ++last_op_;
        stream_open_ = true;
        stream_closing_ = false;
        idle_cut_ = false;
        line_error_ = false;
        stream_status_ = 0;
        stream_error_body_.clear();
        stream_retry_after_.reset();
        stream_token_ = c->runtime_token;
        stream_opened_at_ = now.steady;
        last_byte_at_ = now.steady;
        parser_.reset();
        ++status_.stream_connects;
        wake_control(); // the idle watchdog is armed
        d.request = std::move(req);
        d.op = stream_op_;
        return d;
    }

    /// The head of the stream connection `op`.
    void on_stream_head(operation_id op, int status, const header_list& headers, const clock_reading& now) {
        if (op != stream_op_ || !stream_open_) return;
        now_ = now;
        stream_status_ = status;
        if (const std::string* ra = find_header(headers, protocol::header::retry_after)) {
            const std::string* date = find_header(headers, protocol::header::date);
            const std::optional<wall_time_point> d = date ? parse_http_date(*date) : std::nullopt;
            stream_retry_after_ = parse_retry_after(*ra, d ? detail::within_date(*d, backend_now()) : backend_now());
        }
        if (status == 200) log("stream_connected", log_level::info, "task stream connected");
    }

    /// A chunk of the stream connection `op`; false: end the connection.
    bool on_stream_data(operation_id op, std::string_view chunk, const clock_reading& now) {
        if (op != stream_op_ || !stream_open_) return false;
        now_ = now;
        last_byte_at_ = now.steady;
        if (stream_status_ != 200) {
            if (stream_error_body_.size() < 4096)
                stream_error_body_.append(chunk.substr(0, 4096 - stream_error_body_.size()));
            return true;
        }
        try {
            parser_.feed(chunk, [&](const sse::event& e) {
                // After a stop, the rest of the chunk is not handled, and Last-Event-ID stays
                // at the last event that was: the backend sends the rest again.
                if (stream_closing_) return;
                handle_event(e);
                resume_id_ = e.last_event_id;
            });
        } catch (const error&) {
            line_error_ = true;
            return false;
        }
        return !stream_closing_;
    }

    /// The end of the stream connection `op` (`ec` set when it failed).
    void on_stream_end(operation_id op, const error_code& ec, const clock_reading& now) {
        if (op != stream_op_ || !stream_open_) return;
        now_ = now;
        stream_open_ = false;
        status_.last_event_id = resume_id_;
        wake_control();
        if (shutting_down_) {
            next_connect_at_ = steady_time_point::max();
            return;
        }
        const auto open_for = std::chrono::duration_cast<std::chrono::milliseconds>(now.steady - stream_opened_at_);
        if (idle_cut_) {
            schedule_reconnect(errc::stream_idle, open_for);
        } else if (line_error_) {
            schedule_reconnect(errc::stream_line_too_long, open_for);
        } else if (ec) {
            schedule_reconnect(ec, open_for);
        } else if (stream_status_ == 200) {
            // The backend ended the stream: reconnect after the retry delay.
            schedule_reconnect(errc::connection_lost, open_for);
        } else {
            stream_refused();
        }
    }

    /// When the stream's next connection is due (after `stream_connect()` said not now).
    steady_time_point stream_next() const noexcept {
        if (shutting_down_ || finished_ || stream_open_) return steady_time_point::max();
        return std::max(next_connect_at_, start_at_.value_or(steady_time_point::min()));
    }

    /// The answer to request `op` (or the transport's error).
    void on_response(operation_id op, const error_code& transport_error, http_response&& response,
                     const clock_reading& now) {
        now_ = now;
        if (op == auth_op_) {
            auth_answered(transport_error, std::move(response));
        } else {
            auto it = inflight_.find(op);
            if (it == inflight_.end()) return;
            inflight request = std::move(it->second);
            inflight_.erase(it);
            const bool installation_path = request.kind != request_kind::completion && request.kind != request_kind::policy;
            detail::http_outcome out =
                detail::classify(transport_error, std::move(response), true, installation_path, request.sent_backend_now);
            observe(out.server_time);
            if (out.cls == protocol::status_class::token_rejected && !request.retried &&
                !(auth_error_ && now.steady < session_retry_at_)) {
                // One refresh (single-flight with every holder of the store), one retry; but
                // not again before the backoff of a refresh that failed.
                request.retried = true;
                request.rejected = std::move(out);
                waiting_refresh_.push_back(std::move(request));
                if (!auth_.refreshing()) start_refresh(refresh_purpose::request, bearer_of(waiting_refresh_.back().request));
                return;
            }
            answered(std::move(request), std::move(out));
        }
        control();
    }

    /** Whether the request of operation `op` is still wanted, right before it goes out
        (false: do not send it; its result would be ignored). A revocation found by one
        request makes the heartbeats and policy fetches asked for with it moot.
    */
    bool wants(operation_id op) const { return op == auth_op_ || inflight_.count(op) != 0; }

    /// A handler is about to run; false when its task was given up meanwhile (skip it).
    bool handler_starting(const std::string& task_id, const clock_reading& now) {
        now_ = now;
        auto it = running_.find(task_id);
        if (it == running_.end()) return false;
        if (it->second.abandoned) { // given up before it started (the drain ended)
            running_.erase(it);
            return false;
        }
        return true;
    }

    /// The executor could not take the handler of `task_id`: it goes back to the head of
    /// the queue, tried again at the next dispatch.
    void on_handler_refused(const std::string& task_id) {
        auto it = running_.find(task_id);
        if (it == running_.end()) return;
        queued_.push_front(std::move(it->second.task));
        running_.erase(it);
        log("handler_not_started", &queued_.front(), log_level::error, "a handler could not be started (the executor refused it); the task waits in the queue");
    }

    /// A handler's outcome: its output, or the failure it threw.
    void on_handler_done(const std::string& task_id, protocol::task_status status, boost::json::value output,
                         std::optional<protocol::completion_error> err, const clock_reading& now) {
        now_ = now;
        auto it = running_.find(task_id);
        if (it == running_.end()) return;
        running_task rt = std::move(it->second);
        running_.erase(it);
        if (!rt.abandoned) {
            const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.steady - rt.started_at).count();
            finish_task(rt.task, status, std::move(output), std::move(err), ms);
        }
        dispatch();
        // The result went out from here (a failed one is queued, which wakes the control
        // work); a handler ending takes no deadline away that matters. Only a drain may be
        // over now: the control work is woken once per task only then, not for every task.
        if (shutting_down_) wake_control();
    }

    /// The result of `lock_refresh`: whether the lock was taken, and the store's contents read
    /// under it (or why not).
    void on_refresh_lock(operation_id op, bool owned, std::optional<installation_credentials> stored,
                         const error_code& ec, const clock_reading& now) {
        if (op != auth_op_ || auth_state_ != auth_state::refresh_lock) {
            if (owned) emit(worker_effect::type::unlock_refresh);
            return;
        }
        now_ = now;
        auth_op_ = 0;
        auth_state_ = auth_state::idle;
        refresh_next(auth_.refresh_locked(owned, std::move(stored), ec, backend_now()));
        control();
    }

    /// The result of a `save` or `clear`.
    void on_stored(operation_id op, const error_code& ec, const clock_reading& now) {
        now_ = now;
        auto it = store_ops_.find(op);
        if (it == store_ops_.end()) return;
        const store_purpose p = it->second;
        store_ops_.erase(it);
        stored_answered(p, ec); // what follows is the control work's, at its next step
    }

    /// Accepted for drivers shared with `beacon_core`; a worker never asks for `adopt_token`, so
    /// this does nothing.
    void on_adopted(operation_id, detail::adopt_result, const clock_reading&) {}
    /// Accepted for drivers shared with `beacon_core`; a worker never asks for `forget_token`, so
    /// this does nothing.
    void on_forgot(operation_id, std::optional<installation_credentials>, const error_code&, const clock_reading&) {}

    /// The result of `check_writable`; `where` describes the store for the message.
    void on_writable(operation_id op, const error_code& ec, const std::string& where, const clock_reading& now) {
        if (op != auth_op_ || auth_state_ != auth_state::writable) return;
        now_ = now;
        auth_op_ = 0;
        auth_state_ = auth_state::idle;
        if (ec) {
            // Never spend the single-use install token on credentials the store cannot keep.
            set_error(ec, "the credential store" + (where.empty() ? std::string() : " (" + where + ")") +
                              " cannot be written, so the bootstrap was not attempted: " + ec.message());
            session_failed(ec);
        } else {
            send_bootstrap();
        }
        control();
    }

    /** Starts the graceful shutdown of protocol.md section 5 without waiting: no new tasks,
        in-flight handlers get until `timeout`, results are reported. During a drain already
        under way, a shorter `timeout` (a revocation's) brings its end forward.
    */
    void begin_shutdown(std::chrono::milliseconds timeout, const std::string& why, const clock_reading& now) {
        now_ = now;
        shutdown(timeout, why);
    }

    /// Ends now (a driver that cannot wait for the drain, or a worker never started): what
    /// is pending is given up, each with a log line. `gave_up` says the drain was cut short.
    void force_finish(const clock_reading& now, bool gave_up = true) {
        now_ = now;
        finish(gave_up);
    }

    /// Applies a command that arrived another way (a beacon's heartbeat) at `now`: a
    /// terminate's drain deadline counts from then.
    void apply_command(const protocol::command& cmd, const clock_reading& now) {
        now_ = now;
        handle_command(cmd);
    }
    /// As above, at the time the core was last fed (a terminate's drain deadline counts from
    /// then, which may be long past: prefer the overload with `now`).
    void apply_command(const protocol::command& cmd) { handle_command(cmd); }

    /// Applies a revocation that arrived another way (a beacon's heartbeat) at `now`: its
    /// `shutdown_timeout_ms` counts from then.
    void apply_revocation(const protocol::revocation& r, const clock_reading& now) {
        now_ = now;
        handle_revocation(r);
    }
    /// As above, at the time the core was last fed (the shutdown timeout counts from then,
    /// which may be long past: prefer the overload with `now`).
    void apply_revocation(const protocol::revocation& r) { handle_revocation(r); }

    /// The backend's active policy hash seen elsewhere: fetched again when it changed.
    void apply_policy_hash(const std::string& hash) {
        if (options_.gateway.on_heartbeat_response(hash)) {
            policy_fetch_due_ = true;
            wake_control();
        }
    }

    /// Pauses or resumes as a command would, without the command callbacks.
    void set_paused(bool paused) {
        if (paused_ == paused) return;
        paused_ = paused;
        log(paused ? "paused" : "resumed", log_level::info, paused ? "paused" : "resumed");
        wake_control();
        emit(worker_effect::type::wake_stream);
    }

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
    worker_status status(bool started) const {
        worker_status s = status_;
        s.paused = paused_;
        s.in_flight = running_.size();
        s.queued = queued_.size();
        s.pending_results = results_.size();
        s.stream_connected = stream_open_;
        s.last_event_id = resume_id_;
        s.policy_hash = options_.gateway.policy_hash();
        s.state = derive_state(started);
        return s;
    }

    /// Metrics for a beacon's heartbeat: tasks handled, errors, average handler latency.
    protocol::heartbeat_metrics metrics() const {
        protocol::heartbeat_metrics m;
        m.requests_handled = static_cast<std::int64_t>(status_.completed + status_.failed);
        m.errors = static_cast<std::int64_t>(status_.failed + status_.rejected);
        const std::uint64_t n = status_.completed + status_.failed;
        m.avg_latency_ms = n ? static_cast<std::int64_t>(latency_total_ms_ / n) : 0;
        return m;
    }

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

    void control() {
        if (finished_) {
            next_ = steady_time_point::max();
            return;
        }
        const steady_time_point now = now_.steady;
        steady_time_point next = steady_time_point::max();
        if (now < start_at()) {
            next_ = start_at();
            return;
        }
        if (!shutting_down_ && !session_ready_ && auth_state_ == auth_state::idle) {
            if (now < session_retry_at_) {
                next = session_retry_at_;
            } else {
                error_code ec;
                if (session(ec)) {
                    session_ready_ = true;
                    session_backoff_.reset();
                } else if (ec) {
                    session_failed(ec);
                    next = session_retry_at_;
                }
            }
        }
        if (session_ready_ || shutting_down_) {
            if (!shutting_down_ && options_.fetch_policy && policy_fetch_due_ && !policy_inflight_ &&
                now >= policy_retry_at_)
                fetch_policy();
            if (!shutting_down_) dispatch(); // tasks left queued by an executor that refused them
            // Heartbeats go on while draining (saying so, at once when the drain begins),
            // but never after a revocation.
            if (!revoked_ && !heartbeat_inflight_ && (now >= next_heartbeat_at_ || heartbeat_now_)) {
                heartbeat_now_ = false;
                send_worker_heartbeat();
            }
        }
        check_deadlines();
        check_stream_idle();
        flush_results();
        if (finished_) {
            next_ = steady_time_point::max();
            return;
        }
        if (!revoked_ && (session_ready_ || shutting_down_)) next = std::min(next, next_heartbeat_at_);
        if (shutting_down_) {
            if (drain_step()) {
                next_ = steady_time_point::max();
                return;
            }
            // Past its deadline the drain waits only for the stream to close, which feeds
            // this core: no deadline in the past (a busy loop) is returned.
            if (drain_deadline_ > now) next = std::min(next, drain_deadline_);
        } else if (policy_fetch_due_ && options_.fetch_policy && !policy_inflight_ && session_ready_) {
            next = std::min(next, std::max(policy_retry_at_, now));
        }
        for (const auto& kv : running_)
            if (!kv.second.abandoned) next = std::min(next, kv.second.deadline);
        if (!queue_inflight_ && auth_state_ == auth_state::idle)
            for (const auto& r : results_) next = std::min(next, std::max(r.second.next_try, now + std::chrono::milliseconds(1)));
        if (stream_open_) next = std::min(next, last_byte_at_ + options_.stream_idle_timeout);
        next_ = next;
    }

    steady_time_point start_at() {
        if (!start_at_)
            start_at_ = now_.steady + std::chrono::milliseconds(static_cast<std::int64_t>(
                                          detail::clamp_unit(random_()) * static_cast<double>(options_.startup_jitter.count())));
        return *start_at_;
    }

    // ---- authentication (the TaskWorker's order) ---------------------------------------

    /** The credentials to call with now, or null: then `ec` says why (nothing to
        authenticate with, a store error), or is clear while an authentication flow (a
        bootstrap, a refresh) is under way or has just been started.
    */
    const installation_credentials* session(error_code& ec) {
        ec = {};
        if (revoked_) {
            // Revoked: the store no longer holds the credentials (they were removed), but the
            // results computed before the kill switch are still reported with the last ones.
            if (last_session_) return &*last_session_;
            ec = errc::revoked;
            return nullptr;
        }
        if (auth_state_ != auth_state::idle) return nullptr; // wait for the flow under way
        if (auth_error_ && now_.steady < session_retry_at_) {
            ec = auth_error_; // the last flow failed: not again before its backoff
            return nullptr;
        }
        if (const error_code& sec = auth_.store_error()) {
            ec = sec;
            set_error(ec, "the credential store cannot be read: " + ec.message());
            return nullptr;
        }
        bool save_again = false;
        std::optional<installation_credentials> c = auth_.reconciled(save_again);
        if (save_again && !unsaved_tried_) {
            unsaved_tried_ = true;
            store_op(worker_effect::type::save, store_purpose::unsaved, *c);
        }
        if (!c || c->installation_id.empty()) {
            if (!options_.installation_id.empty() &&
                (!options_.runtime_token.empty() || !options_.refresh_token.empty() || options_.token_provider)) {
                installation_credentials seeded;
                seeded.installation_id = options_.installation_id;
                seeded.runtime_token = options_.runtime_token;
                seeded.refresh_token = options_.refresh_token;
                auth_.store_will_hold(seeded);
                store_op(worker_effect::type::save, store_purpose::seed, seeded);
                c = seeded;
                status_.recovered_from_env = options_.recovered_from_env;
            } else if (!options_.install_token.empty() && !install_token_spent_) {
                bootstrap();
                return nullptr;
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
                credentials_exhausted_ = true;
                return nullptr;
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
                log("token_provider_threw", log_level::warning, "the token provider threw");
            }
        }
        if (detail::token_expired(*c, backend_now()) && !c->refresh_token.empty()) {
            start_refresh(refresh_purpose::session, c->runtime_token);
            return nullptr;
        }
        if (c->runtime_token.empty()) {
            ec = errc::no_credentials;
            set_error(ec, "no runtime token and no way to get one");
            return nullptr;
        }
        status_.installation_id = c->installation_id;
        status_.runtime_token = mask_token(c->runtime_token);
        credentials_exhausted_ = false;
        auth_error_ = {};
        last_session_ = std::move(c);
        return &*last_session_;
    }

    // A session that could not be had: the control work tries again after a backoff.
    void session_failed(const error_code& ec, std::optional<std::chrono::milliseconds> retry_after = std::nullopt) {
        auth_error_ = ec ? ec : error_code(errc::no_credentials);
        auto delay = session_backoff_.next(random_);
        if (retry_after) delay = std::max(delay, *retry_after);
        session_retry_at_ = now_.steady + delay; // from the failure
        wake_control();
    }

    // The flow under way ended with usable credentials, or without: whoever waited for it
    // (the control work, the stream, requests answered 401) goes on.
    void auth_settled(bool ok, const error_code& ec = {}, std::optional<std::chrono::milliseconds> retry_after = std::nullopt) {
        if (!ok) session_failed(ec ? ec : status_.last_error_code, retry_after);
        emit(worker_effect::type::wake_stream);
        wake_control();
    }

    void bootstrap() {
        if (options_.agent_id.empty()) {
            install_token_spent_ = true;
            set_error(errc::invalid_option, "an agent id is required to bootstrap with an install token");
            return;
        }
        auth_state_ = auth_state::writable;
        auto& e = emit(worker_effect::type::check_writable);
        e.op = auth_op_ = ++last_op_;
    }

    void send_bootstrap() {
        platform_info platform = options_.platform ? *options_.platform : platform_info{};
        auth_state_ = auth_state::bootstrap;
        auth_sent_backend_now_ = backend_now();
        auto& e = emit(worker_effect::type::send);
        e.op = auth_op_ = ++last_op_;
        e.request = auth_.bootstrap_request(options_.install_token, options_.agent_id, capabilities(), platform);
    }

    void start_refresh(refresh_purpose p, std::string stale) {
        refresh_purpose_ = p;
        auth_.begin_refresh(std::move(stale));
        auth_state_ = auth_state::refresh_lock;
        auto& e = emit(worker_effect::type::lock_refresh);
        e.op = auth_op_ = ++last_op_;
    }

    void refresh_next(auth_chain::refresh_step step) {
        switch (step.what) {
        case auth_chain::refresh_step::kind::send: {
            auth_state_ = auth_state::refresh;
            auth_sent_backend_now_ = backend_now();
            auto& e = emit(worker_effect::type::send);
            e.op = auth_op_ = ++last_op_;
            e.request = std::move(step.request);
            return;
        }
        case auth_chain::refresh_step::kind::save:
            auth_state_ = auth_state::refresh; // until saved
            store_op(worker_effect::type::save, store_purpose::refresh, std::move(step.credentials));
            return;
        case auth_chain::refresh_step::kind::done:
            if (auth_.lock_held()) unlock();
            refresh_done();
            return;
        }
    }

    void unlock() {
        auth_.lock_released();
        emit(worker_effect::type::unlock_refresh);
    }

    void auth_answered(const error_code& transport_error, http_response&& response) {
        const auth_state st = auth_state_;
        auth_op_ = 0;
        auth_state_ = auth_state::idle;
        const bool bootstrap = st == auth_state::bootstrap;
        detail::http_outcome out = detail::classify(transport_error, std::move(response), false, !bootstrap, auth_sent_backend_now_);
        observe(out.server_time);
        if (!bootstrap) {
            refresh_next(auth_.refresh_answered(std::move(out), backend_now()));
            return;
        }
        const detail::bootstrap_result r = auth_chain::bootstrap_answer(std::move(out));
        if (r.status != detail::bootstrap_status::ok) {
            const error_code ec = r.error;
            const std::string& m = r.error_message;
            const std::string why =
                "bootstrap with the install token failed: " + ec.message() + (m.empty() ? "" : " (" + m + ")");
            if (r.status == detail::bootstrap_status::permanent) {
                install_token_spent_ = true;
                spent_code_ = ec;
                spent_reason_ = why;
            }
            set_error(ec, why);
            auth_settled(false, ec, r.retry_after);
            return;
        }
        installation_credentials c = detail::credentials_from(r.response, backend_now());
        auth_.store_will_hold(c);
        log("bootstrapped", log_level::info, "bootstrapped installation " + c.installation_id + " (runtime token " +
                                 mask_token(c.runtime_token) + ")");
        store_op(worker_effect::type::save, store_purpose::bootstrap, std::move(c));
        auth_settled(true);
    }

    void refresh_done() {
        auth_state_ = auth_state::idle;
        const detail::refresh_result& r = auth_.result();
        bool ok = false;
        switch (r.status) {
        case detail::refresh_status::refreshed:
            if (r.called && r.credentials)
                log("token_refreshed", log_level::info, "runtime token refreshed (" + mask_token(r.credentials->runtime_token) + ")");
            ok = r.credentials.has_value();
            if (ok) {
                status_.installation_id = r.credentials->installation_id;
                status_.runtime_token = mask_token(r.credentials->runtime_token);
            }
            break;
        case detail::refresh_status::revoked:
            handle_revocation(protocol::revocation{"installation revoked (refresh refused)", std::nullopt});
            break;
        case detail::refresh_status::gone: installation_gone(); break;
        default: {
            const error_code ec = r.error ? r.error : error_code(errc::invalid_refresh_token);
            set_error(ec, "token refresh failed: " + ec.message());
            break;
        }
        }
        // Requests answered 401 go again with the new token, once; or end with their 401.
        std::vector<inflight> waiting;
        waiting.swap(waiting_refresh_);
        for (auto& w : waiting) {
            if (ok && !revoked_) {
                detail::set_bearer(w.request, r.credentials->runtime_token);
                resend(std::move(w));
            } else {
                detail::http_outcome out = std::move(w.rejected);
                answered(std::move(w), std::move(out));
            }
        }
        if (refresh_purpose_ == refresh_purpose::stream) {
            if (ok && !refreshed_for_stream_) {
                // Reconnect at once with the new token, once.
                refreshed_for_stream_ = true;
                next_connect_at_ = now_.steady;
            } else {
                refreshed_for_stream_ = false;
                schedule_reconnect(stream_refusal_error_, {}, stream_retry_after_);
            }
        }
        auth_settled(ok, ok ? error_code{} : (r.error ? r.error : error_code(errc::invalid_refresh_token)), r.retry_after);
    }

    // A 404 on an installation path: the stored credentials are dropped and the chain is
    // walked again after the auth backoff (docs/protocol.md), so that a backend refusing
    // each installation in turn cannot drive a loop.
    void installation_gone() {
        auth_.store_will_hold(std::nullopt);
        store_op(worker_effect::type::clear, store_purpose::gone);
        session_ready_ = false;
        set_error(errc::installation_not_found, "the backend does not know the installation; the credentials were dropped");
        session_failed(errc::installation_not_found);
    }

    void stored_answered(store_purpose p, const error_code& ec) {
        switch (p) {
        case store_purpose::seed:
        case store_purpose::bootstrap:
            if (ec) set_error(ec, "the credential store cannot be written: " + ec.message());
            return;
        case store_purpose::unsaved:
            if (!ec)
                auth_.forget_unsaved();
            else
                log("credentials_save_failed", log_level::error, "the refreshed credentials still cannot be saved (" + ec.message() +
                                          "); they stay in memory");
            return;
        case store_purpose::refresh:
            auth_.refresh_saved(ec);
            if (ec)
                log("credentials_save_failed", log_level::error, "the refreshed credentials could not be saved (" + ec.message() +
                                          "); they are kept in memory and saved again at each use");
            unlock();
            refresh_done();
            return;
        case store_purpose::gone:
        case store_purpose::revoke: return;
        }
    }

    void store_op(worker_effect::type t, store_purpose p, std::optional<installation_credentials> c = std::nullopt) {
        auto& e = emit(t);
        e.op = ++last_op_;
        e.credentials = std::move(c);
        store_ops_[e.op] = p;
    }

    /// The backend's clock (token expiry and task deadlines are in it).
    wall_time_point backend_now() const { return auth_.backend_now(now_.wall); }

    void observe(const std::optional<wall_time_point>& server_time) {
        if (auth_.observe(server_time, now_.wall))
            log("clock_offset", log_level::warning, auth_.clock().describe_offset() +
                                        "; token expiry and task deadlines are judged on the backend's clock");
    }

    static std::string bearer_of(const http_request& req) {
        const std::string* v = find_header(req.headers, protocol::header::authorization);
        if (!v) return {};
        const std::string_view p = protocol::header::bearer_prefix;
        return v->compare(0, p.size(), p) == 0 ? v->substr(p.size()) : *v;
    }

    // ---- requests ----------------------------------------------------------------------

    // Sends `req` with the current credentials; false (nothing sent) without them.
    bool send(request_kind kind, http_request req) { return send(kind, std::move(req), pending_result(), false); }

    bool send(request_kind kind, http_request req, pending_result result, bool from_queue) {
        error_code ec;
        const installation_credentials* c = session(ec);
        if (!c) {
            last_send_error_ = ec ? ec : error_code(errc::no_credentials);
            return false;
        }
        detail::set_bearer(req, c->runtime_token);
        inflight f;
        f.kind = kind;
        f.request = std::move(req);
        f.result = std::move(result);
        f.from_queue = from_queue;
        resend(std::move(f));
        return true;
    }

    void resend(inflight f) {
        f.sent_backend_now = backend_now();
        auto& e = emit(worker_effect::type::send);
        e.op = ++last_op_;
        e.request = f.request;
        if (f.kind == request_kind::completion && f.from_queue) queue_inflight_ = true;
        if (f.kind == request_kind::heartbeat) heartbeat_inflight_ = true;
        if (f.kind == request_kind::policy) policy_inflight_ = true;
        inflight_.emplace(e.op, std::move(f));
    }

    void answered(inflight f, detail::http_outcome out) {
        if (out.cls == protocol::status_class::revoked)
            handle_revocation(protocol::revocation{protocol::error_message_of(out.response.body), std::nullopt});
        switch (f.kind) {
        case request_kind::heartbeat: heartbeat_inflight_ = false; heartbeat_answered(out); return;
        case request_kind::policy: policy_inflight_ = false; policy_answered(out); return;
        case request_kind::completion:
            if (f.from_queue) queue_inflight_ = false;
            completion_answered(std::move(f.result), out, f.from_queue);
            return;
        }
    }

    // ---- worker heartbeats and policy --------------------------------------------------

    void send_worker_heartbeat() {
        protocol::worker_heartbeat_request body;
        body.state = shutting_down_ ? protocol::worker_state::draining
                                    : (paused_ ? protocol::worker_state::paused : protocol::worker_state::running);
        body.in_flight = static_cast<std::int64_t>(running_.size());
        body.completed = static_cast<std::int64_t>(status_.completed);
        body.failed = static_cast<std::int64_t>(status_.failed + status_.rejected);
        body.capabilities = capabilities();
        const std::string hash = options_.gateway.policy_hash();
        if (!hash.empty()) body.policy_hash = hash;
        next_heartbeat_at_ = now_.steady + detail::pacing::regular_delay(options_.heartbeat_interval, random_());
        error_code ec;
        const installation_credentials* c = session(ec);
        if (!c) return;
        send(request_kind::heartbeat,
             detail::make_request(http_method::post, protocol::path::worker_heartbeat(c->installation_id),
                                  protocol::encode(body), options_.request_timeout));
    }

    void heartbeat_answered(const detail::http_outcome& out) {
        if (out.cls == protocol::status_class::installation_gone) {
            installation_gone();
            return;
        }
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

    void fetch_policy() {
        if (options_.workspace_id.empty()) {
            policy_fetch_due_ = false;
            log("policy_unavailable", log_level::warning, "no workspace id: the active policy cannot be fetched");
            return;
        }
        if (!send(request_kind::policy, detail::make_request(http_method::get,
                                                              protocol::path::active_policy(options_.workspace_id), {},
                                                              options_.request_timeout)))
            policy_retry_at_ = now_.steady + policy_backoff_.next(random_);
    }

    void policy_answered(const detail::http_outcome& out) {
        protocol::policy_document doc;
        protocol::decode_error derr;
        if (out.ok() && protocol::decode(out.response.body, doc, derr)) {
            log("policy_active", log_level::info, "policy " + doc.hash + " is active");
            options_.gateway.set_policy(std::move(doc));
            policy_fetch_due_ = false;
            policy_backoff_.reset();
            return;
        }
        const error_code ec = out.ok() ? derr.code : out.error;
        set_error(ec, "the active policy could not be fetched: " + ec.message());
        auto delay = policy_backoff_.next(random_);
        if (out.retry_after) delay = std::max(delay, *out.retry_after);
        policy_retry_at_ = now_.steady + delay; // from the failure
    }

    // ---- deadlines, the idle watchdog, the drain ---------------------------------------

    void check_deadlines() {
        const steady_time_point now = now_.steady;
        std::vector<std::pair<std::string, bool>> expired;
        for (auto& kv : running_) {
            auto& t = kv.second;
            if (t.abandoned) continue;
            const bool drain_over = shutting_down_ && now >= drain_deadline_;
            if (now >= t.deadline || drain_over) {
                t.abandoned = true;
                expired.emplace_back(kv.first, drain_over && now < t.deadline);
            }
        }
        for (auto& e : expired) {
            emit(worker_effect::type::cancel_handler).text = e.first;
            const running_task& t = running_.at(e.first);
            const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - t.started_at).count();
            if (e.second)
                finish_task(t.task, protocol::task_status::failed, {},
                            protocol::completion_error{protocol::task_error::shutting_down, "cancelled: the worker shut down"},
                            ms);
            else
                finish_task(t.task, protocol::task_status::failed, {},
                            protocol::completion_error{protocol::task_error::handler_timeout,
                                                       "the handler did not finish before its deadline"},
                            ms);
        }
    }

    void check_stream_idle() {
        if (!stream_open_ || stream_closing_ || now_.steady < last_byte_at_ + options_.stream_idle_timeout) return;
        idle_cut_ = true;
        log("stream_idle", log_level::warning, "the task stream was silent too long; reconnecting");
        close_stream();
    }

    void close_stream() {
        if (!stream_open_ || stream_closing_) return;
        stream_closing_ = true;
        emit(worker_effect::type::close_stream).op = stream_op_;
    }

    std::size_t completions_inflight() const {
        std::size_t n = 0;
        for (const auto& kv : inflight_)
            if (kv.second.kind == request_kind::completion) ++n;
        for (const auto& w : waiting_refresh_)
            if (w.kind == request_kind::completion) ++n;
        return n;
    }

    // True when the drain is complete.
    bool drain_step() {
        bool busy = false;
        for (const auto& kv : running_)
            if (!kv.second.abandoned) busy = true;
        const bool done = !busy && completions_inflight() == 0 && results_.empty() && !stream_open_;
        const bool give_up = now_.steady >= drain_deadline_ && !stream_open_;
        if (done || give_up) {
            finish(give_up && !done);
            return true;
        }
        return false;
    }

    void finish(bool gave_up) {
        if (finished_) return;
        std::vector<std::string> lost;
        for (const auto& r : results_) lost.push_back(r.first);
        status_.results_dropped += results_.size();
        results_.clear();
        for (auto& kv : running_) {
            kv.second.abandoned = true;
            emit(worker_effect::type::cancel_handler).text = kv.first;
        }
        finished_ = true;
        next_ = steady_time_point::max();
        for (const auto& id : lost) log("task_result_lost", nullptr, id, log_level::error, "result of task " + id + " could not be reported before the end of the drain");
        if (gave_up && lost.empty()) log("drain_incomplete", log_level::warning, "the drain ended with handlers still running");
        log("worker_stopped", log_level::info, "worker stopped");
        close_stream();
        emit(worker_effect::type::finished);
    }

    void shutdown(std::chrono::milliseconds timeout, const std::string& why) {
        timeout = std::clamp(timeout, std::chrono::milliseconds(0), protocol::timing::max_shutdown_timeout);
        if (finished_) return;
        const steady_time_point deadline = now_.steady + timeout;
        if (shutting_down_) {
            if (deadline < drain_deadline_) {
                drain_deadline_ = deadline;
                log("drain_shortened", log_level::info, "the drain now ends in " + std::to_string(timeout.count()) + " ms (" + why + ")");
                wake_control();
            }
            return;
        }
        shutting_down_ = true;
        heartbeat_now_ = true;
        drain_deadline_ = deadline;
        std::deque<protocol::task> rejected;
        rejected.swap(queued_);
        log("shutting_down", log_level::info, "shutting down (" + why + ")");
        close_stream();
        // The control work reports these (due at once).
        for (auto& t : rejected)
            queue_result(t, protocol::task_status::rejected, {},
                         protocol::completion_error{protocol::task_error::shutting_down, "the worker is shutting down"}, 0);
        wake_control();
        emit(worker_effect::type::wake_stream);
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

    // Reports a task's outcome now.
    void finish_task(const protocol::task& t, protocol::task_status status, boost::json::value output,
                     std::optional<protocol::completion_error> err, std::int64_t execution_ms) {
        send_result(t.task_id, record_result(t, status, std::move(output), std::move(err), execution_ms));
    }

    // Hands a task's outcome to the control work, due at once.
    void queue_result(const protocol::task& t, protocol::task_status status, boost::json::value output,
                      std::optional<protocol::completion_error> err, std::int64_t execution_ms) {
        pending_result p;
        p.task_id = t.task_id;
        p.body = record_result(t, status, std::move(output), std::move(err), execution_ms);
        p.retry.set_options(options_.backoff);
        p.next_try = now_.steady;
        keep_pending(std::move(p));
    }

    void reject(const protocol::task& t, protocol::task_error code, const std::string& why) {
        log("task_rejected", &t, log_level::info, "task " + t.task_id + " rejected: " + why);
        finish_task(t, protocol::task_status::rejected, {}, protocol::completion_error{code, why}, 0);
    }

    std::string current_installation_id() const {
        const auto& stored = auth_.stored();
        if (stored && !stored->installation_id.empty()) return stored->installation_id;
        if (last_session_) return last_session_->installation_id; // after a revocation
        return options_.installation_id;
    }

    /// Sends a result now; without credentials (or on a failure) it waits in the queue.
    void send_result(const std::string& task_id, protocol::completion_request body, bool from_queue = false,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(0), backoff retry = backoff()) {
        pending_result p;
        p.task_id = task_id;
        p.body = std::move(body);
        p.retry = from_queue ? retry : backoff(options_.backoff);
        if (p.body.installation_id.empty()) p.body.installation_id = current_installation_id();
        http_request req = detail::make_request(http_method::post, protocol::path::complete(p.task_id),
                                                protocol::encode(p.body),
                                                timeout.count() > 0 ? timeout : options_.request_timeout);
        pending_result copy = p;
        if (!send(request_kind::completion, std::move(req), std::move(p), from_queue)) {
            if (auth_state_ != auth_state::idle) {
                // Authentication under way: sent once it is over (it wakes the control work).
                copy.next_try = now_.steady;
                keep_pending(std::move(copy));
            } else {
                // No credentials now: retried (from the failure) once there are.
                delay_result(std::move(copy), last_send_error_, std::nullopt);
            }
        }
    }

    void completion_answered(pending_result p, detail::http_outcome out, bool from_queue) {
        if (out.ok()) {
            // A 2xx must say it took the result; a body that cannot be read is a transient
            // failure (docs/protocol.md), never a silent drop.
            protocol::completion_response r;
            protocol::decode_error derr;
            if (!protocol::decode(out.response.body, r, derr)) {
                out.cls = protocol::status_class::transient;
                out.error = derr.code;
            } else if (!r.accepted) {
                // Answered, and refused: trying again cannot change that.
                ++status_.results_dropped;
                release_result(p.task_id);
                log("task_result_dropped", nullptr, p.task_id, log_level::error, "result of task " + p.task_id + " not accepted by the backend; dropped");
                return;
            }
        }
        if (out.ok() || out.response.status == 409) { // 409 already_completed: done
            release_result(p.task_id);
            if (from_queue) wake_control(); // the rest of the queue may go
            return;
        }
        if (out.response.status == 404 || out.cls == protocol::status_class::permanent ||
            (out.cls == protocol::status_class::revoked && revoked_)) {
            ++status_.results_dropped;
            release_result(p.task_id);
            log("task_result_refused", nullptr, p.task_id, log_level::error, "result of task " + p.task_id + " refused (" + out.error.message() + describe_body(out) +
                                      "); dropped");
            return;
        }
        const std::string id = p.task_id;
        delay_result(std::move(p), out.error, out.retry_after);
        if (from_queue) held_until_ = results_.count(id) ? results_.at(id).next_try : now_.steady;
    }

    void delay_result(pending_result p, const error_code& ec, std::optional<std::chrono::milliseconds> retry_after) {
        auto delay = p.retry.next(random_);
        if (retry_after) delay = std::max(delay, *retry_after);
        p.next_try = now_.steady + delay;
        set_error(ec, "reporting task " + p.task_id + " failed, retrying in " + std::to_string(delay.count()) + " ms: " +
                          ec.message());
        keep_pending(std::move(p));
    }

    /** Puts a result in the retry queue: one entry per task id (a newer one replaces it).
        Above `max_pending_results` a rejection is not kept (the backend redelivers a task
        it has no answer for, and the worker decides again); a handler's result always is,
        and new tasks are refused meanwhile. After the end, nothing is kept. Each result not
        kept is logged and counted in `results_dropped`.
    */
    void keep_pending(pending_result p) {
        std::string why;
        if (finished_) {
            why = "the worker has stopped";
        } else if (auto it = results_.find(p.task_id); it != results_.end()) {
            p.retry = it->second.retry;
            p.next_try = std::min(p.next_try, it->second.next_try);
            it->second = std::move(p);
            return;
        } else if (results_.size() >= options_.max_pending_results && p.body.status == protocol::task_status::rejected) {
            why = "too many results are waiting; the backend will deliver the task again";
        } else {
            std::string id = p.task_id;
            results_.emplace(std::move(id), std::move(p));
            wake_control();
            return;
        }
        ++status_.results_dropped;
        log("task_result_failed", nullptr, p.task_id, log_level::error, "result of task " + p.task_id + " could not be reported: " + why);
    }

    // The backend has the result (or refused it for good): a redelivery needs no copy of it,
    // and an older attempt waiting in the retry queue is settled too.
    void release_result(const std::string& task_id) {
        results_.erase(task_id);
        auto it = seen_.find(task_id);
        if (it == seen_.end()) return;
        it->second.result.reset();
        it->second.reported = true;
    }

    // Sends the results that are due, one at a time: after a transient failure the rest
    // wait as long as the one that failed (the backend is likely down or slow); during a
    // drain, nothing is sent past its deadline, and no request outlives it.
    void flush_results() {
        if (queue_inflight_ || results_.empty() || auth_state_ != auth_state::idle) return;
        const steady_time_point now = now_.steady;
        if (held_until_ && now < *held_until_) return;
        held_until_.reset();
        for (auto it = results_.begin(); it != results_.end(); ++it) {
            pending_result& p = it->second;
            if (!(p.next_try <= now || (shutting_down_ && p.retry.attempts() <= 1))) continue;
            std::chrono::milliseconds timeout = options_.request_timeout;
            if (shutting_down_) {
                if (now >= drain_deadline_) return; // given up, with a log line, when the drain ends
                timeout = std::min(timeout, std::max(std::chrono::duration_cast<std::chrono::milliseconds>(drain_deadline_ - now),
                                                     std::chrono::milliseconds(1)));
            }
            pending_result taken = std::move(p);
            results_.erase(it);
            send_result(taken.task_id, std::move(taken.body), true, timeout, taken.retry);
            return;
        }
    }

    // ---- the task stream ---------------------------------------------------------------

    void stream_refused() {
        const std::string code = protocol::error_code_of(stream_error_body_);
        const auto cls = protocol::classify_status(stream_status_, code, true, true);
        const error_code ec = protocol::status_error(stream_status_, code, true, true);
        switch (cls) {
        case protocol::status_class::token_rejected:
            stream_refusal_error_ = ec;
            if (!auth_.refreshing() && auth_state_ == auth_state::idle) {
                start_refresh(refresh_purpose::stream, stream_token_);
                next_connect_at_ = steady_time_point::max(); // decided when the refresh ends
            } else {
                schedule_reconnect(ec, {}, stream_retry_after_);
            }
            return;
        case protocol::status_class::revoked:
            handle_revocation(protocol::revocation{protocol::error_message_of(stream_error_body_), std::nullopt});
            return;
        case protocol::status_class::installation_gone:
            installation_gone();
            schedule_reconnect(ec, {}, stream_retry_after_);
            return;
        default: schedule_reconnect(ec, {}, stream_retry_after_); return;
        }
    }

    // The next connection, by the stream pacing rules (docs/protocol.md): a floor, a
    // backoff reset only by a healthy connection, `retry:` and `Retry-After` honoured.
    void schedule_reconnect(const error_code& ec, std::chrono::milliseconds open_for,
                            std::optional<std::chrono::milliseconds> retry_after = std::nullopt) {
        refreshed_for_stream_ = false;
        detail::pacing::stream_end end;
        end.open_for = open_for;
        end.retry_field = parser_.retry();
        end.retry_after = retry_after;
        const auto delay = detail::pacing::stream_reconnect(stream_backoff_, options_.backoff, end, random_());
        // From the end of the connection (or of the attempt), not its start.
        next_connect_at_ = now_.steady + delay;
        set_error(ec, "task stream: " + ec.message() + "; reconnecting in " + std::to_string(delay.count()) + " ms");
    }

    void handle_event(const sse::event& e) {
        if (revoked_) return; // a revoked event ends everything after it
        if (e.type == protocol::event_type::task) {
            handle_task_event(e.data);
        } else if (e.type == protocol::event_type::command) {
            protocol::command cmd;
            protocol::decode_error err;
            if (protocol::decode(e.data, cmd, err))
                handle_command(cmd);
            else
                log("command_malformed", log_level::warning, "malformed command event ignored: " + err.message());
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
            log("task_malformed", log_level::warning, "malformed task event (" + err.message() + ")" + (id.empty() ? "; ignored" : ""));
            if (!id.empty()) {
                protocol::task stub;
                stub.task_id = id;
                remember(id);
                reject(stub, protocol::task_error::invalid_input, "malformed task: " + err.message());
            }
            return;
        }
        ++status_.received;
        if (auto it = seen_.find(t.task_id); it != seen_.end()) {
            // The same task id runs once; a redelivered finished task gets its result again
            // (unless the backend already accepted it: then the copy is gone, and the backend
            // would only answer 409).
            ++status_.duplicates;
            if (it->second.done && it->second.result) send_result(t.task_id, *it->second.result);
            return;
        }
        // A refused task is not remembered: delivered again later, it is decided again.
        if (shutting_down_) return reject(t, protocol::task_error::shutting_down, "the worker is shutting down");
        if (paused_) return reject(t, protocol::task_error::worker_paused, "the worker is paused");
        if (!handlers_.count(t.capability))
            return reject(t, protocol::task_error::no_handler, "no handler for capability '" + t.capability + "'");
        if (queued_.size() >= options_.max_queued_tasks || results_.size() >= options_.max_pending_results)
            return reject(t, protocol::task_error::rate_limited, "the worker's queue is full");
        const admission a = options_.gateway.admit(t.capability, now_.steady);
        if (!a.allowed) return reject(t, a.code, a.reason);
        if (t.deadline_at && *t.deadline_at <= backend_now()) { // the backend's time
            finish_task(t, protocol::task_status::failed, {},
                        protocol::completion_error{protocol::task_error::handler_timeout,
                                                   "the task's deadline passed before it could start"},
                        0);
            return;
        }
        remember(t.task_id);
        queued_.push_back(std::move(t));
        dispatch();
    }

    void remember(const std::string& id) {
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
        // A timed-out handler still holds its thread, so it still counts.
        while (!queued_.empty() && running_.size() < options_.max_concurrent_handlers && !shutting_down_) {
            running_task rt;
            rt.task = std::move(queued_.front());
            queued_.pop_front();
            rt.started_at = now_.steady;
            rt.deadline = now_.steady + options_.handler_timeout;
            if (rt.task.deadline_at) {
                const auto left = *rt.task.deadline_at - backend_now();
                rt.deadline = std::min(rt.deadline, now_.steady + std::chrono::duration_cast<steady_time_point::duration>(left));
            }
            auto& e = emit(worker_effect::type::run_handler);
            e.task = rt.task;
            e.deadline = now_.wall + std::chrono::duration_cast<wall_time_point::duration>(rt.deadline - now_.steady);
            std::string id = rt.task.task_id;
            const steady_time_point deadline = rt.deadline;
            running_.emplace(std::move(id), std::move(rt));
            wake_control_at(deadline); // arms the deadline (a wake-up only when it is the earliest)
        }
    }

    // ---- commands and revocation -------------------------------------------------------

    void handle_command(const protocol::command& cmd) {
        if (!commands_.first_time(cmd.id)) return;
        switch (cmd.type) {
        case protocol::command_type::pause: paused_ = true; break;
        case protocol::command_type::resume: paused_ = false; break;
        default: break;
        }
        if (cmd.type == protocol::command_type::unknown) {
            log("command_unknown", log_level::warning, "ignoring a command of unknown type '" + cmd.type_name + "'");
            return;
        }
        log("command_received", log_level::info, std::string("command ") + protocol::to_string(cmd.type) +
                                 (cmd.reason.empty() ? std::string() : ": " + cmd.reason));
        emit(worker_effect::type::command).command = cmd;
        if (cmd.type == protocol::command_type::terminate)
            shutdown(cmd.shutdown_timeout_ms ? std::chrono::milliseconds(*cmd.shutdown_timeout_ms) : options_.drain_timeout,
                     "terminate command");
        wake_control();
        emit(worker_effect::type::wake_stream);
    }

    void handle_revocation(const protocol::revocation& r) {
        if (revoked_) return;
        const std::string reason = r.reason.empty() ? std::string("installation revoked") : r.reason;
        const auto timeout =
            r.shutdown_timeout_ms ? std::chrono::milliseconds(*r.shutdown_timeout_ms) : default_shutdown_timeout;
        revoked_ = true;
        status_.revoked = true;
        status_.revoked_reason = reason;
        // Heartbeats and policy fetches not yet sent are moot now (results still go out).
        for (auto it = inflight_.begin(); it != inflight_.end();) {
            if (it->second.kind == request_kind::completion) {
                ++it;
                continue;
            }
            if (it->second.kind == request_kind::heartbeat) heartbeat_inflight_ = false;
            if (it->second.kind == request_kind::policy) policy_inflight_ = false;
            it = inflight_.erase(it);
        }
        set_error(errc::revoked, "installation revoked: " + reason);
        shutdown(timeout, "revoked");
        auth_.store_will_hold(std::nullopt);
        store_op(worker_effect::type::clear, store_purpose::revoke);
        emit(worker_effect::type::revoked).revocation = revocation_info{reason, timeout};
    }

    // ---- status ------------------------------------------------------------------------

    std::vector<std::string> capabilities() const {
        if (!options_.capabilities.empty()) return options_.capabilities;
        return {handlers_.begin(), handlers_.end()};
    }

    worker_state derive_state(bool started) const {
        if (revoked_ && finished_) return worker_state::revoked;
        if (finished_) return worker_state::stopped;
        if (shutting_down_) return worker_state::draining;
        if (!started && !first_step_done()) return worker_state::idle;
        if (stream_open_) return worker_state::connected;
        if (credentials_exhausted_ || status_.last_error_code == errc::no_credentials ||
            status_.last_error_code == errc::invalid_option)
            return worker_state::degraded;
        return worker_state::connecting;
    }

    static std::string describe_body(const detail::http_outcome& out) {
        const std::string m = protocol::error_message_of(out.response.body);
        return m.empty() ? std::string() : " (" + m + ")";
    }

    void set_error(const error_code& ec, const std::string& what) {
        status_.last_error = what;
        status_.last_error_code = ec;
        log("error", ec == errc::revoked ? log_level::error : log_level::warning, what);
    }

    // `event` names what happened, for structured loggers (log_record::event); a line about
    // a task names it (and its capability and trace id when the task is at hand).
    void log(const char* event, log_level level, std::string message) {
        log(event, nullptr, std::string(), level, std::move(message));
    }
    void log(const char* event, const protocol::task* task, log_level level, std::string message) {
        log(event, task, task ? task->task_id : std::string(), level, std::move(message));
    }
    void log(const char* event, const protocol::task* task, const std::string& task_id, log_level level,
             std::string message) {
        if (!options_.logger) return; // nobody would read it
        auto& e = emit(worker_effect::type::log);
        e.line.level = level;
        e.line.text = std::move(message);
        e.line.event = event;
        e.line.installation_id = status_.installation_id;
        e.line.task_id = task_id;
        if (task) {
            e.line.capability = task->capability;
            e.line.trace_id = task->trace_id.value_or(std::string());
        }
    }

    // The control work is due now: tells a threaded driver, and `next_wake()` says so.
    void wake_control() {
        next_ = std::min(next_, now_.steady);
        emit(worker_effect::type::wake_control);
    }

    // The control work is due at `at`: a threaded driver is woken only when that is earlier
    // than the time it already waits for.
    void wake_control_at(steady_time_point at) {
        if (at >= next_) return;
        next_ = at;
        emit(worker_effect::type::wake_control);
    }

    worker_effect& emit(worker_effect::type t) {
        effects_.emplace_back();
        effects_.back().what = t;
        return effects_.back();
    }

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

#endif
