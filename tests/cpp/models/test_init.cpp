// Initializers: the distributions their papers define, and reproducibility.
#include <brain/brain.h>

#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

namespace bi = brain::init;

TEST(Init, SimpleDistributionsHaveTheirMoments) {
  EXPECT_TRUE(torch::equal(bi::constant({2, 3}, 0.5), torch::full({2, 3}, 0.5)));
  const auto n = bi::normal({200000}, 1.5, 0.5, 1, torch::kDouble);
  EXPECT_NEAR(n.mean().item<double>(), 1.5, 0.005);
  EXPECT_NEAR(n.std().item<double>(), 0.5, 0.005);
  const auto u = bi::uniform({200000}, -1, 3, 2, torch::kDouble);
  EXPECT_GE(u.min().item<double>(), -1.0);
  EXPECT_LT(u.max().item<double>(), 3.0);
  EXPECT_NEAR(u.mean().item<double>(), 1.0, 0.02);
  EXPECT_TRUE(torch::equal(bi::normal({10}, 0, 1, 7), bi::normal({10}, 0, 1, 7)));
  EXPECT_FALSE(torch::equal(bi::normal({10}, 0, 1, 7), bi::normal({10}, 0, 1, 8)));
  EXPECT_THROW(bi::uniform({3}, 1, 0, 0), c10::Error);
}

TEST(Init, TruncatedNormalStaysInBoundsWithTheTruncatedMean) {
  const double mu = 0, sigma = 1, a = -0.5, b = 2.0;
  const auto x = bi::truncated_normal({400000}, mu, sigma, a, b, 3, torch::kDouble);
  EXPECT_GE(x.min().item<double>(), a);
  EXPECT_LE(x.max().item<double>(), b);
  // E[X] = mu + sigma (phi(alpha) - phi(beta)) / (Phi(beta) - Phi(alpha)).
  auto phi = [](double z) { return std::exp(-z * z / 2) / std::sqrt(2 * M_PI); };
  auto Phi = [](double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); };
  const double want = mu + sigma * (phi(a) - phi(b)) / (Phi(b) - Phi(a));
  EXPECT_NEAR(x.mean().item<double>(), want, 0.005);
}

TEST(Init, KaimingAndXavierScaleWithTheFans) {
  const auto k = bi::kaiming_normal({400, 300}, 4, std::sqrt(2.0), torch::kDouble);
  EXPECT_NEAR(k.std().item<double>(), std::sqrt(2.0 / 400), 0.002);
  const auto ku = bi::kaiming_uniform({400, 300}, 5, std::sqrt(2.0), torch::kDouble);
  EXPECT_LE(ku.abs().max().item<double>(), std::sqrt(2.0) * std::sqrt(3.0 / 400));
  EXPECT_NEAR(ku.std().item<double>(), std::sqrt(2.0 / 400), 0.002);
  const auto x = bi::xavier_normal({400, 300}, 6, 1.0, torch::kDouble);
  EXPECT_NEAR(x.std().item<double>(), std::sqrt(2.0 / 700), 0.002);
  const auto xu = bi::xavier_uniform({400, 300}, 7, 1.0, torch::kDouble);
  EXPECT_LE(xu.abs().max().item<double>(), std::sqrt(6.0 / 700));
  EXPECT_THROW(bi::kaiming_normal({5}, 0), c10::Error);
}

TEST(Init, OrthogonalHasOrthonormalRowsOrColumns) {
  const auto q = bi::orthogonal({64, 64}, 8, 2.0, torch::kDouble);
  EXPECT_TRUE(torch::allclose(q.t().matmul(q), 4 * torch::eye(64, torch::kDouble), 1e-10, 1e-10));
  const auto wide = bi::orthogonal({10, 40}, 9, 1.0, torch::kDouble);
  EXPECT_EQ(wide.sizes(), (std::vector<int64_t>{10, 40}));
  EXPECT_TRUE(torch::allclose(wide.matmul(wide.t()), torch::eye(10, torch::kDouble), 1e-10, 1e-10));
  const auto tall = bi::orthogonal({40, 10}, 9, 1.0, torch::kDouble);
  EXPECT_TRUE(torch::allclose(tall.t().matmul(tall), torch::eye(10, torch::kDouble), 1e-10, 1e-10));
}

}  // namespace
