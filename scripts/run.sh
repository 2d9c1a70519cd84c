#!/usr/bin/env bash
# The main job: builds libbrain and simulates the COBA E/I network (Vogels-Abbott, 4000 LIF
# neurons, 1 s) from models/coba.json, writing out/coba/{monitors.npz, summary.json,
# raster.svg, traces.svg}. Extra arguments go to `brain run`, e.g.
#   ./scripts/run.sh --duration 200 --device cuda
#   CONFIG=models/cuba.json ./scripts/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BRAIN_BUILD_DIR:-build}
CONFIG=${CONFIG:-models/coba.json}

./scripts/setup.sh
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD_DIR" --target brain_cli >/dev/null
out="out/$(basename "$CONFIG" .json)"
"$BUILD_DIR/brain" run "$CONFIG" --out "$out" "$@"
echo "Open $out/raster.svg and $out/traces.svg in a browser; load $out/monitors.npz with numpy.load."
