// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_WORKER_HPP
#define SEKUIRE_WORKER_HPP

/// @file
/// The TaskWorker with its default policies:
///
/// @code
/// #include <sekuire/worker.hpp>
/// auto w = sekuire::create_worker(sekuire::worker_options::from_env());   // or (options, store)
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
#include <sekuire/fwd.hpp>
#include <sekuire/httplib_transport.hpp>

#include <memory>
#include <utility>

namespace sekuire {

// `sekuire::worker` is declared in <sekuire/fwd.hpp>.

/** Builds a worker with the default policies from `options` (the seed's `createWorker`),
    with a store of its own: a `file_store` at `credentials_file` when set, else in memory.
    A `token_provider` in the options supplies the runtime token of each request (the
    seed's `tokenProvider`).

    @throws sekuire::error when the base URL is refused or an option is out of range
    (`errc::invalid_option`).

    (A template, so that a translation unit including this header without calling it does
    not instantiate the worker.)
*/
template <class Worker = worker>
std::unique_ptr<Worker> create_worker(worker_options options) {
    if (!options.platform && !options.install_token.empty()) options.platform = auto_probe().probe();
    return std::make_unique<Worker>(std::move(options));
}

/** As `create_worker(worker_options)`, sharing `store` (the seed's `credentialsStore`): give
    the beacon of the same process the same store, and a token refreshed by either is used
    by both at once, with concurrent refreshes collapsed into one call.

    @throws sekuire::error as `create_worker(worker_options)`.
*/
template <class Worker = worker>
std::unique_ptr<Worker> create_worker(worker_options options, credential_store store) {
    error_code ec;
    const std::string what = validate(options, ec); // before a thread or a connection exists
    detail::throw_invalid_option(ec, what);
    if (!options.platform && !options.install_token.empty()) options.platform = auto_probe().probe();
    auto transport = httplib_transport(options.api_base_url, options.transport);
    const std::size_t threads = options.max_concurrent_handlers;
    return std::make_unique<Worker>(std::move(options), std::move(transport), system_clock{}, std::move(store),
                                    thread_pool_executor(threads));
}

// With SEKUIRE_SEPARATE_COMPILATION, `sekuire::worker` and the factory are compiled once, in
// the file that includes <sekuire/src.hpp>.
#if defined(SEKUIRE_SEPARATE_COMPILATION)
extern template class basic_worker<>;
extern template basic_worker<>::basic_worker(worker_options); // the options-only constructor
extern template std::unique_ptr<worker> create_worker<worker>(worker_options);
extern template std::unique_ptr<worker> create_worker<worker>(worker_options, credential_store);
#endif

} // namespace sekuire

#endif
