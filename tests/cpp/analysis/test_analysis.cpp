// Analysis tools against analytic cases: the QIF normal form's saddle-node, FitzHugh-Nagumo's
// fixed point and Hopf points (from the trace condition, solved here by hand), Stuart-Landau's
// Hopf point and limit cycle, and the slow point of a linear RNN.
#include <cmath>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <brain/analysis/analysis.h>
#include <brain/analysis/models.h>

namespace ba = brain::analysis;
using Args = std::vector<at::Tensor>;

namespace {

// Newton on a scalar function given with its derivative.
template <class F, class DF>
double solve(F f, DF df, double x) {
  for (int i = 0; i < 100; ++i) x -= f(x) / df(x);
  return x;
}

const ba::Field qif = [](const Args& a) { return Args{a[0] * a[0] + a[1]}; };

}  // namespace

TEST(Analysis, ClassifiesEveryTwoDimensionalCase) {
  const auto J = [](double a, double b, double c, double d) {
    return at::tensor({a, b, c, d}, at::kDouble).view({2, 2});
  };
  EXPECT_EQ(ba::classify(J(-1, 0, 0, -2)), "stable node");
  EXPECT_EQ(ba::classify(J(1, 0, 0, 2)), "unstable node");
  EXPECT_EQ(ba::classify(J(-1, -2, 2, -1)), "stable focus");
  EXPECT_EQ(ba::classify(J(1, -2, 2, 1)), "unstable focus");
  EXPECT_EQ(ba::classify(J(1, 0, 0, -1)), "saddle");
  EXPECT_EQ(ba::classify(J(0, -1, 1, 0)), "centre");
  EXPECT_EQ(ba::classify(J(-2, 0, 0, -2)), "stable star");
  EXPECT_EQ(ba::classify(J(-2, 1, 0, -2)), "stable degenerate");
  EXPECT_EQ(ba::classify(J(2, 0, 0, 2)), "unstable star");
  EXPECT_EQ(ba::classify(J(0, 1, 0, -1)), "saddle-node");
  EXPECT_EQ(ba::classify(at::tensor({-3.0}).view({1, 1})), "stable");
  EXPECT_EQ(ba::classify(at::tensor({3.0}).view({1, 1})), "unstable");
  EXPECT_EQ(ba::classify(at::tensor({0.0}).view({1, 1})), "saddle-node");
  EXPECT_EQ(ba::classify(at::diag(at::tensor({-1.0, -2.0, -3.0}))), "stable node");
  EXPECT_EQ(ba::classify(at::diag(at::tensor({1.0, -2.0, -3.0}))), "saddle");
  const auto focus3 = at::tensor({-1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 0.0, 0.0, 1.0}).view({3, 3});
  EXPECT_EQ(ba::classify(focus3), "saddle-focus");
  const auto centre3 = at::tensor({0.0, -2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, -1.0}).view({3, 3});
  EXPECT_EQ(ba::classify(centre3), "centre");
}

TEST(Analysis, QifNormalFormFixedPointsAndSaddleNode) {
  ba::PhasePlane1D pp(qif, {{"x", -3, 3}}, {ba::Param::fixed("I", -0.49)});
  const auto fps = pp.fixed_points();
  ASSERT_EQ(fps.size(), 2u);
  EXPECT_NEAR(fps[0].x[0], -0.7, 1e-10);
  EXPECT_EQ(fps[0].stability, "stable");
  EXPECT_NEAR(fps[1].x[0], 0.7, 1e-10);
  EXPECT_EQ(fps[1].stability, "unstable");
  EXPECT_NEAR(fps[1].eigenvalues[0].real(), 1.4, 1e-8);

  for (int64_t resolution : {101, 100}) {  // I = 0 on the grid, then between two grid values
    ba::Bifurcation1D bif(qif, {{"x", -3, 3}}, {ba::Param::range("I", -1, 1, resolution)});
    const auto r = bif.compute();
    ASSERT_EQ(r.events.size(), 1u) << "resolution " << resolution;
    EXPECT_EQ(r.events[0].kind, "saddle-node");
    EXPECT_NEAR(r.events[0].params[0], 0.0, 1e-8);
    EXPECT_NEAR(r.events[0].x[0], 0.0, 1e-4);
    for (const auto& p : r.points) {
      const double I = p.params[0];
      ASSERT_LE(I, 1e-12);
      if (I < -1e-6) {
        EXPECT_NEAR(std::abs(p.x[0]), std::sqrt(-I), 1e-9);
        EXPECT_EQ(p.stability, p.x[0] < 0 ? "stable" : "unstable");
      }
    }
  }
}

