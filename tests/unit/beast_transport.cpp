// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/beast_transport.hpp>

#include <boost/test/unit_test.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <string>
#include <type_traits>

static_assert(sekuire::is_transport<sekuire::beast_transport>::value,
              "beast_transport must meet the Transport requirements");
static_assert(sekuire::check_transport<sekuire::beast_transport>::value, "");
static_assert(sekuire::is_async_transport<sekuire::beast_transport>::value,
              "beast_transport must meet the AsyncTransport requirements");
static_assert(sekuire::check_async_transport<sekuire::beast_transport>::value, "");

namespace {

using sekuire::errc;
using sekuire::error_code;

sekuire::transport_options no_env() {
    sekuire::transport_options o;
    o.proxy.from_environment = false;
    return o;
}

} // namespace

BOOST_AUTO_TEST_SUITE(beast_transport)

BOOST_AUTO_TEST_CASE(construction_errors) {
    boost::asio::io_context io;
    const auto ex = io.get_executor();
    struct row {
        const char* url;
        errc expected;
    };
    const row rows[] = {
        {"ftp://example.com", errc::invalid_url},
        {"https://user@example.com", errc::invalid_url},
        {"http://api.sekuire.ai", errc::insecure_url},
        {"not a url", errc::invalid_url},
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT("url: " << r.url) {
            error_code ec;
            sekuire::beast_transport t(ex, r.url, no_env(), ec);
            BOOST_TEST((ec == r.expected));
            BOOST_CHECK_EXCEPTION(sekuire::beast_transport(ex, r.url, no_env()), sekuire::error,
                                  [&r](const sekuire::error& e) { return e.code() == r.expected; });
        }
    }
    auto o = no_env();
    o.connect_timeout = std::chrono::milliseconds(0);
    BOOST_CHECK_EXCEPTION(sekuire::beast_transport(ex, "http://127.0.0.1:9", o), sekuire::error,
                          [](const sekuire::error& e) { return e.code() == errc::invalid_option; });
    o = no_env();
    o.max_response_header_size = 0;
    BOOST_CHECK_EXCEPTION(sekuire::beast_transport(ex, "http://127.0.0.1:9", o), sekuire::error,
                          [](const sekuire::error& e) { return e.code() == errc::invalid_option; });
    o = no_env();
    o.user_agent = "a\r\nb";
    BOOST_CHECK_EXCEPTION(sekuire::beast_transport(ex, "http://127.0.0.1:9", o), sekuire::error,
                          [](const sekuire::error& e) { return e.code() == errc::invalid_option; });
    o = no_env();
    o.proxy.url = "socks5://proxy:1080";
    try {
        sekuire::beast_transport(ex, "https://api.sekuire.ai", o);
        BOOST_FAIL("expected an exception");
    } catch (const sekuire::error& e) {
        BOOST_TEST((e.code() == errc::invalid_option));
        BOOST_TEST(std::string(e.what()).find("options") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(normalised_base_url_and_copies_share_state) {
    boost::asio::io_context io;
    sekuire::beast_transport t(io.get_executor(), "HTTPS://API.Sekuire.ai:443/core/", no_env());
    BOOST_TEST(t.base_url() == "https://api.sekuire.ai/core");
    const auto copy = t; // NOLINT(performance-unnecessary-copy-initialization)
    BOOST_TEST(&copy.base_url() == &t.base_url());
    BOOST_TEST(t.proxy().empty());
    auto o = no_env();
    o.proxy.url = "http://u:p@proxy.example:3128";
    sekuire::beast_transport proxied(io.get_executor(), "https://api.sekuire.ai", o);
    BOOST_TEST(proxied.proxy() == "proxy.example:3128");
}

BOOST_AUTO_TEST_CASE(bad_requests_complete_with_an_error_without_a_connection) {
    // Nothing listens on port 9, and nothing is tried: the requests are refused first.
    boost::asio::io_context io;
    sekuire::beast_transport t(io.get_executor(), "http://127.0.0.1:9", no_env());
    sekuire::http_request req;
    req.target = "no-slash";
    error_code got_send, got_stream;
    int completions = 0;
    bool inline_completion = true;
    t.async_send(req, [&](error_code ec, sekuire::http_response r) {
        got_send = ec;
        BOOST_TEST(r.status == 0);
        ++completions;
    });
    sekuire::http_request bad_header;
    bad_header.target = "/v1/tasks";
    bad_header.headers = {{"X", "a\nb"}};
    t.async_stream(bad_header, {}, [&](error_code ec) {
        got_stream = ec;
        ++completions;
    });
    inline_completion = completions != 0; // handlers never run inside the initiating call
    io.run();
    BOOST_TEST(!inline_completion);
    BOOST_TEST(completions == 2);
    BOOST_TEST((got_send == errc::invalid_url));
    BOOST_TEST((got_stream == errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(a_closed_transport_cancels_later_operations) {
    boost::asio::io_context io;
    sekuire::beast_transport t(io.get_executor(), "http://127.0.0.1:9", no_env());
    t.close();
    sekuire::http_request req;
    req.target = "/v1/ping";
    auto fut = t.async_send(req, boost::asio::use_future);
    io.run();
    BOOST_CHECK_EXCEPTION(fut.get(), boost::system::system_error,
                          [](const boost::system::system_error& e) { return e.code() == errc::canceled; });
}

BOOST_AUTO_TEST_CASE(a_failed_transport_reports_its_error_on_every_call) {
    boost::asio::io_context io;
    error_code ec;
    sekuire::beast_transport t(io.get_executor(), "http://api.sekuire.ai", no_env(), ec);
    BOOST_REQUIRE((ec == errc::insecure_url));
    sekuire::http_request req;
    req.target = "/v1/ping";
    error_code got;
    t.async_send(req, [&got](error_code e, sekuire::http_response) { got = e; });
    io.run();
    BOOST_TEST((got == errc::insecure_url));
}

BOOST_AUTO_TEST_SUITE_END()
