// CPU kernels of brain::lif_recurrent_sequence: checks, dtype dispatch and at::parallel_for
// around the torch-free loops in kernels/lif/lif_recurrent_cpu.h (forward: one task per batch
// item over the whole window; backward: per step, the neurons, then the rows of A).
#include <algorithm>
#include <array>
#include <tuple>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "csrc/ops/cpu/csr_batch_kernels.h"
#include "csrc/ops/csr_common.h"
#include "csrc/ops/lif_common.h"
#include "kernels/lif/lif_recurrent_cpu.h"

namespace brain::ops {
namespace {

namespace k = brain::kernels::lif;

struct Geometry {
  int64_t steps, batch, n, delay, nnz;
  bool homo;
};

Geometry geometry(const at::Tensor& drive, const at::Tensor& history, const at::Tensor& indices, bool homo) {
  return {drive.size(0), drive.dim() == 3 ? drive.size(1) : 1, drive.size(-1), history.size(0), indices.size(0),
          homo};
}

// The forward's scatter visits only the rows that fire, so a bad entry in a silent row would
// surface only in the backward, or never: the structure is checked once per call instead
// (nnz compares, small next to T steps).
template <typename index_t>
void check_structure(const char* op, const at::Tensor& indptr, const at::Tensor& indices, int64_t n) {
  detail::check_indptr_ends_cpu(op, indptr, indices.size(0));
  kernels::csr::Params<float, index_t, float> p;
  p.indptr = indptr.const_data_ptr<index_t>();
  p.indices = indices.const_data_ptr<index_t>();
  p.n_rows = n;
  p.n_cols = n;
  p.nnz = indices.size(0);
  for (int64_t i = 0; i < n; ++i) {
    detail::report_kernel_status(op, kernels::csr::for_each_entry(p, i, [](int64_t, int64_t) {}), n);
  }
}

template <typename T, typename index_t>
k::RecurrentProblem<T, index_t> problem(const Geometry& g, const at::Tensor& drive, const at::Tensor& v0,
                                         const at::Tensor& history, const at::Tensor& indptr,
                                         const at::Tensor& indices, const at::Tensor& weights) {
  k::RecurrentProblem<T, index_t> p;
  p.drive = drive.defined() ? drive.const_data_ptr<T>() : nullptr;
  p.v0 = v0.defined() ? v0.const_data_ptr<T>() : nullptr;
  p.history = history.const_data_ptr<T>();
  p.indptr = indptr.const_data_ptr<index_t>();
  p.indices = indices.const_data_ptr<index_t>();
  p.weights = weights.const_data_ptr<T>();
  p.homo = g.homo;
  p.steps = g.steps;
  p.batch = g.batch;
  p.n = g.n;
  p.delay = g.delay;
  p.nnz = g.nnz;
  return p;
}

// B = 1: the steps one after the other, each step's scatter on one thread as event_csr_matmul
// scatters a single item (each neuron's sum in row order, so the same bits), then the membrane
// update in neuron chunks over threads.
template <typename T, typename index_t>
void forward_lone_item(const char* op, const k::LifConstants& c, const k::RecurrentProblem<T, index_t>& p,
                       T* spikes, T* v_last, T* v_pre) {
  namespace csr = brain::kernels::csr;
  const int64_t n = p.n;
  std::vector<T> u(p.v0, p.v0 + n), rec(static_cast<size_t>(n));
  // Neurons per update task: enough to outweigh a parallel region's start.
  const int64_t update_grain = 16384;
  for (int64_t t = 0; t < p.steps; ++t) {
    const auto a = k::recurrent_scatter_params(p, t, 0, spikes);
    std::fill(rec.begin(), rec.end(), T(0));
    detail::report_kernel_status(op, csr::scatter<true>(a, 0, 0, n, rec.data()), n);
    at::parallel_for(0, n, update_grain, [&](int64_t begin, int64_t end) {
      k::recurrent_update(c, p, t, 0, rec.data(), u.data(), spikes, v_pre, begin, end);
    });
  }
  std::copy(u.begin(), u.end(), v_last);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_impl(const char* op, const at::Tensor& drive_in,
                                                            const at::Tensor& v0_in, const at::Tensor& history_in,
                                                            const at::Tensor& indptr_in, const at::Tensor& indices_in,
                                                            const at::Tensor& weights_in, const k::LifConstants& c,
                                                            bool save) {
  const bool homo =
      detail::check_lif_recurrent_tensors(op, drive_in, v0_in, history_in, indptr_in, indices_in, weights_in);
  TORCH_CHECK(drive_in.device().is_cpu(), op, ": expected CPU tensors, got ", drive_in.device());
  const at::Tensor drive = drive_in.contiguous();
  const at::Tensor v0 = v0_in.contiguous();
  const at::Tensor history = history_in.contiguous();
  const at::Tensor indptr = indptr_in.contiguous();
  const at::Tensor indices = indices_in.contiguous();
  const at::Tensor weights = weights_in.contiguous();
  const Geometry g = geometry(drive, history, indices, homo);
  at::Tensor spikes = at::empty(drive.sizes(), drive.options());
  at::Tensor v_last = at::empty(v0.sizes(), v0.options());
  at::Tensor v_pre = save ? at::empty(drive.sizes(), drive.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(drive.scalar_type(), "lif_recurrent_sequence_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(indptr.scalar_type(), "lif_recurrent_sequence_cpu", [&] {
      check_structure<index_t>(op, indptr, indices, g.n);
      const auto p = problem<scalar_t, index_t>(g, drive, v0, history, indptr, indices, weights);
      scalar_t* s = spikes.mutable_data_ptr<scalar_t>();
      scalar_t* vl = v_last.mutable_data_ptr<scalar_t>();
      scalar_t* vp = save ? v_pre.mutable_data_ptr<scalar_t>() : nullptr;
      if (g.batch == 1) {
        forward_lone_item(op, c, p, s, vl, vp);
        return;
      }
      // Batch items never interact in the forward: one task walks an item's whole window.
      at::parallel_for(0, g.batch, 1, [&](int64_t begin, int64_t end) {
        std::vector<scalar_t> u(static_cast<size_t>(g.n)), rec(static_cast<size_t>(g.n));
        for (int64_t b = begin; b < end; ++b) {
          detail::report_kernel_status(op, k::recurrent_forward_item(c, p, b, s, vl, vp, u.data(), rec.data()), g.n);
        }
      });
    });
  });
  return {spikes, v_last, v_pre};
}

std::tuple<at::Tensor, at::Tensor> lif_recurrent_sequence_cpu(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& weights, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params) {
  const char* op = "brain::lif_recurrent_sequence";
  const auto c = detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  auto [spikes, v_last, unused] = forward_impl(op, drive, v0, history, indptr, indices, weights, c, /*save=*/false);
  return {spikes, v_last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_recurrent_sequence_forward_cpu(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& weights, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params) {
  const char* op = "brain::_lif_recurrent_sequence_forward";
  const auto c = detail::lif_constants(op, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  return forward_impl(op, drive, v0, history, indptr, indices, weights, c, /*save=*/true);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lif_recurrent_sequence_backward_cpu(
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
  TORCH_CHECK(v_pre_in.device().is_cpu(), op, ": expected CPU tensors, got ", v_pre_in.device());
  const at::Tensor grad_spikes = grad_spikes_in.contiguous();
  const at::Tensor v_pre = v_pre_in.contiguous();
  const at::Tensor spikes = spikes_in.contiguous();
  const at::Tensor history = history_in.contiguous();
  const at::Tensor indptr = indptr_in.contiguous();
  const at::Tensor indices = indices_in.contiguous();
  const at::Tensor weights = weights_in.contiguous();
  const Geometry g = geometry(v_pre, history, indices, homo);
  const int64_t stride = g.batch * g.n;
  const bool want_dw = output_mask[3];

  at::Tensor grad_drive = at::empty(v_pre.sizes(), v_pre.options());
  at::Tensor gu = grad_v_last_in.contiguous().clone();
  // Steps beyond the window's end never read a history step they would overlap: zeros.
  at::Tensor grad_history = at::zeros(history.sizes(), history.options());
  // The gradient through A of the spikes of step t - d waits in slot t % d until step t - d.
  at::Tensor pending = at::empty({std::min(g.delay, std::max<int64_t>(g.steps - g.delay, 0)), g.batch, g.n},
                                 v_pre.options());
  at::Tensor g_bm = at::empty({g.n, g.batch}, v_pre.options());
  const auto acc_options = v_pre.options().dtype(at::kDouble);
  at::Tensor dw = want_dw && !homo ? at::zeros({g.nnz}, acc_options) : at::Tensor();
  at::Tensor dw_rows = want_dw && homo ? at::zeros({g.n}, acc_options) : at::Tensor();

  AT_DISPATCH_FLOATING_TYPES(v_pre.scalar_type(), "lif_recurrent_sequence_backward_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(indptr.scalar_type(), "lif_recurrent_sequence_backward_cpu", [&] {
      // Every step's pass over the rows checks every row and index it reads; only the ends of
      // indptr are left to check here.
      detail::check_indptr_ends_cpu(op, indptr, g.nnz);
      const auto p = problem<scalar_t, index_t>(g, at::Tensor(), at::Tensor(), history, indptr, indices, weights);
      const scalar_t* gs = grad_spikes.const_data_ptr<scalar_t>();
      const scalar_t* vp = v_pre.const_data_ptr<scalar_t>();
      const scalar_t* sp = spikes.const_data_ptr<scalar_t>();
      scalar_t* gd = grad_drive.mutable_data_ptr<scalar_t>();
      scalar_t* gup = gu.mutable_data_ptr<scalar_t>();
      scalar_t* gh = grad_history.mutable_data_ptr<scalar_t>();
      scalar_t* pend = pending.numel() > 0 ? pending.mutable_data_ptr<scalar_t>() : nullptr;
      scalar_t* gbm = g_bm.mutable_data_ptr<scalar_t>();
      double* dwp = dw.defined() ? dw.mutable_data_ptr<double>() : nullptr;
      double* dwr = dw_rows.defined() ? dw_rows.mutable_data_ptr<double>() : nullptr;
      // The batched CSR gather, AVX2 where the CPU has it.
      const auto through_a = csr_batch::batch_kernels().of<scalar_t, index_t>().gather[false];
      const int64_t avg_row = g.n > 0 ? g.nnz / g.n + 1 : 1;
      const int64_t row_grain = std::max<int64_t>(1, (int64_t{1} << 14) / (avg_row * std::max<int64_t>(g.batch, 1)));
      for (int64_t t = g.steps - 1; t >= 0; --t) {
        const scalar_t* grad_rec = t + g.delay < g.steps ? pend + ((t + g.delay) % g.delay) * stride : nullptr;
        at::parallel_for(0, stride, 4096, [&](int64_t begin, int64_t end) {
          k::recurrent_backward_neurons(c, gs + t * stride, grad_rec, vp + t * stride, gup, gd + t * stride, gbm,
                                        g.batch, g.n, begin, end);
        });
        // After the neurons: at step t >= d this overwrites the slot grad_rec just read.
        scalar_t* grad_source = t < g.delay ? gh + t * stride : pend + (t % g.delay) * stride;
        const scalar_t* source_t = p.source(t, sp);
        at::parallel_for(0, g.n, row_grain, [&](int64_t begin, int64_t end) {
          std::vector<double> acc(static_cast<size_t>(g.batch));
          detail::report_kernel_status(op, through_a(k::recurrent_through_a_params(p, gbm), grad_source, begin, end,
                                                     acc.data()),
                                       g.n);
          if (!want_dw) return;
          std::vector<int64_t> lanes(static_cast<size_t>(g.batch));
          k::recurrent_weight_grad_rows<double>(p, gbm, source_t, begin, end, dwp, dwr, lanes.data());
        });
      }
    });
  });
  at::Tensor grad_weights;
  if (want_dw) {
    grad_weights = homo ? dw_rows.sum().to(weights.scalar_type()).reshape(weights.sizes())
                        : dw.to(weights.scalar_type());
  }
  return {output_mask[0] ? grad_drive : at::Tensor(), output_mask[1] ? gu : at::Tensor(),
          output_mask[2] ? grad_history : at::Tensor(), grad_weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CPU, m) {
  m.impl("lif_recurrent_sequence", &lif_recurrent_sequence_cpu);
  m.impl("_lif_recurrent_sequence_forward", &lif_recurrent_sequence_forward_cpu);
  m.impl("_lif_recurrent_sequence_backward", &lif_recurrent_sequence_backward_cpu);
}

}  // namespace brain::ops