TEST(Analysis, FitzHughNagumoFixedPointAndHopfPoints) {
  const auto& m = ba::builtin_model("fitzhugh_nagumo");
  const double a = 0.7, b = 0.8, tau = 12.5;
  const std::vector<ba::Param> fixed{ba::Param::fixed("a", a), ba::Param::fixed("b", b), ba::Param::fixed("tau", tau)};
  // At I = 0: v - v^3/3 - (v + a)/b = 0.
  const double v0 = solve([&](double v) { return v - v * v * v / 3 - (v + a) / b; },
                          [&](double v) { return 1 - v * v - 1 / b; }, -1.0);
  auto params = fixed;
  params.push_back(ba::Param::fixed("I", 0.0));
  ba::PhasePlane2D pp(m.field, m.variables, params);
  const auto fps = pp.fixed_points();
  ASSERT_EQ(fps.size(), 1u);
  EXPECT_NEAR(fps[0].x[0], v0, 1e-9);
  EXPECT_NEAR(fps[0].x[1], (v0 + a) / b, 1e-9);
  const double tr = 1 - v0 * v0 - b / tau, det = (1 - v0 * v0) * (-b / tau) + 1 / tau;
  EXPECT_NEAR(fps[0].jacobian.trace().item<double>(), tr, 1e-9);
  EXPECT_EQ(fps[0].stability, tr * tr - 4 * det < 0 ? "stable focus" : "stable node");

  // Hopf: trace 1 - v^2 - b/tau = 0 at v = +-sqrt(1 - b/tau), I = (v + a)/b - v + v^3/3.
  std::vector<double> hopf_I;
  for (double s : {-1.0, 1.0}) {
    const double v = s * std::sqrt(1 - b / tau);
    hopf_I.push_back((v + a) / b - v + v * v * v / 3);
  }
  params = fixed;
  params.push_back(ba::Param::range("I", 0, 2, 200));
  ba::Bifurcation1D bif(m.field, m.variables, params);
  const auto r = bif.compute();
  ASSERT_EQ(r.events.size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(r.events[k].kind, "hopf");
    EXPECT_NEAR(r.events[k].params[0], hopf_I[k], 1e-8);
  }
  EXPECT_EQ(r.points.size(), 200u);  // one fixed point for every I
  for (const auto& p : r.points) {
    const bool between = p.params[0] > hopf_I[0] && p.params[0] < hopf_I[1];
    EXPECT_EQ(ba::is_stable(p.stability), !between) << "I = " << p.params[0] << ": " << p.stability;
  }
  // Past the first Hopf point the fixed point is unstable and a limit cycle surrounds it.
  const auto cycles = bif.limit_cycles(r, 600, 0.05);
  ASSERT_FALSE(cycles.empty());
  int64_t checked = 0;
  for (const auto& c : cycles) {
    // Right at a Hopf point the instability grows too slowly to settle within the simulation.
    if (c.params[0] < hopf_I[0] + 0.1 || c.params[0] > hopf_I[1] - 0.1) continue;
    ++checked;
    ASSERT_TRUE(c.found) << "I = " << c.params[0];
    EXPECT_GT(c.amplitude[0], 1.0);
    EXPECT_GT(c.period, 10.0);
  }
  EXPECT_GT(checked, 60);
}

