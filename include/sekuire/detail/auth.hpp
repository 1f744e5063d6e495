// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_AUTH_HPP
#define SEKUIRE_DETAIL_AUTH_HPP

// Calls shared by the beacon and the worker: one HTTP exchange classified by the status
// classes of protocol.md section 0, the bootstrap and recovery bootstrap, and the
// single-flight runtime token refresh over a shared credential store.

#include <sekuire/config.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/error.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/retry.hpp>
#include <sekuire/transport.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sekuire {
namespace detail {

/// How one exchange went.
struct http_outcome {
    http_response response;
    protocol::status_class cls = protocol::status_class::transient;
    /// The error body's code (empty when none).
    std::string code;
    /// What went wrong (transport error or the error of the status); empty when ok.
    error_code error;
    /// From `Retry-After`, when the backend sent one.
    std::optional<std::chrono::milliseconds> retry_after;
    /// The backend's clock (`Date` header), when it sent one.
    std::optional<wall_time_point> server_time;

    bool ok() const noexcept { return cls == protocol::status_class::ok; }
};

SEKUIRE_DECL http_request make_request(http_method method, std::string target, std::string body, std::chrono::milliseconds timeout);

SEKUIRE_DECL void set_bearer(http_request& req, std::string_view token);

/** Sets the headers of `req` as `make_request()` and `set_bearer(req, token)` do (Accept,
    Content-Type when it has a body, Authorization), in that order, reusing the storage of
    the headers it had: no allocation for a request that carried the same kind of headers.
*/
inline void set_json_bearer_headers(http_request& req, std::string_view token) {
    req.headers.reserve(4); // as make_request()
    std::size_t n = 0;
    const auto put = [&req, &n](std::string_view name, std::string_view value, std::string_view more = {}) {
        if (req.headers.size() == n) req.headers.emplace_back();
        http_header& h = req.headers[n++];
        h.name.assign(name.data(), name.size());
        h.value.assign(value.data(), value.size());
        h.value.append(more.data(), more.size());
    };
    put(protocol::header::accept, protocol::header::json_type);
    if (!req.body.empty()) put(protocol::header::content_type, protocol::header::json_type);
    put(protocol::header::authorization, protocol::header::bearer_prefix, token);
    req.headers.erase(req.headers.begin() + static_cast<std::ptrdiff_t>(n), req.headers.end());
}

/// Milliseconds since the epoch: differences of these cannot overflow, whatever two
/// representable instants they come from.
SEKUIRE_DECL std::int64_t wall_ms(wall_time_point t) noexcept;

/// The instant `ms` milliseconds after the epoch, saturated to what the clock represents.
SEKUIRE_DECL wall_time_point wall_from_ms(std::int64_t ms) noexcept;

/// A `Date` header names the second in which the response was made (HTTP dates have whole
/// seconds): the backend's clock read somewhere in [date, date + 1 s).
inline constexpr std::int64_t date_resolution_ms = 1000;

/** The backend's time given a response's `Date` and `local`, the client's own reading of
    the backend's time: taken as is when it falls inside the second the `Date` names, else
    pulled to the nearest edge of it. Judging against the `Date` itself would put every
    backend time up to a second late (a 1 s heartbeat interval became 1.6-2.0 s).
*/
SEKUIRE_DECL wall_time_point within_date(wall_time_point date, wall_time_point local) noexcept;

/// Classifies the answer to a request (or the transport's error): the status class and the
/// error of docs/protocol.md's table (`bearer` and `installation_path` select its rows),
/// the error body's code, the backend's time from `Date` (clamped to plausible instants)
/// and `Retry-After` (an HTTP-date one measured against the response's own `Date`). `now`
/// is the client's idea of the backend's time when the request went out.
SEKUIRE_DECL http_outcome classify(const error_code& transport_error, http_response&& response, bool bearer, bool installation_path, wall_time_point now);

/** The backend's clock as last seen in `Date` headers. Token expiries and the times the
    backend directs are in its time; judging them against a local clock that is hours off
    would make a fresh token look expired (and refreshed again and again) or an expired
    one look fresh. A `Date` names a whole second: a local clock that reads inside it (or
    up to `transit_allowance_ms` after it, the way back) counts as right, and only a skew
    beyond that is corrected, to the nearest edge of the second. Thread-safe.
*/
class backend_clock {
public:
    /// The largest offset believed: beyond it the `Date` header is ignored as nonsense.
    static constexpr std::int64_t max_offset_ms = 200LL * 366 * 24 * 3600 * 1000;
    /// Offsets from this size on are worth a warning.
    static constexpr std::int64_t notable_offset_ms = 60 * 1000;
    /// How long after the second a `Date` names a response may still arrive on time.
    static constexpr std::int64_t transit_allowance_ms = 250;

