// CPU kernel of brain::poisson_spikes: at::parallel_for over (batch item, block of neurons)
// around the torch-free draw in kernels/rng/poisson_draw.h. Any split gives the same bits:
// every draw depends only on (seed, step, batch item, global index).
#include <algorithm>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "csrc/ops/poisson_common.h"
#include "kernels/rng/poisson_draw.h"

namespace brain::ops {
namespace {

namespace kr = brain::kernels::rng;

// Neurons per task: a Philox call (two neurons) took about 9 ns here, so 4096 draws
// outweigh a task's scheduling.
constexpr int64_t kBlock = 4096;

at::Tensor draw_cpu(const char* op, const at::Tensor& rates_in, double dt, int64_t seed, int64_t step, int64_t offset) {
  detail::check_poisson_args(op, rates_in, dt, step, offset);
  TORCH_CHECK(rates_in.device().is_cpu(), op, ": expected a CPU tensor, got ", rates_in.device());
  // float16/bfloat16 rates convert exactly to float32, which draws the same spikes.
  const at::Tensor rates =
      (rates_in.scalar_type() == at::kDouble ? rates_in : rates_in.to(at::kFloat)).contiguous();
  at::Tensor spikes = at::empty(rates_in.sizes(), rates_in.options().dtype(at::kBool));
  const int64_t n = rates.size(-1);
  if (n == 0 || rates.numel() == 0) return spikes;
  const int64_t batch = rates.numel() / n;
  const int64_t blocks_per_row = (n + kBlock - 1) / kBlock;
  const kr::PoissonKey key = kr::poisson_key(static_cast<uint64_t>(seed));
  const double scale = dt / 1000.0;
  bool* out = spikes.mutable_data_ptr<bool>();
  auto run = [&](auto* r) {
    at::parallel_for(0, batch * blocks_per_row, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / blocks_per_row;
        const int64_t j0 = (task - b * blocks_per_row) * kBlock;
        const int64_t len = std::min(kBlock, n - j0);
        kr::draw_row(key, static_cast<uint64_t>(step), static_cast<uint32_t>(b), offset + j0, len, scale,
                     r + b * n + j0, out + b * n + j0);
      }
    });
  };
  if (rates.scalar_type() == at::kDouble) run(rates.const_data_ptr<double>());
  else run(rates.const_data_ptr<float>());
  return spikes;
}

at::Tensor poisson_spikes_cpu(const at::Tensor& rates, double dt, int64_t seed, int64_t step, int64_t offset) {
  return draw_cpu("brain::poisson_spikes", rates, dt, seed, step, offset);
}

at::Tensor poisson_spikes_at_cpu(const at::Tensor& rates, double dt, int64_t seed, const at::Tensor& step,
                                 int64_t offset) {
  const char* op = "brain::poisson_spikes_at";
  detail::check_poisson_step_tensor(op, rates, step);
  return draw_cpu(op, rates, dt, seed, step.reshape({}).item<int64_t>(), offset);  // host memory: no sync
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CPU, m) {
  m.impl("poisson_spikes", &poisson_spikes_cpu);
  m.impl("poisson_spikes_at", &poisson_spikes_at_cpu);
}

}  // namespace brain::ops
