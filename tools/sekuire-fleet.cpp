// SPDX-License-Identifier: MIT
// sekuire-fleet: a load generator. N simulated agents, each a real asynchronous beacon (and,
// for the first W, an asynchronous worker), on one thread (or a few), against one backend;
// staggered start; tasks enqueued at a rate through the mock's admin API; a live summary
// line and a final table (docs/fleet.md).

#include "cli.hpp"
#include "fleet.hpp"

#include <sekuire/testing/mock_backend.hpp>

#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr const char* program = "sekuire-fleet";
constexpr const char* synopsis =
    "sekuire-fleet --url URL [--agents N] [--threads N] [--interval S] [--duration S] [--stagger S] "
    "[--workers N] [--handler-sleep-ms MS] [--task-rate R] [--task-drain S] "
    "[--install-token T]... [--install-tokens-file F] [--api-key K] [--json]";

} // namespace

int main(int argc, char** argv) {
    using namespace sekuire_tools;
    CLI::App app{"A load generator for a Sekuire backend: N simulated agents, each a real asynchronous beacon "
                 "(bootstrap, heartbeats, token refresh, lease), on one thread or a few, with a staggered start. "
                 "Prints a live summary and ends with a table: bootstraps, heartbeats sent and on time, heartbeat "
                 "latency p50/p95/p99/max, lease losses, errors by class; with workers, tasks enqueued and completed, task "
                 "latency p50/p95/p99/max and task errors by class.",
                 program};
    app.set_version_flag("--version", version_text(program));
    fleet::fleet_options o;
    o.api_key = std::string(sekuire::testing::mock_default_api_key);
    std::size_t agents = 100, threads = 1;
    double interval = 60, duration = 60, stagger = 10, late_after_ms = 100, report_every = 1;
    std::size_t workers = 0;
    double handler_sleep_ms = 0, task_rate = 0, task_drain = 10;
    std::string tokens_file;
    bool json = false, allow_insecure = false;
    app.add_option("--url", o.url, "the backend's base URL (plain http only to loopback unless --allow-insecure-http)")
        ->type_name("URL")
        ->required();
    app.add_option("--agents", agents, "simulated agents, 1 to 100000 (default 100)")
        ->type_name("N")
        ->check(CLI::Range(1, 100000));
    app.add_option("--threads", threads, "threads running the agents, 1 to 64 (default 1)")
        ->type_name("N")
        ->check(CLI::Range(1, 64));
    app.add_option("--interval", interval, "heartbeat interval of each agent, in seconds, 1 to 86400 (default 60)")
        ->type_name("SECONDS")
        ->check(CLI::Range(1.0, 86400.0));
    app.add_option("--duration", duration, "length of the run from the first start, in seconds (default 60)")
        ->type_name("SECONDS")
        ->check(CLI::Range(0.1, 7.0 * 86400));
    app.add_option("--stagger", stagger,
                   "the agents' starts are spread evenly over this many seconds (default 10; 0: all at once)")
        ->type_name("SECONDS")
        ->check(CLI::Range(0.0, 86400.0));
    app.add_option("--late-after", late_after_ms,
                   "a scheduled heartbeat sent later than this many ms after its time is not on time (default 100)")
        ->type_name("MS")
        ->check(CLI::Range(0.0, 3600000.0));
    app.add_option("--report-every", report_every, "seconds between live summary lines (default 1; 0: none)")
        ->type_name("SECONDS")
        ->check(CLI::Range(0.0, 3600.0));
    app.add_option("--workers", workers,
                   "the first N agents also run an asynchronous worker taking tasks of capability 'fleet' "
                   "(default 0)")
        ->type_name("N")
        ->check(CLI::Range(0, 100000));
    app.add_option("--handler-sleep-ms", handler_sleep_ms,
                   "each task's handler waits this long on a timer before it answers (default 0: at once)")
        ->type_name("MS")
        ->check(CLI::Range(0.0, 3600000.0));
    app.add_option("--task-rate", task_rate,
                   "tasks enqueued per second through the admin API (POST /admin/v1/tasks, the mock's; a real "
                   "backend needs its own task source), until --duration (default 0: none)")
        ->type_name("PER_SECOND")
        ->check(CLI::Range(0.0, 1000000.0));
    app.add_option("--task-drain", task_drain,
                   "after --duration, the longest wait for the tasks enqueued to be reported (default 10 s)")
        ->type_name("SECONDS")
        ->check(CLI::Range(0.0, 3600.0));
    app.add_option("--install-token", o.install_tokens, "an install token (repeat: one per agent)")
        ->type_name("TOKEN")
        ->allow_extra_args(false);
    app.add_option("--install-tokens-file", tokens_file, "a file of install tokens, one a line")
        ->type_name("FILE")
        ->check(CLI::ExistingFile);
    app.add_option("--api-key", o.api_key,
                   "without install tokens: the admin API key that creates one per agent (default: the mock's, "
                   "sk_live_mock_0123456789abcdef)")
        ->type_name("KEY");
    app.add_flag("--allow-insecure-http", allow_insecure, "allow plain http to hosts other than loopback");
    app.add_flag("--json", json, "print the final table as one JSON object (live lines go to standard error)");
    app.footer("Exit codes: 0 when the run completed (its errors are in the table), 1 when it could not start "
               "(no install tokens), 2 for a usage error.");

    std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    if (const int code = parse_arguments(app, args, program, synopsis); code >= 0) return code;

    if (!tokens_file.empty()) {
        std::ifstream in(tokens_file);
        std::string line;
        while (std::getline(in, line)) {
            while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
            if (!line.empty()) o.install_tokens.push_back(line);
        }
        if (!in.eof())
            return usage_error(program, "--install-tokens-file: cannot read '" + tokens_file + "'", synopsis, args);
    }
    if (!o.install_tokens.empty() && o.install_tokens.size() < agents)
        return usage_error(program,
                           "fewer install tokens (" + std::to_string(o.install_tokens.size()) + ") than agents (" +
                               std::to_string(agents) + ")",
                           synopsis, args);
    if (workers > agents)
        return usage_error(program,
                           "--workers (" + std::to_string(workers) + ") exceeds --agents (" + std::to_string(agents) + ")",
                           synopsis, args);
    if (task_rate > 0 && workers == 0)
        return usage_error(program, "--task-rate needs --workers: no agent would take the tasks", synopsis, args);
    o.workers = workers;
    o.handler_sleep = std::chrono::milliseconds(static_cast<std::int64_t>(handler_sleep_ms));
    o.task_rate = task_rate;
    o.task_drain = std::chrono::milliseconds(static_cast<std::int64_t>(task_drain * 1000));
    o.agents = agents;
    o.threads = threads;
    o.interval = std::chrono::seconds(static_cast<std::int64_t>(interval));
    if (static_cast<double>(o.interval.count()) != interval)
        return usage_error(program, "--interval must be a whole number of seconds", synopsis, args);
    o.duration = std::chrono::milliseconds(static_cast<std::int64_t>(duration * 1000));
    o.stagger = std::chrono::milliseconds(static_cast<std::int64_t>(stagger * 1000));
    o.late_after = std::chrono::milliseconds(static_cast<std::int64_t>(late_after_ms));
    o.report_every = std::chrono::milliseconds(static_cast<std::int64_t>(report_every * 1000));
    o.transport.allow_insecure_http = allow_insecure;

    // The URL is checked by building a transport once (the same check each agent makes).
    {
        boost::asio::io_context probe;
        sekuire::error_code ec;
        sekuire::beast_transport t(probe.get_executor(), o.url, o.transport, ec);
        if (ec) return usage_error(program, "--url: " + ec.message(), synopsis, args);
    }

    fleet::fleet_report r;
    try {
        r = fleet::run_fleet(o, json ? std::cerr : std::cout);
    } catch (const std::exception& e) {
        std::cerr << program << ": " << scrub(e.what(), secret_values(args)) << "\n";
        return exit_code::failure;
    }
    if (!r.setup_error.empty()) {
        std::cerr << program << ": " << scrub(r.setup_error, secret_values(args)) << "\n";
        return exit_code::failure;
    }
    if (json) std::cout << fleet::to_json(r) << std::endl;
    else fleet::print_table(std::cout, r);
    return exit_code::ok;
}
