"""What the benchmarks record about the machine they ran on."""

import json
import os
import platform
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo where there is one) and its core count."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def commit():
    """The repository's short commit hash, or "unknown" outside a git checkout."""
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(base, text, record):
    """Writes a benchmark's table to base.md and its record to base.json (the folder made)."""
    os.makedirs(os.path.dirname(base), exist_ok=True)
    with open(base + ".md", "w", encoding="utf-8") as f:
        f.write(text + "\n")
    with open(base + ".json", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
