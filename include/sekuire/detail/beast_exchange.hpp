// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_BEAST_EXCHANGE_HPP
#define SEKUIRE_DETAIL_BEAST_EXCHANGE_HPP

/// @file
/// The machinery of `beast_transport`: the state its copies share (options, TLS context,
/// pool of kept-alive connections, the operations under way) and one exchange (a request
/// and its response, or a stream), as a non-template core; `beast_transport.hpp` adds
/// the completion handler on top. Everything here runs on the transport's strand.

#include <sekuire/detail/http_common.hpp>
#include <sekuire/detail/proxy.hpp>
#include <sekuire/error.hpp>
#include <sekuire/transport.hpp>
#include <sekuire/version.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include <openssl/ssl.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sekuire {
namespace detail {

namespace beast_net = boost::asio;
namespace beast_http = boost::beast::http;
using beast_tcp = boost::asio::ip::tcp;

struct beast_connection;

/// Reads and writes a connection through TLS when it has a session: an AsyncStream for
/// Asio's and Beast's algorithms.
class beast_connection_stream {
public:
    using executor_type = beast_net::any_io_executor;

    explicit beast_connection_stream(beast_connection& c) noexcept : c_(&c) {}

    inline executor_type get_executor() noexcept;

    template <class Buffers, class Handler>
    void async_read_some(const Buffers& b, Handler&& h);

    template <class Buffers, class Handler>
    void async_write_some(const Buffers& b, Handler&& h);

private:
    beast_connection* c_;
};

/// One connection: a socket, its TLS session when https, and what was read ahead.
struct beast_connection {
    explicit beast_connection(const beast_net::any_io_executor& ex) : socket(ex), io(*this) {}
    beast_connection(const beast_connection&) = delete;
    beast_connection& operator=(const beast_connection&) = delete;

    beast_tcp::socket socket;
    std::unique_ptr<beast_net::ssl::stream<beast_tcp::socket&>> tls;
    boost::beast::flat_buffer buffer;
    beast_connection_stream io; ///< the stream the HTTP algorithms read and write

    void close() noexcept {
        boost::system::error_code ignored;
        socket.close(ignored);
    }

    /// Whether a kept-alive connection can carry another request: open, nothing read
    /// ahead, and nothing (data, close_notify or end of stream) waiting from the server.
    bool reusable() {
        if (!socket.is_open() || buffer.size() != 0) return false;
        boost::system::error_code ec;
        socket.non_blocking(true, ec);
        if (ec) return false;
        char byte;
        socket.receive(beast_net::buffer(&byte, 1), beast_tcp::socket::message_peek, ec);
        return ec == beast_net::error::would_block;
    }
};

inline beast_connection_stream::executor_type beast_connection_stream::get_executor() noexcept {
    return c_->socket.get_executor();
}

template <class Buffers, class Handler>
void beast_connection_stream::async_read_some(const Buffers& b, Handler&& h) {
    if (c_->tls) c_->tls->async_read_some(b, std::forward<Handler>(h));
    else c_->socket.async_read_some(b, std::forward<Handler>(h));
}

template <class Buffers, class Handler>
void beast_connection_stream::async_write_some(const Buffers& b, Handler&& h) {
    if (c_->tls) c_->tls->async_write_some(b, std::forward<Handler>(h));
    else c_->socket.async_write_some(b, std::forward<Handler>(h));
}

class beast_exchange;

/// The state shared by all copies of one `beast_transport`. Members below `strand` are
/// touched on the strand only.
struct beast_transport_state {
    using strand_type = beast_net::strand<beast_net::any_io_executor>;

    explicit beast_transport_state(const beast_net::any_io_executor& ex) : strand(beast_net::make_strand(ex)) {}
    beast_transport_state(const beast_transport_state&) = delete;
    beast_transport_state& operator=(const beast_transport_state&) = delete;

    transport_options opts;
    parsed_url url;
    std::string base_url;
    std::string host_header;
    std::string user_agent;
    proxy_route proxy;
    std::string connect_request; // https through a proxy
    std::string target_prefix;   // path prefix, after http://host:port through a proxy
    std::optional<beast_net::ssl::context> tls;
    error_code tls_error; // a CA file or directory that could not be loaded
    error_code init_error;
    std::string init_message;

    strand_type strand;
    std::vector<std::shared_ptr<beast_connection>> idle;
    std::size_t in_flight = 0;
    std::size_t peak_in_flight = 0;
    beast_exchange* running = nullptr; // a list through beast_exchange::next_
    bool closed = false;

