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

// The walks a CPU can take: the portable one, and the AVX2 one where this CPU has AVX2.
std::vector<bool> cpu_walks() {
  std::vector<bool> walks{false};
#if BRAIN_JITC_AVX2_WALK
  if (brain::kernels::cpu_runs_avx2()) walks.push_back(true);
#endif
  return walks;
}

TEST(JitcGenerator, CpuWalkGivesTheSpecifiedEntries) {
  // for_each_in_block computes the skips of several calls at once on a CPU (in AVX2 lanes where
  // it can); the entries must be those of the one-at-a-time walk, to the last column.
  for (const bool avx2 : cpu_walks()) {
    for (double prob : {0.9, 0.5, 0.1, 0.03, 0.002, 1e-5}) {
      for (int64_t n_cols : {int64_t{37}, int64_t{1000}, int64_t{5000}, int64_t{70000}}) {
        for (int64_t seed : {int64_t{77}, int64_t{-3}}) {
          auto spec = jg::make_spec(prob, seed, 40, n_cols, jg::Dist::kHomo);
          spec.avx2_walk = avx2;
          for (int64_t row = 0; row < spec.n_rows; ++row) {
            for (int64_t blk = 0; blk < spec.n_blocks; ++blk) {
              std::vector<int64_t> cols;
              jg::for_each_in_block(spec, row, blk, [&](int64_t c) { cols.push_back(c); });
              ASSERT_EQ(cols, specified_walk(spec, row, blk))
                  << "avx2 " << avx2 << " p " << prob << " n_cols " << n_cols << " row " << row << " block " << blk;
            }
          }
        }
      }
    }
  }
}

TEST(JitcGenerator, CpuVariateWalkGivesEachEntryItsVariate) {
  // for_each_variate_in_block computes the variates in batches (AVX2 lanes where it can); each
  // entry must get entry_variate's bits, across batch ends (blocks of up to 64 entries here).
  for (const bool avx2 : cpu_walks()) {
    for (jg::Dist dist : {jg::Dist::kHomo, jg::Dist::kUniform, jg::Dist::kNormal}) {
      for (double prob : {0.95, 0.5, 0.02}) {
        auto spec = jg::make_spec(prob, 11, 30, 3001, dist);
        spec.avx2_walk = avx2;
        for (int64_t row = 0; row < spec.n_rows; ++row) {
          for (int64_t blk = 0; blk < spec.n_blocks; ++blk) {
            std::vector<int64_t> cols;
            jg::for_each_variate_in_block(spec, row, blk, [&](int64_t col, double variate) {
              cols.push_back(col);
              const double want = jg::entry_variate(spec, row, col);
              ASSERT_EQ(std::memcmp(&variate, &want, sizeof want), 0) << "avx2 " << avx2 << " col " << col;
            });
            ASSERT_EQ(cols, specified_walk(spec, row, blk));
          }
        }
      }
    }
  }
}

TEST(JitcGenerator, CpuWeightGradientSumsEachEntryInWalkOrder) {
  // param_grad computes the variates of the entries whose product is not zero in batches (AVX2
  // lanes where it can); its sums must be those of one entry at a time in walk order, bit for
  // bit, plain and transposed, with products that are zero (x has zeros) skipped as before.
  const int64_t n_rows = 23, n_cols = 1500, batch = 3;
  for (const bool avx2 : cpu_walks()) {
    for (jg::Dist dist : {jg::Dist::kHomo, jg::Dist::kUniform, jg::Dist::kNormal}) {
      for (const bool transpose : {false, true}) {
        auto spec = jg::make_spec(0.3, 9, n_rows, n_cols, dist);
        spec.avx2_walk = avx2;
        const int64_t n_in = transpose ? n_rows : n_cols, n_out = transpose ? n_cols : n_rows;
        std::mt19937_64 rng(4);
        std::normal_distribution<double> normal;
        std::vector<double> x(size_t(batch * n_in)), g(size_t(batch * n_out));
        for (double& v : x) v = (rng() % 3 == 0) ? 0.0 : normal(rng);
        for (double& v : g) v = normal(rng);
        jg::MatmulParams<double, double> p;
        p.spec = spec;
        p.x = x.data();
        p.batch = batch;
        std::vector<int64_t> offsets, lanes;
        jg::nonzero_lanes_by_column(x.data(), batch, n_in, offsets, lanes);
        double got[2] = {0, 0};
        jg::param_grad(p, g.data(), transpose, offsets.data(), lanes.data(), got, 0, n_rows);
        double want[2] = {0, 0};
        for (int64_t row = 0; row < n_rows; ++row) {
          for (int64_t blk = 0; blk < spec.n_blocks; ++blk) {
            for (const int64_t col : specified_walk(spec, row, blk)) {
              double c = 0;
              for (int64_t bi = 0; bi < batch; ++bi) {
                const double xv = transpose ? x[size_t(bi * n_in + row)] : x[size_t(bi * n_in + col)];
                const double gv = transpose ? g[size_t(bi * n_out + col)] : g[size_t(bi * n_out + row)];
                if (xv != 0) c += transpose ? xv * gv : gv * xv;
              }
              if (c == 0) continue;
              double da, db;
              jg::entry_basis(dist, jg::entry_variate(spec, row, col), &da, &db);
              want[0] += da * c;
              want[1] += db * c;
            }
          }
        }
        EXPECT_EQ(std::memcmp(got, want, sizeof want), 0)
            << "avx2 " << avx2 << " dist " << int(dist) << " transpose " << transpose << ": " << got[0] << ", "
            << got[1] << " want " << want[0] << ", " << want[1];
      }
    }
  }
}

