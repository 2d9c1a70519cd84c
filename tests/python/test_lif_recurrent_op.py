"""brain::lif_recurrent_sequence and brain::lif_dense_recurrent_sequence, a recurrent LIF
layer's window in one op (CSR or dense recurrence), against a plain PyTorch loop with the dense
recurrent matrix (float64) and against the op-by-op network (event_csr_matmul or Linear, then
lif_sequence, per step)."""

import functools
import itertools
import math

import pytest
import torch

import torch.nn.functional as F

import brain  # noqa: F401  (registers torch.ops.brain)
from brain import ops
from test_lif_op import SURROGATES, Spike, default_params

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CONSTANTS = (0.0, 0.0, 1.0, 1.0, 10.0, 1.0, "exp_euler", True, "sigmoid", [])


def make_problem(T=40, B=3, n=30, d=2, dtype=torch.float64, index_dtype=torch.int64, homo=False, seed=0,
                 density=0.2, scale=2.5, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    drive = torch.rand(T, B, n, generator=g, dtype=torch.float64) * scale
    v0 = torch.rand(B, n, generator=g, dtype=torch.float64)
    history = (torch.rand(d, B, n, generator=g) < 0.2).double()
    mask = torch.rand(n, n, generator=g) < density
    values = torch.randn(n, n, generator=g, dtype=torch.float64) * 0.5
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(mask.sum(1), 0)
    indices = mask.nonzero()[:, 1].contiguous()
    weights = torch.tensor([0.3], dtype=torch.float64) if homo else values[mask].contiguous()

    def to(t, dt=dtype):
        return t.to(dt).to(device)

    return (to(drive), to(v0), to(history), to(indptr, index_dtype), to(indices, index_dtype), to(weights))


def dense_matrix(indptr, indices, weights, n):
    rows = torch.repeat_interleave(torch.arange(n, device=indptr.device), indptr.long().diff())
    w = weights.expand(indices.numel()) if weights.numel() == 1 and indices.numel() != 1 else weights
    return torch.zeros(n, n, dtype=weights.dtype, device=weights.device).index_put(
        (rows, indices.long()), w, accumulate=True)


def reference(drive, v0, history, indptr, indices, weights, **kw):
    """The recurrent layer in plain torch with the dense matrix (differentiable in the weights)."""
    return reference_dense(drive, v0, history, dense_matrix(indptr, indices, weights, drive.shape[-1]), **kw)


def reference_dense(drive, v0, history, A, *, v_rest=0.0, v_reset=0.0, v_th=1.0, R=1.0, tau=10.0, dt=1.0,
                    method="exp_euler", detach_reset=True, surrogate="sigmoid", params=None):
    """The recurrent layer in plain torch: A [pre, post], a list as the delay line and one torch
    op per expression of brain::LIF's update."""
    params = params or default_params(surrogate)
    derivative = SURROGATES[surrogate][1]
    line = list(history.unbind(0))
    u, spikes = v0, []
    for t in range(drive.shape[0]):
        current = drive[t] + line[t] @ A
        if method == "exp_euler":
            vinf = v_rest + R * current
            v = vinf + (u - vinf) * math.exp(-dt / tau)
        else:
            v = u + (-(u - v_rest) + R * current) * (dt / tau)
        s = Spike.apply((v - v_th) / (v_th - v_reset), derivative, params)
        u = torch.where(s > 0, torch.full_like(v, v_reset), v) if detach_reset else v + (v_reset - v) * s
        spikes.append(s)
        line.append(s)
    return (torch.stack(spikes) if spikes else drive.new_zeros(drive.shape)), u


def op_by_op(drive, v0, history, indptr, indices, weights, **kw):
    """The network the op replaces: one event_csr_matmul and one lif_sequence step per step."""
    n = drive.shape[-1]
    line = list(history.unbind(0))
    u, spikes = v0, []
    for t in range(drive.shape[0]):
        rec = ops.event_csr_matmul(indptr, indices, weights, line[t], [n, n], True)
        s, u = ops.lif_sequence((drive[t] + rec).unsqueeze(0), u, **kw)
        spikes.append(s[0])
        line.append(s[0])
    return torch.stack(spikes), u


def loss_weights(spikes, v_last, seed=1):
    g = torch.Generator().manual_seed(seed)
    ws = torch.randn(spikes.shape, generator=g, dtype=torch.float64).to(spikes)
    wv = torch.randn(v_last.shape, generator=g, dtype=torch.float64).to(v_last)
    return ws, wv


def grads_of(spikes, v_last, inputs, seed=1):
    ws, wv = loss_weights(spikes, v_last, seed)
    return torch.autograd.grad((spikes * ws).sum() + (v_last * wv).sum(), inputs)


def differentiable(problem):
    drive, v0, history, indptr, indices, weights = problem
    return (drive.requires_grad_(), v0.requires_grad_(), history.requires_grad_(), indptr, indices,
            weights.requires_grad_())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("delay,index_dtype,homo", [(1, torch.int64, False), (3, torch.int32, False),
                                                    (2, torch.int64, True)])
def test_matches_the_dense_loop_and_the_op_by_op_network(device, dtype, delay, index_dtype, homo):
    problem = differentiable(make_problem(d=delay, dtype=dtype, index_dtype=index_dtype, homo=homo, device=device))
    drive, v0, history, indptr, indices, weights = problem
    kw = dict(v_rest=-0.2, v_reset=-0.1, v_th=0.9, R=1.3, tau=7.0, dt=0.5)
    spikes, v_last = ops.lif_recurrent_sequence(*problem, **kw)
    ref_spikes, ref_v = reference(*problem, **kw)
    assert 0.02 < spikes.mean().item() < 0.5  # both branches, and recurrent input that matters
    if device == "cpu":
        # The same scatter and sum as event_csr_matmul + lif_sequence: the same bits.
        by_op_spikes, by_op_v = op_by_op(*problem, **kw)
        assert torch.equal(spikes, by_op_spikes) and torch.equal(v_last, by_op_v)
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(v_last, ref_v)
    inputs = (drive, v0, history, weights)
    got = grads_of(spikes, v_last, inputs)
    want = grads_of(ref_spikes, ref_v, inputs)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    for name, a, b in zip(("drive", "v0", "history", "weights"), got, want):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * b.abs().max().item(), msg=name)


