// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_SSE_HPP
#define SEKUIRE_SSE_HPP

/// @file
/// An incremental parser for Server-Sent Events (`text/event-stream`), following the
/// WHATWG HTML rules for interpreting an event stream, with bounded memory.
///
/// @code
/// sekuire::sse::parser p;
/// p.feed(chunk, [&](const sekuire::sse::event& e) { handle(e.type, e.data); });
/// // connection lost:
/// p.reset();   // then reconnect with the header Last-Event-ID: p.last_event_id()
/// @endcode

#include <sekuire/error.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace sekuire {
namespace sse {

/** One dispatched event.

    `type` is the `event:` field of the event, or `"message"` when it had none (never
    empty). `data` is its `data:` lines joined with LF, without a final LF. `last_event_id`
    is the stream's last event ID when the event was dispatched (the latest valid `id:`
    field, possibly from an earlier event). Values are raw bytes: invalid UTF-8 is passed
    through unchanged.
*/
struct event {
    std::string type;          ///< the event type, `"message"` by default
    std::string data;          ///< the data lines joined with LF
    std::string last_event_id; ///< the last event ID at dispatch time
};

/** Size bounds of a `parser`, in bytes.

    A line (without its line terminator) may be at most `max_line` bytes; an event's data
    (as dispatched: lines joined with LF) at most `max_event` bytes. So the event type and
    the last event ID are bounded by `max_line`, and a parser's buffers hold at most a few
    times `max_line` plus twice `max_event` bytes.
*/
struct parser_limits {
    std::size_t max_line = std::size_t(1) << 20;  ///< longest accepted line
    std::size_t max_event = std::size_t(1) << 20; ///< largest accepted event data
};

/** An incremental, push-style Server-Sent Events parser.

    Bytes are fed in chunks of any size, split anywhere (also between CR and LF, or inside
    the UTF-8 byte order mark); each complete event is handed to a callback as soon as its
    terminating blank line arrives. The rules are those of the WHATWG HTML standard
    ("Interpreting an event stream"):

    - one UTF-8 BOM at the start of the stream is dropped (a second one is data);
    - CR, LF and CRLF each end a line;
    - a line starting with `:` is a comment; a line with no colon is a field named by the
      whole line with an empty value; otherwise the field name ends at the first colon, and
      one space (only one) after the colon is removed from the value;
    - `data` appends its value and a LF to the data buffer; `event` sets the event type;
      `id` sets the last event ID unless the value contains a NUL; `retry` sets the
      reconnection time if the value is ASCII digits only; other fields are ignored;
    - a blank line dispatches the event: nothing is dispatched when the data buffer is
      empty (the event type is still reset); the event type defaults to `message`; the
      final LF of the data is removed;
    - an event not completed by a blank line when the stream ends is never dispatched.

    Choices where the standard leaves room:

    - `last_event_id()` is the standard's "last event ID string": it takes the value of the
      latest `id:` field when a blank line ends the event that carried it (even if nothing
      is dispatched because the data is empty). So after a connection is lost mid-event,
      it names the last complete event, which is what a `Last-Event-ID` header must send.
    - `reset()` starts a new connection: it drops the incomplete line and event, and
      expects a new BOM, but keeps `last_event_id()` and `retry()`.
    - An empty `retry` value is ignored; one larger than `max_retry` (24 hours) counts as
      `max_retry`.
      `retry` takes effect when its line is read, not at dispatch.
    - Bytes are not decoded: invalid UTF-8 and NUL bytes are passed through as they are.

    Memory is bounded by `parser_limits`: when a line would exceed `max_line`, or the
    pending event's data would exceed `max_event`, `feed` discards the pending line and
    event and throws `sekuire::error` with `errc::stream_line_too_long`. The parser then
    refuses input (every `feed` throws the same error) until `reset()`: the caller is
    expected to drop the connection, call `reset()` and reconnect.

    `feed` runs in time linear in the chunk's size and never rescans what it buffered. A
    line that ends in the chunk where it starts is read in place; only a line cut by the
    chunk's end is copied, once, into the line buffer, except a `data` line: once its
    field name and the space after it are known, the rest of its value goes straight to
    the data buffer as it arrives. So each byte of data is copied once, however the chunks
    cut it. Field values are copied once into their buffers, which are reused from event
    to event.

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Unsafe.
*/
class parser {
public:
    /// The largest `retry` value kept; larger values are clamped to it.
    static constexpr std::chrono::milliseconds max_retry{std::chrono::hours(24)};

    /// A parser with the default limits (1 MiB lines and events). Does not allocate.
    parser() noexcept = default;

    /// A parser with the given limits.
    explicit parser(parser_limits limits) noexcept : limits_(limits) {}

