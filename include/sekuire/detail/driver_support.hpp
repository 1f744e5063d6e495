// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_DRIVER_SUPPORT_HPP
#define SEKUIRE_DETAIL_DRIVER_SUPPORT_HPP

// What the drivers of the cores (basic_beacon, basic_worker, basic_sdk, the asynchronous
// agents) do the same way and without their policies: hand lines to the logger, wait
// between steps, know whether a thread runs inside an object. The beacon's and the
// worker's own parts are in beacon_driver.hpp and worker_driver.hpp.

#include <sekuire/core/common.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/log.hpp>
#include <sekuire/time.hpp>

#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

namespace sekuire {
namespace detail {

/// Hands one line to the logger (a logger that throws is ignored).
inline void deliver_log(const log_handler& logger, log_level level, const std::string& message) noexcept {
    if (!logger) return;
    try {
        logger(level, message);
    } catch (...) {
    }
}

/// Hands a core's line to the logger with its context (a logger that throws is ignored).
inline void deliver_log(const log_handler& logger, const log_line& line) noexcept {
    if (!logger) return;
    try {
        log_record r;
        r.level = line.level;
        r.message = line.text;
        r.event = line.event ? line.event : "";
        r.installation_id = line.installation_id;
        r.task_id = line.task_id;
        r.capability = line.capability;
        r.trace_id = line.trace_id;
        logger(r);
    } catch (...) {
    }
}

/** Gives `core` the store's contents when they may have changed since it last saw them:
    a store with `version()` is loaded only when the version differs from `seen` (the
    version of the last successful load, which this updates); others at every call.
*/
template <class Store, class Core>
void see_store(Store& store, Core& core, std::optional<std::uint64_t>& seen) {
    const std::optional<std::uint64_t> v = store_version(store);
    if (v && seen && *v == *seen) return;
    error_code ec;
    std::optional<installation_credentials> c = store.load(ec);
    seen = ec ? std::nullopt : v;
    core.store_seen(std::move(c), ec);
}

/** The wait of a driver's background thread between its steps: until the next deadline on
    its Clock, a wake-up, or a stop request (which stays in force until `reset()`). Also
    tells a waiting `start()` that the first pass is done. Thread-safe.
*/
class wake_loop {
public:
    /// Clears the stop request, the wake-up and the first pass (before a thread starts).
    void reset() {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = wake_ = first_pass_ = false;
    }
    /// Asks the thread to end; its wait returns at once, now and later.
    void request_stop() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
    }
    bool stop_requested() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return stop_;
    }
    /// Ends the current (or the next) wait early.
    void wake() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            wake_ = true;
        }
        cv_.notify_all();
    }
    /// Waits until `next` on `clock`, a wake-up or a stop request; false when the thread is
    /// to end (a stop request, or a clock that throws: it cannot be waited on).
    template <class Clock>
    bool wait(Clock& clock, steady_time_point next) {
        std::unique_lock<std::mutex> lock(mutex_);
        if (stop_) return false;
        try {
            clock.wait_until(lock, cv_, next, [this] { return stop_ || wake_; });
        } catch (...) {
            return false;
        }
        wake_ = false;
        return !stop_;
    }
    /// Marks the first pass done and releases `wait_first_pass()`.
    void first_pass_done() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            first_pass_ = true;
        }
        started_.notify_all();
    }
    /// Waits (real time) at most `timeout` for `first_pass_done()`.
    template <class Rep, class Period>
    void wait_first_pass(std::chrono::duration<Rep, Period> timeout) {
        std::unique_lock<std::mutex> lock(mutex_);
        started_.wait_for(lock, timeout, [this] { return first_pass_; });
    }

private:
    mutable std::mutex mutex_;
    std::condition_variable cv_, started_;
    bool stop_ = false, wake_ = false, first_pass_ = false;
};

/// Marks the calling thread as running inside `owner` (a callback, a handler, a step) for
/// its lifetime; nested scopes restore the outer one. Where waiting for `owner` to stop
/// would wait for itself, `inside(owner)` says so. Each `Kind` (worker, SDK) has a slot of
/// its own, so that a worker's scope inside an SDK's (or the reverse) hides neither.
template <class Kind>
class inside_scope {
public:
    explicit inside_scope(const void* owner) noexcept : outer_(current()) { current() = owner; }
    ~inside_scope() { current() = outer_; }
    inside_scope(const inside_scope&) = delete;
    inside_scope& operator=(const inside_scope&) = delete;
    /// Whether the calling thread runs inside `owner`.
    static bool inside(const void* owner) noexcept { return owner != nullptr && current() == owner; }

private:
    static const void*& current() noexcept {
        static thread_local const void* owner = nullptr;
        return owner;
    }
    const void* outer_;
};

} // namespace detail
} // namespace sekuire

#endif
