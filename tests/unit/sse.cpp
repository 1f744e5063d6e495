// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/sse.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace std::string_literals;

namespace {

using sekuire::sse::event;
using sekuire::sse::parser;
using sekuire::sse::parser_limits;
using ms = std::chrono::milliseconds;

// What a whole stream produced: compared as text so that a failure shows both sides.
struct outcome {
    std::vector<event> events;
    std::optional<ms> retry;
    std::string last_event_id;
    bool too_long = false; // feed threw errc::stream_line_too_long
};

std::string escape(std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f && c != '\\' && c != '"') {
            out += c;
        } else {
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 15];
        }
    }
    return out;
}

std::string describe(const outcome& o) {
    std::string s;
    for (const event& e : o.events) {
        s += "{type \"" + escape(e.type) + "\" data \"" + escape(e.data) + "\" id \"" + escape(e.last_event_id) +
             "\"} ";
    }
    s += "retry " + (o.retry ? std::to_string(o.retry->count()) : std::string("none"));
    s += " last_event_id \"" + escape(o.last_event_id) + "\"";
    if (o.too_long) s += " THREW stream_line_too_long";
    return s;
}

event ev(std::string data, std::string type = "message", std::string id = "") {
    return event{std::move(type), std::move(data), std::move(id)};
}

outcome expect(std::vector<event> events, std::string last_id = "", std::optional<ms> retry = std::nullopt,
               bool too_long = false) {
    return outcome{std::move(events), retry, std::move(last_id), too_long};
}

// Feeds `stream` to a fresh parser in pieces ending at `cuts` (then the rest).
outcome run(std::string_view stream, const std::vector<std::size_t>& cuts, parser_limits limits) {
    parser p(limits);
    outcome o;
    std::size_t from = 0;
    auto collect = [&](const event& e) { o.events.push_back(e); };
    try {
        for (const std::size_t cut : cuts) {
            p.feed(stream.substr(from, cut - from), collect);
            from = cut;
        }
        p.feed(stream.substr(from), collect);
    } catch (const sekuire::error& e) {
        BOOST_TEST_REQUIRE(e.code() == sekuire::error_code(sekuire::errc::stream_line_too_long));
        o.too_long = true;
    }
    o.retry = p.retry();
    o.last_event_id = p.last_event_id();
    return o;
}

std::string cuts_text(const std::vector<std::size_t>& cuts) {
    std::string s = "cuts at";
    for (const std::size_t c : cuts) s += " " + std::to_string(c);
    return s;
}

// Feeds `stream` whole, byte by byte, split in two at every position and (for short streams)
// in three at every pair of positions; every way must give exactly `want`.
void check_stream(std::string_view stream, const outcome& want, parser_limits limits = {},
                  std::size_t three_way_up_to = 64) {
    const std::string want_text = describe(want);
    std::string how = "whole";
    std::string got_text = describe(run(stream, {}, limits));
    auto attempt = [&](const std::vector<std::size_t>& cuts) {
        if (got_text != want_text) return;
        got_text = describe(run(stream, cuts, limits));
        how = cuts_text(cuts);
    };
    const std::size_t n = stream.size();
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < n; ++i) every.push_back(i);
    attempt(every);
    for (std::size_t i = 0; i <= n; ++i) attempt({i});
    if (n <= three_way_up_to) {
        for (std::size_t i = 0; i <= n; ++i) {
            for (std::size_t j = i; j <= n; ++j) attempt({i, j});
        }
    }
    BOOST_TEST_INFO("stream \"" << escape(stream) << "\", " << how);
    BOOST_TEST(got_text == want_text);
}

