// The gradients of the fused LIF ops written with ops, for a gradient that is itself
// differentiated: a double backward (torch.autograd.grad(..., create_graph=True), then a
// backward through that gradient), grad of grad, hessian (jacfwd of jacrev), grad of a jvp.
// The fused backward ops compute the same numbers in one kernel but are first-order; these
// ops record, at every level, what differentiating them needs: the surrogate's own derivative
// reaches the membrane v_pre through brain::_lif_tangent_coefficients, and v_pre's gradient
// reaches the inputs through the forward's node (which takes v_pre's gradient, grad_v_pre, on
// this path). So the second derivatives are those of the module path (brain::LIF, its spikes
// brain::spike), the same model differentiated twice.
//
// The adjoint of lif_tangent.h's recursion, for t = T-1 .. 0 (u: the membrane after the reset):
//   lambda_v_t = (g_s_t + g_rec_t) ds_dv_t + lambda_u_t du_dv_t + g_vpre_t,
//   g_I_t = dv_dI lambda_v_t,   lambda_u_{t-1} = dv_du lambda_v_t,   lambda_u_{T-1} = g_v_last,
// with g_rec_t the gradient that step t's spikes get through later steps' currents (the
// recurrent forms). One group of elementwise ops per step: on the GPU these launch per step,
// which is what a second derivative of a T-step window costs here.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/variable.h>

#include "csrc/ops/autograd/lif_model.h"

namespace brain::ops {

struct LifAdjoint {
  at::Tensor current;  // [T, ...]: the gradient of each step's input current
  at::Tensor v0;       // [...]
};

// The gradient step t's spikes get through later steps' currents, given the gradients of the
// currents of steps after t (entries at and before t are undefined yet); undefined: none.
using RecurrentSpikeGrad = std::function<at::Tensor(int64_t t, const std::vector<at::Tensor>& current_grads)>;

// grad_spikes, grad_v_last, grad_v_pre may be undefined (zero); recurrent may be empty.
LifAdjoint lif_adjoint(const LifModel& model, const at::Tensor& v_pre, const at::Tensor& grad_spikes,
                       const at::Tensor& grad_v_last, const at::Tensor& grad_v_pre,
                       const RecurrentSpikeGrad& recurrent = {});

// Whether the gradient being computed now will be differentiated again, so that it must be
// computed with ops (lif_adjoint) rather than by a first-order fused backward op: a tensor it
// is computed from carries a tangent, or grad mode is on (create_graph) and one requires grad,
// except where only torch.func's own bookkeeping would record it (see the definition).
bool gradient_is_differentiated(const torch::autograd::variable_list& tensors);

}  // namespace brain::ops
