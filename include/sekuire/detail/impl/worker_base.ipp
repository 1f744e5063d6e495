// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_IMPL_WORKER_BASE_IPP
#define SEKUIRE_DETAIL_IMPL_WORKER_BASE_IPP

// The bodies of detail::worker_base: included by worker_base.hpp (header-only) or compiled
// once by <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/detail/store_effects.hpp>
#include <sekuire/detail/worker_base.hpp>

#include <exception>
#include <utility>

namespace sekuire {
namespace detail {

worker_base::worker_base(worker_options options) : core_(std::move(options)) {}

void worker_base::on_task(std::string capability, task_handler handler) {
    std::lock_guard<std::mutex> lock(mutex_);
    core_.add_capability(capability);
    handlers_[std::move(capability)] = std::move(handler);
}

void worker_base::on_command(command_handler handler) {
    std::lock_guard<std::mutex> lock(mutex_);
    command_handler_ = std::move(handler);
}

void worker_base::start(error_code& ec) {
    ec = {};
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (core_.finished()) { // stopped before it was started (its SDK shut down, say)
            ec = errc::shutting_down;
            return;
        }
        if (started_) {
            ec = errc::already_started;
            return;
        }
        started_ = true;
        threaded_ = true;
        control_thread_ = std::thread([this] { loop(true); });
    }
    std::unique_lock<std::mutex> lock(mutex_);
    start_cv_.wait_for(lock, options().start_timeout, [&] { return first_step_done_ || core_.finished(); });
    // A stop() meanwhile (from another thread: an SDK shutting down) found no stream
    // thread to end: none is started.
    if (!quit_) stream_thread_ = std::thread([this] { loop(false); });
}

void worker_base::stop() noexcept {
    try {
        if (in_own_context()) {
            // From a callback or a handler of this worker: waiting here would wait for
            // the very thread (or handler) that asked. Start the drain and return;
            // `wait()`, a later `stop()` from elsewhere, or the destructor ends it.
            begin_shutdown(options().drain_timeout, "stopping");
            return;
        }
        {
            std::unique_lock<std::mutex> lock(mutex_);
            if (!threaded_ && !first_step_done_ && !core_.finished()) {
                // Never started nor stepped: nothing to drain, nothing to tell anyone.
                core_.force_finish(read_now(), false);
                pump(lock);
                release(lock);
                return;
            }
        }
        begin_shutdown(options().drain_timeout, "stopping");
        std::thread control, stream;
        bool threaded = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            threaded = threaded_;
            control.swap(control_thread_);
        }
        if (threaded) {
            if (control.joinable()) control.join();
            {
                std::lock_guard<std::mutex> lock(mutex_);
                quit();
                stream.swap(stream_thread_);
            }
            if (stream.joinable()) stream.join();
        } else {
            for (int i = 0; i < 64 && !finished(); ++i) {
                const steady_time_point next = step();
                if (next > steady_now()) break;
            }
            std::unique_lock<std::mutex> lock(mutex_);
            if (!core_.finished()) {
                core_.force_finish(read_now());
                pump(lock);
            }
            release(lock);
        }
    } catch (...) {
    }
}

void worker_base::wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    finished_cv_.wait(lock, [&] { return core_.finished(); });
}

bool worker_base::is_paused() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return core_.paused();
}

void worker_base::set_paused(bool paused) {
    feed([&] { core_.set_paused(paused); });
}

worker_status worker_base::get_status() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return core_.status(started_);
}

protocol::heartbeat_metrics worker_base::metrics() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return core_.metrics();
}

bool worker_base::in_own_context() const noexcept { return scope::inside(this); }

void worker_base::apply_command(const protocol::command& cmd) {
    feed([&] { core_.apply_command(cmd, read_now()); });
}

void worker_base::apply_revocation(const protocol::revocation& r) {
    feed([&] { core_.apply_revocation(r, read_now()); });
}

void worker_base::apply_policy_hash(const std::string& hash) {
    feed([&] { core_.apply_policy_hash(hash); });
}

