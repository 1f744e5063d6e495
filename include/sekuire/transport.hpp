// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TRANSPORT_HPP
#define SEKUIRE_TRANSPORT_HPP

/// @file
/// The Transport policy: what `basic_beacon` and `basic_worker` need to talk HTTP.
///
/// @par Requirements
/// A type `T` is a Transport when, for `t` an lvalue of `T`, `req` a `const http_request&`,
/// `cb` a `stream_callbacks&`, `tok` a `const stop_token&` and `ec` an `error_code&`:
///
/// | expression                    | type            | semantics |
/// |-------------------------------|-----------------|-----------|
/// | `T(t)`                        |                 | copyable; copies may share state (a connection pool) |
/// | `t.send(req, ec)`             | `http_response` | one request, one response. `ec` is set only when no HTTP answer arrived (connect, TLS, timeout, size limit); any status, 2xx or not, is a response. Thread-safe: called from several threads at once. |
/// | `t.stream(req, cb, tok, ec)`  | `void`          | a streaming GET: calls `cb.on_response` once with the status and headers, then `cb.on_data` with each body chunk as it arrives. Returns when the body ends, a callback returns false, `tok` is stopped (from any thread), or the connection fails (`ec` set; `errc::canceled` after a stop). `req.timeout` bounds the silence between two reads. |
///
/// `req.target` is a path with its query, relative to the base URL the transport was
/// built with. Transports never follow redirects: a token must not travel to another host.
///
/// The default is `httplib_transport` (`<sekuire/httplib_transport.hpp>`); tests use
/// `testing::fake_transport`.
///
/// @par AsyncTransport requirements
/// A type `T` is an AsyncTransport when, with the names above, `cbv` a `stream_callbacks`
/// (by value) and `h1`, `h2` completion handlers (or Asio completion tokens) of signatures
/// `void(error_code, http_response)` and `void(error_code)`:
///
/// | expression                      | type          | semantics |
/// |---------------------------------|---------------|-----------|
/// | `T(t)`                          |               | copyable; copies share state (pool, operations under way) |
/// | `t.get_executor()`              | an Asio executor | where the operations run |
/// | `t.async_send(req, h1)`         | the token's   | as `send`, asynchronously: `h1(ec, response)` exactly once, never inside the call; `req` is copied when the operation starts and need not outlive the call; `req.timeout` bounds the whole exchange; an Asio cancellation slot associated with `h1` (terminal cancellation at least) ends it with `errc::canceled` |
/// | `t.async_stream(req, cbv, h2)`  | the token's   | as `stream`, asynchronously (`req` copied as above): the callbacks run on the executor, `h2(ec)` once at the end; cancellation as above, also from inside a callback |
///
/// Operations go through `boost::asio::async_initiate`, so callbacks, `use_future` and
/// (C++20) `use_awaitable` all work. No member blocks the executor. `beast_transport`
/// (`<sekuire/beast_transport.hpp>`) is the implementation; it is a Transport as well.

#include <sekuire/config.hpp>
#include <sekuire/error.hpp>
#include <sekuire/stop_token.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace sekuire {

/// HTTP methods used by the protocol.
enum class http_method { get, post, put, delete_ };

/// The method's name as sent on the wire (`"GET"`, `"POST"`, ...).
inline const char* to_string(http_method m) noexcept {
    switch (m) {
    case http_method::get: return "GET";
    case http_method::post: return "POST";
    case http_method::put: return "PUT";
    case http_method::delete_: return "DELETE";
    }
    return "GET";
}

/// TLS settings of a transport.
struct tls_options {
    /// Verify the server's certificate and host name. Turn off only in tests.
    bool verify_peer = true;
    /// A PEM bundle of trusted CAs; empty: the system default.
    std::string ca_file;
    /// A hashed directory of trusted CAs; empty: the system default.
    std::string ca_dir;
};

