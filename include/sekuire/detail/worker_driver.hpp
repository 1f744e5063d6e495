// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_WORKER_DRIVER_HPP
#define SEKUIRE_DETAIL_WORKER_DRIVER_HPP

// What every driver of a worker_core does the same way and without its policies: hand its
// notifications to the user's callbacks, run a task handler and turn what it threw into a
// result, count the handler runs under way, refuse a runtime token that names no
// installation.

#include <sekuire/core/worker_core.hpp>
#include <sekuire/detail/driver_support.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/worker_options.hpp>

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace sekuire {
namespace detail {

/// Calls the worker's callbacks for its notifications, in order: a command reaches `own`
/// (the worker's `on_command()`) and then the options' `on_command`.
inline void deliver(const worker_options& o, const command_handler& own, const std::vector<worker_effect>& ready) {
    for (const worker_effect& e : ready) {
        switch (e.what) {
        case worker_effect::type::log: deliver_log(o.logger, e.line); break;
        case worker_effect::type::command:
            invoke_callback(own, o.logger, "on_command", e.command);
            invoke_callback(o.on_command, o.logger, "on_command", e.command);
            break;
        case worker_effect::type::revoked: invoke_callback(o.on_revoked, o.logger, "on_revoked", e.revocation); break;
        default: break;
        }
    }
}

/// What a handler run came to.
struct handler_outcome {
    protocol::task_status status = protocol::task_status::completed;
    boost::json::value output;
    std::optional<protocol::completion_error> error;
};

/** Runs `handler` for `task` with its context (deadline, stop token), and turns what it
    threw into a failed result: a `task_failure` keeps its code, anything else is a
    `handler_error`. A missing handler fails with `no_handler`.
*/
inline handler_outcome run_handler(const task_handler& handler, const protocol::task& task, wall_time_point deadline,
                                   stop_token stop) noexcept {
    handler_outcome out;
    try {
        task_context ctx;
        ctx.task_id = task.task_id;
        ctx.capability = task.capability;
        ctx.workspace_id = task.workspace_id;
        ctx.trace_id = task.trace_id;
        ctx.requester_agent_id = task.requester_agent_id;
        ctx.parent_task_id = task.parent_task_id;
        ctx.workflow_id = task.workflow_id;
        ctx.deadline = deadline;
        ctx.stop = std::move(stop);
        if (!handler) throw task_failure(protocol::task_error::no_handler, "the handler was removed");
        out.output = handler(ctx, task.input);
    } catch (const task_failure& f) {
        out.status = protocol::task_status::failed;
        out.error = protocol::completion_error{f.code(), f.what()};
    } catch (const std::exception& ex) {
        out.status = protocol::task_status::failed;
        out.error = protocol::completion_error{protocol::task_error::handler_error, ex.what()};
    } catch (...) {
        out.status = protocol::task_status::failed;
        out.error = protocol::completion_error{protocol::task_error::handler_error, "the handler threw a non-standard exception"};
    }
    return out;
}

/** The refusal of a worker whose only credential is a runtime token (or a token provider)
    when nothing names its installation (docs/protocol.md): the task stream's path needs it.
    Empty when the worker can go on; `stored` is the store's content.
*/
inline std::string runtime_token_alone(const worker_options& o, const std::optional<installation_credentials>& stored) {
    if (o.runtime_token.empty() && !o.token_provider) return {};
    if (!o.installation_id.empty() || !o.refresh_token.empty() || !o.install_token.empty()) return {};
    if (stored && !stored->installation_id.empty()) return {};
    return std::string("worker: a runtime token") + (o.token_provider ? " (from token_provider)" : "") +
           " alone does not name the installation whose task stream to open; give installation_id "
           "(SEKUIRE_INSTALLATION_ID) with it, or a credential store that holds the installation (share the beacon's), "
           "or an install token";
}

/// Counts the handler runs under way; once closed, no run starts (a run the executor
/// starts after its worker is gone stays away from it).
class run_gate {
public:
    /// False once closed: the run must not start.
    bool enter() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (closed_) return false;
        ++inside_;
        return true;
    }
    void leave() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--inside_ == 0) idle_.notify_all();
    }
    /// Closes the gate and waits until no run is under way.
    void close_and_wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        closed_ = true;
        idle_.wait(lock, [&] { return inside_ == 0; });
    }

private:
    std::mutex mutex_;
    std::condition_variable idle_;
    std::size_t inside_ = 0;
    bool closed_ = false;
};

} // namespace detail
} // namespace sekuire

#endif
