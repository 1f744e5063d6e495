// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_CONFIG_HPP
#define SEKUIRE_CONFIG_HPP

/// @file
/// Configuration macros shared by every sekuire header.

#include <boost/assert.hpp>

#if defined(_WIN32)
#error "sekuire supports POSIX systems only (Linux, macOS, the BSDs): its credential store uses flock() and <unistd.h>. See README.md."
#endif

#if defined(__cpp_concepts) && __cpp_concepts >= 201907L
/// Defined to 1 when the compiler has C++20 concepts; the policy requirements are then
/// also offered as concepts (`sekuire::transport_policy`, ...) for your own templates.
/// The library's template heads take plain `class` parameters and check the requirements
/// with one `static_assert` each (see fwd.hpp).
#define SEKUIRE_HAS_CONCEPTS 1
#else
#define SEKUIRE_HAS_CONCEPTS 0
#endif

#if defined(SEKUIRE_SEPARATE_COMPILATION)
#define SEKUIRE_DECL
#else
/** How the library's non-template functions are declared: `inline`, their bodies in the
    headers (header-only, the default). With `SEKUIRE_SEPARATE_COMPILATION` it is empty, and
    the bodies are compiled once, in the file that includes `<sekuire/src.hpp>`. */
#define SEKUIRE_DECL inline
#endif

/// Precondition checks (misuse of the API, not bad input). Defaults to `BOOST_ASSERT`.
#ifndef SEKUIRE_ASSERT
#define SEKUIRE_ASSERT(expr) BOOST_ASSERT(expr)
#endif

#endif
