// Meta kernels of the JIT-connectivity op family: the real kernels' argument checks and
// outputs of the right sizes, never reading values. jitc_to_csr and jitc_pattern have a
// data-dependent nnz, so their fake kernels are registered from Python (python/brain/ops.py)
// with an unbacked size.
#include <array>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/library.h>

#include "csrc/ops/jitc_common.h"

namespace brain::ops {
namespace {

std::string_view view(c10::string_view s) { return {s.data(), s.size()}; }

template <bool kEvent>
at::Tensor jitc_matmul_meta(const at::Tensor& x, const at::Tensor& weight, double prob,
                            int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist,
                            bool transpose) {
  const char* op = kEvent ? "brain::event_jitc_matmul" : "brain::jitc_matmul";
  const auto g = detail::check_jitc_matmul_args(op, x, weight, prob, shape, view(dist), transpose,
                                                /*allow_half=*/true);
  return at::empty_symint(detail::jitc_output_sizes(g), weight.options());
}

std::tuple<at::Tensor, at::Tensor> jitc_matmul_backward_meta(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight, double prob,
    int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist, bool transpose,
    std::array<bool, 2> output_mask) {
  const char* op = "brain::_jitc_matmul_backward";
  const auto g = detail::check_jitc_matmul_args(op, x, weight, prob, shape, view(dist), transpose,
                                                /*allow_half=*/true);
  TORCH_CHECK(grad_out.sym_sizes() == c10::SymIntArrayRef(detail::jitc_output_sizes(g)), op,
              ": grad_out must have the output's shape");
  at::Tensor grad_x, grad_w;
  if (output_mask[0]) {
    TORCH_CHECK(x.scalar_type() != at::kBool, op, ": bool x (events) has no gradient");
    grad_x = at::empty_symint(x.sym_sizes(), x.options());
  }
  if (output_mask[1]) grad_w = at::empty_like(weight, at::MemoryFormat::Contiguous);
  return {grad_x, grad_w};
}

at::Tensor jitc_materialize_meta(const at::Tensor& weight, double prob, int64_t seed,
                                 c10::SymIntArrayRef shape, c10::string_view dist) {
  const auto g = detail::check_jitc_matrix_args("brain::jitc_materialize", weight, prob, shape,
                                                view(dist), /*allow_half=*/true);
  return at::empty_symint({g.n_rows, g.n_cols}, weight.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Meta, m) {
  m.impl("jitc_matmul", &jitc_matmul_meta<false>);
  m.impl("event_jitc_matmul", &jitc_matmul_meta<true>);
  m.impl("_jitc_matmul_backward", &jitc_matmul_backward_meta);
  m.impl("jitc_materialize", &jitc_materialize_meta);
}

}  // namespace brain::ops