    template <class Getenv>
    void init(std::string url_text, transport_options o, Getenv&& getenv, error_code& ec) {
        opts = std::move(o);
        base_url = std::move(url_text);
        ec = {};
        if (!parse_base_url(base_url, url, ec)) {
            init_message = "beast_transport: the base URL is not a valid http(s)://host[:port][/prefix] URL";
        } else if (url.scheme == "http" && !url.loopback && !opts.allow_insecure_http) {
            ec = errc::insecure_url;
            init_message = "beast_transport: plain http is only allowed to loopback hosts";
        } else if (opts.connect_timeout <= std::chrono::milliseconds::zero()) {
            ec = errc::invalid_option;
            init_message = "beast_transport: connect_timeout must be positive";
        } else if (opts.max_response_size == 0 || opts.max_response_header_size == 0 ||
                   opts.max_response_header_size > 0xffffffffu) {
            ec = errc::invalid_option;
            init_message = "beast_transport: max_response_size and max_response_header_size must be positive "
                           "(the header size below 4 GiB)";
        } else if (!is_valid_header_value(opts.user_agent)) {
            ec = errc::invalid_option;
            init_message = "beast_transport: user_agent holds a line break";
        } else if (!resolve_proxy(opts.proxy, url, getenv, proxy, ec, init_message)) {
            init_message = "beast_transport: " + init_message;
        }
        init_error = ec;
        if (ec) return;
        base_url = url.scheme + "://" + host_header_value(url) + url.path_prefix;
        host_header = host_header_value(url);
        user_agent = opts.user_agent.empty() ? std::string(sdk_name) + "/" + sdk_version : opts.user_agent;
        if (proxy.use && url.scheme == "https") connect_request = detail::connect_request(url, proxy.proxy, user_agent);
        target_prefix = (proxy.use && url.scheme == "http" ? "http://" + host_header : std::string()) + url.path_prefix;
        if (url.scheme == "https") init_tls();
    }

    void init_tls() {
        namespace ssl = beast_net::ssl;
        tls.emplace(ssl::context::tls_client);
        boost::system::error_code ec;
        tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                             ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                         ec);
        if (!opts.tls.ca_file.empty()) tls->load_verify_file(opts.tls.ca_file, ec);
        if (!ec && !opts.tls.ca_dir.empty()) tls->add_verify_path(opts.tls.ca_dir, ec);
        if (!ec && opts.tls.ca_file.empty() && opts.tls.ca_dir.empty()) tls->set_default_verify_paths(ec);
        if (ec) tls_error = errc::tls_failed;
        tls->set_verify_mode(opts.tls.verify_peer ? ssl::verify_peer : ssl::verify_none, ec);
    }

    std::size_t idle_limit() const noexcept {
        return opts.idle_pool_follows_concurrency ? (std::max)(opts.max_idle_connections, peak_in_flight)
                                                  : opts.max_idle_connections;
    }

    /// A kept-alive connection that can carry a request, or null.
    std::shared_ptr<beast_connection> take_idle() {
        while (!idle.empty()) {
            auto c = std::move(idle.back());
            idle.pop_back();
            if (c->reusable()) return c;
        }
        return nullptr;
    }

    void give_back(std::shared_ptr<beast_connection> c) {
        if (closed || idle.size() >= idle_limit() || !c->reusable()) return;
        // An idle connection keeps no large read buffer.
        if (c->buffer.capacity() > 8192) c->buffer.shrink_to_fit();
        idle.push_back(std::move(c));
    }

    inline void cancel_all(errc why);
};

/** One request and its response (`send`) or one stream, from the request written to the
    end; it calls `complete` exactly once. Runs on the strand. */
class beast_exchange : public std::enable_shared_from_this<beast_exchange> {
public:
    using clock = std::chrono::steady_clock;

