// The CUDA driver of brain::lif_recurrent_sequence (see kernels/lif/lif_recurrent_cuda.h). Per
// forward step: the drive is copied into a current buffer, the delayed spikes are scattered
// into it (event form, atomics), and one LIF step runs; per backward step, one LIF backward
// step and one gather A gI. The weight gradient is one pass over the whole window at the end.
// Under deterministic mode the forward gathers over A^T's rows and adds the drive instead.
#include "kernels/lif/lif_recurrent_cuda.h"

#include <algorithm>

#include "kernels/lif/lif_cuda.h"

namespace brain::kernels::lif::cuda {
namespace {

namespace kc = brain::kernels::csr::cuda;

constexpr int kThreads = 256;

// out = a + b elementwise (a + b, in this order, as at::add rounds it).
template <typename T>
__global__ void add_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[i] = a[i] + b[i];
  }
}

unsigned blocks_for(std::int64_t n) {
  const std::int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::min<std::int64_t>(std::max<std::int64_t>(b, 1), 65535 * 32));
}

cudaError_t launch_add(bool is_double, const void* a, const void* b, void* out, std::int64_t n, cudaStream_t stream) {
  if (is_double) {
    add_kernel<double><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const double*>(a),
                                                              static_cast<const double*>(b),
                                                              static_cast<double*>(out), n);
  } else {
    add_kernel<float><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const float*>(a),
                                                             static_cast<const float*>(b), static_cast<float*>(out),
                                                             n);
  }
  return cudaGetLastError();
}

// Element `index` of `stride`-element steps of a buffer of doubles or floats.
const void* at_step(const void* base, bool is_double, std::int64_t index, std::int64_t stride) {
  return static_cast<const char*>(base) + index * stride * (is_double ? 8 : 4);
}
void* at_step(void* base, bool is_double, std::int64_t index, std::int64_t stride) {
  return static_cast<char*>(base) + index * stride * (is_double ? 8 : 4);
}

// y = A x (transpose = false, gather) or y += A^T x (transpose = true, scatter) for x, y [B, n].
cudaError_t launch_csr(const RecurrentMatrix& m, bool is_double, const void* x, void* out, std::int64_t n,
                       std::int64_t batch, bool transpose, bool event, int num_sms, cudaStream_t stream) {
  kc::MatmulArgs a;
  a.indptr = m.indptr;
  a.indices = m.indices;
  a.index64 = m.index64;
  a.weights = m.weights;
  a.homo = m.homo;
  a.dtype = is_double ? kc::Dtype::kFloat64 : kc::Dtype::kFloat32;
  a.x = x;
  a.out = out;
  a.n_rows = n;
  a.n_cols = n;
  a.batch = batch;
  a.nnz = m.nnz;
  a.transpose = transpose;
  a.event = event;
  a.num_sms = num_sms;
  return kc::launch_matmul(a, stream);
}

#define BRAIN_RETURN_IF_ERROR(call)     \
  do {                                  \
    const cudaError_t e_ = (call);      \
    if (e_ != cudaSuccess) return e_;   \
  } while (false)

}  // namespace

cudaError_t launch_recurrent_forward(const RecurrentForwardArgs& a, cudaStream_t stream) {
  const std::int64_t stride = a.batch * a.n;
  if (a.steps == 0 || stride == 0) return cudaSuccess;
  const std::size_t bytes = static_cast<std::size_t>(stride) * (a.is_double ? 8 : 4);
  ForwardArgs f;
  f.constants = a.constants;
  f.is_double = a.is_double;
  f.steps = 1;
  f.neurons = stride;
  for (std::int64_t t = 0; t < a.steps; ++t) {
    const void* source = t < a.delay ? at_step(a.history, a.is_double, t, stride)
                                     : at_step(static_cast<const void*>(a.spikes), a.is_double, t - a.delay, stride);
    const void* drive_t = at_step(a.drive, a.is_double, t, stride);
    if (a.deterministic) {
      BRAIN_RETURN_IF_ERROR(
          launch_csr(a.a_t, a.is_double, source, a.rec, a.n, a.batch, /*transpose=*/false, /*event=*/true, a.num_sms, stream));
      BRAIN_RETURN_IF_ERROR(launch_add(a.is_double, drive_t, a.rec, a.current, stride, stream));
    } else {
      BRAIN_RETURN_IF_ERROR(cudaMemcpyAsync(a.current, drive_t, bytes, cudaMemcpyDeviceToDevice, stream));
      BRAIN_RETURN_IF_ERROR(
          launch_csr(a.a, a.is_double, source, a.current, a.n, a.batch, /*transpose=*/true, /*event=*/true, a.num_sms, stream));
    }
    f.input = a.current;
    f.v0 = a.u[t % 2];
    f.spikes = at_step(a.spikes, a.is_double, t, stride);
    f.v_last = a.u[(t + 1) % 2];
    f.v_pre = a.v_pre != nullptr ? at_step(a.v_pre, a.is_double, t, stride) : nullptr;
    BRAIN_RETURN_IF_ERROR(launch_forward(f, stream));
  }
  return cudaSuccess;
}

