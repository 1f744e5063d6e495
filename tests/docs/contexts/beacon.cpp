// SPDX-License-Identifier: MIT
// Context "beacon": the fragment is the body of a function that has a running beacon,
// `beacon`, and the reader's own `save_secret`.
#include <sekuire/beacon.hpp>

#include <iostream>
#include <string>

// The reader's: stores a secret where their platform keeps them.
void save_secret(const std::string& name, const std::string& value);

void fragment(sekuire::beacon& beacon) {
    // @snippet
}
