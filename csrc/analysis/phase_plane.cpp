#include <brain/analysis/analysis.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "csrc/analysis/core.h"

namespace brain::analysis {

PhasePlane::PhasePlane(Field f, std::vector<Axis> variables, std::vector<Param> params, Options options)
    : f_(std::move(f)), variables_(std::move(variables)), params_(std::move(params)), options_(options) {
  TORCH_CHECK(f_, "PhasePlane: the derivative function is empty");
  detail::validate("PhasePlane", variables_, params_);
  for (const auto& p : params_)
    TORCH_CHECK(!p.swept, "PhasePlane: parameter '", p.name,
                "' is given a range; a phase plane holds every parameter at one value (sweep it with Bifurcation)");
}

PhasePlane1D::PhasePlane1D(Field f, std::vector<Axis> variables, std::vector<Param> params, Options options)
    : PhasePlane(std::move(f), std::move(variables), std::move(params), options) {
  TORCH_CHECK(variables_.size() == 1, "PhasePlane1D: expected one variable, got ", variables_.size(), " (",
              detail::join_names(variables_), ")");
}

PhasePlane2D::PhasePlane2D(Field f, std::vector<Axis> variables, std::vector<Param> params, Options options)
    : PhasePlane(std::move(f), std::move(variables), std::move(params), options) {
  TORCH_CHECK(variables_.size() == 2, "PhasePlane2D: expected two variables, got ", variables_.size(), " (",
              detail::join_names(variables_), ")");
}

namespace {
std::vector<at::Tensor> grid_axes(const std::vector<Axis>& variables, const Options& options) {
  std::vector<at::Tensor> axes;
  for (const auto& v : variables)
    axes.push_back(at::linspace(v.lo, v.hi, v.resolution > 0 ? v.resolution
                                                              : detail::default_resolution(options, variables.size()),
                                options.tensor_options));
  return axes;
}
}  // namespace

VectorFieldGrid PhasePlane::vector_field() const {
  at::NoGradGuard no_grad;
  VectorFieldGrid out;
  out.axes = grid_axes(variables_, options_);
  const auto mesh = at::meshgrid(out.axes, "ij");
  std::vector<at::Tensor> flat;
  for (const auto& m : mesh) flat.push_back(m.reshape({-1}));
  const auto X = at::stack(flat, 1);
  auto F = detail::evaluate(f_, X, detail::fixed_param_columns(params_, X.size(0), options_.tensor_options));
  const auto finite = at::isfinite(F).all(1, /*keepdim=*/true);
  out.skipped = (~finite).sum().item<int64_t>();
  F = at::where(finite, F, at::full({}, NAN, F.options()));
  for (int64_t d = 0; d < dimension(); ++d) out.derivatives.push_back(F.select(1, d).reshape(mesh[0].sizes()));
  return out;
}

int64_t PhasePlane::skipped_points() const { return vector_field().skipped; }

std::vector<at::Tensor> PhasePlane::nullclines() const {
  at::NoGradGuard no_grad;
  const int64_t D = dimension();
  const auto grid = vector_field();
  const auto mesh = at::meshgrid(grid.axes, "ij");
  std::vector<at::Tensor> out;
  for (int64_t i = 0; i < D; ++i) {
    // Brackets [a, b] along every grid line where f_i changes sign, for every direction.
    std::vector<at::Tensor> A, B;
    const auto& fi = grid.derivatives[i];
    for (int64_t d = 0; d < D; ++d) {
      const int64_t n = fi.size(d);
      const auto f0 = fi.narrow(d, 0, n - 1), f1 = fi.narrow(d, 1, n - 1);
      const auto change = ((f0 <= 0) & (f1 > 0)) | ((f0 >= 0) & (f1 < 0));
      const auto idx = change.nonzero();  // [K, D] cell-edge indices
      std::vector<at::Tensor> a_cols, b_cols;
      for (int64_t k = 0; k < D; ++k) {
        const auto j = idx.select(1, k);
        a_cols.push_back(grid.axes[k].index_select(0, j));
        b_cols.push_back(grid.axes[k].index_select(0, k == d ? j + 1 : j));
      }
      A.push_back(at::stack(a_cols, 1));
      B.push_back(at::stack(b_cols, 1));
    }
    auto a = at::cat(A), b = at::cat(B);
    const auto P = detail::fixed_param_columns(params_, a.size(0), options_.tensor_options);
    if (a.size(0) > 0) {
      auto fa = detail::evaluate(f_, a, P).select(1, i);
      // Bisection: the bracket halves every step until it is as small as float64 allows.
      for (int step = 0; step < 60; ++step) {
        const auto mid = (a + b) / 2;
        const auto fm = detail::evaluate(f_, mid, P).select(1, i);
        const auto same = ((fm > 0) == (fa > 0)).unsqueeze(1);
        a = at::where(same, mid, a);
        fa = at::where(same.squeeze(1), fm, fa);
        b = at::where(same, b, mid);
      }
    }
    out.push_back((a + b) / 2);
  }
  return out;
}

std::vector<FixedPoint> PhasePlane::fixed_points() const {
  const auto P = detail::fixed_param_columns(params_, 1, options_.tensor_options);
  int64_t skipped = 0;
  return detail::fixed_points(f_, variables_, P, options_, &skipped).front();
}

Trajectory PhasePlane::trajectory(const at::Tensor& initial, double duration, double dt, const std::string& method) const {
  TORCH_CHECK(initial.dim() == 2 && initial.size(1) == dimension(), "trajectory: initial points must be [B, ",
              dimension(), "] (one column per variable: ", detail::join_names(variables_), "), got ", initial.sizes());
  const auto x0 = initial.to(options_.tensor_options);
  return detail::integrate(f_, x0, detail::fixed_param_columns(params_, x0.size(0), options_.tensor_options), duration,
                           dt, method);
}

std::vector<LimitCycle> PhasePlane::limit_cycles(const at::Tensor& initial, double duration, double dt,
                                                 std::optional<double> transient) const {
  const double skip = transient.value_or(duration / 2);
  TORCH_CHECK(skip >= 0 && skip < duration, "limit_cycles: transient must be in [0, duration), got ", skip);
  const auto traj = trajectory(initial, duration, dt);
  const auto keep = (traj.t >= skip).nonzero().squeeze(1);
  const auto t = traj.t.index_select(0, keep);
  const auto v = traj.values.index_select(0, keep);
  std::vector<LimitCycle> out;
  for (int64_t b = 0; b < v.size(1); ++b) out.push_back(detail::detect_cycle(t, v.select(1, b)));
  return out;
}

}  // namespace brain::analysis
