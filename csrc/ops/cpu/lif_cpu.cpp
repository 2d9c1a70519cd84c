// CPU kernels of the fused LIF op family: checks, dtype dispatch and at::parallel_for over
// neurons (each walks its T steps) around the torch-free loops in kernels/lif/lif_seq.h.
#include <algorithm>
#include <tuple>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "csrc/ops/lif_common.h"
#include "kernels/lif/lif_seq.h"

namespace brain::ops {
namespace {

namespace k = brain::kernels::lif;

// Neurons per parallel task: enough steps of work that a task outweighs its scheduling.
int64_t neuron_grain(int64_t steps) { return std::max<int64_t>(256, (int64_t{1} << 16) / std::max<int64_t>(steps, 1)); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_impl(const char* op, const at::Tensor& input_in,
                                                            const at::Tensor& v0_in, const k::LifConstants& c,
                                                            bool save) {
  detail::check_lif_tensors(op, input_in, v0_in);
  TORCH_CHECK(input_in.device().is_cpu(), op, ": expected CPU tensors, got ", input_in.device());
  const at::Tensor input = input_in.contiguous();
  const at::Tensor v0 = v0_in.contiguous();
  const int64_t steps = input.size(0);
  const int64_t neurons = v0.numel();
  at::Tensor spikes = at::empty(input.sizes(), input.options());
  at::Tensor v_last = at::empty(v0.sizes(), v0.options());
  at::Tensor v_pre = save ? at::empty(input.sizes(), input.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "lif_sequence_cpu", [&] {
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    const scalar_t* u0 = v0.const_data_ptr<scalar_t>();
    scalar_t* s = spikes.mutable_data_ptr<scalar_t>();
    scalar_t* vl = v_last.mutable_data_ptr<scalar_t>();
    scalar_t* vp = save ? v_pre.mutable_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, neurons, neuron_grain(steps), [&](int64_t begin, int64_t end) {
      k::forward_cpu<scalar_t>(c, in, u0, s, vl, vp, steps, neurons, begin, end);
    });
  });
  return {spikes, v_last, v_pre};
}

std::tuple<at::Tensor, at::Tensor> lif_sequence_cpu(const at::Tensor& input, const at::Tensor& v0, double v_rest,
                                                    double v_reset, double v_th, double R, double tau, double dt,
                                                    c10::string_view method, bool detach_reset,
                                                    c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::lif_sequence";
  const auto c = detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  auto [spikes, v_last, unused] = forward_impl(op, input, v0, c, /*save=*/false);
  return {spikes, v_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_sequence_forward_cpu(
    const at::Tensor& input, const at::Tensor& v0, double v_rest, double v_reset, double v_th, double R, double tau,
    double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_sequence_forward";
  const auto c = detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  return forward_impl(op, input, v0, c, /*save=*/true);
}

std::tuple<at::Tensor, at::Tensor> lif_sequence_backward_cpu(
    const at::Tensor& grad_spikes_in, const at::Tensor& grad_v_last_in, const at::Tensor& v_pre_in, double v_rest,
    double v_reset, double v_th, double R, double tau, double dt, c10::string_view method, bool detach_reset,
    c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_sequence_backward";
  const auto c = detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_backward_tensors(op, grad_spikes_in, grad_v_last_in, v_pre_in);
  TORCH_CHECK(v_pre_in.device().is_cpu(), op, ": expected CPU tensors, got ", v_pre_in.device());
  const at::Tensor grad_spikes = grad_spikes_in.contiguous();
  const at::Tensor grad_v_last = grad_v_last_in.contiguous();
  const at::Tensor v_pre = v_pre_in.contiguous();
  const int64_t steps = v_pre.size(0);
  const int64_t neurons = grad_v_last.numel();
  at::Tensor grad_input = at::empty(v_pre.sizes(), v_pre.options());
  at::Tensor grad_v0 = at::empty(grad_v_last.sizes(), grad_v_last.options());
  AT_DISPATCH_FLOATING_TYPES(v_pre.scalar_type(), "lif_sequence_backward_cpu", [&] {
    const scalar_t* gs = grad_spikes.const_data_ptr<scalar_t>();
    const scalar_t* gl = grad_v_last.const_data_ptr<scalar_t>();
    const scalar_t* vp = v_pre.const_data_ptr<scalar_t>();
    scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
    scalar_t* g0 = grad_v0.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, neurons, neuron_grain(steps), [&](int64_t begin, int64_t end) {
      k::backward_cpu<scalar_t>(c, gs, gl, vp, gi, g0, steps, neurons, begin, end);
    });
  });
  return {grad_input, grad_v0};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CPU, m) {
  m.impl("lif_sequence", &lif_sequence_cpu);
  m.impl("_lif_sequence_forward", &lif_sequence_forward_cpu);
  m.impl("_lif_sequence_backward", &lif_sequence_backward_cpu);
}

}  // namespace brain::ops
