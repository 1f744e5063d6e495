// SPDX-License-Identifier: MIT
// The `sekuire-run` program against an in-process mock backend (system clock, 127.0.0.1).
//
// The program is found next to this test program: build/<dir>/tests/<this> runs
// build/<dir>/tools/sekuire-run (configure with -DSEKUIRE_BUILD_TOOLS=ON). Each case starts
// it with posix_spawn in a controlled environment, its output in files of a temporary
// directory, and bounds every wait. Child commands bound their own loops too, so that
// nothing outlives a failed case for long.

#include <sekuire/basic_beacon.hpp>
#include <sekuire/clock.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/httplib_transport.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/fixed_probe.hpp>
#include <sekuire/testing/mock_backend.hpp>

#include "unit/prometheus_parser.hpp"

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace st = sekuire::testing;
namespace proto = sekuire::protocol;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

const std::string agent = "agent-run";

// build/<dir>/tests/sekuire_integration_tests -> build/<dir>/tools/sekuire-run
fs::path tool_path() {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return {};
    return exe.parent_path().parent_path() / "tools" / "sekuire-run";
}

struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string templ = (fs::temp_directory_path() / "sekuire-run-test-XXXXXX").string();
        if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
        path = templ;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    return s;
}

// `NAME=value` lines of an `env` dump.
std::map<std::string, std::string> parse_env(const std::string& text) {
    std::map<std::string, std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        const auto eq = line.find('=');
        if (eq != std::string::npos && eq > 0) out[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return out;
}

bool contains(const std::string& haystack, const std::string& needle) {
    return !needle.empty() && haystack.find(needle) != std::string::npos;
}

// Single-quotes a path for /bin/sh.
std::string q(const fs::path& p) {
    std::string out = "'";
    for (char c : p.string()) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

// Waits (real time, bounded) until `pred()` holds; returns whether it did.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit) {
    const auto deadline = steady::now() + limit;
    for (;;) {
        if (pred()) return true;
        if (steady::now() >= deadline) return false;
        std::this_thread::sleep_for(5ms);
    }
}

// A shell loop that keeps the command alive for at most `seconds` (so that nothing
// lingers when a case fails).
std::string idle(int seconds) {
    return "i=0; while [ $i -lt " + std::to_string(seconds * 20) + " ]; do sleep 0.05; i=$((i+1)); done";
}

// Whether the process `pid` (read from a file a command wrote) still exists, zombies
// aside: after sekuire-run exits, its reparented zombies are reaped by init.
bool process_alive(pid_t pid) {
    if (pid <= 0 || ::kill(pid, 0) != 0) return false;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    return close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'Z';
}

pid_t read_pid(const fs::path& p) {
    const std::string text = trimmed(read_file(p));
    return text.empty() ? -1 : static_cast<pid_t>(std::stol(text));
}

// One run of sekuire-run.
class process {
public:
    process(const fs::path& tool, const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
            const fs::path& out, const fs::path& err) {
        std::vector<std::string> argv_s{tool.string()};
        argv_s.insert(argv_s.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : argv_s) argv.push_back(a.data());
        argv.push_back(nullptr);
        std::vector<std::string> env_s;
        for (const auto& kv : env) env_s.push_back(kv.first + "=" + kv.second);
        std::vector<char*> envp;
        for (auto& e : env_s) envp.push_back(e.data());
        envp.push_back(nullptr);

        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        // A clean start: no blocked signals, default dispositions for the ones it uses.
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        sigset_t none, defaults;
        sigemptyset(&none);
        sigemptyset(&defaults);
        for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGPIPE, SIGQUIT, SIGALRM}) sigaddset(&defaults, s);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        const int rc = ::posix_spawn(&pid_, tool.c_str(), &fa, &attr, argv.data(), envp.data());
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0) pid_ = -1;
    }
    process(const process&) = delete;
    process& operator=(const process&) = delete;
    ~process() {
        if (pid_ > 0 && !status_) {
            ::kill(pid_, SIGKILL);
            int st = 0;
            ::waitpid(pid_, &st, 0);
        }
    }

    bool started() const { return pid_ > 0; }
    pid_t pid() const { return pid_; }

    /// True while the program has not exited (reaps it when it has).
    bool running() {
        poll();
        return pid_ > 0 && !status_;
    }

    void signal(int sig) const {
        if (pid_ > 0) ::kill(pid_, sig);
    }

    /** Waits (bounded) for the exit. Returns the exit code; -N when the program itself
        died by signal N; `timed_out` (after killing it) when it outlived `limit`. */
    int wait(std::chrono::milliseconds limit = 10s) {
        if (pid_ <= 0) return not_started;
        if (!wait_until([&] { return !running(); }, limit)) {
            ::kill(pid_, SIGKILL);
            int st = 0;
            ::waitpid(pid_, &st, 0);
            status_ = st;
            exited_at_ = steady::now();
            return timed_out;
        }
        if (WIFEXITED(*status_)) return WEXITSTATUS(*status_);
        if (WIFSIGNALED(*status_)) return -WTERMSIG(*status_);
        return timed_out;
    }

    static constexpr int timed_out = -1000;
    static constexpr int not_started = -1001;

    steady::time_point exited_at() const { return exited_at_; }

private:
    void poll() {
        if (pid_ <= 0 || status_) return;
        int st = 0;
        const pid_t r = ::waitpid(pid_, &st, WNOHANG);
        if (r == pid_) {
            status_ = st;
            exited_at_ = steady::now();
        }
    }

    pid_t pid_ = -1;
    std::optional<int> status_;
    steady::time_point exited_at_{};
};

// A system-clock mock backend, a temporary directory and the program's environment.
struct fixture {
    temp_dir dir;
    fs::path tool = tool_path();
    st::mock_backend backend{options()};
    std::string install_token;
    std::map<std::string, std::string> env;
    int runs = 0;

    static st::mock_backend_options options() {
        st::mock_backend_options o;
        o.keep_alive_timeout = 1s;
        return o;
    }

    fixture() {
        BOOST_REQUIRE_MESSAGE(!tool.empty() && ::access(tool.c_str(), X_OK) == 0,
                              "sekuire-run is missing at '" << tool.string()
                                                            << "': configure with -DSEKUIRE_BUILD_TOOLS=ON and build "
                                                               "the sekuire-run target");
        backend.start();
        install_token = backend.create_install_token();
        const char* path = std::getenv("PATH");
        env["PATH"] = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
        for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"})
            if (const char* v = std::getenv(name)) env[name] = v;
        env[proto::env::api_url] = backend.url();
        env[proto::env::agent_id] = agent;
        env[proto::env::install_token] = install_token;
        env[proto::env::heartbeat_interval] = "1";
        env[proto::env::startup_jitter] = "0"; // no random wait before the bootstrap
    }
    fixture(const fixture&) = delete;
    fixture& operator=(const fixture&) = delete;
    ~fixture() { backend.stop(); }

