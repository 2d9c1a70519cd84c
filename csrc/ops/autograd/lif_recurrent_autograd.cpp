// Autograd kernels of brain::lif_recurrent_sequence and its dense and JIT forms
// brain::lif_dense_recurrent_sequence, brain::lif_jit_recurrent_sequence (the same scheme).
// For the CSR form: the forward runs
// brain::_lif_recurrent_sequence_forward and saves v_pre next to the spikes it returns, the
// history and the CSR matrix; the registered brain::_lif_recurrent_sequence_backward walks the
// window back in one call. Without a gradient to compute, nothing is saved.
#include <array>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

namespace brain::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using SequenceSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                       const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                                       double, double, double, double, double, c10::string_view, bool,
                                                       c10::string_view, c10::ArrayRef<double>);
using ForwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    double, double, double, double, double, double, c10::string_view, bool, c10::string_view, c10::ArrayRef<double>);
using BackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, double, double, double, double, double, double, c10::string_view, bool,
    c10::string_view, c10::ArrayRef<double>, std::array<bool, 4>);

struct Model {
  double v_rest, v_reset, v_th, R, tau, dt;
  std::string method;
  bool detach_reset;
  std::string surrogate;
  std::vector<double> params;
};

void save_model(AutogradContext* ctx, const Model& m) {
  ctx->saved_data["constants"] = std::vector<double>{m.v_rest, m.v_reset, m.v_th, m.R, m.tau, m.dt};
  ctx->saved_data["method"] = m.method;
  ctx->saved_data["detach_reset"] = m.detach_reset;
  ctx->saved_data["surrogate"] = m.surrogate;
  ctx->saved_data["params"] = m.params;
}

Model load_model(AutogradContext* ctx) {
  const auto k = ctx->saved_data["constants"].toDoubleVector();
  return {k[0], k[1], k[2], k[3], k[4], k[5], ctx->saved_data["method"].toStringRef(),
          ctx->saved_data["detach_reset"].toBool(), ctx->saved_data["surrogate"].toStringRef(),
          ctx->saved_data["params"].toDoubleVector()};
}

class LifRecurrentFunction : public torch::autograd::Function<LifRecurrentFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& drive, const at::Tensor& v0,
                               const at::Tensor& history, const at::Tensor& weights, const at::Tensor& indptr,
                               const at::Tensor& indices, const Model& m) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::_lif_recurrent_sequence_forward", "")
                         .typed<ForwardSig>();
    at::Tensor spikes, v_last, v_pre;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(spikes, v_last, v_pre) = op.call(drive, v0, history, indptr, indices, weights, m.v_rest, m.v_reset,
                                                m.v_th, m.R, m.tau, m.dt, m.method, m.detach_reset, m.surrogate,
                                                m.params);
    }
    ctx->save_for_backward({v_pre, spikes, history, indptr, indices, weights});
    save_model(ctx, m);
    // The spikes are 0/1 values: their gradient is the surrogate's, which the backward applies.
    return {spikes, v_last};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::_lif_recurrent_sequence_backward", "")
                         .typed<BackwardSig>();
    const auto saved = ctx->get_saved_variables();
    const Model m = load_model(ctx);
    const std::array<bool, 4> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2),
                                   ctx->needs_input_grad(3)};
    // Grads are materialised (zeros) for an output the loss did not use.
    auto [grad_drive, grad_v0, grad_history, grad_weights] =
        op.call(grads[0], grads[1], saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], m.v_rest, m.v_reset,
                m.v_th, m.R, m.tau, m.dt, m.method, m.detach_reset, m.surrogate, m.params, mask);
    return {grad_drive, grad_v0, grad_history, grad_weights, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> lif_recurrent_sequence_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& weights, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params) {
  const bool needs_grad = at::GradMode::is_enabled() && (drive.requires_grad() || v0.requires_grad() ||
                                                         history.requires_grad() || weights.requires_grad());
  if (!needs_grad) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::lif_recurrent_sequence", "")
                         .typed<SequenceSig>();
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(drive, v0, history, indptr, indices, weights, v_rest, v_reset, v_th, R, tau, dt, method,
                   detach_reset, surrogate, params);
  }
  const Model m{v_rest, v_reset, v_th, R, tau, dt, std::string(method), detach_reset, std::string(surrogate),
                params.vec()};
  auto out = LifRecurrentFunction::apply(drive, v0, history, weights, indptr, indices, m);
  return {out[0], out[1]};
}

// The dense form: weight [n, n] in the CSR tensors' place.
using DenseSequenceSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                            const at::Tensor&, double, double, double, double, double,
                                                            double, c10::string_view, bool, c10::string_view,
                                                            c10::ArrayRef<double>);
using DenseForwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double, double, double, double,
    double, c10::string_view, bool, c10::string_view, c10::ArrayRef<double>);
using DenseBackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    double, double, double, double, double, double, c10::string_view, bool, c10::string_view, c10::ArrayRef<double>,
    std::array<bool, 4>);

