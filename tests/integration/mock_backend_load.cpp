// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/testing/mock_backend.hpp>

// The mock backend under load: thousands of task streams on a few I/O threads, and a burst
// of simultaneous connects. Clients here are raw sockets (Asio, and plain non-blocking
// sockets), so that the test itself holds no thread per connection either.

#include <sekuire/protocol.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <httplib.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace proto = sekuire::protocol;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using sekuire::testing::mock_backend;
using sekuire::testing::mock_backend_options;

// The number of threads of this process.
std::size_t thread_count() {
    std::size_t n = 0;
    if (DIR* d = opendir("/proc/self/task")) {
        while (const dirent* e = readdir(d))
            if (e->d_name[0] != '.') ++n;
        closedir(d);
    }
    return n;
}

// Raises the soft limit on open files to at least `wanted` (within the hard limit).
bool ensure_open_files(rlim_t wanted) {
    rlimit r{};
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return false;
    if (r.rlim_cur >= wanted) return true;
    r.rlim_cur = std::min(wanted, r.rlim_max);
    return setrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur >= wanted;
}

// Waits (real time, bounded) until `done()`.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= end) return false;
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

proto::bootstrap_response bootstrap(const std::string& url) {
    httplib::Client cli(url);
    cli.set_connection_timeout(5, 0);
    cli.set_read_timeout(10, 0);
    proto::bootstrap_request req;
    req.install_token = std::string(sekuire::testing::mock_default_install_token);
    req.agent_id = "load-agent";
    req.capabilities = {"summarize"};
    auto r = cli.Post(std::string(proto::path::bootstrap), proto::encode(req), std::string(proto::header::json_type));
    BOOST_REQUIRE(r);
    BOOST_REQUIRE_EQUAL(r->status, 201);
    proto::bootstrap_response out;
    proto::decode_error err;
    BOOST_REQUIRE_MESSAGE(proto::decode(r->body, out, err), err.message());
    return out;
}

// One task stream read by an Asio client: done once it has a task event and, after it, a
// keep-alive comment. Every handler runs on the client's single thread.
struct stream_client : std::enable_shared_from_this<stream_client> {
    tcp::socket socket;
    std::string request;
    std::string received;
    std::array<char, 4096> buf{};
    bool done = false;
    std::atomic<int>& done_count;
    std::atomic<int>& failed_count;

    stream_client(net::io_context& ioc, std::string req, std::atomic<int>& done_n, std::atomic<int>& failed_n)
        : socket(ioc), request(std::move(req)), done_count(done_n), failed_count(failed_n) {}

    void start(const tcp::endpoint& ep) {
        socket.async_connect(ep, [self = shared_from_this()](const boost::system::error_code& ec) {
            if (ec) return self->fail();
            net::async_write(self->socket, net::buffer(self->request),
                             [self](const boost::system::error_code& wec, std::size_t) {
                                 if (wec) return self->fail();
                                 self->read();
                             });
        });
    }

    void read() {
        socket.async_read_some(net::buffer(buf), [self = shared_from_this()](const boost::system::error_code& ec,
                                                                              std::size_t n) {
            if (ec) {
                if (!self->done) self->fail();
                return;
            }
            self->received.append(self->buf.data(), n);
            if (!self->done) {
                const auto task = self->received.find("\nevent: task\n");
                if (task != std::string::npos && self->received.find(": keep-alive\n", task) != std::string::npos) {
                    self->done = true;
                    ++self->done_count;
                }
            }
            self->read();
        });
    }

    void fail() {
        if (done) return;
        done = true;
        ++failed_count;
    }

    // The ids of the task events received.
    std::vector<std::string> task_ids() const {
        std::vector<std::string> ids;
        std::size_t at = 0;
        while ((at = received.find("\nevent: task\ndata: ", at)) != std::string::npos) {
            at += std::strlen("\nevent: task\ndata: ");
            const auto end = received.find('\n', at);
            proto::task t;
            proto::decode_error err;
            if (proto::decode(received.substr(at, end - at), t, err)) ids.push_back(t.task_id);
        }
        return ids;
    }
};

// The listening socket of this process bound to `port`, or -1.
int find_listener(int port) {
    DIR* d = opendir("/proc/self/fd");
    if (!d) return -1;
    int found = -1;
    while (const dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        const int fd = std::atoi(e->d_name);
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 || ss.ss_family != AF_INET) continue;
        if (ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port) != port) continue;
        int listening = 0;
        socklen_t ll = sizeof listening;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) == 0 && listening) {
            found = fd;
            break;
        }
    }
    closedir(d);
    return found;
}

} // namespace

BOOST_AUTO_TEST_SUITE(mock_backend_load)

