#!/usr/bin/env python3
"""Matrix factorization: Tessera against LIBMF, whole process against whole process.

Both tools read the same training and test files, train rank k for 20 epochs (iterations) with
the same L2 weight on 2 threads, and evaluate the training and the test RMSE after every epoch
(LIBMF: `mf-train -p test`; Tessera: `tessera mf --test`), so both do the same validation work.

  wall s      the whole process, from its start to its exit (reading, building, training,
              validating, writing the model), measured by this script around the process.
  to target   seconds from the process's start to the first epoch line whose test RMSE is at
              most the final test RMSE of the LIBMF run of the same repeat: each line of either
              tool is stamped as it arrives on the pipe (both flush a line per epoch). The
              median over the repeats that got there; "k/n reached" says how many did.
  peak RSS    of the process (GNU time's %M around both alike).
  repeats     --repeats rounds, each running LIBMF and then Tessera (interleaved); min and
              median; ratios are Tessera's median over LIBMF's.

Data: MovieLens-100K u1.base/u1.test, Jester (every fifth rating held out) and a seeded
MovieLens-style synthetic set of 10 M ratings (bench/ratings_problem: power-law degrees, a true
rank-10 model plus noise, every tenth rating held out). LIBMF is not a Debian package: build
github.com/cjlin1/libmf by hand outside this repository (`make`) and give LIBMF=/path/to/mf-train,
else it is skipped and only Tessera's figures are printed.

  LIBMF=/path/to/mf-train /usr/bin/python3 bench/mf_bench.py [--repeats 5]
      [--sets ml jester synthetic] [--ranks 40 100] [--tessera-args "--algorithm sgd"]
"""
import os
import re
import shlex
import statistics
import subprocess
import tempfile
import time

import benchlib

ap = benchlib.parser(__doc__)
ap.add_argument("--sets", nargs="+", default=["ml", "jester", "synthetic"])
ap.add_argument("--ranks", nargs="+", type=int, default=[40, 100])
ap.add_argument("--epochs", type=int, default=20)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--synthetic-ratings", type=int, default=10_000_000)
ap.add_argument("--tessera-args", default="", help="extra flags for tessera mf")
args = ap.parse_args()
tessera = os.path.abspath(args.tessera)
generator = os.path.join(os.path.dirname(os.path.dirname(tessera)), "bench", "ratings_problem")
libmf = os.environ.get("LIBMF", "")
if libmf and not os.access(libmf, os.X_OK):
    raise SystemExit(f"LIBMF={libmf} is not an executable mf-train")
work = tempfile.TemporaryDirectory(prefix="tessera-mf-")
w = work.name
d = args.data_dir
LAMBDA = {"ml": 0.1, "jester": 0.1, "synthetic": 0.05}


def prepare(name):
    """Writes w/name.train and w/name.test ("user item rating" lines); False if data is missing."""
    if name == "ml":
        base = f"{d}/movielens-100k/u1.base.gz"
        if not os.path.exists(base):
            return False
        for part in ("base", "test"):
            out = "train" if part == "base" else "test"
            subprocess.run(f"zcat {d}/movielens-100k/u1.{part}.gz | cut -f1-3 > {w}/ml.{out}",
                           shell=True, check=True)
        return True
    if name == "jester":
        return os.path.exists(benchlib.split_jester(d, w))
    subprocess.run([generator, "--ratings", str(args.synthetic_ratings), "--seed", "1", "--out",
                    f"{w}/synthetic"], check=True, capture_output=True)
    return True


def timed(command, pattern):
    """Runs `command` under GNU time; returns (wall seconds, [(seconds since start, test RMSE)]
    for every line matching `pattern` (group 1: the test RMSE), peak RSS MiB)."""
    rss_file = f"{w}/rss"
    start = time.perf_counter()
    p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file] + command,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
    epochs = []
    for line in p.stdout:
        m = re.search(pattern, line)
        if m:
            epochs.append((time.perf_counter() - start, float(m.group(1))))
    if p.wait() != 0:
        raise SystemExit(f"failed: {shlex.join(command)}")
    wall = time.perf_counter() - start
    with open(rss_file) as f:
        rss = int(f.read().split()[-1]) / 1024
    return wall, epochs, rss


