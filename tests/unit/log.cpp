// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/log.hpp>

#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

// 2026-02-03T12:05:00.250Z
std::chrono::system_clock::time_point fixed_time() {
    return std::chrono::system_clock::time_point(std::chrono::seconds(1770120300)) + std::chrono::milliseconds(250);
}

sekuire::log_record full_record() {
    sekuire::log_record r;
    r.level = sekuire::log_level::warning;
    r.message = "heartbeat failed: the backend answered 503";
    r.installation_id = "inst_1";
    r.task_id = "task_9";
    r.capability = "summarize";
    r.event = "heartbeat_failed";
    r.trace_id = "trace 7";
    return r;
}

sekuire::log_sink_options with(sekuire::log_format f, std::string program = "prog") {
    sekuire::log_sink_options o;
    o.format = f;
    o.program = std::move(program);
    return o;
}

// Reads a logfmt line into key/value pairs, strictly: bare values, or quoted ones whose
// escapes are backslash-n, -r, -t, -quote and -backslash; fails the test on anything else.
std::vector<std::pair<std::string, std::string>> parse_logfmt(const std::string& line) {
    std::vector<std::pair<std::string, std::string>> out;
    std::size_t i = 0;
    BOOST_REQUIRE(!line.empty() && line.back() == '\n');
    const std::size_t end = line.size() - 1;
    while (i < end) {
        const auto eq = line.find('=', i);
        BOOST_REQUIRE(eq != std::string::npos && eq < end);
        const std::string key = line.substr(i, eq - i);
        BOOST_REQUIRE(!key.empty());
        for (char c : key) BOOST_REQUIRE((c >= 'a' && c <= 'z') || c == '_');
        i = eq + 1;
        std::string value;
        if (i < end && line[i] == '"') {
            ++i;
            for (;;) {
                BOOST_REQUIRE(i < end);
                const char c = line[i++];
                if (c == '"') break;
                if (c == '\\') {
                    BOOST_REQUIRE(i < end);
                    const char e = line[i++];
                    if (e == 'n') value += '\n';
                    else if (e == 'r') value += '\r';
                    else if (e == 't') value += '\t';
                    else if (e == '"' || e == '\\') value += e;
                    else BOOST_FAIL("unknown escape");
                } else {
                    BOOST_REQUIRE(static_cast<unsigned char>(c) >= 0x20);
                    value += c;
                }
            }
        } else {
            while (i < end && line[i] != ' ') value += line[i++];
            BOOST_REQUIRE(!value.empty());
        }
        out.emplace_back(key, value);
        if (i < end) {
            BOOST_REQUIRE(line[i] == ' ');
            ++i;
        }
    }
    return out;
}

} // namespace

