// Kernels of brain::lif_dense_recurrent_sequence and brain::lif_jit_recurrent_sequence
// (schemas in lif_recurrent.cpp): a recurrent LIF layer's window with a dense or a
// JIT-connectivity recurrent matrix, written once for every device (CompositeExplicitAutograd)
// from the ops the op-by-op network calls (matmul, or event_jitc_matmul) and the fused LIF op's
// one-step forward and backward. Per step: one product, one add and one LIF step forward; one
// add, one LIF step and one product backward; the weight gradient is one pass over the whole
// window at the end (a GEMM, or one generation of the JIT matrix) instead of one per step.
// Meta kernels at the end, so fake tensors never walk the steps.
#include <algorithm>
#include <cstdlib>
#include <array>
#include <functional>
#include <string>
#include <string_view>
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
#include <c10/core/SymInt.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/library.h>

#include "csrc/ops/jitc_common.h"
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

using JitcMatmulSig = at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t, c10::SymIntArrayRef,
                                 c10::string_view, bool);
using JitcBackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                           double, int64_t, c10::SymIntArrayRef, c10::string_view,
                                                           bool, std::array<bool, 2>);

using JitcToCsrSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, double, int64_t,
                                                                    c10::SymIntArrayRef, c10::string_view);

std::string_view view(c10::string_view s) { return {s.data(), s.size()}; }

using StepSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double, double, double,
                                                   double, double, double, c10::string_view, bool, c10::string_view,
                                                   c10::ArrayRef<double>);

// What differs between the recurrent matrices: the recurrent current of a step's spikes, the
// gradient that current sends back to the spikes, and the weight gradient of (step, item) rows
// of the current's gradient and of the spikes, added to `grad` (undefined at first).
struct Recurrence {
  std::function<at::Tensor(const at::Tensor& source)> current;
  std::function<at::Tensor(const at::Tensor& g_current)> source_grad;
  std::function<at::Tensor(at::Tensor grad, const at::Tensor& g_rows, const at::Tensor& source_rows)> weight_grad;
};

Recurrence dense_recurrence(const at::Tensor& weight) {
  const at::Tensor weight_t = weight.t();
  return {
      // As torch.nn.Linear (no bias) computes it: the op-by-op network's rounding.
      [weight_t](const at::Tensor& source) { return at::matmul(source, weight_t); },
      // current = drive + S weight^T: the source's gradient is g_current weight.
      [weight](const at::Tensor& g) { return at::matmul(g, weight); },
      // dW [post, pre] = sum over steps and items of g_current^T S, one GEMM per part.
      [weight](at::Tensor grad, const at::Tensor& g_rows, const at::Tensor& source_rows) {
        if (!grad.defined()) grad = at::zeros(weight.sizes(), weight.options());
        return grad.addmm_(g_rows.t(), source_rows);
      }};
}

// On the CPU, generating A's entries (a Philox draw and a logarithm each) dominates the cost of
// a product; a window multiplies by the same A twice per step. So while A's expected size is
// within this budget, a call generates it once as CSR (jitc_to_csr) and every step reads that
// copy: the same entries, values and order, so the same bits, for the call's duration only.
// Above it, and on a GPU (where generating is cheap and jitc_to_csr would read nnz back to the
// host), every product generates A as it goes. BRAIN_JIT_COPY_BUDGET_MB sets the budget (0:
// never copy), e.g. to bound a run's memory more tightly or to test both paths.
double jit_copy_budget_bytes() {
  const char* value = std::getenv("BRAIN_JIT_COPY_BUDGET_MB");
  if (value == nullptr || *value == '\0') return 256.0 * (1 << 20);
  char* end = nullptr;
  const double mb = std::strtod(value, &end);
  TORCH_CHECK(end != nullptr && *end == '\0' && mb >= 0, "BRAIN_JIT_COPY_BUDGET_MB must be a number of MiB >= 0, got '",
              value, "'");
  return mb * (1 << 20);
}

