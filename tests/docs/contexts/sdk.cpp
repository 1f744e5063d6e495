// SPDX-License-Identifier: MIT
// Context "sdk": the fragment is the body of a function that has a started SDK, `sdk`, and
// the reader's own `first_140_characters`.
#include <sekuire/sdk.hpp>

#include <iostream>
#include <string>

// The reader's: the work of the "summarize" capability.
std::string first_140_characters(const boost::json::string& text);

void fragment(sekuire::sdk& sdk) {
    // @snippet
}
