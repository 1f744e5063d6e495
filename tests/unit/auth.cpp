// SPDX-License-Identifier: MIT
// Test that header file is self-contained (an internal header shared by the beacon and the
// worker: the exchange classification, the refresh rules and the time conversions).
#include <sekuire/detail/auth.hpp>


#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <limits>
#include <memory>

namespace proto = sekuire::protocol;
using namespace std::chrono_literals;
using sekuire::wall_time_point;

namespace {
const wall_time_point t0 = wall_time_point(std::chrono::seconds(1767225600));
}

// The classification of an answer `status`, `body`, `headers` (as the cores receive it).
sekuire::detail::http_outcome classified(int status, std::string body, sekuire::header_list headers, bool bearer,
                                         bool installation_path, wall_time_point now) {
    sekuire::http_response r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    return sekuire::detail::classify({}, std::move(r), bearer, installation_path, now);
}

BOOST_AUTO_TEST_SUITE(auth)

BOOST_AUTO_TEST_CASE(classify_reads_the_status_class_retry_after_and_date) {
    const auto req = sekuire::detail::make_request(sekuire::http_method::post, "/x", "{}", 1s);
    BOOST_TEST(*sekuire::find_header(req.headers, "Content-Type") == "application/json");
    const auto out = classified(429, R"({"error":{"code":"rate_limited","message":"slow down"}})",
                                {{"Retry-After", "7"}, {"Date", "Thu, 01 Jan 2026 00:00:05 GMT"}}, true, false, t0);
    BOOST_TEST((out.cls == proto::status_class::transient));
    BOOST_TEST((out.error == sekuire::errc::rate_limited));
    BOOST_TEST(out.code == "rate_limited");
    BOOST_TEST_REQUIRE(out.retry_after.has_value());
    BOOST_TEST(out.retry_after->count() == 7000);
    BOOST_TEST_REQUIRE(out.server_time.has_value());
    BOOST_TEST((*out.server_time == t0 + 5s));
    // A transport error is transient, whatever else came with it.
    const auto lost = sekuire::detail::classify(sekuire::errc::timeout, sekuire::http_response{}, true, false, t0);
    BOOST_TEST((lost.cls == proto::status_class::transient));
    BOOST_TEST((lost.error == sekuire::errc::timeout));
}

BOOST_AUTO_TEST_CASE(set_bearer_replaces_an_earlier_one) {
    auto req = sekuire::detail::make_request(sekuire::http_method::get, "/x", {}, 1s);
    sekuire::detail::set_bearer(req, "a");
    sekuire::detail::set_bearer(req, "b");
    std::size_t n = 0;
    for (const auto& h : req.headers)
        if (h.name == "Authorization") ++n;
    BOOST_TEST(n == 1u);
    BOOST_TEST(*sekuire::find_header(req.headers, "authorization") == "Bearer b");
}

// The heartbeat's headers written into a request given back: the same headers, in the same
// order, as make_request() and set_bearer() give, whatever the request carried before.
BOOST_AUTO_TEST_CASE(json_bearer_headers_replace_whatever_the_request_carried) {
    const auto expected = [](bool body) {
        auto req = sekuire::detail::make_request(sekuire::http_method::post, "/x", body ? "{}" : "", 1s);
        sekuire::detail::set_bearer(req, "srt_token");
        return req.headers;
    };
    const auto same = [](const sekuire::header_list& a, const sekuire::header_list& b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (a[i].name != b[i].name || a[i].value != b[i].value) return false;
        return true;
    };
    sekuire::http_request req;
    req.body = "{}";
    sekuire::detail::set_json_bearer_headers(req, "srt_token"); // none before
    BOOST_TEST(same(req.headers, expected(true)));
    req.headers = {{"X-API-Key", "k"}, {"Accept", "text/plain"}, {"A", "1"}, {"B", "2"}, {"C", "3"}}; // more, other
    sekuire::detail::set_json_bearer_headers(req, "srt_token");
    BOOST_TEST(same(req.headers, expected(true)));
    req.body.clear(); // no body: no Content-Type
    sekuire::detail::set_json_bearer_headers(req, "srt_token");
    BOOST_TEST(same(req.headers, expected(false)));
}

