// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/sdk.hpp>

#include <boost/test/unit_test.hpp>

#include <stdlib.h>

BOOST_AUTO_TEST_SUITE(sdk)

BOOST_AUTO_TEST_CASE(from_env_builds_the_default_sdk_without_starting) {
    ::setenv("SEKUIRE_API_URL", "http://127.0.0.1:9", 1);
    ::setenv("SEKUIRE_AGENT_ID", "agent-env", 1);
    auto s = sekuire::sdk::from_env();
    ::unsetenv("SEKUIRE_API_URL");
    ::unsetenv("SEKUIRE_AGENT_ID");
    BOOST_TEST(s.options().agent_id == "agent-env");
    BOOST_TEST(!s.is_connected());
    BOOST_TEST(!s.get_installation_credentials().has_value());
    auto& w = s.create_task_worker();
    BOOST_TEST(w.options().agent_id == "agent-env");
    BOOST_TEST(w.options().api_base_url == "http://127.0.0.1:9");
    BOOST_TEST(w.options().install_token.empty());
    s.shutdown(); // nothing was started: nothing is sent
}

BOOST_AUTO_TEST_SUITE_END()
