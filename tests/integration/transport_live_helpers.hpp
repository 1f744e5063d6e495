// SPDX-License-Identifier: MIT
// Helpers of the live transport tests: httplib servers, a raw TCP server, a self-signed
// certificate, a stream run on a thread of its own.
#ifndef SEKUIRE_TESTS_TRANSPORT_LIVE_HELPERS_HPP
#define SEKUIRE_TESTS_TRANSPORT_LIVE_HELPERS_HPP

#include <sekuire/transport.hpp>
#include <sekuire/stop_token.hpp>

#include <httplib.h>

#include <boost/test/unit_test.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <poll.h>
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
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace sekuire_live {

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

    void start(const std::string& host = "127.0.0.1", std::size_t threads = 16) {
        BOOST_REQUIRE(svr_->is_valid());
        svr_->set_tcp_nodelay(true);
        svr_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
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

template <class Transport>
Transport make_transport_with(Transport (*make)(const std::string&, sekuire::transport_options), const std::string& url,
                              std::size_t max_response_size) {
    sekuire::transport_options o;
    o.max_response_size = max_response_size;
    o.connect_timeout = 2s;
    return make(url, o);
}

inline sekuire::http_request get(const std::string& target, std::chrono::milliseconds timeout = 3s) {
    sekuire::http_request req;
    req.method = sekuire::http_method::get;
    req.target = target;
    req.timeout = timeout;
    return req;
}

// Sleeps in slices until `total` passed or the server shuts down.
inline void idle_for(const test_server& srv, std::chrono::milliseconds total) {
    const auto until = std::chrono::steady_clock::now() + total;
    while (!srv.shutting_down && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
}

// A port on 127.0.0.1 where nothing listens (bound, then closed).
inline int closed_port() {
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
inline bool have_ipv6_loopback() {
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
template <class Transport>
class stream_runner {
public:
    stream_runner() = default;
    stream_runner(const stream_runner&) = delete;
    stream_runner& operator=(const stream_runner&) = delete;
    ~stream_runner() {
        if (thread_.joinable()) thread_.join();
    }

    void start(const Transport& t, const sekuire::http_request& req, sekuire::stream_callbacks& cb,
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
    explicit self_signed_cert(const std::string& alt_names = "IP:127.0.0.1,DNS:localhost") {
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
        ok = ok && add_extension(cert, NID_subject_alt_name, alt_names.c_str());
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


// A small HTTP proxy on 127.0.0.1 and an ephemeral port that records what it saw. CONNECT
// to any host opens a tunnel to 127.0.0.1:`backend_port` (so a test can use a name such as
// backend.test that resolves nowhere); an absolute-form request is answered by the proxy
// itself with "via proxy". With `required_auth`, a CONNECT without exactly that
// Proxy-Authorization value gets 407; with `refuse_status`, every CONNECT gets that status.
class connect_proxy {
public:
    explicit connect_proxy(int backend_port, std::string required_auth = {}, int refuse_status = 0)
        : backend_port_(backend_port), required_auth_(std::move(required_auth)), refuse_status_(refuse_status) {
        listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
        BOOST_REQUIRE(listener_ >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        BOOST_REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
        BOOST_REQUIRE(::listen(listener_, 16) == 0);
        socklen_t len = sizeof(addr);
        BOOST_REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port_ = ntohs(addr.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }

    connect_proxy(const connect_proxy&) = delete;
    connect_proxy& operator=(const connect_proxy&) = delete;

    ~connect_proxy() {
        done_ = true;
        acceptor_.join();
        std::lock_guard<std::mutex> lock(m_);
        for (auto& t : workers_) t.join();
        ::close(listener_);
    }

    /// `http://[user_info@]127.0.0.1:port`
    std::string url(const std::string& user_info = {}) const {
        return "http://" + (user_info.empty() ? std::string() : user_info + "@") + "127.0.0.1:" + std::to_string(port_);
    }

    /// The request heads received, one per connection.
    std::vector<std::string> heads() const {
        std::lock_guard<std::mutex> lock(m_);
        return heads_;
    }

    /// Every byte the clients sent, tunnels included.
    std::string client_bytes() const {
        std::lock_guard<std::mutex> lock(m_);
        return client_bytes_;
    }

private:
    void record(const char* data, std::size_t n) {
        std::lock_guard<std::mutex> lock(m_);
        client_bytes_.append(data, n);
    }

    void accept_loop() {
        while (!done_) {
            pollfd p{listener_, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            const int fd = ::accept(listener_, nullptr, nullptr);
            if (fd < 0) continue;
            std::lock_guard<std::mutex> lock(m_);
            workers_.emplace_back([this, fd] {
                serve(fd);
                ::close(fd);
            });
        }
    }

    static bool send_all(int fd, const std::string& s) {
        std::size_t sent = 0;
        while (sent < s.size()) {
            const ssize_t n = ::send(fd, s.data() + sent, s.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) return false;
            sent += static_cast<std::size_t>(n);
        }
        return true;
    }

    void serve(int fd) {
        std::string head;
        char buf[4096];
        for (int i = 0; i < 500 && !done_ && head.find("\r\n\r\n") == std::string::npos && head.size() < 65536; ++i) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 10) <= 0) continue;
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) return;
            record(buf, static_cast<std::size_t>(n));
            head.append(buf, static_cast<std::size_t>(n));
        }
        const std::size_t end = head.find("\r\n\r\n");
        if (end == std::string::npos) return;
        {
            std::lock_guard<std::mutex> lock(m_);
            heads_.push_back(head.substr(0, end + 4));
        }
        if (head.compare(0, 8, "CONNECT ") != 0) {
            send_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nvia proxy");
            return;
        }
        if (refuse_status_ != 0) {
            send_all(fd, "HTTP/1.1 " + std::to_string(refuse_status_) + " Refused\r\nContent-Length: 0\r\n\r\n");
            return;
        }
        if (!required_auth_.empty() &&
            head.find("\r\nProxy-Authorization: " + required_auth_ + "\r\n") == std::string::npos) {
            send_all(fd, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\n"
                         "Content-Length: 0\r\n\r\n");
            return;
        }
        const int up = ::socket(AF_INET, SOCK_STREAM, 0);
        if (up < 0) return;
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<unsigned short>(backend_port_));
        if (::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
            !send_all(fd, "HTTP/1.1 200 Connection established\r\n\r\n")) {
            ::close(up);
            return;
        }
        if (head.size() > end + 4) send_all(up, head.substr(end + 4));
        // Relay both ways until either side closes or the proxy stops (bounded by done_).
        while (!done_) {
            pollfd p[2] = {{fd, POLLIN, 0}, {up, POLLIN, 0}};
            if (::poll(p, 2, 20) <= 0) continue;
            bool closed = false;
            for (int k = 0; k < 2 && !closed; ++k) {
                if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                const ssize_t n = ::recv(p[k].fd, buf, sizeof buf, 0);
                if (n <= 0) {
                    closed = true;
                    break;
                }
                if (k == 0) record(buf, static_cast<std::size_t>(n));
                if (!send_all(k == 0 ? up : fd, std::string(buf, static_cast<std::size_t>(n)))) closed = true;
            }
            if (closed) break;
        }
        ::close(up);
    }

    int backend_port_;
    std::string required_auth_;
    int refuse_status_;
    int listener_ = -1;
    int port_ = 0;
    std::atomic<bool> done_{false};
    mutable std::mutex m_;
    std::vector<std::string> heads_;
    std::string client_bytes_;
    std::vector<std::thread> workers_;
    std::thread acceptor_;
};

// Sets an environment variable for a scope, and restores it.
class scoped_env {
public:
    scoped_env(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value) ::setenv(name, value, 1);
        else ::unsetenv(name);
    }
    scoped_env(const scoped_env&) = delete;
    scoped_env& operator=(const scoped_env&) = delete;
    ~scoped_env() {
        if (old_) ::setenv(name_, old_->c_str(), 1);
        else ::unsetenv(name_);
    }

private:
    const char* name_;
    std::optional<std::string> old_;
};

} // namespace sekuire_live

#endif
