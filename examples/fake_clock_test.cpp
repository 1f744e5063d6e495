// SPDX-License-Identifier: MIT
// How to test your own agent with sekuire's testing kit: no network, no sleeping, no
// threads. The beacon and the worker run on a fake clock and a fake transport that plays
// the backend; the test moves time and checks exactly what was sent.
//
// (Plain checks here to stay framework-neutral; the same works in Boost.Test, GoogleTest or
// Catch2.)
#include <sekuire/basic_beacon.hpp>
#include <sekuire/basic_worker.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fake_transport.hpp>
#include <sekuire/testing/fixed_probe.hpp>

#include "example_support.hpp"

#include <iostream>

namespace st = sekuire::testing;
namespace proto = sekuire::protocol;
using namespace std::chrono_literals;

namespace {

int failures = 0;
void check(bool ok, const char* what) {
    std::cout << (ok ? "ok:   " : "FAIL: ") << what << std::endl;
    if (!ok) ++failures;
}

const std::string installation = "inst_my_agent";
const std::string token = "srt_test_token_0123456789abcdefghijk";

// The agent under test: your handlers, registered the way your program does it.
template <class Worker>
void register_my_handlers(Worker& worker) {
    worker.on_task("summarize", [](const sekuire::task_context&, const boost::json::value& input) {
        return examples::summarize(input);
    });
}

void my_handler_reports_a_summary() {
    st::fake_clock clock;
    st::fake_transport backend;
    // The backend's answers (only what this test needs).
    backend.on_prefix(sekuire::http_method::post, std::string(proto::path::tasks_prefix)).respond(200, R"({"accepted":true})");
    proto::task task;
    task.task_id = "task_1";
    task.capability = "summarize";
    task.input = boost::json::object{{"text", std::string(200, 'a')}};
    st::fake_transport::stream_script stream;
    stream.chunks = {"id: 1\nevent: task\ndata: " + proto::encode(task) + "\n\n"};
    backend.on_stream(proto::path::task_stream(installation, {}), stream);

    sekuire::worker_options o;
    o.startup_jitter = std::chrono::milliseconds(0); // a test: no random start
    o.installation_id = installation;
    o.runtime_token = token;
    o.fetch_policy = false;
    sekuire::basic_worker<st::fake_transport, st::fake_clock, sekuire::memory_store, sekuire::inline_executor> worker(
        o, backend, clock);
    register_my_handlers(worker);
    worker.stream_step(); // one connection: the task arrives, runs inline, is reported

    const auto sent = backend.requests(sekuire::http_method::post, proto::path::complete("task_1"));
    check(sent.size() == 1, "the task's result was reported once");
    proto::completion_request result;
    proto::decode_error err;
    check(!sent.empty() && proto::decode(sent[0].request.body, result, err), "the result is valid JSON");
    check(result.status == proto::task_status::completed, "the task completed");
    check(result.output.at("summary").as_string().size() == 140, "the summary has 140 characters");
}

void my_agent_heartbeats_once_a_minute() {
    st::fake_clock clock;
    st::fake_transport backend;
    backend.on(sekuire::http_method::post, proto::path::heartbeat(installation)).handle([&](const sekuire::http_request&) {
        proto::heartbeat_response r;
        r.lease_renewed = true;
        r.lease_expires_at = clock.wall_now() + 3min;
        return st::fake_transport::reply{200, proto::encode(r), {}, {}};
    });
    sekuire::beacon_options o;
    o.startup_jitter = std::chrono::milliseconds(0); // a test: no random start
    o.installation_id = installation;
    o.runtime_token = token;
    o.refresh_token = "rt_test_0123456789abcdefghij";
    o.random = [] { return 0.0; }; // no jitter: exact times
    sekuire::basic_beacon<st::fake_transport, st::fake_clock, sekuire::memory_store, st::fixed_probe> beacon(
        o, backend, clock);
    beacon.step(); // the registration heartbeat
    st::run_for(clock, 10min, [&] { return beacon.step(); });
    check(backend.count(sekuire::http_method::post, proto::path::heartbeat(installation)) == 11,
          "one registration heartbeat and one per minute for ten minutes");
    check(beacon.is_connected(), "the beacon is connected");
}

} // namespace

int main() {
    my_handler_reports_a_summary();
    my_agent_heartbeats_once_a_minute();
    std::cout << (failures ? "some checks failed" : "all checks passed") << std::endl;
    return failures ? 1 : 0;
}
