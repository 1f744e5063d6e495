// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_ASYNC_BEACON_HPP
#define SEKUIRE_ASYNC_BEACON_HPP

/// @file
/// `sekuire::async::basic_beacon`: the Beacon on an Asio executor the user gives. Every
/// request is an `async_send` of an AsyncTransport, every wake-up a timer; it has no thread
/// of its own, so one thread can carry thousands of beacons. `beacon_core` decides
/// everything, as for the synchronous `sekuire::basic_beacon`.
///
/// The default typedef `sekuire::async::beacon` runs over `beast_transport`, the system
/// clock, the default credential store and `auto_probe`.

#include <sekuire/auto_probe.hpp>
#include <sekuire/beacon_options.hpp>
#include <sekuire/beast_transport.hpp>
#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
#include <sekuire/core/beacon_core.hpp>
#include <sekuire/detail/beacon_driver.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/detail/erased_handler.hpp>
#include <sekuire/detail/make_policy.hpp>
#include <sekuire/detail/store_effects.hpp>
#include <sekuire/error.hpp>
#include <sekuire/platform.hpp>
#include <sekuire/transport.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace sekuire {
namespace async {

/** The Timer policy of the asynchronous agents: an Asio `steady_timer`.

    A Timer `t` offers `t.async_wait_until(deadline, h)`, which calls `h(error_code)` once
    at `deadline` (steady time) or with `boost::asio::error::operation_aborted` when the
    wait is replaced by another `async_wait_until` or ended by `t.cancel()`; at most one
    wait is pending. This one reads `std::chrono::steady_clock`, so it goes with a Clock
    whose `steady_now()` is that clock (`system_clock`); tests with `testing::fake_clock`
    use `testing::fake_timer` (`<sekuire/testing/fake_async.hpp>`).

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Unsafe (the beacon calls it on its strand).
*/
class steady_timer {
public:
    /// The executor the waits complete on.
    using executor_type = boost::asio::any_io_executor;

    /// A timer on `ex`.
    explicit steady_timer(const executor_type& ex) : timer_(ex) {}

    /// Waits until `deadline`; a pending wait ends with `operation_aborted`.
    template <class Handler>
    void async_wait_until(steady_time_point deadline, Handler&& h) {
        timer_.expires_at(deadline);
        timer_.async_wait(std::forward<Handler>(h));
    }

    /// Ends the pending wait, if any, with `operation_aborted`.
    void cancel() { timer_.cancel(); }

private:
    boost::asio::steady_timer timer_;
};

/** The Beacon on an executor: bootstraps an installation, keeps its lease with
    heartbeats, refreshes its token, obeys commands and the kill switch, all as
    asynchronous operations.

    @tparam AsyncTransport an AsyncTransport (`<sekuire/transport.hpp>`); only `async_send`
    is used, with a handler bound to the beacon's strand and to a cancellation slot.
    @tparam Clock a Clock (`<sekuire/clock.hpp>`): the time fed to the core.
    @tparam CredentialStore a CredentialStore; its operations never wait, so they run
    inline on the strand.
    @tparam PlatformProbe a PlatformProbe, probed once at construction.
    @tparam Timer a Timer (see `steady_timer`) reading the same steady time as `Clock`.

    The beacon runs on a strand of the executor given: several threads may run the
    executor. `async_start()` starts the auth chain and completes after its first pass (or
    `start_timeout`), as `basic_beacon::start()` returns; `async_stop()` cancels the timer
    and the request under way, sends the final heartbeat (status `stopped`, bounded by
    `stop_timeout`, not after a revocation) and completes when it was answered. The user's
    callbacks (`beacon_options::on_status_change`, `on_command`, `on_revoked`,
    `on_policy_hash`, `logger`) run on the strand.

    Both take any Asio completion token: a callback, `boost::asio::use_future` or, in
    C++20, `boost::asio::use_awaitable` (`co_await b.async_start(asio::use_awaitable)`).

    Destroying a running beacon begins its stop: the final heartbeat is still sent while
    the executor runs (the beacon's state lives on in its operations), but no callback of
    the user's is called any more.

    @par Thread Safety
    `get_status()`, `is_connected()`, `apply_command()`, `apply_revocation()`,
    `set_reported_status()`, `async_start()` and `async_stop()` are safe from any thread
    (the work is posted to the strand). Destroying the object must not race with calls to
    it.
*/
template <class AsyncTransport, class Clock = system_clock, class CredentialStore = credential_store,
          class PlatformProbe = auto_probe, class Timer = steady_timer>
class basic_beacon {
    static_assert(detail::transport_has_async_send<AsyncTransport>::value,
                  "AsyncTransport requirements not met: missing `async_send(const http_request&, CompletionToken)`");
    static_assert(check_clock<Clock>::value, "");
    static_assert(check_credential_store<CredentialStore>::value, "");
    static_assert(check_platform_probe<PlatformProbe>::value, "");

public:
    using transport_type = AsyncTransport;          ///< the AsyncTransport policy
    using clock_type = Clock;                       ///< the Clock policy
    using credential_store_type = CredentialStore; ///< the CredentialStore policy
    using platform_probe_type = PlatformProbe;     ///< the PlatformProbe policy
    using timer_type = Timer;                       ///< the Timer policy
    /// The executor given (the beacon runs on a strand of it).
    using executor_type = boost::asio::any_io_executor;

