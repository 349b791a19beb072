#!/usr/bin/env bash
# The GPU session, on the GPU machine, with the binaries that scripts/gpu-bundle.sh packed into
# gpu-bundle/ here (the GPU machine has no Eigen, Catch2, Google Benchmark or SentencePiece).
#
# Exactly two device calls, made back to back (the second within the machine's 30 s warm window,
# so it does not pay for a second start-up); both fit one call's 600 s and, with the start-up,
# the session's 15 minutes of device time:
#
#   1. device run: command "bash scripts/gpu-run.sh check", carry ["gpu-bundle"], timeout_s 300
#        info       nvidia-smi, clocks, tool versions, the binaries' libraries           (≤ 20 s)
#        tests      test_cuda: every CUDA op, primitive and the model vs CPU/transformers,
#                   with JETMOE_CUDA_CHECK_POINTERS=1 (an operand wrongly taken for host
#                   memory fails here; the sanitizer stages run with the check off)     (≤ 75 s)
#        cli        jetmoe-generate and jetmoe-forward --device cuda on the bundled demo
#                   model, diffed against the same tools on the CPU                        (≤ 40 s)
#        memcheck   compute-sanitizer memcheck over every test, JETMOE_CUDA_POOL=off:
#                   [ops] and [routing] first, then [model] (graph capture included)       (≤ 60 + 80 s)
#        racecheck  compute-sanitizer racecheck over the kernels with shared memory: the op
#                   tests, the grouped GEMMs (tiled and WMMA), the plan (CUB), the routers
#                   and the router losses                                                  (≤ 75 s)
#      285 s in all at most: each stage's limit is cut to what is left of that.
#   2. device run: command "bash scripts/gpu-run.sh perf", carry ["gpu-bundle"], timeout_s 420
#        bench      bench_cuda → gpu_jetmoe.json (its own budget: stops starting benchmarks
#                   at 140 s, so its JSON is complete)                                     (≤ 175 s)
#        peers      bench/peers_gpu.py: transformers, grouped_mm and dense on the same points,
#                   bench_cuda's JSON as the jetmoe rows, one set of floors; tables + plots
#                   (its own budget: the rest, less 20 s)                                  (≤ 220 s)
#      405 s in all at most.
#
# What comes back from $OUT, 2 files per call (the device tool returns at most 8):
#   <call>.log              the running log: every stage's output as it is written, so a call cut
#                           off at its limit still returns everything it printed
#   <call>-results.tar.gz   the stages' files, re-packed after each stage (a stage cut off leaves
#                           what it wrote): check → cli/ (tool outputs, the diff), the sanitizer
#                           reports; perf → gpu_jetmoe.json, peers/ (gpu_peers.json, gpu_peers.md,
#                           the PNGs)
# The last lines of stdout (the device tool's output_tail) are a one-line summary per stage.
#
#   bash scripts/gpu-run.sh check | perf          # the two calls
#   bash scripts/gpu-run.sh info tests ...        # chosen stages, in the order given (by hand)
#
# A stage's exit code is reported and the next stage runs anyway. Without a GPU (a dry run here)
# every stage runs and says why it could do nothing.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

case "${1:-}" in
  check) call=check stages=(info tests cli memcheck_ops memcheck_model racecheck) total=285 ;;
  perf) call=perf stages=(clocks bench peers clocks) total=405 ;;
  "" | -h | --help)
    sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *) call=stages stages=("$@") total=100000 ;;
esac

out="${OUT:-$PWD/out}"
mkdir -p "$out"
log="$out/$call.log"
work="${TMPDIR:-/tmp}/gpu-run-$call"  # the stages' files; packed into $out/$call-results.tar.gz
rm -rf "$work"
mkdir -p "$work"
: >"$log"
bundle="$PWD/gpu-bundle"
started=$SECONDS

say() { echo "$*" | tee -a "$log"; }

# Where nvidia-smi lists a GPU, a CUDA test that would skip fails instead: a GPU the runtime
# cannot use must not pass as a green run of skipped tests (tests/cuda/cuda_test_support.cuh).
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  export JETMOE_REQUIRE_GPU=1
fi

# The bundle's libraries first; then wherever this machine keeps CUDA 13's runtime and cuBLAS
# (the toolkit, or the nvidia-* Python wheels next to torch: nvidia/cublas/lib, or nvidia/cu13/lib
# in the CUDA 13 wheels' layout).
export PATH="/usr/local/cuda/bin:$PATH"
cuda_libs="/usr/local/cuda/lib64:/usr/local/cuda/lib"
python_libs="$(python3 - 2>/dev/null <<'EOF'
import os
try:
    import nvidia
except ImportError:
    raise SystemExit
found = []
for base in list(nvidia.__path__):
    for sub in ("cublas/lib", "cuda_runtime/lib", "cu13/lib", "cu13/lib64"):
        path = os.path.join(base, sub)
        if os.path.isdir(path) and path not in found:
            found.append(path)
