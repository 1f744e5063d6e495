// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/protocol.hpp>

#include <boost/test/unit_test.hpp>

#include <boost/json.hpp>
#include <boost/mpl/list.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <regex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

namespace json = boost::json;
namespace p = sekuire::protocol;
using sekuire::errc;
using sekuire::error_code;

sekuire::wall_time_point at(std::int64_t epoch_seconds) {
    return sekuire::wall_time_point(std::chrono::seconds(epoch_seconds));
}

// Epoch seconds of the timestamps used below (from `date -u -d ... +%s`).
constexpr std::int64_t t_2026_02_03_12_05 = 1770120300;
constexpr std::int64_t t_2026_02_03_12_01 = 1770120060;
constexpr std::int64_t t_2026_05_03_12_00 = 1777809600;
constexpr std::int64_t t_2026_02_03_12_10 = 1770120600;

// -- describing outcomes, so that a failure shows both sides ------------------------------

std::string show(const error_code& code, std::string_view field) {
    if (!code) return "success";
    std::string s = code.message();
    s += " at '";
    s += field;
    s += '\'';
    return s;
}
std::string show(const p::decode_error& e) { return show(e.code, e.field); }
std::string show(errc c, std::string_view field) { return show(make_error_code(c), field); }

std::string printable(std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (const char c : s.substr(0, 120)) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f) {
            out += c;
        } else {
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 15];
        }
    }
    if (s.size() > 120) out += "...(" + std::to_string(s.size()) + " bytes)";
    return out;
}

// -- samples: one valid body per message shape, with its fields described ------------------

struct sample {
    std::string name;
    std::string body;
    std::vector<std::string> required; // dotted paths of the required fields
    std::vector<std::string> typed;    // dotted paths of every field with a checked JSON type
    std::vector<std::string> ints;     // dotted paths of the integer fields
    std::vector<std::string> times;    // dotted paths of the RFC 3339 fields
    std::vector<std::string> nullable; // dotted paths where null is accepted
};

const std::string platform_json =
    R"({"type": "kubernetes", "pod_name": "agent-0", "namespace": "prod", "node": "node-1",)"
    R"( "hostname": "agent-0", "os": "linux", "arch": "x86_64", "pid": 42})";
const std::string sdk_json = R"({"name": "sekuire-cpp", "version": "0.1.0"})";
const std::string agent_id = "3f2a9c0d4b5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

std::vector<std::string> platform_sdk_typed() {
    return {"platform", "sdk", "platform.type", "platform.pid", "sdk.name", "sdk.version"};
}
std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

const std::string command_json =
    R"({"id": "cmd_1", "type": "pause", "reason": "maintenance window", "shutdown_timeout_ms": 5000})";
const std::string revoked_json =
    R"({"lease_renewed": false, "revoked": true, "reason": "Emergency shutdown initiated by admin",)"
    R"( "shutdown_timeout_ms": 5000})";

template <class T>
std::vector<sample> samples();

// Section 1 request.
template <>
std::vector<sample> samples<p::bootstrap_request>() {
    return {{"bootstrap_request",
             R"({"install_token": "skt_4f9a8b7c6d5e4f3a", "agent_id": ")" + agent_id +
                 R"(", "capabilities": ["summarize"], "platform": )" + platform_json + R"(, "sdk": )" + sdk_json + "}",
             {"install_token", "agent_id", "platform.type"},
             concat({"install_token", "agent_id", "capabilities"}, platform_sdk_typed()),
             {"platform.pid"},
             {},
             {"capabilities", "platform", "sdk", "platform.pid", "sdk.name", "sdk.version"}}};
}

// Section 2 request.
template <>
std::vector<sample> samples<p::recover_request>() {
    return {{"recover_request",
             R"({"workspace_id": "ws_7d1e", "agent_id": ")" + agent_id +
                 R"(", "capabilities": ["summarize", "translate"], "platform": )" + platform_json +
                 R"(, "sdk": )" + sdk_json + "}",
             {"workspace_id", "agent_id", "platform.type"},
             concat({"workspace_id", "agent_id", "capabilities"}, platform_sdk_typed()),
             {"platform.pid"},
             {},
             {"capabilities", "platform", "sdk"}}};
}

// Sections 1 and 2 response.
template <>
std::vector<sample> samples<p::bootstrap_response>() {
    return {{"bootstrap_response",
             R"({"installation_id": "inst_8c2f", "runtime_token": "srt_0123456789abcdef0123",)"
             R"( "runtime_token_expires_at": "2026-05-03T12:00:00Z", "refresh_token": "rt_fedcba9876543210fedc",)"
             R"( "lease_expires_at": "2026-02-03T12:05:00Z", "heartbeat_interval_seconds": 60,)"
             R"( "deployment_url": "https://app.sekuire.ai/installations/inst_8c2f"})",
             {"installation_id", "runtime_token", "runtime_token_expires_at", "refresh_token", "lease_expires_at"},
             {"installation_id", "runtime_token", "runtime_token_expires_at", "refresh_token", "lease_expires_at",
              "heartbeat_interval_seconds", "deployment_url"},
             {"heartbeat_interval_seconds"},
             {"runtime_token_expires_at", "lease_expires_at"},
             {"heartbeat_interval_seconds", "deployment_url"}}};
}

// Section 3.
template <>
std::vector<sample> samples<p::refresh_request>() {
    return {{"refresh_request", R"({"refresh_token": "rt_fedcba9876543210fedc"})", {"refresh_token"},
             {"refresh_token"}, {}, {}, {}}};
}

template <>
std::vector<sample> samples<p::refresh_response>() {
    return {{"refresh_response",
             R"({"runtime_token": "srt_new", "expires_at": "2026-05-03T12:00:00Z", "token_version": 2,)"
             R"( "refresh_token": "rt_rotated"})",
             {"runtime_token", "expires_at"},
             {"runtime_token", "expires_at", "token_version", "refresh_token"},
             {"token_version"},
             {"expires_at"},
             {"token_version", "refresh_token"}}};
}

// Section 5.
template <>
std::vector<sample> samples<p::heartbeat_request>() {
    return {{"heartbeat_request",
             R"({"status": "healthy", "uptime_seconds": 3600, "sequence": 42, "platform": )" + platform_json +
                 R"(, "metrics": {"requests_handled": 1500, "errors": 2, "avg_latency_ms": 145},)"
                 R"( "capabilities": ["summarize"], "sdk": )" +
                 sdk_json + "}",
             {"status", "platform.type"},
             concat({"status", "uptime_seconds", "sequence", "metrics", "capabilities", "metrics.requests_handled",
                     "metrics.errors", "metrics.avg_latency_ms"},
                    platform_sdk_typed()),
             {"uptime_seconds", "sequence", "metrics.requests_handled", "metrics.errors", "metrics.avg_latency_ms",
              "platform.pid"},
             {},
             {"uptime_seconds", "sequence", "metrics", "capabilities", "platform", "sdk"}}};
}

template <>
std::vector<sample> samples<p::heartbeat_response>() {
    return {{"heartbeat_response",
             R"({"installation_id": "inst_8c2f", "lease_renewed": true,)"
             R"( "lease_expires_at": "2026-02-03T12:05:00Z", "next_heartbeat_at": "2026-02-03T12:01:00Z",)"
             R"( "command": )" +
                 command_json +
                 R"(, "refreshed_token": {"runtime_token": "srt_new", "expires_at": "2026-05-03T12:00:00Z",)"
                 R"( "token_version": 2}, "active_policy_hash": "9b8a7c"})",
             {"command.id", "command.type", "refreshed_token.runtime_token", "refreshed_token.expires_at"},
             {"installation_id", "lease_renewed", "lease_expires_at", "next_heartbeat_at", "command", "refreshed_token",
              "active_policy_hash", "revoked", "command.id", "command.type", "command.reason",
              "command.shutdown_timeout_ms", "refreshed_token.runtime_token", "refreshed_token.expires_at",
              "refreshed_token.token_version"},
             {"command.shutdown_timeout_ms", "refreshed_token.token_version"},
             {"lease_expires_at", "next_heartbeat_at", "refreshed_token.expires_at"},
             {"installation_id", "lease_renewed", "lease_expires_at", "next_heartbeat_at", "command",
              "refreshed_token", "active_policy_hash", "revoked", "command.reason", "command.shutdown_timeout_ms",
              "refreshed_token.token_version"}},
            {"heartbeat_response (revoked)",
             revoked_json,
             {},
             {"reason", "shutdown_timeout_ms", "revoked", "lease_renewed"},
             {"shutdown_timeout_ms"},
             {},
             {"reason", "shutdown_timeout_ms"}}};
}

// Section 5 and the `command` event of section 6.1.
template <>
std::vector<sample> samples<p::command>() {
    return {{"command", command_json, {"id", "type"}, {"id", "type", "reason", "shutdown_timeout_ms"},
             {"shutdown_timeout_ms"}, {}, {"reason", "shutdown_timeout_ms"}}};
}

// Section 5 (revoked shape) and the `revoked` event of section 6.1.
template <>
std::vector<sample> samples<p::revocation>() {
    return {{"revocation", revoked_json, {}, {"reason", "shutdown_timeout_ms"}, {"shutdown_timeout_ms"}, {},
             {"reason", "shutdown_timeout_ms"}}};
}

// Section 6.1.
template <>
std::vector<sample> samples<p::task>() {
    return {{"task",
             R"({"task_id": "task_51ab", "capability": "summarize", "input": {"text": "The quick brown fox"},)"
             R"( "workspace_id": "ws_7d1e", "trace_id": "trace_0a1b", "requester_agent_id": "agent_x",)"
             R"( "parent_task_id": "task_50aa", "workflow_id": "wf_3", "deadline_at": "2026-02-03T12:10:00Z"})",
             {"task_id", "capability"},
             {"task_id", "capability", "workspace_id", "trace_id", "requester_agent_id", "parent_task_id",
              "workflow_id", "deadline_at"},
             {},
             {"deadline_at"},
             {"input", "workspace_id", "trace_id", "requester_agent_id", "parent_task_id", "workflow_id",
              "deadline_at"}}};
}

template <>
std::vector<sample> samples<p::policy_event>() {
    return {{"policy_event", R"({"active_policy_hash": "9b8a7c"})", {"active_policy_hash"}, {"active_policy_hash"},
             {}, {}, {}}};
}

// Section 6.2.
template <>
std::vector<sample> samples<p::completion_request>() {
    return {{"completion_request (completed)",
             R"({"installation_id": "inst_8c2f", "status": "completed", "output": {"summary": "A fox."},)"
             R"( "error": null, "execution_time_ms": 12, "trace_id": "trace_0a1b"})",
             {"installation_id", "status"},
             {"installation_id", "status", "error", "execution_time_ms", "trace_id"},
             {"execution_time_ms"},
             {},
             {"output", "error", "execution_time_ms", "trace_id"}},
            {"completion_request (failed)",
             R"({"installation_id": "inst_8c2f", "status": "failed", "output": null,)"
             R"( "error": {"code": "handler_error", "message": "division by zero"}, "execution_time_ms": 3,)"
             R"( "trace_id": "trace_0a1b"})",
             {"installation_id", "status", "error", "error.code"},
             {"installation_id", "status", "error", "error.code", "error.message", "execution_time_ms", "trace_id"},
             {"execution_time_ms"},
             {},
             {"output", "execution_time_ms", "trace_id", "error.message"}}};
}

template <>
std::vector<sample> samples<p::completion_response>() {
    return {{"completion_response", R"({"accepted": true})", {"accepted"}, {"accepted"}, {}, {}, {}}};
}

// Section 6.3.
template <>
std::vector<sample> samples<p::worker_heartbeat_request>() {
    return {{"worker_heartbeat_request",
             R"({"state": "running", "in_flight": 2, "capabilities": ["summarize"], "completed": 10,)"
             R"( "failed": 1, "policy_hash": "9b8a7c"})",
             {"state"},
             {"state", "in_flight", "capabilities", "completed", "failed", "policy_hash"},
             {"in_flight", "completed", "failed"},
             {},
             {"in_flight", "capabilities", "completed", "failed", "policy_hash"}}};
}

template <>
std::vector<sample> samples<p::worker_heartbeat_response>() {
    return {{"worker_heartbeat_response", R"({"active_policy_hash": "9b8a7c", "command": )" + command_json + "}",
             {"command.id", "command.type"},
             {"active_policy_hash", "command", "revoked", "command.id", "command.type", "command.reason",
              "command.shutdown_timeout_ms"},
             {"command.shutdown_timeout_ms"},
             {},
             {"active_policy_hash", "command", "revoked"}},
            {"worker_heartbeat_response (revoked)", revoked_json, {}, {"reason", "shutdown_timeout_ms", "revoked"},
             {"shutdown_timeout_ms"}, {}, {"reason", "shutdown_timeout_ms"}}};
}

