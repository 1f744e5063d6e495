// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/testing/mock_backend.hpp>

#include <sekuire/protocol.hpp>
#include <sekuire/sse.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/time.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <httplib.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
namespace proto = sekuire::protocol;
namespace ek = proto::error_code_name;
using sekuire::errc;
using sekuire::error_code;
using sekuire::testing::basic_mock_backend;
using sekuire::testing::fake_clock;
using sekuire::testing::mock_backend;
using sekuire::testing::mock_backend_options;
using sekuire::testing::mock_fault;
using sekuire::testing::mock_installation_state;
using sekuire::testing::mock_task_request;
using sekuire::testing::mock_task_status;
namespace admin = sekuire::testing::mock_admin_path;

using fake_backend = basic_mock_backend<fake_clock>;

const std::string json_type(proto::header::json_type);
const std::string default_token(sekuire::testing::mock_default_install_token);
const std::string default_key(sekuire::testing::mock_default_api_key);
const std::string default_workspace(sekuire::testing::mock_default_workspace);

std::string str(std::string_view s) { return std::string(s); }

// Options for tests: a short keep-alive so that stop() never waits long for an idle client.
mock_backend_options test_options(mock_backend_options o = {}) {
    o.keep_alive_timeout = 1s;
    return o;
}

httplib::Headers bearer(const std::string& token) {
    return {{str(proto::header::authorization), str(proto::header::bearer_prefix) + token}};
}

httplib::Headers api_key(const std::string& key = default_key) { return {{str(proto::header::api_key), key}}; }

std::string code_of(const httplib::Result& r) { return r ? proto::error_code_of(r->body) : std::string(); }

template <class T>
T decode_as(const httplib::Result& r) {
    BOOST_REQUIRE(r);
    T out;
    proto::decode_error err;
    BOOST_REQUIRE_MESSAGE(proto::decode(r->body, out, err), "cannot decode: " << err.message() << " in " << r->body);
    return out;
}

json::object json_of(const httplib::Result& r) {
    BOOST_REQUIRE(r);
    json::value v = json::parse(r->body);
    BOOST_REQUIRE(v.is_object());
    return v.get_object();
}

sekuire::platform_info test_platform() {
    sekuire::platform_info p;
    p.type = str(proto::platform::type_bare_metal);
    p.set(str(proto::platform::key_hostname), "host-1");
    p.pid = 42;
    return p;
}

// A plain httplib client with the protocol's requests as helpers.
struct api {
    httplib::Client cli;

    explicit api(const std::string& url) : cli(url) {
        cli.set_tcp_nodelay(true);
        cli.set_connection_timeout(5, 0);
        cli.set_read_timeout(10, 0);
    }

    httplib::Result post(const std::string& path, const std::string& body, const httplib::Headers& h = {}) {
        return cli.Post(path, h, body, json_type);
    }
    httplib::Result get(const std::string& path, const httplib::Headers& h = {}) { return cli.Get(path, h); }

    httplib::Result bootstrap_raw(const std::string& token, const std::string& agent = "agent-1",
                                  std::vector<std::string> caps = {"summarize"}) {
        proto::bootstrap_request req;
        req.install_token = token;
        req.agent_id = agent;
        req.capabilities = std::move(caps);
        req.platform = test_platform();
        return post(str(proto::path::bootstrap), proto::encode(req));
    }

    proto::bootstrap_response bootstrap(const std::string& token = default_token, const std::string& agent = "agent-1",
                                        std::vector<std::string> caps = {"summarize"}) {
        auto r = bootstrap_raw(token, agent, std::move(caps));
        BOOST_REQUIRE(r);
        BOOST_REQUIRE_EQUAL(r->status, 201);
        return decode_as<proto::bootstrap_response>(r);
    }

    httplib::Result recover(const std::string& key, const std::string& workspace, const std::string& agent = "agent-1") {
        proto::recover_request req;
        req.workspace_id = workspace;
        req.agent_id = agent;
        req.capabilities = {"summarize"};
        return post(str(proto::path::recover), proto::encode(req), api_key(key));
    }

    httplib::Result refresh(const std::string& inst, const std::string& refresh_token) {
        proto::refresh_request req;
        req.refresh_token = refresh_token;
        return post(proto::path::refresh(inst), proto::encode(req));
    }

    httplib::Result heartbeat(const std::string& inst, const std::string& token,
                              proto::heartbeat_status status = proto::heartbeat_status::healthy,
                              std::int64_t sequence = 1) {
        proto::heartbeat_request req;
        req.status = status;
        req.sequence = sequence;
        req.uptime_seconds = 10;
        req.platform = test_platform();
        req.metrics.requests_handled = 7;
        req.metrics.errors = 1;
        req.metrics.avg_latency_ms = 12;
        req.capabilities = {"summarize"};
        return post(proto::path::heartbeat(inst), proto::encode(req), bearer(token));
    }

    httplib::Result worker_heartbeat(const std::string& inst, const std::string& token) {
        proto::worker_heartbeat_request req;
        req.state = proto::worker_state::running;
        req.in_flight = 2;
        req.completed = 5;
        req.failed = 1;
        req.capabilities = {"summarize"};
        req.policy_hash = "h0";
        return post(proto::path::worker_heartbeat(inst), proto::encode(req), bearer(token));
    }

    httplib::Result complete(const std::string& task_id, const std::string& token, const std::string& inst,
                             proto::task_status status = proto::task_status::completed,
                             json::value output = json::object{{"summary", "ok"}},
                             std::optional<proto::task_error> error = std::nullopt) {
        proto::completion_request req;
        req.installation_id = inst;
        req.status = status;
        req.output = std::move(output);
        if (error) req.error = proto::completion_error{*error, "it failed"};
        req.execution_time_ms = 12;
        return post(proto::path::complete(task_id), proto::encode(req), bearer(token));
    }

    httplib::Result admin_post(std::string_view path, const std::string& body, const std::string& key = default_key) {
        return post(str(path), body, api_key(key));
    }
    httplib::Result admin_get(std::string_view path, const std::string& key = default_key) {
        return get(str(path), api_key(key));
    }
};

struct received_event {
    std::string type;
    std::string data;
    std::string id;
};

// A task stream read on a thread of its own, with a client of its own.
class stream_reader {
public:
    stream_reader(const std::string& url, std::string path, httplib::Headers headers) : cli_(url) {
        cli_.set_tcp_nodelay(true);
        cli_.set_connection_timeout(5, 0);
        cli_.set_read_timeout(10, 0);
        thread_ = std::thread([this, path = std::move(path), headers = std::move(headers)] {
            auto res = cli_.Get(
                path, headers,
                [this](const httplib::Response& r) {
                    std::lock_guard<std::mutex> lk(m_);
                    status_ = r.status;
                    content_type_ = r.get_header_value(str(proto::header::content_type));
                    cache_control_ = r.get_header_value(str(proto::header::cache_control));
                    date_ = r.get_header_value(str(proto::header::date));
                    cv_.notify_all();
                    return true;
                },
                [this](const char* data, std::size_t n) {
                    std::lock_guard<std::mutex> lk(m_);
                    if (raw_.size() < (1u << 20)) raw_.append(data, n);
                    try {
                        parser_.feed(std::string_view(data, n), [&](const sekuire::sse::event& e) {
                            events_.push_back({e.type, e.data, e.last_event_id});
                        });
                    } catch (...) {
                        return false;
                    }
                    cv_.notify_all();
                    return !stopping_.load();
                });
            std::lock_guard<std::mutex> lk(m_);
            done_ = true;
            error_ = res.error();
            cv_.notify_all();
        });
    }

    stream_reader(const stream_reader&) = delete;
    stream_reader& operator=(const stream_reader&) = delete;
    ~stream_reader() { close(); }

    // Ends the request (Client::stop() only acts while a request runs, so retry).
    void close() {
        stopping_ = true;
        for (int i = 0; i < 1000 && !done(); ++i) {
            cli_.stop();
            std::unique_lock<std::mutex> lk(m_);
            cv_.wait_for(lk, 10ms, [&] { return done_; });
        }
        if (thread_.joinable()) thread_.join();
    }

    bool wait_events(std::size_t n, std::chrono::milliseconds timeout = 5s) {
        std::unique_lock<std::mutex> lk(m_);
        return cv_.wait_for(lk, timeout, [&] { return events_.size() >= n; });
    }
    bool wait_status(std::chrono::milliseconds timeout = 5s) {
        std::unique_lock<std::mutex> lk(m_);
        return cv_.wait_for(lk, timeout, [&] { return status_ != -1 || done_; });
    }
    bool wait_done(std::chrono::milliseconds timeout = 5s) {
        std::unique_lock<std::mutex> lk(m_);
        return cv_.wait_for(lk, timeout, [&] { return done_; });
    }
    bool wait_raw(std::string_view needle, std::chrono::milliseconds timeout = 5s) {
        std::unique_lock<std::mutex> lk(m_);
        return cv_.wait_for(lk, timeout, [&] { return raw_.find(needle) != std::string::npos; });
    }

    bool done() const {
        std::lock_guard<std::mutex> lk(m_);
        return done_;
    }
    std::vector<received_event> events() const {
        std::lock_guard<std::mutex> lk(m_);
        return events_;
    }
    std::string raw() const {
        std::lock_guard<std::mutex> lk(m_);
        return raw_;
    }
    int status() const {
        std::lock_guard<std::mutex> lk(m_);
        return status_;
    }
    std::string content_type() const {
        std::lock_guard<std::mutex> lk(m_);
        return content_type_;
    }
    std::string cache_control() const {
        std::lock_guard<std::mutex> lk(m_);
        return cache_control_;
    }
    std::string date() const {
        std::lock_guard<std::mutex> lk(m_);
        return date_;
    }
    httplib::Error error() const {
        std::lock_guard<std::mutex> lk(m_);
        return error_;
    }

private:
    httplib::Client cli_;
    std::thread thread_;
    mutable std::mutex m_;
    std::condition_variable cv_;
    std::atomic<bool> stopping_{false};
    sekuire::sse::parser parser_;
    std::vector<received_event> events_;
    std::string raw_;
    int status_ = -1;
    std::string content_type_, cache_control_, date_;
    bool done_ = false;
    httplib::Error error_ = httplib::Error::Success;
};

std::unique_ptr<stream_reader> open_stream(const std::string& url, const std::string& inst, const std::string& token,
                                           const std::vector<std::string>& caps = {},
                                           std::optional<std::string> last_event_id = std::nullopt) {
    auto h = bearer(token);
    h.emplace(str(proto::header::accept), str(proto::header::event_stream_type));
    if (last_event_id) h.emplace(str(proto::header::last_event_id), *last_event_id);
    return std::make_unique<stream_reader>(url, proto::path::task_stream(inst, caps), std::move(h));
}