    /** Parses `bytes`, the next chunk of the stream, calling `on_event(const event&)` for
        each event completed by it, in order.

        The event passed to `on_event` is valid only during the call: copy what you keep.
        `on_event` must not call `feed` or `reset` on this parser; it may read `retry()` and
        `last_event_id()`. Accepts any callable, held by reference, not copied.

        @throws sekuire::error with `errc::stream_line_too_long` when a line exceeds
        `max_line` or an event's data exceeds `max_event`, or when the parser failed so
        before and was not `reset()`. Events completed earlier in the chunk were
        dispatched; the rest of the chunk and the pending event are dropped.
        @throws whatever `on_event` throws: the exception propagates out of `feed` and the
        rest of the chunk is dropped (the event that was being dispatched counts as
        dispatched). The parser should then be `reset()` with the connection.
    */
    template <class OnEvent>
    void feed(std::string_view bytes, OnEvent&& on_event) {
        using callable = std::remove_reference_t<OnEvent>;
        if constexpr (std::is_function_v<callable>) {
            callable* function = &on_event; // passed on as a pointer, which is an object
            feed(bytes, function);
        } else {
            static_assert(std::is_invocable_v<callable&, const event&>,
                          "sse::parser::feed: on_event must be callable as on_event(const sse::event&)");
            sink s;
            // const_cast only to pass through void*; `invoke` casts back to the original type.
            s.target = const_cast<void*>(static_cast<const void*>(std::addressof(on_event)));
            s.invoke = [](void* target, const event& e) { (*static_cast<callable*>(target))(e); };
            feed_impl(bytes, s);
        }
    }

    /// The reconnection time set by the last valid `retry:` field, if any (kept by `reset()`).
    /// Thread safety as the class.
    std::optional<std::chrono::milliseconds> retry() const noexcept { return retry_; }

    /// The last event ID string: the value of the last valid `id:` field of a completed event,
    /// empty if none. Kept by `reset()`; send it as `Last-Event-ID` when reconnecting.
    const std::string& last_event_id() const noexcept { return last_event_id_; }

    /** Starts a new connection: drops the incomplete line and event, clears a failure from
        the limits, and expects a new byte order mark. Keeps `last_event_id()` and `retry()`.
        Does not throw.
    */
    void reset() noexcept {
        line_.clear();
        data_line_ = false;
        line_length_ = 0;
        data_.clear();
        type_.clear();
        id_pending_ = false;
        skip_lf_ = false;
        bom_matched_ = 0;
        bom_done_ = false;
        failed_ = false;
    }

private:
    struct sink {
        void* target;
        void (*invoke)(void*, const event&);
    };

    static constexpr std::string_view bom_{"\xEF\xBB\xBF", 3};

    void fail() {
        line_.clear();
        data_line_ = false;
        line_length_ = 0;
        data_.clear();
        type_.clear();
        id_pending_ = false;
        failed_ = true;
        throw error(make_error_code(errc::stream_line_too_long));
    }

    void feed_impl(std::string_view in, const sink& s) {
        if (failed_) throw error(make_error_code(errc::stream_line_too_long));
        std::size_t i = 0;
        const std::size_t n = in.size();
        if (!bom_done_) {
            // The BOM may arrive split over chunks: hold the matched prefix in bom_matched_.
            while (i < n && bom_matched_ < bom_.size() && in[i] == bom_[bom_matched_]) {
                ++bom_matched_;
                ++i;
            }
            if (bom_matched_ == bom_.size()) {
                bom_done_ = true;
            } else if (i < n) {
                bom_done_ = true;
                // A partial match followed by something else: those bytes were line content.
                append_partial(bom_.substr(0, bom_matched_));
            } else {
                return;
            }
        }
        if (skip_lf_ && i < n) {
            skip_lf_ = false;
            if (in[i] == '\n') ++i;
        }
        // The next '\n' and '\r' at or after i (n: none), found with memchr and kept until
        // passed, so that each byte is scanned once for each, at memchr's speed.
        const auto next_of = [&](char c, std::size_t from) -> std::size_t {
            if (from >= n) return n;
            const void* p = std::memchr(in.data() + from, c, n - from);
            return p ? static_cast<std::size_t>(static_cast<const char*>(p) - in.data()) : n;
        };
        std::size_t next_lf = next_of('\n', i), next_cr = next_of('\r', i);
        while (i < n) {
            if (next_lf < i) next_lf = next_of('\n', i);
            if (next_cr < i) next_cr = next_of('\r', i);
            const std::size_t end = (std::min)(next_lf, next_cr);
            if (end == n) {
                hold_partial(in.substr(i));
                return;
            }
            const std::string_view piece = in.substr(i, end - i);
            // Settle the CRLF state before the line is processed: if on_event throws, the
            // parser stays at a line boundary.
            i = end + 1;
            if (in[end] == '\r') {
                if (i < n) {
                    if (in[i] == '\n') ++i;
                } else {
                    skip_lf_ = true;
                }
            }
            if (data_line_) {
                // The end of a data line whose value went to the data buffer as it came.
                append_data(piece);
                data_.push_back('\n');
                data_line_ = false;
                line_length_ = 0;
            } else if (line_.empty()) {
                if (piece.size() > limits_.max_line) fail();
                process_line(piece, s);
            } else {
                append_partial(piece);
                process_line(line_, s);
                line_.clear();
            }
        }
    }

