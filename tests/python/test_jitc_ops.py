"""JIT-connectivity operators (SPEC section 2): the generator against an independent numpy
reimplementation of its specification, the ops against the dense matrix they claim to use,
statistics of the generated matrices, gradients, opcheck, torch.compile and bad input."""

import math

import numpy as np
import pytest
import torch

import brain  # noqa: F401  (registers torch.ops.brain)
from brain import ops

import jitc_reference as ref

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DISTS = {"homo": [0.75], "uniform": [-0.5, 1.5], "normal": [0.25, 2.0]}


def weight_for(dist, dtype=torch.float64, device="cpu", requires_grad=False):
    return torch.tensor(DISTS[dist], dtype=dtype, device=device, requires_grad=requires_grad)


# ---- The generator follows its written specification -------------------------------------

def test_reference_philox_known_answers():
    # Random123's kat_vectors for philox4x32_10.
    cases = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for ctr, key, expected in cases:
        got = ref.philox4x32_10(*[np.array([c]) for c in ctr], *key)
        assert tuple(int(w[0]) for w in got) == expected


def test_reference_transcendentals_are_accurate():
    rng = np.random.default_rng(0)
    u = np.concatenate([rng.random(100000), 2.0 ** -rng.uniform(0, 54, 10000), [1.0, 2.0 ** -53]])
    u = u[u > 0]
    np.testing.assert_allclose(ref.det_log(u), np.log(u), rtol=1e-15, atol=1e-300)
    for p in [1e-9, 1e-4, 0.02, 0.3, 0.5, 0.9, 0.999999]:
        assert abs(ref.det_log1m(p) - math.log1p(-p)) <= 1e-15 * abs(math.log1p(-p))
    v = np.concatenate([rng.random(100000), [2.0 ** -53, 1 - 2.0 ** -53, 0.5, 0.075, 0.925]])
    expected = torch.special.ndtri(torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(ref.det_ndtri(v), expected, rtol=1e-13, atol=1e-14)


CASES = [
    # prob, seed, shape: blocks of 32..2^24 columns, shapes across block edges, p = 1,
    # negative and > 2^32 seeds
    (0.1, 7, (37, 700)),
    (0.5, -3, (20, 301)),
    (1.0, 11, (9, 70)),
    (0.013, 2**40 + 5, (50, 5000)),
    (0.9, 123456789, (16, 100)),
    (3e-5, 1, (400, 3000)),
]


@pytest.mark.parametrize("prob,seed,shape", CASES)
@pytest.mark.parametrize("dist", list(DISTS))
def test_library_matches_the_specification_bit_for_bit(prob, seed, shape, dist):
    for dtype, np_dtype in [(torch.float64, np.float64), (torch.float32, np.float32)]:
        w = weight_for(dist, dtype)
        got = ops.jitc_materialize(w, prob, seed, shape, dist).numpy()
        expected = ref.materialize(w.double().tolist(), prob, seed, shape, dist, np_dtype)
        assert np.array_equal(got != 0, expected != 0), "non-zero pattern differs"
        assert np.array_equal(got.view(np.uint64 if dtype == torch.float64 else np.uint32),
                              expected.view(np.uint64 if dtype == torch.float64 else np.uint32))


def test_smaller_shape_is_the_top_left_corner():
    w = weight_for("normal")
    big = ops.jitc_materialize(w, 0.05, 3, (60, 900), "normal")
    small = ops.jitc_materialize(w, 0.05, 3, (25, 333), "normal")
    assert torch.equal(small, big[:25, :333])


def test_to_csr_is_the_materialized_matrix():
    for dist in DISTS:
        w = weight_for(dist)
        dense = ops.jitc_materialize(w, 0.07, 5, (40, 500), dist)
        indptr, indices, values = ops.jitc_to_csr(w, 0.07, 5, (40, 500), dist)
        assert indptr.dtype == indices.dtype == torch.int64
        assert indptr[0] == 0 and indptr[-1] == indices.numel()
        rows = torch.repeat_interleave(torch.arange(40), indptr.diff())
        rebuilt = torch.zeros_like(dense)
        rebuilt[rows, indices] = values
        assert torch.equal(rebuilt, dense)
        per_row = [indices[indptr[i]:indptr[i + 1]] for i in range(40)]
        assert all(bool((r.diff() > 0).all()) for r in per_row if r.numel() > 1)
        csr = ops.csr_matmul(indptr, indices, values, torch.ones(500, dtype=w.dtype), (40, 500))
        torch.testing.assert_close(csr, dense @ torch.ones(500, dtype=w.dtype))


# ---- The ops compute with exactly that matrix ---------------------------------------------

def make_x(n, batch, kind, dtype, device, seed=1):
    g = torch.Generator().manual_seed(seed)
    size = (batch, n) if batch is not None else (n,)
    active = torch.rand(size, generator=g) < 0.3
    if kind == "bool":
        return active.to(device)
    return (torch.randn(size, generator=g, dtype=torch.float64) * active).to(device, dtype)


OPS = {"float": ops.jitc_matmul, "event": ops.event_jitc_matmul}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dist", list(DISTS))
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("batch", [None, 1, 3, 11])
@pytest.mark.parametrize("which", list(OPS))
@pytest.mark.parametrize("x_kind", ["float", "bool"])
def test_matmul_matches_dense(device, dist, transpose, batch, which, x_kind):
    shape, prob, seed = (53, 211), 0.08, 17
    w = weight_for(dist, device=device)
    a = ops.jitc_materialize(w, prob, seed, shape, dist).cpu()
    n_in = shape[0] if transpose else shape[1]
    x = make_x(n_in, batch, x_kind, torch.float64, device)
    got = OPS[which](x, w, prob, seed, shape, dist, transpose)
    m = a.T if transpose else a
    xd = x.double().cpu()
    expected = xd @ m.T if x.dim() == 2 else m @ xd
    assert got.shape == expected.shape and got.dtype == torch.float64
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dist", list(DISTS))
def test_identity_columns_recover_the_matrix_exactly(device, dist):
    shape, prob, seed = (31, 47), 0.2, 99
    w = weight_for(dist, device=device)
    a = ops.jitc_materialize(w, prob, seed, shape, dist)
    eye_cols = torch.eye(shape[1], dtype=torch.float64, device=device)
    eye_rows = torch.eye(shape[0], dtype=torch.float64, device=device)
    assert torch.equal(ops.jitc_matmul(eye_cols, w, prob, seed, shape, dist), a.T)
    assert torch.equal(ops.jitc_matmul(eye_rows, w, prob, seed, shape, dist, True), a)
    assert torch.equal(ops.event_jitc_matmul(eye_rows.bool(), w, prob, seed, shape, dist, True), a)
    for j in [0, 5, shape[1] - 1]:
        assert torch.equal(ops.jitc_matmul(eye_cols[j], w, prob, seed, shape, dist), a[:, j])


@pytest.mark.parametrize("device", DEVICES)
def test_float32_and_large_scatter_split(device):
    # Enough active rows that the CPU scatter is split over threads by column blocks.
    shape, prob = (3000, 4000), 0.05
    w = torch.tensor([0.5], device=device)
    x = (torch.rand(shape[0], generator=torch.Generator().manual_seed(0)) < 0.5).to(device)
    got = ops.event_jitc_matmul(x, w, prob, 1, shape, "homo", True)
    a = ops.jitc_materialize(w.double(), prob, 1, shape).cpu()
    torch.testing.assert_close(got.double().cpu(), x.double().cpu() @ a, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("op_name", ["jitc_matmul", "event_jitc_matmul"])
def test_cpu_scatter_sums_in_row_order_on_any_thread_count(op_name):
    # Each output adds its terms from +0, rows ascending, in float32, however the scatter is
    # split over threads (the fast engine's JIT delivery relies on it). A dense row adds +0
    # where A has no entry, which changes no sum, so the reference is a running row sum.
    shape, prob = (3000, 4000), 0.05
    w = torch.tensor([0.3, 1.0])
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape[0], 2, generator=g) * (torch.rand(shape[0], 2, generator=g) < 0.4)
    a = ops.jitc_materialize(w, prob, 9, shape, "normal")
    want = torch.zeros(2, shape[1])
    for r in torch.nonzero(x.abs().sum(1)).flatten().tolist():
        want = want + x[r, :, None] * a[r]
    op = getattr(ops, op_name)
    before = torch.get_num_threads()
    try:
        for threads in (1, max(2, before)):
            torch.set_num_threads(threads)
            got = op(x.t().contiguous(), w, prob, 9, shape, "normal", True)
            assert torch.equal(got, want), (threads, (got - want).abs().max())
    finally:
        torch.set_num_threads(before)


def test_cpu_results_do_not_depend_on_the_thread_count():
    shape, prob = (2000, 3000), 0.05
    w = torch.tensor([0.3, 1.0])
    x = torch.randn(2000, generator=torch.Generator().manual_seed(1))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.jitc_matmul(x, w, prob, 4, shape, "normal", True)
        torch.set_num_threads(max(2, before))
        many = ops.jitc_matmul(x, w, prob, 4, shape, "normal", True)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, many)


