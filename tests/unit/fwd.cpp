// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/fwd.hpp>

#include <boost/test/unit_test.hpp>

#include <type_traits>

// The forward header is enough to name the templates with their defaults in declarations.
struct uses_forward_declarations {
    sekuire::basic_beacon<>* beacon = nullptr;
    sekuire::basic_worker<>* worker = nullptr;
};

BOOST_AUTO_TEST_SUITE(fwd)

BOOST_AUTO_TEST_CASE(templates_can_be_named) {
    uses_forward_declarations u;
    BOOST_TEST(u.beacon == nullptr);
    BOOST_TEST(u.worker == nullptr);
    static_assert(std::is_pointer<decltype(u.beacon)>::value, "");
}

BOOST_AUTO_TEST_SUITE_END()