    /** A beacon on `ex` whose policies are built from the options: the transport from
        `(ex, api_base_url, transport)`, the store from `credentials_file`, the timer from
        `ex`, the clock and probe by default.
        @throws sekuire::error when an option is out of range (`errc::invalid_option`) or the
        base URL is refused by the transport.
    */
    template <class Options = beacon_options, class = std::enable_if_t<std::is_convertible<Options, beacon_options>::value>>
    basic_beacon(const executor_type& ex, Options options) : basic_beacon(prepared{}, ex, detail::prepare(std::move(options))) {}

    /** A beacon on `ex` over the given policies (copies of handles share state with the
        caller's); the timer is built from `ex`.
        @throws sekuire::error when an option is out of range (`errc::invalid_option`).
    */
    template <class T = Timer, class = std::enable_if_t<std::is_constructible<T, const executor_type&>::value>>
    basic_beacon(const executor_type& ex, beacon_options options, AsyncTransport transport, Clock clock = Clock(),
                 CredentialStore store = CredentialStore(), PlatformProbe probe = PlatformProbe())
        : basic_beacon(ex, std::move(options), std::move(transport), std::move(clock), std::move(store), std::move(probe),
                       Timer(boost::asio::any_io_executor(ex))) {}

    /** A beacon on `ex` over the given policies and timer.
        @throws sekuire::error when an option is out of range (`errc::invalid_option`).
    */
    basic_beacon(const executor_type& ex, beacon_options options, AsyncTransport transport, Clock clock,
                 CredentialStore store, PlatformProbe probe, Timer timer)
        : state_(std::make_shared<state>(ex, detail::prepare(std::move(options)), std::move(transport), std::move(clock),
                                         std::move(store), std::move(probe), std::move(timer))) {}

    basic_beacon(const basic_beacon&) = delete;
    basic_beacon& operator=(const basic_beacon&) = delete;

