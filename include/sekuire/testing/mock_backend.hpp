// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TESTING_MOCK_BACKEND_HPP
#define SEKUIRE_TESTING_MOCK_BACKEND_HPP

/// @file
/// `testing::basic_mock_backend`: a Sekuire backend in memory, on Boost.Asio and
/// Boost.Beast, that speaks all of protocol.md with its real rules, plus an admin API. For
/// tests, examples, load tests and local development without a Sekuire account. See
/// docs/mock-backend.md.
///
/// @code
/// sekuire::testing::mock_backend backend;          // 127.0.0.1, ephemeral port
/// backend.start();
/// // point an agent at backend.url() with install token testing::mock_default_install_token
/// auto task_id = backend.enqueue_task({"summarize", boost::json::object{{"text", "hi"}}});
/// backend.wait_for_task(task_id, sekuire::testing::mock_task_status::completed, std::chrono::seconds(5));
/// backend.stop();
/// @endcode

#include <sekuire/clock.hpp>
#include <sekuire/error.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/testing/detail/mock_dashboard.hpp>
#include <sekuire/testing/detail/mock_state.hpp>
#include <sekuire/time.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace sekuire {
namespace testing {
namespace detail {

/// Percent-decodes `s` (`%XX`; with `plus_as_space`, `+` is a space, as in a query).
/// Malformed escapes are kept as they are.
inline std::string mock_url_decode(std::string_view s, bool plus_as_space) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
            i += 2;
        } else if (c == '+' && plus_as_space) {
            out.push_back(' ');
        } else {
            out.push_back(c);
        }
    }
    return out;
}

/// The decoded value of the first query parameter named `name`, or empty when there is
/// none (a parameter without `=` has an empty value).
inline std::optional<std::string> mock_query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto pair = query.substr(0, amp);
        const auto eq = pair.find('=');
        if (mock_url_decode(pair.substr(0, eq), true) == name)
            return eq == std::string_view::npos ? std::string() : mock_url_decode(pair.substr(eq + 1), true);
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

/// A route pattern of protocol.hpp or `mock_admin_path`, `prefix([^/]+)suffix`, split
/// around its capture, so that matching needs no regular expression engine.
struct mock_route_pattern {
    std::string_view prefix;
    std::string_view suffix;

    explicit mock_route_pattern(std::string_view pattern) {
        constexpr std::string_view capture = "([^/]+)";
        const auto at = pattern.find(capture);
        prefix = pattern.substr(0, at);
        suffix = at == std::string_view::npos ? std::string_view() : pattern.substr(at + capture.size());
    }

    /// As `std::regex_match(path, std::regex(pattern))`; `id` receives the capture.
    bool match(std::string_view path, std::string& id) const {
        if (path.size() <= prefix.size() + suffix.size()) return false;
        if (path.substr(0, prefix.size()) != prefix || path.substr(path.size() - suffix.size()) != suffix) return false;
        const auto middle = path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
        if (middle.find('/') != std::string_view::npos) return false;
        id.assign(middle.data(), middle.size());
        return true;
    }
};

/// Bounds of the HTTP layer.
inline constexpr std::uint32_t mock_max_header_bytes = 64 * 1024;
inline constexpr std::chrono::seconds mock_request_timeout{30}; // to read a request, or to write a response
inline constexpr std::chrono::seconds mock_linger_timeout{2};   // to drain a client before closing
inline constexpr std::chrono::milliseconds mock_tick_period{50}; // keep-alives, redeliveries, fake clocks
inline constexpr std::chrono::seconds mock_stop_timeout{10};    // for sessions to end at stop()

/** The HTTP side of the mock backend, on Boost.Asio and Boost.Beast: an acceptor with a
    large backlog, a few I/O threads, one session per connection (keep-alive, bounded
    requests, timeouts), task streams written asynchronously and woken by the core (no
    thread per stream), fault delays as timers, and a stop that ends everything once.
*/
class mock_server {
    using tcp = boost::asio::ip::tcp;

public:
    mock_server(mock_backend_options options, mock_clock_fns clock)
        : clock_(clock),
          core_(std::move(options), std::move(clock)),
          ioc_(static_cast<int>(std::min<std::size_t>(std::max<std::size_t>(core_.options().threads, 1), 4096))) {}

    mock_server(const mock_server&) = delete;
    mock_server& operator=(const mock_server&) = delete;

    ~mock_server() { stop(); }

    mock_core& core() noexcept { return core_; }
    const mock_core& core() const noexcept { return core_; }

