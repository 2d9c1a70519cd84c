#include "csrc/analysis/core.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <brain/dyn/integrators.h>

namespace brain::analysis {
namespace detail {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<at::Tensor> columns(const at::Tensor& M) {
  std::vector<at::Tensor> out;
  for (int64_t j = 0; j < M.size(1); ++j) out.push_back(M.select(1, j));
  return out;
}

// The outputs of f broadcast to [M] in X's dtype and device, after checking their number and shape.
std::vector<at::Tensor> checked_outputs(std::vector<at::Tensor> out, int64_t expected, int64_t M,
                                        const at::TensorOptions& o) {
  TORCH_CHECK(static_cast<int64_t>(out.size()) == expected, "analysis: the derivative function returned ",
              out.size(), " values for ", expected, " variables; it must return one derivative per variable, in order");
  for (size_t i = 0; i < out.size(); ++i) {
    TORCH_CHECK(out[i].defined(), "analysis: derivative ", i, " is an undefined tensor");
    auto& t = out[i];
    const bool ok = t.dim() == 0 || (t.dim() == 1 && (t.size(0) == M || t.size(0) == 1));
    TORCH_CHECK(ok, "analysis: derivative ", i, " has shape ", t.sizes(), "; expected [", M,
                "] (the shape of the variables it was given) or a scalar");
    if (t.scalar_type() != o.dtype().toScalarType() || t.device() != o.device()) t = t.to(o);
    t = t.expand({M});
  }
  return out;
}
}  // namespace

std::string join_names(const std::vector<Axis>& variables) {
  std::string s;
  for (const auto& v : variables) s += (s.empty() ? "" : ", ") + v.name;
  return s;
}

void validate(const std::string& what, const std::vector<Axis>& variables, const std::vector<Param>& params) {
  TORCH_CHECK(!variables.empty(), what, ": at least one variable is needed");
  std::set<std::string> seen;
  for (const auto& v : variables) {
    TORCH_CHECK(!v.name.empty(), what, ": a variable has an empty name");
    TORCH_CHECK(seen.insert(v.name).second, what, ": the name '", v.name, "' is used twice");
    TORCH_CHECK(std::isfinite(v.lo) && std::isfinite(v.hi), what, ": variable '", v.name,
                "' has a non-finite range [", v.lo, ", ", v.hi, "]");
    TORCH_CHECK(v.lo < v.hi, what, ": variable '", v.name, "' has an empty or inverted range [", v.lo, ", ", v.hi,
                "]; expected lo < hi");
    TORCH_CHECK(v.resolution == 0 || v.resolution >= 2, what, ": variable '", v.name,
                "' needs a resolution of at least 2 grid points, got ", v.resolution);
  }
  for (const auto& p : params) {
    TORCH_CHECK(!p.name.empty(), what, ": a parameter has an empty name");
    TORCH_CHECK(seen.insert(p.name).second, what, ": the name '", p.name, "' is used twice");
    if (p.swept) {
      TORCH_CHECK(std::isfinite(p.lo) && std::isfinite(p.hi), what, ": parameter '", p.name,
                  "' has a non-finite range [", p.lo, ", ", p.hi, "]");
      TORCH_CHECK(p.lo < p.hi, what, ": parameter '", p.name, "' has an empty or inverted range [", p.lo, ", ",
                  p.hi, "]; expected lo < hi");
      TORCH_CHECK(p.resolution == 0 || p.resolution >= 2, what, ": parameter '", p.name,
                  "' needs a resolution of at least 2 values, got ", p.resolution);
    } else {
      TORCH_CHECK(std::isfinite(p.value), what, ": parameter '", p.name, "' has the non-finite value ", p.value);
    }
  }
}

int64_t default_resolution(const Options& options, int64_t dimension) {
  if (options.resolution > 0) return options.resolution;
  return dimension == 1 ? 1000 : dimension == 2 ? 200 : 40;
}

at::Tensor evaluate(const Field& f, const at::Tensor& X, const at::Tensor& P) {
  const int64_t M = X.size(0), D = X.size(1);
  auto args = columns(X);
  for (auto& p : columns(P)) args.push_back(p);
  auto out = checked_outputs(f(args), D, M, X.options());
  return at::stack(out, 1);
}

at::Tensor fixed_param_columns(const std::vector<Param>& params, int64_t rows, const at::TensorOptions& o) {
  std::vector<double> values;
  for (const auto& p : params) values.push_back(p.value);
  if (values.empty()) return at::empty({rows, 0}, o);
  return at::tensor(values, o.dtype(at::kDouble)).to(o).unsqueeze(0).expand({rows, -1}).contiguous();
}

}  // namespace detail