    fs::path file(const std::string& name) const { return dir.path / name; }

    /// Starts sekuire-run with `args`; its output goes to out-N.txt and err-N.txt.
    std::unique_ptr<process> start(const std::vector<std::string>& args) {
        ++runs;
        auto p = std::make_unique<process>(tool, args, env, out_file(), err_file());
        BOOST_REQUIRE_MESSAGE(p->started(), "cannot start " << tool.string());
        return p;
    }

    /// Starts sekuire-run through `/bin/sh -c 'PREFIX; exec sekuire-run ARGS'`: the
    /// prefix sets what sekuire-run inherits (ignored signals, say).
    std::unique_ptr<process> start_after(const std::string& prefix, const std::vector<std::string>& args) {
        ++runs;
        std::vector<std::string> sh_args{"-c", prefix + "; exec \"$0\" \"$@\"", tool.string()};
        sh_args.insert(sh_args.end(), args.begin(), args.end());
        auto p = std::make_unique<process>("/bin/sh", sh_args, env, out_file(), err_file());
        BOOST_REQUIRE_MESSAGE(p->started(), "cannot start /bin/sh");
        return p;
    }

    /// An earlier life of the agent: bootstraps in-process with the install token and
    /// returns the credentials it would have kept.
    sekuire::installation_credentials earlier_life() {
        sekuire::beacon_options o;
        o.agent_id = agent;
        o.install_token = install_token;
        o.startup_jitter = std::chrono::milliseconds(0);
        o.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; };
        sekuire::basic_beacon<sekuire::httplib_transport, sekuire::system_clock, sekuire::memory_store, st::fixed_probe> b{
            o, sekuire::httplib_transport(backend.url(), sekuire::transport_options{})};
        b.step();
        BOOST_REQUIRE(b.is_connected());
        return *b.get_installation_credentials();
    }

    /// The environment of a restart from `creds` (no install token).
    void recover_with(const sekuire::installation_credentials& creds) {
        env.erase(proto::env::install_token);
        env[proto::env::installation_id] = creds.installation_id;
        env[proto::env::refresh_token] = creds.refresh_token;
        env[proto::env::runtime_token] = creds.runtime_token;
    }

    /// Starts the `sekuire` program (its `run` subcommand is sekuire-run) with `args`.
    std::unique_ptr<process> start_cli(const std::vector<std::string>& args) {
        ++runs;
        const fs::path cli = tool.parent_path() / "sekuire";
        BOOST_REQUIRE_MESSAGE(::access(cli.c_str(), X_OK) == 0, "the sekuire program is missing at " << cli.string());
        auto p = std::make_unique<process>(cli, args, env, out_file(), err_file());
        BOOST_REQUIRE_MESSAGE(p->started(), "cannot start " << cli.string());
        return p;
    }

    /// The port of the health server, from its line on standard error (waits, bounded).
    int health_port(process& p) {
        const std::string marker = "health endpoints on http://127.0.0.1:";
        BOOST_REQUIRE_MESSAGE(wait_until([&] { return contains(err(), marker) || !p.running(); }, 5s),
                              "no health line; stderr: " << err());
        const std::string e = err();
        const auto at = e.find(marker);
        BOOST_REQUIRE(at != std::string::npos);
        return std::stoi(e.substr(at + marker.size()));
    }

    /// Runs sekuire-run to its end (bounded); returns its exit code.
    int run(const std::vector<std::string>& args, std::chrono::milliseconds limit = 10s) {
        auto p = start(args);
        return p->wait(limit);
    }

    fs::path out_file() const { return file("out-" + std::to_string(runs) + ".txt"); }
    fs::path err_file() const { return file("err-" + std::to_string(runs) + ".txt"); }
    std::string out() const { return read_file(out_file()); }
    std::string err() const { return read_file(err_file()); }

    /// The one installation the backend knows (waits for the bootstrap, bounded).
    std::string installation_id() {
        BOOST_REQUIRE_MESSAGE(wait_until([&] { return !backend.installations().empty(); }, 5s),
                              "no installation; stderr: " << err());
        return backend.installations().front().installation_id;
    }

    std::string state(const std::string& id) const { return st::to_string(backend.installation(id)->state); }
    std::string last_status(const std::string& id) const {
        const auto s = backend.installation(id)->last_status;
        return s ? proto::to_string(*s) : "(none)";
    }
    std::size_t heartbeats(const std::string& id) const { return backend.request_count(proto::path::heartbeat(id)); }
    std::size_t requests() const {
        std::size_t n = 0;
        for (const auto& kv : backend.request_counts()) n += kv.second;
        return n;
    }
};

} // namespace

BOOST_AUTO_TEST_SUITE(sekuire_run)

BOOST_FIXTURE_TEST_CASE(exit_code_of_the_command_and_a_final_stopped_heartbeat, fixture) {
    const auto code = run({"--cmd", "exit 7"});
    BOOST_TEST(code == 7);
    const std::string id = installation_id();
    BOOST_TEST(state(id) == "stopped");
    BOOST_TEST(last_status(id) == "stopped");
    BOOST_TEST(heartbeats(id) >= 2u); // registration, final
    BOOST_TEST(contains(err(), "installation " + id + " connected"));
}

BOOST_FIXTURE_TEST_CASE(a_command_killed_by_a_signal_gives_128_plus_the_signal, fixture) {
    BOOST_TEST(run({"--cmd", "kill -TERM $$"}) == 143);
    env[proto::env::install_token] = backend.create_install_token();
    BOOST_TEST(run({"--cmd", "kill -KILL $$"}) == 137);
    env[proto::env::install_token] = backend.create_install_token();
    BOOST_TEST(run({"--cmd", "true"}) == 0);
    BOOST_TEST(backend.installations().size() == 3u);
}

BOOST_FIXTURE_TEST_CASE(the_command_gets_the_installation_id_and_no_secret, fixture) {
    // Neither a token nor a way to one: the credentials file holds the refresh token, and
    // the API key can recover the installation (rotating the refresh token under us).
    env[proto::env::credentials_file] = file("credentials.json").string();
    env[proto::env::api_key] = "sk_live_mock_0123456789abcdef";
    env[proto::env::workspace_id] = "ws_run";
    const fs::path dump = file("env.txt");
    BOOST_TEST(run({"--cmd", "env > " + q(dump)}) == 0);
    const std::string id = installation_id();
    const std::string text = read_file(dump);
    const auto vars = parse_env(text);
    BOOST_TEST(vars.count(proto::env::installation_id) == 1u);
    if (vars.count(proto::env::installation_id)) BOOST_TEST(vars.at(proto::env::installation_id) == id);
    BOOST_TEST(vars.count(proto::env::install_token) == 0u);
    BOOST_TEST(vars.count(proto::env::refresh_token) == 0u);
    BOOST_TEST(vars.count(proto::env::runtime_token) == 0u);
    BOOST_TEST(vars.count(proto::env::credentials_file) == 0u);
    BOOST_TEST(vars.count(proto::env::api_key) == 0u);
    BOOST_TEST(!contains(text, install_token));
    BOOST_TEST(!contains(text, "sk_live_mock_0123456789abcdef"));
    BOOST_TEST(fs::exists(file("credentials.json"))); // it was used, by sekuire-run only
    // The rest of the environment is passed on.
    BOOST_TEST(vars.count(proto::env::agent_id) == 1u);
    BOOST_TEST(vars.count(proto::env::workspace_id) == 1u);
    BOOST_TEST(vars.count("PATH") == 1u);
}

