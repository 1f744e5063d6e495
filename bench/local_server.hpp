// SPDX-License-Identifier: MIT
// A local httplib server on 127.0.0.1 and an ephemeral port, for the round-trip benches:
// TCP_NODELAY on (httplib answers small requests ~60 ms late without it) and keep-alive
// for the whole run. The routes are the bench's own.
#ifndef SEKUIRE_BENCH_LOCAL_SERVER_HPP
#define SEKUIRE_BENCH_LOCAL_SERVER_HPP

#include <httplib.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace sekuire_bench {

class local_http_server {
public:
    /// Adds the routes with `routes`, binds and starts listening; returns when the server
    /// runs (or after 3 s).
    explicit local_http_server(const std::function<void(httplib::Server&)>& routes) {
        svr_.set_tcp_nodelay(true);
        svr_.set_keep_alive_max_count(100000000);
        routes(svr_);
        port_ = svr_.bind_to_any_port("127.0.0.1");
        thread_ = std::thread([this] { svr_.listen_after_bind(); });
        // Stopping the server before it runs would hang (design.md); bounded wait.
        for (int i = 0; i < 3000 && !svr_.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    local_http_server(const local_http_server&) = delete;
    local_http_server& operator=(const local_http_server&) = delete;
    ~local_http_server() {
        svr_.stop();
        thread_.join();
    }
    int port() const { return port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

private:
    httplib::Server svr_;
    int port_ = -1;
    std::thread thread_;
};

} // namespace sekuire_bench

#endif
