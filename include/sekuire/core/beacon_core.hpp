// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_CORE_BEACON_CORE_HPP
#define SEKUIRE_CORE_BEACON_CORE_HPP

/// @file
/// `beacon_core`: the beacon's decisions (the auth chain, heartbeats and their pacing, the
/// lease, token refresh, commands, the kill switch, the final heartbeat) as a plain state
/// machine without I/O. `basic_beacon` and the asynchronous beacon drive it; so can a
/// program with an event loop of its own.
///
/// @par Driving it
/// Feed it the time and what came back; perform what it asks (its `effects()`, in order);
/// wake it at `next_wake()`:
///
/// 1. Before `advance()`, give it the credential store's contents with `store_seen()`
///    whenever they may have changed (a store with `version()` tells when).
/// 2. `advance(now)` does what is due and may ask for effects.
/// 3. Each effect that names an operation has a result to feed back: `send` with
///    `on_response()`, `lock_refresh` with `on_refresh_lock()`, `save` and `clear` with
///    `on_stored()`, `adopt_token` with `on_adopted()`, `forget_token` with `on_forgot()`,
///    `check_writable` with `on_writable()`. At most one such operation is outstanding:
///    until its result comes, the core asks for nothing else that needs one.
/// 4. `log`, `status_changed`, `command`, `revoked` and `policy_hash` are notifications
///    for the user's callbacks; `unlock_refresh` has no result.
/// 5. Optionally, give each sent request back with `reuse_request()` and read the status
///    with `status_into()`: a steady heartbeat cycle then allocates only for what it
///    decodes from the answer.
///
/// @par Thread Safety
/// Distinct objects: Safe. Shared objects: Unsafe (the caller serialises every call).

#include <sekuire/config.hpp>
#include <sekuire/beacon_options.hpp>
#include <sekuire/core/auth_chain.hpp>
#include <sekuire/core/common.hpp>
#include <sekuire/detail/auth.hpp>
#include <sekuire/detail/pacing.hpp>
#include <sekuire/mask.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sekuire {

/// Something a `beacon_core` asks its driver to do, or to tell the user.
struct beacon_effect {
    /// The kinds of effect; each names the fields it uses.
    enum class type : std::uint8_t {
        send,           ///< send `request`; result: `on_response(op, ...)`
        lock_refresh,   ///< take the store's refresh lock without waiting, then load the store; result: `on_refresh_lock(op, ...)`
        unlock_refresh, ///< release the refresh lock taken for the last `lock_refresh`
        save,           ///< save `credentials`; result: `on_stored(op, ec)`
        clear,          ///< clear the store; result: `on_stored(op, ec)`
        adopt_token,    ///< `detail::adopt_runtime_token(store, *credentials, token, when)`; result: `on_adopted(op, ...)`
        forget_token,   ///< `detail::forget_runtime_token(store, text, ec)`; result: `on_forgot(op, ...)`
        check_writable, ///< `detail::check_writable(store, ec)`; result: `on_writable(op, ec, describe_store(store))`
        log,            ///< hand `line` to the logger
        status_changed, ///< call `on_status_change` with `status()`
        command,        ///< call `on_command` with `command`
        revoked,        ///< call `on_revoked` with `revocation`
        policy_hash,    ///< call `on_policy_hash` with `text`
    };
    /// Which effect this is.
    type what = type::log;
    /// The operation to name when feeding its result back (0 for notifications).
    operation_id op = 0;
    /// For `send`: the request to send.
    http_request request;
    /// For `save`: what to save; for `adopt_token`: the credentials the token belongs to.
    std::optional<installation_credentials> credentials;
    /// For `adopt_token`: the runtime token to adopt.
    protocol::refreshed_token token;
    /// For `adopt_token`: when the token was issued, in the backend's time.
    wall_time_point when{};
    /// For `forget_token`: the runtime token to forget; for `policy_hash`: the new hash.
    std::string text;
    /// For `log`: the line to log.
    log_line line;
    /// For `command`: the command.
    protocol::command command;
    /// For `revoked`: the revocation.
    revocation_info revocation;
};

/** The beacon as a state machine without I/O (see the file comment).

    Built from validated options (`detail::prepare`) and the platform to report. Jitter is
    drawn from `options.random` (seeded from `std::random_device` when empty).
*/
class beacon_core {
public:
    /// A core for validated `options` that reports `platform`; idle until the first `advance()`.
    beacon_core(beacon_options options, platform_info platform)
        : options_(std::move(options)), platform_(std::move(platform)),
          random_(options_.random ? options_.random : default_random_source()), auth_(options_.request_timeout),
          interval_(options_.heartbeat_interval), heartbeat_body_(platform_, options_.capabilities) {
        auth_backoff_.set_options(options_.backoff);
        refresh_backoff_.set_options(options_.backoff);
    }

