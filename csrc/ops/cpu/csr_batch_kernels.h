// Internal: the batched CSR gather of the CPU ops (kernels/csr/csr_cpu.h's gather_batch_minor:
// csr_matmul and event_csr_matmul with a batch, transpose=False; the stored copy of
// lif_jit_recurrent_sequence's matrix; lif_recurrent_sequence's backward step through A), compiled twice
// (csr_batch_base.cpp for any CPU, csr_batch_avx2.cpp with AVX2) and picked at run time, as the
// fast engine's population pass is (csrc/dyn/fast_kernels.h). With AVX2 a batch's float64 sums
// go four items per instruction instead of two: 1.15-1.4x for 4-64 items (4,000 rows of 80
// entries, float32, one thread). Both compute the same bits: every lane is its own sum of the
// same IEEE operations in the same order, never contracted into FMAs. The weight gradient's
// batched loops stay portable: AVX2 gained under 10% there, and lost 8% at 4 items.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/csr/csr_cpu.h"

namespace brain::ops::csr_batch {

using kernels::csr::Params;
using kernels::csr::Status;

// Rows [row_begin, row_end) of the batched gather (x as [n_cols, batch], numbers); acc is
// scratch for `batch` sums.
template <typename scalar_t, typename index_t>
using GatherFn = Status (*)(const Params<scalar_t, index_t, scalar_t>&, scalar_t* out, std::int64_t row_begin,
                            std::int64_t row_end, double* acc);

template <typename scalar_t, typename index_t>
struct KernelsOf {
  GatherFn<scalar_t, index_t> gather[2];  // [event]
};

struct BatchKernels {
  KernelsOf<float, std::int32_t> f32_i32;
  KernelsOf<float, std::int64_t> f32_i64;
  KernelsOf<double, std::int32_t> f64_i32;
  KernelsOf<double, std::int64_t> f64_i64;
  const char* isa;  // "avx2" or "baseline"

  template <typename scalar_t, typename index_t>
  const KernelsOf<scalar_t, index_t>& of() const {
    if constexpr (std::is_same_v<scalar_t, float>) {
      if constexpr (std::is_same_v<index_t, std::int32_t>) return f32_i32;
      else return f32_i64;
    } else {
      if constexpr (std::is_same_v<index_t, std::int32_t>) return f64_i32;
      else return f64_i64;
    }
  }
};

// The best variant this CPU runs (BRAIN_FAST_ISA=baseline forces the portable one).
const BatchKernels& batch_kernels();

namespace baseline {
extern const BatchKernels kKernels;
}
namespace avx2 {
extern const BatchKernels kKernels;  // isa == nullptr when this build has no AVX2 variant
}

}  // namespace brain::ops::csr_batch