def test_one_long_sequence_gives_the_op_by_op_spikes_on_any_thread_count():
    """B = 1 (one long sequence) takes its own path: each step's scatter as event_csr_matmul
    scatters one item (every neuron's sum in row order), the membrane update split over
    threads. Busy steps (~135k entries) and quiet ones: the op-by-op network's spikes, on any
    number of threads."""
    n, density = 1500, 0.3
    problem = make_problem(T=12, B=1, n=n, d=1, dtype=torch.float32, density=density, scale=1.2, seed=3)
    drive, v0, history, indptr, indices, weights = problem
    history.fill_(0.0)
    history[0, 0, : n // 5] = 1.0  # a first step whose scatter touches ~135k entries
    drive[8:] -= 20.0  # then silence: the last steps' scatters are small
    kw = dict(v_rest=0.0, v_reset=0.0, v_th=1.0, R=1.0, tau=5.0, dt=1.0)
    by_op_spikes, by_op_v = op_by_op(*problem, **kw)
    line = torch.cat([history, by_op_spikes])[: drive.shape[0]]
    work = (line[:, 0] * indptr.diff()).sum(1)
    assert (work > 100000).sum() >= 2 and (work < 1000).sum() >= 2, work
    threads = torch.get_num_threads()
    try:
        for k in (1, max(threads, 2)):
            torch.set_num_threads(k)
            spikes, v_last = ops.lif_recurrent_sequence(*problem, **kw)
            assert torch.equal(spikes, by_op_spikes) and torch.equal(v_last, by_op_v), k
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("method,detach_reset", list(itertools.product(["exp_euler", "euler"], [True, False])))
@pytest.mark.parametrize("surrogate", ["sigmoid", "arctan", "multi_gaussian"])
def test_methods_resets_and_surrogates(method, detach_reset, surrogate):
    problem = differentiable(make_problem(T=25, B=2, n=20, d=2, seed=4))
    params = [p * 1.3 for p in default_params(surrogate)]
    kw = dict(method=method, detach_reset=detach_reset, surrogate=surrogate, surrogate_params=params, tau=5.0)
    spikes, v_last = ops.lif_recurrent_sequence(*problem, **kw)
    ref_spikes, ref_v = reference(*problem, method=method, detach_reset=detach_reset, surrogate=surrogate,
                                  params=params, tau=5.0)
    assert torch.equal(spikes, ref_spikes)
    inputs = tuple(problem[i] for i in (0, 1, 2, 5))
    for a, b in zip(grads_of(spikes, v_last, inputs), grads_of(ref_spikes, ref_v, inputs)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * (1 + b.abs().max().item()))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_below_threshold(device):
    # Without spikes the membrane is smooth in every input, and with the delay as long as the
    # window only the history (arbitrary values, which the event form weighs by their value)
    # comes back through A, not the window's own spikes, whose gradient is the surrogate's.
    drive, v0, _, indptr, indices, weights = make_problem(T=8, B=2, n=6, d=8, scale=0.1, density=0.5,
                                                          device=device)
    history = torch.rand(8, 2, 6, dtype=torch.float64, device=device) * 0.3
    assert ops.lif_recurrent_sequence(drive, v0, history, indptr, indices, weights, tau=4.0)[0].sum() == 0
    inputs = tuple(t.clone().requires_grad_() for t in (drive, v0, history, weights))
    for method in ("euler", "exp_euler"):
        def fn(d, v, h, w):
            return ops.lif_recurrent_sequence(d, v, h, indptr, indices, w, method=method, tau=4.0, R=0.7)[1]
        assert torch.autograd.gradcheck(fn, inputs)


def test_double_backward_is_the_reference_loops():
    """A gradient penalty in the drive and the weights through each recurrent form equals the
    plain loop's (test_func_transforms.py compares whole Hessians)."""
    drive, v0, history, indptr, indices, weights = make_problem(T=8, B=2, n=6, d=2, density=0.5, scale=3.0)
    dense = dense_matrix(indptr, indices, weights, 6)
    jit_weight = torch.tensor(0.3, dtype=drive.dtype)
    forms = {  # name: (the op, the reference, the weights)
        "csr": (lambda d, w: ops.lif_recurrent_sequence(d, v0, history, indptr, indices, w),
                lambda d, w: reference(d, v0, history, indptr, indices, w), weights),
        "dense": (lambda d, w: ops.lif_dense_recurrent_sequence(d, v0, history, w),
                  lambda d, w: reference_dense(d, v0, history, w.T), dense.T.contiguous()),
        "jit": (lambda d, w: ops.lif_jit_recurrent_sequence(d, v0, history, w, 0.5, 3),
                lambda d, w: reference_dense(d, v0, history, jit_matrix(w, 0.5, 3, 6, "homo")), jit_weight),
    }
    for name, (op, ref, w0) in forms.items():
        penalties = []
        for run in (op, ref):
            d, w = drive.clone().requires_grad_(), w0.clone().requires_grad_()
            spikes, v_last = run(d, w)
            g_d, g_w = torch.autograd.grad(spikes.sum() + v_last.square().sum(), (d, w), create_graph=True)
            penalties.append(torch.autograd.grad(g_d.square().sum() + g_w.square().sum(), (d, w)))
        assert penalties[1][1].abs().sum() > 0, name
        for got, want in zip(*penalties):
            assert torch.allclose(got, want, rtol=1e-9, atol=1e-12), name


def test_window_shapes_empty_and_non_contiguous():
    drive, v0, history, indptr, indices, weights = make_problem(T=12, B=4, n=10, d=3, dtype=torch.float32)
    s_ref, v_ref = ops.lif_recurrent_sequence(drive, v0, history, indptr, indices, weights)
    # Non-contiguous: time-first views of batch-first tensors, every other weight of a longer one.
    s, v = ops.lif_recurrent_sequence(drive.transpose(0, 1).contiguous().transpose(0, 1), v0.t().contiguous().t(),
                                      history.transpose(0, 1).contiguous().transpose(0, 1), indptr,
                                      indices, torch.stack([weights, weights], 1)[:, 0])
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)
    # One item without a batch dimension.
    s1, v1 = ops.lif_recurrent_sequence(drive[:, 1], v0[1], history[:, 1], indptr, indices, weights)
    assert torch.equal(s1, s_ref[:, 1]) and torch.equal(v1, v_ref[1])
    # A window shorter than the delay reads only history; two windows equal one.
    first = ops.lif_recurrent_sequence(drive[:2], v0, history, indptr, indices, weights)
    assert torch.equal(first[0], s_ref[:2])
    second_history = torch.cat([history, first[0]])[-3:]
    second = ops.lif_recurrent_sequence(drive[2:], first[1], second_history, indptr, indices, weights)
    assert torch.equal(second[0], s_ref[2:]) and torch.equal(second[1], v_ref)
    # No steps, no items, no neurons, no synapses.
    s0, v00 = ops.lif_recurrent_sequence(drive[:0], v0, history, indptr, indices, weights)
    assert s0.shape == (0, 4, 10) and torch.equal(v00, v0)
    sb, vb = ops.lif_recurrent_sequence(drive[:, :0], v0[:0], history[:, :0], indptr, indices, weights)
    assert sb.shape == (12, 0, 10) and vb.shape == (0, 10)
    empty_ptr = torch.zeros(1, dtype=torch.int64)
    sn, vn = ops.lif_recurrent_sequence(drive[..., :0], v0[:, :0], history[..., :0], empty_ptr,
                                        indices[:0], weights[:0])
    assert sn.shape == (12, 4, 0) and vn.shape == (4, 0)
    no_syn = ops.lif_recurrent_sequence(drive, v0, history, torch.zeros(11, dtype=torch.int64), indices[:0],
                                        weights[:0])
    assert torch.equal(no_syn[0], ops.lif_sequence(drive, v0)[0])


