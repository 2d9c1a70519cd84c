#include "csrc/ops/jitc_common.h"

#include <cmath>

#include <c10/util/Exception.h>

namespace brain::ops::detail {

using kernels::jitc::Dist;

Dist parse_dist(const char* op, std::string_view dist) {
  if (dist == "homo") return Dist::kHomo;
  if (dist == "uniform") return Dist::kUniform;
  if (dist == "normal") return Dist::kNormal;
  TORCH_CHECK(false, op, ": dist must be \"homo\", \"uniform\" or \"normal\", got \"", dist, "\"");
}

JitcGeometry check_jitc_matrix_args(const char* op, const at::Tensor& weight, double prob,
                                    c10::SymIntArrayRef shape, std::string_view dist,
                                    bool allow_half) {
  JitcGeometry g;
  g.dist = parse_dist(op, dist);
  TORCH_CHECK(std::isfinite(prob) && prob > 0.0 && prob <= 1.0, op,
              ": prob must be in (0, 1], got ", prob);
  TORCH_CHECK(shape.size() == 2, op, ": shape must be [n_rows, n_cols], got ", shape.size(),
              " values");
  TORCH_CHECK(shape[0] >= 0 && shape[1] >= 0, op, ": shape must be non-negative, got [",
              shape[0], ", ", shape[1], "]");
  TORCH_CHECK(shape[0] < kernels::jitc::kMaxDim && shape[1] < kernels::jitc::kMaxDim, op,
              ": n_rows and n_cols must be below 2^32, got [", shape[0], ", ", shape[1], "]");
  g.n_rows = shape[0];
  g.n_cols = shape[1];

  const auto wt = weight.scalar_type();
  const bool half_ok = allow_half && (wt == at::kHalf || wt == at::kBFloat16);
  TORCH_CHECK(wt == at::kFloat || wt == at::kDouble || half_ok, op,
              ": weight must be float32 or float64",
              allow_half ? " (or float16/bfloat16)" : " (float16/bfloat16 only on CUDA)", ", got ",
              wt);
  if (g.dist == Dist::kHomo) {
    TORCH_CHECK(weight.dim() == 0 || (weight.dim() == 1 && weight.sym_size(0) == 1), op,
                ": weight for dist=\"homo\" must hold one value w (shape [] or [1]), got shape ",
                weight.sym_sizes());
  } else {
    TORCH_CHECK(weight.dim() == 1 && weight.sym_size(0) == 2, op, ": weight for dist=\"", dist,
                "\" must be [2] = ", g.dist == Dist::kUniform ? "[low, high]" : "[mean, std]",
                ", got shape ", weight.sym_sizes());
  }
  return g;
}

JitcGeometry check_jitc_matmul_args(const char* op, const at::Tensor& x, const at::Tensor& weight,
                                    double prob, c10::SymIntArrayRef shape, std::string_view dist,
                                    bool transpose, bool allow_half) {
  auto g = check_jitc_matrix_args(op, weight, prob, shape, dist, allow_half);
  TORCH_CHECK(x.dim() == 1 || x.dim() == 2, op, ": x must be 1-D [n] or 2-D [batch, n], got ",
              x.dim(), "-D");
  TORCH_CHECK(x.scalar_type() == at::kBool || x.scalar_type() == weight.scalar_type(), op,
              ": x must be bool or have the weight's dtype (", weight.scalar_type(), "), got ",
              x.scalar_type());
  TORCH_CHECK(x.device() == weight.device(), op, ": x is on ", x.device(), " but weight is on ",
              weight.device());
  g.batched = x.dim() == 2;
  g.batch = g.batched ? x.sym_size(0) : c10::SymInt(1);
  g.n_in = transpose ? g.n_rows : g.n_cols;
  g.n_out = transpose ? g.n_cols : g.n_rows;
  TORCH_CHECK(x.sym_size(-1) == g.n_in, op, ": x's last dimension must be ",
              transpose ? "n_rows" : "n_cols", " = ", g.n_in, " (transpose=",
              transpose ? "True" : "False", "), got ", x.sym_size(-1));
  return g;
}

JitcPatternPlan check_jitc_pattern_args(const char* op, double prob, int64_t seed,
                                        c10::SymIntArrayRef shape, int64_t col_begin,
                                        std::optional<int64_t> col_end, bool exclude_diagonal) {
  TORCH_CHECK(std::isfinite(prob) && prob >= 0.0 && prob <= 1.0, op,
              ": prob must be in [0, 1], got ", prob);
  TORCH_CHECK(shape.size() == 2, op, ": shape must be [n_rows, n_cols], got ", shape.size(),
              " values");
  const int64_t n_rows = shape[0].expect_int(), n_cols = shape[1].expect_int();
  TORCH_CHECK(n_rows >= 0 && n_cols >= 0, op, ": shape must be non-negative, got [", n_rows, ", ",
              n_cols, "]");
  TORCH_CHECK(n_rows < kernels::jitc::kMaxDim && n_cols < kernels::jitc::kMaxDim, op,
              ": n_rows and n_cols must be below 2^32, got [", n_rows, ", ", n_cols, "]");
  const int64_t end = col_end.value_or(n_cols);
  TORCH_CHECK(0 <= col_begin && col_begin <= end && end <= n_cols, op,
              ": the column window [col_begin, col_end) = [", col_begin, ", ", end,
              ") must lie in [0, n_cols = ", n_cols, "]");
  TORCH_CHECK(!exclude_diagonal || n_rows == n_cols, op,
              ": exclude_diagonal needs a square shape, got [", n_rows, ", ", n_cols, "]");
  JitcPatternPlan plan;
  plan.window.col_begin = col_begin;
  plan.window.col_end = end;
  plan.window.exclude_diagonal = exclude_diagonal;
  plan.empty = prob == 0.0 || n_rows == 0 || col_begin == end;
  if (!plan.empty) plan.spec = kernels::jitc::make_spec(prob, seed, n_rows, n_cols, Dist::kHomo);
  return plan;
}

c10::SymDimVector jitc_output_sizes(const JitcGeometry& g) {
  c10::SymDimVector sizes;
  if (g.batched) sizes.push_back(g.batch);
  sizes.push_back(g.n_out);
  return sizes;
}

std::pair<double, double> read_weight_params_cpu(const char* op, const at::Tensor& weight,
                                                 Dist dist) {
  const auto flat = weight.reshape({-1}).to(at::kDouble);
  const double* v = flat.data_ptr<double>();
  const double a = v[0];
  const double b = kernels::jitc::num_params(dist) > 1 ? v[1] : 0.0;
  switch (dist) {
    case Dist::kHomo:
      TORCH_CHECK(std::isfinite(a), op, ": weight w must be finite, got ", a);
      break;
    case Dist::kUniform:
      TORCH_CHECK(std::isfinite(a) && std::isfinite(b), op,
                  ": weight [low, high] must be finite, got [", a, ", ", b, "]");
      TORCH_CHECK(b >= a, op, ": weight [low, high] needs high >= low, got [", a, ", ", b, "]");
      break;
    case Dist::kNormal:
      TORCH_CHECK(std::isfinite(a) && std::isfinite(b), op,
                  ": weight [mean, std] must be finite, got [", a, ", ", b, "]");
      TORCH_CHECK(b >= 0, op, ": weight [mean, std] needs std >= 0, got std = ", b);
      break;
  }
  return {a, b};
}

}  // namespace brain::ops::detail
