// SPDX-License-Identifier: MIT
// sekuire-fleet's engine (not installed): N asynchronous beacons on an io_context run by a
// few threads, started in a staggered way against one backend, observed through a
// transport and a timer that count what passes through them; the first W of them also run
// an asynchronous worker, and tasks are enqueued at a rate through the mock's admin API.
// docs/fleet.md describes the program and its table.
#ifndef SEKUIRE_TOOLS_FLEET_HPP
#define SEKUIRE_TOOLS_FLEET_HPP

#include <sekuire/async/beacon.hpp>
#include <sekuire/async/worker.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/histogram.hpp>
#include <sekuire/mask.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/fixed_probe.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

namespace sekuire_tools {
namespace fleet {

using namespace std::chrono_literals;

struct fleet_stats;

/// What a run does.
struct fleet_options {
    std::string url;                        ///< the backend's base URL
    std::size_t agents = 100;               ///< simulated agents
    std::size_t threads = 1;                ///< threads running the io_context
    std::chrono::milliseconds stagger{10s}; ///< agent i starts at stagger * i / agents
    std::chrono::seconds interval{60};      ///< heartbeat interval of each agent
    std::chrono::milliseconds duration{60s}; ///< from the first start to the stop of all
    std::chrono::milliseconds late_after{100ms}; ///< a scheduled heartbeat later than this is late
    std::chrono::milliseconds report_every{1s}; ///< live summary period (0: none)
    std::vector<std::string> install_tokens; ///< one per agent; empty: created by the admin API
    std::string api_key;                     ///< the admin API's key (for creating tokens)
    std::string agent_prefix = "fleet-agent-";
    std::size_t workers = 0; ///< the first `workers` agents also run an asynchronous worker
    /// How long each task's handler waits (on a timer) before it answers (0: at once).
    std::chrono::milliseconds handler_sleep{0};
    /// Tasks enqueued per second through the admin API (`POST /admin/v1/tasks`, the
    /// mock's; 0: none), from the first start until `duration`.
    double task_rate = 0;
    /// After `duration`, how long the run waits for the tasks enqueued to be reported
    /// before it stops the agents.
    std::chrono::milliseconds task_drain{10s};
    sekuire::transport_options transport;
    /// Called on a run thread with each live summary (a benchmark samples the process).
    std::function<void(const fleet_stats&)> on_report;
};

/// Latency quantiles of a histogram with fine buckets: the upper bound of the bucket that
/// holds the rank (so within one bucket, about 5 %, of the true value).
inline double quantile_seconds(const sekuire::histogram_snapshot& s, double q) {
    if (s.count == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(s.count)));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < s.counts.size(); ++i) {
        seen += s.counts[i];
        if (seen >= std::max<std::uint64_t>(rank, 1)) return i < s.upper_bounds.size() ? s.upper_bounds[i] : INFINITY;
    }
    return INFINITY;
}

/// Bucket bounds from 50 us to 120 s, 5 % apart.
inline std::vector<double> fine_bounds() {
    std::vector<double> b;
    for (double v = 50e-6; v < 120; v *= 1.05) b.push_back(v);
    return b;
}

/// The counters of a run (every member safe to update from any thread).
struct fleet_stats {
    std::atomic<std::uint64_t> agents_started{0}, agents_connected_once{0};
    std::atomic<std::uint64_t> bootstraps_sent{0}, bootstraps_ok{0};
    std::atomic<std::uint64_t> recovers_sent{0}, refreshes_sent{0}, other_sent{0};
    std::atomic<std::uint64_t> heartbeats_sent{0}, heartbeats_answered{0}, heartbeats_ok{0};
    std::atomic<std::uint64_t> heartbeats_scheduled{0}, heartbeats_on_time{0};
    std::atomic<std::uint64_t> requests_canceled{0};
    std::atomic<std::uint64_t> lease_losses{0}, revocations{0};
    std::atomic<std::int64_t> max_latency_ns{0}, max_lateness_ns{0};
    sekuire::latency_histogram heartbeat_latency{fine_bounds()};
    sekuire::latency_histogram heartbeat_lateness{fine_bounds()};
    std::mutex errors_mutex;
    std::map<std::string, std::uint64_t> errors; ///< by class: "http 503", "timeout", ...
    // Tasks.
    std::atomic<std::uint64_t> workers_started{0}, tasks_enqueued{0}, tasks_handled{0};
    std::atomic<std::uint64_t> tasks_completed{0}, tasks_not_completed{0}, completions_sent{0};
    std::atomic<std::int64_t> max_task_latency_ns{0};
    sekuire::latency_histogram task_latency{fine_bounds()};
    std::map<std::string, std::uint64_t> task_errors; ///< by class; under errors_mutex

