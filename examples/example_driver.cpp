// SPDX-License-Identifier: MIT
// Runs one example program against an in-process mock backend on 127.0.0.1 and checks
// what it does (the CTest tests labelled `example`).
//
//   example_driver <scenario> <path of the example program>
//
// Scenarios: quickstart, beacon_direct, manual_worker, shared_store; and for any example,
// usage (--help answers 0, an unknown argument 2) and bad_config (SEKUIRE_API_URL=bogus:
// one line naming the variable and its value, exit code 2, no crash).
#include <sekuire/beacon.hpp>
#include <sekuire/testing/mock_backend.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using namespace std::chrono_literals;
namespace testing = sekuire::testing;

[[noreturn]] void fail(const std::string& why, const std::string& output_file = {}) {
    std::cerr << "example_driver: FAILED: " << why << std::endl;
    if (!output_file.empty()) {
        std::ifstream in(output_file);
        std::cerr << "---- the example's output ----\n" << in.rdbuf() << "\n------------------------------" << std::endl;
    }
    std::exit(1);
}

struct child {
    pid_t pid = -1;
    std::string output;
};

child spawn(const std::string& program, const std::map<std::string, std::string>& env, const std::string& dir,
            const std::vector<std::string>& args = {}) {
    child c;
    c.output = dir + "/output.txt";
    std::vector<std::string> vars;
    for (char** e = environ; e && *e; ++e)
        if (std::string(*e).rfind("SEKUIRE_", 0) != 0) vars.emplace_back(*e);
    for (const auto& kv : env) vars.push_back(kv.first + "=" + kv.second);
    std::vector<char*> envp;
    for (auto& v : vars) envp.push_back(v.data());
    envp.push_back(nullptr);
    c.pid = ::fork();
    if (c.pid == 0) {
        if (::chdir(dir.c_str()) != 0) std::_Exit(126);
        std::FILE* out = std::fopen(c.output.c_str(), "w");
        if (!out) std::_Exit(126);
        ::dup2(::fileno(out), 1);
        ::dup2(::fileno(out), 2);
        std::vector<char*> argv{const_cast<char*>(program.c_str())};
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execve(program.c_str(), argv.data(), envp.data());
        std::_Exit(127);
    }
    if (c.pid < 0) fail("fork failed");
    return c;
}

// Waits at most `timeout` for the child to exit; returns its exit code (kills it on timeout).
int wait_exit(const child& c, std::chrono::seconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(c.pid, &status, WNOHANG);
        if (r == c.pid) {
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            fail("the example died by signal " + std::to_string(WTERMSIG(status)), c.output);
        }
        if (std::chrono::steady_clock::now() >= end) {
            ::kill(c.pid, SIGKILL);
            ::waitpid(c.pid, &status, 0);
            fail("the example did not exit in time", c.output);
        }
        std::this_thread::sleep_for(20ms);
    }
}

std::string output_of(const child& c) {
    std::ifstream in(c.output);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool output_has(const child& c, const std::string& text) { return output_of(c).find(text) != std::string::npos; }

std::string make_dir(const std::string& scenario) {
    std::string tmpl = "/tmp/sekuire-example-" + scenario + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) fail("mkdtemp failed");
    return tmpl;
}

// The installation the example created (the only one).
std::string only_installation(testing::mock_backend& backend, const child& c) {
    std::string id;
    for (int i = 0; i < 1000 && id.empty(); ++i) {
        for (const auto& in : backend.installations())
            if (in.state == testing::mock_installation_state::healthy) id = in.installation_id;
        if (id.empty()) std::this_thread::sleep_for(20ms);
    }
    if (id.empty()) fail("the example never connected", c.output);
    return id;
}

