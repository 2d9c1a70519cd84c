// CUDA kernels of brain::lif_sequence: one thread per neuron walks the T steps, so each step's
// loads and stores are coalesced across the warp. Math shared with the CPU loops
// (kernels/lif/lif_seq.h).
#include "kernels/lif/lif_cuda.h"

namespace brain::kernels::lif::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void forward_kernel(LifConstants constants, const T* __restrict__ input,
                               const T* __restrict__ v0, T* __restrict__ spikes,
                               T* __restrict__ v_last, T* __restrict__ v_pre, std::int64_t steps,
                               std::int64_t neurons) {
  const Typed<T> c(constants);
  for (std::int64_t m = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
       m < neurons; m += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    T u = v0[m];
    for (std::int64_t t = 0; t < steps; ++t) {
      const std::int64_t k = t * neurons + m;
      const T v = c.integrate(u, input[k]);
      const bool spike = c.scaled(v) > T(0);
      if (v_pre != nullptr) v_pre[k] = v;
      spikes[k] = spike ? T(1) : T(0);
      u = c.reset(v, spike);
    }
    v_last[m] = u;
  }
}

template <typename T>
__global__ void backward_kernel(LifConstants constants, const T* __restrict__ grad_spikes,
                                const T* __restrict__ grad_v_last, const T* __restrict__ v_pre,
                                T* __restrict__ grad_input, T* __restrict__ grad_v0,
                                std::int64_t steps, std::int64_t neurons) {
  const Typed<T> c(constants);
  for (std::int64_t m = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
       m < neurons; m += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    T gu = grad_v_last[m];
    for (std::int64_t t = steps - 1; t >= 0; --t) {
      const std::int64_t k = t * neurons + m;
      grad_input[k] = backward_step(c, v_pre[k], grad_spikes[k], gu) * c.dv_dI;
    }
    grad_v0[m] = gu;
  }
}

unsigned blocks_for(std::int64_t neurons) {
  const std::int64_t b = (neurons + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 * 32 ? (b > 0 ? b : 1) : 65535 * 32);
}

}  // namespace

cudaError_t launch_forward(const ForwardArgs& a, cudaStream_t stream) {
  if (a.neurons == 0) return cudaSuccess;
  if (a.is_double) {
    forward_kernel<double><<<blocks_for(a.neurons), kThreads, 0, stream>>>(
        a.constants, static_cast<const double*>(a.input), static_cast<const double*>(a.v0),
        static_cast<double*>(a.spikes), static_cast<double*>(a.v_last), static_cast<double*>(a.v_pre),
        a.steps, a.neurons);
  } else {
    forward_kernel<float><<<blocks_for(a.neurons), kThreads, 0, stream>>>(
        a.constants, static_cast<const float*>(a.input), static_cast<const float*>(a.v0),
        static_cast<float*>(a.spikes), static_cast<float*>(a.v_last), static_cast<float*>(a.v_pre),
        a.steps, a.neurons);
  }
  return cudaGetLastError();
}

cudaError_t launch_backward(const BackwardArgs& a, cudaStream_t stream) {
  if (a.neurons == 0) return cudaSuccess;
  if (a.is_double) {
    backward_kernel<double><<<blocks_for(a.neurons), kThreads, 0, stream>>>(
        a.constants, static_cast<const double*>(a.grad_spikes), static_cast<const double*>(a.grad_v_last),
        static_cast<const double*>(a.v_pre), static_cast<double*>(a.grad_input), static_cast<double*>(a.grad_v0),
        a.steps, a.neurons);
  } else {
    backward_kernel<float><<<blocks_for(a.neurons), kThreads, 0, stream>>>(
        a.constants, static_cast<const float*>(a.grad_spikes), static_cast<const float*>(a.grad_v_last),
        static_cast<const float*>(a.v_pre), static_cast<float*>(a.grad_input), static_cast<float*>(a.grad_v0),
        a.steps, a.neurons);
  }
  return cudaGetLastError();
}

}  // namespace brain::kernels::lif::cuda