def test_gradients_of_empty_windows():
    drive, v0, history, indptr, indices, weights = differentiable(make_problem(T=0, B=2, n=5, d=2))
    s, v = ops.lif_recurrent_sequence(drive, v0, history, indptr, indices, weights)
    g = torch.autograd.grad(v.sum(), (v0, history, weights), allow_unused=True)
    assert torch.equal(g[0], torch.ones_like(v0))
    assert g[1] is None or torch.count_nonzero(g[1]) == 0
    assert g[2] is None or torch.count_nonzero(g[2]) == 0


def test_no_grad_saves_nothing_and_agrees():
    problem = differentiable(make_problem(T=20, B=3, n=12, dtype=torch.float32))
    with torch.no_grad():
        s, v = ops.lif_recurrent_sequence(*problem)
    assert s.grad_fn is None
    s2, v2 = ops.lif_recurrent_sequence(*problem)
    assert s2.grad_fn is not None and torch.equal(s, s2) and torch.equal(v, v2)


def test_gradients_do_not_depend_on_the_thread_count():
    problem = differentiable(make_problem(T=30, B=5, n=200, d=2, dtype=torch.float32, density=0.1))
    threads = torch.get_num_threads()
    results = []
    try:
        for k in (1, max(threads, 2)):
            torch.set_num_threads(k)
            s, v = ops.lif_recurrent_sequence(*problem)
            results.append((s, v, *grads_of(s, v, tuple(problem[i] for i in (0, 1, 2, 5)))))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    drive, v0, history, indptr, indices, weights = make_problem(T=10, B=2, n=7, dtype=torch.float32, device=device)
    args = (drive.requires_grad_(), v0, history, indptr, indices, weights.requires_grad_())
    torch.library.opcheck(torch.ops.brain.lif_recurrent_sequence.default, (*args, *CONSTANTS))
    torch.library.opcheck(torch.ops.brain.lif_recurrent_sequence.default,
                          (*args, *CONSTANTS[:7], False, "arctan", [2.0, 1.0, 0.5, 0.15, 6.0, 0.5, 1.0]))
    plain = tuple(t.detach() for t in args)
    spikes, v_last, v_pre = torch.ops.brain._lif_recurrent_sequence_forward(*plain, *CONSTANTS)
    torch.library.opcheck(torch.ops.brain._lif_recurrent_sequence_forward.default, (*plain, *CONSTANTS))
    for mask in ([True, True, True, True], [True, False, False, True]):
        torch.library.opcheck(torch.ops.brain._lif_recurrent_sequence_backward.default,
                              (torch.randn_like(spikes), torch.randn_like(v_last), v_pre, spikes, *plain[2:],
                               *CONSTANTS, mask))


