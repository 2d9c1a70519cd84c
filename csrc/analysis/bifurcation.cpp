#include <brain/analysis/analysis.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>

#include "csrc/analysis/core.h"

namespace brain::analysis {

namespace {

int64_t count_swept(const std::vector<Param>& params) {
  return std::count_if(params.begin(), params.end(), [](const Param& p) { return p.swept; });
}

// Bifurcation grids are coarser than phase planes: the grid only seeds Newton.
std::vector<Axis> with_bifurcation_resolution(std::vector<Axis> variables, const Options& options) {
  const size_t D = variables.size();
  for (auto& v : variables)
    if (v.resolution == 0) v.resolution = options.resolution > 0 ? options.resolution : D == 1 ? 200 : D == 2 ? 40 : 12;
  return variables;
}

double hopf_value(const std::vector<std::complex<double>>& ev) {
  double best = std::numeric_limits<double>::quiet_NaN();
  for (const auto& e : ev)
    if (std::abs(e.imag()) > 1e-8 && !(e.real() <= best)) best = e.real();
  return best;
}

double det_value(const std::vector<std::complex<double>>& ev) {
  std::complex<double> p = 1;
  for (const auto& e : ev) p *= e;
  return p.real();
}

double sign(double v) { return v >= 0 ? 1.0 : -1.0; }

enum class TaskKind { Fold, DetCrossing, HopfCrossing };

struct Task {
  TaskKind kind;
  std::vector<double> pa, pb;  // swept parameters at the two ends (the point exists at pa)
  std::vector<double> xa, xb;  // the point at the ends (xb unused for folds)
  double sign_a = 0;           // the test function's sign at pa
};

}  // namespace

Bifurcation::Bifurcation(Field f, std::vector<Axis> variables, std::vector<Param> params, Options options)
    : f_(std::move(f)), variables_(std::move(variables)), params_(std::move(params)), options_(options) {
  TORCH_CHECK(f_, "Bifurcation: the derivative function is empty");
  detail::validate("Bifurcation", variables_, params_);
  const auto swept = count_swept(params_);
  TORCH_CHECK(swept == 1 || swept == 2, "Bifurcation: sweep one or two parameters (give them a (lo, hi) range), got ",
              swept);
}

Bifurcation1D::Bifurcation1D(Field f, std::vector<Axis> variables, std::vector<Param> params, Options options)
    : Bifurcation(std::move(f), std::move(variables), std::move(params), options) {
  TORCH_CHECK(count_swept(params_) == 1, "Bifurcation1D: exactly one parameter must be swept (given a range), got ",
              count_swept(params_));
}

Bifurcation2D::Bifurcation2D(Field f, std::vector<Axis> variables, std::vector<Param> params, Options options)
    : Bifurcation(std::move(f), std::move(variables), std::move(params), options) {
  TORCH_CHECK(count_swept(params_) == 2, "Bifurcation2D: exactly two parameters must be swept (given ranges), got ",
              count_swept(params_));
}

BifurcationResult Bifurcation::compute() const {
  const auto o = options_.tensor_options;
  const auto variables = with_bifurcation_resolution(variables_, options_);
  const int64_t D = variables.size(), Q = params_.size();
  std::vector<int64_t> swept;  // indices into params_
  for (int64_t q = 0; q < Q; ++q)
    if (params_[q].swept) swept.push_back(q);
  const int64_t S = swept.size();
  std::vector<std::vector<double>> grids;
  for (auto q : swept) {
    const auto& p = params_[q];
    const int64_t n = p.resolution > 0 ? p.resolution : (S == 1 ? 100 : 30);
    std::vector<double> g(n);
    for (int64_t k = 0; k < n; ++k) g[k] = p.lo + (p.hi - p.lo) * static_cast<double>(k) / static_cast<double>(n - 1);
    grids.push_back(g);
  }
  const int64_t n1 = grids[0].size(), n2 = S == 2 ? grids[1].size() : 1;
  const int64_t G = n1 * n2;
  // Parameter rows: group g = i1 * n2 + i2.
  std::vector<double> rows(G * Q);
  const auto swept_at = [&](int64_t g) {
    std::vector<double> v{grids[0][g / n2]};
    if (S == 2) v.push_back(grids[1][g % n2]);
    return v;
  };
  const auto param_row = [&](const std::vector<double>& sv, double* out) {
    for (int64_t q = 0, s = 0; q < Q; ++q) out[q] = params_[q].swept ? sv[s++] : params_[q].value;
  };
  for (int64_t g = 0; g < G; ++g) param_row(swept_at(g), rows.data() + g * Q);
  const auto P = at::tensor(rows, at::kDouble).view({G, Q}).to(o);

  BifurcationResult result;
  for (auto q : swept) result.param_names.push_back(params_[q].name);
  auto per_group = detail::fixed_points(f_, variables, P, options_, &result.skipped);
  for (int64_t g = 0; g < G; ++g)
    for (auto& p : per_group[g]) p.params = swept_at(g);

  std::vector<double> range(D);
  for (int64_t d = 0; d < D; ++d) range[d] = variables[d].hi - variables[d].lo;
  const auto dist = [&](const std::vector<double>& a, const std::vector<double>& b) {
    double m = 0;
    for (int64_t d = 0; d < D; ++d) m = std::max(m, std::abs(a[d] - b[d]) / range[d]);
    return m;
  };

  // Continue branches between neighbouring grid values; what does not continue, or changes
  // its eigenvalue signs, marks an event to locate.
  std::vector<Task> tasks;
  const auto link = [&](int64_t ga, int64_t gb) {
    const auto& A = per_group[ga];
    const auto& B = per_group[gb];
    std::vector<std::tuple<double, size_t, size_t>> pairs;
    for (size_t i = 0; i < A.size(); ++i)
      for (size_t j = 0; j < B.size(); ++j) {
        const double dd = dist(A[i].x, B[j].x);
        if (dd < options_.match_tolerance) pairs.emplace_back(dd, i, j);
      }
    std::sort(pairs.begin(), pairs.end());
    std::vector<int64_t> match_a(A.size(), -1), match_b(B.size(), -1);
    for (const auto& [dd, i, j] : pairs)
      if (match_a[i] < 0 && match_b[j] < 0) {
        match_a[i] = j;
        match_b[j] = i;
      }
    const auto pa = swept_at(ga), pb = swept_at(gb);
    for (size_t i = 0; i < A.size(); ++i)
      if (match_a[i] < 0) tasks.push_back({TaskKind::Fold, pa, pb, A[i].x, {}, 0});
    for (size_t j = 0; j < B.size(); ++j)
      if (match_b[j] < 0) tasks.push_back({TaskKind::Fold, pb, pa, B[j].x, {}, 0});
    for (size_t i = 0; i < A.size(); ++i) {
      if (match_a[i] < 0) continue;
      const auto& a = A[i];
      const auto& b = B[match_a[i]];
      // Signs count 0 as positive, so a crossing exactly on a grid value is found once.
      const double da = det_value(a.eigenvalues), db = det_value(b.eigenvalues);
      if ((da >= 0) != (db >= 0)) tasks.push_back({TaskKind::DetCrossing, pa, pb, a.x, b.x, sign(da)});
      const double ha = hopf_value(a.eigenvalues), hb = hopf_value(b.eigenvalues);
      if (std::isfinite(ha) && std::isfinite(hb) && (ha >= 0) != (hb >= 0))
        tasks.push_back({TaskKind::HopfCrossing, pa, pb, a.x, b.x, sign(ha)});
    }
  };
  for (int64_t i1 = 0; i1 < n1; ++i1)
    for (int64_t i2 = 0; i2 < n2; ++i2) {
      const int64_t g = i1 * n2 + i2;
      if (i1 + 1 < n1) link(g, g + n2);
      if (i2 + 1 < n2) link(g, g + 1);
    }

  // Locate every event by bisection along its segment of parameter space, all at once.
  const int64_t T = tasks.size();
  if (T > 0) {
    std::vector<double> lo(T, 0.0), hi(T, 1.0);
    std::vector<std::vector<double>> x_lo(T), x_hi(T);
    std::vector<bool> alive(T, true);
    for (int64_t t = 0; t < T; ++t) {
      x_lo[t] = tasks[t].xa;
      x_hi[t] = tasks[t].kind == TaskKind::Fold ? tasks[t].xa : tasks[t].xb;
    }
    const auto swept_on = [&](int64_t t, double s) {
      std::vector<double> v(S);
      for (int64_t k = 0; k < S; ++k) v[k] = tasks[t].pa[k] + s * (tasks[t].pb[k] - tasks[t].pa[k]);
      return v;
    };
    for (int64_t step = 0; step < options_.bisection_steps; ++step) {
      std::vector<double> x0(T * D), prow(T * Q);
      for (int64_t t = 0; t < T; ++t) {
        const double mid = (lo[t] + hi[t]) / 2;
        for (int64_t d = 0; d < D; ++d)
          x0[t * D + d] = tasks[t].kind == TaskKind::Fold ? x_lo[t][d] : (x_lo[t][d] + x_hi[t][d]) / 2;
        param_row(swept_on(t, mid), prow.data() + t * Q);
      }
      const auto X0 = at::tensor(x0, at::kDouble).view({T, D}).to(o);
      const auto Pm = at::tensor(prow, at::kDouble).view({T, Q}).to(o);
      const auto r = detail::newton(f_, X0, Pm, options_);
      const auto xm = r.x.cpu().contiguous();
      const auto conv = r.converged.cpu().contiguous();
      const auto ev = at::linalg_eigvals(jacobian(f_, r.x, Pm).cpu()).to(at::kComplexDouble).contiguous();
      for (int64_t t = 0; t < T; ++t) {
        if (!alive[t]) continue;
        const double mid = (lo[t] + hi[t]) / 2;
        std::vector<double> x(xm.data_ptr<double>() + t * D, xm.data_ptr<double>() + (t + 1) * D);
        bool inside = true;
        for (int64_t d = 0; d < D; ++d) inside = inside && x[d] >= variables[d].lo && x[d] <= variables[d].hi;
        const bool ok = conv.data_ptr<bool>()[t] && inside;
        if (tasks[t].kind == TaskKind::Fold) {
          if (ok && dist(x, x_lo[t]) < options_.match_tolerance) {
            lo[t] = mid;
            x_lo[t] = x;
          } else {
            hi[t] = mid;
          }
          continue;
        }
        if (!ok) {  // the branch got lost between the ends: keep the bracket found so far
          alive[t] = false;
          continue;
        }
        std::vector<std::complex<double>> e;
        for (int64_t d = 0; d < D; ++d) {
          const auto c = ev[t][d].item<c10::complex<double>>();
          e.emplace_back(c.real(), c.imag());
        }
        const double v = tasks[t].kind == TaskKind::DetCrossing ? det_value(e) : hopf_value(e);
        if (!std::isfinite(v)) {
          alive[t] = false;
          continue;
        }
        if (sign(v) == tasks[t].sign_a) {
          lo[t] = mid;
          x_lo[t] = x;
        } else {
          hi[t] = mid;
          x_hi[t] = x;
        }
      }
    }
    // Keep located events; a fold must be a real one (a near-singular Jacobian away from the
    // box), not a branch leaving the variables' ranges.
    std::vector<double> xs(T * D), ps(T * Q);
    for (int64_t t = 0; t < T; ++t) {
      std::copy(x_lo[t].begin(), x_lo[t].end(), xs.begin() + t * D);
      param_row(swept_on(t, tasks[t].kind == TaskKind::Fold ? lo[t] : (lo[t] + hi[t]) / 2), ps.data() + t * Q);
    }
    const auto Jt = jacobian(f_, at::tensor(xs, at::kDouble).view({T, D}).to(o),
                             at::tensor(ps, at::kDouble).view({T, Q}).to(o)).cpu();
    const auto ev = at::linalg_eigvals(Jt).to(at::kComplexDouble).abs().contiguous();
    for (int64_t t = 0; t < T; ++t) {
      BifurcationEvent e;
      e.kind = tasks[t].kind == TaskKind::HopfCrossing ? "hopf" : "saddle-node";
      e.params = swept_on(t, tasks[t].kind == TaskKind::Fold ? lo[t] : (lo[t] + hi[t]) / 2);
      e.x = x_lo[t];
      if (tasks[t].kind == TaskKind::Fold) {
        bool interior = true;
        for (int64_t d = 0; d < D; ++d) {
          const double margin = 1e-3 * range[d];
          interior = interior && e.x[d] > variables[d].lo + margin && e.x[d] < variables[d].hi - margin;
        }
        const double scale = std::max(1.0, Jt[t].abs().max().item<double>());
        const double smallest = ev[t].min().item<double>();
        if (!interior || smallest > 1e-3 * scale) continue;
      }
      bool duplicate = false;
      for (const auto& prev : result.events) {
        if (prev.kind != e.kind) continue;
        bool same = dist(prev.x, e.x) < 1e-3;
        for (int64_t k = 0; k < S; ++k) {
          const auto& p = params_[swept[k]];
          same = same && std::abs(prev.params[k] - e.params[k]) < 1e-6 * (p.hi - p.lo);
        }
        if (same) {
          duplicate = true;
          break;
        }
      }
      if (!duplicate) result.events.push_back(std::move(e));
    }
    std::sort(result.events.begin(), result.events.end(),
              [](const BifurcationEvent& a, const BifurcationEvent& b) { return a.params < b.params; });
  }
  for (auto& group : per_group)
    for (auto& p : group) result.points.push_back(std::move(p));
  return result;
}

std::vector<LimitCycle> Bifurcation::limit_cycles(const BifurcationResult& result, double duration, double dt,
                                                  std::optional<double> transient) const {
  const double skip = transient.value_or(duration / 2);
  TORCH_CHECK(skip >= 0 && skip < duration, "limit_cycles: transient must be in [0, duration), got ", skip);
  const int64_t D = variables_.size(), Q = params_.size();
  std::vector<double> x0, prow;
  std::vector<std::vector<double>> at_params;
  for (const auto& p : result.points) {
    // Unstable nodes and foci (not saddles): in the plane a limit cycle surrounds them.
    if (p.stability != "unstable focus" && p.stability != "unstable node") continue;
    if (!at_params.empty() && at_params.back() == p.params) continue;
    at_params.push_back(p.params);
    for (int64_t d = 0; d < D; ++d) x0.push_back(p.x[d] + 1e-2 * (variables_[d].hi - variables_[d].lo));
    for (int64_t q = 0, s = 0; q < Q; ++q) prow.push_back(params_[q].swept ? p.params[s++] : params_[q].value);
  }
  std::vector<LimitCycle> out;
  const int64_t B = at_params.size();
  if (B == 0) return out;
  const auto o = options_.tensor_options;
  const auto traj = detail::integrate(f_, at::tensor(x0, at::kDouble).view({B, D}).to(o),
                                      at::tensor(prow, at::kDouble).view({B, Q}).to(o), duration, dt, "rk4");
  const auto keep = (traj.t >= skip).nonzero().squeeze(1);
  const auto t = traj.t.index_select(0, keep);
  const auto v = traj.values.index_select(0, keep);
  for (int64_t b = 0; b < B; ++b) {
    auto c = detail::detect_cycle(t, v.select(1, b));
    c.params = at_params[b];
    out.push_back(std::move(c));
  }
  return out;
}

// ---- Fast-slow ----------------------------------------------------------------------------

FastSlow::FastSlow(Field f, std::vector<Axis> fast_variables, std::vector<Axis> slow_variables,
                   std::vector<Param> params, Options options)
    : f_(std::move(f)), fast_(std::move(fast_variables)), slow_(std::move(slow_variables)),
      params_(std::move(params)), options_(options) {
  TORCH_CHECK(f_, "FastSlow: the derivative function is empty");
  auto all = fast_;
  all.insert(all.end(), slow_.begin(), slow_.end());
  detail::validate("FastSlow", all, params_);
  TORCH_CHECK(!slow_.empty(), "FastSlow: at least one slow variable is needed");
  for (const auto& p : params_)
    TORCH_CHECK(!p.swept, "FastSlow: parameter '", p.name, "' is given a range; the slow variables are what is swept");
}

FastSlow1D::FastSlow1D(Field f, std::vector<Axis> fast, std::vector<Axis> slow, std::vector<Param> params, Options o)
    : FastSlow(std::move(f), std::move(fast), std::move(slow), std::move(params), o) {
  TORCH_CHECK(slow_.size() == 1, "FastSlow1D: expected one slow variable, got ", slow_.size(), " (",
              detail::join_names(slow_), ")");
}

FastSlow2D::FastSlow2D(Field f, std::vector<Axis> fast, std::vector<Axis> slow, std::vector<Param> params, Options o)
    : FastSlow(std::move(f), std::move(fast), std::move(slow), std::move(params), o) {
  TORCH_CHECK(slow_.size() == 2, "FastSlow2D: expected two slow variables, got ", slow_.size(), " (",
              detail::join_names(slow_), ")");
}

BifurcationResult FastSlow::compute() const {
  const size_t n_fast = fast_.size(), n_all = fast_.size() + slow_.size();
  const auto full = f_;
  const Field fast_field = [full, n_fast, n_all](const std::vector<at::Tensor>& args) {
    auto out = full(args);
    TORCH_CHECK(out.size() == n_all, "FastSlow: the derivative function returned ", out.size(), " values for ", n_all,
                " variables (fast then slow)");
    out.resize(n_fast);
    return out;
  };
  std::vector<Param> params;
  for (const auto& s : slow_) params.push_back(Param::range(s.name, s.lo, s.hi, s.resolution));
  params.insert(params.end(), params_.begin(), params_.end());
  return Bifurcation(fast_field, fast_, params, options_).compute();
}

Trajectory FastSlow::trajectory(const at::Tensor& initial, double duration, double dt, const std::string& method) const {
  const int64_t D = fast_.size() + slow_.size();
  TORCH_CHECK(initial.dim() == 2 && initial.size(1) == D, "FastSlow.trajectory: initial points must be [B, ", D,
              "] (fast then slow variables), got ", initial.sizes());
  const auto x0 = initial.to(options_.tensor_options);
  return detail::integrate(f_, x0, detail::fixed_param_columns(params_, x0.size(0), options_.tensor_options), duration,
                           dt, method);
}

}  // namespace brain::analysis
