// SPDX-License-Identifier: MIT
// Context "health": the fragment is the body of a function that has a started SDK, `sdk`,
// and a task worker it created, `worker`.
#include <sekuire/sdk.hpp>

void fragment(sekuire::sdk& sdk, sekuire::sdk::worker_type& worker) {
    // @snippet
}
