// SPDX-License-Identifier: MIT
// Separate compilation (<sekuire/src.hpp>): this program links sekuire::sekuire_compiled,
// so the members of sekuire::beacon, sekuire::worker and sekuire::sdk come from that
// library; this file only declares them (extern template). check_extern.cmake checks the
// object file; the program checks that the compiled members work. No request is sent: the
// agents are built, looked at and stopped, never started.
#include <sekuire/sdk.hpp>

#include <cstdio>
#include <string>

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#error "sekuire::sekuire_compiled must define SEKUIRE_SEPARATE_COMPILATION for its users"
#endif

// In this mode the public headers declare the default transport without its definition:
// httplib.h (and the socket headers) are compiled in the library only.
#if defined(CPPHTTPLIB_HTTPLIB_H)
#error "<sekuire/sdk.hpp> included httplib.h in SEKUIRE_SEPARATE_COMPILATION mode"
#endif

namespace {
int failures = 0;
void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "separate_compilation: check failed: %s\n", what);
        ++failures;
    }
}
sekuire::env_lookup no_environment() {
    return [](const char*) -> std::optional<std::string> { return std::nullopt; };
}
} // namespace

int main() {
    {
        sekuire::beacon_options o;
        o.api_base_url = "http://127.0.0.1:9";
        o.agent_id = "separate";
        o.install_token = "skt_separate_0123456789";
        o.environment = no_environment();
        sekuire::beacon b(o);
        check(b.get_status().state == sekuire::beacon_state::idle, "a new beacon is idle");
        check(!b.is_connected(), "a new beacon is not connected");
        b.stop(); // never started: nothing is sent
        check(!b.get_status().is_running, "a stopped beacon is not running");
    }
    {
        sekuire::worker_options o;
        o.api_base_url = "http://127.0.0.1:9";
        o.agent_id = "separate";
        o.install_token = "skt_separate_0123456789";
        o.environment = no_environment();
        auto w = sekuire::create_worker(o);
        w->on_task("echo", [](const sekuire::task_context&, const boost::json::value& in) { return in; });
        check(!w->is_paused(), "a new worker is not paused");
        w->stop();
    }
    {
        sekuire::sdk_options o;
        o.api_base_url = "http://127.0.0.1:9";
        o.agent_id = "separate";
        o.install_token = "skt_separate_0123456789";
        o.environment = no_environment();
        sekuire::sdk s(o);
        check(!s.beacon().is_connected(), "a new SDK's beacon is not connected");
        s.shutdown();
    }
    if (failures == 0) std::puts("separate_compilation: the compiled members of beacon, worker and sdk work");
    return failures == 0 ? 0 : 1;
}
