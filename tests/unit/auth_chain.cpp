// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/core/auth_chain.hpp>

// The shared steps of authentication (docs/protocol.md, "Authentication" and "Tokens"),
// driven by hand: each step's request is read, and its answer is a canned response.

#include "core_rig.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <optional>
#include <ostream>
#include <string>

using namespace core_rig;
namespace bdata = boost::unit_test::data;
using chain_type = sekuire::auth_chain;
using sekuire::installation_credentials;
using step_kind = sekuire::auth_chain::refresh_step::kind;
using sekuire::detail::refresh_status;

namespace {

installation_credentials creds(const std::string& runtime, ms expires_in = std::chrono::hours(24 * 90),
                               std::int64_t version = 1) {
    installation_credentials c;
    c.installation_id = "inst_1";
    c.refresh_token = "srf_refresh_1";
    c.runtime_token = runtime;
    c.runtime_token_expires_at = wall_base() + expires_in;
    c.token_version = version;
    return c;
}

sekuire::detail::http_outcome classified(sekuire::http_response r, bool bearer = false, bool installation_path = true) {
    return sekuire::detail::classify({}, std::move(r), bearer, installation_path, wall_base());
}

sekuire::platform_info some_platform() {
    sekuire::platform_info p;
    p.type = "bare_metal";
    return p;
}

} // namespace

BOOST_AUTO_TEST_SUITE(auth_chain)

// ---- Authentication, beacon step 2: the install token ------------------------------------

// docs/protocol.md "Authentication" (step 2): POST /api/v1/installations/bootstrap with the
// install token, the agent id and the capabilities; no Authorization, no API key.
BOOST_AUTO_TEST_CASE(the_bootstrap_posts_the_install_token_without_credentials_headers) {
    const chain_type chain(ms(7000));
    const sekuire::http_request req = chain.bootstrap_request("skt_install", "agent-7", {"a", "b"}, some_platform());
    BOOST_TEST(line_of(req) == "POST /api/v1/installations/bootstrap");
    BOOST_TEST(!has_header(req, "Authorization"));
    BOOST_TEST(!has_header(req, "X-API-Key"));
    BOOST_TEST(header(req, "Accept") == "application/json");
    BOOST_TEST(header(req, "Content-Type") == "application/json");
    BOOST_TEST(req.timeout.count() == 7000);
    const auto b = body_of(req);
    BOOST_TEST(b.at("install_token").as_string() == "skt_install");
    BOOST_TEST(b.at("agent_id").as_string() == "agent-7");
    BOOST_TEST(b.at("capabilities").as_array().size() == 2u);
    BOOST_TEST(b.at("sdk").as_object().at("name").as_string() == "sekuire-cpp");
}

// docs/protocol.md "Requests": the recovery bootstrap carries X-API-Key (and no Bearer).
BOOST_AUTO_TEST_CASE(the_recovery_bootstrap_carries_the_api_key_and_the_workspace) {
    const chain_type chain(ms(10000));
    const sekuire::http_request req = chain.recover_request("sk_live_key", "ws_1", "agent-7", {"a"}, some_platform());
    BOOST_TEST(line_of(req) == "POST /api/v1/installations/recover");
    BOOST_TEST(header(req, "X-API-Key") == "sk_live_key");
    BOOST_TEST(!has_header(req, "Authorization"));
    const auto b = body_of(req);
    BOOST_TEST(b.at("workspace_id").as_string() == "ws_1");
    BOOST_TEST(b.at("agent_id").as_string() == "agent-7");
    BOOST_TEST(!b.contains("api_key")); // the key travels in the header only
}

// ---- Status classes, for the bootstrap ---------------------------------------------------

struct bootstrap_row {
    int status;
    std::string body;
    sekuire::detail::bootstrap_status expected;
};
std::ostream& operator<<(std::ostream& os, const bootstrap_row& r) { return os << r.status << " " << r.body; }

