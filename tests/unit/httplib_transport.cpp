// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/httplib_transport.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <type_traits>
#include <vector>

#if !defined(_WIN32) && !defined(SO_NOSIGPIPE)
#include <signal.h>
#endif

static_assert(sekuire::is_transport<sekuire::httplib_transport>::value,
              "httplib_transport must meet the Transport requirements");
static_assert(sekuire::check_transport<sekuire::httplib_transport>::value, "");
// basic_beacon builds its default transport from (base URL, transport_options).
static_assert(std::is_constructible<sekuire::httplib_transport, std::string, sekuire::transport_options>::value, "");

namespace {

using sekuire::errc;
using sekuire::error_code;
using sekuire::detail::parsed_url;

parsed_url parse_ok(const std::string& url) {
    parsed_url out;
    error_code ec;
    BOOST_TEST_INFO("url: " << url);
    BOOST_TEST(sekuire::detail::parse_base_url(url, out, ec));
    BOOST_TEST(!ec);
    return out;
}

sekuire::httplib_transport_options options_for(const std::string& url) {
    sekuire::httplib_transport_options o;
    o.base_url = url;
    return o;
}

// A transport whose base URL is valid but where nothing listens; the tests below fail
// before any connection is attempted.
sekuire::httplib_transport loopback_transport() {
    return sekuire::httplib_transport(options_for("http://127.0.0.1:9"));
}

} // namespace

BOOST_AUTO_TEST_SUITE(httplib_transport)

BOOST_AUTO_TEST_CASE(parses_plain_https_url) {
    const auto u = parse_ok("https://api.sekuire.ai");
    BOOST_TEST(u.scheme == "https");
    BOOST_TEST(u.host == "api.sekuire.ai");
    BOOST_TEST(u.port == 443);
    BOOST_TEST(u.path_prefix == "");
    BOOST_TEST(!u.loopback);
}

BOOST_AUTO_TEST_CASE(parses_scheme_and_host_case_insensitively) {
    const auto u = parse_ok("HTTP://LocalHost:8080/Core/");
    BOOST_TEST(u.scheme == "http");
    BOOST_TEST(u.host == "localhost");
    BOOST_TEST(u.port == 8080);
    BOOST_TEST(u.path_prefix == "/Core"); // the path keeps its case
    BOOST_TEST(u.loopback);
}

BOOST_AUTO_TEST_CASE(default_and_explicit_ports) {
    BOOST_TEST(parse_ok("http://example.com").port == 80);
    BOOST_TEST(parse_ok("https://example.com").port == 443);
    BOOST_TEST(parse_ok("http://example.com:1").port == 1);
    BOOST_TEST(parse_ok("https://example.com:65535").port == 65535);
    BOOST_TEST(parse_ok("https://example.com:08443").port == 8443);
}

BOOST_AUTO_TEST_CASE(path_prefixes) {
    BOOST_TEST(parse_ok("http://127.0.0.1:5556/core").path_prefix == "/core");
    BOOST_TEST(parse_ok("http://127.0.0.1:5556/core/").path_prefix == "/core");
    BOOST_TEST(parse_ok("http://127.0.0.1:5556/core//").path_prefix == "/core");
    BOOST_TEST(parse_ok("http://127.0.0.1:5556/a/b-c_d.e/v1").path_prefix == "/a/b-c_d.e/v1");
    BOOST_TEST(parse_ok("http://127.0.0.1:5556/").path_prefix == "");
}

BOOST_AUTO_TEST_CASE(ipv6_literals) {
    auto u = parse_ok("https://[::1]:8443/p");
    BOOST_TEST(u.host == "::1");
    BOOST_TEST(u.port == 8443);
    BOOST_TEST(u.path_prefix == "/p");
    BOOST_TEST(u.loopback);

    u = parse_ok("https://[2001:DB8::A]");
    BOOST_TEST(u.host == "2001:db8::a");
    BOOST_TEST(u.port == 443);
    BOOST_TEST(!u.loopback);

    BOOST_TEST(parse_ok("http://[1:2:3:4:5:6:7:8]:80").host == "1:2:3:4:5:6:7:8");
    BOOST_TEST(parse_ok("http://[::ffff:10.0.0.1]").host == "::ffff:10.0.0.1");
}

