#!/usr/bin/env python3
"""What sealing every frame (AES-256-GCM) costs a multi-process run: the same fits under
`tessera launch -n 2`, with sealed frames (the default) and with --insecure, interleaved. Prints
the fit time (the summary's `seconds`: setup excluded), min and median over the repeats, the
median ratio sealed / insecure, and the bytes moved (the same both ways). Cases: the
data-parallel Lasso on news20 (proximal gradient: every clock moves the whole coefficient
vector), data-parallel MF on MovieLens-100K u1, and rotation-SGD MF on Jester (carried H
blocks).

  /usr/bin/python3 bench/sealing_bench.py [--repeats 5] [--tessera build/release/tools/tessera]
"""
import csv
import os
import statistics
import subprocess
import sys
import tempfile

import benchlib

args = benchlib.parser(__doc__).parse_args()
tessera = os.path.abspath(args.tessera)
d = args.data_dir
work = tempfile.TemporaryDirectory(prefix="tessera-sealing-")
jester = benchlib.split_jester(d, work.name)

cases = [
    ("Lasso news20 DP bsp", f"{d}/news20-libsvm/news20.libsvm.gz",
     f"lasso --data {d}/news20-libsvm/news20.libsvm.gz --lambda-ratio 0.1 --mode data-parallel "
     "--servers 1 --workers 2 --consistency bsp"),
    ("MF ML-100K DP r40", f"{d}/movielens-100k/u1.base.gz",
     f"mf --train {d}/movielens-100k/u1.base.gz --test {d}/movielens-100k/u1.test.gz --rank 40 "
     "--epochs 10 --mode data-parallel --servers 1 --workers 2"),
    ("MF Jester sgd r100", jester,
     f"mf --algorithm sgd --train {work.name}/jester.train --test {work.name}/jester.test "
     "--rank 100 --epochs 10 --workers 2"),
]


def run(command, insecure):
    summary = os.path.join(work.name, "s.csv")
    cmd = [tessera, "launch", "-n", "2", "--", tessera] + command.split() + [
        "--quiet", "--summary", summary] + (["--insecure"] if insecure else [])
    subprocess.run(cmd, check=True)
    with open(summary) as f:
        row = next(csv.DictReader(f))
    return float(row["seconds"]), int(row["bytes"])


print(f"{'case':20} {'frames':9} {'min s':>8} {'median s':>9} {'sealed/insecure':>16} "
      f"{'MB moved':>9}")
for name, data, command in cases:
    if not os.path.exists(data):
        print(f"{name}: {data} missing, skipped", file=sys.stderr)
        continue
    times = {False: [], True: []}
    moved = {}
    for _ in range(args.repeats):
        for insecure in (False, True):
            s, b = run(command, insecure)
            times[insecure].append(s)
            moved[insecure] = b
    ratio = statistics.median(times[False]) / statistics.median(times[True])
    for insecure in (False, True):
        print(f"{name:20} {'insecure' if insecure else 'sealed':9} {min(times[insecure]):8.3f} "
              f"{statistics.median(times[insecure]):9.3f} "
              f"{'' if insecure else f'{ratio:.2f}':>16} {moved[insecure] / 1e6:9.1f}")
