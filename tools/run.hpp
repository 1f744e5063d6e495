// SPDX-License-Identifier: MIT
// `run`: a command under a Sekuire beacon. The whole of `sekuire-run` and of `sekuire run`
// (not installed; both programs include it). See docs/sekuire-run.md.
//
// It reads its settings from the flags and the SEKUIRE_* environment (a flag wins), checks
// them all before anything starts, closes itself to the command (secrets scrubbed from its
// environment and argv, not dumpable), bootstraps or recovers, then runs the command
// (`/bin/sh -c COMMAND`, or PROGRAM ARGS... after `--`) in a process group of its own and
// heartbeats while it lives. SIGINT, SIGTERM and SIGHUP are passed on to the group. A
// revocation or a terminate command sends the cancel signal to the group, and SIGKILL once
// the shutdown timeout has passed. It exits with the command's exit code after one final
// `stopped` heartbeat, once what is left of the command's process group has ended too.
#ifndef SEKUIRE_TOOLS_RUN_HPP
#define SEKUIRE_TOOLS_RUN_HPP

#include "cli.hpp"

#include <sekuire/beacon.hpp>
#include <sekuire/config_error.hpp>
#include <sekuire/health.hpp>
#include <sekuire/httplib_transport.hpp>
#include <sekuire/log.hpp>
#include <sekuire/metrics.hpp>

