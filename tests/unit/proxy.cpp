// SPDX-License-Identifier: MIT
// The proxy rules of detail/proxy.hpp: proxy URLs, the environment, NO_PROXY matching and
// the CONNECT exchange, table-driven.
#include <sekuire/detail/proxy.hpp>

#include <boost/test/unit_test.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

using sekuire::errc;
using sekuire::error_code;
namespace d = sekuire::detail;

d::parsed_url target(const std::string& url) {
    d::parsed_url u;
    error_code ec;
    BOOST_REQUIRE(d::parse_base_url(url, u, ec));
    return u;
}

// A fake environment.
struct fake_env {
    std::map<std::string, std::string> vars;
    std::optional<std::string> operator()(const char* name) const {
        const auto it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    }
};

} // namespace

BOOST_AUTO_TEST_SUITE(proxy)

BOOST_AUTO_TEST_CASE(base64) {
    BOOST_TEST(d::base64_encode("") == "");
    BOOST_TEST(d::base64_encode("f") == "Zg==");
    BOOST_TEST(d::base64_encode("fo") == "Zm8=");
    BOOST_TEST(d::base64_encode("foo") == "Zm9v");
    BOOST_TEST(d::base64_encode("user:pass") == "dXNlcjpwYXNz");
    BOOST_TEST(d::base64_encode("\xff\xfe") == "//4=");
}

BOOST_AUTO_TEST_CASE(proxy_urls) {
    struct row {
        const char* url;
        const char* host;
        int port;
        const char* authorization;
    };
    const row rows[] = {
        {"http://proxy.example.com:3128", "proxy.example.com", 3128, ""},
        {"proxy.example.com:3128", "proxy.example.com", 3128, ""}, // no scheme: http
        {"HTTP://Proxy.Example.COM", "proxy.example.com", 1080, ""}, // curl's default port
        {"http://proxy:8080/", "proxy", 8080, ""},
        {"http://10.0.0.1:80", "10.0.0.1", 80, ""},
        {"http://[::1]:3128", "::1", 3128, ""},
        {"http://[fd00::5]", "fd00::5", 1080, ""},
        {"http://user:pass@proxy:3128", "proxy", 3128, "Basic dXNlcjpwYXNz"},
        {"http://user@proxy:3128", "proxy", 3128, "Basic dXNlcjo="},
        {"http://us%40er:p%3Ass@proxy:1", "proxy", 1, "Basic dXNAZXI6cDpzcw=="}, // us@er : p:ss
        {"http://a:b@c@proxy:2", "proxy", 2, "Basic YTpiQGM="},                 // the last @ ends the user info
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT("url: " << r.url) {
            d::proxy_endpoint p;
            error_code ec;
            BOOST_TEST(d::parse_proxy_url(r.url, p, ec));
            BOOST_TEST(!ec);
            BOOST_TEST(p.host == r.host);
            BOOST_TEST(p.port == r.port);
            BOOST_TEST(p.authorization == r.authorization);
        }
    }
}

BOOST_AUTO_TEST_CASE(bad_proxy_urls_are_refused) {
    for (const char* url : {"", "https://proxy:443", "socks5://proxy:1080", "http://", "http://proxy:0",
                            "http://proxy:65536", "http://proxy:x", "http://proxy/path", "http://proxy?q",
                            "http://pro xy", "http://:pass@proxy", "http://us%4@proxy", "http://us%zz@proxy",
                            "http://[::1", "http://proxy:3128#f", "http://bad..name"}) {
        BOOST_TEST_CONTEXT("url: " << url) {
            d::proxy_endpoint p;
            error_code ec;
            BOOST_TEST(!d::parse_proxy_url(url, p, ec));
            BOOST_TEST((ec == errc::invalid_option));
        }
    }
}

