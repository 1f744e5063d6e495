// SPDX-License-Identifier: MIT
// Context "file": the fragment stands at the top of a source file (for #include lines and
// declarations).

// @snippet
