// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/testing/manual_executor.hpp>

#include <sekuire/executor.hpp>

#include <boost/test/unit_test.hpp>

BOOST_AUTO_TEST_SUITE(manual_executor)

BOOST_AUTO_TEST_CASE(runs_only_when_told) {
    static_assert(sekuire::is_executor<sekuire::testing::manual_executor>::value, "");
    sekuire::testing::manual_executor e;
    auto copy = e;
    std::vector<int> order;
    e.post([&] { order.push_back(1); });
    copy.post([&] {
        order.push_back(2);
        e.post([&] { order.push_back(3); });
    });
    BOOST_TEST(order.empty());
    BOOST_TEST(e.pending() == 2u);
    BOOST_TEST(e.run_one());
    BOOST_TEST((order == std::vector<int>{1}));
    BOOST_TEST(e.run_all() == 2u);
    BOOST_TEST((order == std::vector<int>{1, 2, 3}));
    BOOST_TEST(!e.run_one());
}

BOOST_AUTO_TEST_SUITE_END()