BOOST_AUTO_TEST_CASE(no_proxy_matching) {
    struct row {
        const char* list;
        const char* host;
        int port;
        bool match;
    };
    const row rows[] = {
        {"", "api.sekuire.ai", 443, false},
        {"*", "api.sekuire.ai", 443, true},
        {"other.com, *", "api.sekuire.ai", 443, true},
        {"sekuire.ai", "sekuire.ai", 443, true},          // the name itself
        {"sekuire.ai", "api.sekuire.ai", 443, true},      // and every name below it
        {"sekuire.ai", "notsekuire.ai", 443, false},      // not a suffix of a label
        {"sekuire.ai", "sekuire.ai.evil.com", 443, false},
        {".sekuire.ai", "api.sekuire.ai", 443, true},     // a leading dot is ignored, as curl does
        {".sekuire.ai", "sekuire.ai", 443, true},
        {"*.sekuire.ai", "api.sekuire.ai", 443, true},
        {"SEKUIRE.AI", "api.sekuire.ai", 443, true},      // case-insensitive
        {"sekuire.ai.", "api.sekuire.ai", 443, true},     // trailing dots
        {"a.com,b.com , sekuire.ai", "x.sekuire.ai", 443, true},
        {" ,, ", "sekuire.ai", 443, false},
        {"sekuire.ai:443", "api.sekuire.ai", 443, true},  // a port: that port only
        {"sekuire.ai:8443", "api.sekuire.ai", 443, false},
        {"sekuire.ai:x", "api.sekuire.ai", 443, false},   // unreadable entries are skipped
        {"10.1.2.3", "10.1.2.3", 443, true},
        {"10.1.2.3", "10.1.2.4", 443, false},
        {"10.0.0.0/8", "10.200.3.4", 443, true},
        {"10.0.0.0/8", "11.0.0.1", 443, false},
        {"192.168.0.0/16", "192.168.77.1", 80, true},
        {"192.168.0.0/33", "192.168.77.1", 80, false},
        {"0.0.0.0/0", "8.8.8.8", 80, true},
        {"10.1.2.3:8080", "10.1.2.3", 8080, true},
        {"10.1.2.3:8080", "10.1.2.3", 443, false},
        {"fd00::1", "fd00::1", 443, true},                // IPv6 without brackets, as curl wants
        {"[fd00::1]", "fd00::1", 443, true},
        {"fd00::/16", "fd00::abcd", 443, true},
        {"fd00::/16", "fe80::1", 443, false},
        {"[fd00::1]:8443", "fd00::1", 8443, true},
        {"[fd00::1]:8443", "fd00::1", 443, false},
        {"10.1.2.3", "fd00::1", 443, false},              // families differ
        {"3.4", "1.2.3.4", 443, false},                   // names never match addresses by suffix
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT("list: '" << r.list << "' host: " << r.host << " port: " << r.port) {
            BOOST_TEST(d::no_proxy_matches(r.list, r.host, r.port) == r.match);
        }
    }
}

BOOST_AUTO_TEST_CASE(environment_rules) {
    struct row {
        std::map<std::string, std::string> env;
        const char* target;
        bool use;
        const char* host; // the proxy's
        const char* source;
    };
    const std::vector<row> rows = {
        {{}, "https://api.sekuire.ai", false, "", ""},
        {{{"HTTPS_PROXY", "http://up:1"}}, "https://api.sekuire.ai", true, "up", "HTTPS_PROXY"},
        {{{"https_proxy", "http://low:1"}, {"HTTPS_PROXY", "http://up:1"}}, "https://api.sekuire.ai", true, "low",
         "https_proxy"}, // lower case wins, as curl does
        {{{"https_proxy", ""}, {"HTTPS_PROXY", "http://up:1"}}, "https://api.sekuire.ai", true, "up",
         "HTTPS_PROXY"}, // empty counts as unset
        {{{"HTTP_PROXY", "http://up:1"}}, "http://backend.test", false, "", ""}, // never upper-case HTTP_PROXY
        {{{"http_proxy", "http://low:1"}}, "http://backend.test", true, "low", "http_proxy"},
        {{{"http_proxy", "http://low:1"}}, "https://api.sekuire.ai", false, "", ""}, // per scheme
        {{{"HTTPS_PROXY", "http://up:1"}}, "http://backend.test", false, "", ""},
        {{{"ALL_PROXY", "http://all:1"}}, "https://api.sekuire.ai", true, "all", "ALL_PROXY"},
        {{{"all_proxy", "http://all:1"}, {"HTTPS_PROXY", "http://up:1"}}, "https://api.sekuire.ai", true, "up",
         "HTTPS_PROXY"}, // the scheme's variable first
        {{{"ALL_PROXY", "http://all:1"}}, "http://backend.test", true, "all", "ALL_PROXY"},
        {{{"HTTPS_PROXY", "http://up:1"}, {"NO_PROXY", "sekuire.ai"}}, "https://api.sekuire.ai", false, "", ""},
        {{{"HTTPS_PROXY", "http://up:1"}, {"no_proxy", "other"}, {"NO_PROXY", "sekuire.ai"}},
         "https://api.sekuire.ai", true, "up", "HTTPS_PROXY"}, // lower-case no_proxy wins
        {{{"HTTPS_PROXY", "http://up:1"}}, "https://127.0.0.1:8443", false, "", ""}, // loopback: never
        {{{"HTTPS_PROXY", "http://up:1"}}, "https://localhost", false, "", ""},
        {{{"HTTPS_PROXY", "http://up:1"}}, "https://[::1]:8443", false, "", ""},
        {{{"HTTPS_PROXY", "not a url"}, {"NO_PROXY", "*"}}, "https://api.sekuire.ai", false, "",
         ""}, // a URL that does not apply is not read
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT("target: " << r.target << " env size: " << r.env.size()) {
            sekuire::proxy_options opts;
            d::proxy_route route;
            error_code ec;
            std::string message;
            BOOST_TEST(d::resolve_proxy(opts, target(r.target), fake_env{r.env}, route, ec, message));
            BOOST_TEST(!ec);
            BOOST_TEST(route.use == r.use);
            BOOST_TEST(route.proxy.host == r.host);
            BOOST_TEST(route.source == r.source);
        }
    }
}

