// SPDX-License-Identifier: MIT
// beast_transport against real httplib servers on 127.0.0.1 (ephemeral ports): the live
// tests every transport passes (transport_live_tests.inc), through its blocking members,
// then what only an asynchronous transport does.
#include <sekuire/beast_transport.hpp>

#include "transport_live_helpers.hpp"

#include <boost/test/unit_test.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#if defined(__cpp_impl_coroutine)
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#endif

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <map>
#include <memory>
#include <string>
#include <thread>

namespace {

// An io_context run by one thread for the whole test program: the executor of the
// transports whose blocking members the shared tests call.
class io_thread {
public:
    io_thread() : guard_(io_.get_executor()), thread_([this] { io_.run(); }) {}
    io_thread(const io_thread&) = delete;
    io_thread& operator=(const io_thread&) = delete;
    ~io_thread() {
        guard_.reset();
        io_.stop();
        thread_.join();
    }
    boost::asio::any_io_executor executor() { return io_.get_executor(); }

private:
    boost::asio::io_context io_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
    std::thread thread_;
};

io_thread& shared_io() {
    static io_thread io;
    return io;
}

// An HTTP echo server on Asio/Beast with the system's largest listen backlog, on a thread
// of its own: httplib's server listens with a backlog of 5, and a hundred connections at
// once overflow it (the kernel drops the handshakes' last ACKs; TcpExtListenOverflows
// counts them), which stalls connections for longer than any request timeout.
class echo_server {
public:
    echo_server() : acceptor_(io_) {
        namespace ip = boost::asio::ip;
        const ip::tcp::endpoint ep(ip::make_address("127.0.0.1"), 0);
        acceptor_.open(ep.protocol());
        acceptor_.set_option(ip::tcp::acceptor::reuse_address(true));
        acceptor_.bind(ep);
        acceptor_.listen(boost::asio::socket_base::max_listen_connections);
        accept();
        thread_ = std::thread([this] { io_.run(); });
    }
    echo_server(const echo_server&) = delete;
    echo_server& operator=(const echo_server&) = delete;
    ~echo_server() {
        io_.stop();
        thread_.join();
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()); }

private:
    struct session : std::enable_shared_from_this<session> {
        explicit session(boost::asio::ip::tcp::socket s) : socket(std::move(s)) {}
        boost::asio::ip::tcp::socket socket;
        boost::beast::flat_buffer buffer;
        boost::beast::http::request<boost::beast::http::string_body> req;
        boost::beast::http::response<boost::beast::http::string_body> res;
        void read() {
            req = {};
            boost::beast::http::async_read(socket, buffer, req, [self = shared_from_this()](auto ec, std::size_t) {
                if (!ec) self->answer();
            });
        }
        void answer() {
            res = {};
            res.version(11);
            res.result(boost::beast::http::status::ok);
            res.set(boost::beast::http::field::content_type, "text/plain");
            res.body() = req.body();
            res.keep_alive(req.keep_alive());
            res.prepare_payload();
            boost::beast::http::async_write(socket, res, [self = shared_from_this()](auto ec, std::size_t) {
                if (!ec && self->res.keep_alive()) self->read();
            });
        }
    };
    void accept() {
        acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::ip::tcp::socket s) {
            if (ec) return;
            std::make_shared<session>(std::move(s))->read();
            accept();
        });
    }

    boost::asio::io_context io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::thread thread_;
};

} // namespace

BOOST_AUTO_TEST_SUITE(beast_transport_live)

using transport_under_test = sekuire::beast_transport;

inline transport_under_test make_transport_under_test(const std::string& url, sekuire::transport_options o) {
    return transport_under_test(shared_io().executor(), url, std::move(o));
}

// Asio sends with MSG_NOSIGNAL: the disposition is left as it is.
constexpr bool transport_ignores_default_sigpipe = false;
// The completion carries only the error code.
constexpr bool transport_names_proxy_refusals = false;

#include "transport_live_tests.inc"

// --- what only the asynchronous interface does ----------------------------------------

namespace {
sekuire::transport_options local_options() {
    sekuire::transport_options o;
    o.connect_timeout = 2s;
    o.proxy.from_environment = false;
    return o;
}
} // namespace

