// SPDX-License-Identifier: MIT
// The fault sweep's parts (tests/unit/fault_sweep.cpp): the faults, a scripted backend that
// keeps the state a real one keeps (installations, tokens, commands, tasks and their
// results) behind a testing::fake_transport, and a driver that runs step functions from
// deadline to deadline in fake time, noting when and by whom each request was made.
//
// Every fault stands in front of the backend: the request it hits never reaches the
// backend's rules (like a proxy or the network failing it), so the backend's state says
// what the client really got through.
#ifndef SEKUIRE_TESTS_FAULT_SWEEP_HPP
#define SEKUIRE_TESTS_FAULT_SWEEP_HPP

#include <sekuire/credential_store.hpp>
#include <sekuire/error.hpp>
#include <sekuire/mask.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fake_transport.hpp>
#include <sekuire/time.hpp>
#include <sekuire/transport.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fault_sweep {

namespace st = sekuire::testing;
namespace proto = sekuire::protocol;
using namespace std::chrono_literals;
using fake = st::fake_transport;
using sekuire::http_method;
using sekuire::installation_credentials;
using sekuire::steady_time_point;
using sekuire::wall_time_point;
using seconds = std::chrono::seconds;

// ---- faults -------------------------------------------------------------------------

/// How the failing request fails.
enum class fault_kind {
    none,
    connection_failed, ///< transport error: the connection could not be made
    timeout,           ///< transport error: no answer in time
    unavailable,       ///< 503 with an error body
    rate_limited,      ///< 429 with `Retry-After: 30`
    malformed,         ///< the endpoint's success status with a body that is not what it promises
    unauthorized,      ///< 401 (with the code the endpoint uses for it)
    not_found,         ///< 404 `not_found` (applied to installation paths only)
    lost_answer,       ///< the backend handled the request, the answer never came back (a timeout)
};

inline const char* to_string(fault_kind k) {
    switch (k) {
    case fault_kind::none: return "none";
    case fault_kind::connection_failed: return "connection_failed";
    case fault_kind::timeout: return "timeout";
    case fault_kind::unavailable: return "503";
    case fault_kind::rate_limited: return "429+Retry-After";
    case fault_kind::malformed: return "malformed-2xx";
    case fault_kind::unauthorized: return "401";
    case fault_kind::not_found: return "404";
    case fault_kind::lost_answer: return "answer-lost";
    }
    return "?";
}

inline constexpr fault_kind all_faults[] = {fault_kind::connection_failed, fault_kind::timeout,      fault_kind::unavailable,
                                            fault_kind::rate_limited,      fault_kind::malformed,    fault_kind::unauthorized,
                                            fault_kind::not_found,         fault_kind::lost_answer};

/// The Retry-After the 429 fault asks for.
inline constexpr seconds fault_retry_after{30};

/// The n-th call of a run (1-based, sends and streams alike) meets `kind`.
struct fault {
    fault_kind kind = fault_kind::none;
    std::size_t n = 0;
    /// When that call opens the task stream: which connection it is (1-based), else 0.
    std::size_t stream_ordinal = 0;
    /// Instead of the n-th call: the last call of the run, the one stop() or shutdown()
    /// makes (its index varies with what the faults before it did). `n` is set when armed.
    bool final = false;

    /// Whether the fake transport injects it (`fail_call`, instantly): a failed connection,
    /// and a timeout of the task stream. A send that times out is answered by the backend
    /// instead, after the request's whole time limit of fake time.
    bool by_fail_call() const {
        return kind == fault_kind::connection_failed || (kind == fault_kind::timeout && stream_ordinal > 0);
    }
    sekuire::error_code error() const {
        return kind == fault_kind::connection_failed ? sekuire::error_code(sekuire::errc::connection_failed)
                                                     : sekuire::error_code(sekuire::errc::timeout);
    }
};

// ---- requests -----------------------------------------------------------------------

/// What a request was for.
enum class endpoint { bootstrap, recover, refresh, heartbeat, final_heartbeat, worker_heartbeat, stream, complete, policy, other };

inline const char* to_string(endpoint e) {
    switch (e) {
    case endpoint::bootstrap: return "bootstrap";
    case endpoint::recover: return "recover";
    case endpoint::refresh: return "refresh";
    case endpoint::heartbeat: return "heartbeat";
    case endpoint::final_heartbeat: return "final-heartbeat";
    case endpoint::worker_heartbeat: return "worker-heartbeat";
    case endpoint::stream: return "task-stream";
    case endpoint::complete: return "complete";
    case endpoint::policy: return "policy";
    case endpoint::other: return "other";
    }
    return "?";
}

inline bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

