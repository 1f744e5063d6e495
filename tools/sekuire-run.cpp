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
// heartbeat, once what is left of the command's process group has ended too.

#include <sekuire/beacon.hpp>

#include <pthread.h>
#include <signal.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
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
#include <thread>
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
        << " when an installation is known; never a token, the API key or the credentials file.\n"
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

// The environment the command gets: ours, with the installation id and without secrets.
// Neither the refresh token nor anything that leads to it (the credentials file, the API
// key of a recovery bootstrap): two holders of one rotating refresh token lock each other
// out.
std::vector<std::string> child_environment(const std::string& installation_id) {
    namespace env = sekuire::protocol::env;
    std::vector<std::string> out;
    for (char** e = environ; e && *e; ++e) {
        const std::string kv = *e;
        const std::string name = kv.substr(0, kv.find('='));
        if (name == env::refresh_token || name == env::runtime_token || name == env::install_token ||
            name == env::installation_id || name == env::credentials_file || name == env::api_key)
            continue;
        out.push_back(kv);
    }
    if (!installation_id.empty()) out.push_back(std::string(env::installation_id) + "=" + installation_id);
    return out;
}

// The signals passed on to the command; those ignored when we started (nohup ignores
// SIGHUP) are neither passed on nor given back their default action in the command.
constexpr int forwarded[] = {SIGINT, SIGTERM, SIGHUP};

struct inherited_ignores {
    bool ignored[3] = {false, false, false};
    bool of(int sig) const {
        for (int i = 0; i < 3; ++i)
            if (forwarded[i] == sig) return ignored[i];
        return false;
    }
};

pid_t spawn(const std::string& cmd, const std::vector<std::string>& env, const sigset_t& original_mask,
            const inherited_ignores& ignores) {
    std::vector<char*> envp;
    envp.reserve(env.size() + 1);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::setpgid(0, 0);
        for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGPIPE})
            if (!ignores.of(sig)) ::signal(sig, SIG_DFL);
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

// True while a process of the group `pgid` exists (zombies not yet reaped included).
bool group_alive(pid_t pgid) { return ::kill(-pgid, 0) == 0 || errno == EPERM; }

const char* signal_name(int sig) {
    switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
    }
}

using steady = std::chrono::steady_clock;

// How long the command's process group gets after SIGTERM when nobody said (protocol.md's
// default shutdown timeout), and after SIGKILL before we stop waiting for it.
constexpr std::chrono::milliseconds default_shutdown_timeout{10000};
constexpr std::chrono::milliseconds after_sigkill{5000};

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
    inherited_ignores ignores;
    for (int i = 0; i < 3; ++i) {
        struct sigaction old {};
        if (::sigaction(forwarded[i], nullptr, &old) == 0) ignores.ignored[i] = old.sa_handler == SIG_IGN;
    }
    // An ignored SIGCHLD (inherited) would let the kernel reap the command: its exit
    // status would be lost.
    ::signal(SIGCHLD, SIG_DFL);
    ::signal(SIGPIPE, SIG_IGN);
#ifdef __linux__
    // Orphans of the command (its background jobs) become our children: they are reaped
    // here, also when we run as PID 1 in a container.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
