// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_WORKER_OPTIONS_HPP
#define SEKUIRE_WORKER_OPTIONS_HPP

/// @file
/// What a worker is told and what it tells: `worker_options`, `worker_status` and its
/// `worker_state`, the task handler's `task_context` and `task_failure`, and the checks of
/// the options. Shared by `basic_worker`, the plain `worker_core` and the asynchronous
/// worker.

#include <sekuire/beacon_options.hpp>
#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/env.hpp>
#include <sekuire/error.hpp>
#include <sekuire/limits.hpp>
#include <sekuire/log.hpp>
#include <sekuire/platform.hpp>
#include <sekuire/policy_gateway.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/retry.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/transport.hpp>

#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sekuire {

/** What a task handler knows about its task.

    `stop` fires at the task's deadline (the earlier of the task's `deadline_at` and the
    worker's handler timeout) or when the worker shuts down: a handler that runs long
    should check it and return.
*/
struct task_context {
    /// The task's id.
    std::string task_id;
    /// The capability it asks for (the handler's name).
    std::string capability;
    /// The workspace it belongs to, when the backend said.
    std::optional<std::string> workspace_id;
    /// Its trace id, sent back with the result.
    std::optional<std::string> trace_id;
    /// The agent that asked for it, if any.
    std::optional<std::string> requester_agent_id;
    /// The task it is part of, if any.
    std::optional<std::string> parent_task_id;
    /// The workflow it is part of, if any.
    std::optional<std::string> workflow_id;
    /// The effective deadline (wall time).
    wall_time_point deadline{};
    /// Fires at the deadline or at shutdown (see above).
    stop_token stop;
};

/** Thrown by a handler to fail a task with a specific error code (by default a handler
    that throws fails with `handler_error`), e.g.
    `throw sekuire::task_failure(sekuire::protocol::task_error::invalid_input, "no text")`.
*/
class task_failure : public std::runtime_error {
public:
    /// Fails the task with `code`; `message` goes to the backend with it.
    task_failure(protocol::task_error code, const std::string& message) : std::runtime_error(message), code_(code) {}
    /// The error code the task fails with.
    protocol::task_error code() const noexcept { return code_; }

private:
    protocol::task_error code_;
};

/// A capability handler: returns the task's output, or throws to fail it.
using task_handler = std::function<boost::json::value(const task_context& ctx, const boost::json::value& input)>;

/// Receives control commands (pause, resume, terminate).
using command_handler = std::function<void(const protocol::command& cmd)>;

/// Where a worker stands.
enum class worker_state {
    idle,         ///< not started
    connecting,   ///< (re)connecting the task stream
    connected,    ///< the task stream is open
    degraded,     ///< no usable credentials; retrying
    draining,     ///< shutting down gracefully: no new tasks, finishing and reporting
    stopped,      ///< stopped
    revoked,      ///< the installation was revoked; stopped
};

/// The name of a state.
inline const char* to_string(worker_state s) noexcept {
    switch (s) {
    case worker_state::idle: return "idle";
    case worker_state::connecting: return "connecting";
    case worker_state::connected: return "connected";
    case worker_state::degraded: return "degraded";
    case worker_state::draining: return "draining";
    case worker_state::stopped: return "stopped";
    case worker_state::revoked: return "revoked";
    }
    return "idle";
}

/// A snapshot of a worker. Never holds a token in full.
struct worker_status {
    /// Where the worker stands.
    worker_state state = worker_state::idle;
    /// True after a pause command, until a resume: new tasks are rejected (`worker_paused`).
    bool paused = false;
    /// True once the installation was revoked (the worker then stops).
    bool revoked = false;
    /// The reason the revocation gave.
    std::string revoked_reason;
    /// The installation the worker runs as (empty before authentication).
    std::string installation_id;
    /// The runtime token, masked.
    std::string runtime_token;
    /// True when the credentials in use came from the environment.
    bool recovered_from_env = false;
    /// True while the task stream is open.
    bool stream_connected = false;
    /// Task stream connections opened since start.
    std::uint64_t stream_connects = 0;
    /// The last task-stream event id, sent as `Last-Event-ID` on reconnect.
    std::string last_event_id;
    /// Handlers running now.
    std::size_t in_flight = 0;
    /// Tasks accepted and waiting for a free handler slot.
    std::size_t queued = 0;
    /// Well-formed task events received, duplicates included.
    std::uint64_t received = 0;
    /// Task events whose task id was seen already (not run again).
    std::uint64_t duplicates = 0;
    /// Tasks whose handler returned an output.
    std::uint64_t completed = 0;
    /// Tasks that failed (the handler threw, or ran past the deadline).
    std::uint64_t failed = 0;
    /// Tasks refused without running (paused, no handler, policy, queue full, shutting down).
    std::uint64_t rejected = 0;
    /// Results waiting to be (re)sent.
    std::size_t pending_results = 0;
    /// Results given up (unknown task, permanent refusal, or still unsent at the end of the
    /// drain); each is logged with its task id.
    std::uint64_t results_dropped = 0;
    /// The hash of the policy the gateway enforces (empty: none fetched).
    std::string policy_hash;
    /// The last error, readable; never holds a token.
    std::string last_error;
    /// The code of `last_error`.
    error_code last_error_code;
};

