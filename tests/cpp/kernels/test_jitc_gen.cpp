// The torch-free JIT-connectivity generator (kernels/jitc/jitc_gen.h) on its own.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/jitc/jitc_cpu.h"
#include "kernels/jitc/jitc_gen.h"

namespace jg = brain::kernels::jitc;

TEST(JitcGenerator, PhiloxMatchesRandom123KnownAnswers) {
  const jg::Words a = jg::philox4x32_10(0, 0, 0, 0, 0, 0);
  EXPECT_EQ(a.w[0], 0x6627E8D5u);
  EXPECT_EQ(a.w[1], 0xE169C58Du);
  EXPECT_EQ(a.w[2], 0xBC57AC4Cu);
  EXPECT_EQ(a.w[3], 0x9B00DBD8u);
  const jg::Words b = jg::philox4x32_10(0x243F6A88u, 0x85A308D3u, 0x13198A2Eu, 0x03707344u,
                                        0xA4093822u, 0x299F31D0u);
  EXPECT_EQ(b.w[0], 0xD16CFE09u);
  EXPECT_EQ(b.w[1], 0x94FDCCEBu);
  EXPECT_EQ(b.w[2], 0x5001E420u);
  EXPECT_EQ(b.w[3], 0x24126EA1u);
}

TEST(JitcGenerator, DeterministicLogIsAccurate) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  for (int i = 0; i < 200000; ++i) {
    const double u = i == 0 ? 1.0 : (i == 1 ? 0x1p-54 : unif(rng));
    if (u <= 0) continue;
    const double expected = std::log(u);
    EXPECT_NEAR(jg::det_log(u), expected, 1e-15 * std::abs(expected) + 1e-300) << u;
  }
  EXPECT_EQ(jg::det_log(1.0), 0.0);
  for (double p : {1e-9, 1e-4, 0.02, 0.3, 0.5, 0.75, 0.999999}) {
    EXPECT_NEAR(jg::det_log1m(p), std::log1p(-p), 1e-15 * std::abs(std::log1p(-p))) << p;
  }
}

TEST(JitcGenerator, NdtriInvertsTheNormalCdf) {
  for (double v : {1e-300, 1e-16, 1e-6, 0.01, 0.075, 0.3, 0.5, 0.7, 0.925, 0.99, 1 - 1e-12}) {
    const double z = jg::det_ndtri(v);
    const double cdf = 0.5 * std::erfc(-z / std::sqrt(2.0));
    EXPECT_NEAR(cdf / v, 1.0, 1e-12) << v;
  }
  EXPECT_EQ(jg::det_ndtri(0.5), 0.0);
}

TEST(JitcGenerator, BlocksHoldAboutThirtyTwoExpectedEntries) {
  EXPECT_EQ(jg::block_shift_for(1.0), 5);
  EXPECT_EQ(jg::block_shift_for(0.5), 6);
  EXPECT_EQ(jg::block_shift_for(0.02), 11);
  EXPECT_EQ(jg::block_shift_for(1e-4), 19);
  EXPECT_EQ(jg::block_shift_for(1e-9), 24);
}

TEST(JitcGenerator, WalksAreIncreasingInRangeAndHaveTheRightDensity) {
  const double prob = 0.03;
  const auto spec = jg::make_spec(prob, -12345, 500, 10000, jg::Dist::kHomo);
  int64_t total = 0;
  for (int64_t row = 0; row < spec.n_rows; ++row) {
    int64_t last = -1;
    for (int64_t blk = 0; blk < spec.n_blocks; ++blk) {
      jg::for_each_in_block(spec, row, blk, [&](int64_t col) {
        EXPECT_GT(col, last);
        EXPECT_LT(col, spec.n_cols);
        EXPECT_EQ(col >> spec.block_shift, blk);
        last = col;
        ++total;
      });
    }
  }
  const double n = double(spec.n_rows) * double(spec.n_cols);
  EXPECT_NEAR(double(total), n * prob, 5 * std::sqrt(n * prob * (1 - prob)));
}

TEST(JitcGenerator, DenseWalkVisitsEveryColumnWithoutDrawing) {
  const auto spec = jg::make_spec(1.0, 3, 2, 100, jg::Dist::kHomo);
  std::vector<int64_t> cols;
  for (int64_t blk = 0; blk < spec.n_blocks; ++blk) {
    jg::for_each_in_block(spec, 1, blk, [&](int64_t c) { cols.push_back(c); });
  }
  ASSERT_EQ(cols.size(), 100u);
  for (int64_t c = 0; c < 100; ++c) EXPECT_EQ(cols[size_t(c)], c);
}

TEST(JitcGenerator, GatherAndScatterLoopsAgreeWithMaterialize) {
  const double prob = 0.2;
  const auto spec = jg::make_spec(prob, 9, 13, 29, jg::Dist::kUniform);
  std::vector<double> dense(13 * 29, 0.0);
  jg::materialize<double>(spec, -1.0, 2.0, dense.data(), 0, 13);
  std::vector<double> x(29);
  for (size_t j = 0; j < x.size(); ++j) x[j] = double(j % 5) - 2.0;
  jg::MatmulParams<double, double> p;
  p.spec = spec;
  p.a = -1.0;
  p.b = 2.0;
  p.x = x.data();
  std::vector<double> y(13, -7.0);
  jg::gather<false, double>(p, y.data(), 0, 13);
  for (int64_t i = 0; i < 13; ++i) {
    double expected = 0;
    for (int64_t j = 0; j < 29; ++j) expected += dense[size_t(i * 29 + j)] * x[size_t(j)];
    EXPECT_NEAR(y[size_t(i)], expected, 1e-12);
  }
  std::vector<double> xr(13);
  for (size_t i = 0; i < xr.size(); ++i) xr[i] = i % 3 == 0 ? 1.5 : 0.0;
  p.x = xr.data();
  std::vector<double> yt(29, 0.0);
  jg::scatter<true>(p, yt.data(), 0, 13);
  for (int64_t j = 0; j < 29; ++j) {
    double expected = 0;
    for (int64_t i = 0; i < 13; ++i) expected += dense[size_t(i * 29 + j)] * xr[size_t(i)];
    EXPECT_NEAR(yt[size_t(j)], expected, 1e-12);
  }
}
