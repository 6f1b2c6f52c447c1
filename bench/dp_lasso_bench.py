#!/usr/bin/env python3
"""Data-parallel Lasso under the consistency models: time to the optimum within 1e-6.

For each problem (news20 class 1 against the rest; a seeded synthetic 10,000 x 100,000 sparse
problem with 100 true features; both made by bench/lasso_problem) at lambda = lambda_max/10,
`tessera lasso --mode data-parallel` with 2 servers and 2 workers in one process runs under
each model in turn for every repeat (interleaved):

  bsp            the default there: FISTA, full proximal gradient steps (--dp-method auto)
  bsp block      the delayed block proximal gradient, synchronous, with its KKT filter
  ssp:2, essp:2, asp
                 the default there: the delayed block proximal gradient, steps shrunk by the
                 staleness each clock had, with its KKT filter (passes between full ones step
                 only the nonzero features)
  ssp:2 no KKT filter
                 the same, every feature stepped in every pass (--no-kkt-filter)
  ssp:2 gradient the proximal incremental aggregated gradient with the step 1/(L P (1 + S))
                 these models had before the block method (capped at --cap seconds)

The optimum f* is a tight model-parallel coordinate-descent solve (--tolerance 1e-12) in the same
run. Each figure is the time at the first evaluation whose objective is within 1e-6 of f*
(relative), read from the run's trace: the fit's own clock, which includes the objective
evaluations (the gradient method every 5 clocks, the block method after every pass over the
blocks) and excludes reading the data and the setup, the same for every model. Min and median
over the repeats, and each median against bsp's.

  /usr/bin/python3 bench/dp_lasso_bench.py [--repeats 5] [--tessera build/release/tools/tessera]
      [--problems news20 synthetic] [--cap 30]
"""
import csv
import math
import os
import statistics
import subprocess
import sys
import tempfile

import benchlib

ap = benchlib.parser(__doc__)
ap.add_argument("--problems", nargs="+", default=["news20", "synthetic"])
ap.add_argument("--cap", type=float, default=30, help="seconds per run of the old gradient method")
args = ap.parse_args()
tessera = os.path.abspath(args.tessera)
problem_tool = os.path.join(os.path.dirname(os.path.dirname(tessera)), "bench", "lasso_problem")
work = tempfile.TemporaryDirectory(prefix="tessera-dp-lasso-")
RELATIVE = 1e-6

MODELS = [
    ("bsp", ["--consistency", "bsp", "--evaluate-every", "5"]),
    ("bsp block", ["--consistency", "bsp", "--dp-method", "block"]),
    ("ssp:2", ["--consistency", "ssp:2"]),
    ("essp:2", ["--consistency", "essp:2"]),
    ("asp", ["--consistency", "asp"]),
    ("ssp:2 no KKT filter", ["--consistency", "ssp:2", "--no-kkt-filter"]),
    ("ssp:2 gradient", ["--consistency", "ssp:2", "--dp-method", "gradient", "--evaluate-every",
                        "5", "--max-seconds", str(args.cap)]),
]


def make(problem):
    prefix = f"{work.name}/{problem}"
    if problem == "news20":
        src = f"{args.data_dir}/news20-libsvm/news20.libsvm.gz"
        if not os.path.exists(src):
            return None
        prep = ["--in", src, "--class", "1"]
    else:
        prep = ["--synthetic", "10000x100000", "--density", "0.001", "--support", "100",
                "--seed", "1"]
    out = subprocess.run([problem_tool] + prep + ["--out", prefix], check=True,
                         capture_output=True, text=True).stdout.split()
    return prefix + ".libsvm", float(out[out.index("lambda_max") + 1])


def optimum(data, lam):
    summary = f"{work.name}/optimum.csv"
    subprocess.run([tessera, "lasso", "--data", data, "--lambda", repr(lam), "--tolerance",
                    "1e-12", "--quiet", "--summary", summary], check=True)
    with open(summary) as f:
        return float(next(csv.DictReader(f))["objective"])


def run(data, lam, flags, target):
    trace = f"{work.name}/trace.csv"
    subprocess.run([tessera, "lasso", "--data", data, "--lambda", repr(lam), "--mode",
                    "data-parallel", "--servers", "2", "--workers", "2", "--objective-tolerance",
                    "1e-13", "--quiet", "--trace", trace] + flags, check=True)
    with open(trace) as f:
        for row in csv.DictReader(f):
            if float(row["objective"]) <= target:
                return float(row["seconds"])
    return math.nan


for problem in args.problems:
    made = make(problem)
    if made is None:
        print(f"\n{problem}: skipped (data not found under {args.data_dir})")
        continue
    data, lambda_max = made
    lam = lambda_max / 10
    best = optimum(data, lam)
    target = best * (1 + RELATIVE)
    times = {name: [] for name, _ in MODELS}
    for _ in range(args.repeats):
        for name, flags in MODELS:  # interleaved
            times[name].append(run(data, lam, flags, target))
    print(f"\n{problem}, lambda = lambda_max/10 = {lam:.6g}: seconds to the optimum "
          f"{best:.10g} within {RELATIVE:g} (2 servers, 2 workers, {args.repeats} repeats)")
    print(f"{'model':<20} {'min s':>8} {'median s':>9} {'vs bsp':>8}")
    base = statistics.median(times["bsp"])
    for name, _ in MODELS:
        t = times[name]
        if any(math.isnan(x) for x in t):
            print(f"{name:<20} {'not reached':>18} in {args.cap:g} s "
                  f"({sum(math.isnan(x) for x in t)} of {len(t)} runs)")
            continue
        med = statistics.median(t)
        print(f"{name:<20} {min(t):>8.3f} {med:>9.3f} {med / base:>7.2f}x")
sys.stdout.flush()
