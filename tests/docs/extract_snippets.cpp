// SPDX-License-Identifier: MIT
// Extracts the C++ code blocks of the Markdown documentation into two files: a translation
// unit that compiles every fragment inside its named context, and a file that holds every
// whole program (each in a namespace of its own; run_snippets.cpp includes it).
//
//   extract_snippets --root DIR --contexts DIR [--fragments FILE --programs FILE] FILE.md...
//
// The Markdown files are given relative to --root (that is how they are named in
// diagnostics and #line directives). Without --fragments/--programs it only checks the
// files. Exit code 0 when every C++ block is marked and every marker is valid; otherwise 1,
// with one "file:line: error: ..." line per problem. The rules (also in CMakeLists.txt):
//
// - A fence (``` or ~~~) that opens a block names its language. A block in C++ (cpp, c++,
//   cxx, cc, c, h, hpp, hxx) has a marker on the line right above its fence:
//     <!-- snippet: program -->                    whole program, run; no sockets
//     <!-- snippet: program, loopback -->          whole program, run; opens sockets on 127.0.0.1
//     <!-- snippet: program, backend: mock -->     whole program, run with SEKUIRE_* set for an
//                                                  in-process mock backend
//     <!-- snippet: fragment, context: NAME -->    compiled inside tests/docs/contexts/NAME.cpp,
//                                                  at its line `// @snippet`
// - A marker is followed by a C++ block; a program defines `int main()`.
// - `#include` lines of fragments, programs and contexts move to the top of the generated
//   file (they are replaced by empty lines in place, so that line numbers stay right); the
//   rest of each snippet is wrapped in a namespace of its own, under #line directives that
//   name the Markdown file, so compiler messages point at the documentation.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct problem_list {
    int count = 0;
    void add(const std::string& where, const std::string& what) {
        std::cerr << where << ": error: " << what << "\n";
        ++count;
    }
};

std::string trim(const std::string& s) {
    const auto first = s.find_first_not_of(" \t\r");
    if (first == std::string::npos) return {};
    const auto last = s.find_last_not_of(" \t\r");
    return s.substr(first, last - first + 1);
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

bool read_lines(const std::string& path, std::vector<std::string>& lines) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(line);
    }
    return true;
}

bool is_cpp_language(const std::string& lang) {
    static const std::set<std::string> names{"cpp", "c++", "cxx", "cc", "c", "h", "hpp", "hxx"};
    return names.count(lang) != 0;
}

bool is_include(const std::string& line) {
    const std::string t = trim(line);
    if (t.empty() || t[0] != '#') return false;
    return trim(t.substr(1)).rfind("include", 0) == 0;
}

std::string quoted(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

enum class snippet_kind { program, fragment };

struct marker {
    snippet_kind kind = snippet_kind::fragment;
    std::string context;  // fragments
    std::string backend;  // programs: "" or "mock"
    bool loopback = false; // programs
};

// Parses "<!-- snippet: ... -->"; returns false (with `why`) when malformed.
bool parse_marker(const std::string& line, marker& m, std::string& why) {
    const std::string t = trim(line);
    const std::string open = "<!-- snippet:";
    const std::string close = "-->";
    if (t.rfind(open, 0) != 0 || t.size() < open.size() + close.size() ||
        t.compare(t.size() - close.size(), close.size(), close) != 0) {
        why = "a snippet marker is a line of its own: <!-- snippet: KIND[, ...] -->";
        return false;
    }
    std::string body = t.substr(open.size(), t.size() - open.size() - close.size());
    std::vector<std::string> items;
    std::stringstream ss(body);
    for (std::string item; std::getline(ss, item, ',');) items.push_back(trim(item));
    if (items.empty() || (items[0] != "program" && items[0] != "fragment")) {
        why = "a snippet marker starts with `program` or `fragment`";
        return false;
    }
    m.kind = items[0] == "program" ? snippet_kind::program : snippet_kind::fragment;
    for (std::size_t i = 1; i < items.size(); ++i) {
        const std::string& item = items[i];
        const auto colon = item.find(':');
        const std::string key = trim(item.substr(0, colon));
        const std::string value = colon == std::string::npos ? std::string() : trim(item.substr(colon + 1));
        if (m.kind == snippet_kind::fragment && key == "context" && !value.empty()) {
            for (char c : value)
                if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
                    why = "a context name has only letters, digits and `_`: `" + value + "`";
                    return false;
                }
            m.context = value;
        } else if (m.kind == snippet_kind::program && key == "backend" && value == "mock") {
            m.backend = value;
        } else if (m.kind == snippet_kind::program && key == "loopback" && colon == std::string::npos) {
            m.loopback = true;
        } else {
            why = "unknown item `" + item + "` in a " + items[0] + " marker (a fragment takes `context: NAME`; "
                  "a program takes `loopback` or `backend: mock`)";
            return false;
        }
    }
    if (m.kind == snippet_kind::fragment && m.context.empty()) {
        why = "a fragment marker names its context: <!-- snippet: fragment, context: NAME -->";
        return false;
    }
    return true;
}

