// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/core/beacon_core.hpp>

// The beacon's rules of docs/protocol.md, one named test each, driven on the plain core: a
// tiny driver answers its `send` effects with canned responses and its store effects with
// canned results. No transport, no backend, no clock but the one moved by hand.

#include "core_rig.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

// Counts the heap allocations of the calling thread while `counting` is set (issue 11: the
// allocations of a heartbeat cycle, see the test at the end). A plain malloc otherwise, for
// the whole test program. Every form that is not over-aligned is replaced, so that whatever
// pairs them (the library's temporary buffers take the nothrow form and give it back to the
// plain delete) meets malloc and free on both sides; under ASan the runtime keeps only the
// aligned forms, which pair with each other.
// ThreadSanitizer's runtime defines these operators itself, as strong symbols that a
// program cannot replace (the link fails with "multiple definition"): under TSan nothing is
// replaced and the test counts nothing (it still checks the cycles' behaviour).
#if defined(__SANITIZE_THREAD__)
#define SEKUIRE_TEST_COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SEKUIRE_TEST_COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef SEKUIRE_TEST_COUNT_ALLOCATIONS
#define SEKUIRE_TEST_COUNT_ALLOCATIONS 1
#endif
namespace {
thread_local bool counting = false;
thread_local std::size_t counted = 0;
} // namespace
#if SEKUIRE_TEST_COUNT_ALLOCATIONS
// (GCC sees the free() below paired with the library's operator new when it inlines.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
void* counted_malloc(std::size_t n) noexcept {
    if (counting) ++counted;
    return std::malloc(n ? n : 1);
}
void* counted_new(std::size_t n) {
    if (void* p = counted_malloc(n)) return p;
    throw std::bad_alloc();
}
} // namespace
void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#endif

using namespace core_rig;
namespace bdata = boost::unit_test::data;
using sekuire::beacon_effect;
using sekuire::error_code;
using sekuire::errc;
using sekuire::installation_credentials;

BOOST_TEST_DONT_PRINT_LOG_VALUE(sekuire::errc)

namespace boost {
namespace test_tools {
namespace tt_detail {
template <>
struct print_log_value<sekuire::beacon_state> {
    void operator()(std::ostream& os, sekuire::beacon_state s) { os << sekuire::to_string(s); }
};
} // namespace tt_detail
} // namespace test_tools
} // namespace boost

namespace {

const double top = std::nextafter(1.0, 0.0);

installation_credentials stored_creds(const std::string& runtime = "srt_live",
                                      std::optional<ms> expires_in = std::chrono::hours(24 * 90)) {
    installation_credentials c;
    c.installation_id = "inst_1";
    c.refresh_token = "srf_refresh_1";
    c.runtime_token = runtime;
    if (expires_in) c.runtime_token_expires_at = wall_base() + *expires_in;
    c.token_version = 1;
    return c;
}

// The driver: performs the core's effects with canned results and keeps what it asked.
struct rig {
    manual_time time;
    steered_random rnd;
    std::optional<installation_credentials> store;
    error_code read_error;     // what loading the store reports
    error_code save_error;     // what saving or clearing reports
    error_code writable_error; // what the writability check reports
    bool lock_busy = false;    // the refresh lock is held elsewhere
    std::function<void()> on_lock; // runs when the lock is taken (another holder's doing)

    std::deque<std::pair<sekuire::operation_id, sekuire::http_request>> outbox;
    std::vector<sekuire::http_request> sent;
    std::vector<std::string> trace; // the effects performed, in order
    std::vector<sekuire::log_line> logs;
    std::vector<sekuire::protocol::command> commands;
    std::vector<sekuire::revocation_info> revocations;
    std::vector<std::string> policy_hashes;
    std::vector<installation_credentials> saves;
    int status_changes = 0;
    std::unique_ptr<sekuire::beacon_core> core;

    static sekuire::beacon_options defaults() {
        sekuire::beacon_options o;
        o.agent_id = "agent-7";
        o.capabilities = {"search", "summarize"};
        o.heartbeat_interval = std::chrono::seconds(60);
        return o;
    }

    explicit rig(sekuire::beacon_options o = defaults()) { make(std::move(o)); }

    void make(sekuire::beacon_options o) {
        o.random = rnd.source();
        o.logger = [](sekuire::log_level, std::string_view) {};
        o.on_status_change = [](const sekuire::beacon_status&) {};
        core = std::make_unique<sekuire::beacon_core>(std::move(o), sekuire::platform_info{});
    }

    void advance() {
        core->store_seen(store, read_error);
        core->advance(time.now());
        pump();
    }
    void advance_to(ms t) {
        time.to(t);
        advance();
    }

    void pump() {
        for (int guard = 0; guard < 100; ++guard) {
            std::vector<beacon_effect> effects = std::move(core->effects());
            core->effects().clear();
            if (effects.empty()) {
                core->settle();
                if (core->effects().empty()) return;
                continue;
            }
            for (auto& e : effects) perform(e);
        }
        BOOST_FAIL("the core asked for effects without end");
    }

    void perform(beacon_effect& e) {
        using t = beacon_effect::type;
        const auto now = time.now();
        switch (e.what) {
        case t::send:
            trace.push_back("send " + line_of(e.request));
            sent.push_back(e.request);
            outbox.emplace_back(e.op, e.request);
            return;
        case t::lock_refresh:
            trace.push_back("lock");
            if (lock_busy) {
                core->on_refresh_lock(e.op, false, std::nullopt, errc::store_locked, now);
            } else {
                if (on_lock) on_lock();
                core->on_refresh_lock(e.op, true, store, read_error, now);
            }
            return;
        case t::unlock_refresh: trace.push_back("unlock"); return;
        case t::save:
            trace.push_back("save");
            if (e.credentials) saves.push_back(*e.credentials);
            if (!save_error) store = e.credentials;
            core->on_stored(e.op, save_error, now);
            return;
        case t::clear:
            trace.push_back("clear");
            if (!save_error) store.reset();
            core->on_stored(e.op, save_error, now);
            return;
        case t::adopt_token: {
            trace.push_back("adopt");
            sekuire::detail::adopt_result r;
            installation_credentials c = *e.credentials;
            c.runtime_token = e.token.runtime_token;
            c.runtime_token_expires_at = e.token.expires_at;
            c.runtime_token_issued_at = e.when;
            c.token_version = e.token.token_version;
            r.credentials = c;
            r.adopted = true;
            if (!save_error) store = c;
            r.error = save_error;
            core->on_adopted(e.op, r, now);
            return;
        }
        case t::forget_token:
            trace.push_back("forget " + e.text);
            if (store && store->runtime_token == e.text) {
                store->runtime_token.clear();
                store->runtime_token_expires_at.reset();
                store->runtime_token_issued_at.reset();
            }
            core->on_forgot(e.op, store, {}, now);
            return;
        case t::check_writable:
            trace.push_back("check_writable");
            core->on_writable(e.op, writable_error, "/var/lib/sekuire/credentials.json", now);
            return;
        case t::log: logs.push_back(e.line); return;
        case t::status_changed: ++status_changes; return;
        case t::command:
            trace.push_back(std::string("command ") + sekuire::protocol::to_string(e.command.type));
            commands.push_back(e.command);
            return;
        case t::revoked:
            trace.push_back("revoked");
            revocations.push_back(e.revocation);
            return;
        case t::policy_hash: policy_hashes.push_back(e.text); return;
        }
    }

    // The request waiting for an answer.
    const sekuire::http_request& pending() {
        BOOST_REQUIRE_MESSAGE(!outbox.empty(), "no request is waiting for an answer");
        return outbox.front().second;
    }
    bool idle() const { return outbox.empty(); }

    void respond(sekuire::http_response r) {
        BOOST_REQUIRE(!outbox.empty());
        const auto op = outbox.front().first;
        outbox.pop_front();
        core->on_response(op, {}, std::move(r), time.now());
        pump();
    }
    void respond(int status, std::string body = {}, sekuire::header_list headers = {}) {
        respond(answer(status, std::move(body), std::move(headers)));
    }
    void fail(error_code ec) {
        BOOST_REQUIRE(!outbox.empty());
        const auto op = outbox.front().first;
        outbox.pop_front();
        core->on_response(op, ec, {}, time.now());
        pump();
    }

    // A heartbeat answer renewing the lease for `lease` from now.
    std::string beat_ok(ms lease = 180s, const std::string& extra = {}) const {
        return R"({"lease_renewed":true,"lease_expires_at":")" + iso(time.elapsed + lease) + "\"" + extra + "}";
    }

    // From stored credentials to a registered beacon (the registration heartbeat answered).
    void register_now(ms lease = 180s, const std::string& extra = {}) {
        if (!store) store = stored_creds();
        advance();
        BOOST_REQUIRE(line_of(pending()) == "POST /api/v1/installations/inst_1/heartbeat");
        respond(200, beat_ok(lease, extra));
        BOOST_REQUIRE(core->status().state == sekuire::beacon_state::connected);
    }

    bool logged(const std::string& needle) const {
        for (const auto& l : logs)
            if (l.text.find(needle) != std::string::npos) return true;
        return false;
    }
    std::size_t count(const std::string& what) const {
        std::size_t n = 0;
        for (const auto& t : trace)
            if (t == what) ++n;
        return n;
    }
};

