// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/metrics.hpp>

#include "prometheus_parser.hpp"

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

prometheus_check::result parse_ok(const std::string& text) {
    auto r = prometheus_check::parse(text);
    BOOST_TEST_REQUIRE(r.error.empty(), "not valid exposition text: " << r.error << "\n" << text);
    return r;
}

} // namespace

BOOST_AUTO_TEST_SUITE(metrics)

BOOST_AUTO_TEST_CASE(the_strict_parser_refuses_what_a_scraper_would) {
    // The checker must be able to fail: each of these texts breaks one rule.
    const std::vector<std::string> bad{
        "x 1",                                                             // no final line break
        "# TYPE x gauge\nx 1\n\n",                                         // blank line
        "x 1\n",                                                           // no TYPE
        "# TYPE x gauge\nx{a=\"1\",a=\"2\"} 1\n",                          // label twice
        "# TYPE x gauge\nx{a=\"\\q\"} 1\n",                                // bad escape
        "# TYPE x gauge\nx 1\nx 2\n",                                      // series twice
        "# TYPE x gauge\n# TYPE y gauge\ny 1\nx 1\n",                      // family comes back
        "# TYPE x counter\nx -1\n",                                        // negative counter
        "# TYPE x gauge\nx one\n",                                         // bad value
        "# TYPE 1x gauge\n",                                               // bad name
        "# TYPE x gauge\nx{0a=\"1\"} 1\n",                                 // bad label name
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", // not cumulative
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  // no +Inf
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n", // count differs
        "# TYPE x gauge\nx 1 1700000000\n",                                // timestamp
    };
    for (const auto& t : bad) BOOST_TEST(!prometheus_check::parse(t).error.empty(), "accepted:\n" << t);
}

BOOST_AUTO_TEST_CASE(families_are_grouped_and_escaped) {
    sekuire::prometheus_text t;
    t.gauge("a_gauge", "A gauge\\with a backslash\nand a line break", 1.5, {{"k", "v\"q\\b\nn"}});
    t.counter("b_total", "A counter", 3);
    t.gauge("a_gauge", "ignored: the first help stays", 2, {{"k", "other"}}); // joins its family
    const std::string text = t.str();
    const auto r = parse_ok(text);
    BOOST_TEST_REQUIRE(r.families.size() == 2u);
    BOOST_TEST(r.families[0].name == "a_gauge");
    BOOST_TEST(r.families[0].type == "gauge");
    BOOST_TEST(r.families[0].help == "A gauge\\with a backslash\nand a line break");
    BOOST_TEST(r.families[0].samples.size() == 2u);
    BOOST_TEST(*r.value("a_gauge", {{"k", "v\"q\\b\nn"}}) == 1.5);
    BOOST_TEST(*r.value("a_gauge", {{"k", "other"}}) == 2);
    BOOST_TEST(*r.value("b_total") == 3);
    BOOST_TEST(r.families[1].type == "counter");
}

BOOST_AUTO_TEST_CASE(values_are_written_as_prometheus_reads_them) {
    sekuire::prometheus_text t;
    t.gauge("v", "", 0.1, {{"i", "1"}});
    t.gauge("v", "", 1e21, {{"i", "2"}});
    t.gauge("v", "", std::numeric_limits<double>::infinity(), {{"i", "3"}});
    t.gauge("v", "", -std::numeric_limits<double>::infinity(), {{"i", "4"}});
    t.gauge("v", "", std::nan(""), {{"i", "5"}});
    t.gauge("v", "", 42, {{"i", "6"}});
    t.gauge("v", "", -7, {{"i", "7"}});
    const std::string text = t.str();
    BOOST_TEST(text.find("v{i=\"1\"} 0.1\n") != std::string::npos);
    BOOST_TEST(text.find("v{i=\"3\"} +Inf\n") != std::string::npos);
    BOOST_TEST(text.find("v{i=\"4\"} -Inf\n") != std::string::npos);
    BOOST_TEST(text.find("v{i=\"5\"} NaN\n") != std::string::npos);
    BOOST_TEST(text.find("v{i=\"6\"} 42\n") != std::string::npos);
    BOOST_TEST(text.find("v{i=\"7\"} -7\n") != std::string::npos);
    const auto r = parse_ok(text);
    BOOST_TEST(*r.value("v", {{"i", "2"}}) == 1e21);
}

