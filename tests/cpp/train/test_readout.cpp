// Readout trainers (ridge, RLS/FORCE, LMS), the ESN reservoir and the Lorenz reference task.
#include <brain/models/reservoir.h>
#include <brain/train/datasets.h>
#include <brain/train/readout.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using brain::train::ridge;

struct Linear {
  torch::Tensor X, Y, W, b;
};

Linear linear_problem(int64_t n, int64_t f, int64_t o, double noise, uint64_t seed) {
  torch::manual_seed(seed);
  Linear p;
  p.X = torch::randn({n, f}, torch::kDouble) * 2 + 1;
  p.W = torch::randn({f, o}, torch::kDouble);
  p.b = torch::randn({o}, torch::kDouble);
  p.Y = p.X.matmul(p.W) + p.b + noise * torch::randn({n, o}, torch::kDouble);
  return p;
}

TEST(Ridge, SatisfiesTheRegularisedNormalEquationsWithAnUnpenalisedBias) {
  for (auto [n, f] : {std::pair<int64_t, int64_t>{200, 10}, {20, 50}}) {  // primal and dual
    const auto p = linear_problem(n, f, 3, 0.1, 1);
    const double alpha = 0.5;
    const auto sol = ridge(p.X, p.Y, alpha);
    const auto Xc = p.X - p.X.mean(0), Yc = p.Y - p.Y.mean(0);
    const auto lhs = (Xc.t().matmul(Xc) + alpha * torch::eye(f, torch::kDouble)).matmul(sol.weight);
    EXPECT_TRUE(torch::allclose(lhs, Xc.t().matmul(Yc), 1e-9, 1e-9)) << n << "x" << f;
    // The residual has zero mean: the bias is fit exactly.
    const auto resid = p.X.matmul(sol.weight) + sol.bias - p.Y;
    EXPECT_LT(resid.mean(0).abs().max().item<double>(), 1e-10);
  }
}

TEST(Ridge, RecoversANoiselessLinearMapAndHandlesSingularData) {
  const auto p = linear_problem(100, 5, 2, 0.0, 2);
  const auto sol = ridge(p.X, p.Y, 0.0);
  EXPECT_TRUE(torch::allclose(sol.weight, p.W, 1e-8, 1e-8));
  EXPECT_TRUE(torch::allclose(sol.bias, p.b, 1e-8, 1e-8));
  // A duplicated column makes X^T X singular: alpha = 0 still solves (least squares).
  const auto Xdup = torch::cat({p.X, p.X.narrow(1, 0, 1)}, 1);
  const auto dup = ridge(Xdup, p.Y, 0.0);
  EXPECT_TRUE(torch::allclose(Xdup.matmul(dup.weight) + dup.bias, p.Y, 1e-8, 1e-8));
  // Leading sample dimensions are flattened; dtype follows X.
  const auto f32 = ridge(p.X.reshape({10, 10, 5}).to(torch::kFloat), p.Y.reshape({10, 10, 2}), 1e-6);
  EXPECT_EQ(f32.weight.scalar_type(), torch::kFloat);
  EXPECT_THROW(ridge(p.X, p.Y.narrow(0, 0, 50), 1.0), c10::Error);
  EXPECT_THROW(ridge(p.X, p.Y, -1.0), c10::Error);
}

TEST(RLS, IsExactlyRidgeWithAPenalisedBiasWhateverTheBatching) {
  const auto p = linear_problem(150, 6, 2, 0.3, 3);
  const double alpha = 0.7;
  brain::train::Readout readout(6, 2);
  brain::train::RLS rls(readout, alpha);
  int64_t start = 0;
  for (int64_t chunk : {1, 7, 32, 1, 50, 59}) {
    rls.update(p.X.narrow(0, start, chunk), p.Y.narrow(0, start, chunk));
    start += chunk;
  }
  ASSERT_EQ(start, 150);
  const auto Xa = torch::cat({p.X, torch::ones({150, 1}, torch::kDouble)}, 1);
  const auto ref = ridge(Xa, p.Y, alpha, /*fit_bias=*/false).weight;
  EXPECT_TRUE(torch::allclose(readout.weight(), ref.narrow(0, 0, 6), 1e-8, 1e-8));
  EXPECT_TRUE(torch::allclose(readout.bias(), ref[6], 1e-8, 1e-8));
  // A single-sample update returns the a-priori error.
  const auto err = rls.update(p.X[0], p.Y[0]);
  EXPECT_EQ(err.sizes(), (std::vector<int64_t>{2}));
}

