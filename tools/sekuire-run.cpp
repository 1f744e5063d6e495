// SPDX-License-Identifier: MIT
// sekuire-run: runs a command under a Sekuire beacon (the counterpart of `sekuire run`).
//
//   sekuire-run --cmd "npm start" [--heartbeat-interval 30] [--no-heartbeat] [--capability NAME]...
//
// Configured otherwise by the SEKUIRE_* environment (see docs/sekuire-run.md). It
// bootstraps (or recovers) first, then runs the command through /bin/sh -c in its own
// process group and heartbeats while it lives. SIGINT, SIGTERM and SIGHUP are passed on to
// the command's group. A revocation or a terminate command sends SIGTERM to the group, and
// SIGKILL once the shutdown timeout has passed. It exits with the command's exit code (128 +
// the signal number when the command died by a signal), after one final `stopped`
// heartbeat.

#include <sekuire/beacon.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

extern char** environ;

namespace {

constexpr int usage_error = 2;

void say(const std::string& line) {
    static std::mutex m;
    std::lock_guard<std::mutex> lock(m);
    std::cerr << "sekuire-run: " << line << std::endl;
}

void usage(std::ostream& out) {
    namespace env = sekuire::protocol::env;
    out << "usage: sekuire-run --cmd COMMAND [--heartbeat-interval SECONDS] [--no-heartbeat]\n"
           "                   [--capability NAME]...\n"
           "\n"
           "Runs COMMAND through /bin/sh -c under a Sekuire beacon, configured by the\n"
           "environment: "
        << env::api_url << ", " << env::agent_id << ", " << env::install_token << ",\n"
        << env::api_key << ", " << env::workspace_id << ", " << env::installation_id << ",\n"
        << env::refresh_token << ", " << env::runtime_token << ", " << env::heartbeat_interval << ",\n"
        << env::credentials_file << ".\n"
        << "\n"
           "  --cmd COMMAND               the command to run (required)\n"
           "  --heartbeat-interval N      seconds between heartbeats (default 60)\n"
           "  --no-heartbeat              run the command without a beacon (not recommended)\n"
           "  --capability NAME           a capability to report (repeatable)\n"
           "  --help                      this text\n"
           "\n"
           "The command gets "
        << env::installation_id
        << " when an installation is known; never the refresh, runtime or install token.\n"
           "Exit status: the command's, or 128 + N when it died by signal N; 2 for a usage error.\n";
}

struct arguments {
    std::string cmd;
    std::optional<long> interval;
    bool heartbeat = true;
    std::vector<std::string> capabilities;
};

// Returns false after printing the error.
bool parse(int argc, char** argv, arguments& a) {
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&](const char* name) -> const char* {
            if (i + 1 >= argc) {
                std::cerr << "sekuire-run: " << name << " needs a value\n";
                return nullptr;
            }
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            usage(std::cout);
            std::exit(0);
        } else if (arg == "--cmd") {
            const char* v = value("--cmd");
            if (!v) return false;
            a.cmd = v;
        } else if (arg == "--heartbeat-interval") {
            const char* v = value("--heartbeat-interval");
            if (!v) return false;
            char* end = nullptr;
            errno = 0;
            const long n = std::strtol(v, &end, 10);
            if (errno != 0 || end == v || *end != '\0' || n < 1 || n > 86400) {
                std::cerr << "sekuire-run: --heartbeat-interval must be a whole number of seconds from 1 to 86400\n";
                return false;
            }
            a.interval = n;
        } else if (arg == "--no-heartbeat") {
            a.heartbeat = false;
        } else if (arg == "--capability") {
            const char* v = value("--capability");
            if (!v) return false;
            if (*v == '\0') {
                std::cerr << "sekuire-run: --capability needs a non-empty name\n";
                return false;
            }
            a.capabilities.emplace_back(v);
        } else {
            std::cerr << "sekuire-run: unknown argument '" << arg << "'\n";
            return false;
        }
    }
    if (a.cmd.empty()) {
        std::cerr << "sekuire-run: --cmd is required\n";
        return false;
    }
    return true;
}

// The environment the command gets: ours, with the installation id and without tokens.
std::vector<std::string> child_environment(const std::string& installation_id) {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
        const std::string kv = *e;
        const std::string name = kv.substr(0, kv.find('='));
        if (name == sekuire::protocol::env::refresh_token || name == sekuire::protocol::env::runtime_token ||
            name == sekuire::protocol::env::install_token || name == sekuire::protocol::env::installation_id)
            continue;
        env.push_back(kv);
    }
    if (!installation_id.empty())
        env.push_back(std::string(sekuire::protocol::env::installation_id) + "=" + installation_id);
    return env;
}

