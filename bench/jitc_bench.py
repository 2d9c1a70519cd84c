"""JIT connectivity against stored connectivity: time and memory of one synaptic step.

A is N x N with 100 connections per row on average (prob = 100 / N), the same matrix in
every format: libbrain regenerates it from a seed (JIT), or stores it as CSR (built with
brain.ops.jitc_to_csr, int32 indices), torch.sparse CSR, or dense. Two operations:

  event   A^T @ spikes, 1% of the N inputs active (a projection's step; bool spikes)
  float   A @ x with dense x (a reservoir's recurrent step)

    python3 bench/jitc_bench.py --device cpu
    python3 bench/jitc_bench.py --device cuda

Memory: "stored" is what the format keeps between steps (JIT: nothing but the seed); on
CUDA "peak" is the extra device memory the call itself allocates (max_memory_allocated).
torch.sparse needs the transposed matrix for A^T @ spikes: built by brain.ops.csr_to_csc.
Writes bench/results/jitc_<device>.md and .json with the machine description.
"""

import argparse
import os
import sys
import warnings

import torch

import brain
from brain import ops

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csr_bench import fmt_bytes, fmt_ms, machine_description, timer  # noqa: E402
from machine import write_results  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DENSE_LIMIT_BYTES = 2 << 30
SEED = 12345


def peak_extra_bytes(fn, device):
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak


def bench_n(n, firing, device, reps, with_sparse):
    prob = 100.0 / n
    shape = (n, n)
    w = torch.tensor(0.5, device=device)
    g = torch.Generator(device="cpu").manual_seed(1)
    spikes = (torch.rand(n, generator=g) < firing).to(device)
    x = torch.randn(n, generator=g).to(device)
    run = timer(device)

    indptr, indices, values = ops.jitc_to_csr(w, prob, SEED, shape)
    nnz = indices.numel()
    indptr, indices = indptr.int(), indices.int()
    csr_bytes = 4 * (indptr.numel() + 2 * nnz)

    ref_event = ops.event_csr_matmul(indptr, indices, values, spikes, shape, transpose=True)
    jit_event = ops.event_jitc_matmul(spikes, w, prob, SEED, shape, "homo", True)
    torch.testing.assert_close(jit_event, ref_event, rtol=1e-4, atol=1e-4)
    ref_float = ops.csr_matmul(indptr, indices, values, x, shape)
    jit_float = ops.jitc_matmul(x, w, prob, SEED, shape)
    torch.testing.assert_close(jit_float, ref_float, rtol=1e-4, atol=1e-4)

    row = {"n": n, "prob": prob, "nnz": nnz, "firing": firing,
           "csr_bytes": csr_bytes, "dense_bytes": 4 * n * n}
    row["jit_event_ms"] = run(lambda: ops.event_jitc_matmul(spikes, w, prob, SEED, shape, "homo", True), reps)
    row["csr_event_ms"] = run(lambda: ops.event_csr_matmul(indptr, indices, values, spikes, shape, transpose=True), reps)
    row["jit_float_ms"] = run(lambda: ops.jitc_matmul(x, w, prob, SEED, shape), max(3, reps // 3))
    row["csr_float_ms"] = run(lambda: ops.csr_matmul(indptr, indices, values, x, shape), reps)
    row["jit_event_peak_bytes"] = peak_extra_bytes(
        lambda: ops.event_jitc_matmul(spikes, w, prob, SEED, shape, "homo", True), device)
    row["jit_float_peak_bytes"] = peak_extra_bytes(lambda: ops.jitc_matmul(x, w, prob, SEED, shape), device)

    row["sparse_event_ms"] = row["sparse_float_ms"] = None
    if with_sparse:
        vals = values.expand(nnz) if values.dim() == 0 else values
        a_sparse = torch.sparse_csr_tensor(indptr.long(), indices.long(), vals.contiguous(), shape)
        csc_indptr, csc_rows, perm = ops.csr_to_csc(indptr, indices, shape)
        at_sparse = torch.sparse_csr_tensor(csc_indptr.long(), csc_rows.long(), vals[perm.long()], shape)
        sf = spikes.float()
        row["sparse_event_ms"] = run(lambda: at_sparse @ sf.unsqueeze(1), reps)
        row["sparse_float_ms"] = run(lambda: a_sparse @ x.unsqueeze(1), reps)
        del a_sparse, at_sparse
    row["dense_event_ms"] = row["dense_float_ms"] = None
    if 4 * n * n <= DENSE_LIMIT_BYTES:
        dense = ops.jitc_materialize(w, prob, SEED, shape)
        sf = spikes.float()
        row["dense_event_ms"] = run(lambda: sf @ dense, reps)
        row["dense_float_ms"] = run(lambda: dense @ x, reps)
        del dense
    return row


def table(rows, device):
    lines = ["| N | nnz | op | JIT ms | CSR ms | torch.sparse ms | dense ms | JIT vs CSR | stored: JIT | CSR | dense |"
             + (" JIT peak |" if device == "cuda" else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if device == "cuda" else "")]
    for r in rows:
        for op in ("event", "float"):
            label = f"A^T @ spikes ({100 * r['firing']:g}%)" if op == "event" else "A @ x (dense x)"
            line = (f"| {r['n']:,} | {r['nnz']:,} | {label} | {fmt_ms(r[f'jit_{op}_ms'])} | "
                    f"{fmt_ms(r[f'csr_{op}_ms'])} | "
                    f"{'-' if r[f'sparse_{op}_ms'] is None else fmt_ms(r[f'sparse_{op}_ms'])} | "
                    f"{fmt_ms(r[f'dense_{op}_ms'])} | {r[f'csr_{op}_ms'] / r[f'jit_{op}_ms']:.2f}x | "
                    f"8 B | {fmt_bytes(r['csr_bytes'])} | {fmt_bytes(r['dense_bytes'])} |")
            if device == "cuda":
                line += f" {fmt_bytes(r[f'jit_{op}_peak_bytes'])} |"
            lines.append(line)
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--firing", type=float, default=0.01)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("jitc_bench: --device cuda but torch sees no GPU")
    rows = []
    sizes = [int(s) for s in args.sizes.split(",")]
    for i, n in enumerate(sizes, 1):
        print(f"[{i}/{len(sizes)}] N={n:,} ...", file=sys.stderr, flush=True)
        reps = 30 if n <= 10_000 else 10 if n <= 100_000 else 5
        with_sparse = args.device == "cuda" or n <= 100_000
        rows.append(bench_n(n, args.firing, args.device, reps, with_sparse))

    machine = machine_description(args.device)
    text = (f"JIT connectivity vs stored, N x N with 100 connections per row, on {args.device}: {machine}; "
            f"libbrain {brain.__version__}.\nMedian milliseconds per call; 'JIT vs CSR' = CSR time / JIT time "
            f"(above 1: JIT is faster). torch.sparse on CPU only up to N = 1e5 (its A^T build is slow).\n"
            + ("On CUDA: GPU time per call, calls captured in a CUDA graph and replayed (no host launch cost).\n"
               if args.device == "cuda" else "") + "\n"
            + table(rows, args.device))
    print(text)
    write_results(os.path.join(args.out, f"jitc_{args.device}"), text,
                  {"device": args.device, "machine": machine, "libbrain": brain.__version__, "rows": rows})


if __name__ == "__main__":
    main()