    void error(const std::string& what) {
        std::lock_guard<std::mutex> lock(errors_mutex);
        ++errors[what];
    }
    void task_error(const std::string& what) {
        std::lock_guard<std::mutex> lock(errors_mutex);
        ++task_errors[what];
    }
    static void raise(std::atomic<std::int64_t>& m, std::int64_t v) {
        std::int64_t cur = m.load();
        while (v > cur && !m.compare_exchange_weak(cur, v)) {
        }
    }
};

// What one agent's timer and transport share: whether a timer handler is running now, and
// how late it fired (a heartbeat sent inside it was scheduled).
struct agent_context {
    bool in_timer = false;
    std::chrono::steady_clock::duration lateness{};
    bool lease_lost = false;
    bool connected_once = false;
};

/// A Timer that records how late each wait fires.
class counting_timer {
public:
    counting_timer(const boost::asio::any_io_executor& ex, std::shared_ptr<agent_context> ctx)
        : timer_(ex), ctx_(std::move(ctx)) {}

    template <class Handler>
    void async_wait_until(sekuire::steady_time_point deadline, Handler&& h) {
        auto ex = boost::asio::get_associated_executor(h);
        timer_.async_wait_until(
            deadline, boost::asio::bind_executor(ex, [ctx = ctx_, deadline, h = std::forward<Handler>(h)](
                                                         sekuire::error_code ec) mutable {
                if (!ec) {
                    ctx->in_timer = true;
                    ctx->lateness = std::chrono::steady_clock::now() - deadline;
                }
                std::move(h)(ec);
                ctx->in_timer = false;
            }));
    }
    void cancel() { timer_.cancel(); }

private:
    sekuire::async::steady_timer timer_;
    std::shared_ptr<agent_context> ctx_;
};

/// The kind of a request, from its path.
enum class request_kind { bootstrap, recover, refresh, heartbeat, other };

inline request_kind kind_of(const std::string& target) {
    const std::string path = target.substr(0, target.find('?'));
    auto ends_with = [&](std::string_view s) {
        return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
    };
    if (path == sekuire::protocol::path::bootstrap) return request_kind::bootstrap;
    if (path == sekuire::protocol::path::recover) return request_kind::recover;
    if (ends_with("/heartbeat")) return request_kind::heartbeat;
    if (ends_with("/refresh")) return request_kind::refresh;
    return request_kind::other;
}

/// An AsyncTransport over `beast_transport` that counts requests, answers, errors and
/// heartbeat latency and lateness into `fleet_stats`.
class counting_transport {
public:
    using executor_type = boost::asio::any_io_executor;

    counting_transport(sekuire::beast_transport inner, std::shared_ptr<fleet_stats> stats,
                       std::shared_ptr<agent_context> ctx)
        : inner_(std::move(inner)), stats_(std::move(stats)), ctx_(std::move(ctx)) {}

    executor_type get_executor() const { return inner_.get_executor(); }

    template <class Token>
    auto async_send(const sekuire::http_request& req, Token&& token) {
        return boost::asio::async_initiate<Token, void(sekuire::error_code, sekuire::http_response)>(
            [this](auto handler, const sekuire::http_request& r) {
                const request_kind k = kind_of(r.target);
                fleet_stats& s = *stats_;
                switch (k) {
                case request_kind::bootstrap: ++s.bootstraps_sent; break;
                case request_kind::recover: ++s.recovers_sent; break;
                case request_kind::refresh: ++s.refreshes_sent; break;
                case request_kind::heartbeat:
                    ++s.heartbeats_sent;
                    if (ctx_->in_timer) {
                        ++s.heartbeats_scheduled;
                        if (ctx_->lateness <= late_after_) ++s.heartbeats_on_time;
                        s.heartbeat_lateness.observe(ctx_->lateness);
                        fleet_stats::raise(s.max_lateness_ns,
                                           std::chrono::duration_cast<std::chrono::nanoseconds>(ctx_->lateness).count());
                    }
                    break;
                case request_kind::other: ++s.other_sent; break;
                }
                auto slot = boost::asio::get_associated_cancellation_slot(handler);
                auto ex = boost::asio::get_associated_executor(handler, inner_.get_executor());
                const auto t0 = std::chrono::steady_clock::now();
                inner_.async_send(
                    r, boost::asio::bind_cancellation_slot(
                           slot, boost::asio::bind_executor(
                                     ex, [stats = stats_, k, t0, h = std::move(handler)](
                                             sekuire::error_code ec, sekuire::http_response res) mutable {
                                         record(*stats, k, t0, ec, res);
                                         std::move(h)(ec, std::move(res));
                                     })));
            },
            token, req);
    }

