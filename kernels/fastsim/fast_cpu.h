// Torch-free CPU loops of the fast simulation engine (csrc/dyn/fast_engine.cpp): one fused
// pass per LIF population and step (synaptic arrivals folded in, synaptic currents, membrane
// update, refractoriness, threshold, reset, exponential synaptic decay), and event-driven
// delivery of spikes through CSR or JIT connectivity.
//
// Every floating operation is the one the module engine performs, in the same order and in
// the state's type (torch computes float tensors op scalar in float), so both engines give
// the same bits. This needs the project's -ffp-contract=off: an FMA would round differently.
//
// Synaptic state is kept one step "behind" so each step touches it once: g_decayed holds
// g * decay and each projection's pending buffer the arrivals of the last step; the neuron
// pass forms g = (g_decayed + pending_1) + pending_2 ..., exactly the module engine's
// (g * decay + arrivals_1) + arrivals_2, uses it, zeroes the pending buffers and stores the
// next g_decayed.
#pragma once

#include <atomic>
#include <cstdint>

#include "kernels/csr/csr_cpu.h"
#include "kernels/fastsim/cond_cpu.h"
#include "kernels/isa.h"
#include "kernels/jitc/jitc_cpu.h"
#include "kernels/jitc/jitc_gen.h"

namespace brain::kernels::fastsim {

// Neurons per block of the population pass: its scratch arrays stay in L1.
constexpr std::int64_t kBlock = 512;

template <typename T>
struct Receptor {
  T* g_decayed = nullptr;  // [n]
  T** pending = nullptr;   // n_pending buffers [n], in delivery order
  int n_pending = 0;
  bool euler = false;      // g - g * factor (forward Euler) or g * factor (exact)
  T factor = 0;            // dt / tau (Euler) or exp(-dt / tau)
  bool coba = true;        // current g * (E - V), else g
  T E = 0;
};

// A LIF population; a conductance-based one (cond_step) uses the fields n, V, drive,
// receptors, spiked and nonfinite, and its channels' kernels::cond::Group.
template <typename T>
struct LifPop {
  std::int64_t n = 0;
  T* V = nullptr;
  // Steps from the last spike to this step, saturated at ref_steps (so >= ref_steps means
  // not refractory); null without refractoriness. 32-bit: beside float states the loop
  // vectorizes, with 64-bit step numbers it does not. The caller keeps the exact steps.
  std::int32_t* since_spike = nullptr;
  const T* drive = nullptr;            // the "input" state of this step, [n]
  Receptor<T>* receptors = nullptr;    // in the order the population registered their currents
  int n_receptors = 0;
  bool euler = false;
  T V_rest = 0, R = 1, V_th = 0, V_reset = 0;
  T factor = 0;         // dt / tau (Euler) or exp(-dt / tau)
  T threshold_scale = 1;  // V_th - V_reset, the surrogate's normalisation
  std::int32_t ref_steps = 0;
  bool detach_reset = true;
  std::uint8_t* spiked = nullptr;  // [n] output: 1 where the neuron fired this step
  // Set to 1 when a stored V or conductance is NaN or Inf; null: not checked. Only written
  // when something is wrong, so the threads of one population do not contend on it.
  std::atomic<int>* nonfinite = nullptr;
};

inline namespace BRAIN_KERNEL_ISA {

// x - x is 0 for every finite x and NaN for NaN and +-Inf: a subtraction and a compare, which
// vectorize with the loops below. Valid because the project never builds with -ffinite-math-only.
template <typename T>
inline bool not_finite(T x) {
  return !(x - x == T(0));
}

// One receptor over neurons [b, b + m): g = g_decayed + pending..., I = base + current(g, V),
// next g_decayed. base is the drive (first receptor) or I itself (later ones). The common
// case, one projection per receptor, is a single pass; copies are avoided because compilers
// turn them into slow string moves at these sizes.
// Returns whether a stored conductance is not finite (kCheck; false otherwise).
template <bool kCoba, bool kEuler, bool kCheck, typename T>
inline bool receptor_block(const Receptor<T>& rc, const T* __restrict V, const T* base, T* I, std::int64_t b,
                           std::int64_t m) {
  T* __restrict gd = rc.g_decayed + b;
  const T E = rc.E, f = rc.factor;
  int bad = 0;
  auto finish = [&](std::int64_t j, T g) {
    I[j] = base[j] + (kCoba ? g * (E - V[j]) : g);
    const T next = kEuler ? g - g * f : g * f;
    gd[j] = next;
    if constexpr (kCheck) bad |= not_finite(next);
  };
  if (rc.n_pending == 1) {
    T* __restrict pend = rc.pending[0] + b;
    for (std::int64_t j = 0; j < m; ++j) {
      const T g = gd[j] + pend[j];
      pend[j] = T(0);
      finish(j, g);
    }
    return bad != 0;
  }
  T g[kBlock];
  if (rc.n_pending == 0) {
    for (std::int64_t j = 0; j < m; ++j) g[j] = gd[j] + T(0);  // as the module engine adds no arrivals
  } else {
    T* __restrict pend = rc.pending[0] + b;
    for (std::int64_t j = 0; j < m; ++j) {
      g[j] = gd[j] + pend[j];
      pend[j] = T(0);
    }
  }
  for (int a = 1; a < rc.n_pending; ++a) {
    T* __restrict pend = rc.pending[a] + b;
    for (std::int64_t j = 0; j < m; ++j) {
      g[j] = g[j] + pend[j];
      pend[j] = T(0);
    }
  }
  for (std::int64_t j = 0; j < m; ++j) finish(j, g[j]);
  return bad != 0;
}

// Synaptic input of neurons [b, b + m): drive plus every receptor's current at V(t), in the
// order the population registered them; folds the pending arrivals in.
// Returns whether a stored conductance is not finite (kCheck; false otherwise).
template <bool kCheck, typename T>
inline bool block_currents(const LifPop<T>& p, std::int64_t b, std::int64_t m, T* I) {
  const T* V = p.V + b;
  const T* base = p.drive + b;
  if (p.n_receptors == 0) {
    for (std::int64_t j = 0; j < m; ++j) I[j] = base[j];
    return false;
  }
  bool bad = false;
  for (int r = 0; r < p.n_receptors; ++r) {
    const Receptor<T>& rc = p.receptors[r];
    if (rc.coba) {
      bad |= rc.euler ? receptor_block<true, true, kCheck>(rc, V, base, I, b, m)
                      : receptor_block<true, false, kCheck>(rc, V, base, I, b, m);
    } else {
      bad |= rc.euler ? receptor_block<false, true, kCheck>(rc, V, base, I, b, m)
                      : receptor_block<false, false, kCheck>(rc, V, base, I, b, m);
    }
    base = I;
  }
  return bad;
}

// Returns whether a stored V is not finite (kCheck; false otherwise).
template <bool kEuler, bool kRefractory, bool kDetach, bool kCheck, typename T>
inline bool block_membrane(const LifPop<T>& p, std::int64_t step, std::int64_t b, std::int64_t m, const T* I) {
  // Everything read from p is loaded once: the stores below could alias it otherwise, and a
  // reload in the loop keeps the compiler from vectorizing it.
  T* __restrict V = p.V + b;
  std::int32_t* __restrict since = kRefractory ? p.since_spike + b : nullptr;
  std::uint8_t* __restrict spiked = p.spiked + b;
  const T V_rest = p.V_rest, R = p.R, f = p.factor, V_th = p.V_th, V_reset = p.V_reset;
  const T scale = p.threshold_scale;
  const std::int32_t ref_steps = p.ref_steps;
  int bad = 0;
  for (std::int64_t j = 0; j < m; ++j) {
    const T v = V[j];
    T vn;
    if constexpr (kEuler) {
      vn = v + (-(v - V_rest) + R * I[j]) * f;
    } else {
      const T v_inf = V_rest + R * I[j];
      vn = v_inf + (v - v_inf) * f;
    }
    if constexpr (kRefractory) {
      const std::int32_t c = since[j];
      vn = c < ref_steps ? v : vn;  // the module engine's (step - last_spike) < ref_steps
      const bool fire = (vn - V_th) / scale > T(0);
      since[j] = fire ? 1 : (c < ref_steps ? c + 1 : ref_steps);
      const T out = kDetach ? (fire ? V_reset : vn) : vn + (V_reset - vn) * (fire ? T(1) : T(0));
      V[j] = out;
      if constexpr (kCheck) bad |= not_finite(out);
      spiked[j] = fire;
    } else {
      const bool fire = (vn - V_th) / scale > T(0);
      const T out = kDetach ? (fire ? V_reset : vn) : vn + (V_reset - vn) * (fire ? T(1) : T(0));
      V[j] = out;
      if constexpr (kCheck) bad |= not_finite(out);
      spiked[j] = fire;
    }
  }
  return bad != 0;
}

// The finiteness check costs about 7% on COBA-4000, so without it the loops do not have it.
template <bool kEuler, bool kRefractory, bool kDetach, bool kCheck, typename T>
void lif_range(const LifPop<T>& p, std::int64_t step, std::int64_t begin, std::int64_t end) {
  T I[kBlock];
  for (std::int64_t b = begin; b < end; b += kBlock) {
    const std::int64_t m = end - b < kBlock ? end - b : kBlock;
    const bool bad_g = block_currents<kCheck>(p, b, m, I);
    const bool bad_v = block_membrane<kEuler, kRefractory, kDetach, kCheck>(p, step, b, m, I);
    if constexpr (kCheck) {
      if (bad_g || bad_v) p.nonfinite->store(1, std::memory_order_relaxed);
    }
  }
}

template <bool kCheck, typename T>
void lif_step_as(const LifPop<T>& p, std::int64_t step, std::int64_t begin, std::int64_t end) {
  const bool refractory = p.since_spike != nullptr;
  if (p.euler) {
    if (refractory) {
      p.detach_reset ? lif_range<true, true, true, kCheck>(p, step, begin, end)
                     : lif_range<true, true, false, kCheck>(p, step, begin, end);
    } else {
      p.detach_reset ? lif_range<true, false, true, kCheck>(p, step, begin, end)
                     : lif_range<true, false, false, kCheck>(p, step, begin, end);
    }
  } else {
    if (refractory) {
      p.detach_reset ? lif_range<false, true, true, kCheck>(p, step, begin, end)
                     : lif_range<false, true, false, kCheck>(p, step, begin, end);
    } else {
      p.detach_reset ? lif_range<false, false, true, kCheck>(p, step, begin, end)
                     : lif_range<false, false, false, kCheck>(p, step, begin, end);
    }
  }
}

// One step of neurons [begin, end) of p (any split of a population gives the same result).
template <typename T>
void lif_step(const LifPop<T>& p, std::int64_t step, std::int64_t begin, std::int64_t end) {
  p.nonfinite ? lif_step_as<true>(p, step, begin, end) : lif_step_as<false>(p, step, begin, end);
}

// One step of neurons [begin, end) of a conductance-based population: the synaptic input as
// for LIF, then CondNeuGroup's one-pass update (gates in place, V by exponential Euler) and
// the spike where V crossed V_th upwards. Any split of a population gives the same result.
template <bool kCheck, typename T>
void cond_range(const LifPop<T>& p, const cond::Group<T>& grp, std::int64_t begin, std::int64_t end) {
  T I[kBlock], V_new[cond::kLanes];
  const T th = static_cast<T>(grp.V_th);
  for (std::int64_t b = begin; b < end; b += kBlock) {
    const std::int64_t m = end - b < kBlock ? end - b : kBlock;
    const bool bad_g = block_currents<kCheck>(p, b, m, I);
    int bad_v = 0;
    for (std::int64_t l = 0; l < m; l += cond::kLanes) {
      const int lanes = static_cast<int>(m - l < cond::kLanes ? m - l : cond::kLanes);
      T* V = p.V + b + l;
      cond::step_block(grp, b + l, lanes, V, I + l, V_new);
      for (int j = 0; j < lanes; ++j) {
        p.spiked[b + l + j] = cond::crossed(V[j], V_new[j], th);
        V[j] = V_new[j];
        if constexpr (kCheck) bad_v |= not_finite(V_new[j]);
      }
    }
    if constexpr (kCheck) {
      if (bad_g || bad_v) p.nonfinite->store(1, std::memory_order_relaxed);
    }
  }
}

template <typename T>
void cond_step(const LifPop<T>& p, const cond::Group<T>& grp, std::int64_t begin, std::int64_t end) {
  p.nonfinite ? cond_range<true>(p, grp, begin, end) : cond_range<false>(p, grp, begin, end);
}

// Indices of the set flags of [0, n) in increasing order into out; returns how many. Skips
// eight silent neurons at a time (most are silent in any step).
inline std::int64_t compact_spikes(const std::uint8_t* flags, std::int64_t n, std::int32_t* out) {
  std::int64_t count = 0;
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t word;
    __builtin_memcpy(&word, flags + i, 8);
    if (word == 0) continue;
    for (int k = 0; k < 8; ++k) {
      if (flags[i + k]) out[count++] = static_cast<std::int32_t>(i + k);
    }
  }
  for (; i < n; ++i) {
    if (flags[i]) out[count++] = static_cast<std::int32_t>(i);
  }
  return count;
}

// Spiking rows are scattered over the connectivity, so each costs two cache misses in a
// chain (indptr, then the row's indices) that the loop would otherwise wait on in turn: the
// row kRowsAhead spikes ahead is fetched, its indptr entry twice as far ahead.
constexpr std::int64_t kRowsAhead = 4;
constexpr std::int64_t kRowLinesFetched = 8;

// always_inline: GCC 12 judges a function whose only effect is a prefetch free of side
// effects and deletes the call before it would inline it.
template <typename index_t>
__attribute__((always_inline)) inline void prefetch_row(const index_t* indptr, const index_t* indices,
                                                        const std::int32_t* spikes, std::int64_t s,
                                                        std::int64_t n_spikes) {
  if (s + 2 * kRowsAhead < n_spikes) __builtin_prefetch(indptr + spikes[s + 2 * kRowsAhead]);
  if (s + kRowsAhead < n_spikes) {
    const std::int64_t row = spikes[s + kRowsAhead];
    const char* first = reinterpret_cast<const char*>(indices + indptr[row]);
    const char* last = reinterpret_cast<const char*>(indices + indptr[row + 1]);
    for (std::int64_t line = 0; line < kRowLinesFetched && first + 64 * line < last; ++line) {
      __builtin_prefetch(first + 64 * line);
    }
  }
}

// pending[post] += w for every synapse of the spiking rows, rows in spike order (which is
// increasing index, the order of the module engine's scatter). weights null: homogeneous w.
// scale (short-term plasticity's releases, per row): pending[post] += w * scale[row], the
// scatter's product; null: w itself, as the scatter's w * 1.
template <typename T, typename index_t>
void deliver_csr(const index_t* indptr, const index_t* indices, const T* weights, T w, const std::int32_t* spikes,
                 std::int64_t n_spikes, T* pending, const T* scale = nullptr) {
  for (std::int64_t s = 0; s < n_spikes; ++s) {
    prefetch_row(indptr, indices, spikes, s, n_spikes);
    const std::int64_t row = spikes[s];
    const std::int64_t k0 = indptr[row], k1 = indptr[row + 1];
    if (scale) {
      const T r = scale[row];
      if (weights) {
        for (std::int64_t k = k0; k < k1; ++k) pending[indices[k]] += weights[k] * r;
      } else {
        for (std::int64_t k = k0; k < k1; ++k) pending[indices[k]] += w * r;
      }
    } else if (weights) {
      for (std::int64_t k = k0; k < k1; ++k) pending[indices[k]] += weights[k];
    } else {
      for (std::int64_t k = k0; k < k1; ++k) pending[indices[k]] += w;
    }
  }
}

// Whether every row's column indices are non-decreasing (deliver_csr_columns can then find a
// row's part by bisection).
template <typename index_t>
bool rows_sorted(const index_t* indptr, const index_t* indices, std::int64_t n_rows) {
  for (std::int64_t r = 0; r < n_rows; ++r) {
    for (index_t k = indptr[r] + 1; k < indptr[r + 1]; ++k) {
      if (indices[k] < indices[k - 1]) return false;
    }
  }
  return true;
}

// deliver_csr for the postsynaptic columns [lo, hi) only: each of those targets receives the
// same additions in the same order, so splitting the columns between threads gives
// deliver_csr's bits whatever the split. sorted (rows_sorted): a row's part of the window is
// found by bisection; otherwise every entry is tested.
template <typename T, typename index_t>
void deliver_csr_columns(const index_t* indptr, const index_t* indices, const T* weights, T w,
                         const std::int32_t* spikes, std::int64_t n_spikes, T* pending, std::int64_t lo,
                         std::int64_t hi, bool sorted, const T* scale = nullptr) {
  for (std::int64_t s = 0; s < n_spikes; ++s) {
    prefetch_row(indptr, indices, spikes, s, n_spikes);
    const std::int64_t row = spikes[s];
    const index_t* first = indices + indptr[row];
    const index_t* last = indices + indptr[row + 1];
    auto add = [&](const index_t* at) {
      const T v = weights ? weights[at - indices] : w;
      pending[*at] += scale ? v * scale[row] : v;
    };
    if (sorted) {
      first = csr::first_at_least(first, last, lo);
      for (; first < last && *first < hi; ++first) add(first);
    } else {
      for (; first < last; ++first) {
        if (*first >= lo && *first < hi) add(first);
      }
    }
  }
}

// deliver_jit for the columns [lo, hi) only (whole blocks, except at a window's edges, keep a
// block's walk in one thread), into pending[col - origin]. Any split of the columns gives the
// same bits, as for CSR.
template <typename T>
void deliver_jit_columns(const jitc::Spec& spec, double a, double b, const std::int32_t* spikes,
                         std::int64_t n_spikes, T* pending, std::int64_t origin, std::int64_t lo, std::int64_t hi,
                         const T* scale = nullptr) {
  if (hi <= lo) return;
  const std::int64_t first = lo >> spec.block_shift, last = (hi - 1) >> spec.block_shift;
  for (std::int64_t s = 0; s < n_spikes; ++s) {
    const std::int64_t row = spikes[s];
    for (std::int64_t blk = first; blk <= last; ++blk) {
      jitc::for_each_entry_in_block<T>(spec, a, b, row, blk, [&](std::int64_t col, T v) {
        if (col >= lo && col < hi) pending[col - origin] += scale ? v * scale[row] : v;
      });
    }
  }
}

// The same through JIT connectivity, regenerating each spiking row (jitc_gen.h); scale as
// deliver_csr's (the JIT scatter's v * x).
template <typename T>
void deliver_jit(const jitc::Spec& spec, double a, double b, const std::int32_t* spikes, std::int64_t n_spikes,
                 T* pending, std::int64_t col_lo = 0, std::int64_t col_hi = -1, const T* scale = nullptr) {
  if (col_hi < 0) col_hi = spec.n_cols;
  if (col_lo != 0 || col_hi != spec.n_cols) {
    // A column window (one rank's postsynaptic neurons): only the blocks that overlap it.
    deliver_jit_columns(spec, a, b, spikes, n_spikes, pending, col_lo, col_lo, col_hi, scale);
    return;
  }
  for (std::int64_t s = 0; s < n_spikes; ++s) {
    const std::int64_t row = spikes[s];
    if (scale) {
      const T r = scale[row];
      for (std::int64_t blk = 0; blk < spec.n_blocks; ++blk) {
        jitc::for_each_entry_in_block<T>(spec, a, b, row, blk, [&](std::int64_t col, T v) { pending[col] += v * r; });
      }
      continue;
    }
    for (std::int64_t blk = 0; blk < spec.n_blocks; ++blk) {
      jitc::for_each_entry_in_block<T>(spec, a, b, row, blk, [&](std::int64_t col, T v) { pending[col] += v; });
    }
  }
}

}  // namespace BRAIN_KERNEL_ISA

}  // namespace brain::kernels::fastsim
