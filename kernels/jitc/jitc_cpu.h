// Torch-free CPU loops of the JIT-connectivity ops over the generator in jitc_gen.h. Each
// function handles a range of rows, so the host glue can split work with at::parallel_for.
//
// Layouts: x is [batch, n_in] row-major, out is [batch, n_out]; n_in/n_out are n_cols/n_rows
// (transpose = false) or n_rows/n_cols (transpose = true). Values are rounded to scalar_t
// once, exactly as jitc_materialize stores them.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/csr/csr_cpu.h"
#include "kernels/isa.h"
#include "kernels/jitc/jitc_gen.h"
#include "kernels/spike_byte.h"

namespace brain::kernels::jitc {

template <typename scalar_t, typename x_t>
struct MatmulParams {
  Spec spec;
  double a = 0, b = 0;  // the weight parameters
  const x_t* x = nullptr;
  std::int64_t batch = 1;
  // Optional: A already generated as CSR (jitc_to_csr's indptr, indices and values, in its
  // order and rounding), for a caller that multiplies by the same A many times. The loops
  // then read the entries instead of generating them: the same entries, values and order.
  const std::int64_t* csr_indptr = nullptr;
  const std::int64_t* csr_indices = nullptr;
  const scalar_t* csr_values = nullptr;
  // gather only: x stored batch-minor, [n_in, batch] (the item values of one column together).
  bool x_batch_minor = false;
};

inline namespace BRAIN_KERNEL_ISA {

// x is the input's numbers (x_t = scalar_t) or bool events (x_t = SpikeByte).
template <typename x_t>
inline bool nonzero(x_t v) {
  static_assert(!std::is_same_v<x_t, bool>, "bool events are read as SpikeByte");
  if constexpr (std::is_same_v<x_t, SpikeByte>) {
    return v.byte != 0;
  } else {
    return v != x_t(0);
  }
}

template <typename T, typename x_t>
inline T number(x_t v) {
  static_assert(!std::is_same_v<x_t, bool>, "bool events are read as SpikeByte");
  if constexpr (std::is_same_v<x_t, SpikeByte>) {
    return v.byte != 0 ? T(1) : T(0);
  } else {
    return static_cast<T>(v);
  }
}

// f(col, value) for the entries of block `blk` of row `row` in column order, each value rounded
// once to scalar_t.
template <typename scalar_t, typename F>
void for_each_entry_in_block(const Spec& s, double a, double b, std::int64_t row, std::int64_t blk, F&& f) {
  for_each_variate_in_block(s, row, blk, [&](std::int64_t col, double variate) {
    f(col, static_cast<scalar_t>(entry_value(s.dist, variate, a, b)));
  });
}

// f(col, value) for the entries of a row in column order, generated or read from the CSR copy.
template <typename scalar_t, typename x_t, typename F>
void for_each_entry_of_row(const MatmulParams<scalar_t, x_t>& p, std::int64_t row, F&& f) {
  if (p.csr_indptr != nullptr) {
    for (std::int64_t k = p.csr_indptr[row]; k < p.csr_indptr[row + 1]; ++k) f(p.csr_indices[k], p.csr_values[k]);
    return;
  }
  const Spec& s = p.spec;
  for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) {
    for_each_entry_in_block<scalar_t>(s, p.a, p.b, row, blk, f);
  }
}

// out[b, row] = sum_j A[row, j] * x[b, j] for rows [row_begin, row_end); accumulates in acc_t.
// kEvent skips zero x entries (the sum is the same).
template <bool kEvent, typename acc_t, typename scalar_t, typename x_t>
void gather(const MatmulParams<scalar_t, x_t>& p, scalar_t* out, std::int64_t row_begin,
            std::int64_t row_end) {
  const Spec& s = p.spec;
  std::vector<acc_t> acc(static_cast<size_t>(p.batch));
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    for (auto& v : acc) v = acc_t(0);
    for_each_entry_of_row(p, row, [&](std::int64_t col, scalar_t v) {
      const x_t* xc = p.x_batch_minor ? p.x + col * p.batch : p.x + col;
      const std::int64_t stride = p.x_batch_minor ? 1 : s.n_cols;
      for (std::int64_t bi = 0; bi < p.batch; ++bi) {
        const x_t xv = xc[bi * stride];
        if (kEvent && !nonzero(xv)) continue;
        acc[bi] += static_cast<acc_t>(v) * number<acc_t>(xv);
      }
    });
    for (std::int64_t bi = 0; bi < p.batch; ++bi) {
      out[bi * s.n_rows + row] = static_cast<scalar_t>(acc[bi]);
    }
  }
}