    /// Begins the stop of a running beacon without calling the user's callbacks again
    /// (see the class comment). Never throws.
    ~basic_beacon() {
        try {
            auto st = state_;
            boost::asio::post(st->strand_, [st] {
                st->detached_ = true;
                st->begin_stop();
            });
        } catch (...) {
        }
    }

private:
    struct prepared {};
    template <class Options>
    basic_beacon(prepared, const executor_type& ex, const Options& options)
        : basic_beacon(ex, options, AsyncTransport(ex, options.api_base_url, options.transport), Clock(),
                       detail::make_store<CredentialStore>(options.credentials_file), PlatformProbe()) {}

public:
    /** Starts the beacon: runs the auth chain (bootstrap or recovery and the registration
        heartbeat, after the startup jitter), then heartbeats at their cadence.

        Completes (signature `void(error_code)`) after the first pass of the auth chain or
        after `start_timeout`, whichever comes first, without an error: a transient failure
        leaves the beacon in degraded mode, retrying; check `get_status()`. Completes with
        `errc::already_started` when started before or stopped. Completion never happens
        inside this call.
    */
    template <class CompletionToken>
    auto async_start(CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(error_code)>(
            [st = state_](auto handler) {
                auto h = detail::erase_handler<error_code>(std::move(handler), st->strand_);
                boost::asio::post(st->strand_, [st, h = std::move(h)]() mutable {
                    st->start(std::move(h));
                });
            },
            token);
    }

    /** Stops the beacon: cancels the timer and the request under way, sends one final
        heartbeat with status `stopped` (bounded by `stop_timeout`; not after a revocation,
        not before a start) and completes (signature `void(error_code)`, never an error)
        when it was answered. Completes at once when stopped already. A `async_start` still
        pending completes too. Completion never happens inside this call.
    */
    template <class CompletionToken>
    auto async_stop(CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(error_code)>(
            [st = state_](auto handler) {
                auto h = detail::erase_handler<error_code>(std::move(handler), st->strand_);
                boost::asio::post(st->strand_, [st, h = std::move(h)]() mutable {
                    st->stop(std::move(h));
                });
            },
            token);
    }

    /// A snapshot of the status. Thread-safe.
    beacon_status get_status() const {
        std::lock_guard<std::mutex> lock(state_->status_mutex_);
        return state_->status_;
    }

    /// True when authenticated, holding a lease, and not revoked. Thread-safe.
    bool is_connected() const {
        std::lock_guard<std::mutex> lock(state_->status_mutex_);
        return state_->status_.state == beacon_state::connected;
    }

    /** Applies a command that arrived another way (a worker's task stream), on the strand:
        updates the status and calls `on_command` unless this command id was seen already.
        Thread-safe. */
    void apply_command(const protocol::command& cmd) {
        auto st = state_;
        boost::asio::post(st->strand_, [st, cmd] { st->command(cmd); });
    }

    /// Applies a revocation that arrived another way: acted on at once, on the strand.
    /// Thread-safe.
    void apply_revocation(const protocol::revocation& r) {
        auto st = state_;
        boost::asio::post(st->strand_, [st, r] {
            st->core_.apply_revocation(r);
            if (st->started_ && !st->core_.stopped() && !st->stop_requested_) st->wake();
        });
    }

    /// Overrides the `status` sent with heartbeats from the next one on (nullopt: the
    /// automatic choice). Thread-safe.
    void set_reported_status(std::optional<protocol::heartbeat_status> s) {
        auto st = state_;
        boost::asio::post(st->strand_, [st, s] { st->core_.set_reported_status(s); });
    }

    /// The options the beacon was built with (validated).
    const beacon_options& options() const noexcept { return state_->core_.options(); }
    /// The platform sent with requests (probed once at construction).
    const platform_info& platform() const noexcept { return state_->core_.platform(); }
    /// The strand the beacon runs on.
    boost::asio::strand<executor_type> get_executor() const { return state_->strand_; }
    /// The transport (a handle; use from the strand only when it is not thread-safe).
    AsyncTransport& transport() noexcept { return state_->transport_; }
    /// The clock.
    Clock& clock() noexcept { return state_->clock_; }
    /// The credential store.
    CredentialStore& credential_store() noexcept { return state_->store_; }

private:
    using handler_type = detail::erased_handler<error_code>;

    // Everything the operations under way need; they hold it alive.
    struct state : std::enable_shared_from_this<state> {
        state(const executor_type& ex, beacon_options o, AsyncTransport t, Clock c, CredentialStore s, PlatformProbe p,
              Timer tm)
            : strand_(boost::asio::make_strand(ex)), transport_(std::move(t)), clock_(std::move(c)), store_(std::move(s)),
              probe_(std::move(p)), timer_(std::move(tm)), core_(std::move(o), probe_.probe()) {
            status_ = core_.status();
        }

