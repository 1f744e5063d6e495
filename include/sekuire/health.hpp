// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_HEALTH_HPP
#define SEKUIRE_HEALTH_HPP

/// @file
/// `health_server`: a small HTTP server for Kubernetes probes and Prometheus scrapes, on
/// cpp-httplib. It serves `/healthz` (liveness), `/readyz` (readiness) and `/metrics` (the
/// text `<sekuire/metrics.hpp>` builds), from callbacks the program gives.
///
/// ```cpp
/// sekuire::health_server_options o;
/// sekuire::parse_listen_address("0.0.0.0:9090", o.host, o.port);  // or set them directly
/// o.ready = [&] { return sekuire::health_probe{sdk.is_connected(), "not connected"}; };
/// o.metrics = [&] {
///     sekuire::prometheus_text t;
///     sekuire::add_beacon_metrics(t, sdk.get_beacon_status());
///     return t.str();
/// };
/// sekuire::health_server health(o);
/// health.start();   // throws sekuire::error when the address cannot be bound
/// ```

#include <sekuire/error.hpp>
#include <sekuire/metrics.hpp>

#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace sekuire {

/// What a liveness or readiness callback answers: `ok`, or not with a reason (`detail`,
/// shown in the probe's body; never a secret).
struct health_probe {
    /// Whether the probe passes (200) or not (503).
    bool ok = true;
    /// Why not, for the body of a 503.
    std::string detail;
};

/// Options of a `health_server`.
struct health_server_options {
    /// The address to listen on: an IPv4 or IPv6 address, or a host name. `0.0.0.0` (or
    /// `::`) listens on every interface, for probes from outside a container.
    std::string host = "127.0.0.1";
    /// The port; 0 takes a free one (`health_server::port()` tells which).
    int port = 0;
    /// `/healthz`: 200 while it answers `ok`, 503 otherwise. Empty: always 200.
    std::function<health_probe()> live;
    /// `/readyz`: 200 while it answers `ok`, 503 otherwise. Empty: always 200.
    std::function<health_probe()> ready;
    /// `/metrics`: the Prometheus text. Empty: `/metrics` answers 404.
    std::function<std::string()> metrics;
    /// Time limit for reading a request and writing a response. A connection serves one
    /// request, so that a slow or idle client cannot hold the one handler thread for long.
    std::chrono::milliseconds io_timeout{1000};
};

/** Reads a listen address, `HOST:PORT`: `127.0.0.1:9090`, `[::1]:9090`, `0.0.0.0:9090`, or
    `:9090` (every interface, `0.0.0.0`). The port is a number from 0 to 65535 (0: any free
    port). Returns false, leaving `host` and `port` alone, for anything else. Pure function.
*/
inline bool parse_listen_address(std::string_view text, std::string& host, int& port) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return false;
    std::string_view h = text.substr(0, colon);
    const std::string_view p = text.substr(colon + 1);
    if (p.empty() || p.size() > 5) return false;
    long n = 0;
    for (const char c : p) {
        if (c < '0' || c > '9') return false;
        n = n * 10 + (c - '0');
    }
    if (n > 65535) return false;
    if (!h.empty() && h.front() == '[') {
        if (h.size() < 3 || h.back() != ']') return false;
        h = h.substr(1, h.size() - 2);
    } else if (h.find(':') != std::string_view::npos) {
        return false; // an IPv6 address needs its brackets
    }
    for (const char c : h)
        if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '[' || c == ']' || c == '@') return false;
    host = h.empty() ? std::string("0.0.0.0") : std::string(h);
    port = static_cast<int>(n);
    return true;
}

/** Serves `/healthz`, `/readyz` and `/metrics` (GET and HEAD) on one listener thread and
    one handler thread. Every other path answers 404. A callback that throws makes its
    request answer 500.

    @par Thread Safety
    `start()`, `stop()`, `port()`, `url()` and `is_running()` are safe from any thread. The
    callbacks run on the server's handler thread, one at a time; they must not call
    `stop()`.
*/
class health_server {
public:
    /// A server with these options; nothing listens before `start()`.
    explicit health_server(health_server_options options) : options_(std::move(options)) {}
    health_server(const health_server&) = delete;
    health_server& operator=(const health_server&) = delete;
    /// Stops the server (see `stop()`).
    ~health_server() { stop(); }