const bootstrap_row bootstrap_rows[] = {
    {201, bootstrap_body("inst_1", "srt_r", "srf_f"), sekuire::detail::bootstrap_status::ok},
    // A malformed 2xx is a transient failure (docs/protocol.md "Decoding").
    {200, R"({"installation_id":"inst_1"})", sekuire::detail::bootstrap_status::transient},
    {200, "not json", sekuire::detail::bootstrap_status::transient},
    {408, {}, sekuire::detail::bootstrap_status::transient},
    {425, {}, sekuire::detail::bootstrap_status::transient},
    {429, error_body("rate_limited"), sekuire::detail::bootstrap_status::transient},
    {500, {}, sekuire::detail::bootstrap_status::transient},
    {503, {}, sekuire::detail::bootstrap_status::transient},
    {403, error_body("installation_revoked"), sekuire::detail::bootstrap_status::revoked},
    // A 401 on a call without Bearer is not a token to refresh: permanent.
    {401, error_body("invalid_install_token"), sekuire::detail::bootstrap_status::permanent},
    {400, error_body("invalid_request"), sekuire::detail::bootstrap_status::permanent},
    {403, error_body("forbidden"), sekuire::detail::bootstrap_status::permanent},
    {404, error_body("not_found"), sekuire::detail::bootstrap_status::permanent},
    {410, error_body("install_token_expired"), sekuire::detail::bootstrap_status::permanent},
    {302, {}, sekuire::detail::bootstrap_status::permanent},
};

// docs/protocol.md "Status classes" (and "Authentication": a transient failure is retried,
// a permanent one walks down the chain): how a bootstrap's answer is read.
BOOST_DATA_TEST_CASE(the_bootstrap_answer_follows_the_status_classes, bdata::make(bootstrap_rows), row) {
    const auto r = chain_type::bootstrap_answer(classified(answer(row.status, row.body), false, false));
    BOOST_TEST(static_cast<int>(r.status) == static_cast<int>(row.expected));
    if (row.expected == sekuire::detail::bootstrap_status::ok) {
        BOOST_TEST(r.response.installation_id == "inst_1");
        BOOST_TEST(!r.error);
    } else {
        BOOST_TEST(bool(r.error));
    }
    if (row.status == 302) BOOST_TEST((r.error == sekuire::errc::redirect_refused));
}

// docs/protocol.md "Status classes": Retry-After (seconds or HTTP date) comes with the answer.
BOOST_AUTO_TEST_CASE(the_bootstrap_answer_carries_retry_after_in_both_forms) {
    auto r = chain_type::bootstrap_answer(classified(answer(503, {}, {{"Retry-After", "17"}}), false, false));
    BOOST_TEST(r.retry_after.value_or(ms(-1)).count() == 17000);
    // An HTTP date is measured against the response's own Date.
    r = chain_type::bootstrap_answer(
        classified(answer(429, {}, {{"Date", http_date(3600s)}, {"Retry-After", http_date(3630s)}}), false, false));
    BOOST_TEST(r.retry_after.value_or(ms(-1)).count() == 30000);
}

// ---- Tokens: the single-flight refresh ---------------------------------------------------

// docs/protocol.md "Tokens": the lock is never waited for; a lock held elsewhere is a
// transient store error (errc::store_locked), and no call is made.
BOOST_AUTO_TEST_CASE(a_refresh_lock_held_elsewhere_is_store_locked_and_makes_no_call) {
    chain_type chain(ms(10000));
    chain.begin_refresh("srt_old");
    BOOST_TEST(chain.refreshing());
    const auto step = chain.refresh_locked(false, std::nullopt, {}, wall_base());
    BOOST_TEST((step.what == step_kind::done));
    BOOST_TEST(!chain.lock_held());
    BOOST_TEST(!chain.refreshing());
    BOOST_TEST((chain.result().status == refresh_status::store_failed));
    BOOST_TEST((chain.result().error == sekuire::errc::store_locked));
    BOOST_TEST(!chain.result().called);
}