void summarize_task(testing::mock_backend& backend, const child& c) {
    testing::mock_task_request r;
    r.capability = "summarize";
    const std::string text(300, 'x');
    r.input = boost::json::object{{"text", text}};
    r.trace_id = "trace-example";
    const std::string id = backend.enqueue_task(r);
    if (!backend.wait_for_task(id, testing::mock_task_status::completed, 20s)) fail("the task was not completed", c.output);
    const auto t = backend.task(id);
    if (t->output.at("summary").as_string() != text.substr(0, 140)) fail("wrong summary", c.output);
}

void terminate_and_expect_exit(testing::mock_backend& backend, const child& c, const std::string& installation) {
    backend.send_command(installation, "terminate", "example done");
    const int code = wait_exit(c, 60s);
    if (code != 0) fail("exit code " + std::to_string(code), c.output);
}

std::map<std::string, std::string> base_env(const testing::mock_backend& backend) {
    return {{"SEKUIRE_API_URL", backend.url()},
            {"SEKUIRE_AGENT_ID", "example-agent"},
            {"SEKUIRE_WORKSPACE_ID", backend.options().workspace_id}};
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::cerr << "usage: example_driver <scenario> <program>\n";
        return 2;
    }
    const std::string scenario = argv[1];
    const std::string program = argv[2];
    ::signal(SIGPIPE, SIG_IGN);
    testing::mock_backend_options options;
    options.keepalive = 1000ms;
    options.keep_alive_timeout = 1s;
    testing::mock_backend backend(options);
    backend.start();
    const std::string dir = make_dir(scenario);
    auto env = base_env(backend);

    if (scenario == "usage") {
        const child help = spawn(program, env, dir, {"--help"});
        if (wait_exit(help, 30s) != 0) fail("--help did not exit 0", help.output);
        if (!output_has(help, "usage:")) fail("--help printed no usage", help.output);
        const child bad = spawn(program, env, make_dir(scenario + "-bad"), {"--no-such-flag"});
        if (wait_exit(bad, 30s) != 2) fail("an unknown argument did not exit 2", bad.output);
        if (!output_has(bad, "--help")) fail("an unknown argument did not point to --help", bad.output);
    } else if (scenario == "bad_config") {
        // A URL that cannot be used, and a secret that must not be printed.
        env["SEKUIRE_API_URL"] = "bogus";
        env["SEKUIRE_INSTALL_TOKEN"] = "skt_example_secret_0123456789";
        const child c = spawn(program, env, dir);
        const int code = wait_exit(c, 30s); // fails on death by a signal (an uncaught exception aborts)
        const std::string out = output_of(c);
        if (code != 2) fail("exit code " + std::to_string(code) + " instead of 2", c.output);
        if (out.find("SEKUIRE_API_URL='bogus'") == std::string::npos) fail("the variable and its value are not named", c.output);
        if (std::count(out.begin(), out.end(), '\n') != 1) fail("more than one line", c.output);
        for (const char* never : {"[sekuire:", "terminate called", "httplib_transport", "skt_example_secret"})
            if (out.find(never) != std::string::npos) fail(std::string("the output holds '") + never + "'", c.output);
        if (!backend.installations().empty() || backend.request_count(sekuire::protocol::path::bootstrap) != 0)
            fail("a request was sent", c.output);
    } else if (scenario == "quickstart") {
        env["SEKUIRE_INSTALL_TOKEN"] = backend.create_install_token();
        env["SEKUIRE_HEARTBEAT_INTERVAL"] = "1";
        const child c = spawn(program, env, dir);
        const std::string inst = only_installation(backend, c);
        if (!backend.wait_for_open_streams(1, 20s)) fail("no task stream", c.output);
        summarize_task(backend, c);
        terminate_and_expect_exit(backend, c, inst);
        if (!output_has(c, "Connected: true")) fail("no 'Connected: true' line", c.output);
        if (backend.installation(inst)->state != testing::mock_installation_state::stopped)
            fail("no final heartbeat", c.output);
        // And SIGTERM: a second run stops on the signal.
        env["SEKUIRE_INSTALL_TOKEN"] = backend.create_install_token();
        const child d = spawn(program, env, make_dir(scenario + "-signal"));
        // The second run's own installation and stream (the first run's stream may still count
        // as open for a while): by then it watches its signals and its worker has started.
        std::string second;
        for (int i = 0; i < 1000; ++i) {
            for (const auto& in : backend.installations())
                if (in.installation_id != inst && backend.open_streams(in.installation_id) > 0) second = in.installation_id;
            if (!second.empty()) break;
            std::this_thread::sleep_for(20ms);
        }
        if (second.empty()) fail("no task stream (second run)", d.output);
        ::kill(d.pid, SIGTERM);
        if (wait_exit(d, 60s) != 0) fail("non-zero exit after SIGTERM", d.output);
    } else if (scenario == "beacon_direct") {
        const std::string token = backend.create_install_token();
        env["SEKUIRE_INSTALL_TOKEN"] = token;
        env["SEKUIRE_EXAMPLE_CREDENTIALS"] = dir + "/credentials.env";
        const child c = spawn(program, env, dir);
        const int code = wait_exit(c, 60s);
        if (code != 0) fail("exit code " + std::to_string(code), c.output);
        if (backend.installations().size() != 1) fail("the restart created a second installation", c.output);
        if (!output_has(c, "recovered the same installation")) fail("no recovery line", c.output);
        struct stat st {};
        if (::stat((dir + "/credentials.env").c_str(), &st) != 0 || (st.st_mode & 0777) != 0600)
            fail("the credentials file is missing or not 0600", c.output);
        // The refresh token never appears in the output.
        std::ifstream creds(dir + "/credentials.env");
        for (std::string line; std::getline(creds, line);) {
            const auto eq = line.find('=');
            if (eq == std::string::npos || line.rfind("SEKUIRE_INSTALLATION_ID=", 0) == 0) continue; // not a secret
            if (output_has(c, line.substr(eq + 1))) fail("a secret was printed", c.output);
        }
    } else if (scenario == "manual_worker") {
        // Recovery credentials from an earlier bootstrap.
        sekuire::beacon_options bo;
        bo.api_base_url = backend.url();
        bo.agent_id = "example-agent";
        bo.install_token = backend.create_install_token();
        sekuire::beacon beacon{bo};
        beacon.start();
        const auto creds = beacon.get_installation_credentials();
        if (!creds) fail("could not prepare recovery credentials");
        env["SEKUIRE_INSTALLATION_ID"] = creds->installation_id;
        env["SEKUIRE_REFRESH_TOKEN"] = creds->refresh_token;
        const child c = spawn(program, env, dir);
        if (!backend.wait_for_open_streams(1, 20s)) fail("no task stream", c.output);
        summarize_task(backend, c);
        backend.revoke(creds->installation_id, "example done", 1000);
        const int code = wait_exit(c, 60s);
        if (code != 0) fail("exit code " + std::to_string(code), c.output);
        if (!output_has(c, "trace-example")) fail("the handler did not log its context", c.output);
    } else if (scenario == "shared_store") {
        env["SEKUIRE_INSTALL_TOKEN"] = backend.create_install_token();
        env["SEKUIRE_HEARTBEAT_INTERVAL"] = "1";
        env["SEKUIRE_CREDENTIALS_FILE"] = dir + "/store.json";
        const child c = spawn(program, env, dir);
        const std::string inst = only_installation(backend, c);
        if (!backend.wait_for_open_streams(1, 20s)) fail("no task stream", c.output);
        summarize_task(backend, c);
        // The worker heartbeats with the beacon's installation: one installation, both parts.
        if (!backend.installation(inst)->worker) fail("the worker never heartbeated", c.output);
        terminate_and_expect_exit(backend, c, inst);
    } else {
        std::cerr << "unknown scenario " << scenario << "\n";
        return 2;
    }
    backend.stop();
    std::cout << "example_driver: " << scenario << " passed" << std::endl;
    return 0;
}
