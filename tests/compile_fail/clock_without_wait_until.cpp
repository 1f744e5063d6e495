// SPDX-License-Identifier: MIT
// Must not compile: the Clock has no wait_until(). The error names the missing member.
#include <sekuire/basic_beacon.hpp>
#include <sekuire/testing/fake_transport.hpp>
#include <sekuire/testing/fixed_probe.hpp>

struct bad_clock {
    sekuire::wall_time_point wall_now();
    sekuire::steady_time_point steady_now();
};
using beacon = sekuire::basic_beacon<sekuire::testing::fake_transport, bad_clock, sekuire::memory_store,
                                     sekuire::testing::fixed_probe>;
static_assert(sizeof(beacon) > 0, "");