class LifDenseRecurrentFunction : public torch::autograd::Function<LifDenseRecurrentFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& drive, const at::Tensor& v0,
                               const at::Tensor& history, const at::Tensor& weight, const Model& m) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::_lif_dense_recurrent_sequence_forward", "")
                         .typed<DenseForwardSig>();
    at::Tensor spikes, v_last, v_pre;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(spikes, v_last, v_pre) = op.call(drive, v0, history, weight, m.v_rest, m.v_reset, m.v_th, m.R, m.tau,
                                                m.dt, m.method, m.detach_reset, m.surrogate, m.params);
    }
    ctx->save_for_backward({v_pre, spikes, history, weight});
    save_model(ctx, m);
    return {spikes, v_last};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::_lif_dense_recurrent_sequence_backward", "")
                         .typed<DenseBackwardSig>();
    const auto saved = ctx->get_saved_variables();
    const Model m = load_model(ctx);
    const std::array<bool, 4> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2),
                                   ctx->needs_input_grad(3)};
    auto [grad_drive, grad_v0, grad_history, grad_weight] =
        op.call(grads[0], grads[1], saved[0], saved[1], saved[2], saved[3], m.v_rest, m.v_reset, m.v_th, m.R, m.tau,
                m.dt, m.method, m.detach_reset, m.surrogate, m.params, mask);
    return {grad_drive, grad_v0, grad_history, grad_weight, at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> lif_dense_recurrent_sequence_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double v_rest,
    double v_reset, double v_th, double R, double tau, double dt, c10::string_view method, bool detach_reset,
    c10::string_view surrogate, c10::ArrayRef<double> params) {
  const bool needs_grad = at::GradMode::is_enabled() && (drive.requires_grad() || v0.requires_grad() ||
                                                         history.requires_grad() || weight.requires_grad());
  if (!needs_grad) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::lif_dense_recurrent_sequence", "")
                         .typed<DenseSequenceSig>();
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(drive, v0, history, weight, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate,
                   params);
  }
  const Model m{v_rest, v_reset, v_th, R, tau, dt, std::string(method), detach_reset, std::string(surrogate),
                params.vec()};
  auto out = LifDenseRecurrentFunction::apply(drive, v0, history, weight, m);
  return {out[0], out[1]};
}

// The JIT form: weight holds the connectivity's parameters; prob, seed and dist travel with
// the model constants.
using JitSequenceSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                          const at::Tensor&, double, int64_t, c10::string_view, double,
                                                          double, double, double, double, double, c10::string_view,
                                                          bool, c10::string_view, c10::ArrayRef<double>);
using JitForwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double, int64_t, c10::string_view,
    double, double, double, double, double, double, c10::string_view, bool, c10::string_view, c10::ArrayRef<double>);
using JitBackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    double, int64_t, c10::string_view, double, double, double, double, double, double, c10::string_view, bool,
    c10::string_view, c10::ArrayRef<double>, std::array<bool, 4>);

struct Connectivity {
  double prob;
  int64_t seed;
  std::string dist;
};

class LifJitRecurrentFunction : public torch::autograd::Function<LifJitRecurrentFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& drive, const at::Tensor& v0,
                               const at::Tensor& history, const at::Tensor& weight, const Connectivity& c,
                               const Model& m) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::_lif_jit_recurrent_sequence_forward", "")
                         .typed<JitForwardSig>();
    at::Tensor spikes, v_last, v_pre;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(spikes, v_last, v_pre) = op.call(drive, v0, history, weight, c.prob, c.seed, c.dist, m.v_rest,
                                                m.v_reset, m.v_th, m.R, m.tau, m.dt, m.method, m.detach_reset,
                                                m.surrogate, m.params);
    }
    ctx->save_for_backward({v_pre, spikes, history, weight});
    save_model(ctx, m);
    ctx->saved_data["prob"] = c.prob;
    ctx->saved_data["seed"] = c.seed;
    ctx->saved_data["dist"] = c.dist;
    return {spikes, v_last};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::_lif_jit_recurrent_sequence_backward", "")
                         .typed<JitBackwardSig>();
    const auto saved = ctx->get_saved_variables();
    const Model m = load_model(ctx);
    const std::array<bool, 4> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2),
                                   ctx->needs_input_grad(3)};
    auto [grad_drive, grad_v0, grad_history, grad_weight] =
        op.call(grads[0], grads[1], saved[0], saved[1], saved[2], saved[3], ctx->saved_data["prob"].toDouble(),
                ctx->saved_data["seed"].toInt(), ctx->saved_data["dist"].toStringRef(), m.v_rest, m.v_reset, m.v_th,
                m.R, m.tau, m.dt, m.method, m.detach_reset, m.surrogate, m.params, mask);
    return {grad_drive, grad_v0, grad_history, grad_weight, at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> lif_jit_recurrent_sequence_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double prob,
    int64_t seed, c10::string_view dist, double v_rest, double v_reset, double v_th, double R, double tau, double dt,
    c10::string_view method, bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params) {
  const bool needs_grad = at::GradMode::is_enabled() && (drive.requires_grad() || v0.requires_grad() ||
                                                         history.requires_grad() || weight.requires_grad());
  if (!needs_grad) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::lif_jit_recurrent_sequence", "")
                         .typed<JitSequenceSig>();
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(drive, v0, history, weight, prob, seed, dist, v_rest, v_reset, v_th, R, tau, dt, method,
                   detach_reset, surrogate, params);
  }
  const Model m{v_rest, v_reset, v_th, R, tau, dt, std::string(method), detach_reset, std::string(surrogate),
                params.vec()};
  auto out = LifJitRecurrentFunction::apply(drive, v0, history, weight, Connectivity{prob, seed, std::string(dist)},
                                            m);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Autograd, m) {
  m.impl("lif_jit_recurrent_sequence", &lif_jit_recurrent_sequence_autograd);
  m.impl("lif_recurrent_sequence", &lif_recurrent_sequence_autograd);
  m.impl("lif_dense_recurrent_sequence", &lif_dense_recurrent_sequence_autograd);
}

}  // namespace brain::ops
