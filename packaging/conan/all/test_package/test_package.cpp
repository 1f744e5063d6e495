// SPDX-License-Identifier: MIT
// Conan's test of the sekuire package: builds the default beacon offline (it is never
// started, so nothing is sent) and checks that the package's cpp-httplib has OpenSSL.
#include <sekuire/beacon.hpp>

#include <cstdio>
#include <exception>

int main() {
    try {
        sekuire::beacon_options options;
        options.api_base_url = "https://127.0.0.1:9"; // refused unless httplib has OpenSSL
        options.agent_id = "test-package";
        sekuire::beacon beacon{options};
        if (beacon.is_connected()) return 1;
        std::printf("sekuire %s: beacon built (https, not started)\n", sekuire::sdk_version);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "test_package: %s\n", e.what());
        return 1;
    }
}
