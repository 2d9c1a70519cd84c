"""The event-driven CSR op inside an ordinary torch.nn.Module: a sparse synaptic layer whose
per-synapse weights are an nn.Parameter, trained with torch.optim to reproduce the currents
of a target layer with the same connectivity.

    python3 examples/event_op_module.py [--steps 200]
"""

import argparse

import torch
from torch import nn

import brain


class SparseSynapses(nn.Module):
    """currents [B, n_post] = spikes [B, n_pre] @ W, W stored as CSR (rows: presynaptic)."""

    def __init__(self, n_pre, n_post, p, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        mask = torch.rand(n_pre, n_post, generator=g) < p
        rows, cols = mask.nonzero(as_tuple=True)
        indptr, indices, _ = brain.ops.csr_from_coo(rows, cols, (n_pre, n_post))
        self.register_buffer("indptr", indptr)
        self.register_buffer("indices", indices)
        self.shape = (n_pre, n_post)
        self.weight = nn.Parameter(0.1 * torch.randn(indices.numel(), generator=g))

    def forward(self, spikes):
        # A^T @ spikes visits only the rows of the neurons that spiked.
        return brain.ops.event_csr_matmul(self.indptr, self.indices, self.weight, spikes, self.shape, transpose=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-pre", type=int, default=2000)
    ap.add_argument("--n-post", type=int, default=500)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    layer = SparseSynapses(args.n_pre, args.n_post, p=0.05)
    target = SparseSynapses(args.n_pre, args.n_post, p=0.05)  # same connectivity (same seed)
    with torch.no_grad():
        target.weight.normal_(0.5, 0.2)
    opt = torch.optim.Adam(layer.parameters(), lr=0.02)
    for step in range(args.steps + 1):
        spikes = (torch.rand(32, args.n_pre) < 0.02).float()
        loss = nn.functional.mse_loss(layer(spikes), target(spikes).detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:4d}: loss {loss.item():.5f}")
    print(f"{layer.indices.numel()} synapses; weight error {(layer.weight - target.weight).abs().mean().item():.4f}")
    return loss.item()


if __name__ == "__main__":
    main()