def test_empty_and_non_contiguous_inputs():
    w = torch.tensor(1.0, dtype=torch.float64)
    assert ops.jitc_matmul(torch.zeros(0, dtype=torch.float64), w, 0.5, 0, (4, 0)).shape == (4,)
    assert torch.equal(ops.jitc_matmul(torch.ones(4, dtype=torch.float64), w, 0.5, 0, (0, 4)),
                       torch.zeros(0, dtype=torch.float64))
    assert ops.jitc_matmul(torch.zeros(0, 7, dtype=torch.float64), w, 0.5, 0, (3, 7)).shape == (0, 3)
    assert ops.jitc_materialize(w, 0.5, 0, (0, 5)).shape == (0, 5)
    indptr, indices, values = ops.jitc_to_csr(w, 0.5, 0, (3, 0))
    assert indptr.tolist() == [0, 0, 0, 0] and indices.numel() == values.numel() == 0
    x = torch.randn(9, 2, dtype=torch.float64).T  # [2, 9], non-contiguous
    assert not x.is_contiguous()
    torch.testing.assert_close(ops.jitc_matmul(x, w, 0.3, 2, (6, 9)),
                               ops.jitc_matmul(x.contiguous(), w, 0.3, 2, (6, 9)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dist", list(DISTS))
def test_cpu_and_cuda_generate_the_same_matrix_on_millions_of_draws(dist):
    shape, prob, seed = (2000, 60000), 0.05, 2024  # ~6e6 entries, ~1e7 skip draws
    for dtype in [torch.float64, torch.float32]:
        w = weight_for(dist, dtype)
        cpu = ops.jitc_to_csr(w, prob, seed, shape, dist)
        gpu = ops.jitc_to_csr(w.cuda(), prob, seed, shape, dist)
        for c, g in zip(cpu, gpu):
            assert torch.equal(c, g.cpu())
    w = weight_for(dist)
    assert torch.equal(ops.jitc_materialize(w, 0.3, 5, (300, 2000), dist),
                       ops.jitc_materialize(w.cuda(), 0.3, 5, (300, 2000), dist).cpu())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_types(dtype):
    shape, prob = (300, 500), 0.1
    w = torch.tensor([0.0, 0.5], device="cuda", dtype=dtype)
    a = ops.jitc_materialize(w, prob, 8, shape, "normal")
    assert a.dtype == dtype
    # The GPU draws in float32 and rounds once to the half type; the reference rounds the
    # float64 draw: the two may differ by one unit in the last place of the half type.
    ulp = {torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}[dtype]
    torch.testing.assert_close(a.double().cpu(),
                               ops.jitc_materialize(w.double().cpu(), prob, 8, shape, "normal").to(dtype).double(),
                               rtol=ulp, atol=0.0)
    x = (torch.rand(4, shape[0], device="cuda") < 0.2)
    got = ops.event_jitc_matmul(x, w, prob, 8, shape, "normal", True)
    torch.testing.assert_close(got.float(), x.float() @ a.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dist,params,valid", [
    ("normal", [0.0, -1.0], False), ("normal", [float("nan"), 1.0], False),
    ("normal", [0.0, float("inf")], False), ("normal", [0.5, 0.0], True),
    ("uniform", [1.0, 0.5], False), ("uniform", [float("-inf"), 0.5], False),
    ("uniform", [0.5, 0.5], True), ("uniform", [-1.0, 1.0], True)])
def test_cuda_invalid_parameters_give_nan_not_a_sync(dtype, dist, params, valid):
    # Every output element is NaN (even those no entry reaches) when the parameters are
    # invalid, and none is when they are valid; deciding that never syncs with the host.
    # 1000 x 1000 materialised is more elements than one grid-stride pass covers.
    w = torch.tensor(params, device="cuda", dtype=dtype)
    shape = (1000, 1000)
    x = torch.ones(3, shape[0], device="cuda", dtype=dtype)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outs = [ops.jitc_matmul(x, w, 0.01, 0, shape, dist, True),
                ops.jitc_matmul(x, w, 0.01, 0, shape, dist, False),
                ops.event_jitc_matmul(x > 0, w, 0.01, 0, shape, dist, True),
                ops.jitc_materialize(w, 0.01, 0, shape, dist)]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    outs.append(ops.jitc_to_csr(w, 0.01, 0, shape, dist)[2])
    for out in outs:
        assert out.dtype == dtype
        assert bool(torch.isnan(out).all()) == (not valid) and bool(torch.isnan(out).any()) == (not valid)
    if valid:  # the poison pass left the values alone
        assert (outs[3] != 0).sum() == (outs[4] != 0).sum() > 0


# ---- Statistics of the generated matrices -------------------------------------------------

@pytest.mark.parametrize("prob,shape", [(0.02, (2000, 5000)), (0.3, (400, 1000)),
                                        (1e-4, (20000, 20000))])
def test_density_and_row_lengths_are_binomial(prob, shape):
    n_rows, n_cols = shape
    indptr, _, _ = ops.jitc_to_csr(torch.tensor(1.0), prob, 42, shape)
    lengths = indptr.diff().double()
    nnz = float(lengths.sum())
    n = n_rows * n_cols
    z = (nnz - n * prob) / math.sqrt(n * prob * (1 - prob))
    assert abs(z) < 5, f"density {nnz / n} vs prob {prob} (z = {z:.2f})"
    # Row lengths ~ Binomial(n_cols, prob): mean and variance within their sampling error.
    mean, var = n_cols * prob, n_cols * prob * (1 - prob)
    assert abs(float(lengths.mean()) - mean) < 5 * math.sqrt(var / n_rows)
    assert abs(float(lengths.var()) / var - 1) < 5 * math.sqrt(2 / (n_rows - 1)) + 0.01


def test_columns_are_uniform_and_entries_independent_across_block_edges():
    shape, prob = (4000, 256), 0.25  # blocks of 128 columns
    a = ops.jitc_materialize(torch.tensor(1.0, dtype=torch.float64), prob, 3, shape) != 0
    per_col = a.double().mean(0)
    sd = math.sqrt(prob * (1 - prob) / shape[0])
    assert float((per_col - prob).abs().max()) < 5 * sd
    # Neighbouring columns, including 127|128 across a block edge, are uncorrelated.
    af = a.double() - prob
    for j in [0, 126, 127, 200]:
        corr = float((af[:, j] * af[:, j + 1]).mean()) / (prob * (1 - prob))
        assert abs(corr) < 5 / math.sqrt(shape[0])


def ks_statistic(samples, cdf):
    s = np.sort(samples)
    n = s.size
    f = cdf(s)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_values_pass_a_kolmogorov_smirnov_test(dist):
    params = [2.0, 5.0] if dist == "uniform" else [1.0, 3.0]
    _, _, values = ops.jitc_to_csr(torch.tensor(params, dtype=torch.float64), 0.1, 9,
                                   (1000, 2000), dist)
    v = values.numpy()
    if dist == "uniform":
        cdf = lambda t: np.clip((t - 2.0) / 3.0, 0, 1)  # noqa: E731
    else:
        cdf = lambda t: torch.special.ndtr(torch.from_numpy((t - 1.0) / 3.0)).numpy()  # noqa: E731
    d = ks_statistic(v, cdf)
    assert d < 1.95 / math.sqrt(v.size), f"KS D = {d} over {v.size} values"  # alpha = 0.001


def test_different_seeds_give_different_matrices():
    w = torch.tensor([0.0, 1.0], dtype=torch.float64)
    a = ops.jitc_materialize(w, 0.1, 1, (200, 300), "normal")
    b = ops.jitc_materialize(w, 0.1, 2, (200, 300), "normal")
    overlap = float(((a != 0) & (b != 0)).double().sum() / (a != 0).double().sum())
    assert abs(overlap - 0.1) < 0.03  # independent patterns overlap with probability prob
    assert not torch.equal(a, b)


# ---- Gradients, opcheck, torch.compile -----------------------------------------------------

@pytest.mark.parametrize("dist", list(DISTS))
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("which", list(OPS))
def test_gradcheck(dist, transpose, batch, which):
    shape, prob, seed = (7, 9), 0.4, 3
    n_in = shape[0] if transpose else shape[1]
    size = (batch, n_in) if batch else (n_in,)
    x = torch.randn(size, dtype=torch.float64, requires_grad=True)
    w = weight_for(dist, requires_grad=True)
    fn = lambda x, w: OPS[which](x, w, prob, seed, shape, dist, transpose)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


@pytest.mark.parametrize("dist", list(DISTS))
def test_materialised_matrix_and_csr_values_are_differentiable_in_the_weight(dist):
    # A(weight) is linear in the weight parameters: jitc_materialize and jitc_to_csr's values
    # carry that gradient (before, torch only warned and the weight got no gradient).
    shape, prob, seed = (6, 8), 0.4, 5
    w = weight_for(dist, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: ops.jitc_materialize(w, prob, seed, shape, dist), (w,))
    assert torch.autograd.gradgradcheck(lambda w: ops.jitc_materialize(w, prob, seed, shape, dist), (w,))
    assert torch.autograd.gradcheck(lambda w: ops.jitc_to_csr(w, prob, seed, shape, dist)[2], (w,))
    indptr, indices, values = ops.jitc_to_csr(w, prob, seed, shape, dist)
    assert not indptr.requires_grad and not indices.requires_grad and values.requires_grad
    # The same gradient as through the matmul, whose weight gradient is tested above.
    x = torch.randn(3, shape[1], dtype=torch.float64)
    g = torch.randn(3, shape[0], dtype=torch.float64)
    via_dense = torch.autograd.grad((g * (x @ ops.jitc_materialize(w, prob, seed, shape, dist).T)).sum(), w)[0]
    via_op = torch.autograd.grad((g * ops.jitc_matmul(x, w, prob, seed, shape, dist)).sum(), w)[0]
    torch.testing.assert_close(via_dense, via_op)


def test_seed_is_taken_modulo_two_to_the_64():
    # The generator keys on the seed's uint64 value: 2^64 - 1 is -1, 2^64 + 5 is 5 (the
    # schema's int is signed 64-bit; the Python wrappers reduce the seed, as the Poisson ops do).
    w = torch.tensor(1.0)
    same = lambda a, b: torch.equal(ops.jitc_materialize(w, 0.3, a, (9, 11)),  # noqa: E731
                                    ops.jitc_materialize(w, 0.3, b, (9, 11)))
    assert same(2**64 - 1, -1) and same(2**64 + 5, 5) and same(2**63, -(2**63))
    assert not same(1, 2)
    x = torch.rand(11)
    assert torch.equal(ops.jitc_matmul(x, w, 0.3, 2**64 - 7, (9, 11)), ops.jitc_matmul(x, w, 0.3, -7, (9, 11)))


def test_weight_gradient_matches_the_dense_formula():
    shape, prob, seed = (40, 60), 0.2, 8
    x = torch.randn(3, 60, dtype=torch.float64)
    g = torch.randn(3, 40, dtype=torch.float64)
    w = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    (ops.jitc_matmul(x, w, prob, seed, shape, "normal") * g).sum().backward()
    mask = ops.jitc_materialize(torch.tensor([1.0, 0.0], dtype=torch.float64), prob, seed,
                                shape, "normal")
    z = ops.jitc_materialize(torch.tensor([0.0, 1.0], dtype=torch.float64), prob, seed, shape,
                             "normal")
    expected = torch.stack([(g.T * (mask @ x.T)).sum(), (g.T * (z @ x.T)).sum()])
    torch.testing.assert_close(w.grad, expected)


def test_bool_events_have_no_gradient_but_weights_do():
    x = torch.rand(20) < 0.3
    w = torch.tensor([1.0, 2.0], dtype=torch.float32, requires_grad=True)
    out = ops.event_jitc_matmul(x, w, 0.3, 1, (20, 30), "uniform", True)
    out.sum().backward()
    assert w.grad is not None and w.grad.shape == (2,)
    with pytest.raises(RuntimeError):
        torch.ops.brain._jitc_matmul_backward(torch.ones(30), x, w.detach(), 0.3, 1, [20, 30],
                                              "uniform", True, [True, False])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["jitc_matmul", "event_jitc_matmul"])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("batch", [None, 1, 3, 16])
