"""Synaptic propagation benchmark: libbrain's CSR ops against dense and torch.sparse.

One step of a projection: the postsynaptic input A^T @ spikes, with A [N, N] the
connectivity (rows presynaptic) and spikes the neurons that fired this step. Measured side by
side in one process:

  dense           spikes_f @ A              (skipped where A does not fit in memory)
  torch.sparse    At_csr @ spikes_f         (torch's CSR of A^T, built once, its best layout)
  brain float     brain.ops.csr_matmul(..., transpose=True)        (float spikes)
  brain event     brain.ops.event_csr_matmul(..., transpose=True)  (bool spikes)

Cases (issue 3): N in {4k, 40k, 400k} with 80 synapses per row, and N in {4k, 40k} with
connection probability 0.01 and 0.1; firing probability per step 0.1%, 1%, 10%.

    python3 bench/csr_bench.py --device cpu            # full table
    python3 bench/csr_bench.py --device cuda --quick   # smaller sizes
    python3 bench/csr_bench.py --batched               # A^T @ X for a batch X [B, N]

The batched table (trials or training batches run together) has a float X (rates, gradients:
every row visited) and bool spike batches, B in {16, 64}, against torch.sparse (At_csr @ X^T)
and dense (X @ A); written to bench/results/csr_batched_<device>.md and .json.

Prints a markdown table (times in ms and ratios against torch.sparse) and writes it with the
machine description to bench/results/csr_<device>.md and .json.
"""

import argparse
import os
import statistics
import sys
import time
import warnings

import torch

import brain
from brain import ops

import machine
from machine import write_results

HERE = os.path.dirname(os.path.abspath(__file__))
DENSE_LIMIT_BYTES = 2 << 30  # skip dense A above 2 GiB


def machine_description(device):
    desc = f"{machine.cpu_model()}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if device == "cuda":
        desc = f"{torch.cuda.get_device_name()}, " + desc
    return desc


def build_connectivity(n, per_row, prob, device, seed=0):
    """Fixed out-degree (per_row) or Bernoulli(prob) rows, as CSR on `device`."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    if per_row is not None:
        lengths = torch.full((n,), per_row, dtype=torch.long)
    else:
        lengths = torch.binomial(torch.full((n,), float(n)), torch.full((n,), prob), generator=g).long()
    nnz = int(lengths.sum())
    indptr = torch.zeros(n + 1, dtype=torch.long)
    indptr[1:] = lengths.cumsum(0)
    indices = torch.randint(0, n, (nnz,), generator=g)
    weights = torch.rand(nnz, generator=g) * 0.6
    return indptr.to(device, torch.int32), indices.to(device, torch.int32), weights.to(device)


GRAPH_CALLS = 20  # calls per captured CUDA graph


def eager_timer(device):
    """Milliseconds per call as Python issues it, one call at a time: on CUDA this includes
    the host's launch cost, which dominates small calls (events around each call)."""
    if device == "cuda":
        def run(fn, reps):
            fn()
            torch.cuda.synchronize()
            times = []
            for _ in range(reps):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            return statistics.median(times)
    else:
        def run(fn, reps):
            fn()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
            return statistics.median(times)
    return run


