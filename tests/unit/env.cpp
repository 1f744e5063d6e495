// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/env.hpp>

#include <boost/test/unit_test.hpp>

#include "env_lookup.hpp"

#include <sekuire/beacon_options.hpp>

#include <map>
#include <stdlib.h>


BOOST_AUTO_TEST_SUITE(env)

BOOST_AUTO_TEST_CASE(reads_every_variable_of_section_8) {
    const auto s = sekuire::read_env(env_from({{"SEKUIRE_API_URL", "http://127.0.0.1:5556"},
                                           {"SEKUIRE_AGENT_ID", " agent "},
                                           {"SEKUIRE_INSTALL_TOKEN", "skt_x"},
                                           {"SEKUIRE_API_KEY", "sk_live_x"},
                                           {"SEKUIRE_WORKSPACE_ID", "ws_1"},
                                           {"SEKUIRE_INSTALLATION_ID", "inst_1"},
                                           {"SEKUIRE_REFRESH_TOKEN", "rt"},
                                           {"SEKUIRE_RUNTIME_TOKEN", "srt"},
                                           {"SEKUIRE_HEARTBEAT_INTERVAL", "30"},
                                           {"SEKUIRE_CREDENTIALS_FILE", "/tmp/c.json"}}));
    BOOST_TEST(s.api_url == "http://127.0.0.1:5556");
    BOOST_TEST(s.agent_id == "agent"); // trimmed
    BOOST_TEST(s.install_token == "skt_x");
    BOOST_TEST(s.api_key == "sk_live_x");
    BOOST_TEST(s.workspace_id == "ws_1");
    BOOST_TEST(s.installation_id == "inst_1");
    BOOST_TEST(s.refresh_token == "rt");
    BOOST_TEST(s.runtime_token == "srt");
    BOOST_TEST_REQUIRE(s.heartbeat_interval.has_value());
    BOOST_TEST(s.heartbeat_interval->count() == 30);
    BOOST_TEST(s.credentials_file == "/tmp/c.json");
    const auto c = s.credentials();
    BOOST_TEST_REQUIRE(c.has_value());
    BOOST_TEST(c->installation_id == "inst_1");
    BOOST_TEST(c->refresh_token == "rt");
    BOOST_TEST(c->runtime_token == "srt");
}

BOOST_AUTO_TEST_CASE(plain_http_to_other_hosts_is_allowed_only_when_asked) {
    BOOST_TEST(!sekuire::read_env(env_from({})).allow_insecure_http.has_value());
    for (const char* yes : {"1", "true", "YES", " on "}) {
        const auto s = sekuire::read_env(env_from({{"SEKUIRE_ALLOW_INSECURE_HTTP", yes}}));
        BOOST_TEST_REQUIRE(s.allow_insecure_http.has_value());
        BOOST_TEST(*s.allow_insecure_http);
    }
    for (const char* no : {"0", "false", "No", "off"}) {
        const auto s = sekuire::read_env(env_from({{"SEKUIRE_ALLOW_INSECURE_HTTP", no}}));
        BOOST_TEST_REQUIRE(s.allow_insecure_http.has_value());
        BOOST_TEST(!*s.allow_insecure_http);
    }
    sekuire::error_code ec;
    std::string what;
    sekuire::read_env(env_from({{"SEKUIRE_ALLOW_INSECURE_HTTP", "maybe"}}), ec, &what);
    BOOST_TEST((ec == sekuire::errc::invalid_option));
    BOOST_TEST(what.find("SEKUIRE_ALLOW_INSECURE_HTTP") != std::string::npos);
    BOOST_TEST(what.find("maybe") == std::string::npos);
    // The options built from the environment carry it to their transport.
    sekuire::beacon_options o;
    sekuire::detail::apply_common_env(sekuire::read_env(env_from({{"SEKUIRE_ALLOW_INSECURE_HTTP", "1"}})), o);
    BOOST_TEST(o.transport.allow_insecure_http);
}

BOOST_AUTO_TEST_CASE(empty_values_count_as_unset) {
    const auto s = sekuire::read_env(env_from({{"SEKUIRE_INSTALLATION_ID", "  "}, {"SEKUIRE_REFRESH_TOKEN", ""}}));
    BOOST_TEST(s.installation_id.empty());
    BOOST_TEST(!s.credentials().has_value());
    BOOST_TEST(!sekuire::read_env(sekuire::env_lookup{}).credentials().has_value());
}

