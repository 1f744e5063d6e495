// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_HTTPLIB_TRANSPORT_HPP
#define SEKUIRE_HTTPLIB_TRANSPORT_HPP

/// @file
/// `httplib_transport`, the default Transport policy: HTTP/1.1 over cpp-httplib, with TLS
/// through OpenSSL.
///
/// Works with Debian's split cpp-httplib 0.11 (a compiled library) and with upstream's
/// single header of newer versions; it uses only the API the two have in common. The
/// `CPPHTTPLIB_*_SUPPORT` macros must come from the httplib package (the CMake target
/// `httplib::httplib`), never from the including code: they change class layouts.
///
/// @par SIGPIPE
/// httplib 0.11 writes to sockets with `send(..., 0)` (its `CPPHTTPLIB_SEND_FLAGS` is 0 and
/// Debian's build is compiled), and OpenSSL's socket BIO writes without `MSG_NOSIGNAL` too,
/// so writing to a connection the peer has closed raises SIGPIPE, whose default action
/// ends the process. Linux has no per-socket way to suppress it (`SO_NOSIGPIPE` exists
/// only on macOS and the BSDs, where it is set on every socket). So on other POSIX systems
/// building an `httplib_transport` makes one process-wide decision: when SIGPIPE has its
/// default disposition (`SIG_DFL`) at that moment, it is set to `SIG_IGN`, and writes to a
/// closed connection fail with `EPIPE` instead. A disposition the program chose (ignored
/// already, or a handler of its own) is left alone; a handler then runs for such writes.
/// This costs one `sigaction` call per transport built and none per request (the former
/// per-exchange signal mask cost four). httplib's own `Server` sets `SIG_IGN`
/// unconditionally.


#include <sekuire/config.hpp>
#include <sekuire/error.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/transport.hpp>

#include <memory>
#include <string>

namespace sekuire {

/// Whether the cpp-httplib this program is built against has TLS: its package's
/// `CPPHTTPLIB_OPENSSL_SUPPORT`, which sekuire only reads (here, and where
/// `httplib::SSLClient`, which exists only then, is named). Without it, https base URLs
/// are refused with `errc::tls_failed`.
inline constexpr bool httplib_has_tls =
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
    true;
#else
    false;
#endif

/** Options of an `httplib_transport`: the base URL and the transport settings shared
    with other transports (`transport_options` in `transport.hpp`).

    Notes on the inherited fields, as this transport applies them:
    - `tls.verify_peer = false` disables the certificate chain and the host name checks
      and makes the connection open to interception: for tests against a local server
      only. When both `tls.ca_file` and `tls.ca_dir` are set, httplib 0.11 uses only
      `ca_file`. A CA file that cannot be loaded fails each request with
      `errc::tls_failed`.
    - `allow_insecure_http`: plain http is always allowed to loopback hosts (localhost,
      127.0.0.0/8, ::1); this opts in for other hosts, where tokens travel in clear text.
    - `connect_timeout` bounds the TCP connect; `send()` uses the smaller of it and the
      request's timeout.
    - `max_response_size` bounds `send()` bodies (checked against Content-Length and
      while receiving); streams are not bounded. It does not bound the response head:
      httplib 0.11 reads the status line and the header lines without a size limit
      before the transport sees them, so there the deadline of `send()` is what bounds
      them (to what arrives within `req.timeout`). Newer httplib versions cap the
      number and the length of header lines.
    - `max_idle_connections`: idle kept-alive connections kept for `send()` (0: none).
    - Timeouts longer than 24 hours are capped at 24 hours.
*/
struct httplib_transport_options : transport_options {
    /// `http(s)://host[:port][/path-prefix]`. The host may be a name, an IPv4 address or an
    /// IPv6 address in brackets. User information, a query and a fragment are refused; a
    /// trailing slash of the path prefix is dropped.
    std::string base_url;
};

namespace detail {
struct httplib_transport_state;
} // namespace detail

/** The default Transport policy (see `transport.hpp`): HTTP/1.1 over cpp-httplib, HTTPS
    through OpenSSL.

    Every connection has TCP_NODELAY and keep-alive on and never follows redirects: a 3xx
    answer is returned as a response, so a token never travels to another host. The base
    URL's path prefix is prepended to each request's target; `User-Agent`, `Host` and, for
    a non-empty body without one, `Content-Type: application/json` are added.

    `send()` keeps a small pool of idle kept-alive connections, shared by all copies of the
    transport. `stream()` opens a dedicated connection per call, so a long stream never
    delays `send()`.

    Error messages never contain header values (they carry tokens); nothing is printed.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe; `send()` and `stream()` may run
    concurrently from several threads, on one object or on copies. A moved-from transport
    may only be assigned to or destroyed.
*/
class httplib_transport {
public:
    /** Builds a transport; no connection is opened yet.

        @throws sekuire::error with `errc::invalid_url` (a base URL that cannot be parsed,
        or user information, a query or a fragment in it), `errc::insecure_url` (plain http
        to a host other than loopback without `allow_insecure_http`), `errc::tls_failed`
        (https with an httplib built without OpenSSL), `errc::invalid_option` (a
        non-positive `connect_timeout` or `max_response_size`, a line break in
        `user_agent`).
    */
    SEKUIRE_DECL explicit httplib_transport(httplib_transport_options opts);

