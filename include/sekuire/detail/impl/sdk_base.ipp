// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_IMPL_SDK_BASE_IPP
#define SEKUIRE_DETAIL_IMPL_SDK_BASE_IPP

// The bodies of detail::sdk_base: included by sdk_base.hpp (header-only) or compiled once
// by <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/detail/sdk_base.hpp>

#include <optional>
#include <thread>
#include <utility>

namespace sekuire {
namespace detail {

// Every callback the SDK hands to its parts marks its thread as inside the SDK (see
// basic_sdk::shutdown()).
beacon_options sdk_base::wire_beacon() {
    sdk_base* st = this;
    beacon_options bo = options;
    bo.on_command = [st](const protocol::command& c) {
        const scope in(st);
        st->on_command(c, nullptr);
    };
    bo.on_revoked = [st](const revocation_info& r) {
        const scope in(st);
        st->on_revoked(r, nullptr);
    };
    bo.on_policy_hash = [st](const std::string& h) {
        const scope in(st);
        st->for_each_worker([&](worker_base& w) { w.apply_policy_hash(h); });
        invoke_callback(st->options.on_policy_hash, st->options.logger, "on_policy_hash", h);
    };
    if (options.on_status_change)
        bo.on_status_change = [st](const beacon_status& s) {
            const scope in(st);
            st->options.on_status_change(s);
        };
    if (options.metrics)
        bo.metrics = [st] {
            const scope in(st);
            return st->options.metrics();
        };
    else
        bo.metrics = [st] {
            const scope in(st);
            return st->worker_metrics();
        };
    return bo;
}

worker_options sdk_base::wire_worker(worker_options wo, const std::shared_ptr<worker_base*>& self) {
    sdk_base* st = this;
    wo = sdk_worker_options(options, std::move(wo));
    wo.gateway = gateway;
    wo.on_command = [st, self, user = std::move(wo.on_command)](const protocol::command& c) {
        const scope in(st);
        invoke_callback(user, st->options.logger, "on_command", c);
        st->on_command(c, *self);
    };
    wo.on_revoked = [st, self, user = std::move(wo.on_revoked)](const revocation_info& r) {
        const scope in(st);
        invoke_callback(user, st->options.logger, "on_revoked", r);
        st->on_revoked(r, *self);
    };
    return wo;
}

void sdk_base::adopt_worker(std::unique_ptr<worker_base> w) {
    worker_base* wp = w.get();
    // Registered and the state read in one step: whatever happens after it reaches this
    // worker through the wiring; what happened before is applied here.
    bool was_paused = false, was_requested = false, was_closed = false;
    std::uint64_t generation = 0;
    std::optional<protocol::revocation> revoked;
    {
        std::lock_guard<std::mutex> lock(mutex);
        workers.push_back(std::move(w));
        was_paused = paused;
        generation = pause_generation;
        revoked = revocation;
        was_requested = requested;
        was_closed = closed;
    }
    // A pause or resume arriving meanwhile may reach the worker before or after this:
    // apply again until the state read is the latest (commands are rare: a few rounds).
    for (int round = 0; round < 16; ++round) {
        wp->set_paused(was_paused);
        std::lock_guard<std::mutex> lock(mutex);
        if (pause_generation == generation) break;
        was_paused = paused;
        generation = pause_generation;
    }
    if (revoked) wp->apply_revocation(*revoked);
    if (was_closed) {
        wp->stop(); // never started: stops at once, with no network call
    } else if (was_requested) {
        wp->begin_shutdown(wp->options().drain_timeout, "the SDK is shutting down");
    }
}

void sdk_base::start_supervisor() {
    std::lock_guard<std::mutex> lock(mutex);
    if (!supervisor.joinable() && !done) supervisor = std::thread([this] { supervise(); });
}

void sdk_base::shutdown() noexcept {
    try {
        request("shutting down");
        if (called_from_inside()) return;
        std::lock_guard<std::mutex> once(shutdown_mutex);
        std::thread s;
        {
            std::lock_guard<std::mutex> lock(mutex);
            s = std::move(supervisor);
        }
        if (s.joinable()) s.join();
        shut_down(); // returns at once when the supervisor has done it
    } catch (...) {
    }
}

// After a normal shutdown everything here has stopped already. Otherwise the parts go in an
// order where none can reach a part already gone: the supervisor, then the workers (they
// call into the beacon), then (in the template's state) the beacon, whose final heartbeat
// reads the workers' metrics, by then none.
void sdk_base::release_workers() noexcept {
    try {
        if (supervisor.joinable()) supervisor.join();
    } catch (...) {
    }
    std::vector<std::unique_ptr<worker_base>> ws;
    {
        std::lock_guard<std::mutex> lock(mutex);
        ws.swap(workers);
    }
    ws.clear();
}

// True on a thread that the shutdown may wait for: an SDK callback, the supervisor, or a
// worker's step, callback or handler.
bool sdk_base::called_from_inside() const {
    if (scope::inside(this)) return true;
    std::lock_guard<std::mutex> lock(mutex);
    for (const auto& w : workers)
        if (w->in_own_context()) return true;
    return false;
}

// A command seen by `from` (a worker) or by the beacon (null) reaches every part; each part
// runs a command id once.
void sdk_base::on_command(const protocol::command& c, worker_base* from) {
    record_command(c); // before it is passed on, for workers created later
    if (from) beacon_apply_command(c);
    for_each_worker([&](worker_base& w) {
        if (&w != from) w.apply_command(c);
    });
    if (!from) invoke_callback(options.on_command, options.logger, "on_command", c);
    if (c.type == protocol::command_type::terminate) request("terminate command");
}

void sdk_base::on_revoked(const revocation_info& r, worker_base* from) {
    const protocol::revocation rv{r.reason, r.shutdown_timeout.count()};
    // The parts tell each other; the SDK acts (and calls back) once. Recorded before it is
    // passed on, for workers created later.
    if (!record_revocation(rv)) return;
    if (from) beacon_apply_revocation(rv);
    for_each_worker([&](worker_base& w) {
        if (&w != from) w.apply_revocation(rv);
    });
    invoke_callback(options.on_revoked, options.logger, "on_revoked", r);
    request("installation revoked");
}

protocol::heartbeat_metrics sdk_base::worker_metrics() {
    protocol::heartbeat_metrics total;
    std::int64_t weighted = 0;
    for_each_worker([&](worker_base& w) { add_metrics(total, weighted, w.metrics()); });
    return total;
}

void sdk_base::supervise() noexcept {
    const scope in(this);
    wait_requested();
    shut_down();
}

// Runs on the supervisor or in shutdown(), never inside a callback of the parts (shutdown()
// sees to it), so stopping a part really waits for it.
void sdk_base::shut_down() noexcept {
    try {
        {
            std::lock_guard<std::mutex> lock(mutex);
            if (done) return;
        }
        beacon_draining();
        // Each round drains the workers created since the previous one (a worker created
        // during a shutdown starts draining at once); the last round closes the list, and a
        // worker created after that is stopped at its creation.
        std::size_t handled = 0;
        for (int round = 0; round < 64; ++round) {
            std::vector<worker_base*> ws;
            bool last = false;
            {
                std::lock_guard<std::mutex> lock(mutex);
                for (std::size_t i = handled; i < workers.size(); ++i) ws.push_back(workers[i].get());
                handled = workers.size();
                last = ws.empty() || round == 63;
                if (last) closed = true;
            }
            // Every worker starts draining at once (no new tasks anywhere), then each is
            // waited for: the drains overlap instead of adding up.
            for (auto* w : ws) w->begin_shutdown(w->options().drain_timeout, "stopping");
            for (auto* w : ws) w->stop();
            if (last) break;
        }
        beacon_stop();
    } catch (...) {
    }
    finish();
}

} // namespace detail
} // namespace sekuire

#endif
