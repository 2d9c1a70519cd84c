"""BPTT benchmark: forward + backward of Linear + LIF (batch 16, 500 steps, 4k and 16k
neurons) and of a recurrent LIF network with event-CSR or JIT recurrence, libbrain against plain
PyTorch surrogate-gradient implementations of the same networks with the same weights, in the
same run: time and peak memory.

    python3 bench/bptt/bptt_bench.py [--device cpu|cuda] [--reps 3] [--quick]

Every (case, implementation) runs in its own process, so peak memory is its own: on CPU the
peak resident size above the level before the step (glibc's mmap threshold fixed at 64 kB so
tensors are returned with their life; VmHWM reset before the step), on CUDA torch.cuda.max_memory_allocated above the
level before. Writes bench/results/bptt_<device>.md and .json with the machine description.

Implementations (the loss is the cross entropy of a Linear readout of the spikes averaged
over time; LIF: exponential Euler, tau 10 ms, dt 1 ms, threshold 1, reset to 0 without
gradient, sigmoid surrogate with alpha 4):
  torch loop       plain PyTorch as tutorials write it: Linear and LIF per step
  torch batched    plain PyTorch with the input Linear as one matmul over all steps
  brain fused      the input Linear as one matmul, then brain.ops.lif_sequence
  brain recompute  brain.models.SpikingNet + backward_recomputing (chunks of 50 steps)
  recurrent: torch dense (masked dense recurrent matrix per step) against
  brain csr per step   brain.ops.event_csr_matmul + brain.ops.lif_sequence per step (what
                       SpikingNet ran before brain.ops.lif_recurrent_sequence)
  brain csr            SpikingNet with event-CSR recurrence (the same synapses and weights):
                       the window as one brain.ops.lif_recurrent_sequence
  brain csr recompute  the same with backward_recomputing.
  recurrent_jit: the same network with JIT connectivity (normal weights, trainable mean and
  std, never stored); torch dense materialises the matrix from the same generator:
  brain jit per step   brain.ops.event_jitc_matmul + brain.ops.lif_sequence per step (what
                       SpikingNet ran before brain.ops.lif_jit_recurrent_sequence)
  brain jit            SpikingNet with JIT recurrence: the window as one
                       brain.ops.lif_jit_recurrent_sequence
  brain jit recompute  the same with backward_recomputing.

    --only CASE runs one case and writes results/bptt_<device>_<CASE>.{md,json}.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import machine  # noqa: E402

T_STEPS, BATCH, N_IN, N_OUT = 500, 16, 700, 10
DECAY = float(torch.exp(torch.tensor(-0.1)))
ALPHA = 4.0
CHUNK = 50
RECURRENT_FAN_IN = 100

CASES = {  # name -> (hidden neurons, recurrence or None)
    "linear_lif_4k": (4096, None),
    "linear_lif_16k": (16384, None),
    "recurrent_csr_4k": (4096, "csr"),
    "recurrent_jit_4k": (4096, "jit"),
}
IMPLS = {
    None: ["torch loop", "torch batched", "brain fused", "brain recompute"],
    "csr": ["torch dense", "brain csr per step", "brain csr", "brain csr recompute"],
    "jit": ["torch dense", "brain jit per step", "brain jit", "brain jit recompute"],
}
JIT_STD = 0.1  # the normal weights' std, as the CSR case's weights


class SigmoidSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ALPHA * x)
        return g * ALPHA * sg * (1 - sg)


def lif_step(v, current):
    v = current + (v - current) * DECAY
    s = SigmoidSpike.apply(v - 1.0)
    return torch.where(s > 0, torch.zeros_like(v), v), s


def make_net(n, recurrence, device):
    import brain

    net = brain.models.SpikingNet(n_in=N_IN, n_hidden=n, n_out=N_OUT, recurrent=recurrence is not None,
                                  recurrence=recurrence or "csr", recurrent_prob=RECURRENT_FAN_IN / n, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        params = dict(net.named_parameters())
        # Input weights that make the hidden layer fire at a few percent per step.
        params["input.weight"].copy_(torch.randn(n, N_IN, generator=g) * (3.0 / N_IN) ** 0.5)
        params["input.bias"].fill_(0.3)
        if recurrence == "csr":
            params["recurrent.weights"].copy_(torch.randn(params["recurrent.weights"].shape, generator=g) * 0.1)
        elif recurrence == "jit":
            params["recurrent.weight"].copy_(torch.tensor([0.0, JIT_STD]))
    net.to(torch.device(device))
    return net


def proc_status_bytes(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def run_case(case, impl, device, reps):
    n, recurrence = CASES[case]
    torch.manual_seed(0)
    x = torch.rand(T_STEPS, BATCH, N_IN, device=device)
    y = torch.randint(0, N_OUT, (BATCH,), device=device)
    net = make_net(n, recurrence, device)
    p = dict(net.named_parameters())
    W_in, b_in = p["input.weight"], p["input.bias"]
    W_out, b_out = p["readout.weight"], p["readout.bias"]
    import brain

    if recurrence == "csr":
        buffers = dict(net.named_buffers())
        rows = torch.repeat_interleave(buffers["recurrent.indptr"].diff().long())
        dense_index = (rows, buffers["recurrent.indices"].long())
    if recurrence == "jit":
        jit = (RECURRENT_FAN_IN / n, 1, "normal")  # SpikingNet's prob, seed (its seed + 1), dist
        unit = [brain.ops.jitc_materialize(torch.tensor(w, device=device), *jit[:2], [n, n], "normal")
                for w in ([1.0, 0.0], [0.0, 1.0])]

    def recurrent_matrix():
        if recurrence == "jit":
            return p["recurrent.weight"][0] * unit[0] + p["recurrent.weight"][1] * unit[1]
        return torch.zeros(n, n, device=device).index_put(dense_index, p["recurrent.weights"], accumulate=True)

    def loss_of(out):
        return F.cross_entropy(out.mean(0), y)

    def step():
        for q in p.values():
            q.grad = None
        if impl == "torch loop":
            v = torch.zeros(BATCH, n, device=device)
            outs = []
            for t in range(T_STEPS):
                v, s = lif_step(v, F.linear(x[t], W_in, b_in))
                outs.append(F.linear(s, W_out, b_out))
            loss = loss_of(torch.stack(outs))
        elif impl == "torch batched":
            v = torch.zeros(BATCH, n, device=device)
            spikes = []
            for current in F.linear(x, W_in, b_in).unbind(0):
                v, s = lif_step(v, current)
                spikes.append(s)
            loss = loss_of(F.linear(torch.stack(spikes), W_out, b_out))
        elif impl == "brain fused":
            spikes, _ = brain.ops.lif_sequence(F.linear(x, W_in, b_in), torch.zeros(BATCH, n, device=device))
            loss = loss_of(F.linear(spikes, W_out, b_out))
        elif impl == "torch dense":
            W_rec = recurrent_matrix()
            v = torch.zeros(BATCH, n, device=device)
            s = torch.zeros(BATCH, n, device=device)
            outs = []
            for current in F.linear(x, W_in, b_in).unbind(0):
                v, s = lif_step(v, current + s @ W_rec)
                outs.append(F.linear(s, W_out, b_out))
            loss = loss_of(torch.stack(outs))
        elif impl == "brain csr per step":
            indptr, indices = buffers["recurrent.indptr"], buffers["recurrent.indices"]
            v = torch.zeros(BATCH, n, device=device)
            s = torch.zeros(BATCH, n, device=device)
            spikes = []
            for current in F.linear(x, W_in, b_in).unbind(0):
                rec = brain.ops.event_csr_matmul(indptr, indices, p["recurrent.weights"], s, [n, n], True)
                s, v = brain.ops.lif_sequence((current + rec).unsqueeze(0), v)
                s = s[0]
                spikes.append(s)
            loss = loss_of(F.linear(torch.stack(spikes), W_out, b_out))
        elif impl == "brain jit per step":
            v = torch.zeros(BATCH, n, device=device)
            s = torch.zeros(BATCH, n, device=device)
            spikes = []
            for current in F.linear(x, W_in, b_in).unbind(0):
                rec = brain.ops.event_jitc_matmul(s, p["recurrent.weight"], jit[0], jit[1], [n, n], jit[2], True)
                s, v = brain.ops.lif_sequence((current + rec).unsqueeze(0), v)
                s = s[0]
                spikes.append(s)
            loss = loss_of(F.linear(torch.stack(spikes), W_out, b_out))
        elif impl in ("brain recompute", "brain csr recompute", "brain jit recompute"):
            loss, _ = brain.models.backward_recomputing(net, x, loss_of, CHUNK)
            return loss
        else:  # brain csr, brain jit
            loss = loss_of(net(x))
        loss.backward()
        return loss

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    # First call: peak memory (and warm-up).
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        # Reset the peak resident size (VmHWM) to the current one, so the import's peak does
        # not hide the step's.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = proc_status_bytes("VmRSS")
    loss = step()
    sync()
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = proc_status_bytes("VmHWM") - before
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    grad_norm = float(W_in.grad.norm())
    return {"ms": 1000 * statistics.median(times), "peak_bytes": max(peak, 0), "loss": float(loss),
            "grad_norm": grad_norm}


def worker_main(args):
    print(json.dumps(run_case(args.case, args.impl, args.device, args.reps)))


def fmt_mib(b):
    return f"{b / 2**20:.0f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="the 4k cases only")
    ap.add_argument("--only", choices=sorted(CASES), help="run this case alone")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "results"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args)

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    results = []
    for case, (n, recurrence) in CASES.items():
        if (args.quick and n > 4096) or (args.only and case != args.only):
            continue
        for impl in IMPLS[recurrence]:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--case", case, "--impl", impl,
                   "--device", args.device, "--reps", str(args.reps)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.exit(f"{case} / {impl} failed:\n{out.stderr}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r.update(case=case, impl=impl, neurons=n)
            results.append(r)
            print(f"{case:18s} {impl:20s} {r['ms']:9.1f} ms  peak {fmt_mib(r['peak_bytes']):>9s}  "
                  f"loss {r['loss']:.5f}  |grad W_in| {r['grad_norm']:.4g}", flush=True)

    import brain

    desc = f"{machine.cpu_model()}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if args.device == "cuda":
        desc = f"{torch.cuda.get_device_name()}, " + desc
    lines = [
        f"BPTT forward + backward on {args.device}: {desc}; libbrain {brain.__version__}, commit {machine.commit()}.",
        f"Batch {BATCH}, {T_STEPS} steps, {N_IN} inputs, {N_OUT} outputs; median of {args.reps} steps after one "
        "warm-up step, which also gives the peak memory above the level before the step. Speed-up and memory "
        "ratio against the first (plain PyTorch) row of each case; every row has the same weights, and the "
        "losses agree.",
        "",
        "| case | implementation | ms per step | speed-up | peak memory | memory ratio | loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        rows = [r for r in results if r["case"] == case]
        if not rows:
            continue
        base = rows[0]
        for r in rows:
            lines.append(f"| {case} | {r['impl']} | {r['ms']:.0f} | {base['ms'] / r['ms']:.2f}x | "
                         f"{fmt_mib(r['peak_bytes'])} | {r['peak_bytes'] / max(base['peak_bytes'], 1):.2f} | "
                         f"{r['loss']:.5f} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    os.makedirs(args.out, exist_ok=True)
    name = f"bptt_{args.device}" + (f"_{args.only}" if args.only else "")
    with open(os.path.join(args.out, f"{name}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump({"device": args.device, "machine": desc, "libbrain": brain.__version__, "commit": machine.commit(),
                   "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
