"""Second-order and per-sample training costs: libbrain against plain PyTorch in the same run.

    python3 bench/bptt/second_order_bench.py [--device cpu|cuda] [--reps 5] [--quick]

Cases (the LIF layer: exponential Euler, tau 10 ms, dt 1 ms, threshold 1, reset to 0 without
gradient, sigmoid surrogate with alpha 4; the loss is the cross entropy of a Linear readout of
the spikes averaged over time):
  gradient penalty   forward, the loss's gradient with respect to the input weights with
                     create_graph, and the backward of loss + |that gradient|^2 (a double
                     backward through every step):
      torch loop       plain PyTorch, Linear and LIF per step, the surrogate spike written
                       with torch ops (differentiable twice)
      torch batched    the same with the input Linear as one matmul over all steps
      brain fused      the input Linear as one matmul, then brain.ops.lif_sequence
  per-sample grads   the gradient of every sample's loss with respect to every parameter of a
                     recurrent network (CSR recurrence):
      loop             brain.models.SpikingNet, one backward per sample
      vmap             torch.func.vmap(grad(functional_call(net, ...))) over the samples

Writes bench/results/second_order_<device>.md and .json with the machine description.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import machine  # noqa: E402

import brain  # noqa: E402

DECAY = float(torch.exp(torch.tensor(-0.1)))
ALPHA = 4.0


def spike(x):
    """Heaviside forward, sigmoid surrogate backward, in torch ops only (so it differentiates
    again): the value is (x > 0), the gradient that of sigmoid(alpha x)."""
    smooth = torch.sigmoid(ALPHA * x)
    return (x > 0).to(x.dtype) + (smooth - smooth.detach())


def lif_loop(current_of, steps, v):
    """LIF per step as a tutorial writes it; current_of(t) is step t's input current."""
    spikes = []
    for t in range(steps):
        v = DECAY * v + (1 - DECAY) * current_of(t)
        s = spike(v - 1.0)
        v = v * (1 - s.detach())
        spikes.append(s)
    return torch.stack(spikes)


def penalty_step(impl, x, w_in, b_in, w_out, b_out, labels):
    """One gradient-penalty step; returns the loss (the gradients land in .grad)."""
    steps, batch = x.shape[0], x.shape[1]
    v0 = torch.zeros(batch, w_in.shape[0], device=x.device, dtype=x.dtype)
    if impl == "torch loop":
        spikes = lif_loop(lambda t: F.linear(x[t], w_in, b_in), steps, v0)
    elif impl == "torch batched":
        drive = F.linear(x, w_in, b_in).unbind(0)  # unbind: T selects' backward would be O(T^2)
        spikes = lif_loop(lambda t: drive[t], steps, v0)
    else:
        spikes = brain.ops.lif_sequence(F.linear(x, w_in, b_in), v0, surrogate="sigmoid",
                                        surrogate_params=[ALPHA, 1.0, 0.5, 0.15, 6.0, 0.5, 1.0])[0]
    loss = F.cross_entropy(F.linear(spikes, w_out, b_out).mean(0), labels)
    (g,) = torch.autograd.grad(loss, w_in, create_graph=True)
    total = loss + g.square().sum()
    total.backward()
    return loss.item()


def timed(fn, reps, device):
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()
    fn()  # warm-up
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def penalty_case(steps, hidden, device, reps):
    g = torch.Generator().manual_seed(0)
    n_in, n_out, batch = 100, 10, 16
    x = ((torch.rand(steps, batch, n_in, generator=g) < 0.1).float() * 3).to(device)
    w_in = (torch.randn(hidden, n_in, generator=g) * 0.3).to(device).requires_grad_()
    b_in = torch.zeros(hidden, device=device).requires_grad_()
    w_out = (torch.randn(n_out, hidden, generator=g) * 0.1).to(device).requires_grad_()
    b_out = torch.zeros(n_out, device=device).requires_grad_()
    labels = torch.randint(0, n_out, (batch,), generator=g).to(device)
    rows = []
    for impl in ("torch loop", "torch batched", "brain fused"):
        params = (w_in, b_in, w_out, b_out)
        for p in params:
            p.grad = None
        loss = penalty_step(impl, x, *params, labels)
        grad_norm = float(w_in.grad.norm())
        ms = timed(lambda: penalty_step(impl, x, *params, labels), reps, device)
        rows.append(dict(case=f"gradient penalty, {hidden} neurons, {steps} steps", impl=impl, ms=ms, loss=loss,
                         check=grad_norm))
    return rows


