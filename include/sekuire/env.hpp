// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_ENV_HPP
#define SEKUIRE_ENV_HPP

/// @file
/// Reading the `SEKUIRE_*` environment of protocol.md section 8, through an injectable
/// lookup so that it is testable without touching the process environment.

#include <sekuire/credential_store.hpp>
#include <sekuire/error.hpp>
#include <sekuire/protocol.hpp>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>

namespace sekuire {

/// Looks up an environment variable; `nullopt` when it is unset.
using env_lookup = std::function<std::optional<std::string>(const char* name)>;

/// The process environment (`std::getenv`).
inline env_lookup process_env() {
    return [](const char* name) -> std::optional<std::string> {
        if (const char* v = std::getenv(name)) return std::string(v);
        return std::nullopt;
    };
}

/** The `SEKUIRE_*` settings of protocol.md section 8. Empty strings mean "not set"
    (an empty variable counts as unset).
*/
struct env_settings {
    /// `SEKUIRE_API_URL`: the API base URL.
    std::string api_url;
    /// `SEKUIRE_AGENT_ID`: the agent's Sekuire id.
    std::string agent_id;
    /// `SEKUIRE_INSTALL_TOKEN`: the one-time install token.
    std::string install_token;
    /// `SEKUIRE_API_KEY`: the API key of the recovery bootstrap.
    std::string api_key;
    /// `SEKUIRE_WORKSPACE_ID`: the workspace of the recovery bootstrap.
    std::string workspace_id;
    /// `SEKUIRE_INSTALLATION_ID`: the installation to recover.
    std::string installation_id;
    /// `SEKUIRE_REFRESH_TOKEN`: its refresh token.
    std::string refresh_token;
    /// `SEKUIRE_RUNTIME_TOKEN`: a runtime token of it.
    std::string runtime_token;
    /// `SEKUIRE_CREDENTIALS_FILE`: the path of a `file_store`.
    std::string credentials_file;
    /// `SEKUIRE_HEARTBEAT_INTERVAL`, in seconds, when set.
    std::optional<std::chrono::seconds> heartbeat_interval;
    /// `SEKUIRE_STARTUP_JITTER`, in seconds, when set.
    std::optional<std::chrono::seconds> startup_jitter;
    /// `SEKUIRE_ALLOW_INSECURE_HTTP`: plain http to hosts other than loopback (for a
    /// docker-compose network, say); nullopt when unset.
    std::optional<bool> allow_insecure_http;

    /// The recovery credentials given by the environment, when there is an installation id
    /// and a refresh or runtime token.
    std::optional<installation_credentials> credentials() const {
        if (installation_id.empty() || (refresh_token.empty() && runtime_token.empty())) return std::nullopt;
        installation_credentials c;
        c.installation_id = installation_id;
        c.refresh_token = refresh_token;
        c.runtime_token = runtime_token;
        return c;
    }
};

namespace detail {
// A whole number of seconds in [lo, hi] from the variable `name`; on failure sets `ec` and
// `what` (naming the variable, its range, and the value when it is a number: anything
// else is not echoed, it might be a misplaced secret). Keeps a first failure.
inline std::optional<std::chrono::seconds> env_seconds(const char* name, const std::string& v, std::int64_t lo,
                                                       std::int64_t hi, error_code& ec, std::string& what) {
    if (v.empty()) return std::nullopt;
    const bool digits = v.size() <= 18 && v.find_first_not_of("0123456789") == std::string::npos;
    std::int64_t n = 0;
    if (digits)
        for (char c : v) n = n * 10 + (c - '0');
    if (digits && n >= lo && n <= hi) return std::chrono::seconds(n);
    if (!ec) {
        ec = errc::invalid_option;
        what = std::string(name) + " must be a whole number of seconds from " + std::to_string(lo) + " to " +
               std::to_string(hi) + (digits ? " (got " + v + ")" : " (got something else)");
    }
    return std::nullopt;
}
} // namespace detail

/** Reads the settings through `lookup`.

    `SEKUIRE_HEARTBEAT_INTERVAL` must be a whole number of seconds from 1 to 86400 and
    `SEKUIRE_STARTUP_JITTER` one from 0 to 300 (the ranges of `sekuire::limits`); anything
    else sets `ec` to `errc::invalid_option` and `what` (when given) to a message naming
    the variable and its range (a value that is not a number is not echoed: it might be a
    misplaced secret). Values are trimmed of surrounding white space.
*/
inline env_settings read_env(const env_lookup& lookup, error_code& ec, std::string* what = nullptr) {
    ec = {};
    env_settings s;
    auto get = [&](const char* name) -> std::string {
        auto v = lookup ? lookup(name) : std::nullopt;
        if (!v) return {};
        std::string& x = *v;
        const auto first = x.find_first_not_of(" \t\r\n");
        if (first == std::string::npos) return {};
        const auto last = x.find_last_not_of(" \t\r\n");
        return x.substr(first, last - first + 1);
    };
    namespace e = protocol::env;
    s.api_url = get(e::api_url);
    s.agent_id = get(e::agent_id);
    s.install_token = get(e::install_token);
    s.api_key = get(e::api_key);
    s.workspace_id = get(e::workspace_id);
    s.installation_id = get(e::installation_id);
    s.refresh_token = get(e::refresh_token);
    s.runtime_token = get(e::runtime_token);
    s.credentials_file = get(e::credentials_file);
    std::string message;
    s.heartbeat_interval = detail::env_seconds(e::heartbeat_interval, get(e::heartbeat_interval), 1, 86400, ec, message);
    s.startup_jitter = detail::env_seconds(e::startup_jitter, get(e::startup_jitter), 0, 300, ec, message);
    const std::string insecure = get(e::allow_insecure_http);
    if (!insecure.empty()) {
        std::string v = insecure;
        for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (v == "1" || v == "true" || v == "yes" || v == "on") {
            s.allow_insecure_http = true;
        } else if (v == "0" || v == "false" || v == "no" || v == "off") {
            s.allow_insecure_http = false;
        } else if (!ec) {
            ec = errc::invalid_option;
            message = std::string(e::allow_insecure_http) + " must be 1, true, yes, on, or 0, false, no, off";
        }
    }
    if (what) *what = std::move(message);
    return s;
}

namespace detail {
/// Copies the settings every options struct shares (beacon, worker, SDK) into `o`.
template <class Options>
void apply_common_env(const env_settings& e, Options& o) {
    if (!e.api_url.empty()) o.api_base_url = e.api_url;
    o.agent_id = e.agent_id;
    o.install_token = e.install_token;
    o.workspace_id = e.workspace_id;
    o.installation_id = e.installation_id;
    o.refresh_token = e.refresh_token;
    o.runtime_token = e.runtime_token;
    o.credentials_file = e.credentials_file;
    if (e.startup_jitter) o.startup_jitter = *e.startup_jitter;
    if (e.allow_insecure_http) o.transport.allow_insecure_http = *e.allow_insecure_http;
}
} // namespace detail

/// Reads the settings; throws `sekuire::error` naming the variable on an invalid value.
inline env_settings read_env(const env_lookup& lookup) {
    error_code ec;
    std::string what;
    env_settings s = read_env(lookup, ec, &what);
    if (ec) throw error(ec, what);
    return s;
}

} // namespace sekuire

#endif
