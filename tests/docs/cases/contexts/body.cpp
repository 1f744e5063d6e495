// SPDX-License-Identifier: MIT
// Context "body" of the extractor's own tests: a function body.
void fragment() {
    // @snippet
}
