// SPDX-License-Identifier: MIT
// An environment made of a map, for tests of the SEKUIRE_* settings.
#ifndef SEKUIRE_TESTS_ENV_LOOKUP_HPP
#define SEKUIRE_TESTS_ENV_LOOKUP_HPP

#include <sekuire/env.hpp>

#include <map>
#include <string>

inline sekuire::env_lookup env_from(std::map<std::string, std::string> vars) {
    return [vars](const char* name) -> std::optional<std::string> {
        auto it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

#endif
