"""Memory-bounded BPTT (brain.models.backward_recomputing, bptt_fit(recompute_chunk=...)): the
gradients of loss.backward(), with memory that stops growing with the sequence length."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import brain


def make_net(**kw):
    args = dict(n_in=8, n_hidden=48, n_out=4, recurrent=True, recurrence="csr", recurrent_prob=0.2,
                recurrent_delay=2, seed=3)
    args.update(kw)
    return brain.models.SpikingNet(**args)


def data(steps, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(steps, batch, 8, generator=g) * 5, torch.randint(0, 4, (batch,), generator=g)


@pytest.mark.parametrize("recurrence", ["dense", "csr", "jit"])
def test_gradients_equal_those_of_loss_backward(recurrence):
    x, y = data(60, 5)
    loss_fn = lambda out: torch.nn.functional.cross_entropy(out.mean(0), y)  # noqa: E731
    whole, chunked = make_net(recurrence=recurrence), make_net(recurrence=recurrence)
    out = whole(x)
    loss = loss_fn(out)
    loss.backward()
    loss2, out2 = brain.models.backward_recomputing(chunked, x, loss_fn, chunk=7)
    assert torch.equal(out.detach(), out2) and loss2.item() == pytest.approx(loss.item(), rel=1e-6)
    for (name, a), (_, b) in zip(whole.named_parameters(), chunked.named_parameters()):
        assert a.grad is not None and b.grad is not None, name
        scale = a.grad.abs().max().item()
        assert scale > 0, name
        assert (a.grad - b.grad).abs().max().item() <= 1e-5 * scale, name
    # Any torch.optim optimizer takes it from there.
    opt = torch.optim.Adam(chunked.parameters(), lr=1e-2)
    opt.step()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("recurrence", ["none", "csr", "jit"])
def test_on_cuda_gradients_equal_those_on_the_cpu(recurrence):
    # The net moves to the GPU before its first batch: the states it then allocates must follow.
    kw = {"recurrent": False} if recurrence == "none" else {"recurrence": recurrence}
    x, y = data(40, 5)
    loss_fn = lambda out: torch.nn.functional.cross_entropy(out.mean(0), y.to(out.device))  # noqa: E731
    cpu, gpu = make_net(**kw), make_net(**kw).to("cuda")
    loss_cpu, out_cpu = brain.models.backward_recomputing(cpu, x, loss_fn, chunk=7)
    loss_gpu, out_gpu = brain.models.backward_recomputing(gpu, x.cuda(), loss_fn, chunk=7)
    assert out_gpu.is_cuda
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-4, atol=1e-4)
    for (name, a), (_, b) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert b.grad is not None and b.grad.is_cuda, name
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-3, atol=1e-5 * a.grad.abs().max().item())


def test_bptt_fit_with_recompute_chunk_trains_like_without():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 30, 8, generator=g) * 5
    y = torch.randint(0, 4, (64,), generator=g)
    runs = [brain.models.bptt_fit(make_net(), x, y, lr=1e-2, epochs=2, batch_size=16, progress=False,
                                  recompute_chunk=chunk) for chunk in (0, 6)]
    for a, b in zip(*runs):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys, torch, brain
    steps, chunk = int(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(0)
    net = brain.models.SpikingNet(n_in=64, n_hidden=2048, n_out=10, recurrent=True, seed=0)
    x = torch.rand(steps, 16, 64) * 3
    y = torch.randint(0, 10, (16,))
    loss_fn = lambda out: torch.nn.functional.cross_entropy(out.mean(0), y)
    def rss_kb(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    # Reset the peak resident size (VmHWM) to the current one: what loading torch (and CUDA's
    # libraries) touched does not hide the peak of the step itself.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = rss_kb("VmRSS")
    if chunk:
        brain.models.backward_recomputing(net, x, loss_fn, chunk)
    else:
        loss_fn(net(x)).backward()
    print(json.dumps({"peak_mb": (rss_kb("VmHWM") - before) / 1024}))
""")


def peak_mb(steps, chunk):
    # A fixed mmap threshold: every tensor above 64 kB is mapped and unmapped with its life, so
    # the peak resident size follows live memory instead of the heap's history.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(steps), str(chunk)], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def test_memory_stops_growing_with_sequence_length():
    # 2048 recurrent LIF neurons, batch 16: the whole-window graph keeps a few 128 kB tensors
    # per step; with chunks of 25 steps only their start states (and one chunk) are kept.
    whole = peak_mb(600, 0) - peak_mb(100, 0)
    chunked = peak_mb(600, 25) - peak_mb(100, 25)
    assert whole > 120, f"the whole-window backward grew only {whole:.0f} MB"
    assert chunked < 0.1 * whole, f"recomputing grew {chunked:.0f} MB against {whole:.0f} MB"