// Section 6.4.
const std::string policy_doc_json =
    R"({"policy_id": "policy_12", "workspace_id": "ws_7d1e", "version": "3", "status": "active",)"
    R"( "hash": "9b8a7c",)"
    R"( "content": {"agent": {"capabilities": {"allowed_tools": ["summarize", "google:docs:*"],)"
    R"( "denied_tools": ["shell:*"]}}, "rate_limits": {"requests": {"max_per_minute": 60, "max_per_hour": 500}}}})";

template <>
std::vector<sample> samples<p::policy_document>() {
    return {{"policy_document",
             policy_doc_json,
             {"hash", "content"},
             {"policy_id", "workspace_id", "version", "status", "hash", "content", "content.agent",
              "content.agent.capabilities", "content.agent.capabilities.allowed_tools",
              "content.agent.capabilities.denied_tools", "content.rate_limits", "content.rate_limits.requests",
              "content.rate_limits.requests.max_per_minute", "content.rate_limits.requests.max_per_hour"},
             {"content.rate_limits.requests.max_per_minute", "content.rate_limits.requests.max_per_hour"},
             {},
             {"policy_id", "workspace_id", "version", "status", "content.agent", "content.rate_limits"}}};
}

// Section 0.
template <>
std::vector<sample> samples<p::error_body>() {
    return {{"error_body", R"({"error": {"code": "install_token_used", "message": "This install token was used."}})",
             {"error", "error.code"}, {"error", "error.code", "error.message"}, {}, {}, {"error.message"}}};
}

// Section 9.
template <>
std::vector<sample> samples<p::revoke_request>() {
    return {{"revoke_request", R"({"reason": "compromised host", "shutdown_timeout_ms": 5000})", {},
             {"reason", "shutdown_timeout_ms"}, {"shutdown_timeout_ms"}, {}, {"reason", "shutdown_timeout_ms"}}};
}

// Section 7.
template <>
std::vector<sample> samples<sekuire::platform_info>() {
    return {{"platform_info",
             R"({"type": "docker", "container_id": "4f3c2b1a", "image": "acme/agent:1.2", "hostname": "c1",)"
             R"( "os": "linux", "arch": "aarch64", "pid": 7})",
             {"type"},
             {"type", "pid"},
             {"pid"},
             {},
             {"pid"}}};
}

// -- decoding helpers ---------------------------------------------------------------------

template <class T>
struct outcome {
    bool ok = false;
    T message{};
    p::decode_error err;
};

template <class T>
outcome<T> decode_as(std::string_view body, const p::decode_options& opts = {}) {
    outcome<T> o;
    o.ok = p::decode(body, o.message, o.err, opts);
    return o;
}

// Decodes `body` into a message that already holds the first sample, and checks that a
// failure leaves it untouched. Returns the error (empty on success).
template <class T>
p::decode_error decode_over_sample(std::string_view body, const p::decode_options& opts = {}) {
    T out;
    p::decode_error err;
    BOOST_REQUIRE_MESSAGE(p::decode(samples<T>().front().body, out, err), show(err));
    const std::string before = p::encode(out);
    const bool ok = p::decode(body, out, err, opts);
    BOOST_TEST(ok == !err.code, "decode returned " << ok << " with " << show(err));
    if (!ok) BOOST_TEST(p::encode(out) == before, "a failed decode changed its output");
    return err;
}

json::object parse_object(const std::string& text) {
    json::value v = json::parse(text);
    BOOST_REQUIRE(v.is_object());
    return std::move(v.get_object());
}

std::vector<std::string> split_path(const std::string& path) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (;;) {
        const auto dot = path.find('.', start);
        parts.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    return parts;
}

// The object that holds the last component of `path` (every earlier component must be an
// object in `root`).
json::object& parent_of(json::object& root, const std::string& path, std::string& leaf) {
    auto parts = split_path(path);
    leaf = parts.back();
    parts.pop_back();
    json::object* o = &root;
    for (const auto& part : parts) {
        auto it = o->find(part);
        BOOST_REQUIRE_MESSAGE(it != o->end() && it->value().is_object(), "sample lacks object '" << part << "'");
        o = &it->value().get_object();
    }
    return *o;
}

std::string with_value(const std::string& body, const std::string& path, json::value v) {
    json::object root = parse_object(body);
    std::string leaf;
    parent_of(root, path, leaf)[leaf] = std::move(v);
    return json::serialize(root);
}

std::string without(const std::string& body, const std::string& path) {
    json::object root = parse_object(body);
    std::string leaf;
    json::object& parent = parent_of(root, path, leaf);
    BOOST_REQUIRE_MESSAGE(parent.erase(leaf) == 1, "sample lacks '" << path << "'");
    return json::serialize(root);
}

const json::value* lookup(const json::object& root, const std::string& path) {
    const json::object* o = &root;
    const auto parts = split_path(path);
    for (std::size_t i = 0; i < parts.size(); ++i) {
        auto it = o->find(parts[i]);
        if (it == o->end()) return nullptr;
        if (i + 1 == parts.size()) return &it->value();
        if (!it->value().is_object()) return nullptr;
        o = &it->value().get_object();
    }
    return nullptr;
}

// A value of another JSON type than the one the sample has at `path`.
json::value wrong_type_for(const std::string& body, const std::string& path) {
    const json::object root = parse_object(body);
    const json::value* v = lookup(root, path);
    if (!v || v->is_null()) return json::value(json::array{});
    if (v->is_string()) return json::value(true);
    if (v->is_bool()) return json::value("true");
    if (v->is_number()) return json::value("60");
    if (v->is_object()) return json::value("{}");
    return json::value(json::object{{"0", "x"}}); // an array
}

// The re-encoded text of a decode; decoding that text must give the same text again.
template <class T>
std::string normalised(const std::string& body) {
    auto o = decode_as<T>(body);
    BOOST_REQUIRE_MESSAGE(o.ok, "'" << printable(body) << "': " << show(o.err));
    const std::string once = p::encode(o.message);
    auto again = decode_as<T>(once);
    BOOST_REQUIRE_MESSAGE(again.ok, "re-encoded '" << printable(once) << "': " << show(again.err));
    BOOST_TEST(p::encode(again.message) == once);
    return once;
}

// Adds an unknown member to the body and to every nested object of the protocol (but not
// inside the free-form `input`, `output` and `content` values, which are kept as sent).
void add_unknown_members(json::object& o) {
    for (auto& kv : o) {
        if (kv.key() == "input" || kv.key() == "output" || kv.key() == "content") continue;
        if (kv.value().is_object()) add_unknown_members(kv.value().get_object());
    }
    o["x_unknown_member"] = json::object{{"nested", json::array{1, "two", nullptr, json::object{}}}};
    o["x_unknown_number"] = 12.5;
}

std::string nested_arrays(std::size_t depth) {
    return std::string(depth, '[') + std::string(depth, ']');
}

std::string nested_objects(std::size_t depth) {
    std::string s;
    for (std::size_t i = 0; i < depth; ++i) s += "{\"a\":";
    s += "1";
    s += std::string(depth, '}');
    return s;
}

// Inserts `member` (a `"key": value` text) as the first member of a sample body.
std::string with_member(const std::string& body, const std::string& member) {
    BOOST_REQUIRE(!body.empty() && body.front() == '{');
    return "{" + member + "," + body.substr(1);
}

using message_types =
    boost::mpl::list<p::bootstrap_request, p::recover_request, p::bootstrap_response, p::refresh_request,
                     p::refresh_response, p::heartbeat_request, p::heartbeat_response, p::command, p::revocation,
                     p::task, p::policy_event, p::completion_request, p::completion_response,
                     p::worker_heartbeat_request, p::worker_heartbeat_response, p::policy_document, p::error_body,
                     p::revoke_request, sekuire::platform_info>;

} // namespace

BOOST_AUTO_TEST_SUITE(protocol)

// =========================================================================================
// Paths
// =========================================================================================

BOOST_AUTO_TEST_SUITE(paths)

BOOST_AUTO_TEST_CASE(fixed_paths) {
    BOOST_TEST(p::path::bootstrap == "/api/v1/installations/bootstrap");
    BOOST_TEST(p::path::recover == "/api/v1/installations/recover");
    BOOST_TEST(p::default_api_url == "https://api.sekuire.ai");
}

BOOST_AUTO_TEST_CASE(plain_ids) {
    BOOST_TEST(p::path::refresh("inst_8c2f") == "/api/v1/installations/inst_8c2f/refresh");
    BOOST_TEST(p::path::heartbeat("inst_8c2f") == "/api/v1/installations/inst_8c2f/heartbeat");
    BOOST_TEST(p::path::worker_heartbeat("inst_8c2f") == "/api/v1/installations/inst_8c2f/worker/heartbeat");
    BOOST_TEST(p::path::revoke("inst_8c2f") == "/api/v1/installations/inst_8c2f/revoke");
    BOOST_TEST(p::path::task_stream("inst_8c2f", {}) == "/api/v1/installations/inst_8c2f/tasks/stream");
    BOOST_TEST(p::path::complete("task_51ab") == "/api/v1/tasks/task_51ab/complete");
    BOOST_TEST(p::path::active_policy("ws_7d1e") == "/api/v1/workspaces/ws_7d1e/policies/active");
    // RFC 3986 unreserved characters stay as they are.
    BOOST_TEST(p::path::heartbeat("AZaz09-._~") == "/api/v1/installations/AZaz09-._~/heartbeat");
}

BOOST_AUTO_TEST_CASE(ids_that_need_percent_encoding) {
    // '/', space, '%', and "é" (UTF-8 C3 A9); hex digits are upper case.
    const std::string id = "a/b c%\xC3\xA9";
    const std::string enc = "a%2Fb%20c%25%C3%A9";
    BOOST_TEST(p::path::refresh(id) == "/api/v1/installations/" + enc + "/refresh");
    BOOST_TEST(p::path::heartbeat(id) == "/api/v1/installations/" + enc + "/heartbeat");
    BOOST_TEST(p::path::worker_heartbeat(id) == "/api/v1/installations/" + enc + "/worker/heartbeat");
    BOOST_TEST(p::path::revoke(id) == "/api/v1/installations/" + enc + "/revoke");
    BOOST_TEST(p::path::task_stream(id, {}) == "/api/v1/installations/" + enc + "/tasks/stream");
    BOOST_TEST(p::path::complete(id) == "/api/v1/tasks/" + enc + "/complete");
    BOOST_TEST(p::path::active_policy(id) == "/api/v1/workspaces/" + enc + "/policies/active");
    // Characters that would end or redirect a path or a query are encoded too.
    BOOST_TEST(p::path::complete("?#&=+") == "/api/v1/tasks/%3F%23%26%3D%2B/complete");
    BOOST_TEST(p::path::complete(std::string("\x00\x7f\xff", 3)) == "/api/v1/tasks/%00%7F%FF/complete");
    // An id of dots cannot walk up the path.
    BOOST_TEST(p::path::heartbeat("..") == "/api/v1/installations/../heartbeat");
}

BOOST_AUTO_TEST_CASE(the_heartbeat_path_written_into_a_string_replaces_what_it_held) {
    const std::string id = "a/b c%\xC3\xA9";
    std::string out = "/something/much/longer/than/the/path/it/is/about/to/hold/and/more/still";
    p::path::heartbeat(id, out);
    BOOST_TEST(out == p::path::heartbeat(id));
    p::path::heartbeat("inst_2", out);
    BOOST_TEST(out == "/api/v1/installations/inst_2/heartbeat");
    std::string empty;
    p::path::heartbeat("", empty);
    BOOST_TEST(empty == "/api/v1/installations//heartbeat");
}

BOOST_AUTO_TEST_CASE(task_stream_capabilities) {
    const std::string base = "/api/v1/installations/inst_8c2f/tasks/stream";
    BOOST_TEST(p::path::task_stream("inst_8c2f", {}) == base);
    BOOST_TEST(p::path::task_stream("inst_8c2f", {"summarize"}) == base + "?capabilities=summarize");
    BOOST_TEST(p::path::task_stream("inst_8c2f", {"summarize", "translate", "google:docs:*"}) ==
               base + "?capabilities=summarize,translate,google%3Adocs%3A%2A");
    // A comma inside a name is encoded, so that it cannot split the list.
    BOOST_TEST(p::path::task_stream("inst_8c2f", {"a,b", "c d"}) == base + "?capabilities=a%2Cb,c%20d");
    BOOST_TEST(std::string(p::path::capabilities_param) == "capabilities");
}

