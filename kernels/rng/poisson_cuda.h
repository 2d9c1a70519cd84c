// Torch-free launch API of the CUDA Poisson draw (kernels/rng/poisson_kernels.cu); the host
// glue in csrc/ops/cuda/poisson_cuda.cpp fills it from tensors. The draw: kernels/rng/poisson_draw.h.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/rng/poisson_draw.h"

namespace brain::kernels::rng::cuda {

struct PoissonArgs {
  PoissonKey key{0, 0};
  std::uint64_t step = 0;
  const std::int64_t* step_on_device = nullptr;  // when set, the step is read here (as uint64)
  double scale = 0.0;          // dt_ms / 1000
  bool is_double = false;      // rates float64 (else float32)
  const void* rates = nullptr;  // [batch, neurons], contiguous
  bool* spikes = nullptr;       // [batch, neurons], contiguous
  std::int64_t batch = 0, neurons = 0, offset = 0;
};

cudaError_t launch_poisson(const PoissonArgs& args, cudaStream_t stream);

}  // namespace brain::kernels::rng::cuda