BOOST_FIXTURE_TEST_CASE(recovers_from_environment_credentials_and_never_passes_them_on, fixture) {
    const auto creds = earlier_life();
    recover_with(creds);

    const fs::path dump = file("env.txt");
    BOOST_TEST(run({"--cmd", "env > " + q(dump)}) == 0);
    BOOST_TEST(backend.installations().size() == 1u); // recovered, not a new installation
    BOOST_TEST(backend.request_count(proto::path::bootstrap) == 1u);
    BOOST_TEST(state(creds.installation_id) == "stopped");
    const std::string text = read_file(dump);
    const auto vars = parse_env(text);
    BOOST_TEST(vars.count(proto::env::installation_id) == 1u);
    if (vars.count(proto::env::installation_id))
        BOOST_TEST(vars.at(proto::env::installation_id) == creds.installation_id);
    BOOST_TEST(vars.count(proto::env::refresh_token) == 0u);
    BOOST_TEST(vars.count(proto::env::runtime_token) == 0u);
    BOOST_TEST(!contains(text, creds.refresh_token));
    BOOST_TEST(!contains(text, creds.runtime_token));
    // Nor does the program print them.
    BOOST_TEST(!contains(err(), creds.refresh_token));
    BOOST_TEST(!contains(err(), creds.runtime_token));
    BOOST_TEST(!contains(out(), creds.refresh_token));
}

BOOST_FIXTURE_TEST_CASE(heartbeats_reach_the_backend_while_the_command_runs, fixture) {
    env.erase(proto::env::heartbeat_interval); // the flag sets it
    auto p = start({"--heartbeat-interval", "1", "--capability", "summarize", "--capability", "classify", "--cmd",
                    "sleep 4"});
    const std::string id = installation_id();
    BOOST_TEST(wait_until([&] { return heartbeats(id) >= 2 || !p->running(); }, 5s));
    BOOST_TEST(p->running());
    BOOST_TEST(heartbeats(id) >= 2u);
    BOOST_TEST(state(id) == "healthy");
    BOOST_TEST(last_status(id) == "healthy");
    BOOST_TEST(p->wait() == 0);
    BOOST_TEST(heartbeats(id) >= 3u);
    BOOST_TEST(state(id) == "stopped");
    BOOST_TEST(last_status(id) == "stopped");
    const std::vector<std::string> caps{"summarize", "classify"};
    BOOST_TEST(backend.installation(id)->capabilities == caps, boost::test_tools::per_element());
}

BOOST_FIXTURE_TEST_CASE(sigterm_sigint_and_sighup_are_passed_on_to_the_command, fixture) {
    struct one {
        int sig;
        const char* name;
        int code;
    };
    for (const one& c : {one{SIGTERM, "TERM", 21}, one{SIGINT, "INT", 22}, one{SIGHUP, "HUP", 23}}) {
        BOOST_TEST_CONTEXT("signal " << c.name) {
            const fs::path ready = file(std::string("ready-") + c.name);
            const fs::path got = file(std::string("got-") + c.name);
            const std::string cmd = "trap 'echo TERM > " + q(got) + "; exit 21' TERM; trap 'echo INT > " + q(got) +
                                    "; exit 22' INT; trap 'echo HUP > " + q(got) + "; exit 23' HUP; touch " + q(ready) +
                                    "; " + idle(10) + "; exit 99";
            env[proto::env::install_token] = backend.create_install_token();
            auto p = start({"--cmd", cmd});
            BOOST_REQUIRE(wait_until([&] { return fs::exists(ready) || !p->running(); }, 5s));
            BOOST_REQUIRE(p->running());
            p->signal(c.sig);
            BOOST_TEST(p->wait() == c.code);
            BOOST_TEST(trimmed(read_file(got)) == c.name);
        }
    }
    // Each run had an installation of its own and ended with a final heartbeat.
    BOOST_TEST(backend.installations().size() == 3u);
    for (const auto& in : backend.installations()) BOOST_TEST(st::to_string(in.state) == std::string("stopped"));
}

BOOST_FIXTURE_TEST_CASE(revocation_sends_sigterm_to_the_command, fixture) {
    const fs::path ready = file("ready");
    const fs::path got = file("got");
    auto p = start({"--cmd", "trap 'echo TERM > " + q(got) + "; exit 5' TERM; touch " + q(ready) + "; " + idle(10)});
    const std::string id = installation_id();
    BOOST_REQUIRE(wait_until([&] { return fs::exists(ready) || !p->running(); }, 5s));
    backend.revoke(id, "Emergency shutdown initiated by admin", 5000);
    BOOST_REQUIRE(wait_until([&] { return contains(err(), "(SIGTERM)") || !p->running(); }, 5s));
    const std::size_t beats = heartbeats(id); // the last one got the revocation
    BOOST_TEST(p->wait() == 5);
    BOOST_TEST(trimmed(read_file(got)) == "TERM");
    BOOST_TEST(state(id) == "revoked");
    BOOST_TEST(heartbeats(id) == beats); // no final heartbeat after a revocation
    BOOST_TEST(contains(err(), "revoked"));
    BOOST_TEST(contains(err(), "Emergency shutdown initiated by admin"));
}

BOOST_FIXTURE_TEST_CASE(a_command_ignoring_sigterm_is_killed_after_the_revocation_timeout, fixture) {
    const fs::path ready = file("ready");
    auto p = start({"--cmd", "trap '' TERM; touch " + q(ready) + "; " + idle(10)});
    const std::string id = installation_id();
    BOOST_REQUIRE(wait_until([&] { return fs::exists(ready) || !p->running(); }, 5s));
    backend.revoke(id, "revoked in a test", 500);
    // The moment sekuire-run says it sent SIGTERM.
    BOOST_REQUIRE(wait_until([&] { return contains(err(), "(SIGTERM)") || !p->running(); }, 5s));
    const auto term_at = steady::now();
    BOOST_TEST(p->wait() == 137);
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(p->exited_at() - term_at).count();
    BOOST_TEST(waited >= 400); // the 500 ms shutdown timeout, less polling slack
    BOOST_TEST(waited < 5000); // not the 10 s default
    BOOST_TEST(contains(err(), "SIGKILL"));
    BOOST_TEST(state(id) == "revoked");
}

