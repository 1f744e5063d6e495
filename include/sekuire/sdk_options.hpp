// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_SDK_OPTIONS_HPP
#define SEKUIRE_SDK_OPTIONS_HPP

/// @file
/// `sdk_options` and what a `basic_sdk` does without its policies: the options it gives its
/// workers, the sum of their metrics, and the bookkeeping that carries a command, a
/// revocation or a shutdown to every part once (`detail::sdk_control`).

#include <sekuire/beacon_options.hpp>
#include <sekuire/policy_gateway.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/worker_options.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace sekuire {

/** Options of an SDK: those of its beacon, and whether the beacon heartbeats. Workers
    created by `create_task_worker()` inherit the base URL, agent id, workspace, logger and
    transport settings.

    The SDK sets the beacon's `metrics` to the sum of its workers' metrics; a `metrics`
    given here replaces that sum (the workers' counts are then not reported).
*/
struct sdk_options : beacon_options {
    /// Defaults as documented at each field and at `beacon_options`: copyable and movable. The special members are compiled with the library,
    /// not in every file that builds options (SEKUIRE_SEPARATE_COMPILATION).
    ///@{
    SEKUIRE_DECL sdk_options();
    SEKUIRE_DECL sdk_options(const sdk_options&);
    SEKUIRE_DECL sdk_options(sdk_options&&) noexcept;
    SEKUIRE_DECL sdk_options& operator=(const sdk_options&);
    SEKUIRE_DECL sdk_options& operator=(sdk_options&&) noexcept;
    SEKUIRE_DECL ~sdk_options();
    ///@}

    /// Run the beacon (bootstrap and heartbeats). Off (the seed's `autoHeartbeat: false`):
    /// no heartbeats are sent and nothing bootstraps; workers authenticate with the
    /// recovery credentials given here (installation id with a runtime or refresh token).
    bool auto_heartbeat = true;
    /// Threads of the handler pool shared by the workers (0: the hardware concurrency, at
    /// least 4). A worker runs at most its `max_concurrent_handlers` at once on it.
    std::size_t handler_threads = 0;
    /// The policy gateway wired into every worker the SDK creates (the seed's
    /// `policyGateway`): `default_policy_gateway` unless you bring your own.
    policy_gateway gateway;

    /// Options from the `SEKUIRE_*` environment (protocol.md section 8).
    /// @throws sekuire::error (`errc::invalid_option`) when a variable has an invalid value.
    static sdk_options from_env() { return from_env(process_env()); }
    /// Options from the `SEKUIRE_*` settings that `lookup` finds.
    /// @throws sekuire::error (`errc::invalid_option`) when a variable has an invalid value.
    static sdk_options from_env(const env_lookup& lookup) {
        sdk_options o;
        static_cast<beacon_options&>(o) = beacon_options::from_env(lookup);
        return o;
    }
};

/** Checks the options of an SDK: those of its beacon (`validate(const beacon_options&,
    error_code&)`) and `handler_threads`. Returns an empty string when all are valid; else
    sets `ec` to `errc::invalid_option` and returns a message naming the option at fault.
*/
inline std::string validate(const sdk_options& o, error_code& ec) {
    std::string what = validate(static_cast<const beacon_options&>(o), ec);
    detail::check_option("sdk", "handler_threads", o.handler_threads, limits::handler_threads, ec, what);
    return what;
}

namespace detail {

/** The options of a worker the SDK creates: what the caller left unset comes from the SDK
    (base URL, agent id, workspace, logger); it never bootstraps (the beacon does), takes
    no startup jitter (the beacon spread the start) and no credentials from the environment
    (the beacon read them). With `auto_heartbeat` off it starts from the SDK's recovery
    credentials. @throws sekuire::error (`invalid_option`) for a base URL other than the
    SDK's: the workers use the SDK's transport.
*/
inline worker_options sdk_worker_options(const sdk_options& o, worker_options options) {
    if (options.api_base_url == protocol::default_api_url) options.api_base_url = o.api_base_url;
    if (options.api_base_url != o.api_base_url)
        throw error(errc::invalid_option, "create_task_worker: api_base_url '" + options.api_base_url + "' is not the SDK's ('" +
                                              o.api_base_url + "'); the SDK's workers use the SDK's transport");
    if (options.agent_id.empty()) options.agent_id = o.agent_id;
    if (options.workspace_id.empty()) options.workspace_id = o.workspace_id;
    if (!options.logger) options.logger = o.logger;
    options.install_token.clear();
    options.startup_jitter = std::chrono::milliseconds(0);
    options.environment = [](const char*) -> std::optional<std::string> { return std::nullopt; };
    if (!o.auto_heartbeat && options.installation_id.empty()) {
        // No beacon puts credentials in the store: the worker starts from those given.
        options.installation_id = o.installation_id;
        options.runtime_token = o.runtime_token;
        options.refresh_token = o.refresh_token;
    }
    return options;
}

/// Adds one worker's metrics to `total`; `weighted` sums latency times count.
inline void add_metrics(protocol::heartbeat_metrics& total, std::int64_t& weighted, const protocol::heartbeat_metrics& m) {
    total.requests_handled += m.requests_handled;
    total.errors += m.errors;
    weighted += m.avg_latency_ms * m.requests_handled;
    if (total.requests_handled > 0) total.avg_latency_ms = weighted / total.requests_handled;
}

/** What an SDK records so that a command, a revocation or a shutdown reaches every part
    once, also parts created later: the pause in force (with a generation counting pause
    and resume commands), the revocation, and the shutdown's progress. Thread-safe through
    `mutex` (held by the caller where the members are read directly).
*/
class sdk_control {
public:
    mutable std::mutex mutex;
    std::condition_variable cv;
    bool requested = false;             // a shutdown was asked for
    bool closed = false;                // the shutdown has taken its last list of workers
    bool done = false;                  // the shutdown is over
    bool paused = false;                // a pause command is in force
    std::uint64_t pause_generation = 0; // counts pause and resume commands
    std::optional<protocol::revocation> revocation;
    std::string why;
    std::thread supervisor;
    std::mutex shutdown_mutex; // one shutdown() carries out the shutdown at a time

    /// Records a pause or resume (once per command id), before it is passed on.
    void record_command(const protocol::command& c) {
        if (c.type != protocol::command_type::pause && c.type != protocol::command_type::resume) return;
        std::lock_guard<std::mutex> lock(mutex);
        if (!commands_.first_time(c.id)) return;
        paused = c.type == protocol::command_type::pause;
        ++pause_generation;
    }

    /// Records the revocation; false when one was recorded already (the SDK acts once).
    bool record_revocation(const protocol::revocation& r) {
        std::lock_guard<std::mutex> lock(mutex);
        if (revocation) return false;
        revocation = r;
        return true;
    }

    /// Asks for the shutdown, once. Notified under the lock: a waiter may destroy the SDK
    /// as soon as it wakes.
    void request(const std::string& reason) {
        std::lock_guard<std::mutex> lock(mutex);
        if (requested) return;
        requested = true;
        why = reason;
        cv.notify_all();
    }

    /// Blocks until a shutdown is asked for.
    void wait_requested() {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return requested; });
    }

    /// The shutdown is over.
    void finish() {
        std::lock_guard<std::mutex> lock(mutex);
        closed = true;
        done = true;
        cv.notify_all();
    }

private:
    command_log commands_; // ids of pause and resume commands seen
};

} // namespace detail
} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/impl/sdk_options.ipp>
#endif

#endif
