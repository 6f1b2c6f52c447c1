#!/usr/bin/env bash
# Matrix factorization: updates/s (ratings x epochs / s) and test RMSE of `tessera mf` in both
# modes, 1 and 2 workers, on MovieLens-100K (u1.base/u1.test) and Jester (every fifth rating
# held out), rank 40, λ 0.1, 20 epochs. LIBMF runs side by side, same rank, λ, iterations and
# threads, when its `mf-train` is on PATH or given as LIBMF=/path/to/mf-train (LIBMF is not a
# Debian package: build it by hand outside this repository); otherwise it says skipped.
# Repeats REPEATS times (default 3): min and median time. Writes bench/out/mf.csv, the traces
# bench/out/mf_trace_<data>_<mode>_w<workers>.csv and test RMSE vs epochs and vs time as
# bench/out/mf_ml.png and bench/out/mf_jester.png.
#   cmake --build --preset release && bash bench/mf_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
data=${TESSERA_DATA_DIR:-../shared/datasets}
bin=build/release/tools/tessera
repeats=${REPEATS:-3}
rank=${RANK:-40}
epochs=${EPOCHS:-20}
out=bench/out
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
libmf=${LIBMF:-$(command -v mf-train || true)}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
minimum() { sort -g | head -1; }

zcat "$data/movielens-100k/u1.base.gz" | cut -f1-3 > "$work/ml.train"
zcat "$data/movielens-100k/u1.test.gz" | cut -f1-3 > "$work/ml.test"
zcat "$data/jester5k/ratings.tsv.gz" | awk 'NR % 5 != 0' > "$work/jester.train"
zcat "$data/jester5k/ratings.tsv.gz" | awk 'NR % 5 == 0' > "$work/jester.test"

csv="$out/mf.csv"
echo "data,tool,mode,workers,ratings,min_s,median_s,updates_per_s,test_rmse,peak_rss_mib" > "$csv.tmp"
printf "%-7s %-8s %-15s %2s %9s %9s %13s %9s %8s\n" data tool mode w min_s median_s "updates/s" test_rmse rss_mib
for set in ml jester; do
  ratings=$(wc -l < "$work/$set.train")
  for mode in model-parallel model-parallel-sgd data-parallel; do
    flags=(--mode "${mode%-sgd}")
    [[ $mode == model-parallel-sgd ]] && flags+=(--algorithm sgd)
    for workers in 1 2; do
      : > "$work/times"
      for ((r = 0; r < repeats; r++)); do
        trace="$out/mf_trace_${set}_${mode}_w${workers}.csv"
        /usr/bin/time -f "%M" -o "$work/rss" "$bin" mf --train "$work/$set.train" \
          --test "$work/$set.test" --rank "$rank" --lambda 0.1 --epochs "$epochs" \
          --workers "$workers" --threads 2 "${flags[@]}" --trace "$trace" --quiet
        awk -F, 'END {print $2}' "$trace" >> "$work/times"
      done
      tmin=$(minimum < "$work/times"); tmed=$(median < "$work/times")
      rmse=$(awk -F, 'END {print $5}' "$trace")
      rss=$(awk '{printf "%.1f", $1/1024}' "$work/rss")
      ups=$(awk -v n="$ratings" -v e="$epochs" -v t="$tmed" 'BEGIN {printf "%.3g", n * e / t}')
      echo "$set,tessera,$mode,$workers,$ratings,$tmin,$tmed,$ups,$rmse,$rss" >> "$csv.tmp"
      printf "%-7s %-8s %-15s %2s %9.3f %9.3f %13s %9.4f %8s\n" "$set" tessera "$mode" "$workers" \
        "$tmin" "$tmed" "$ups" "$rmse" "$rss"
    done
  done
  if [[ -n $libmf && -x $libmf ]]; then
    for workers in 1 2; do
      : > "$work/times"
      for ((r = 0; r < repeats; r++)); do
        start=$(date +%s.%N)
        /usr/bin/time -f "%M" -o "$work/rss" "$libmf" -k "$rank" -l2 0.1 -t "$epochs" \
          -s "$workers" -p "$work/$set.test" "$work/$set.train" "$work/libmf.model" > "$work/libmf.log"
        end=$(date +%s.%N)
        awk -v a="$start" -v b="$end" 'BEGIN {print b - a}' >> "$work/times"
      done
      tmin=$(minimum < "$work/times"); tmed=$(median < "$work/times")
      rmse=$(awk '$1 ~ /^[0-9]+$/ {v = $3} END {print v}' "$work/libmf.log")
      rss=$(awk '{printf "%.1f", $1/1024}' "$work/rss")
      ups=$(awk -v n="$ratings" -v e="$epochs" -v t="$tmed" 'BEGIN {printf "%.3g", n * e / t}')
      echo "$set,libmf,sgd,$workers,$ratings,$tmin,$tmed,$ups,$rmse,$rss" >> "$csv.tmp"
      printf "%-7s %-8s %-15s %2s %9.3f %9.3f %13s %9s %8s\n" "$set" libmf sgd "$workers" \
        "$tmin" "$tmed" "$ups" "$rmse" "$rss"
    done
  else
    echo "$set: LIBMF skipped (no mf-train on PATH; set LIBMF=/path/to/mf-train)"
  fi
done
mv "$csv.tmp" "$csv"
# Test RMSE against epochs and against time, per data set, from the traces of the last repeat.
if command -v gnuplot > /dev/null; then
  for set in ml jester; do
    plot_epochs="" plot_time=""
    for f in "$out"/mf_trace_${set}_*.csv; do
      name=$(basename "$f" .csv); name=${name#mf_trace_${set}_}
      plot_epochs+="'$f' using 1:5 with linespoints title '$name', "
      plot_time+="'$f' using 2:5 with linespoints title '$name', "
    done
    gnuplot <<PLOT
set terminal pngcairo noenhanced size 1200,460 font ',10'
set output '$out/mf_${set}.png'
set datafile separator ','
set multiplot layout 1,2 title 'tessera mf on $set: rank $rank, lambda 0.1'
set grid
set ylabel 'test RMSE'
set xlabel 'epoch'
plot ${plot_epochs%, }
set xlabel 'seconds (training)'
plot ${plot_time%, }
unset multiplot
PLOT
  done
  echo "wrote $csv, $out/mf_ml.png and $out/mf_jester.png"
else
  echo "wrote $csv (no gnuplot: plots skipped)"
fi
