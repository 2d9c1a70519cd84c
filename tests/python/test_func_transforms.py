"""torch.func transforms (grad, vjp, jacrev, jacfwd, hessian, vmap of them) and forward-mode AD
through the brain ops, against the same functions written with dense torch matrices.

The ops' autograd kernels record their nodes as torch's own operators do, so the transforms
run through them; a custom C++ autograd Function would be refused outright. The matmuls are
linear in each tensor, so they have forward derivatives too (jvp, jacfwd, and hessian, which
is jacfwd of jacrev); the LIF ops have first and second derivatives in every combination of
modes, the second ones those of the plain-torch loop (its surrogate differentiated again).
Every op has a batching rule (brain/_vmap.py), checked here against a loop over the slices.
The nodes also run under compiled autograd (torch.compile of the backward pass)."""

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vjp, vmap

import brain  # noqa: F401  (registers torch.ops.brain)
from brain import ops
from test_csr_ops import dense_of, random_csr
from test_lif_op import make_inputs
from test_lif_op import reference as lif_reference
from test_lif_recurrent_op import dense_matrix, make_problem
from test_lif_recurrent_op import reference as recurrent_reference
from test_lif_recurrent_op import reference_dense as recurrent_reference_dense

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def csr_dense(indptr, indices, weights, shape):
    """The dense matrix of the CSR structure as a differentiable function of the weights."""
    rows = torch.repeat_interleave(torch.arange(shape[0], device=indptr.device), indptr.long().diff())
    w = weights.reshape(()).expand(indices.numel()) if weights.numel() == 1 else weights
    return torch.zeros(shape, dtype=weights.dtype, device=weights.device).index_put(
        (rows, indices.long()), w, accumulate=True)


def all_close(a, b):
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(all_close(p, q) for p, q in zip(a, b))
    return torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def transforms_agree(f, reference, args):
    """grad, jacrev, jacfwd and hessian of a scalar f(*args) equal those of reference."""
    argnums = tuple(range(len(args)))
    for transform in (lambda g: grad(g, argnums=argnums), lambda g: jacrev(g, argnums=argnums),
                      lambda g: jacfwd(g, argnums=argnums), lambda g: hessian(g, argnums=argnums),
                      lambda g: jacrev(jacrev(g, argnums=argnums), argnums=argnums)):
        got, want = transform(f)(*args), transform(reference)(*args)
        assert all_close(got, want)


# ---- CSR ------------------------------------------------------------------------------------

