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
#include <sekuire/beacon.hpp>
#include <sekuire/fwd.hpp>
#include <sekuire/httplib_transport.hpp>
#include <sekuire/worker.hpp>

namespace sekuire {

// `sekuire::sdk` is declared in <sekuire/fwd.hpp>. With SEKUIRE_SEPARATE_COMPILATION,
// its members are compiled once, in the file that includes <sekuire/src.hpp>.
#if defined(SEKUIRE_SEPARATE_COMPILATION)
extern template class basic_sdk<>;
extern template basic_sdk<>::basic_sdk(sdk_options); // the options-only constructor
extern template basic_sdk<> basic_sdk<>::from_env<basic_sdk<>>();
#endif

} // namespace sekuire

#endif
