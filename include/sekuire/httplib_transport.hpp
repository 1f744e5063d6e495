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
/// httplib 0.11 writes to sockets without `MSG_NOSIGNAL`, so writing to a connection the
/// peer has closed raises SIGPIPE, whose default action ends the process. A library must
/// not change process-wide signal dispositions, so on POSIX systems without
/// `SO_NOSIGPIPE` (Linux) the transport blocks SIGPIPE in the calling thread for the
/// duration of each exchange (`pthread_sigmask`) and consumes a SIGPIPE that the exchange
/// raised (`sigtimedwait` with a zero timeout) before it restores the thread's signal mask.
/// A SIGPIPE that was already pending before the exchange is left alone. Where
/// `SO_NOSIGPIPE` exists (macOS, the BSDs) it is set on every socket instead.

#include <sekuire/config.hpp>
#include <sekuire/error.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/transport.hpp>
#include <sekuire/version.hpp>

#include <httplib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if !defined(_WIN32)
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#endif

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

inline int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Strict dotted quad: four decimal parts 0..255 without leading zeros. Looser forms
// ("127.1", "0x7f.1", "0177.0.0.1") are refused rather than guessed at, because resolvers
// disagree on them.
inline bool parse_ipv4(std::string_view s, std::array<unsigned char, 4>& out) noexcept {
    std::size_t part = 0, i = 0;
    while (part < 4) {
        const std::size_t begin = i;
        unsigned value = 0;
        while (i < s.size() && is_digit(s[i]) && i - begin < 3) value = value * 10 + static_cast<unsigned>(s[i++] - '0');
        const std::size_t len = i - begin;
        if (len == 0 || value > 255 || (len > 1 && s[begin] == '0')) return false;
        out[part++] = static_cast<unsigned char>(value);
        if (part < 4) {
            if (i >= s.size() || s[i] != '.') return false;
            ++i;
        }
    }
    return i == s.size();
}

// RFC 4291 text forms, with an optional dotted-quad tail; zone identifiers are refused.
inline bool parse_ipv6(std::string_view s, std::array<unsigned char, 16>& out) noexcept {
    std::array<unsigned, 8> words{};
    int count = 0, gap = -1;
    std::size_t i = 0;
    if (s.size() < 2) return false;
    if (s[0] == ':') {
        if (s[1] != ':') return false;
        gap = 0;
        i = 2;
    }
    while (i < s.size()) {
        if (count == 8) return false;
        std::size_t j = i;
        unsigned value = 0;
        while (j < s.size() && hex_value(s[j]) >= 0 && j - i < 5) value = value * 16 + static_cast<unsigned>(hex_value(s[j++]));
        if (j == i) return false;
        if (j < s.size() && s[j] == '.') {
            std::array<unsigned char, 4> v4{};
            if (count > 6 || !parse_ipv4(s.substr(i), v4)) return false;
            words[static_cast<std::size_t>(count++)] = (unsigned(v4[0]) << 8) | v4[1];
            words[static_cast<std::size_t>(count++)] = (unsigned(v4[2]) << 8) | v4[3];
            i = s.size();
            break;
        }
        if (j - i > 4) return false;
        words[static_cast<std::size_t>(count++)] = value;
        i = j;
        if (i == s.size()) break;
        if (s[i] != ':') return false;
        ++i;
        if (i < s.size() && s[i] == ':') {
            if (gap >= 0) return false;
            gap = count;
            ++i;
        } else if (i == s.size()) {
            return false;
        }
    }
    if (gap < 0) {
        if (count != 8) return false;
    } else {
        if (count > 7) return false;
        const int tail = count - gap;
        for (int k = 0; k < tail; ++k)
            words[static_cast<std::size_t>(7 - k)] = words[static_cast<std::size_t>(count - 1 - k)];
        for (int k = gap; k < 8 - tail; ++k) words[static_cast<std::size_t>(k)] = 0;
    }
    for (std::size_t k = 0; k < 8; ++k) {
        out[2 * k] = static_cast<unsigned char>(words[k] >> 8);
        out[2 * k + 1] = static_cast<unsigned char>(words[k] & 0xff);
    }
    return true;
}

/** True for `localhost`, an address in 127.0.0.0/8, `::1` (in any text form, with or
    without brackets) and `::ffff:127.x.y.z`. Names are not resolved. */