TEST(JitcGenerator, CpuWalkStopsWhereTheVisitorSaysSo) {
  // A visitor that returns true ends the walk at once (a caller looking for one column).
  for (const bool avx2 : cpu_walks()) {
    auto spec = jg::make_spec(0.05, 5, 8, 3000, jg::Dist::kHomo);
    spec.avx2_walk = avx2;
    for (int64_t row = 0; row < spec.n_rows; ++row) {
      const std::vector<int64_t> all = specified_walk(spec, row, 0);
      ASSERT_GT(all.size(), 10u);
      for (size_t stop_at : {size_t{0}, size_t{7}, all.size() - 1}) {
        std::vector<int64_t> seen;
        jg::for_each_in_block(spec, row, 0, [&](int64_t c) -> bool {
          seen.push_back(c);
          return seen.size() == stop_at + 1;
        });
        EXPECT_EQ(seen, std::vector<int64_t>(all.begin(), all.begin() + std::ptrdiff_t(stop_at) + 1)) << avx2;
      }
    }
  }
}

#if BRAIN_JITC_AVX2_WALK
// det_log(u) * scale for four values through the AVX2 lanes.
__attribute__((target("avx2"))) void skips_of_uniforms_in_avx2(const double* u, double scale, double* out) {
  __m256d v = _mm256_loadu_pd(u);
  jg::skips_of_uniforms_avx2(v, scale);
  _mm256_storeu_pd(out, v);
}

TEST(JitcGenerator, Avx2LogsEqualDetLogBitForBit) {
  if (!brain::kernels::cpu_runs_avx2()) GTEST_SKIP() << "this CPU has no AVX2 (or BRAIN_FAST_ISA=baseline)";
  std::mt19937_64 rng(4);
  // The edges of det_log's range and of its halving test (m against sqrt(2)'s double), then
  // the walk's uniforms and values of every exponent.
  std::vector<double> values{1.0, 0x1p-54, 0x1p-53, 0.5, 0x1.6a09e667f3bcdp-1, 0x1.6a09e667f3bcep-1,
                             0x1.6a09e667f3bccp-1, 0x1.6a09e667f3bcdp-30, std::nextafter(1.0, 0.0)};
  for (int i = 0; i < 100000; ++i) values.push_back((static_cast<double>(rng() >> 11) + 1) * 0x1p-53);
  for (int i = 0; i < 1000; ++i) values.push_back(std::ldexp(double(rng() >> 11) * 0x1p-53 + 0.5, -int(rng() % 54)));
  while (values.size() % 4 != 0) values.push_back(0.75);
  for (double scale : {1.0, 1.0 / jg::det_log1m(0.02)}) {
    for (size_t i = 0; i < values.size(); i += 4) {
      double got[4];
      skips_of_uniforms_in_avx2(&values[i], scale, got);
      for (size_t q = 0; q < 4; ++q) {
        const double want = jg::det_log(values[i + q]) * scale;
        ASSERT_EQ(std::memcmp(&got[q], &want, sizeof want), 0) << std::hexfloat << values[i + q] << " scale " << scale;
      }
    }
  }
}

