// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_WORKER_BASE_HPP
#define SEKUIRE_DETAIL_WORKER_BASE_HPP

// The part of basic_worker that depends on none of its policies: the core and its mutex,
// the handler registry, the threads and their waits, the effects that need no policy, the
// callbacks. The template reaches its policies through the few virtual functions below, so
// that this code is compiled once per program (with SEKUIRE_SEPARATE_COMPILATION, in the
// file that includes <sekuire/src.hpp>; header-only, inline) instead of once per policy set.

#include <sekuire/config.hpp>
#include <sekuire/core/worker_core.hpp>
#include <sekuire/detail/driver_support.hpp>
#include <sekuire/detail/worker_driver.hpp>
#include <sekuire/error.hpp>
#include <sekuire/stop_token.hpp>
#include <sekuire/transport.hpp>
#include <sekuire/worker_options.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace sekuire {
namespace detail {

class worker_base {
public:
    worker_base(const worker_base&) = delete;
    worker_base& operator=(const worker_base&) = delete;
    virtual ~worker_base() = default;

protected:
    friend class sdk_base; // an SDK drives its workers through this class

    // From options already prepared (detail::prepare).
    SEKUIRE_DECL explicit worker_base(worker_options options);

    // basic_worker's public members that need no policy (documented there).
    SEKUIRE_DECL void on_task(std::string capability, task_handler handler);
    SEKUIRE_DECL void on_command(command_handler handler);
    SEKUIRE_DECL void start(error_code& ec);
    SEKUIRE_DECL void stop() noexcept;
    SEKUIRE_DECL void wait();
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> timeout) {
        std::unique_lock<std::mutex> lock(mutex_);
        return finished_cv_.wait_for(lock, timeout, [&] { return core_.finished(); });
    }
    SEKUIRE_DECL bool is_paused() const;
    SEKUIRE_DECL void set_paused(bool paused);
    SEKUIRE_DECL worker_status get_status() const;
    SEKUIRE_DECL protocol::heartbeat_metrics metrics() const;
    SEKUIRE_DECL bool in_own_context() const noexcept;
    SEKUIRE_DECL void apply_command(const protocol::command& cmd);
    SEKUIRE_DECL void apply_revocation(const protocol::revocation& r);
    SEKUIRE_DECL void apply_policy_hash(const std::string& hash);
    SEKUIRE_DECL void begin_shutdown(std::chrono::milliseconds timeout, const std::string& why);
    SEKUIRE_DECL steady_time_point step() noexcept;
    SEKUIRE_DECL steady_time_point stream_step() noexcept;
    const worker_options& options() const noexcept { return core_.options(); }
    policy_gateway& gateway() noexcept { return core_.gateway(); }
    // For the destructor of the template: handlers under way use the object (their stop
    // tokens have fired); wait for them, and keep a later run away.
    void close_gate() { gate_->close_and_wait(); }

    // ---- the policies, as the template reaches them -------------------------------------
    virtual clock_reading read_now() = 0;
    virtual steady_time_point steady_now() = 0;
    // Gives the core the store's contents when they may have changed (see_store()).
    virtual void see_store() = 0;
    // A store effect (is_store_effect()), performed and fed back to the core.
    virtual void store_effect(const worker_effect& e) = 0;
    virtual http_response send_request(const http_request& req, error_code& ec) = 0;
    virtual void open_stream(const http_request& req, stream_callbacks& cb, stop_token stop, error_code& ec) = 0;
    // Hands a handler run to the executor (may throw: no thread could be started).
    virtual void post_handler(std::function<void()> run) = 0;
    // Waits on the clock (wake_loop::wait()).
    virtual bool wait_loop(wake_loop& loop, steady_time_point next) = 0;

    // mutex_ held by the callers of see_store() and store_effect().
    worker_core core_;
    std::optional<std::uint64_t> store_version_; // of the contents the core last saw

private:
    using scope = inside_scope<worker_base>;

    SEKUIRE_DECL void loop(bool control) noexcept;
    SEKUIRE_DECL void quit();
    SEKUIRE_DECL bool finished() const;
    template <class Input>
    void feed(Input&& input);
    // A handler run: its stop token, and whether the core gave its task up (a cancel_handler
    // seen; set under the mutex, read without it). Until then the handler starts without
    // asking the core (handler_starting()), which could only say yes.
    struct handler_run {
        stop_source stop;
        std::atomic<bool> given_up{false};
    };
    // A handler run asked for, posted to the executor once the mutex is released.
    struct pending_run {
        std::shared_ptr<protocol::task> task;
        wall_time_point deadline{};
        std::shared_ptr<handler_run> run;
        task_handler handler;
    };

    SEKUIRE_DECL void catch_up();
    SEKUIRE_DECL void pump(std::unique_lock<std::mutex>& lock);
    SEKUIRE_DECL void mark_given_up(const std::vector<worker_effect>& batch, std::size_t from);
    SEKUIRE_DECL void release(std::unique_lock<std::mutex>& lock);
    SEKUIRE_DECL void post_runs(std::vector<pending_run>& runs);
    SEKUIRE_DECL void refused_runs(std::vector<pending_run>& runs);
    SEKUIRE_DECL void run_handler(worker_effect e);
    SEKUIRE_DECL void run_task(protocol::task task, wall_time_point deadline, const std::shared_ptr<handler_run>& run,
                               task_handler handler) noexcept;
    SEKUIRE_DECL steady_time_point stream_once();
    SEKUIRE_DECL void flush();

    mutable std::mutex mutex_; // everything here
    std::map<std::string, task_handler> handlers_;
    command_handler command_handler_;
    std::map<std::string, std::shared_ptr<handler_run>> handler_stops_;
    std::shared_ptr<stop_source> stream_stop_;
    operation_id stream_op_ = 0;
    std::vector<pending_run> runs_; // not yet posted (their refusals come back here)
    std::vector<worker_effect> notifications_;
    std::atomic<bool> notified_{false}; // notifications_ may be non-empty (set under mutex_)
    bool started_ = false;
    bool threaded_ = false;
    bool quit_ = false;
    bool first_step_done_ = false;
    std::condition_variable start_cv_, finished_cv_;
    wake_loop control_loop_, stream_loop_;
    std::thread control_thread_, stream_thread_;
    std::shared_ptr<run_gate> gate_ = std::make_shared<run_gate>();
    // Used by stream_step() only (one call at a time), without the mutex.
    worker_core::stream_decoder decoder_;
    worker_core::stream_chunk chunk_;
    std::optional<std::chrono::milliseconds> fed_retry_; // the retry: value the core has
    // When the stream's last bytes that completed nothing arrived (steady ticks; none_):
    // given to the core by whoever takes the mutex next (catch_up()), not worth taking it.
    static constexpr steady_time_point::rep none_ = std::numeric_limits<steady_time_point::rep>::min();
    std::atomic<steady_time_point::rep> unfed_bytes_at_{none_};
};

} // namespace detail
} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/detail/impl/worker_base.ipp>
#endif

#endif