inline bool is_loopback_host(std::string_view host) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (iequals(host, "localhost")) return true;
    std::array<unsigned char, 4> v4{};
    if (parse_ipv4(host, v4)) return v4[0] == 127;
    std::array<unsigned char, 16> v6{};
    if (!parse_ipv6(host, v6)) return false;
    bool zero_head = true;
    for (std::size_t k = 0; k < 10; ++k) zero_head = zero_head && v6[k] == 0;
    if (!zero_head) return false;
    bool loop6 = v6[10] == 0 && v6[11] == 0 && v6[12] == 0 && v6[13] == 0 && v6[14] == 0 && v6[15] == 1;
    bool mapped127 = v6[10] == 0xff && v6[11] == 0xff && v6[12] == 127;
    return loop6 || mapped127;
}

// Host names: dot-separated labels of letters, digits, '-' and '_'. A name whose last
// label is numeric would be read as an IPv4 address by some resolvers, so it must then be
// a strict dotted quad.
inline bool is_valid_host_name(std::string_view host) noexcept {
    if (host.empty() || host.size() > 253) return false;
    std::size_t begin = 0;
    std::string_view last;
    while (begin <= host.size()) {
        std::size_t end = host.find('.', begin);
        if (end == std::string_view::npos) end = host.size();
        const std::string_view label = host.substr(begin, end - begin);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
        for (char c : label) {
            const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '_';
            if (!ok) return false;
        }
        last = label;
        begin = end + 1;
    }
    bool numeric = std::all_of(last.begin(), last.end(), [](char c) { return is_digit(c); });
    if (!numeric && last.size() > 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X'))
        numeric = std::all_of(last.begin() + 2, last.end(), [](char c) { return hex_value(c) >= 0; });
    if (numeric) {
        std::array<unsigned char, 4> v4{};
        return parse_ipv4(host, v4);
    }
    return true;
}

/** Parses and normalises a base URL (see `httplib_transport_options::base_url`).

    Returns false and sets `ec` to `errc::invalid_url` when the URL is not acceptable;
    `out` is then unspecified. Does not apply the insecure-http rule.
*/
inline bool parse_base_url(std::string_view url, parsed_url& out, error_code& ec) {
    ec = {};
    auto fail = [&ec] {
        ec = errc::invalid_url;
        return false;
    };
    if (url.empty() || url.size() > 2048) return fail();
    for (char c : url) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == '\\') return fail();
    }
    const std::size_t sep = url.find("://");
    if (sep == std::string_view::npos) return fail();
    std::string scheme(url.substr(0, sep));
    for (char& c : scheme) c = ascii_lower(c);
    if (scheme != "http" && scheme != "https") return fail();

    const std::string_view rest = url.substr(sep + 3);
    const std::size_t authority_end = rest.find_first_of("/?#");
    const std::string_view authority = rest.substr(0, authority_end);
    const std::string_view path = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
    if (!path.empty() && path.front() != '/') return fail(); // a query or fragment
    if (path.find_first_of("?#") != std::string_view::npos) return fail();
    if (authority.empty() || authority.find_first_of("@%") != std::string_view::npos) return fail();

    std::string_view host, port_text;
    bool has_port = false;
    if (authority.front() == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) return fail();
        host = authority.substr(1, close - 1);
        std::array<unsigned char, 16> v6{};
        if (!parse_ipv6(host, v6)) return fail();
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return fail();
            has_port = true;
            port_text = after.substr(1);
        }
    } else {
        const std::size_t colon = authority.find(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) {
            has_port = true;
            port_text = authority.substr(colon + 1);
        }
        if (!is_valid_host_name(host)) return fail();
    }

    int port = scheme == "https" ? 443 : 80;
    if (has_port) {
        if (port_text.empty() || port_text.size() > 5) return fail();
        int value = 0;
        for (char c : port_text) {
            if (!is_digit(c)) return fail();
            value = value * 10 + (c - '0');
        }
        if (value < 1 || value > 65535) return fail();
        port = value;
    }

    std::string_view prefix = path;
    while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);

    out.scheme = std::move(scheme);
    out.host.assign(host.begin(), host.end());
    for (char& c : out.host) c = ascii_lower(c);
    out.port = port;
    out.path_prefix.assign(prefix.begin(), prefix.end());
    out.loopback = is_loopback_host(out.host);
    return true;
}

/// `host[:port]` as sent in the Host header: IPv6 in brackets, the scheme's default port
/// left out.
inline std::string host_header_value(const parsed_url& u) {
    std::string v = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
    if (u.port != (u.scheme == "https" ? 443 : 80)) v += ":" + std::to_string(u.port);
    return v;
}

inline bool is_token_char(char c) noexcept {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c)) return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

inline bool is_valid_header_name(std::string_view name) noexcept {
    return !name.empty() && std::all_of(name.begin(), name.end(), is_token_char);
}

