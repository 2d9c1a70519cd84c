"""An echo-state reservoir with JIT recurrent connectivity, trained by ridge regression, as it
grows (the papers' Fig. 5D-F): test accuracy on scikit-learn's handwritten digits (8 x 8
images shown column by column, 8 steps of 8 inputs) against reservoir size, and the time and
memory of the reservoir's recurrent step with the same matrix stored dense, as CSR, or
regenerated from its seed (JIT). Every reservoir has 100 recurrent connections per neuron
(density 100 / N), spectral radius 0.9; the readout sees the last state and the time-average.

    python3 bench/paper/reservoir_jit.py [--quick] [--device cuda]

Larger image sets: no package on PyPI ships one in its files (torchvision, keras and
tensorflow-datasets download them), so the digits are the data set here.
"""

import time

import torch
from sklearn.datasets import load_digits

import brain
from brain import ops
from common import Experiment, parser, pyplot
from csr_bench import timer  # noqa: E402


def digits(device):
    d = load_digits()
    X = torch.tensor(d.images, dtype=torch.float64) / 16.0  # [1797, 8, 8]
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    X, y = X[perm].permute(2, 0, 1).contiguous(), y[perm]  # [8 steps (columns), 1797 images, 8 rows]
    n_test = 360
    return X[:, n_test:].to(device), y[n_test:], X[:, :n_test].to(device), y[:n_test]


def features(res, X):
    res.reset_state(X.shape[1])
    states = res.run(X)  # [T, B, N]
    return torch.cat([states[-1], states.mean(0)], 1)


def ridge_dual(F, Y, alpha):
    """W = F^T (F F^T + alpha I)^-1 Y: the ridge solution through the samples' Gram matrix, for
    more features than samples (with a bias column)."""
    F = torch.cat([F, torch.ones(F.shape[0], 1, dtype=F.dtype, device=F.device)], 1)
    G = F @ F.T
    G.diagonal().add_(alpha)
    return F.T @ torch.linalg.solve(G, Y), lambda Z: torch.cat([Z, torch.ones(Z.shape[0], 1, dtype=Z.dtype,
                                                                          device=Z.device)], 1)


def accuracy(size, data, device):
    Xtr, ytr, Xte, yte = data
    res = brain.models.Reservoir(n_in=8, size=size, spectral_radius=0.9, leak=0.5, input_scale=1.0,
                                 bias_scale=0.2, density=min(1.0, 100.0 / size), connectivity="jit", seed=3,
                                 device=device)
    t0 = time.time()
    Ftr, Fte = features(res, Xtr), features(res, Xte)
    run_s = time.time() - t0
    Y = torch.nn.functional.one_hot(ytr, 10).to(Ftr)
    if Ftr.shape[1] + 1 > Ftr.shape[0]:
        W, aug = ridge_dual(Ftr, Y, 1e-2)
        pred = aug(Fte) @ W
    else:
        w, b = brain.models.ridge(Ftr, Y, alpha=1e-2)
        pred = Fte @ w + b
    acc = float((pred.argmax(1).cpu() == yte).double().mean())
    return {"size": size, "test_accuracy": acc, "reservoir_seconds": run_s}


def step_formats(size, device, batch, reps, room):
    """One recurrent step A^T x, x [batch, N], with the reservoir's JIT matrix in three formats."""
    density, std = min(1.0, 100.0 / size), 0.9 / (size * min(1.0, 100.0 / size)) ** 0.5
    w = torch.tensor([0.0, std], device=device)
    shape = (size, size)
    x = torch.randn(batch, size, device=device)
    run = timer(device)
    row = {"size": size, "jit_ms": run(lambda: ops.jitc_matmul(x, w, density, 3, shape, "normal", True), reps),
           "jit_bytes": 8, "csr_ms": None, "dense_ms": None,
           "csr_bytes": 4 * (size + 1) + 8 * 100 * size, "dense_bytes": 4 * size * size}
    if row["csr_bytes"] * 3 < room:
        indptr, indices, values = ops.jitc_to_csr(w, density, 3, shape, "normal")
        row["csr_bytes"] = indptr.numel() * 4 + indices.numel() * 4 + values.numel() * 4
        indptr, indices = indptr.int(), indices.int()
        torch.testing.assert_close(ops.csr_matmul(indptr, indices, values, x, shape, transpose=True),
                                   ops.jitc_matmul(x, w, density, 3, shape, "normal", True), rtol=1e-4, atol=1e-4)
        row["csr_ms"] = run(lambda: ops.csr_matmul(indptr, indices, values, x, shape, transpose=True), reps)
        del indptr, indices, values
    if row["dense_bytes"] * 3 < room:
        A = ops.jitc_materialize(w, density, 3, shape, "normal")
        row["dense_ms"] = run(lambda: x @ A, reps)
        del A
    return row


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    exp = Experiment("reservoir_jit", args)
    dev = args.device
    if args.quick:
        sizes, step_sizes, reps = [10, 25, 50, 100, 200, 400], [1000, 4000, 16000], 3
    else:
        # On a CPU a batched JIT product regenerates every synapse for each of the 1437 images:
        # ~100 s at N = 25k, so the CPU run stops at 10k (and the step timings at 250k).
        sizes = [100, 250, 500, 1000, 2500, 5000, 10000] + ([25000, 50000, 100000] if dev == "cuda" else [])
        step_sizes, reps = [1000, 4000, 16000, 64000, 250000] + ([1000000] if dev == "cuda" else []), 5
    room = (torch.cuda.mem_get_info()[0] if dev == "cuda" else 16 << 30)
    data = digits(dev)
    acc_rows = [accuracy(n, data, dev) for n in sizes]
    step_rows = [step_formats(n, dev, 64, reps, room) for n in step_sizes]

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    axes[0].semilogx(sizes, [100 * r["test_accuracy"] for r in acc_rows], "ko-")
    axes[0].set(xlabel="reservoir size N", ylabel="test accuracy (%)", title="digits, JIT reservoir + ridge")
    for key, label, style in (("jit_ms", "JIT", "o-"), ("csr_ms", "CSR", "s-"), ("dense_ms", "dense", "x-")):
        pts = [(r["size"], r[key]) for r in step_rows if r[key] is not None]
        axes[1].loglog([a for a, _ in pts], [b for _, b in pts], style, label=label)
        axes[2].loglog([r["size"] for r in step_rows], [r[key.replace("_ms", "_bytes")] for r in step_rows], style,
                       label=label)
    axes[1].set(xlabel="N", ylabel="ms per recurrent step (batch 64)", title="inference time")
    axes[1].legend(fontsize=8)
    axes[2].set(xlabel="N", ylabel="bytes stored", title="memory of the recurrent matrix")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"Echo-state reservoir with JIT connectivity on {dev}")
    accs = [r["test_accuracy"] for r in acc_rows]
    claims = {"accuracy rises with reservoir size (largest beats smallest by 5 points)": accs[-1] > accs[0] + 0.05,
              "the largest reservoir classifies digits at over 90%": accs[-1] > 0.9,
              "the CSR matrix grows with N (measured) while JIT keeps only its seed and two weights":
                  step_rows[-1]["csr_bytes"] > 10 * step_rows[0]["csr_bytes"]}
    return exp.save(fig, {"accuracy": acc_rows, "step": step_rows}, claims, "JIT echo-state reservoir")


if __name__ == "__main__":
    main()