BOOST_FIXTURE_TEST_CASE(a_terminate_command_stops_the_command_like_a_revocation, fixture) {
    const fs::path ready = file("ready");
    const fs::path got = file("got");
    // Notes SIGTERM but keeps running: killed once the command's timeout has passed.
    auto p = start({"--cmd", "trap 'echo TERM > " + q(got) + "' TERM; touch " + q(ready) + "; " + idle(10)});
    const std::string id = installation_id();
    BOOST_REQUIRE(wait_until([&] { return fs::exists(ready) || !p->running(); }, 5s));
    backend.send_command(id, "terminate", "scale down", 500);
    BOOST_REQUIRE(wait_until([&] { return fs::exists(got) || !p->running(); }, 5s));
    const auto term_at = steady::now();
    BOOST_TEST(p->wait() == 137);
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(p->exited_at() - term_at).count();
    BOOST_TEST(waited >= 350);
    BOOST_TEST(waited < 5000);
    BOOST_TEST(trimmed(read_file(got)) == "TERM");
    BOOST_TEST(contains(err(), "terminate"));
    // Not revoked: the final heartbeat leaves the installation stopped.
    BOOST_TEST(state(id) == "stopped");
}

// A regression test: `steady_clock::now() + milliseconds(shutdown_timeout_ms)` overflows
// for values above about 292 years (9.2e15 ms), which once SIGKILLed the command at once
// (signed overflow, undefined behaviour). The timeout is now clamped to a day.
BOOST_FIXTURE_TEST_CASE(a_huge_shutdown_timeout_does_not_kill_at_once, fixture) {
    const fs::path ready = file("ready");
    auto p = start({"--cmd", "trap 'sleep 0.3; exit 3' TERM; touch " + q(ready) + "; " + idle(10)});
    const std::string id = installation_id();
    BOOST_REQUIRE(wait_until([&] { return fs::exists(ready) || !p->running(); }, 5s));
    backend.revoke(id, "revoked in a test", std::int64_t(10'000'000'000'000)); // about 317 years
    BOOST_TEST(p->wait() == 3);
    BOOST_TEST(!contains(err(), "SIGKILL"));
}

BOOST_FIXTURE_TEST_CASE(pause_and_resume_are_logged_and_reported, fixture) {
    const fs::path done = file("done");
    auto p = start({"--cmd", "i=0; while [ ! -e " + q(done) + " ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done"});
    const std::string id = installation_id();
    backend.send_command(id, "pause", "maintenance window");
    BOOST_TEST(wait_until([&] { return last_status(id) == "paused"; }, 6s));
    BOOST_TEST(p->running());
    backend.send_command(id, "resume");
    BOOST_TEST(wait_until([&] { return last_status(id) == "healthy"; }, 6s));
    std::ofstream(done).put('\n');
    BOOST_TEST(p->wait() == 0);
    const std::string e = err();
    const auto paused = e.find("command pause: maintenance window");
    const auto resumed = e.find("command resume");
    BOOST_TEST(paused != std::string::npos);
    BOOST_TEST(resumed != std::string::npos);
    BOOST_TEST(paused < resumed);
    BOOST_TEST(state(id) == "stopped");
}

BOOST_FIXTURE_TEST_CASE(no_heartbeat_runs_the_command_with_a_warning_and_no_request, fixture) {
    const fs::path dump = file("env.txt");
    BOOST_TEST(run({"--no-heartbeat", "--cmd", "env > " + q(dump) + "; exit 3"}) == 3);
    BOOST_TEST(contains(err(), "warning"));
    BOOST_TEST(contains(err(), "--no-heartbeat"));
    BOOST_TEST(requests() == 0u);
    BOOST_TEST(backend.installations().empty());
    const auto vars = parse_env(read_file(dump));
    BOOST_TEST(vars.count(proto::env::install_token) == 0u);
    BOOST_TEST(vars.count(proto::env::installation_id) == 0u);
}

BOOST_FIXTURE_TEST_CASE(bad_flags_exit_2_without_running_anything, fixture) {
    const fs::path ran = file("ran");
    const std::string touch = "touch " + q(ran);
    const std::vector<std::vector<std::string>> cases{
        {},
        {"--cmd"},
        {"--bogus", "--cmd", touch},
        {"--cmd", touch, "extra"},
        {"--cmd", touch, "--heartbeat-interval"},
        {"--cmd", touch, "--capability", ""},
        {"--cmd", touch, "--capability", "a", "b"},
        {"--cmd", ""},
        {"--cmd", touch, "--", "true"},
        {"--"},
        {"--check", "--cmd", touch},
    };
    for (const auto& args : cases) {
        std::string shown;
        for (const auto& a : args) shown += "[" + a + "]";
        BOOST_TEST_CONTEXT("arguments " << shown) {
            BOOST_TEST(run(args) == 2);
            // The short form: the error, the synopsis and where to look; never the whole help.
            BOOST_TEST(contains(err(), "usage: sekuire-run"));
            BOOST_TEST(contains(err(), "try 'sekuire-run --help'"));
            BOOST_TEST(!contains(err(), "--health-addr"));
        }
    }
    // A bad value is a configuration error: one line that names the flag and the value.
    for (const std::string bad : {"0", "86401", "1x"}) {
        BOOST_TEST_CONTEXT("--heartbeat-interval " << bad) {
            BOOST_TEST(run({"--cmd", touch, "--heartbeat-interval", bad}) == 2);
            const std::string e = err();
            BOOST_TEST(contains(e, "--heartbeat-interval='" + bad + "'"));
            BOOST_TEST(std::count(e.begin(), e.end(), '\n') == 1);
        }
    }
    // An invalid environment is a configuration error too, naming the variable.
    env[proto::env::heartbeat_interval] = "soon";
    BOOST_TEST(run({"--cmd", touch}) == 2);
    BOOST_TEST(contains(err(), "SEKUIRE_HEARTBEAT_INTERVAL='soon'"));
    BOOST_TEST(!fs::exists(ran));
    BOOST_TEST(requests() == 0u);

    env[proto::env::heartbeat_interval] = "1";
    BOOST_TEST(run({"--help"}) == 0);
    BOOST_TEST(contains(out(), "usage"));
    BOOST_TEST(requests() == 0u);
}

BOOST_FIXTURE_TEST_CASE(degraded_mode_still_runs_the_command_with_a_warning, fixture) {
    env[proto::env::install_token] = "skt_not_a_token_the_backend_knows";
    const fs::path dump = file("env.txt");
    BOOST_TEST(run({"--cmd", "env > " + q(dump) + "; exit 4"}) == 4);
    BOOST_TEST(contains(err(), "warning"));
    BOOST_TEST(contains(err(), "degraded"));
    BOOST_TEST(backend.installations().empty());
    BOOST_TEST(backend.request_count(proto::path::bootstrap) == 1u);
    const auto vars = parse_env(read_file(dump));
    BOOST_TEST(vars.count(proto::env::installation_id) == 0u);
    BOOST_TEST(vars.count(proto::env::install_token) == 0u);
}

