#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compile time of a translation unit that uses sekuire, side by side with one that uses
only its dependencies (httplib.h and boost/json.hpp), at -O0 and -O2 (issue 11's figure).

Each round compiles every variant once, in a shuffled order, so that a busy machine slows
all of them alike; the figure is the median over the rounds of each variant's time divided
by the baseline's time in the same round.

    bench/compile_time.py [--rounds N] [--cxx g++] [--std c++17] [--clock wall|cpu]

Variants:
  baseline     httplib.h + boost/json.hpp: a client, a JSON parse and serialize
  include_sdk  includes <sekuire/sdk.hpp>, uses nothing
  sdk          builds and runs a sekuire::sdk with a worker and a handler (header-only)
  sdk_sep      the same with SEKUIRE_SEPARATE_COMPILATION (the members are in another TU)
  beacon       builds and starts a sekuire::beacon (header-only)
  beacon_sep   the same with SEKUIRE_SEPARATE_COMPILATION
"""
import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BASELINE = r'''
#include <httplib.h>
#include <boost/json.hpp>
int main() {
    httplib::Client c("http://127.0.0.1:1");
    c.set_connection_timeout(1, 0);
    auto v = boost::json::parse(R"({"a":1})");
    auto r = c.Post("/x", boost::json::serialize(v), "application/json");
    return r && r->status == 200 ? 0 : 1;
}
'''

INCLUDE_SDK = r'''
#include <sekuire/sdk.hpp>
int main() { return 0; }
'''

SDK = r'''
#include <sekuire/sdk.hpp>
int main() {
    sekuire::sdk_options o;
    o.api_base_url = "http://127.0.0.1:1";
    o.agent_id = "bench";
    o.install_token = "skt_bench";
    sekuire::sdk s(o);
    auto& w = s.create_task_worker();
    w.on_task("echo", [](const sekuire::task_context&, const boost::json::value& in) { return in; });
    sekuire::error_code ec;
    s.start(ec);
    s.shutdown();
    return ec ? 1 : 0;
}
'''

BEACON = r'''
#include <sekuire/beacon.hpp>
int main() {
    sekuire::beacon_options o;
    o.api_base_url = "http://127.0.0.1:1";
    o.agent_id = "bench";
    o.install_token = "skt_bench";
    sekuire::beacon b(o);
    sekuire::error_code ec;
    b.start(ec);
    b.stop();
    return b.is_connected() ? 0 : 1;
}
'''

VARIANTS = {
    "baseline": (BASELINE, []),
    "include_sdk": (INCLUDE_SDK, []),
    "sdk": (SDK, []),
    "sdk_sep": (SDK, ["-DSEKUIRE_SEPARATE_COMPILATION"]),
    "beacon": (BEACON, []),
    "beacon_sep": (BEACON, ["-DSEKUIRE_SEPARATE_COMPILATION"]),
}


def compile_once(cxx, std, opt, source, extra, out_dir, clock="wall"):
    cmd = [cxx, "-std=" + std, opt, "-I", os.path.join(ROOT, "include"), "-c", source,
           "-o", os.path.join(out_dir, "out.o")] + extra
    if clock == "cpu":
        # The compiler's user and system time (the driver, cc1plus, as): what the machine's
        # load changes least.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cxx", default="g++")
    ap.add_argument("--std", default="c++17")
    ap.add_argument("--opt", action="append", help="-O0, -O2 (default both)")
    ap.add_argument("--only", action="append", help="variants to run besides the baseline")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: elapsed time (default); cpu: the compiler's user+system time, steadier on a busy machine")
    args = ap.parse_args()
    if args.rounds < 1 or args.rounds > 50:
        ap.error("--rounds: 1 to 50")
    opts = args.opt or ["-O0", "-O2"]
    names = ["baseline"] + [n for n in VARIANTS if n != "baseline" and (not args.only or n in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        sources = {}
        for n in names:
            sources[n] = os.path.join(tmp, n + ".cpp")
            with open(sources[n], "w") as f:
                f.write(VARIANTS[n][0])
        print(f"compiler: {args.cxx} -std={args.std}; {args.rounds} rounds; {args.clock} time; ratio = variant / baseline in the same round")
        for opt in opts:
            times = {n: [] for n in names}
            for r in range(args.rounds):
                order = names[:]
                random.shuffle(order)
                for n in order:
                    times[n].append(compile_once(args.cxx, args.std, opt, sources[n], VARIANTS[n][1], tmp, args.clock))
            print(f"\n{opt}")
            print(f"  {'variant':<12} {'median s':>9} {'ratio (median)':>15}")
            for n in names:
                ratios = [t / b for t, b in zip(times[n], times["baseline"])]
                print(f"  {n:<12} {statistics.median(times[n]):9.2f} {statistics.median(ratios):15.2f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