void worker_base::begin_shutdown(std::chrono::milliseconds timeout, const std::string& why) {
    feed([&] { core_.begin_shutdown(timeout, why, read_now()); });
}

steady_time_point worker_base::step() noexcept {
    const scope active(this);
    try {
        std::unique_lock<std::mutex> lock(mutex_);
        catch_up();
        see_store();
        core_.advance(read_now());
        pump(lock);
        if (!first_step_done_ && core_.first_step_done()) {
            first_step_done_ = true;
            start_cv_.notify_all();
        }
        const steady_time_point next = core_.next_wake();
        release(lock);
        return next;
    } catch (const std::exception& e) {
        deliver_log(options().logger, log_level::error, std::string("internal error: ") + e.what());
    } catch (...) {
    }
    return steady_now() + std::chrono::seconds(1);
}

steady_time_point worker_base::stream_step() noexcept {
    const scope active(this);
    try {
        return stream_once();
    } catch (const std::exception& e) {
        deliver_log(options().logger, log_level::error, std::string("internal error: ") + e.what());
    } catch (...) {
    }
    return steady_now() + std::chrono::seconds(1);
}

// ---- threads -----------------------------------------------------------------------------

void worker_base::loop(bool control) noexcept {
    wake_loop& l = control ? control_loop_ : stream_loop_;
    for (;;) {
        const steady_time_point next = control ? step() : stream_step();
        if (control && finished()) break;
        if (!wait_loop(l, next)) break;
    }
}

// mutex_ held.
void worker_base::quit() {
    quit_ = true;
    control_loop_.request_stop();
    stream_loop_.request_stop();
}

bool worker_base::finished() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return core_.finished();
}

// ---- driving the core --------------------------------------------------------------------

// An input from any thread: fed under the mutex, its effects performed here.
template <class Input>
void worker_base::feed(Input&& input) {
    std::unique_lock<std::mutex> lock(mutex_);
    catch_up();
    input();
    pump(lock);
    release(lock);
}

// mutex_ held, before feeding anything that may run the core's control work (its stream
// idle watchdog): the time of stream bytes that were not fed (see stream_once()).
void worker_base::catch_up() {
    const steady_time_point::rep t = unfed_bytes_at_.exchange(none_, std::memory_order_relaxed);
    if (t != none_) core_.on_stream_bytes(stream_op_, steady_time_point(steady_time_point::duration(t)));
}

// Performs the core's effects until it asks for none: store operations and wake-ups at
// once; a request, or a stop token fired without the mutex (a handler or a stop callback
// may call back in). Handler runs wait in runs_ for the next release of the mutex (here
// before a request, else release()): posting one costs no extra lock. Notifications wait
// for flush().
void worker_base::pump(std::unique_lock<std::mutex>& lock) {
    std::vector<worker_effect> batch;
    for (int rounds = 0; rounds < 100000 && !core_.effects().empty(); ++rounds) {
        batch.clear();
        batch.swap(core_.effects());
        for (worker_effect& e : batch) {
            using t = worker_effect::type;
            const auto next = static_cast<std::size_t>(&e - batch.data()) + 1;
            if (is_store_effect(e)) {
                store_effect(e);
                continue;
            }
            switch (e.what) {
            case t::send: {
                if (!core_.wants(e.op)) break; // moot since it was asked for
                mark_given_up(batch, next);
                std::vector<pending_run> runs;
                runs.swap(runs_);
                lock.unlock();
                if (!runs.empty()) {
                    post_runs(runs);
                    if (!runs.empty()) {
                        lock.lock();
                        refused_runs(runs);
                        lock.unlock();
                    }
                }
                flush();
                error_code ec;
                http_response res = send_request(e.request, ec);
                lock.lock();
                catch_up();
                core_.on_response(e.op, ec, std::move(res), read_now());
                break;
            }
            case t::run_handler: run_handler(std::move(e)); break;
            case t::cancel_handler: {
                auto it = handler_stops_.find(e.text);
                if (it == handler_stops_.end()) break;
                std::shared_ptr<handler_run> r = it->second;
                r->given_up.store(true, std::memory_order_release);
                mark_given_up(batch, next);
                lock.unlock();
                r->stop.request_stop();
                lock.lock();
                break;
            }
            case t::close_stream: {
                std::shared_ptr<stop_source> s = e.op == stream_op_ ? stream_stop_ : nullptr;
                if (!s) break;
                mark_given_up(batch, next);
                lock.unlock();
                s->request_stop();
                lock.lock();
                break;
            }
            case t::wake_control: control_loop_.wake(); break;
            case t::wake_stream: stream_loop_.wake(); break;
            case t::finished:
                quit();
                finished_cv_.notify_all();
                notifications_.push_back(std::move(e));
                notified_.store(true, std::memory_order_relaxed);
                break;
            default:
                notifications_.push_back(std::move(e));
                notified_.store(true, std::memory_order_relaxed);
                break;
            }
        }
    }
}

