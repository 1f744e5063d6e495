// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_FWD_HPP
#define SEKUIRE_FWD_HPP

/// @file
/// Forward declarations of sekuire's class templates, with their default template
/// arguments written once, here (as nlohmann/json's `json_fwd.hpp` does).
///
/// Including this header is enough to name `sekuire::basic_beacon<>` (and the others) in a
/// declaration, also in C++20: the template heads take plain `class` parameters, so that
/// naming a specialization never needs the complete default policies; the requirements are
/// checked when a class is instantiated, one `static_assert` per requirement (and the
/// concepts `sekuire::transport_policy`, ... are there for your own templates). It names
/// the typedefs `sekuire::beacon`, `sekuire::worker` and `sekuire::sdk` too, and includes
/// nothing: not the policies, not httplib, not Boost.

namespace sekuire {

// The default policies, declared only: naming a template with its defaults needs no more.
class httplib_transport;
class system_clock;
class credential_store;
class auto_probe;
class thread_pool_executor;

/// The Beacon: bootstrap, lease heartbeats, token refresh, kill switch.
/// See `<sekuire/basic_beacon.hpp>`.
template <class Transport = httplib_transport, class Clock = system_clock, class CredentialStore = credential_store,
          class PlatformProbe = auto_probe>
class basic_beacon;

/// The TaskWorker: task stream, capability handlers, results, commands, policy gateway.
/// See `<sekuire/basic_worker.hpp>`.
template <class Transport = httplib_transport, class Clock = system_clock, class CredentialStore = credential_store,
          class Executor = thread_pool_executor>
class basic_worker;

/// A beacon and its task workers, wired together. See `<sekuire/basic_sdk.hpp>`.
template <class Transport = httplib_transport, class Clock = system_clock, class CredentialStore = credential_store,
          class PlatformProbe = auto_probe, class Executor = thread_pool_executor>
class basic_sdk;

/// The Beacon with the default policies (complete in `<sekuire/beacon.hpp>`).
using beacon = basic_beacon<>;
/// The TaskWorker with the default policies (complete in `<sekuire/worker.hpp>`).
using worker = basic_worker<>;
/// The SDK with the default policies (complete in `<sekuire/sdk.hpp>`).
using sdk = basic_sdk<>;

} // namespace sekuire

#endif
