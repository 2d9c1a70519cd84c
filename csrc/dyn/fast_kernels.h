// Internal: the population passes of the fast engine (LIF and conductance-based) and of
// CondNeuGroup's one-pass update, compiled twice (fast_kernels_base.cpp for any x86-64 or other
// CPU, fast_kernels_avx2.cpp with AVX2) and picked at run time, because only with AVX2's blends
// and 64-bit integer lanes does the compiler vectorize the threshold/reset/refractory selects and
// the conductance kernels' exp. Both compute the same bits: the same IEEE operations, never
// contracted into FMAs.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/fastsim/fast_cpu.h"

namespace brain::fastsim {

template <typename T>
using LifStepFn = void (*)(const kernels::fastsim::LifPop<T>&, std::int64_t step, std::int64_t begin,
                           std::int64_t end);

// Neurons [begin, end) of a conductance-based population of the fast engine over one step.
template <typename T>
using CondStepFn = void (*)(const kernels::fastsim::LifPop<T>&, const kernels::cond::Group<T>&, std::int64_t begin,
                            std::int64_t end);

// Neurons [begin, end) of CondNeuGroup's one-pass update: the new V and the spikes (0 or 1)
// from V and the current I.
template <typename T>
using CondOnePassFn = void (*)(const kernels::cond::Group<T>&, std::int64_t begin, std::int64_t end, const T* V,
                               const T* I, T* V_new, T* spike);

// A PoissonGroup's spikes of one step for global neurons offset .. offset + n - 1, from their
// rates (Hz, as double): kernels::rng::draw_row's with the key (k0, k1) of poisson_key, bit for
// bit (fired: 0/1 bytes).
using PoissonRowFn = void (*)(std::uint32_t k0, std::uint32_t k1, std::uint64_t step, std::int64_t offset,
                              std::int64_t n, double scale, const double* rates, std::uint8_t* fired);

template <typename T>
struct KernelsOf {
  LifStepFn<T> lif_step;
  CondStepFn<T> cond_step;
  CondOnePassFn<T> cond_one_pass;
};

struct PopulationKernels {
  KernelsOf<float> f32;
  KernelsOf<double> f64;
  PoissonRowFn poisson_row;
  const char* isa;  // "avx2" or "baseline"

  template <typename T>
  const KernelsOf<T>& of() const {
    if constexpr (std::is_same_v<T, float>) return f32;
    else return f64;
  }
};

// The best variant this CPU runs (BRAIN_FAST_ISA=baseline forces the portable one).
const PopulationKernels& population_kernels();

namespace baseline {
extern const PopulationKernels kKernels;
}
namespace avx2 {
extern const PopulationKernels kKernels;  // isa == nullptr when this build has no AVX2 variant
}

}  // namespace brain::fastsim
