// The CUDA JIT-connectivity kernels (kernels/jitc/jitc_kernels.cu) under the emulator. They
// compile jitc_gen.h's device branches (the _rn arithmetic, one block walked at a time), so
// comparing them with the CPU loops (the host branches) checks the promise that both devices
// generate the same A bit for bit; the matmuls and the parameter gradient are checked against
// float64 references built from that A.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "emu/cuda_emu.h"
#include "emu_test_util.h"
#include "kernels/jitc/jitc_cpu.h"
#include "kernels/jitc/jitc_cuda.h"

namespace {

namespace jg = brain::kernels::jitc;
namespace kj = brain::kernels::jitc::cuda;
using cuda_emu::GuardedArray;
using emu_test::SpikeByte;
using jg::Dist;

struct Matrix {
  double prob;
  std::int64_t seed, rows, cols;
  Dist dist;
  double a, b;  // the weight parameters
};

std::string describe(const Matrix& m) {
  const char* dist = m.dist == Dist::kHomo ? "homo" : m.dist == Dist::kUniform ? "uniform" : "normal";
  return std::to_string(m.rows) + "x" + std::to_string(m.cols) + " p=" + std::to_string(m.prob) + " " + dist;
}

const std::vector<Matrix>& matrices() {
  static const std::vector<Matrix> all = {
      {0.1, 42, 37, 530, Dist::kHomo, 0.25, 0},         {0.1, 7, 120, 300, Dist::kUniform, -0.5, 1.5},
      {0.3, 9, 64, 200, Dist::kNormal, 0.1, 0.7},       {1.0, 3, 20, 45, Dist::kUniform, 0.0, 1.0},
      {0.02, 123456789012345, 40, 2000, Dist::kNormal, -1.0, 2.0}, {0.5, 5, 1, 33, Dist::kHomo, -2.0, 0}};
  return all;
}

jg::Spec spec_of(const Matrix& m) { return jg::make_spec(m.prob, m.seed, m.rows, m.cols, m.dist); }

template <typename T>
std::vector<T> params_of(const Matrix& m) {
  std::vector<T> w = {emu_test::from_double<T>(m.a)};
  if (jg::num_params(m.dist) > 1) w.push_back(emu_test::from_double<T>(m.b));
  return w;
}

// The parameters as the kernels read them: rounded to T, then widened to double.
template <typename T>
std::pair<double, double> rounded_params(const Matrix& m) {
  const std::vector<T> w = params_of<T>(m);
  return {emu_test::to_double(w[0]), w.size() > 1 ? emu_test::to_double(w[1]) : 0.0};
}

// A as the host generator gives it, each value rounded once to T (as every op stores it).
template <typename T>
std::vector<double> host_dense(const Matrix& m) {
  const jg::Spec s = spec_of(m);
  const std::pair<double, double> params = rounded_params<T>(m);
  const double a = params.first, b = params.second;  // (a lambda cannot capture a structured binding in C++17)
  std::vector<double> dense(static_cast<std::size_t>(m.rows * m.cols), 0.0);
  for (std::int64_t r = 0; r < m.rows; ++r) {
    for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) {
      jg::for_each_in_block(s, r, blk, [&](std::int64_t c) {
        dense[r * m.cols + c] = emu_test::to_double(emu_test::from_double<T>(jg::entry_value(m.dist, jg::entry_variate(s, r, c), a, b)));
      });
    }
  }
  return dense;
}

class JitcEmu : public ::testing::Test {
 protected:
  void SetUp() override {
    cuda_emu::set_order(cuda_emu::Order::kShuffled, 3);
    (void)cudaGetLastError();
  }
  void TearDown() override { cuda_emu::set_order(cuda_emu::Order::kForward); }
};