// The suite opens a namespace named like a C library function: keep it apart.
namespace sekuire_log_tests {
BOOST_AUTO_TEST_SUITE(log)

BOOST_AUTO_TEST_CASE(level_names) {
    BOOST_TEST(std::string(sekuire::to_string(sekuire::log_level::debug)) == "debug");
    BOOST_TEST(std::string(sekuire::to_string(sekuire::log_level::info)) == "info");
    BOOST_TEST(std::string(sekuire::to_string(sekuire::log_level::warning)) == "warning");
    BOOST_TEST(std::string(sekuire::to_string(sekuire::log_level::error)) == "error");
}

BOOST_AUTO_TEST_CASE(level_and_format_names_are_parsed) {
    sekuire::log_level l = sekuire::log_level::info;
    BOOST_TEST(sekuire::parse_log_level("DEBUG", l));
    BOOST_TEST((l == sekuire::log_level::debug));
    BOOST_TEST(sekuire::parse_log_level("warn", l));
    BOOST_TEST((l == sekuire::log_level::warning));
    BOOST_TEST(sekuire::parse_log_level("Warning", l));
    BOOST_TEST(sekuire::parse_log_level("error", l));
    BOOST_TEST((l == sekuire::log_level::error));
    for (const char* bad : {"", "verbose", "infos", "err", " info"}) {
        BOOST_TEST_CONTEXT(bad) {
            BOOST_TEST(!sekuire::parse_log_level(bad, l));
            BOOST_TEST((l == sekuire::log_level::error)); // left alone
        }
    }
    sekuire::log_format f = sekuire::log_format::text;
    BOOST_TEST(sekuire::parse_log_format("json", f));
    BOOST_TEST((f == sekuire::log_format::json));
    BOOST_TEST(sekuire::parse_log_format("logfmt", f));
    BOOST_TEST((f == sekuire::log_format::logfmt));
    BOOST_TEST(!sekuire::parse_log_format("JSONL", f));
    BOOST_TEST((f == sekuire::log_format::logfmt));
    BOOST_TEST(std::string(sekuire::to_string(sekuire::log_format::text)) == "text");
}

BOOST_AUTO_TEST_CASE(a_plain_handler_receives_the_message_of_every_record) {
    std::vector<std::string> lines;
    std::vector<sekuire::log_level> levels;
    sekuire::log_handler h = [&](sekuire::log_level l, std::string_view m) {
        levels.push_back(l);
        lines.emplace_back(m);
    };
    BOOST_TEST(static_cast<bool>(h));
    BOOST_TEST(!h.structured());
    h(sekuire::log_level::info, "hello");
    h(full_record());
    BOOST_TEST_REQUIRE(lines.size() == 2u);
    BOOST_TEST(lines[0] == "hello");
    BOOST_TEST(lines[1] == "heartbeat failed: the backend answered 503");
    BOOST_TEST((levels[1] == sekuire::log_level::warning));
}

BOOST_AUTO_TEST_CASE(a_structured_handler_receives_the_context) {
    std::vector<std::string> seen;
    sekuire::log_handler h = [&](const sekuire::log_record& r) {
        seen.push_back(std::string(r.message) + "|" + std::string(r.installation_id) + "|" + std::string(r.task_id) +
                       "|" + std::string(r.capability) + "|" + std::string(r.event) + "|" + std::string(r.trace_id));
    };
    BOOST_TEST(h.structured());
    h(full_record());
    h(sekuire::log_level::debug, "plain"); // the plain call form gives a record without context
    BOOST_TEST_REQUIRE(seen.size() == 2u);
    BOOST_TEST(seen[0] == "heartbeat failed: the backend answered 503|inst_1|task_9|summarize|heartbeat_failed|trace 7");
    BOOST_TEST(seen[1] == "plain|||||");
}

BOOST_AUTO_TEST_CASE(empty_handlers) {
    sekuire::log_handler a;
    sekuire::log_handler b = nullptr;
    sekuire::log_handler c = std::function<void(sekuire::log_level, std::string_view)>();
    void (*null_fn)(const sekuire::log_record&) = nullptr;
    sekuire::log_handler d = null_fn;
    for (const auto* h : {&a, &b, &c, &d}) {
        BOOST_TEST(!static_cast<bool>(*h));
        (*h)(sekuire::log_level::error, "nobody listens"); // a no-op, not a crash
    }
    // A std::function of the old type still converts, and copies share the callable.
    int calls = 0;
    std::function<void(sekuire::log_level, std::string_view)> old = [&](sekuire::log_level, std::string_view) { ++calls; };
    sekuire::log_handler e = old;
    sekuire::log_handler f = e;
    e(sekuire::log_level::info, "x");
    f(sekuire::log_level::info, "y");
    BOOST_TEST(calls == 2);
}

BOOST_AUTO_TEST_CASE(text_lines) {
    auto o = with(sekuire::log_format::text, "sekuire-run");
    BOOST_TEST(sekuire::format_log_record(full_record(), o, fixed_time()) ==
               "sekuire-run: warning: heartbeat failed: the backend answered 503 installation_id=inst_1 task_id=task_9 "
               "capability=summarize trace_id=\"trace 7\"\n");
    sekuire::log_record plain;
    plain.message = "installation inst_1 connected";
    BOOST_TEST(sekuire::format_log_record(plain, o, fixed_time()) == "sekuire-run: info: installation inst_1 connected\n");
    // A field whose value the message holds already is not repeated in text lines.
    plain.installation_id = "inst_1";
    plain.task_id = "task_2";
    BOOST_TEST(sekuire::format_log_record(plain, o, fixed_time()) ==
               "sekuire-run: info: installation inst_1 connected task_id=task_2\n");
    plain.installation_id = {};
    plain.task_id = {};
    o.program.clear();
    o.text_timestamps = true;
    BOOST_TEST(sekuire::format_log_record(plain, o, fixed_time()) ==
               "2026-02-03T12:05:00.250Z info: installation inst_1 connected\n");
}

BOOST_AUTO_TEST_CASE(a_record_is_always_one_line) {
    // A message holding line breaks (a backend's error text, say) cannot forge a second line.
    sekuire::log_record r;
    r.level = sekuire::log_level::error;
    r.message = "bad answer\nsekuire-run: info: forged line\r\x01";
    r.event = "x\ny";
    for (const auto f : {sekuire::log_format::text, sekuire::log_format::logfmt, sekuire::log_format::json}) {
        BOOST_TEST_CONTEXT(sekuire::to_string(f)) {
            const std::string line = sekuire::format_log_record(r, with(f), fixed_time());
            BOOST_TEST(line.find('\n') == line.size() - 1);
            BOOST_TEST(line.find('\r') == std::string::npos);
            BOOST_TEST(line.find('\x01') == std::string::npos);
        }
    }
    BOOST_TEST(sekuire::format_log_record(r, with(sekuire::log_format::text), fixed_time()) ==
               "prog: error: bad answer\\nsekuire-run: info: forged line\\r\\x01\n");
}

BOOST_AUTO_TEST_CASE(logfmt_lines_parse_back) {
    auto r = full_record();
    r.message = R"(quote " backslash \ equals = done)";
    const std::string line = sekuire::format_log_record(r, with(sekuire::log_format::logfmt), fixed_time());
    const auto kv = parse_logfmt(line);
    const std::vector<std::pair<std::string, std::string>> expected{
        {"time", "2026-02-03T12:05:00.250Z"}, {"level", "warning"},          {"program", "prog"},
        {"msg", std::string(r.message)},     {"installation_id", "inst_1"}, {"task_id", "task_9"},
        {"capability", "summarize"},         {"trace_id", "trace 7"},       {"event", "heartbeat_failed"}};
    BOOST_TEST_REQUIRE(kv.size() == expected.size());
    for (std::size_t i = 0; i < kv.size(); ++i) {
        BOOST_TEST(kv[i].first == expected[i].first);
        BOOST_TEST(kv[i].second == expected[i].second);
    }
    // Absent fields are not written; an empty message is quoted.
    sekuire::log_record empty;
    BOOST_TEST(sekuire::format_log_record(empty, with(sekuire::log_format::logfmt, ""), fixed_time()) ==
               "time=2026-02-03T12:05:00.250Z level=info msg=\"\"\n");
}

