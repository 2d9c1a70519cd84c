"""Event-driven CSR matrix-vector products against dense and torch.sparse (the papers' Fig. 4A-B):
A^T @ spikes for a random N x N matrix (Bernoulli(p) connections), over sizes, connection
probabilities and firing probabilities; every product checked against brain.ops.csr_matmul.
Times are medians of repeated calls (CUDA events on a GPU). Uses bench/csr_bench.py's cases.

    python3 bench/paper/operators.py [--quick] [--device cuda]
"""

import warnings

import torch

from common import Experiment, parser, pyplot
from csr_bench import bench_case  # noqa: E402  (bench/csr_bench.py)

warnings.filterwarnings("ignore", message="Sparse")  # torch.sparse CSR is beta; invariants are ours to keep


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    exp = Experiment("operators", args)
    if args.quick:
        sizes, probs, firings, reps = [1000, 4000], [0.01, 0.1], [0.001, 0.01, 0.1], 5
    else:
        sizes, probs, firings, reps = [1000, 4000, 16000, 32000], [0.01, 0.05, 0.1], [0.001, 0.01, 0.05, 0.1], 20
        if args.device == "cuda":
            sizes += [64000]
    rows = []
    for n in sizes:
        for p in probs:
            rows += bench_case(n, None, p, firings, args.device, reps)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    p0, f0 = probs[0], 0.01
    sel = [r for r in rows if r["prob"] == p0 and r["firing"] == f0]
    for key, label, style in (("brain_event_ms", "brain event CSR", "o-"), ("brain_float_ms", "brain CSR (float)", "s-"),
                              ("sparse_ms", "torch.sparse CSR", "^-"), ("dense_ms", "dense matmul", "x-")):
        pts = [(r["n"], r[key]) for r in sel if r[key] is not None]
        axes[0].loglog([x for x, _ in pts], [y for _, y in pts], style, label=label)
    axes[0].set(xlabel="N (neurons)", ylabel="ms per A^T @ spikes", title=f"p = {p0}, {100 * f0:g}% firing")
    axes[0].legend(fontsize=8)
    n_big = sizes[-1]
    for p in probs:
        sel = [r for r in rows if r["n"] == n_big and r["prob"] == p]
        axes[1].semilogx([r["firing"] for r in sel], [r["event_speedup_vs_sparse"] for r in sel], "o-", label=f"p = {p}")
    axes[1].axhline(1, color="grey", lw=0.8, ls="--")
    axes[1].set(xlabel="firing probability", ylabel="torch.sparse time / brain event time",
                title=f"event-driven speed-up, N = {n_big:,}")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Event CSR matvec on {args.device}")
    big = [r for r in rows if r["n"] == n_big]

    def speedup(p, f):
        return next(r["event_speedup_vs_sparse"] for r in big if r["prob"] == p and r["firing"] == f)
    claims = {f"at N = {n_big:,} the event op beats torch.sparse at every density and firing rate":
                  all(r["event_speedup_vs_sparse"] > 1 for r in big),
              f"at N = {n_big:,} its advantage is largest at the lowest firing rate (inactive rows are skipped)":
                  all(speedup(p, min(firings)) > speedup(p, max(firings)) for p in probs)}
    return exp.save(fig, {"rows": rows, "reps": reps}, claims, "Event-driven CSR operators")


if __name__ == "__main__":
    main()
