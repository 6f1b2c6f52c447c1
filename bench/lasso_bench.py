#!/usr/bin/env python3
"""Lasso: Tessera (model-parallel, 1 and 2 workers) against glmnet and skglm, in the same run.

Every solver fits (1/2n)||y - b0 - Xb||^2 + lambda ||b||_1 (intercept, no standardization) on
the same files (bench/lasso_problem), at lambda_max/10 and lambda_max/100, and on news20 along a
path of 100 lambdas from lambda_max down to lambda_max/100 (log-spaced, each fit warm-started
from the one before, as glmnet, skglm and celer run paths), and is timed to the same certified
accuracy: the optimum within 1e-6 (relative), on a path at every lambda.

  optimum  the least objective of tight runs of all three (Tessera --tolerance 1e-13, glmnet
           thresh 1e-14, skglm tol 1e-12); every objective is computed from the returned
           coefficients with the same formula.
  tolerance  each solver's own stopping tolerance is tightened down a ladder (Tessera's
           --tolerance, a duality gap relative to the objective at 0: 1e-5 ... 1e-11 (its
           default is 1e-7); glmnet's thresh, relative to the null deviance: 1e-5 ... 1e-13
           (default 1e-7); skglm's tol, an absolute bound on the KKT violation, given as a
           multiple of lambda_max: 1e-3 ... 1e-10) until its objective is within 1e-6 of the
           optimum; the first one that gets there is timed.
  time     in-process time of one whole solve, data already in memory: glmnet system.time()
           in an R session (bench/glmnet_fit.R); skglm's AndersonCD.solve in a warm Python
           process whose first (JIT-compiling) solve is dropped (bench/skglm_fit.py); Tessera's
           setup (partitioning rows, building worker shards) plus its fit. Reading files is
           excluded for all.
  repeats  --repeats rounds, each running every solver once in turn (interleaved); min and
           median, and each median over skglm's.

skglm is not a Debian package: give its source directory (commit 5efeb8f8, the last that runs
with Debian's python3-numba and python3-sklearn) as SKGLM=/path/to/skglm, else it is skipped.

  SKGLM=/path/to/skglm /usr/bin/python3 bench/lasso_bench.py [--repeats 5]
      [--problems cpusmall arcene golub news20 synthetic] [--path 100] [--path-problems news20]
"""
import csv
import math
import os
import re
import statistics
import subprocess
import tempfile

import benchlib

ap = benchlib.parser(__doc__)
ap.add_argument("--problems", nargs="+",
                default=["cpusmall", "arcene", "golub", "news20", "synthetic"])
ap.add_argument("--path", type=int, default=100, help="lambdas of the path cases")
ap.add_argument("--path-problems", nargs="*", default=["news20"],
                help="problems that also get a path case (lambda_max down to lambda_max/100)")
args = ap.parse_args()
tessera = os.path.abspath(args.tessera)
problem_tool = os.path.join(os.path.dirname(os.path.dirname(tessera)), "bench", "lasso_problem")
here = os.path.dirname(os.path.abspath(__file__))
skglm = os.environ.get("SKGLM", "")
if skglm and not os.path.isdir(os.path.join(skglm, "skglm")):
    raise SystemExit(f"SKGLM={skglm} is not skglm's source directory")
work = tempfile.TemporaryDirectory(prefix="tessera-lasso-")
RELATIVE = 1e-6
d = args.data_dir
PROBLEMS = {
    "cpusmall": (["--in", f"{d}/lasso/cpusmall/cpusmall.csv.gz", "--response", "y"], True),
    "arcene": (["--in", f"{d}/lasso/arcene/arcene.libsvm.gz"], True),
    "golub": (["--in", f"{d}/lasso/golub/golub.csv.gz", "--response", "y"], True),
    "news20": (["--in", f"{d}/news20-libsvm/news20.libsvm.gz", "--class", "1"], False),
    "synthetic": (["--synthetic", "10000x100000", "--density", "0.001", "--support", "100",
                   "--seed", "1"], False),
}
LADDERS = {
    "tessera": ["1e-5", "1e-6", "1e-7", "1e-8", "1e-9", "1e-10", "1e-11"],
    "glmnet": ["1e-5", "1e-7", "1e-9", "1e-11", "1e-13"],
    "skglm": ["1e-3", "1e-4", "1e-5", "1e-6", "1e-8", "1e-10"],
}


def glmnet(prefix, lams, repeats, thresh, dense):
    """(times, objective per lambda): glmnet on the lambdas, a path when there are several."""
    out = subprocess.run(["Rscript", f"{here}/glmnet_fit.R", prefix,
                          ",".join(repr(x) for x in lams), str(repeats), thresh] +
                         (["dense"] if dense else []),
                         check=True, capture_output=True, text=True).stdout.split(",")
    return [float(t) for t in out[1].split(";")], [float(o) for o in out[2].split(";")]


def skglm_runs(prefix, lams, repeats, tols, dense, lambda_max):
    """{tol: (times, objective per lambda)} from one warm process; tol in multiples of
    lambda_max; several lambdas are a path, each solve warm-started from the one before."""
    absolute = ",".join(repr(float(t) * lambda_max) for t in tols)
    out = subprocess.run(["/usr/bin/python3", f"{here}/skglm_fit.py", prefix,
                          ",".join(repr(x) for x in lams), str(repeats), absolute] +
                         (["dense"] if dense else []),
                         check=True, capture_output=True, text=True,
                         env=dict(os.environ, SKGLM=skglm)).stdout
    runs = {}
    for line, tol in zip(out.splitlines(), tols):
        f = line.split(",")
        runs[tol] = ([float(t) for t in f[2].split(";")], [float(o) for o in f[3].split(";")])
    return runs


