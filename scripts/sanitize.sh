#!/usr/bin/env bash
# The sanitizer and fuzzing job: builds libbrain, its C++ tests and the libFuzzer harnesses
# with clang, AddressSanitizer, UndefinedBehaviorSanitizer and fuzzer coverage (build-san/),
# runs the C++ suite under them (LeakSanitizer on; any report fails the test), then runs each
# fuzzer from its seed corpus in tests/fuzz/corpus/: FUZZ_RUNS inputs with a fixed seed (the
# default, 20000: the same inputs on every run, so CI is reproducible), or for FUZZ_SECONDS
# with a random seed (a long exploratory run). Findings land in build-san/fuzz/findings/ and
# fail the job; turn each into a corpus file (a regression test).
#   ./scripts/sanitize.sh                      build, tests, 20000 inputs per fuzzer
#   FUZZ_SECONDS=600 ./scripts/sanitize.sh     a long fuzzing run
#   ./scripts/sanitize.sh --no-tests | --no-fuzz
#   ./scripts/sanitize.sh --thread             ThreadSanitizer instead (build-tsan/), C++ suite only
# --thread: torch's wheel runs its parallel kernels on an uninstrumented libgomp, whose barriers
# TSan cannot see, so every threaded ATen kernel would be reported as a race; the suite runs
# with OMP_NUM_THREADS=1 (our own parallel loops are serial in clang sanitizer builds anyway).
# What TSan checks is then the threads we start: ranks as threads in the distributed tests,
# Gloo's, and anything that shares a tensor or a module between them.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BRAIN_SAN_BUILD_DIR:-build-san}
FUZZ_SECONDS=${FUZZ_SECONDS:-}
FUZZ_RUNS=${FUZZ_RUNS:-20000}
JOBS=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
run_tests=1
run_fuzz=1
thread=0
for arg in "$@"; do
  case "$arg" in
    --no-tests) run_tests=0 ;;
    --no-fuzz) run_fuzz=0 ;;
    --thread) thread=1 ;;
    *) echo "usage: $0 [--no-tests] [--no-fuzz] [--thread]" >&2; exit 2 ;;
  esac
done
command -v clang++ >/dev/null || { echo "sanitize: needs clang++ (./scripts/setup.sh installs it)" >&2; exit 1; }

step() { printf '\n== %s\n' "$*"; }
if [ "$thread" -eq 1 ]; then
  BUILD_DIR=${BRAIN_TSAN_BUILD_DIR:-build-tsan}
  step "configure + build ($BUILD_DIR: clang, thread)"
  CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DBRAIN_SANITIZE=thread -DBRAIN_BUILD_TESTS=ON \
    -DBRAIN_BUILD_PYTHON=OFF -DBRAIN_WITH_CUDA=OFF -DPython3_EXECUTABLE="$(command -v python3)" \
    >"$BUILD_DIR.configure.log" 2>&1 || { cat "$BUILD_DIR.configure.log"; exit 1; }
  cmake --build "$BUILD_DIR" --parallel "$JOBS" || exit 1
  step "ctest under ThreadSanitizer (OMP_NUM_THREADS=1)"
  OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1" \
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 1200 -E 'consumer' 2>&1 \
    | tee "$BUILD_DIR/ctest.log"
  exit "${PIPESTATUS[0]}"
fi
step "configure + build ($BUILD_DIR: clang, address;undefined;fuzzer-no-link)"
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DBRAIN_SANITIZE="address;undefined;fuzzer-no-link" \
  -DBRAIN_BUILD_FUZZERS=ON -DBRAIN_BUILD_TESTS=ON -DBRAIN_BUILD_PYTHON=OFF -DBRAIN_WITH_CUDA=OFF \
  -DPython3_EXECUTABLE="$(command -v python3)" >"$BUILD_DIR.configure.log" 2>&1 \
  || { cat "$BUILD_DIR.configure.log"; exit 1; }
cmake --build "$BUILD_DIR" --parallel "$JOBS" || exit 1

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/sanitize/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
rc=0
if [ "$run_tests" -eq 1 ]; then
  step "ctest under ASan + UBSan + LSan"
  # The consumer test builds an unsanitized program against this library; it runs in the
  # normal suite.
  ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" -E 'consumer' 2>&1 | tee "$BUILD_DIR/ctest.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
fi
if [ "$run_fuzz" -eq 1 ]; then
  if [ -n "$FUZZ_SECONDS" ]; then
    budget=(-max_total_time="$FUZZ_SECONDS"); what="${FUZZ_SECONDS} s"
  else
    budget=(-runs="$FUZZ_RUNS" -seed=1); what="$FUZZ_RUNS inputs (seed 1)"
  fi
  step "fuzzing, $what per target"
  mkdir -p "$BUILD_DIR/fuzz/findings"
  : >"$BUILD_DIR/fuzz/report.txt"
  for target in config ops checkpoint; do
    work="$BUILD_DIR/fuzz/corpus_$target"
    [ -n "$FUZZ_SECONDS" ] || rm -rf "$work"  # reproducible: from the checked-in corpus alone
    mkdir -p "$work"
    log="$BUILD_DIR/fuzz/$target.log"
    "$BUILD_DIR/tests/fuzz/fuzz_$target" "$work" "tests/fuzz/corpus/$target" "${budget[@]}" \
      -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$BUILD_DIR/fuzz/findings/$target-" \
      >"$log" 2>&1
    status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
    line="fuzz_$target: ${execs:-?} executions${secs:+ in $secs s}, $cov, exit $status"
    echo "$line" | tee -a "$BUILD_DIR/fuzz/report.txt"
    if [ "$status" -ne 0 ]; then
      rc=1
      grep -E 'FUZZ FINDING|ERROR: AddressSanitizer|runtime error|deadly signal|Test unit written' "$log" | head -n 5
    fi
  done
fi
exit $rc