    /** Builds a transport; sets `ec` instead of throwing for the errors listed at the
        throwing constructor. A transport built with an error fails every call with it. */
    SEKUIRE_DECL httplib_transport(httplib_transport_options opts, error_code& ec);

    /** Builds a transport for `base_url` with shared transport settings (the form
        `basic_beacon` and `basic_worker` use).
        @throws sekuire::error as the constructor from `httplib_transport_options`. */
    SEKUIRE_DECL httplib_transport(std::string base_url, transport_options opts);

    /** Builds a transport for `base_url`; sets `ec` instead of throwing. */
    SEKUIRE_DECL httplib_transport(std::string base_url, transport_options opts, error_code& ec);

    /** Sends one request and reads the whole response.

        The call is bounded by `req.timeout` in total: connecting (at most
        `connect_timeout`), writing, and reading the head and the body. At the deadline a
        watchdog thread, shared by the copies of the transport and started with the first
        call, shuts the connection down, so a server that trickles its answer byte by byte
        cannot hold the call. One limit of httplib 0.11: a connect or TLS handshake under
        way at the deadline is not interrupted but finishes first (each network wait in
        it is bounded by `connect_timeout`, a name lookup by the system resolver). Any
        HTTP status is a response, 3xx included.

        @param req the request; its target is relative to the base URL.
        @param ec set only when no complete response arrived: `errc::connection_failed`,
        `errc::tls_failed`, `errc::timeout`, `errc::connection_lost`,
        `errc::response_too_large` (body over `max_response_size`), `errc::invalid_url`
        (a target that is not a printable-ASCII path starting with `/`),
        `errc::invalid_argument` (a bad header field or a non-positive timeout), or the
        construction error.
        @par Thread Safety
        Safe to call concurrently.
    */
    SEKUIRE_DECL http_response send(const http_request& req, error_code& ec);

    /** Sends one request; throws instead of reporting through an `error_code`.
        @throws sekuire::error with the codes listed at the other overload; the message
        says when a proxy refused the tunnel (407 or another status). */
    SEKUIRE_DECL http_response send(const http_request& req);

    /** Runs a streaming request on a connection of its own.

        Calls `cb.on_response` once with the status and headers (any status; the body is
        empty), then `cb.on_data` with each chunk of the body as it arrives. Returns when the
        body ends, when a callback returns false (no error), when `stop` is stopped, or when
        the connection fails. `req.timeout` is the longest silence allowed between two
        reads; the stream as a whole has no time or size bound.

        A stop request from any thread returns at once: it hands the connection to the
        transport's watchdog thread, which shuts it down. A stop that lands while the
        connection is being opened takes effect when the connect or TLS handshake has
        finished (httplib 0.11 cannot interrupt them; each network wait in them is bounded
        by `connect_timeout`).

        @param req the request; its target is relative to the base URL.
        @param cb the callbacks that receive the head and the body's chunks.
        @param stop ends the stream when stopped, from any thread.
        @param ec `errc::canceled` after a stop; `errc::timeout` when the idle timeout
        fired; `errc::connection_failed` (also when the watchdog thread cannot be
        started), `errc::tls_failed`, `errc::connection_lost`, or the request errors
        listed at `send()`.
        @throws whatever a callback throws, after the connection is closed.
        @par Thread Safety
        Safe to call concurrently; `stop` may be stopped from any thread.
    */
    SEKUIRE_DECL void stream(const http_request& req, stream_callbacks& cb, const stop_token& stop, error_code& ec);

    /** Runs a streaming request; throws instead of reporting through an `error_code`.
        @throws sekuire::error with the codes listed at the other overload (the message
        says when a proxy refused the tunnel), or whatever a callback throws. */
    SEKUIRE_DECL void stream(const http_request& req, stream_callbacks& cb, const stop_token& stop);

    /** The normalised base URL (lower-case scheme and host, the port when it is not the
        scheme's default, no trailing slash), or the given text when it was refused. */
    SEKUIRE_DECL const std::string& base_url() const noexcept;

    /** The options the transport was built with. */
    SEKUIRE_DECL const httplib_transport_options& options() const noexcept;

    /** Whether requests go through a proxy, and which (`proxy_options`); empty when not. For
        diagnostics: `host:port` only, never credentials. */
    SEKUIRE_DECL std::string proxy() const;

private:
    // Shared by the copies; defined in impl/httplib_transport.ipp, so that this header
    // needs neither httplib.h nor the system's socket headers.
    std::shared_ptr<detail::httplib_transport_state> state_;
};

} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/impl/httplib_transport.ipp>
#endif

#endif
