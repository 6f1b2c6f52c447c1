#!/usr/bin/env bash
# The Lasso bench: Tessera against glmnet and skglm in the same run (bench/lasso_bench.py says
# how each is measured).
#   bash scripts/install-deps.sh --bench && cmake --build --preset release
#   SKGLM=/path/to/skglm bash bench/lasso_vs_glmnet.sh [--repeats 5] [--problems news20 ...]
exec /usr/bin/python3 "$(dirname "$0")/lasso_bench.py" "$@"