    void start(error_code& ec) {
        ec = {};
        std::lock_guard<std::mutex> lk(lifecycle_);
        if (started_) {
            ec = errc::already_started;
            return;
        }
        const auto& o = core_.options();
        if (!validate_options(o).empty()) {
            ec = errc::invalid_option;
            return;
        }
        boost::system::error_code bec;
        tcp::endpoint endpoint;
        const auto address = boost::asio::ip::make_address(o.host, bec);
        if (!bec) {
            endpoint = tcp::endpoint(address, static_cast<unsigned short>(o.port));
        } else {
            tcp::resolver resolver(ioc_);
            const auto found = resolver.resolve(o.host, std::to_string(o.port), bec);
            if (bec || found.empty()) {
                ec = errc::connection_failed;
                return;
            }
            endpoint = found.begin()->endpoint();
        }
        acceptor_.emplace(boost::asio::make_strand(ioc_));
        protocol_ = endpoint.protocol();
        // Close-on-exec, like every socket of the backend, so that a process the program
        // starts (a test spawning an agent, say) inherits none.
#if defined(SOCK_CLOEXEC)
        const int fd = ::socket(endpoint.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd < 0) {
            acceptor_.reset();
            ec = errc::connection_failed;
            return;
        }
        acceptor_->assign(endpoint.protocol(), fd, bec);
        if (bec) ::close(fd);
#else
        acceptor_->open(endpoint.protocol(), bec);
#if !defined(_WIN32)
        if (!bec) ::fcntl(acceptor_->native_handle(), F_SETFD, FD_CLOEXEC);
#endif
#endif
        // SO_REUSEADDR only: never SO_REUSEPORT, which would let a second server share a
        // port that is in use.
        if (!bec) acceptor_->set_option(tcp::acceptor::reuse_address(true), bec);
        if (!bec) acceptor_->bind(endpoint, bec);
        if (!bec) acceptor_->listen(o.listen_backlog, bec);
        if (!bec) acceptor_->non_blocking(true, bec); // accept4() must not block the strand
        if (bec) {
            acceptor_.reset();
            ec = errc::connection_failed;
            return;
        }
        const auto local = acceptor_->local_endpoint(bec);
        started_ = true;
        work_.emplace(ioc_.get_executor());
        try {
            for (std::size_t i = 0; i < o.threads; ++i) threads_.emplace_back([this] { run_io(); });
        } catch (const std::system_error&) {
            halt_locked();
            ec = errc::connection_failed;
            return;
        }
        port_ = local.port();
        const bool v6 = o.host.find(':') != std::string::npos; // a literal IPv6 address
        url_ = "http://";
        url_ += v6 ? "[" + o.host + "]" : o.host;
        url_ += ':';
        url_ += std::to_string(port_);
        boost::asio::post(acceptor_->get_executor(), [this] { do_accept(); });
        boost::asio::post(ticker_.get_executor(), [this] { tick(); });
    }

    void stop() noexcept {
        std::lock_guard<std::mutex> lk(lifecycle_);
        if (!started_ || stopped_) return;
        halt_locked();
    }

    bool is_running() const {
        std::lock_guard<std::mutex> lk(lifecycle_);
        return started_ && !stopped_;
    }

    std::string url() const {
        std::lock_guard<std::mutex> lk(lifecycle_);
        return url_;
    }

    int port() const {
        std::lock_guard<std::mutex> lk(lifecycle_);
        return port_;
    }

private:
    class session;
    friend class session;

    // -- routes ---------------------------------------------------------------------------

    enum class route {
        none,
        bootstrap,
        recover,
        refresh,
        heartbeat,
        worker_heartbeat,
        revoke,
        complete,
        active_policy,
        task_stream,
        admin_install_tokens,
        admin_enqueue_task,
        admin_tasks,
        admin_task,
        admin_installations,
        admin_installation,
        admin_commands,
        admin_set_policy,
        admin_policy,
        admin_add_fault,
        admin_faults,
        admin_clear_faults,
        admin_commands_log,
        page, // the dashboard's files
    };

    // api routes count requests and take faults; admin routes count requests and need the
    // API key; pages need neither (their data comes from the admin routes).
    enum class route_kind { api, stream, admin, page };

    static route_kind kind_of(route r) noexcept {
        if (r == route::task_stream) return route_kind::stream;
        if (r == route::page) return route_kind::page;
        return r >= route::admin_install_tokens ? route_kind::admin : route_kind::api;
    }

    struct pattern {
        boost::beast::http::verb method;
        mock_route_pattern re;
        route id;
    };

    // Matches a decoded path; `id` receives the captured id of a pattern route.
    route match(boost::beast::http::verb method, const std::string& path, std::string& id) const {
        using boost::beast::http::verb;
        namespace p = protocol::path;
        namespace a = mock_admin_path;
        struct exact {
            verb method;
            std::string_view path;
            route id;
        };
        static const exact exacts[] = {
            {verb::post, p::bootstrap, route::bootstrap},
            {verb::post, p::recover, route::recover},
            {verb::post, a::install_tokens, route::admin_install_tokens},
            {verb::post, a::tasks, route::admin_enqueue_task},
            {verb::get, a::tasks, route::admin_tasks},
            {verb::get, a::installations, route::admin_installations},
            {verb::put, a::policy, route::admin_set_policy},
            {verb::get, a::policy, route::admin_policy},
            {verb::post, a::faults, route::admin_add_fault},
            {verb::get, a::faults, route::admin_faults},
            {verb::delete_, a::faults, route::admin_clear_faults},
            {verb::get, a::commands_log, route::admin_commands_log},
        };
        for (const auto& e : exacts)
            if (e.method == method && e.path == path) return e.id;
        if (method == verb::get && mock_dashboard_find(path)) return route::page;
        static const pattern patterns[] = {
            {verb::post, mock_route_pattern(p::refresh_route), route::refresh},
            {verb::post, mock_route_pattern(p::heartbeat_route), route::heartbeat},
            {verb::post, mock_route_pattern(p::worker_heartbeat_route), route::worker_heartbeat},
            {verb::post, mock_route_pattern(p::revoke_route), route::revoke},
            {verb::post, mock_route_pattern(p::complete_route), route::complete},
            {verb::get, mock_route_pattern(p::active_policy_route), route::active_policy},
            {verb::get, mock_route_pattern(p::task_stream_route), route::task_stream},
            {verb::get, mock_route_pattern(a::task_route), route::admin_task},
            {verb::get, mock_route_pattern(a::installation_route), route::admin_installation},
            {verb::post, mock_route_pattern(a::commands_route), route::admin_commands},
        };
        for (const auto& pt : patterns)
            if (pt.method == method && pt.re.match(path, id)) return pt.id;
        return route::none;
    }

    // What a request needs from its path, headers and body.
    struct request_view {
        std::string_view authorization;
        std::string_view api_key;
        std::string_view body;
        std::string_view path;
    };