def test_torch_compile_fullgraph():
    drive, v0, history, indptr, indices, weights = make_problem(T=16, B=2, n=9, dtype=torch.float32)
    w_out = torch.randn(9, 3)
    drive.requires_grad_()
    weights.requires_grad_()

    def f(d, w):
        s, u = ops.lif_recurrent_sequence(d, v0, history, indptr, indices, w, tau=5.0)
        return (s.mean(0) @ w_out).square().sum() + u.sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(drive, weights), (drive, weights))
    want = torch.autograd.grad(f(drive, weights), (drive, weights))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_bad_input_is_named():
    drive, v0, history, indptr, indices, weights = make_problem(T=5, B=2, n=6, dtype=torch.float32, density=0.5)
    call = ops.lif_recurrent_sequence
    with pytest.raises(RuntimeError, match="tau must be > 0"):
        call(drive, v0, history, indptr, indices, weights, tau=0.0)
    with pytest.raises(RuntimeError, match="at least one step"):
        call(drive, v0, history[:0], indptr, indices, weights)
    with pytest.raises(RuntimeError, match="history must be"):
        call(drive, v0, history[:, :1], indptr, indices, weights)
    with pytest.raises(RuntimeError, match="history must have drive's dtype"):
        call(drive, v0, history.double(), indptr, indices, weights)
    with pytest.raises(RuntimeError, match="weights must have drive's dtype"):
        call(drive, v0, history, indptr, indices, weights.double())
    with pytest.raises(RuntimeError, match="v0 must have input's shape"):
        call(drive, v0[:, :3], history, indptr, indices, weights)
    with pytest.raises(RuntimeError, match="drive must be"):
        call(drive[0, 0], v0[0, 0], history[0, 0], indptr, indices, weights)
    with pytest.raises(RuntimeError, match="indptr must have n_rows"):
        call(drive, v0, history, indptr[:-1], indices, weights)
    with pytest.raises(RuntimeError, match="one per stored entry"):
        call(drive, v0, history, indptr, indices, weights[:-1])
    with pytest.raises(RuntimeError, match="indices must have indptr's dtype"):
        call(drive, v0, history, indptr, indices.int(), weights)
    # Values, checked once per call: a bad entry in a row that never fires is caught too.
    silent = history.clone().zero_()
    bad = indices.clone()
    bad[-1] = 6
    with pytest.raises(RuntimeError, match=r"indices\[.*\] is out of range"):
        call(drive * 0, v0 * 0, silent, indptr, bad, weights)
    wrong_order = indptr.clone()
    wrong_order[2], wrong_order[3] = indptr[3], indptr[2] - 1
    with pytest.raises(RuntimeError, match="non-decreasing"):
        call(drive, v0, history, wrong_order, indices, weights)
    short = indptr.clone()
    short[-1] -= 1
    with pytest.raises(RuntimeError, match="must equal nnz"):
        call(drive, v0, history, short, indices, weights)