// A literal reading of the standard over a whole stream (no chunks), for differential tests.
outcome reference(std::string s) {
    if (s.compare(0, 3, "\xEF\xBB\xBF") == 0) s.erase(0, 3);
    std::vector<std::string> lines;
    std::string cur;
    for (std::size_t k = 0; k < s.size(); ++k) {
        if (s[k] == '\r' || s[k] == '\n') {
            lines.push_back(cur);
            cur.clear();
            if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
        } else {
            cur += s[k];
        }
    }
    outcome o;
    std::string data, type, id_buffer;
    for (const std::string& line : lines) {
        if (line.empty()) {
            o.last_event_id = id_buffer;
            if (!data.empty()) {
                data.pop_back();
                o.events.push_back(ev(data, type.empty() ? "message" : type, o.last_event_id));
            }
            data.clear();
            type.clear();
            continue;
        }
        if (line[0] == ':') continue;
        const std::size_t colon = line.find(':');
        const std::string name = line.substr(0, colon);
        std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
        if (!value.empty() && value[0] == ' ') value.erase(0, 1);
        if (name == "data") {
            data += value + "\n";
        } else if (name == "event") {
            type = value;
        } else if (name == "id") {
            if (value.find('\0') == std::string::npos) id_buffer = value;
        } else if (name == "retry") {
            const bool digits =
                !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
            const std::size_t first = value.find_first_not_of('0');
            const std::string significant = first == std::string::npos ? "0" : value.substr(first);
            if (digits && significant.size() <= 9 && std::stoull(significant) <= 86400000ULL) {
                o.retry = ms(static_cast<ms::rep>(std::stoull(significant)));
            }
        }
    }
    return o;
}

// Feeds `chunks` to `p`, collecting events; returns whether feed threw stream_line_too_long.
template <class... Chunks>
bool feed_all(parser& p, std::vector<event>& out, const Chunks&... chunks) {
    try {
        (p.feed(chunks, [&](const event& e) { out.push_back(e); }), ...);
    } catch (const sekuire::error& e) {
        BOOST_TEST(e.code() == sekuire::error_code(sekuire::errc::stream_line_too_long));
        return true;
    }
    return false;
}

struct counting_handler {
    int* calls;
    void operator()(const event&) const { ++*calls; }
};

int free_function_calls = 0;
void free_function(const event&) { ++free_function_calls; }

} // namespace

BOOST_AUTO_TEST_SUITE(sse)

// ---- fields and dispatch ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(single_event_defaults_to_message) {
    check_stream("data: hello\n\n", expect({ev("hello")}));
    check_stream("data:hello\n\n", expect({ev("hello")}));
}

BOOST_AUTO_TEST_CASE(multi_line_data_is_joined_with_lf) {
    check_stream("data: YHOO\ndata: +2\ndata: 10\n\n", expect({ev("YHOO\n+2\n10")}));
    // The final LF is removed once; empty data lines keep their LF.
    check_stream("data: a\ndata\ndata: b\n\n", expect({ev("a\n\nb")}));
    check_stream("data: a\ndata:\n\n", expect({ev("a\n")}));
}

BOOST_AUTO_TEST_CASE(data_without_colon_and_with_empty_values) {
    // `data`, `data:` and `data: ` are the same field with an empty value.
    check_stream("data\n\n", expect({ev("")}));
    check_stream("data:\n\n", expect({ev("")}));
    check_stream("data: \n\n", expect({ev("")}));
    // Two empty data lines are one LF.
    check_stream("data\ndata\n\n", expect({ev("\n")}));
    // The example of the standard: empty, a single LF, and an undispatched last block.
    check_stream("data\n\ndata\ndata\n\ndata:", expect({ev(""), ev("\n")}));
}

BOOST_AUTO_TEST_CASE(only_one_leading_space_is_removed) {
    check_stream("data:  two\n\n", expect({ev(" two")}));
    check_stream("data:\tx\n\n", expect({ev("\tx")}));
    check_stream("data: x \n\n", expect({ev("x ")}));
    check_stream("data:test\n\ndata: test\n\n", expect({ev("test"), ev("test")}));
}

BOOST_AUTO_TEST_CASE(value_is_everything_after_the_first_colon) {
    check_stream("data: a:b: c\n\n", expect({ev("a:b: c")}));
    check_stream("data::\n\n", expect({ev(":")}));
}