// mutex_ held, before pump() lets it go with effects not yet performed: a run whose task the
// core gave up (its cancel_handler still waiting) must not start meanwhile, as it would not
// have had it asked the core.
void worker_base::mark_given_up(const std::vector<worker_effect>& batch, std::size_t from) {
    const auto mark = [this](const worker_effect& e) {
        if (e.what != worker_effect::type::cancel_handler) return;
        auto it = handler_stops_.find(e.text);
        if (it != handler_stops_.end()) it->second->given_up.store(true, std::memory_order_release);
    };
    for (std::size_t i = from; i < batch.size(); ++i) mark(batch[i]);
    for (const worker_effect& e : core_.effects()) mark(e);
}

// Releases the mutex (held, after pump()), posts the handler runs asked for meanwhile, and
// calls the user's callbacks. A run the executor refuses goes back to the core, under the
// mutex again.
void worker_base::release(std::unique_lock<std::mutex>& lock) {
    for (int rounds = 0; rounds < 64 && !runs_.empty(); ++rounds) {
        std::vector<pending_run> runs;
        runs.swap(runs_);
        lock.unlock();
        post_runs(runs);
        if (runs.empty()) break;
        lock.lock();
        refused_runs(runs);
        pump(lock);
    }
    if (lock.owns_lock()) lock.unlock();
    flush();
}

// Hands tasks to the executor, without the mutex (an executor may run a handler in place).
// The gate keeps a run that starts after the worker is gone (an executor draining its queue
// late) away from it, and lets the worker wait for the runs under way. Leaves in `runs` those
// that the executor could not take (no thread could be started).
void worker_base::post_runs(std::vector<pending_run>& runs) {
    std::size_t refused = 0;
    for (pending_run& r : runs) {
        try {
            post_handler([this, gate = gate_, task = r.task, deadline = r.deadline, run = r.run,
                          handler = std::move(r.handler)]() mutable {
                if (!gate->enter()) return;
                run_task(std::move(*task), deadline, run, std::move(handler));
                gate->leave();
            });
        } catch (...) {
            if (&runs[refused] != &r) runs[refused] = std::move(r);
            ++refused;
        }
    }
    runs.resize(refused);
}

// mutex_ held: the refused tasks (and their inputs, of which the core keeps no copy) go back
// to the core.
void worker_base::refused_runs(std::vector<pending_run>& runs) {
    for (pending_run& r : runs) {
        handler_stops_.erase(r.task->task_id);
        core_.on_handler_refused(std::move(*r.task));
    }
    runs.clear();
}

// mutex_ held: a task to hand to the executor when the mutex is released.
void worker_base::run_handler(worker_effect e) {
    pending_run r;
    r.run = std::make_shared<handler_run>();
    handler_stops_[e.task.task_id] = r.run;
    if (auto h = handlers_.find(e.task.capability); h != handlers_.end()) r.handler = h->second;
    r.deadline = e.deadline;
    r.task = std::make_shared<protocol::task>(std::move(e.task));
    runs_.push_back(std::move(r));
}