// docs/protocol.md "Authentication": a store that cannot be read is a failure retried with
// backoff, never walked past.
BOOST_AUTO_TEST_CASE(a_store_unreadable_under_the_lock_is_a_store_failure_and_the_lock_is_released_by_the_caller) {
    chain_type chain(ms(10000));
    chain.begin_refresh("srt_old");
    const auto step = chain.refresh_locked(true, std::nullopt, sekuire::errc::store_io, wall_base());
    BOOST_TEST((step.what == step_kind::done));
    BOOST_TEST(chain.lock_held()); // taken: the caller releases it
    BOOST_TEST((chain.result().status == refresh_status::store_failed));
    BOOST_TEST((chain.result().error == sekuire::errc::store_io));
}

struct token_state_row {
    std::string name;
    std::optional<installation_credentials> stored; // what the store holds under the lock
    step_kind expected;
    refresh_status status; // when done
};
std::ostream& operator<<(std::ostream& os, const token_state_row& r) { return os << r.name; }

installation_credentials without_refresh_token() {
    installation_credentials c = creds("srt_old");
    c.refresh_token.clear();
    return c;
}

const token_state_row token_state_rows[] = {
    // The store still holds the rejected token: the refresh endpoint is called.
    {"stale token stored", creds("srt_old"), step_kind::send, refresh_status::transient},
    // Another holder replaced it with a fresh one: used, no call.
    {"replaced by another holder", creds("srt_new", std::chrono::hours(24 * 90), 2), step_kind::done,
     refresh_status::refreshed},
    // Replaced, but the replacement is due too (expired): the call is made.
    {"replaced but expired", creds("srt_new", -1s, 2), step_kind::send, refresh_status::transient},
    // Replaced, but within six days of its expiry: the call is made.
    {"replaced but due", creds("srt_new", std::chrono::hours(24 * 5), 2), step_kind::send, refresh_status::transient},
    // Nothing to refresh with.
    {"store empty", std::nullopt, step_kind::done, refresh_status::no_refresh_token},
    {"no refresh token", without_refresh_token(), step_kind::done, refresh_status::no_refresh_token},
};

// docs/protocol.md "Tokens": refreshes are single-flight among every holder of the store:
// under the lock the credentials are read again, and when another holder has already
// replaced the rejected token, no call is made.
BOOST_DATA_TEST_CASE(under_the_lock_the_store_decides_whether_the_refresh_calls, bdata::make(token_state_rows), row) {
    chain_type chain(ms(10000));
    chain.begin_refresh("srt_old");
    const auto step = chain.refresh_locked(true, row.stored, {}, wall_base());
    BOOST_TEST((step.what == row.expected));
    BOOST_TEST(chain.lock_held());
    if (row.expected == step_kind::send) {
        BOOST_TEST(line_of(step.request) == "POST /api/v1/installations/inst_1/refresh");
        BOOST_TEST(!has_header(step.request, "Authorization"));
        BOOST_TEST(body_of(step.request).at("refresh_token").as_string() == "srf_refresh_1");
        BOOST_TEST(chain.refreshing());
    } else {
        BOOST_TEST((chain.result().status == row.status));
        BOOST_TEST(!chain.result().called);
        if (row.status == refresh_status::refreshed) BOOST_TEST(chain.result().credentials->runtime_token == "srt_new");
    }
}

struct refresh_answer_row {
    int status;
    std::string body;
    step_kind expected;
    refresh_status status_after;
};
std::ostream& operator<<(std::ostream& os, const refresh_answer_row& r) { return os << r.status << " " << r.body; }

const refresh_answer_row refresh_answer_rows[] = {
    {200, refresh_body("srt_new"), step_kind::save, refresh_status::refreshed},
    {200, R"({"runtime_token":"srt_new"})", step_kind::done, refresh_status::transient}, // malformed 2xx
    {401, error_body("invalid_refresh_token"), step_kind::done, refresh_status::rejected},
    {400, error_body("invalid_request"), step_kind::done, refresh_status::rejected},
    {403, error_body("installation_revoked"), step_kind::done, refresh_status::revoked},
    {404, error_body("installation_not_found"), step_kind::done, refresh_status::gone},
    {408, {}, step_kind::done, refresh_status::transient},
    {429, {}, step_kind::done, refresh_status::transient},
    {500, {}, step_kind::done, refresh_status::transient},
    {503, {}, step_kind::done, refresh_status::transient},
    {301, {}, step_kind::done, refresh_status::rejected},
};