BOOST_AUTO_TEST_CASE(event_type) {
    check_stream("event: add\ndata: 73857293\n\n", expect({ev("73857293", "add")}));
    // The type applies to one event only.
    check_stream("event: add\ndata: 1\n\ndata: 2\n\n", expect({ev("1", "add"), ev("2")}));
    // The last event field wins; an empty value means the default.
    check_stream("event: a\nevent: b\ndata: x\n\n", expect({ev("x", "b")}));
    check_stream("event: a\nevent\ndata: x\n\n", expect({ev("x")}));
    check_stream("event:  spaced\ndata: x\n\n", expect({ev("x", " spaced")}));
}

BOOST_AUTO_TEST_CASE(event_without_data_is_not_dispatched_but_resets_type) {
    check_stream("event: lonely\n\n", expect({}));
    check_stream("event: lonely\n\ndata: x\n\n", expect({ev("x")}));
    check_stream("\n\n\n", expect({}));
}

BOOST_AUTO_TEST_CASE(comments_are_ignored) {
    check_stream(": test stream\n\ndata: first\n\n", expect({ev("first")}));
    check_stream(":\ndata: a\n: inside an event\ndata: b\n\n", expect({ev("a\nb")}));
    check_stream(":data: not data\n\n", expect({}));
    // A comment line is not blank: it does not end the event.
    check_stream("data: a\n:\ndata: b\n\n", expect({ev("a\nb")}));
}

BOOST_AUTO_TEST_CASE(unknown_fields_are_ignored) {
    check_stream("foo: bar\ndata: x\nbaz\n\n", expect({ev("x")}));
    // Field names are exact and case-sensitive; a space before the colon is part of the name.
    check_stream("Data: x\n\n", expect({}));
    check_stream("data : x\n\n", expect({}));
    check_stream(" data: x\n\n", expect({}));
    check_stream("dat: x\ndatas: y\n\n", expect({}));
    check_stream("this line is ignored\ndata: x\n\n", expect({ev("x")}));
}

// ---- line ends ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(cr_lf_and_crlf_end_lines) {
    check_stream("data: a\r\rdata: b\n\ndata: c\r\n\r\n", expect({ev("a"), ev("b"), ev("c")}));
    check_stream("data: a\r\ndata: b\rdata: c\n\n", expect({ev("a\nb\nc")}));
    // LF CR is two line ends (a blank line), CR LF is one.
    check_stream("data: a\n\rdata: b\r\n\r\n", expect({ev("a"), ev("b")}));
    check_stream("data: a\r\n\r\ndata: b\r\r", expect({ev("a"), ev("b")}));
    // CR LF LF is a line end and a blank line.
    check_stream("data: a\r\n\ndata: b\n\r\n", expect({ev("a"), ev("b")}));
}

BOOST_AUTO_TEST_CASE(cr_at_chunk_end_then_lf) {
    parser p;
    std::vector<event> got;
    BOOST_TEST(!feed_all(p, got, "data: a\r"s, "\n"s, "\r"s, "\n"s));
    BOOST_REQUIRE_EQUAL(got.size(), 1u);
    BOOST_TEST(got[0].data == "a");
    // The LF after a CR is swallowed even after empty chunks in between.
    BOOST_TEST(!feed_all(p, got, "data: b\r"s, ""s, ""s, "\ndata: c\n\n"s));
    BOOST_REQUIRE_EQUAL(got.size(), 2u);
    BOOST_TEST(got[1].data == "b\nc");
}

