// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_HTTP_COMMON_HPP
#define SEKUIRE_DETAIL_HTTP_COMMON_HPP

/// @file
/// What the network transports share: parsing and checking a base URL, loopback and IP
/// literal detection, checking a request and listing the header fields sent with it.
/// Internal: no HTTP library is included here.

#include <sekuire/config.hpp>
#include <sekuire/error.hpp>
#include <sekuire/transport.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace sekuire {
namespace detail {

/** The parts of a base URL, as `parse_base_url` returns them. */
struct parsed_url {
    std::string scheme;      ///< `http` or `https`, lower case
    std::string host;        ///< lower case; an IPv6 address without its brackets
    int port = 0;            ///< the explicit port, or 80 / 443
    std::string path_prefix; ///< empty or `/...` without a trailing slash
    bool loopback = false;   ///< `is_loopback_host(host)`
};

inline char ascii_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

inline bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

SEKUIRE_DECL int hex_value(char c) noexcept;

// Strict dotted quad: four decimal parts 0..255 without leading zeros. Looser forms
// ("127.1", "0x7f.1", "0177.0.0.1") are refused rather than guessed at, because resolvers
// disagree on them.
SEKUIRE_DECL bool parse_ipv4(std::string_view s, std::array<unsigned char, 4>& out) noexcept;

// RFC 4291 text forms, with an optional dotted-quad tail; zone identifiers are refused.
SEKUIRE_DECL bool parse_ipv6(std::string_view s, std::array<unsigned char, 16>& out) noexcept;

/** True for `localhost`, an address in 127.0.0.0/8, `::1` (in any text form, with or
    without brackets) and `::ffff:127.x.y.z`. Names are not resolved. */
SEKUIRE_DECL bool is_loopback_host(std::string_view host);

// Host names: dot-separated labels of letters, digits, '-' and '_'. A name whose last
// label is numeric would be read as an IPv4 address by some resolvers, so it must then be
// a strict dotted quad.
SEKUIRE_DECL bool is_valid_host_name(std::string_view host) noexcept;

/** Parses and normalises a base URL (the base URL of a transport: `http(s)://host[:port][/path-prefix]`).

    Returns false and sets `ec` to `errc::invalid_url` when the URL is not acceptable;
    `out` is then unspecified. Does not apply the insecure-http rule.
*/
SEKUIRE_DECL bool parse_base_url(std::string_view url, parsed_url& out, error_code& ec);

/// `host[:port]` as sent in the Host header: IPv6 in brackets, the scheme's default port
/// left out.
SEKUIRE_DECL std::string host_header_value(const parsed_url& u);

SEKUIRE_DECL bool is_token_char(char c) noexcept;

SEKUIRE_DECL bool is_valid_header_name(std::string_view name) noexcept;

SEKUIRE_DECL bool is_valid_header_value(std::string_view value) noexcept;

// The target goes on the request line unencoded (an already encoded query must not be
// encoded again), so it must be printable ASCII.
SEKUIRE_DECL bool is_valid_target(std::string_view target) noexcept;

/** Checks a request before anything is sent.

    Errors: `errc::invalid_url` for a target that is not an origin-form path (printable
    ASCII, starting with `/`, no fragment); `errc::invalid_argument` for a header name that
    is not a token, a value holding CR, LF or NUL, a `Content-Length` or
    `Transfer-Encoding` field (the transport frames the body), or a timeout that is not
    positive. Allocates nothing.
*/
SEKUIRE_DECL bool validate_request(const http_request& req, error_code& ec) noexcept;

/** Calls `f(name, value)` (both `std::string_view`) for each header field sent with a
    validated request: the caller's fields in order, then `User-Agent`, `Host` and (for a
    non-empty body) `Content-Type: application/json` unless the caller gave them. Both
    transports build their requests through this, so they send the same fields. */
template <class F>
void for_each_request_field(const http_request& req, std::string_view user_agent, std::string_view host, F&& f) {
    bool has_ua = false, has_host = false, has_type = false;
    for (const auto& h : req.headers) {
        has_ua = has_ua || iequals(h.name, "User-Agent");
        has_host = has_host || iequals(h.name, "Host");
        has_type = has_type || iequals(h.name, "Content-Type");
        f(std::string_view(h.name), std::string_view(h.value));
    }
    if (!has_ua) f(std::string_view("User-Agent"), user_agent);
    if (!has_host) f(std::string_view("Host"), host);
    if (!req.body.empty() && !has_type) f(std::string_view("Content-Type"), std::string_view("application/json"));
}

/** `validate_request`, then the fields of `for_each_request_field` as a list (for tests
    and diagnostics; the transports do not copy the fields). */
SEKUIRE_DECL bool prepare_request(const http_request& req, const std::string& user_agent, const std::string& host, header_list& out, error_code& ec);

// Longer timeouts are capped: some httplib builds convert them to int milliseconds, and a
// deadline of now + max() would overflow.
SEKUIRE_DECL std::chrono::milliseconds cap_timeout(std::chrono::milliseconds t) noexcept;

// Content-Length above the limit (or unparseable as a bounded number): refuse early.
SEKUIRE_DECL bool declared_length_exceeds(const std::string& value, std::size_t limit) noexcept;
} // namespace detail
} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/detail/impl/http_common.ipp>
#endif

#endif
