"""JIT connectivity as networks grow (the papers' Fig. 5A-C).

A-B: one synaptic step A^T @ spikes (1% firing) with N x N connectivity at 100 synapses per
row (p = 100 / N): JIT (regenerated from a seed each call, nothing stored) against CSR and
dense, time and memory, up to sizes where dense and then CSR no longer fit (those points are
reported as not fitting, from their exact sizes). Uses bench/jitc_bench.py's cases.
C: the COBA-LIF network (80 synapses per neuron) with JIT connectivity on the fast engine as
N grows: time per simulated second and the process's memory, against stored CSR.

    python3 bench/paper/jit_scaling.py [--quick] [--device cuda]
"""

import os
import time

import torch

import brain
from brain import ops
from common import Experiment, parser, pyplot
from csr_bench import timer  # noqa: E402
from jitc_bench import SEED, bench_n  # noqa: E402


def available_bytes(device):
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


def rss_mb():
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def jit_only(n, firing, device, reps):
    prob, shape, w = 100.0 / n, (n, n), torch.tensor(0.5, device=device)
    spikes = (torch.rand(n, generator=torch.Generator().manual_seed(1)) < firing).to(device)
    ms = timer(device)(lambda: ops.event_jitc_matmul(spikes, w, prob, SEED, shape, "homo", True), reps)
    return {"n": n, "prob": prob, "nnz": None, "firing": firing, "jit_event_ms": ms, "csr_event_ms": None,
            "dense_event_ms": None, "csr_bytes": 4 * (n + 1 + 2 * 100 * n), "dense_bytes": 4 * n * n}


def coba_point(n, connectivity, duration, device):
    net = brain.models.ei_network("coba", seed=1, device=device, n_exc=int(0.8 * n), n_inh=n - int(0.8 * n),
                                  p=80.0 / n, connectivity=connectivity, method="euler")
    runner = brain.models.Runner(net, dt=0.1, inputs={"E.input": 20.0, "I.input": 20.0}, progress=False,
                                 engine="fast" if device == "cpu" else "auto")
    t0 = time.time()
    out = runner.run(duration)
    wall = time.time() - t0
    counts = out["spike_counts"]
    return {"n": n, "connectivity": connectivity, "seconds_per_sim_second": wall / (duration / 1000.0),
            "rss_mb": rss_mb(), "rate_hz": (counts["E"] + counts["I"]) / n / (duration / 1000.0)}


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    exp = Experiment("jit_scaling", args)
    dev = args.device
    if args.quick:
        sizes, coba_sizes, duration, reps = [1000, 4000, 16000, 64000], [4000, 16000], 50.0, 5
    else:
        sizes = [1000, 4000, 16000, 64000, 250_000, 1_000_000, 4_000_000]
        coba_sizes, duration, reps = [4000, 40_000, 400_000, 1_000_000], 200.0, 20
    room = available_bytes(dev) * 0.5
    op_rows = []
    for n in sizes:
        if 4 * (n + 1 + 200 * n) * 2 < room:  # CSR (and its build) fits
            op_rows.append(bench_n(n, 0.01, dev, reps, with_sparse=False))
        else:
            op_rows.append(jit_only(n, 0.01, dev, reps))
        r = op_rows[-1]
        r["jit_bytes"] = 8 + n // 8 + 4 * n  # seed/prob, the spikes (bits) and the output: all it keeps
        r["csr_fits"] = r["csr_event_ms"] is not None
        r["dense_fits"] = r["dense_bytes"] < room
    coba_rows = []
    for n in coba_sizes:
        coba_rows.append(coba_point(n, "jit", duration, dev))
        if 4 * 80 * n * 2 < room:
            coba_rows.append(coba_point(n, "csr", duration, dev))

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    ns = [r["n"] for r in op_rows]
    axes[0].loglog(ns, [r["jit_bytes"] for r in op_rows], "o-", label="JIT (nothing stored)")
    axes[0].loglog(ns, [r["csr_bytes"] for r in op_rows], "s-", label="CSR")
    axes[0].loglog(ns, [r["dense_bytes"] for r in op_rows], "x-", label="dense")
    axes[0].axhline(available_bytes(dev), color="grey", ls="--", lw=0.8, label=f"free {dev} memory")
    axes[0].set(xlabel="N", ylabel="bytes", title="memory of one N x N projection (100 per row)")
    axes[0].legend(fontsize=8)
    for key, label, style in (("jit_event_ms", "JIT", "o-"), ("csr_event_ms", "CSR", "s-"),
                              ("dense_event_ms", "dense", "x-")):
        pts = [(r["n"], r[key]) for r in op_rows if r.get(key) is not None]
        axes[1].loglog([x for x, _ in pts], [y for _, y in pts], style, label=label)
    axes[1].set(xlabel="N", ylabel="ms per A^T @ spikes (1% firing)", title="time of one step")
    axes[1].legend(fontsize=8)
    for conn, style in (("jit", "o-"), ("csr", "s-")):
        pts = [r for r in coba_rows if r["connectivity"] == conn]
        axes[2].loglog([r["n"] for r in pts], [r["seconds_per_sim_second"] for r in pts], style,
                       label=f"COBA-LIF, {conn.upper()}")
    axes[2].set(xlabel="N (neurons, 80 synapses each)", ylabel="s per simulated second",
                title="COBA-LIF scaled up (fast engine)")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"JIT connectivity scaling on {dev}")
    big = op_rows[-1]
    jit_ms = [r["jit_event_ms"] for r in op_rows]
    claims = {"JIT memory grows only with the vectors (O(N)) while CSR grows with the synapses":
                  big["csr_bytes"] > 40 * big["jit_bytes"]
                  and op_rows[0]["csr_bytes"] / op_rows[0]["jit_bytes"] > 40,
              "dense does not fit at the largest size and JIT still runs": not big["dense_fits"] and jit_ms[-1] > 0,
              "JIT and CSR COBA runs fire at the same rate (same statistics)":
                  all(abs(a["rate_hz"] - b["rate_hz"]) < 0.25 * b["rate_hz"] + 1.0
                      for a in coba_rows for b in coba_rows
                      if a["n"] == b["n"] and a["connectivity"] == "jit" and b["connectivity"] == "csr")}
    return exp.save(fig, {"ops": op_rows, "coba": coba_rows, "coba_duration_ms": duration}, claims,
                    "JIT connectivity scaling")


if __name__ == "__main__":
    main()
