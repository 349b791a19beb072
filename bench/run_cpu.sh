#!/usr/bin/env bash
# The CPU benchmarks in one command: build the suites (Release), run them with JSON output
# into bench/results/, then render tables into docs/benchmarks.md and plots into docs/img/.
#
#   bench/run_cpu.sh            quick run: T ∈ {1, 16, 256, 2048}, the demo model end to end
#   bench/run_cpu.sh --8b       also the random-weight JetMoE-8B-shape model (≈ 17 GB, minutes)
#   bench/run_cpu.sh --full     T from 1 to 16384 on every shape (hours on 2 cores)
#   bench/run_cpu.sh --no-build reuse the binaries already built
#   bench/run_cpu.sh --no-docs  leave docs/ alone (results and plots only under RESULTS_DIR)
#
# Environment:
#   JOBS=N                  build parallelism (default 2)
#   BUILD_DIR=DIR           configure DIR directly instead of the `release` preset (build/release)
#   RESULTS_DIR=DIR         where the JSON goes (default bench/results)
#   JETMOE_BENCH_THREADS=N  threads of the library (default: one per hardware thread)
#   JETMOE_BENCH_REPS=N     repetitions per point (default 3); medians and min–max come from them
#   JETMOE_BENCH_TOKENS=... explicit token counts for bench_moe, e.g. 1,64,512
#   QUIET_LOAD=X            before each suite, wait (up to QUIET_WAIT_S, default 1800 s) until the
#                           1-minute load average is below X: on a shared machine, other jobs'
#                           threads otherwise show up in the timings
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

full=0 with_8b=0 build=1 docs=1
for arg in "$@"; do
  case "$arg" in
    --full) full=1 ;;
    --8b) with_8b=1 ;;
    --no-build) build=0 ;;
    --no-docs) docs=0 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench/run_cpu.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

source scripts/deps.sh
JETMOE_EXTRA_PACKAGES="${JETMOE_EXTRA_PACKAGES:-} python3-matplotlib" jetmoe_ensure_packages

jobs="${JOBS:-2}"
if [[ -n "${BUILD_DIR:-}" ]]; then
  build_dir="$BUILD_DIR"
  configure=(cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DJETMOE_ENABLE_CUDA=OFF)
else
  build_dir=build/release
  configure=(cmake --preset release)
fi
if ((build)); then
  "${configure[@]}"
  cmake --build "$build_dir" -j"$jobs" --target bench_moe bench_e2e
fi

results="${RESULTS_DIR:-bench/results}"
mkdir -p "$results"
export JETMOE_BENCH_FULL="$full" JETMOE_BENCH_8B="$with_8b"

# What the machine was doing: the suites share the cores with anything else running, so the
# load average before and after each suite goes into the results next to the numbers.
meta="$results/cpu_meta.json"
python3 - "$meta" "$full" "$with_8b" <<'EOF'
import json, os, platform, subprocess, sys, datetime
def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return ""
model = next((l.split(":", 1)[1].strip() for l in sh("lscpu").splitlines() if l.startswith("Model name")), "unknown")
mem_kib = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
json.dump({
    "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "cpu_model": model, "cpus": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1),
    "kernel": platform.release(), "git_commit": sh("git", "describe", "--always", "--dirty"),  # -dirty: uncommitted changes were measured
    "compiler": sh("c++", "--version").splitlines()[0] if sh("c++", "--version") else "",
    "mode": "full" if sys.argv[2] == "1" else "quick", "with_8b": sys.argv[3] == "1",
    "threads": os.environ.get("JETMOE_BENCH_THREADS", "default (one per hardware thread)"),
    "repetitions": os.environ.get("JETMOE_BENCH_REPS", "3 (default)"),
    "load": {},
}, open(sys.argv[1], "w"), indent=2)
EOF
record_load() {  # record_load KEY
  python3 - "$meta" "$1" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1]))
meta["load"][sys.argv[2]] = open("/proc/loadavg").read().split()[:3]
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF
}

wait_for_quiet() {
  [[ -n "${QUIET_LOAD:-}" ]] || return 0
  local waited=0 limit="${QUIET_WAIT_S:-1800}"
  while python3 -c "import sys; sys.exit(float(open('/proc/loadavg').read().split()[0]) < float(sys.argv[1]))" "$QUIET_LOAD"; do
    if ((waited >= limit)); then
      echo "bench/run_cpu.sh: load still $(cut -d' ' -f1 /proc/loadavg) after ${waited} s; running anyway" >&2
      return 0
    fi
    ((waited % 60 == 0)) && echo "bench/run_cpu.sh: waiting for load < $QUIET_LOAD (now $(cut -d' ' -f1 /proc/loadavg))"
    sleep 10
    waited=$((waited + 10))
  done
}

run_suite() {  # run_suite NAME: console copy in NAME.txt, JSON in NAME.json
  local name="$1" short="${1#bench_}"
  wait_for_quiet
  record_load "before_$short"
  echo "== $name ($(cut -d' ' -f1-3 /proc/loadavg) load) =="
  "$build_dir/bench/$name" --benchmark_out="$results/cpu_$short.json" --benchmark_out_format=json \
    --benchmark_counters_tabular=true 2>&1 | tee "$results/cpu_$short.txt"
  record_load "after_$short"
}

run_suite bench_moe
run_suite bench_e2e

if ((docs)); then
  plot_args=(--results "$results" --img docs/img --doc docs/benchmarks.md)
else
  plot_args=(--results "$results" --img "$results/img")
fi
# matplotlib comes from Debian (python3-matplotlib), so prefer an interpreter that sees it over
# whatever python3 is first on PATH (a pyenv or venv one need not).
python=python3
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import matplotlib' 2>/dev/null; then python="$candidate"; break; fi
done
"$python" bench/plot.py "${plot_args[@]}"
