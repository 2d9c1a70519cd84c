#include "csrc/ops/csr_common.h"

#include <c10/util/Exception.h>

namespace brain::ops::detail {

namespace {
bool is_index_dtype(at::ScalarType t) { return t == at::kInt || t == at::kLong; }
}  // namespace

std::pair<c10::SymInt, c10::SymInt> check_shape(const char* op, c10::SymIntArrayRef shape) {
  TORCH_CHECK(shape.size() == 2, op, ": shape must be [n_rows, n_cols], got ", shape.size(),
              " values");
  TORCH_CHECK(shape[0] >= 0 && shape[1] >= 0, op, ": shape must be non-negative, got [",
              shape[0], ", ", shape[1], "]");
  return {shape[0], shape[1]};
}

void check_csr_structure(const char* op, const at::Tensor& indptr, const at::Tensor& indices,
                         const c10::SymInt& n_rows) {
  TORCH_CHECK(indptr.dim() == 1, op, ": indptr must be 1-D [n_rows + 1], got ", indptr.dim(),
              "-D");
  TORCH_CHECK(indices.dim() == 1, op, ": indices must be 1-D [nnz], got ", indices.dim(), "-D");
  TORCH_CHECK(is_index_dtype(indptr.scalar_type()), op,
              ": indptr must be int32 or int64, got ", indptr.scalar_type());
  TORCH_CHECK(indices.scalar_type() == indptr.scalar_type(), op,
              ": indices must have indptr's dtype (", indptr.scalar_type(), "), got ",
              indices.scalar_type());
  TORCH_CHECK(indptr.sym_size(0) == n_rows + 1, op, ": indptr must have n_rows + 1 = ",
              n_rows + 1, " entries, got ", indptr.sym_size(0));
  TORCH_CHECK(indices.device() == indptr.device(), op, ": indices is on ", indices.device(),
              " but indptr is on ", indptr.device());
}

CsrGeometry check_csr_matmul_args(const char* op, const at::Tensor& indptr,
                                  const at::Tensor& indices, const at::Tensor& weights,
                                  const at::Tensor& x, c10::SymIntArrayRef shape, bool transpose,
                                  bool allow_half) {
  CsrGeometry g;
  std::tie(g.n_rows, g.n_cols) = check_shape(op, shape);
  check_csr_structure(op, indptr, indices, g.n_rows);

  const auto wt = weights.scalar_type();
  const bool half_ok = allow_half && (wt == at::kHalf || wt == at::kBFloat16);
  TORCH_CHECK(wt == at::kFloat || wt == at::kDouble || half_ok, op,
              ": weights must be float32 or float64",
              allow_half ? " (or float16/bfloat16)" : " (float16/bfloat16 only on CUDA)",
              ", got ", wt);
  TORCH_CHECK(weights.dim() <= 1, op, ": weights must be a scalar or 1-D [nnz], got ",
              weights.dim(), "-D");
  const auto nnz = indices.sym_size(0);
  g.homo = weights.dim() == 0 || (weights.sym_size(0) == 1 && nnz != 1);
  TORCH_CHECK(g.homo || weights.sym_size(0) == nnz, op,
              ": weights must hold one value (homogeneous) or one per stored entry (nnz = ", nnz,
              "), got ", weights.sym_size(0));

  TORCH_CHECK(x.dim() == 1 || x.dim() == 2, op, ": x must be 1-D [n] or 2-D [batch, n], got ",
              x.dim(), "-D");
  TORCH_CHECK(x.scalar_type() == at::kBool || x.scalar_type() == wt, op,
              ": x must be bool or have the weights' dtype (", wt, "), got ", x.scalar_type());
  g.batched = x.dim() == 2;
  g.batch = g.batched ? x.sym_size(0) : c10::SymInt(1);
  g.n_in = transpose ? g.n_rows : g.n_cols;
  g.n_out = transpose ? g.n_cols : g.n_rows;
  TORCH_CHECK(x.sym_size(-1) == g.n_in, op, ": x's last dimension must be ",
              transpose ? "n_rows" : "n_cols", " = ", g.n_in, " (transpose=",
              transpose ? "True" : "False", "), got ", x.sym_size(-1));

  TORCH_CHECK(weights.device() == indptr.device() && x.device() == indptr.device(), op,
              ": all tensors must be on one device; indptr is on ", indptr.device(),
              ", weights on ", weights.device(), ", x on ", x.device());
  g.out_dtype = wt;
  return g;
}

c10::SymDimVector csr_output_sizes(const CsrGeometry& g) {
  c10::SymDimVector sizes;
  if (g.batched) sizes.push_back(g.batch);
  sizes.push_back(g.n_out);
  return sizes;
}

void report_kernel_status(const char* op, const kernels::csr::Status& status, int64_t n_cols) {
  using kernels::csr::Status;
  TORCH_CHECK(status.kind != Status::kDecreasingIndptr, op,
              ": indptr must be non-decreasing from indptr[0] = 0 to indptr[n_rows] = nnz, but row ",
              status.pos, " spans [indptr[", status.pos, "], indptr[", status.pos + 1,
              "]), which is decreasing or leaves [0, nnz)");
  TORCH_CHECK(status.kind != Status::kIndexOutOfRange, op, ": indices[", status.pos,
              "] is out of range [0, ", n_cols, ")");
}

void check_indptr_ends_cpu(const char* op, const at::Tensor& indptr, int64_t nnz) {
  const int64_t n = indptr.size(0);
  const int64_t first = indptr.scalar_type() == at::kInt ? indptr.data_ptr<int32_t>()[0]
                                                          : indptr.data_ptr<int64_t>()[0];
  const int64_t last = indptr.scalar_type() == at::kInt ? indptr.data_ptr<int32_t>()[n - 1]
                                                         : indptr.data_ptr<int64_t>()[n - 1];
  TORCH_CHECK(first == 0, op, ": indptr[0] must be 0, got ", first);
  TORCH_CHECK(last == nnz, op, ": indptr[n_rows] must equal nnz = indices.numel() = ", nnz,
              ", got ", last);
}

}  // namespace brain::ops::detail