BOOST_FIXTURE_TEST_CASE(what_the_command_leaves_running_in_its_group_ends_with_it, fixture) {
    // A background job outliving the command would keep running after the installation
    // was reported stopped: it gets SIGTERM, and the exit waits for it.
    const fs::path pid_file = file("pid");
    BOOST_TEST(run({"--cmd", "sleep 30 & echo $! > " + q(pid_file) + "; exit 4"}) == 4);
    const pid_t leftover = read_pid(pid_file);
    BOOST_TEST_REQUIRE(leftover > 0);
    BOOST_TEST(wait_until([&] { return !process_alive(leftover); }, 2s));
    BOOST_TEST(contains(err(), "process group is still running: SIGTERM"));
    BOOST_TEST(state(installation_id()) == "stopped");
}

BOOST_FIXTURE_TEST_CASE(a_revocation_reaches_the_processes_the_command_started, fixture) {
    // The command obeys SIGTERM at once, but a job it started ignores it: the kill switch
    // must reach that one too, with SIGKILL once the shutdown timeout has passed.
    const fs::path ready = file("ready");
    const fs::path pid_file = file("pid");
    auto p = start({"--cmd", "trap 'exit 0' TERM; (trap '' TERM; " + idle(20) + ") & echo $! > " + q(pid_file) +
                                 "; touch " + q(ready) + "; " + idle(10)});
    const std::string id = installation_id();
    BOOST_REQUIRE(wait_until([&] { return fs::exists(ready) || !p->running(); }, 5s));
    const pid_t job = read_pid(pid_file);
    BOOST_TEST_REQUIRE(job > 0);
    backend.revoke(id, "revoked in a test", 500);
    BOOST_REQUIRE(wait_until([&] { return contains(err(), "(SIGTERM)") || !p->running(); }, 5s));
    const auto term_at = steady::now();
    BOOST_TEST(p->wait() == 0); // the command's own code
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(p->exited_at() - term_at).count();
    BOOST_TEST(waited >= 400); // it waited for the job until the 500 ms timeout
    BOOST_TEST(contains(err(), "SIGKILL"));
    BOOST_TEST(wait_until([&] { return !process_alive(job); }, 2s));
    BOOST_TEST(state(id) == "revoked");
}

BOOST_FIXTURE_TEST_CASE(a_signal_during_the_bootstrap_means_the_command_never_runs, fixture) {
    st::mock_fault slow;
    slow.path_prefix = std::string(proto::path::bootstrap);
    slow.delay = 2s;
    backend.add_fault(slow);
    const fs::path ran = file("ran");
    auto p = start({"--cmd", "touch " + q(ran)});
    // The bootstrap request has arrived: sekuire-run blocked its signals long before.
    BOOST_REQUIRE(wait_until([&] { return backend.request_count(proto::path::bootstrap) >= 1 || !p->running(); }, 5s));
    BOOST_REQUIRE(p->running());
    p->signal(SIGTERM);
    BOOST_TEST(p->wait() == 128 + SIGTERM);
    BOOST_TEST(!fs::exists(ran));
    BOOST_TEST(contains(err(), "SIGTERM during the bootstrap"));
}

BOOST_FIXTURE_TEST_CASE(a_revoked_installation_does_not_start_the_command, fixture) {
    const auto creds = earlier_life();
    backend.revoke(creds.installation_id, "decommissioned", 1000);
    recover_with(creds);
    const fs::path ran = file("ran");
    BOOST_TEST(run({"--cmd", "touch " + q(ran)}) == 77); // fatal for these credentials
    BOOST_TEST(!fs::exists(ran));
    BOOST_TEST(contains(err(), "revoked"));
    BOOST_TEST(contains(err(), "not started"));
    BOOST_TEST(state(creds.installation_id) == "revoked");
}

BOOST_FIXTURE_TEST_CASE(signals_ignored_by_whoever_started_it_stay_ignored, fixture) {
    // As under nohup (SIGHUP ignored), and with SIGCHLD ignored too, which would let the
    // kernel reap the command and lose its exit status.
    const fs::path ready = file("ready");
    const fs::path done = file("done");
    auto p = start_after("trap '' HUP CHLD", {"--cmd", "touch " + q(ready) + "; i=0; while [ ! -e " + q(done) +
                                                           " ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; exit 7"});
    BOOST_REQUIRE(wait_until([&] { return fs::exists(ready) || !p->running(); }, 5s));
    BOOST_REQUIRE(p->running());
    p->signal(SIGHUP);
    // Not passed on, and ignored in the command: it keeps running until told to end.
    BOOST_TEST(!wait_until([&] { return !p->running(); }, 500ms));
    std::ofstream(done).put('\n');
    BOOST_TEST(p->wait() == 7);
}

BOOST_FIXTURE_TEST_CASE(flags_take_their_value_with_or_without_an_equals_sign, fixture) {
    env.erase(proto::env::heartbeat_interval);
    env.erase(proto::env::agent_id);
    env.erase(proto::env::install_token);
    env.erase(proto::env::api_url);
    BOOST_TEST(run({"--api-url=" + backend.url(), "--agent-id", agent, "--install-token=" + install_token,
                    "--heartbeat-interval=1", "--capability=summarize", "--capability", "classify", "--log-level=debug",
                    "--cmd=exit 6"}) == 6);
    const std::string id = installation_id();
    const std::vector<std::string> caps{"summarize", "classify"};
    BOOST_TEST(backend.installation(id)->capabilities == caps, boost::test_tools::per_element());
    BOOST_TEST(state(id) == "stopped");
    BOOST_TEST(contains(err(), "debug:")); // --log-level=debug shows debug lines
    // The token given as a flag is never printed.
    BOOST_TEST(!contains(err(), install_token));
}

BOOST_FIXTURE_TEST_CASE(a_program_and_its_arguments_after_the_separator, fixture) {
    const fs::path dump = file("env.txt");
    // No shell: the arguments arrive as they are, spaces and quotes included.
    BOOST_TEST(run({"--", "/bin/sh", "-c", "printf '%s|' \"$@\" > " + q(file("args.txt")) + "; env > " + q(dump) +
                                               "; exit 4",
                    "sh", "a b", "'c'", "--cmd"}) == 4);
    BOOST_TEST(read_file(file("args.txt")) == "a b|'c'|--cmd|");
    const auto vars = parse_env(read_file(dump));
    BOOST_TEST(vars.count(proto::env::installation_id) == 1u);
    BOOST_TEST(vars.count(proto::env::install_token) == 0u);
    // PROGRAM is looked up in PATH; a missing one is refused before any bootstrap, as a shell does.
    BOOST_TEST(run({"--", "env"}) == 0);
    const std::size_t installations = backend.installations().size();
    BOOST_TEST(run({"--", "no-such-program-sekuire-test"}) == 127);
    BOOST_TEST(contains(err(), "cannot run 'no-such-program-sekuire-test': not found in PATH"));
    BOOST_TEST(run({"--", file("").string()}) == 126); // a directory
    BOOST_TEST(backend.installations().size() == installations);
}