BOOST_AUTO_TEST_CASE(refresh_is_due_six_days_before_expiry_or_a_third_into_a_short_life) {
    sekuire::installation_credentials c;
    c.runtime_token = "t";
    BOOST_TEST(!sekuire::detail::refresh_due_at(c).has_value()); // no expiry: never on its own
    BOOST_TEST(!sekuire::detail::token_needs_refresh(c, t0));
    c.runtime_token_expires_at = t0 + 24h * 90;
    BOOST_TEST((*sekuire::detail::refresh_due_at(c) == t0 + 24h * 84)); // issue time unknown: 6 days
    c.runtime_token_issued_at = t0;
    BOOST_TEST((*sekuire::detail::refresh_due_at(c) == t0 + 24h * 84)); // long-lived: 6 days
    c.runtime_token_expires_at = t0 + 1h;
    BOOST_TEST((*sekuire::detail::refresh_due_at(c) == t0 + 20min)); // short-lived: a third in
    BOOST_TEST(!sekuire::detail::token_needs_refresh(c, t0 + 20min - 1ms));
    BOOST_TEST(sekuire::detail::token_needs_refresh(c, t0 + 20min));
    BOOST_TEST(!sekuire::detail::token_expired(c, t0 + 1h - 1ms));
    BOOST_TEST(sekuire::detail::token_expired(c, t0 + 1h));
    c.runtime_token.clear();
    BOOST_TEST(sekuire::detail::token_expired(c, t0)); // no token is as good as expired
}

BOOST_AUTO_TEST_CASE(delay_until_uses_the_backends_clock_and_refuses_the_implausible) {
    using sekuire::detail::delay_until;
    const auto day = std::chrono::milliseconds(24h);
    // The local clock is 3 hours behind: the backend's Date gives the true delay.
    BOOST_TEST(delay_until(t0 + 90s, t0, t0 - 3h, day)->count() == 90000);
    // Without a Date header, the local clock decides.
    BOOST_TEST(delay_until(t0 + 90s, std::nullopt, t0, day)->count() == 90000);
    BOOST_TEST(!delay_until(t0 - 1s, std::nullopt, t0, day).has_value()); // in the past
    BOOST_TEST(!delay_until(t0 + 25h, std::nullopt, t0, day).has_value()); // too far
}

BOOST_AUTO_TEST_CASE(bootstrap_outcomes) {
    using sekuire::detail::bootstrap_status;
    const auto bootstrap = [](int status, std::string body) {
        return sekuire::detail::finish_bootstrap(classified(status, std::move(body), {}, false, false, t0));
    };
    auto r = bootstrap(409, R"({"error":{"code":"install_token_used","message":"used"}})");
    BOOST_TEST((r.status == bootstrap_status::permanent));
    BOOST_TEST((r.error == sekuire::errc::install_token_used));
    r = bootstrap(503, "");
    BOOST_TEST((r.status == bootstrap_status::transient));
    r = bootstrap(201, "{not json");
    BOOST_TEST((r.status == bootstrap_status::transient)); // a malformed 201
    BOOST_TEST((r.error == sekuire::errc::malformed_json));
    r = bootstrap(403, R"({"error":{"code":"installation_revoked","message":"no"}})");
    BOOST_TEST((r.status == bootstrap_status::revoked));
}

BOOST_AUTO_TEST_CASE(retry_after_dates_are_measured_against_the_response_date) {
    // The local clock is an hour ahead; the backend asks for a retry 30 s after its own now.
    const auto out = classified(503, "",
                                {{"Retry-After", "Thu, 01 Jan 2026 00:00:30 GMT"}, {"Date", "Thu, 01 Jan 2026 00:00:00 GMT"}},
                                true, false, t0 + 1h);
    BOOST_TEST_REQUIRE(out.retry_after.has_value());
    BOOST_TEST(out.retry_after->count() == 30000);
}

BOOST_AUTO_TEST_CASE(hostile_date_headers_are_clamped) {
    const auto out = classified(200, "{}", {{"Date", "Mon, 01 Jan 1680 00:00:00 GMT"}}, true, false, t0);
    BOOST_TEST_REQUIRE(out.server_time.has_value());
    BOOST_TEST((*out.server_time == proto::timing::earliest_timestamp));
}

