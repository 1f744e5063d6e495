// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_BASIC_BEACON_HPP
#define SEKUIRE_BASIC_BEACON_HPP

/// @file
/// `basic_beacon`: installation bootstrap, lease heartbeats, token refresh and the kill
/// switch, over any Transport, Clock, CredentialStore and PlatformProbe.
///
/// This header does not include httplib; `<sekuire/beacon.hpp>` adds the default policies
/// and the `sekuire::beacon` typedef.

#include <sekuire/beacon_options.hpp>
#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
#include <sekuire/core/beacon_core.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/detail/beacon_driver.hpp>
#include <sekuire/detail/make_policy.hpp>
#include <sekuire/detail/store_effects.hpp>
#include <sekuire/error.hpp>
#include <sekuire/fwd.hpp>
#include <sekuire/platform.hpp>
#include <sekuire/transport.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sekuire {

/** The Beacon: bootstraps an installation, keeps its lease alive with heartbeats,
    refreshes its runtime token, and obeys the kill switch and commands.

    @tparam Transport a Transport (`<sekuire/transport.hpp>`)
    @tparam Clock a Clock (`<sekuire/clock.hpp>`)
    @tparam CredentialStore a CredentialStore (`<sekuire/credential_store.hpp>`)
    @tparam PlatformProbe a PlatformProbe (`<sekuire/platform.hpp>`)

    Every decision is `beacon_core`'s (`<sekuire/core/beacon_core.hpp>`); this template
    moves data between it and the policies. `step()` does what is due now and returns the
    next deadline; `start()` runs it on one background thread; a program with its own event
    loop calls it itself (or drives `beacon_core`, or uses the asynchronous beacon).

    @par Thread Safety
    `get_status()`, `is_connected()`, `get_installation_credentials()`,
    `apply_command()`, `apply_revocation()` and `set_reported_status()` are safe from any
    thread at any time. `start()`, `stop()` and `step()` must not run concurrently with each
    other (`step()` is called by the background thread after `start()`).
*/
template <class Transport, class Clock, class CredentialStore, class PlatformProbe>
class basic_beacon {
    static_assert(check_transport<Transport>::value, "");
    static_assert(check_clock<Clock>::value, "");
    static_assert(check_credential_store<CredentialStore>::value, "");
    static_assert(check_platform_probe<PlatformProbe>::value, "");

public:
    using transport_type = Transport;             ///< The Transport policy.
    using clock_type = Clock;                     ///< The Clock policy.
    using credential_store_type = CredentialStore; ///< The CredentialStore policy.
    using platform_probe_type = PlatformProbe;    ///< The PlatformProbe policy.

    /** A beacon whose policies are built from the options: the transport from
        `api_base_url` and `transport` (when it can be built from them), the store from
        `credentials_file` (a `file_store` when set), the clock and probe by default.
        @throws sekuire::error when an option is out of range (`errc::invalid_option`) or
        the base URL is refused by the transport.
        (A template only so that an explicit instantiation needs no default-constructible
        policies.)
    */
    template <class Options = beacon_options, class = std::enable_if_t<std::is_convertible<Options, beacon_options>::value>>
    explicit basic_beacon(Options options);

    /** A beacon over the given policies (copies of handles share state with the caller's).
        @throws sekuire::error when an option is out of range (`errc::invalid_option`).
    */
    basic_beacon(beacon_options options, Transport transport, Clock clock = Clock(),
                 CredentialStore store = CredentialStore(), PlatformProbe probe = PlatformProbe())
        : transport_(std::move(transport)), clock_(std::move(clock)), store_(std::move(store)), probe_(std::move(probe)),
          core_(detail::prepare(std::move(options)), probe_.probe()) {
        status_ = core_.status();
    }

    basic_beacon(const basic_beacon&) = delete;
    basic_beacon& operator=(const basic_beacon&) = delete;

private:
    struct prepared {};
    // Options already checked: the policies are built from them only once they are valid.
    // (A template, as the options-only constructor is.)
    template <class Options>
    basic_beacon(prepared, const Options& options)
        : basic_beacon(options, detail::make_transport<Transport>(options.api_base_url, options.transport), Clock(),
                       detail::make_store<CredentialStore>(options.credentials_file), PlatformProbe()) {}

public:
    /// Stops a running beacon (see `stop()`).
    ~basic_beacon() { stop(); }