BOOST_AUTO_TEST_CASE(invalid_urls_are_refused) {
    const std::vector<std::string> bad = {
        "",
        "api.sekuire.ai",
        "//api.sekuire.ai",
        "ftp://api.sekuire.ai",
        "https:/api.sekuire.ai",
        "https://",
        "https:///path",
        "https://:443",
        "https://host:",
        "https://host:0",
        "https://host:65536",
        "https://host:123456",
        "https://host:8a",
        "https://host:-1",
        "https://user@host",
        "https://user:secret@host",
        "https://@host",
        "https://host?x=1",
        "https://host/p?x=1",
        "https://host/p#frag",
        "https://host#frag",
        "https://ho st",
        "https://host/pa th",
        "https://host/p\r\nX: y",
        "https://host\\evil.com",
        "https://h%6Fst",
        "https://[::1",
        "https://[::1]x",
        "https://[::1]:",
        "https://[]",
        "https://[fe80::1%25eth0]",
        "https://[g::1]",
        "https://[1:2:3:4:5:6:7:8:9]",
        "https://[1::2::3]",
        "https://[12345::1]",
        "https://::1/",
        "https://1.2.3",
        "https://1.2.3.4.5",
        "https://256.1.1.1",
        "https://127.0.0.01",
        "https://0x7f.1",
        "https://foo.0x7f",
        "https://a..b",
        "https://.a",
        "https://a.",
        "https://-a.com",
        "https://a-.com",
        "https://h\xc3\xa9.com",
    };
    for (const auto& url : bad) {
        parsed_url out;
        error_code ec;
        BOOST_TEST_INFO("url: " << url);
        BOOST_TEST(!sekuire::detail::parse_base_url(url, out, ec));
        BOOST_TEST_INFO("url: " << url);
        BOOST_TEST((ec == errc::invalid_url));
    }
}

BOOST_AUTO_TEST_CASE(too_long_url_is_refused) {
    parsed_url out;
    error_code ec;
    BOOST_TEST(!sekuire::detail::parse_base_url("https://example.com/" + std::string(3000, 'a'), out, ec));
    BOOST_TEST((ec == errc::invalid_url));
}

BOOST_AUTO_TEST_CASE(loopback_detection) {
    using sekuire::detail::is_loopback_host;
    for (const char* h : {"localhost", "LOCALHOST", "127.0.0.1", "127.255.255.254", "127.0.0.2", "::1",
                          "0:0:0:0:0:0:0:1", "0::1", "[::1]", "::ffff:127.0.0.1", "::FFFF:7f00:1"}) {
        BOOST_TEST_INFO("host: " << h);
        BOOST_TEST(is_loopback_host(h));
    }
    for (const char* h : {"", "128.0.0.1", "10.0.0.1", "0.0.0.0", "::", "::2", "1::1", "::ffff:10.0.0.1",
                          "localhost.evil.com", "mylocalhost", "127.0.0.1.evil", "127.1", "0x7f000001",
                          "2130706433", "[::1", "example.com"}) {
        BOOST_TEST_INFO("host: " << h);
        BOOST_TEST(!is_loopback_host(h));
    }
}

BOOST_AUTO_TEST_CASE(insecure_http_refused_for_remote_hosts) {
    error_code ec;
    sekuire::httplib_transport t(options_for("http://api.example.com"), ec);
    BOOST_TEST((ec == errc::insecure_url));
    BOOST_CHECK_EXCEPTION(sekuire::httplib_transport(options_for("http://10.0.0.1:8080/core")), sekuire::error,
                          [](const sekuire::error& e) { return e.code() == errc::insecure_url; });
}