    // A file of the dashboard, with headers that keep the page to its own files: no inline
    // script or style, no other origin, no framing.
    static mock_reply page_reply(std::string_view path) {
        const auto* file = mock_dashboard_find(path);
        if (!file) return error_reply(404, protocol::error_code_name::not_found, "no such route");
        mock_reply r;
        r.status = 200;
        r.body = mock_dashboard_content(*file);
        r.headers = {
            {std::string(protocol::header::content_type), std::string(file->content_type)},
            {"Content-Security-Policy", std::string(mock_dashboard_csp)},
            {"X-Content-Type-Options", "nosniff"},
            {"X-Frame-Options", "DENY"},
            {"Referrer-Policy", "no-referrer"},
            {std::string(protocol::header::cache_control), "no-store"},
        };
        return r;
    }

    // Runs a (non-stream) route on the core. Never blocks.
    mock_reply execute(route r, const std::string& id, const request_view& q) {
        if (id.size() > mock_max_id_length)
            return error_reply(404, protocol::error_code_name::not_found, "no such resource");
        switch (r) {
        case route::bootstrap: return core_.bootstrap(q.body);
        case route::recover: return core_.recover(q.api_key, q.body);
        case route::refresh: return core_.refresh(id, q.body);
        case route::heartbeat: return core_.heartbeat(id, q.authorization, q.body);
        case route::worker_heartbeat: return core_.worker_heartbeat(id, q.authorization, q.body);
        case route::revoke: return core_.revoke_route(id, q.api_key, q.body);
        case route::complete: return core_.complete(id, q.authorization, q.body);
        case route::active_policy: return core_.active_policy(id, q.authorization);
        case route::admin_install_tokens: return core_.admin_create_install_token(q.body);
        case route::admin_enqueue_task: return core_.admin_enqueue_task(q.body);
        case route::admin_tasks: return core_.admin_tasks();
        case route::admin_task: return core_.admin_task(id);
        case route::admin_installations: return core_.admin_installations();
        case route::admin_installation: return core_.admin_installation(id);
        case route::admin_commands: return core_.admin_send_command(id, q.body);
        case route::admin_set_policy: return core_.admin_set_policy(q.body);
        case route::admin_policy: return core_.admin_policy();
        case route::admin_add_fault: return core_.admin_add_fault(q.body);
        case route::admin_faults: return core_.admin_faults();
        case route::admin_clear_faults: return core_.admin_clear_faults();
        case route::admin_commands_log: return core_.admin_commands();
        case route::page: return page_reply(q.path);
        case route::none:
        case route::task_stream: break;
        }
        return error_reply(404, protocol::error_code_name::not_found, "no such route");
    }

    std::string date_now() const { return format_http_date(clock_.wall()); }

    // -- lifecycle ------------------------------------------------------------------------

    void run_io() noexcept {
        for (;;) {
            try {
                ioc_.run();
                return;
            } catch (...) {
                // A handler threw: keep serving the others.
            }
        }
    }

    // Accepts on the acceptor's strand. Where accept4() exists, the accepted sockets are
    // close-on-exec from the start; elsewhere they are marked right after.
    void do_accept() {
        if (stopping_ || !acceptor_->is_open()) return;
#if defined(SOCK_CLOEXEC)
        acceptor_->async_wait(tcp::acceptor::wait_read, [this](const boost::system::error_code& ec) { on_readable(ec); });
#else
        acceptor_->async_accept(boost::asio::make_strand(ioc_),
                                [this](const boost::system::error_code& ec, tcp::socket socket) {
#if !defined(_WIN32)
                                    if (!ec) ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);
#endif
                                    on_accept(ec, std::move(socket));
                                });
#endif
    }

#if defined(SOCK_CLOEXEC)
    // The listener is readable: accept what is queued (a bounded batch, then wait again).
    void on_readable(const boost::system::error_code& ec) {
        if (ec == boost::asio::error::operation_aborted || stopping_) return;
        if (ec) return on_accept(ec, tcp::socket(ioc_));
        for (int i = 0; i < 64 && !stopping_; ++i) {
            const int fd = ::accept4(acceptor_->native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                // Out of descriptors or memory: on_accept() retries shortly.
                return on_accept(boost::system::error_code(errno, boost::system::system_category()), tcp::socket(ioc_));
            }
            tcp::socket socket(boost::asio::make_strand(ioc_));
            boost::system::error_code aec;
            socket.assign(protocol_, fd, aec);
            if (aec) {
                ::close(fd);
                continue;
            }
            start_session(std::move(socket));
        }
        do_accept();
    }
#endif

    void on_accept(const boost::system::error_code& ec, tcp::socket socket);
    void start_session(tcp::socket socket);

    // Keep-alive comments, redeliveries and a fake clock that moved: one timer for all streams.
    void tick() {
        if (stopping_) return;
        core_.wake_ready_streams();
        ticker_.expires_after(mock_tick_period);
        ticker_.async_wait([this](const boost::system::error_code& ec) {
            if (!ec) tick();
        });
    }

    // Requires lifecycle_. Ends the streams and the sessions, then the I/O threads, once.
    void halt_locked() noexcept;

    void session_ended(const void* key) {
        {
            std::lock_guard<std::mutex> lk(sessions_m_);
            sessions_.erase(key);
        }
        sessions_cv_.notify_all();
    }

    mock_clock_fns clock_;
    mock_core core_;
    mutable std::mutex lifecycle_;
    bool started_ = false;
    bool stopped_ = false;
    int port_ = -1;
    std::string url_;
    std::atomic<bool> stopping_{false};

    std::mutex sessions_m_;
    std::condition_variable sessions_cv_;
    std::map<const void*, std::weak_ptr<session>> sessions_;

    // Destroyed before the members above: pending handlers own sessions, whose destructors
    // use the core and the session registry.
    boost::asio::io_context ioc_;
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
    std::optional<tcp::acceptor> acceptor_;
    tcp protocol_ = tcp::v4();
    boost::asio::steady_timer ticker_{boost::asio::make_strand(ioc_)};
    std::vector<std::thread> threads_;
};

