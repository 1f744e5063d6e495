// SPDX-License-Identifier: MIT
// Worker throughput against the same work done with the raw dependencies, side by side in
// one run (issue 11, "Figures": worker tasks/s at least 0.8x the raw completion-POST rate).
//
// Both sides run against the in-process mock backend (`sekuire::testing::mock_backend`,
// 127.0.0.1, ephemeral port, a new backend for every run, its default 2 I/O threads), for
// handler concurrency C = 1, 4, 16 and task inputs of about 100 B, 10 KB and 1 MB:
//
//   input  {"n": <index>, "data": "xxx...x"}   (the "data" string sized to the case)
//   output {"n": <index>, "len": <length of data>}
//
//   ours: a real `sekuire::worker` from `create_worker()` with default options (httplib
//         transport, default policies, fetch_policy on, worker heartbeats) except
//         `max_concurrent_handlers` = C (so a thread pool of C) and `startup_jitter` 0 (the
//         start is outside the timed part anyway). Its handler reads the input and returns
//         the output above. The worker bootstraps with an install token, opens its task
//         stream, decodes each task, runs the handler and POSTs the completion.
//
//   raw:  the same protocol work with httplib and Boost.JSON alone, the way a plain client
//         would write it. Untimed setup: one httplib POST of the bootstrap (install token,
//         capability "echo") gives an installation id and runtime token. Then one reader
//         thread holds the task stream open with `httplib::Client::Get` (the same
//         `GET /api/v1/installations/{id}/tasks/stream?capabilities=echo` with Bearer token),
//         splits the bytes into SSE events at blank lines, and for each `task` event parses
//         its `data:` line with `boost::json::parse`, reads `task_id`, and queues the task id
//         with its parsed `input` (mutex + condition variable). C poster threads (the
//         handlers), each with its own kept-alive `httplib::Client` (TCP_NODELAY, as the
//         transport sets it), take tasks from the queue, read `input.n` and the length of
//         `input.data` and drop the input, as ours's handler does, serialize the same output with
//         `boost::json::serialize` and POST `{"installation_id", "status": "completed",
//         "output", "execution_time_ms": 0}` to `/api/v1/tasks/{task_id}/complete` — the
//         completion the backend accepts from the worker (it checks the Bearer token and
//         that the result names the token's installation). No retries, no heartbeats, no
//         policy, no bookkeeping: the floor a worker could reach.
//
// Timed part, the same for both sides: from the first enqueue to the last completion as
// the backend stamped it (`completed_at`, wall clock), tasks queued by this program with
// `enqueue_task()` so that at most `--window` (`--window-1mb`) are outstanding; completion is waited for
// with `wait_for_task()` in enqueue order. tasks/s = tasks / that time.
// Rounds interleave the sides (odd rounds ours first, even rounds raw first); the table
// gives the median rate of each side and the median of the per-round ratios ours/raw, and
// per task the process's CPU time and context switches during the timed part (getrusage:
// the mock backend's share is in both sides alike, so the difference is the client's).
//
// Every run checks every task: completed with the right output, delivered once, its
// completion POSTed once, and (ours) the handler run once. Exit code 1 when a task was lost
// (not completed in time), delivered, run or completed twice, or a request failed; 2 for
// bad arguments; 0 otherwise. Speed never changes the exit code.
//
// Build and run (a Release build dir of your own; no Google Benchmark needed for this one,
// but SEKUIRE_BUILD_BENCHMARKS=ON needs it for the others):
//
//   cmake -S . -B build/rel -DCMAKE_BUILD_TYPE=Release -DSEKUIRE_BUILD_BENCHMARKS=ON
//     -DSEKUIRE_BUILD_TESTS=OFF -DSEKUIRE_BUILD_EXAMPLES=OFF -DSEKUIRE_BUILD_TOOLS=OFF
//   cmake --build build/rel --target sekuire_worker_vs_raw -j2
//   build/rel/bench/sekuire_worker_vs_raw [--rounds R] [--tasks N] [--tasks-1mb N] [--window W]
//                                         [--window-1mb W] [--concurrency C] [--size 100|10k|1m]
//                                         [--side both|ours|raw]
//
// Why a smaller window for 1 MB inputs: 16 outstanding keeps the pipeline of 16 handlers
// full, and hundreds of 1 MB tasks outstanding would only make the mock hold hundreds of MB.
// (Until the mock's `next_frames` stopped at `mock_stream_write_budget`, it also copied every
// pending frame of a stream into one growing buffer per write, which both sides paid.)