TEST(Analysis, StuartLandauHopfAndLimitCycleRadius) {
  const auto& m = ba::builtin_model("stuart_landau");
  ba::Bifurcation1D bif(m.field, m.variables, {ba::Param::range("a", -1, 1, 51), ba::Param::fixed("w", 1.0)});
  const auto r = bif.compute();
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].kind, "hopf");
  EXPECT_NEAR(r.events[0].params[0], 0.0, 1e-9);
  for (double mu : {0.25, 0.64}) {
    ba::PhasePlane2D pp(m.field, m.variables, {ba::Param::fixed("a", mu), ba::Param::fixed("w", 1.0)});
    const auto fps = pp.fixed_points();
    ASSERT_EQ(fps.size(), 1u);
    EXPECT_EQ(fps[0].stability, "unstable focus");
    const auto cycles = pp.limit_cycles(at::tensor({0.1, 0.0}, at::kDouble).view({1, 2}), 200, 0.01);
    ASSERT_TRUE(cycles[0].found);
    EXPECT_NEAR(cycles[0].amplitude[0], std::sqrt(mu), 1e-4);
    EXPECT_NEAR(cycles[0].period, 2 * M_PI, 1e-3);
  }
  ba::PhasePlane2D damped(m.field, m.variables, {ba::Param::fixed("a", -0.2), ba::Param::fixed("w", 1.0)});
  EXPECT_FALSE(damped.limit_cycles(at::tensor({0.5, 0.0}, at::kDouble).view({1, 2}), 100, 0.01)[0].found);
}

TEST(Analysis, NullclinesLieOnTheirCurves) {
  const auto& m = ba::builtin_model("fitzhugh_nagumo");
  ba::PhasePlane2D pp(m.field, m.variables,
                      {ba::Param::fixed("a", 0.7), ba::Param::fixed("b", 0.8), ba::Param::fixed("tau", 12.5),
                       ba::Param::fixed("I", 0.5)});
  const auto nc = pp.nullclines();
  ASSERT_EQ(nc.size(), 2u);
  ASSERT_GT(nc[0].size(0), 100);
  const auto v = nc[0].select(1, 0), w = nc[0].select(1, 1);
  EXPECT_LT((w - (v - v.pow(3) / 3 + 0.5)).abs().max().item<double>(), 1e-9);
  const auto v2 = nc[1].select(1, 0), w2 = nc[1].select(1, 1);
  EXPECT_LT((w2 - (v2 + 0.7) / 0.8).abs().max().item<double>(), 1e-9);
  const auto grid = pp.vector_field();
  EXPECT_EQ(grid.derivatives[0].sizes(), (at::IntArrayRef{200, 200}));
}

TEST(Analysis, BifurcationInTwoParametersFindsTheFoldCurve) {
  const ba::Field f = [](const Args& a) { return Args{a[0] * a[0] + a[1] + a[2]}; };
  ba::Bifurcation2D bif(f, {{"x", -3, 3}}, {ba::Param::range("I", -1, 1, 21), ba::Param::range("J", -0.5, 0.5, 11)});
  const auto r = bif.compute();
  ASSERT_GE(r.events.size(), 10u);
  for (const auto& e : r.events) {
    EXPECT_EQ(e.kind, "saddle-node");
    EXPECT_NEAR(e.params[0] + e.params[1], 0.0, 1e-8);
  }
}