// ---- byte order mark --------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(bom_is_dropped_once) {
    check_stream("\xEF\xBB\xBF" "data: x\n\n", expect({ev("x")}));
    // A second BOM is content: here it makes the field name unknown.
    check_stream("\xEF\xBB\xBF\xEF\xBB\xBF" "data: x\n\ndata: y\n\n", expect({ev("y")}));
    // A BOM in a value is data.
    check_stream("data: \xEF\xBB\xBF" "x\n\n", expect({ev("\xEF\xBB\xBF" "x")}));
    // A BOM after the first line is content.
    check_stream("\n\xEF\xBB\xBF" "data: x\n\n", expect({}));
    // A BOM alone, or a blank line after it.
    check_stream("\xEF\xBB\xBF", expect({}));
    check_stream("\xEF\xBB\xBF\ndata: x\n\n", expect({ev("x")}));
}

BOOST_AUTO_TEST_CASE(partial_bom_is_content) {
    // The first bytes of a BOM followed by something else are kept as line content.
    check_stream("\xEF\xBB" "data: x\n\n", expect({}));
    check_stream("\xEF" "data: x\n\n", expect({}));
    check_stream("\xEF\xEF\xBB\xBF" "data: x\n\n", expect({}));
    check_stream("\xEF\xBB\n" "data: x\n\n", expect({ev("x")}));
    check_stream("\xEF\xBB\r\n" "data: x\n\n", expect({ev("x")}));
    // Here the line is a field named "\xEF\xBB" (unknown), not a comment.
    check_stream("\xEF\xBB:\ndata: x\n\n", expect({ev("x")}));
    check_stream("\xEF\xBB\xBF:\ndata: x\n\n", expect({ev("x")}));
    check_stream("data\xEF\xBB\n\n", expect({}));
}

BOOST_AUTO_TEST_CASE(bom_is_dropped_again_after_reset) {
    parser p;
    std::vector<event> got;
    BOOST_TEST(!feed_all(p, got, "\xEF\xBB"s, "\xBF" "data: a\n\n"s));
    p.reset();
    BOOST_TEST(!feed_all(p, got, "\xEF"s, "\xBB\xBF" "data: b\n\n"s, "\xEF\xBB\xBF" "data: c\n\n"s));
    BOOST_REQUIRE_EQUAL(got.size(), 2u);
    BOOST_TEST(got[0].data == "a");
    BOOST_TEST(got[1].data == "b");
    // A partial BOM pending when reset() comes is forgotten.
    p.reset();
    BOOST_TEST(!feed_all(p, got, "\xEF\xBB"s));
    p.reset();
    BOOST_TEST(!feed_all(p, got, "data: d\n\n"s));
    BOOST_REQUIRE_EQUAL(got.size(), 3u);
    BOOST_TEST(got[2].data == "d");
}

// ---- id --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(id_persists_across_events) {
    // The example of the standard.
    check_stream(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
                 expect({ev("first event", "message", "1"), ev("second event"), ev(" third event")}));
    check_stream("id: 7\ndata: a\n\ndata: b\n\nevent: x\ndata: c\n\n",
                 expect({ev("a", "message", "7"), ev("b", "message", "7"), ev("c", "x", "7")}, "7"));
    // The id may come after the data; the last id field of an event wins.
    check_stream("data: a\nid: 1\nid: 2\n\n", expect({ev("a", "message", "2")}, "2"));
    check_stream("id:  x\ndata: a\n\n", expect({ev("a", "message", " x")}, " x"));
}

BOOST_AUTO_TEST_CASE(id_with_nul_is_ignored) {
    check_stream("id: 1\n\nid: a\0b\ndata: x\n\n"s, expect({ev("x", "message", "1")}, "1"));
    check_stream("id: \0\ndata: x\n\n"s, expect({ev("x")}));
    // NUL elsewhere is ordinary content.
    check_stream("data: a\0b\n\n"s, expect({ev("a\0b"s)}));
    check_stream("id: a\nda\0ta: x\n\n"s, expect({}, "a"));
}

BOOST_AUTO_TEST_CASE(id_is_committed_by_a_blank_line) {
    // An id in an event with no data still becomes the last event id at the blank line.
    check_stream("id: 5\n\n", expect({}, "5"));
    // An id in an incomplete event is not the last event id: that event was not received.
    check_stream("id: 1\ndata: a\n\nid: 2\ndata: b\n", expect({ev("a", "message", "1")}, "1"));
    // An empty id clears it.
    check_stream("id: 1\n\nid\n\n", expect({}, ""));
}

