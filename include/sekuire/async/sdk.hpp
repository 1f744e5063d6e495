// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_ASYNC_SDK_HPP
#define SEKUIRE_ASYNC_SDK_HPP

/// @file
/// `sekuire::async::basic_sdk`: one asynchronous beacon and one asynchronous worker on an
/// executor the user gives, wired together as `sekuire::basic_sdk` wires its parts: they
/// share the credential store (so the installation the beacon bootstraps is the one whose
/// tasks the worker takes) and the policy gateway, and a command or a kill switch seen by
/// either acts on both. Neither has a thread of its own.
///
/// The default typedef `sekuire::async::sdk` runs over `beast_transport`, the system clock,
/// the default credential store and `auto_probe`.

#include <sekuire/async/beacon.hpp>
#include <sekuire/async/worker.hpp>
#include <sekuire/beacon_options.hpp>
#include <sekuire/sdk_options.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace sekuire {
namespace async {

/** A beacon and a task worker on one executor, wired together.

    @tparam AsyncTransport, Clock, CredentialStore, PlatformProbe, Timer as for
    `async::basic_beacon` and `async::basic_worker`; both parts get copies of the transport,
    clock and store handles (one store: a token refreshed by either is used by both).

    **Wiring.** The worker never bootstraps: the beacon does, and the worker takes the
    installation from the store. A command seen by either part reaches the other (each
    command id acts once; `sdk_options::on_command` is called once per id); the beacon's
    policy hash reaches the worker; the beacon's heartbeats carry the worker's metrics
    unless `sdk_options::metrics` is set. A terminate command or a revocation, seen by
    either part, stops the SDK as `async_stop()` does; `sdk_options::on_revoked` is called
    once.

    **Starting and stopping.** `async_start()` starts the beacon and, once its start has
    completed (the installation bootstrapped or recovered, or `start_timeout` passed), the
    worker; it completes when the worker's start has. With `sdk_options::auto_heartbeat`
    off no beacon runs and the worker starts from the recovery credentials of the options.
    `async_stop()` drains the worker (see `async::basic_worker::async_stop`), then stops the
    beacon (its final heartbeat) and completes. Both take any Asio completion token.

    Destroying the SDK begins the stop of both parts without calling the user's callbacks
    again (see the parts' destructors).

    @par Thread Safety
    Every member function is safe from any thread, except that destroying the object must
    not race with calls to it. The user's callbacks run on the strands of the parts.
*/
template <class AsyncTransport, class Clock = system_clock, class CredentialStore = credential_store,
          class PlatformProbe = auto_probe, class Timer = steady_timer>
class basic_sdk {
public:
    /// The beacon the SDK runs.
    using beacon_type = basic_beacon<AsyncTransport, Clock, CredentialStore, PlatformProbe, Timer>;
    /// The worker the SDK runs.
    using worker_type = basic_worker<AsyncTransport, Clock, CredentialStore, Timer>;
    /// The executor given (each part runs on a strand of it).
    using executor_type = boost::asio::any_io_executor;

    /** An SDK on `ex` whose policies are built from the options (the transport from
        `(ex, api_base_url, transport)`, the store from `credentials_file`); `worker` holds
        the worker's own options (what it leaves unset comes from the SDK's, as for
        `sekuire::basic_sdk::create_task_worker`).
        @throws sekuire::error when an option is out of range (`errc::invalid_option`) or the
        base URL is refused by the transport.
    */
    template <class Options = sdk_options, class = std::enable_if_t<std::is_convertible<Options, sdk_options>::value>>
    basic_sdk(const executor_type& ex, Options options, worker_options worker = {})
        : basic_sdk(ex, checked(std::move(options)), std::move(worker), built{}) {}

    /** An SDK on `ex` over the given policies; the parts' timers are built from `ex`.
        @throws sekuire::error when an option is out of range (`errc::invalid_option`).
    */
    template <class T = Timer, class = std::enable_if_t<std::is_constructible<T, const executor_type&>::value>>
    basic_sdk(const executor_type& ex, sdk_options options, worker_options worker, AsyncTransport transport,
              Clock clock = Clock(), CredentialStore store = CredentialStore(), PlatformProbe probe = PlatformProbe())
        : basic_sdk(ex, std::move(options), std::move(worker), std::move(transport), std::move(clock), std::move(store),
                    std::move(probe), Timer(boost::asio::any_io_executor(ex)), Timer(boost::asio::any_io_executor(ex))) {}

