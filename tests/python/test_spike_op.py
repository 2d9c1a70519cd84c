"""brain::spike, the surrogate-gradient Heaviside the neuron modules spike with, against the
independently written surrogate derivatives of test_lif_op.py: forward, backward, second
derivative, forward mode, the torch.func transforms, opcheck, torch.compile and TorchScript."""

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

import brain  # noqa: F401  (registers torch.ops.brain)
from brain import ops
from test_lif_op import SURROGATES, default_params

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

CUSTOM = [1.7, 0.6, 0.8, 0.3, 4.0, 0.9, 1.4]  # alpha, beta, sigma, h, s, scale, width


def points(device, dtype=torch.float64):
    x = torch.linspace(-2.5, 2.5, 41, dtype=dtype, device=device)
    return x[x != 0]  # the surrogates' kinks (|x| at 0) make a second derivative one-sided there


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_is_the_heaviside_in_x_dtype(device, dtype):
    x = torch.tensor([-1.0, -0.0, 0.0, 1e-30, 2.0, float("nan"), float("inf")], dtype=dtype, device=device)
    out = ops.spike(x)
    assert out.dtype == dtype
    assert torch.equal(out, torch.tensor([0, 0, 0, 1, 1, 0, 1], dtype=dtype, device=device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(SURROGATES))
@pytest.mark.parametrize("custom", [False, True])
def test_gradients_are_the_surrogate_derivatives(device, name, custom):
    params = CUSTOM if custom else []
    formula = SURROGATES[name][1]
    p = CUSTOM if custom else default_params(name)
    x = points(device).requires_grad_()
    g = torch.randn(x.shape, dtype=x.dtype, device=device)
    (got,) = torch.autograd.grad(ops.spike(x, name, params), x, g, create_graph=True)
    reference_x = x.detach().clone().requires_grad_()
    want = g * formula(reference_x, p)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)
    # The second derivative differentiates the surrogate derivative (written with torch ops).
    def second_derivative(first, wrt):  # zero where the surrogate is piecewise constant
        if not first.requires_grad:
            return torch.zeros_like(wrt)
        (d,) = torch.autograd.grad(first.sum(), wrt, allow_unused=True)
        return torch.zeros_like(wrt) if d is None else d

    second, want_second = second_derivative(got, x), second_derivative(want, reference_x)
    assert torch.allclose(second, want_second, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_func_transforms_and_forward_mode(device, capfd, recwarn):
    x = points(device)
    f = lambda x: ops.spike(x, "erf", [])  # noqa: E731
    slope = SURROGATES["erf"][1](x, default_params("erf"))
    assert torch.allclose(jacrev(f)(x), torch.diag(slope))
    assert torch.allclose(jacfwd(f)(x), torch.diag(slope))
    tangent = torch.randn_like(x)
    out, out_tangent = jvp(f, (x,), (tangent,))
    assert torch.equal(out, (x > 0).double()) and torch.allclose(out_tangent, slope * tangent)
    assert torch.allclose(hessian(lambda x: f(x).sum())(x), torch.diag(jacrev(lambda x: jacrev(f)(x).diag())(x)
                                                                       .diag()))
    xs = torch.randn(4, 6, dtype=torch.float64, device=device)
    per_sample = vmap(grad(lambda x: (f(x) * torch.arange(6, device=device)).sum()))(xs)
    assert torch.allclose(per_sample, SURROGATES["erf"][1](xs, default_params("erf")) * torch.arange(6, device=device))
    assert torch.equal(vmap(f, in_dims=1, out_dims=1)(xs), f(xs))
    assert "batching rule" not in capfd.readouterr().err
    assert not [w for w in recwarn if "batching rule" in str(w.message)]


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_compile_and_torchscript(device):
    x = torch.randn(3, 5, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.brain.spike.default, (x, "sigmoid", []))
    torch.library.opcheck(torch.ops.brain.spike.default, (x.detach(), "relu_grad", CUSTOM))

    def layer(x, w):
        return ops.spike(x @ w - 0.2, "arctan").sum()

    w = torch.randn(5, 4, device=device, requires_grad=True)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    want = torch.autograd.grad(layer(x, w), (x, w))
    got = torch.autograd.grad(compiled(x, w), (x, w))
    assert all(torch.allclose(a, b) for a, b in zip(got, want))

    @torch.jit.script
    def scripted(x: torch.Tensor) -> torch.Tensor:
        return torch.ops.brain.spike(x, "gaussian", [])

    assert torch.equal(scripted(x), ops.spike(x, "gaussian"))


def test_bad_arguments_are_named():
    x = torch.randn(4)
    with pytest.raises(RuntimeError, match="brain::spike: x must be a floating-point tensor, got Long"):
        ops.spike(torch.arange(4))
    with pytest.raises(RuntimeError, match="unknown surrogate 'tanh'"):
        ops.spike(x, "tanh")
    with pytest.raises(RuntimeError, match="brain::spike: surrogate_params must be empty .* or hold 7 values"):
        ops.spike(x, "sigmoid", [1.0, 2.0])
    with pytest.raises(RuntimeError, match="brain::spike: surrogate_params must be finite"):
        ops.spike(x, "sigmoid", [float("nan")] * 7)
    for name in ops.SURROGATES + ("super_spike",):
        ops.spike(x, name)
