"""brain::poisson_spikes, the counter-based Poisson draw, against an independent numpy
implementation of its written specification (kernels/rng/poisson_draw.h) bit for bit; on
CUDA against the CPU; opcheck, torch.compile, TorchScript and PoissonGroup."""

import numpy as np
import pytest
import torch

import brain  # noqa: F401  (registers torch.ops.brain)
from brain import models as m
from brain import ops

import jitc_reference as ref

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MASK64 = (1 << 64) - 1


def splitmix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def reference_spikes(rates, dt, seed, step, offset=0):
    """The draw as kernels/rng/poisson_draw.h specifies it, in numpy: rates [B, n] float64."""
    rates = np.asarray(rates, dtype=np.float64)
    batch, n = rates.shape
    key = splitmix64((seed & MASK64) ^ 0x506F4953534F4E21)
    j = np.arange(offset, offset + n, dtype=np.uint64)
    out = np.zeros((batch, n), dtype=bool)
    for b in range(batch):
        w = ref.philox4x32_10(j >> np.uint64(1), np.full(n, b, dtype=np.uint64), step & 0xFFFFFFFF,
                              step >> 32, key & 0xFFFFFFFF, key >> 32)
        even = ref.m53(w[0], w[1]).astype(np.float64) * 2.0 ** -53
        odd = ref.m53(w[2], w[3]).astype(np.float64) * 2.0 ** -53
        u = np.where(j % np.uint64(2) == 0, even, odd)
        out[b] = u < rates[b] * (dt / 1000.0)
    return out


@pytest.mark.parametrize("seed,step,offset", [(0, 0, 0), (7, 12345, 3), (-1, (1 << 33) + 9, 1 << 20),
                                              ((1 << 63) + 5, 1, 4_000_000_000)])
def test_matches_the_written_specification(seed, step, offset):
    gen = torch.Generator().manual_seed(1)
    rates = torch.rand(3, 257, generator=gen, dtype=torch.float64) * 4000.0
    rates[0, :5] = torch.tensor([0.0, -10.0, 1e4, 2e4, 1e-3])  # p = 0, < 0, 1, > 1, tiny
    got = ops.poisson_spikes(rates, 0.1, seed, step, offset)
    want = reference_spikes(rates.numpy(), 0.1, seed, step, offset)
    assert got.dtype == torch.bool
    assert np.array_equal(got.numpy(), want)
    assert got.any() and not got.all()
    # float32 rates: the same draw against the float32 value.
    r32 = rates.float()
    assert np.array_equal(ops.poisson_spikes(r32, 0.1, seed, step, offset).numpy(),
                          reference_spikes(r32.double().numpy(), 0.1, seed, step, offset))


def test_seeds_wrap_modulo_two_to_the_64():
    r = torch.full((1000,), 300.0)
    assert torch.equal(ops.poisson_spikes(r, 1.0, -1, 4), ops.poisson_spikes(r, 1.0, (1 << 64) - 1, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_the_cpu_spikes():
    gen = torch.Generator().manual_seed(2)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        rates = (torch.rand(4, 5001, generator=gen) * 3000).to(dtype)
        for offset in (0, 1, 12345):
            cpu = ops.poisson_spikes(rates, 0.1, 9, 77, offset)
            cuda = ops.poisson_spikes(rates.cuda(), 0.1, 9, 77, offset)
            assert torch.equal(cuda.cpu(), cpu), (dtype, offset)
    assert ops.poisson_spikes(torch.zeros(0, 3, device="cuda"), 0.1, 1, 0).shape == (0, 3)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    rates = torch.rand(2, 33, device=device) * 500
    torch.library.opcheck(torch.ops.brain.poisson_spikes.default, (rates, 0.1, 3, 10, 0))
    torch.library.opcheck(torch.ops.brain.poisson_spikes.default, (rates.t(), 0.5, -4, 0, 7))
    torch.library.opcheck(torch.ops.brain.poisson_spikes.default, (torch.zeros(0, device=device), 0.1, 1, 0, 0))


def test_torch_compile_and_torchscript():
    rates = torch.rand(3, 40) * 800

    def f(r, step: int):
        return torch.ops.brain.poisson_spikes(r * 2, 0.1, 5, step, 0)

    want = f(rates, 6)
    assert torch.equal(torch.compile(f, fullgraph=True, backend="aot_eager")(rates, 6), want)
    assert torch.equal(torch.jit.script(f)(rates, 6), want)


def test_bad_input_is_named():
    r = torch.full((4,), 10.0)
    cases = [
        (lambda: ops.poisson_spikes(torch.tensor(5.0), 0.1, 1, 0), "rates must be [..., n]"),
        (lambda: ops.poisson_spikes(torch.ones(4, dtype=torch.long), 0.1, 1, 0), "floating"),
        (lambda: ops.poisson_spikes(r, 0.0, 1, 0), "dt must be > 0"),
        (lambda: ops.poisson_spikes(r, 0.1, 1, -3), "step must be >= 0"),
        (lambda: ops.poisson_spikes(r, 0.1, 1, 0, -1), "offset"),
        (lambda: ops.poisson_spikes(r, 0.1, 1, 0, (1 << 32) - 3), "2^32"),
    ]
    for call, message in cases:
        with pytest.raises(RuntimeError, match=message.replace("[", r"\[").replace("^", r"\^")):
            call()


def test_poisson_group_draws_the_specified_spikes_with_its_rate_input():
    net = m.Network()
    net.add("p", m.PoissonGroup(300, 100.0, seed=21))
    net.reset_state()
    gen = torch.Generator().manual_seed(3)
    extra = torch.rand(30, 300, generator=gen) * 2000  # Hz added in each step
    out = m.Runner(net, dt=0.1, monitors=["p.spike"], progress=False,
                   inputs=[{"path": "p.rate_input", "value": extra, "per_step": True, "add": False}]).run(3.0)
    spikes = out["p.spike"].numpy()
    assert spikes.shape == (30, 300)
    for step in range(30):
        total = (torch.tensor(100.0) + extra[step]).double().numpy()  # float32 sum, as the group forms it
        assert np.array_equal(spikes[step], reference_spikes(total[None], 0.1, 21, step)[0]), step
