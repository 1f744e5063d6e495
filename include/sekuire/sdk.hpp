// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_SDK_HPP
#define SEKUIRE_SDK_HPP

/// @file
/// The SDK with its default policies (the seed's `SekuireSDK`):
///
/// @code
/// #include <sekuire/sdk.hpp>
/// auto sdk = sekuire::sdk::from_env();
/// sdk.start();
/// auto& worker = sdk.create_task_worker();
/// worker.on_task("summarize", handler);
/// worker.start();
/// sdk.wait();          // until terminate, revocation or request_shutdown()
/// @endcode

#include <sekuire/auto_probe.hpp>
#include <sekuire/basic_sdk.hpp>
#include <sekuire/httplib_transport.hpp>

namespace sekuire {

/// The SDK with the default policies.
using sdk = basic_sdk<>;

} // namespace sekuire

#endif
