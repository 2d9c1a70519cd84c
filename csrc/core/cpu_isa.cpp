#include "csrc/core/cpu_isa.h"

#include "kernels/isa.h"

namespace brain::detail {

bool run_avx2_variants() { return kernels::cpu_runs_avx2(); }

}  // namespace brain::detail
