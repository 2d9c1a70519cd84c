// Torch-free CUDA driver of brain::lif_recurrent_sequence (kernels/lif/lif_recurrent_kernels.cu):
// the host loop over steps that composes the CSR kernels (kernels/csr) and the LIF kernels
// (kernels/lif/lif_kernels.cu), as kernels/lif/lif_recurrent_cpu.h describes the math. The
// ATen glue (csrc/ops/cuda/lif_recurrent_cuda.cpp) allocates the buffers and fills these
// structs; everything here only launches on `stream` and never reads back to the host, so the
// CUDA emulator of tests/cuda_emu runs the whole window too.
//
// Layouts (contiguous, row-major, of the drive's dtype, float32 or float64): drive, spikes,
// v_pre, grad_spikes, grad_drive [T, B, n]; history, grad_history [d, B, n], history[0] the
// oldest step; per-neuron buffers [B, n].
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/csr/csr_cuda.h"
#include "kernels/lif/lif_seq.h"

namespace brain::kernels::lif::cuda {

// A square CSR matrix [n, n], rows presynaptic (or its column-sorted transpose).
struct RecurrentMatrix {
  const void* indptr = nullptr;
  const void* indices = nullptr;
  bool index64 = false;
  const void* weights = nullptr;  // [nnz], or [1] when homo
  bool homo = false;
  std::int64_t nnz = 0;
};

struct RecurrentForwardArgs {
  LifConstants constants;
  bool is_double = false;
  std::int64_t steps = 0, batch = 1, n = 0, delay = 1;
  const void* drive = nullptr;
  const void* history = nullptr;
  RecurrentMatrix a;
  // Deterministic mode: the input current gathers over A^T's rows (a column-sorted copy of A)
  // into `rec` and adds the drive, instead of scattering with atomics.
  bool deterministic = false;
  RecurrentMatrix a_t;
  void* rec = nullptr;      // [B, n] scratch, deterministic mode only
  void* current = nullptr;  // [B, n] scratch
  void* spikes = nullptr;
  void* v_pre = nullptr;  // or null (nothing saved)
  // The membrane ping-pongs between u[0] and u[1]; u[0] holds v0 on entry and v_last ends in
  // u[steps % 2].
  void* u[2] = {nullptr, nullptr};
  int num_sms = 1;
};
cudaError_t launch_recurrent_forward(const RecurrentForwardArgs& args, cudaStream_t stream);

struct RecurrentBackwardArgs {
  LifConstants constants;
  bool is_double = false;
  std::int64_t steps = 0, batch = 1, n = 0, delay = 1;
  const void* grad_spikes = nullptr;
  const void* v_pre = nullptr;
  const void* spikes = nullptr;   // the forward's output (for the weight gradient)
  const void* history = nullptr;  // (for the weight gradient)
  RecurrentMatrix a;
  void* grad_drive = nullptr;
  void* grad_history = nullptr;  // zeroed by the caller
  // The gradient through A of the spikes of step t - d waits in pending[t % d] until step
  // t - d: min(d, max(T - d, 0)) slots of [B, n].
  void* pending = nullptr;
  void* grad_spikes_sum = nullptr;  // [B, n] scratch
  // gu ping-pongs between gu[0] and gu[1]; gu[0] holds grad_v_last on entry and grad_v0 ends
  // in gu[steps % 2].
  void* gu[2] = {nullptr, nullptr};
  void* grad_weights = nullptr;  // [nnz], zeroed by the caller; null: not wanted
  int num_sms = 1;
};
cudaError_t launch_recurrent_backward(const RecurrentBackwardArgs& args, cudaStream_t stream);

}  // namespace brain::kernels::lif::cuda
