// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_IMPL_SDK_OPTIONS_IPP
#define SEKUIRE_IMPL_SDK_OPTIONS_IPP

// The out-of-line members of sdk_options.hpp: included by the header (header-only) or by
// <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/sdk_options.hpp>

namespace sekuire {

SEKUIRE_DECL sdk_options::sdk_options() = default;
SEKUIRE_DECL sdk_options::sdk_options(const sdk_options&) = default;
SEKUIRE_DECL sdk_options::sdk_options(sdk_options&&) noexcept = default;
SEKUIRE_DECL sdk_options& sdk_options::operator=(const sdk_options&) = default;
SEKUIRE_DECL sdk_options& sdk_options::operator=(sdk_options&&) noexcept = default;
SEKUIRE_DECL sdk_options::~sdk_options() = default;

} // namespace sekuire

#endif
