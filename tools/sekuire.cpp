// SPDX-License-Identifier: MIT
// sekuire: the command line of sekuire-cpp, as the seed spells it. Its `run` subcommand is
// sekuire-run (the same code, run.hpp):
//
//   sekuire run --cmd "npm start"
//   sekuire run --heartbeat-interval 30 --cmd "npm start"
//   sekuire run --no-heartbeat --cmd "npm start"
//   sekuire run [options] -- PROGRAM [ARGS...]
//
// `sekuire --help` lists the subcommands.

#include "run.hpp"

#include <iostream>

int main(int argc, char** argv) {
    sekuire_tools::run_detail::make_undumpable();
    const auto inherited = sekuire_tools::run_detail::inherited_fds::scan();

    CLI::App app{"sekuire-cpp's command line.", "sekuire"};
    app.set_version_flag("--version", sekuire_tools::version_text("sekuire"));
    app.require_subcommand(1);
    CLI::App* run = app.add_subcommand(
        "run", "Run a command under a Sekuire beacon (the same program as sekuire-run; see 'sekuire run --help')");
    sekuire_tools::run_flags flags;
    sekuire_tools::add_run_options(*run, flags);
    run->footer(sekuire_tools::run_detail::run_footer("sekuire run"));
    app.footer("Examples:\n"
               "  sekuire run --cmd \"npm start\"\n"
               "  sekuire run --heartbeat-interval 30 --cmd \"npm start\"\n"
               "  sekuire run --no-heartbeat --cmd \"npm start\"     # not recommended\n");

    const auto split = sekuire_tools::split_at_separator(argc, argv);
    flags.command = split.command;
    flags.has_separator = split.has_separator;
    flags.arguments = split.options;
    // Errors inside `run` are told as `sekuire run`'s.
    const bool in_run = !split.options.empty() && split.options.front() == "run";
    const std::string program = in_run ? "sekuire run" : "sekuire";
    const std::string synopsis = in_run ? "sekuire run [options] (--cmd COMMAND | -- PROGRAM [ARGS...])"
                                        : "sekuire <subcommand> [options]   (subcommands: run)";
    if (split.has_separator && !in_run)
        return sekuire_tools::usage_error("sekuire", "-- PROGRAM [ARGS...] belongs to a subcommand: sekuire run -- ...",
                                          synopsis, split.options);
    if (const int code = sekuire_tools::parse_arguments(app, split.options, program, synopsis); code >= 0) return code;
    if (run->parsed()) return sekuire_tools::run(flags, "sekuire run", inherited, argc, argv);
    return sekuire_tools::usage_error("sekuire", "a subcommand is required: run", synopsis, split.options);
}