TEST(LMS, ConvergesOnALinearProblem) {
  const auto p = linear_problem(256, 4, 1, 0.0, 4);
  brain::train::Readout readout(4, 1);
  brain::train::LMS lms(readout, 0.05);
  for (int epoch = 0; epoch < 300; ++epoch) {
    for (int64_t s = 0; s < 256; s += 32) lms.update(p.X.narrow(0, s, 32), p.Y.narrow(0, s, 32));
  }
  const double mse = (readout.forward(p.X) - p.Y).pow(2).mean().item<double>();
  EXPECT_LT(mse, 1e-6);
}

TEST(Reservoir, DenseHasTheRequestedSpectralRadiusAndJitIsClose) {
  brain::ReservoirParams p;
  p.n_in = 2;
  p.size = 200;
  p.spectral_radius = 0.8;
  p.density = 0.2;
  brain::Reservoir dense(p);
  EXPECT_NEAR(torch::linalg_eigvals(dense.recurrent_matrix()).abs().max().item<double>(), 0.8, 1e-9);
  p.connectivity = "jit";
  p.size = 600;
  brain::Reservoir jit(p);
  EXPECT_EQ(jit.recurrent_matrix().size(0), 600);
  EXPECT_NEAR(torch::linalg_eigvals(jit.recurrent_matrix()).abs().max().item<double>(), 0.8, 0.1);
  // run() and step-by-step update agree.
  const auto u = torch::randn({5, 3, 2}, torch::kDouble);
  jit.reset_state(3);
  const auto states = jit.run(u);
  jit.reset_state(3);
  for (int64_t t = 0; t < 5; ++t) {
    jit.set_input(u[t]);
    jit.step({});
  }
  EXPECT_TRUE(torch::allclose(jit.state("x"), states[4]));
  p.leak = 0.0;
  EXPECT_THROW(brain::Reservoir{p}, c10::Error);
}

// The reference task (issue 8): an ESN predicts the Lorenz system 5 steps ahead from its
// current state, on standardized data. Ridge must reach MSE <= 1e-3; FORCE (online RLS) has
// the documented bound 1e-3 as well, for dense and JIT recurrent connectivity.
struct LorenzTask {
  torch::Tensor train_in, train_out, test_in, test_out;
};

LorenzTask lorenz_task() {
  const int64_t horizon = 5, n_train = 2000, n_test = 500;
  auto s = brain::data::lorenz(n_train + n_test + horizon, 0.02);
  const auto train = s.narrow(0, 0, n_train);
  s = (s - train.mean(0)) / train.std(0);
  LorenzTask t;
  t.train_in = s.narrow(0, 0, n_train);
  t.train_out = s.narrow(0, horizon, n_train);
  t.test_in = s.narrow(0, n_train, n_test);
  t.test_out = s.narrow(0, n_train + horizon, n_test);
  return t;
}

TEST(LorenzESN, RidgeAndForceReachTheirBounds) {
  const auto task = lorenz_task();
  const int64_t washout = 100;
  for (const char* conn : {"dense", "jit"}) {
    brain::ReservoirParams p;
    p.n_in = 3;
    p.size = 300;
    p.spectral_radius = 0.9;
    p.leak = 0.5;
    p.input_scale = 0.5;
    p.density = 0.1;
    p.connectivity = conn;
    p.seed = 7;
    brain::Reservoir esn(p);
    esn.reset_state(0);
    const auto train_states = esn.run(task.train_in);
    const auto test_states = esn.run(task.test_in);  // continues from the training state
    const auto X = train_states.narrow(0, washout, train_states.size(0) - washout);
    const auto Y = task.train_out.narrow(0, washout, X.size(0));

    brain::train::Readout ridge_readout(p.size, 3);
    ridge_readout.fit_ridge(X, Y, 1e-6);
    const double mse_ridge = (ridge_readout.forward(test_states) - task.test_out).pow(2).mean().item<double>();

    brain::train::Readout force_readout(p.size, 3);
    brain::train::RLS rls(force_readout, 1e-4);
    for (int64_t t = 0; t < X.size(0); ++t) rls.update(X[t], Y[t]);  // online, one step at a time
    const double mse_force = (force_readout.forward(test_states) - task.test_out).pow(2).mean().item<double>();

    std::cout << "Lorenz 5-step ESN (" << conn << "): ridge MSE " << mse_ridge << ", FORCE MSE " << mse_force << "\n";
    EXPECT_LE(mse_ridge, 1e-3) << conn;
    EXPECT_LE(mse_force, 1e-3) << conn;
  }
}

}  // namespace
