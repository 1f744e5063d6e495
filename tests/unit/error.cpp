// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/error.hpp>

#include <boost/test/unit_test.hpp>

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

BOOST_AUTO_TEST_SUITE_END()
