// Autograd kernel of brain::lif_sequence: the forward saves only v_pre (the membrane before
// each threshold) through brain::_lif_sequence_forward, and the registered op
// brain::_lif_sequence_backward applies the surrogate in its kernel. Without a gradient to
// compute, nothing is saved. The node is recorded as torch records its own operators'
// (op_node.h), so torch.func's reverse-mode transforms run through it; forward mode computes
// the tangents from v_pre (lif_tangent.h), and second derivatives go through lif_adjoint.h.
#include <string>
#include <tuple>
#include <vector>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include "csrc/ops/autograd/lif_adjoint.h"
#include "csrc/ops/autograd/lif_model.h"
#include "csrc/ops/autograd/lif_tangent.h"
#include "csrc/ops/autograd/op_node.h"

namespace brain::ops {
namespace {

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

c10::TypedOperatorHandle<ForwardSig>& forward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_lif_sequence_forward", "")
                       .typed<ForwardSig>();
  return op;
}

// saved: v_pre; constants: the LifModel's. Differentiable inputs: input, v0. v_pre's own
// gradient (grads[2]) comes only from differentiating a gradient or a tangent again (they read
// v_pre with this node's history); that, and a gradient that will be differentiated again,
// go through the recursion written with ops (lif_adjoint.h), the rest through the fused op.
variable_list lif_sequence_grads(const variable_list& saved, const std::vector<c10::IValue>& c,
                                 const variable_list& grads, const std::vector<bool>&) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_lif_sequence_backward", "")
                       .typed<BackwardSig>();
  const LifModel m(c);
  const at::Tensor& v_pre = saved[0];
  if (grads[2].defined() || gradient_is_differentiated({v_pre, grads[0], grads[1]})) {
    const LifAdjoint g = lif_adjoint(m, v_pre, grads[0], grads[1], grads[2]);
    return {g.current, g.v0};
  }
  // Zeros for an output the loss did not use.
  const at::Tensor grad_spikes = grads[0].defined() ? grads[0] : at::zeros_like(v_pre);
  const at::Tensor grad_v_last = grads[1].defined() ? grads[1] : at::zeros(v_pre.sizes().slice(1), v_pre.options());
  auto [grad_input, grad_v0] = op.call(grad_spikes, grad_v_last, v_pre, m.v_rest, m.v_reset, m.v_th, m.R, m.tau, m.dt,
                                       m.method, m.detach_reset, m.surrogate, m.params);
  return {grad_input, grad_v0};
}

// The node is recorded by the forward op's kernel, not by lif_sequence's: under torch.func a
// kernel's call below autograd reaches the outer transform levels as the op it called, so
// the op that records must be that one (lif_sequence calls it with autograd when recording).
std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_sequence_forward_autograd(
    const at::Tensor& input, const at::Tensor& v0, double v_rest, double v_reset, double v_th, double R, double tau,
    double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params) {
  at::Tensor spikes, v_last, v_pre;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(spikes, v_last, v_pre) =
        forward_op().call(input, v0, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  }
  const LifModel model(v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  std::shared_ptr<OpNode> node;
  if (records_node({input, v0})) {
    // v_pre is an output of the node (lif_sequence does not return it) so that, saved as one, it
    // carries this node's history into a gradient or tangent computed from it: differentiating
    // those again reaches the inputs through v_pre's gradient (lif_sequence_grads). Only a
    // second derivative asks for it, so grads are not materialised (no zeros of its size).
    node = make_node("LifSequenceBackward", {input, v0}, &lif_sequence_grads, model.constants(),
                     /*materialize=*/false);
    for (const at::Tensor* out : {&spikes, &v_last, &v_pre}) attach(node, *out);
  }
  // After the node: the tangents read v_pre with its history, so that differentiating them
  // again reaches the membrane's part.
  if (has_tangent({input, v0})) {
    const at::Tensor input_tangent = input._fw_grad(0);
    // unbind, not select per step (lif_tangent.cpp says why).
    const std::vector<at::Tensor> input_tangents =
        input_tangent.defined() ? input_tangent.unbind(0) : std::vector<at::Tensor>();
    set_tangents(lif_tangents(model, v_pre, v0._fw_grad(0),
                              [&](int64_t t, const std::vector<at::Tensor>&) {
                                return input_tangents.empty() ? at::Tensor() : input_tangents[static_cast<size_t>(t)];
                              }),
                 spikes, v_last, v_pre);
  }
  // Saved after its tangent is set, so that it keeps it: a forward-over-reverse derivative
  // (gradgradcheck's check_fwd_over_rev) reads it in the backward.
  if (node) node->save(v_pre, /*is_output=*/true);
  return {spikes, v_last, v_pre};
}

std::tuple<at::Tensor, at::Tensor> lif_sequence_autograd(const at::Tensor& input, const at::Tensor& v0, double v_rest,
                                                         double v_reset, double v_th, double R, double tau, double dt,
                                                         c10::string_view method, bool detach_reset,
                                                         c10::string_view surrogate, c10::ArrayRef<double> params) {
  if (!records_node({input, v0}) && !has_tangent({input, v0})) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::lif_sequence", "")
                         .typed<SequenceSig>();
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(input, v0, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  }
  auto [spikes, v_last, v_pre] =
      forward_op().call(input, v0, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  return {spikes, v_last};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Autograd, m) {
  m.impl("lif_sequence", &lif_sequence_autograd);
  m.impl("_lif_sequence_forward", &lif_sequence_forward_autograd);
}

}  // namespace brain::ops
