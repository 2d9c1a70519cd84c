// Meta kernels of the CSR op family: the same argument checks as the real kernels, and
// outputs with the right sizes and dtypes, for torch.compile (fake tensors) and shape
// inference. They never read values.
#include <array>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/library.h>

#include "csrc/ops/csr_common.h"

namespace brain::ops {
namespace {

template <bool kEvent>
at::Tensor csr_matmul_meta(const at::Tensor& indptr, const at::Tensor& indices,
                           const at::Tensor& weights, const at::Tensor& x,
                           c10::SymIntArrayRef shape, bool transpose) {
  const char* op = kEvent ? "brain::event_csr_matmul" : "brain::csr_matmul";
  const auto g = detail::check_csr_matmul_args(op, indptr, indices, weights, x, shape, transpose,
                                               /*allow_half=*/true);
  return at::empty_symint(detail::csr_output_sizes(g), weights.options());
}

std::tuple<at::Tensor, at::Tensor> csr_matmul_backward_meta(
    const at::Tensor& grad_out, const at::Tensor& indptr, const at::Tensor& indices,
    const at::Tensor& weights, const at::Tensor& x, c10::SymIntArrayRef shape, bool transpose,
    std::array<bool, 2> output_mask) {
  const char* op = "brain::_csr_matmul_backward";
  const auto g = detail::check_csr_matmul_args(op, indptr, indices, weights, x, shape, transpose,
                                               /*allow_half=*/true);
  TORCH_CHECK(grad_out.sym_sizes() == c10::SymIntArrayRef(detail::csr_output_sizes(g)), op,
              ": grad_out must have the output's shape");
  at::Tensor grad_x, grad_w;
  if (output_mask[0]) {
    TORCH_CHECK(x.scalar_type() != at::kBool, op, ": bool x (events) has no gradient");
    grad_x = at::empty_symint(x.sym_sizes(), x.options());
  }
  if (output_mask[1]) grad_w = at::empty_like(weights, at::MemoryFormat::Contiguous);
  return {grad_x, grad_w};
}

void validate_csr_meta(const at::Tensor& indptr, const at::Tensor& indices,
                       c10::SymIntArrayRef shape) {
  const auto rows_cols = detail::check_shape("brain::validate_csr", shape);
  detail::check_csr_structure("brain::validate_csr", indptr, indices, rows_cols.first);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_to_csc_meta(const at::Tensor& indptr,
                                                               const at::Tensor& indices,
                                                               c10::SymIntArrayRef shape) {
  const auto [n_rows, n_cols] = detail::check_shape("brain::csr_to_csc", shape);
  detail::check_csr_structure("brain::csr_to_csc", indptr, indices, n_rows);
  const auto nnz = indices.sym_size(0);
  return {at::empty_symint({n_cols + 1}, indptr.options()),
          at::empty_symint({nnz}, indptr.options()), at::empty_symint({nnz}, indptr.options())};
}

void csr_update_on_pre_meta(at::Tensor&, const at::Tensor& indptr, const at::Tensor& indices,
                            const at::Tensor& pre_spikes, const at::Tensor&, double,
                            std::optional<double>, std::optional<double>) {
  detail::check_csr_structure("brain::csr_update_on_pre_", indptr, indices, pre_spikes.sym_size(0));
}

void csr_update_on_post_meta(at::Tensor&, const at::Tensor& csc_indptr,
                             const at::Tensor& csc_indices, const at::Tensor&,
                             const at::Tensor& post_spikes, const at::Tensor&, double,
                             std::optional<double>, std::optional<double>) {
  detail::check_csr_structure("brain::csr_update_on_post_", csc_indptr, csc_indices,
                              post_spikes.sym_size(0));
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Meta, m) {
  m.impl("csr_matmul", &csr_matmul_meta<false>);
  m.impl("event_csr_matmul", &csr_matmul_meta<true>);
  m.impl("_csr_matmul_backward", &csr_matmul_backward_meta);
  m.impl("validate_csr", &validate_csr_meta);
  m.impl("csr_to_csc", &csr_to_csc_meta);
  m.impl("csr_update_on_pre_", &csr_update_on_pre_meta);
  m.impl("csr_update_on_post_", &csr_update_on_post_meta);
}

}  // namespace brain::ops
