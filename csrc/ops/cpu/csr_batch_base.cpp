// The portable variant of the CPU ops' batched CSR loops, and the choice between variants.
#include "csrc/ops/cpu/csr_batch_kernels.h"

#include "csrc/core/cpu_isa.h"

#define BRAIN_CSR_VARIANT baseline
#define BRAIN_CSR_VARIANT_NAME "baseline"
#include "csrc/ops/cpu/csr_batch_variant.inc"

namespace brain::ops::csr_batch {

const BatchKernels& batch_kernels() {
  static const BatchKernels& chosen =
      avx2::kKernels.isa != nullptr && brain::detail::run_avx2_variants() ? avx2::kKernels : baseline::kKernels;
  return chosen;
}

}  // namespace brain::ops::csr_batch
