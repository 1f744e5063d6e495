// SPDX-License-Identifier: MIT
// The health server over real sockets on 127.0.0.1 (an ephemeral port).
// Test that header file is self-contained.
#include <sekuire/health.hpp>

#include "unit/prometheus_parser.hpp"

#include <boost/test/unit_test.hpp>

#include <httplib.h>

#include <atomic>
#include <stdexcept>
#include <string>

namespace {

httplib::Result get(const sekuire::health_server& s, const std::string& path) {
    httplib::Client c("127.0.0.1", s.port());
    c.set_connection_timeout(5);
    c.set_read_timeout(5);
    return c.Get(path.c_str());
}

} // namespace

BOOST_AUTO_TEST_SUITE(health)

BOOST_AUTO_TEST_CASE(listen_addresses_are_parsed) {
    std::string host = "unchanged";
    int port = -1;
    BOOST_TEST(sekuire::parse_listen_address("127.0.0.1:9090", host, port));
    BOOST_TEST(host == "127.0.0.1");
    BOOST_TEST(port == 9090);
    BOOST_TEST(sekuire::parse_listen_address("[::1]:0", host, port));
    BOOST_TEST(host == "::1");
    BOOST_TEST(port == 0);
    BOOST_TEST(sekuire::parse_listen_address(":8080", host, port));
    BOOST_TEST(host == "0.0.0.0");
    BOOST_TEST(sekuire::parse_listen_address("localhost:65535", host, port));
    for (const char* bad : {"", "9090", "host:", "host:65536", "host:-1", "host:80a", "::1:80", "[::1:80", "a b:80",
                            "host:123456", "[]:80"}) {
        BOOST_TEST_CONTEXT(bad) {
            host = "unchanged";
            port = -1;
            BOOST_TEST(!sekuire::parse_listen_address(bad, host, port));
            BOOST_TEST(host == "unchanged");
            BOOST_TEST(port == -1);
        }
    }
}

BOOST_AUTO_TEST_CASE(probes_follow_their_callbacks) {
    std::atomic<bool> live{true}, ready{false};
    sekuire::health_server_options o;
    o.live = [&] { return sekuire::health_probe{live.load(), "stuck"}; };
    o.ready = [&] { return sekuire::health_probe{ready.load(), "not connected"}; };
    sekuire::health_server s(o);
    BOOST_TEST(s.port() == 0);
    BOOST_TEST(s.url().empty());
    s.start();
    BOOST_TEST(s.is_running());
    BOOST_TEST_REQUIRE(s.port() > 0);
    BOOST_TEST(s.url() == "http://127.0.0.1:" + std::to_string(s.port()));

    auto r = get(s, "/healthz");
    BOOST_TEST_REQUIRE(static_cast<bool>(r));
    BOOST_TEST(r->status == 200);
    BOOST_TEST(r->body == "ok\n");
    BOOST_TEST(r->get_header_value("Cache-Control") == "no-store");
    r = get(s, "/readyz");
    BOOST_TEST_REQUIRE(static_cast<bool>(r));
    BOOST_TEST(r->status == 503);
    BOOST_TEST(r->body == "not ready: not connected\n");
    ready = true;
    live = false;
    r = get(s, "/readyz");
    BOOST_TEST(r->status == 200);
    BOOST_TEST(r->body == "ready\n");
    r = get(s, "/healthz");
    BOOST_TEST(r->status == 503);
    BOOST_TEST(r->body == "not live: stuck\n");
    // No metrics callback: 404; an unknown path: 404.
    BOOST_TEST(get(s, "/metrics")->status == 404);
    BOOST_TEST(get(s, "/other")->status == 404);
    // HEAD is answered like GET, without a body.
    httplib::Client c("127.0.0.1", s.port());
    auto h = c.Head("/readyz");
    BOOST_TEST_REQUIRE(static_cast<bool>(h));
    BOOST_TEST(h->status == 200);
    BOOST_TEST(h->body.empty());
    s.stop();
    BOOST_TEST(!s.is_running());
    s.stop(); // twice is fine
}

BOOST_AUTO_TEST_CASE(metrics_are_served_in_the_exposition_format) {
    sekuire::health_server_options o;
    o.metrics = [] {
        sekuire::prometheus_text t;
        sekuire::beacon_status b;
        b.state = sekuire::beacon_state::connected;
        b.heartbeats_sent = 3;
        sekuire::add_beacon_metrics(t, b);
        return t.str();
    };
    sekuire::health_server s(o);
    s.start();
    const auto r = get(s, "/metrics");
    BOOST_TEST_REQUIRE(static_cast<bool>(r));
    BOOST_TEST(r->status == 200);
    BOOST_TEST(r->get_header_value("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
    const auto parsed = prometheus_check::parse(r->body);
    BOOST_TEST_REQUIRE(parsed.error.empty(), parsed.error);
    BOOST_TEST(*parsed.value("sekuire_beacon_heartbeats_total") == 3);
    BOOST_TEST(*parsed.value("sekuire_beacon_connected") == 1);
}

BOOST_AUTO_TEST_CASE(a_throwing_callback_answers_500_and_the_server_goes_on) {
    sekuire::health_server_options o;
    o.ready = []() -> sekuire::health_probe { throw std::runtime_error("boom"); };
    sekuire::health_server s(o);
    s.start();
    BOOST_TEST(get(s, "/readyz")->status == 500);
    BOOST_TEST(get(s, "/healthz")->status == 200);
}

BOOST_AUTO_TEST_CASE(bind_errors_and_bad_options) {
    sekuire::health_server first(sekuire::health_server_options{});
    first.start();
    sekuire::health_server_options o;
    o.port = first.port();
    sekuire::health_server second(o);
    sekuire::error_code ec;
    second.start(ec);
    BOOST_TEST(static_cast<bool>(ec)); // the port is taken
    BOOST_TEST(!second.is_running());
    BOOST_CHECK_THROW(second.start(), sekuire::error);
    first.start(ec);
    BOOST_TEST((ec == sekuire::errc::already_started));

    sekuire::health_server_options bad;
    bad.port = 70000;
    sekuire::health_server third(bad);
    third.start(ec);
    BOOST_TEST((ec == sekuire::errc::invalid_option));
    sekuire::health_server_options no_host;
    no_host.host = "256.1.1.1";
    sekuire::health_server fourth(no_host);
    fourth.start(ec);
    BOOST_TEST(static_cast<bool>(ec));
}

BOOST_AUTO_TEST_SUITE_END()