BOOST_AUTO_TEST_CASE(programming_errors_are_refused) {
    sekuire::prometheus_text t;
    BOOST_CHECK_THROW(t.gauge("1bad", "", 1), sekuire::error);
    BOOST_CHECK_THROW(t.gauge("ok", "", 1, {{"__reserved", "x"}}), sekuire::error);
    BOOST_CHECK_THROW(t.gauge("ok", "", 1, {{"a", "1"}, {"a", "2"}}), sekuire::error);
    t.gauge("ok", "", 1);
    BOOST_CHECK_THROW(t.gauge("ok", "", 2), sekuire::error);     // the same series twice
    BOOST_CHECK_THROW(t.counter("ok", "", 1, {{"a", "1"}}), sekuire::error); // another type
    sekuire::histogram_snapshot h;
    h.upper_bounds = {1};
    h.counts = {1}; // one short
    BOOST_CHECK_THROW(t.histogram("h", "", h), sekuire::error);
    h.counts = {1, 0};
    BOOST_CHECK_THROW(t.histogram("h2", "", h, {{"le", "x"}}), sekuire::error); // le is the histogram's
    parse_ok(t.str()); // what was accepted is still valid
}

BOOST_AUTO_TEST_CASE(a_histogram_in_the_exposition_format) {
    sekuire::latency_histogram h({0.01, 0.1, 1});
    h.observe(5ms);     // <= 0.01
    h.observe(10ms);    // == 0.01: the bound is inclusive
    h.observe(50ms);    // <= 0.1
    h.observe(2s);      // above every bound
    h.observe(-3ms);    // counts as zero
    h.observe_seconds(std::nan(""));
    h.observe_seconds(0.5);
    const auto s = h.snapshot();
    sekuire::prometheus_text t;
    t.histogram("sekuire_worker_handler_duration_seconds", "How long handlers ran", s, {{"worker", "w1"}});
    const auto r = parse_ok(t.str());
    using labels = std::map<std::string, std::string>;
    BOOST_TEST(*r.value("sekuire_worker_handler_duration_seconds_bucket", labels{{"worker", "w1"}, {"le", "0.01"}}) == 3);
    BOOST_TEST(*r.value("sekuire_worker_handler_duration_seconds_bucket", labels{{"worker", "w1"}, {"le", "0.1"}}) == 4);
    BOOST_TEST(*r.value("sekuire_worker_handler_duration_seconds_bucket", labels{{"worker", "w1"}, {"le", "1"}}) == 5);
    BOOST_TEST(*r.value("sekuire_worker_handler_duration_seconds_bucket", labels{{"worker", "w1"}, {"le", "+Inf"}}) == 6);
    BOOST_TEST(*r.value("sekuire_worker_handler_duration_seconds_count", labels{{"worker", "w1"}}) == 6);
    BOOST_TEST(std::fabs(*r.value("sekuire_worker_handler_duration_seconds_sum", labels{{"worker", "w1"}}) - 2.565) < 1e-9);
}

BOOST_AUTO_TEST_CASE(the_text_stays_valid_under_concurrent_observations) {
    sekuire::latency_histogram h;
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t)
        threads.emplace_back([&h, t] {
            for (int i = 0; i < 5000; ++i) h.observe(std::chrono::microseconds(i * (t + 1)));
        });
    for (int i = 0; i < 50; ++i) {
        sekuire::prometheus_text t;
        t.histogram("h_seconds", "", h.snapshot());
        parse_ok(t.str());
    }
    for (auto& t : threads) t.join();
    BOOST_TEST(h.snapshot().count == 15000u);
}