    /** Starts the background thread and waits (at most `start_timeout`) for the first
        pass of the auth chain: bootstrap or recovery and the registration heartbeat
        (after the startup jitter).

        A transient failure does not fall through to the next step of the chain: the beacon
        reports degraded mode and keeps retrying in the background. Check `get_status()`.
        Fails with `errc::already_started` when running.
    */
    void start(error_code& ec) {
        ec = {};
        if (thread_.joinable() || stopped_) {
            ec = errc::already_started;
            return;
        }
        loop_.reset();
        running_ = true;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            status_.is_running = true;
        }
        thread_ = std::thread([this] { run(); });
        loop_.wait_first_pass(options().start_timeout);
    }

    /// As `start(error_code&)`, throwing `sekuire::error`.
    void start() {
        error_code ec;
        start(ec);
        detail::throw_if(ec, "beacon start");
    }

    /** Stops the beacon: stops the background thread, then sends one final heartbeat with
        status `stopped` (bounded by `stop_timeout`; not after a revocation) and returns.
        Does nothing when already stopped. Never throws.

        Called from a callback that the beacon runs (on its thread, or inside `step()`), it
        cannot wait for itself: it only asks the thread to end, and the final heartbeat is
        sent by the next `stop()` from elsewhere, at the latest by the destructor.
    */
    void stop() noexcept {
        try {
            if (stepping_thread_.load() == std::this_thread::get_id()) {
                loop_.request_stop();
                detail::deliver_log(options().logger, log_level::info, "stop requested from a beacon callback; it completes when stop() is called "
                                     "from another thread or the beacon is destroyed");
                return;
            }
            if (stopped_.exchange(true)) return;
            loop_.request_stop();
            if (thread_.joinable()) thread_.join();
            // The thread has ended: the core is ours now. A revocation applied from
            // elsewhere and not stepped yet takes effect first (no final heartbeat).
            std::unique_lock<std::mutex> lock(mutex_);
            see_store();
            core_.stop(read_clock(clock_));
            pump(lock, true);
            running_ = false;
            core_.settle();
            publish();
            take_notifications();
            lock.unlock();
            flush();
        } catch (...) {
            // stop() must not throw (it runs in the destructor); the status keeps the error.
        }
    }

    /** Does what is due now and returns the next deadline (steady time).

        Runs the auth chain, heartbeats, token refreshes and lease checks whose time has
        come; several in a row when they are due together (the auth chain and the
        registration heartbeat run in one call). Never throws; failures go to the status
        and the logger. Returns `steady_time_point::max()` when nothing is scheduled
        (degraded for good, revoked or stopped).
    */
    steady_time_point step() noexcept {
        const std::thread::id outer = stepping_thread_.exchange(std::this_thread::get_id());
        struct restore_stepping {
            std::atomic<std::thread::id>& slot;
            std::thread::id value;
            ~restore_stepping() { slot.store(value); }
        } restore{stepping_thread_, outer};
        try {
            std::unique_lock<std::mutex> lock(mutex_);
            if (stopped_) return steady_time_point::max();
            running_ = true;
            see_store();
            core_.advance(read_clock(clock_));
            pump(lock, false);
            core_.settle();
            publish();
            take_notifications();
            const steady_time_point next = core_.next_wake();
            lock.unlock();
            flush();
            return next;
        } catch (const std::exception& e) {
            detail::deliver_log(options().logger, log_level::error, std::string("internal error: ") + e.what());
        } catch (...) {
            detail::deliver_log(options().logger, log_level::error, "internal error");
        }
        return clock_.steady_now() + std::chrono::seconds(1);
    }

    /// A snapshot of the status. Thread-safe.
    beacon_status get_status() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return status_;
    }

    /// True when authenticated, holding a lease, and not revoked. Thread-safe.
    bool is_connected() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return status_.state == beacon_state::connected;
    }

    /** The credentials to persist for ephemeral compute (installation id, refresh token and
        the current runtime token), or nullopt before a bootstrap. These are the real
        tokens: store them as secrets. Thread-safe.
    */
    std::optional<installation_credentials> get_installation_credentials() {
        error_code ec;
        auto c = store_.load(ec);
        if (ec || !c || c->installation_id.empty()) return std::nullopt;
        return c;
    }

    /** Applies a command that arrived another way (a worker's task stream): updates the
        status and calls `on_command` unless this command id was seen already. Thread-safe.
    */
    void apply_command(const protocol::command& cmd) {
        bool first = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            first = core_.apply_command(cmd);
            core_.settle();
            if (first) take_notifications();
            // Only the command fields here: the rest of the status belongs to the stepping
            // thread, which the wake-up makes publish it.
            const beacon_status s = core_.status();
            status_.paused = s.paused;
            status_.terminate_requested = s.terminate_requested;
        }
        flush();
        if (first) wake();
    }

    /// Applies a revocation that arrived another way (a `revoked` stream event): acted on
    /// at the next step, which is made due at once. Thread-safe.
    void apply_revocation(const protocol::revocation& r) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            core_.apply_revocation(r);
        }
        wake();
    }

    /// Overrides the `status` sent with heartbeats (e.g. `draining`); nullopt restores the
    /// automatic choice (healthy, paused or degraded). Thread-safe.
    void set_reported_status(std::optional<protocol::heartbeat_status> s) {
        std::lock_guard<std::mutex> lock(mutex_);
        core_.set_reported_status(s);
    }

    /// The options the beacon was built with (validated, with the recovery credentials
    /// completed from the environment).
    const beacon_options& options() const noexcept { return core_.options(); }
    /// The platform sent with requests (probed once at construction).
    const platform_info& platform() const noexcept { return core_.platform(); }
    /// The transport (a handle: copies share its connections).
    Transport& transport() noexcept { return transport_; }
    /// The clock every deadline is read from.
    Clock& clock() noexcept { return clock_; }
    /// The credential store (shared with workers when they were given the same handle).
    CredentialStore& credential_store() noexcept { return store_; }