Recurrence jit_recurrence(const char* op, const at::Tensor& weight, double prob, int64_t seed, c10::string_view dist,
                          int64_t n) {
  static auto event_op =
      c10::Dispatcher::singleton().findSchemaOrThrow("brain::event_jitc_matmul", "").typed<JitcMatmulSig>();
  static auto float_op =
      c10::Dispatcher::singleton().findSchemaOrThrow("brain::jitc_matmul", "").typed<JitcMatmulSig>();
  static auto backward_op = c10::Dispatcher::singleton()
                                .findSchemaOrThrow("brain::_jitc_matmul_backward", "")
                                .typed<JitcBackwardSig>();
  static auto to_csr_op = c10::Dispatcher::singleton()
                              .findSchemaOrThrow("brain::jitc_to_csr", "")
                              .typed<JitcToCsrSig>();
  const std::array<c10::SymInt, 2> shape{n, n};
  const std::string dist_name(dist);
  // The parameters' gradient of all the rows' products at once: one walk over A per part.
  auto weight_grad = [=](at::Tensor grad, const at::Tensor& g_rows, const at::Tensor& source_rows) {
    const at::Tensor part = std::get<1>(backward_op.call(g_rows, source_rows, weight, prob, seed, shape, dist_name,
                                                         /*transpose=*/true, {false, true}));
    return grad.defined() ? grad.add_(part) : part;
  };
  if (weight.device().is_cpu()) {
    // Parameters the generator cannot use (std < 0, high < low, not finite) are named here, as
    // the op's; on a GPU they turn the products into NaN instead (reading them would sync).
    detail::read_weight_params_cpu(op, weight, detail::parse_dist(op, view(dist)));
    const double expected_bytes = prob * static_cast<double>(n) * static_cast<double>(n) *
                                  static_cast<double>(sizeof(int64_t) + weight.element_size());
    if (n > 0 && expected_bytes <= jit_copy_budget_bytes()) {
      at::Tensor indptr, indices, values;  // not structured bindings: C++17 lambdas cannot capture those
      std::tie(indptr, indices, values) = to_csr_op.call(weight, prob, seed, shape, dist_name);
      return {[=](const at::Tensor& source) {
                return detail::jitc_matmul_with_csr_cpu(op, /*event=*/true, source, weight, prob, seed, n, n,
                                                        dist_name, /*transpose=*/true, indptr, indices, values);
              },
              [=](const at::Tensor& g) {
                return detail::jitc_matmul_with_csr_cpu(op, /*event=*/false, g, weight, prob, seed, n, n, dist_name,
                                                        /*transpose=*/false, indptr, indices, values);
              },
              weight_grad};
    }
  }
  return {
      // JitComm's product: A^T S, the event form.
      [=](const at::Tensor& source) {
        return event_op.call(source, weight, prob, seed, shape, dist_name, /*transpose=*/true);
      },
      // current = drive + A^T S: the source's gradient is A g_current.
      [=](const at::Tensor& g) { return float_op.call(g, weight, prob, seed, shape, dist_name, /*transpose=*/false); },
      weight_grad};
}

