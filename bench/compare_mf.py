#!/usr/bin/env python3
"""Matrix factorization, model-parallel against data-parallel, with `tessera compare mf`.

Each repeat runs `tessera compare mf` once per case: the model-parallel and the data-parallel
fit of the same data, rank, λ, epochs and workers, each in its own process, one after the other
(so the two modes are interleaved over the repeats). Per mode:

  run s        the fit's clock (setup excluded), as `tessera compare` reports it; min / median.
  test RMSE    after the last epoch; median.
  to target s  the time from the fit's start to the first epoch whose test RMSE is at most the
               worse of the two modes' final test RMSEs of the same repeat (both reach it), from
               compare's per-epoch trace; median. "vs MP" divides it by the model-parallel one
               of the same repeat; median.
  MB, peak MiB message payload moved and the process's peak RSS; median.

Cases: MovieLens-100K u1 under the model-parallel algorithms ccd++ and sgd (rotation SGD, the
default), and Jester with every fifth rating held out under sgd; rank 40, λ 0.1, 20 epochs,
2 workers. The data-parallel side is always SGD with the same adagrad steps (its batches of
users pull and push the rows of H they touch), under the consistency model given (bsp unless
--consistency).

  /usr/bin/python3 bench/compare_mf.py [--repeats 5] [--consistency bsp]
"""
import csv
import gzip
import os
import shutil
import statistics
import subprocess
import tempfile

import benchlib

ap = benchlib.parser(__doc__)
ap.add_argument("--consistency", default="bsp")
ap.add_argument("--epochs", type=int, default=20)
args = ap.parse_args()
MODES = ("model-parallel", "data-parallel")


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def compare(prefix, train, test, algorithm):
    subprocess.run([args.tessera, "compare", "mf", "--train", train, "--test", test,
                    "--workers", "2", "--rank", "40", "--lambda", "0.1",
                    "--budget-rounds", str(args.epochs), "--algorithm", algorithm,
                    "--consistency", args.consistency, "--out", prefix],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = {r["mode"]: r for r in read_rows(prefix + "-summary.csv")}
    trace = {m: [(float(r["seconds"]), float(r["test_rmse"]))
                 for r in read_rows(prefix + ".csv") if r["mode"] == m] for m in MODES}
    target = max(float(summary[m]["test_rmse"]) for m in MODES)
    out = {}
    for m in MODES:
        reach = next(s for s, rmse in trace[m] if rmse <= target)  # the last epoch at worst
        out[m] = {"run": float(summary[m]["seconds"]), "rmse": float(summary[m]["test_rmse"]),
                  "to": reach, "mb": float(summary[m]["bytes"]) / 1e6,
                  "rss": float(summary[m]["peak_rss_bytes"]) / 2**20, "target": target}
    return out


def main():
    work = tempfile.mkdtemp()
    try:
        cases = []
        ml = os.path.join(args.data_dir, "movielens-100k")
        if os.path.exists(os.path.join(ml, "u1.base.gz")):
            for name in ("u1.base", "u1.test"):
                with gzip.open(os.path.join(ml, name + ".gz"), "rb") as f, \
                        open(os.path.join(work, name), "wb") as o:
                    shutil.copyfileobj(f, o)
            for algorithm in ("ccd++", "sgd"):
                cases.append(("ML-100K u1", algorithm, f"{work}/u1.base", f"{work}/u1.test"))
        else:
            print(f"MovieLens-100K: skipped (no {ml}/u1.base.gz)")
        if os.path.exists(benchlib.split_jester(args.data_dir, work)):
            cases.append(("Jester 80/20", "sgd", f"{work}/jester.train", f"{work}/jester.test"))
        else:
            print("Jester: skipped (no jester5k/ratings.tsv.gz)")
        runs = [[] for _ in cases]
        for r in range(args.repeats):
            for c, (_, algorithm, train, test) in enumerate(cases):
                runs[c].append(compare(f"{work}/compare{c}", train, test, algorithm))
        print(f"tessera compare mf: rank 40, lambda 0.1, {args.epochs} epochs, 2 workers, "
              f"data-parallel under {args.consistency}; {args.repeats} repeats")
        print(f"{'data':13} {'MP algorithm':12} {'mode':15} {'run s min/med':>14} "
              f"{'test RMSE':>9} {'to target s':>11} {'vs MP':>6} {'MB':>8} {'peak MiB':>8}")
        for c, (data, algorithm, _, _) in enumerate(cases):
            for m in MODES:
                v = [x[m] for x in runs[c]]
                ratio = statistics.median(x[m]["to"] / x["model-parallel"]["to"]
                                          for x in runs[c])
                run = [x["run"] for x in v]
                print(f"{data:13} {algorithm:12} {m:15} {min(run):6.3f}/{statistics.median(run):6.3f}"
                      f" {statistics.median(x['rmse'] for x in v):9.4f}"
                      f" {statistics.median(x['to'] for x in v):11.3f} {ratio:5.2f}x"
                      f" {statistics.median(x['mb'] for x in v):8.1f}"
                      f" {statistics.median(x['rss'] for x in v):8.1f}")
            targets = statistics.median(x["model-parallel"]["target"] for x in runs[c])
            print(f"{'':13} target: the worse final test RMSE of each repeat, median {targets:.4f}")
    finally:
        shutil.rmtree(work)


main()
