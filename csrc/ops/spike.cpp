// Schema and kernel of brain::spike, the surrogate-gradient Heaviside (SPEC section 4) as an
// operator: H(x) = (x > 0) in x's dtype forward, surrogate'(x) * grad backward
// (autograd/spike_autograd.cpp). brain::spike_function (the neuron modules' spikes) calls it,
// so the module path runs under torch.func and forward-mode AD, as the fused ops do; Python
// users get the same 11 surrogates for neurons of their own.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "csrc/ops/lif_common.h"

TORCH_LIBRARY_FRAGMENT(brain, m) {
  m.def("spike(Tensor x, str surrogate=\"sigmoid\", float[] surrogate_params=[]) -> Tensor");
}

namespace brain::ops {
namespace {

// Written with ATen ops for every device (CompositeExplicitAutograd), so fake tensors and
// CUDA graphs need nothing more.
at::Tensor spike(const at::Tensor& x, c10::string_view surrogate, c10::ArrayRef<double> params) {
  const char* op = "brain::spike";
  TORCH_CHECK(x.is_floating_point(), op, ": x must be a floating-point tensor, got ", x.scalar_type());
  detail::checked_surrogate(op, {surrogate.data(), surrogate.size()}, params);
  return (x > 0).to(x.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CompositeExplicitAutograd, m) { m.impl("spike", &spike); }

}  // namespace brain::ops