const std::string heartbeat_line = "POST /api/v1/installations/inst_1/heartbeat";
const std::string refresh_line = "POST /api/v1/installations/inst_1/refresh";
const std::string bootstrap_line = "POST /api/v1/installations/bootstrap";
const std::string recover_line = "POST /api/v1/installations/recover";

std::string status_of(const sekuire::http_request& r) { return std::string(body_of(r).at("status").as_string()); }

} // namespace

BOOST_AUTO_TEST_SUITE(beacon_core)

// ==== Requests ==============================================================================

// docs/protocol.md "Requests": installation-scoped calls carry Authorization: Bearer <runtime
// token>, Accept and Content-Type application/json, and the request time limit.
BOOST_AUTO_TEST_CASE(a_heartbeat_carries_the_bearer_token_json_headers_and_the_request_timeout) {
    auto o = rig::defaults();
    o.request_timeout = ms(4000);
    rig r(o);
    r.store = stored_creds();
    r.advance();
    const auto& req = r.pending();
    BOOST_TEST(line_of(req) == heartbeat_line);
    BOOST_TEST(header(req, "Authorization") == "Bearer srt_live");
    BOOST_TEST(header(req, "Accept") == "application/json");
    BOOST_TEST(header(req, "Content-Type") == "application/json");
    BOOST_TEST(!has_header(req, "X-API-Key"));
    BOOST_TEST(req.timeout.count() == 4000);
    const auto b = body_of(req);
    BOOST_TEST(b.at("status").as_string() == "healthy");
    BOOST_TEST(b.at("sequence").as_int64() == 1);
    BOOST_TEST(b.at("capabilities").as_array().size() == 2u);
    BOOST_TEST(b.at("sdk").as_object().at("name").as_string() == "sekuire-cpp");
}

// ==== Decoding ==============================================================================

// docs/protocol.md "Decoding": a malformed 2xx response counts as a transient failure.
BOOST_AUTO_TEST_CASE(a_malformed_2xx_heartbeat_answer_is_a_transient_failure) {
    rig r;
    r.register_now();
    r.advance_to(60s);
    r.respond(200, R"({"lease_renewed":"yes"})");
    BOOST_TEST(r.core->status().failed_heartbeats == 1u);
    BOOST_TEST((r.core->status().last_error_code == errc::wrong_type));
    // The first failure's backoff (ceiling half the interval, floor a tenth of it), not the
    // regular interval of a permanent refusal.
    BOOST_TEST((r.core->next_wake() == at(63s)));
}

// ==== Status classes ========================================================================

enum class reaction { regular, refresh, revoke, drop, transient, permanent };
const char* to_string(reaction x) {
    switch (x) {
    case reaction::regular: return "regular";
    case reaction::refresh: return "refresh";
    case reaction::revoke: return "revoke";
    case reaction::drop: return "drop";
    case reaction::transient: return "transient";
    case reaction::permanent: return "permanent";
    }
    return "?";
}

struct class_row {
    int status;
    std::string body;
    reaction expected;
};
std::ostream& operator<<(std::ostream& os, const class_row& r) {
    return os << r.status << " " << r.body << " -> " << to_string(r.expected);
}

const class_row class_rows[] = {
    {200, R"({"lease_renewed":true})", reaction::regular},
    {204, R"({})", reaction::regular},
    {401, error_body("unauthorized"), reaction::refresh},
    {403, error_body("installation_revoked", "compromised"), reaction::revoke},
    {404, error_body("installation_not_found"), reaction::drop},
    {408, {}, reaction::transient},
    {425, {}, reaction::transient},
    {429, error_body("rate_limited"), reaction::transient},
    {500, {}, reaction::transient},
    {502, "<html>bad gateway</html>", reaction::transient},
    {503, {}, reaction::transient},
    {504, {}, reaction::transient},
    {200, "not json", reaction::transient},
    {301, {}, reaction::permanent},
    {307, {}, reaction::permanent},
    {400, error_body("invalid_request"), reaction::permanent},
    {403, error_body("forbidden"), reaction::permanent},
    {409, error_body("conflict"), reaction::permanent},
    {422, error_body("invalid_request"), reaction::permanent},
};

// docs/protocol.md "Status classes": the reaction to each answer of a heartbeat (a Bearer
// call on an installation path). Heartbeat at 60 s, interval 60 s, draws at 0.
BOOST_DATA_TEST_CASE(heartbeat_answers_follow_the_status_classes, bdata::make(class_rows), row) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    rig r(o);
    r.register_now();
    r.trace.clear();
    r.advance_to(60s);
    BOOST_REQUIRE(line_of(r.pending()) == heartbeat_line);
    r.trace.clear();
    r.respond(row.status, row.body);
    const auto s = r.core->status();
    switch (row.expected) {
    case reaction::regular:
        BOOST_TEST(s.failed_heartbeats == 0u);
        BOOST_TEST((r.core->next_wake() == at(120s)));
        break;
    case reaction::refresh:
        // One refresh (under the store's lock), then one retry.
        BOOST_TEST(r.trace.at(0) == "lock");
        BOOST_TEST(line_of(r.pending()) == refresh_line);
        break;
    case reaction::revoke:
        BOOST_TEST(s.revoked);
        BOOST_TEST(r.count("clear") == 1u);
        BOOST_TEST(r.count("revoked") == 1u);
        BOOST_TEST(!r.store.has_value());
        BOOST_TEST((r.core->next_wake() == sekuire::steady_time_point::max()));
        break;
    case reaction::drop:
        // The stored credentials are dropped; the chain is walked again after the auth
        // backoff (100 ms: the floor of its first ceiling, 1 s).
        BOOST_TEST(r.count("clear") == 1u);
        BOOST_TEST(!r.store.has_value());
        BOOST_TEST(r.idle());
        BOOST_TEST((r.core->next_wake() == at(60s + 100ms)));
        r.advance_to(60s + 99ms);
        BOOST_TEST(r.idle());
        r.advance_to(60s + 100ms);
        BOOST_TEST(line_of(r.pending()) == bootstrap_line);
        break;
    case reaction::transient:
        BOOST_TEST(s.failed_heartbeats == 1u);
        BOOST_TEST((r.core->next_wake() == at(63s)));
        break;
    case reaction::permanent:
        // No blind retry: the next regular beat.
        BOOST_TEST(s.failed_heartbeats == 1u);
        BOOST_TEST(r.idle());
        BOOST_TEST((r.core->next_wake() == at(120s)));
        if (row.status / 100 == 3) BOOST_TEST((s.last_error_code == errc::redirect_refused));
        break;
    }
}

// docs/protocol.md "Status classes": a connection error or a timeout is transient too.
BOOST_DATA_TEST_CASE(transport_errors_on_a_heartbeat_are_transient,
                     bdata::make({errc::connection_failed, errc::timeout, errc::connection_lost, errc::tls_failed}), ec) {
    rig r;
    r.register_now();
    r.advance_to(60s);
    r.fail(ec);
    BOOST_TEST(r.core->status().failed_heartbeats == 1u);
    BOOST_TEST((r.core->next_wake() == at(63s)));
}

// docs/protocol.md "Status classes" (401 row): refresh the runtime token once, retry once.
BOOST_AUTO_TEST_CASE(a_401_on_a_heartbeat_refreshes_once_then_retries_once_with_the_new_token) {
    rig r;
    r.register_now();
    r.advance_to(60s);
    const std::string first_body = r.pending().body;
    r.trace.clear();
    r.respond(401, error_body("unauthorized"));
    const auto& refresh = r.pending();
    BOOST_TEST(line_of(refresh) == refresh_line);
    BOOST_TEST(!has_header(refresh, "Authorization"));
    BOOST_TEST(body_of(refresh).at("refresh_token").as_string() == "srf_refresh_1");
    r.respond(200, refresh_body("srt_fresh"));
    // Saved before it is used, then the same heartbeat once more with the new token.
    const std::vector<std::string> expected = {"lock", "send " + refresh_line, "save", "unlock", "send " + heartbeat_line};
    BOOST_TEST(r.trace == expected, boost::test_tools::per_element());
    BOOST_TEST(r.store->runtime_token == "srt_fresh");
    BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_fresh");
    BOOST_TEST(r.pending().body == first_body);
    r.respond(200, r.beat_ok());
    BOOST_TEST(r.core->status().failed_heartbeats == 0u);
    BOOST_TEST(r.sent.size() == 4u); // registration, the beat, the refresh, the retry
}

// docs/protocol.md "Status classes" (401 row): a second 401 drops the runtime token and walks
// the auth chain again after a backoff.
BOOST_AUTO_TEST_CASE(a_second_401_drops_the_runtime_token_and_walks_the_chain_after_a_backoff) {
    rig r;
    r.register_now();
    r.advance_to(60s);
    r.respond(401, error_body("unauthorized"));
    r.respond(200, refresh_body("srt_fresh"));
    r.trace.clear();
    r.respond(401, error_body("unauthorized"));
    BOOST_TEST(r.trace.at(0) == "forget srt_fresh");
    BOOST_TEST(r.store->runtime_token.empty());
    BOOST_TEST(r.store->refresh_token == "srf_refresh_1"); // only the runtime token goes
    BOOST_TEST(r.idle());
    BOOST_TEST((r.core->next_wake() == at(60s + 100ms)));
    r.advance_to(60s + 99ms);
    BOOST_TEST(r.idle());
    // The chain again: without a runtime token, the refresh endpoint comes first.
    r.advance_to(60s + 100ms);
    BOOST_TEST(line_of(r.pending()) == refresh_line);
}

