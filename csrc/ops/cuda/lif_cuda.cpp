// CUDA host glue of the fused LIF op family: checks, device guard, current stream, launch,
// launch check. The kernels are torch-free (kernels/lif/lif_kernels.cu).
#include <tuple>

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "csrc/ops/lif_common.h"
#include "kernels/lif/lif_cuda.h"

namespace brain::ops {
namespace {

namespace kl = brain::kernels::lif;

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_impl(const char* op, const at::Tensor& input_in,
                                                            const at::Tensor& v0_in, const kl::LifConstants& c,
                                                            bool save) {
  detail::check_lif_tensors(op, input_in, v0_in);
  TORCH_CHECK(input_in.is_cuda(), op, ": expected CUDA tensors, got ", input_in.device());
  const c10::cuda::CUDAGuard guard(input_in.device());
  const at::Tensor input = input_in.contiguous();
  const at::Tensor v0 = v0_in.contiguous();
  at::Tensor spikes = at::empty(input.sizes(), input.options());
  at::Tensor v_last = at::empty(v0.sizes(), v0.options());
  at::Tensor v_pre = save ? at::empty(input.sizes(), input.options()) : at::Tensor();
  kl::cuda::ForwardArgs a;
  a.constants = c;
  a.is_double = input.scalar_type() == at::kDouble;
  a.input = input.const_data_ptr();
  a.v0 = v0.const_data_ptr();
  a.spikes = spikes.mutable_data_ptr();
  a.v_last = v_last.mutable_data_ptr();
  a.v_pre = save ? v_pre.mutable_data_ptr() : nullptr;
  a.steps = input.size(0);
  a.neurons = v0.numel();
  C10_CUDA_CHECK(kl::cuda::launch_forward(a, at::cuda::getCurrentCUDAStream()));
  return {spikes, v_last, v_pre};
}

std::tuple<at::Tensor, at::Tensor> lif_sequence_cuda(const at::Tensor& input, const at::Tensor& v0, double v_rest,
                                                     double v_reset, double v_th, double R, double tau, double dt,
                                                     c10::string_view method, bool detach_reset,
                                                     c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::lif_sequence";
  const auto c = detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  auto [spikes, v_last, unused] = forward_impl(op, input, v0, c, /*save=*/false);
  return {spikes, v_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_sequence_forward_cuda(
    const at::Tensor& input, const at::Tensor& v0, double v_rest, double v_reset, double v_th, double R, double tau,
    double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_sequence_forward";
  const auto c = detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  return forward_impl(op, input, v0, c, /*save=*/true);
}

std::tuple<at::Tensor, at::Tensor> lif_sequence_backward_cuda(
    const at::Tensor& grad_spikes_in, const at::Tensor& grad_v_last_in, const at::Tensor& v_pre_in, double v_rest,
    double v_reset, double v_th, double R, double tau, double dt, c10::string_view method, bool detach_reset,
    c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_sequence_backward";
  const auto c = detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_backward_tensors(op, grad_spikes_in, grad_v_last_in, v_pre_in);
  TORCH_CHECK(v_pre_in.is_cuda(), op, ": expected CUDA tensors, got ", v_pre_in.device());
  const c10::cuda::CUDAGuard guard(v_pre_in.device());
  const at::Tensor grad_spikes = grad_spikes_in.contiguous();
  const at::Tensor grad_v_last = grad_v_last_in.contiguous();
  const at::Tensor v_pre = v_pre_in.contiguous();
  at::Tensor grad_input = at::empty(v_pre.sizes(), v_pre.options());
  at::Tensor grad_v0 = at::empty(grad_v_last.sizes(), grad_v_last.options());
  kl::cuda::BackwardArgs a;
  a.constants = c;
  a.is_double = v_pre.scalar_type() == at::kDouble;
  a.grad_spikes = grad_spikes.const_data_ptr();
  a.grad_v_last = grad_v_last.const_data_ptr();
  a.v_pre = v_pre.const_data_ptr();
  a.grad_input = grad_input.mutable_data_ptr();
  a.grad_v0 = grad_v0.mutable_data_ptr();
  a.steps = v_pre.size(0);
  a.neurons = grad_v_last.numel();
  C10_CUDA_CHECK(kl::cuda::launch_backward(a, at::cuda::getCurrentCUDAStream()));
  return {grad_input, grad_v0};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CUDA, m) {
  m.impl("lif_sequence", &lif_sequence_cuda);
  m.impl("_lif_sequence_forward", &lif_sequence_forward_cuda);
  m.impl("_lif_sequence_backward", &lif_sequence_backward_cuda);
}

}  // namespace brain::ops
