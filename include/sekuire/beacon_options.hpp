// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_BEACON_OPTIONS_HPP
#define SEKUIRE_BEACON_OPTIONS_HPP

/// @file
/// What a beacon is told and what it tells: `beacon_options`, `beacon_status` and its
/// `beacon_state`, `revocation_info`, and the checks of the options. Shared by
/// `basic_beacon`, the plain `beacon_core` and the asynchronous beacon.

#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/env.hpp>
#include <sekuire/error.hpp>
#include <sekuire/limits.hpp>
#include <sekuire/log.hpp>
#include <sekuire/platform.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/retry.hpp>
#include <sekuire/time.hpp>
#include <sekuire/transport.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sekuire {

/// Where a beacon stands.
enum class beacon_state {
    idle,           ///< not started
    authenticating, ///< walking the auth chain, no failure yet
    connected,      ///< authenticated and holding a lease
    degraded,       ///< not authenticated: retrying after transient failures, or every path failed
    lease_expired,  ///< authenticated, but the lease expired before it was renewed
    revoked,        ///< the kill switch was triggered; no further heartbeats
    stopped,        ///< stopped by `stop()`
};

/// The name of a state (`"connected"`, ...).
inline const char* to_string(beacon_state s) noexcept {
    switch (s) {
    case beacon_state::idle: return "idle";
    case beacon_state::authenticating: return "authenticating";
    case beacon_state::connected: return "connected";
    case beacon_state::degraded: return "degraded";
    case beacon_state::lease_expired: return "lease_expired";
    case beacon_state::revoked: return "revoked";
    case beacon_state::stopped: return "stopped";
    }
    return "idle";
}

/** A snapshot of a beacon (`basic_beacon::get_status()`).

    Holds the seed's fields (`is_running`, `installation_id`, `runtime_token` masked,
    `deployment_url`, `last_heartbeat`, `failed_heartbeats`, `degraded_mode`,
    `recovered_from_env`) and more. Never holds a token in full.
*/
struct beacon_status {
    /// True between `start()` and `stop()`.
    bool is_running = false;
    /// Where the beacon stands.
    beacon_state state = beacon_state::idle;
    /// The installation's id (empty until one is known).
    std::string installation_id;
    /// The runtime token, masked (`mask_token()`).
    std::string runtime_token;
    /// When the runtime token expires, as the backend gave it.
    std::optional<wall_time_point> runtime_token_expires_at;
    /// The installation's page in Sekuire, when the backend gave one.
    std::string deployment_url;
    /// Wall time of the last successful heartbeat.
    std::optional<wall_time_point> last_heartbeat;
    /// Consecutive failed heartbeats (0 after a success).
    std::uint32_t failed_heartbeats = 0;
    /// True while not authenticated (Sekuire features off, the agent keeps running).
    bool degraded_mode = false;
    /// True when the recovery credentials came from the environment.
    bool recovered_from_env = false;
    /// The lease expiry the backend gave last.
    std::optional<wall_time_point> lease_expires_at;
    /// True while the lease has run out without a renewal.
    bool lease_expired = false;
    /// Set by pause and resume commands.
    bool paused = false;
    /// Set by a terminate command (the owner decides how to shut down).
    bool terminate_requested = false;
    /// True once the installation was revoked (the kill switch).
    bool revoked = false;
    /// The reason the revocation gave.
    std::string revoked_reason;
    /// The time the backend grants for a graceful shutdown after a revocation.
    std::optional<std::chrono::milliseconds> shutdown_timeout;
    /// The last error, readable; never holds a token.
    std::string last_error;
    /// The code of `last_error`.
    error_code last_error_code;
    /// Successful heartbeats since start.
    std::uint64_t heartbeats_sent = 0;
    /// The last `active_policy_hash` the backend sent (empty: none).
    std::string active_policy_hash;
    /// The heartbeat interval in use (the backend may have changed it).
    std::chrono::seconds heartbeat_interval{protocol::timing::default_heartbeat_interval};
    /// The backend's clock minus the local one, from the last `Date` header (0 when within
    /// 2 s). Token expiry is judged on the backend's clock.
    std::chrono::milliseconds clock_offset{0};
};