#include <boost/json.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#ifdef __linux__
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace sekuire_tools {
namespace run_detail {

namespace env = sekuire::protocol::env;

// -- settings ------------------------------------------------------------------------------

// Variables of sekuire-run's own (protocol.md section 8 has the others).
inline constexpr const char* env_install_token_file = "SEKUIRE_INSTALL_TOKEN_FILE";
inline constexpr const char* env_api_key_file = "SEKUIRE_API_KEY_FILE";
inline constexpr const char* env_allow_insecure_http = "SEKUIRE_ALLOW_INSECURE_HTTP";
inline constexpr const char* env_cancel_grace_period = "SEKUIRE_CANCEL_GRACE_PERIOD";
inline constexpr const char* env_cancel_signal = "SEKUIRE_CANCEL_SIGNAL";
inline constexpr const char* env_metrics_file = "SEKUIRE_METRICS_FILE";
inline constexpr const char* env_log_level = "SEKUIRE_LOG_LEVEL";
inline constexpr const char* env_log_format = "SEKUIRE_LOG_FORMAT";
inline constexpr const char* env_health_addr = "SEKUIRE_HEALTH_ADDR";

// Removed from our own environment once read, and never given to the command: the secrets,
// and the paths that lead to them.
inline const std::vector<std::string>& scrubbed_variables() {
    static const std::vector<std::string> names{env::install_token, env::api_key,           env::refresh_token,
                                                env::runtime_token, env::credentials_file,  env_install_token_file,
                                                env_api_key_file};
    return names;
}

/// A flag with a value that may also come from a variable.
struct setting {
    const char* flag;
    const char* variable; // may be null
    std::string value;
    CLI::Option* option = nullptr;
};

/// A setting's value and where it came from (the flag, or the variable), or none.
struct resolved {
    std::string value;
    std::string source;
    bool given() const { return !source.empty(); }
    std::string describe() const { return sekuire::describe_setting(source, value); }
};

inline std::string trimmed(std::string s) {
    const auto first = s.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return {};
    const auto last = s.find_last_not_of(" \t\r\n");
    return s.substr(first, last - first + 1);
}

/// The flags of `run`, filled by CLI11.
struct run_flags {
    std::vector<std::string> command; // PROGRAM ARGS... after `--`
    bool has_separator = false;
    std::vector<std::string> arguments; // the options, for masking in messages

    setting cmd{"--cmd", nullptr, {}};
    setting api_url{"--api-url", env::api_url, {}};
    setting agent_id{"--agent-id", env::agent_id, {}};
    setting install_token{"--install-token", env::install_token, {}};
    setting install_token_file{"--install-token-file", env_install_token_file, {}};
    setting api_key{"--api-key", env::api_key, {}};
    setting api_key_file{"--api-key-file", env_api_key_file, {}};
    setting workspace_id{"--workspace-id", env::workspace_id, {}};
    setting installation_id{"--installation-id", env::installation_id, {}};
    setting refresh_token{"--refresh-token", env::refresh_token, {}};
    setting runtime_token{"--runtime-token", env::runtime_token, {}};
    setting credentials_file{"--credentials-file", env::credentials_file, {}};
    setting heartbeat_interval{"--heartbeat-interval", env::heartbeat_interval, {}};
    setting startup_jitter{"--startup-jitter", env::startup_jitter, {}};
    setting cancel_grace_period{"--cancel-grace-period", env_cancel_grace_period, {}};
    setting cancel_signal{"--cancel-signal", env_cancel_signal, {}};
    setting metrics_file{"--metrics-file", env_metrics_file, {}};
    setting log_level{"--log-level", env_log_level, {}};
    setting log_format{"--log-format", env_log_format, {}};
    setting health_addr{"--health-addr", env_health_addr, {}};
    std::vector<std::string> capabilities;
    bool no_heartbeat = false;
    bool check = false;
    bool allow_insecure_http = false;
    CLI::Option* allow_insecure_option = nullptr;
};

inline resolved resolve(const setting& s) {
    if (s.option && s.option->count() > 0) return {s.value, s.flag};
    if (s.variable) {
        if (const char* v = std::getenv(s.variable)) {
            std::string t = trimmed(v);
            if (!t.empty()) return {t, s.variable};
        }
    }
    return {};
}

/// Registers the flags of `run` on `app` (the program, or its `run` subcommand).
inline void add_run_options(CLI::App& app, run_flags& f) {
    auto opt = [&](setting& s, const char* value_name, std::string help, const char* group) {
        if (s.variable) help += " [env " + std::string(s.variable) + "]";
        s.option = app.add_option(s.flag, s.value, help)->type_name(value_name)->group(group);
    };
    const char* command = "The command";
    const char* sekuire = "Sekuire (a flag overrides its variable; prefer the environment or the -file flags for secrets: flags show in ps)";
    const char* ops = "Logging, health and metrics";
    opt(f.cmd, "COMMAND", "the command, run as /bin/sh -c COMMAND (or give PROGRAM ARGS... after --)", command);
    opt(f.cancel_grace_period, "SECONDS",
        "time between the cancel signal and SIGKILL when the backend gives no shutdown timeout (default 10)", command);
    opt(f.cancel_signal, "SIGNAL", "signal that cancels the command on a revocation or terminate command (default TERM)",
        command);
    opt(f.metrics_file, "PATH",
        "file where the command may write its counters for the heartbeats (default: a private temporary file, given "
        "to the command as SEKUIRE_METRICS_FILE)",
        command);
    opt(f.api_url, "URL", "the backend's base URL (default https://api.sekuire.ai)", sekuire);
    opt(f.agent_id, "ID", "the agent's Sekuire id (required)", sekuire);
    opt(f.install_token, "TOKEN", "the one-time install token (skt_...)", sekuire);
    opt(f.install_token_file, "PATH", "read the install token from this file", sekuire);
    opt(f.api_key, "KEY", "API key for the recovery bootstrap (sk_live_...)", sekuire);
    opt(f.api_key_file, "PATH", "read the API key from this file", sekuire);
    opt(f.workspace_id, "ID", "workspace of the recovery bootstrap and the policy", sekuire);
    opt(f.installation_id, "ID", "the installation of an earlier bootstrap, to recover", sekuire);
    opt(f.refresh_token, "TOKEN", "the refresh token of that installation", sekuire);
    opt(f.runtime_token, "TOKEN", "a runtime token of that installation", sekuire);
    opt(f.credentials_file, "PATH", "keep the credentials in this file (0600), to recover after a restart", sekuire);
    opt(f.heartbeat_interval, "SECONDS", "seconds between heartbeats, 1 to 86400 (default 60)", sekuire);
    opt(f.startup_jitter, "SECONDS",
        "the first request waits a random time below this, 0 to 300, so that a fleet restarted together does not "
        "arrive together (default 2)",
        sekuire);
    app.add_option("--capability", f.capabilities, "a capability to report (repeat for more)")
        ->type_name("NAME")
        ->group(sekuire)
        ->allow_extra_args(false); // one name per --capability
    f.allow_insecure_option =
        app.add_flag("--allow-insecure-http", f.allow_insecure_http,
                     "allow plain http to a host other than loopback (a docker-compose network, say); tokens then "
                     "travel in clear text [env " +
                         std::string(env_allow_insecure_http) + "=1]")
            ->group(sekuire);
    app.add_flag("--no-heartbeat", f.no_heartbeat,
                 "run the command without a beacon (not recommended: Sekuire does not see the agent, the kill switch "
                 "cannot reach it)")
        ->group(sekuire);
    app.add_flag("--check", f.check,
                 "bootstrap or recover, send one heartbeat, and exit: 0 connected, 75 retryable, 77 credentials "
                 "refused (needs --credentials-file)")
        ->group(sekuire);
    opt(f.log_level, "LEVEL", "debug, info, warning or error (default info)", ops);
    opt(f.log_format, "FORMAT", "text, logfmt or json (JSON lines) (default text)", ops);
    opt(f.health_addr, "HOST:PORT", "serve /healthz, /readyz and /metrics (Prometheus) on this address", ops);
}

inline std::string run_footer(const char* program) {
    std::string p = program;
    return "Examples:\n"
           "  " + p + " --cmd \"npm start\"\n"
           "  " + p + " --heartbeat-interval 30 --capability summarize -- python3 agent.py --port 8080\n"
           "  " + p + " --check --credentials-file /var/lib/agent/sekuire.json\n"
           "\n"
           "The command gets SEKUIRE_INSTALLATION_ID and SEKUIRE_METRICS_FILE, never a token, the API key\n"
           "or the credentials file. Exit status: the command's (128 + N when signal N ended it); 2 for a\n"
           "usage or configuration error; 77 when the installation is revoked before the start. With\n"
           "--check: 0, 75 (retryable: the backend is unreachable or busy), 77 (credentials refused).\n"
           "See docs/sekuire-run.md.\n";
}

/// A configuration error: one line on standard error, exit code 2.
struct config_error {
    std::string message;
};

// Whole seconds in [lo, hi].
inline long parse_seconds(const resolved& r, long lo, long hi) {
    const std::string& v = r.value;
    bool ok = !v.empty() && v.size() <= 6;
    long n = 0;
    for (const char c : v) {
        if (c < '0' || c > '9') ok = false;
        if (ok) n = n * 10 + (c - '0');
    }
    if (!ok || n < lo || n > hi)
        throw config_error{r.describe() + ": must be a whole number of seconds from " + std::to_string(lo) + " to " +
                           std::to_string(hi)};
    return n;
}

inline bool parse_bool(const resolved& r) {
    std::string v = r.value;
    for (auto& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
    if (v == "0" || v == "false" || v == "no" || v == "off") return false;
    throw config_error{r.describe() + ": must be 1, true, yes, on, or 0, false, no, off"};
}

struct signal_name {
    const char* name;
    int number;
};
inline constexpr signal_name signal_names[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},
                                               {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
                                               {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"WINCH", SIGWINCH}};

inline std::string name_of_signal(int sig) {
    for (const auto& s : signal_names)
        if (s.number == sig) return std::string("SIG") + s.name;
    return "signal " + std::to_string(sig);
}

inline int parse_signal(const resolved& r) {
    std::string v = r.value;
    for (auto& c : v) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (v.rfind("SIG", 0) == 0) v = v.substr(3);
    for (const auto& s : signal_names)
        if (v == s.name) return s.number;
    throw config_error{r.describe() + ": must be one of HUP, INT, QUIT, KILL, USR1, USR2, ALRM, TERM, WINCH (with or "
                                      "without SIG)"};
}

// A secret from a file: a regular file of at most 4 KiB, surrounding white space removed.
inline std::string read_secret_file(const resolved& r) {
    const int fd = ::open(r.value.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) throw config_error{r.describe() + ": cannot open it: " + std::strerror(errno)};
    struct stat st {};
    std::string text;
    bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= 4096;
    if (ok) {
        char buf[4097];
        ssize_t n = 0;
        std::size_t total = 0;
        while (total < sizeof buf && (n = ::read(fd, buf + total, sizeof buf - total)) > 0) total += static_cast<std::size_t>(n);
        ok = n >= 0 && total <= 4096;
        text.assign(buf, total);
        std::memset(buf, 0, sizeof buf);
    }
    ::close(fd);
    if (!ok) throw config_error{r.describe() + ": must be a readable regular file of at most 4096 bytes"};
    text = trimmed(std::move(text));
    if (text.empty()) throw config_error{r.describe() + ": the file is empty"};
    if (text.find_first_of("\r\n") != std::string::npos)
        throw config_error{r.describe() + ": the file must hold one line"};
    return text;
}

// The secret from `value_setting`, or from the file of `file_setting`; not both.
inline resolved secret_from(const setting& value_setting, const setting& file_setting) {
    const resolved v = resolve(value_setting);
    const resolved f = resolve(file_setting);
    const bool v_flag = v.given() && v.source[0] == '-';
    const bool f_flag = f.given() && f.source[0] == '-';
    if (v_flag && f_flag)
        throw config_error{std::string(value_setting.flag) + " and " + file_setting.flag + " are given both: give one"};
    // A flag wins over a variable; between two variables, the value wins.
    if (f.given() && (f_flag || !v.given())) return {read_secret_file(f), f.source};
    return v;
}

// -- the command's metrics file --------------------------------------------------------------

/** The command's own counters, read from a small JSON file it writes (atomically, by
    rename): `{"requests_handled":N,"errors":N,"avg_latency_ms":N}`. Read at each heartbeat
    and each scrape; a bad file keeps the last good values and is logged once per bad spell.
    Thread-safe. */
class command_metrics {
public:
    command_metrics(std::string path, std::function<void(sekuire::log_level, const std::string&)> log)
        : path_(std::move(path)), log_(std::move(log)) {}

    const std::string& path() const { return path_; }

    /// The present values (the last good ones when the file is missing or bad).
    sekuire::protocol::heartbeat_metrics read() {
        std::lock_guard<std::mutex> lock(mutex_);
        std::string why;
        sekuire::protocol::heartbeat_metrics m;
        const int r = load(m, why);
        if (r > 0) {
            last_ = m;
            valid_ = true;
            if (bad_) log_(sekuire::log_level::info, "metrics file " + path_ + " is valid again");
            bad_ = false;
        } else if (r < 0 && !bad_) {
            bad_ = true;
            log_(sekuire::log_level::warning, "metrics file " + path_ + ": " + why + "; keeping the last good values");
        }
        return last_;
    }

    /// Whether a good file was read at least once.
    bool valid() {
        std::lock_guard<std::mutex> lock(mutex_);
        return valid_;
    }

private:
    // 1: read; 0: no file (yet); -1: a bad file, `why` says how.
    int load(sekuire::protocol::heartbeat_metrics& m, std::string& why) const {
        const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
        if (fd < 0) {
            if (errno == ENOENT) return 0;
            why = std::string("cannot open it: ") + std::strerror(errno);
            return -1;
        }
        struct stat st {};
        char buf[4097];
        std::size_t total = 0;
        ssize_t n = 0;
        const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        if (regular)
            while (total < sizeof buf && (n = ::read(fd, buf + total, sizeof buf - total)) > 0)
                total += static_cast<std::size_t>(n);
        ::close(fd);
        if (!regular) {
            why = "not a regular file";
            return -1;
        }
        if (n < 0) {
            why = "cannot read it";
            return -1;
        }
        if (total > 4096) {
            why = "larger than 4096 bytes";
            return -1;
        }
        boost::system::error_code ec;
        const auto v = boost::json::parse(boost::json::string_view(buf, total), ec);
        if (ec || !v.is_object()) {
            why = "not a JSON object";
            return -1;
        }
        const auto& o = v.as_object();
        auto field = [&](const char* name, std::int64_t& out) {
            const auto* f = o.if_contains(name);
            if (!f) return true;
            double d = 0;
            if (f->is_int64()) d = static_cast<double>(f->as_int64());
            else if (f->is_uint64()) d = static_cast<double>(f->as_uint64());
            else if (f->is_double()) d = f->as_double();
            else return false;
            if (!(d >= 0) || d > 9.0e15) return false;
            out = static_cast<std::int64_t>(std::llround(d));
            return true;
        };
        for (const char* name : {"requests_handled", "errors", "avg_latency_ms"}) {
            std::int64_t* out = std::strcmp(name, "requests_handled") == 0 ? &m.requests_handled
                                : std::strcmp(name, "errors") == 0       ? &m.errors
                                                                         : &m.avg_latency_ms;
            if (!field(name, *out)) {
                why = std::string("\"") + name + "\" must be a number from 0 to 9e15";
                return -1;
            }
        }
        return 1;
    }

    std::string path_;
    std::function<void(sekuire::log_level, const std::string&)> log_;
    std::mutex mutex_;
    sekuire::protocol::heartbeat_metrics last_;
    bool valid_ = false;
    bool bad_ = false;
};

// -- the process -----------------------------------------------------------------------------

/** Closes this process to the command: not dumpable, so that a process of the same user
    (the command) can neither read `/proc/<pid>/environ` or `/proc/<pid>/mem` nor ptrace it.
    Called first in main(). */
inline void make_undumpable() {
#ifdef __linux__
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
}

/// Overwrites the secrets in our environment in place (the initial block is what
/// /proc/<pid>/environ shows, also after unsetenv) and removes them. Before any thread.
inline void scrub_environment() {
    for (const auto& name : scrubbed_variables()) {
        for (char** e = environ; e && *e; ++e) {
            if (std::strncmp(*e, name.c_str(), name.size()) == 0 && (*e)[name.size()] == '=') {
                char* value = *e + name.size() + 1;
                std::memset(value, 0, std::strlen(value));
            }
        }
        ::unsetenv(name.c_str());
    }
}

/// Overwrites the values of secret flags in argv (what `ps` and /proc/<pid>/cmdline show)
/// with `x`. Anyone can read a command line before this runs: prefer the environment.
inline void scrub_argv(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--") == 0) return;
        for (const char* flag : {"--install-token", "--api-key", "--refresh-token", "--runtime-token"}) {
            const std::size_t n = std::strlen(flag);
            if (std::strncmp(argv[i], flag, n) != 0) continue;
            if (argv[i][n] == '=') {
                for (char* p = argv[i] + n + 1; *p; ++p) *p = 'x';
            } else if (argv[i][n] == '\0' && i + 1 < argc) {
                for (char* p = argv[i + 1]; *p; ++p) *p = 'x';
            }
        }
    }
}

/// The file descriptors open at start (inherited): those stay open in the command; the ones
/// this program opens later (sockets of the beacon and the health server) are closed on exec.
struct inherited_fds {
    std::vector<int> fds; // sorted
    long limit = 1024;

    static inherited_fds scan() {
        inherited_fds r;
        struct rlimit rl {};
        if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            r.limit = static_cast<long>(std::min<rlim_t>(rl.rlim_cur, 1 << 20));
        if (DIR* d = ::opendir("/proc/self/fd")) {
            const int own = ::dirfd(d);
            while (const dirent* e = ::readdir(d)) {
                char* end = nullptr;
                const long fd = std::strtol(e->d_name, &end, 10);
                if (end != e->d_name && *end == '\0' && fd != own) r.fds.push_back(static_cast<int>(fd));
            }
            ::closedir(d);
        } else {
            r.fds = {0, 1, 2};
        }
        std::sort(r.fds.begin(), r.fds.end());
        return r;
    }

    // In the child, between fork and exec: async-signal-safe calls only.
    void close_others_on_exec() const noexcept {
        unsigned lo = 0;
        auto mark = [&](unsigned from, unsigned to) { // inclusive
            if (from > to) return;
#if defined(__linux__) && defined(SYS_close_range)
            if (::syscall(SYS_close_range, from, to, 4u /* CLOSE_RANGE_CLOEXEC */) == 0) return;
#endif
            const unsigned last = std::min<unsigned>(to, static_cast<unsigned>(limit));
            for (unsigned fd = from; fd <= last; ++fd) {
                const int flags = ::fcntl(static_cast<int>(fd), F_GETFD);
                if (flags >= 0) ::fcntl(static_cast<int>(fd), F_SETFD, flags | FD_CLOEXEC);
            }
        };
        for (const int fd : fds) {
            if (fd < 0) continue;
            if (static_cast<unsigned>(fd) > lo) mark(lo, static_cast<unsigned>(fd) - 1);
            lo = static_cast<unsigned>(fd) + 1;
        }
        mark(lo, ~0u);
    }
};

// The signals passed on to the command; those ignored when we started (nohup ignores
// SIGHUP) are neither passed on nor given back their default action in the command.
inline constexpr int forwarded[] = {SIGINT, SIGTERM, SIGHUP};

struct inherited_ignores {
    bool ignored[3] = {false, false, false};
    bool of(int sig) const {
        for (int i = 0; i < 3; ++i)
            if (forwarded[i] == sig) return ignored[i];
        return false;
    }
};

/// What runs: `/bin/sh -c COMMAND`, or PROGRAM (resolved in PATH) with its arguments.
struct command_line {
    std::string path;
    std::vector<std::string> argv;
    std::string shown; // for logs
};

// Looks PROGRAM up in PATH as execvp would, before anything starts (a missing program is
// refused like a shell refuses it: 127, or 126 when it cannot be executed).
inline std::optional<std::string> find_program(const std::string& program, int& error_code) {
    auto usable = [&](const std::string& p) {
        struct stat st {};
        if (::stat(p.c_str(), &st) != 0) return false;
        if (S_ISDIR(st.st_mode) || ::access(p.c_str(), X_OK) != 0) {
            error_code = 126;
            return false;
        }
        return true;
    };
    error_code = 127;
    if (program.find('/') != std::string::npos) {
        if (usable(program)) return program;
        return std::nullopt;
    }
    const char* path = std::getenv("PATH");
    const std::string dirs = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
    std::size_t start = 0;
    for (;;) {
        const auto colon = dirs.find(':', start);
        std::string dir = dirs.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
        if (dir.empty()) dir = ".";
        const std::string candidate = dir + "/" + program;
        if (usable(candidate)) return candidate;
        if (colon == std::string::npos) break;
        start = colon + 1;
    }
    return std::nullopt;
}

inline pid_t spawn(const command_line& c, const std::vector<std::string>& env, const sigset_t& original_mask,
                   const inherited_ignores& ignores, const inherited_fds& fds) {
    std::vector<char*> envp;
    envp.reserve(env.size() + 1);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    std::vector<char*> argv;
    for (const auto& a : c.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::setpgid(0, 0);
        for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGPIPE})
            if (!ignores.of(sig)) ::signal(sig, SIG_DFL);
        ::sigprocmask(SIG_SETMASK, &original_mask, nullptr);
        fds.close_others_on_exec();
        ::execve(c.path.c_str(), argv.data(), envp.data());
        std::_Exit(errno == ENOENT ? 127 : 126);
    }
    if (pid > 0) ::setpgid(pid, pid); // also here: whichever runs first
    return pid;
}

