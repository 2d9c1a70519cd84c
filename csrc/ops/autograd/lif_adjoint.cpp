#include "csrc/ops/autograd/lif_adjoint.h"

#include <optional>
#include <tuple>

#include <ATen/TensorOperators.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/functorch/DynamicLayer.h>
#include <ATen/functorch/TensorWrapper.h>
#include <ATen/ops/addcmul.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/functions/utils.h>

namespace brain::ops {

using CoefficientsSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, double, bool, c10::string_view,
                                                           c10::ArrayRef<double>);

LifAdjoint lif_adjoint(const LifModel& m, const at::Tensor& v_pre, const at::Tensor& grad_spikes,
                       const at::Tensor& grad_v_last, const at::Tensor& grad_v_pre,
                       const RecurrentSpikeGrad& recurrent) {
  static auto coefficients_op = c10::Dispatcher::singleton()
                                    .findSchemaOrThrow("brain::_lif_tangent_coefficients", "")
                                    .typed<CoefficientsSig>();
  const int64_t steps = v_pre.size(0);
  at::Tensor lambda_u = grad_v_last.defined() ? grad_v_last : at::zeros(v_pre.sizes().slice(1), v_pre.options());
  if (steps == 0) return {at::zeros_like(v_pre), lambda_u};
  auto [ds_dv, du_dv] = coefficients_op.call(v_pre, m.v_reset, m.v_th, m.detach_reset, m.surrogate, m.params);
  // The sources of every step that do not depend on later steps, at once.
  at::Tensor direct = grad_spikes.defined() ? grad_spikes * ds_dv : at::Tensor();
  if (grad_v_pre.defined()) direct = direct.defined() ? direct + grad_v_pre : grad_v_pre;
  if (!direct.defined()) direct = at::zeros_like(v_pre);
  const double dv_du = m.dv_du(), dv_dI = m.dv_dI();

  // unbind, not select per step: differentiated again, T selects would each materialise a
  // zero [T, ...] gradient, O(T^2) work; unbind's backward is one stack.
  const std::vector<at::Tensor> direct_t = direct.unbind(0), du_dv_t = du_dv.unbind(0), ds_dv_t = ds_dv.unbind(0);
  std::vector<at::Tensor> current(static_cast<size_t>(steps));
  for (int64_t t = steps - 1; t >= 0; --t) {
    const size_t i = static_cast<size_t>(t);
    at::Tensor lambda_v = at::addcmul(direct_t[i], lambda_u, du_dv_t[i]);
    if (recurrent) {
      const at::Tensor g_rec = recurrent(t, current);
      if (g_rec.defined()) lambda_v = at::addcmul(lambda_v, g_rec, ds_dv_t[i]);
    }
    current[i] = lambda_v * dv_dI;
    lambda_u = lambda_v * dv_du;
  }
  return {at::stack(current), lambda_u};
}

bool gradient_is_differentiated(const torch::autograd::variable_list& tensors) {
  bool requires_grad = false, wrapped = false;
  std::optional<int64_t> own_level;
  for (const at::Tensor& t : tensors) {
    if (!t.defined()) continue;
    if (torch::autograd::isFwGradDefined(t)) return true;
    requires_grad |= t.requires_grad();
    if (const auto* wrapper = at::functorch::maybeGetTensorWrapper(t)) {
      wrapped = true;
      if (wrapper->is_alive()) own_level = wrapper->level();
    }
  }
  // Plain autograd: the caller asked for create_graph.
  if (!wrapped) return at::GradMode::is_enabled() && requires_grad;
  // torch.func: grad, vjp and jacrev run their backward with create_graph=True always, and what
  // records at their own level (alive for grad, exited for a vjp_fn) is dropped. The gradient
  // is differentiated again only by another transform level that differentiates (grad or jvp:
  // grad of grad, hessian, jacrev of jacrev); an outer vmap, as in per-sample gradients, does
  // not. The one case this misses, a torch.autograd.grad(create_graph=True) written inside a
  // single torch.func.grad and then differentiated by it, reaches the fused backward op's
  // refusal (first_order_only.cpp): an error, never a wrong derivative.
  for (const auto& layer : at::functorch::getDynamicLayerStack()) {
    const auto key = layer.key();
    if ((key == at::functorch::TransformType::Grad || key == at::functorch::TransformType::Jvp) &&
        layer.layerId() != own_level) {
      return true;
    }
  }
  return false;
}

}  // namespace brain::ops
