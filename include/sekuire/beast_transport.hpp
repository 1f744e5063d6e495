// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_BEAST_TRANSPORT_HPP
#define SEKUIRE_BEAST_TRANSPORT_HPP

/// @file
/// `beast_transport`: an asynchronous Transport on Boost.Asio and Boost.Beast (header-only)
/// with TLS through OpenSSL. It meets both the AsyncTransport requirements and, through
/// blocking wrappers, the Transport ones (`transport.hpp`).

#include <sekuire/config.hpp>
#include <sekuire/detail/beast_exchange.hpp>
#include <sekuire/error.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/transport.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <cstdlib>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace sekuire {

namespace detail {

// The part of an exchange that knows the completion handler.
template <class Handler, class Signature>
class beast_handler_exchange;

template <class Handler>
class beast_handler_exchange<Handler, void(error_code, http_response)> final : public beast_exchange {
public:
    template <class H>
    beast_handler_exchange(std::shared_ptr<beast_transport_state> st, const http_request& req, H&& h)
        : beast_exchange(st, req, false), handler_(std::forward<H>(h)),
          work_(boost::asio::prefer(boost::asio::get_associated_executor(handler_, st->strand),
                                    boost::asio::execution::outstanding_work.tracked)) {}

    boost::asio::cancellation_slot slot() const { return boost::asio::get_associated_cancellation_slot(handler_); }

private:
    void complete(error_code ec) override {
        auto slot = boost::asio::get_associated_cancellation_slot(handler_);
        if (slot.is_connected()) slot.clear();
        auto ex = boost::asio::get_associated_executor(handler_, work_);
        boost::asio::dispatch(ex, [h = std::move(handler_), ec, r = std::move(response_), w = std::move(work_)]() mutable {
            std::move(h)(ec, std::move(r));
            (void)w;
        });
    }

    Handler handler_;
    boost::asio::any_io_executor work_;
};

template <class Handler>
class beast_handler_exchange<Handler, void(error_code)> final : public beast_exchange {
public:
    template <class H>
    beast_handler_exchange(std::shared_ptr<beast_transport_state> st, const http_request& req, stream_callbacks cb, H&& h)
        : beast_exchange(st, req, true), callbacks_(std::move(cb)), handler_(std::forward<H>(h)),
          work_(boost::asio::prefer(boost::asio::get_associated_executor(handler_, st->strand),
                                    boost::asio::execution::outstanding_work.tracked)) {}

    boost::asio::cancellation_slot slot() const { return boost::asio::get_associated_cancellation_slot(handler_); }

private:
    bool on_head(const http_response& head) override { return !callbacks_.on_response || callbacks_.on_response(head); }
    bool on_data(std::string_view chunk) override { return !callbacks_.on_data || callbacks_.on_data(chunk); }

    void complete(error_code ec) override {
        auto slot = boost::asio::get_associated_cancellation_slot(handler_);
        if (slot.is_connected()) slot.clear();
        callbacks_ = stream_callbacks{}; // what they hold goes before the caller resumes
        auto ex = boost::asio::get_associated_executor(handler_, work_);
        boost::asio::dispatch(ex, [h = std::move(handler_), ec, w = std::move(work_)]() mutable {
            std::move(h)(ec);
            (void)w;
        });
    }

    stream_callbacks callbacks_;
    Handler handler_;
    boost::asio::any_io_executor work_;
};

// Starts an exchange on the strand. A cancellation slot of the handler is connected to
// it: terminal, partial and total cancellation all end it with errc::canceled.
template <class Exchange>
void beast_launch(const std::shared_ptr<beast_transport_state>& st, std::shared_ptr<Exchange> x) {
    auto slot = x->slot();
    if (slot.is_connected()) {
        std::weak_ptr<Exchange> weak = x;
        auto strand = st->strand;
        slot.assign([weak, strand](boost::asio::cancellation_type type) {
            if (type == boost::asio::cancellation_type::none) return;
            // Posted: a signal may be emitted from any thread, the exchange runs on the strand.
            boost::asio::post(strand, [weak] {
                if (auto e = weak.lock()) e->fail(errc::canceled);
            });
        });
    }
    boost::asio::post(st->strand, [x = std::move(x)] { x->start(); });
}

struct beast_initiate_send {
    std::shared_ptr<beast_transport_state> st;
    template <class Handler>
    void operator()(Handler&& handler, const http_request& req) const {
        using exchange = beast_handler_exchange<std::decay_t<Handler>, void(error_code, http_response)>;
        beast_launch(st, std::make_shared<exchange>(st, req, std::forward<Handler>(handler)));
    }
};

struct beast_initiate_stream {
    std::shared_ptr<beast_transport_state> st;
    template <class Handler>
    void operator()(Handler&& handler, const http_request& req, stream_callbacks cb) const {
        using exchange = beast_handler_exchange<std::decay_t<Handler>, void(error_code)>;
        beast_launch(st, std::make_shared<exchange>(st, req, std::move(cb), std::forward<Handler>(handler)));
    }
};

} // namespace detail

