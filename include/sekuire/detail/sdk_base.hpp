// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_SDK_BASE_HPP
#define SEKUIRE_DETAIL_SDK_BASE_HPP

// The part of basic_sdk's shared state that depends on none of its policies: the options,
// the gateway, the workers (held through detail::worker_base), the wiring that passes a
// command or a revocation to every part, the supervisor and the shutdown. It reaches the
// beacon through four virtual functions. Compiled once per program, as worker_base is.

#include <sekuire/beacon_options.hpp>
#include <sekuire/config.hpp>
#include <sekuire/detail/driver_support.hpp>
#include <sekuire/detail/worker_base.hpp>
#include <sekuire/policy_gateway.hpp>
#include <sekuire/protocol.hpp>
#include <sekuire/sdk_options.hpp>
#include <sekuire/worker_options.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sekuire {
namespace detail {

class sdk_base : public sdk_control {
public:
    // Marks the calling thread as running inside the SDK (a callback, the supervisor).
    using scope = inside_scope<sdk_base>;

    sdk_base(const sdk_base&) = delete;
    sdk_base& operator=(const sdk_base&) = delete;
    virtual ~sdk_base() = default;

    sdk_options options;
    policy_gateway gateway;
    std::vector<std::unique_ptr<worker_base>> workers; // only grows until the end

    // The beacon's options, wired to the SDK: its commands, revocations and policy hashes
    // reach every part; its heartbeat reports the workers' metrics.
    SEKUIRE_DECL beacon_options wire_beacon();
    // A new worker's options: inherited from the SDK, wired to it. `self` names the worker
    // once it is built.
    SEKUIRE_DECL worker_options wire_worker(worker_options wo, const std::shared_ptr<worker_base*>& self);
    // Registers a new worker and brings it to the SDK's present state.
    SEKUIRE_DECL void adopt_worker(std::unique_ptr<worker_base> w);
    // Starts the supervisor (unless the shutdown is over).
    SEKUIRE_DECL void start_supervisor();
    // basic_sdk::shutdown().
    SEKUIRE_DECL void shutdown() noexcept;
    // For the destructor of the template's state: the supervisor ends, then the workers go
    // (they call into the beacon, which the state destroys after them).
    SEKUIRE_DECL void release_workers() noexcept;

protected:
    explicit sdk_base(sdk_options o) : options(std::move(o)), gateway(options.gateway) {}

    virtual void beacon_apply_command(const protocol::command& c) = 0;
    virtual void beacon_apply_revocation(const protocol::revocation& r) = 0;
    virtual void beacon_draining() = 0; // reports draining in its heartbeats
    virtual void beacon_stop() = 0;

private:
    template <class F>
    void for_each_worker(F&& f) {
        std::vector<worker_base*> ws;
        {
            std::lock_guard<std::mutex> lock(mutex);
            for (auto& w : workers) ws.push_back(w.get());
        }
        for (auto* w : ws) f(*w);
    }

    SEKUIRE_DECL bool called_from_inside() const;
    SEKUIRE_DECL void on_command(const protocol::command& c, worker_base* from);
    SEKUIRE_DECL void on_revoked(const revocation_info& r, worker_base* from);
    SEKUIRE_DECL protocol::heartbeat_metrics worker_metrics();
    SEKUIRE_DECL void supervise() noexcept;
    SEKUIRE_DECL void shut_down() noexcept;
};

} // namespace detail
} // namespace sekuire

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#include <sekuire/detail/impl/sdk_base.ipp>
#endif

#endif
