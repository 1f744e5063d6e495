// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_STOP_TOKEN_HPP
#define SEKUIRE_STOP_TOKEN_HPP

/// @file
/// A C++17 stop token: `stop_source` requests a stop, `stop_token` observes it, and
/// `stop_callback` runs a function when it happens. The semantics follow C++20's
/// `std::stop_token` (a callback registered after the stop runs at once, in the
/// registering thread; the callback's destructor waits for a callback that is running on
/// another thread).
///
/// Used for cancelling a streaming request from another thread, and as the stop token a
/// task handler receives (fired at the task's deadline or on shutdown).

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

namespace sekuire {

namespace detail {

struct stop_state {
    std::mutex mutex;
    std::condition_variable done;
    bool stopped = false;
    std::uint64_t next_id = 1;
    std::map<std::uint64_t, std::function<void()>> callbacks;
    std::uint64_t running_id = 0;
    std::thread::id running_thread;

    bool request_stop() {
        std::unique_lock<std::mutex> lock(mutex);
        if (stopped) return false;
        stopped = true;
        running_thread = std::this_thread::get_id();
        while (!callbacks.empty()) {
            auto it = callbacks.begin();
            running_id = it->first;
            std::function<void()> fn = std::move(it->second);
            callbacks.erase(it);
            lock.unlock();
            try {
                fn();
            } catch (...) {
                // A callback must not throw; swallowing keeps the other callbacks running.
            }
            lock.lock();
            running_id = 0;
            done.notify_all();
        }
        return true;
    }
};

} // namespace detail

class stop_source;

/** Observes whether a stop was requested on its `stop_source`.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe (all members are const).
*/
class stop_token {
public:
    /// A token that can never be stopped.
    stop_token() noexcept = default;

    /// True once `request_stop()` was called on the source.
    bool stop_requested() const noexcept {
        if (!state_) return false;
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->stopped;
    }

    /// True when a stop can still be requested (the token has a source).
    bool stop_possible() const noexcept { return state_ != nullptr; }

private:
    friend class stop_source;
    template <class F> friend class stop_callback;
    explicit stop_token(std::shared_ptr<detail::stop_state> s) noexcept : state_(std::move(s)) {}
    std::shared_ptr<detail::stop_state> state_;
};

/** The owner side of a stop token.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class stop_source {
public:
    stop_source() : state_(std::make_shared<detail::stop_state>()) {}

    /// A token observing this source.
    stop_token get_token() const noexcept { return stop_token(state_); }

    /// Requests a stop; runs the registered callbacks in this thread. Returns false if a
    /// stop had already been requested.
    bool request_stop() { return state_->request_stop(); }

    /// True once `request_stop()` was called.
    bool stop_requested() const noexcept {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->stopped;
    }

private:
    std::shared_ptr<detail::stop_state> state_;
};

/** Runs a function when a stop is requested on a token, for as long as it lives.

    @tparam F a callable `void()`; it must not throw.
    @par Thread Safety
    The destructor waits for the callback to finish when it runs on another thread.
*/
template <class F>
class stop_callback {
public:
    /// Registers `fn` to run when `token` is stopped; runs it at once, on this thread, when it is
    /// stopped already (nothing when `token` has no stop state).
    stop_callback(const stop_token& token, F fn) : state_(token.state_) {
        if (!state_) return;
        std::unique_lock<std::mutex> lock(state_->mutex);
        if (state_->stopped) {
            lock.unlock();
            fn();
            state_.reset();
            return;
        }
        id_ = state_->next_id++;
        state_->callbacks.emplace(id_, std::function<void()>(std::move(fn)));
    }

    stop_callback(const stop_callback&) = delete;
    stop_callback& operator=(const stop_callback&) = delete;

    ~stop_callback() {
        if (!state_) return;
        std::unique_lock<std::mutex> lock(state_->mutex);
        if (state_->callbacks.erase(id_) != 0) return;
        // Already taken by request_stop(): wait unless it runs in this very thread.
        if (state_->running_thread == std::this_thread::get_id()) return;
        state_->done.wait(lock, [&] { return state_->running_id != id_; });
    }

private:
    std::shared_ptr<detail::stop_state> state_;
    std::uint64_t id_ = 0;
};

template <class F>
/// Deduces `F` from the callable: `sekuire::stop_callback cb(token, [&] { ... });`.
stop_callback(const stop_token&, F) -> stop_callback<F>;

} // namespace sekuire

#endif
