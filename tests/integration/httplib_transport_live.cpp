// SPDX-License-Identifier: MIT
// httplib_transport against real httplib servers on 127.0.0.1 (ephemeral ports).
#include <sekuire/httplib_transport.hpp>

#include <boost/test/unit_test.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using sekuire::errc;
using sekuire::error_code;

// An httplib server on 127.0.0.1 and an ephemeral port, served from its own thread.
// Content providers wait in short slices and watch `shutting_down`, so that stop() is
// never held up by a provider.
class test_server {
public:
    explicit test_server(std::unique_ptr<httplib::Server> svr = std::make_unique<httplib::Server>())
        : svr_(std::move(svr)) {}

    test_server(const test_server&) = delete;
    test_server& operator=(const test_server&) = delete;
    ~test_server() { stop(); }

    httplib::Server& operator*() { return *svr_; }
    httplib::Server* operator->() { return svr_.get(); }

    void start(const std::string& host = "127.0.0.1") {
        BOOST_REQUIRE(svr_->is_valid());
        svr_->set_tcp_nodelay(true);
        svr_->new_task_queue = [] { return new httplib::ThreadPool(16); };
        port_ = svr_->bind_to_any_port(host);
        BOOST_REQUIRE(port_ > 0);
        thread_ = std::thread([this] { svr_->listen_after_bind(); });
        // httplib 0.11 has no wait_until_ready(), and stop() before the loop runs hangs.
        for (int i = 0; i < 3000 && !svr_->is_running(); ++i) std::this_thread::sleep_for(1ms);
        BOOST_REQUIRE(svr_->is_running());
    }

    void stop() {
        shutting_down = true;
        if (!thread_.joinable()) return;
        for (int i = 0; i < 3000 && !svr_->is_running(); ++i) std::this_thread::sleep_for(1ms);
        svr_->stop();
        thread_.join();
    }

    int port() const { return port_; }
    std::string url(const std::string& scheme = "http") const {
        return scheme + "://127.0.0.1:" + std::to_string(port_);
    }

    /// A GET route of an event stream that sends `first`, then stays open and silent
    /// until the client goes or the server stops.
    void serve_then_stay_silent(const std::string& path, std::string first) {
        svr_->Get(path, [this, first](const httplib::Request&, httplib::Response& res) {
            res.set_chunked_content_provider("text/event-stream", [this, first, sent = false](std::size_t,
                                                                                       httplib::DataSink& sink) mutable {
                if (shutting_down || !sink.is_writable()) return false;
                if (!sent) {
                    sent = true;
                    return sink.write(first.data(), first.size());
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                return true;
            });
        });
    }

    std::atomic<bool> shutting_down{false};

private:
    std::unique_ptr<httplib::Server> svr_;
    int port_ = -1;
    std::thread thread_;
};

sekuire::httplib_transport make_transport(const std::string& url, std::size_t max_response_size = 1 << 20) {
    sekuire::httplib_transport_options o;
    o.base_url = url;
    o.max_response_size = max_response_size;
    o.connect_timeout = 2s;
    return sekuire::httplib_transport(o);
}

sekuire::http_request get(const std::string& target, std::chrono::milliseconds timeout = 3s) {
    sekuire::http_request req;
    req.method = sekuire::http_method::get;
    req.target = target;
    req.timeout = timeout;
    return req;
}

// Sleeps in slices until `total` passed or the server shuts down.
void idle_for(const test_server& srv, std::chrono::milliseconds total) {
    const auto until = std::chrono::steady_clock::now() + total;
    while (!srv.shutting_down && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
}

// A port on 127.0.0.1 where nothing listens (bound, then closed).
int closed_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    BOOST_REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    socklen_t len = sizeof(addr);
    BOOST_REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    ::close(fd);
    return ntohs(addr.sin_port);
}

// Whether a socket can be bound to [::1] (containers may lack IPv6).
bool have_ipv6_loopback() {
    const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    return ok;
}

// Runs a stream on its own thread; the test waits for it with a bound.
class stream_runner {
public:
    stream_runner() = default;
    stream_runner(const stream_runner&) = delete;
    stream_runner& operator=(const stream_runner&) = delete;
    ~stream_runner() {
        if (thread_.joinable()) thread_.join();
    }

    void start(const sekuire::httplib_transport& t, const sekuire::http_request& req, sekuire::stream_callbacks& cb,
               const sekuire::stop_token& tok) {
        done_ = promise_.get_future();
        thread_ = std::thread([this, transport = t, req, &cb, tok]() mutable {
            try {
                transport.stream(req, cb, tok, ec);
            } catch (...) {
                threw = true;
            }
            promise_.set_value();
        });
    }

