// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/policy_gateway.hpp>

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace proto = sekuire::protocol;
using sekuire::steady_time_point;

namespace {
proto::policy_document make_policy(std::vector<std::string> allowed, std::vector<std::string> denied,
                                   std::optional<std::int64_t> per_minute = std::nullopt,
                                   std::optional<std::int64_t> per_hour = std::nullopt) {
    proto::policy_document p;
    p.hash = "h";
    p.allowed_tools = std::move(allowed);
    p.denied_tools = std::move(denied);
    p.rate_limits.max_per_minute = per_minute;
    p.rate_limits.max_per_hour = per_hour;
    return p;
}
const steady_time_point t0 = steady_time_point{} + 1000h;
} // namespace

BOOST_AUTO_TEST_SUITE(policy_gateway)

BOOST_AUTO_TEST_CASE(patterns) {
    using sekuire::capability_matches;
    BOOST_TEST(capability_matches("summarize", "summarize"));
    BOOST_TEST(!capability_matches("summarize", "summarize2"));
    BOOST_TEST(!capability_matches("summarize", "summ"));
    BOOST_TEST(capability_matches("google:docs:*", "google:docs:read"));
    BOOST_TEST(capability_matches("google:docs:*", "google:docs:"));
    BOOST_TEST(!capability_matches("google:docs:*", "google:doc"));
    BOOST_TEST(capability_matches("*", "anything"));
    BOOST_TEST(capability_matches("*", ""));
    BOOST_TEST(!capability_matches("", "x"));
    BOOST_TEST(capability_matches("a*b", "a*b")); // only a final * is special
    BOOST_TEST(!capability_matches("a*b", "axb"));
}

BOOST_AUTO_TEST_CASE(no_policy_allows_everything) {
    sekuire::policy_gateway g;
    for (int i = 0; i < 1000; ++i) BOOST_TEST(g.admit("anything", t0).allowed);
    BOOST_TEST(g.policy_hash().empty());
    BOOST_TEST(!g.policy().has_value());
}

BOOST_AUTO_TEST_CASE(deny_wins_over_allow) {
    sekuire::policy_gateway g(make_policy({"google:*"}, {"google:docs:delete"}));
    BOOST_TEST(g.admit("google:docs:read", t0).allowed);
    const auto d = g.admit("google:docs:delete", t0);
    BOOST_TEST(!d.allowed);
    BOOST_TEST((d.code == proto::task_error::capability_denied));
    BOOST_TEST(d.reason.find("google:docs:delete") != std::string::npos);
    BOOST_TEST(!g.admit("shell:rm", t0).allowed); // not in the allowed list
}

BOOST_AUTO_TEST_CASE(empty_allowed_list_allows_all_not_denied) {
    sekuire::policy_gateway g(make_policy({}, {"shell:*"}));
    BOOST_TEST(g.admit("summarize", t0).allowed);
    BOOST_TEST(!g.admit("shell:ls", t0).allowed);
}

BOOST_AUTO_TEST_CASE(per_minute_window_is_half_open_to_the_nanosecond) {
    sekuire::policy_gateway g(make_policy({}, {}, 2));
    BOOST_TEST(g.admit("a", t0).allowed);
    BOOST_TEST(g.admit("a", t0 + 10s).allowed);
    const auto r = g.admit("a", t0 + 20s);
    BOOST_TEST(!r.allowed);
    BOOST_TEST((r.code == proto::task_error::rate_limited));
    BOOST_TEST(!g.admit("a", t0 + 60s - 1ns).allowed); // t0 still counts
    BOOST_TEST(g.admit("a", t0 + 60s).allowed);        // t0 no longer counts
    BOOST_TEST(!g.admit("a", t0 + 70s - 1ns).allowed); // t0+10s and t0+60s count
    BOOST_TEST(g.admit("a", t0 + 70s).allowed);
}

BOOST_AUTO_TEST_CASE(refused_tasks_do_not_count) {
    sekuire::policy_gateway g(make_policy({"a"}, {}, 1));
    BOOST_TEST(!g.admit("b", t0).allowed); // denied, not counted
    BOOST_TEST(g.admit("a", t0).allowed);
    for (int i = 0; i < 10; ++i) BOOST_TEST(!g.admit("a", t0 + 1s).allowed); // limited, not counted
    BOOST_TEST(g.admit("a", t0 + 60s).allowed);
}

BOOST_AUTO_TEST_CASE(per_hour_window) {
    sekuire::policy_gateway g(make_policy({}, {}, std::nullopt, 3));
    BOOST_TEST(g.admit("a", t0).allowed);
    BOOST_TEST(g.admit("a", t0 + 1min).allowed);
    BOOST_TEST(g.admit("a", t0 + 2min).allowed);
    BOOST_TEST(!g.admit("a", t0 + 30min).allowed);
    BOOST_TEST(!g.admit("a", t0 + 1h - 1ns).allowed);
    BOOST_TEST(g.admit("a", t0 + 1h).allowed);
    BOOST_TEST(!g.admit("a", t0 + 1h + 1s).allowed);
}

