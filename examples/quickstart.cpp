// SPDX-License-Identifier: MIT
// The seed's quick start: SekuireSDK.fromEnv(), start, print the connection and the status,
// then a task worker with a `summarize` capability (the first 140 characters of `text`).
// Runs until SIGINT, SIGTERM, a terminate command or a revocation, then shuts down
// gracefully (the worker drains, the beacon sends its final heartbeat) and exits 0.
//
// Configured only by the environment: SEKUIRE_API_URL, SEKUIRE_AGENT_ID,
// SEKUIRE_INSTALL_TOKEN (or SEKUIRE_INSTALLATION_ID + SEKUIRE_REFRESH_TOKEN), ...
#include <sekuire/sdk.hpp>

#include "example_support.hpp"

#include <atomic>
#include <iostream>

int main() {
    std::atomic<sekuire::sdk*> running{nullptr};
    std::atomic<bool> signalled{false};
    examples::stop_on_signals signals([&](int) {
        signalled = true;
        if (auto* s = running.load()) s->request_shutdown();
    });

    auto sdk = sekuire::sdk::from_env();
    sdk.start();
    running = &sdk;
    if (signalled) sdk.request_shutdown(); // a signal that came before `running` was set
    std::cout << "Connected: " << (sdk.is_connected() ? "true" : "false") << std::endl;
    std::cout << "Beacon status: " << sekuire::to_string(sdk.get_beacon_status()) << std::endl;

    sekuire::worker_options options;
    options.capabilities = {"summarize"};
    options.heartbeat_interval = std::chrono::seconds(10);
    auto& worker = sdk.create_task_worker(options);
    worker.on_task("summarize", [](const sekuire::task_context&, const boost::json::value& input) {
        return examples::summarize(input);
    });
    worker.start();

    sdk.wait(); // until a signal, a terminate command or a revocation; then shut down
    signals.stop();
    std::cout << "Shut down: " << sekuire::to_string(sdk.get_beacon_status()) << std::endl;
    return 0;
}
