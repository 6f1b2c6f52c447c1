#!/usr/bin/env bash
# Installs, with apt-get, every Debian package Tessera needs to build, test and run its
# examples. Idempotent: installs only what is missing. Needs root (or sudo).
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --bench  also the benchmark peers (R glmnet, gensim, GNU time, and
#                                    numba and scikit-learn for skglm)
#   scripts/install-deps.sh --fuzz   also clang and libFuzzer (scripts/fuzz.sh)
set -euo pipefail
packages=(
  g++ cmake make pkg-config ccache git ca-certificates
  libboost-fiber-dev libboost-context-dev libboost-system-dev libboost-program-options-dev
  libeigen3-dev libcli11-dev zlib1g-dev libzstd-dev liblz4-dev libssl-dev libthrift-dev
  thrift-compiler
  libgtest-dev libgmock-dev libbenchmark-dev
  gnuplot-nox  # `tessera compare` plots
  openmpi-bin libpmix-dev  # mpirun (Tessera does not link MPI; PMIx says where rank 0 runs)
  iproute2 iptables libnetfilter-queue-dev  # the two-host test: namespaces, a slow lossy link
  munge slurmctld slurmd slurm-client  # the Slurm test: a one-node cluster it starts itself
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(r-base-core r-cran-glmnet time python3-numpy python3-scipy python3-gensim
             python3-numba python3-sklearn)
fi
if [[ "${1:-}" == "--fuzz" ]]; then
  packages+=(clang libclang-rt-14-dev)
fi
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
