// SPDX-License-Identifier: MIT
// The demo: the mock backend starts in-process on 127.0.0.1 and an agent (the SDK: a beacon
// and a task worker) lives a short, complete life on it, told as a timeline: bootstrap,
// heartbeats, tasks, pause and resume, a token refresh, the kill switch and the graceful
// shutdown. It ends by itself in well under 30 seconds, with exit code 0.
#include <sekuire/config_error.hpp>
#include <sekuire/sdk.hpp>
#include <sekuire/testing/mock_backend.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace {

// The `text` string of a task input, or "".
std::string text_of(const boost::json::value& input) {
    if (const auto* o = input.if_object())
        if (const auto* t = o->if_contains("text"))
            if (const auto* s = t->if_string()) return std::string(*s);
    return {};
}

// The seed's `summarize` handler: the first 140 characters (UTF-8 code points) of `text`.
boost::json::value summarize(const boost::json::value& input) {
    const std::string text = text_of(input);
    std::size_t i = 0;
    for (std::size_t count = 0; i < text.size() && count < 140; ++count) {
        const auto c = static_cast<unsigned char>(text[i]);
        i += c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    }
    return boost::json::value{{"summary", text.substr(0, std::min(i, text.size()))}};
}

using namespace std::chrono_literals;
namespace testing = sekuire::testing;

const auto started = std::chrono::steady_clock::now();
std::mutex out_mutex;

void say(const std::string& who, const std::string& what) {
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "[%6.2fs] ", t);
    std::lock_guard<std::mutex> lock(out_mutex);
    std::cout << stamp << who << ": " << what << std::endl;
}

// Waits (real time, bounded) until `done()`; false on timeout.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= end) return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

int fail(const std::string& why) {
    say("demo", "FAILED: " + why);
    return 1;
}

