// CUDA host glue of the CSR op family: checks, device guard, current stream, launch, launch
// check. The kernels themselves are torch-free (kernels/csr/*.cu). No op here reads values
// back to the host, except validate_csr, whose whole purpose is to do so.
#include <array>

#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <c10/core/SymIntArrayRef.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <brain/ops.h>

#include "csrc/ops/csr_common.h"
#include "csrc/ops/cuda/cuda_glue.h"
#include "kernels/csr/csr_cuda.h"

namespace brain::ops {
namespace {

namespace kc = brain::kernels::csr::cuda;

using cuda_glue::check_cuda;
using cuda_glue::kernel_dtype;
using cuda_glue::sm_count;

template <bool kEvent>
at::Tensor csr_matmul_cuda(const at::Tensor& indptr_in, const at::Tensor& indices_in,
                           const at::Tensor& weights_in, const at::Tensor& x_in,
                           c10::SymIntArrayRef shape, bool transpose) {
  const char* op = kEvent ? "brain::event_csr_matmul" : "brain::csr_matmul";
  const auto g = detail::check_csr_matmul_args(op, indptr_in, indices_in, weights_in, x_in, shape,
                                               transpose, /*allow_half=*/true);
  check_cuda(op, indptr_in);
  const c10::cuda::CUDAGuard guard(indptr_in.device());
  const at::Tensor indptr = indptr_in.contiguous();
  const at::Tensor indices = indices_in.contiguous();
  const at::Tensor weights = weights_in.contiguous();
  const at::Tensor x = x_in.contiguous();
  const int64_t batch = g.batch.expect_int();
  const int64_t n_out = g.n_out.expect_int();
  // The scatter adds with atomics in whatever order the threads arrive; under
  // torch.use_deterministic_algorithms the sum goes column by column in a fixed order instead.
  if (transpose && at::globalContext().deterministicAlgorithms()) {
    return detail::csr_transposed_matmul_by_gather(indptr, indices, weights, g.homo, x,
                                                   g.n_rows.expect_int(), g.n_cols.expect_int(),
                                                   kEvent);
  }
  const auto dtype = weights.scalar_type();
  const bool half = dtype == at::kHalf || dtype == at::kBFloat16;

  at::Tensor out = transpose ? at::zeros({batch, n_out}, weights.options().dtype(half ? at::kFloat : dtype))
                             : at::empty({batch, n_out}, weights.options());
  kc::MatmulArgs a;
  a.indptr = indptr.const_data_ptr();
  a.indices = indices.const_data_ptr();
  a.index64 = indptr.scalar_type() == at::kLong;
  a.weights = weights.const_data_ptr();
  a.homo = g.homo;
  a.dtype = kernel_dtype(dtype);
  a.x = x.const_data_ptr();
  a.x_is_bool = x.scalar_type() == at::kBool;
  a.out = out.data_ptr();
  a.n_rows = g.n_rows.expect_int();
  a.n_cols = g.n_cols.expect_int();
  a.batch = batch;
  a.nnz = indices.size(0);
  a.transpose = transpose;
  a.event = kEvent;
  a.num_sms = sm_count();
  C10_CUDA_CHECK(kc::launch_matmul(a, at::cuda::getCurrentCUDAStream()));
  if (transpose && half) out = out.to(dtype);
  return g.batched ? out : out.view({n_out});
}

std::tuple<at::Tensor, at::Tensor> csr_matmul_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& indptr_in, const at::Tensor& indices_in,
    const at::Tensor& weights, const at::Tensor& x_in, c10::SymIntArrayRef shape, bool transpose,
    std::array<bool, 2> output_mask) {
  const char* op = "brain::_csr_matmul_backward";
  const auto g = detail::check_csr_matmul_args(op, indptr_in, indices_in, weights, x_in, shape,
                                               transpose, /*allow_half=*/true);
  check_cuda(op, indptr_in);
  TORCH_CHECK(grad_out.sym_sizes() == c10::SymIntArrayRef(detail::csr_output_sizes(g)), op,
              ": grad_out must have the output's shape");
  TORCH_CHECK(grad_out.scalar_type() == weights.scalar_type(), op,
              ": grad_out must have the weights' dtype ", weights.scalar_type());
  const c10::cuda::CUDAGuard guard(indptr_in.device());
  at::Tensor grad_x, grad_w;
  if (output_mask[0]) {
    TORCH_CHECK(x_in.scalar_type() != at::kBool, op, ": bool x (events) has no gradient");
    grad_x = csr_matmul(indptr_in, indices_in, weights, grad_out, C10_AS_INTARRAYREF_SLOW(shape),
                        !transpose);
  }
  if (output_mask[1]) {
    const at::Tensor indptr = indptr_in.contiguous();
    const at::Tensor indices = indices_in.contiguous();
    const at::Tensor x = x_in.contiguous();
    const at::Tensor go = grad_out.contiguous();
    const int64_t nnz = indices.size(0);
    at::Tensor dw = at::empty({nnz}, weights.options().memory_format(at::MemoryFormat::Contiguous));
    kc::WeightGradArgs a;
    a.indptr = indptr.const_data_ptr();
    a.indices = indices.const_data_ptr();
    a.index64 = indptr.scalar_type() == at::kLong;
    a.dtype = kernel_dtype(weights.scalar_type());
    a.x = x.const_data_ptr();
    a.x_is_bool = x.scalar_type() == at::kBool;
    a.grad_out = go.const_data_ptr();
    a.grad_weights = dw.data_ptr();
    a.n_rows = g.n_rows.expect_int();
    a.n_cols = g.n_cols.expect_int();
    a.batch = g.batch.expect_int();
    a.nnz = nnz;
    a.transpose = transpose;
    a.num_sms = sm_count();
    C10_CUDA_CHECK(kc::launch_weight_grad(a, at::cuda::getCurrentCUDAStream()));
    if (g.homo) {
      const auto acc = weights.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
      grad_w = dw.sum(at::IntArrayRef{0}, false, acc).to(weights.scalar_type()).reshape(weights.sizes());
    } else {
      grad_w = dw;
    }
  }
  return {grad_x, grad_w};
}

// Device-generic checks through ATen reductions; each .item() waits for the GPU, which is
// the point of this op (run once on new connectivity).
void validate_csr_cuda(const at::Tensor& indptr, const at::Tensor& indices,
                       c10::SymIntArrayRef shape) {
  const char* op = "brain::validate_csr";
  const auto [n_rows_s, n_cols_s] = detail::check_shape(op, shape);
  detail::check_csr_structure(op, indptr, indices, n_rows_s);
  const int64_t n_rows = n_rows_s.expect_int();
  const int64_t n_cols = n_cols_s.expect_int();
  const int64_t nnz = indices.size(0);
  const c10::cuda::CUDAGuard guard(indptr.device());
  const int64_t first = indptr[0].item<int64_t>();
  const int64_t last = indptr[n_rows].item<int64_t>();
  TORCH_CHECK(first == 0, op, ": indptr[0] must be 0, got ", first);
  TORCH_CHECK(last == nnz, op, ": indptr[n_rows] must equal nnz = indices.numel() = ", nnz, ", got ", last);
  if (n_rows > 0) {
    const at::Tensor decreasing = indptr.narrow(0, 1, n_rows).lt(indptr.narrow(0, 0, n_rows));
    if (decreasing.any().item<bool>()) {
      const int64_t i = decreasing.to(at::kInt).argmax().item<int64_t>();
      TORCH_CHECK(false, op, ": indptr must be non-decreasing, but indptr[", i + 1, "] = ",
                  indptr[i + 1].item<int64_t>(), " < indptr[", i, "] = ", indptr[i].item<int64_t>());
    }
  }
  if (nnz > 0) {
    const at::Tensor bad = indices.lt(0).logical_or(indices.ge(n_cols));
    if (bad.any().item<bool>()) {
      const int64_t k = bad.to(at::kInt).argmax().item<int64_t>();
      TORCH_CHECK(false, op, ": indices[", k, "] = ", indices[k].item<int64_t>(),
                  " is out of range [0, ", n_cols, ")");
    }
  }
}

// Stable sort of entries by column: CSR order is row-major, so each column keeps its rows in
// ascending order, as the CPU counting sort does. No host sync (sizes are all known).
std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_to_csc_cuda(const at::Tensor& indptr_in,
                                                               const at::Tensor& indices_in,
                                                               c10::SymIntArrayRef shape) {
  const char* op = "brain::csr_to_csc";
  const auto [n_rows_s, n_cols_s] = detail::check_shape(op, shape);
  detail::check_csr_structure(op, indptr_in, indices_in, n_rows_s);
  check_cuda(op, indptr_in);
  const c10::cuda::CUDAGuard guard(indptr_in.device());
  const int64_t n_rows = n_rows_s.expect_int();
  const int64_t n_cols = n_cols_s.expect_int();
  const at::Tensor indptr = indptr_in.to(at::kLong);
  const at::Tensor cols = indices_in.to(at::kLong);
  const int64_t nnz = cols.size(0);
  const at::Tensor row_len = indptr.narrow(0, 1, n_rows).sub(indptr.narrow(0, 0, n_rows));
  const at::Tensor rows = at::repeat_interleave(at::arange(n_rows, indptr.options()), row_len, 0, nnz);
  const at::Tensor perm = std::get<1>(at::sort(cols, /*stable=*/true, 0, false));
  at::Tensor counts = at::zeros({n_cols + 1}, indptr.options());
  counts.index_add_(0, cols.add(1), at::ones_like(cols));
  const auto index_dtype = indptr_in.scalar_type();
  return {at::cumsum(counts, 0).to(index_dtype), rows.index_select(0, perm).to(index_dtype),
          perm.to(index_dtype)};
}

void owner_update_cuda(const char* op, at::Tensor& weights, const at::Tensor& ptr_in,
                       const at::Tensor& source_in, const at::Tensor* target_in,
                       const at::Tensor& spikes_in, const at::Tensor& trace_in, double scale,
                       std::optional<double> w_min, std::optional<double> w_max) {
  check_cuda(op, weights);
  const int64_t nnz = source_in.size(0);
  TORCH_CHECK(weights.dim() == 1 && weights.size(0) == nnz, op,
              ": weights must be 1-D with one value per stored entry (", nnz, "), got ",
              weights.sizes());
  TORCH_CHECK(weights.is_contiguous(), op, ": weights is updated in place and must be contiguous");
  kernel_dtype(weights.scalar_type());
  TORCH_CHECK(spikes_in.dim() == 1 && spikes_in.size(0) == ptr_in.size(0) - 1, op,
              ": spikes must be 1-D with one entry per ", target_in ? "column" : "row");
  TORCH_CHECK(spikes_in.scalar_type() == at::kBool || spikes_in.scalar_type() == weights.scalar_type(),
              op, ": spikes must be bool or have the weights' dtype, got ", spikes_in.scalar_type());
  TORCH_CHECK(trace_in.dim() == 1 && trace_in.scalar_type() == weights.scalar_type(), op,
              ": trace must be 1-D with the weights' dtype");
  for (const at::Tensor* t : {&ptr_in, &source_in, &spikes_in, &trace_in}) {
    TORCH_CHECK(t->device() == weights.device(), op, ": all tensors must be on one device");
  }
  const c10::cuda::CUDAGuard guard(weights.device());
  const at::Tensor ptr = ptr_in.contiguous();
  const at::Tensor source = source_in.contiguous();
  const at::Tensor target = target_in ? target_in->contiguous() : at::Tensor();
  const at::Tensor spikes = spikes_in.contiguous();
  const at::Tensor trace = trace_in.contiguous();
  kc::OwnerUpdateArgs a;
  a.ptr = ptr.const_data_ptr();
  a.source = source.const_data_ptr();
  a.target = target_in ? target.const_data_ptr() : nullptr;
  a.index64 = ptr.scalar_type() == at::kLong;
  a.dtype = kernel_dtype(weights.scalar_type());
  a.weights = weights.data_ptr();
  a.spikes = spikes.const_data_ptr();
  a.spikes_is_bool = spikes.scalar_type() == at::kBool;
  a.trace = trace.const_data_ptr();
  a.n_owners = ptr.size(0) - 1;
  a.n_trace = trace.size(0);
  a.nnz = nnz;
  a.scale = scale;
  a.has_min = w_min.has_value();
  a.has_max = w_max.has_value();
  a.w_min = w_min.value_or(0.0);
  a.w_max = w_max.value_or(0.0);
  a.num_sms = sm_count();
  C10_CUDA_CHECK(kc::launch_owner_update(a, at::cuda::getCurrentCUDAStream()));
}

void csr_update_on_pre_cuda(at::Tensor& weights, const at::Tensor& indptr, const at::Tensor& indices,
                            const at::Tensor& pre_spikes, const at::Tensor& post_trace, double scale,
                            std::optional<double> w_min, std::optional<double> w_max) {
  const char* op = "brain::csr_update_on_pre_";
  detail::check_csr_structure(op, indptr, indices, pre_spikes.size(0));
  owner_update_cuda(op, weights, indptr, indices, nullptr, pre_spikes, post_trace, scale, w_min, w_max);
}

void csr_update_on_post_cuda(at::Tensor& weights, const at::Tensor& csc_indptr,
                             const at::Tensor& csc_indices, const at::Tensor& perm,
                             const at::Tensor& post_spikes, const at::Tensor& pre_trace,
                             double scale, std::optional<double> w_min, std::optional<double> w_max) {
  const char* op = "brain::csr_update_on_post_";
  detail::check_csr_structure(op, csc_indptr, csc_indices, post_spikes.size(0));
  TORCH_CHECK(perm.dim() == 1 && perm.size(0) == csc_indices.size(0) &&
                  perm.scalar_type() == csc_indices.scalar_type() && perm.device() == weights.device(),
              op, ": perm must be 1-D [nnz] with the indices' dtype (from brain::csr_to_csc)");
  owner_update_cuda(op, weights, csc_indptr, csc_indices, &perm, post_spikes, pre_trace, scale,
                    w_min, w_max);
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CUDA, m) {
  m.impl("csr_matmul", &csr_matmul_cuda<false>);
  m.impl("event_csr_matmul", &csr_matmul_cuda<true>);
  m.impl("_csr_matmul_backward", &csr_matmul_backward_cuda);
  m.impl("validate_csr", &validate_csr_cuda);
  m.impl("csr_to_csc", &csr_to_csc_cuda);
  m.impl("csr_update_on_pre_", &csr_update_on_pre_cuda);
  m.impl("csr_update_on_post_", &csr_update_on_post_cuda);
}

}  // namespace brain::ops
