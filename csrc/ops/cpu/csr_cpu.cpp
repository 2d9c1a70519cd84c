// CPU kernels of the CSR op family: argument checks, dtype dispatch and at::parallel_for over
// the torch-free loops in kernels/csr/csr_cpu.h.
#include <algorithm>
#include <array>
#include <type_traits>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/zeros.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/library.h>

#include <brain/ops.h>

#include "csrc/ops/cpu/csr_batch_kernels.h"
#include "csrc/ops/csr_common.h"
#include "csrc/ops/event_input.h"
#include "kernels/csr/csr_cpu.h"

namespace brain::ops {
namespace {

namespace k = brain::kernels::csr;
using brain::kernels::SpikeByte;
using detail::input_data;
using detail::report_kernel_status;

// Aim for this many stored entries per parallel task in the gather and row loops.
constexpr int64_t kEntriesPerTask = int64_t{1} << 14;

int64_t row_grain(int64_t nnz, int64_t n_rows) {
  const int64_t avg = n_rows > 0 ? nnz / n_rows + 1 : 1;
  return std::max<int64_t>(1, kEntriesPerTask / avg);
}

struct Prepared {
  at::Tensor indptr, indices, weights, x;
  int64_t n_rows, n_cols, batch, nnz;
  bool homo, batched;
};

Prepared prepare(const char* op, const at::Tensor& indptr, const at::Tensor& indices,
                 const at::Tensor& weights, const at::Tensor& x, c10::SymIntArrayRef shape,
                 bool transpose, detail::CsrGeometry* geometry_out) {
  auto g = detail::check_csr_matmul_args(op, indptr, indices, weights, x, shape, transpose,
                                         /*allow_half=*/false);
  TORCH_CHECK(indptr.device().is_cpu(), op, ": expected CPU tensors, got ", indptr.device());
  Prepared p;
  p.indptr = indptr.contiguous();
  p.indices = indices.contiguous();
  p.weights = weights.contiguous();
  p.x = x.contiguous();
  p.n_rows = g.n_rows.expect_int();
  p.n_cols = g.n_cols.expect_int();
  p.batch = g.batch.expect_int();
  p.nnz = indices.size(0);
  p.homo = g.homo;
  p.batched = g.batched;
  detail::check_indptr_ends_cpu(op, p.indptr, p.nnz);
  if (geometry_out) *geometry_out = g;
  return p;
}

template <bool kEvent, typename scalar_t, typename index_t, typename x_t>
void run_matmul(const char* op, const Prepared& pr, bool transpose, at::Tensor& out) {
  k::Params<scalar_t, index_t, x_t> p;
  p.indptr = pr.indptr.data_ptr<index_t>();
  p.indices = pr.indices.data_ptr<index_t>();
  p.weights = pr.weights.data_ptr<scalar_t>();
  p.homo = pr.homo;
  p.x = input_data<x_t>(pr.x);
  p.n_rows = pr.n_rows;
  p.n_cols = pr.n_cols;
  p.batch = pr.batch;
  p.nnz = pr.nnz;
  scalar_t* o = out.data_ptr<scalar_t>();

  if (!transpose && pr.batch > 1) {
    // x as [n_cols, batch]: one pass over each row's entries for the whole batch.
    const at::Tensor xt = pr.x.t().contiguous();
    p.x = input_data<x_t>(xt);
    at::parallel_for(0, pr.n_rows, row_grain(pr.nnz * pr.batch, pr.n_rows), [&](int64_t begin, int64_t end) {
      std::vector<double> acc(static_cast<size_t>(pr.batch));
      if constexpr (std::is_same_v<x_t, scalar_t>) {  // the only x it gets (bool is converted first)
        const auto gather = csr_batch::batch_kernels().of<scalar_t, index_t>().gather[kEvent];
        report_kernel_status(op, gather(p, o, begin, end, acc.data()), pr.n_cols);
      } else {
        report_kernel_status(op, k::gather_batch_minor<kEvent>(p, o, begin, end, acc.data()), pr.n_cols);
      }
    });
    return;
  }
  if (!transpose) {
    at::parallel_for(0, pr.batch * pr.n_rows, row_grain(pr.nnz, pr.n_rows),
                     [&](int64_t begin, int64_t end) {
                       report_kernel_status(op, k::gather<kEvent, double>(p, o, begin, end),
                                            pr.n_cols);
                     });
    return;
  }
  // Dense x (the float op visits every row) and a batch: x and the output are laid out as
  // tiles of kTile items ([tiles, n, kTile], padded with zeros), so one pass over the entries
  // serves a whole tile, and each thread's tiles are its own memory. The widest tile (up to a
  // float32 cache line) that still gives every thread one is used; below 4 items per thread,
  // items are scattered one by one, a thread each. Rows stay in order, so
  // each item's sum is its own scatter's, bit for bit. Sparse events stay per item: only an
  // item's active rows are visited, where a tile would visit any row active in one of them.
  const auto scatter_tiles = [&](auto tile_width) -> void {
    constexpr int kTile = decltype(tile_width)::value;
    const int64_t tiles = (pr.batch + kTile - 1) / kTile;
    const int64_t padded = tiles * kTile;
    at::Tensor xp = pr.x;
    if (padded != pr.batch) xp = at::cat({pr.x, at::zeros({padded - pr.batch, pr.n_rows}, pr.x.options())});
    const at::Tensor x_tiles = xp.view({tiles, kTile, pr.n_rows}).permute({0, 2, 1}).contiguous();
    const at::Tensor out_tiles = at::zeros({tiles, pr.n_cols, kTile}, out.options());
    const x_t* xt = input_data<x_t>(x_tiles);
    scalar_t* ot = out_tiles.data_ptr<scalar_t>();
    at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        report_kernel_status(op, k::scatter_tile<kTile>(p, xt + t * pr.n_rows * kTile, ot + t * pr.n_cols * kTile),
                             pr.n_cols);
      }
    });
    out.copy_(out_tiles.permute({0, 2, 1}).reshape({padded, pr.n_cols}).narrow(0, 0, pr.batch));
  };
  const int64_t per_thread = pr.batch / std::max<int64_t>(at::get_num_threads(), 1);
  if (!kEvent && per_thread >= 4) {
    if (per_thread >= 16) {
      scatter_tiles(std::integral_constant<int, 16>{});
    } else if (per_thread >= 8) {
      scatter_tiles(std::integral_constant<int, 8>{});
    } else {
      scatter_tiles(std::integral_constant<int, 4>{});
    }
    return;
  }
  if (pr.batch > 1) {
    // Each batch item scatters into its own output row, rows in order: deterministic.
    out.zero_();
    at::parallel_for(0, pr.batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        report_kernel_status(op, k::scatter<kEvent>(p, b, 0, pr.n_rows, o + b * pr.n_cols),
                             pr.n_cols);
      }
    });
    return;
  }
  // One item, on one thread: every output element sums its terms in row order from +0, the
  // rule the fast engine's delivery and the recurrent op follow too (whatever their own split),
  // so all of them give the same bits. Splitting the rows over threads would change the
  // order, and splitting the columns costs every thread a walk over every active row (and a
  // pass to check the rows are sorted), which measured slower than one thread on 2 cores.
  report_kernel_status(op, k::scatter<kEvent>(p, 0, 0, pr.n_rows, o), pr.n_cols);
}

