// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_CORE_IMPL_WORKER_CORE_IPP
#define SEKUIRE_CORE_IMPL_WORKER_CORE_IPP

// The bodies of worker_core's members: included by worker_core.hpp (header-only) or
// compiled once by <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/core/worker_core.hpp>

namespace sekuire {

void worker_core::store_seen(std::optional<installation_credentials> stored, const error_code& ec) {
    auth_.store_seen(std::move(stored), ec);
}

void worker_core::advance(const clock_reading& now) {
    now_ = now;
    unsaved_tried_ = false;
    control();
}

auto worker_core::stream_connect(const clock_reading& now) -> stream_decision {
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

void worker_core::on_stream_head(operation_id op, int status, const header_list& headers, const clock_reading& now) {
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

auto worker_core::on_stream_data(operation_id op, std::string_view chunk, const clock_reading& now) -> bool {
    if (op != stream_op_ || !stream_open_) return false;
    now_ = now;
    last_byte_at_ = now.steady;
    if (stream_status_ != 200) {
        if (stream_error_body_.size() < 4096)
            stream_error_body_.append(chunk.substr(0, 4096 - stream_error_body_.size()));
        return true;
    }
    bool too_long = false;
    try {
        parser_.feed(chunk, [&](const sse::event& e) {
            // After a stop, the rest of the chunk is not handled, and Last-Event-ID stays
            // at the last event that was: the backend sends the rest again.
            if (stream_closing_) return;
            handle_event(e);
            resume_id_ = e.last_event_id;
        });
    } catch (const error&) {
        too_long = true;
    }
    if (parser_.retry()) retry_field_ = parser_.retry();
    if (too_long) {
        line_error_ = true;
        return false;
    }
    return !stream_closing_;
}

void worker_core::stream_decoder::decode(std::string_view bytes, stream_chunk& out) {
    if (status_ != 200) { // a refusal's body: as on_stream_data keeps it
        const std::size_t n = std::min(bytes.size(), error_bytes_ < 4096 ? 4096 - error_bytes_ : std::size_t(0));
        out.error_body.append(bytes.substr(0, n));
        error_bytes_ += n;
        out.retry = parser_.retry();
        return;
    }
    try {
        parser_.feed(bytes, [&](const sse::event& e) {
            decoded_event& d = out.events.emplace_back();
            d.type = e.type;
            d.last_event_id = e.last_event_id;
            if (e.type == protocol::event_type::task) {
                protocol::task t;
                if (protocol::decode(e.data, t, d.error))
                    d.task = std::move(t);
                else
                    d.data = e.data;
            } else {
                d.data = e.data;
            }
        });
    } catch (const error&) {
        out.line_error = true;
    }
    out.retry = parser_.retry();
}

auto worker_core::on_stream_chunk(operation_id op, stream_chunk& chunk, const clock_reading& now) -> bool {
    if (op != stream_op_ || !stream_open_) return false;
    now_ = now;
    last_byte_at_ = now.steady;
    if (stream_status_ != 200) {
        if (stream_error_body_.size() < 4096)
            stream_error_body_.append(chunk.error_body, 0, 4096 - stream_error_body_.size());
        return true;
    }
    for (decoded_event& e : chunk.events) {
        if (stream_closing_) break; // as on_stream_data: the rest is not handled
        handle_event(e);
        resume_id_ = e.last_event_id;
    }
    if (chunk.retry) retry_field_ = chunk.retry;
    if (chunk.line_error) {
        line_error_ = true;
        return false;
    }
    return !stream_closing_;
}

void worker_core::on_stream_bytes(operation_id op, steady_time_point at) noexcept {
    if (op != stream_op_ || !stream_open_) return;
    last_byte_at_ = std::max(last_byte_at_, at);
}

void worker_core::on_stream_end(operation_id op, const error_code& ec, const clock_reading& now) {
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

auto worker_core::stream_next() const noexcept -> steady_time_point {
    if (shutting_down_ || finished_ || stream_open_) return steady_time_point::max();
    return std::max(next_connect_at_, start_at_.value_or(steady_time_point::min()));
}

void worker_core::on_response(operation_id op, const error_code& transport_error, http_response&& response, const clock_reading& now) {
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

auto worker_core::handler_starting(const std::string& task_id, const clock_reading& now) -> bool {
    now_ = now;
    auto it = running_.find(task_id);
    if (it == running_.end()) return false;
    if (it->second.abandoned) { // given up before it started (the drain ended)
        running_.erase(it);
        return false;
    }
    return true;
}

void worker_core::on_handler_refused(protocol::task task) {
    auto it = running_.find(task.task_id);
    if (it == running_.end()) return;
    queued_.push_front(std::move(task));
    running_.erase(it);
    log("handler_not_started", &queued_.front(), log_level::error, "a handler could not be started (the executor refused it); the task waits in the queue");
}

void worker_core::on_handler_done(const std::string& task_id, protocol::task_status status, boost::json::value output, std::optional<protocol::completion_error> err, const clock_reading& now) {
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

void worker_core::on_refresh_lock(operation_id op, bool owned, std::optional<installation_credentials> stored, const error_code& ec, const clock_reading& now) {
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

void worker_core::on_stored(operation_id op, const error_code& ec, const clock_reading& now) {
    now_ = now;
    auto it = store_ops_.find(op);
    if (it == store_ops_.end()) return;
    const store_purpose p = it->second;
    store_ops_.erase(it);
    stored_answered(p, ec); // what follows is the control work's, at its next step
}

void worker_core::on_writable(operation_id op, const error_code& ec, const std::string& where, const clock_reading& now) {
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

void worker_core::begin_shutdown(std::chrono::milliseconds timeout, const std::string& why, const clock_reading& now) {
    now_ = now;
    shutdown(timeout, why);
}

void worker_core::force_finish(const clock_reading& now, bool gave_up) {
    now_ = now;
    finish(gave_up);
}

void worker_core::apply_command(const protocol::command& cmd, const clock_reading& now) {
    now_ = now;
    handle_command(cmd);
}

void worker_core::apply_revocation(const protocol::revocation& r, const clock_reading& now) {
    now_ = now;
    handle_revocation(r);
}

void worker_core::apply_policy_hash(const std::string& hash) {
    if (options_.gateway.on_heartbeat_response(hash)) {
        policy_fetch_due_ = true;
        wake_control();
    }
}

void worker_core::set_paused(bool paused) {
    if (paused_ == paused) return;
    paused_ = paused;
    log(paused ? "paused" : "resumed", log_level::info, paused ? "paused" : "resumed");
    wake_control();
    emit(worker_effect::type::wake_stream);
}

auto worker_core::status(bool started) const -> worker_status {
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

auto worker_core::metrics() const -> protocol::heartbeat_metrics {
    protocol::heartbeat_metrics m;
    m.requests_handled = static_cast<std::int64_t>(status_.completed + status_.failed);
    m.errors = static_cast<std::int64_t>(status_.failed + status_.rejected);
    const std::uint64_t n = status_.completed + status_.failed;
    m.avg_latency_ms = n ? static_cast<std::int64_t>(latency_total_ms_ / n) : 0;
    return m;
}

void worker_core::control() {
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

auto worker_core::start_at() -> steady_time_point {
    if (!start_at_)
        start_at_ = now_.steady + std::chrono::milliseconds(static_cast<std::int64_t>(
                                      detail::clamp_unit(random_()) * static_cast<double>(options_.startup_jitter.count())));
    return *start_at_;
}

auto worker_core::session(error_code& ec) -> const installation_credentials* {
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

void worker_core::session_failed(const error_code& ec, std::optional<std::chrono::milliseconds> retry_after) {
    auth_error_ = ec ? ec : error_code(errc::no_credentials);
    auto delay = session_backoff_.next(random_);
    if (retry_after) delay = std::max(delay, *retry_after);
    session_retry_at_ = now_.steady + delay; // from the failure
    wake_control();
}

void worker_core::auth_settled(bool ok, const error_code& ec, std::optional<std::chrono::milliseconds> retry_after) {
    if (!ok) session_failed(ec ? ec : status_.last_error_code, retry_after);
    emit(worker_effect::type::wake_stream);
    wake_control();
}

void worker_core::bootstrap() {
    if (options_.agent_id.empty()) {
        install_token_spent_ = true;
        set_error(errc::invalid_option, "an agent id is required to bootstrap with an install token");
        return;
    }
    auth_state_ = auth_state::writable;
    auto& e = emit(worker_effect::type::check_writable);
    e.op = auth_op_ = ++last_op_;
}

void worker_core::send_bootstrap() {
    platform_info platform = options_.platform ? *options_.platform : platform_info{};
    auth_state_ = auth_state::bootstrap;
    auth_sent_backend_now_ = backend_now();
    auto& e = emit(worker_effect::type::send);
    e.op = auth_op_ = ++last_op_;
    e.request = auth_.bootstrap_request(options_.install_token, options_.agent_id, capabilities(), platform);
}

void worker_core::start_refresh(refresh_purpose p, std::string stale) {
    refresh_purpose_ = p;
    auth_.begin_refresh(std::move(stale));
    auth_state_ = auth_state::refresh_lock;
    auto& e = emit(worker_effect::type::lock_refresh);
    e.op = auth_op_ = ++last_op_;
}

void worker_core::refresh_next(auth_chain::refresh_step step) {
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

void worker_core::unlock() {
    auth_.lock_released();
    emit(worker_effect::type::unlock_refresh);
}

void worker_core::auth_answered(const error_code& transport_error, http_response&& response) {
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

void worker_core::refresh_done() {
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

void worker_core::installation_gone() {
    auth_.store_will_hold(std::nullopt);
    store_op(worker_effect::type::clear, store_purpose::gone);
    session_ready_ = false;
    set_error(errc::installation_not_found, "the backend does not know the installation; the credentials were dropped");
    session_failed(errc::installation_not_found);
}

void worker_core::stored_answered(store_purpose p, const error_code& ec) {
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

void worker_core::store_op(worker_effect::type t, store_purpose p, std::optional<installation_credentials> c) {
    auto& e = emit(t);
    e.op = ++last_op_;
    e.credentials = std::move(c);
    store_ops_[e.op] = p;
}

void worker_core::observe(const std::optional<wall_time_point>& server_time) {
    if (auth_.observe(server_time, now_.wall))
        log("clock_offset", log_level::warning, auth_.clock().describe_offset() +
                                    "; token expiry and task deadlines are judged on the backend's clock");
}

auto worker_core::bearer_of(const http_request& req) -> std::string {
    const std::string* v = find_header(req.headers, protocol::header::authorization);
    if (!v) return {};
    const std::string_view p = protocol::header::bearer_prefix;
    return v->compare(0, p.size(), p) == 0 ? v->substr(p.size()) : *v;
}

auto worker_core::send(request_kind kind, http_request req, pending_result result, bool from_queue) -> bool {
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

void worker_core::resend(inflight f) {
    f.sent_backend_now = backend_now();
    auto& e = emit(worker_effect::type::send);
    e.op = ++last_op_;
    e.request = f.request;
    if (f.kind == request_kind::completion && f.from_queue) queue_inflight_ = true;
    if (f.kind == request_kind::heartbeat) heartbeat_inflight_ = true;
    if (f.kind == request_kind::policy) policy_inflight_ = true;
    inflight_.emplace(e.op, std::move(f));
}

void worker_core::answered(inflight f, detail::http_outcome out) {
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

void worker_core::send_worker_heartbeat() {
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

void worker_core::heartbeat_answered(const detail::http_outcome& out) {
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

void worker_core::fetch_policy() {
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

void worker_core::policy_answered(const detail::http_outcome& out) {
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

void worker_core::check_deadlines() {
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

void worker_core::check_stream_idle() {
    if (!stream_open_ || stream_closing_ || now_.steady < last_byte_at_ + options_.stream_idle_timeout) return;
    idle_cut_ = true;
    log("stream_idle", log_level::warning, "the task stream was silent too long; reconnecting");
    close_stream();
}

void worker_core::close_stream() {
    if (!stream_open_ || stream_closing_) return;
    stream_closing_ = true;
    emit(worker_effect::type::close_stream).op = stream_op_;
}

auto worker_core::completions_inflight() const -> std::size_t {
    std::size_t n = 0;
    for (const auto& kv : inflight_)
        if (kv.second.kind == request_kind::completion) ++n;
    for (const auto& w : waiting_refresh_)
        if (w.kind == request_kind::completion) ++n;
    return n;
}

auto worker_core::drain_step() -> bool {
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

void worker_core::finish(bool gave_up) {
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

void worker_core::shutdown(std::chrono::milliseconds timeout, const std::string& why) {
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

auto worker_core::record_result(const protocol::task& t, protocol::task_status status, boost::json::value output, std::optional<protocol::completion_error> err, std::int64_t execution_ms) -> protocol::completion_request {
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

void worker_core::finish_task(const protocol::task& t, protocol::task_status status, boost::json::value output, std::optional<protocol::completion_error> err, std::int64_t execution_ms) {
    send_result(t.task_id, record_result(t, status, std::move(output), std::move(err), execution_ms));
}

void worker_core::queue_result(const protocol::task& t, protocol::task_status status, boost::json::value output, std::optional<protocol::completion_error> err, std::int64_t execution_ms) {
    pending_result p;
    p.task_id = t.task_id;
    p.body = record_result(t, status, std::move(output), std::move(err), execution_ms);
    p.retry.set_options(options_.backoff);
    p.next_try = now_.steady;
    keep_pending(std::move(p));
}

void worker_core::reject(const protocol::task& t, protocol::task_error code, const std::string& why) {
    log("task_rejected", &t, log_level::info, "task " + t.task_id + " rejected: " + why);
    finish_task(t, protocol::task_status::rejected, {}, protocol::completion_error{code, why}, 0);
}

auto worker_core::current_installation_id() const -> std::string {
    const auto& stored = auth_.stored();
    if (stored && !stored->installation_id.empty()) return stored->installation_id;
    if (last_session_) return last_session_->installation_id; // after a revocation
    return options_.installation_id;
}

void worker_core::send_result(const std::string& task_id, protocol::completion_request body, bool from_queue, std::chrono::milliseconds timeout, backoff retry) {
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

void worker_core::completion_answered(pending_result p, detail::http_outcome out, bool from_queue) {
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

void worker_core::delay_result(pending_result p, const error_code& ec, std::optional<std::chrono::milliseconds> retry_after) {
    auto delay = p.retry.next(random_);
    if (retry_after) delay = std::max(delay, *retry_after);
    p.next_try = now_.steady + delay;
    set_error(ec, "reporting task " + p.task_id + " failed, retrying in " + std::to_string(delay.count()) + " ms: " +
                      ec.message());
    keep_pending(std::move(p));
}

void worker_core::keep_pending(pending_result p) {
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

void worker_core::release_result(const std::string& task_id) {
    results_.erase(task_id);
    auto it = seen_.find(task_id);
    if (it == seen_.end()) return;
    it->second.result.reset();
    it->second.reported = true;
}

void worker_core::flush_results() {
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

void worker_core::stream_refused() {
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

void worker_core::schedule_reconnect(const error_code& ec, std::chrono::milliseconds open_for, std::optional<std::chrono::milliseconds> retry_after) {
    refreshed_for_stream_ = false;
    detail::pacing::stream_end end;
    end.open_for = open_for;
    end.retry_field = retry_field_;
    end.retry_after = retry_after;
    const auto delay = detail::pacing::stream_reconnect(stream_backoff_, options_.backoff, end, random_());
    // From the end of the connection (or of the attempt), not its start.
    next_connect_at_ = now_.steady + delay;
    set_error(ec, "task stream: " + ec.message() + "; reconnecting in " + std::to_string(delay.count()) + " ms");
}

void worker_core::handle_event(const sse::event& e) {
    if (revoked_) return; // a revoked event ends everything after it
    if (e.type == protocol::event_type::task)
        handle_task_event(e.data);
    else
        handle_other_event(e.type, e.data);
}

void worker_core::handle_event(decoded_event& e) {
    if (revoked_) return; // as above
    if (e.type != protocol::event_type::task)
        handle_other_event(e.type, e.data);
    else if (e.task)
        handle_task(std::move(*e.task));
    else
        task_malformed(e.data, e.error);
}

void worker_core::handle_other_event(const std::string& type, const std::string& data) {
    if (type == protocol::event_type::command) {
        protocol::command cmd;
        protocol::decode_error err;
        if (protocol::decode(data, cmd, err))
            handle_command(cmd);
        else
            log("command_malformed", log_level::warning, "malformed command event ignored: " + err.message());
    } else if (type == protocol::event_type::revoked) {
        protocol::revocation r;
        protocol::decode_error err;
        if (!protocol::decode(data, r, err)) r.reason = "installation revoked";
        handle_revocation(r);
    } else if (type == protocol::event_type::policy) {
        protocol::policy_event p;
        protocol::decode_error err;
        if (protocol::decode(data, p, err) && options_.gateway.on_heartbeat_response(p.active_policy_hash)) {
            policy_fetch_due_ = true;
            wake_control();
        }
    }
    // Other event types are ignored.
}

void worker_core::handle_task_event(const std::string& data) {
    protocol::task t;
    protocol::decode_error err;
    if (!protocol::decode(data, t, err)) return task_malformed(data, err);
    handle_task(std::move(t));
}

void worker_core::task_malformed(const std::string& data, const protocol::decode_error& err) {
    // Report it when at least its id can be read, so that it is not redelivered forever.
    const std::string id = protocol::task_id_of(data);
    log("task_malformed", log_level::warning, "malformed task event (" + err.message() + ")" + (id.empty() ? "; ignored" : ""));
    if (!id.empty()) {
        protocol::task stub;
        stub.task_id = id;
        remember(id);
        reject(stub, protocol::task_error::invalid_input, "malformed task: " + err.message());
    }
}

void worker_core::handle_task(protocol::task t) {
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

void worker_core::remember(const std::string& id) {
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

void worker_core::dispatch() {
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
        // The input, which may be large, goes to the handler; the core keeps the rest.
        boost::json::value input = std::move(rt.task.input); // leaves null behind
        e.task = rt.task;
        e.task.input = std::move(input);
        e.deadline = now_.wall + std::chrono::duration_cast<wall_time_point::duration>(rt.deadline - now_.steady);
        std::string id = rt.task.task_id;
        const steady_time_point deadline = rt.deadline;
        running_.emplace(std::move(id), std::move(rt));
        wake_control_at(deadline); // arms the deadline (a wake-up only when it is the earliest)
    }
}

void worker_core::handle_command(const protocol::command& cmd) {
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

void worker_core::handle_revocation(const protocol::revocation& r) {
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

auto worker_core::capabilities() const -> std::vector<std::string> {
    if (!options_.capabilities.empty()) return options_.capabilities;
    return {handlers_.begin(), handlers_.end()};
}

auto worker_core::derive_state(bool started) const -> worker_state {
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

auto worker_core::describe_body(const detail::http_outcome& out) -> std::string {
    const std::string m = protocol::error_message_of(out.response.body);
    return m.empty() ? std::string() : " (" + m + ")";
}

void worker_core::set_error(const error_code& ec, const std::string& what) {
    status_.last_error = what;
    status_.last_error_code = ec;
    log("error", ec == errc::revoked ? log_level::error : log_level::warning, what);
}

void worker_core::log(const char* event, log_level level, std::string message) {
    log(event, nullptr, std::string(), level, std::move(message));
}

void worker_core::log(const char* event, const protocol::task* task, log_level level, std::string message) {
    log(event, task, task ? task->task_id : std::string(), level, std::move(message));
}

void worker_core::log(const char* event, const protocol::task* task, const std::string& task_id, log_level level, std::string message) {
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

void worker_core::wake_control() {
    next_ = std::min(next_, now_.steady);
    emit(worker_effect::type::wake_control);
}

void worker_core::wake_control_at(steady_time_point at) {
    if (at >= next_) return;
    next_ = at;
    emit(worker_effect::type::wake_control);
}

auto worker_core::emit(worker_effect::type t) -> worker_effect& {
    effects_.emplace_back();
    effects_.back().what = t;
    return effects_.back();
}

} // namespace sekuire

#endif
