// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_EXECUTOR_HPP
#define SEKUIRE_EXECUTOR_HPP

/// @file
/// The Executor policy of `basic_worker`: where task handlers run.
///
/// @par Requirements
/// A type `E` is an Executor when, for `e` an lvalue of `E` and `f` a
/// `std::function<void()>`:
///
/// | expression   | type   | semantics |
/// |--------------|--------|-----------|
/// | `E(e)`       |        | copyable; copies share one pool |
/// | `e.post(f)`  | `void` | runs `f` once, now or later, on any thread; `f` never throws |
///
/// The worker bounds how many handlers run at once itself (`max_concurrent_handlers`), so
/// an executor needs no queue limit. `thread_pool_executor` is the default;
/// `inline_executor` runs handlers in the posting thread, for deterministic tests.

#include <sekuire/config.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace sekuire {

/** Runs each function at once, in the thread that posts it. For deterministic tests.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class inline_executor {
public:
    /// Runs `f` now.
    void post(std::function<void()> f) const { f(); }
};

/** A fixed pool of threads, started on first use and joined when the last copy is
    destroyed (after the functions already posted have run).

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class thread_pool_executor {
public:
    /// A pool of `threads` threads (0: the hardware concurrency, at least 4: handlers often
    /// wait on I/O).
    explicit thread_pool_executor(std::size_t threads = 0) : pool_(std::make_shared<pool>()) {
        if (threads == 0) threads = std::max<std::size_t>(4, std::thread::hardware_concurrency());
        pool_->size = threads;
    }

    /// Queues `f` to run on one of the pool's threads.
    void post(std::function<void()> f) const {
        {
            std::lock_guard<std::mutex> lock(pool_->queue->mutex);
            pool_->start_locked();
            pool_->queue->functions.push_back(std::move(f));
        }
        // After the unlock: a thread woken while the mutex is held would wake only to wait
        // for it (one more context switch per task).
        pool_->queue->cv.notify_one();
    }

    /// The number of threads.
    std::size_t size() const noexcept { return pool_->size; }

private:
    // The threads share the queue, not the pool: the pool can be destroyed on any thread,
    // one of its own included.
    struct queue_state {
        std::mutex mutex;
        std::condition_variable cv;
        std::deque<std::function<void()>> functions;
        bool stopping = false;
    };

    static void run(const std::shared_ptr<queue_state>& q) {
        for (;;) {
            std::function<void()> f;
            {
                std::unique_lock<std::mutex> lock(q->mutex);
                q->cv.wait(lock, [&] { return q->stopping || !q->functions.empty(); });
                if (q->functions.empty()) return;
                f = std::move(q->functions.front());
                q->functions.pop_front();
            }
            try {
                f();
            } catch (...) {
                // Posted functions must not throw; one that does must not take the pool down.
            }
        }
    }

    struct pool {
        std::shared_ptr<queue_state> queue = std::make_shared<queue_state>();
        std::vector<std::thread> threads;
        std::size_t size = 2;

        // Requires queue->mutex.
        void start_locked() {
            if (!threads.empty()) return;
            threads.reserve(size);
            for (std::size_t i = 0; i < size; ++i) threads.emplace_back([q = queue] { run(q); });
        }

        ~pool() {
            {
                std::lock_guard<std::mutex> lock(queue->mutex);
                queue->stopping = true;
            }
            queue->cv.notify_all();
            for (auto& t : threads) {
                if (!t.joinable()) continue;
                if (t.get_id() == std::this_thread::get_id())
                    t.detach(); // it finishes the queue on its own, holding the queue alive
                else
                    t.join();
            }
        }
    };
    std::shared_ptr<pool> pool_;
};

namespace detail {
template <class T, class = void>
struct executor_has_post : std::false_type {};
template <class T>
struct executor_has_post<T, std::void_t<decltype(std::declval<T&>().post(std::declval<std::function<void()>>()))>>
    : std::true_type {};
} // namespace detail

/// True when `T` meets the Executor requirements.
template <class T>
struct is_executor : std::bool_constant<std::is_copy_constructible<T>::value && detail::executor_has_post<T>::value> {};

/// Instantiating this names every Executor requirement that `T` misses.
template <class T>
struct check_executor {
    static_assert(std::is_copy_constructible<T>::value, "Executor requirements not met: T must be copy constructible");
    static_assert(detail::executor_has_post<T>::value,
                  "Executor requirements not met: missing `void post(std::function<void()>)`");
    /// Always true: naming it instantiates the checks above.
    static constexpr bool value = true;
};

#if SEKUIRE_HAS_CONCEPTS
/// The Executor requirements as a C++20 concept. The macro below names it in a template head of
/// your own (`template <SEKUIRE_... T>`), and is plain `class` before C++20.
template <class T>
concept executor_policy = is_executor<T>::value;
/// Names `executor_policy` in a template head of your own:
/// `template <SEKUIRE_EXECUTOR T>`. Plain `class` before C++20.
#define SEKUIRE_EXECUTOR ::sekuire::executor_policy
#else
#define SEKUIRE_EXECUTOR class
#endif

} // namespace sekuire

#endif
