// SPDX-License-Identifier: MIT
// Test that header file is self-contained (an internal header shared by the beacon and the
// worker: the exchange classification, the refresh rules and the time conversions).
#include <sekuire/detail/auth.hpp>

#include <sekuire/testing/fake_transport.hpp>

#include <boost/test/unit_test.hpp>

namespace st = sekuire::testing;
namespace proto = sekuire::protocol;
using namespace std::chrono_literals;
using sekuire::wall_time_point;

namespace {
const wall_time_point t0 = wall_time_point(std::chrono::seconds(1767225600));
}

BOOST_AUTO_TEST_SUITE(auth)

BOOST_AUTO_TEST_CASE(perform_classifies_and_reads_retry_after_and_date) {
    st::fake_transport t;
    t.on(sekuire::http_method::post, "/x")
        .respond(429, R"({"error":{"code":"rate_limited","message":"slow down"}})",
                 {{"Retry-After", "7"}, {"Date", "Thu, 01 Jan 2026 00:00:05 GMT"}});
    const auto req = sekuire::detail::make_request(sekuire::http_method::post, "/x", "{}", 1s);
    BOOST_TEST(*sekuire::find_header(req.headers, "Content-Type") == "application/json");
    const auto out = sekuire::detail::perform(t, req, true, false, t0);
    BOOST_TEST((out.cls == proto::status_class::transient));
    BOOST_TEST((out.error == sekuire::errc::rate_limited));
    BOOST_TEST(out.code == "rate_limited");
    BOOST_TEST_REQUIRE(out.retry_after.has_value());
    BOOST_TEST(out.retry_after->count() == 7000);
    BOOST_TEST_REQUIRE(out.server_time.has_value());
    BOOST_TEST((*out.server_time == t0 + 5s));
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
    st::fake_transport t;
    t.on(sekuire::http_method::post, std::string(proto::path::bootstrap))
        .respond(409, R"({"error":{"code":"install_token_used","message":"used"}})")
        .respond(503)
        .respond(201, "{not json")
        .respond(403, R"({"error":{"code":"installation_revoked","message":"no"}})");
    proto::bootstrap_request body;
    body.install_token = "skt_x";
    body.agent_id = "a";
    auto r = sekuire::detail::bootstrap_install(t, body, 1s, t0);
    BOOST_TEST((r.status == sekuire::detail::bootstrap_status::permanent));
    BOOST_TEST((r.error == sekuire::errc::install_token_used));
    r = sekuire::detail::bootstrap_install(t, body, 1s, t0);
    BOOST_TEST((r.status == sekuire::detail::bootstrap_status::transient));
    r = sekuire::detail::bootstrap_install(t, body, 1s, t0);
    BOOST_TEST((r.status == sekuire::detail::bootstrap_status::transient)); // a malformed 201
    BOOST_TEST((r.error == sekuire::errc::malformed_json));
    r = sekuire::detail::bootstrap_install(t, body, 1s, t0);
    BOOST_TEST((r.status == sekuire::detail::bootstrap_status::revoked));
}

BOOST_AUTO_TEST_CASE(refresh_without_a_refresh_token_makes_no_call) {
    st::fake_transport t;
    sekuire::memory_store store;
    sekuire::installation_credentials c;
    c.installation_id = "inst";
    c.runtime_token = "t";
    sekuire::error_code ec;
    store.save(c, ec);
    const auto r = sekuire::detail::refresh_single_flight(t, store, "t", t0, 1s);
    BOOST_TEST((r.status == sekuire::detail::refresh_status::no_refresh_token));
    BOOST_TEST(t.total() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
