#!/usr/bin/env python3
"""The same Lasso fit, MF and LDA training in one process and across 2 and 3 processes
(tessera launch, TCP on loopback): Lasso model-parallel and data-parallel, MF and LDA
data-parallel. Prints the fit time (setup excluded), its min and
median over interleaved repeats, and the ratio to the one-process run; objectives are printed
to show the runs solve the same problem.

  /usr/bin/python3 bench/multiprocess_bench.py [--repeats 5] [--tessera build/release/tools/tessera]
"""
import csv
import os
import statistics
import subprocess
import sys
import tempfile

import benchlib

args = benchlib.parser(__doc__).parse_args()

d = args.data_dir
# (name, command and its data flags, modes: [(mode, flags)])
lasso_modes = [
    ("model-parallel", "--workers 2"),
    ("data-parallel", "--mode data-parallel --servers 1 --workers 2 --consistency bsp"),
]
cases = [
    ("cpusmall 8192x12", f"lasso --data {d}/lasso/cpusmall/cpusmall.csv.gz "
     "--lambda-ratio 0.001 --standardize", lasso_modes),
    ("news20 19996x1.35M", f"lasso --data {d}/news20-libsvm/news20.libsvm.gz --lambda-ratio 0.05",
     lasso_modes),
    ("MF ML-100K u1 r10", f"mf --train {d}/movielens-100k/u1.base.gz "
     f"--test {d}/movielens-100k/u1.test.gz --rank 10 --epochs 10",
     [("data-parallel", "--mode data-parallel --servers 1 --workers 2")]),
    ("LDA KOS K50", f"lda --corpus {d}/uci-bow-kos/docword.kos.txt.gz "
     f"--vocab {d}/uci-bow-kos/vocab.kos.txt.gz --topics 50 --iterations 10 --no-files",
     [("data-parallel", "--mode data-parallel --servers 1 --workers 2")]),
]


def run(processes, command, mode_flags):
    with tempfile.TemporaryDirectory() as tmp:
        summary = os.path.join(tmp, "s.csv")
        cmd = [args.tessera]
        if processes > 1:
            cmd += ["launch", "-n", str(processes), "--", args.tessera]
        cmd += command.split() + ["--quiet", "--summary", summary] + mode_flags.split()
        subprocess.run(cmd, check=True)
        with open(summary) as f:
            row = next(csv.DictReader(f))
        return float(row["seconds"]), float(row["objective"]), int(row["bytes"])


print(f"{'data':20} {'mode':15} {'procs':>5} {'min s':>9} {'median s':>9} {'x 1 proc':>9} "
      f"{'objective':>18} {'MB moved':>9}")
for name, command, modes in cases:
    data = command.split()[2]
    if not os.path.exists(data):
        print(f"{name}: {data} missing, skipped", file=sys.stderr)
        continue
    for mode, flags in modes:
        times = {1: [], 2: [], 3: []}
        objective = {}
        moved = {}
        for _ in range(args.repeats):
            for p in (1, 2, 3):
                s, obj, b = run(p, command, flags)
                times[p].append(s)
                objective[p] = obj
                moved[p] = b
        base = statistics.median(times[1])
        for p in (1, 2, 3):
            med = statistics.median(times[p])
            print(f"{name:20} {mode:15} {p:5d} {min(times[p]):9.3f} {med:9.3f} "
                  f"{med / base:9.2f} {objective[p]:18.12g} {moved[p] / 1e6:9.1f}")
