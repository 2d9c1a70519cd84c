"""STDP on COBA: what pair-based additive STDP (AlignPostProj.add_stdp, Song, Miller & Abbott
2000) on the excitatory recurrent synapses costs libbrain's two engines, next to the same
network with static weights and to Brian2 with the same rule, in one run.

The network of models/coba.json at N neurons (80 synapses per neuron, forward Euler, dt
0.1 ms), built from its parts, with one weight per E->E synapse (starting at w_exc = 0.6). With
STDP, those weights learn: traces of 20 ms, A_plus = 0.02 w_max, A_minus = 1.05 A_plus, weights
clipped to [0, w_max = 2 w_exc]. Brian2 runs cpp_standalone, one thread, the same rule
(bench/coba/brian2_coba.py --stdp; its traces are per synapse and event-driven; a presynaptic and
a postsynaptic spike in one step pair there, not here).

    python3 bench/coba/stdp_bench.py                # N = 4000, 200 ms (module engine), 1000 ms (others)
    python3 bench/coba/stdp_bench.py --no-brian2

Reports seconds of wall time per simulated second, the rates, the E->E weights' mean at the end
and the ratio to the same simulator with static weights; writes bench/results/stdp_cpu.md and
.json with the machine and the commit.
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
W_EXC, W_INH = 0.6, 6.7
W_MAX = 2 * W_EXC
A_PLUS = 0.02 * W_MAX
A_MINUS = 1.05 * A_PLUS


def build(n, stdp, seed=42):
    import torch

    import brain

    m = brain.models
    n_exc = n * 4 // 5
    sizes = {"E": n_exc, "I": n - n_exc}
    net = m.Network()
    g = torch.Generator().manual_seed(seed)
    pops = {}
    for name, size in sizes.items():
        pops[name] = net.add(name, m.LIF(size, V_rest=-60.0, V_reset=-60.0, V_th=-50.0, tau=20.0, tau_ref=5.0,
                                         method="euler"))
        pops[name].set_V_init(-55.0 + 2.0 * torch.randn(size, generator=g))
    for k, (pre, post) in enumerate((("E", "E"), ("E", "I"), ("I", "E"), ("I", "I"))):
        indptr, indices = m.fixed_prob(sizes[pre], sizes[post], 80.0 / n, pre != post, seed + k)
        w = W_EXC if pre == "E" else W_INH
        weights = torch.full((indices.numel(),), w) if pre == post == "E" else torch.tensor(w)
        comm = m.CsrComm(indptr, indices, weights, sizes[pre], sizes[post])
        syn = m.Expon(sizes[post], 5.0 if pre == "E" else 10.0, method="euler")
        proj = net.add(f"{pre}2{post}", m.AlignPostProj(pops[pre], comm, syn, m.COBA(0.0 if pre == "E" else -80.0),
                                                        pops[post]))
        if stdp and pre == post == "E":
            proj.add_stdp(tau_plus=20.0, tau_minus=20.0, A_plus=A_PLUS, A_minus=A_MINUS, w_min=0.0, w_max=W_MAX)
    net.reset_state()
    return net


def run_brain(n, duration_ms, stdp, repeats, engine, threads=None):
    import torch

    import brain

    times, counts, means = [], None, []
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for _ in range(repeats):
            # A fresh network each time: the weights learn as it runs.
            net = build(n, stdp)
            runner = brain.models.Runner(net, monitors=[], inputs={"E.input": 20.0, "I.input": 20.0}, progress=False,
                                         engine=engine)
            start = time.perf_counter()
            out = runner.run(duration_ms)
            times.append((time.perf_counter() - start) / (duration_ms / 1000.0))
            counts = out["spike_counts"]
            means.append(float(net.state_dict()["E2E.comm.weights"].mean()))
    finally:
        torch.set_num_threads(before)
    assert out["engine"] == engine, out["engine"]
    times.sort()
    n_exc = n * 4 // 5
    sim_s = duration_ms / 1000.0
    rates = {"E": counts["E"] / (n_exc * sim_s), "I": counts["I"] / ((n - n_exc) * sim_s)}
    return {"seconds_per_simulated_second": times[len(times) // 2], "all": times, "rates_hz": rates,
            "mean_weight": means[-1]}


def run_brian2(n, duration_ms, stdp):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [SYSTEM_PYTHON, os.path.join(HERE, "brian2_coba.py"), str(n), str(duration_ms), tmp, "--method", "euler"]
        if stdp:
            cmd += ["--stdp", f"{A_PLUS},{A_MINUS},{W_MAX}"]
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
    for label, stdp in (("static", False), ("STDP", True)):
        print(f"{label} ...", file=sys.stderr, flush=True)
        row = {"weights": label,
               "fast": run_brain(a.n, a.fast_duration, stdp, a.repeats, "fast"),
               "fast_1thread": run_brain(a.n, a.fast_duration, stdp, a.repeats, "fast", threads=1),
               "modules": run_brain(a.n, a.duration, stdp, a.repeats, "modules")}
        if have_brian2:
            row["brian2"] = run_brian2(a.n, a.brian2_duration, stdp)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    def t(r):
        return r["seconds_per_simulated_second"] if r and "error" not in r else None

    base = {key: t(rows[0].get(key)) for key in ("fast", "fast_1thread", "modules", "brian2")}
    head = (f"COBA E/I, N = {a.n:,}, 80 synapses/neuron, forward Euler, dt 0.1 ms, one weight per E->E synapse "
            f"(static, or learning by pair-based STDP: A+ = {A_PLUS:g}, A- = {A_MINUS:g}, w in [0, {W_MAX:g}], "
            f"traces 20 ms); CPU on {cpu_model()}; commit {commit()}.\nSeconds of wall time per simulated second "
            f"(lower is better), the median of {a.repeats} runs of a fresh network: brain fast engine "
            f"({a.fast_duration:g} ms; all threads torch uses, and one thread), brain module engine ({a.duration:g} ms), "
            f"Brian2 cpp_standalone (one thread, {a.brian2_duration:g} ms, its own loop timer, one run). 'vs static': "
            f"the time over the same simulator's time with static weights. Rates E/I in Hz and the E->E weights' "
            f"mean at the end (fast engine, 1 s; Brian2, 1 s).\n")
    cols = ["weights", "brain fast", "vs static", "fast 1 thread", "vs static", "brain modules", "vs static", "Brian2",
            "vs static", "Brian2 / fast 1 thread", "rates brain", "rates Brian2", "mean w brain", "mean w Brian2"]
    lines = [head, "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def cell(r, key):
        v = t(r.get(key))
        return f"{v:.3f}" if v is not None else "n/a"

    def rel(r, key):
        v = t(r.get(key))
        return f"{v / base[key]:.1f}x" if v is not None and base[key] else "n/a"

    for r in rows:
        b2, one = t(r.get("brian2")), t(r.get("fast_1thread"))
        lines.append("| " + " | ".join([
            r["weights"], cell(r, "fast"), rel(r, "fast"), cell(r, "fast_1thread"), rel(r, "fast_1thread"),
            cell(r, "modules"), rel(r, "modules"), cell(r, "brian2"), rel(r, "brian2"),
            f"{b2 / one:.2f}x" if b2 and one else "n/a",
            "{E:.1f}/{I:.1f}".format(**r["fast"]["rates_hz"]),
            "{E:.1f}/{I:.1f}".format(**r["brian2"]["rates_hz"]) if b2 else "",
            f"{r['fast']['mean_weight']:.4f}",
            f"{r['brian2']['mean_weight']:.4f}" if b2 and "mean_weight" in r["brian2"] else "-"]) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    write_results(os.path.join(a.out, "stdp_cpu"), table, {"machine": cpu_model(), "commit": commit(), "n": a.n,
                                                           "rows": rows})


if __name__ == "__main__":
    main()