    bool wait(std::chrono::milliseconds bound) { return done_.wait_for(bound) == std::future_status::ready; }

    error_code ec;
    bool threw = false;

private:
    std::promise<void> promise_;
    std::future<void> done_;
    std::thread thread_;
};

// A bare TCP listener on 127.0.0.1 and an ephemeral port for answers httplib's server will
// not give: it accepts one connection and hands the socket to `serve`, on its own thread.
// `serve` must watch `done` and return when it is set.
class raw_server {
public:
    explicit raw_server(std::function<void(int fd, const std::atomic<bool>& done)> serve) {
        listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
        BOOST_REQUIRE(listener_ >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        BOOST_REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
        BOOST_REQUIRE(::listen(listener_, 4) == 0);
        socklen_t len = sizeof(addr);
        BOOST_REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this, serve = std::move(serve)] {
            const int fd = ::accept(listener_, nullptr, nullptr);
            if (fd < 0) return;
            serve(fd, done);
            ::close(fd);
        });
    }

    raw_server(const raw_server&) = delete;
    raw_server& operator=(const raw_server&) = delete;

    ~raw_server() {
        done = true;
        ::shutdown(listener_, SHUT_RDWR); // wakes an accept that never got a connection
        thread_.join();
        ::close(listener_);
    }

    std::string url(const std::string& scheme = "http") const {
        return scheme + "://127.0.0.1:" + std::to_string(port_);
    }

    std::atomic<bool> done{false};

private:
    int listener_ = -1;
    int port_ = 0;
    std::thread thread_;
};

// A self-signed certificate for 127.0.0.1 and localhost, made with the OpenSSL 3 API and
// written to a fresh temporary directory.
class self_signed_cert {
public:
    self_signed_cert() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "sekuire-tls-XXXXXX").string();
        BOOST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        dir_ = tmpl;
        cert_path = (dir_ / "cert.pem").string();
        key_path = (dir_ / "key.pem").string();

        EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
        BOOST_REQUIRE(pctx != nullptr);
        EVP_PKEY* key = nullptr;
        const bool generated = EVP_PKEY_keygen_init(pctx) == 1 && EVP_PKEY_CTX_set_group_name(pctx, "P-256") == 1 &&
                               EVP_PKEY_generate(pctx, &key) == 1;
        EVP_PKEY_CTX_free(pctx);
        BOOST_REQUIRE(generated);

        X509* cert = X509_new();
        BOOST_REQUIRE(cert != nullptr);
        bool ok = X509_set_version(cert, 2) == 1;
        ok = ok && ASN1_INTEGER_set(X509_get_serialNumber(cert), static_cast<long>(::getpid())) == 1;
        ok = ok && X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != nullptr;
        ok = ok && X509_gmtime_adj(X509_getm_notAfter(cert), 24L * 3600) != nullptr;
        ok = ok && X509_set_pubkey(cert, key) == 1;
        X509_NAME* name = X509_get_subject_name(cert);
        ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                              reinterpret_cast<const unsigned char*>("sekuire test"), -1, -1, 0) == 1;
        ok = ok && X509_set_issuer_name(cert, name) == 1;
        ok = ok && add_extension(cert, NID_basic_constraints, "critical,CA:TRUE");
        ok = ok && add_extension(cert, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
        ok = ok && X509_sign(cert, key, EVP_sha256()) > 0;

        if (ok) {
            FILE* f = std::fopen(cert_path.c_str(), "w");
            ok = f != nullptr && PEM_write_X509(f, cert) == 1;
            if (f) std::fclose(f);
        }
        if (ok) {
            FILE* f = std::fopen(key_path.c_str(), "w");
            ok = f != nullptr && PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
            if (f) std::fclose(f);
        }
        X509_free(cert);
        EVP_PKEY_free(key);
        BOOST_REQUIRE(ok);
    }

    self_signed_cert(const self_signed_cert&) = delete;
    self_signed_cert& operator=(const self_signed_cert&) = delete;

    ~self_signed_cert() {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }

    std::string cert_path;
    std::string key_path;

private:
    static bool add_extension(X509* cert, int nid, const char* value) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
        X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
        if (!ext) return false;
        const bool ok = X509_add_ext(cert, ext, -1) == 1;
        X509_EXTENSION_free(ext);
        return ok;
    }

    std::filesystem::path dir_;
};

} // namespace

BOOST_AUTO_TEST_SUITE(httplib_transport_live)

