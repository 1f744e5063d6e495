// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_ERROR_HPP
#define SEKUIRE_ERROR_HPP

/// @file
/// The error codes of sekuire, their category, and the exception type thrown by the
/// throwing overloads of the public API.
///
/// Every public synchronous operation comes in two forms, as in Boost.Beast and Boost.JSON:
/// one takes an `error_code&` and never throws for expected failures, the other throws
/// `sekuire::error`.

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <string>
#include <type_traits>

namespace sekuire {

/// The error code type used throughout sekuire (converts to `std::error_code`).
using error_code = boost::system::error_code;

/** Errors reported by sekuire, fine enough to act on.

    The codes fall into groups; `is_transient()` tells which ones are worth retrying.
*/
enum class errc {
    // -- transport --------------------------------------------------------------------
    connection_failed = 1,  ///< could not connect (refused, unreachable, DNS)
    tls_failed,             ///< TLS handshake or certificate verification failed
    timeout,                ///< no answer within the time limit
    connection_lost,        ///< the connection broke while reading or writing
    response_too_large,     ///< a response exceeded the size limit
    canceled,               ///< the operation was canceled (stop request)
    invalid_url,            ///< the URL cannot be parsed or uses an unsupported scheme
    insecure_url,           ///< plain http to a host other than loopback, without opt-in
    redirect_refused,       ///< a 3xx answer: redirects are never followed
    // -- HTTP status classes (protocol.md section 0) ---------------------------------
    transient_http,         ///< 408, 425, 5xx: retry with backoff
    rate_limited,           ///< 429: retry no sooner than Retry-After
    http_error,             ///< another 4xx: permanent for that call
    // -- authentication and lifecycle -------------------------------------------------
    unauthorized,           ///< the runtime token was rejected (401)
    invalid_install_token,  ///< 401 invalid_install_token
    install_token_used,     ///< 409 install_token_used: the install token is single-use
    install_token_expired,  ///< 410 install_token_expired
    agent_mismatch,         ///< 403 agent_mismatch
    invalid_api_key,        ///< 401 invalid_api_key
    workspace_mismatch,     ///< 403 workspace_mismatch
    invalid_refresh_token,  ///< 401 invalid_refresh_token
    revoked,                ///< the installation was revoked (kill switch)
    installation_not_found, ///< 404 on an installation path: the stored credentials are gone
    no_credentials,         ///< nothing to authenticate with
    // -- decoding ---------------------------------------------------------------------
    body_too_large,         ///< a body over the size limit, refused before parsing
    malformed_json,         ///< not JSON, truncated, too deeply nested, or invalid UTF-8
    missing_field,          ///< a required field is absent
    wrong_type,             ///< a field has the wrong JSON type
    invalid_value,          ///< a field has a value outside its domain
    invalid_timestamp,      ///< a timestamp that is not valid RFC 3339
    // -- task worker ------------------------------------------------------------------
    no_handler,             ///< no handler for the task's capability
    handler_error,          ///< the handler threw
    handler_timeout,        ///< the handler passed its deadline
    invalid_input,          ///< the task input was rejected as invalid
    capability_denied,      ///< the policy gateway denied the capability
    worker_paused,          ///< the worker is paused
    shutting_down,          ///< the worker is shutting down
    unknown_task,           ///< 404 unknown_task on completion
    stream_idle,            ///< the task stream was silent for too long
    stream_line_too_long,   ///< an event stream line or event exceeded its size bound
    // -- credential stores ------------------------------------------------------------
    store_corrupt,          ///< the credential file cannot be parsed
    store_io,               ///< the credential file cannot be read or written
    // -- usage ------------------------------------------------------------------------
    invalid_option,         ///< an option has an invalid value
    already_started,        ///< start() on something already running
    invalid_argument,       ///< an argument cannot be used (a header with CR/LF, credentials without an id)
    // -- credential stores (continued) -------------------------------------------------
    store_locked,           ///< the store's refresh lock is held by another holder (retry with backoff)
    store_insecure,         ///< the credential file is not private: a symbolic link, another owner, or writable by others
};

namespace detail {

class error_category_impl final : public boost::system::error_category {
public:
    constexpr error_category_impl() noexcept : boost::system::error_category(0x5e6b01e5c0de0001ULL) {}

    const char* name() const noexcept override { return "sekuire"; }

    std::string message(int ev) const override { return message(ev, nullptr, 0); }

