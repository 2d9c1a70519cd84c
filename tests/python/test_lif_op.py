"""brain::lif_sequence, the fused LIF forward/backward, against a plain PyTorch LIF loop with
independently written surrogate derivatives (SPEC section 4)."""

import itertools
import math

import pytest
import torch

import brain  # noqa: F401  (registers torch.ops.brain)
from brain import ops

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

SQRT2PI = math.sqrt(2 * math.pi)


def npdf(x, mu, sigma):
    return torch.exp(-(x - mu) ** 2 / (2 * sigma * sigma)) / (SQRT2PI * sigma)


# name -> (default parameters alpha, beta, sigma, h, s, scale, width; derivative)
SURROGATES = {
    "sigmoid": (4.0, lambda x, p: p[0] * torch.sigmoid(p[0] * x) * (1 - torch.sigmoid(p[0] * x))),
    "arctan": (1.0, lambda x, p: p[0] / 2 / (1 + (math.pi / 2 * p[0] * x) ** 2)),
    "piecewise_quadratic": (1.0, lambda x, p: (p[0] - p[0] ** 2 * x.abs()).clamp(min=0)),
    "piecewise_exp": (1.0, lambda x, p: p[0] / 2 * torch.exp(-p[0] * x.abs())),
    "soft_sign": (1.0, lambda x, p: p[0] / (2 * (1 + p[0] * x.abs()) ** 2)),
    "erf": (1.0, lambda x, p: p[0] / math.sqrt(math.pi) * torch.exp(-(p[0] * x) ** 2)),
    "inv_square": (100.0, lambda x, p: 1 / (p[0] * x.abs() + 1) ** 2),
    "gaussian": (1.0, lambda x, p: p[0] * npdf(x, 0, p[2])),
    "multi_gaussian": (4.0, lambda x, p: p[5] * ((1 + p[3]) * npdf(x, 0, p[2]) - p[3] * npdf(x, p[2], p[4] * p[2])
                                                 - p[3] * npdf(x, -p[2], p[4] * p[2]))),
    "leaky_relu": (0.1, lambda x, p: torch.where(x >= 0, torch.full_like(x, p[1]), torch.full_like(x, p[0]))),
    "relu_grad": (0.3, lambda x, p: p[0] * (p[6] - x.abs()).clamp(min=0)),
}


def default_params(name):
    alpha = SURROGATES[name][0]
    return [alpha, 1.0, 0.5, 0.15, 6.0, 0.5, 1.0]


class Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, derivative, params):
        ctx.save_for_backward(x)
        ctx.derivative, ctx.params = derivative, params
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ctx.derivative(x, ctx.params), None, None


def reference(inp, v0, *, v_rest=0.0, v_reset=0.0, v_th=1.0, R=1.0, tau=10.0, dt=1.0, method="exp_euler",
              detach_reset=True, surrogate="sigmoid", params=None):
    """The LIF loop written with one torch op per expression, in brain::LIF's order."""
    params = params or default_params(surrogate)
    derivative = SURROGATES[surrogate][1]
    u, spikes = v0, []
    for t in range(inp.shape[0]):
        if method == "exp_euler":
            vinf = v_rest + R * inp[t]
            v = vinf + (u - vinf) * math.exp(-dt / tau)
        else:
            v = u + (-(u - v_rest) + R * inp[t]) * (dt / tau)
        s = Spike.apply((v - v_th) / (v_th - v_reset), derivative, params)
        u = torch.where(s > 0, torch.full_like(v, v_reset), v) if detach_reset else v + (v_reset - v) * s
        spikes.append(s)
    return (torch.stack(spikes) if spikes else inp.new_zeros(inp.shape)), u