void validate_csr_values_cpu(const at::Tensor& indptr_in, const at::Tensor& indices_in, int64_t n_rows,
                             int64_t n_cols);

template <bool kEvent>
at::Tensor csr_matmul_cpu(const at::Tensor& indptr, const at::Tensor& indices,
                          const at::Tensor& weights, const at::Tensor& x,
                          c10::SymIntArrayRef shape, bool transpose) {
  const char* op = kEvent ? "brain::event_csr_matmul" : "brain::csr_matmul";
  detail::CsrGeometry g;
  const Prepared pr = prepare(op, indptr, indices, weights, x, shape, transpose, &g);
  const int64_t n_out = transpose ? pr.n_cols : pr.n_rows;
  // The gather writes every element; the scatters accumulate into zeros (the batched ones
  // zero what they use).
  at::Tensor out = transpose && pr.batch == 1 ? at::zeros({pr.batch, n_out}, pr.weights.options())
                                              : at::empty({pr.batch, n_out}, pr.weights.options());
  if (pr.batch > 0 && n_out > 0) {
    AT_DISPATCH_FLOATING_TYPES(pr.weights.scalar_type(), "brain_csr", [&] {
      AT_DISPATCH_INDEX_TYPES(pr.indptr.scalar_type(), "brain_csr", [&] {
        if (pr.x.scalar_type() == at::kBool && !transpose && pr.batch > 1) {
          // The batched gather multiplies every lane (see gather_batch_minor); events as 0/1
          // numbers, converted once, keep that loop vectorised (bool lanes do not: 3-4x).
          Prepared numeric = pr;
          numeric.x = pr.x.to(pr.weights.scalar_type());
          run_matmul<kEvent, scalar_t, index_t, scalar_t>(op, numeric, transpose, out);
        } else if (pr.x.scalar_type() == at::kBool) {
          run_matmul<kEvent, scalar_t, index_t, SpikeByte>(op, pr, transpose, out);
        } else {
          run_matmul<kEvent, scalar_t, index_t, scalar_t>(op, pr, transpose, out);
        }
      });
    });
  } else {
    // The kernels check indices as they visit them; with nothing to compute they visit none,
    // so the structure is checked here (found by fuzzing: an empty output hid bad indices).
    validate_csr_values_cpu(pr.indptr, pr.indices, pr.n_rows, pr.n_cols);
  }
  return pr.batched ? out : out.view({n_out});
}

