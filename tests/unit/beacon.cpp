// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/beacon.hpp>

#include <boost/test/unit_test.hpp>

#include "env_lookup.hpp"

#include <cstdio>
#include <filesystem>
#include <map>


BOOST_AUTO_TEST_SUITE(beacon)

BOOST_AUTO_TEST_CASE(default_typedef) {
    static_assert(std::is_same<sekuire::beacon, sekuire::basic_beacon<sekuire::httplib_transport, sekuire::system_clock,
                                                                      sekuire::credential_store, sekuire::auto_probe>>::value,
                  "");
    BOOST_TEST(true);
}

BOOST_AUTO_TEST_CASE(from_env_reads_section_8) {
    const auto o = sekuire::beacon_options::from_env(env_from({{"SEKUIRE_API_URL", "http://127.0.0.1:5556/core"},
                                                           {"SEKUIRE_AGENT_ID", "agent"},
                                                           {"SEKUIRE_INSTALLATION_ID", "inst_1"},
                                                           {"SEKUIRE_REFRESH_TOKEN", "rt_0123456789abcdef"},
                                                           {"SEKUIRE_HEARTBEAT_INTERVAL", "15"}}));
    BOOST_TEST(o.api_base_url == "http://127.0.0.1:5556/core");
    BOOST_TEST(o.agent_id == "agent");
    BOOST_TEST(o.installation_id == "inst_1");
    BOOST_TEST(o.recovered_from_env);
    BOOST_TEST(o.heartbeat_interval.count() == 15);
    const auto d = sekuire::beacon_options::from_env(env_from({}));
    BOOST_TEST(d.api_base_url == "https://api.sekuire.ai");
    BOOST_TEST(d.heartbeat_interval.count() == 60);
    BOOST_TEST(!d.recovered_from_env);
    BOOST_CHECK_THROW(sekuire::beacon_options::from_env(env_from({{"SEKUIRE_HEARTBEAT_INTERVAL", "x"}})), sekuire::error);
}

BOOST_AUTO_TEST_CASE(default_beacon_is_built_without_touching_the_network) {
    sekuire::beacon_options o;
    o.api_base_url = "https://api.sekuire.ai";
    sekuire::beacon b{o};
    const auto s = b.get_status();
    BOOST_TEST((s.state == sekuire::beacon_state::idle));
    BOOST_TEST(!s.is_running);
    BOOST_TEST(!b.platform().type.empty());
    BOOST_TEST(!b.get_installation_credentials().has_value());
}

BOOST_AUTO_TEST_CASE(refused_base_urls_throw) {
    auto make = [](const std::string& url) {
        sekuire::beacon_options o;
        o.api_base_url = url;
        sekuire::beacon b{o};
    };
    try {
        make("http://api.example.com");
        BOOST_FAIL("no exception");
    } catch (const sekuire::error& e) {
        BOOST_TEST((e.code() == sekuire::errc::insecure_url));
    }
    try {
        make("ftp://x");
        BOOST_FAIL("no exception");
    } catch (const sekuire::error& e) {
        BOOST_TEST((e.code() == sekuire::errc::invalid_url));
    }
    BOOST_CHECK_NO_THROW(make("http://127.0.0.1:5556"));
    BOOST_CHECK_NO_THROW(make("http://localhost:5556/core"));
}

BOOST_AUTO_TEST_CASE(credentials_file_selects_a_file_store) {
    const auto dir = std::filesystem::temp_directory_path() / ("sekuire-beacon-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto file = (dir / "creds.json").string();
    {
        sekuire::beacon_options o;
        o.api_base_url = "http://127.0.0.1:9";
        o.credentials_file = file;
        sekuire::beacon b{o};
        sekuire::installation_credentials c;
        c.installation_id = "inst_f";
        c.refresh_token = "rt_0123456789abcdef";
        sekuire::error_code ec;
        b.credential_store().save(c, ec);
        BOOST_TEST(!ec);
        BOOST_TEST(std::filesystem::exists(file));
        BOOST_TEST_REQUIRE(b.get_installation_credentials().has_value());
    }
    {
        // Another beacon on the same file recovers from it.
        sekuire::beacon_options o;
        o.api_base_url = "http://127.0.0.1:9";
        o.credentials_file = file;
        sekuire::beacon b{o};
        auto c = b.get_installation_credentials();
        BOOST_TEST_REQUIRE(c.has_value());
        BOOST_TEST(c->installation_id == "inst_f");
    }
    std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_SUITE_END()
