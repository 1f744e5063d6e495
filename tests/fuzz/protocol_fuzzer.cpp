// SPDX-License-Identifier: MIT
// libFuzzer target for the JSON codec of sekuire::protocol.
//
// The first byte picks a message type (its value modulo the number of types); the rest is
// the body. The body is decoded, with small limits, into a message that already holds a
// valid sample, and:
// - decode never throws (it is noexcept: a throw would terminate);
// - a failure names a decoding error, leaves the message unchanged, and is body_too_large
//   exactly when the body is over the limit;
// - a success re-encodes (`protocol::encode`) to valid JSON that decodes again, and whose
//   own re-encoding is the same text (the message survives the round trip), or differs
//   only in the last bits of a kept floating-point number (see same_json).
// The same body also goes through error_code_of / error_message_of, and the first bytes
// give a status for classify_status / status_error, whose classes must agree.

#include <sekuire/protocol.hpp>

#include <boost/json/parse.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

namespace p = sekuire::protocol;

void check(bool ok) {
    if (!ok) std::abort();
}

constexpr p::decode_options small_limits{3000, 8};

bool is_decode_error(const sekuire::error_code& ec) {
    using sekuire::errc;
    return ec == errc::body_too_large || ec == errc::malformed_json || ec == errc::missing_field ||
           ec == errc::wrong_type || ec == errc::invalid_value || ec == errc::invalid_timestamp;
}

// Equal JSON values, where doubles may differ in their last bits: Boost.JSON 1.81 parses
// numbers without correct rounding (`0.797693134864630e308` and its own serialization
// `7.9769313486463E307` read as neighbouring doubles), so only text equality of kept
// free-form numbers is too strict. Depth is bounded by the decode limits.
bool same_json(const boost::json::value& a, const boost::json::value& b) {
    if (a.is_double() && b.is_double()) {
        const double x = a.get_double();
        const double y = b.get_double();
        return x == y || std::fabs(x - y) <= 1e-15 * std::max(std::fabs(x), std::fabs(y));
    }
    if (a.kind() != b.kind()) return false;
    if (a.is_array()) {
        const auto& x = a.get_array();
        const auto& y = b.get_array();
        if (x.size() != y.size()) return false;
        for (std::size_t i = 0; i < x.size(); ++i)
            if (!same_json(x[i], y[i])) return false;
        return true;
    }
    if (a.is_object()) {
        const auto& x = a.get_object();
        const auto& y = b.get_object();
        if (x.size() != y.size()) return false;
        auto j = y.begin();
        for (auto i = x.begin(); i != x.end(); ++i, ++j)
            if (i->key() != j->key() || !same_json(i->value(), j->value())) return false;
        return true;
    }
    return a == b;
}

template <class T>
void fuzz_one(std::string_view body, std::string_view sample) {
    T out;
    p::decode_error err;
    check(p::decode(sample, out, err));
    check(!err.code);
    const std::string before = p::encode(out);

    const bool ok = p::decode(body, out, err, small_limits);
    if (!ok) {
        check(is_decode_error(err.code));
        check((body.size() > small_limits.max_body_size) == (err.code == sekuire::errc::body_too_large));
        // Field errors name their field; whole-body errors may not.
        if (err.code == sekuire::errc::missing_field || err.code == sekuire::errc::invalid_value ||
            err.code == sekuire::errc::invalid_timestamp)
            check(!err.field.empty());
        check(err.message().find(err.field) != std::string::npos);
        check(p::encode(out) == before);
        return;
    }
    check(!err.code);
    check(err.field.empty());
    check(body.size() <= small_limits.max_body_size);

    const std::string once = p::encode(out);
    boost::system::error_code jec;
    boost::json::parse(once, jec);
    check(!jec); // the encoding is JSON
    // Decoding the encoding gives the same message (compared through its encoding). The
    // encoding may be longer than the body (defaults are written out), not deeper.
    p::decode_options again_limits = small_limits;
    again_limits.max_body_size = once.size();
    T again;
    p::decode_error again_err;
    check(p::decode(once, again, again_err, again_limits));
    const std::string twice = p::encode(again);
    if (twice != once) check(same_json(boost::json::parse(once), boost::json::parse(twice)));
}

using fuzz_fn = void (*)(std::string_view, std::string_view);

struct target {
    fuzz_fn fn;
    const char* sample;
};

