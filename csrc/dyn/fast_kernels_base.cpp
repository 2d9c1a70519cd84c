// The portable variant of the fast engine's population pass, and the choice between variants.
#include "csrc/dyn/fast_kernels.h"

#include "csrc/core/cpu_isa.h"

#define BRAIN_FAST_VARIANT baseline
#define BRAIN_FAST_VARIANT_NAME "baseline"
#include "csrc/dyn/fast_kernels_variant.inc"

namespace brain::fastsim {

const PopulationKernels& population_kernels() {
  static const PopulationKernels& chosen =
      avx2::kKernels.isa != nullptr && brain::detail::run_avx2_variants() ? avx2::kKernels : baseline::kKernels;
  return chosen;
}

}  // namespace brain::fastsim
