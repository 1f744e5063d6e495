// SPDX-License-Identifier: MIT
// The two figures of the TaskWorker, measured against the in-process mock backend on
// 127.0.0.1 with a real `sekuire::worker` (httplib transport, system clock, thread pool):
//
//   1. end-to-end throughput: tasks per second with a trivial handler, from the first
//      enqueue to the last completion as the backend saw it (also the time to 50% and 90%):
//      a) a burst, all tasks queued at once; b) paced, at most `--window` tasks outstanding.
//      In a burst every task is soon "delivered" at the mock backend, which scans its
//      delivered tasks for redelivery on every request: above a few thousand tasks that
//      cost of the mock, not the worker, sets the burst figure. Paced runs keep it small.
//   2. revoke latency: with the worker connected and idle, the time from the backend's
//      revoke call to the worker refusing new tasks (defined below, at `revoke_once`).
//
// A plain program (no Google Benchmark). Build and run it in a Release build:
//
//   cmake --preset release && cmake --build --preset release --target sekuire_worker_figures
//   build/release/bench/sekuire_worker_figures [--tasks N] [--runs R] [--window W] [--revokes M] [--concurrency C]
//
// (The release preset turns SEKUIRE_BUILD_BENCHMARKS on, which needs Google Benchmark for
// the micro-benchmarks next to this program; this program does not use it.) Or, in a build
// directory of your own:
//
//   cmake -S . -B build/rel -DCMAKE_BUILD_TYPE=Release -DSEKUIRE_BUILD_BENCHMARKS=ON -DSEKUIRE_BUILD_TESTS=OFF
//   cmake --build build/rel --target sekuire_worker_figures && build/rel/bench/sekuire_worker_figures
//
// Defaults: 5000 tasks per run, 3 runs of each kind, a window of 256, 20 revocations, and
// the worker's default options (`max_concurrent_handlers` 4 on a thread pool of 4). Exit
// code 0 on success, 1 when a measurement went wrong (a task lost, run twice or run after
// its revocation, a timeout), 2 for bad arguments.

#include <sekuire/worker.hpp>

#include <sekuire/testing/mock_backend.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
namespace st = sekuire::testing;
using steady = std::chrono::steady_clock;

struct settings {
    int tasks = 5000;
    int runs = 3;
    int revokes = 20;
    int window = 256;
    int concurrency = 0; // 0: the worker's default
};

void usage(std::FILE* to) {
    std::fprintf(to, "usage: sekuire_worker_figures [--tasks N] [--runs R] [--window W] [--revokes M]\n"
                     "                              [--concurrency C]\n"
                     "  --tasks N        tasks per throughput run (1..100000, default 5000)\n"
                     "  --runs R         throughput runs of each kind (1..100, default 3)\n"
                     "  --window W       tasks outstanding at most in the paced runs (1..100000, default 256)\n"
                     "  --revokes M      revocations measured (1..1000, default 20)\n"
                     "  --concurrency C  max_concurrent_handlers (1..256, default: the worker's default)\n");
}

bool parse_int(std::string_view s, int lo, int hi, int& out) {
    if (s.empty() || s.size() > 9) return false;
    int v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    if (v < lo || v > hi) return false;
    out = v;
    return true;
}

// Returns 0 to go on, else the exit code.
int parse_args(int argc, char** argv, settings& s) {
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--help" || a == "-h") {
            usage(stdout);
            return -1;
        }
        std::string_view value;
        const auto eq = a.find('=');
        if (eq != std::string_view::npos) {
            value = a.substr(eq + 1);
            a = a.substr(0, eq);
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            std::fprintf(stderr, "sekuire_worker_figures: %s needs a value\n", argv[i]);
            return 2;
        }
        bool ok = false;
        if (a == "--tasks")
            ok = parse_int(value, 1, 100000, s.tasks);
        else if (a == "--runs")
            ok = parse_int(value, 1, 100, s.runs);
        else if (a == "--window")
            ok = parse_int(value, 1, 100000, s.window);
        else if (a == "--revokes")
            ok = parse_int(value, 1, 1000, s.revokes);
        else if (a == "--concurrency")
            ok = parse_int(value, 1, 256, s.concurrency);
        else {
            std::fprintf(stderr, "sekuire_worker_figures: unknown flag %.*s\n", static_cast<int>(a.size()), a.data());
            usage(stderr);
            return 2;
        }
        if (!ok) {
            std::fprintf(stderr, "sekuire_worker_figures: bad value for %.*s\n", static_cast<int>(a.size()), a.data());
            return 2;
        }
    }
    return 0;
}

