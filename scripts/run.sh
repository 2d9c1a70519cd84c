#!/usr/bin/env bash
# The main job. Until the simulator exists this builds libbrain and reports what it is and
# runs on (`brain info`); the model-library issue turns it into a real simulation.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BRAIN_BUILD_DIR:-build}

./scripts/setup.sh
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD_DIR" --target brain_cli >/dev/null
exec "$BUILD_DIR/brain" info "$@"
