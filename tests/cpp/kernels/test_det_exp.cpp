// detmath's exp and expm1 (kernels/fastsim/det_exp.h) against libm, and the conductance kernel
// that uses them: the same bits from the portable and the AVX2 builds and from any split of a
// population.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "csrc/dyn/fast_kernels.h"
#include "kernels/fastsim/cond_cpu.h"
#include "kernels/fastsim/det_exp.h"

namespace dm = brain::kernels::detmath;
namespace cond = brain::kernels::cond;

namespace {

// Distance in units in the last place (0 for equal values and for two NaNs).
template <typename T>
int64_t ulp_distance(T a, T b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : std::numeric_limits<int64_t>::max();
  if (a == b) return 0;
  using Int = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;
  Int ia, ib;
  std::memcpy(&ia, &a, sizeof(T));
  std::memcpy(&ib, &b, sizeof(T));
  // Map the sign-magnitude bit patterns onto a monotonic integer line.
  const int64_t la = ia < 0 ? int64_t(std::numeric_limits<Int>::min()) - ia : ia;
  const int64_t lb = ib < 0 ? int64_t(std::numeric_limits<Int>::min()) - ib : ib;
  return la > lb ? la - lb : lb - la;
}

template <typename T, typename Ours, typename Libm>
int64_t worst_ulps(Ours ours, Libm libm, double lo, double hi, int count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unif(lo, hi);
  std::vector<T> x(count), y(count);
  for (auto& v : x) v = static_cast<T>(unif(rng));
  for (int i = 0; i < count; ++i) y[i] = ours(x[i]);  // a loop the compiler may vectorize
  int64_t worst = 0;
  for (int i = 0; i < count; ++i) worst = std::max(worst, ulp_distance(y[i], static_cast<T>(libm(x[i]))));
  return worst;
}

template <typename T>
class DetExp : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(DetExp, FloatTypes);

TYPED_TEST(DetExp, WithinOneUlpOfLibmForExpAndTwoForExpm1) {
  using T = TypeParam;
  const auto ours_exp = [](T x) { return dm::exp(x); };
  const auto ours_expm1 = [](T x) { return dm::expm1(x); };
  const auto libm_exp = [](T x) { return std::exp(x); };
  const auto libm_expm1 = [](T x) { return std::expm1(x); };
  const double big = std::is_same_v<T, float> ? 110.0 : 750.0;  // past overflow and underflow both
  for (auto [lo, hi] : {std::pair{-big, big}, std::pair{-3.0, 3.0}, std::pair{-1e-4, 1e-4}, std::pair{-50.0, 50.0}}) {
    EXPECT_LE((worst_ulps<T>(ours_exp, libm_exp, lo, hi, 200000, 1)), 1) << "exp on [" << lo << ", " << hi << "]";
    EXPECT_LE((worst_ulps<T>(ours_expm1, libm_expm1, lo, hi, 200000, 2)), 2) << "expm1 on [" << lo << ", " << hi << "]";
  }
}

TYPED_TEST(DetExp, EdgesAsLibm) {
  using T = TypeParam;
  using L = std::numeric_limits<T>;
  const T max_arg = std::log(L::max()), min_arg = std::log(L::denorm_min());
  const std::vector<T> edges = {T(0), -T(0), L::infinity(), -L::infinity(), L::quiet_NaN(), L::denorm_min(),
                                -L::denorm_min(), L::min(), T(1e-30), max_arg, std::nextafter(max_arg, T(1000)),
                                T(1000), min_arg, std::nextafter(min_arg, T(-1000)), T(-1000), T(-40), T(-17.5)};
  for (T x : edges) {
    EXPECT_LE(ulp_distance(dm::exp(x), std::exp(x)), 1) << "exp(" << x << ") = " << dm::exp(x);
    EXPECT_LE(ulp_distance(dm::expm1(x), std::expm1(x)), 2) << "expm1(" << x << ") = " << dm::expm1(x);
    if (x == T(0)) {
      EXPECT_EQ(std::signbit(dm::expm1(x)), std::signbit(x));  // expm1 keeps a zero's sign
    }
  }
  EXPECT_EQ(dm::exp(L::infinity()), L::infinity());
  EXPECT_EQ(dm::exp(-L::infinity()), T(0));
  EXPECT_EQ(dm::expm1(-L::infinity()), T(-1));
  EXPECT_TRUE(std::isnan(dm::exp(L::quiet_NaN())) && std::isnan(dm::expm1(L::quiet_NaN())));
}

// A thalamic-style group with every kernel kind: HH and Traub-Miles spikes, T-type calcium
// feeding a pool, KCa reading it, h, leak; gates and V drawn at random, some in the ranges where
// the rate formulas switch to their limits (CaT below -80 mV, x / expm1 near 0).
template <typename T>
struct RandomGroup {
  int64_t n;
  std::vector<std::vector<T>> gates;  // per gate: [n]
  std::vector<T> V, I;
  cond::Group<T> grp;