/** Proxy settings of a transport (see `docs/concepts/transport.md`, "Proxies").

    https goes through the proxy in a `CONNECT` tunnel with TLS end to end to the backend,
    so the proxy sees only the `CONNECT host:port` line, never a header of a request; plain
    http goes to the proxy as absolute-form requests. Loopback targets never go through a
    proxy.
*/
struct proxy_options {
    /// `http://[user[:password]@]host[:port]` (the scheme may be left out; the port
    /// defaults to 1080, as with curl). Empty: the environment decides, when
    /// `from_environment`. User and password, percent-decoded, are sent as
    /// `Proxy-Authorization: Basic` to the proxy only (on `CONNECT` for https).
    std::string url;
    /// Hosts reached without the proxy, in `NO_PROXY` syntax: a comma-separated list of host
    /// names (each also matches its subdomains; `.example.com` and `*.example.com` mean
    /// `example.com`), IP addresses with an optional `/bits` prefix length, optional `:port`,
    /// or `*` for all.
    /// Empty: the environment's list, when `from_environment`.
    std::string no_proxy;
    /// Read `https_proxy`/`HTTPS_PROXY` (https), `http_proxy` (http; never upper case, as
    /// with curl), `all_proxy`/`ALL_PROXY` and `no_proxy`/`NO_PROXY`, lower case first, when
    /// the fields above are empty. Read once, when the transport is built.
    bool from_environment = true;
};

/** Settings of a network transport (used by `httplib_transport`, `beast_transport`, and
    by any Transport constructible from `(std::string base_url, transport_options)`).
*/
struct transport_options {
    /// Certificate verification and trusted CAs for https.
    tls_options tls;
    /// Allow plain http to hosts other than loopback (a token would travel in clear text).
    bool allow_insecure_http = false;
    /// The longest the TCP connect may take (a request's own timeout may cut it shorter).
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};
    /// `send()` refuses larger response bodies with `errc::response_too_large`.
    std::size_t max_response_size = std::size_t(1) << 20;
    /// The largest response head (status line and header fields) accepted, by the
    /// transports that can bound it (`beast_transport`; httplib 0.11 cannot):
    /// `errc::response_too_large` beyond it.
    std::size_t max_response_header_size = std::size_t(64) << 10;
    /// Kept-alive connections pooled for `send()`: at least this many are kept. Set it to
    /// the number of threads (or operations) that send at once, e.g. a worker's handler
    /// concurrency, so that none of them opens a connection per request.
    std::size_t max_idle_connections = 4;
    /// Also keep as many idle connections as the most `send()` calls seen under way at
    /// once, so that the pool follows the concurrency of its users without tuning.
    bool idle_pool_follows_concurrency = true;
    /// Empty: `sekuire-cpp/<version>`.
    std::string user_agent;
    /// How to reach the backend through a proxy.
    proxy_options proxy;
};

/// One HTTP header field.
struct http_header {
    /// The field name, compared case-insensitively.
    std::string name;
    /// The field value.
    std::string value;
};

/// Header fields in order; lookups are case-insensitive.
using header_list = std::vector<http_header>;

namespace detail {
inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}
} // namespace detail

/// The value of the first header named `name` (case-insensitive), or null.
inline const std::string* find_header(const header_list& headers, std::string_view name) noexcept {
    for (const auto& h : headers)
        if (detail::iequals(h.name, name)) return &h.value;
    return nullptr;
}

/// A request handed to a Transport.
struct http_request {
    /// The request method.
    http_method method = http_method::get;
    /// Path and query, relative to the transport's base URL; starts with `/`.
    std::string target;
    /// Request headers; the transport adds `User-Agent` and the framing headers (`Host`,
    /// `Content-Length`).
    header_list headers;
    /// The request body (empty for none).
    std::string body;
    /// For `send()`: the whole call. For `stream()`: the longest silence between reads.
    std::chrono::milliseconds timeout{std::chrono::seconds(10)};
};

/// A response from `send()`, or the head of a stream (then `body` is empty).
struct http_response {
    /// The HTTP status code.
    int status = 0;
    /// The response headers, in order.
    header_list headers;
    /// The whole body (empty for a stream's head).
    std::string body;
};

/// The callbacks of a streaming request.
struct stream_callbacks {
    /// Called once with the status and headers; return false to end the stream.
    std::function<bool(const http_response& head)> on_response;
    /// Called with each chunk of the body as it arrives; return false to end the stream.
    std::function<bool(std::string_view chunk)> on_data;
};

namespace detail {

template <class T, class = void>
struct transport_has_send : std::false_type {};
template <class T>
struct transport_has_send<T, std::void_t<decltype(std::declval<T&>().send(
                                 std::declval<const http_request&>(), std::declval<error_code&>()))>>
    : std::is_same<decltype(std::declval<T&>().send(std::declval<const http_request&>(),
                                                    std::declval<error_code&>())),
                   http_response> {};

template <class T, class = void>
struct transport_has_stream : std::false_type {};
template <class T>
struct transport_has_stream<T, std::void_t<decltype(std::declval<T&>().stream(
                                   std::declval<const http_request&>(), std::declval<stream_callbacks&>(),
                                   std::declval<const stop_token&>(), std::declval<error_code&>()))>>
    : std::true_type {};

} // namespace detail