inline bool is_valid_header_value(std::string_view value) noexcept {
    return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// The target goes on the request line unencoded (httplib's own encoding is turned off, it
// would re-encode an already encoded query), so it must be printable ASCII.
inline bool is_valid_target(std::string_view target) noexcept {
    if (target.empty() || target.front() != '/' || target.size() > 8192) return false;
    for (char c : target) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == '#') return false;
    }
    return true;
}

/** Checks a request and builds the header fields sent with it: the caller's fields, then
    `User-Agent`, `Host` and (for a non-empty body) `Content-Type: application/json` unless
    the caller gave them.

    Errors: `errc::invalid_url` for a target that is not an origin-form path (printable
    ASCII, starting with `/`, no fragment); `errc::invalid_argument` for a header name that
    is not a token, a value holding CR, LF or NUL, a `Content-Length` or
    `Transfer-Encoding` field (the transport frames the body), or a timeout that is not
    positive.
*/
inline bool prepare_request(const http_request& req, const std::string& user_agent, const std::string& host,
                            header_list& out, error_code& ec) {
    ec = {};
    if (!is_valid_target(req.target)) {
        ec = errc::invalid_url;
        return false;
    }
    if (req.timeout <= std::chrono::milliseconds::zero()) {
        ec = errc::invalid_argument;
        return false;
    }
    out.clear();
    out.reserve(req.headers.size() + 3);
    for (const auto& h : req.headers) {
        if (!is_valid_header_name(h.name) || !is_valid_header_value(h.value) || iequals(h.name, "Content-Length") ||
            iequals(h.name, "Transfer-Encoding")) {
            ec = errc::invalid_argument;
            return false;
        }
        out.push_back(h);
    }
    if (!find_header(req.headers, "User-Agent")) out.push_back({"User-Agent", user_agent});
    if (!find_header(req.headers, "Host")) out.push_back({"Host", host});
    if (!req.body.empty() && !find_header(req.headers, "Content-Type"))
        out.push_back({"Content-Type", "application/json"});
    return true;
}

// Error enumerators that only newer httplib versions have, detected so that this header
// compiles against 0.11 and still maps them precisely.
#define SEKUIRE_DETAIL_HTTPLIB_ERROR_PROBE(name)                                                  \
    template <class E, class = void>                                                              \
    struct httplib_error_##name {                                                                 \
        static constexpr bool is(E) noexcept { return false; }                                    \
    };                                                                                            \
    template <class E>                                                                            \
    struct httplib_error_##name<E, std::void_t<decltype(E::name)>> {                             \
        static constexpr bool is(E e) noexcept { return e == E::name; }                           \
    };
SEKUIRE_DETAIL_HTTPLIB_ERROR_PROBE(SSLServerHostnameVerification)
SEKUIRE_DETAIL_HTTPLIB_ERROR_PROBE(ProxyConnection)
SEKUIRE_DETAIL_HTTPLIB_ERROR_PROBE(ConnectionClosed)
SEKUIRE_DETAIL_HTTPLIB_ERROR_PROBE(Timeout)
SEKUIRE_DETAIL_HTTPLIB_ERROR_PROBE(ExceedMaxPayloadSize)
#undef SEKUIRE_DETAIL_HTTPLIB_ERROR_PROBE

/** Maps an httplib failure to an `errc`. httplib 0.11 reports a read timeout and a lost
    connection both as `Error::Read`; `idle_expired` (the caller measured that the timeout
    had passed) tells them apart. */
inline errc map_httplib_error(httplib::Error e, bool idle_expired) noexcept {
    using E = httplib::Error;
    switch (e) {
    case E::Connection:
    case E::BindIPAddress:
    case E::ConnectionTimeout:
        return errc::connection_failed;
    case E::Read:
    case E::Write:
        return idle_expired ? errc::timeout : errc::connection_lost;
    case E::ExceedRedirectCount:
        return errc::redirect_refused;
    case E::Canceled:
        return errc::canceled;
    case E::SSLConnection:
    case E::SSLLoadingCerts:
    case E::SSLServerVerification:
        return errc::tls_failed;
    default:
        break;
    }
    if (httplib_error_SSLServerHostnameVerification<E>::is(e)) return errc::tls_failed;
    if (httplib_error_ProxyConnection<E>::is(e)) return errc::connection_failed;
    if (httplib_error_Timeout<E>::is(e)) return errc::timeout;
    if (httplib_error_ExceedMaxPayloadSize<E>::is(e)) return errc::response_too_large;
    if (httplib_error_ConnectionClosed<E>::is(e)) return errc::connection_lost;
    return errc::connection_lost;
}

