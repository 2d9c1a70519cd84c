// Integrators against analytic solutions: convergence orders, exactness, adaptive control,
// and the SDE methods' statistics and strong orders.
#include <brain/dyn/integrators.h>

#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

namespace bi = brain::integrators;

// Logistic growth y' = y (1 - y), y(0) = 0.1: y(t) = 1 / (1 + 9 e^{-t}).
bi::State logistic(const bi::State& y, double) { return {y[0] * (1 - y[0])}; }
double logistic_exact(double t) { return 1.0 / (1.0 + 9.0 * std::exp(-t)); }

double error_at_2(bi::Method method, double dt) {
  bi::State y{torch::full({3}, 0.1, torch::kDouble)};
  const int64_t steps = std::llround(2.0 / dt);
  for (int64_t i = 0; i < steps; ++i) y = bi::step(method, logistic, y, i * dt, dt);
  return (y[0] - logistic_exact(2.0)).abs().max().item<double>();
}

double measured_order(bi::Method method) {
  const double e1 = error_at_2(method, 0.1);
  const double e2 = error_at_2(method, 0.05);
  return std::log2(e1 / e2);
}

TEST(Integrators, ReachTheirTheoreticalOrder) {
  EXPECT_NEAR(measured_order(bi::Method::Euler), 1.0, 0.2);
  EXPECT_NEAR(measured_order(bi::Method::Midpoint), 2.0, 0.2);
  EXPECT_NEAR(measured_order(bi::Method::Heun), 2.0, 0.2);
  EXPECT_NEAR(measured_order(bi::Method::RK4), 4.0, 0.2);
  // On an autonomous scalar equation the element-wise slope is the whole Jacobian, which
  // makes exponential Euler the second-order exponential Rosenbrock-Euler method...
  EXPECT_NEAR(measured_order(bi::Method::ExpEuler), 2.0, 0.2);
}

TEST(Integrators, ExpEulerIsFirstOrderUnderTimeDependentForcing) {
  // ...while a time-dependent drive leaves it first order: y' = -2 y + sin(3 t), y(0) = 0,
  // y(t) = 3/13 e^{-2t} + (2 sin 3t - 3 cos 3t) / 13.
  auto f = [](const bi::State& y, double t) { return bi::State{-2 * y[0] + std::sin(3 * t)}; };
  auto err = [&](double dt) {
    bi::State y{torch::zeros({1}, torch::kDouble)};
    const int64_t steps = std::llround(2.0 / dt);
    for (int64_t i = 0; i < steps; ++i) y = bi::exp_euler(f, y, i * dt, dt);
    const double exact = 3.0 / 13 * std::exp(-4.0) + (2 * std::sin(6.0) - 3 * std::cos(6.0)) / 13;
    return std::abs(y[0].item<double>() - exact);
  };
  EXPECT_NEAR(std::log2(err(0.02) / err(0.01)), 1.0, 0.2);
}

TEST(Integrators, ExpEulerIsExactOnLinearDecay) {
  // tau V' = -(V - V_rest) + R I: V(t) = V_inf + (V0 - V_inf) e^{-t/tau}.
  const double tau = 10, v_rest = -65, ri = 20, dt = 1.0;
  auto f = [&](const bi::State& y, double) { return bi::State{(-(y[0] - v_rest) + ri) / tau}; };
  bi::State y{torch::tensor({-70.0, -50.0}, torch::kDouble)};
  const auto v0 = y[0].clone();
  for (int i = 1; i <= 50; ++i) {
    y = bi::exp_euler(f, y, (i - 1) * dt, dt);
    const auto exact = (v_rest + ri) + (v0 - (v_rest + ri)) * std::exp(-i * dt / tau);
    ASSERT_LT((y[0] - exact).abs().max().item<double>(), 1e-11) << "step " << i;
  }
  const auto closed = bi::exp_euler_linear(v0, torch::full({2}, -1 / tau, torch::kDouble),
                                           torch::full({2}, (v_rest + ri) / tau, torch::kDouble), 50 * dt);
  EXPECT_LT((closed - y[0]).abs().max().item<double>(), 1e-11);
}

