// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TESTING_MANUAL_EXECUTOR_HPP
#define SEKUIRE_TESTING_MANUAL_EXECUTOR_HPP

/// @file
/// An Executor that runs nothing until the test says so.

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace sekuire {
namespace testing {

/** An Executor that queues what is posted; the test runs it with `run_one()` or
    `run_all()`, on its own thread, when it wants. Lets a test hold a task "in flight"
    while it moves time (deadlines, drains) without any thread.

    A cheap handle: copies share one queue.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class manual_executor {
public:
    manual_executor() : state_(std::make_shared<state>()) {}

    /// Queues `f`.
    void post(std::function<void()> f) const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->queue.push_back(std::move(f));
    }

    /// Functions waiting to run.
    std::size_t pending() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->queue.size();
    }

    /// Runs the oldest waiting function; false when there was none.
    bool run_one() const {
        std::function<void()> f;
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            if (state_->queue.empty()) return false;
            f = std::move(state_->queue.front());
            state_->queue.pop_front();
        }
        f();
        return true;
    }

    /// Runs waiting functions (also those they post) until none is left, at most `limit`;
    /// returns how many ran.
    std::size_t run_all(std::size_t limit = 100000) const {
        std::size_t n = 0;
        while (n < limit && run_one()) ++n;
        return n;
    }

private:
    struct state {
        std::mutex mutex;
        std::deque<std::function<void()>> queue;
    };
    std::shared_ptr<state> state_;
};

} // namespace testing
} // namespace sekuire

#endif