template <typename T>
void check_materialize_equals_cpu(const Matrix& m) {
  SCOPED_TRACE(describe(m) + " " + emu_test::type_name<T>());
  const std::vector<T> w = params_of<T>(m);
  GuardedArray<T> weight(w), out(static_cast<std::size_t>(m.rows * m.cols), emu_test::from_double<T>(0.0));
  kj::MaterializeArgs a;
  a.spec = spec_of(m);
  a.weight = weight.data();
  a.dtype = emu_test::dtype_of<T>();
  a.out = out.data();
  for (int sms : {1, 3}) {
    a.num_sms = sms;
    ASSERT_EQ(kj::launch_materialize(a, nullptr), cudaSuccess) << cuda_emu::last_failure();
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      std::vector<T> cpu(out.size(), T(0));
      const auto [pa, pb] = rounded_params<T>(m);
      jg::materialize<T>(a.spec, pa, pb, cpu.data(), 0, m.rows);
      ASSERT_EQ(std::memcmp(cpu.data(), out.data(), cpu.size() * sizeof(T)), 0) << "A differs from the CPU's";
    } else {
      const std::vector<double> want = host_dense<T>(m);
      for (std::size_t i = 0; i < want.size(); ++i) ASSERT_EQ(emu_test::to_double(out[i]), want[i]) << i;
    }
  }
}

TEST_F(JitcEmu, MaterializedMatricesEqualTheCpuGeneratorBitForBit) {
  for (const Matrix& m : matrices()) {
    check_materialize_equals_cpu<float>(m);
    check_materialize_equals_cpu<double>(m);
    check_materialize_equals_cpu<__half>(m);
    check_materialize_equals_cpu<__nv_bfloat16>(m);
  }
}

template <typename T>
void check_csr_equals_cpu(const Matrix& m) {
  SCOPED_TRACE(describe(m) + " " + emu_test::type_name<T>());
  const jg::Spec s = spec_of(m);
  const std::int64_t cells = s.n_rows * s.n_blocks;
  GuardedArray<T> weight(params_of<T>(m));
  GuardedArray<std::int64_t> counts(static_cast<std::size_t>(cells), -1);
  kj::CsrArgs a;
  a.spec = s;
  a.weight = weight.data();
  a.dtype = emu_test::dtype_of<T>();
  a.counts = counts.data();
  ASSERT_EQ(kj::launch_block_counts(a, nullptr), cudaSuccess) << cuda_emu::last_failure();
  std::vector<std::int64_t> ends(static_cast<std::size_t>(cells));
  std::int64_t total = 0;
  for (std::int64_t k = 0; k < cells; ++k) ends[k] = total += counts[k];

  std::vector<std::int64_t> lengths(static_cast<std::size_t>(s.n_rows)), indptr(1, 0);
  jg::row_lengths(s, lengths.data(), 0, s.n_rows);
  for (std::int64_t r = 0; r < s.n_rows; ++r) {
    std::int64_t row_total = 0;
    for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) row_total += counts[r * s.n_blocks + blk];
    ASSERT_EQ(row_total, lengths[r]) << "row " << r;
    indptr.push_back(indptr.back() + lengths[r]);
  }
  ASSERT_EQ(total, indptr.back());

  GuardedArray<std::int64_t> ends_d(ends), indices(static_cast<std::size_t>(total), -1);
  GuardedArray<T> values(static_cast<std::size_t>(total));
  a.ends = ends_d.data();
  a.indices = indices.data();
  a.values = values.data();
  ASSERT_EQ(kj::launch_fill_csr(a, nullptr), cudaSuccess) << cuda_emu::last_failure();
  std::vector<std::int64_t> cpu_indices(static_cast<std::size_t>(total));
  std::vector<T> cpu_values(static_cast<std::size_t>(total));
  const auto [pa, pb] = rounded_params<T>(m);
  jg::fill_csr<T>(s, pa, pb, indptr.data(), cpu_indices.data(), cpu_values.data(), 0, s.n_rows);
  EXPECT_EQ(indices.to_vector(), cpu_indices);
  ASSERT_EQ(std::memcmp(values.data(), cpu_values.data(), cpu_values.size() * sizeof(T)), 0);
}

TEST_F(JitcEmu, TwoPassCsrEqualsTheCpuCsr) {
  for (const Matrix& m : matrices()) {
    check_csr_equals_cpu<float>(m);
    check_csr_equals_cpu<double>(m);
  }
}

