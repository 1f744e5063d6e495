// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_IMPL_AUTH_IPP
#define SEKUIRE_DETAIL_IMPL_AUTH_IPP

// The bodies of detail/auth.hpp's functions: included by detail/auth.hpp (header-only) or compiled once by
// <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/detail/auth.hpp>

namespace sekuire {

auto detail::make_request(http_method method, std::string target, std::string body, std::chrono::milliseconds timeout) -> http_request {
    http_request req;
    req.method = method;
    req.target = std::move(target);
    req.body = std::move(body);
    req.timeout = timeout;
    req.headers.reserve(4); // Accept, Content-Type, Authorization and one more: grown once
    req.headers.push_back({std::string(protocol::header::accept), std::string(protocol::header::json_type)});
    if (!req.body.empty())
        req.headers.push_back({std::string(protocol::header::content_type), std::string(protocol::header::json_type)});
    return req;
}

auto detail::set_bearer(http_request& req, std::string_view token) -> void {
    std::string value(protocol::header::bearer_prefix);
    value += token;
    for (auto& h : req.headers)
        if (iequals(h.name, protocol::header::authorization)) {
            h.value = std::move(value);
            return;
        }
    req.headers.push_back({std::string(protocol::header::authorization), std::move(value)});
}

auto detail::wall_ms(wall_time_point t) noexcept -> std::int64_t {
    return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

auto detail::wall_from_ms(std::int64_t ms) noexcept -> wall_time_point {
    using dur = wall_time_point::duration;
    const std::int64_t hi = std::chrono::duration_cast<std::chrono::milliseconds>(dur::max()).count() - 1;
    const std::int64_t lo = std::chrono::duration_cast<std::chrono::milliseconds>(dur::min()).count() + 1;
    return wall_time_point(std::chrono::duration_cast<dur>(std::chrono::milliseconds(std::clamp(ms, lo, hi))));
}

auto detail::within_date(wall_time_point date, wall_time_point local) noexcept -> wall_time_point {
    const std::int64_t d = wall_ms(date), l = wall_ms(local);
    if (l < d) return date;
    if (l >= d + date_resolution_ms) return wall_from_ms(d + date_resolution_ms - 1);
    return local;
}

auto detail::classify(const error_code& transport_error, http_response&& response, bool bearer, bool installation_path, wall_time_point now) -> http_outcome {
    http_outcome out;
    if (transport_error) {
        out.error = transport_error;
        out.cls = protocol::status_class::transient;
        return out;
    }
    out.response = std::move(response);
    const int status = out.response.status;
    if (status < 200 || status >= 300) out.code = protocol::error_code_of(out.response.body);
    out.cls = protocol::classify_status(status, out.code, bearer, installation_path);
    if (out.cls != protocol::status_class::ok) out.error = protocol::status_error(status, out.code, bearer, installation_path);
    if (const std::string* d = find_header(out.response.headers, protocol::header::date)) {
        if (const auto t = parse_http_date(*d))
            out.server_time = std::clamp(*t, protocol::timing::earliest_timestamp, protocol::timing::latest_timestamp);
    }
    if (const std::string* ra = find_header(out.response.headers, protocol::header::retry_after))
        out.retry_after = parse_retry_after(*ra, out.server_time ? within_date(*out.server_time, now) : now);
    return out;
}

auto detail::token_expired(const installation_credentials& c, wall_time_point now) noexcept -> bool {
    return c.runtime_token.empty() || (c.runtime_token_expires_at && now >= *c.runtime_token_expires_at);
}

auto detail::refresh_due_at(const installation_credentials& c) noexcept -> std::optional<wall_time_point> {
    if (!c.runtime_token_expires_at) return std::nullopt;
    const std::int64_t expires = wall_ms(*c.runtime_token_expires_at);
    std::int64_t window = std::chrono::duration_cast<std::chrono::milliseconds>(protocol::timing::client_refresh_window).count();
    if (c.runtime_token_issued_at) {
        const std::int64_t issued = wall_ms(*c.runtime_token_issued_at);
        if (issued < expires) window = std::min(window, (expires - issued) / 3 * 2);
    }
    return wall_from_ms(expires - window);
}

auto detail::token_needs_refresh(const installation_credentials& c, wall_time_point now) noexcept -> bool {
    if (token_expired(c, now)) return true;
    const auto due = refresh_due_at(c);
    return due && now >= *due;
}

auto detail::finish_bootstrap(http_outcome&& res) -> bootstrap_result {
    bootstrap_result out;
    out.retry_after = res.retry_after;
    out.server_time = res.server_time;
    out.error = res.error;
    if (!res.ok()) out.error_message = protocol::error_message_of(res.response.body);
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

auto detail::credentials_from(const protocol::bootstrap_response& r, wall_time_point issued_at) -> installation_credentials {
    installation_credentials c;
    c.installation_id = r.installation_id;
    c.refresh_token = r.refresh_token;
    c.runtime_token = r.runtime_token;
    c.runtime_token_expires_at = r.runtime_token_expires_at;
    c.runtime_token_issued_at = issued_at;
    c.token_version = 1;
    return c;
}

auto detail::delay_until(wall_time_point when, std::optional<wall_time_point> server_now, wall_time_point local_now, std::chrono::milliseconds max_ahead) -> std::optional<std::chrono::milliseconds> {
    const wall_time_point ref = server_now ? *server_now : local_now;
    const auto when_ms = std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
    const auto ref_ms = std::chrono::duration_cast<std::chrono::milliseconds>(ref.time_since_epoch()).count();
    if (when_ms < ref_ms) return std::nullopt;
    const std::int64_t d = when_ms - ref_ms;
    if (d > max_ahead.count()) return std::nullopt;
    return std::chrono::milliseconds(d);
}

} // namespace sekuire

#endif
