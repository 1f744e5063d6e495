// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TESTING_FAKE_ASYNC_HPP
#define SEKUIRE_TESTING_FAKE_ASYNC_HPP

/// @file
/// Fakes for the asynchronous agents: `fake_timer` (a Timer in fake time, fired by the test
/// through a `fake_timer_queue`), `fake_async_transport` (an AsyncTransport answering from a
/// `fake_transport` script, optionally holding its answers until the test releases them),
/// and `run_async_until()` / `run_async_for()`, which move a `fake_clock` from one timer
/// deadline to the next and run an `io_context`'s ready handlers in between. No sockets,
/// no sleeping.

#include <sekuire/clock.hpp>
#include <sekuire/detail/erased_handler.hpp>
#include <sekuire/error.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fake_transport.hpp>
#include <sekuire/transport.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sekuire {
namespace testing {

/** The waits of the `fake_timer`s built on it, fired by the test in fake time.

    A cheap handle: copies share the waits. `fire_due(now)` posts the handlers of the waits
    whose deadline is at or before `now` (each to the executor its timer was built on) and
    forgets them.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class fake_timer_queue {
public:
    fake_timer_queue() : state_(std::make_shared<state>()) {}

    /// The earliest deadline waited for, or nullopt when nothing waits.
    std::optional<steady_time_point> next_deadline() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        std::optional<steady_time_point> out;
        for (const auto& w : state_->waits)
            if (!out || w.deadline < *out) out = w.deadline;
        return out;
    }

    /// The number of waits pending.
    std::size_t pending() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->waits.size();
    }

    /// Posts the handlers of the waits due at `now` (with no error); returns how many.
    std::size_t fire_due(steady_time_point now) {
        std::vector<wait> due;
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            auto it = std::stable_partition(state_->waits.begin(), state_->waits.end(),
                                            [&](const wait& w) { return w.deadline > now; });
            for (auto i = it; i != state_->waits.end(); ++i) due.push_back(std::move(*i));
            state_->waits.erase(it, state_->waits.end());
        }
        std::stable_sort(due.begin(), due.end(), [](const wait& a, const wait& b) { return a.deadline < b.deadline; });
        for (auto& w : due) boost::asio::post(w.executor, [h = std::move(w.handler)]() mutable { h(error_code()); });
        return due.size();
    }

private:
    friend class fake_timer;
    struct wait {
        std::uint64_t timer = 0;
        steady_time_point deadline{};
        boost::asio::any_io_executor executor;
        std::function<void(error_code)> handler;
    };
    struct state {
        std::mutex mutex;
        std::vector<wait> waits;
        std::uint64_t next_timer = 1;
    };

    // Removes timer `id`'s wait, posting its handler with operation_aborted.
    void abort(std::uint64_t id) {
        std::vector<wait> gone;
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            auto it = std::stable_partition(state_->waits.begin(), state_->waits.end(),
                                            [&](const wait& w) { return w.timer != id; });
            for (auto i = it; i != state_->waits.end(); ++i) gone.push_back(std::move(*i));
            state_->waits.erase(it, state_->waits.end());
        }
        for (auto& w : gone)
            boost::asio::post(w.executor, [h = std::move(w.handler)]() mutable {
                h(error_code(boost::asio::error::operation_aborted));
            });
    }

    std::shared_ptr<state> state_;
};

/** A Timer (see `sekuire::async::steady_timer`) in fake time: its waits go to a
    `fake_timer_queue` and complete when the test fires them.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Unsafe.
*/
class fake_timer {
public:
    /// A timer whose handlers are posted to `ex`, its waits kept in `queue`.
    fake_timer(boost::asio::any_io_executor ex, fake_timer_queue queue) : executor_(std::move(ex)), queue_(std::move(queue)) {
        std::lock_guard<std::mutex> lock(queue_.state_->mutex);
        id_ = queue_.state_->next_timer++;
    }

