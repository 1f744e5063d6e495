// SPDX-License-Identifier: MIT
// Context "broken" of the extractor's own tests: it has no placeholder line.
void fragment() {
}
