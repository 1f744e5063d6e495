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

#include <boost/test/unit_test.hpp>

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
        {"--cmd", touch, "--heartbeat-interval", "0"},
        {"--cmd", touch, "--heartbeat-interval", "86401"},
        {"--cmd", touch, "--heartbeat-interval", "1x"},
        {"--cmd", touch, "--heartbeat-interval"},
        {"--cmd", touch, "--capability", ""},
        {"--cmd", ""},
    };
    for (const auto& args : cases) {
        std::string shown;
        for (const auto& a : args) shown += "[" + a + "]";
        BOOST_TEST_CONTEXT("arguments " << shown) {
            BOOST_TEST(run(args) == 2);
            BOOST_TEST(contains(err(), "usage"));
        }
    }
    // An invalid environment is a configuration error too.
    env[proto::env::heartbeat_interval] = "soon";
    BOOST_TEST(run({"--cmd", touch}) == 2);
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
    BOOST_TEST(run({"--cmd", "touch " + q(ran)}) == 1);
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

BOOST_AUTO_TEST_SUITE_END()
