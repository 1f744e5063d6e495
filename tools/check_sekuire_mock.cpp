// SPDX-License-Identifier: MIT
// Checks the sekuire-mock program: it prints its URL line when ready, serves the protocol
// and the dashboard, stops with exit code 0 on SIGTERM and on SIGINT, warns about a
// non-loopback --host, answers --help and --version, and refuses bad flags with a short
// usage error that names the flag and the value (exit code 2).
// Usage: check_sekuire_mock <path to sekuire-mock>

#include <sekuire/protocol.hpp>
#include <sekuire/testing/mock_backend.hpp>
#include <sekuire/version.hpp>

#include <httplib.h>

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        ++failures;
        std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    }
}

struct child {
    pid_t pid = -1;
    int out = -1; // read end of its stdout
    int err = -1; // read end of its stderr
};

child spawn(const std::string& program, const std::vector<std::string>& args) {
    child c;
    int fds[2], errs[2];
    if (pipe(fds) != 0) return c;
    if (pipe(errs) != 0) {
        close(fds[0]);
        close(fds[1]);
        return c;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, errs[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addclose(&actions, fds[1]);
    posix_spawn_file_actions_addclose(&actions, errs[0]);
    posix_spawn_file_actions_addclose(&actions, errs[1]);
    std::vector<std::string> all{program};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    close(errs[1]);
    if (rc != 0) {
        close(fds[0]);
        close(errs[0]);
        return c;
    }
    c.pid = pid;
    c.out = fds[0];
    c.err = errs[0];
    return c;
}

void close_child(child& c) {
    if (c.out >= 0) close(c.out);
    if (c.err >= 0) close(c.err);
    c.out = c.err = -1;
}

// Reads the child's stdout until `line_prefix` starts a line or `timeout` passes; returns
// everything read.
std::string read_until(int fd, const std::string& line_prefix, std::chrono::milliseconds timeout) {
    std::string text;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto pos = text.find(line_prefix);
        if (pos != std::string::npos && (pos == 0 || text[pos - 1] == '\n') && text.find('\n', pos) != std::string::npos)
            return text;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return text;
        pollfd p{fd, POLLIN, 0};
        const int n = poll(&p, 1, static_cast<int>(left.count()));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return text;
        char buf[1024];
        const ssize_t got = read(fd, buf, sizeof(buf));
        if (got <= 0) return text;
        text.append(buf, static_cast<std::size_t>(got));
    }
}

// Waits for the child to exit; returns its exit status, or -1 on timeout (it is killed).
int wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int status = 0;
        const pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (r < 0) return -1;
        if (std::chrono::steady_clock::now() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

const std::string ready_prefix = "sekuire-mock listening on ";

void check_run(const std::string& program, const std::vector<std::string>& args, int signal_number,
               const std::string& install_token) {
    const std::string name = std::string("run with signal ") + (signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
    child c = spawn(program, args);
    check(c.pid > 0, name + ": spawn");
    if (c.pid <= 0) return;
    const std::string text = read_until(c.out, ready_prefix, std::chrono::seconds(20));
    const auto pos = text.find(ready_prefix);
    check(pos != std::string::npos, name + ": ready line, got: " + text);
    check(text.find("install token: " + install_token + "\n") != std::string::npos, name + ": install token printed");
    std::string url;
    if (pos != std::string::npos) url = text.substr(pos + ready_prefix.size(), text.find('\n', pos) - pos - ready_prefix.size());
    check(url.rfind("http://127.0.0.1:", 0) == 0 && url.size() > 17 && url.substr(17) != "0",
          name + ": url with a real port: " + url);
    if (!url.empty()) {
        httplib::Client cli(url);
        cli.set_tcp_nodelay(true);
        cli.set_connection_timeout(5, 0);
        cli.set_read_timeout(5, 0);
        sekuire::protocol::bootstrap_request req;
        req.install_token = install_token;
        req.agent_id = "check-agent";
        auto res = cli.Post(std::string(sekuire::protocol::path::bootstrap), sekuire::protocol::encode(req),
                            std::string(sekuire::protocol::header::json_type));
        check(res && res->status == 201, name + ": bootstrap answered 201");
        check(text.find("sekuire-mock: dashboard: " + url + "/dashboard\n") != std::string::npos,
              name + ": dashboard address printed");
        auto page = cli.Get("/dashboard");
        check(page && page->status == 200 && page->get_header_value("Content-Type") == "text/html; charset=utf-8",
              name + ": the dashboard is served");
    }
    kill(c.pid, signal_number);
    const int code = wait_exit(c.pid, std::chrono::seconds(20));
    check(code == 0, name + ": exit code 0, got " + std::to_string(code));
    close_child(c);
}

struct outcome {
    int code = -1;
    std::string out;
    std::string err;
};

// Runs the program to its end (bounded); its exit code, standard output and error.
outcome run_to_end(const std::string& program, const std::vector<std::string>& args) {
    outcome o;
    child c = spawn(program, args);
    check(c.pid > 0, "spawn");
    if (c.pid <= 0) return o;
    o.out = read_until(c.out, "\x01never", std::chrono::seconds(10));
    o.err = read_until(c.err, "\x01never", std::chrono::seconds(2));
    o.code = wait_exit(c.pid, std::chrono::seconds(10));
    close_child(c);
    return o;
}

void check_exit(const std::string& program, const std::vector<std::string>& args, int expected,
                const std::string& expect_in_stdout = {}) {
    std::string name = "sekuire-mock";
    for (const auto& a : args) name += " " + a;
    const outcome o = run_to_end(program, args);
    check(o.code == expected, name + ": exit code " + std::to_string(expected) + ", got " + std::to_string(o.code));
    if (!expect_in_stdout.empty())
        check(o.out.find(expect_in_stdout) != std::string::npos, name + ": prints '" + expect_in_stdout + "'");
}

// A usage error: exit code 2, nothing on standard output, and on standard error a short
// message (never the whole help) naming the flag and each of `named`, ending with where
// to find help; no internal names (CLI11's error classes, sekuire's error suffixes).
void check_usage_error(const std::string& program, const std::vector<std::string>& args,
                       const std::vector<std::string>& named) {
    std::string name = "sekuire-mock";
    for (const auto& a : args) name += " " + a;
    const outcome o = run_to_end(program, args);
    check(o.code == 2, name + ": exit code 2, got " + std::to_string(o.code));
    check(o.out.empty(), name + ": nothing on standard output, got: " + o.out);
    const auto first_line = o.err.substr(0, o.err.find('\n'));
    check(first_line.rfind("sekuire-mock: ", 0) == 0, name + ": the message starts with the program: " + o.err);
    for (const auto& n : named)
        check(first_line.find(n) != std::string::npos, name + ": the message names " + n + ": " + first_line);
    std::size_t lines = 0;
    for (char ch : o.err) lines += ch == '\n';
    check(lines <= 3, name + ": a short message, not the help: " + o.err);
    const auto last_line = o.err.substr(o.err.rfind('\n', o.err.size() - 2) + 1);
    check(last_line.find("try 'sekuire-mock --help'") != std::string::npos, name + ": ends with where to find help: " + o.err);
    for (const std::string internal : {"[sekuire:", "CLI::", "Error", "ArgumentMismatch", "required but received"})
        check(o.err.find(internal) == std::string::npos, name + ": no internal name '" + internal + "': " + o.err);
}

// --host other than loopback: a warning that the mock has no real authentication, and it
// still serves (reached here on 127.0.0.1).
void check_public_host(const std::string& program) {
    child c = spawn(program, {"--host", "0.0.0.0", "--port=0"});
    check(c.pid > 0, "--host 0.0.0.0: spawn");
    if (c.pid <= 0) return;
    const std::string text = read_until(c.out, ready_prefix, std::chrono::seconds(20));
    const std::string warning = read_until(c.err, "no real authentication", std::chrono::seconds(5));
    check(warning.find("sekuire-mock: warning: --host 0.0.0.0 is not a loopback address") != std::string::npos,
          "--host 0.0.0.0: the warning names the host: " + warning);
    check(warning.find("no real authentication") != std::string::npos, "--host 0.0.0.0: says why: " + warning);
    const auto pos = text.find(ready_prefix + "http://0.0.0.0:");
    check(pos != std::string::npos, "--host 0.0.0.0: ready line, got: " + text);
    if (pos != std::string::npos) {
        const auto port_at = pos + ready_prefix.size() + std::string("http://0.0.0.0:").size();
        const std::string port = text.substr(port_at, text.find('\n', port_at) - port_at);
        httplib::Client cli("http://127.0.0.1:" + port);
        cli.set_connection_timeout(5, 0);
        cli.set_read_timeout(5, 0);
        auto page = cli.Get("/");
        check(page && page->status == 200, "--host 0.0.0.0: serves");
    }
    kill(c.pid, SIGTERM);
    check(wait_exit(c.pid, std::chrono::seconds(20)) == 0, "--host 0.0.0.0: exit code 0");
    close_child(c);
    // A loopback host draws no warning.
    child quiet = spawn(program, {"--host=127.0.0.1", "--port", "0"});
    if (quiet.pid > 0) {
        read_until(quiet.out, ready_prefix, std::chrono::seconds(20));
        kill(quiet.pid, SIGTERM);
        check(wait_exit(quiet.pid, std::chrono::seconds(20)) == 0, "--host 127.0.0.1: exit code 0");
        const std::string err = read_until(quiet.err, "\x01never", std::chrono::seconds(2));
        check(err.find("warning") == std::string::npos, "--host 127.0.0.1: no warning: " + err);
        close_child(quiet);
    }
}

// A port in use is refused (exit code 1), not shared.
void check_port_in_use(const std::string& program) {
    child first = spawn(program, {"--port", "0"});
    check(first.pid > 0, "port in use: spawn");
    if (first.pid <= 0) return;
    const std::string text = read_until(first.out, ready_prefix, std::chrono::seconds(20));
    const auto pos = text.find(ready_prefix);
    check(pos != std::string::npos, "port in use: ready line");
    if (pos != std::string::npos) {
        const auto line = text.substr(pos, text.find('\n', pos) - pos);
        const std::string port = line.substr(line.rfind(':') + 1);
        const outcome second = run_to_end(program, {"--port", port});
        check(second.code == 1, "port in use: exit code 1, got " + std::to_string(second.code));
        check(second.err.find("cannot listen on 127.0.0.1 port " + port) != std::string::npos,
              "port in use: says so: " + second.err);
    }
    kill(first.pid, SIGTERM);
    check(wait_exit(first.pid, std::chrono::seconds(20)) == 0, "port in use: first instance exits with 0");
    close_child(first);
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fputs("usage: check_sekuire_mock <path to sekuire-mock>\n", stderr);
        return 2;
    }
    const std::string program = argv[1];
    signal(SIGPIPE, SIG_IGN);

    check_run(program, {"--port", "0"}, SIGTERM, std::string(sekuire::testing::mock_default_install_token));
    check_run(program,
              {"--port=0", "--install-token", "skt_first", "--install-token", "skt_second", "--workspace", "ws_check",
               "--lease", "30", "--token-lifetime", "3600", "--heartbeat-interval", "10", "--keepalive-ms", "500",
               "--api-key", "sk_live_check"},
              SIGINT, "skt_second");

    check_run(program, {"--port", "0", "--threads=4", "--listen-backlog", "100"}, SIGTERM,
              std::string(sekuire::testing::mock_default_install_token));
    check_port_in_use(program);
    check_public_host(program);

    // --help: every flag; --version: the program and the SDK's version.
    const outcome help = run_to_end(program, {"--help"});
    check(help.code == 0, "--help: exit code 0");
    check(help.out.find("sekuire-mock [OPTIONS]") != std::string::npos, "--help: the synopsis: " + help.out);
    for (const std::string flag : {"--host", "--port", "--threads", "--listen-backlog", "--install-token", "--api-key",
                                   "--workspace", "--token-lifetime", "--lease", "--heartbeat-interval",
                                   "--keepalive-ms", "--version", "--help"})
        check(help.out.find(flag) != std::string::npos, "--help names " + flag);
    check_exit(program, {"-h"}, 0, "sekuire-mock [OPTIONS]");
    const outcome version = run_to_end(program, {"--version"});
    check(version.code == 0, "--version: exit code 0");
    check(version.out == "sekuire-mock (sekuire-cpp) " + std::string(sekuire::sdk_version) + "\n",
          "--version: prints the version: " + version.out);

    // Usage errors: the flag and the value at fault, briefly.
    check_usage_error(program, {"--port", "abc"}, {"--port", "'abc'", "0 to 65535"});
    check_usage_error(program, {"--port=70000"}, {"--port", "70000", "out of range"});
    check_usage_error(program, {"--lease", "0"}, {"--lease", "0", "1 to"});
    check_usage_error(program, {"--token-lifetime=-1"}, {"--token-lifetime", "'-1'"});
    check_usage_error(program, {"--heartbeat-interval", "1.5"}, {"--heartbeat-interval", "'1.5'"});
    check_usage_error(program, {"--keepalive-ms=0"}, {"--keepalive-ms", "0"});
    check_usage_error(program, {"--threads", "0"}, {"--threads", "0"});
    check_usage_error(program, {"--listen-backlog", "70000"}, {"--listen-backlog", "70000"});
    check_usage_error(program, {"--bogus"}, {"unknown option", "'--bogus'"});
    check_usage_error(program, {"--bogus=1"}, {"'--bogus=1'"});
    check_usage_error(program, {"stray"}, {"'stray'", "options only"});
    check_usage_error(program, {"--port"}, {"--port needs a value"});
    check_usage_error(program, {"--port="}, {"--port needs a value"});
    check_usage_error(program, {"--workspace", "has\ttab"}, {"--workspace", "is not a workspace id"});
    check_usage_error(program, {"--host", ""}, {"--host"});
    // A secret at fault is named by its flag, and masked.
    const outcome secret = run_to_end(program, {"--install-token", "skt_secret value"});
    check(secret.code == 2, "--install-token with a space: exit code 2");
    check(secret.err.find("--install-token") != std::string::npos, "--install-token: named: " + secret.err);
    check(secret.err.find("skt_secret value") == std::string::npos, "--install-token: masked: " + secret.err);
    // A repeated single flag: the last one counts.
    check_exit(program, {"--port", "abc", "--port", "70000"}, 2);

    if (failures == 0) std::puts("sekuire-mock: all checks passed");
    return failures == 0 ? 0 : 1;
}
