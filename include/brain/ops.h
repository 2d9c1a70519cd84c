// The C++ API of libbrain's operators. Every function goes through the Torch dispatcher
// (the same path as torch.ops.brain.* in Python), so autograd, Meta/fake tensors and the
// CPU/CUDA kernels are all picked there. Semantics: ../shared/SPEC.md section 1.
//
// Connectivity is a matrix A of shape [n_rows, n_cols] = shape in CSR form:
//   indptr  [n_rows + 1], int32 or int64, non-decreasing, indptr[0] = 0, indptr[n_rows] = nnz
//   indices [nnz], same dtype as indptr, column of each stored entry, in [0, n_cols)
//   weights [nnz] (one per entry) or a scalar [] / [1] (homogeneous), float32/float64
//           (float16/bfloat16 on CUDA)
// For a projection, rows are presynaptic and columns postsynaptic neurons, so the synaptic
// input is A^T @ spikes (transpose = true). Duplicate (row, column) entries add up.
#pragma once

#include <optional>
#include <tuple>

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <brain/export.h>

namespace brain::ops {

// y = A @ x (transpose = false; x [n_cols] or [B, n_cols] -> y [n_rows] or [B, n_rows]) or
// y = A^T @ x (transpose = true; x [n_rows] or [B, n_rows] -> y [n_cols] or [B, n_cols]).
// x has the weights' dtype, or is bool (0/1). Differentiable in weights and (float) x.
BRAIN_API at::Tensor csr_matmul(const at::Tensor& indptr, const at::Tensor& indices,
                                const at::Tensor& weights, const at::Tensor& x,
                                at::IntArrayRef shape, bool transpose = false);

// The same value as csr_matmul, computed by visiting only the non-zero entries of x (bool or
// float events). With transpose = true its cost is (active rows) x (row length), not nnz.
BRAIN_API at::Tensor event_csr_matmul(const at::Tensor& indptr, const at::Tensor& indices,
                                      const at::Tensor& weights, const at::Tensor& x,
                                      at::IntArrayRef shape, bool transpose = false);

// Checks the CSR structure fully (lengths, dtypes, devices, monotone indptr, indptr[0] = 0,
// indptr[n_rows] = nnz, every index in range) and throws c10::Error naming the problem.
// Reads values back to the host on CUDA: call it once on new connectivity, not per step.
// The CUDA kernels skip out-of-range entries instead of writing out of bounds.
BRAIN_API void validate_csr(const at::Tensor& indptr, const at::Tensor& indices,
                            at::IntArrayRef shape);

// CSC view of a CSR matrix: (csc_indptr [n_cols + 1], csc_indices [nnz] = the row of each
// entry, perm [nnz] = the CSR position of each CSC entry), so that weights.index_select(0,
// perm) are the weights in column order. Within a column, entries keep their row order.
BRAIN_API std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_to_csc(const at::Tensor& indptr,
                                                                     const at::Tensor& indices,
                                                                     at::IntArrayRef shape);

// Plasticity, in place on per-entry weights (what STDP needs):
// on presynaptic events, for every row i with pre_spikes[i] != 0 and every entry k of it,
//   weights[k] = clamp(weights[k] + scale * pre_spikes[i] * post_trace[indices[k]], w_min, w_max)
BRAIN_API void csr_update_on_pre_(at::Tensor& weights, const at::Tensor& indptr,
                                  const at::Tensor& indices, const at::Tensor& pre_spikes,
                                  const at::Tensor& post_trace, double scale,
                                  std::optional<double> w_min = std::nullopt,
                                  std::optional<double> w_max = std::nullopt);

// on postsynaptic events, through the CSC view from csr_to_csc: for every column j with
// post_spikes[j] != 0 and every entry p of it (CSR position k = perm[p], row i = csc_indices[p]),
//   weights[k] = clamp(weights[k] + scale * post_spikes[j] * pre_trace[i], w_min, w_max)
BRAIN_API void csr_update_on_post_(at::Tensor& weights, const at::Tensor& csc_indptr,
                                   const at::Tensor& csc_indices, const at::Tensor& perm,
                                   const at::Tensor& post_spikes, const at::Tensor& pre_trace,
                                   double scale, std::optional<double> w_min = std::nullopt,
                                   std::optional<double> w_max = std::nullopt);

}  // namespace brain::ops