TEST(JitcGenerator, Avx2NdtriEqualsDetNdtriBitForBit) {
  if (!brain::kernels::cpu_runs_avx2()) GTEST_SKIP() << "this CPU has no AVX2 (or BRAIN_FAST_ISA=baseline)";
  std::mt19937_64 rng(5);
  // Both sides of each branch (|q| = 0.425, r = 5 near v = 1.2e-11), the extremes, then values
  // as the generator makes them and values in every tail decade, in mixed groups of four.
  std::vector<double> values{0.075, std::nextafter(0.075, 0.0), std::nextafter(0.075, 1.0), 0.925,
                             std::nextafter(0.925, 0.0), std::nextafter(0.925, 1.0), 0x1p-53, 1 - 0x1p-53,
                             0.5, 1.3887943864964021e-11, 1.3887943864964019e-11, 1e-11, 1 - 1e-11, 1e-300};
  for (int i = 0; i < 100000; ++i) values.push_back(double(2 * (rng() >> 12) + 1) * 0x1p-53);
  for (int i = 0; i < 4000; ++i) {
    const double tiny = std::ldexp(double(rng() >> 11) * 0x1p-53 + 0.5, -int(rng() % 53));
    values.push_back(i % 2 ? tiny : 1 - tiny);
  }
  std::shuffle(values.begin(), values.end(), rng);
  while (values.size() % 4 != 0) values.push_back(0.3);
  for (size_t i = 0; i < values.size(); i += 4) {
    double got[4];
    jg::ndtri_avx2(&values[i], got);
    for (size_t q = 0; q < 4; ++q) {
      const double want = jg::det_ndtri(values[i + q]);
      ASSERT_EQ(std::memcmp(&got[q], &want, sizeof want), 0) << std::hexfloat << values[i + q];
    }
  }
}

TEST(JitcGenerator, Avx2VariatesEqualEntryVariate) {
  if (!brain::kernels::cpu_runs_avx2()) GTEST_SKIP() << "this CPU has no AVX2 (or BRAIN_FAST_ISA=baseline)";
  std::mt19937_64 rng(6);
  for (jg::Dist dist : {jg::Dist::kUniform, jg::Dist::kNormal}) {
    for (int trial = 0; trial < 3000; ++trial) {
      const auto spec = jg::make_spec(0.1, int64_t(rng()), 1, 1, dist);
      const int64_t row = int64_t(rng() % jg::kMaxDim);
      std::vector<int64_t> cols(16);
      for (auto& c : cols) c = int64_t(rng() % jg::kMaxDim);
      double got[16];
      jg::entry_variates_avx2(spec, uint32_t(row), cols.data(), 16, got);
      for (size_t q = 0; q < cols.size(); ++q) {
        const double want = jg::entry_variate(spec, row, cols[q]);
        ASSERT_EQ(std::memcmp(&got[q], &want, sizeof want), 0) << "row " << row << " col " << cols[q];
      }
    }
  }
}

TEST(JitcGenerator, Avx2WalkSkipsEqualTheScalarSkips) {
  if (!brain::kernels::cpu_runs_avx2()) GTEST_SKIP() << "this CPU has no AVX2 (or BRAIN_FAST_ISA=baseline)";
  std::mt19937_64 rng(3);
  const std::vector<double> probs{0.99, 0.5, 0.02, 1e-4, 1e-9};
  int64_t compared = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    auto spec = jg::make_spec(probs[size_t(trial) % probs.size()], int64_t(rng()), 1, 1, jg::Dist::kHomo);
    const auto row = uint32_t(rng()), block = uint32_t(rng() % 4096);
    // Counters near 2^32 wrap within a batch, as the scalar walk's do.
    const uint32_t call = trial % 7 == 0 ? uint32_t(0) - uint32_t(rng() % 20) : uint32_t(rng() % 64);
    double want[4 * jg::kWalkSkips], got[4 * jg::kWalkSkips];
    for (int set = 0; set < 4; ++set) {
      jg::walk_skips_lanes(spec, row, block, call + uint32_t(jg::kWalkCalls * set), want + jg::kWalkSkips * set);
    }
    for (int sets : {1, 2, 4}) {
      std::fill(std::begin(got), std::end(got), -1.0);
      if (sets == 1) jg::walk_skips_avx2<1>(spec, row, block, call, got);
      if (sets == 2) jg::walk_skips_avx2<2>(spec, row, block, call, got);
      if (sets == 4) jg::walk_skips_avx2<4>(spec, row, block, call, got);
      for (int q = 0; q < sets * jg::kWalkSkips; ++q, ++compared) {
        ASSERT_EQ(std::memcmp(&got[q], &want[q], sizeof want[q]), 0)
            << "skip " << q << " of " << sets << " sets: " << got[q] << " vs " << want[q] << ", call " << call;
      }
    }
  }
  EXPECT_EQ(compared, 20000 * 7 * jg::kWalkSkips);
}
#endif

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