        // ---- on the strand -----------------------------------------------------------

        void start(handler_type h) {
            if (started_ || stop_requested_) {
                complete(std::move(h), errc::already_started);
                return;
            }
            started_ = true;
            start_waiters_.push_back(std::move(h));
            start_deadline_ = clock_.steady_now() + core_.options().start_timeout;
            step();
        }

        void stop(handler_type h) {
            if (stopped_) {
                complete(std::move(h), {});
                return;
            }
            stop_waiters_.push_back(std::move(h));
            begin_stop();
        }

        void begin_stop() {
            if (stop_requested_) return;
            stop_requested_ = true;
            ++timer_generation_;
            timer_.cancel();
            if (in_flight_) in_flight_->emit(boost::asio::cancellation_type::terminal);
            in_flight_.reset();
            if (!started_) {
                // Never started: nothing to send; a later start is refused.
                finish();
                return;
            }
            guarded([&] {
                see_store();
                core_.stop(read_clock(clock_));
                pump();
            });
            after();
        }

        void command(const protocol::command& cmd) {
            bool first = false;
            guarded([&] { first = core_.apply_command(cmd); });
            if (first) {
                core_.settle();
                publish();
                flush();
            }
        }

        // Runs the core now (a revocation applied from elsewhere).
        void wake() {
            if (in_flight_) {
                wake_pending_ = true; // taken right after the answer
                return;
            }
            step();
        }

        void step() {
            if (stop_requested_ || core_.stopped()) return;
            guarded([&] {
                see_store();
                core_.advance(read_clock(clock_));
                pump();
            });
            after();
        }

        template <class F>
        void guarded(F&& f) {
            try {
                f();
            } catch (const std::exception& e) {
                log(log_level::error, std::string("internal error: ") + e.what());
            } catch (...) {
                log(log_level::error, "internal error");
            }
        }

        // The store's contents, loaded only when its version says they may have changed.
        void see_store() { detail::see_store(store_, core_, store_version_); }

        // Performs the core's effects: store operations at once, a request as an
        // asynchronous operation whose answer continues the pump.
        void pump() {
            for (int rounds = 0; rounds < 10000 && !core_.effects().empty(); ++rounds) {
                batch_.clear();
                batch_.swap(core_.effects());
                for (beacon_effect& e : batch_) {
                    if (e.what == beacon_effect::type::send) {
                        send(e);
                    } else if (!detail::perform_store_effect(store_, core_, e, clock_)) {
                        notifications_.push_back(std::move(e));
                    }
                }
            }
        }

        void send(beacon_effect& e) {
            auto signal = std::make_shared<boost::asio::cancellation_signal>();
            in_flight_ = signal;
            const operation_id op = e.op;
            auto self = this->shared_from_this();
            transport_.async_send(
                e.request, boost::asio::bind_cancellation_slot(
                               signal->slot(), boost::asio::bind_executor(
                                                   strand_, [self, signal, op](error_code ec, http_response res) {
                                                       self->answered(signal, op, ec, std::move(res));
                                                   })));
            // An AsyncTransport copies the request when the operation starts: its storage
            // serves the next heartbeat (target, headers and body written in place).
            core_.reuse_request(std::move(e.request));
        }

        void answered(const std::shared_ptr<boost::asio::cancellation_signal>& signal, operation_id op, error_code ec,
                      http_response res) {
            if (in_flight_ == signal) in_flight_.reset();
            guarded([&] {
                core_.on_response(op, ec, std::move(res), read_clock(clock_));
                pump();
            });
            if (wake_pending_ && !in_flight_ && !stop_requested_) {
                wake_pending_ = false;
                step();
                return;
            }
            after();
        }