proto::task task_of(const received_event& e) {
    BOOST_REQUIRE_EQUAL(e.type, str(proto::event_type::task));
    proto::task t;
    proto::decode_error err;
    BOOST_REQUIRE_MESSAGE(proto::decode(e.data, t, err), err.message());
    return t;
}

mock_task_request make_task(std::string capability, json::value input = json::object{{"text", "hello"}}) {
    mock_task_request r;
    r.capability = std::move(capability);
    r.input = std::move(input);
    return r;
}

// A backend on a fake clock, started, with a client; the client goes first at the end so
// that stop() never waits for its idle connection.
struct fake_env {
    fake_clock clock;
    fake_backend backend;
    std::unique_ptr<api> http;

    explicit fake_env(mock_backend_options o = {}) : backend(test_options(std::move(o)), clock) {
        backend.start();
        http = std::make_unique<api>(backend.url());
    }
    ~fake_env() {
        http.reset();
        backend.stop();
    }
};

// A plain TCP connection to the backend, for what an HTTP client library would not send.
class raw_connection {
public:
    explicit raw_connection(int port) : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        BOOST_REQUIRE(fd_ >= 0);
        BOOST_REQUIRE(connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    }
    raw_connection(const raw_connection&) = delete;
    raw_connection& operator=(const raw_connection&) = delete;
    ~raw_connection() { close(fd_); }

    void write(const std::string& data) {
        BOOST_REQUIRE(send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
    }

    // Reads until `needle` has arrived `times` times, the peer closes, or `timeout` passes.
    std::string read_until(std::string_view needle, int times = 1, std::chrono::milliseconds timeout = 5s) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            int found = 0;
            for (auto at = got_.find(needle); at != std::string::npos; at = got_.find(needle, at + 1)) ++found;
            if (found >= times || closed_) return got_;
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
            if (left.count() <= 0) return got_;
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
            char buf[4096];
            const ssize_t n = recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) {
                closed_ = true;
            } else {
                got_.append(buf, static_cast<std::size_t>(n));
            }
        }
    }

    // Waits (bounded) for the peer to close the connection.
    bool wait_closed(std::chrono::milliseconds timeout) {
        read_until("\x01never", 1, timeout);
        return closed_;
    }

    void clear() { got_.clear(); }

private:
    int fd_;
    std::string got_;
    bool closed_ = false;
};

} // namespace

BOOST_AUTO_TEST_SUITE(mock_backend)

BOOST_AUTO_TEST_CASE(http_edge_cases_get_answers) {
    fake_env env;
    const std::string key_header = str(proto::header::api_key) + ": " + default_key + "\r\n";

    // HEAD: the GET answer's headers, without its body.
    {
        raw_connection c(env.backend.port());
        c.write("HEAD " + str(admin::faults) + " HTTP/1.1\r\nHost: x\r\n" + key_header + "\r\n");
        const auto got = c.read_until("\r\n\r\n");
        BOOST_TEST(got.rfind("HTTP/1.1 200 OK\r\n", 0) == 0u);
        BOOST_TEST(got.find("Content-Length: 13\r\n") != std::string::npos); // {"faults":[]}
        BOOST_TEST(got.substr(got.find("\r\n\r\n") + 4).empty());
        // The connection stays open for the next request: no stray body arrives before it.
        c.clear();
        c.write("GET " + str(admin::faults) + " HTTP/1.1\r\nHost: x\r\n" + key_header + "\r\n");
        BOOST_TEST(c.read_until("{\"faults\":[]}").rfind("HTTP/1.1 200 OK\r\n", 0) == 0u);
    }
    // Expect: 100-continue is answered before the body is sent.
    {
        raw_connection c(env.backend.port());
        const std::string body = R"({"capability":"summarize"})";
        c.write("POST " + str(admin::tasks) + " HTTP/1.1\r\nHost: x\r\n" + key_header +
                "Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n\r\n");
        BOOST_TEST(c.read_until("\r\n\r\n").rfind("HTTP/1.1 100 Continue\r\n\r\n", 0) == 0u);
        c.write(body);
        const auto got = c.read_until("}", 2);
        BOOST_TEST(got.find("HTTP/1.1 201 Created\r\n") != std::string::npos);
        BOOST_TEST(got.find("\"task_id\":\"task_") != std::string::npos);
    }
    // Two requests in one write (pipelining): two answers, in order.
    {
        raw_connection c(env.backend.port());
        const std::string get = "GET " + str(admin::faults) + " HTTP/1.1\r\nHost: x\r\n" + key_header + "\r\n";
        const std::string missing = "GET /no/such HTTP/1.1\r\nHost: x\r\n\r\n";
        c.write(get + missing);
        const auto got = c.read_until("HTTP/1.1 ", 2);
        const auto first = got.find("HTTP/1.1 200 OK");
        const auto second = got.find("HTTP/1.1 404 Not Found");
        BOOST_TEST(first == 0u);
        BOOST_TEST((second != std::string::npos && second > first));
    }
    // A header over 64 KiB gets 431 with an error body; the connection closes after it.
    {
        raw_connection c(env.backend.port());
        c.write("GET " + str(admin::faults) + " HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(70000, 'b') +
                "\r\n\r\n");
        const auto got = c.read_until("}}");
        BOOST_TEST(got.rfind("HTTP/1.1 431 ", 0) == 0u);
        BOOST_TEST(got.find("\"code\":\"bad_request\"") != std::string::npos);
        BOOST_TEST(c.wait_closed(5s));
    }
    // Not HTTP at all: 400 with an error body, and a Date.
    {
        raw_connection c(env.backend.port());
        c.write("HELLO THERE\r\n\r\n");
        const auto got = c.read_until("}}");
        BOOST_TEST(got.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0u);
        BOOST_TEST(got.find("\"code\":\"bad_request\"") != std::string::npos);
        BOOST_TEST(got.find("Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n") != std::string::npos);
        BOOST_TEST(c.wait_closed(5s));
    }
    // Still serving.
    auto r = env.http->admin_get(admin::faults);
    BOOST_REQUIRE(r);
    BOOST_TEST(r->status == 200);
}

BOOST_AUTO_TEST_CASE(its_sockets_are_close_on_exec) {
    // A process started meanwhile (an agent under test, say) must inherit none of them.
    fake_env env;
    raw_connection c(env.backend.port()); // an accepted connection too
    c.write("GET " + str(admin::faults) + " HTTP/1.1\r\nHost: x\r\n" + str(proto::header::api_key) + ": " +
            default_key + "\r\n\r\n");
    BOOST_REQUIRE(c.read_until("{\"faults\":[]}").rfind("HTTP/1.1 200 OK\r\n", 0) == 0u);
    int listening = 0, accepted = 0;
    DIR* d = opendir("/proc/self/fd");
    BOOST_REQUIRE(d);
    while (const dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        const int fd = std::atoi(e->d_name);
        sockaddr_in addr{};
        socklen_t len = sizeof addr;
        if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || addr.sin_family != AF_INET ||
            ntohs(addr.sin_port) != env.backend.port())
            continue; // not the backend's side of a socket
        int is_listener = 0;
        socklen_t ll = sizeof is_listener;
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &is_listener, &ll);
        ++(is_listener ? listening : accepted);
        BOOST_TEST((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, "fd " << fd << (is_listener ? " (listener)" : " (accepted)"));
    }
    closedir(d);
    BOOST_TEST(listening == 1);
    BOOST_TEST(accepted >= 1);
}

BOOST_AUTO_TEST_CASE(stop_closes_idle_connections_at_once) {
    mock_backend_options o;
    o.keep_alive_timeout = 600s; // so that only stop() can end the idle connection here
    sekuire::testing::mock_backend b{o};
    b.start();
    raw_connection c(b.port());
    c.write("GET " + str(admin::faults) + " HTTP/1.1\r\nHost: x\r\n" + str(proto::header::api_key) + ": " +
            default_key + "\r\n\r\n");
    BOOST_REQUIRE(c.read_until("{\"faults\":[]}").rfind("HTTP/1.1 200 OK\r\n", 0) == 0u);
    BOOST_REQUIRE(!c.wait_closed(100ms)); // kept alive
    b.stop();
    BOOST_TEST(c.wait_closed(5s));
}

BOOST_AUTO_TEST_CASE(start_reports_url_and_stop_is_idempotent) {
    sekuire::testing::mock_backend b{test_options()};
    BOOST_TEST(!b.is_running());
    BOOST_TEST(b.port() == -1);
    b.start();
    BOOST_TEST(b.is_running());
    BOOST_TEST(b.port() > 0);
    BOOST_TEST(b.url() == "http://127.0.0.1:" + std::to_string(b.port()));
    {
        api http(b.url());
        auto r = http.bootstrap_raw(default_token);
        BOOST_REQUIRE(r);
        BOOST_TEST(r->status == 201);
    }
    error_code ec;
    b.start(ec);
    BOOST_TEST((ec == errc::already_started));
    b.stop();
    BOOST_TEST(!b.is_running());
    b.stop();
    BOOST_CHECK_THROW(b.start(), sekuire::error);
}

BOOST_AUTO_TEST_CASE(start_refuses_invalid_options_and_a_taken_port) {
    {
        mock_backend_options o = test_options();
        o.lease = 0s;
        sekuire::testing::mock_backend b{o};
        error_code ec;
        b.start(ec);
        BOOST_TEST((ec == errc::invalid_option));
        BOOST_TEST(!b.is_running());
    }
    {
        mock_backend_options o = test_options();
        o.install_tokens = {""};
        sekuire::testing::mock_backend b{o};
        BOOST_CHECK_THROW(b.start(), sekuire::error);
    }
    sekuire::testing::mock_backend first{test_options()};
    first.start();
    mock_backend_options o = test_options();
    o.port = first.port();
    sekuire::testing::mock_backend second{o};
    error_code ec;
    second.start(ec);
    BOOST_TEST((ec == errc::connection_failed));
    BOOST_TEST(!second.is_running());
}

BOOST_AUTO_TEST_CASE(every_response_carries_the_clock_date) {
    fake_env env;
    const std::string date = sekuire::format_http_date(env.clock.wall_now());
    BOOST_TEST(date == "Thu, 01 Jan 2026 00:00:00 GMT");
    auto created = env.http->bootstrap_raw(default_token);
    BOOST_REQUIRE(created);
    BOOST_TEST(created->status == 201);
    BOOST_TEST(created->get_header_value(str(proto::header::date)) == date);
    BOOST_TEST(created->get_header_value(str(proto::header::content_type)) == json_type);

    env.clock.advance(1h);
    auto missing = env.http->get("/no/such/route");
    BOOST_REQUIRE(missing);
    BOOST_TEST(missing->status == 404);
    BOOST_TEST(code_of(missing) == str(ek::not_found));
    BOOST_TEST(missing->get_header_value(str(proto::header::date)) == "Thu, 01 Jan 2026 01:00:00 GMT");

    auto denied = env.http->admin_get(admin::installations, "wrong");
    BOOST_REQUIRE(denied);
    BOOST_TEST(denied->status == 401);
    BOOST_TEST(denied->get_header_value(str(proto::header::date)) == "Thu, 01 Jan 2026 01:00:00 GMT");
}