@pytest.mark.parametrize("dist", ["homo", "normal"])
def test_bool_bytes_other_than_one_are_spikes_of_one(device, name, transpose, batch, dist):
    # A uint8 tensor viewed as bool holds bytes such as 2 or 255; torch reads each non-zero
    # byte as true, and so must the kernels (they once multiplied by the byte's value).
    shape = (30, 40)
    n_in = shape[0] if transpose else shape[1]
    size = (n_in,) if batch is None else (batch, n_in)
    g = torch.Generator().manual_seed(2)
    values = torch.tensor([0, 1, 2, 85, 255], dtype=torch.uint8)
    raw_bytes = values[torch.randint(0, 5, size, generator=g)]
    raw_bytes.view(-1, n_in)[0, :5] = values
    raw_bytes = raw_bytes.to(device)
    raw, spikes = raw_bytes.view(torch.bool), raw_bytes != 0
    op = getattr(ops, name)
    w = weight_for(dist, device=device, requires_grad=True)
    w_ref = weight_for(dist, device=device, requires_grad=True)
    out = op(raw, w, 0.3, 7, shape, dist, transpose)
    want = op(spikes, w_ref, 0.3, 7, shape, dist, transpose)
    out.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    torch.testing.assert_close(w.grad, w_ref.grad, rtol=0, atol=0)
    a = ops.jitc_materialize(w_ref.detach(), 0.3, 7, shape, dist).cpu()
    dense = (spikes.double().cpu() @ (a if transpose else a.T))
    torch.testing.assert_close(out.cpu(), dense)


