// The AVX2 variant of the CPU ops' batched CSR loops (csr_batch_kernels.h; CMake compiles the
// *_avx2.cpp files with -mavx2 on x86-64, elsewhere this defines an empty table and the
// baseline runs). Before any include: the kernel headers' functions compile into their own
// namespace here (kernels/isa.h), so the portable copies stay portable.
#define BRAIN_KERNEL_ISA avx2
#include "csrc/ops/cpu/csr_batch_kernels.h"

#if defined(__AVX2__)
#define BRAIN_CSR_VARIANT avx2
#define BRAIN_CSR_VARIANT_NAME "avx2"
#include "csrc/ops/cpu/csr_batch_variant.inc"
#else
namespace brain::ops::csr_batch::avx2 {
extern const BatchKernels kKernels;
const BatchKernels kKernels{{}, {}, {}, {}, nullptr};
}  // namespace brain::ops::csr_batch::avx2
#endif