def make_inputs(shape, dtype, device, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    inp = (torch.rand(shape, generator=g, dtype=torch.float64) * scale).to(dtype).to(device)
    v0 = torch.rand(shape[1:], generator=g, dtype=torch.float64).to(dtype).to(device)
    return inp.requires_grad_(), v0.requires_grad_()


def grads_of(spikes, v_last, inp, v0, seed=1):
    g = torch.Generator().manual_seed(seed)
    ws = torch.randn(spikes.shape, generator=g, dtype=torch.float64).to(spikes)
    wv = torch.randn(v_last.shape, generator=g, dtype=torch.float64).to(v_last)
    return torch.autograd.grad((spikes * ws).sum() + (v_last * wv).sum(), (inp, v0))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method,detach_reset", list(itertools.product(["exp_euler", "euler"], [True, False])))
def test_matches_the_plain_loop(device, dtype, method, detach_reset):
    inp, v0 = make_inputs((60, 3, 40), dtype, device)
    kw = dict(v_rest=-0.2, v_reset=-0.1, v_th=0.9, R=1.3, tau=7.0, dt=0.5, method=method, detach_reset=detach_reset)
    spikes, v_last = ops.lif_sequence(inp, v0, **kw)
    ref_spikes, ref_v = reference(inp, v0, **kw)
    assert 0.02 < spikes.mean().item() < 0.5  # the test exercises both branches
    if device == "cpu":
        assert torch.equal(spikes, ref_spikes) and torch.equal(v_last, ref_v)
    else:
        torch.testing.assert_close(spikes, ref_spikes)
        torch.testing.assert_close(v_last, ref_v)
    for got, want in zip(grads_of(spikes, v_last, inp, v0), grads_of(ref_spikes, ref_v, inp, v0)):
        tol = 1e-12 if dtype == torch.float64 else 2e-5
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * want.abs().max().item())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
def test_every_surrogate_with_default_and_given_parameters(device, surrogate):
    inp, v0 = make_inputs((40, 2, 25), torch.float64, device, seed=3)
    params = default_params(surrogate)
    custom = [p * 1.5 for p in params]
    for given in ([], custom):
        spikes, v_last = ops.lif_sequence(inp, v0, surrogate=surrogate, surrogate_params=given)
        ref_spikes, ref_v = reference(inp, v0, surrogate=surrogate, params=given or params)
        assert torch.equal(spikes.cpu(), ref_spikes.cpu())
        got = grads_of(spikes, v_last, inp, v0)
        want = grads_of(ref_spikes, ref_v, inp, v0)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11 * (1 + b.abs().max().item()))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_below_threshold(device):
    # Without spikes the membrane is smooth and its gradient is the true derivative (the
    # spikes' is the surrogate's, by design, so only v_last is checked).
    inp, v0 = make_inputs((12, 2, 5), torch.float64, device, scale=0.2)
    assert ops.lif_sequence(inp, v0, method="euler", tau=4.0)[0].sum().item() == 0
    for method in ("euler", "exp_euler"):
        fn = lambda i, v: ops.lif_sequence(i, v, method=method, tau=4.0, R=0.7)[1]  # noqa: E731
        assert torch.autograd.gradcheck(fn, (inp, v0))


def test_double_backward_is_the_reference_loops():
    # A gradient penalty through the fused op: its second derivative (the surrogate's own
    # derivative, the membrane's part through the reset) is the plain loop's. It used to return
    # one without the membrane's part, then to refuse.
    inp, v0 = make_inputs((12, 2, 5), torch.float64, "cpu")
    for detach_reset in (True, False):
        penalties = []
        for run in (ops.lif_sequence, reference):
            i, v = inp.detach().requires_grad_(), v0.detach().requires_grad_()
            spikes, v_last = run(i, v, tau=4.0, detach_reset=detach_reset)
            (g,) = torch.autograd.grad(spikes.sum() + v_last.square().sum(), i, create_graph=True)
            penalties.append(torch.autograd.grad(g.square().sum(), (i, v)))
        assert penalties[1][0].abs().sum() > 0
        for got, want in zip(*penalties):
            assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    # First order, one output or both, is unaffected.
    for use in ((0,), (1,), (0, 1)):
        i, v = inp.detach().requires_grad_(), v0.detach().requires_grad_()
        outs = ops.lif_sequence(i, v, tau=4.0)
        sum(outs[k].sum() for k in use).backward()
        assert i.grad is not None and v.grad is not None


@pytest.mark.parametrize("device", DEVICES)
def test_shapes_empty_and_non_contiguous(device):
    inp, v0 = make_inputs((30, 4, 6), torch.float32, device)
    # Non-contiguous: time-first view of a batch-first tensor.
    batch_first = inp.detach().transpose(0, 1).contiguous().requires_grad_()
    s, v = ops.lif_sequence(batch_first.transpose(0, 1), v0.detach().t().contiguous().t())
    s_ref, v_ref = ops.lif_sequence(inp.detach().contiguous(), v0.detach())
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)
    s.sum().backward()
    assert batch_first.grad.shape == batch_first.shape
    # 1-D neurons, no batch.
    s1, v1 = ops.lif_sequence(inp.detach()[:, 0], v0.detach()[0])
    assert torch.equal(s1, s_ref[:, 0]) and torch.equal(v1, v_ref[0])
    # No steps: nothing fires and the membrane is unchanged.
    s0, v00 = ops.lif_sequence(inp.detach()[:0], v0.detach())
    assert s0.shape == (0, 4, 6) and torch.equal(v00, v0.detach())
    # No neurons.
    se, ve = ops.lif_sequence(inp.detach()[:, :0], v0.detach()[:0])
    assert se.shape == (30, 0, 6) and ve.shape == (0, 6)


