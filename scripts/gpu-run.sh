#!/usr/bin/env bash
# Runs the GPU checks and benchmarks on the GPU machine, from the repository root, with the
# binaries that scripts/gpu-bundle.sh packed here into gpu-bundle/ (device tool: carry
# gpu-bundle). Stages, in this order by default, each under its own time limit:
#
#   info       nvidia-smi, and whether every binary finds its libraries          (30 s)
#   tests      test_cuda: every CUDA op, primitive and the model vs CPU and transformers (240 s)
#   memcheck   compute-sanitizer memcheck over the op and routing tests          (240 s)
#   racecheck  compute-sanitizer racecheck over the op tests                      (180 s)
#   bench      bench_cuda → gpu_jetmoe.json (stages, layers, the 8B model)        (420 s)
#   peers      bench/peers_gpu.py (transformers, grouped_mm), reusing that JSON   (420 s)
#
#   bash scripts/gpu-run.sh                 # all of them
#   bash scripts/gpu-run.sh tests memcheck  # some, in the order given
#
# Each stage writes its whole log (and results) under $OUT (out/ when unset), so a stage cut
# off at its limit, or a device call cut off at its own, still leaves what it printed. A
# stage's exit code is reported and the next stage runs anyway. Budget: the defaults add up to
# more than one device call may run (600 s); pick stages per call, correctness first.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="${OUT:-$PWD/out}"
bundle="$PWD/gpu-bundle"
mkdir -p "$out"
if [[ ! -x "$bundle/test_cuda" ]]; then
  echo "gpu-run: $bundle/test_cuda missing: run scripts/gpu-bundle.sh first and carry gpu-bundle" >&2
  exit 2
fi

# The bundle's libraries first; then wherever this machine keeps CUDA 13's runtime and cuBLAS.
cuda_libs="/usr/local/cuda/lib64:/usr/local/cuda/lib"
if python_cublas="$(python3 -c 'import os, nvidia.cublas as m; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null)"; then
  cuda_libs="$cuda_libs:$python_cublas"
fi
export LD_LIBRARY_PATH="$bundle/lib:$cuda_libs:${LD_LIBRARY_PATH:-}"
# The test binary's data folders are compiled in as this checkout's paths elsewhere.
export JETMOE_TEST_DATA_DIR="$PWD/tests/data" JETMOE_DEMO_MODEL_DIR="$PWD/models/jetmoe-pydoc-5m"
export PYTHONUNBUFFERED=1

run_stage() {  # run_stage NAME LIMIT: runs stage_NAME in a child bash under `timeout`, logs to $out/NAME.log
  local name=$1 limit=$2 start=$SECONDS rc
  echo "=== gpu-run: $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" bash -c "stage_$name" >"$out/$name.log" 2>&1
  rc=$?
  echo "=== gpu-run: $name: exit $rc after $((SECONDS - start))s$([[ $rc == 124 ]] && echo ' (time limit)')"
  tail -n 30 "$out/$name.log"
}

stage_info() {
  nvidia-smi
  cat "$bundle/commit" 2>/dev/null
  for binary in test_cuda bench_cuda jetmoe-generate jetmoe-forward; do
    echo "--- $binary"
    ldd "$bundle/$binary" | grep -E 'not found|cublas|cudart|benchmark|sentencepiece|gomp'
  done
}
stage_tests() { "$bundle/test_cuda" --durations yes; }
stage_memcheck() {
  compute-sanitizer --tool memcheck --error-exitcode 3 --print-limit 20 "$bundle/test_cuda" "[ops],[routing]"
}
stage_racecheck() { compute-sanitizer --tool racecheck --error-exitcode 3 --print-limit 20 "$bundle/test_cuda" "[ops]"; }
stage_bench() {
  "$bundle/bench_cuda" --benchmark_out="$out/gpu_jetmoe.json" --benchmark_out_format=json --benchmark_counters_tabular=true
}
stage_peers() {
  python3 bench/peers_gpu.py --out "$out/peers" --img "$out/peers" --jetmoe-json "$out/gpu_jetmoe.json"
}

export out bundle
export -f stage_info stage_tests stage_memcheck stage_racecheck stage_bench stage_peers

declare -A limits=([info]=30 [tests]=240 [memcheck]=240 [racecheck]=180 [bench]=420 [peers]=420)
stages=("$@")
((${#stages[@]} > 0)) || stages=(info tests memcheck racecheck bench peers)
for stage in "${stages[@]}"; do
  if [[ -z "${limits[$stage]:-}" ]]; then
    echo "gpu-run: unknown stage '$stage' (info tests memcheck racecheck bench peers)" >&2
    exit 2
  fi
  run_stage "$stage" "${limits[$stage]}"
done