// docs/protocol.md "Status classes" (401 row): a refused refresh (401 invalid_refresh_token)
// walks down the chain from the install token, after the auth backoff.
BOOST_AUTO_TEST_CASE(a_refused_refresh_after_a_401_walks_down_the_chain_from_the_install_token_after_the_backoff) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    rig r(o);
    r.register_now();
    r.advance_to(60s);
    r.respond(401, error_body("unauthorized"));
    r.trace.clear();
    r.respond(401, error_body("invalid_refresh_token"));
    BOOST_TEST(r.trace.at(0) == "unlock");
    BOOST_TEST(r.trace.at(1) == "forget srt_live");
    BOOST_TEST(r.idle());
    BOOST_TEST((r.core->next_wake() == at(60s + 100ms)));
    r.advance_to(60s + 100ms);
    const auto& req = r.pending();
    BOOST_TEST(line_of(req) == bootstrap_line);
    BOOST_TEST(body_of(req).at("install_token").as_string() == "skt_install");
}

// docs/protocol.md "Status classes" (404 row), for the refresh at start: a 404 on the refresh
// path drops the stored credentials and walks the chain again, after the auth backoff.
BOOST_AUTO_TEST_CASE(a_404_on_the_refresh_drops_the_stored_credentials_and_walks_the_chain_after_the_auth_backoff) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    rig r(o);
    r.store = stored_creds("srt_old", -1s);
    r.advance();
    BOOST_REQUIRE(line_of(r.pending()) == refresh_line);
    r.respond(404, error_body("installation_not_found"));
    BOOST_TEST(r.count("clear") == 1u);
    BOOST_TEST(!r.store.has_value());
    BOOST_TEST(r.idle());
    BOOST_TEST((r.core->next_wake() == at(100ms)));
    r.advance_to(100ms);
    BOOST_TEST(line_of(r.pending()) == bootstrap_line);
}

// ==== Status classes: the transient row =====================================================

struct retry_after_row {
    std::string name;
    ms registration_lease; // the lease granted at 0 s (the beat fails at 60 s)
    std::string retry_after;
    ms expected; // the wait from the failure
};
std::ostream& operator<<(std::ostream& os, const retry_after_row& r) { return os << r.name; }

const retry_after_row retry_after_rows[] = {
    {"none: the backoff's draw (floor)", 180s, "", 3000ms},
    {"seconds, above the draw: a minimum", 180s, "45", 45000ms},
    {"seconds, below the draw: the draw", 180s, "1", 3000ms},
    {"an HTTP date 90 s ahead of Date", 180s, "date+90", 90000ms},
    {"an HTTP date in the past", 180s, "date-30", 3000ms},
    {"a day, bounded by the lease (120 s left, timeout 10 s)", 180s, "86400", 110000ms},
    {"garbage is no Retry-After", 180s, "soon", 3000ms},
    {"a day, with less than a timeout of lease left: four intervals", 65s, "86400", 240000ms},
};

// docs/protocol.md "Heartbeats and the lease" and "Status classes": Retry-After (seconds or
// HTTP date) is a minimum; while a lease is held the retry goes out one request timeout
// before the lease ends; with no lease held, by the cap of four intervals.
BOOST_DATA_TEST_CASE(retry_after_on_heartbeat_is_a_minimum_bounded_by_the_lease, bdata::make(retry_after_rows), row) {
    rig r;
    r.register_now(row.registration_lease);
    r.advance_to(60s);
    sekuire::header_list h{{"Date", http_date(60s)}};
    if (row.retry_after == "date+90")
        h.push_back({"Retry-After", http_date(150s)});
    else if (row.retry_after == "date-30")
        h.push_back({"Retry-After", http_date(30s)});
    else if (!row.retry_after.empty())
        h.push_back({"Retry-After", row.retry_after});
    r.respond(503, {}, h);
    // The next heartbeat goes out exactly then (the lease's expiry may wake the core first).
    r.advance_to(60s + row.expected - 1ms);
    BOOST_TEST(r.idle());
    r.advance_to(60s + row.expected);
    BOOST_TEST(line_of(r.pending()) == heartbeat_line);
}

// docs/protocol.md "Status classes": the wait runs from the end of the failed attempt.
BOOST_AUTO_TEST_CASE(the_wait_after_a_failed_heartbeat_runs_from_the_end_of_the_attempt) {
    rig r;
    r.register_now();
    r.advance_to(60s);
    r.time.to(70s); // the request took its whole timeout
    r.fail(errc::timeout);
    BOOST_TEST((r.core->next_wake() == at(73s)));
}

// docs/protocol.md "Heartbeats and the lease": a failed heartbeat backs off over intervals
// (ceiling half the interval, doubled at each failure up to four intervals), the status sent
// is `degraded` while recovering, and the first success returns to the regular cadence.
BOOST_AUTO_TEST_CASE(failed_heartbeats_back_off_over_intervals_and_a_success_returns_to_the_cadence) {
    rig r;
    r.register_now(23h); // a lease that bounds nothing here
    *r.rnd.u = top;      // each draw at the top of its range
    ms t = 60s;
    r.advance_to(t);
    BOOST_TEST(status_of(r.pending()) == "healthy");
    const ms ceilings[] = {30s, 60s, 120s, 240s, 240s};
    unsigned n = 0;
    for (const ms c : ceilings) {
        r.respond(503);
        BOOST_TEST(r.core->status().failed_heartbeats == ++n);
        BOOST_TEST((r.core->next_wake() == at(t + c)));
        t += c;
        r.advance_to(t);
        BOOST_TEST(status_of(r.pending()) == "degraded");
    }
    r.respond(200, r.beat_ok(23h));
    BOOST_TEST(r.core->status().failed_heartbeats == 0u);
    BOOST_TEST((r.core->next_wake() == at(t + 54001ms))); // up to 10% early
    t += 54001ms;
    r.advance_to(t);
    BOOST_TEST(status_of(r.pending()) == "healthy");
    // The backoff starts over.
    r.respond(503);
    BOOST_TEST((r.core->next_wake() == at(t + 30s)));
}

// ==== Authentication ========================================================================

struct jitter_row {
    ms jitter;
    double u;
    ms expected;
};
std::ostream& operator<<(std::ostream& os, const jitter_row& r) {
    return os << "jitter=" << r.jitter.count() << "ms u=" << r.u;
}
const jitter_row jitter_rows[] = {
    {2s, 0.0, 0ms}, {2s, 0.5, 1000ms}, {2s, top, 1999ms}, {0s, 0.9, 0ms}, {300s, 0.25, 75000ms},
};

// docs/protocol.md "Authentication", beacon step 0: the first step waits a random time in
// [0, startup_jitter).
BOOST_DATA_TEST_CASE(the_first_step_waits_the_startup_jitter, bdata::make(jitter_rows), row) {
    auto o = rig::defaults();
    o.startup_jitter = row.jitter;
    rig r(o);
    *r.rnd.u = row.u;
    r.store = stored_creds();
    r.advance();
    if (row.expected.count() > 0) {
        BOOST_TEST(r.idle());
        BOOST_TEST(!r.core->first_pass_done());
        BOOST_TEST((r.core->next_wake() == at(row.expected)));
        r.advance_to(row.expected - 1ms);
        BOOST_TEST(r.idle());
        r.advance_to(row.expected);
    }
    BOOST_TEST(line_of(r.pending()) == heartbeat_line);
    BOOST_TEST(r.core->first_pass_done());
}

struct session_row {
    std::string name;
    std::string runtime;
    std::optional<ms> expires_in;
    bool refresh_first;
};
std::ostream& operator<<(std::ostream& os, const session_row& r) { return os << r.name; }
const session_row session_rows[] = {
    {"a fresh token", "srt_live", std::chrono::hours(24 * 90), false},
    {"a token without a known expiry", "srt_live", std::nullopt, false},
    {"a token expiring in 7 days", "srt_live", std::chrono::hours(24 * 7), false},
    {"a token expired a second ago", "srt_live", -1s, true},
    {"no runtime token", "", std::nullopt, true},
    // Within 6 days of its expiry, with no heartbeat having refreshed it.
    {"a token expiring in 5 days", "srt_live", std::chrono::hours(24 * 5), true},
    {"a token expiring in exactly 6 days", "srt_live", std::chrono::hours(24 * 6), true},
};

