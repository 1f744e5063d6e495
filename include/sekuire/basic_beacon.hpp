// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_BASIC_BEACON_HPP
#define SEKUIRE_BASIC_BEACON_HPP

/// @file
/// `basic_beacon`: installation bootstrap, lease heartbeats, token refresh and the kill
/// switch, over any Transport, Clock, CredentialStore and PlatformProbe.
///
/// This header does not include httplib; `<sekuire/beacon.hpp>` adds the default policies
/// and the `sekuire::beacon` typedef.

#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/detail/auth.hpp>
#include <sekuire/detail/pacing.hpp>
#include <sekuire/env.hpp>
#include <sekuire/error.hpp>
#include <sekuire/file_store.hpp>
#include <sekuire/fwd.hpp>
#include <sekuire/limits.hpp>
#include <sekuire/log.hpp>
#include <sekuire/mask.hpp>
#include <sekuire/platform.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/retry.hpp>
#include <sekuire/time.hpp>
#include <sekuire/transport.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
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
    bool is_running = false;
    beacon_state state = beacon_state::idle;
    std::string installation_id;
    /// The runtime token, masked (`mask_token()`).
    std::string runtime_token;
    std::optional<wall_time_point> runtime_token_expires_at;
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
    bool lease_expired = false;
    /// Set by pause and resume commands.
    bool paused = false;
    /// Set by a terminate command (the owner decides how to shut down).
    bool terminate_requested = false;
    bool revoked = false;
    std::string revoked_reason;
    /// The time the backend grants for a graceful shutdown after a revocation.
    std::optional<std::chrono::milliseconds> shutdown_timeout;
    /// The last error, readable; never holds a token.
    std::string last_error;
    error_code last_error_code;
    /// Successful heartbeats since start.
    std::uint64_t heartbeats_sent = 0;
    std::string active_policy_hash;
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
    /// Base URL of the Sekuire API (may carry a path prefix).
    std::string api_base_url{protocol::default_api_url};
    /// The agent's Sekuire id.
    std::string agent_id;
    /// One-time install token (`skt_...`) for the first bootstrap.
    std::string install_token;
    /// API key (`sk_live_...`) and workspace id for the recovery bootstrap.
    std::string api_key;
    std::string workspace_id;
    /// Interval between heartbeats; the backend may override it.
    std::chrono::seconds heartbeat_interval{protocol::timing::default_heartbeat_interval};
    /// Capabilities reported with the bootstrap and every heartbeat.
    std::vector<std::string> capabilities;

    /// Recovery credentials from an earlier bootstrap (ephemeral compute restarts). When
    /// none is given, they are taken from `environment` (the seed's restart story:
    /// `SEKUIRE_INSTALLATION_ID` with `SEKUIRE_REFRESH_TOKEN` and/or `SEKUIRE_RUNTIME_TOKEN`).
    std::string installation_id;
    std::string refresh_token;
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

/// Builds a default policy from the options when the policy can be built from them.
template <class Transport>
Transport make_transport(const std::string& base_url, const transport_options& o) {
    if constexpr (std::is_constructible<Transport, std::string, transport_options>::value) {
        return Transport(base_url, o);
    } else {
        return Transport();
    }
}