BOOST_AUTO_TEST_CASE(both_windows) {
    sekuire::policy_gateway g(make_policy({}, {}, 2, 3));
    BOOST_TEST(g.admit("a", t0).allowed);
    BOOST_TEST(g.admit("a", t0 + 1s).allowed);
    BOOST_TEST(!g.admit("a", t0 + 2s).allowed);        // minute
    BOOST_TEST(g.admit("a", t0 + 61s).allowed);        // minute clear, hour at 3
    BOOST_TEST(!g.admit("a", t0 + 5min).allowed);      // hour
}

BOOST_AUTO_TEST_CASE(zero_limit_refuses_everything) {
    sekuire::policy_gateway g(make_policy({}, {}, 0));
    BOOST_TEST(!g.admit("a", t0).allowed);
}

BOOST_AUTO_TEST_CASE(heartbeat_hash_decides_the_fetch) {
    sekuire::policy_gateway g;
    BOOST_TEST(!g.on_heartbeat_response(std::nullopt));
    BOOST_TEST(g.on_heartbeat_response(std::string("h1"))); // no policy yet
    auto p = make_policy({}, {});
    p.hash = "h1";
    g.set_policy(p);
    BOOST_TEST(!g.on_heartbeat_response(std::string("h1")));
    BOOST_TEST(g.on_heartbeat_response(std::string("h2")));
    BOOST_TEST(g.policy_hash() == "h1");
}

BOOST_AUTO_TEST_CASE(copies_share_state_and_threads_are_safe) {
    sekuire::policy_gateway g(make_policy({}, {}, 1000));
    sekuire::policy_gateway copy = g;
    std::atomic<int> allowed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            auto& gw = t % 2 ? g : copy;
            for (int i = 0; i < 500; ++i)
                if (gw.admit("a", t0 + std::chrono::milliseconds(i)).allowed) ++allowed;
        });
    for (auto& th : threads) th.join();
    BOOST_TEST(allowed.load() == 1000); // exactly the limit, across both handles
}

BOOST_AUTO_TEST_CASE(policy_with_lists_round_trips_through_json) {
    const auto p = make_policy({"summarize", "google:docs:*"}, {"shell:*"}, 60, 500);
    proto::policy_document back;
    proto::decode_error err;
    BOOST_TEST_REQUIRE(proto::decode(proto::encode(p), back, err));
    BOOST_TEST(back.allowed_tools == p.allowed_tools);
    BOOST_TEST(back.denied_tools == p.denied_tools);
    BOOST_TEST(back.rate_limits.max_per_minute.value_or(0) == 60);
    BOOST_TEST(back.rate_limits.max_per_hour.value_or(0) == 500);
}

// Issue 15, item 1: a gateway of the user's own plugs in, as the seed's `policyGateway`.
namespace {
struct counting_gateway {
    std::shared_ptr<std::atomic<int>> admitted = std::make_shared<std::atomic<int>>(0);
    std::shared_ptr<std::string> hash = std::make_shared<std::string>("mine");
    sekuire::admission admit(std::string_view capability, sekuire::steady_time_point) {
        ++*admitted;
        if (capability.substr(0, 7) == "secret:") return {false, proto::task_error::capability_denied, "not here"};
        return {};
    }
    void set_policy(proto::policy_document doc) { *hash = doc.hash; }
    std::string policy_hash() const { return *hash; }
    bool on_heartbeat_response(const std::optional<std::string>& h) const { return h && *h != *hash; }
};
} // namespace

BOOST_AUTO_TEST_CASE(a_gateway_of_ones_own_plugs_in) {
    counting_gateway mine;
    sekuire::policy_gateway g = mine; // shares mine's state
    BOOST_TEST(g.admit("summarize", {}).allowed);
    const auto refused = g.admit("secret:read", {});
    BOOST_TEST(!refused.allowed);
    BOOST_TEST((refused.code == proto::task_error::capability_denied));
    BOOST_TEST(*mine.admitted == 2);
    BOOST_TEST(g.on_heartbeat_response(std::string("other")));
    g.set_policy(make_policy({}, {}));
    BOOST_TEST(*mine.hash == g.policy_hash());
    BOOST_TEST(!g.policy().has_value()); // the optional member is absent
    sekuire::policy_gateway copy = g;
    copy.admit("x", {});
    BOOST_TEST(*mine.admitted == 3); // copies share the gateway they hold
}

BOOST_AUTO_TEST_CASE(the_default_gateway_is_the_shipped_one) {
    sekuire::policy_gateway g;
    BOOST_TEST(g.admit("anything", {}).allowed);
    BOOST_TEST(!g.policy().has_value());
    g.set_policy(make_policy({"a"}, {}));
    BOOST_TEST(g.policy().has_value());
    BOOST_TEST(!g.admit("b", {}).allowed);
    static_assert(sekuire::is_policy_gateway<sekuire::default_policy_gateway>::value, "");
    static_assert(sekuire::is_policy_gateway<sekuire::policy_gateway>::value, "");
}

BOOST_AUTO_TEST_SUITE_END()