struct snippet {
    std::string file;  // relative to the root
    int line = 0;      // the line of the opening fence (1-based)
    marker mark;
    std::vector<std::string> code;
};

struct fence {
    char ch = 0;
    std::size_t length = 0;
    std::size_t indent = 0;
    std::string info;
};

// A line that opens or closes a fence: up to any indentation, 3+ backticks or tildes.
bool parse_fence(const std::string& line, fence& f) {
    std::size_t i = 0;
    while (i < line.size() && line[i] == ' ') ++i;
    if (i >= line.size() || (line[i] != '`' && line[i] != '~')) return false;
    const char ch = line[i];
    std::size_t n = 0;
    while (i + n < line.size() && line[i + n] == ch) ++n;
    if (n < 3) return false;
    f.ch = ch;
    f.length = n;
    f.indent = i;
    f.info = trim(line.substr(i + n));
    if (ch == '`' && f.info.find('`') != std::string::npos) return false; // inline code, not a fence
    return true;
}

void scan_file(const std::string& root, const std::string& file, std::vector<snippet>& out, problem_list& problems) {
    std::vector<std::string> lines;
    if (!read_lines(root + "/" + file, lines)) {
        problems.add(file, "cannot read the file");
        return;
    }
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::string where = file + ":" + std::to_string(i + 1);
        fence open;
        if (!parse_fence(lines[i], open)) {
            fence next;
            const bool above_fence = i + 1 < lines.size() && parse_fence(lines[i + 1], next);
            if (lines[i].find("<!-- snippet") != std::string::npos && !above_fence) { // else judged with its block
                marker m;
                std::string why;
                if (!parse_marker(lines[i], m, why))
                    problems.add(where, why);
                else
                    problems.add(where, "a snippet marker must be right above the ```cpp fence of its block");
            }
            continue;
        }
        // The block runs to the closing fence.
        std::size_t end = i + 1;
        fence close;
        while (end < lines.size() &&
               !(parse_fence(lines[end], close) && close.ch == open.ch && close.length >= open.length && close.info.empty()))
            ++end;
        if (end >= lines.size()) {
            problems.add(where, "the code block opened here is never closed");
            return;
        }
        const std::string lang = lower(open.info.substr(0, open.info.find_first_of(" \t{")));
        const bool has_marker = i > 0 && lines[i - 1].find("<!-- snippet") != std::string::npos;
        if (lang.empty()) {
            problems.add(where, "a code block names its language (```cpp, ```sh, ```cmake, ```json, ```text, ...)");
        } else if (is_cpp_language(lang)) {
            marker m;
            std::string why;
            if (!has_marker) {
                problems.add(where, "```" + lang + " block without a snippet marker on the line above it "
                                    "(<!-- snippet: program --> or <!-- snippet: fragment, context: NAME -->; "
                                    "see tests/docs/CMakeLists.txt)");
            } else if (!parse_marker(lines[i - 1], m, why)) {
                problems.add(file + ":" + std::to_string(i), why);
            } else {
                snippet s;
                s.file = file;
                s.line = static_cast<int>(i + 1);
                s.mark = m;
                for (std::size_t k = i + 1; k < end; ++k) {
                    std::string l = lines[k];
                    std::size_t strip = 0;
                    while (strip < open.indent && strip < l.size() && l[strip] == ' ') ++strip;
                    s.code.push_back(l.substr(strip));
                }
                out.push_back(std::move(s));
            }
        } else if (has_marker) {
            problems.add(file + ":" + std::to_string(i), "a snippet marker above a ```" + lang + " block (markers are for C++ blocks)");
        }
        i = end; // skip the block: its lines are code, not Markdown
    }
}

