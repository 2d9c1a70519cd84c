#!/usr/bin/env bash
# The CUDA tests under NVIDIA's compute-sanitizer, one tool at a time: memcheck (out-of-bounds
# and misaligned accesses, leaks), racecheck (shared-memory races), initcheck (reads of
# uninitialised device memory) and synccheck (invalid barriers). Needs a GPU and the package
# installed (pip install .); the CUDA tests are the pytest cases that run on "cuda".
#   ./scripts/gpu-sanitize.sh            all four tools
#   TOOLS="memcheck" ./scripts/gpu-sanitize.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
TOOLS=${TOOLS:-memcheck racecheck initcheck synccheck}
command -v compute-sanitizer >/dev/null || { echo "gpu-sanitize: compute-sanitizer is not on the PATH" >&2; exit 1; }
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "gpu-sanitize: no CUDA device" >&2; exit 1; }
rc=0
mkdir -p build-gpu-sanitize
for tool in $TOOLS; do
  printf '\n== compute-sanitizer --tool %s\n' "$tool"
  # torch's caching allocator hides use-after-free from memcheck: turn it off.
  (cd tests && PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$tool" --error-exitcode 99 \
     --target-processes all "$PYTHON" -m pytest -q -x -k "${PYTEST_K:-cuda}" python/test_csr_ops.py python/test_jitc_ops.py) \
    2>&1 | tee "build-gpu-sanitize/$tool.log" | tail -n 5
  status=${PIPESTATUS[0]}
  echo "$tool: exit $status" | tee -a build-gpu-sanitize/report.txt
  [ "$status" -eq 0 ] || rc=1
done
exit $rc
