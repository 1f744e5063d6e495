// SPDX-License-Identifier: MIT
// The command line conventions of sekuire's programs (not installed): exit codes, short
// usage errors that never echo a secret, --version, and the `--` split. The programs parse
// their flags with CLI11.
#ifndef SEKUIRE_TOOLS_CLI_HPP
#define SEKUIRE_TOOLS_CLI_HPP

#include <sekuire/config_error.hpp>
#include <sekuire/mask.hpp>
#include <sekuire/version.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

namespace sekuire_tools {

/// Exit codes of the programs themselves (a supervised command's own code passes through).
namespace exit_code {
inline constexpr int ok = 0;
/// Another failure: the command could not be started, an unexpected refusal.
inline constexpr int failure = 1;
/// A usage or configuration error: nothing was started (the sysexits EX_USAGE family is
/// not used: 2 is what shells, getopt programs and CLI11 use).
inline constexpr int usage = 2;
/// Retryable: the backend could not be reached, timed out, or answered 5xx or 429
/// (sysexits EX_TEMPFAIL).
inline constexpr int retryable = 75;
/// Fatal for these credentials: refused, used, expired, or the installation revoked
/// (sysexits EX_NOPERM).
inline constexpr int auth = 77;
} // namespace exit_code

/// `sekuire-cpp 0.1.0` with the program's name: the text of `--version`.
inline std::string version_text(std::string_view program) {
    return std::string(program) + " (" + sekuire::sdk_name + ") " + sekuire::sdk_version;
}

/// The arguments before the first `--`, and the ones after it (the command's argv).
struct split_arguments {
    std::vector<std::string> options;
    std::vector<std::string> command;
    bool has_separator = false;
};

/// Splits `argv[1..]` at the first `--`.
inline split_arguments split_at_separator(int argc, char** argv) {
    split_arguments s;
    for (int i = 1; i < argc; ++i) {
        if (!s.has_separator && std::strcmp(argv[i], "--") == 0) {
            s.has_separator = true;
            continue;
        }
        (s.has_separator ? s.command : s.options).emplace_back(argv[i]);
    }
    return s;
}

/// Whether an argument looks like a token whatever flag it follows (the known prefixes of
/// install tokens, API keys, runtime and refresh tokens).
inline bool looks_like_token(std::string_view a) {
    for (const std::string_view p : {"skt_", "sk_live_", "sk_", "srt_", "rt_"})
        if (a.substr(0, p.size()) == p && a.size() > p.size() + 4) return true;
    return false;
}

/** The secret values among the arguments: the value of every flag whose name says it holds
    a secret (`--install-token X`, `--api-key=X`, also misspelled ones such as
    `--instal-token X`), and every argument that looks like a token. */
inline std::vector<std::string> secret_values(const std::vector<std::string>& args) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a.rfind("--", 0) == 0 || (a.size() > 1 && a[0] == '-')) {
            const auto eq = a.find('=');
            const std::string name = a.substr(0, eq);
            // A secret file's path is not a secret.
            const bool file = name.size() > 5 && name.compare(name.size() - 5, 5, "-file") == 0;
            if (sekuire::is_secret_setting(name) && !file) {
                if (eq != std::string::npos) {
                    if (eq + 1 < a.size()) out.push_back(a.substr(eq + 1));
                } else if (i + 1 < args.size()) {
                    out.push_back(args[i + 1]);
                }
            }
        }
        if (looks_like_token(a)) out.push_back(a);
    }
    return out;
}

/// `text` with every secret value replaced by its mask.
inline std::string scrub(std::string text, const std::vector<std::string>& secrets) {
    for (const auto& s : secrets) {
        if (s.size() < 2) continue;
        const std::string masked = sekuire::mask_token(s);
        for (auto at = text.find(s); at != std::string::npos; at = text.find(s, at + masked.size()))
            text.replace(at, s.size(), masked);
    }
    return text;
}

/** Prints a usage error the short way, never the whole help: the error (secrets masked), the
    one-line synopsis, and where to find more. Returns `exit_code::usage`. */
inline int usage_error(std::string_view program, const std::string& message, std::string_view synopsis,
                       const std::vector<std::string>& args) {
    std::cerr << program << ": " << scrub(message, secret_values(args)) << "\n"
              << "usage: " << synopsis << "\n"
              << "try '" << program << " --help' for more information\n";
    return exit_code::usage;
}

/** Runs CLI11 on `args` (the arguments before `--`). Returns -1 when the program goes on;
    otherwise the exit code after printing: 0 for --help and --version (to standard
    output), `exit_code::usage` for a parse error (the short form, to standard error). */
inline int parse_arguments(CLI::App& app, std::vector<std::string> args, std::string_view program,
                           std::string_view synopsis) {
    const std::vector<std::string> original = args;
    std::reverse(args.begin(), args.end()); // CLI11 takes them reversed
    try {
        app.parse(args);
    } catch (const CLI::CallForHelp&) {
        std::cout << app.help();
        return exit_code::ok;
    } catch (const CLI::CallForAllHelp&) {
        std::cout << app.help("", CLI::AppFormatMode::All);
        return exit_code::ok;
    } catch (const CLI::CallForVersion& e) {
        std::cout << e.what() << "\n";
        return exit_code::ok;
    } catch (const CLI::ParseError& e) {
        return usage_error(program, e.what(), synopsis, original);
    }
    return -1;
}

} // namespace sekuire_tools

#endif
