// CPU kernels of the JIT-connectivity op family: checks, dtype dispatch and at::parallel_for
// over the torch-free loops in kernels/jitc/jitc_cpu.h. Work is split into pieces that do not
// depend on the thread count, so results are the same on every machine.
#include <algorithm>
#include <array>
#include <cmath>
#include <tuple>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/library.h>

#include "csrc/ops/cpu/csr_batch_kernels.h"
#include "csrc/ops/event_input.h"
#include "csrc/ops/jitc_common.h"
#include "kernels/csr/csr_cpu.h"
#include "kernels/jitc/jitc_cpu.h"

namespace brain::ops {
namespace {

namespace k = brain::kernels::jitc;
using brain::kernels::SpikeByte;
using detail::input_data;

// Aim for this many generated entries per parallel task.
constexpr double kEntriesPerTask = double(int64_t{1} << 13);
// A scatter generating this many entries is split over threads by column blocks (generating
// an entry costs ~40 ns, a parallel region a few microseconds).
constexpr double kParallelScatterEntries = 4096.0;
// Rows per piece of the weight gradient: pieces are summed in order, so the result does not
// depend on how the pieces were spread over threads.
constexpr int64_t kGradRowsPerPiece = 256;

int64_t row_grain(const k::Spec& s, double prob) {
  const double per_row = prob * double(s.n_cols) + double(s.n_blocks) + 1.0;
  return std::max<int64_t>(1, int64_t(kEntriesPerTask / per_row));
}

struct Prepared {
  detail::JitcGeometry g;
  k::Spec spec;
  double a = 0, b = 0;
  at::Tensor x;
  int64_t batch = 1;
};

Prepared prepare(const char* op, const at::Tensor& x, const at::Tensor& weight, double prob,
                 int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist, bool transpose) {
  Prepared p;
  p.g = detail::check_jitc_matmul_args(op, x, weight, prob, shape,
                                       std::string_view(dist.data(), dist.size()), transpose,
                                       /*allow_half=*/false);
  TORCH_CHECK(x.device().is_cpu(), op, ": expected CPU tensors, got ", x.device());
  std::tie(p.a, p.b) = detail::read_weight_params_cpu(op, weight, p.g.dist);
  p.spec = k::make_spec(prob, seed, p.g.n_rows.expect_int(), p.g.n_cols.expect_int(), p.g.dist);
  p.x = x.contiguous();
  p.batch = p.g.batch.expect_int();
  return p;
}

// A generated once (jitc_to_csr's tensors), or undefined tensors to generate it as it goes.
struct Materialized {
  at::Tensor indptr, indices, values;
};

template <bool kEvent, typename scalar_t, typename x_t>
void run_matmul(const Prepared& pr, double prob, bool transpose, const Materialized& m, at::Tensor& out) {
  k::MatmulParams<scalar_t, x_t> p;
  p.spec = pr.spec;
  p.a = pr.a;
  p.b = pr.b;
  p.x = input_data<x_t>(pr.x);
  p.batch = pr.batch;
  if (m.indptr.defined()) {
    p.csr_indptr = m.indptr.const_data_ptr<int64_t>();
    p.csr_indices = m.indices.const_data_ptr<int64_t>();
    p.csr_values = m.values.const_data_ptr<scalar_t>();
  }
  scalar_t* o = out.data_ptr<scalar_t>();
  const int64_t n_rows = pr.spec.n_rows, n_cols = pr.spec.n_cols;
  if (!transpose) {
    // Each entry reads its column of every batch item: batch-minor, those are adjacent.
    at::Tensor x_batch_minor;
    if (pr.batch > 1) {
      x_batch_minor = pr.x.t().contiguous();
      p.x = input_data<x_t>(x_batch_minor);
      p.x_batch_minor = true;
    }
    if (m.indptr.defined() && pr.batch > 1) {
      // A stored: the CSR op's batched gather, whose sums stay in registers for 16 items at a
      // time. Each item still adds its entries in order from +0 in double, so the bits are the
      // generating gather's (a zero x adds +-0, which changes no sum; see gather_row_batch).
      // Bool events go in as 0/1 numbers, converted once: bool lanes do not vectorise.
      const at::Tensor x_numbers =
          std::is_same_v<x_t, SpikeByte> ? x_batch_minor.to(out.scalar_type()) : x_batch_minor;
      brain::kernels::csr::Params<scalar_t, int64_t, scalar_t> c;
      c.indptr = p.csr_indptr;
      c.indices = p.csr_indices;
      c.weights = p.csr_values;
      c.x = x_numbers.const_data_ptr<scalar_t>();
      c.n_rows = n_rows;
      c.n_cols = n_cols;
      c.batch = pr.batch;
      c.nnz = m.indices.numel();
      at::parallel_for(0, n_rows, row_grain(pr.spec, prob), [&](int64_t begin, int64_t end) {
        std::vector<double> acc(static_cast<size_t>(pr.batch));
        const auto gather = csr_batch::batch_kernels().of<scalar_t, int64_t>().gather[kEvent];
        const auto status = gather(c, o, begin, end, acc.data());
        TORCH_INTERNAL_ASSERT(status.ok(), "jitc_to_csr produced an invalid CSR matrix");
      });
      return;
    }
    at::parallel_for(0, n_rows, row_grain(pr.spec, prob), [&](int64_t begin, int64_t end) {
      k::gather<kEvent, double>(p, o, begin, end);
    });
    return;
  }
  // Every output element sums its terms in row order from +0, on one thread or split by
  // column blocks over several (the same bits either way, so the choice is only speed).
  if (k::scatter_work(p, prob) < kParallelScatterEntries || at::get_num_threads() < 2 || pr.spec.n_blocks < 2) {
    k::scatter<kEvent>(p, o, 0, n_rows);
    return;
  }
  at::parallel_for(0, pr.spec.n_blocks, 1, [&](int64_t begin, int64_t end) {
    k::scatter<kEvent>(p, o, 0, n_rows, begin, end);
  });
}

at::Tensor matmul_impl(const char* op, bool event, const at::Tensor& x, const at::Tensor& weight,
                       double prob, int64_t seed, c10::SymIntArrayRef shape,
                       c10::string_view dist, bool transpose, const Materialized& m = {}) {
  const Prepared pr = prepare(op, x, weight, prob, seed, shape, dist, transpose);
  at::Tensor out = at::zeros_symint(detail::jitc_output_sizes(pr.g), weight.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "jitc_matmul_cpu", [&] {
    if (pr.x.scalar_type() == at::kBool) {
      if (event) run_matmul<true, scalar_t, SpikeByte>(pr, prob, transpose, m, out);
      else run_matmul<false, scalar_t, SpikeByte>(pr, prob, transpose, m, out);
    } else {
      if (event) run_matmul<true, scalar_t, scalar_t>(pr, prob, transpose, m, out);
      else run_matmul<false, scalar_t, scalar_t>(pr, prob, transpose, m, out);
    }
  });
  return out;
}

template <bool kEvent>
at::Tensor jitc_matmul_cpu(const at::Tensor& x, const at::Tensor& weight, double prob,
                           int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist,
                           bool transpose) {
  return matmul_impl(kEvent ? "brain::event_jitc_matmul" : "brain::jitc_matmul", kEvent, x,
                     weight, prob, seed, shape, dist, transpose);
}

std::tuple<at::Tensor, at::Tensor> jitc_matmul_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight, double prob,
    int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist, bool transpose,
    std::array<bool, 2> output_mask) {
  const char* op = "brain::_jitc_matmul_backward";
  const Prepared pr = prepare(op, x, weight, prob, seed, shape, dist, transpose);
  TORCH_CHECK(grad_out.sym_sizes() == c10::SymIntArrayRef(detail::jitc_output_sizes(pr.g)), op,
              ": grad_out must have the output's shape ", detail::jitc_output_sizes(pr.g),
              ", got ", grad_out.sym_sizes());
  TORCH_CHECK(grad_out.scalar_type() == weight.scalar_type(), op,
              ": grad_out must have the weight's dtype");
  at::Tensor grad_x, grad_w;
  if (output_mask[0]) {
    TORCH_CHECK(x.scalar_type() != at::kBool, op, ": bool x (events) has no gradient");
    grad_x = matmul_impl(op, false, grad_out, weight, prob, seed, shape, dist, !transpose);
  }
  if (output_mask[1]) {
    const at::Tensor g = grad_out.contiguous();
    const int64_t n_rows = pr.spec.n_rows;
    const int64_t pieces = (n_rows + kGradRowsPerPiece - 1) / kGradRowsPerPiece;
    std::vector<std::array<double, 2>> partial(size_t(pieces), {0.0, 0.0});
    AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "jitc_param_grad_cpu", [&] {
      auto run = [&](auto x_tag) {
        using x_t = decltype(x_tag);
        k::MatmulParams<scalar_t, x_t> p;
        p.spec = pr.spec;
        p.a = pr.a;
        p.b = pr.b;
        p.x = input_data<x_t>(pr.x);
        p.batch = pr.batch;
        const scalar_t* gp = g.data_ptr<scalar_t>();
        std::vector<int64_t> lane_offsets, lanes;
        if (transpose) k::nonzero_lanes_by_column(p.x, p.batch, n_rows, lane_offsets, lanes);
        at::parallel_for(0, pieces, 1, [&](int64_t begin, int64_t end) {
          for (int64_t piece = begin; piece < end; ++piece) {
            k::param_grad(p, gp, transpose, lane_offsets.data(), lanes.data(), partial[size_t(piece)].data(),
                          piece * kGradRowsPerPiece,
                          std::min(n_rows, (piece + 1) * kGradRowsPerPiece));
          }
        });
      };
      if (pr.x.scalar_type() == at::kBool) run(SpikeByte{});
      else run(scalar_t{});
    });
    double ga = 0, gb = 0;
    for (const auto& v : partial) {
      ga += v[0];
      gb += v[1];
    }
    const int n_params = k::num_params(pr.g.dist);
    grad_w = at::tensor(n_params == 1 ? std::vector<double>{ga} : std::vector<double>{ga, gb},
                        at::TensorOptions().dtype(at::kDouble))
                 .to(weight.scalar_type())
                 .reshape(weight.sizes());
  }
  return {grad_x, grad_w};
}

