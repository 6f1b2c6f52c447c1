#!/usr/bin/env python3
"""Lasso: Tessera (model-parallel, 1 and 2 workers) against glmnet and skglm, in the same run.

Every solver fits (1/2n)||y - b0 - Xb||^2 + lambda ||b||_1 (intercept, no standardization) on
the same files (bench/lasso_problem), at lambda_max/10 and lambda_max/100, and is timed to the
same certified accuracy: the optimum within 1e-6 (relative).

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
      [--problems cpusmall arcene news20 synthetic]
"""
import csv
import math
import os
import statistics
import subprocess
import tempfile

import benchlib

ap = benchlib.parser(__doc__)
ap.add_argument("--problems", nargs="+", default=["cpusmall", "arcene", "news20", "synthetic"])
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
    "news20": (["--in", f"{d}/news20-libsvm/news20.libsvm.gz", "--class", "1"], False),
    "synthetic": (["--synthetic", "10000x100000", "--density", "0.001", "--support", "100",
                   "--seed", "1"], False),
}
LADDERS = {
    "tessera": ["1e-5", "1e-6", "1e-7", "1e-8", "1e-9", "1e-10", "1e-11"],
    "glmnet": ["1e-5", "1e-7", "1e-9", "1e-11", "1e-13"],
    "skglm": ["1e-3", "1e-4", "1e-5", "1e-6", "1e-8", "1e-10"],
}


def glmnet(prefix, lam, repeats, thresh, dense):
    out = subprocess.run(["Rscript", f"{here}/glmnet_fit.R", prefix, repr(lam), str(repeats),
                          thresh] + (["dense"] if dense else []),
                         check=True, capture_output=True, text=True).stdout.split(",")
    return [float(t) for t in out[1].split(";")], float(out[2])


def skglm_runs(prefix, lam, repeats, tols, dense, lambda_max):
    """{tol: (times, objective)} from one warm process; tol in multiples of lambda_max."""
    absolute = ",".join(repr(float(t) * lambda_max) for t in tols)
    out = subprocess.run(["/usr/bin/python3", f"{here}/skglm_fit.py", prefix, repr(lam),
                          str(repeats), absolute] + (["dense"] if dense else []),
                         check=True, capture_output=True, text=True,
                         env=dict(os.environ, SKGLM=skglm)).stdout
    runs = {}
    for line, tol in zip(out.splitlines(), tols):
        f = line.split(",")
        runs[tol] = ([float(t) for t in f[2].split(";")], float(f[3]))
    return runs


def tessera_run(prefix, lam, tol, workers):
    summary = f"{work.name}/summary.csv"
    subprocess.run([tessera, "lasso", "--data", prefix + ".libsvm", "--lambda", repr(lam),
                    "--workers", str(workers), "--threads", "2", "--tolerance", tol, "--quiet",
                    "--summary", summary], check=True)
    with open(summary) as f:
        row = next(csv.DictReader(f))
    return float(row["setup_seconds"]) + float(row["seconds"]), float(row["objective"])


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
    for factor in (10, 100):
        lam = lambda_max / factor
        tight = [tessera_run(prefix, lam, "1e-13", 2)[1],
                 glmnet(prefix, lam, 1, "1e-14", dense)[1]]
        calib_skglm = {}
        if skglm:
            calib_skglm = skglm_runs(prefix, lam, 1, LADDERS["skglm"] + ["1e-12"], dense,
                                     lambda_max)
            tight.append(calib_skglm["1e-12"][1])
        best = min(tight)
        target = best * (1 + RELATIVE)

        # The first tolerance of each ladder that reaches the target (else the tightest).
        def choose(ladder, objective_of):
            for tol in ladder:
                if objective_of(tol) <= target:
                    return tol
            return ladder[-1]

        chosen = {
            "tessera": choose(LADDERS["tessera"], lambda t: tessera_run(prefix, lam, t, 2)[1]),
            "glmnet": choose(LADDERS["glmnet"], lambda t: glmnet(prefix, lam, 1, t, dense)[1]),
        }
        if skglm:
            chosen["skglm"] = choose(LADDERS["skglm"], lambda t: calib_skglm[t][1])
        times = {k: [] for k in ("glmnet", "skglm", "tessera w=1", "tessera w=2")}
        objective = {}
        for _ in range(args.repeats):  # interleaved
            t, objective["glmnet"] = glmnet(prefix, lam, 1, chosen["glmnet"], dense)
            times["glmnet"] += t
            if skglm:
                t, objective["skglm"] = skglm_runs(prefix, lam, 1, [chosen["skglm"]], dense,
                                                   lambda_max)[chosen["skglm"]]
                times["skglm"] += t
            for w in (1, 2):
                t, objective[f"tessera w={w}"] = tessera_run(prefix, lam, chosen["tessera"], w)
                times[f"tessera w={w}"].append(t)
        base = statistics.median(times["skglm"]) if skglm else math.nan
        for name, ts in times.items():
            label = f"{problem:<10} {'/' + str(factor):<8} {name:<15}"
            if not ts:
                print(f"{label} skipped (set SKGLM=/path/to/skglm)")
                continue
            tol = chosen[name.split()[0]] + ("*lmax" if name == "skglm" else "")
            reached = objective[name] <= target
            med = statistics.median(ts)
            print(f"{label} {tol:>10} {min(ts):>8.4f} {med:>9.4f} {objective[name]:>18.12g} "
                  f"{med / base:>8.2f}x" + ("" if reached else "  (not within 1e-6)"),
                  flush=True)
        print(f"{'':<10} {'':<8} optimum {best:.12g}; target {target:.12g}", flush=True)
