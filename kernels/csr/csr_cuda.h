// Torch-free launch API of the CUDA CSR kernels (kernels/csr/*.cu). Host glue in
// csrc/ops/cuda/ fills these structs from tensors; nothing here includes torch, so the .cu
// files compile in seconds. Semantics are those of kernels/csr/csr_cpu.h.
//
// Kernels never read or write out of bounds: an index outside [0, n_cols) or a decreasing
// indptr step skips the entry (users catch such structures once with brain::validate_csr).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace brain::kernels::csr::cuda {

enum class Dtype : std::int8_t { kFloat32, kFloat64, kFloat16, kBFloat16 };

struct MatmulArgs {
  const void* indptr = nullptr;
  const void* indices = nullptr;
  bool index64 = false;  // int64 indices (else int32)
  const void* weights = nullptr;
  bool homo = false;
  Dtype dtype = Dtype::kFloat32;
  const void* x = nullptr;  // [batch, n_in], dtype or bool
  bool x_is_bool = false;
  // Gather (transpose = false) writes every element of out [batch, n_rows], of type dtype.
  // Scatter (transpose = true) adds atomically into out [batch, n_cols], which the caller
  // zeroed; its type is dtype for float32/float64 and float32 for the half types.
  void* out = nullptr;
  std::int64_t n_rows = 0;
  std::int64_t n_cols = 0;
  std::int64_t batch = 1;
  std::int64_t nnz = 0;
  bool transpose = false;
  bool event = false;  // skip zero entries of x (whole rows in the scatter form)
  int num_sms = 1;
};

struct WeightGradArgs {
  const void* indptr = nullptr;
  const void* indices = nullptr;
  bool index64 = false;
  Dtype dtype = Dtype::kFloat32;
  const void* x = nullptr;  // forward input, dtype or bool
  bool x_is_bool = false;
  const void* grad_out = nullptr;  // dtype
  void* grad_weights = nullptr;    // [nnz], dtype
  bool accumulate = false;         // add into grad_weights instead of overwriting it
  std::int64_t n_rows = 0;
  std::int64_t n_cols = 0;
  std::int64_t batch = 1;
  std::int64_t nnz = 0;
  bool transpose = false;
  int num_sms = 1;
};

// Plasticity: for each owner o (a row, or a column through the CSC view) whose spike is
// non-zero, each entry e in [ptr[o], ptr[o+1]) does
//   w[t] = clamp(w[t] + scale * spike[o] * trace[source[e]]),  t = target ? target[e] : e.
struct OwnerUpdateArgs {
  const void* ptr = nullptr;
  const void* source = nullptr;
  const void* target = nullptr;  // null: identity
  bool index64 = false;
  Dtype dtype = Dtype::kFloat32;
  void* weights = nullptr;
  const void* spikes = nullptr;
  bool spikes_is_bool = false;
  const void* trace = nullptr;
  std::int64_t n_owners = 0;
  std::int64_t n_trace = 0;
  std::int64_t nnz = 0;
  double scale = 0;
  bool has_min = false;
  bool has_max = false;
  double w_min = 0;
  double w_max = 0;
  int num_sms = 1;
};

cudaError_t launch_matmul(const MatmulArgs& args, cudaStream_t stream);
cudaError_t launch_weight_grad(const WeightGradArgs& args, cudaStream_t stream);
cudaError_t launch_owner_update(const OwnerUpdateArgs& args, cudaStream_t stream);

}  // namespace brain::kernels::csr::cuda
