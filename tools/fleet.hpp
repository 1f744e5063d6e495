// SPDX-License-Identifier: MIT
// sekuire-fleet's engine (not installed): N asynchronous beacons on an io_context run by a
// few threads, started in a staggered way against one backend, observed through a
// transport and a timer that count what passes through them. docs/fleet.md describes the
// program and its table.
#ifndef SEKUIRE_TOOLS_FLEET_HPP
#define SEKUIRE_TOOLS_FLEET_HPP

#include <sekuire/async/beacon.hpp>
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

    void error(const std::string& what) {
        std::lock_guard<std::mutex> lock(errors_mutex);
        ++errors[what];
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

/// One simulated agent's beacon.
using agent_beacon = sekuire::async::basic_beacon<counting_transport, sekuire::system_clock, sekuire::memory_store,
                                                  sekuire::testing::fixed_probe, counting_timer>;

/// The figures of a finished run.
struct fleet_report {
    std::size_t agents = 0;
    double seconds = 0;
    std::uint64_t agents_started = 0, agents_connected = 0;
    std::uint64_t bootstraps_sent = 0, bootstraps_ok = 0, recovers_sent = 0, refreshes_sent = 0;
    std::uint64_t heartbeats_sent = 0, heartbeats_answered = 0, heartbeats_ok = 0;
    std::uint64_t heartbeats_scheduled = 0, heartbeats_on_time = 0;
    std::uint64_t requests_canceled = 0, lease_losses = 0, revocations = 0;
    double latency_p50 = 0, latency_p95 = 0, latency_p99 = 0, latency_max = 0;
    double lateness_p99 = 0, lateness_max = 0;
    std::map<std::string, std::uint64_t> errors;
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
    const auto lat = s.heartbeat_latency.snapshot();
    r.latency_p50 = quantile_seconds(lat, 0.50);
    r.latency_p95 = quantile_seconds(lat, 0.95);
    r.latency_p99 = quantile_seconds(lat, 0.99);
    r.latency_max = static_cast<double>(s.max_latency_ns.load()) / 1e9;
    const auto late = s.heartbeat_lateness.snapshot();
    r.lateness_p99 = quantile_seconds(late, 0.99);
    r.lateness_max = static_cast<double>(s.max_lateness_ns.load()) / 1e9;
    std::lock_guard<std::mutex> lock(s.errors_mutex);
    r.errors = s.errors;
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
    row("heartbeat latency p50", ms(r.latency_p50));
    row("heartbeat latency p95", ms(r.latency_p95));
    row("heartbeat latency p99", ms(r.latency_p99));
    row("heartbeat latency max", ms(r.latency_max));
    row("heartbeat lateness p99", ms(r.lateness_p99));
    row("heartbeat lateness max", ms(r.lateness_max));
    row("requests canceled at stop", std::to_string(r.requests_canceled));
    row("lease losses", std::to_string(r.lease_losses));
    row("revocations", std::to_string(r.revocations));
    row("errors", std::to_string(error_total(r.errors)));
    for (const auto& kv : r.errors) row("  " + kv.first, std::to_string(kv.second));
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
    o["heartbeat_latency_p50"] = r.latency_p50;
    o["heartbeat_latency_p95"] = r.latency_p95;
    o["heartbeat_latency_p99"] = r.latency_p99;
    o["heartbeat_latency_max"] = r.latency_max;
    o["heartbeat_lateness_p99"] = r.lateness_p99;
    o["heartbeat_lateness_max"] = r.lateness_max;
    o["requests_canceled"] = r.requests_canceled;
    o["lease_losses"] = r.lease_losses;
    o["revocations"] = r.revocations;
    boost::json::object e;
    for (const auto& kv : r.errors) e[kv.first] = kv.second;
    o["errors"] = std::move(e);
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
        a.beacon = std::make_unique<agent_beacon>(ex, std::move(bo), std::move(t), sekuire::system_clock(),
                                                  sekuire::memory_store(), sekuire::testing::fixed_probe(platform),
                                                  counting_timer(ex, a.ctx));
        a.start_timer = std::make_unique<boost::asio::steady_timer>(ex);
    }

    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < o.agents; ++i) {
        const auto offset = std::chrono::duration_cast<std::chrono::steady_clock::duration>(o.stagger) *
                            static_cast<std::int64_t>(i) / static_cast<std::int64_t>(o.agents);
        agents[i].start_timer->expires_at(t0 + offset);
        agent_beacon* b = agents[i].beacon.get();
        agents[i].start_timer->async_wait([b, stats](sekuire::error_code ec) {
            if (ec) return;
            ++stats->agents_started;
            b->async_start([](sekuire::error_code) {});
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
            char line[256];
            std::snprintf(line, sizeof line,
                          "t=%.1fs started %llu/%zu connected %zu bootstraps %llu heartbeats %llu (on time %llu/%llu) "
                          "p99 %s errors %llu lease losses %llu",
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
                          static_cast<unsigned long long>(stats->lease_losses.load()));
            live << line << std::endl;
            if (o.on_report) o.on_report(*stats);
            report();
        });
    };
    report();
    std::atomic<std::size_t> stopped{0};
    ender.expires_at(t0 + o.duration);
    ender.async_wait([&](sekuire::error_code) {
        reporter.cancel();
        for (auto& a : agents) {
            a.start_timer->cancel();
            a.beacon->async_stop([&](sekuire::error_code) {
                // Once every agent has stopped, the kept-alive connections go too: then the
                // io_context runs out of work and the run returns.
                if (++stopped == agents.size())
                    for (auto& x : agents) x.beacon->transport().close();
            });
        }
    });

    std::vector<std::thread> extra;
    for (std::size_t i = 1; i < o.threads; ++i) extra.emplace_back([&] { ioc.run(); });
    ioc.run();
    for (auto& t : extra) t.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fleet_report r = report_of(*stats, o.agents, seconds);
    agents.clear();
    ioc.restart();
    ioc.run(); // whatever the beacons' destruction left
    return r;
}

} // namespace fleet
} // namespace sekuire_tools

#endif
