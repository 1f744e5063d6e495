// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_CORE_IMPL_AUTH_CHAIN_IPP
#define SEKUIRE_CORE_IMPL_AUTH_CHAIN_IPP

// The bodies of core/auth_chain.hpp's functions: included by core/auth_chain.hpp (header-only) or compiled once by
// <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/core/auth_chain.hpp>

namespace sekuire {

void auth_chain::store_seen(std::optional<installation_credentials> stored, const error_code& ec) {
    stored_ = std::move(stored);
    stored_ec_ = ec;
}

void auth_chain::store_will_hold(std::optional<installation_credentials> c) {
    stored_ = std::move(c);
    stored_ec_ = {};
}

auto auth_chain::reconciled(bool& save_again) -> const std::optional<installation_credentials>& {
    save_again = false;
    if (!unsaved_) return stored_;
    if (!stored_ || stored_->installation_id != unsaved_->installation_id ||
        stored_->token_version > unsaved_->token_version) {
        unsaved_.reset();
        return stored_;
    }
    save_again = true;
    return unsaved_;
}

auto auth_chain::observe(const std::optional<wall_time_point>& server_time, wall_time_point local) -> bool {
    return skew_.observe(server_time, local);
}

auto auth_chain::bootstrap_request(const std::string& install_token, const std::string& agent_id, const std::vector<std::string>& capabilities, const platform_info& platform) const -> http_request {
    protocol::bootstrap_request body;
    body.install_token = install_token;
    body.agent_id = agent_id;
    body.capabilities = capabilities;
    body.platform = platform;
    return detail::make_request(http_method::post, std::string(protocol::path::bootstrap), protocol::encode(body),
                                request_timeout_);
}

auto auth_chain::recover_request(const std::string& api_key, const std::string& workspace_id, const std::string& agent_id, const std::vector<std::string>& capabilities, const platform_info& platform) const -> http_request {
    protocol::recover_request body;
    body.workspace_id = workspace_id;
    body.agent_id = agent_id;
    body.capabilities = capabilities;
    body.platform = platform;
    http_request req = detail::make_request(http_method::post, std::string(protocol::path::recover),
                                            protocol::encode(body), request_timeout_);
    req.headers.push_back({std::string(protocol::header::api_key), api_key});
    return req;
}

auto auth_chain::bootstrap_answer(detail::http_outcome&& out) -> detail::bootstrap_result {
    return detail::finish_bootstrap(std::move(out));
}

void auth_chain::begin_refresh(std::string stale_token) {
    refresh_stale_ = std::move(stale_token);
    refresh_result_ = {};
    refreshing_ = true;
    lock_held_ = false;
}

auto auth_chain::refresh_locked(bool owned, std::optional<installation_credentials> stored, const error_code& ec, wall_time_point backend_now) -> refresh_step {
    detail::refresh_result& out = refresh_result_;
    refresh_step step;
    if (!owned) {
        out.status = detail::refresh_status::store_failed;
        out.error = ec ? ec : error_code(errc::store_locked);
        refreshing_ = false;
        return step;
    }
    lock_held_ = true;
    if (ec) {
        out.status = detail::refresh_status::store_failed;
        out.error = ec;
        refreshing_ = false;
        return step;
    }
    store_seen(std::move(stored), {});
    bool ignored = false;
    std::optional<installation_credentials> creds = reconciled(ignored);
    if (!creds || !creds->can_refresh()) {
        out.status = detail::refresh_status::no_refresh_token;
        out.error = errc::no_credentials;
        refreshing_ = false;
        return step;
    }
    if (creds->runtime_token != refresh_stale_ && !detail::token_needs_refresh(*creds, backend_now)) {
        out.status = detail::refresh_status::refreshed;
        out.credentials = std::move(creds);
        refreshing_ = false;
        return step;
    }
    refresh_base_ = *creds;
    out.called = true;
    protocol::refresh_request body{creds->refresh_token};
    step.what = refresh_step::kind::send;
    step.request = detail::make_request(http_method::post, protocol::path::refresh(creds->installation_id),
                                        protocol::encode(body), request_timeout_);
    return step;
}

auto auth_chain::refresh_answered(detail::http_outcome&& res, wall_time_point backend_now) -> refresh_step {
    detail::refresh_result& out = refresh_result_;
    out.retry_after = res.retry_after;
    out.server_time = res.server_time;
    out.error = res.error;
    refresh_step step;
    switch (res.cls) {
    case protocol::status_class::ok: {
        protocol::refresh_response r;
        protocol::decode_error derr;
        if (!protocol::decode(res.response.body, r, derr)) {
            out.status = detail::refresh_status::transient;
            out.error = derr.code;
            break;
        }
        installation_credentials next = refresh_base_;
        next.runtime_token = std::move(r.runtime_token);
        next.runtime_token_expires_at = r.expires_at;
        next.runtime_token_issued_at = backend_now;
        next.token_version = r.token_version;
        if (r.refresh_token && *r.refresh_token != next.refresh_token) {
            next.refresh_token = std::move(*r.refresh_token);
            out.rotated = true;
        }
        out.status = detail::refresh_status::refreshed;
        out.credentials = next;
        store_will_hold(next);
        step.what = refresh_step::kind::save;
        step.credentials = std::move(next);
        return step;
    }
    case protocol::status_class::revoked: out.status = detail::refresh_status::revoked; break;
    case protocol::status_class::installation_gone: out.status = detail::refresh_status::gone; break;
    case protocol::status_class::transient: out.status = detail::refresh_status::transient; break;
    case protocol::status_class::token_rejected:
    case protocol::status_class::permanent: out.status = detail::refresh_status::rejected; break;
    }
    refreshing_ = false;
    return step;
}

void auth_chain::refresh_saved(const error_code& ec) {
    refresh_result_.persist_error = ec;
    if (ec && refresh_result_.credentials) remember_unsaved(*refresh_result_.credentials);
    refreshing_ = false;
}

} // namespace sekuire

#endif
