// Kernels of brain::lif_dense_recurrent_sequence (schemas in lif_recurrent.cpp): a recurrent
// LIF layer's window with a dense recurrent matrix, written once for every device
// (CompositeExplicitAutograd) from ATen's matmul and the fused LIF op's one-step forward and
// backward. Per step: one matmul, one add and one LIF step forward; one add, one LIF step and
// one matmul backward; the weight gradient is one GEMM over the whole window at the end
// (instead of a rank-B update per step). Meta kernels at the end, so fake tensors never walk
// the steps.
#include <algorithm>
#include <array>
#include <tuple>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/add.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "csrc/ops/lif_common.h"

namespace brain::ops {
namespace {

struct Constants {
  double v_rest, v_reset, v_th, R, tau, dt;
  c10::string_view method;
  bool detach_reset;
  c10::string_view surrogate;
  c10::ArrayRef<double> params;
};

using StepForwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double,
                                                                      double, double, double, double, double,
                                                                      c10::string_view, bool, c10::string_view,
                                                                      c10::ArrayRef<double>);
using StepBackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                           double, double, double, double, double, double,
                                                           c10::string_view, bool, c10::string_view,
                                                           c10::ArrayRef<double>);

// The step's rows [T*B, n] of a [T, B, n] or [T, n] tensor.
at::Tensor rows(const at::Tensor& t) { return t.reshape({-1, t.size(-1)}); }

using StepSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double, double, double,
                                                   double, double, double, c10::string_view, bool, c10::string_view,
                                                   c10::ArrayRef<double>);

// v_pre is returned (and computed) only when save.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_impl(const char* op, const at::Tensor& drive,
                                                            const at::Tensor& v0, const at::Tensor& history,
                                                            const at::Tensor& weight, const Constants& k, bool save) {
  detail::lif_constants(op, k.v_rest, k.v_reset, k.v_th, k.R, k.tau, k.dt, k.method, k.detach_reset, k.surrogate,
                        k.params);
  detail::check_lif_dense_recurrent_tensors(op, drive, v0, history, weight);
  static auto saving_step_op = c10::Dispatcher::singleton()
                                   .findSchemaOrThrow("brain::_lif_sequence_forward", "")
                                   .typed<StepForwardSig>();
  static auto step_op =
      c10::Dispatcher::singleton().findSchemaOrThrow("brain::lif_sequence", "").typed<StepSig>();
  const int64_t steps = drive.size(0);
  const int64_t delay = history.size(0);
  if (steps == 0) {
    return {at::empty(drive.sizes(), drive.options()), v0.clone(),
            save ? at::empty(drive.sizes(), drive.options()) : at::Tensor()};
  }
  const at::Tensor weight_t = weight.t();
  std::vector<at::Tensor> spikes(static_cast<size_t>(steps)), v_pre(static_cast<size_t>(steps));
  at::Tensor u = v0;
  for (int64_t t = 0; t < steps; ++t) {
    const at::Tensor source = t < delay ? history.select(0, t) : spikes[static_cast<size_t>(t - delay)];
    // As torch.nn.Linear (no bias) computes it, then the sum: the op-by-op network's rounding.
    const at::Tensor current = at::add(drive.select(0, t), at::matmul(source, weight_t));
    at::Tensor s, v_last;
    if (save) {
      at::Tensor vp;
      std::tie(s, v_last, vp) = saving_step_op.call(current.unsqueeze(0), u, k.v_rest, k.v_reset, k.v_th, k.R, k.tau,
                                                    k.dt, k.method, k.detach_reset, k.surrogate, k.params);
      v_pre[static_cast<size_t>(t)] = vp.squeeze(0);
    } else {
      std::tie(s, v_last) = step_op.call(current.unsqueeze(0), u, k.v_rest, k.v_reset, k.v_th, k.R, k.tau, k.dt,
                                         k.method, k.detach_reset, k.surrogate, k.params);
    }
    spikes[static_cast<size_t>(t)] = s.squeeze(0);
    u = v_last;
  }
  return {at::stack(spikes), u, save ? at::stack(v_pre) : at::Tensor()};
}