BOOST_FIXTURE_TEST_CASE(version_and_help, fixture) {
    BOOST_TEST(run({"--version"}) == 0);
    BOOST_TEST(contains(out(), "sekuire-run (sekuire-cpp) " + std::string(sekuire::sdk_version)));
    BOOST_TEST(run({"--help"}) == 0);
    for (const char* flag : {"--cmd", "--api-url", "--install-token-file", "--startup-jitter", "--cancel-grace-period", "--cancel-signal",
                             "--log-level", "--log-format", "--health-addr", "--metrics-file", "--check",
                             "--allow-insecure-http", "SEKUIRE_CREDENTIALS_FILE"})
        BOOST_TEST(contains(out(), flag), flag);
    BOOST_TEST(requests() == 0u);
}

BOOST_FIXTURE_TEST_CASE(configuration_errors_are_one_line_naming_the_variable_and_value, fixture) {
    const fs::path ran = file("ran");
    struct one {
        std::map<std::string, std::string> set;
        std::vector<std::string> unset;
        std::vector<std::string> args;
        std::string expected;
    };
    const std::vector<one> cases{
        {{{proto::env::api_url, "bogus"}}, {}, {}, "SEKUIRE_API_URL='bogus': the URL is not a valid http or https URL"},
        {{}, {}, {"--api-url", "ftp://x"}, "--api-url='ftp://x'"},
        {{{proto::env::api_url, "http://backend:5556"}}, {}, {}, "SEKUIRE_API_URL='http://backend:5556': plain http"},
        {{}, {proto::env::agent_id}, {}, "SEKUIRE_AGENT_ID is not set"},
        {{{"SEKUIRE_LOG_LEVEL", "loud"}}, {}, {}, "SEKUIRE_LOG_LEVEL='loud'"},
        {{{"SEKUIRE_ALLOW_INSECURE_HTTP", "maybe"}}, {}, {}, "SEKUIRE_ALLOW_INSECURE_HTTP='maybe'"},
        {{}, {}, {"--cancel-signal", "NOPE"}, "--cancel-signal='NOPE'"},
        {{}, {}, {"--cancel-grace-period", "-1"}, "--cancel-grace-period='-1'"},
        {{{proto::env::startup_jitter, "301"}}, {}, {}, "SEKUIRE_STARTUP_JITTER='301'"},
        {{}, {}, {"--health-addr", "nowhere"}, "--health-addr='nowhere'"},
        {{}, {}, {"--install-token-file", file("missing").string()}, "--install-token-file='" + file("missing").string() + "'"},
        {{}, {}, {"--install-token", "skt_x", "--install-token-file", file("missing").string()}, "give one"},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.expected) {
            auto saved = env;
            for (const auto& kv : c.set) env[kv.first] = kv.second;
            for (const auto& n : c.unset) env.erase(n);
            // A secret among the settings must not show in the message.
            env[proto::env::api_key] = "sk_live_secret_0123456789abcdef";
            std::vector<std::string> args = c.args;
            args.insert(args.end(), {"--cmd", "touch " + q(ran)});
            BOOST_TEST(run(args) == 2);
            const std::string e = err();
            BOOST_TEST(contains(e, c.expected), e);
            BOOST_TEST(std::count(e.begin(), e.end(), '\n') == 1); // one line
            BOOST_TEST(!contains(e, "[sekuire:"));
            BOOST_TEST(!contains(e, "httplib_transport"));
            BOOST_TEST(!contains(e, "sk_live_secret_0123456789abcdef"));
            BOOST_TEST(!contains(e, install_token));
            env = saved;
        }
    }
    BOOST_TEST(!fs::exists(ran));
    BOOST_TEST(requests() == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_secret_in_a_mistyped_flag_is_masked_in_the_usage_error, fixture) {
    BOOST_TEST(run({"--instal-token", "skt_a_secret_value_0123456789", "--cmd", "true"}) == 2);
    BOOST_TEST(!contains(err(), "skt_a_secret_value_0123456789"));
    BOOST_TEST(contains(err(), "--instal-token"));
    BOOST_TEST(run({"--api-keys=a_secret_value_0123456789", "--cmd", "true"}) == 2);
    BOOST_TEST(!contains(err(), "a_secret_value_0123456789"));
}

BOOST_FIXTURE_TEST_CASE(secrets_from_files, fixture) {
    env.erase(proto::env::install_token);
    const fs::path token_file = file("token");
    std::ofstream(token_file) << "  " << install_token << "\n";
    env["SEKUIRE_INSTALL_TOKEN_FILE"] = token_file.string();
    const fs::path dump = file("env.txt");
    BOOST_TEST(run({"--cmd", "env > " + q(dump)}) == 0);
    const std::string id = installation_id();
    BOOST_TEST(state(id) == "stopped");
    const auto vars = parse_env(read_file(dump));
    BOOST_TEST(vars.count("SEKUIRE_INSTALL_TOKEN_FILE") == 0u); // not even the path
    // An empty file is refused.
    std::ofstream(file("empty")).put('\n');
    BOOST_TEST(run({"--install-token-file", file("empty").string(), "--cmd", "true"}) == 2);
    BOOST_TEST(contains(err(), "is empty"));
}

BOOST_FIXTURE_TEST_CASE(the_command_cannot_read_the_secrets_of_its_parent, fixture) {
    // The command runs as the same user: it reads /proc/$PPID/environ and cmdline. The
    // secrets there are overwritten once read, and the process is not dumpable, so that
    // (as a user other than root) environ cannot be opened at all.
    env[proto::env::api_key] = "sk_live_mock_0123456789abcdef";
    env[proto::env::workspace_id] = "ws_run";
    env[proto::env::credentials_file] = file("credentials.json").string();
    env.erase(proto::env::install_token);
    const std::string cmd = "cat /proc/$PPID/environ > " + q(file("environ")) + " 2>/dev/null; echo $? > " +
                            q(file("environ.rc")) + "; cat /proc/$PPID/cmdline > " + q(file("cmdline")) +
                            "; cat /proc/$PPID/mem > /dev/null 2>&1; echo $? > " + q(file("mem.rc"));
    BOOST_TEST(run({"--install-token", install_token, "--cmd", cmd}) == 0);
    const std::string id = installation_id(); // the token given as a flag worked
    BOOST_TEST(state(id) == "stopped");
    const std::string environ_text = read_file(file("environ"));
    const std::string cmdline = read_file(file("cmdline"));
    BOOST_TEST(!contains(environ_text, "sk_live_mock_0123456789abcdef"));
    BOOST_TEST(!contains(environ_text, file("credentials.json").string()));
    BOOST_TEST(!contains(cmdline, install_token));
    BOOST_TEST(contains(cmdline, "--install-token")); // the flag is there, its value is not
    if (::geteuid() != 0) {
        BOOST_TEST(trimmed(read_file(file("environ.rc"))) != "0");
        BOOST_TEST(trimmed(read_file(file("mem.rc"))) != "0");
    }
}