// out[b, j] += A[row, j] * x[b, row] for rows [row_begin, row_end), in row order, into an
// out of [batch, n_cols] that the caller zeroed, for the columns of A's column blocks
// [blk_begin, blk_end) (all of them by default). Each column gets the same additions in the
// same order whatever the blocks asked for, so splitting the blocks between threads gives the
// whole scatter's bits; a block is the unit because its entries come from one walk. Rows
// whose x is zero in every batch item are skipped (kEvent: without walking them; the float op
// walks them but adds nothing). kEvent adds only the items whose x is non-zero in the row,
// listed once per row: with sparse spikes, about one per entry instead of a test per item.
template <bool kEvent, typename scalar_t, typename x_t>
void scatter(const MatmulParams<scalar_t, x_t>& p, scalar_t* out, std::int64_t row_begin, std::int64_t row_end,
             std::int64_t blk_begin = 0, std::int64_t blk_end = -1) {
  const Spec& s = p.spec;
  if (blk_end < 0) blk_end = s.n_blocks;
  const std::int64_t lo = blk_begin << s.block_shift;
  const std::int64_t hi = (blk_end << s.block_shift) < s.n_cols ? (blk_end << s.block_shift) : s.n_cols;
  std::vector<std::int64_t> lanes(static_cast<size_t>(p.batch));
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    std::int64_t n_active = 0;
    for (std::int64_t bi = 0; bi < p.batch; ++bi) {
      if (nonzero(p.x[bi * s.n_rows + row])) lanes[static_cast<size_t>(n_active++)] = bi;
    }
    if (n_active == 0) continue;
    auto add = [&](std::int64_t col, scalar_t v) {
      if (kEvent) {
        for (std::int64_t a = 0; a < n_active; ++a) {
          const std::int64_t bi = lanes[static_cast<size_t>(a)];
          out[bi * s.n_cols + col] += v * number<scalar_t>(p.x[bi * s.n_rows + row]);
        }
      } else {
        for (std::int64_t bi = 0; bi < p.batch; ++bi) {
          out[bi * s.n_cols + col] += v * number<scalar_t>(p.x[bi * s.n_rows + row]);
        }
      }
    };
    if (p.csr_indptr != nullptr) {  // the stored copy: rows sorted by column (jitc_to_csr)
      const std::int64_t* first = p.csr_indices + p.csr_indptr[row];
      const std::int64_t* last = p.csr_indices + p.csr_indptr[row + 1];
      for (const std::int64_t* e = csr::first_at_least(first, last, lo); e < last && *e < hi; ++e) {
        add(*e, p.csr_values[e - p.csr_indices]);
      }
      continue;
    }
    for (std::int64_t blk = blk_begin; blk < blk_end; ++blk) {
      for_each_entry_in_block<scalar_t>(s, p.a, p.b, row, blk, add);
    }
  }
}

// Expected number of entries walked by the rows whose x is non-zero somewhere in the batch,
// times the batch: decides whether a scatter is worth splitting over threads.
template <typename scalar_t, typename x_t>
double scatter_work(const MatmulParams<scalar_t, x_t>& p, double prob) {
  const Spec& s = p.spec;
  std::int64_t active = 0;
  for (std::int64_t row = 0; row < s.n_rows; ++row) {
    for (std::int64_t bi = 0; bi < p.batch; ++bi) {
      if (nonzero(p.x[bi * s.n_rows + row])) {
        ++active;
        break;
      }
    }
  }
  return static_cast<double>(active) * prob * static_cast<double>(s.n_cols) *
         static_cast<double>(p.batch);
}

// Dense A for rows [row_begin, row_end) into out [n_rows, n_cols], which the caller zeroed.
template <typename scalar_t>
void materialize(const Spec& s, double a, double b, scalar_t* out, std::int64_t row_begin,
                 std::int64_t row_end) {
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    scalar_t* dst = out + row * s.n_cols;
    for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) {
      for_each_entry_in_block<scalar_t>(s, a, b, row, blk, [&](std::int64_t col, scalar_t v) { dst[col] = v; });
    }
  }
}

// Number of entries of each row in [row_begin, row_end).
inline void row_lengths(const Spec& s, std::int64_t* lengths, std::int64_t row_begin,
                        std::int64_t row_end) {
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    std::int64_t n = 0;
    for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) {
      for_each_in_block(s, row, blk, [&](std::int64_t) { ++n; });
    }
    lengths[row] = n;
  }
}

// Number of entries of each row in [row_begin, row_end) that the window keeps.
inline void window_row_lengths(const Spec& s, const Window& w, std::int64_t* lengths,
                               std::int64_t row_begin, std::int64_t row_end) {
  const std::int64_t first = window_first_block(s, w), last = window_end_block(s, w);
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    std::int64_t n = 0;
    for (std::int64_t blk = first; blk < last; ++blk) {
      for_each_in_window_block(s, w, row, blk, [&](std::int64_t) { ++n; });
    }
    lengths[row] = n;
  }
}