// docs/protocol.md "Authentication", beacon step 1, and "Tokens": a runtime token present and
// not known to be expired is tried as is (the registration heartbeat validates it); without
// one, or with an expired one (or one within 6 days of its expiry), the refresh comes first.
BOOST_DATA_TEST_CASE(stored_credentials_are_tried_as_is_or_refreshed_first, bdata::make(session_rows), row) {
    rig r;
    r.store = stored_creds(row.runtime, row.expires_in);
    r.advance();
    if (!row.refresh_first) {
        BOOST_TEST(line_of(r.pending()) == heartbeat_line);
        BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_live");
        return;
    }
    BOOST_TEST(r.trace.at(0) == "lock");
    BOOST_TEST(line_of(r.pending()) == refresh_line);
    BOOST_TEST(!has_header(r.pending(), "Authorization"));
    r.respond(200, refresh_body("srt_fresh"));
    BOOST_TEST(line_of(r.pending()) == heartbeat_line);
    BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_fresh");
}

// docs/protocol.md "Authentication", beacon step 1: recovery credentials from the options (or
// the environment) when the store has none, saved to the store; `recovered_from_env` exactly
// when they came from the environment. Stored credentials come first.
BOOST_AUTO_TEST_CASE(recovery_credentials_from_the_environment_seed_the_store_and_say_so) {
    auto o = rig::defaults();
    o.installation_id = "inst_env";
    o.refresh_token = "srf_env";
    o.recovered_from_env = true;
    {
        rig r(o);
        r.advance();
        BOOST_TEST(r.trace.at(0) == "save");
        BOOST_TEST(r.store->installation_id == "inst_env");
        BOOST_TEST(r.store->refresh_token == "srf_env");
        BOOST_TEST(line_of(r.pending()) == "POST /api/v1/installations/inst_env/refresh");
        BOOST_TEST(r.core->status().recovered_from_env);
    }
    {
        rig r(o);
        r.store = stored_creds();
        r.advance();
        BOOST_TEST(line_of(r.pending()) == heartbeat_line);
        BOOST_TEST(!r.core->status().recovered_from_env);
    }
    {
        o.recovered_from_env = false; // from the options
        rig r(o);
        r.advance();
        BOOST_TEST(!r.core->status().recovered_from_env);
    }
}

// docs/protocol.md "Authentication", beacon step 2: the install token when there are no
// credentials; the store is checked writable first, and the credentials are saved before the
// registration heartbeat goes out.
BOOST_AUTO_TEST_CASE(without_credentials_the_install_token_bootstraps_then_registers) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    rig r(o);
    r.advance();
    const auto& req = r.pending();
    BOOST_TEST(line_of(req) == bootstrap_line);
    BOOST_TEST(!has_header(req, "Authorization"));
    const auto b = body_of(req);
    BOOST_TEST(b.at("install_token").as_string() == "skt_install");
    BOOST_TEST(b.at("agent_id").as_string() == "agent-7");
    BOOST_TEST(b.at("capabilities").as_array().size() == 2u);
    r.respond(201, bootstrap_body("inst_1", "srt_boot", "srf_boot", 90 * 24h, 180s));
    const std::vector<std::string> expected = {"check_writable", "send " + bootstrap_line, "save", "send " + heartbeat_line};
    BOOST_TEST(r.trace == expected, boost::test_tools::per_element());
    BOOST_TEST(r.store->refresh_token == "srf_boot");
    BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_boot");
}

// docs/protocol.md "Authentication", beacon step 2: the install token if the first step
// failed permanently (a refused refresh).
BOOST_AUTO_TEST_CASE(a_permanently_refused_refresh_falls_through_to_the_install_token_at_once) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    rig r(o);
    r.store = stored_creds("srt_old", -1s);
    r.advance();
    BOOST_REQUIRE(line_of(r.pending()) == refresh_line);
    r.respond(401, error_body("invalid_refresh_token"));
    BOOST_TEST(line_of(r.pending()) == bootstrap_line); // at once: no backoff for a permanent failure
}

// docs/protocol.md "Authentication", beacon step 3: the recovery bootstrap with API key and
// workspace id, if the install token failed permanently (or there is none).
BOOST_DATA_TEST_CASE(a_refused_or_missing_install_token_falls_through_to_the_recovery_bootstrap,
                     bdata::make({401, 409, 410, 0}), refusal) {
    auto o = rig::defaults();
    o.api_key = "sk_live_key";
    o.workspace_id = "ws_1";
    if (refusal) o.install_token = "skt_install";
    rig r(o);
    r.advance();
    if (refusal) {
        BOOST_REQUIRE(line_of(r.pending()) == bootstrap_line);
        r.respond(refusal, error_body(refusal == 401 ? "invalid_install_token" : "install_token_used"));
    }
    const auto& req = r.pending();
    BOOST_TEST(line_of(req) == recover_line);
    BOOST_TEST(header(req, "X-API-Key") == "sk_live_key");
    BOOST_TEST(!has_header(req, "Authorization"));
    BOOST_TEST(body_of(req).at("workspace_id").as_string() == "ws_1");
    r.respond(201, bootstrap_body("inst_1", "srt_rec", "srf_rec"));
    BOOST_TEST(line_of(r.pending()) == heartbeat_line);
    BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_rec");
}

// docs/protocol.md "Authentication", beacon step 4: otherwise degraded mode, for good:
// nothing more is scheduled, and the status says why.
BOOST_DATA_TEST_CASE(when_every_step_failed_permanently_the_beacon_stays_degraded, bdata::make({0, 1, 2}), setup) {
    auto o = rig::defaults();
    if (setup >= 1) o.install_token = "skt_install";
    if (setup == 2) {
        o.api_key = "sk_live_key";
        o.workspace_id = "ws_1";
    }
    rig r(o);
    r.advance();
    if (setup >= 1) r.respond(401, error_body("invalid_install_token", "unknown install token"));
    if (setup == 2) r.respond(401, error_body("invalid_api_key", "unknown key"));
    BOOST_TEST(r.idle());
    const auto s = r.core->status();
    BOOST_TEST(s.state == sekuire::beacon_state::degraded);
    BOOST_TEST(s.degraded_mode);
    BOOST_TEST(!s.last_error.empty());
    BOOST_TEST((r.core->next_wake() == sekuire::steady_time_point::max()));
    BOOST_TEST(r.core->first_pass_done());
    r.advance_to(std::chrono::hours(48));
    BOOST_TEST(r.idle());
}

struct auth_transient_row {
    int status; // 0: a transport error
    std::string retry_after;
    ms expected_wait;
};
std::ostream& operator<<(std::ostream& os, const auth_transient_row& r) {
    return os << r.status << " Retry-After=" << r.retry_after;
}
const auth_transient_row auth_transient_rows[] = {
    {0, "", 100ms},   {408, "", 100ms}, {425, "", 100ms},     {429, "", 100ms},
    {500, "", 100ms}, {503, "", 100ms}, {503, "30", 30000ms}, {429, "2", 2000ms},
};

// docs/protocol.md "Authentication": a transient failure at any step does not fall through:
// the step is retried with backoff (Retry-After a minimum, from the end of the attempt), the
// status shows degraded mode, and a later success leaves it.
BOOST_DATA_TEST_CASE(a_transient_bootstrap_failure_retries_the_same_step_with_backoff, bdata::make(auth_transient_rows),
                     row) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    o.api_key = "sk_live_key";
    o.workspace_id = "ws_1";
    rig r(o);
    r.advance();
    BOOST_REQUIRE(line_of(r.pending()) == bootstrap_line);
    r.time.to(5s); // the attempt ends 5 s later
    if (row.status == 0)
        r.fail(errc::connection_failed);
    else
        r.respond(row.status, {}, row.retry_after.empty() ? sekuire::header_list{}
                                                          : sekuire::header_list{{"Retry-After", row.retry_after}});
    BOOST_TEST(r.idle());
    BOOST_TEST(r.core->status().degraded_mode);
    BOOST_TEST(r.core->status().state == sekuire::beacon_state::degraded);
    BOOST_TEST((r.core->next_wake() == at(5s + row.expected_wait)));
    r.advance_to(5s + row.expected_wait);
    BOOST_TEST(line_of(r.pending()) == bootstrap_line); // the same step, not the recovery
    r.respond(201, bootstrap_body("inst_1", "srt_boot", "srf_boot"));
    r.respond(200, r.beat_ok());
    BOOST_TEST(!r.core->status().degraded_mode);
    BOOST_TEST(r.core->status().state == sekuire::beacon_state::connected);
    BOOST_TEST(r.status_changes >= 2);
}

// docs/protocol.md "Authentication": a store that cannot be read (store_io), or a file it does
// not trust (store_insecure), is a transient failure: never bootstrapped past, retried with
// backoff.
BOOST_DATA_TEST_CASE(an_unreadable_or_untrusted_store_is_never_bootstrapped_past,
                     bdata::make({errc::store_io, errc::store_insecure}), ec) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    rig r(o);
    r.read_error = ec;
    r.advance();
    BOOST_TEST(r.idle());
    BOOST_TEST(r.count("check_writable") == 0u);
    BOOST_TEST((r.core->status().last_error_code == ec));
    BOOST_TEST((r.core->next_wake() == at(100ms)));
    r.advance_to(100ms);
    BOOST_TEST(r.idle());
    BOOST_TEST((r.core->next_wake() == at(300ms))); // the backoff grows
    r.read_error = {};
    r.store = stored_creds();
    r.advance_to(300ms);
    BOOST_TEST(line_of(r.pending()) == heartbeat_line);
}