BOOST_AUTO_TEST_CASE(json_lines_are_valid_json_whatever_the_record_holds) {
    auto r = full_record();
    const std::string nasty = std::string("q\" b\\ nl\n tab\t nul") + '\0' + " del\x7f ctl\x1f ok-\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80";
    r.message = nasty;
    const std::string line = sekuire::format_log_record(r, with(sekuire::log_format::json), fixed_time());
    BOOST_TEST(line.back() == '\n');
    boost::system::error_code ec;
    const auto v = boost::json::parse(line, ec);
    BOOST_TEST_REQUIRE(!ec);
    const auto& o = v.as_object();
    BOOST_TEST(o.at("time").as_string() == "2026-02-03T12:05:00.250Z");
    BOOST_TEST(o.at("level").as_string() == "warning");
    BOOST_TEST(o.at("program").as_string() == "prog");
    BOOST_TEST(std::string(o.at("msg").as_string()) == nasty); // every byte back, valid UTF-8 kept
    BOOST_TEST(o.at("installation_id").as_string() == "inst_1");
    BOOST_TEST(o.at("task_id").as_string() == "task_9");
    BOOST_TEST(o.at("capability").as_string() == "summarize");
    BOOST_TEST(o.at("event").as_string() == "heartbeat_failed");
    BOOST_TEST(o.at("trace_id").as_string() == "trace 7");
    BOOST_TEST(o.size() == 9u);
}

BOOST_AUTO_TEST_CASE(json_lines_replace_invalid_utf8) {
    // Lone continuation byte, truncated sequences, an overlong form, a surrogate, beyond U+10FFFF.
    const std::vector<std::string> bad{"\x80", "\xc3", "\xe2\x82", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"};
    for (const auto& b : bad) {
        sekuire::log_record r;
        const std::string msg = "a" + b + "z";
        r.message = msg;
        const std::string line = sekuire::format_log_record(r, with(sekuire::log_format::json), fixed_time());
        boost::system::error_code ec;
        const auto v = boost::json::parse(line, ec);
        BOOST_TEST_REQUIRE(!ec);
        const std::string got(v.as_object().at("msg").as_string());
        BOOST_TEST(got.front() == 'a');
        BOOST_TEST(got.back() == 'z');
        BOOST_TEST(got.find("\xef\xbf\xbd") != std::string::npos); // U+FFFD
        BOOST_TEST(got.find(b) == std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(stream_logger_filters_by_level_and_writes_whole_lines) {
    std::ostringstream out;
    auto o = with(sekuire::log_format::text, "p");
    o.min_level = sekuire::log_level::warning;
    auto h = sekuire::stream_logger(out, o);
    BOOST_TEST(h.structured());
    h(sekuire::log_level::debug, "d");
    h(sekuire::log_level::info, "i");
    h(sekuire::log_level::warning, "w");
    h(sekuire::log_level::error, "e");
    BOOST_TEST(out.str() == "p: warning: w\np: error: e\n");
}

BOOST_AUTO_TEST_CASE(stream_logger_serializes_threads) {
    std::ostringstream out;
    auto h = sekuire::stream_logger(out, with(sekuire::log_format::json));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([h, t] {
            for (int i = 0; i < 200; ++i) h(sekuire::log_level::info, "thread " + std::to_string(t) + " line " + std::to_string(i));
        });
    for (auto& t : threads) t.join();
    std::istringstream in(out.str());
    std::size_t n = 0;
    for (std::string line; std::getline(in, line); ++n) {
        boost::system::error_code ec;
        boost::json::parse(line, ec);
        BOOST_TEST_REQUIRE(!ec);
    }
    BOOST_TEST(n == 800u);
}

BOOST_AUTO_TEST_SUITE_END()
} // namespace sekuire_log_tests
