#!/usr/bin/env bash
# The MF bench: Tessera against LIBMF, whole process against whole process, in the same run
# (bench/mf_bench.py says how each is measured).
#   cmake --build --preset release
#   LIBMF=/path/to/mf-train bash bench/mf_bench.sh [--repeats 5] [--sets ml jester synthetic]
exec /usr/bin/python3 "$(dirname "$0")/mf_bench.py" "$@"