BOOST_AUTO_TEST_CASE(json_post_round_trip) {
    test_server srv;
    std::mutex m;
    std::string seen_ua, seen_auth, seen_type, seen_body, seen_host;
    srv->Post("/v1/echo", [&](const httplib::Request& req, httplib::Response& res) {
        {
            std::lock_guard<std::mutex> lock(m);
            seen_ua = req.get_header_value("User-Agent");
            seen_auth = req.get_header_value("Authorization");
            seen_type = req.get_header_value("Content-Type");
            seen_host = req.get_header_value("Host");
            seen_body = req.body;
        }
        res.status = 201;
        res.set_header("X-Test", "yes");
        res.set_content("{\"ok\":true}", "application/json");
    });
    srv.start();

    auto t = make_transport(srv.url());
    sekuire::http_request req;
    req.method = sekuire::http_method::post;
    req.target = "/v1/echo";
    req.headers = {{"Authorization", "Bearer tok_123"}};
    req.body = "{\"a\":1}";
    error_code ec;
    const auto res = t.send(req, ec);
    BOOST_TEST(!ec);
    BOOST_TEST(res.status == 201);
    BOOST_TEST(res.body == "{\"ok\":true}");
    BOOST_REQUIRE(sekuire::find_header(res.headers, "x-test") != nullptr);
    BOOST_TEST(*sekuire::find_header(res.headers, "x-test") == "yes");
    BOOST_REQUIRE(sekuire::find_header(res.headers, "Content-Type") != nullptr);
    BOOST_TEST(*sekuire::find_header(res.headers, "Content-Type") == "application/json");

    std::lock_guard<std::mutex> lock(m);
    BOOST_TEST(seen_ua == "sekuire-cpp/" SEKUIRE_VERSION_STRING);
    BOOST_TEST(seen_auth == "Bearer tok_123");
    BOOST_TEST(seen_type == "application/json");
    BOOST_TEST(seen_host == "127.0.0.1:" + std::to_string(srv.port()));
    BOOST_TEST(seen_body == "{\"a\":1}");
}

