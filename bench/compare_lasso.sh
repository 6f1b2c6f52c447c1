#!/usr/bin/env bash
# Lasso, model-parallel vs data-parallel, with `tessera compare` (each mode in its own process,
# same data, λ, workers and time budget). For each problem, λ ∈ {λ_max/10, λ_max/100} and
# data-parallel consistency in CONSISTENCY (default "bsp ssp:2"): the time each mode needs to
# reach within 1e-6 (relative) of the best objective either reached, setup included, the
# clocks/rounds, bytes moved and peak RSS. Repeats REPEATS times (default 3): min and median.
# Writes bench/out/compare_lasso.csv and bench/out/compare_<problem>_<λ>_<consistency>.png.
#   cmake --build --preset release && bash bench/compare_lasso.sh [news20] [synthetic]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${TESSERA_DATA_DIR:-../shared/datasets}
bin=build/release
repeats=${REPEATS:-3}
budget=${BUDGET:-60}
read -r -a models <<< "${CONSISTENCY:-bsp ssp:2}"
out=bench/out
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
problems=("$@")
((${#problems[@]})) || problems=(news20 synthetic)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
minimum() { sort -g | head -1; }
# col FILE MODE NAME: the field NAME (by the header) of MODE's row of a summary CSV.
col() { awk -F, -v m="$2" -v n="$3" 'NR == 1 {for (i = 1; i <= NF; i++) c[$i] = i; next}
          $1 == m {print $c[n]}' "$1"; }

csv="$out/compare_lasso.csv"
echo "problem,lambda_factor,consistency,mode,min_s,median_s,rounds,mbytes,peak_rss_mib,objective" > "$csv.tmp"
printf "%-10s %-6s %-7s %-15s %9s %9s %8s %10s %9s\n" problem lambda dp mode min_s median_s rounds "MB moved" rss_mib
for problem in "${problems[@]}"; do
  prefix="$work/$problem"
  case $problem in
    news20) prep=(--in "$data/news20-libsvm/news20.libsvm.gz" --class 1) ;;
    synthetic) prep=(--synthetic 10000x100000 --density 0.001 --support 100 --seed 1) ;;
    *) echo "unknown problem $problem" >&2; exit 2 ;;
  esac
  "$bin/bench/lasso_problem" "${prep[@]}" --out "$prefix" > /dev/null
  for factor in 10 100; do
    ratio=$(awk -v f="$factor" 'BEGIN {printf "%.17g", 1 / f}')
    for model in "${models[@]}"; do
      tag="${problem}_${factor}_${model/:/}"
      : > "$work/times_model"; : > "$work/times_data"
      for ((r = 0; r < repeats; r++)); do
        "$bin/tools/tessera" compare lasso --data "$prefix.libsvm" --lambda-ratio "$ratio" \
          --workers 2 --threads 2 --consistency "$model" --budget-seconds "$budget" \
          --out "$work/$tag" > "$work/log" 2> /dev/null
        # Time to 1e-6 of the best objective: run time at the first such evaluation + setup.
        for mode in model-parallel data-parallel; do
          setup=$(col "$work/$tag-summary.csv" "$mode" setup_seconds)
          t=$(awk -F, -v m="$mode" -v s="$setup" '$1 == m && $5 <= 1e-6 {print s + $3; f = 1; exit}
                END {if (!f) print "nan"}' "$work/$tag.csv")
          echo "$t" >> "$work/times_${mode%%-*}"
        done
      done
      cp "$work/$tag.png" "$out/compare_$tag.png" 2> /dev/null || true
      for mode in model-parallel data-parallel; do
        file="$work/times_${mode%%-*}"
        tmin=$(minimum < "$file"); tmed=$(median < "$file")
        summary="$work/$tag-summary.csv"
        rounds=$(col "$summary" "$mode" rounds)
        bytes=$(awk -v b="$(col "$summary" "$mode" bytes)" 'BEGIN {printf "%.1f", b / 1e6}')
        rss=$(awk -v b="$(col "$summary" "$mode" peak_rss_bytes)" 'BEGIN {printf "%.1f", b / 1048576}')
        obj=$(col "$summary" "$mode" objective)
        echo "$problem,$factor,$model,$mode,$tmin,$tmed,$rounds,$bytes,$rss,$obj" >> "$csv.tmp"
        printf "%-10s %-6s %-7s %-15s %9.3f %9.3f %8s %10s %9s\n" "$problem" "/$factor" "$model" "$mode" \
          "$tmin" "$tmed" "$rounds" "$bytes" "$rss"
      done
    done
  done
done
mv "$csv.tmp" "$csv"
echo "wrote $csv and $out/compare_*.png"
