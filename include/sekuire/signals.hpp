// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_SIGNALS_HPP
#define SEKUIRE_SIGNALS_HPP

/// @file
/// `signal_watcher`: runs a callback on an ordinary thread when SIGINT or SIGTERM (or other
/// signals) arrive, so that a program can shut an SDK, a beacon or a worker down gracefully
/// on Ctrl-C or `kill`, without the rules of signal handlers. POSIX only.
///
/// ```cpp
/// int main() {
///     std::atomic<sekuire::sdk*> running{nullptr};
///     sekuire::signal_watcher signals([&](int) { if (auto* s = running.load()) s->request_shutdown(); });
///     auto sdk = sekuire::sdk::from_env();   // threads start after the watcher: the signals stay blocked in them
///     ...
///     sdk.wait();
///     signals.stop();                        // before what the callback uses goes away
/// }
/// ```

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

namespace sekuire {

/** Takes the given signals (SIGINT and SIGTERM by default) on a thread of its own and runs
    `on_signal(signal_number)` there for each one, until `stop()`.

    The constructor blocks the signals in the calling thread, and so in every thread it
    starts afterwards: create the watcher first in `main()`, before any other thread starts.
    A thread started earlier that does not block them could take a signal instead, with its
    default action (the process ends). The callback runs on an ordinary thread, so it may
    lock, allocate and call into sekuire; it must not destroy the watcher. After `stop()` the
    signals stay blocked in the calling thread: a later one stays pending instead of ending
    the process.

    @par Thread Safety
    `stop()` may be called from any thread but the callback's, also concurrently; the
    destructor calls it.

    @throws std::system_error from the constructor when the thread cannot be started (the
    signals are then unblocked again).
*/
class signal_watcher {
public:
    /// Starts watching `signals` (SIGINT and SIGTERM by default).
    explicit signal_watcher(std::function<void(int)> on_signal, std::initializer_list<int> signals = {SIGINT, SIGTERM})
        : on_signal_(std::move(on_signal)) {
        sigemptyset(&set_);
        for (const int s : signals) {
            if (first_ == 0) first_ = s;
            sigaddset(&set_, s);
        }
        ::pthread_sigmask(SIG_BLOCK, &set_, &previous_);
        try {
            thread_ = std::thread([this] { run(); });
        } catch (...) {
            ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
            throw;
        }
    }
    signal_watcher(const signal_watcher&) = delete;
    signal_watcher& operator=(const signal_watcher&) = delete;

    /// Stops watching (see `stop()`).
    ~signal_watcher() { stop(); }

    /** Stops watching and joins the watcher's thread: once it returns, the callback is not
        running and never runs again. Call it before what the callback uses goes away. */
    void stop() noexcept {
        std::lock_guard<std::mutex> lock(join_mutex_);
        done_ = true;
        if (!thread_.joinable()) return;
        // Wakes sigwait() with a signal directed at the watcher's thread only.
        if (first_ != 0) ::pthread_kill(thread_.native_handle(), first_);
        thread_.join();
    }

    /// The number of signals taken so far (each one ran the callback).
    unsigned received() const noexcept { return received_.load(); }

    /// The last signal taken, or 0.
    int last_signal() const noexcept { return last_.load(); }

private:
    void run() {
        if (first_ == 0) return;
        for (;;) {
            int sig = 0;
            if (::sigwait(&set_, &sig) != 0) continue;
            if (done_.load()) return;
            last_ = sig;
            ++received_;
            try {
                if (on_signal_) on_signal_(sig);
            } catch (...) {
                // A callback's exception must not end the process from this thread.
            }
        }
    }

    std::function<void(int)> on_signal_;
    sigset_t set_{};
    sigset_t previous_{};
    int first_ = 0;
    std::atomic<bool> done_{false};
    std::atomic<unsigned> received_{0};
    std::atomic<int> last_{0};
    std::mutex join_mutex_;
    std::thread thread_;
};

} // namespace sekuire

#endif
