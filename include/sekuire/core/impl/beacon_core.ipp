// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_CORE_IMPL_BEACON_CORE_IPP
#define SEKUIRE_CORE_IMPL_BEACON_CORE_IPP

// The bodies of core/beacon_core.hpp's functions: included by core/beacon_core.hpp (header-only) or compiled once by
// <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/core/beacon_core.hpp>

namespace sekuire {

void beacon_core::store_seen(std::optional<installation_credentials> stored, const error_code& ec) {
    auth_.store_seen(std::move(stored), ec);
}

void beacon_core::advance(const clock_reading& now) {
    now_ = now;
    unsaved_tried_ = false;
    take_pending_revocation();
    run();
}

void beacon_core::on_response(operation_id op, const error_code& transport_error, http_response&& response, const clock_reading& now) {
    if (!expecting(op)) return;
    now_ = now;
    const op_kind k = waiting_;
    waiting_ = op_kind::none;
    const bool installation_path = k != op_kind::bootstrap && k != op_kind::recover;
    const bool bearer = k == op_kind::heartbeat || k == op_kind::heartbeat_retry || k == op_kind::final_heartbeat;
    detail::http_outcome out =
        detail::classify(transport_error, std::move(response), bearer, installation_path, sent_backend_now_);
    observe(out.server_time);
    switch (k) {
    case op_kind::bootstrap:
    case op_kind::recover: bootstrap_answered(k, std::move(out)); break;
    case op_kind::refresh: refresh_answered(std::move(out)); break;
    case op_kind::heartbeat: heartbeat_answered(std::move(out), false); break;
    case op_kind::heartbeat_retry: heartbeat_answered(std::move(out), true); break;
    case op_kind::final_heartbeat: final_heartbeat_answered(out); break;
    default: break;
    }
    continue_run();
}

void beacon_core::on_refresh_lock(operation_id op, bool owned, std::optional<installation_credentials> stored, const error_code& ec, const clock_reading& now) {
    if (!expecting(op)) {
        if (owned) emit(beacon_effect::type::unlock_refresh); // taken for a flow given up
        return;
    }
    now_ = now;
    waiting_ = op_kind::none;
    refresh_locked(owned, std::move(stored), ec);
    continue_run();
}

void beacon_core::on_stored(operation_id op, const error_code& ec, const clock_reading& now) {
    if (!expecting(op)) return;
    now_ = now;
    waiting_ = op_kind::none;
    const store_purpose p = store_purpose_;
    stored_answered(p, ec);
    continue_run();
}

void beacon_core::on_adopted(operation_id op, detail::adopt_result r, const clock_reading& now) {
    if (!expecting(op)) return;
    now_ = now;
    waiting_ = op_kind::none;
    if (r.error) {
        // Kept in memory and saved again at each step until the store takes it.
        log("token_save_failed", log_level::error, "the refreshed token could not be persisted yet: " + r.error.message());
        if (r.credentials) auth_.remember_unsaved(*r.credentials);
    }
    if (r.credentials) creds_ = r.credentials;
    if (r.adopted && creds_)
        log("token_replaced", log_level::info, "runtime token replaced by the heartbeat (" + mask_token(creds_->runtime_token) + ")");
    continue_run();
}

void beacon_core::on_forgot(operation_id op, std::optional<installation_credentials> c, const error_code& ec, const clock_reading& now) {
    if (!expecting(op)) return;
    now_ = now;
    waiting_ = op_kind::none;
    if (ec) log("token_remove_failed", log_level::error, "the rejected runtime token could not be removed from the store: " + ec.message());
    if (!ec && c && !c->installation_id.empty()) {
        creds_ = std::move(c);
    } else if (creds_ && creds_->runtime_token == forgotten_) {
        creds_->runtime_token.clear();
        creds_->runtime_token_expires_at.reset();
        creds_->runtime_token_issued_at.reset();
    }
    after_forget();
    continue_run();
}

void beacon_core::on_writable(operation_id op, const error_code& ec, const std::string& where, const clock_reading& now) {
    if (!expecting(op)) return;
    now_ = now;
    const op_kind k = waiting_;
    waiting_ = op_kind::none;
    if (ec) {
        // A bootstrap creates credentials that must be kept (an install token is
        // single-use): never start one the store could not save. Retried with backoff
        // (a volume not mounted yet, a directory not created yet).
        auth_retry(ec, std::nullopt,
                   "the credential store" + (where.empty() ? std::string() : " (" + where + ")") +
                       " cannot be written, so the bootstrap was not attempted");
    } else {
        writable_checked_ = true;
        if (k == op_kind::writable_bootstrap) send_bootstrap();
        else send_recover();
    }
    continue_run();
}

void beacon_core::stop(const clock_reading& now) {
    now_ = now;
    if (stopping_ || phase_ == phase::stopped) return;
    stopping_ = true;
    take_pending_revocation();
    if (auth_.lock_held()) emit_unlock();
    waiting_ = op_kind::none;
    if (phase_ == phase::running && !revoked_ && creds_ && !creds_->runtime_token.empty()) {
        send_final_heartbeat();
    } else {
        finish_stop();
    }
}

void beacon_core::apply_revocation(const protocol::revocation& r) {
    if (!pending_revocation_) pending_revocation_ = r;
}

void beacon_core::settle() {
    if (!update_signature()) return;
    if (options_.on_status_change) emit(beacon_effect::type::status_changed);
}

auto beacon_core::first_pass_done() const noexcept -> bool {
    return phase_ != phase::initial && !(phase_ == phase::auth && !attempted_);
}

auto beacon_core::status() const -> beacon_status {
    beacon_status s;
    status_into(s);
    return s;
}

void beacon_core::status_into(beacon_status& s) const {
    s.state = derive_state();
    if (creds_) {
        s.installation_id = creds_->installation_id;
        s.runtime_token = mask_token(creds_->runtime_token); // at most 15 characters: no allocation
    } else {
        s.installation_id.clear();
        s.runtime_token.clear();
    }
    s.runtime_token_expires_at = creds_ ? creds_->runtime_token_expires_at : std::nullopt;
    s.deployment_url = deployment_url_;
    s.last_heartbeat = last_heartbeat_;
    s.failed_heartbeats = failed_;
    s.degraded_mode = degraded_ || phase_ == phase::degraded;
    s.recovered_from_env = recovered_from_env_;
    s.lease_expires_at = lease_expires_at_;
    s.lease_expired = lease_expired_;
    s.paused = paused_;
    s.terminate_requested = terminate_requested_;
    s.revoked = revoked_;
    s.revoked_reason = revoked_reason_;
    s.shutdown_timeout = shutdown_timeout_;
    s.last_error = last_error_;
    s.last_error_code = last_error_code_;
    s.heartbeats_sent = heartbeats_;
    s.active_policy_hash = policy_hash_;
    s.heartbeat_interval = std::chrono::duration_cast<std::chrono::seconds>(interval_);
    s.clock_offset = auth_.clock().offset();
}

void beacon_core::run() {
    for (int i = 0; i < 32 && waiting_ == op_kind::none && !stopping_; ++i) {
        next_ = step_once();
        if (waiting_ != op_kind::none || next_ > now_.steady) break;
    }
}

void beacon_core::continue_run() {
    if (stopping_) {
        if (waiting_ == op_kind::none && phase_ != phase::stopped) finish_stop();
    } else {
        run();
    }
}

auto beacon_core::step_once() -> steady_time_point {
    take_pending_revocation();
    const steady_time_point now = now_.steady;
    switch (phase_) {
    case phase::initial: begin(); return next_at_;
    case phase::auth:
        if (now < next_at_) return next_at_;
        attempted_ = true;
        auth_attempt();
        return phase_ == phase::auth ? next_at_ : now;
    case phase::running: return running_step();
    case phase::degraded:
    case phase::revoked:
    case phase::stopped: return steady_time_point::max();
    }
    return steady_time_point::max();
}

auto beacon_core::next_op(op_kind k) -> operation_id {
    waiting_ = k;
    return op_ = ++last_op_;
}

auto beacon_core::emit(beacon_effect::type t) -> beacon_effect& {
    effects_.emplace_back();
    effects_.back().what = t;
    return effects_.back();
}

void beacon_core::send(op_kind k, http_request req) {
    sent_backend_now_ = backend_now();
    auto& e = emit(beacon_effect::type::send);
    e.op = next_op(k);
    e.request = std::move(req);
}

void beacon_core::store_op(beacon_effect::type t, store_purpose p, std::optional<installation_credentials> c) {
    store_purpose_ = p;
    auto& e = emit(t);
    e.op = next_op(op_kind::store);
    e.credentials = std::move(c);
}

void beacon_core::emit_unlock() {
    auth_.lock_released();
    emit(beacon_effect::type::unlock_refresh);
}

void beacon_core::begin() {
    started_at_ = now_.steady;
    phase_ = phase::auth;
    // A fleet restarted together spreads its first bootstraps and registrations.
    next_at_ = now_.steady + std::chrono::milliseconds(static_cast<std::int64_t>(
                                 detail::clamp_unit(random_()) * static_cast<double>(options_.startup_jitter.count())));
    std::optional<installation_credentials> stored = auth_.stored();
    const error_code stored_ec = auth_.store_error();
    if (stored_ec && stored_ec != errc::store_corrupt) {
        // Perhaps a passing I/O error: the session step reads it again, with backoff.
        // Never bootstrap past stored credentials that could not be read.
        record_error(stored_ec, "the credential store cannot be read: " + stored_ec.message());
        stage_ = stage::session;
        return;
    }
    if (stored_ec) {
        // Nothing in it can be used: authenticate without it (the next save keeps the
        // corrupt file aside).
        record_error(stored_ec,
                     "the stored credentials are unreadable (" + stored_ec.message() + "); authenticating without them");
        stored.reset();
    }
    if ((!stored || stored->installation_id.empty()) && !options_.installation_id.empty() &&
        (!options_.refresh_token.empty() || !options_.runtime_token.empty())) {
        installation_credentials c;
        c.installation_id = options_.installation_id;
        c.refresh_token = options_.refresh_token;
        c.runtime_token = options_.runtime_token;
        stored = c;
        recovered_from_env_ = options_.recovered_from_env;
        log("recovering", log_level::info, "recovering installation " + c.installation_id + " from " +
                                 (options_.recovered_from_env ? "the environment" : "the options"));
        creds_ = stored;
        auth_.store_will_hold(stored);
        stage_ = stage::session;
        store_op(beacon_effect::type::save, store_purpose::seed, std::move(c));
        return;
    }
    creds_ = stored;
    stage_ = (stored && !stored->installation_id.empty()) ? stage::session : stage::bootstrap;
}

void beacon_core::auth_attempt() {
    // Permanent failures walk down the chain at once; transient ones wait for a retry.
    for (int guard = 0; guard < 4 && phase_ == phase::auth && now_.steady >= next_at_ && waiting_ == op_kind::none;
         ++guard) {
        switch (stage_) {
        case stage::session: session_attempt(); break;
        case stage::bootstrap: bootstrap_attempt(); break;
        case stage::recover: recover_attempt(); break;
        }
    }
}

auto beacon_core::reconciled(bool& save_again) -> const std::optional<installation_credentials>& {
    const std::optional<installation_credentials>& c = auth_.reconciled(save_again);
    save_again = save_again && !unsaved_tried_;
    if (save_again) unsaved_tried_ = true;
    return c;
}

void beacon_core::session_attempt() {
    const error_code stored_ec = auth_.store_error();
    if (stored_ec && stored_ec != errc::store_corrupt) {
        auth_retry(stored_ec, std::nullopt, "the credential store cannot be read");
        return;
    }
    bool save_again = false;
    std::optional<installation_credentials> c = stored_ec ? std::nullopt : reconciled(save_again);
    if (!c || c->installation_id.empty()) {
        stage_ = stage::bootstrap;
        return;
    }
    creds_ = c;
    if (save_again) {
        store_op(beacon_effect::type::save, store_purpose::unsaved, *c);
        return; // the session step goes on once it is saved (or not)
    }
    if (!detail::token_expired(*c, backend_now())) {
        // The registration heartbeat validates a present runtime token.
        go_running();
        return;
    }
    start_refresh(refresh_purpose::session, c->runtime_token);
}

void beacon_core::session_refreshed(const detail::refresh_result& r) {
    switch (r.status) {
    case detail::refresh_status::refreshed:
        if (r.credentials) creds_ = r.credentials;
        go_running();
        return;
    case detail::refresh_status::transient:
    case detail::refresh_status::store_failed: auth_retry(r.error, r.retry_after); return;
    case detail::refresh_status::revoked: revoke({"installation revoked (refresh refused)", std::nullopt}); return;
    case detail::refresh_status::gone:
        walk_chain_again(); // after the auth backoff, as a 404 on any installation path
        drop_credentials("the backend does not know the installation");
        return;
    case detail::refresh_status::rejected:
    case detail::refresh_status::no_refresh_token:
        record_error(r.error ? r.error : error_code(errc::invalid_refresh_token),
                     "the recovery credentials were refused: " +
                         (r.error ? r.error.message() : std::string("no refresh token")));
        break;
    }
    stage_ = stage::bootstrap;
}

void beacon_core::bootstrap_attempt() {
    if (options_.install_token.empty() || install_token_spent_) {
        stage_ = stage::recover;
        return;
    }
    if (options_.agent_id.empty()) {
        record_error(errc::invalid_option, "an agent id is required to bootstrap with an install token");
        install_token_spent_ = true;
        stage_ = stage::recover;
        return;
    }
    if (!writable_checked_) {
        emit(beacon_effect::type::check_writable).op = next_op(op_kind::writable_bootstrap);
        return;
    }
    send_bootstrap();
}

void beacon_core::send_bootstrap() {
    writable_checked_ = false;
    send(op_kind::bootstrap,
         auth_.bootstrap_request(options_.install_token, options_.agent_id, options_.capabilities, platform_));
}

void beacon_core::recover_attempt() {
    if (options_.api_key.empty() || options_.workspace_id.empty() || options_.agent_id.empty()) {
        enter_degraded(last_error_code_ ? last_error_code_ : error_code(errc::no_credentials),
                       last_error_.empty() ? error_code(errc::no_credentials).message() : last_error_);
        return;
    }
    if (!writable_checked_) {
        emit(beacon_effect::type::check_writable).op = next_op(op_kind::writable_recover);
        return;
    }
    send_recover();
}

void beacon_core::send_recover() {
    writable_checked_ = false;
    send(op_kind::recover, auth_.recover_request(options_.api_key, options_.workspace_id, options_.agent_id,
                                                 options_.capabilities, platform_));
}

void beacon_core::bootstrap_answered(op_kind k, detail::http_outcome&& out) {
    const detail::bootstrap_result r = auth_chain::bootstrap_answer(std::move(out));
    const char* what = k == op_kind::bootstrap ? "install token" : "recovery bootstrap";
    switch (r.status) {
    case detail::bootstrap_status::ok: {
        installation_credentials c = detail::credentials_from(r.response, backend_now());
        creds_ = c;
        recovered_from_env_ = false; // a new installation: nothing recovered
        if (r.response.deployment_url) deployment_url_ = *r.response.deployment_url;
        if (r.response.heartbeat_interval_seconds) {
            const auto s = std::min<std::int64_t>(*r.response.heartbeat_interval_seconds, 86400);
            interval_ = std::chrono::seconds(std::max<std::int64_t>(s, 1));
        }
        set_lease(r.response.lease_expires_at);
        bootstrap_log_ = std::string(what) + ": installation " + c.installation_id + " (runtime token " +
                         mask_token(c.runtime_token) + ")";
        auth_.store_will_hold(c);
        store_op(beacon_effect::type::save, store_purpose::bootstrap, std::move(c));
        return;
    }
    case detail::bootstrap_status::transient: auth_retry(r.error, r.retry_after); return;
    case detail::bootstrap_status::revoked: revoke({"installation revoked", std::nullopt}); return;
    case detail::bootstrap_status::permanent:
        record_error(r.error, std::string(what) + " failed: " + r.error.message() +
                                  (r.error_message.empty() ? std::string() : " (" + r.error_message + ")"));
        break;
    }
    if (phase_ != phase::auth) return;
    if (k == op_kind::bootstrap) {
        install_token_spent_ = true;
        stage_ = stage::recover;
        next_at_ = now_.steady;
    } else {
        enter_degraded(last_error_code_, last_error_);
    }
}

void beacon_core::auth_retry(const error_code& ec, const std::optional<std::chrono::milliseconds>& retry_after, const std::string& what) {
    auto delay = auth_backoff_.next(random_);
    if (retry_after) delay = std::max(delay, *retry_after);
    next_at_ = now_.steady + delay; // from the failure, not the attempt
    degraded_ = true;
    record_error(ec, what + ", retrying in " + std::to_string(delay.count()) + " ms: " + ec.message());
}

void beacon_core::enter_degraded(const error_code& ec, const std::string& why) {
    phase_ = phase::degraded;
    degraded_ = true;
    record_error(ec ? ec : error_code(errc::no_credentials), "degraded mode: " + why);
}

void beacon_core::go_running() {
    phase_ = phase::running;
    registered_ = false;
    next_beat_at_ = now_.steady;
}

void beacon_core::walk_chain_again() {
    phase_ = phase::auth;
    stage_ = stage::bootstrap;
    next_at_ = now_.steady + auth_backoff_.next(random_);
}

void beacon_core::drop_credentials(const std::string& why) {
    creds_.reset();
    recovered_from_env_ = false;
    auth_.store_will_hold(std::nullopt);
    record_error(errc::installation_not_found, why + "; the stored credentials were dropped");
    store_op(beacon_effect::type::clear, store_purpose::drop);
}

void beacon_core::stored_answered(store_purpose p, const error_code& ec) {
    switch (p) {
    case store_purpose::seed:
        if (ec) record_error(ec, "the credential store cannot be written: " + ec.message());
        return;
    case store_purpose::unsaved:
        if (!ec) {
            auth_.forget_unsaved();
        } else if (phase_ == phase::running) {
            log("credentials_save_failed", log_level::error, "the refreshed credentials still cannot be saved (" + ec.message() +
                                      "); they stay in memory");
        }
        // The session step goes on with the memory copy, saved or not.
        if (phase_ == phase::auth && creds_) {
            if (!detail::token_expired(*creds_, backend_now()))
                go_running();
            else
                start_refresh(refresh_purpose::session, creds_->runtime_token);
        }
        return;
    case store_purpose::restore:
        if (checked_after_clear_ != (creds_ ? creds_->installation_id : std::string())) {
            checked_after_clear_ = creds_ ? creds_->installation_id : std::string();
            next_beat_at_ = std::min(next_beat_at_, now_.steady);
            log("store_emptied", log_level::warning, "the credential store was emptied by another holder; checking installation " +
                                        checked_after_clear_ + " with the backend" +
                                        (ec ? " (the store cannot be written: " + ec.message() + ")" : std::string()));
        }
        return;
    case store_purpose::bootstrap:
        if (ec) record_error(ec, "the credential store cannot be written: " + ec.message());
        log("bootstrapped", log_level::info, bootstrap_log_);
        go_running();
        return;
    case store_purpose::refresh:
        // Valid credentials (and a rotated refresh token exists nowhere else): when the
        // store refused them they are kept in memory and saved again at each step.
        auth_.refresh_saved(ec);
        if (ec)
            log("credentials_save_failed", log_level::error, "the refreshed credentials could not be saved (" + ec.message() +
                                      "); they are kept in memory and saved again at each step");
        emit_unlock();
        refresh_done();
        return;
    case store_purpose::drop:
        if (ec) log("credentials_remove_failed", log_level::error, "the stored credentials could not be removed: " + ec.message());
        if (phase_ == phase::running) walk_chain_again();
        return;
    case store_purpose::revoke:
        if (ec) log("credentials_remove_failed", log_level::error, "the revoked credentials could not be removed: " + ec.message());
        return;
    }
}

void beacon_core::start_refresh(refresh_purpose p, std::string stale_token) {
    refresh_purpose_ = p;
    auth_.begin_refresh(std::move(stale_token));
    emit(beacon_effect::type::lock_refresh).op = next_op(op_kind::lock_refresh_wait);
}

void beacon_core::refresh_locked(bool owned, std::optional<installation_credentials> stored, const error_code& ec) {
    refresh_next(auth_.refresh_locked(owned, std::move(stored), ec, backend_now()));
}

void beacon_core::refresh_next(auth_chain::refresh_step step) {
    switch (step.what) {
    case auth_chain::refresh_step::kind::send: send(op_kind::refresh, std::move(step.request)); return;
    case auth_chain::refresh_step::kind::save:
        store_op(beacon_effect::type::save, store_purpose::refresh, std::move(step.credentials));
        return;
    case auth_chain::refresh_step::kind::done:
        if (auth_.lock_held()) emit_unlock();
        refresh_done();
        return;
    }
}

void beacon_core::refresh_done() {
    const detail::refresh_result r = auth_.result();
    switch (refresh_purpose_) {
    case refresh_purpose::session: session_refreshed(r); return;
    case refresh_purpose::running: running_refreshed(r); return;
    case refresh_purpose::heartbeat: heartbeat_refreshed(r); return;
    }
}

auto beacon_core::running_step() -> steady_time_point {
    const steady_time_point now = now_.steady;
    if (lease_deadline_ && !lease_expired_ && now >= *lease_deadline_) {
        lease_expired_ = true;
        log("lease_expired", log_level::warning, "lease expired before it was renewed");
    }
    if (auth_.store_error()) {
        log("store_unreadable", log_level::warning, "the credential store cannot be read (" + auth_.store_error().message() +
                                    "); going on with the credentials in memory");
    } else {
        bool save_again = false;
        const std::optional<installation_credentials>& c = reconciled(save_again);
        if (c && !c->installation_id.empty()) {
            creds_ = c; // assigned in place: the strings' storage is reused
            if (save_again) {
                store_op(beacon_effect::type::save, store_purpose::unsaved, *c);
                return steady_time_point::max();
            }
        } else if (!creds_ || creds_->installation_id.empty()) {
            phase_ = phase::auth;
            stage_ = stage::bootstrap;
            next_at_ = now;
            return now;
        } else if (checked_after_clear_ != creds_->installation_id) {
            // Emptied by another holder of the store (its revocation or its 404, or an
            // operator). The backend decides what became of the installation, not the
            // store: put the credentials back and ask it at once, rather than bootstrap
            // a new installation past a kill switch.
            auth_.store_will_hold(creds_);
            store_op(beacon_effect::type::save, store_purpose::restore, *creds_);
            return steady_time_point::max();
        }
    }
    steady_time_point next = next_beat_at_;
    if (creds_ && detail::token_needs_refresh(*creds_, backend_now()) && !creds_->refresh_token.empty()) {
        if (now >= refresh_retry_at_) {
            start_refresh(refresh_purpose::running, creds_->runtime_token);
            return steady_time_point::max();
        }
        if (creds_ && detail::token_expired(*creds_, backend_now()) && creds_->runtime_token != unjudged_token_) {
            // Never call with an expired token: wait for the refresh to succeed.
            return std::min(std::max(refresh_retry_at_, now + std::chrono::milliseconds(1)), lease_or_max());
        }
        next = std::min(next, refresh_retry_at_);
    }
    if (now >= next_beat_at_) {
        send_heartbeat();
        return phase_ == phase::auth ? next_at_ : steady_time_point::max();
    }
    return schedule_after_running(next);
}

auto beacon_core::schedule_after_running(steady_time_point next) const -> steady_time_point {
    const steady_time_point now = now_.steady;
    next = std::min(next_beat_at_, lease_or_max());
    if (const auto due = creds_ ? detail::refresh_due_at(*creds_) : std::nullopt) {
        const std::int64_t until_ms = detail::wall_ms(*due) - detail::wall_ms(backend_now());
        if (until_ms > 0)
            next = std::min(next, now + std::chrono::milliseconds(std::min<std::int64_t>(until_ms, 24LL * 3600 * 1000)));
        else
            next = std::min(next, std::max(refresh_retry_at_, now + std::chrono::milliseconds(1)));
    }
    return next;
}

auto beacon_core::lease_or_max() const -> steady_time_point {
    return (lease_deadline_ && !lease_expired_) ? *lease_deadline_ : steady_time_point::max();
}

auto beacon_core::handle_refresh_result(const detail::refresh_result& r) -> bool {
    const steady_time_point now = now_.steady;
    switch (r.status) {
    case detail::refresh_status::refreshed:
        if (r.credentials) creds_ = r.credentials;
        if (r.called) log("token_refreshed", log_level::info, "runtime token refreshed (" + mask_token(creds_->runtime_token) + ")");
        if (r.called && creds_ && detail::token_needs_refresh(*creds_, backend_now())) {
            // Due again the moment it was issued: its expiry is in the past of the
            // backend's own clock. Refreshing at once would repeat for ever; use the
            // token (the backend decides) and try again after a backoff.
            const auto delay = refresh_backoff_.next(random_);
            refresh_retry_at_ = now + delay;
            unjudged_token_ = creds_->runtime_token;
            record_error(errc::invalid_value,
                         "the backend issued a runtime token already due for refresh (expires " +
                             (creds_->runtime_token_expires_at ? format_rfc3339(*creds_->runtime_token_expires_at)
                                                               : std::string("?")) +
                             "); using it, next refresh in " + std::to_string(delay.count()) + " ms");
        } else {
            refresh_backoff_.reset();
            refresh_retry_at_ = steady_time_point{};
        }
        return true;
    case detail::refresh_status::transient:
    case detail::refresh_status::store_failed: {
        auto delay = refresh_backoff_.next(random_);
        if (r.retry_after) delay = std::max(delay, *r.retry_after);
        refresh_retry_at_ = now + delay; // from the failure
        record_error(r.error, "token refresh failed, retrying in " + std::to_string(delay.count()) +
                                  " ms: " + r.error.message());
        return true;
    }
    case detail::refresh_status::revoked: revoke({"installation revoked (refresh refused)", std::nullopt}); return false;
    case detail::refresh_status::gone:
        drop_credentials("the backend does not know the installation");
        return false;
    case detail::refresh_status::rejected:
    case detail::refresh_status::no_refresh_token:
        record_error(r.error, "the refresh token was refused: " + r.error.message());
        if (creds_ && detail::token_expired(*creds_, backend_now())) {
            walk_chain_again();
            return false;
        }
        // The current token still works until it expires; try again later.
        refresh_retry_at_ = now + std::max<std::chrono::milliseconds>(interval_, std::chrono::seconds(60));
        return true;
    }
    return true;
}

void beacon_core::observe(const std::optional<wall_time_point>& server_time) {
    if (auth_.observe(server_time, now_.wall))
        log("clock_offset", log_level::warning, auth_.clock().describe_offset() + "; token expiry is judged on the backend's clock");
}

auto beacon_core::reported_status() const -> protocol::heartbeat_status {
    if (reported_status_) return *reported_status_;
    if (paused_) return protocol::heartbeat_status::paused;
    if (failed_ > 0 || lease_expired_) return protocol::heartbeat_status::degraded;
    return protocol::heartbeat_status::healthy;
}

auto beacon_core::heartbeat_request(protocol::heartbeat_status status, std::chrono::milliseconds timeout) -> http_request {
    protocol::heartbeat_metrics metrics;
    if (options_.metrics) {
        try {
            metrics = options_.metrics();
        } catch (...) {
            log("metrics_callback_threw", log_level::warning, "the metrics callback threw; sending zero metrics");
        }
    }
    const std::int64_t uptime = std::chrono::duration_cast<std::chrono::seconds>(now_.steady - started_at_).count();
    // Every field written anew, into the storage of a request given back (reuse_request)
    // when there is one: what make_request() and set_bearer() would build.
    http_request req = std::move(spare_request_);
    req.method = http_method::post;
    req.timeout = timeout;
    protocol::path::heartbeat(creds_->installation_id, req.target);
    heartbeat_body_.encode_to(req.body, status, uptime, ++sequence_, metrics);
    detail::set_json_bearer_headers(req, creds_->runtime_token);
    return req;
}

void beacon_core::send_heartbeat() {
    if (!creds_ || creds_->runtime_token.empty()) {
        phase_ = phase::auth;
        stage_ = stage::session;
        next_at_ = now_.steady;
        return;
    }
    http_request req = heartbeat_request(reported_status(), options_.request_timeout);
    pending_heartbeat_body_ = req.body; // for the one retry after a refresh
    send(op_kind::heartbeat, std::move(req));
}

void beacon_core::heartbeat_answered(detail::http_outcome&& out, bool retried) {
    if (out.cls == protocol::status_class::token_rejected) {
        if (!retried) {
            // One refresh (single-flight with the other holders of the store), one retry.
            first_401_ = out.error;
            start_refresh(refresh_purpose::heartbeat, creds_ ? creds_->runtime_token : std::string());
            return;
        }
        // A second 401 is an auth failure: drop the runtime token and walk the chain
        // again from the session step, after a backoff.
        forget_purpose_second_401_ = true;
        second_401_ = std::move(out);
        forget(creds_ ? creds_->runtime_token : std::string());
        return;
    }
    heartbeat_outcome(std::move(out));
}

void beacon_core::heartbeat_refreshed(const detail::refresh_result& r) {
    if (r.status == detail::refresh_status::rejected || r.status == detail::refresh_status::no_refresh_token) {
        // The backend refused the runtime token and the refresh token: these credentials
        // are dead (protocol.md section 3): walk down the chain.
        ++failed_;
        refused_refresh_ = r;
        forget_purpose_second_401_ = false;
        forget(auth_.stale_token());
        return;
    }
    if (r.status != detail::refresh_status::refreshed) {
        if (!handle_refresh_result(r)) return;
        heartbeat_failed(r.error ? r.error : first_401_, r.retry_after);
        return;
    }
    if (r.credentials) creds_ = r.credentials;
    // The same heartbeat again, with the new token.
    http_request req = detail::make_request(http_method::post, protocol::path::heartbeat(creds_->installation_id),
                                            pending_heartbeat_body_, options_.request_timeout);
    detail::set_bearer(req, creds_->runtime_token);
    send(op_kind::heartbeat_retry, std::move(req));
}

void beacon_core::forget(std::string rejected) {
    forgotten_ = std::move(rejected);
    auto& e = emit(beacon_effect::type::forget_token);
    e.op = next_op(op_kind::forget);
    e.text = forgotten_;
}

void beacon_core::after_forget() {
    if (forget_purpose_second_401_) {
        phase_ = phase::auth;
        stage_ = stage::session;
        ++failed_;
        auth_retry(second_401_.error, second_401_.retry_after);
        return;
    }
    const detail::refresh_result& r = refused_refresh_;
    record_error(r.error ? r.error : error_code(errc::invalid_refresh_token),
                 "the runtime token was rejected and the refresh token refused (" +
                     (r.error ? r.error.message() : std::string("no refresh token")) + "); authenticating again");
    walk_chain_again();
}

void beacon_core::heartbeat_outcome(detail::http_outcome&& out) {
    switch (out.cls) {
    case protocol::status_class::ok: heartbeat_succeeded(out); return;
    case protocol::status_class::revoked: revoke({protocol::error_message_of(out.response.body), std::nullopt}); return;
    case protocol::status_class::installation_gone:
        drop_credentials("the backend does not know the installation");
        return;
    case protocol::status_class::transient:
    case protocol::status_class::token_rejected: heartbeat_failed(out.error, out.retry_after); return;
    case protocol::status_class::permanent: {
        // No blind retry: try again at the regular interval.
        ++failed_;
        record_error(out.error, "heartbeat refused: " + out.error.message() + describe_body(out));
        next_beat_at_ = now_.steady + interval_;
        return;
    }
    }
}

void beacon_core::heartbeat_succeeded(const detail::http_outcome& out) {
    protocol::heartbeat_response r;
    protocol::decode_error derr;
    if (!protocol::decode(out.response.body, r, derr)) {
        heartbeat_failed(derr.code, std::nullopt, "malformed heartbeat response: " + derr.message());
        return;
    }
    if (r.revoked) {
        revoke(*r.revoked);
        return;
    }
    if (r.lease_renewed && !*r.lease_renewed) {
        heartbeat_failed(errc::transient_http, std::nullopt, "the backend did not renew the lease");
        return;
    }
    if (r.refreshed_token && creds_) {
        // Merged into the store under its refresh lock: a rotation another holder saved
        // while this heartbeat was on its way must survive.
        auto& e = emit(beacon_effect::type::adopt_token);
        e.op = next_op(op_kind::adopt);
        e.credentials = creds_;
        e.token = *r.refreshed_token;
        e.when = backend_now();
    }
    checked_after_clear_.clear();
    const bool was_failing = failed_ > 0 || !registered_ || lease_expired_;
    failed_ = 0;
    auth_backoff_.reset();
    registered_ = true;
    degraded_ = false;
    lease_expired_ = false;
    ++heartbeats_;
    last_heartbeat_ = now_.wall;
    clear_error_if_recovered(was_failing);
    set_lease(r.lease_expires_at);
    // The backend's directions are in its time, read after observe(): see backend_clock.
    std::optional<std::chrono::milliseconds> directed;
    if (r.next_heartbeat_at)
        directed = detail::pacing::directed_delay(
            std::chrono::milliseconds(detail::wall_ms(*r.next_heartbeat_at) - detail::wall_ms(backend_now())), interval_,
            lease_left());
    next_beat_at_ = now_.steady + (directed ? *directed : detail::pacing::regular_delay(interval_, random_()));
    if (r.active_policy_hash && *r.active_policy_hash != policy_hash_) {
        policy_hash_ = *r.active_policy_hash;
        emit(beacon_effect::type::policy_hash).text = policy_hash_;
    }
    if (r.command) accept_command(*r.command);
}

void beacon_core::heartbeat_failed(const error_code& ec, const std::optional<std::chrono::milliseconds>& retry_after, std::string what) {
    ++failed_;
    // Backs off over several intervals (fewer heartbeats while the backend struggles),
    // a Retry-After is a minimum, and the lease bounds both (docs/protocol.md).
    const std::chrono::milliseconds delay = detail::pacing::heartbeat_retry_delay(
        failed_, interval_, random_(), options_.backoff.min_fraction, retry_after, lease_left(),
        options_.request_timeout);
    next_beat_at_ = now_.steady + delay;
    if (!registered_) degraded_ = true;
    if (what.empty()) what = "heartbeat failed: " + ec.message();
    record_error(ec, what + " (retry in " + std::to_string(delay.count()) + " ms)");
}

auto beacon_core::lease_left() const -> std::optional<std::chrono::milliseconds> {
    if (!lease_deadline_ || lease_expired_ || *lease_deadline_ <= now_.steady) return std::nullopt;
    return std::chrono::duration_cast<std::chrono::milliseconds>(*lease_deadline_ - now_.steady);
}

void beacon_core::set_lease(std::optional<wall_time_point> expires) {
    lease_expires_at_ = expires;
    std::optional<std::chrono::milliseconds> d;
    if (expires)
        d = detail::delay_until(*expires, std::nullopt, backend_now(), std::chrono::milliseconds(std::chrono::hours(24)));
    if (!d) d = interval_ * protocol::timing::lease_intervals_when_unknown;
    lease_deadline_ = now_.steady + *d;
}

auto beacon_core::accept_command(const protocol::command& cmd, bool heard) -> bool {
    if (!commands_.first_time(cmd.id)) return false;
    switch (cmd.type) {
    case protocol::command_type::pause: paused_ = true; break;
    case protocol::command_type::resume: paused_ = false; break;
    case protocol::command_type::terminate: terminate_requested_ = true; break;
    case protocol::command_type::unknown: break;
    }
    if (cmd.type == protocol::command_type::unknown) {
        if (heard) log("command_unknown", log_level::warning, "ignoring a command of unknown type '" + cmd.type_name + "'");
        return true;
    }
    if (heard)
        log("command_received", log_level::info, std::string("command ") + protocol::to_string(cmd.type) +
                                 (cmd.reason.empty() ? std::string() : ": " + cmd.reason));
    emit(beacon_effect::type::command).command = cmd;
    return true;
}

void beacon_core::take_pending_revocation() {
    if (!pending_revocation_) return;
    const protocol::revocation r = std::move(*pending_revocation_);
    pending_revocation_.reset();
    if (!revoked_) revoke(r);
}

void beacon_core::revoke(const protocol::revocation& r) {
    if (revoked_) return;
    revoked_ = true;
    phase_ = phase::revoked;
    revoked_reason_ = r.reason.empty() ? std::string("installation revoked") : r.reason;
    shutdown_timeout_ = r.shutdown_timeout_ms
                            ? std::clamp(std::chrono::milliseconds(*r.shutdown_timeout_ms), std::chrono::milliseconds(0),
                                         protocol::timing::max_shutdown_timeout)
                            : default_shutdown_timeout;
    creds_.reset();
    auth_.store_will_hold(std::nullopt);
    if (auth_.lock_held()) emit_unlock();
    waiting_ = op_kind::none; // whatever was outstanding is given up
    record_error(errc::revoked, "installation revoked: " + revoked_reason_);
    store_op(beacon_effect::type::clear, store_purpose::revoke);
    emit(beacon_effect::type::revoked).revocation = revocation_info{revoked_reason_, *shutdown_timeout_};
}

void beacon_core::send_final_heartbeat() {
    // Another holder may have refreshed the token: the driver gave the store's contents.
    const auto& stored = auth_.stored();
    if (!auth_.store_error() && stored && creds_ && stored->installation_id == creds_->installation_id &&
        !stored->runtime_token.empty())
        creds_ = stored;
    send(op_kind::final_heartbeat, heartbeat_request(protocol::heartbeat_status::stopped, options_.stop_timeout));
}

void beacon_core::final_heartbeat_answered(const detail::http_outcome& out) {
    if (out.ok()) {
        protocol::heartbeat_response r;
        protocol::decode_error derr;
        if (protocol::decode(out.response.body, r, derr) && r.revoked) {
            revoke(*r.revoked);
            return;
        }
        log("final_heartbeat_sent", log_level::info, "final heartbeat sent");
    } else if (out.cls == protocol::status_class::revoked) {
        revoke({protocol::error_message_of(out.response.body), std::nullopt});
    } else {
        log("final_heartbeat_failed", log_level::warning, "final heartbeat failed: " + out.error.message() + describe_body(out));
    }
}

void beacon_core::finish_stop() {
    if (!revoked_) phase_ = phase::stopped; // a revoked beacon stays shown as revoked
    next_ = steady_time_point::max();
}

auto beacon_core::describe_body(const detail::http_outcome& out) -> std::string {
    const std::string m = protocol::error_message_of(out.response.body);
    return m.empty() ? std::string() : " (" + m + ")";
}

void beacon_core::record_error(const error_code& ec, std::string what) {
    last_error_code_ = ec;
    last_error_ = std::move(what);
    log("error", ec == errc::revoked ? log_level::error : log_level::warning, last_error_);
}

void beacon_core::clear_error_if_recovered(bool was_failing) {
    if (was_failing && !last_error_.empty()) log("connection_restored", log_level::info, "heartbeat succeeded; connection restored");
    last_error_.clear();
    last_error_code_ = {};
}

void beacon_core::log(const char* event, log_level level, std::string message) {
    if (!options_.logger) return; // nobody would read it
    auto& e = emit(beacon_effect::type::log);
    e.line.level = level;
    e.line.text = std::move(message);
    e.line.event = event;
    if (creds_) e.line.installation_id = creds_->installation_id;
}

auto beacon_core::derive_state() const -> beacon_state {
    switch (phase_) {
    case phase::initial: return beacon_state::idle;
    case phase::auth: return degraded_ ? beacon_state::degraded : beacon_state::authenticating;
    case phase::running:
        if (!registered_) return degraded_ ? beacon_state::degraded : beacon_state::authenticating;
        return lease_expired_ ? beacon_state::lease_expired : beacon_state::connected;
    case phase::degraded: return beacon_state::degraded;
    case phase::revoked: return beacon_state::revoked;
    case phase::stopped: return beacon_state::stopped;
    }
    return beacon_state::idle;
}

auto beacon_core::update_signature() -> bool {
    signature& s = last_signature_;
    bool changed = false;
    const auto set = [&changed](auto& field, const auto& value) {
        if (field == value) return;
        field = value;
        changed = true;
    };
    set(s.state, derive_state());
    set(s.degraded, degraded_ || phase_ == phase::degraded);
    set(s.paused, paused_);
    set(s.terminate, terminate_requested_);
    set(s.revoked, revoked_);
    set(s.lease_expired, lease_expired_);
    set(s.failing, failed_ > 0);
    set(s.installation_id, creds_ ? std::string_view(creds_->installation_id) : std::string_view());
    return changed;
}

} // namespace sekuire

#endif