// Valid bodies, one per message type, that the decoder starts from.
const target targets[] = {
    {&fuzz_one<p::bootstrap_request>, R"({"install_token":"skt_x","agent_id":"a","platform":{"type":"docker","pid":1}})"},
    {&fuzz_one<p::recover_request>, R"({"workspace_id":"ws_1","agent_id":"a"})"},
    {&fuzz_one<p::bootstrap_response>,
     R"({"installation_id":"inst_1","runtime_token":"srt_1","runtime_token_expires_at":"2026-05-03T12:00:00Z",)"
     R"("refresh_token":"rt_1","lease_expires_at":"2026-02-03T12:05:00Z","heartbeat_interval_seconds":60})"},
    {&fuzz_one<p::refresh_request>, R"({"refresh_token":"rt_1"})"},
    {&fuzz_one<p::refresh_response>, R"({"runtime_token":"srt_2","expires_at":"2026-05-03T12:00:00Z","token_version":2})"},
    {&fuzz_one<p::heartbeat_request>, R"({"status":"healthy","uptime_seconds":1,"sequence":1})"},
    {&fuzz_one<p::heartbeat_response>,
     R"({"installation_id":"inst_1","lease_renewed":true,"lease_expires_at":"2026-02-03T12:05:00Z",)"
     R"("command":{"id":"c","type":"pause"}})"},
    {&fuzz_one<p::command>, R"({"id":"cmd_1","type":"terminate","shutdown_timeout_ms":5000})"},
    {&fuzz_one<p::revocation>, R"({"revoked":true,"reason":"r","shutdown_timeout_ms":5000})"},
    {&fuzz_one<p::task>, R"({"task_id":"t","capability":"c","input":{"text":"x"}})"},
    {&fuzz_one<p::policy_event>, R"({"active_policy_hash":"h"})"},
    {&fuzz_one<p::completion_request>, R"({"installation_id":"i","status":"failed","error":{"code":"no_handler"}})"},
    {&fuzz_one<p::completion_response>, R"({"accepted":true})"},
    {&fuzz_one<p::worker_heartbeat_request>, R"({"state":"running","in_flight":1})"},
    {&fuzz_one<p::worker_heartbeat_response>, R"({"active_policy_hash":"h","command":null})"},
    {&fuzz_one<p::policy_document>, R"({"hash":"h","content":{"agent":{"capabilities":{"allowed_tools":["a*"]}}}})"},
    {&fuzz_one<p::error_body>, R"({"error":{"code":"install_token_used","message":"m"}})"},
    {&fuzz_one<p::revoke_request>, R"({"reason":"r"})"},
    {&fuzz_one<sekuire::platform_info>, R"({"type":"bare_metal","hostname":"h","pid":7})"},
};
constexpr std::size_t target_count = sizeof(targets) / sizeof(targets[0]);

void fuzz_error_body(std::string_view body) {
    const std::string code = p::error_code_of(body);
    const std::string message = p::error_message_of(body);
    check(message.size() <= 200);
    for (const char c : message) check(static_cast<unsigned char>(c) >= 0x20);
    if (!message.empty()) check(!code.empty()); // a message only comes with an error body
}

void fuzz_status(const std::uint8_t* data, std::size_t size, std::string_view code) {
    if (size < 3) return;
    const int status = (data[1] << 8 | data[2]) % 1000;
    const bool bearer = (data[0] & 0x40) != 0;
    const bool installation_path = (data[0] & 0x80) != 0;
    const auto cls = p::classify_status(status, code, bearer, installation_path);
    if (status >= 200 && status < 300) {
        check(cls == p::status_class::ok);
        return;
    }
    check(cls != p::status_class::ok);
    const sekuire::error_code ec = p::status_error(status, code, bearer, installation_path);
    check(static_cast<bool>(ec));
    check(sekuire::is_transient(ec) == (cls == p::status_class::transient));
    if (cls == p::status_class::revoked) check(ec == sekuire::errc::revoked);
    if (cls == p::status_class::installation_gone) check(ec == sekuire::errc::installation_not_found);
    if (cls == p::status_class::token_rejected) check(status == 401 && bearer);
}

void fuzz_paths(std::string_view id) {
    const std::string path = p::path::complete(id);
    check(path.size() >= id.size());
    for (const char c : path) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                        c == '_' || c == '.' || c == '~' || c == '%' || c == '/';
        check(ok);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
    const target& t = targets[data[0] % target_count];
    t.fn(body, t.sample);
    fuzz_error_body(body);
    fuzz_status(data, size, body.substr(0, 32));
    fuzz_paths(body.substr(0, 64));
    return 0;
}
