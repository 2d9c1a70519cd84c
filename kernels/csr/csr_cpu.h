// Torch-free CPU kernels for CSR sparse matrix products (SPEC section 1).
//
// A is [n_rows, n_cols] in CSR form (indptr [n_rows + 1], indices [nnz], weights [nnz] or one
// homogeneous value). x is a dense row-major [batch, n_in] block and out is [batch, n_out]:
//   transpose = false:  out[b, i] = sum_{k in row i} w_k * x[b, indices[k]]     (gather)
//   transpose = true:   out[b, indices[k]] += w_k * x[b, i] for k in row i      (scatter)
// The event variants compute exactly the same values; they only skip zero entries of x
// (in the scatter form, whole rows whose x is zero are never visited).
//
// Each function processes a range of work and is called by the ATen glue from
// at::parallel_for; ranges never write the same output element, so no atomics are needed and
// results do not depend on the number of threads. Functions that read indices return a
// Status: the first decreasing indptr step or out-of-range index they met, which the glue
// turns into an error naming the argument. The bounds check costs a compare per entry.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/isa.h"
#include "kernels/spike_byte.h"

namespace brain::kernels::csr {

struct Status {
  enum Kind : std::int8_t { kOk, kDecreasingIndptr, kIndexOutOfRange };
  Kind kind = kOk;
  std::int64_t pos = 0;  // the row (kDecreasingIndptr) or the entry (kIndexOutOfRange)
  bool ok() const { return kind == kOk; }
  static Status bad_indptr(std::int64_t row) { return {kDecreasingIndptr, row}; }
  static Status bad_index(std::int64_t k) { return {kIndexOutOfRange, k}; }
};

template <typename scalar_t, typename index_t, typename x_t>
struct Params {
  const index_t* indptr = nullptr;
  const index_t* indices = nullptr;
  const scalar_t* weights = nullptr;  // [nnz], or [1] when homo
  bool homo = false;
  const x_t* x = nullptr;  // [batch, n_in]
  std::int64_t n_rows = 0;
  std::int64_t n_cols = 0;
  std::int64_t batch = 1;
  std::int64_t nnz = 0;  // indices.size(): every row's [indptr[i], indptr[i + 1]) must lie within it
};

inline namespace BRAIN_KERNEL_ISA {

// x is the input's numbers (x_t = scalar_t) or bool events (x_t = SpikeByte).
template <typename x_t>
inline bool is_active(x_t v) {
  static_assert(!std::is_same_v<x_t, bool>, "bool events are read as SpikeByte");
  if constexpr (std::is_same_v<x_t, SpikeByte>) {
    return v.byte != 0;
  } else {
    return v != x_t(0);
  }
}

// A spike byte's value, 0 for byte 0 and 1 for any other, by the byte itself.
template <typename scalar_t>
struct SpikeValues {
  scalar_t of[256];
  constexpr SpikeValues() : of{} {
    for (int b = 1; b < 256; ++b) of[b] = scalar_t(1);
  }
};

template <typename scalar_t, typename x_t>
inline scalar_t as_scalar(x_t v) {
  static_assert(!std::is_same_v<x_t, bool>, "bool events are read as SpikeByte");
  if constexpr (std::is_same_v<x_t, SpikeByte>) {
    // One load (the table stays in L1) instead of a branch on spike data or a compare and an
    // int-to-float conversion: 7% of the single-item event gather's time.
    static constexpr SpikeValues<scalar_t> kValue{};
    return kValue.of[v.byte];
  } else {
    return static_cast<scalar_t>(v);
  }
}

template <typename scalar_t, typename index_t, typename x_t>
inline scalar_t weight_at(const Params<scalar_t, index_t, x_t>& p, std::int64_t k) {
  return p.homo ? p.weights[0] : p.weights[k];
}

// Calls f(k, j) for each entry k of row i (column j) in order, after checking the row's
// bounds and each column: the checked walk the scatter forms share.
template <typename scalar_t, typename index_t, typename x_t, typename F>
inline Status for_each_entry(const Params<scalar_t, index_t, x_t>& p, std::int64_t i, F&& f) {
  const std::int64_t k0 = p.indptr[i];
  const std::int64_t k1 = p.indptr[i + 1];
  if (k1 < k0 || k0 < 0 || k1 > p.nnz) return Status::bad_indptr(i);
  for (std::int64_t k = k0; k < k1; ++k) {
    const std::int64_t j = p.indices[k];
    if (j < 0 || j >= p.n_cols) return Status::bad_index(k);
    f(k, j);
  }
  return {};
}

// Gather form, for flattened output positions [begin, end) of out[batch, n_rows].
// acc_t is the accumulation type (double for double, float for float).
template <bool kEvent, typename acc_t, typename scalar_t, typename index_t, typename x_t>
Status gather(const Params<scalar_t, index_t, x_t>& p, scalar_t* out, std::int64_t begin,
                    std::int64_t end) {
  for (std::int64_t flat = begin; flat < end; ++flat) {
    const std::int64_t b = flat / p.n_rows;
    const std::int64_t i = flat - b * p.n_rows;
    const x_t* xb = p.x + b * p.n_cols;
    const std::int64_t k0 = p.indptr[i];
    const std::int64_t k1 = p.indptr[i + 1];
    if (k1 < k0 || k0 < 0 || k1 > p.nnz) return Status::bad_indptr(i);
    acc_t acc = 0;
    for (std::int64_t k = k0; k < k1; ++k) {
      const std::int64_t j = p.indices[k];
      if (j < 0 || j >= p.n_cols) return Status::bad_index(k);
      const x_t xv = xb[j];
      const acc_t w = static_cast<acc_t>(weight_at(p, k));
      if constexpr (kEvent) {
        // As in gather_row_batch: with a finite w an inactive x adds +-0, which changes no
        // sum, so only a non-finite w needs the (unpredictable) test of x.
        if (!(w - w == acc_t(0)) && !is_active(xv)) continue;
      }
      acc += w * static_cast<acc_t>(as_scalar<scalar_t>(xv));
    }
    out[flat] = static_cast<scalar_t>(acc);
  }
  return {};
}

// Scatter form for one batch item b over rows [row_begin, row_end), accumulating into
// out_b[n_cols] (which the caller zeroed). Rows are visited in order, so the summation order
// into each output element is fixed.
template <bool kEvent, typename scalar_t, typename index_t, typename x_t>
Status scatter(const Params<scalar_t, index_t, x_t>& p, std::int64_t b,
                     std::int64_t row_begin, std::int64_t row_end, scalar_t* out_b) {
  const x_t* xb = p.x + b * p.n_rows;
  for (std::int64_t i = row_begin; i < row_end; ++i) {
    const x_t xv = xb[i];
    if constexpr (kEvent) {
      if (!is_active(xv)) continue;
    }
    const scalar_t xs = as_scalar<scalar_t>(xv);
    const Status st = for_each_entry(p, i, [&](std::int64_t k, std::int64_t j) { out_b[j] += weight_at(p, k) * xs; });
    if (!st.ok()) return st;
  }
  return {};
}

// The first of the sorted [first, last) that is >= lo (last if none), by a bisection without
// branches (the range halves whichever way each test goes), which would be mispredicted about
// half the time.
template <typename index_t>
inline const index_t* first_at_least(const index_t* first, const index_t* last, std::int64_t lo) {
  if (first == last || *first >= lo) return first;
  std::int64_t count = last - first;  // the answer lies in (first, first + count]
  while (count > 1) {
    const std::int64_t half = count / 2;
    first = first[half - 1] < lo ? first + half : first;
    count -= half;
  }
  return first + (*first < lo);
}

// sum over b < n of x[b * x_stride] * g[b * g_stride], skipping inactive (zero) x entries.
template <typename acc_t, typename scalar_t, typename x_t>
inline acc_t active_dot(const x_t* x, std::int64_t x_stride, const scalar_t* g, std::int64_t g_stride,
                        std::int64_t n) {
  acc_t acc = 0;
  for (std::int64_t b = 0; b < n; ++b) {
    const x_t xv = x[b * x_stride];
    if (!is_active(xv)) continue;
    acc += static_cast<acc_t>(as_scalar<scalar_t>(xv)) * static_cast<acc_t>(g[b * g_stride]);
  }
  return acc;
}

// Per-synapse weight gradient for rows [row_begin, row_end):
//   dW[k] = sum_b x[b, src(k)] * g[b, dst(k)]
// with (src, dst) = (indices[k], row) for the gather form and (row, indices[k]) for the
// scatter form. x is the forward input ([batch, n_cols] for gather, [batch, n_rows] for
// scatter), g the output gradient (the other one). Zero x entries are skipped, so the event
// forms cost what their forward costs. When dw_row_sum is non-null, each row's sum of dW is
// written there instead of dW itself (the homogeneous-weight gradient, without an [nnz]
// buffer).
template <bool kTranspose, typename acc_t, typename scalar_t, typename index_t, typename x_t>
Status weight_grad(const index_t* indptr, const index_t* indices, const x_t* x,
                         const scalar_t* g, std::int64_t n_rows, std::int64_t n_cols,
                         std::int64_t batch, std::int64_t nnz, std::int64_t row_begin, std::int64_t row_end,
                         scalar_t* dw, acc_t* dw_row_sum) {
  const std::int64_t n_x = kTranspose ? n_rows : n_cols;
  const std::int64_t n_g = kTranspose ? n_cols : n_rows;
  for (std::int64_t i = row_begin; i < row_end; ++i) {
    const std::int64_t k0 = indptr[i];
    const std::int64_t k1 = indptr[i + 1];
    if (k1 < k0 || k0 < 0 || k1 > nnz) return Status::bad_indptr(i);
    acc_t row_sum = 0;
    for (std::int64_t k = k0; k < k1; ++k) {
      const std::int64_t j = indices[k];
      if (j < 0 || j >= n_cols) return Status::bad_index(k);
      const acc_t acc = active_dot<acc_t>(x + (kTranspose ? i : j), n_x, g + (kTranspose ? j : i), n_g, batch);
      if (dw_row_sum) {
        row_sum += acc;
      } else {
        dw[k] = static_cast<scalar_t>(acc);
      }
    }
    if (dw_row_sum) dw_row_sum[i] = row_sum;
  }
  return {};
}


// ---- Batch-minor forms ------------------------------------------------------------------
// For batch > 1 the glue transposes x (and, for the weight gradient, g) to [n, batch], so the
// batch items of one column sit side by side: each row's indices are read once for the whole
// batch instead of once per item, and the batch-strided reads become contiguous. Every output
// element still sums the same terms in the same order, so the results equal the batch-major
// forms above bit for bit.

// One row's sums for the kLanes batch items [b0, b0 + kLanes), in registers, over entries
// [k0, k1) whose indices the caller checked. Each item adds its terms in entry order from +0:
// the same sum as any other lane width. kSkipInactive adds only the non-zero x (the event
// form's definition); without it every product is added, a loop that vectorises.
template <int kLanes, bool kSkipInactive, typename acc_t, typename scalar_t, typename index_t, typename x_t>
inline void gather_row_lanes(const Params<scalar_t, index_t, x_t>& p, std::int64_t k0, std::int64_t k1,
                             std::int64_t b0, acc_t* acc) {
  acc_t lane[kLanes];
  for (int l = 0; l < kLanes; ++l) lane[l] = 0;
  for (std::int64_t k = k0; k < k1; ++k) {
    const acc_t w = static_cast<acc_t>(weight_at(p, k));
    const x_t* xj = p.x + static_cast<std::int64_t>(p.indices[k]) * p.batch + b0;
    for (int l = 0; l < kLanes; ++l) {
      if (!kSkipInactive || is_active(xj[l])) lane[l] += w * static_cast<acc_t>(as_scalar<scalar_t>(xj[l]));
    }
  }
  for (int l = 0; l < kLanes; ++l) acc[l] = lane[l];
}

template <bool kSkipInactive, typename acc_t, typename scalar_t, typename index_t, typename x_t>
inline void gather_row_all_lanes(const Params<scalar_t, index_t, x_t>& p, std::int64_t k0, std::int64_t k1,
                                 acc_t* acc) {
  const std::int64_t batch = p.batch;
  std::int64_t b = 0;
  for (; b + 16 <= batch; b += 16) gather_row_lanes<16, kSkipInactive>(p, k0, k1, b, acc + b);
  for (; b + 8 <= batch; b += 8) gather_row_lanes<8, kSkipInactive>(p, k0, k1, b, acc + b);
  for (; b + 4 <= batch; b += 4) gather_row_lanes<4, kSkipInactive>(p, k0, k1, b, acc + b);
  if (b < batch && batch >= 4) {
    gather_row_lanes<4, kSkipInactive>(p, k0, k1, batch - 4, acc + batch - 4);
  } else if (batch == 3) {
    gather_row_lanes<3, kSkipInactive>(p, k0, k1, 0, acc);
  } else if (batch == 2) {
    gather_row_lanes<2, kSkipInactive>(p, k0, k1, 0, acc);
  } else if (batch == 1) {
    gather_row_lanes<1, kSkipInactive>(p, k0, k1, 0, acc);
  }
}

// Whether every weight of entries [k0, k1) is finite (no branch per entry: it vectorises).
template <typename scalar_t, typename index_t, typename x_t>
inline bool row_weights_finite(const Params<scalar_t, index_t, x_t>& p, std::int64_t k0, std::int64_t k1) {
  if (p.homo) return p.weights[0] - p.weights[0] == scalar_t(0);
  unsigned non_finite = 0;
  for (std::int64_t k = k0; k < k1; ++k) non_finite |= static_cast<unsigned>(!(p.weights[k] - p.weights[k] == scalar_t(0)));
  return non_finite == 0;
}

// One row's sums for every batch item into acc[0, batch), over entries [k0, k1) whose
// indices the caller checked: 16, 8 or 4 items at a time in registers, and a tail of 1-3
// items reruns the last 4 (the same sums, written again). A sum kept in memory instead is
// stored and reloaded at every entry: 1.2-4.4x slower for 2-64 items (4000 rows of 80
// entries, float32, one thread). In the event form, a finite w times a zero x adds +-0, which
// leaves every sum unchanged (a sum starts at +0 and never becomes -0), so a row whose
// weights are all finite takes the plain product loop, its value bit for bit; only a row with
// a non-finite w (w * 0 = NaN) skips the inactive items, entry by entry (2-4x slower when
// every row did: the branch keeps the loop from vectorising).
template <bool kEvent, typename acc_t, typename scalar_t, typename index_t, typename x_t>
inline void gather_row_batch(const Params<scalar_t, index_t, x_t>& p, std::int64_t k0, std::int64_t k1, acc_t* acc) {
  if constexpr (kEvent) {
    if (!row_weights_finite(p, k0, k1)) {
      gather_row_all_lanes<true>(p, k0, k1, acc);
      return;
    }
  }
  gather_row_all_lanes<false>(p, k0, k1, acc);
}

// Gather form for rows [row_begin, row_end) of every batch item. x is [n_cols, batch]; out
// is [batch, n_rows] as above; acc is scratch for `batch` sums. A row's indices are checked
// once, then its sums run in registers (gather_row_batch).
template <bool kEvent, typename acc_t, typename scalar_t, typename index_t, typename x_t>
Status gather_batch_minor(const Params<scalar_t, index_t, x_t>& p, scalar_t* out, std::int64_t row_begin,
                          std::int64_t row_end, acc_t* acc) {
  for (std::int64_t i = row_begin; i < row_end; ++i) {
    const std::int64_t k0 = p.indptr[i];
    const std::int64_t k1 = p.indptr[i + 1];
    if (k1 < k0 || k0 < 0 || k1 > p.nnz) return Status::bad_indptr(i);
    for (std::int64_t k = k0; k < k1; ++k) {
      const std::int64_t j = p.indices[k];
      if (j < 0 || j >= p.n_cols) return Status::bad_index(k);
    }
    gather_row_batch<kEvent>(p, k0, k1, acc);
    for (std::int64_t b = 0; b < p.batch; ++b) out[b * p.n_rows + i] = static_cast<scalar_t>(acc[b]);
  }
  return {};
}

// Scatter form (the float op: every row visited) for a tile of kLanes batch items, with x
// as [n_rows, kLanes] and out as [n_cols, kLanes] (zeroed by the caller): each row's indices
// are read once for the whole tile and each entry updates the tile's outputs side by side
// (one cache line for float32). Rows are visited in order, so each output element sums the
// same terms in the same order as `scatter` does for its item alone.
template <int kLanes, typename scalar_t, typename index_t, typename x_t>
Status scatter_tile(const Params<scalar_t, index_t, x_t>& p, const x_t* x_tile, scalar_t* out_tile) {
  for (std::int64_t i = 0; i < p.n_rows; ++i) {
    const x_t* xi = x_tile + i * kLanes;
    const Status st = for_each_entry(p, i, [&](std::int64_t k, std::int64_t j) {
      const scalar_t w = weight_at(p, k);
      scalar_t* oj = out_tile + j * kLanes;
      for (int b = 0; b < kLanes; ++b) oj[b] += w * as_scalar<scalar_t>(xi[b]);
    });
    if (!st.ok()) return st;
  }
  return {};
}

// Sums for kWays entries of one row side by side, each in batch order from +0 as active_dot
// adds it: kWays independent chains of adds overlap instead of each waiting on the last.
// The gather form: every entry reads its own x row (x[w]) against the row's g. With a finite
// g, an inactive (zero) x adds +-0, which leaves every sum's bits unchanged (a sum that starts
// at +0 is never -0), so the plain product loop, without a branch on spike data, is
// active_dot's value; only a g with a non-finite item (kGFinite false: 0 * inf = NaN) must
// skip the inactive items.
template <int kWays, bool kGFinite, typename acc_t, typename scalar_t, typename x_t>
inline void active_dots_gather(const x_t* const* x, const scalar_t* g, std::int64_t batch, acc_t* out) {
  acc_t acc[kWays];
  for (int w = 0; w < kWays; ++w) acc[w] = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    const acc_t gb = static_cast<acc_t>(g[b]);
    for (int w = 0; w < kWays; ++w) {
      const x_t xv = x[w][b];
      if (kGFinite || is_active(xv)) acc[w] += static_cast<acc_t>(as_scalar<scalar_t>(xv)) * gb;
    }
  }
  for (int w = 0; w < kWays; ++w) out[w] = acc[w];
}

// The scatter form: the row's x (item b at x[b * x_stride]) is shared and only its active
// items (lanes) are visited; every entry reads its own g row (g[w]).
template <int kWays, typename acc_t, typename scalar_t, typename x_t>
inline void active_dots_scatter(const x_t* x, std::int64_t x_stride, const std::int64_t* lanes,
                                std::int64_t n_active, const scalar_t* const* g, acc_t* out) {
  acc_t acc[kWays];
  for (int w = 0; w < kWays; ++w) acc[w] = 0;
  for (std::int64_t a = 0; a < n_active; ++a) {
    const std::int64_t b = lanes[a];
    const acc_t xb = static_cast<acc_t>(as_scalar<scalar_t>(x[b * x_stride]));
    for (int w = 0; w < kWays; ++w) acc[w] += xb * static_cast<acc_t>(g[w][b]);
  }
  for (int w = 0; w < kWays; ++w) out[w] = acc[w];
}

// Calls f(std::integral_constant<int, 4>{}, k) for each group [k, k + 4) of [k0, k1) while
// four entries remain, then f(std::integral_constant<int, 1>{}, k) for each of the rest: how
// the weight-gradient sums (active_dots_*) go side by side.
template <typename F>
inline void for_entry_groups(std::int64_t k0, std::int64_t k1, F&& f) {
  std::int64_t k = k0;
  for (; k + 4 <= k1; k += 4) f(std::integral_constant<int, 4>{}, k);
  for (; k < k1; ++k) f(std::integral_constant<int, 1>{}, k);
}

// weight_grad with x as [n_x, batch] and g as [n_g, batch]. In the scatter form a row's
// active batch items are listed once (lanes: scratch for `batch` of them), so a row whose x
// is zero for every item costs only its index checks. Entries go four at a time (see
// active_dots_gather); every dW[k] and row sum is the same sum in the same order as
// weight_grad's, so the same bits.
template <bool kTranspose, typename acc_t, typename scalar_t, typename index_t, typename x_t>
Status weight_grad_batch_minor(const index_t* indptr, const index_t* indices, const x_t* x, const scalar_t* g,
                               std::int64_t n_rows, std::int64_t n_cols, std::int64_t batch, std::int64_t nnz,
                               std::int64_t row_begin, std::int64_t row_end, scalar_t* dw, acc_t* dw_row_sum,
                               std::int64_t* lanes) {
  (void)n_rows;
  for (std::int64_t i = row_begin; i < row_end; ++i) {
    const std::int64_t k0 = indptr[i];
    const std::int64_t k1 = indptr[i + 1];
    if (k1 < k0 || k0 < 0 || k1 > nnz) return Status::bad_indptr(i);
    for (std::int64_t k = k0; k < k1; ++k) {
      const std::int64_t j = indices[k];
      if (j < 0 || j >= n_cols) return Status::bad_index(k);
    }
    std::int64_t n_active = 0;
    bool g_finite = true;
    if constexpr (kTranspose) {
      const x_t* xi = x + i * batch;
      for (std::int64_t b = 0; b < batch; ++b) {
        if (is_active(xi[b])) lanes[n_active++] = b;
      }
    } else {
      const scalar_t* gi = g + i * batch;
      for (std::int64_t b = 0; b < batch; ++b) g_finite = g_finite && gi[b] - gi[b] == scalar_t(0);
    }
    acc_t row_sum = 0;
    auto emit = [&](std::int64_t k, acc_t value) {
      if (dw_row_sum) {
        row_sum += value;
      } else {
        dw[k] = static_cast<scalar_t>(value);
      }
    };
    if (kTranspose && n_active == 0) {
      for (std::int64_t k = k0; k < k1; ++k) emit(k, acc_t(0));
    } else {
      for_entry_groups(k0, k1, [&](auto ways_tag, std::int64_t k) {
        constexpr int ways = decltype(ways_tag)::value;
        acc_t sums[ways];
        if constexpr (kTranspose) {
          const scalar_t* gs[ways];
          for (int w = 0; w < ways; ++w) gs[w] = g + static_cast<std::int64_t>(indices[k + w]) * batch;
          active_dots_scatter<ways>(x + i * batch, 1, lanes, n_active, gs, sums);
        } else {
          const x_t* xs[ways];
          for (int w = 0; w < ways; ++w) xs[w] = x + static_cast<std::int64_t>(indices[k + w]) * batch;
          if (g_finite) {
            active_dots_gather<ways, true>(xs, g + i * batch, batch, sums);
          } else {
            active_dots_gather<ways, false>(xs, g + i * batch, batch, sums);
          }
        }
        for (int w = 0; w < ways; ++w) emit(k + w, sums[w]);
      });
    }
    if (dw_row_sum) dw_row_sum[i] = row_sum;
  }
  return {};
}

}  // namespace BRAIN_KERNEL_ISA

}  // namespace brain::kernels::csr
