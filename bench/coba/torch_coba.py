"""A careful plain-PyTorch COBA E/I network: the baseline the fast engine is measured against.

The network of models/coba.json scaled to N neurons at 80 synapses per neuron, forward Euler,
dt = 0.1 ms, written as a PyTorch user would: state tensors, one synaptic matrix per
receptor (dense, or torch.sparse CSR of A^T so the input is one matvec with the spike
vector), no Python work per neuron. On CUDA the step is captured once in a CUDA graph.

    python3 bench/coba/torch_coba.py N DURATION_MS [--layout dense|csr] [--device cpu|cuda] [--no-graph]

Prints one JSON line: loop seconds per simulated second and the rates.
"""

import argparse
import json
import time

import warnings

import torch

warnings.filterwarnings("ignore", message=".*[Ss]parse.*")


def random_csr_t(n_pre, n_post, p, gen, device):
    """A^T as CSR [n_post, n_pre]: each presynaptic neuron gets Binomial(n_post, p) random
    targets (O(synapses) to build; the rare duplicate pair counts twice)."""
    fanout = torch.binomial(torch.full((n_pre,), float(n_post)), torch.full((n_pre,), p), generator=gen).long()
    pre = torch.repeat_interleave(torch.arange(n_pre), fanout)
    post = torch.randint(0, n_post, (pre.numel(),), generator=gen)
    values = torch.ones(post.numel())
    coo = torch.sparse_coo_tensor(torch.stack([post, pre]), values, (n_post, n_pre)).coalesce()
    return coo.to_sparse_csr().to(device)


def build(n, layout, device, seed=42):
    gen = torch.Generator().manual_seed(seed)
    n_exc = n * 4 // 5
    p = 80.0 / n
    mats = {}
    for name, pre in (("ee", slice(0, n_exc)), ("ie", slice(n_exc, n))):
        n_pre = pre.stop - pre.start
        a_t = random_csr_t(n_pre, n, p, gen, device)
        mats[name] = (pre, a_t.to_dense() if layout == "dense" else a_t)
    v = (-55.0 + 2.0 * torch.randn(n, generator=gen)).to(device)
    return n_exc, mats, v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("duration_ms", type=float)
    ap.add_argument("--layout", choices=["dense", "csr"], default="csr")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-graph", action="store_true")
    a = ap.parse_args()
    device = torch.device(a.device)
    n = a.n
    n_exc, mats, v = build(n, a.layout, device)
    dt, taum, taue, taui = 0.1, 20.0, 5.0, 10.0
    El, Vt, Vr, Ee, Ei, I, we, wi = -60.0, -50.0, -60.0, 0.0, -80.0, 20.0, 0.6, 6.7
    ref_steps = 50
    ge = torch.zeros(n, device=device)
    gi = torch.zeros(n, device=device)
    since = torch.full((n,), ref_steps, device=device, dtype=torch.int32)
    spikes = torch.zeros(n, device=device)
    count = torch.zeros(n, device=device)
    ee_pre, ee = mats["ee"]
    ie_pre, ie = mats["ie"]

    def step():
        nonlocal v, ge, gi, since, spikes
        dv = (ge * (Ee - v) + gi * (Ei - v) - (v - El) + I) * (dt / taum)
        v_new = torch.where(since < ref_steps, v, v + dv)
        fired = v_new > Vt
        v.copy_(torch.where(fired, torch.full_like(v, Vr), v_new))
        since.copy_(torch.where(fired, torch.ones_like(since), torch.clamp(since + 1, max=ref_steps)))
        s = fired.to(v.dtype)
        spikes.copy_(s)
        count.add_(s)
        ge.copy_(ge - ge * (dt / taue) + we * (ee @ s[ee_pre]))
        gi.copy_(gi - gi * (dt / taui) + wi * (ie @ s[ie_pre]))

    steps = int(round(a.duration_ms / dt))
    graph = None
    if device.type == "cuda" and not a.no_graph:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        count.zero_()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        graph.replay() if graph is not None else step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    sim_s = a.duration_ms / 1000.0
    rates = {"E": float(count[:n_exc].sum()) / (n_exc * sim_s), "I": float(count[n_exc:].sum()) / ((n - n_exc) * sim_s)}
    print(json.dumps({"n": n, "layout": a.layout, "device": str(device), "cuda_graph": graph is not None,
                      "seconds_per_simulated_second": wall / sim_s, "rates_hz": rates}))


if __name__ == "__main__":
    main()