def test_backward_op_rejects_bad_input():
    drive, v0, history, indptr, indices, weights = make_problem(T=6, B=2, n=8, dtype=torch.float32, density=0.5)
    spikes, v_last, v_pre = torch.ops.brain._lif_recurrent_sequence_forward(drive, v0, history, indptr, indices,
                                                                           weights, *CONSTANTS)
    grads = (torch.randn_like(spikes), torch.randn_like(v_last))
    mask = [True, True, True, True]
    backward = torch.ops.brain._lif_recurrent_sequence_backward
    with pytest.raises(RuntimeError, match="spikes must match v_pre"):
        backward(*grads, v_pre, spikes[:-1], history, indptr, indices, weights, *CONSTANTS, mask)
    bad = indices.clone()
    bad[0] = 8
    with pytest.raises(RuntimeError, match=r"indices\[0\] is out of range"):
        backward(*grads, v_pre, spikes, history, indptr, bad, weights, *CONSTANTS, mask)
    short = indptr.clone()
    short[-1] -= 1
    with pytest.raises(RuntimeError, match="must equal nnz"):
        backward(*grads, v_pre, spikes, history, short, indices, weights, *CONSTANTS, mask)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_agrees_with_cpu_and_is_deterministic_when_asked():
    cpu = differentiable(make_problem(T=60, B=8, n=300, d=2, dtype=torch.float64, density=0.05, seed=5))
    gpu = differentiable(tuple(t.detach().cuda() for t in cpu))
    s_cpu, v_cpu = ops.lif_recurrent_sequence(*cpu)
    s_gpu, v_gpu = ops.lif_recurrent_sequence(*gpu)
    assert torch.equal(s_gpu.cpu(), s_cpu)
    torch.testing.assert_close(v_gpu.cpu(), v_cpu)
    pick = (0, 1, 2, 5)
    for a, b in zip(grads_of(s_gpu, v_gpu, tuple(gpu[i] for i in pick)),
                    grads_of(s_cpu, v_cpu, tuple(cpu[i] for i in pick))):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-9 * (1 + b.abs().max().item()))
    torch.use_deterministic_algorithms(True)
    try:
        runs = [ops.lif_recurrent_sequence(*gpu) for _ in range(2)]
        grads = [grads_of(s, v, tuple(gpu[i] for i in pick)) for s, v in runs]
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(runs[0][0].cpu(), s_cpu)
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


# ---- The dense form ------------------------------------------------------------------------

def make_dense_problem(T=40, B=3, n=30, d=2, dtype=torch.float64, seed=0, scale=2.5, device="cpu"):
    drive, v0, history, indptr, indices, weights = make_problem(T, B, n, d, seed=seed, scale=scale, density=0.3)
    weight = dense_matrix(indptr, indices, weights, n).t().contiguous()  # post x pre, as nn.Linear

    def to(t):
        return t.to(dtype).to(device)

    return to(drive), to(v0), to(history), to(weight)


def dense_op_by_op(drive, v0, history, weight, **kw):
    line = list(history.unbind(0))
    u, spikes = v0, []
    for t in range(drive.shape[0]):
        s, u = ops.lif_sequence((drive[t] + F.linear(line[t], weight)).unsqueeze(0), u, **kw)
        spikes.append(s[0])
        line.append(s[0])
    return torch.stack(spikes), u


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("delay", [1, 3])
def test_dense_matches_the_loop_and_the_op_by_op_network(device, dtype, delay):
    problem = tuple(t.requires_grad_() for t in make_dense_problem(d=delay, dtype=dtype, device=device))
    drive, v0, history, weight = problem
    kw = dict(v_rest=-0.2, v_reset=-0.1, v_th=0.9, R=1.3, tau=7.0, dt=0.5)
    spikes, v_last = ops.lif_dense_recurrent_sequence(*problem, **kw)
    ref_spikes, ref_v = reference_dense(drive, v0, history, weight.t(), **kw)
    assert 0.02 < spikes.mean().item() < 0.5
    by_op_spikes, by_op_v = dense_op_by_op(*problem, **kw)
    assert torch.equal(spikes, by_op_spikes) and torch.equal(v_last, by_op_v)
    assert torch.equal(spikes, ref_spikes)
    got = grads_of(spikes, v_last, problem)
    want = grads_of(ref_spikes, ref_v, problem)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    for name, a, b in zip(("drive", "v0", "history", "weight"), got, want):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * b.abs().max().item(), msg=name)


def test_dense_equals_the_csr_form_on_the_same_matrix():
    drive, v0, history, indptr, indices, weights = make_problem(T=30, B=2, n=25, d=2, seed=6)
    weight = dense_matrix(indptr, indices, weights, 25).t()
    a = ops.lif_dense_recurrent_sequence(drive, v0, history, weight)
    b = ops.lif_recurrent_sequence(drive, v0, history, indptr, indices, weights)
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


@pytest.mark.parametrize("device", DEVICES)
def test_dense_gradcheck_below_threshold(device):
    drive, v0, _, weight = make_dense_problem(T=6, B=2, n=5, d=6, scale=0.1, device=device)
    history = torch.rand(6, 2, 5, dtype=torch.float64, device=device) * 0.3
    weight = weight * 0.3
    assert ops.lif_dense_recurrent_sequence(drive, v0, history, weight, tau=4.0)[0].sum() == 0
    inputs = tuple(t.clone().requires_grad_() for t in (drive, v0, history, weight))
    assert torch.autograd.gradcheck(
        lambda d, v, h, w: ops.lif_dense_recurrent_sequence(d, v, h, w, method="euler", tau=4.0)[1], inputs)


