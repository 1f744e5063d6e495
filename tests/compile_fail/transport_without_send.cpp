// SPDX-License-Identifier: MIT
// Must not compile: the Transport has no send(). The error names the missing member.
#include <sekuire/basic_beacon.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fixed_probe.hpp>

struct bad_transport {
    void stream(const sekuire::http_request&, sekuire::stream_callbacks&, const sekuire::stop_token&,
                sekuire::error_code&);
};
using beacon = sekuire::basic_beacon<bad_transport, sekuire::testing::fake_clock, sekuire::memory_store,
                                     sekuire::testing::fixed_probe>;
static_assert(sizeof(beacon) > 0, "");