std::tuple<at::Tensor, at::Tensor> csr_matmul_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& indptr, const at::Tensor& indices,
    const at::Tensor& weights, const at::Tensor& x, c10::SymIntArrayRef shape, bool transpose,
    std::array<bool, 2> output_mask) {
  const char* op = "brain::_csr_matmul_backward";
  detail::CsrGeometry g;
  const Prepared pr = prepare(op, indptr, indices, weights, x, shape, transpose, &g);
  TORCH_CHECK(grad_out.sym_sizes() == c10::SymIntArrayRef(detail::csr_output_sizes(g)), op,
              ": grad_out must have the output's shape ", c10::SymIntArrayRef(detail::csr_output_sizes(g)),
              ", got ", grad_out.sym_sizes());
  TORCH_CHECK(grad_out.scalar_type() == pr.weights.scalar_type(), op,
              ": grad_out must have the weights' dtype ", pr.weights.scalar_type(), ", got ",
              grad_out.scalar_type());
  at::Tensor grad_x, grad_w;
  if (output_mask[0]) {
    TORCH_CHECK(x.scalar_type() != at::kBool, op, ": bool x (events) has no gradient");
    // The adjoint of A (or A^T) is the other orientation of the same matrix.
    grad_x = csr_matmul(indptr, indices, weights, grad_out, C10_AS_INTARRAYREF_SLOW(shape), !transpose);
  }
  if (output_mask[1]) {
    const at::Tensor g_out = grad_out.contiguous();
    grad_w = at::empty_like(pr.weights);
    at::Tensor row_sums;
    if (pr.homo) row_sums = at::zeros({pr.n_rows}, pr.weights.options().dtype(at::kDouble));
    AT_DISPATCH_FLOATING_TYPES(pr.weights.scalar_type(), "brain_csr", [&] {
      AT_DISPATCH_INDEX_TYPES(pr.indptr.scalar_type(), "brain_csr", [&] {
        auto run = [&](auto x_tag) {
          using x_t = decltype(x_tag);
          const x_t* xp = input_data<x_t>(pr.x);
          const scalar_t* gp = g_out.data_ptr<scalar_t>();
          scalar_t* dw = pr.homo ? nullptr : grad_w.data_ptr<scalar_t>();
          double* sums = pr.homo ? row_sums.data_ptr<double>() : nullptr;
          if (pr.batch > 1) {
            // x and g as [n, batch]: contiguous batch reads, and in the scatter form rows
            // whose x is zero for the whole batch are skipped once, not once per item.
            const at::Tensor xt = pr.x.t().contiguous();
            const at::Tensor gt = g_out.t().contiguous();
            const x_t* xtp = input_data<x_t>(xt);
            const scalar_t* gtp = gt.data_ptr<scalar_t>();
            at::parallel_for(0, pr.n_rows, row_grain(pr.nnz * pr.batch, pr.n_rows), [&](int64_t begin, int64_t end) {
              std::vector<int64_t> lanes(static_cast<size_t>(pr.batch));
              const auto* ip = pr.indptr.data_ptr<index_t>();
              const auto* ix = pr.indices.data_ptr<index_t>();
              const auto status =
                  transpose ? k::weight_grad_batch_minor<true, double>(ip, ix, xtp, gtp, pr.n_rows, pr.n_cols, pr.batch,
                                                                        pr.nnz, begin, end, dw, sums, lanes.data())
                            : k::weight_grad_batch_minor<false, double>(ip, ix, xtp, gtp, pr.n_rows, pr.n_cols, pr.batch,
                                                                         pr.nnz, begin, end, dw, sums, lanes.data());
              report_kernel_status(op, status, pr.n_cols);
            });
            return;
          }
          at::parallel_for(0, pr.n_rows, row_grain(pr.nnz * std::max<int64_t>(pr.batch, 1), pr.n_rows),
                           [&](int64_t begin, int64_t end) {
                             const auto* ip = pr.indptr.data_ptr<index_t>();
                             const auto* ix = pr.indices.data_ptr<index_t>();
                             const auto status =
                                 transpose
                                     ? k::weight_grad<true, double>(ip, ix, xp, gp, pr.n_rows, pr.n_cols, pr.batch, pr.nnz, begin, end, dw, sums)
                                     : k::weight_grad<false, double>(ip, ix, xp, gp, pr.n_rows, pr.n_cols, pr.batch, pr.nnz, begin, end, dw, sums);
                             report_kernel_status(op, status, pr.n_cols);
                           });
        };
        if (pr.x.scalar_type() == at::kBool) {
          run(SpikeByte{});
        } else {
          run(scalar_t{});
        }
      });
    });
    if (pr.homo) {
      // Summed in row order in double: deterministic, and exact enough for large nnz.
      grad_w = row_sums.sum().to(pr.weights.scalar_type()).reshape(weights.sizes());
    }
  }
  return {grad_x, grad_w};
}

