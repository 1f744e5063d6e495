// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_BEACON_HPP
#define SEKUIRE_BEACON_HPP

/// @file
/// The Beacon with its default policies:
///
/// @code
/// #include <sekuire/beacon.hpp>
/// sekuire::beacon b{sekuire::beacon_options::from_env()};
/// b.start();
/// @endcode
///
/// `sekuire::beacon` is `basic_beacon<httplib_transport, system_clock, credential_store,
/// auto_probe>`: HTTPS through cpp-httplib and OpenSSL, the system clocks, an in-memory
/// store (a `file_store` when `credentials_file` or `SEKUIRE_CREDENTIALS_FILE` is set),
/// and automatic platform detection.

#include <sekuire/auto_probe.hpp>
#include <sekuire/basic_beacon.hpp>
#include <sekuire/fwd.hpp>
#include <sekuire/httplib_transport.hpp>

namespace sekuire {

// `sekuire::beacon` is declared in <sekuire/fwd.hpp>. With SEKUIRE_SEPARATE_COMPILATION,
// its members are compiled once, in the file that includes <sekuire/src.hpp>.
#if defined(SEKUIRE_SEPARATE_COMPILATION)
extern template class basic_beacon<>;
extern template basic_beacon<>::basic_beacon(beacon_options); // the options-only constructor
#endif

} // namespace sekuire

#endif