    // ---- inputs ------------------------------------------------------------------------

    /// The store's contents (or why it could not be read), current as of now.
    SEKUIRE_DECL void store_seen(std::optional<installation_credentials> stored, const error_code& ec);

    /// Does what is due at `now`.
    SEKUIRE_DECL void advance(const clock_reading& now);

    /// The answer to the request of operation `op` (or the transport's error).
    SEKUIRE_DECL void on_response(operation_id op, const error_code& transport_error, http_response&& response, const clock_reading& now);

    /// The result of `lock_refresh`: whether the lock was taken, and the store's contents
    /// read under it (or why not).
    SEKUIRE_DECL void on_refresh_lock(operation_id op, bool owned, std::optional<installation_credentials> stored, const error_code& ec, const clock_reading& now);

    /// The result of a `save` or `clear`.
    SEKUIRE_DECL void on_stored(operation_id op, const error_code& ec, const clock_reading& now);

    /// The result of `adopt_token`.
    SEKUIRE_DECL void on_adopted(operation_id op, detail::adopt_result r, const clock_reading& now);

    /// The result of `forget_token`: what the store holds afterwards.
    SEKUIRE_DECL void on_forgot(operation_id op, std::optional<installation_credentials> c, const error_code& ec, const clock_reading& now);

    /// The result of `check_writable`; `where` describes the store for the message.
    SEKUIRE_DECL void on_writable(operation_id op, const error_code& ec, const std::string& where, const clock_reading& now);

    /** Stops: when running and not revoked, asks for the final heartbeat (status `stopped`,
        bounded by `stop_timeout`), whose answer ends it; otherwise ends at once. Whatever
        is outstanding is given up (its result is ignored). `stopped()` tells when done.
    */
    SEKUIRE_DECL void stop(const clock_reading& now);

    /// Applies a command that arrived another way (a worker's task stream). False when its
    /// id was seen already (nothing done).
    bool apply_command(const protocol::command& cmd) { return accept_command(cmd, false); }

    /// Applies a revocation that arrived another way: acted on at the next `advance()`.
    SEKUIRE_DECL void apply_revocation(const protocol::revocation& r);

    /** Optional: gives back the request of a `send` effect once it was sent, so that the
        next heartbeat reuses its storage (target, headers, body) rather than allocating
        anew. A driver that never calls it loses only those allocations.
    */
    void reuse_request(http_request&& sent) noexcept { spare_request_ = std::move(sent); }

    /// Overrides the `status` sent with heartbeats (nullopt: the automatic choice).
    void set_reported_status(std::optional<protocol::heartbeat_status> s) { reported_status_ = s; }

    /** Call when a round of inputs is over (the driver performed every effect it could):
        asks for one `status_changed` when the status changed materially since the last
        round (state, degraded mode, pause, terminate, revocation, lease, failures starting
        or ending, the installation).
    */
    SEKUIRE_DECL void settle();

    // ---- outputs -----------------------------------------------------------------------

    /// The effects asked for since the last call, in order (the caller takes them).
    std::vector<beacon_effect>& effects() noexcept { return effects_; }

    /// When the core wants `advance()` next (steady time; `max()` when nothing is
    /// scheduled or an operation is outstanding).
    steady_time_point next_wake() const noexcept { return waiting_ != op_kind::none ? steady_time_point::max() : next_; }

    /// Whether an operation's result is awaited.
    bool busy() const noexcept { return waiting_ != op_kind::none; }

    /// True once stopped (after the final heartbeat's answer, or at once).
    bool stopped() const noexcept { return phase_ == phase::stopped || (revoked_ && stopping_); }

    /// Whether the auth chain was tried at least once (after the startup jitter), or it
    /// will never be: what `start()` waits for.
    SEKUIRE_DECL bool first_pass_done() const noexcept;

    /// The status (tokens masked). `is_running` is the driver's to set.
    SEKUIRE_DECL beacon_status status() const;

    /** Writes the status into `s` in place (tokens masked), as `status()` returns it but
        reusing the storage of `s`'s strings: a driver that publishes the status after every
        step allocates nothing while it does not grow. `s.is_running` is left as it is
        (the driver's to set).
    */
    SEKUIRE_DECL void status_into(beacon_status& s) const;

    /// The backend's clock as last seen, at local wall time `local`.
    wall_time_point backend_now(wall_time_point local) const { return auth_.backend_now(local); }

