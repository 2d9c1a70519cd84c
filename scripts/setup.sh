#!/usr/bin/env bash
# Installs what libbrain needs to build and test, when it is missing, and nothing else.
# Idempotent and quiet when everything is already there. Debian packages come from apt
# (as root, or through sudo); Python packages from PyPI, pinned in requirements.txt.
#   PYTHON=python3.12 ./scripts/setup.sh   to set up another interpreter
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}

# --- Debian packages: each is checked by what the build actually uses -----------------------
missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_file() { [ -e "$1" ] || missing+=("$2"); }
need_cmd g++ g++
need_cmd cmake cmake
need_cmd ninja ninja-build
need_cmd ccache ccache
need_file /usr/include/nlohmann/json.hpp nlohmann-json3-dev
need_file /usr/include/gtest/gtest.h libgtest-dev
# The Gloo headers: the declarations of torch.distributed's Gloo process group include them.
need_file /usr/include/gloo/rendezvous/store.h libgloo-dev
# clang with its libFuzzer and sanitizer runtimes, for scripts/sanitize.sh.
need_cmd clang++ clang
if command -v clang >/dev/null 2>&1; then
  need_file "$(clang -print-resource-dir)/lib/linux/libclang_rt.fuzzer-x86_64.a" libclang-rt-dev
fi
# Brian2 on the system python, for the cross-check tests (tests/python/test_brian2_crosscheck.py).
need_file /usr/lib/python3/dist-packages/brian2/__init__.py python3-brian
if command -v cmake >/dev/null 2>&1; then
  cmake_version=$(cmake --version | sed -n 's/^cmake version \([0-9.]*\).*/\1/p')
  if [ "$(printf '%s\n3.22\n' "$cmake_version" | sort -V | head -n1)" != "3.22" ]; then
    missing+=(cmake)  # too old: Debian 12's is 3.25
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: please install: ${missing[*]} (no apt-get here to do it)" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python packages from requirements.txt --------------------------------------------------
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup: '$PYTHON' not found; libbrain needs Python 3.10 or newer (set PYTHON=...)" >&2
  exit 1
fi
unmet=$("$PYTHON" - requirements.txt <<'PY'
import sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    req = Requirement(line)
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        have = None
    if have is None or not req.specifier.contains(have, prereleases=True):
        print(line)
PY
)
if [ -n "$unmet" ]; then
  echo "setup: installing Python packages:" $unmet
  # shellcheck disable=SC2086
  "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore $unmet
fi
