// CUDA kernels of the CSR weight gradient and the in-place plasticity updates
// (see kernels/csr/csr_cuda.h). Both give each row (or column) to a warp whose lanes stride
// over its entries; every entry is written by exactly one lane, so no atomics are needed.
#include "kernels/csr/cuda_common.cuh"

namespace brain::kernels::csr::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

template <typename scalar_t, typename index_t, typename x_t>
__global__ void __launch_bounds__(kThreads)
    weight_grad_kernel(const index_t* __restrict__ indptr, const index_t* __restrict__ indices,
                       const x_t* __restrict__ x, const scalar_t* __restrict__ g,
                       scalar_t* __restrict__ dw, std::int64_t n_rows, std::int64_t n_cols,
                       std::int64_t batch, std::int64_t nnz, bool transpose, bool accumulate) {
  using acc_t = typename AccType<scalar_t>::type;
  const int lane = threadIdx.x % kWarp;
  const std::int64_t first = (std::int64_t{blockIdx.x} * kThreads + threadIdx.x) / kWarp;
  const std::int64_t n_groups = std::int64_t{gridDim.x} * kThreads / kWarp;
  const std::int64_t n_x = transpose ? n_rows : n_cols;
  const std::int64_t n_g = transpose ? n_cols : n_rows;
  for (std::int64_t i = first; i < n_rows; i += n_groups) {
    const std::int64_t k0 = indptr[i] < 0 ? 0 : static_cast<std::int64_t>(indptr[i]);  // within [0, nnz)
    const std::int64_t k1 = indptr[i + 1] > nnz ? nnz : static_cast<std::int64_t>(indptr[i + 1]);
    for (std::int64_t k = k0 + lane; k < k1; k += kWarp) {
      const std::int64_t j = indices[k];
      acc_t acc = 0;
      if (j >= 0 && j < n_cols) {
        for (std::int64_t b = 0; b < batch; ++b) {
          const x_t xv = transpose ? x[b * n_x + i] : x[b * n_x + j];
          if (!is_active(xv)) continue;
          const scalar_t gv = transpose ? g[b * n_g + j] : g[b * n_g + i];
          acc += to_acc<acc_t>(xv) * to_acc<acc_t>(gv);
        }
      }
      dw[k] = accumulate ? from_acc<scalar_t>(to_acc<acc_t>(dw[k]) + acc) : from_acc<scalar_t>(acc);
    }
  }
}

template <typename scalar_t, typename index_t, typename s_t>
__global__ void __launch_bounds__(kThreads)
    owner_update_kernel(const index_t* __restrict__ ptr, const index_t* __restrict__ source,
                        const index_t* __restrict__ target, scalar_t* __restrict__ w,
                        const s_t* __restrict__ spikes, const scalar_t* __restrict__ trace,
                        std::int64_t n_owners, std::int64_t n_trace, std::int64_t nnz,
                        double scale, bool has_min, bool has_max, double w_min, double w_max) {
  using acc_t = typename AccType<scalar_t>::type;
  const int lane = threadIdx.x % kWarp;
  const std::int64_t first = (std::int64_t{blockIdx.x} * kThreads + threadIdx.x) / kWarp;
  const std::int64_t n_groups = std::int64_t{gridDim.x} * kThreads / kWarp;
  for (std::int64_t o = first; o < n_owners; o += n_groups) {
    const s_t s = spikes[o];
    if (!is_active(s)) continue;
    const acc_t factor = static_cast<acc_t>(scale) * to_acc<acc_t>(s);
    // Clamped to [0, nnz): source[e] must not be read past the entries either.
    const std::int64_t e0 = ptr[o] < 0 ? 0 : static_cast<std::int64_t>(ptr[o]);
    const std::int64_t e1 = ptr[o + 1] > nnz ? nnz : static_cast<std::int64_t>(ptr[o + 1]);
    for (std::int64_t e = e0 + lane; e < e1; e += kWarp) {
      const std::int64_t src = source[e];
      const std::int64_t t = target ? static_cast<std::int64_t>(target[e]) : e;
      if (src < 0 || src >= n_trace || t < 0 || t >= nnz) continue;
      acc_t v = to_acc<acc_t>(w[t]) + factor * to_acc<acc_t>(trace[src]);
      if (has_min && v < static_cast<acc_t>(w_min)) v = static_cast<acc_t>(w_min);
      if (has_max && v > static_cast<acc_t>(w_max)) v = static_cast<acc_t>(w_max);
      w[t] = from_acc<scalar_t>(v);
    }
  }
}

}  // namespace