def test_dense_shapes_and_empty_windows():
    drive, v0, history, weight = make_dense_problem(T=12, B=4, n=10, d=3, dtype=torch.float32)
    s_ref, v_ref = ops.lif_dense_recurrent_sequence(drive, v0, history, weight)
    s1, v1 = ops.lif_dense_recurrent_sequence(drive[:, 1], v0[1], history[:, 1], weight)
    assert torch.equal(s1, s_ref[:, 1]) and torch.equal(v1, v_ref[1])
    s, v = ops.lif_dense_recurrent_sequence(drive.transpose(0, 1).contiguous().transpose(0, 1), v0, history,
                                            weight.t().contiguous().t())
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)
    first = ops.lif_dense_recurrent_sequence(drive[:2], v0, history, weight)
    second = ops.lif_dense_recurrent_sequence(drive[2:], first[1], torch.cat([history, first[0]])[-3:], weight)
    assert torch.equal(torch.cat([first[0], second[0]]), s_ref) and torch.equal(second[1], v_ref)
    v0g = v0.clone().requires_grad_()
    s0, v00 = ops.lif_dense_recurrent_sequence(drive[:0], v0g, history, weight)
    assert s0.shape == (0, 4, 10) and torch.equal(v00, v0)
    assert torch.equal(torch.autograd.grad(v00.sum(), v0g)[0], torch.ones_like(v0))
    sb, vb = ops.lif_dense_recurrent_sequence(drive[:, :0], v0[:0], history[:, :0], weight)
    assert sb.shape == (12, 0, 10) and vb.shape == (0, 10)


@pytest.mark.parametrize("device", DEVICES)
def test_dense_opcheck_and_compile(device):
    drive, v0, history, weight = make_dense_problem(T=8, B=2, n=6, dtype=torch.float32, device=device)
    args = (drive.requires_grad_(), v0, history, weight.requires_grad_())
    torch.library.opcheck(torch.ops.brain.lif_dense_recurrent_sequence.default, (*args, *CONSTANTS))
    plain = tuple(t.detach() for t in args)
    spikes, v_last, v_pre = torch.ops.brain._lif_dense_recurrent_sequence_forward(*plain, *CONSTANTS)
    torch.library.opcheck(torch.ops.brain._lif_dense_recurrent_sequence_forward.default, (*plain, *CONSTANTS))
    for mask in ([True, True, True, True], [False, True, False, True]):
        torch.library.opcheck(torch.ops.brain._lif_dense_recurrent_sequence_backward.default,
                              (torch.randn_like(spikes), torch.randn_like(v_last), v_pre, spikes, plain[2], plain[3],
                               *CONSTANTS, mask))

    def f(d, w):
        s, u = ops.lif_dense_recurrent_sequence(d, v0, history, w, tau=5.0)
        return s.mean(0).square().sum() + u.sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(*args[::3]), args[::3])
    want = torch.autograd.grad(f(*args[::3]), args[::3])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_dense_bad_input_is_named():
    drive, v0, history, weight = make_dense_problem(T=5, B=2, n=6, dtype=torch.float32)
    call = ops.lif_dense_recurrent_sequence
    with pytest.raises(RuntimeError, match=r"weight must be \[n, n\]"):
        call(drive, v0, history, weight[:, :5])
    with pytest.raises(RuntimeError, match="weight must have drive's dtype"):
        call(drive, v0, history, weight.double())
    with pytest.raises(RuntimeError, match="at least one step"):
        call(drive, v0, history[:0], weight)
    with pytest.raises(RuntimeError, match="dt must be > 0"):
        call(drive, v0, history, weight, dt=0.0)


# ---- The JIT form --------------------------------------------------------------------------

JIT_PARAMS = {"homo": [0.4], "uniform": [-0.5, 0.9], "normal": [0.1, 0.5]}


def jit_matrix(weight, prob, seed, n, dist):
    """The JIT matrix [pre, post] in plain torch, differentiable in the weight parameters: the
    generator's pattern and variates (jitc_materialize at unit parameters) times them."""
    def unit(*p):
        return ops.jitc_materialize(torch.tensor(p, dtype=weight.dtype, device=weight.device), prob, seed, [n, n],
                                    dist)
    if dist == "homo":
        return weight.reshape(()) * unit(1.0)
    if dist == "uniform":  # low + (high - low) u
        mask, u = unit(1.0, 1.0), unit(0.0, 1.0)
        return weight[0] * (mask - u) + weight[1] * u
    return weight[0] * unit(1.0, 0.0) + weight[1] * unit(0.0, 1.0)


def make_jit_problem(T=40, B=3, n=30, d=2, dtype=torch.float64, dist="normal", seed=0, scale=2.5, device="cpu"):
    drive, v0, history, _, _, _ = make_problem(T, B, n, d, seed=seed, scale=scale)

    def to(t):
        return t.to(dtype).to(device)

    return to(drive), to(v0), to(history), torch.tensor(JIT_PARAMS[dist], dtype=dtype, device=device)


