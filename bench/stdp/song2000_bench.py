"""Brian2's STDP benchmark (Song, Miller & Abbott 2000; Brian2's examples/synapses/STDP.py):
N Poisson inputs at 15 Hz onto one conductance-based integrate-and-fire neuron through
synapses learning by additive STDP, in libbrain and in Brian2, in one run.

libbrain: PoissonGroup -> AlignPostProj (CsrComm, one weight per synapse, drawn uniformly in
[0, gmax], gmax = 0.01 * 1000 / N: the example's at its N = 1000, the same drive at any N; Expon 5 ms, COBA E = 0) -> LIF (tau 10 ms, rest -74, threshold -54, reset -60 mV,
no refractoriness, forward Euler), add_stdp(A_plus = 0.01 gmax, A_minus = 1.05 A_plus, traces
20 ms, w in [0, gmax]). Brian2: the same equations and rule (bench/stdp/brian2_song2000.py,
cpp_standalone, one thread; its traces are per synapse and event-driven, and a pre- and a
postsynaptic spike in one step pair there, not here). dt 0.1 ms.

    python3 bench/stdp/song2000_bench.py                 # N = 1,000, 10,000 and 100,000; 10 s simulated
    python3 bench/stdp/song2000_bench.py --sizes 1000 --seconds 100 --no-brian2

Reports seconds of wall time per simulated second (libbrain's fast engine on all threads and
on one, its module engine on a shorter run), the output rate and what the rule did to the
weights (their mean and the fraction above gmax / 2: the distribution turns bimodal); writes
bench/results/song2000_cpu.md and .json with the machine and the commit.
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


def gmax_of(n):
    return 0.01 * 1000 / n


def build(n, seed=7):
    import torch

    import brain

    m = brain.models
    net = m.Network()
    inputs = net.add("input", m.PoissonGroup(n, 15.0, seed=seed))
    neuron = net.add("neuron", m.LIF(1, V_rest=-74.0, V_reset=-60.0, V_th=-54.0, tau=10.0, method="euler"))
    neuron.set_V_init(torch.tensor([-60.0]))
    gmax = gmax_of(n)
    weights = torch.rand(n, generator=torch.Generator().manual_seed(seed)) * gmax
    comm = m.CsrComm(torch.arange(n + 1, dtype=torch.int32), torch.zeros(n, dtype=torch.int32), weights, n, 1)
    proj = net.add("S", m.AlignPostProj(inputs, comm, m.Expon(1, 5.0, method="euler"), m.COBA(0.0), neuron))
    proj.add_stdp(tau_plus=20.0, tau_minus=20.0, A_plus=0.01 * gmax, A_minus=0.0105 * gmax, w_min=0.0, w_max=gmax)
    net.reset_state()
    return net


def run_brain(n, seconds, engine, threads=None):
    import torch

    import brain

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        net = build(n)
        runner = brain.models.Runner(net, monitors=[], progress=False, engine=engine)
        start = time.perf_counter()
        out = runner.run(seconds * 1000.0)
        wall = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    assert out["engine"] == engine, out["engine"]
    w = net.state_dict()["S.comm.weights"] / gmax_of(n)
    return {"seconds_per_simulated_second": wall / seconds, "rate_hz": out["spike_counts"]["neuron"] / seconds,
            "mean_weight": float(w.mean()), "strong_fraction": float((w > 0.5).float().mean())}


def run_brian2(n, seconds):
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([SYSTEM_PYTHON, os.path.join(HERE, "brian2_song2000.py"), str(n), str(seconds), tmp],
                              capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--seconds", type=float, default=10.0, help="simulated seconds (fast engine and Brian2)")
    ap.add_argument("--module-seconds", type=float, default=1.0, help="simulated seconds on the module engine")
    ap.add_argument("--no-brian2", action="store_true")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    a = ap.parse_args()
    have_brian2 = (not a.no_brian2 and os.path.exists(SYSTEM_PYTHON) and
                   subprocess.run([SYSTEM_PYTHON, "-c", "import brian2"], capture_output=True).returncode == 0)
    rows = []
    for n in a.sizes:
        print(f"N = {n} ...", file=sys.stderr, flush=True)
        row = {"n": n, "fast": run_brain(n, a.seconds, "fast"), "fast_1thread": run_brain(n, a.seconds, "fast", 1),
               "modules": run_brain(n, a.module_seconds, "modules")}
        if have_brian2:
            row["brian2"] = run_brian2(n, a.seconds)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    def t(r):
        return r["seconds_per_simulated_second"] if r and "error" not in r else None

    head = (f"Song, Miller & Abbott (2000) STDP, Brian2's example: N Poisson inputs at 15 Hz onto one neuron, "
            f"dt 0.1 ms; CPU on {cpu_model()}; commit {commit()}.\nSeconds of wall time per simulated second (lower "
            f"is better): brain fast engine ({a.seconds:g} s simulated; all threads torch uses, and one thread), brain "
            f"module engine ({a.module_seconds:g} s), Brian2 cpp_standalone (one thread, {a.seconds:g} s, its own loop "
            f"timer). Output rate (Hz) and the final weights (mean / gmax, fraction above gmax / 2) after {a.seconds:g} s "
            f"(fast engine; Brian2).\n")
    cols = ["N", "brain fast", "fast 1 thread", "brain modules", "Brian2", "Brian2 / fast 1 thread", "rate brain",
            "rate Brian2", "w brain (mean, strong)", "w Brian2 (mean, strong)"]
    lines = [head, "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def cell(r, key):
        v = t(r.get(key))
        return f"{v:.3f}" if v is not None else "n/a"

    for r in rows:
        b2, one = t(r.get("brian2")), t(r.get("fast_1thread"))
        fw = r["fast"]
        bw = r.get("brian2") if b2 else None
        lines.append("| " + " | ".join([
            f"{r['n']:,}", cell(r, "fast"), cell(r, "fast_1thread"), cell(r, "modules"), cell(r, "brian2"),
            f"{b2 / one:.2f}x" if b2 and one else "n/a", f"{fw['rate_hz']:.1f}", f"{bw['rate_hz']:.1f}" if bw else "",
            f"{fw['mean_weight']:.2f}, {fw['strong_fraction']:.2f}",
            f"{bw['mean_weight']:.2f}, {bw['strong_fraction']:.2f}" if bw else ""]) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    write_results(os.path.join(a.out, "song2000_cpu"), table, {"machine": cpu_model(), "commit": commit(),
                                                               "seconds": a.seconds, "rows": rows})


if __name__ == "__main__":
    main()