def per_sample_case(steps, hidden, device, reps):
    from torch.func import functional_call, grad, vmap
    g = torch.Generator().manual_seed(1)
    n_in, n_out, batch = 40, 4, 16
    net = brain.models.SpikingNet(n_in, hidden, n_out, recurrent=True, recurrence="csr", recurrent_prob=0.1,
                                  recurrent_delay=1, seed=2).to(device)
    x = ((torch.rand(steps, batch, n_in, generator=g) < 0.1).float() * 3).to(device)
    labels = torch.randint(0, n_out, (batch,), generator=g).to(device)
    params = {name: p.detach() for name, p in net.named_parameters()}

    def sample_loss(p, inputs, label):
        return F.cross_entropy(functional_call(net, p, (inputs[:, None],)).mean(0), label[None])

    def loop():
        out = []
        for b in range(batch):
            net.zero_grad()
            F.cross_entropy(net(x[:, b:b + 1]).mean(0), labels[b:b + 1]).backward()
            out.append({name: p.grad.clone() for name, p in net.named_parameters()})
        return out

    def mapped():
        return vmap(grad(sample_loss), in_dims=(None, 1, 0))(params, x, labels)

    want, got = loop(), mapped()
    error = max(float((got[name][b] - want[b][name]).abs().max()) for b in range(batch) for name in params)
    case = f"per-sample grads, {hidden} neurons, {steps} steps, batch {batch}"
    return [dict(case=case, impl="loop", ms=timed(loop, reps, device), loss=0.0, check=0.0),
            dict(case=case, impl="vmap", ms=timed(mapped, reps, device), loss=0.0, check=error)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "results"))
    args = parser.parse_args()
    steps, hidden = (20, 64) if args.quick else (200, 1024)
    results = penalty_case(steps, hidden, args.device, args.reps)
    results += per_sample_case(steps // 2, hidden // 4, args.device, args.reps)

    desc = f"{machine.cpu_model()}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if args.device == "cuda":
        desc = f"{torch.cuda.get_device_name()}, " + desc
    lines = [
        f"Second-order and per-sample costs on {args.device}: {desc}; libbrain {brain.__version__}, "
        f"commit {machine.commit()}. Median of {args.reps} after a warm-up. Speed-up against the first row of each "
        "case; the gradient-penalty rows have the same weights and losses, and the per-sample rows' check is the "
        "largest difference between the two ways' gradients.",
        "",
        "| case | implementation | ms | speed-up | loss | check |",
        "|---|---|---|---|---|---|",
    ]
    for case in dict.fromkeys(r["case"] for r in results):
        rows = [r for r in results if r["case"] == case]
        for r in rows:
            lines.append(f"| {case} | {r['impl']} | {r['ms']:.1f} | {rows[0]['ms'] / r['ms']:.2f}x | "
                         f"{r['loss']:.5f} | {r['check']:.3g} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        os.makedirs(args.out, exist_ok=True)
        base = os.path.join(args.out, f"second_order_{args.device}")
        with open(base + ".md", "w", encoding="utf-8") as f:
            f.write(text)
        with open(base + ".json", "w", encoding="utf-8") as f:
            json.dump({"device": args.device, "machine": desc, "libbrain": brain.__version__,
                       "commit": machine.commit(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