    /// `req` is validated and serialised here; an error is reported by `start`.
    beast_exchange(std::shared_ptr<beast_transport_state> st, const http_request& req, bool streaming)
        : st_(std::move(st)), streaming_(streaming), timer_(st_->strand), resolver_(st_->strand) {
        if (st_->init_error) {
            early_ = st_->init_error;
            return;
        }
        if (!validate_request(req, early_)) return;
        timeout_ = cap_timeout(req.timeout);
        wire_.reserve(64 + st_->target_prefix.size() + req.target.size() + req.body.size() + 32 * req.headers.size() +
                      st_->user_agent.size() + st_->host_header.size());
        wire_ += to_string(req.method);
        wire_ += ' ';
        wire_ += st_->target_prefix;
        wire_ += req.target;
        wire_ += " HTTP/1.1\r\n";
        for_each_request_field(req, st_->user_agent, st_->host_header, [this](std::string_view n, std::string_view v) {
            wire_.append(n.data(), n.size());
            wire_ += ": ";
            wire_.append(v.data(), v.size());
            wire_ += "\r\n";
        });
        if (st_->proxy.use && st_->connect_request.empty() && !st_->proxy.proxy.authorization.empty()) {
            // Plain http to a proxy: every request goes to the proxy and carries its credentials.
            wire_ += "Proxy-Authorization: ";
            wire_ += st_->proxy.proxy.authorization;
            wire_ += "\r\n";
        }
        if (!req.body.empty() || req.method == http_method::post || req.method == http_method::put) {
            wire_ += "Content-Length: ";
            wire_ += std::to_string(req.body.size());
            wire_ += "\r\n";
        }
        wire_ += "\r\n";
        wire_ += req.body;
    }

    beast_exchange(const beast_exchange&) = delete;
    beast_exchange& operator=(const beast_exchange&) = delete;
    virtual ~beast_exchange() = default;

    /// Begins; on the strand.
    void start() {
        auto& st = *st_;
        if (!early_ && st.closed) early_ = errc::canceled;
        if (!early_ && st.tls && st.tls_error) early_ = st.tls_error;
        if (early_) return complete_once(early_);
        // Enter the list of operations under way.
        next_ = st.running;
        if (next_) next_->prev_ = this;
        st.running = this;
        listed_ = true;
        if (!streaming_) {
            ++st.in_flight;
            st.peak_in_flight = (std::max)(st.peak_in_flight, st.in_flight);
            counted_ = true;
        }
        start_ = clock::now();
        deadline_ = streaming_ ? (clock::time_point::max)() : start_ + timeout_;
        if (!streaming_) conn_ = st.take_idle();
        if (conn_) {
            reused_ = true;
            arm_timer();
            return write_request();
        }
        connect();
    }

    /// Ends the exchange with `why` as soon as its pending operation returns. On the strand.
    void fail(errc why) {
        if (done_ || reason_) return;
        reason_ = why;
        timer_.cancel();
        resolver_.cancel();
        if (conn_) conn_->close();
    }

protected:
    /// Called once, on the strand, with the outcome; `response_` holds the response of a
    /// successful `send`.
    virtual void complete(error_code ec) = 0;
    /// Stream callbacks; false ends the stream without an error.
    virtual bool on_head(const http_response&) { return true; }
    virtual bool on_data(std::string_view) { return true; }

    http_response response_;

private:
    enum class phase { connecting, tunnel, handshake, exchanging };

    void complete_once(error_code ec) {
        if (done_) return;
        done_ = true;
        timer_.cancel();
        auto& st = *st_;
        if (listed_) {
            if (prev_) prev_->next_ = next_;
            else st.running = next_;
            if (next_) next_->prev_ = prev_;
            listed_ = false;
        }
        if (counted_) --st.in_flight;
        if (conn_) {
            if (!ec && !streaming_ && keep_alive_) st.give_back(std::move(conn_));
            else conn_->close();
            conn_.reset();
        }
        complete(ec);
    }

    // Ends with the failure reason when one was set, else with `ec` mapped for the phase.
    void finish_error(errc mapped) { complete_once(reason_ ? error_code(*reason_) : error_code(mapped)); }