    void append_partial(std::string_view piece) {
        if (piece.size() > limits_.max_line - line_.size()) fail();
        line_.append(piece.data(), piece.size());
    }

    // Keeps the start of a line that the chunk's end cut, until the rest comes.
    void hold_partial(std::string_view piece) {
        if (data_line_) {
            append_data(piece);
            return;
        }
        append_partial(piece);
        // A data line, once "data:" and the byte after it are known: its value so far goes
        // to the data buffer, and so will the rest (a long value is not copied twice).
        constexpr std::string_view data_field = "data:";
        if (line_.size() > data_field.size() && std::string_view(line_).substr(0, data_field.size()) == data_field) {
            std::string_view value = std::string_view(line_).substr(data_field.size());
            if (value.front() == ' ') value.remove_prefix(1);
            line_length_ = line_.size() - value.size();
            data_line_ = true;
            append_data(value);
            line_.clear();
        }
    }

    // Appends part of a data line's value to the data buffer, within both bounds: the line
    // (`line_length_` counts the bytes it had so far) and the event's data.
    void append_data(std::string_view part) {
        if (part.size() > limits_.max_line - line_length_) fail();
        if (data_.size() > limits_.max_event || part.size() > limits_.max_event - data_.size()) fail();
        line_length_ += part.size();
        data_.append(part.data(), part.size());
    }

    void process_line(std::string_view line, const sink& s) {
        if (line.empty()) {
            dispatch(s);
            return;
        }
        if (line.front() == ':') return;
        std::string_view field = line;
        std::string_view value;
        const std::size_t colon = line.find(':');
        if (colon != std::string_view::npos) {
            field = line.substr(0, colon);
            value = line.substr(colon + 1);
            if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        }
        if (field == "data") {
            if (value.size() > limits_.max_event || data_.size() > limits_.max_event - value.size()) fail();
            data_.append(value.data(), value.size());
            data_.push_back('\n');
        } else if (field == "event") {
            type_.assign(value.data(), value.size());
        } else if (field == "id") {
            if (value.find('\0') == std::string_view::npos) {
                id_buffer_.assign(value.data(), value.size());
                id_pending_ = true;
            }
        } else if (field == "retry") {
            parse_retry(value);
        }
    }

    void parse_retry(std::string_view value) noexcept {
        if (value.empty()) return;
        constexpr std::uint64_t bound = static_cast<std::uint64_t>(max_retry.count());
        std::uint64_t ms = 0;
        bool too_large = false;
        for (const char c : value) {
            if (c < '0' || c > '9') return;
            if (!too_large) {
                ms = ms * 10 + static_cast<std::uint64_t>(c - '0');
                too_large = ms > bound; // ms stays below 10 * bound + 9: no overflow
            }
        }
        // A value past the bound is the bound: ignoring a "come back much later" would make
        // the client come back sooner.
        retry_ = too_large ? max_retry : std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(ms));
    }

    void dispatch(const sink& s) {
        if (id_pending_) {
            last_event_id_.swap(id_buffer_);
            id_pending_ = false;
        }
        if (data_.empty()) {
            type_.clear();
            return;
        }
        // Swap buffers with the outgoing event so that their capacity is reused next time.
        current_.data.swap(data_);
        data_.clear();
        current_.data.pop_back();
        if (type_.empty()) {
            current_.type.assign("message");
        } else {
            current_.type.swap(type_);
            type_.clear();
        }
        current_.last_event_id.assign(last_event_id_);
        s.invoke(s.target, static_cast<const event&>(current_));
    }

    parser_limits limits_{};
    std::string line_;          // the incomplete line carried over from the previous chunk
    // Whether the incomplete line is a data line whose value is appended to data_ as it
    // comes (line_ is then empty), and how long that line is so far.
    bool data_line_ = false;
    std::size_t line_length_ = 0;
    std::string data_;          // the data buffer, with a LF after each line
    std::string type_;          // the event type buffer
    // The standard's last event ID buffer is id_buffer_ while id_pending_, else equal to
    // last_event_id_. Keeping them apart lets an abandoned event's id be dropped: a
    // Last-Event-ID must never name an event that was not received whole.
    std::string id_buffer_;
    std::string last_event_id_; // the last event ID string
    event current_;             // the event being dispatched; its buffers are reused
    std::optional<std::chrono::milliseconds> retry_;
    std::size_t bom_matched_ = 0;
    bool bom_done_ = false;
    bool skip_lf_ = false;
    bool id_pending_ = false;
    bool failed_ = false;
};

} // namespace sse
} // namespace sekuire

#endif