BOOST_AUTO_TEST_CASE(thousands_of_streams_on_a_few_threads) {
    constexpr int n = 2000;
    const auto t0 = std::chrono::steady_clock::now();
    auto phase = [&](const char* what) { // shown with --log_level=message
        BOOST_TEST_MESSAGE(what << " at "
                                << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
                                << " ms");
    };
    BOOST_REQUIRE_MESSAGE(ensure_open_files(2 * n + 256), "cannot raise RLIMIT_NOFILE to " << 2 * n + 256);

    mock_backend_options o;
    o.keepalive = 300ms;
    o.keep_alive_timeout = 1s;
    const std::size_t before_start = thread_count();
    mock_backend backend{o};
    backend.start();
    const std::size_t after_start = thread_count();
    // The I/O threads (a sanitizer's runtime may start one thread of its own meanwhile).
    BOOST_TEST(after_start - before_start >= o.threads);
    BOOST_TEST(after_start - before_start <= o.threads + 1);

    phase("started");
    const auto a = bootstrap(backend.url());
    net::io_context ioc;
    auto guard = net::make_work_guard(ioc);
    std::thread client_thread([&] { ioc.run(); });
    const std::size_t baseline = thread_count(); // the backend's threads and the client's

    const std::string request = "GET " + proto::path::task_stream(a.installation_id, {}) +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAuthorization: Bearer " +
                                a.runtime_token + "\r\n\r\n";
    const tcp::endpoint ep(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(backend.port()));
    std::atomic<int> done{0}, failed{0};
    std::vector<std::shared_ptr<stream_client>> clients;
    for (int i = 0; i < n; ++i) clients.push_back(std::make_shared<stream_client>(ioc, request, done, failed));
    for (auto& c : clients) net::post(ioc, [c, ep] { c->start(ep); });

    BOOST_REQUIRE_MESSAGE(backend.wait_for_open_streams(n, 15s), "open streams: " << backend.open_streams());
    phase("streams open");
    const std::size_t with_streams = thread_count();
    BOOST_TEST(with_streams <= baseline, "threads: " << with_streams << " with " << n << " streams, " << baseline
                                                     << " before");

    std::set<std::string> queued;
    for (int i = 0; i < n; ++i) {
        sekuire::testing::mock_task_request t;
        t.capability = "summarize";
        t.input = boost::json::object{{"n", i}};
        queued.insert(backend.enqueue_task(t));
    }
    phase("tasks queued");
    const bool all = wait_until([&] { return done.load() + failed.load() >= n; }, 15s);
    BOOST_TEST(all, "streams with a task and a keep-alive: " << done.load() << ", failed: " << failed.load());
    BOOST_TEST(failed.load() == 0);
    BOOST_TEST(thread_count() <= baseline);

    phase("all done");
    backend.stop();
    guard.reset();
    ioc.stop();
    client_thread.join();
    phase("stopped");
    std::set<std::string> delivered;
    for (const auto& c : clients) {
        const auto ids = c->task_ids();
        BOOST_TEST(ids.size() == 1u); // one task per stream: round-robin
        delivered.insert(ids.begin(), ids.end());
    }
    BOOST_TEST((delivered == queued));
    BOOST_TEST(backend.open_streams() == 0u);
}

BOOST_AUTO_TEST_CASE(a_burst_of_connects_is_not_refused) {
    constexpr int n = 1000;
    BOOST_REQUIRE(ensure_open_files(2 * n + 256));
    mock_backend_options o;
    o.keep_alive_timeout = 1s;
    mock_backend backend{o};
    backend.start();

    // The backlog reached listen(): a listening socket's TCP_INFO tells its maximum
    // (tcpi_sacked; the kernel caps it at net.core.somaxconn).
    const int listener = find_listener(backend.port());
    BOOST_REQUIRE(listener >= 0);
    tcp_info info{};
    socklen_t info_len = sizeof info;
    BOOST_REQUIRE(getsockopt(listener, IPPROTO_TCP, TCP_INFO, &info, &info_len) == 0);
    int somaxconn = 4096;
    std::ifstream("/proc/sys/net/core/somaxconn") >> somaxconn;
    BOOST_TEST(info.tcpi_sacked >= static_cast<unsigned>(std::min(n, somaxconn)));

    // All connects in one burst.
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(backend.port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::vector<int> fds;
    int immediate_errors = 0;
    for (int i = 0; i < n; ++i) {
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        BOOST_REQUIRE(fd >= 0);
        fds.push_back(fd);
        if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS)
            ++immediate_errors;
    }
    BOOST_TEST(immediate_errors == 0);

    // Each connects (no ECONNREFUSED, no timeout) and gets its answer.
    const std::string request = "GET " + std::string(sekuire::testing::mock_admin_path::faults) +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-API-Key: " +
                                std::string(sekuire::testing::mock_default_api_key) + "\r\n\r\n";
    std::vector<std::string> answers(n);
    std::vector<int> state(n, 0); // 0 connecting, 1 reading, 2 done, 3 failed
    int open = n, refused = 0;
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (open > 0 && std::chrono::steady_clock::now() < deadline) {
        std::vector<pollfd> pfds;
        std::vector<int> index;
        for (int i = 0; i < n; ++i) {
            if (state[i] >= 2) continue;
            pfds.push_back({fds[i], static_cast<short>(state[i] == 0 ? POLLOUT : POLLIN), 0});
            index.push_back(i);
        }
        if (poll(pfds.data(), pfds.size(), 100) < 0 && errno != EINTR) break;
        for (std::size_t k = 0; k < pfds.size(); ++k) {
            const int i = index[k];
            if (pfds[k].revents == 0) continue;
            if (state[i] == 0) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0) {
                    if (err == ECONNREFUSED) ++refused;
                    state[i] = 3;
                    --open;
                    continue;
                }
                if (send(fds[i], request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
                    state[i] = 3;
                    --open;
                    continue;
                }
                state[i] = 1;
            } else {
                char buf[4096];
                const ssize_t got = recv(fds[i], buf, sizeof buf, 0);
                if (got > 0) {
                    answers[i].append(buf, static_cast<std::size_t>(got));
                } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                    state[i] = got == 0 ? 2 : 3;
                    --open;
                }
            }
        }
    }
    for (int fd : fds) close(fd);
    BOOST_TEST(refused == 0);
    BOOST_TEST(open == 0);
    int answered = 0;
    for (const auto& a : answers)
        if (a.rfind("HTTP/1.1 200 OK\r\n", 0) == 0 && a.find("{\"faults\":[]}") != std::string::npos) ++answered;
    BOOST_TEST(answered == n);
    backend.stop();
}

BOOST_AUTO_TEST_SUITE_END()
