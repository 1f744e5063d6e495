// SPDX-License-Identifier: MIT
// sekuire-mock: a local Sekuire backend (testing::mock_backend) for agents under
// development. See docs/mock-backend.md.

#include <sekuire/testing/mock_backend.hpp>

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr int exit_usage = 2;
constexpr int exit_failure = 1;

const char* const usage_text =
    "usage: sekuire-mock [options]\n"
    "\n"
    "A local Sekuire backend in memory, for agents under development and tests.\n"
    "\n"
    "options:\n"
    "  --host HOST                  address to listen on (default 127.0.0.1)\n"
    "  --port PORT                  port to listen on; 0 takes an ephemeral port (default 5556)\n"
    "  --install-token TOKEN        accept this install token (repeatable; default\n"
    "                               skt_mock_default_install_token)\n"
    "  --api-key KEY                API key of the admin API, recovery and revocation\n"
    "                               (default sk_live_mock_0123456789abcdef)\n"
    "  --workspace ID               workspace id (default ws_mock)\n"
    "  --token-lifetime SECONDS     runtime token lifetime (default 2592000, 30 days)\n"
    "  --lease SECONDS              lease granted by each heartbeat (default 180)\n"
    "  --heartbeat-interval SECONDS heartbeat interval to ask of agents (default: none)\n"
    "  --keepalive-ms MS            task stream keep-alive period (default 15000)\n"
    "  --help                       print this help and exit\n"
    "\n"
    "When ready it prints `sekuire-mock listening on <url>`. SIGINT or SIGTERM stop it.\n";

[[noreturn]] void usage_error(const std::string& message) {
    std::fprintf(stderr, "sekuire-mock: %s\n(try --help)\n", message.c_str());
    std::exit(exit_usage);
}

// A decimal integer within [min, max], or a usage error naming the flag.
std::int64_t parse_int(std::string_view flag, std::string_view text, std::int64_t min, std::int64_t max) {
    if (text.empty() || text.size() > 18) usage_error(std::string(flag) + ": expected a number, got '" + std::string(text) + "'");
    std::int64_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9')
            usage_error(std::string(flag) + ": expected a number, got '" + std::string(text) + "'");
        v = v * 10 + (c - '0');
    }
    if (v < min || v > max)
        usage_error(std::string(flag) + ": " + std::to_string(v) + " is out of range " + std::to_string(min) + ".." +
                    std::to_string(max));
    return v;
}

sekuire::testing::mock_backend_options parse_args(int argc, char** argv) {
    sekuire::testing::mock_backend_options o;
    o.port = 5556;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        std::optional<std::string_view> inline_value;
        if (arg.substr(0, 2) == "--") {
            const auto eq = arg.find('=');
            if (eq != std::string_view::npos) {
                inline_value = arg.substr(eq + 1);
                arg = arg.substr(0, eq);
            }
        }
        if (arg == "--help" || arg == "-h") {
            std::fputs(usage_text, stdout);
            std::exit(0);
        }
        auto value = [&]() -> std::string_view {
            if (inline_value) return *inline_value;
            if (i + 1 >= argc) usage_error(std::string(arg) + " needs a value");
            return argv[++i];
        };
        if (arg == "--host") {
            o.host = std::string(value());
        } else if (arg == "--port") {
            o.port = static_cast<int>(parse_int(arg, value(), 0, 65535));
        } else if (arg == "--install-token") {
            o.install_tokens.emplace_back(value());
        } else if (arg == "--api-key") {
            o.api_key = std::string(value());
        } else if (arg == "--workspace") {
            o.workspace_id = std::string(value());
        } else if (arg == "--token-lifetime") {
            o.token_lifetime = std::chrono::seconds(parse_int(arg, value(), 1, 100LL * 365 * 24 * 3600));
        } else if (arg == "--lease") {
            o.lease = std::chrono::seconds(parse_int(arg, value(), 1, 365LL * 24 * 3600));
        } else if (arg == "--heartbeat-interval") {
            o.heartbeat_interval = std::chrono::seconds(parse_int(arg, value(), 1, 365LL * 24 * 3600));
        } else if (arg == "--keepalive-ms") {
            o.keepalive = std::chrono::milliseconds(parse_int(arg, value(), 1, 3600LL * 1000));
        } else {
            usage_error("unknown option '" + std::string(argv[i]) + "'");
        }
    }
    if (const std::string problem = sekuire::testing::detail::validate_options(o); !problem.empty())
        usage_error(problem);
    return o;
}

} // namespace

int main(int argc, char** argv) {
    const auto options = parse_args(argc, argv);

    // Block the stop signals before any server thread exists, so that every thread
    // inherits the mask and only sigwait() below receives them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr) != 0) {
        std::fputs("sekuire-mock: cannot block SIGINT and SIGTERM\n", stderr);
        return exit_failure;
    }

    sekuire::testing::mock_backend backend{options};
    sekuire::error_code ec;
    backend.start(ec);
    if (ec) {
        // Options were validated above: what is left is the address (in use, or not ours).
        std::fprintf(stderr, "sekuire-mock: cannot listen on %s:%d (address in use or not available)\n",
                     options.host.c_str(), options.port);
        return exit_failure;
    }

    // These credentials exist for local testing only: printing them is the point.
    for (const auto& token : backend.options().install_tokens)
        std::printf("sekuire-mock: install token: %s\n", token.c_str());
    std::printf("sekuire-mock: api key: %s\n", backend.options().api_key.c_str());
    std::printf("sekuire-mock: workspace: %s\n", backend.options().workspace_id.c_str());
    std::printf("sekuire-mock: dashboard: %s%s\n", backend.url().c_str(),
                std::string(sekuire::testing::mock_dashboard_path).c_str());
    std::printf("sekuire-mock listening on %s\n", backend.url().c_str());
    std::fflush(stdout);

    int received = 0;
    while (sigwait(&stop_signals, &received) != 0) {
    }
    backend.stop();
    std::fprintf(stderr, "sekuire-mock: stopped (%s)\n", received == SIGINT ? "SIGINT" : "SIGTERM");
    return 0;
}
