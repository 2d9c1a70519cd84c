// The fast engine's spike delivery split by postsynaptic columns (kernels/fastsim/fast_cpu.h):
// every split of the columns, run in any order, must give the whole delivery's bits, since
// the engine hands the parts to threads and promises results independent of their number.
#include "kernels/fastsim/fast_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace {

namespace fs = brain::kernels::fastsim;
namespace jitc = brain::kernels::jitc;

// A random CSR matrix with rows sorted (or shuffled) and repeated columns, as users may build.
template <typename index_t>
struct RandomCsr {
  std::vector<index_t> indptr{0}, indices;
  std::vector<float> weights;
  RandomCsr(int64_t n_rows, int64_t n_cols, int max_row, bool sorted, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> length(0, max_row);
    std::uniform_int_distribution<int64_t> col(0, n_cols - 1);
    std::uniform_real_distribution<float> w(-1.0f, 1.0f);
    for (int64_t r = 0; r < n_rows; ++r) {
      std::vector<index_t> row(static_cast<size_t>(length(gen)));
      for (auto& c : row) c = static_cast<index_t>(col(gen));
      if (!row.empty()) row.push_back(row.front());  // a repeated column
      if (sorted) std::sort(row.begin(), row.end());
      indices.insert(indices.end(), row.begin(), row.end());
      indptr.push_back(static_cast<index_t>(indices.size()));
    }
    for (size_t k = 0; k < indices.size(); ++k) weights.push_back(w(gen));
  }
};

std::vector<int32_t> some_rows(int64_t n_rows, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<int32_t> spikes;
  for (int32_t r = 0; r < n_rows; ++r) {
    if (gen() % 3 == 0) spikes.push_back(r);
  }
  return spikes;
}

// Bit patterns: a difference in the last place must fail.
template <typename T>
void expect_same_bits(const std::vector<T>& a, const std::vector<T>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(0, std::memcmp(&a[i], &b[i], sizeof(T))) << what << ": column " << i << ": " << a[i] << " vs " << b[i];
  }
}

template <typename index_t>
void check_csr_splits(bool sorted, bool homogeneous) {
  const int64_t n_rows = 300, n_cols = 257;
  const RandomCsr<index_t> A(n_rows, n_cols, 40, sorted, sorted ? 7 : 8);
  ASSERT_EQ(fs::rows_sorted(A.indptr.data(), A.indices.data(), n_rows), sorted);
  const std::vector<int32_t> spikes = some_rows(n_rows, 11);
  const float* weights = homogeneous ? nullptr : A.weights.data();
  // Arrivals land on what is already pending: a non-zero start shows the order of the sums.
  std::vector<float> whole(static_cast<size_t>(n_cols), 0.1f);
  fs::deliver_csr<float, index_t>(A.indptr.data(), A.indices.data(), weights, 0.3f, spikes.data(),
                                  static_cast<int64_t>(spikes.size()), whole.data());
  double total = 0;
  for (float v : whole) total += std::abs(v - 0.1f);
  ASSERT_GT(total, 1.0) << "the delivery must reach some columns";
  for (int64_t parts : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{7}, int64_t{64}, n_cols}) {
    std::vector<float> split(static_cast<size_t>(n_cols), 0.1f);
    // The parts from the last to the first: threads finish in any order.
    for (int64_t i = parts - 1; i >= 0; --i) {
      fs::deliver_csr_columns<float, index_t>(A.indptr.data(), A.indices.data(), weights, 0.3f, spikes.data(),
                                              static_cast<int64_t>(spikes.size()), split.data(), n_cols * i / parts,
                                              n_cols * (i + 1) / parts, sorted);
    }
    expect_same_bits(whole, split, std::to_string(parts) + " parts");
  }
}

TEST(FastDelivery, CsrColumnSplitsGiveTheWholeDeliverysBits) {
  for (bool sorted : {true, false}) {
    for (bool homogeneous : {true, false}) {
      SCOPED_TRACE(std::string(sorted ? "sorted" : "unsorted") + (homogeneous ? ", homogeneous" : ", per synapse"));
      check_csr_splits<int32_t>(sorted, homogeneous);
      check_csr_splits<int64_t>(sorted, homogeneous);
    }
  }
}

TEST(FastDelivery, RowsSortedAllowsRepeatsAndSeesOneInversion) {
  const std::vector<int32_t> indptr{0, 3, 3, 5};
  std::vector<int32_t> indices{1, 1, 4, 0, 2};
  EXPECT_TRUE(fs::rows_sorted(indptr.data(), indices.data(), 3));
  indices[4] = 0;  // equal: still sorted
  EXPECT_TRUE(fs::rows_sorted(indptr.data(), indices.data(), 3));
  indices[2] = 0;  // 1, 1, 0
  EXPECT_FALSE(fs::rows_sorted(indptr.data(), indices.data(), 3));
  // Rows are sorted each on its own: a row may start below the last one's end.
  const std::vector<int32_t> two{0, 2, 4};
  const std::vector<int32_t> cols{5, 9, 0, 1};
  EXPECT_TRUE(fs::rows_sorted(two.data(), cols.data(), 2));
}

// JIT connectivity: splits on block boundaries and inside blocks, of the whole matrix and of
// one rank's window of columns (pending indexed from the window's first column).
TEST(FastDelivery, JitColumnSplitsGiveTheWholeDeliverysBits) {
  const int64_t n_rows = 200, n_cols = 5000;
  for (auto dist : {jitc::Dist::kHomo, jitc::Dist::kNormal}) {
    const jitc::Spec spec = jitc::make_spec(0.02, 1234, n_rows, n_cols, dist);
    ASSERT_GT(spec.n_blocks, 1);
    const std::vector<int32_t> spikes = some_rows(n_rows, 5);
    const double a = 0.5, b = 0.25;
    for (auto [lo, hi] : {std::pair<int64_t, int64_t>{0, n_cols}, {1000, 3333}}) {
      std::vector<float> whole(static_cast<size_t>(hi - lo), 0.1f);
      fs::deliver_jit<float>(spec, a, b, spikes.data(), static_cast<int64_t>(spikes.size()), whole.data(), lo, hi);
      const int64_t block = int64_t{1} << spec.block_shift;
      std::vector<std::vector<int64_t>> cuts = {{lo, hi}, {lo, lo + 1, hi}, {lo, (lo + hi) / 2, hi}};
      std::vector<int64_t> on_blocks{lo};
      for (int64_t c = (lo / block + 1) * block; c < hi; c += block) on_blocks.push_back(c);
      on_blocks.push_back(hi);
      cuts.push_back(on_blocks);
      for (const auto& cut : cuts) {
        std::vector<float> split(whole.size(), 0.1f);
        for (size_t i = cut.size() - 1; i-- > 0;) {
          fs::deliver_jit_columns<float>(spec, a, b, spikes.data(), static_cast<int64_t>(spikes.size()), split.data(),
                                         lo, cut[i], cut[i + 1]);
        }
        expect_same_bits(whole, split, "window [" + std::to_string(lo) + ", " + std::to_string(hi) + "), " +
                                           std::to_string(cut.size() - 1) + " parts");
      }
    }
  }
}

}  // namespace
