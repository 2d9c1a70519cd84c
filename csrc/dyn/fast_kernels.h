// Internal: the fast engine's population pass, compiled twice (fast_kernels_base.cpp for any
// x86-64 or other CPU, fast_kernels_avx2.cpp with AVX2) and picked at run time, because only
// with AVX2's blends does the compiler vectorize the threshold/reset/refractory selects. Both
// compute the same bits: the same IEEE operations, never contracted into FMAs.
#pragma once

#include <cstdint>

#include "kernels/fastsim/fast_cpu.h"

namespace brain::fastsim {

template <typename T>
using LifStepFn = void (*)(const kernels::fastsim::LifPop<T>&, std::int64_t step, std::int64_t begin,
                           std::int64_t end);

struct LifKernels {
  LifStepFn<float> f32;
  LifStepFn<double> f64;
  const char* isa;  // "avx2" or "baseline"
};

// The best variant this CPU runs (BRAIN_FAST_ISA=baseline forces the portable one).
const LifKernels& lif_kernels();

namespace baseline {
extern const LifKernels kKernels;
}
namespace avx2 {
extern const LifKernels kKernels;  // isa == nullptr when this build has no AVX2 variant
}

}  // namespace brain::fastsim
