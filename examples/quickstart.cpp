// SPDX-License-Identifier: MIT
// The seed's quick start: SekuireSDK.fromEnv(), start, print the connection and the status,
// then a task worker with a `summarize` capability (the first 140 characters of `text`).
// Runs until SIGINT, SIGTERM, a terminate command or a revocation, then shuts down
// gracefully (the worker drains, the beacon sends its final heartbeat) and exits 0.
//
// Configured only by the environment: SEKUIRE_API_URL, SEKUIRE_AGENT_ID,
// SEKUIRE_INSTALL_TOKEN (or SEKUIRE_INSTALLATION_ID + SEKUIRE_REFRESH_TOKEN), ...
// A configuration error ends it with one line and exit code 2.
#include <sekuire/config_error.hpp>
#include <sekuire/sdk.hpp>
#include <sekuire/signals.hpp>

#include <atomic>
#include <iostream>
#include <string>
#include <string_view>

namespace {

// The first `n` characters (UTF-8 code points) of `s`.
std::string first_chars(std::string_view s, std::size_t n) {
    std::size_t i = 0;
    for (std::size_t count = 0; i < s.size() && count < n; ++count) {
        const auto c = static_cast<unsigned char>(s[i]);
        i += c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    }
    return std::string(s.substr(0, std::min(i, s.size())));
}

// The seed's `summarize` handler: the first 140 characters of `text`.
boost::json::value summarize(const boost::json::value& input) {
    std::string_view text;
    if (const auto* o = input.if_object())
        if (const auto* t = o->if_contains("text"))
            if (const auto* s = t->if_string()) text = *s;
    return boost::json::value{{"summary", first_chars(text, 140)}};
}

int run() {
    std::atomic<sekuire::sdk*> running{nullptr};
    std::atomic<bool> signalled{false};
    // First, before any thread starts: SIGINT and SIGTERM then ask for a graceful shutdown.
    sekuire::signal_watcher signals([&](int) {
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
        return summarize(input);
    });
    worker.start();

    sdk.wait(); // until a signal, a terminate command or a revocation; then shut down
    signals.stop();
    std::cout << "Shut down: " << sekuire::to_string(sdk.get_beacon_status()) << std::endl;
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    if (argc > 1) {
        const std::string_view arg = argv[1];
        if (arg == "--help" || arg == "-h") {
            std::cout << "usage: quickstart\n\n"
                         "The seed's quick start: an SDK (beacon and task worker, capability summarize)\n"
                         "configured by the environment (SEKUIRE_API_URL, SEKUIRE_AGENT_ID,\n"
                         "SEKUIRE_INSTALL_TOKEN or SEKUIRE_INSTALLATION_ID + SEKUIRE_REFRESH_TOKEN, ...).\n"
                         "Runs until SIGINT, SIGTERM, a terminate command or a revocation.\n"
                         "Exit status: 0; 2 for a configuration error; 1 for another error.\n";
            return 0;
        }
        std::cerr << "quickstart: unknown argument '" << arg << "'; try 'quickstart --help'\n";
        return 2;
    }
    try {
        return run();
    } catch (const std::exception& e) {
        return sekuire::report_error("quickstart", e); // one line; 2 for a configuration error
    }
}
