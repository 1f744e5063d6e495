// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_SRC_HPP
#define SEKUIRE_SRC_HPP

/// @file
/// Separate compilation (as Boost.Beast's `<boost/beast/src.hpp>`): include this header in
/// exactly one `.cpp` file of a program, and define `SEKUIRE_SEPARATE_COMPILATION` for
/// every file of the program (the compiler's `-D`). That file then holds the compiled
/// members of `sekuire::beacon`, `sekuire::worker` and `sekuire::sdk`, which the other
/// files only declare (`extern template`), and the library's non-template code (the bodies
/// in the `impl/*.ipp` files, which the headers include in header-only mode): the other files
/// compile faster and the program holds one copy. Templates over other policies are still
/// instantiated where they are used (they use that compiled code too).
///
/// CMake does it for you: link `sekuire::sekuire_compiled` instead of `sekuire::sekuire`.

#if !defined(SEKUIRE_SEPARATE_COMPILATION)
#error "<sekuire/src.hpp> is for SEKUIRE_SEPARATE_COMPILATION builds: define it for every file of the program (or link sekuire::sekuire_compiled)"
#endif

#include <sekuire/beacon.hpp>
#include <sekuire/sdk.hpp>
#include <sekuire/worker.hpp>

// The non-template code, compiled here once (header-only, the headers include it).
#include <sekuire/core/impl/beacon_core.ipp>
#include <sekuire/impl/protocol.ipp>
#include <sekuire/detail/impl/proxy.ipp>
#include <sekuire/detail/impl/http_common.ipp>
#include <sekuire/impl/time.ipp>
#include <sekuire/detail/impl/auth.ipp>
#include <sekuire/core/impl/auth_chain.ipp>
#include <sekuire/core/impl/worker_core.ipp>
#include <sekuire/detail/impl/sdk_base.ipp>
#include <sekuire/detail/impl/worker_base.ipp>
#include <sekuire/impl/file_store.ipp>
#include <sekuire/impl/httplib_transport.ipp>
#include <sekuire/impl/beacon_options.ipp>
#include <sekuire/impl/worker_options.ipp>
#include <sekuire/impl/sdk_options.ipp>
#include <sekuire/impl/policy_gateway.ipp>

// Explicit instantiations, not new entities: Doxygen would take them for undocumented
// declarations.
/// @cond SEKUIRE_INSTANTIATIONS
namespace sekuire {

template class basic_beacon<>;
template class basic_worker<>;
template class basic_sdk<>;
// The member templates a program with the default policies uses: the options-only
// constructors, the factory and from_env().
template basic_beacon<>::basic_beacon(beacon_options);
template basic_worker<>::basic_worker(worker_options);
template basic_sdk<>::basic_sdk(sdk_options);
template basic_sdk<> basic_sdk<>::from_env<basic_sdk<>>();
template std::unique_ptr<worker> create_worker<worker>(worker_options);
template std::unique_ptr<worker> create_worker<worker>(worker_options, credential_store);

} // namespace sekuire
/// @endcond

#endif
