// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TESTING_FAKE_TRANSPORT_HPP
#define SEKUIRE_TESTING_FAKE_TRANSPORT_HPP

/// @file
/// A Transport for tests: scripted answers, a record of every request, failure injection.

#include <sekuire/error.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/transport.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sekuire {
namespace testing {

/** A Transport that answers from a script and records every request.

    A cheap handle: the test keeps one copy and hands another to the code under test.

    - `on(method, path)` scripts answers for requests whose path (the target without its
      query) equals `path`; `on_prefix(method, prefix)` for paths that start with
      `prefix`. An exact route wins over a prefix route, a longer prefix over a shorter.
      Each route answers from a queue: `respond()`, `fail()` and `handle()` append to it,
      and each answer is used once; when the queue is empty, the answer used last keeps
      answering. So `respond(503).respond(200)` fails once and then succeeds for good, and
      answers appended later are used next.
    - `fail_call(n, ec)` makes the n-th call from now (1-based, sends and streams alike)
      fail with `ec` whatever the script says (Beast's `fail_count` idea: loop n upward
      to hit every failure point).
    - `on_stream(path)` scripts streaming GETs: each `stream_script` is one connection (a
      status, headers, body chunks, then the end, an error, or holding the connection open
      until the stream is stopped or `close_streams()` is called), used once, in order; when
      none is left, the one used last is replayed. `push_chunk()` adds
      chunks to a held stream from another thread.
    - Requests without a script get a 404 with an error body, and are counted by
      `unscripted_count()`.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe. Handlers run outside the internal lock.
*/
class fake_transport {
public:
    /// One scripted answer.
    struct reply {
        /// The HTTP status.
        int status = 200;
        /// The body.
        std::string body;
        /// The response headers.
        header_list headers;
        error_code error; ///< when set, the call fails with it and the rest is ignored
    };

    /// Computes an answer from the request.
    using handler = std::function<reply(const http_request&)>;

    /// A recorded request.
    struct recorded {
        /// The request as the transport received it.
        http_request request;
        /// True for a streaming request (`stream()`), false for `send()`.
        bool streamed = false;
        /// The path, without the query.
        std::string path() const {
            const auto q = request.target.find('?');
            return q == std::string::npos ? request.target : request.target.substr(0, q);
        }
    };

    /// One scripted streaming connection.
    struct stream_script {
        /// The status of the response head.
        int status = 200;
        /// The headers of the response head.
        header_list headers;
        /// Body chunks, each passed to `on_data` as one piece.
        std::vector<std::string> chunks;
        /// After the chunks: fail the stream with this error (none: a clean end).
        error_code end_error;
        /// After the chunks: keep the connection open until stopped or closed.
        bool hold_open = false;
    };

private:
    struct state;

public:
    /// The answers scripted for one route.
    class route {
    public:
        /// Appends an answer with a status and body.
        route& respond(int status, std::string body = {}, header_list headers = {}) {
            std::lock_guard<std::mutex> lock(state_->mutex);
            entry e;
            e.fixed.status = status;
            e.fixed.body = std::move(body);
            e.fixed.headers = std::move(headers);
            answers().push_back(std::move(e));
            return *this;
        }
        /// Appends a transport failure.
        route& fail(error_code ec) {
            std::lock_guard<std::mutex> lock(state_->mutex);
            entry e;
            e.fixed.error = ec;
            answers().push_back(std::move(e));
            return *this;
        }
        /// Appends a handler that computes the answer.
        route& handle(handler h) {
            std::lock_guard<std::mutex> lock(state_->mutex);
            entry e;
            e.fn = std::move(h);
            answers().push_back(std::move(e));
            return *this;
        }
        /// Forgets the queued answers, and the answer used last.
        route& clear() {
            std::lock_guard<std::mutex> lock(state_->mutex);
            answers().clear();
            state_->last_answers.erase(key_);
            return *this;
        }

    private:
        friend class fake_transport;
        struct entry {
            reply fixed;
            handler fn;
        };
        route(std::shared_ptr<fake_transport::state> s, std::string key) : state_(std::move(s)), key_(std::move(key)) {}
        std::deque<entry>& answers();
        std::shared_ptr<fake_transport::state> state_;
        std::string key_;
    };

    fake_transport();

    /// Scripts the route `method path` (exact path, query ignored).
    route on(http_method method, std::string path) { return route(state_, key(method, "=", path)); }

    /// Scripts the routes `method prefix...`.
    route on_prefix(http_method method, std::string prefix) { return route(state_, key(method, "^", prefix)); }

    /// Appends a streaming connection script for `path` (exact path, query ignored).
    void on_stream(std::string path, stream_script script) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->streams[std::move(path)].push_back(std::move(script));
    }

