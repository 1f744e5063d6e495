// SPDX-License-Identifier: MIT
// Context "worker": the fragment is the body of a function that has the worker made by
// `sekuire::create_worker`, `worker`.
#include <sekuire/worker.hpp>

#include <iostream>
#include <memory>

void fragment(std::unique_ptr<sekuire::worker>& worker) {
    // @snippet
}
