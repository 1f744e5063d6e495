// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_BASIC_SDK_HPP
#define SEKUIRE_BASIC_SDK_HPP

/// @file
/// `basic_sdk`: a beacon and its task workers wired together (the seed's `SekuireSDK`).
///
/// The workers share the beacon's credential store (a token refreshed by either is used by
/// both at once, and concurrent refreshes make one call) and the SDK's policy gateway. A
/// command or a kill switch seen by any part, in a heartbeat response or on the task
/// stream, acts on all: pause pauses the workers; terminate and revocation shut everything
/// down (workers drain, then the beacon sends its final heartbeat).

#include <sekuire/basic_beacon.hpp>
#include <sekuire/basic_worker.hpp>
#include <sekuire/sdk_options.hpp>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sekuire {

/** A beacon and its task workers, wired together.

    Movable: the parts live behind one pointer, and the callbacks that wire them do not
    refer to the SDK object itself. A moved-from SDK may only be destroyed or assigned to.

    @par Thread Safety
    Every member function is safe from any thread, except that `start()` must not race
    `shutdown()` or the destructor. `shutdown()` called from inside the SDK (a callback of
    the SDK, its beacon or a worker, a task handler, the supervisor) asks for the shutdown
    and returns, since waiting there would wait for itself; the supervisor (after
    `start()`), a later `shutdown()` from elsewhere, or the destructor carries it out.
*/
template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
class basic_sdk {
public:
    /// The beacon the SDK runs.
    using beacon_type = basic_beacon<Transport, Clock, CredentialStore, PlatformProbe>;
    /// The type of the workers `create_task_worker()` makes.
    using worker_type = basic_worker<Transport, Clock, CredentialStore, Executor>;

    /// An SDK whose policies are built from the options.
    /// (A template only so that an explicit instantiation needs no default-constructible
    /// policies.)
    template <class Options = sdk_options, class = std::enable_if_t<std::is_convertible<Options, sdk_options>::value>>
    explicit basic_sdk(Options options) : basic_sdk(prepared{}, checked(std::move(options))) {}

    /// An SDK over the given policies (the workers get copies of the transport, clock,
    /// store and executor handles: they share one handler pool).
    basic_sdk(sdk_options options, Transport transport, Clock clock = Clock(), CredentialStore store = CredentialStore(),
              PlatformProbe probe = PlatformProbe(), Executor executor = default_executor<Executor>(0))
        : s_(std::make_unique<state>(checked(std::move(options)), std::move(transport), std::move(clock), std::move(store),
                                     std::move(executor))) {
        state* st = s_.get();
        // Recovery credentials from the environment, once, for the beacon and (with
        // auto_heartbeat off) the workers.
        detail::recover_from_env(st->options);
        // Every callback the SDK hands to its parts marks its thread as inside the SDK
        // (see shutdown()).
        beacon_options bo = st->options;
        bo.on_command = [st](const protocol::command& c) {
            const inside_scope in(st);
            st->on_command(c, nullptr);
        };
        bo.on_revoked = [st](const revocation_info& r) {
            const inside_scope in(st);
            st->on_revoked(r, nullptr);
        };
        bo.on_policy_hash = [st](const std::string& h) {
            const inside_scope in(st);
            st->for_each_worker([&](worker_type& w) { w.apply_policy_hash(h); });
            detail::invoke_callback(st->options.on_policy_hash, st->options.logger, "on_policy_hash", h);
        };
        if (st->options.on_status_change)
            bo.on_status_change = [st](const beacon_status& s) {
                const inside_scope in(st);
                st->options.on_status_change(s);
            };
        if (st->options.metrics)
            bo.metrics = [st] {
                const inside_scope in(st);
                return st->options.metrics();
            };
        else
            bo.metrics = [st] {
                const inside_scope in(st);
                return st->worker_metrics();
            };
        st->beacon = std::make_unique<beacon_type>(std::move(bo), st->transport, st->clock, st->store, std::move(probe));
    }

private:
    struct prepared {};
    // Options already checked: the policies (the handler pool) are built only from valid ones.
    // (A template, as the options-only constructor is.)
    template <class Options>
    basic_sdk(prepared, const Options& options)
        : basic_sdk(options, detail::make_transport<Transport>(options.api_base_url, options.transport), Clock(),
                    detail::make_store<CredentialStore>(options.credentials_file), PlatformProbe(),
                    default_executor<Executor>(options.handler_threads)) {}

