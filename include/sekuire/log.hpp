// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_LOG_HPP
#define SEKUIRE_LOG_HPP

/// @file
/// The logging hook, and ready loggers. Library code prints nothing on its own: it hands
/// records to a `log_handler` when the user installed one. Records never contain a token in
/// full.
///
/// A handler takes either the plain form, `(log_level, std::string_view message)`, or the
/// structured form, `(const log_record&)`, whose optional fields (installation id, task id,
/// capability, event, trace id) say what the line is about. Either converts to
/// `log_handler`; a plain handler gets the message of every record, which is complete on its
/// own. `stderr_logger()` and `stream_logger()` are ready handlers that write one line per
/// record, as text, logfmt (`key=value`) or JSON lines.

#include <sekuire/time.hpp>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

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

/** Reads a level name: `debug`, `info`, `warning` (or `warn`), `error`, in any case.
    Returns false, leaving `out` alone, for anything else. Pure function. */
inline bool parse_log_level(std::string_view s, log_level& out) noexcept {
    auto is = [&](std::string_view name) {
        if (s.size() != name.size()) return false;
        for (std::size_t i = 0; i < s.size(); ++i) {
            char c = s[i];
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
            if (c != name[i]) return false;
        }
        return true;
    };
    if (is("debug")) out = log_level::debug;
    else if (is("info")) out = log_level::info;
    else if (is("warning") || is("warn")) out = log_level::warning;
    else if (is("error")) out = log_level::error;
    else return false;
    return true;
}

/** One log line with its context. The string views are valid during the handler's call
    only; a handler that keeps them copies them. Empty fields are absent.

    `message` is a complete sentence on its own (a plain handler sees nothing else); the
    other fields repeat what it is about in a form a machine can filter on.
*/
struct log_record {
    /// The severity.
    log_level level = log_level::info;
    /// The line itself; never holds a token in full.
    std::string_view message;
    /// The installation the line is about (`inst_...`).
    std::string_view installation_id;
    /// The task the line is about.
    std::string_view task_id;
    /// The capability of that task, or the capability the line is about.
    std::string_view capability;
    /// A short stable name of what happened (`heartbeat_failed`, `task_completed`, ...),
    /// for filtering; the wording of `message` may change, the event names do not.
    std::string_view event;
    /// The trace id of the task, when it has one.
    std::string_view trace_id;
};

/** Receives log records. Built from a plain handler, `void(log_level, std::string_view)`, or
    a structured one, `void(const log_record&)` (a callable taking both forms is taken as
    structured). Empty when default-constructed, built from `nullptr` or from an empty
    `std::function` or null function pointer.

    Called from the thread that logs (a beacon's or worker's own thread, a task handler's
    thread); it must not block for long and must not call back into the object that logs.
    Copies share the callable.
*/
class log_handler {
public:
    /// An empty handler: nothing is logged.
    log_handler() noexcept = default;
    /// An empty handler.
    log_handler(std::nullptr_t) noexcept {}

    /// A handler from a callable taking a `log_record` (structured) or a level and a
    /// message (plain).
    template <class F, class D = std::decay_t<F>,
              class = std::enable_if_t<!std::is_same<D, log_handler>::value &&
                                       (std::is_invocable<D&, const log_record&>::value ||
                                        std::is_invocable<D&, log_level, std::string_view>::value)>>
    log_handler(F&& f) { // NOLINT(google-explicit-constructor): lambdas convert, as to std::function
        if constexpr (std::is_constructible<bool, const D&>::value) {
            if (!static_cast<bool>(f)) return;
        }
        if constexpr (std::is_invocable<D&, const log_record&>::value) {
            fn_ = std::function<void(const log_record&)>(std::forward<F>(f));
            structured_ = true;
        } else {
            fn_ = [g = D(std::forward<F>(f))](const log_record& r) mutable { g(r.level, r.message); };
        }
    }

    /// Logs a record.
    void operator()(const log_record& r) const {
        if (fn_) fn_(r);
    }

    /// Logs a line without context (a record holding only the level and the message).
    void operator()(log_level level, std::string_view message) const {
        log_record r;
        r.level = level;
        r.message = message;
        (*this)(r);
    }

    /// Whether a callable is installed.
    explicit operator bool() const noexcept { return static_cast<bool>(fn_); }