def opcheck_samples():
    for dist in DISTS:
        for transpose in [False, True]:
            for batch in [None, 3]:
                shape = (6, 8)
                n_in = shape[0] if transpose else shape[1]
                size = (batch, n_in) if batch else (n_in,)
                x = torch.randn(size, dtype=torch.float64, requires_grad=True)
                w = weight_for(dist, requires_grad=True)
                yield (x, w, 0.5, 11, list(shape), dist, transpose)
    yield (torch.rand(8) < 0.5, torch.tensor([1.0]), 0.5, 11, [4, 8], "homo", False)


@pytest.mark.parametrize("name", ["jitc_matmul", "event_jitc_matmul"])
def test_opcheck_matmuls(name):
    for args in opcheck_samples():
        torch.library.opcheck(getattr(torch.ops.brain, name), args)


def test_opcheck_materialize_and_backward():
    w = torch.tensor([0.0, 1.0], dtype=torch.float64)
    torch.library.opcheck(torch.ops.brain.jitc_materialize, (w, 0.3, 2, [5, 7], "normal"))
    x = torch.randn(7, dtype=torch.float64)
    torch.library.opcheck(torch.ops.brain._jitc_matmul_backward,
                          (torch.randn(5, dtype=torch.float64), x, w, 0.3, 2, [5, 7], "normal",
                           False, [True, True]))


