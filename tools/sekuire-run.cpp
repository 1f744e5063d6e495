// SPDX-License-Identifier: MIT
// sekuire-run: runs a command under a Sekuire beacon (the counterpart of `sekuire run`; the
// same program as `sekuire run`).
//
//   sekuire-run [options] --cmd "npm start"
//   sekuire-run [options] -- PROGRAM [ARGS...]
//   sekuire-run --check --credentials-file PATH
//
// Configured by flags and the SEKUIRE_* environment (docs/sekuire-run.md); the work is in
// run.hpp.

#include "run.hpp"

int main(int argc, char** argv) {
    sekuire_tools::run_detail::make_undumpable();
    const auto inherited = sekuire_tools::run_detail::inherited_fds::scan();
    const std::string program = "sekuire-run";

    CLI::App app{"Runs a command under a Sekuire beacon: the command becomes an installation of the fleet, with "
                 "heartbeats, a lease and the kill switch.",
                 program};
    app.set_version_flag("--version", sekuire_tools::version_text(program));
    sekuire_tools::run_flags flags;
    sekuire_tools::add_run_options(app, flags);
    app.footer(sekuire_tools::run_detail::run_footer("sekuire-run"));

    const auto split = sekuire_tools::split_at_separator(argc, argv);
    flags.command = split.command;
    flags.has_separator = split.has_separator;
    flags.arguments = split.options;
    const std::string synopsis = program + " [options] (--cmd COMMAND | -- PROGRAM [ARGS...])";
    if (const int code = sekuire_tools::parse_arguments(app, split.options, program, synopsis); code >= 0) return code;
    return sekuire_tools::run(flags, program, inherited, argc, argv);
}