BOOST_AUTO_TEST_CASE(refresh_due_at_cannot_overflow) {
    // Instants near both ends of the nanosecond clock (about 1677 and 2262): computed in
    // milliseconds and saturated (UBSan watches this test).
    using dur = wall_time_point::duration;
    sekuire::installation_credentials c;
    c.runtime_token = "t";
    c.runtime_token_expires_at = wall_time_point(dur::max() - std::chrono::duration_cast<dur>(1h));
    c.runtime_token_issued_at = wall_time_point(dur::min() + std::chrono::duration_cast<dur>(1h));
    const auto due = sekuire::detail::refresh_due_at(c);
    BOOST_REQUIRE(due);
    const auto expected = *c.runtime_token_expires_at - std::chrono::duration_cast<dur>(24h * 6);
    BOOST_TEST((*due <= expected && expected - *due < std::chrono::duration_cast<dur>(1ms))); // to the millisecond
    c.runtime_token_expires_at = wall_time_point(dur::min() + std::chrono::duration_cast<dur>(1h));
    c.runtime_token_issued_at.reset();
    const auto early = sekuire::detail::refresh_due_at(c);
    BOOST_REQUIRE(early);
    BOOST_TEST((*early <= *c.runtime_token_expires_at)); // saturated at the clock's start
    BOOST_TEST(sekuire::detail::token_needs_refresh(c, t0));
}

BOOST_AUTO_TEST_CASE(wall_from_ms_saturates) {
    using dur = wall_time_point::duration;
    const auto hi = sekuire::detail::wall_from_ms(std::numeric_limits<std::int64_t>::max());
    const auto lo = sekuire::detail::wall_from_ms(std::numeric_limits<std::int64_t>::min());
    BOOST_TEST((hi < wall_time_point(dur::max())));
    BOOST_TEST((hi > wall_time_point(dur::max()) - std::chrono::duration_cast<dur>(1s)));
    BOOST_TEST((lo > wall_time_point(dur::min())));
    BOOST_TEST((sekuire::detail::wall_from_ms(sekuire::detail::wall_ms(t0 + 1500ms)) == t0 + 1500ms));
}

BOOST_AUTO_TEST_CASE(backend_clock_learns_the_offset_from_date_headers) {
    sekuire::detail::backend_clock b;
    BOOST_TEST((b.now(t0) == t0)); // nothing seen yet
    BOOST_TEST(!b.observe(std::nullopt, t0));
    // A Date names a whole second: a local clock inside it is right...
    BOOST_TEST(!b.observe(t0, t0));
    BOOST_TEST(b.offset().count() == 0);
    BOOST_TEST(!b.observe(t0 - 999ms, t0));
    BOOST_TEST(b.offset().count() == 0);
    // ...and so is one a quarter second past it (the way back).
    BOOST_TEST(!b.observe(t0 - 1249ms, t0));
    BOOST_TEST(b.offset().count() == 0);
    // Beyond that, the skew is corrected to the nearest edge of the second.
    BOOST_TEST(!b.observe(t0 - 1250ms, t0));
    BOOST_TEST(b.offset().count() == -250);
    BOOST_TEST(!b.observe(t0 + 1500ms, t0)); // the local clock is behind: by at least 1.5 s
    BOOST_TEST(b.offset().count() == 1500);
    BOOST_TEST(b.observe(t0 - 2h, t0)); // the local clock is 2 h ahead: notable, once
    BOOST_TEST(b.offset().count() == -std::chrono::milliseconds(2h - 1s).count());
    BOOST_TEST((b.now(t0 + 10s) == t0 - 2h + 1s + 10s));
    BOOST_TEST(!b.observe(t0 - 2h + 1s, t0)); // still notable: no second warning
    BOOST_TEST(!b.observe(t0, t0)); // set right
    BOOST_TEST(b.offset().count() == 0);
    BOOST_TEST(b.observe(std::optional<wall_time_point>(t0 + 5min), t0)); // off again, the other way
    BOOST_TEST(!b.observe(t0 - 24h * 366 * 250, t0)); // centuries off: ignored as nonsense
    BOOST_TEST(b.offset().count() == std::chrono::milliseconds(5min).count());
}