/// A one-line summary of a worker's status, for logs and consoles (tokens masked).
inline std::string to_string(const worker_status& s) {
    std::string out = "state=";
    out += to_string(s.state);
    if (!s.installation_id.empty()) out += " installation=" + s.installation_id;
    out += " stream=";
    out += s.stream_connected ? "open" : "closed";
    out += " in_flight=" + std::to_string(s.in_flight) + " queued=" + std::to_string(s.queued);
    out += " completed=" + std::to_string(s.completed) + " failed=" + std::to_string(s.failed) +
           " rejected=" + std::to_string(s.rejected);
    if (s.pending_results) out += " pending_results=" + std::to_string(s.pending_results);
    if (s.results_dropped) out += " results_dropped=" + std::to_string(s.results_dropped);
    if (s.paused) out += " paused=true";
    if (s.revoked) out += " revoked=\"" + s.revoked_reason + "\"";
    if (!s.policy_hash.empty()) out += " policy=" + s.policy_hash;
    if (!s.last_error.empty()) out += " last_error=\"" + s.last_error + "\"";
    return out;
}

/** Options of a worker; the names follow the TypeScript SDK's `createWorker` options in
    C++ style.
*/
struct worker_options {
    /// Defaults as documented at each field: copyable and movable. The special members are compiled with the library,
    /// not in every file that builds options (SEKUIRE_SEPARATE_COMPILATION).
    ///@{
    SEKUIRE_DECL worker_options();
    SEKUIRE_DECL worker_options(const worker_options&);
    SEKUIRE_DECL worker_options(worker_options&&) noexcept;
    SEKUIRE_DECL worker_options& operator=(const worker_options&);
    SEKUIRE_DECL worker_options& operator=(worker_options&&) noexcept;
    SEKUIRE_DECL ~worker_options();
    ///@}

