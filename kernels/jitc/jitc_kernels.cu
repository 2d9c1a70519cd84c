// CUDA kernels of the JIT-connectivity ops (see kernels/jitc/jitc_cuda.h). The generator is
// the same source as on the CPU (jitc_gen.h, whose device arithmetic uses non-fusing _rn
// intrinsics), so A is bit-identical; only the accumulation order of the matmuls differs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/csr/cuda_common.cuh"
#include "kernels/jitc/jitc_cuda.h"

namespace brain::kernels::jitc::cuda {
namespace {

using csr::cuda::AccType;
using csr::cuda::dispatch_dtype;
using csr::cuda::grid_for;
using csr::cuda::is_active;
using csr::cuda::to_acc;

constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ T from_double(double v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __double2half(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __double2bfloat16(v);
  } else {
    return static_cast<T>(v);
  }
}

template <typename T>
__device__ __forceinline__ double to_double(T v) {
  if constexpr (std::is_same_v<T, __half>) {
    return static_cast<double>(__half2float(v));
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return static_cast<double>(__bfloat162float(v));
  } else {
    return static_cast<double>(v);
  }
}

struct Params2 {
  double a, b;
};

template <typename scalar_t>
__device__ __forceinline__ Params2 load_params(const scalar_t* w, Dist dist) {
  return {to_double(w[0]), num_params(dist) > 1 ? to_double(w[1]) : 0.0};
}

// The entry's value, rounded once to scalar_t (as jitc_materialize stores it).
template <typename scalar_t>
__device__ __forceinline__ scalar_t entry_scalar(const Spec& s, Params2 p, std::int64_t row,
                                                 std::int64_t col) {
  return from_double<scalar_t>(entry_value(s.dist, entry_variate(s, row, col), p.a, p.b));
}

template <typename scalar_t, typename x_t, typename out_t>
__global__ void __launch_bounds__(kThreads)
    matmul_kernel(Spec s, const scalar_t* __restrict__ weight, const x_t* __restrict__ x,
                  out_t* __restrict__ out, std::int64_t batch, bool transpose, bool event) {
  using acc_t = typename AccType<scalar_t>::type;
  const Params2 prm = load_params(weight, s.dist);
  const std::int64_t n_chunks = (batch + kBatchChunk - 1) / kBatchChunk;
  const std::int64_t total = s.n_rows * s.n_blocks * n_chunks;
  const std::int64_t n_in = transpose ? s.n_rows : s.n_cols;
  const std::int64_t n_out = transpose ? s.n_cols : s.n_rows;
  for (std::int64_t t = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; t < total;
       t += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t chunk = t % n_chunks;
    const std::int64_t rb = t / n_chunks;
    const std::int64_t row = rb / s.n_blocks;
    const std::int64_t blk = rb % s.n_blocks;
    const std::int64_t b0 = chunk * kBatchChunk;
    const int nb = static_cast<int>(batch - b0 < kBatchChunk ? batch - b0 : kBatchChunk);
    if (transpose) {
      acc_t xv[kBatchChunk];
      bool any = false;
#pragma unroll
      for (int c = 0; c < kBatchChunk; ++c) {
        xv[c] = c < nb ? to_acc<acc_t>(x[(b0 + c) * n_in + row]) : acc_t(0);
        any = any || xv[c] != acc_t(0);
      }
      if (!any) continue;  // a silent presynaptic row: nothing to walk
      for_each_in_block(s, row, blk, [&](std::int64_t col) {
        const acc_t v = to_acc<acc_t>(entry_scalar<scalar_t>(s, prm, row, col));
#pragma unroll
        for (int c = 0; c < kBatchChunk; ++c) {
          if (c < nb && (!event || xv[c] != acc_t(0))) {
            atomicAdd(&out[(b0 + c) * n_out + col], static_cast<out_t>(v * xv[c]));
          }
        }
      });
    } else {
      acc_t acc[kBatchChunk];
#pragma unroll
      for (int c = 0; c < kBatchChunk; ++c) acc[c] = acc_t(0);
      for_each_in_block(s, row, blk, [&](std::int64_t col) {
        const acc_t v = to_acc<acc_t>(entry_scalar<scalar_t>(s, prm, row, col));
#pragma unroll
        for (int c = 0; c < kBatchChunk; ++c) {
          if (c < nb) {
            const x_t xr = x[(b0 + c) * n_in + col];
            if (!event || is_active(xr)) acc[c] += v * to_acc<acc_t>(xr);
          }
        }
      });
#pragma unroll
      for (int c = 0; c < kBatchChunk; ++c) {
        if (c < nb && acc[c] != acc_t(0)) {
          atomicAdd(&out[(b0 + c) * n_out + row], static_cast<out_t>(acc[c]));
        }
      }
    }
  }
}

// acc + a * b with two roundings, as the CPU loops compute it (nvcc would fuse it into an FMA).
template <typename T>
__device__ __forceinline__ T add_product(T acc, T a, T b) {
  if constexpr (std::is_same_v<T, double>) {
    return __dadd_rn(acc, __dmul_rn(a, b));
  } else {
    return __fadd_rn(acc, __fmul_rn(a, b));
  }
}

// The deterministic gather: a thread owns a row (and a chunk of the batch) and sums its entries
// in column order in double, as jitc_cpu.h's gather<kEvent, double> does.
template <typename scalar_t, typename x_t, typename out_t>
__global__ void __launch_bounds__(kThreads)
    ordered_gather_kernel(Spec s, const scalar_t* __restrict__ weight, const x_t* __restrict__ x,
                          out_t* __restrict__ out, std::int64_t batch, bool event) {
  const Params2 prm = load_params(weight, s.dist);
  const std::int64_t n_chunks = (batch + kBatchChunk - 1) / kBatchChunk;
  const std::int64_t total = s.n_rows * n_chunks;
  for (std::int64_t t = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; t < total;
       t += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t row = t / n_chunks;
    const std::int64_t b0 = (t % n_chunks) * kBatchChunk;
    const int nb = static_cast<int>(batch - b0 < kBatchChunk ? batch - b0 : kBatchChunk);
    double acc[kBatchChunk];
#pragma unroll
    for (int c = 0; c < kBatchChunk; ++c) acc[c] = 0.0;
    for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) {
      for_each_in_block(s, row, blk, [&](std::int64_t col) {
        const double v = to_double(entry_scalar<scalar_t>(s, prm, row, col));
#pragma unroll
        for (int c = 0; c < kBatchChunk; ++c) {
          if (c < nb) {
            const x_t xr = x[(b0 + c) * s.n_cols + col];
            if (!event || is_active(xr)) acc[c] = add_product(acc[c], v, to_acc<double>(xr));
          }
        }
      });
    }
#pragma unroll
    for (int c = 0; c < kBatchChunk; ++c) {
      if (c < nb) out[(b0 + c) * s.n_rows + row] = static_cast<out_t>(acc[c]);
    }
  }
}

// The deterministic scatter: a thread owns an output column (and a chunk of the batch) and adds
// the rows' terms in row order, in out_t, as jitc_cpu.h's scatter does; rows whose x is zero in
// every batch item are skipped, as there. To find entry (row, col) it walks col's generator
// block of the row up to col. The 32 lanes of a warp own 32 consecutive columns, which lie in
// one block (blocks are aligned runs of at least 32 columns), so they walk the same entries
// together.
template <typename scalar_t, typename x_t, typename out_t>
__global__ void __launch_bounds__(kThreads)
    ordered_scatter_kernel(Spec s, const scalar_t* __restrict__ weight, const x_t* __restrict__ x,
                           out_t* __restrict__ out, std::int64_t batch, bool event) {
  const Params2 prm = load_params(weight, s.dist);
  const std::int64_t n_chunks = (batch + kBatchChunk - 1) / kBatchChunk;
  const std::int64_t padded = (s.n_cols + 31) / 32 * 32;  // a warp never straddles two chunks
  const std::int64_t total = padded * n_chunks;
  for (std::int64_t t = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; t < total;
       t += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t col = t % padded;
    if (col >= s.n_cols) continue;
    const std::int64_t b0 = (t / padded) * kBatchChunk;
    const int nb = static_cast<int>(batch - b0 < kBatchChunk ? batch - b0 : kBatchChunk);
    const std::int64_t blk = col >> s.block_shift;
    out_t acc[kBatchChunk];
#pragma unroll
    for (int c = 0; c < kBatchChunk; ++c) acc[c] = out_t(0);
    for (std::int64_t row = 0; row < s.n_rows; ++row) {
      bool any = false;
      for (std::int64_t b = 0; b < batch && !any; ++b) any = is_active(x[b * s.n_rows + row]);
      if (!any) continue;
      bool found = false;
      for_each_in_block(s, row, blk, [&](std::int64_t c) -> bool {
        found = c == col;
        return c >= col;
      });
      if (!found) continue;
      const out_t v = to_acc<out_t>(entry_scalar<scalar_t>(s, prm, row, col));
#pragma unroll
      for (int c = 0; c < kBatchChunk; ++c) {
        if (c < nb) {
          const x_t xr = x[(b0 + c) * s.n_rows + row];
          if (!event || is_active(xr)) acc[c] = add_product(acc[c], v, to_acc<out_t>(xr));
        }
      }
    }
#pragma unroll
    for (int c = 0; c < kBatchChunk; ++c) {
      if (c < nb) out[(b0 + c) * s.n_cols + col] = acc[c];
    }
  }
}

template <typename scalar_t, typename x_t>
__global__ void __launch_bounds__(kThreads)
    param_grad_kernel(Spec s, const scalar_t* __restrict__ weight, const x_t* __restrict__ x,
                      const scalar_t* __restrict__ g, double* __restrict__ grad,
                      double* __restrict__ block_partials, std::int64_t batch, bool transpose) {
  const std::int64_t total = s.n_rows * s.n_blocks;
  const std::int64_t n_in = transpose ? s.n_rows : s.n_cols;
  const std::int64_t n_out = transpose ? s.n_cols : s.n_rows;
  double ga = 0, gb = 0;
  for (std::int64_t t = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; t < total;
       t += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t row = t / s.n_blocks;
    const std::int64_t blk = t % s.n_blocks;
    if (transpose) {
      bool any = false;
      for (std::int64_t b = 0; b < batch && !any; ++b) any = is_active(x[b * n_in + row]);
      if (!any) continue;
    }
    for_each_in_block(s, row, blk, [&](std::int64_t col) {
      double c = 0;
      for (std::int64_t b = 0; b < batch; ++b) {
        c += transpose ? to_acc<double>(x[b * n_in + row]) * to_double(g[b * n_out + col])
                       : to_double(g[b * n_out + row]) * to_acc<double>(x[b * n_in + col]);
      }
      if (c == 0) return;
      double da, db;
      entry_basis(s.dist, entry_variate(s, row, col), &da, &db);
      ga += da * c;
      gb += db * c;
    });
  }
  // Block reduction, then one atomic per block and parameter.
  __shared__ double sa[kThreads / 32], sb[kThreads / 32];
  for (int off = 16; off > 0; off /= 2) {
    ga += __shfl_down_sync(0xffffffffu, ga, off);
    gb += __shfl_down_sync(0xffffffffu, gb, off);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sa[warp] = ga;
    sb[warp] = gb;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double ta = 0, tb = 0;
    for (int w = 0; w < kThreads / 32; ++w) {
      ta += sa[w];
      tb += sb[w];
    }
    if (block_partials != nullptr) {
      block_partials[2 * blockIdx.x] = ta;
      block_partials[2 * blockIdx.x + 1] = tb;
    } else {
      atomicAdd(&grad[0], ta);
      atomicAdd(&grad[1], tb);
    }
  }
}

// The deterministic end of param_grad_kernel: the blocks' sums added in block order.
__global__ void sum_block_partials_kernel(const double* __restrict__ block_partials, std::int64_t blocks,
                                          double* __restrict__ grad) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  double ga = 0, gb = 0;
  for (std::int64_t b = 0; b < blocks; ++b) {
    ga += block_partials[2 * b];
    gb += block_partials[2 * b + 1];
  }
  grad[0] = ga;
  grad[1] = gb;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    materialize_kernel(Spec s, const scalar_t* __restrict__ weight, scalar_t* __restrict__ out) {
  const Params2 prm = load_params(weight, s.dist);
  const std::int64_t total = s.n_rows * s.n_blocks;
  for (std::int64_t t = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; t < total;
       t += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t row = t / s.n_blocks;
    for_each_in_block(s, row, t % s.n_blocks, [&](std::int64_t col) {
      out[row * s.n_cols + col] = entry_scalar<scalar_t>(s, prm, row, col);
    });
  }
}

__global__ void __launch_bounds__(kThreads)
    block_counts_kernel(Spec s, std::int64_t* __restrict__ counts) {
  const std::int64_t total = s.n_rows * s.n_blocks;
  for (std::int64_t t = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; t < total;
       t += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t n = 0;
    for_each_in_block(s, t / s.n_blocks, t % s.n_blocks, [&](std::int64_t) { ++n; });
    counts[t] = n;
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    fill_csr_kernel(Spec s, const scalar_t* __restrict__ weight,
                    const std::int64_t* __restrict__ counts, const std::int64_t* __restrict__ ends,
                    std::int64_t* __restrict__ indices, scalar_t* __restrict__ values) {
  const Params2 prm = load_params(weight, s.dist);
  const std::int64_t total = s.n_rows * s.n_blocks;
  for (std::int64_t t = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; t < total;
       t += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t row = t / s.n_blocks;
    std::int64_t k = ends[t] - counts[t];
    for_each_in_block(s, row, t % s.n_blocks, [&](std::int64_t col) {
      indices[k] = col;
      values[k] = entry_scalar<scalar_t>(s, prm, row, col);
      ++k;
    });
  }
}

// Invalid parameters cannot raise on the device without a host sync, so they turn the output
// into NaN here. Every thread decides from the same two parameters: when they are valid (the
// usual case) the whole launch returns without touching out.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    poison_kernel(const scalar_t* __restrict__ weight, Dist dist, scalar_t* __restrict__ out, std::int64_t numel) {
  const Params2 prm = load_params(weight, dist);
  const bool finite = isfinite(prm.a) && isfinite(prm.b);
  const bool ordered = dist == Dist::kUniform ? prm.b >= prm.a : prm.b >= 0.0;
  if (finite && ordered) return;
  const scalar_t nan = from_double<scalar_t>(__longlong_as_double(0x7ff8000000000000LL));
  for (std::int64_t i = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < numel;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    out[i] = nan;
  }
}

// One thread per (row, window block), as block_counts_kernel / fill_csr_kernel.
__global__ void __launch_bounds__(kThreads)
    pattern_counts_kernel(Spec s, Window w, std::int64_t* __restrict__ counts) {
  const std::int64_t first = window_first_block(s, w);
  const std::int64_t n_blocks = window_end_block(s, w) - first;
  const std::int64_t total = s.n_rows * n_blocks;
  for (std::int64_t t = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; t < total;
       t += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t n = 0;
    for_each_in_window_block(s, w, t / n_blocks, first + t % n_blocks, [&](std::int64_t) { ++n; });
    counts[t] = n;
  }
}

__global__ void __launch_bounds__(kThreads)
    fill_pattern_kernel(Spec s, Window w, const std::int64_t* __restrict__ counts,
                        const std::int64_t* __restrict__ ends, std::int64_t* __restrict__ indices) {
  const std::int64_t first = window_first_block(s, w);
  const std::int64_t n_blocks = window_end_block(s, w) - first;
  const std::int64_t total = s.n_rows * n_blocks;
  for (std::int64_t t = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; t < total;
       t += std::int64_t{gridDim.x} * blockDim.x) {
    std::int64_t k = ends[t] - counts[t];
    for_each_in_window_block(s, w, t / n_blocks, first + t % n_blocks,
                             [&](std::int64_t col) { indices[k++] = col; });
  }
}

}  // namespace

cudaError_t launch_matmul(const MatmulArgs& a, cudaStream_t stream) {
  const std::int64_t n_chunks = (a.batch + kBatchChunk - 1) / kBatchChunk;
  const std::int64_t work = a.spec.n_rows * a.spec.n_blocks * n_chunks;
  if (work == 0) return cudaSuccess;
  if (a.deterministic) {
    const std::int64_t owners = a.transpose ? (a.spec.n_cols + 31) / 32 * 32 : a.spec.n_rows;
    const unsigned grid = grid_for(owners * n_chunks, kThreads, a.num_sms);
    return dispatch_dtype(a.dtype, [&](auto tag) -> cudaError_t {
      using scalar_t = decltype(tag);
      using out_t = typename AccType<scalar_t>::type;
      const auto* w = static_cast<const scalar_t*>(a.weight);
      auto* out = static_cast<out_t*>(a.out);
      auto launch = [&](auto x) {
        using x_t = std::remove_const_t<std::remove_pointer_t<decltype(x)>>;
        if (a.transpose) {
          ordered_scatter_kernel<scalar_t, x_t, out_t><<<grid, kThreads, 0, stream>>>(a.spec, w, x, out, a.batch, a.event);
        } else {
          ordered_gather_kernel<scalar_t, x_t, out_t><<<grid, kThreads, 0, stream>>>(a.spec, w, x, out, a.batch, a.event);
        }
      };
      if (a.x_is_bool) {
        launch(static_cast<const SpikeByte*>(a.x));
      } else {
        launch(static_cast<const scalar_t*>(a.x));
      }
      return cudaGetLastError();
    });
  }
  const unsigned grid = grid_for(work, kThreads, a.num_sms);
  return dispatch_dtype(a.dtype, [&](auto tag) -> cudaError_t {
    using scalar_t = decltype(tag);
    using out_t = typename AccType<scalar_t>::type;
    const auto* w = static_cast<const scalar_t*>(a.weight);
    auto* out = static_cast<out_t*>(a.out);
    if (a.x_is_bool) {
      matmul_kernel<scalar_t, SpikeByte, out_t><<<grid, kThreads, 0, stream>>>(
          a.spec, w, static_cast<const SpikeByte*>(a.x), out, a.batch, a.transpose, a.event);
    } else {
      matmul_kernel<scalar_t, scalar_t, out_t><<<grid, kThreads, 0, stream>>>(
          a.spec, w, static_cast<const scalar_t*>(a.x), out, a.batch, a.transpose, a.event);
    }
    return cudaGetLastError();
  });
}

std::int64_t param_grad_blocks(const ParamGradArgs& a) {
  const std::int64_t work = a.spec.n_rows * a.spec.n_blocks;
  if (work == 0 || a.batch == 0) return 0;
  return grid_for(work, kThreads, a.num_sms);
}

cudaError_t launch_param_grad(const ParamGradArgs& a, cudaStream_t stream) {
  const std::int64_t blocks = param_grad_blocks(a);
  if (blocks == 0) return cudaSuccess;
  const auto grid = static_cast<unsigned>(blocks);
  return dispatch_dtype(a.dtype, [&](auto tag) -> cudaError_t {
    using scalar_t = decltype(tag);
    const auto* w = static_cast<const scalar_t*>(a.weight);
    const auto* g = static_cast<const scalar_t*>(a.grad_out);
    if (a.x_is_bool) {
      param_grad_kernel<scalar_t, SpikeByte><<<grid, kThreads, 0, stream>>>(
          a.spec, w, static_cast<const SpikeByte*>(a.x), g, a.grad, a.block_partials, a.batch, a.transpose);
    } else {
      param_grad_kernel<scalar_t, scalar_t><<<grid, kThreads, 0, stream>>>(
          a.spec, w, static_cast<const scalar_t*>(a.x), g, a.grad, a.block_partials, a.batch, a.transpose);
    }
    if (a.block_partials != nullptr) {
      const cudaError_t e = cudaGetLastError();
      if (e != cudaSuccess) return e;
      sum_block_partials_kernel<<<1, 1, 0, stream>>>(a.block_partials, blocks, a.grad);
    }
    return cudaGetLastError();
  });
}

cudaError_t launch_materialize(const MaterializeArgs& a, cudaStream_t stream) {
  const std::int64_t work = a.spec.n_rows * a.spec.n_blocks;
  if (work == 0) return cudaSuccess;
  const unsigned grid = grid_for(work, kThreads, a.num_sms);
  return dispatch_dtype(a.dtype, [&](auto tag) -> cudaError_t {
    using scalar_t = decltype(tag);
    materialize_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        a.spec, static_cast<const scalar_t*>(a.weight), static_cast<scalar_t*>(a.out));
    return cudaGetLastError();
  });
}

