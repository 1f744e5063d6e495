// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_IMPL_HTTPLIB_TRANSPORT_IPP
#define SEKUIRE_IMPL_HTTPLIB_TRANSPORT_IPP

// The bodies of httplib_transport.hpp, and everything that needs httplib.h: included by the
// header (header-only) or by <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/httplib_transport.hpp>

#include <sekuire/detail/http_common.hpp>
#include <sekuire/detail/proxy.hpp>
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
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace sekuire {
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


/** The process-wide SIGPIPE decision (see the file's documentation): sets SIGPIPE to
    `SIG_IGN` when its disposition is still `SIG_DFL`, and returns whether it did. Leaves
    an ignored SIGPIPE or a handler of the program's alone. Safe to call from any thread
    and more than once (a concurrent change of the disposition by the program wins or
    loses as with any two `sigaction` calls). A no-op returning false where `SO_NOSIGPIPE`
    or Windows makes it unnecessary. */
inline bool ignore_default_sigpipe() noexcept {
#if !defined(_WIN32) && !defined(SO_NOSIGPIPE)
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) != 0) return false;
    if ((current.sa_flags & SA_SIGINFO) != 0 || current.sa_handler != SIG_DFL) return false;
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    return ::sigaction(SIGPIPE, &ignore, nullptr) == 0;
#else
    return false;
#endif
}

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

/// Moves the header fields out of `r` (node by node: the strings are not copied, so the
/// only allocation is the list's).
inline header_list take_headers(httplib::Response& r) {
    header_list out;
    out.reserve(r.headers.size());
    while (!r.headers.empty()) {
        auto node = r.headers.extract(r.headers.begin());
        out.push_back({std::move(node.key()), std::move(node.mapped())});
    }
    return out;
}

#if !defined(_WIN32)
/// A file descriptor closed when destroyed unless released.
class unique_fd {
public:
    explicit unique_fd(int fd = -1) noexcept : fd_(fd) {}
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_;
};

// Waits for `events` on `fd` until `deadline`; false at the deadline or on an error.
inline bool poll_until(int fd, short events, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, static_cast<int>((std::min)(left.count(), std::chrono::milliseconds::rep(60000))));
        if (n > 0) return true;
        if (n < 0 && errno != EINTR) return false;
    }
}

/** Opens a TCP connection to `host:port` (each resolved address in turn) by `deadline`,
    with TCP_NODELAY on; -1 when none answered. The name lookup is the system resolver's
    and not bounded by the deadline. */
inline int connect_tcp(const std::string& host, int port, std::chrono::steady_clock::time_point deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return -1;
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> list(found, ::freeaddrinfo);
    for (addrinfo* ai = found; ai; ai = ai->ai_next) {
        unique_fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
        if (fd.get() < 0) continue;
        const int flags = ::fcntl(fd.get(), F_GETFL, 0);
        if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0) continue;
        if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS || !poll_until(fd.get(), POLLOUT, deadline)) continue;
            int err = 0;
            socklen_t len = sizeof(err);
            if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) continue;
        }
        if (::fcntl(fd.get(), F_SETFL, flags) < 0) continue; // httplib expects a blocking socket
        int on = 1;
        ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
#if defined(SO_NOSIGPIPE)
        ::setsockopt(fd.get(), SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof(on));
#endif
        return fd.release();
    }
    return -1;
}

#if !defined(MSG_NOSIGNAL)
#define SEKUIRE_DETAIL_MSG_NOSIGNAL 0
#else
#define SEKUIRE_DETAIL_MSG_NOSIGNAL MSG_NOSIGNAL
#endif

/** Asks the proxy on `fd` for a tunnel with `request` and reads its answer head, all by
    `deadline`. Returns the proxy's status (-1: no HTTP answer, or a head over
    `max_head`, or bytes after the head), or 0 when the connection failed first. */
