// SPDX-License-Identifier: MIT
// Must not compile: the PlatformProbe's probe() does not return platform_info.
#include <sekuire/basic_beacon.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fake_transport.hpp>

struct bad_probe {
    std::string probe();
};
using beacon = sekuire::basic_beacon<sekuire::testing::fake_transport, sekuire::testing::fake_clock,
                                     sekuire::memory_store, bad_probe>;
static_assert(sizeof(beacon) > 0, "");