    /// Base URL of the Sekuire API (may carry a path prefix).
    std::string api_base_url{protocol::default_api_url};
    /// The agent's Sekuire id (for a bootstrap with the install token).
    std::string agent_id;
    /// Credentials, tried in the order of protocol.md section 4: runtime token (or
    /// `token_provider`, or the store), then installation id + refresh token, then the
    /// install token.
    std::string install_token;
    /// A runtime token to use as is (tried first).
    std::string runtime_token;
    /// The installation id that goes with `refresh_token` (and `runtime_token`).
    std::string installation_id;
    /// A refresh token, for a new runtime token when there is none or it is rejected.
    std::string refresh_token;
    /// Whether the recovery credentials came from the environment (set by `from_env()` and
    /// by the lookup of `environment`).
    bool recovered_from_env = false;
    /// Where recovery credentials are looked up when the options give none (no installation
    /// id, runtime or refresh token, nor a `token_provider`): `SEKUIRE_INSTALLATION_ID`,
    /// `SEKUIRE_REFRESH_TOKEN`, `SEKUIRE_RUNTIME_TOKEN`. Empty: the process environment.
    env_lookup environment;
    /// Supplies the runtime token for each request (overrides the stored one).
    std::function<std::optional<std::string>()> token_provider;
    /// The platform sent when this worker bootstraps on its own with the install token
    /// (protocol.md section 7). `create_worker()` fills it with `auto_probe` when unset;
    /// a `basic_worker` does not probe, and sends `bare_metal` with nothing else.
    std::optional<platform_info> platform;
    /// The workspace, for fetching the active policy.
    std::string workspace_id;
    /// Capabilities offered on the stream; empty: the capabilities with a handler.
    std::vector<std::string> capabilities;
    /// Interval of worker heartbeats (protocol.md section 6.3).
    std::chrono::milliseconds heartbeat_interval{protocol::timing::default_worker_heartbeat_interval};
    /// Enforced before handlers run; share one with the SDK to share policy state.
    policy_gateway gateway;
    /// Fetch the workspace's active policy at start and when its hash changes.
    bool fetch_policy = true;
    /// Handlers running at once; further tasks wait in a queue of `max_queued_tasks`.
    std::size_t max_concurrent_handlers = 4;
    /// Tasks waiting for a handler slot; past this, new tasks are rejected (`rate_limited`).
    std::size_t max_queued_tasks = 10000;
    /// Results waiting for a retry (the backend slow or down). At this many, new tasks are
    /// refused (`rate_limited`) and further rejections are not kept (see `results_dropped`).
    std::size_t max_pending_results = 10000;
    /// The longest a handler may run (a task's own `deadline_at` may be earlier).
    std::chrono::milliseconds handler_timeout{std::chrono::minutes(5)};
    /// How long `stop()` waits for in-flight handlers and unsent results.
    std::chrono::milliseconds drain_timeout{std::chrono::seconds(30)};
    /// The longest one request (completion, heartbeat, policy, refresh) may take.
    std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};
    /// Silence on the task stream after which it is reconnected.
    std::chrono::milliseconds stream_idle_timeout{protocol::timing::stream_idle_timeout};
    /// How long `start()` waits for the first authentication.
    std::chrono::milliseconds start_timeout{std::chrono::seconds(15)};
    /// The first authentication and stream connection wait a random time in
    /// [0, startup_jitter), so that a fleet restarted together does not arrive together
    /// (also `SEKUIRE_STARTUP_JITTER`, seconds). Workers created by an SDK take none (its
    /// beacon spread the start already).
    std::chrono::milliseconds startup_jitter{std::chrono::seconds(2)};
    /// Retry timing of reconnects, results, policy fetches and authentication.
    backoff_options backoff;
    /// The jitter's random numbers; empty: `default_random_source()`.
    random_source random;
    /// Receives the worker's log lines; empty: nothing is logged.
    log_handler logger;
    /// Called with each control command, on the worker thread that received it (task stream or
    /// control loop); an exception it throws is logged and ignored.
    command_handler on_command;
    /// Called when the installation is revoked, on the worker thread that learnt it; an exception
    /// it throws is logged and ignored.
    std::function<void(const revocation_info&)> on_revoked;
    /// Settings of the default transport, and the default store's file.
    transport_options transport;
    /// The path of the `file_store` a `sekuire::worker` keeps its credentials in; empty: in memory.
    std::string credentials_file;

    /// Options from the `SEKUIRE_*` environment (protocol.md section 8).
    /// @throws sekuire::error (`errc::invalid_option`) when a variable has an invalid value.
    static worker_options from_env() { return from_env(process_env()); }
    /// Options from the `SEKUIRE_*` settings that `lookup` finds (protocol.md section 8); tests
    /// pass a map instead of the process environment.
    /// @throws sekuire::error (`errc::invalid_option`) when a variable has an invalid value.
    static worker_options from_env(const env_lookup& lookup) {
        worker_options o;
        const env_settings e = read_env(lookup);
        detail::apply_common_env(e, o);
        o.recovered_from_env = e.credentials().has_value();
        o.environment = lookup;
        return o;
    }
};

/** Checks every duration and size option of `o` against `sekuire::limits` (see
    `validate(const beacon_options&, error_code&)`). Returns an empty string when all are
    valid; else sets `ec` to `errc::invalid_option` and returns a message naming the first
    option at fault, its range and its value.
*/
inline std::string validate(const worker_options& o, error_code& ec) {
    ec = {};
    std::string what;
    const char* w = "worker";
    detail::check_option(w, "heartbeat_interval", o.heartbeat_interval, limits::worker_heartbeat_interval, ec, what);
    detail::check_option(w, "max_concurrent_handlers", o.max_concurrent_handlers, limits::max_concurrent_handlers, ec,
                         what);
    detail::check_option(w, "max_queued_tasks", o.max_queued_tasks, limits::max_queued_tasks, ec, what);
    detail::check_option(w, "max_pending_results", o.max_pending_results, limits::max_pending_results, ec, what);
    detail::check_option(w, "handler_timeout", o.handler_timeout, limits::handler_timeout, ec, what);
    detail::check_option(w, "drain_timeout", o.drain_timeout, limits::drain_timeout, ec, what);
    detail::check_option(w, "request_timeout", o.request_timeout, limits::request_timeout, ec, what);
    detail::check_option(w, "stream_idle_timeout", o.stream_idle_timeout, limits::stream_idle_timeout, ec, what);
    detail::check_option(w, "start_timeout", o.start_timeout, limits::start_timeout, ec, what);
    detail::check_option(w, "startup_jitter", o.startup_jitter, limits::startup_jitter, ec, what);
    detail::check_backoff(w, o.backoff, ec, what);
    detail::check_transport_options(w, o.transport, ec, what);
    return what;
}

namespace detail {
/// Validates `o` (throwing `sekuire::error` with `errc::invalid_option`) and completes its
/// recovery credentials from the environment when it names none.
inline worker_options prepare(worker_options o) {
    error_code ec;
    const std::string what = validate(o, ec);
    throw_invalid_option(ec, what);
    if (!o.token_provider) recover_from_env(o);
    return o;
}
} // namespace detail

} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/impl/worker_options.ipp>
#endif

#endif
