// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TESTING_FAKE_CLOCK_HPP
#define SEKUIRE_TESTING_FAKE_CLOCK_HPP

/// @file
/// A Clock that moves only when a test tells it to.

#include <sekuire/clock.hpp>
#include <sekuire/time.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

namespace sekuire {
namespace testing {

/** A Clock for deterministic tests: a cheap handle to shared state, so the test and the
    code under test hold copies of one clock.

    - It starts at a fixed date (`default_start`, 2026-01-01T00:00:00Z) and steady time
      zero, and moves only when told: `advance()` moves wall and steady time together;
      `set_wall()` / `jump_wall()` move wall time alone, backwards too (clock skew, NTP
      corrections); steady time never goes back.
    - `wait_until()` blocks a thread in fake time. `advance()` wakes the waiters whose
      deadlines it passes, in deadline order (first come first on equal deadlines), and
      removes them from the waiter list before it returns, so that
      `block_until_waiters(n)` afterwards returns only once the woken threads are asleep
      again (as in clockwork's `BlockUntil`).

    Code that is driven by a step function needs no threads at all: see `run_until()` and
    `run_for()`.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class fake_clock {
public:
    /// The wall time a fake clock starts at: 2026-01-01T00:00:00Z.
    static wall_time_point default_start() {
        return wall_time_point(std::chrono::seconds(1767225600));
    }

    /// A clock at `default_start()` and steady time zero.
    fake_clock() : fake_clock(default_start()) {}

    /// A clock at `wall` and steady time zero.
    explicit fake_clock(wall_time_point wall) : state_(std::make_shared<state>()) { state_->wall = wall; }

    /// Wall time now.
    wall_time_point wall_now() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->wall;
    }

    /// Steady time now.
    steady_time_point steady_now() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->steady;
    }

    /// Moves wall and steady time forward by `d` (negative durations are refused), waking
    /// every waiter whose deadline is passed, in deadline order.
    template <class Rep, class Period>
    void advance(std::chrono::duration<Rep, Period> d) {
        if (d < std::chrono::duration<Rep, Period>::zero()) throw std::invalid_argument("fake_clock: negative advance");
        steady_time_point target;
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            target = state_->steady + std::chrono::duration_cast<steady_time_point::duration>(d);
        }
        advance_to(target);
    }

    /// Moves steady time to `target` (no-op when it is not later), wall time with it.
    void advance_to(steady_time_point target) {
        std::unique_lock<std::mutex> lock(state_->mutex);
        for (;;) {
            auto due = state_->waiters.end();
            for (auto it = state_->waiters.begin(); it != state_->waiters.end(); ++it) {
                if ((*it)->deadline > target) continue;
                if (due == state_->waiters.end() || (*it)->deadline < (*due)->deadline ||
                    ((*it)->deadline == (*due)->deadline && (*it)->order < (*due)->order))
                    due = it;
            }
            if (due == state_->waiters.end()) break;
            waiter* w = *due;
            state_->waiters.erase(due);
            move_to(w->deadline);
            w->fired = true;
            std::mutex* user_mutex = w->user_mutex;
            std::condition_variable* cv = w->cv;
            lock.unlock();
            // Taking the waiter's mutex orders this wake-up after its check of `fired`.
            { std::lock_guard<std::mutex> user(*user_mutex); }
            cv->notify_all();
            lock.lock();
        }
        move_to(target);
        state_->changed.notify_all();
    }

    /// Sets wall time (backwards too); steady time and waiters are not affected.
    void set_wall(wall_time_point t) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->wall = t;
    }

    /// Moves wall time alone by `d`, which may be negative.
    template <class Rep, class Period>
    void jump_wall(std::chrono::duration<Rep, Period> d) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->wall += std::chrono::duration_cast<wall_time_point::duration>(d);
    }

    /// See the Clock requirements. Blocks in fake time.
    template <class Pred>
    bool wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, steady_time_point deadline,
                    Pred pred) const {
        if (pred()) return true;
        waiter w;
        w.deadline = deadline;
        w.cv = &cv;
        w.user_mutex = lock.mutex();
        {
            std::lock_guard<std::mutex> g(state_->mutex);
            if (state_->steady >= deadline) return pred();
            w.order = state_->next_order++;
            state_->waiters.push_back(&w);
            state_->changed.notify_all();
        }
        for (;;) {
            if (pred()) break;
            {
                std::lock_guard<std::mutex> g(state_->mutex);
                if (w.fired) break;
            }
            cv.wait(lock);
        }
        {
            std::lock_guard<std::mutex> g(state_->mutex);
            state_->waiters.remove(&w);
            state_->changed.notify_all();
        }
        return pred();
    }

    /// The number of threads blocked in `wait_until()`.
    std::size_t waiter_count() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->waiters.size();
    }

    /// The earliest deadline a thread waits for, or `steady_time_point::max()`.
    steady_time_point next_deadline() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        steady_time_point best = steady_time_point::max();
        for (const waiter* w : state_->waiters) best = std::min(best, w->deadline);
        return best;
    }

    /** Blocks the calling (test) thread until at least `n` threads wait on this clock, or
        until `real_timeout` of real time has passed; returns whether `n` was reached.
        The timeout only guards against a hung test.
    */
    template <class Rep, class Period>
    bool block_until_waiters(std::size_t n, std::chrono::duration<Rep, Period> real_timeout) const {
        std::unique_lock<std::mutex> lock(state_->mutex);
        return state_->changed.wait_for(lock, real_timeout, [&] { return state_->waiters.size() >= n; });
    }