TEST(Analysis, FastSlowTreatsSlowVariablesAsParameters) {
  // Fast x with dx/dt = x^2 + u, slow u with du/dt = -0.01: the fast subsystem folds at u = 0.
  const ba::Field f = [](const Args& a) { return Args{a[0] * a[0] + a[1], at::full_like(a[1], -0.01)}; };
  ba::FastSlow1D fs(f, {{"x", -3, 3}}, {{"u", -1, 1, 40}});
  const auto r = fs.compute();
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_NEAR(r.events[0].params[0], 0.0, 1e-8);
  EXPECT_EQ(r.param_names, std::vector<std::string>{"u"});
  const auto traj = fs.trajectory(at::tensor({-2.0, -0.5}, at::kDouble).view({1, 2}), 10, 0.01);
  EXPECT_NEAR(traj.values[-1][0][1].item<double>(), -0.6, 1e-9);
}

TEST(Analysis, TrajectoryFollowsTheAnalyticSolution) {
  const ba::Field f = [](const Args& a) { return Args{-a[0] * a[1]}; };
  ba::PhasePlane1D pp(f, {{"x", -1, 1}}, {ba::Param::fixed("k", 0.5)});
  const auto traj = pp.trajectory(at::tensor({1.0, -0.5}, at::kDouble).view({2, 1}), 4, 0.01);
  const auto expected = at::exp(-0.5 * traj.t).unsqueeze(1) * at::tensor({1.0, -0.5}, at::kDouble);
  EXPECT_LT((traj.values.select(2, 0) - expected).abs().max().item<double>(), 1e-9);
}

TEST(Analysis, SkipsAndCountsNonFiniteGridPoints) {
  const ba::Field f = [](const Args& a) { return Args{at::sqrt(a[0]) - 0.5}; };
  ba::PhasePlane1D pp(f, {{"x", -1, 1, 200}});
  EXPECT_EQ(pp.skipped_points(), 100);
  const auto fps = pp.fixed_points();
  ASSERT_EQ(fps.size(), 1u);
  EXPECT_NEAR(fps[0].x[0], 0.25, 1e-10);
}

TEST(Analysis, RejectsBadInput) {
  EXPECT_THROW(ba::PhasePlane1D(qif, {{"x", 1, -1}}, {ba::Param::fixed("I", 0)}), c10::Error);
  EXPECT_THROW(ba::PhasePlane1D(qif, {{"x", -1, 1}, {"y", -1, 1}}, {}), c10::Error);
  EXPECT_THROW(ba::PhasePlane1D(qif, {{"x", -1, 1}}, {ba::Param::fixed("x", 0)}), c10::Error);
  EXPECT_THROW(ba::Bifurcation1D(qif, {{"x", -1, 1}}, {ba::Param::fixed("I", 0)}), c10::Error);
  const ba::Field two = [](const Args& a) { return Args{a[0], a[0]}; };
  try {
    ba::PhasePlane1D(two, {{"x", -1, 1}}).fixed_points();
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("returned 2 values for 1 variables"), std::string::npos) << e.what();
  }
  const ba::Field wrong_shape = [](const Args& a) { return Args{at::zeros({3, 3}, a[0].options())}; };
  EXPECT_THROW(ba::PhasePlane1D(wrong_shape, {{"x", -1, 1}}).fixed_points(), c10::Error);
  EXPECT_THROW(ba::builtin_model("no_such_model"), c10::Error);
  EXPECT_THROW(ba::PhasePlane1D(qif, {{"x", -1, 1}}, {ba::Param::fixed("I", 0)})
                   .trajectory(at::zeros({1, 1}, at::kDouble), -1, 0.1),
               c10::Error);
}

