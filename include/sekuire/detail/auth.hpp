// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_AUTH_HPP
#define SEKUIRE_DETAIL_AUTH_HPP

// Calls shared by the beacon and the worker: one HTTP exchange classified by the status
// classes of protocol.md section 0, the bootstrap and recovery bootstrap, and the
// single-flight runtime token refresh over a shared credential store.

#include <sekuire/credential_store.hpp>
#include <sekuire/error.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/retry.hpp>
#include <sekuire/transport.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <utility>

namespace sekuire {
namespace detail {

/// How one exchange went.
struct http_outcome {
    http_response response;
    protocol::status_class cls = protocol::status_class::transient;
    /// The error body's code (empty when none).
    std::string code;
    /// What went wrong (transport error or the error of the status); empty when ok.
    error_code error;
    /// From `Retry-After`, when the backend sent one.
    std::optional<std::chrono::milliseconds> retry_after;
    /// The backend's clock (`Date` header), when it sent one.
    std::optional<wall_time_point> server_time;

    bool ok() const noexcept { return cls == protocol::status_class::ok; }
};

inline http_request make_request(http_method method, std::string target, std::string body,
                                  std::chrono::milliseconds timeout) {
    http_request req;
    req.method = method;
    req.target = std::move(target);
    req.body = std::move(body);
    req.timeout = timeout;
    req.headers.push_back({std::string(protocol::header::accept), std::string(protocol::header::json_type)});
    if (!req.body.empty())
        req.headers.push_back({std::string(protocol::header::content_type), std::string(protocol::header::json_type)});
    return req;
}

inline void set_bearer(http_request& req, std::string_view token) {
    std::string value(protocol::header::bearer_prefix);
    value += token;
    for (auto& h : req.headers)
        if (iequals(h.name, protocol::header::authorization)) {
            h.value = std::move(value);
            return;
        }
    req.headers.push_back({std::string(protocol::header::authorization), std::move(value)});
}

/// Sends `req` and classifies the answer. `bearer` and `installation_path` select the
/// rows of the status table that apply to this call.
template <class Transport>
http_outcome perform(Transport& transport, const http_request& req, bool bearer, bool installation_path,
                     wall_time_point now) {
    http_outcome out;
    error_code ec;
    out.response = transport.send(req, ec);
    if (ec) {
        out.error = ec;
        out.cls = protocol::status_class::transient;
        return out;
    }
    const int status = out.response.status;
    if (status < 200 || status >= 300) out.code = protocol::error_code_of(out.response.body);
    out.cls = protocol::classify_status(status, out.code, bearer, installation_path);
    if (out.cls != protocol::status_class::ok) out.error = protocol::status_error(status, out.code, bearer, installation_path);
    if (const std::string* ra = find_header(out.response.headers, protocol::header::retry_after))
        out.retry_after = parse_retry_after(*ra, now);
    if (const std::string* d = find_header(out.response.headers, protocol::header::date))
        out.server_time = parse_http_date(*d);
    return out;
}

/// True when the runtime token is known to have expired at `now`.
inline bool token_expired(const installation_credentials& c, wall_time_point now) noexcept {
    return c.runtime_token.empty() || (c.runtime_token_expires_at && now >= *c.runtime_token_expires_at);
}

/** When the client refreshes a token on its own, if no heartbeat did: 6 days before its
    expiry (protocol.md section 5 gives the backend 7), but never earlier than a third into
    the token's lifetime when it is known. So a 90-day token is refreshed 6 days before it
    expires, and a 1-hour token after 20 minutes rather than at once and for ever.
*/
inline std::optional<wall_time_point> refresh_due_at(const installation_credentials& c) noexcept {
    if (!c.runtime_token_expires_at) return std::nullopt;
    auto window = std::chrono::duration_cast<wall_time_point::duration>(protocol::timing::client_refresh_window);
    if (c.runtime_token_issued_at && *c.runtime_token_issued_at < *c.runtime_token_expires_at) {
        const auto lifetime = *c.runtime_token_expires_at - *c.runtime_token_issued_at;
        window = std::min(window, lifetime / 3 * 2);
    }
    return *c.runtime_token_expires_at - window;
}

/// True when the client should refresh on its own: expired, or past `refresh_due_at`.
inline bool token_needs_refresh(const installation_credentials& c, wall_time_point now) noexcept {
    if (token_expired(c, now)) return true;
    const auto due = refresh_due_at(c);
    return due && now >= *due;
}

/// Outcome of a refresh.
enum class refresh_status {
    refreshed,        ///< the store holds a fresh token (this call or another holder refreshed it)
    transient,        ///< retry later with backoff
    rejected,         ///< the refresh token is dead (401 invalid_refresh_token, other 4xx)
    revoked,          ///< 403 installation_revoked
    gone,             ///< 404: the backend does not know the installation
    no_refresh_token, ///< nothing to refresh with
    store_failed,     ///< the new credentials could not be persisted (they were not used)
};

struct refresh_result {
    refresh_status status = refresh_status::transient;
    error_code error;
    std::optional<std::chrono::milliseconds> retry_after;
    std::optional<installation_credentials> credentials;
    /// Whether an HTTP call was made (false when another holder had refreshed already).
    bool called = false;
    /// Whether the backend rotated the refresh token.
    bool rotated = false;
};

/** Refreshes the runtime token through the refresh endpoint, at most once among all the
    holders of `store`.

    Under the store's refresh lock, the credentials are read again: when another holder
    has replaced `stale_token` meanwhile with a token that needs no refresh, that one is
    used and no call is made. Otherwise the refresh endpoint is called; the new
    credentials (with a rotated refresh token, when the backend rotated it) are saved to
    the store before anyone uses them, so a crash can never lose a rotation.
*/
template <class Transport, class Store>
refresh_result refresh_single_flight(Transport& transport, Store& store, std::string_view stale_token,
                                     wall_time_point now, std::chrono::milliseconds timeout) {
    refresh_result out;
    refresh_lock<Store> guard(store);
    error_code ec;
    std::optional<installation_credentials> creds = store.load(ec);
    if (ec) {
        out.status = refresh_status::store_failed;
        out.error = ec;
        return out;
    }
    if (!creds || !creds->can_refresh()) {
        out.status = refresh_status::no_refresh_token;
        out.error = errc::no_credentials;
        return out;
    }
    if (creds->runtime_token != stale_token && !token_needs_refresh(*creds, now)) {
        out.status = refresh_status::refreshed;
        out.credentials = std::move(creds);
        return out;
    }
    protocol::refresh_request body{creds->refresh_token};
    http_request req = make_request(http_method::post, protocol::path::refresh(creds->installation_id),
                                    protocol::encode(body), timeout);
    out.called = true;
    http_outcome res = perform(transport, req, false, true, now);
    out.retry_after = res.retry_after;
    out.error = res.error;
    switch (res.cls) {
    case protocol::status_class::ok: {
        protocol::refresh_response r;
        protocol::decode_error derr;
        if (!protocol::decode(res.response.body, r, derr)) {
            out.status = refresh_status::transient;
            out.error = derr.code;
            return out;
        }
        installation_credentials next = *creds;
        next.runtime_token = std::move(r.runtime_token);
        next.runtime_token_expires_at = r.expires_at;
        next.runtime_token_issued_at = res.server_time ? *res.server_time : now;
        next.token_version = r.token_version;
        if (r.refresh_token && *r.refresh_token != next.refresh_token) {
            next.refresh_token = std::move(*r.refresh_token);
            out.rotated = true;
        }
        store.save(next, ec);
        if (ec) {
            out.status = refresh_status::store_failed;
            out.error = ec;
            return out;
        }
        out.status = refresh_status::refreshed;
        out.credentials = std::move(next);
        return out;
    }
    case protocol::status_class::revoked: out.status = refresh_status::revoked; return out;
    case protocol::status_class::installation_gone: out.status = refresh_status::gone; return out;
    case protocol::status_class::transient: out.status = refresh_status::transient; return out;
    case protocol::status_class::token_rejected:
    case protocol::status_class::permanent: out.status = refresh_status::rejected; return out;
    }
    return out;
}

/// Outcome of a bootstrap or recovery bootstrap.
enum class bootstrap_status { ok, transient, permanent, revoked };

struct bootstrap_result {
    bootstrap_status status = bootstrap_status::transient;
    error_code error;
    std::optional<std::chrono::milliseconds> retry_after;
    std::optional<wall_time_point> server_time;
    protocol::bootstrap_response response;
};

inline bootstrap_result finish_bootstrap(http_outcome&& res) {
    bootstrap_result out;
    out.retry_after = res.retry_after;
    out.server_time = res.server_time;
    out.error = res.error;
    switch (res.cls) {
    case protocol::status_class::ok: {
        protocol::decode_error derr;
        if (!protocol::decode(res.response.body, out.response, derr)) {
            out.status = bootstrap_status::transient;
            out.error = derr.code;
        } else {
            out.status = bootstrap_status::ok;
        }
        return out;
    }
    case protocol::status_class::transient: out.status = bootstrap_status::transient; return out;
    case protocol::status_class::revoked: out.status = bootstrap_status::revoked; return out;
    default: out.status = bootstrap_status::permanent; return out;
    }
}

/// Section 1: exchanges an install token for an installation.
template <class Transport>
bootstrap_result bootstrap_install(Transport& transport, const protocol::bootstrap_request& body,
                                   std::chrono::milliseconds timeout, wall_time_point now) {
    http_request req =
        make_request(http_method::post, std::string(protocol::path::bootstrap), protocol::encode(body), timeout);
    return finish_bootstrap(perform(transport, req, false, false, now));
}

/// Section 2: creates an installation with an API key and a workspace id.
template <class Transport>
bootstrap_result bootstrap_recover(Transport& transport, const protocol::recover_request& body,
                                   const std::string& api_key, std::chrono::milliseconds timeout,
                                   wall_time_point now) {
    http_request req =
        make_request(http_method::post, std::string(protocol::path::recover), protocol::encode(body), timeout);
    req.headers.push_back({std::string(protocol::header::api_key), api_key});
    return finish_bootstrap(perform(transport, req, false, false, now));
}

/// The credentials a bootstrap response grants, issued at `issued_at`.
inline installation_credentials credentials_from(const protocol::bootstrap_response& r, wall_time_point issued_at) {
    installation_credentials c;
    c.installation_id = r.installation_id;
    c.refresh_token = r.refresh_token;
    c.runtime_token = r.runtime_token;
    c.runtime_token_expires_at = r.runtime_token_expires_at;
    c.runtime_token_issued_at = issued_at;
    c.token_version = 1;
    return c;
}

/** Converts a backend timestamp into a delay from now, robust to a wrong local clock:
    the difference is taken against the backend's own `Date` when it sent one. Returns
    nullopt when the result is implausible (in the past, or further than `max_ahead`).
*/
inline std::optional<std::chrono::milliseconds> delay_until(wall_time_point when, std::optional<wall_time_point> server_now,
                                                            wall_time_point local_now, std::chrono::milliseconds max_ahead) {
    const wall_time_point ref = server_now ? *server_now : local_now;
    const auto when_ms = std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
    const auto ref_ms = std::chrono::duration_cast<std::chrono::milliseconds>(ref.time_since_epoch()).count();
    if (when_ms < ref_ms) return std::nullopt;
    const std::int64_t d = when_ms - ref_ms;
    if (d > max_ahead.count()) return std::nullopt;
    return std::chrono::milliseconds(d);
}

} // namespace detail
} // namespace sekuire

#endif
