// SPDX-License-Identifier: MIT
// sekuire-mock: a local Sekuire backend (testing::mock_backend) for agents under
// development, with its fleet dashboard. See docs/mock-backend.md.
//
//   sekuire-mock [options]
//
// The command line follows the programs' conventions (cli.hpp, CLI11): --help, --version,
// `--flag value` and `--flag=value`, a short usage error naming the flag and the value at
// fault (exit code 2).

#include "cli.hpp"

#include <sekuire/testing/mock_backend.hpp>

#include <boost/asio/ip/address.hpp>

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace st = sekuire::testing;
using sekuire_tools::exit_code::failure;
using sekuire_tools::exit_code::ok;
using sekuire_tools::exit_code::usage;

const std::string program = "sekuire-mock";
const std::string synopsis = "sekuire-mock [options]";

/// The flags, as typed (checked after parsing, so that each message names its flag).
struct flags {
    std::string host = "127.0.0.1";
    std::string port = "5556";
    std::vector<std::string> install_tokens;
    std::string api_key{st::mock_default_api_key};
    std::string workspace{st::mock_default_workspace};
    std::string token_lifetime = "2592000";
    std::string lease = "180";
    std::string heartbeat_interval;
    std::string keepalive_ms = "15000";
    std::string threads = "2";
    std::string listen_backlog = "4096";
};

/// A usage problem: the message of the error (without the program's name).
struct problem {
    std::string message;
};

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

/// `text` as a whole number within [min, max], for `flag`; `what` names the unit.
std::int64_t whole_number(const char* flag, const std::string& text, std::int64_t min, std::int64_t max,
                          const char* what) {
    const std::string range = "give " + std::to_string(min) + " to " + std::to_string(max) + " " + what;
    if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
        throw problem{std::string(flag) + ": " + in_quotes(text) + " is not a whole number: " + range};
    const std::int64_t v = std::stoll(text);
    if (v < min || v > max) throw problem{std::string(flag) + ": " + text + " is out of range: " + range};
    return v;
}

bool printable(const std::string& s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) return false;
    return true;
}

/// A non-empty printable string of at most `max` bytes (and without spaces, `no_spaces`).
void text_value(const char* flag, const std::string& value, std::size_t max, bool no_spaces, const char* what) {
    if (value.empty() || value.size() > max || !printable(value) ||
        (no_spaces && value.find(' ') != std::string::npos))
        throw problem{std::string(flag) + ": " + in_quotes(value) + " is not " + what};
}

st::mock_backend_options options_of(const flags& f) {
    st::mock_backend_options o;
    text_value("--host", f.host, 255, true, "a host name or address");
    o.host = f.host;
    o.port = static_cast<int>(whole_number("--port", f.port, 0, 65535, "(0: an ephemeral port)"));
    for (const auto& t : f.install_tokens)
        text_value("--install-token", t, st::detail::mock_max_token_length, true,
                   "a token (printable, without spaces, at most 512 bytes)");
    o.install_tokens = f.install_tokens;
    text_value("--api-key", f.api_key, st::detail::mock_max_token_length, false,
               "an API key (printable, at most 512 bytes)");
    o.api_key = f.api_key;
    text_value("--workspace", f.workspace, st::detail::mock_max_id_length, false,
               "a workspace id (printable, at most 128 bytes)");
    o.workspace_id = f.workspace;
    o.token_lifetime =
        std::chrono::seconds(whole_number("--token-lifetime", f.token_lifetime, 1, 100LL * 365 * 24 * 3600, "seconds"));
    o.lease = std::chrono::seconds(whole_number("--lease", f.lease, 1, 365LL * 24 * 3600, "seconds"));
    if (!f.heartbeat_interval.empty())
        o.heartbeat_interval = std::chrono::seconds(
            whole_number("--heartbeat-interval", f.heartbeat_interval, 1, 365LL * 24 * 3600, "seconds"));
    o.keepalive = std::chrono::milliseconds(whole_number("--keepalive-ms", f.keepalive_ms, 1, 3600LL * 1000, "ms"));
    o.threads = static_cast<std::size_t>(whole_number("--threads", f.threads, 1, 256, "threads"));
    o.listen_backlog = static_cast<int>(whole_number("--listen-backlog", f.listen_backlog, 1, 65535, "connections"));
    // The flags' checks cover the options' rules; this only guards against a new rule.
    if (const std::string bad = st::detail::validate_options(o); !bad.empty()) throw problem{bad};
    return o;
}