/** An asynchronous Transport over Boost.Asio and Boost.Beast, HTTPS through OpenSSL.

    Built on an Asio executor; every operation runs on a strand of it, so one thread can
    carry thousands of operations and no call blocks the executor. Copies are cheap and
    share one state: the pool of kept-alive connections, the TLS context and the list of
    operations under way.

    - HTTP/1.1 with keep-alive: `async_send` reuses an idle connection (one whose last
      response was read completely and that has nothing waiting from the server) and puts
      it back afterwards. The pool keeps `max_idle_connections` idle connections, or as many
      as the most sends seen under way at once when `idle_pool_follows_concurrency`.
      `async_stream` opens a connection of its own.
    - TLS with certificate and host name verification (`ssl::host_name_verification`, which
      checks names and IP addresses) and SNI for host names, on by default; the system's
      trust store, or `tls.ca_file` / `tls.ca_dir`; TLS 1.2 at least.
    - The limits of `httplib_transport`: `max_response_size` for bodies of `async_send`,
      `max_response_header_size` for the status line and header fields of both (over
      either: `errc::response_too_large`), `connect_timeout` for resolving, connecting,
      the proxy tunnel and the TLS handshake (`errc::connection_failed` when it passes),
      redirects never followed (a 3xx is a response), plain http only to loopback unless
      `allow_insecure_http`.
    - Proxies (`transport_options::proxy`, `HTTPS_PROXY`, ...): https through a `CONNECT`
      tunnel with TLS end to end; plain http in absolute form.
    - Host names are resolved by Asio's resolver (the system resolver on a thread of its
      own, so the executor is never blocked); IP literals are not looked up.

    Per connection: a socket, a read buffer (shrunk when pooled) and, for https, an OpenSSL
    session and Asio's TLS buffers (about 34 KiB, Asio's fixed size). Per operation: one
    allocation for the operation itself, its request text, and the response.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe; the asynchronous members and `send()`,
    `stream()`, `cancel_all()` and `close()` may be called from any thread. Completion
    handlers run on their associated executor (by default the transport's strand); stream
    callbacks run on the strand.
*/
class beast_transport {
public:
    /// The executor operations run on: a strand of the executor given.
    using executor_type = boost::asio::any_io_executor;

    /** Builds a transport; no connection is opened yet. The environment is read now when
        `opts.proxy.from_environment`.

        @throws sekuire::error with `errc::invalid_url`, `errc::insecure_url` or
        `errc::invalid_option` (as `httplib_transport`, and for a proxy URL that cannot be
        read; the message names its source, never its credentials). A CA file or directory
        that cannot be loaded fails each https request with `errc::tls_failed` instead. */
    beast_transport(const executor_type& ex, std::string base_url, transport_options opts)
        : state_(std::make_shared<detail::beast_transport_state>(ex)) {
        error_code ec;
        init(std::move(base_url), std::move(opts), ec);
        if (ec) throw error(ec, state_->init_message);
    }

    /** Builds a transport; sets `ec` instead of throwing. A transport built with an error
        fails every operation with it. */
    beast_transport(const executor_type& ex, std::string base_url, transport_options opts, error_code& ec)
        : state_(std::make_shared<detail::beast_transport_state>(ex)) {
        init(std::move(base_url), std::move(opts), ec);
    }

    /// The strand operations run on.
    executor_type get_executor() const noexcept { return state_->strand; }

    /** Sends one request and reads the whole response, asynchronously.

        Completes with `void(error_code, http_response)`: the error as `httplib_transport`
        reports it (`errc::connection_failed`, `tls_failed`, `timeout`, `connection_lost`,
        `response_too_large`, `canceled`, `invalid_url`, `invalid_argument`, or the
        construction error) and an empty response, or no error and the response of any
        status. `req.timeout` bounds the whole exchange, enforced by a timer. The request is
        copied when the operation starts; `req` need not outlive the call.

        Cancellation: a cancellation slot associated with the handler
        (`bind_cancellation_slot`); a terminal, partial or total signal ends the operation
        with `errc::canceled` and closes its connection. `cancel_all()` and `close()` too.

        @param req the request; its target is relative to the base URL.
        @param token a completion token: a handler, `use_future`, `use_awaitable`, ...
    */
    template <class CompletionToken>
    auto async_send(const http_request& req, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(error_code, http_response)>(
            detail::beast_initiate_send{state_}, token, req);
    }

    /** Runs a streaming request on a connection of its own, asynchronously.

        Calls `cb.on_response` once with the status and headers (any status), then
        `cb.on_data` with each chunk of the body as it arrives, both on the transport's
        strand. Completes with `void(error_code)`: no error when the body ended or a
        callback returned false; `errc::timeout` when the server was silent for longer than
        `req.timeout` (between two reads, and from the request written to the head);
        `errc::canceled` after a cancellation (also one emitted from a callback);
        `errc::handler_error` when a callback threw (the stream is closed and the exception
        dropped: callbacks should not throw); or an error as for `async_send`. The stream as
        a whole has no time or size bound.
    */
    template <class CompletionToken>
    auto async_stream(const http_request& req, stream_callbacks cb, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(error_code)>(detail::beast_initiate_stream{state_},
                                                                              token, req, std::move(cb));
    }