#include <sekuire/worker.hpp>

#include <sekuire/protocol.hpp>
#include <sekuire/testing/mock_backend.hpp>

#include <boost/json.hpp>

#include <httplib.h>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
namespace proto = sekuire::protocol;
namespace st = sekuire::testing;
using steady = std::chrono::steady_clock;

constexpr std::string_view capability = "echo";

struct input_size {
    const char* name;
    std::size_t bytes; // about the size of the serialized input
};
// 1 MB stays under the 1 MiB bound of a task stream line (protocol.md, the task stream).
constexpr input_size sizes[] = {{"100 B", 100}, {"10 KB", 10'000}, {"1 MB", 1'000'000}};
constexpr int concurrencies[] = {1, 4, 16};

struct settings {
    int rounds = 7;
    int tasks = 2000;    // per run, 100 B and 10 KB inputs
    int tasks_1mb = 100; // per run, 1 MB inputs
    int window = 256;     // tasks outstanding at most, 100 B and 10 KB inputs
    int window_1mb = 16;  // the same, 1 MB inputs
    int only_concurrency = 0;       // 0: all of `concurrencies`
    int only_size = -1;             // -1: all of `sizes`
    bool run_ours = true, run_raw = true;
};

void usage(std::FILE* to) {
    std::fprintf(to,
                 "usage: sekuire_worker_vs_raw [--rounds R] [--tasks N] [--tasks-1mb N] [--window W]\n"
                 "                             [--concurrency C] [--size 100|10k|1m] [--side both|ours|raw]\n"
                 "  --rounds R       rounds per case, sides interleaved (1..50, default 7)\n"
                 "  --tasks N        tasks per run with 100 B and 10 KB inputs (1..4000, default 2000)\n"
                 "  --tasks-1mb N    tasks per run with 1 MB inputs (1..4000, default 100)\n"
                 "  --window W       tasks outstanding at most, 100 B and 10 KB inputs (1..4000, default 256)\n"
                 "  --window-1mb W   tasks outstanding at most, 1 MB inputs (1..4000, default 16)\n"
                 "  --concurrency C  only this handler concurrency (1..256; default 1, 4 and 16)\n"
                 "  --size S         only this input size: 100, 10k or 1m (default all)\n"
                 "  --side S         both (default), or only ours or raw (for profiling; no ratio)\n");
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

// Returns 0 to go on, -1 after --help, else the exit code.
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
            std::fprintf(stderr, "sekuire_worker_vs_raw: %s needs a value\n", argv[i]);
            return 2;
        }
        bool ok = false;
        if (a == "--rounds")
            ok = parse_int(value, 1, 50, s.rounds);
        else if (a == "--tasks")
            ok = parse_int(value, 1, 4000, s.tasks);
        else if (a == "--tasks-1mb")
            ok = parse_int(value, 1, 4000, s.tasks_1mb);
        else if (a == "--window")
            ok = parse_int(value, 1, 4000, s.window);
        else if (a == "--window-1mb")
            ok = parse_int(value, 1, 4000, s.window_1mb);
        else if (a == "--concurrency")
            ok = parse_int(value, 1, 256, s.only_concurrency);
        else if (a == "--size") {
            ok = true;
            if (value == "100")
                s.only_size = 0;
            else if (value == "10k")
                s.only_size = 1;
            else if (value == "1m")
                s.only_size = 2;
            else
                ok = false;
        } else if (a == "--side") {
            ok = true;
            if (value == "both")
                s.run_ours = s.run_raw = true;
            else if (value == "ours")
                s.run_ours = true, s.run_raw = false;
            else if (value == "raw")
                s.run_ours = false, s.run_raw = true;
            else
                ok = false;
        } else {
            std::fprintf(stderr, "sekuire_worker_vs_raw: unknown flag %.*s\n", static_cast<int>(a.size()), a.data());
            usage(stderr);
            return 2;
        }
        if (!ok) {
            std::fprintf(stderr, "sekuire_worker_vs_raw: bad value for %.*s\n", static_cast<int>(a.size()), a.data());
            return 2;
        }
    }
    return 0;
}

/// A failed measurement: printed, exit code 1.
struct figure_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

