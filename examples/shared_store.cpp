// SPDX-License-Identifier: MIT
// A beacon and a worker built by hand that share one credential store (the seed's "Sharing
// Credentials with TaskWorker"): the beacon bootstraps, the worker uses its credentials,
// and a token refreshed by either is used by both at once. Commands and the kill switch are
// wired between them by hand (`sekuire::sdk` does this for you).
//
// SEKUIRE_CREDENTIALS_FILE selects a file store; otherwise the store is in memory. A
// configuration error ends it with one line and exit code 2.
#include <sekuire/beacon.hpp>
#include <sekuire/config_error.hpp>
#include <sekuire/file_store.hpp>
#include <sekuire/signals.hpp>
#include <sekuire/worker.hpp>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <string>
#include <string_view>

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

int run() {
    std::atomic<bool> stopping{false};
    std::atomic<sekuire::worker*> running{nullptr};
    std::atomic<bool> signalled{false};
    // First, before any thread starts: SIGINT and SIGTERM then start a graceful shutdown.
    sekuire::signal_watcher signals([&](int) {
        signalled = true;
        stopping = true;
        if (auto* w = running.load()) w->begin_shutdown(std::chrono::seconds(10), "signal");
    });

    const auto settings = sekuire::read_env(sekuire::process_env());
    sekuire::credential_store store = settings.credentials_file.empty()
                                          ? sekuire::credential_store(sekuire::memory_store{})
                                          : sekuire::credential_store(sekuire::file_store(settings.credentials_file));
    auto beacon_options = sekuire::beacon_options::from_env();
    beacon_options.capabilities = {"summarize"};
    sekuire::transport_options transport_settings;
    sekuire::httplib_transport transport(beacon_options.api_base_url, transport_settings);

    // The worker takes its credentials from the store only.
    sekuire::worker_options worker_options;
    worker_options.api_base_url = beacon_options.api_base_url;
    worker_options.workspace_id = beacon_options.workspace_id;
    worker_options.capabilities = {"summarize"};
    sekuire::worker worker(worker_options, transport, sekuire::system_clock{}, store,
                           sekuire::thread_pool_executor(4));

    // Wiring: what the beacon hears reaches the worker, and the other way round.
    beacon_options.on_command = [&](const sekuire::protocol::command& c) { worker.apply_command(c); };
    beacon_options.on_revoked = [&](const sekuire::revocation_info& r) {
        worker.apply_revocation(sekuire::protocol::revocation{r.reason, r.shutdown_timeout.count()});
    };
    beacon_options.metrics = [&] { return worker.metrics(); };
    sekuire::beacon beacon(beacon_options, transport, sekuire::system_clock{}, store, sekuire::auto_probe{});
    worker.on_command([&](const sekuire::protocol::command& c) { beacon.apply_command(c); });

    beacon.start();
    std::cout << "beacon: " << sekuire::to_string(beacon.get_status()) << std::endl;
    worker.on_task("summarize", [](const sekuire::task_context&, const boost::json::value& input) {
        return summarize(input);
    });
    worker.start();
    running = &worker;
    if (signalled) worker.begin_shutdown(std::chrono::seconds(10), "signal");
    worker.wait(); // until terminate, revocation (from either side) or a signal
    signals.stop();
    if (worker.get_status().revoked) beacon.apply_revocation({worker.get_status().revoked_reason, std::nullopt});
    beacon.stop();
    std::cout << "worker: " << sekuire::to_string(worker.get_status()) << std::endl;
    std::cout << "beacon: " << sekuire::to_string(beacon.get_status()) << std::endl;
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    if (argc > 1) {
        const std::string_view arg = argv[1];
        if (arg == "--help" || arg == "-h") {
            std::cout << "usage: shared_store\n\n"
                         "A beacon and a worker built by hand that share one credential store, wired to\n"
                         "each other. Environment: the SEKUIRE_* variables of the beacon; with\n"
                         "SEKUIRE_CREDENTIALS_FILE, the store is that file.\n"
                         "Runs until SIGINT, SIGTERM, a terminate command or a revocation.\n"
                         "Exit status: 0; 2 for a configuration error; 1 for another error.\n";
            return 0;
        }
        std::cerr << "shared_store: unknown argument '" << arg << "'; try 'shared_store --help'\n";
        return 2;
    }
    try {
        return run();
    } catch (const std::exception& e) {
        return sekuire::report_error("shared_store", e); // one line; 2 for a configuration error
    }
}
