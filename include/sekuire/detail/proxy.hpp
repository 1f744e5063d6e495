// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_PROXY_HPP
#define SEKUIRE_DETAIL_PROXY_HPP

/// @file
/// Proxy handling shared by the transports: the proxy URL, the environment, `NO_PROXY`
/// matching, the `CONNECT` request and the proxy's answer to it. Plain functions without
/// I/O; the transports do the reading and writing.
///
/// The environment follows curl's documented rules (curl(1), ENVIRONMENT; libcurl-env(3);
/// CURLOPT_NOPROXY(3)): `https_proxy`/`HTTPS_PROXY` for https, `http_proxy` for http and
/// only in lower case (an upper-case `HTTP_PROXY` can be set by a CGI request's `Proxy:`
/// header), `all_proxy`/`ALL_PROXY` when the scheme's variable is unset, the lower-case
/// spelling first; `no_proxy`/`NO_PROXY` is a comma-separated list where `*` matches every
/// host, a name matches itself and every name below it (a leading dot is ignored), IPv6
/// addresses are written without brackets and IP addresses may carry a CIDR prefix length.
/// Beyond curl: an entry may end in `:port` (then it matches that port only), `*.` is read
/// as a leading dot, and loopback targets never go through a proxy (the proxy's loopback is
/// not ours).

#include <sekuire/config.hpp>
#include <sekuire/detail/http_common.hpp>
#include <sekuire/error.hpp>
#include <sekuire/transport.hpp>

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sekuire {
namespace detail {

/// A parsed proxy URL.
struct proxy_endpoint {
    std::string host;          ///< lower case; an IPv6 address without brackets
    int port = 0;              ///< the explicit port, or 1080
    std::string authorization; ///< `Basic <base64(user:password)>`, or empty
};

/// Where a transport's connections go.
struct proxy_route {
    bool use = false;     ///< false: straight to the backend
    proxy_endpoint proxy; ///< when `use`
    std::string source;   ///< `options` or the variable the proxy came from (for messages)
};

SEKUIRE_DECL std::string base64_encode(std::string_view in);

// Percent-decoding of user information; false for a malformed escape.
SEKUIRE_DECL bool percent_decode(std::string_view in, std::string& out);

/** Parses `[http://][user[:password]@]host[:port][/]`.

    Returns false and sets `ec` to `errc::invalid_option` for another scheme (https and
    SOCKS proxies are not supported), a bad host or port, a path, a query, a bad
    percent-escape, or a control character or space anywhere. */
SEKUIRE_DECL bool parse_proxy_url(std::string_view text, proxy_endpoint& out, error_code& ec);

// An IP address with an optional /bits prefix: family 4 or 6, 0 when not an address.
struct ip_prefix {
    int family = 0;
    std::array<unsigned char, 16> bytes{};
    int bits = 0;
};

SEKUIRE_DECL ip_prefix parse_ip_prefix(std::string_view s);

SEKUIRE_DECL bool prefix_contains(const ip_prefix& net, const ip_prefix& addr) noexcept;

/** Whether `host` (lower case, IPv6 without brackets) at `port` is in the `NO_PROXY`
    list `list` (see the file's documentation). Entries that cannot be read are skipped. */
SEKUIRE_DECL bool no_proxy_matches(std::string_view list, std::string_view host, int port);

/** Decides the route to `target` from `opts` and, when `opts.from_environment`, the
    environment read through `getenv` (`const char* name` to something testable as a bool
    and dereferenceable to a string, such as `std::optional<std::string>`; an empty value
    counts as unset).

    Returns false with `ec` = `errc::invalid_option` and `message` naming the source when
    the proxy URL that applies cannot be parsed; a URL that does not apply (its target is
    in the no-proxy list, or loopback) is not looked at. */
template <class Getenv>
bool resolve_proxy(const proxy_options& opts, const parsed_url& target, Getenv&& getenv, proxy_route& out,
                   error_code& ec, std::string& message) {
    ec = {};
    out = proxy_route{};
    auto lookup = [&getenv](const char* name, std::string& value) {
        auto v = getenv(name);
        if (!v || std::string_view(*v).empty()) return false;
        value = std::string(*v);
        return true;
    };
    if (target.loopback) return true;

    std::string url, source;
    if (!opts.url.empty()) {
        url = opts.url;
        source = "options";
    } else if (opts.from_environment) {
        const bool https = target.scheme == "https";
        const char* const names_https[] = {"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
        const char* const names_http[] = {"http_proxy", "all_proxy", "ALL_PROXY"};
        if (https) {
            for (const char* n : names_https)
                if (lookup(n, url)) {
                    source = n;
                    break;
                }
        } else {
            for (const char* n : names_http)
                if (lookup(n, url)) {
                    source = n;
                    break;
                }
        }
    }
    if (url.empty()) return true;

    std::string no_proxy = opts.no_proxy;
    if (no_proxy.empty() && opts.from_environment) {
        if (!lookup("no_proxy", no_proxy)) lookup("NO_PROXY", no_proxy);
    }
    if (no_proxy_matches(no_proxy, target.host, target.port)) return true;

    if (!parse_proxy_url(url, out.proxy, ec)) {
        out = proxy_route{};
        message = "the proxy URL from " + source + " is not an http://[user:password@]host[:port] URL";
        return false;
    }
    out.use = true;
    out.source = std::move(source);
    return true;
}

/// `host:port` as the target of a `CONNECT` (IPv6 in brackets; the port always).
SEKUIRE_DECL std::string connect_authority(const parsed_url& target);

/// The `CONNECT` request that opens a tunnel to `target` (with `Proxy-Authorization`
/// when the proxy URL had user information, and nothing else of the caller's).
SEKUIRE_DECL std::string connect_request(const parsed_url& target, const proxy_endpoint& proxy, std::string_view user_agent);

/** The status of a proxy's answer head (`HTTP/1.x NNN ...` up to the empty line), or -1
    when it is not an HTTP/1 status line. */
SEKUIRE_DECL int connect_reply_status(std::string_view head) noexcept;

/** Whether a `CONNECT` answer with `status` opened the tunnel (any 2xx, RFC 9110 9.3.6). */
inline bool connect_succeeded(int status) noexcept { return status >= 200 && status < 300; }

/// The text of a refused `CONNECT`, for error messages (no header of the proxy's).
SEKUIRE_DECL std::string connect_refused_message(int status);

} // namespace detail
} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/detail/impl/proxy.ipp>
#endif

#endif
