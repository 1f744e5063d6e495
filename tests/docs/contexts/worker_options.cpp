// SPDX-License-Identifier: MIT
// Context "worker_options": the fragment is the body of a function that fills in the
// options of a worker, `options`.
#include <sekuire/worker.hpp>

void fragment(sekuire::worker_options& options) {
    // @snippet
}
