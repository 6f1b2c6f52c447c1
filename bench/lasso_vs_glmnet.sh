#!/usr/bin/env bash
# Lasso: Tessera (model-parallel, 1 and 2 workers) vs R glmnet, measured in the same run.
# For each problem and λ ∈ {λ_max/10, λ_max/100}: glmnet's time and objective
# (standardize=FALSE, intercept=TRUE, default thresh), then Tessera's time to reach that
# objective within 1e-6 relative (setup + first sweep whose objective is ≤ glmnet's·(1+1e-6)).
# Repeats each measurement REPEATS times (default 3) and reports min and median; peak RSS from
# GNU time. Writes bench/out/lasso_glmnet.csv and bench/out/lasso_news20.png.
#   bash scripts/install-deps.sh --bench && cmake --build --preset release
#   bash bench/lasso_vs_glmnet.sh [problem ...]     problems: cpusmall arcene news20 synthetic
set -euo pipefail
cd "$(dirname "$0")/.."
data=${TESSERA_DATA_DIR:-../shared/datasets}
bin=build/release
repeats=${REPEATS:-3}
out=bench/out
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
problems=("$@")
((${#problems[@]})) || problems=(cpusmall arcene news20 synthetic)
for tool in Rscript /usr/bin/time gnuplot; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run bash scripts/install-deps.sh --bench" >&2; exit 1; }
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
minimum() { sort -g | head -1; }

csv="$out/lasso_glmnet.csv"
echo "problem,rows,cols,nnz,lambda_factor,lambda,tool,workers,min_s,median_s,objective,nonzeros,peak_rss_mib" > "$csv.tmp"
printf "%-10s %-7s %-16s %9s %9s %14s %9s %9s\n" problem lambda tool min_s median_s objective rss_mib "vs glmnet"
for problem in "${problems[@]}"; do
  prefix="$work/$problem"
  dense=""
  case $problem in
    cpusmall) prep=(--in "$data/lasso/cpusmall/cpusmall.csv.gz" --response y); dense=dense ;;
    arcene) prep=(--in "$data/lasso/arcene/arcene.libsvm.gz"); dense=dense ;;
    news20) prep=(--in "$data/news20-libsvm/news20.libsvm.gz" --class 1) ;;
    synthetic) prep=(--synthetic 10000x100000 --density 0.001 --support 100 --seed 1) ;;
    *) echo "unknown problem $problem" >&2; exit 2 ;;
  esac
  read -r _ rows _ cols _ nnz _ lmax < <("$bin/bench/lasso_problem" "${prep[@]}" --out "$prefix")
  for factor in 10 100; do
    lambda=$(awk -v l="$lmax" -v f="$factor" 'BEGIN {printf "%.17g", l / f}')
    /usr/bin/time -f "%M" -o "$work/rss" Rscript bench/glmnet_fit.R "$prefix" "$lambda" "$repeats" $dense > "$work/glmnet"
    IFS=, read -r _ gtimes gobj gnz < "$work/glmnet"
    grss=$(awk '{printf "%.1f", $1/1024}' "$work/rss")
    gmin=$(tr ';' '\n' <<< "$gtimes" | minimum)
    gmed=$(tr ';' '\n' <<< "$gtimes" | median)
    echo "$problem,$rows,$cols,$nnz,$factor,$lambda,glmnet,1,$gmin,$gmed,$gobj,$gnz,$grss" >> "$csv.tmp"
    printf "%-10s %-7s %-16s %9.4f %9.4f %14.10g %9s %9s\n" "$problem" "/$factor" glmnet "$gmin" "$gmed" "$gobj" "$grss" ""
    target=$(awk -v o="$gobj" 'BEGIN {printf "%.17g", o * (1 + 1e-6)}')
    for workers in 1 2; do
      : > "$work/times"
      for ((r = 0; r < repeats; r++)); do
        trace="$work/trace_${problem}_${factor}_${workers}.csv"
        /usr/bin/time -f "%M" -o "$work/rss" "$bin/tools/tessera" lasso --data "$prefix.libsvm" \
          --lambda "$lambda" --workers "$workers" --threads 2 --trace "$trace" > "$work/log"
        setup=$(sed -n 's/.*setup \([0-9.]*\) s.*/\1/p' "$work/log")
        awk -F, -v t="$target" -v s="$setup" 'NR > 1 && $3 != "" && $3 <= t {print s + $2; found = 1; exit}
             END {if (!found) print "nan"}' "$trace" >> "$work/times"
        tobj=$(sed -n 's/.*objective \([0-9.e+-]*\) .*/\1/p' "$work/log")
        tnz=$(sed -n 's/.*nonzeros \([0-9]*\) .*/\1/p' "$work/log")
      done
      tmin=$(minimum < "$work/times")
      tmed=$(median < "$work/times")
      trss=$(awk '{printf "%.1f", $1/1024}' "$work/rss")
      ratio=$(awk -v a="$tmed" -v b="$gmed" 'BEGIN {printf "%.2fx", a / b}')
      echo "$problem,$rows,$cols,$nnz,$factor,$lambda,tessera,$workers,$tmin,$tmed,$tobj,$tnz,$trss" >> "$csv.tmp"
      printf "%-10s %-7s %-16s %9.4f %9.4f %14.10g %9s %9s\n" "$problem" "/$factor" "tessera w=$workers" \
        "$tmin" "$tmed" "$tobj" "$trss" "$ratio"
      if [[ $problem == news20 && $factor == 100 ]]; then cp "$trace" "$out/trace_news20_w$workers.csv"; fi
    done
  done
done
mv "$csv.tmp" "$csv"
echo "wrote $csv"
if [[ -f $out/trace_news20_w1.csv ]]; then
  read -r gobj gmed < <(awk -F, '$1 == "news20" && $5 == 100 && $7 == "glmnet" {print $11, $10}' "$csv")
  best=$(awk -F, '$1 == "news20" && $5 == 100 {print $11}' "$csv" | sort -g | head -1)
  gnuplot <<PLOT
set terminal pngcairo size 900,600 noenhanced
set output "$out/lasso_news20.png"
set datafile separator ","
set logscale y
set xlabel "seconds (engine time, excluding setup)"
set ylabel "objective - best objective found (+1e-12)"
set title "Lasso on news20 (class 1 vs rest), lambda = lambda_max/100"
set key top right
plot "$out/trace_news20_w1.csv" every ::1 using 2:(\$3 == \$3 ? \$3 - $best + 1e-12 : 1/0) with linespoints title "tessera, 1 worker", \
     "$out/trace_news20_w2.csv" every ::1 using 2:(\$3 == \$3 ? \$3 - $best + 1e-12 : 1/0) with linespoints title "tessera, 2 workers", \
     "+" using ($gmed):($gobj - $best + 1e-12) with points pt 7 ps 2 title "glmnet (median time, its objective)"
PLOT
  echo "wrote $out/lasso_news20.png"
fi
