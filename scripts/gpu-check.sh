#!/usr/bin/env bash
# The GPU machine's job, in stages that each fit one lease call:
#   build    pip install . with CUDA (no build isolation: the GPU machine has no index), then
#            pack the installed package into $OUT/brain_pkg.tgz so a later call can carry it
#   unpack   use a package packed by `build` (.gpu/brain_pkg.tgz) instead of building again
#   test     the CUDA cases of the op tests (pytest -k cuda), CPU-vs-CUDA agreement and the
#            deterministic-mode runs included
#   suite    the whole pytest suite with a GPU present (devices default to cuda where they can)
#   bench    the GPU benchmarks (BENCHES="csr jitc bptt connectivity second_order"); tables land in $OUT
#   sanitize scripts/gpu-sanitize.sh (compute-sanitizer memcheck etc.)
#   pack     everything under $OUT into $OUT/results.tgz (the lease returns at most 8 files)
#   ./scripts/gpu-check.sh build test
#   ./scripts/gpu-check.sh unpack bench
# Each stage writes its log under $OUT (default build-gpu/out) and prints a one-line result.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-build-gpu/out}
JOBS=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
rc=0

result() { echo "[gpu-check] $1: $2" | tee -a "$OUT/summary.txt"; }

for stage in "$@"; do
  start=$(date +%s)
  case "$stage" in
    build)
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
      BRAIN_WITH_CUDA=ON BRAIN_BUILD_DIR=build-gpu CMAKE_BUILD_PARALLEL_LEVEL=$JOBS \
        timeout 420 "$PYTHON" -m pip install -q --no-build-isolation --no-deps --root-user-action=ignore . \
        >"$OUT/build.log" 2>&1
      status=$?
      grep -E '^-- libbrain|error' "$OUT/build.log" | head -n 40
      if [ "$status" -eq 0 ] && [ "${PACK_PACKAGE:-0}" = 1 ]; then
        pkg=$(cd tests && "$PYTHON" -c 'import brain, os; print(os.path.dirname(brain.__file__))')
        tar -C "$(dirname "$pkg")" -czf "$OUT/brain_pkg.tgz" brain
        ls -la "$OUT/brain_pkg.tgz"
      elif [ "$status" -ne 0 ]; then
        tail -n 40 "$OUT/build.log"
      fi
      ;;
    unpack)
      mkdir -p /tmp/brain_site && tar -C /tmp/brain_site -xzf .gpu/brain_pkg.tgz
      export PYTHONPATH=/tmp/brain_site${PYTHONPATH:+:$PYTHONPATH}
      export PATH=/tmp/brain_site/brain/bin:$PATH
      status=$?
      ;;
    test)
      (cd tests && timeout 300 "$PYTHON" -m pytest -q -n 8 -k "cuda or gpu" --tb=short \
         python/test_csr_ops.py python/test_jitc_ops.py python/test_lif_op.py python/test_lif_recurrent_op.py python/test_poisson_op.py python/test_replay.py python/test_package.py \
         python/test_bptt_memory.py python/test_reliability.py python/test_func_transforms.py python/test_spike_op.py \
         python/test_models.py python/test_reference_networks.py) >"$OUT/test.log" 2>&1
      status=$?
      # The failures' short tracebacks, then the summary.
      sed -n '/= FAILURES =/,$p' "$OUT/test.log" | cut -c1-300 | tail -n 120
      tail -n 1 "$OUT/test.log"
      ;;
    suite)
      (cd tests && timeout 480 "$PYTHON" -m pytest -q -n 16 python) >"$OUT/suite.log" 2>&1
      status=$?
      grep -E 'FAILED|ERROR|passed|failed' "$OUT/suite.log" | tail -n 30
      ;;
    bench)
      status=0
      for b in ${BENCHES:-csr jitc bptt connectivity second_order}; do
        case "$b" in
          csr) timeout 200 "$PYTHON" bench/csr_bench.py --device cuda --out "$OUT" >"$OUT/csr_bench.log" 2>&1 || status=1 ;;
          jitc) timeout 120 "$PYTHON" bench/jitc_bench.py --device cuda --out "$OUT" >"$OUT/jitc_bench.log" 2>&1 || status=1 ;;
          bptt) timeout 200 "$PYTHON" bench/bptt/bptt_bench.py --device cuda --out "$OUT" >"$OUT/bptt_bench.log" 2>&1 || status=1 ;;
          second_order) timeout 120 "$PYTHON" bench/bptt/second_order_bench.py --device cuda --out "$OUT" \
                          >"$OUT/second_order_bench.log" 2>&1 || status=1 ;;
          connectivity) timeout 120 "$PYTHON" bench/connectivity_bench.py --device cuda --sizes 12500,125000,1250000,4000000 \
                          --out "$OUT" >"$OUT/connectivity_bench.log" 2>&1 || status=1 ;;
        esac
      done
      for f in "$OUT"/*_cuda.md; do [ -f "$f" ] && cat "$f"; done
      [ "$status" -eq 0 ] || tail -n 20 "$OUT"/*_bench.log
      ;;
    sanitize)
      timeout "${SANITIZE_TIMEOUT:-400}" ./scripts/gpu-sanitize.sh >"$OUT/sanitize.log" 2>&1
      status=$?
      cp build-gpu-sanitize/report.txt "$OUT/sanitize_report.txt" 2>/dev/null
      tail -n 20 "$OUT/sanitize.log"
      ;;
    pack)
      (cd "$OUT" && tar -czf results.tgz --exclude=results.tgz --exclude=summary.txt --exclude=brain_pkg.tgz -- * \
         && find . -maxdepth 1 -type f ! -name results.tgz ! -name summary.txt ! -name brain_pkg.tgz -delete \
         && find . -mindepth 1 -type d -exec rm -rf {} +)
      status=$?
      ;;
    *) echo "gpu-check: unknown stage '$stage'" >&2; exit 2 ;;
  esac
  result "$stage" "exit $status in $(( $(date +%s) - start )) s"
  [ "$status" -eq 0 ] || rc=1
done
exit $rc
