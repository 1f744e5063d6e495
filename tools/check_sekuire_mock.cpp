// SPDX-License-Identifier: MIT
// Checks the sekuire-mock program: it prints its URL line when ready, serves the protocol,
// stops with exit code 0 on SIGTERM and on SIGINT, and refuses bad flags with exit code 2.
// Usage: check_sekuire_mock <path to sekuire-mock>

#include <sekuire/protocol.hpp>
#include <sekuire/testing/mock_backend.hpp>

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
};

child spawn(const std::string& program, const std::vector<std::string>& args) {
    child c;
    int fds[2];
    if (pipe(fds) != 0) return c;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addclose(&actions, fds[1]);
    std::vector<std::string> all{program};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return c;
    }
    c.pid = pid;
    c.out = fds[0];
    return c;
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
    close(c.out);
}

void check_exit(const std::string& program, const std::vector<std::string>& args, int expected,
                const std::string& expect_in_stdout = {}) {
    std::string name = "sekuire-mock";
    for (const auto& a : args) name += " " + a;
    child c = spawn(program, args);
    check(c.pid > 0, name + ": spawn");
    if (c.pid <= 0) return;
    const std::string text = read_until(c.out, "\x01never", std::chrono::seconds(10));
    const int code = wait_exit(c.pid, std::chrono::seconds(10));
    check(code == expected, name + ": exit code " + std::to_string(expected) + ", got " + std::to_string(code));
    if (!expect_in_stdout.empty())
        check(text.find(expect_in_stdout) != std::string::npos, name + ": prints '" + expect_in_stdout + "'");
    close(c.out);
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
        check_exit(program, {"--port", port}, 1);
    }
    kill(first.pid, SIGTERM);
    check(wait_exit(first.pid, std::chrono::seconds(20)) == 0, "port in use: first instance exits with 0");
    close(first.out);
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

    check_port_in_use(program);
    check_exit(program, {"--help"}, 0, "usage: sekuire-mock");
    check_exit(program, {"--port", "abc"}, 2);
    check_exit(program, {"--port", "70000"}, 2);
    check_exit(program, {"--lease", "0"}, 2);
    check_exit(program, {"--bogus"}, 2);
    check_exit(program, {"--port"}, 2);

    if (failures == 0) std::puts("sekuire-mock: all checks passed");
    return failures == 0 ? 0 : 1;
}