    static sdk_options checked(sdk_options o) {
        error_code ec;
        const std::string what = validate(o, ec);
        detail::throw_invalid_option(ec, what);
        return o;
    }

public:
    /// From the `SEKUIRE_*` environment, with the default policies. (A template only so
    /// that an explicit instantiation needs no default-constructible policies.)
    template <class Sdk = basic_sdk>
    static Sdk from_env() {
        return Sdk(sdk_options::from_env());
    }

    /// Takes `other`'s parts; `other` may then only be destroyed or assigned to.
    basic_sdk(basic_sdk&&) noexcept = default;

    /// Shuts this SDK down, then takes `other`'s parts.
    basic_sdk& operator=(basic_sdk&& other) noexcept {
        if (this != &other) {
            shutdown();
            s_ = std::move(other.s_);
        }
        return *this;
    }

    /// Shuts down (see `shutdown()`).
    ~basic_sdk() {
        if (s_) shutdown();
    }

    /** Starts the beacon (bootstrap or recovery, registration heartbeat: at most
        `start_timeout`) and the supervisor that shuts everything down on terminate or
        revocation. Degraded mode is not an error: check `get_beacon_status()`. Fails with
        `shutting_down` once a shutdown was asked for before it.
    */
    void start(error_code& ec) {
        ec = {};
        {
            std::lock_guard<std::mutex> lock(s_->mutex);
            if (s_->requested) {
                ec = errc::shutting_down;
                return;
            }
        }
        if (s_->options.auto_heartbeat) {
            s_->beacon->start(ec);
            if (ec) return;
        }
        // A shutdown asked for during the beacon's start (a callback) is carried out by
        // the supervisor at once.
        std::lock_guard<std::mutex> lock(s_->mutex);
        if (!s_->supervisor.joinable() && !s_->done) s_->supervisor = std::thread([st = s_.get()] { st->supervise(); });
    }

    /// As `start(error_code&)`, throwing `sekuire::error`.
    void start() {
        error_code ec;
        start(ec);
        detail::throw_if(ec, "sdk start");
    }

    /// True when the beacon is authenticated and holds its lease.
    bool is_connected() const { return s_->beacon->is_connected(); }

    /// The beacon's status.
    beacon_status get_beacon_status() const { return s_->beacon->get_status(); }

    /// The credentials to persist for ephemeral compute (see `basic_beacon`).
    std::optional<installation_credentials> get_installation_credentials() {
        return s_->beacon->get_installation_credentials();
    }

    /** Creates a task worker that shares the beacon's credential store and the SDK's policy
        gateway, and takes commands and revocations from the beacon (and gives its own to
        the beacon and the other workers). Unset options are inherited from the SDK: base
        URL, agent id, workspace id, logger and transport settings. The worker never
        bootstraps on its own (the beacon does). The SDK owns it; call `start()` on it.

        The new worker starts in the SDK's present state: paused when a pause is in force,
        revoked after a revocation, draining once a shutdown has begun (and stopped once it
        is over). Its own `on_command()` callback may be set freely: the SDK's wiring is
        separate. Throws `sekuire::error` (`invalid_option`) for a base URL other than the
        SDK's: the workers use the SDK's transport.
    */
    worker_type& create_task_worker(worker_options options = {}) {
        state* st = s_.get();
        options = detail::sdk_worker_options(st->options, std::move(options));
        options.gateway = st->gateway;
        // The worker is known only once built; its callbacks find it here.
        auto self = std::make_shared<worker_type*>(nullptr);
        options.on_command = [st, self, user = std::move(options.on_command)](const protocol::command& c) {
            const inside_scope in(st);
            detail::invoke_callback(user, st->options.logger, "on_command", c);
            st->on_command(c, *self);
        };
        options.on_revoked = [st, self, user = std::move(options.on_revoked)](const revocation_info& r) {
            const inside_scope in(st);
            detail::invoke_callback(user, st->options.logger, "on_revoked", r);
            st->on_revoked(r, *self);
        };
        auto w = std::make_unique<worker_type>(std::move(options), st->transport, st->clock, st->store, st->executor);
        worker_type* wp = w.get();
        *self = wp;

        // Registered and the state read in one step: whatever happens after it reaches
        // this worker through the wiring; what happened before is applied here.
        bool paused = false, requested = false, closed = false;
        std::uint64_t generation = 0;
        std::optional<protocol::revocation> revocation;
        {
            std::lock_guard<std::mutex> lock(st->mutex);
            st->workers.push_back(std::move(w));
            paused = st->paused;
            generation = st->pause_generation;
            revocation = st->revocation;
            requested = st->requested;
            closed = st->closed;
        }
        // A pause or resume arriving meanwhile may reach the worker before or after this:
        // apply again until the state read is the latest (commands are rare: a few rounds).
        for (int round = 0; round < 16; ++round) {
            wp->set_paused(paused);
            std::lock_guard<std::mutex> lock(st->mutex);
            if (st->pause_generation == generation) break;
            paused = st->paused;
            generation = st->pause_generation;
        }
        if (revocation) wp->apply_revocation(*revocation);
        if (closed) {
            wp->stop(); // never started: stops at once, with no network call
        } else if (requested) {
            wp->begin_shutdown(wp->options().drain_timeout, "the SDK is shutting down");
        }
        return *wp;
    }