BOOST_AUTO_TEST_CASE(on_event_sees_the_new_last_event_id) {
    parser p;
    std::string seen;
    p.feed("id: 42\ndata: x\n\n", [&](const event&) { seen = p.last_event_id(); });
    BOOST_TEST(seen == "42");
}

// ---- retry -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(retry_takes_ascii_digits_only) {
    check_stream("retry: 1000\n", expect({}, "", ms(1000)));
    check_stream("retry:1000\n\n", expect({}, "", ms(1000)));
    check_stream("retry: 0\n", expect({}, "", ms(0)));
    check_stream("retry: 0001500\n", expect({}, "", ms(1500)));
    check_stream("retry: 10\nretry: 20\n", expect({}, "", ms(20)));
    // Invalid values are ignored and leave the previous value.
    for (const char* bad : {"retry: 10a\n", "retry: -1\n", "retry: +1\n", "retry:  1\n", "retry: 1 \n",
                            "retry: 1.5\n", "retry: \n", "retry\n", "retry: one thousand\n",
                            "retry: \xEF\xBC\x91\n", "retry: 0x10\n"}) {
        check_stream(bad, expect({}));
        check_stream("retry: 7\n"s + bad, expect({}, "", ms(7)));
    }
    // retry does not need a data field nor a blank line, and does not dispatch.
    check_stream("retry: 5\ndata: x\n", expect({}, "", ms(5)));
    check_stream("data: x\nretry: 5\n\n", expect({ev("x")}, "", ms(5)));
}

// A value past the bound is clamped to it (issue 10, item 5): ignoring a server's "come
// back much later" would make the client come back sooner.
BOOST_AUTO_TEST_CASE(retry_too_large_is_clamped) {
    BOOST_TEST((parser::max_retry == std::chrono::hours(24)));
    const ms max = parser::max_retry;
    check_stream("retry: 86400000\n", expect({}, "", ms(86400000)));
    check_stream("retry: 9\nretry: 86400001\n", expect({}, "", max));
    check_stream("retry: 9\nretry: 99999999999999999999999999999999\n", expect({}, "", max));
    check_stream("retry: 9\nretry: 18446744073709551616\n", expect({}, "", max));
    check_stream("retry: 9\nretry: 9223372036854775808\n", expect({}, "", max));
    // Overflowing digits followed by a non-digit: not a number, ignored.
    check_stream("retry: 9\nretry: 99999999999999999999x\n", expect({}, "", ms(9)));
    // Leading zeros do not count towards the bound.
    check_stream("retry: 00000000000000000000000000086400000\n", expect({}, "", ms(86400000)));
}

// ---- end of stream, reset ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(incomplete_event_is_dropped) {
    check_stream("data: x\n", expect({}));
    check_stream("data: x", expect({}));
    check_stream("data: x\r", expect({}));
    check_stream("data: a\n\ndata: b\n", expect({ev("a")}));
    check_stream("data: a\n\nevent: t\ndata: b", expect({ev("a")}));
}

BOOST_AUTO_TEST_CASE(reset_discards_the_pending_event_and_line) {
    parser p;
    std::vector<event> got;
    BOOST_TEST(!feed_all(p, got, "event: t\nid: 9\ndata: lost\n"s));
    p.reset();
    BOOST_TEST(!feed_all(p, got, "\n"s));
    BOOST_TEST(got.empty());
    // A pending partial line is dropped too.
    BOOST_TEST(!feed_all(p, got, "data: a\n\ndata: par"s));
    p.reset();
    BOOST_TEST(!feed_all(p, got, "tial\n\ndata: b\n\n"s));
    BOOST_REQUIRE_EQUAL(got.size(), 2u);
    BOOST_TEST(got[0].data == "a");
    BOOST_TEST(got[1].data == "b");
    BOOST_TEST(got[1].type == "message");
    BOOST_TEST(got[1].last_event_id == "");
    BOOST_TEST(p.last_event_id() == "");
}