BOOST_AUTO_TEST_CASE(plain_http_allowed_for_loopback) {
    for (const char* url : {"http://127.0.0.1:5556", "http://localhost", "http://[::1]:8080/core", "http://127.9.9.9"}) {
        error_code ec;
        sekuire::httplib_transport t(options_for(url), ec);
        BOOST_TEST_INFO("url: " << url);
        BOOST_TEST(!ec);
    }
    BOOST_CHECK_NO_THROW(sekuire::httplib_transport(options_for("http://localhost:1234")));
}

BOOST_AUTO_TEST_CASE(plain_http_allowed_with_opt_in) {
    auto o = options_for("http://backend.internal:8080");
    o.allow_insecure_http = true;
    error_code ec;
    sekuire::httplib_transport t(o, ec);
    BOOST_TEST(!ec);
    BOOST_CHECK_NO_THROW(sekuire::httplib_transport{o});
}

BOOST_AUTO_TEST_CASE(https_accepted) {
    error_code ec;
    sekuire::httplib_transport t(options_for("https://api.sekuire.ai"), ec);
    if (sekuire::httplib_has_tls)
        BOOST_TEST(!ec);
    else
        BOOST_TEST((ec == errc::tls_failed));
}

BOOST_AUTO_TEST_CASE(invalid_url_through_both_constructors) {
    error_code ec;
    sekuire::httplib_transport t(options_for("https://host?x=1"), ec);
    BOOST_TEST((ec == errc::invalid_url));
    BOOST_CHECK_EXCEPTION(sekuire::httplib_transport(options_for("gopher://host")), sekuire::error,
                          [](const sekuire::error& e) { return e.code() == errc::invalid_url; });
}