def test_no_grad_saves_nothing_and_agrees():
    inp, v0 = make_inputs((20, 3, 8), torch.float32, "cpu")
    with torch.no_grad():
        s, v = ops.lif_sequence(inp, v0)
    assert s.grad_fn is None
    s2, v2 = ops.lif_sequence(inp, v0)
    assert s2.grad_fn is not None and torch.equal(s, s2) and torch.equal(v, v2)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    inp, v0 = make_inputs((10, 2, 7), torch.float32, device)
    args = (0.0, 0.0, 1.0, 1.0, 10.0, 1.0, "exp_euler", True, "sigmoid", [])
    torch.library.opcheck(torch.ops.brain.lif_sequence.default, (inp, v0, *args))
    torch.library.opcheck(torch.ops.brain.lif_sequence.default, (inp, v0, *args[:7], False, "arctan",
                                                                  [2.0, 1.0, 0.5, 0.15, 6.0, 0.5, 1.0]))
    spikes, v_last, v_pre = torch.ops.brain._lif_sequence_forward(inp.detach(), v0.detach(), *args)
    torch.library.opcheck(torch.ops.brain._lif_sequence_forward.default, (inp.detach(), v0.detach(), *args))
    torch.library.opcheck(torch.ops.brain._lif_sequence_backward.default,
                          (torch.randn_like(spikes), torch.randn_like(v_last), v_pre, *args))
    # The factors of the forward-mode tangents (test_func_transforms.py checks the tangents).
    for detach_reset in (True, False):
        torch.library.opcheck(torch.ops.brain._lif_tangent_coefficients.default,
                              (v_pre, 0.0, 1.0, detach_reset, "arctan", []))


def test_tangent_coefficients_are_the_surrogate_and_the_reset_derivatives():
    v = torch.tensor([-1.0, 0.2, 0.5, 0.9, 1.0, 1.3, float("nan")], dtype=torch.float64)
    v_reset, v_th = -0.5, 1.0
    x = (v - v_th) / (v_th - v_reset)
    sg = SURROGATES["arctan"][1](x, default_params("arctan")) / (v_th - v_reset)
    no_spike = (~(x > 0)).double()
    for detach_reset, du_dv in ((True, no_spike), (False, no_spike + (v_reset - v) * sg)):
        got = torch.ops.brain._lif_tangent_coefficients(v, v_reset, v_th, detach_reset, "arctan", [])
        assert torch.allclose(got[0], sg, equal_nan=True) and torch.allclose(got[1], du_dv, equal_nan=True)
    detached = torch.ops.brain._lif_tangent_coefficients(v, v_reset, v_th, True, "arctan", [])[1]
    assert detached[4] == 1 and detached[5] == 0 and detached[6] == 1  # at threshold no spike; NaN: no spike
    with pytest.raises(RuntimeError, match="v_th .* must be above v_reset"):
        torch.ops.brain._lif_tangent_coefficients(v, 1.0, 1.0, True, "arctan", [])
    with pytest.raises(RuntimeError, match="unknown surrogate 'nope'"):
        torch.ops.brain._lif_tangent_coefficients(v, 0.0, 1.0, True, "nope", [])


def test_torch_compile_fullgraph():
    inp, v0 = make_inputs((16, 2, 9), torch.float32, "cpu")
    w = torch.randn(9, 3)

    def f(i, v):
        s, u = ops.lif_sequence(i, v, tau=5.0)
        return (s.mean(0) @ w).square().sum() + u.sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(inp, v0), (inp, v0))
    want = torch.autograd.grad(f(inp, v0), (inp, v0))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_bad_input_is_named():
    inp, v0 = make_inputs((5, 2, 3), torch.float32, "cpu")
    cases = [
        (dict(tau=0.0), "tau must be > 0"),
        (dict(dt=-1.0), "dt must be > 0"),
        (dict(v_th=0.0, v_reset=0.5), "must be above v_reset"),
        (dict(method="rk4"), "method must be"),
        (dict(surrogate="nope"), "unknown surrogate"),
        (dict(surrogate_params=[1.0, 2.0]), "surrogate_params must be empty"),
        (dict(R=float("nan")), "must be finite"),
    ]
    for kw, msg in cases:
        with pytest.raises(RuntimeError, match=msg):
            ops.lif_sequence(inp, v0, **kw)
    with pytest.raises(RuntimeError, match="v0 must have input's shape"):
        ops.lif_sequence(inp, v0[:, :2])
    with pytest.raises(RuntimeError, match="v0 must have input's dtype"):
        ops.lif_sequence(inp, v0.double())
    with pytest.raises(RuntimeError, match="float32 or float64"):
        ops.lif_sequence(inp.detach().half(), v0.detach().half())
    with pytest.raises(RuntimeError, match="time first"):
        ops.lif_sequence(torch.tensor(1.0), torch.tensor(1.0))
