#!/usr/bin/python3
"""LDA benchmark: tessera (model-parallel word rotation and data-parallel) against WarpLDA and
gensim, measured side by side in one run.

  /usr/bin/python3 bench/lda_bench.py [--warplda DIR] [--repeats 3] [--quick] [--out DIR]

Part A, speed at equal log-likelihood: UCI KOS and news20, K = 100 and 1000, 2 threads (and 1
with --threads 1,2), 200 iterations. Each configuration runs tessera (model-parallel, `repeats`
times) and WarpLDA (if DIR holds its `warplda` and `format` binaries; else "skipped"),
interleaved, and tessera data-parallel (once, capped at 30 s). `tessera` is the default
sampler (`--mh-steps 2`: two cycles of a doc and a word proposal per token); `tessera mh1` does
one cycle, WarpLDA's default work per token (`-mh 1`), so its tokens/s compare like with like. The target is WarpLDA's median
final log-likelihood after the 200 iterations (tessera's when WarpLDA is skipped). Reported:
tokens/s; each system's time to the target, interpolated in its trace; `vs WarpLDA` = tessera's
time to the target / WarpLDA's whole sampling time, per repeat pair (< 1: tessera sooner); raw
tokens/s and peak RSS as ratios to WarpLDA's. Times exclude data loading and evaluation for both
(WarpLDA's per-iteration times; tessera's --trace). Min and median over the repeats.

Part B, held-out perplexity vs time against gensim's LdaMulticore (Debian python3-gensim) on
KOS, K = 100, 2 workers: a seeded 10% of the documents held out; perplexity by document
completion (observed = even token positions, held out = odd ones; θ from the observed half:
Gibbs with φ fixed for tessera, gensim's variational inference for gensim), after every
evaluation. Evaluation time is excluded from both clocks.

Writes (to --out, default bench/out) lda_bench.txt (the tables), lda_*.csv (curves), lda_ll.png and
lda_perplexity.png (gnuplot). Needs a release build (build/release/tools/tessera).
"""
import argparse
import csv
import gzip
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESSERA = os.path.join(ROOT, "build", "release", "tools", "tessera")
DATA = os.environ.get("TESSERA_DATA_DIR", os.path.join(ROOT, "..", "shared", "datasets"))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Corpora: (doc -> [(word, count)]) lists, and conversions for the peers.

def read_uci(path):
    docs = {}
    with gzip.open(path, "rt") as f:
        d, w, _ = (int(f.readline()) for _ in range(3))
        for line in f:
            a, b, c = line.split()
            docs.setdefault(int(a) - 1, []).append((int(b) - 1, int(c)))
    return [docs.get(i, []) for i in range(d)], w


def read_libsvm(path):
    docs, vocab = [], 0
    with gzip.open(path, "rt") as f:
        for line in f:
            items = line.split()[1:]
            doc = []
            for it in items:
                i, c = it.split(":")
                doc.append((int(i) - 1, int(float(c))))
                vocab = max(vocab, int(i))
            docs.append(doc)
    return docs, vocab


def write_uci(path, docs, vocab):
    nnz = sum(len(d) for d in docs)
    with open(path, "w") as f:
        f.write(f"{len(docs)}\n{vocab}\n{nnz}\n")
        for i, d in enumerate(docs):
            for w, c in sorted(d):
                f.write(f"{i + 1} {w + 1} {c}\n")


def write_yahoo(path, docs):
    """WarpLDA's input: 'id id word word ...' (words named w<id>)."""
    with open(path, "w") as f:
        for i, d in enumerate(docs):
            words = []
            for w, c in d:
                words.extend([f"w{w}"] * c)
            if words:
                f.write(f"{i} {i} " + " ".join(words) + "\n")


def tokens(docs):
    return sum(c for d in docs for _, c in d)


# ----------------------------------------------------------------------------------------------
# Runs.

def peak_rss_of(cmd, env=None, cwd=None):
    """Runs cmd under GNU time; returns (stdout+stderr, peak RSS bytes)."""
    timer = shutil.which("time") and "/usr/bin/time"
    full = ([timer, "-f", "TESSERA_PEAK_KB %M"] if timer else []) + cmd
    p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                       cwd=cwd)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}")
    m = re.search(r"TESSERA_PEAK_KB (\d+)", p.stdout)
    return p.stdout, (int(m.group(1)) * 1024 if m else float("nan"))