    /// Asks for a graceful shutdown from any thread (a signal handler's thread, say); the
    /// supervisor carries it out. Does not wait.
    void request_shutdown() { s_->request("shutdown requested"); }

    /// True once a shutdown was requested (terminate, revocation, `request_shutdown()`).
    bool shutdown_requested() const {
        std::lock_guard<std::mutex> lock(s_->mutex);
        return s_->requested;
    }

    /// Waits (real time) until everything is shut down; true when it is.
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> timeout) {
        std::unique_lock<std::mutex> lock(s_->mutex);
        return s_->cv.wait_for(lock, timeout, [&] { return s_->done; });
    }

    /// Waits until a shutdown is requested and carried out.
    void wait() {
        std::unique_lock<std::mutex> lock(s_->mutex);
        s_->cv.wait(lock, [&] { return s_->done; });
    }

    /** Shuts down gracefully and waits: each worker drains (within its drain timeout), then
        the beacon sends its final heartbeat and stops. From inside the SDK (see the class
        notes) it only asks for the shutdown. Calls from several threads wait for the same
        shutdown. Never throws.
    */
    void shutdown() noexcept {
        if (!s_) return;
        state* st = s_.get();
        try {
            st->request("shutting down");
            if (st->called_from_inside()) return;
            std::lock_guard<std::mutex> once(st->shutdown_mutex);
            std::thread supervisor;
            {
                std::lock_guard<std::mutex> lock(st->mutex);
                supervisor = std::move(st->supervisor);
            }
            if (supervisor.joinable()) supervisor.join();
            st->shut_down(); // returns at once when the supervisor has done it
        } catch (...) {
        }
    }

    /// The SDK's beacon.
    beacon_type& beacon() noexcept { return *s_->beacon; }
    /// The policy gateway every worker of the SDK admits its tasks through.
    policy_gateway& gateway() noexcept { return s_->gateway; }
    /// The options the SDK was built with (validated).
    const sdk_options& options() const noexcept { return s_->options; }