    template <class Token>
    auto async_stream(const sekuire::http_request& req, sekuire::stream_callbacks cb, Token&& token) {
        return inner_.async_stream(req, std::move(cb), std::forward<Token>(token));
    }

    void set_late_after(std::chrono::steady_clock::duration d) { late_after_ = d; }

    /// Closes the connections (the run is over).
    void close() { inner_.close(); }

private:
    static void record(fleet_stats& s, request_kind k, std::chrono::steady_clock::time_point t0,
                       const sekuire::error_code& ec, const sekuire::http_response& res) {
        if (ec) {
            if (ec == sekuire::errc::canceled) {
                ++s.requests_canceled; // the beacon's stop gave it up: not an error
                return;
            }
            s.error(ec.message());
            return;
        }
        if (res.status >= 400) s.error("http " + std::to_string(res.status));
        if (k == request_kind::bootstrap && res.status / 100 == 2) ++s.bootstraps_ok;
        if (k == request_kind::heartbeat) {
            const auto d = std::chrono::steady_clock::now() - t0;
            ++s.heartbeats_answered;
            if (res.status / 100 == 2) ++s.heartbeats_ok;
            s.heartbeat_latency.observe(d);
            fleet_stats::raise(s.max_latency_ns, std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
        }
    }

    sekuire::beast_transport inner_;
    std::shared_ptr<fleet_stats> stats_;
    std::shared_ptr<agent_context> ctx_;
    std::chrono::steady_clock::duration late_after_ = 100ms;
};

/// Steady-clock nanoseconds: the time a task is enqueued, carried in its input and echoed
/// in its output, so that its latency is measured when its result is accepted.
inline std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// The worker's AsyncTransport: `beast_transport`, counting the results it reports (and
/// the task latency of those accepted) into `fleet_stats`.
class worker_transport {
public:
    using executor_type = boost::asio::any_io_executor;

    worker_transport(sekuire::beast_transport inner, std::shared_ptr<fleet_stats> stats)
        : inner_(std::move(inner)), stats_(std::move(stats)) {}

    executor_type get_executor() const { return inner_.get_executor(); }

    template <class Token>
    auto async_send(const sekuire::http_request& req, Token&& token) {
        return boost::asio::async_initiate<Token, void(sekuire::error_code, sekuire::http_response)>(
            [this](auto handler, const sekuire::http_request& r) {
                const std::string path = r.target.substr(0, r.target.find('?'));
                const bool completion = path.rfind(sekuire::protocol::path::tasks_prefix, 0) == 0;
                std::int64_t enqueued = 0;
                std::string outcome; // empty: completed; else the class of a task not completed
                if (completion) {
                    ++stats_->completions_sent;
                    sekuire::protocol::completion_request body;
                    sekuire::protocol::decode_error err;
                    if (sekuire::protocol::decode(r.body, body, err)) {
                        if (body.status != sekuire::protocol::task_status::completed)
                            outcome = std::string("task ") + sekuire::protocol::to_string(body.status) +
                                      (body.error ? std::string(" ") + sekuire::protocol::to_string(body.error->code) : "");
                        if (body.output.is_object() && body.output.as_object().contains("enqueued_ns") &&
                            body.output.as_object().at("enqueued_ns").is_int64())
                            enqueued = body.output.as_object().at("enqueued_ns").as_int64();
                    }
                }
                auto slot = boost::asio::get_associated_cancellation_slot(handler);
                auto ex = boost::asio::get_associated_executor(handler, inner_.get_executor());
                inner_.async_send(
                    r, boost::asio::bind_cancellation_slot(
                           slot, boost::asio::bind_executor(ex, [stats = stats_, completion, enqueued, outcome,
                                                                 h = std::move(handler)](sekuire::error_code ec,
                                                                                         sekuire::http_response res) mutable {
                               if (completion) record(*stats, enqueued, outcome, ec, res);
                               std::move(h)(ec, std::move(res));
                           })));
            },
            token, req);
    }

    template <class Token>
    auto async_stream(const sekuire::http_request& req, sekuire::stream_callbacks cb, Token&& token) {
        return inner_.async_stream(req, std::move(cb), std::forward<Token>(token));
    }