BOOST_AUTO_TEST_CASE(construction_error_message_does_not_contain_the_url) {
    try {
        sekuire::httplib_transport t(options_for("https://agent:s3cr3t-token@host"));
        BOOST_FAIL("expected an exception");
    } catch (const sekuire::error& e) {
        BOOST_TEST((e.code() == errc::invalid_url));
        BOOST_TEST(std::string(e.what()).find("s3cr3t") == std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(construction_from_base_url_and_shared_options) {
    sekuire::transport_options shared;
    shared.max_idle_connections = 2;
    shared.tls.ca_file = "/etc/ssl/certs/ca-certificates.crt";
    const sekuire::httplib_transport t("https://api.sekuire.ai/core/", shared);
    BOOST_TEST(t.base_url() == "https://api.sekuire.ai/core");
    BOOST_TEST(t.options().base_url == "https://api.sekuire.ai/core/");
    BOOST_TEST(t.options().max_idle_connections == 2u);
    BOOST_TEST(t.options().tls.ca_file == "/etc/ssl/certs/ca-certificates.crt");

    error_code ec;
    sekuire::httplib_transport bad("http://api.sekuire.ai", shared, ec);
    BOOST_TEST((ec == errc::insecure_url));
    BOOST_CHECK_EXCEPTION(sekuire::httplib_transport("ftp://x", shared), sekuire::error,
                          [](const sekuire::error& e) { return e.code() == errc::invalid_url; });
    shared.allow_insecure_http = true;
    sekuire::httplib_transport opted_in("http://api.sekuire.ai", shared, ec);
    BOOST_TEST(!ec);
}

BOOST_AUTO_TEST_CASE(invalid_options_are_refused) {
    auto o = options_for("https://api.sekuire.ai");
    o.connect_timeout = std::chrono::milliseconds(0);
    error_code ec;
    sekuire::httplib_transport t1(o, ec);
    BOOST_TEST((ec == errc::invalid_option));

    o = options_for("https://api.sekuire.ai");
    o.max_response_size = 0;
    sekuire::httplib_transport t2(o, ec);
    BOOST_TEST((ec == errc::invalid_option));

    o = options_for("https://api.sekuire.ai");
    o.user_agent = "agent\r\nX-Injected: 1";
    BOOST_CHECK_EXCEPTION(sekuire::httplib_transport{o}, sekuire::error,
                          [](const sekuire::error& e) { return e.code() == errc::invalid_option; });
}

BOOST_AUTO_TEST_CASE(a_failed_transport_reports_its_error_on_every_call) {
    error_code ec;
    sekuire::httplib_transport t(options_for("http://api.example.com"), ec);
    BOOST_TEST((ec == errc::insecure_url));
    sekuire::http_request req;
    req.target = "/v1/ping";
    error_code call_ec;
    const auto res = t.send(req, call_ec);
    BOOST_TEST((call_ec == errc::insecure_url));
    BOOST_TEST(res.status == 0);
    sekuire::stream_callbacks cb;
    t.stream(req, cb, sekuire::stop_token(), call_ec);
    BOOST_TEST((call_ec == errc::insecure_url));
}

BOOST_AUTO_TEST_CASE(base_url_is_normalised) {
    BOOST_TEST(sekuire::httplib_transport(options_for("HTTPS://API.Example.com:443/v1/")).base_url() ==
               "https://api.example.com/v1");
    BOOST_TEST(sekuire::httplib_transport(options_for("http://[::1]:8080")).base_url() == "http://[::1]:8080");
    BOOST_TEST(sekuire::httplib_transport(options_for("http://localhost:80/")).base_url() == "http://localhost");
}

BOOST_AUTO_TEST_CASE(copies_share_state) {
    const auto a = loopback_transport();
    const auto b = a; // NOLINT(performance-unnecessary-copy-initialization)
    BOOST_TEST(&a.base_url() == &b.base_url());
    BOOST_TEST(&a.options() == &b.options());
}

BOOST_AUTO_TEST_CASE(host_header_values) {
    using sekuire::detail::host_header_value;
    BOOST_TEST(host_header_value(parse_ok("https://api.sekuire.ai")) == "api.sekuire.ai");
    BOOST_TEST(host_header_value(parse_ok("https://api.sekuire.ai:8443")) == "api.sekuire.ai:8443");
    BOOST_TEST(host_header_value(parse_ok("http://[::1]")) == "[::1]");
    BOOST_TEST(host_header_value(parse_ok("http://[::1]:5556")) == "[::1]:5556");
    BOOST_TEST(host_header_value(parse_ok("http://127.0.0.1:443")) == "127.0.0.1:443");
}

BOOST_AUTO_TEST_CASE(request_headers_are_completed) {
    sekuire::http_request req;
    req.method = sekuire::http_method::post;
    req.target = "/v1/heartbeat";
    req.headers = {{"Authorization", "Bearer tok"}};
    req.body = "{}";
    sekuire::header_list out;
    error_code ec;
    BOOST_TEST(sekuire::detail::prepare_request(req, "sekuire-cpp/9", "h:1", out, ec));
    BOOST_TEST(!ec);
    BOOST_TEST(out.size() == 4u);
    BOOST_TEST(*sekuire::find_header(out, "authorization") == "Bearer tok");
    BOOST_TEST(*sekuire::find_header(out, "User-Agent") == "sekuire-cpp/9");
    BOOST_TEST(*sekuire::find_header(out, "Host") == "h:1");
    BOOST_TEST(*sekuire::find_header(out, "Content-Type") == "application/json");
}

BOOST_AUTO_TEST_CASE(caller_headers_win_and_empty_bodies_get_no_content_type) {
    sekuire::http_request req;
    req.target = "/v1/tasks?after=5";
    req.headers = {{"user-agent", "custom/1"}, {"content-type", "text/plain"}};
    sekuire::header_list out;
    error_code ec;
    BOOST_TEST(sekuire::detail::prepare_request(req, "sekuire-cpp/9", "h", out, ec));
    BOOST_TEST(*sekuire::find_header(out, "User-Agent") == "custom/1");
    BOOST_TEST(*sekuire::find_header(out, "Content-Type") == "text/plain");
    int user_agents = 0;
    for (const auto& h : out) user_agents += sekuire::detail::iequals(h.name, "User-Agent") ? 1 : 0;
    BOOST_TEST(user_agents == 1);

    req.headers.clear();
    BOOST_TEST(sekuire::detail::prepare_request(req, "sekuire-cpp/9", "h", out, ec));
    BOOST_TEST(sekuire::find_header(out, "Content-Type") == nullptr);
}

BOOST_AUTO_TEST_CASE(user_agent_defaults_to_the_sdk_name_and_version) {
    sekuire::detail::httplib_transport_state st;
    error_code ec;
    st.init(options_for("http://127.0.0.1:9"), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(st.user_agent == "sekuire-cpp/" SEKUIRE_VERSION_STRING);
    BOOST_TEST(st.host_header == "127.0.0.1:9");

    sekuire::detail::httplib_transport_state custom;
    auto o = options_for("http://127.0.0.1:9");
    o.user_agent = "my-agent/2";
    custom.init(o, ec);
    BOOST_TEST(custom.user_agent == "my-agent/2");
}

BOOST_AUTO_TEST_CASE(bad_requests_are_refused_before_connecting) {
    auto t = loopback_transport();
    const auto check = [&t](const sekuire::http_request& req, errc expected) {
        error_code ec;
        t.send(req, ec);
        BOOST_TEST((ec == expected));
        sekuire::stream_callbacks cb;
        t.stream(req, cb, sekuire::stop_token(), ec);
        BOOST_TEST((ec == expected));
    };
    sekuire::http_request req;
    for (const char* target : {"", "v1/ping", "/a b", "/a#frag", "/a\r\nHost: evil", "/\xc3\xa9"}) {
        req.target = target;
        BOOST_TEST_INFO("target: " << target);
        check(req, errc::invalid_url);
    }
    req.target = "/v1/ping";
    req.headers = {{"Authorization", "Bearer secret\r\nX-Injected: 1"}};
    check(req, errc::invalid_argument);
    req.headers = {{"Bad Name", "x"}};
    check(req, errc::invalid_argument);
    req.headers = {{"", "x"}};
    check(req, errc::invalid_argument);
    req.headers = {{"Content-Length", "5"}};
    check(req, errc::invalid_argument);
    req.headers = {{"transfer-encoding", "chunked"}};
    check(req, errc::invalid_argument);
    req.headers.clear();
    req.timeout = std::chrono::milliseconds(0);
    check(req, errc::invalid_argument);
}

BOOST_AUTO_TEST_CASE(request_error_messages_do_not_contain_header_values) {
    auto t = loopback_transport();
    sekuire::http_request req;
    req.target = "/v1/ping";
    req.headers = {{"Authorization", "Bearer s3cr3t\n"}};
    try {
        t.send(req);
        BOOST_FAIL("expected an exception");
    } catch (const sekuire::error& e) {
        BOOST_TEST((e.code() == errc::invalid_argument));
        BOOST_TEST(std::string(e.what()).find("s3cr3t") == std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(stream_with_a_stopped_token_is_canceled_before_connecting) {
    auto t = loopback_transport();
    sekuire::stop_source source;
    source.request_stop();
    sekuire::http_request req;
    req.target = "/v1/tasks/stream";
    bool called = false;
    sekuire::stream_callbacks cb;
    cb.on_response = [&called](const sekuire::http_response&) { return called = true; };
    error_code ec;
    t.stream(req, cb, source.get_token(), ec);
    BOOST_TEST((ec == errc::canceled));
    BOOST_TEST(!called);
    BOOST_CHECK_EXCEPTION(t.stream(req, cb, source.get_token()), sekuire::error,
                          [](const sekuire::error& e) { return e.code() == errc::canceled; });
}

BOOST_AUTO_TEST_CASE(httplib_errors_are_mapped) {
    using E = httplib::Error;
    using sekuire::detail::map_httplib_error;
    BOOST_TEST((map_httplib_error(E::Connection, false) == errc::connection_failed));
    BOOST_TEST((map_httplib_error(E::ConnectionTimeout, true) == errc::connection_failed));
    BOOST_TEST((map_httplib_error(E::BindIPAddress, false) == errc::connection_failed));
    BOOST_TEST((map_httplib_error(E::Read, true) == errc::timeout));
    BOOST_TEST((map_httplib_error(E::Read, false) == errc::connection_lost));
    BOOST_TEST((map_httplib_error(E::Write, true) == errc::timeout));
    BOOST_TEST((map_httplib_error(E::Write, false) == errc::connection_lost));
    BOOST_TEST((map_httplib_error(E::Canceled, false) == errc::canceled));
    BOOST_TEST((map_httplib_error(E::ExceedRedirectCount, false) == errc::redirect_refused));
    BOOST_TEST((map_httplib_error(E::SSLConnection, false) == errc::tls_failed));
    BOOST_TEST((map_httplib_error(E::SSLLoadingCerts, false) == errc::tls_failed));
    BOOST_TEST((map_httplib_error(E::SSLServerVerification, false) == errc::tls_failed));
    BOOST_TEST((map_httplib_error(E::Unknown, false) == errc::connection_lost));
    BOOST_TEST((map_httplib_error(E::Compression, false) == errc::connection_lost));
}

BOOST_AUTO_TEST_CASE(idle_expiry_rule) {
    using namespace std::chrono_literals;
    using sekuire::detail::idle_expired;
    BOOST_TEST(idle_expired(1000ms, 1000ms));
    BOOST_TEST(idle_expired(950ms, 1000ms));
    BOOST_TEST(idle_expired(5s, 1000ms));
    BOOST_TEST(!idle_expired(500ms, 1000ms));
    BOOST_TEST(!idle_expired(0ms, 1000ms));
    BOOST_TEST((sekuire::detail::cap_timeout(std::chrono::milliseconds::max()) == std::chrono::hours(24)));
    BOOST_TEST((sekuire::detail::cap_timeout(1500ms) == 1500ms));
}

BOOST_AUTO_TEST_CASE(declared_content_length_limit) {
    using sekuire::detail::declared_length_exceeds;
    BOOST_TEST(declared_length_exceeds("100", 50));
    BOOST_TEST(!declared_length_exceeds("50", 50));
    BOOST_TEST(!declared_length_exceeds("0", 50));
    BOOST_TEST(declared_length_exceeds("99999999999999999999999999", 1u << 20));
    BOOST_TEST(declared_length_exceeds("18446744073709551616", static_cast<std::size_t>(-1)));
    BOOST_TEST(!declared_length_exceeds("abc", 50));
    BOOST_TEST(!declared_length_exceeds("", 50));
}

#if !defined(_WIN32) && !defined(SO_NOSIGPIPE)

namespace {
extern "C" void ignore_this_sigpipe(int) {}

// Sets SIGPIPE's disposition for the test's duration and restores it afterwards.
struct sigpipe_disposition {
    struct sigaction old_action {};
    explicit sigpipe_disposition(void (*handler)(int)) {
        struct sigaction sa {};
        sa.sa_handler = handler;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, &old_action);
    }
    ~sigpipe_disposition() { sigaction(SIGPIPE, &old_action, nullptr); }
    static void (*current())(int) {
        struct sigaction sa {};
        sigaction(SIGPIPE, nullptr, &sa);
        return sa.sa_handler;
    }
};
} // namespace

BOOST_AUTO_TEST_CASE(a_default_sigpipe_is_ignored_and_a_chosen_one_left_alone) {
    {
        sigpipe_disposition dfl(SIG_DFL);
        BOOST_TEST(sekuire::detail::ignore_default_sigpipe());
        BOOST_TEST((sigpipe_disposition::current() == SIG_IGN));
        BOOST_TEST(!sekuire::detail::ignore_default_sigpipe()); // already decided
    }
    {
        sigpipe_disposition own(ignore_this_sigpipe);
        BOOST_TEST(!sekuire::detail::ignore_default_sigpipe());
        BOOST_TEST((sigpipe_disposition::current() == &ignore_this_sigpipe));
    }
    {
        sigpipe_disposition ign(SIG_IGN);
        BOOST_TEST(!sekuire::detail::ignore_default_sigpipe());
        BOOST_TEST((sigpipe_disposition::current() == SIG_IGN));
    }
}

#endif

BOOST_AUTO_TEST_SUITE_END()