    /** Ends every operation under way with `errc::canceled` (as soon as the strand runs);
        the transport stays usable. Safe from any thread. */
    void cancel_all() {
        auto st = state_;
        boost::asio::post(st->strand, [st] { st->cancel_all(errc::canceled); });
    }

    /** Ends every operation under way, closes the idle connections and makes every later
        operation fail with `errc::canceled`. Safe from any thread. */
    void close() {
        auto st = state_;
        boost::asio::post(st->strand, [st] {
            st->closed = true;
            st->cancel_all(errc::canceled);
            for (auto& c : st->idle) c->close();
            st->idle.clear();
        });
    }

    /** Sends one request and waits for the response (the Transport requirement).

        Blocks the calling thread on the executor: it must not be called from a thread
        that runs the executor (with a single-threaded `io_context` that would never
        return), and it is refused with `errc::invalid_argument` when called from the
        transport's own strand. Errors as `async_send`.
        @par Thread Safety
        Safe to call concurrently from several threads. */
    http_response send(const http_request& req, error_code& ec) {
        if (state_->strand.running_in_this_thread()) {
            ec = errc::invalid_argument;
            return {};
        }
        std::promise<std::pair<error_code, http_response>> done;
        auto result = done.get_future();
        async_send(req, [&done](error_code e, http_response r) { done.set_value({e, std::move(r)}); });
        auto out = result.get();
        ec = out.first;
        return std::move(out.second);
    }

    /** Sends one request and waits; throws instead of reporting through an `error_code`.
        @throws sekuire::error with the codes of `async_send`. */
    http_response send(const http_request& req) {
        error_code ec;
        http_response res = send(req, ec);
        detail::throw_if(ec, "beast_transport::send");
        return res;
    }

    /** Runs a streaming request and waits for its end (the Transport requirement).

        As `async_stream`, with the callbacks run on the executor's thread while the caller
        waits. Returns at once with `errc::canceled` when `stop` is already stopped; a stop
        from any thread later ends the stream with `errc::canceled` without waiting for a
        connect or handshake under way. Must not be called from a thread that runs the
        executor (`errc::invalid_argument` from the strand itself).
        @throws whatever a callback throws, after the connection is closed. */
    void stream(const http_request& req, stream_callbacks& cb, const stop_token& stop, error_code& ec) {
        if (state_->strand.running_in_this_thread()) {
            ec = errc::invalid_argument;
            return;
        }
        if (stop.stop_requested()) {
            ec = errc::canceled;
            return;
        }
        std::exception_ptr failure;
        stream_callbacks wrapped;
        wrapped.on_response = [&cb, &failure](const http_response& head) {
            try {
                return !cb.on_response || cb.on_response(head);
            } catch (...) {
                failure = std::current_exception();
                return false;
            }
        };
        wrapped.on_data = [&cb, &failure](std::string_view chunk) {
            try {
                return !cb.on_data || cb.on_data(chunk);
            } catch (...) {
                failure = std::current_exception();
                return false;
            }
        };
        auto signal = std::make_shared<boost::asio::cancellation_signal>();
        std::promise<error_code> done;
        auto result = done.get_future();
        async_stream(req, std::move(wrapped),
                     boost::asio::bind_cancellation_slot(signal->slot(), [&done](error_code e) { done.set_value(e); }));
        {
            auto strand = state_->strand;
            auto on_stop = [strand, signal] {
                boost::asio::post(strand, [signal] { signal->emit(boost::asio::cancellation_type::terminal); });
            };
            stop_callback<decltype(on_stop)> registration(stop, on_stop);
            ec = result.get();
        }
        if (failure) std::rethrow_exception(failure);
    }

    /** Runs a streaming request and waits; throws instead of reporting through an
        `error_code`.
        @throws sekuire::error with the codes of `async_stream`, or what a callback threw. */
    void stream(const http_request& req, stream_callbacks& cb, const stop_token& stop) {
        error_code ec;
        stream(req, cb, stop, ec);
        detail::throw_if(ec, "beast_transport::stream");
    }

    /** The normalised base URL, or the given text when it was refused. */
    const std::string& base_url() const noexcept { return state_->base_url; }

    /** The options the transport was built with. */
    const transport_options& options() const noexcept { return state_->opts; }

    /** `host:port` of the proxy requests go through, or empty (never credentials). */
    std::string proxy() const {
        if (!state_->proxy.use) return {};
        return state_->proxy.proxy.host + ":" + std::to_string(state_->proxy.proxy.port);
    }

private:
    void init(std::string base_url, transport_options opts, error_code& ec) {
        state_->init(std::move(base_url), std::move(opts),
                     [](const char* name) -> std::optional<std::string> {
                         if (const char* v = std::getenv(name)) return std::string(v);
                         return std::nullopt;
                     },
                     ec);
    }

    std::shared_ptr<detail::beast_transport_state> state_;
};

} // namespace sekuire

#endif