/// One connection: reads requests, answers them, and serves at most one task stream.
/// Every handler runs on the connection's strand.
class mock_server::session : public std::enable_shared_from_this<mock_server::session> {
    using error_code_t = boost::system::error_code;
    using request_t = boost::beast::http::request<boost::beast::http::string_body>;
    using response_t = boost::beast::http::response<boost::beast::http::string_body>;
    using header_response_t = boost::beast::http::response<boost::beast::http::empty_body>;

    enum class phase { idle, reading, handling, delaying, writing, streaming, closing, closed };

public:
    session(mock_server& server, tcp::socket socket)
        : server_(server), socket_(std::move(socket)), deadline_(socket_.get_executor()),
          delay_(socket_.get_executor()) {}

    session(const session&) = delete;
    session& operator=(const session&) = delete;

    ~session() {
        if (stream_id_ != 0) server_.core_.close_stream(stream_id_);
        server_.session_ended(this);
    }

    void start() {
        error_code_t ec;
        socket_.set_option(tcp::no_delay(true), ec);
        wait_request();
    }

    /// The connection's strand.
    tcp::socket::executor_type socket_executor() { return socket_.get_executor(); }

    /// Posted by stop(): ends what is idle, interrupts a delay, lets a response finish.
    void on_stop() {
        switch (phase_) {
        case phase::idle:
        case phase::reading: close_now(); break;
        case phase::delaying: delay_.cancel(); break;
        case phase::streaming: pull(); break;
        default: break;
        }
    }

private:
    // -- timeouts -------------------------------------------------------------------------

    // Closes the socket when `d` passes before disarm(): pending operations then fail.
    void arm(std::chrono::steady_clock::duration d) {
        const auto gen = ++deadline_gen_;
        deadline_.expires_after(d);
        deadline_.async_wait([self = shared_from_this(), gen](const error_code_t& ec) {
            if (!ec && gen == self->deadline_gen_) self->close_now();
        });
    }

    void disarm() {
        ++deadline_gen_;
        deadline_.cancel();
    }

    // -- reading a request ----------------------------------------------------------------