    /** Binds the address and starts serving. Sets `ec`, with nothing listening, when the
        address cannot be bound (the system's error: `EADDRINUSE`, `EADDRNOTAVAIL`, ...),
        `errc::invalid_option` for a port outside 0..65535 or a non-positive `io_timeout`,
        and `errc::already_started` on a second call. */
    void start(error_code& ec) {
        ec = {};
        std::lock_guard<std::mutex> lock(mutex_);
        if (started_) {
            ec = errc::already_started;
            return;
        }
        if (options_.port < 0 || options_.port > 65535 || options_.io_timeout <= std::chrono::milliseconds::zero()) {
            ec = errc::invalid_option;
            return;
        }
        configure();
        errno = 0;
        int port = -1;
        if (options_.port == 0)
            port = server_.bind_to_any_port(options_.host);
        else if (server_.bind_to_port(options_.host, options_.port))
            port = options_.port;
        if (port <= 0) {
            const int e = errno != 0 ? errno : EADDRNOTAVAIL;
            ec = error_code(e, boost::system::generic_category());
            return;
        }
        started_ = true;
        listen_done_ = false;
        try {
            thread_ = std::thread([this] {
                try {
                    server_.listen_after_bind();
                } catch (...) {
                }
                listen_done_ = true;
            });
        } catch (const std::system_error& e) {
            listen_done_ = true;
            stopped_ = true;
            ec = error_code(e.code().value(), boost::system::generic_category());
            return;
        }
        // httplib 0.11 has no wait_until_ready(), and stop() before the listener runs is lost.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!server_.is_running() && !listen_done_ && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (!server_.is_running()) {
            halt_locked();
            ec = error_code(EADDRNOTAVAIL, boost::system::generic_category());
            return;
        }
        port_ = port;
    }

    /** Binds the address and starts serving.
        @throws sekuire::error for the errors listed at `start(error_code&)`, naming the
        address. */
    void start() {
        error_code ec;
        start(ec);
        if (ec) throw error(ec, "health server on " + options_.host + ":" + std::to_string(options_.port));
    }

    /// Stops serving and joins the server's threads; a request under way is finished first
    /// (at most `io_timeout`). Safe to call more than once, and before `start()`.
    void stop() noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!started_ || stopped_) return;
        halt_locked();
    }

    /// Whether the server is serving.
    bool is_running() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return started_ && !stopped_ && server_.is_running();
    }

    /// The port it listens on (0 before a successful `start()`).
    int port() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return port_;
    }

    /// `http://host:port` (an IPv6 host in brackets); empty before a successful `start()`.
    std::string url() const {
        std::lock_guard<std::mutex> lock(mutex_);
        if (port_ == 0) return {};
        const bool v6 = options_.host.find(':') != std::string::npos;
        return "http://" + (v6 ? "[" + options_.host + "]" : options_.host) + ":" + std::to_string(port_);
    }

private:
    void halt_locked() noexcept {
        stopped_ = true;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!server_.is_running() && !listen_done_ && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (!listen_done_) server_.stop();
        if (thread_.joinable()) thread_.join();
    }

    static void probe(const std::function<health_probe()>& f, const char* ok_text, const char* not_ok,
                      httplib::Response& res) {
        const health_probe p = f ? f() : health_probe{};
        res.status = p.ok ? 200 : 503;
        res.set_content(p.ok ? std::string(ok_text) + "\n" : std::string(not_ok) + (p.detail.empty() ? "" : ": " + p.detail) + "\n",
                        "text/plain; charset=utf-8");
    }

    void configure() {
        const auto timeout = options_.io_timeout;
        server_.new_task_queue = [] { return new httplib::ThreadPool(1); };
        server_.set_keep_alive_max_count(1);
        server_.set_read_timeout(timeout);
        server_.set_write_timeout(timeout);
        server_.set_payload_max_length(4096);
        // httplib also sets SO_REUSEPORT, which would let a second server share a port that is
        // in use: only SO_REUSEADDR here.
        server_.set_socket_options([](auto sock) {
            int yes = 1;
            ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const char*>(&yes), sizeof(yes));
        });
        server_.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
            res.set_header("Cache-Control", "no-store");
        });
        server_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
            res.status = 500;
            res.set_content("internal error\n", "text/plain; charset=utf-8");
        });
        server_.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
            probe(options_.live, "ok", "not live", res);
        });
        server_.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
            probe(options_.ready, "ready", "not ready", res);
        });
        server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
            if (!options_.metrics) {
                res.status = 404;
                res.set_content("no metrics\n", "text/plain; charset=utf-8");
                return;
            }
            res.set_content(options_.metrics(), prometheus_content_type);
        });
    }

    health_server_options options_;
    httplib::Server server_;
    mutable std::mutex mutex_;
    bool started_ = false;
    bool stopped_ = false;
    int port_ = 0;
    std::atomic<bool> listen_done_{true};
    std::thread thread_;
};

} // namespace sekuire

#endif
