// SPDX-License-Identifier: MIT
#ifndef SEKUIRE_TESTING_FIXED_PROBE_HPP
#define SEKUIRE_TESTING_FIXED_PROBE_HPP

/// @file
/// `testing::fixed_probe`, the PlatformProbe of the testing kit: returns a platform chosen
/// by the test, so that bootstrap and heartbeat bodies are the same on every machine.

#include <sekuire/config.hpp>
#include <sekuire/platform.hpp>
#include <sekuire/protocol.hpp>

#include <string>
#include <utility>

namespace sekuire {
namespace testing {

/** A PlatformProbe that returns the same `platform_info` every time.

    Default-constructed, it reports a deterministic bare-metal machine: type `bare_metal`,
    attributes `hostname` = `"test-host"`, `os` = `"linux"`, `arch` = `"x86_64"` (in that
    order), and `pid` 4242. Built from a `platform_info`, it returns that value unchanged.

    @code
    sekuire::platform_info k8s;
    k8s.type = "kubernetes";
    k8s.set("pod_name", "agent-0");
    sekuire::testing::fixed_probe probe{k8s};   // probe.probe() == k8s
    @endcode

    @par Thread Safety
    Distinct objects: Safe. Shared objects: Safe (`probe()` only reads).

    @par Exceptions
    `probe()` throws only `std::bad_alloc` (it returns a copy).
*/
class fixed_probe {
public:
    /// Reports the default test machine described above.
    fixed_probe() {
        namespace pp = protocol::platform;
        info_.type = std::string(pp::type_bare_metal);
        info_.attributes.emplace_back(std::string(pp::key_hostname), "test-host");
        info_.attributes.emplace_back(std::string(pp::key_os), "linux");
        info_.attributes.emplace_back(std::string(pp::key_arch), "x86_64");
        info_.pid = 4242;
    }

    /// Reports `info`, unchanged.
    explicit fixed_probe(platform_info info) noexcept : info_(std::move(info)) {}

    /// A copy of the platform this probe was built with.
    platform_info probe() const { return info_; }

private:
    platform_info info_;
};

} // namespace testing
} // namespace sekuire

#endif