BOOST_AUTO_TEST_CASE(beacon_metrics) {
    sekuire::beacon_status s;
    s.state = sekuire::beacon_state::connected;
    s.installation_id = "inst_1";
    s.runtime_token = "srt_...9f2c";
    s.heartbeats_sent = 12;
    s.failed_heartbeats = 0;
    s.lease_expires_at = sekuire::wall_time_point(std::chrono::seconds(1770120300));
    s.runtime_token_expires_at = sekuire::wall_time_point(std::chrono::seconds(1770120300) + std::chrono::microseconds(566789));
    s.last_heartbeat = sekuire::wall_time_point(std::chrono::seconds(1770120240));
    s.heartbeat_interval = std::chrono::seconds(60);
    s.clock_offset = std::chrono::milliseconds(-2500);
    sekuire::prometheus_text t;
    sekuire::add_beacon_metrics(t, s);
    const std::string text = t.str();
    const auto r = parse_ok(text);
    BOOST_TEST(*r.value("sekuire_beacon_state", {{"state", "connected"}}) == 1);
    BOOST_TEST(*r.value("sekuire_beacon_state", {{"state", "degraded"}}) == 0);
    BOOST_TEST(*r.value("sekuire_beacon_connected") == 1);
    BOOST_TEST(*r.value("sekuire_beacon_lease_held") == 1);
    BOOST_TEST(*r.value("sekuire_beacon_heartbeats_total") == 12);
    BOOST_TEST(*r.value("sekuire_beacon_consecutive_heartbeat_failures") == 0);
    BOOST_TEST(*r.value("sekuire_beacon_lease_expiry_timestamp_seconds") == 1770120300);
    // Times to the millisecond, written short.
    BOOST_TEST(text.find("sekuire_beacon_runtime_token_expiry_timestamp_seconds 1770120300.566\n") != std::string::npos);
    BOOST_TEST(*r.value("sekuire_beacon_last_heartbeat_timestamp_seconds") == 1770120240);
    BOOST_TEST(*r.value("sekuire_beacon_heartbeat_interval_seconds") == 60);
    BOOST_TEST(*r.value("sekuire_beacon_clock_offset_seconds") == -2.5);
    BOOST_TEST(*r.value("sekuire_beacon_info", {{"installation_id", "inst_1"}}) == 1);
    BOOST_TEST(r.find("sekuire_beacon_heartbeats_total")->type == "counter");
    BOOST_TEST(text.find("srt_") == std::string::npos); // no token, not even masked

    // An expired lease is not held; a degraded beacon has no installation sample.
    s.lease_expired = true;
    s.state = sekuire::beacon_state::lease_expired;
    sekuire::prometheus_text t2;
    sekuire::add_beacon_metrics(t2, s, {{"beacon", "main"}});
    const auto r2 = parse_ok(t2.str());
    BOOST_TEST(*r2.value("sekuire_beacon_lease_held", {{"beacon", "main"}}) == 0);
    BOOST_TEST(*r2.value("sekuire_beacon_state", {{"beacon", "main"}, {"state", "lease_expired"}}) == 1);
    sekuire::beacon_status idle;
    sekuire::prometheus_text t3;
    sekuire::add_beacon_metrics(t3, idle);
    const auto r3 = parse_ok(t3.str());
    BOOST_TEST(!r3.value("sekuire_beacon_info").has_value());
    BOOST_TEST(!r3.value("sekuire_beacon_lease_expiry_timestamp_seconds").has_value());
}

BOOST_AUTO_TEST_CASE(worker_metrics_for_several_workers_in_one_text) {
    sekuire::worker_status a;
    a.completed = 10;
    a.failed = 2;
    a.rejected = 1;
    a.received = 14;
    a.duplicates = 1;
    a.in_flight = 3;
    a.stream_connected = true;
    sekuire::worker_status b;
    b.completed = 5;
    sekuire::latency_histogram h;
    h.observe(20ms);
    const auto snap = h.snapshot();
    sekuire::prometheus_text t;
    sekuire::add_beacon_metrics(t, sekuire::beacon_status{});
    sekuire::add_worker_metrics(t, a, {{"worker", "a"}}, &snap);
    sekuire::add_worker_metrics(t, b, {{"worker", "b"}}, &snap);
    const auto r = parse_ok(t.str()); // the families of both workers stay together
    BOOST_TEST(*r.value("sekuire_worker_tasks_total", {{"worker", "a"}, {"outcome", "completed"}}) == 10);
    BOOST_TEST(*r.value("sekuire_worker_tasks_total", {{"worker", "a"}, {"outcome", "failed"}}) == 2);
    BOOST_TEST(*r.value("sekuire_worker_tasks_total", {{"worker", "a"}, {"outcome", "rejected"}}) == 1);
    BOOST_TEST(*r.value("sekuire_worker_tasks_total", {{"worker", "b"}, {"outcome", "completed"}}) == 5);
    BOOST_TEST(*r.value("sekuire_worker_tasks_in_flight", {{"worker", "a"}}) == 3);
    BOOST_TEST(*r.value("sekuire_worker_stream_connected", {{"worker", "a"}}) == 1);
    BOOST_TEST(*r.value("sekuire_worker_handler_duration_seconds_count", {{"worker", "b"}}) == 1);
    BOOST_TEST(r.find("sekuire_worker_tasks_total")->samples.size() == 6u);
    // The same worker twice is a programming error.
    BOOST_CHECK_THROW(sekuire::add_worker_metrics(t, a, {{"worker", "a"}}), sekuire::error);
}

BOOST_AUTO_TEST_SUITE_END()
