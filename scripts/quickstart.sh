#!/usr/bin/env bash
# First command of the README: installs what is missing, builds Tessera (release), fits a
# Lasso path with the model-parallel engine on the diabetes data (Efron et al. 2004), then
# compares the model-parallel and data-parallel (parameter server) runs at one λ.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
data="${TESSERA_DATA_DIR:-../shared/datasets}/lasso/diabetes/lars_diabetes_x.csv.gz"
if [[ ! -f "$data" ]]; then
  data=datasets/diabetes/lars_diabetes_x.csv.gz  # the copy shipped with the repository
fi
./build/release/tools/tessera lasso --data "$data" --response y --path 10 --path-ratio 0.001 \
  --workers 2 --scheduler priority --output build/diabetes_path.csv
echo "coefficients along the path: build/diabetes_path.csv"
./build/release/tools/tessera compare lasso --data "$data" --response y --lambda-ratio 0.01 \
  --workers 2 --consistency bsp --out build/diabetes_compare
kos="${TESSERA_DATA_DIR:-../shared/datasets}/uci-bow-kos"
if [[ -f "$kos/docword.kos.txt.gz" ]]; then
  ./build/release/tools/tessera lda --corpus "$kos/docword.kos.txt.gz" \
    --vocab "$kos/vocab.kos.txt.gz" --topics 20 --iterations 50 --evaluate-every 10 \
    --workers 2 --show-topics 5 --topics-out build/kos_topics.txt --output build/kos_model.txt
else
  echo "LDA example skipped: UCI KOS not found under TESSERA_DATA_DIR ($kos)"
fi
