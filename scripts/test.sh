#!/usr/bin/env bash
# Builds jetmoe (release preset: CPU, Release) and runs the whole CPU test suite with CTest,
# including the package test that installs jetmoe and builds a find_package() consumer.
# Installs missing Debian packages first. Extra arguments go to ctest (e.g. -R ops, -L core).
#
#   JOBS=N   build and test parallelism (default: all cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh

jobs="${JOBS:-$(nproc)}"
jetmoe_ensure_packages
cmake --preset release
cmake --build --preset release -j"$jobs"
ctest --preset release -j"$jobs" --no-tests=error "$@"