inline int open_tunnel(int fd, const std::string& request, std::size_t max_head,
                       std::chrono::steady_clock::time_point deadline) {
    std::size_t sent = 0;
    while (sent < request.size()) {
        if (!poll_until(fd, POLLOUT, deadline)) return 0;
        const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, SEKUIRE_DETAIL_MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
        if (n <= 0) return 0;
        sent += static_cast<std::size_t>(n);
    }
    // The proxy sends nothing after its head before the TLS client speaks, so reading in
    // blocks never takes a byte of the tunnel; one that came anyway is refused.
    std::string head;
    char buf[1024];
    for (;;) {
        if (!poll_until(fd, POLLIN, deadline)) return 0;
        const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
        if (n <= 0) return head.empty() ? 0 : -1;
        head.append(buf, static_cast<std::size_t>(n));
        const std::size_t end = head.find("\r\n\r\n");
        if (end != std::string::npos) return end + 4 == head.size() ? connect_reply_status(head) : -1;
        if (head.size() > max_head) return -1;
    }
}

/** An httplib client whose connections go through an HTTP proxy: for https a `CONNECT`
    tunnel (TLS then runs end to end through it, as httplib does on any socket it is
    given), for http a plain connection to the proxy (the transport then sends
    absolute-form targets). httplib's own `set_proxy` is not used: it sends
    `Proxy-Authorization` with every request, inside the tunnel to the backend too, takes
    a 407 answer to `CONNECT` for the backend's response and starts TLS after any other
    refusal. */
template <class Base>
class proxied_client final : public Base {
public:
    template <class... Args>
    proxied_client(const proxy_route& route, std::string connect_request, std::chrono::milliseconds connect_timeout,
                   std::size_t max_head, Args&&... args)
        : Base(std::forward<Args>(args)...), route_(route), connect_request_(std::move(connect_request)),
          connect_timeout_(connect_timeout), max_head_(max_head) {}

    /// The status of the last refused `CONNECT` (-1: not HTTP), or 0.
    int refused_status() const noexcept { return refused_status_; }

private:
    using socket_type = typename Base::Socket;

    bool create_and_connect_socket(socket_type& socket, httplib::Error& error) override {
        refused_status_ = 0;
        if (!this->is_valid()) {
            error = httplib::Error::Connection;
            return false;
        }
        const auto deadline = std::chrono::steady_clock::now() + connect_timeout_;
        unique_fd fd(connect_tcp(route_.proxy.host, route_.proxy.port, deadline));
        if (fd.get() < 0) {
            error = httplib::Error::Connection;
            return false;
        }
        if (!connect_request_.empty()) {
            const int status = open_tunnel(fd.get(), connect_request_, max_head_, deadline);
            if (!connect_succeeded(status)) {
                refused_status_ = status == 0 ? 0 : status;
                error = httplib::Error::Connection;
                return false;
            }
        }
        socket.sock = fd.release();
        return true;
    }

