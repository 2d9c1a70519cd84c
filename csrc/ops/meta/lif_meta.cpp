// Meta kernels of the fused LIF op family: the same checks as the real kernels and outputs of
// the right sizes and dtypes, for torch.compile (fake tensors) and shape inference.
#include <tuple>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "csrc/ops/lif_common.h"

namespace brain::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> lif_sequence_meta(const at::Tensor& input, const at::Tensor& v0, double v_rest,
                                                     double v_reset, double v_th, double R, double tau, double dt,
                                                     c10::string_view method, bool detach_reset,
                                                     c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::lif_sequence";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_tensors(op, input, v0);
  return {at::empty_symint(input.sym_sizes(), input.options()), at::empty_symint(v0.sym_sizes(), v0.options())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_sequence_forward_meta(
    const at::Tensor& input, const at::Tensor& v0, double v_rest, double v_reset, double v_th, double R, double tau,
    double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_sequence_forward";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_tensors(op, input, v0);
  return {at::empty_symint(input.sym_sizes(), input.options()), at::empty_symint(v0.sym_sizes(), v0.options()),
          at::empty_symint(input.sym_sizes(), input.options())};
}

std::tuple<at::Tensor, at::Tensor> lif_sequence_backward_meta(
    const at::Tensor& grad_spikes, const at::Tensor& grad_v_last, const at::Tensor& v_pre, double v_rest,
    double v_reset, double v_th, double R, double tau, double dt, c10::string_view method, bool detach_reset,
    c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_sequence_backward";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_backward_tensors(op, grad_spikes, grad_v_last, v_pre);
  return {at::empty_symint(v_pre.sym_sizes(), v_pre.options()),
          at::empty_symint(grad_v_last.sym_sizes(), grad_v_last.options())};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Meta, m) {
  m.impl("lif_sequence", &lif_sequence_meta);
  m.impl("_lif_sequence_forward", &lif_sequence_forward_meta);
  m.impl("_lif_sequence_backward", &lif_sequence_backward_meta);
}

}  // namespace brain::ops
