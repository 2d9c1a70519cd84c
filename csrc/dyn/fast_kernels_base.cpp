// The portable variant of the fast engine's population pass, and the choice between variants.
#include "csrc/dyn/fast_kernels.h"

#include <cstdlib>
#include <cstring>

#define BRAIN_FAST_VARIANT baseline
#define BRAIN_FAST_VARIANT_NAME "baseline"
#include "csrc/dyn/fast_kernels_variant.inc"

namespace brain::fastsim {

const PopulationKernels& population_kernels() {
  static const PopulationKernels& chosen = [&]() -> const PopulationKernels& {
    const char* force = std::getenv("BRAIN_FAST_ISA");
    if (force && std::strcmp(force, "baseline") == 0) return baseline::kKernels;
#if defined(__x86_64__) || defined(__i386__)
    if (avx2::kKernels.isa != nullptr && __builtin_cpu_supports("avx2")) return avx2::kKernels;
#endif
    return baseline::kKernels;
  }();
  return chosen;
}

}  // namespace brain::fastsim
