// SPDX-License-Identifier: MIT
// The optional spdlog adapter. Built only when spdlog is found (tests/CMakeLists.txt).
// Test that header file is self-contained.
#include <sekuire/spdlog.hpp>

#include <spdlog/sinks/ostream_sink.h>

#include <boost/test/unit_test.hpp>

#include <memory>
#include <sstream>
#include <string>

namespace {

struct captured {
    std::ostringstream out;
    std::shared_ptr<spdlog::logger> logger;
    captured() {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
        logger = std::make_shared<spdlog::logger>("sekuire-test", sink);
        logger->set_pattern("%l|%v");
        logger->set_level(spdlog::level::debug);
    }
};

} // namespace

BOOST_AUTO_TEST_SUITE(spdlog_adapter)

BOOST_AUTO_TEST_CASE(levels_map_to_spdlog_levels) {
    BOOST_TEST(sekuire::to_spdlog_level(sekuire::log_level::debug) == spdlog::level::debug);
    BOOST_TEST(sekuire::to_spdlog_level(sekuire::log_level::info) == spdlog::level::info);
    BOOST_TEST(sekuire::to_spdlog_level(sekuire::log_level::warning) == spdlog::level::warn);
    BOOST_TEST(sekuire::to_spdlog_level(sekuire::log_level::error) == spdlog::level::err);
}

BOOST_AUTO_TEST_CASE(records_reach_the_logger_with_their_context) {
    captured c;
    const sekuire::log_handler h = sekuire::spdlog_logger(c.logger);
    BOOST_TEST(h.structured());
    sekuire::log_record r;
    r.level = sekuire::log_level::warning;
    r.message = "task failed\nsecond line";
    r.installation_id = "inst_1";
    r.task_id = "task_9";
    r.capability = "summarize";
    r.event = "task_failed";
    h(r);
    h(sekuire::log_level::error, "plain {} braces are not a format");
    BOOST_TEST(c.out.str() == "warning|task failed\\nsecond line installation_id=inst_1 task_id=task_9 "
                              "capability=summarize event=task_failed\n"
                              "error|plain {} braces are not a format\n");
}

BOOST_AUTO_TEST_CASE(spdlog_levels_filter) {
    captured c;
    c.logger->set_level(spdlog::level::warn);
    const sekuire::log_handler h = sekuire::spdlog_logger(c.logger);
    h(sekuire::log_level::info, "dropped");
    h(sekuire::log_level::error, "kept");
    BOOST_TEST(c.out.str() == "error|kept\n");
    BOOST_TEST(!static_cast<bool>(sekuire::spdlog_logger(nullptr)));
}

BOOST_AUTO_TEST_SUITE_END()