    const proxy_route& route_;
    std::string connect_request_;
    std::chrono::milliseconds connect_timeout_;
    std::size_t max_head_;
    int refused_status_ = 0;
};
#endif


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
        if (w.queued) dequeue_locked(w.place);
        enqueue_locked(w, (clock::time_point::min)());
    }

    /// Ends the watch, after a stop of its client under way has returned. True when the
    /// client was stopped: its connection must not be used again.
    bool disarm(watch& w) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (w.queued) dequeue_locked(w.place);
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

    using due_map = std::multimap<clock::time_point, watch*>;

    // Nodes of `due_` are kept for reuse, so that a watch allocates nothing once the
    // transport has seen as many calls at once as it will.
    void dequeue_locked(due_map::iterator place) {
        auto node = due_.extract(place);
        if (spare_.size() < spare_.capacity()) spare_.push_back(std::move(node));
    }

    void enqueue_locked(watch& w, clock::time_point when) {
        if (!spare_.empty()) {
            auto node = std::move(spare_.back());
            spare_.pop_back();
            node.key() = when;
            node.mapped() = &w;
            w.place = due_.insert(std::move(node));
        } else {
            w.place = due_.emplace(when, &w);
            if (spare_.capacity() < due_.size()) spare_.reserve(due_.size() * 2);
        }
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
            dequeue_locked(first);
            w->fired = true;
            enqueue_locked(*w, clock::now() + repeat);
            stopping_ = w;
            lock.unlock();
            try {
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
    due_map due_;
    std::vector<due_map::node_type> spare_;
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
    proxy_route proxy;
    std::string connect_request; // for https through a proxy
    std::string absolute_prefix; // for http through a proxy: http://host:port
    error_code init_error;
    std::string init_message;

    std::mutex pool_mutex;
    std::vector<std::unique_ptr<httplib::ClientImpl>> idle;
    std::size_t in_flight = 0; // send() calls holding a client
    std::size_t peak_in_flight = 0;
    connection_watchdog watchdog;

    httplib_transport_state() = default;
    httplib_transport_state(const httplib_transport_state&) = delete;
    httplib_transport_state& operator=(const httplib_transport_state&) = delete;

    template <class Getenv>
    void init(httplib_transport_options o, Getenv&& getenv, error_code& ec) {
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
        } else if (opts.max_response_size == 0 || opts.max_response_header_size == 0) {
            ec = errc::invalid_option;
            init_message = "httplib_transport: max_response_size and max_response_header_size must be positive";
        } else if (!is_valid_header_value(opts.user_agent)) {
            ec = errc::invalid_option;
            init_message = "httplib_transport: user_agent holds a line break";
        } else if (!httplib_has_tls && url.scheme == "https") {
            ec = errc::tls_failed;
            init_message = "httplib_transport: https needs cpp-httplib built with OpenSSL; "
                           "this one was built without it";
        } else if (!resolve_proxy(opts.proxy, url, getenv, proxy, ec, init_message)) {
            init_message = "httplib_transport: " + init_message;
        }
        init_error = ec;
        if (ec) return;
        base_url = url.scheme + "://" + host_header_value(url) + url.path_prefix;
        host_header = host_header_value(url);
        user_agent = opts.user_agent.empty() ? std::string(sdk_name) + "/" + sdk_version : opts.user_agent;
        if (proxy.use && url.scheme == "https") connect_request = detail::connect_request(url, proxy.proxy, user_agent);
        if (proxy.use && url.scheme == "http") absolute_prefix = "http://" + host_header;
        ignore_default_sigpipe();
    }

    void init(httplib_transport_options o, error_code& ec) {
        init(std::move(o),
             [](const char* name) -> std::optional<std::string> {
                 if (const char* v = std::getenv(name)) return std::string(v);
                 return std::nullopt;
             },
             ec);
    }

    std::unique_ptr<httplib::ClientImpl> make_client(error_code& ec) const {
        std::unique_ptr<httplib::ClientImpl> cli;
        const auto connect_timeout = cap_timeout(opts.connect_timeout);
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (url.scheme == "https") {
            std::unique_ptr<httplib::SSLClient> tls;
            if (proxy.use)
                tls = std::make_unique<proxied_client<httplib::SSLClient>>(
                    proxy, connect_request, connect_timeout, opts.max_response_header_size, url.host, url.port);
            else
                tls = std::make_unique<httplib::SSLClient>(url.host, url.port);
            if (!opts.tls.ca_file.empty() || !opts.tls.ca_dir.empty())
                tls->set_ca_cert_path(opts.tls.ca_file, opts.tls.ca_dir);
            tls->enable_server_certificate_verification(opts.tls.verify_peer);
            if (!opts.tls.verify_peer) set_hostname_verification(*tls, false, 0);
            cli = std::move(tls);
        }
#endif
        if (!cli) {
            if (proxy.use)
                cli = std::make_unique<proxied_client<httplib::ClientImpl>>(proxy, std::string(), connect_timeout,
                                                                            opts.max_response_header_size, url.host,
                                                                            url.port);
            else
                cli = std::make_unique<httplib::ClientImpl>(url.host, url.port);
        }
        if (!cli->is_valid()) {
            ec = url.scheme == "https" ? errc::tls_failed : errc::connection_failed;
            return nullptr;
        }
        cli->set_tcp_nodelay(true);
        cli->set_keep_alive(true);
        cli->set_follow_location(false);
        cli->set_connection_timeout(connect_timeout);
        disable_path_encoding(*cli, 0);
#if defined(SO_NOSIGPIPE)
        cli->set_socket_options([](auto sock) {
            int on = 1;
            ::setsockopt(sock, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof(on));
        });
#endif
        return cli;
    }

    /// A pooled client, or a new one; counts the caller among the users of the pool until
    /// `give_back` or `drop`.
    std::unique_ptr<httplib::ClientImpl> take_client(error_code& ec) {
        {
            std::lock_guard<std::mutex> lock(pool_mutex);
            ++in_flight;
            peak_in_flight = (std::max)(peak_in_flight, in_flight);
            if (!idle.empty()) {
                auto cli = std::move(idle.back());
                idle.pop_back();
                return cli;
            }
        }
        auto cli = make_client(ec);
        if (!cli) drop(nullptr);
        return cli;
    }

    /// How many idle clients the pool keeps (see `transport_options`).
    std::size_t idle_limit_locked() const noexcept {
        return opts.idle_pool_follows_concurrency ? (std::max)(opts.max_idle_connections, peak_in_flight)
                                                  : opts.max_idle_connections;
    }

    void give_back(std::unique_ptr<httplib::ClientImpl> cli) {
        {
            std::lock_guard<std::mutex> lock(pool_mutex);
            --in_flight;
            if (idle.size() < idle_limit_locked()) {
                if (idle.capacity() == idle.size()) idle.reserve(idle_limit_locked());
                idle.push_back(std::move(cli));
                return;
            }
        }
        // cli is closed here, outside the lock.
    }

    /// Ends a `take_client` whose client is not kept (its connection failed).
    void drop(std::unique_ptr<httplib::ClientImpl> cli) {
        {
            std::lock_guard<std::mutex> lock(pool_mutex);
            --in_flight;
        }
        cli.reset();
    }

    void fill_request(httplib::Request& hreq, const http_request& req) const {
        hreq.method = to_string(req.method);
        hreq.path.reserve(absolute_prefix.size() + url.path_prefix.size() + req.target.size());
        hreq.path += absolute_prefix;
        hreq.path += url.path_prefix;
        hreq.path += req.target;
        for_each_request_field(req, user_agent, host_header, [&hreq](std::string_view n, std::string_view v) {
            hreq.headers.emplace(std::piecewise_construct, std::forward_as_tuple(n), std::forward_as_tuple(v));
        });
        // A plain http request to a proxy carries the proxy's credentials itself.
        if (!absolute_prefix.empty() && !proxy.proxy.authorization.empty())
            hreq.headers.emplace("Proxy-Authorization", proxy.proxy.authorization);
        hreq.body = req.body;
    }

    /// Why a connection through the proxy failed, for the messages of the throwing calls.
    static std::string failure_message(const httplib::ClientImpl* cli, const char* what) {
        int refused = 0;
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (const auto* p = dynamic_cast<const proxied_client<httplib::SSLClient>*>(cli)) refused = p->refused_status();
#endif
        if (const auto* p = dynamic_cast<const proxied_client<httplib::ClientImpl>*>(cli)) refused = p->refused_status();
        if (refused == 0) return what;
        return std::string(what) + ": " + connect_refused_message(refused);
    }
};