// Writes numbered lines and keeps count, so that #line directives can name the generated file.
class generated_file {
public:
    explicit generated_file(std::string name) : name_(std::move(name)) {}
    void line(const std::string& text) {
        text_ += text;
        text_ += '\n';
        ++lines_;
    }
    // Back to the generated file's own numbering.
    void line_directive_here() { line("#line " + std::to_string(lines_ + 2) + " " + quoted(name_)); }
    const std::string& text() const { return text_; }

private:
    std::string name_;
    std::string text_;
    int lines_ = 0;
};

struct context {
    std::string path; // relative to the root
    std::vector<std::string> lines;
    std::size_t at = 0; // index of the `// @snippet` line
};

bool load_context(const std::string& root, const std::string& dir, const std::string& name, context& c, std::string& why) {
    c.path = dir + "/" + name + ".cpp";
    if (!read_lines(root + "/" + c.path, c.lines)) {
        why = "unknown context `" + name + "`: there is no " + c.path;
        return false;
    }
    int found = 0;
    for (std::size_t i = 0; i < c.lines.size(); ++i)
        if (trim(c.lines[i]) == "// @snippet") {
            c.at = i;
            ++found;
        }
    if (found != 1) {
        why = c.path + " must have exactly one line `// @snippet` (where the fragment goes)";
        return false;
    }
    return true;
}

// Appends `lines` (the text of `file` from its line `first`), includes blanked, after a
// #line directive naming that file.
void emit_mapped(generated_file& g, const std::string& file, int first, const std::vector<std::string>& lines,
                 std::size_t from, std::size_t to) {
    if (from >= to) return;
    g.line("#line " + std::to_string(first) + " " + quoted(file));
    for (std::size_t k = from; k < to; ++k) g.line(is_include(lines[k]) ? std::string() : lines[k]);
}

void collect_includes(const std::vector<std::string>& lines, std::vector<std::string>& includes) {
    for (const auto& l : lines)
        if (is_include(l)) {
            const std::string t = trim(l);
            if (std::find(includes.begin(), includes.end(), t) == includes.end()) includes.push_back(t);
        }
}

std::string header_comment(const char* what) {
    return std::string("// Generated by tests/docs/extract_snippets.cpp from the documentation: ") + what +
           ". Do not edit.";
}

bool write_if_changed(const std::string& path, const std::string& text) {
    {
        std::ifstream in(path, std::ios::binary);
        if (in) {
            std::stringstream ss;
            ss << in.rdbuf();
            if (ss.str() == text) return true;
        }
    }
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    return static_cast<bool>(out.flush());
}

std::string id_of(const snippet& s) { return s.file + ":" + std::to_string(s.line); }

} // namespace

