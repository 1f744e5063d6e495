// SPDX-License-Identifier: MIT
// Must not compile: the CredentialStore has no refresh lock. The error names it.
#include <sekuire/basic_beacon.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fake_transport.hpp>
#include <sekuire/testing/fixed_probe.hpp>

struct bad_store {
    std::optional<sekuire::installation_credentials> load(sekuire::error_code&);
    void save(const sekuire::installation_credentials&, sekuire::error_code&);
    void clear(sekuire::error_code&);
};
using beacon = sekuire::basic_beacon<sekuire::testing::fake_transport, sekuire::testing::fake_clock, bad_store,
                                     sekuire::testing::fixed_probe>;
static_assert(sizeof(beacon) > 0, "");