    /// The options it was built with.
    const beacon_options& options() const noexcept { return options_; }
    /// The platform it reports.
    const platform_info& platform() const noexcept { return platform_; }

private:
    enum class phase : std::uint8_t { initial, auth, running, degraded, revoked, stopped };
    enum class stage : std::uint8_t { session, bootstrap, recover };
    enum class op_kind : std::uint8_t {
        none,
        writable_bootstrap,
        writable_recover,
        bootstrap,
        recover,
        lock_refresh_wait,
        refresh,
        heartbeat,
        heartbeat_retry,
        final_heartbeat,
        store,
        adopt,
        forget,
    };
    // Who asked for a refresh, and so where its outcome goes.
    enum class refresh_purpose : std::uint8_t { session, running, heartbeat };
    // What a save or clear was for.
    enum class store_purpose : std::uint8_t { seed, unsaved, restore, bootstrap, refresh, drop, revoke };

    struct signature {
        beacon_state state;
        bool degraded, paused, terminate, revoked, lease_expired, failing;
        std::string installation_id;
    };

    // ---- the loop of due steps ---------------------------------------------------------

    // Runs due steps until one waits for a result or nothing more is due now.
    SEKUIRE_DECL void run();

    // After a result: the flow it belonged to may have moved on; run what is due now.
    SEKUIRE_DECL void continue_run();

    SEKUIRE_DECL steady_time_point step_once();

    bool expecting(operation_id op) const noexcept { return waiting_ != op_kind::none && op == op_; }

    SEKUIRE_DECL operation_id next_op(op_kind k);

    SEKUIRE_DECL beacon_effect& emit(beacon_effect::type t);

    SEKUIRE_DECL void send(op_kind k, http_request req);

    SEKUIRE_DECL void store_op(beacon_effect::type t, store_purpose p, std::optional<installation_credentials> c = std::nullopt);

    SEKUIRE_DECL void emit_unlock();

    // ---- the auth chain ----------------------------------------------------------------

    SEKUIRE_DECL void begin();

    SEKUIRE_DECL void auth_attempt();

    // The store's contents as now known, with unsaved credentials put first (and saved
    // again, once per advance: a store that keeps refusing is tried at each step).
    // (A reference to the chain's copy: running_step() reads it every cycle.)
    SEKUIRE_DECL const std::optional<installation_credentials>& reconciled(bool& save_again);

    SEKUIRE_DECL void session_attempt();

    SEKUIRE_DECL void session_refreshed(const detail::refresh_result& r);

    SEKUIRE_DECL void bootstrap_attempt();

    SEKUIRE_DECL void send_bootstrap();

    SEKUIRE_DECL void recover_attempt();

    SEKUIRE_DECL void send_recover();

    SEKUIRE_DECL void bootstrap_answered(op_kind k, detail::http_outcome&& out);

    SEKUIRE_DECL void auth_retry(const error_code& ec, const std::optional<std::chrono::milliseconds>& retry_after, const std::string& what = "authentication failed");

    SEKUIRE_DECL void enter_degraded(const error_code& ec, const std::string& why);

    SEKUIRE_DECL void go_running();

    // The credentials are dead: authenticate again from the bootstrap step, paced by the
    // auth backoff (reset by a successful heartbeat), so that a backend refusing each new
    // installation in turn cannot drive a tight loop of bootstraps.
    SEKUIRE_DECL void walk_chain_again();

    SEKUIRE_DECL void drop_credentials(const std::string& why);

    SEKUIRE_DECL void stored_answered(store_purpose p, const error_code& ec);

    // ---- the refresh, single-flight over the store -------------------------------------

    SEKUIRE_DECL void start_refresh(refresh_purpose p, std::string stale_token);

    SEKUIRE_DECL void refresh_locked(bool owned, std::optional<installation_credentials> stored, const error_code& ec);

    void refresh_answered(detail::http_outcome&& res) { refresh_next(auth_.refresh_answered(std::move(res), backend_now())); }

    SEKUIRE_DECL void refresh_next(auth_chain::refresh_step step);

    SEKUIRE_DECL void refresh_done();

    // ---- running -----------------------------------------------------------------------

    SEKUIRE_DECL steady_time_point running_step();

    SEKUIRE_DECL steady_time_point schedule_after_running(steady_time_point next) const;

    SEKUIRE_DECL steady_time_point lease_or_max() const;

    void running_refreshed(const detail::refresh_result& r) { handle_refresh_result(r); }

    // False when the beacon left the running phase.
    SEKUIRE_DECL bool handle_refresh_result(const detail::refresh_result& r);

    /// The backend's clock (token expiry and directed times are in it).
    wall_time_point backend_now() const { return auth_.backend_now(now_.wall); }

    SEKUIRE_DECL void observe(const std::optional<wall_time_point>& server_time);

    SEKUIRE_DECL protocol::heartbeat_status reported_status() const;

    SEKUIRE_DECL http_request heartbeat_request(protocol::heartbeat_status status, std::chrono::milliseconds timeout);

    SEKUIRE_DECL void send_heartbeat();

