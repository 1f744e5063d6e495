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

#include <algorithm>
#include <iostream>
#include <string>
#include <string_view>

namespace st = sekuire::testing;
namespace proto = sekuire::protocol;
using namespace std::chrono_literals;

namespace {

// The seed's `summarize` handler: the first 140 characters (UTF-8 code points) of `text`.
boost::json::value summarize(const boost::json::value& input) {
    std::string_view text;
    if (const auto* o = input.if_object())
        if (const auto* t = o->if_contains("text"))
            if (const auto* s = t->if_string()) text = *s;
    std::size_t i = 0;
    for (std::size_t count = 0; i < text.size() && count < 140; ++count) {
        const auto c = static_cast<unsigned char>(text[i]);
        i += c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    }
    return boost::json::value{{"summary", std::string(text.substr(0, std::min(i, text.size())))}};
}

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
        return summarize(input);
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

int main(int argc, char** argv) {
    if (argc > 1) {
        const std::string_view arg = argv[1];
        if (arg == "--help" || arg == "-h") {
            std::cout << "usage: fake_clock_test\n\n"
                         "Tests an agent with sekuire's testing kit: a fake clock and a fake transport,\n"
                         "no network, no sleeping. Needs no configuration.\n"
                         "Exit status: 0 when every check passed, 1 otherwise.\n";
            return 0;
        }
        std::cerr << "fake_clock_test: unknown argument '" << arg << "'; try 'fake_clock_test --help'\n";
        return 2;
    }
    try {
        my_handler_reports_a_summary();
        my_agent_heartbeats_once_a_minute();
    } catch (const std::exception& e) {
        std::cout << "FAIL: " << e.what() << std::endl;
        return 1;
    }
    std::cout << (failures ? "some checks failed" : "all checks passed") << std::endl;
    return failures ? 1 : 0;
}
