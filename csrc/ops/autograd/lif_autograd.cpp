// Autograd kernel of brain::lif_sequence: the forward saves only v_pre (the membrane before
// each threshold) through brain::_lif_sequence_forward, and the registered op
// brain::_lif_sequence_backward applies the surrogate in its kernel. Without a gradient to
// compute, nothing is saved.
#include <string>
#include <tuple>
#include <vector>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

namespace brain::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using SequenceSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double, double, double,
                                                       double, double, double, c10::string_view, bool,
                                                       c10::string_view, c10::ArrayRef<double>);
using ForwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double,
                                                                  double, double, double, double, double,
                                                                  c10::string_view, bool, c10::string_view,
                                                                  c10::ArrayRef<double>);
using BackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                           double, double, double, double, double, double,
                                                           c10::string_view, bool, c10::string_view,
                                                           c10::ArrayRef<double>);

struct Model {
  double v_rest, v_reset, v_th, R, tau, dt;
  std::string method;
  bool detach_reset;
  std::string surrogate;
  std::vector<double> params;
};

class LifSequenceFunction : public torch::autograd::Function<LifSequenceFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& v0, const Model& m) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::_lif_sequence_forward", "")
                         .typed<ForwardSig>();
    at::Tensor spikes, v_last, v_pre;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(spikes, v_last, v_pre) = op.call(input, v0, m.v_rest, m.v_reset, m.v_th, m.R, m.tau, m.dt, m.method,
                                                m.detach_reset, m.surrogate, m.params);
    }
    // v_pre is returned (and dropped by the caller) so that, saved as an output, it carries
    // this node's history into a backward run with create_graph: the backward op then sees an
    // input that requires grad and marks its result as not differentiable again
    // (first_order_only.cpp) instead of a second derivative that silently misses v_pre's part.
    // Its gradient is never asked for, so grads are not materialised (no zeros of its size).
    ctx->save_for_backward({v_pre});
    ctx->set_materialize_grads(false);
    ctx->saved_data["constants"] = std::vector<double>{m.v_rest, m.v_reset, m.v_th, m.R, m.tau, m.dt};
    ctx->saved_data["method"] = m.method;
    ctx->saved_data["detach_reset"] = m.detach_reset;
    ctx->saved_data["surrogate"] = m.surrogate;
    ctx->saved_data["params"] = m.params;
    return {spikes, v_last, v_pre};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::_lif_sequence_backward", "")
                         .typed<BackwardSig>();
    const at::Tensor v_pre = ctx->get_saved_variables()[0];
    const auto k = ctx->saved_data["constants"].toDoubleVector();
    const auto params = ctx->saved_data["params"].toDoubleVector();
    // Zeros for an output the loss did not use.
    const at::Tensor grad_spikes = grads[0].defined() ? grads[0] : at::zeros_like(v_pre);
    const at::Tensor grad_v_last =
        grads[1].defined() ? grads[1] : at::zeros(v_pre.sizes().slice(1), v_pre.options());
    auto [grad_input, grad_v0] =
        op.call(grad_spikes, grad_v_last, v_pre, k[0], k[1], k[2], k[3], k[4], k[5],
                ctx->saved_data["method"].toStringRef(), ctx->saved_data["detach_reset"].toBool(),
                ctx->saved_data["surrogate"].toStringRef(), params);
    return {ctx->needs_input_grad(0) ? grad_input : at::Tensor(), ctx->needs_input_grad(1) ? grad_v0 : at::Tensor(),
            at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> lif_sequence_autograd(const at::Tensor& input, const at::Tensor& v0, double v_rest,
                                                         double v_reset, double v_th, double R, double tau, double dt,
                                                         c10::string_view method, bool detach_reset,
                                                         c10::string_view surrogate, c10::ArrayRef<double> params) {
  const bool needs_grad = at::GradMode::is_enabled() && (input.requires_grad() || v0.requires_grad());
  if (!needs_grad) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::lif_sequence", "")
                         .typed<SequenceSig>();
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(input, v0, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  }
  const Model m{v_rest, v_reset, v_th, R, tau, dt, std::string(method), detach_reset, std::string(surrogate),
                params.vec()};
  auto out = LifSequenceFunction::apply(input, v0, m);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Autograd, m) { m.impl("lif_sequence", &lif_sequence_autograd); }

}  // namespace brain::ops