    fake_timer(const fake_timer&) = delete;
    fake_timer& operator=(const fake_timer&) = delete;
    /// Moves the pending wait along.
    fake_timer(fake_timer&& o) noexcept : executor_(std::move(o.executor_)), queue_(o.queue_), id_(o.id_) { o.id_ = 0; }
    fake_timer& operator=(fake_timer&&) = delete;
    /// Ends the pending wait with `operation_aborted`.
    ~fake_timer() {
        if (id_ != 0) cancel();
    }

    /// Waits until `deadline` in fake time; a pending wait ends with `operation_aborted`.
    template <class Handler>
    void async_wait_until(steady_time_point deadline, Handler&& h) {
        cancel();
        auto held = std::make_shared<std::decay_t<Handler>>(std::forward<Handler>(h));
        fake_timer_queue::wait w;
        w.timer = id_;
        w.deadline = deadline;
        w.executor = executor_;
        w.handler = [held](error_code ec) { (*held)(ec); };
        std::lock_guard<std::mutex> lock(queue_.state_->mutex);
        queue_.state_->waits.push_back(std::move(w));
    }

    /// Ends the pending wait, if any, with `operation_aborted`.
    void cancel() { queue_.abort(id_); }

private:
    boost::asio::any_io_executor executor_;
    fake_timer_queue queue_;
    std::uint64_t id_ = 0;
};

/** An AsyncTransport answering from a `fake_transport` script (which records every
    request when it is sent).

    `async_send` asks the script on the executor, after the call; the answer completes the
    handler at once, or, while `hold(true)`, waits until `release()` (or a cancellation,
    which completes it with `errc::canceled`).

    `async_stream` takes the script's next stream script on the executor, after the call,
    and runs its head and chunks. A script that holds its connection open
    (`stream_script::hold_open`) stays open without blocking anything: `push_chunk()` (now)
    and `push_chunk_at()` (when the fake clock reaches a time) deliver further chunks to the
    streams open, `close_streams()` ends them cleanly, and a cancellation through the
    handler's slot ends one with `errc::canceled`. (The script's own `push_chunk()` and
    `close_streams()` act on the synchronous `stream()` only.)

    A cheap handle: copies share the script and the held answers.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class fake_async_transport {
public:
    /// The executor operations complete on.
    using executor_type = boost::asio::any_io_executor;

    /// A transport on `ex` answering from `script` (a handle the test keeps a copy of).
    fake_async_transport(executor_type ex, fake_transport script)
        : state_(std::make_shared<state>(std::move(ex), std::move(script))) {}

    /// The executor.
    executor_type get_executor() const { return state_->executor; }

    /// The script (shared with the test's copy).
    fake_transport& script() noexcept { return state_->script; }

    /// While true, answers wait for `release()`.
    void hold(bool on) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->holding = on;
    }

    /// The number of answers held.
    std::size_t held() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->held.size();
    }

    /// The number of sends whose handler has not been called yet.
    std::size_t outstanding() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->outstanding;
    }

    /// Completes every answer held, in the order the requests were sent; returns how many.
    std::size_t release() {
        std::deque<std::shared_ptr<op>> ready;
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            ready.swap(state_->held);
        }
        for (auto& o : ready) finish(state_, o, o->ec, std::move(o->response));
        return ready.size();
    }

    /// As `fake_transport::send`, asynchronously (see the class comment).
    template <class CompletionToken>
    auto async_send(const http_request& req, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(error_code, http_response)>(
            [st = state_](auto handler, const http_request& r) {
                auto o = std::make_shared<op>();
                auto slot = boost::asio::get_associated_cancellation_slot(handler);
                o->slot = slot;
                o->handler = detail::erase_handler<error_code, http_response>(std::move(handler), st->executor);
                {
                    std::lock_guard<std::mutex> lock(st->mutex);
                    ++st->outstanding;
                }
                if (slot.is_connected()) {
                    std::weak_ptr<op> weak = o;
                    slot.assign([st, weak](boost::asio::cancellation_type type) {
                        if (type == boost::asio::cancellation_type::none) return;
                        auto p = weak.lock();
                        if (!p) return;
                        boost::asio::post(st->executor, [st, p] {
                            {
                                std::lock_guard<std::mutex> lock(st->mutex);
                                auto it = std::find(st->held.begin(), st->held.end(), p);
                                if (it == st->held.end()) return; // not held: completes anyway
                                st->held.erase(it);
                            }
                            finish(st, p, errc::canceled, http_response());
                        });
                    });
                }
                boost::asio::post(st->executor, [st, o, r]() mutable {
                    error_code ec;
                    http_response res = st->script.send(r, ec);
                    {
                        std::lock_guard<std::mutex> lock(st->mutex);
                        if (st->holding) {
                            o->ec = ec;
                            o->response = std::move(res);
                            st->held.push_back(o);
                            return;
                        }
                    }
                    finish(st, o, ec, std::move(res));
                });
            },
            token, req);
    }

    /** As `fake_transport::stream`, asynchronously: the callbacks run on the executor,
        `h(ec)` once at the end; a stream held open ends by `close_streams()` (no error),
        by a callback returning false (no error) or by a cancellation through the handler's
        slot (`errc::canceled`), never inside this call. */
    template <class CompletionToken>
    auto async_stream(const http_request& req, stream_callbacks cb, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(error_code)>(
            [st = state_](auto handler, const http_request& r, stream_callbacks c) {
                auto s = std::make_shared<stream_op>();
                s->slot = boost::asio::get_associated_cancellation_slot(handler);
                s->cb = std::move(c);
                s->handler = detail::erase_handler<error_code>(std::move(handler), st->executor);
                if (s->slot.is_connected()) {
                    std::weak_ptr<stream_op> weak = s;
                    s->slot.assign([st, weak](boost::asio::cancellation_type type) {
                        if (type == boost::asio::cancellation_type::none) return;
                        auto p = weak.lock();
                        if (!p) return;
                        p->cancelled = true;
                        boost::asio::post(st->executor, [st, p] { end_stream(st, p, errc::canceled); });
                    });
                }
                boost::asio::post(st->executor, [st, s, r]() mutable {
                    if (s->done) return;
                    error_code ec;
                    stop_source stop;
                    if (s->cancelled) stop.request_stop();
                    if (!st->script.stream_begin(r, s->cb, stop.get_token(), ec) || s->done) {
                        end_stream(st, s, ec);
                        return;
                    }
                    std::lock_guard<std::mutex> lock(st->mutex);
                    st->streams.push_back(s);
                });
            },
            token, req, std::move(cb));
    }