def run_tessera(corpus_args, k, threads, iterations, mode, tmp, every=5, extra=()):
    trace, summary = os.path.join(tmp, "trace.csv"), os.path.join(tmp, "summary.csv")
    cmd = [TESSERA, "lda"] + corpus_args + [
        "--topics", str(k), "--workers", str(threads), "--threads", str(threads),
        "--iterations", str(iterations), "--evaluate-every", str(every), "--mode", mode,
        "--trace", trace, "--summary", summary, "--quiet", "--no-files"] + list(extra)
    peak_rss_of(cmd)
    with open(trace) as f:
        rows = list(csv.DictReader(f))
    with open(summary) as f:
        s = next(csv.DictReader(f))
    curve = [(float(r["seconds"]), float(r["ll_per_token"]), float(r["perplexity"])) for r in rows]
    return {"curve": curve, "tokens_per_second": float(s["tokens_per_second"]),
            "peak_rss": float(s["peak_rss"]), "final": curve[-1][1]}


def run_warplda(bin_dir, prefix, k, threads, iterations, n_tokens, tmp):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out, rss = peak_rss_of([os.path.join(bin_dir, "warplda"), "--prefix", prefix, "--k", str(k),
                            "--niter", str(iterations), "--perplexity", "-1", "--dumpmodel=false",
                            "--dumpz=false", "--writeinfo=false"], env=env, cwd=tmp)
    curve, t = [], 0.0
    for m in re.finditer(r"Iteration \d+, ([0-9.e+-]+) s, [0-9.]+ Mtokens/s, log_likelihood "
                         r"\(per token\) ([0-9.e+-]+)", out):
        t += float(m.group(1))
        curve.append((t, float(m.group(2)), float("nan")))
    if not curve:
        raise RuntimeError("no iterations in WarpLDA's output:\n" + out[-2000:])
    return {"curve": curve, "tokens_per_second": n_tokens * len(curve) / t, "peak_rss": rss,
            "final": curve[-1][1]}


def time_to(curve, target):
    """First time the log-likelihood reaches `target` (linear interpolation), or inf."""
    prev = (0.0, -math.inf)
    for t, ll, _ in curve:
        if ll >= target:
            if prev[1] == -math.inf:
                return t
            return prev[0] + (t - prev[0]) * (target - prev[1]) / (ll - prev[1])
        prev = (t, ll)
    return math.inf


def mm(values, fmt):
    vals = sorted(values)
    return f"{fmt.format(vals[0])} / {fmt.format(statistics.median(vals))}"


# ----------------------------------------------------------------------------------------------
# gensim.

def gensim_curve(train, test, vocab, k, workers, passes):
    import numpy as np
    from gensim.models import LdaMulticore
    bow = [[(w, c) for w, c in sorted(d)] for d in train]
    obs, held = [], []
    for d in test:
        expanded = [w for w, c in sorted(d) for _ in range(c)]
        o, h = {}, []
        for i, w in enumerate(expanded):
            if i % 2 == 0:
                o[w] = o.get(w, 0) + 1
            else:
                h.append(w)
        obs.append(sorted(o.items()))
        held.append(h)
    id2word = {i: f"w{i}" for i in range(vocab)}
    curve, clock = [], 0.0
    t0 = time.perf_counter()
    model = LdaMulticore(corpus=bow, id2word=id2word, num_topics=k, workers=workers, passes=1,
                         alpha=[50.0 / k] * k, eta=0.01, random_state=42, chunksize=2000)
    clock += time.perf_counter() - t0
    for p in range(passes):
        if p > 0:
            t0 = time.perf_counter()
            model.update(bow)
            clock += time.perf_counter() - t0
        phi = model.get_topics()  # K x V
        log_p, n = 0.0, 0
        for o, h in zip(obs, held):
            if not h:
                continue
            theta = np.zeros(k)
            for t, pr in model.get_document_topics(o, minimum_probability=0.0):
                theta[t] = pr
            theta /= theta.sum()
            log_p += float(np.log(theta @ phi[:, h]).sum())
            n += len(h)
        curve.append((clock, float("nan"), math.exp(-log_p / n)))
        log(f"  gensim pass {p + 1}: {clock:.1f} s, perplexity {curve[-1][2]:.1f}")
    return curve


# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--warplda", default=os.environ.get("WARPLDA", ""),
                    help="directory with WarpLDA's warplda and format binaries (optional)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="KOS only, fewer iterations")
    ap.add_argument("--threads", default="2", help="comma-separated thread counts (default 2)")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out"))
    args = ap.parse_args()
    if not os.path.exists(TESSERA):
        sys.exit(f"{TESSERA}: missing; build first (cmake --preset release && cmake --build "
                 "--preset release)")
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="tessera-lda-bench-")
    report = []

    def say(line=""):
        print(line, flush=True)
        report.append(line)

    corpora = [("kos", os.path.join(DATA, "uci-bow-kos", "docword.kos.txt.gz"), read_uci)]
    if not args.quick:
        corpora.append(("news20", os.path.join(DATA, "news20-libsvm", "news20.libsvm.gz"),
                        read_libsvm))
    thread_counts = [int(x) for x in args.threads.split(",")]
    warp = args.warplda
    if warp and not (os.access(os.path.join(warp, "warplda"), os.X_OK)
                     and os.access(os.path.join(warp, "format"), os.X_OK)):
        sys.exit(f"--warplda {warp}: no warplda and format binaries there")
    say(f"tessera LDA benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores; "
        f"repeats {args.repeats} (min / median)")
    say(f"WarpLDA: {warp if warp else 'skipped (pass --warplda DIR or WARPLDA=DIR)'}")
    say()
    header = (f"{'corpus':7} {'K':>5} {'thr':>3} {'system':13} {'tokens/s':>19} {'final LL':>9} "
              f"{'target':>8} {'s to target':>13} {'vs WarpLDA':>11} {'tok/s ratio':>11} "
              f"{'peak MiB':>8} {'RSS ratio':>9}")
    say(f"A. Speed at equal log-likelihood, {60 if args.quick else args.iterations} iterations "
        "(LL per token; target = WarpLDA's median final LL; vs WarpLDA = tessera's time to it / "
        "WarpLDA's sampling time; ratios tessera / WarpLDA)")
    say(header)
    curves = {}
    for name, path, reader in corpora:
        iterations = 60 if args.quick else args.iterations
        docs, vocab = reader(path)
        n = tokens(docs)
        cdir = os.path.join(tmp, name)
        os.makedirs(cdir)
        uci = os.path.join(cdir, f"docword.{name}.txt")
        write_uci(uci, docs, vocab)
        corpus_args = ["--corpus", uci, "--format", "uci"]
        if warp:
            write_yahoo(os.path.join(cdir, "yahoo.txt"), docs)
            subprocess.run([os.path.join(warp, "format"), "-input", "yahoo.txt", "-prefix", name],
                           cwd=cdir, check=True, stdout=subprocess.DEVNULL)
        for k in (100, 1000):
            for threads in thread_counts:
                runs = {"tessera": [], "tessera mh1": [], "warplda": []}
                for r in range(args.repeats):
                    log(f"{name} K={k} threads={threads} repeat {r + 1}")
                    runs["tessera"].append(
                        run_tessera(corpus_args, k, threads, iterations, "model-parallel", tmp))
                    runs["tessera mh1"].append(
                        run_tessera(corpus_args, k, threads, iterations, "model-parallel", tmp,
                                    extra=["--mh-steps", "1"]))
                    if warp:
                        runs["warplda"].append(
                            run_warplda(warp, name, k, threads, iterations, n, cdir))
                runs["tessera DP"] = [run_tessera(corpus_args, k, threads, iterations,
                                                  "data-parallel", tmp,
                                                  extra=["--max-seconds", "30"])]
                ref = runs["warplda"] if runs["warplda"] else runs["tessera"]
                target = statistics.median(x["final"] for x in ref)
                warp_total = [x["curve"][-1][0] for x in runs["warplda"]]
                warp_tps = [x["tokens_per_second"] for x in runs["warplda"]]
                warp_rss = statistics.median(x["peak_rss"] for x in runs["warplda"]) \
                    if warp else math.nan
                mp_rss = statistics.median(x["peak_rss"] for x in runs["tessera"])
                for system, v in runs.items():
                    if not v:
                        say(f"{name:7} {k:>5} {threads:>3} {system:13} skipped")
                        continue
                    times = [time_to(x["curve"], target) for x in v]
                    versus = tps_ratio = ""
                    if system != "warplda" and warp:
                        versus = mm([t / w for t, w in zip(times, warp_total)], "{:.2f}")
                        tps_ratio = mm([x["tokens_per_second"] / w
                                        for x, w in zip(v, warp_tps)], "{:.2f}")
                    rss = statistics.median(x["peak_rss"] for x in v)
                    say(f"{name:7} {k:>5} {threads:>3} {system:13} "
                        f"{mm([x['tokens_per_second'] for x in v], '{:.3g}'):>19} "
                        f"{statistics.median(x['final'] for x in v):>9.4f} {target:>8.4f} "
                        f"{mm(times, '{:.2f}'):>13} {versus:>11} {tps_ratio:>11} "
                        f"{rss / 2**20:>8.0f} {rss / warp_rss:>9.2f}"
                        + (f"  (RSS {rss / mp_rss:.2f}x model-parallel's)"
                           if system == "tessera DP" else ""))
                    if threads == max(thread_counts):
                        curves[(name, k, system)] = v[0]["curve"]
    say()

    # Part B: perplexity vs time, tessera vs gensim, KOS K = 100.
    say("B. Held-out perplexity vs time, KOS, K = 100, 2 workers (10% of documents held out)")
    docs, vocab = read_uci(os.path.join(DATA, "uci-bow-kos", "docword.kos.txt.gz"))
    rng = random.Random(7)
    train, test = [], []
    for d in docs:
        (test if rng.random() < 0.1 and tokens([d]) >= 2 else train).append(d)
    tr, te = os.path.join(tmp, "kos_train.txt"), os.path.join(tmp, "kos_test.txt")
    write_uci(tr, train, vocab)
    write_uci(te, test, vocab)
    iters = 60 if args.quick else 200
    tess = run_tessera(["--corpus", tr, "--format", "uci"], 100, 2, iters, "model-parallel", tmp,
                       every=10, extra=["--test", te])
    try:
        gens = gensim_curve(train, test, vocab, 100, 2, 4 if args.quick else 10)
    except ImportError:
        gens = None
        say("gensim: skipped (apt-get install python3-gensim, or scripts/install-deps.sh --bench)")
    say(f"{'system':22} {'seconds':>8} {'perplexity':>10}")
    for t, _, p in tess["curve"]:
        say(f"{'tessera model-parallel':22} {t:>8.2f} {p:>10.1f}")
    if gens:
        for t, _, p in gens:
            say(f"{'gensim LdaMulticore':22} {t:>8.2f} {p:>10.1f}")
        best = min(p for _, _, p in gens)
        tt = next((t for t, _, p in tess["curve"] if p <= best), math.inf)
        say(f"gensim's best perplexity {best:.1f} after {gens[-1][0]:.1f} s; tessera reaches it "
            f"after {tt:.2f} s ({gens[-1][0] / tt:.0f}x sooner)" if tt < math.inf else
            f"gensim's best perplexity {best:.1f}; tessera's final {tess['curve'][-1][2]:.1f}")
    curves[("perplexity", "tessera")] = tess["curve"]
    if gens:
        curves[("perplexity", "gensim")] = gens

    with open(os.path.join(args.out, "lda_bench.txt"), "w") as f:
        f.write("\n".join(report) + "\n")
    for key, c in curves.items():
        with open(os.path.join(args.out, "lda_" + "_".join(map(str, key)).replace(" ", "") +
                               ".csv"), "w") as f:
            f.write("seconds,ll_per_token,perplexity\n")
            for row in c:
                f.write(",".join(repr(x) for x in row) + "\n")
    plot(curves, args.out)
    shutil.rmtree(tmp)


