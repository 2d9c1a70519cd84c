// The AVX2 variant of the fast engine's population pass (CMake adds -mavx2 to this file on
// x86-64; elsewhere it defines an empty table and the baseline runs).
// Before any include: the kernel headers' functions compile into their own namespace here
// (kernels/isa.h), so the portable copies stay portable.
#define BRAIN_KERNEL_ISA avx2
#include "csrc/dyn/fast_kernels.h"

#if defined(__AVX2__)
#define BRAIN_FAST_VARIANT avx2
#define BRAIN_FAST_VARIANT_NAME "avx2"
#include "csrc/dyn/fast_kernels_variant.inc"
#else
namespace brain::fastsim::avx2 {
extern const PopulationKernels kKernels;
const PopulationKernels kKernels{{}, {}, nullptr, nullptr};
}  // namespace brain::fastsim::avx2
#endif