    /// Makes the `n`-th call from now (1-based) fail with `ec`.
    void fail_call(std::size_t n, error_code ec) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->failures[state_->calls + n] = ec;
    }

    /// Appends a chunk to the streams currently held open (and to those opened later).
    void push_chunk(std::string chunk) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->pushed.push_back(std::move(chunk));
        state_->cv.notify_all();
    }

    /// Ends every stream held open now (cleanly).
    void close_streams() {
        std::lock_guard<std::mutex> lock(state_->mutex);
        ++state_->close_generation;
        state_->cv.notify_all();
    }

    /// Every request so far, in order.
    std::vector<recorded> requests() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->log;
    }

    /// The requests whose method and path (query ignored) match.
    std::vector<recorded> requests(http_method method, std::string_view path) const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        std::vector<recorded> out;
        for (const auto& r : state_->log)
            if (r.request.method == method && r.path() == path) out.push_back(r);
        return out;
    }

    /// How many requests match `method path`.
    std::size_t count(http_method method, std::string_view path) const { return requests(method, path).size(); }

    /// How many requests were made in all.
    std::size_t total() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->log.size();
    }

    /// Streams currently open.
    std::size_t open_streams() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->open_streams;
    }

    /// Blocks the test until `n` streams are open or `real_timeout` passes.
    template <class Rep, class Period>
    bool wait_for_open_streams(std::size_t n, std::chrono::duration<Rep, Period> real_timeout) const {
        std::unique_lock<std::mutex> lock(state_->mutex);
        return state_->cv.wait_for(lock, real_timeout, [&] { return state_->open_streams >= n; });
    }

    /// Requests that found no script.
    std::size_t unscripted_count() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->unscripted;
    }

    /// Forgets every script (routes, streams, injected failures); recorded requests stay.
    /// Handlers are destroyed without being called.
    void clear_scripts() {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->routes.clear();
        state_->last_answers.clear();
        state_->streams.clear();
        state_->last_streams.clear();
        state_->failures.clear();
    }

    /// Forgets the recorded requests (scripts stay).
    void clear_requests() {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->log.clear();
    }

    /// See the Transport requirements.
    http_response send(const http_request& req, error_code& ec) {
        ec = {};
        handler fn;
        reply r;
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            state_->log.push_back({req, false});
            if (auto injected = take_failure()) {
                ec = *injected;
                return {};
            }
            const route::entry* e = take_answer(req);
            if (!e) {
                ++state_->unscripted;
                r.status = 404;
                r.body = not_found_body("no script for this request");
            } else if (e->fn) {
                fn = e->fn;
            } else {
                r = e->fixed;
            }
        }
        if (fn) r = fn(req);
        if (r.error) {
            ec = r.error;
            return {};
        }
        http_response res;
        res.status = r.status;
        res.headers = std::move(r.headers);
        res.body = std::move(r.body);
        return res;
    }

    /// See the Transport requirements.
    void stream(const http_request& req, stream_callbacks& cb, const stop_token& stop, error_code& ec) {
        if (stream_begin(req, cb, stop, ec)) hold(cb, stop, ec);
    }

    /** The part of `stream()` that never blocks: records the request, takes the next stream
        script and runs its head and chunks through `cb`. Returns true when the script holds
        the connection open (`hold_open`) and the callbacks asked for more: holding it is
        then the caller's (`fake_async_transport` does so without blocking); false when the
        connection is over, `ec` saying how.
    */
    bool stream_begin(const http_request& req, stream_callbacks& cb, const stop_token& stop, error_code& ec) {
        ec = {};
        stream_script script;
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            state_->log.push_back({req, true});
            if (auto injected = take_failure()) {
                ec = *injected;
                return false;
            }
            const auto q = req.target.find('?');
            const std::string path = q == std::string::npos ? req.target : req.target.substr(0, q);
            auto it = state_->streams.find(path);
            if (it != state_->streams.end() && !it->second.empty()) {
                script = std::move(it->second.front());
                it->second.pop_front();
                state_->last_streams[path] = script;
            } else if (auto last = state_->last_streams.find(path); last != state_->last_streams.end()) {
                script = last->second;
            } else {
                ++state_->unscripted;
                script.status = 404;
                script.chunks.push_back(not_found_body("no stream script"));
            }
        }
        if (stop.stop_requested()) {
            ec = errc::canceled;
            return false;
        }
        http_response head;
        head.status = script.status;
        head.headers = script.headers;
        if (cb.on_response && !cb.on_response(head)) return false;
        for (const auto& c : script.chunks) {
            if (stop.stop_requested()) {
                ec = errc::canceled;
                return false;
            }
            if (cb.on_data && !cb.on_data(c)) return false;
        }
        if (script.end_error) {
            ec = script.end_error;
            return false;
        }
        return script.hold_open;
    }

