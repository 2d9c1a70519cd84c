// Torch-free launch API of the CUDA fused LIF kernels (kernels/lif/lif_kernels.cu); the host
// glue in csrc/ops/cuda/lif_cuda.cpp fills these from tensors. Math: kernels/lif/lif_seq.h.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/lif/lif_seq.h"

namespace brain::kernels::lif::cuda {

// Contiguous [T, M] / [M] buffers, float32 (is_double = false) or float64.
struct ForwardArgs {
  LifConstants constants;
  bool is_double = false;
  const void* input = nullptr;  // [T, M]
  const void* v0 = nullptr;     // [M]
  void* spikes = nullptr;       // [T, M]
  void* v_last = nullptr;       // [M]
  void* v_pre = nullptr;        // [T, M] or null (nothing saved)
  std::int64_t steps = 0, neurons = 0;
};

struct BackwardArgs {
  LifConstants constants;
  bool is_double = false;
  const void* grad_spikes = nullptr;  // [T, M]
  const void* grad_v_last = nullptr;  // [M]
  const void* v_pre = nullptr;        // [T, M]
  void* grad_input = nullptr;         // [T, M]
  void* grad_v0 = nullptr;            // [M]
  std::int64_t steps = 0, neurons = 0;
};

cudaError_t launch_forward(const ForwardArgs& args, cudaStream_t stream);
cudaError_t launch_backward(const BackwardArgs& args, cudaStream_t stream);

}  // namespace brain::kernels::lif::cuda