at::Tensor jacobian(const Field& f, const at::Tensor& X, const at::Tensor& P) {
  at::AutoGradMode enable(true);
  const int64_t M = X.size(0), D = X.size(1);
  std::vector<at::Tensor> vars;
  for (int64_t d = 0; d < D; ++d) vars.push_back(X.select(1, d).detach().clone().requires_grad_(true));
  auto args = vars;
  for (int64_t q = 0; q < P.size(1); ++q) args.push_back(P.select(1, q).detach());
  const auto out = detail::checked_outputs(f(args), D, M, X.options());
  auto J = at::zeros({M, D, D}, X.options());
  for (int64_t i = 0; i < D; ++i) {
    if (!out[i].requires_grad()) continue;  // a constant derivative
    const auto grads = torch::autograd::grad({out[i].sum()}, vars, {}, /*retain_graph=*/true,
                                             /*create_graph=*/false, /*allow_unused=*/true);
    for (int64_t j = 0; j < D; ++j)
      if (grads[j].defined()) J.select(1, i).select(1, j).copy_(grads[j]);
  }
  return J;
}

std::string classify(const at::Tensor& jacobian, double eig_tolerance) {
  const auto J = jacobian.detach().to(at::kDouble).cpu().contiguous();
  TORCH_CHECK(J.dim() == 2 && J.size(0) == J.size(1) && J.size(0) >= 1,
              "classify: expected a square Jacobian [D, D], got ", J.sizes());
  const int64_t D = J.size(0);
  TORCH_CHECK(at::isfinite(J).all().item<bool>(), "classify: the Jacobian has non-finite entries");
  const double scale = std::max(1.0, J.abs().max().item<double>());
  const double eps = eig_tolerance * scale;
  const double* a = J.data_ptr<double>();
  if (D == 1) return a[0] < -eps ? "stable" : a[0] > eps ? "unstable" : "saddle-node";
  const auto ev = at::linalg_eigvals(J).to(at::kComplexDouble).contiguous();
  const auto* e = ev.data_ptr<c10::complex<double>>();
  int64_t pos = 0, neg = 0;
  bool zero = false, imaginary_pair = false, complex_pair = false;
  for (int64_t k = 0; k < D; ++k) {
    const double re = e[k].real(), im = e[k].imag();
    if (std::abs(re) <= eps && std::abs(im) <= eps) zero = true;
    else if (std::abs(re) <= eps) imaginary_pair = true;
    if (std::abs(im) > eps) complex_pair = true;
    if (re > eps) ++pos;
    if (re < -eps) ++neg;
  }
  if (zero) return "saddle-node";
  if (imaginary_pair) return pos > 0 && neg > 0 ? "saddle-focus" : "centre";
  if (D == 2) {
    const double tau = a[0] + a[3], det = a[0] * a[3] - a[1] * a[2];
    if (det < 0) return "saddle";
    const std::string side = tau < 0 ? "stable " : "unstable ";
    const double disc = tau * tau - 4 * det;
    if (std::sqrt(std::abs(disc)) <= eps) {
      const bool scalar = std::abs(a[1]) <= eps && std::abs(a[2]) <= eps;
      return side + (scalar ? "star" : "degenerate");
    }
    return side + (disc > 0 ? "node" : "focus");
  }
  if (pos == 0) return complex_pair ? "stable focus" : "stable node";
  if (neg == 0) return complex_pair ? "unstable focus" : "unstable node";
  return complex_pair ? "saddle-focus" : "saddle";
}

bool is_stable(const std::string& s) { return s == "stable" || s.rfind("stable ", 0) == 0; }

