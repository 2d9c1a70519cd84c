// Torch-free CPU loops of the JIT-connectivity ops over the generator in jitc_gen.h. Each
// function handles a range of rows, so the host glue can split work with at::parallel_for.
//
// Layouts: x is [batch, n_in] row-major, out is [batch, n_out]; n_in/n_out are n_cols/n_rows
// (transpose = false) or n_rows/n_cols (transpose = true). Values are rounded to scalar_t
// once, exactly as jitc_materialize stores them.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/jitc/jitc_gen.h"

namespace brain::kernels::jitc {

template <typename scalar_t, typename x_t>
struct MatmulParams {
  Spec spec;
  double a = 0, b = 0;  // the weight parameters
  const x_t* x = nullptr;
  std::int64_t batch = 1;
};

template <typename x_t>
inline bool nonzero(x_t v) {
  return v != x_t(0);
}

template <typename scalar_t>
inline scalar_t entry_scalar(const Spec& s, double a, double b, std::int64_t row, std::int64_t col) {
  return static_cast<scalar_t>(entry_value(s.dist, entry_variate(s, row, col), a, b));
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
    for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) {
      for_each_in_block(s, row, blk, [&](std::int64_t col) {
        const scalar_t v = entry_scalar<scalar_t>(s, p.a, p.b, row, col);
        for (std::int64_t bi = 0; bi < p.batch; ++bi) {
          const x_t xv = p.x[bi * s.n_cols + col];
          if (kEvent && !nonzero(xv)) continue;
          acc[bi] += static_cast<acc_t>(v) * static_cast<acc_t>(xv);
        }
      });
    }
    for (std::int64_t bi = 0; bi < p.batch; ++bi) {
      out[bi * s.n_rows + row] = static_cast<scalar_t>(acc[bi]);
    }
  }
}

// out[b, j] += A[row, j] * x[b, row] for rows [row_begin, row_end), in row order, into an
// out of [batch, n_cols] that the caller zeroed. Rows whose x is zero in every batch item are
// skipped (kEvent: without walking them; the float op walks them but adds nothing).
template <bool kEvent, typename scalar_t, typename x_t>
void scatter(const MatmulParams<scalar_t, x_t>& p, scalar_t* out, std::int64_t row_begin,
             std::int64_t row_end) {
  const Spec& s = p.spec;
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    bool any = false;
    for (std::int64_t bi = 0; bi < p.batch && !any; ++bi) any = nonzero(p.x[bi * s.n_rows + row]);
    if (!any) continue;
    for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) {
      for_each_in_block(s, row, blk, [&](std::int64_t col) {
        const scalar_t v = entry_scalar<scalar_t>(s, p.a, p.b, row, col);
        for (std::int64_t bi = 0; bi < p.batch; ++bi) {
          const x_t xv = p.x[bi * s.n_rows + row];
          if (kEvent && !nonzero(xv)) continue;
          out[bi * s.n_cols + col] += v * static_cast<scalar_t>(xv);
        }
      });
    }
  }
}

// Expected number of entries walked by rows [row_begin, row_end) whose x is non-zero
// somewhere in the batch: decides how finely the scatter is split.
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
      for_each_in_block(s, row, blk, [&](std::int64_t col) {
        dst[col] = entry_scalar<scalar_t>(s, a, b, row, col);
      });
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
      for_each_in_block(s, row, blk, [&](std::int64_t col) {
        indices[k] = col;
        values[k] = entry_scalar<scalar_t>(s, a, b, row, col);
        ++k;
      });
    }
  }
}

// Gradient of sum(g * (A @ x)) (or A^T @ x) with respect to the two weight parameters,
// restricted to rows [row_begin, row_end), in double: partial[0] += sum of d A / d a * ...,
// partial[1] likewise for b. g is [batch, n_out] like out.
template <typename scalar_t, typename x_t>
void param_grad(const MatmulParams<scalar_t, x_t>& p, const scalar_t* g, bool transpose,
                double* partial, std::int64_t row_begin, std::int64_t row_end) {
  const Spec& s = p.spec;
  const std::int64_t n_in = transpose ? s.n_rows : s.n_cols;
  const std::int64_t n_out = transpose ? s.n_cols : s.n_rows;
  double ga = 0, gb = 0;
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    if (transpose) {
      bool any = false;
      for (std::int64_t bi = 0; bi < p.batch && !any; ++bi) any = nonzero(p.x[bi * n_in + row]);
      if (!any) continue;
    }
    for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) {
      for_each_in_block(s, row, blk, [&](std::int64_t col) {
        double c = 0;
        for (std::int64_t bi = 0; bi < p.batch; ++bi) {
          c += transpose ? static_cast<double>(p.x[bi * n_in + row]) *
                               static_cast<double>(g[bi * n_out + col])
                         : static_cast<double>(g[bi * n_out + row]) *
                               static_cast<double>(p.x[bi * n_in + col]);
        }
        if (c == 0) return;
        double da, db;
        entry_basis(s.dist, entry_variate(s, row, col), &da, &db);
        ga += da * c;
        gb += db * c;
      });
    }
  }
  partial[0] += ga;
  partial[1] += gb;
}

}  // namespace brain::kernels::jitc