double seconds_of(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }
double ms_of(std::chrono::nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count(); }

template <class T>
T median(std::vector<T> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

/// A failed measurement: printed, exit code 1.
struct figure_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

st::mock_backend_options backend_options() {
    st::mock_backend_options o;
    // Only so that stopping the backend never waits long for an idle kept-alive client.
    o.keep_alive_timeout = 1s;
    return o;
}

/// Default worker options, pointed at the backend.
sekuire::worker_options worker_options_for(st::mock_backend& backend, const settings& s) {
    sekuire::worker_options o;
    o.api_base_url = backend.url();
    o.agent_id = "agent-figures";
    o.install_token = backend.create_install_token();
    o.workspace_id = std::string(st::mock_default_workspace);
    if (s.concurrency > 0) o.max_concurrent_handlers = static_cast<std::size_t>(s.concurrency);
    return o;
}

void wait_connected(sekuire::worker& w, const st::mock_backend& backend) {
    const auto deadline = steady::now() + 15s;
    for (;;) {
        const auto status = w.get_status();
        if (status.stream_connected && backend.open_streams(status.installation_id) == 1) return;
        if (steady::now() >= deadline) throw figure_error("the worker did not connect its task stream");
        std::this_thread::sleep_for(1ms);
    }
}

// ---- 1. throughput ------------------------------------------------------------------------

struct throughput_run {
    int tasks = 0;
    std::chrono::nanoseconds enqueue{};  // enqueueing all tasks
    std::chrono::nanoseconds to_half{};  // first enqueue -> 50% completed
    std::chrono::nanoseconds to_90{};    // first enqueue -> 90% completed
    std::chrono::nanoseconds to_last{};  // first enqueue -> last completed
    std::uint64_t redelivered = 0;       // deliveries beyond one per task
    double per_second() const { return tasks / seconds_of(to_last); }
};

/** One throughput run on a new backend and worker. `window` 0: all tasks are queued at
    once (a burst); else tasks are queued as earlier ones complete, at most `window`
    outstanding (paced).
*/
throughput_run run_throughput(const settings& s, int window) {
    st::mock_backend backend(backend_options());
    backend.start();
    std::atomic<int> runs{0};
    auto worker = sekuire::create_worker(worker_options_for(backend, s));
    worker->on_task("echo", [&runs](const sekuire::task_context&, const json::value& input) {
        runs.fetch_add(1, std::memory_order_relaxed);
        return input;
    });
    worker->start();
    wait_connected(*worker, backend);

    std::vector<std::string> ids;
    ids.reserve(static_cast<std::size_t>(s.tasks));
    const auto enqueue = [&] {
        st::mock_task_request r;
        r.capability = "echo";
        r.input = json::object{{"n", static_cast<std::int64_t>(ids.size())}};
        ids.push_back(backend.enqueue_task(std::move(r)));
    };
    const auto limit = static_cast<std::size_t>(window > 0 ? window : s.tasks);
    const auto total = static_cast<std::size_t>(s.tasks);
    throughput_run out;
    out.tasks = s.tasks;
    // The backend stamps completions with the system clock's wall time: so is the start.
    const auto first = std::chrono::system_clock::now();
    const auto enqueue_start = steady::now();
    // Completion is polled (task() by id, every few hundred microseconds at most) rather
    // than waited for with wait_for_task(), which wakes at every completion and then scans
    // the backend's delivered tasks: the measurement would slow the backend down. The
    // figures come from the backend's completion stamps, not from this loop.
    const auto deadline = steady::now() + std::max<std::chrono::milliseconds>(60s, s.tasks * 20ms);
    std::size_t done = 0;
    while (done < total) {
        while (ids.size() < total && ids.size() - done < limit) enqueue();
        if (ids.size() == total && out.enqueue == std::chrono::nanoseconds{})
            out.enqueue = steady::now() - enqueue_start;
        const auto t = backend.task(ids[done]);
        if (t && t->status == st::mock_task_status::completed) {
            ++done;
            continue;
        }
        if (steady::now() >= deadline) throw figure_error("task " + ids[done] + " was not completed in time");
        std::this_thread::sleep_for(window > 0 ? 200us : 10ms);
    }
    std::vector<std::chrono::nanoseconds> stamps;
    stamps.reserve(ids.size());
    for (const auto& id : ids) {
        const auto t = backend.task(id);
        if (!t || !t->completed_at) throw figure_error("task " + id + " has no completion time");
        if (t->output != json::value(json::object{{"n", static_cast<std::int64_t>(stamps.size())}}))
            throw figure_error("task " + id + " has the wrong output");
        stamps.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(*t->completed_at - first));
        if (t->delivery_count > 1) out.redelivered += static_cast<std::uint64_t>(t->delivery_count - 1);
    }
    if (runs.load() != s.tasks)
        throw figure_error("the handler ran " + std::to_string(runs.load()) + " times for " + std::to_string(s.tasks) +
                           " tasks");
    std::sort(stamps.begin(), stamps.end());
    const auto at = [&](double q) {
        const auto i = static_cast<std::size_t>(q * static_cast<double>(stamps.size()));
        return stamps[std::min(stamps.size() - 1, i == 0 ? 0 : i - 1)];
    };
    out.to_half = at(0.5);
    out.to_90 = at(0.9);
    out.to_last = stamps.back();
    worker.reset();
    backend.stop();
    return out;
}