BOOST_AUTO_TEST_CASE(many_concurrent_async_sends_on_one_thread) {
    echo_server srv;
    boost::asio::io_context io; // run by this thread only
    auto o = local_options();
    o.max_idle_connections = 8;
    sekuire::beast_transport t(io.get_executor(), srv.url(), o);
    constexpr int n = 100;
    int good = 0, done = 0;
    std::map<std::string, int> failures; // what went wrong, for the message
    for (int i = 0; i < n; ++i) {
        sekuire::http_request req;
        req.method = sekuire::http_method::post;
        req.target = "/echo";
        req.body = "{\"i\":" + std::to_string(i) + "}";
        req.timeout = 30s;
        t.async_send(req, [&good, &done, &failures, body = req.body](error_code ec, sekuire::http_response res) {
            ++done;
            if (!ec && res.status == 200 && res.body == body)
                ++good;
            else
                ++failures[ec ? ec.message() : "status " + std::to_string(res.status)];
        });
    }
    io.run(); // returns when every operation completed
    std::string why;
    for (const auto& kv : failures) why += " " + kv.first + " x" + std::to_string(kv.second) + ";";
    BOOST_TEST(done == n);
    BOOST_TEST(good == n, why);
}

BOOST_AUTO_TEST_CASE(per_operation_cancellation_and_cancel_all) {
    test_server srv;
    srv->Get("/slow", [&srv](const httplib::Request&, httplib::Response& res) {
        idle_for(srv, 3000ms);
        res.set_content("late", "text/plain");
    });
    srv->Get("/fast", [](const httplib::Request&, httplib::Response& res) { res.set_content("fast", "text/plain"); });
    srv.start();

    boost::asio::io_context io;
    sekuire::beast_transport t(io.get_executor(), srv.url(), local_options());
    boost::asio::cancellation_signal signal;
    error_code first, untouched;
    std::string untouched_body;
    const auto started = std::chrono::steady_clock::now();
    t.async_send(get("/slow", 10s), boost::asio::bind_cancellation_slot(
                                        signal.slot(), [&first](error_code ec, sekuire::http_response) { first = ec; }));
    // A second operation on the same transport is not affected by the first one's signal.
    t.async_send(get("/fast", 10s), [&](error_code ec, sekuire::http_response res) {
        untouched = ec;
        untouched_body = res.body;
    });
    boost::asio::steady_timer timer(io, 200ms);
    timer.async_wait([&signal](const boost::system::error_code&) { signal.emit(boost::asio::cancellation_type::terminal); });
    io.run();
    BOOST_TEST((first == errc::canceled));
    BOOST_TEST(!untouched);
    BOOST_TEST(untouched_body == "fast");
    BOOST_TEST((std::chrono::steady_clock::now() - started < 2500ms)); // not held by the slow server

    // cancel_all() ends everything under way.
    io.restart();
    error_code a, b;
    t.async_send(get("/slow", 10s), [&a](error_code ec, sekuire::http_response) { a = ec; });
    t.async_stream(get("/slow", 10s), {}, [&b](error_code ec) { b = ec; });
    boost::asio::steady_timer later(io, 200ms);
    later.async_wait([&t](const boost::system::error_code&) { t.cancel_all(); });
    io.run();
    BOOST_TEST((a == errc::canceled));
    BOOST_TEST((b == errc::canceled));
}