BOOST_AUTO_TEST_CASE(options_before_the_environment) {
    const fake_env env{{{"HTTPS_PROXY", "http://env:1"}, {"NO_PROXY", "sekuire.ai"}}};
    d::proxy_route route;
    error_code ec;
    std::string message;

    sekuire::proxy_options opts;
    opts.url = "http://opt:2";
    // The environment's NO_PROXY still applies to a proxy given in options, as with curl.
    BOOST_TEST(d::resolve_proxy(opts, target("https://api.sekuire.ai"), env, route, ec, message));
    BOOST_TEST(!route.use);
    BOOST_TEST(d::resolve_proxy(opts, target("https://other.example"), env, route, ec, message));
    BOOST_TEST(route.use);
    BOOST_TEST(route.proxy.host == "opt");
    BOOST_TEST(route.source == "options");

    // An explicit list replaces the environment's.
    opts.no_proxy = "example";
    BOOST_TEST(d::resolve_proxy(opts, target("https://api.sekuire.ai"), env, route, ec, message));
    BOOST_TEST(route.use);
    BOOST_TEST(d::resolve_proxy(opts, target("https://other.example"), env, route, ec, message));
    BOOST_TEST(!route.use);

    // Without the environment, nothing of it is read.
    sekuire::proxy_options none;
    none.from_environment = false;
    BOOST_TEST(d::resolve_proxy(none, target("https://other.example"), env, route, ec, message));
    BOOST_TEST(!route.use);

    // An explicit proxy with the environment off.
    none.url = "http://u:p@opt:3";
    BOOST_TEST(d::resolve_proxy(none, target("https://api.sekuire.ai"), env, route, ec, message));
    BOOST_TEST(route.use);
    BOOST_TEST(route.proxy.port == 3);
    BOOST_TEST(route.proxy.authorization == "Basic dTpw");
}

BOOST_AUTO_TEST_CASE(a_bad_proxy_url_is_a_clear_error_without_the_url) {
    const fake_env env{{{"HTTPS_PROXY", "https://user:s3cret@proxy:443"}}};
    sekuire::proxy_options opts;
    d::proxy_route route;
    error_code ec;
    std::string message;
    BOOST_TEST(!d::resolve_proxy(opts, target("https://api.sekuire.ai"), env, route, ec, message));
    BOOST_TEST((ec == errc::invalid_option));
    BOOST_TEST(!route.use);
    BOOST_TEST(message.find("HTTPS_PROXY") != std::string::npos);
    BOOST_TEST(message.find("s3cret") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(connect_request_carries_only_the_tunnel) {
    d::proxy_endpoint p;
    error_code ec;
    BOOST_REQUIRE(d::parse_proxy_url("http://user:pass@proxy:3128", p, ec));
    BOOST_TEST(d::connect_request(target("https://api.sekuire.ai"), p, "ua/1") ==
               "CONNECT api.sekuire.ai:443 HTTP/1.1\r\nHost: api.sekuire.ai:443\r\nUser-Agent: ua/1\r\n"
               "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n");
    d::proxy_endpoint anonymous;
    BOOST_REQUIRE(d::parse_proxy_url("proxy:3128", anonymous, ec));
    BOOST_TEST(d::connect_request(target("https://[fd00::1]:8443/core"), anonymous, "ua/1") ==
               "CONNECT [fd00::1]:8443 HTTP/1.1\r\nHost: [fd00::1]:8443\r\nUser-Agent: ua/1\r\n\r\n");
}

BOOST_AUTO_TEST_CASE(connect_replies) {
    BOOST_TEST(d::connect_reply_status("HTTP/1.1 200 Connection established\r\n\r\n") == 200);
    BOOST_TEST(d::connect_reply_status("HTTP/1.0 200\r\n\r\n") == 200);
    BOOST_TEST(d::connect_reply_status("HTTP/1.1 407 Proxy Authentication Required\r\n") == 407);
    BOOST_TEST(d::connect_reply_status("HTTP/1.1 502 Bad Gateway\r\n\r\n") == 502);
    BOOST_TEST(d::connect_reply_status("HTTP/2 200\r\n\r\n") == -1);
    BOOST_TEST(d::connect_reply_status("SSH-2.0-OpenSSH\r\n") == -1);
    BOOST_TEST(d::connect_reply_status("HTTP/1.1 20x\r\n") == -1);
    BOOST_TEST(d::connect_reply_status("HTTP/1.1 2000\r\n") == -1);
    BOOST_TEST(d::connect_reply_status("") == -1);
    BOOST_TEST(d::connect_succeeded(200));
    BOOST_TEST(d::connect_succeeded(204));
    BOOST_TEST(!d::connect_succeeded(407));
    BOOST_TEST(!d::connect_succeeded(-1));
    BOOST_TEST(d::connect_refused_message(407).find("407") != std::string::npos);
    BOOST_TEST(d::connect_refused_message(502).find("502") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
