// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_CONFIG_ERROR_HPP
#define SEKUIRE_CONFIG_ERROR_HPP

/// @file
/// One-line descriptions of configuration errors, for programs built on sekuire: which
/// setting is at fault and its value (masked when it is a secret), without internal names
/// or Boost's ` [sekuire:N]` suffix.
///
/// ```cpp
/// int main() {
///     try {
///         auto sdk = sekuire::sdk::from_env();
///         ...
///     } catch (const std::exception& e) {
///         return sekuire::report_error("my-agent", e);  // one line; 2 for a configuration error, else 1
///     }
/// }
/// ```

#include <sekuire/env.hpp>
#include <sekuire/error.hpp>
#include <sekuire/mask.hpp>
#include <sekuire/protocol.hpp>

#include <cstddef>
#include <exception>
#include <iostream>
#include <ostream>
#include <string>
#include <string_view>

namespace sekuire {

/** Whether an error thrown while setting up (by `from_env()`, an options check or a
    constructor) means that the configuration is wrong, so that retrying cannot help:
    `invalid_url`, `insecure_url`, `invalid_option`, `invalid_argument`, `store_corrupt`,
    `store_io` and `store_insecure` (a credentials file that cannot be used). Pure function.
*/
inline bool is_configuration_error(const error_code& ec) noexcept {
    if (ec.category() != error_category()) return false;
    switch (static_cast<errc>(ec.value())) {
    case errc::invalid_url:
    case errc::insecure_url:
    case errc::invalid_option:
    case errc::invalid_argument:
    case errc::store_corrupt:
    case errc::store_io:
    case errc::store_insecure:
        return true;
    default:
        return false;
    }
}

/** Whether a setting's name says that it holds a secret: it contains `token` or `key`, in
    any case (`SEKUIRE_INSTALL_TOKEN`, `--api-key`), and does not end in `file` (the path of a
    secret file, `--install-token-file`, is not a secret). Pure function. */
inline bool is_secret_setting(std::string_view name) noexcept {
    auto contains = [&](std::string_view word) {
        if (name.size() < word.size()) return false;
        for (std::size_t i = 0; i + word.size() <= name.size(); ++i) {
            bool same = true;
            for (std::size_t k = 0; k < word.size() && same; ++k) {
                char c = name[i + k];
                if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
                same = c == word[k];
            }
            if (same) return true;
        }
        return false;
    };
    if (name.size() >= 4) {
        std::string_view tail = name.substr(name.size() - 4);
        bool file = true;
        for (std::size_t k = 0; k < 4; ++k) {
            char c = tail[k];
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
            file = file && c == "file"[k];
        }
        if (file) return false;
    }
    return contains("token") || contains("key");
}

namespace detail {

// A URL with its user information (`user:password@`) replaced by `***@`.
inline std::string redact_url_userinfo(std::string_view url) {
    const auto scheme = url.find("://");
    if (scheme == std::string_view::npos) return std::string(url);
    const std::size_t start = scheme + 3;
    std::size_t end = url.find_first_of("/?#", start);
    if (end == std::string_view::npos) end = url.size();
    const auto at = url.substr(start, end - start).rfind('@');
    if (at == std::string_view::npos) return std::string(url);
    return std::string(url.substr(0, start)) + "***" + std::string(url.substr(start + at));
}

} // namespace detail

/** `NAME='value'` for a message about a setting: the value masked with `mask_token()` when
    `is_secret_setting(name)`, a URL's user information replaced by `***`, control
    characters escaped, and a value over 200 bytes cut (`...`). Pure function.
*/
inline std::string describe_setting(std::string_view name, std::string_view value) {
    std::string shown = is_secret_setting(name) ? mask_token(value) : detail::redact_url_userinfo(value);
    bool cut = false;
    if (shown.size() > 200) {
        shown.resize(200);
        cut = true;
    }
    std::string out(name);
    out += "='";
    for (const char ch : shown) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7F || c == '\'') {
            static const char digits[] = "0123456789abcdef";
            out += "\\x";
            out += digits[c >> 4];
            out += digits[c & 15];
        } else {
            out += ch;
        }
    }
    out += '\'';
    if (cut) out += "...";
    return out;
}

/** A one-line description of a configuration error, for a program's standard error.

    For an `invalid_url` or `insecure_url` error while `SEKUIRE_API_URL` is set (through
    `lookup`), it names the variable and its value: `SEKUIRE_API_URL='bogus': the URL is not
    a valid http or https URL`. Otherwise it is the exception's message without Boost's
    ` [sekuire:N]` suffix (`error_message()`); sekuire's own messages name the option or the
    variable at fault. Never shows a secret: sekuire's messages never hold one.

    @par Thread Safety
    As `lookup`.
*/
inline std::string describe_configuration_error(const std::exception& e, const env_lookup& lookup = process_env()) {
    std::string text = error_message(e);
    const auto* se = dynamic_cast<const boost::system::system_error*>(&e);
    if (!se || se->code().category() != error_category()) return text;
    const auto code = static_cast<errc>(se->code().value());
    if (code != errc::invalid_url && code != errc::insecure_url) return text;
    const auto url = lookup ? lookup(protocol::env::api_url) : std::nullopt;
    if (!url || url->empty() || text.find(protocol::env::api_url) != std::string::npos) return text;
    std::string out = describe_setting(protocol::env::api_url, *url);
    out += ": ";
    out += se->code().message();
    return out;
}

/** Prints `program: message` as one line on `out` for an exception that ends a program, and
    returns the exit code for it: 2 for a configuration error (`is_configuration_error()`,
    described by `describe_configuration_error()`), 1 for anything else (its message
    without Boost's tag).

    @par Thread Safety
    As `out`.
*/
inline int report_error(std::string_view program, const std::exception& e, std::ostream& out = std::cerr) {
    const auto* se = dynamic_cast<const boost::system::system_error*>(&e);
    const bool config = se && is_configuration_error(se->code());
    std::string line = config ? describe_configuration_error(e) : error_message(e);
    for (auto& c : line)
        if (c == '\n' || c == '\r') c = ' ';
    out << program << ": " << line << std::endl;
    return config ? 2 : 1;
}

} // namespace sekuire

#endif
