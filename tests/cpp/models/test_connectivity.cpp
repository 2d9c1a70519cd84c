// Connectivity generators: exact structure where it is deterministic, statistics otherwise.
#include <brain/brain.h>

#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

at::Tensor dense(const brain::CsrMatrix& m) {
  brain::ops::validate_csr(m.indptr, m.indices, {m.n_rows, m.n_cols});
  brain::CsrMatrix w = m;
  w.weights = torch::ones({m.indices.numel()}, torch::kDouble);
  return w.to_dense();
}

TEST(Connect, OneToOneAndAllToAll) {
  EXPECT_TRUE(torch::equal(dense(brain::connect::one_to_one(5)), torch::eye(5, torch::kDouble)));
  EXPECT_TRUE(torch::equal(dense(brain::connect::all_to_all(4, 4, false)), torch::ones({4, 4}, torch::kDouble) - torch::eye(4, torch::kDouble)));
  EXPECT_TRUE(torch::equal(dense(brain::connect::all_to_all(3, 5, true)), torch::ones({3, 5}, torch::kDouble)));
  EXPECT_THROW(brain::connect::all_to_all(3, 5, false), c10::Error);
}

TEST(Connect, FixedOutAndInDegreesAreExact) {
  const auto out = dense(brain::connect::fixed_post_num(300, 300, 20, false, 1));
  EXPECT_TRUE(torch::all(out.sum(1) == 20).item<bool>());
  EXPECT_EQ(out.diagonal().sum().item<double>(), 0.0);
  EXPECT_EQ(out.max().item<double>(), 1.0);  // distinct targets
  // Targets uniform: column counts around 20 each.
  EXPECT_LT((out.sum(0) - 20).abs().max().item<double>(), 6 * std::sqrt(20.0));
  const auto in = dense(brain::connect::fixed_pre_num(200, 150, 12, true, 2));
  EXPECT_TRUE(torch::all(in.sum(0) == 12).item<bool>());
  EXPECT_EQ(in.max().item<double>(), 1.0);
  EXPECT_THROW(brain::connect::fixed_post_num(10, 10, 10, false, 0), c10::Error);
}

TEST(Connect, GaussianProbFollowsItsDistanceProfile) {
  const double sigma = 2.0, p_max = 0.8;
  const auto m = dense(brain::connect::gaussian_prob(40, 40, sigma, p_max, /*periodic=*/true, false, 3));
  EXPECT_EQ(m.diagonal().sum().item<double>(), 0.0);
  // Pairs at grid distance 1 (the four axis neighbours of every cell), periodic.
  double hits = 0;
  for (int64_t y = 0; y < 40; ++y) {
    for (int64_t x = 0; x < 40; ++x) {
      const int64_t i = y * 40 + x;
      hits += m[i][y * 40 + (x + 1) % 40].item<double>() + m[i][((y + 1) % 40) * 40 + x].item<double>();
    }
  }
  const double want = p_max * std::exp(-1.0 / (2 * sigma * sigma));
  const double n = 2 * 1600.0;
  EXPECT_NEAR(hits / n, want, 5 * std::sqrt(want * (1 - want) / n));
  // Far pairs (distance 20) almost never connect.
  EXPECT_LT(m[0][20 * 40 + 20].item<double>(), 1.0);
}

TEST(Connect, GridNeighbourhoods) {
  const auto cheb = dense(brain::connect::grid(3, 3, 1, false, false));
  EXPECT_EQ(cheb[4].sum().item<double>(), 8.0);  // centre
  EXPECT_EQ(cheb[0].sum().item<double>(), 3.0);  // corner
  const auto manh = dense(brain::connect::grid(3, 3, 1, true, false));
  EXPECT_EQ(manh[4].sum().item<double>(), 4.0);
  EXPECT_EQ(manh[0].sum().item<double>(), 2.0);
  const auto torus = dense(brain::connect::grid(5, 5, 1, false, true));
  EXPECT_TRUE(torch::all(torus.sum(1) == 8).item<bool>());
  EXPECT_TRUE(torch::equal(torus, torus.t()));
}

TEST(Connect, SmallWorldRewiresTheRingLattice) {
  const auto ring = dense(brain::connect::small_world(50, 3, 0.0, 4));
  for (int64_t i = 0; i < 50; ++i) {
    for (int64_t j = 1; j <= 3; ++j) {
      ASSERT_EQ(ring[i][(i + j) % 50].item<double>(), 1.0);
      ASSERT_EQ(ring[i][(i - j + 50) % 50].item<double>(), 1.0);
    }
  }
  EXPECT_EQ(ring.sum().item<double>(), 50 * 6.0);
  const auto sw = dense(brain::connect::small_world(2000, 3, 0.2, 5));
  EXPECT_TRUE(torch::all(sw.sum(1) == 6).item<bool>());  // degree kept, no duplicates
  EXPECT_EQ(sw.diagonal().sum().item<double>(), 0.0);
  // About a fifth of the lattice edges were rewired away.
  double kept = 0;
  for (int64_t i = 0; i < 2000; i += 1) kept += sw[i][(i + 1) % 2000].item<double>();
  EXPECT_NEAR(1.0 - kept / 2000.0, 0.2, 0.04);
}

}  // namespace