BOOST_AUTO_TEST_CASE(route_patterns_match_built_paths) {
    struct route {
        const char* name;
        const char* pattern;
        std::function<std::string(const std::string&)> build;
    };
    const std::vector<route> routes = {
        {"refresh", p::path::refresh_route, [](const std::string& id) { return p::path::refresh(id); }},
        {"heartbeat", p::path::heartbeat_route, [](const std::string& id) { return p::path::heartbeat(id); }},
        {"worker_heartbeat", p::path::worker_heartbeat_route,
         [](const std::string& id) { return p::path::worker_heartbeat(id); }},
        {"revoke", p::path::revoke_route, [](const std::string& id) { return p::path::revoke(id); }},
        {"task_stream", p::path::task_stream_route,
         [](const std::string& id) { return p::path::task_stream(id, {"summarize", "x y"}); }},
        {"complete", p::path::complete_route, [](const std::string& id) { return p::path::complete(id); }},
        {"active_policy", p::path::active_policy_route,
         [](const std::string& id) { return p::path::active_policy(id); }},
    };
    const std::vector<std::string> ids = {"inst_8c2f", "a/b c%\xC3\xA9", "x", "bootstrap"};
    for (const auto& r : routes) {
        const std::regex re(r.pattern, std::regex::ECMAScript);
        for (const auto& id : ids) {
            BOOST_TEST_CONTEXT("route " << r.name << ", id '" << printable(id) << "'") {
                std::string built = r.build(id);
                built = built.substr(0, built.find('?')); // servers match the path without its query
                std::smatch m;
                BOOST_TEST_REQUIRE(std::regex_match(built, m, re));
                BOOST_TEST(m.size() == 2u);
                BOOST_TEST(m[1].str() == p::detail::percent_encode(id));
                // No other route matches this path.
                for (const auto& other : routes) {
                    if (std::string(other.name) == r.name) continue;
                    BOOST_TEST(!std::regex_match(built, std::regex(other.pattern)), "also matches " << other.name);
                }
            }
        }
    }
    // The fixed paths are not mistaken for an installation id.
    for (const auto& r : routes) {
        BOOST_TEST(!std::regex_match(std::string(p::path::bootstrap), std::regex(r.pattern)), r.name);
        BOOST_TEST(!std::regex_match(std::string(p::path::recover), std::regex(r.pattern)), r.name);
    }
}

BOOST_AUTO_TEST_SUITE_END()

// =========================================================================================
// Status classes (protocol.md section 0) and error codes (sections 1 to 3, 6.2)
// =========================================================================================

BOOST_AUTO_TEST_SUITE(status)

const char* name(p::status_class c) {
    switch (c) {
    case p::status_class::ok: return "ok";
    case p::status_class::token_rejected: return "token_rejected";
    case p::status_class::revoked: return "revoked";
    case p::status_class::installation_gone: return "installation_gone";
    case p::status_class::transient: return "transient";
    case p::status_class::permanent: return "permanent";
    }
    return "?";
}

struct row {
    int status;
    const char* code;
    bool bearer;
    bool installation_path;
    p::status_class cls;
    errc err; // ignored for 2xx
};

