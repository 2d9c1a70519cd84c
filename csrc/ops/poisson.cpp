// Schema, shared checks and C++ API of brain::poisson_spikes, the counter-based Poisson draw
// (kernels/rng/poisson_draw.h). Kernels: csrc/ops/{cpu,cuda,meta}/poisson_*.cpp.
#include <brain/ops.h>

#include <cmath>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "csrc/ops/poisson_common.h"
#include "kernels/rng/poisson_draw.h"

TORCH_LIBRARY_FRAGMENT(brain, m) {
  // No autograd formula: the output is bool, a draw has no derivative in the rates.
  m.def("poisson_spikes(Tensor rates, float dt, int seed, int step, int offset=0) -> Tensor");
  // The step read from a one-element int64 tensor (on rates' device, or the CPU) when the
  // kernel runs, so a CUDA graph that captured the draw replays it at a fresh step.
  m.def("poisson_spikes_at(Tensor rates, float dt, int seed, Tensor step, int offset=0) -> Tensor");
}

namespace brain::ops {

namespace detail {

void check_poisson_args(const char* op, const at::Tensor& rates, double dt, int64_t step, int64_t offset) {
  TORCH_CHECK(rates.defined(), op, ": rates is required");
  TORCH_CHECK(rates.dim() >= 1, op, ": rates must be [..., n] (the last dimension indexes neurons), got a 0-d "
              "tensor; expand a common rate to [n] first");
  TORCH_CHECK(at::isFloatingType(rates.scalar_type()), op, ": rates must be a floating tensor (Hz), got ",
              rates.scalar_type());
  TORCH_CHECK(std::isfinite(dt) && dt > 0, op, ": dt must be > 0 (ms), got ", dt);
  TORCH_CHECK(step >= 0, op, ": step must be >= 0, got ", step);
  TORCH_CHECK(offset >= 0, op, ": offset (the global index of the first neuron) must be >= 0, got ", offset);
  const c10::SymInt n = rates.sym_size(-1);
  TORCH_CHECK(n + offset <= kernels::rng::kMaxNeuronIndex, op, ": offset + n must be <= 2^32 (the counter's "
              "neuron word), got offset ", offset, " and n ", n);
  if (n != 0) {
    TORCH_CHECK(rates.sym_numel() / n <= kernels::rng::kMaxBatch, op, ": at most 2^32 batch items, got ",
                rates.sym_numel() / n);
  }
}

void check_poisson_step_tensor(const char* op, const at::Tensor& rates, const at::Tensor& step) {
  TORCH_CHECK(step.defined(), op, ": step is required");
  TORCH_CHECK(step.scalar_type() == at::kLong, op, ": step must be an int64 tensor, got ", step.scalar_type());
  TORCH_CHECK(step.sym_numel() == 1, op, ": step must hold one value (the step index), got shape ", step.sym_sizes());
  TORCH_CHECK(step.device() == rates.device() || step.device().is_cpu(), op, ": step must be on rates' device (",
              rates.device(), ") or the CPU, got ", step.device());
}

}  // namespace detail

at::Tensor poisson_spikes(const at::Tensor& rates_hz, double dt, uint64_t seed, int64_t step, int64_t offset) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::poisson_spikes", "")
                       .typed<at::Tensor(const at::Tensor&, double, int64_t, int64_t, int64_t)>();
  return op.call(rates_hz, dt, static_cast<int64_t>(seed), step, offset);
}

at::Tensor poisson_spikes_at(const at::Tensor& rates_hz, double dt, uint64_t seed, const at::Tensor& step,
                             int64_t offset) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::poisson_spikes_at", "")
                       .typed<at::Tensor(const at::Tensor&, double, int64_t, const at::Tensor&, int64_t)>();
  return op.call(rates_hz, dt, static_cast<int64_t>(seed), step, offset);
}

}  // namespace brain::ops