def jit_op_by_op(drive, v0, history, weight, prob, seed, dist, **kw):
    """The network the op replaces: JitComm's event_jitc_matmul, the sum, one lif_sequence step."""
    n = drive.shape[-1]
    line = list(history.unbind(0))
    u, spikes = v0, []
    for t in range(drive.shape[0]):
        rec = ops.event_jitc_matmul(line[t], weight, prob, seed, [n, n], dist, True)
        s, u = ops.lif_sequence((drive[t] + rec).unsqueeze(0), u, **kw)
        spikes.append(s[0])
        line.append(s[0])
    return torch.stack(spikes), u


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dist,delay", [("homo", 1), ("uniform", 3), ("normal", 2)])
@pytest.mark.parametrize("copy_budget_mb", [None, "0"])
def test_jit_matches_the_loop_and_the_op_by_op_network(device, dtype, dist, delay, copy_budget_mb, monkeypatch):
    # On the CPU the op generates A once per call and reads that copy at every step, unless A
    # exceeds BRAIN_JIT_COPY_BUDGET_MB (0: it generates A at every product, as on a GPU).
    if copy_budget_mb is not None:
        monkeypatch.setenv("BRAIN_JIT_COPY_BUDGET_MB", copy_budget_mb)
    prob, seed = 0.2, 17
    problem = tuple(t.requires_grad_() for t in make_jit_problem(d=delay, dtype=dtype, dist=dist, device=device))
    drive, v0, history, weight = problem
    kw = dict(v_rest=-0.2, v_reset=-0.1, v_th=0.9, R=1.3, tau=7.0, dt=0.5)
    spikes, v_last = ops.lif_jit_recurrent_sequence(*problem, prob, seed, dist, **kw)
    assert 0.02 < spikes.mean().item() < 0.5
    by_op_spikes, by_op_v = jit_op_by_op(*problem, prob, seed, dist, **kw)
    if device == "cpu":
        assert torch.equal(spikes, by_op_spikes) and torch.equal(v_last, by_op_v)
    else:  # atomics add in arrival order
        torch.testing.assert_close(v_last, by_op_v, rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-10)
    ref_spikes, ref_v = reference_dense(drive, v0, history, jit_matrix(weight, prob, seed, drive.shape[-1], dist),
                                        **kw)
    assert torch.equal(spikes, ref_spikes)
    got = grads_of(spikes, v_last, problem)
    want = grads_of(ref_spikes, ref_v, problem)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    for name, a, b in zip(("drive", "v0", "history", "weight"), got, want):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * b.abs().max().item(), msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dist", ["homo", "uniform", "normal"])
def test_jit_copy_and_generation_give_the_same_bits(dtype, dist, monkeypatch):
    # The copy of A (read by the CSR gather, 8 then 4 items at a time, the last 4 again: 13 items) and A
    # generated at every product add the same terms in the same order: forward and gradients
    # equal bit for bit.
    problem = tuple(t.requires_grad_() for t in make_jit_problem(B=13, n=40, dtype=dtype, dist=dist, seed=3))
    kw = dict(v_rest=-0.2, v_reset=-0.1, v_th=0.9, R=1.3, tau=7.0, dt=0.5)
    results = []
    for budget in ("256", "0"):
        monkeypatch.setenv("BRAIN_JIT_COPY_BUDGET_MB", budget)
        spikes, v_last = ops.lif_jit_recurrent_sequence(*problem, 0.2, 11, dist, **kw)
        results.append((spikes, v_last) + tuple(grads_of(spikes, v_last, problem)))
    assert 0.02 < results[0][0].mean().item() < 0.5
    for name, a, b in zip(("spikes", "v_last", "drive", "v0", "history", "weight"), *results):
        assert torch.equal(a, b), name


def test_jit_equals_the_csr_form_on_the_materialised_matrix():
    drive, v0, history, weight = make_jit_problem(T=30, B=2, n=25, seed=6)
    indptr, indices, values = ops.jitc_to_csr(weight, 0.3, 4, [25, 25], "normal")
    a = ops.lif_jit_recurrent_sequence(drive, v0, history, weight, 0.3, 4, "normal")
    b = ops.lif_recurrent_sequence(drive, v0, history, indptr, indices, values)
    assert a[0].sum() > 0 and torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dist", ["homo", "normal"])
def test_jit_gradcheck_below_threshold(device, dist):
    drive, v0, _, weight = make_jit_problem(T=6, B=2, n=8, d=6, dist=dist, scale=0.1, device=device)
    history = torch.rand(6, 2, 8, dtype=torch.float64, device=device) * 0.3
    weight = weight * 0.3
    call = functools.partial(ops.lif_jit_recurrent_sequence, prob=0.5, seed=3, dist=dist, method="euler", tau=4.0)
    assert call(drive, v0, history, weight)[0].sum() == 0
    inputs = tuple(t.clone().requires_grad_() for t in (drive, v0, history, weight))
    assert torch.autograd.gradcheck(lambda d, v, h, w: call(d, v, h, w)[1], inputs)


