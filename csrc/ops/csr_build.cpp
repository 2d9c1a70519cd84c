// Building CSR connectivity: brain::csr_from_coo, written with ATen ops so one
// (CompositeImplicitAutograd) kernel serves every device, Meta and autograd, with no host sync.
// Coordinates out of range are named by a check of the values on the CPU (no device to wait
// for). Elsewhere (a GPU, fake tensors under torch.compile) the values are not read: a row out
// of range is counted in no row, so the indptr does not run from 0 to nnz and
// brain::validate_csr (or any CPU matmul) rejects the result, and a column out of range is
// kept as it is and rejected the same way; nothing indexes out of bounds on the device.
#include <ATen/core/Tensor.h>
#include <ATen/TensorIndexing.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/narrow.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/library.h>

#include <brain/csr.h>
#include <brain/ops.h>

#include "csrc/ops/csr_common.h"

TORCH_LIBRARY_FRAGMENT(brain, m) {
  m.def("csr_from_coo(Tensor rows, Tensor cols, SymInt[2] shape) -> "
        "(Tensor indptr, Tensor indices, Tensor perm)");
}

namespace brain::ops {
namespace {

// Every value of `coords` (a CPU tensor) in [0, n), or an error naming the first that is not.
void check_coordinates_cpu(const char* op, const char* name, const at::Tensor& coords, int64_t n) {
  if (coords.numel() == 0) return;
  const at::Tensor bad = coords.lt(0).logical_or_(coords.ge(n));
  if (!bad.any().item<bool>()) return;
  const int64_t at_index = bad.to(at::kByte).argmax().item<int64_t>();
  TORCH_CHECK(false, op, ": ", name, " must lie in [0, ", n, "), got ", name, "[", at_index, "] = ",
              coords[at_index].item<int64_t>());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_from_coo_impl(const at::Tensor& rows,
                                                                 const at::Tensor& cols,
                                                                 c10::SymIntArrayRef shape) {
  const char* op = "brain::csr_from_coo";
  const auto [n_rows, n_cols] = detail::check_shape(op, shape);
  TORCH_CHECK(rows.dim() == 1 && cols.dim() == 1, op, ": rows and cols must be 1-D, got ",
              rows.sizes(), " and ", cols.sizes());
  TORCH_CHECK(rows.scalar_type() == at::kInt || rows.scalar_type() == at::kLong, op,
              ": rows must be int32 or int64, got ", rows.scalar_type());
  TORCH_CHECK(cols.scalar_type() == rows.scalar_type(), op, ": cols must have rows' dtype (",
              rows.scalar_type(), "), got ", cols.scalar_type());
  TORCH_CHECK(rows.sym_size(0) == cols.sym_size(0), op,
              ": rows and cols must have the same length, got ", rows.sym_size(0), " and ",
              cols.sym_size(0));
  TORCH_CHECK(rows.device() == cols.device(), op, ": rows is on ", rows.device(),
              " but cols is on ", cols.device());
  const bool concrete_cpu = rows.device().is_cpu() && !rows.unsafeGetTensorImpl()->is_python_dispatch() &&
                            !cols.unsafeGetTensorImpl()->is_python_dispatch();
  if (concrete_cpu) {
    check_coordinates_cpu(op, "rows", rows, n_rows.expect_int());
    check_coordinates_cpu(op, "cols", cols, n_cols.expect_int());
  }
  const at::Tensor r64 = rows.to(at::kLong);
  // Row-major order, ties (duplicates) kept in input order by the stable sort.
  const at::Tensor key = r64.mul(c10::Scalar(n_cols)).add(cols.to(at::kLong));
  const at::Tensor perm = std::get<1>(at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  const at::Tensor indices = cols.index_select(0, perm);
  // counts[r + 1] counts row r; a row below 0 lands in counts[0] (so indptr[0] != 0) and one at
  // or past n_rows in the extra last slot (so indptr[n_rows] < nnz), never out of bounds.
  at::Tensor counts = at::zeros_symint({n_rows + 2}, rows.options().dtype(at::kLong));
  counts.index_add_(0, r64.add(1).clamp(0, n_rows + 1), at::ones_like(r64));
  const at::Tensor indptr = at::cumsum(counts, 0).narrow_symint(0, 0, n_rows + 1).to(rows.scalar_type());
  return {indptr, indices, perm.to(rows.scalar_type())};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_from_coo(const at::Tensor& rows,
                                                            const at::Tensor& cols,
                                                            at::IntArrayRef shape) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::csr_from_coo", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef)>();
  return op.call(rows, cols, c10::fromIntArrayRefSlow(shape));
}

namespace detail {

CscForGather csc_for_gather(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& weights,
                            bool homo, int64_t n_rows, int64_t n_cols) {
  const int64_t nnz = indices.size(0);
  const auto long_opts = indices.options().dtype(at::kLong);
  at::Tensor cols = indices.to(at::kLong);
  // The entry k belongs to the last row whose indptr is <= k; searchsorted stays in range on
  // a malformed indptr, where repeat_interleave would assert on the device.
  at::Tensor rows = at::searchsorted(indptr.to(at::kLong), at::arange(nnz, long_opts),
                                     /*out_int32=*/false, /*right=*/true)
                        .sub_(1);
  const at::Tensor valid =
      cols.ge(0).logical_and_(cols.lt(n_cols)).logical_and_(rows.ge(0)).logical_and_(rows.lt(n_rows));
  cols.clamp_(0, std::max<int64_t>(n_cols - 1, 0));
  rows.clamp_(0, std::max<int64_t>(n_rows - 1, 0));
  const at::Tensor perm = std::get<1>(at::sort(cols, /*stable=*/true, 0, false));
  const at::Tensor sorted_cols = cols.index_select(0, perm);
  CscForGather csc;
  csc.indptr = at::searchsorted(sorted_cols, at::arange(n_cols + 1, long_opts), false, /*right=*/false);
  const at::Tensor w = homo ? weights.reshape({}).expand({nnz}) : weights;
  csc.weights = at::where(valid, w, at::zeros({}, w.options())).index_select(0, perm);
  csc.rows = rows.index_select(0, perm);
  return csc;
}

at::Tensor csr_transposed_matmul_by_gather(const at::Tensor& indptr, const at::Tensor& indices,
                                           const at::Tensor& weights, bool homo,
                                           const at::Tensor& x, int64_t n_rows, int64_t n_cols,
                                           bool event) {
  const CscForGather csc = csc_for_gather(indptr, indices, weights, homo, n_rows, n_cols);
  return event ? event_csr_matmul(csc.indptr, csc.rows, csc.weights, x, {n_cols, n_rows}, false)
               : csr_matmul(csc.indptr, csc.rows, csc.weights, x, {n_cols, n_rows}, false);
}

}  // namespace detail

}  // namespace brain::ops

namespace brain {

CsrMatrix CsrMatrix::from_coo(const at::Tensor& rows, const at::Tensor& cols,
                              const at::Tensor& values, int64_t n_rows, int64_t n_cols) {
  auto [indptr, indices, perm] = ops::csr_from_coo(rows, cols, {n_rows, n_cols});
  at::Tensor weights;
  if (values.defined()) {
    TORCH_CHECK(values.dim() == 0 || (values.dim() == 1 && values.size(0) == rows.size(0)),
                "CsrMatrix::from_coo: values must be a scalar or have one entry per coordinate (",
                rows.size(0), "), got ", values.sizes());
    weights = values.dim() == 0 ? values : values.index_select(0, perm);
  }
  CsrMatrix out;
  out.indptr = indptr;
  out.indices = indices;
  out.weights = weights;
  out.n_rows = n_rows;
  out.n_cols = n_cols;
  return out;
}

CsrMatrix CsrMatrix::from_dense(const at::Tensor& dense, at::ScalarType index_dtype) {
  TORCH_CHECK(dense.dim() == 2, "CsrMatrix::from_dense: expected a 2-D matrix, got ",
              dense.sizes());
  const at::Tensor nz = dense.nonzero();  // sizes its output from data: construction time only
  const at::Tensor rows = nz.select(1, 0).to(index_dtype);
  const at::Tensor cols = nz.select(1, 1).to(index_dtype);
  // nonzero() lists entries in row-major order already, so no permutation is needed.
  return from_coo(rows, cols, dense.index({rows.to(at::kLong), cols.to(at::kLong)}),
                  dense.size(0), dense.size(1));
}

at::Tensor CsrMatrix::to_dense() const {
  TORCH_CHECK(weights.defined(), "CsrMatrix::to_dense: the matrix has no weights");
  const int64_t nnz = indices.size(0);
  const at::Tensor counts = indptr.narrow(0, 1, n_rows).sub(indptr.narrow(0, 0, n_rows)).to(at::kLong);
  const at::Tensor rows = at::arange(n_rows, counts.options()).repeat_interleave(counts, 0, nnz);
  at::Tensor dense = at::zeros({n_rows, n_cols}, weights.options());
  const at::Tensor flat = rows.mul(n_cols).add(indices.to(at::kLong));
  const at::Tensor vals = weights.dim() == 0 || (weights.numel() == 1 && nnz != 1)
                              ? weights.reshape({}).expand({nnz})
                              : weights;
  dense.view({-1}).index_add_(0, flat, vals);  // duplicates add up, as in the matmuls
  return dense;
}

}  // namespace brain

TORCH_LIBRARY_IMPL(brain, CompositeImplicitAutograd, m) {
  m.impl("csr_from_coo", &brain::ops::csr_from_coo_impl);
}