/// What a request was for, from its method and path alone (a final heartbeat counts as a
/// heartbeat here).
inline endpoint classify_path(const fake::recorded& r) {
    const std::string p = r.path();
    if (r.streamed) return endpoint::stream;
    if (p == proto::path::bootstrap) return endpoint::bootstrap;
    if (p == proto::path::recover) return endpoint::recover;
    if (p.rfind(std::string(proto::path::tasks_prefix), 0) == 0) return endpoint::complete;
    if (p.rfind("/api/v1/workspaces/", 0) == 0) return endpoint::policy;
    if (ends_with(p, "/worker/heartbeat")) return endpoint::worker_heartbeat;
    if (ends_with(p, "/refresh")) return endpoint::refresh;
    if (ends_with(p, "/heartbeat")) return endpoint::heartbeat;
    return endpoint::other;
}

/// What a request was for.
inline endpoint classify(const fake::recorded& r) {
    const endpoint e = classify_path(r);
    if (e != endpoint::heartbeat) return e;
    proto::heartbeat_request body;
    proto::decode_error err;
    if (proto::decode(r.request.body, body, err) && body.status == proto::heartbeat_status::stopped)
        return endpoint::final_heartbeat;
    return e;
}

/// Paths under /installations/{id}/: where a 404 means "installation gone".
inline bool installation_path(endpoint e) {
    return e == endpoint::refresh || e == endpoint::heartbeat || e == endpoint::final_heartbeat ||
           e == endpoint::worker_heartbeat || e == endpoint::stream;
}

/// Whether the sweep applies `k` to a request for `e`: the 404 is the one on an installation
/// path; a lost answer is tried on the requests a client may repeat (heartbeats,
/// completions, the policy), not on those whose answer is the only copy of new credentials
/// (a bootstrap, a refresh: the protocol has no way back from losing those) nor on the
/// task stream (which has no single answer to lose).
inline bool applies(fault_kind k, endpoint e) {
    if (k == fault_kind::not_found) return installation_path(e);
    // A timed-out stream connection is failed by the fake transport at once, as a failed
    // connection is: the same case twice.
    if (k == fault_kind::timeout) return e != endpoint::stream;
    if (k == fault_kind::lost_answer)
        return e == endpoint::heartbeat || e == endpoint::final_heartbeat || e == endpoint::worker_heartbeat ||
               e == endpoint::complete || e == endpoint::policy;
    return true;
}

inline std::string bearer_of(const sekuire::http_request& r) {
    const std::string* v = sekuire::find_header(r.headers, "Authorization");
    if (!v || v->rfind("Bearer ", 0) != 0) return {};
    return v->substr(7);
}

// ---- secrets ------------------------------------------------------------------------

