// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TESTS_UNIT_CORE_RIG_HPP
#define SEKUIRE_TESTS_UNIT_CORE_RIG_HPP

// What the tests of the plain cores (beacon_core.cpp, worker_core.cpp, auth_chain.cpp) share:
// a clock that moves only when told, canned answers shaped as docs/protocol.md says, and
// readers of the requests a core asks for. No transport, no backend, no sleep, no socket:
// the tests hand the cores what came back, by hand.

#include <sekuire/core/common.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/time.hpp>
#include <sekuire/transport.hpp>

#include <boost/json.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <utility>

namespace core_rig {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;

/// The wall time the tests start at (the backend's clock agrees unless a test says not).
inline sekuire::wall_time_point wall_base() { return *sekuire::parse_rfc3339("2026-03-01T12:00:00Z"); }
/// The steady time the tests start at.
inline sekuire::steady_time_point steady_base() { return sekuire::steady_time_point{} + std::chrono::hours(1000); }

/// A clock moved by hand: both readings advance together.
struct manual_time {
    ms elapsed{0};
    sekuire::clock_reading now() const { return {steady_base() + elapsed, wall_base() + elapsed}; }
    void to(ms t) { elapsed = t; }
    void by(ms d) { elapsed += d; }
    sekuire::steady_time_point steady() const { return steady_base() + elapsed; }
    sekuire::wall_time_point wall() const { return wall_base() + elapsed; }
};

/// The steady time `t` after the start.
inline sekuire::steady_time_point at(ms t) { return steady_base() + t; }

/// A random source returning what `*u` holds (set it to steer a jitter draw).
struct steered_random {
    std::shared_ptr<double> u = std::make_shared<double>(0.0);
    sekuire::random_source source() const {
        auto p = u;
        return [p] { return *p; };
    }
};

/// RFC 3339 text of `wall_base() + d`.
inline std::string iso(ms d) { return sekuire::format_rfc3339(wall_base() + d); }
/// HTTP-date text of `wall_base() + d`.
inline std::string http_date(ms d) { return sekuire::format_http_date(wall_base() + d); }

/// A canned answer.
inline sekuire::http_response answer(int status, std::string body = {}, sekuire::header_list headers = {}) {
    sekuire::http_response r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    if (!r.body.empty()) r.headers.push_back({"Content-Type", "application/json"});
    return r;
}

/// An error body (section 0).
inline std::string error_body(const std::string& code, const std::string& message = "refused") {
    return R"({"error":{"code":")" + code + R"(","message":")" + message + R"("}})";
}

/// A bootstrap (or recovery bootstrap) answer granting installation `id`.
inline std::string bootstrap_body(const std::string& id, const std::string& runtime, const std::string& refresh,
                                  ms token_left = std::chrono::hours(24 * 90), ms lease_left = 180s,
                                  const std::string& extra = {}) {
    return R"({"installation_id":")" + id + R"(","runtime_token":")" + runtime + R"(","runtime_token_expires_at":")" +
           iso(token_left) + R"(","refresh_token":")" + refresh + R"(","lease_expires_at":")" + iso(lease_left) + "\"" +
           extra + "}";
}

/// A refresh answer.
inline std::string refresh_body(const std::string& runtime, ms expires_in = std::chrono::hours(24 * 90),
                                std::int64_t version = 2, const std::string& rotated = {}) {
    std::string b = R"({"runtime_token":")" + runtime + R"(","expires_at":")" + iso(expires_in) +
                    R"(","token_version":)" + std::to_string(version);
    if (!rotated.empty()) b += R"(,"refresh_token":")" + rotated + "\"";
    return b + "}";
}

/// The request's header `name` (empty when absent).
inline std::string header(const sekuire::http_request& r, std::string_view name) {
    const std::string* v = sekuire::find_header(r.headers, name);
    return v ? *v : std::string();
}

/// Whether the request carries header `name`.
inline bool has_header(const sekuire::http_request& r, std::string_view name) {
    return sekuire::find_header(r.headers, name) != nullptr;
}

/// The request's JSON body.
inline boost::json::object body_of(const sekuire::http_request& r) { return boost::json::parse(r.body).as_object(); }

/// `"POST /path"`.
inline std::string line_of(const sekuire::http_request& r) {
    return std::string(sekuire::to_string(r.method)) + " " + r.target;
}

} // namespace core_rig

#endif
