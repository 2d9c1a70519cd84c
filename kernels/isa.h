// The instruction-set variant that the CPU kernel headers are being compiled for.
//
// Some translation units compile these headers a second time with -mavx2 (for example
// csrc/dyn/fast_kernels_avx2.cpp), and the library chooses between the copies at run time.
// Inline functions and template instantiations are emitted as weak symbols, and the linker keeps
// one copy of each name for the whole library. Under one shared name, the portable code would
// end up calling AVX2 code (SIGILL on a CPU without it), or the AVX2 table the portable code.
// So every kernel header compiled into a variant puts its functions (not its types, which all
// variants share) in
//   inline namespace BRAIN_KERNEL_ISA { ... }
// and a variant translation unit defines BRAIN_KERNEL_ISA before its first include. The
// test `isa_variants_share_no_symbols` (tests/CMakeLists.txt) checks that no weak symbol of
// a variant object lies outside its namespace.
#pragma once

#ifndef BRAIN_KERNEL_ISA
#define BRAIN_KERNEL_ISA baseline
#endif

#if !defined(__CUDACC__)
#include <cstdlib>
#include <cstring>

namespace brain::kernels {
inline namespace BRAIN_KERNEL_ISA {

// True when the CPU has AVX2 and BRAIN_FAST_ISA is not "baseline" (which forces the portable
// code everywhere, e.g. to compare it). Read once per process (per variant).
inline bool cpu_runs_avx2() {
  static const bool run = [] {
    const char* force = std::getenv("BRAIN_FAST_ISA");
    if (force && std::strcmp(force, "baseline") == 0) return false;
#if defined(__x86_64__) || defined(__i386__)
    return static_cast<bool>(__builtin_cpu_supports("avx2"));
#else
    return false;
#endif
  }();
  return run;
}

}  // namespace BRAIN_KERNEL_ISA
}  // namespace brain::kernels
#endif
