// SPDX-License-Identifier: MIT
// Runs one whole program of the documentation (the CTest entries docs.<file>.program<N>).
//
//   run_snippets FILE.md N     runs the N-th program of FILE.md; exit code 0 when it passed
//   run_snippets --list        lists the programs
//
// The program runs in a child process (its output captured, its time bounded). Every
// SEKUIRE_* variable of the caller's environment is removed first, so a program never
// reaches a real backend. A program marked `backend: mock` runs with SEKUIRE_API_URL,
// SEKUIRE_AGENT_ID, SEKUIRE_INSTALL_TOKEN and SEKUIRE_WORKSPACE_ID set for an in-process
// mock backend on 127.0.0.1 (ephemeral port); it passes when it returns 0, an installation
// was bootstrapped and heartbeated at the mock, and its output holds neither the install
// token nor the API key. Other programs pass when they return 0.
#include "snippet_programs.hpp"

#include <sekuire/testing/mock_backend.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

// Each program runs in a child process, killed after this long (CTest's limit is longer).
constexpr std::chrono::seconds program_time_limit{60};

const char* kind_name(sekuire_docs::program_kind k) {
    switch (k) {
    case sekuire_docs::program_kind::plain: return "program";
    case sekuire_docs::program_kind::loopback: return "program, loopback";
    case sekuire_docs::program_kind::mock: return "program, backend: mock";
    }
    return "?";
}

void clear_sekuire_environment() {
    std::vector<std::string> names;
    for (char** e = environ; e && *e; ++e) {
        const std::string var = *e;
        if (var.rfind("SEKUIRE_", 0) == 0) names.push_back(var.substr(0, var.find('=')));
    }
    for (const auto& n : names) ::unsetenv(n.c_str());
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// In the child process: waits for the backend's URL when there is one, then runs the
// program with its output in `out_fd`, and exits with its exit code (1 when it threw).
[[noreturn]] void child(const sekuire_docs::program& p, int url_fd, int out_fd) {
    ::dup2(out_fd, 1);
    ::dup2(out_fd, 2);
    ::close(out_fd);
    if (p.kind == sekuire_docs::program_kind::mock) {
        std::string url;
        char c = 0;
        while (::read(url_fd, &c, 1) == 1 && c != '\n') url += c;
        if (url.empty()) {
            std::cerr << "run_snippets: no mock backend\n";
            std::_Exit(125);
        }
        ::setenv("SEKUIRE_API_URL", url.c_str(), 1);
        ::setenv("SEKUIRE_AGENT_ID", "docs-agent", 1);
        ::setenv("SEKUIRE_INSTALL_TOKEN", std::string(sekuire::testing::mock_default_install_token).c_str(), 1);
        ::setenv("SEKUIRE_WORKSPACE_ID", std::string(sekuire::testing::mock_default_workspace).c_str(), 1);
    }
    ::close(url_fd);
    int rc = 1;
    try {
        rc = p.main();
    } catch (const std::exception& e) {
        std::cerr << "run_snippets: the program threw: " << e.what() << std::endl;
    } catch (...) {
        std::cerr << "run_snippets: the program threw" << std::endl;
    }
    std::cout.flush();
    std::exit(rc); // as returning from main: static destructors, leak checks
}

// Waits at most `limit` for the child; its exit code, or a description of its end.
bool wait_child(pid_t pid, std::chrono::seconds limit, int& code, std::string& why) {
    const auto end = std::chrono::steady_clock::now() + limit;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(status)) {
                code = WEXITSTATUS(status);
                return true;
            }
            why = "the program died by signal " + std::to_string(WTERMSIG(status));
            return false;
        }
        if (r < 0) {
            why = "waitpid failed";
            return false;
        }
        if (std::chrono::steady_clock::now() >= end) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            why = "the program did not end within " + std::to_string(limit.count()) + " s";
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

int run(const sekuire_docs::program& p) {
    std::cout << "run_snippets: " << p.file << ":" << p.line << " (" << kind_name(p.kind) << ")" << std::endl;
    clear_sekuire_environment();
    char path[] = "/tmp/sekuire-docs-output-XXXXXX";
    const int out_fd = ::mkstemp(path);
    int url_pipe[2];
    if (out_fd < 0 || ::pipe(url_pipe) != 0) {
        std::cerr << "run_snippets: cannot create the output file or a pipe\n";
        return 1;
    }
    std::cout.flush();
    // The child is forked before any thread starts here (the mock backend comes after).
    const pid_t pid = ::fork();
    if (pid < 0) {
        std::cerr << "run_snippets: fork failed\n";
        return 1;
    }
    if (pid == 0) {
        ::close(url_pipe[1]);
        child(p, url_pipe[0], out_fd);
    }
    ::close(url_pipe[0]);
    ::close(out_fd);

    std::vector<std::string> failures;
    int code = 0;
    std::string why;
    bool exited = false;
    std::string output;
    if (p.kind != sekuire_docs::program_kind::mock) {
        ::close(url_pipe[1]);
        exited = wait_child(pid, program_time_limit, code, why);
        output = read_file(path);
    } else {
        sekuire::testing::mock_backend backend;
        sekuire::error_code ec;
        backend.start(ec);
        const std::string url = ec ? std::string() : backend.url() + "\n";
        if (::write(url_pipe[1], url.data(), url.size()) != static_cast<ssize_t>(url.size()))
            failures.push_back("cannot hand the backend's URL to the program");
        ::close(url_pipe[1]);
        exited = wait_child(pid, program_time_limit, code, why);
        output = read_file(path);
        if (ec) failures.push_back("the mock backend did not start: " + ec.message());
        const auto installations = backend.installations();
        bool heartbeat = false;
        for (const auto& i : installations)
            if (i.last_heartbeat_at) heartbeat = true;
        if (installations.empty())
            failures.push_back("the program bootstrapped no installation at the mock backend");
        else if (!heartbeat)
            failures.push_back("the program's installation never sent a heartbeat");
        if (output.find(sekuire::testing::mock_default_install_token) != std::string::npos)
            failures.push_back("the program printed the install token");
        if (output.find(backend.options().api_key) != std::string::npos)
            failures.push_back("the program printed the API key");
        backend.stop();
    }
    ::unlink(path);
    std::cout << "---- output ----\n" << output << (output.empty() || output.back() == '\n' ? "" : "\n")
              << "----------------" << std::endl;
    if (!exited)
        failures.push_back(why);
    else if (code != 0)
        failures.push_back("the program returned " + std::to_string(code));
    for (const auto& f : failures) std::cout << "run_snippets: FAILED: " << p.file << ":" << p.line << ": " << f << "\n";
    if (!failures.empty()) return 1;
    std::cout << "run_snippets: passed" << std::endl;
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    const auto& all = sekuire_docs::programs();
    if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
        for (const auto& p : all)
            std::cout << p.file << " " << p.index << "  (" << p.file << ":" << p.line << ", " << kind_name(p.kind) << ")\n";
        return 0;
    }
    if (argc != 3) {
        std::cerr << "usage: run_snippets FILE.md N | --list\n";
        return 2;
    }
    for (const auto& p : all)
        if (p.file == std::string(argv[1]) && std::to_string(p.index) == argv[2]) return run(p);
    std::cerr << "run_snippets: no program " << argv[2] << " in " << argv[1] << " (see --list)\n";
    return 2;
}