// docs/protocol.md "Status classes" (the refresh: 401 invalid_refresh_token is a refused
// refresh, 403 installation_revoked a revocation, 404 the installation gone, the transient
// statuses retried) and "Tokens" (a new token is saved before it is used).
BOOST_DATA_TEST_CASE(the_refresh_answer_follows_the_status_classes, bdata::make(refresh_answer_rows), row) {
    chain_type chain(ms(10000));
    chain.begin_refresh("srt_old");
    BOOST_REQUIRE((chain.refresh_locked(true, creds("srt_old"), {}, wall_base()).what == step_kind::send));
    const auto step = chain.refresh_answered(classified(answer(row.status, row.body)), wall_base());
    BOOST_TEST((step.what == row.expected));
    BOOST_TEST((chain.result().status == row.status_after));
    BOOST_TEST(chain.result().called);
    if (row.expected == step_kind::save) {
        BOOST_TEST(step.credentials.runtime_token == "srt_new");
        BOOST_TEST(step.credentials.token_version == 2);
        BOOST_TEST(step.credentials.refresh_token == "srf_refresh_1");
        // Saved before anyone uses it: later reads of the store see it already.
        BOOST_TEST(chain.stored()->runtime_token == "srt_new");
        BOOST_TEST(chain.refreshing()); // until the save's result
        chain.refresh_saved({});
        BOOST_TEST(!chain.refreshing());
    } else {
        BOOST_TEST(!chain.refreshing());
    }
}

// docs/protocol.md "Tokens": a rotated refresh token is saved before the new runtime token
// is used; when that save fails the new credentials are kept in memory, used, and saved
// again at each read of the store until it works.
BOOST_AUTO_TEST_CASE(a_rotated_refresh_token_is_saved_first_and_kept_in_memory_when_the_save_fails) {
    chain_type chain(ms(10000));
    chain.begin_refresh("srt_old");
    chain.refresh_locked(true, creds("srt_old"), {}, wall_base());
    const auto step = chain.refresh_answered(classified(answer(200, refresh_body("srt_new", 90 * 24h, 2, "srf_rotated"))),
                                             wall_base());
    BOOST_REQUIRE((step.what == step_kind::save));
    BOOST_TEST(step.credentials.refresh_token == "srf_rotated");
    BOOST_TEST(chain.result().rotated);
    chain.refresh_saved(sekuire::errc::store_io);
    BOOST_TEST((chain.result().persist_error == sekuire::errc::store_io));
    // The store still shows the old credentials; the memory copy wins, and is saved again.
    chain.store_seen(creds("srt_old"), {});
    bool save_again = false;
    auto c = chain.reconciled(save_again);
    BOOST_TEST(save_again);
    BOOST_TEST(c->refresh_token == "srf_rotated");
    BOOST_TEST(c->runtime_token == "srt_new");
    // Once saved, the store's contents are used as they are.
    chain.forget_unsaved();
    chain.store_seen(*c, {});
    c = chain.reconciled(save_again);
    BOOST_TEST(!save_again);
    BOOST_TEST(c->refresh_token == "srf_rotated");
}

struct reconcile_row {
    std::string name;
    std::optional<installation_credentials> stored;
    bool memory_wins;
};
std::ostream& operator<<(std::ostream& os, const reconcile_row& r) { return os << r.name; }

installation_credentials other_installation() {
    installation_credentials c = creds("srt_other");
    c.installation_id = "inst_2";
    return c;
}

const reconcile_row reconcile_rows[] = {
    {"same installation, older version", creds("srt_old", 90 * 24h, 1), true},
    {"same installation, same version", creds("srt_old", 90 * 24h, 2), true},
    {"same installation, newer version", creds("srt_newer", 90 * 24h, 3), false},
    {"another installation", other_installation(), false},
    {"emptied (a revocation)", std::nullopt, false},
};