int main(int argc, char** argv) {
    std::string root = ".";
    std::string contexts_dir;
    std::string fragments_out;
    std::string programs_out;
    std::vector<std::string> files;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&](std::string& target) {
            if (i + 1 >= argc) {
                std::cerr << "extract_snippets: " << a << " needs a value\n";
                std::exit(2);
            }
            target = argv[++i];
        };
        if (a == "--root")
            value(root);
        else if (a == "--contexts")
            value(contexts_dir);
        else if (a == "--fragments")
            value(fragments_out);
        else if (a == "--programs")
            value(programs_out);
        else if (a.rfind("--", 0) == 0) {
            std::cerr << "extract_snippets: unknown option " << a << "\n";
            return 2;
        } else
            files.push_back(a);
    }
    if (contexts_dir.empty() || files.empty() || fragments_out.empty() != programs_out.empty()) {
        std::cerr << "usage: extract_snippets --root DIR --contexts DIR [--fragments FILE --programs FILE] FILE.md...\n";
        return 2;
    }

    problem_list problems;
    std::vector<snippet> snippets;
    for (const auto& f : files) scan_file(root, f, snippets, problems);

    std::map<std::string, context> contexts;
    for (const auto& s : snippets) {
        if (s.mark.kind != snippet_kind::fragment || contexts.count(s.mark.context)) continue;
        context c;
        std::string why;
        if (load_context(root, contexts_dir, s.mark.context, c, why))
            contexts.emplace(s.mark.context, std::move(c));
        else
            problems.add(s.file + ":" + std::to_string(s.line - 1), why);
    }
    for (const auto& s : snippets) {
        if (s.mark.kind != snippet_kind::program) continue;
        bool has_main = false;
        for (const auto& l : s.code)
            if (l.find("int main()") != std::string::npos) has_main = true;
        if (!has_main) problems.add(id_of(s), "a program defines `int main()` (or mark the block as a fragment)");
    }
    if (problems.count) {
        std::cerr << "extract_snippets: " << problems.count << " problem(s) in the documentation's code blocks\n";
        return 1;
    }
    int programs = 0, fragments = 0;
    for (const auto& s : snippets) (s.mark.kind == snippet_kind::program ? programs : fragments)++;
    if (fragments_out.empty()) {
        std::cout << "extract_snippets: " << programs << " program(s), " << fragments << " fragment(s), all marked\n";
        return 0;
    }

    // Fragments: contexts' and fragments' includes first, then one namespace per fragment.
    {
        generated_file g(fragments_out);
        g.line(header_comment("every fragment, in its context (compiled, never run)"));
        std::vector<std::string> includes;
        for (const auto& s : snippets)
            if (s.mark.kind == snippet_kind::fragment) {
                collect_includes(contexts.at(s.mark.context).lines, includes);
                collect_includes(s.code, includes);
            }
        for (const auto& inc : includes) g.line(inc);
        int n = 0;
        for (const auto& s : snippets) {
            if (s.mark.kind != snippet_kind::fragment) continue;
            const context& c = contexts.at(s.mark.context);
            g.line("");
            g.line("// " + id_of(s) + " (fragment, context: " + s.mark.context + ")");
            g.line("namespace sekuire_docs_fragment_" + std::to_string(++n) + " {");
            emit_mapped(g, c.path, 1, c.lines, 0, c.at);
            emit_mapped(g, s.file, s.line + 1, s.code, 0, s.code.size());
            emit_mapped(g, c.path, static_cast<int>(c.at) + 2, c.lines, c.at + 1, c.lines.size());
            g.line_directive_here();
            g.line("} // namespace sekuire_docs_fragment_" + std::to_string(n));
        }
        if (!write_if_changed(fragments_out, g.text())) {
            std::cerr << "extract_snippets: cannot write " << fragments_out << "\n";
            return 1;
        }
    }

    // Programs: includes first, one namespace per program, then the table run_snippets reads.
    {
        generated_file g(programs_out);
        g.line(header_comment("every whole program, each in a namespace of its own"));
        g.line("#include \"snippet_programs.hpp\"");
        std::vector<std::string> includes;
        for (const auto& s : snippets)
            if (s.mark.kind == snippet_kind::program) collect_includes(s.code, includes);
        for (const auto& inc : includes) g.line(inc);
        int n = 0;
        for (const auto& s : snippets) {
            if (s.mark.kind != snippet_kind::program) continue;
            g.line("");
            g.line("// " + id_of(s) + " (program)");
            g.line("namespace sekuire_docs_program_" + std::to_string(++n) + " {");
            emit_mapped(g, s.file, s.line + 1, s.code, 0, s.code.size());
            g.line_directive_here();
            g.line("} // namespace sekuire_docs_program_" + std::to_string(n));
        }
        g.line("");
        g.line("const std::vector<sekuire_docs::program>& sekuire_docs::programs() {");
        g.line("    static const std::vector<program> all{");
        n = 0;
        std::map<std::string, int> per_file;
        for (const auto& s : snippets) {
            if (s.mark.kind != snippet_kind::program) continue;
            const std::string kind = !s.mark.backend.empty() ? "program_kind::mock"
                                     : s.mark.loopback         ? "program_kind::loopback"
                                                               : "program_kind::plain";
            g.line("        {" + quoted(s.file) + ", " + std::to_string(++per_file[s.file]) + ", " +
                   std::to_string(s.line) + ", " + kind + ", &sekuire_docs_program_" + std::to_string(++n) + "::main},");
        }
        g.line("    };");
        g.line("    return all;");
        g.line("}");
        if (!write_if_changed(programs_out, g.text())) {
            std::cerr << "extract_snippets: cannot write " << programs_out << "\n";
            return 1;
        }
    }
    return 0;
}