/// True when `T` meets the Transport requirements (see the file's documentation).
template <class T>
struct is_transport
    : std::bool_constant<std::is_copy_constructible<T>::value && detail::transport_has_send<T>::value &&
                         detail::transport_has_stream<T>::value> {};

/// Instantiating this names every Transport requirement that `T` misses, one
/// `static_assert` each.
template <class T>
struct check_transport {
    static_assert(std::is_copy_constructible<T>::value, "Transport requirements not met: T must be copy constructible");
    static_assert(detail::transport_has_send<T>::value,
                  "Transport requirements not met: missing `http_response send(const http_request&, error_code&)`");
    static_assert(detail::transport_has_stream<T>::value,
                  "Transport requirements not met: missing `void stream(const http_request&, stream_callbacks&, "
                  "const stop_token&, error_code&)`");
    /// Always true: naming it instantiates the checks above.
    static constexpr bool value = true;
};

namespace detail {

// Archetype completion handlers for the AsyncTransport check.
struct async_send_handler_archetype {
    void operator()(error_code, http_response) const {}
};
struct async_stream_handler_archetype {
    void operator()(error_code) const {}
};

template <class T, class = void>
struct transport_has_executor : std::false_type {};
template <class T>
struct transport_has_executor<T, std::void_t<decltype(std::declval<T&>().get_executor())>> : std::true_type {};

template <class T, class = void>
struct transport_has_async_send : std::false_type {};
template <class T>
struct transport_has_async_send<T, std::void_t<decltype(std::declval<T&>().async_send(
                                       std::declval<const http_request&>(), async_send_handler_archetype{}))>>
    : std::true_type {};

template <class T, class = void>
struct transport_has_async_stream : std::false_type {};
template <class T>
struct transport_has_async_stream<T, std::void_t<decltype(std::declval<T&>().async_stream(
                                         std::declval<const http_request&>(), std::declval<stream_callbacks>(),
                                         async_stream_handler_archetype{}))>> : std::true_type {};

} // namespace detail

/// True when `T` meets the AsyncTransport requirements (see the file's documentation).
template <class T>
struct is_async_transport
    : std::bool_constant<std::is_copy_constructible<T>::value && detail::transport_has_executor<T>::value &&
                         detail::transport_has_async_send<T>::value && detail::transport_has_async_stream<T>::value> {};

/// Instantiating this names every AsyncTransport requirement that `T` misses, one
/// `static_assert` each.
template <class T>
struct check_async_transport {
    static_assert(std::is_copy_constructible<T>::value,
                  "AsyncTransport requirements not met: T must be copy constructible");
    static_assert(detail::transport_has_executor<T>::value, "AsyncTransport requirements not met: missing `get_executor()`");
    static_assert(detail::transport_has_async_send<T>::value,
                  "AsyncTransport requirements not met: missing `async_send(const http_request&, CompletionToken)` "
                  "completing with `void(error_code, http_response)`");
    static_assert(detail::transport_has_async_stream<T>::value,
                  "AsyncTransport requirements not met: missing `async_stream(const http_request&, stream_callbacks, "
                  "CompletionToken)` completing with `void(error_code)`");
    /// Always true: naming it instantiates the checks above.
    static constexpr bool value = true;
};

#if SEKUIRE_HAS_CONCEPTS
/// The Transport requirements as a C++20 concept. The macro below names it in a template head of
/// your own (`template <SEKUIRE_... T>`), and is plain `class` before C++20.
template <class T>
concept transport_policy = is_transport<T>::value;
/// Names `transport_policy` in a template head of your own:
/// `template <SEKUIRE_TRANSPORT T>`. Plain `class` before C++20.
#define SEKUIRE_TRANSPORT ::sekuire::transport_policy
/// The AsyncTransport requirements as a C++20 concept; `SEKUIRE_ASYNC_TRANSPORT` names it in
/// a template head, and is plain `class` before C++20.
template <class T>
concept async_transport_policy = is_async_transport<T>::value;
/// Names `async_transport_policy` in a template head of your own:
/// `template <SEKUIRE_ASYNC_TRANSPORT T>`. Plain `class` before C++20.
#define SEKUIRE_ASYNC_TRANSPORT ::sekuire::async_transport_policy
#else
#define SEKUIRE_TRANSPORT class
#define SEKUIRE_ASYNC_TRANSPORT class
#endif

} // namespace sekuire

#endif
