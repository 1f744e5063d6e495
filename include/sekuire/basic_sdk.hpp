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
#include <sekuire/detail/sdk_base.hpp>
#include <sekuire/sdk_options.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <mutex>
#include <utility>

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
    explicit basic_sdk(Options options);

    /// An SDK over the given policies (the workers get copies of the transport, clock,
    /// store and executor handles: they share one handler pool).
    basic_sdk(sdk_options options, Transport transport, Clock clock = Clock(), CredentialStore store = CredentialStore(),
              PlatformProbe probe = PlatformProbe(), Executor executor = default_executor<Executor>(0));

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
    basic_sdk& operator=(basic_sdk&& other) noexcept;

    /// Shuts down (see `shutdown()`).
    ~basic_sdk();

    /** Starts the beacon (bootstrap or recovery, registration heartbeat: at most
        `start_timeout`) and the supervisor that shuts everything down on terminate or
        revocation. Degraded mode is not an error: check `get_beacon_status()`. Fails with
        `shutting_down` once a shutdown was asked for before it.
    */
    void start(error_code& ec);

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
    worker_type& create_task_worker(worker_options options = {});

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
        if (s_) s_->shutdown();
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

    // The parts and the policies; what needs no policy is detail::sdk_base's.
    struct state final : detail::sdk_base {
        state(sdk_options o, Transport t, Clock c, CredentialStore s, Executor e);
        ~state() override;

        Transport transport;
        Clock clock;
        CredentialStore store;
        Executor executor;
        std::unique_ptr<beacon_type> beacon;

        void beacon_apply_command(const protocol::command& c) override;
        void beacon_apply_revocation(const protocol::revocation& r) override;
        void beacon_draining() override;
        void beacon_stop() override;
    };

    std::unique_ptr<state> s_;
};

// Defined outside the class: not inline, so that `extern template` (SEKUIRE_SEPARATE_COMPILATION)
// keeps every file but the one including <sekuire/src.hpp> from instantiating them.

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
template <class Options, class>
basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::basic_sdk(Options options)
    : basic_sdk(prepared{}, checked(std::move(options))) {}

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::basic_sdk(sdk_options options, Transport transport,
                                                                                 Clock clock, CredentialStore store,
                                                                                 PlatformProbe probe, Executor executor)
    : s_(std::make_unique<state>(checked(std::move(options)), std::move(transport), std::move(clock), std::move(store),
                                 std::move(executor))) {
    // Recovery credentials from the environment, once, for the beacon and (with
    // auto_heartbeat off) the workers.
    detail::recover_from_env(s_->options);
    s_->beacon = std::make_unique<beacon_type>(s_->wire_beacon(), s_->transport, s_->clock, s_->store, std::move(probe));
}

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
auto basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::operator=(basic_sdk&& other) noexcept -> basic_sdk& {
    if (this != &other) {
        shutdown();
        s_ = std::move(other.s_);
    }
    return *this;
}

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::~basic_sdk() {
    if (s_) shutdown();
}

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
void basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::start(error_code& ec) {
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
    // A shutdown asked for during the beacon's start (a callback) is carried out by the
    // supervisor at once.
    s_->start_supervisor();
}

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
auto basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::create_task_worker(worker_options options)
    -> worker_type& {
    // The worker is known only once built; its callbacks find it here.
    auto self = std::make_shared<detail::worker_base*>(nullptr);
    options = s_->wire_worker(std::move(options), self);
    auto w = std::make_unique<worker_type>(std::move(options), s_->transport, s_->clock, s_->store, s_->executor);
    worker_type& made = *w;
    *self = w.get();
    s_->adopt_worker(std::unique_ptr<detail::worker_base>(w.release()));
    return made;
}

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::state::state(sdk_options o, Transport t, Clock c, CredentialStore s, Executor e)
    : sdk_base(std::move(o)), transport(std::move(t)), clock(std::move(c)), store(std::move(s)), executor(std::move(e)) {}

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::state::~state() {
    release_workers();
    beacon.reset(); // after the workers: they call into it
}

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
void basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::state::beacon_apply_command(const protocol::command& c) {
    beacon->apply_command(c);
}

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
void basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::state::beacon_apply_revocation(const protocol::revocation& r) {
    beacon->apply_revocation(r);
}

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
void basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::state::beacon_draining() {
    beacon->set_reported_status(protocol::heartbeat_status::draining);
}

template <class Transport, class Clock, class CredentialStore, class PlatformProbe, class Executor>
void basic_sdk<Transport, Clock, CredentialStore, PlatformProbe, Executor>::state::beacon_stop() {
    beacon->stop();
}

} // namespace sekuire

#endif