def test_opcheck_to_csr_schema_and_fake():
    w = torch.tensor(1.0)
    torch.library.opcheck(torch.ops.brain.jitc_to_csr, (w, 0.3, 2, [5, 7], "homo"),
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_fullgraph():
    def step(x, w):
        y = ops.event_jitc_matmul(x, w, 0.1, 5, (64, 32), "normal", True)
        return ops.jitc_matmul(torch.tanh(y), w, 0.1, 5, (64, 32), "normal")  # back to [B, 64]

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    x = (torch.rand(2, 64, generator=torch.Generator().manual_seed(0)) < 0.2).double()
    w = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(compiled(x, w), step(x, w))
    compiled(x, w).sum().backward()
    g_compiled = w.grad.clone()
    w.grad = None
    step(x, w).sum().backward()
    torch.testing.assert_close(g_compiled, w.grad)


def test_torchscript_calls_the_ops():
    @torch.jit.script
    def scripted(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.ops.brain.jitc_matmul(x, w, 0.2, 3, [10, 12], "uniform", False)

    x = torch.randn(12)
    w = torch.tensor([0.0, 1.0])
    torch.testing.assert_close(scripted(x, w), ops.jitc_matmul(x, w, 0.2, 3, (10, 12), "uniform"))


# ---- Bad input -----------------------------------------------------------------------------

BAD = [
    (dict(prob=0.0), "prob must be in \\(0, 1\\], got 0"),
    (dict(prob=1.5), "prob must be in \\(0, 1\\], got 1.5"),
    (dict(prob=float("nan")), "prob must be in"),
    (dict(shape=[-1, 8]), "shape must be non-negative"),
    (dict(shape=[2**32, 8]), "below 2\\^32"),
    (dict(dist="gaussian"), "dist must be \"homo\", \"uniform\" or \"normal\", got \"gaussian\""),
    (dict(weight=torch.tensor([1.0, 2.0])), "weight for dist=\"homo\" must hold one value"),
    (dict(dist="normal", weight=torch.tensor([1.0])), "must be \\[2\\] = \\[mean, std\\]"),
    (dict(dist="normal", weight=torch.tensor([0.0, -1.0])), "needs std >= 0, got std = -1"),
    (dict(dist="uniform", weight=torch.tensor([2.0, 1.0])), "needs high >= low, got \\[2, 1\\]"),
    (dict(dist="uniform", weight=torch.tensor([0.0, float("inf")])), "must be finite"),
    (dict(x=torch.ones(7)), "x's last dimension must be n_cols = 8 \\(transpose=False\\), got 7"),
    (dict(x=torch.ones(8, dtype=torch.float64)), "x must be bool or have the weight's dtype"),
    (dict(x=torch.ones(2, 2, 8)), "x must be 1-D \\[n\\] or 2-D"),
    (dict(weight=torch.tensor([1], dtype=torch.int32)), "weight must be float32 or float64"),
]


@pytest.mark.parametrize("which", list(OPS))
@pytest.mark.parametrize("change,message", BAD)
def test_bad_input_is_rejected_with_a_clear_message(which, change, message):
    args = dict(x=torch.ones(8), weight=torch.tensor([1.0]), prob=0.5, seed=0, shape=[4, 8],
                dist="homo")
    args.update(change)
    with pytest.raises(RuntimeError, match=message):
        fn = torch.ops.brain.event_jitc_matmul if which == "event" else torch.ops.brain.jitc_matmul
        fn(args["x"], args["weight"], args["prob"], args["seed"], args["shape"], args["dist"])


def test_bad_input_in_materialize_and_to_csr():
    with pytest.raises(RuntimeError, match="prob must be in"):
        ops.jitc_materialize(torch.tensor(1.0), 0.0, 0, (3, 3))
    with pytest.raises(RuntimeError, match="needs std >= 0"):
        ops.jitc_to_csr(torch.tensor([0.0, -2.0]), 0.5, 0, (3, 3), "normal")


# ---- jitc_pattern: windows of the pattern, the connectivity builder of fixed_prob ------------

def reference_pattern(prob, seed, shape, col_begin=0, col_end=None, exclude_diagonal=False):
    """(indptr, indices) of the window, from the numpy reimplementation of the specification."""
    n_rows, n_cols = shape
    col_end = n_cols if col_end is None else col_end
    if prob == 0:
        rows, cols = np.zeros(0, np.int64), np.zeros(0, np.int64)
    else:
        rows, cols = ref.entries(prob, seed, shape)
    keep = (cols >= col_begin) & (cols < col_end)
    if exclude_diagonal:
        keep &= rows != cols
    rows, cols = rows[keep], cols[keep] - col_begin
    indptr = np.zeros(n_rows + 1, np.int64)
    np.add.at(indptr, rows + 1, 1)
    return np.cumsum(indptr), cols


PATTERN_CASES = [
    # prob, seed, shape, col_begin, col_end, exclude_diagonal
    (0.1, 7, (30, 200), 0, None, False),
    (0.1, 7, (200, 200), 0, None, True),
    (0.02, -9, (120, 3000), 1000, 2100, False),   # the window starts and ends inside blocks
    (0.3, 2**40 + 5, (64, 64), 17, 50, True),     # a window of a square pattern crosses the diagonal
    (1.0, 3, (12, 12), 4, 9, True),
    (3e-4, 1, (500, 500), 0, 500, True),
    (0.0, 1, (5, 8), 0, None, False),
    (0.5, 2, (6, 40), 13, 13, False),             # an empty window
    (0.5, 2, (0, 40), 0, None, False),
]


@pytest.mark.parametrize("prob,seed,shape,col_begin,col_end,exclude_diagonal", PATTERN_CASES)
def test_pattern_matches_the_specification(prob, seed, shape, col_begin, col_end, exclude_diagonal):
    indptr, indices = ops.jitc_pattern(torch.empty(0), prob, seed, shape, col_begin, col_end, exclude_diagonal)
    assert indptr.dtype == indices.dtype == torch.int64
    want_indptr, want_indices = reference_pattern(prob, seed, shape, col_begin, col_end, exclude_diagonal)
    assert np.array_equal(indptr.numpy(), want_indptr)
    assert np.array_equal(indices.numpy(), want_indices)


def test_pattern_is_the_pattern_of_every_dist_and_windows_make_up_the_whole():
    shape, prob, seed = (300, 1000), 0.04, 31
    indptr, indices = ops.jitc_pattern(torch.empty(0), prob, seed, shape)
    for dist in DISTS:
        ip, ix, _ = ops.jitc_to_csr(weight_for(dist), prob, seed, shape, dist)
        assert torch.equal(ip, indptr) and torch.equal(ix, indices)
    # Four ranks' windows, glued side by side, are the whole pattern.
    bounds = [0, 250, 251, 640, 1000]
    parts = [ops.jitc_pattern(torch.empty(0), prob, seed, shape, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
    rows = []
    for r in range(shape[0]):
        rows.append(torch.cat([ix[ip[r]:ip[r + 1]] + lo for (ip, ix), lo in zip(parts, bounds)]))
    assert torch.equal(torch.cat(rows), indices)
    assert torch.equal(sum(ip for ip, _ in parts), indptr)


def test_pattern_does_not_depend_on_the_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.jitc_pattern(torch.empty(0), 0.01, 5, (3000, 3000), 100, 2900, True)
        torch.set_num_threads(max(2, before))
        many = ops.jitc_pattern(torch.empty(0), 0.01, 5, (3000, 3000), 100, 2900, True)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])


def test_fixed_prob_is_the_jit_pattern_so_csr_and_jit_projections_agree():
    from brain import models as m
    n, prob, seed = 400, 0.05, 12
    indptr, indices = m.fixed_prob(n, n, prob, True, seed)
    ip, ix = ops.jitc_pattern(torch.empty(0), prob, seed, (n, n))
    assert torch.equal(indptr.long(), ip) and torch.equal(indices.long(), ix)
    spikes = torch.rand(3, n, generator=torch.Generator().manual_seed(0)) < 0.2
    w = torch.tensor(0.5, dtype=torch.float64)
    via_csr = ops.event_csr_matmul(indptr, indices, w, spikes, (n, n), True)
    via_jit = ops.event_jitc_matmul(spikes, w, prob, seed, (n, n), "homo", True)
    torch.testing.assert_close(via_csr, via_jit, rtol=0, atol=1e-12)
    # Without self-connections: the same pattern less its diagonal.
    indptr, indices = m.fixed_prob(n, n, prob, False, seed)
    ip, ix = ops.jitc_pattern(torch.empty(0), prob, seed, (n, n), exclude_diagonal=True)
    assert torch.equal(indptr.long(), ip) and torch.equal(indices.long(), ix)


def test_opcheck_pattern_schema_and_fake():
    torch.library.opcheck(torch.ops.brain.jitc_pattern, (torch.empty(0), 0.3, 2, [5, 7], 1, 6, False),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("args,message", [
    ((1.5, 0, (3, 3)), r"prob must be in \[0, 1\]"),
    ((float("nan"), 0, (3, 3)), r"prob must be in \[0, 1\]"),
    ((0.5, 0, (3, -1)), "shape must be non-negative"),
    ((0.5, 0, (2**32, 3)), "below 2\\^32"),
    ((0.5, 0, (3, 10), 4, 11), r"column window \[col_begin, col_end\) = \[4, 11\)"),
    ((0.5, 0, (3, 10), 5, 4), r"column window \[col_begin, col_end\) = \[5, 4\)"),
    ((0.5, 0, (3, 10), -1), "column window"),
    ((0.5, 0, (3, 10), 0, None, True), r"exclude_diagonal needs a square shape, got \[3, 10\]"),
])
def test_bad_input_in_pattern(args, message):
    with pytest.raises(RuntimeError, match=message):
        ops.jitc_pattern(torch.empty(0), *args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_builds_the_cpu_pattern():
    like = torch.empty(0, device="cuda")
    for args in [(0.02, 2024, (3000, 40000)), (0.02, 7, (5000, 5000), 1200, 3900, True),
                 (1.0, 3, (70, 70), 5, 64, True), (0.0, 1, (5, 8))]:
        cpu = ops.jitc_pattern(torch.empty(0), *args)
        gpu = ops.jitc_pattern(like, *args)
        assert gpu[0].device.type == gpu[1].device.type == "cuda"
        assert torch.equal(cpu[0], gpu[0].cpu()) and torch.equal(cpu[1], gpu[1].cpu())
    from brain import models as m
    cpu = m.fixed_prob(4000, 4000, 0.02, False, 5)
    gpu = m.fixed_prob(4000, 4000, 0.02, False, 5, "cuda")
    assert all(torch.equal(c, g.cpu()) for c, g in zip(cpu, gpu))
