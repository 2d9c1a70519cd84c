// The torch-free JIT-connectivity generator (kernels/jitc/jitc_gen.h) on its own.
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <cstring>
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

TEST(JitcGenerator, LogsInLanesEqualDetLogBitForBit) {
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  std::vector<double> values{1.0, 0x1p-54, 0x1p-53, 0.5, 0x1.6a09e667f3bcdp-1, 0x1.6a09e667f3bcep-1,
                             0x1.6a09e667f3bccp-1, 0x1.6a09e667f3bcdp-30, std::nextafter(1.0, 0.0)};
  for (int i = 0; i < 100000; ++i) values.push_back((static_cast<double>(rng() >> 11) + 1) * 0x1p-53);
  for (int i = 0; i < 1000; ++i) values.push_back(std::ldexp(unif(rng) + 0.5, -static_cast<int>(rng() % 54)));
  for (int n = 1; n <= jg::kMaxLogLanes; ++n) {
    for (size_t i = 0; i + n <= values.size(); i += n) {
      double lanes[jg::kMaxLogLanes];
      for (int q = 0; q < n; ++q) lanes[q] = values[i + q];
      jg::det_log_lanes(lanes, n);
      for (int q = 0; q < n; ++q) {
        const double want = jg::det_log(values[i + q]);
        ASSERT_EQ(std::memcmp(&lanes[q], &want, sizeof want), 0) << values[i + q] << " in " << n << " lanes";
      }
    }
  }
}

// The walk of SPEC's section 3 written out one uniform at a time, as the CUDA kernels walk it.
std::vector<int64_t> specified_walk(const jg::Spec& s, int64_t row, int64_t block) {
  std::vector<int64_t> cols;
  int64_t c = block << s.block_shift;
  const int64_t end = std::min<int64_t>(c + (int64_t{1} << s.block_shift), s.n_cols);
  for (uint32_t call = 0; c < end; ++call) {
    const jg::Words w = jg::philox4x32_10(uint32_t(row), uint32_t(block), call, 0u, s.key0, s.key1);
    for (int half = 0; half < 2; ++half) {
      const double u = double(jg::m53(w.w[2 * half], w.w[2 * half + 1]) + 1) * 0x1p-53;
      const double r = jg::det_log(u) * s.inv_log1m_p;
      if (r >= double(end - c)) return cols;
      c += int64_t(r);
      cols.push_back(c);
      if (++c >= end) return cols;
    }
  }
  return cols;
}

TEST(JitcGenerator, CpuWalkGivesTheSpecifiedEntries) {
  // for_each_in_block computes the skips of several calls at once on a CPU while many columns
  // remain; the entries must be those of the one-at-a-time walk, to the last column.
  for (double prob : {0.9, 0.5, 0.1, 0.03, 0.002, 1e-5}) {
    for (int64_t n_cols : {int64_t{37}, int64_t{1000}, int64_t{5000}, int64_t{70000}}) {
      const auto spec = jg::make_spec(prob, 77, 40, n_cols, jg::Dist::kHomo);
      for (int64_t row = 0; row < spec.n_rows; ++row) {
        for (int64_t blk = 0; blk < spec.n_blocks; ++blk) {
          std::vector<int64_t> cols;
          jg::for_each_in_block(spec, row, blk, [&](int64_t c) { cols.push_back(c); });
          ASSERT_EQ(cols, specified_walk(spec, row, blk)) << prob << " " << n_cols << " row " << row << " block " << blk;
        }
      }
    }
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
