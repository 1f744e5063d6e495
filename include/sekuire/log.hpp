// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_LOG_HPP
#define SEKUIRE_LOG_HPP

/// @file
/// The logging hook. Library code prints nothing on its own: it hands lines to a
/// `log_handler` when the user installed one. Lines never contain a token in full.

#include <functional>
#include <string_view>

namespace sekuire {

/// Severity of a log line.
enum class log_level { debug, info, warning, error };

/// The name of a level (`"debug"`, `"info"`, `"warning"`, `"error"`).
inline const char* to_string(log_level l) noexcept {
    switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
    }
    return "info";
}

/** Receives log lines. Called from the thread that logs (a beacon's or worker's own
    thread); it must not block for long and must not call back into the object that logs.
*/
using log_handler = std::function<void(log_level level, std::string_view message)>;

} // namespace sekuire

#endif