    void arm_timer() {
        timer_.expires_at(due());
        timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) { self->on_timer(ec); });
    }

    clock::time_point due() const {
        if (phase_ != phase::exchanging) return (std::min)(connect_deadline_, deadline_);
        if (streaming_) return silence_from_ + timeout_;
        return deadline_;
    }

    void on_timer(const boost::system::error_code& ec) {
        if (done_ || reason_ || ec == beast_net::error::operation_aborted) return;
        const auto now = clock::now();
        const auto when = due();
        if (now < when) return arm_timer();
        // The connect timeout ends the connection attempt, the request's timeout the rest.
        const bool connect_expired = phase_ != phase::exchanging && connect_deadline_ < deadline_;
        fail(connect_expired ? errc::connection_failed : errc::timeout);
    }

    void connect() {
        auto& st = *st_;
        phase_ = phase::connecting;
        connect_deadline_ = start_ + cap_timeout(st.opts.connect_timeout);
        conn_ = std::make_shared<beast_connection>(st.strand);
        arm_timer();
        const std::string& host = st.proxy.use ? st.proxy.proxy.host : st.url.host;
        const int port = st.proxy.use ? st.proxy.proxy.port : st.url.port;
        boost::system::error_code ec;
        const auto address = beast_net::ip::make_address(host, ec);
        if (!ec) {
            // An IP literal needs no lookup.
            endpoint_ = beast_tcp::endpoint(address, static_cast<unsigned short>(port));
            conn_->socket.async_connect(*endpoint_, [self = shared_from_this()](const boost::system::error_code& e) {
                self->on_connect(e);
            });
            return;
        }
        resolver_.async_resolve(host, std::to_string(port), beast_tcp::resolver::numeric_service,
                                [self = shared_from_this()](const boost::system::error_code& e,
                                                            beast_tcp::resolver::results_type results) {
                                    self->on_resolve(e, std::move(results));
                                });
    }

    void on_resolve(const boost::system::error_code& ec, beast_tcp::resolver::results_type results) {
        if (reason_ || ec) return finish_error(errc::connection_failed);
        beast_net::async_connect(conn_->socket, results,
                                 [self = shared_from_this()](const boost::system::error_code& e, const beast_tcp::endpoint&) {
                                     self->on_connect(e);
                                 });
    }

    void on_connect(const boost::system::error_code& ec) {
        if (reason_ || ec) return finish_error(errc::connection_failed);
        boost::system::error_code ignored;
        conn_->socket.set_option(beast_tcp::no_delay(true), ignored);
        if (!st_->connect_request.empty()) return open_tunnel();
        start_tls_or_write();
    }

    void open_tunnel() {
        phase_ = phase::tunnel;
        beast_net::async_write(conn_->socket, beast_net::buffer(st_->connect_request),
                               [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                                   if (self->reason_ || ec) return self->finish_error(errc::connection_failed);
                                   self->read_tunnel_reply();
                               });
    }

    void read_tunnel_reply() {
        tunnel_reply_.clear();
        beast_net::async_read_until(
            conn_->socket, beast_net::dynamic_buffer(tunnel_reply_, st_->opts.max_response_header_size), "\r\n\r\n",
            [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                if (self->reason_ || ec) return self->finish_error(errc::connection_failed);
                // The proxy sends nothing after its head before the TLS client speaks.
                const int status = n == self->tunnel_reply_.size() ? connect_reply_status(self->tunnel_reply_) : -1;
                self->tunnel_reply_.clear();
                self->tunnel_reply_.shrink_to_fit();
                if (!connect_succeeded(status)) {
                    self->refused_status_ = status;
                    return self->finish_error(errc::connection_failed);
                }
                self->start_tls_or_write();
            });
    }

    void start_tls_or_write() {
        auto& st = *st_;
        if (!st.tls) {
            phase_ = phase::exchanging;
            return write_request();
        }
        phase_ = phase::handshake;
        namespace ssl = beast_net::ssl;
        conn_->tls = std::make_unique<ssl::stream<beast_tcp::socket&>>(conn_->socket, *st.tls);
        boost::system::error_code ec;
        beast_net::ip::make_address(st.url.host, ec);
        // SNI for names only (RFC 6066 forbids addresses); the name or address is verified.
        if (ec && !SSL_set_tlsext_host_name(conn_->tls->native_handle(), st.url.host.c_str()))
            return finish_error(errc::tls_failed);
        if (st.opts.tls.verify_peer) conn_->tls->set_verify_callback(ssl::host_name_verification(st.url.host), ec);
        conn_->tls->async_handshake(ssl::stream_base::client, [self = shared_from_this()](const boost::system::error_code& e) {
            if (self->reason_ || e) return self->finish_error(errc::tls_failed);
            self->phase_ = phase::exchanging;
            self->write_request();
        });
    }

    void write_request() {
        phase_ = phase::exchanging;
        silence_from_ = clock::now();
        beast_net::async_write(conn_->io, beast_net::buffer(wire_),
                               [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                                   if (self->reason_ || ec) return self->finish_error(errc::connection_lost);
                                   self->wire_.clear();
                                   self->wire_.shrink_to_fit();
                                   self->silence_from_ = clock::now();
                                   if (self->streaming_) return self->read_stream_head();
                                   self->read_response();
                               });
    }

    static errc map_read_error(const boost::system::error_code& ec) {
        if (ec == beast_http::error::body_limit || ec == beast_http::error::header_limit ||
            ec == beast_http::error::buffer_overflow)
            return errc::response_too_large;
        return errc::connection_lost;
    }

    void fill_head(const beast_http::response_header<>& h) {
        response_.status = static_cast<int>(h.result_int());
        response_.headers.reserve(static_cast<std::size_t>(std::distance(h.begin(), h.end())));
        for (const auto& f : h) {
            const auto n = f.name_string();
            const auto v = f.value();
            response_.headers.push_back({std::string(n.data(), n.size()), std::string(v.data(), v.size())});
        }
    }

    void read_response() {
        auto& p = send_parser_.emplace();
        p.header_limit(static_cast<std::uint32_t>(st_->opts.max_response_header_size));
        p.body_limit(static_cast<std::uint64_t>(st_->opts.max_response_size));
        beast_http::async_read(conn_->io, conn_->buffer, p,
                               [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                                   if (self->reason_ || ec) return self->finish_error(map_read_error(ec));
                                   auto& msg = self->send_parser_->get();
                                   self->fill_head(msg.base());
                                   self->response_.body = std::move(msg.body());
                                   self->keep_alive_ = msg.keep_alive();
                                   self->send_parser_.reset();
                                   self->complete_once({});
                               });
    }

    void read_stream_head() {
        chunk_.reset(new char[chunk_size]);
        auto& p = stream_parser_.emplace();
        p.header_limit(static_cast<std::uint32_t>(st_->opts.max_response_header_size));
        p.body_limit(boost::none);
        beast_http::async_read_header(conn_->io, conn_->buffer, p,
                                      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                                          self->on_stream_head(ec);
                                      });
    }

    template <class F>
    bool deliver(F&& f) {
        try {
            return f();
        } catch (...) {
            failure_ = std::current_exception();
            return false;
        }
    }

    void on_stream_head(const boost::system::error_code& ec) {
        if (reason_ || ec) return finish_error(map_read_error(ec));
        silence_from_ = clock::now();
        fill_head(stream_parser_->get().base());
        const http_response head = std::move(response_);
        response_ = http_response{};
        if (!deliver([&] { return on_head(head); })) return end_stream();
        if (stream_parser_->is_done()) return end_stream();
        read_stream_body();
    }

    void read_stream_body() {
        auto& body = stream_parser_->get().body();
        body.data = chunk_.get();
        body.size = chunk_size;
        body.more = true;
        beast_http::async_read_some(conn_->io, conn_->buffer, *stream_parser_,
                                    [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                                        self->on_stream_body(ec);
                                    });
    }

    void on_stream_body(boost::system::error_code ec) {
        if (ec == beast_http::error::need_buffer) ec = {};
        if (reason_) return finish_error(errc::canceled);
        silence_from_ = clock::now();
        const std::size_t got = chunk_size - stream_parser_->get().body().size;
        if (got > 0 && !deliver([&] { return on_data(std::string_view(chunk_.get(), got)); })) return end_stream();
        if (reason_) return finish_error(errc::canceled); // canceled from the callback
        if (ec) return finish_error(map_read_error(ec));
        if (stream_parser_->is_done()) return end_stream();
        read_stream_body();
    }

    // The consumer ended the stream, the body ended, or a callback threw.
    void end_stream() {
        stream_parser_.reset();
        keep_alive_ = false;
        complete_once(failure_ ? error_code(errc::handler_error) : error_code());
    }