/// Runs `s.runs` throughput runs of one kind and prints them; returns the median rate.
double throughput_series(const settings& s, int window) {
    std::vector<double> rates;
    for (int i = 0; i < s.runs; ++i) {
        const auto r = run_throughput(s, window);
        rates.push_back(r.per_second());
        std::printf("  run %d: %8.0f tasks/s   last at %.3f s   50%% at %.3f s   90%% at %.3f s   (queueing took "
                    "%.3f s; %llu redelivered)\n",
                    i + 1, r.per_second(), seconds_of(r.to_last), seconds_of(r.to_half), seconds_of(r.to_90),
                    seconds_of(r.enqueue), static_cast<unsigned long long>(r.redelivered));
        std::fflush(stdout);
    }
    const double med = median(rates);
    std::printf("  median: %.0f tasks/s\n\n", med);
    return med;
}

// ---- 2. revoke latency ------------------------------------------------------------------

/** One revocation of a connected, idle worker. Every time is measured from just before the
    backend's revoke call (the in-process admin function, which returns once the revocation
    is recorded and queued on the worker's open stream):

    - `flag`: until `worker.get_status().revoked` is true. From then on the worker ignores
      every further task event and rejects what it had queued (busy polling, with yields).
    - `callback`: until the worker's `on_revoked` callback runs (after it set the flag and
      began its shutdown).
    - `closed`: until the worker reports its task stream closed: it can receive nothing more.
    - `stopped`: until the worker has finished its shutdown (state `revoked`).

    A task is queued right after the revoke call; it must never run: the backend must never
    deliver it, or the worker must reject it.
*/
struct revoke_sample {
    std::chrono::nanoseconds flag{}, callback{}, closed{}, stopped{};
    bool task_ran = false;
    bool task_delivered = false;
    bool task_rejected = false;
};

revoke_sample revoke_once(st::mock_backend& backend, const settings& s, int index) {
    // A capability of its own, so that the task left queued by an earlier revocation is
    // never delivered to this worker.
    const std::string capability = "echo-" + std::to_string(index);
    std::atomic<int> runs{0};
    std::atomic<std::int64_t> callback_at{0};
    auto o = worker_options_for(backend, s);
    o.on_revoked = [&callback_at](const sekuire::revocation_info&) {
        callback_at.store(steady::now().time_since_epoch().count());
    };
    auto worker = sekuire::create_worker(std::move(o));
    worker->on_task(capability, [&runs](const sekuire::task_context&, const json::value& input) {
        runs.fetch_add(1);
        return input;
    });
    worker->start();
    wait_connected(*worker, backend);
    const std::string inst = worker->get_status().installation_id;
    // Idle: let the start-up requests (policy fetch, first worker heartbeat) settle.
    std::this_thread::sleep_for(50ms);

    revoke_sample out;
    const auto t0 = steady::now();
    backend.revoke(inst, "figures", 5000);
    st::mock_task_request r;
    r.capability = capability;
    r.input = json::object{{"n", 1}};
    const std::string task_id = backend.enqueue_task(std::move(r));

    bool have_flag = false, have_closed = false;
    const auto deadline = t0 + 10s;
    while (!(have_flag && have_closed)) {
        const auto status = worker->get_status();
        const auto now = steady::now();
        if (!have_flag && status.revoked) {
            out.flag = now - t0;
            have_flag = true;
        }
        if (!have_closed && !status.stream_connected) {
            out.closed = now - t0;
            have_closed = true;
        }
        if (now >= deadline) throw figure_error("the worker did not act on the revocation within 10 s");
        std::this_thread::yield();
    }
    if (!worker->wait_for(10s)) throw figure_error("the worker did not stop after the revocation");
    out.stopped = steady::now() - t0;
    if (worker->get_status().state != sekuire::worker_state::revoked)
        throw figure_error("the worker did not end revoked");
    const auto cb = callback_at.load();
    if (cb == 0) throw figure_error("on_revoked was not called");
    out.callback = steady::time_point(steady::duration(cb)) - t0;

    const auto t = backend.task(task_id);
    out.task_ran = runs.load() != 0;
    out.task_delivered = t && t->delivery_count > 0;
    out.task_rejected = t && t->status == st::mock_task_status::rejected;
    worker.reset();
    return out;
}