// Fills the window's CSR column indices (renumbered) for rows [row_begin, row_end), given indptr.
inline void fill_window_indices(const Spec& s, const Window& w, const std::int64_t* indptr, std::int64_t* indices,
                         std::int64_t row_begin, std::int64_t row_end) {
  const std::int64_t first = window_first_block(s, w), last = window_end_block(s, w);
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    std::int64_t k = indptr[row];
    for (std::int64_t blk = first; blk < last; ++blk) {
      for_each_in_window_block(s, w, row, blk, [&](std::int64_t col) { indices[k++] = col; });
    }
  }
}

// Fills CSR indices and values for rows [row_begin, row_end), given indptr.
template <typename scalar_t>
void fill_csr(const Spec& s, double a, double b, const std::int64_t* indptr, std::int64_t* indices,
              scalar_t* values, std::int64_t row_begin, std::int64_t row_end) {
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    std::int64_t k = indptr[row];
    for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) {
      for_each_entry_in_block<scalar_t>(s, a, b, row, blk, [&](std::int64_t col, scalar_t v) {
        indices[k] = col;
        values[k] = v;
        ++k;
      });
    }
  }
}

// The batch items where x[b, i] != 0, grouped by i (x is [batch, n] row-major): items
// lanes[offsets[i] .. offsets[i + 1]) in ascending order. One pass over x in memory order, so
// a transposed weight gradient visits only the products that are not zero, however large the
// batch (a BPTT window's steps times its items) and however sparse the spikes.
template <typename x_t>
void nonzero_lanes_by_column(const x_t* x, std::int64_t batch, std::int64_t n, std::vector<std::int64_t>& offsets,
                             std::vector<std::int64_t>& lanes) {
  offsets.assign(static_cast<size_t>(n + 1), 0);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t i = 0; i < n; ++i) offsets[static_cast<size_t>(i + 1)] += nonzero(x[b * n + i]) ? 1 : 0;
  }
  for (std::int64_t i = 0; i < n; ++i) offsets[static_cast<size_t>(i + 1)] += offsets[static_cast<size_t>(i)];
  lanes.resize(static_cast<size_t>(offsets[static_cast<size_t>(n)]));
  std::vector<std::int64_t> next(offsets.begin(), offsets.end() - 1);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t i = 0; i < n; ++i) {
      if (nonzero(x[b * n + i])) lanes[static_cast<size_t>(next[static_cast<size_t>(i)]++)] = b;
    }
  }
}

// Gradient of sum(g * (A @ x)) (or A^T @ x) with respect to the two weight parameters,
// restricted to rows [row_begin, row_end), in double: partial[0] += sum of d A / d a * ...,
// partial[1] likewise for b. g is [batch, n_out] like out. Transposed, lane_offsets and lanes
// (nonzero_lanes_by_column of x) list the items whose x is non-zero in each row: only those
// products are summed, in ascending item order (the zero ones add nothing).
template <typename scalar_t, typename x_t>
void param_grad(const MatmulParams<scalar_t, x_t>& p, const scalar_t* g, bool transpose,
                const std::int64_t* lane_offsets, const std::int64_t* lanes, double* partial,
                std::int64_t row_begin, std::int64_t row_end) {
  const Spec& s = p.spec;
  const std::int64_t n_in = transpose ? s.n_rows : s.n_cols;
  const std::int64_t n_out = transpose ? s.n_cols : s.n_rows;
  double ga = 0, gb = 0;
  // The entries whose product is not zero wait here until a batch of their variates is
  // computed at once (entry_variates); they are summed in the same order as one at a time.
  std::int64_t cols[kVariateBatch + 3];
  double products[kVariateBatch], variates[kVariateBatch + 3];
  int pending = 0;
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    const std::int64_t* first = transpose ? lanes + lane_offsets[row] : nullptr;
    const std::int64_t* last = transpose ? lanes + lane_offsets[row + 1] : nullptr;
    if (transpose && first == last) continue;
    auto flush = [&] {
      if (s.dist != Dist::kHomo) entry_variates(s, row, cols, pending, variates);
      for (int i = 0; i < pending; ++i) {
        double da, db;
        entry_basis(s.dist, s.dist == Dist::kHomo ? 0.0 : variates[i], &da, &db);
        ga += da * products[i];
        gb += db * products[i];
      }
      pending = 0;
    };
    for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) {
      for_each_in_block(s, row, blk, [&](std::int64_t col) {
        double c = 0;
        if (transpose) {
          for (const std::int64_t* lane = first; lane != last; ++lane) {
            c += number<double>(p.x[*lane * n_in + row]) * static_cast<double>(g[*lane * n_out + col]);
          }
        } else {
          for (std::int64_t bi = 0; bi < p.batch; ++bi) {
            c += static_cast<double>(g[bi * n_out + row]) * number<double>(p.x[bi * n_in + col]);
          }
        }
        if (c == 0) return;
        cols[pending] = col;
        products[pending] = c;
        if (++pending == kVariateBatch) flush();
      });
    }
    if (pending > 0) flush();
  }
  partial[0] += ga;
  partial[1] += gb;
}

}  // namespace BRAIN_KERNEL_ISA

}  // namespace brain::kernels::jitc
