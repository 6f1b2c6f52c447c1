#!/usr/bin/env python3
"""skglm side of bench/lasso_bench.py: the same problem Tessera fits,
  (1/2n)||y - b0 - Xb||^2 + lambda ||b||_1   (no standardization, intercept fitted),
solved by skglm's AndersonCD (working sets, Anderson extrapolation) through its solver API in
this warm process: one untimed run first (numba compiles the solver), then `repeats` timed runs
for each tolerance given, printing per tolerance:
  skglm,<tol>,<seconds per run ;-separated>,<objective>,<nonzeros>
usage: SKGLM=/path/to/skglm skglm_fit.py PREFIX LAMBDA REPEATS TOL[,TOL...] [dense]
"""
import os
import sys
import time

import numpy as np
import scipy.io

sys.path.insert(0, os.environ["SKGLM"])
from skglm.datafits import Quadratic  # noqa: E402
from skglm.penalties import L1  # noqa: E402
from skglm.solvers import AndersonCD  # noqa: E402

prefix, lam, repeats, tols = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
x = scipy.io.mmread(prefix + ".mtx").tocsc()
if len(sys.argv) > 5 and sys.argv[5] == "dense":
    x = np.asfortranarray(x.toarray())
y = np.loadtxt(prefix + ".y")


def solve(tol):
    solver = AndersonCD(tol=tol, fit_intercept=True)
    start = time.perf_counter()
    w = solver.solve(x, y, Quadratic(), L1(lam))[0]
    return time.perf_counter() - start, w


solve(float(tols.split(",")[0]))  # numba's compilation: not timed
for tol in (float(t) for t in tols.split(",")):
    times = []
    for _ in range(repeats):
        seconds, w = solve(tol)
        times.append(seconds)
    b, b0 = w[:-1], w[-1]
    r = y - b0 - x @ b
    obj = r @ r / (2 * len(y)) + lam * np.abs(b).sum()
    print("skglm,%g,%s,%.17g,%d" % (tol, ";".join("%.6f" % t for t in times), obj,
                                   np.count_nonzero(b)), flush=True)
