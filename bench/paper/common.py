"""What every bench/paper script shares: its options, the machine record, and where the
figure and the numbers behind it are written (bench/paper/out/<name>.png and .json)."""

import argparse
import datetime
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))  # bench/: machine.py, csr_bench.py, jitc_bench.py
from machine import commit, cpu_model  # noqa: E402  (bench/machine.py)

OUT = os.path.join(HERE, "out")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-brian lives there


def parser(doc):
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: minutes on a laptop CPU (what the tests run)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=OUT, help="directory for <name>.png and <name>.json")
    return p


def machine(device):
    desc = f"{cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device == "cuda":
        desc = f"{torch.cuda.get_device_name()}; " + desc
    return desc


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


class Experiment:
    """Times the script and writes its results: Experiment(name, args) ... .save(fig, data, claims)."""

    def __init__(self, name, args):
        self.name, self.args, self.start = name, args, time.time()
        torch.manual_seed(0)

    def save(self, fig, data, claims, title):
        """claims: {statement: bool}, what the figure shows, checked on the numbers."""
        os.makedirs(self.args.out, exist_ok=True)
        png = os.path.join(self.args.out, self.name + ".png")
        fig.savefig(png, dpi=110, bbox_inches="tight")
        record = {"name": self.name, "title": title, "mode": "quick" if self.args.quick else "full",
                  "device": self.args.device, "machine": machine(self.args.device), "commit": commit(),
                  "date": datetime.date.today().isoformat(), "seconds": round(time.time() - self.start, 2),
                  "claims": {k: bool(v) for k, v in claims.items()}, "data": data}
        with open(os.path.join(self.args.out, self.name + ".json"), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
        print(f"{self.name}: wrote {png} and {self.name}.json in {record['seconds']} s")
        for k, v in claims.items():
            print(f"  [{'ok' if v else 'NOT MET'}] {k}")
        return record
