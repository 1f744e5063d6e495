// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/error.hpp>

#include <boost/test/unit_test.hpp>

#include <stdexcept>
#include <string>
#include <system_error>

BOOST_AUTO_TEST_SUITE(error)

BOOST_AUTO_TEST_CASE(category_name_and_messages) {
    sekuire::error_code ec = sekuire::errc::install_token_used;
    BOOST_TEST(ec.category().name() == std::string("sekuire"));
    BOOST_TEST(ec.message() == "the install token was already used");
    BOOST_TEST(static_cast<bool>(ec));
    // Every code has its own message, none falls through to the default.
    for (int v = static_cast<int>(sekuire::errc::connection_failed);
         v <= static_cast<int>(sekuire::errc::invalid_argument); ++v) {
        BOOST_TEST(sekuire::error_category().message(v) != "unknown sekuire error");
    }
    BOOST_TEST(sekuire::error_category().message(9999) == "unknown sekuire error");
}

BOOST_AUTO_TEST_CASE(transient_classification) {
    using sekuire::errc;
    BOOST_TEST(sekuire::is_transient(errc::timeout));
    BOOST_TEST(sekuire::is_transient(errc::rate_limited));
    BOOST_TEST(sekuire::is_transient(errc::malformed_json));
    BOOST_TEST(!sekuire::is_transient(errc::install_token_used));
    BOOST_TEST(!sekuire::is_transient(errc::revoked));
    BOOST_TEST(!sekuire::is_transient(sekuire::error_code{}));
    // A code of another category with the same value is not ours.
    BOOST_TEST(!sekuire::is_transient(sekuire::error_code(static_cast<int>(errc::timeout),
                                                          boost::system::generic_category())));
}

BOOST_AUTO_TEST_CASE(converts_to_std_error_code) {
    std::error_code sec = sekuire::error_code(sekuire::errc::revoked);
    BOOST_TEST(sec.message() == "the installation was revoked");
}

BOOST_AUTO_TEST_CASE(exception_carries_the_code) {
    try {
        sekuire::detail::throw_if(sekuire::errc::no_credentials, "beacon start");
        BOOST_FAIL("no exception");
    } catch (const sekuire::error& e) {
        BOOST_TEST((e.code() == sekuire::errc::no_credentials));
        BOOST_TEST(std::string(e.what()).find("beacon start") != std::string::npos);
    }
    BOOST_CHECK_NO_THROW(sekuire::detail::throw_if(sekuire::error_code{}));
}

BOOST_AUTO_TEST_CASE(error_message_drops_the_category_suffix) {
    // what() is "prefix: message [sekuire:N]"; a person needs neither the tag nor the number.
    const sekuire::error with_prefix(sekuire::errc::invalid_option, "SEKUIRE_HEARTBEAT_INTERVAL must be 1 to 86400");
    BOOST_TEST(std::string(with_prefix.what()).find("[sekuire:") != std::string::npos);
    BOOST_TEST(sekuire::error_message(with_prefix) ==
               "SEKUIRE_HEARTBEAT_INTERVAL must be 1 to 86400: an option has an invalid value");
    const sekuire::error bare(sekuire::errc::revoked);
    BOOST_TEST(sekuire::error_message(bare) == "the installation was revoked");
    const boost::system::system_error other(boost::system::errc::make_error_code(boost::system::errc::permission_denied),
                                            "open");
    BOOST_TEST(sekuire::error_message(other).find(" [") == std::string::npos);
    BOOST_TEST(sekuire::error_message(other).rfind("open: ", 0) == 0u);
    // Other exceptions, and a message that only looks like one with a tag, stay as they are.
    BOOST_TEST(sekuire::error_message(std::runtime_error("plain [sekuire:7]")) == "plain [sekuire:7]");
    const sekuire::error looks(sekuire::errc::timeout, "[sekuire:3] in the prefix");
    BOOST_TEST(sekuire::error_message(looks) == "[sekuire:3] in the prefix: the backend did not answer in time");
}

BOOST_AUTO_TEST_SUITE_END()