TEST(Integrators, ExpEulerHandlesStateFreeDerivatives) {
  auto f = [](const bi::State& y, double) { return bi::State{torch::ones_like(y[0])}; };
  const auto y = bi::exp_euler(f, {torch::zeros({2}, torch::kDouble)}, 0, 0.5);
  EXPECT_TRUE(torch::allclose(y[0], torch::full({2}, 0.5, torch::kDouble)));
}

TEST(Integrators, StepsStayDifferentiable) {
  auto tau = torch::tensor(5.0, torch::kDouble).requires_grad_();
  auto f = [&](const bi::State& y, double) { return bi::State{-y[0] / tau}; };
  bi::State y{torch::ones({1}, torch::kDouble)};
  for (int i = 0; i < 10; ++i) y = bi::exp_euler(f, y, i * 0.1, 0.1);
  y[0].sum().backward();
  // y = exp(-1 / tau): dy/dtau = exp(-1/tau) / tau^2.
  EXPECT_NEAR(tau.grad().item<double>(), std::exp(-0.2) / 25.0, 1e-10);
}

TEST(Integrators, BadInputIsRejected) {
  bi::State y{torch::zeros({2})};
  EXPECT_THROW(bi::euler(logistic, y, 0, 0.0), c10::Error);
  EXPECT_THROW(bi::rk4(logistic, y, 0, -1.0), c10::Error);
  auto wrong = [](const bi::State& y, double) { return bi::State{torch::zeros({3})}; };
  EXPECT_THROW(bi::heun(wrong, y, 0, 0.1), c10::Error);
  EXPECT_THROW(bi::parse_method("leapfrog"), c10::Error);
  EXPECT_EQ(bi::parse_method("rk2"), bi::Method::Midpoint);
}

TEST(Integrators, DormandPrinceMeetsItsTolerance) {
  // Harmonic oscillator over five periods: x = cos t, v = -sin t.
  auto f = [](const bi::State& y, double) { return bi::State{y[1], -y[0]}; };
  std::vector<double> t_eval;
  for (int i = 1; i <= 10; ++i) t_eval.push_back(i * M_PI);
  bi::AdaptiveOptions opt;
  opt.rtol = 1e-9;
  opt.atol = 1e-12;
  const auto r = bi::dopri5(f, {torch::ones({1}, torch::kDouble), torch::zeros({1}, torch::kDouble)}, 0.0, t_eval, opt);
  ASSERT_EQ(r.y.size(), t_eval.size());
  for (size_t i = 0; i < t_eval.size(); ++i) {
    EXPECT_NEAR(r.y[i][0].item<double>(), std::cos(t_eval[i]), 1e-7);
    EXPECT_NEAR(r.y[i][1].item<double>(), -std::sin(t_eval[i]), 1e-7);
  }
  EXPECT_GT(r.accepted_steps, 10);
  // A looser tolerance takes fewer steps.
  opt.rtol = 1e-4;
  opt.atol = 1e-6;
  const auto loose = bi::dopri5(f, {torch::ones({1}, torch::kDouble), torch::zeros({1}, torch::kDouble)}, 0.0, t_eval, opt);
  EXPECT_LT(loose.accepted_steps, r.accepted_steps);
  EXPECT_THROW(bi::dopri5(f, {torch::ones({1}), torch::zeros({1})}, 1.0, {0.5}), c10::Error);
}