void validate_csr_values_cpu(const at::Tensor& indptr_in, const at::Tensor& indices_in,
                             int64_t n_rows, int64_t n_cols) {
  const char* op = "brain::validate_csr";
  const at::Tensor indptr = indptr_in.contiguous();
  const at::Tensor indices = indices_in.contiguous();
  detail::check_indptr_ends_cpu(op, indptr, indices.size(0));
  AT_DISPATCH_INDEX_TYPES(indptr.scalar_type(), "brain_csr", [&] {
    const index_t* ip = indptr.data_ptr<index_t>();
    const index_t* ix = indices.data_ptr<index_t>();
    for (int64_t i = 0; i < n_rows; ++i) {
      TORCH_CHECK(ip[i + 1] >= ip[i], op, ": indptr must be non-decreasing, but indptr[", i + 1,
                  "] = ", ip[i + 1], " < indptr[", i, "] = ", ip[i]);
    }
    for (int64_t kk = 0; kk < indices.size(0); ++kk) {
      TORCH_CHECK(ix[kk] >= 0 && ix[kk] < n_cols, op, ": indices[", kk, "] = ", ix[kk],
                  " is out of range [0, ", n_cols, ")");
    }
  });
}

void validate_csr_cpu(const at::Tensor& indptr, const at::Tensor& indices,
                      c10::SymIntArrayRef shape) {
  const auto [n_rows, n_cols] = detail::check_shape("brain::validate_csr", shape);
  detail::check_csr_structure("brain::validate_csr", indptr, indices, n_rows);
  validate_csr_values_cpu(indptr, indices, n_rows.expect_int(), n_cols.expect_int());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_to_csc_cpu(const at::Tensor& indptr_in,
                                                              const at::Tensor& indices_in,
                                                              c10::SymIntArrayRef shape) {
  const char* op = "brain::csr_to_csc";
  const auto [n_rows_s, n_cols_s] = detail::check_shape(op, shape);
  detail::check_csr_structure(op, indptr_in, indices_in, n_rows_s);
  const int64_t n_rows = n_rows_s.expect_int();
  const int64_t n_cols = n_cols_s.expect_int();
  const at::Tensor indptr = indptr_in.contiguous();
  const at::Tensor indices = indices_in.contiguous();
  const int64_t nnz = indices.size(0);
  detail::check_indptr_ends_cpu(op, indptr, nnz);
  at::Tensor csc_indptr = at::zeros({n_cols + 1}, indptr.options());
  at::Tensor csc_rows = at::empty({nnz}, indptr.options());
  at::Tensor perm = at::empty({nnz}, indptr.options());
  AT_DISPATCH_INDEX_TYPES(indptr.scalar_type(), "brain_csr", [&] {
    const index_t* ip = indptr.data_ptr<index_t>();
    const index_t* ix = indices.data_ptr<index_t>();
    index_t* cp = csc_indptr.data_ptr<index_t>();
    for (int64_t kk = 0; kk < nnz; ++kk) {
      TORCH_CHECK(ix[kk] >= 0 && ix[kk] < n_cols, op, ": indices[", kk, "] = ", ix[kk],
                  " is out of range [0, ", n_cols, ")");
      ++cp[ix[kk] + 1];
    }
    for (int64_t c = 0; c < n_cols; ++c) cp[c + 1] += cp[c];
    // A counting sort visiting rows in order is stable: each column lists its rows ascending.
    std::vector<index_t> next(cp, cp + n_cols);
    index_t* rows = csc_rows.data_ptr<index_t>();
    index_t* pm = perm.data_ptr<index_t>();
    for (int64_t i = 0; i < n_rows; ++i) {
      TORCH_CHECK(ip[i + 1] >= ip[i], op, ": indptr must be non-decreasing, but indptr[", i + 1,
                  "] < indptr[", i, "]");
      for (int64_t kk = ip[i]; kk < ip[i + 1]; ++kk) {
        const index_t slot = next[ix[kk]]++;
        rows[slot] = static_cast<index_t>(i);
        pm[slot] = static_cast<index_t>(kk);
      }
    }
  });
  return {csc_indptr, csc_rows, perm};
}

// Shared by both plasticity ops: checks what they have in common.
void check_plasticity_args(const char* op, const at::Tensor& weights, const at::Tensor& spikes,
                           const at::Tensor& trace, int64_t nnz) {
  TORCH_CHECK(weights.dim() == 1 && weights.size(0) == nnz, op,
              ": weights must be 1-D with one value per stored entry (", nnz, "), got ",
              weights.sizes());
  TORCH_CHECK(weights.is_contiguous(), op, ": weights is updated in place and must be contiguous");
  TORCH_CHECK(weights.scalar_type() == at::kFloat || weights.scalar_type() == at::kDouble, op,
              ": weights must be float32 or float64 on the CPU, got ", weights.scalar_type());
  TORCH_CHECK(spikes.dim() == 1, op, ": spikes must be 1-D, got ", spikes.sizes());
  TORCH_CHECK(spikes.scalar_type() == at::kBool || spikes.scalar_type() == weights.scalar_type(),
              op, ": spikes must be bool or have the weights' dtype, got ", spikes.scalar_type());
  TORCH_CHECK(trace.dim() == 1 && trace.scalar_type() == weights.scalar_type(), op,
              ": trace must be 1-D with the weights' dtype, got ", trace.sizes(), " ",
              trace.scalar_type());
  TORCH_CHECK(spikes.device() == weights.device() && trace.device() == weights.device(), op,
              ": all tensors must be on one device");
}

template <typename scalar_t>
inline scalar_t clip(scalar_t v, const std::optional<double>& lo, const std::optional<double>& hi) {
  if (lo && v < static_cast<scalar_t>(*lo)) v = static_cast<scalar_t>(*lo);
  if (hi && v > static_cast<scalar_t>(*hi)) v = static_cast<scalar_t>(*hi);
  return v;
}

// For every "owner" o (a row for pre updates, a column for post updates) with an active spike,
// visit its entries [ptr[o], ptr[o+1]): entry p updates weights[target(p)] from trace[source(p)].
// Owners' entry sets are disjoint, so parallel owners never touch the same weight.
void owner_update_cpu(const char* op, at::Tensor& weights, const at::Tensor& ptr_in,
                      const at::Tensor& source_in, const at::Tensor* target_in,
                      const at::Tensor& spikes_in, const at::Tensor& trace_in, double scale,
                      const std::optional<double>& w_min, const std::optional<double>& w_max) {
  const at::Tensor ptr = ptr_in.contiguous();
  const at::Tensor source = source_in.contiguous();
  const at::Tensor target = target_in ? target_in->contiguous() : at::Tensor();
  const at::Tensor spikes = spikes_in.contiguous();
  const at::Tensor trace = trace_in.contiguous();
  const int64_t n_owners = ptr.size(0) - 1;
  const int64_t n_trace = trace.size(0);
  const int64_t nnz = source.size(0);
  TORCH_CHECK(spikes.size(0) == n_owners, op, ": spikes must have ", n_owners,
              " entries (one per ", target_in ? "column" : "row", "), got ", spikes.size(0));
  detail::check_indptr_ends_cpu(op, ptr, nnz);
  AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), "brain_csr", [&] {
    AT_DISPATCH_INDEX_TYPES(ptr.scalar_type(), "brain_csr", [&] {
      const index_t* pp = ptr.data_ptr<index_t>();
      const index_t* src = source.data_ptr<index_t>();
      const index_t* tgt = target_in ? target.data_ptr<index_t>() : nullptr;
      const scalar_t* tr = trace.data_ptr<scalar_t>();
      scalar_t* w = weights.data_ptr<scalar_t>();
      auto run = [&](auto spike_tag) {
        using s_t = decltype(spike_tag);
        const s_t* sp = input_data<s_t>(spikes);
        at::parallel_for(0, n_owners, row_grain(nnz, n_owners), [&](int64_t begin, int64_t end) {
          for (int64_t o = begin; o < end; ++o) {
            if (!k::is_active(sp[o])) continue;
            const scalar_t factor = static_cast<scalar_t>(scale) * k::as_scalar<scalar_t>(sp[o]);
            TORCH_CHECK(pp[o + 1] >= pp[o] && pp[o] >= 0 && pp[o + 1] <= nnz, op,
                        ": the pointer array must be non-decreasing from 0 to nnz = ", nnz, "; it is not at ", o);
            for (int64_t e = pp[o]; e < pp[o + 1]; ++e) {
              const int64_t s = src[e];
              TORCH_CHECK(s >= 0 && s < n_trace, op, ": index ", s, " at entry ", e,
                          " is out of range for a trace of ", n_trace);
              const int64_t t = tgt ? static_cast<int64_t>(tgt[e]) : e;
              TORCH_CHECK(t >= 0 && t < nnz, op, ": perm[", e, "] = ", t, " is out of range [0, ", nnz, ")");
              w[t] = clip<scalar_t>(w[t] + factor * tr[s], w_min, w_max);
            }
          }
        });
      };
      if (spikes.scalar_type() == at::kBool) {
        run(SpikeByte{});
      } else {
        run(scalar_t{});
      }
    });
  });
}

