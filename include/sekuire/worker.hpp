// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_WORKER_HPP
#define SEKUIRE_WORKER_HPP

/// @file
/// The TaskWorker with its default policies:
///
/// @code
/// #include <sekuire/worker.hpp>
/// auto w = sekuire::create_worker(sekuire::worker_options::from_env());
/// w->on_task("summarize", [](const sekuire::task_context&, const boost::json::value& input) {
///     return boost::json::value{{"summary", "..."}};
/// });
/// w->start();
/// @endcode
///
/// `sekuire::worker` is `basic_worker<httplib_transport, system_clock, credential_store,
/// thread_pool_executor>`; the pool has `max_concurrent_handlers` threads.

#include <sekuire/auto_probe.hpp>
#include <sekuire/basic_worker.hpp>
#include <sekuire/httplib_transport.hpp>

#include <memory>
#include <utility>

namespace sekuire {

/// The TaskWorker with the default policies.
using worker = basic_worker<>;

/** Builds a worker with the default policies from `options` (the seed's `createWorker`).
    Throws `sekuire::error` when the base URL is refused.
*/
inline std::unique_ptr<worker> create_worker(worker_options options) {
    if (!options.platform && !options.install_token.empty()) options.platform = auto_probe().probe();
    return std::make_unique<worker>(std::move(options));
}

} // namespace sekuire

#endif