/** A one-line summary of a status, for logs and consoles (tokens masked, as in the status):
    `state=connected installation=inst_1 token=srt_...9f2c heartbeats=12 failed=0 ...`.
*/
inline std::string to_string(const beacon_status& s) {
    std::string out = "state=";
    out += to_string(s.state);
    out += " running=";
    out += s.is_running ? "true" : "false";
    if (!s.installation_id.empty()) out += " installation=" + s.installation_id;
    if (!s.runtime_token.empty()) out += " token=" + s.runtime_token;
    out += " heartbeats=" + std::to_string(s.heartbeats_sent);
    out += " failed=" + std::to_string(s.failed_heartbeats);
    out += " degraded=";
    out += s.degraded_mode ? "true" : "false";
    if (s.lease_expires_at) out += " lease_expires_at=" + format_rfc3339(*s.lease_expires_at);
    if (s.lease_expired) out += " lease_expired=true";
    if (s.paused) out += " paused=true";
    if (s.terminate_requested) out += " terminate_requested=true";
    if (s.revoked) out += " revoked=\"" + s.revoked_reason + "\"";
    if (s.recovered_from_env) out += " recovered_from_env=true";
    if (s.clock_offset.count() != 0) out += " clock_offset_ms=" + std::to_string(s.clock_offset.count());
    if (!s.deployment_url.empty()) out += " deployment=" + s.deployment_url;
    if (!s.last_error.empty()) out += " last_error=\"" + s.last_error + "\"";
    return out;
}

/// What a revocation callback receives.
struct revocation_info {
    /// Why, as the operator wrote it.
    std::string reason;
    /// The backend's `shutdown_timeout_ms`, or `default_shutdown_timeout` when absent.
    std::chrono::milliseconds shutdown_timeout{10000};
};

/// The shutdown timeout used when a revocation does not give one.
inline constexpr std::chrono::milliseconds default_shutdown_timeout{10000};

/** Options of a beacon. The names follow the TypeScript SDK's `Beacon` options in C++
    style (`apiBaseUrl` is `api_base_url`, ...).
*/
struct beacon_options {
    /// Defaults as documented at each field: copyable and movable. The special members are compiled with the library,
    /// not in every file that builds options (SEKUIRE_SEPARATE_COMPILATION).
    ///@{
    SEKUIRE_DECL beacon_options();
    SEKUIRE_DECL beacon_options(const beacon_options&);
    SEKUIRE_DECL beacon_options(beacon_options&&) noexcept;
    SEKUIRE_DECL beacon_options& operator=(const beacon_options&);
    SEKUIRE_DECL beacon_options& operator=(beacon_options&&) noexcept;
    SEKUIRE_DECL ~beacon_options();
    ///@}

    /// Base URL of the Sekuire API (may carry a path prefix).
    std::string api_base_url{protocol::default_api_url};
    /// The agent's Sekuire id.
    std::string agent_id;
    /// One-time install token (`skt_...`) for the first bootstrap.
    std::string install_token;
    /// API key (`sk_live_...`) and workspace id for the recovery bootstrap.
    std::string api_key;
    /// The workspace the API key belongs to (`ws_...`).
    std::string workspace_id;
    /// Interval between heartbeats; the backend may override it.
    std::chrono::seconds heartbeat_interval{protocol::timing::default_heartbeat_interval};
    /// Capabilities reported with the bootstrap and every heartbeat.
    std::vector<std::string> capabilities;

    /// Recovery credentials from an earlier bootstrap (ephemeral compute restarts). When
    /// none is given, they are taken from `environment` (the seed's restart story:
    /// `SEKUIRE_INSTALLATION_ID` with `SEKUIRE_REFRESH_TOKEN` and/or `SEKUIRE_RUNTIME_TOKEN`).
    std::string installation_id;
    /// The refresh token of that installation.
    std::string refresh_token;
    /// A runtime token of that installation, tried as is before a refresh.
    std::string runtime_token;
    /// Whether the recovery credentials came from the environment (shown in the status
    /// when they were used). Set by `from_env()` and by the lookup of `environment`.
    bool recovered_from_env = false;
    /// Where missing recovery credentials are looked up (protocol.md section 8); empty: the
    /// process environment. A lookup that finds nothing turns this off.
    env_lookup environment;
    /// Path of a credentials file: with the default `credential_store`, a `file_store`
    /// there is used (set from `SEKUIRE_CREDENTIALS_FILE`).
    std::string credentials_file;

    /// Called on the beacon's thread when the status changes materially (state, degraded
    /// mode, pause, revocation, lease, failures starting or ending).
    std::function<void(const beacon_status&)> on_status_change;
    /// Called once per command id (pause, resume, terminate) from a heartbeat response.
    std::function<void(const protocol::command&)> on_command;
    /// Called once when the installation is revoked.
    std::function<void(const revocation_info&)> on_revoked;
    /// Called when the backend's `active_policy_hash` changes.
    std::function<void(const std::string&)> on_policy_hash;
    /// Supplies the `metrics` of each heartbeat (e.g. from a worker).
    std::function<protocol::heartbeat_metrics()> metrics;
    /// Receives log lines; nothing is logged without it.
    log_handler logger;

