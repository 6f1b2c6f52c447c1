#!/usr/bin/env python3
"""How the consistency models cope with a straggler, and what staleness they really have.

Data-parallel SGD for MF on MovieLens-100K u1 (rank 40, lambda 0.1, 20 epochs, batches of 16
users, 1 server, one process), every model run in turn for each repeat (interleaved), each a
whole `tessera mf` process:

1. Straggler: worker 0 takes 3x as long per batch (`--straggler 0:3`). For bsp, sbp:1 and ssp:2:
   the time until the test RMSE (the trace's per-epoch figure) first reaches the target, which
   is bsp's final test RMSE plus 0.001 (the same target for every model), min and median over
   the repeats; and the share of reads that were stale.
2. Staleness: ssp:2 against essp:2 with no straggler, 2 and 4 workers: each one's histogram of how many clocks
   stale its reads were (summed over the repeats) and its time to the same target.

The time is the trace's `seconds` at that epoch (the fit's own clock: reading the data and
setting up are excluded, the same for every model).

  /usr/bin/python3 bench/consistency_bench.py [--repeats 5] [--tessera build/release/tools/tessera]
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
train, test = f"{d}/movielens-100k/u1.base.gz", f"{d}/movielens-100k/u1.test.gz"
if not os.path.exists(train):
    sys.exit(f"skipped: MovieLens-100K not found under {d}")
work = tempfile.TemporaryDirectory(prefix="tessera-consistency-")
# Batches of 16 users (a clock each): about 30 clocks an epoch with 2 workers, so the models'
# bounds (2 clocks) are small against an epoch.
base = (f"mf --train {train} --test {test} --rank 40 --lambda 0.1 --epochs 20 "
        "--mode data-parallel --servers 1 --batch-size 16 --quiet")


def run(consistency, straggler, workers):
    trace, summary = f"{work.name}/trace.csv", f"{work.name}/summary.csv"
    cmd = [tessera] + base.split() + ["--workers", str(workers), "--consistency", consistency,
                                      "--trace", trace, "--summary", summary]
    if straggler:
        cmd += ["--straggler", "0:3"]
    subprocess.run(cmd, check=True)
    with open(trace) as f:
        epochs = [(float(r["seconds"]), float(r["test_rmse"])) for r in csv.DictReader(f)]
    with open(summary) as f:
        s = next(csv.DictReader(f))
    bins = {}
    for table in filter(None, s["staleness"].split("|")):
        for pair in table.split("=", 1)[1].split(";"):
            clocks, reads = pair.split(":")
            bins[int(clocks)] = bins.get(int(clocks), 0) + int(reads)
    return epochs, bins


def time_to(epochs, target):
    for seconds, rmse in epochs:
        if rmse <= target:
            return seconds
    return float("inf")  # not reached


def stale_share(bins):
    total = sum(bins.values())
    return sum(v for k, v in bins.items() if k > 0) / total if total else 0.0


def experiment(title, models, straggler, workers):
    runs = {m: [] for m in models}
    for _ in range(args.repeats):
        for m in models:  # interleaved
            runs[m].append(run(m, straggler, workers))
    # The target: the first model's final test RMSE (median over the repeats) + 0.001.
    target = statistics.median(r[0][-1][1] for r in runs[models[0]]) + 0.001
    print(f"\n{title}: time to test RMSE {target:.4f} "
          f"({models[0]}'s final + 0.001), {args.repeats} repeats")
    print(f"{'model':<10} {'min s':>8} {'median s':>9} {'vs ' + models[0]:>9} "
          f"{'final RMSE':>11} {'stale reads':>12}  staleness (clocks: reads, all repeats)")
    first = None
    for m in models:
        times = [time_to(e, target) for e, _ in runs[m]]
        med = statistics.median(times)
        if first is None:
            first = med
        bins = {}
        for _, b in runs[m]:
            for k, v in b.items():
                bins[k] = bins.get(k, 0) + v
        hist = ", ".join(f"{k}: {v}" for k, v in sorted(bins.items()))
        final = statistics.median(e[-1][1] for e, _ in runs[m])
        missed = sum(t == float("inf") for t in times)
        if med == float("inf"):
            timing = f"{'not reached in ' + str(missed) + ' of ' + str(len(times)):>28}"
        else:
            timing = f"{min(times):>8.3f} {med:>9.3f} {med / first:>8.2f}x"
        print(f"{m:<10} {timing} {final:>11.4f} {100 * stale_share(bins):>11.1f}%  {hist}")


experiment("Straggler (worker 0 of 4 3x slower)", ["bsp", "sbp:1", "ssp:2"], True, 4)
experiment("No straggler, 2 workers", ["ssp:2", "essp:2"], False, 2)
experiment("No straggler, 4 workers", ["ssp:2", "essp:2"], False, 4)