private:
    // The state that the copies of one fake_transport share (private: its routes reach it as
    // members of fake_transport).
    struct state {
        std::mutex mutex;
        std::condition_variable cv;
        std::map<std::string, std::deque<route::entry>> routes;
        std::map<std::string, route::entry> last_answers;
        std::map<std::string, std::deque<stream_script>> streams;
        std::map<std::string, stream_script> last_streams;
        std::map<std::size_t, error_code> failures;
        std::vector<recorded> log;
        std::vector<std::string> pushed;
        std::size_t calls = 0;
        std::size_t unscripted = 0;
        std::size_t open_streams = 0;
        std::uint64_t close_generation = 0;
    };

    friend class route;

    // The protocol's error body for an unscripted request.
    static std::string not_found_body(const char* message) {
        return protocol::encode(protocol::error_body{std::string(protocol::error_code_name::not_found), message});
    }

    static std::string key(http_method m, const char* kind, std::string_view path) {
        std::string k = to_string(m);
        k += ' ';
        k += kind;
        k += path;
        return k;
    }

    // Requires the lock.
    std::optional<error_code> take_failure() {
        ++state_->calls;
        auto it = state_->failures.find(state_->calls);
        if (it == state_->failures.end()) return std::nullopt;
        error_code ec = it->second;
        state_->failures.erase(it);
        return ec;
    }

    // Requires the lock. The route key that answers `req`: the exact route, else the
    // longest prefix route (routes with queued or previously used answers only).
    std::string route_key(const http_request& req) const {
        const auto q = req.target.find('?');
        const std::string path = q == std::string::npos ? req.target : req.target.substr(0, q);
        auto usable = [&](const std::string& k) {
            auto it = state_->routes.find(k);
            return (it != state_->routes.end() && !it->second.empty()) || state_->last_answers.count(k) != 0;
        };
        const std::string exact = key(req.method, "=", path);
        if (usable(exact)) return exact;
        const std::string prefix_key = key(req.method, "^", "");
        std::string best;
        std::size_t best_len = 0;
        auto consider = [&](const std::string& k) {
            if (k.compare(0, prefix_key.size(), prefix_key) != 0 || !usable(k)) return;
            const std::string_view prefix = std::string_view(k).substr(prefix_key.size());
            if (path.compare(0, prefix.size(), prefix) == 0 && (best.empty() || prefix.size() >= best_len)) {
                best = k;
                best_len = prefix.size();
            }
        };
        for (const auto& kv : state_->routes) consider(kv.first);
        for (const auto& kv : state_->last_answers) consider(kv.first);
        return best;
    }

    // Requires the lock. The next answer for `req` (queued first, else the last one used).
    const route::entry* take_answer(const http_request& req) {
        const std::string k = route_key(req);
        if (k.empty()) return nullptr;
        auto& q = state_->routes[k];
        if (!q.empty()) {
            state_->last_answers[k] = std::move(q.front());
            q.pop_front();
        }
        auto it = state_->last_answers.find(k);
        return it == state_->last_answers.end() ? nullptr : &it->second;
    }

    void hold(stream_callbacks& cb, const stop_token& stop, error_code& ec) {
        bool stopped = false;
        // Wakes this stream when it is stopped from another thread. Registered before the
        // lock is taken and destroyed after it is released: the callback takes the lock.
        stop_callback<std::function<void()>> on_stop(stop, std::function<void()>([this, &stopped] {
            std::lock_guard<std::mutex> g(state_->mutex);
            stopped = true;
            state_->cv.notify_all();
        }));
        std::unique_lock<std::mutex> lock(state_->mutex);
        ++state_->open_streams;
        state_->cv.notify_all();
        const std::uint64_t generation = state_->close_generation;
        std::size_t next = state_->pushed.size();
        for (;;) {
            state_->cv.wait(lock, [&] {
                return stopped || state_->close_generation != generation || next < state_->pushed.size();
            });
            if (stopped) {
                ec = errc::canceled;
                break;
            }
            if (next < state_->pushed.size()) {
                std::string chunk = state_->pushed[next++];
                lock.unlock();
                const bool more = !cb.on_data || cb.on_data(chunk);
                lock.lock();
                if (!more) break;
                continue;
            }
            break; // closed
        }
        --state_->open_streams;
        state_->cv.notify_all();
        lock.unlock();
    }

    std::shared_ptr<state> state_;
};

inline fake_transport::fake_transport() : state_(std::make_shared<state>()) {}

inline std::deque<fake_transport::route::entry>& fake_transport::route::answers() { return state_->routes[key_]; }

} // namespace testing
} // namespace sekuire

#endif