/// A token that cannot be mistaken for anything else: `prefix`, a readable tag, then 24
/// pseudo-random letters and digits (so that a leak of any 8 of its characters is seen).
inline std::string make_secret(std::string_view prefix, std::string_view tag, unsigned n) {
    static constexpr char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    std::uint64_t x = 0x51ed2701f3a5c9b1ULL + n * 0x9e3779b97f4a7c15ULL;
    for (char c : tag) x = (x ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    std::string out(prefix);
    out += tag;
    out += std::to_string(n);
    out += '_';
    for (int i = 0; i < 24; ++i) {
        x += 0x9e3779b97f4a7c15ULL;
        std::uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        out += alphabet[z % (sizeof(alphabet) - 1)];
    }
    return out;
}

/// Parts of `secret` that must never appear in a log line or a status, 8 characters each:
/// its start, its middle and the 8 characters before its last 4 (which `mask_token` may
/// show). The secrets of make_secret() are random enough that any of them is a leak.
inline std::vector<std::string> secret_windows(const std::string& secret) {
    if (secret.size() < 20) return {secret};
    const std::size_t end = secret.size() - 4;
    return {secret.substr(0, 8), secret.substr(end / 2 - 4, 8), secret.substr(end - 8, 8)};
}

// ---- the backend --------------------------------------------------------------------

/** A scripted Sekuire backend with the state a real one keeps, answering through a
    fake_transport (sends through one handler; each task stream connection from a script
    computed just before the worker connects).

    Its rules: an install token works once (409 after); only the current runtime token of
    an installation is accepted; a refresh issues a new runtime token (and rotates the
    refresh token when configured) and the old one stops working, as does the one a
    heartbeat's refreshed_token replaces; commands are repeated in each heartbeat until the
    client's reported state shows it obeyed (the client drops repeated ids); a task is
    delivered on the next connection once released, and again `redelivery_after` later
    while it has no result; a rejection for a passing reason (paused, shutting down, rate
    limited) puts the task back.
*/
class backend {
public:
    struct options {
        std::string agent_id = "agent-sweep";
        std::string install_token = make_secret("skt_", "install", 1);
        /// Every bootstrap is refused with 401 invalid_install_token (the recovery variant).
        bool refuse_install_token = false;
        std::string api_key = make_secret("sk_live_", "apikey", 1);
        std::string workspace_id = "ws_sweep";
        seconds token_lifetime{1800};
        seconds heartbeat_interval{120};
        seconds lease{360};
        bool rotate_refresh_tokens = true;
        std::int64_t revocation_timeout_ms = 5000;
        /// A task delivered and without a result is delivered again after this long.
        seconds redelivery_after{60};
        /// The `retry:` field of the task stream.
        std::chrono::milliseconds stream_retry{15000};
        std::string revocation_reason = "fault sweep: kill switch";
        // The schedule, in time since the start (nullopt: never).
        std::optional<seconds> pause_at, resume_at;     ///< pause / resume in beacon heartbeats
        std::optional<seconds> push_token_at;           ///< a refreshed_token in a heartbeat
        std::optional<seconds> revoke_at;               ///< the kill switch
        std::optional<seconds> terminate_at;            ///< terminate in beacon heartbeats
        std::optional<seconds> worker_terminate_at;     ///< terminate in worker heartbeats
        std::optional<seconds> invalidate_token_at;     ///< the current runtime tokens stop working
        std::optional<seconds> policy_change_at;        ///< a new active policy hash
        /// Tasks (id, release time).
        std::vector<std::pair<std::string, seconds>> tasks;
    };

    struct installation {
        std::string id;
        std::string runtime_token;
        std::string refresh_token;
        std::int64_t version = 1;
        wall_time_point expires_at{};
        bool revoked = false;
        bool token_invalidated = false;
        bool token_pushed = false;
        std::optional<proto::heartbeat_status> last_status;
    };

    struct task_record {
        std::string id;
        seconds release{};
        std::optional<proto::task_status> final_status; ///< the result the backend keeps
        boost::json::value output;
        std::optional<steady_time_point> delivered_at;  ///< last written to a stream
    };

    /// One heartbeat the backend processed.
    struct heartbeat_seen {
        steady_time_point at;
        std::string installation_id;
        proto::heartbeat_status status;
        bool revoked_answer = false; ///< answered with the revoked shape
        bool answer_lost = false;    ///< the client never got the answer
    };

    backend(options o, st::fake_clock clock, fake& transport, fault f)
        : options_(std::move(o)), clock_(std::move(clock)), transport_(&transport), fault_(f) {
        secrets_.push_back(options_.install_token);
        secrets_.push_back(options_.api_key);
        for (const auto& t : options_.tasks) {
            task_record r;
            r.id = t.first;
            r.release = t.second;
            tasks_.push_back(std::move(r));
        }
        install_routes();
        if (fault_.by_fail_call() && fault_.n > 0) transport_->fail_call(fault_.n, fault_.error());
    }

    /// For a `final` fault: the next call is the one that fails.
    void arm_final() {
        if (!fault_.final || fault_.kind == fault_kind::none) return;
        fault_.n = transport_->total() + 1;
        if (fault_.by_fail_call()) transport_->fail_call(1, fault_.error());
    }

    backend(const backend&) = delete;
    backend& operator=(const backend&) = delete;

    /// Creates an installation as an earlier bootstrap would have (the worker scenario);
    /// returns its credentials as a client would hold them (expiry unknown).
    installation_credentials seed_installation() {
        installation& i = create_installation();
        installation_credentials c;
        c.installation_id = i.id;
        c.runtime_token = i.runtime_token;
        c.refresh_token = i.refresh_token;
        c.token_version = i.version;
        return c;
    }

    // ---- the task stream ----

    /** Called just before the worker's stream step when a connection is due: queues the
        script of the next connection, for the credentials the worker will use (`as`; none:
        it cannot connect). A script queued earlier and not used (the worker could not
        authenticate then) is replaced. */
    void prepare_stream(const std::optional<installation_credentials>& as) {
        if (!as || as->installation_id.empty()) return;
        const std::string path = proto::path::task_stream(as->installation_id, {});
        const std::size_t used = scripts_used_;
        if (pushed_streams_ > used) {
            // The queued script is stale: forget every script, then put back the routes
            // and the injected failure (if still ahead).
            transport_->clear_scripts();
            install_routes();
            const std::size_t total = transport_->total();
            if (fault_.by_fail_call() && fault_.n > total) transport_->fail_call(fault_.n - total, fault_.error());
            pushed_streams_ = used;
            predictions_.resize(used);
            for (const auto& d : queued_deliveries_) tasks_[d.first].delivered_at = d.second;
        }
        queued_deliveries_.clear();
        ++pushed_streams_;
        if (fault_.stream_ordinal == pushed_streams_ && !fault_.by_fail_call() && fault_.kind != fault_kind::none) {
            fault_hit_ = true;
            transport_->on_stream(path, fault_stream());
        } else {
            transport_->on_stream(path, stream_for(*as));
        }
        predictions_.push_back(as->runtime_token);
    }

    /** Called after each stream step with the call count and `answered()` from before it:
        counts the task stream connections it opened (every call of a stream step is a
        connection or a send, and every send but one failed by `fail_call` reaches the
        backend) and those of them that used a script (the one failed by `fail_call` did
        not: up to the failure a run is the baseline's, so that call is a connection exactly
        when `stream_ordinal` says so). Returns the connections opened. */
    std::size_t note_stream_step(std::size_t calls_before, std::size_t answered_before) {
        const std::size_t calls = transport_->total();
        const bool failed_here = fault_.by_fail_call() && fault_.n > calls_before && fault_.n <= calls;
        const std::size_t sends = answered_ - answered_before + (failed_here && fault_.stream_ordinal == 0 ? 1 : 0);
        const std::size_t streams = calls - calls_before - sends;
        scripts_used_ += streams - (failed_here && fault_.stream_ordinal > 0 ? 1 : 0);
        return streams;
    }

    /// Sends the backend (or a failure standing in for it) answered.
    std::size_t answered() const { return answered_; }

    /// The runtime token the worker was expected to connect with, per connection.
    const std::vector<std::string>& stream_predictions() const { return predictions_; }

    // ---- what the backend knows ----

    const options& opts() const { return options_; }
    const std::vector<installation>& installations() const { return installations_; }
    /// The installation created last (nullptr before any).
    const installation* latest() const { return installations_.empty() ? nullptr : &installations_.back(); }
    const std::vector<task_record>& tasks() const { return tasks_; }
    const std::vector<heartbeat_seen>& heartbeats() const { return heartbeats_; }
    /// Every secret the backend knows or issued.
    const std::vector<std::string>& secrets() const { return secrets_; }
    /// Whether `masked` is the masked form of a runtime token the backend issued.
    bool issued_masked(const std::string& masked) const {
        for (const auto& t : secrets_)
            if (t.rfind("srt_", 0) == 0 && sekuire::mask_token(t) == masked) return true;
        return false;
    }
    /// Bootstraps received after the install token was spent.
    std::size_t bootstraps_after_spent() const { return bootstraps_after_spent_; }
    /// The call index (1-based) of the first revoked answer, 0 when none.
    std::size_t first_revoked_answer() const { return first_revoked_answer_; }
    /// Whether the fault met a request.
    bool fault_hit() const {
        return fault_hit_ || (fault_.by_fail_call() && fault_.n > 0 && transport_->total() >= fault_.n);
    }
    /// The failure (with its call index once a `final` one is armed).
    const fault& failure() const { return fault_; }
    /// Whether the first revoked answer had the revoked shape (else it was a 403).
    bool first_revocation_had_shape() const { return first_revoked_shape_; }
    /// Requests the client sent that the protocol does not allow (bad bodies): the client's fault.
    const std::vector<std::string>& protocol_errors() const { return protocol_errors_; }
    /// The hash of the active policy now.
    const std::string& policy_hash() const { return policy_hash_; }

    /// Steady time since the start.
    seconds elapsed() const {
        return std::chrono::duration_cast<seconds>(clock_.steady_now().time_since_epoch());
    }

private:
    bool due(const std::optional<seconds>& at) const { return at && elapsed() >= *at; }

    void install_routes() {
        backend* self = this;
        transport_->on_prefix(http_method::post, "/api/v1/").handle([self](const sekuire::http_request& r) {
            return self->answer(r);
        });
        transport_->on_prefix(http_method::get, "/api/v1/").handle([self](const sekuire::http_request& r) {
            return self->answer(r);
        });
    }

    sekuire::header_list date() const { return {{"Date", sekuire::format_http_date(clock_.wall_now())}}; }

    fake::reply reply(int status, std::string body) const { return fake::reply{status, std::move(body), date(), {}}; }

    fake::reply error(int status, std::string_view code) const {
        return reply(status, proto::encode(proto::error_body{std::string(code), "scripted " + std::string(code)}));
    }

    installation& create_installation() {
        installation i;
        const unsigned n = static_cast<unsigned>(installations_.size() + 1);
        i.id = "inst_sweep_" + std::to_string(n);
        i.runtime_token = make_secret("srt_", "i" + std::to_string(n) + "v", 1);
        i.refresh_token = make_secret("rt_", "i" + std::to_string(n) + "r", 1);
        i.expires_at = clock_.wall_now() + options_.token_lifetime;
        secrets_.push_back(i.runtime_token);
        secrets_.push_back(i.refresh_token);
        installations_.push_back(i);
        return installations_.back();
    }

    installation* find_mutable(const std::string& id) {
        for (auto& i : installations_)
            if (i.id == id) return &i;
        return nullptr;
    }

    // Scheduled events that change the backend's state, applied before each answer.
    void apply_schedule() {
        if (due(options_.invalidate_token_at) && !invalidated_) {
            invalidated_ = true;
            for (auto& i : installations_) i.token_invalidated = true;
        }
        if (due(options_.revoke_at) && !revoked_) {
            revoked_ = true;
            for (auto& i : installations_) i.revoked = true;
        }
        if (due(options_.policy_change_at)) policy_hash_ = "policy_hash_2";
    }

    void new_runtime_token(installation& i) {
        ++i.version;
        i.runtime_token = make_secret("srt_", "i" + i.id.substr(i.id.rfind('_') + 1) + "v", static_cast<unsigned>(i.version));
        i.expires_at = clock_.wall_now() + options_.token_lifetime;
        i.token_invalidated = false;
        secrets_.push_back(i.runtime_token);
    }

    bool token_ok(const installation& i, const std::string& token) const {
        return !token.empty() && token == i.runtime_token && !i.token_invalidated && clock_.wall_now() < i.expires_at;
    }

    // The installation whose current runtime token this is.
    installation* by_token(const std::string& token) {
        for (auto& i : installations_)
            if (token_ok(i, token)) return &i;
        return nullptr;
    }

    std::string installation_id_of(const std::string& path) const {
        const std::string prefix(proto::path::installations_prefix);
        if (path.rfind(prefix, 0) != 0) return {};
        const auto end = path.find('/', prefix.size());
        return path.substr(prefix.size(), end == std::string::npos ? std::string::npos : end - prefix.size());
    }

    void record_revoked_answer(std::size_t index, bool shape) {
        if (first_revoked_answer_) return;
        first_revoked_answer_ = index;
        first_revoked_shape_ = shape;
    }

    fake::reply fault_reply(endpoint e) {
        const int ok = (e == endpoint::bootstrap || e == endpoint::recover) ? 201 : 200;
        switch (fault_.kind) {
        case fault_kind::unavailable: return error(503, proto::error_code_name::unavailable);
        case fault_kind::rate_limited: {
            fake::reply r = error(429, proto::error_code_name::rate_limited);
            r.headers.push_back({"Retry-After", std::to_string(fault_retry_after.count())});
            return r;
        }
        case fault_kind::malformed: return reply(ok, R"({"installation_id": "inst_trunc)");
        case fault_kind::unauthorized:
            switch (e) {
            case endpoint::bootstrap: return error(401, proto::error_code_name::invalid_install_token);
            case endpoint::recover: return error(401, proto::error_code_name::invalid_api_key);
            case endpoint::refresh: return error(401, proto::error_code_name::invalid_refresh_token);
            default: return error(401, proto::error_code_name::unauthorized);
            }
        case fault_kind::not_found: return error(404, proto::error_code_name::not_found);
        default: return error(500, "unexpected");
        }
    }

    fake::stream_script fault_stream() const {
        fake::stream_script s;
        s.headers = date();
        auto with_error = [&](int status, std::string_view code) {
            s.status = status;
            s.chunks.push_back(proto::encode(proto::error_body{std::string(code), "scripted " + std::string(code)}));
        };
        switch (fault_.kind) {
        case fault_kind::unavailable: with_error(503, proto::error_code_name::unavailable); break;
        case fault_kind::rate_limited:
            with_error(429, proto::error_code_name::rate_limited);
            s.headers.push_back({"Retry-After", std::to_string(fault_retry_after.count())});
            break;
        case fault_kind::malformed:
            s.status = 200;
            s.chunks.push_back("<html><body>502 Bad Gateway</body></html>\n");
            break;
        case fault_kind::unauthorized: with_error(401, proto::error_code_name::unauthorized); break;
        case fault_kind::not_found: with_error(404, proto::error_code_name::not_found); break;
        default: with_error(500, "unexpected"); break;
        }
        return s;
    }

    fake::stream_script stream_for(const installation_credentials& as) {
        apply_schedule();
        fake::stream_script s;
        s.headers = date();
        auto refuse = [&](int status, std::string_view code) {
            s.status = status;
            s.chunks.push_back(proto::encode(proto::error_body{std::string(code), "scripted " + std::string(code)}));
            return s;
        };
        installation* i = find_mutable(as.installation_id);
        if (!i) return refuse(404, proto::error_code_name::not_found);
        if (i->revoked) return refuse(403, proto::error_code_name::installation_revoked);
        if (!token_ok(*i, as.runtime_token)) return refuse(401, proto::error_code_name::unauthorized);
        s.status = 200;
        // A retry: field, as servers send: it sets the base of the reconnect backoff.
        s.chunks.push_back(": connected\nretry: " + std::to_string(options_.stream_retry.count()) + "\n\n");
        for (std::size_t k = 0; k < tasks_.size(); ++k) {
            task_record& t = tasks_[k];
            if (t.final_status || elapsed() < t.release) continue;
            if (t.delivered_at && clock_.steady_now() - *t.delivered_at < options_.redelivery_after) continue;
            queued_deliveries_.emplace_back(k, t.delivered_at);
            t.delivered_at = clock_.steady_now();
            proto::task task;
            task.task_id = t.id;
            task.capability = "summarize";
            task.input = boost::json::object{{"text", "input of " + t.id}};
            task.workspace_id = options_.workspace_id;
            task.trace_id = "trace-" + t.id;
            s.chunks.push_back("id: ev" + std::to_string(++event_id_) + "\nevent: task\ndata: " + proto::encode(task) + "\n\n");
        }
        return s;
    }

    fake::reply answer(const sekuire::http_request& req) {
        const std::size_t index = transport_->total(); // this request is recorded already
        ++answered_;
        fake::recorded rec{req, false};
        const endpoint e = classify_path(rec);
        if (!fault_.by_fail_call() && fault_.kind != fault_kind::none && fault_.n > 0 && index == fault_.n) {
            fault_hit_ = true;
            if (fault_.kind == fault_kind::timeout) {
                clock_.advance(req.timeout); // the attempt takes its whole time limit
                return fake::reply{0, {}, {}, fault_.error()};
            }
            if (fault_.kind != fault_kind::lost_answer) return fault_reply(e);
        }
        const bool lose = fault_.kind == fault_kind::lost_answer && fault_.n > 0 && index == fault_.n;
        const std::size_t heartbeats_before = heartbeats_.size();
        fake::reply r = handle(req, rec, e, index);
        if (lose) {
            // Handled, but the answer never arrives: the client waits its whole time limit.
            if (first_revoked_answer_ == index) first_revoked_answer_ = 0;
            if (heartbeats_.size() > heartbeats_before) heartbeats_.back().answer_lost = true;
            clock_.advance(req.timeout);
            return fake::reply{0, {}, {}, fault_.error()};
        }
        return r;
    }

    fake::reply handle(const sekuire::http_request& req, const fake::recorded& rec, endpoint e, std::size_t index) {
        apply_schedule();
        switch (e) {
        case endpoint::bootstrap: return bootstrap(req);
        case endpoint::recover: return recover(req);
        case endpoint::refresh: return refresh(req, rec.path(), index);
        case endpoint::heartbeat: return heartbeat(req, rec.path(), index);
        case endpoint::worker_heartbeat: return worker_heartbeat(req, rec.path(), index);
        case endpoint::complete: return complete(req, rec.path(), index);
        case endpoint::policy: return policy(req);
        default: return error(404, proto::error_code_name::not_found);
        }
    }

    fake::reply created(const installation& i) {
        proto::bootstrap_response r;
        r.installation_id = i.id;
        r.runtime_token = i.runtime_token;
        r.runtime_token_expires_at = i.expires_at;
        r.refresh_token = i.refresh_token;
        r.lease_expires_at = clock_.wall_now() + options_.lease;
        r.heartbeat_interval_seconds = options_.heartbeat_interval.count();
        r.deployment_url = "https://dashboard.example/installations/" + i.id;
        return reply(201, proto::encode(r));
    }

    fake::reply bootstrap(const sekuire::http_request& req) {
        proto::bootstrap_request body;
        proto::decode_error err;
        if (!proto::decode(req.body, body, err)) {
            protocol_errors_.push_back("bootstrap body: " + err.message());
            return error(400, proto::error_code_name::bad_request);
        }
        if (install_token_used_) ++bootstraps_after_spent_;
        if (options_.refuse_install_token || body.install_token != options_.install_token)
            return error(401, proto::error_code_name::invalid_install_token);
        if (install_token_used_) return error(409, proto::error_code_name::install_token_used);
        install_token_used_ = true;
        return created(create_installation());
    }

    fake::reply recover(const sekuire::http_request& req) {
        proto::recover_request body;
        proto::decode_error err;
        if (!proto::decode(req.body, body, err)) {
            protocol_errors_.push_back("recover body: " + err.message());
            return error(400, proto::error_code_name::bad_request);
        }
        const std::string* key = sekuire::find_header(req.headers, "X-API-Key");
        if (!key || *key != options_.api_key) return error(401, proto::error_code_name::invalid_api_key);
        if (body.workspace_id != options_.workspace_id) return error(403, proto::error_code_name::workspace_mismatch);
        return created(create_installation());
    }

    fake::reply refresh(const sekuire::http_request& req, const std::string& path, std::size_t index) {
        installation* i = find_mutable(installation_id_of(path));
        if (!i) return error(404, proto::error_code_name::not_found);
        if (i->revoked) {
            record_revoked_answer(index, false);
            return error(403, proto::error_code_name::installation_revoked);
        }
        proto::refresh_request body;
        proto::decode_error err;
        if (!proto::decode(req.body, body, err)) {
            protocol_errors_.push_back("refresh body: " + err.message());
            return error(400, proto::error_code_name::bad_request);
        }
        if (body.refresh_token != i->refresh_token) return error(401, proto::error_code_name::invalid_refresh_token);
        new_runtime_token(*i);
        proto::refresh_response r;
        r.runtime_token = i->runtime_token;
        r.expires_at = i->expires_at;
        r.token_version = i->version;
        if (options_.rotate_refresh_tokens) {
            i->refresh_token = make_secret("rt_", "i" + i->id.substr(i->id.rfind('_') + 1) + "r", static_cast<unsigned>(i->version));
            secrets_.push_back(i->refresh_token);
            r.refresh_token = i->refresh_token;
        }
        return reply(200, proto::encode(r));
    }

    fake::reply heartbeat(const sekuire::http_request& req, const std::string& path, std::size_t index) {
        installation* i = find_mutable(installation_id_of(path));
        if (!i) return error(404, proto::error_code_name::not_found);
        if (!token_ok(*i, bearer_of(req))) return error(401, proto::error_code_name::unauthorized);
        proto::heartbeat_request body;
        proto::decode_error err;
        if (!proto::decode(req.body, body, err)) {
            protocol_errors_.push_back("heartbeat body: " + err.message());
            return error(400, proto::error_code_name::bad_request);
        }
        heartbeats_.push_back({clock_.steady_now(), i->id, body.status, i->revoked, false});
        i->last_status = body.status;
        proto::heartbeat_response r;
        if (i->revoked) {
            record_revoked_answer(index, true);
            r.revoked = proto::revocation{options_.revocation_reason, options_.revocation_timeout_ms};
            return reply(200, proto::encode(r));
        }
        r.installation_id = i->id;
        r.lease_renewed = true;
        r.lease_expires_at = clock_.wall_now() + options_.lease;
        r.active_policy_hash = policy_hash_;
        const bool want_paused = due(options_.pause_at) && !due(options_.resume_at);
        if (due(options_.terminate_at)) {
            r.command = proto::command{"cmd_terminate", proto::command_type::terminate, "terminate", "operator terminate",
                                       std::int64_t{30000}};
        } else if (want_paused && body.status != proto::heartbeat_status::paused) {
            r.command = proto::command{"cmd_pause", proto::command_type::pause, "pause", "operator pause", std::nullopt};
        } else if (!want_paused && due(options_.resume_at) && body.status == proto::heartbeat_status::paused) {
            r.command = proto::command{"cmd_resume", proto::command_type::resume, "resume", "operator resume", std::nullopt};
        }
        if (due(options_.push_token_at) && !i->token_pushed) {
            i->token_pushed = true;
            new_runtime_token(*i);
            r.refreshed_token = proto::refreshed_token{i->runtime_token, i->expires_at, i->version};
        }
        return reply(200, proto::encode(r));
    }

    fake::reply worker_heartbeat(const sekuire::http_request& req, const std::string& path, std::size_t index) {
        installation* i = find_mutable(installation_id_of(path));
        if (!i) return error(404, proto::error_code_name::not_found);
        if (!token_ok(*i, bearer_of(req))) return error(401, proto::error_code_name::unauthorized);
        proto::worker_heartbeat_request body;
        proto::decode_error err;
        if (!proto::decode(req.body, body, err)) {
            protocol_errors_.push_back("worker heartbeat body: " + err.message());
            return error(400, proto::error_code_name::bad_request);
        }
        proto::worker_heartbeat_response r;
        if (i->revoked) {
            record_revoked_answer(index, true);
            r.revoked = proto::revocation{options_.revocation_reason, options_.revocation_timeout_ms};
            return reply(200, proto::encode(r));
        }
        r.active_policy_hash = policy_hash_;
        if (due(options_.worker_terminate_at) && body.state != proto::worker_state::draining)
            r.command = proto::command{"cmd_worker_terminate", proto::command_type::terminate, "terminate",
                                       "operator terminate", std::int64_t{30000}};
        return reply(200, proto::encode(r));
    }

    fake::reply policy(const sekuire::http_request& req) {
        if (!by_token(bearer_of(req))) return error(401, proto::error_code_name::unauthorized);
        proto::policy_document p;
        p.policy_id = "policy_sweep";
        p.workspace_id = options_.workspace_id;
        p.version = policy_hash_ == "policy_hash_1" ? "1" : "2";
        p.status = "active";
        p.hash = policy_hash_;
        p.content = boost::json::object{};
        return reply(200, proto::encode(p));
    }

    fake::reply complete(const sekuire::http_request& req, const std::string& path, std::size_t index) {
        (void)index;
        if (!by_token(bearer_of(req))) return error(401, proto::error_code_name::unauthorized);
        proto::completion_request body;
        proto::decode_error err;
        if (!proto::decode(req.body, body, err)) {
            protocol_errors_.push_back("completion body: " + err.message());
            return error(400, proto::error_code_name::bad_request);
        }
        const std::string prefix(proto::path::tasks_prefix);
        const std::string id = path.substr(prefix.size(), path.size() - prefix.size() - std::string("/complete").size());
        auto it = std::find_if(tasks_.begin(), tasks_.end(), [&](const task_record& t) { return t.id == id; });
        if (it == tasks_.end()) return error(404, proto::error_code_name::unknown_task);
        if (it->final_status) {
            return error(409, proto::error_code_name::already_completed);
        }
        const bool passing = body.status == proto::task_status::rejected && body.error &&
                             (body.error->code == proto::task_error::worker_paused ||
                              body.error->code == proto::task_error::shutting_down ||
                              body.error->code == proto::task_error::rate_limited);
        if (!passing) {
            it->final_status = body.status;
            it->output = body.output;
        }
        return reply(200, R"({"accepted":true})");
    }

    options options_;
    st::fake_clock clock_;
    fake* transport_;
    fault fault_;
    bool fault_hit_ = false;
    std::vector<installation> installations_;
    std::vector<task_record> tasks_;
    std::vector<heartbeat_seen> heartbeats_;
    std::vector<std::string> secrets_;
    std::vector<std::string> protocol_errors_;
    std::vector<std::string> predictions_;
    std::string policy_hash_ = "policy_hash_1";
    std::size_t pushed_streams_ = 0;
    std::size_t scripts_used_ = 0;
    std::size_t answered_ = 0;
    std::size_t bootstraps_after_spent_ = 0;
    std::size_t first_revoked_answer_ = 0;
    bool first_revoked_shape_ = false;
    std::vector<std::pair<std::size_t, std::optional<steady_time_point>>> queued_deliveries_; // by the queued script
    std::uint64_t event_id_ = 0;
    bool install_token_used_ = false;
    bool invalidated_ = false;
    bool revoked_ = false;
};

// ---- the driver ---------------------------------------------------------------------

/** Runs step functions in fake time, from deadline to deadline.

    At each instant every step function runs (a step may have made work for another, as a
    wake-up would in a threaded run), again while any asks to run at once; then the clock
    moves to the earliest deadline. Each request is noted with the instant and the step
    that made it. A step that keeps asking to run without time moving, or a run that visits
    absurdly many instants, is a runaway (a tight loop): the run stops and says so.
*/
class driver {
public:
    struct stepper {
        std::string name;
        std::function<steady_time_point()> step;
        std::function<void()> before; // called when the step is due, just before it runs
        steady_time_point next{};
    };

    driver(st::fake_clock clock, fake transport) : clock_(std::move(clock)), transport_(std::move(transport)) {}

    void add(std::string name, std::function<steady_time_point()> step, std::function<void()> before = {}) {
        steppers_.push_back(stepper{std::move(name), std::move(step), std::move(before), clock_.steady_now()});
    }

    /// Steps until steady time `target`, or until `done()` holds after an instant. False
    /// on a runaway (see `runaway()`).
    bool run_until(steady_time_point target, const std::function<bool()>& done = {}) {
        if (!runaway_.empty()) return false;
        for (;;) {
            if (++instants_ > max_instants) {
                runaway_ = "more than " + std::to_string(max_instants) + " instants visited";
                return false;
            }
            for (int round = 0;; ++round) {
                if (round == max_rounds) {
                    runaway_ = "a step kept asking to run again at the same instant";
                    return false;
                }
                // A request that times out takes fake time: "now" moves within a round.
                const steady_time_point now = clock_.steady_now();
                bool again = false;
                for (auto& s : steppers_) {
                    if (s.before && clock_.steady_now() >= s.next) s.before();
                    s.next = s.step();
                    note_calls(s.name);
                    if (after_step) after_step();
                    if (s.next <= now) again = true;
                }
                if (!again) break;
            }
            if (observe) observe();
            if (done && done()) return true;
            steady_time_point next = steady_time_point::max();
            for (const auto& s : steppers_) next = std::min(next, s.next);
            if (next > target) {
                clock_.advance_to(target);
                return true;
            }
            clock_.advance_to(next);
        }
    }

    /// Notes the requests made since the last note as made now by `owner` (for requests
    /// made outside the steps: stop(), shutdown()).
    void note_calls(const std::string& owner) {
        const std::size_t n = transport_.total();
        while (times_.size() < n) {
            times_.push_back(clock_.steady_now());
            owners_.push_back(owner);
        }
    }

    /// The next deadline of the stepper `name` (max when unknown).
    steady_time_point next_of(const std::string& name) const {
        for (const auto& s : steppers_)
            if (s.name == name) return s.next;
        return steady_time_point::max();
    }

    const std::vector<steady_time_point>& times() const { return times_; }
    const std::vector<std::string>& owners() const { return owners_; }
    const std::string& runaway() const { return runaway_; }

    /// Called after each instant (to watch a state change as it happens).
    std::function<void()> observe;
    /// Called after each step.
    std::function<void()> after_step;

    static constexpr int max_rounds = 64;
    static constexpr std::size_t max_instants = 50000;

private:
    st::fake_clock clock_;
    fake transport_;
    std::vector<stepper> steppers_;
    std::vector<steady_time_point> times_;
    std::vector<std::string> owners_;
    std::string runaway_;
    std::size_t instants_ = 0;
};

/// The most requests made in any 60 s of fake time.
inline std::size_t busiest_minute(const std::vector<steady_time_point>& times) {
    std::size_t best = 0, first = 0;
    for (std::size_t last = 0; last < times.size(); ++last) { // times never go back
        while (times[last] >= times[first] + std::chrono::seconds(60)) ++first;
        best = std::max(best, last - first + 1);
    }
    return best;
}

} // namespace fault_sweep

#endif