SEKUIRE_DECL void set_transport_message(std::string* out, const error_code& ec, const httplib_transport_state& st,
                                       const httplib::ClientImpl* cli, const char* what) {
    if (!out) return;
    if (ec == st.init_error) *out = st.init_message;
    else if (cli && ec == errc::connection_failed) *out = st.failure_message(cli, what);
    else *out = what;
}

SEKUIRE_DECL http_response httplib_send(httplib_transport_state& st, const http_request& req, error_code& ec,
                                        std::string* message) {
    ec = {};
    if (st.init_error) {
        ec = st.init_error;
        set_transport_message(message, ec, st, nullptr, "");
        return {};
    }
    if (!detail::validate_request(req, ec)) {
        set_transport_message(message, ec, st, nullptr, "httplib_transport::send");
        return {};
    }

    using clock = std::chrono::steady_clock;
    const auto timeout = detail::cap_timeout(req.timeout);
    const auto start = clock::now();
    auto cli = st.take_client(ec);
    if (!cli) {
        set_transport_message(message, ec, st, nullptr, "httplib_transport::send");
        return {};
    }
    cli->set_connection_timeout((std::min)(detail::cap_timeout(st.opts.connect_timeout), timeout));
    cli->set_read_timeout(timeout);
    cli->set_write_timeout(timeout);

    // What the handlers below share, reached through one pointer so that the
    // std::function objects holding them do not allocate.
    struct exchange {
        http_response out;
        bool too_large = false, deadline_passed = false;
        clock::time_point start, last_activity;
        clock::duration timeout;
        std::size_t limit;
    } x;
    x.start = x.last_activity = start;
    x.timeout = timeout;
    x.limit = st.opts.max_response_size;

    httplib::Request hreq;
    st.fill_request(hreq, req);
    // The watchdog shuts the connection down at the deadline; the handlers below also
    // check it whenever something arrives.
    hreq.response_handler = [p = &x](const httplib::Response& r) -> bool {
        p->last_activity = clock::now();
        if (p->last_activity - p->start >= p->timeout) {
            p->deadline_passed = true;
            return false;
        }
        const auto it = r.headers.find("Content-Length");
        if (it != r.headers.end()) {
            if (detail::declared_length_exceeds(it->second, p->limit)) {
                p->too_large = true;
                return false;
            }
        }
        return true;
    };
    hreq.content_receiver = [p = &x](const char* data, std::size_t size, auto, auto) -> bool {
        p->last_activity = clock::now();
        if (p->last_activity - p->start >= p->timeout) {
            p->deadline_passed = true;
            return false;
        }
        if (size > p->limit - p->out.body.size()) {
            p->too_large = true;
            return false;
        }
        p->out.body.append(data, size);
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
    if (ok && !x.too_large && !x.deadline_passed) {
        // Complete, though the deadline may have cut the connection just after.
        x.out.status = hres.status;
        x.out.headers = detail::take_headers(hres);
        if (!cut) st.give_back(std::move(cli));
        else st.drop(std::move(cli));
        return std::move(x.out);
    }
    if (x.too_large) {
        ec = errc::response_too_large;
    } else if (x.deadline_passed || cut) {
        ec = errc::timeout;
    } else {
        const auto now = clock::now();
        const bool expired = now - start >= timeout || detail::idle_expired(now - x.last_activity, timeout);
        ec = detail::map_httplib_error(herr, expired);
    }
    set_transport_message(message, ec, st, cli.get(), "httplib_transport::send");
    st.drop(std::move(cli)); // the failed connection is dropped, not pooled
    return {};
}

SEKUIRE_DECL void httplib_stream(httplib_transport_state& st, const http_request& req, stream_callbacks& cb,
                                 const stop_token& stop, error_code& ec, std::string* message) {
    ec = {};
    const char* what = "httplib_transport::stream";
    if (st.init_error) {
        ec = st.init_error;
        set_transport_message(message, ec, st, nullptr, what);
        return;
    }
    if (!detail::validate_request(req, ec) || stop.stop_requested()) {
        if (!ec) ec = errc::canceled;
        set_transport_message(message, ec, st, nullptr, what);
        return;
    }

    using clock = std::chrono::steady_clock;
    const auto timeout = detail::cap_timeout(req.timeout);
    auto cli = st.make_client(ec);
    if (!cli) {
        set_transport_message(message, ec, st, nullptr, what);
        return;
    }
    cli->set_read_timeout(timeout);
    cli->set_write_timeout(timeout);

    std::atomic<bool> stopped{false};
    bool consumer_ended = false, head_delivered = false;
    std::exception_ptr failure;
    auto last_activity = clock::now();

    httplib::Request hreq;
    st.fill_request(hreq, req);
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
        set_transport_message(message, ec, st, nullptr, what);
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
    if (stopped.load()) ec = errc::canceled;
    else ec = detail::map_httplib_error(herr, detail::idle_expired(clock::now() - last_activity, timeout));
    set_transport_message(message, ec, st, cli.get(), what);
}

SEKUIRE_DECL httplib_transport_options with_base_url(std::string base_url, transport_options opts) {
    httplib_transport_options o;
    static_cast<transport_options&>(o) = std::move(opts);
    o.base_url = std::move(base_url);
    return o;
}

} // namespace detail

