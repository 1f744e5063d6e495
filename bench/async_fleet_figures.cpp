// SPDX-License-Identifier: MIT
// The figures of issue 12 for asynchronous beacons: N `sekuire::async` beacons (each with
// its own transport and connection) on ONE thread against a backend, staggered, and what
// the process pays for them:
//
//   - threads in the process while they run;
//   - memory per agent: the growth of the resident set from before the agents were built
//     to its peak during the run, divided by N;
//   - CPU per heartbeat: user + system CPU time of the process over the steady part of the
//     run (from the first summary after every agent has started to the last one before the
//     stop), divided by the heartbeats sent meanwhile;
//   - heartbeat lateness p99 and max: how late the timers of scheduled heartbeats fired.
//
// With --workers W the first W agents also run an asynchronous worker with an open task
// stream, and --task-rate R enqueues R tasks a second through the mock's admin API; then
// also:
//
//   - tasks per second: tasks completed over the steady part of the run, per second;
//   - task latency p50/p99 (enqueue to the result accepted).
//
// The figure of issue 12 for workers (1,000 workers with open task streams on one thread):
//
//   build/release/bench/sekuire_async_fleet_figures --url http://127.0.0.1:5556
//       --agents 1000 --workers 1000 --task-rate 2000 --interval 60 --stagger 10 --duration 60
//
// The agents are sekuire-fleet's (tools/fleet.hpp). Run the backend in its own process so
// that its memory and CPU are not counted:
//
//   build/release/tools/sekuire-mock --port 5556 &
//   build/release/bench/sekuire_async_fleet_figures --url http://127.0.0.1:5556
//       [--agents 10000] [--interval 60] [--stagger 60] [--duration 130]
//
// A plain program (no Google Benchmark). Exit code 0 on success, 1 when the run failed
// (tokens could not be created, or agents never connected), 2 for bad arguments. Each
// agent needs a file descriptor (and one in the backend): check `ulimit -n`.

#include "../tools/fleet.hpp"

#include <sekuire/testing/mock_backend.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>

#include <sys/resource.h>
#include <unistd.h>

namespace {

std::size_t thread_count() {
    std::size_t n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec))
        ++n;
    return n;
}

// Resident set size in bytes (/proc/self/statm).
std::uint64_t rss_bytes() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, resident = 0;
    const int got = std::fscanf(f, "%llu %llu", &size, &resident);
    std::fclose(f);
    return got == 2 ? resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

double cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

bool read_number(const char* text, double& out) {
    char* end = nullptr;
    out = std::strtod(text, &end);
    return end && *end == '\0' && out >= 0;
}

} // namespace