// docs/protocol.md "Authentication": a corrupt store holds nothing usable and is walked past.
BOOST_AUTO_TEST_CASE(a_corrupt_store_is_walked_past) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    rig r(o);
    r.read_error = errc::store_corrupt;
    r.advance();
    BOOST_TEST(line_of(r.pending()) == bootstrap_line);
}

// docs/protocol.md "Authentication": before an install token (single-use) or the recovery
// bootstrap is spent, the store is checked writable; when it is not, the bootstrap is not
// attempted, the error names the store's path, and the check is retried with backoff.
BOOST_DATA_TEST_CASE(an_unwritable_store_does_not_spend_the_install_token_or_the_api_key, bdata::make({true, false}),
                     with_install_token) {
    auto o = rig::defaults();
    if (with_install_token) {
        o.install_token = "skt_install";
    } else {
        o.api_key = "sk_live_key";
        o.workspace_id = "ws_1";
    }
    rig r(o);
    r.writable_error = errc::store_io;
    r.advance();
    BOOST_TEST(r.count("check_writable") == 1u);
    BOOST_TEST(r.sent.empty());
    BOOST_TEST(r.core->status().last_error.find("/var/lib/sekuire/credentials.json") != std::string::npos);
    BOOST_TEST((r.core->next_wake() == at(100ms)));
    r.writable_error = {};
    r.advance_to(100ms);
    BOOST_TEST(r.count("check_writable") == 2u);
    BOOST_TEST(line_of(r.pending()) == (with_install_token ? bootstrap_line : recover_line));
}

struct emptied_row {
    int status;
    std::string body;
    std::string outcome;
};
std::ostream& operator<<(std::ostream& os, const emptied_row& r) { return os << r.status << " -> " << r.outcome; }
const emptied_row emptied_rows[] = {
    {200, "", "kept"},
    {403, error_body("installation_revoked"), "revoked"},
    {200, R"({"revoked":true,"reason":"stolen"})", "revoked"},
    {404, error_body("installation_not_found"), "dropped"},
};

// docs/protocol.md "Authentication": a store emptied under a running beacon by another holder
// does not send it down the chain: it puts its credentials back and sends a heartbeat at
// once; a revoked answer ends it, a 404 drops them, a success keeps them.
BOOST_DATA_TEST_CASE(a_store_emptied_by_another_holder_is_checked_with_the_backend_at_once, bdata::make(emptied_rows),
                     row) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    rig r(o);
    r.register_now();
    r.store.reset(); // another holder emptied it
    r.trace.clear();
    r.advance_to(5s);
    BOOST_TEST(r.trace.at(0) == "save"); // put back
    BOOST_TEST(r.store->installation_id == "inst_1");
    BOOST_TEST(line_of(r.pending()) == heartbeat_line); // at once, not at 60 s
    BOOST_TEST(r.count("send " + bootstrap_line) == 0u);
    r.respond(row.status, row.body.empty() ? r.beat_ok() : row.body);
    if (row.outcome == "kept") {
        BOOST_TEST(r.store->runtime_token == "srt_live");
        BOOST_TEST(r.core->status().state == sekuire::beacon_state::connected);
    } else if (row.outcome == "revoked") {
        BOOST_TEST(r.core->status().revoked);
        BOOST_TEST(!r.store.has_value());
        BOOST_TEST(r.idle());
    } else {
        BOOST_TEST(!r.store.has_value());
        BOOST_TEST(!r.core->status().revoked);
        r.advance_to(5s + 100ms);
        BOOST_TEST(line_of(r.pending()) == bootstrap_line);
    }
}

// ==== Tokens ================================================================================

// docs/protocol.md "Tokens": a refreshed_token in a heartbeat response is saved to the store
// (merged under its refresh lock) before the next request, which uses it.
BOOST_AUTO_TEST_CASE(a_refreshed_token_in_a_heartbeat_is_saved_before_the_next_request) {
    rig r;
    r.register_now();
    r.advance_to(60s);
    r.trace.clear();
    r.respond(200, r.beat_ok(180s, R"(,"refreshed_token":{"runtime_token":"srt_rotated","expires_at":")" +
                                       iso(60s + 90 * 24h) + R"(","token_version":5})"));
    BOOST_TEST(r.trace.at(0) == "adopt");
    BOOST_TEST(r.store->runtime_token == "srt_rotated");
    BOOST_TEST(r.store->token_version == 5);
    r.advance_to(120s);
    BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_rotated");
    BOOST_TEST(r.core->status().runtime_token.find("srt_rotated") == std::string::npos); // masked
}

// docs/protocol.md "Tokens": a token that a heartbeat brought while the lock was busy is used
// from memory and saved at the next step.
BOOST_AUTO_TEST_CASE(a_token_a_heartbeat_brought_while_the_lock_was_busy_is_used_and_saved_at_the_next_step) {
    rig r;
    r.register_now();
    r.advance_to(60s);
    r.save_error = errc::store_locked; // the adopt finds the lock busy
    r.respond(200, r.beat_ok(180s, R"(,"refreshed_token":{"runtime_token":"srt_rotated","expires_at":")" +
                                       iso(60s + 90 * 24h) + R"(","token_version":5})"));
    BOOST_TEST(r.store->runtime_token == "srt_live");
    BOOST_TEST(r.logged("could not be persisted"));
    r.save_error = {};
    r.trace.clear();
    r.advance_to(61s);
    BOOST_TEST(r.trace.at(0) == "save");
    BOOST_TEST(r.store->runtime_token == "srt_rotated");
    r.advance_to(120s);
    BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_rotated");
}

// docs/protocol.md "Tokens": a runtime token is refreshed before any other call once expired:
// while the refresh fails, no heartbeat goes out with the expired token.
BOOST_AUTO_TEST_CASE(an_expired_token_is_never_sent_while_its_refresh_fails) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    rig r(o);
    r.advance();
    r.respond(201, bootstrap_body("inst_1", "srt_boot", "srf_boot", 150s, 23h)); // due at 50 s, expires at 150 s
    r.respond(200, r.beat_ok(23h));
    std::size_t beats_before = 0, beats_after = 0, refreshes = 0;
    while (r.time.elapsed < 400s) {
        r.advance_to(std::chrono::duration_cast<ms>(r.core->next_wake() - steady_base()));
        while (!r.idle()) {
            if (line_of(r.pending()) == refresh_line) {
                ++refreshes;
                r.respond(503);
            } else {
                BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_boot");
                ++(r.time.elapsed < 150s ? beats_before : beats_after);
                r.respond(200, r.beat_ok(23h));
            }
        }
    }
    BOOST_TEST(beats_before >= 2u); // the token still works until it expires: the beats go on
    BOOST_TEST(beats_after == 0u);  // then refreshes only
    BOOST_TEST(refreshes >= 5u);
    r.advance_to(std::chrono::duration_cast<ms>(r.core->next_wake() - steady_base()));
    BOOST_REQUIRE(line_of(r.pending()) == refresh_line);
    r.respond(200, refresh_body("srt_next", r.time.elapsed + 90 * 24h));
    BOOST_TEST(line_of(r.pending()) == heartbeat_line);
    BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_next");
}

// docs/protocol.md "Tokens": the status shows the offset in clock_offset, and an offset of a
// minute or more is logged once.
BOOST_AUTO_TEST_CASE(a_clock_offset_of_a_minute_or_more_is_shown_and_logged_once) {
    rig r;
    r.store = stored_creds();
    r.advance();
    r.respond(200, r.beat_ok(), {{"Date", http_date(-2h)}});
    r.advance_to(60s);
    r.respond(200, r.beat_ok(), {{"Date", http_date(60s - 2h)}});
    BOOST_TEST(r.core->status().clock_offset.count() == -7200000 + 1000);
    std::size_t n = 0;
    for (const auto& l : r.logs)
        if (l.text.find("the local clock is") != std::string::npos) ++n;
    BOOST_TEST(n == 1u);
}

// docs/protocol.md "Tokens": token expiry is judged against the backend's clock as last seen
// in a Date header: an agent whose clock is days off neither refreshes a fresh token again
// and again nor keeps an expired one.
BOOST_AUTO_TEST_CASE(token_expiry_is_judged_on_the_backends_clock) {
    {
        // The local clock is 85 days behind: by the backend's clock the 90-day token has 5
        // days left, within the refresh window.
        rig r;
        r.store = stored_creds();
        r.advance();
        r.trace.clear();
        r.respond(200, r.beat_ok(180s), {{"Date", http_date(85 * 24h)}});
        BOOST_TEST(r.trace.at(0) == "lock");
        BOOST_TEST(line_of(r.pending()) == refresh_line);
        BOOST_TEST(r.core->status().clock_offset.count() == 85LL * 24 * 3600 * 1000);
    }
    {
        // The local clock is 88 days ahead: 86 days on, the local clock says 4 days are left,
        // the backend's says 92.
        rig r;
        r.store = stored_creds();
        r.advance();
        r.respond(200, R"({"lease_renewed":true})", {{"Date", http_date(-88 * 24h)}});
        r.advance_to(86 * 24h);
        BOOST_TEST(line_of(r.pending()) == heartbeat_line);
        BOOST_TEST(r.count("lock") == 0u);
    }
}