cudaError_t launch_recurrent_backward(const RecurrentBackwardArgs& a, cudaStream_t stream) {
  const std::int64_t stride = a.batch * a.n;
  if (a.steps == 0 || stride == 0) return cudaSuccess;
  BackwardArgs b;
  b.constants = a.constants;
  b.is_double = a.is_double;
  b.steps = 1;
  b.neurons = stride;
  for (std::int64_t i = 0, t = a.steps - 1; t >= 0; ++i, --t) {
    if (t + a.delay < a.steps) {
      // Step t's spikes also reached step t + d's current through A: that gradient waits in
      // slot (t + d) % d = t % d.
      BRAIN_RETURN_IF_ERROR(launch_add(a.is_double, at_step(a.grad_spikes, a.is_double, t, stride),
                                       at_step(static_cast<const void*>(a.pending), a.is_double, t % a.delay, stride),
                                       a.grad_spikes_sum, stride, stream));
      b.grad_spikes = a.grad_spikes_sum;
    } else {
      b.grad_spikes = at_step(a.grad_spikes, a.is_double, t, stride);
    }
    b.grad_v_last = a.gu[i % 2];
    b.v_pre = at_step(a.v_pre, a.is_double, t, stride);
    b.grad_input = at_step(a.grad_drive, a.is_double, t, stride);
    b.grad_v0 = a.gu[(i + 1) % 2];
    BRAIN_RETURN_IF_ERROR(launch_backward(b, stream));
    // The spikes of step t - d receive A gI_t. Slot t % d was read above (stream order) before
    // this gather overwrites it; the gather writes every element, so no slot needs zeroing.
    void* target = t < a.delay ? at_step(a.grad_history, a.is_double, t, stride)
                               : at_step(a.pending, a.is_double, t % a.delay, stride);
    BRAIN_RETURN_IF_ERROR(launch_csr(a.a, a.is_double, at_step(static_cast<const void*>(a.grad_drive), a.is_double, t, stride),
                                     target, a.n, a.batch, /*transpose=*/false, /*event=*/false, a.num_sms, stream));
  }
  if (a.grad_weights == nullptr) return cudaSuccess;
  // dW[k] = sum over steps and items of S_{t-d}[b, i] gI_t[b, j]: the window as one batch of
  // (step, item) pairs, the history's part and the spikes' part.
  auto accumulate = [&](const void* x, const void* g, std::int64_t items) -> cudaError_t {
    if (items == 0) return cudaSuccess;
    kc::WeightGradArgs w;
    w.indptr = a.a.indptr;
    w.indices = a.a.indices;
    w.index64 = a.a.index64;
    w.dtype = a.is_double ? kc::Dtype::kFloat64 : kc::Dtype::kFloat32;
    w.x = x;
    w.grad_out = g;
    w.grad_weights = a.grad_weights;
    w.accumulate = true;
    w.n_rows = a.n;
    w.n_cols = a.n;
    w.batch = items;
    w.nnz = a.a.nnz;
    w.transpose = true;
    w.num_sms = a.num_sms;
    return kc::launch_weight_grad(w, stream);
  };
  BRAIN_RETURN_IF_ERROR(accumulate(a.history, a.grad_drive, std::min(a.delay, a.steps) * a.batch));
  if (a.steps > a.delay) {
    BRAIN_RETURN_IF_ERROR(accumulate(a.spikes, at_step(static_cast<const void*>(a.grad_drive), a.is_double, a.delay, stride),
                                     (a.steps - a.delay) * a.batch));
  }
  return cudaSuccess;
}

}  // namespace brain::kernels::lif::cuda