TEST_F(JitcEmu, PatternWindowsEqualTheCpuPattern) {
  for (const Matrix& m : matrices()) {
    const jg::Spec s = spec_of(m);
    std::vector<jg::Window> windows = {{0, m.cols, true}, {0, m.cols, false}, {m.cols / 3, m.cols - 1, true},
                                       {m.cols / 2, m.cols / 2 + 1, false}, {m.cols, m.cols, false}};
    for (const jg::Window& w : windows) {
      SCOPED_TRACE(describe(m) + " window [" + std::to_string(w.col_begin) + ", " + std::to_string(w.col_end) + ")" +
                   (w.exclude_diagonal ? " without the diagonal" : ""));
      const std::int64_t n_blocks = jg::window_end_block(s, w) - jg::window_first_block(s, w);
      const std::int64_t cells = s.n_rows * n_blocks;
      GuardedArray<std::int64_t> counts(static_cast<std::size_t>(cells), -1);
      kj::PatternArgs a;
      a.spec = s;
      a.window = w;
      a.counts = counts.data();
      cuda_emu::clear_launches();
      ASSERT_EQ(kj::launch_pattern_counts(a, nullptr), cudaSuccess) << cuda_emu::last_failure();
      std::vector<std::int64_t> ends(static_cast<std::size_t>(cells));
      std::int64_t total = 0;
      for (std::int64_t k = 0; k < cells; ++k) ends[k] = total += counts[k];
      std::vector<std::int64_t> lengths(static_cast<std::size_t>(s.n_rows)), indptr(1, 0);
      jg::window_row_lengths(s, w, lengths.data(), 0, s.n_rows);
      for (std::int64_t r = 0; r < s.n_rows; ++r) indptr.push_back(indptr.back() + lengths[r]);
      ASSERT_EQ(total, indptr.back());
      GuardedArray<std::int64_t> ends_d(ends), indices(static_cast<std::size_t>(total), -1);
      a.ends = ends_d.data();
      a.indices = indices.data();
      ASSERT_EQ(kj::launch_fill_pattern(a, nullptr), cudaSuccess) << cuda_emu::last_failure();
      std::vector<std::int64_t> cpu(static_cast<std::size_t>(total));
      jg::fill_window_indices(s, w, indptr.data(), cpu.data(), 0, s.n_rows);
      EXPECT_EQ(indices.to_vector(), cpu);
      EXPECT_EQ(cuda_emu::launches().size(), cells > 0 ? 2u : 0u);  // an empty window launches nothing
    }
  }
}

template <typename T, typename X>
void check_matmul(const Matrix& m, std::int64_t batch, bool transpose, bool event, std::mt19937_64& rng) {
  SCOPED_TRACE(describe(m) + " " + emu_test::type_name<T>() + (std::is_same_v<X, SpikeByte> ? " bool x" : "") +
               (transpose ? " transposed" : "") + (event ? " event" : "") + " batch " + std::to_string(batch));
  using out_t = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const std::int64_t n_in = transpose ? m.rows : m.cols, n_out = transpose ? m.cols : m.rows;
  GuardedArray<T> weight(params_of<T>(m));
  GuardedArray<X> x(emu_test::random_input<X>(static_cast<std::size_t>(batch * n_in), 0.3, rng));
  GuardedArray<out_t> out(static_cast<std::size_t>(batch * n_out), out_t(0));
  kj::MatmulArgs a;
  a.spec = spec_of(m);
  a.weight = weight.data();
  a.dtype = emu_test::dtype_of<T>();
  a.x = x.data();
  a.x_is_bool = std::is_same_v<X, SpikeByte>;
  a.out = out.data();
  a.batch = batch;
  a.transpose = transpose;
  a.event = event;
  a.num_sms = 2;
  ASSERT_EQ(kj::launch_matmul(a, nullptr), cudaSuccess) << cuda_emu::last_failure();
  const std::vector<double> dense = host_dense<T>(m);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t o = 0; o < n_out; ++o) {
      double want = 0, magnitude = 0;
      for (std::int64_t i = 0; i < n_in; ++i) {
        const double v = transpose ? dense[i * m.cols + o] : dense[o * m.cols + i];
        const double term = v * emu_test::to_double(x[b * n_in + i]);
        want += term;
        magnitude += std::fabs(term);
      }
      ASSERT_TRUE(emu_test::close<out_t>(out[b * n_out + o], want, magnitude, static_cast<std::size_t>(n_in)))
          << "item " << b << " output " << o;
    }
  }
}