// v_pre is returned (and computed) only when save.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_impl(const at::Tensor& drive, const at::Tensor& v0,
                                                            const at::Tensor& history, const Recurrence& recurrence,
                                                            const Constants& k, bool save) {
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
  std::vector<at::Tensor> spikes(static_cast<size_t>(steps)), v_pre(static_cast<size_t>(steps));
  at::Tensor u = v0;
  for (int64_t t = 0; t < steps; ++t) {
    const at::Tensor source = t < delay ? history.select(0, t) : spikes[static_cast<size_t>(t - delay)];
    // The product, then the sum, as the op-by-op network rounds them.
    const at::Tensor current = at::add(drive.select(0, t), recurrence.current(source));
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

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_impl(
    const at::Tensor& grad_spikes, const at::Tensor& grad_v_last, const at::Tensor& v_pre, const at::Tensor& spikes,
    const at::Tensor& history, const at::Tensor& weight, const Recurrence& recurrence, const Constants& k,
    std::array<bool, 4> output_mask) {
  static auto step_op = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("brain::_lif_sequence_backward", "")
                            .typed<StepBackwardSig>();
  const int64_t steps = v_pre.size(0);
  const int64_t delay = history.size(0);
  std::vector<at::Tensor> grad_drive(static_cast<size_t>(steps));
  // pending[t]: the gradient reaching spikes[t] through the recurrent matrix, from step t + d.
  std::vector<at::Tensor> pending(static_cast<size_t>(steps));
  at::Tensor grad_history = at::zeros(history.sizes(), history.options());
  at::Tensor gu = grad_v_last;
  for (int64_t t = steps - 1; t >= 0; --t) {
    at::Tensor gs = grad_spikes.select(0, t);
    if (t + delay < steps) {
      gs = at::add(gs, pending[static_cast<size_t>(t)]);
      pending[static_cast<size_t>(t)] = at::Tensor();
    }
    auto [gi, gv0] = step_op.call(gs.unsqueeze(0), gu, v_pre.select(0, t).unsqueeze(0), k.v_rest, k.v_reset, k.v_th,
                                  k.R, k.tau, k.dt, k.method, k.detach_reset, k.surrogate, k.params);
    const at::Tensor g_current = gi.squeeze(0);
    grad_drive[static_cast<size_t>(t)] = g_current;
    gu = gv0;
    const at::Tensor g_source = recurrence.source_grad(g_current);
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
    // The window's (step, item) rows as one batch per source: the history's steps, then the
    // window's own spikes.
    const int64_t from_history = std::min(delay, steps);
    if (from_history > 0) {
      grad_weight = recurrence.weight_grad(grad_weight, rows(grad_drive_all.narrow(0, 0, from_history)),
                                           rows(history.narrow(0, 0, from_history)));
    }
    if (steps > delay) {
      grad_weight = recurrence.weight_grad(grad_weight, rows(grad_drive_all.narrow(0, delay, steps - delay)),
                                           rows(spikes.narrow(0, 0, steps - delay)));
    }
    if (!grad_weight.defined()) grad_weight = at::zeros(weight.sizes(), weight.options());  // an empty window
  }
  return {output_mask[0] ? grad_drive_all : at::Tensor(), output_mask[1] ? (steps > 0 ? gu : gu.clone()) : at::Tensor(),
          output_mask[2] ? grad_history : at::Tensor(), grad_weight};
}

// ---- The dense form --------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor> sequence(const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history,
                                            const at::Tensor& weight, double v_rest, double v_reset, double v_th,
                                            double R, double tau, double dt, c10::string_view method,
                                            bool detach_reset, c10::string_view surrogate,
                                            c10::ArrayRef<double> params) {
  const char* op = "brain::lif_dense_recurrent_sequence";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_dense_recurrent_tensors(op, drive, v0, history, weight);
  auto [spikes, v_last, unused] =
      forward_impl(drive, v0, history, dense_recurrence(weight),
                   {v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params}, /*save=*/false);
  return {spikes, v_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sequence_forward(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double v_rest,
    double v_reset, double v_th, double R, double tau, double dt, c10::string_view method, bool detach_reset,
    c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_dense_recurrent_sequence_forward";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_dense_recurrent_tensors(op, drive, v0, history, weight);
  return forward_impl(drive, v0, history, dense_recurrence(weight),
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
  return backward_impl(grad_spikes, grad_v_last, v_pre, spikes, history, weight, dense_recurrence(weight),
                       {v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params}, output_mask);
}

// ---- The JIT form ----------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor> jit_sequence(const at::Tensor& drive, const at::Tensor& v0,
                                                const at::Tensor& history, const at::Tensor& weight, double prob,
                                                int64_t seed, c10::string_view dist, double v_rest, double v_reset,
                                                double v_th, double R, double tau, double dt,
                                                c10::string_view method, bool detach_reset,
                                                c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::lif_jit_recurrent_sequence";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_jit_recurrent_tensors(op, drive, v0, history, weight, prob, view(dist));
  auto [spikes, v_last, unused] =
      forward_impl(drive, v0, history, jit_recurrence(op, weight, prob, seed, dist, drive.size(-1)),
                   {v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params}, /*save=*/false);
  return {spikes, v_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> jit_sequence_forward(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double prob,
    int64_t seed, c10::string_view dist, double v_rest, double v_reset, double v_th, double R, double tau, double dt,
    c10::string_view method, bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_jit_recurrent_sequence_forward";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_jit_recurrent_tensors(op, drive, v0, history, weight, prob, view(dist));
  return forward_impl(drive, v0, history, jit_recurrence(op, weight, prob, seed, dist, drive.size(-1)),
                      {v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params}, /*save=*/true);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> jit_sequence_backward(
    const at::Tensor& grad_spikes, const at::Tensor& grad_v_last, const at::Tensor& v_pre, const at::Tensor& spikes,
    const at::Tensor& history, const at::Tensor& weight, double prob, int64_t seed, c10::string_view dist,
    double v_rest, double v_reset, double v_th, double R, double tau, double dt, c10::string_view method,
    bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params, std::array<bool, 4> output_mask) {
  const char* op = "brain::_lif_jit_recurrent_sequence_backward";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_jit_recurrent_backward_tensors(op, grad_spikes, grad_v_last, v_pre, spikes, history, weight, prob,
                                                   view(dist));
  return backward_impl(grad_spikes, grad_v_last, v_pre, spikes, history, weight,
                       jit_recurrence(op, weight, prob, seed, dist, v_pre.size(-1)),
                       {v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params}, output_mask);
}

// ---- Meta: shapes and checks only -----------------------------------------------------------

at::Tensor like(const at::Tensor& t) { return at::empty_symint(t.sym_sizes(), t.options()); }

// The backward's gradients (drive, v0, history, weight) that output_mask asks for, as empty
// tensors shaped like what they differentiate (drive's gradient is shaped like v_pre).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_meta_result(const at::Tensor& v_pre,
                                                                                const at::Tensor& grad_v_last,
                                                                                const at::Tensor& history,
                                                                                const at::Tensor& weight,
                                                                                std::array<bool, 4> output_mask) {
  return {output_mask[0] ? like(v_pre) : at::Tensor(), output_mask[1] ? like(grad_v_last) : at::Tensor(),
          output_mask[2] ? like(history) : at::Tensor(), output_mask[3] ? like(weight) : at::Tensor()};
}

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
  return backward_meta_result(v_pre, grad_v_last, history, weight, output_mask);
}

std::tuple<at::Tensor, at::Tensor> jit_sequence_meta(const at::Tensor& drive, const at::Tensor& v0,
                                                     const at::Tensor& history, const at::Tensor& weight, double prob,
                                                     int64_t /*seed*/, c10::string_view dist, double v_rest,
                                                     double v_reset, double v_th, double R, double tau, double dt,
                                                     c10::string_view method, bool detach_reset,
                                                     c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::lif_jit_recurrent_sequence";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_jit_recurrent_tensors(op, drive, v0, history, weight, prob, view(dist));
  return {like(drive), like(v0)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> jit_sequence_forward_meta(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double prob,
    int64_t /*seed*/, c10::string_view dist, double v_rest, double v_reset, double v_th, double R, double tau, double dt,
    c10::string_view method, bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_jit_recurrent_sequence_forward";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_jit_recurrent_tensors(op, drive, v0, history, weight, prob, view(dist));
  return {like(drive), like(v0), like(drive)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> jit_sequence_backward_meta(
    const at::Tensor& grad_spikes, const at::Tensor& grad_v_last, const at::Tensor& v_pre, const at::Tensor& spikes,
    const at::Tensor& history, const at::Tensor& weight, double prob, int64_t /*seed*/, c10::string_view dist,
    double v_rest, double v_reset, double v_th, double R, double tau, double dt, c10::string_view method,
    bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params, std::array<bool, 4> output_mask) {
  const char* op = "brain::_lif_jit_recurrent_sequence_backward";
  detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  detail::check_lif_jit_recurrent_backward_tensors(op, grad_spikes, grad_v_last, v_pre, spikes, history, weight, prob,
                                                   view(dist));
  return backward_meta_result(v_pre, grad_v_last, history, weight, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CompositeExplicitAutograd, m) {
  m.impl("lif_jit_recurrent_sequence", &jit_sequence);
  m.impl("_lif_jit_recurrent_sequence_forward", &jit_sequence_forward);
  m.impl("_lif_jit_recurrent_sequence_backward", &jit_sequence_backward);
  m.impl("lif_dense_recurrent_sequence", &sequence);
  m.impl("_lif_dense_recurrent_sequence_forward", &sequence_forward);
  m.impl("_lif_dense_recurrent_sequence_backward", &sequence_backward);
}

TORCH_LIBRARY_IMPL(brain, Meta, m) {
  m.impl("lif_jit_recurrent_sequence", &jit_sequence_meta);
  m.impl("_lif_jit_recurrent_sequence_forward", &jit_sequence_forward_meta);
  m.impl("_lif_jit_recurrent_sequence_backward", &jit_sequence_backward_meta);
  m.impl("lif_dense_recurrent_sequence", &sequence_meta);
  m.impl("_lif_dense_recurrent_sequence_forward", &sequence_forward_meta);
  m.impl("_lif_dense_recurrent_sequence_backward", &sequence_backward_meta);
}

}  // namespace brain::ops
