#!/usr/bin/env bash
# Sets up, builds (ninja + ccache + precompiled torch headers), runs the C++ suite (ctest:
# GoogleTest, the CLI contract, the installed-package consumer) and the Python suite (pytest,
# against `pip install .`), and ends with the summary lines. Exit status is non-zero if any
# part failed. This is what CI runs; it must finish well inside CI's 90 minutes on 2 cores.
#   BRAIN_BUILD_DIR=build-cpu BRAIN_WITH_CUDA=OFF ./scripts/test.sh
#   ./scripts/test.sh --sanitize   then the sanitizer job as well (scripts/sanitize.sh: the C++
#                                  suite under ASan + UBSan + LSan in a second, clang build, and
#                                  each libFuzzer harness): about as long again, so not in CI
set -uo pipefail
sanitize=0
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    --quick) ;;  # the old spelling of the default
    *) echo "usage: $0 [--sanitize]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
BUILD_DIR=${BRAIN_BUILD_DIR:-build}
JOBS=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

./scripts/setup.sh || exit 1

# Each step says how long the job has run so far: CI stops at 90 minutes.
step() { printf '\n== %s  [%dm%02ds]\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }
step "configure + build ($BUILD_DIR)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBRAIN_BUILD_TESTS=ON -DBRAIN_VERSIONED_SONAME=ON \
      -DBRAIN_WITH_CUDA="${BRAIN_WITH_CUDA:-AUTO}" -DPython3_EXECUTABLE="$(command -v "$PYTHON")" >"$BUILD_DIR.configure.log" 2>&1 \
  || { cat "$BUILD_DIR.configure.log"; exit 1; }
grep -E '^-- libbrain' "$BUILD_DIR.configure.log"
cmake --build "$BUILD_DIR" --parallel "$JOBS" || exit 1

step "ctest"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" 2>&1 | tee "$BUILD_DIR/ctest.log"
ctest_rc=${PIPESTATUS[0]}

step "pip install . + pytest"
pytest_rc=1
# The package is built from the objects ctest just tested: setup.py reconfigures this build
# directory (tests off, an unversioned libbrain.so for the wheel), which changes no compile
# flag, so only the links run again (a build directory of its own would recompile every
# source that uses the precompiled header, whose path ccache hashes).
if BRAIN_BUILD_DIR="$(cd "$BUILD_DIR" && pwd)" BRAIN_WITH_CUDA="${BRAIN_WITH_CUDA:-AUTO}" "$PYTHON" -m pip install -q --disable-pip-version-check \
     --root-user-action=ignore . ; then
  # Run from tests/ so that `import brain` finds the installed package, not the source tree.
  (cd tests && "$PYTHON" -m pytest -q python 2>&1) | tee "$BUILD_DIR/pytest.log"
  pytest_rc=${PIPESTATUS[0]}
else
  echo "pip install . failed" | tee "$BUILD_DIR/pytest.log"
fi

san_rc=0
if [ "$sanitize" -eq 1 ]; then
  step "sanitizers and fuzzing (scripts/sanitize.sh)"
  ./scripts/sanitize.sh
  san_rc=$?
fi

step "summary"
grep -E 'tests passed|tests failed' "$BUILD_DIR/ctest.log" | tail -n1
tail -n1 "$BUILD_DIR/pytest.log"
if [ "$sanitize" -eq 1 ]; then
  echo "sanitizers: $(grep -E 'tests passed|tests failed' build-san/ctest.log 2>/dev/null | tail -n1)"
  cat build-san/fuzz/report.txt 2>/dev/null
fi
[ "$ctest_rc" -eq 0 ] && [ "$pytest_rc" -eq 0 ] && [ "$san_rc" -eq 0 ]