    const char* message(int ev, char*, std::size_t) const noexcept override {
        switch (static_cast<errc>(ev)) {
        case errc::connection_failed: return "could not connect to the backend";
        case errc::tls_failed: return "TLS handshake or certificate verification failed";
        case errc::timeout: return "the backend did not answer in time";
        case errc::connection_lost: return "the connection to the backend was lost";
        case errc::response_too_large: return "the response exceeded the size limit";
        case errc::canceled: return "the operation was canceled";
        case errc::invalid_url: return "the URL is not a valid http or https URL";
        case errc::insecure_url:
            return "plain http is refused for hosts other than loopback (set allow_insecure_http to opt in)";
        case errc::redirect_refused: return "the backend answered with a redirect, which is never followed";
        case errc::transient_http: return "the backend answered with a transient error status";
        case errc::rate_limited: return "the backend is rate limiting this client";
        case errc::http_error: return "the backend refused the request";
        case errc::unauthorized: return "the backend rejected the runtime token";
        case errc::invalid_install_token: return "the install token is not valid";
        case errc::install_token_used: return "the install token was already used";
        case errc::install_token_expired: return "the install token has expired";
        case errc::agent_mismatch: return "the install token belongs to another agent";
        case errc::invalid_api_key: return "the API key is not valid";
        case errc::workspace_mismatch: return "the API key does not belong to this workspace";
        case errc::invalid_refresh_token: return "the refresh token is not valid";
        case errc::revoked: return "the installation was revoked";
        case errc::installation_not_found: return "the backend does not know this installation";
        case errc::no_credentials:
            return "no usable credentials: give an install token, recovery credentials, or an API key with a workspace id";
        case errc::body_too_large: return "the body is larger than the size limit";
        case errc::malformed_json: return "the body is not valid JSON";
        case errc::missing_field: return "a required field is missing";
        case errc::wrong_type: return "a field has the wrong type";
        case errc::invalid_value: return "a field has an invalid value";
        case errc::invalid_timestamp: return "a timestamp is not valid RFC 3339";
        case errc::no_handler: return "no handler is registered for the capability";
        case errc::handler_error: return "the handler failed";
        case errc::handler_timeout: return "the handler did not finish before its deadline";
        case errc::invalid_input: return "the task input is not valid";
        case errc::capability_denied: return "the policy denies this capability";
        case errc::worker_paused: return "the worker is paused";
        case errc::shutting_down: return "the worker is shutting down";
        case errc::unknown_task: return "the backend does not know this task";
        case errc::stream_idle: return "the task stream was silent for too long";
        case errc::stream_line_too_long: return "an event stream line or event exceeded its size bound";
        case errc::store_corrupt: return "the credential store is corrupt";
        case errc::store_io: return "the credential store cannot be read or written";
        case errc::invalid_option: return "an option has an invalid value";
        case errc::store_locked: return "the credential store's refresh lock is held by another holder";
        case errc::store_insecure:
            return "the credential file is not private to this user (a symbolic link, another owner, or writable by others)";
        case errc::already_started: return "already started";
        case errc::invalid_argument: return "an argument cannot be used";
        }
        return "unknown sekuire error";
    }
};

} // namespace detail

/// The category of `sekuire::errc`; its `name()` is `"sekuire"`.
inline const boost::system::error_category& error_category() noexcept {
    static const detail::error_category_impl instance;
    return instance;
}

/// Makes an `error_code` from an `errc` (found by argument-dependent lookup).
inline error_code make_error_code(errc e) noexcept {
    return error_code(static_cast<int>(e), error_category());
}

/** Whether an error is worth retrying with backoff (transport failures, transient and
    rate-limited HTTP statuses, malformed responses).

    A malformed response is transient: a proxy or a backend mid-deploy can answer with
    garbage once, and the next attempt may succeed.
*/
inline bool is_transient(const error_code& ec) noexcept {
    if (ec.category() != error_category()) return false;
    switch (static_cast<errc>(ec.value())) {
    case errc::connection_failed:
    case errc::timeout:
    case errc::connection_lost:
    case errc::response_too_large:
    case errc::transient_http:
    case errc::rate_limited:
    case errc::body_too_large:
    case errc::malformed_json:
    case errc::missing_field:
    case errc::wrong_type:
    case errc::invalid_value:
    case errc::invalid_timestamp:
    case errc::stream_idle:
    case errc::stream_line_too_long:
    case errc::store_locked:
        return true;
    default:
        return false;
    }
}

/** The exception thrown by the throwing overloads of sekuire's API.

    Derived from `boost::system::system_error`; `code()` holds the `errc`. Messages never
    contain a token.
*/
class error : public boost::system::system_error {
public:
    /// An exception for `ec`, with its message as `what()`.
    explicit error(const error_code& ec) : boost::system::system_error(ec) {}
    /// An exception for `ec`; `what()` is `what_arg`, a colon and the code's message.
    error(const error_code& ec, const std::string& what_arg) : boost::system::system_error(ec, what_arg) {}
};

/** The message of an exception for a person: `what()`, without the ` [sekuire:7]` suffix
    (the category, the value and any source location) that Boost.System adds to a
    `system_error`'s text. For other exceptions, `what()` unchanged. Never throws for a
    message it cannot shorten; may throw `std::bad_alloc`.

    @par Thread Safety
    Pure function.
*/
inline std::string error_message(const std::exception& e) {
    std::string text = e.what();
    if (const auto* se = dynamic_cast<const boost::system::system_error*>(&e)) {
        const std::string tag = " [" + se->code().to_string();
        const auto at = text.rfind(tag);
        if (at != std::string::npos && !text.empty() && text.back() == ']') text.erase(at);
    }
    return text;
}

namespace detail {
/// Throws `sekuire::error` when `ec` holds an error.
inline void throw_if(const error_code& ec, const char* what = nullptr) {
    if (ec) {
        if (what) throw error(ec, what);
        throw error(ec);
    }
}
} // namespace detail

} // namespace sekuire

namespace boost {
namespace system {
template <>
struct is_error_code_enum<::sekuire::errc> : std::true_type {};
} // namespace system
} // namespace boost

#endif
