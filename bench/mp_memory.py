#!/usr/bin/env python3
"""The distributed model: model-parallel LDA (news20, K = 1000) and rotation-SGD MF (Jester at
rank 100, and a 10M-rating synthetic set made by bench/ratings_problem at rank 40 and 100) with
4 workers in 1, 2 and 4 processes (tessera launch, TCP on loopback). Prints,
per process count, the training time (the summary's `seconds`: setup excluded) as min and
median over interleaved repeats, the bytes moved, and the peak RSS of every process (from
/usr/bin/time, whole process: reading the data, training, gathering the model at process 0
and writing it), largest first. Every run writes its model, as a user's would.

  /usr/bin/python3 bench/mp_memory.py [--repeats 5] [--tessera build/release/tools/tessera]
      [--ratings-problem build/release/bench/ratings_problem] [--cases LDA,Jester,synthetic]
"""
import csv
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import benchlib

ap = benchlib.parser(__doc__)
ap.add_argument("--ratings-problem", default="build/release/bench/ratings_problem")
ap.add_argument("--cases", default="LDA,Jester,synthetic",
                help="comma-separated words; a case runs when its name contains one")
args = ap.parse_args()
tessera = os.path.abspath(args.tessera)
d = args.data_dir
work = tempfile.mkdtemp(prefix="tessera-mp-memory-")
jester = benchlib.split_jester(d, work)

# A MovieLens-10M-sized synthetic set: 70,000 users, 10,000 items, 10M ratings (a tenth held
# out), power-law degrees, a rank-10 true model plus noise.
synthetic = f"{work}/ml10m"
if "synthetic" in args.cases:
    subprocess.run([os.path.abspath(args.ratings_problem), "--users", "70000", "--items", "10000",
                    "--ratings", "10000000", "--seed", "1", "--out", synthetic], check=True,
                   stdout=subprocess.DEVNULL)

cases = [
    ("LDA news20 K1000", os.path.join(d, "news20-libsvm/news20.libsvm.gz"),
     f"lda --corpus {d}/news20-libsvm/news20.libsvm.gz --topics 1000 --iterations 5 "
     f"--workers 4 --topics-out {work}/topics"),
    ("MF Jester r100 sgd", jester,
     f"mf --algorithm sgd --train {work}/jester.train --test {work}/jester.test --rank 100 "
     f"--epochs 10 --workers 4"),
] + [
    (f"MF synthetic r{rank} sgd", f"{synthetic}.train",
     f"mf --algorithm sgd --train {synthetic}.train --test {synthetic}.test --rank {rank} "
     f"--epochs 5 --workers 4")
    for rank in (40, 100)
]
cases = [c for c in cases if any(w in c[0] for w in args.cases.split(","))]


def run(processes, command):
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        summary = os.path.join(tmp, "s.csv")
        inner = (f"/usr/bin/time -f %M -o {tmp}/rss.$TESSERA_RANK {tessera} {command} --quiet "
                 f"--summary {summary} --output {tmp}/model")
        if processes == 1:
            cmd = ["sh", "-c", inner.replace("$TESSERA_RANK", "0")]
        else:
            cmd = [tessera, "launch", "-n", str(processes), "--", "sh", "-c", inner]
        subprocess.run(cmd, check=True)
        with open(summary) as f:
            row = next(csv.DictReader(f))
        rss = sorted((int(open(p).read().split()[-1]) / 1024 for p in glob.glob(f"{tmp}/rss.*")),
                     reverse=True)
        return float(row["seconds"]), int(row["bytes"]), rss


print(f"{'case':22} {'procs':>5} {'min s':>8} {'median s':>8} {'MB moved':>9} "
      f"{'peak RSS MiB per process (largest first)':>42} {'largest / 1 proc':>16}")
for name, data, command in cases:
    if not os.path.exists(data):
        print(f"{name}: {data} missing, skipped", file=sys.stderr)
        continue
    times = {1: [], 2: [], 4: []}
    moved, rss = {}, {}
    for _ in range(args.repeats):
        for p in (1, 2, 4):
            s, b, r = run(p, command)
            times[p].append(s)
            moved[p] = b
            rss[p] = r
    for p in (1, 2, 4):
        per = " ".join(f"{x:.0f}" for x in rss[p])
        print(f"{name:22} {p:5d} {min(times[p]):8.2f} {statistics.median(times[p]):8.2f} "
              f"{moved[p] / 1e6:9.1f} {per:>42} {rss[p][0] / rss[1][0]:16.2f}")
shutil.rmtree(work)
