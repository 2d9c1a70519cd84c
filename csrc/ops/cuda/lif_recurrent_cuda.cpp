// CUDA host glue of brain::lif_recurrent_sequence. It composes the CSR and LIF kernels that
// the other ops use (kernels/csr, kernels/lif): per forward step, the drive is copied into a
// current buffer, the delayed spikes are scattered into it (event form, atomics) and one LIF
// step runs; per backward step, one LIF backward step and one gather A gI. The weight gradient
// is one pass over the whole window at the end. Everything is on the current stream, nothing
// reads back to the host, and the host only loops over steps: no autograd graph per step.
// Under torch.use_deterministic_algorithms the forward gathers over A's columns instead of
// scattering (kernels/csr's gather over a column-sorted copy built once per call).
#include <algorithm>
#include <array>
#include <tuple>
#include <vector>

#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/add.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "csrc/ops/csr_common.h"
#include "csrc/ops/cuda/cuda_glue.h"
#include "csrc/ops/lif_common.h"
#include "kernels/csr/csr_cuda.h"
#include "kernels/lif/lif_cuda.h"

namespace brain::ops {
namespace {

namespace kc = brain::kernels::csr::cuda;
namespace kl = brain::kernels::lif::cuda;

using cuda_glue::check_cuda;
using cuda_glue::kernel_dtype;
using cuda_glue::sm_count;

// Element t * stride of a contiguous tensor.
const void* at_step(const at::Tensor& t, int64_t step, int64_t stride) {
  return static_cast<const char*>(t.const_data_ptr()) + step * stride * t.element_size();
}
void* at_step_mut(at::Tensor& t, int64_t step, int64_t stride) {
  return static_cast<char*>(t.mutable_data_ptr()) + step * stride * t.element_size();
}

struct Matrix {
  at::Tensor indptr, indices, weights;
  bool homo;
};

void launch_csr(const Matrix& m, const void* x, void* out, int64_t n, int64_t batch, bool transpose, bool event,
                int num_sms, cudaStream_t stream) {
  kc::MatmulArgs a;
  a.indptr = m.indptr.const_data_ptr();
  a.indices = m.indices.const_data_ptr();
  a.index64 = m.indptr.scalar_type() == at::kLong;
  a.weights = m.weights.const_data_ptr();
  a.homo = m.homo;
  a.dtype = kernel_dtype(m.weights.scalar_type());
  a.x = x;
  a.out = out;
  a.n_rows = n;
  a.n_cols = n;
  a.batch = batch;
  a.nnz = m.indices.size(0);
  a.transpose = transpose;
  a.event = event;
  a.num_sms = num_sms;
  C10_CUDA_CHECK(kc::launch_matmul(a, stream));
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

  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int num_sms = sm_count();
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  Matrix a{indptr_in.contiguous(), indices_in.contiguous(), weights_in.contiguous(), homo};
  Matrix a_t;  // A^T column-sorted, for the deterministic gather
  at::Tensor rec;
  if (deterministic) {
    const auto csc = detail::csc_for_gather(a.indptr, a.indices, a.weights, homo, n, n);
    a_t = Matrix{csc.indptr, csc.rows, csc.weights, false};
    rec = at::empty(v0_in.sizes(), drive.options());
  }
  at::Tensor current = at::empty(v0_in.sizes(), drive.options());
  kl::ForwardArgs f;
  f.constants = c;
  f.is_double = drive.scalar_type() == at::kDouble;
  f.steps = 1;
  f.neurons = stride;
  for (int64_t t = 0; t < steps; ++t) {
    const void* source = t < delay ? at_step(history, t, stride) : at_step(spikes, t - delay, stride);
    if (deterministic) {
      launch_csr(a_t, source, rec.mutable_data_ptr(), n, batch, /*transpose=*/false, /*event=*/true, num_sms, stream);
      at::add_out(current, drive.select(0, t), rec);
    } else {
      current.copy_(drive.select(0, t));
      launch_csr(a, source, current.mutable_data_ptr(), n, batch, /*transpose=*/true, /*event=*/true, num_sms,
                 stream);
    }
    f.input = current.const_data_ptr();
    f.v0 = u[t % 2].const_data_ptr();
    f.spikes = at_step_mut(spikes, t, stride);
    f.v_last = u[(t + 1) % 2].mutable_data_ptr();
    f.v_pre = save ? at_step_mut(v_pre, t, stride) : nullptr;
    C10_CUDA_CHECK(kl::launch_forward(f, stream));
  }
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
  const Matrix a{indptr_in.contiguous(), indices_in.contiguous(), weights_in.contiguous(), homo};
  const int64_t steps = v_pre.size(0);
  const int64_t n = v_pre.size(-1);
  const int64_t batch = v_pre.dim() == 3 ? v_pre.size(1) : 1;
  const int64_t delay = history.size(0);
  const int64_t stride = batch * n;
  const int64_t nnz = a.indices.size(0);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int num_sms = sm_count();

  at::Tensor grad_drive = at::empty(v_pre.sizes(), v_pre.options());
  at::Tensor grad_history = at::zeros(history.sizes(), history.options());
  std::array<at::Tensor, 2> gu{grad_v_last_in.contiguous().clone(), at::empty(grad_v_last_in.sizes(),
                                                                               grad_v_last_in.options())};
  // The gradient through A of the spikes of step t - d waits in slot t % d until step t - d.
  at::Tensor pending = at::empty(steps_of(std::min(delay, std::max<int64_t>(steps - delay, 0)), v_pre), v_pre.options());
  at::Tensor gs_sum = at::empty(grad_v_last_in.sizes(), v_pre.options());
  kl::BackwardArgs b;
  b.constants = c;
  b.is_double = v_pre.scalar_type() == at::kDouble;
  b.steps = 1;
  b.neurons = stride;
  if (stride > 0) {
    for (int64_t i = 0, t = steps - 1; t >= 0; ++i, --t) {
      if (t + delay < steps) {
        at::add_out(gs_sum, grad_spikes.select(0, t), pending.select(0, (t + delay) % delay));
        b.grad_spikes = gs_sum.const_data_ptr();
      } else {
        b.grad_spikes = at_step(grad_spikes, t, stride);
      }
      b.grad_v_last = gu[i % 2].const_data_ptr();
      b.v_pre = at_step(v_pre, t, stride);
      b.grad_input = at_step_mut(grad_drive, t, stride);
      b.grad_v0 = gu[(i + 1) % 2].mutable_data_ptr();
      C10_CUDA_CHECK(kl::launch_backward(b, stream));
      // After the add above has read it (stream order), slot t % d takes step t's gradient.
      void* target = t < delay ? at_step_mut(grad_history, t, stride) : at_step_mut(pending, t % delay, stride);
      launch_csr(a, at_step(grad_drive, t, stride), target, n, batch, /*transpose=*/false, /*event=*/false, num_sms,
                 stream);
    }
  }
  const at::Tensor grad_v0 = gu[(stride > 0 ? steps : 0) % 2];

  at::Tensor grad_weights;
  if (output_mask[3]) {
    at::Tensor dw = at::zeros({nnz}, a.weights.options().memory_format(at::MemoryFormat::Contiguous));
    // dW[k] = sum over steps and items of S_t[b, i] gI_t[b, j]: the window as one batch of
    // (step, item) pairs, the history's part and the spikes' part.
    auto accumulate = [&](const void* x, const void* g, int64_t items) {
      if (items == 0) return;
      kc::WeightGradArgs w;
      w.indptr = a.indptr.const_data_ptr();
      w.indices = a.indices.const_data_ptr();
      w.index64 = a.indptr.scalar_type() == at::kLong;
      w.dtype = kernel_dtype(a.weights.scalar_type());
      w.x = x;
      w.grad_out = g;
      w.grad_weights = dw.mutable_data_ptr();
      w.accumulate = true;
      w.n_rows = n;
      w.n_cols = n;
      w.batch = items;
      w.nnz = nnz;
      w.transpose = true;
      w.num_sms = num_sms;
      C10_CUDA_CHECK(kc::launch_weight_grad(w, stream));
    };
    if (stride > 0) {
      accumulate(history.const_data_ptr(), grad_drive.const_data_ptr(), std::min(delay, steps) * batch);
      if (steps > delay) {
        accumulate(spikes.const_data_ptr(), at_step(grad_drive, delay, stride), (steps - delay) * batch);
      }
    }
    if (homo) {
      const auto acc = a.weights.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
      grad_weights = dw.sum(at::IntArrayRef{0}, false, acc).to(a.weights.scalar_type()).reshape(a.weights.sizes());
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
