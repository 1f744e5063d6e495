// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_IMPL_PROTOCOL_IPP
#define SEKUIRE_IMPL_PROTOCOL_IPP

// The bodies of protocol.hpp's functions: included by protocol.hpp (header-only) or compiled
// once by <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/protocol.hpp>

namespace sekuire {

auto protocol::classify_status(int status, std::string_view error_code, bool bearer_call, bool installation_path) noexcept -> status_class {
    if (status >= 200 && status < 300) return status_class::ok;
    if (status == 401 && bearer_call) return status_class::token_rejected;
    if (status == 403 && error_code == error_code_name::installation_revoked) return status_class::revoked;
    if (status == 404 && installation_path && error_code != error_code_name::unknown_task)
        return status_class::installation_gone;
    if (status == 408 || status == 425 || status == 429 || status >= 500 || status < 200)
        return status_class::transient;
    return status_class::permanent;
}

auto protocol::status_error(int status, std::string_view code, bool bearer_call, bool installation_path) -> error_code {
    namespace n = error_code_name;
    if (status >= 200 && status < 300) return {};
    if (status >= 300 && status < 400) return errc::redirect_refused;
    if (code == n::installation_revoked && status == 403) return errc::revoked;
    if (status == 401) {
        if (code == n::invalid_install_token) return errc::invalid_install_token;
        if (code == n::invalid_api_key) return errc::invalid_api_key;
        if (code == n::invalid_refresh_token) return errc::invalid_refresh_token;
        if (bearer_call) return errc::unauthorized;
        return errc::http_error;
    }
    if (status == 409 && code == n::install_token_used) return errc::install_token_used;
    if (status == 410 && code == n::install_token_expired) return errc::install_token_expired;
    if (status == 403 && code == n::agent_mismatch) return errc::agent_mismatch;
    if (status == 403 && code == n::workspace_mismatch) return errc::workspace_mismatch;
    if (status == 404 && code == n::unknown_task) return errc::unknown_task;
    if (status == 404 && installation_path) return errc::installation_not_found;
    if (status == 429) return errc::rate_limited;
    if (status == 408 || status == 425 || status >= 500 || status < 200) return errc::transient_http;
    return errc::http_error;
}

auto protocol::detail::percent_encode_to(std::string& out, std::string_view s) -> void {
    static constexpr char hex[] = "0123456789ABCDEF";
    for (unsigned char c : s) {
        const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                c == '-' || c == '_' || c == '.' || c == '~';
        if (unreserved) {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
}

auto protocol::detail::percent_encode(std::string_view s) -> std::string {
    std::string out;
    out.reserve(s.size());
    percent_encode_to(out, s);
    return out;
}

auto protocol::detail::installation_path_to(std::string& out, std::string_view installation_id, std::string_view tail) -> void {
    constexpr std::string_view prefix = "/api/v1/installations/";
    out.clear();
    out.reserve(prefix.size() + 3 * installation_id.size() + tail.size());
    out += prefix;
    percent_encode_to(out, installation_id);
    out += tail;
}

auto protocol::detail::installation_path(std::string_view installation_id, std::string_view tail) -> std::string {
    std::string p;
    installation_path_to(p, installation_id, tail);
    return p;
}

auto protocol::path::refresh(std::string_view installation_id) -> std::string {
    return detail::installation_path(installation_id, "/refresh");
}

auto protocol::path::revoke(std::string_view installation_id) -> std::string {
    return detail::installation_path(installation_id, "/revoke");
}

auto protocol::path::task_stream(std::string_view installation_id, const std::vector<std::string>& capabilities) -> std::string {
    std::string p = detail::installation_path(installation_id, "/tasks/stream");
    if (!capabilities.empty()) {
        p += "?capabilities=";
        for (std::size_t i = 0; i < capabilities.size(); ++i) {
            if (i) p += ',';
            detail::percent_encode_to(p, capabilities[i]);
        }
    }
    return p;
}

auto protocol::path::complete(std::string_view task_id) -> std::string {
    constexpr std::string_view tail = "/complete";
    std::string p;
    p.reserve(tasks_prefix.size() + 3 * task_id.size() + tail.size()); // one allocation
    p += tasks_prefix;
    detail::percent_encode_to(p, task_id);
    p += tail;
    return p;
}

auto protocol::path::active_policy(std::string_view workspace_id) -> std::string {
    constexpr std::string_view head = "/api/v1/workspaces/", tail = "/policies/active";
    std::string p;
    p.reserve(head.size() + 3 * workspace_id.size() + tail.size()); // one allocation
    p += head;
    detail::percent_encode_to(p, workspace_id);
    p += tail;
    return p;
}

auto protocol::to_string(command_type t) noexcept -> const char* {
    switch (t) {
    case command_type::pause: return "pause";
    case command_type::resume: return "resume";
    case command_type::terminate: return "terminate";
    case command_type::unknown: return "unknown";
    }
    return "unknown";
}

auto protocol::to_string(task_status s) noexcept -> const char* {
    switch (s) {
    case task_status::completed: return "completed";
    case task_status::failed: return "failed";
    case task_status::rejected: return "rejected";
    }
    return "failed";
}

auto protocol::to_string(task_error e) noexcept -> const char* {
    switch (e) {
    case task_error::handler_error: return "handler_error";
    case task_error::handler_timeout: return "handler_timeout";
    case task_error::invalid_input: return "invalid_input";
    case task_error::no_handler: return "no_handler";
    case task_error::worker_paused: return "worker_paused";
    case task_error::rate_limited: return "rate_limited";
    case task_error::capability_denied: return "capability_denied";
    case task_error::shutting_down: return "shutting_down";
    }
    return "handler_error";
}

auto protocol::to_string(worker_state s) noexcept -> const char* {
    switch (s) {
    case worker_state::running: return "running";
    case worker_state::paused: return "paused";
    case worker_state::draining: return "draining";
    }
    return "running";
}

auto protocol::from_string(std::string_view s, command_type& out) noexcept -> bool {
    static constexpr command_type all[] = {command_type::pause, command_type::resume, command_type::terminate};
    return detail::enum_from_string(s, out, all);
}

auto protocol::from_string(std::string_view s, task_status& out) noexcept -> bool {
    static constexpr task_status all[] = {task_status::completed, task_status::failed, task_status::rejected};
    return detail::enum_from_string(s, out, all);
}

auto protocol::from_string(std::string_view s, task_error& out) noexcept -> bool {
    static constexpr task_error all[] = {task_error::handler_error,   task_error::handler_timeout,
                                         task_error::invalid_input,   task_error::no_handler,
                                         task_error::worker_paused,   task_error::rate_limited,
                                         task_error::capability_denied, task_error::shutting_down};
    return detail::enum_from_string(s, out, all);
}

auto protocol::from_string(std::string_view s, worker_state& out) noexcept -> bool {
    static constexpr worker_state all[] = {worker_state::running, worker_state::paused, worker_state::draining};
    return detail::enum_from_string(s, out, all);
}

auto protocol::detail::all_numbers_finite(const json::value& root) -> bool {
    std::vector<const json::value*> stack{&root}; // explicit: depth is bounded, but by the caller
    while (!stack.empty()) {
        const json::value* v = stack.back();
        stack.pop_back();
        if (v->is_double()) {
            if (!std::isfinite(v->get_double())) return false;
        } else if (v->is_array()) {
            for (const auto& e : v->get_array()) stack.push_back(&e);
        } else if (v->is_object()) {
            for (const auto& kv : v->get_object()) stack.push_back(&kv.value());
        }
    }
    return true;
}

auto protocol::detail::to_json_array(const std::vector<std::string>& v) -> json::array {
    json::array a;
    a.reserve(v.size());
    for (const auto& s : v) a.emplace_back(jsv(s));
    return a;
}

auto protocol::detail::optional_to_json(const std::optional<std::string>& s) -> json::value {
    return s ? json::value(jsv(*s)) : json::value(nullptr);
}

auto protocol::detail::to_json(const platform_info& p) -> json::object {
    json::object o;
    o.reserve(p.attributes.size() + 2);
    o[jsv(platform::key_type)] = jsv(p.type);
    for (const auto& kv : p.attributes) o[jsv(kv.first)] = jsv(kv.second);
    if (p.pid) o[jsv(platform::key_pid)] = *p.pid;
    return o;
}

auto protocol::detail::read(reader& r, const json::object& o, platform_info& p) -> bool {
    if (!r.required_string(platform::key_type, p.type)) return false;
    if (!r.optional_int(platform::key_pid, p.pid)) return false;
    p.attributes.clear();
    for (const auto& kv : o) {
        const std::string_view key(kv.key().data(), kv.key().size());
        if (key == platform::key_type || key == platform::key_pid) continue;
        if (kv.value().is_string())
            p.attributes.emplace_back(std::string(key),
                                      std::string(kv.value().get_string().data(), kv.value().get_string().size()));
    }
    return true;
}

auto protocol::detail::to_json(const sdk_info& s) -> json::object {
    json::object o;
    o["name"] = jsv(s.name);
    o["version"] = jsv(s.version);
    return o;
}

auto protocol::detail::read_platform_and_sdk(reader& r, platform_info& platform, sdk_info& sdk) -> bool {
    const json::object* p = nullptr;
    if (!r.optional_object("platform", p)) return false;
    if (p) {
        reader pr = r.nested(*p, "platform");
        if (!read(pr, *p, platform)) return false;
    }
    const json::object* s = nullptr;
    if (!r.optional_object("sdk", s)) return false;
    if (s) {
        reader sr = r.nested(*s, "sdk");
        if (!sr.optional_string("name", sdk.name) || !sr.optional_string("version", sdk.version)) return false;
    }
    return true;
}

auto protocol::detail::to_json(const bootstrap_request& m) -> json::object {
    json::object o;
    o["install_token"] = jsv(m.install_token);
    o["agent_id"] = jsv(m.agent_id);
    o["capabilities"] = to_json_array(m.capabilities);
    o["platform"] = to_json(m.platform);
    o["sdk"] = to_json(m.sdk);
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, bootstrap_request& m) -> bool {
    return r.required_string("install_token", m.install_token) && r.required_string("agent_id", m.agent_id) &&
           r.optional_string_array("capabilities", m.capabilities) && read_platform_and_sdk(r, m.platform, m.sdk);
}

auto protocol::detail::to_json(const recover_request& m) -> json::object {
    json::object o;
    o["workspace_id"] = jsv(m.workspace_id);
    o["agent_id"] = jsv(m.agent_id);
    o["capabilities"] = to_json_array(m.capabilities);
    o["platform"] = to_json(m.platform);
    o["sdk"] = to_json(m.sdk);
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, recover_request& m) -> bool {
    return r.required_string("workspace_id", m.workspace_id) && r.required_string("agent_id", m.agent_id) &&
           r.optional_string_array("capabilities", m.capabilities) && read_platform_and_sdk(r, m.platform, m.sdk);
}

auto protocol::detail::to_json(const bootstrap_response& m) -> json::object {
    json::object o;
    o["installation_id"] = jsv(m.installation_id);
    o["runtime_token"] = jsv(m.runtime_token);
    o["runtime_token_expires_at"] = format_rfc3339(m.runtime_token_expires_at);
    o["refresh_token"] = jsv(m.refresh_token);
    o["lease_expires_at"] = format_rfc3339(m.lease_expires_at);
    if (m.heartbeat_interval_seconds) o["heartbeat_interval_seconds"] = *m.heartbeat_interval_seconds;
    if (m.deployment_url) o["deployment_url"] = jsv(*m.deployment_url);
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, bootstrap_response& m) -> bool {
    return r.required_string("installation_id", m.installation_id) &&
           r.required_string("runtime_token", m.runtime_token) &&
           r.required_time("runtime_token_expires_at", m.runtime_token_expires_at) &&
           r.required_string("refresh_token", m.refresh_token) &&
           r.required_time("lease_expires_at", m.lease_expires_at) &&
           r.optional_int("heartbeat_interval_seconds", m.heartbeat_interval_seconds, 1) &&
           r.optional_string("deployment_url", m.deployment_url);
}

auto protocol::detail::to_json(const refresh_request& m) -> json::object {
    json::object o;
    o["refresh_token"] = jsv(m.refresh_token);
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, refresh_request& m) -> bool {
    return r.required_string("refresh_token", m.refresh_token);
}

auto protocol::detail::to_json(const refresh_response& m) -> json::object {
    json::object o;
    o["runtime_token"] = jsv(m.runtime_token);
    o["expires_at"] = format_rfc3339(m.expires_at);
    o["token_version"] = m.token_version;
    if (m.refresh_token) o["refresh_token"] = jsv(*m.refresh_token);
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, refresh_response& m) -> bool {
    if (!r.required_string("runtime_token", m.runtime_token) || !r.required_time("expires_at", m.expires_at) ||
        !r.optional_int("token_version", m.token_version) || !r.optional_string("refresh_token", m.refresh_token))
        return false;
    if (m.refresh_token && m.refresh_token->empty()) return r.fail(errc::invalid_value, "refresh_token");
    return true;
}

auto protocol::detail::to_json(const command& c) -> json::object {
    json::object o;
    o["id"] = jsv(c.id);
    o["type"] = c.type == command_type::unknown ? jsv(c.type_name) : json::string_view(to_string(c.type));
    o["reason"] = jsv(c.reason);
    if (c.shutdown_timeout_ms) o["shutdown_timeout_ms"] = *c.shutdown_timeout_ms;
    return o;
}

auto protocol::detail::clamp_shutdown_timeout(std::optional<std::int64_t>& ms) noexcept -> void {
    if (ms && *ms > timing::max_shutdown_timeout.count()) *ms = timing::max_shutdown_timeout.count();
}

auto protocol::detail::read(reader& r, const json::object&, command& c) -> bool {
    if (!r.required_string("id", c.id) || !r.required_string("type", c.type_name) ||
        !r.optional_string("reason", c.reason) || !r.optional_int("shutdown_timeout_ms", c.shutdown_timeout_ms))
        return false;
    clamp_shutdown_timeout(c.shutdown_timeout_ms);
    if (!from_string(c.type_name, c.type)) c.type = command_type::unknown;
    return true;
}

auto protocol::detail::to_json(const revocation& v) -> json::object {
    json::object o;
    o["lease_renewed"] = false;
    o["revoked"] = true;
    o["reason"] = jsv(v.reason);
    if (v.shutdown_timeout_ms) o["shutdown_timeout_ms"] = *v.shutdown_timeout_ms;
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, revocation& v) -> bool {
    if (!r.optional_string("reason", v.reason) || !r.optional_int("shutdown_timeout_ms", v.shutdown_timeout_ms))
        return false;
    clamp_shutdown_timeout(v.shutdown_timeout_ms);
    return true;
}

auto protocol::detail::read_revoked(reader& r, const json::object& o, std::optional<revocation>& out) -> bool {
    std::optional<bool> revoked;
    if (!r.optional_bool("revoked", revoked)) return false;
    out.reset();
    if (revoked && *revoked) {
        revocation v;
        if (!read(r, o, v)) return false;
        out = std::move(v);
    }
    return true;
}

auto protocol::detail::read_command_field(reader& r, std::optional<command>& out) -> bool {
    const json::object* c = nullptr;
    if (!r.optional_object("command", c)) return false;
    out.reset();
    if (c) {
        reader cr = r.nested(*c, "command");
        command cmd;
        if (!read(cr, *c, cmd)) return false;
        out = std::move(cmd);
    }
    return true;
}

auto protocol::detail::to_json(const task& t) -> json::object {
    json::object o;
    o["task_id"] = jsv(t.task_id);
    o["capability"] = jsv(t.capability);
    o["input"] = t.input;
    o["workspace_id"] = optional_to_json(t.workspace_id);
    o["trace_id"] = optional_to_json(t.trace_id);
    o["requester_agent_id"] = optional_to_json(t.requester_agent_id);
    o["parent_task_id"] = optional_to_json(t.parent_task_id);
    o["workflow_id"] = optional_to_json(t.workflow_id);
    o["deadline_at"] = t.deadline_at ? json::value(format_rfc3339(*t.deadline_at)) : json::value(nullptr);
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, task& t) -> bool {
    // Documented aliases: `id` for `task_id`, `target_capability` for `capability`.
    if (r.find("task_id")) {
        if (!r.required_string("task_id", t.task_id)) return false;
    } else if (!r.required_string(r.find("id") ? "id" : "task_id", t.task_id)) {
        return false;
    }
    if (r.find("capability")) {
        if (!r.required_string("capability", t.capability)) return false;
    } else if (!r.required_string(r.find("target_capability") ? "target_capability" : "capability", t.capability)) {
        return false;
    }
    return r.any_value("input", t.input) && r.optional_string("workspace_id", t.workspace_id) &&
           r.optional_string("trace_id", t.trace_id) && r.optional_string("requester_agent_id", t.requester_agent_id) &&
           r.optional_string("parent_task_id", t.parent_task_id) && r.optional_string("workflow_id", t.workflow_id) &&
           r.optional_time("deadline_at", t.deadline_at);
}

auto protocol::detail::to_json(const policy_event& e) -> json::object {
    json::object o;
    o["active_policy_hash"] = jsv(e.active_policy_hash);
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, policy_event& e) -> bool {
    return r.required_string("active_policy_hash", e.active_policy_hash, true);
}

auto protocol::detail::to_json(const completion_request& m) -> json::object {
    json::object o;
    o["installation_id"] = jsv(m.installation_id);
    o["status"] = to_string(m.status);
    o["output"] = m.output;
    if (m.error) {
        json::object e;
        e["code"] = to_string(m.error->code);
        e["message"] = jsv(m.error->message);
        o["error"] = std::move(e);
    } else {
        o["error"] = nullptr;
    }
    o["execution_time_ms"] = m.execution_time_ms;
    o["trace_id"] = optional_to_json(m.trace_id);
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, completion_request& m) -> bool {
    if (!r.required_string("installation_id", m.installation_id) || !r.required_enum("status", m.status) ||
        !r.any_value("output", m.output) || !r.optional_int("execution_time_ms", m.execution_time_ms) ||
        !r.optional_string("trace_id", m.trace_id))
        return false;
    const json::object* e = nullptr;
    if (!r.optional_object("error", e)) return false;
    m.error.reset();
    if (e) {
        reader er = r.nested(*e, "error");
        completion_error ce;
        if (!er.required_enum("code", ce.code) || !er.optional_string("message", ce.message)) return false;
        m.error = std::move(ce);
    }
    if (m.status != task_status::completed && !m.error) return r.fail(errc::missing_field, "error");
    return true;
}

auto protocol::detail::to_json(const completion_response& m) -> json::object {
    json::object o;
    o["accepted"] = m.accepted;
    return o;
}

auto protocol::detail::read(reader& r, const json::object& o, completion_response& m) -> bool {
    const json::value* v = r.find("accepted");
    if (!v) return r.fail(errc::missing_field, "accepted");
    if (!v->is_bool()) return r.fail(errc::wrong_type, "accepted");
    m.accepted = v->get_bool();
    (void)o;
    return true;
}

auto protocol::detail::to_json(const policy_document& m) -> json::object {
    json::object o;
    o["policy_id"] = jsv(m.policy_id);
    o["workspace_id"] = jsv(m.workspace_id);
    o["version"] = jsv(m.version);
    o["status"] = jsv(m.status);
    o["hash"] = jsv(m.hash);
    json::object content = m.content;
    auto sub = [](json::object& parent, const char* key) -> json::object& {
        json::value& v = parent[key];
        if (!v.is_object()) v = json::object();
        return v.get_object();
    };
    if (!m.allowed_tools.empty() || !m.denied_tools.empty()) {
        json::object& caps = sub(sub(content, "agent"), "capabilities");
        caps["allowed_tools"] = to_json_array(m.allowed_tools);
        caps["denied_tools"] = to_json_array(m.denied_tools);
    }
    if (m.rate_limits.max_per_minute || m.rate_limits.max_per_hour) {
        json::object& requests = sub(sub(content, "rate_limits"), "requests");
        if (m.rate_limits.max_per_minute) requests["max_per_minute"] = *m.rate_limits.max_per_minute;
        if (m.rate_limits.max_per_hour) requests["max_per_hour"] = *m.rate_limits.max_per_hour;
    }
    o["content"] = std::move(content);
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, policy_document& m) -> bool {
    if (!r.optional_string("policy_id", m.policy_id) || !r.optional_string("workspace_id", m.workspace_id) ||
        !r.optional_string("status", m.status) || !r.required_string("hash", m.hash, true))
        return false;
    if (const json::value* v = r.find("version"); v && v->is_int64()) {
        m.version = std::to_string(v->get_int64());
    } else if (!r.optional_string("version", m.version)) {
        return false;
    }
    const json::object* content = nullptr;
    if (!r.required_object("content", content)) return false;
    m.content = json::object(*content, json::storage_ptr());
    reader cr = r.nested(*content, "content");
    const json::object* agent = nullptr;
    if (!cr.optional_object("agent", agent)) return false;
    if (agent) {
        reader ar = cr.nested(*agent, "agent");
        const json::object* caps = nullptr;
        if (!ar.optional_object("capabilities", caps)) return false;
        if (caps) {
            reader capr = ar.nested(*caps, "capabilities");
            if (!capr.optional_string_array("allowed_tools", m.allowed_tools) ||
                !capr.optional_string_array("denied_tools", m.denied_tools))
                return false;
        }
    }
    const json::object* limits = nullptr;
    if (!cr.optional_object("rate_limits", limits)) return false;
    if (limits) {
        reader lr = cr.nested(*limits, "rate_limits");
        const json::object* requests = nullptr;
        if (!lr.optional_object("requests", requests)) return false;
        if (requests) {
            reader rr = lr.nested(*requests, "requests");
            if (!rr.optional_int("max_per_minute", m.rate_limits.max_per_minute) ||
                !rr.optional_int("max_per_hour", m.rate_limits.max_per_hour))
                return false;
        }
    }
    // Last, so that a rule field of the content is named when it is the one out of range.
    if (!all_numbers_finite(*r.find("content"))) return r.fail(errc::invalid_value, "content");
    return true;
}

auto protocol::detail::to_json(const error_body& m) -> json::object {
    json::object e;
    e["code"] = jsv(m.code);
    e["message"] = jsv(m.message);
    json::object o;
    o["error"] = std::move(e);
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, error_body& m) -> bool {
    const json::object* e = nullptr;
    if (!r.required_object("error", e)) return false;
    reader er = r.nested(*e, "error");
    return er.required_string("code", m.code) && er.optional_string("message", m.message);
}

auto protocol::detail::to_json(const revoke_request& m) -> json::object {
    json::object o;
    o["reason"] = jsv(m.reason);
    if (m.shutdown_timeout_ms) o["shutdown_timeout_ms"] = *m.shutdown_timeout_ms;
    return o;
}

auto protocol::detail::read(reader& r, const json::object&, revoke_request& m) -> bool {
    if (!r.optional_string("reason", m.reason) || !r.optional_int("shutdown_timeout_ms", m.shutdown_timeout_ms))
        return false;
    clamp_shutdown_timeout(m.shutdown_timeout_ms);
    return true;
}

auto protocol::error_code_of(std::string_view body) -> std::string {
    if (body.empty() || body.size() > (64u << 10)) return {};
    error_body eb;
    decode_error err;
    if (!decode(body, eb, err)) return {};
    return eb.code;
}

auto protocol::task_id_of(std::string_view data) -> std::string {
    namespace json = boost::json;
    if (data.empty() || data.size() > (1u << 20)) return {};
    boost::system::error_code ec;
    const json::value v = json::parse(json::string_view(data.data(), data.size()), ec);
    if (ec || !v.is_object()) return {};
    for (const char* key : {"task_id", "id"}) {
        const auto it = v.get_object().find(key);
        if (it != v.get_object().end() && it->value().is_string() && !it->value().get_string().empty() &&
            it->value().get_string().size() <= 256)
            return std::string(it->value().get_string());
    }
    return {};
}

auto protocol::error_message_of(std::string_view body) -> std::string {
    if (body.empty() || body.size() > (64u << 10)) return {};
    error_body eb;
    decode_error err;
    if (!decode(body, eb, err)) return {};
    std::string out;
    for (char c : eb.message) {
        if (out.size() >= 200) {
            // Cut at a character boundary: drop a last character whose bytes did not all fit.
            std::size_t lead = out.size();
            while (lead > 0 && (static_cast<unsigned char>(out[lead - 1]) & 0xC0) == 0x80) --lead;
            if (lead > 0) {
                const auto b = static_cast<unsigned char>(out[lead - 1]);
                const std::size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
                if (out.size() - (lead - 1) < need) out.resize(lead - 1);
            }
            break;
        }
        out.push_back(static_cast<unsigned char>(c) < 0x20 ? ' ' : c);
    }
    return out;
}

} // namespace sekuire

#endif