BOOST_AUTO_TEST_CASE(reset_keeps_last_event_id_and_retry) {
    parser p;
    std::vector<event> got;
    BOOST_TEST(!feed_all(p, got, "retry: 3000\nid: 5\ndata: a\n\nid: 6\ndata: b\n"s));
    BOOST_TEST(p.last_event_id() == "5");
    p.reset();
    BOOST_TEST(p.last_event_id() == "5");
    BOOST_TEST((p.retry() == std::optional<ms>(ms(3000))));
    BOOST_TEST(!feed_all(p, got, "data: c\n\n"s));
    BOOST_REQUIRE_EQUAL(got.size(), 2u);
    BOOST_TEST(got[1].data == "c");
    BOOST_TEST(got[1].last_event_id == "5");
}

BOOST_AUTO_TEST_CASE(fresh_parser_state) {
    const parser p;
    BOOST_TEST(!p.retry().has_value());
    BOOST_TEST(p.last_event_id().empty());
    const parser_limits defaults;
    BOOST_TEST(defaults.max_line == std::size_t(1) << 20);
    BOOST_TEST(defaults.max_event == std::size_t(1) << 20);
}

// ---- callbacks ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(accepts_any_callable) {
    parser p;
    int calls = 0;
    counting_handler lvalue{&calls};
    const counting_handler const_lvalue{&calls};
    p.feed("data: 1\n\n", lvalue);
    p.feed("data: 2\n\n", const_lvalue);
    p.feed("data: 3\n\n", counting_handler{&calls});
    p.feed("data: 4\n\n", [&calls](const event&) mutable { ++calls; });
    auto mutable_lambda = [n = 0, &calls](const event&) mutable { n += 1; calls += n; };
    p.feed("data: 5\n\ndata: 6\n\n", mutable_lambda); // adds 1 then 2: one object, by reference
    free_function_calls = 0;
    p.feed("data: 7\n\n", free_function);
    p.feed("data: 8\n\n", &free_function);
    BOOST_TEST(calls == 7);
    BOOST_TEST(free_function_calls == 2);
}

BOOST_AUTO_TEST_CASE(exception_from_on_event_propagates_and_drops_the_chunk) {
    parser p;
    std::vector<std::string> seen;
    auto throwing = [&](const event& e) {
        seen.push_back(e.data);
        if (e.data == "a") throw std::runtime_error("handler failed");
    };
    BOOST_CHECK_THROW(p.feed("data: a\n\ndata: b\n\n", throwing), std::runtime_error);
    BOOST_TEST(seen == std::vector<std::string>{"a"});
    p.reset();
    p.feed("data: c\n\n", throwing);
    BOOST_TEST((seen == std::vector<std::string>{"a", "c"}));
}

BOOST_AUTO_TEST_CASE(event_buffers_are_independent_between_events) {
    // Buffers are reused from one event to the next: no value may leak into another.
    parser p;
    std::vector<event> got;
    BOOST_TEST(!feed_all(p, got, "event: long-type-name\ndata: long data here\nid: long-id\n\ndata: s\n\n"s));
    BOOST_REQUIRE_EQUAL(got.size(), 2u);
    BOOST_TEST(got[0].type == "long-type-name");
    BOOST_TEST(got[1].type == "message");
    BOOST_TEST(got[1].data == "s");
    BOOST_TEST(got[1].last_event_id == "long-id");
}