SEKUIRE_DECL httplib_transport::httplib_transport(httplib_transport_options opts)
    : state_(std::make_shared<detail::httplib_transport_state>()) {
    error_code ec;
    state_->init(std::move(opts), ec);
    if (ec) throw error(ec, state_->init_message);
}

SEKUIRE_DECL httplib_transport::httplib_transport(httplib_transport_options opts, error_code& ec)
    : state_(std::make_shared<detail::httplib_transport_state>()) {
    state_->init(std::move(opts), ec);
}

SEKUIRE_DECL httplib_transport::httplib_transport(std::string base_url, transport_options opts)
    : httplib_transport(detail::with_base_url(std::move(base_url), std::move(opts))) {}

SEKUIRE_DECL httplib_transport::httplib_transport(std::string base_url, transport_options opts, error_code& ec)
    : httplib_transport(detail::with_base_url(std::move(base_url), std::move(opts)), ec) {}

SEKUIRE_DECL http_response httplib_transport::send(const http_request& req, error_code& ec) {
    SEKUIRE_ASSERT(state_ != nullptr);
    return detail::httplib_send(*state_, req, ec, nullptr);
}

SEKUIRE_DECL http_response httplib_transport::send(const http_request& req) {
    SEKUIRE_ASSERT(state_ != nullptr);
    error_code ec;
    std::string message;
    http_response res = detail::httplib_send(*state_, req, ec, &message);
    if (ec) throw error(ec, message);
    return res;
}

SEKUIRE_DECL void httplib_transport::stream(const http_request& req, stream_callbacks& cb, const stop_token& stop,
                                            error_code& ec) {
    SEKUIRE_ASSERT(state_ != nullptr);
    detail::httplib_stream(*state_, req, cb, stop, ec, nullptr);
}

SEKUIRE_DECL void httplib_transport::stream(const http_request& req, stream_callbacks& cb, const stop_token& stop) {
    SEKUIRE_ASSERT(state_ != nullptr);
    error_code ec;
    std::string message;
    detail::httplib_stream(*state_, req, cb, stop, ec, &message);
    if (ec) throw error(ec, message);
}

SEKUIRE_DECL const std::string& httplib_transport::base_url() const noexcept { return state_->base_url; }

SEKUIRE_DECL const httplib_transport_options& httplib_transport::options() const noexcept { return state_->opts; }

SEKUIRE_DECL std::string httplib_transport::proxy() const {
    if (!state_->proxy.use) return {};
    return state_->proxy.proxy.host + ":" + std::to_string(state_->proxy.proxy.port);
}

} // namespace sekuire

#endif
