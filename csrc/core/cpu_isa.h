// Internal: which copy of the CPU kernels that are compiled per instruction set (kernels/isa.h:
// the fast engine's population pass, the CSR ops' batched loops) this process runs.
#pragma once

namespace brain::detail {

// True when the CPU has AVX2 and BRAIN_FAST_ISA is not "baseline" (which forces the portable
// copies everywhere, e.g. to compare them). Read once per process.
bool run_avx2_variants();

}  // namespace brain::detail