// ---- limits ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(line_at_the_limit_passes_one_over_throws) {
    const parser_limits limits{16, 1000};
    const std::string at = "data: " + std::string(10, 'x'); // 16 bytes
    check_stream(at + "\n\n", expect({ev(std::string(10, 'x'))}), limits);
    check_stream(at + "\r\n\r\n", expect({ev(std::string(10, 'x'))}), limits);
    check_stream("data: a\n\n" + at + "x\n\n", expect({ev("a")}, "", std::nullopt, true), limits);
    // Every kind of line is bounded: comments, unknown fields, ids, and an unterminated tail.
    check_stream(":" + std::string(16, 'c') + "\n", expect({}, "", std::nullopt, true), limits);
    check_stream(std::string(17, 'f'), expect({}, "", std::nullopt, true), limits);
    check_stream("id: 1\n\nid: " + std::string(13, '9') + "\n\n", expect({}, "1", std::nullopt, true), limits);
    // The BOM does not count; the bytes of a partial BOM do.
    check_stream("\xEF\xBB\xBF" + at + "\n\n", expect({ev(std::string(10, 'x'))}), limits);
    check_stream("\xEF\xBB" + std::string(14, 'z') + "\n", expect({}), limits);
    check_stream("\xEF\xBB" + std::string(15, 'z') + "\n", expect({}, "", std::nullopt, true), limits);
}

BOOST_AUTO_TEST_CASE(event_data_at_the_limit_passes_one_over_throws) {
    const parser_limits limits{100, 8};
    // Dispatched data "1234\n567" is 8 bytes.
    check_stream("data: 1234\ndata: 567\n\n", expect({ev("1234\n567")}), limits);
    check_stream("data: 12345678\n\n", expect({ev("12345678")}), limits);
    check_stream("data: 1234\ndata: 5678\n\n", expect({}, "", std::nullopt, true), limits);
    check_stream("data: 123456789\n\n", expect({}, "", std::nullopt, true), limits);
    // An empty data line adds a LF.
    check_stream("data: 12345678\ndata\n\n", expect({}, "", std::nullopt, true), limits);
    // Events before the oversized one are dispatched; the oversized one is not.
    check_stream("data: ok\n\ndata: 1234\ndata: 5678\n\n", expect({ev("ok")}, "", std::nullopt, true), limits);
    // The bound is per event.
    check_stream("data: 12345678\n\ndata: 12345678\n\n", expect({ev("12345678"), ev("12345678")}), limits);
    // Nine empty data lines are eight LFs, at the limit; a tenth is over.
    check_stream("data\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\n\n", expect({ev(std::string(8, '\n'))}),
                 limits);
    check_stream("data\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\n\n", expect({}, "", std::nullopt, true),
                 limits);
}

BOOST_AUTO_TEST_CASE(default_limits_are_one_mebibyte) {
    parser p;
    std::vector<event> got;
    const std::string value(std::size_t(1) << 20, 'v');
    BOOST_TEST(!feed_all(p, got, "data:" + value.substr(5) + "\n\n"));
    BOOST_REQUIRE_EQUAL(got.size(), 1u);
    BOOST_TEST(got[0].data.size() == (std::size_t(1) << 20) - 5);
    BOOST_TEST(feed_all(p, got, "data:" + value.substr(4) + "\n\n"));
    p.reset();
    BOOST_TEST(feed_all(p, got, "data\n" + value + "v"));
}

BOOST_AUTO_TEST_CASE(after_a_limit_throw_the_parser_refuses_input_until_reset) {
    parser p(parser_limits{16, 16});
    std::vector<event> got;
    BOOST_TEST(!feed_all(p, got, "retry: 10\nid: 3\ndata: a\n\nid: 4\ndata: pending\n"s));
    BOOST_TEST(feed_all(p, got, "data: "s + std::string(20, 'x')));
    // The rest of the oversized line must never be read as fields.
    BOOST_TEST(feed_all(p, got, "\ndata: sneaky\n\n"s));
    BOOST_TEST(feed_all(p, got, ""s));
    BOOST_TEST(got.size() == 1u);
    p.reset();
    BOOST_TEST(p.last_event_id() == "3");
    BOOST_TEST((p.retry() == std::optional<ms>(ms(10))));
    BOOST_TEST(!feed_all(p, got, "\ndata: b\n\n"s));
    BOOST_REQUIRE_EQUAL(got.size(), 2u);
    BOOST_TEST(got[1].data == "b");
    BOOST_TEST(got[1].last_event_id == "3"); // id 4 belonged to the dropped event
}