BOOST_AUTO_TEST_CASE(unsaved_credentials_give_way_when_the_store_moved_on) {
    sekuire::memory_store store;
    sekuire::installation_credentials mine;
    mine.installation_id = "inst_1";
    mine.refresh_token = "rt_mine";
    mine.token_version = 3;
    sekuire::error_code ec;
    {
        sekuire::detail::unsaved_credentials u;
        u.remember(mine);
        auto other = mine;
        other.installation_id = "inst_2";
        BOOST_TEST(u.reconcile(store, other, ec)->installation_id == "inst_2"); // re-bootstrapped
        BOOST_TEST(u.empty());
    }
    {
        sekuire::detail::unsaved_credentials u;
        u.remember(mine);
        auto newer = mine;
        newer.token_version = 4;
        newer.refresh_token = "rt_newer";
        BOOST_TEST(u.reconcile(store, newer, ec)->refresh_token == "rt_newer");
        BOOST_TEST(u.empty());
    }
    {
        sekuire::detail::unsaved_credentials u;
        u.remember(mine);
        BOOST_TEST(!u.reconcile(store, std::nullopt, ec).has_value()); // emptied: revoked or gone
        BOOST_TEST(u.empty());
        BOOST_TEST(!store.load(ec).has_value());
    }
}

BOOST_AUTO_TEST_CASE(adopt_runtime_token_merges_under_the_lock) {
    sekuire::memory_store store;
    sekuire::installation_credentials base;
    base.installation_id = "inst_1";
    base.refresh_token = "rt_1";
    base.runtime_token = "srt_1";
    base.token_version = 1;
    sekuire::error_code ec;
    const proto::refreshed_token t{"srt_2", t0 + 24h, 2};

    // The store moved on meanwhile (a rotation by another holder): its fields stay.
    auto rotated = base;
    rotated.refresh_token = "rt_2";
    store.save(rotated, ec);
    auto a = sekuire::detail::adopt_runtime_token(store, base, t, t0);
    BOOST_TEST(a.adopted);
    BOOST_TEST(!a.error);
    BOOST_TEST(a.credentials->refresh_token == "rt_2");
    BOOST_TEST(store.load(ec)->refresh_token == "rt_2");
    BOOST_TEST(store.load(ec)->runtime_token == "srt_2");
    BOOST_TEST((*store.load(ec)->runtime_token_issued_at == t0));

    // A newer token is there already: nothing changes.
    auto newer = *store.load(ec);
    newer.runtime_token = "srt_3";
    newer.token_version = 3;
    store.save(newer, ec);
    a = sekuire::detail::adopt_runtime_token(store, base, t, t0);
    BOOST_TEST(!a.adopted);
    BOOST_TEST(store.load(ec)->runtime_token == "srt_3");

    // Another installation: not ours to write.
    auto other = base;
    other.installation_id = "inst_2";
    store.save(other, ec);
    a = sekuire::detail::adopt_runtime_token(store, base, t, t0);
    BOOST_TEST(!a.adopted);
    BOOST_TEST(store.load(ec)->installation_id == "inst_2");
    BOOST_TEST(a.credentials->installation_id == "inst_2");

    // Emptied: kept in memory, not written.
    store.clear(ec);
    a = sekuire::detail::adopt_runtime_token(store, base, t, t0);
    BOOST_TEST(a.adopted);
    BOOST_TEST(a.credentials->runtime_token == "srt_2");
    BOOST_TEST(!store.load(ec).has_value());
}

BOOST_AUTO_TEST_CASE(forget_runtime_token_only_forgets_the_rejected_one) {
    sekuire::memory_store store;
    sekuire::installation_credentials c;
    c.installation_id = "inst_1";
    c.refresh_token = "rt_1";
    c.runtime_token = "srt_replaced_meanwhile";
    sekuire::error_code ec;
    store.save(c, ec);
    auto left = sekuire::detail::forget_runtime_token(store, "srt_rejected", ec);
    BOOST_TEST(left->runtime_token == "srt_replaced_meanwhile");
    left = sekuire::detail::forget_runtime_token(store, "srt_replaced_meanwhile", ec);
    BOOST_TEST(left->runtime_token.empty());
    BOOST_TEST(store.load(ec)->runtime_token.empty());
    BOOST_TEST(store.load(ec)->refresh_token == "rt_1");
}

BOOST_AUTO_TEST_SUITE_END()