namespace detail {

Refined newton(const Field& f, const at::Tensor& X0, const at::Tensor& P, const Options& options) {
  const int64_t M = X0.size(0), D = X0.size(1);
  auto X = X0.clone();
  if (M == 0) return {X, at::empty({0}, X.options()), at::empty({0}, X.options().dtype(at::kBool))};
  at::NoGradGuard no_grad;
  const auto finite_norm2 = [](const at::Tensor& F) {
    const auto n = (F * F).sum(-1);
    return at::where(at::isfinite(n), n, at::full({}, kInf, n.options()));
  };
  auto F = evaluate(f, X, P);
  auto norm2 = finite_norm2(F);
  auto active = at::ones({M}, X.options().dtype(at::kBool));
  constexpr int64_t kSteps = 10;  // step lengths 1, 1/2, ..., 1/512
  std::vector<double> alpha_values;
  for (int64_t k = 0; k < kSteps; ++k) alpha_values.push_back(std::ldexp(1.0, static_cast<int>(-k)));
  const auto alphas = at::tensor(alpha_values, X.options()).view({kSteps, 1, 1});
  const auto eye = at::eye(D, X.options());
  for (int64_t it = 0; it < options.newton_iterations; ++it) {
    active = active & ~(norm2 < options.tolerance * options.tolerance);
    const auto idx = active.nonzero().squeeze(1);
    const int64_t A = idx.size(0);
    if (A == 0) break;
    const auto Xa = X.index_select(0, idx), Pa = P.index_select(0, idx), Fa = F.index_select(0, idx);
    auto J = jacobian(f, Xa, Pa);
    const auto ok = at::isfinite(J).flatten(1).all(1).view({A, 1, 1});
    J = at::where(ok, J, eye);
    const auto Jt = J.transpose(1, 2);
    const auto JtJ = Jt.bmm(J);
    const auto g = at::where(ok.view({A, 1}), Jt.bmm(Fa.unsqueeze(2)).squeeze(2), at::zeros({}, X.options()));
    const auto mu = 1e-14 * (1 + JtJ.diagonal(0, 1, 2).amax(1));
    const auto step = -at::linalg_solve(JtJ + mu.view({A, 1, 1}) * eye, g.unsqueeze(2)).squeeze(2);
    const auto Xt = (Xa.unsqueeze(0) + alphas * step.unsqueeze(0)).reshape({kSteps * A, D});
    const auto Ft = evaluate(f, Xt, Pa.repeat({kSteps, 1})).view({kSteps, A, D});
    const auto nt = finite_norm2(Ft);
    const auto best = nt.min(0);
    const auto best_norm = std::get<0>(best), best_k = std::get<1>(best);
    const auto improved = best_norm < norm2.index_select(0, idx);
    const auto rows = at::arange(A, idx.options());
    const auto Xnew = Xt.view({kSteps, A, D}).index({best_k, rows});
    const auto Fnew = Ft.index({best_k, rows});
    const auto keep = improved.view({A, 1});
    X.index_copy_(0, idx, at::where(keep, Xnew, Xa));
    F.index_copy_(0, idx, at::where(keep, Fnew, Fa));
    norm2.index_copy_(0, idx, at::where(improved, best_norm, norm2.index_select(0, idx)));
    // A row that no step length improves has reached a minimum of |f|: no root there.
    active.index_copy_(0, idx, improved);
  }
  const auto residual = at::where(at::isfinite(F).all(1), F.abs().amax(1), at::full({}, kInf, F.options()));
  return {X, residual, residual < options.tolerance};
}

void characterise(const Field& f, const at::Tensor& X, const at::Tensor& P, const Options& options,
                  std::vector<FixedPoint>& points) {
  if (points.empty()) return;
  const auto J = jacobian(f, X, P).cpu();
  const auto ev = at::linalg_eigvals(J).to(at::kComplexDouble).contiguous();
  const int64_t D = X.size(1);
  for (size_t m = 0; m < points.size(); ++m) {
    auto& p = points[m];
    p.jacobian = J[m].clone();
    const auto* e = ev[m].data_ptr<c10::complex<double>>();
    p.eigenvalues.clear();
    for (int64_t k = 0; k < D; ++k) p.eigenvalues.emplace_back(e[k].real(), e[k].imag());
    std::sort(p.eigenvalues.begin(), p.eigenvalues.end(), [](const auto& a, const auto& b) {
      return a.real() != b.real() ? a.real() > b.real() : a.imag() > b.imag();
    });
    p.stability = classify(p.jacobian, options.eig_tolerance);
  }
}

namespace {

// Pairwise reduction over the 2^D corners of every grid cell: dims 1..D of x ([c, n_1..n_D]).
at::Tensor cell_reduce(at::Tensor x, int64_t D, bool take_max) {
  for (int64_t d = 1; d <= D; ++d) {
    const int64_t n = x.size(d);
    const auto a = x.narrow(d, 0, n - 1), b = x.narrow(d, 1, n - 1);
    x = take_max ? at::maximum(a, b) : at::minimum(a, b);
  }
  return x;
}

}  // namespace

std::vector<std::vector<FixedPoint>> fixed_points(const Field& f, const std::vector<Axis>& variables,
                                                  const at::Tensor& P, const Options& options,
                                                  int64_t* skipped) {
  at::NoGradGuard no_grad;
  const auto o = options.tensor_options;
  const int64_t D = static_cast<int64_t>(variables.size()), G = P.size(0);
  std::vector<at::Tensor> axes;
  std::vector<int64_t> shape, cell_shape;
  std::vector<double> lo, hi, h;
  for (const auto& v : variables) {
    const int64_t n = v.resolution > 0 ? v.resolution : default_resolution(options, D);
    axes.push_back(at::linspace(v.lo, v.hi, n, o));
    shape.push_back(n);
    cell_shape.push_back(n - 1);
    lo.push_back(v.lo);
    hi.push_back(v.hi);
    h.push_back((v.hi - v.lo) / static_cast<double>(n - 1));
  }
  const auto mesh = at::meshgrid(axes, "ij");
  std::vector<at::Tensor> flat;
  for (const auto& m : mesh) flat.push_back(m.reshape({-1}));
  const auto Xg = at::stack(flat, 1);  // [N, D]
  const int64_t N = Xg.size(0);
  int64_t Ncell = 1;
  for (auto c : cell_shape) Ncell *= c;
  const int64_t K = std::max<int64_t>(1, options.max_candidates);
  const int64_t chunk = std::max<int64_t>(1, 4'000'000 / N);
  const auto h_t = at::tensor(h, o.dtype(at::kDouble)).to(o);
  const auto lo_t = at::tensor(lo, o.dtype(at::kDouble)).to(o);
  const auto hi_t = at::tensor(hi, o.dtype(at::kDouble)).to(o);

  std::vector<at::Tensor> starts, groups, valids;
  int64_t bad = 0;
  for (int64_t g0 = 0; g0 < G; g0 += chunk) {
    const int64_t c = std::min(chunk, G - g0);
    const auto Pc = P.narrow(0, g0, c).repeat_interleave(N, 0);
    auto F = evaluate(f, Xg.repeat({c, 1}), Pc);
    const auto finite = at::isfinite(F).all(1);
    bad += (~finite).sum().item<int64_t>();
    F = at::where(finite.unsqueeze(1), F, at::full({}, NAN, F.options()));
    std::vector<int64_t> grid_shape{c};
    grid_shape.insert(grid_shape.end(), shape.begin(), shape.end());
    const auto q = at::where(finite, (F * F).sum(1), at::full({}, kInf, F.options())).view(grid_shape);

    // (b) local minima of |f|^2 along every grid line.
    auto is_min = at::isfinite(q);
    for (int64_t d = 1; d <= D; ++d) {
      const int64_t n = q.size(d);
      const auto lower = q.narrow(d, 1, n - 1) <= q.narrow(d, 0, n - 1);
      const auto upper = q.narrow(d, 0, n - 1) <= q.narrow(d, 1, n - 1);
      const auto edge = at::ones_like(q.narrow(d, 0, 1), q.options().dtype(at::kBool));
      is_min = is_min & at::cat({edge, lower}, d) & at::cat({upper, edge}, d);
    }
    const auto score_b = at::where(is_min, q, at::full({}, kInf, q.options())).view({c, N});
    const auto top_b = score_b.topk(std::min(K, N), 1, /*largest=*/false);
    const auto idx_b = std::get<1>(top_b);
    starts.push_back(Xg.index_select(0, idx_b.flatten()));
    groups.push_back((at::arange(c, idx_b.options()) + g0).unsqueeze(1).expand_as(idx_b).flatten());
    valids.push_back(at::isfinite(std::get<0>(top_b)).flatten());

    // (a) cells where every f_i takes both signs (nullcline intersections).
    auto cell_ok = at::ones({}, q.options().dtype(at::kBool));
    auto Fv = F.view([&] { auto s = grid_shape; s.push_back(D); return s; }());
    for (int64_t i = 0; i < D; ++i) {
      const auto fi = Fv.select(-1, i);
      cell_ok = cell_ok & (cell_reduce(fi, D, true) >= 0) & (cell_reduce(fi, D, false) <= 0);
    }
    const auto qcell = cell_reduce(q, D, false);
    const auto score_a = at::where(cell_ok, qcell, at::full({}, kInf, q.options())).view({c, Ncell});
    const auto top_a = score_a.topk(std::min(K, Ncell), 1, /*largest=*/false);
    auto rem = std::get<1>(top_a).flatten();
    std::vector<at::Tensor> coords(D);
    for (int64_t d = D - 1; d >= 0; --d) {
      coords[d] = rem.remainder(cell_shape[d]);
      rem = rem.div(cell_shape[d], "floor");
    }
    const auto cells = at::stack(coords, 1).to(o);
    starts.push_back(lo_t + (cells + 0.5) * h_t);
    groups.push_back((at::arange(c, idx_b.options()) + g0).unsqueeze(1).expand_as(std::get<1>(top_a)).flatten());
    valids.push_back(at::isfinite(std::get<0>(top_a)).flatten());
  }
  if (skipped) *skipped = bad;

  const auto valid = at::cat(valids).nonzero().squeeze(1);
  const auto X0 = at::cat(starts).index_select(0, valid);
  const auto gid = at::cat(groups).index_select(0, valid);
  const auto refined = newton(f, X0, P.index_select(0, gid), options);
  const auto margin = 1e-9 * (hi_t - lo_t);
  const auto inside = ((refined.x >= lo_t - margin) & (refined.x <= hi_t + margin)).all(1);
  const auto keep = (refined.converged & inside).nonzero().squeeze(1);
  const auto xk = refined.x.index_select(0, keep).cpu().contiguous();
  const auto rk = refined.residual.index_select(0, keep).cpu().contiguous();
  const auto gk = gid.index_select(0, keep).cpu().contiguous();

  // De-duplicate per parameter value, best residual first.
  const int64_t R = xk.size(0);
  const double* xp = xk.data_ptr<double>();
  const double* rp = rk.data_ptr<double>();
  const int64_t* gp = gk.data_ptr<int64_t>();
  std::vector<int64_t> order(R);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return gp[a] != gp[b] ? gp[a] < gp[b] : rp[a] < rp[b];
  });
  std::vector<int64_t> kept;
  std::vector<std::vector<int64_t>> by_group(G);
  for (int64_t r : order) {
    auto& mine = by_group[gp[r]];
    bool duplicate = false;
    for (int64_t s : mine) {
      double dist = 0;
      for (int64_t d = 0; d < D; ++d) dist = std::max(dist, std::abs(xp[r * D + d] - xp[s * D + d]) / (hi[d] - lo[d]));
      if (dist < options.unique_tolerance) {
        duplicate = true;
        break;
      }
    }
    if (!duplicate) mine.push_back(r);
  }
  for (auto& mine : by_group) {
    std::sort(mine.begin(), mine.end(), [&](int64_t a, int64_t b) {
      for (int64_t d = 0; d < D; ++d)
        if (xp[a * D + d] != xp[b * D + d]) return xp[a * D + d] < xp[b * D + d];
      return false;
    });
    kept.insert(kept.end(), mine.begin(), mine.end());
  }
  std::vector<FixedPoint> points(kept.size());
  for (size_t m = 0; m < kept.size(); ++m) {
    points[m].x.assign(xp + kept[m] * D, xp + (kept[m] + 1) * D);
    points[m].residual = rp[kept[m]];
  }
  const auto kidx = at::tensor(kept, at::kLong);
  const auto Xk = xk.index_select(0, kidx).to(o);
  const auto Pk = P.index_select(0, gk.index_select(0, kidx).to(P.device()));
  characterise(f, Xk, Pk, options, points);
  std::vector<std::vector<FixedPoint>> out(G);
  for (size_t m = 0; m < kept.size(); ++m) out[gp[kept[m]]].push_back(std::move(points[m]));
  return out;
}