BOOST_AUTO_TEST_CASE(zero_limits_accept_only_blank_lines) {
    const parser_limits limits{0, 0};
    check_stream("\n\r\n\r", expect({}), limits);
    check_stream("\nd", expect({}, "", std::nullopt, true), limits);
    // max_event 0 allows only empty data: one empty data line, not two (their join is a LF).
    check_stream("data\n\n", expect({ev("")}), parser_limits{4, 0});
    check_stream("data\ndata\n\n", expect({}, "", std::nullopt, true), parser_limits{4, 0});
}

// ---- garbage and differential tests -------------------------------------------------------

BOOST_AUTO_TEST_CASE(invalid_utf8_is_passed_through) {
    check_stream("event: \xC0\xAF\ndata: \xFF\xFE\x80\ndata: \xED\xA0\x80\nid: \xF8\n\n",
                 expect({ev("\xFF\xFE\x80\n\xED\xA0\x80", "\xC0\xAF", "\xF8")}, "\xF8"));
    check_stream("data: \xF0\x9F\x98\x80 ok\n\n", expect({ev("\xF0\x9F\x98\x80 ok")}));
}

BOOST_AUTO_TEST_CASE(matches_a_literal_reading_of_the_standard) {
    // Random streams made of the tokens that matter, compared with `reference` in all splits.
    const std::vector<std::string> tokens = {
        "data", "data:", "data: ", "event:", "event: ", "id:", "id: ", "retry:", "retry: ", ":", " ", "\r", "\n",
        "\r\n", "\n\n", "x", "y", "1", "0", "86400001", "\0"s, "\xEF\xBB\xBF", "\xEF", "\xBB", "\xFF", "ping"};
    std::mt19937 rng(20240611u);
    std::uniform_int_distribution<std::size_t> pick(0, tokens.size() - 1);
    std::uniform_int_distribution<int> count(0, 30);
    for (int round = 0; round < 150; ++round) {
        std::string stream;
        const int n = count(rng);
        for (int k = 0; k < n; ++k) stream += tokens[pick(rng)];
        check_stream(stream, reference(stream), parser_limits{}, 24);
    }
}

BOOST_AUTO_TEST_CASE(random_bytes_do_not_break_the_parser) {
    std::mt19937 rng(7u);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<int> lf_bias(0, 9);
    const parser_limits limits{64, 128};
    for (int round = 0; round < 40; ++round) {
        std::string stream;
        for (int k = 0; k < 600; ++k) {
            // Some bias towards line ends and colons, or almost every line would be too long.
            const int r = lf_bias(rng);
            stream += r == 0 ? '\n' : r == 1 ? ':' : static_cast<char>(byte(rng));
        }
        const outcome whole = run(stream, {}, limits);
        for (const event& e : whole.events) {
            BOOST_TEST(!e.type.empty());
            BOOST_TEST(e.type.size() <= limits.max_line);
            BOOST_TEST(e.data.size() <= limits.max_event);
            BOOST_TEST(e.last_event_id.size() <= limits.max_line);
        }
        // Random chunkings give the same result.
        std::uniform_int_distribution<std::size_t> cut(0, stream.size());
        for (int t = 0; t < 20; ++t) {
            std::vector<std::size_t> cuts{cut(rng), cut(rng), cut(rng)};
            std::sort(cuts.begin(), cuts.end());
            BOOST_TEST_INFO("round " << round << ", " << cuts_text(cuts));
            BOOST_TEST(describe(run(stream, cuts, limits)) == describe(whole));
        }
        // And with no limit in the way, the same as the literal reading of the standard.
        BOOST_TEST(describe(run(stream, {}, parser_limits{})) == describe(reference(stream)));
    }
}

BOOST_AUTO_TEST_SUITE_END()