    /// Learns the offset from a response's `Date`, received at local time `local_now`.
    /// True when the offset just became notable (the caller logs it once).
    bool observe(const std::optional<wall_time_point>& server_time, wall_time_point local_now) noexcept {
        if (!server_time) return false;
        const std::int64_t date = wall_ms(*server_time), local = wall_ms(local_now);
        std::int64_t off = 0;
        if (local < date)
            off = date - local;
        else if (local >= date + date_resolution_ms + transit_allowance_ms)
            off = date + date_resolution_ms - local;
        if (off > max_offset_ms || off < -max_offset_ms) return false;
        const std::int64_t before = offset_ms_.exchange(off);
        auto notable = [](std::int64_t o) { return o >= notable_offset_ms || o <= -notable_offset_ms; };
        return notable(off) && !notable(before);
    }

    /// `local_now` in the backend's time.
    wall_time_point now(wall_time_point local_now) const noexcept {
        return wall_from_ms(wall_ms(local_now) + offset_ms_.load());
    }

    /// The backend's clock minus the local one (0 when the local clock reads inside the
    /// `Date`'s second, or never seen).
    std::chrono::milliseconds offset() const noexcept { return std::chrono::milliseconds(offset_ms_.load()); }

    /// "the local clock is N s behind the backend's" (or "ahead of"), for a log line.
    std::string describe_offset() const {
        const std::int64_t off = offset_ms_.load();
        return "the local clock is " + std::to_string((off < 0 ? -off : off) / 1000) + " s " +
               (off > 0 ? "behind" : "ahead of") + " the backend's";
    }

private:
    std::atomic<std::int64_t> offset_ms_{0};
};

/// True when the runtime token is known to have expired at `now` (the backend's time).
SEKUIRE_DECL bool token_expired(const installation_credentials& c, wall_time_point now) noexcept;

/** When the client refreshes a token on its own, if no heartbeat did: 6 days before its
    expiry (protocol.md section 5 gives the backend 7), but never earlier than a third into
    the token's lifetime when it is known. So a 90-day token is refreshed 6 days before it
    expires, and a 1-hour token after 20 minutes rather than at once and for ever.
    Computed in milliseconds and saturated: hostile instants cannot overflow it.
*/
SEKUIRE_DECL std::optional<wall_time_point> refresh_due_at(const installation_credentials& c) noexcept;

/// True when the client should refresh on its own: expired, or past `refresh_due_at`.
SEKUIRE_DECL bool token_needs_refresh(const installation_credentials& c, wall_time_point now) noexcept;

/// Outcome of a refresh.
enum class refresh_status {
    refreshed,        ///< the store holds a fresh token (this call or another holder refreshed it)
    transient,        ///< retry later with backoff
    rejected,         ///< the refresh token is dead (401 invalid_refresh_token, other 4xx)
    revoked,          ///< 403 installation_revoked
    gone,             ///< 404: the backend does not know the installation
    no_refresh_token, ///< nothing to refresh with
    store_failed,     ///< the store could not be read, or its refresh lock is busy (no call was made)
};

/** Credentials that a refresh produced but the store refused to save. They hold the only
    live refresh token when the backend rotated it, so they are used from memory and saved
    again each time the store is read, until a save works or the store moves on (another
    installation, a newer token version, or emptied by a revocation). Thread-safe.
*/
class unsaved_credentials {
public:
    void remember(const installation_credentials& c) {
        std::lock_guard<std::mutex> lock(mutex_);
        pending_ = c;
    }

    /** Given `stored`, just read from `store`, returns the credentials to use: the memory
        copy while it is newer than the store's (saving it again; `ec` reports a failed
        save), else `stored`. */
    template <class Store>
    std::optional<installation_credentials> reconcile(Store& store, std::optional<installation_credentials> stored,
                                                      error_code& ec) {
        ec = {};
        std::lock_guard<std::mutex> lock(mutex_);
        if (!pending_) return stored;
        if (!stored || stored->installation_id != pending_->installation_id ||
            stored->token_version > pending_->token_version) {
            pending_.reset();
            return stored;
        }
        std::optional<installation_credentials> out = pending_;
        store.save(*pending_, ec);
        if (!ec) pending_.reset();
        return out;
    }

    bool empty() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return !pending_;
    }

private:
    mutable std::mutex mutex_;
    std::optional<installation_credentials> pending_;
};