/// Whether `host` is a loopback address (127.0.0.0/8, ::1) or the name localhost.
bool is_loopback(const std::string& host) {
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(host, ec);
    if (!ec) return address.is_loopback();
    std::string lower;
    for (char c : host) lower.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    const std::string suffix = ".localhost";
    return lower == "localhost" ||
           (lower.size() > suffix.size() && lower.compare(lower.size() - suffix.size(), suffix.size(), suffix) == 0);
}

/// CLI11's few terse messages, said plainly (each names its flag already).
std::string plain(std::string message) {
    // "--port: 1 required PORT missing" -> "--port needs a value (PORT)"
    const auto colon = message.find(": 1 required ");
    if (colon != std::string::npos && message.size() > 8 && message.compare(message.size() - 8, 8, " missing") == 0) {
        const auto what = message.substr(colon + 13, message.size() - 8 - colon - 13);
        return message.substr(0, colon) + " needs a value (" + what + ")";
    }
    // "The following argument(s) were not expected: y --nope": CLI11 lists them last first.
    for (const std::string lead : {"The following argument was not expected: ",
                                   "The following arguments were not expected: "}) {
        if (message.rfind(lead, 0) != 0) continue;
        std::vector<std::string> extra;
        std::string rest = message.substr(lead.size());
        for (std::size_t at = 0; at <= rest.size();) {
            const auto space = rest.find(' ', at);
            const auto word = rest.substr(at, space == std::string::npos ? std::string::npos : space - at);
            if (!word.empty()) extra.insert(extra.begin(), word);
            if (space == std::string::npos) break;
            at = space + 1;
        }
        if (extra.empty()) return message;
        std::string out = extra.front().rfind("-", 0) == 0
                              ? "unknown option " + in_quotes(extra.front())
                              : "unexpected argument " + in_quotes(extra.front()) + ": sekuire-mock takes options only";
        if (extra.size() > 1) out += " (and " + std::to_string(extra.size() - 1) + " more)";
        return out;
    }
    return message;
}

/// The secret values among the arguments: those of --install-token and --api-key, and
/// anything that looks like a token. (cli.hpp's list would also take --token-lifetime's.)
std::vector<std::string> secrets_of(const std::vector<std::string>& args) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        for (const std::string flag : {"--install-token", "--api-key"}) {
            if (a == flag && i + 1 < args.size()) out.push_back(args[i + 1]);
            if (a.rfind(flag + "=", 0) == 0) out.push_back(a.substr(flag.size() + 1));
        }
        if (sekuire_tools::looks_like_token(a)) out.push_back(a);
    }
    return out;
}

