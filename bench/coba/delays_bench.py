"""Per-synapse delays (AlignPostProj.set_synapse_delays) on COBA: what they cost libbrain's two
engines, next to the same network without delays and to Brian2 with the same kind of delays,
in one run.

The network of models/coba.json at N neurons (80 synapses per neuron, forward Euler, dt
0.1 ms), built by brain.models.ei_network, with every synapse's delay drawn as
spacing * randint(0, max // spacing + 1) steps. Delay sets: "none"; "5 values" (1 to 5 ms in
1 ms steps, plus 0); "51 values" (0 to 5 ms on the 0.1 ms grid); "201 values" (0 to 20 ms).
brain runs on the fast engine (all threads torch uses, and one thread) and on the module
engine; Brian2 runs cpp_standalone, one thread, its delays drawn by the same rule
(bench/coba/brian2_coba.py --delay-steps-max).

    python3 bench/coba/delays_bench.py                # N = 4000, 200 ms (brain), 1000 ms (Brian2)
    python3 bench/coba/delays_bench.py --no-brian2

Reports seconds of wall time per simulated second, the delivery each projection took on the
module engine (by delay group or by synapse; the fast engine uses a spike queue), rates,
and the ratio to the same engine without delays; writes
bench/results/delays_cpu.md and .json with the machine and the commit.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from machine import commit, cpu_model, write_results  # noqa: E402  (bench/machine.py)

SYSTEM_PYTHON = "/usr/bin/python3"
DELAY_SETS = [("none", 0, 1), ("5 values", 50, 10), ("51 values", 50, 1), ("201 values", 200, 1)]
PROJECTIONS = ("E2E", "E2I", "I2E", "I2I")


def build(n, delay_max, spacing):
    import torch

    import brain

    n_exc = n * 4 // 5
    net = brain.models.ei_network("coba", seed=42, n_exc=n_exc, n_inh=n - n_exc, p=80.0 / n, method="euler",
                                  delay_ms=0.0)
    deliveries = {}
    if delay_max:
        g = torch.Generator().manual_seed(0)
        for name in PROJECTIONS:
            proj = getattr(net, name)
            nnz = proj.comm.indices.numel()
            proj.set_synapse_delays(spacing * torch.randint(0, delay_max // spacing + 1, (nnz,), generator=g))
            deliveries[name] = "by delay" if proj.synapse_delay_groups() is not None else "by synapse"
        net.reset_state()
    return net, deliveries


def run_brain(n, duration_ms, delay_max, spacing, repeats, engine, threads=None):
    import torch

    import brain

    net, deliveries = build(n, delay_max, spacing)
    runner = brain.models.Runner(net, monitors=[], inputs={"E.input": 20.0, "I.input": 20.0}, progress=False,
                                 engine=engine)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        runner.run(20.0)  # warm-up: the allocator and the first steps' one-time work
        times, counts = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            out = runner.run(duration_ms)
            times.append((time.perf_counter() - start) / (duration_ms / 1000.0))
            counts = out["spike_counts"]
    finally:
        torch.set_num_threads(before)
    assert out["engine"] == engine, out["engine"]
    times.sort()
    n_exc = n * 4 // 5
    sim_s = duration_ms / 1000.0
    rates = {"E": counts["E"] / (n_exc * sim_s), "I": counts["I"] / ((n - n_exc) * sim_s)}
    return {"seconds_per_simulated_second": times[len(times) // 2], "all": times, "rates_hz": rates,
            "deliveries": deliveries}


def run_brian2(n, duration_ms, delay_max, spacing):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [SYSTEM_PYTHON, os.path.join(HERE, "brian2_coba.py"), str(n), str(duration_ms), tmp, "--method", "euler"]
        if delay_max:
            cmd += ["--delay-steps-max", str(delay_max), "--delay-step-spacing", str(spacing)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--duration", type=float, default=200.0, help="simulated ms per module-engine run")
    ap.add_argument("--fast-duration", type=float, default=1000.0, help="simulated ms per fast-engine run")
    ap.add_argument("--brian2-duration", type=float, default=1000.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-brian2", action="store_true")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    a = ap.parse_args()
    have_brian2 = (not a.no_brian2 and os.path.exists(SYSTEM_PYTHON) and
                   subprocess.run([SYSTEM_PYTHON, "-c", "import brian2"], capture_output=True).returncode == 0)
    rows = []
    for label, delay_max, spacing in DELAY_SETS:
        print(f"{label} ...", file=sys.stderr, flush=True)
        row = {"delays": label, "delay_steps_max": delay_max, "spacing": spacing,
               "fast": run_brain(a.n, a.fast_duration, delay_max, spacing, a.repeats, "fast"),
               "fast_1thread": run_brain(a.n, a.fast_duration, delay_max, spacing, a.repeats, "fast", threads=1),
               "modules": run_brain(a.n, a.duration, delay_max, spacing, a.repeats, "modules")}
        if have_brian2:
            row["brian2"] = run_brian2(a.n, a.brian2_duration, delay_max, spacing)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    def t(r):
        return r["seconds_per_simulated_second"] if r and "error" not in r else None

    base = {key: t(rows[0].get(key)) for key in ("fast", "fast_1thread", "modules", "brian2")}
    head = (f"COBA E/I, N = {a.n:,}, 80 synapses/neuron, forward Euler, dt 0.1 ms, a delay per synapse; CPU on "
            f"{cpu_model()}; commit {commit()}.\nSeconds of wall time per simulated second (lower is better), the "
            f"median of {a.repeats} runs: brain fast engine ({a.fast_duration:g} ms runs; all threads torch uses, and "
            f"one thread), brain module engine ({a.duration:g} ms runs), Brian2 cpp_standalone (one thread, "
            f"{a.brian2_duration:g} ms, its own loop timer, one run). 'vs none': the time over the same simulator's "
            f"time without delays. Deliveries on the module engine: E2E/E2I/I2E/I2I by delay group (g) or by "
            f"synapse (s); the fast engine uses a spike queue. Rates E/I in Hz (fast engine; Brian2).\n")
    cols = ["delays", "brain fast", "vs none", "fast 1 thread", "vs none", "brain modules", "vs none",
            "deliveries", "Brian2", "vs none", "Brian2 / fast 1 thread", "rates brain", "rates Brian2"]
    lines = [head, "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    short = {"by delay": "g", "by synapse": "s"}

    def cell(r, key):
        v = t(r.get(key))
        return f"{v:.3f}" if v is not None else "n/a"

    def rel(r, key):
        v = t(r.get(key))
        return f"{v / base[key]:.1f}x" if v is not None and base[key] else "n/a"

    for r in rows:
        deliveries = r["modules"]["deliveries"]
        b2, one = t(r.get("brian2")), t(r.get("fast_1thread"))
        lines.append("| " + " | ".join([
            r["delays"], cell(r, "fast"), rel(r, "fast"), cell(r, "fast_1thread"), rel(r, "fast_1thread"),
            cell(r, "modules"), rel(r, "modules"),
            "/".join(short[deliveries[p]] for p in PROJECTIONS) if deliveries else "-",
            cell(r, "brian2"), rel(r, "brian2"), f"{b2 / one:.2f}x" if b2 and one else "n/a",
            "{E:.1f}/{I:.1f}".format(**r["fast"]["rates_hz"]),
            "{E:.1f}/{I:.1f}".format(**r["brian2"]["rates_hz"]) if b2 else ""]) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    write_results(os.path.join(a.out, "delays_cpu"), table, {"machine": cpu_model(), "commit": commit(), "n": a.n,
                                                             "rows": rows})


if __name__ == "__main__":
    main()