void csr_update_on_pre_cpu(at::Tensor& weights, const at::Tensor& indptr, const at::Tensor& indices,
                           const at::Tensor& pre_spikes, const at::Tensor& post_trace, double scale,
                           std::optional<double> w_min, std::optional<double> w_max) {
  const char* op = "brain::csr_update_on_pre_";
  check_plasticity_args(op, weights, pre_spikes, post_trace, indices.size(0));
  detail::check_csr_structure(op, indptr, indices, pre_spikes.size(0));
  owner_update_cpu(op, weights, indptr, indices, nullptr, pre_spikes, post_trace, scale, w_min, w_max);
}

void csr_update_on_post_cpu(at::Tensor& weights, const at::Tensor& csc_indptr,
                            const at::Tensor& csc_indices, const at::Tensor& perm,
                            const at::Tensor& post_spikes, const at::Tensor& pre_trace,
                            double scale, std::optional<double> w_min, std::optional<double> w_max) {
  const char* op = "brain::csr_update_on_post_";
  check_plasticity_args(op, weights, post_spikes, pre_trace, csc_indices.size(0));
  detail::check_csr_structure(op, csc_indptr, csc_indices, post_spikes.size(0));
  TORCH_CHECK(perm.dim() == 1 && perm.size(0) == csc_indices.size(0) &&
                  perm.scalar_type() == csc_indices.scalar_type(),
              op, ": perm must be 1-D [nnz] with the indices' dtype (from brain::csr_to_csc)");
  owner_update_cpu(op, weights, csc_indptr, csc_indices, &perm, post_spikes, pre_trace, scale,
                   w_min, w_max);
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CPU, m) {
  m.impl("csr_matmul", &csr_matmul_cpu<false>);
  m.impl("event_csr_matmul", &csr_matmul_cpu<true>);
  m.impl("_csr_matmul_backward", &csr_matmul_backward_cpu);
  m.impl("validate_csr", &validate_csr_cpu);
  m.impl("csr_to_csc", &csr_to_csc_cpu);
  m.impl("csr_update_on_pre_", &csr_update_on_pre_cpu);
  m.impl("csr_update_on_post_", &csr_update_on_post_cpu);
}

}  // namespace brain::ops
