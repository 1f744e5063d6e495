// SPDX-License-Identifier: MIT
// The whole programs of the documentation, as extract_snippets generates them: each one's
// `int main()` lives in a namespace of its own, and `programs()` lists them.
#ifndef SEKUIRE_TESTS_DOCS_SNIPPET_PROGRAMS_HPP
#define SEKUIRE_TESTS_DOCS_SNIPPET_PROGRAMS_HPP

#include <vector>

namespace sekuire_docs {

/// What a program needs to run (its marker).
enum class program_kind {
    plain,    ///< <!-- snippet: program -->: nothing; no sockets
    loopback, ///< <!-- snippet: program, loopback -->: opens sockets on 127.0.0.1 itself
    mock,     ///< <!-- snippet: program, backend: mock -->: SEKUIRE_* for a mock backend
};

/// One program of the documentation.
struct program {
    const char* file; ///< the Markdown file, relative to the source tree
    int index;        ///< 1 for the file's first program, 2 for its second, ...
    int line;         ///< the line of its opening fence
    program_kind kind;
    int (*main)();
};

/// Every program, in the order of the files given to the extractor.
const std::vector<program>& programs();

} // namespace sekuire_docs

#endif
