#!/usr/bin/env bash
# Fuzzes every reader and the frame decoder with libFuzzer (clang, ASan + UBSan): builds the
# `fuzz` preset, seeds each target from its generated corpus plus tests/fuzz/corpus/<target>
# (inputs kept from earlier runs, e.g. fixed crashes), runs each for SECONDS and prints the
# executions and crashes per target. Exits 1 if any target crashed (the input is saved as
# build/fuzz/crash-<target>-*).
#   scripts/fuzz.sh [SECONDS]   default 60 per target; CI runs 20
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
scripts/install-deps.sh --fuzz
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
out=build/fuzz
rm -rf "$out/corpus"
"$out/tests/fuzz/fuzz_seeds" "$out/corpus"
failed=0
printf '%-16s %12s %10s %8s %s\n' target executions "exec/s" crashes corpus
for target in fuzz_frame fuzz_checkpoint fuzz_readers fuzz_models fuzz_options fuzz_shard; do
  corpus="$out/corpus/$target"
  mkdir -p "$corpus"
  cp -n tests/fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  log="$out/$target.log"
  set +e
  "$out/tests/fuzz/$target" "$corpus" -max_total_time="$seconds" -max_len=65536 \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$out/crash-$target-" >"$log" 2>&1
  code=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  crashes=0
  if [[ $code -ne 0 ]]; then
    crashes=1
    failed=1
    echo "--- $target failed (exit $code); the end of $log:" >&2
    tail -40 "$log" >&2
  fi
  printf '%-16s %12s %10s %8s %s\n' "$target" "${execs:-0}" "${rate:-0}" "$crashes" \
    "$(ls "$corpus" | wc -l) inputs"
done
exit $failed