BOOST_AUTO_TEST_CASE(bootstrap_issues_credentials_once) {
    mock_backend_options o;
    o.heartbeat_interval = 30s;
    fake_env env(o);
    const auto now = env.clock.wall_now();
    auto b = env.http->bootstrap();
    BOOST_TEST(b.installation_id.rfind("inst_", 0) == 0);
    BOOST_TEST(b.runtime_token.rfind("srt_", 0) == 0);
    BOOST_TEST(b.refresh_token.rfind("rft_", 0) == 0);
    BOOST_TEST(b.runtime_token.size() > 20u);
    BOOST_TEST((b.runtime_token_expires_at == now + mock_backend_options{}.token_lifetime));
    BOOST_TEST((b.lease_expires_at == now + mock_backend_options{}.lease));
    BOOST_REQUIRE(b.heartbeat_interval_seconds);
    BOOST_TEST(*b.heartbeat_interval_seconds == 30);

    auto again = env.http->bootstrap_raw(default_token);
    BOOST_REQUIRE(again);
    BOOST_TEST(again->status == 409);
    BOOST_TEST(code_of(again) == str(ek::install_token_used));

    auto unknown = env.http->bootstrap_raw("skt_unknown");
    BOOST_REQUIRE(unknown);
    BOOST_TEST(unknown->status == 401);
    BOOST_TEST(code_of(unknown) == str(ek::invalid_install_token));

    auto installs = env.backend.installations();
    BOOST_REQUIRE_EQUAL(installs.size(), 1u);
    BOOST_TEST(installs[0].installation_id == b.installation_id);
    BOOST_TEST(installs[0].agent_id == "agent-1");
    BOOST_TEST(installs[0].workspace_id == default_workspace);
    BOOST_TEST((installs[0].platform == test_platform()));
    BOOST_TEST(installs[0].token_version == 1);
}

BOOST_AUTO_TEST_CASE(install_tokens_expire_and_bind_to_an_agent) {
    fake_env env;
    auto created = env.http->admin_post(admin::install_tokens, R"({"ttl_seconds": 60})");
    BOOST_REQUIRE(created);
    BOOST_TEST(created->status == 201);
    const std::string expiring = json::value_to<std::string>(json_of(created).at("install_token"));
    BOOST_TEST(expiring.rfind("skt_", 0) == 0);
    BOOST_TEST(json::value_to<std::string>(json_of(created).at("expires_at")) == "2026-01-01T00:01:00Z");

    env.clock.advance(61s);
    auto expired = env.http->bootstrap_raw(expiring);
    BOOST_REQUIRE(expired);
    BOOST_TEST(expired->status == 410);
    BOOST_TEST(code_of(expired) == str(ek::install_token_expired));

    sekuire::testing::mock_install_token_request bound_req;
    bound_req.agent_id = "agent-a";
    const std::string bound = env.backend.create_install_token(bound_req);
    auto mismatch = env.http->bootstrap_raw(bound, "agent-b");
    BOOST_REQUIRE(mismatch);
    BOOST_TEST(mismatch->status == 403);
    BOOST_TEST(code_of(mismatch) == str(ek::agent_mismatch));
    // A refused attempt does not use the token up.
    auto ok = env.http->bootstrap_raw(bound, "agent-a");
    BOOST_REQUIRE(ok);
    BOOST_TEST(ok->status == 201);
}

BOOST_AUTO_TEST_CASE(recovery_bootstrap_checks_key_and_workspace) {
    fake_env env;
    auto good = env.http->recover(default_key, default_workspace);
    BOOST_REQUIRE(good);
    BOOST_TEST(good->status == 201);
    auto b = decode_as<proto::bootstrap_response>(good);
    BOOST_TEST(b.installation_id.rfind("inst_", 0) == 0);

    auto bad_key = env.http->recover("sk_live_wrong", default_workspace);
    BOOST_REQUIRE(bad_key);
    BOOST_TEST(bad_key->status == 401);
    BOOST_TEST(code_of(bad_key) == str(ek::invalid_api_key));

    proto::recover_request no_key_req;
    no_key_req.workspace_id = default_workspace;
    no_key_req.agent_id = "agent-1";
    auto no_key = env.http->post(str(proto::path::recover), proto::encode(no_key_req));
    BOOST_REQUIRE(no_key);
    BOOST_TEST(no_key->status == 401);

    auto wrong_ws = env.http->recover(default_key, "ws_other");
    BOOST_REQUIRE(wrong_ws);
    BOOST_TEST(wrong_ws->status == 403);
    BOOST_TEST(code_of(wrong_ws) == str(ek::workspace_mismatch));
}

