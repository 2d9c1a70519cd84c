// The CUDA CSR kernels (kernels/csr/csr_matmul.cu, csr_grad_update.cu) under the emulator,
// against naive float64 references: every launch path (gather with 8, 32 and 256 threads per
// row; the scatter by rows and the event scatter by 32-row tiles, with one and several
// slices), each element type (float32, float64, float16, bfloat16), int32 and int64 indices,
// float and bool inputs (bool bytes other than 1 among them), batches, and structures with
// empty, long and duplicate rows, out-of-range indices and a decreasing indptr.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "emu/cuda_emu.h"
#include "emu_test_util.h"
#include "kernels/csr/csr_cuda.h"

namespace {

namespace kc = brain::kernels::csr::cuda;
using cuda_emu::GuardedArray;
using emu_test::SpikeByte;

struct Structure {
  std::int64_t n_rows = 0, n_cols = 0;
  std::vector<std::int64_t> indptr, indices;
  std::int64_t nnz() const { return static_cast<std::int64_t>(indices.size()); }
};

// Row lengths uniform in [min_len, max_len], a tenth of the rows empty, columns drawn with
// replacement (so rows hold duplicates) in no particular order.
Structure random_structure(std::int64_t n_rows, std::int64_t n_cols, int min_len, int max_len, std::mt19937_64& rng) {
  Structure s;
  s.n_rows = n_rows;
  s.n_cols = n_cols;
  std::uniform_int_distribution<int> len(min_len, max_len);
  std::uniform_int_distribution<std::int64_t> col(0, n_cols - 1);
  std::bernoulli_distribution empty(0.1);
  s.indptr.push_back(0);
  for (std::int64_t i = 0; i < n_rows; ++i) {
    const int n = empty(rng) ? 0 : len(rng);
    for (int k = 0; k < n; ++k) s.indices.push_back(col(rng));
    s.indptr.push_back(static_cast<std::int64_t>(s.indices.size()));
  }
  return s;
}

// The entries a kernel uses: row i's range clamped to [0, nnz), indices outside [0, n_cols)
// skipped (kernels/csr/csr_cuda.h).
template <typename F>
void for_each_used_entry(const Structure& s, F&& f) {
  for (std::int64_t i = 0; i < s.n_rows; ++i) {
    const std::int64_t k0 = std::max<std::int64_t>(s.indptr[i], 0);
    const std::int64_t k1 = std::min<std::int64_t>(s.indptr[i + 1], s.nnz());
    for (std::int64_t k = k0; k < k1; ++k) {
      const std::int64_t j = s.indices[k];
      if (j >= 0 && j < s.n_cols) f(i, k, j);
    }
  }
}

template <typename I>
std::vector<I> narrow(const std::vector<std::int64_t>& v) {
  return std::vector<I>(v.begin(), v.end());
}

struct MatmulCase {
  std::int64_t batch = 1;
  bool transpose = false;
  bool event = false;
  bool homo = false;
  int num_sms = 1;
  double active = 0.3;
};

std::string describe(const MatmulCase& c) {
  return std::string(c.transpose ? "scatter" : "gather") + (c.event ? " event" : "") + (c.homo ? " homo" : "") +
         " batch " + std::to_string(c.batch) + " sms " + std::to_string(c.num_sms);
}

// Runs launch_matmul for one case and checks every output against the float64 reference.
template <typename T, typename I, typename X>
void check_matmul(const Structure& s, const MatmulCase& c, std::mt19937_64& rng) {
  SCOPED_TRACE(emu_test::type_name<T>() + (sizeof(I) == 8 ? " int64 " : " int32 ") +
               (std::is_same_v<X, SpikeByte> ? "bool x " : "") + describe(c));
  const std::int64_t n_in = c.transpose ? s.n_rows : s.n_cols;
  const std::int64_t n_out = c.transpose ? s.n_cols : s.n_rows;
  using out_t = std::conditional_t<std::is_same_v<T, double>, double,
                                   std::conditional_t<std::is_same_v<T, float>, float, float>>;
  GuardedArray<I> indptr(narrow<I>(s.indptr)), indices(narrow<I>(s.indices));
  GuardedArray<T> weights(emu_test::random_values<T>(c.homo ? 1 : static_cast<std::size_t>(s.nnz()), rng));
  GuardedArray<X> x(emu_test::random_input<X>(static_cast<std::size_t>(c.batch * n_in), c.active, rng));
  // The gather writes every output (T); the scatter adds into a zeroed out_t buffer.
  GuardedArray<T> gathered(static_cast<std::size_t>(c.batch * n_out), emu_test::from_double<T>(12345.0));
  GuardedArray<out_t> scattered(static_cast<std::size_t>(c.batch * n_out), out_t(0));

  kc::MatmulArgs a;
  a.indptr = indptr.data();
  a.indices = indices.data();
  a.index64 = sizeof(I) == 8;
  a.weights = weights.data();
  a.homo = c.homo;
  a.dtype = emu_test::dtype_of<T>();
  a.x = x.data();
  a.x_is_bool = std::is_same_v<X, SpikeByte>;
  a.out = c.transpose ? static_cast<void*>(scattered.data()) : static_cast<void*>(gathered.data());
  a.n_rows = s.n_rows;
  a.n_cols = s.n_cols;
  a.batch = c.batch;
  a.nnz = s.nnz();
  a.transpose = c.transpose;
  a.event = c.event;
  a.num_sms = c.num_sms;
  ASSERT_EQ(kc::launch_matmul(a, nullptr), cudaSuccess) << cuda_emu::last_failure();

  std::vector<double> want(static_cast<std::size_t>(c.batch * n_out), 0.0), magnitude(want.size(), 0.0);
  std::vector<std::size_t> terms(want.size(), 0);
  for (std::int64_t b = 0; b < c.batch; ++b) {
    for_each_used_entry(s, [&](std::int64_t i, std::int64_t k, std::int64_t j) {
      const double w = emu_test::to_double(weights[c.homo ? 0 : static_cast<std::size_t>(k)]);
      const std::int64_t in = c.transpose ? i : j, out = c.transpose ? j : i;
      const double term = w * emu_test::to_double(x[static_cast<std::size_t>(b * n_in + in)]);
      want[b * n_out + out] += term;
      magnitude[b * n_out + out] += std::fabs(term);
      ++terms[b * n_out + out];
    });
  }
  for (std::size_t o = 0; o < want.size(); ++o) {
    const double got = c.transpose ? static_cast<double>(scattered[o]) : emu_test::to_double(gathered[o]);
    if (c.transpose) {
      ASSERT_TRUE(emu_test::close<out_t>(got, want[o], magnitude[o], terms[o])) << "output " << o;
    } else {
      ASSERT_TRUE(emu_test::close<T>(got, want[o], magnitude[o], terms[o])) << "output " << o;
    }
  }
}

template <typename T, typename I>
void check_all_inputs(const Structure& s, MatmulCase c, std::mt19937_64& rng) {
  for (bool transpose : {false, true}) {
    for (bool event : {false, true}) {
      c.transpose = transpose;
      c.event = event;
      check_matmul<T, I, T>(s, c, rng);
      check_matmul<T, I, SpikeByte>(s, c, rng);
    }
  }
}

template <typename T>
void check_every_index_type(const Structure& s, const MatmulCase& c, std::mt19937_64& rng) {
  check_all_inputs<T, std::int32_t>(s, c, rng);
  check_all_inputs<T, std::int64_t>(s, c, rng);
}

class CsrMatmulEmu : public ::testing::TestWithParam<cuda_emu::Order> {
 protected:
  void SetUp() override {
    cuda_emu::set_order(GetParam(), 11);
    (void)cudaGetLastError();
  }
  void TearDown() override { cuda_emu::set_order(cuda_emu::Order::kForward); }
};

TEST_P(CsrMatmulEmu, ShortRowsEveryTypeAndInput) {
  std::mt19937_64 rng(1);
  const Structure s = random_structure(300, 170, 1, 20, rng);  // gather: 8 threads per row
  for (std::int64_t batch : {1, 3}) {
    MatmulCase c;
    c.batch = batch;
    check_every_index_type<float>(s, c, rng);
    check_every_index_type<double>(s, c, rng);
    check_every_index_type<__half>(s, c, rng);
    check_every_index_type<__nv_bfloat16>(s, c, rng);
  }
}

TEST_P(CsrMatmulEmu, TypicalRowsWithAHomogeneousWeightAndManySms) {
  std::mt19937_64 rng(2);
  const Structure s = random_structure(150, 400, 20, 140, rng);  // a warp per row
  for (int sms : {1, 4}) {
    MatmulCase c;
    c.batch = 2;
    c.homo = true;
    c.num_sms = sms;
    check_every_index_type<float>(s, c, rng);
    c.homo = false;
    check_every_index_type<double>(s, c, rng);
  }
}

TEST_P(CsrMatmulEmu, LongRowsUseABlockPerRowAndSlicedScatters) {
  std::mt19937_64 rng(3);
  const Structure s = random_structure(10, 3000, 600, 1400, rng);  // a block per row; rows in slices
  MatmulCase c;
  c.batch = 2;
  cuda_emu::clear_launches();
  check_all_inputs<float, std::int32_t>(s, c, rng);
  check_all_inputs<__half, std::int64_t>(s, c, rng);
  int sliced = 0;
  for (const auto& l : cuda_emu::launches()) sliced += l.kernel.rfind("scatter", 0) == 0 && l.grid.y > 1;
  EXPECT_EQ(sliced, 8);  // every scatter: 2 types x 2 inputs x (event or not)
}

TEST_P(CsrMatmulEmu, SparseFiringOverManyRowsTakesTheTiledEventScatter) {
  std::mt19937_64 rng(4);
  const Structure s = random_structure(1000, 300, 5, 60, rng);
  MatmulCase c;
  c.batch = 2;
  c.active = 0.02;
  c.transpose = true;
  c.event = true;
  c.num_sms = 1;  // 128 warp slots for 1000 rows: 32-row tiles with a ballot
  cuda_emu::clear_launches();
  check_matmul<float, std::int32_t, SpikeByte>(s, c, rng);
  check_matmul<double, std::int64_t, double>(s, c, rng);
  check_matmul<__nv_bfloat16, std::int32_t, __nv_bfloat16>(s, c, rng);
  ASSERT_EQ(cuda_emu::launches().size(), 3u);
  for (const auto& l : cuda_emu::launches()) EXPECT_EQ(l.kernel.rfind("scatter_event_kernel<", 0), 0u) << l.kernel;
  c.num_sms = 16;  // 2048 warp slots: a warp per row
  cuda_emu::clear_launches();
  check_matmul<float, std::int32_t, SpikeByte>(s, c, rng);
  ASSERT_EQ(cuda_emu::launches().size(), 1u);
  EXPECT_EQ(cuda_emu::launches()[0].kernel.rfind("scatter_kernel<", 0), 0u) << cuda_emu::launches()[0].kernel;
}

INSTANTIATE_TEST_SUITE_P(Orders, CsrMatmulEmu, ::testing::Values(cuda_emu::Order::kForward, cuda_emu::Order::kShuffled),
                         [](const auto& info) { return std::string(cuda_emu::order_name(info.param)); });

// The launcher's choice of threads per row shows in the grid when no SM cap applies.
TEST(CsrMatmulEmuPaths, ThreadsPerRowFollowTheAverageRowLength) {
  std::mt19937_64 rng(5);
  struct Expect {
    int min_len, max_len;
    std::int64_t rows;
    int threads_per_row;
  };
  for (const Expect& e : {Expect{2, 12, 256, 8}, Expect{60, 120, 64, 32}, Expect{900, 1100, 6, 256}}) {
    Structure s = random_structure(e.rows, 2000, e.min_len, e.max_len, rng);
    MatmulCase c;
    c.num_sms = 100000;
    cuda_emu::clear_launches();
    check_matmul<float, std::int64_t, float>(s, c, rng);
    ASSERT_EQ(cuda_emu::launches().size(), 1u);
    EXPECT_EQ(cuda_emu::launches()[0].grid.x, static_cast<unsigned>((e.rows * e.threads_per_row + 255) / 256))
        << "average row " << s.nnz() / s.n_rows;
  }
}

TEST(CsrMatmulEmuPaths, EmptyShapesLaunchNothing) {
  std::mt19937_64 rng(6);
  for (auto [rows, cols] : {std::pair<std::int64_t, std::int64_t>{0, 5}, {5, 0}}) {
    Structure s = random_structure(rows, std::max<std::int64_t>(cols, 1), 0, 0, rng);
    s.n_cols = cols;
    for (bool transpose : {false, true}) {
      MatmulCase c;
      c.transpose = transpose;
      cuda_emu::clear_launches();
      check_matmul<float, std::int32_t, float>(s, c, rng);
      // A gather over no columns still writes its zero rows; every other empty case launches nothing.
      EXPECT_EQ(cuda_emu::launches().size(), (!transpose && rows > 0) ? 1u : 0u) << rows << "x" << cols;
    }
  }
}

// Out-of-range indices and a decreasing indptr (what brain::validate_csr reports) are skipped,
// and nothing is read or written outside the buffers (they fault past their ends).
TEST(CsrMatmulEmuPaths, BadStructuresAreSkippedWithoutStrayAccesses) {
  std::mt19937_64 rng(7);
  Structure s = random_structure(200, 90, 1, 40, rng);
  s.indices[3] = -1;
  s.indices[10] = s.n_cols;
  s.indices[s.indices.size() - 1] = 1 << 30;
  s.indptr[50] = s.indptr[52] + 7;   // row 49 runs past row 51, row 50 runs backwards
  s.indptr[120] = -5;                // row 119 ends before the start, row 120 starts there
  s.indptr[s.n_rows] = s.nnz() + 9;  // the last row claims entries past nnz
  for (int sms : {1, 8}) {
    MatmulCase c;
    c.batch = 2;
    c.num_sms = sms;
    check_every_index_type<float>(s, c, rng);
    check_every_index_type<__half>(s, c, rng);
  }
}

// ---- Weight gradient and plasticity -----------------------------------------------------------

template <typename T, typename I, typename X>
void check_weight_grad(const Structure& s, std::int64_t batch, bool transpose, bool accumulate, std::mt19937_64& rng) {
  SCOPED_TRACE(emu_test::type_name<T>() + (transpose ? " transposed" : "") + (accumulate ? " accumulate" : "") +
               (std::is_same_v<X, SpikeByte> ? " bool x" : ""));
  const std::int64_t n_x = transpose ? s.n_rows : s.n_cols, n_g = transpose ? s.n_cols : s.n_rows;
  GuardedArray<I> indptr(narrow<I>(s.indptr)), indices(narrow<I>(s.indices));
  GuardedArray<X> x(emu_test::random_input<X>(static_cast<std::size_t>(batch * n_x), 0.4, rng));
  GuardedArray<T> g(emu_test::random_values<T>(static_cast<std::size_t>(batch * n_g), rng));
  const std::vector<T> before = emu_test::random_values<T>(static_cast<std::size_t>(s.nnz()), rng);
  GuardedArray<T> dw(before);
  kc::WeightGradArgs a;
  a.indptr = indptr.data();
  a.indices = indices.data();
  a.index64 = sizeof(I) == 8;
  a.dtype = emu_test::dtype_of<T>();
  a.x = x.data();
  a.x_is_bool = std::is_same_v<X, SpikeByte>;
  a.grad_out = g.data();
  a.grad_weights = dw.data();
  a.accumulate = accumulate;
  a.n_rows = s.n_rows;
  a.n_cols = s.n_cols;
  a.batch = batch;
  a.nnz = s.nnz();
  a.transpose = transpose;
  ASSERT_EQ(kc::launch_weight_grad(a, nullptr), cudaSuccess) << cuda_emu::last_failure();
  std::vector<double> want(static_cast<std::size_t>(s.nnz()), 0.0);
  for_each_used_entry(s, [&](std::int64_t i, std::int64_t k, std::int64_t j) {
    for (std::int64_t b = 0; b < batch; ++b) {
      want[k] += emu_test::to_double(x[b * n_x + (transpose ? i : j)]) * emu_test::to_double(g[b * n_g + (transpose ? j : i)]);
    }
  });
  for (std::int64_t k = 0; k < s.nnz(); ++k) {
    const double expect = (accumulate ? emu_test::to_double(before[k]) : 0.0) + want[k];
    ASSERT_TRUE(emu_test::close<T>(emu_test::to_double(dw[k]), expect, 2.0 * static_cast<double>(batch) + 1.0,
                                   static_cast<std::size_t>(batch)))
        << "entry " << k;
  }
}

TEST(CsrGradEmu, WeightGradientEqualsTheOuterProductOnTheStructure) {
  std::mt19937_64 rng(8);
  Structure s = random_structure(130, 70, 0, 50, rng);
  s.indices[5] = -3;  // skipped: its gradient is zero
  for (bool transpose : {false, true}) {
    for (bool accumulate : {false, true}) {
      check_weight_grad<float, std::int32_t, float>(s, 3, transpose, accumulate, rng);
      check_weight_grad<double, std::int64_t, SpikeByte>(s, 2, transpose, accumulate, rng);
      check_weight_grad<__half, std::int32_t, SpikeByte>(s, 4, transpose, accumulate, rng);
      check_weight_grad<__nv_bfloat16, std::int64_t, __nv_bfloat16>(s, 1, transpose, accumulate, rng);
    }
  }
}

// Pre-spike (rows, target = identity) and post-spike (columns through a CSC permutation)
// updates with clipping; the kernel's float arithmetic is repeated here, so the weights must
// match bit for bit.
template <typename T, typename I, typename S>
void check_owner_update(const Structure& s, bool by_column, std::mt19937_64& rng) {
  SCOPED_TRACE(emu_test::type_name<T>() + (by_column ? " by column" : " by row") +
               (std::is_same_v<S, SpikeByte> ? " bool spikes" : ""));
  using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;
  std::vector<std::int64_t> ptr = s.indptr, source = s.indices, target;
  std::int64_t n_owners = s.n_rows, n_trace = s.n_cols;
  if (by_column) {  // CSC: entries grouped by column, source = row, target = position in CSR
    n_owners = s.n_cols;
    n_trace = s.n_rows;
    ptr.assign(static_cast<std::size_t>(s.n_cols + 1), 0);
    for (std::int64_t j : s.indices) ++ptr[j + 1];
    for (std::int64_t j = 0; j < s.n_cols; ++j) ptr[j + 1] += ptr[j];
    std::vector<std::int64_t> fill(ptr.begin(), ptr.end() - 1);
    source.assign(static_cast<std::size_t>(s.nnz()), 0);
    target.assign(static_cast<std::size_t>(s.nnz()), 0);
    for (std::int64_t i = 0; i < s.n_rows; ++i) {
      for (std::int64_t k = s.indptr[i]; k < s.indptr[i + 1]; ++k) {
        const std::int64_t e = fill[s.indices[k]]++;
        source[e] = i;
        target[e] = k;
      }
    }
  }
  GuardedArray<I> ptr_d(narrow<I>(ptr)), source_d(narrow<I>(source));
  GuardedArray<I> target_d(narrow<I>(by_column ? target : std::vector<std::int64_t>(1, 0)));
  const std::vector<T> w0 = emu_test::random_values<T>(static_cast<std::size_t>(s.nnz()), rng);
  GuardedArray<T> w(w0);
  GuardedArray<S> spikes(emu_test::random_input<S>(static_cast<std::size_t>(n_owners), 0.5, rng));
  GuardedArray<T> trace(emu_test::random_values<T>(static_cast<std::size_t>(n_trace), rng));
  kc::OwnerUpdateArgs a;
  a.ptr = ptr_d.data();
  a.source = source_d.data();
  a.target = by_column ? target_d.data() : nullptr;
  a.index64 = sizeof(I) == 8;
  a.dtype = emu_test::dtype_of<T>();
  a.weights = w.data();
  a.spikes = spikes.data();
  a.spikes_is_bool = std::is_same_v<S, SpikeByte>;
  a.trace = trace.data();
  a.n_owners = n_owners;
  a.n_trace = n_trace;
  a.nnz = s.nnz();
  a.scale = 0.75;
  a.has_min = true;
  a.w_min = -0.5;
  a.has_max = true;
  a.w_max = 0.6;
  ASSERT_EQ(kc::launch_owner_update(a, nullptr), cudaSuccess) << cuda_emu::last_failure();
  std::vector<T> want = w0;
  for (std::int64_t o = 0; o < n_owners; ++o) {
    const double spike = emu_test::to_double(spikes[o]);
    if (spike == 0.0) continue;
    const acc_t factor = static_cast<acc_t>(a.scale) * static_cast<acc_t>(spike);
    for (std::int64_t e = ptr[o]; e < ptr[o + 1]; ++e) {
      const std::int64_t t = by_column ? target[e] : e;
      acc_t v = static_cast<acc_t>(emu_test::to_double(want[t])) +
                factor * static_cast<acc_t>(emu_test::to_double(trace[source[e]]));
      v = std::min(std::max(v, static_cast<acc_t>(a.w_min)), static_cast<acc_t>(a.w_max));
      want[t] = emu_test::from_double<T>(v);
    }
  }
  for (std::int64_t k = 0; k < s.nnz(); ++k) {
    ASSERT_EQ(emu_test::to_double(w[k]), emu_test::to_double(want[k])) << "entry " << k;
  }
}

TEST(CsrPlasticityEmu, PreAndPostSpikeUpdatesClipLikeTheReference) {
  std::mt19937_64 rng(9);
  // Distinct columns within a row, so each entry is one synapse and each update touches it once.
  Structure s = random_structure(120, 80, 0, 30, rng);
  for (std::int64_t i = 0; i < s.n_rows; ++i) {
    std::sort(s.indices.begin() + s.indptr[i], s.indices.begin() + s.indptr[i + 1]);
    for (std::int64_t k = s.indptr[i] + 1; k < s.indptr[i + 1]; ++k) {
      if (s.indices[k] <= s.indices[k - 1]) s.indices[k] = -1;  // a duplicate: mark
    }
  }
  Structure clean;  // the structure without the marked duplicates
  clean.n_rows = s.n_rows;
  clean.n_cols = s.n_cols;
  clean.indptr.push_back(0);
  for (std::int64_t i = 0; i < s.n_rows; ++i) {
    for (std::int64_t k = s.indptr[i]; k < s.indptr[i + 1]; ++k) {
      if (s.indices[k] >= 0) clean.indices.push_back(s.indices[k]);
    }
    clean.indptr.push_back(clean.nnz());
  }
  for (bool by_column : {false, true}) {
    check_owner_update<float, std::int32_t, float>(clean, by_column, rng);
    check_owner_update<double, std::int64_t, SpikeByte>(clean, by_column, rng);
    check_owner_update<__half, std::int64_t, __half>(clean, by_column, rng);
    check_owner_update<__nv_bfloat16, std::int32_t, SpikeByte>(clean, by_column, rng);
  }
}

}  // namespace