    /// The number of streams held open now.
    std::size_t open_streams() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->streams.size();
    }

    /** Delivers `chunk` to every stream held open now, on the executor (after the call); a
        stream whose `on_data` returns false ends without an error. */
    void push_chunk(std::string chunk) {
        auto st = state_;
        boost::asio::post(st->executor, [st, chunk = std::move(chunk)] { deliver(st, chunk); });
    }

    /** Delivers `chunk` to the streams held open when the fake clock reaches `when`: a wait
        on `timers` that `run_async_until()` fires in its turn. Its timer lives until then. */
    void push_chunk_at(fake_timer_queue& timers, steady_time_point when, std::string chunk) {
        auto st = state_;
        auto timer = std::make_shared<fake_timer>(st->executor, timers);
        timer->async_wait_until(when, [st, timer, chunk = std::move(chunk)](error_code ec) mutable {
            if (!ec) deliver(st, chunk);
            // The handler owns its timer: free it after this call (not from inside it).
            boost::asio::post(st->executor, [t = std::move(timer)] {});
        });
    }

    /// Ends every stream held open now without an error, on the executor (after the call).
    void close_streams() {
        auto st = state_;
        boost::asio::post(st->executor, [st] {
            std::vector<std::shared_ptr<stream_op>> open;
            {
                std::lock_guard<std::mutex> lock(st->mutex);
                open = st->streams;
            }
            for (auto& s : open) end_stream(st, s, error_code());
        });
    }

