"""Building large random connectivity: libbrain's fixed_prob against plain PyTorch and SciPy.

Each size is an N x N network with 80 synapses per neuron on average (p = 80 / N, no
self-connections), the COBA benchmark's density. Timed, each in the same process:

  brain       brain.models.fixed_prob(N, N, p, False, seed, device): exact Bernoulli by
              geometric skipping (the JIT generator's walk), parallel, built on the device
  torch       plain PyTorch, exact Bernoulli: torch.rand(rows, N) < p over blocks of rows,
              then nonzero (O(N^2) work; up to --torch-max N)
  scipy       scipy.sparse.random(N, N, density=p, format="csr"): exactly round(p N^2)
              synapses placed uniformly (not Bernoulli; up to --scipy-max synapses)

    python3 bench/connectivity_bench.py                  # CPU, 1e6 .. 1e8 synapses
    python3 bench/connectivity_bench.py --device cuda

Writes bench/results/connectivity_<device>.md and .json with the machine description.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

import brain
from brain import models

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csr_bench import machine_description  # noqa: E402
from machine import commit, write_results  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FAN_OUT = 80
SEED = 2024


def timed(fn, device):
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def torch_bernoulli(n, p, device):
    g = torch.Generator(device=device).manual_seed(SEED)
    block = max(1, (1 << 26) // n)
    rows, cols = [], []
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        mask = torch.rand(r1 - r0, n, generator=g, device=device) < p
        mask.diagonal(r0).fill_(False)
        nz = mask.nonzero()
        rows.append(nz[:, 0] + r0)
        cols.append(nz[:, 1])
    rows, cols = torch.cat(rows), torch.cat(cols)
    indptr = torch.zeros(n + 1, dtype=torch.long, device=device)
    indptr[1:] = torch.bincount(rows, minlength=n).cumsum(0)
    return indptr.int(), cols.int()


def bench_n(n, device, torch_max, scipy_max, reps):
    p = FAN_OUT / n
    row = {"n": n, "prob": p}
    best, out = None, None
    for _ in range(reps):
        t, out = timed(lambda: models.fixed_prob(n, n, p, False, SEED, device), device)
        best = t if best is None else min(best, t)
    indptr, indices = out
    row["synapses"] = indices.numel()
    row["brain_s"] = best
    row["bytes"] = indptr.numel() * indptr.element_size() + indices.numel() * indices.element_size()
    del out, indptr, indices
    row["torch_s"] = None
    if n <= torch_max:
        row["torch_s"], _ = timed(lambda: torch_bernoulli(n, p, device), device)
    row["scipy_s"] = None
    if p * n * n <= scipy_max:
        try:
            import scipy.sparse as sp
            row["scipy_s"], _ = timed(lambda: sp.random(n, n, density=p, format="csr", random_state=np.random.default_rng(SEED),
                                                         dtype="float32"), "cpu")
        except ImportError:
            pass
    return row


def fmt_s(v):
    return "-" if v is None else f"{v:.3g}"


def table(rows):
    lines = ["| N | synapses | brain s | torch s | scipy s | torch / brain | scipy / brain | synapses per s (brain) | CSR bytes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = lambda k: "-" if r[k] is None else f"{r[k] / r['brain_s']:.1f}x"  # noqa: E731
        lines.append(f"| {r['n']:,} | {r['synapses']:,} | {fmt_s(r['brain_s'])} | {fmt_s(r['torch_s'])} | "
                     f"{fmt_s(r['scipy_s'])} | {ratio('torch_s')} | {ratio('scipy_s')} | "
                     f"{r['synapses'] / r['brain_s']:.3g} | {r['bytes'] / 2**20:.0f} MiB |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="12500,125000,1250000", help="N, comma-separated")
    parser.add_argument("--torch-max", type=int, default=40000, help="largest N for the O(N^2) torch baseline")
    parser.add_argument("--scipy-max", type=float, default=2e7, help="most synapses for the scipy baseline")
    parser.add_argument("--reps", type=int, default=2, help="brain builds per size (the best is reported)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("connectivity_bench: --device cuda but torch sees no GPU")
    if args.device == "cuda":  # the first CUDA call pays for context creation
        models.fixed_prob(1000, 1000, 0.1, False, 1, "cuda")
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for i, n in enumerate(sizes, 1):
        print(f"[{i}/{len(sizes)}] N={n:,} ...", file=sys.stderr, flush=True)
        rows.append(bench_n(n, args.device, args.torch_max, args.scipy_max, args.reps))
    machine = machine_description(args.device)
    text = (f"Building N x N random connectivity, {FAN_OUT} synapses per neuron (p = {FAN_OUT}/N, no "
            f"self-connections), on {args.device}: {machine}; libbrain {brain.__version__}, commit "
            f"{commit()}.\nSeconds per build (brain: best of "
            f"{args.reps}; baselines: one); ratios above 1: libbrain is faster.\n\n" + table(rows))
    print(text)
    write_results(os.path.join(args.out, f"connectivity_{args.device}"), text,
                  {"device": args.device, "machine": machine, "libbrain": brain.__version__, "commit": commit(),
                   "rows": rows})


if __name__ == "__main__":
    main()