int main(int argc, char** argv) {
    sekuire_tools::fleet::fleet_options o;
    o.agents = 10000;
    o.interval = std::chrono::seconds(60);
    o.stagger = std::chrono::seconds(60);
    o.duration = std::chrono::seconds(130);
    o.report_every = std::chrono::seconds(5);
    o.api_key = std::string(sekuire::testing::mock_default_api_key);
    o.threads = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        double v = 0;
        if (a == "--help") {
            std::cout << "usage: sekuire_async_fleet_figures --url URL [--agents N] [--interval S] [--stagger S] "
                         "[--duration S] [--workers W] [--task-rate R] [--handler-sleep-ms MS]\n";
            return 0;
        }
        if (i + 1 >= argc) {
            std::cerr << "missing value after " << a << "\n";
            return 2;
        }
        const char* value = argv[++i];
        if (a == "--url") {
            o.url = value;
            continue;
        }
        if (!read_number(value, v)) {
            std::cerr << "bad value for " << a << ": " << value << "\n";
            return 2;
        }
        if (a == "--agents" && v >= 1) o.agents = static_cast<std::size_t>(v);
        else if (a == "--interval" && v >= 1) o.interval = std::chrono::seconds(static_cast<std::int64_t>(v));
        else if (a == "--stagger") o.stagger = std::chrono::milliseconds(static_cast<std::int64_t>(v * 1000));
        else if (a == "--duration" && v > 0) o.duration = std::chrono::milliseconds(static_cast<std::int64_t>(v * 1000));
        else if (a == "--workers") o.workers = static_cast<std::size_t>(v);
        else if (a == "--task-rate") o.task_rate = v;
        else if (a == "--handler-sleep-ms") o.handler_sleep = std::chrono::milliseconds(static_cast<std::int64_t>(v));
        else {
            std::cerr << "unknown or out-of-range option " << a << "\n";
            return 2;
        }
    }
    if (o.workers > o.agents || (o.task_rate > 0 && o.workers == 0)) {
        std::cerr << "--workers must be at most --agents, and --task-rate needs --workers\n";
        return 2;
    }
    if (o.url.empty()) {
        std::cerr << "--url is required (start sekuire-mock first)\n";
        return 2;
    }

    const std::uint64_t rss_before = rss_bytes();
    std::uint64_t rss_peak = rss_before;
    std::size_t threads = 0;
    bool steady = false;
    double cpu0 = 0, cpu1 = 0;
    std::uint64_t beats0 = 0, beats1 = 0, tasks0 = 0, tasks1 = 0;
    std::chrono::steady_clock::time_point at0{}, at1{};
    o.on_report = [&](const sekuire_tools::fleet::fleet_stats& s) {
        rss_peak = std::max(rss_peak, rss_bytes());
        threads = std::max(threads, thread_count());
        if (!steady && s.agents_started.load() == o.agents) {
            steady = true;
            cpu0 = cpu_seconds();
            beats0 = s.heartbeats_sent.load();
            tasks0 = s.tasks_completed.load();
            at0 = std::chrono::steady_clock::now();
        }
        if (steady) {
            cpu1 = cpu_seconds();
            beats1 = s.heartbeats_sent.load();
            tasks1 = s.tasks_completed.load();
            at1 = std::chrono::steady_clock::now();
        }
    };
    std::ostringstream live;
    const auto r = sekuire_tools::fleet::run_fleet(o, live);
    if (!r.setup_error.empty()) {
        std::cerr << r.setup_error << "\n";
        return 1;
    }
    sekuire_tools::fleet::print_table(std::cout, r);
    const std::uint64_t beats = beats1 - beats0;
    std::printf("\nfigures (%zu agents, one thread, interval %llds):\n", o.agents,
                static_cast<long long>(o.interval.count()));
    std::printf("  threads in the process       %zu\n", threads);
    std::printf("  memory per agent             %.1f KiB (resident set %.1f -> %.1f MiB)\n",
                static_cast<double>(rss_peak - rss_before) / 1024.0 / static_cast<double>(o.agents),
                static_cast<double>(rss_before) / 1048576.0, static_cast<double>(rss_peak) / 1048576.0);
    if (steady && beats > 0)
        std::printf("  CPU per heartbeat            %.1f us (%.2f s CPU for %llu heartbeats)\n",
                    (cpu1 - cpu0) * 1e6 / static_cast<double>(beats), cpu1 - cpu0,
                    static_cast<unsigned long long>(beats));
    std::printf("  heartbeat lateness p99       %.1f ms (max %.1f ms)\n", r.lateness_p99 * 1000, r.lateness_max * 1000);
    if (o.workers > 0) {
        const double secs = std::chrono::duration<double>(at1 - at0).count();
        std::printf("  workers with open streams    %zu\n", o.workers);
        if (steady && secs > 0)
            std::printf("  tasks per second             %.0f (%llu tasks completed in the steady %.1f s; rate asked %.0f/s)\n",
                        static_cast<double>(tasks1 - tasks0) / secs, static_cast<unsigned long long>(tasks1 - tasks0),
                        secs, o.task_rate);
        std::printf("  task latency p50 / p99       %.1f ms / %.1f ms (max %.1f ms)\n", r.task_latency.p50 * 1000,
                    r.task_latency.p99 * 1000, r.task_latency.max * 1000);
        std::printf("  tasks enqueued / completed   %llu / %llu\n", static_cast<unsigned long long>(r.tasks_enqueued),
                    static_cast<unsigned long long>(r.tasks_completed));
    }
    return r.agents_connected == o.agents ? 0 : 1;
}
