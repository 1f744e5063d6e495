// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/config_error.hpp>

#include "env_lookup.hpp"

#include <boost/test/unit_test.hpp>

#include <sstream>
#include <stdexcept>
#include <string>

BOOST_AUTO_TEST_SUITE(config_error)

BOOST_AUTO_TEST_CASE(configuration_errors_are_told_from_others) {
    using sekuire::errc;
    for (const auto e : {errc::invalid_url, errc::insecure_url, errc::invalid_option, errc::invalid_argument,
                         errc::store_corrupt, errc::store_io, errc::store_insecure})
        BOOST_TEST(sekuire::is_configuration_error(e));
    for (const auto e : {errc::connection_failed, errc::timeout, errc::invalid_install_token, errc::revoked,
                         errc::store_locked})
        BOOST_TEST(!sekuire::is_configuration_error(e));
    BOOST_TEST(!sekuire::is_configuration_error(sekuire::error_code{}));
    BOOST_TEST(!sekuire::is_configuration_error(
        sekuire::error_code(static_cast<int>(errc::invalid_url), boost::system::generic_category())));
}

BOOST_AUTO_TEST_CASE(secret_settings_are_masked) {
    BOOST_TEST(sekuire::is_secret_setting("SEKUIRE_INSTALL_TOKEN"));
    BOOST_TEST(sekuire::is_secret_setting("--api-key"));
    BOOST_TEST(sekuire::is_secret_setting("--Refresh-Token"));
    // The path of a secret file is not a secret.
    BOOST_TEST(!sekuire::is_secret_setting("--install-token-file"));
    BOOST_TEST(!sekuire::is_secret_setting("SEKUIRE_API_KEY_FILE"));
    BOOST_TEST(!sekuire::is_secret_setting("SEKUIRE_API_URL"));
    BOOST_TEST(!sekuire::is_secret_setting("--heartbeat-interval"));
    const std::string token = "skt_0123456789abcdefghijklmnop";
    const std::string shown = sekuire::describe_setting("SEKUIRE_INSTALL_TOKEN", token);
    BOOST_TEST(shown == "SEKUIRE_INSTALL_TOKEN='skt_...mnop'");
    BOOST_TEST(shown.find("0123456789") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(described_values_are_safe_to_print) {
    BOOST_TEST(sekuire::describe_setting("SEKUIRE_API_URL", "bogus") == "SEKUIRE_API_URL='bogus'");
    // A password in a URL is not shown.
    BOOST_TEST(sekuire::describe_setting("--api-url", "https://user:hunter2@example.com:8443/x?y") ==
               "--api-url='https://***@example.com:8443/x?y'");
    BOOST_TEST(sekuire::describe_setting("--api-url", "http://example.com/a@b") == "--api-url='http://example.com/a@b'");
    // Control characters and quotes cannot break the line; long values are cut.
    BOOST_TEST(sekuire::describe_setting("X", "a\nb'c") == "X='a\\x0ab\\x27c'");
    const std::string shown = sekuire::describe_setting("X", std::string(5000, 'v'));
    BOOST_TEST(shown.size() == 2u + 200u + 2u + 3u);
    BOOST_TEST(shown.substr(shown.size() - 3) == "...");
}

BOOST_AUTO_TEST_CASE(a_bad_api_url_names_the_variable_and_its_value) {
    const sekuire::error e(sekuire::errc::invalid_url, "httplib_transport: the base URL is not a valid URL");
    const auto env = env_from({{"SEKUIRE_API_URL", "bogus"}});
    const std::string text = sekuire::describe_configuration_error(e, env);
    BOOST_TEST(text == "SEKUIRE_API_URL='bogus': the URL is not a valid http or https URL");
    const sekuire::error insecure(sekuire::errc::insecure_url, "x");
    const std::string text2 =
        sekuire::describe_configuration_error(insecure, env_from({{"SEKUIRE_API_URL", "http://backend:5556"}}));
    BOOST_TEST(text2.rfind("SEKUIRE_API_URL='http://backend:5556': plain http is refused", 0) == 0u);
    // Without the variable the URL came from the program: its message, without the tag.
    BOOST_TEST(sekuire::describe_configuration_error(e, env_from({})) ==
               "httplib_transport: the base URL is not a valid URL: the URL is not a valid http or https URL");
}

BOOST_AUTO_TEST_CASE(other_errors_keep_their_message_without_the_tag) {
    const sekuire::error e(sekuire::errc::invalid_option, "SEKUIRE_HEARTBEAT_INTERVAL must be a whole number of seconds");
    const std::string text = sekuire::describe_configuration_error(e, env_from({{"SEKUIRE_API_URL", "bogus"}}));
    BOOST_TEST(text == "SEKUIRE_HEARTBEAT_INTERVAL must be a whole number of seconds: an option has an invalid value");
    // A message that already names the variable is not named twice.
    const sekuire::error named(sekuire::errc::invalid_url, "SEKUIRE_API_URL='bogus' is not a URL");
    BOOST_TEST(sekuire::describe_configuration_error(named, env_from({{"SEKUIRE_API_URL", "bogus"}})) ==
               "SEKUIRE_API_URL='bogus' is not a URL: the URL is not a valid http or https URL");
    BOOST_TEST(sekuire::describe_configuration_error(std::runtime_error("boom"), env_from({})) == "boom");
}

BOOST_AUTO_TEST_CASE(report_error_prints_one_line_and_chooses_the_exit_code) {
    std::ostringstream out;
    const sekuire::error config(sekuire::errc::invalid_option, "SEKUIRE_HEARTBEAT_INTERVAL must be 1 to 86400");
    BOOST_TEST(sekuire::report_error("agent", config, out) == 2);
    BOOST_TEST(out.str() == "agent: SEKUIRE_HEARTBEAT_INTERVAL must be 1 to 86400: an option has an invalid value\n");
    out.str("");
    BOOST_TEST(sekuire::report_error("agent", sekuire::error(sekuire::errc::timeout), out) == 1);
    BOOST_TEST(out.str() == "agent: the backend did not answer in time\n");
    out.str("");
    BOOST_TEST(sekuire::report_error("agent", std::runtime_error("two\nlines"), out) == 1);
    BOOST_TEST(out.str() == "agent: two lines\n");
}

BOOST_AUTO_TEST_SUITE_END()