TEST_F(JitcEmu, MatmulsEqualTheDenseProductOfTheGeneratedMatrix) {
  std::mt19937_64 rng(21);
  for (const Matrix& m : matrices()) {
    for (bool transpose : {false, true}) {
      for (bool event : {false, true}) {
        check_matmul<float, float>(m, 3, transpose, event, rng);
        check_matmul<float, SpikeByte>(m, 10, transpose, event, rng);  // two batch chunks of 8
        check_matmul<double, double>(m, 1, transpose, event, rng);
      }
    }
  }
  for (bool transpose : {false, true}) {
    check_matmul<__half, __half>(matrices()[1], 2, transpose, false, rng);
    check_matmul<__nv_bfloat16, SpikeByte>(matrices()[2], 9, transpose, true, rng);
  }
}

// Deterministic mode: each output summed by one thread in the CPU op's order and rounding, so
// float32 and float64 equal jitc_cpu.h's gather<kEvent, double> and scatter bit for bit, and
// every type gives the same bits under any order of threads and blocks.
template <typename T, typename X>
std::vector<double> deterministic_matmul(const Matrix& m, const GuardedArray<X>& x, std::int64_t batch, bool transpose,
                                         bool event, cuda_emu::Order order) {
  using out_t = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const std::int64_t n_out = transpose ? m.cols : m.rows;
  GuardedArray<T> weight(params_of<T>(m));
  GuardedArray<out_t> out(static_cast<std::size_t>(batch * n_out), out_t(0));
  kj::MatmulArgs a;
  a.spec = spec_of(m);
  a.weight = weight.data();
  a.dtype = emu_test::dtype_of<T>();
  a.x = x.data();
  a.x_is_bool = std::is_same_v<X, SpikeByte>;
  a.out = out.data();
  a.batch = batch;
  a.transpose = transpose;
  a.event = event;
  a.deterministic = true;
  a.num_sms = 2;
  cuda_emu::set_order(order, 17);
  EXPECT_EQ(kj::launch_matmul(a, nullptr), cudaSuccess) << cuda_emu::last_failure();
  std::vector<double> result;
  for (std::size_t i = 0; i < out.size(); ++i) result.push_back(static_cast<double>(out[i]));
  return result;
}

template <typename T, typename X>
void check_deterministic_matmul(const Matrix& m, std::int64_t batch, bool transpose, bool event, std::mt19937_64& rng) {
  SCOPED_TRACE(describe(m) + " " + emu_test::type_name<T>() + (std::is_same_v<X, SpikeByte> ? " bool x" : "") +
               (transpose ? " transposed" : "") + (event ? " event" : "") + " batch " + std::to_string(batch));
  const std::int64_t n_in = transpose ? m.rows : m.cols, n_out = transpose ? m.cols : m.rows;
  GuardedArray<X> x(emu_test::random_input<X>(static_cast<std::size_t>(batch * n_in), 0.3, rng));
  const std::vector<double> got = deterministic_matmul<T, X>(m, x, batch, transpose, event, cuda_emu::Order::kShuffled);
  const std::vector<double> again = deterministic_matmul<T, X>(m, x, batch, transpose, event, cuda_emu::Order::kReverse);
  EXPECT_EQ(again, got);
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    jg::MatmulParams<T, X> p;
    p.spec = spec_of(m);
    std::tie(p.a, p.b) = rounded_params<T>(m);
    p.x = x.data();
    p.batch = batch;
    std::vector<T> cpu(static_cast<std::size_t>(batch * n_out), T(0));
    if (transpose) {
      if (event) {
        jg::scatter<true>(p, cpu.data(), 0, m.rows);
      } else {
        jg::scatter<false>(p, cpu.data(), 0, m.rows);
      }
    } else if (event) {
      jg::gather<true, double>(p, cpu.data(), 0, m.rows);
    } else {
      jg::gather<false, double>(p, cpu.data(), 0, m.rows);
    }
    for (std::size_t i = 0; i < cpu.size(); ++i) {
      ASSERT_EQ(got[i], static_cast<double>(cpu[i])) << "output " << i << " differs from the CPU op's";
    }
  } else {
    const std::vector<double> dense = host_dense<T>(m);
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t o = 0; o < n_out; ++o) {
        double want = 0, magnitude = 0;
        for (std::int64_t i = 0; i < n_in; ++i) {
          const double term = (transpose ? dense[i * m.cols + o] : dense[o * m.cols + i]) * emu_test::to_double(x[b * n_in + i]);
          want += term;
          magnitude += std::fabs(term);
        }
        ASSERT_TRUE(emu_test::close<float>(got[b * n_out + o], want, magnitude, static_cast<std::size_t>(n_in)));
      }
    }
  }
}

