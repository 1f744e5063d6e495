// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/version.hpp>

#include <boost/test/unit_test.hpp>

#include <string>

BOOST_AUTO_TEST_SUITE(version)

BOOST_AUTO_TEST_CASE(numbers_agree_with_the_string) {
    const std::string expected = std::to_string(SEKUIRE_VERSION_MAJOR) + "." + std::to_string(SEKUIRE_VERSION_MINOR) +
                                 "." + std::to_string(SEKUIRE_VERSION_PATCH);
    BOOST_TEST(expected == SEKUIRE_VERSION_STRING);
    BOOST_TEST(std::string(sekuire::sdk_version) == SEKUIRE_VERSION_STRING);
    BOOST_TEST(std::string(sekuire::sdk_name) == "sekuire-cpp");
    BOOST_TEST(SEKUIRE_VERSION == SEKUIRE_VERSION_MAJOR * 10000 + SEKUIRE_VERSION_MINOR * 100 + SEKUIRE_VERSION_PATCH);
}

BOOST_AUTO_TEST_SUITE_END()