inline int exit_code_of(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
}

// True while a process of the group `pgid` exists (zombies not yet reaped included).
inline bool group_alive(pid_t pgid) { return ::kill(-pgid, 0) == 0 || errno == EPERM; }

// The environment the command gets: ours (secrets already scrubbed), with the installation
// id and the metrics file, never a secret or a way to one: two holders of one rotating
// refresh token lock each other out.
inline std::vector<std::string> child_environment(const std::string& installation_id, const std::string& metrics_file) {
    std::vector<std::string> out;
    for (char** e = environ; e && *e; ++e) {
        const std::string kv = *e;
        const std::string name = kv.substr(0, kv.find('='));
        const auto& scrubbed = scrubbed_variables();
        if (name == env::installation_id || name == env_metrics_file ||
            std::find(scrubbed.begin(), scrubbed.end(), name) != scrubbed.end())
            continue;
        out.push_back(kv);
    }
    if (!installation_id.empty()) out.push_back(std::string(env::installation_id) + "=" + installation_id);
    if (!metrics_file.empty()) out.push_back(std::string(env_metrics_file) + "=" + metrics_file);
    return out;
}

// A private directory for the default metrics file, removed at exit.
struct temp_directory {
    std::string path;
    temp_directory() = default;
    temp_directory(const temp_directory&) = delete;
    temp_directory& operator=(const temp_directory&) = delete;
    ~temp_directory() {
        if (path.empty()) return;
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    bool create() {
        const char* tmp = std::getenv("TMPDIR");
        std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/sekuire-run-XXXXXX";
        if (!::mkdtemp(templ.data())) return false; // mode 0700
        path = templ;
        return true;
    }
};

/// How a check or a start that did not connect ends: which exit code, for which error.
inline int exit_code_for(const sekuire::beacon_status& s) {
    using sekuire::errc;
    if (s.state == sekuire::beacon_state::connected) return exit_code::ok;
    if (s.revoked || s.state == sekuire::beacon_state::revoked) return exit_code::auth;
    const auto& ec = s.last_error_code;
    if (!ec) return exit_code::retryable; // still authenticating when the start timeout ran out
    if (sekuire::is_transient(ec)) return exit_code::retryable;
    if (ec.category() == sekuire::error_category()) {
        switch (static_cast<errc>(ec.value())) {
        case errc::connection_failed:
        case errc::timeout:
        case errc::connection_lost:
        case errc::transient_http:
        case errc::rate_limited:
            return exit_code::retryable;
        case errc::unauthorized:
        case errc::invalid_install_token:
        case errc::install_token_used:
        case errc::install_token_expired:
        case errc::agent_mismatch:
        case errc::invalid_api_key:
        case errc::workspace_mismatch:
        case errc::invalid_refresh_token:
        case errc::revoked:
        case errc::installation_not_found:
            return exit_code::auth;
        case errc::no_credentials:
            return exit_code::usage;
        default:
            break;
        }
        if (sekuire::is_configuration_error(ec)) return exit_code::usage;
    }
    return exit_code::failure;
}

using steady = std::chrono::steady_clock;

// After SIGKILL, how long we still wait for the command's group before we stop waiting.
inline constexpr std::chrono::milliseconds after_sigkill{5000};

} // namespace run_detail

