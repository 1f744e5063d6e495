// SPDX-License-Identifier: MIT
// Must not compile: the policy gateway has no admit(). The error names it.
#include <sekuire/basic_worker.hpp>

struct bad_gateway {
    void set_policy(sekuire::protocol::policy_document) {}
    std::string policy_hash() const { return {}; }
    bool on_heartbeat_response(const std::optional<std::string>&) { return false; }
};

void configure(sekuire::worker_options& o) { o.gateway = bad_gateway{}; }
