// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_ENV_HPP
#define SEKUIRE_ENV_HPP

/// @file
/// Reading the `SEKUIRE_*` environment of protocol.md section 8, through an injectable
/// lookup so that it is testable without touching the process environment.

#include <sekuire/credential_store.hpp>
#include <sekuire/error.hpp>
#include <sekuire/protocol.hpp>

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
    std::string api_url;
    std::string agent_id;
    std::string install_token;
    std::string api_key;
    std::string workspace_id;
    std::string installation_id;
    std::string refresh_token;
    std::string runtime_token;
    std::string credentials_file;
    std::optional<std::chrono::seconds> heartbeat_interval;

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

/** Reads the settings through `lookup`.

    `SEKUIRE_HEARTBEAT_INTERVAL` must be a whole number of seconds from 1 to 86400;
    anything else sets `ec` to `errc::invalid_option` (the variable's value is not echoed:
    it might be a misplaced secret). Values are trimmed of surrounding white space.
*/
inline env_settings read_env(const env_lookup& lookup, error_code& ec) {
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
    const std::string interval = get(e::heartbeat_interval);
    if (!interval.empty()) {
        std::int64_t v = 0;
        bool ok = interval.size() <= 6;
        for (char c : interval) {
            if (c < '0' || c > '9') ok = false;
            if (ok) v = v * 10 + (c - '0');
        }
        if (!ok || v < 1 || v > 86400) {
            ec = errc::invalid_option;
        } else {
            s.heartbeat_interval = std::chrono::seconds(v);
        }
    }
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
}
} // namespace detail

/// Reads the settings; throws `sekuire::error` naming the variable on an invalid value.
inline env_settings read_env(const env_lookup& lookup) {
    error_code ec;
    env_settings s = read_env(lookup, ec);
    if (ec)
        throw error(ec, std::string(protocol::env::heartbeat_interval) + " must be a whole number of seconds from 1 to 86400");
    return s;
}

} // namespace sekuire

#endif
