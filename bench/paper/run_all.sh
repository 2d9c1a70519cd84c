#!/usr/bin/env bash
# Runs every paper experiment and writes bench/paper/gallery.md. Arguments go to each script
# (e.g. --quick, --device cuda).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for name in cann dynamics operators jit_scaling reservoir_jit decision_making simulators; do
  python3 "$here/$name.py" "$@"
done
python3 "$here/gallery.py"