int run(std::chrono::seconds linger) {
    // -- the backend --------------------------------------------------------------------
    testing::mock_backend_options backend_options;
    backend_options.lease = 5s;
    backend_options.token_lifetime = 12s;       // short, so that a refresh happens during the demo
    backend_options.refresh_window = 8s;        // the "7-day rule", scaled down
    backend_options.keepalive = 2000ms;
    testing::mock_backend backend(backend_options);
    backend.start();
    say("backend", "listening on " + backend.url() + " (workspace " + backend_options.workspace_id + ")");
    // The mock's well-known default key, as sekuire-mock prints it: it exists for local use.
    say("backend", "dashboard: " + backend.url() + std::string(testing::mock_dashboard_path) + " (API key " +
                       std::string(testing::mock_default_api_key) + ")");

    // -- the agent ------------------------------------------------------------------------
    std::atomic<int> refreshes{0};
    sekuire::sdk_options options;
    options.api_base_url = backend.url();
    options.agent_id = "demo-agent";
    options.install_token = std::string(testing::mock_default_install_token);
    options.workspace_id = backend_options.workspace_id;
    options.capabilities = {"summarize"};
    options.heartbeat_interval = 1s;
    options.logger = [&](sekuire::log_level level, std::string_view line) {
        if (level == sekuire::log_level::debug) return;
        if (line.find("runtime token replaced") != std::string_view::npos ||
            line.find("runtime token refreshed") != std::string_view::npos) {
            if (refreshes++ > 0) return; // the first is enough for the timeline
        }
        say("agent", std::string(line));
    };
    options.on_status_change = [](const sekuire::beacon_status& s) {
        say("agent", std::string("beacon is ") + sekuire::to_string(s.state) + (s.paused ? " (paused)" : ""));
    };
    sekuire::sdk sdk(options);
    sdk.start();
    if (!sdk.is_connected()) return fail("the agent did not connect: " + sdk.get_beacon_status().last_error);
    const std::string installation = sdk.get_beacon_status().installation_id;
    say("agent", "connected: " + sekuire::to_string(sdk.get_beacon_status()));

    sekuire::worker_options worker_options;
    worker_options.heartbeat_interval = 1s;
    auto& worker = sdk.create_task_worker(worker_options);
    worker.on_task("summarize", [](const sekuire::task_context& ctx, const boost::json::value& input) {
        if (text_of(input).rfind("slow", 0) == 0) {
            // Takes a while, but honours its stop token.
            for (int i = 0; i < 100 && !ctx.stop.stop_requested(); ++i) std::this_thread::sleep_for(10ms);
        }
        return summarize(input);
    });
    worker.start();
    if (!backend.wait_for_open_streams(1, 10s)) return fail("the task stream did not open");
    say("agent", "task stream open");

    // -- heartbeats -----------------------------------------------------------------------
    if (!wait_until([&] { return sdk.get_beacon_status().heartbeats_sent >= 3; }, 10s))
        return fail("no heartbeats");
    auto seen = backend.installation(installation);
    say("backend", "installation " + installation + " is " + testing::to_string(seen->state) + ", " +
                       std::to_string(sdk.get_beacon_status().heartbeats_sent) + " heartbeats so far");

    // -- tasks ----------------------------------------------------------------------------
    auto run_task = [&](const std::string& text, testing::mock_task_status expected) -> bool {
        testing::mock_task_request r;
        r.capability = "summarize";
        r.input = boost::json::object{{"text", text}};
        const std::string id = backend.enqueue_task(r);
        if (!backend.wait_for_task(id, expected, 10s)) return false;
        const auto t = backend.task(id);
        std::string detail = t->output.is_null() ? std::string() : " " + boost::json::serialize(t->output);
        if (t->error) detail += " (" + t->error->code + ": " + t->error->message + ")";
        say("backend", "task " + id + " " + testing::to_string(t->status) + detail);
        return true;
    };
    if (!run_task("Sekuire gives companies visibility and control over their AI agents.",
                  testing::mock_task_status::completed) ||
        !run_task("Every deployed agent bootstraps an installation with a one-time install token.",
                  testing::mock_task_status::completed))
        return fail("tasks were not completed");

    // -- pause and resume -----------------------------------------------------------------
    backend.send_command(installation, "pause", "maintenance window");
    say("backend", "sent a pause command");
    if (!wait_until([&] { return worker.is_paused(); }, 10s)) return fail("the worker did not pause");
    say("agent", "worker paused");
    if (!run_task("This one arrives while the agent is paused.", testing::mock_task_status::rejected))
        return fail("a task was not rejected while paused");
    if (!wait_until([&] { return backend.installation(installation)->last_status == sekuire::protocol::heartbeat_status::paused; }, 10s))
        return fail("the heartbeats did not say paused");
    say("backend", "heartbeats now report: paused");
    backend.send_command(installation, "resume", "maintenance over");
    say("backend", "sent a resume command");
    if (!wait_until([&] { return !worker.is_paused(); }, 10s)) return fail("the worker did not resume");
    if (!run_task("Back to work after the pause.", testing::mock_task_status::completed))
        return fail("a task failed after resume");

    // -- a token refresh ------------------------------------------------------------------
    const std::string first_token = sdk.get_beacon_status().runtime_token;
    if (!wait_until([&] { return sdk.get_beacon_status().runtime_token != first_token; }, 15s))
        return fail("the runtime token was never refreshed");
    say("agent", "runtime token is now " + sdk.get_beacon_status().runtime_token + " (was " + first_token + ")");

    // -- the kill switch, and the graceful shutdown ----------------------------------------
    testing::mock_task_request slow;
    slow.capability = "summarize";
    slow.input = boost::json::object{{"text", "slow: a task still running when the kill switch is hit"}};
    const std::string slow_id = backend.enqueue_task(slow);
    wait_until([&] { return worker.get_status().in_flight > 0; }, 5s);
    const auto heartbeats_before = backend.request_count(sekuire::protocol::path::heartbeat(installation));
    backend.revoke(installation, "demo: emergency shutdown", 3000);
    say("backend", "revoked the installation (shutdown timeout 3 s)");
    if (!sdk.wait_for(15s)) return fail("the agent did not shut down");
    if (!backend.wait_for_task(slow_id, testing::mock_task_status::completed, 5s))
        return fail("the in-flight task's result was lost");
    say("backend", "the in-flight task " + slow_id + " was completed during the shutdown");
    say("agent", "worker " + sekuire::to_string(worker.get_status()));
    say("agent", "beacon " + sekuire::to_string(sdk.get_beacon_status()));
    std::this_thread::sleep_for(1500ms); // over a heartbeat interval: no heartbeat may follow
    const auto heartbeats_after = backend.request_count(sekuire::protocol::path::heartbeat(installation));
    if (heartbeats_after > heartbeats_before + 1) return fail("heartbeats went on after the kill switch");
    say("backend", "installation " + installation + " is " + testing::to_string(backend.installation(installation)->state) +
                       "; no heartbeat after the kill switch");

    const auto s = sdk.get_beacon_status();
    say("demo", "done: " + std::to_string(s.heartbeats_sent) + " heartbeats, " +
                    std::to_string(worker.get_status().completed) + " tasks completed, " +
                    std::to_string(refreshes.load()) + " token refreshes");
    if (linger > 0s) {
        say("demo", "the backend stays up " + std::to_string(linger.count()) + " s more: " + backend.url() +
                        std::string(testing::mock_dashboard_path));
        std::this_thread::sleep_for(linger);
    }
    backend.stop();
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    auto linger = std::chrono::seconds(0);
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::cout << "usage: demo [--linger[=SECONDS]]\n\n"
                         "Starts the mock backend in-process on 127.0.0.1 and tells the short life of an\n"
                         "agent on it: bootstrap, heartbeats, tasks, pause and resume, a token refresh, the\n"
                         "kill switch and the graceful shutdown. Needs no configuration. It prints the\n"
                         "address of the backend's dashboard.\n\n"
                         "  --linger[=SECONDS]  keep the backend up this long after the story (default 30),\n"
                         "                      to look at the dashboard\n\n"
                         "Exit status: 0 when the story went as told, 1 otherwise.\n";
            return 0;
        }
        if (arg == "--linger" || arg.rfind("--linger=", 0) == 0) {
            const std::string value = arg == "--linger" ? "30" : std::string(arg.substr(9));
            const bool digits = !value.empty() && value.size() <= 5 &&
                                value.find_first_not_of("0123456789") == std::string::npos;
            if (!digits || std::stoi(value) > 3600) {
                std::cerr << "demo: --linger: '" << value << "' is not a number of seconds within 0..3600; try 'demo --help'\n";
                return 2;
            }
            linger = std::chrono::seconds(std::stoi(value));
            continue;
        }
        std::cerr << "demo: unknown argument '" << arg << "'; try 'demo --help'\n";
        return 2;
    }
    try {
        return run(linger);
    } catch (const std::exception& e) {
        return sekuire::report_error("demo", e); // one line; 2 for a configuration error
    }
}