TEST(Integrators, EulerMaruyamaMatchesTheOuMeanAndVariance) {
  // dX = -theta X dt + sigma dW, X0 = 1: mean e^{-theta t}, var sigma^2/(2 theta)(1 - e^{-2 theta t}).
  const double theta = 1.5, sigma = 0.8, dt = 0.001, T = 1.0;
  const int64_t paths = 20000;
  auto f = [&](const bi::State& y, double) { return bi::State{-theta * y[0]}; };
  auto g = [&](const bi::State& y, double) { return bi::State{torch::full_like(y[0], sigma)}; };
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  for (auto method : {bi::SdeMethod::EulerMaruyama, bi::SdeMethod::Milstein}) {
    bi::State y{torch::ones({paths}, torch::kDouble)};
    for (int i = 0; i < static_cast<int>(T / dt); ++i) y = bi::sde_step(method, f, g, y, i * dt, dt, bi::Noise::Diagonal, gen);
    const double mean = y[0].mean().item<double>();
    const double var = y[0].var().item<double>();
    const double want_mean = std::exp(-theta * T);
    const double want_var = sigma * sigma / (2 * theta) * (1 - std::exp(-2 * theta * T));
    EXPECT_NEAR(mean, want_mean, 4 * std::sqrt(want_var / paths) + 2e-3);
    EXPECT_NEAR(var, want_var, 0.05 * want_var);
  }
}

// Geometric Brownian motion dX = mu X dt + sigma X dW has X_T = X0 exp((mu - sigma^2/2) T + sigma W_T).
double gbm_strong_error(bi::SdeMethod method, int64_t steps, const at::Tensor& fine_dW, double mu, double sigma) {
  const int64_t fine = fine_dW.size(0);
  const double T = 1.0, dt = T / steps;
  auto f = [&](const bi::State& y, double) { return bi::State{mu * y[0]}; };
  auto g = [&](const bi::State& y, double) { return bi::State{sigma * y[0]}; };
  bi::State y{torch::ones({fine_dW.size(1)}, torch::kDouble)};
  const int64_t group = fine / steps;
  for (int64_t i = 0; i < steps; ++i) {
    const bi::State dW{fine_dW.narrow(0, i * group, group).sum(0)};
    y = bi::sde_step(method, f, g, y, i * dt, dt, bi::Noise::Diagonal, std::nullopt, &dW);
  }
  const auto exact = torch::exp((mu - sigma * sigma / 2) * T + sigma * fine_dW.sum(0));
  return (y[0] - exact).abs().mean().item<double>();
}

TEST(Integrators, MilsteinHasStrongOrderOneAndEulerMaruyamaOneHalf) {
  const double mu = 0.5, sigma = 0.8;
  const int64_t fine = 1024, paths = 4000;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto fine_dW = at::normal(0.0, std::sqrt(1.0 / fine), {fine, paths}, gen, torch::kDouble);
  auto order = [&](bi::SdeMethod m) {
    return std::log(gbm_strong_error(m, 16, fine_dW, mu, sigma) / gbm_strong_error(m, 256, fine_dW, mu, sigma)) / std::log(16.0);
  };
  EXPECT_NEAR(order(bi::SdeMethod::Milstein), 1.0, 0.2);
  EXPECT_NEAR(order(bi::SdeMethod::EulerMaruyama), 0.5, 0.2);
}

TEST(Integrators, ScalarNoiseSharesOneIncrementPerBatchRow) {
  auto f = [](const bi::State& y, double) { return bi::State{torch::zeros_like(y[0])}; };
  auto g = [](const bi::State& y, double) { return bi::State{torch::ones_like(y[0])}; };
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto y = bi::sde_step(bi::SdeMethod::EulerMaruyama, f, g, {torch::zeros({4, 5}, torch::kDouble)}, 0, 0.1,
                              bi::Noise::Scalar, gen);
  // Every element of a row moved by the same increment; rows differ.
  EXPECT_TRUE(torch::allclose(y[0], y[0].select(1, 0).unsqueeze(1).expand({4, 5})));
  EXPECT_GT((y[0].select(1, 0) - y[0].select(1, 0)[0]).abs().max().item<double>(), 0);
}

}  // namespace