TEST(Analysis, SlowPointOfALinearRnnAndItsEigenvectors) {
  at::manual_seed(0);
  const int64_t D = 6;
  const auto A = 0.3 * at::randn({D, D}, at::kDouble);
  const auto b = at::randn({D}, at::kDouble);
  const auto expected = at::linalg_solve(at::eye(D, at::kDouble) - A, b);
  for (const std::string optimizer : {"adam", "lbfgs", "sgd"}) {
    ba::SlowPointOptions o;
    o.optimizer = optimizer;
    o.lr = 0.05;
    o.tolerance = 1e-14;
    ba::SlowPointFinder finder([&](const at::Tensor& x) { return x.matmul(A.t()) + b; }, o);
    const auto r = finder.find(at::randn({32, D}, at::kDouble) * 2);
    ASSERT_EQ(r.points.size(0), 1) << optimizer;
    EXPECT_LT((r.points[0] - expected).abs().max().item<double>(), 1e-6) << optimizer;
    EXPECT_LT((r.jacobians[0] - A).abs().max().item<double>(), 1e-12);
    const auto Jc = r.jacobians[0].to(at::kComplexDouble);
    const auto R = r.right_vectors[0], L = r.left_vectors[0], lam = r.eigenvalues[0];
    EXPECT_LT((Jc.matmul(R) - R * lam).abs().max().item<double>(), 1e-10);
    EXPECT_LT((L.conj().t().matmul(Jc) - lam.unsqueeze(1) * L.conj().t()).abs().max().item<double>(), 1e-10);
    EXPECT_LT((L.conj().t().matmul(R) - at::eye(D, at::kComplexDouble)).abs().max().item<double>(), 1e-10);
    const auto re = at::real(lam);
    EXPECT_TRUE((re.slice(0, 0, D - 1) >= re.slice(0, 1, D)).all().item<bool>());
  }
}

TEST(Analysis, HodgkinHuxleyRestingStateAndItsFastSubsystem) {
  // At I = 0 the full model rests near -65 mV, stable; with h, n at their resting values the
  // fast (V, m) subsystem has the same resting point among its fixed points.
  const auto& hh = ba::builtin_model("hodgkin_huxley");
  std::vector<ba::Param> params;
  for (const auto& [name, value] : hh.params) params.push_back(ba::Param::fixed(name, value));
  ba::Options o;
  o.resolution = 12;
  ba::PhasePlane full(hh.field, hh.variables, params, o);
  const auto fps = full.fixed_points();
  ASSERT_EQ(fps.size(), 1u);
  EXPECT_NEAR(fps[0].x[0], -65.0, 0.1);
  EXPECT_EQ(fps[0].stability, "stable focus");
  const auto& fast = ba::builtin_model("hh_fast");
  std::vector<ba::Param> fast_params{ba::Param::fixed("h", fps[0].x[2]), ba::Param::fixed("n", fps[0].x[3])};
  for (const auto& [name, value] : hh.params) fast_params.push_back(ba::Param::fixed(name, value));
  const auto fast_fps = ba::PhasePlane2D(fast.field, fast.variables, fast_params).fixed_points();
  ASSERT_EQ(fast_fps.size(), 3u);  // rest, threshold saddle, excited state
  EXPECT_NEAR(fast_fps[0].x[0], fps[0].x[0], 1e-8);
  EXPECT_NEAR(fast_fps[0].x[1], fps[0].x[1], 1e-8);
  EXPECT_EQ(fast_fps[1].stability, "saddle");
}

TEST(Analysis, SlowPointFinderRejectsBadOptionsAndCandidates) {
  const auto identity = [](const at::Tensor& x) { return x; };
  ba::SlowPointOptions o;
  o.optimizer = "newton";
  EXPECT_THROW(ba::SlowPointFinder(identity, o), c10::Error);
  o = {};
  o.lr = 0;
  EXPECT_THROW(ba::SlowPointFinder(identity, o), c10::Error);
  ba::SlowPointFinder finder(identity);
  EXPECT_THROW(finder.find(at::zeros({0, 3}, at::kDouble)), c10::Error);
  EXPECT_THROW(finder.find(at::zeros({4}, at::kDouble)), c10::Error);
  EXPECT_THROW(finder.find(at::full({2, 2}, NAN, at::kDouble)), c10::Error);
  ba::SlowPointFinder wrong_shape([](const at::Tensor& x) { return x.sum(1); });
  EXPECT_THROW(wrong_shape.find(at::zeros({2, 2}, at::kDouble)), c10::Error);
}
