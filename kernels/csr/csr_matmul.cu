// CUDA kernels of csr_matmul / event_csr_matmul (see kernels/csr/csr_cuda.h).
//
// Gather (y = A x): a group of TPR threads per row, TPR chosen by the average row length
// (8 for short rows, a warp for typical synapse rows, a whole block for long ones), summed
// with shuffles; rows are grid-strided, batch items spread over gridDim.y.
// Scatter (y = A^T x): a group per row adds w * x[row] into y[col] with atomics. A row is
// split over gridDim.y "slices" that interleave its entries, so long rows are shared by
// several groups instead of serialising one. In the event form, a row whose x is zero is
// left after one load, so the cost is (active rows) x (row length) plus one read per row;
// the event form scans rows 32 at a time with a ballot (scatter_event_kernel).
#include "kernels/csr/cuda_common.cuh"

namespace brain::kernels::csr::cuda {
namespace {

constexpr int kThreads = 256;

template <int TPR, typename scalar_t, typename index_t, typename x_t>
__global__ void __launch_bounds__(kThreads)
    gather_kernel(const index_t* __restrict__ indptr, const index_t* __restrict__ indices,
                  const scalar_t* __restrict__ weights, bool homo, const x_t* __restrict__ x,
                  scalar_t* __restrict__ out, std::int64_t n_rows, std::int64_t n_cols,
                  std::int64_t batch, std::int64_t nnz, bool event) {
  using acc_t = typename AccType<scalar_t>::type;
  constexpr int kGroupsPerBlock = kThreads / TPR;
  const int lane = threadIdx.x % TPR;
  const std::int64_t first_group = std::int64_t{blockIdx.x} * kGroupsPerBlock + threadIdx.x / TPR;
  const std::int64_t n_groups = std::int64_t{gridDim.x} * kGroupsPerBlock;
  const acc_t w_homo = homo ? to_acc<acc_t>(weights[0]) : acc_t(0);
  __shared__ acc_t warp_sums[kThreads / 32];

  for (std::int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const x_t* xb = x + b * n_cols;
    for (std::int64_t i = first_group; i < n_rows; i += n_groups) {
      // Clamped to [0, nnz): a row of a structure that is not non-decreasing can reach past
      // the entries; such entries are skipped, like out-of-range indices.
      const std::int64_t k0 = indptr[i] < 0 ? 0 : static_cast<std::int64_t>(indptr[i]);
      const std::int64_t k1 = indptr[i + 1] > nnz ? nnz : static_cast<std::int64_t>(indptr[i + 1]);
      acc_t acc = 0;
      for (std::int64_t k = k0 + lane; k < k1; k += TPR) {
        const std::int64_t j = indices[k];
        if (j < 0 || j >= n_cols) continue;
        const x_t xv = xb[j];
        if (event && !is_active(xv)) continue;
        acc += (homo ? w_homo : to_acc<acc_t>(weights[k])) * to_acc<acc_t>(xv);
      }
      if constexpr (TPR <= 32) {
        acc = group_sum<TPR>(acc);
        if (lane == 0) out[b * n_rows + i] = from_acc<scalar_t>(acc);
      } else {
        // The whole block is one group: reduce warps, then the first warp.
        acc = group_sum<32>(acc);
        if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x / 32] = acc;
        __syncthreads();
        if (threadIdx.x < 32) {
          acc = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : acc_t(0);
          acc = group_sum<32>(acc);
          if (threadIdx.x == 0) out[b * n_rows + i] = from_acc<scalar_t>(acc);
        }
        __syncthreads();
      }
    }
  }
}

template <typename scalar_t, typename index_t, typename x_t, typename out_t>
__global__ void __launch_bounds__(kThreads)
    scatter_kernel(const index_t* __restrict__ indptr, const index_t* __restrict__ indices,
                   const scalar_t* __restrict__ weights, bool homo, const x_t* __restrict__ x,
                   out_t* __restrict__ out, std::int64_t n_rows, std::int64_t n_cols,
                   std::int64_t batch, std::int64_t nnz, bool event) {
  using acc_t = typename AccType<scalar_t>::type;
  constexpr int TPR = 32;
  constexpr int kGroupsPerBlock = kThreads / TPR;
  const int lane = threadIdx.x % TPR;
  const std::int64_t first_group = std::int64_t{blockIdx.x} * kGroupsPerBlock + threadIdx.x / TPR;
  const std::int64_t n_groups = std::int64_t{gridDim.x} * kGroupsPerBlock;
  const std::int64_t slice = blockIdx.y;
  const std::int64_t stride = std::int64_t{TPR} * gridDim.y;
  const acc_t w_homo = homo ? to_acc<acc_t>(weights[0]) : acc_t(0);

  for (std::int64_t i = first_group; i < n_rows; i += n_groups) {
    const std::int64_t k0 = indptr[i] < 0 ? 0 : static_cast<std::int64_t>(indptr[i]);  // within [0, nnz)
    const std::int64_t k1 = indptr[i + 1] > nnz ? nnz : static_cast<std::int64_t>(indptr[i + 1]);
    for (std::int64_t b = 0; b < batch; ++b) {
      const x_t xv = x[b * n_rows + i];
      if (event && !is_active(xv)) continue;
      const acc_t xs = to_acc<acc_t>(xv);
      out_t* ob = out + b * n_cols;
      for (std::int64_t k = k0 + slice * TPR + lane; k < k1; k += stride) {
        const std::int64_t j = indices[k];
        if (j < 0 || j >= n_cols) continue;
        const acc_t w = homo ? w_homo : to_acc<acc_t>(weights[k]);
        atomicAdd(ob + j, static_cast<out_t>(w * xs));
      }
    }
  }
}

// The event form of the scatter: a warp takes 32 consecutive rows at a time; each lane loads
// one row's x (one coalesced load per 32 rows instead of a dependent load per row, which left
// the launch latency-bound on the scan at low firing), a ballot marks the active rows, and the
// warp then spreads each active row's entries over its lanes and the gridDim.y slices.
template <typename scalar_t, typename index_t, typename x_t, typename out_t>
__global__ void __launch_bounds__(kThreads)
    scatter_event_kernel(const index_t* __restrict__ indptr, const index_t* __restrict__ indices,
                         const scalar_t* __restrict__ weights, bool homo, const x_t* __restrict__ x,
                         out_t* __restrict__ out, std::int64_t n_rows, std::int64_t n_cols,
                         std::int64_t batch, std::int64_t nnz) {
  using acc_t = typename AccType<scalar_t>::type;
  constexpr unsigned kAll = 0xffffffffu;
  const int lane = threadIdx.x & 31;
  const std::int64_t first_warp = (std::int64_t{blockIdx.x} * kThreads + threadIdx.x) / 32;
  const std::int64_t n_warps = std::int64_t{gridDim.x} * (kThreads / 32);
  const std::int64_t slice = blockIdx.y;
  const std::int64_t stride = std::int64_t{32} * gridDim.y;
  const acc_t w_homo = homo ? to_acc<acc_t>(weights[0]) : acc_t(0);

  // base is the same for the whole warp, so every lane reaches each ballot and shuffle.
  for (std::int64_t base = first_warp * 32; base < n_rows; base += n_warps * 32) {
    const std::int64_t my_row = base + lane;
    for (std::int64_t b = 0; b < batch; ++b) {
      const bool in_range = my_row < n_rows;
      const x_t xv = in_range ? x[b * n_rows + my_row] : x_t{};
      unsigned active = __ballot_sync(kAll, in_range && is_active(xv));
      const acc_t my_x = to_acc<acc_t>(xv);
      out_t* ob = out + b * n_cols;
      while (active != 0u) {
        const int src = __ffs(static_cast<int>(active)) - 1;
        active &= active - 1u;
        const acc_t xs = __shfl_sync(kAll, my_x, src);
        const std::int64_t row = base + src;
        const std::int64_t k0 = indptr[row] < 0 ? 0 : static_cast<std::int64_t>(indptr[row]);
        const std::int64_t k1 = indptr[row + 1] > nnz ? nnz : static_cast<std::int64_t>(indptr[row + 1]);
        for (std::int64_t k = k0 + slice * 32 + lane; k < k1; k += stride) {
          const std::int64_t j = indices[k];
          if (j < 0 || j >= n_cols) continue;
          const acc_t w = homo ? w_homo : to_acc<acc_t>(weights[k]);
          atomicAdd(ob + j, static_cast<out_t>(w * xs));
        }
      }
    }
  }
}

template <typename scalar_t, typename index_t, typename x_t>
cudaError_t launch_typed(const MatmulArgs& a, cudaStream_t stream) {
  const auto* indptr = static_cast<const index_t*>(a.indptr);
  const auto* indices = static_cast<const index_t*>(a.indices);
  const auto* weights = static_cast<const scalar_t*>(a.weights);
  const auto* x = static_cast<const x_t*>(a.x);
  const std::int64_t avg_row = a.n_rows > 0 ? a.nnz / a.n_rows : 0;

  if (!a.transpose) {
    auto* out = static_cast<scalar_t*>(a.out);
    const unsigned grid_y = static_cast<unsigned>(a.batch < 65535 ? a.batch : 65535);
    auto launch = [&](auto kernel, int tpr) {
      const dim3 grid(grid_for(a.n_rows * tpr, kThreads, a.num_sms), grid_y);
      kernel<<<grid, kThreads, 0, stream>>>(indptr, indices, weights, a.homo, x, out, a.n_rows,
                                            a.n_cols, a.batch, a.nnz, a.event);
    };
    if (avg_row <= 12) {
      launch(gather_kernel<8, scalar_t, index_t, x_t>, 8);
    } else if (avg_row <= 512) {
      launch(gather_kernel<32, scalar_t, index_t, x_t>, 32);
    } else {
      launch(gather_kernel<kThreads, scalar_t, index_t, x_t>, kThreads);
    }
    return cudaGetLastError();
  }

  // Enough slices that a row is spread over groups of about 4 x 32 entries each.
  std::int64_t slices = (avg_row + 127) / 128;
  slices = slices < 1 ? 1 : (slices > 32 ? 32 : slices);
  using out_t = typename AccType<scalar_t>::type;  // float for float and the half types
  // A warp per row while every row gets its own warp (the scan is one load per warp); past
  // that, warps would scan many rows each, one dependent load at a time: tile with a ballot.
  const std::int64_t warp_slots = std::int64_t{a.num_sms} * 16 * (kThreads / 32);
  if (a.event && a.n_rows > warp_slots) {
    const dim3 grid(grid_for(a.n_rows, kThreads, a.num_sms), static_cast<unsigned>(slices));
    scatter_event_kernel<scalar_t, index_t, x_t, out_t><<<grid, kThreads, 0, stream>>>(
        indptr, indices, weights, a.homo, x, static_cast<out_t*>(a.out), a.n_rows, a.n_cols,
        a.batch, a.nnz);
    return cudaGetLastError();
  }
  const dim3 grid(grid_for(a.n_rows * 32, kThreads, a.num_sms), static_cast<unsigned>(slices));
  scatter_kernel<scalar_t, index_t, x_t, out_t><<<grid, kThreads, 0, stream>>>(
      indptr, indices, weights, a.homo, x, static_cast<out_t*>(a.out), a.n_rows, a.n_cols,
      a.batch, a.nnz, a.event);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_matmul(const MatmulArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.n_rows == 0 || (a.transpose ? a.n_cols : a.n_rows) == 0) return cudaSuccess;
  return dispatch_dtype(a.dtype, [&](auto scalar_tag) {
    using scalar_t = decltype(scalar_tag);
    return dispatch_index(a.index64, [&](auto index_tag) {
      using index_t = decltype(index_tag);
      return a.x_is_bool ? launch_typed<scalar_t, index_t, SpikeByte>(a, stream)
                         : launch_typed<scalar_t, index_t, scalar_t>(a, stream);
    });
  });
}

}  // namespace brain::kernels::csr::cuda
