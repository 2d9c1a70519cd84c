// CUDA host glue of the JIT-connectivity op family: checks, device guard, current stream,
// launch, launch check. No op reads values back to the host except jitc_to_csr, which must
// learn nnz to allocate its output. Weight parameters stay on the device; invalid ones
// (std < 0, high < low, non-finite) turn the output into NaN instead of raising, because
// raising would need a host sync.
#include <algorithm>
#include <array>

#include <ATen/Context.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/SymIntArrayRef.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "csrc/ops/cuda/cuda_glue.h"
#include "csrc/ops/jitc_common.h"
#include "kernels/jitc/jitc_cuda.h"

namespace brain::ops {
namespace {

namespace k = brain::kernels::jitc;
namespace kc = brain::kernels::jitc::cuda;

using cuda_glue::check_cuda;
using cuda_glue::kernel_dtype;
using cuda_glue::sm_count;

std::string_view view(c10::string_view s) { return {s.data(), s.size()}; }

// out where the weight parameters are valid, NaN everywhere otherwise; decided on the device
// in one launch that writes nothing when they are valid. out must be contiguous, of the
// weight's dtype.
at::Tensor poison_if_invalid(at::Tensor out, const at::Tensor& weight, k::Dist dist) {
  kc::PoisonArgs a;
  a.weight = weight.const_data_ptr();
  a.dtype = kernel_dtype(weight.scalar_type());
  a.dist = dist;
  a.out = out.data_ptr();
  a.numel = out.numel();
  a.num_sms = sm_count();
  C10_CUDA_CHECK(kc::launch_poison_if_invalid(a, at::cuda::getCurrentCUDAStream()));
  return out;
}

k::Spec spec_for(const detail::JitcGeometry& g, double prob, int64_t seed) {
  return k::make_spec(prob, seed, g.n_rows.expect_int(), g.n_cols.expect_int(), g.dist);
}

at::Tensor matmul_impl(const char* op, bool event, const at::Tensor& x_in,
                       const at::Tensor& weight_in, double prob, int64_t seed,
                       c10::SymIntArrayRef shape, c10::string_view dist, bool transpose) {
  const auto g = detail::check_jitc_matmul_args(op, x_in, weight_in, prob, shape, view(dist),
                                                transpose, /*allow_half=*/true);
  check_cuda(op, x_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor weight = weight_in.contiguous();
  const auto dtype = weight.scalar_type();
  const bool half = dtype == at::kHalf || dtype == at::kBFloat16;
  const int64_t batch = g.batch.expect_int();
  at::Tensor acc = at::zeros({batch, g.n_out.expect_int()},
                             weight.options().dtype(half ? at::kFloat : dtype));
  kc::MatmulArgs a;
  a.spec = spec_for(g, prob, seed);
  // Atomics add a row's blocks (and, transposed, the rows of a column) in arrival order; under
  // torch.use_deterministic_algorithms each output gets one thread that adds its terms in the
  // CPU op's order (kernels/jitc/jitc_cuda.h), and float32/float64 results are the CPU's bits.
  a.deterministic = at::globalContext().deterministicAlgorithms();
  a.weight = weight.const_data_ptr();
  a.dtype = kernel_dtype(dtype);
  a.x = x.const_data_ptr();
  a.x_is_bool = x.scalar_type() == at::kBool;
  a.out = acc.data_ptr();
  a.batch = batch;
  a.transpose = transpose;
  a.event = event;
  a.num_sms = sm_count();
  C10_CUDA_CHECK(kc::launch_matmul(a, at::cuda::getCurrentCUDAStream()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor out = half ? acc.to(dtype) : acc;
  if (!g.batched) out = out.reshape({g.n_out.expect_int()});
  return poison_if_invalid(out, weight, g.dist);
}

template <bool kEvent>
at::Tensor jitc_matmul_cuda(const at::Tensor& x, const at::Tensor& weight, double prob,
                            int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist,
                            bool transpose) {
  return matmul_impl(kEvent ? "brain::event_jitc_matmul" : "brain::jitc_matmul", kEvent, x,
                     weight, prob, seed, shape, dist, transpose);
}

std::tuple<at::Tensor, at::Tensor> jitc_matmul_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x_in, const at::Tensor& weight_in, double prob,
    int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist, bool transpose,
    std::array<bool, 2> output_mask) {
  const char* op = "brain::_jitc_matmul_backward";
  const auto g = detail::check_jitc_matmul_args(op, x_in, weight_in, prob, shape, view(dist),
                                                transpose, /*allow_half=*/true);
  check_cuda(op, x_in);
  TORCH_CHECK(grad_out.sym_sizes() == c10::SymIntArrayRef(detail::jitc_output_sizes(g)), op,
              ": grad_out must have the output's shape");
  TORCH_CHECK(grad_out.scalar_type() == weight_in.scalar_type(), op,
              ": grad_out must have the weight's dtype");
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor grad_x, grad_w;
  if (output_mask[0]) {
    TORCH_CHECK(x_in.scalar_type() != at::kBool, op, ": bool x (events) has no gradient");
    grad_x = matmul_impl(op, false, grad_out, weight_in, prob, seed, shape, dist, !transpose);
  }
  if (output_mask[1]) {
    const at::Tensor x = x_in.contiguous();
    const at::Tensor weight = weight_in.contiguous();
    const at::Tensor gout = grad_out.contiguous();
    at::Tensor grad = at::zeros({2}, weight.options().dtype(at::kDouble));
    kc::ParamGradArgs a;
    a.spec = spec_for(g, prob, seed);
    a.weight = weight.const_data_ptr();
    a.dtype = kernel_dtype(weight.scalar_type());
    a.x = x.const_data_ptr();
    a.x_is_bool = x.scalar_type() == at::kBool;
    a.grad_out = gout.const_data_ptr();
    a.grad = grad.data_ptr<double>();
    a.batch = g.batch.expect_int();
    a.transpose = transpose;
    a.num_sms = sm_count();
    // The blocks' sums are added atomically, or, deterministic, in block order by one thread.
    at::Tensor block_partials;
    if (at::globalContext().deterministicAlgorithms()) {
      block_partials = at::empty({2 * std::max<int64_t>(kc::param_grad_blocks(a), 1)}, grad.options());
      a.block_partials = block_partials.data_ptr<double>();
    }
    C10_CUDA_CHECK(kc::launch_param_grad(a, at::cuda::getCurrentCUDAStream()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    grad_w = grad.narrow(0, 0, k::num_params(g.dist)).to(weight.scalar_type()).reshape(weight.sizes());
  }
  return {grad_x, grad_w};
}

at::Tensor jitc_materialize_cuda(const at::Tensor& weight_in, double prob, int64_t seed,
                                 c10::SymIntArrayRef shape, c10::string_view dist) {
  const char* op = "brain::jitc_materialize";
  const auto g = detail::check_jitc_matrix_args(op, weight_in, prob, shape, view(dist),
                                                /*allow_half=*/true);
  check_cuda(op, weight_in);
  const c10::cuda::CUDAGuard guard(weight_in.device());
  const at::Tensor weight = weight_in.contiguous();
  at::Tensor out = at::zeros({g.n_rows.expect_int(), g.n_cols.expect_int()}, weight.options());
  kc::MaterializeArgs a;
  a.spec = spec_for(g, prob, seed);
  a.weight = weight.const_data_ptr();
  a.dtype = kernel_dtype(weight.scalar_type());
  a.out = out.data_ptr();
  a.num_sms = sm_count();
  C10_CUDA_CHECK(kc::launch_materialize(a, at::cuda::getCurrentCUDAStream()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return poison_if_invalid(out, weight, g.dist);
}

// From the entry counts of each (row, column block), row-major: the inclusive ends of each
// block's entries, the CSR indptr, and nnz, read back to size the outputs (the documented host
// sync of the two CSR-building ops).
std::tuple<at::Tensor, at::Tensor, int64_t> layout_from_counts(const at::Tensor& counts, int64_t n_rows,
                                                               int64_t n_blocks) {
  at::Tensor ends = at::cumsum(counts, 0);
  const int64_t nnz = ends[-1].item<int64_t>();
  at::Tensor indptr =
      at::cat({at::zeros({1}, counts.options()), ends.view({n_rows, n_blocks}).select(1, n_blocks - 1)});
  return {ends, indptr, nnz};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> jitc_to_csr_cuda(const at::Tensor& weight_in,
                                                                double prob, int64_t seed,
                                                                c10::SymIntArrayRef shape,
                                                                c10::string_view dist) {
  const char* op = "brain::jitc_to_csr";
  const auto g = detail::check_jitc_matrix_args(op, weight_in, prob, shape, view(dist),
                                                /*allow_half=*/true);
  check_cuda(op, weight_in);
  const c10::cuda::CUDAGuard guard(weight_in.device());
  const at::Tensor weight = weight_in.contiguous();
  const auto long_opts = weight.options().dtype(at::kLong);
  kc::CsrArgs a;
  a.spec = spec_for(g, prob, seed);
  a.weight = weight.const_data_ptr();
  a.dtype = kernel_dtype(weight.scalar_type());
  a.num_sms = sm_count();
  const int64_t n_rows = a.spec.n_rows, n_blocks = a.spec.n_blocks;
  if (n_rows == 0 || n_blocks == 0) {
    return {at::zeros({n_rows + 1}, long_opts), at::empty({0}, long_opts),
            at::empty({0}, weight.options())};
  }
  at::Tensor counts = at::empty({n_rows * n_blocks}, long_opts);
  a.counts = counts.data_ptr<int64_t>();
  const auto stream = at::cuda::getCurrentCUDAStream();
  C10_CUDA_CHECK(kc::launch_block_counts(a, stream));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto [ends, indptr, nnz] = layout_from_counts(counts, n_rows, n_blocks);
  at::Tensor indices = at::empty({nnz}, long_opts);
  at::Tensor values = at::empty({nnz}, weight.options());
  a.ends = ends.const_data_ptr<int64_t>();
  a.indices = indices.data_ptr<int64_t>();
  a.values = values.data_ptr();
  C10_CUDA_CHECK(kc::launch_fill_csr(a, stream));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {indptr, indices, poison_if_invalid(values, weight, g.dist)};
}

std::tuple<at::Tensor, at::Tensor> jitc_pattern_cuda(const at::Tensor& like, double prob, int64_t seed,
                                                     c10::SymIntArrayRef shape, int64_t col_begin,
                                                     std::optional<int64_t> col_end, bool exclude_diagonal) {
  const char* op = "brain::jitc_pattern";
  const auto plan = detail::check_jitc_pattern_args(op, prob, seed, shape, col_begin, col_end,
                                                    exclude_diagonal);
  const c10::cuda::CUDAGuard guard(like.device());
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(like.device());
  const int64_t n_rows = shape[0].expect_int();
  if (plan.empty) return {at::zeros({n_rows + 1}, long_opts), at::empty({0}, long_opts)};
  kc::PatternArgs a;
  a.spec = plan.spec;
  a.window = plan.window;
  a.num_sms = sm_count();
  const int64_t n_blocks = k::window_end_block(a.spec, a.window) - k::window_first_block(a.spec, a.window);
  at::Tensor counts = at::empty({n_rows * n_blocks}, long_opts);
  a.counts = counts.data_ptr<int64_t>();
  const auto stream = at::cuda::getCurrentCUDAStream();
  C10_CUDA_CHECK(kc::launch_pattern_counts(a, stream));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto [ends, indptr, nnz] = layout_from_counts(counts, n_rows, n_blocks);
  at::Tensor indices = at::empty({nnz}, long_opts);
  a.ends = ends.const_data_ptr<int64_t>();
  a.indices = indices.data_ptr<int64_t>();
  C10_CUDA_CHECK(kc::launch_fill_pattern(a, stream));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {indptr, indices};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CUDA, m) {
  m.impl("jitc_matmul", &jitc_matmul_cuda<false>);
  m.impl("event_jitc_matmul", &jitc_matmul_cuda<true>);
  m.impl("_jitc_matmul_backward", &jitc_matmul_backward_cuda);
  m.impl("jitc_materialize", &jitc_materialize_cuda);
  m.impl("jitc_to_csr", &jitc_to_csr_cuda);
  m.impl("jitc_pattern", &jitc_pattern_cuda);
}

}  // namespace brain::ops
