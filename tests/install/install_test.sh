#!/usr/bin/env bash
# Installs the build into a temporary prefix and uses it as a user would: every installed
# header compiles on its own; examples/ builds as a separate CMake project with
# find_package(Tessera), and ridge_app.cc once more with pkg-config alone; the user's app runs,
# runs across 3 processes under the installed `tessera launch`, and `compare` runs it in both
# modes.   usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")
tmp=$(mktemp -d /tmp/tessera-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
data=$src/datasets/diabetes/lars_diabetes_x.csv.gz
fail() { echo "install_test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/tessera lib/libtessera_core.a lib/libtessera_cli.a lib/cmake/Tessera/TesseraConfig.cmake \
         lib/cmake/Tessera/TesseraTargets.cmake lib/pkgconfig/tessera.pc \
         include/tessera/core/model_parallel.h include/tessera/tools/command.h; do
  [[ -e $prefix/$f ]] || fail "$f was not installed"
done
# Nothing outside include/tessera: no bare core/, net/ ... directories to clash with a user's.
[[ $(ls "$prefix/include") == tessera ]] || fail "include/ holds more than tessera/"

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cflags=$(pkg-config --cflags tessera)
launcher=()
if command -v ccache >/dev/null; then launcher=(ccache); fi

# Each header compiles on its own (it includes what it uses).
(cd "$prefix/include" && find tessera -name '*.h' | sort) >"$tmp/headers"
[[ $(wc -l <"$tmp/headers") -ge 30 ]] || fail "only $(wc -l <"$tmp/headers") headers installed"
# shellcheck disable=SC2086
if ! xargs -P 2 -I{} sh -c "printf '#include <{}>\n' | ${launcher[*]} g++ $cflags -fsyntax-only -x c++ - \
       || { echo 'does not compile on its own: {}' >&2; exit 255; }" <"$tmp/headers"; then
  fail "a header does not compile on its own"
fi

# A separate CMake project with find_package(Tessera).
cmake -S "$src/examples" -B "$tmp/examples" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_BUILD_TYPE=Release ${launcher:+-DCMAKE_CXX_COMPILER_LAUNCHER=ccache} >"$tmp/log" 2>&1 ||
  { cat "$tmp/log"; fail "configuring examples/ against the installed Tessera failed"; }
cmake --build "$tmp/examples" -j2 >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "building examples/ failed"; }
app=$tmp/examples/ridge_app

# The same app with pkg-config alone.
# shellcheck disable=SC2046
"${launcher[@]}" g++ -O1 "$src/examples/ridge_app.cc" $(pkg-config --cflags --libs tessera) \
  -o "$tmp/ridge_app_pc" || fail "building ridge_app.cc with pkg-config failed"

gap_of() {  # the "relative gap" a ridge fit printed
  sed -n 's/.*relative gap \([^ ]*\).*/\1/p' <<<"$1" | head -1
}
check_fit() {  # NAME OUTPUT TOLERANCE
  local gap
  gap=$(gap_of "$2")
  [[ -n $gap ]] || fail "$1: no fit reported: $2"
  awk -v g="$gap" -v t="$3" 'BEGIN { exit !(g < t && g > -1e-12) }' || fail "$1: gap $gap: $2"
  echo "install_test: $1: relative gap to the closed form $gap"
}
check_fit "find_package build" "$("$app" ridge --data "$data" --alpha 0.001 --workers 2)" 1e-9
check_fit "pkg-config build" "$("$tmp/ridge_app_pc" ridge --data "$data" --alpha 0.001)" 1e-9
check_fit "3 processes under launch" \
  "$("$prefix/bin/tessera" launch -n 3 -- "$app" ridge --data "$data" --alpha 0.001 --workers 2)" 1e-9
check_fit "3 processes, data-parallel" \
  "$("$prefix/bin/tessera" launch -n 3 -- "$app" ridge --data "$data" --alpha 0.001 --workers 1 \
      --mode data-parallel --servers 1)" 1e-3

# A user's scheduler in the built-in lasso command (Tessera::apps), across 3 processes: the
# optimum the built-in scheduler reaches in one.
fit=(lasso --data "$data" --lambda-ratio 0.01 --tolerance 1e-9)
out=$("$prefix/bin/tessera" launch -n 3 -- "$tmp/examples/custom_scheduler" "${fit[@]}" \
        --scheduler shuffled:block_size=4 --workers 2 2>&1) ||
  fail "custom_scheduler under launch failed: $out"
grep -q "scheduler shuffled:block_size=4" <<<"$out" || fail "custom_scheduler: $out"
got=$(sed -n 's/.*objective \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
want=$("$prefix/bin/tessera" "${fit[@]}" | sed -n 's/.*objective \([0-9.]*\).*/\1/p' | head -1)
awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d <= 1e-8 * b) }' ||
  fail "custom_scheduler across 3 processes: objective $got, one process with round_robin $want"
echo "install_test: a user's scheduler across 3 processes: objective $got ($want in one)"

out=$("$app" compare ridge --data "$data" --alpha 0.001 --out "$tmp/cmp" 2>&1) ||
  fail "compare failed: $out"
grep -q '^model-parallel ' <<<"$out" && grep -q '^data-parallel ' <<<"$out" ||
  fail "compare printed no row per mode: $out"
[[ $(wc -l <"$tmp/cmp-summary.csv") -eq 3 ]] || fail "compare's summary: $(cat "$tmp/cmp-summary.csv")"
echo "$out"
echo "install_test: passed"