Trajectory integrate(const Field& f, const at::Tensor& initial, const at::Tensor& P, double duration, double dt,
                     const std::string& method, int64_t record_every) {
  TORCH_CHECK(std::isfinite(dt) && dt > 0, "trajectory: dt must be positive, got ", dt);
  TORCH_CHECK(std::isfinite(duration) && duration > 0, "trajectory: duration must be positive, got ", duration);
  TORCH_CHECK(at::isfinite(initial).all().item<bool>(), "trajectory: the initial points are not all finite");
  const auto m = integrators::parse_method(method);
  const int64_t B = initial.size(0), D = initial.size(1);
  const auto pcols = columns(P);
  const integrators::Derivative deriv = [&](const integrators::State& y, double) {
    auto args = y;
    args.insert(args.end(), pcols.begin(), pcols.end());
    return checked_outputs(f(args), D, B, initial.options());
  };
  const int64_t steps = std::max<int64_t>(1, std::llround(duration / dt));
  integrators::State y;
  for (int64_t d = 0; d < D; ++d) y.push_back(initial.select(1, d).contiguous());
  std::vector<at::Tensor> rec{at::stack(y, 1)};
  std::vector<double> times{0.0};
  for (int64_t s = 1; s <= steps; ++s) {
    y = integrators::step(m, deriv, y, (s - 1) * dt, dt);
    for (auto& t : y) t = t.detach();
    if (s % record_every == 0 || s == steps) {
      rec.push_back(at::stack(y, 1));
      times.push_back(s * dt);
    }
  }
  return {at::tensor(times, initial.options()), at::stack(rec, 0)};
}