// httplib 0.11 measures its read timeout per recv; a read that failed after at least 90%
// of the timeout without data is taken as the timeout (the margin absorbs timer slack).
inline bool idle_expired(std::chrono::steady_clock::duration idle, std::chrono::milliseconds timeout) noexcept {
    return idle >= timeout - timeout / 10;
}

// Longer timeouts are capped: some httplib builds convert them to int milliseconds.
inline std::chrono::milliseconds cap_timeout(std::chrono::milliseconds t) noexcept {
    return (std::min)(t, std::chrono::milliseconds(std::chrono::hours(24)));
}

/** Blocks SIGPIPE in the calling thread for its lifetime and consumes a SIGPIPE raised
    meanwhile (see the file's documentation). A no-op where `SO_NOSIGPIPE` or Windows
    makes it unnecessary. */
#if !defined(_WIN32) && !defined(SO_NOSIGPIPE)
class sigpipe_guard {
public:
    sigpipe_guard() noexcept {
        sigemptyset(&set_);
        sigaddset(&set_, SIGPIPE);
        sigset_t pending;
        sigemptyset(&pending);
        was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
        active_ = pthread_sigmask(SIG_BLOCK, &set_, &old_) == 0;
    }

    ~sigpipe_guard() {
        if (!active_) return;
        const int saved_errno = errno;
        if (!was_pending_) {
            sigset_t pending;
            sigemptyset(&pending);
            if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
                const timespec zero{0, 0};
                while (sigtimedwait(&set_, nullptr, &zero) < 0 && errno == EINTR) {
                }
            }
        }
        pthread_sigmask(SIG_SETMASK, &old_, nullptr);
        errno = saved_errno;
    }

    sigpipe_guard(const sigpipe_guard&) = delete;
    sigpipe_guard& operator=(const sigpipe_guard&) = delete;

private:
    sigset_t set_;
    sigset_t old_;
    bool was_pending_ = false;
    bool active_ = false;
};
#else
class sigpipe_guard {
public:
    sigpipe_guard() noexcept {}
    sigpipe_guard(const sigpipe_guard&) = delete;
    sigpipe_guard& operator=(const sigpipe_guard&) = delete;
};
#endif

// httplib renamed set_url_encode to set_path_encode; whichever exists is turned off.
template <class C>
auto disable_path_encoding(C& c, int) -> decltype(c.set_path_encode(false), void()) {
    c.set_path_encode(false);
}
template <class C>
auto disable_path_encoding(C& c, long) -> decltype(c.set_url_encode(false), void()) {
    c.set_url_encode(false);
}

// Newer httplib versions check the host name separately from the chain.
template <class C>
auto set_hostname_verification(C& c, bool on, int) -> decltype(c.enable_server_hostname_verification(on), void()) {
    c.enable_server_hostname_verification(on);
}
template <class C>
void set_hostname_verification(C&, bool, long) {}

inline http_response to_response_head(const httplib::Response& r) {
    http_response head;
    head.status = r.status;
    head.headers.reserve(r.headers.size());
    for (const auto& kv : r.headers) head.headers.push_back({kv.first, kv.second});
    return head;
}

// Content-Length above the limit (or unparseable as a bounded number): refuse early.
inline bool declared_length_exceeds(const std::string& value, std::size_t limit) noexcept {
    std::size_t n = 0;
    bool any = false;
    for (char c : value) {
        if (c == ' ' || c == '\t') continue;
        if (!is_digit(c)) return false; // malformed: let httplib judge it
        any = true;
        const auto d = static_cast<std::size_t>(c - '0');
        if (n > (limit - d) / 10) return true;
        n = n * 10 + d;
    }
    return any && n > limit;
}

/** Shuts connections down from a thread of its own: a `send()` at its deadline, a
    `stream()` as soon as it is stopped.

    httplib 0.11 has no total deadline, and `Client::stop()` (its one cross-thread call)
    waits for a connect or TLS handshake under way, because it takes the lock the connect
    holds. So neither the thread that sends nor a thread that requests a stop may call it:
    this thread does. A client it has stopped is stopped again every `repeat` until its
    call ends, because a stop that lands before the call has opened its connection does
    nothing. While it is blocked in one client's connect, the other watches wait.

    The thread starts with the first watch, blocks every signal, and sleeps on a condition
    variable while nothing is due. */
class connection_watchdog {
public:
    using clock = std::chrono::steady_clock;
    static constexpr std::chrono::milliseconds repeat{50};

    /// One watched call, on the caller's stack; disarmed at the latest when destroyed.
    struct watch {
        explicit watch(httplib::ClientImpl* c) noexcept : client(c) {}
        watch(const watch&) = delete;
        watch& operator=(const watch&) = delete;
        ~watch() {
            if (owner) owner->disarm(*this);
        }

