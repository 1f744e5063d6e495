// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_SPDLOG_HPP
#define SEKUIRE_SPDLOG_HPP

/// @file
/// An optional adapter from sekuire's logging hook to spdlog (1.10 or later). Include it
/// only in a program that uses spdlog, and link spdlog yourself (`spdlog::spdlog`): sekuire
/// does not depend on spdlog.
///
/// ```cpp
/// #include <sekuire/spdlog.hpp>
/// options.logger = sekuire::spdlog_logger(spdlog::default_logger());
/// ```

#include <sekuire/log.hpp>

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <utility>

namespace sekuire {

/// The spdlog level of a sekuire level (`warning` is `spdlog::level::warn`, `error` is
/// `spdlog::level::err`).
inline spdlog::level::level_enum to_spdlog_level(log_level l) noexcept {
    switch (l) {
    case log_level::debug: return spdlog::level::debug;
    case log_level::info: return spdlog::level::info;
    case log_level::warning: return spdlog::level::warn;
    case log_level::error: return spdlog::level::err;
    }
    return spdlog::level::info;
}

/** A `log_handler` that logs every record through `logger` (which it keeps alive), at the
    matching level: the message, then the record's context as `key=value` pairs
    (`installation_id=inst_1 task_id=task_9 ...`, logfmt-quoted when needed). spdlog's own
    level and sinks decide what is written. A null `logger` gives an empty handler.

    @par Thread Safety
    As `logger`: spdlog's `_mt` loggers are safe from any thread.
*/
inline log_handler spdlog_logger(std::shared_ptr<spdlog::logger> logger) {
    if (!logger) return log_handler();
    return [logger = std::move(logger)](const log_record& r) {
        const auto level = to_spdlog_level(r.level);
        if (!logger->should_log(level)) return;
        std::string line;
        detail::append_line_safe(line, r.message, false);
        detail::log_field fields[5];
        detail::context_fields(r, fields);
        for (const auto& f : fields) {
            if (f.value.empty()) continue;
            line += ' ';
            line += f.key;
            line += '=';
            detail::append_logfmt_value(line, f.value);
        }
        logger->log(level, "{}", line);
    };
}

} // namespace sekuire

#endif