print(":".join(found))
EOF
)"
[[ -n "$python_libs" ]] && cuda_libs="$cuda_libs:$python_libs"
export LD_LIBRARY_PATH="$bundle/lib:$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The test binary's data folders are compiled in as the build machine's paths.
export JETMOE_TEST_DATA_DIR="$PWD/tests/data" JETMOE_DEMO_MODEL_DIR="$PWD/models/jetmoe-pydoc-5m"
export PYTHONUNBUFFERED=1

sanitizer=""
for candidate in "$(command -v compute-sanitizer 2>/dev/null)" /usr/local/cuda/compute-sanitizer/compute-sanitizer \
  /opt/nvidia/*/compute-sanitizer /opt/nvidia/*/*/compute-sanitizer; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then
    sanitizer="$candidate"
    break
  fi
done

# ---- the stages (each runs in a child bash under `timeout`; output goes to the running log) ----
need() {  # need FILE...: fails the stage, saying why, when a bundle file is missing
  local f
  for f in "$@"; do
    if [[ ! -x "$f" ]]; then
      echo "missing $f: run scripts/gpu-bundle.sh on the build machine and carry gpu-bundle"
      return 2
    fi
  done
}

stage_info() {
  nvidia-smi || echo "nvidia-smi: not available"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit \
    --format=csv 2>/dev/null
  echo "bundle commit: $(cat "$bundle/commit" 2>/dev/null || echo '?')"
  echo "compute-sanitizer: ${sanitizer:-not found}"
  [[ -n "$sanitizer" ]] && "$sanitizer" --version | tail -n 2
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' \
    2>&1 | tail -n 1
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  local binary
  for binary in test_cuda bench_cuda jetmoe-generate jetmoe-forward; do
    echo "--- $binary"
    if [[ -x "$bundle/$binary" ]]; then
      ldd "$bundle/$binary" | grep -E 'not found|cublas|cudart|benchmark|sentencepiece|gomp'
    else
      echo "missing"
    fi
  done
}

stage_clocks() {
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw,utilization.gpu --format=csv 2>/dev/null ||
    echo "nvidia-smi: not available"
}

stage_tests() {
  need "$bundle/test_cuda" || return
  JETMOE_CUDA_CHECK_POINTERS=1 "$bundle/test_cuda" --durations yes
}

# jetmoe-generate and jetmoe-forward on the demo model, CUDA against CPU (fp32 weights on both,
# so the GPU computes in fp32 and greedy text must match exactly; a bf16 run with tensor cores is
# kept for the record).
stage_cli() {
  need "$bundle/jetmoe-generate" "$bundle/jetmoe-forward" || return
  local dir="$work/cli" demo="$PWD/models/jetmoe-pydoc-5m" dev rc=0
  mkdir -p "$dir"
  for dev in cpu cuda; do
    "$bundle/jetmoe-generate" -m "$demo" -p "def fibonacci(n):" -n 48 --dtype float --device "$dev" \
      >"$dir/generate.$dev.txt" 2>"$dir/generate.$dev.err"
    echo "jetmoe-generate --device $dev: exit $? ($(tail -n 1 "$dir/generate.$dev.err"))"
  done
  "$bundle/jetmoe-generate" -m "$demo" -p "def fibonacci(n):" -n 48 --dtype bf16 --device cuda \
    >"$dir/generate.cuda-bf16.txt" 2>"$dir/generate.cuda-bf16.err"
  echo "jetmoe-generate --device cuda --dtype bf16 (tensor cores): exit $?"
  if [[ -s "$dir/generate.cuda.txt" ]] && cmp -s "$dir/generate.cpu.txt" "$dir/generate.cuda.txt"; then
    echo "generate: CUDA text == CPU text ($(wc -c <"$dir/generate.cpu.txt") bytes)"
  else
    echo "generate: CUDA text differs from the CPU's (or is missing):"
    diff "$dir/generate.cpu.txt" "$dir/generate.cuda.txt" | head -n 20
    rc=1
  fi
  cmp -s "$dir/generate.cpu.txt" "$dir/generate.cuda-bf16.txt" &&
    echo "generate: the bf16 tensor-core text equals it too" || echo "generate: the bf16 tensor-core text differs (allowed)"
  python3 - "$dir/ids.safetensors" <<'EOF' || rc=1
# input_ids int64 (2, 24) in [3, 2048), written as safetensors with the standard library alone.
import json, random, struct, sys
random.seed(5)
ids = [random.randrange(3, 2048) for _ in range(2 * 24)]
data = struct.pack("<%dq" % len(ids), *ids)
header = json.dumps({"input_ids": {"dtype": "I64", "shape": [2, 24], "data_offsets": [0, len(data)]}}).encode()
header += b" " * (-len(header) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(header)) + header + data)
EOF
  for dev in cpu cuda; do
    "$bundle/jetmoe-forward" -m "$demo" -i "$dir/ids.safetensors" -o "$dir/forward.$dev.safetensors" --labels \
      --dtype float --device "$dev" 2>"$dir/forward.$dev.err"
    echo "jetmoe-forward --device $dev: exit $? ($(tail -n 1 "$dir/forward.$dev.err"))"
  done
  python3 - "$dir/forward.cpu.safetensors" "$dir/forward.cuda.safetensors" <<'EOF' || rc=1
