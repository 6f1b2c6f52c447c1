#!/usr/bin/env python3
"""skglm side of bench/lasso_bench.py: the same problem Tessera fits,
  (1/2n)||y - b0 - Xb||^2 + lambda ||b||_1   (no standardization, intercept fitted),
solved by skglm's AndersonCD (working sets, Anderson extrapolation) through its solver API in
this warm process: one untimed run first (numba compiles the solver), then `repeats` timed runs
for each tolerance given. Several lambdas (comma-separated, decreasing) are a path: each solve
warm-started from the coefficients of the one before (w_init, Xw_init). Prints per tolerance:
  skglm,<tol>,<seconds per run ;-separated>,<objective per lambda ;-separated>,<nonzeros at the last>
usage: SKGLM=/path/to/skglm skglm_fit.py PREFIX LAMBDA[,LAMBDA...] REPEATS TOL[,TOL...] [dense]
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

prefix, lams, repeats, tols = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lams = [float(v) for v in lams.split(",")]
x = scipy.io.mmread(prefix + ".mtx").tocsc()
if len(sys.argv) > 5 and sys.argv[5] == "dense":
    x = np.asfortranarray(x.toarray())
y = np.loadtxt(prefix + ".y")


def solve(tol):
    """The seconds of the whole path and each lambda's coefficients (with the intercept last)."""
    solver = AndersonCD(tol=tol, fit_intercept=True)
    ws, w, xw = [], None, None
    start = time.perf_counter()
    for lam in lams:
        w = solver.solve(x, y, Quadratic(), L1(lam), w_init=w, Xw_init=xw)[0]
        xw = x @ w[:-1] + w[-1]
        ws.append(w.copy())
    return time.perf_counter() - start, ws


solve(float(tols.split(",")[0]))  # numba's compilation: not timed
for tol in (float(t) for t in tols.split(",")):
    times = []
    for _ in range(repeats):
        seconds, ws = solve(tol)
        times.append(seconds)
    objectives = []
    for lam, w in zip(lams, ws):
        b, b0 = w[:-1], w[-1]
        r = y - b0 - x @ b
        objectives.append(r @ r / (2 * len(y)) + lam * np.abs(b).sum())
    print("skglm,%g,%s,%s,%d" % (tol, ";".join("%.6f" % t for t in times),
                                 ";".join("%.17g" % o for o in objectives),
                                 np.count_nonzero(ws[-1][:-1])), flush=True)