// docs/protocol.md "Tokens": the unsaved credentials are saved again "until it works (or
// the store moves on: another installation, a newer token version, or emptied by a
// revocation)".
BOOST_DATA_TEST_CASE(unsaved_credentials_give_way_when_the_store_moves_on, bdata::make(reconcile_rows), row) {
    chain_type chain(ms(10000));
    chain.remember_unsaved(creds("srt_memory", 90 * 24h, 2));
    chain.store_seen(row.stored, {});
    bool save_again = false;
    const auto c = chain.reconciled(save_again);
    BOOST_TEST(save_again == row.memory_wins);
    if (row.memory_wins) {
        BOOST_TEST(c->runtime_token == "srt_memory");
    } else {
        BOOST_TEST((c == row.stored));
        // Given up for good: a later read does not bring it back.
        chain.store_seen(creds("srt_old", 90 * 24h, 1), {});
        chain.reconciled(save_again);
        BOOST_TEST(!save_again);
    }
}

// ---- Tokens: the backend's clock ---------------------------------------------------------

struct clock_row {
    ms local_minus_date; // the local clock's reading minus the Date
    ms offset;           // the offset kept (backend minus local)
};
std::ostream& operator<<(std::ostream& os, const clock_row& r) {
    return os << "local-date=" << r.local_minus_date.count() << "ms offset=" << r.offset.count() << "ms";
}

const clock_row clock_rows[] = {
    // Inside the second the Date names (or up to 250 ms after it): right, used as it is.
    {0ms, 0ms},
    {500ms, 0ms},
    {999ms, 0ms},
    {1249ms, 0ms},
    // Beyond: corrected to the nearest edge of [Date, Date + 1 s).
    {1250ms, -250ms},
    {3600000ms, -3599000ms},
    {-1ms, 1ms},
    {-7200000ms, 7200000ms},
};

// docs/protocol.md "Tokens": a Date names a whole second, read as [Date, Date + 1 s); a
// local clock inside it (or up to 250 ms after it) counts as right; a skew beyond that is
// corrected to the nearest edge of the interval.
BOOST_DATA_TEST_CASE(the_backends_clock_is_read_from_date_as_a_whole_second, bdata::make(clock_rows), row) {
    chain_type chain(ms(10000));
    const sekuire::wall_time_point date = wall_base();
    const sekuire::wall_time_point local = date + row.local_minus_date;
    chain.observe(date, local);
    BOOST_TEST(chain.clock().offset().count() == row.offset.count());
    BOOST_TEST((chain.backend_now(local) == local + row.offset));
}

// docs/protocol.md "Tokens": an offset of a minute or more is logged once.
BOOST_AUTO_TEST_CASE(a_notable_offset_is_reported_once) {
    chain_type chain(ms(10000));
    BOOST_TEST(!chain.observe(wall_base(), wall_base()));
    BOOST_TEST(chain.observe(wall_base() + 2h, wall_base()));
    BOOST_TEST(!chain.observe(wall_base() + 2h, wall_base())); // still notable: not again
    BOOST_TEST(!chain.observe(std::nullopt, wall_base()));     // no Date: nothing learnt
    BOOST_TEST(chain.clock().offset().count() == 7200000);
}

// docs/protocol.md "Tokens": token expiry is judged against the backend's clock; a refresh
// answer's token is issued at the backend's time (so the two-thirds window is measured in
// it).
BOOST_AUTO_TEST_CASE(a_refreshed_token_is_issued_at_the_backends_time) {
    chain_type chain(ms(10000));
    chain.observe(wall_base() + 3h, wall_base()); // the local clock is 3 h behind
    chain.begin_refresh("srt_old");
    // Fresh by the local clock, expired by the backend's: the call is made.
    const auto stored = creds("srt_other", 1h, 2);
    BOOST_TEST((chain.refresh_locked(true, stored, {}, chain.backend_now(wall_base())).what == step_kind::send));
    const auto step =
        chain.refresh_answered(classified(answer(200, refresh_body("srt_new", 4h))), chain.backend_now(wall_base()));
    BOOST_REQUIRE((step.what == step_kind::save));
    BOOST_TEST((step.credentials.runtime_token_issued_at == wall_base() + 3h));
}

BOOST_AUTO_TEST_SUITE_END()