    /** An SDK on `ex` over the given policies and the two parts' timers.
        @throws sekuire::error when an option is out of range (`errc::invalid_option`).
    */
    basic_sdk(const executor_type& ex, sdk_options options, worker_options worker, AsyncTransport transport, Clock clock,
              CredentialStore store, PlatformProbe probe, Timer beacon_timer, Timer worker_timer)
        : wiring_(std::make_shared<wiring>()) {
        options = checked(std::move(options));
        detail::recover_from_env(options);
        wiring_->options = options;
        std::shared_ptr<wiring> w = wiring_;

        worker = detail::sdk_worker_options(options, std::move(worker));
        worker.gateway = options.gateway;
        worker.on_command = [w, user = std::move(worker.on_command)](const protocol::command& c) {
            detail::invoke_callback(user, w->options.logger, "on_command", c);
            w->from_worker(c);
        };
        worker.on_revoked = [w, user = std::move(worker.on_revoked)](const revocation_info& r) {
            detail::invoke_callback(user, w->options.logger, "on_revoked", r);
            w->revoked(r, false);
        };

        beacon_options bo = options;
        bo.on_command = [w](const protocol::command& c) { w->from_beacon(c); };
        bo.on_revoked = [w](const revocation_info& r) { w->revoked(r, true); };
        bo.on_policy_hash = [w](const std::string& h) {
            {
                std::lock_guard<std::mutex> lock(w->mutex);
                if (w->worker) w->worker->apply_policy_hash(h);
            }
            detail::invoke_callback(w->options.on_policy_hash, w->options.logger, "on_policy_hash", h);
        };
        if (!options.metrics)
            bo.metrics = [w] {
                std::lock_guard<std::mutex> lock(w->mutex);
                return w->worker ? w->worker->metrics() : protocol::heartbeat_metrics();
            };

        worker_ = std::make_unique<worker_type>(ex, std::move(worker), transport, clock, store, std::move(worker_timer));
        beacon_ = std::make_unique<beacon_type>(ex, std::move(bo), std::move(transport), std::move(clock), std::move(store),
                                                std::move(probe), std::move(beacon_timer));
        std::lock_guard<std::mutex> lock(w->mutex);
        w->beacon = beacon_.get();
        w->worker = worker_.get();
    }

    basic_sdk(const basic_sdk&) = delete;
    basic_sdk& operator=(const basic_sdk&) = delete;

    /// Begins the stop of both parts without calling the user's callbacks again. Never
    /// throws.
    ~basic_sdk() {
        {
            std::lock_guard<std::mutex> lock(wiring_->mutex);
            wiring_->beacon = nullptr;
            wiring_->worker = nullptr;
        }
        worker_.reset();
        beacon_.reset();
    }

private:
    struct built {};
    template <class Options>
    basic_sdk(const executor_type& ex, const Options& options, worker_options worker, built)
        : basic_sdk(ex, options, std::move(worker), AsyncTransport(ex, options.api_base_url, options.transport), Clock(),
                    detail::make_store<CredentialStore>(options.credentials_file), PlatformProbe()) {}

    static sdk_options checked(sdk_options o) {
        error_code ec;
        const std::string what = validate(o, ec);
        detail::throw_invalid_option(ec, what);
        return o;
    }

public:
    /// Registers the worker's synchronous handler of `capability` (see
    /// `async::basic_worker::on_task`). Thread-safe.
    void on_task(std::string capability, task_handler handler) { worker_->on_task(std::move(capability), std::move(handler)); }

    /// Registers the worker's asynchronous handler of `capability` (see
    /// `async::basic_worker::on_task_async`). Thread-safe.
    void on_task_async(std::string capability, async_task_handler handler) {
        worker_->on_task_async(std::move(capability), std::move(handler));
    }

    /** Starts the beacon, then the worker (see the class comment); completes (signature
        `void(error_code)`) when the worker's start has, with the first error of either
        (`errc::already_started` for a second start, `errc::shutting_down` after a stop).
        Completion never happens inside this call.
    */
    template <class CompletionToken>
    auto async_start(CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(error_code)>(
            [this](auto handler) {
                auto h = detail::erase_handler<error_code>(std::move(handler), worker_->get_executor());
                std::shared_ptr<wiring> w = wiring_;
                if (!w->options.auto_heartbeat) {
                    worker_->async_start(std::move(h));
                    return;
                }
                beacon_->async_start([w, h = std::move(h)](error_code ec) mutable {
                    std::lock_guard<std::mutex> lock(w->mutex);
                    if (ec || !w->worker) {
                        h(ec ? ec : error_code(errc::shutting_down));
                        return;
                    }
                    w->worker->async_start(std::move(h));
                });
            },
            token);
    }

