// Internal: argument checks and output geometry shared by every dispatch key of the CSR op
// family (CPU, CUDA, Meta), so each key rejects bad input with the same message.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/SymInt.h>
#include <c10/util/ArrayRef.h>

#include "kernels/csr/csr_cpu.h"

namespace brain::ops::detail {

struct CsrGeometry {
  c10::SymInt n_rows, n_cols;
  c10::SymInt n_in, n_out;  // length of x's last dim and of the output's last dim
  c10::SymInt batch;        // 1 for 1-D x
  bool batched = false;     // x is 2-D
  bool homo = false;        // weights is a single value
  at::ScalarType out_dtype;
};

// Checks shapes, dtypes and devices (never values, which may live on a GPU).
// `op` names the operator in messages. Half/bfloat16 are accepted only when allow_half.
CsrGeometry check_csr_matmul_args(const char* op, const at::Tensor& indptr,
                                  const at::Tensor& indices, const at::Tensor& weights,
                                  const at::Tensor& x, c10::SymIntArrayRef shape, bool transpose,
                                  bool allow_half);

// Output sizes [n_out] or [batch, n_out].
c10::SymDimVector csr_output_sizes(const CsrGeometry& g);

// Checks the CSR structure arguments alone (used by validate_csr and the plasticity ops).
void check_csr_structure(const char* op, const at::Tensor& indptr, const at::Tensor& indices,
                         const c10::SymInt& n_rows);

// Shape [2] of a SymInt[2] argument, as two non-negative values.
std::pair<c10::SymInt, c10::SymInt> check_shape(const char* op, c10::SymIntArrayRef shape);

// Throws for a structure error a CPU kernel found (see kernels/csr/csr_cpu.h's Status).
void report_kernel_status(const char* op, const kernels::csr::Status& status, int64_t n_cols);

// CPU only: indptr[0] = 0 and indptr[n_rows] = nnz (values, so never called for CUDA ops).
void check_indptr_ends_cpu(const char* op, const at::Tensor& indptr, int64_t nnz);

// A^T as a CSR matrix [n_cols, n_rows] for the gather form: entries sorted by column (stable,
// so each column keeps its rows in ascending order), int64 indices, weights expanded to one per
// entry; entries no row owns or with a column outside [0, n_cols) get weight 0. No host sync.
struct CscForGather {
  at::Tensor indptr, rows, weights;
};
CscForGather csc_for_gather(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& weights,
                            bool homo, int64_t n_rows, int64_t n_cols);

// A^T @ x as a gather over A's columns: the entries are sorted by column (stable, so each
// column keeps its rows in ascending order) and the non-transposed op sums each column in that
// fixed order. Bitwise reproducible where the scatter's atomics are not; used by the CUDA
// transposed ops when torch's deterministic algorithms are on. Costs a sort of nnz entries per
// call and, for events, a visit of every entry instead of the active rows' only. No host sync.
// Out-of-range entries (a column outside [0, n_cols) or an entry no row owns) contribute
// nothing, as in the scatter kernels; `homo` means weights holds one value for every entry.
at::Tensor csr_transposed_matmul_by_gather(const at::Tensor& indptr, const at::Tensor& indices,
                                           const at::Tensor& weights, bool homo,
                                           const at::Tensor& x, int64_t n_rows, int64_t n_cols,
                                           bool event);

}  // namespace brain::ops::detail
