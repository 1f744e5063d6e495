// SPDX-License-Identifier: MIT
// Context "summarize": the fragment is the body of a function; the reader's own `summarize`
// handler is declared. <iostream> and <string> are included.
#include <boost/json.hpp>

#include <iostream>
#include <string>

// The reader's: the work of the "summarize" capability.
boost::json::value summarize(const boost::json::value& input);

void fragment() {
    // @snippet
}
