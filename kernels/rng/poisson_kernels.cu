// CUDA kernel of brain::poisson_spikes: one thread per pair of neurons (one Philox call gives
// both draws), grid-stride over [batch, pairs]. Math shared with the CPU (poisson_draw.h).
#include "kernels/rng/poisson_cuda.h"

namespace brain::kernels::rng::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void poisson_kernel(PoissonKey key, std::uint64_t host_step,
                               const std::int64_t* __restrict__ step_on_device, double scale,
                               const T* __restrict__ rates, bool* __restrict__ spikes, std::int64_t batch,
                               std::int64_t neurons, std::int64_t offset) {
  const std::uint64_t step = step_on_device ? static_cast<std::uint64_t>(*step_on_device) : host_step;
  // Pairs are of global indices: pair q covers 2q and 2q + 1, clipped to [offset, offset + n).
  const std::int64_t first_pair = offset >> 1;
  const std::int64_t pairs = ((offset + neurons - 1) >> 1) - first_pair + 1;
  const std::int64_t total = batch * pairs;
  for (std::int64_t k = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t b = k / pairs;
    const std::int64_t q = first_pair + (k - b * pairs);
    const UniformPair u = poisson_uniforms(key, step, static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(q));
    const std::int64_t row = b * neurons;
    const std::int64_t j0 = 2 * q - offset;  // local index of the pair's first neuron
    if (j0 >= 0) spikes[row + j0] = poisson_fires(u.first, static_cast<double>(rates[row + j0]), scale);
    if (j0 + 1 < neurons) {
      spikes[row + j0 + 1] = poisson_fires(u.second, static_cast<double>(rates[row + j0 + 1]), scale);
    }
  }
}

unsigned blocks_for(std::int64_t work) {
  const std::int64_t b = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 * 32 ? (b > 0 ? b : 1) : 65535 * 32);
}

}  // namespace

cudaError_t launch_poisson(const PoissonArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.neurons == 0) return cudaSuccess;
  const std::int64_t pairs = ((a.offset + a.neurons - 1) >> 1) - (a.offset >> 1) + 1;
  const unsigned blocks = blocks_for(a.batch * pairs);
  if (a.is_double) {
    poisson_kernel<double><<<blocks, kThreads, 0, stream>>>(a.key, a.step, a.step_on_device, a.scale,
                                                            static_cast<const double*>(a.rates), a.spikes, a.batch,
                                                            a.neurons, a.offset);
  } else {
    poisson_kernel<float><<<blocks, kThreads, 0, stream>>>(a.key, a.step, a.step_on_device, a.scale,
                                                           static_cast<const float*>(a.rates), a.spikes, a.batch,
                                                           a.neurons, a.offset);
  }
  return cudaGetLastError();
}

}  // namespace brain::kernels::rng::cuda