        httplib::ClientImpl* client;
        connection_watchdog* owner = nullptr; // between arm and disarm
        bool queued = false;                  // has a place in `due_`
        bool fired = false;                   // its client was stopped at least once
        std::multimap<clock::time_point, watch*>::iterator place;
    };

    connection_watchdog() = default;
    connection_watchdog(const connection_watchdog&) = delete;
    connection_watchdog& operator=(const connection_watchdog&) = delete;

    ~connection_watchdog() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            quit_ = true;
        }
        wake_.notify_all(); // whatever wake_at_ says
        if (thread_.joinable()) thread_.join();
    }

    /// Starts watching `w`; its client is stopped at `deadline` (never without one, unless
    /// `stop_now`). False when the thread cannot be started (out of threads).
    bool arm(watch& w, const clock::time_point* deadline) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!thread_.joinable() && !start_locked()) return false;
        w.owner = this;
        if (deadline) enqueue_locked(w, *deadline);
        return true;
    }

    /// Stops `w`'s client as soon as the thread can; nothing once `w` is disarmed.
    void stop_now(watch& w) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (w.owner != this) return;
        if (w.queued) due_.erase(w.place);
        enqueue_locked(w, (clock::time_point::min)());
    }

    /// Ends the watch, after a stop of its client under way has returned. True when the
    /// client was stopped: its connection must not be used again.
    bool disarm(watch& w) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (w.queued) due_.erase(w.place);
        w.queued = false;
        w.owner = nullptr;
        stopped_.wait(lock, [&] { return stopping_ != &w; });
        return w.fired;
    }

