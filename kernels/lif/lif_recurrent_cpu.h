// CPU loops of brain::lif_recurrent_sequence: LIF neurons whose input current is an external
// drive plus their own spikes of `delay` steps earlier through a sparse CSR matrix, T steps in
// one op. Torch-free; the ATen glue is csrc/ops/cpu/lif_recurrent_cpu.cpp.
//
// Layouts are row-major: drive, spikes, v_pre [T, B, n]; v0, v_last [B, n]; history [d, B, n]
// with history[0] the oldest step. A is [n, n] with rows = presynaptic neurons. Step t reads
//   S_t = t < d ? history[t] : spikes[t - d]        (the spikes of d steps earlier)
//   I_t = drive[t] + A^T S_t                          (the event scatter of kernels/csr)
// and then updates the membrane as lif_sequence does (kernels/lif/lif_seq.h). Every batch
// item is independent in the forward, so an item walks the whole window on one thread; the
// scatter and the sum round as brain::event_csr_matmul (one item's rows in order) and
// at::add do, so the spikes equal those of the op-by-op network. A lone item (B = 1) keeps
// each step's scatter on one thread (as event_csr_matmul does) and splits the membrane update
// over threads.
//
// The backward walks the steps from the last. With gu = dL/du carried per neuron:
//   gs_t   = grad_spikes[t] + G_{t+d}                (G: the gradient reaching S through A)
//   gI_t   = lif backward_step(v_pre[t], gs_t, gu) * dv/dI   (= grad_drive[t])
//   G_t    = A gI_t      -> grad_history[t] when t < d, else added to step t - d's gs
//   dW[k] += sum_b S_t[b, i] gI_t[b, j]   for the entries k = (i, j) of rows i active in S_t
// The last two lines go over A's rows, a block of rows per task: the block's gather through A
// (recurrent_through_a_params), then its weight gradient (recurrent_weight_grad_rows). Each
// row is owned by one task and the steps are summed in a fixed order, so the result does not
// depend on threads.
#pragma once

#include <cstdint>

#include "kernels/csr/csr_cpu.h"
#include "kernels/lif/lif_seq.h"

namespace brain::kernels::lif {

template <typename T, typename index_t>
struct RecurrentProblem {
  const T* drive = nullptr;    // [steps, batch, n]
  const T* v0 = nullptr;       // [batch, n]
  const T* history = nullptr;  // [delay, batch, n]
  const index_t* indptr = nullptr;
  const index_t* indices = nullptr;
  const T* weights = nullptr;  // [nnz], or [1] when homo
  bool homo = false;
  std::int64_t steps = 0, batch = 0, n = 0, delay = 1, nnz = 0;

