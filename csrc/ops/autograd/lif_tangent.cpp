#include "csrc/ops/autograd/lif_tangent.h"

#include <tuple>

#include <ATen/TensorOperators.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/add.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/functions/utils.h>

namespace brain::ops {

using CoefficientsSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, double, bool, c10::string_view,
                                                           c10::ArrayRef<double>);

LifTangents lif_tangents(const LifModel& m, const at::Tensor& v_pre, const at::Tensor& v0_tangent,
                         const CurrentTangent& current) {
  static auto coefficients_op = c10::Dispatcher::singleton()
                                    .findSchemaOrThrow("brain::_lif_tangent_coefficients", "")
                                    .typed<CoefficientsSig>();
  const int64_t steps = v_pre.size(0);
  LifTangents out;
  if (steps == 0) {
    out.spikes = at::zeros_like(v_pre);
    out.v_pre = at::zeros_like(v_pre);
    out.v_last = v0_tangent.defined() ? v0_tangent : at::zeros(v_pre.sizes().slice(1), v_pre.options());
    return out;
  }
  // Called with autograd: an outer level (jacfwd of jacfwd, grad of a jvp) differentiates the
  // coefficients, which are ops (CompositeImplicitAutograd).
  auto [ds_dv, du_dv] = coefficients_op.call(v_pre, m.v_reset, m.v_th, m.detach_reset, m.surrogate, m.params);
  const double dv_du = m.dv_du(), dv_dI = m.dv_dI();

  // unbind, not select per step: a reverse pass through the tangents (grad of a jvp) would
  // materialise a zero [T, ...] gradient per select, O(T^2) work; unbind's backward is one stack.
  const std::vector<at::Tensor> ds_dv_t = ds_dv.unbind(0), du_dv_t = du_dv.unbind(0);
  std::vector<at::Tensor> ds(static_cast<size_t>(steps)), dv(static_cast<size_t>(steps));
  at::Tensor du = v0_tangent;
  for (int64_t t = 0; t < steps; ++t) {
    const at::Tensor di = current(t, ds);
    at::Tensor v;
    if (du.defined()) v = du * dv_du;
    if (di.defined()) v = v.defined() ? at::add(v, di, dv_dI) : di * dv_dI;
    if (!v.defined()) {  // zero so far (the tangents start later in the window)
      du = at::Tensor();
      continue;
    }
    const size_t i = static_cast<size_t>(t);
    dv[i] = v;
    ds[i] = v * ds_dv_t[i];
    du = v * du_dv_t[i];
  }
  for (int64_t t = 0; t < steps; ++t) {
    const size_t i = static_cast<size_t>(t);
    if (!dv[i].defined()) dv[i] = ds[i] = at::zeros_like(v_pre.select(0, t));
  }
  out.spikes = at::stack(ds);
  out.v_pre = at::stack(dv);
  out.v_last = du.defined() ? du : at::zeros(v_pre.sizes().slice(1), v_pre.options());
  return out;
}

bool has_tangent(std::initializer_list<std::reference_wrapper<const at::Tensor>> inputs) {
  for (const at::Tensor& t : inputs) {
    if (t.defined() && torch::autograd::isFwGradDefined(t)) return true;
  }
  return false;
}

void set_tangents(const LifTangents& tangents, const at::Tensor& spikes, const at::Tensor& v_last,
                  const at::Tensor& v_pre) {
  // The outputs are new tensors: is_inplace_op = false.
  spikes._set_fw_grad(tangents.spikes, 0, false);
  v_last._set_fw_grad(tangents.v_last, 0, false);
  if (v_pre.defined()) v_pre._set_fw_grad(tangents.v_pre, 0, false);
}

}  // namespace brain::ops