template <class T>
T median(std::vector<T> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

st::mock_backend_options backend_options() {
    st::mock_backend_options o;
    // Only so that stopping the backend never waits long for an idle kept-alive client.
    o.keep_alive_timeout = 1s;
    return o;
}

json::value make_input(std::int64_t n, std::size_t bytes) {
    const std::size_t overhead = 24; // {"n":1234,"data":""} and a little
    return json::object{{"n", n}, {"data", std::string(bytes > overhead ? bytes - overhead : 1, 'x')}};
}

json::value expected_output(std::int64_t n, std::size_t bytes) {
    const std::size_t overhead = 24;
    return json::object{{"n", n}, {"len", static_cast<std::int64_t>(bytes > overhead ? bytes - overhead : 1)}};
}

/// What one side must do while the timed part runs: nothing but be connected.
struct run_result {
    double per_second = 0;
    double seconds = 0;
    double cpu_us_per_task = 0;      // the whole process: the side measured and the mock
    double switches_per_task = 0;    // voluntary and involuntary context switches, the same
};

struct usage_sample {
    double cpu_us = 0;
    double switches = 0;
};

usage_sample usage_now() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    const auto us = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec); };
    return {us(u.ru_utime) + us(u.ru_stime), static_cast<double>(u.ru_nvcsw + u.ru_nivcsw)};
}