    void wait_request() {
        if (server_.stopping_) return close_gracefully();
        if (buffer_.size() > 0) return read_header(); // pipelined
        phase_ = phase::idle;
        arm(server_.core_.options().keep_alive_timeout);
        socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](const error_code_t& ec) {
            self->disarm();
            if (ec || self->phase_ == phase::closed) return self->close_now();
            self->read_header();
        });
    }

    void read_header() {
        phase_ = phase::reading;
        parser_.emplace();
        parser_->header_limit(mock_max_header_bytes);
        parser_->body_limit(static_cast<std::uint64_t>(server_.core_.options().max_body));
        arm(mock_request_timeout);
        boost::beast::http::async_read_header(
            socket_, buffer_, *parser_, [self = shared_from_this()](const error_code_t& ec, std::size_t) {
                self->on_header(ec);
            });
    }

    void on_header(const error_code_t& ec) {
        namespace http = boost::beast::http;
        if (ec) return on_read_error(ec);
        const auto expect = parser_->get()[http::field::expect];
        if (!expect.empty() && sekuire::detail::iequals(std::string_view(expect.data(), expect.size()), "100-continue")) {
            static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
            boost::asio::async_write(socket_, boost::asio::buffer(continue_line.data(), continue_line.size()),
                                     [self = shared_from_this()](const error_code_t& wec, std::size_t) {
                                         if (wec) return self->close_now();
                                         self->read_body();
                                     });
            return;
        }
        read_body();
    }

    void read_body() {
        boost::beast::http::async_read(socket_, buffer_, *parser_,
                                       [self = shared_from_this()](const error_code_t& ec, std::size_t) {
                                           if (ec) return self->on_read_error(ec);
                                           self->disarm();
                                           self->req_ = self->parser_->release();
                                           self->parser_.reset();
                                           self->handle();
                                       });
    }

    void on_read_error(const error_code_t& ec) {
        namespace http = boost::beast::http;
        disarm();
        namespace n = protocol::error_code_name;
        if (phase_ == phase::closed || server_.stopping_) return close_now();
        // The request was not read to its end: answer, and close the connection.
        if (ec == http::error::body_limit)
            return send_error_and_close(error_reply(413, n::bad_request, "the body is too large"));
        if (ec == http::error::header_limit)
            return send_error_and_close(error_reply(431, n::bad_request, "the request header is too large"));
        // A malformed request gets 400; a client that hung up or timed out gets nothing.
        const bool malformed = ec.category() == http::make_error_code(http::error::bad_target).category() &&
                               ec != http::error::end_of_stream && ec != http::error::partial_message;
        if (malformed) return send_error_and_close(error_reply(400, n::bad_request, "bad request"));
        close_now();
    }

    // -- handling -------------------------------------------------------------------------

    void handle() {
        namespace http = boost::beast::http;
        phase_ = phase::handling;
        keep_alive_ = req_.keep_alive();
        head_ = req_.method() == http::verb::head;
        const auto target = req_.target();
        const std::string_view t(target.data(), target.size());
        const auto q = t.find('?');
        path_ = mock_url_decode(t.substr(0, q), false);
        query_ = q == std::string_view::npos ? std::string() : std::string(t.substr(q + 1));
        id_.clear();
        route_ = server_.match(head_ ? http::verb::get : req_.method(), path_, id_);
        if (route_ == route::none || (head_ && route_ == route::task_stream))
            return send(error_reply(404, protocol::error_code_name::not_found, "no such route"));
        auto& core = server_.core_;
        const auto kind = kind_of(route_);
        fault_.reset();
        if (kind == route_kind::page) return after_delay(); // not counted, never faulted
        core.count_request(path_);
        core.tick();
        if (kind == route_kind::admin) {
            if (header(protocol::header::api_key) != core.options().api_key)
                return send(error_reply(401, protocol::error_code_name::invalid_api_key, "the API key is not valid"));
        } else {
            fault_ = core.take_fault(path_, kind == route_kind::stream);
        }
        if (fault_ && fault_->delay > std::chrono::milliseconds(0)) {
            phase_ = phase::delaying;
            delay_.expires_after(std::min(fault_->delay, mock_max_fault_delay));
            delay_.async_wait([self = shared_from_this()](const error_code_t& ec) {
                // stop() cancels the delay: the exchange then ends without an answer.
                if (ec || self->server_.stopping_) return self->drop();
                self->after_delay();
            });
            return;
        }
        after_delay();
    }

    void after_delay() {
        namespace n = protocol::error_code_name;
        phase_ = phase::handling;
        std::optional<std::size_t> cut_after;
        if (fault_) {
            if (route_ == route::task_stream && fault_->cut_stream_after_events) {
                cut_after = fault_->cut_stream_after_events;
            } else if (fault_->drop_connection) {
                return drop();
            } else if (fault_->status) {
                mock_reply r = error_reply(*fault_->status, *fault_->status == 429 ? n::rate_limited : n::unavailable,
                                           "injected fault");
                if (fault_->retry_after)
                    r.headers.emplace_back(std::string(protocol::header::retry_after), *fault_->retry_after);
                return send(r);
            }
        }
        if (route_ == route::task_stream) return open_stream(cut_after);
        mock_reply reply;
        try {
            reply = server_.execute(route_, id_,
                                    request_view{header(protocol::header::authorization),
                                                 header(protocol::header::api_key), req_.body(), path_});
        } catch (...) {
            reply = error_reply(500, n::unavailable, "internal error");
        }
        send(reply);
    }

    std::string_view header(std::string_view name) const {
        const auto v = req_[boost::beast::string_view(name.data(), name.size())];
        return std::string_view(v.data(), v.size());
    }

    // -- answering ------------------------------------------------------------------------

    void prepare(response_t& res, const mock_reply& r) const {
        namespace http = boost::beast::http;
        res.result(static_cast<unsigned>(r.status));
        res.version(11);
        bool typed = false;
        for (const auto& h : r.headers) {
            res.set(boost::beast::string_view(h.first.data(), h.first.size()), h.second);
            if (sekuire::detail::iequals(h.first, protocol::header::content_type)) typed = true;
        }
        if (!r.body.empty() && !typed)
            res.set(http::field::content_type, boost::beast::string_view(protocol::header::json_type.data(),
                                                                         protocol::header::json_type.size()));
        res.set(http::field::date, server_.date_now());
        res.body() = r.body;
    }

    void send(const mock_reply& r) {
        res_ = {};
        prepare(res_, r);
        const bool keep = keep_alive_ && !server_.stopping_;
        res_.keep_alive(keep);
        res_.prepare_payload();
        if (head_) res_.body().clear(); // the Content-Length of the GET answer stays
        phase_ = phase::writing;
        arm(mock_request_timeout);
        auto done = [self = shared_from_this(), keep](const error_code_t& ec, std::size_t) {
            self->disarm();
            if (ec) return self->close_now();
            if (!keep) return self->close_gracefully();
            self->wait_request();
        };
        if (head_) {
            header_sr_.emplace(head_res_ = header_of(res_));
            boost::beast::http::async_write_header(socket_, *header_sr_, std::move(done));
        } else {
            boost::beast::http::async_write(socket_, res_, std::move(done));
        }
    }

    static header_response_t header_of(const response_t& res) {
        header_response_t h;
        h.result(res.result());
        h.version(res.version());
        for (const auto& f : res) h.set(f.name_string(), f.value());
        return h;
    }

    // An answer to a request that was not read to its end; the connection closes after it.
    void send_error_and_close(const mock_reply& r) {
        res_ = {};
        prepare(res_, r);
        res_.keep_alive(false);
        res_.prepare_payload();
        phase_ = phase::writing;
        arm(mock_request_timeout);
        boost::beast::http::async_write(socket_, res_, [self = shared_from_this()](const error_code_t& ec, std::size_t) {
            self->disarm();
            if (ec) return self->close_now();
            self->close_gracefully();
        });
    }

    // The drop_connection fault: the response headers, then the connection closes without
    // the body they announce.
    void drop() {
        namespace http = boost::beast::http;
        head_res_ = {};
        head_res_.result(http::status::ok);
        head_res_.version(11);
        head_res_.set(http::field::content_type, boost::beast::string_view(protocol::header::json_type.data(),
                                                                          protocol::header::json_type.size()));
        head_res_.set(http::field::date, server_.date_now());
        head_res_.content_length(1);
        header_sr_.emplace(head_res_);
        phase_ = phase::writing;
        arm(mock_request_timeout);
        http::async_write_header(socket_, *header_sr_, [self = shared_from_this()](const error_code_t&, std::size_t) {
            self->disarm();
            self->close_gracefully();
        });
    }

    // -- the task stream ------------------------------------------------------------------

    void open_stream(std::optional<std::size_t> cut_after) {
        namespace http = boost::beast::http;
        if (id_.size() > mock_max_id_length)
            return send(error_reply(404, protocol::error_code_name::not_found, "no such resource"));
        std::optional<std::string> caps = mock_query_param(query_, protocol::path::capabilities_param);
        if (caps && caps->size() > mock_max_capabilities * (mock_max_name_length + 1)) caps->clear();
        std::weak_ptr<session> weak = shared_from_this();
        auto executor = socket_.get_executor();
        auto wake = [weak, executor] {
            boost::asio::post(executor, [weak] {
                if (auto self = weak.lock()) self->pull();
            });
        };
        auto opened = server_.core_.open_stream(id_, header(protocol::header::authorization), caps,
                                                header(protocol::header::last_event_id), cut_after, std::move(wake));
        if (opened.id == 0) return send(opened.error);
        stream_id_ = opened.id;
        head_res_ = {};
        head_res_.result(http::status::ok);
        head_res_.version(11);
        head_res_.set(http::field::content_type, boost::beast::string_view(protocol::header::event_stream_type.data(),
                                                                          protocol::header::event_stream_type.size()));
        head_res_.set(http::field::cache_control, "no-cache");
        head_res_.set(http::field::date, server_.date_now());
        head_res_.keep_alive(false); // the connection ends with the stream
        head_res_.chunked(true);
        header_sr_.emplace(head_res_);
        phase_ = phase::writing;
        arm(mock_request_timeout);
        http::async_write_header(socket_, *header_sr_, [self = shared_from_this()](const error_code_t& ec, std::size_t) {
            self->disarm();
            if (ec) return self->end_stream_abruptly();
            self->phase_ = phase::streaming;
            self->read_peer();
            self->pull();
        });
    }

    // Reads and discards what the client sends while a stream is open (nothing, normally:
    // the read completes when it hangs up) and while the connection closes (until its end).
    // At most one such read is pending.
    void read_peer() {
        if (peer_reading_) return;
        peer_reading_ = true;
        socket_.async_read_some(boost::asio::buffer(scratch_),
                                [self = shared_from_this()](const error_code_t& ec, std::size_t n) {
                                    self->peer_reading_ = false;
                                    self->discarded_ += n;
                                    if (self->phase_ == phase::closed) return;
                                    if (self->phase_ == phase::streaming &&
                                        (ec || self->discarded_ > mock_max_header_bytes))
                                        return self->end_stream_abruptly();
                                    if (ec) return self->close_now();
                                    self->read_peer();
                                });
    }

    // Writes what the core has for the stream; called on wakes and after each write.
    void pull() {
        if (phase_ != phase::streaming || stream_writing_) return;
        // The buffer of the last write is reused: no write is under way.
        stream_out_.clear();
        const auto end = server_.core_.next_frames(stream_id_, stream_out_);
        if (stream_out_.empty()) {
            if (end != mock_stream_end::none) finish_stream(end);
            return;
        }
        stream_writing_ = true;
        arm(mock_request_timeout);
        boost::asio::async_write(socket_, boost::beast::http::make_chunk(boost::asio::buffer(stream_out_)),
                                 [self = shared_from_this(), end](const error_code_t& ec, std::size_t) {
                                     self->stream_writing_ = false;
                                     self->disarm();
                                     if (ec) return self->end_stream_abruptly();
                                     if (end != mock_stream_end::none) return self->finish_stream(end);
                                     self->pull();
                                 });
    }

    void finish_stream(mock_stream_end end) {
        if (phase_ != phase::streaming) return;
        if (end == mock_stream_end::cut) return end_stream_abruptly();
        // done: the last chunk, then the connection closes.
        forget_stream();
        phase_ = phase::writing;
        arm(mock_request_timeout);
        boost::asio::async_write(socket_, boost::beast::http::make_chunk_last(),
                                 [self = shared_from_this()](const error_code_t& ec, std::size_t) {
                                     self->disarm();
                                     if (ec) return self->close_now();
                                     self->close_gracefully();
                                 });
    }

    // The stream ends without the end of the chunked body: the client sees a broken stream.
    void end_stream_abruptly() {
        forget_stream();
        close_now();
    }

    void forget_stream() {
        if (stream_id_ == 0) return;
        const auto id = stream_id_;
        stream_id_ = 0;
        server_.core_.close_stream(id);
    }

    // -- closing --------------------------------------------------------------------------

    void close_now() {
        if (phase_ == phase::closed) return;
        phase_ = phase::closed;
        forget_stream();
        error_code_t ec;
        socket_.shutdown(tcp::socket::shutdown_both, ec);
        socket_.close(ec);
        ++deadline_gen_;
        deadline_.cancel();
        delay_.cancel();
    }

    // Sends FIN, drains what the client still sends (so that no reset destroys the answer
    // it has not read yet), then closes.
    void close_gracefully() {
        if (phase_ == phase::closed || phase_ == phase::closing) return;
        forget_stream();
        phase_ = phase::closing;
        error_code_t ec;
        socket_.shutdown(tcp::socket::shutdown_send, ec);
        if (ec) return close_now();
        arm(mock_linger_timeout);
        read_peer();
    }

    mock_server& server_;
    tcp::socket socket_;
    boost::asio::steady_timer deadline_;
    boost::asio::steady_timer delay_;
    std::uint64_t deadline_gen_ = 0;
    phase phase_ = phase::idle;

    boost::beast::flat_buffer buffer_;
    std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
    request_t req_;
    response_t res_;
    header_response_t head_res_;
    std::optional<boost::beast::http::response_serializer<boost::beast::http::empty_body>> header_sr_;
    bool keep_alive_ = false;
    bool head_ = false;
    std::string path_;
    std::string query_;
    std::string id_;
    route route_ = route::none;
    std::optional<mock_fault> fault_;

    std::uint64_t stream_id_ = 0;
    bool stream_writing_ = false;
    std::string stream_out_;
    std::array<char, 1024> scratch_{};
    std::size_t discarded_ = 0;
    bool peer_reading_ = false;
};

