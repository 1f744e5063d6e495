// SPDX-License-Identifier: MIT
// The seed's "Manual Worker Creation": createWorker with an install token, or with
// runtime / recovery credentials, a `summarize` handler that logs its context, and the
// control commands. Runs until SIGINT, SIGTERM, a terminate command or a revocation. A
// configuration error ends it with one line and exit code 2.
#include <sekuire/config_error.hpp>
#include <sekuire/signals.hpp>
#include <sekuire/worker.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

namespace {

// An environment variable, or "" when unset.
std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

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

int run() {
    std::atomic<sekuire::worker*> running{nullptr};
    std::atomic<bool> signalled{false};
    // First, before any thread starts: SIGINT and SIGTERM then start a graceful shutdown.
    sekuire::signal_watcher signals([&](int) {
        signalled = true;
        if (auto* w = running.load()) w->begin_shutdown(std::chrono::seconds(10), "signal");
    });

    sekuire::worker_options options;
    options.api_base_url = env("SEKUIRE_API_URL").empty() ? "https://api.sekuire.ai" : env("SEKUIRE_API_URL");
    options.agent_id = env("SEKUIRE_AGENT_ID");
    options.install_token = env("SEKUIRE_INSTALL_TOKEN");
    // Or use runtime / recovery credentials directly:
    options.runtime_token = env("SEKUIRE_RUNTIME_TOKEN");
    options.installation_id = env("SEKUIRE_INSTALLATION_ID");
    options.refresh_token = env("SEKUIRE_REFRESH_TOKEN");
    options.workspace_id = env("SEKUIRE_WORKSPACE_ID");
    options.capabilities = {"summarize"};

    auto worker = sekuire::create_worker(options);
    worker->on_task("summarize", [](const sekuire::task_context& ctx, const boost::json::value& input) {
        std::cout << ctx.task_id << " " << ctx.workspace_id.value_or("-") << " " << ctx.trace_id.value_or("-")
                  << std::endl;
        return summarize(input);
    });
    worker->on_command([&](const sekuire::protocol::command& cmd) {
        std::cout << sekuire::protocol::to_string(cmd.type) << " " << cmd.reason << std::endl;
        if (worker->is_paused()) std::cout << "Worker is paused" << std::endl;
    });
    worker->start();
    running = worker.get();
    if (signalled) worker->begin_shutdown(std::chrono::seconds(10), "signal");
    worker->wait(); // until a terminate command, a revocation, or a signal's shutdown
    signals.stop();
    std::cout << "stopped: " << sekuire::to_string(worker->get_status()) << std::endl;
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    if (argc > 1) {
        const std::string_view arg = argv[1];
        if (arg == "--help" || arg == "-h") {
            std::cout << "usage: manual_worker\n\n"
                         "The seed's \"Manual Worker Creation\": a task worker (capability summarize) that\n"
                         "logs each task's context and the control commands. Environment: SEKUIRE_API_URL,\n"
                         "SEKUIRE_AGENT_ID, SEKUIRE_INSTALL_TOKEN, or SEKUIRE_RUNTIME_TOKEN /\n"
                         "SEKUIRE_INSTALLATION_ID + SEKUIRE_REFRESH_TOKEN, SEKUIRE_WORKSPACE_ID.\n"
                         "Runs until SIGINT, SIGTERM, a terminate command or a revocation.\n"
                         "Exit status: 0; 2 for a configuration error; 1 for another error.\n";
            return 0;
        }
        std::cerr << "manual_worker: unknown argument '" << arg << "'; try 'manual_worker --help'\n";
        return 2;
    }
    try {
        return run();
    } catch (const std::exception& e) {
        return sekuire::report_error("manual_worker", e); // one line; 2 for a configuration error
    }
}