using run_detail::add_run_options;
using run_detail::run_flags;

/** Runs `run` with the parsed flags. `program` prefixes every line (`sekuire-run`, `sekuire
    run`). `inherited` is what `inherited_fds::scan()` found at the start of main(). Returns
    the exit code. */
inline int run(run_flags& f, const std::string& program, const run_detail::inherited_fds& inherited, int argc,
               char** argv) {
    using namespace run_detail;
    const std::string synopsis = program + " [options] (--cmd COMMAND | -- PROGRAM [ARGS...])";

    // -- what to run ------------------------------------------------------------------------
    const resolved cmd = resolve(f.cmd);
    if (f.check) {
        if (cmd.given() || f.has_separator)
            return usage_error(program, "--check runs no command: leave out --cmd and --", synopsis, f.arguments);
        if (f.no_heartbeat) return usage_error(program, "--check and --no-heartbeat exclude each other", synopsis, f.arguments);
    } else {
        if (cmd.given() && f.has_separator)
            return usage_error(program, "give the command once: --cmd COMMAND or -- PROGRAM [ARGS...], not both",
                               synopsis, f.arguments);
        if (!cmd.given() && !f.has_separator)
            return usage_error(program, "no command to run: give --cmd COMMAND, or PROGRAM [ARGS...] after --",
                               synopsis, f.arguments);
        if (cmd.given() && cmd.value.empty()) return usage_error(program, "--cmd is empty", synopsis, f.arguments);
        if (f.has_separator && (f.command.empty() || f.command[0].empty()))
            return usage_error(program, "no program after --", synopsis, f.arguments);
    }
    for (const auto& c : f.capabilities)
        if (c.empty()) return usage_error(program, "--capability needs a non-empty name", synopsis, f.arguments);

    // -- logging first, so that everything after it uses the chosen form ---------------------
    sekuire::log_sink_options sink;
    sink.program = program;
    auto one_line = [&](const std::string& message) {
        sekuire::log_record r;
        r.level = sekuire::log_level::error;
        r.message = message;
        r.event = "configuration_error";
        const std::string line = sekuire::format_log_record(r, sink, std::chrono::system_clock::now());
        std::fwrite(line.data(), 1, line.size(), stderr);
        return exit_code::usage;
    };
    try {
        if (const auto r = resolve(f.log_format); r.given() && !sekuire::parse_log_format(r.value, sink.format))
            throw config_error{r.describe() + ": must be text, logfmt or json"};
        if (const auto r = resolve(f.log_level); r.given() && !sekuire::parse_log_level(r.value, sink.min_level))
            throw config_error{r.describe() + ": must be debug, info, warning or error"};
    } catch (const config_error& e) {
        return one_line(e.message);
    }
    const sekuire::log_handler sink_logger = sekuire::stderr_logger(sink);
    std::mutex id_mutex;
    std::string known_installation; // the context of our own lines and of the beacon's
    auto current_installation = [&] {
        std::lock_guard<std::mutex> lock(id_mutex);
        return known_installation;
    };
    auto log = [&](sekuire::log_level level, const std::string& message, const char* event = "") {
        const std::string id = current_installation();
        sekuire::log_record r;
        r.level = level;
        r.message = message;
        r.event = event;
        r.installation_id = id;
        sink_logger(r);
    };
    using lv = sekuire::log_level;

    // -- every other setting, checked before anything starts -------------------------------
    std::chrono::seconds grace{10};
    int cancel_signal = SIGTERM;
    std::string health_host;
    int health_port = -1;
    bool allow_insecure = f.allow_insecure_http;
    std::optional<long> interval, jitter;
    std::string install_token, api_key;
    command_line command;
    std::string metrics_path;
    std::vector<std::pair<std::string, std::string>> resolved_env; // for beacon_options::from_env
    try {
        if (const auto r = resolve(f.cancel_grace_period); r.given()) grace = std::chrono::seconds(parse_seconds(r, 0, 86400));
        if (const auto r = resolve(f.cancel_signal); r.given()) cancel_signal = parse_signal(r);
        if (const auto r = resolve(f.health_addr); r.given() && !sekuire::parse_listen_address(r.value, health_host, health_port))
            throw config_error{r.describe() + ": must be HOST:PORT (127.0.0.1:9090, [::1]:9090, :9090)"};
        if (!(f.allow_insecure_option && f.allow_insecure_option->count() > 0)) {
            if (const char* v = std::getenv(env_allow_insecure_http); v && !trimmed(v).empty())
                allow_insecure = parse_bool({trimmed(v), env_allow_insecure_http});
        }
        if (!f.no_heartbeat) {
            if (const auto r = resolve(f.heartbeat_interval); r.given()) interval = parse_seconds(r, 1, 86400);
            if (const auto r = resolve(f.startup_jitter); r.given()) jitter = parse_seconds(r, 0, 300);
            const resolved url = resolve(f.api_url);
            const std::string base = url.given() ? url.value : std::string(sekuire::protocol::default_api_url);
            sekuire::httplib_transport_options to;
            to.base_url = base;
            to.allow_insecure_http = allow_insecure;
            sekuire::error_code ec;
            sekuire::httplib_transport probe(to, ec);
            if (ec) {
                std::string m = (url.given() ? url.describe() : "the default API URL") + ": " + ec.message();
                if (ec == sekuire::errc::insecure_url)
                    m = (url.given() ? url.describe() : "the API URL") +
                        ": plain http is refused for hosts other than loopback; allow it with --allow-insecure-http "
                        "or " + env_allow_insecure_http + "=1 (tokens then travel in clear text)";
                throw config_error{m};
            }
            if (allow_insecure && base.rfind("http://", 0) == 0) {
                const std::string shown = url.given() ? url.describe() : base;
                bool loopback = false;
                {
                    sekuire::httplib_transport_options strict = to;
                    strict.allow_insecure_http = false;
                    sekuire::error_code e2;
                    sekuire::httplib_transport check(strict, e2);
                    loopback = !e2;
                }
                if (!loopback)
                    log(lv::warning, "plain http to a host other than loopback (" + shown +
                                         "): tokens travel in clear text; allowed by --allow-insecure-http or " +
                                         env_allow_insecure_http,
                        "insecure_http");
            }
            const resolved agent = resolve(f.agent_id);
            if (!agent.given())
                throw config_error{std::string(env::agent_id) + " is not set (nor --agent-id): the agent's Sekuire id is "
                                                                "needed to bootstrap an installation"};
            const resolved it = secret_from(f.install_token, f.install_token_file);
            const resolved ak = secret_from(f.api_key, f.api_key_file);
            install_token = it.value;
            api_key = ak.value;
            const resolved creds = resolve(f.credentials_file);
            if (f.check && !creds.given())
                throw config_error{"--check needs a credentials file (--credentials-file or " +
                                   std::string(env::credentials_file) +
                                   "): a check spends the install token or rotates the refresh token, and the next "
                                   "run must find what it got"};
            resolved_env = {{env::api_url, url.value},
                            {env::agent_id, agent.value},
                            {env::install_token, install_token},
                            {env::api_key, api_key},
                            {env::workspace_id, resolve(f.workspace_id).value},
                            {env::installation_id, resolve(f.installation_id).value},
                            {env::refresh_token, resolve(f.refresh_token).value},
                            {env::runtime_token, resolve(f.runtime_token).value},
                            {env::credentials_file, creds.value},
                            {env::heartbeat_interval, interval ? std::to_string(*interval) : std::string()},
                            {env::startup_jitter, jitter ? std::to_string(*jitter) : std::string()}};
            if (!f.check) {
                const resolved mf = resolve(f.metrics_file);
                metrics_path = mf.value;
            }
        }
        if (!f.check) {
            if (cmd.given()) {
                command.path = "/bin/sh";
                command.argv = {"/bin/sh", "-c", cmd.value};
                command.shown = cmd.value;
            } else {
                int code = 127;
                const auto path = find_program(f.command[0], code);
                if (!path) {
                    log(lv::error,
                        "cannot run '" + f.command[0] + "': " +
                            (code == 127 ? "not found" + std::string(f.command[0].find('/') == std::string::npos ? " in PATH" : "")
                                         : std::string("not an executable file")),
                        "command_not_found");
                    return code;
                }
                command.path = *path;
                command.argv = f.command;
                for (const auto& a : f.command) command.shown += (command.shown.empty() ? "" : " ") + a;
            }
        }
    } catch (const config_error& e) {
        return one_line(e.message);
    }

    // -- from here on, the secrets are ours only ---------------------------------------------
    scrub_environment();
    scrub_argv(argc, argv);

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
    if (!f.check) ::prctl(PR_SET_CHILD_SUBREAPER, 1);
#endif
    const pthread_t main_thread = ::pthread_self();

    // Declared before the beacon and the health server, whose callbacks use them.
    std::atomic<bool> revoked{false}, terminate{false}, start_done{false}, command_running{false};
    std::atomic<long long> shutdown_timeout_ms{-1}; // -1: none given
    std::atomic<long long> loop_tick{steady::now().time_since_epoch().count()};
    std::optional<sekuire::beacon> beacon;
    std::atomic<sekuire::beacon*> live_beacon{nullptr}; // what the health server's thread may read
    std::optional<command_metrics> metrics;
    temp_directory metrics_dir;
    std::string installation_id;
    int signal_at_start = 0;

    if (!f.no_heartbeat && !f.check) {
        if (metrics_path.empty()) {
            if (metrics_dir.create()) metrics_path = metrics_dir.path + "/metrics.json";
            else log(lv::warning, std::string("cannot create a directory for the metrics file: ") + std::strerror(errno) +
                                      "; the heartbeats report zeros", "metrics_file");
        }
        if (!metrics_path.empty())
            metrics.emplace(metrics_path, [&](sekuire::log_level l, const std::string& m) { log(l, m, "metrics_file"); });
    }

    // -- the health server (before the bootstrap, so that liveness answers during it) ------
    std::optional<sekuire::health_server> health;
    if (health_port >= 0) {
        sekuire::health_server_options ho;
        ho.host = health_host;
        ho.port = health_port;
        ho.live = [&] {
            const auto tick = steady::time_point(steady::duration(loop_tick.load()));
            const bool ok = steady::now() - tick < std::chrono::seconds(30);
            return sekuire::health_probe{ok, "the supervisor loop has not run for 30 s"};
        };
        ho.ready = [&] {
            sekuire::beacon* b = live_beacon.load();
            if (!b) return sekuire::health_probe{false, f.no_heartbeat ? "no beacon (--no-heartbeat)" : "starting"};
            const auto s = b->get_status();
            if (s.state != sekuire::beacon_state::connected || s.lease_expired)
                return sekuire::health_probe{false, std::string("beacon ") + sekuire::to_string(s.state) +
                                                        (s.last_error.empty() ? "" : ": " + s.last_error)};
            return sekuire::health_probe{true, {}};
        };
        ho.metrics = [&] {
            sekuire::prometheus_text t;
            if (sekuire::beacon* b = live_beacon.load()) sekuire::add_beacon_metrics(t, b->get_status());
            t.gauge("sekuire_command_running", "Whether the supervised command is running", command_running ? 1 : 0);
            if (metrics) {
                const auto m = metrics->read();
                t.gauge("sekuire_command_metrics_valid", "Whether the command's metrics file was read successfully",
                        metrics->valid() ? 1 : 0);
                t.counter("sekuire_command_requests_total", "requests_handled from the command's metrics file",
                          static_cast<double>(m.requests_handled));
                t.counter("sekuire_command_errors_total", "errors from the command's metrics file",
                          static_cast<double>(m.errors));
                t.gauge("sekuire_command_avg_latency_seconds", "avg_latency_ms from the command's metrics file, in seconds",
                        static_cast<double>(m.avg_latency_ms) / 1000.0);
            }
            return t.str();
        };
        health.emplace(ho);
        sekuire::error_code ec;
        health->start(ec);
        if (ec)
            return one_line(resolve(f.health_addr).describe() + ": cannot listen there: " + ec.message());
        log(lv::info, "health endpoints on " + health->url() + " (/healthz, /readyz, /metrics)", "health_listening");
    }
    struct stop_health {
        std::optional<sekuire::health_server>& h;
        ~stop_health() {
            if (h) h->stop();
        }
    } stop_health_at_exit{health};

    if (f.no_heartbeat) {
        log(lv::warning, "--no-heartbeat: running without a beacon; Sekuire will not see this agent", "no_heartbeat");
    } else {
        try {
            const auto lookup = [&](const char* name) -> std::optional<std::string> {
                for (const auto& kv : resolved_env)
                    if (kv.first == name) return kv.second.empty() ? std::nullopt : std::optional<std::string>(kv.second);
                if (const char* v = std::getenv(name)) return std::string(v);
                return std::nullopt;
            };
            auto opts = sekuire::beacon_options::from_env(lookup);
            if (!f.capabilities.empty()) opts.capabilities = f.capabilities;
            opts.transport.allow_insecure_http = allow_insecure;
            opts.logger = [&](const sekuire::log_record& r) {
                if (!r.installation_id.empty()) return sink_logger(r);
                const std::string id = current_installation();
                sekuire::log_record with_id = r;
                with_id.installation_id = id;
                sink_logger(with_id);
            };
            opts.on_status_change = [&](const sekuire::beacon_status& s) {
                std::lock_guard<std::mutex> lock(id_mutex);
                if (!s.installation_id.empty()) known_installation = s.installation_id;
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
            if (metrics) opts.metrics = [&] { return metrics->read(); };
            beacon.emplace(std::move(opts));
            live_beacon = &*beacon;
        } catch (const std::exception& e) {
            return one_line(sekuire::describe_configuration_error(e, [&](const char* name) -> std::optional<std::string> {
                for (const auto& kv : resolved_env)
                    if (kv.first == name && !kv.second.empty()) return kv.second;
                return std::nullopt;
            }));
        }
        // The bootstrap (at most the start timeout) runs on a thread of its own, so that a
        // signal meanwhile is seen: then the command is not started at all.
        std::thread starter([&] {
            try {
                beacon->start();
            } catch (const std::exception& e) {
                log(lv::error, sekuire::error_message(e), "start_failed");
            }
            start_done = true;
            ::pthread_kill(main_thread, SIGUSR1);
        });
        while (!start_done) {
            loop_tick = steady::now().time_since_epoch().count();
            timespec wait{0, 200 * 1000 * 1000};
            siginfo_t info;
            const int sig = ::sigtimedwait(&handled, &info, &wait);
            if ((sig == SIGINT || sig == SIGTERM || sig == SIGHUP) && !ignores.of(sig) && !signal_at_start)
                signal_at_start = sig;
        }
        starter.join();
        const auto s = beacon->get_status();
        installation_id = s.installation_id;
        {
            std::lock_guard<std::mutex> lock(id_mutex);
            if (!installation_id.empty()) known_installation = installation_id;
        }
        if (signal_at_start) {
            log(lv::info, name_of_signal(signal_at_start) + " during the bootstrap: the command is not started",
                "signal_at_start");
            beacon->stop();
            return 128 + signal_at_start;
        }
        if (f.check) {
            const int code = exit_code_for(s);
            if (code == exit_code::ok)
                log(lv::info, "check passed: installation " + s.installation_id + " connected", "check_passed");
            else
                log(lv::error,
                    std::string("check failed: ") + sekuire::to_string(s.state) +
                        (s.last_error.empty() ? std::string(" (no answer before the start timeout)") : " (" + s.last_error + ")") +
                        (code == exit_code::retryable ? "; retryable" : ""),
                    "check_failed");
            beacon->stop();
            return code;
        }
        switch (s.state) {
        case sekuire::beacon_state::connected: log(lv::info, "installation " + s.installation_id + " connected", "connected"); break;
        case sekuire::beacon_state::revoked:
            log(lv::error, "the installation is revoked (" + s.revoked_reason + "): the command is not started",
                "revoked_at_start");
            beacon->stop();
            return exit_code::auth;
        case sekuire::beacon_state::degraded:
            log(lv::warning, "degraded mode (" + s.last_error + "); running the command anyway", "degraded");
            break;
        default:
            log(lv::warning,
                "not connected yet (" + (s.last_error.empty() ? std::string("the bootstrap is under way") : s.last_error) +
                    "); running the command anyway, the beacon keeps trying",
                "not_connected");
            break;
        }
    }

    if (terminate) { // a terminate command came with the registration heartbeat
        log(lv::info, "terminate command before the command was started: it is not started", "terminate_at_start");
        beacon->stop();
        return exit_code::ok;
    }

    const pid_t child = spawn(command, child_environment(installation_id, metrics_path), original, ignores, inherited);
    if (child < 0) {
        log(lv::error, std::string("cannot start the command: ") + std::strerror(errno), "spawn_failed");
        if (beacon) beacon->stop();
        return exit_code::failure;
    }
    command_running = true;
    log(lv::debug, "started the command (pid " + std::to_string(child) + "): " + command.shown, "command_started");

    // Runs until the command has exited and its process group is gone (bounded: after
    // SIGKILL, at most `after_sigkill`).
    int exit_code = 1;
    bool child_done = false, stop_sent = false, term_sent = false, kill_sent = false;
    auto kill_at = steady::time_point::max();
    auto give_up_at = steady::time_point::max();
    const std::string cancel_name = name_of_signal(cancel_signal);
    for (;;) {
        loop_tick = steady::now().time_since_epoch().count();
        // Reap whatever ended: the command, and orphans of its group (we are their
        // subreaper). Bounded per round; the next round reaps the rest.
        for (int i = 0; i < 1024; ++i) {
            int status = 0;
            const pid_t r = ::waitpid(-1, &status, WNOHANG);
            if (r == child) {
                exit_code = exit_code_of(status);
                child_done = true;
                command_running = false;
                log(lv::debug, "the command exited with code " + std::to_string(exit_code), "command_exited");
            } else if (r < 0 && errno == ECHILD && !child_done) {
                log(lv::error, "the command's exit status was lost", "exit_status_lost");
                child_done = true;
                command_running = false;
            }
            if (r <= 0) break;
        }
        const auto now = steady::now();
        if (child_done) {
            if (!group_alive(child)) break;
            if (kill_sent && now >= give_up_at) {
                log(lv::warning, "processes of the command's group survived SIGKILL; exiting without them", "sigkill_survivors");
                break;
            }
            if (!term_sent) {
                // What the command left behind (background jobs) ends with it: the
                // installation is reported stopped, so nothing of it may keep running.
                log(lv::info, "the command exited; its process group is still running: " + cancel_name, "group_cancelled");
                ::kill(-child, cancel_signal);
                term_sent = true;
                kill_at = now + grace;
            }
        }
        if (term_sent && !kill_sent && now >= kill_at) {
            log(lv::warning,
                child_done ? "the command's process group outlived its shutdown timeout: SIGKILL"
                           : "the command outlived its shutdown timeout: SIGKILL",
                "sigkill");
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
            log(lv::warning,
                std::string(revoked ? "installation revoked" : "terminate") + ": stopping the command (" + cancel_name + ")",
                revoked ? "revoked" : "terminate");
            ::kill(-child, cancel_signal);
            term_sent = true;
            // The backend's timeout when it gave one, else the grace period; bounded (a day),
            // so that the deadline cannot overflow whatever the backend sent.
            const long long given = shutdown_timeout_ms.load();
            const long long ms = given >= 0 ? std::clamp<long long>(given, 0, 24LL * 3600 * 1000)
                                            : std::chrono::duration_cast<std::chrono::milliseconds>(grace).count();
            kill_at = std::min(kill_at, steady::now() + std::chrono::milliseconds(ms));
        }
    }

    if (health) health->stop();
    if (beacon) beacon->stop(); // one final `stopped` heartbeat (none after a revocation)
    return exit_code;
}

} // namespace sekuire_tools

#endif