BOOST_FIXTURE_TEST_CASE(check_tells_connected_retryable_and_refused_apart, fixture) {
    env[proto::env::credentials_file] = file("credentials.json").string();
    // Connected: 0, and the credentials are kept for the run that follows.
    BOOST_TEST(run({"--check"}) == 0);
    BOOST_TEST(contains(err(), "check passed"));
    BOOST_TEST(backend.installations().size() == 1u);
    BOOST_TEST(fs::exists(file("credentials.json")));
    BOOST_TEST(run({"--cmd", "true"}) == 0);
    BOOST_TEST(backend.installations().size() == 1u); // recovered from the file, not a new bootstrap
    // A backend that cannot be reached: retryable.
    env[proto::env::api_url] = "http://127.0.0.1:1";
    BOOST_TEST(run({"--check", "--credentials-file", file("other.json").string()}) == 75);
    BOOST_TEST(contains(err(), "retryable"));
    // Refused credentials: fatal.
    env[proto::env::api_url] = backend.url();
    env[proto::env::install_token] = "skt_not_a_token_the_backend_knows";
    BOOST_TEST(run({"--check", "--credentials-file", file("third.json").string()}) == 77);
    // Without a credentials file a check would spend what the next run needs: refused.
    env.erase(proto::env::credentials_file);
    BOOST_TEST(run({"--check"}) == 2);
    BOOST_TEST(contains(err(), "--check needs a credentials file"));
}

BOOST_FIXTURE_TEST_CASE(plain_http_to_another_host_only_when_allowed, fixture) {
    env[proto::env::api_url] = "http://sekuire-backend.invalid:5556"; // a compose network's host name
    env[proto::env::credentials_file] = file("credentials.json").string();
    BOOST_TEST(run({"--check"}) == 2);
    BOOST_TEST(contains(err(), "--allow-insecure-http"));
    BOOST_TEST(run({"--check", "--allow-insecure-http"}) == 75); // allowed; that host cannot be reached
    BOOST_TEST(contains(err(), "warning: plain http to a host other than loopback"));
    env["SEKUIRE_ALLOW_INSECURE_HTTP"] = "1";
    BOOST_TEST(run({"--check"}) == 75);
    BOOST_TEST(contains(err(), "warning: plain http"));
    // Loopback needs no permission and gets no warning.
    env[proto::env::api_url] = backend.url();
    BOOST_TEST(run({"--cmd", "true"}) == 0);
    BOOST_TEST(!contains(err(), "plain http"));
}

BOOST_FIXTURE_TEST_CASE(the_commands_own_counters_reach_the_heartbeats, fixture) {
    // The command writes its counters to $SEKUIRE_METRICS_FILE, atomically by rename; a bad
    // file keeps the last good values and is reported once.
    const std::string write_good =
        "printf '{\"requests_handled\":1500,\"errors\":2,\"avg_latency_ms\":145.4}' > \"$SEKUIRE_METRICS_FILE.tmp\" && "
        "mv \"$SEKUIRE_METRICS_FILE.tmp\" \"$SEKUIRE_METRICS_FILE\"";
    const std::string write_bad = "printf '{\"errors\":\"many\"}' > \"$SEKUIRE_METRICS_FILE\"";
    const std::string wait_for = "i=0; while [ ! -e " + q(file("next")) + " ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done";
    const std::string cmd = "echo \"$SEKUIRE_METRICS_FILE\" > " + q(file("path")) + "; " + write_good + "; " + wait_for +
                            "; " + write_bad + "; touch " + q(file("bad")) + "; i=0; while [ ! -e " + q(file("done")) +
                            " ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done";
    auto p = start({"--cmd", cmd});
    const std::string id = installation_id();
    BOOST_TEST(wait_until([&] { return backend.installation(id)->metrics.requests_handled == 1500 || !p->running(); }, 6s));
    auto m = backend.installation(id)->metrics;
    BOOST_TEST(m.requests_handled == 1500);
    BOOST_TEST(m.errors == 2);
    BOOST_TEST(m.avg_latency_ms == 145);
    std::ofstream(file("next")).put('\n');
    BOOST_REQUIRE(wait_until([&] { return fs::exists(file("bad")) || !p->running(); }, 5s));
    const std::size_t beats = heartbeats(id);
    BOOST_TEST(wait_until([&] { return heartbeats(id) >= beats + 2 || !p->running(); }, 6s));
    m = backend.installation(id)->metrics;
    BOOST_TEST(m.requests_handled == 1500); // the last good values
    BOOST_TEST(m.errors == 2);
    std::ofstream(file("done")).put('\n');
    BOOST_TEST(p->wait() == 0);
    const std::string e = err();
    std::size_t warnings = 0;
    for (auto at = e.find("keeping the last good values"); at != std::string::npos; at = e.find("keeping the last good values", at + 1))
        ++warnings;
    BOOST_TEST(warnings == 1u);
    // The private directory of the metrics file is gone.
    const fs::path metrics_file = trimmed(read_file(file("path")));
    BOOST_TEST(!metrics_file.empty());
    BOOST_TEST(!fs::exists(metrics_file.parent_path()));
}