struct lifetime_row {
    ms lifetime;
    ms refreshed_after;
};
std::ostream& operator<<(std::ostream& os, const lifetime_row& r) { return os << r.lifetime.count() << "ms"; }
const lifetime_row lifetime_rows[] = {{1h, 20min}, {6h, 2h}, {30h, 10h}};

// docs/protocol.md "Tokens": for short-lived tokens the window is at most two thirds of the
// lifetime: a 1-hour token is refreshed after 20 minutes, once, rather than at every step.
BOOST_DATA_TEST_CASE(a_short_lived_token_is_refreshed_after_a_third_of_its_lifetime_once, bdata::make(lifetime_rows),
                     row) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    o.heartbeat_interval = std::chrono::hours(24);
    rig r(o);
    r.advance();
    r.respond(201, bootstrap_body("inst_1", "srt_boot", "srf_boot", row.lifetime, 23h));
    r.respond(200, r.beat_ok(23h));
    BOOST_TEST((r.core->next_wake() == at(row.refreshed_after)));
    r.advance_to(row.refreshed_after - 1ms);
    BOOST_TEST(r.idle());
    r.advance_to(row.refreshed_after);
    BOOST_TEST(line_of(r.pending()) == refresh_line);
    r.respond(200, refresh_body("srt_next", row.refreshed_after + row.lifetime));
    BOOST_TEST(r.idle()); // no second refresh at once
    BOOST_TEST((r.core->next_wake() == at(row.refreshed_after * 2)));
}

// docs/protocol.md "Tokens": a token the backend issues already due for refresh by its own
// clock is used (the backend decides) and refreshed again after a backoff, not at once.
BOOST_AUTO_TEST_CASE(a_token_issued_already_due_is_used_and_refreshed_again_after_a_backoff) {
    rig r;
    r.store = stored_creds("srt_live", std::chrono::hours(24 * 5));
    r.advance();
    BOOST_REQUIRE(line_of(r.pending()) == refresh_line);
    r.respond(200, refresh_body("srt_already_due", -1h)); // expired by the backend's own clock
    BOOST_TEST(line_of(r.pending()) == heartbeat_line);
    BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_already_due");
    r.respond(200, r.beat_ok());
    BOOST_TEST(r.count("send " + refresh_line) == 1u);
    BOOST_TEST((r.core->next_wake() == at(100ms)));
    r.advance_to(100ms);
    BOOST_TEST(line_of(r.pending()) == refresh_line);
}

// docs/protocol.md "Tokens": the lock is never waited for; a lock held elsewhere is a
// transient store error, retried with the backoff of the step that needed it; meanwhile
// heartbeats go on with the current token.
BOOST_AUTO_TEST_CASE(a_busy_refresh_lock_is_retried_with_backoff_while_heartbeats_go_on) {
    rig r;
    r.store = stored_creds("srt_live", std::chrono::hours(24 * 5));
    r.lock_busy = true;
    r.advance();
    BOOST_TEST(r.trace.at(0) == "lock");
    BOOST_TEST(r.count("send " + refresh_line) == 0u);
    BOOST_TEST(line_of(r.pending()) == heartbeat_line);
    BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_live");
    BOOST_TEST((r.core->status().last_error_code == errc::store_locked));
    r.respond(200, r.beat_ok());
    BOOST_TEST((r.core->next_wake() == at(100ms)));
    r.lock_busy = false;
    r.advance_to(100ms);
    BOOST_TEST(line_of(r.pending()) == refresh_line);
}

// docs/protocol.md "Tokens": under the store's refresh lock the credentials are read again,
// and when another holder has already replaced the token, no call is made.
BOOST_AUTO_TEST_CASE(a_token_another_holder_refreshed_is_used_without_a_call) {
    rig r;
    r.store = stored_creds("srt_live", std::chrono::hours(24 * 5));
    r.on_lock = [&] { r.store = stored_creds("srt_sibling", std::chrono::hours(24 * 90)); };
    r.advance();
    const std::vector<std::string> expected = {"lock", "unlock", "send " + heartbeat_line};
    BOOST_TEST(r.trace == expected, boost::test_tools::per_element());
    BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_sibling");
}

// docs/protocol.md "Tokens": a rotated refresh token is saved before the new runtime token is
// used; when that save fails, the new credentials are kept in memory, used, and saved again
// at each read of the store until it works.
BOOST_AUTO_TEST_CASE(a_rotated_refresh_token_is_saved_first_and_saved_again_until_the_store_takes_it) {
    rig r;
    r.store = stored_creds("srt_old", -1s);
    r.save_error = errc::store_io;
    r.advance();
    r.trace.clear();
    r.respond(200, refresh_body("srt_new", 90 * 24h, 2, "srf_rotated"));
    BOOST_TEST(r.trace.at(0) == "save");
    BOOST_TEST(r.saves.back().refresh_token == "srf_rotated");
    BOOST_TEST(r.store->refresh_token == "srf_refresh_1"); // refused
    BOOST_TEST(header(r.pending(), "Authorization") == "Bearer srt_new"); // used from memory
    r.respond(200, r.beat_ok());
    // Saved again at the next step (which reads the store), and kept once it works.
    r.save_error = {};
    r.trace.clear();
    r.advance_to(1s);
    BOOST_TEST(r.count("save") == 1u);
    BOOST_TEST(r.store->refresh_token == "srf_rotated");
    BOOST_TEST(r.store->runtime_token == "srt_new");
    r.trace.clear();
    r.advance_to(2s);
    BOOST_TEST(r.count("save") == 0u);
}

// ==== Heartbeats and the lease ==============================================================

struct cadence_row {
    double u;
    ms expected;
};
std::ostream& operator<<(std::ostream& os, const cadence_row& r) { return os << "u=" << r.u; }
const cadence_row cadence_rows[] = {{0.0, 60000ms}, {0.5, 57000ms}, {0.25, 58500ms}, {top, 54001ms}};

// docs/protocol.md "Heartbeats and the lease": the registration heartbeat goes out right
// after authentication, then one per interval, each up to 10% early (random).
BOOST_DATA_TEST_CASE(heartbeats_go_once_per_interval_up_to_ten_percent_early, bdata::make(cadence_rows), row) {
    auto o = rig::defaults();
    o.startup_jitter = ms(0);
    rig r(o);
    *r.rnd.u = row.u;
    r.register_now();
    BOOST_TEST((r.core->next_wake() == at(row.expected)));
    r.advance_to(row.expected - 1ms);
    BOOST_TEST(r.idle());
    r.advance_to(row.expected);
    BOOST_TEST(line_of(r.pending()) == heartbeat_line);
    BOOST_TEST(body_of(r.pending()).at("sequence").as_int64() == 2);
}

// docs/protocol.md "Heartbeats and the lease": the bootstrap's heartbeat_interval_seconds
// overrides the interval.
BOOST_AUTO_TEST_CASE(the_bootstraps_heartbeat_interval_overrides_the_option) {
    auto o = rig::defaults();
    o.install_token = "skt_install";
    rig r(o);
    r.advance();
    r.respond(201, bootstrap_body("inst_1", "srt_boot", "srf_boot", 90 * 24h, 180s, R"(,"heartbeat_interval_seconds":30)"));
    r.respond(200, r.beat_ok());
    BOOST_TEST(r.core->status().heartbeat_interval.count() == 30);
    BOOST_TEST((r.core->next_wake() == at(30s)));
}

struct directed_row {
    std::string name;
    ms date_skew;   // the backend's clock minus the local one
    ms ahead;       // next_heartbeat_at minus the backend's now
    ms expected;    // the next beat from now
};
std::ostream& operator<<(std::ostream& os, const directed_row& r) { return os << r.name; }
const directed_row directed_rows[] = {
    {"30 s ahead", 0ms, 30s, 30000ms},
    {"200 ms ahead: at least 1 s", 0ms, 200ms, 1000ms},
    {"just passed (a slow answer): 1 s", 0ms, -5s, 1000ms},
    {"further in the past than an interval: ignored", 0ms, -61s, 60000ms},
    {"more than a day ahead: ignored", 0ms, 25h, 60000ms},
    {"beyond the lease: the lease", 0ms, 300s, 180000ms},
    {"against the backend's own clock", 2h, 30s, 30000ms},
};

// docs/protocol.md "Heartbeats and the lease": next_heartbeat_at sets the next beat, bounded
// below by 1 s from now and above by the lease expiry; a time just passed means 1 s from
// now; one further in the past, or more than a day ahead, is ignored. Turned into a delay
// against the backend's own clock (its Date header).
BOOST_DATA_TEST_CASE(next_heartbeat_at_directs_the_next_beat_within_bounds, bdata::make(directed_rows), row) {
    rig r;
    r.store = stored_creds();
    r.advance();
    const ms backend = row.date_skew;
    const std::string body = R"({"lease_renewed":true,"lease_expires_at":")" + iso(backend + 180s) +
                             R"(","next_heartbeat_at":")" + iso(backend + row.ahead) + "\"}";
    r.respond(200, body, {{"Date", http_date(backend)}});
    r.advance_to(row.expected - 1ms);
    BOOST_TEST(r.idle());
    r.advance_to(row.expected);
    BOOST_TEST(line_of(r.pending()) == heartbeat_line);
}