    /// Closes the connections (the run is over).
    void close() { inner_.close(); }

private:
    static void record(fleet_stats& s, std::int64_t enqueued, const std::string& outcome, const sekuire::error_code& ec,
                       const sekuire::http_response& res) {
        if (ec) {
            if (ec != sekuire::errc::canceled) s.task_error("completion: " + ec.message());
            return;
        }
        // 409: the backend has this result already (a retry whose first try got through).
        if (res.status / 100 != 2 && res.status != 409) {
            s.task_error("completion: http " + std::to_string(res.status));
            return;
        }
        if (!outcome.empty()) {
            ++s.tasks_not_completed;
            s.task_error(outcome);
            return;
        }
        ++s.tasks_completed;
        if (enqueued > 0) {
            const auto d = std::chrono::nanoseconds(now_ns() - enqueued);
            s.task_latency.observe(d);
            fleet_stats::raise(s.max_task_latency_ns, d.count());
        }
    }

    sekuire::beast_transport inner_;
    std::shared_ptr<fleet_stats> stats_;
};

/// One simulated agent's worker.
using agent_worker = sekuire::async::basic_worker<worker_transport, sekuire::system_clock, sekuire::memory_store>;

/// One simulated agent's beacon.
using agent_beacon = sekuire::async::basic_beacon<counting_transport, sekuire::system_clock, sekuire::memory_store,
                                                  sekuire::testing::fixed_probe, counting_timer>;

/// Quantiles and maximum of one latency histogram, in seconds.
struct latency_summary {
    double p50 = 0, p95 = 0, p99 = 0, max = 0;
};

/// The summary of `s`, with the exact maximum `max_ns` (the histogram rounds it).
inline latency_summary summarize(const sekuire::histogram_snapshot& s, std::int64_t max_ns) {
    return {quantile_seconds(s, 0.50), quantile_seconds(s, 0.95), quantile_seconds(s, 0.99),
            static_cast<double>(max_ns) / 1e9};
}

/// The figures of a finished run.
struct fleet_report {
    std::size_t agents = 0;
    double seconds = 0;
    std::uint64_t agents_started = 0, agents_connected = 0;
    std::uint64_t bootstraps_sent = 0, bootstraps_ok = 0, recovers_sent = 0, refreshes_sent = 0;
    std::uint64_t heartbeats_sent = 0, heartbeats_answered = 0, heartbeats_ok = 0;
    std::uint64_t heartbeats_scheduled = 0, heartbeats_on_time = 0;
    std::uint64_t requests_canceled = 0, lease_losses = 0, revocations = 0;
    latency_summary heartbeat_latency;
    double lateness_p99 = 0, lateness_max = 0;
    std::map<std::string, std::uint64_t> errors;
    std::uint64_t workers = 0, workers_started = 0;
    std::uint64_t tasks_enqueued = 0, tasks_handled = 0, tasks_completed = 0, tasks_not_completed = 0;
    std::uint64_t completions_sent = 0;
    latency_summary task_latency;
    std::map<std::string, std::uint64_t> task_errors;
    std::string setup_error; ///< set when the run could not start (no tokens, say)
};

inline fleet_report report_of(fleet_stats& s, std::size_t agents, double seconds) {
    fleet_report r;
    r.agents = agents;
    r.seconds = seconds;
    r.agents_started = s.agents_started;
    r.agents_connected = s.agents_connected_once;
    r.bootstraps_sent = s.bootstraps_sent;
    r.bootstraps_ok = s.bootstraps_ok;
    r.recovers_sent = s.recovers_sent;
    r.refreshes_sent = s.refreshes_sent;
    r.heartbeats_sent = s.heartbeats_sent;
    r.heartbeats_answered = s.heartbeats_answered;
    r.heartbeats_ok = s.heartbeats_ok;
    r.heartbeats_scheduled = s.heartbeats_scheduled;
    r.heartbeats_on_time = s.heartbeats_on_time;
    r.requests_canceled = s.requests_canceled;
    r.lease_losses = s.lease_losses;
    r.revocations = s.revocations;
    r.heartbeat_latency = summarize(s.heartbeat_latency.snapshot(), s.max_latency_ns.load());
    const auto late = s.heartbeat_lateness.snapshot();
    r.lateness_p99 = quantile_seconds(late, 0.99);
    r.lateness_max = static_cast<double>(s.max_lateness_ns.load()) / 1e9;
    r.workers_started = s.workers_started;
    r.tasks_enqueued = s.tasks_enqueued;
    r.tasks_handled = s.tasks_handled;
    r.tasks_completed = s.tasks_completed;
    r.tasks_not_completed = s.tasks_not_completed;
    r.completions_sent = s.completions_sent;
    r.task_latency = summarize(s.task_latency.snapshot(), s.max_task_latency_ns.load());
    std::lock_guard<std::mutex> lock(s.errors_mutex);
    r.errors = s.errors;
    r.task_errors = s.task_errors;
    return r;
}

inline std::string ms(double seconds) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f ms", seconds * 1000);
    return buf;
}

