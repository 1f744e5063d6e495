// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_CLOCK_HPP
#define SEKUIRE_CLOCK_HPP

/// @file
/// The Clock policy: wall time, steady time, and an interruptible wait.
///
/// @par Requirements
/// A type `C` is a Clock when, for `c` an lvalue of `C`, `lk` a
/// `std::unique_lock<std::mutex>&` that holds its mutex, `cv` a `std::condition_variable&`,
/// `d` a `steady_time_point` and `p` a callable `bool()`:
///
/// | expression                  | type                 | semantics |
/// |-----------------------------|----------------------|-----------|
/// | `C(c)`                      |                      | copyable; copies read the same time (a fake clock is a handle to shared state) |
/// | `c.wall_now()`              | `wall_time_point`    | calendar time: token and lease expiry, timestamps sent to the backend. May jump. |
/// | `c.steady_now()`            | `steady_time_point`  | monotonic time: intervals, backoff, timeouts. Never goes back. |
/// | `c.wait_until(lk, cv, d, p)`| `bool`               | blocks until `p()` is true (checked with `lk` held, after each notification of `cv`) or steady time reaches `d`; returns `p()`. A stop request is a notification of `cv` after which `p()` is true. |
///
/// `sekuire::system_clock` is the default; `testing::fake_clock` moves only when a test
/// tells it to.

#include <sekuire/config.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <type_traits>
#include <utility>

namespace sekuire {

/// Calendar time.
using wall_time_point = std::chrono::system_clock::time_point;
/// Monotonic time.
using steady_time_point = std::chrono::steady_clock::time_point;

/** The default Clock: `std::chrono::system_clock` and `std::chrono::steady_clock`.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe.
*/
class system_clock {
public:
    /// Calendar time now.
    wall_time_point wall_now() const noexcept { return std::chrono::system_clock::now(); }
    /// Monotonic time now.
    steady_time_point steady_now() const noexcept { return std::chrono::steady_clock::now(); }

    /// Waits on `cv` until `pred()` or until steady time reaches `deadline`; returns `pred()`.
    template <class Pred>
    bool wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, steady_time_point deadline,
                    Pred pred) const {
        return cv.wait_until(lock, deadline, std::move(pred));
    }
};

namespace detail {

/// A predicate with nothing beyond `bool operator()()`, used to check Clock types.
struct wait_predicate_archetype {
    bool operator()() const { return true; }
};

template <class T, class = void>
struct clock_has_wall_now : std::false_type {};
template <class T>
struct clock_has_wall_now<T, std::void_t<decltype(std::declval<T&>().wall_now())>>
    : std::is_same<decltype(std::declval<T&>().wall_now()), wall_time_point> {};

template <class T, class = void>
struct clock_has_steady_now : std::false_type {};
template <class T>
struct clock_has_steady_now<T, std::void_t<decltype(std::declval<T&>().steady_now())>>
    : std::is_same<decltype(std::declval<T&>().steady_now()), steady_time_point> {};

template <class T, class = void>
struct clock_has_wait_until : std::false_type {};
template <class T>
struct clock_has_wait_until<
    T, std::void_t<decltype(std::declval<T&>().wait_until(
           std::declval<std::unique_lock<std::mutex>&>(), std::declval<std::condition_variable&>(),
           std::declval<steady_time_point>(), std::declval<wait_predicate_archetype>()))>>
    : std::is_convertible<decltype(std::declval<T&>().wait_until(
                              std::declval<std::unique_lock<std::mutex>&>(), std::declval<std::condition_variable&>(),
                              std::declval<steady_time_point>(), std::declval<wait_predicate_archetype>())),
                          bool> {};

} // namespace detail

/// True when `T` meets the Clock requirements.
template <class T>
struct is_clock : std::bool_constant<std::is_copy_constructible<T>::value && detail::clock_has_wall_now<T>::value &&
                                     detail::clock_has_steady_now<T>::value &&
                                     detail::clock_has_wait_until<T>::value> {};

/// Instantiating this names every Clock requirement that `T` misses.
template <class T>
struct check_clock {
    static_assert(std::is_copy_constructible<T>::value, "Clock requirements not met: T must be copy constructible");
    static_assert(detail::clock_has_wall_now<T>::value, "Clock requirements not met: missing `wall_time_point wall_now()`");
    static_assert(detail::clock_has_steady_now<T>::value,
                  "Clock requirements not met: missing `steady_time_point steady_now()`");
    static_assert(detail::clock_has_wait_until<T>::value,
                  "Clock requirements not met: missing `bool wait_until(std::unique_lock<std::mutex>&, "
                  "std::condition_variable&, steady_time_point, Pred)`");
    /// Always true: naming it instantiates the checks above.
    static constexpr bool value = true;
};

#if SEKUIRE_HAS_CONCEPTS
/// The Clock requirements as a C++20 concept. The macro below names it in a template head of
/// your own (`template <SEKUIRE_... T>`), and is plain `class` before C++20.
template <class T>
concept clock_policy = is_clock<T>::value;
/// Names `clock_policy` in a template head of your own:
/// `template <SEKUIRE_CLOCK T>`. Plain `class` before C++20.
#define SEKUIRE_CLOCK ::sekuire::clock_policy
#else
#define SEKUIRE_CLOCK class
#endif

} // namespace sekuire

#endif