  explicit RandomGroup(int64_t n_neurons) : n(n_neurons) {
    const std::vector<cond::Kind> kinds = {cond::Kind::NaHH, cond::Kind::KHH, cond::Kind::NaTM, cond::Kind::KTM,
                                           cond::Kind::CaT,  cond::Kind::CaPool, cond::Kind::KCa, cond::Kind::H,
                                           cond::Kind::Leak};
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> unit(0.0, 1.0), volts(-100.0, 40.0);
    grp.n_channels = static_cast<int>(kinds.size());
    grp.C = 1.0, grp.V_th = -20.0, grp.dt = 0.05;
    gates.reserve(2 * kinds.size());
    for (size_t c = 0; c < kinds.size(); ++c) {
      cond::Channel& k = grp.channels[c];
      k.kind = kinds[c];
      k.g = 1.0 + c, k.E = c % 2 ? -90.0 : 50.0, k.V_T = -63.0;
      k.V_sh = 2.0, k.phi = 1.5, k.phi_q = 1.2;
      k.alpha = 0.1, k.beta = 0.02, k.hill = 2.0;
      k.depth = 0.1, k.tau = 10.0, k.Ca_rest = 2.4e-4;
      if (k.kind == cond::Kind::CaPool) k.n_influx = 1, k.influx[0] = 4;  // the CaT channel
      if (k.kind == cond::Kind::KCa) k.pool = 5;
      for (int g = 0; g < cond::gate_count(k.kind); ++g) {
        gates.emplace_back(n);
        for (auto& x : gates.back()) x = static_cast<T>(k.kind == cond::Kind::CaPool ? 1e-3 * unit(rng) : unit(rng));
        grp.in[c][g] = grp.out[c][g] = gates.back().data();
      }
    }
    V.resize(n), I.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      V[i] = static_cast<T>(i % 50 == 0 ? -63.0 + 13.0 : volts(rng));  // 13 - V + V_T = 0: x / expm1's limit
      I[i] = static_cast<T>(20.0 * unit(rng) - 5.0);
    }
  }

  // Steps of the one-pass kernel over [0, n) split at `splits`; returns V after each step,
  // then the gates.
  std::vector<T> run(const brain::fastsim::KernelsOf<T>& kernels, std::vector<int64_t> splits, int steps) {
    RandomGroup copy = *this;
    for (size_t c = 0, at = 0; c < static_cast<size_t>(grp.n_channels); ++c) {
      for (int g = 0; g < cond::gate_count(grp.channels[c].kind); ++g, ++at) {
        copy.grp.in[c][g] = copy.grp.out[c][g] = copy.gates[at].data();
      }
    }
    splits.insert(splits.begin(), 0);
    splits.push_back(n);
    std::vector<T> trace, V_new(n), spike(n);
    for (int s = 0; s < steps; ++s) {
      for (size_t p = 0; p + 1 < splits.size(); ++p) {
        kernels.cond_one_pass(copy.grp, splits[p], splits[p + 1], copy.V.data(), copy.I.data(), V_new.data(),
                              spike.data());
      }
      copy.V = V_new;
      trace.insert(trace.end(), V_new.begin(), V_new.end());
      trace.insert(trace.end(), spike.begin(), spike.end());
    }
    for (const auto& x : copy.gates) trace.insert(trace.end(), x.begin(), x.end());
    return trace;
  }
};

template <typename T>
void expect_same_bits(const std::vector<T>& a, const std::vector<T>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(T)), 0) << what;
}

TYPED_TEST(DetExp, ConductanceKernelGivesTheSameBitsInEveryBuildAndSplit) {
  using T = TypeParam;
  RandomGroup<T> group(333);  // not a multiple of the kernel's block of neurons
  const auto& portable = brain::fastsim::baseline::kKernels.of<T>();
  const std::vector<T> whole = group.run(portable, {}, 20);
  bool finite = true;
  for (T x : whole) finite = finite && std::isfinite(x);
  EXPECT_TRUE(finite);
  expect_same_bits(group.run(portable, {1, 64, 65, 200}, 20), whole, "split population");
#if defined(__x86_64__) || defined(__i386__)
  if (brain::fastsim::avx2::kKernels.isa != nullptr && __builtin_cpu_supports("avx2")) {
    expect_same_bits(group.run(brain::fastsim::avx2::kKernels.of<T>(), {}, 20), whole, "AVX2 build");
    expect_same_bits(group.run(brain::fastsim::avx2::kKernels.of<T>(), {100, 101}, 20), whole, "AVX2 build, split");
  } else {
    GTEST_SKIP() << "no AVX2 build or CPU: only the portable build was compared with itself";
  }
#endif
}

}  // namespace