cudaError_t launch_weight_grad(const WeightGradArgs& a, cudaStream_t stream) {
  if (a.nnz == 0 || a.n_rows == 0) return cudaSuccess;
  return dispatch_dtype(a.dtype, [&](auto scalar_tag) {
    using scalar_t = decltype(scalar_tag);
    return dispatch_index(a.index64, [&](auto index_tag) {
      using index_t = decltype(index_tag);
      const unsigned grid = grid_for(a.n_rows * kWarp, kThreads, a.num_sms);
      const auto* indptr = static_cast<const index_t*>(a.indptr);
      const auto* indices = static_cast<const index_t*>(a.indices);
      const auto* g = static_cast<const scalar_t*>(a.grad_out);
      auto* dw = static_cast<scalar_t*>(a.grad_weights);
      if (a.x_is_bool) {
        weight_grad_kernel<scalar_t, index_t, SpikeByte><<<grid, kThreads, 0, stream>>>(
            indptr, indices, static_cast<const SpikeByte*>(a.x), g, dw, a.n_rows, a.n_cols, a.batch,
            a.nnz, a.transpose, a.accumulate);
      } else {
        weight_grad_kernel<scalar_t, index_t, scalar_t><<<grid, kThreads, 0, stream>>>(
            indptr, indices, static_cast<const scalar_t*>(a.x), g, dw, a.n_rows, a.n_cols,
            a.batch, a.nnz, a.transpose, a.accumulate);
      }
      return cudaGetLastError();
    });
  });
}

cudaError_t launch_owner_update(const OwnerUpdateArgs& a, cudaStream_t stream) {
  if (a.n_owners == 0 || a.nnz == 0) return cudaSuccess;
  return dispatch_dtype(a.dtype, [&](auto scalar_tag) {
    using scalar_t = decltype(scalar_tag);
    return dispatch_index(a.index64, [&](auto index_tag) {
      using index_t = decltype(index_tag);
      const unsigned grid = grid_for(a.n_owners * kWarp, kThreads, a.num_sms);
      const auto* ptr = static_cast<const index_t*>(a.ptr);
      const auto* source = static_cast<const index_t*>(a.source);
      const auto* target = static_cast<const index_t*>(a.target);
      auto* w = static_cast<scalar_t*>(a.weights);
      const auto* trace = static_cast<const scalar_t*>(a.trace);
      if (a.spikes_is_bool) {
        owner_update_kernel<scalar_t, index_t, SpikeByte><<<grid, kThreads, 0, stream>>>(
            ptr, source, target, w, static_cast<const SpikeByte*>(a.spikes), trace, a.n_owners,
            a.n_trace, a.nnz, a.scale, a.has_min, a.has_max, a.w_min, a.w_max);
      } else {
        owner_update_kernel<scalar_t, index_t, scalar_t><<<grid, kThreads, 0, stream>>>(
            ptr, source, target, w, static_cast<const scalar_t*>(a.spikes), trace, a.n_owners,
            a.n_trace, a.nnz, a.scale, a.has_min, a.has_max, a.w_min, a.w_max);
      }
      return cudaGetLastError();
    });
  });
}

}  // namespace brain::kernels::csr::cuda