template <class Store>
Store make_store(const std::string& credentials_file) {
    if constexpr (std::is_same<Store, credential_store>::value) {
        if (!credentials_file.empty()) return credential_store(file_store(credentials_file));
        return credential_store();
    } else if constexpr (std::is_constructible<Store, std::string>::value) {
        return credentials_file.empty() ? Store() : Store(credentials_file);
    } else {
        return Store();
    }
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

/** The Beacon: bootstraps an installation, keeps its lease alive with heartbeats,
    refreshes its runtime token, and obeys the kill switch and commands.

    @tparam Transport a Transport (`<sekuire/transport.hpp>`)
    @tparam Clock a Clock (`<sekuire/clock.hpp>`)
    @tparam CredentialStore a CredentialStore (`<sekuire/credential_store.hpp>`)
    @tparam PlatformProbe a PlatformProbe (`<sekuire/platform.hpp>`)

    The core is `step()`: it does what is due now and returns the next deadline. `start()`
    runs it on one background thread; a program with its own event loop calls it itself.

    @par Thread Safety
    `get_status()`, `is_connected()`, `get_installation_credentials()`,
    `apply_command()`, `apply_revocation()` and `set_reported_status()` are safe from any
    thread at any time. `start()`, `stop()` and `step()` must not run concurrently with each
    other (`step()` is called by the background thread after `start()`).
*/
template <class Transport, class Clock, class CredentialStore, class PlatformProbe>
class basic_beacon {
    static_assert(check_transport<Transport>::value, "");
    static_assert(check_clock<Clock>::value, "");
    static_assert(check_credential_store<CredentialStore>::value, "");
    static_assert(check_platform_probe<PlatformProbe>::value, "");

public:
    using transport_type = Transport;
    using clock_type = Clock;
    using credential_store_type = CredentialStore;
    using platform_probe_type = PlatformProbe;

    /** A beacon whose policies are built from the options: the transport from
        `api_base_url` and `transport` (when it can be built from them), the store from
        `credentials_file` (a `file_store` when set), the clock and probe by default.
        Throws `sekuire::error` when the base URL is refused by the transport.
        (A template only so that an explicit instantiation needs no default-constructible
        policies.)
    */
    template <class Options = beacon_options, class = std::enable_if_t<std::is_convertible<Options, beacon_options>::value>>
    explicit basic_beacon(Options options) : basic_beacon(prepared{}, detail::prepare(std::move(options))) {}

    /// A beacon over the given policies (copies of handles share state with the caller's).
    basic_beacon(beacon_options options, Transport transport, Clock clock = Clock(),
                 CredentialStore store = CredentialStore(), PlatformProbe probe = PlatformProbe())
        : options_(detail::prepare(std::move(options))), transport_(std::move(transport)), clock_(std::move(clock)),
          store_(std::move(store)), probe_(std::move(probe)), platform_(probe_.probe()),
          random_(options_.random ? options_.random : default_random_source()) {
        interval_ = options_.heartbeat_interval;
        auth_backoff_.set_options(options_.backoff);
        refresh_backoff_.set_options(options_.backoff);
        status_.heartbeat_interval = std::chrono::duration_cast<std::chrono::seconds>(interval_);
    }

    basic_beacon(const basic_beacon&) = delete;
    basic_beacon& operator=(const basic_beacon&) = delete;

private:
    struct prepared {};
    // Options already checked: the policies are built from them only once they are valid.
    // (A template, as the options-only constructor is.)
    template <class Options>
    basic_beacon(prepared, const Options& options)
        : basic_beacon(options, detail::make_transport<Transport>(options.api_base_url, options.transport), Clock(),
                       detail::make_store<CredentialStore>(options.credentials_file), PlatformProbe()) {}

public:
    /// Stops a running beacon (see `stop()`).
    ~basic_beacon() { stop(); }

    /** Starts the background thread and waits (at most `start_timeout`) for the first
        pass of the auth chain: bootstrap or recovery and the registration heartbeat.

        A transient failure does not fall through to the next step of the chain: the beacon
        reports degraded mode and keeps retrying in the background. Check `get_status()`.
        Fails with `errc::already_started` when running.
    */
    void start(error_code& ec) {
        ec = {};
        {
            std::lock_guard<std::mutex> lock(loop_mutex_);
            if (thread_.joinable() || stopped_) {
                ec = errc::already_started;
                return;
            }
            stop_requested_ = false;
            first_pass_done_ = false;
        }
        running_ = true;
        {
            std::lock_guard<std::mutex> lock(status_mutex_);
            status_.is_running = true;
        }
        thread_ = std::thread([this] { run(); });
        std::unique_lock<std::mutex> lock(loop_mutex_);
        started_cv_.wait_for(lock, options_.start_timeout, [&] { return first_pass_done_; });
    }

    /// As `start(error_code&)`, throwing `sekuire::error`.
    void start() {
        error_code ec;
        start(ec);
        detail::throw_if(ec, "beacon start");
    }

    /** Stops the beacon: stops the background thread, then sends one final heartbeat with
        status `stopped` (bounded by `stop_timeout`; not after a revocation) and returns.
        Does nothing when already stopped. Never throws.

        Called from a callback that the beacon runs (on its thread, or inside `step()`), it
        cannot wait for itself: it only asks the thread to end, and the final heartbeat is
        sent by the next `stop()` from elsewhere, at the latest by the destructor.
    */
    void stop() noexcept {
        try {
            if (stepping_thread_.load() == std::this_thread::get_id()) {
                {
                    std::lock_guard<std::mutex> lock(loop_mutex_);
                    stop_requested_ = true;
                }
                loop_cv_.notify_all();
                log(log_level::info, "stop requested from a beacon callback; it completes when stop() is called "
                                     "from another thread or the beacon is destroyed");
                return;
            }
            if (stopped_.exchange(true)) return;
            const signature before = current_signature();
            {
                std::lock_guard<std::mutex> lock(loop_mutex_);
                stop_requested_ = true;
            }
            loop_cv_.notify_all();
            if (thread_.joinable()) thread_.join();
            // The thread has ended: the stepping state is ours now. A revocation applied
            // from elsewhere and not stepped yet takes effect first (no final heartbeat).
            take_pending_revocation();
            if (phase_ == phase::running && !revoked_) send_final_heartbeat();
            if (!revoked_) phase_ = phase::stopped; // a revoked beacon stays shown as revoked
            running_ = false;
            publish();
            notify_if_changed(before);
        } catch (...) {
            // stop() must not throw (it runs in the destructor); the status keeps the error.
        }
    }

    /** Does what is due now and returns the next deadline (steady time).

        Runs the auth chain, heartbeats, token refreshes and lease checks whose time has
        come; several in a row when they are due together (the auth chain and the
        registration heartbeat run in one call). Never throws; failures go to the status
        and the logger. Returns `steady_time_point::max()` when nothing is scheduled
        (degraded for good, revoked or stopped).
    */
    steady_time_point step() noexcept {
        const std::thread::id outer = stepping_thread_.exchange(std::this_thread::get_id());
        struct restore_stepping {
            std::atomic<std::thread::id>& slot;
            std::thread::id value;
            ~restore_stepping() { slot.store(value); }
        } restore{stepping_thread_, outer};
        try {
            const signature before = current_signature();
            steady_time_point next = steady_time_point::max();
            for (int i = 0; i < 16; ++i) {
                // A stop asked for meanwhile ends the run of due steps: each may be a request
                // as long as the request timeout, and stop() waits for this thread.
                if (i > 0 && stop_asked()) break;
                next = step_once(clock_.steady_now());
                if (next > clock_.steady_now()) break;
            }
            publish();
            notify_if_changed(before);
            return next;
        } catch (const std::exception& e) {
            record_error(errc::invalid_value, std::string("internal error: ") + e.what());
        } catch (...) {
            record_error(errc::invalid_value, "internal error");
        }
        return clock_.steady_now() + std::chrono::seconds(1);
    }

    /// A snapshot of the status. Thread-safe.
    beacon_status get_status() const {
        std::lock_guard<std::mutex> lock(status_mutex_);
        return status_;
    }

    /// True when authenticated, holding a lease, and not revoked. Thread-safe.
    bool is_connected() const {
        std::lock_guard<std::mutex> lock(status_mutex_);
        return status_.state == beacon_state::connected;
    }

    /** The credentials to persist for ephemeral compute (installation id, refresh token and
        the current runtime token), or nullopt before a bootstrap. These are the real
        tokens: store them as secrets. Thread-safe.
    */
    std::optional<installation_credentials> get_installation_credentials() {
        error_code ec;
        auto c = store_.load(ec);
        if (ec || !c || c->installation_id.empty()) return std::nullopt;
        return c;
    }

    /** Applies a command that arrived another way (a worker's task stream): updates the
        status and calls `on_command` unless this command id was seen already. Thread-safe.
    */
    void apply_command(const protocol::command& cmd) {
        if (accept_command(cmd, false)) {
            // Only the command fields here: the rest of the status belongs to the stepping
            // thread, which the wake-up makes publish it.
            publish_commands();
            wake();
        }
    }

    /// Applies a revocation that arrived another way (a `revoked` stream event): acted on
    /// at the next step, which is made due at once. Thread-safe.
    void apply_revocation(const protocol::revocation& r) {
        {
            std::lock_guard<std::mutex> lock(command_mutex_);
            if (!pending_revocation_) pending_revocation_ = r;
        }
        wake();
    }

    /// Overrides the `status` sent with heartbeats (e.g. `draining`); nullopt restores the
    /// automatic choice (healthy, paused or degraded). Thread-safe.
    void set_reported_status(std::optional<protocol::heartbeat_status> s) {
        std::lock_guard<std::mutex> lock(command_mutex_);
        reported_status_ = s;
    }

    /// The options the beacon was built with.
    const beacon_options& options() const noexcept { return options_; }
    /// The platform sent with requests (probed once at construction).
    const platform_info& platform() const noexcept { return platform_; }
    Transport& transport() noexcept { return transport_; }
    Clock& clock() noexcept { return clock_; }
    CredentialStore& credential_store() noexcept { return store_; }

private:
    enum class phase { initial, auth, running, degraded, revoked, stopped };
    enum class stage { session, bootstrap, recover };

    struct signature {
        beacon_state state;
        bool degraded, paused, terminate, revoked, lease_expired, failing;
        std::string installation_id;
        bool operator!=(const signature& o) const {
            return state != o.state || degraded != o.degraded || paused != o.paused || terminate != o.terminate ||
                   revoked != o.revoked || lease_expired != o.lease_expired || failing != o.failing ||
                   installation_id != o.installation_id;
        }
    };

    // ---- the background thread --------------------------------------------------------

    void run() noexcept {
        for (;;) {
            const steady_time_point next = step();
            // The first pass is done once the auth chain was tried (not while the startup
            // jitter still holds it back).
            const bool first_pass = phase_ != phase::initial && !(phase_ == phase::auth && !attempted_);
            std::unique_lock<std::mutex> lock(loop_mutex_);
            if (!first_pass_done_ && first_pass) {
                first_pass_done_ = true;
                started_cv_.notify_all();
            }
            if (stop_requested_) break;
            try {
                clock_.wait_until(lock, loop_cv_, next, [this] { return stop_requested_ || wake_; });
            } catch (...) {
                // A clock that throws cannot be waited on; stop rather than spin.
                break;
            }
            wake_ = false;
            if (stop_requested_) break;
        }
        std::lock_guard<std::mutex> lock(loop_mutex_);
        first_pass_done_ = true;
        started_cv_.notify_all();
    }

    bool stop_asked() {
        std::lock_guard<std::mutex> lock(loop_mutex_);
        return stop_requested_;
    }

    void wake() {
        {
            std::lock_guard<std::mutex> lock(loop_mutex_);
            wake_ = true;
        }
        loop_cv_.notify_all();
    }

    // ---- stepping ---------------------------------------------------------------------

    steady_time_point step_once(steady_time_point now) {
        take_pending_revocation();
        switch (phase_) {
        case phase::initial:
            if (stopped_) {
                phase_ = phase::stopped;
                return steady_time_point::max();
            }
            running_ = true;
            begin(now);
            return now;
        case phase::auth:
            if (now < next_at_) return next_at_;
            auth_attempt(now);
            return phase_ == phase::auth ? next_at_ : now;
        case phase::running: return running_step(now);
        case phase::degraded:
        case phase::revoked:
        case phase::stopped: return steady_time_point::max();
        }
        return steady_time_point::max();
    }

    void begin(steady_time_point now) {
        started_at_ = now;
        phase_ = phase::auth;
        // A fleet restarted together spreads its first bootstraps and registrations.
        next_at_ = now + std::chrono::milliseconds(static_cast<std::int64_t>(
                             detail::clamp_unit(random_()) * static_cast<double>(options_.startup_jitter.count())));
        error_code ec;
        std::optional<installation_credentials> stored = store_.load(ec);
        if (ec && ec != errc::store_corrupt) {
            // Perhaps a passing I/O error: the session step reads it again, with backoff.
            // Never bootstrap past stored credentials that could not be read.
            record_error(ec, "the credential store cannot be read: " + ec.message());
            stage_ = stage::session;
            return;
        }
        if (ec) {
            // Nothing in it can be used: authenticate without it (the next save keeps the
            // corrupt file aside).
            record_error(ec, "the stored credentials are unreadable (" + ec.message() + "); authenticating without them");
            stored.reset();
        }
        if ((!stored || stored->installation_id.empty()) && !options_.installation_id.empty() &&
            (!options_.refresh_token.empty() || !options_.runtime_token.empty())) {
            installation_credentials c;
            c.installation_id = options_.installation_id;
            c.refresh_token = options_.refresh_token;
            c.runtime_token = options_.runtime_token;
            store_.save(c, ec);
            if (ec) record_error(ec, "the credential store cannot be written: " + ec.message());
            stored = c;
            recovered_from_env_ = options_.recovered_from_env;
            log(log_level::info, "recovering installation " + c.installation_id + " from " +
                                     (options_.recovered_from_env ? "the environment" : "the options"));
        }
        creds_ = stored;
        stage_ = (stored && !stored->installation_id.empty()) ? stage::session : stage::bootstrap;
    }

    void auth_attempt(steady_time_point now) {
        attempted_ = true;
        // Permanent failures walk down the chain at once; transient ones wait for a retry.
        for (int guard = 0; guard < 4 && phase_ == phase::auth && now >= next_at_; ++guard) {
            switch (stage_) {
            case stage::session: session_attempt(now); break;
            case stage::bootstrap: bootstrap_attempt(now); break;
            case stage::recover: recover_attempt(now); break;
            }
        }
    }

    void session_attempt(steady_time_point now) {
        error_code ec;
        std::optional<installation_credentials> c = store_.load(ec);
        if (ec && ec != errc::store_corrupt) {
            auth_retry(now, ec, std::nullopt, "the credential store cannot be read");
            return;
        }
        if (!ec) {
            error_code save_ec;
            c = unsaved_.reconcile(store_, std::move(c), save_ec);
        }
        if (ec || !c || c->installation_id.empty()) {
            stage_ = stage::bootstrap;
            return;
        }
        creds_ = c;
        if (!detail::token_expired(*c, backend_now())) {
            // The registration heartbeat validates a present runtime token.
            go_running(now);
            return;
        }
        const detail::refresh_result r = refresh(c->runtime_token);
        switch (r.status) {
        case detail::refresh_status::refreshed: go_running(now); return;
        case detail::refresh_status::transient:
        case detail::refresh_status::store_failed: auth_retry(now, r.error, r.retry_after); return;
        case detail::refresh_status::revoked: revoke({"installation revoked (refresh refused)", std::nullopt}); return;
        case detail::refresh_status::gone: drop_credentials("the backend does not know the installation"); break;
        case detail::refresh_status::rejected:
        case detail::refresh_status::no_refresh_token:
            record_error(r.error ? r.error : error_code(errc::invalid_refresh_token),
                         "the recovery credentials were refused: " +
                             (r.error ? r.error.message() : std::string("no refresh token")));
            break;
        }
        stage_ = stage::bootstrap;
    }

    void bootstrap_attempt(steady_time_point now) {
        if (options_.install_token.empty() || install_token_spent_) {
            stage_ = stage::recover;
            return;
        }
        if (options_.agent_id.empty()) {
            record_error(errc::invalid_option, "an agent id is required to bootstrap with an install token");
            install_token_spent_ = true;
            stage_ = stage::recover;
            return;
        }
        if (!store_writable(now)) return;
        protocol::bootstrap_request body;
        body.install_token = options_.install_token;
        body.agent_id = options_.agent_id;
        body.capabilities = options_.capabilities;
        body.platform = platform_;
        const auto r = detail::bootstrap_install(transport_, body, options_.request_timeout, backend_now());
        observe(r.server_time);
        finish_bootstrap(now, r, "install token");
        if (phase_ == phase::auth && r.status != detail::bootstrap_status::transient) {
            install_token_spent_ = true;
            stage_ = stage::recover;
            next_at_ = now;
        }
    }

    void recover_attempt(steady_time_point now) {
        if (options_.api_key.empty() || options_.workspace_id.empty() || options_.agent_id.empty()) {
            enter_degraded(last_error_code_ ? last_error_code_ : error_code(errc::no_credentials),
                           last_error_.empty() ? error_code(errc::no_credentials).message() : last_error_);
            return;
        }
        if (!store_writable(now)) return;
        protocol::recover_request body;
        body.workspace_id = options_.workspace_id;
        body.agent_id = options_.agent_id;
        body.capabilities = options_.capabilities;
        body.platform = platform_;
        const auto r =
            detail::bootstrap_recover(transport_, body, options_.api_key, options_.request_timeout, backend_now());
        observe(r.server_time);
        finish_bootstrap(now, r, "recovery bootstrap");
        if (phase_ == phase::auth && r.status != detail::bootstrap_status::transient)
            enter_degraded(last_error_code_, last_error_);
    }

    // A bootstrap creates credentials that must be kept (an install token is single-use):
    // never start one the store could not save. A store that cannot be written now is
    // retried with backoff (a volume not mounted yet, a directory not created yet).
    bool store_writable(steady_time_point now) {
        error_code ec;
        detail::check_writable(store_, ec);
        if (!ec) return true;
        const std::string where = detail::describe_store(store_);
        auth_retry(now, ec, std::nullopt,
                   ("the credential store" + (where.empty() ? std::string() : " (" + where + ")") +
                    " cannot be written, so the bootstrap was not attempted")
                       .c_str());
        return false;
    }

    void finish_bootstrap(steady_time_point now, const detail::bootstrap_result& r, const char* what) {
        switch (r.status) {
        case detail::bootstrap_status::ok: {
            const installation_credentials c =
                detail::credentials_from(r.response, backend_now());
            error_code ec;
            store_.save(c, ec);
            if (ec) record_error(ec, "the credential store cannot be written: " + ec.message());
            creds_ = c;
            recovered_from_env_ = false; // a new installation: nothing recovered
            if (r.response.deployment_url) deployment_url_ = *r.response.deployment_url;
            if (r.response.heartbeat_interval_seconds) {
                const auto s = std::min<std::int64_t>(*r.response.heartbeat_interval_seconds, 86400);
                interval_ = std::chrono::seconds(std::max<std::int64_t>(s, 1));
            }
            set_lease(now, r.response.lease_expires_at);
            log(log_level::info, std::string(what) + ": installation " + c.installation_id + " (runtime token " +
                                     mask_token(c.runtime_token) + ")");
            go_running(now);
            return;
        }
        case detail::bootstrap_status::transient: auth_retry(now, r.error, r.retry_after); return;
        case detail::bootstrap_status::revoked: revoke({"installation revoked", std::nullopt}); return;
        case detail::bootstrap_status::permanent:
            record_error(r.error, std::string(what) + " failed: " + r.error.message() +
                                      (r.error_message.empty() ? std::string() : " (" + r.error_message + ")"));
            return;
        }
    }

    void auth_retry(steady_time_point now, const error_code& ec,
                    const std::optional<std::chrono::milliseconds>& retry_after,
                    const char* what = "authentication failed") {
        now = std::max(now, clock_.steady_now()); // the backoff runs from the failure, not the attempt
        auto delay = auth_backoff_.next(random_);
        if (retry_after) delay = std::max(delay, *retry_after);
        next_at_ = now + delay;
        degraded_ = true;
        record_error(ec, std::string(what) + ", retrying in " + std::to_string(delay.count()) + " ms: " + ec.message());
    }

    void enter_degraded(const error_code& ec, const std::string& why) {
        phase_ = phase::degraded;
        degraded_ = true;
        record_error(ec ? ec : error_code(errc::no_credentials), "degraded mode: " + why);
    }

    void go_running(steady_time_point now) {
        phase_ = phase::running;
        registered_ = false;
        next_beat_at_ = now;
    }

    // The credentials are dead: authenticate again from the bootstrap step, paced by the
    // auth backoff (reset by a successful heartbeat), so that a backend refusing each new
    // installation in turn cannot drive a tight loop of bootstraps.
    void walk_chain_again(steady_time_point now) {
        now = std::max(now, clock_.steady_now()); // the backoff runs from the failure, not the attempt
        phase_ = phase::auth;
        stage_ = stage::bootstrap;
        next_at_ = now + auth_backoff_.next(random_);
    }

    void drop_credentials(const std::string& why) {
        error_code ec;
        store_.clear(ec);
        if (ec) log(log_level::error, "the stored credentials could not be removed: " + ec.message());
        creds_.reset();
        recovered_from_env_ = false;
        record_error(errc::installation_not_found, why + "; the stored credentials were dropped");
    }

    steady_time_point running_step(steady_time_point now) {
        if (lease_deadline_ && !lease_expired_ && now >= *lease_deadline_) {
            lease_expired_ = true;
            log(log_level::warning, "lease expired before it was renewed");
        }
        error_code ec;
        std::optional<installation_credentials> c = store_.load(ec);
        if (ec) {
            log(log_level::warning, "the credential store cannot be read (" + ec.message() +
                                        "); going on with the credentials in memory");
        } else {
            error_code save_ec;
            c = unsaved_.reconcile(store_, std::move(c), save_ec);
            if (save_ec)
                log(log_level::error, "the refreshed credentials still cannot be saved (" + save_ec.message() +
                                          "); they stay in memory");
            if (c && !c->installation_id.empty()) {
                creds_ = c;
            } else if (!creds_ || creds_->installation_id.empty()) {
                phase_ = phase::auth;
                stage_ = stage::bootstrap;
                next_at_ = now;
                return now;
            } else {
                // Emptied by another holder of the store (its revocation or its 404, or an
                // operator). The backend decides what became of the installation, not the
                // store: put the credentials back and ask it at once, rather than bootstrap
                // a new installation past a kill switch.
                error_code restore_ec;
                store_.save(*creds_, restore_ec);
                if (checked_after_clear_ != creds_->installation_id) {
                    checked_after_clear_ = creds_->installation_id;
                    next_beat_at_ = std::min(next_beat_at_, now);
                    log(log_level::warning, "the credential store was emptied by another holder; checking installation " +
                                                creds_->installation_id + " with the backend" +
                                                (restore_ec ? " (the store cannot be written: " + restore_ec.message() + ")"
                                                            : std::string()));
                }
            }
        }
        steady_time_point next = next_beat_at_;
        if (creds_ && detail::token_needs_refresh(*creds_, backend_now()) && !creds_->refresh_token.empty()) {
            if (now >= refresh_retry_at_) {
                const detail::refresh_result r = refresh(creds_->runtime_token);
                if (!handle_refresh_result(now, r)) return phase_ == phase::running ? now : next_at_;
            }
            if (creds_ && detail::token_expired(*creds_, backend_now()) && creds_->runtime_token != unjudged_token_) {
                // Never call with an expired token: wait for the refresh to succeed.
                return std::min(std::max(refresh_retry_at_, now + std::chrono::milliseconds(1)), lease_or_max());
            }
            next = std::min(next, refresh_retry_at_);
        }
        if (now >= next_beat_at_) {
            send_heartbeat(now);
            if (phase_ != phase::running) return phase_ == phase::auth ? next_at_ : steady_time_point::max();
        }
        next = std::min(next_beat_at_, lease_or_max());
        if (const auto due = creds_ ? detail::refresh_due_at(*creds_) : std::nullopt) {
            const std::int64_t until_ms = detail::wall_ms(*due) - detail::wall_ms(backend_now());
            if (until_ms > 0)
                next = std::min(next, now + std::chrono::milliseconds(std::min<std::int64_t>(until_ms, 24LL * 3600 * 1000)));
            else
                next = std::min(next, std::max(refresh_retry_at_, now + std::chrono::milliseconds(1)));
        }
        return next;
    }

    steady_time_point lease_or_max() const {
        return (lease_deadline_ && !lease_expired_) ? *lease_deadline_ : steady_time_point::max();
    }

    // Returns false when the beacon left the running phase.
    bool handle_refresh_result(steady_time_point now, const detail::refresh_result& r) {
        switch (r.status) {
        case detail::refresh_status::refreshed:
            if (r.credentials) creds_ = r.credentials;
            if (r.called) log(log_level::info, "runtime token refreshed (" + mask_token(creds_->runtime_token) + ")");
            if (r.called && creds_ && detail::token_needs_refresh(*creds_, backend_now())) {
                // Due again the moment it was issued: its expiry is in the past of the
                // backend's own clock. Refreshing at once would repeat for ever; use the
                // token (the backend decides) and try again after a backoff.
                const auto delay = refresh_backoff_.next(random_);
                refresh_retry_at_ = now + delay;
                unjudged_token_ = creds_->runtime_token;
                record_error(errc::invalid_value,
                             "the backend issued a runtime token already due for refresh (expires " +
                                 (creds_->runtime_token_expires_at ? format_rfc3339(*creds_->runtime_token_expires_at)
                                                                   : std::string("?")) +
                                 "); using it, next refresh in " + std::to_string(delay.count()) + " ms");
            } else {
                refresh_backoff_.reset();
                refresh_retry_at_ = steady_time_point{};
            }
            return true;
        case detail::refresh_status::transient:
        case detail::refresh_status::store_failed: {
            auto delay = refresh_backoff_.next(random_);
            if (r.retry_after) delay = std::max(delay, *r.retry_after);
            refresh_retry_at_ = std::max(now, clock_.steady_now()) + delay; // from the failure
            record_error(r.error, "token refresh failed, retrying in " + std::to_string(delay.count()) +
                                      " ms: " + r.error.message());
            return true;
        }
        case detail::refresh_status::revoked: revoke({"installation revoked (refresh refused)", std::nullopt}); return false;
        case detail::refresh_status::gone:
            drop_credentials("the backend does not know the installation");
            walk_chain_again(now);
            return false;
        case detail::refresh_status::rejected:
        case detail::refresh_status::no_refresh_token:
            record_error(r.error, "the refresh token was refused: " + r.error.message());
            if (creds_ && detail::token_expired(*creds_, backend_now())) {
                walk_chain_again(now);
                return false;
            }
            // The current token still works until it expires; try again later.
            refresh_retry_at_ = now + std::max<std::chrono::milliseconds>(interval_, std::chrono::seconds(60));
            return true;
        }
        return true;
    }

    detail::refresh_result refresh(const std::string& stale_token) {
        detail::refresh_result r = detail::refresh_single_flight(transport_, store_, stale_token, backend_now(),
                                                                 options_.request_timeout, &unsaved_);
        observe(r.server_time);
        if (r.persist_error)
            log(log_level::error, "the refreshed credentials could not be saved (" + r.persist_error.message() +
                                      "); they are kept in memory and saved again at each step");
        return r;
    }

    /// The backend's clock (token expiry and directed times are in it).
    wall_time_point backend_now() { return skew_.now(clock_.wall_now()); }

    void observe(const std::optional<wall_time_point>& server_time) {
        if (skew_.observe(server_time, clock_.wall_now()))
            log(log_level::warning, skew_.describe_offset() + "; token expiry is judged on the backend's clock");
    }

    protocol::heartbeat_status reported_status() {
        std::lock_guard<std::mutex> lock(command_mutex_);
        if (reported_status_) return *reported_status_;
        if (paused_) return protocol::heartbeat_status::paused;
        if (failed_ > 0 || lease_expired_) return protocol::heartbeat_status::degraded;
        return protocol::heartbeat_status::healthy;
    }

    http_request heartbeat_request(protocol::heartbeat_status status, steady_time_point now,
                                   std::chrono::milliseconds timeout) {
        protocol::heartbeat_request body;
        body.status = status;
        body.uptime_seconds = std::chrono::duration_cast<std::chrono::seconds>(now - started_at_).count();
        body.sequence = ++sequence_;
        body.platform = platform_;
        if (options_.metrics) {
            try {
                body.metrics = options_.metrics();
            } catch (...) {
                log(log_level::warning, "the metrics callback threw; sending zero metrics");
            }
        }
        body.capabilities = options_.capabilities;
        http_request req = detail::make_request(http_method::post, protocol::path::heartbeat(creds_->installation_id),
                                                protocol::encode(body), timeout);
        detail::set_bearer(req, creds_->runtime_token);
        return req;
    }

    void send_heartbeat(steady_time_point now) {
        if (!creds_ || creds_->runtime_token.empty()) {
            phase_ = phase::auth;
            stage_ = stage::session;
            next_at_ = now;
            return;
        }
        const protocol::heartbeat_status status = reported_status();
        http_request req = heartbeat_request(status, now, options_.request_timeout);
        detail::http_outcome out = detail::perform(transport_, req, true, true, backend_now());
        observe(out.server_time);
        if (out.cls == protocol::status_class::token_rejected) {
            // One refresh (single-flight with the other holders of the store), one retry.
            const std::string rejected = creds_->runtime_token;
            const detail::refresh_result r = refresh(rejected);
            if (r.status == detail::refresh_status::rejected || r.status == detail::refresh_status::no_refresh_token) {
                // The backend refused the runtime token and the refresh token: these
                // credentials are dead (protocol.md section 3): walk down the chain.
                ++failed_;
                forget_runtime_token(rejected);
                record_error(r.error ? r.error : error_code(errc::invalid_refresh_token),
                             "the runtime token was rejected and the refresh token refused (" +
                                 (r.error ? r.error.message() : std::string("no refresh token")) +
                                 "); authenticating again");
                walk_chain_again(now);
                return;
            }
            if (r.status != detail::refresh_status::refreshed) {
                if (!handle_refresh_result(now, r)) return;
                heartbeat_failed(now, r.error ? r.error : out.error, r.retry_after);
                return;
            }
            if (r.credentials) creds_ = r.credentials;
            detail::set_bearer(req, creds_->runtime_token);
            out = detail::perform(transport_, req, true, true, backend_now());
            observe(out.server_time);
            if (out.cls == protocol::status_class::token_rejected) {
                // A second 401 is an auth failure: drop the runtime token and walk the chain
                // again from the session step, after a backoff.
                forget_runtime_token(creds_->runtime_token);
                phase_ = phase::auth;
                stage_ = stage::session;
                ++failed_;
                auth_retry(now, out.error, out.retry_after);
                return;
            }
        }
        switch (out.cls) {
        case protocol::status_class::ok: heartbeat_succeeded(now, out); return;
        case protocol::status_class::revoked:
            revoke({protocol::error_message_of(out.response.body), std::nullopt});
            return;
        case protocol::status_class::installation_gone:
            drop_credentials("the backend does not know the installation");
            walk_chain_again(now);
            return;
        case protocol::status_class::transient:
        case protocol::status_class::token_rejected: heartbeat_failed(now, out.error, out.retry_after); return;
        case protocol::status_class::permanent: {
            // No blind retry: try again at the regular interval.
            ++failed_;
            record_error(out.error, "heartbeat refused: " + out.error.message() + describe_body(out));
            next_beat_at_ = now + interval_;
            return;
        }
        }
    }

    void heartbeat_succeeded(steady_time_point now, const detail::http_outcome& out) {
        protocol::heartbeat_response r;
        protocol::decode_error derr;
        if (!protocol::decode(out.response.body, r, derr)) {
            heartbeat_failed(now, derr.code, std::nullopt, "malformed heartbeat response: " + derr.message());
            return;
        }
        if (r.revoked) {
            revoke(*r.revoked);
            return;
        }
        if (r.lease_renewed && !*r.lease_renewed) {
            heartbeat_failed(now, errc::transient_http, std::nullopt, "the backend did not renew the lease");
            return;
        }
        if (r.refreshed_token) {
            // Merged into the store under its refresh lock: a rotation another holder saved
            // while this heartbeat was on its way must survive.
            const detail::adopt_result a = detail::adopt_runtime_token(
                store_, *creds_, *r.refreshed_token, backend_now());
            if (a.error) {
                // Kept in memory and saved again at each step until the store takes it.
                log(log_level::error, "the refreshed token could not be persisted yet: " + a.error.message());
                if (a.credentials) unsaved_.remember(*a.credentials);
            }
            if (a.credentials) creds_ = a.credentials;
            if (a.adopted)
                log(log_level::info, "runtime token replaced by the heartbeat (" + mask_token(creds_->runtime_token) + ")");
        }
        checked_after_clear_.clear();
        const bool was_failing = failed_ > 0 || !registered_ || lease_expired_;
        failed_ = 0;
        auth_backoff_.reset();
        registered_ = true;
        degraded_ = false;
        lease_expired_ = false;
        ++heartbeats_;
        last_heartbeat_ = clock_.wall_now();
        clear_error_if_recovered(was_failing);
        set_lease(now, r.lease_expires_at);
        // The backend's directions are in its time, read after observe(): see backend_clock.
        std::optional<std::chrono::milliseconds> directed;
        if (r.next_heartbeat_at)
            directed = detail::pacing::directed_delay(
                std::chrono::milliseconds(detail::wall_ms(*r.next_heartbeat_at) - detail::wall_ms(backend_now())), interval_,
                lease_left(now));
        next_beat_at_ = now + (directed ? *directed : detail::pacing::regular_delay(interval_, random_()));
        if (r.active_policy_hash && *r.active_policy_hash != policy_hash_) {
            policy_hash_ = *r.active_policy_hash;
            detail::invoke_callback(options_.on_policy_hash, options_.logger, "on_policy_hash", policy_hash_);
        }
        if (r.command) accept_command(*r.command);
    }

    void heartbeat_failed(steady_time_point now, const error_code& ec,
                          const std::optional<std::chrono::milliseconds>& retry_after, std::string what = {}) {
        now = std::max(now, clock_.steady_now()); // the backoff runs from the failure, not the attempt
        ++failed_;
        // Backs off over several intervals (fewer heartbeats while the backend struggles),
        // a Retry-After is a minimum, and the lease bounds both (docs/protocol.md).
        const std::chrono::milliseconds delay = detail::pacing::heartbeat_retry_delay(
            failed_, interval_, random_(), options_.backoff.min_fraction, retry_after, lease_left(now),
            options_.request_timeout);
        next_beat_at_ = now + delay;
        if (!registered_) degraded_ = true;
        if (what.empty()) what = "heartbeat failed: " + ec.message();
        record_error(ec, what + " (retry in " + std::to_string(delay.count()) + " ms)");
    }

    // What is left of the lease at `now`; nullopt when none is known or it was lost.
    std::optional<std::chrono::milliseconds> lease_left(steady_time_point now) const {
        if (!lease_deadline_ || lease_expired_ || *lease_deadline_ <= now) return std::nullopt;
        return std::chrono::duration_cast<std::chrono::milliseconds>(*lease_deadline_ - now);
    }

    void set_lease(steady_time_point now, std::optional<wall_time_point> expires) {
        lease_expires_at_ = expires;
        std::optional<std::chrono::milliseconds> d;
        if (expires)
            d = detail::delay_until(*expires, std::nullopt, backend_now(), std::chrono::milliseconds(std::chrono::hours(24)));
        if (!d) d = interval_ * protocol::timing::lease_intervals_when_unknown;
        lease_deadline_ = now + *d;
    }

    // Drops a runtime token the backend rejected, from the store (unless another holder
    // replaced it meanwhile) and from memory.
    void forget_runtime_token(const std::string& rejected) {
        error_code ec;
        std::optional<installation_credentials> c = detail::forget_runtime_token(store_, rejected, ec);
        if (ec) log(log_level::error, "the rejected runtime token could not be removed from the store: " + ec.message());
        if (!ec && c && !c->installation_id.empty()) {
            creds_ = c;
        } else if (creds_ && creds_->runtime_token == rejected) {
            creds_->runtime_token.clear();
            creds_->runtime_token_expires_at.reset();
            creds_->runtime_token_issued_at.reset();
        }
    }

    // `heard` is false for a command another part received (and logged) first.
    bool accept_command(const protocol::command& cmd, bool heard = true) {
        {
            std::lock_guard<std::mutex> lock(command_mutex_);
            if (!commands_.first_time(cmd.id)) return false;
            switch (cmd.type) {
            case protocol::command_type::pause: paused_ = true; break;
            case protocol::command_type::resume: paused_ = false; break;
            case protocol::command_type::terminate: terminate_requested_ = true; break;
            case protocol::command_type::unknown: break;
            }
        }
        if (cmd.type == protocol::command_type::unknown) {
            if (heard) log(log_level::warning, "ignoring a command of unknown type '" + cmd.type_name + "'");
            return true;
        }
        if (heard)
            log(log_level::info, std::string("command ") + protocol::to_string(cmd.type) +
                                     (cmd.reason.empty() ? std::string() : ": " + cmd.reason));
        detail::invoke_callback(options_.on_command, options_.logger, "on_command", cmd);
        return true;
    }

    void take_pending_revocation() {
        std::optional<protocol::revocation> r;
        {
            std::lock_guard<std::mutex> lock(command_mutex_);
            r.swap(pending_revocation_);
        }
        if (r && !revoked_) revoke(*r);
    }

    void revoke(const protocol::revocation& r) {
        if (revoked_) return;
        revoked_ = true;
        phase_ = phase::revoked;
        revoked_reason_ = r.reason.empty() ? std::string("installation revoked") : r.reason;
        shutdown_timeout_ = r.shutdown_timeout_ms
                                ? std::clamp(std::chrono::milliseconds(*r.shutdown_timeout_ms), std::chrono::milliseconds(0),
                                             protocol::timing::max_shutdown_timeout)
                                : default_shutdown_timeout;
        error_code ec;
        store_.clear(ec);
        if (ec) log(log_level::error, "the revoked credentials could not be removed: " + ec.message());
        creds_.reset();
        record_error(errc::revoked, "installation revoked: " + revoked_reason_);
        publish();
        revocation_info info{revoked_reason_, *shutdown_timeout_};
        detail::invoke_callback(options_.on_revoked, options_.logger, "on_revoked", info);
    }

    // One attempt, bounded by stop_timeout: no refresh and no retry on a 401.
    void send_final_heartbeat() {
        error_code ec;
        std::optional<installation_credentials> c = store_.load(ec);
        if (!ec && c && creds_ && c->installation_id == creds_->installation_id && !c->runtime_token.empty())
            creds_ = c; // another holder may have refreshed the token
        if (!creds_ || creds_->runtime_token.empty()) return;
        const steady_time_point now = clock_.steady_now();
        http_request req = heartbeat_request(protocol::heartbeat_status::stopped, now, options_.stop_timeout);
        const detail::http_outcome out = detail::perform(transport_, req, true, true, backend_now());
        if (out.ok()) {
            protocol::heartbeat_response r;
            protocol::decode_error derr;
            if (protocol::decode(out.response.body, r, derr) && r.revoked) {
                revoke(*r.revoked);
                return;
            }
            log(log_level::info, "final heartbeat sent");
        } else if (out.cls == protocol::status_class::revoked) {
            revoke({protocol::error_message_of(out.response.body), std::nullopt});
        } else {
            log(log_level::warning, "final heartbeat failed: " + out.error.message() + describe_body(out));
        }
    }

    // ---- status ------------------------------------------------------------------------

    std::string describe_body(const detail::http_outcome& out) const {
        const std::string m = protocol::error_message_of(out.response.body);
        return m.empty() ? std::string() : " (" + m + ")";
    }

    void record_error(const error_code& ec, std::string what) {
        last_error_code_ = ec;
        last_error_ = std::move(what);
        log(ec == errc::revoked ? log_level::error : log_level::warning, last_error_);
    }

    void clear_error_if_recovered(bool was_failing) {
        if (was_failing && !last_error_.empty()) log(log_level::info, "heartbeat succeeded; connection restored");
        last_error_.clear();
        last_error_code_ = {};
    }

    void log(log_level level, const std::string& message) const {
        if (!options_.logger) return;
        try {
            options_.logger(level, message);
        } catch (...) {
        }
    }

    beacon_state derive_state() const {
        switch (phase_) {
        case phase::initial: return beacon_state::idle;
        case phase::auth: return degraded_ ? beacon_state::degraded : beacon_state::authenticating;
        case phase::running:
            if (!registered_) return degraded_ ? beacon_state::degraded : beacon_state::authenticating;
            return lease_expired_ ? beacon_state::lease_expired : beacon_state::connected;
        case phase::degraded: return beacon_state::degraded;
        case phase::revoked: return beacon_state::revoked;
        case phase::stopped: return beacon_state::stopped;
        }
        return beacon_state::idle;
    }

    signature current_signature() const {
        std::lock_guard<std::mutex> lock(status_mutex_);
        return {status_.state,   status_.degraded_mode, status_.paused,
                status_.terminate_requested, status_.revoked, status_.lease_expired,
                status_.failed_heartbeats > 0, status_.installation_id};
    }

    void publish_commands() {
        bool paused = false, terminate = false;
        {
            std::lock_guard<std::mutex> lock(command_mutex_);
            paused = paused_;
            terminate = terminate_requested_;
        }
        std::lock_guard<std::mutex> lock(status_mutex_);
        status_.paused = paused;
        status_.terminate_requested = terminate;
    }

    // Only from the thread that steps (or after it ended).
    void publish() {
        bool paused = false, terminate = false;
        {
            std::lock_guard<std::mutex> lock(command_mutex_);
            paused = paused_;
            terminate = terminate_requested_;
        }
        std::lock_guard<std::mutex> lock(status_mutex_);
        beacon_status& s = status_;
        s.state = derive_state();
        s.is_running = running_ && !stopped_;
        s.installation_id = creds_ ? creds_->installation_id : std::string();
        s.runtime_token = creds_ ? mask_token(creds_->runtime_token) : std::string();
        s.runtime_token_expires_at = creds_ ? creds_->runtime_token_expires_at : std::nullopt;
        s.deployment_url = deployment_url_;
        s.last_heartbeat = last_heartbeat_;
        s.failed_heartbeats = failed_;
        s.degraded_mode = degraded_ || phase_ == phase::degraded;
        s.lease_expires_at = lease_expires_at_;
        s.lease_expired = lease_expired_;
        s.paused = paused;
        s.terminate_requested = terminate;
        s.revoked = revoked_;
        s.revoked_reason = revoked_reason_;
        s.shutdown_timeout = shutdown_timeout_;
        s.last_error = last_error_;
        s.last_error_code = last_error_code_;
        s.heartbeats_sent = heartbeats_;
        s.active_policy_hash = policy_hash_;
        s.recovered_from_env = recovered_from_env_;
        s.heartbeat_interval = std::chrono::duration_cast<std::chrono::seconds>(interval_);
        s.clock_offset = skew_.offset();
    }

    void notify_if_changed(const signature& before) {
        if (!options_.on_status_change) return;
        if (!(current_signature() != before)) return;
        const beacon_status s = get_status();
        detail::invoke_callback(options_.on_status_change, options_.logger, "on_status_change", s);
    }

    // ---- members -----------------------------------------------------------------------

    beacon_options options_;
    Transport transport_;
    Clock clock_;
    CredentialStore store_;
    PlatformProbe probe_;
    platform_info platform_;
    random_source random_;

    // Owned by the thread that steps.
    phase phase_ = phase::initial;
    stage stage_ = stage::session;
    std::optional<installation_credentials> creds_;
    steady_time_point started_at_{};
    steady_time_point next_at_{};
    steady_time_point next_beat_at_{};
    steady_time_point refresh_retry_at_{};
    std::optional<steady_time_point> lease_deadline_;
    std::optional<wall_time_point> lease_expires_at_;
    std::optional<wall_time_point> last_heartbeat_;
    std::chrono::milliseconds interval_{};
    backoff auth_backoff_, refresh_backoff_;
    std::uint32_t failed_ = 0;
    std::uint64_t heartbeats_ = 0;
    std::int64_t sequence_ = 0;
    bool registered_ = false;
    bool degraded_ = false;
    bool lease_expired_ = false;
    bool install_token_spent_ = false;
    bool recovered_from_env_ = false; // the credentials in use came from the environment
    bool attempted_ = false;          // the auth chain was tried once (after the startup jitter)
    bool revoked_ = false;
    std::string revoked_reason_;
    std::optional<std::chrono::milliseconds> shutdown_timeout_;
    std::string deployment_url_;
    std::string policy_hash_;
    std::string last_error_;
    error_code last_error_code_;
    // A token the backend issued already due for refresh: used anyway (see
    // handle_refresh_result).
    std::string unjudged_token_;
    // The installation checked with the backend after another holder emptied the store.
    std::string checked_after_clear_;

    // Shared with other threads.
    detail::backend_clock skew_;
    detail::unsaved_credentials unsaved_;
    std::atomic<std::thread::id> stepping_thread_{};
    mutable std::mutex status_mutex_;
    beacon_status status_;
    std::mutex command_mutex_;
    detail::command_log commands_;
    bool paused_ = false;
    bool terminate_requested_ = false;
    std::optional<protocol::revocation> pending_revocation_;
    std::optional<protocol::heartbeat_status> reported_status_;

    std::mutex loop_mutex_;
    std::condition_variable loop_cv_;
    std::condition_variable started_cv_;
    bool stop_requested_ = false;
    bool wake_ = false;
    bool first_pass_done_ = false;
    std::atomic<bool> running_{false};
    std::atomic<bool> stopped_{false};
    std::thread thread_;
};

} // namespace sekuire

#endif