BOOST_AUTO_TEST_CASE(recovery_needs_an_installation_id_and_a_token) {
    BOOST_TEST(!sekuire::read_env(env_from({{"SEKUIRE_INSTALLATION_ID", "inst"}})).credentials().has_value());
    BOOST_TEST(!sekuire::read_env(env_from({{"SEKUIRE_REFRESH_TOKEN", "rt"}})).credentials().has_value());
    BOOST_TEST(sekuire::read_env(env_from({{"SEKUIRE_INSTALLATION_ID", "i"}, {"SEKUIRE_RUNTIME_TOKEN", "t"}}))
                   .credentials()
                   .has_value());
}

BOOST_AUTO_TEST_CASE(invalid_heartbeat_interval_is_an_error_that_does_not_echo_the_value) {
    for (const char* bad : {"0", "-5", "abc", "1.5", "86401", "99999999999999999999", "12s"}) {
        sekuire::error_code ec;
        const auto s = sekuire::read_env(env_from({{"SEKUIRE_HEARTBEAT_INTERVAL", bad}}), ec);
        BOOST_TEST((ec == sekuire::errc::invalid_option), bad);
        BOOST_TEST(!s.heartbeat_interval.has_value());
        try {
            sekuire::read_env(env_from({{"SEKUIRE_HEARTBEAT_INTERVAL", bad}}));
            BOOST_FAIL("no exception");
        } catch (const sekuire::error& e) {
            BOOST_TEST(std::string(e.what()).find("SEKUIRE_HEARTBEAT_INTERVAL") != std::string::npos);
            BOOST_TEST(std::string(e.what()).find(std::string("\"") + bad) == std::string::npos);
        }
    }
    sekuire::error_code ec;
    BOOST_TEST(sekuire::read_env(env_from({{"SEKUIRE_HEARTBEAT_INTERVAL", "86400"}}), ec).heartbeat_interval->count() == 86400);
    BOOST_TEST(!ec);
}

// Issue 10, item 12: the message names the variable and its range, and the value when it
// is a number (anything else might be a misplaced secret).
BOOST_AUTO_TEST_CASE(invalid_numbers_are_named_with_their_range) {
    std::string what;
    sekuire::error_code ec;
    sekuire::read_env(env_from({{"SEKUIRE_HEARTBEAT_INTERVAL", "86401"}}), ec, &what);
    BOOST_TEST(what == "SEKUIRE_HEARTBEAT_INTERVAL must be a whole number of seconds from 1 to 86400 (got 86401)");
    sekuire::read_env(env_from({{"SEKUIRE_STARTUP_JITTER", "skt_secret"}}), ec, &what);
    BOOST_TEST((ec == sekuire::errc::invalid_option));
    BOOST_TEST(what == "SEKUIRE_STARTUP_JITTER must be a whole number of seconds from 0 to 300 (got something else)");
    const auto s = sekuire::read_env(env_from({{"SEKUIRE_STARTUP_JITTER", "0"}}), ec, &what);
    BOOST_TEST(!ec);
    BOOST_TEST_REQUIRE(s.startup_jitter.has_value());
    BOOST_TEST(s.startup_jitter->count() == 0);
    BOOST_TEST(sekuire::read_env(env_from({{"SEKUIRE_STARTUP_JITTER", "300"}}), ec).startup_jitter->count() == 300);
    sekuire::read_env(env_from({{"SEKUIRE_STARTUP_JITTER", "301"}}), ec);
    BOOST_TEST((ec == sekuire::errc::invalid_option));
}

BOOST_AUTO_TEST_CASE(process_env_reads_the_real_environment) {
    ::setenv("SEKUIRE_TEST_PROBE_VAR", "yes", 1);
    const auto v = sekuire::process_env()("SEKUIRE_TEST_PROBE_VAR");
    BOOST_TEST(v.value_or("") == "yes");
    ::unsetenv("SEKUIRE_TEST_PROBE_VAR");
    BOOST_TEST(!sekuire::process_env()("SEKUIRE_TEST_PROBE_VAR").has_value());
}

BOOST_AUTO_TEST_SUITE_END()
