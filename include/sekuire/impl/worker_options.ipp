// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_IMPL_WORKER_OPTIONS_IPP
#define SEKUIRE_IMPL_WORKER_OPTIONS_IPP

// The out-of-line members of worker_options.hpp: included by the header (header-only) or by
// <sekuire/src.hpp> (SEKUIRE_SEPARATE_COMPILATION).

#include <sekuire/worker_options.hpp>

namespace sekuire {

SEKUIRE_DECL worker_options::worker_options() = default;
SEKUIRE_DECL worker_options::worker_options(const worker_options&) = default;
SEKUIRE_DECL worker_options::worker_options(worker_options&&) noexcept = default;
SEKUIRE_DECL worker_options& worker_options::operator=(const worker_options&) = default;
SEKUIRE_DECL worker_options& worker_options::operator=(worker_options&&) noexcept = default;
SEKUIRE_DECL worker_options::~worker_options() = default;

} // namespace sekuire

#endif
