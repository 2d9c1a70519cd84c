// CUDA host glue of brain::poisson_spikes: checks, device guard, current stream, launch,
// launch check. The kernel is torch-free (kernels/rng/poisson_kernels.cu).
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "csrc/ops/poisson_common.h"
#include "kernels/rng/poisson_cuda.h"

namespace brain::ops {
namespace {

namespace kr = brain::kernels::rng;

// step_on_device: the step tensor's value, read by the kernel (nullptr: `step`).
at::Tensor draw_cuda(const char* op, const at::Tensor& rates_in, double dt, int64_t seed, int64_t step,
                     const int64_t* step_on_device, int64_t offset) {
  detail::check_poisson_args(op, rates_in, dt, step, offset);
  TORCH_CHECK(rates_in.is_cuda(), op, ": expected a CUDA tensor, got ", rates_in.device());
  const c10::cuda::CUDAGuard guard(rates_in.device());
  // float16/bfloat16 rates convert exactly to float32, which draws the same spikes.
  const at::Tensor rates =
      (rates_in.scalar_type() == at::kDouble ? rates_in : rates_in.to(at::kFloat)).contiguous();
  at::Tensor spikes = at::empty(rates_in.sizes(), rates_in.options().dtype(at::kBool));
  const int64_t n = rates.size(-1);
  if (n == 0 || rates.numel() == 0) return spikes;
  kr::cuda::PoissonArgs a;
  a.key = kr::poisson_key(static_cast<uint64_t>(seed));
  a.step = static_cast<uint64_t>(step);
  a.step_on_device = step_on_device;
  a.scale = dt / 1000.0;
  a.is_double = rates.scalar_type() == at::kDouble;
  a.rates = rates.const_data_ptr();
  a.spikes = spikes.mutable_data_ptr<bool>();
  a.batch = rates.numel() / n;
  a.neurons = n;
  a.offset = offset;
  C10_CUDA_CHECK(kr::cuda::launch_poisson(a, at::cuda::getCurrentCUDAStream()));
  return spikes;
}

at::Tensor poisson_spikes_cuda(const at::Tensor& rates, double dt, int64_t seed, int64_t step, int64_t offset) {
  return draw_cuda("brain::poisson_spikes", rates, dt, seed, step, nullptr, offset);
}

at::Tensor poisson_spikes_at_cuda(const at::Tensor& rates, double dt, int64_t seed, const at::Tensor& step,
                                  int64_t offset) {
  const char* op = "brain::poisson_spikes_at";
  detail::check_poisson_step_tensor(op, rates, step);
  if (step.device().is_cpu()) return draw_cuda(op, rates, dt, seed, step.reshape({}).item<int64_t>(), nullptr, offset);
  // A view of `step` (one element is always contiguous), so a captured graph reads the
  // caller's tensor at every replay.
  const at::Tensor step_value = step.reshape({}).contiguous();
  return draw_cuda(op, rates, dt, seed, 0, step_value.const_data_ptr<int64_t>(), offset);
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CUDA, m) {
  m.impl("poisson_spikes", &poisson_spikes_cuda);
  m.impl("poisson_spikes_at", &poisson_spikes_at_cuda);
}

}  // namespace brain::ops