private:
    bool start_locked() {
#if !defined(_WIN32)
        // The thread inherits the creator's mask: block everything while creating it.
        sigset_t all, old;
        sigfillset(&all);
        const bool masked = pthread_sigmask(SIG_BLOCK, &all, &old) == 0;
#endif
        bool started = true;
        try {
            thread_ = std::thread([this] { run(); });
        } catch (const std::system_error&) {
            started = false;
        }
#if !defined(_WIN32)
        if (masked) pthread_sigmask(SIG_SETMASK, &old, nullptr);
#endif
        return started;
    }

    void enqueue_locked(watch& w, clock::time_point when) {
        w.place = due_.emplace(when, &w);
        w.queued = true;
        // Only a deadline earlier than the thread's next wake-up needs it awake: requests
        // in a row each have a later deadline than the one before, so a busy transport
        // does not wake the thread once per request.
        if (when < wake_at_) wake_.notify_all();
    }

    void run() {
        std::unique_lock<std::mutex> lock(mutex_);
        while (!quit_) {
            if (due_.empty()) {
                wake_at_ = (clock::time_point::max)();
                wake_.wait(lock);
                wake_at_ = (clock::time_point::min)();
                continue;
            }
            const auto first = due_.begin();
            // A copy: wait_until reads its argument again after waking, when the entry
            // may be gone.
            const clock::time_point when = first->first;
            if (when > clock::now()) {
                wake_at_ = when;
                wake_.wait_until(lock, when);
                wake_at_ = (clock::time_point::min)();
                continue;
            }
            watch* w = first->second;
            due_.erase(first);
            w->fired = true;
            enqueue_locked(*w, clock::now() + repeat);
            stopping_ = w;
            lock.unlock();
            try {
                sigpipe_guard guard; // stopping an idle TLS client writes close_notify
                w->client->stop();
            } catch (...) {
                // a failed lock inside httplib: the next repeat tries again
            }
            lock.lock();
            stopping_ = nullptr;
            stopped_.notify_all();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_;    // due_ changed at its front, or quit_
    std::condition_variable stopped_; // stopping_ was cleared
    std::multimap<clock::time_point, watch*> due_;
    // When the thread wakes up next: max() while it waits for work, min() while it is
    // awake (it looks at due_ before it sleeps again).
    clock::time_point wake_at_ = (clock::time_point::min)();
    watch* stopping_ = nullptr;
    bool quit_ = false;
    std::thread thread_;
};

/// The state shared by all copies of one `httplib_transport`.
struct httplib_transport_state {
    httplib_transport_options opts;
    parsed_url url;
    std::string base_url;
    std::string host_header;
    std::string user_agent;
    error_code init_error;
    const char* init_message = "";

    std::mutex pool_mutex;
    std::vector<std::unique_ptr<httplib::ClientImpl>> idle;
    connection_watchdog watchdog;

    httplib_transport_state() = default;
    httplib_transport_state(const httplib_transport_state&) = delete;
    httplib_transport_state& operator=(const httplib_transport_state&) = delete;

    ~httplib_transport_state() {
        // Closing a TLS connection writes close_notify.
        sigpipe_guard guard;
        idle.clear();
    }

    void init(httplib_transport_options o, error_code& ec) {
        opts = std::move(o);
        base_url = opts.base_url;
        ec = {};
        if (!parse_base_url(opts.base_url, url, ec)) {
            init_message = "httplib_transport: the base URL is not a valid http(s)://host[:port][/prefix] URL";
        } else if (url.scheme == "http" && !url.loopback && !opts.allow_insecure_http) {
            ec = errc::insecure_url;
            init_message = "httplib_transport: plain http is only allowed to loopback hosts";
        } else if (opts.connect_timeout <= std::chrono::milliseconds::zero()) {
            ec = errc::invalid_option;
            init_message = "httplib_transport: connect_timeout must be positive";
        } else if (opts.max_response_size == 0) {
            ec = errc::invalid_option;
            init_message = "httplib_transport: max_response_size must be positive";
        } else if (!is_valid_header_value(opts.user_agent)) {
            ec = errc::invalid_option;
            init_message = "httplib_transport: user_agent holds a line break";
        } else if (!httplib_has_tls && url.scheme == "https") {
            ec = errc::tls_failed;
            init_message = "httplib_transport: https needs cpp-httplib built with OpenSSL; "
                           "this one was built without it";
        }
        init_error = ec;
        if (ec) return;
        base_url = url.scheme + "://" + host_header_value(url) + url.path_prefix;
        host_header = host_header_value(url);
        user_agent = opts.user_agent.empty() ? std::string(sdk_name) + "/" + sdk_version : opts.user_agent;
    }

    std::unique_ptr<httplib::ClientImpl> make_client(error_code& ec) const {
        std::unique_ptr<httplib::ClientImpl> cli;
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (url.scheme == "https") {
            cli = std::make_unique<httplib::SSLClient>(url.host, url.port);
            if (!opts.tls.ca_file.empty() || !opts.tls.ca_dir.empty())
                cli->set_ca_cert_path(opts.tls.ca_file, opts.tls.ca_dir);
            cli->enable_server_certificate_verification(opts.tls.verify_peer);
            if (!opts.tls.verify_peer) set_hostname_verification(*cli, false, 0);
        }
#endif
        if (!cli) cli = std::make_unique<httplib::ClientImpl>(url.host, url.port);
        if (!cli->is_valid()) {
            ec = url.scheme == "https" ? errc::tls_failed : errc::connection_failed;
            return nullptr;
        }
        cli->set_tcp_nodelay(true);
        cli->set_keep_alive(true);
        cli->set_follow_location(false);
        cli->set_connection_timeout(cap_timeout(opts.connect_timeout));
        disable_path_encoding(*cli, 0);
#if defined(SO_NOSIGPIPE)
        cli->set_socket_options([](auto sock) {
            int on = 1;
            ::setsockopt(sock, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof(on));
        });
#endif
        return cli;
    }

    std::unique_ptr<httplib::ClientImpl> take_client(error_code& ec) {
        {
            std::lock_guard<std::mutex> lock(pool_mutex);
            if (!idle.empty()) {
                auto cli = std::move(idle.back());
                idle.pop_back();
                return cli;
            }
        }
        return make_client(ec);
    }

    void give_back(std::unique_ptr<httplib::ClientImpl> cli) {
        {
            std::lock_guard<std::mutex> lock(pool_mutex);
            if (idle.size() < opts.max_idle_connections) {
                idle.push_back(std::move(cli));
                return;
            }
        }
        // cli is closed here, outside the lock.
    }

    void fill_request(httplib::Request& hreq, const http_request& req, const header_list& headers) const {
        hreq.method = to_string(req.method);
        hreq.path = url.path_prefix + req.target;
        for (const auto& h : headers) hreq.headers.emplace(h.name, h.value);
        hreq.body = req.body;
    }
};

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
    explicit httplib_transport(httplib_transport_options opts) : state_(std::make_shared<detail::httplib_transport_state>()) {
        error_code ec;
        state_->init(std::move(opts), ec);
        if (ec) throw error(ec, state_->init_message);
    }

    /** Builds a transport; sets `ec` instead of throwing for the errors listed at the
        throwing constructor. A transport built with an error fails every call with it. */
    httplib_transport(httplib_transport_options opts, error_code& ec)
        : state_(std::make_shared<detail::httplib_transport_state>()) {
        state_->init(std::move(opts), ec);
    }

    /** Builds a transport for `base_url` with shared transport settings (the form
        `basic_beacon` and `basic_worker` use).
        @throws sekuire::error as the constructor from `httplib_transport_options`. */
    httplib_transport(std::string base_url, transport_options opts)
        : httplib_transport(with_base_url(std::move(base_url), std::move(opts))) {}

    /** Builds a transport for `base_url`; sets `ec` instead of throwing. */
    httplib_transport(std::string base_url, transport_options opts, error_code& ec)
        : httplib_transport(with_base_url(std::move(base_url), std::move(opts)), ec) {}

    /** Sends one request and reads the whole response.

        The call is bounded by `req.timeout` in total: connecting (at most
        `connect_timeout`), writing, and reading the head and the body. At the deadline a
        watchdog thread, shared by the copies of the transport and started with the first
        call, shuts the connection down, so a server that trickles its answer byte by byte
        cannot hold the call. One limit of httplib 0.11: a connect or TLS handshake under
        way at the deadline is not interrupted but finishes first (each network wait in
        it is bounded by `connect_timeout`, a name lookup by the system resolver). Any
        HTTP status is a response, 3xx included.

        @param ec set only when no complete response arrived: `errc::connection_failed`,
        `errc::tls_failed`, `errc::timeout`, `errc::connection_lost`,
        `errc::response_too_large` (body over `max_response_size`), `errc::invalid_url`
        (a target that is not a printable-ASCII path starting with `/`),
        `errc::invalid_argument` (a bad header field or a non-positive timeout), or the
        construction error.
        @par Thread Safety
        Safe to call concurrently.
    */
    http_response send(const http_request& req, error_code& ec) {
        SEKUIRE_ASSERT(state_ != nullptr);
        auto& st = *state_;
        ec = {};
        if (st.init_error) {
            ec = st.init_error;
            return {};
        }
        header_list headers;
        if (!detail::prepare_request(req, st.user_agent, st.host_header, headers, ec)) return {};

        using clock = std::chrono::steady_clock;
        const auto timeout = detail::cap_timeout(req.timeout);
        const auto start = clock::now();
        detail::sigpipe_guard sigpipe;
        auto cli = st.take_client(ec);
        if (!cli) return {};
        cli->set_connection_timeout((std::min)(detail::cap_timeout(st.opts.connect_timeout), timeout));
        cli->set_read_timeout(timeout);
        cli->set_write_timeout(timeout);

        http_response out;
        bool too_large = false, deadline_passed = false;
        auto last_activity = start;
        const std::size_t limit = st.opts.max_response_size;

        httplib::Request hreq;
        st.fill_request(hreq, req, headers);
        // The watchdog shuts the connection down at the deadline; the handlers below also
        // check it whenever something arrives.
        hreq.response_handler = [&](const httplib::Response& r) -> bool {
            last_activity = clock::now();
            if (last_activity - start >= timeout) {
                deadline_passed = true;
                return false;
            }
            const auto it = r.headers.find("Content-Length");
            if (it != r.headers.end() && detail::declared_length_exceeds(it->second, limit)) {
                too_large = true;
                return false;
            }
            return true;
        };
        hreq.content_receiver = [&](const char* data, std::size_t size, auto, auto) -> bool {
            last_activity = clock::now();
            if (last_activity - start >= timeout) {
                deadline_passed = true;
                return false;
            }
            if (size > limit - out.body.size()) {
                too_large = true;
                return false;
            }
            out.body.append(data, size);
            return true;
        };

        httplib::Response hres;
        httplib::Error herr = httplib::Error::Success;
        detail::connection_watchdog::watch watch(cli.get());
        const auto deadline = start + timeout;
        // Without the watchdog thread (none could be started) the handlers and the
        // per-read timeout still bound the call, as long as the head does not trickle.
        const bool watched = st.watchdog.arm(watch, &deadline);
        const bool ok = cli->send(hreq, hres, herr);
        const bool cut = watched && st.watchdog.disarm(watch);
        if (ok && !too_large && !deadline_passed) {
            // Complete, though the deadline may have cut the connection just after.
            out.status = hres.status;
            out.headers = detail::to_response_head(hres).headers;
            if (!cut) st.give_back(std::move(cli));
            return out;
        }
        if (too_large) {
            ec = errc::response_too_large;
        } else if (deadline_passed || cut) {
            ec = errc::timeout;
        } else {
            const auto now = clock::now();
            const bool expired = now - start >= timeout || detail::idle_expired(now - last_activity, timeout);
            ec = detail::map_httplib_error(herr, expired);
        }
        return {}; // the failed connection is dropped, not pooled
    }

    /** Sends one request; throws instead of reporting through an `error_code`.
        @throws sekuire::error with the codes listed at the other overload. */
    http_response send(const http_request& req) {
        error_code ec;
        http_response res = send(req, ec);
        detail::throw_if(ec, "httplib_transport::send");
        return res;
    }

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

        @param ec `errc::canceled` after a stop; `errc::timeout` when the idle timeout
        fired; `errc::connection_failed` (also when the watchdog thread cannot be
        started), `errc::tls_failed`, `errc::connection_lost`, or the request errors
        listed at `send()`.
        @throws whatever a callback throws, after the connection is closed.
        @par Thread Safety
        Safe to call concurrently; `stop` may be stopped from any thread.
    */
    void stream(const http_request& req, stream_callbacks& cb, const stop_token& stop, error_code& ec) {
        SEKUIRE_ASSERT(state_ != nullptr);
        auto& st = *state_;
        ec = {};
        if (st.init_error) {
            ec = st.init_error;
            return;
        }
        header_list headers;
        if (!detail::prepare_request(req, st.user_agent, st.host_header, headers, ec)) return;
        if (stop.stop_requested()) {
            ec = errc::canceled;
            return;
        }

        using clock = std::chrono::steady_clock;
        const auto timeout = detail::cap_timeout(req.timeout);
        detail::sigpipe_guard sigpipe;
        auto cli = st.make_client(ec);
        if (!cli) return;
        cli->set_read_timeout(timeout);
        cli->set_write_timeout(timeout);

        std::atomic<bool> stopped{false};
        bool consumer_ended = false, head_delivered = false;
        std::exception_ptr failure;
        auto last_activity = clock::now();

        httplib::Request hreq;
        st.fill_request(hreq, req, headers);
        // Hands something to the consumer: false ends the exchange (stopped, the consumer
        // said so, or it threw; the exception is rethrown to the caller afterwards).
        auto deliver = [&](auto&& hand_over) -> bool {
            last_activity = clock::now();
            if (stopped.load()) return false;
            try {
                if (!hand_over()) {
                    consumer_ended = true;
                    return false;
                }
            } catch (...) {
                failure = std::current_exception();
                return false;
            }
            return true;
        };
        hreq.response_handler = [&](const httplib::Response& r) -> bool {
            return deliver([&] {
                head_delivered = true;
                return !cb.on_response || cb.on_response(detail::to_response_head(r));
            });
        };
        hreq.content_receiver = [&](const char* data, std::size_t size, auto, auto) -> bool {
            return deliver([&] { return !cb.on_data || cb.on_data(std::string_view(data, size)); });
        };

        httplib::Response hres;
        httplib::Error herr = httplib::Error::Success;
        detail::connection_watchdog::watch watch(cli.get());
        if (!st.watchdog.arm(watch, nullptr)) {
            ec = errc::connection_failed; // out of threads: a stream that cannot be stopped is not opened
            return;
        }
        bool ok = false;
        {
            // The stopping thread only hands the connection to the watchdog: it never
            // waits for a connect or a TLS handshake under way.
            auto on_stop = [&stopped, &st, &watch] {
                stopped.store(true);
                st.watchdog.stop_now(watch);
            };
            stop_callback<decltype(on_stop)> registration(stop, on_stop);
            if (!stopped.load()) ok = cli->send(hreq, hres, herr);
        }
        st.watchdog.disarm(watch);

        if (failure) std::rethrow_exception(failure);
        if (consumer_ended) return;
        if (ok) {
            // httplib skips the response handler for bodiless answers (204).
            if (!head_delivered && cb.on_response) cb.on_response(detail::to_response_head(hres));
            return;
        }
        if (stopped.load()) {
            ec = errc::canceled;
            return;
        }
        ec = detail::map_httplib_error(herr, detail::idle_expired(clock::now() - last_activity, timeout));
    }

    /** Runs a streaming request; throws instead of reporting through an `error_code`.
        @throws sekuire::error with the codes listed at the other overload. */
    void stream(const http_request& req, stream_callbacks& cb, const stop_token& stop) {
        error_code ec;
        stream(req, cb, stop, ec);
        detail::throw_if(ec, "httplib_transport::stream");
    }

    /** The normalised base URL (lower-case scheme and host, the port when it is not the
        scheme's default, no trailing slash), or the given text when it was refused. */
    const std::string& base_url() const noexcept { return state_->base_url; }

    /** The options the transport was built with. */
    const httplib_transport_options& options() const noexcept { return state_->opts; }

private:
    static httplib_transport_options with_base_url(std::string base_url, transport_options opts) {
        httplib_transport_options o;
        static_cast<transport_options&>(o) = std::move(opts);
        o.base_url = std::move(base_url);
        return o;
    }

    std::shared_ptr<detail::httplib_transport_state> state_;
};

} // namespace sekuire

#endif
