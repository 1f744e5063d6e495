// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_METRICS_HPP
#define SEKUIRE_METRICS_HPP

/// @file
/// Metrics in the Prometheus text exposition format (version 0.0.4): a builder for the
/// text, and the metrics of a beacon's and a worker's status (with a `latency_histogram`,
/// `<sekuire/histogram.hpp>`, for handler latencies). Nothing here opens a socket: serve the text with `<sekuire/health.hpp>`'s
/// `health_server`, or with your own HTTP server.
///
/// ```cpp
/// sekuire::prometheus_text text;
/// sekuire::add_beacon_metrics(text, sdk.get_beacon_status());
/// sekuire::add_worker_metrics(text, worker.get_status(), {{"worker", "summarizer"}});
/// serve(text.str(), sekuire::prometheus_content_type);
/// ```

#include <sekuire/basic_beacon.hpp>
#include <sekuire/basic_worker.hpp>
#include <sekuire/error.hpp>
#include <sekuire/histogram.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sekuire {

/// The `Content-Type` of the Prometheus text exposition format, version 0.0.4.
inline constexpr const char* prometheus_content_type = "text/plain; version=0.0.4; charset=utf-8";

/// A label of a sample: `name="value"`.
struct metric_label {
    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
    std::string name;
    /// Any text; escaped when written.
    std::string value;
};

/// The labels of a sample, in the order written.
using metric_labels = std::vector<metric_label>;