private:
    // ---- the background thread --------------------------------------------------------

    void run() noexcept {
        for (;;) {
            const steady_time_point next = step();
            bool first_pass = false;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                first_pass = core_.first_pass_done();
            }
            if (first_pass) loop_.first_pass_done();
            if (!loop_.wait(clock_, next)) break;
        }
        loop_.first_pass_done();
    }

    void wake() { loop_.wake(); }

    // ---- driving the core (mutex_ held) -----------------------------------------------

    void see_store() { detail::see_store(store_, core_, store_version_); }

    // Performs the core's effects until it asks for none: store operations at once, a
    // request without the mutex (so that other threads can apply commands meanwhile).
    // A stop asked for meanwhile ends the run of due steps: each request may take as long
    // as the request timeout, and stop() waits for this thread (the core gives the request
    // up when it stops).
    void pump(std::unique_lock<std::mutex>& lock, bool stopping) {
        for (int rounds = 0; rounds < 10000; ++rounds) {
            if (core_.effects().empty()) return;
            batch_.clear();
            batch_.swap(core_.effects());
            for (beacon_effect& e : batch_) {
                if (e.what != beacon_effect::type::send) {
                    if (!detail::perform_store_effect(store_, core_, e, clock_)) notifications_.push_back(std::move(e));
                    continue;
                }
                if (!stopping && loop_.stop_requested()) continue; // left outstanding; the core's stop() gives it up
                lock.unlock();
                flush();
                error_code ec;
                http_response res = transport_.send(e.request, ec);
                lock.lock();
                core_.reuse_request(std::move(e.request)); // its storage serves the next heartbeat
                core_.on_response(e.op, ec, std::move(res), read_clock(clock_));
            }
        }
    }

    void take_notifications() {
        for (beacon_effect& e : core_.effects())
            if (!detail::is_store_effect(e)) notifications_.push_back(std::move(e));
        core_.effects().clear();
    }

    // The status others read (mutex_ held).
    void publish() {
        const bool running = running_ && !stopped_;
        core_.status_into(status_); // in place: the strings' storage is reused
        status_.is_running = running;
    }

    // Calls the user's callbacks, without the mutex (a callback may call back in).
    void flush() {
        std::vector<beacon_effect> ready;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ready.swap(notifications_);
        }
        detail::deliver(options(), ready, [this] { return get_status(); });
    }

    // ---- members -----------------------------------------------------------------------

    Transport transport_;
    Clock clock_;
    CredentialStore store_;
    PlatformProbe probe_;

    mutable std::mutex mutex_; // the core, the status, the notifications
    beacon_core core_;
    beacon_status status_;
    std::vector<beacon_effect> batch_;
    std::vector<beacon_effect> notifications_;
    std::optional<std::uint64_t> store_version_; // of the contents the core last saw

    std::atomic<std::thread::id> stepping_thread_{};
    detail::wake_loop loop_;
    std::atomic<bool> running_{false};
    std::atomic<bool> stopped_{false};
    std::thread thread_;
};

// Defined outside the class: not inline, so that `extern template` (SEKUIRE_SEPARATE_COMPILATION)
// keeps every file but the one including <sekuire/src.hpp> from instantiating it.
template <class Transport, class Clock, class CredentialStore, class PlatformProbe>
template <class Options, class>
basic_beacon<Transport, Clock, CredentialStore, PlatformProbe>::basic_beacon(Options options)
    : basic_beacon(prepared{}, detail::prepare(std::move(options))) {}

} // namespace sekuire

#endif