BOOST_AUTO_TEST_CASE(path_prefix_and_query_are_sent_verbatim) {
    test_server srv;
    std::mutex m;
    std::string seen_path, seen_target, seen_x;
    srv->Get("/core/v1/ping", [&](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(m);
        seen_path = req.path;
        seen_target = req.target;
        seen_x = req.get_param_value("x");
        res.set_content("pong", "text/plain");
    });
    srv.start();

    auto t = make_transport(srv.url() + "/core/");
    error_code ec;
    const auto res = t.send(get("/v1/ping?x=a%2Bb+c"), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(res.status == 200);
    BOOST_TEST(res.body == "pong");
    std::lock_guard<std::mutex> lock(m);
    BOOST_TEST(seen_path == "/core/v1/ping");
    BOOST_TEST(seen_target == "/core/v1/ping?x=a%2Bb+c"); // not re-encoded by httplib
    BOOST_TEST(seen_x == "a+b c");
}

BOOST_AUTO_TEST_CASE(ipv6_loopback_literal) {
    if (!have_ipv6_loopback()) {
        BOOST_TEST_MESSAGE("no IPv6 loopback here; skipped");
        return;
    }
    test_server srv;
    std::mutex m;
    std::string seen_host;
    srv->Get("/v1/ping", [&](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(m);
        seen_host = req.get_header_value("Host");
        res.set_content("pong6", "text/plain");
    });
    srv.start("::1");

    const std::string authority = "[::1]:" + std::to_string(srv.port());
    error_code ec;
    const auto res = make_transport("http://" + authority).send(get("/v1/ping"), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(res.body == "pong6");
    std::lock_guard<std::mutex> lock(m);
    BOOST_TEST(seen_host == authority);
}

BOOST_AUTO_TEST_CASE(keep_alive_connection_is_reused) {
    test_server srv;
    srv->Get("/port", [](const httplib::Request& req, httplib::Response& res) {
        res.set_content(std::to_string(req.remote_port), "text/plain");
    });
    srv.start();

    auto t = make_transport(srv.url());
    error_code ec1, ec2;
    const auto first = t.send(get("/port"), ec1);
    const auto second = t.send(get("/port"), ec2);
    BOOST_TEST(!ec1);
    BOOST_TEST(!ec2);
    BOOST_TEST(!first.body.empty());
    BOOST_TEST(first.body == second.body);
}

BOOST_AUTO_TEST_CASE(concurrent_sends_from_several_threads) {
    test_server srv;
    std::mutex m;
    std::set<int> ports;
    srv->Post("/echo", [&](const httplib::Request& req, httplib::Response& res) {
        {
            std::lock_guard<std::mutex> lock(m);
            ports.insert(req.remote_port);
        }
        res.set_content(req.body, "application/json");
    });
    srv.start();

    auto t = make_transport(srv.url());
    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    threads.reserve(4);
    for (int th = 0; th < 4; ++th) {
        threads.emplace_back([t, th, &good]() mutable { // each thread uses its own copy
            for (int i = 0; i < 5; ++i) {
                sekuire::http_request req;
                req.method = sekuire::http_method::post;
                req.target = "/echo";
                req.body = "{\"t\":" + std::to_string(th) + ",\"i\":" + std::to_string(i) + "}";
                error_code ec;
                const auto res = t.send(req, ec);
                if (!ec && res.status == 200 && res.body == req.body) ++good;
            }
        });
    }
    for (auto& th : threads) th.join();
    BOOST_TEST(good.load() == 20);
    // At most 4 clients exist at once and all go back to the pool, so connections are
    // reused: each client reconnects only when the server closes its connection (after
    // 5 requests with httplib 0.11's server defaults, later with newer ones).
    std::lock_guard<std::mutex> lock(m);
    BOOST_TEST(ports.size() <= 8u);
}

BOOST_AUTO_TEST_CASE(non_2xx_status_is_a_response) {
    test_server srv;
    srv->Get("/busy", [](const httplib::Request&, httplib::Response& res) {
        res.status = 503;
        res.set_header("Retry-After", "7");
        res.set_content("{\"error\":{\"code\":\"busy\"}}", "application/json");
    });
    srv->Get("/missing-body", [](const httplib::Request&, httplib::Response& res) { res.status = 401; });
    srv.start();

    auto t = make_transport(srv.url());
    error_code ec;
    auto res = t.send(get("/busy"), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(res.status == 503);
    BOOST_TEST(res.body == "{\"error\":{\"code\":\"busy\"}}");
    BOOST_REQUIRE(sekuire::find_header(res.headers, "retry-after") != nullptr);
    BOOST_TEST(*sekuire::find_header(res.headers, "retry-after") == "7");

    res = t.send(get("/missing-body"), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(res.status == 401);

    res = t.send(get("/no-such-route"), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(res.status == 404);
}

BOOST_AUTO_TEST_CASE(body_over_the_limit_is_refused) {
    test_server srv;
    srv->Get("/sized", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(std::string(4096, 'x'), "text/plain"); // with Content-Length
    });
    srv->Get("/chunked", [&srv](const httplib::Request&, httplib::Response& res) {
        res.set_chunked_content_provider("text/plain", [&srv, n = 0](std::size_t, httplib::DataSink& sink) mutable {
            if (srv.shutting_down || n == 8) {
                sink.done();
                return true;
            }
            ++n;
            const std::string chunk(512, 'y');
            return sink.write(chunk.data(), chunk.size());
        });
    });
    srv->Get("/fits", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(std::string(1024, 'z'), "text/plain");
    });
    srv.start();

    auto t = make_transport(srv.url(), 1024);
    error_code ec;
    auto res = t.send(get("/sized"), ec);
    BOOST_TEST((ec == errc::response_too_large));
    BOOST_TEST(res.body.empty());

    res = t.send(get("/chunked"), ec);
    BOOST_TEST((ec == errc::response_too_large));

    res = t.send(get("/fits"), ec); // exactly at the limit, and after two dropped connections
    BOOST_TEST(!ec);
    BOOST_TEST(res.body.size() == 1024u);
}

BOOST_AUTO_TEST_CASE(slow_handler_times_out) {
    test_server srv;
    srv->Get("/slow", [&srv](const httplib::Request&, httplib::Response& res) {
        idle_for(srv, 1500ms);
        res.set_content("late", "text/plain");
    });
    srv.start();

    auto t = make_transport(srv.url());
    error_code ec;
    const auto res = t.send(get("/slow", 200ms), ec);
    BOOST_TEST((ec == errc::timeout));
    BOOST_TEST(res.status == 0);
    srv.stop();
}

BOOST_AUTO_TEST_CASE(trickling_body_hits_the_total_deadline) {
    // Each chunk arrives well within the per-read timeout; only the total bound stops it.
    test_server srv;
    srv->Get("/trickle", [&srv](const httplib::Request&, httplib::Response& res) {
        res.set_chunked_content_provider("text/plain", [&srv, n = 0](std::size_t, httplib::DataSink& sink) mutable {
            if (srv.shutting_down || n == 40) {
                sink.done();
                return true;
            }
            if (n++ > 0) std::this_thread::sleep_for(50ms);
            return sink.write("x", 1);
        });
    });
    srv.start();

    auto t = make_transport(srv.url());
    error_code ec;
    t.send(get("/trickle", 400ms), ec);
    BOOST_TEST((ec == errc::timeout));
    srv.stop();
}

BOOST_AUTO_TEST_CASE(trickling_response_head_hits_the_total_deadline) {
    // One header byte every 50 ms keeps httplib's per-read timeout from firing, and no
    // handler runs before the head is complete: only the watchdog ends the call. Without
    // it the call would last as long as the server drips (up to 10 s here).
    raw_server srv([](int fd, const std::atomic<bool>& done) {
        char buf[4096];
        if (::recv(fd, buf, sizeof buf, 0) <= 0) return;
        const std::string head = "HTTP/1.1 200 OK\r\nX-Long: ";
        if (::send(fd, head.data(), head.size(), MSG_NOSIGNAL) < 0) return;
        for (int i = 0; i < 200 && !done; ++i) {
            std::this_thread::sleep_for(50ms);
            if (::send(fd, "a", 1, MSG_NOSIGNAL) < 0) return; // the client hung up
        }
    });
    auto t = make_transport(srv.url());
    error_code ec;
    const auto started = std::chrono::steady_clock::now();
    const auto res = t.send(get("/drip", 400ms), ec);
    const auto took = std::chrono::steady_clock::now() - started;
    BOOST_TEST((ec == errc::timeout));
    BOOST_TEST(res.status == 0);
    BOOST_TEST(std::chrono::duration_cast<std::chrono::milliseconds>(took).count() < 5000);
}

BOOST_AUTO_TEST_CASE(stop_during_a_stalled_tls_handshake_does_not_block_the_stopper) {
    // The server accepts the TCP connection, reads the ClientHello and never answers, so
    // the client sits in its TLS handshake (httplib 0.11 holds its connection lock there).
    std::mutex m;
    std::condition_variable cv;
    bool hello_read = false;
    raw_server srv([&](int fd, const std::atomic<bool>& done) {
        char buf[4096];
        if (::recv(fd, buf, sizeof buf, 0) <= 0) return;
        {
            std::lock_guard<std::mutex> lock(m);
            hello_read = true;
        }
        cv.notify_all();
        for (int i = 0; i < 1000 && !done; ++i) std::this_thread::sleep_for(10ms);
    });
    sekuire::httplib_transport_options o;
    o.base_url = srv.url("https");
    o.tls.verify_peer = false;
    o.connect_timeout = 1500ms;
    sekuire::stream_callbacks cb;
    sekuire::stop_source source;
    stream_runner run;
    run.start(sekuire::httplib_transport(o), get("/events", 1500ms), cb, source.get_token());
    bool in_handshake = false;
    {
        std::unique_lock<std::mutex> lock(m);
        in_handshake = cv.wait_for(lock, 5s, [&] { return hello_read; });
    }
    BOOST_REQUIRE(in_handshake);

    const auto before = std::chrono::steady_clock::now();
    source.request_stop();
    const auto stop_took = std::chrono::steady_clock::now() - before;
    BOOST_REQUIRE(run.wait(10s));
    // The handshake lasts up to connect_timeout (1.5 s); the stopper must not wait for it.
    BOOST_TEST(std::chrono::duration_cast<std::chrono::milliseconds>(stop_took).count() < 500);
    BOOST_TEST((run.ec == errc::canceled));
}

BOOST_AUTO_TEST_CASE(closed_port_is_connection_failed) {
    const int port = closed_port();
    auto t = make_transport("http://127.0.0.1:" + std::to_string(port));
    error_code ec;
    t.send(get("/v1/ping"), ec);
    BOOST_TEST((ec == errc::connection_failed));

    sekuire::stream_callbacks cb;
    t.stream(get("/v1/stream"), cb, sekuire::stop_token(), ec);
    BOOST_TEST((ec == errc::connection_failed));
}

BOOST_AUTO_TEST_CASE(redirect_is_returned_not_followed) {
    test_server other;
    std::atomic<int> other_hits{0};
    other->Get(R"(/.*)", [&other_hits](const httplib::Request&, httplib::Response& res) {
        ++other_hits;
        res.set_content("stolen", "text/plain");
    });
    other.start();

    test_server srv;
    const std::string location = other.url() + "/collect";
    srv->Get("/v1/redirect", [&location](const httplib::Request&, httplib::Response& res) {
        res.set_redirect(location, 302);
    });
    srv->Get("/v1/stream-redirect", [&location](const httplib::Request&, httplib::Response& res) {
        res.set_redirect(location, 307);
    });
    srv.start();

    auto t = make_transport(srv.url());
    sekuire::http_request req = get("/v1/redirect");
    req.headers = {{"Authorization", "Bearer must-not-leak"}};
    error_code ec;
    const auto res = t.send(req, ec);
    BOOST_TEST(!ec);
    BOOST_TEST(res.status == 302);
    BOOST_REQUIRE(sekuire::find_header(res.headers, "Location") != nullptr);
    BOOST_TEST(*sekuire::find_header(res.headers, "Location") == location);

    int stream_status = 0;
    sekuire::stream_callbacks cb;
    cb.on_response = [&stream_status](const sekuire::http_response& head) {
        stream_status = head.status;
        return true;
    };
    req.target = "/v1/stream-redirect";
    t.stream(req, cb, sekuire::stop_token(), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(stream_status == 307);
    BOOST_TEST(other_hits.load() == 0);
}

BOOST_AUTO_TEST_CASE(stream_chunks_arrive_incrementally) {
    test_server srv;
    std::mutex m;
    std::condition_variable cv;
    bool client_saw_first = false;
    bool server_waited_for_client = false;
    srv->Get("/events", [&](const httplib::Request&, httplib::Response& res) {
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "text/event-stream", [&, step = 0, waited = 0](std::size_t, httplib::DataSink& sink) mutable {
                if (srv.shutting_down) return false;
                if (step == 0) {
                    step = 1;
                    const std::string ev = "event: one\ndata: 1\n\n";
                    return sink.write(ev.data(), ev.size());
                }
                if (step == 1) {
                    std::unique_lock<std::mutex> lock(m);
                    // Wait in slices (the provider must return so that stop() can act).
                    if (!cv.wait_for(lock, 20ms, [&] { return client_saw_first; }) && ++waited < 150) return true;
                    server_waited_for_client = client_saw_first;
                    step = 2;
                    const std::string ev = "event: two\ndata: 2\n\n";
                    return sink.write(ev.data(), ev.size());
                }
                sink.done();
                return true;
            });
    });
    srv.start();

    auto t = make_transport(srv.url());
    std::string received;
    int heads = 0, status = 0;
    std::string content_type;
    sekuire::stream_callbacks cb;
    cb.on_response = [&](const sekuire::http_response& head) {
        ++heads;
        status = head.status;
        if (const auto* ct = sekuire::find_header(head.headers, "content-type")) content_type = *ct;
        return head.body.empty();
    };
    cb.on_data = [&](std::string_view chunk) {
        received.append(chunk.data(), chunk.size());
        if (received.find("event: one\ndata: 1\n\n") != std::string::npos) {
            std::lock_guard<std::mutex> lock(m);
            client_saw_first = true;
            cv.notify_all();
        }
        return true;
    };
    error_code ec;
    t.stream(get("/events", 3s), cb, sekuire::stop_token(), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(heads == 1);
    BOOST_TEST(status == 200);
    BOOST_TEST(content_type == "text/event-stream");
    BOOST_TEST(received == "event: one\ndata: 1\n\nevent: two\ndata: 2\n\n");
    std::lock_guard<std::mutex> lock(m);
    BOOST_TEST(server_waited_for_client); // the first event was seen before the second was written
}

BOOST_AUTO_TEST_CASE(stop_from_another_thread_cancels_an_idle_stream) {
    // Declaration order matters for the failure paths: the server is stopped first (which
    // ends any stream), then the stream thread is joined, then its callbacks go away.
    std::mutex m;
    std::condition_variable cv;
    bool got_data = false;
    sekuire::stream_callbacks cb;
    cb.on_data = [&](std::string_view) {
        std::lock_guard<std::mutex> lock(m);
        got_data = true;
        cv.notify_all();
        return true;
    };
    sekuire::stop_source source;
    stream_runner run;
    test_server srv;
    srv.serve_then_stay_silent("/idle", "data: first\n\n");
    srv.start();

    run.start(make_transport(srv.url()), get("/idle", 30s), cb, source.get_token());
    {
        std::unique_lock<std::mutex> lock(m);
        BOOST_REQUIRE(cv.wait_for(lock, 5s, [&] { return got_data; }));
    }
    source.request_stop();
    const bool finished = run.wait(5s); // far below the 30 s idle timeout
    BOOST_TEST(finished);
    if (!finished) srv.stop();
    BOOST_REQUIRE(run.wait(10s));
    BOOST_TEST((run.ec == errc::canceled));
    BOOST_TEST(!run.threw);
}

BOOST_AUTO_TEST_CASE(idle_timeout_fires_on_a_silent_stream) {
    test_server srv;
    srv.serve_then_stay_silent("/silent", ": hello\n\n");
    srv.start();

    auto t = make_transport(srv.url());
    int heads = 0;
    int chunks = 0;
    sekuire::stream_callbacks cb;
    cb.on_response = [&heads](const sekuire::http_response& head) {
        ++heads;
        return head.status == 200;
    };
    cb.on_data = [&chunks](std::string_view) {
        ++chunks;
        return true;
    };
    error_code ec;
    t.stream(get("/silent", 300ms), cb, sekuire::stop_token(), ec);
    BOOST_TEST((ec == errc::timeout));
    BOOST_TEST(heads == 1);
    BOOST_TEST(chunks >= 1);
}

BOOST_AUTO_TEST_CASE(on_data_returning_false_ends_the_stream_without_error) {
    test_server srv;
    srv->Get("/endless", [&srv](const httplib::Request&, httplib::Response& res) {
        res.set_chunked_content_provider("text/event-stream", [&srv](std::size_t, httplib::DataSink& sink) {
            if (srv.shutting_down) return false;
            std::this_thread::sleep_for(10ms);
            return sink.write("data: tick\n\n", 12);
        });
    });
    srv.start();

    auto t = make_transport(srv.url());
    int chunks = 0;
    sekuire::stream_callbacks cb;
    cb.on_data = [&chunks](std::string_view) {
        ++chunks;
        return false;
    };
    error_code ec;
    t.stream(get("/endless", 5s), cb, sekuire::stop_token(), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(chunks == 1);

    // on_response returning false ends it the same way, before any data.
    int heads = 0;
    chunks = 0;
    cb.on_response = [&heads](const sekuire::http_response&) {
        ++heads;
        return false;
    };
    t.stream(get("/endless", 5s), cb, sekuire::stop_token(), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(heads == 1);
    BOOST_TEST(chunks == 0);
}

BOOST_AUTO_TEST_CASE(non_200_stream_status_reaches_on_response) {
    test_server srv;
    srv->Get("/busy", [](const httplib::Request&, httplib::Response& res) {
        res.status = 503;
        res.set_content("busy", "text/plain");
    });
    srv->Get("/empty", [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
    srv.start();

    auto t = make_transport(srv.url());
    int status = 0, heads = 0;
    std::string body;
    sekuire::stream_callbacks cb;
    cb.on_response = [&](const sekuire::http_response& head) {
        ++heads;
        status = head.status;
        return true;
    };
    cb.on_data = [&body](std::string_view chunk) {
        body.append(chunk.data(), chunk.size());
        return true;
    };
    error_code ec;
    t.stream(get("/busy"), cb, sekuire::stop_token(), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(heads == 1);
    BOOST_TEST(status == 503);
    BOOST_TEST(body == "busy");

    heads = 0;
    t.stream(get("/empty"), cb, sekuire::stop_token(), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(heads == 1);
    BOOST_TEST(status == 204);
}

BOOST_AUTO_TEST_CASE(broken_stream_is_connection_lost) {
    test_server srv;
    srv->Get("/broken", [&srv](const httplib::Request&, httplib::Response& res) {
        res.set_chunked_content_provider("text/event-stream",
                                         [&srv, sent = false](std::size_t, httplib::DataSink& sink) mutable {
                                             if (srv.shutting_down || sent) return false; // closes mid-body
                                             sent = true;
                                             return sink.write("data: x\n\n", 9);
                                         });
    });
    srv.start();

    auto t = make_transport(srv.url());
    sekuire::stream_callbacks cb;
    error_code ec;
    t.stream(get("/broken", 5s), cb, sekuire::stop_token(), ec);
    BOOST_TEST((ec == errc::connection_lost));
}

BOOST_AUTO_TEST_CASE(callback_exception_propagates_after_cleanup) {
    test_server srv;
    srv->Get("/one", [](const httplib::Request&, httplib::Response& res) { res.set_content("x", "text/plain"); });
    srv.start();

    auto t = make_transport(srv.url());
    sekuire::stream_callbacks cb;
    cb.on_data = [](std::string_view) -> bool { throw std::runtime_error("consumer failed"); };
    error_code ec;
    BOOST_CHECK_THROW(t.stream(get("/one"), cb, sekuire::stop_token(), ec), std::runtime_error);
    // The transport is still usable.
    const auto res = t.send(get("/one"), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(res.body == "x");
}

BOOST_AUTO_TEST_CASE(https_verification) {
    self_signed_cert cert;
    test_server srv(std::make_unique<httplib::SSLServer>(cert.cert_path.c_str(), cert.key_path.c_str()));
    srv->Get("/hello", [](const httplib::Request&, httplib::Response& res) { res.set_content("hi", "text/plain"); });
    srv->Get("/events", [](const httplib::Request&, httplib::Response& res) {
        res.set_chunked_content_provider("text/event-stream", [n = 0](std::size_t, httplib::DataSink& sink) mutable {
            if (n++ == 2) {
                sink.done();
                return true;
            }
            return sink.write("data: s\n\n", 9);
        });
    });
    srv.start();

    sekuire::httplib_transport_options o;
    o.base_url = srv.url("https");
    o.connect_timeout = 2s;

    {
        // The system store does not know the test certificate.
        sekuire::httplib_transport t(o);
        error_code ec;
        t.send(get("/hello"), ec);
        BOOST_TEST((ec == errc::tls_failed));
        sekuire::stream_callbacks cb;
        t.stream(get("/events"), cb, sekuire::stop_token(), ec);
        BOOST_TEST((ec == errc::tls_failed));
    }
    {
        auto with_ca = o;
        with_ca.tls.ca_file = cert.cert_path;
        sekuire::httplib_transport t(with_ca);
        error_code ec;
        const auto res = t.send(get("/hello"), ec);
        BOOST_TEST(!ec);
        BOOST_TEST(res.status == 200);
        BOOST_TEST(res.body == "hi");

        std::string received;
        sekuire::stream_callbacks cb;
        cb.on_data = [&received](std::string_view chunk) {
            received.append(chunk.data(), chunk.size());
            return true;
        };
        t.stream(get("/events"), cb, sekuire::stop_token(), ec);
        BOOST_TEST(!ec);
        BOOST_TEST(received == "data: s\n\ndata: s\n\n");

        // The certificate also names localhost.
        with_ca.base_url = "https://localhost:" + std::to_string(srv.port());
        sekuire::httplib_transport by_name(with_ca);
        const auto res2 = by_name.send(get("/hello"), ec);
        BOOST_TEST(!ec);
        BOOST_TEST(res2.body == "hi");
    }
    {
        auto missing_ca = o;
        missing_ca.tls.ca_file = "/nonexistent/sekuire-ca.pem";
        sekuire::httplib_transport t(missing_ca);
        error_code ec;
        t.send(get("/hello"), ec);
        BOOST_TEST((ec == errc::tls_failed));
    }
    {
        auto insecure = o;
        insecure.tls.verify_peer = false;
        sekuire::httplib_transport t(insecure);
        error_code ec;
        const auto res = t.send(get("/hello"), ec);
        BOOST_TEST(!ec);
        BOOST_TEST(res.body == "hi");
    }
}

BOOST_AUTO_TEST_CASE(https_to_a_plain_http_server_is_tls_failed) {
    test_server srv;
    srv->Get("/hello", [](const httplib::Request&, httplib::Response& res) { res.set_content("hi", "text/plain"); });
    srv.start();
    sekuire::httplib_transport_options o;
    o.base_url = srv.url("https");
    o.tls.verify_peer = false;
    sekuire::httplib_transport t(o);
    error_code ec;
    t.send(get("/hello", 2s), ec);
    BOOST_TEST((ec == errc::tls_failed));
}

BOOST_AUTO_TEST_CASE(canceling_a_tls_stream_with_default_sigpipe_keeps_the_process) {
    // Client::stop() shuts the socket down; httplib then closes the TLS session gracefully,
    // and writing close_notify to the shut-down socket raises SIGPIPE. The test puts SIGPIPE
    // back to its default disposition (httplib's Server constructor sets SIG_IGN) before
    // the transport is built: the transport must ignore it then, or the write would end
    // this process.
    self_signed_cert cert;
    std::mutex m;
    std::condition_variable cv;
    bool got_data = false;
    sekuire::stream_callbacks cb;
    cb.on_data = [&](std::string_view) {
        std::lock_guard<std::mutex> lock(m);
        got_data = true;
        cv.notify_all();
        return true;
    };
    sekuire::stop_source source;
    stream_runner run;
    test_server srv(std::make_unique<httplib::SSLServer>(cert.cert_path.c_str(), cert.key_path.c_str()));
    srv.serve_then_stay_silent("/idle", "data: first\n\n");
    srv.start();
    struct sigaction dfl {}, old {}, now {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    BOOST_REQUIRE(sigaction(SIGPIPE, &dfl, &old) == 0);

    sekuire::httplib_transport_options o;
    o.base_url = srv.url("https");
    o.tls.ca_file = cert.cert_path;
    sekuire::httplib_transport t(o);
    sigaction(SIGPIPE, nullptr, &now);
    BOOST_TEST((now.sa_handler == SIG_IGN));
    run.start(t, get("/idle", 30s), cb, source.get_token());
    bool started = false;
    {
        std::unique_lock<std::mutex> lock(m);
        started = cv.wait_for(lock, 5s, [&] { return got_data; });
    }
    source.request_stop();
    const bool finished = run.wait(5s);
    if (!finished) srv.stop();
    BOOST_REQUIRE(run.wait(10s));
    sigaction(SIGPIPE, &old, nullptr);

    BOOST_TEST(started);
    BOOST_TEST(finished);
    BOOST_TEST((run.ec == errc::canceled));
}

BOOST_AUTO_TEST_SUITE_END()
