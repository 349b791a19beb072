#!/usr/bin/env bash
# Builds and runs jetmoe's main job (release preset: CPU, Release). Installs missing Debian
# packages first. Runs jetmoe-generate on the bundled demo model when the build has that
# tool; otherwise the ops tour (every op on a tiny made-up layer). Arguments pass through.
#
#   JOBS=N   build parallelism (default: all cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh

jobs="${JOBS:-$(nproc)}"
jetmoe_ensure_packages
cmake --preset release >/dev/null

# Build only the program we run, so the first demo does not wait for tests and benchmarks.
program=ops_tour
if ninja -C build/release -t targets all 2>/dev/null | grep -q '^jetmoe-generate:'; then
  program=jetmoe-generate
fi
cmake --build --preset release -j"$jobs" --target "$program"
echo "jetmoe: running build/release/examples/$program $*" >&2
exec "build/release/examples/$program" "$@"