    /** Stops gracefully: the worker drains, then the beacon sends its final heartbeat;
        completes (signature `void(error_code)`, never an error) when both have stopped.
        Completion never happens inside this call.
    */
    template <class CompletionToken>
    auto async_stop(CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, void(error_code)>(
            [w = wiring_, ex = worker_->get_executor()](auto handler) {
                w->stop(detail::erase_handler<error_code>(std::move(handler), ex));
            },
            token);
    }

    /// True when the beacon is authenticated and holds its lease. Thread-safe.
    bool is_connected() const { return beacon_->is_connected(); }
    /// The beacon's status. Thread-safe.
    beacon_status get_beacon_status() const { return beacon_->get_status(); }
    /// The worker's status. Thread-safe.
    worker_status get_worker_status() const { return worker_->get_status(); }
    /// The beacon.
    beacon_type& beacon() noexcept { return *beacon_; }
    /// The worker.
    worker_type& worker() noexcept { return *worker_; }
    /// The options the SDK was built with (validated).
    const sdk_options& options() const noexcept { return wiring_->options; }

private:
    // What the callbacks of the parts reach; the parts are forgotten before they are
    // destroyed.
    struct wiring : std::enable_shared_from_this<wiring> {
        sdk_options options;
        std::mutex mutex;
        beacon_type* beacon = nullptr;
        worker_type* worker = nullptr;
        bool revoked_once = false;
        bool stopping = false;
        bool stopped = false;
        std::vector<detail::erased_handler<error_code>> stop_waiters;

        void from_beacon(const protocol::command& c) {
            {
                std::lock_guard<std::mutex> lock(mutex);
                if (worker) worker->apply_command(c);
            }
            // The beacon runs a command id once (also one passed on by the worker).
            detail::invoke_callback(options.on_command, options.logger, "on_command", c);
            if (c.type == protocol::command_type::terminate) stop(nullptr);
        }

        void from_worker(const protocol::command& c) {
            {
                std::lock_guard<std::mutex> lock(mutex);
                if (beacon) beacon->apply_command(c); // calls from_beacon once for a new id
            }
            if (c.type == protocol::command_type::terminate) stop(nullptr);
        }

        void revoked(const revocation_info& r, bool by_beacon) {
            const protocol::revocation rv{r.reason, r.shutdown_timeout.count()};
            {
                std::lock_guard<std::mutex> lock(mutex);
                if (by_beacon && worker) worker->apply_revocation(rv);
                if (!by_beacon && beacon) beacon->apply_revocation(rv);
                if (revoked_once) return;
                revoked_once = true;
            }
            detail::invoke_callback(options.on_revoked, options.logger, "on_revoked", r);
            stop(nullptr);
        }

        // The worker drains, then the beacon stops; every waiter completes at the end.
        void stop(detail::erased_handler<error_code> h) {
            std::unique_lock<std::mutex> lock(mutex);
            if (stopped) {
                lock.unlock();
                if (h) h(error_code());
                return;
            }
            if (h) stop_waiters.push_back(std::move(h));
            if (stopping || !worker || !beacon) return;
            stopping = true;
            beacon->set_reported_status(protocol::heartbeat_status::draining);
            std::weak_ptr<wiring> self = this->weak_from_this();
            worker->async_stop([self](error_code) {
                auto w = self.lock();
                if (!w) return;
                std::lock_guard<std::mutex> l(w->mutex);
                if (!w->beacon) return;
                w->beacon->async_stop([self](error_code) {
                    auto w2 = self.lock();
                    if (!w2) return;
                    std::vector<detail::erased_handler<error_code>> waiters;
                    {
                        std::lock_guard<std::mutex> l2(w2->mutex);
                        w2->stopped = true;
                        waiters.swap(w2->stop_waiters);
                    }
                    for (auto& x : waiters) x(error_code());
                });
            });
        }
    };

    std::shared_ptr<wiring> wiring_;
    std::unique_ptr<worker_type> worker_;
    std::unique_ptr<beacon_type> beacon_;
};

/// The asynchronous SDK over `beast_transport` and the default policies.
using sdk = basic_sdk<beast_transport>;

} // namespace async
} // namespace sekuire

#endif
