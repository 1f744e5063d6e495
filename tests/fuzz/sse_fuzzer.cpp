// SPDX-License-Identifier: MIT
// libFuzzer target for sekuire::sse::parser.
//
// The first byte chooses where the rest is split into two chunks. The two chunks go to one
// parser with small limits, the whole rest to another; both must give the same events, the
// same retry and last event id, and fail (or not) alike. Every event must respect the limits.

#include <sekuire/sse.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr sekuire::sse::parser_limits limits{256, 1024};

struct result {
    std::vector<sekuire::sse::event> events;
    std::optional<std::chrono::milliseconds> retry;
    std::string last_event_id;
    bool failed = false;
};

void check(bool ok) {
    if (!ok) std::abort();
}

void check_event(const sekuire::sse::parser& p, const sekuire::sse::event& e) {
    check(!e.type.empty());
    check(e.type.size() <= limits.max_line);
    check(e.data.size() <= limits.max_event);
    check(e.last_event_id.size() <= limits.max_line);
    check(e.last_event_id == p.last_event_id());
    check(e.last_event_id.find('\0') == std::string::npos);
}

result parse(const std::vector<std::string_view>& chunks) {
    sekuire::sse::parser p(limits);
    result r;
    try {
        for (const std::string_view chunk : chunks) {
            p.feed(chunk, [&](const sekuire::sse::event& e) {
                check_event(p, e);
                r.events.push_back(e);
            });
        }
    } catch (const sekuire::error& e) {
        check(e.code() == sekuire::error_code(sekuire::errc::stream_line_too_long));
        r.failed = true;
        // A failed parser refuses input until reset(), then works again.
        bool refused = false;
        try {
            p.feed("data: x\n\n", [](const sekuire::sse::event&) { std::abort(); });
        } catch (const sekuire::error&) {
            refused = true;
        }
        check(refused);
        p.reset();
        int after_reset = 0;
        p.feed("data: x\n\n", [&](const sekuire::sse::event& ev) {
            check(ev.data == "x");
            ++after_reset;
        });
        check(after_reset == 1);
    }
    r.retry = p.retry();
    r.last_event_id = p.last_event_id();
    if (r.retry) check(r.retry->count() >= 0 && *r.retry <= sekuire::sse::parser::max_retry);
    return r;
}

bool same_events(const result& a, const result& b) {
    if (a.events.size() != b.events.size()) return false;
    for (std::size_t i = 0; i < a.events.size(); ++i) {
        const auto& x = a.events[i];
        const auto& y = b.events[i];
        if (x.type != y.type || x.data != y.data || x.last_event_id != y.last_event_id) return false;
    }
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    const std::size_t cut = static_cast<std::size_t>(data[0]) * rest.size() / 255;
    const result split = parse({rest.substr(0, cut), rest.substr(cut)});
    const result whole = parse({rest});
    check(split.failed == whole.failed);
    check(same_events(split, whole));
    check(split.retry == whole.retry);
    check(split.last_event_id == whole.last_event_id);
    return 0;
}
