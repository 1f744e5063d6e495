// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TESTING_MOCK_BACKEND_HPP
#define SEKUIRE_TESTING_MOCK_BACKEND_HPP

/// @file
/// `testing::basic_mock_backend`: a Sekuire backend in memory, on httplib's server, that
/// speaks all of protocol.md with its real rules, plus an admin API. For tests, examples
/// and local development without a Sekuire account. See docs/mock-backend.md.
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
#include <sekuire/testing/detail/mock_state.hpp>
#include <sekuire/time.hpp>

#include <httplib.h>

#include <atomic>
#include <chrono>
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

/// The HTTP side of the mock backend: routes, faults, Date headers, streams, lifecycle.
class mock_server {
public:
    mock_server(mock_backend_options options, mock_clock_fns clock)
        : clock_(clock), core_(std::move(options), std::move(clock)) {}

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
        if (!configured_) {
            configure();
            configured_ = true;
        }
        int port = -1;
        if (o.port == 0) {
            port = svr_.bind_to_any_port(o.host);
        } else if (svr_.bind_to_port(o.host, o.port)) {
            port = o.port;
        }
        if (port <= 0) {
            ec = errc::connection_failed;
            return;
        }
        listen_done_ = false;
        try {
            thread_ = std::thread([this] {
                try {
                    svr_.listen_after_bind(); // builds the thread pool, which can throw
                } catch (...) {
                }
                listen_done_ = true;
            });
        } catch (const std::system_error&) {
            // Out of threads. The bound socket stays with httplib's server until the
            // backend is destroyed; a backend starts only once.
            started_ = true;
            stopped_ = true;
            listen_done_ = true;
            ec = errc::connection_failed;
            return;
        }
        started_ = true;
        // httplib 0.11 has no wait_until_ready(), and stop() before the listener runs hangs.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!svr_.is_running() && !listen_done_ && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (!svr_.is_running()) {
            halt_locked();
            ec = errc::connection_failed;
            return;
        }
        port_ = port;
        const bool v6 = o.host.find(':') != std::string::npos;
        url_ = "http://";
        url_ += v6 ? "[" + o.host + "]" : o.host;
        url_ += ':';
        url_ += std::to_string(port);
    }

    void stop() noexcept {
        std::lock_guard<std::mutex> lk(lifecycle_);
        if (!started_ || stopped_) return;
        halt_locked();
    }

    bool is_running() const {
        std::lock_guard<std::mutex> lk(lifecycle_);
        return started_ && !stopped_ && svr_.is_running();
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
    // Requires lifecycle_. Ends the streams, stops the listener once it runs, joins.
    // Server::stop() is a no-op before the listener runs, and upstream httplib asserts
    // when it is called a second time while its thread pool drains: so wait for the
    // listener to run (or to have failed), then stop it exactly once.
    void halt_locked() noexcept {
        stopped_ = true;
        core_.shutdown();
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!svr_.is_running() && !listen_done_ && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (!listen_done_) svr_.stop();
        if (thread_.joinable()) thread_.join();
    }

    void configure() {
        const auto& o = core_.options();
        svr_.set_tcp_nodelay(true);
        // httplib also sets SO_REUSEPORT, which would let a second server bind a port that
        // is in use and share its connections: only SO_REUSEADDR here.
        svr_.set_socket_options([](auto sock) {
            int yes = 1;
            ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const char*>(&yes), sizeof(yes));
        });
        const std::size_t threads = o.threads;
        svr_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
        svr_.set_keep_alive_max_count(1000);
        svr_.set_keep_alive_timeout(static_cast<time_t>(o.keep_alive_timeout.count()));
        svr_.set_payload_max_length(o.max_body);

        svr_.set_error_handler(httplib::Server::HandlerWithResponse(
            [](const httplib::Request&, httplib::Response& res) {
                if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
                namespace n = protocol::error_code_name;
                const mock_reply r = res.status == 404   ? error_reply(404, n::not_found, "no such route")
                                     : res.status == 413 ? error_reply(413, n::bad_request, "the body is too large")
                                                         : error_reply(res.status, n::bad_request, "bad request");
                res.set_content(r.body, std::string(protocol::header::json_type));
                return httplib::Server::HandlerResponse::Handled;
            }));
        svr_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
            const mock_reply r = error_reply(500, protocol::error_code_name::unavailable, "internal error");
            res.status = 500;
            res.set_content(r.body, std::string(protocol::header::json_type));
        });
        // Every response carries Date, from the Clock's wall time.
        svr_.set_post_routing_handler([this](const httplib::Request&, httplib::Response& res) {
            const std::string date(protocol::header::date);
            if (!res.has_header(date)) res.set_header(date, format_http_date(clock_.wall()));
        });

        using httplib::Request;
        using httplib::Response;
        namespace p = protocol::path;
        namespace a = mock_admin_path;

        // -- protocol routes --------------------------------------------------------------
        svr_.Post(std::string(p::bootstrap), wrap(route::api, [this](const Request& req, Response& res) {
            send(res, core_.bootstrap(req.body));
        }));
        svr_.Post(std::string(p::recover), wrap(route::api, [this](const Request& req, Response& res) {
            send(res, core_.recover(header(req, protocol::header::api_key), req.body));
        }));
        svr_.Post(p::refresh_route, wrap(route::api, [this](const Request& req, Response& res) {
            if (!id_ok(req, res)) return;
            send(res, core_.refresh(req.matches[1].str(), req.body));
        }));
        svr_.Post(p::heartbeat_route, wrap(route::api, [this](const Request& req, Response& res) {
            if (!id_ok(req, res)) return;
            send(res, core_.heartbeat(req.matches[1].str(), header(req, protocol::header::authorization), req.body));
        }));
        svr_.Post(p::worker_heartbeat_route, wrap(route::api, [this](const Request& req, Response& res) {
            if (!id_ok(req, res)) return;
            send(res, core_.worker_heartbeat(req.matches[1].str(), header(req, protocol::header::authorization),
                                             req.body));
        }));
        svr_.Post(p::revoke_route, wrap(route::api, [this](const Request& req, Response& res) {
            if (!id_ok(req, res)) return;
            send(res, core_.revoke_route(req.matches[1].str(), header(req, protocol::header::api_key), req.body));
        }));
        svr_.Post(p::complete_route, wrap(route::api, [this](const Request& req, Response& res) {
            if (!id_ok(req, res)) return;
            send(res, core_.complete(req.matches[1].str(), header(req, protocol::header::authorization), req.body));
        }));
        svr_.Get(p::active_policy_route, wrap(route::api, [this](const Request& req, Response& res) {
            if (!id_ok(req, res)) return;
            send(res, core_.active_policy(req.matches[1].str(), header(req, protocol::header::authorization)));
        }));
        svr_.Get(p::task_stream_route, [this](const Request& req, Response& res) { serve_stream(req, res); });

        // -- admin routes -----------------------------------------------------------------
        svr_.Post(std::string(a::install_tokens), wrap(route::admin, [this](const Request& req, Response& res) {
            send(res, core_.admin_create_install_token(req.body));
        }));
        svr_.Post(std::string(a::tasks), wrap(route::admin, [this](const Request& req, Response& res) {
            send(res, core_.admin_enqueue_task(req.body));
        }));
        svr_.Get(std::string(a::tasks), wrap(route::admin, [this](const Request&, Response& res) {
            send(res, core_.admin_tasks());
        }));
        svr_.Get(a::task_route, wrap(route::admin, [this](const Request& req, Response& res) {
            if (!id_ok(req, res)) return;
            send(res, core_.admin_task(req.matches[1].str()));
        }));
        svr_.Get(std::string(a::installations), wrap(route::admin, [this](const Request&, Response& res) {
            send(res, core_.admin_installations());
        }));
        svr_.Get(a::installation_route, wrap(route::admin, [this](const Request& req, Response& res) {
            if (!id_ok(req, res)) return;
            send(res, core_.admin_installation(req.matches[1].str()));
        }));
        svr_.Post(a::commands_route, wrap(route::admin, [this](const Request& req, Response& res) {
            if (!id_ok(req, res)) return;
            send(res, core_.admin_send_command(req.matches[1].str(), req.body));
        }));
        svr_.Put(std::string(a::policy), wrap(route::admin, [this](const Request& req, Response& res) {
            send(res, core_.admin_set_policy(req.body));
        }));
        svr_.Get(std::string(a::policy), wrap(route::admin, [this](const Request&, Response& res) {
            send(res, core_.admin_policy());
        }));
        svr_.Post(std::string(a::faults), wrap(route::admin, [this](const Request& req, Response& res) {
            send(res, core_.admin_add_fault(req.body));
        }));
        svr_.Get(std::string(a::faults), wrap(route::admin, [this](const Request&, Response& res) {
            send(res, core_.admin_faults());
        }));
        svr_.Delete(std::string(a::faults), wrap(route::admin, [this](const Request&, Response& res) {
            send(res, core_.admin_clear_faults());
        }));
    }

    enum class route { api, admin };

    static std::string header(const httplib::Request& req, std::string_view name) {
        return req.get_header_value(std::string(name));
    }

    static void send(httplib::Response& res, const mock_reply& r) {
        res.status = r.status;
        for (const auto& h : r.headers) res.set_header(h.first, h.second);
        if (!r.body.empty()) res.set_content(r.body, std::string(protocol::header::json_type));
    }

    // Ids in paths are bounded: a longer one names nothing.
    static bool id_ok(const httplib::Request& req, httplib::Response& res) {
        if (req.matches.size() >= 2 && req.matches[1].length() <= static_cast<std::ptrdiff_t>(mock_max_id_length))
            return true;
        send(res, error_reply(404, protocol::error_code_name::not_found, "no such resource"));
        return false;
    }

    // Ends the exchange after the headers: the client sees the connection close.
    static void drop(httplib::Response& res) {
        res.status = 200;
        res.set_content_provider(
            1, std::string(protocol::header::json_type), [](std::size_t, std::size_t, httplib::DataSink&) { return false; });
    }

    // Applies a fault's delay and effect; true when the request must still be handled.
    bool apply_fault(const mock_fault& f, httplib::Response& res) {
        if (f.delay > std::chrono::milliseconds(0) && !core_.pause_for(std::min(f.delay, mock_max_fault_delay))) {
            drop(res);
            return false;
        }
        if (f.drop_connection) {
            drop(res);
            return false;
        }
        if (f.status) {
            namespace n = protocol::error_code_name;
            mock_reply r = error_reply(*f.status, *f.status == 429 ? n::rate_limited : n::unavailable, "injected fault");
            if (f.retry_after) r.headers.emplace_back(std::string(protocol::header::retry_after), *f.retry_after);
            send(res, r);
            return false;
        }
        return true;
    }

    template <class Handler>
    httplib::Server::Handler wrap(route kind, Handler handler) {
        return [this, kind, handler](const httplib::Request& req, httplib::Response& res) {
            core_.count_request(req.path);
            core_.tick();
            if (kind == route::admin) {
                if (header(req, protocol::header::api_key) != core_.options().api_key) {
                    send(res, error_reply(401, protocol::error_code_name::invalid_api_key, "the API key is not valid"));
                    return;
                }
            } else if (auto f = core_.take_fault(req.path, false)) {
                if (!apply_fault(*f, res)) return;
            }
            handler(req, res);
        };
    }

    void serve_stream(const httplib::Request& req, httplib::Response& res) {
        core_.count_request(req.path);
        core_.tick();
        std::optional<std::size_t> cut_after;
        if (auto f = core_.take_fault(req.path, true)) {
            if (f->cut_stream_after_events) {
                if (f->delay > std::chrono::milliseconds(0) && !core_.pause_for(f->delay)) return drop(res);
                cut_after = f->cut_stream_after_events;
            } else if (!apply_fault(*f, res)) {
                return;
            }
        }
        if (!id_ok(req, res)) return;
        std::optional<std::string> caps;
        if (req.has_param(protocol::path::capabilities_param)) {
            caps = req.get_param_value(protocol::path::capabilities_param);
            if (caps->size() > mock_max_capabilities * (mock_max_name_length + 1)) caps->clear();
        }
        auto opened = core_.open_stream(req.matches[1].str(), header(req, protocol::header::authorization), caps,
                                        header(req, protocol::header::last_event_id), cut_after);
        if (opened.id == 0) {
            send(res, opened.error);
            return;
        }
        const std::uint64_t id = opened.id;
        res.status = 200;
        res.set_header(std::string(protocol::header::cache_control), "no-cache");
        // Exactly this content type: httplib 0.11 compresses any other text/* type.
        res.set_chunked_content_provider(
            std::string(protocol::header::event_stream_type),
            [this, id](std::size_t, httplib::DataSink& sink) {
                std::string frames;
                const auto end = core_.next_frames(id, std::chrono::milliseconds(50), frames);
                if (!frames.empty() && !sink.write(frames.data(), frames.size())) return false;
                if (end == mock_stream_end::cut) return false;
                if (end == mock_stream_end::done) {
                    sink.done();
                    return true;
                }
                return sink.is_writable();
            },
            [this, id](bool) { core_.close_stream(id); });
    }

    mock_clock_fns clock_;
    mock_core core_;
    httplib::Server svr_;
    std::thread thread_;
    std::atomic<bool> listen_done_{true};
    mutable std::mutex lifecycle_;
    bool configured_ = false;
    bool started_ = false;
    bool stopped_ = false;
    int port_ = -1;
    std::string url_;
};

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

    @par SIGPIPE
    Constructing a backend sets SIGPIPE to ignored for the whole process: httplib's server
    does so in its constructor, and its writes to a client that hung up rely on it.

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

    /** Binds (an ephemeral port when `options().port` is 0) and serves on a thread of its
        own; returns once the server accepts connections. Errors: `errc::invalid_option`
        (invalid options), `errc::connection_failed` (cannot bind or listen),
        `errc::already_started` (a backend starts once).
    */
    void start(error_code& ec) { server_->start(ec); }

    /// As `start(error_code&)`; throws `sekuire::error` on failure.
    void start() {
        error_code ec;
        start(ec);
        if (ec) throw sekuire::error(ec, "mock backend: cannot start");
    }

    /** Stops serving: open task streams end within about 50 ms, in-flight requests
        finish, and the call returns once the server thread is joined (after at most
        `options().keep_alive_timeout` when a client holds an idle connection). Idempotent.
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
