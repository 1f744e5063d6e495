// SPDX-License-Identifier: MIT
// The seed's "Manual Worker Creation": createWorker with an install token, or with
// runtime / recovery credentials, a `summarize` handler that logs its context, and the
// control commands. Runs until SIGINT, SIGTERM, a terminate command or a revocation.
#include <sekuire/worker.hpp>

#include "example_support.hpp"

#include <atomic>
#include <cstdlib>
#include <iostream>

using examples::env;

int main() {
    std::atomic<sekuire::worker*> running{nullptr};
    std::atomic<bool> signalled{false};
    examples::stop_on_signals signals([&](int) {
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
        return examples::summarize(input);
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