BOOST_AUTO_TEST_CASE(a_stream_canceled_from_its_callback) {
    test_server srv;
    srv->Get("/ticks", [&srv](const httplib::Request&, httplib::Response& res) {
        res.set_chunked_content_provider("text/event-stream", [&srv](std::size_t, httplib::DataSink& sink) {
            if (srv.shutting_down) return false;
            std::this_thread::sleep_for(10ms);
            return sink.write("data: tick\n\n", 12);
        });
    });
    srv.start();

    boost::asio::io_context io;
    sekuire::beast_transport t(io.get_executor(), srv.url(), local_options());
    boost::asio::cancellation_signal signal;
    int chunks = 0, heads = 0;
    bool on_strand = true;
    error_code result;
    sekuire::stream_callbacks cb;
    cb.on_response = [&](const sekuire::http_response& head) {
        ++heads;
        on_strand = on_strand && t.get_executor().target<boost::asio::strand<boost::asio::any_io_executor>>() &&
                    t.get_executor().target<boost::asio::strand<boost::asio::any_io_executor>>()->running_in_this_thread();
        return head.status == 200;
    };
    cb.on_data = [&](std::string_view) {
        if (++chunks == 2) signal.emit(boost::asio::cancellation_type::terminal); // from inside the callback
        return true;
    };
    t.async_stream(get("/ticks", 5s), cb,
                   boost::asio::bind_cancellation_slot(signal.slot(), [&result](error_code ec) { result = ec; }));
    io.run();
    BOOST_TEST((result == errc::canceled));
    BOOST_TEST(heads == 1);
    BOOST_TEST(chunks >= 2);
    BOOST_TEST(on_strand);
}

BOOST_AUTO_TEST_CASE(use_future_completion) {
    test_server srv;
    srv->Get("/hello", [](const httplib::Request&, httplib::Response& res) { res.set_content("hi", "text/plain"); });
    srv.start();
    auto t = make_transport_under_test(srv.url(), local_options());
    auto fut = t.async_send(get("/hello"), boost::asio::use_future);
    BOOST_REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    const auto res = fut.get();
    BOOST_TEST(res.status == 200);
    BOOST_TEST(res.body == "hi");
    // Errors arrive as exceptions through a future.
    auto t2 = make_transport_under_test("http://127.0.0.1:" + std::to_string(closed_port()), local_options());
    auto failed = t2.async_send(get("/hello"), boost::asio::use_future);
    BOOST_REQUIRE(failed.wait_for(10s) == std::future_status::ready);
    BOOST_CHECK_EXCEPTION(failed.get(), boost::system::system_error,
                          [](const boost::system::system_error& e) { return e.code() == errc::connection_failed; });
}

#if defined(__cpp_impl_coroutine)
BOOST_AUTO_TEST_CASE(cpp20_coroutine) {
    test_server srv;
    srv->Get("/hello", [](const httplib::Request&, httplib::Response& res) { res.set_content("hi", "text/plain"); });
    srv->Get("/events", [](const httplib::Request&, httplib::Response& res) {
        res.set_chunked_content_provider("text/event-stream", [n = 0](std::size_t, httplib::DataSink& sink) mutable {
            if (n++ == 2) {
                sink.done();
                return true;
            }
            return sink.write("data: c\n\n", 9);
        });
    });
    srv.start();
    boost::asio::io_context io;
    sekuire::beast_transport t(io.get_executor(), srv.url(), local_options());
    int status = 0;
    std::string body, streamed;
    error_code stream_ec{errc::timeout};
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
            const auto res = co_await t.async_send(get("/hello"), boost::asio::use_awaitable);
            status = res.status;
            body = res.body;
            sekuire::stream_callbacks cb;
            cb.on_data = [&streamed](std::string_view c) {
                streamed.append(c.data(), c.size());
                return true;
            };
            co_await t.async_stream(get("/events"), cb, boost::asio::use_awaitable);
            stream_ec = {};
        },
        boost::asio::detached);
    io.run();
    BOOST_TEST(status == 200);
    BOOST_TEST(body == "hi");
    BOOST_TEST(!stream_ec);
    BOOST_TEST(streamed == "data: c\n\ndata: c\n\n");
}
#endif

BOOST_AUTO_TEST_CASE(blocking_calls_from_the_strand_are_refused) {
    test_server srv;
    srv.start();
    auto t = make_transport_under_test(srv.url(), local_options());
    std::promise<error_code> got;
    boost::asio::post(t.get_executor(), [&] {
        error_code ec;
        t.send(get("/x"), ec);
        got.set_value(ec);
    });
    auto f = got.get_future();
    BOOST_REQUIRE(f.wait_for(10s) == std::future_status::ready);
    BOOST_TEST((f.get() == errc::invalid_argument));
}

BOOST_AUTO_TEST_SUITE_END()
