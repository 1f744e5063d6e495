// SPDX-License-Identifier: MIT
// Test that header file is self-contained.
#include <sekuire/testing/fixed_probe.hpp>

#include <boost/test/unit_test.hpp>

#include <sekuire/platform.hpp>
#include <sekuire/protocol.hpp>

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace pp = sekuire::protocol::platform;
namespace st = sekuire::testing;

static_assert(sekuire::is_platform_probe<st::fixed_probe>::value, "fixed_probe is a PlatformProbe");
static_assert(sekuire::check_platform_probe<st::fixed_probe>::value, "fixed_probe is a PlatformProbe");
static_assert(std::is_nothrow_constructible<st::fixed_probe, sekuire::platform_info>::value,
              "building a fixed_probe from a platform_info only moves it");
#if SEKUIRE_HAS_CONCEPTS
static_assert(sekuire::platform_probe_policy<st::fixed_probe>);
#endif

BOOST_AUTO_TEST_SUITE(fixed_probe)

BOOST_AUTO_TEST_CASE(default_is_a_deterministic_bare_metal_machine) {
    const sekuire::platform_info info = st::fixed_probe{}.probe();
    BOOST_TEST(info.type == std::string(pp::type_bare_metal));
    const std::vector<std::pair<std::string, std::string>> expected{
        {std::string(pp::key_hostname), "test-host"},
        {std::string(pp::key_os), "linux"},
        {std::string(pp::key_arch), "x86_64"},
    };
    BOOST_TEST((info.attributes == expected));
    BOOST_TEST(info.pid.has_value());
    BOOST_TEST(info.pid.value_or(0) == 4242);

    // Two default probes, and two calls of one probe, agree.
    const st::fixed_probe probe;
    BOOST_TEST((probe.probe() == st::fixed_probe{}.probe()));
    BOOST_TEST((probe.probe() == probe.probe()));
}

BOOST_AUTO_TEST_CASE(custom_platform_is_returned_unchanged) {
    sekuire::platform_info custom;
    custom.type = std::string(pp::type_kubernetes);
    custom.attributes.emplace_back(std::string(pp::key_pod_name), "agent-7f9c");
    custom.attributes.emplace_back(std::string(pp::key_namespace), "prod");
    custom.attributes.emplace_back(std::string(pp::key_hostname), "agent-7f9c");
    custom.pid = 1;

    const st::fixed_probe probe{custom};
    const sekuire::platform_info got = probe.probe();
    BOOST_TEST((got == custom));
    BOOST_TEST(got.type == std::string(pp::type_kubernetes));
    BOOST_TEST(got.attributes.size() == 3u);
    BOOST_TEST(got.attributes.front().first == std::string(pp::key_pod_name));
    BOOST_TEST(got.attributes.back().first == std::string(pp::key_hostname));

    // A copy of the probe returns the same platform.
    const st::fixed_probe copy = probe; // NOLINT(performance-unnecessary-copy-initialization)
    BOOST_TEST((copy.probe() == custom));
}

BOOST_AUTO_TEST_CASE(empty_platform_is_returned_unchanged) {
    sekuire::platform_info empty;
    empty.type = std::string(pp::type_docker);
    const sekuire::platform_info got = st::fixed_probe{empty}.probe();
    BOOST_TEST((got == empty));
    BOOST_TEST(got.attributes.empty());
    BOOST_TEST(!got.pid.has_value());
}

BOOST_AUTO_TEST_CASE(probe_returns_a_copy) {
    const st::fixed_probe probe;
    sekuire::platform_info first = probe.probe();
    first.type = std::string(pp::type_lambda);
    first.set(std::string(pp::key_hostname), "changed");
    first.pid.reset();
    const sekuire::platform_info second = probe.probe();
    BOOST_TEST(second.type == std::string(pp::type_bare_metal));
    BOOST_TEST(second.find(pp::key_hostname) != nullptr);
    BOOST_TEST(*second.find(pp::key_hostname) == "test-host");
    BOOST_TEST(second.pid.value_or(0) == 4242);
}

BOOST_AUTO_TEST_SUITE_END()
