// SPDX-License-Identifier: MIT
// A worker on fake policies, with helpers that script the task stream.
#ifndef SEKUIRE_TESTS_WORKER_FIXTURE_HPP
#define SEKUIRE_TESTS_WORKER_FIXTURE_HPP

#include <sekuire/basic_worker.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fake_transport.hpp>
#include <sekuire/testing/manual_executor.hpp>

#include <boost/json.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace worker_test {

namespace st = sekuire::testing;
namespace proto = sekuire::protocol;
using namespace std::chrono_literals;
using sekuire::http_method;

inline const std::string installation = "inst_worker_1";
inline const std::string runtime_1 = "srt_worker_one_0123456789abcdefghijk";
inline const std::string runtime_2 = "srt_worker_two_0123456789abcdefghijk";
inline const std::string refresh_1 = "rft_worker_one_0123456789abcdefghijk";
inline const std::string stream_path = proto::path::task_stream(installation, {});
inline const std::string worker_heartbeat_path = proto::path::worker_heartbeat(installation);
inline const std::string policy_path = proto::path::active_policy("ws_test");
inline const std::string refresh_path = proto::path::refresh(installation);

/// One SSE event.
inline std::string sse(const std::string& type, const std::string& data, const std::string& id = {}) {
    std::string out;
    if (!id.empty()) out += "id: " + id + "\n";
    out += "event: " + type + "\n";
    out += "data: " + data + "\n\n";
    return out;
}

inline proto::task make_task(const std::string& id, const std::string& capability, boost::json::value input = {}) {
    proto::task t;
    t.task_id = id;
    t.capability = capability;
    t.input = input.is_null() ? boost::json::value(boost::json::object{{"text", "hello"}}) : input;
    t.workspace_id = "ws_test";
    t.trace_id = "trace-" + id;
    return t;
}

inline std::string task_event(const proto::task& t, const std::string& id = {}) {
    return sse("task", proto::encode(t), id);
}

inline proto::policy_document policy(const std::string& hash) {
    proto::policy_document p;
    p.policy_id = "policy_1";
    p.workspace_id = "ws_test";
    p.version = "1";
    p.status = "active";
    p.hash = hash;
    p.content = boost::json::object{};
    return p;
}

template <class Executor>
struct basic_fixture {
    using worker_type = sekuire::basic_worker<st::fake_transport, st::fake_clock, sekuire::memory_store, Executor>;

    st::fake_clock clock;
    st::fake_transport transport;
    sekuire::memory_store store;
    Executor executor;
    std::mutex log_mutex;
    std::vector<std::string> logs;
    std::vector<proto::command> commands;
    std::vector<sekuire::revocation_info> revocations;
    std::unique_ptr<worker_type> worker;

    basic_fixture() {
        transport.on(http_method::get, policy_path).respond(200, proto::encode(policy("h0")));
        transport.on(http_method::post, worker_heartbeat_path).respond(200, R"({"active_policy_hash":"h0","command":null})");
        transport.on_prefix(http_method::post, std::string(proto::path::tasks_prefix)).respond(200, R"({"accepted":true})");
    }
    basic_fixture(const basic_fixture&) = delete;
    basic_fixture& operator=(const basic_fixture&) = delete;
    ~basic_fixture() {
        transport.clear_scripts();
        worker.reset();
    }

    sekuire::worker_options options() {
        sekuire::worker_options o;
        o.startup_jitter = 0ms; // the tests time the start
        o.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; }; // hermetic
        o.installation_id = installation;
        o.runtime_token = runtime_1;
        o.refresh_token = refresh_1;
        o.workspace_id = "ws_test";
        o.agent_id = "agent-0123";
        o.random = [] { return 0.0; };
        o.heartbeat_interval = 10s;
        o.logger = [this](sekuire::log_level, std::string_view m) {
            std::lock_guard<std::mutex> lock(log_mutex);
            logs.emplace_back(m);
        };
        o.on_command = [this](const proto::command& c) { commands.push_back(c); };
        o.on_revoked = [this](const sekuire::revocation_info& r) { revocations.push_back(r); };
        return o;
    }

    worker_type& make(sekuire::worker_options o) {
        worker = std::make_unique<worker_type>(std::move(o), transport, clock, store, executor);
        return *worker;
    }
    worker_type& make() { return make(options()); }

    /// Scripts one stream connection delivering `chunks`, then ending.
    void stream(std::vector<std::string> chunks) {
        st::fake_transport::stream_script s;
        s.chunks = std::move(chunks);
        transport.on_stream(stream_path, s);
    }

    /// Runs one stream connection now; returns when the next one is due.
    sekuire::steady_time_point connect() { return worker->stream_step(); }

    /// Runs the control step function in fake time for `d`.
    std::size_t run_for(std::chrono::milliseconds d) {
        return st::run_for(clock, d, [this] { return worker->step(); });
    }

    struct completion {
        std::string task_id;
        proto::completion_request body;
    };
    std::vector<completion> completions() const {
        std::vector<completion> out;
        for (const auto& r : transport.requests()) {
            const std::string p = r.path();
            if (r.request.method != http_method::post || p.rfind(std::string(proto::path::tasks_prefix), 0) != 0) continue;
            completion c;
            const auto start = proto::path::tasks_prefix.size();
            c.task_id = p.substr(start, p.size() - start - std::string("/complete").size());
            proto::decode_error err;
            if (proto::decode(r.request.body, c.body, err)) out.push_back(std::move(c));
        }
        return out;
    }

    std::vector<proto::worker_heartbeat_request> worker_heartbeats() const {
        std::vector<proto::worker_heartbeat_request> out;
        for (const auto& r : transport.requests(http_method::post, worker_heartbeat_path)) {
            proto::worker_heartbeat_request h;
            proto::decode_error err;
            if (proto::decode(r.request.body, h, err)) out.push_back(h);
        }
        return out;
    }

    std::vector<st::fake_transport::recorded> stream_requests() const {
        std::vector<st::fake_transport::recorded> out;
        for (const auto& r : transport.requests())
            if (r.streamed) out.push_back(r);
        return out;
    }

    static std::string header(const st::fake_transport::recorded& r, const char* name) {
        const std::string* v = sekuire::find_header(r.request.headers, name);
        return v ? *v : std::string();
    }
};

using fixture = basic_fixture<sekuire::inline_executor>;
using manual_fixture = basic_fixture<st::manual_executor>;

} // namespace worker_test

#endif