namespace detail {

inline bool is_metric_name(std::string_view n) noexcept {
    if (n.empty()) return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        const char c = n[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

inline bool is_label_name(std::string_view n) noexcept {
    if (n.empty() || n.substr(0, 2) == "__") return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        const char c = n[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

/// A sample value as Prometheus writes it: `NaN`, `+Inf`, `-Inf`, integers without an
/// exponent, others in the shortest form that reads back the same.
inline std::string format_metric_value(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    char buf[64];
    if (v == std::floor(v) && std::fabs(v) < 1e15) {
        std::snprintf(buf, sizeof buf, "%.0f", v);
        return buf;
    }
    for (int precision = 1; precision <= 17; ++precision) {
        std::snprintf(buf, sizeof buf, "%.*g", precision, v);
        if (std::strtod(buf, nullptr) == v) break;
    }
    return buf;
}

inline void append_label_value(std::string& out, std::string_view v) {
    for (const char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
}

inline void append_help(std::string& out, std::string_view v) {
    for (const char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
}

// Millisecond precision, so that the value prints as a short decimal.
inline double seconds_since_epoch(wall_time_point t) {
    return static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count()) / 1000.0;
}

} // namespace detail

/** Builds a text in the Prometheus exposition format (version 0.0.4). Samples of one
    metric family are written together under one `# HELP` and one `# TYPE` line, in the
    order the families were first added, whatever order the samples come in.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Unsafe (build one per scrape).
*/
class prometheus_text {
public:
    /** Adds a gauge sample.
        @throws sekuire::error with `errc::invalid_argument` for an invalid metric or label
        name, a family added before with another type, or a sample with the same labels
        added twice. */
    void gauge(std::string_view name, std::string_view help, double value, const metric_labels& labels = {}) {
        add_sample(family_for(name, help, "gauge"), name, labels, nullptr, value);
    }

    /** Adds a counter sample (by convention the name ends in `_total`).
        @throws sekuire::error as `gauge()`. */
    void counter(std::string_view name, std::string_view help, double value, const metric_labels& labels = {}) {
        add_sample(family_for(name, help, "counter"), name, labels, nullptr, value);
    }

    /** Adds a histogram: its `_bucket` samples (cumulative, `le` ascending, ending with
        `le="+Inf"`), `_sum` and `_count`.
        @throws sekuire::error as `gauge()`, and for a snapshot whose `counts` do not have
        one entry more than its `upper_bounds`. */
    void histogram(std::string_view name, std::string_view help, const histogram_snapshot& h,
                   const metric_labels& labels = {}) {
        if (h.counts.size() != h.upper_bounds.size() + 1)
            throw error(errc::invalid_argument, "prometheus_text: a histogram needs one count more than bounds");
        family& f = family_for(name, help, "histogram");
        const std::string base(name);
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i <= h.upper_bounds.size(); ++i) {
            cumulative += h.counts[i];
            const metric_label le{"le", i < h.upper_bounds.size() ? detail::format_metric_value(h.upper_bounds[i]) : "+Inf"};
            add_sample(f, base + "_bucket", labels, &le, static_cast<double>(cumulative));
        }
        add_sample(f, base + "_sum", labels, nullptr, h.sum);
        add_sample(f, base + "_count", labels, nullptr, static_cast<double>(cumulative));
    }

    /// The text: every family, each ending with a line break.
    std::string str() const {
        std::string out;
        for (const auto& f : families_) {
            out += "# HELP ";
            out += f.name;
            out += ' ';
            detail::append_help(out, f.help);
            out += "\n# TYPE ";
            out += f.name;
            out += ' ';
            out += f.type;
            out += '\n';
            for (const auto& line : f.samples) out += line;
        }
        return out;
    }

private:
    struct family {
        std::string name;
        std::string help;
        const char* type;
        std::vector<std::string> samples;
        std::vector<std::string> series; // name + labels of each sample, to refuse duplicates
    };

    family& family_for(std::string_view name, std::string_view help, const char* type) {
        if (!detail::is_metric_name(name))
            throw error(errc::invalid_argument, "prometheus_text: invalid metric name '" + std::string(name) + "'");
        for (auto& f : families_) {
            if (f.name != name) continue;
            if (std::string_view(f.type) != type)
                throw error(errc::invalid_argument, "prometheus_text: metric '" + std::string(name) + "' added with two types");
            return f;
        }
        families_.push_back(family{std::string(name), std::string(help), type, {}, {}});
        return families_.back();
    }

    static void add_sample(family& f, std::string_view sample_name, const metric_labels& labels, const metric_label* extra,
                           double value) {
        std::vector<const metric_label*> all;
        for (const auto& l : labels) all.push_back(&l);
        if (extra) all.push_back(extra);
        std::string series(sample_name);
        for (std::size_t i = 0; i < all.size(); ++i) {
            const metric_label& l = *all[i];
            if (!detail::is_label_name(l.name))
                throw error(errc::invalid_argument, "prometheus_text: invalid label name '" + l.name + "'");
            for (std::size_t k = 0; k < i; ++k)
                if (all[k]->name == l.name)
                    throw error(errc::invalid_argument, "prometheus_text: label '" + l.name + "' given twice");
            series += i == 0 ? '{' : ',';
            series += l.name;
            series += "=\"";
            detail::append_label_value(series, l.value);
            series += '"';
        }
        if (!all.empty()) series += '}';
        if (std::find(f.series.begin(), f.series.end(), series) != f.series.end())
            throw error(errc::invalid_argument, "prometheus_text: sample '" + series + "' added twice");
        f.series.push_back(series);
        f.samples.push_back(series + ' ' + detail::format_metric_value(value) + '\n');
    }

    std::vector<family> families_;
};

/** Adds the metrics of a beacon's status (names start with `sekuire_beacon_`): its state
    (`sekuire_beacon_state{state="connected"} 1`, one sample per state), whether it is
    connected and holds its lease, heartbeats sent, consecutive failures, the lease and
    token expiry, the last heartbeat, degraded mode, pause, revocation, the heartbeat
    interval, the clock offset, and `sekuire_beacon_info{installation_id="..."}`. `labels`
    are added to every sample (to tell several beacons apart). Never shows a token.

    @throws sekuire::error with `errc::invalid_argument` for invalid label names, or when
    the same beacon metrics with the same labels were added before.
*/
inline void add_beacon_metrics(prometheus_text& out, const beacon_status& s, const metric_labels& labels = {}) {
    auto with = [&](metric_label extra) {
        metric_labels l = labels;
        l.push_back(std::move(extra));
        return l;
    };
    for (const beacon_state st : {beacon_state::idle, beacon_state::authenticating, beacon_state::connected,
                                  beacon_state::degraded, beacon_state::lease_expired, beacon_state::revoked,
                                  beacon_state::stopped})
        out.gauge("sekuire_beacon_state", "The beacon's state: 1 for the present one", s.state == st ? 1 : 0,
                  with({"state", to_string(st)}));
    const bool connected = s.state == beacon_state::connected;
    out.gauge("sekuire_beacon_connected", "Whether the beacon is authenticated and holds its lease", connected ? 1 : 0,
              labels);
    out.gauge("sekuire_beacon_lease_held", "Whether the lease is held (connected and not expired)",
              connected && !s.lease_expired ? 1 : 0, labels);
    if (s.lease_expires_at)
        out.gauge("sekuire_beacon_lease_expiry_timestamp_seconds", "When the lease the backend gave last expires",
                  detail::seconds_since_epoch(*s.lease_expires_at), labels);
    out.counter("sekuire_beacon_heartbeats_total", "Successful heartbeats since start",
                static_cast<double>(s.heartbeats_sent), labels);
    out.gauge("sekuire_beacon_consecutive_heartbeat_failures", "Failed heartbeats since the last success",
              static_cast<double>(s.failed_heartbeats), labels);
    if (s.last_heartbeat)
        out.gauge("sekuire_beacon_last_heartbeat_timestamp_seconds", "When the last successful heartbeat was sent",
                  detail::seconds_since_epoch(*s.last_heartbeat), labels);
    if (s.runtime_token_expires_at)
        out.gauge("sekuire_beacon_runtime_token_expiry_timestamp_seconds", "When the runtime token expires",
                  detail::seconds_since_epoch(*s.runtime_token_expires_at), labels);
    out.gauge("sekuire_beacon_degraded", "Whether the beacon runs in degraded mode (not authenticated)",
              s.degraded_mode ? 1 : 0, labels);
    out.gauge("sekuire_beacon_paused", "Whether a pause command is in force", s.paused ? 1 : 0, labels);
    out.gauge("sekuire_beacon_revoked", "Whether the installation was revoked", s.revoked ? 1 : 0, labels);
    out.gauge("sekuire_beacon_heartbeat_interval_seconds", "The interval between heartbeats",
              static_cast<double>(s.heartbeat_interval.count()), labels);
    out.gauge("sekuire_beacon_clock_offset_seconds", "The backend's clock minus the local one",
              static_cast<double>(s.clock_offset.count()) / 1000.0, labels);
    if (!s.installation_id.empty())
        out.gauge("sekuire_beacon_info", "The beacon's installation", 1, with({"installation_id", s.installation_id}));
}

/** Adds the metrics of a worker's status (names start with `sekuire_worker_`): tasks by
    outcome (`sekuire_worker_tasks_total{outcome="completed"|"failed"|"rejected"}`), tasks
    received, duplicates, results dropped, in flight, queued, results pending, the task
    stream, pause and revocation; and, when `handler_latency` is given, the histogram
    `sekuire_worker_handler_duration_seconds`. `labels` are added to every sample (a
    `worker` label tells several workers apart).

    @throws sekuire::error with `errc::invalid_argument` for invalid label names, or when
    the same worker metrics with the same labels were added before.
*/
inline void add_worker_metrics(prometheus_text& out, const worker_status& s, const metric_labels& labels = {},
                               const histogram_snapshot* handler_latency = nullptr) {
    auto with = [&](metric_label extra) {
        metric_labels l = labels;
        l.push_back(std::move(extra));
        return l;
    };
    const char* tasks_help = "Tasks that ended, by outcome: completed, failed (the handler failed), rejected (never ran)";
    out.counter("sekuire_worker_tasks_total", tasks_help, static_cast<double>(s.completed), with({"outcome", "completed"}));
    out.counter("sekuire_worker_tasks_total", tasks_help, static_cast<double>(s.failed), with({"outcome", "failed"}));
    out.counter("sekuire_worker_tasks_total", tasks_help, static_cast<double>(s.rejected), with({"outcome", "rejected"}));
    out.counter("sekuire_worker_tasks_received_total", "Tasks received from the task stream",
                static_cast<double>(s.received), labels);
    out.counter("sekuire_worker_duplicate_tasks_total", "Task deliveries of a task id seen before (not run again)",
                static_cast<double>(s.duplicates), labels);
    out.counter("sekuire_worker_results_dropped_total", "Results given up (each one is logged with its task id)",
                static_cast<double>(s.results_dropped), labels);
    out.gauge("sekuire_worker_tasks_in_flight", "Handlers running now", static_cast<double>(s.in_flight), labels);
    out.gauge("sekuire_worker_tasks_queued", "Tasks waiting for a handler thread", static_cast<double>(s.queued), labels);
    out.gauge("sekuire_worker_pending_results", "Results waiting to be (re)sent", static_cast<double>(s.pending_results),
              labels);
    out.gauge("sekuire_worker_stream_connected", "Whether the task stream is open", s.stream_connected ? 1 : 0, labels);
    out.counter("sekuire_worker_stream_connects_total", "Connections of the task stream",
                static_cast<double>(s.stream_connects), labels);
    out.gauge("sekuire_worker_paused", "Whether the worker is paused", s.paused ? 1 : 0, labels);
    out.gauge("sekuire_worker_revoked", "Whether the installation was revoked", s.revoked ? 1 : 0, labels);
    if (handler_latency)
        out.histogram("sekuire_worker_handler_duration_seconds", "How long task handlers ran", *handler_latency, labels);
}

} // namespace sekuire

#endif
