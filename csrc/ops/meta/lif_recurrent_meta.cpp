// Meta kernels of brain::lif_recurrent_sequence: the real kernels' checks and outputs of the
// right sizes and dtypes, for torch.compile (fake tensors) and shape inference.
#include <array>
#include <tuple>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "csrc/ops/lif_common.h"

namespace brain::ops {
namespace {

at::Tensor like(const at::Tensor& t) { return at::empty_symint(t.sym_sizes(), t.options()); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_meta(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& weights, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params, const char* op) {
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_recurrent_tensors(op, drive, v0, history, indptr, indices, weights);
  return {like(drive), like(v0), like(drive)};
}

std::tuple<at::Tensor, at::Tensor> lif_recurrent_sequence_meta(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& weights, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params) {
  auto [spikes, v_last, unused] = forward_meta(drive, v0, history, indptr, indices, weights, v_rest, v_reset, v_th, R,
                                               tau, dt, method, detach_reset, surrogate, params,
                                               "brain::lif_recurrent_sequence");
  return {spikes, v_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_recurrent_sequence_forward_meta(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& weights, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params) {
  return forward_meta(drive, v0, history, indptr, indices, weights, v_rest, v_reset, v_th, R, tau, dt, method,
                      detach_reset, surrogate, params, "brain::_lif_recurrent_sequence_forward");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lif_recurrent_sequence_backward_meta(
    const at::Tensor& grad_spikes, const at::Tensor& grad_v_last, const at::Tensor& v_pre, const at::Tensor& spikes,
    const at::Tensor& history, const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& weights,
    double v_rest, double v_reset, double v_th, double R, double tau, double dt, c10::string_view method,
    bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params, std::array<bool, 4> output_mask) {
  const char* op = "brain::_lif_recurrent_sequence_backward";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_recurrent_backward_tensors(op, grad_spikes, grad_v_last, v_pre, spikes, history, indptr, indices,
                                               weights);
  return {output_mask[0] ? like(v_pre) : at::Tensor(), output_mask[1] ? like(grad_v_last) : at::Tensor(),
          output_mask[2] ? like(history) : at::Tensor(),
          output_mask[3] ? at::empty_like(weights, at::MemoryFormat::Contiguous) : at::Tensor()};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Meta, m) {
  m.impl("lif_recurrent_sequence", &lif_recurrent_sequence_meta);
  m.impl("_lif_recurrent_sequence_forward", &lif_recurrent_sequence_forward_meta);
  m.impl("_lif_recurrent_sequence_backward", &lif_recurrent_sequence_backward_meta);
}

}  // namespace brain::ops