    SEKUIRE_DECL void heartbeat_answered(detail::http_outcome&& out, bool retried);

    SEKUIRE_DECL void heartbeat_refreshed(const detail::refresh_result& r);

    SEKUIRE_DECL void forget(std::string rejected);

    SEKUIRE_DECL void after_forget();

    SEKUIRE_DECL void heartbeat_outcome(detail::http_outcome&& out);

    SEKUIRE_DECL void heartbeat_succeeded(const detail::http_outcome& out);

    SEKUIRE_DECL void heartbeat_failed(const error_code& ec, const std::optional<std::chrono::milliseconds>& retry_after, std::string what = {});

    // What is left of the lease now; nullopt when none is known or it was lost.
    SEKUIRE_DECL std::optional<std::chrono::milliseconds> lease_left() const;

    SEKUIRE_DECL void set_lease(std::optional<wall_time_point> expires);

    // ---- commands, revocation, stop ----------------------------------------------------

    // `heard` is false for a command another part received (and logged) first.
    SEKUIRE_DECL bool accept_command(const protocol::command& cmd, bool heard = true);

    SEKUIRE_DECL void take_pending_revocation();

    SEKUIRE_DECL void revoke(const protocol::revocation& r);

    // One attempt, bounded by stop_timeout: no refresh and no retry on a 401.
    SEKUIRE_DECL void send_final_heartbeat();

    SEKUIRE_DECL void final_heartbeat_answered(const detail::http_outcome& out);

    SEKUIRE_DECL void finish_stop();

    // ---- status ------------------------------------------------------------------------

    static SEKUIRE_DECL std::string describe_body(const detail::http_outcome& out);

    SEKUIRE_DECL void record_error(const error_code& ec, std::string what);

    SEKUIRE_DECL void clear_error_if_recovered(bool was_failing);

    // `event` names what happened, for structured loggers (log_record::event).
    SEKUIRE_DECL void log(const char* event, log_level level, std::string message);

    SEKUIRE_DECL beacon_state derive_state() const;

    // Brings last_signature_ up to the status now; true when it changed. Field by field, so
    // that a round in which nothing changed copies nothing (settle() runs every step).
    SEKUIRE_DECL bool update_signature();



    // ---- members -----------------------------------------------------------------------

    beacon_options options_;
    platform_info platform_;
    random_source random_;
    std::vector<beacon_effect> effects_;
    clock_reading now_{};

    phase phase_ = phase::initial;
    stage stage_ = stage::session;
    op_kind waiting_ = op_kind::none;
    operation_id op_ = 0, last_op_ = 0;
    store_purpose store_purpose_ = store_purpose::seed;
    bool stopping_ = false;
    bool attempted_ = false;
    bool writable_checked_ = false;
    bool unsaved_tried_ = false;
    steady_time_point next_ = steady_time_point::min();

    auth_chain auth_; // the store as last seen, unsaved credentials, the backend's clock, the refresh
    std::optional<installation_credentials> creds_;
    wall_time_point sent_backend_now_{};

    // Who asked for the refresh under way.
    refresh_purpose refresh_purpose_ = refresh_purpose::session;

    // The heartbeat under way.
    std::string pending_heartbeat_body_; // the last heartbeat's body, sent again after a refresh
    http_request spare_request_;         // a sent request given back: the next heartbeat's storage
    error_code first_401_;
    detail::http_outcome second_401_;
    detail::refresh_result refused_refresh_;
    bool forget_purpose_second_401_ = false;
    std::string forgotten_;
    std::string bootstrap_log_;

    steady_time_point started_at_{};
    steady_time_point next_at_{};
    steady_time_point next_beat_at_{};
    steady_time_point refresh_retry_at_{};
    std::optional<steady_time_point> lease_deadline_;
    std::optional<wall_time_point> lease_expires_at_;
    std::optional<wall_time_point> last_heartbeat_;
    std::chrono::milliseconds interval_{};
    protocol::heartbeat_encoder heartbeat_body_; // the platform, capabilities and SDK, encoded once
    backoff auth_backoff_, refresh_backoff_;
    std::uint32_t failed_ = 0;
    std::uint64_t heartbeats_ = 0;
    std::int64_t sequence_ = 0;
    bool registered_ = false;
    bool degraded_ = false;
    bool lease_expired_ = false;
    bool install_token_spent_ = false;
    bool recovered_from_env_ = false;
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

    detail::command_log commands_;
    bool paused_ = false;
    bool terminate_requested_ = false;
    std::optional<protocol::revocation> pending_revocation_;
    std::optional<protocol::heartbeat_status> reported_status_;
    signature last_signature_{beacon_state::idle, false, false, false, false, false, false, {}};
};

} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/core/impl/beacon_core.ipp>
#endif

#endif