pid_t spawn(const std::string& cmd, const std::vector<std::string>& env, const sigset_t& original_mask) {
    std::vector<char*> envp;
    envp.reserve(env.size() + 1);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::setpgid(0, 0);
        for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGPIPE}) ::signal(sig, SIG_DFL);
        ::sigprocmask(SIG_SETMASK, &original_mask, nullptr);
        const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
        ::execve("/bin/sh", const_cast<char* const*>(argv), envp.data());
        std::_Exit(127);
    }
    if (pid > 0) ::setpgid(pid, pid); // also here: whichever runs first
    return pid;
}

int exit_code_of(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
}

} // namespace

int main(int argc, char** argv) {
    arguments args;
    if (!parse(argc, argv, args)) {
        usage(std::cerr);
        return usage_error;
    }

    // Every signal we handle is blocked before any thread starts (the beacon's threads
    // inherit the mask) and taken synchronously below with sigtimedwait.
    sigset_t handled, original;
    sigemptyset(&handled);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1}) sigaddset(&handled, sig);
    ::pthread_sigmask(SIG_BLOCK, &handled, &original);
    ::signal(SIGPIPE, SIG_IGN);
    const pthread_t main_thread = ::pthread_self();

    std::optional<sekuire::beacon> beacon;
    std::atomic<bool> revoked{false}, terminate{false};
    std::atomic<long long> shutdown_timeout_ms{10000};
    std::string installation_id;

    if (!args.heartbeat) {
        say("warning: --no-heartbeat: running without a beacon; Sekuire will not see this agent");
    } else {
        try {
            auto opts = sekuire::beacon_options::from_env();
            if (args.interval) opts.heartbeat_interval = std::chrono::seconds(*args.interval);
            if (!args.capabilities.empty()) opts.capabilities = args.capabilities;
            opts.logger = [](sekuire::log_level level, std::string_view m) {
                if (level != sekuire::log_level::debug) say(std::string(sekuire::to_string(level)) + ": " + std::string(m));
            };
            opts.on_command = [&](const sekuire::protocol::command& c) { // logged by the beacon
                if (c.type == sekuire::protocol::command_type::terminate) {
                    if (c.shutdown_timeout_ms) shutdown_timeout_ms = *c.shutdown_timeout_ms;
                    terminate = true;
                    ::pthread_kill(main_thread, SIGUSR1);
                }
            };
            opts.on_revoked = [&](const sekuire::revocation_info& r) {
                shutdown_timeout_ms = r.shutdown_timeout.count();
                revoked = true;
                ::pthread_kill(main_thread, SIGUSR1);
            };
            beacon.emplace(std::move(opts));
            beacon->start();
            const auto s = beacon->get_status();
            if (s.degraded_mode)
                say("warning: degraded mode (" + s.last_error + "); running the command anyway");
            else
                say("installation " + s.installation_id + " connected");
            installation_id = s.installation_id;
        } catch (const std::exception& e) {
            say(std::string("error: ") + e.what());
            return usage_error;
        }
    }

    const pid_t child = spawn(args.cmd, child_environment(installation_id), original);
    if (child < 0) {
        say(std::string("error: cannot start the command: ") + std::strerror(errno));
        if (beacon) beacon->stop();
        return 1;
    }

    int exit_code = 1;
    bool kill_armed = false;
    auto kill_at = std::chrono::steady_clock::time_point::max();
    for (;;) {
        // Reap first: SIGCHLD may have been merged with another pending one.
        int status = 0;
        const pid_t r = ::waitpid(child, &status, WNOHANG);
        if (r == child) {
            exit_code = exit_code_of(status);
            break;
        }
        if (r < 0 && errno == ECHILD) break;

        timespec wait{0, 200 * 1000 * 1000};
        if (kill_armed) {
            const auto left = kill_at - std::chrono::steady_clock::now();
            if (left <= left.zero()) {
                say("the command outlived its shutdown timeout: SIGKILL");
                ::kill(-child, SIGKILL);
                kill_armed = false;
                continue;
            }
            const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
            if (ns < 200000000) wait = {0, static_cast<long>(ns)};
        }
        siginfo_t info;
        const int sig = ::sigtimedwait(&handled, &info, &wait);
        if (sig < 0) continue; // timeout or EINTR: check the child and the timer again
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
            ::kill(-child, sig);
        } else if (sig == SIGUSR1 && (revoked || terminate) && !kill_armed && kill_at == kill_at.max()) {
            say(revoked ? "installation revoked: stopping the command (SIGTERM)" : "terminate: stopping the command (SIGTERM)");
            ::kill(-child, SIGTERM);
            kill_armed = true;
            // Bounded (a day), so that the deadline cannot overflow whatever the backend sent.
            const long long ms = std::clamp<long long>(shutdown_timeout_ms.load(), 0, 24LL * 3600 * 1000);
            kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
        }
    }

    if (beacon) beacon->stop(); // one final `stopped` heartbeat (none after a revocation)
    return exit_code;
}