private:
    template <class E>
    static E default_executor(std::size_t threads) {
        if constexpr (std::is_constructible<E, std::size_t>::value) {
            return E(threads);
        } else {
            (void)threads;
            return E();
        }
    }

    struct state;

    // The SDK whose callback (or supervisor) this thread is running; nested scopes
    // restore the outer one.
    inline static thread_local const state* inside_ = nullptr;
    struct inside_scope {
        const state* outer;
        explicit inside_scope(const state* s) noexcept : outer(inside_) { inside_ = s; }
        ~inside_scope() { inside_ = outer; }
        inside_scope(const inside_scope&) = delete;
        inside_scope& operator=(const inside_scope&) = delete;
    };

    struct state : detail::sdk_control {
        state(sdk_options o, Transport t, Clock c, CredentialStore s, Executor e)
            : options(std::move(o)), transport(std::move(t)), clock(std::move(c)), store(std::move(s)),
              executor(std::move(e)), gateway(options.gateway) {}

        state(const state&) = delete;
        state& operator=(const state&) = delete;

        // After a normal shutdown everything here has stopped already. Otherwise the parts
        // go in an order where none can reach a part already gone: the supervisor, then the
        // workers (they call into the beacon), then the beacon (its final heartbeat reads
        // the workers' metrics, by then none).
        ~state() {
            try {
                if (supervisor.joinable()) supervisor.join();
            } catch (...) {
            }
            std::vector<std::unique_ptr<worker_type>> ws;
            {
                std::lock_guard<std::mutex> lock(mutex);
                ws.swap(workers);
            }
            ws.clear();
            beacon.reset();
        }

        sdk_options options;
        Transport transport;
        Clock clock;
        CredentialStore store;
        Executor executor;
        policy_gateway gateway;
        std::unique_ptr<beacon_type> beacon;
        std::vector<std::unique_ptr<worker_type>> workers; // only grows until the end

        template <class F>
        void for_each_worker(F&& f) {
            std::vector<worker_type*> ws;
            {
                std::lock_guard<std::mutex> lock(mutex);
                for (auto& w : workers) ws.push_back(w.get());
            }
            for (auto* w : ws) f(*w);
        }

        // True on a thread that the shutdown may wait for: an SDK callback, the
        // supervisor, or a worker's step, callback or handler.
        bool called_from_inside() const {
            if (inside_ == this) return true;
            std::lock_guard<std::mutex> lock(mutex);
            for (const auto& w : workers)
                if (w->in_own_context()) return true;
            return false;
        }

        // A command seen by `from` (a worker) or by the beacon (null) reaches every part;
        // each part runs a command id once.
        void on_command(const protocol::command& c, worker_type* from) {
            record_command(c); // before it is passed on, for workers created later
            if (from) beacon->apply_command(c);
            for_each_worker([&](worker_type& w) {
                if (&w != from) w.apply_command(c);
            });
            if (!from) detail::invoke_callback(options.on_command, options.logger, "on_command", c);
            if (c.type == protocol::command_type::terminate) request("terminate command");
        }

        void on_revoked(const revocation_info& r, worker_type* from) {
            const protocol::revocation rv{r.reason, r.shutdown_timeout.count()};
            // The parts tell each other; the SDK acts (and calls back) once. Recorded before
            // it is passed on, for workers created later.
            if (!record_revocation(rv)) return;
            if (from) beacon->apply_revocation(rv);
            for_each_worker([&](worker_type& w) {
                if (&w != from) w.apply_revocation(rv);
            });
            detail::invoke_callback(options.on_revoked, options.logger, "on_revoked", r);
            request("installation revoked");
        }

        protocol::heartbeat_metrics worker_metrics() {
            protocol::heartbeat_metrics total;
            std::int64_t weighted = 0;
            for_each_worker([&](worker_type& w) { detail::add_metrics(total, weighted, w.metrics()); });
            return total;
        }

        void supervise() noexcept {
            const inside_scope in(this);
            wait_requested();
            shut_down();
        }

        // Runs on the supervisor or in shutdown(), never inside a callback of the parts
        // (shutdown() sees to it), so stopping a part really waits for it.
        void shut_down() noexcept {
            try {
                {
                    std::lock_guard<std::mutex> lock(mutex);
                    if (done) return;
                }
                beacon->set_reported_status(protocol::heartbeat_status::draining);
                // Each round drains the workers created since the previous one (a worker
                // created during a shutdown starts draining at once); the last round closes
                // the list, and a worker created after that is stopped at its creation.
                std::size_t handled = 0;
                for (int round = 0; round < 64; ++round) {
                    std::vector<worker_type*> ws;
                    bool last = false;
                    {
                        std::lock_guard<std::mutex> lock(mutex);
                        for (std::size_t i = handled; i < workers.size(); ++i) ws.push_back(workers[i].get());
                        handled = workers.size();
                        last = ws.empty() || round == 63;
                        if (last) closed = true;
                    }
                    // Every worker starts draining at once (no new tasks anywhere), then
                    // each is waited for: the drains overlap instead of adding up.
                    for (auto* w : ws) w->begin_shutdown(w->options().drain_timeout, "stopping");
                    for (auto* w : ws) w->stop();
                    if (last) break;
                }
                beacon->stop();
            } catch (...) {
            }
            finish();
        }
    };

    std::unique_ptr<state> s_;
};

} // namespace sekuire

#endif