    /// Whether the callable takes records (and so sees the context fields).
    bool structured() const noexcept { return structured_; }

private:
    std::function<void(const log_record&)> fn_;
    bool structured_ = false;
};

/// The line format of the ready loggers.
enum class log_format {
    /// `program: level: message key=value ...`, for people: the context fields the message
    /// does not already hold, but the event, at the end.
    text,
    /// `time=... level=... program=... msg="..." key=value ...`: logfmt.
    logfmt,
    /// One JSON object per line: `{"time":"...","level":"...","msg":"...",...}`.
    json,
};

/// The name of a format (`"text"`, `"logfmt"`, `"json"`).
inline const char* to_string(log_format f) noexcept {
    switch (f) {
    case log_format::text: return "text";
    case log_format::logfmt: return "logfmt";
    case log_format::json: return "json";
    }
    return "text";
}

/** Reads a format name (`text`, `logfmt`, `json`, lower case). Returns false, leaving `out`
    alone, for anything else. Pure function. */
inline bool parse_log_format(std::string_view s, log_format& out) noexcept {
    if (s == "text") out = log_format::text;
    else if (s == "logfmt") out = log_format::logfmt;
    else if (s == "json") out = log_format::json;
    else return false;
    return true;
}

/// Options of the ready loggers.
struct log_sink_options {
    /// Records below this level are dropped.
    log_level min_level = log_level::info;
    /// The line format.
    log_format format = log_format::text;
    /// The program's name: the `program: ` prefix of text lines, the `program` field of
    /// the others. Empty: none.
    std::string program;
    /// Whether text lines start with the time (logfmt and JSON lines always carry it).
    bool text_timestamps = false;
};

namespace detail {

inline void append_hex_escape(std::string& out, unsigned char c, const char* prefix) {
    static const char digits[] = "0123456789abcdef";
    out += prefix;
    out += digits[c >> 4];
    out += digits[c & 15];
}

// The length of the valid UTF-8 sequence starting at s[i], or 0 when none starts there
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    if (c < 0x80) return 1;
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (i + n > s.size()) return 0;
    if (b(i + 1) < lo || b(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k)
        if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
    return n;
}

/// Appends `s` as the inside of a JSON string: quotes, backslashes and control characters
/// escaped, invalid UTF-8 replaced by U+FFFD, so that the result is always valid JSON.
inline void append_json_escaped(std::string& out, std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20 || c == 0x7F)
                    append_hex_escape(out, c, "\\u00");
                else
                    out += static_cast<char>(c);
            }
            ++i;
            continue;
        }
        const std::size_t n = utf8_sequence_length(s, i);
        if (n == 0) {
            out += "\\ufffd";
            ++i;
        } else {
            out.append(s.data() + i, n);
            i += n;
        }
    }
}

/// Appends `s` with control characters written as `\n`, `\t`, `\xNN`, so that one record
/// is one line whatever the message holds (a backend's error text, say). With `quote_for`
/// logfmt, backslashes and quotes are escaped too.
inline void append_line_safe(std::string& out, std::string_view s, bool logfmt_quoted) {
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20 || c == 0x7F) append_hex_escape(out, c, "\\x");
        else if (logfmt_quoted && (c == '"' || c == '\\')) {
            out += '\\';
            out += ch;
        } else {
            out += ch;
        }
    }
}

/// Appends a logfmt value: bare when it has no space, quote, backslash, `=` or control
/// character (and is not empty), quoted and escaped otherwise.
inline void append_logfmt_value(std::string& out, std::string_view v) {
    bool bare = !v.empty();
    for (const char ch : v) {
        const auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c == 0x7F || c == '"' || c == '\\' || c == '=') bare = false;
    }
    if (bare) {
        out += v;
        return;
    }
    out += '"';
    append_line_safe(out, v, true);
    out += '"';
}

struct log_field {
    const char* key;
    std::string_view value;
};

inline void context_fields(const log_record& r, log_field (&f)[5]) {
    f[0] = {"installation_id", r.installation_id};
    f[1] = {"task_id", r.task_id};
    f[2] = {"capability", r.capability};
    f[3] = {"trace_id", r.trace_id};
    f[4] = {"event", r.event};
}

} // namespace detail