/// The short usage error of the programs (cli.hpp's form): the message with secrets
/// masked, the synopsis, where to find help. Returns the usage exit code.
int usage_error(const std::string& message, const std::vector<std::string>& args) {
    std::fprintf(stderr, "%s: %s\nusage: %s\ntry '%s --help' for more information\n", program.c_str(),
                 sekuire_tools::scrub(message, secrets_of(args)).c_str(), synopsis.c_str(), program.c_str());
    return usage;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"A local Sekuire backend in memory, for agents under development and tests: the protocol with "
                 "its real rules, an admin API, fault injection, and a fleet dashboard at /dashboard. It has no "
                 "real authentication: keep it on a loopback address.",
                 program};
    app.set_version_flag("--version", sekuire_tools::version_text(program));
    flags f;
    auto opt = [&](const char* name, std::string& value, const char* type, const std::string& help) {
        return app.add_option(name, value, help)
            ->type_name(type)
            ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast); // the last one given counts
    };
    const char* serving = "Serving";
    const char* rules = "The backend's rules";
    opt("--host", f.host, "HOST", "address to listen on (default 127.0.0.1; a non-loopback address is warned about)")
        ->group(serving);
    opt("--port", f.port, "PORT", "port to listen on; 0 takes an ephemeral port (default 5556)")->group(serving);
    opt("--threads", f.threads, "N", "I/O threads, 1 to 256 (default 2: streams hold no thread)")->group(serving);
    opt("--listen-backlog", f.listen_backlog, "N",
        "connections queued before they are accepted, 1 to 65535 (default 4096; the kernel caps it at "
        "net.core.somaxconn)")
        ->group(serving);
    app.add_option("--install-token", f.install_tokens,
                   "accept this install token (repeat for more; default skt_mock_default_install_token)")
        ->type_name("TOKEN")
        ->allow_extra_args(false)
        ->group(rules);
    opt("--api-key", f.api_key, "KEY",
        "API key of the admin API, the dashboard, recovery and revocation (default sk_live_mock_0123456789abcdef)")
        ->group(rules);
    opt("--workspace", f.workspace, "ID", "workspace id (default ws_mock)")->group(rules);
    opt("--token-lifetime", f.token_lifetime, "SECONDS", "runtime token lifetime (default 2592000, 30 days)")
        ->group(rules);
    opt("--lease", f.lease, "SECONDS", "lease granted by bootstrap and each heartbeat (default 180)")->group(rules);
    opt("--heartbeat-interval", f.heartbeat_interval, "SECONDS", "heartbeat interval to ask of agents (default: none)")
        ->group(rules);
    opt("--keepalive-ms", f.keepalive_ms, "MS", "task stream keep-alive period (default 15000)")->group(rules);
    app.footer("When it accepts connections it prints `sekuire-mock listening on <url>` (after its install tokens, "
               "API key, workspace and the dashboard's address). SIGINT or SIGTERM stop it with exit code 0; it "
               "exits with 1 when it cannot listen, 2 for a usage error.");

    std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    {
        std::vector<std::string> reversed(args.rbegin(), args.rend()); // CLI11 takes them reversed
        try {
            app.parse(reversed);
        } catch (const CLI::CallForHelp&) {
            std::fputs(app.help().c_str(), stdout);
            return ok;
        } catch (const CLI::CallForAllHelp&) {
            std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
            return ok;
        } catch (const CLI::CallForVersion& e) {
            std::printf("%s\n", e.what());
            return ok;
        } catch (const CLI::ParseError& e) {
            return usage_error(plain(e.what()), args);
        }
    }
    st::mock_backend_options options;
    try {
        options = options_of(f);
    } catch (const problem& p) {
        return usage_error(p.message, args);
    }
    if (!is_loopback(options.host))
        std::fprintf(stderr,
                     "sekuire-mock: warning: --host %s is not a loopback address: whoever can reach it can use this "
                     "mock, which has no real authentication (its install tokens and API key are printed below and "
                     "well known)\n",
                     options.host.c_str());

    // Block the stop signals before any server thread exists, so that every thread
    // inherits the mask and only sigwait() below receives them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr) != 0) {
        std::fputs("sekuire-mock: cannot block SIGINT and SIGTERM\n", stderr);
        return failure;
    }

    st::mock_backend backend{options};
    sekuire::error_code ec;
    backend.start(ec);
    if (ec) {
        // Options were checked above: what is left is the address (in use, or not ours).
        std::fprintf(stderr, "sekuire-mock: cannot listen on %s port %d (address in use or not available)\n",
                     options.host.c_str(), options.port);
        return failure;
    }

    // These credentials exist for local testing only: printing them is the point.
    for (const auto& token : backend.options().install_tokens)
        std::printf("sekuire-mock: install token: %s\n", token.c_str());
    std::printf("sekuire-mock: api key: %s\n", backend.options().api_key.c_str());
    std::printf("sekuire-mock: workspace: %s\n", backend.options().workspace_id.c_str());
    std::printf("sekuire-mock: dashboard: %s%s\n", backend.url().c_str(), std::string(st::mock_dashboard_path).c_str());
    std::printf("sekuire-mock listening on %s\n", backend.url().c_str());
    std::fflush(stdout);

    int received = 0;
    while (sigwait(&stop_signals, &received) != 0) {
    }
    backend.stop();
    std::fprintf(stderr, "sekuire-mock: stopped (%s)\n", received == SIGINT ? "SIGINT" : "SIGTERM");
    return ok;
}
