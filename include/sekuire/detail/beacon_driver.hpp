// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_BEACON_DRIVER_HPP
#define SEKUIRE_DETAIL_BEACON_DRIVER_HPP

// What every driver of a beacon_core does the same way: hand its notifications to the
// user's callbacks.

#include <sekuire/core/beacon_core.hpp>
#include <sekuire/detail/driver_support.hpp>

#include <functional>
#include <vector>

namespace sekuire {
namespace detail {

/// Calls the beacon's callbacks for its notifications, in order; `status` reads the status
/// for `on_status_change`.
inline void deliver(const beacon_options& o, const std::vector<beacon_effect>& ready,
                    const std::function<beacon_status()>& status) {
    for (const beacon_effect& e : ready) {
        switch (e.what) {
        case beacon_effect::type::log: deliver_log(o.logger, e.line); break;
        case beacon_effect::type::status_changed:
            invoke_callback(o.on_status_change, o.logger, "on_status_change", status());
            break;
        case beacon_effect::type::command: invoke_callback(o.on_command, o.logger, "on_command", e.command); break;
        case beacon_effect::type::revoked: invoke_callback(o.on_revoked, o.logger, "on_revoked", e.revocation); break;
        case beacon_effect::type::policy_hash: invoke_callback(o.on_policy_hash, o.logger, "on_policy_hash", e.text); break;
        default: break;
        }
    }
}

} // namespace detail
} // namespace sekuire

#endif