/** Formats a record as one line (with its trailing `\n`) in the format of `o`, stamped
    with `now` (logfmt and JSON always, text when `text_timestamps`). The level filter of
    `o` is not applied here. Pure function.

    JSON lines are valid JSON whatever the record holds: control characters are escaped and
    invalid UTF-8 is replaced by U+FFFD. Text and logfmt lines escape control characters, so
    that a record is always exactly one line.
*/
inline std::string format_log_record(const log_record& r, const log_sink_options& o,
                                     std::chrono::system_clock::time_point now) {
    detail::log_field fields[5];
    detail::context_fields(r, fields);
    std::string out;
    out.reserve(64 + r.message.size());
    switch (o.format) {
    case log_format::text:
        if (o.text_timestamps) {
            out += format_rfc3339(now);
            out += ' ';
        }
        if (!o.program.empty()) {
            detail::append_line_safe(out, o.program, false);
            out += ": ";
        }
        out += to_string(r.level);
        out += ": ";
        detail::append_line_safe(out, r.message, false);
        for (const auto& f : fields) {
            // The event name is for machines, and a value the message already holds is not
            // repeated: people read the message.
            if (f.value.empty() || f.key == std::string_view("event") ||
                r.message.find(f.value) != std::string_view::npos)
                continue;
            out += ' ';
            out += f.key;
            out += '=';
            detail::append_logfmt_value(out, f.value);
        }
        break;
    case log_format::logfmt:
        out += "time=";
        out += format_rfc3339(now);
        out += " level=";
        out += to_string(r.level);
        if (!o.program.empty()) {
            out += " program=";
            detail::append_logfmt_value(out, o.program);
        }
        out += " msg=";
        detail::append_logfmt_value(out, r.message);
        for (const auto& f : fields) {
            if (f.value.empty()) continue;
            out += ' ';
            out += f.key;
            out += '=';
            detail::append_logfmt_value(out, f.value);
        }
        break;
    case log_format::json:
        out += "{\"time\":\"";
        out += format_rfc3339(now);
        out += "\",\"level\":\"";
        out += to_string(r.level);
        out += '"';
        if (!o.program.empty()) {
            out += ",\"program\":\"";
            detail::append_json_escaped(out, o.program);
            out += '"';
        }
        out += ",\"msg\":\"";
        detail::append_json_escaped(out, r.message);
        out += '"';
        for (const auto& f : fields) {
            if (f.value.empty()) continue;
            out += ",\"";
            out += f.key;
            out += "\":\"";
            detail::append_json_escaped(out, f.value);
            out += '"';
        }
        out += '}';
        break;
    }
    out += '\n';
    return out;
}

/** A ready logger writing one line per record to `out` (which must outlive it), in the
    format of `o`, dropping records below `o.min_level`.

    @par Thread Safety
    Safe: calls from several threads (also through copies) are serialized, and every line
    is written whole.
*/
inline log_handler stream_logger(std::ostream& out, log_sink_options o = {}) {
    struct state {
        std::ostream* out;
        log_sink_options options;
        std::mutex m;
    };
    auto s = std::make_shared<state>();
    s->out = &out;
    s->options = std::move(o);
    return [s](const log_record& r) {
        if (r.level < s->options.min_level) return;
        const std::string line = format_log_record(r, s->options, std::chrono::system_clock::now());
        std::lock_guard<std::mutex> lock(s->m);
        s->out->write(line.data(), static_cast<std::streamsize>(line.size()));
        s->out->flush();
    };
}

/** A ready logger writing one line per record to standard error (C `stderr`, unbuffered
    per line), in the format of `o`, dropping records below `o.min_level`.

    @par Thread Safety
    Safe: calls from several threads are serialized, and every line is written whole with
    one `fwrite`.
*/
inline log_handler stderr_logger(log_sink_options o = {}) {
    struct state {
        log_sink_options options;
        std::mutex m;
    };
    auto s = std::make_shared<state>();
    s->options = std::move(o);
    return [s](const log_record& r) {
        if (r.level < s->options.min_level) return;
        const std::string line = format_log_record(r, s->options, std::chrono::system_clock::now());
        std::lock_guard<std::mutex> lock(s->m);
        std::fwrite(line.data(), 1, line.size(), stderr);
        std::fflush(stderr);
    };
}

} // namespace sekuire

#endif