    /// `block_until_waiters(n, 10s)`.
    bool block_until_waiters(std::size_t n) const { return block_until_waiters(n, std::chrono::seconds(10)); }

private:
    struct waiter {
        steady_time_point deadline{};
        std::uint64_t order = 0;
        std::condition_variable* cv = nullptr;
        std::mutex* user_mutex = nullptr;
        bool fired = false;
    };
    struct state {
        std::mutex mutex;
        std::condition_variable changed;
        wall_time_point wall{};
        steady_time_point steady{};
        std::uint64_t next_order = 0;
        std::list<waiter*> waiters;
    };

    // Requires state_->mutex.
    void move_to(steady_time_point t) {
        if (t <= state_->steady) return;
        state_->wall += std::chrono::duration_cast<wall_time_point::duration>(t - state_->steady);
        state_->steady = t;
    }

    std::shared_ptr<state> state_;
};

/// Thrown by `run_until()` when a step function keeps asking to run again without time
/// moving: the code under test is in a busy loop (a "heartbeat storm").
class runaway_step_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/** Drives a step function in fake time until steady time reaches `target`.

    `step` does what is due at the clock's current time and returns its next deadline
    (like `basic_beacon::step()`). The clock is moved to each deadline in turn and `step`
    called again; time never moves past `target`, and the clock ends exactly at `target`.
    Returns the number of calls of `step`. Throws `runaway_step_error` when more than
    `max_steps` calls are needed: with a fake transport nothing takes time, so a step
    function that keeps asking to run again at once is a bug worth failing a test for.
*/
template <class Step>
std::size_t run_until(fake_clock& clock, steady_time_point target, Step&& step, std::size_t max_steps = 100000) {
    std::size_t calls = 0;
    for (;;) {
        if (calls == max_steps) throw runaway_step_error("run_until: the step function never became idle");
        const steady_time_point next = step();
        ++calls;
        if (next > target) break;
        clock.advance_to(next);
    }
    clock.advance_to(target);
    return calls;
}

/// `run_until(clock, clock.steady_now() + d, step)`.
template <class Rep, class Period, class Step>
std::size_t run_for(fake_clock& clock, std::chrono::duration<Rep, Period> d, Step&& step,
                    std::size_t max_steps = 100000) {
    return run_until(clock, clock.steady_now() + std::chrono::duration_cast<steady_time_point::duration>(d),
                     std::forward<Step>(step), max_steps);
}

} // namespace testing
} // namespace sekuire

#endif