std::tuple<at::Tensor, at::Tensor> sequence(const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history,
                                            const at::Tensor& weight, double v_rest, double v_reset, double v_th,
                                            double R, double tau, double dt, c10::string_view method,
                                            bool detach_reset, c10::string_view surrogate,
                                            c10::ArrayRef<double> params) {
  auto [spikes, v_last, unused] =
      forward_impl("brain::lif_dense_recurrent_sequence", drive, v0, history, weight,
                   {v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params}, /*save=*/false);
  return {spikes, v_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sequence_forward(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double v_rest,
    double v_reset, double v_th, double R, double tau, double dt, c10::string_view method, bool detach_reset,
    c10::string_view surrogate, c10::ArrayRef<double> params) {
  return forward_impl("brain::_lif_dense_recurrent_sequence_forward", drive, v0, history, weight,
                      {v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params}, /*save=*/true);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sequence_backward(
    const at::Tensor& grad_spikes, const at::Tensor& grad_v_last, const at::Tensor& v_pre, const at::Tensor& spikes,
    const at::Tensor& history, const at::Tensor& weight, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params, std::array<bool, 4> output_mask) {
  const char* op = "brain::_lif_dense_recurrent_sequence_backward";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_dense_recurrent_backward_tensors(op, grad_spikes, grad_v_last, v_pre, spikes, history, weight);
  static auto step_op = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("brain::_lif_sequence_backward", "")
                            .typed<StepBackwardSig>();
  const int64_t steps = v_pre.size(0);
  const int64_t delay = history.size(0);
  std::vector<at::Tensor> grad_drive(static_cast<size_t>(steps));
  // pending[t]: the gradient reaching spikes[t] through the weight, from step t + d.
  std::vector<at::Tensor> pending(static_cast<size_t>(steps));
  at::Tensor grad_history = at::zeros(history.sizes(), history.options());
  at::Tensor gu = grad_v_last;
  for (int64_t t = steps - 1; t >= 0; --t) {
    at::Tensor gs = grad_spikes.select(0, t);
    if (t + delay < steps) {
      gs = at::add(gs, pending[static_cast<size_t>(t)]);
      pending[static_cast<size_t>(t)] = at::Tensor();
    }
    auto [gi, gv0] = step_op.call(gs.unsqueeze(0), gu, v_pre.select(0, t).unsqueeze(0), v_rest, v_reset, v_th, R,
                                  tau, dt, method, detach_reset, surrogate, params);
    const at::Tensor g_current = gi.squeeze(0);
    grad_drive[static_cast<size_t>(t)] = g_current;
    gu = gv0;
    // current = drive + S weight^T: the source's gradient is g_current weight.
    const at::Tensor g_source = at::matmul(g_current, weight);
    if (t < delay) {
      grad_history.select(0, t).copy_(g_source);
    } else {
      pending[static_cast<size_t>(t - delay)] = g_source;
    }
  }
  const at::Tensor grad_drive_all =
      steps > 0 ? at::stack(grad_drive) : at::zeros(v_pre.sizes(), v_pre.options());
  at::Tensor grad_weight;
  if (output_mask[3]) {
    // dW [post, pre] = sum over steps and items of g_current^T S: the window's (step, item)
    // rows as one GEMM per source, the history's steps and then the window's own spikes.
    grad_weight = at::zeros(weight.sizes(), weight.options());
    const int64_t from_history = std::min(delay, steps);
    if (from_history > 0) {
      grad_weight.addmm_(rows(grad_drive_all.narrow(0, 0, from_history)).t(),
                         rows(history.narrow(0, 0, from_history)));
    }
    if (steps > delay) {
      grad_weight.addmm_(rows(grad_drive_all.narrow(0, delay, steps - delay)).t(),
                         rows(spikes.narrow(0, 0, steps - delay)));
    }
  }
  return {output_mask[0] ? grad_drive_all : at::Tensor(), output_mask[1] ? (steps > 0 ? gu : gu.clone()) : at::Tensor(),
          output_mask[2] ? grad_history : at::Tensor(), grad_weight};
}

// ---- Meta: shapes and checks only -----------------------------------------------------------

at::Tensor like(const at::Tensor& t) { return at::empty_symint(t.sym_sizes(), t.options()); }

std::tuple<at::Tensor, at::Tensor> sequence_meta(const at::Tensor& drive, const at::Tensor& v0,
                                                 const at::Tensor& history, const at::Tensor& weight, double v_rest,
                                                 double v_reset, double v_th, double R, double tau, double dt,
                                                 c10::string_view method, bool detach_reset,
                                                 c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::lif_dense_recurrent_sequence";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_dense_recurrent_tensors(op, drive, v0, history, weight);
  return {like(drive), like(v0)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sequence_forward_meta(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double v_rest,
    double v_reset, double v_th, double R, double tau, double dt, c10::string_view method, bool detach_reset,
    c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_dense_recurrent_sequence_forward";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_dense_recurrent_tensors(op, drive, v0, history, weight);
  return {like(drive), like(v0), like(drive)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sequence_backward_meta(
    const at::Tensor& grad_spikes, const at::Tensor& grad_v_last, const at::Tensor& v_pre, const at::Tensor& spikes,
    const at::Tensor& history, const at::Tensor& weight, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params, std::array<bool, 4> output_mask) {
  const char* op = "brain::_lif_dense_recurrent_sequence_backward";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_dense_recurrent_backward_tensors(op, grad_spikes, grad_v_last, v_pre, spikes, history, weight);
  return {output_mask[0] ? like(v_pre) : at::Tensor(), output_mask[1] ? like(grad_v_last) : at::Tensor(),
          output_mask[2] ? like(history) : at::Tensor(), output_mask[3] ? like(weight) : at::Tensor()};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CompositeExplicitAutograd, m) {
  m.impl("lif_dense_recurrent_sequence", &sequence);
  m.impl("_lif_dense_recurrent_sequence_forward", &sequence_forward);
  m.impl("_lif_dense_recurrent_sequence_backward", &sequence_backward);
}

TORCH_LIBRARY_IMPL(brain, Meta, m) {
  m.impl("lif_dense_recurrent_sequence", &sequence_meta);
  m.impl("_lif_dense_recurrent_sequence_forward", &sequence_forward_meta);
  m.impl("_lif_dense_recurrent_sequence_backward", &sequence_backward_meta);
}

}  // namespace brain::ops