inline std::uint64_t error_total(const std::map<std::string, std::uint64_t>& e) {
    std::uint64_t n = 0;
    for (const auto& kv : e) n += kv.second;
    return n;
}

/// The final table, one figure a line.
inline void print_table(std::ostream& out, const fleet_report& r) {
    auto row = [&](const std::string& name, const std::string& value) {
        out << "  " << name << std::string(name.size() < 28 ? 28 - name.size() : 1, ' ') << value << "\n";
    };
    auto latency_rows = [&](const std::string& name, const latency_summary& l) {
        row(name + " p50", ms(l.p50));
        row(name + " p95", ms(l.p95));
        row(name + " p99", ms(l.p99));
        row(name + " max", ms(l.max));
    };
    char head[96];
    std::snprintf(head, sizeof head, "sekuire-fleet: %zu agents, %.1f s\n", r.agents, r.seconds);
    out << head;
    row("agents started", std::to_string(r.agents_started));
    row("agents connected", std::to_string(r.agents_connected));
    row("bootstraps sent", std::to_string(r.bootstraps_sent));
    row("bootstraps ok", std::to_string(r.bootstraps_ok));
    row("recoveries sent", std::to_string(r.recovers_sent));
    row("refreshes sent", std::to_string(r.refreshes_sent));
    row("heartbeats sent", std::to_string(r.heartbeats_sent));
    row("heartbeats answered", std::to_string(r.heartbeats_answered));
    row("heartbeats ok", std::to_string(r.heartbeats_ok));
    row("heartbeats scheduled", std::to_string(r.heartbeats_scheduled));
    row("heartbeats on time", std::to_string(r.heartbeats_on_time));
    latency_rows("heartbeat latency", r.heartbeat_latency);
    row("heartbeat lateness p99", ms(r.lateness_p99));
    row("heartbeat lateness max", ms(r.lateness_max));
    row("requests canceled at stop", std::to_string(r.requests_canceled));
    row("lease losses", std::to_string(r.lease_losses));
    row("revocations", std::to_string(r.revocations));
    row("errors", std::to_string(error_total(r.errors)));
    for (const auto& kv : r.errors) row("  " + kv.first, std::to_string(kv.second));
    if (r.workers == 0) return;
    row("workers", std::to_string(r.workers));
    row("workers started", std::to_string(r.workers_started));
    row("tasks enqueued", std::to_string(r.tasks_enqueued));
    row("tasks handled", std::to_string(r.tasks_handled));
    row("results sent", std::to_string(r.completions_sent));
    row("tasks completed", std::to_string(r.tasks_completed));
    row("tasks not completed", std::to_string(r.tasks_not_completed));
    latency_rows("task latency", r.task_latency);
    row("task errors", std::to_string(error_total(r.task_errors)));
    for (const auto& kv : r.task_errors) row("  " + kv.first, std::to_string(kv.second));
}

/// `<prefix>_p50`, `_p95`, `_p99` and `_max` of `l`, in seconds, into `o`.
inline void put_latency(boost::json::object& o, const std::string& prefix, const latency_summary& l) {
    o[prefix + "_p50"] = l.p50;
    o[prefix + "_p95"] = l.p95;
    o[prefix + "_p99"] = l.p99;
    o[prefix + "_max"] = l.max;
}

/// The report as JSON (the same figures; seconds for durations).
inline std::string to_json(const fleet_report& r) {
    boost::json::object o;
    o["agents"] = r.agents;
    o["seconds"] = r.seconds;
    o["agents_started"] = r.agents_started;
    o["agents_connected"] = r.agents_connected;
    o["bootstraps_sent"] = r.bootstraps_sent;
    o["bootstraps_ok"] = r.bootstraps_ok;
    o["recoveries_sent"] = r.recovers_sent;
    o["refreshes_sent"] = r.refreshes_sent;
    o["heartbeats_sent"] = r.heartbeats_sent;
    o["heartbeats_answered"] = r.heartbeats_answered;
    o["heartbeats_ok"] = r.heartbeats_ok;
    o["heartbeats_scheduled"] = r.heartbeats_scheduled;
    o["heartbeats_on_time"] = r.heartbeats_on_time;
    put_latency(o, "heartbeat_latency", r.heartbeat_latency);
    o["heartbeat_lateness_p99"] = r.lateness_p99;
    o["heartbeat_lateness_max"] = r.lateness_max;
    o["requests_canceled"] = r.requests_canceled;
    o["lease_losses"] = r.lease_losses;
    o["revocations"] = r.revocations;
    boost::json::object e;
    for (const auto& kv : r.errors) e[kv.first] = kv.second;
    o["errors"] = std::move(e);
    o["workers"] = r.workers;
    o["workers_started"] = r.workers_started;
    o["tasks_enqueued"] = r.tasks_enqueued;
    o["tasks_handled"] = r.tasks_handled;
    o["results_sent"] = r.completions_sent;
    o["tasks_completed"] = r.tasks_completed;
    o["tasks_not_completed"] = r.tasks_not_completed;
    put_latency(o, "task_latency", r.task_latency);
    boost::json::object te;
    for (const auto& kv : r.task_errors) te[kv.first] = kv.second;
    o["task_errors"] = std::move(te);
    return boost::json::serialize(o);
}