// Checks for the ops that build A alone (no x): the generator's spec and the parameters.
std::tuple<k::Spec, double, double> prepare_matrix(const char* op, const at::Tensor& weight, double prob,
                                                   int64_t seed, c10::SymIntArrayRef shape,
                                                   c10::string_view dist) {
  const auto g = detail::check_jitc_matrix_args(op, weight, prob, shape,
                                                std::string_view(dist.data(), dist.size()),
                                                /*allow_half=*/false);
  TORCH_CHECK(weight.device().is_cpu(), op, ": expected a CPU weight, got ", weight.device());
  const auto params = detail::read_weight_params_cpu(op, weight, g.dist);
  return {k::make_spec(prob, seed, g.n_rows.expect_int(), g.n_cols.expect_int(), g.dist), params.first,
          params.second};
}

at::Tensor jitc_materialize_cpu(const at::Tensor& weight, double prob, int64_t seed,
                                c10::SymIntArrayRef shape, c10::string_view dist) {
  k::Spec spec;
  double a = 0, b = 0;  // not structured bindings: the lambdas below capture them
  std::tie(spec, a, b) = prepare_matrix("brain::jitc_materialize", weight, prob, seed, shape, dist);
  at::Tensor out = at::zeros({spec.n_rows, spec.n_cols}, weight.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "jitc_materialize_cpu", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, spec.n_rows, row_grain(spec, prob), [&](int64_t begin, int64_t end) {
      k::materialize<scalar_t>(spec, a, b, o, begin, end);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> jitc_to_csr_cpu(const at::Tensor& weight,
                                                               double prob, int64_t seed,
                                                               c10::SymIntArrayRef shape,
                                                               c10::string_view dist) {
  k::Spec spec;
  double a = 0, b = 0;  // not structured bindings: the lambdas below capture them
  std::tie(spec, a, b) = prepare_matrix("brain::jitc_to_csr", weight, prob, seed, shape, dist);
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  at::Tensor indptr = at::empty({spec.n_rows + 1}, long_opts);
  int64_t* ip = indptr.data_ptr<int64_t>();
  ip[0] = 0;
  const int64_t grain = row_grain(spec, prob);
  at::parallel_for(0, spec.n_rows, grain, [&](int64_t begin, int64_t end) {
    k::row_lengths(spec, ip + 1, begin, end);
  });
  for (int64_t r = 0; r < spec.n_rows; ++r) ip[r + 1] += ip[r];
  const int64_t nnz = ip[spec.n_rows];
  at::Tensor indices = at::empty({nnz}, long_opts);
  at::Tensor values = at::empty({nnz}, weight.options());
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "jitc_to_csr_cpu", [&] {
    int64_t* ix = indices.data_ptr<int64_t>();
    scalar_t* vals = values.data_ptr<scalar_t>();
    at::parallel_for(0, spec.n_rows, grain, [&](int64_t begin, int64_t end) {
      k::fill_csr<scalar_t>(spec, a, b, ip, ix, vals, begin, end);
    });
  });
  return {indptr, indices, values};
}

std::tuple<at::Tensor, at::Tensor> jitc_pattern_cpu(const at::Tensor& like, double prob, int64_t seed,
                                                    c10::SymIntArrayRef shape, int64_t col_begin,
                                                    std::optional<int64_t> col_end, bool exclude_diagonal) {
  const auto plan = detail::check_jitc_pattern_args("brain::jitc_pattern", prob, seed, shape, col_begin,
                                                    col_end, exclude_diagonal);
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  const int64_t n_rows = shape[0].expect_int();
  at::Tensor indptr = at::zeros({n_rows + 1}, long_opts);
  if (plan.empty) return {indptr, at::empty({0}, long_opts)};
  const k::Spec& spec = plan.spec;
  const k::Window& window = plan.window;
  int64_t* ip = indptr.data_ptr<int64_t>();
  // Work per row: the entries walked in the window's blocks, and the blocks.
  const int64_t blocks = k::window_end_block(spec, window) - k::window_first_block(spec, window);
  const double walked = prob * static_cast<double>(blocks << spec.block_shift) + double(blocks) + 1.0;
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kEntriesPerTask / walked));
  at::parallel_for(0, n_rows, grain, [&](int64_t begin, int64_t end) {
    k::window_row_lengths(spec, window, ip + 1, begin, end);
  });
  for (int64_t r = 0; r < n_rows; ++r) ip[r + 1] += ip[r];
  at::Tensor indices = at::empty({ip[n_rows]}, long_opts);
  int64_t* ix = indices.data_ptr<int64_t>();
  at::parallel_for(0, n_rows, grain, [&](int64_t begin, int64_t end) {
    k::fill_window_indices(spec, window, ip, ix, begin, end);
  });
  return {indptr, indices};
}

}  // namespace