def tessera_run(prefix, lams, tol, workers):
    """(seconds, objective per lambda): setup plus fit time; several lambdas are a path
    (--path, warm starts), whose lambdas must be the ones given."""
    command = [tessera, "lasso", "--data", prefix + ".libsvm", "--workers", str(workers),
               "--threads", "2", "--tolerance", tol]
    if len(lams) == 1:
        summary = f"{work.name}/summary.csv"
        subprocess.run(command + ["--lambda", repr(lams[0]), "--quiet", "--summary", summary],
                       check=True)
        with open(summary) as f:
            row = next(csv.DictReader(f))
        return float(row["setup_seconds"]) + float(row["seconds"]), [float(row["objective"])]
    path = f"{work.name}/path.csv"
    out = subprocess.run(command + ["--path", str(len(lams)), "--path-ratio",
                                    repr(lams[-1] / lams[0]), "--output", path],
                         check=True, capture_output=True, text=True).stdout
    seconds = float(re.search(r"setup ([0-9.e+-]+) s", out).group(1))
    seconds += sum(float(m) for m in re.findall(r"^lambda .* ([0-9.e+-]+) s  \(", out, re.M))
    with open(path) as f:
        rows = list(csv.DictReader(f))
    got = [float(r["lambda"]) for r in rows]
    if len(got) != len(lams) or any(abs(a - b) > 1e-9 * b for a, b in zip(got, lams)):
        raise SystemExit("tessera's path lambdas differ from the bench's")
    return seconds, [float(r["objective"]) for r in rows]


print(f"{'problem':<10} {'lambda':<8} {'solver':<15} {'tolerance':>10} {'min s':>8} "
      f"{'median s':>9} {'objective':>18} {'vs skglm':>9}")
for problem in args.problems:
    prep, dense = PROBLEMS[problem]
    if "--in" in prep and not os.path.exists(prep[prep.index("--in") + 1]):
        print(f"{problem}: skipped (data not found under {d})")
        continue
    prefix = f"{work.name}/{problem}"
    out = subprocess.run([problem_tool] + prep + ["--out", prefix], check=True,
                         capture_output=True, text=True).stdout.split()
    lambda_max = float(out[out.index("lambda_max") + 1])
    cases = [("/10", [lambda_max / 10]), ("/100", [lambda_max / 100])]
    if problem in args.path_problems:  # glmnet's grid: log-spaced from lambda_max down
        cases.append((f"path{args.path}", [lambda_max * 0.01 ** (k / (args.path - 1))
                                           for k in range(args.path)]))
    for case, lams in cases:
        tight = [tessera_run(prefix, lams, "1e-13", 2)[1],
                 glmnet(prefix, lams, 1, "1e-14", dense)[1]]
        calib_skglm = {}
        if skglm:
            calib_skglm = skglm_runs(prefix, lams, 1, LADDERS["skglm"] + ["1e-12"], dense,
                                     lambda_max)
            tight.append(calib_skglm["1e-12"][1])
        best = [min(t[k] for t in tight) for k in range(len(lams))]
        target = [b * (1 + RELATIVE) for b in best]

        def within(objectives):  # every lambda's objective within 1e-6 of its optimum
            return all(o <= t for o, t in zip(objectives, target))

        # The first tolerance of each ladder that reaches the target (else the tightest).
        def choose(ladder, objective_of):
            for tol in ladder:
                if within(objective_of(tol)):
                    return tol
            return ladder[-1]

        chosen = {
            "tessera": choose(LADDERS["tessera"], lambda t: tessera_run(prefix, lams, t, 2)[1]),
            "glmnet": choose(LADDERS["glmnet"], lambda t: glmnet(prefix, lams, 1, t, dense)[1]),
        }
        if skglm:
            chosen["skglm"] = choose(LADDERS["skglm"], lambda t: calib_skglm[t][1])
        times = {k: [] for k in ("glmnet", "skglm", "tessera w=1", "tessera w=2")}
        objective = {}
        for _ in range(args.repeats):  # interleaved
            t, objective["glmnet"] = glmnet(prefix, lams, 1, chosen["glmnet"], dense)
            times["glmnet"] += t
            if skglm:
                t, objective["skglm"] = skglm_runs(prefix, lams, 1, [chosen["skglm"]], dense,
                                                   lambda_max)[chosen["skglm"]]
                times["skglm"] += t
            for w in (1, 2):
                t, objective[f"tessera w={w}"] = tessera_run(prefix, lams, chosen["tessera"], w)
                times[f"tessera w={w}"].append(t)
        base = statistics.median(times["skglm"]) if skglm else math.nan
        for name, ts in times.items():
            label = f"{problem:<10} {case:<8} {name:<15}"
            if not ts:
                print(f"{label} skipped (set SKGLM=/path/to/skglm)")
                continue
            tol = chosen[name.split()[0]] + ("*lmax" if name == "skglm" else "")
            med = statistics.median(ts)
            # a path shows its largest relative excess over the optimum, one lambda its objective
            shown = (f"{objective[name][0]:>18.12g}" if len(lams) == 1 else
                     f"{max(o / b - 1 for o, b in zip(objective[name], best)):>18.2e}")
            print(f"{label} {tol:>10} {min(ts):>8.4f} {med:>9.4f} {shown} "
                  f"{med / base:>8.2f}x" + ("" if within(objective[name]) else
                                            "  (not within 1e-6)"), flush=True)
        if len(lams) == 1:
            print(f"{'':<10} {'':<8} optimum {best[0]:.12g}; target {target[0]:.12g}", flush=True)
        else:
            print(f"{'':<10} {'':<8} {len(lams)} lambdas from lambda_max to lambda_max/100; "
                  "objective column: the largest relative excess over any lambda's optimum",
                  flush=True)