protected:
    std::exception_ptr failure_; ///< what a stream callback threw
    int refused_status_ = 0;     ///< the status of a refused CONNECT

private:
    friend struct beast_transport_state;

    std::shared_ptr<beast_transport_state> st_;
    bool streaming_;
    beast_net::steady_timer timer_;
    beast_tcp::resolver resolver_;
    std::optional<beast_tcp::endpoint> endpoint_;
    std::shared_ptr<beast_connection> conn_;
    std::string wire_;
    std::string tunnel_reply_;
    std::optional<beast_http::response_parser<beast_http::string_body>> send_parser_;
    std::optional<beast_http::response_parser<beast_http::buffer_body>> stream_parser_;
    static constexpr std::size_t chunk_size = 4096;
    std::unique_ptr<char[]> chunk_; // streams only
    error_code early_;
    std::optional<errc> reason_;
    std::chrono::milliseconds timeout_{0};
    clock::time_point start_, deadline_, connect_deadline_ = (clock::time_point::max)(), silence_from_;
    phase phase_ = phase::connecting;
    bool done_ = false, listed_ = false, counted_ = false, reused_ = false, keep_alive_ = false;
    beast_exchange* prev_ = nullptr;
    beast_exchange* next_ = nullptr;
};

inline void beast_transport_state::cancel_all(errc why) {
    // fail() only closes and cancels: the list changes when the completions run later.
    for (beast_exchange* e = running; e; e = e->next_) e->fail(why);
}

} // namespace detail
} // namespace sekuire

#endif
