// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_DETAIL_ERASED_HANDLER_HPP
#define SEKUIRE_DETAIL_ERASED_HANDLER_HPP

// A completion handler behind a std::function that, when called, posts the handler to its
// associated executor (keeping work on it counted until then). Asio 1.26's
// any_completion_handler cannot be posted to its associated executor (any_completion_executor
// lacks the requirements of post), so the executor is taken while the type is known.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace sekuire {
namespace detail {

/// A handler of signature `void(Args...)`, called at most once, through a post.
template <class... Args>
using erased_handler = std::function<void(Args...)>;

/** Erases `h`: the result posts `h(args...)` to `h`'s associated executor (`fallback` when
    none), with outstanding work counted on it until the call. */
template <class... Args, class Handler, class Executor>
erased_handler<Args...> erase_handler(Handler&& h, const Executor& fallback) {
    using handler_t = std::decay_t<Handler>;
    boost::asio::any_io_executor ex = boost::asio::prefer(boost::asio::get_associated_executor(h, fallback),
                                                          boost::asio::execution::outstanding_work.tracked);
    auto held = std::make_shared<handler_t>(std::forward<Handler>(h));
    return [held, ex](Args... args) {
        boost::asio::post(ex, [held, t = std::make_tuple(std::move(args)...)]() mutable {
            std::apply([&](auto&&... a) { std::move (*held)(std::move(a)...); }, std::move(t));
        });
    };
}

} // namespace detail
} // namespace sekuire

#endif
