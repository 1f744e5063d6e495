// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_CORE_COMMON_HPP
#define SEKUIRE_CORE_COMMON_HPP

/// @file
/// What the plain cores (`beacon_core`, `worker_core`) share: the reading of the clocks
/// they are fed, and the classification of one HTTP exchange they are given.
///
/// The cores decide everything (the auth chain, pacing, the lease, commands, revocation,
/// tasks, results, the drain) and do nothing: they never send a request, read a clock,
/// touch a credential store or call a user callback. Their caller (a synchronous template,
/// an asynchronous one on an `io_context`, a test) feeds them the time and what came back,
/// performs the effects they ask for, and wakes them at the time they name. The shape is
/// that of the sans-I/O protocol libraries (h11, quinn-proto) and of Beast's
/// `basic_parser_base`.

#include <sekuire/clock.hpp>
#include <sekuire/config.hpp>
#include <sekuire/detail/auth.hpp>
#include <sekuire/error.hpp>
#include <sekuire/log.hpp>
#include <sekuire/transport.hpp>

#include <cstdint>
#include <string>

namespace sekuire {

/// Both clocks, read once by the caller of a core.
struct clock_reading {
    /// The steady clock: deadlines and timers.
    steady_time_point steady{};
    /// The wall clock: timestamps, compared with the backend's.
    wall_time_point wall{};
};

/// Reads both clocks of a Clock policy.
template <class Clock>
clock_reading read_clock(Clock& c) {
    return {c.steady_now(), c.wall_now()};
}

/// Identifies one operation a core asked for; its result names it back.
using operation_id = std::uint64_t;

/// One line a core wants logged (the caller hands it to the user's logger, if any).
struct log_line {
    /// Its severity.
    log_level level = log_level::info;
    /// The message; never holds a token in full.
    std::string text;
    /// A short stable name of what happened (`log_record::event`); static storage.
    const char* event = "";
    /// The installation the line is about (empty: none known yet).
    std::string installation_id;
    /// The task the line is about (empty: none).
    std::string task_id;
    /// That task's capability (empty: none, or the task was not at hand).
    std::string capability;
    /// That task's trace id (empty: none).
    std::string trace_id;
};

} // namespace sekuire

#endif