inline void mock_server::on_accept(const boost::system::error_code& ec, tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted || stopping_) return;
    if (ec) {
        // Out of descriptors, or an aborted handshake: try again shortly, without spinning.
        auto retry = std::make_shared<boost::asio::steady_timer>(acceptor_->get_executor(), std::chrono::milliseconds(10));
        retry->async_wait([this, retry](const boost::system::error_code&) { do_accept(); });
        return;
    }
    start_session(std::move(socket));
    do_accept();
}

inline void mock_server::start_session(tcp::socket socket) {
    std::shared_ptr<session> s;
    {
        std::lock_guard<std::mutex> lk(sessions_m_);
        if (!stopping_) {
            s = std::make_shared<session>(*this, std::move(socket));
            sessions_.emplace(s.get(), s);
        }
    }
    if (s) boost::asio::post(s->socket_executor(), [s] { s->start(); });
}

inline void mock_server::halt_locked() noexcept {
    stopped_ = true;
    stopping_ = true;
    core_.shutdown(); // open streams are woken and end
    try {
        if (acceptor_)
            boost::asio::post(acceptor_->get_executor(), [this] {
                boost::system::error_code ec;
                acceptor_->close(ec);
            });
        std::vector<std::shared_ptr<session>> live;
        {
            std::lock_guard<std::mutex> lk(sessions_m_);
            for (auto& kv : sessions_)
                if (auto s = kv.second.lock()) live.push_back(std::move(s));
        }
        for (auto& s : live) boost::asio::post(s->socket_executor(), [s] { s->on_stop(); });
        live.clear();
        std::unique_lock<std::mutex> lk(sessions_m_);
        sessions_cv_.wait_for(lk, mock_stop_timeout, [&] { return sessions_.empty(); });
    } catch (...) {
    }
    work_.reset();
    ioc_.stop();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    threads_.clear();
}

} // namespace detail