        // After a round of inputs: status, callbacks, completions, the next wake-up.
        void after() {
            guarded([&] { core_.settle(); });
            publish();
            flush();
            // The first pass is over when the core has tried the chain and waits for nothing
            // (the registration heartbeat answered, or a retry scheduled).
            if (core_.first_pass_done() && !core_.busy() && !in_flight_) complete_start();
            if (stop_requested_) {
                if (core_.stopped() && !in_flight_) finish();
                return;
            }
            // While a request is out its answer is the next input; only a pending start's
            // deadline needs the timer then.
            steady_time_point next = in_flight_ ? steady_time_point::max() : core_.next_wake();
            if (!start_waiters_.empty() && start_deadline_ < next) next = start_deadline_;
            const std::uint64_t gen = ++timer_generation_;
            if (next == steady_time_point::max()) {
                timer_.cancel();
                return;
            }
            std::weak_ptr<state> weak = this->shared_from_this();
            timer_.async_wait_until(next, boost::asio::bind_executor(strand_, [weak, gen](error_code ec) {
                                        auto st = weak.lock();
                                        if (ec || !st || gen != st->timer_generation_) return;
                                        st->woken();
                                    }));
        }

        void woken() {
            if (!start_waiters_.empty() && clock_.steady_now() >= start_deadline_) complete_start();
            if (in_flight_) {
                after(); // re-arms for what is left (nothing until the answer)
                return;
            }
            step();
        }

        void finish() {
            if (stopped_) return;
            stopped_ = true;
            publish();
            flush();
            complete_start();
            auto waiters = std::move(stop_waiters_);
            stop_waiters_.clear();
            for (auto& h : waiters) complete(std::move(h), {});
        }

        void complete_start() {
            if (start_waiters_.empty()) return;
            auto waiters = std::move(start_waiters_);
            start_waiters_.clear();
            for (auto& h : waiters) complete(std::move(h), {});
        }

        void complete(handler_type h, error_code ec) {
            h(ec); // posts to the handler's executor
        }

        void publish() {
            const bool running = started_ && !stopped_ && !(stop_requested_ && core_.stopped());
            std::lock_guard<std::mutex> lock(status_mutex_);
            core_.status_into(status_); // in place: the strings' storage is reused
            status_.is_running = running;
        }

        // Calls the user's callbacks (on the strand; none once the beacon is destroyed).
        void flush() {
            for (beacon_effect& e : core_.effects())
                if (!detail::is_store_effect(e)) notifications_.push_back(std::move(e));
            core_.effects().clear();
            std::vector<beacon_effect> ready;
            ready.swap(notifications_);
            if (detached_) return;
            detail::deliver(core_.options(), ready, [this] {
                std::lock_guard<std::mutex> lock(status_mutex_);
                return status_;
            });
        }

        void log(log_level level, const std::string& message) const {
            if (!detached_) detail::deliver_log(core_.options().logger, level, message);
        }

        boost::asio::strand<executor_type> strand_;
        AsyncTransport transport_;
        Clock clock_;
        CredentialStore store_;
        PlatformProbe probe_;
        Timer timer_;
        beacon_core core_;
        std::vector<beacon_effect> batch_;
        std::vector<beacon_effect> notifications_;
        std::shared_ptr<boost::asio::cancellation_signal> in_flight_;
        std::vector<handler_type> start_waiters_;
        std::vector<handler_type> stop_waiters_;
        std::uint64_t timer_generation_ = 0;
        steady_time_point start_deadline_ = steady_time_point::max();
        bool started_ = false;
        bool stop_requested_ = false;
        bool stopped_ = false;
        bool detached_ = false;
        bool wake_pending_ = false;
        std::optional<std::uint64_t> store_version_;

        mutable std::mutex status_mutex_;
        beacon_status status_;
    };

    std::shared_ptr<state> state_;
};

/// The asynchronous beacon over `beast_transport` and the default policies.
using beacon = basic_beacon<beast_transport>;

} // namespace async
} // namespace sekuire

#endif
