#include "csrc/core/cpu_isa.h"

#include <cstdlib>
#include <cstring>

namespace brain::detail {

bool run_avx2_variants() {
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

}  // namespace brain::detail