def plot(curves, out):
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no PNG")
        return
    ll = [(key, f"{out}/lda_" + "_".join(map(str, key)).replace(" ", "") + ".csv")
          for key in curves if key[0] != "perplexity"]
    panels = sorted({(k[0], k[1]) for k, _ in ll})
    script = ["set terminal pngcairo size 1400,900 font ',10'", f"set output '{out}/lda_ll.png'",
              "set datafile separator ','", "set key bottom right", "set grid",
              f"set multiplot layout 2,{max(1, (len(panels) + 1) // 2)} title 'LDA, 2 threads: "
              "log-likelihood per token vs seconds'"]
    for corpus, k in panels:
        script.append(f"set title '{corpus} K={k}'")
        script.append("set xlabel 'seconds'")
        series = [f"'{f}' every ::1 using 1:2 with lines title '{key[2]}'"
                  for key, f in ll if key[0] == corpus and key[1] == k]
        script.append("plot " + ", ".join(series))
    script.append("unset multiplot")
    pp = [(key, f"{out}/lda_" + "_".join(map(str, key)) + ".csv")
          for key in curves if key[0] == "perplexity"]
    script += ["set output '" + out + "/lda_perplexity.png'", "set terminal pngcairo size 800,500",
               "set title 'KOS K=100: held-out perplexity vs seconds'", "set key top right",
               "set xlabel 'seconds (evaluation excluded)'", "set ylabel 'perplexity'",
               "plot " + ", ".join(f"'{f}' every ::1 using 1:3 with linespoints title '{key[1]}'"
                                   for key, f in pp)]
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=False)


if __name__ == "__main__":
    main()