namespace detail {

at::Tensor jitc_matmul_with_csr_cpu(const char* op, bool event, const at::Tensor& x, const at::Tensor& weight,
                                    double prob, int64_t seed, int64_t n_rows, int64_t n_cols, std::string_view dist,
                                    bool transpose, const at::Tensor& indptr, const at::Tensor& indices,
                                    const at::Tensor& values) {
  TORCH_CHECK(indptr.scalar_type() == at::kLong && indices.scalar_type() == at::kLong &&
                  values.scalar_type() == weight.scalar_type() && indptr.is_contiguous() && indices.is_contiguous() &&
                  values.is_contiguous() && indptr.numel() == n_rows + 1 && indices.numel() == values.numel(),
              op, ": the generated copy of A must be jitc_to_csr's output for this weight and shape");
  const std::array<c10::SymInt, 2> shape{n_rows, n_cols};
  return matmul_impl(op, event, x, weight, prob, seed, shape, c10::string_view(dist.data(), dist.size()), transpose,
                     Materialized{indptr, indices, values});
}

}  // namespace detail

TORCH_LIBRARY_IMPL(brain, CPU, m) {
  m.impl("jitc_matmul", &jitc_matmul_cpu<false>);
  m.impl("event_jitc_matmul", &jitc_matmul_cpu<true>);
  m.impl("_jitc_matmul_backward", &jitc_matmul_backward_cpu);
  m.impl("jitc_materialize", &jitc_materialize_cpu);
  m.impl("jitc_to_csr", &jitc_to_csr_cpu);
  m.impl("jitc_pattern", &jitc_pattern_cpu);
}

}  // namespace brain::ops