def test_jit_shapes_and_empty_windows():
    drive, v0, history, weight = make_jit_problem(T=12, B=4, n=10, d=3, dtype=torch.float32)
    call = functools.partial(ops.lif_jit_recurrent_sequence, prob=0.4, seed=2, dist="normal")
    s_ref, v_ref = call(drive, v0, history, weight)
    s1, v1 = call(drive[:, 1], v0[1], history[:, 1], weight)
    assert torch.equal(s1, s_ref[:, 1]) and torch.equal(v1, v_ref[1])
    s, v = call(drive.transpose(0, 1).contiguous().transpose(0, 1), v0, history, weight.repeat_interleave(2)[::2])
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)
    first = call(drive[:2], v0, history, weight)
    second = call(drive[2:], first[1], torch.cat([history, first[0]])[-3:], weight)
    assert torch.equal(torch.cat([first[0], second[0]]), s_ref) and torch.equal(second[1], v_ref)
    v0g, wg = v0.clone().requires_grad_(), weight.clone().requires_grad_()
    s0, v00 = call(drive[:0], v0g, history, wg)
    assert s0.shape == (0, 4, 10) and torch.equal(v00, v0)
    g_v0, g_w = torch.autograd.grad(v00.sum(), (v0g, wg), allow_unused=True)
    assert torch.equal(g_v0, torch.ones_like(v0)) and (g_w is None or torch.equal(g_w, torch.zeros_like(weight)))
    sb, vb = call(drive[:, :0], v0[:0], history[:, :0], weight)
    assert sb.shape == (12, 0, 10) and vb.shape == (0, 10)
    sn, vn = call(drive[:, :, :0], v0[:, :0], history[:, :, :0], weight)
    assert sn.shape == (12, 4, 0) and vn.shape == (4, 0)


@pytest.mark.parametrize("device", DEVICES)
def test_jit_opcheck_and_compile(device):
    drive, v0, history, weight = make_jit_problem(T=8, B=2, n=6, dtype=torch.float32, device=device)
    jit = (0.5, 3, "normal")
    args = (drive.requires_grad_(), v0, history, weight.requires_grad_())
    torch.library.opcheck(torch.ops.brain.lif_jit_recurrent_sequence.default, (*args, *jit, *CONSTANTS))
    plain = tuple(t.detach() for t in args)
    spikes, v_last, v_pre = torch.ops.brain._lif_jit_recurrent_sequence_forward(*plain, *jit, *CONSTANTS)
    torch.library.opcheck(torch.ops.brain._lif_jit_recurrent_sequence_forward.default, (*plain, *jit, *CONSTANTS))
    for mask in ([True, True, True, True], [False, True, False, True]):
        torch.library.opcheck(torch.ops.brain._lif_jit_recurrent_sequence_backward.default,
                              (torch.randn_like(spikes), torch.randn_like(v_last), v_pre, spikes, plain[2], plain[3],
                               *jit, *CONSTANTS, mask))

    def f(d, w):
        s, u = ops.lif_jit_recurrent_sequence(d, v0, history, w, *jit, tau=5.0)
        return s.mean(0).square().sum() + u.sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(*args[::3]), args[::3])
    want = torch.autograd.grad(f(*args[::3]), args[::3])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_jit_copy_budget_is_checked(monkeypatch):
    drive, v0, history, weight = make_jit_problem(T=5, B=2, n=6, dtype=torch.float32)
    monkeypatch.setenv("BRAIN_JIT_COPY_BUDGET_MB", "lots")
    with pytest.raises(RuntimeError, match="BRAIN_JIT_COPY_BUDGET_MB must be a number"):
        ops.lif_jit_recurrent_sequence(drive, v0, history, weight, 0.3, 1, "normal")


def test_jit_bad_input_is_named():
    drive, v0, history, weight = make_jit_problem(T=5, B=2, n=6, dtype=torch.float32)
    call = ops.lif_jit_recurrent_sequence
    with pytest.raises(RuntimeError, match=r"weight for dist=\"normal\" must be \[2\]"):
        call(drive, v0, history, weight[:1], 0.3, 1, "normal")
    with pytest.raises(RuntimeError, match="dist must be"):
        call(drive, v0, history, weight, 0.3, 1, "gamma")
    with pytest.raises(RuntimeError, match=r"prob must be in \(0, 1\]"):
        call(drive, v0, history, weight, 0.0, 1, "normal")
    with pytest.raises(RuntimeError, match="weight must have drive's dtype"):
        call(drive, v0, history, weight.double(), 0.3, 1, "normal")
    with pytest.raises(RuntimeError, match="at least one step"):
        call(drive, v0, history[:0], weight, 0.3, 1, "normal")
    with pytest.raises(RuntimeError, match="std"):
        call(drive, v0, history, torch.tensor([0.0, -1.0]), 0.3, 1, "normal")
    with pytest.raises(RuntimeError, match="tau must be > 0"):
        call(drive, v0, history, weight, 0.3, 1, "normal", tau=0.0)


def test_jit_form_in_torchscript():
    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.tensor(JIT_PARAMS["normal"], dtype=torch.float64))

        def forward(self, drive: torch.Tensor, v0: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
            s, v = torch.ops.brain.lif_jit_recurrent_sequence(drive, v0, history, self.weight, 0.3, 4, "normal",
                                                              0.0, 0.0, 1.0, 1.0, 10.0, 1.0)
            return s.mean(0).square().sum() + v.sum()

    drive, v0, history, _ = make_jit_problem(T=20, B=2, n=12)
    layer = Layer()
    scripted = torch.jit.script(layer)
    eager_loss, scripted_loss = layer(drive, v0, history), scripted(drive, v0, history)
    assert torch.equal(eager_loss, scripted_loss)
    g_eager = torch.autograd.grad(eager_loss, layer.weight)[0]
    g_scripted = torch.autograd.grad(scripted_loss, scripted.weight)[0]
    assert g_eager.abs().max() > 0 and torch.equal(g_eager, g_scripted)
