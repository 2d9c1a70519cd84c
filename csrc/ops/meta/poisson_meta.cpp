// Meta kernel of brain::poisson_spikes: the same checks and a bool output of rates' shape, for
// torch.compile (fake tensors) and shape inference.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "csrc/ops/poisson_common.h"

namespace brain::ops {
namespace {

at::Tensor poisson_spikes_meta(const at::Tensor& rates, double dt, int64_t seed, int64_t step, int64_t offset) {
  detail::check_poisson_args("brain::poisson_spikes", rates, dt, step, offset);
  return at::empty_symint(rates.sym_sizes(), rates.options().dtype(at::kBool));
}

at::Tensor poisson_spikes_at_meta(const at::Tensor& rates, double dt, int64_t seed, const at::Tensor& step,
                                  int64_t offset) {
  detail::check_poisson_step_tensor("brain::poisson_spikes_at", rates, step);
  detail::check_poisson_args("brain::poisson_spikes_at", rates, dt, 0, offset);
  return at::empty_symint(rates.sym_sizes(), rates.options().dtype(at::kBool));
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Meta, m) {
  m.impl("poisson_spikes", &poisson_spikes_meta);
  m.impl("poisson_spikes_at", &poisson_spikes_at_meta);
}

}  // namespace brain::ops