// docs/protocol.md "Heartbeats and the lease": a delay that is negative or longer than a day
// is ignored and the lease then lasts three intervals.
BOOST_DATA_TEST_CASE(an_implausible_or_missing_lease_expiry_lasts_three_intervals, bdata::make({0, 1, 2}), which) {
    rig r;
    r.store = stored_creds();
    r.advance();
    const std::string lease = which == 0 ? "" : (which == 1 ? iso(-10s) : iso(25h));
    r.respond(200, lease.empty() ? std::string(R"({"lease_renewed":true})")
                                 : R"({"lease_renewed":true,"lease_expires_at":")" + lease + "\"}");
    // A one-day Retry-After is bounded by the lease (180 s): one timeout (10 s) before it.
    r.advance_to(60s);
    r.respond(503, {}, {{"Retry-After", "86400"}});
    r.advance_to(170s - 1ms);
    BOOST_TEST(r.idle());
    r.advance_to(170s);
    BOOST_TEST(line_of(r.pending()) == heartbeat_line);
}

// docs/protocol.md "Heartbeats and the lease": a lease not renewed in time is reported lost
// (state lease_expired, the status callback), and renewal goes on; a success restores it.
BOOST_AUTO_TEST_CASE(a_lease_not_renewed_in_time_is_reported_lost_and_a_success_restores_it) {
    rig r;
    r.register_now(65s);
    r.advance_to(60s);
    r.respond(503, {}, {{"Retry-After", "30"}});
    BOOST_TEST((r.core->next_wake() == at(65s)));
    const int changes = r.status_changes;
    r.advance_to(65s);
    BOOST_TEST(r.core->status().lease_expired);
    BOOST_TEST(r.core->status().state == sekuire::beacon_state::lease_expired);
    BOOST_TEST(r.status_changes == changes + 1);
    BOOST_TEST(r.idle());
    r.advance_to(90s);
    BOOST_TEST(status_of(r.pending()) == "degraded");
    r.respond(200, r.beat_ok());
    BOOST_TEST(!r.core->status().lease_expired);
    BOOST_TEST(r.core->status().state == sekuire::beacon_state::connected);
}

// docs/protocol.md "Heartbeats and the lease": the status sent is `degraded` while
// recovering, `paused` when paused, `draining` during an SDK shutdown, `healthy` otherwise.
BOOST_DATA_TEST_CASE(the_status_sent_says_how_the_agent_is, bdata::make({"healthy", "degraded", "paused", "draining"}),
                     expected) {
    rig r;
    r.register_now();
    const std::string e = expected;
    ms next = 60s;
    if (e == "degraded") {
        r.advance_to(60s);
        r.respond(503);
        next = 63s;
    } else if (e == "paused") {
        r.advance_to(60s);
        r.respond(200, r.beat_ok(180s, R"(,"command":{"id":"c1","type":"pause"})"));
        next = 120s;
    } else if (e == "draining") {
        r.core->set_reported_status(sekuire::protocol::heartbeat_status::draining);
    }
    r.advance_to(next);
    BOOST_TEST(status_of(r.pending()) == e);
}

// ==== Kill switch and commands ==============================================================

struct kill_row {
    std::string body;
    std::string reason;
    ms timeout;
};
std::ostream& operator<<(std::ostream& os, const kill_row& r) { return os << r.body; }
const kill_row kill_rows[] = {
    {R"({"revoked":true,"reason":"compromised","shutdown_timeout_ms":5000})", "compromised", 5000ms},
    {R"({"revoked":true,"reason":"compromised"})", "compromised", 10000ms},
    {R"({"lease_renewed":false,"revoked":true})", "installation revoked", 10000ms},
    {R"({"revoked":true,"reason":"x","shutdown_timeout_ms":999999999999})", "x", 86400000ms},
};

// docs/protocol.md "Kill switch and commands": the revoked heartbeat shape stops heartbeats at
// once (no final one), removes the credentials from the store, marks the status revoked
// with the reason, and calls the revocation callback with the reason and shutdown_timeout_ms
// (10 s when absent).
BOOST_DATA_TEST_CASE(kill_switch_in_a_heartbeat_response_stops_the_beacon, bdata::make(kill_rows), row) {
    rig r;
    r.register_now();
    r.advance_to(60s);
    r.trace.clear();
    r.respond(200, row.body);
    const std::vector<std::string> expected = {"clear", "revoked"};
    BOOST_TEST(r.trace == expected, boost::test_tools::per_element());
    BOOST_TEST(!r.store.has_value());
    BOOST_REQUIRE(r.revocations.size() == 1u);
    BOOST_TEST(r.revocations[0].reason == row.reason);
    BOOST_TEST(r.revocations[0].shutdown_timeout.count() == row.timeout.count());
    const auto s = r.core->status();
    BOOST_TEST(s.revoked);
    BOOST_TEST(s.revoked_reason == row.reason);
    BOOST_TEST(s.state == sekuire::beacon_state::revoked);
    BOOST_TEST((r.core->next_wake() == sekuire::steady_time_point::max()));
    r.advance_to(24h);
    BOOST_TEST(r.idle());
    r.core->stop(r.time.now());
    r.pump();
    BOOST_TEST(r.idle()); // no final heartbeat
    BOOST_TEST(r.core->stopped());
}

// docs/protocol.md "Kill switch and commands": 403 installation_revoked on any call is a
// revocation (the heartbeat, the refresh, a bootstrap).
BOOST_DATA_TEST_CASE(a_403_installation_revoked_on_any_call_revokes, bdata::make({"heartbeat", "refresh", "bootstrap"}),
                     call) {
    auto o = rig::defaults();
    const std::string c = call;
    if (c == "bootstrap") o.install_token = "skt_install";
    rig r(o);
    if (c == "heartbeat") r.store = stored_creds();
    if (c == "refresh") r.store = stored_creds("srt_old", -1s);
    r.advance();
    BOOST_REQUIRE(line_of(r.pending()) ==
                  (c == "heartbeat" ? heartbeat_line : c == "refresh" ? refresh_line : bootstrap_line));
    r.respond(403, error_body("installation_revoked", "revoked by an operator"));
    BOOST_TEST(r.core->status().revoked);
    BOOST_TEST(r.revocations.size() == 1u);
    BOOST_TEST(r.revocations.at(0).shutdown_timeout.count() == 10000);
    BOOST_TEST(!r.store.has_value());
    BOOST_TEST(r.idle());
    BOOST_TEST((r.core->next_wake() == sekuire::steady_time_point::max()));
}

// docs/protocol.md "Kill switch and commands": commands reach the callbacks and the status
// once per command id.
BOOST_AUTO_TEST_CASE(commands_reach_the_callbacks_once_per_id) {
    rig r;
    r.register_now(180s, R"(,"command":{"id":"c1","type":"pause","reason":"maintenance"})");
    BOOST_TEST(r.commands.size() == 1u);
    BOOST_TEST(r.core->status().paused);
    // The same id again (a retried answer): nothing.
    r.advance_to(60s);
    r.respond(200, r.beat_ok(180s, R"(,"command":{"id":"c1","type":"pause"})"));
    BOOST_TEST(r.commands.size() == 1u);
    // Seen first by another part (the worker's stream): not again.
    sekuire::protocol::command resume;
    resume.id = "c2";
    resume.type = sekuire::protocol::command_type::resume;
    resume.type_name = "resume";
    BOOST_TEST(r.core->apply_command(resume));
    BOOST_TEST(!r.core->status().paused);
    r.pump();
    BOOST_TEST(r.commands.size() == 2u);
    r.advance_to(120s);
    r.respond(200, r.beat_ok(180s, R"(,"command":{"id":"c2","type":"resume"})"));
    BOOST_TEST(r.commands.size() == 2u);
    BOOST_TEST(!r.core->apply_command(resume));
    r.advance_to(180s);
    r.respond(200, r.beat_ok(180s, R"(,"command":{"id":"c3","type":"terminate"})"));
    BOOST_TEST(r.commands.size() == 3u);
    BOOST_TEST(r.core->status().terminate_requested);
}

// docs/protocol.md "Kill switch and commands": unknown types are logged and ignored.
BOOST_AUTO_TEST_CASE(unknown_command_type_is_ignored_and_logged) {
    rig r;
    r.register_now(180s, R"(,"command":{"id":"c9","type":"reboot"})");
    BOOST_TEST(r.commands.empty());
    BOOST_TEST(r.logged("reboot"));
    const auto s = r.core->status();
    BOOST_TEST(!s.paused);
    BOOST_TEST(!s.terminate_requested);
    BOOST_TEST(s.state == sekuire::beacon_state::connected);
    BOOST_TEST((r.core->next_wake() == at(60s))); // the cadence goes on
}

