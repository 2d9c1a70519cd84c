#!/usr/bin/env bash
# Sets up, builds (ninja + ccache), runs the C++ suite (ctest: GoogleTest, the CLI contract,
# the installed-package consumer), the Python suite (pytest, against `pip install .`), then
# the sanitizer job (scripts/sanitize.sh: the C++ suite under ASan + UBSan + LSan in a clang
# build, and each libFuzzer harness for 30 s), and ends with the summary lines. Exit status is
# non-zero if any part failed.
#   BRAIN_BUILD_DIR=build-cpu BRAIN_WITH_CUDA=OFF ./scripts/test.sh
#   ./scripts/test.sh --quick     without the sanitizer job
set -uo pipefail
quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
BUILD_DIR=${BRAIN_BUILD_DIR:-build}
JOBS=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

./scripts/setup.sh || exit 1

step() { printf '\n== %s\n' "$*"; }
step "configure + build ($BUILD_DIR)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBRAIN_BUILD_TESTS=ON \
      -DBRAIN_WITH_CUDA="${BRAIN_WITH_CUDA:-AUTO}" -DPython3_EXECUTABLE="$(command -v "$PYTHON")" >"$BUILD_DIR.configure.log" 2>&1 \
  || { cat "$BUILD_DIR.configure.log"; exit 1; }
grep -E '^-- libbrain' "$BUILD_DIR.configure.log"
cmake --build "$BUILD_DIR" --parallel "$JOBS" || exit 1

step "ctest"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" 2>&1 | tee "$BUILD_DIR/ctest.log"
ctest_rc=${PIPESTATUS[0]}

step "pip install . + pytest"
pytest_rc=1
if BRAIN_WITH_CUDA="${BRAIN_WITH_CUDA:-AUTO}" "$PYTHON" -m pip install -q --disable-pip-version-check \
     --root-user-action=ignore . ; then
  # Run from tests/ so that `import brain` finds the installed package, not the source tree.
  (cd tests && "$PYTHON" -m pytest -q python 2>&1) | tee "$BUILD_DIR/pytest.log"
  pytest_rc=${PIPESTATUS[0]}
else
  echo "pip install . failed" | tee "$BUILD_DIR/pytest.log"
fi

san_rc=0
if [ "$quick" -eq 0 ]; then
  step "sanitizers and fuzzing (scripts/sanitize.sh)"
  ./scripts/sanitize.sh
  san_rc=$?
fi

step "summary"
grep -E 'tests passed|tests failed' "$BUILD_DIR/ctest.log" | tail -n1
tail -n1 "$BUILD_DIR/pytest.log"
if [ "$quick" -eq 0 ]; then
  echo "sanitizers: $(grep -E 'tests passed|tests failed' build-san/ctest.log 2>/dev/null | tail -n1)"
  cat build-san/fuzz/report.txt 2>/dev/null
fi
[ "$ctest_rc" -eq 0 ] && [ "$pytest_rc" -eq 0 ] && [ "$san_rc" -eq 0 ]