void print_spread(const char* what, std::vector<std::chrono::nanoseconds> v) {
    std::sort(v.begin(), v.end());
    std::printf("  %-34s min %7.3f ms   median %7.3f ms   max %7.3f ms\n", what, ms_of(v.front()),
                ms_of(v[v.size() / 2]), ms_of(v.back()));
}

int run(const settings& s) {
    const std::size_t concurrency =
        s.concurrency > 0 ? static_cast<std::size_t>(s.concurrency) : sekuire::worker_options{}.max_concurrent_handlers;
    std::printf("sekuire worker figures: mock backend in-process on 127.0.0.1, sekuire::worker (httplib transport,\n"
                "system clock), %s: max_concurrent_handlers %zu on a thread pool of %zu threads;\n"
                "trivial handler (returns its input). Hardware threads: %u.\n\n",
                s.concurrency > 0 ? "default options but --concurrency" : "default options", concurrency, concurrency,
                std::thread::hardware_concurrency());

    std::printf("1a. throughput, burst: %d tasks queued at once (first enqueue -> last completion seen by the "
                "backend)\n",
                s.tasks);
    const double burst = throughput_series(s, 0);
    std::printf("1b. throughput, paced: %d tasks, at most %d outstanding (queued as earlier ones complete)\n", s.tasks,
                s.window);
    const double paced = throughput_series(s, s.window);

    std::printf("2. revoke latency, %d revocations of a connected, idle worker (a new installation each)\n", s.revokes);
    st::mock_backend backend(backend_options());
    backend.start();
    std::vector<std::chrono::nanoseconds> flag, callback, closed, stopped;
    int ran = 0, delivered = 0, rejected = 0;
    for (int i = 0; i < s.revokes; ++i) {
        const auto r = revoke_once(backend, s, i);
        flag.push_back(r.flag);
        callback.push_back(r.callback);
        closed.push_back(r.closed);
        stopped.push_back(r.stopped);
        ran += r.task_ran ? 1 : 0;
        delivered += r.task_delivered ? 1 : 0;
        rejected += r.task_rejected ? 1 : 0;
    }
    backend.stop();
    print_spread("get_status().revoked true", flag);
    print_spread("on_revoked called", callback);
    print_spread("task stream closed", closed);
    print_spread("worker stopped (state revoked)", stopped);
    std::printf("  task queued right after each revoke: ran %d of %d times (delivered %d, rejected %d)\n\n", ran,
                s.revokes, delivered, rejected);

    std::sort(flag.begin(), flag.end());
    std::sort(stopped.begin(), stopped.end());
    std::printf("summary: end to end %.0f tasks/s for a burst of %d tasks, %.0f tasks/s paced (at most %d "
                "outstanding); medians of %d runs, %zu concurrent handlers, trivial handler. Revoke to refusing new "
                "tasks: %.2f ms median (max %.2f ms) over %d revocations; worker stopped %.2f ms median after the "
                "revoke; tasks queued after a revoke that ran: %d.\n",
                burst, s.tasks, paced, s.window, s.runs, concurrency, ms_of(flag[flag.size() / 2]), ms_of(flag.back()),
                s.revokes, ms_of(stopped[stopped.size() / 2]), ran);
    return ran == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
    settings s;
    const int parsed = parse_args(argc, argv, s);
    if (parsed == -1) return 0;
    if (parsed != 0) return parsed;
    try {
        return run(s);
    } catch (const figure_error& e) {
        std::fprintf(stderr, "sekuire_worker_figures: %s\n", e.what());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sekuire_worker_figures: error: %s\n", e.what());
    }
    return 1;
}
