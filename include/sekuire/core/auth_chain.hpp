// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_CORE_AUTH_CHAIN_HPP
#define SEKUIRE_CORE_AUTH_CHAIN_HPP

/// @file
/// `auth_chain`: what the beacon's and the worker's cores share of authentication
/// (protocol.md section 4): the credentials as the store last showed them, refreshed
/// credentials the store refused (kept in memory and saved again), the backend's clock,
/// the requests of the chain (bootstrap, recovery bootstrap, refresh) and the reading of
/// their answers, and the single-flight refresh over the store's refresh lock. Each core
/// walks the chain in its own order (the Beacon's, the TaskWorker's) with these steps. No
/// I/O: the steps return the request to send or the store operation to perform, and take
/// their results.

#include <sekuire/config.hpp>
#include <sekuire/core/common.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/detail/auth.hpp>
#include <sekuire/platform.hpp>
#include <sekuire/protocol.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sekuire {

/** The shared steps of authentication, for `beacon_core` and `worker_core`.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Unsafe.
*/
class auth_chain {
public:
    /// What a step of the refresh asks for next.
    struct refresh_step {
        /// The kinds of step.
        enum class kind : std::uint8_t {
            done, ///< the refresh is over: see `result()` (the lock, if taken, must be released)
            send, ///< send `request` (the lock is held meanwhile)
            save, ///< save `credentials` under the lock, then call `refresh_saved()`
        };
        /// Which step this is.
        kind what = kind::done;
        /// For `send`: the refresh request.
        http_request request;
        /// For `save`: the credentials the refresh produced.
        installation_credentials credentials;
    };

    /// A chain whose requests carry `request_timeout`.
    explicit auth_chain(std::chrono::milliseconds request_timeout) : request_timeout_(request_timeout) {}

    // ---- the store as last seen --------------------------------------------------------

    /// The store's contents (or why it could not be read), as just read.
    SEKUIRE_DECL void store_seen(std::optional<installation_credentials> stored, const error_code& ec);

    /// What the store is about to hold (a save asked for): later reads see it.
    SEKUIRE_DECL void store_will_hold(std::optional<installation_credentials> c);

    /// The store's contents as last seen (or as about to be saved).
    const std::optional<installation_credentials>& stored() const noexcept { return stored_; }
    /// Why the store could not be read last time (empty when it could).
    const error_code& store_error() const noexcept { return stored_ec_; }

    /** The store's contents with unsaved credentials put first: the memory copy wins while
        the store holds the same installation without a newer token version. `save_again`
        says when it should be saved again (the caller asks for it once per round).
        A reference to the chain's own copy (no copy made: a beacon reads it every cycle),
        valid until the next call that changes the chain.
    */
    SEKUIRE_DECL const std::optional<installation_credentials>& reconciled(bool& save_again);

    /// Credentials the store refused: kept, used, and saved again.
    void remember_unsaved(installation_credentials c) { unsaved_ = std::move(c); }
    /// The store took them.
    void forget_unsaved() { unsaved_.reset(); }

    // ---- the backend's clock -----------------------------------------------------------

    /// Learns from a response's `Date`; true when the offset just became notable.
    SEKUIRE_DECL bool observe(const std::optional<wall_time_point>& server_time, wall_time_point local);
    /// `local` in the backend's time.
    wall_time_point backend_now(wall_time_point local) const { return skew_.now(local); }
    /// The backend's clock as learnt from `Date` headers (its offset from the local one).
    const detail::backend_clock& clock() const noexcept { return skew_; }

    // ---- the requests of the chain -----------------------------------------------------

    /// Section 1: the install-token bootstrap.
    SEKUIRE_DECL http_request bootstrap_request(const std::string& install_token, const std::string& agent_id, const std::vector<std::string>& capabilities, const platform_info& platform) const;

    /// Section 2: the recovery bootstrap with an API key.
    SEKUIRE_DECL http_request recover_request(const std::string& api_key, const std::string& workspace_id, const std::string& agent_id, const std::vector<std::string>& capabilities, const platform_info& platform) const;

    /// Reads a bootstrap's (or recovery bootstrap's) answer; with `ok`, `credentials` are
    /// what it granted, issued at `issued_at` (the backend's time).
    static SEKUIRE_DECL detail::bootstrap_result bootstrap_answer(detail::http_outcome&& out);

    // ---- the single-flight refresh -----------------------------------------------------

    /// Starts a refresh of `stale_token`: the caller asks for the store's refresh lock (never
    /// waiting) and feeds the result to `refresh_locked()`.
    SEKUIRE_DECL void begin_refresh(std::string stale_token);

    /// Whether a refresh is under way.
    bool refreshing() const noexcept { return refreshing_; }
    /// Whether the refresh under way holds the store's lock (to be released).
    bool lock_held() const noexcept { return lock_held_; }
    /// The lock was released.
    void lock_released() noexcept { lock_held_ = false; }
    /// The token the refresh under way replaces.
    const std::string& stale_token() const noexcept { return refresh_stale_; }

    /** The refresh lock's result. Without the lock (another holder refreshes, or the lock
        cannot be used) the refresh is over as a store failure, retried with backoff by the
        caller. Under it, the store is read again: when another holder replaced the stale
        token with one that needs no refresh, that one is used and no call is made.
        `backend_now` is the backend's time.
    */
    SEKUIRE_DECL refresh_step refresh_locked(bool owned, std::optional<installation_credentials> stored, const error_code& ec, wall_time_point backend_now);

    /** The refresh call's answer (classified, observed). A new token is saved before
        anyone uses it, under the lock (a rotated refresh token exists nowhere else):
        `save` comes back, and `refresh_saved()` ends the refresh.
    */
    SEKUIRE_DECL refresh_step refresh_answered(detail::http_outcome&& res, wall_time_point backend_now);

    /// The save of refreshed credentials: when it failed they are kept in memory (and
    /// saved again later); the refresh is over.
    SEKUIRE_DECL void refresh_saved(const error_code& ec);

    /// The outcome of the last refresh.
    const detail::refresh_result& result() const noexcept { return refresh_result_; }

private:
    std::chrono::milliseconds request_timeout_;
    std::optional<installation_credentials> stored_;
    error_code stored_ec_;
    std::optional<installation_credentials> unsaved_;
    detail::backend_clock skew_;

    std::string refresh_stale_;
    installation_credentials refresh_base_;
    detail::refresh_result refresh_result_;
    bool refreshing_ = false;
    bool lock_held_ = false;
};

} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/core/impl/auth_chain.ipp>
#endif

#endif