    /// Time limit of each request.
    std::chrono::milliseconds request_timeout{10000};
    /// Time limit of the final heartbeat sent by `stop()`.
    std::chrono::milliseconds stop_timeout{2000};
    /// How long `start()` waits for the first pass of the auth chain.
    std::chrono::milliseconds start_timeout{15000};
    /// The first bootstrap (or recovery) and the registration heartbeat wait a random time
    /// in [0, startup_jitter), so that a fleet restarted together does not arrive together
    /// (also `SEKUIRE_STARTUP_JITTER`, seconds). `start()` waits for them as for the rest
    /// of the first pass; 0 turns it off.
    std::chrono::milliseconds startup_jitter{std::chrono::seconds(2)};
    /// Backoff of retries (protocol.md section 0 defaults).
    backoff_options backoff;
    /// Source of jitter; empty: seeded from `std::random_device`.
    random_source random;
    /// Settings of the default transport.
    transport_options transport;

    /// Options read from the `SEKUIRE_*` environment (protocol.md section 8). Throws
    /// `sekuire::error` when a variable has an invalid value.
    static beacon_options from_env() { return from_env(process_env()); }

    /// Options read through `lookup`.
    /// @throws sekuire::error (`errc::invalid_option`) when a variable has an invalid value.
    static beacon_options from_env(const env_lookup& lookup) {
        const env_settings e = read_env(lookup);
        beacon_options o;
        detail::apply_common_env(e, o);
        o.api_key = e.api_key;
        o.recovered_from_env = e.credentials().has_value();
        if (e.heartbeat_interval) o.heartbeat_interval = *e.heartbeat_interval;
        o.environment = lookup;
        return o;
    }
};

/** Checks every duration and size option of `o` against `sekuire::limits` (the ranges the
    environment and the tools accept too). Returns an empty string when all are valid; else
    sets `ec` to `errc::invalid_option` and returns a message naming the first option at
    fault, its allowed range and its value. The beacon's constructors throw that as
    `sekuire::error`.
*/
inline std::string validate(const beacon_options& o, error_code& ec) {
    ec = {};
    std::string what;
    const char* b = "beacon";
    detail::check_option(b, "heartbeat_interval", o.heartbeat_interval, limits::heartbeat_interval, ec, what);
    detail::check_option(b, "request_timeout", o.request_timeout, limits::request_timeout, ec, what);
    detail::check_option(b, "stop_timeout", o.stop_timeout, limits::stop_timeout, ec, what);
    detail::check_option(b, "start_timeout", o.start_timeout, limits::start_timeout, ec, what);
    detail::check_option(b, "startup_jitter", o.startup_jitter, limits::startup_jitter, ec, what);
    detail::check_backoff(b, o.backoff, ec, what);
    detail::check_transport_options(b, o.transport, ec, what);
    return what;
}

namespace detail {

/** Fills missing recovery credentials of `o` (an options struct with `installation_id`,
    `refresh_token`, `runtime_token`, `recovered_from_env` and `environment`) from the
    environment: only when the options name none at all, and only when the environment
    holds an installation id with a refresh or runtime token.
*/
template <class Options>
void recover_from_env(Options& o) {
    if (!o.installation_id.empty() || !o.refresh_token.empty() || !o.runtime_token.empty()) return;
    error_code ignored; // an invalid SEKUIRE_HEARTBEAT_INTERVAL is not this function's business
    const env_settings e = read_env(o.environment ? o.environment : process_env(), ignored);
    if (const auto c = e.credentials()) {
        o.installation_id = c->installation_id;
        o.refresh_token = c->refresh_token;
        o.runtime_token = c->runtime_token;
        o.recovered_from_env = true;
    }
}

/// Validates `o` (throwing `sekuire::error` with `errc::invalid_option`) and completes its
/// recovery credentials from the environment.
inline beacon_options prepare(beacon_options o) {
    error_code ec;
    const std::string what = validate(o, ec);
    throw_invalid_option(ec, what);
    recover_from_env(o);
    return o;
}

/// Remembers the last command ids seen, so that each is delivered once.
class command_log {
public:
    /// True the first time `id` is seen.
    bool first_time(const std::string& id) {
        if (id.empty()) return true;
        if (std::find(ids_.begin(), ids_.end(), id) != ids_.end()) return false;
        ids_.push_back(id);
        if (ids_.size() > 256) ids_.pop_front();
        return true;
    }

private:
    std::deque<std::string> ids_;
};

template <class F, class... Args>
void invoke_callback(const F& f, const log_handler& logger, const char* what, Args&&... args) noexcept {
    if (!f) return;
    try {
        f(std::forward<Args>(args)...);
    } catch (const std::exception& e) {
        if (logger) {
            try {
                logger(log_level::error, std::string(what) + " callback threw: " + e.what());
            } catch (...) {
            }
        }
    } catch (...) {
        if (logger) {
            try {
                logger(log_level::error, std::string(what) + " callback threw");
            } catch (...) {
            }
        }
    }
}

} // namespace detail

} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/impl/beacon_options.ipp>
#endif

#endif