  const T* source(std::int64_t t, const T* spikes) const {
    const std::int64_t stride = batch * n;
    return t < delay ? history + t * stride : spikes + (t - delay) * stride;
  }
};

// A as the CSR kernels take it, with x [batch, n] (or batch-minor, for the gathers).
template <typename T, typename index_t>
csr::Params<T, index_t, T> recurrent_matrix_params(const RecurrentProblem<T, index_t>& p, const T* x,
                                                   std::int64_t batch) {
  csr::Params<T, index_t, T> a;
  a.indptr = p.indptr;
  a.indices = p.indices;
  a.weights = p.weights;
  a.homo = p.homo;
  a.n_rows = p.n;
  a.n_cols = p.n;
  a.batch = batch;
  a.nnz = p.nnz;
  a.x = x;
  return a;
}

// The scatter A^T S_t of item b as event_csr_matmul computes it for one item alone.
template <typename T, typename index_t>
csr::Params<T, index_t, T> recurrent_scatter_params(const RecurrentProblem<T, index_t>& p, std::int64_t t,
                                                    std::int64_t b, const T* spikes) {
  return recurrent_matrix_params(p, p.source(t, spikes) + b * p.n, 1);
}

// Step t's membrane update of item b's neurons [begin, end), given the recurrent current rec:
// drive + current as at::add, then lif_sequence's step.
template <typename T, typename index_t>
void recurrent_update(const LifConstants& constants, const RecurrentProblem<T, index_t>& p, std::int64_t t,
                      std::int64_t b, const T* rec, T* u, T* spikes, T* v_pre, std::int64_t begin,
                      std::int64_t end) {
  const Typed<T> c(constants);
  const std::int64_t n = p.n;
  const std::int64_t row = t * p.batch * n + b * n;
  for (std::int64_t j = begin; j < end; ++j) {
    const T current = p.drive[row + j] + rec[j];
    const T v = c.integrate(u[j], current);
    const bool spike = c.scaled(v) > T(0);
    if (v_pre != nullptr) v_pre[row + j] = v;
    spikes[row + j] = spike ? T(1) : T(0);
    u[j] = c.reset(v, spike);
  }
}

// The whole window for batch item b on one thread. u and rec are scratch of n values. v_pre
// may be null. For a lone item, the glue runs the steps itself (recurrent_scatter_params,
// csr::scatter, then recurrent_update over threads).
template <typename T, typename index_t>
csr::Status recurrent_forward_item(const LifConstants& constants, const RecurrentProblem<T, index_t>& p,
                                   std::int64_t b, T* spikes, T* v_last, T* v_pre, T* u, T* rec) {
  const std::int64_t n = p.n;
  for (std::int64_t j = 0; j < n; ++j) u[j] = p.v0[b * n + j];
  for (std::int64_t t = 0; t < p.steps; ++t) {
    const auto a = recurrent_scatter_params(p, t, b, spikes);
    for (std::int64_t j = 0; j < n; ++j) rec[j] = T(0);
    const csr::Status st = csr::scatter<true>(a, 0, 0, n, rec);
    if (!st.ok()) return st;
    recurrent_update(constants, p, t, b, rec, u, spikes, v_pre, 0, n);
  }
  for (std::int64_t j = 0; j < n; ++j) v_last[b * n + j] = u[j];
  return {};
}

// Backward of one step over the flat neurons [begin, end) of [B, n]: gs = grad_spikes_t
// (+ grad_rec_t, the gradient through A, when not null); writes grad_drive_t, the same values
// batch-minor into g_bm [n, B] (for backward_rows), and carries gu [B, n].
template <typename T>
void recurrent_backward_neurons(const LifConstants& constants, const T* grad_spikes_t, const T* grad_rec_t,
                                const T* v_pre_t, T* gu, T* grad_drive_t, T* g_bm, std::int64_t batch,
                                std::int64_t n, std::int64_t begin, std::int64_t end) {
  const Typed<T> c(constants);
  for (std::int64_t flat = begin; flat < end; ++flat) {
    const std::int64_t b = flat / n;
    const std::int64_t j = flat - b * n;
    T gs = grad_spikes_t[flat];
    if (grad_rec_t != nullptr) gs += grad_rec_t[flat];
    const T gI = backward_step(c, v_pre_t[flat], gs, gu[flat]) * c.dv_dI;
    grad_drive_t[flat] = gI;
    g_bm[j * batch + b] = gI;
  }
}

// One step's pass through A, gI_t batch-minor ([n, B], g_bm) through A's rows: with
// csr::gather_batch_minor (or its AVX2 copy, csrc/ops/cpu/csr_batch_kernels.h) it writes
// grad_source [B, n] = A gI_t, checking every row and index it reads; a row's B sums run in
// registers, each in the order of the plain loop, so the same bits.
template <typename T, typename index_t>
csr::Params<T, index_t, T> recurrent_through_a_params(const RecurrentProblem<T, index_t>& p, const T* g_bm) {
  return recurrent_matrix_params(p, g_bm, p.batch);
}

// The weight gradient of one step for rows [row_begin, row_end), added to dw (per synapse,
// [nnz]) or dw_rows (homogeneous weight, [n]), from the rows' entries whose presynaptic spike
// in source_t [B, n] is non-zero: dW[k] += sum_b S_t[b, i] gI_t[b, j], four entries at a time
// (csr::active_dots_scatter), each in batch order. The rows' indices must have been checked
// (the step's pass through A does). lanes: scratch of B values.
template <typename acc_t, typename T, typename index_t>
void recurrent_weight_grad_rows(const RecurrentProblem<T, index_t>& p, const T* g_bm, const T* source_t,
                                std::int64_t row_begin, std::int64_t row_end, acc_t* dw, acc_t* dw_rows,
                                std::int64_t* lanes) {
  const std::int64_t batch = p.batch;
  const std::int64_t n = p.n;
  for (std::int64_t i = row_begin; i < row_end; ++i) {
    std::int64_t n_active = 0;
    for (std::int64_t b = 0; b < batch; ++b) {
      if (source_t[b * n + i] != T(0)) lanes[n_active++] = b;
    }
    if (n_active == 0) continue;
    const std::int64_t k0 = p.indptr[i];
    const std::int64_t k1 = p.indptr[i + 1];
    acc_t row_sum = 0;
    csr::for_entry_groups(k0, k1, [&](auto ways_tag, std::int64_t k) {
      constexpr int ways = decltype(ways_tag)::value;
      const T* gs[ways];
      for (int w = 0; w < ways; ++w) gs[w] = g_bm + static_cast<std::int64_t>(p.indices[k + w]) * batch;
      acc_t d[ways];
      csr::active_dots_scatter<ways>(source_t + i, n, lanes, n_active, gs, d);
      for (int w = 0; w < ways; ++w) {
        if (dw != nullptr) {
          dw[k + w] += d[w];
        } else {
          row_sum += d[w];
        }
      }
    });
    if (dw_rows != nullptr) dw_rows[i] += row_sum;
  }
}

}  // namespace brain::kernels::lif
