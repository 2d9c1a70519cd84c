// Autograd and ADInplaceOrView kernels of the in-place plasticity updates
// (brain::csr_update_on_pre_, brain::csr_update_on_post_), as torch's own in-place ops behave:
//  - the weights' version counter is bumped, so a backward that saved the weights before an
//    update (a csr_matmul earlier in the step) raises "modified by an inplace operation"
//    instead of silently using the updated values;
//  - an update of tensors that require grad, with grad mode on, is refused: the rule is not
//    differentiable (the STDP projections apply it under no_grad).
#include <vector>

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

namespace brain::ops {
namespace {

void refuse_differentiable_update(const c10::OperatorHandle& op, c10::DispatchKeySet keys,
                                  torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  if (at::GradMode::is_enabled()) {
    const auto inputs = torch::jit::last(*stack, schema.arguments().size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!inputs[i].isTensor()) continue;
      const at::Tensor& t = inputs[i].toTensor();
      TORCH_CHECK(!t.defined() || !t.requires_grad(), schema.operator_name().name, ": ",
                  schema.arguments()[i].name(),
                  " requires grad; a plasticity update is a rule applied in place, not a differentiable "
                  "op: call it under torch.no_grad() (as the STDP projections do) or on tensors that "
                  "do not require grad");
    }
  }
  op.redispatchBoxed(keys & c10::after_autograd_keyset, stack);
}

void bump_written_versions(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  std::vector<at::Tensor> written;
  const auto inputs = torch::jit::last(*stack, args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    const auto* alias = args[i].alias_info();
    if (alias != nullptr && alias->isWrite() && inputs[i].isTensor()) written.push_back(inputs[i].toTensor());
  }
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
  }
  for (const at::Tensor& t : written) torch::autograd::impl::bump_version(t);
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Autograd, m) {
  m.impl("csr_update_on_pre_", torch::CppFunction::makeFromBoxedFunction<&refuse_differentiable_update>());
  m.impl("csr_update_on_post_", torch::CppFunction::makeFromBoxedFunction<&refuse_differentiable_update>());
}

TORCH_LIBRARY_IMPL(brain, ADInplaceOrView, m) {
  m.impl("csr_update_on_pre_", torch::CppFunction::makeFromBoxedFunction<&bump_written_versions>());
  m.impl("csr_update_on_post_", torch::CppFunction::makeFromBoxedFunction<&bump_written_versions>());
}

}  // namespace brain::ops
