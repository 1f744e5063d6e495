// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_IMPL_BEACON_OPTIONS_IPP
#define SEKUIRE_IMPL_BEACON_OPTIONS_IPP

// The out-of-line members of beacon_options.hpp: included by the header (header-only) or by
// <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/beacon_options.hpp>

namespace sekuire {

SEKUIRE_DECL beacon_options::beacon_options() = default;
SEKUIRE_DECL beacon_options::beacon_options(const beacon_options&) = default;
SEKUIRE_DECL beacon_options::beacon_options(beacon_options&&) noexcept = default;
SEKUIRE_DECL beacon_options& beacon_options::operator=(const beacon_options&) = default;
SEKUIRE_DECL beacon_options& beacon_options::operator=(beacon_options&&) noexcept = default;
SEKUIRE_DECL beacon_options::~beacon_options() = default;

} // namespace sekuire

#endif