// docs/protocol.md "Kill switch and commands": a revocation applied from elsewhere and not yet
// stepped still wins over the final heartbeat of stop().
BOOST_AUTO_TEST_CASE(a_pending_revocation_wins_over_the_final_heartbeat) {
    rig r;
    r.register_now();
    sekuire::protocol::revocation rv;
    rv.reason = "seen on the stream";
    r.core->apply_revocation(rv);
    r.trace.clear();
    r.core->stop(r.time.now());
    r.pump();
    BOOST_TEST(r.idle());
    BOOST_TEST(r.count("clear") == 1u);
    BOOST_TEST(r.revocations.at(0).reason == "seen on the stream");
    BOOST_TEST(r.core->stopped());
}

// docs/protocol.md "Kill switch and commands" and "Requests": stop() sends one final
// heartbeat (status stopped), bounded by stop_timeout, with no refresh and no retry; a
// revoked answer to it is obeyed.
BOOST_DATA_TEST_CASE(stop_sends_one_final_heartbeat_and_obeys_a_revoked_answer, bdata::make({200, 401, 503, 403}),
                     status) {
    auto o = rig::defaults();
    o.stop_timeout = ms(1500);
    rig r(o);
    r.register_now();
    r.time.to(10s);
    r.core->stop(r.time.now());
    r.pump();
    const auto& req = r.pending();
    BOOST_TEST(line_of(req) == heartbeat_line);
    BOOST_TEST(status_of(req) == "stopped");
    BOOST_TEST(req.timeout.count() == 1500);
    BOOST_TEST(!r.core->stopped());
    r.respond(status, status == 403 ? error_body("installation_revoked") : (status == 200 ? r.beat_ok() : ""));
    BOOST_TEST(r.idle()); // no refresh, no retry
    BOOST_TEST(r.count("lock") == 0u);
    BOOST_TEST(r.core->stopped());
    BOOST_TEST(r.core->status().revoked == (status == 403));
    BOOST_TEST(r.store.has_value() == (status != 403));
}

// docs/protocol.md "Worker heartbeats and the policy": the beacon heartbeat's
// active_policy_hash is passed on when it changes.
BOOST_AUTO_TEST_CASE(a_changed_active_policy_hash_is_passed_on_once) {
    rig r;
    r.register_now(180s, R"(,"active_policy_hash":"h1")");
    r.advance_to(60s);
    r.respond(200, r.beat_ok(180s, R"(,"active_policy_hash":"h1")"));
    r.advance_to(120s);
    r.respond(200, r.beat_ok(180s, R"(,"active_policy_hash":"h2")"));
    const std::vector<std::string> expected = {"h1", "h2"};
    BOOST_TEST(r.policy_hashes == expected, boost::test_tools::per_element());
}

// ==== The status and the cost of a cycle =====================================================

BOOST_AUTO_TEST_CASE(status_into_writes_what_status_returns_over_whatever_it_held) {
    rig r;
    sekuire::beacon_status s;
    s.installation_id = "inst_left_over_from_another_beacon_entirely";
    s.runtime_token = "srt_...left";
    s.last_error = "an error of long ago that must not survive the update";
    s.deployment_url = "https://old.example";
    s.is_running = true;
    r.core->status_into(s); // idle, no credentials
    BOOST_TEST(s.installation_id.empty());
    BOOST_TEST(s.runtime_token.empty());
    BOOST_TEST(s.last_error.empty());
    BOOST_TEST(s.deployment_url.empty());
    BOOST_TEST(s.is_running); // the driver's: left as it is
    s.is_running = false;
    BOOST_TEST(to_string(s) == to_string(r.core->status()));
    r.register_now();
    r.core->status_into(s);
    BOOST_TEST(s.installation_id == "inst_1");
    BOOST_TEST(s.runtime_token == sekuire::mask_token("srt_live"));
    BOOST_TEST(s.heartbeats_sent == 1u);
    BOOST_TEST(to_string(s) == to_string(r.core->status()));
}

// A request given back after it was sent lends its storage to the next heartbeat, which is
// the same request as without it: target, the three headers in order, body, time limit.
BOOST_AUTO_TEST_CASE(a_request_given_back_serves_the_next_heartbeat_unchanged) {
    auto o = rig::defaults();
    o.request_timeout = ms(4000);
    rig plain(o), reusing(o);
    for (rig* r : {&plain, &reusing}) {
        r->store = stored_creds();
        r->advance();
        r->respond(200, r->beat_ok());
    }
    // Something else entirely: another target, other and more headers, a longer body.
    sekuire::http_request other;
    other.method = sekuire::http_method::get;
    other.target = "/api/v1/installations/some_other_installation_with_a_long_id/tasks/stream?capabilities=a,b,c";
    other.headers = {{"X-API-Key", "sk_live_0123456789abcdef"}, {"Accept", "text/event-stream"}, {"A", "1"}, {"B", "2"}};
    other.body = std::string(2000, 'x');
    other.timeout = ms(1);
    reusing.core->reuse_request(std::move(other));
    for (rig* r : {&plain, &reusing}) r->advance_to(60s);
    const auto& a = plain.pending();
    const auto& b = reusing.pending();
    BOOST_TEST(line_of(b) == heartbeat_line);
    BOOST_TEST(line_of(b) == line_of(a));
    BOOST_REQUIRE(b.headers.size() == 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        BOOST_TEST(b.headers[i].name == a.headers[i].name);
        BOOST_TEST(b.headers[i].value == a.headers[i].value);
    }
    BOOST_TEST(header(b, "Authorization") == "Bearer srt_live");
    BOOST_TEST(b.body == a.body);
    BOOST_TEST(body_of(b).at("sequence").as_int64() == 2);
    BOOST_TEST(b.timeout.count() == 4000);
}

// Issue 11: a heartbeat cycle allocates at most 10 times on the beacon's side. Here the core's
// share of a steady-state cycle (what basic_beacon::step() does around the transport:
// advance, the heartbeat request, its answer, settle, the status published in place), with
// ids and tokens longer than any std::string keeps inline. Measured: 1 with libstdc++ (the
// answer's installation id, decoded into a new string). The bound leaves room for a field or
// two more, not for a return of per-cycle copies (each cost 1 to 6; it was 19 in all).
BOOST_AUTO_TEST_CASE(a_steady_heartbeat_cycle_allocates_at_most_a_few_times) {
    constexpr std::size_t bound = 3;
    manual_time time;
    sekuire::beacon_options o = rig::defaults();
    o.random = [] { return 0.5; };
    o.startup_jitter = ms(0);
    o.logger = [](sekuire::log_level, std::string_view) {};
    o.on_status_change = [](const sekuire::beacon_status&) {};
    sekuire::beacon_core core(o, sekuire::platform_info{});
    installation_credentials c;
    c.installation_id = "inst_0123456789abcdefghijklmnop";
    c.refresh_token = "srf_0123456789abcdefghijklmnopqrstuvwxyz";
    c.runtime_token = "srt_0123456789abcdefghijklmnopqrstuvwxyz";
    c.runtime_token_expires_at = wall_base() + std::chrono::hours(24 * 90);
    c.token_version = 1;
    core.store_seen(c, {}); // a store with a version is read only when it changes: once here

    std::vector<beacon_effect> batch;
    sekuire::beacon_status status;
    for (int cycle = 0; cycle < 8; ++cycle) {
        // What the transport brings, made before counting (its allocations are not the core's).
        sekuire::http_response res =
            answer(200, R"({"installation_id":")" + c.installation_id + R"(","lease_renewed":true,"lease_expires_at":")" +
                            iso(time.elapsed + 180s) + R"(","active_policy_hash":"9f2c0b7e","command":null})");
        counted = 0;
        counting = cycle >= 3; // the first cycles size the buffers that later cycles reuse
        core.advance(time.now());
        batch.clear();
        batch.swap(core.effects());
        std::size_t sends = 0, others = 0;
        sekuire::operation_id op = 0;
        for (beacon_effect& e : batch) {
            if (e.what != beacon_effect::type::send) {
                ++others;
                continue;
            }
            ++sends;
            op = e.op;
            core.reuse_request(std::move(e.request));
        }
        core.on_response(op, {}, std::move(res), time.now());
        core.settle();
        core.status_into(status);
        others += core.effects().size(); // notifications (the first cycle's status change)
        core.effects().clear();
        counting = false;
        const std::size_t allocations = counted;
        BOOST_TEST_CONTEXT("cycle " << cycle) {
            BOOST_TEST(sends == 1u);
            if (cycle > 0) BOOST_TEST(others == 0u);
            BOOST_TEST(status.heartbeats_sent == static_cast<std::uint64_t>(cycle + 1));
            BOOST_TEST((status.state == sekuire::beacon_state::connected));
            if (cycle >= 3 && SEKUIRE_TEST_COUNT_ALLOCATIONS) BOOST_TEST(allocations <= bound);
        }
        if (SEKUIRE_TEST_COUNT_ALLOCATIONS)
            BOOST_TEST_MESSAGE("cycle " << cycle << ": " << allocations << " allocations");
        else
            BOOST_TEST_MESSAGE("cycle " << cycle << ": allocations not counted (ThreadSanitizer)");
        // The next beat is due at the core's next wake-up.
        time.to(std::chrono::ceil<ms>(core.next_wake() - steady_base()));
    }
}

BOOST_AUTO_TEST_SUITE_END()