void worker_base::run_task(protocol::task task, wall_time_point deadline, const std::shared_ptr<handler_run>& run,
                           task_handler handler) noexcept {
    const scope active(this);
    // Only a task the core gave up needs asking (it says no, and forgets it): the mutex is
    // not taken for the others. given_up is set under the mutex before it is let go with
    // the task given up (mark_given_up()).
    if (run->given_up.load(std::memory_order_acquire)) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!core_.handler_starting(task.task_id, read_now())) {
            handler_stops_.erase(task.task_id);
            return;
        }
    }
    handler_outcome out = detail::run_handler(handler, task, deadline, run->stop.get_token());
    task.input = nullptr; // freed before the result goes out, not after
    try {
        feed([&] {
            handler_stops_.erase(task.task_id);
            core_.on_handler_done(task.task_id, out.status, std::move(out.output), std::move(out.error), read_now());
        });
    } catch (...) {
        // Out of memory while reporting: the result stays unreported and is redelivered.
    }
}

steady_time_point worker_base::stream_once() {
    std::unique_lock<std::mutex> lock(mutex_);
    catch_up();
    see_store();
    worker_core::stream_decision d = core_.stream_connect(read_now());
    pump(lock);
    if (!d.request) {
        release(lock);
        return d.next;
    }
    const operation_id op = d.op;
    auto stop = std::make_shared<stop_source>();
    stream_stop_ = stop;
    stream_op_ = op;
    release(lock);
    stream_callbacks cb;
    cb.on_response = [&](const http_response& head) {
        decoder_.start(head.status);
        feed([&] { core_.on_stream_head(op, head.status, head.headers, read_now()); });
        return !stop->stop_requested();
    };
    // The SSE framing and the tasks' JSON are decoded here, without the mutex (which the
    // handlers' threads take for every task); the core gets them decoded. Bytes that
    // complete nothing (most of a large task's) do not take the mutex: their time goes to
    // the core's idle watchdog with the next call that takes it (catch_up()).
    cb.on_data = [&](std::string_view chunk) {
        chunk_.clear();
        decoder_.decode(chunk, chunk_);
        if (chunk_.events.empty() && chunk_.error_body.empty() && !chunk_.line_error && chunk_.retry == fed_retry_) {
            unfed_bytes_at_.store(steady_now().time_since_epoch().count(), std::memory_order_relaxed);
            return !stop->stop_requested();
        }
        fed_retry_ = chunk_.retry;
        bool go = false;
        feed([&] { go = core_.on_stream_chunk(op, chunk_, read_now()); });
        chunk_.clear(); // what the core did not take is freed without the mutex too
        return go && !stop->stop_requested();
    };
    error_code ec;
    // Whatever ends this connection (a callback or the executor throwing included), the
    // stream must be closed in the core, or a drain would wait for it for ever.
    struct end_guard {
        worker_base& w;
        operation_id op;
        error_code& ec;
        ~end_guard() {
            try {
                w.feed([&] {
                    w.core_.on_stream_end(op, ec, w.read_now());
                    w.stream_stop_.reset();
                });
            } catch (...) {
            }
        }
    };
    {
        end_guard guard{*this, op, ec};
        open_stream(*d.request, cb, stop->get_token(), ec);
    }
    std::lock_guard<std::mutex> relock(mutex_);
    return core_.stream_next();
}

// Calls the user's callbacks, without the mutex (a callback may call back in).
void worker_base::flush() {
    // Without the mutex when there is nothing (most calls): whoever queues a notification
    // flushes after it, so a stale false here loses nothing.
    if (!notified_.load(std::memory_order_relaxed)) return;
    std::vector<worker_effect> ready;
    command_handler own;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        notified_.store(false, std::memory_order_relaxed);
        if (notifications_.empty()) return;
        ready.swap(notifications_);
        own = command_handler_;
    }
    deliver(options(), own, ready);
}

} // namespace detail
} // namespace sekuire

#endif
