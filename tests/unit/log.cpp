// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/log.hpp>

#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

// The suite opens a namespace named like a C library function: keep it apart.
namespace sekuire_log_tests {
BOOST_AUTO_TEST_SUITE(log)

BOOST_AUTO_TEST_CASE(level_names) {
    BOOST_TEST(std::string(sekuire::to_string(sekuire::log_level::debug)) == "debug");
    BOOST_TEST(std::string(sekuire::to_string(sekuire::log_level::info)) == "info");
    BOOST_TEST(std::string(sekuire::to_string(sekuire::log_level::warning)) == "warning");
    BOOST_TEST(std::string(sekuire::to_string(sekuire::log_level::error)) == "error");
}

BOOST_AUTO_TEST_CASE(handler_receives_lines) {
    std::vector<std::string> lines;
    sekuire::log_handler h = [&](sekuire::log_level, std::string_view m) { lines.emplace_back(m); };
    h(sekuire::log_level::info, "hello");
    BOOST_TEST(lines.size() == 1u);
    BOOST_TEST(lines[0] == "hello");
}

BOOST_AUTO_TEST_SUITE_END()
} // namespace sekuire_log_tests
