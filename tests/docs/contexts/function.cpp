// SPDX-License-Identifier: MIT
// Context "function": the fragment is the body of a function; <iostream> and <string> are
// included. The fragment includes the sekuire headers it uses itself.
#include <iostream>
#include <string>

void fragment() {
    // @snippet
}
