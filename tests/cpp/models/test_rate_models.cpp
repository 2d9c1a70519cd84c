// Rate models against their analytic fixed points and limit cycles.
#include <brain/brain.h>

#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using brain::Context;

// Steps `model` for duration_ms with constant inputs (per variable), returning each
// variable's trajectory [steps].
std::vector<at::Tensor> simulate(brain::RateModel& model, double dt, double duration_ms, std::vector<double> inputs = {}) {
  torch::NoGradGuard no_grad;
  model.reset_state();
  Context ctx;
  ctx.dt = dt;
  const auto& vars = model.variables();
  std::vector<std::vector<at::Tensor>> traj(vars.size());
  const int64_t steps = std::llround(duration_ms / dt);
  for (ctx.step = 0; ctx.step < steps; ++ctx.step) {
    ctx.t = ctx.step * dt;
    for (size_t i = 0; i < inputs.size(); ++i) {
      model.assign_state("input_" + vars[i], torch::full({1}, inputs[i], torch::kDouble));
    }
    model.step(ctx);
    for (size_t i = 0; i < vars.size(); ++i) traj[i].push_back(model.state(vars[i])[0]);
  }
  std::vector<at::Tensor> out;
  for (auto& t : traj) out.push_back(torch::stack(t));
  return out;
}

TEST(StuartLandau, SettlesOnTheLimitCycleOfRadiusSqrtAAndPeriodTwoPiOverW) {
  brain::StuartLandau osc(1);
  const double dt = 0.05;
  const auto tr = simulate(osc, dt, 400.0);
  const auto r = (tr[0].square() + tr[1].square()).sqrt();
  EXPECT_NEAR(r[-1].item<double>(), 0.5, 1e-6);
  // Upward zero crossings of x over the last 200 ms give the period.
  const auto x = tr[0].narrow(0, 4000, 4000);
  std::vector<double> crossings;
  for (int64_t k = 1; k < x.size(0); ++k) {
    const double a = x[k - 1].item<double>(), b = x[k].item<double>();
    if (a < 0 && b >= 0) crossings.push_back((k - 1 + a / (a - b)) * dt);
  }
  ASSERT_GE(crossings.size(), 3u);
  EXPECT_NEAR(crossings[2] - crossings[1], 2 * M_PI / 0.2, 1e-3);
}

TEST(FHN, RestsAtTheAnalyticFixedPointAndOscillatesUnderDrive) {
  // Fixed point for I = 0: w = (v + a) / b and v - v^3/3 - w = 0 (Newton, here).
  double v = -1.2;
  for (int i = 0; i < 50; ++i) {
    const double f = v - v * v * v / 3 - (v + 0.7) / 0.8;
    const double df = 1 - v * v - 1 / 0.8;
    v -= f / df;
  }
  brain::FHN rest(1);
  const auto tr = simulate(rest, 0.1, 1000.0);
  EXPECT_NEAR(tr[0][-1].item<double>(), v, 1e-6);
  EXPECT_NEAR(tr[1][-1].item<double>(), (v + 0.7) / 0.8, 1e-6);
  brain::FHN driven(1);
  const auto osc = simulate(driven, 0.1, 1000.0, {0.5, 0.0});
  const auto late = osc[0].narrow(0, 5000, 5000);
  EXPECT_GT((late.max() - late.min()).item<double>(), 3.0);  // relaxation oscillation
}

TEST(WilsonCowan, OriginIsAFixedPointAndDrivenStatesAreStationary) {
  brain::WilsonCowan wc(1);
  const auto quiet = simulate(wc, 0.05, 50.0);
  EXPECT_EQ(quiet[0][-1].item<double>(), 0.0);
  const auto driven = simulate(wc, 0.05, 200.0, {0.5, 0.0});
  // Converged: the vector field vanishes at the final state (with the same input).
  wc.assign_state("input_e", torch::full({1}, 0.5, torch::kDouble));
  const auto d = wc.derivative({wc.state("e"), wc.state("i")}, 0.0);
  EXPECT_LT(d[0].abs().item<double>() + d[1].abs().item<double>(), 1e-8);
  EXPECT_GT(driven[0][-1].item<double>(), 0.0);
}

TEST(QIFMeanField, ConvergesToAStationaryPositiveRate) {
  brain::QIFMeanField mf(1);
  simulate(mf, 0.01, 60.0);
  const auto d = mf.derivative({mf.state("r"), mf.state("v")}, 0.0);
  EXPECT_LT(d[0].abs().item<double>() + d[1].abs().item<double>(), 1e-8);
  const double r = mf.state("r").item<double>(), v = mf.state("v").item<double>();
  EXPECT_GT(r, 0.0);
  // At a fixed point dr/dt = 0 gives v = -delta / (2 pi tau^2 r).
  EXPECT_NEAR(v, -1.0 / (2 * M_PI * r), 1e-6);
}

TEST(ThresholdLinear, ReachesTheLinearSolution) {
  // e = 0.5 e - 0.5 i + 1, i = 0.5 e - 0.5 i + 0.5  =>  e = 1.25, i = 0.75.
  brain::ThresholdLinear tl(1);
  const auto tr = simulate(tl, 0.1, 1000.0, {1.0, 0.5});
  EXPECT_NEAR(tr[0][-1].item<double>(), 1.25, 1e-6);
  EXPECT_NEAR(tr[1][-1].item<double>(), 0.75, 1e-6);
}

}  // namespace
