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
#include <sekuire/detail/http_common.hpp>
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
