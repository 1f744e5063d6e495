// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/config.hpp>

#include <boost/test/unit_test.hpp>

BOOST_AUTO_TEST_SUITE(config)

BOOST_AUTO_TEST_CASE(concepts_switch_follows_the_compiler) {
#if defined(__cpp_concepts) && __cpp_concepts >= 201907L
    BOOST_TEST(SEKUIRE_HAS_CONCEPTS == 1);
#else
    BOOST_TEST(SEKUIRE_HAS_CONCEPTS == 0);
#endif
    SEKUIRE_ASSERT(true);
}

BOOST_AUTO_TEST_SUITE_END()
