// CUDA host glue of brain::lif_recurrent_sequence: checks, buffers, then the torch-free driver
// (kernels/lif/lif_recurrent_cuda.h), which loops over the steps launching the CSR and LIF
// kernels on the current stream and never reads back to the host (no autograd graph per step).
// Under torch.use_deterministic_algorithms the forward gathers over A's columns instead of
// scattering (a column-sorted copy built once per call).
#include <algorithm>
#include <array>
#include <tuple>
#include <vector>

#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "csrc/ops/csr_common.h"
#include "csrc/ops/cuda/cuda_glue.h"
#include "csrc/ops/lif_common.h"
#include "kernels/lif/lif_recurrent_cuda.h"

namespace brain::ops {
namespace {

namespace kl = brain::kernels::lif::cuda;

using cuda_glue::check_cuda;
using cuda_glue::sm_count;

kl::RecurrentMatrix matrix_of(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& weights,
                              bool homo) {
  kl::RecurrentMatrix m;
  m.indptr = indptr.const_data_ptr();
  m.indices = indices.const_data_ptr();
  m.index64 = indptr.scalar_type() == at::kLong;
  m.weights = weights.const_data_ptr();
  m.homo = homo;
  m.nnz = indices.size(0);
  return m;
}

// [k] + the per-step shape of t (for 1-D and 2-D steps alike).
std::vector<int64_t> steps_of(int64_t k, const at::Tensor& t) {
  std::vector<int64_t> sizes{k};
  for (int64_t d = 1; d < t.dim(); ++d) sizes.push_back(t.size(d));
  return sizes;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_impl(const char* op, const at::Tensor& drive_in,
                                                            const at::Tensor& v0_in, const at::Tensor& history_in,
                                                            const at::Tensor& indptr_in, const at::Tensor& indices_in,
                                                            const at::Tensor& weights_in,
                                                            const kernels::lif::LifConstants& c, bool save) {
  const bool homo =
      detail::check_lif_recurrent_tensors(op, drive_in, v0_in, history_in, indptr_in, indices_in, weights_in);
  check_cuda(op, drive_in);
  const c10::cuda::CUDAGuard guard(drive_in.device());
  const at::Tensor drive = drive_in.contiguous();
  const at::Tensor history = history_in.contiguous();
  const int64_t steps = drive.size(0);
  const int64_t n = drive.size(-1);
  const int64_t batch = drive.dim() == 3 ? drive.size(1) : 1;
  const int64_t delay = history.size(0);
  const int64_t stride = batch * n;
  at::Tensor spikes = at::empty(drive.sizes(), drive.options());
  at::Tensor v_pre = save ? at::empty(drive.sizes(), drive.options()) : at::Tensor();
  std::array<at::Tensor, 2> u{v0_in.contiguous().clone(), at::empty(v0_in.sizes(), v0_in.options())};
  if (steps == 0 || stride == 0) return {spikes, u[0], v_pre};

  const at::Tensor indptr = indptr_in.contiguous(), indices = indices_in.contiguous(), weights = weights_in.contiguous();
  kl::RecurrentForwardArgs f;
  f.constants = c;
  f.is_double = drive.scalar_type() == at::kDouble;
  f.steps = steps;
  f.batch = batch;
  f.n = n;
  f.delay = delay;
  f.drive = drive.const_data_ptr();
  f.history = history.const_data_ptr();
  f.a = matrix_of(indptr, indices, weights, homo);
  f.deterministic = at::globalContext().deterministicAlgorithms();
  detail::CscForGather csc;  // A^T column-sorted, for the deterministic gather
  at::Tensor rec;
  if (f.deterministic) {
    csc = detail::csc_for_gather(indptr, indices, weights, homo, n, n);
    f.a_t = matrix_of(csc.indptr, csc.rows, csc.weights, false);
    rec = at::empty(v0_in.sizes(), drive.options());
    f.rec = rec.mutable_data_ptr();
  }
  at::Tensor current = at::empty(v0_in.sizes(), drive.options());
  f.current = current.mutable_data_ptr();
  f.spikes = spikes.mutable_data_ptr();
  f.v_pre = save ? v_pre.mutable_data_ptr() : nullptr;
  f.u[0] = u[0].mutable_data_ptr();
  f.u[1] = u[1].mutable_data_ptr();
  f.num_sms = sm_count();
  C10_CUDA_CHECK(kl::launch_recurrent_forward(f, at::cuda::getCurrentCUDAStream()));
  return {spikes, u[steps % 2], v_pre};
}

std::tuple<at::Tensor, at::Tensor> lif_recurrent_sequence_cuda(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& weights, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params) {
  const char* op = "brain::lif_recurrent_sequence";
  const auto c = detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  auto [spikes, v_last, unused] = forward_impl(op, drive, v0, history, indptr, indices, weights, c, /*save=*/false);
  return {spikes, v_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_recurrent_sequence_forward_cuda(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& weights, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_recurrent_sequence_forward";
  const auto c = detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  return forward_impl(op, drive, v0, history, indptr, indices, weights, c, /*save=*/true);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lif_recurrent_sequence_backward_cuda(
    const at::Tensor& grad_spikes_in, const at::Tensor& grad_v_last_in, const at::Tensor& v_pre_in,
    const at::Tensor& spikes_in, const at::Tensor& history_in, const at::Tensor& indptr_in,
    const at::Tensor& indices_in, const at::Tensor& weights_in, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params, std::array<bool, 4> output_mask) {
  const char* op = "brain::_lif_recurrent_sequence_backward";
  const auto c = detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  const bool homo = detail::check_lif_recurrent_backward_tensors(op, grad_spikes_in, grad_v_last_in, v_pre_in,
                                                                 spikes_in, history_in, indptr_in, indices_in,
                                                                 weights_in);
  check_cuda(op, v_pre_in);
  const c10::cuda::CUDAGuard guard(v_pre_in.device());
  const at::Tensor grad_spikes = grad_spikes_in.contiguous();
  const at::Tensor v_pre = v_pre_in.contiguous();
  const at::Tensor spikes = spikes_in.contiguous();
  const at::Tensor history = history_in.contiguous();
  const at::Tensor indptr = indptr_in.contiguous(), indices = indices_in.contiguous(), weights = weights_in.contiguous();
  const int64_t steps = v_pre.size(0);
  const int64_t n = v_pre.size(-1);
  const int64_t batch = v_pre.dim() == 3 ? v_pre.size(1) : 1;
  const int64_t delay = history.size(0);

  at::Tensor grad_drive = at::empty(v_pre.sizes(), v_pre.options());
  at::Tensor grad_history = at::zeros(history.sizes(), history.options());
  std::array<at::Tensor, 2> gu{grad_v_last_in.contiguous().clone(), at::empty(grad_v_last_in.sizes(),
                                                                               grad_v_last_in.options())};
  at::Tensor pending = at::empty(steps_of(std::min(delay, std::max<int64_t>(steps - delay, 0)), v_pre), v_pre.options());
  at::Tensor gs_sum = at::empty(grad_v_last_in.sizes(), v_pre.options());
  at::Tensor dw;
  if (output_mask[3]) dw = at::zeros({indices.size(0)}, weights.options().memory_format(at::MemoryFormat::Contiguous));
  kl::RecurrentBackwardArgs b;
  b.constants = c;
  b.is_double = v_pre.scalar_type() == at::kDouble;
  b.steps = steps;
  b.batch = batch;
  b.n = n;
  b.delay = delay;
  b.grad_spikes = grad_spikes.const_data_ptr();
  b.v_pre = v_pre.const_data_ptr();
  b.spikes = spikes.const_data_ptr();
  b.history = history.const_data_ptr();
  b.a = matrix_of(indptr, indices, weights, homo);
  b.grad_drive = grad_drive.mutable_data_ptr();
  b.grad_history = grad_history.mutable_data_ptr();
  b.pending = pending.mutable_data_ptr();
  b.grad_spikes_sum = gs_sum.mutable_data_ptr();
  b.gu[0] = gu[0].mutable_data_ptr();
  b.gu[1] = gu[1].mutable_data_ptr();
  b.grad_weights = output_mask[3] ? dw.mutable_data_ptr() : nullptr;
  b.num_sms = sm_count();
  C10_CUDA_CHECK(kl::launch_recurrent_backward(b, at::cuda::getCurrentCUDAStream()));
  const int64_t stride = batch * n;
  const at::Tensor grad_v0 = gu[(stride > 0 ? steps : 0) % 2];

  at::Tensor grad_weights;
  if (output_mask[3]) {
    if (homo) {
      const auto acc = weights.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
      grad_weights = dw.sum(at::IntArrayRef{0}, false, acc).to(weights.scalar_type()).reshape(weights.sizes());
    } else {
      grad_weights = dw;
    }
  }
  return {output_mask[0] ? grad_drive : at::Tensor(), output_mask[1] ? grad_v0 : at::Tensor(),
          output_mask[2] ? grad_history : at::Tensor(), grad_weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CUDA, m) {
  m.impl("lif_recurrent_sequence", &lif_recurrent_sequence_cuda);
  m.impl("_lif_recurrent_sequence_forward", &lif_recurrent_sequence_forward_cuda);
  m.impl("_lif_recurrent_sequence_backward", &lif_recurrent_sequence_backward_cuda);
}

}  // namespace brain::ops
