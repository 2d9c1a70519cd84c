// Autograd kernels of the surrogate-gradient backward ops (brain::_lif_*_backward). The LIF
// ops' nodes call them only for a gradient that is not differentiated again; one that is goes
// through the same recursion written with ops (lif_adjoint.h), which has the second
// derivatives. These kernels keep the ops themselves first-order and say so: when grad mode is
// on and an input requires grad, the outputs get a node that raises a clear error if anything
// differentiates through them (a direct call, or the one torch.func case
// gradient_is_differentiated cannot see), and a tangent on an input is refused by name (torch
// would give the outputs none). A plain backward (create_graph=False) records nothing.
#include <string>
#include <vector>

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include "csrc/ops/autograd/op_node.h"

namespace brain::ops {
namespace {

// "brain::_lif_sequence_backward" -> "brain::lif_sequence"
std::string forward_name(const c10::OperatorName& backward) {
  std::string name = backward.name;
  const std::string ns = "brain::_", suffix = "_backward";
  if (name.rfind(ns, 0) == 0) name = "brain::" + name.substr(ns.size());
  if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
    name.resize(name.size() - suffix.size());
  }
  return name;
}

// Runs the op below autograd. When grad mode is on and an input requires grad, its outputs get
// a node that raises `message` if anything differentiates through them; a tangent on an input
// is refused with `forward_refusal`.
void run_first_order(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack,
                     const std::string& message, const std::string& forward_refusal) {
  const auto& schema = op.schema();
  std::vector<at::Tensor> differentiable;
  for (const c10::IValue& v : torch::jit::last(*stack, schema.arguments().size())) {
    if (!v.isTensor() || !v.toTensor().defined()) continue;
    TORCH_CHECK_NOT_IMPLEMENTED(!torch::autograd::isFwGradDefined(v.toTensor()), forward_refusal);
    if (at::GradMode::is_enabled() && v.toTensor().requires_grad()) differentiable.push_back(v.toTensor());
  }
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.redispatchBoxed(keys & c10::after_autograd_keyset, stack);
  }
  if (differentiable.empty()) return;
  auto node = std::shared_ptr<torch::autograd::Error>(
      new torch::autograd::Error(message, torch::autograd::collect_next_edges(at::ArrayRef<at::Tensor>(differentiable))),
      torch::autograd::deleteNode);
  for (const c10::IValue& v : torch::jit::last(*stack, schema.returns().size())) {
    if (!v.isTensor()) continue;
    const at::Tensor out = v.toTensor();
    if (out.defined() && torch::autograd::isDifferentiableType(out.scalar_type())) {
      torch::autograd::set_history(out, node);
    }
  }
}

void first_order_only(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  const c10::OperatorName& name = op.schema().operator_name();
  const std::string why =
      ": this fused backward op is first-order. " + forward_name(name) +
      " itself differentiates its gradient again (create_graph=True, grad of grad, hessian) through its "
      "gradient written with ops; this op is reached by calling it directly, or by a "
      "torch.autograd.grad(create_graph=True) written inside a single torch.func.grad level and differentiated "
      "by it (use torch.func.grad of torch.func.grad there).";
  run_first_order(op, keys, stack,
                  name.name + ": the gradient of " + forward_name(name) + " cannot be differentiated again" + why,
                  name.name + ": the gradient of " + forward_name(name) + " has no forward-mode derivative" + why);
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Autograd, m) {
  for (const char* name : {"_lif_sequence_backward", "_lif_recurrent_sequence_backward",
                           "_lif_dense_recurrent_sequence_backward", "_lif_jit_recurrent_sequence_backward"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&first_order_only>());
  }
}

}  // namespace brain::ops
