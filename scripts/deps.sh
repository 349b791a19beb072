#!/usr/bin/env bash
# Installs the Debian packages jetmoe needs to build, test and run its demo, and only those
# that are missing. Sourced by run-demo.sh and test.sh; can also be run on its own.
#
#   JETMOE_NO_INSTALL=1   check only: list what is missing and carry on without installing
#   JETMOE_EXTRA_PACKAGES="a b"   more packages to ensure (e.g. for a tool you add)

jetmoe_packages=(
  cmake ninja-build g++ pkg-config ccache    # toolchain (CMake ≥ 3.25, Ninja, GCC 12)
  libeigen3-dev                              # CPU linear algebra (header-only)
  nlohmann-json3-dev                         # config.json parsing
  libsentencepiece-dev                       # tokenizer (target jetmoe::tokenizer)
  catch2                                     # unit tests (Catch2 v2)
  libbenchmark-dev                           # benchmarks (Google Benchmark)
)

jetmoe_missing_packages() {
  local pkg
  for pkg in "${jetmoe_packages[@]}" ${JETMOE_EXTRA_PACKAGES:-}; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]]; then
      printf '%s\n' "$pkg"
    fi
  done
}

jetmoe_ensure_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "jetmoe: not a Debian system (no dpkg-query); assuming the dependencies are installed:" >&2
    echo "        ${jetmoe_packages[*]}" >&2
    return 0
  fi
  local missing
  mapfile -t missing < <(jetmoe_missing_packages)
  if ((${#missing[@]} == 0)); then
    echo "jetmoe: all required Debian packages are installed"
    return 0
  fi
  echo "jetmoe: missing Debian packages: ${missing[*]}"
  if [[ -n "${JETMOE_NO_INSTALL:-}" ]]; then
    echo "jetmoe: JETMOE_NO_INSTALL is set; not installing them" >&2
    return 0
  fi
  local -a apt_env=(env DEBIAN_FRONTEND=noninteractive)
  local -a sudo=()
  if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "jetmoe: not root and no sudo; install them yourself with:" >&2
      echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
      return 1
    fi
  fi
  echo "jetmoe: installing them: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  "${sudo[@]}" "${apt_env[@]}" apt-get update -q
  "${sudo[@]}" "${apt_env[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Run directly: just install.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  jetmoe_ensure_packages
fi
