#!/usr/bin/env python3
"""Managed communication on the parameter server: bytes moved at equal objective, per feature.

Each data-parallel job runs with `--communication` set to each feature set in turn for every
repeat (interleaved):

  none             every value as a double, every key list in full
  sparse           values as their nonzero entries and positions when that is smaller
  keys             a key list the shard has seen from the worker as its hash
  f32              values as 32-bit floats (lossy)
  sparse,keys      the default (lossless)
  sparse,keys,f32  all of the above
  ...,lz4 / zstd   the values (and positions) compressed as well, by LZ4 or Zstandard

Jobs (one server, two workers, in one process):
  LDA KOS K=100     data-parallel LDA, ssp:1, 30 sweeps
  MF ML-100K r40    data-parallel SGD on u1.base, bsp, 20 epochs
  Lasso news20 bsp  news20 class 1 at lambda_max/10 (bench/lasso_problem), FISTA under bsp
  Lasso news20 ssp:2  the same problem, the delayed block proximal gradient under ssp:2, with
                      and without its KKT filter (--no-kkt-filter)

"MB" is the message payload the workers sent and received (what `--summary` calls bytes) up
to the first evaluation whose objective reaches the target: for Lasso the optimum within 1e-6
(relative; a tight model-parallel solve in the same run), for LDA and MF the worst final
objective over all runs of the job (every run reaches it; LDA under ssp:1 varies from run to
run). "s" is the fit's clock to that evaluation (setup excluded). Median and min over the
repeats; "cut" is none's median MB over this one's.

  /usr/bin/python3 bench/communication_bench.py [--repeats 5] [--jobs lda mf lasso]
"""
import csv
import math
import os
import statistics
import subprocess
import tempfile

import benchlib

ap = benchlib.parser(__doc__)
ap.add_argument("--jobs", nargs="+", default=["lda", "mf", "lasso"])
args = ap.parse_args()
tessera = os.path.abspath(args.tessera)
problem_tool = os.path.join(os.path.dirname(os.path.dirname(tessera)), "bench", "lasso_problem")
work = tempfile.TemporaryDirectory(prefix="tessera-comm-")
d = args.data_dir
FEATURES = ["none", "sparse", "keys", "f32", "sparse,keys", "sparse,keys,f32",
            "sparse,keys,lz4", "sparse,keys,zstd", "sparse,keys,f32,zstd"]
# The significantly-modified filter, for the job whose workers push changes to rows they read
# (MF's item factors); LDA's counts and the Lasso's gradients gain nothing from it.
FILTERED = ["sparse,keys,significant:0.05", "sparse,keys,f32,significant:0.05"]
DP = ["--mode", "data-parallel", "--servers", "1", "--workers", "2", "--quiet"]


# The data-parallel Lasso's KKT filter (on by default), for the block method: off, to see its
# share. A feature set may carry more flags after a space.
UNFILTERED = ["sparse,keys --no-kkt-filter", "sparse,keys,f32 --no-kkt-filter"]


def trace_of(cmd):
    trace = f"{work.name}/trace.csv"
    subprocess.run(cmd + ["--trace", trace], check=True, stdout=subprocess.DEVNULL)
    with open(trace) as f:
        return [(float(r["objective"]), float(r["seconds"]), int(r["bytes"]))
                for r in csv.DictReader(f)]


def at_target(trace, target):
    for objective, seconds, moved in trace:
        if objective <= target:
            return seconds, moved
    return math.nan, math.nan


def jobs():
    kos = f"{d}/uci-bow-kos/docword.kos.txt.gz"
    if "lda" in args.jobs and os.path.exists(kos):
        yield ("LDA KOS K=100", [tessera, "lda", "--corpus", kos, "--topics", "100",
                                 "--iterations", "30", "--no-files"] + DP, None, [])
    ml = f"{d}/movielens-100k"
    if "mf" in args.jobs and os.path.exists(f"{ml}/u1.base.gz"):
        yield ("MF ML-100K r40", [tessera, "mf", "--train", f"{ml}/u1.base.gz", "--test",
                                  f"{ml}/u1.test.gz", "--rank", "40", "--epochs", "20",
                                  "--consistency", "bsp"] + DP, None, FILTERED)
    news = f"{d}/news20-libsvm/news20.libsvm.gz"
    if "lasso" in args.jobs and os.path.exists(news):
        prefix = f"{work.name}/news20"
        out = subprocess.run([problem_tool, "--in", news, "--class", "1", "--out", prefix],
                             check=True, capture_output=True, text=True).stdout.split()
        lam = float(out[out.index("lambda_max") + 1]) / 10
        data = prefix + ".libsvm"
        summary = f"{work.name}/optimum.csv"
        subprocess.run([tessera, "lasso", "--data", data, "--lambda", repr(lam), "--tolerance",
                        "1e-12", "--quiet", "--summary", summary], check=True)
        with open(summary) as f:
            best = float(next(csv.DictReader(f))["objective"])
        base = [tessera, "lasso", "--data", data, "--lambda", repr(lam),
                "--objective-tolerance", "1e-13"] + DP
        yield ("Lasso news20 bsp", base + ["--consistency", "bsp", "--evaluate-every", "5"],
               best * (1 + 1e-6), [])
        yield ("Lasso news20 ssp:2", base + ["--consistency", "ssp:2"], best * (1 + 1e-6),
               UNFILTERED)


for name, cmd, target, extra in jobs():
    features = FEATURES + extra
    traces = {f: [] for f in features}
    for _ in range(args.repeats):
        for f in features:  # interleaved
            communication, *flags = f.split(" ")
            traces[f].append(trace_of(cmd + ["--communication", communication] + flags))
    if target is None:
        target = max(t[-1][0] for runs in traces.values() for t in runs)
        what = f"the worst final objective {target:.10g}"
    else:
        what = f"the optimum within 1e-6, {target:.10g}"
    print(f"\n{name}: to {what} ({args.repeats} repeats)")
    print(f"{'features':<33} {'MB':>9} {'MB min':>9} {'cut':>6} {'s':>7} {'s min':>7} "
          f"{'final objective':>17}")
    none_mb = None
    for f in features:
        reached = [at_target(t, target) for t in traces[f]]
        secs = [r[0] for r in reached]
        mb = [r[1] / 1e6 for r in reached]
        final = statistics.median(t[-1][0] for t in traces[f])
        if any(math.isnan(x) for x in secs):
            print(f"{f:<33} {'not reached':>19}")
            continue
        med = statistics.median(mb)
        none_mb = none_mb or med
        print(f"{f:<33} {med:>9.1f} {min(mb):>9.1f} {none_mb / med:>5.2f}x "
              f"{statistics.median(secs):>7.3f} {min(secs):>7.3f} {final:>17.10g}")
