// Internal: helpers shared by the CUDA host glue of every op family (CUDA builds only).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/util/Exception.h>

#include "kernels/csr/csr_cuda.h"

namespace brain::ops::cuda_glue {

// The torch-free kernels' dtype tag for a floating tensor dtype.
inline kernels::csr::cuda::Dtype kernel_dtype(at::ScalarType t) {
  using kernels::csr::cuda::Dtype;
  switch (t) {
    case at::kFloat: return Dtype::kFloat32;
    case at::kDouble: return Dtype::kFloat64;
    case at::kHalf: return Dtype::kFloat16;
    case at::kBFloat16: return Dtype::kBFloat16;
    default: TORCH_CHECK(false, "brain: unsupported dtype ", t);
  }
}

inline int sm_count() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

inline void check_cuda(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.is_cuda(), op, ": expected CUDA tensors, got ", t.device());
}

}  // namespace brain::ops::cuda_glue
