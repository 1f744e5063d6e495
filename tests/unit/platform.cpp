// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/platform.hpp>

#include <boost/test/unit_test.hpp>

BOOST_AUTO_TEST_SUITE(platform)

BOOST_AUTO_TEST_CASE(attributes_keep_order_and_replace) {
    sekuire::platform_info p;
    BOOST_TEST(p.type == "bare_metal");
    p.set("hostname", "a");
    p.set("os", "linux");
    p.set("hostname", "b");
    BOOST_TEST_REQUIRE(p.attributes.size() == 2u);
    BOOST_TEST(p.attributes[0].first == "hostname");
    BOOST_TEST(*p.find("hostname") == "b");
    BOOST_TEST(p.find("arch") == nullptr);
    sekuire::platform_info q = p;
    BOOST_TEST((q == p));
    q.pid = 1;
    BOOST_TEST((q != p));
}

BOOST_AUTO_TEST_CASE(probe_requirement) {
    struct good {
        sekuire::platform_info probe() { return {}; }
    };
    struct bad {
        int probe() { return 0; }
    };
    static_assert(sekuire::is_platform_probe<good>::value, "");
    static_assert(!sekuire::is_platform_probe<bad>::value, "");
    BOOST_TEST(true);
}

BOOST_AUTO_TEST_SUITE_END()