# Every F32 tensor of the two outputs: max |cuda − cpu| / max |cpu|; fails above 1e-3.
import array, json, struct, sys

def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        values = array.array("f")
        values.frombytes(raw[8 + n + a:8 + n + b])
        out[name] = values
    return out

try:
    cpu, cuda = read(sys.argv[1]), read(sys.argv[2])
except (OSError, ValueError) as error:
    sys.exit(f"forward: cannot compare ({error})")
worst = []
for name, want in cpu.items():
    if name not in cuda or len(cuda[name]) != len(want):
        sys.exit(f"forward: {name} missing or of another size in the CUDA output")
    scale = max(max(abs(v) for v in want), 1e-30)
    worst.append((max(abs(x - y) for x, y in zip(cuda[name], want)) / scale, name))
worst.sort(reverse=True)
print("forward: %d tensors compared; worst max|diff|/max|cpu|: %s" % (
    len(worst), ", ".join("%s %.2e" % (n, d) for d, n in worst[:4])))
sys.exit(1 if worst and worst[0][0] > 1e-3 else 0)
EOF
  return $rc
}

sanitize() {  # sanitize TOOL REPORT FILTER...: compute-sanitizer over test_cuda, memory pool off
  local tool=$1 report=$2
  shift 2
  need "$bundle/test_cuda" || return
  if [[ -z "$sanitizer" ]]; then
    echo "compute-sanitizer not found (looked on PATH, /usr/local/cuda, /opt/nvidia)"
    return 2
  fi
  JETMOE_CUDA_POOL=off "$sanitizer" --tool "$tool" --error-exitcode 3 --print-limit 20 \
    --log-file "$work/$report" "$bundle/test_cuda" --durations yes "$@"
  local rc=$?
  echo "--- $report (last lines)"
  tail -n 15 "$work/$report" 2>/dev/null
  return $rc
}
stage_memcheck_ops() { sanitize memcheck memcheck-ops.txt "[ops],[routing],exec::cuda*"; }
stage_memcheck_model() { sanitize memcheck memcheck-model.txt "[model]"; }
stage_racecheck() {
  sanitize racecheck racecheck.txt "[ops],grouped*,routing::build_plan*,every router*,router losses*"
}

stage_bench() {
  need "$bundle/bench_cuda" || return
  JETMOE_BENCH_BUDGET_S="${JETMOE_BENCH_BUDGET_S:-$((stage_limit - 35))}" "$bundle/bench_cuda" \
    --benchmark_out="$work/gpu_jetmoe.json" --benchmark_out_format=json
}

stage_peers() {
  python3 bench/peers_gpu.py --out "$work/peers" --jetmoe-json "$work/gpu_jetmoe.json" --budget-s $((stage_limit - 20))
}

export bundle work sanitizer
export -f need stage_info stage_clocks stage_tests stage_cli sanitize stage_memcheck_ops stage_memcheck_model \
  stage_racecheck stage_bench stage_peers

declare -A limits=([info]=20 [clocks]=10 [tests]=75 [cli]=40 [memcheck_ops]=60 [memcheck_model]=80 [racecheck]=75
  [bench]=175 [peers]=220)
summary=()

pack() { tar -czf "$out/$call-results.tar.gz.part" -C "$work" . 2>/dev/null && mv "$out/$call-results.tar.gz.part" "$out/$call-results.tar.gz"; }

run_stage() {  # run_stage NAME: under min(its limit, what is left of the call's total − 10 s for packing)
  local name=$1 start=$SECONDS rc
  local left=$((total - (SECONDS - started) - 10))
  local limit=${limits[$name]}
  ((left < limit)) && limit=$left
  if ((limit < 5)); then
    summary+=("$name: skipped (the call's ${total} s are spent)")
    say "=== gpu-run: $name skipped: the call's ${total} s are spent"
    return
  fi
  say "=== gpu-run: $name (limit ${limit} s, $((SECONDS - started)) s into the call)"
  local from
  from=$(stat -c %s "$log")
  stage_limit=$limit timeout --kill-after=5 "$limit" bash -c "stage_$name" >>"$log" 2>&1
  rc=$?
  tail -c +$((from + 1)) "$log" | tail -n 8  # to stdout only: the log has it all
  local what="exit $rc"
  [[ $rc == 124 || $rc == 137 ]] && what="cut off at its ${limit} s limit (exit $rc)"
  summary+=("$name: $what after $((SECONDS - start)) s")
  say "=== gpu-run: $name: $what after $((SECONDS - start)) s"
  pack
}

for stage in "${stages[@]}"; do
  if [[ -z "${limits[$stage]:-}" ]]; then
    say "gpu-run: unknown stage '$stage' (check, perf, or: ${!limits[*]})"
    exit 2
  fi
  run_stage "$stage"
done

say ""
say "=== gpu-run $call: $((SECONDS - started)) s; \$OUT holds $call.log and $call-results.tar.gz"
for line in "${summary[@]}"; do say "  $line"; done