BOOST_AUTO_TEST_CASE(refresh_rotates_the_refresh_token) {
    fake_env env;
    auto b = env.http->bootstrap();
    env.clock.advance(10s);
    auto r1 = env.http->refresh(b.installation_id, b.refresh_token);
    BOOST_REQUIRE(r1);
    BOOST_TEST(r1->status == 200);
    auto m1 = decode_as<proto::refresh_response>(r1);
    BOOST_TEST(m1.token_version == 2);
    BOOST_TEST(m1.runtime_token != b.runtime_token);
    BOOST_TEST((m1.expires_at == env.clock.wall_now() + mock_backend_options{}.token_lifetime));
    BOOST_REQUIRE(m1.refresh_token);
    BOOST_TEST(*m1.refresh_token != b.refresh_token);

    auto old = env.http->refresh(b.installation_id, b.refresh_token);
    BOOST_REQUIRE(old);
    BOOST_TEST(old->status == 401);
    BOOST_TEST(code_of(old) == str(ek::invalid_refresh_token));

    auto r2 = env.http->refresh(b.installation_id, *m1.refresh_token);
    BOOST_REQUIRE(r2);
    BOOST_TEST(r2->status == 200);
    BOOST_TEST(decode_as<proto::refresh_response>(r2).token_version == 3);

    auto unknown = env.http->refresh("inst_nope", *m1.refresh_token);
    BOOST_REQUIRE(unknown);
    BOOST_TEST(unknown->status == 404);
    BOOST_TEST(code_of(unknown) == str(ek::not_found));

    auto malformed = env.http->post(proto::path::refresh(b.installation_id), "{}");
    BOOST_REQUIRE(malformed);
    BOOST_TEST(malformed->status == 400);
    BOOST_TEST(proto::error_message_of(malformed->body).find("'refresh_token'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(refresh_without_rotation_keeps_the_refresh_token) {
    mock_backend_options o;
    o.rotate_refresh_tokens = false;
    fake_env env(o);
    auto b = env.http->bootstrap();
    auto r1 = env.http->refresh(b.installation_id, b.refresh_token);
    BOOST_REQUIRE(r1);
    BOOST_TEST(r1->status == 200);
    BOOST_TEST(!decode_as<proto::refresh_response>(r1).refresh_token);
    auto r2 = env.http->refresh(b.installation_id, b.refresh_token);
    BOOST_REQUIRE(r2);
    BOOST_TEST(r2->status == 200);
}

BOOST_AUTO_TEST_CASE(bearer_calls_reject_missing_wrong_and_expired_tokens) {
    mock_backend_options o;
    o.token_lifetime = 1h;
    o.refresh_window = 0s;
    fake_env env(o);
    auto a = env.http->bootstrap();
    const std::string second_token = env.backend.create_install_token();
    auto b = env.http->bootstrap(second_token, "agent-2");

    auto none = env.http->post(proto::path::heartbeat(a.installation_id), proto::encode(proto::heartbeat_request{}));
    BOOST_REQUIRE(none);
    BOOST_TEST(none->status == 401);
    BOOST_TEST(code_of(none) == str(ek::unauthorized));

    auto wrong = env.http->heartbeat(a.installation_id, "srt_wrong");
    BOOST_REQUIRE(wrong);
    BOOST_TEST(wrong->status == 401);

    auto foreign = env.http->heartbeat(a.installation_id, b.runtime_token);
    BOOST_REQUIRE(foreign);
    BOOST_TEST(foreign->status == 401);
    BOOST_TEST(code_of(foreign) == str(ek::unauthorized));

    auto unknown = env.http->heartbeat("inst_unknown", a.runtime_token);
    BOOST_REQUIRE(unknown);
    BOOST_TEST(unknown->status == 404);
    BOOST_TEST(code_of(unknown) == str(ek::not_found));

    auto foreign_policy = env.http->get(proto::path::active_policy(default_workspace), bearer("srt_nobody"));
    BOOST_REQUIRE(foreign_policy);
    BOOST_TEST(foreign_policy->status == 401);

    // The previous token stays valid until its own expiry; the one before it does not.
    env.clock.advance(30min);
    auto r1 = decode_as<proto::refresh_response>(env.http->refresh(a.installation_id, a.refresh_token));
    auto still = env.http->heartbeat(a.installation_id, a.runtime_token);
    BOOST_REQUIRE(still);
    BOOST_TEST(still->status == 200);
    env.clock.advance(30min);
    auto expired = env.http->heartbeat(a.installation_id, a.runtime_token);
    BOOST_REQUIRE(expired);
    BOOST_TEST(expired->status == 401);
    BOOST_TEST(code_of(expired) == str(ek::unauthorized));
    auto current = env.http->heartbeat(a.installation_id, r1.runtime_token);
    BOOST_REQUIRE(current);
    BOOST_TEST(current->status == 200);

    auto r2 = decode_as<proto::refresh_response>(env.http->refresh(a.installation_id, *r1.refresh_token));
    decode_as<proto::refresh_response>(env.http->refresh(a.installation_id, *r2.refresh_token));
    auto superseded = env.http->heartbeat(a.installation_id, r1.runtime_token);
    BOOST_REQUIRE(superseded);
    BOOST_TEST(superseded->status == 401);

    // Expiry of the current token, on every Bearer route.
    env.clock.advance(2h);
    auto late = env.http->heartbeat(b.installation_id, b.runtime_token);
    BOOST_REQUIRE(late);
    BOOST_TEST(late->status == 401);
    auto late_worker = env.http->worker_heartbeat(b.installation_id, b.runtime_token);
    BOOST_REQUIRE(late_worker);
    BOOST_TEST(late_worker->status == 401);
    auto late_policy = env.http->get(proto::path::active_policy(default_workspace), bearer(b.runtime_token));
    BOOST_REQUIRE(late_policy);
    BOOST_TEST(late_policy->status == 401);
    auto late_stream = env.http->get(proto::path::task_stream(b.installation_id, {}), bearer(b.runtime_token));
    BOOST_REQUIRE(late_stream);
    BOOST_TEST(late_stream->status == 401);
}

BOOST_AUTO_TEST_CASE(heartbeats_refresh_tokens_within_seven_days) {
    mock_backend_options o;
    o.token_lifetime = std::chrono::hours(24 * 8);
    fake_env env(o);
    auto b = env.http->bootstrap();
    auto early = decode_as<proto::heartbeat_response>(env.http->heartbeat(b.installation_id, b.runtime_token));
    BOOST_TEST(!early.refreshed_token);

    env.clock.advance(std::chrono::hours(24) + 1s);
    auto late = decode_as<proto::heartbeat_response>(env.http->heartbeat(b.installation_id, b.runtime_token));
    BOOST_REQUIRE(late.refreshed_token);
    BOOST_TEST(late.refreshed_token->token_version == 2);
    BOOST_TEST(late.refreshed_token->runtime_token != b.runtime_token);
    BOOST_TEST((late.refreshed_token->expires_at == env.clock.wall_now() + std::chrono::hours(24 * 8)));

    auto with_new = decode_as<proto::heartbeat_response>(
        env.http->heartbeat(b.installation_id, late.refreshed_token->runtime_token));
    BOOST_TEST(!with_new.refreshed_token);
    // A client that missed the new token gets it again rather than yet another one.
    auto with_old = decode_as<proto::heartbeat_response>(env.http->heartbeat(b.installation_id, b.runtime_token));
    BOOST_REQUIRE(with_old.refreshed_token);
    BOOST_TEST(with_old.refreshed_token->runtime_token == late.refreshed_token->runtime_token);
    BOOST_TEST(with_old.refreshed_token->token_version == 2);
    BOOST_TEST(env.backend.installations().at(0).token_version == 2);
}

BOOST_AUTO_TEST_CASE(heartbeats_renew_the_lease_and_track_states) {
    mock_backend_options o;
    o.lease = 180s;
    o.heartbeat_interval = 60s;
    fake_env env(o);
    auto b = env.http->bootstrap();
    BOOST_TEST((env.backend.installations().at(0).state == mock_installation_state::healthy));

    env.clock.advance(100s);
    auto hb = env.http->heartbeat(b.installation_id, b.runtime_token, proto::heartbeat_status::healthy, 7);
    BOOST_REQUIRE(hb);
    BOOST_TEST(hb->status == 200);
    auto m = decode_as<proto::heartbeat_response>(hb);
    BOOST_TEST(!m.revoked);
    BOOST_TEST(m.installation_id.value_or("") == b.installation_id);
    BOOST_TEST(m.lease_renewed.value_or(false));
    BOOST_REQUIRE(m.lease_expires_at);
    BOOST_TEST((*m.lease_expires_at == env.clock.wall_now() + 180s));
    BOOST_REQUIRE(m.next_heartbeat_at);
    BOOST_TEST((*m.next_heartbeat_at == env.clock.wall_now() + 60s));
    BOOST_TEST(!m.command);
    BOOST_TEST(m.active_policy_hash.value_or("") == env.backend.policy().hash);

    auto info = env.backend.installation(b.installation_id);
    BOOST_REQUIRE(info);
    BOOST_TEST((info->state == mock_installation_state::healthy));
    BOOST_TEST(info->sequence == 7);
    BOOST_TEST(info->uptime_seconds == 10);
    BOOST_TEST(info->metrics.requests_handled == 7);
    BOOST_TEST(info->metrics.avg_latency_ms == 12);
    BOOST_REQUIRE(info->last_heartbeat_at);
    BOOST_TEST((*info->last_heartbeat_at == env.clock.wall_now()));
    BOOST_TEST((info->last_status == proto::heartbeat_status::healthy));

    env.clock.advance(181s);
    BOOST_TEST((env.backend.installation(b.installation_id)->state == mock_installation_state::unhealthy));
    auto listed = json_of(env.http->admin_get(admin::installations));
    BOOST_TEST(json::value_to<std::string>(listed.at("installations").as_array().at(0).at("state")) == "unhealthy");

    BOOST_REQUIRE(env.http->heartbeat(b.installation_id, b.runtime_token));
    BOOST_TEST((env.backend.installation(b.installation_id)->state == mock_installation_state::healthy));

    auto stopped = env.http->heartbeat(b.installation_id, b.runtime_token, proto::heartbeat_status::stopped);
    BOOST_REQUIRE(stopped);
    BOOST_TEST(stopped->status == 200);
    BOOST_TEST((env.backend.installation(b.installation_id)->state == mock_installation_state::stopped));

    auto back = env.http->heartbeat(b.installation_id, b.runtime_token, proto::heartbeat_status::degraded);
    BOOST_REQUIRE(back);
    auto again = env.backend.installation(b.installation_id);
    BOOST_TEST((again->state == mock_installation_state::healthy));
    BOOST_TEST((again->last_status == proto::heartbeat_status::degraded));
}

BOOST_AUTO_TEST_CASE(revocation_answers_with_the_revoked_shape_and_403) {
    fake_env env;
    auto b = env.http->bootstrap();
    proto::revoke_request rr;
    rr.reason = "Emergency shutdown initiated by admin";
    rr.shutdown_timeout_ms = 2500;

    auto no_key = env.http->post(proto::path::revoke(b.installation_id), proto::encode(rr));
    BOOST_REQUIRE(no_key);
    BOOST_TEST(no_key->status == 401);
    BOOST_TEST(code_of(no_key) == str(ek::invalid_api_key));
    auto unknown = env.http->post(proto::path::revoke("inst_unknown"), proto::encode(rr), api_key());
    BOOST_REQUIRE(unknown);
    BOOST_TEST(unknown->status == 404);

    auto revoked = env.http->post(proto::path::revoke(b.installation_id), proto::encode(rr), api_key());
    BOOST_REQUIRE(revoked);
    BOOST_TEST(revoked->status == 200);

    auto hb = env.http->heartbeat(b.installation_id, b.runtime_token);
    BOOST_REQUIRE(hb);
    BOOST_TEST(hb->status == 200);
    auto m = decode_as<proto::heartbeat_response>(hb);
    BOOST_REQUIRE(m.revoked);
    BOOST_TEST(m.revoked->reason == rr.reason);
    BOOST_TEST(m.revoked->shutdown_timeout_ms.value_or(0) == 2500);
    BOOST_TEST(!m.lease_renewed.value_or(true));

    auto whb = env.http->worker_heartbeat(b.installation_id, b.runtime_token);
    BOOST_REQUIRE(whb);
    BOOST_TEST(whb->status == 200);
    BOOST_TEST(decode_as<proto::worker_heartbeat_response>(whb).revoked.has_value());

    auto policy = env.http->get(proto::path::active_policy(default_workspace), bearer(b.runtime_token));
    BOOST_REQUIRE(policy);
    BOOST_TEST(policy->status == 403);
    BOOST_TEST(code_of(policy) == str(ek::installation_revoked));
    auto stream = env.http->get(proto::path::task_stream(b.installation_id, {}), bearer(b.runtime_token));
    BOOST_REQUIRE(stream);
    BOOST_TEST(stream->status == 403);
    BOOST_TEST(code_of(stream) == str(ek::installation_revoked));
    auto refresh = env.http->refresh(b.installation_id, b.refresh_token);
    BOOST_REQUIRE(refresh);
    BOOST_TEST(refresh->status == 403);
    BOOST_TEST(code_of(refresh) == str(ek::installation_revoked));
    // Results computed before the kill switch are still taken during the shutdown timeout
    // (protocol.md section 5), and refused after it.
    const auto task_id = env.backend.enqueue_task(make_task("summarize"));
    auto in_time = env.http->complete(task_id, b.runtime_token, b.installation_id);
    BOOST_REQUIRE(in_time);
    BOOST_TEST(in_time->status == 200);
    env.clock.advance(std::chrono::milliseconds(2501));
    const auto late_id = env.backend.enqueue_task(make_task("summarize"));
    auto completion = env.http->complete(late_id, b.runtime_token, b.installation_id);
    BOOST_REQUIRE(completion);
    BOOST_TEST(completion->status == 403);
    BOOST_TEST(code_of(completion) == str(ek::installation_revoked));

    BOOST_TEST((env.backend.installation(b.installation_id)->state == mock_installation_state::revoked));
    auto cmd = env.http->admin_post(admin::commands(b.installation_id), R"({"type":"pause"})");
    BOOST_REQUIRE(cmd);
    BOOST_TEST(cmd->status == 409);
    // Revocation is final and idempotent.
    auto twice = env.http->post(proto::path::revoke(b.installation_id), "{}", api_key());
    BOOST_REQUIRE(twice);
    BOOST_TEST(twice->status == 200);
    auto hb2 = decode_as<proto::heartbeat_response>(
        env.http->heartbeat(b.installation_id, b.runtime_token, proto::heartbeat_status::healthy));
    BOOST_REQUIRE(hb2.revoked);
    BOOST_TEST(hb2.revoked->reason == rr.reason);
}

BOOST_AUTO_TEST_CASE(commands_are_delivered_once_by_the_first_channel) {
    fake_env env;
    auto b = env.http->bootstrap();
    const auto c1 = env.backend.send_command(b.installation_id, "pause", "maintenance");
    auto c2r = env.http->admin_post(admin::commands(b.installation_id), R"({"type":"resume","reason":"done"})");
    BOOST_REQUIRE(c2r);
    BOOST_TEST(c2r->status == 201);
    const std::string c2 = json::value_to<std::string>(json_of(c2r).at("command_id"));
    const auto c3 = env.backend.send_command(b.installation_id, "terminate", "bye", 4000);
    BOOST_TEST(c1.rfind("cmd_", 0) == 0);
    BOOST_TEST(env.backend.installation(b.installation_id)->pending_commands == 3u);

    auto hb = decode_as<proto::heartbeat_response>(env.http->heartbeat(b.installation_id, b.runtime_token));
    BOOST_REQUIRE(hb.command);
    BOOST_TEST(hb.command->id == c1);
    BOOST_TEST((hb.command->type == proto::command_type::pause));
    BOOST_TEST(hb.command->reason == "maintenance");

    auto whb = decode_as<proto::worker_heartbeat_response>(env.http->worker_heartbeat(b.installation_id, b.runtime_token));
    BOOST_REQUIRE(whb.command);
    BOOST_TEST(whb.command->id == c2);
    BOOST_TEST((whb.command->type == proto::command_type::resume));

    auto s = open_stream(env.backend.url(), b.installation_id, b.runtime_token);
    BOOST_REQUIRE(s->wait_events(1));
    auto ev = s->events().at(0);
    BOOST_TEST(ev.type == str(proto::event_type::command));
    BOOST_TEST(ev.id == "1");
    proto::command cmd;
    proto::decode_error err;
    BOOST_REQUIRE(proto::decode(ev.data, cmd, err));
    BOOST_TEST(cmd.id == c3);
    BOOST_TEST((cmd.type == proto::command_type::terminate));
    BOOST_TEST(cmd.shutdown_timeout_ms.value_or(0) == 4000);

    // A command sent while a stream is open goes out once, on the stream.
    const auto c4 = env.backend.send_command(b.installation_id, "pause");
    BOOST_REQUIRE(s->wait_events(2));
    BOOST_TEST(s->events().at(1).id == "2");
    BOOST_TEST(s->events().at(1).data.find(c4) != std::string::npos);
    BOOST_TEST(!decode_as<proto::heartbeat_response>(env.http->heartbeat(b.installation_id, b.runtime_token)).command);
    BOOST_TEST(!decode_as<proto::worker_heartbeat_response>(env.http->worker_heartbeat(b.installation_id, b.runtime_token))
                    .command);
    BOOST_TEST(env.backend.installation(b.installation_id)->pending_commands == 0u);

    auto w = env.backend.installation(b.installation_id)->worker;
    BOOST_REQUIRE(w);
    BOOST_TEST(w->in_flight == 2);
    BOOST_TEST(w->completed == 5);
    BOOST_TEST(w->policy_hash.value_or("") == "h0");

    error_code ec;
    env.backend.send_command("inst_unknown", "pause", "", std::nullopt, ec);
    BOOST_TEST((ec == errc::installation_not_found));
    auto unknown = env.http->admin_post(admin::commands("inst_unknown"), R"({"type":"pause"})");
    BOOST_REQUIRE(unknown);
    BOOST_TEST(unknown->status == 404);
    auto malformed = env.http->admin_post(admin::commands(b.installation_id), R"({"reason":"no type"})");
    BOOST_REQUIRE(malformed);
    BOOST_TEST(malformed->status == 400);
    BOOST_TEST(proto::error_message_of(malformed->body).find("'type'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(stream_delivers_tasks_by_capability) {
    fake_env env;
    auto a = env.http->bootstrap(default_token, "agent-a", {"summarize"});
    auto b = env.http->bootstrap(env.backend.create_install_token(), "agent-b", {"summarize"});
    auto sa = open_stream(env.backend.url(), a.installation_id, a.runtime_token);
    auto sb = open_stream(env.backend.url(), b.installation_id, b.runtime_token, {"translate"});
    BOOST_REQUIRE(env.backend.wait_for_open_streams(2, 5s));
    BOOST_REQUIRE(sa->wait_status());
    BOOST_TEST(sa->status() == 200);
    BOOST_TEST(sa->content_type() == str(proto::header::event_stream_type));
    BOOST_TEST(sa->cache_control() == "no-cache");
    BOOST_TEST(sa->date() == sekuire::format_http_date(env.clock.wall_now()));

    mock_task_request req = make_task("summarize");
    req.trace_id = "trace-1";
    const auto t1 = env.backend.enqueue_task(req);
    auto t2r = env.http->admin_post(admin::tasks, R"({"capability":"translate","input":{"text":"hallo"}})");
    BOOST_REQUIRE(t2r);
    BOOST_TEST(t2r->status == 201);
    const std::string t2 = json::value_to<std::string>(json_of(t2r).at("task_id"));
    const auto t3 = env.backend.enqueue_task(make_task("nobody-offers-this"));

    BOOST_REQUIRE(sa->wait_events(1));
    BOOST_REQUIRE(sb->wait_events(1));
    auto ta = task_of(sa->events().at(0));
    BOOST_TEST(sa->events().at(0).id == "1");
    BOOST_TEST(ta.task_id == t1);
    BOOST_TEST(ta.capability == "summarize");
    BOOST_TEST(json::serialize(ta.input) == R"({"text":"hello"})");
    BOOST_TEST(ta.workspace_id.value_or("") == default_workspace);
    BOOST_TEST(ta.trace_id.value_or("") == "trace-1");
    auto tb = task_of(sb->events().at(0));
    BOOST_TEST(tb.task_id == t2);
    BOOST_TEST(sb->events().at(0).id == "1");

    BOOST_REQUIRE(env.backend.wait_for_task(t1, mock_task_status::delivered, 5s));
    auto info = env.backend.task(t1);
    BOOST_TEST(info->delivery_count == 1);
    BOOST_TEST(info->installation_id == a.installation_id);
    auto queued = json_of(env.http->admin_get(admin::task(t3)));
    BOOST_TEST(json::value_to<std::string>(queued.at("status")) == "queued");
    BOOST_TEST(queued.at("delivery_count").to_number<int>() == 0);
    BOOST_TEST(sa->events().size() == 1u);
    BOOST_TEST(sb->events().size() == 1u);
}

BOOST_AUTO_TEST_CASE(stream_tasks_go_round_robin) {
    fake_env env;
    auto a = env.http->bootstrap();
    auto s1 = open_stream(env.backend.url(), a.installation_id, a.runtime_token);
    auto s2 = open_stream(env.backend.url(), a.installation_id, a.runtime_token);
    BOOST_REQUIRE(env.backend.wait_for_open_streams(2, 5s));
    for (int i = 0; i < 4; ++i) env.backend.enqueue_task(make_task("summarize"));
    BOOST_REQUIRE(s1->wait_events(2));
    BOOST_REQUIRE(s2->wait_events(2));
    std::set<std::string> ids, event_ids;
    for (const auto* s : {s1.get(), s2.get()})
        for (const auto& e : s->events()) {
            ids.insert(task_of(e).task_id);
            event_ids.insert(e.id);
        }
    BOOST_TEST(ids.size() == 4u);
    // Event ids are per installation: unique across its streams.
    BOOST_TEST(event_ids.size() == 4u);
    BOOST_TEST(s1->events().size() == 2u);
    BOOST_TEST(s2->events().size() == 2u);
}

BOOST_AUTO_TEST_CASE(stream_sends_keepalive_comments_on_the_clock) {
    mock_backend_options o;
    o.keepalive = 1000ms;
    fake_env env(o);
    auto a = env.http->bootstrap();
    auto s = open_stream(env.backend.url(), a.installation_id, a.runtime_token);
    BOOST_REQUIRE(env.backend.wait_for_open_streams(1, 5s));
    BOOST_REQUIRE(s->wait_status());
    BOOST_TEST(s->raw().find(": keep-alive") == std::string::npos);
    env.clock.advance(1000ms);
    BOOST_REQUIRE(s->wait_raw(": keep-alive\n\n"));
    BOOST_TEST(s->events().empty());
}

BOOST_AUTO_TEST_CASE(stream_replays_after_last_event_id) {
    fake_env env;
    auto a = env.http->bootstrap();
    mock_fault cut;
    cut.path_prefix = proto::path::task_stream(a.installation_id, {});
    cut.cut_stream_after_events = 3;
    env.backend.add_fault(cut);
    const auto t1 = env.backend.enqueue_task(make_task("summarize"));
    const auto t2 = env.backend.enqueue_task(make_task("summarize"));
    const auto c1 = env.backend.send_command(a.installation_id, "pause");
    {
        auto first = open_stream(env.backend.url(), a.installation_id, a.runtime_token);
        BOOST_REQUIRE(first->wait_events(3));
        BOOST_REQUIRE(first->wait_done());
        BOOST_TEST(first->events().size() == 3u);
        BOOST_TEST((first->error() != httplib::Error::Success));
        // Commands go before tasks.
        BOOST_TEST(first->events().at(0).type == str(proto::event_type::command));
        BOOST_TEST(first->events().at(0).id == "1");
        BOOST_TEST(task_of(first->events().at(1)).task_id == t1);
        BOOST_TEST(task_of(first->events().at(2)).task_id == t2);
    }
    BOOST_REQUIRE(env.http->complete(t2, a.runtime_token, a.installation_id));
    BOOST_REQUIRE(env.backend.wait_for_task(t2, mock_task_status::completed, 5s));
    // The client saw event 1 only: the task of event 2 is replayed with its id; event 3 is
    // completed, so not replayed.
    auto second = open_stream(env.backend.url(), a.installation_id, a.runtime_token, {}, std::string("1"));
    BOOST_REQUIRE(second->wait_events(1));
    BOOST_TEST(task_of(second->events().at(0)).task_id == t1);
    BOOST_TEST(second->events().at(0).id == "2");
    const auto t3 = env.backend.enqueue_task(make_task("summarize"));
    BOOST_REQUIRE(second->wait_events(2));
    BOOST_TEST(task_of(second->events().at(1)).task_id == t3);
    BOOST_TEST(second->events().at(1).id == "4");
    BOOST_TEST(env.backend.task(t1)->delivery_count == 2);
    second.reset();

    // With Last-Event-ID 0 the command is replayed too.
    auto third = open_stream(env.backend.url(), a.installation_id, a.runtime_token, {}, std::string("0"));
    BOOST_REQUIRE(third->wait_events(3));
    BOOST_TEST(third->events().at(0).id == "1");
    BOOST_TEST(third->events().at(0).data.find(c1) != std::string::npos);
    BOOST_TEST(third->events().at(1).id == "2");
    BOOST_TEST(third->events().at(2).id == "4");
}

BOOST_AUTO_TEST_CASE(stream_redelivers_after_the_timeout) {
    mock_backend_options o;
    o.redelivery_timeout = 60s;
    fake_env env(o);
    auto a = env.http->bootstrap();
    auto s = open_stream(env.backend.url(), a.installation_id, a.runtime_token);
    BOOST_REQUIRE(env.backend.wait_for_open_streams(1, 5s));
    const auto t = env.backend.enqueue_task(make_task("summarize"));
    BOOST_REQUIRE(s->wait_events(1));
    env.clock.advance(59s);
    BOOST_TEST((env.backend.task(t)->status == mock_task_status::delivered));
    env.clock.advance(1s);
    BOOST_REQUIRE(s->wait_events(2));
    BOOST_TEST(task_of(s->events().at(1)).task_id == t);
    BOOST_TEST(s->events().at(1).id == "2");
    BOOST_TEST(env.backend.task(t)->delivery_count == 2);
    // A completed task is not redelivered.
    BOOST_REQUIRE(env.http->complete(t, a.runtime_token, a.installation_id));
    env.clock.advance(120s);
    BOOST_REQUIRE(env.backend.wait_for_task(t, mock_task_status::completed, 5s));
    BOOST_TEST(env.backend.task(t)->delivery_count == 2);
}

BOOST_AUTO_TEST_CASE(stream_ends_with_a_revoked_event) {
    fake_env env;
    auto a = env.http->bootstrap();
    auto s = open_stream(env.backend.url(), a.installation_id, a.runtime_token);
    BOOST_REQUIRE(env.backend.wait_for_open_streams(1, 5s));
    env.backend.revoke(a.installation_id, "kill switch", 3000);
    BOOST_REQUIRE(s->wait_events(1));
    BOOST_REQUIRE(s->wait_done());
    const auto ev = s->events().at(0);
    BOOST_TEST(ev.type == str(proto::event_type::revoked));
    BOOST_TEST(!ev.id.empty());
    proto::heartbeat_response shape;
    proto::decode_error err;
    BOOST_REQUIRE(proto::decode(ev.data, shape, err));
    BOOST_REQUIRE(shape.revoked);
    BOOST_TEST(shape.revoked->reason == "kill switch");
    BOOST_TEST(shape.revoked->shutdown_timeout_ms.value_or(0) == 3000);
    BOOST_TEST((s->error() == httplib::Error::Success));
    BOOST_TEST(s->status() == 200);
    for (int i = 0; i < 200 && env.backend.open_streams() != 0; ++i) std::this_thread::sleep_for(10ms);
    BOOST_TEST(env.backend.open_streams() == 0u);
}

BOOST_AUTO_TEST_CASE(policy_fetch_hash_and_event) {
    fake_env env;
    auto a = env.http->bootstrap();
    auto doc = decode_as<proto::policy_document>(
        env.http->get(proto::path::active_policy(default_workspace), bearer(a.runtime_token)));
    BOOST_TEST(doc.workspace_id == default_workspace);
    BOOST_TEST(doc.status == "active");
    BOOST_TEST(doc.hash == env.backend.policy().hash);
    BOOST_TEST(doc.content.empty());
    BOOST_TEST(doc.allowed_tools.empty());
    BOOST_TEST(doc.hash.size() == 64u);

    auto other = env.http->get(proto::path::active_policy("ws_other"), bearer(a.runtime_token));
    BOOST_REQUIRE(other);
    BOOST_TEST(other->status == 404);

    auto s = open_stream(env.backend.url(), a.installation_id, a.runtime_token);
    BOOST_REQUIRE(env.backend.wait_for_open_streams(1, 5s));
    auto put = env.http->cli.Put(
        str(admin::policy), api_key(),
        R"({"content":{"agent":{"capabilities":{"allowed_tools":["summarize"],"denied_tools":["shell:*"]}},)"
        R"("rate_limits":{"requests":{"max_per_minute":60}}}})",
        json_type);
    BOOST_REQUIRE(put);
    BOOST_TEST(put->status == 200);
    auto put_doc = decode_as<proto::policy_document>(put);
    BOOST_TEST(put_doc.hash != doc.hash);
    BOOST_TEST(put_doc.version == "2");

    BOOST_REQUIRE(s->wait_events(1));
    BOOST_TEST(s->events().at(0).type == str(proto::event_type::policy));
    proto::policy_event pe;
    proto::decode_error err;
    BOOST_REQUIRE(proto::decode(s->events().at(0).data, pe, err));
    BOOST_TEST(pe.active_policy_hash == put_doc.hash);

    auto fetched = decode_as<proto::policy_document>(
        env.http->get(proto::path::active_policy(default_workspace), bearer(a.runtime_token)));
    BOOST_TEST(fetched.hash == put_doc.hash);
    BOOST_TEST(fetched.allowed_tools == std::vector<std::string>{"summarize"});
    BOOST_TEST(fetched.denied_tools == std::vector<std::string>{"shell:*"});
    BOOST_TEST(fetched.rate_limits.max_per_minute.value_or(0) == 60);
    auto whb = decode_as<proto::worker_heartbeat_response>(env.http->worker_heartbeat(a.installation_id, a.runtime_token));
    BOOST_TEST(whb.active_policy_hash.value_or("") == put_doc.hash);
    auto hb = decode_as<proto::heartbeat_response>(env.http->heartbeat(a.installation_id, a.runtime_token));
    BOOST_TEST(hb.active_policy_hash.value_or("") == put_doc.hash);

    // The same content again changes nothing; a direct call with new content sends an event.
    BOOST_TEST(env.backend.set_policy(fetched.content) == put_doc.hash);
    const auto h3 = env.backend.set_policy(json::object{{"rate_limits", json::object{}}});
    BOOST_REQUIRE(s->wait_events(2));
    BOOST_TEST(s->events().at(1).data.find(h3) != std::string::npos);
    BOOST_TEST(s->events().at(1).id == "2");

    auto bad = env.http->cli.Put(str(admin::policy), api_key(), R"({"agent":{}})", json_type);
    BOOST_REQUIRE(bad);
    BOOST_TEST(bad->status == 400);
    BOOST_TEST(proto::error_message_of(bad->body).find("'content'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(completions_are_idempotent) {
    fake_env env;
    auto a = env.http->bootstrap();
    auto b = env.http->bootstrap(env.backend.create_install_token(), "agent-b");
    auto s = open_stream(env.backend.url(), a.installation_id, a.runtime_token);
    const auto t1 = env.backend.enqueue_task(make_task("summarize"));
    const auto t2 = env.backend.enqueue_task(make_task("summarize"));
    const auto t3 = env.backend.enqueue_task(make_task("summarize"));
    BOOST_REQUIRE(s->wait_events(3));

    auto unknown = env.http->complete("task_unknown", a.runtime_token, a.installation_id);
    BOOST_REQUIRE(unknown);
    BOOST_TEST(unknown->status == 404);
    BOOST_TEST(code_of(unknown) == str(ek::unknown_task));

    auto foreign = env.http->complete(t1, b.runtime_token, a.installation_id);
    BOOST_REQUIRE(foreign);
    BOOST_TEST(foreign->status == 403);
    BOOST_TEST(code_of(foreign) == str(sekuire::testing::detail::mock_installation_mismatch));

    auto first = env.http->complete(t1, a.runtime_token, a.installation_id);
    BOOST_REQUIRE(first);
    BOOST_TEST(first->status == 200);
    BOOST_TEST(decode_as<proto::completion_response>(first).accepted);
    auto same = env.http->complete(t1, a.runtime_token, a.installation_id);
    BOOST_REQUIRE(same);
    BOOST_TEST(same->status == 200);
    auto different = env.http->complete(t1, a.runtime_token, a.installation_id, proto::task_status::completed,
                                        json::object{{"summary", "other"}});
    BOOST_REQUIRE(different);
    BOOST_TEST(different->status == 409);
    BOOST_TEST(code_of(different) == str(ek::already_completed));

    auto info = env.backend.task(t1);
    BOOST_TEST((info->status == mock_task_status::completed));
    BOOST_TEST(json::serialize(info->output) == R"({"summary":"ok"})");
    BOOST_TEST(info->execution_time_ms == 12);
    BOOST_REQUIRE(info->completed_at);

    auto failed = env.http->complete(t2, a.runtime_token, a.installation_id, proto::task_status::failed, nullptr,
                                     proto::task_error::handler_error);
    BOOST_REQUIRE(failed);
    BOOST_TEST(failed->status == 200);
    BOOST_REQUIRE(env.backend.wait_for_task(t2, mock_task_status::failed, 5s));
    BOOST_REQUIRE(env.backend.task(t2)->error);
    BOOST_TEST(env.backend.task(t2)->error->code == "handler_error");
    auto as_json = json_of(env.http->admin_get(admin::task(t2)));
    BOOST_TEST(json::value_to<std::string>(as_json.at("status")) == "failed");
    BOOST_TEST(json::value_to<std::string>(as_json.at("error").at("code")) == "handler_error");

    auto rejected = env.http->complete(t3, a.runtime_token, a.installation_id, proto::task_status::rejected, nullptr,
                                       proto::task_error::capability_denied);
    BOOST_REQUIRE(rejected);
    BOOST_TEST(rejected->status == 200);
    BOOST_TEST((env.backend.task(t3)->status == mock_task_status::rejected));

    proto::completion_request no_error;
    no_error.installation_id = a.installation_id;
    no_error.status = proto::task_status::failed; // a failure without its error object
    auto missing_error = env.http->post(proto::path::complete(t3), proto::encode(no_error), bearer(a.runtime_token));
    BOOST_REQUIRE(missing_error);
    BOOST_TEST(missing_error->status == 400);
    BOOST_TEST(proto::error_message_of(missing_error->body).find("'error'") != std::string::npos);
    BOOST_TEST(!env.backend.wait_for_task("task_unknown", mock_task_status::completed, 10ms));
}

BOOST_AUTO_TEST_CASE(admin_routes_require_the_api_key) {
    fake_env env;
    auto a = env.http->bootstrap();
    const std::string inst = a.installation_id;
    struct call {
        std::string method, path, body;
    };
    const std::vector<call> calls = {
        {"POST", str(admin::install_tokens), "{}"},
        {"POST", str(admin::tasks), R"({"capability":"summarize"})"},
        {"GET", str(admin::tasks), ""},
        {"GET", admin::task("task_x"), ""},
        {"GET", str(admin::installations), ""},
        {"GET", admin::installation(inst), ""},
        {"POST", admin::commands(inst), R"({"type":"pause"})"},
        {"PUT", str(admin::policy), R"({"content":{}})"},
        {"GET", str(admin::policy), ""},
        {"POST", str(admin::faults), R"({"path_prefix":"/x","status":503})"},
        {"GET", str(admin::faults), ""},
        {"DELETE", str(admin::faults), ""},
    };
    for (const auto& c : calls) {
        for (const auto& headers : {httplib::Headers{}, api_key("sk_live_wrong")}) {
            httplib::Result r = c.method == "GET"    ? env.http->cli.Get(c.path, headers)
                                : c.method == "POST" ? env.http->cli.Post(c.path, headers, c.body, json_type)
                                : c.method == "PUT"  ? env.http->cli.Put(c.path, headers, c.body, json_type)
                                                     : env.http->cli.Delete(c.path, headers);
            BOOST_REQUIRE(r);
            BOOST_TEST(r->status == 401, c.method << " " << c.path);
            BOOST_TEST(code_of(r) == str(ek::invalid_api_key));
        }
    }
    BOOST_TEST(env.backend.tasks().empty());
    BOOST_TEST(env.backend.installation(inst)->pending_commands == 0u);
}

BOOST_AUTO_TEST_CASE(admin_lists_commands_and_heartbeat_timelines) {
    fake_env env;
    auto a = env.http->bootstrap();
    // Before any heartbeat: none counted, an empty timeline.
    auto fresh = json_of(env.http->admin_get(admin::installation(a.installation_id)));
    BOOST_TEST(fresh.at("heartbeats").to_number<int>() == 0);
    BOOST_TEST(fresh.at("recent_heartbeats").as_array().empty());

    auto sent = env.http->admin_post(admin::commands(a.installation_id),
                                     R"({"type":"terminate","reason":"done","shutdown_timeout_ms":2500})");
    BOOST_REQUIRE(sent);
    BOOST_REQUIRE_EQUAL(sent->status, 201);
    const std::string command_id = json::value_to<std::string>(json_of(sent).at("command_id"));
    auto pending = json_of(env.http->admin_get(admin::commands_log)).at("commands").as_array();
    BOOST_REQUIRE_EQUAL(pending.size(), 1u);
    const auto& p = pending.at(0).as_object();
    BOOST_TEST(json::value_to<std::string>(p.at("command_id")) == command_id);
    BOOST_TEST(json::value_to<std::string>(p.at("installation_id")) == a.installation_id);
    BOOST_TEST(json::value_to<std::string>(p.at("type")) == "terminate");
    BOOST_TEST(json::value_to<std::string>(p.at("reason")) == "done");
    BOOST_TEST(p.at("shutdown_timeout_ms").to_number<int>() == 2500);
    BOOST_TEST(json::value_to<std::string>(p.at("created_at")) == "2026-01-01T00:00:00Z");
    BOOST_TEST(p.at("delivered_at").is_null());
    BOOST_TEST(p.at("delivered_via").is_null());

    // The heartbeat delivers it, and is counted and marked on the timeline.
    env.clock.advance(10s);
    BOOST_REQUIRE(env.http->heartbeat(a.installation_id, a.runtime_token));
    env.clock.advance(10s);
    BOOST_REQUIRE(env.http->heartbeat(a.installation_id, a.runtime_token, proto::heartbeat_status::paused, 2));
    auto delivered = json_of(env.http->admin_get(admin::commands_log)).at("commands").as_array().at(0).as_object();
    BOOST_TEST(json::value_to<std::string>(delivered.at("delivered_at")) == "2026-01-01T00:00:10Z");
    BOOST_TEST(json::value_to<std::string>(delivered.at("delivered_via")) == "heartbeat");
    auto inst = json_of(env.http->admin_get(admin::installation(a.installation_id)));
    BOOST_TEST(inst.at("heartbeats").to_number<int>() == 2);
    const auto& marks = inst.at("recent_heartbeats").as_array();
    BOOST_REQUIRE_EQUAL(marks.size(), 2u);
    BOOST_TEST(json::value_to<std::string>(marks.at(0).at("at")) == "2026-01-01T00:00:10Z");
    BOOST_TEST(json::value_to<std::string>(marks.at(0).at("status")) == "healthy");
    BOOST_TEST(json::value_to<std::string>(marks.at(1).at("status")) == "paused");

    // A command taken by a task stream says so; the C++ list agrees with the route.
    auto stream = open_stream(env.backend.url(), a.installation_id, a.runtime_token);
    BOOST_REQUIRE(env.backend.wait_for_open_streams(1, 5s));
    env.backend.send_command(a.installation_id, "pause", "by stream");
    BOOST_REQUIRE(stream->wait_events(1));
    const auto commands = env.backend.commands();
    BOOST_REQUIRE_EQUAL(commands.size(), 2u);
    BOOST_TEST(commands.at(1).type == "pause");
    BOOST_TEST(commands.at(1).delivered_via == "task_stream");
    BOOST_TEST(commands.at(1).delivered_at.has_value());
    // A revoked heartbeat answer is not a heartbeat received.
    env.backend.revoke(a.installation_id);
    BOOST_REQUIRE(env.http->heartbeat(a.installation_id, a.runtime_token));
    BOOST_TEST(env.backend.installation(a.installation_id)->heartbeats == 2);

    auto denied = env.http->admin_get(admin::commands_log, "wrong");
    BOOST_REQUIRE(denied);
    BOOST_TEST(denied->status == 401);
}

BOOST_AUTO_TEST_CASE(timelines_and_the_command_log_are_bounded) {
    fake_env env;
    auto a = env.http->bootstrap();
    for (std::size_t i = 0; i < sekuire::testing::mock_max_heartbeat_marks + 5; ++i) {
        env.clock.advance(1s);
        BOOST_REQUIRE(env.http->heartbeat(a.installation_id, a.runtime_token));
    }
    const auto info = env.backend.installation(a.installation_id);
    BOOST_TEST(info->heartbeats == static_cast<std::int64_t>(sekuire::testing::mock_max_heartbeat_marks + 5));
    BOOST_REQUIRE_EQUAL(info->recent_heartbeats.size(), sekuire::testing::mock_max_heartbeat_marks);
    BOOST_TEST((info->recent_heartbeats.back().at == env.clock.wall_now())); // the newest last
    std::string first;
    for (std::size_t i = 0; i < sekuire::testing::mock_max_command_log + 1; ++i) {
        const auto id = env.backend.send_command(a.installation_id, "x-probe");
        if (i == 0) first = id;
        // Keep the queue short: a heartbeat takes the command.
        BOOST_REQUIRE(env.http->heartbeat(a.installation_id, a.runtime_token));
    }
    const auto log = env.backend.commands();
    BOOST_TEST(log.size() == sekuire::testing::mock_max_command_log);
    BOOST_TEST(log.front().command_id != first); // the oldest was forgotten
}

BOOST_AUTO_TEST_CASE(dashboard_is_served_with_a_strict_policy) {
    fake_env env;
    mock_fault everything; // faults never touch the dashboard
    everything.status = 503;
    everything.count = 100;
    env.backend.add_fault(everything);
    for (const std::string path : {"/", "/dashboard", "/dashboard/"}) {
        auto page = env.http->get(path);
        BOOST_REQUIRE(page);
        BOOST_TEST(page->status == 200, path);
        BOOST_TEST(page->get_header_value("Content-Type") == "text/html; charset=utf-8");
        const auto csp = page->get_header_value("Content-Security-Policy");
        BOOST_TEST(csp.find("script-src 'self'") != std::string::npos);
        BOOST_TEST(csp.find("default-src 'none'") != std::string::npos);
        BOOST_TEST(csp.find("unsafe") == std::string::npos);
        BOOST_TEST(page->get_header_value("X-Content-Type-Options") == "nosniff");
        BOOST_TEST(!page->get_header_value(str(proto::header::date)).empty());
        BOOST_TEST(page->body.find(R"(<script src="/dashboard/dashboard.js" defer></script>)") != std::string::npos);
        // The key is asked for, never embedded; nothing runs inline.
        BOOST_TEST(page->body.find(default_key) == std::string::npos);
        BOOST_TEST(page->body.find("<script>") == std::string::npos);
        BOOST_TEST(page->body.find("style=") == std::string::npos);
    }
    auto js = env.http->get("/dashboard/dashboard.js");
    BOOST_REQUIRE(js);
    BOOST_TEST(js->status == 200);
    BOOST_TEST(js->get_header_value("Content-Type") == "text/javascript; charset=utf-8");
    BOOST_TEST(js->body.find("innerHTML") == std::string::npos);
    BOOST_TEST(js->body.find("eval(") == std::string::npos);
    auto css = env.http->get("/dashboard/dashboard.css");
    BOOST_REQUIRE(css);
    BOOST_TEST(css->get_header_value("Content-Type") == "text/css; charset=utf-8");
    for (const std::string path : {"/dashboard/nope.js", "/dashboard/../index.html", "/index.html", "/dashboardx"}) {
        auto missing = env.http->get(path);
        BOOST_REQUIRE(missing);
        BOOST_TEST(missing->status == 404, path);
        BOOST_TEST(code_of(missing) == str(ek::not_found));
    }
    auto post = env.http->post("/dashboard", "{}");
    BOOST_REQUIRE(post);
    BOOST_TEST(post->status == 404);
    // Page loads are not agent requests: not counted, and the fault is still all there.
    BOOST_TEST(env.backend.request_count("/") == 0u);
    BOOST_TEST(env.backend.request_count("/dashboard/dashboard.js") == 0u);
    auto faults = json_of(env.http->admin_get(admin::faults)).at("faults").as_array();
    BOOST_TEST(faults.at(0).at("remaining").to_number<int>() == 100);
}

BOOST_AUTO_TEST_CASE(admin_routes_answer) {
    fake_env env;
    auto a = env.http->bootstrap();
    BOOST_REQUIRE(env.http->heartbeat(a.installation_id, a.runtime_token));

    auto token = env.http->admin_post(admin::install_tokens, "");
    BOOST_REQUIRE(token);
    BOOST_TEST(token->status == 201);
    BOOST_TEST(json::value_to<std::string>(json_of(token).at("install_token")).rfind("skt_", 0) == 0);

    auto task = env.http->admin_post(
        admin::tasks, R"({"capability":"summarize","input":{"n":1},"workspace_id":"ws_mock","trace_id":"tr"})");
    BOOST_REQUIRE(task);
    BOOST_TEST(task->status == 201);
    const std::string task_id = json::value_to<std::string>(json_of(task).at("task_id"));
    BOOST_TEST(task_id.rfind("task_", 0) == 0);
    auto got = json_of(env.http->admin_get(admin::task(task_id)));
    BOOST_TEST(json::value_to<std::string>(got.at("status")) == "queued");
    BOOST_TEST(json::serialize(got.at("input")) == R"({"n":1})");
    BOOST_TEST(json::value_to<std::string>(got.at("trace_id")) == "tr");
    BOOST_TEST(got.at("output").is_null());
    BOOST_TEST(got.at("error").is_null());
    auto list = json_of(env.http->admin_get(admin::tasks));
    BOOST_TEST(list.at("tasks").as_array().size() == 1u);
    auto missing = env.http->admin_get(admin::task("task_missing"));
    BOOST_REQUIRE(missing);
    BOOST_TEST(missing->status == 404);
    auto bad_task = env.http->admin_post(admin::tasks, R"({"input":{}})");
    BOOST_REQUIRE(bad_task);
    BOOST_TEST(bad_task->status == 400);
    BOOST_TEST(proto::error_message_of(bad_task->body).find("'capability'") != std::string::npos);

    auto installs = json_of(env.http->admin_get(admin::installations));
    const auto& first = installs.at("installations").as_array().at(0).as_object();
    BOOST_TEST(json::value_to<std::string>(first.at("installation_id")) == a.installation_id);
    BOOST_TEST(json::value_to<std::string>(first.at("state")) == "healthy");
    BOOST_TEST(json::value_to<std::string>(first.at("last_heartbeat_at")) == "2026-01-01T00:00:00Z");
    BOOST_TEST(json::value_to<std::string>(first.at("lease_expires_at")) == "2026-01-01T00:03:00Z");
    BOOST_TEST(json::value_to<std::string>(first.at("platform").at("hostname")) == "host-1");
    BOOST_TEST(first.at("capabilities").as_array().size() == 1u);
    BOOST_TEST(first.at("metrics").at("requests_handled").to_number<int>() == 7);
    BOOST_TEST(first.find("runtime_token") == first.end());
    BOOST_TEST(first.find("refresh_token") == first.end());
    auto one = env.http->admin_get(admin::installation(a.installation_id));
    BOOST_REQUIRE(one);
    BOOST_TEST(one->status == 200);
    auto none = env.http->admin_get(admin::installation("inst_none"));
    BOOST_REQUIRE(none);
    BOOST_TEST(none->status == 404);

    auto cmd = env.http->admin_post(admin::commands(a.installation_id), R"({"type":"pause","reason":"r"})");
    BOOST_REQUIRE(cmd);
    BOOST_TEST(cmd->status == 201);

    auto policy = json_of(env.http->admin_get(admin::policy));
    BOOST_TEST(json::value_to<std::string>(policy.at("hash")) == env.backend.policy().hash);

    auto fault = env.http->admin_post(admin::faults, R"({"path_prefix":"/nothing","count":2,"status":500})");
    BOOST_REQUIRE(fault);
    BOOST_TEST(fault->status == 201);
    auto faults = json_of(env.http->admin_get(admin::faults));
    BOOST_TEST(faults.at("faults").as_array().size() == 1u);
    BOOST_TEST(faults.at("faults").as_array().at(0).at("remaining").to_number<int>() == 2);
    auto bad_fault = env.http->admin_post(admin::faults, R"({"path_prefix":"/x"})");
    BOOST_REQUIRE(bad_fault);
    BOOST_TEST(bad_fault->status == 400);
    auto bad_status = env.http->admin_post(admin::faults, R"({"status":200})");
    BOOST_REQUIRE(bad_status);
    BOOST_TEST(bad_status->status == 400);
    auto cleared = env.http->cli.Delete(str(admin::faults), api_key());
    BOOST_REQUIRE(cleared);
    BOOST_TEST(cleared->status == 200);
    BOOST_TEST(json_of(cleared).at("cleared").to_number<int>() == 1);
    BOOST_TEST(json_of(env.http->admin_get(admin::faults)).at("faults").as_array().empty());
}

BOOST_AUTO_TEST_CASE(fault_status_with_retry_after) {
    fake_env env;
    auto a = env.http->bootstrap();
    auto added = env.http->admin_post(
        admin::faults, R"({"path_prefix":")" + proto::path::heartbeat(a.installation_id) +
                           R"(","count":2,"status":503,"retry_after":"5"})");
    BOOST_REQUIRE(added);
    BOOST_TEST(added->status == 201);
    for (int i = 0; i < 2; ++i) {
        auto r = env.http->heartbeat(a.installation_id, a.runtime_token);
        BOOST_REQUIRE(r);
        BOOST_TEST(r->status == 503);
        BOOST_TEST(r->get_header_value(str(proto::header::retry_after)) == "5");
        BOOST_TEST(code_of(r) == str(ek::unavailable));
        BOOST_TEST(!r->get_header_value(str(proto::header::date)).empty());
    }
    auto ok = env.http->heartbeat(a.installation_id, a.runtime_token);
    BOOST_REQUIRE(ok);
    BOOST_TEST(ok->status == 200);

    // Admin paths are never affected, and a 429 says rate_limited.
    mock_fault everything;
    everything.status = 429;
    env.backend.add_fault(everything);
    auto admin_ok = env.http->admin_get(admin::installations);
    BOOST_REQUIRE(admin_ok);
    BOOST_TEST(admin_ok->status == 200);
    auto limited = env.http->heartbeat(a.installation_id, a.runtime_token);
    BOOST_REQUIRE(limited);
    BOOST_TEST(limited->status == 429);
    BOOST_TEST(code_of(limited) == str(ek::rate_limited));
    BOOST_TEST(env.backend.request_count(proto::path::heartbeat(a.installation_id)) == 4u);
}

BOOST_AUTO_TEST_CASE(fault_delay_and_dropped_connection) {
    fake_env env;
    auto a = env.http->bootstrap();
    mock_fault slow;
    slow.path_prefix = proto::path::heartbeat(a.installation_id);
    slow.delay = 300ms;
    env.backend.add_fault(slow);
    const auto start = std::chrono::steady_clock::now();
    auto delayed = env.http->heartbeat(a.installation_id, a.runtime_token);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    BOOST_REQUIRE(delayed);
    BOOST_TEST(delayed->status == 200);
    BOOST_TEST((elapsed >= 250ms));

    mock_fault drop;
    drop.path_prefix = str(proto::path::installations_prefix);
    drop.drop_connection = true;
    env.backend.add_fault(drop);
    auto dropped = env.http->heartbeat(a.installation_id, a.runtime_token);
    BOOST_TEST(!dropped);
    auto after = env.http->heartbeat(a.installation_id, a.runtime_token);
    BOOST_REQUIRE(after);
    BOOST_TEST(after->status == 200);

    // A stream-cut fault waits for a stream request.
    mock_fault cut;
    cut.cut_stream_after_events = 0;
    env.backend.add_fault(cut);
    auto unaffected = env.http->heartbeat(a.installation_id, a.runtime_token);
    BOOST_REQUIRE(unaffected);
    BOOST_TEST(unaffected->status == 200);
    auto s = open_stream(env.backend.url(), a.installation_id, a.runtime_token);
    BOOST_REQUIRE(s->wait_done());
    BOOST_TEST(s->events().empty());
    BOOST_TEST((s->error() != httplib::Error::Success));
}

BOOST_AUTO_TEST_CASE(hostile_input_gets_400_never_a_crash) {
    mock_backend_options o;
    o.max_body = 4096;
    fake_env env(o);
    auto a = env.http->bootstrap();
    const std::string deep = std::string(200, '[') + std::string(200, ']');
    const std::vector<std::string> bodies = {"",
                                             "not json",
                                             "[]",
                                             "\"string\"",
                                             R"({"install_token": 5})",
                                             R"({"status": "sideways"})",
                                             R"({"refresh_token": null})",
                                             deep,
                                             "{\"install_token\": \"\xff\xfe\"}",
                                             R"({"installation_id": 1, "status": "completed"})",
                                             R"({"state": "running", "in_flight": -1})",
                                             R"({"status": "healthy", "sequence": 1e400})"};
    const std::vector<std::pair<std::string, httplib::Headers>> targets = {
        {str(proto::path::bootstrap), {}},
        {str(proto::path::recover), api_key()},
        {proto::path::refresh(a.installation_id), {}},
        {proto::path::heartbeat(a.installation_id), bearer(a.runtime_token)},
        {proto::path::worker_heartbeat(a.installation_id), bearer(a.runtime_token)},
        {proto::path::complete("task_x"), bearer(a.runtime_token)},
        {str(admin::tasks), api_key()},
        {str(admin::faults), api_key()},
        {admin::commands(a.installation_id), api_key()},
    };
    for (const auto& t : targets)
        for (const auto& body : bodies) {
            auto r = env.http->post(t.first, body, t.second);
            BOOST_REQUIRE(r);
            BOOST_TEST(r->status == 400, t.first << " <- " << body.substr(0, 40));
            BOOST_TEST(code_of(r) == str(ek::bad_request));
        }
    auto huge = env.http->post(proto::path::heartbeat(a.installation_id), std::string(8192, 'x'), bearer(a.runtime_token));
    BOOST_REQUIRE(huge);
    BOOST_TEST(huge->status == 413);
    auto long_id = env.http->heartbeat(std::string(200, 'i'), a.runtime_token);
    BOOST_REQUIRE(long_id);
    BOOST_TEST(long_id->status == 404);
    auto long_auth = env.http->heartbeat(a.installation_id, std::string(2000, 't'));
    BOOST_REQUIRE(long_auth);
    BOOST_TEST(long_auth->status == 401);
    auto odd_last_id = open_stream(env.backend.url(), a.installation_id, a.runtime_token, {}, std::string("-1x"));
    BOOST_REQUIRE(odd_last_id->wait_status());
    BOOST_TEST(odd_last_id->status() == 200);
    odd_last_id.reset();
    // Still serving.
    auto hb = env.http->heartbeat(a.installation_id, a.runtime_token);
    BOOST_REQUIRE(hb);
    BOOST_TEST(hb->status == 200);
}

BOOST_AUTO_TEST_CASE(stop_ends_open_streams_promptly) {
    auto backend = std::make_unique<sekuire::testing::mock_backend>(test_options());
    backend->start();
    proto::bootstrap_response a;
    {
        api http(backend->url());
        a = http.bootstrap();
    }
    std::vector<std::unique_ptr<stream_reader>> streams;
    for (int i = 0; i < 5; ++i) streams.push_back(open_stream(backend->url(), a.installation_id, a.runtime_token));
    BOOST_REQUIRE(backend->wait_for_open_streams(5, 5s));
    const auto start = std::chrono::steady_clock::now();
    backend->stop();
    const auto elapsed = std::chrono::steady_clock::now() - start;
    BOOST_TEST((elapsed < 5s));
    for (auto& s : streams) {
        BOOST_REQUIRE(s->wait_done());
        BOOST_TEST((s->error() != httplib::Error::Success));
    }
    BOOST_TEST(backend->open_streams() == 0u);
}

BOOST_AUTO_TEST_CASE(many_concurrent_streams) {
    fake_env env; // on the default 2 I/O threads: a stream holds no thread
    auto a = env.http->bootstrap();
    constexpr std::size_t n = 40;
    std::vector<std::unique_ptr<stream_reader>> streams;
    for (std::size_t i = 0; i < n; ++i) streams.push_back(open_stream(env.backend.url(), a.installation_id, a.runtime_token));
    BOOST_REQUIRE(env.backend.wait_for_open_streams(n, 10s));
    // Other requests are still served while all those streams are open.
    auto hb = env.http->heartbeat(a.installation_id, a.runtime_token);
    BOOST_REQUIRE(hb);
    BOOST_TEST(hb->status == 200);
    std::set<std::string> ids;
    for (std::size_t i = 0; i < n; ++i) ids.insert(env.backend.enqueue_task(make_task("summarize")));
    std::set<std::string> seen;
    for (auto& s : streams) {
        BOOST_REQUIRE(s->wait_events(1, 10s));
        for (const auto& e : s->events()) seen.insert(task_of(e).task_id);
    }
    BOOST_TEST((seen == ids));
    for (auto& s : streams) BOOST_TEST(s->events().size() == 1u);
}

BOOST_AUTO_TEST_CASE(direct_functions_report_errors) {
    fake_env env;
    error_code ec;
    env.backend.revoke("inst_none", "x", std::nullopt, ec);
    BOOST_TEST((ec == errc::installation_not_found));
    BOOST_CHECK_THROW(env.backend.revoke("inst_none"), sekuire::error);
    mock_fault nothing;
    env.backend.add_fault(nothing, ec);
    BOOST_TEST((ec == errc::invalid_option));
    mock_fault both;
    both.status = 503;
    both.drop_connection = true;
    BOOST_CHECK_THROW(env.backend.add_fault(both), sekuire::error);
    env.backend.enqueue_task(make_task(""), ec);
    BOOST_TEST((ec == errc::invalid_option));
    BOOST_CHECK_THROW(env.backend.send_command("inst_none", "pause"), sekuire::error);
    BOOST_TEST(!env.backend.task("task_none"));
    BOOST_TEST(!env.backend.installation("inst_none"));
    BOOST_TEST(env.backend.clear_faults() == 0u);
    BOOST_TEST(env.backend.request_count("/never") == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
