// SPDX-License-Identifier: MIT
// The one Boost.Test main of every sekuire test program.
#define BOOST_TEST_MODULE sekuire
#include <boost/test/unit_test.hpp>
