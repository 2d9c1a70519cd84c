"""CSR operators against a naive dense float64 reference (SPEC section 1)."""

import itertools
import os

import numpy as np
import pytest
import torch

import brain  # noqa: F401  (registers torch.ops.brain)
from brain import ops

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
INDEX_DTYPES = [torch.int32, torch.int64]


def random_csr(n_rows, n_cols, *, mean_row_len=4, index_dtype=torch.int64, seed=0,
               empty_rows=True, long_row=True, duplicates=True, device="cpu"):
    """A random CSR structure with the awkward cases: empty rows, one very long row and
    duplicate (row, column) entries. Returns (indptr, indices) on `device`."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.poisson(torch.full((n_rows,), float(mean_row_len)), generator=g).long()
    if n_rows and empty_rows:
        lengths[:: max(1, n_rows // 5)] = 0
    if n_rows > 1 and long_row and n_cols:
        lengths[1] = 3 * n_cols  # longer than a row can be without duplicates
    if not duplicates:
        lengths = lengths.clamp(max=n_cols)
    rows, cols = [], []
    for i, n in enumerate(lengths.tolist()):
        if n == 0 or n_cols == 0:
            continue
        if duplicates:
            c = torch.randint(0, n_cols, (n,), generator=g)
        else:
            c = torch.randperm(n_cols, generator=g)[:n]
        rows.append(torch.full((n,), i, dtype=torch.long))
        cols.append(c)
    if rows:
        rows, cols = torch.cat(rows), torch.cat(cols)
    else:
        rows = cols = torch.zeros(0, dtype=torch.long)
    indptr = torch.zeros(n_rows + 1, dtype=torch.long)
    if rows.numel():
        indptr[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return indptr.to(device, index_dtype), cols.to(device, index_dtype)


def dense_of(indptr, indices, weights, shape):
    """The dense float64 matrix, duplicates summed."""
    n_rows, n_cols = shape
    counts = (indptr[1:] - indptr[:-1]).long().cpu()
    rows = torch.repeat_interleave(torch.arange(n_rows), counts)
    w = weights.double().cpu()
    w = w.reshape(()).expand(rows.numel()) if w.numel() == 1 and rows.numel() != 1 else w
    dense = torch.zeros(n_rows, n_cols, dtype=torch.float64)
    dense.index_put_((rows, indices.long().cpu()), w, accumulate=True)
    return dense


def reference(indptr, indices, weights, x, shape, transpose):
    a = dense_of(indptr, indices, weights, shape)
    xd = x.double().cpu()
    m = a.T if transpose else a
    return (xd @ m.T) if x.dim() == 2 else m @ xd


def make_x(n, batch, kind, dtype, device, seed=1):
    g = torch.Generator().manual_seed(seed)
    size = (batch, n) if batch is not None else (n,)
    active = torch.rand(size, generator=g) < 0.3
    if kind == "bool":
        return active.to(device)
    values = torch.randn(size, generator=g, dtype=torch.float64)
    return (values * active).to(device, dtype)  # mostly zeros, like spikes or rates


OPS = {"float": ops.csr_matmul, "event": ops.event_csr_matmul}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("homo", [False, True])
@pytest.mark.parametrize("op_name", ["float", "event"])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("x_kind", ["float", "bool"])
def test_matches_dense_reference(device, index_dtype, transpose, homo, op_name, batch, x_kind):
    shape = (37, 23)
    indptr, indices = random_csr(*shape, index_dtype=index_dtype, device=device)
    nnz = indices.numel()
    weights = (torch.tensor(0.75, dtype=torch.float64) if homo
               else torch.randn(nnz, dtype=torch.float64)).to(device)
    x = make_x(shape[0] if transpose else shape[1], batch, x_kind, torch.float64, device)
    got = OPS[op_name](indptr, indices, weights, x, shape, transpose)
    want = reference(indptr, indices, weights, x, shape, transpose)
    assert got.shape == want.shape and got.dtype == torch.float64
    torch.testing.assert_close(got.cpu(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("transpose", [False, True])
def test_float32_matches_reference(device, transpose):
    shape = (300, 200)
    indptr, indices = random_csr(*shape, mean_row_len=20, device=device)
    weights = torch.randn(indices.numel(), device=device)
    x = make_x(shape[0] if transpose else shape[1], 4, "float", torch.float32, device)
    got = ops.csr_matmul(indptr, indices, weights, x, shape, transpose)
    torch.testing.assert_close(got.double().cpu(), reference(indptr, indices, weights, x, shape, transpose),
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("batch", [None, 2])
def test_event_op_equals_float_op_exactly(device, transpose, batch):
    shape = (500, 400)
    indptr, indices = random_csr(*shape, mean_row_len=30, device=device)
    weights = torch.randn(indices.numel(), device=device)
    x = make_x(shape[0] if transpose else shape[1], batch, "float", torch.float32, device)
    a = ops.csr_matmul(indptr, indices, weights, x, shape, transpose)
    b = ops.event_csr_matmul(indptr, indices, weights, x, shape, transpose)
    if device == "cpu":  # CUDA scatters with atomics: same values, order not fixed
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a, b)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("homo", [False, True])
@pytest.mark.parametrize("x_kind", ["float", "bool"])
@pytest.mark.parametrize("op_name", ["float", "event"])
@pytest.mark.parametrize("batch,dtype", [(5, torch.float64), (12, torch.float32), (20, torch.float64),
                                         (37, torch.float64), (37, torch.float32)])
def test_cpu_batch_equals_each_item_bit_for_bit(transpose, homo, x_kind, op_name, batch, dtype, two_threads):
    # Batches run batch-minor kernels (x and the gradient transposed to [n, batch]; on two
    # threads the float scatter takes 5 items one by one, 12 in tiles of 4, 20 in tiles of 8
    # (one padded), 37 in tiles of 16 (one padded)); single items the row kernels. Both sum
    # the same terms in the same order.
    shape = (700, 500)
    indptr, indices = random_csr(*shape, mean_row_len=40)
    weights = torch.randn(1 if homo else indices.numel(), dtype=torch.float64).to(dtype)
    x = make_x(shape[0] if transpose else shape[1], batch, x_kind, dtype, "cpu")
    x[2] = False if x_kind == "bool" else 0.0  # an item without any event
    g = torch.randn(batch, shape[1] if transpose else shape[0], dtype=torch.float64).to(dtype)
    op = torch.ops.brain._csr_matmul_backward
    mask = [x_kind == "float", True]
    batched = op(g, indptr, indices, weights, x, shape, transpose, mask)
    forward = OPS[op_name](indptr, indices, weights, x, shape, transpose)
    grad_w = torch.zeros_like(weights, dtype=torch.float64)
    for b in range(batch):
        assert torch.equal(forward[b], OPS[op_name](indptr, indices, weights, x[b], shape, transpose))
        one = op(g[b], indptr, indices, weights, x[b], shape, transpose, mask)
        if x_kind == "float":
            assert torch.equal(batched[0][b], one[0])
        grad_w += one[1]
    # The batch sums over items inside each entry's sum; the same terms as item by item.
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(batched[1].double(), grad_w, rtol=tol, atol=tol)
    want = reference(indptr, indices, weights, x, shape, transpose)
    torch.testing.assert_close(forward.double(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("x_kind", ["float", "bool"])
def test_cpu_batched_event_gather_skips_non_finite_weights_of_silent_inputs(x_kind):
    # The batched event gather multiplies every lane when a row's weights are all finite
    # (adding +-0 changes no sum) and must skip silent inputs when one is not (inf * 0 = NaN):
    # rows 0 and 1 hold a non-finite weight, row 2 does not.
    indptr = torch.tensor([0, 2, 4, 6])
    indices = torch.tensor([0, 1, 1, 2, 0, 2])
    weights = torch.tensor([float("inf"), 2.0, float("nan"), -3.0, 1.5, 4.0], dtype=torch.float64)
    x = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]], dtype=torch.float64)
    x = x.bool() if x_kind == "bool" else x
    got = ops.event_csr_matmul(indptr, indices, weights, x, (3, 3), False)
    for b in range(4):
        torch.testing.assert_close(got[b], ops.event_csr_matmul(indptr, indices, weights, x[b], (3, 3), False),
                                   equal_nan=True, rtol=0, atol=0)
    inf, nan = float("inf"), float("nan")
    want = torch.tensor([[inf, nan, 1.5], [2.0, nan, 4.0], [0.0, 0.0, 0.0], [inf, -3.0, 5.5]], dtype=torch.float64)
    torch.testing.assert_close(got, want, equal_nan=True, rtol=0, atol=0)
    # One homogeneous infinite weight: silent items stay 0, not inf * 0.
    homo = ops.event_csr_matmul(indptr[:3], indices[:4], torch.tensor([inf], dtype=torch.float64), x, (2, 3), False)
    want = torch.tensor([[inf, inf], [inf, inf], [0.0, 0.0], [inf, inf]], dtype=torch.float64)
    torch.testing.assert_close(homo, want, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("x_kind", ["float", "bool"])
@pytest.mark.parametrize("transpose", [False, True])
def test_cpu_batched_weight_gradient_skips_silent_inputs_under_non_finite_gradients(x_kind, transpose):
    # dW[k] sums x * g over the items whose x is non-zero, four entries at a time. The gather
    # form (transpose=False) adds every item's product while the row's output gradient is
    # finite and must skip silent items when it is not (0 * inf = NaN); the scatter form
    # visits only the active items. Row 0 has 6 entries (one group of four and a tail), row 1
    # has 2.
    indptr = torch.tensor([0, 6, 8])
    indices = torch.tensor([0, 1, 2, 3, 4, 0, 1, 3])
    shape = (2, 5)
    inf, nan = float("inf"), float("nan")
    n_x, n_g = (shape[0], shape[1]) if transpose else (shape[1], shape[0])
    x = torch.tensor([[1.0, 0.0, 2.0, 0.0, 1.0], [0.0, 3.0, 0.0, 1.0, 1.0], [2.0, 1.0, 1.0, 0.0, 0.0]],
                     dtype=torch.float64)[:, :n_x]
    x = x.bool() if x_kind == "bool" else x
    g = torch.tensor([[inf, 1.0, 2.0, -1.0, nan], [1.0, nan, -2.0, 3.0, 1.0], [-1.0, 2.0, inf, 1.0, 2.0]],
                     dtype=torch.float64)[:, :n_g]
    weights = torch.ones(indices.numel(), dtype=torch.float64)
    got = torch.ops.brain._csr_matmul_backward(g, indptr, indices, weights, x, shape, transpose,
                                              [False, True])[1]
    rows = torch.repeat_interleave(torch.arange(2), indptr.diff())
    src, dst = (rows, indices) if transpose else (indices, rows)
    xd = x.double()
    want = torch.tensor([sum((xd[b, s] * g[b, d]).item() for b in range(3) if xd[b, s] != 0)
                         for s, d in zip(src.tolist(), dst.tolist())], dtype=torch.float64)
    assert want.isfinite().sum() > 0 and (~want.isfinite()).sum() > 0  # both kinds are checked
    torch.testing.assert_close(got, want, equal_nan=True, rtol=0, atol=0)


def row_order_scatter(indptr, indices, weights, x, n_cols, event):
    """A^T x as the specification sums it for one item: each output element adds its terms
    w * x[row] from +0, rows ascending (within a row, in storage order), in float32."""
    rows = np.repeat(np.arange(indptr.numel() - 1), indptr.diff().numpy())
    xv = x.numpy()[rows]
    keep = xv != 0 if event else np.ones_like(xv, dtype=bool)
    terms = (weights.numpy() * xv.astype(np.float32))[keep]
    out = np.zeros(n_cols, dtype=np.float32)
    np.add.at(out, indices.numpy().astype(np.int64)[keep], terms)  # unbuffered: in order
    return torch.from_numpy(out)


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("sorted_rows", [True, False])
@pytest.mark.parametrize("op_name", ["csr_matmul", "event_csr_matmul"])
def test_cpu_one_item_scatter_sums_in_row_order_on_any_thread_count(index_dtype, sorted_rows, op_name):
    # Enough work that the scatter is split over threads by output columns; every output must
    # still be the row-order sum, bit for bit (the fast engine and the recurrent op rely on it).
    shape = (4000, 3000)
    indptr, indices = random_csr(*shape, mean_row_len=80, long_row=False)
    if sorted_rows:
        rows = torch.repeat_interleave(torch.arange(shape[0]), indptr.diff())
        indices = indices[torch.argsort(rows * shape[1] + indices, stable=True)]
    weights = torch.randn(indices.numel())
    x = torch.randn(shape[0]) * (torch.rand(shape[0]) < 0.5)
    want = row_order_scatter(indptr, indices, weights, x, shape[1], op_name == "event_csr_matmul")
    indptr, indices = indptr.to(index_dtype), indices.to(index_dtype)
    op = getattr(ops, op_name)
    old = torch.get_num_threads()
    try:
        for threads in (1, max(2, old)):
            torch.set_num_threads(threads)
            got = op(indptr, indices, weights, x, shape, transpose=True)
            assert torch.equal(got, want), (threads, (got - want).abs().max())
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op_name", ["float", "event"])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("homo", [False, True])
@pytest.mark.parametrize("batch", [None, 2])
def test_gradcheck(device, op_name, transpose, homo, batch):
    shape = (9, 7)
    indptr, indices = random_csr(*shape, mean_row_len=3, device=device)
    weights = (torch.tensor([0.3], dtype=torch.float64) if homo
               else torch.randn(indices.numel(), dtype=torch.float64)).to(device).requires_grad_()
    x = make_x(shape[0] if transpose else shape[1], batch, "float", torch.float64, device)
    x = (x + torch.randn_like(x) * 0.1).requires_grad_()  # gradients at non-zero and zero x
    op = OPS[op_name]
    fn = lambda w, xx: op(indptr, indices, w, xx, shape, transpose)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (weights, x))
    # The backward op is differentiable too (gradient penalties, Hessian-vector products).
    assert torch.autograd.gradgradcheck(fn, (weights, x))


@pytest.mark.parametrize("transpose", [False, True])
def test_double_backward_with_bool_events(transpose):
    shape = (9, 7)
    indptr, indices = random_csr(*shape, mean_row_len=3)
    weights = torch.randn(indices.numel(), dtype=torch.float64, requires_grad=True)
    spikes = make_x(shape[0] if transpose else shape[1], 3, "bool", None, "cpu")
    for op in OPS.values():
        assert torch.autograd.gradgradcheck(lambda w: op(indptr, indices, w, spikes, shape, transpose), (weights,))


@pytest.mark.parametrize("transpose", [False, True])
def test_gradient_penalty_matches_the_dense_reference(transpose):
    # d/dw of |d loss / dx|^2 with loss = sum(c * (A(w)-op x)^2): a second derivative through
    # the backward op, against the same computed on the dense matrix by torch.
    shape = (9, 7)
    indptr, indices = random_csr(*shape, mean_row_len=3)
    g = torch.Generator().manual_seed(5)
    w0 = torch.randn(indices.numel(), dtype=torch.float64, generator=g)
    x0 = torch.randn(2, shape[0] if transpose else shape[1], dtype=torch.float64, generator=g)
    c = torch.randn(2, shape[1] if transpose else shape[0], dtype=torch.float64, generator=g)

    def penalty_grads(matmul):
        w, x = w0.clone().requires_grad_(), x0.clone().requires_grad_()
        loss = (c * matmul(w, x) ** 2).sum()
        (gx,) = torch.autograd.grad(loss, x, create_graph=True)
        return torch.autograd.grad(gx.pow(2).sum(), (w, x))

    got = penalty_grads(lambda w, x: ops.csr_matmul(indptr, indices, w, x, shape, transpose))
    counts = (indptr[1:] - indptr[:-1]).long()
    rows = torch.repeat_interleave(torch.arange(shape[0]), counts)

    def dense_matmul(w, x):
        a = torch.zeros(shape, dtype=torch.float64).index_put((rows, indices.long()), w, accumulate=True)
        return x @ a if transpose else x @ a.T

    want = penalty_grads(dense_matmul)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_weight_gradient_with_bool_events(device):
    shape = (8, 6)
    indptr, indices = random_csr(*shape, device=device)
    weights = torch.randn(indices.numel(), dtype=torch.float64, device=device, requires_grad=True)
    spikes = make_x(shape[0], 3, "bool", None, device)
    out = ops.event_csr_matmul(indptr, indices, weights, spikes, shape, transpose=True)
    (out * torch.arange(out.numel(), device=device).reshape(out.shape)).sum().backward()
    ref_w = weights.detach().clone().requires_grad_()
    ref = reference(indptr, indices, ref_w, spikes.double(), shape, True)  # not differentiable
    # dW[k] = sum_b spikes[b, row(k)] * g[b, col(k)]
    g = torch.arange(out.numel(), dtype=torch.float64).reshape(out.shape)
    counts = (indptr[1:] - indptr[:-1]).long().cpu()
    rows = torch.repeat_interleave(torch.arange(shape[0]), counts)
    want = (spikes.double().cpu()[:, rows] * g[:, indices.long().cpu()]).sum(0)
    assert ref.shape == out.shape
    torch.testing.assert_close(weights.grad.cpu(), want)


def bool_view_of_bytes(shape, device, seed=3):
    """A bool tensor whose true bytes are 1, 2, 85 or 255 (a uint8 tensor viewed as bool, as
    numpy or a byte buffer can give), with the bool tensor torch reads it as: every non-zero byte
    true. Row 0 has every byte value, so each case meets each one."""
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([0, 1, 2, 85, 255], dtype=torch.uint8)
    raw = values[torch.randint(0, 5, shape, generator=g)]
    raw.view(-1, shape[-1])[0, : min(5, shape[-1])] = values[: shape[-1]]
    raw = raw.to(device)
    return raw.view(torch.bool), raw != 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op_name", ["float", "event"])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("batch", [None, 1, 3, 16])
@pytest.mark.parametrize("homo", [False, True])
def test_bool_bytes_other_than_one_are_spikes_of_one(device, op_name, transpose, batch, homo):
    # Every kernel once read such a byte as a C++ bool: a sum took 85 for a byte of 85, or a
    # value from past the end of a two-entry table.
    shape = (30, 40)
    indptr, indices = random_csr(*shape, mean_row_len=6, device=device)
    weights = (torch.tensor(0.5, dtype=torch.float64) if homo
               else torch.randn(indices.numel(), dtype=torch.float64)).to(device)
    n_in = shape[0] if transpose else shape[1]
    raw, spikes = bool_view_of_bytes((n_in,) if batch is None else (batch, n_in), device)
    op = OPS[op_name]
    w = weights.clone().requires_grad_()
    out = op(indptr, indices, w, raw, shape, transpose)
    out.backward(torch.ones_like(out))
    w_ref = weights.clone().requires_grad_()
    want = op(indptr, indices, w_ref, spikes, shape, transpose)
    want.backward(torch.ones_like(want))
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    torch.testing.assert_close(out.cpu(), reference(indptr, indices, weights, spikes, shape, transpose))
    torch.testing.assert_close(w.grad, w_ref.grad, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_plasticity_reads_bool_bytes_other_than_one_as_spikes_of_one(device):
    shape = (30, 40)
    indptr, indices = random_csr(*shape, mean_row_len=6, duplicates=False, device=device)
    weights = torch.rand(indices.numel(), dtype=torch.float64, device=device)
    csc_indptr, csc_rows, perm = ops.csr_to_csc(indptr, indices, shape)
    post_trace = torch.rand(shape[1], dtype=torch.float64, device=device)
    pre_trace = torch.rand(shape[0], dtype=torch.float64, device=device)
    pre_raw, pre = bool_view_of_bytes((shape[0],), device, seed=4)
    post_raw, post = bool_view_of_bytes((shape[1],), device, seed=5)
    got, want = weights.clone(), weights.clone()
    ops.csr_update_on_pre_(got, indptr, indices, pre_raw, post_trace, 0.1)
    ops.csr_update_on_pre_(want, indptr, indices, pre, post_trace, 0.1)
    ops.csr_update_on_post_(got, csc_indptr, csc_rows, perm, post_raw, pre_trace, -0.2)
    ops.csr_update_on_post_(want, csc_indptr, csc_rows, perm, post, pre_trace, -0.2)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op_name", ["float", "event"])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("homo", [False, True])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_opcheck(device, op_name, transpose, homo, index_dtype):
    shape = (6, 5)
    indptr, indices = random_csr(*shape, mean_row_len=2, index_dtype=index_dtype, device=device)
    weights = (torch.tensor(0.5, dtype=torch.float64) if homo
               else torch.randn(indices.numel(), dtype=torch.float64)).to(device).requires_grad_()
    x = torch.randn(2, shape[0] if transpose else shape[1], dtype=torch.float64, device=device,
                    requires_grad=True)
    op = torch.ops.brain.csr_matmul if op_name == "float" else torch.ops.brain.event_csr_matmul
    torch.library.opcheck(op.default, (indptr, indices, weights, x, list(shape), transpose))
    spikes = x.detach() > 0
    torch.library.opcheck(op.default, (indptr, indices, weights, spikes, list(shape), transpose))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_structure_and_plasticity_ops(device):
    shape = (6, 5)
    indptr, indices = random_csr(*shape, mean_row_len=2, device=device)
    nnz = indices.numel()
    torch.library.opcheck(torch.ops.brain.validate_csr.default, (indptr, indices, list(shape)))
    torch.library.opcheck(torch.ops.brain.csr_to_csc.default, (indptr, indices, list(shape)))
    counts = (indptr[1:] - indptr[:-1]).long()
    rows = torch.repeat_interleave(torch.arange(shape[0], device=device), counts)
    torch.library.opcheck(torch.ops.brain.csr_from_coo.default, (rows, indices.long(), list(shape)))
    csc_indptr, csc_rows, perm = ops.csr_to_csc(indptr, indices, shape)
    w = torch.rand(nnz, device=device)
    torch.library.opcheck(torch.ops.brain.csr_update_on_pre_.default,
                          (w.clone(), indptr, indices, torch.rand(shape[0], device=device) > 0.5,
                           torch.rand(shape[1], device=device), 0.1, 0.0, 1.0))
    torch.library.opcheck(torch.ops.brain.csr_update_on_post_.default,
                          (w.clone(), csc_indptr, csc_rows, perm,
                           torch.rand(shape[1], device=device) > 0.5,
                           torch.rand(shape[0], device=device), -0.1, None, None))
    grad = torch.randn(shape[1], dtype=torch.float64, device=device)
    x = torch.randn(shape[0], dtype=torch.float64, device=device)
    weights = torch.randn(nnz, dtype=torch.float64, device=device)
    torch.library.opcheck(torch.ops.brain._csr_matmul_backward.default,
                          (grad, indptr, indices, weights, x, list(shape), True, [True, True]))


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_forward_and_backward(device):
    shape = (50, 40)
    indptr, indices = random_csr(*shape, mean_row_len=5, device=device)
    weights = torch.randn(indices.numel(), device=device, requires_grad=True)

    def step(w, spikes, rates):
        syn = ops.event_csr_matmul(indptr, indices, w, spikes, shape, transpose=True)
        return syn.tanh().sum() + ops.csr_matmul(indptr, indices, w, rates, shape).square().sum()

    spikes = torch.rand(4, shape[0], device=device) < 0.2
    rates = torch.rand(4, shape[1], device=device)
    eager = step(weights, spikes, rates)
    (g_eager,) = torch.autograd.grad(eager, weights)
    for backend in ("aot_eager", "inductor"):
        torch._dynamo.reset()
        compiled = torch.compile(step, fullgraph=True, backend=backend)
        out = compiled(weights, spikes, rates)
        (g,) = torch.autograd.grad(out, weights)
        torch.testing.assert_close(out, eager)
        torch.testing.assert_close(g, g_eager)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    shape = (30, 20)
    indptr, indices = random_csr(*shape, device=device)
    nnz = indices.numel()
    weights = torch.randn(2 * nnz, dtype=torch.float64, device=device)[::2]
    x = torch.randn(shape[1], 4, dtype=torch.float64, device=device).T  # [4, 20], strided
    assert not weights.is_contiguous() and not x.is_contiguous()
    got = ops.csr_matmul(indptr, indices, weights, x, shape)
    torch.testing.assert_close(got.cpu(), reference(indptr, indices, weights, x, shape, False))
    spikes = (torch.rand(shape[0], 3, device=device) < 0.3).T  # [3, 30] bool, strided
    assert not spikes.is_contiguous()
    got_t = ops.event_csr_matmul(indptr, indices, weights, spikes, shape, transpose=True)
    torch.testing.assert_close(got_t.cpu(), reference(indptr, indices, weights, spikes, shape, True))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("transpose", [False, True])
def test_empty_inputs(device, transpose):
    for shape in [(0, 5), (5, 0), (0, 0), (4, 3)]:
        indptr = torch.zeros(shape[0] + 1, dtype=torch.int64, device=device)
        indices = torch.zeros(0, dtype=torch.int64, device=device)
        weights = torch.zeros(0, device=device)
        n_in, n_out = (shape[0], shape[1]) if transpose else (shape[1], shape[0])
        for op in OPS.values():
            y = op(indptr, indices, weights, torch.ones(n_in, device=device), shape, transpose)
            assert y.shape == (n_out,) and torch.all(y == 0)
            y = op(indptr, indices, weights, torch.ones(0, n_in, device=device), shape, transpose)
            assert y.shape == (0, n_out)


def _args(**overrides):
    shape = (4, 3)
    args = dict(indptr=torch.tensor([0, 1, 3, 3, 4]), indices=torch.tensor([0, 2, 1, 0]),
                weights=torch.ones(4), x=torch.ones(3), shape=shape, transpose=False)
    args.update(overrides)
    return args


@pytest.mark.parametrize("overrides, message", [
    (dict(indptr=torch.tensor([0, 1, 3, 2, 4])), r"indptr must be non-decreasing"),
    # row 0 reaches past nnz before the decreasing step is met (found by fuzzing)
    (dict(indptr=torch.tensor([0, 9, 3, 3, 4])), r"indptr must be non-decreasing"),
    (dict(indptr=torch.tensor([0, 1, 3, 4])), r"indptr must have n_rows \+ 1 = 5 entries, got 4"),
    (dict(indptr=torch.tensor([1, 1, 3, 3, 4])), r"indptr\[0\] must be 0"),
    (dict(indptr=torch.tensor([0, 1, 3, 3, 3])), r"indptr\[n_rows\] must equal nnz"),
    (dict(indices=torch.tensor([0, 2, 3, 0])), r"indices\[2\] is out of range \[0, 3\)"),
    (dict(indices=torch.tensor([0, -1, 1, 0])), r"indices\[1\] is out of range"),
    (dict(indices=torch.tensor([0, 2, 1, 0], dtype=torch.int32)), r"indices must have indptr's dtype"),
    (dict(indptr=torch.tensor([0., 1, 3, 3, 4])), r"indptr must be int32 or int64"),
    (dict(weights=torch.ones(3)), r"weights must hold one value .*nnz = 4\), got 3"),
    (dict(weights=torch.ones(4, dtype=torch.int64)), r"weights must be float32 or float64"),
    (dict(weights=torch.ones(4, dtype=torch.float16)), r"float16/bfloat16 only on CUDA"),
    (dict(x=torch.ones(4)), r"x's last dimension must be n_cols = 3 \(transpose=False\), got 4"),
    (dict(x=torch.ones(3), transpose=True), r"x's last dimension must be n_rows = 4"),
    (dict(x=torch.ones(2, 2, 3)), r"x must be 1-D \[n\] or 2-D"),
    (dict(x=torch.ones(3, dtype=torch.float64)), r"x must be bool or have the weights' dtype"),
    (dict(shape=(4, -3)), r"shape must be non-negative"),
    (dict(shape=(4, 3, 1)), r"shape must be \[n_rows, n_cols\]"),
])
@pytest.mark.parametrize("op_name", ["float", "event"])
def test_bad_input_is_rejected_with_a_clear_error(overrides, message, op_name):
    a = _args(**overrides)
    with pytest.raises(RuntimeError, match=message):
        OPS[op_name](a["indptr"], a["indices"], a["weights"], a["x"], a["shape"], a["transpose"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_device_mismatch_is_rejected():
    a = _args()
    with pytest.raises(RuntimeError, match="all tensors must be on one device"):
        ops.csr_matmul(a["indptr"].cuda(), a["indices"].cuda(), a["weights"].cuda(), a["x"],
                       a["shape"])


def test_validate_csr():
    a = _args()
    ops.validate_csr(a["indptr"], a["indices"], a["shape"])
    with pytest.raises(RuntimeError, match=r"indices\[3\] = 7 is out of range \[0, 3\)"):
        ops.validate_csr(a["indptr"], torch.tensor([0, 2, 1, 7]), a["shape"])
    with pytest.raises(RuntimeError, match=r"indptr\[3\] = 2 < indptr\[2\] = 3"):
        ops.validate_csr(torch.tensor([0, 1, 3, 2, 4]), a["indices"], a["shape"])
    with pytest.raises(RuntimeError, match=r"indptr\[n_rows\] must equal nnz"):
        ops.validate_csr(torch.tensor([0, 1, 3, 3, 5]), a["indices"], a["shape"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_csr_to_csc_is_the_stable_column_view(device, index_dtype):
    shape = (40, 25)
    indptr, indices = random_csr(*shape, index_dtype=index_dtype, device=device)
    csc_indptr, csc_rows, perm = ops.csr_to_csc(indptr, indices, shape)
    assert csc_indptr.dtype == csc_rows.dtype == perm.dtype == index_dtype
    counts = (indptr[1:] - indptr[:-1]).long().cpu()
    rows = torch.repeat_interleave(torch.arange(shape[0]), counts)
    cols = indices.long().cpu()
    order = torch.sort(cols * shape[0] + rows, stable=True).indices  # column-major, stable
    assert torch.equal(perm.long().cpu(), order)
    assert torch.equal(csc_rows.long().cpu(), rows[order])
    want_ptr = torch.zeros(shape[1] + 1, dtype=torch.long)
    want_ptr[1:] = torch.bincount(cols, minlength=shape[1]).cumsum(0)
    assert torch.equal(csc_indptr.long().cpu(), want_ptr)


@pytest.mark.parametrize("device", DEVICES)
def test_csr_from_coo_round_trip(device):
    shape = (30, 20)
    indptr, indices = random_csr(*shape, device=device)
    weights = torch.randn(indices.numel(), dtype=torch.float64, device=device)
    counts = (indptr[1:] - indptr[:-1]).long()
    rows = torch.repeat_interleave(torch.arange(shape[0], device=device), counts)
    shuffle = torch.randperm(rows.numel(), device=device)
    new_indptr, new_indices, perm = ops.csr_from_coo(rows[shuffle], indices.long()[shuffle], shape)
    new_weights = weights[shuffle][perm]
    torch.testing.assert_close(dense_of(new_indptr, new_indices, new_weights, shape),
                               dense_of(indptr, indices, weights, shape))
    assert torch.all(new_indptr[1:] >= new_indptr[:-1])
    row_of = torch.repeat_interleave(torch.arange(shape[0], device=device), (new_indptr[1:] - new_indptr[:-1]))
    key = row_of * shape[1] + new_indices
    assert torch.all(key[1:] >= key[:-1])  # sorted by row, then column


@pytest.mark.parametrize("device", DEVICES)
def test_csr_from_coo_coordinates_out_of_range(device):
    rows, cols = torch.tensor([2, 0, 1]), torch.tensor([0, 1, 2])
    cases = [(torch.tensor([2, 0, 3]), cols, r"rows must lie in \[0, 3\), got rows\[2\] = 3"),
             (torch.tensor([2, -1, 1]), cols, r"rows must lie in \[0, 3\), got rows\[1\] = -1"),
             (rows, torch.tensor([0, 4, 2]), r"cols must lie in \[0, 4\), got cols\[1\] = 4")]
    for bad_rows, bad_cols, message in cases:
        if device == "cpu":  # named at once (no device to wait for)
            with pytest.raises(RuntimeError, match=message):
                ops.csr_from_coo(bad_rows, bad_cols, (3, 4))
        # Without reading values (a GPU; fake tensors under torch.compile) nothing indexes out
        # of bounds and the result is one validate_csr rejects.
        compiled = torch.compile(lambda r, c: ops.csr_from_coo(r, c, (3, 4)), fullgraph=True, backend="aot_eager")
        indptr, indices, _ = compiled(bad_rows.to(device), bad_cols.to(device))
        with pytest.raises(RuntimeError, match="brain::validate_csr"):
            ops.validate_csr(indptr, indices, (3, 4))


def naive_pre_update(w, indptr, indices, spikes, trace, scale, lo, hi):
    w = w.clone()
    for i in range(indptr.numel() - 1):
        s = float(spikes[i])
        if s == 0:
            continue
        for k in range(int(indptr[i]), int(indptr[i + 1])):
            v = w[k] + scale * s * trace[indices[k]]
            w[k] = v.clamp(min=lo, max=hi) if (lo is not None or hi is not None) else v
    return w


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spike_kind", ["bool", "float"])
@pytest.mark.parametrize("bounds", [(None, None), (0.0, 1.0), (None, 0.6)])
def test_plasticity_updates_match_naive_loops(device, spike_kind, bounds):
    shape = (20, 15)
    indptr, indices = random_csr(*shape, device=device)
    nnz = indices.numel()
    lo, hi = bounds
    w0 = torch.rand(nnz, dtype=torch.float64, device=device)
    g = torch.Generator().manual_seed(3)
    pre = torch.rand(shape[0], generator=g) < 0.4
    post = torch.rand(shape[1], generator=g) < 0.4
    if spike_kind == "float":
        pre, post = pre * 0.5, post * 2.0
    pre, post = pre.to(device), post.to(device)
    if spike_kind == "float":
        pre, post = pre.double(), post.double()
    post_trace = torch.rand(shape[1], dtype=torch.float64, device=device)
    pre_trace = torch.rand(shape[0], dtype=torch.float64, device=device)

    w = w0.clone()
    ops.csr_update_on_pre_(w, indptr, indices, pre, post_trace, -0.3, lo, hi)
    want = naive_pre_update(w0.cpu(), indptr.cpu(), indices.cpu(), pre.cpu(), post_trace.cpu(), -0.3, lo, hi)
    torch.testing.assert_close(w.cpu(), want)

    # Post update = pre update of the transposed matrix, mapped back through perm.
    csc_indptr, csc_rows, perm = ops.csr_to_csc(indptr, indices, shape)
    w = w0.clone()
    ops.csr_update_on_post_(w, csc_indptr, csc_rows, perm, post, pre_trace, 0.4, lo, hi)
    w_csc = naive_pre_update(w0.cpu()[perm.long().cpu()], csc_indptr.cpu(), csc_rows.cpu(),
                             post.cpu(), pre_trace.cpu(), 0.4, lo, hi)
    want = w0.cpu().clone()
    want[perm.long().cpu()] = w_csc
    torch.testing.assert_close(w.cpu(), want)


def test_plasticity_bad_input():
    a = _args()
    w = torch.ones(4)
    with pytest.raises(RuntimeError, match="weights must be 1-D with one value per stored entry"):
        ops.csr_update_on_pre_(torch.ones(3), a["indptr"], a["indices"], torch.ones(4) > 0,
                               torch.ones(3), 0.1)
    with pytest.raises(RuntimeError, match="out of range for a trace of 2"):
        ops.csr_update_on_pre_(w, a["indptr"], a["indices"], torch.ones(4) > 0, torch.ones(2), 0.1)
    with pytest.raises(RuntimeError, match="must be contiguous"):
        ops.csr_update_on_pre_(torch.ones(8)[::2], a["indptr"], a["indices"], torch.ones(4) > 0,
                               torch.ones(3), 0.1)


def test_plasticity_bumps_the_version_and_refuses_gradients():
    a = _args()
    csc_indptr, csc_rows, perm = ops.csr_to_csc(a["indptr"], a["indices"], (4, 3))
    w = torch.rand(a["indices"].numel(), requires_grad=True)
    x = torch.rand(3)
    out = ops.csr_matmul(a["indptr"], a["indices"], w, x, (4, 3))  # saves w for its backward
    with torch.no_grad():  # how the STDP projections apply the rule
        ops.csr_update_on_pre_(w, a["indptr"], a["indices"], torch.ones(4) > 0, torch.ones(3), 0.1)
        assert w._version == 1
        ops.csr_update_on_post_(w, csc_indptr, csc_rows, perm, torch.ones(3) > 0, torch.ones(4), 0.1)
        assert w._version == 2
    # The backward would multiply by updated weights: refused, as for torch's in-place ops.
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
    with pytest.raises(RuntimeError, match="weights requires grad; a plasticity update is a rule"):
        ops.csr_update_on_pre_(w, a["indptr"], a["indices"], torch.ones(4) > 0, torch.ones(3), 0.1)
    trace = torch.ones(4, requires_grad=True)
    with pytest.raises(RuntimeError, match="pre_trace requires grad"):
        ops.csr_update_on_post_(w.detach(), csc_indptr, csc_rows, perm, torch.ones(3) > 0, trace, 0.1)


def test_cpp_api_and_python_agree_on_schemas():
    schemas = {str(s.name): str(s) for s in torch._C._jit_get_all_schemas() if str(s.name).startswith("brain::")}
    for name in ["csr_matmul", "event_csr_matmul", "_csr_matmul_backward", "validate_csr",
                 "csr_to_csc", "csr_from_coo", "csr_update_on_pre_", "csr_update_on_post_"]:
        assert f"brain::{name}" in schemas, name


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


@needs_cuda
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("op_name", ["float", "event"])
@pytest.mark.parametrize("mean_row_len", [3, 80, 2000])  # each gather/scatter launch shape
@pytest.mark.parametrize("batch", [None, 5])
def test_cuda_agrees_with_cpu(transpose, op_name, mean_row_len, batch):
    shape = (300, 4000)
    indptr, indices = random_csr(*shape, mean_row_len=mean_row_len)
    weights = torch.randn(indices.numel(), dtype=torch.float64)
    x = make_x(shape[0] if transpose else shape[1], batch, "float", torch.float64, "cpu")
    op = OPS[op_name]
    cpu = op(indptr, indices, weights, x, shape, transpose)
    gpu = op(indptr.cuda(), indices.cuda(), weights.cuda(), x.cuda(), shape, transpose)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-10, atol=1e-10)


@needs_cuda
@pytest.mark.parametrize("mean_row_len", [3, 300])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("x_kind", ["bool", "float"])
def test_cuda_event_scatter_over_many_rows_agrees_with_cpu(mean_row_len, batch, x_kind):
    # More rows than the GPU has warp slots: the event scatter scans rows 32 per warp with a
    # ballot (partial last tile: 40,001 rows), long rows split over slices.
    shape = (40_001, 700)
    indptr, indices = random_csr(*shape, mean_row_len=mean_row_len)
    weights = torch.randn(indices.numel(), dtype=torch.float64)
    x = make_x(shape[0], batch, x_kind, torch.float64, "cpu")
    cpu = ops.event_csr_matmul(indptr, indices, weights, x, shape, True)
    gpu = ops.event_csr_matmul(indptr.cuda(), indices.cuda(), weights.cuda(), x.cuda(), shape, True)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-10, atol=1e-10)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("op_name", ["float", "event"])
def test_half_types_on_cuda(dtype, transpose, op_name):
    shape = (200, 150)
    indptr, indices = random_csr(*shape, mean_row_len=20, device="cuda")
    weights = torch.randn(indices.numel(), device="cuda")
    x = make_x(shape[0] if transpose else shape[1], 3, "float", torch.float32, "cuda")
    got = OPS[op_name](indptr, indices, weights.to(dtype), x.to(dtype), shape, transpose)
    assert got.dtype == dtype
    want = reference(indptr, indices, weights.to(dtype), x.to(dtype), shape, transpose)
    torch.testing.assert_close(got.double().cpu(), want, rtol=2e-2, atol=2e-1)
    w = weights.to(dtype).requires_grad_()
    OPS[op_name](indptr, indices, w, x.to(dtype), shape, transpose).sum().backward()
    assert w.grad.dtype == dtype and torch.isfinite(w.grad).all()


@needs_cuda
@pytest.mark.skipif(os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING") == "1",
                    reason="capture needs torch's caching allocator (off under compute-sanitizer)")
def test_cuda_graph_capture_and_replay():
    shape = (1000, 800)
    indptr, indices = random_csr(*shape, mean_row_len=40, device="cuda")
    weights = torch.randn(indices.numel(), device="cuda")
    spikes = torch.zeros(shape[0], dtype=torch.bool, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # warm-up off the capture, as CUDA graphs require
        ops.event_csr_matmul(indptr, indices, weights, spikes, shape, transpose=True)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = ops.event_csr_matmul(indptr, indices, weights, spikes, shape, transpose=True)
    for seed in range(3):
        spikes.copy_(torch.rand(shape[0], generator=torch.Generator().manual_seed(seed)) < 0.1)
        graph.replay()
        want = ops.csr_matmul(indptr, indices, weights, spikes, shape, transpose=True)
        torch.testing.assert_close(out, want)


@needs_cuda
def test_cuda_skips_out_of_range_indices_instead_of_writing_out_of_bounds():
    a = _args(indices=torch.tensor([0, 2, 9, 0]))
    y = ops.csr_matmul(a["indptr"].cuda(), a["indices"].cuda(), a["weights"].cuda(),
                       torch.ones(4, device="cuda"), a["shape"], transpose=True)
    torch.cuda.synchronize()
    assert torch.equal(y.cpu(), torch.tensor([2.0, 0.0, 1.0]))
    with pytest.raises(RuntimeError, match=r"indices\[2\] = 9 is out of range"):
        ops.validate_csr(a["indptr"].cuda(), a["indices"].cuda(), a["shape"])


@pytest.fixture
def deterministic_algorithms():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


@needs_cuda
@pytest.mark.parametrize("op_name", ["float", "event"])
@pytest.mark.parametrize("batch", [None, 4])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_cuda_deterministic_mode_makes_the_scatter_reproducible(deterministic_algorithms, op_name, batch,
                                                                index_dtype):
    # 3000 rows into 50 columns: about 1800 float32 terms per output, added in arrival order by
    # the atomics; deterministic mode sums each column in row order, the same bits every call.
    shape = (3000, 50)
    indptr, indices = random_csr(*shape, mean_row_len=30, device="cuda", index_dtype=index_dtype)
    weights = torch.randn(indices.numel(), device="cuda")
    x = make_x(shape[0], batch, "bool" if op_name == "event" else "float", torch.float32, "cuda")
    results = [OPS[op_name](indptr, indices, weights, x, shape, True) for _ in range(5)]
    for r in results[1:]:
        assert torch.equal(r, results[0])
    want = reference(indptr, indices, weights, x, shape, True)
    torch.testing.assert_close(results[0].double().cpu(), want, rtol=1e-4, atol=1e-4)
    # The gradient w.r.t. x of a non-transposed product is a transposed one: reproducible too.
    xs = make_x(shape[1], batch, "float", torch.float32, "cuda").requires_grad_()
    grads = []
    for _ in range(3):
        xs.grad = None
        ops.csr_matmul(indptr, indices, weights, xs, shape, False).square().sum().backward()
        grads.append(xs.grad.clone())
    assert all(torch.equal(g, grads[0]) for g in grads[1:])


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dist", ["homo", "uniform", "normal"])
def test_cuda_deterministic_jit_matches_the_cpu(deterministic_algorithms, dtype, dist):
    # Deterministic mode gives each output one CUDA thread that adds its terms in the CPU op's
    # order and rounding (kernels/jitc/jitc_cuda.h): the CPU's bits, both directions and forms.
    g = torch.Generator().manual_seed(11)
    weight = {"homo": torch.tensor(0.5), "uniform": torch.tensor([-0.2, 0.7]),
              "normal": torch.tensor([0.1, 0.4])}[dist].to(dtype)
    shape = (700, 1300)
    for transpose in (False, True):
        n_in = shape[0] if transpose else shape[1]
        for event in (False, True):
            op = ops.event_jitc_matmul if event else ops.jitc_matmul
            for x in (torch.rand(3, n_in, generator=g) < 0.1, torch.randn(5, n_in, generator=g).to(dtype)):
                cpu = op(x, weight, 0.05, 9, shape, dist, transpose)
                cuda = op(x.cuda(), weight.cuda(), 0.05, 9, shape, dist, transpose)
                assert torch.equal(cuda.cpu(), cpu), (transpose, event, x.dtype)
    # The weight parameters' gradient adds the blocks' sums in block order: the same bits each time.
    x = torch.randn(4, shape[1], generator=g).to(dtype).cuda()
    grads = []
    for _ in range(3):
        w = weight.cuda().requires_grad_()
        ops.jitc_matmul(x, w, 0.05, 9, shape, dist, False).square().sum().backward()
        grads.append(w.grad.clone())
    assert all(torch.equal(gr, grads[0]) for gr in grads[1:])


# The batched CPU gather (csr_matmul / event_csr_matmul with a batch) is compiled portable and with AVX2 and
# picked at run time (csrc/ops/cpu/csr_batch_kernels.h); BRAIN_FAST_ISA=baseline forces the
# portable copy. Both must give the same bits: each lane sums the same IEEE operations in order.
_ISA_PARITY_SCRIPT = r"""
import sys, torch, brain
from brain import ops
results = {}
for dtype in (torch.float32, torch.float64):
    for index_dtype in (torch.int32, torch.int64):
        g = torch.Generator().manual_seed(3)
        n_rows, n_cols, nnz = 300, 200, 6000
        rows = torch.randint(0, n_rows, (nnz,), generator=g).sort().values
        indptr = torch.zeros(n_rows + 1, dtype=torch.long)
        indptr[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
        indices = torch.randint(0, n_cols, (nnz,), generator=g)
        indptr, indices = indptr.to(index_dtype), indices.to(index_dtype)
        weights = torch.randn(nnz, generator=g).to(dtype)
        weights[::97] = float("inf")  # rows with a non-finite weight take the event form's other loop
        for batch in (2, 3, 7, 16, 21):
            spikes = torch.rand(batch, n_cols, generator=g) < 0.3
            x = torch.randn(batch, n_cols, generator=g).to(dtype)
            key = f"{dtype}-{index_dtype}-{batch}"
            results[key + "-gather"] = ops.csr_matmul(indptr, indices, weights, x, (n_rows, n_cols), False)
            results[key + "-event"] = ops.event_csr_matmul(indptr, indices, weights, spikes, (n_rows, n_cols), False)
        # lif_recurrent_sequence's backward passes each step's gradient through A by this gather
        n = n_rows
        square = indices.long() % n
        rec_weights = (torch.randn(nnz, generator=g) * 0.3).to(dtype)
        for batch in (3, 16):
            drive = (torch.randn(12, batch, n, generator=g) * 0.5 + 2.0).to(dtype).requires_grad_()
            history = (torch.rand(2, batch, n, generator=g) < 0.2).to(dtype).requires_grad_()
            w = rec_weights.clone().requires_grad_()
            out, v_last = ops.lif_recurrent_sequence(drive, torch.zeros(batch, n, dtype=dtype), history, indptr,
                                                     square.to(index_dtype), w)
            (out * torch.rand(out.shape, generator=g).to(dtype)).sum().add(v_last.sum()).backward()
            key = f"{dtype}-{index_dtype}-{batch}-recurrent"
            results[key + "-spikes"], results[key + "-grad_drive"] = out.detach(), drive.grad
            results[key + "-grad_history"], results[key + "-grad_weights"] = history.grad, w.grad
torch.save(results, sys.argv[1])
"""


def _cpu_has_avx2():
    try:
        with open("/proc/cpuinfo") as f:
            return " avx2" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _cpu_has_avx2(), reason="no AVX2 here: only the portable copy runs")
def test_cpu_batched_loops_give_the_same_bits_portable_and_avx2(tmp_path):
    import subprocess
    import sys
    files = {}
    for isa, env in (("default", {}), ("portable", {"BRAIN_FAST_ISA": "baseline"})):
        files[isa] = tmp_path / f"{isa}.pt"
        proc = subprocess.run([sys.executable, "-c", _ISA_PARITY_SCRIPT, str(files[isa])], capture_output=True,
                              text=True, env={**os.environ, **env}, timeout=300)
        assert proc.returncode == 0, proc.stderr
    default, portable = torch.load(files["default"]), torch.load(files["portable"])
    assert default.keys() == portable.keys() and len(default) == 2 * 2 * (5 * 2 + 2 * 4)
    for key in default:
        assert torch.equal(default[key], portable[key]) or (
            torch.equal(default[key].isnan(), portable[key].isnan())
            and torch.equal(default[key].nan_to_num(), portable[key].nan_to_num())), key