BOOST_AUTO_TEST_CASE(status_table) {
    using c = p::status_class;
    const row rows[] = {
        // 2xx
        {200, "", true, true, c::ok, errc{}},
        {201, "", false, false, c::ok, errc{}},
        {204, "", true, false, c::ok, errc{}},
        {299, "", true, false, c::ok, errc{}},
        // 401 on a Bearer call vs not
        {401, "", true, true, c::token_rejected, errc::unauthorized},
        {401, "unauthorized", true, false, c::token_rejected, errc::unauthorized},
        {401, "", false, false, c::permanent, errc::http_error},
        {401, "", false, true, c::permanent, errc::http_error},
        // 403: installation_revoked vs other codes
        {403, "installation_revoked", true, true, c::revoked, errc::revoked},
        {403, "installation_revoked", false, true, c::revoked, errc::revoked},
        {403, "installation_revoked", false, false, c::revoked, errc::revoked},
        {403, "", true, true, c::permanent, errc::http_error},
        {403, "forbidden", true, true, c::permanent, errc::http_error},
        {403, "Installation_Revoked", true, true, c::permanent, errc::http_error},
        // 404: installation path vs not vs unknown_task
        {404, "", true, true, c::installation_gone, errc::installation_not_found},
        {404, "not_found", false, true, c::installation_gone, errc::installation_not_found},
        {404, "", true, false, c::permanent, errc::http_error},
        {404, "unknown_task", true, false, c::permanent, errc::unknown_task},
        {404, "unknown_task", true, true, c::permanent, errc::unknown_task},
        // transient statuses
        {408, "", true, true, c::transient, errc::transient_http},
        {425, "", false, false, c::transient, errc::transient_http},
        {429, "rate_limited", true, true, c::transient, errc::rate_limited},
        {429, "", false, false, c::transient, errc::rate_limited},
        {500, "", true, true, c::transient, errc::transient_http},
        {502, "", false, false, c::transient, errc::transient_http},
        {503, "unavailable", true, true, c::transient, errc::transient_http},
        {504, "", true, false, c::transient, errc::transient_http},
        {599, "", true, false, c::transient, errc::transient_http},
        // 3xx: redirects are refused, permanently
        {301, "", true, true, c::permanent, errc::redirect_refused},
        {302, "", false, false, c::permanent, errc::redirect_refused},
        {304, "", true, false, c::permanent, errc::redirect_refused},
        {307, "", true, true, c::permanent, errc::redirect_refused},
        {308, "", false, true, c::permanent, errc::redirect_refused},
        // other 4xx
        {400, "bad_request", true, true, c::permanent, errc::http_error},
        {405, "", true, true, c::permanent, errc::http_error},
        {409, "", true, false, c::permanent, errc::http_error},
        {409, "already_completed", true, false, c::permanent, errc::http_error},
        {410, "", false, false, c::permanent, errc::http_error},
        {413, "", true, true, c::permanent, errc::http_error},
        {422, "", true, true, c::permanent, errc::http_error},
        {451, "", true, true, c::permanent, errc::http_error},
        // section 1: bootstrap errors (all permanent)
        {401, "invalid_install_token", false, false, c::permanent, errc::invalid_install_token},
        {409, "install_token_used", false, false, c::permanent, errc::install_token_used},
        {410, "install_token_expired", false, false, c::permanent, errc::install_token_expired},
        {403, "agent_mismatch", false, false, c::permanent, errc::agent_mismatch},
        // section 2: recovery errors (permanent)
        {401, "invalid_api_key", false, false, c::permanent, errc::invalid_api_key},
        {403, "workspace_mismatch", false, false, c::permanent, errc::workspace_mismatch},
        // section 3: refresh (no Bearer header, an installation path)
        {401, "invalid_refresh_token", false, true, c::permanent, errc::invalid_refresh_token},
        {403, "installation_revoked", false, true, c::revoked, errc::revoked},
        {404, "", false, true, c::installation_gone, errc::installation_not_found},
        // a code on the wrong status does not count
        {400, "install_token_used", false, false, c::permanent, errc::http_error},
        {500, "install_token_expired", false, false, c::transient, errc::transient_http},
        {401, "agent_mismatch", false, false, c::permanent, errc::http_error},
    };
    for (const row& r : rows) {
        BOOST_TEST_CONTEXT("status " << r.status << " code '" << r.code << "' bearer " << r.bearer
                                     << " installation path " << r.installation_path) {
            BOOST_TEST(name(p::classify_status(r.status, r.code, r.bearer, r.installation_path)) == name(r.cls));
            if (r.status < 200 || r.status >= 300) {
                const error_code ec = p::status_error(r.status, r.code, r.bearer, r.installation_path);
                BOOST_TEST(ec.message() == make_error_code(r.err).message());
                BOOST_TEST((ec == r.err));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(status_error_of_success_is_no_error) {
    // BUG(protocol.hpp): status_error(200, ...) returns errc::http_error. A caller that
    // maps every answer through status_error (`if (auto ec = status_error(...))`) would
    // treat a success as a failure. Proposed fix, first line of status_error:
    //     if (status >= 200 && status < 300) return {};
    for (int s : {200, 201, 204}) {
        BOOST_TEST_CONTEXT("status " << s) { BOOST_TEST(!p::status_error(s, "", true, true)); }
    }
}

BOOST_AUTO_TEST_CASE(statuses_outside_the_table) {
    using c = p::status_class;
    // 1xx is never a valid final answer: transient. So is a status the transport could not read.
    for (int s : {0, 100, 101, 199}) {
        BOOST_TEST_CONTEXT("status " << s) {
            BOOST_TEST(name(p::classify_status(s, "", true, true)) == name(c::transient));
            BOOST_TEST((p::status_error(s, "", true, true) == errc::transient_http));
        }
    }
    // Transient errors are the ones worth retrying; permanent ones are not.
    BOOST_TEST(sekuire::is_transient(p::status_error(503, "", true, true)));
    BOOST_TEST(sekuire::is_transient(p::status_error(429, "", true, true)));
    BOOST_TEST(!sekuire::is_transient(p::status_error(409, "install_token_used", false, false)));
    BOOST_TEST(!sekuire::is_transient(p::status_error(302, "", false, false)));
}

BOOST_AUTO_TEST_SUITE_END()

// =========================================================================================
// Messages: documented examples decode to the expected values
// =========================================================================================

BOOST_AUTO_TEST_SUITE(examples)

BOOST_AUTO_TEST_CASE(bootstrap_request_example) {
    const auto o = decode_as<p::bootstrap_request>(samples<p::bootstrap_request>().front().body);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    const auto& m = o.message;
    BOOST_TEST(m.install_token == "skt_4f9a8b7c6d5e4f3a");
    BOOST_TEST(m.agent_id == agent_id);
    BOOST_TEST(m.capabilities == std::vector<std::string>{"summarize"}, boost::test_tools::per_element());
    BOOST_TEST(m.platform.type == "kubernetes");
    BOOST_TEST_REQUIRE(m.platform.find("pod_name"));
    BOOST_TEST(*m.platform.find("pod_name") == "agent-0");
    BOOST_TEST_REQUIRE(m.platform.find("namespace"));
    BOOST_TEST(*m.platform.find("namespace") == "prod");
    BOOST_TEST_REQUIRE(m.platform.find("arch"));
    BOOST_TEST(*m.platform.find("arch") == "x86_64");
    BOOST_TEST(!m.platform.find("type"));
    BOOST_TEST(!m.platform.find("pid"));
    BOOST_TEST((m.platform.pid == std::optional<std::int64_t>(42)));
    BOOST_TEST(m.sdk.name == "sekuire-cpp");
    BOOST_TEST(m.sdk.version == "0.1.0");
}

BOOST_AUTO_TEST_CASE(bootstrap_request_defaults_and_encoding) {
    // Only the two required fields: the rest takes its default.
    const auto o = decode_as<p::bootstrap_request>(R"({"install_token": "skt_x", "agent_id": "a"})");
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST(o.message.capabilities.empty());
    BOOST_TEST((o.message.platform == sekuire::platform_info{}));
    BOOST_TEST(o.message.sdk.name == sekuire::sdk_name);
    BOOST_TEST(o.message.sdk.version == sekuire::sdk_version);

    // The encoding has the documented keys.
    p::bootstrap_request r;
    r.install_token = "skt_abc";
    r.agent_id = "agent";
    r.capabilities = {"summarize", "translate"};
    r.platform.type = "docker";
    r.platform.set("container_id", "4f3c");
    r.platform.pid = 99;
    const json::object e = p::to_json(r);
    BOOST_TEST(e.at("install_token") == "skt_abc");
    BOOST_TEST(e.at("agent_id") == "agent");
    BOOST_TEST(e.at("capabilities") == (json::array{"summarize", "translate"}));
    BOOST_TEST(e.at("platform") == (json::object{{"type", "docker"}, {"container_id", "4f3c"}, {"pid", 99}}));
    BOOST_TEST(e.at("sdk") == (json::object{{"name", "sekuire-cpp"}, {"version", sekuire::sdk_version}}));
    BOOST_TEST(e.size() == 5u);
}

BOOST_AUTO_TEST_CASE(recover_request_example) {
    const auto o = decode_as<p::recover_request>(samples<p::recover_request>().front().body);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST(o.message.workspace_id == "ws_7d1e");
    BOOST_TEST(o.message.agent_id == agent_id);
    BOOST_TEST(o.message.capabilities == (std::vector<std::string>{"summarize", "translate"}),
               boost::test_tools::per_element());
    BOOST_TEST(o.message.platform.type == "kubernetes");
    BOOST_TEST(o.message.sdk.name == "sekuire-cpp");
    // The API key travels in a header, never in the body.
    BOOST_TEST(!p::to_json(o.message).contains("api_key"));
}

BOOST_AUTO_TEST_CASE(bootstrap_response_example) {
    const auto o = decode_as<p::bootstrap_response>(samples<p::bootstrap_response>().front().body);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    const auto& m = o.message;
    BOOST_TEST(m.installation_id == "inst_8c2f");
    BOOST_TEST(m.runtime_token == "srt_0123456789abcdef0123");
    BOOST_TEST((m.runtime_token_expires_at == at(t_2026_05_03_12_00)));
    BOOST_TEST(m.refresh_token == "rt_fedcba9876543210fedc");
    BOOST_TEST((m.lease_expires_at == at(t_2026_02_03_12_05)));
    BOOST_TEST((m.heartbeat_interval_seconds == std::optional<std::int64_t>(60)));
    BOOST_TEST((m.deployment_url == std::optional<std::string>("https://app.sekuire.ai/installations/inst_8c2f")));
}

BOOST_AUTO_TEST_CASE(bootstrap_response_optional_fields) {
    const std::string body = without(without(samples<p::bootstrap_response>().front().body,
                                             "heartbeat_interval_seconds"),
                                     "deployment_url");
    const auto o = decode_as<p::bootstrap_response>(body);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST(!o.message.heartbeat_interval_seconds);
    BOOST_TEST(!o.message.deployment_url);
    const json::object e = p::to_json(o.message);
    BOOST_TEST(!e.contains("heartbeat_interval_seconds"));
    BOOST_TEST(!e.contains("deployment_url"));
    // A heartbeat interval of zero seconds is not an interval.
    const auto zero = decode_over_sample<p::bootstrap_response>(
        with_value(samples<p::bootstrap_response>().front().body, "heartbeat_interval_seconds", 0));
    BOOST_TEST(show(zero) == show(errc::invalid_value, "heartbeat_interval_seconds"));
}

BOOST_AUTO_TEST_CASE(refresh_messages_example) {
    const auto rq = decode_as<p::refresh_request>(R"({"refresh_token": "rt_abc"})");
    BOOST_TEST_REQUIRE(rq.ok, show(rq.err));
    BOOST_TEST(rq.message.refresh_token == "rt_abc");

    const auto o = decode_as<p::refresh_response>(samples<p::refresh_response>().front().body);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST(o.message.runtime_token == "srt_new");
    BOOST_TEST((o.message.expires_at == at(t_2026_05_03_12_00)));
    BOOST_TEST(o.message.token_version == 2);
    BOOST_TEST((o.message.refresh_token == std::optional<std::string>("rt_rotated")));

    // Without rotation there is no refresh token; an empty one is not a token.
    const auto plain = decode_as<p::refresh_response>(
        R"({"runtime_token": "srt_new", "expires_at": "2026-05-03T12:00:00Z", "token_version": 2})");
    BOOST_TEST_REQUIRE(plain.ok, show(plain.err));
    BOOST_TEST(!plain.message.refresh_token);
    BOOST_TEST(!p::to_json(plain.message).contains("refresh_token"));
    const auto empty = decode_over_sample<p::refresh_response>(
        with_value(samples<p::refresh_response>().front().body, "refresh_token", ""));
    BOOST_TEST(show(empty) == show(errc::invalid_value, "refresh_token"));
}

BOOST_AUTO_TEST_CASE(heartbeat_request_example) {
    const auto o = decode_as<p::heartbeat_request>(samples<p::heartbeat_request>().front().body);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    const auto& m = o.message;
    BOOST_TEST((m.status == p::heartbeat_status::healthy));
    BOOST_TEST(m.uptime_seconds == 3600);
    BOOST_TEST(m.sequence == 42);
    BOOST_TEST(m.metrics.requests_handled == 1500);
    BOOST_TEST(m.metrics.errors == 2);
    BOOST_TEST(m.metrics.avg_latency_ms == 145);
    BOOST_TEST(m.capabilities == std::vector<std::string>{"summarize"}, boost::test_tools::per_element());
    BOOST_TEST(m.platform.type == "kubernetes");
    BOOST_TEST(m.sdk.name == "sekuire-cpp");
}

BOOST_AUTO_TEST_CASE(heartbeat_statuses) {
    const std::pair<const char*, p::heartbeat_status> all[] = {
        {"healthy", p::heartbeat_status::healthy},   {"degraded", p::heartbeat_status::degraded},
        {"paused", p::heartbeat_status::paused},     {"draining", p::heartbeat_status::draining},
        {"stopped", p::heartbeat_status::stopped},
    };
    for (const auto& s : all) {
        BOOST_TEST_CONTEXT(s.first) {
            const auto o = decode_as<p::heartbeat_request>(std::string(R"({"status": ")") + s.first + "\"}");
            BOOST_TEST_REQUIRE(o.ok, show(o.err));
            BOOST_TEST((o.message.status == s.second));
            BOOST_TEST(p::to_string(s.second) == std::string(s.first));
            BOOST_TEST(p::to_json(o.message).at("status") == s.first);
        }
    }
    for (const char* bad : {"Healthy", "ok", "", "stopped "}) {
        BOOST_TEST_CONTEXT("'" << bad << "'") {
            const auto err = decode_over_sample<p::heartbeat_request>(std::string(R"({"status": ")") + bad + "\"}");
            BOOST_TEST(show(err) == show(errc::invalid_value, "status"));
        }
    }
}

BOOST_AUTO_TEST_CASE(heartbeat_response_documented_example) {
    // The example of protocol.md section 5, `command` null and the policy hash filled in.
    const auto o = decode_as<p::heartbeat_response>(
        R"({"installation_id": "inst_8c2f", "lease_renewed": true,
            "lease_expires_at": "2026-02-03T12:05:00Z", "next_heartbeat_at": "2026-02-03T12:01:00Z",
            "command": null,
            "refreshed_token": {"runtime_token": "srt_new", "expires_at": "2026-05-03T12:00:00Z", "token_version": 2},
            "active_policy_hash": "9b8a7c"})");
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    const auto& m = o.message;
    BOOST_TEST((m.installation_id == std::optional<std::string>("inst_8c2f")));
    BOOST_TEST((m.lease_renewed == std::optional<bool>(true)));
    BOOST_TEST_REQUIRE(m.lease_expires_at.has_value());
    BOOST_TEST((*m.lease_expires_at == at(t_2026_02_03_12_05)));
    BOOST_TEST_REQUIRE(m.next_heartbeat_at.has_value());
    BOOST_TEST((*m.next_heartbeat_at == at(t_2026_02_03_12_01)));
    BOOST_TEST(!m.command);
    BOOST_TEST_REQUIRE(m.refreshed_token.has_value());
    BOOST_TEST(m.refreshed_token->runtime_token == "srt_new");
    BOOST_TEST((m.refreshed_token->expires_at == at(t_2026_05_03_12_00)));
    BOOST_TEST(m.refreshed_token->token_version == 2);
    BOOST_TEST((m.active_policy_hash == std::optional<std::string>("9b8a7c")));
    BOOST_TEST(!m.revoked);
}

BOOST_AUTO_TEST_CASE(heartbeat_response_with_command) {
    const auto o = decode_as<p::heartbeat_response>(samples<p::heartbeat_response>().front().body);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST_REQUIRE(o.message.command.has_value());
    BOOST_TEST(o.message.command->id == "cmd_1");
    BOOST_TEST((o.message.command->type == p::command_type::pause));
    BOOST_TEST(o.message.command->type_name == "pause");
    BOOST_TEST(o.message.command->reason == "maintenance window");
    BOOST_TEST((o.message.command->shutdown_timeout_ms == std::optional<std::int64_t>(5000)));
}

BOOST_AUTO_TEST_CASE(heartbeat_response_minimal) {
    // Every field is optional; absent ones stay absent.
    const auto o = decode_as<p::heartbeat_response>("{}");
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST(!o.message.installation_id);
    BOOST_TEST(!o.message.lease_renewed);
    BOOST_TEST(!o.message.lease_expires_at);
    BOOST_TEST(!o.message.next_heartbeat_at);
    BOOST_TEST(!o.message.command);
    BOOST_TEST(!o.message.refreshed_token);
    BOOST_TEST(!o.message.active_policy_hash);
    BOOST_TEST(!o.message.revoked);
}

BOOST_AUTO_TEST_CASE(revoked_heartbeat_shape) {
    // protocol.md section 5, the revoked response.
    const auto o = decode_as<p::heartbeat_response>(revoked_json);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST_REQUIRE(o.message.revoked.has_value());
    BOOST_TEST(o.message.revoked->reason == "Emergency shutdown initiated by admin");
    BOOST_TEST((o.message.revoked->shutdown_timeout_ms == std::optional<std::int64_t>(5000)));
    BOOST_TEST((o.message.lease_renewed == std::optional<bool>(false)));
    // Encoded back, it is the revoked shape again.
    const json::object e = p::to_json(o.message);
    BOOST_TEST(e.at("revoked") == true);
    BOOST_TEST(e.at("lease_renewed") == false);
    BOOST_TEST(e.at("reason") == "Emergency shutdown initiated by admin");
    BOOST_TEST(e.at("shutdown_timeout_ms") == 5000);

    // The worker heartbeat answers with the same shape (section 6.3).
    const auto w = decode_as<p::worker_heartbeat_response>(revoked_json);
    BOOST_TEST_REQUIRE(w.ok, show(w.err));
    BOOST_TEST_REQUIRE(w.message.revoked.has_value());
    BOOST_TEST(w.message.revoked->reason == "Emergency shutdown initiated by admin");
    BOOST_TEST((w.message.revoked->shutdown_timeout_ms == std::optional<std::int64_t>(5000)));

    // And so does the `revoked` event (section 6.1).
    const auto r = decode_as<p::revocation>(revoked_json);
    BOOST_TEST_REQUIRE(r.ok, show(r.err));
    BOOST_TEST(r.message.reason == "Emergency shutdown initiated by admin");
    BOOST_TEST((r.message.shutdown_timeout_ms == std::optional<std::int64_t>(5000)));

    // Without a timeout or a reason, still revoked.
    const auto bare = decode_as<p::heartbeat_response>(R"({"revoked": true})");
    BOOST_TEST_REQUIRE(bare.ok, show(bare.err));
    BOOST_TEST_REQUIRE(bare.message.revoked.has_value());
    BOOST_TEST(!bare.message.revoked->shutdown_timeout_ms);

    // `revoked: false` (or null) is a live lease.
    for (const char* body : {R"({"revoked": false, "lease_renewed": true})", R"({"revoked": null})"}) {
        const auto live = decode_as<p::heartbeat_response>(body);
        BOOST_TEST_REQUIRE(live.ok, show(live.err));
        BOOST_TEST(!live.message.revoked, body);
    }
}

BOOST_AUTO_TEST_CASE(command_types) {
    const std::pair<const char*, p::command_type> all[] = {
        {"pause", p::command_type::pause},
        {"resume", p::command_type::resume},
        {"terminate", p::command_type::terminate},
    };
    for (const auto& t : all) {
        BOOST_TEST_CONTEXT(t.first) {
            const auto o = decode_as<p::command>(std::string(R"({"id": "cmd_2", "type": ")") + t.first + "\"}");
            BOOST_TEST_REQUIRE(o.ok, show(o.err));
            BOOST_TEST((o.message.type == t.second));
            BOOST_TEST(o.message.type_name == t.first);
            BOOST_TEST(o.message.reason.empty());
            BOOST_TEST(!o.message.shutdown_timeout_ms);
            BOOST_TEST(p::to_json(o.message).at("type") == t.first);
        }
    }
    // The `command` event of section 6.1.
    const auto ev = decode_as<p::command>(
        R"({"id": "cmd_9", "type": "terminate", "reason": "scale down", "shutdown_timeout_ms": 5000})");
    BOOST_TEST_REQUIRE(ev.ok, show(ev.err));
    BOOST_TEST((ev.message.type == p::command_type::terminate));
    BOOST_TEST(ev.message.reason == "scale down");
    BOOST_TEST((ev.message.shutdown_timeout_ms == std::optional<std::int64_t>(5000)));
}

BOOST_AUTO_TEST_CASE(unknown_command_type_is_kept) {
    const auto o = decode_as<p::command>(R"({"id": "cmd_3", "type": "reboot", "reason": "kernel update"})");
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST((o.message.type == p::command_type::unknown));
    BOOST_TEST(o.message.type_name == "reboot");
    BOOST_TEST(o.message.reason == "kernel update");
    // Re-encoded with the name as sent, not "unknown".
    BOOST_TEST(p::to_json(o.message).at("type") == "reboot");
    // Case matters: "Pause" is not a known type.
    const auto upper = decode_as<p::command>(R"({"id": "cmd_4", "type": "Pause"})");
    BOOST_TEST_REQUIRE(upper.ok, show(upper.err));
    BOOST_TEST((upper.message.type == p::command_type::unknown));
    // Inside a heartbeat response too.
    const auto hb = decode_as<p::heartbeat_response>(R"({"command": {"id": "c", "type": "upgrade"}})");
    BOOST_TEST_REQUIRE(hb.ok, show(hb.err));
    BOOST_TEST_REQUIRE(hb.message.command.has_value());
    BOOST_TEST((hb.message.command->type == p::command_type::unknown));
    BOOST_TEST(hb.message.command->type_name == "upgrade");
    // "unknown" sent literally is unknown as well, and an empty type is no type.
    const auto lit = decode_as<p::command>(R"({"id": "c", "type": "unknown"})");
    BOOST_TEST_REQUIRE(lit.ok, show(lit.err));
    BOOST_TEST((lit.message.type == p::command_type::unknown));
    BOOST_TEST(show(decode_over_sample<p::command>(R"({"id": "c", "type": ""})")) ==
               show(errc::invalid_value, "type"));
}

BOOST_AUTO_TEST_CASE(task_documented_example) {
    // protocol.md section 6.1, with the nullable fields null.
    const auto o = decode_as<p::task>(
        R"({"task_id": "task_51ab", "capability": "summarize", "input": {"text": "hello"},
            "workspace_id": "ws_7d1e", "trace_id": "trace_0a1b", "requester_agent_id": null,
            "parent_task_id": null, "workflow_id": null, "deadline_at": null})");
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    const auto& t = o.message;
    BOOST_TEST(t.task_id == "task_51ab");
    BOOST_TEST(t.capability == "summarize");
    BOOST_TEST(t.input == (json::object{{"text", "hello"}}));
    BOOST_TEST((t.workspace_id == std::optional<std::string>("ws_7d1e")));
    BOOST_TEST((t.trace_id == std::optional<std::string>("trace_0a1b")));
    BOOST_TEST(!t.requester_agent_id);
    BOOST_TEST(!t.parent_task_id);
    BOOST_TEST(!t.workflow_id);
    BOOST_TEST(!t.deadline_at);
}

BOOST_AUTO_TEST_CASE(task_all_fields) {
    const auto o = decode_as<p::task>(samples<p::task>().front().body);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    const auto& t = o.message;
    BOOST_TEST((t.requester_agent_id == std::optional<std::string>("agent_x")));
    BOOST_TEST((t.parent_task_id == std::optional<std::string>("task_50aa")));
    BOOST_TEST((t.workflow_id == std::optional<std::string>("wf_3")));
    BOOST_TEST_REQUIRE(t.deadline_at.has_value());
    BOOST_TEST((*t.deadline_at == at(t_2026_02_03_12_10)));
    // Any JSON value is an input; absent is null.
    for (const char* input : {R"("text")", "42", "[1,2,3]", "true", "null", R"({"a":{"b":[{}]}})"}) {
        const auto i = decode_as<p::task>(std::string(R"({"task_id": "t", "capability": "c", "input": )") + input +
                                          "}");
        BOOST_TEST_REQUIRE(i.ok, show(i.err));
        BOOST_TEST(i.message.input == json::parse(input), input);
    }
    const auto none = decode_as<p::task>(R"({"task_id": "t", "capability": "c"})");
    BOOST_TEST_REQUIRE(none.ok, show(none.err));
    BOOST_TEST(none.message.input.is_null());
}

BOOST_AUTO_TEST_CASE(task_aliases) {
    // `id` for `task_id`, `target_capability` for `capability`.
    const auto a = decode_as<p::task>(R"({"id": "task_7", "target_capability": "translate", "input": {}})");
    BOOST_TEST_REQUIRE(a.ok, show(a.err));
    BOOST_TEST(a.message.task_id == "task_7");
    BOOST_TEST(a.message.capability == "translate");
    // The encoding uses the primary names.
    const json::object e = p::to_json(a.message);
    BOOST_TEST(e.at("task_id") == "task_7");
    BOOST_TEST(e.at("capability") == "translate");
    BOOST_TEST(!e.contains("id"));
    BOOST_TEST(!e.contains("target_capability"));
    // When both are present the primary name wins.
    const auto both = decode_as<p::task>(
        R"({"id": "alias", "task_id": "primary", "target_capability": "alias", "capability": "primary"})");
    BOOST_TEST_REQUIRE(both.ok, show(both.err));
    BOOST_TEST(both.message.task_id == "primary");
    BOOST_TEST(both.message.capability == "primary");
    // An alias of the wrong type is named as sent.
    BOOST_TEST(show(decode_over_sample<p::task>(R"({"id": 5, "capability": "c"})")) == show(errc::wrong_type, "id"));
    BOOST_TEST(show(decode_over_sample<p::task>(R"({"task_id": "t", "target_capability": []})")) ==
               show(errc::wrong_type, "target_capability"));
    // Neither name: the primary one is missing.
    BOOST_TEST(show(decode_over_sample<p::task>(R"({"capability": "c"})")) ==
               show(errc::missing_field, "task_id"));
    BOOST_TEST(show(decode_over_sample<p::task>(R"({"id": "t"})")) == show(errc::missing_field, "capability"));
}

BOOST_AUTO_TEST_CASE(policy_event_example) {
    const auto o = decode_as<p::policy_event>(R"({"active_policy_hash": "9b8a7c"})");
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST(o.message.active_policy_hash == "9b8a7c");
}

BOOST_AUTO_TEST_CASE(completion_request_examples) {
    const auto ok = decode_as<p::completion_request>(samples<p::completion_request>()[0].body);
    BOOST_TEST_REQUIRE(ok.ok, show(ok.err));
    BOOST_TEST(ok.message.installation_id == "inst_8c2f");
    BOOST_TEST((ok.message.status == p::task_status::completed));
    BOOST_TEST(ok.message.output == (json::object{{"summary", "A fox."}}));
    BOOST_TEST(!ok.message.error);
    BOOST_TEST(ok.message.execution_time_ms == 12);
    BOOST_TEST((ok.message.trace_id == std::optional<std::string>("trace_0a1b")));
    const json::object e = p::to_json(ok.message);
    BOOST_TEST(e.at("error").is_null());
    BOOST_TEST(e.at("status") == "completed");

    const auto failed = decode_as<p::completion_request>(samples<p::completion_request>()[1].body);
    BOOST_TEST_REQUIRE(failed.ok, show(failed.err));
    BOOST_TEST((failed.message.status == p::task_status::failed));
    BOOST_TEST_REQUIRE(failed.message.error.has_value());
    BOOST_TEST((failed.message.error->code == p::task_error::handler_error));
    BOOST_TEST(failed.message.error->message == "division by zero");
    BOOST_TEST(failed.message.output.is_null());
}

BOOST_AUTO_TEST_CASE(completion_statuses_and_error_codes) {
    const std::pair<const char*, p::task_error> codes[] = {
        {"handler_error", p::task_error::handler_error},
        {"handler_timeout", p::task_error::handler_timeout},
        {"invalid_input", p::task_error::invalid_input},
        {"no_handler", p::task_error::no_handler},
        {"worker_paused", p::task_error::worker_paused},
        {"rate_limited", p::task_error::rate_limited},
        {"capability_denied", p::task_error::capability_denied},
        {"shutting_down", p::task_error::shutting_down},
    };
    for (const char* status : {"failed", "rejected"}) {
        for (const auto& c : codes) {
            BOOST_TEST_CONTEXT(status << " " << c.first) {
                const auto o = decode_as<p::completion_request>(
                    std::string(R"({"installation_id": "i", "status": ")") + status +
                    R"(", "error": {"code": ")" + c.first + R"("}})");
                BOOST_TEST_REQUIRE(o.ok, show(o.err));
                BOOST_TEST(p::to_string(o.message.status) == std::string(status));
                BOOST_TEST_REQUIRE(o.message.error.has_value());
                BOOST_TEST((o.message.error->code == c.second));
                BOOST_TEST(o.message.error->message.empty());
                BOOST_TEST(p::to_json(o.message).at("error").at("code") == c.first);
            }
        }
    }
    BOOST_TEST(show(decode_over_sample<p::completion_request>(
                   R"({"installation_id": "i", "status": "failed", "error": {"code": "oops"}})")) ==
               show(errc::invalid_value, "error.code"));
    BOOST_TEST(show(decode_over_sample<p::completion_request>(R"({"installation_id": "i", "status": "done"})")) ==
               show(errc::invalid_value, "status"));
}

BOOST_AUTO_TEST_CASE(failed_completion_needs_an_error) {
    for (const char* status : {"failed", "rejected"}) {
        BOOST_TEST_CONTEXT(status) {
            const std::string head = std::string(R"({"installation_id": "i", "status": ")") + status + "\"";
            BOOST_TEST(show(decode_over_sample<p::completion_request>(head + "}")) ==
                       show(errc::missing_field, "error"));
            BOOST_TEST(show(decode_over_sample<p::completion_request>(head + R"(, "error": null})")) ==
                       show(errc::missing_field, "error"));
        }
    }
    // A completed task may carry no error at all.
    const auto o = decode_as<p::completion_request>(R"({"installation_id": "i", "status": "completed"})");
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST(o.message.output.is_null());
    BOOST_TEST(o.message.execution_time_ms == 0);
}

BOOST_AUTO_TEST_CASE(completion_response_example) {
    const auto o = decode_as<p::completion_response>(R"({"accepted": true})");
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST(o.message.accepted);
    const auto f = decode_as<p::completion_response>(R"({"accepted": false})");
    BOOST_TEST_REQUIRE(f.ok, show(f.err));
    BOOST_TEST(!f.message.accepted);
    BOOST_TEST(show(decode_over_sample<p::completion_response>(R"({"accepted": null})")) ==
               show(errc::wrong_type, "accepted"));
}

BOOST_AUTO_TEST_CASE(worker_heartbeat_examples) {
    const auto o = decode_as<p::worker_heartbeat_request>(samples<p::worker_heartbeat_request>().front().body);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST((o.message.state == p::worker_state::running));
    BOOST_TEST(o.message.in_flight == 2);
    BOOST_TEST(o.message.capabilities == std::vector<std::string>{"summarize"}, boost::test_tools::per_element());
    BOOST_TEST(o.message.completed == 10);
    BOOST_TEST(o.message.failed == 1);
    BOOST_TEST((o.message.policy_hash == std::optional<std::string>("9b8a7c")));
    for (const char* s : {"running", "paused", "draining"}) {
        const auto st = decode_as<p::worker_heartbeat_request>(std::string(R"({"state": ")") + s + "\"}");
        BOOST_TEST_REQUIRE(st.ok, show(st.err));
        BOOST_TEST(p::to_string(st.message.state) == std::string(s));
    }
    BOOST_TEST(show(decode_over_sample<p::worker_heartbeat_request>(R"({"state": "stopped"})")) ==
               show(errc::invalid_value, "state"));

    // Response: `{"active_policy_hash": "...", "command": null}`.
    const auto r = decode_as<p::worker_heartbeat_response>(R"({"active_policy_hash": "9b8a7c", "command": null})");
    BOOST_TEST_REQUIRE(r.ok, show(r.err));
    BOOST_TEST((r.message.active_policy_hash == std::optional<std::string>("9b8a7c")));
    BOOST_TEST(!r.message.command);
    BOOST_TEST(!r.message.revoked);
    const auto c = decode_as<p::worker_heartbeat_response>(samples<p::worker_heartbeat_response>().front().body);
    BOOST_TEST_REQUIRE(c.ok, show(c.err));
    BOOST_TEST_REQUIRE(c.message.command.has_value());
    BOOST_TEST((c.message.command->type == p::command_type::pause));
}

BOOST_AUTO_TEST_CASE(policy_document_example) {
    const auto o = decode_as<p::policy_document>(policy_doc_json);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    const auto& m = o.message;
    BOOST_TEST(m.policy_id == "policy_12");
    BOOST_TEST(m.workspace_id == "ws_7d1e");
    BOOST_TEST(m.version == "3");
    BOOST_TEST(m.status == "active");
    BOOST_TEST(m.hash == "9b8a7c");
    BOOST_TEST(m.allowed_tools == (std::vector<std::string>{"summarize", "google:docs:*"}),
               boost::test_tools::per_element());
    BOOST_TEST(m.denied_tools == std::vector<std::string>{"shell:*"}, boost::test_tools::per_element());
    BOOST_TEST((m.rate_limits.max_per_minute == std::optional<std::int64_t>(60)));
    BOOST_TEST((m.rate_limits.max_per_hour == std::optional<std::int64_t>(500)));
    BOOST_TEST(m.content == parse_object(policy_doc_json).at("content").get_object());

    // A numeric version is read as its decimal text.
    const auto n = decode_as<p::policy_document>(with_value(policy_doc_json, "version", 3));
    BOOST_TEST_REQUIRE(n.ok, show(n.err));
    BOOST_TEST(n.message.version == "3");

    // An empty content: no rules, no limits.
    const auto e = decode_as<p::policy_document>(R"({"hash": "", "content": {}})");
    BOOST_TEST_REQUIRE(e.ok, show(e.err));
    BOOST_TEST(e.message.allowed_tools.empty());
    BOOST_TEST(e.message.denied_tools.empty());
    BOOST_TEST(!e.message.rate_limits.max_per_minute);
    BOOST_TEST(!e.message.rate_limits.max_per_hour);

    // A document built from its typed fields encodes them inside `content`.
    p::policy_document built;
    built.hash = "h1";
    built.allowed_tools = {"summarize"};
    built.denied_tools = {"shell:*"};
    built.rate_limits.max_per_minute = 10;
    const auto back = decode_as<p::policy_document>(p::encode(built));
    BOOST_TEST_REQUIRE(back.ok, show(back.err));
    BOOST_TEST(back.message.allowed_tools == std::vector<std::string>{"summarize"}, boost::test_tools::per_element());
    BOOST_TEST(back.message.denied_tools == std::vector<std::string>{"shell:*"}, boost::test_tools::per_element());
    BOOST_TEST((back.message.rate_limits.max_per_minute == std::optional<std::int64_t>(10)));
    BOOST_TEST(!back.message.rate_limits.max_per_hour);

    // Integral doubles are integers (60.0), inside the content too.
    const auto d = decode_as<p::policy_document>(
        with_value(policy_doc_json, "content.rate_limits.requests.max_per_minute", 60.0));
    BOOST_TEST_REQUIRE(d.ok, show(d.err));
    BOOST_TEST((d.message.rate_limits.max_per_minute == std::optional<std::int64_t>(60)));
}

BOOST_AUTO_TEST_CASE(error_body_and_revoke_request_examples) {
    const auto o = decode_as<p::error_body>(R"({"error": {"code": "install_token_used", "message": "used"}})");
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST(o.message.code == "install_token_used");
    BOOST_TEST(o.message.message == "used");

    const auto r = decode_as<p::revoke_request>(samples<p::revoke_request>().front().body);
    BOOST_TEST_REQUIRE(r.ok, show(r.err));
    BOOST_TEST(r.message.reason == "compromised host");
    BOOST_TEST((r.message.shutdown_timeout_ms == std::optional<std::int64_t>(5000)));
    const auto empty = decode_as<p::revoke_request>("{}");
    BOOST_TEST_REQUIRE(empty.ok, show(empty.err));
    BOOST_TEST(empty.message.reason.empty());
    BOOST_TEST(!empty.message.shutdown_timeout_ms);
    BOOST_TEST(!p::to_json(empty.message).contains("shutdown_timeout_ms"));
}

BOOST_AUTO_TEST_CASE(platform_info_example) {
    const auto o = decode_as<sekuire::platform_info>(samples<sekuire::platform_info>().front().body);
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST(o.message.type == "docker");
    BOOST_TEST((o.message.pid == std::optional<std::int64_t>(7)));
    BOOST_TEST_REQUIRE(o.message.find("container_id"));
    BOOST_TEST(*o.message.find("container_id") == "4f3c2b1a");
    BOOST_TEST_REQUIRE(o.message.find("image"));
    BOOST_TEST(*o.message.find("image") == "acme/agent:1.2");
    BOOST_TEST(o.message.attributes.size() == 5u);
    // Attributes keep their order when encoded; `type` comes first and `pid` is a number.
    const std::string enc = p::encode(o.message);
    BOOST_TEST(enc == R"({"type":"docker","container_id":"4f3c2b1a","image":"acme/agent:1.2","hostname":"c1",)"
                      R"("os":"linux","arch":"aarch64","pid":7})");
}

BOOST_AUTO_TEST_CASE(empty_required_strings_are_invalid) {
    struct c {
        std::string body;
        std::string field;
    };
    const c cases[] = {
        {R"({"install_token": "", "agent_id": "a"})", "install_token"},
        {R"({"install_token": "skt_x", "agent_id": ""})", "agent_id"},
        {R"({"refresh_token": ""})", "refresh_token"},
    };
    for (const auto& k : cases) {
        if (k.field == "refresh_token") {
            BOOST_TEST(show(decode_over_sample<p::refresh_request>(k.body)) == show(errc::invalid_value, k.field));
        } else {
            BOOST_TEST(show(decode_over_sample<p::bootstrap_request>(k.body)) == show(errc::invalid_value, k.field));
        }
    }
    BOOST_TEST(show(decode_over_sample<p::error_body>(R"({"error": {"code": ""}})")) ==
               show(errc::invalid_value, "error.code"));
    // The policy hash may be empty (no policy).
    BOOST_TEST(decode_as<p::policy_event>(R"({"active_policy_hash": ""})").ok);
}

BOOST_AUTO_TEST_CASE(nulls_in_heartbeat_and_task) {
    // Null is "absent" for the nullable fields named by protocol.md.
    const auto hb = decode_as<p::heartbeat_response>(
        R"({"installation_id": null, "lease_renewed": null, "lease_expires_at": null, "next_heartbeat_at": null,
            "command": null, "refreshed_token": null, "active_policy_hash": null})");
    BOOST_TEST_REQUIRE(hb.ok, show(hb.err));
    BOOST_TEST(!hb.message.command);
    BOOST_TEST(!hb.message.refreshed_token);
    BOOST_TEST(!hb.message.lease_expires_at);
}