LimitCycle detect_cycle(const at::Tensor& t_in, const at::Tensor& values_in) {
  LimitCycle out;
  const auto t = t_in.to(at::kDouble).cpu().contiguous();
  const auto v = values_in.to(at::kDouble).cpu().contiguous();
  const int64_t T = v.size(0), D = v.size(1);
  if (T < 8 || !at::isfinite(v).all().item<bool>()) return out;
  const auto v0 = v.select(1, 0).contiguous();
  const double* x = v0.data_ptr<double>();
  const double* tp = t.data_ptr<double>();
  const double mean = v0.mean().item<double>();
  std::vector<double> crossings;
  std::vector<int64_t> at_index;
  for (int64_t k = 0; k + 1 < T; ++k) {
    if (x[k] < mean && x[k + 1] >= mean) {
      crossings.push_back(tp[k] + (mean - x[k]) / (x[k + 1] - x[k]) * (tp[k + 1] - tp[k]));
      at_index.push_back(k);
    }
  }
  if (crossings.size() < 4) return out;
  std::vector<double> periods;
  for (size_t k = 1; k < crossings.size(); ++k) periods.push_back(crossings[k] - crossings[k - 1]);
  const double period = std::accumulate(periods.begin(), periods.end(), 0.0) / periods.size();
  double var = 0;
  for (double p : periods) var += (p - period) * (p - period);
  if (std::sqrt(var / periods.size()) > 1e-2 * period) return out;
  // A periodic orbit keeps its amplitude: compare the first and the last whole cycles.
  const auto cycle_range = [&](size_t c) {
    const auto seg = v0.slice(0, at_index[c], at_index[c + 1] + 2);
    return seg.max().item<double>() - seg.min().item<double>();
  };
  const double first = cycle_range(0), last = cycle_range(crossings.size() - 2);
  const double scale = 1e-9 * (1 + std::abs(mean));
  if (last <= scale || std::abs(first - last) > 1e-2 * last) return out;
  const auto whole = v.slice(0, at_index.front(), at_index.back() + 2);
  const auto mn = std::get<0>(whole.min(0)).contiguous(), mx = std::get<0>(whole.max(0)).contiguous();
  out.found = true;
  out.period = period;
  for (int64_t d = 0; d < D; ++d) {
    out.min.push_back(mn[d].item<double>());
    out.max.push_back(mx[d].item<double>());
    out.amplitude.push_back((out.max.back() - out.min.back()) / 2);
  }
  return out;
}

}  // namespace detail
}  // namespace brain::analysis