/** A protocol-complete Sekuire backend for tests, examples and local development.

    In-memory state with the rules of protocol.md: single-use install tokens, API-key
    recovery, runtime tokens with a lifetime and the 7-day `refreshed_token` rule,
    refresh-token rotation, leases and installation states, per-installation command
    queues, the SSE task stream (ids, keep-alive comments, `Last-Event-ID` replay,
    redelivery, `command`, `revoked` and `policy` events), idempotent completions, worker
    heartbeats and the active policy. The admin API (`X-API-Key`) and the member functions
    below drive it; docs/mock-backend.md describes both.

    @tparam Clock the Clock policy: wall time for token and lease expiry, timestamps and
    the `Date` header; steady time for keep-alive cadence and redelivery. With
    `testing::fake_clock`, those move only when the test advances the clock (streams
    notice within about 50 ms of real time).

    @par Threads
    `options().threads` I/O threads (2 by default) serve every connection: requests, task
    streams (written asynchronously, with no thread per stream), fault delays (timers).
    The backend leaves the process's signal dispositions alone (its writes to a client
    that hung up raise no SIGPIPE).

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe, except that `start()` and `stop()` must
    not race with destruction.
*/
template <class Clock = sekuire::system_clock>
class basic_mock_backend {
    static_assert(check_clock<Clock>::value, "basic_mock_backend: Clock does not meet the Clock requirements");

public:
    /// The clock type.
    using clock_type = Clock;

    /// A backend with `options`, reading time from `clock` (a copy; copies of a fake
    /// clock share its time). Does not listen until `start()`.
    explicit basic_mock_backend(mock_backend_options options = {}, Clock clock = Clock())
        : clock_(clock),
          server_(std::make_unique<detail::mock_server>(
              std::move(options), detail::mock_clock_fns{[c = clock]() mutable { return c.wall_now(); },
                                                         [c = clock]() mutable { return c.steady_now(); }})) {}

    basic_mock_backend(const basic_mock_backend&) = delete;
    basic_mock_backend& operator=(const basic_mock_backend&) = delete;

    /// Stops the server (see `stop()`).
    ~basic_mock_backend() { stop(); }

    /** Binds (an ephemeral port when `options().port` is 0), listens with
        `options().listen_backlog`, and serves on `options().threads` I/O threads of its
        own; returns once the server accepts connections. Errors: `errc::invalid_option`
        (invalid options), `errc::connection_failed` (cannot bind or listen, or no thread),
        `errc::already_started` (a backend starts once).
    */
    void start(error_code& ec) { server_->start(ec); }

    /// As `start(error_code&)`; throws `sekuire::error` on failure.
    void start() {
        error_code ec;
        start(ec);
        if (ec) throw sekuire::error(ec, "mock backend: cannot start");
    }

    /** Stops serving: open task streams and idle connections end at once, a request
        waiting out a `delay_ms` fault ends without an answer, answers being written are
        finished, and the call returns once the I/O threads are joined. Idempotent.
    */
    void stop() noexcept { server_->stop(); }

    /// True between a successful `start()` and `stop()`.
    bool is_running() const { return server_->is_running(); }

    /// The base URL, e.g. `http://127.0.0.1:45123` (empty before `start()`).
    std::string url() const { return server_->url(); }

    /// The port it listens on (-1 before `start()`).
    int port() const { return server_->port(); }

    /// The options (with the default install token filled in when none was given).
    const mock_backend_options& options() const noexcept { return server_->core().options(); }

    /// A copy of the clock.
    Clock clock() const { return clock_; }

    // -- admin functions (each mirrors an admin route) -----------------------------------

    /// Creates a single-use install token, optionally bound to an agent id and expiring.
    std::string create_install_token(const mock_install_token_request& request = {}) {
        return server_->core().create_install_token(request);
    }

