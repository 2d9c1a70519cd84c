// Autograd kernel of brain::spike: the node's backward is grad * surrogate'(x) written with
// torch ops (brain::surrogate_grad), so a double backward differentiates the surrogate
// derivative itself, as the module path always has; forward mode's tangent is the same
// derivative times x's tangent. Recorded as torch records its own operators' (op_node.h), so
// the torch.func transforms run through it.
#include <string>
#include <vector>

#include <ATen/TensorOperators.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <brain/models/surrogate.h>

#include "csrc/ops/autograd/op_node.h"
#include "csrc/ops/lif_common.h"

namespace brain::ops {
namespace {

using torch::autograd::variable_list;
using SpikeSig = at::Tensor(const at::Tensor&, c10::string_view, c10::ArrayRef<double>);

Surrogate surrogate_of(c10::string_view name, c10::ArrayRef<double> params) {
  return detail::checked_surrogate("brain::spike", {name.data(), name.size()}, params);
}

// saved: x; constants: the surrogate's name and parameters.
variable_list spike_grads(const variable_list& saved, const std::vector<c10::IValue>& c, const variable_list& grads,
                          const std::vector<bool>&) {
  const std::vector<double> params = c[1].toDoubleVector();
  return {grads[0] * surrogate_grad(saved[0], surrogate_of(c[0].toStringRef(), params))};
}

at::Tensor spike_autograd(const at::Tensor& x, c10::string_view surrogate, c10::ArrayRef<double> params) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("brain::spike", "").typed<SpikeSig>();
  std::shared_ptr<OpNode> node;
  if (records_node({x})) {
    node = make_node("SpikeBackward", {x}, &spike_grads, {std::string(surrogate), params.vec()});
    node->save(x);
  }
  at::Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = op.call(x, surrogate, params);
  }
  if (node) attach(node, out);
  const at::Tensor x_tangent = x._fw_grad(0);
  if (x_tangent.defined()) {
    out._set_fw_grad(x_tangent * surrogate_grad(x._fw_primal(0), surrogate_of(surrogate, params)), 0, false);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Autograd, m) { m.impl("spike", &spike_autograd); }

}  // namespace brain::ops