#endif
    const pthread_t main_thread = ::pthread_self();

    // Declared before the beacon, whose callbacks use them.
    std::atomic<bool> revoked{false}, terminate{false}, start_done{false};
    std::atomic<long long> shutdown_timeout_ms{default_shutdown_timeout.count()};
    std::optional<sekuire::beacon> beacon;
    std::string installation_id;
    int signal_at_start = 0;

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
        } catch (const std::exception& e) {
            say(std::string("error: ") + e.what());
            return usage_error;
        }
        // The bootstrap (at most the start timeout) runs on a thread of its own, so that a
        // signal meanwhile is seen: then the command is not started at all.
        std::thread starter([&] {
            try {
                beacon->start();
            } catch (const std::exception& e) {
                say(std::string("error: ") + e.what());
            }
            start_done = true;
            ::pthread_kill(main_thread, SIGUSR1);
        });
        while (!start_done) {
            timespec wait{0, 200 * 1000 * 1000};
            siginfo_t info;
            const int sig = ::sigtimedwait(&handled, &info, &wait);
            if ((sig == SIGINT || sig == SIGTERM || sig == SIGHUP) && !ignores.of(sig) && !signal_at_start)
                signal_at_start = sig;
        }
        starter.join();
        const auto s = beacon->get_status();
        installation_id = s.installation_id;
        if (signal_at_start) {
            say(std::string(signal_name(signal_at_start)) + " during the bootstrap: the command is not started");
            beacon->stop();
            return 128 + signal_at_start;
        }
        switch (s.state) {
        case sekuire::beacon_state::connected: say("installation " + s.installation_id + " connected"); break;
        case sekuire::beacon_state::revoked:
            say("error: the installation is revoked (" + s.revoked_reason + "): the command is not started");
            beacon->stop();
            return 1;
        case sekuire::beacon_state::degraded:
            say("warning: degraded mode (" + s.last_error + "); running the command anyway");
            break;
        default:
            say("warning: not connected yet (" + (s.last_error.empty() ? std::string("the bootstrap is under way") : s.last_error) +
                "); running the command anyway, the beacon keeps trying");
            break;
        }
    }

    if (terminate) { // a terminate command came with the registration heartbeat
        say("terminate command before the command was started: it is not started");
        beacon->stop();
        return 0;
    }

    const pid_t child = spawn(args.cmd, child_environment(installation_id), original, ignores);
    if (child < 0) {
        say(std::string("error: cannot start the command: ") + std::strerror(errno));
        if (beacon) beacon->stop();
        return 1;
    }

    // Runs until the command has exited and its process group is gone (bounded: after
    // SIGKILL, at most `after_sigkill`).
    int exit_code = 1;
    bool child_done = false, stop_sent = false, term_sent = false, kill_sent = false;
    auto kill_at = steady::time_point::max();
    auto give_up_at = steady::time_point::max();
    for (;;) {
        // Reap whatever ended: the command, and orphans of its group (we are their
        // subreaper). Bounded per round; the next round reaps the rest.
        for (int i = 0; i < 1024; ++i) {
            int status = 0;
            const pid_t r = ::waitpid(-1, &status, WNOHANG);
            if (r == child) {
                exit_code = exit_code_of(status);
                child_done = true;
            } else if (r < 0 && errno == ECHILD && !child_done) {
                say("error: the command's exit status was lost");
                child_done = true;
            }
            if (r <= 0) break;
        }
        const auto now = steady::now();
        if (child_done) {
            if (!group_alive(child)) break;
            if (kill_sent && now >= give_up_at) {
                say("warning: processes of the command's group survived SIGKILL; exiting without them");
                break;
            }
            if (!term_sent) {
                // What the command left behind (background jobs) ends with it: the
                // installation is reported stopped, so nothing of it may keep running.
                say("the command exited; its process group is still running: SIGTERM");
                ::kill(-child, SIGTERM);
                term_sent = true;
                kill_at = now + default_shutdown_timeout;
            }
        }
        if (term_sent && !kill_sent && now >= kill_at) {
            say(child_done ? "the command's process group outlived its shutdown timeout: SIGKILL"
                           : "the command outlived its shutdown timeout: SIGKILL");
            ::kill(-child, SIGKILL);
            kill_sent = true;
            give_up_at = now + after_sigkill;
            continue;
        }

        timespec wait{0, 200 * 1000 * 1000};
        const auto deadline = kill_sent ? give_up_at : (term_sent ? kill_at : steady::time_point::max());
        if (deadline != steady::time_point::max()) {
            const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
            if (ns < 200000000) wait = {0, static_cast<long>(std::max<long long>(ns, 0))};
        }
        siginfo_t info;
        const int sig = ::sigtimedwait(&handled, &info, &wait);
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
            if (!ignores.of(sig)) ::kill(-child, sig);
        }
        // The flags, not SIGUSR1, decide: a wake-up may have been taken during the bootstrap.
        if ((revoked || terminate) && !stop_sent) {
            stop_sent = true;
            say(revoked ? "installation revoked: stopping the command (SIGTERM)" : "terminate: stopping the command (SIGTERM)");
            ::kill(-child, SIGTERM);
            term_sent = true;
            // Bounded (a day), so that the deadline cannot overflow whatever the backend sent.
            const long long ms = std::clamp<long long>(shutdown_timeout_ms.load(), 0, 24LL * 3600 * 1000);
            kill_at = std::min(kill_at, steady::now() + std::chrono::milliseconds(ms));
        }
    }

    if (beacon) beacon->stop(); // one final `stopped` heartbeat (none after a revocation)
    return exit_code;
}