    /** Queues a task; returns its id. Errors: `errc::invalid_option` (empty or overlong
        capability), `errc::rate_limited` (`max_tasks` unfinished tasks).
    */
    std::string enqueue_task(mock_task_request request, error_code& ec) {
        return server_->core().enqueue_task(std::move(request), ec);
    }

    /// As above; throws `sekuire::error`.
    std::string enqueue_task(mock_task_request request) {
        error_code ec;
        auto id = enqueue_task(std::move(request), ec);
        if (ec) throw sekuire::error(ec, "mock backend: cannot queue the task");
        return id;
    }

    /// The task `id`, or empty when unknown.
    std::optional<mock_task_info> task(std::string_view id) { return server_->core().task(id); }

    /// The most recent tasks (at most 1000), oldest first.
    std::vector<mock_task_info> tasks() { return server_->core().tasks(); }

    /// Waits up to `real_timeout` of real time for task `id` to reach `status`.
    template <class Rep, class Period>
    bool wait_for_task(std::string_view id, mock_task_status status, std::chrono::duration<Rep, Period> real_timeout) {
        return server_->core().wait_for_task(id, status,
                                             std::chrono::duration_cast<std::chrono::milliseconds>(real_timeout));
    }

    /** Queues a command (`pause`, `resume`, `terminate`, or any other type name) for an
        installation; it is delivered once, by the first heartbeat response, worker
        heartbeat response or task stream to take it. Returns its id. Errors:
        `errc::installation_not_found`, `errc::revoked`, `errc::invalid_option` (empty or
        overlong type or reason), `errc::rate_limited` (1000 pending commands).
    */
    std::string send_command(std::string_view installation_id, std::string type, std::string reason,
                             std::optional<std::int64_t> shutdown_timeout_ms, error_code& ec) {
        return server_->core().send_command(installation_id, std::move(type), std::move(reason), shutdown_timeout_ms,
                                            ec);
    }

    /// As above; throws `sekuire::error`.
    std::string send_command(std::string_view installation_id, std::string type, std::string reason = {},
                             std::optional<std::int64_t> shutdown_timeout_ms = std::nullopt) {
        error_code ec;
        auto id = send_command(installation_id, std::move(type), std::move(reason), shutdown_timeout_ms, ec);
        if (ec) throw sekuire::error(ec, "mock backend: cannot send the command");
        return id;
    }

    /// Every installation, oldest first.
    std::vector<mock_installation_info> installations() const { return server_->core().installations(); }

    /// The commands sent (the last `mock_max_command_log`), oldest first, with their
    /// delivery.
    std::vector<mock_command_info> commands() const { return server_->core().commands(); }

    /// One installation, or empty when unknown.
    std::optional<mock_installation_info> installation(std::string_view id) const {
        return server_->core().installation(id);
    }

    /// Replaces the active policy's content; returns its hash. A change sends a `policy`
    /// event on every open task stream.
    std::string set_policy(boost::json::object content) { return server_->core().set_policy(std::move(content)); }

    /// The active policy.
    protocol::policy_document policy() const { return server_->core().policy(); }

    /** Revokes an installation: heartbeats then get the revoked shape, other Bearer
        calls 403 `installation_revoked`, and its open streams get a `revoked` event and
        end. Idempotent. Errors: `errc::installation_not_found`, `errc::invalid_option`
        (negative timeout).
    */
    bool revoke(std::string_view installation_id, std::string reason,
                std::optional<std::int64_t> shutdown_timeout_ms, error_code& ec) {
        return server_->core().revoke(installation_id, std::move(reason), shutdown_timeout_ms, ec);
    }

    /// As above; throws `sekuire::error`.
    void revoke(std::string_view installation_id, std::string reason = {},
                std::optional<std::int64_t> shutdown_timeout_ms = std::nullopt) {
        error_code ec;
        revoke(installation_id, std::move(reason), shutdown_timeout_ms, ec);
        if (ec) throw sekuire::error(ec, "mock backend: cannot revoke");
    }

    /// Adds a fault (see `mock_fault`); returns its id. Error: `errc::invalid_option`.
    std::uint64_t add_fault(const mock_fault& fault, error_code& ec) { return server_->core().add_fault(fault, ec); }

    /// As above; throws `sekuire::error`.
    std::uint64_t add_fault(const mock_fault& fault) {
        error_code ec;
        auto id = add_fault(fault, ec);
        if (ec) throw sekuire::error(ec, "mock backend: invalid fault");
        return id;
    }

    /// Removes every fault; returns how many there were.
    std::size_t clear_faults() { return server_->core().clear_faults(); }

    // -- observation ---------------------------------------------------------------------

    /// How many requests arrived for exactly `path` (percent-decoded, without query).
    std::size_t request_count(std::string_view path) const { return server_->core().request_count(path); }

    /// Request counts by path (at most 4096 paths; the rest count under `(other)`).
    std::map<std::string, std::size_t, std::less<>> request_counts() const { return server_->core().request_counts(); }

    /// The number of open task streams.
    std::size_t open_streams() const { return server_->core().open_streams(); }

    /// The number of open task streams of one installation.
    std::size_t open_streams(std::string_view installation_id) const {
        return server_->core().open_streams(installation_id);
    }

    /// Waits up to `real_timeout` of real time until at least `n` task streams are open.
    template <class Rep, class Period>
    bool wait_for_open_streams(std::size_t n, std::chrono::duration<Rep, Period> real_timeout) {
        return server_->core().wait_for_open_streams(
            n, std::chrono::duration_cast<std::chrono::milliseconds>(real_timeout));
    }

private:
    Clock clock_;
    std::unique_ptr<detail::mock_server> server_;
};

/// The mock backend on the system clock.
using mock_backend = basic_mock_backend<>;

} // namespace testing
} // namespace sekuire

#endif