/** Runs a fleet: creates install tokens when none were given (POST
    /admin/v1/install-tokens with `api_key`, 64 at a time), starts the agents staggered,
    lets them run for `duration`, stops them all (each sends its final heartbeat) and
    returns the figures. `live` gets a summary line every `report_every`. */
inline fleet_report run_fleet(const fleet_options& o, std::ostream& live) {
    auto stats = std::make_shared<fleet_stats>();
    boost::asio::io_context ioc(static_cast<int>(std::max<std::size_t>(o.threads, 1)));
    auto ex = ioc.get_executor();
    fleet_report failed;
    failed.agents = o.agents;

    // -- install tokens ---------------------------------------------------------------
    std::vector<std::string> tokens = o.install_tokens;
    if (tokens.empty()) {
        sekuire::beast_transport admin(ex, o.url, o.transport);
        std::size_t next = 0, done = 0;
        std::string problem;
        std::function<void()> launch = [&] {
            if (next >= o.agents || !problem.empty()) return;
            ++next;
            sekuire::http_request req;
            req.method = sekuire::http_method::post;
            req.target = "/admin/v1/install-tokens";
            req.headers = {{"X-API-Key", o.api_key}, {"Content-Type", "application/json"}};
            req.body = "{}";
            req.timeout = 30s;
            admin.async_send(req, [&](sekuire::error_code ec, sekuire::http_response res) {
                ++done;
                boost::system::error_code jec;
                auto v = ec ? boost::json::value() : boost::json::parse(res.body, jec);
                if (ec) {
                    problem = "cannot create install tokens: " + ec.message();
                } else if (res.status != 201 || jec || !v.is_object() || !v.as_object().contains("install_token") ||
                           !v.as_object().at("install_token").is_string()) {
                    problem = "cannot create install tokens: the admin API answered " + std::to_string(res.status) +
                              " (give --install-token or --api-key)";
                } else {
                    tokens.emplace_back(v.as_object().at("install_token").as_string().c_str());
                }
                launch();
            });
        };
        for (int i = 0; i < 64; ++i) launch();
        ioc.run();
        ioc.restart();
        admin.close();
        ioc.run();
        ioc.restart();
        if (!problem.empty()) {
            failed.setup_error = problem;
            return failed;
        }
    }
    if (tokens.size() < o.agents) {
        failed.setup_error = "fewer install tokens (" + std::to_string(tokens.size()) + ") than agents (" +
                             std::to_string(o.agents) + ")";
        return failed;
    }

    // -- the agents -------------------------------------------------------------------
    sekuire::platform_info platform;
    platform.type = std::string(sekuire::protocol::platform::type_bare_metal);
    platform.attributes.emplace_back(std::string(sekuire::protocol::platform::key_hostname), "sekuire-fleet");
    platform.pid = static_cast<std::int64_t>(::getpid());

    struct agent {
        std::shared_ptr<agent_context> ctx;
        std::unique_ptr<agent_beacon> beacon;
        std::unique_ptr<agent_worker> worker; // the first `workers` agents only
        std::unique_ptr<boost::asio::steady_timer> start_timer;
    };
    std::vector<agent> agents(o.agents);
    for (std::size_t i = 0; i < o.agents; ++i) {
        agent& a = agents[i];
        a.ctx = std::make_shared<agent_context>();
        sekuire::beacon_options bo;
        bo.api_base_url = o.url;
        bo.transport = o.transport;
        bo.install_token = tokens[i];
        bo.agent_id = o.agent_prefix + std::to_string(i);
        bo.capabilities = {"fleet"};
        bo.heartbeat_interval = o.interval;
        bo.startup_jitter = 0ms; // the fleet staggers itself
        bo.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; };
        auto ctx = a.ctx;
        bo.on_status_change = [ctx, stats](const sekuire::beacon_status& s) {
            if (s.lease_expired && !ctx->lease_lost) ++stats->lease_losses;
            ctx->lease_lost = s.lease_expired;
            if (s.state == sekuire::beacon_state::connected && !ctx->connected_once) {
                ctx->connected_once = true;
                ++stats->agents_connected_once;
            }
        };
        bo.on_revoked = [stats](const sekuire::revocation_info&) { ++stats->revocations; };
        counting_transport t(sekuire::beast_transport(ex, o.url, o.transport), stats, a.ctx);
        t.set_late_after(o.late_after);
        sekuire::memory_store store; // the beacon's and its worker's: the installation it bootstraps
        a.beacon = std::make_unique<agent_beacon>(ex, std::move(bo), std::move(t), sekuire::system_clock(), store,
                                                  sekuire::testing::fixed_probe(platform), counting_timer(ex, a.ctx));
        if (i < o.workers) {
            sekuire::worker_options wo;
            wo.api_base_url = o.url;
            wo.transport = o.transport;
            wo.agent_id = o.agent_prefix + std::to_string(i);
            wo.capabilities = {"fleet"};
            wo.startup_jitter = 0ms;
            wo.heartbeat_interval = o.interval;
            wo.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; };
            a.worker = std::make_unique<agent_worker>(
                ex, std::move(wo), worker_transport(sekuire::beast_transport(ex, o.url, o.transport), stats),
                sekuire::system_clock(), store);
            // The output echoes the enqueue time: the latency is taken when the result is accepted.
            if (o.handler_sleep <= 0ms) {
                a.worker->on_task("fleet", [stats](const sekuire::task_context&, const boost::json::value& in) {
                    ++stats->tasks_handled;
                    return in;
                });
            } else {
                a.worker->on_task_async("fleet", [stats, ex, sleep = o.handler_sleep](const sekuire::task_context&,
                                                                                      const boost::json::value& in,
                                                                                      sekuire::async::task_done done) {
                    ++stats->tasks_handled;
                    auto t = std::make_shared<boost::asio::steady_timer>(ex, sleep);
                    t->async_wait([t, in, done](sekuire::error_code) { done(in); });
                });
            }
        }
        a.start_timer = std::make_unique<boost::asio::steady_timer>(ex);
    }

    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < o.agents; ++i) {
        const auto offset = std::chrono::duration_cast<std::chrono::steady_clock::duration>(o.stagger) *
                            static_cast<std::int64_t>(i) / static_cast<std::int64_t>(o.agents);
        agents[i].start_timer->expires_at(t0 + offset);
        agent_beacon* b = agents[i].beacon.get();
        agent_worker* w = agents[i].worker.get();
        agents[i].start_timer->async_wait([b, w, stats](sekuire::error_code ec) {
            if (ec) return;
            ++stats->agents_started;
            // The worker starts once the beacon has bootstrapped (its installation is in
            // the store they share).
            b->async_start([w, stats](sekuire::error_code e) {
                if (!w || e) return;
                ++stats->workers_started;
                w->async_start([](sekuire::error_code) {});
            });
        });
    }

    // -- live summary, end of the run -------------------------------------------------
    boost::asio::steady_timer reporter(ex), ender(ex);
    std::function<void()> report = [&] {
        if (o.report_every <= 0ms) return;
        reporter.expires_after(o.report_every);
        reporter.async_wait([&](sekuire::error_code ec) {
            if (ec) return;
            const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            const auto lat = stats->heartbeat_latency.snapshot();
            std::size_t connected = 0;
            for (auto& a : agents) connected += a.beacon->is_connected() ? 1 : 0;
            char line[320];
            std::snprintf(line, sizeof line,
                          "t=%.1fs started %llu/%zu connected %zu bootstraps %llu heartbeats %llu (on time %llu/%llu) "
                          "p99 %s errors %llu lease losses %llu tasks %llu/%llu",
                          t, static_cast<unsigned long long>(stats->agents_started.load()), o.agents, connected,
                          static_cast<unsigned long long>(stats->bootstraps_ok.load()),
                          static_cast<unsigned long long>(stats->heartbeats_sent.load()),
                          static_cast<unsigned long long>(stats->heartbeats_on_time.load()),
                          static_cast<unsigned long long>(stats->heartbeats_scheduled.load()),
                          ms(quantile_seconds(lat, 0.99)).c_str(),
                          static_cast<unsigned long long>([&] {
                              std::lock_guard<std::mutex> lock(stats->errors_mutex);
                              return error_total(stats->errors);
                          }()),
                          static_cast<unsigned long long>(stats->lease_losses.load()),
                          static_cast<unsigned long long>(stats->tasks_completed.load()),
                          static_cast<unsigned long long>(stats->tasks_enqueued.load()));
            live << line << std::endl;
            if (o.on_report) o.on_report(*stats);
            report();
        });
    };
    report();
    // -- tasks: enqueued at the rate through the admin API until `duration` ---------------
    const bool tasks = o.workers > 0 && o.task_rate > 0;
    std::optional<sekuire::beast_transport> admin;
    if (tasks) admin.emplace(ex, o.url, o.transport);
    boost::asio::steady_timer enqueuer(ex);
    std::uint64_t launched = 0;
    std::size_t outstanding = 0; // enqueue requests under way (on the run's threads: guarded below)
    std::mutex enqueue_mutex;
    bool enqueuing = tasks;
    std::function<void()> enqueue_tick = [&] {
        enqueuer.expires_after(10ms);
        enqueuer.async_wait([&](sekuire::error_code ec) {
            std::lock_guard<std::mutex> lock(enqueue_mutex);
            if (ec || !enqueuing) return;
            const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            const auto due = static_cast<std::uint64_t>(t * o.task_rate);
            // At most 256 requests under way: a backend slower than the rate is not flooded.
            while (launched < due && outstanding < 256) {
                ++launched;
                ++outstanding;
                sekuire::http_request req;
                req.method = sekuire::http_method::post;
                req.target = "/admin/v1/tasks";
                req.headers = {{"X-API-Key", o.api_key}, {"Content-Type", "application/json"}};
                boost::json::object body{{"capability", "fleet"}, {"input", boost::json::object{{"enqueued_ns", now_ns()}}}};
                req.body = boost::json::serialize(body);
                req.timeout = 30s;
                admin->async_send(req, [&, stats](sekuire::error_code e, sekuire::http_response res) {
                    {
                        std::lock_guard<std::mutex> l(enqueue_mutex);
                        --outstanding;
                    }
                    if (e) stats->task_error("enqueue: " + e.message());
                    else if (res.status != 201) stats->task_error("enqueue: http " + std::to_string(res.status));
                    else ++stats->tasks_enqueued;
                });
            }
            enqueue_tick();
        });
    };
    if (tasks) enqueue_tick();

    std::atomic<std::size_t> stopped{0};
    auto stop_all = [&] {
        reporter.cancel();
        for (auto& a : agents) {
            a.start_timer->cancel();
            agent_beacon* b = a.beacon.get();
            auto stop_beacon = [&, b] {
                b->async_stop([&](sekuire::error_code) {
                    // Once every agent has stopped, the kept-alive connections go too: then
                    // the io_context runs out of work and the run returns.
                    if (++stopped == agents.size()) {
                        for (auto& x : agents) {
                            x.beacon->transport().close();
                            if (x.worker) x.worker->transport().close();
                        }
                        if (admin) admin->close();
                    }
                });
            };
            // The worker drains first (its results reported), then the beacon's final heartbeat.
            if (a.worker)
                a.worker->async_stop([stop_beacon](sekuire::error_code) { stop_beacon(); });
            else
                stop_beacon();
        }
    };
    // After `duration`: no more tasks; the run waits (at most `task_drain`) until every task
    // enqueued was reported, then stops the agents.
    boost::asio::steady_timer drainer(ex);
    std::function<void()> drain = [&] {
        bool over = false;
        {
            std::lock_guard<std::mutex> lock(enqueue_mutex);
            over = outstanding == 0 &&
                   stats->tasks_completed + stats->tasks_not_completed >= stats->tasks_enqueued.load();
        }
        if (over || std::chrono::steady_clock::now() >= t0 + o.duration + o.task_drain) {
            stop_all();
            return;
        }
        drainer.expires_after(20ms);
        drainer.async_wait([&](sekuire::error_code ec) {
            if (!ec) drain();
        });
    };
    ender.expires_at(t0 + o.duration);
    ender.async_wait([&](sekuire::error_code) {
        {
            std::lock_guard<std::mutex> lock(enqueue_mutex);
            enqueuing = false;
        }
        enqueuer.cancel();
        if (tasks)
            drain();
        else
            stop_all();
    });

    std::vector<std::thread> extra;
    for (std::size_t i = 1; i < o.threads; ++i) extra.emplace_back([&] { ioc.run(); });
    ioc.run();
    for (auto& t : extra) t.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fleet_report r = report_of(*stats, o.agents, seconds);
    r.workers = std::min(o.workers, o.agents);
    agents.clear();
    ioc.restart();
    ioc.run(); // whatever the beacons' destruction left
    return r;
}

} // namespace fleet
} // namespace sekuire_tools

#endif
