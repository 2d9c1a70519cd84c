// Building and inspecting CSR connectivity (the format of brain::ops::csr_matmul).
#pragma once

#include <cstdint>
#include <tuple>

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <brain/export.h>

namespace brain {

namespace ops {
// Sorts coordinate lists (rows[k], cols[k]) into CSR: returns (indptr [n_rows + 1],
// indices [nnz], perm [nnz]) with indices = cols[perm]; permute per-entry values with
// values.index_select(0, perm). Entries are ordered by row, then column; duplicates are kept
// (in input order) and add up in the matmuls. Does not read values: no host sync, any device.
BRAIN_API std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_from_coo(const at::Tensor& rows,
                                                                      const at::Tensor& cols,
                                                                      at::IntArrayRef shape);
}  // namespace ops

// A CSR matrix with its shape, for C++ code that builds connectivity.
struct BRAIN_API CsrMatrix {
  at::Tensor indptr;   // [n_rows + 1]
  at::Tensor indices;  // [nnz]
  at::Tensor weights;  // [nnz], a scalar (homogeneous), or undefined (structure only)
  int64_t n_rows = 0;
  int64_t n_cols = 0;

  // From coordinates, e.g. (pre, post) pairs; values may be [nnz], a scalar, or undefined.
  static CsrMatrix from_coo(const at::Tensor& rows, const at::Tensor& cols,
                            const at::Tensor& values, int64_t n_rows, int64_t n_cols);
  // The non-zero entries of a dense [n_rows, n_cols] matrix. Its nnz depends on the data,
  // so on a GPU this waits for it: use at construction time, not in a simulation loop.
  static CsrMatrix from_dense(const at::Tensor& dense, at::ScalarType index_dtype = at::kLong);
  // The dense matrix (duplicates summed); for tests and inspection.
  at::Tensor to_dense() const;
};

}  // namespace brain