def graph_time(fn, reps):
    """GPU milliseconds per call: GRAPH_CALLS calls captured in one CUDA graph, the median
    replay divided by GRAPH_CALLS. What a simulation loop run as a graph pays, without the
    host's launch cost. None if fn cannot be captured."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the default stream, as capture wants
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            for _ in range(GRAPH_CALLS):
                fn()
    except RuntimeError:
        return None
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / GRAPH_CALLS)
    del graph
    return statistics.median(times)


def timer(device):
    """The benchmark's main timing: wall time per call on the CPU, graph-replayed GPU time
    per call on CUDA (eager time where the call cannot be captured)."""
    if device != "cuda":
        return eager_timer(device)
    eager = eager_timer(device)
    return lambda fn, reps: graph_time(fn, reps) or eager(fn, reps)


def baselines(indptr, indices, weights, n, device):
    """A^T as torch.sparse CSR (torch's best layout for A^T @ x, built once), the CSC view
    (csc_indptr, csc_rows, perm) it comes from, and dense A where it fits (else None)."""
    csc = ops.csr_to_csc(indptr, indices, (n, n))
    csc_indptr, csc_rows, perm = csc
    at_sparse = torch.sparse_csr_tensor(csc_indptr.long(), csc_rows.long(), weights[perm.long()], (n, n),
                                        check_invariants=False)
    dense = None
    if 4 * n * n <= DENSE_LIMIT_BYTES:
        dense = torch.zeros(n, n, device=device)
        dense.view(-1).index_add_(0, torch.repeat_interleave(torch.arange(n, device=device),
                                                            (indptr[1:] - indptr[:-1]).long()) * n
                                  + indices.long(), weights)
    return at_sparse, csc, dense


def bench_case(n, per_row, prob, rates, device, reps):
    indptr, indices, weights = build_connectivity(n, per_row, prob, device)
    nnz = indices.numel()
    shape = (n, n)
    at_sparse, _, dense = baselines(indptr, indices, weights, n, device)
    csr_bytes = indptr.numel() * 4 + nnz * 4 + nnz * 4
    run = timer(device)
    rows = []
    g = torch.Generator(device="cpu").manual_seed(1)
    for rate in rates:
        spikes = (torch.rand(n, generator=g) < rate).to(device)
        spikes_f = spikes.float()
        ref = ops.csr_matmul(indptr, indices, weights, spikes_f, shape, transpose=True)
        ours_event = ops.event_csr_matmul(indptr, indices, weights, spikes, shape, transpose=True)
        sparse_out = (at_sparse @ spikes_f.unsqueeze(1)).squeeze(1)
        torch.testing.assert_close(ours_event, ref, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(sparse_out, ref, rtol=1e-4, atol=1e-3)
        t_sparse = run(lambda: at_sparse @ spikes_f.unsqueeze(1), reps)
        t_float = run(lambda: ops.csr_matmul(indptr, indices, weights, spikes_f, shape, transpose=True), reps)
        t_event = run(lambda: ops.event_csr_matmul(indptr, indices, weights, spikes, shape, transpose=True), reps)
        t_dense = run(lambda: spikes_f @ dense, reps) if dense is not None else None
        eager = {}
        if device == "cuda":
            once = eager_timer(device)
            eager = {"sparse_eager_ms": once(lambda: at_sparse @ spikes_f.unsqueeze(1), reps),
                     "brain_event_eager_ms": once(lambda: ops.event_csr_matmul(
                         indptr, indices, weights, spikes, shape, transpose=True), reps)}
        rows.append({**eager,
            "n": n, "per_row": per_row, "prob": prob, "nnz": nnz, "firing": rate,
            "dense_ms": t_dense, "sparse_ms": t_sparse, "brain_float_ms": t_float,
            "brain_event_ms": t_event,
            "event_speedup_vs_sparse": t_sparse / t_event,
            "dense_bytes": 4 * n * n, "csr_bytes": csr_bytes,
        })
    return rows


def bench_batched_case(n, per_row, batches, rates, device, reps):
    indptr, indices, weights = build_connectivity(n, per_row, None, device)
    shape = (n, n)
    at_sparse, (csc_indptr, csc_rows, perm), dense = baselines(indptr, indices, weights, n, device)
    wt = weights[perm.long()]
    run = timer(device)
    g = torch.Generator(device="cpu").manual_seed(2)
    rows = []
    for batch in batches:
        inputs = [("float", None, torch.randn(batch, n, generator=g).to(device))]
        inputs += [("spikes", rate, (torch.rand(batch, n, generator=g) < rate).to(device)) for rate in rates]
        for kind, rate, x in inputs:
            xf = x.float()
            op = ops.event_csr_matmul if kind == "spikes" else ops.csr_matmul
            ours = op(indptr, indices, weights, x, shape, transpose=True)
            sparse_out = (at_sparse @ xf.T).T
            torch.testing.assert_close(ours, sparse_out, rtol=1e-4, atol=1e-3)
            t_sparse = run(lambda: at_sparse @ xf.T, reps)
            t_brain = run(lambda: op(indptr, indices, weights, x, shape, transpose=True), reps)
            t_dense = run(lambda: xf @ dense, reps) if dense is not None else None
            # The layout torch.sparse is given: A^T stored (csr_to_csc once), gathered.
            t_gather = run(lambda: op(csc_indptr, csc_rows, wt, x, shape, transpose=False), reps)
            rows.append({"n": n, "per_row": per_row, "nnz": indices.numel(), "batch": batch, "x": kind,
                         "firing": rate, "dense_ms": t_dense, "sparse_ms": t_sparse, "brain_ms": t_brain,
                         "brain_pretransposed_ms": t_gather, "speedup_vs_sparse": t_sparse / t_brain,
                         "pretransposed_speedup_vs_sparse": t_sparse / t_gather})
    return rows


def batched_table(rows):
    lines = ["| N | connectivity | B | X | dense ms | torch.sparse ms (A^T stored) | brain ms (A, transpose=True) | "
             "brain vs sparse | brain ms (A^T stored, gather) | vs sparse |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        x = "float (every row)" if r["x"] == "float" else f"bool spikes, {100 * r['firing']:g}%"
        lines.append(f"| {r['n']:,} | {r['per_row']}/row | {r['batch']} | {x} | {fmt_ms(r['dense_ms'])} | "
                     f"{fmt_ms(r['sparse_ms'])} | {fmt_ms(r['brain_ms'])} | {r['speedup_vs_sparse']:.1f}x | "
                     f"{fmt_ms(r['brain_pretransposed_ms'])} | {r['pretransposed_speedup_vs_sparse']:.1f}x |")
    return "\n".join(lines)


def fmt_ms(v):
    return "n/a (memory)" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def fmt_bytes(b):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if b < 1024:
            return f"{b:.0f} {unit}"
        b /= 1024
    return f"{b:.0f} PiB"


def table(rows):
    eager = "sparse_eager_ms" in rows[0] if rows else False
    lines = ["| N | connectivity | nnz | firing | dense ms | torch.sparse ms | brain float ms | brain event ms | event vs sparse |"
             + (" eager: torch.sparse / brain event ms |" if eager else "") + " dense mem | CSR mem |",
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if eager else "")]
    for r in rows:
        conn = f"{r['per_row']}/row" if r["per_row"] else f"p={r['prob']}"
        lines.append(
            f"| {r['n']:,} | {conn} | {r['nnz']:,} | {100 * r['firing']:g}% | {fmt_ms(r['dense_ms'])} | "
            f"{fmt_ms(r['sparse_ms'])} | {fmt_ms(r['brain_float_ms'])} | {fmt_ms(r['brain_event_ms'])} | "
            f"{r['event_speedup_vs_sparse']:.1f}x | "
            + (f"{fmt_ms(r['sparse_eager_ms'])} / {fmt_ms(r['brain_event_eager_ms'])} | " if eager else "")
            + f"{fmt_bytes(r['dense_bytes'])} | {fmt_bytes(r['csr_bytes'])} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="drop the largest size (for CI)")
    parser.add_argument("--reps", type=int, default=0, help="repetitions per timing (default: by size)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--batched", action="store_true", help="the batched table (X [B, N]) instead")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("csr_bench: --device cuda but torch sees no GPU")
    if args.batched:
        return main_batched(args)

    cases = [(4_000, 80, None), (40_000, 80, None), (400_000, 80, None),
             (4_000, None, 0.01), (4_000, None, 0.1), (40_000, None, 0.01), (40_000, None, 0.1)]
    if args.quick:
        cases = [c for c in cases if c[0] < 400_000 and not (c[0] == 40_000 and c[2] == 0.1)]
    rates = [0.001, 0.01, 0.1]
    rows = []
    for i, (n, per_row, prob) in enumerate(cases, 1):
        label = f"{per_row}/row" if per_row else f"p={prob}"
        print(f"[{i}/{len(cases)}] N={n:,} {label} ...", file=sys.stderr, flush=True)
        reps = args.reps or (50 if args.device == "cuda" else 30 if n <= 4_000 else 10 if n <= 40_000 else 5)
        rows.extend(bench_case(n, per_row, prob, rates, args.device, reps))

    machine = machine_description(args.device)
    text = (f"CSR propagation A^T @ spikes on {args.device}: {machine}; libbrain {brain.__version__}.\n"
            f"Median of repeated runs, milliseconds per call; 'event vs sparse' = torch.sparse time / brain event time.\n"
            + (f"On CUDA the times are GPU time per call, {GRAPH_CALLS} calls captured in a CUDA graph and replayed; "
               "'eager' is one call at a time from Python, the host's launch cost included.\n" if args.device == "cuda" else "")
            + "\n"
            + table(rows))
    print(text)
    write_results(os.path.join(args.out, f"csr_{args.device}"), text,
                  {"device": args.device, "machine": machine, "libbrain": brain.__version__, "rows": rows})


def main_batched(args):
    rows = []
    sizes = [4_000] if args.quick else [4_000, 40_000]
    for i, n in enumerate(sizes, 1):
        print(f"[{i}/{len(sizes)}] N={n:,} 80/row, batched ...", file=sys.stderr, flush=True)
        reps = args.reps or (50 if args.device == "cuda" else 20 if n <= 4_000 else 5)
        rows.extend(bench_batched_case(n, 80, [16, 64], [0.01, 0.1], args.device, reps))
    machine = machine_description(args.device)
    text = (f"Batched CSR propagation A^T @ X, X [B, N], on {args.device}: {machine}; libbrain {brain.__version__}.\n"
            "Median of repeated runs, milliseconds per call; float X uses brain.ops.csr_matmul, bool spikes "
            "brain.ops.event_csr_matmul; 'brain vs sparse' = torch.sparse time / brain time.\n"
            + (f"On CUDA the times are GPU time per call, {GRAPH_CALLS} calls captured in a CUDA graph and replayed.\n"
               if args.device == "cuda" else "")
            + "\n" + batched_table(rows))
    print(text)
    write_results(os.path.join(args.out, f"csr_batched_{args.device}"), text,
                  {"device": args.device, "machine": machine, "libbrain": brain.__version__, "rows": rows})


if __name__ == "__main__":
    main()
