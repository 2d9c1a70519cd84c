"""What the benchmarks record about the machine they ran on."""

import os
import platform


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