BOOST_AUTO_TEST_SUITE_END()

// =========================================================================================
// Messages: properties every decoder has
// =========================================================================================

BOOST_AUTO_TEST_SUITE(every_message)

BOOST_AUTO_TEST_CASE_TEMPLATE(samples_decode_and_round_trip, T, message_types) {
    for (const sample& s : samples<T>()) {
        BOOST_TEST_CONTEXT(s.name) {
            const std::string once = normalised<T>(s.body);
            // Encoding is deterministic.
            const auto o = decode_as<T>(s.body);
            BOOST_TEST(p::encode(o.message) == once);
            BOOST_TEST(json::serialize(p::to_json(o.message)) == once);
            // Decoding ignores whitespace and member order.
            json::object reversed;
            const json::object orig = parse_object(s.body);
            for (auto it = orig.end(); it != orig.begin();) {
                --it;
                reversed[it->key()] = it->value();
            }
            if (!std::is_same<T, sekuire::platform_info>::value) // attributes keep their order
                BOOST_TEST(normalised<T>(json::serialize(reversed)) == once);
            BOOST_TEST(normalised<T>("\n\t " + s.body + " \r\n") == once);
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(missing_required_fields, T, message_types) {
    for (const sample& s : samples<T>()) {
        for (const auto& field : s.required) {
            BOOST_TEST_CONTEXT(s.name << ", without " << field) {
                BOOST_TEST(show(decode_over_sample<T>(without(s.body, field))) == show(errc::missing_field, field));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(required_fields_are_all_listed, T, message_types) {
    // Removing any field that is not listed as required still decodes: the lists above
    // are complete, so the missing-field test covers every required field.
    for (const sample& s : samples<T>()) {
        for (const auto& field : s.typed) {
            if (std::find(s.required.begin(), s.required.end(), field) != s.required.end()) continue;
            const json::object root = parse_object(s.body);
            if (!lookup(root, field)) continue;
            BOOST_TEST_CONTEXT(s.name << ", without " << field) {
                const auto o = decode_as<T>(without(s.body, field));
                BOOST_TEST(o.ok, show(o.err));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(wrong_types, T, message_types) {
    for (const sample& s : samples<T>()) {
        for (const auto& field : s.typed) {
            const json::value wrong = wrong_type_for(s.body, field);
            BOOST_TEST_CONTEXT(s.name << ", " << field << " = " << json::serialize(wrong)) {
                BOOST_TEST(show(decode_over_sample<T>(with_value(s.body, field, wrong))) ==
                           show(errc::wrong_type, field));
            }
        }
        // Any element of a string array that is not a string.
        for (const auto& field : s.typed) {
            const json::object root = parse_object(s.body);
            const json::value* v = lookup(root, field);
            if (!v || !v->is_array()) continue;
            for (const json::value& bad : {json::value(1), json::value(nullptr), json::value(json::array{"x"})}) {
                json::array a = v->get_array();
                a.push_back(bad);
                BOOST_TEST_CONTEXT(s.name << ", " << field << " with a " << json::serialize(bad) << " element") {
                    BOOST_TEST(show(decode_over_sample<T>(with_value(s.body, field, a))) ==
                               show(errc::wrong_type, field));
                }
            }
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(nullable_fields_accept_null, T, message_types) {
    for (const sample& s : samples<T>()) {
        for (const auto& field : s.nullable) {
            BOOST_TEST_CONTEXT(s.name << ", " << field << " = null") {
                const auto o = decode_as<T>(with_value(s.body, field, nullptr));
                BOOST_TEST(o.ok, show(o.err));
            }
        }
        // A required field that is null is named in the error.
        for (const auto& field : s.required) {
            BOOST_TEST_CONTEXT(s.name << ", required " << field << " = null") {
                const auto err = decode_over_sample<T>(with_value(s.body, field, nullptr));
                BOOST_TEST(err.field == field);
                BOOST_TEST((err.code == errc::wrong_type || err.code == errc::missing_field), show(err));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(integer_fields, T, message_types) {
    for (const sample& s : samples<T>()) {
        for (const auto& field : s.ints) {
            BOOST_TEST_CONTEXT(s.name << ", " << field) {
                // Out of the domain: negative, 2^63 (one past int64), 1e300, fractions.
                const json::value invalid[] = {json::value(-1), json::value(std::int64_t{-5000}),
                                               json::value(std::uint64_t{9223372036854775808ULL}),
                                               json::value(std::uint64_t{18446744073709551615ULL}),
                                               json::value(1e300), json::value(-1e300), json::value(60.5),
                                               json::value(-0.5), json::value(1e-300)};
                for (const auto& v : invalid) {
                    BOOST_TEST_CONTEXT("value " << json::serialize(v)) {
                        BOOST_TEST(show(decode_over_sample<T>(with_value(s.body, field, v))) ==
                                   show(errc::invalid_value, field));
                    }
                }
                // The same as texts, as a backend would send them.
                for (const char* text : {"9223372036854775808", "1e300", "60.5", "-1", "1E400", "-1e400"}) {
                    json::object root = parse_object(s.body);
                    std::string leaf;
                    parent_of(root, field, leaf)[leaf] = "@@";
                    std::string body = json::serialize(root);
                    body.replace(body.find("\"@@\""), 4, text);
                    BOOST_TEST_CONTEXT("text " << text) {
                        BOOST_TEST(show(decode_over_sample<T>(body)) == show(errc::invalid_value, field));
                    }
                }
                // Integral doubles are integers: 60.0 is 60.
                for (const json::value& v : {json::value(60.0), json::value(6e1), json::value(std::uint64_t{60})}) {
                    const auto o = decode_as<T>(with_value(s.body, field, v));
                    BOOST_TEST_REQUIRE(o.ok, show(o.err));
                    const json::object enc = p::to_json(o.message);
                    const json::value* e = lookup(enc, field);
                    BOOST_TEST_REQUIRE(e != nullptr);
                    BOOST_TEST(e->to_number<std::int64_t>() == 60);
                }
                // The largest int64 is fine (a shutdown timeout is clamped to a day, so that
                // no deadline computed from it can overflow).
                const auto big = decode_as<T>(with_value(s.body, field, std::int64_t{9223372036854775807LL}));
                BOOST_TEST_REQUIRE(big.ok, show(big.err));
                const json::object enc = p::to_json(big.message);
                const bool shutdown_timeout = field.size() >= 19 &&
                                              field.compare(field.size() - 19, 19, "shutdown_timeout_ms") == 0;
                BOOST_TEST(lookup(enc, field)->to_number<std::int64_t>() ==
                           (shutdown_timeout ? 24LL * 3600 * 1000 : 9223372036854775807LL));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(timestamp_fields, T, message_types) {
    for (const sample& s : samples<T>()) {
        for (const auto& field : s.times) {
            for (const char* bad : {"2026-02-30T00:00:00Z", "", "2026-02-03", "2026-02-03T12:05:00", "tomorrow",
                                    "1700000000", "2026-02-03T12:05:00Z "}) {
                BOOST_TEST_CONTEXT(s.name << ", " << field << " = '" << bad << "'") {
                    BOOST_TEST(show(decode_over_sample<T>(with_value(s.body, field, bad))) ==
                               show(errc::invalid_timestamp, field));
                }
            }
            // Offsets and fractions are converted to UTC, to the millisecond when re-encoded.
            const auto o = decode_as<T>(with_value(s.body, field, "2026-02-03T13:05:00.250+01:00"));
            BOOST_TEST_REQUIRE(o.ok, show(o.err));
            const json::object enc = p::to_json(o.message);
            BOOST_TEST(*lookup(enc, field) == "2026-02-03T12:05:00.250Z");
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(unknown_fields_are_ignored, T, message_types) {
    for (const sample& s : samples<T>()) {
        BOOST_TEST_CONTEXT(s.name) {
            json::object root = parse_object(s.body);
            add_unknown_members(root);
            const std::string body = json::serialize(root);
            const auto o = decode_as<T>(body);
            BOOST_TEST_REQUIRE(o.ok, show(o.err));
            BOOST_TEST(p::encode(o.message) == normalised<T>(s.body));
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(failure_messages_name_the_field, T, message_types) {
    for (const sample& s : samples<T>()) {
        for (const auto& field : s.required) {
            const auto err = decode_over_sample<T>(without(s.body, field));
            BOOST_TEST(err.message().find("'" + field + "'") != std::string::npos, err.message());
            BOOST_TEST(err.message().find(err.code.message()) == 0u, err.message());
        }
    }
}

BOOST_AUTO_TEST_CASE(decode_error_message) {
    p::decode_error e;
    e.code = errc::missing_field;
    e.field = "refreshed_token.expires_at";
    BOOST_TEST(e.message() == "a required field is missing: 'refreshed_token.expires_at'");
    e.field.clear();
    e.code = errc::malformed_json;
    BOOST_TEST(e.message() == "the body is not valid JSON");
    // Values, and so tokens, never appear in a decode error.
    const auto err = decode_over_sample<p::bootstrap_response>(
        with_value(samples<p::bootstrap_response>().front().body, "lease_expires_at", "srt_secret_value"));
    BOOST_TEST(show(err) == show(errc::invalid_timestamp, "lease_expires_at"));
    BOOST_TEST(err.message().find("srt_secret_value") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(timestamps_are_clamped_to_the_protocol_range) {
    // "Never expires" written as the year 9999 does not fit a nanosecond clock; it must not
    // make a whole bootstrap answer malformed.
    const std::string body = with_value(samples<p::bootstrap_response>().front().body, "runtime_token_expires_at",
                                        "9999-12-31T23:59:59Z");
    p::bootstrap_response r;
    p::decode_error err;
    BOOST_REQUIRE(p::decode(body, r, err));
    BOOST_TEST((r.runtime_token_expires_at == p::timing::latest_timestamp));
    BOOST_TEST(sekuire::format_rfc3339(p::timing::latest_timestamp) == "2200-01-01T00:00:00Z");
    const std::string old = with_value(samples<p::bootstrap_response>().front().body, "lease_expires_at",
                                       "1000-01-01T00:00:00Z");
    BOOST_REQUIRE(p::decode(old, r, err));
    BOOST_TEST((r.lease_expires_at == p::timing::earliest_timestamp));
}

BOOST_AUTO_TEST_CASE(nested_fields_use_dotted_paths) {
    const std::string hb = samples<p::heartbeat_response>().front().body;
    BOOST_TEST(show(decode_over_sample<p::heartbeat_response>(without(hb, "refreshed_token.expires_at"))) ==
               show(errc::missing_field, "refreshed_token.expires_at"));
    BOOST_TEST(show(decode_over_sample<p::heartbeat_response>(without(hb, "command.type"))) ==
               show(errc::missing_field, "command.type"));
    BOOST_TEST(show(decode_over_sample<p::heartbeat_response>(with_value(hb, "refreshed_token.expires_at", "x"))) ==
               show(errc::invalid_timestamp, "refreshed_token.expires_at"));
    BOOST_TEST(show(decode_over_sample<p::policy_document>(
                   with_value(policy_doc_json, "content.rate_limits.requests.max_per_hour", -1))) ==
               show(errc::invalid_value, "content.rate_limits.requests.max_per_hour"));
}

// =========================================================================================
// Hostile input
// =========================================================================================

BOOST_AUTO_TEST_CASE_TEMPLATE(not_an_object, T, message_types) {
    static_assert(noexcept(p::decode(std::string_view(), std::declval<T&>(), std::declval<p::decode_error&>())),
                  "decode never throws");
    BOOST_TEST(show(decode_over_sample<T>("")) == show(errc::malformed_json, ""));
    BOOST_TEST(show(decode_over_sample<T>("   \n")) == show(errc::malformed_json, ""));
    for (const char* body : {"null", "[]", "[{}]", "42", "-1", "\"{}\"", "true", "false", "0.5"}) {
        BOOST_TEST_CONTEXT(body) {
            const auto err = decode_over_sample<T>(body);
            BOOST_TEST((err.code == errc::wrong_type), show(err));
        }
    }
    for (const char* body : {"{", "}", "{]", "{\"a\"}", "{\"a\":}", "{'a': 1}", "{\"a\":1,}", "{a:1}", "nul",
                             "<html><body>502 Bad Gateway</body></html>", "{} {}", "{}x", "{\"a\":1} // c",
                             "{\"a\":01}", "{\"a\":.5}", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":\"\\x41\"}"}) {
        BOOST_TEST_CONTEXT(body) {
            BOOST_TEST(show(decode_over_sample<T>(body)) == show(errc::malformed_json, ""));
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(empty_object, T, message_types) {
    const std::vector<sample> all = samples<T>();
    const sample& s = all.front();
    const auto err = decode_over_sample<T>("{}");
    const bool any_top_level = std::any_of(s.required.begin(), s.required.end(),
                                           [](const std::string& f) { return f.find('.') == std::string::npos; });
    if (!any_top_level) {
        BOOST_TEST(!err.code, show(err));
    } else {
        // The first required field is reported (nested required fields only count when
        // their parent is present).
        BOOST_TEST((err.code == errc::missing_field), show(err));
        BOOST_TEST(err.field.find('.') == std::string::npos, show(err));
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(every_prefix_fails_cleanly, T, message_types) {
    for (const sample& s : samples<T>()) {
        const std::string body = json::serialize(parse_object(s.body)) + " ";
        for (std::size_t n = 0; n < body.size(); ++n) {
            const std::string prefix = body.substr(0, n);
            BOOST_TEST_CONTEXT(s.name << ", first " << n << " bytes") {
                error_code ec;
                json::parse(prefix, ec);
                const auto err = decode_over_sample<T>(prefix);
                if (ec) {
                    BOOST_TEST(show(err) == show(errc::malformed_json, ""));
                } else {
                    // A prefix that is complete JSON decodes as the whole body does.
                    BOOST_TEST(!err.code, show(err));
                    BOOST_TEST(normalised<T>(prefix) == normalised<T>(s.body));
                }
            }
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(size_limit_is_checked_before_parsing, T, message_types) {
    const std::vector<sample> all = samples<T>();
    const sample& s = all.front();
    p::decode_options opts;
    opts.max_body_size = s.body.size();
    BOOST_TEST(!decode_over_sample<T>(s.body, opts).code);
    opts.max_body_size = s.body.size() - 1;
    BOOST_TEST(show(decode_over_sample<T>(s.body, opts)) == show(errc::body_too_large, ""));
    // Garbage one byte over the limit is refused for its size, not parsed.
    const std::string garbage(opts.max_body_size + 1, '\xff');
    BOOST_TEST(show(decode_over_sample<T>(garbage, opts)) == show(errc::body_too_large, ""));
    // The default limit is 1 MiB.
    const std::string big = with_member(s.body, "\"x_pad\": \"" + std::string((1u << 20) - s.body.size() - 12, 'a') +
                                                    "\"");
    BOOST_TEST_REQUIRE(big.size() == (1u << 20));
    BOOST_TEST(!decode_over_sample<T>(big).code);
    BOOST_TEST(show(decode_over_sample<T>(big + " ")) == show(errc::body_too_large, ""));
    opts.max_body_size = 0;
    BOOST_TEST(show(decode_over_sample<T>("{}", opts)) == show(errc::body_too_large, ""));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(deep_nesting, T, message_types) {
    const std::vector<sample> all = samples<T>();
    const sample& s = all.front();
    for (const std::string& deep : {nested_arrays(10000), nested_objects(10000), "{\"a\":" + nested_arrays(10000) + "}"}) {
        BOOST_TEST(show(decode_over_sample<T>(deep)) == show(errc::malformed_json, ""));
        BOOST_TEST(show(decode_over_sample<T>(with_member(s.body, "\"x_deep\": " + deep))) ==
                   show(errc::malformed_json, ""));
    }
    // Unclosed nesting is malformed too.
    BOOST_TEST(show(decode_over_sample<T>(std::string(10000, '['))) == show(errc::malformed_json, ""));
    // Within the depth limit, nesting is fine; one level past it is not.
    p::decode_options opts;
    opts.max_depth = 8;
    BOOST_TEST(!decode_over_sample<T>(with_member(s.body, "\"x_deep\": " + nested_arrays(4)), opts).code);
    BOOST_TEST(show(decode_over_sample<T>(with_member(s.body, "\"x_deep\": " + nested_arrays(8)), opts)) ==
               show(errc::malformed_json, ""));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(large_string_value, T, message_types) {
    const std::vector<sample> all = samples<T>();
    const sample& s = all.front();
    const std::string big(900u << 10, 'x');
    // (In an array, so that a platform object does not take it as an attribute.)
    const auto o = decode_as<T>(with_member(s.body, "\"x_big\": [\"" + big + "\"]"));
    BOOST_TEST_REQUIRE(o.ok, show(o.err));
    BOOST_TEST((p::encode(o.message) == normalised<T>(s.body)), "the unknown member changed the message");
    // In a string field it is kept whole.
    for (const auto& field : s.typed) {
        const json::object root = parse_object(s.body);
        const json::value* v = lookup(root, field);
        if (!v || !v->is_string() || s.times.end() != std::find(s.times.begin(), s.times.end(), field)) continue;
        json::object copy = root;
        std::string leaf;
        parent_of(copy, field, leaf)[leaf] = big;
        const auto d = decode_as<T>(json::serialize(copy));
        if (d.ok) {
            // enums refuse it; strings keep it
            BOOST_TEST(p::encode(d.message).find(big) != std::string::npos, field);
        } else {
            BOOST_TEST(show(d.err) == show(errc::invalid_value, field));
        }
        break;
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(invalid_utf8, T, message_types) {
    const std::vector<sample> all = samples<T>();
    const sample& s = all.front();
    const char* bad[] = {
        "\xC3\x28",         // bad continuation
        "\xFF",             // never valid
        "\xC0\xAF",         // overlong '/'
        "\xED\xA0\x80",     // an encoded surrogate
        "\xE2\x82",         // truncated sequence
        "\xF4\x90\x80\x80", // past U+10FFFF
        "\x80",             // lone continuation byte
    };
    for (const char* b : bad) {
        BOOST_TEST_CONTEXT(printable(b)) {
            BOOST_TEST(show(decode_over_sample<T>(with_member(s.body, std::string("\"x_text\": \"a") + b + "\""))) ==
                       show(errc::malformed_json, ""));
            BOOST_TEST(show(decode_over_sample<T>(with_member(s.body, std::string("\"x_") + b + "\": 1"))) ==
                       show(errc::malformed_json, ""));
        }
    }
    // Escaped lone surrogates are not text either.
    BOOST_TEST(show(decode_over_sample<T>(with_member(s.body, R"("x_text": "\ud800")"))) ==
               show(errc::malformed_json, ""));
    BOOST_TEST(show(decode_over_sample<T>(with_member(s.body, R"("x_text": "\udc00x")"))) ==
               show(errc::malformed_json, ""));
    // Valid multi-byte text and escaped pairs are fine.
    BOOST_TEST(!decode_over_sample<T>(with_member(s.body, "\"x_text\": \"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"")).code);
    BOOST_TEST(!decode_over_sample<T>(with_member(s.body, R"("x_text": "\ud83d\ude00")")).code);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(nul_bytes_and_bom, T, message_types) {
    const std::vector<sample> all = samples<T>();
    const sample& s = all.front();
    using namespace std::string_literals;
    // A raw NUL is a control character: not allowed in a string, nor between tokens.
    BOOST_TEST(show(decode_over_sample<T>(with_member(s.body, "\"x_text\": \"a\0b\""s))) ==
               show(errc::malformed_json, ""));
    BOOST_TEST(show(decode_over_sample<T>(s.body + "\0"s)) == show(errc::malformed_json, ""));
    BOOST_TEST(show(decode_over_sample<T>("\0"s + s.body)) == show(errc::malformed_json, ""));
    BOOST_TEST(show(decode_over_sample<T>("\0"s)) == show(errc::malformed_json, ""));
    // An escaped NUL is ordinary text.
    BOOST_TEST(!decode_over_sample<T>(with_member(s.body, R"("x_text": "a\u0000b")")).code);
    // A byte order mark is not JSON (RFC 8259 section 8.1 lets a parser refuse it).
    BOOST_TEST(show(decode_over_sample<T>("\xEF\xBB\xBF" + s.body)) == show(errc::malformed_json, ""));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(numbers_out_of_range_elsewhere, T, message_types) {
    // Huge numbers in fields the decoder ignores do not matter.
    const std::vector<sample> all = samples<T>();
    const sample& s = all.front();
    for (const char* n : {"1e400", "-1e400", "123456789012345678901234567890", "1e-400"}) {
        BOOST_TEST_CONTEXT(n) {
            const auto o = decode_as<T>(with_member(s.body, std::string("\"x_num\": ") + n));
            BOOST_TEST_REQUIRE(o.ok, show(o.err));
            BOOST_TEST(p::encode(o.message) == normalised<T>(s.body));
        }
    }
}

BOOST_AUTO_TEST_CASE(free_form_values_reencode_as_json) {
    // BUG(protocol.hpp): a number that overflows a double (1e400) in a free-form value
    // (task.input, completion_request.output, policy_document.content) is parsed by
    // Boost.JSON 1.81 as infinity, and `encode` then writes `Infinity`, which is not JSON:
    // the re-encoded body no longer decodes (a mock backend or a worker that forwards the
    // value sends invalid JSON). Proposed fix: in `decode`, after parsing, reject any
    // non-finite double (walk the parsed value with an explicit stack, depth is bounded by
    // max_depth) with errc::invalid_value naming the top-level field (or malformed_json);
    // and in `encode`, write non-finite doubles of user-built messages as null.
    const std::string bodies[] = {
        R"({"task_id": "t", "capability": "c", "input": {"x": 1e400}})",
        R"({"task_id": "t", "capability": "c", "input": [-1e400]})",
    };
    for (const auto& body : bodies) {
        BOOST_TEST_CONTEXT(body) {
            const auto o = decode_as<p::task>(body);
            if (o.ok) {
                const std::string once = p::encode(o.message);
                const auto again = decode_as<p::task>(once);
                BOOST_TEST(again.ok, "re-encoded as " << once << ": " << show(again.err));
            }
        }
    }
    const auto c = decode_as<p::completion_request>(
        R"({"installation_id": "i", "status": "completed", "output": 1e999})");
    if (c.ok) BOOST_TEST(decode_as<p::completion_request>(p::encode(c.message)).ok, p::encode(c.message));
    const auto d = decode_as<p::policy_document>(R"({"hash": "h", "content": {"x": 1e999}})");
    if (d.ok) BOOST_TEST(decode_as<p::policy_document>(p::encode(d.message)).ok, p::encode(d.message));
}

BOOST_AUTO_TEST_CASE(decoding_replaces_earlier_content) {
    // A successful decode gives a fresh message; nothing of the earlier one survives.
    p::task t;
    p::decode_error err;
    BOOST_TEST_REQUIRE(p::decode(samples<p::task>().front().body, t, err));
    BOOST_TEST_REQUIRE(p::decode(R"({"task_id": "t2", "capability": "c2"})", t, err));
    BOOST_TEST(!t.workspace_id);
    BOOST_TEST(!t.deadline_at);
    BOOST_TEST(t.input.is_null());
    BOOST_TEST(!err.code);
    // And the error of an earlier failure is cleared by a success.
    BOOST_TEST(!p::decode("{", t, err));
    BOOST_TEST(p::decode(R"({"task_id": "t3", "capability": "c3"})", t, err));
    BOOST_TEST(!err.code);
    BOOST_TEST(err.field.empty());
}

BOOST_AUTO_TEST_SUITE_END()

// =========================================================================================
// error_code_of and error_message_of
// =========================================================================================

BOOST_AUTO_TEST_SUITE(error_bodies)

BOOST_AUTO_TEST_CASE(task_id_of_reads_ids_of_undecodable_tasks) {
    BOOST_TEST(p::task_id_of(R"({"task_id":"task_1","capability":7})") == "task_1");
    BOOST_TEST(p::task_id_of(R"({"id":"task_2"})") == "task_2");
    BOOST_TEST(p::task_id_of(R"({"task_id":"task_3","id":"other"})") == "task_3");
    BOOST_TEST(p::task_id_of(R"({"task_id":""})").empty());
    BOOST_TEST(p::task_id_of(R"({"task_id":42})").empty());
    BOOST_TEST(p::task_id_of("[\"task_id\"]").empty());
    BOOST_TEST(p::task_id_of("{\"task_id\":\"" + std::string(257, 'x') + "\"}").empty());
    BOOST_TEST(p::task_id_of("not json").empty());
    BOOST_TEST(p::task_id_of("").empty());
}

BOOST_AUTO_TEST_CASE(error_code_of_bodies) {
    BOOST_TEST(p::error_code_of(R"({"error": {"code": "install_token_used", "message": "used"}})") ==
               "install_token_used");
    BOOST_TEST(p::error_code_of(R"({"error": {"code": "installation_revoked"}})") == "installation_revoked");
    BOOST_TEST(p::error_code_of(R"({"error": {"code": "x"}, "other": [1, 2]})") == "x");
    // Not an error body: empty.
    const std::string others[] = {
        "",
        "   ",
        "null",
        "[]",
        "\"installation_revoked\"",
        "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        "Internal Server Error",
        R"({"error": "installation_revoked"})",
        R"({"error": {"message": "no code"}})",
        R"({"error": {"code": 403}})",
        R"({"error": {"code": ""}})",
        R"({"code": "installation_revoked"})",
        R"({"error": {"code": "installation_revoked")",
        std::string("\x00\x01\xff\xfe", 4),
        "{\"error\": {\"code\": \"\xff\"}}",
        std::string(70000, '{'),
    };
    for (const auto& body : others) {
        BOOST_TEST_CONTEXT(printable(body)) {
            BOOST_TEST(p::error_code_of(body).empty());
            BOOST_TEST(p::error_message_of(body).empty());
        }
    }
    // A body over 64 KiB is not read at all.
    const std::string padded = R"({"error": {"code": "x"}, "pad": ")" + std::string(70000, 'a') + "\"}";
    BOOST_TEST(p::error_code_of(padded).empty());
}

BOOST_AUTO_TEST_CASE(error_message_of_bodies) {
    BOOST_TEST(p::error_message_of(R"({"error": {"code": "install_token_used", "message": "This token was used."}})") ==
               "This token was used.");
    BOOST_TEST(p::error_message_of(R"({"error": {"code": "x"}})").empty());
    // Control characters become spaces, so that a message cannot forge log lines.
    BOOST_TEST(p::error_message_of(R"({"error": {"code": "x", "message": "a\nb\r\tc\u0000d\u001be"}})") ==
               "a b  c d e");
    // Bounded to 200 bytes.
    const std::string long_msg(1000, 'm');
    BOOST_TEST(p::error_message_of(R"({"error": {"code": "x", "message": ")" + long_msg + "\"}}") ==
               std::string(200, 'm'));
}

bool valid_utf8(std::string_view s) {
    error_code ec;
    json::parse("\"" + std::string(s) + "\"", ec);
    return !ec;
}

BOOST_AUTO_TEST_CASE(error_message_of_keeps_utf8_whole) {
    // BUG(protocol.hpp): error_message_of cuts the message at 200 bytes, which can split a
    // multi-byte UTF-8 character and leave invalid UTF-8 in logs (and in any JSON status
    // that carries the message). Proposed fix: when the loop stops at the bound, find the
    // lead byte of the last character (skip back over 10xxxxxx bytes) and drop that
    // character if it has fewer bytes than its lead byte announces.
    for (std::size_t pad = 195; pad <= 200; ++pad) {
        std::string msg(pad, 'a');
        for (int i = 0; i < 4; ++i) msg += "\xE2\x82\xAC"; // euro signs
        const std::string m = p::error_message_of(R"({"error": {"code": "x", "message": ")" + msg + "\"}}");
        BOOST_TEST_CONTEXT("pad " << pad) {
            BOOST_TEST(m.size() <= 200u);
            BOOST_TEST(m.size() >= 198u); // at most a partial character is dropped
            BOOST_TEST(valid_utf8(m), printable(m));
        }
    }
    // A character that ends exactly at the bound is kept.
    const std::string exact = p::error_message_of(R"({"error": {"code": "x", "message": ")" + std::string(197, 'a') +
                                                  "\xE2\x82\xAC\xE2\x82\xAC\"}}");
    BOOST_TEST(exact == std::string(197, 'a') + "\xE2\x82\xAC");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(huge_shutdown_timeouts_are_clamped_to_a_day) {
    const std::int64_t day_ms = 24LL * 3600 * 1000;
    p::decode_error err;
    p::heartbeat_response hb;
    BOOST_TEST_REQUIRE(p::decode(R"({"revoked":true,"reason":"x","shutdown_timeout_ms":9000000000000000000})", hb, err));
    BOOST_TEST_REQUIRE(hb.revoked.has_value());
    BOOST_TEST(hb.revoked->shutdown_timeout_ms.value_or(0) == day_ms);
    p::command cmd;
    BOOST_TEST_REQUIRE(p::decode(R"({"id":"c","type":"terminate","shutdown_timeout_ms":10000000000000})", cmd, err));
    BOOST_TEST(cmd.shutdown_timeout_ms.value_or(0) == day_ms);
    p::revoke_request rr;
    BOOST_TEST_REQUIRE(p::decode(R"({"shutdown_timeout_ms":5000})", rr, err));
    BOOST_TEST(rr.shutdown_timeout_ms.value_or(0) == 5000); // ordinary values are kept
}

BOOST_AUTO_TEST_SUITE_END()

// ---- the heartbeat body written straight to text ----------------------------------------

BOOST_AUTO_TEST_SUITE(heartbeat_encoder)

namespace {
struct hb_case {
    const char* name;
    sekuire::platform_info platform;
    std::vector<std::string> capabilities;
    sekuire::protocol::heartbeat_status status;
    std::int64_t uptime, sequence;
    sekuire::protocol::heartbeat_metrics metrics;
};

std::vector<hb_case> hb_cases() {
    namespace p = sekuire::protocol;
    std::vector<hb_case> v;
    v.push_back({"plain", {}, {"echo"}, p::heartbeat_status::healthy, 0, 1, {}});
    sekuire::platform_info k8s;
    k8s.type = "kubernetes";
    k8s.attributes = {{"pod", "agent-0"}, {"namespace", "prod"}, {"node", "n\"1\\"}};
    k8s.pid = 4242;
    v.push_back({"attributes_and_pid", k8s, {"a", "b:*", "c"}, p::heartbeat_status::degraded, 86400, 99, {7, 2, 31}});
    sekuire::platform_info odd;
    odd.type = "bare\tmetal";
    odd.attributes = {{"type", "overrides"}, {"x", "\x01\x1f\x7f"}, {"x", "again"}, {"ünï", "çødé ✓"}, {"pid", "text"}};
    odd.pid = -1;
    v.push_back({"keys_that_repeat_and_escapes", odd, {"\"quoted\"", "back\\slash", "new\nline", ""},
                 p::heartbeat_status::draining, 1, 2, {-5, 0, 0}});
    v.push_back({"no_capabilities_and_extremes", {}, {}, p::heartbeat_status::stopped,
                 std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min(),
                 {std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min(), 1}});
    v.push_back({"paused", k8s, {"x"}, p::heartbeat_status::paused, 5, 6, {1, 1, 1}});
    return v;
}
} // namespace

BOOST_AUTO_TEST_CASE(writes_the_same_text_as_the_json_tree) {
    namespace p = sekuire::protocol;
    for (const hb_case& c : hb_cases()) {
        BOOST_TEST_CONTEXT(c.name) {
            p::heartbeat_request m;
            m.status = c.status;
            m.uptime_seconds = c.uptime;
            m.sequence = c.sequence;
            m.platform = c.platform;
            m.metrics = c.metrics;
            m.capabilities = c.capabilities;
            const p::heartbeat_encoder enc(c.platform, c.capabilities);
            const std::string text = enc.encode(c.status, c.uptime, c.sequence, c.metrics);
            BOOST_TEST(text == p::encode(m));
            // And it reads back as the tree's text does (the strict decoder refuses some of
            // these on purpose, a negative pid say: then both are refused).
            p::heartbeat_request back, tree_back;
            p::decode_error err, tree_err;
            const bool ours = p::decode(text, back, err);
            BOOST_TEST(ours == p::decode(p::encode(m), tree_back, tree_err));
            if (ours) {
                BOOST_TEST(back.sequence == c.sequence);
                BOOST_TEST(back.capabilities == c.capabilities);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(each_beat_changes_only_its_own_fields) {
    namespace p = sekuire::protocol;
    sekuire::platform_info pl;
    pl.type = "docker";
    const p::heartbeat_encoder enc(pl, {"echo"});
    const std::string a = enc.encode(p::heartbeat_status::healthy, 10, 1, {1, 0, 5});
    const std::string b = enc.encode(p::heartbeat_status::healthy, 70, 2, {3, 1, 6});
    BOOST_TEST(a != b);
    const auto va = boost::json::parse(a).as_object(), vb = boost::json::parse(b).as_object();
    BOOST_TEST(va.at("platform") == vb.at("platform"));
    BOOST_TEST(va.at("capabilities") == vb.at("capabilities"));
    BOOST_TEST(vb.at("sequence").as_int64() == 2);
    BOOST_TEST(vb.at("uptime_seconds").as_int64() == 70);
    BOOST_TEST(vb.at("metrics").at("errors").as_int64() == 1);
}

BOOST_AUTO_TEST_CASE(encode_to_replaces_what_the_string_held_with_the_same_text) {
    namespace p = sekuire::protocol;
    for (const hb_case& c : hb_cases()) {
        BOOST_TEST_CONTEXT(c.name) {
            const p::heartbeat_encoder enc(c.platform, c.capabilities);
            std::string out = "left over from an earlier body, which must not survive";
            enc.encode_to(out, c.status, c.uptime, c.sequence, c.metrics);
            BOOST_TEST(out == enc.encode(c.status, c.uptime, c.sequence, c.metrics));
            // Again into the same string, shorter numbers this time.
            enc.encode_to(out, c.status, 0, 1, {});
            BOOST_TEST(out == enc.encode(c.status, 0, 1, {}));
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