TEST_F(JitcEmu, DeterministicMatmulsEqualTheCpuOpBitForBit) {
  std::mt19937_64 rng(23);
  for (const Matrix& m : matrices()) {
    for (bool transpose : {false, true}) {
      for (bool event : {false, true}) {
        check_deterministic_matmul<float, float>(m, 3, transpose, event, rng);
        check_deterministic_matmul<float, SpikeByte>(m, 10, transpose, event, rng);
        check_deterministic_matmul<double, double>(m, 2, transpose, event, rng);
        check_deterministic_matmul<double, SpikeByte>(m, 1, transpose, event, rng);
      }
    }
  }
  for (bool transpose : {false, true}) {
    check_deterministic_matmul<__half, __half>(matrices()[1], 2, transpose, false, rng);
    check_deterministic_matmul<__nv_bfloat16, SpikeByte>(matrices()[2], 9, transpose, true, rng);
  }
}

template <typename T, typename X>
void check_param_grad(const Matrix& m, std::int64_t batch, bool transpose, std::mt19937_64& rng) {
  SCOPED_TRACE(describe(m) + " " + emu_test::type_name<T>() + (std::is_same_v<X, SpikeByte> ? " bool x" : "") +
               (transpose ? " transposed" : ""));
  const std::int64_t n_in = transpose ? m.rows : m.cols, n_out = transpose ? m.cols : m.rows;
  GuardedArray<T> weight(params_of<T>(m));
  GuardedArray<X> x(emu_test::random_input<X>(static_cast<std::size_t>(batch * n_in), 0.3, rng));
  GuardedArray<T> g(emu_test::random_values<T>(static_cast<std::size_t>(batch * n_out), rng));
  GuardedArray<double> grad(2, 0.0);
  kj::ParamGradArgs a;
  a.spec = spec_of(m);
  a.weight = weight.data();
  a.dtype = emu_test::dtype_of<T>();
  a.x = x.data();
  a.x_is_bool = std::is_same_v<X, SpikeByte>;
  a.grad_out = g.data();
  a.grad = grad.data();
  a.batch = batch;
  a.transpose = transpose;
  a.num_sms = 2;
  ASSERT_EQ(kj::launch_param_grad(a, nullptr), cudaSuccess) << cuda_emu::last_failure();
  // Deterministic: the blocks' sums in block order, the same bits under any order of blocks.
  std::vector<double> deterministic[2];
  const cuda_emu::Order orders[2] = {cuda_emu::Order::kShuffled, cuda_emu::Order::kReverse};
  for (int r = 0; r < 2; ++r) {
    GuardedArray<double> ordered(2, 0.0), partials(static_cast<std::size_t>(2 * kj::param_grad_blocks(a)), -1.0);
    kj::ParamGradArgs d = a;
    d.grad = ordered.data();
    d.block_partials = partials.data();
    cuda_emu::set_order(orders[r], 5 + r);
    ASSERT_EQ(kj::launch_param_grad(d, nullptr), cudaSuccess) << cuda_emu::last_failure();
    deterministic[r] = ordered.to_vector();
  }
  cuda_emu::set_order(cuda_emu::Order::kShuffled, 3);
  EXPECT_EQ(deterministic[0], deterministic[1]);
  const jg::Spec s = a.spec;
  double want_a = 0, want_b = 0, magnitude = 0;
  for (std::int64_t r = 0; r < m.rows; ++r) {
    for (std::int64_t blk = 0; blk < s.n_blocks; ++blk) {
      jg::for_each_in_block(s, r, blk, [&](std::int64_t c) {
        double sum = 0;
        for (std::int64_t b = 0; b < batch; ++b) {
          sum += transpose ? emu_test::to_double(x[b * n_in + r]) * emu_test::to_double(g[b * n_out + c])
                           : emu_test::to_double(g[b * n_out + r]) * emu_test::to_double(x[b * n_in + c]);
        }
        double da, db;
        jg::entry_basis(m.dist, jg::entry_variate(s, r, c), &da, &db);
        want_a += da * sum;
        want_b += db * sum;
        magnitude += (std::fabs(da) + std::fabs(db)) * std::fabs(sum);
      });
    }
  }
  const double tol = 1e-12 * magnitude + 1e-300;
  EXPECT_NEAR(grad[0], want_a, tol);
  EXPECT_NEAR(grad[1], want_b, tol);
  EXPECT_NEAR(deterministic[0][0], want_a, tol);
  EXPECT_NEAR(deterministic[0][1], want_b, tol);
}

