// SPDX-License-Identifier: MIT
// Must not compile: the Executor has no post(). The error names the missing member.
#include <sekuire/basic_worker.hpp>
#include <sekuire/testing/fake_clock.hpp>
#include <sekuire/testing/fake_transport.hpp>

struct bad_executor {
    void run(std::function<void()>);
};
using worker = sekuire::basic_worker<sekuire::testing::fake_transport, sekuire::testing::fake_clock,
                                     sekuire::memory_store, bad_executor>;
static_assert(sizeof(worker) > 0, "");
