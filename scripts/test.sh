#!/usr/bin/env bash
# Second command of the README (and what CI runs): installs what is missing, builds with
# warnings as errors, and runs every test with ctest.
#   scripts/test.sh [preset]   preset: release (default), debug, asan, tsan
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
scripts/install-deps.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"
ctest --preset "$preset" -j2
