#!/usr/bin/env bash
# Builds the CUDA binaries on this (GPU-less) machine and packs them into gpu-bundle/, with the
# shared libraries the GPU machine lacks, so that a session lent a GPU spends its few minutes
# of device time running, not building (nvcc takes minutes here; the GPU machine has no Eigen,
# Catch2, Google Benchmark or SentencePiece to build against).
#
#   bash scripts/gpu-bundle.sh          # here; then two device calls, back to back (carry ["gpu-bundle"]):
#   bash scripts/gpu-run.sh check       #   timeout_s 300: tests, CLI parity, sanitizers
#   bash scripts/gpu-run.sh perf        #   timeout_s 420: bench_cuda, then the peers
#                                       # scripts/gpu-run.sh's header says what each returns.
#
# gpu-bundle/ is git-ignored; it holds test_cuda, bench_cuda, jetmoe-generate, jetmoe-forward
# and lib/ (libbenchmark, libsentencepiece, libgomp), about 20 MB. The CUDA runtime and cuBLAS
# are not packed: the GPU machine has CUDA 13 too.
#
#   JOBS=N   build parallelism (default: all cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh

jetmoe_ensure_packages
if ! command -v nvcc >/dev/null 2>&1; then
  export CUDACXX="${CUDACXX:-/usr/local/cuda/bin/nvcc}"
fi
cmake --preset cuda
cmake --build --preset cuda -j"${JOBS:-$(nproc)}" --target test_cuda bench_cuda jetmoe-generate jetmoe-forward

bundle=gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle/lib"
cp build/cuda/tests/test_cuda build/cuda/bench/bench_cuda build/cuda/examples/jetmoe-generate \
  build/cuda/examples/jetmoe-forward "$bundle/"
for library in libbenchmark.so.1debian libsentencepiece.so.0 libgomp.so.1; do
  path="$(ldconfig -p | awk -v name="$library" '$1 == name { print $NF; exit }')"
  if [[ -z "$path" ]]; then
    echo "gpu-bundle: $library not found (ldconfig -p); the binaries that need it will not start" >&2
    continue
  fi
  cp -L "$path" "$bundle/lib/"
done
{
  git rev-parse HEAD 2>/dev/null || echo "not a git checkout"
  changed="$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)"
  ((changed > 0)) && echo "built with $changed uncommitted changes to tracked files"
  date -u +%Y-%m-%dT%H:%M:%SZ
} >"$bundle/commit"
du -sh "$bundle"
echo "gpu-bundle: ready. Device calls (carry [\"gpu-bundle\"]): 'bash scripts/gpu-run.sh check' (timeout_s 300),"
echo "            then at once 'bash scripts/gpu-run.sh perf' (timeout_s 420)"