TEST_F(JitcEmu, ParameterGradientsEqualTheSumOverEntries) {
  std::mt19937_64 rng(22);
  for (const Matrix& m : matrices()) {
    for (bool transpose : {false, true}) {
      check_param_grad<float, float>(m, 3, transpose, rng);
      check_param_grad<double, SpikeByte>(m, 2, transpose, rng);
      check_param_grad<__half, __half>(m, 1, transpose, rng);
    }
  }
}

template <typename T>
void check_poison(Dist dist, double a, double b, bool expect_poison) {
  SCOPED_TRACE(emu_test::type_name<T>() + " a=" + std::to_string(a) + " b=" + std::to_string(b));
  GuardedArray<T> weight(std::vector<T>{emu_test::from_double<T>(a), emu_test::from_double<T>(b)});
  GuardedArray<T> out(777, emu_test::from_double<T>(0.5));
  kj::PoisonArgs p;
  p.weight = weight.data();
  p.dtype = emu_test::dtype_of<T>();
  p.dist = dist;
  p.out = out.data();
  p.numel = static_cast<std::int64_t>(out.size());
  ASSERT_EQ(kj::launch_poison_if_invalid(p, nullptr), cudaSuccess) << cuda_emu::last_failure();
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double v = emu_test::to_double(out[i]);
    if (expect_poison) {
      ASSERT_TRUE(std::isnan(v)) << i;
    } else {
      ASSERT_EQ(v, 0.5) << i;
    }
  }
}

TEST_F(JitcEmu, InvalidParametersPoisonTheOutputAndValidOnesLeaveIt) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  check_poison<float>(Dist::kUniform, 1.0, 0.5, true);  // high < low
  check_poison<double>(Dist::kNormal, 0.0, -0.1, true);  // std < 0
  check_poison<__half>(Dist::kUniform, nan, 1.0, true);
  check_poison<__nv_bfloat16>(Dist::kNormal, 0.0, inf, true);
  check_poison<float>(Dist::kUniform, 0.5, 0.5, false);  // an empty range is a constant
  check_poison<double>(Dist::kNormal, -3.0, 0.0, false);
  check_poison<__half>(Dist::kNormal, 1.0, 2.0, false);
  cuda_emu::clear_launches();
  check_poison<float>(Dist::kHomo, nan, 0.0, false);  // a homogeneous NaN propagates by itself
  EXPECT_TRUE(cuda_emu::launches().empty());
}

}  // namespace
