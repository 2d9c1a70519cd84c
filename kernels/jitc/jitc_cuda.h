// Torch-free launch API of the CUDA JIT-connectivity kernels (kernels/jitc/jitc_kernels.cu).
// The host glue (csrc/ops/cuda/jitc_cuda.cpp) fills these structs from tensors. One CUDA
// thread owns one (row, column block) of A (jitc_gen.h section 3), and for matmuls one chunk
// of up to kBatchChunk batch items, so the work per thread is ~32 generated entries whatever
// the shape and prob.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/csr/csr_cuda.h"  // Dtype
#include "kernels/jitc/jitc_gen.h"

namespace brain::kernels::jitc::cuda {

using Dtype = brain::kernels::csr::cuda::Dtype;
constexpr int kBatchChunk = 8;

struct MatmulArgs {
  Spec spec;
  const void* weight = nullptr;  // 1 or 2 parameters, dtype
  Dtype dtype = Dtype::kFloat32;
  const void* x = nullptr;  // [batch, n_in], dtype or bool
  bool x_is_bool = false;
  // [batch, n_out], zeroed by the caller, accumulated with atomics; float32 for the half
  // types, else dtype.
  void* out = nullptr;
  std::int64_t batch = 1;
  bool transpose = false;
  bool event = false;
  // Each output written by one thread, its terms added in the CPU op's order and rounding
  // (jitc_cpu.h's gather and scatter), so the result is reproducible and, for float32 and
  // float64, the CPU's bit for bit. No atomics: the gather gives a thread a whole row, the
  // scatter a column (the 32 lanes of a warp take 32 columns of one generator block and walk
  // it together). Slower, most of all the scatter with many active rows: what
  // torch.use_deterministic_algorithms asks for.
  bool deterministic = false;
  int num_sms = 1;
};
cudaError_t launch_matmul(const MatmulArgs& a, cudaStream_t stream);

struct ParamGradArgs {
  Spec spec;
  const void* weight = nullptr;
  Dtype dtype = Dtype::kFloat32;
  const void* x = nullptr;
  bool x_is_bool = false;
  const void* grad_out = nullptr;  // [batch, n_out], dtype
  double* grad = nullptr;          // [2], zeroed; receives d loss / d (a, b)
  // Deterministic: the blocks write their sums here ([param_grad_blocks(a)][2]) instead of
  // adding them atomically, and one thread adds them in block order. Null: atomics.
  double* block_partials = nullptr;
  std::int64_t batch = 1;
  bool transpose = false;
  int num_sms = 1;
};
// The blocks launch_param_grad launches: the size of block_partials (times 2).
std::int64_t param_grad_blocks(const ParamGradArgs& a);
cudaError_t launch_param_grad(const ParamGradArgs& a, cudaStream_t stream);

struct MaterializeArgs {
  Spec spec;
  const void* weight = nullptr;
  Dtype dtype = Dtype::kFloat32;
  void* out = nullptr;  // [n_rows, n_cols], dtype, zeroed
  int num_sms = 1;
};
cudaError_t launch_materialize(const MaterializeArgs& a, cudaStream_t stream);

// CSR in two passes: counts[row * n_blocks + block] = entries of that (row, block); then,
// given ends = inclusive cumsum of counts, write indices/values of each (row, block) at
// [ends[k] - counts[k], ends[k]).
struct CsrArgs {
  Spec spec;
  const void* weight = nullptr;
  Dtype dtype = Dtype::kFloat32;
  std::int64_t* counts = nullptr;
  const std::int64_t* ends = nullptr;
  std::int64_t* indices = nullptr;
  void* values = nullptr;
  int num_sms = 1;
};
cudaError_t launch_block_counts(const CsrArgs& a, cudaStream_t stream);
cudaError_t launch_fill_csr(const CsrArgs& a, cudaStream_t stream);

// The same two passes for a window of the pattern (no values): counts has one entry per
// (row, window block), row-major; indices are renumbered from window.col_begin.
struct PatternArgs {
  Spec spec;
  Window window;
  std::int64_t* counts = nullptr;
  const std::int64_t* ends = nullptr;
  std::int64_t* indices = nullptr;
  int num_sms = 1;
};
cudaError_t launch_pattern_counts(const PatternArgs& a, cudaStream_t stream);
cudaError_t launch_fill_pattern(const PatternArgs& a, cudaStream_t stream);

// Sets out[0, numel) to NaN when the weight parameters are invalid (not finite; uniform with
// high < low; normal with std < 0) and leaves it untouched otherwise, deciding on the device:
// one launch, no host sync, nothing written in the usual valid case. Nothing to do for kHomo
// (a non-finite homogeneous weight already propagates). out has the weight's dtype.
struct PoisonArgs {
  const void* weight = nullptr;
  Dtype dtype = Dtype::kFloat32;
  Dist dist = Dist::kHomo;
  void* out = nullptr;
  std::int64_t numel = 0;
  int num_sms = 1;
};
cudaError_t launch_poison_if_invalid(const PoisonArgs& a, cudaStream_t stream);

}  // namespace brain::kernels::jitc::cuda