cudaError_t launch_block_counts(const CsrArgs& a, cudaStream_t stream) {
  const std::int64_t work = a.spec.n_rows * a.spec.n_blocks;
  if (work == 0) return cudaSuccess;
  block_counts_kernel<<<grid_for(work, kThreads, a.num_sms), kThreads, 0, stream>>>(a.spec,
                                                                                 a.counts);
  return cudaGetLastError();
}

cudaError_t launch_fill_csr(const CsrArgs& a, cudaStream_t stream) {
  const std::int64_t work = a.spec.n_rows * a.spec.n_blocks;
  if (work == 0) return cudaSuccess;
  const unsigned grid = grid_for(work, kThreads, a.num_sms);
  return dispatch_dtype(a.dtype, [&](auto tag) -> cudaError_t {
    using scalar_t = decltype(tag);
    fill_csr_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        a.spec, static_cast<const scalar_t*>(a.weight), a.counts, a.ends, a.indices,
        static_cast<scalar_t*>(a.values));
    return cudaGetLastError();
  });
}

cudaError_t launch_pattern_counts(const PatternArgs& a, cudaStream_t stream) {
  const std::int64_t work =
      a.spec.n_rows * (window_end_block(a.spec, a.window) - window_first_block(a.spec, a.window));
  if (work == 0) return cudaSuccess;
  pattern_counts_kernel<<<grid_for(work, kThreads, a.num_sms), kThreads, 0, stream>>>(
      a.spec, a.window, a.counts);
  return cudaGetLastError();
}

cudaError_t launch_fill_pattern(const PatternArgs& a, cudaStream_t stream) {
  const std::int64_t work =
      a.spec.n_rows * (window_end_block(a.spec, a.window) - window_first_block(a.spec, a.window));
  if (work == 0) return cudaSuccess;
  fill_pattern_kernel<<<grid_for(work, kThreads, a.num_sms), kThreads, 0, stream>>>(
      a.spec, a.window, a.counts, a.ends, a.indices);
  return cudaGetLastError();
}

cudaError_t launch_poison_if_invalid(const PoisonArgs& a, cudaStream_t stream) {
  if (a.dist == Dist::kHomo || a.numel == 0) return cudaSuccess;
  const unsigned grid = grid_for(a.numel, kThreads, a.num_sms);
  return dispatch_dtype(a.dtype, [&](auto tag) -> cudaError_t {
    using scalar_t = decltype(tag);
    poison_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(static_cast<const scalar_t*>(a.weight), a.dist,
                                                           static_cast<scalar_t*>(a.out), a.numel);
    return cudaGetLastError();
  });
}

}  // namespace brain::kernels::jitc::cuda
