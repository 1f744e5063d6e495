// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_FWD_HPP
#define SEKUIRE_FWD_HPP

/// @file
/// Forward declarations of sekuire's class templates, with their default template
/// arguments written once, here (as nlohmann/json's `json_fwd.hpp` does).
///
/// Including this header is enough to name `sekuire::basic_beacon<...>` in a declaration.
/// The typedefs `sekuire::beacon` and `sekuire::worker` live in `<sekuire/beacon.hpp>`
/// and `<sekuire/worker.hpp>`: naming them checks the policy requirements, which needs
/// the complete default policies.

#include <sekuire/clock.hpp>
#include <sekuire/credential_store.hpp>
#include <sekuire/executor.hpp>
#include <sekuire/platform.hpp>
#include <sekuire/transport.hpp>

namespace sekuire {

class httplib_transport;
class auto_probe;

/// The Beacon: bootstrap, lease heartbeats, token refresh, kill switch.
/// See `<sekuire/basic_beacon.hpp>`.
template <SEKUIRE_TRANSPORT Transport = httplib_transport, SEKUIRE_CLOCK Clock = system_clock,
          SEKUIRE_CREDENTIAL_STORE CredentialStore = credential_store,
          SEKUIRE_PLATFORM_PROBE PlatformProbe = auto_probe>
class basic_beacon;

/// The TaskWorker: task stream, capability handlers, results, commands, policy gateway.
/// See `<sekuire/basic_worker.hpp>`.
template <SEKUIRE_TRANSPORT Transport = httplib_transport, SEKUIRE_CLOCK Clock = system_clock,
          SEKUIRE_CREDENTIAL_STORE CredentialStore = credential_store,
          SEKUIRE_EXECUTOR Executor = thread_pool_executor>
class basic_worker;

} // namespace sekuire

#endif