private:
    struct stream_op {
        stream_callbacks cb;
        detail::erased_handler<error_code> handler;
        boost::asio::cancellation_slot slot;
        bool cancelled = false;
        bool done = false;
    };
    struct op {
        detail::erased_handler<error_code, http_response> handler;
        boost::asio::cancellation_slot slot;
        error_code ec;
        http_response response;
    };
    struct state {
        state(executor_type ex, fake_transport s) : executor(std::move(ex)), script(std::move(s)) {}
        executor_type executor;
        fake_transport script;
        std::mutex mutex;
        bool holding = false;
        std::deque<std::shared_ptr<op>> held;
        std::size_t outstanding = 0;
        std::vector<std::shared_ptr<stream_op>> streams; // held open
    };

    // On the executor: hands `chunk` to the open streams.
    static void deliver(const std::shared_ptr<state>& st, const std::string& chunk) {
        std::vector<std::shared_ptr<stream_op>> open;
        {
            std::lock_guard<std::mutex> lock(st->mutex);
            open = st->streams;
        }
        for (auto& s : open) {
            if (s->done) continue;
            const bool more = !s->cb.on_data || s->cb.on_data(chunk);
            if (!more) end_stream(st, s, error_code());
        }
    }

    // On the executor: ends stream `s` once.
    static void end_stream(const std::shared_ptr<state>& st, const std::shared_ptr<stream_op>& s, error_code ec) {
        if (s->done) return;
        s->done = true;
        {
            std::lock_guard<std::mutex> lock(st->mutex);
            auto it = std::find(st->streams.begin(), st->streams.end(), s);
            if (it != st->streams.end()) st->streams.erase(it);
        }
        if (s->slot.is_connected()) s->slot.clear();
        auto h = std::move(s->handler);
        s->handler = nullptr;
        s->cb = stream_callbacks();
        if (h) h(ec);
    }

    static void finish(const std::shared_ptr<state>& st, const std::shared_ptr<op>& o, error_code ec, http_response res) {
        if (!o->handler) return;
        if (o->slot.is_connected()) o->slot.clear();
        {
            std::lock_guard<std::mutex> lock(st->mutex);
            --st->outstanding;
        }
        auto h = std::move(o->handler);
        o->handler = nullptr;
        h(ec, std::move(res));
    }

    std::shared_ptr<state> state_;
};

/** Runs `ioc`'s ready handlers, then moves `clock` to each deadline of `timers` in turn up
    to `target`, firing the waits due and running the handlers they make ready; the clock
    ends at `target`. Returns the number of timer waits fired. Throws `runaway_step_error`
    when more than `max_fires` are needed (a busy loop in fake time).
*/
inline std::size_t run_async_until(fake_clock& clock, boost::asio::io_context& ioc, fake_timer_queue& timers,
                                   steady_time_point target, std::size_t max_fires = 100000) {
    std::size_t fired = 0;
    ioc.restart();
    ioc.poll();
    for (;;) {
        const auto next = timers.next_deadline();
        if (!next || *next > target) break;
        if (*next > clock.steady_now()) clock.advance_to(*next);
        fired += timers.fire_due(clock.steady_now());
        if (fired > max_fires) throw runaway_step_error("run_async_until: the timers never became idle");
        ioc.restart();
        ioc.poll();
    }
    if (target > clock.steady_now()) clock.advance_to(target);
    ioc.restart();
    ioc.poll();
    return fired;
}

/// `run_async_until(clock, ioc, timers, clock.steady_now() + d)`.
template <class Rep, class Period>
std::size_t run_async_for(fake_clock& clock, boost::asio::io_context& ioc, fake_timer_queue& timers,
                          std::chrono::duration<Rep, Period> d, std::size_t max_fires = 100000) {
    return run_async_until(clock, ioc, timers,
                           clock.steady_now() + std::chrono::duration_cast<steady_time_point::duration>(d), max_fires);
}

} // namespace testing
} // namespace sekuire

#endif
