# The filter that docs/Doxyfile runs every Markdown file through, for the API reference only:
# the files themselves, as GitHub renders them, are unchanged. Both rules work around what
# Doxygen 1.9.4 (Debian 12) does not do.
#
# 1. Its Markdown headings get no GitHub-style anchors, so an in-page link such as
#    [Fault injection](#fault-injection) cannot resolve: keep the link's text only.
s/\[([^]]*)\]\(#[^)]*\)/\1/g
# 2. A code span such as `cpp-httplib::cpp-httplib` in a paragraph with another code span is
#    taken for a link to `cpp` ("explicit link request ... could not be resolved"): a `%`
#    before the word after the hyphen stops that, and Doxygen does not print it.
s/`([A-Za-z0-9_.]+)-([A-Za-z0-9_.-]*::[^`]*)`/`\1-%\2`/g
# 3. A code span as a link's text keeps its backticks on the page: keep the text plain.
s/\[`([^`]*)`\]\(/[\1](/g
# 4. A code span in a heading shows as a literal <tt> tag: keep the heading's text plain.
/^#+ /s/`//g
