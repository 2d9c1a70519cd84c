// Counter-based Poisson spike draws (brain::poisson_spikes, brain::PoissonGroup): each draw is
// a pure function of (seed, step, batch item, global neuron index), so no generator state is
// carried from step to step, the CPU and CUDA give the same spikes, a shard of a population
// (a distributed rank's block) draws exactly the spikes of its neurons in the whole, and a
// resumed or replayed run draws what the uninterrupted one did. Torch-free; the same source is
// compiled for the CPU and, as __host__ __device__ code, for CUDA.
//
// ============================== The draw (normative) =======================================
// key    = splitmix64(seed XOR 0x506F4953534F4E21)   (seed as uint64, two's complement; the
//          constant keeps these streams apart from JIT connectivity built from the same seed)
//          splitmix64(z): z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) *
//          0x94D049BB133111EB; z ^ (z >> 31)   (uint64 arithmetic, mod 2^64)
// words  = Philox4x32-10(counter (j >> 1, b, s mod 2^32, s >> 32), key (low 32, high 32))
//          (kernels/jitc/jitc_gen.h), for neuron j (global index, < 2^32) of batch item b
//          (< 2^32) at step s
// u      = m53(w0, w1) * 2^-53 when j is even, m53(w2, w3) * 2^-53 when j is odd; u in [0, 1)
// p      = double(rate) * scale, one IEEE multiply; scale = dt_ms / 1000 (a double)
// fires  = u < p     (so a rate <= 0 never fires, and p >= 1 always does)
// ===========================================================================================
#pragma once

#include <cstdint>

#include "kernels/jitc/jitc_gen.h"

namespace brain::kernels::rng {

constexpr std::uint64_t kPoissonDomain = 0x506F4953534F4E21ull;  // "POISSON!"

BRAIN_HD std::uint64_t splitmix64_finalize(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct PoissonKey {
  std::uint32_t k0, k1;
};

inline PoissonKey poisson_key(std::uint64_t seed) {
  const std::uint64_t key = splitmix64_finalize(seed ^ kPoissonDomain);
  return PoissonKey{static_cast<std::uint32_t>(key), static_cast<std::uint32_t>(key >> 32)};
}

// The uniforms of global neurons 2 * pair (first) and 2 * pair + 1 (second).
struct UniformPair {
  double first, second;
};

BRAIN_HD UniformPair poisson_uniforms(PoissonKey key, std::uint64_t step, std::uint32_t batch_item,
                                      std::uint32_t pair) {
  const jitc::Words w = jitc::philox4x32_10(pair, batch_item, static_cast<std::uint32_t>(step),
                                            static_cast<std::uint32_t>(step >> 32), key.k0, key.k1);
  return UniformPair{jitc::dmul(static_cast<double>(jitc::m53(w.w[0], w.w[1])), jitc::kTwoPowMinus53),
                     jitc::dmul(static_cast<double>(jitc::m53(w.w[2], w.w[3])), jitc::kTwoPowMinus53)};
}

BRAIN_HD bool poisson_fires(double u, double rate, double scale) { return u < jitc::dmul(rate, scale); }

// The largest global index + 1 and batch size the counter words can address.
constexpr std::int64_t kMaxNeuronIndex = std::int64_t{1} << 32;
constexpr std::int64_t kMaxBatch = std::int64_t{1} << 32;

// One batch item's row on the CPU: spikes[j] for global neurons offset .. offset + n - 1 of
// batch item b, from rates[j]. Pairs of neurons share one Philox call.
template <typename T>
void draw_row(PoissonKey key, std::uint64_t step, std::uint32_t b, std::int64_t offset, std::int64_t n,
              double scale, const T* rates, bool* spikes) {
  std::int64_t j = 0;
  if (n > 0 && (offset & 1)) {  // the first neuron is the second of its pair
    const UniformPair u = poisson_uniforms(key, step, b, static_cast<std::uint32_t>(offset >> 1));
    spikes[0] = poisson_fires(u.second, static_cast<double>(rates[0]), scale);
    j = 1;
  }
  for (; j + 1 < n; j += 2) {
    const UniformPair u = poisson_uniforms(key, step, b, static_cast<std::uint32_t>((offset + j) >> 1));
    spikes[j] = poisson_fires(u.first, static_cast<double>(rates[j]), scale);
    spikes[j + 1] = poisson_fires(u.second, static_cast<double>(rates[j + 1]), scale);
  }
  if (j < n) {  // the last neuron is the first of its pair
    const UniformPair u = poisson_uniforms(key, step, b, static_cast<std::uint32_t>((offset + j) >> 1));
    spikes[j] = poisson_fires(u.first, static_cast<double>(rates[j]), scale);
  }
}

}  // namespace brain::kernels::rng
