"""What the Python bench scripts share: their common flags and the held-out split of Jester."""
import argparse
import gzip
import os


def parser(doc):
    """An argument parser with --repeats, --tessera and --data-dir."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tessera", default="build/release/tools/tessera")
    ap.add_argument("--data-dir",
                    default=os.environ.get("TESSERA_DATA_DIR", "../shared/datasets"))
    return ap


def split_jester(data_dir, work):
    """Jester with every fifth rating held out, as work/jester.train and work/jester.test;
    returns the source file (which may be missing: then nothing is written)."""
    jester = os.path.join(data_dir, "jester5k/ratings.tsv.gz")
    if os.path.exists(jester):
        with gzip.open(jester, "rt") as f, open(f"{work}/jester.train", "w") as tr, \
                open(f"{work}/jester.test", "w") as te:
            for n, line in enumerate(f, 1):
                (te if n % 5 == 0 else tr).write(line)
    return jester