/** The timed part, the same for both sides: enqueue `tasks` tasks with at most `window`
    outstanding, wait for each in order, then check each task and take the rate from the
    backend's completion stamps. `handler_runs` (ours) or `nullptr` (raw).
*/
run_result timed_part(st::mock_backend& backend, int tasks, int window, std::size_t bytes,
                      const std::vector<std::atomic<int>>* handler_runs) {
    std::vector<std::string> ids;
    ids.reserve(static_cast<std::size_t>(tasks));
    const auto total = static_cast<std::size_t>(tasks);
    const auto limit = static_cast<std::size_t>(window);
    // Inputs are built before the clock starts: building 1 MB strings is not the work measured.
    std::vector<json::value> inputs;
    inputs.reserve(total);
    for (std::size_t i = 0; i < total; ++i) inputs.push_back(make_input(static_cast<std::int64_t>(i), bytes));

    const usage_sample usage_before = usage_now();
    const auto first = std::chrono::system_clock::now(); // the backend stamps with the system clock
    const auto deadline = steady::now() + std::max<std::chrono::milliseconds>(60s, tasks * 50ms);
    std::size_t done = 0;
    while (done < total) {
        while (ids.size() < total && ids.size() - done < limit) {
            st::mock_task_request r;
            r.capability = std::string(capability);
            r.input = std::move(inputs[ids.size()]);
            ids.push_back(backend.enqueue_task(std::move(r)));
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
        if (left <= 0ms || !backend.wait_for_task(ids[done], st::mock_task_status::completed, left))
            throw figure_error("task " + ids[done] + " was lost (not completed in time)");
        ++done;
    }
    const usage_sample usage_after = usage_now();

    std::chrono::system_clock::time_point last = first;
    for (std::size_t i = 0; i < total; ++i) {
        const auto t = backend.task(ids[i]);
        if (!t || t->status != st::mock_task_status::completed || !t->completed_at)
            throw figure_error("task " + ids[i] + " is not completed");
        if (t->output != expected_output(static_cast<std::int64_t>(i), bytes))
            throw figure_error("task " + ids[i] + " has the wrong output " + json::serialize(t->output));
        if (t->delivery_count != 1)
            throw figure_error("task " + ids[i] + " was delivered " + std::to_string(t->delivery_count) + " times");
        const auto posts = backend.request_count(proto::path::complete(ids[i]));
        if (posts != 1)
            throw figure_error("task " + ids[i] + " was completed " + std::to_string(posts) + " times");
        if (handler_runs && (*handler_runs)[i].load() != 1)
            throw figure_error("the handler ran " + std::to_string((*handler_runs)[i].load()) + " times for task " +
                               ids[i]);
        last = std::max(last, *t->completed_at);
    }
    run_result out;
    out.seconds = std::chrono::duration<double>(last - first).count();
    out.per_second = tasks / out.seconds;
    out.cpu_us_per_task = (usage_after.cpu_us - usage_before.cpu_us) / tasks;
    out.switches_per_task = (usage_after.switches - usage_before.switches) / tasks;
    return out;
}

// ---- ours ---------------------------------------------------------------------------------

run_result run_ours(int concurrency, int tasks, int window, std::size_t bytes) {
    st::mock_backend backend(backend_options());
    backend.start();
    std::vector<std::atomic<int>> runs(static_cast<std::size_t>(tasks));
    sekuire::worker_options o;
    o.api_base_url = backend.url();
    o.agent_id = "agent-ours";
    o.install_token = backend.create_install_token();
    o.workspace_id = std::string(st::mock_default_workspace);
    o.max_concurrent_handlers = static_cast<std::size_t>(concurrency);
    o.startup_jitter = 0ms;
    auto worker = sekuire::create_worker(std::move(o));
    worker->on_task(std::string(capability), [&runs](const sekuire::task_context&, const json::value& input) {
        const auto& in = input.as_object();
        const std::int64_t n = in.at("n").as_int64();
        if (n >= 0 && static_cast<std::size_t>(n) < runs.size()) runs[static_cast<std::size_t>(n)].fetch_add(1);
        return json::value(json::object{{"n", n}, {"len", static_cast<std::int64_t>(in.at("data").as_string().size())}});
    });
    worker->start();
    const auto deadline = steady::now() + 15s;
    for (;;) {
        const auto status = worker->get_status();
        if (status.stream_connected && backend.open_streams(status.installation_id) == 1) break;
        if (steady::now() >= deadline) throw figure_error("the worker did not connect its task stream");
        std::this_thread::sleep_for(1ms);
    }
    const auto r = timed_part(backend, tasks, window, bytes, &runs);
    worker.reset();
    backend.stop();
    return r;
}

// ---- raw ----------------------------------------------------------------------------------

struct raw_task {
    std::string task_id;
    json::value input; // read on the poster's thread, as a handler would
};

/// The raw side's hand-off from the stream reader to the posters.
class task_queue {
public:
    void push(raw_task t) {
        {
            std::lock_guard<std::mutex> lk(m_);
            q_.push_back(std::move(t));
        }
        cv_.notify_one();
    }
    /// The next task, or nothing once closed (or after `deadline`).
    std::optional<raw_task> pop(steady::time_point deadline) {
        std::unique_lock<std::mutex> lk(m_);
        if (!cv_.wait_until(lk, deadline, [this] { return closed_ || !q_.empty(); })) return std::nullopt;
        if (q_.empty()) return std::nullopt;
        raw_task t = std::move(q_.front());
        q_.pop_front();
        return t;
    }
    void close() {
        {
            std::lock_guard<std::mutex> lk(m_);
            closed_ = true;
        }
        cv_.notify_all();
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<raw_task> q_;
    bool closed_ = false;
};

/// Splits the task stream into events and queues each task event.
class raw_stream_reader {
public:
    raw_stream_reader(task_queue& q, std::atomic<int>& errors) : q_(q), errors_(errors) {}

    void feed(const char* data, std::size_t n) {
        buf_.append(data, n);
        for (;;) {
            const auto end = buf_.find("\n\n", scanned_);
            if (end == std::string::npos) {
                scanned_ = buf_.empty() ? 0 : buf_.size() - 1;
                break;
            }
            event(std::string_view(buf_).substr(0, end + 1));
            buf_.erase(0, end + 2);
            scanned_ = 0;
        }
    }

private:
    void event(std::string_view ev) {
        std::string_view type, data;
        while (!ev.empty()) {
            const auto nl = ev.find('\n');
            const auto line = ev.substr(0, nl);
            ev.remove_prefix(nl == std::string_view::npos ? ev.size() : nl + 1);
            if (line.substr(0, 7) == "event: ")
                type = line.substr(7);
            else if (line.substr(0, 6) == "data: ")
                data = line.substr(6);
        }
        if (type != "task") return;
        boost::system::error_code ec;
        json::value v = json::parse(json::string_view(data.data(), data.size()), ec);
        json::object* o = v.if_object();
        const json::value* id = o ? o->if_contains("task_id") : nullptr;
        json::value* in = o ? o->if_contains("input") : nullptr;
        if (ec || !id || !id->is_string() || !in) {
            errors_.fetch_add(1);
            return;
        }
        // The input goes to a poster thread whole, as a worker hands it to a handler.
        q_.push(raw_task{std::string(id->get_string()), std::move(*in)});
    }

    task_queue& q_;
    std::atomic<int>& errors_;
    std::string buf_;
    std::size_t scanned_ = 0;
};

run_result run_raw(int concurrency, int tasks, int window, std::size_t bytes) {
    st::mock_backend backend(backend_options());
    backend.start();
    const int port = backend.port();

    // Untimed setup: bootstrap an installation.
    proto::bootstrap_request boot;
    boot.install_token = backend.create_install_token();
    boot.agent_id = "agent-raw";
    boot.capabilities = {std::string(capability)};
    proto::bootstrap_response creds;
    {
        httplib::Client cli("127.0.0.1", port);
        auto res = cli.Post(std::string(proto::path::bootstrap), proto::encode(boot), "application/json");
        proto::decode_error err;
        if (!res || res->status != 201 || !proto::decode(res->body, creds, err))
            throw figure_error("the raw bootstrap failed");
    }
    const std::string bearer = "Bearer " + creds.runtime_token;
    const std::string inst = creds.installation_id;

    task_queue queue;
    std::atomic<int> errors{0};
    std::atomic<bool> stopping{false};
    const auto run_deadline = steady::now() + std::max<std::chrono::milliseconds>(90s, tasks * 60ms);

    std::thread reader([&] {
        httplib::Client cli("127.0.0.1", port);
        cli.set_tcp_nodelay(true);
        cli.set_read_timeout(120, 0);
        raw_stream_reader parse(queue, errors);
        const httplib::Headers headers{{"Authorization", bearer}, {"Accept", "text/event-stream"}};
        auto res = cli.Get(
            proto::path::task_stream(inst, {std::string(capability)}), headers,
            [&](const httplib::Response& r) { return r.status == 200; },
            [&](const char* data, std::size_t n) {
                if (stopping.load()) return false;
                parse.feed(data, n);
                return true;
            });
        // The stream ends when the backend stops (or the handler above refused a status).
        if (!stopping.load()) errors.fetch_add(1);
        (void)res;
    });

    std::vector<std::thread> posters;
    for (int i = 0; i < concurrency; ++i) {
        posters.emplace_back([&] {
            httplib::Client cli("127.0.0.1", port);
            cli.set_keep_alive(true);
            cli.set_tcp_nodelay(true);
            const httplib::Headers headers{{"Authorization", bearer}};
            while (auto t = queue.pop(run_deadline)) {
                // The handler's work: read the input, answer, drop the input.
                const json::object* input = t->input.if_object();
                const json::value* n = input ? input->if_contains("n") : nullptr;
                const json::value* d = input ? input->if_contains("data") : nullptr;
                if (!n || !n->is_int64() || !d || !d->is_string()) {
                    errors.fetch_add(1);
                    continue;
                }
                const std::int64_t len = static_cast<std::int64_t>(d->get_string().size());
                json::object body;
                body["installation_id"] = inst;
                body["status"] = "completed";
                body["output"] = json::object{{"n", n->get_int64()}, {"len", len}};
                t->input = nullptr;
                body["execution_time_ms"] = 0;
                auto res = cli.Post(proto::path::complete(t->task_id), headers, json::serialize(body),
                                    "application/json");
                if (!res || res->status != 200) errors.fetch_add(1);
            }
        });
    }

    std::optional<run_result> r;
    std::exception_ptr failed;
    try {
        const auto deadline = steady::now() + 15s;
        while (backend.open_streams(inst) != 1) {
            if (steady::now() >= deadline) throw figure_error("the raw task stream did not open");
            std::this_thread::sleep_for(1ms);
        }
        r = timed_part(backend, tasks, window, bytes, nullptr);
    } catch (...) {
        failed = std::current_exception();
    }
    stopping.store(true);
    queue.close();
    for (auto& t : posters) t.join();
    backend.stop(); // ends the task stream: the reader's Get returns
    reader.join();
    if (failed) std::rethrow_exception(failed);
    if (errors.load() != 0) throw figure_error("the raw side saw " + std::to_string(errors.load()) + " failures");
    return *r;
}

// ---- the table ----------------------------------------------------------------------------

struct case_result {
    int concurrency = 0;
    const char* size = "";
    int tasks = 0;
    double ours = 0, raw = 0, ratio = 0, ratio_min = 0, ratio_max = 0;
    double ours_cpu = 0, raw_cpu = 0, ours_switches = 0, raw_switches = 0; // per task, medians
};

int run(const settings& s) {
    std::printf("sekuire worker vs raw httplib: mock backend in-process on 127.0.0.1 (2 I/O threads), %d rounds per "
                "case, sides interleaved; at most %d tasks outstanding (%d with 1 MB inputs); hardware threads: %u.\n"
                "tasks/s from the first enqueue to the last completion stamped by the backend.\n\n",
                s.rounds, s.window, s.window_1mb, std::thread::hardware_concurrency());
    std::vector<case_result> table;
    std::vector<int> cs(std::begin(concurrencies), std::end(concurrencies));
    if (s.only_concurrency) cs = {s.only_concurrency};
    for (const int conc : cs) {
        for (int si = 0; si < 3; ++si) {
            if (s.only_size >= 0 && s.only_size != si) continue;
            const auto& size = sizes[si];
            const int tasks = size.bytes >= 1'000'000 ? s.tasks_1mb : s.tasks;
            const int window = std::min(size.bytes >= 1'000'000 ? s.window_1mb : s.window, tasks);
            std::vector<double> ours, raw, ratios, ours_cpu, raw_cpu, ours_sw, raw_sw;
            for (int round = 0; round < s.rounds; ++round) {
                run_result ro, rw;
                const bool ours_first = round % 2 == 0;
                for (int side = 0; side < 2; ++side) {
                    const bool is_ours = (side == 0) == ours_first;
                    if (is_ours && s.run_ours) ro = run_ours(conc, tasks, window, size.bytes);
                    if (!is_ours && s.run_raw) rw = run_raw(conc, tasks, window, size.bytes);
                }
                const double o = ro.per_second, w = rw.per_second;
                if (s.run_ours) {
                    ours.push_back(o);
                    ours_cpu.push_back(ro.cpu_us_per_task);
                    ours_sw.push_back(ro.switches_per_task);
                }
                if (s.run_raw) {
                    raw.push_back(w);
                    raw_cpu.push_back(rw.cpu_us_per_task);
                    raw_sw.push_back(rw.switches_per_task);
                }
                if (s.run_ours && s.run_raw) ratios.push_back(o / w);
                std::printf("  C=%-3d %-6s round %d:", conc, size.name, round + 1);
                if (s.run_ours)
                    std::printf("   ours %9.0f tasks/s (%6.1f us CPU, %5.2f cs /task)", o, ro.cpu_us_per_task,
                                ro.switches_per_task);
                if (s.run_raw)
                    std::printf("   raw %9.0f tasks/s (%6.1f us CPU, %5.2f cs /task)", w, rw.cpu_us_per_task,
                                rw.switches_per_task);
                if (!ratios.empty()) std::printf("   ratio %.3fx", ratios.back());
                std::printf("\n");
                std::fflush(stdout);
            }
            case_result cr;
            cr.concurrency = conc;
            cr.size = size.name;
            cr.tasks = tasks;
            if (!ours.empty()) {
                cr.ours = median(ours);
                cr.ours_cpu = median(ours_cpu);
                cr.ours_switches = median(ours_sw);
            }
            if (!raw.empty()) {
                cr.raw = median(raw);
                cr.raw_cpu = median(raw_cpu);
                cr.raw_switches = median(raw_sw);
            }
            if (!ratios.empty()) {
                cr.ratio = median(ratios);
                cr.ratio_min = *std::min_element(ratios.begin(), ratios.end());
                cr.ratio_max = *std::max_element(ratios.begin(), ratios.end());
            }
            table.push_back(cr);
        }
    }
    std::printf("\n%-4s %-6s %6s %13s %13s %7s %13s %19s %19s\n", "C", "input", "tasks", "ours tasks/s",
                "raw tasks/s", "ratio", "ratio min..max", "CPU us/task ours/raw", "switches/task o/r");
    for (const auto& r : table)
        std::printf("%-4d %-6s %6d %13.0f %13.0f %6.2fx %6.2f..%-6.2f %9.1f/%-9.1f %9.2f/%-9.2f\n", r.concurrency,
                    r.size, r.tasks, r.ours, r.raw, r.ratio, r.ratio_min, r.ratio_max, r.ours_cpu, r.raw_cpu,
                    r.ours_switches, r.raw_switches);
    std::printf("(medians over %d rounds; ratio = median of the per-round ours/raw. CPU time and context switches are\n"
                " the whole process's during the timed part, the mock backend's included, divided by the tasks.)\n",
                s.rounds);
    return 0;
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
        std::fprintf(stderr, "sekuire_worker_vs_raw: %s\n", e.what());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sekuire_worker_vs_raw: error: %s\n", e.what());
    }
    return 1;
}