BOOST_FIXTURE_TEST_CASE(health_endpoints_for_probes_and_scrapes, fixture) {
    const std::string wait_done =
        "i=0; while [ ! -e " + q(file("done")) + " ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done";
    const std::string cmd =
        "trap '" + wait_done + "; exit 0' TERM; "
        "printf '{\"requests_handled\":7,\"errors\":1,\"avg_latency_ms\":250}' > \"$SEKUIRE_METRICS_FILE\"; "
        "ls -l /proc/$$/fd > " + q(file("fds")) + "; " + wait_done + "; exit 9";
    auto p = start({"--health-addr", "127.0.0.1:0", "--cmd", cmd});
    const int port = health_port(*p);
    const std::string id = installation_id();
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(5);
    BOOST_TEST(wait_until([&] { auto r = c.Get("/readyz"); return r && r->status == 200; }, 5s));
    auto r = c.Get("/healthz");
    BOOST_TEST_REQUIRE(static_cast<bool>(r));
    BOOST_TEST(r->status == 200);
    BOOST_TEST(wait_until([&] { return fs::exists(file("fds")); }, 5s));
    BOOST_TEST(wait_until([&] { return heartbeats(id) >= 2; }, 5s));
    r = c.Get("/metrics");
    BOOST_TEST_REQUIRE(static_cast<bool>(r));
    BOOST_TEST(r->status == 200);
    const auto parsed = prometheus_check::parse(r->body);
    BOOST_TEST_REQUIRE(parsed.error.empty(), parsed.error << "\n" << r->body);
    BOOST_TEST(*parsed.value("sekuire_beacon_connected") == 1);
    BOOST_TEST(*parsed.value("sekuire_beacon_lease_held") == 1);
    BOOST_TEST(*parsed.value("sekuire_beacon_heartbeats_total") >= 1);
    BOOST_TEST(*parsed.value("sekuire_beacon_info", {{"installation_id", id}}) == 1);
    BOOST_TEST(*parsed.value("sekuire_command_running") == 1);
    BOOST_TEST(*parsed.value("sekuire_command_requests_total") == 7);
    BOOST_TEST(*parsed.value("sekuire_command_errors_total") == 1);
    BOOST_TEST(*parsed.value("sekuire_command_avg_latency_seconds") == 0.25);
    // The command inherits no socket of sekuire-run (the health server's, the beacon's).
    BOOST_TEST(!contains(read_file(file("fds")), "socket:"), read_file(file("fds")));
    // The kill switch: not ready any more.
    backend.revoke(id, "revoked in a test", 5000);
    BOOST_TEST(wait_until([&] { auto x = c.Get("/readyz"); return x && x->status == 503; }, 5s));
    std::ofstream(file("done")).put('\n');
    BOOST_TEST(p->wait() == 0); // the command handled SIGTERM
}

BOOST_FIXTURE_TEST_CASE(not_ready_in_degraded_mode, fixture) {
    env[proto::env::install_token] = "skt_not_a_token_the_backend_knows";
    auto p = start({"--health-addr", "127.0.0.1:0", "--cmd", "i=0; while [ ! -e " + q(file("done")) +
                                                                 " ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done"});
    const int port = health_port(*p);
    BOOST_REQUIRE(wait_until([&] { return contains(err(), "degraded") || !p->running(); }, 5s));
    httplib::Client c("127.0.0.1", port);
    auto r = c.Get("/readyz");
    BOOST_TEST_REQUIRE(static_cast<bool>(r));
    BOOST_TEST(r->status == 503);
    BOOST_TEST(contains(r->body, "degraded"));
    BOOST_TEST(c.Get("/healthz")->status == 200); // alive all the same
    std::ofstream(file("done")).put('\n');
    BOOST_TEST(p->wait() == 0);
    // A port that is taken is a configuration error.
    httplib::Server taken;
    const int busy = taken.bind_to_any_port("127.0.0.1");
    BOOST_TEST(run({"--health-addr", "127.0.0.1:" + std::to_string(busy), "--cmd", "true"}) == 2);
    BOOST_TEST(contains(err(), "cannot listen there"));
}

BOOST_FIXTURE_TEST_CASE(json_lines_carry_the_installation, fixture) {
    BOOST_TEST(run({"--log-format", "json", "--cmd", "true"}) == 0);
    const std::string id = installation_id();
    std::istringstream in(err());
    std::size_t lines = 0;
    bool connected = false;
    for (std::string line; std::getline(in, line); ++lines) {
        boost::system::error_code ec;
        const auto v = boost::json::parse(line, ec);
        BOOST_TEST_REQUIRE(!ec, line);
        const auto& o = v.as_object();
        BOOST_TEST(o.at("program").as_string() == "sekuire-run");
        if (o.contains("event") && o.at("event").as_string() == "connected") {
            connected = true;
            BOOST_TEST(o.at("installation_id").as_string() == id);
            BOOST_TEST(o.at("level").as_string() == "info");
        }
    }
    BOOST_TEST(lines >= 2u);
    BOOST_TEST(connected);
}

BOOST_FIXTURE_TEST_CASE(the_cancel_signal_and_grace_period_are_configurable, fixture) {
    const fs::path ready = file("ready");
    const fs::path got = file("got");
    // Notes SIGINT and keeps running: SIGKILL once the grace period (no backend timeout) passed.
    env["SEKUIRE_CANCEL_SIGNAL"] = "INT";
    auto p = start({"--cancel-grace-period", "1", "--cmd",
                    "trap 'echo INT > " + q(got) + "' INT; touch " + q(ready) + "; " + idle(10)});
    const std::string id = installation_id();
    BOOST_REQUIRE(wait_until([&] { return fs::exists(ready) || !p->running(); }, 5s));
    backend.send_command(id, "terminate", "scale down"); // no shutdown_timeout_ms
    BOOST_REQUIRE(wait_until([&] { return fs::exists(got) || !p->running(); }, 5s));
    const auto sent_at = steady::now();
    BOOST_TEST(p->wait() == 137);
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(p->exited_at() - sent_at).count();
    BOOST_TEST(waited >= 700);  // the 1 s grace period, less polling slack
    BOOST_TEST(waited < 5000);  // not the 10 s default
    BOOST_TEST(trimmed(read_file(got)) == "INT");
    BOOST_TEST(contains(err(), "(SIGINT)"));
}

BOOST_FIXTURE_TEST_CASE(sekuire_run_as_the_seed_spells_it, fixture) {
    // sekuire run --heartbeat-interval 30 with no command: say what is missing.
    auto p = start_cli({"run", "--heartbeat-interval", "30"});
    BOOST_TEST(p->wait() == 2);
    BOOST_TEST(contains(err(), "sekuire run: no command to run: give --cmd COMMAND"));
    BOOST_TEST(contains(err(), "try 'sekuire run --help'"));
    // sekuire --help lists the subcommands.
    p = start_cli({"--help"});
    BOOST_TEST(p->wait() == 0);
    BOOST_TEST(contains(out(), "run"));
    BOOST_TEST(contains(out(), "Subcommands"));
    p = start_cli({});
    BOOST_TEST(p->wait() == 2);
    p = start_cli({"walk"});
    BOOST_TEST(p->wait() == 2);
    p = start_cli({"--version"});
    BOOST_TEST(p->wait() == 0);
    BOOST_TEST(contains(out(), sekuire::sdk_version));
    // sekuire run --heartbeat-interval 30 --cmd ...: the same program as sekuire-run.
    p = start_cli({"run", "--heartbeat-interval", "30", "--cmd", "exit 3"});
    BOOST_TEST(p->wait() == 3);
    const std::string id = installation_id();
    BOOST_TEST(state(id) == "stopped");
    BOOST_TEST(contains(err(), "sekuire run: info: installation " + id + " connected"));
    // sekuire run --no-heartbeat --cmd ...
    p = start_cli({"run", "--no-heartbeat", "--cmd", "exit 5"});
    BOOST_TEST(p->wait() == 5);
    BOOST_TEST(contains(err(), "--no-heartbeat"));
    p = start_cli({"run", "--", "sh", "-c", "exit 8"});
    BOOST_TEST(p->wait() == 8);
}

BOOST_AUTO_TEST_SUITE_END()