def csr_problem(index_dtype, homo, batched, transpose, device, seed=0):
    shape = (6, 5)
    indptr, indices = random_csr(*shape, index_dtype=index_dtype, seed=seed, device=device)
    g = torch.Generator().manual_seed(seed)
    weights = torch.randn(1 if homo else indices.numel(), generator=g, dtype=torch.float64).to(device)
    n_in = shape[0] if transpose else shape[1]
    x = torch.randn(*((3,) if batched else ()), n_in, generator=g, dtype=torch.float64).to(device)
    return indptr, indices, weights, x, shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("event", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("homo,batched,index_dtype", [(False, False, torch.int64), (True, True, torch.int32),
                                                      (False, True, torch.int32)])
def test_csr_transforms_match_the_dense_matrix(device, event, transpose, homo, batched, index_dtype):
    indptr, indices, weights, x, shape = csr_problem(index_dtype, homo, batched, transpose, device)
    op = ops.event_csr_matmul if event else ops.csr_matmul

    def f(w, x):
        return torch.tanh(op(indptr, indices, w, x, shape, transpose)).pow(2).sum()

    def reference(w, x):
        A = csr_dense(indptr, indices, w, shape)
        return torch.tanh(x @ A if transpose else x @ A.T).pow(2).sum()

    transforms_agree(f, reference, (weights, x))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("transpose", [False, True])
def test_csr_per_sample_gradients(device, transpose):
    """vmap(grad): one weight gradient per sample, as a loop of backward passes gives."""
    indptr, indices, weights, x, shape = csr_problem(torch.int64, False, True, transpose, device, seed=3)
    target = torch.randn(x.shape[0], shape[1] if transpose else shape[0], dtype=torch.float64, device=device)

    def loss(w, xi, ti):
        return (ops.csr_matmul(indptr, indices, w, xi, shape, transpose) - ti).pow(2).sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(weights, x, target)
    for i in range(x.shape[0]):
        w = weights.clone().requires_grad_()
        (expected,) = torch.autograd.grad(loss(w, x[i], target[i]), w)
        assert torch.allclose(per_sample[i], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("homo", [False, True])
def test_csr_forward_ad_gradcheck(device, transpose, homo):
    """Forward-mode derivatives (and forward-over-reverse, through the backward op) against
    finite differences; batched grads through vmap."""
    indptr, indices, weights, x, shape = csr_problem(torch.int32, homo, True, transpose, device, seed=5)
    for op in (ops.csr_matmul, ops.event_csr_matmul):
        def f(w, x):
            return op(indptr, indices, w, x, shape, transpose)

        args = (weights.clone().requires_grad_(), x.clone().requires_grad_())
        assert gradcheck(f, args, check_forward_ad=True, check_batched_grad=True, check_batched_forward_grad=True)
        assert gradgradcheck(f, args, check_fwd_over_rev=True, check_rev_over_rev=True)


def test_csr_jvp_with_bool_events_moves_only_the_weights():
    indptr, indices, weights, _, shape = csr_problem(torch.int64, False, False, True, "cpu", seed=2)
    spikes = torch.tensor([True, False, True, True, False, True])
    tangent = torch.randn_like(weights)
    out, out_t = jvp(lambda w: ops.event_csr_matmul(indptr, indices, w, spikes, shape, True), (weights,), (tangent,))
    assert torch.allclose(out, spikes.double() @ dense_of(indptr, indices, weights, shape))
    assert torch.allclose(out_t, spikes.double() @ dense_of(indptr, indices, tangent, shape))


def test_csr_vjp_matches_autograd():
    indptr, indices, weights, x, shape = csr_problem(torch.int64, False, True, False, "cpu", seed=4)
    out, pullback = vjp(lambda w, x: ops.csr_matmul(indptr, indices, w, x, shape, False), weights, x)
    g = torch.randn_like(out)
    w, xx = weights.clone().requires_grad_(), x.clone().requires_grad_()
    expected = torch.autograd.grad(ops.csr_matmul(indptr, indices, w, xx, shape, False), (w, xx), g)
    assert all_close(pullback(g), expected)


# ---- JIT connectivity -----------------------------------------------------------------------

WEIGHTS = {"homo": [0.7], "uniform": [-0.3, 0.9], "normal": [0.2, 0.5]}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("event", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("dist", sorted(WEIGHTS))
def test_jitc_transforms_match_the_materialized_matrix(device, event, transpose, dist):
    shape, prob, seed = (7, 5), 0.4, 11
    weight = torch.tensor(WEIGHTS[dist], dtype=torch.float64, device=device).reshape(() if dist == "homo" else -1)
    x = torch.randn(3, shape[0] if transpose else shape[1], dtype=torch.float64, device=device)
    op = ops.event_jitc_matmul if event else ops.jitc_matmul

    def f(w, x):
        return torch.tanh(op(x, w, prob, seed, shape, dist, transpose)).pow(2).sum()

    def reference(w, x):
        # The materialized matrix is itself an op; its dense product is plain torch.
        A = ops.jitc_materialize(w, prob, seed, shape, dist)
        return torch.tanh(x @ A if transpose else x @ A.T).pow(2).sum()

    transforms_agree(f, reference, (weight, x))
    args = (weight.clone().requires_grad_(), x.clone().requires_grad_())
    g = lambda w, x: op(x, w, prob, seed, shape, dist, transpose)  # noqa: E731
    assert gradcheck(g, args, check_forward_ad=True, check_batched_grad=True)
    assert gradgradcheck(g, args, check_fwd_over_rev=True)


@pytest.mark.parametrize("dist", sorted(WEIGHTS))
def test_jitc_materialize_and_to_csr_forward_mode(dist):
    """Forward and reverse Jacobians in the weight agree with each other and with the entries
    of the matrix, which are linear in the parameters."""
    shape, prob, seed = (6, 8), 0.5, 3
    weight = torch.tensor(WEIGHTS[dist], dtype=torch.float64).reshape(() if dist == "homo" else -1)
    for f in (lambda w: ops.jitc_materialize(w, prob, seed, shape, dist),
              lambda w: ops.jitc_to_csr(w, prob, seed, shape, dist)[2]):
        assert torch.allclose(jacfwd(f)(weight), jacrev(f)(weight))
        assert gradcheck(f, (weight.clone().requires_grad_(),), check_forward_ad=True)
        tangent = torch.randn_like(weight)
        _, out_t = jvp(f, (weight,), (tangent,))
        assert torch.allclose(out_t, (jacfwd(f)(weight) * tangent).reshape(out_t.shape + (-1,)).sum(-1)
                              if dist != "homo" else jacfwd(f)(weight) * tangent)


# ---- LIF ------------------------------------------------------------------------------------

def test_lif_sequence_grad_and_per_sample_grads():
    inp, v0 = make_inputs((30, 4, 6), torch.float64, "cpu")
    inp, v0 = inp.detach(), v0.detach()
    readout = torch.randn(6, dtype=torch.float64)

    def loss(inp, v0):
        spikes, v_last = ops.lif_sequence(inp, v0, v_th=1.0, tau=10.0)
        return (spikes.sum(0) @ readout).pow(2).sum() + v_last.sum()

    def reference_loss(inp, v0):
        spikes, v_last = lif_reference(inp, v0, v_th=1.0, tau=10.0)
        return (spikes.sum(0) @ readout).pow(2).sum() + v_last.sum()

    a, b = inp.clone().requires_grad_(), v0.clone().requires_grad_()
    expected = torch.autograd.grad(reference_loss(a, b), (a, b))
    assert all_close(grad(loss, argnums=(0, 1))(inp, v0), expected)
    # Per-sample: the batch dimension of the op is 1, vmap maps over the data's samples.
    per_sample = vmap(grad(lambda i, v: loss(i[:, None], v[None])), in_dims=(1, 0))(inp, v0)
    for s in range(inp.shape[1]):
        a = inp[:, s:s + 1].clone().requires_grad_()
        (g,) = torch.autograd.grad(reference_loss(a, v0[s:s + 1]), a)
        assert torch.allclose(per_sample[s], g[:, 0])


@pytest.mark.parametrize("form", ["csr", "dense", "jit"])
def test_lif_recurrent_forms_under_grad(form):
    drive, v0, history, indptr, indices, weights = make_problem(T=25, B=2, n=12)
    readout = torch.randn(12, dtype=torch.float64)
    prob, seed = 0.3, 5
    # The dense form's weight is stored as torch.nn.Linear stores it (post x pre).
    weight = {"csr": weights, "dense": dense_matrix(indptr, indices, weights, 12).T.contiguous(),
              "jit": torch.tensor([0.1, 0.4], dtype=torch.float64)}[form]

    def run(drive, v0, weight, reference=False):
        if form == "csr":
            if reference:
                return recurrent_reference(drive, v0, history, indptr, indices, weight)
            return ops.lif_recurrent_sequence(drive, v0, history, indptr, indices, weight)
        A = weight.T if form == "dense" else ops.jitc_materialize(weight, prob, seed, (12, 12), "normal")
        if reference:
            return recurrent_reference_dense(drive, v0, history, A)
        if form == "dense":
            return ops.lif_dense_recurrent_sequence(drive, v0, history, weight)
        return ops.lif_jit_recurrent_sequence(drive, v0, history, weight, prob, seed, dist="normal")

    def loss(drive, v0, weight, reference=False):
        spikes, v_last = run(drive, v0, weight, reference)
        return (spikes.sum(0) @ readout).pow(2).sum() + v_last.pow(2).sum()

    args = [t.clone().requires_grad_() for t in (drive, v0, weight)]
    expected = torch.autograd.grad(loss(*args, reference=True), args)
    got = grad(loss, argnums=(0, 1, 2))(drive, v0, weight)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, rtol=1e-7, atol=1e-9)


def reference_jacobian(f, args):
    """The Jacobian of the plain-torch reference loop (its surrogate is a Python autograd
    Function: torch.autograd.functional, one backward per output entry)."""
    return torch.autograd.functional.jacobian(f, tuple(args))


def assert_jacobians_equal(got, want):
    """got: jacfwd's (outputs) x (arguments); want: torch.autograd.functional's, the same nesting."""
    for got_output, want_output in zip(got, want):
        for g, w in zip(got_output, want_output):
            assert g.shape == w.shape
            assert torch.allclose(g, w.to(g.device), rtol=1e-9, atol=1e-12)


LIF_MODELS = [dict(detach_reset=True, method="exp_euler", surrogate="sigmoid"),
              dict(detach_reset=False, method="euler", surrogate="arctan"),
              dict(detach_reset=False, method="exp_euler", surrogate="multi_gaussian", v_reset=-0.5, R=1.5)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", LIF_MODELS, ids=["detached", "euler-differentiated", "multi-gaussian"])
def test_lif_sequence_forward_mode_matches_the_reference(device, model):
    """jacfwd (forward mode, the op's own tangent recursion) against the Jacobian of the
    plain-torch loop, in the input and v0, at once and through jvp's values."""
    inp, v0 = make_inputs((25, 2, 3), torch.float64, device, scale=4.0)
    inp, v0 = inp.detach(), v0.detach()
    kw = dict(v_th=1.0, tau=8.0, **model)
    got = jacfwd(lambda i, v: ops.lif_sequence(i, v, **kw), argnums=(0, 1))(inp, v0)
    want = reference_jacobian(lambda i, v: lif_reference(i, v, **kw), (inp.cpu(), v0.cpu()))
    assert_jacobians_equal(got, want)
    assert want[0][0].abs().sum() > 0 and want[1][0].abs().sum() > 0  # through spikes and resets
    # jvp returns the op's outputs and one column of the Jacobian.
    tangent = torch.randn_like(inp)
    (spikes, v_last), (d_spikes, d_v_last) = jvp(lambda i: ops.lif_sequence(i, v0, **kw), (inp,), (tangent,))
    assert torch.equal(spikes, ops.lif_sequence(inp, v0, **kw)[0])
    assert torch.allclose(d_v_last, torch.einsum("bntkc,tkc->bn", got[1][0], tangent))
    assert torch.allclose(d_spikes, torch.einsum("sbntkc,tkc->sbn", got[0][0], tangent))


RECURRENT_FORMS = ["csr", "csr-homo", "dense", "jit-homo", "jit-uniform", "jit-normal"]


def recurrent_case(form, device, batched, delay):
    n, prob, seed = 7, 0.4, 11
    drive, v0, history, indptr, indices, weights = make_problem(T=14, B=2, n=n, d=delay, homo=form == "csr-homo",
                                                                device=device, scale=3.0)
    if not batched:
        drive, v0, history = drive[:, 0], v0[0], history[:, 0]
    if form.startswith("csr"):
        return (lambda d, v, h, w: ops.lif_recurrent_sequence(d, v, h, indptr, indices, w),
                lambda d, v, h, w: recurrent_reference(d, v, h, indptr.cpu(), indices.cpu(), w),
                (drive, v0, history, weights))
    if form == "dense":
        weight = dense_matrix(indptr, indices, weights, n).T.contiguous()  # [post, pre]
        return (lambda d, v, h, w: ops.lif_dense_recurrent_sequence(d, v, h, w),
                lambda d, v, h, w: recurrent_reference_dense(d, v, h, w.T),
                (drive, v0, history, weight))
    dist = form.split("-")[1]
    weight = {"homo": torch.tensor(0.6), "uniform": torch.tensor([-0.3, 0.9]),
              "normal": torch.tensor([0.2, 0.5])}[dist].double().to(device)
    return (lambda d, v, h, w: ops.lif_jit_recurrent_sequence(d, v, h, w, prob, seed, dist=dist),
            lambda d, v, h, w: recurrent_reference_dense(d, v, h, ops.jitc_materialize(w, prob, seed, (n, n), dist)),
            (drive, v0, history, weight))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("form", RECURRENT_FORMS)
@pytest.mark.parametrize("batched,delay", [(True, 2), (False, 1), (True, 3)])
def test_lif_recurrent_forms_forward_mode_match_the_reference(device, form, batched, delay):
    """jacfwd in the drive, v0, the spike history and the weights (per synapse, a homogeneous
    weight, the JIT distributions' parameters) against the plain-torch loop's Jacobian."""
    op, reference, args = recurrent_case(form, device, batched, delay)
    got = jacfwd(op, argnums=(0, 1, 2, 3))(*args)
    want = reference_jacobian(reference, [a.cpu() for a in args])
    assert_jacobians_equal(got, want)
    assert want[0][3].abs().sum() > 0  # the recurrent weights moved the spikes


@pytest.mark.parametrize("device", DEVICES)
def test_lif_forward_ad_dual_tensors(device):
    """torch.autograd.forward_ad: the tangents equal jvp's, in float32 as well, and inputs that
    require grad (parameters) still give a plain backward of the primal outputs."""
    import torch.autograd.forward_ad as fwAD
    for dtype in (torch.float64, torch.float32):
        inp, v0 = make_inputs((12, 3, 4), dtype, device)
        inp, v0 = inp.detach(), v0.detach()
        tangent = torch.randn_like(inp)
        _, (want_spikes, want_v) = jvp(lambda i: ops.lif_sequence(i, v0), (inp,), (tangent,))
        leaf = inp.clone().requires_grad_()
        with fwAD.dual_level():
            spikes, v_last = ops.lif_sequence(fwAD.make_dual(leaf, tangent), v0)
            assert torch.equal(fwAD.unpack_dual(spikes).tangent, want_spikes)
            assert torch.equal(fwAD.unpack_dual(v_last).tangent, want_v)
            fwAD.unpack_dual(v_last).primal.sum().backward()
        check = inp.clone().requires_grad_()
        (expected,) = torch.autograd.grad(ops.lif_sequence(check, v0)[1].sum(), check)
        assert torch.equal(leaf.grad, expected)


@pytest.mark.parametrize("recurrence", [None, "dense", "csr", "jit"])
def test_spiking_net_input_sensitivity_in_both_modes_and_both_paths(recurrence):
    """A SpikingNet's Jacobian with respect to its input sequence (Linear, the LIF layer with its
    recurrence, the readout), by forward mode and by reverse mode, through the fused ops and
    through the modules step by step (brain::LIF's spikes are the brain::spike op): all four
    equal."""
    from brain.models import SpikingNet
    nets = [SpikingNet(5, 16, 3, recurrent=recurrence is not None, recurrence=recurrence or "dense", seed=1,
                       fused=fused).double() for fused in (True, False)]
    nets[1].load_state_dict(nets[0].state_dict())
    x = torch.rand(12, 2, 5, dtype=torch.float64) * 3
    reference = jacrev(nets[0])(x)
    assert reference.shape == (12, 2, 3, 12, 2, 5) and reference.abs().sum() > 0
    for net in nets:
        assert all_close(jacfwd(net)(x), reference) and all_close(jacrev(net)(x), reference)


def reference_hessian(f, args):
    """The Hessian of a scalar plain-torch reference: reverse over reverse with
    torch.autograd.functional (the reference's surrogate is a Python autograd Function whose
    backward, g * surrogate'(x) in torch ops, differentiates again)."""
    return torch.autograd.functional.hessian(f, tuple(a.detach() for a in args))


def assert_hessians_equal(got, want, what):
    for got_row, want_row in zip(got, want):
        for g, w in zip(got_row, want_row):
            assert g.shape == w.shape, what
            assert torch.allclose(g, w.to(g.device), rtol=1e-8, atol=1e-10), what


def second_order_transforms(f, argnums):
    """Every way of taking a second derivative: hessian (jacfwd of jacrev), reverse over
    reverse, forward over forward, reverse over forward (grad of a jvp)."""
    return {"hessian": hessian(f, argnums=argnums),
            "jacrev(jacrev)": jacrev(jacrev(f, argnums=argnums), argnums=argnums),
            "jacfwd(jacfwd)": jacfwd(jacfwd(f, argnums=argnums), argnums=argnums),
            "jacrev(jacfwd)": jacrev(jacfwd(f, argnums=argnums), argnums=argnums)}


def lif_loss(spikes, v_last):
    """A scalar that weighs every spike and is not linear in the membrane, so that its Hessian
    has the spikes' second derivative (the surrogate's own derivative), the membrane's part
    through the reset, and the loss's own curvature."""
    def weights(like, rate):  # fixed, signed, no randomness (the transforms vmap this)
        return torch.cos(rate * torch.arange(like.numel(), dtype=like.dtype, device=like.device)).reshape(like.shape)

    w_s, w_v = weights(spikes, 1.7), weights(v_last, 0.9)
    return (spikes * w_s).sum() + (v_last.square() * w_v).sum()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", LIF_MODELS, ids=["detached", "euler-differentiated", "multi-gaussian"])
def test_lif_sequence_second_derivatives_match_the_reference(device, model):
    """The second derivatives of lif_sequence, in the input and v0, by each transform and by a
    double backward (torch.autograd.grad with create_graph, then a backward through it),
    against the plain-torch loop's Hessian: the surrogate's own derivative and the membrane's
    part through the reset are in them."""
    inp, v0 = make_inputs((8, 2, 3), torch.float64, device)
    inp, v0 = inp.detach(), v0.detach()
    f = lambda i, v: lif_loss(*ops.lif_sequence(i, v, **model))  # noqa: E731
    want = reference_hessian(lambda i, v: lif_loss(*lif_reference(i, v, **model)), (inp.cpu(), v0.cpu()))
    assert want[0][0].abs().sum() > 0 and want[0][1].abs().sum() > 0
    for name, transform in second_order_transforms(f, (0, 1)).items():
        assert_hessians_equal(transform(inp, v0), want, name)
    # Plain autograd: a Hessian-vector product by double backward, and a gradient penalty.
    i, v = inp.clone().requires_grad_(), v0.clone().requires_grad_()
    g_i, g_v = torch.autograd.grad(f(i, v), (i, v), create_graph=True)
    direction = torch.randn_like(inp)
    hvp = torch.autograd.grad((g_i * direction).sum(), (i, v), retain_graph=True)
    assert all_close(hvp[0], torch.einsum("abcxyz,xyz->abc", want[0][0].to(device), direction))
    assert all_close(hvp[1], torch.einsum("bcxyz,xyz->bc", want[1][0].to(device), direction))
    penalty = g_i.square().sum() + g_v.square().sum()
    penalty.backward()
    assert i.grad.abs().sum() > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("form", RECURRENT_FORMS)
def test_lif_recurrent_forms_second_derivatives_match_the_reference(device, form):
    """The recurrent forms' second derivatives in the drive, v0, the spike history and the
    weights (whose gradient reads the window's own spikes), against the plain-torch loop's."""
    op, reference, args = recurrent_case(form, device, False, 2)
    args = [a[:9] if k == 0 else a for k, a in enumerate(args)]  # a shorter window (the drive's)
    f = lambda d, v, h, w: lif_loss(*op(d, v, h, w))  # noqa: E731
    want = reference_hessian(lambda d, v, h, w: lif_loss(*reference(d, v, h, w)), [a.cpu() for a in args])
    assert want[3][3].abs().sum() > 0 and want[0][3].abs().sum() > 0
    argnums = (0, 1, 2, 3)
    transforms = second_order_transforms(f, argnums)
    if form not in ("csr", "jit-normal"):  # the cheaper two are enough for the other orders
        transforms = {"hessian": transforms["hessian"]}
    for name, transform in transforms.items():
        assert_hessians_equal(transform(*args), want, name)
    leaves = [a.clone().requires_grad_() for a in args]
    grads = torch.autograd.grad(f(*leaves), leaves, create_graph=True)
    hvp = torch.autograd.grad(grads[3].sum(), leaves[3])[0]  # the Hessian's rows summed
    assert all_close(hvp, want[3][3].to(device).reshape(hvp.numel(), -1).sum(0).reshape(hvp.shape))


def test_lif_third_derivative_matches_the_reference():
    """Any order: a third derivative along a direction by triple backward equals the plain
    loop's, and the full third derivative is the same by forward over forward over reverse and
    by reverse three times (the gradients of the gradients are ops all the way)."""
    inp, v0 = make_inputs((6, 2, 3), torch.float64, "cpu")
    direction = torch.randn_like(inp)
    results = []
    for run in (ops.lif_sequence, lif_reference):
        i, v = inp.detach().requires_grad_(), v0.detach().requires_grad_()
        spikes, v_last = run(i, v, detach_reset=False, surrogate="arctan")
        (g,) = torch.autograd.grad(lif_loss(spikes, v_last) + v_last.pow(3).sum(), i, create_graph=True)
        (h,) = torch.autograd.grad((g * direction).sum(), i, create_graph=True)
        results.append(torch.autograd.grad((h * direction).sum(), i)[0])
    assert results[1].abs().sum() > 0 and all_close(*results)
    f = lambda i: lif_loss(*ops.lif_sequence(i, v0.detach()))  # noqa: E731
    third = jacfwd(hessian(f))(inp.detach()[:3])
    assert third.shape == (3, 2, 3) * 3 and third.abs().sum() > 0
    assert all_close(third, jacrev(jacrev(jacrev(f)))(inp.detach()[:3]))


def test_lif_gradgradcheck():
    """Numerical second derivatives: finite differences of the fused ops' gradients, in both
    orders (reverse over reverse, forward over reverse). Where a spike appears in the
    gradient's own formula (the reset's 1 - s without detach_reset, the recurrent current's
    spikes in the weights' gradient), the surrogate method differentiates it by the surrogate
    where finite differences see a step, by design (the module path does the same, and the
    Hessian tests above compare with it). So the check is the detached reset: lif_sequence
    while spiking, the recurrent form with only the history behind its current."""
    inp, v0 = make_inputs((6, 2, 3), torch.float64, "cpu")
    assert ops.lif_sequence(inp, v0)[0].sum() > 0
    for surrogate in ("arctan", "sigmoid"):
        fn = lambda i, v: ops.lif_sequence(i, v, detach_reset=True, surrogate=surrogate)  # noqa: E731
        assert gradgradcheck(fn, (inp, v0), check_fwd_over_rev=True)
    drive, v0, _, indptr, indices, weights = make_problem(T=6, B=2, n=5, d=6, density=0.5, scale=0.1)
    history = torch.rand(6, 2, 5, dtype=torch.float64) * 0.3
    inputs = tuple(t.clone().requires_grad_() for t in (drive, v0, history, weights))
    fn = lambda d, v, h, w: ops.lif_recurrent_sequence(d, v, h, indptr, indices, w, tau=4.0)  # noqa: E731
    assert fn(*inputs)[0].sum() == 0
    assert gradgradcheck(fn, inputs, check_fwd_over_rev=True)


def test_per_sample_gradients_and_a_gradient_inside_grad():
    """Per-sample gradients (vmap of grad) are first-order and run the fused backward; a
    torch.autograd.grad(create_graph=True) written inside one torch.func.grad level, then
    differentiated by it, is the one second derivative this does not take: it is refused by
    name (the fused backward's own refusal), never wrong. torch.func.grad of torch.func.grad
    takes it."""
    inp, v0 = make_inputs((6, 2, 3), torch.float64, "cpu")
    inp, v0 = inp.detach(), v0.detach()

    def inner(i):
        spikes, v_last = ops.lif_sequence(i, v0)
        (g,) = torch.autograd.grad(lif_loss(spikes, v_last), i, create_graph=True)
        return g.square().sum()

    with pytest.raises(RuntimeError, match="gradient of brain::lif_sequence cannot be differentiated again"):
        grad(inner)(inp)
    f = lambda i: lif_loss(*ops.lif_sequence(i, v0))  # noqa: E731
    want = reference_hessian(lambda i: lif_loss(*lif_reference(i, v0)), (inp,))[0][0]
    penalty = grad(lambda i: grad(f)(i).square().sum())(inp)
    assert all_close(penalty, 2 * torch.einsum("abcxyz,abc->xyz", want, grad(f)(inp)))
    def summed(i, v):
        spikes, v_last = ops.lif_sequence(i, v)
        return spikes.sum() + v_last.square().sum()

    per_sample = vmap(grad(summed), in_dims=(1, 0), out_dims=1)(inp, v0)
    assert all_close(per_sample, grad(summed)(inp, v0))  # the samples do not interact


def test_the_backward_ops_themselves_stay_first_order():
    """The fused backward ops, called directly, are first-order: differentiating their result
    or giving them a tangent is refused by name."""
    inp, v0 = make_inputs((5, 2, 3), torch.float64, "cpu")
    spikes, v_last, v_pre = torch.ops.brain._lif_sequence_forward(inp.detach(), v0.detach(), 0.0, 0.0, 1.0, 1.0,
                                                                  10.0, 1.0, "exp_euler", True, "sigmoid", [])
    v_pre.requires_grad_()
    g_input, _ = torch.ops.brain._lif_sequence_backward(torch.ones_like(spikes), torch.zeros_like(v_last), v_pre,
                                                        0.0, 0.0, 1.0, 1.0, 10.0, 1.0, "exp_euler", True, "sigmoid",
                                                        [])
    with pytest.raises(RuntimeError, match="cannot be differentiated again"):
        g_input.sum().backward()
    with pytest.raises(NotImplementedError, match="has no forward-mode derivative"):
        jvp(lambda v: torch.ops.brain._lif_sequence_backward(torch.ones_like(spikes), torch.zeros_like(v_last), v,
                                                             0.0, 0.0, 1.0, 1.0, 10.0, 1.0, "exp_euler", True,
                                                             "sigmoid", [])[0], (v_pre.detach(),),
            (torch.ones_like(v_pre),))


def test_recorded_nodes_are_named_after_the_ops():
    indptr, indices, weights, x, shape = csr_problem(torch.int64, False, False, False, "cpu")
    w = weights.clone().requires_grad_()
    assert ops.csr_matmul(indptr, indices, w, x, shape).grad_fn.name() == "CsrMatmulBackward"
    assert ops.jitc_matmul(x, w[:1].reshape(()), 0.5, 1, (4, shape[1]), "homo").grad_fn.name() == "JitcMatmulBackward"
    inp, v0 = make_inputs((5, 1, 2), torch.float64, "cpu")
    assert ops.lif_sequence(inp, v0)[0].grad_fn.name() == "LifSequenceBackward"
    # The saved-tensor checks of torch's own nodes hold: a second backward, and a write to a
    # saved input, are refused.
    out = ops.csr_matmul(indptr, indices, w, x, shape).sum()
    out.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.backward()
    y = ops.csr_matmul(indptr, indices, w, x.clone().requires_grad_(), shape).sum()
    with torch.no_grad():
        w.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


# ---- Batching rules -------------------------------------------------------------------------

def no_fallback(capfd, recwarn):
    """torch's per-slice fallback warns (through Python, or on stderr from autograd's threads)."""
    assert not [w for w in recwarn if "batching rule" in str(w.message)]
    assert "batching rule" not in capfd.readouterr().err


def loop(f, in_dims, *args):
    size = next(a.shape[d] for a, d in zip(args, in_dims) if d is not None)
    outs = [f(*[a if d is None else a.select(d, i) for a, d in zip(args, in_dims)]) for i in range(size)]
    if isinstance(outs[0], tuple):
        return tuple(torch.stack([o[k] for o in outs]) for k in range(len(outs[0])))
    return torch.stack(outs)


@pytest.mark.parametrize("device", DEVICES)
def test_vmap_rules_equal_a_loop_over_slices(device, capfd, recwarn):
    indptr, indices, weights, x, shape = csr_problem(torch.int64, False, True, True, device, seed=8)
    xs = torch.randn(4, *x.shape, dtype=torch.float64, device=device)        # [V, B, n]
    ws = torch.randn(4, weights.numel(), dtype=torch.float64, device=device)  # mapped weights
    spikes = torch.rand(4, shape[0], device=device) < 0.5
    gs = torch.randn(4, 3, shape[1], dtype=torch.float64, device=device)    # mapped output gradients

    def csr_backward(g, x, mask):
        return torch.ops.brain._csr_matmul_backward(g, indptr, indices, weights, x, shape, True, mask)

    cases = [
        # x mapped, per-slice [B, n] and [n], float and bool; weights mapped (one call a slice)
        (lambda x: ops.csr_matmul(indptr, indices, weights, x, shape, True), (0,), (xs,)),
        (lambda x: ops.csr_matmul(indptr, indices, weights, x, shape, True), (1,), (xs[:, 0].T.contiguous(),)),
        (lambda s: ops.event_csr_matmul(indptr, indices, weights, s, shape, True), (0,), (spikes,)),
        (lambda w, x: ops.csr_matmul(indptr, indices, w, x, shape, True), (0, None), (ws, x)),
        (lambda x: ops.jitc_matmul(x, torch.tensor([0.1, 0.3], dtype=torch.float64, device=device), 0.4, 2,
                                   shape, "uniform", True), (0,), (xs,)),
        (lambda w: ops.jitc_materialize(w, 0.4, 2, shape, "normal"), (0,), (ws[:, :2].abs(),)),
        # the backward ops: grad_x only (folded), grad_w too (a call a slice), g not mapped
        (lambda g: csr_backward(g, x, [True, False])[0], (0,), (gs,)),
        (lambda g: csr_backward(g, x, [True, True]), (0,), (gs,)),
        (lambda x: csr_backward(torch.ones_like(gs[0]), x, [True, False])[0], (0,), (xs,)),
        (lambda g: torch.ops.brain._jitc_matmul_backward(g, x, torch.tensor(0.5, dtype=torch.float64, device=device),
                                                         0.3, 9, shape, "homo", True, [True, False])[0], (0,), (gs,)),
    ]
    inp, v0 = make_inputs((6, 2, 3), torch.float64, device)
    inp, v0 = inp.detach(), v0.detach()
    drive, rv0, history, r_indptr, r_indices, r_weights = make_problem(T=6, B=2, n=5, device=device)
    cases += [
        # the LIF sequence ops: the mapped dimension is one more neuron dimension
        (lambda i, v: ops.lif_sequence(i, v), (2, 0), (3 * torch.rand(6, 2, 4, 3, dtype=torch.float64, device=device),
                                                       torch.rand(4, 2, 3, dtype=torch.float64, device=device))),
        (lambda i: ops.lif_sequence(i, v0), (1,), (torch.stack([inp, 2 * inp], 1),)),
        # the recurrent forms: the mapped drives join the batch
        (lambda d: ops.lif_recurrent_sequence(d, rv0, history, r_indptr, r_indices, r_weights), (0,),
         (torch.stack([drive, 1.5 * drive]),)),
    ]
    for f, in_dims, args in cases:
        got, want = vmap(f, in_dims=in_dims)(*args), loop(f, in_dims, *args)
        assert all_close(got, want)
    no_fallback(capfd, recwarn)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("form", ["csr", "dense", "jit"])
@pytest.mark.parametrize("batched", [True, False])
def test_vmap_rules_of_the_recurrent_forms(device, form, batched, capfd, recwarn):
    """The recurrent forms fold mapped drives, initial states and histories into their batch
    (one call), and so do their backward ops; a weight gradient per slice (per-sample
    gradients) is then made from each slice's current gradients, one matmul backward a slice.
    Mapped weights go slice by slice. Each equals the loop over slices."""
    drive, v0, history, indptr, indices, weights = make_problem(T=9, B=2, n=6, d=2, device=device)
    if not batched:
        drive, v0, history = drive[:, 0], v0[0], history[:, 0]
    weight = {"csr": weights, "dense": dense_matrix(indptr, indices, weights, 6).T.contiguous(),
              "jit": torch.tensor([0.2, 0.5], dtype=torch.float64, device=device)}[form]
    ops_ = torch.ops.brain
    if form == "csr":
        f = lambda d, v, h, w: ops.lif_recurrent_sequence(d, v, h, indptr, indices, w)  # noqa: E731
        forward = lambda d, v, h, w: ops_._lif_recurrent_sequence_forward(  # noqa: E731
            d, v, h, indptr, indices, w, 0.0, 0.0, 1.0, 1.0, 10.0, 1.0, "exp_euler", True, "sigmoid", [])
        backward = lambda gs, gv, vp, s, h, w, mask: ops_._lif_recurrent_sequence_backward(  # noqa: E731
            gs, gv, vp, s, h, indptr, indices, w, 0.0, 0.0, 1.0, 1.0, 10.0, 1.0, "exp_euler", True, "sigmoid", [],
            mask)
    elif form == "dense":
        f = lambda d, v, h, w: ops.lif_dense_recurrent_sequence(d, v, h, w)  # noqa: E731
        forward = lambda d, v, h, w: ops_._lif_dense_recurrent_sequence_forward(  # noqa: E731
            d, v, h, w, 0.0, 0.0, 1.0, 1.0, 10.0, 1.0, "exp_euler", True, "sigmoid", [])
        backward = lambda gs, gv, vp, s, h, w, mask: ops_._lif_dense_recurrent_sequence_backward(  # noqa: E731
            gs, gv, vp, s, h, w, 0.0, 0.0, 1.0, 1.0, 10.0, 1.0, "exp_euler", True, "sigmoid", [], mask)
    else:
        f = lambda d, v, h, w: ops.lif_jit_recurrent_sequence(d, v, h, w, 0.4, 3, dist="normal")  # noqa: E731
        forward = lambda d, v, h, w: ops_._lif_jit_recurrent_sequence_forward(  # noqa: E731
            d, v, h, w, 0.4, 3, "normal", 0.0, 0.0, 1.0, 1.0, 10.0, 1.0, "exp_euler", True, "sigmoid", [])
        backward = lambda gs, gv, vp, s, h, w, mask: ops_._lif_jit_recurrent_sequence_backward(  # noqa: E731
            gs, gv, vp, s, h, w, 0.4, 3, "normal", 0.0, 0.0, 1.0, 1.0, 10.0, 1.0, "exp_euler", True, "sigmoid", [],
            mask)
    drives = torch.stack([drive, 1.3 * drive, 0.7 * drive])
    cases = [
        (f, (0, None, None, None), (drives, v0, history, weight)),
        (f, (1, 0, None, None), (drives.movedim(0, 1), torch.stack([v0, 0.5 * v0, v0]), history, weight)),
        (forward, (None, None, 0, None), (drive, v0, torch.stack([history, 1 - history, history]), weight)),
        (f, (0, None, None, 0), (drives, v0, history, torch.stack([weight, 0.9 * weight, 1.1 * weight]))),
    ]
    spikes, v_last, v_pre = forward(drive, v0, history, weight)
    grads = torch.randn(3, *spikes.shape, dtype=torch.float64, device=device)
    for mask in ([True, True, True, False], [True, False, False, False], [False, False, True, True]):
        cases.append((lambda g, m=mask: backward(g, torch.ones_like(v_last), v_pre, spikes, history, weight, m),
                      (0,), (grads,)))
    # Per-sample gradients: every slice its own window (spikes, v_pre) and weight gradient.
    windows = [forward(scale * drive, v0, history, weight) for scale in (1.0, 1.3, 0.7)]
    mapped_spikes, mapped_v_pre = (torch.stack([w[k] for w in windows]) for k in (0, 2))
    for mask in ([True, True, True, True], [False, True, False, True]):
        cases.append((lambda g, s, vp, m=mask: backward(g, torch.ones_like(v_last), vp, s, history, weight, m),
                      (0, 0, 0), (grads, mapped_spikes, mapped_v_pre)))
    for fn, in_dims, args in cases:
        # A gradient not asked for is None, which vmap does not return.
        tensors = lambda *a, fn=fn: tuple(torch.zeros(0) if o is None else o for o in fn(*a))  # noqa: E731
        assert all_close(vmap(tensors, in_dims=in_dims)(*args), loop(tensors, in_dims, *args))
    no_fallback(capfd, recwarn)


def test_vmap_rules_of_the_poisson_structure_and_plasticity_ops(capfd, recwarn):
    """The ops without a batch dimension of their own run one call a slice, each equal to the
    op on its slice alone; the plasticity ops update each slice of mapped weights in place and
    refuse shared weights with mapped spikes."""
    rates = torch.rand(3, 40, dtype=torch.float64) * 400
    indptr, indices = random_csr(6, 5, seed=3)
    rows = torch.stack([torch.randint(0, 6, (12,), generator=torch.Generator().manual_seed(k)) for k in range(3)])
    cols = torch.stack([torch.randint(0, 5, (12,), generator=torch.Generator().manual_seed(9 + k)) for k in range(3)])
    step = torch.tensor([4])
    cases = [
        (lambda r: ops.poisson_spikes(r, 0.1, 7, 4), (0,), (rates,)),
        (lambda r: ops.poisson_spikes_at(r, 0.1, 7, step), (0,), (rates,)),
        (lambda r, c: ops.csr_from_coo(r, c, (6, 5)), (0, 0), (rows, cols)),
        (lambda p, i: ops.csr_to_csc(p, i, (6, 5)), (0, 0), (torch.stack([indptr] * 2), torch.stack([indices] * 2))),
        (lambda like: ops.jitc_pattern(like, 0.3, 5, (6, 5)), (0,), (torch.zeros(2, 1),)),
    ]
    for f, in_dims, args in cases:
        assert all_close(vmap(f, in_dims=in_dims)(*args), loop(f, in_dims, *args))
    # A check per slice, raising for the slice that is wrong.
    bad = torch.stack([indices, indices.clamp(max=4) + 1])
    vmap(lambda i: (ops.validate_csr(indptr, i, (6, 5)), i)[1])(torch.stack([indices, indices]))
    with pytest.raises(RuntimeError, match="out of range"):
        vmap(lambda i: (ops.validate_csr(indptr, i, (6, 5)), i)[1])(bad)

    def update(w, spikes, trace):
        ops.csr_update_on_pre_(w, indptr, indices, spikes, trace, 0.5, w_min=0.0, w_max=1.2)
        return w

    g = torch.Generator().manual_seed(4)  # the outcome must not depend on the tests before
    weights = torch.rand(3, indices.numel(), generator=g, dtype=torch.float64)
    spikes = torch.rand(3, 6, generator=g) < 0.5
    trace = torch.rand(3, 5, generator=g, dtype=torch.float64)
    want = loop(update, (0, 0, 0), weights.clone(), spikes, trace)
    mapped = weights.clone()
    got = vmap(update)(mapped, spikes, trace)
    assert all_close(got, want) and all_close(mapped, want)  # in place, each slice its own update
    assert not torch.equal(want, weights)
    with pytest.raises(RuntimeError, match="weights it updates in place must be mapped"):
        vmap(update, in_dims=(None, 0, 0))(weights[0].clone(), spikes, trace)
    no_fallback(capfd, recwarn)


def test_per_sample_gradients_of_a_lif_layer_without_the_fallback(capfd, recwarn):
    """vmap(grad) through csr_matmul and lif_sequence: the rules serve the forward, the
    backward ops and the autograd of both."""
    indptr, indices, weights, _, shape = csr_problem(torch.int64, False, False, True, "cpu", seed=1)
    inputs = torch.rand(5, 8, shape[0], dtype=torch.float64) * 2  # [samples, T, n_in]

    def loss(w, sample):
        current = ops.csr_matmul(indptr, indices, w, sample, shape, True)  # [T, n_out]
        spikes, v = ops.lif_sequence(current, torch.zeros(shape[1], dtype=torch.float64), v_th=0.5, tau=5.0)
        return spikes.sum() + v.pow(2).sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(weights, inputs)
    for s in range(inputs.shape[0]):
        w = weights.clone().requires_grad_()
        (expected,) = torch.autograd.grad(loss(w, inputs[s]), w)
        assert torch.allclose(per_sample[s], expected)
    no_fallback(capfd, recwarn)


def test_per_sample_forward_jacobians_without_the_fallback(capfd, recwarn):
    """vmap(jacfwd) through csr_matmul and lif_sequence: the mapped primal reaches the tangent
    factors' rule (elementwise), the mapped tangents the matmul's."""
    indptr, indices, weights, _, shape = csr_problem(torch.int64, False, False, True, "cpu", seed=2)
    inputs = torch.rand(4, 9, shape[0], dtype=torch.float64) * 2  # [samples, T, n_in]

    def last_membrane(sample):
        current = ops.csr_matmul(indptr, indices, weights, sample, shape, True)
        return ops.lif_sequence(current, torch.zeros(shape[1], dtype=torch.float64), v_th=0.5, tau=5.0)[1]

    per_sample = vmap(jacfwd(last_membrane))(inputs)
    assert all_close(per_sample, loop(jacrev(last_membrane), (0,), inputs))
    no_fallback(capfd, recwarn)


# ---- Compiled autograd ----------------------------------------------------------------------

def test_compiled_autograd_gives_the_eager_gradients():
    """torch.compile of the backward pass (compiled autograd) calls each node's backward with
    the node's constants; its graph cache is keyed on them, so ops that differ only in a
    constant (transpose, shape, tau) each get their own gradients, in one compiled session."""
    from torch._dynamo import compiled_autograd

    def grads(f, leaves):
        leaves = [t.detach().clone().requires_grad_() for t in leaves]
        f(*leaves).backward()
        return [t.grad for t in leaves]

    cases = []
    for n, transpose in [(5, True), (7, True), (7, False)]:
        indptr, indices = random_csr(n, n + 1, seed=n)
        w = torch.randn(indices.numel(), dtype=torch.float64)
        x = torch.randn(3, n if transpose else n + 1, dtype=torch.float64)
        cases.append((lambda w, x, p=indptr, i=indices, n=n, t=transpose:
                      ops.csr_matmul(p, i, w, x, (n, n + 1), t).tanh().sum(), [w, x]))
        cases.append((lambda w, x, n=n, t=transpose:
                      ops.jitc_matmul(x, w, 0.3, n, (n, n + 1), "uniform", t).tanh().sum(),
                      [torch.tensor([-0.2, 0.5], dtype=torch.float64), x]))
    inp, v0 = make_inputs((6, 2, 3), torch.float64, "cpu")
    for tau in (10.0, 3.0):
        cases.append((lambda i, v, tau=tau: sum(t.pow(2).sum() for t in ops.lif_sequence(i, v, tau=tau)),
                      [inp, v0]))
    drive, rv0, history, indptr, indices, weights = make_problem(T=6, B=2, n=8)
    cases.append((lambda d, w: sum(t.pow(2).sum() for t in ops.lif_recurrent_sequence(d, rv0, history, indptr,
                                                                                      indices, w)), [drive, weights]))
    cases.append((lambda w: ops.jitc_materialize(w, 0.4, 3, (4, 5), "normal").pow(2).sum(),
                  [torch.tensor([0.1, 0.6], dtype=torch.float64)]))
    eager = [grads(f, leaves) for f, leaves in cases]
    with compiled_autograd._enable(torch.compile(backend="eager")):
        compiled = [grads(f, leaves) for f, leaves in cases + cases]
    for got, want in zip(compiled, eager + eager):
        assert all_close(got, want)