struct refresh_result {
    refresh_status status = refresh_status::transient;
    error_code error;
    std::optional<std::chrono::milliseconds> retry_after;
    std::optional<installation_credentials> credentials;
    /// The response's `Date`, for `backend_clock::observe`.
    std::optional<wall_time_point> server_time;
    /// With `refreshed`: the new credentials could not be saved. They are valid (and a
    /// rotated refresh token exists nowhere else): the caller keeps them in memory and
    /// saves them again (`unsaved_credentials`).
    error_code persist_error;
    /// Whether an HTTP call was made (false when another holder had refreshed already).
    bool called = false;
    /// Whether the backend rotated the refresh token.
    bool rotated = false;
};

/// What `adopt_runtime_token` did.
struct adopt_result {
    /// The credentials to use now (nullopt: the store holds another installation's, or the
    /// caller's were dropped).
    std::optional<installation_credentials> credentials;
    /// Whether the new token is in them.
    bool adopted = false;
    /// A store error: the credentials are then kept in memory only.
    error_code error;
};

/** Takes a runtime token that arrived outside a refresh (a heartbeat's `refreshed_token`)
    without undoing what another holder of the store saved meanwhile. Under the refresh
    lock the store is read again, and only its runtime-token fields change, and only when
    it still holds `base`'s installation without a newer token version. A store that was
    emptied meanwhile (by another holder's revocation or 404) is not written: the token is
    kept in memory for the caller to check with the backend. `issued_at` is in the
    backend's time.
*/
template <class Store>
adopt_result adopt_runtime_token(Store& store, const installation_credentials& base, const protocol::refreshed_token& t,
                                 wall_time_point issued_at) {
    auto with_token = [&](installation_credentials c) {
        c.runtime_token = t.runtime_token;
        c.runtime_token_expires_at = t.expires_at;
        c.runtime_token_issued_at = issued_at;
        c.token_version = t.token_version;
        return c;
    };
    adopt_result out;
    refresh_lock<Store> guard(store);
    error_code ec = guard.error();
    std::optional<installation_credentials> stored;
    if (guard.owns()) stored = store.load(ec);
    if (ec) {
        // The lock is busy or the store unreadable: the token is used from memory (and the
        // caller saves it again later: see unsaved_credentials).
        out.credentials = with_token(base);
        out.adopted = true;
        out.error = ec;
        return out;
    }
    if (!stored || stored->installation_id.empty()) {
        out.credentials = with_token(base);
        out.adopted = true;
        return out;
    }
    if (stored->installation_id != base.installation_id ||
        (t.token_version > 0 && stored->token_version > t.token_version) || stored->runtime_token == t.runtime_token) {
        out.credentials = std::move(stored);
        return out;
    }
    out.credentials = with_token(std::move(*stored));
    out.adopted = true;
    store.save(*out.credentials, out.error);
    return out;
}

/** Removes a rejected runtime token from the store (under the refresh lock, and only if
    the store still holds that token: another holder may have replaced it). Returns the
    credentials the store holds afterwards; `ec` reports a store error. */
template <class Store>
std::optional<installation_credentials> forget_runtime_token(Store& store, const std::string& rejected, error_code& ec) {
    refresh_lock<Store> guard(store);
    if (!guard.owns()) {
        ec = guard.error() ? guard.error() : error_code(errc::store_locked);
        return std::nullopt;
    }
    std::optional<installation_credentials> c = store.load(ec);
    if (ec || !c || c->runtime_token != rejected) return c;
    c->runtime_token.clear();
    c->runtime_token_expires_at.reset();
    c->runtime_token_issued_at.reset();
    store.save(*c, ec);
    return c;
}


/// Outcome of a bootstrap or recovery bootstrap.
enum class bootstrap_status { ok, transient, permanent, revoked };

struct bootstrap_result {
    bootstrap_status status = bootstrap_status::transient;
    error_code error;
    std::optional<std::chrono::milliseconds> retry_after;
    std::optional<wall_time_point> server_time;
    protocol::bootstrap_response response;
    /// The message of the error body, when the backend refused with one (never a token).
    std::string error_message;
};

SEKUIRE_DECL bootstrap_result finish_bootstrap(http_outcome&& res);

/// The credentials a bootstrap response grants, issued at `issued_at`.
SEKUIRE_DECL installation_credentials credentials_from(const protocol::bootstrap_response& r, wall_time_point issued_at);

/** Converts a backend timestamp into a delay from now, robust to a wrong local clock:
    the difference is taken against the backend's own `Date` when it sent one. Returns
    nullopt when the result is implausible (in the past, or further than `max_ahead`).
*/
SEKUIRE_DECL std::optional<std::chrono::milliseconds> delay_until(wall_time_point when, std::optional<wall_time_point> server_now, wall_time_point local_now, std::chrono::milliseconds max_ahead);

} // namespace detail
} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/detail/impl/auth.ipp>
#endif

#endif
