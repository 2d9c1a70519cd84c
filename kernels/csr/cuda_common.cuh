// Device helpers shared by the CSR kernels: dtype mapping, conversions, group reductions.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/csr/csr_cuda.h"
#include "kernels/spike_byte.h"

namespace brain::kernels::csr::cuda {

template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

// T is a number type or, for bool events, SpikeByte (never bool: see kernels/spike_byte.h).
template <typename acc_t, typename T>
__device__ __forceinline__ acc_t to_acc(T v) {
  static_assert(!std::is_same_v<T, bool>, "bool events are read as SpikeByte");
  if constexpr (std::is_same_v<T, SpikeByte>) {
    return v.byte != 0 ? acc_t(1) : acc_t(0);
  } else if constexpr (std::is_same_v<T, __half>) {
    return static_cast<acc_t>(__half2float(v));
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return static_cast<acc_t>(__bfloat162float(v));
  } else {
    return static_cast<acc_t>(v);
  }
}

template <typename T, typename acc_t>
__device__ __forceinline__ T from_acc(acc_t v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

// Whether an input element is an event: a non-zero number (compared in its accumulation type,
// so a double too small for a float still counts), or a non-zero bool byte.
template <typename T>
__device__ __forceinline__ bool is_active(T v) {
  if constexpr (std::is_same_v<T, SpikeByte>) {
    return v.byte != 0;
  } else {
    using acc_t = typename AccType<T>::type;
    return to_acc<acc_t>(v) != acc_t(0);
  }
}

// Sum over the TPR consecutive lanes of a group (TPR <= 32, a power of two). Only the
// group's lanes take part, so groups of one warp may be at different loop iterations.
template <int TPR, typename acc_t>
__device__ __forceinline__ acc_t group_sum(acc_t v) {
  static_assert(TPR >= 1 && TPR <= 32 && (TPR & (TPR - 1)) == 0, "TPR must be a power of two <= 32");
  if constexpr (TPR == 1) {
    return v;
  } else {
    const unsigned lane_in_warp = threadIdx.x & 31u;
    const unsigned mask = (TPR == 32) ? 0xffffffffu
                                      : (((1u << TPR) - 1u) << (lane_in_warp & ~(unsigned(TPR) - 1u)));
#pragma unroll
    for (int offset = TPR / 2; offset > 0; offset /= 2) v += __shfl_down_sync(mask, v, offset, TPR);
    return v;
  }
}

// Calls f.template operator()<scalar_t>() for the runtime dtype.
template <typename F>
cudaError_t dispatch_dtype(Dtype dtype, F&& f) {
  switch (dtype) {
    case Dtype::kFloat32: return f(float{});
    case Dtype::kFloat64: return f(double{});
    case Dtype::kFloat16: return f(__half{});
    case Dtype::kBFloat16: return f(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

template <typename F>
cudaError_t dispatch_index(bool index64, F&& f) {
  return index64 ? f(std::int64_t{}) : f(std::int32_t{});
}

inline unsigned grid_for(std::int64_t work_items, int threads, int num_sms) {
  const std::int64_t blocks = (work_items + threads - 1) / threads;
  const std::int64_t cap = std::int64_t{num_sms} * 16;  // grid-stride loops cover the rest
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks < cap ? blocks : cap));
}

}  // namespace brain::kernels::csr::cuda
