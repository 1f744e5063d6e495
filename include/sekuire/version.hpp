// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_VERSION_HPP
#define SEKUIRE_VERSION_HPP

/// @file
/// Version of sekuire-cpp, as sent in `User-Agent` and in the `sdk` object of the protocol.

/// The version's major number.
#define SEKUIRE_VERSION_MAJOR 0
/// The version's minor number.
#define SEKUIRE_VERSION_MINOR 1
/// The version's patch number.
#define SEKUIRE_VERSION_PATCH 0
/// `major * 10000 + minor * 100 + patch`.
#define SEKUIRE_VERSION (SEKUIRE_VERSION_MAJOR * 10000 + SEKUIRE_VERSION_MINOR * 100 + SEKUIRE_VERSION_PATCH)
/// The version as text, `"major.minor.patch"`.
#define SEKUIRE_VERSION_STRING "0.1.0"

namespace sekuire {

/// The SDK name reported to the backend.
inline constexpr const char* sdk_name = "sekuire-cpp";
/// The SDK version reported to the backend.
inline constexpr const char* sdk_version = SEKUIRE_VERSION_STRING;

} // namespace sekuire

#endif