def run_libmf(name, rank, lam):
    return timed([libmf, "-k", str(rank), "-l2", str(lam), "-t", str(args.epochs), "-s",
                  str(args.threads), "-p", f"{w}/{name}.test", f"{w}/{name}.train",
                  f"{w}/libmf.model"],
                 r"^\s*\d+\s+[0-9.]+\s+([0-9.]+)\s")


def run_tessera(name, rank, lam):
    return timed([tessera, "mf", "--train", f"{w}/{name}.train", "--test", f"{w}/{name}.test",
                  "--rank", str(rank), "--lambda", str(lam), "--epochs", str(args.epochs),
                  "--workers", str(args.threads), "--threads", str(args.threads),
                  "--output", f"{w}/tessera.model"] + shlex.split(args.tessera_args),
                 r"^epoch\s+\d+\s+train RMSE [0-9.]+\s+test RMSE ([0-9.]+)")


def to_target(epochs, target):
    for seconds, rmse in epochs:
        if rmse <= target:
            return seconds
    return None


def stats(values):
    return min(values), statistics.median(values)


print(f"{'data':<10} {'rank':>4} {'tool':<8} {'wall min':>9} {'wall med':>9} {'to target med':>14} "
      f"{'test RMSE':>10} {'RSS MiB':>8} {'wall vs LIBMF':>14} {'to target vs LIBMF':>19}")
for name in args.sets:
    if not prepare(name):
        print(f"{name}: skipped (data not found under {d})")
        continue
    ratings = sum(1 for _ in open(f"{w}/{name}.train"))
    for rank in args.ranks:
        lam = LAMBDA[name]
        runs = {"libmf": [], "tessera": []}
        for _ in range(args.repeats):  # interleaved
            if libmf:
                runs["libmf"].append(run_libmf(name, rank, lam))
            runs["tessera"].append(run_tessera(name, rank, lam))
        # Each repeat's target: the final test RMSE of that repeat's LIBMF run.
        targets = [r[1][-1][1] for r in runs["libmf"]]
        base = {}
        for tool in ("libmf", "tessera"):
            if not runs[tool]:
                print(f"{name:<10} {rank:>4} {tool:<8} skipped (set LIBMF=/path/to/mf-train)")
                continue
            wall_min, wall_med = stats([r[0] for r in runs[tool]])
            reach = [to_target(r[1], t) for r, t in zip(runs[tool], targets)]
            reached = [t for t in reach if t is not None]
            reach_med = statistics.median(reached) if reached else None
            final = statistics.median(r[1][-1][1] for r in runs[tool])
            rss = statistics.median(r[2] for r in runs[tool])
            if tool == "libmf":
                base = {"wall": wall_med, "reach": reach_med}
            ratio_wall = f"{wall_med / base['wall']:.2f}x" if base else "-"
            ratio_reach = (f"{reach_med / base['reach']:.2f}x" if base and reach_med and
                           base["reach"] else "-")
            if not targets:
                shown_reach = "-"
            elif reach_med is None:
                shown_reach = f"0/{len(reach)} reached"
            else:
                shown_reach = (f"{reach_med:.3f}" + ("" if len(reached) == len(reach) else
                                                     f" {len(reached)}/{len(reach)}"))
            print(f"{name:<10} {rank:>4} {tool:<8} {wall_min:>9.3f} {wall_med:>9.3f} "
                  f"{shown_reach:>14} {final:>10.4f} {rss:>8.1f} {ratio_wall:>14} "
                  f"{ratio_reach:>19}", flush=True)
        print(f"{'':<10} {'':>4} {ratings} training ratings, lambda {lam}, {args.epochs} epochs, "
              f"{args.threads} threads" +
              (f"; targets: LIBMF's final test RMSE per repeat, median "
               f"{statistics.median(targets):.4f}" if targets else ""), flush=True)
