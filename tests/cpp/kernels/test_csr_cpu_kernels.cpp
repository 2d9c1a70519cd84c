// The torch-free CSR loops on a hand-written matrix whose products are known exactly.
#include "kernels/csr/csr_cpu.h"

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

namespace {

namespace k = brain::kernels::csr;

// A = [[1, 0, 2],
//      [0, 0, 0],
//      [0, 3, 0],
//      [4, 0, 5]]   (row 1 empty)
struct Fixture {
  std::vector<int32_t> indptr{0, 2, 2, 3, 5};
  std::vector<int32_t> indices{0, 2, 1, 0, 2};
  std::vector<double> weights{1, 2, 3, 4, 5};

  template <typename x_t>
  k::Params<double, int32_t, x_t> params(const std::vector<x_t>& x, int64_t batch = 1) const {
    k::Params<double, int32_t, x_t> p;
    p.indptr = indptr.data();
    p.indices = indices.data();
    p.weights = weights.data();
    p.x = x.data();
    p.n_rows = 4;
    p.n_cols = 3;
    p.batch = batch;
    p.nnz = static_cast<int64_t>(indices.size());
    return p;
  }
};

TEST(CsrCpuKernels, GatherComputesAx) {
  Fixture f;
  const std::vector<double> x{1, 10, 100};
  std::vector<double> out(4, -1);
  ASSERT_TRUE((k::gather<false, double>(f.params(x), out.data(), 0, 4).ok()));
  EXPECT_EQ(out, (std::vector<double>{201, 0, 30, 504}));
}

TEST(CsrCpuKernels, EventGatherOnSpikeBytesEqualsFloatGather) {
  Fixture f;
  // Any non-zero byte is a spike, as torch reads a bool tensor's bytes (a uint8 tensor viewed
  // as bool can hold 2 or 255): each must count as 1, not as its byte value.
  const brain::kernels::SpikeByte spikes[3] = {{255}, {0}, {2}};
  k::Params<double, int32_t, brain::kernels::SpikeByte> p;
  p.indptr = f.indptr.data();
  p.indices = f.indices.data();
  p.weights = f.weights.data();
  p.x = spikes;
  p.n_rows = 4;
  p.n_cols = 3;
  p.nnz = static_cast<int64_t>(f.indices.size());
  std::vector<double> out(4, -1);
  ASSERT_TRUE((k::gather<true, double>(p, out.data(), 0, 4).ok()));
  EXPECT_EQ(out, (std::vector<double>{3, 0, 0, 9}));
}

TEST(CsrCpuKernels, ScatterComputesATx) {
  Fixture f;
  const std::vector<double> x{1, 7, 10, 100};  // row 1 is empty: its 7 goes nowhere
  std::vector<double> out(3, 0);
  ASSERT_TRUE((k::scatter<false>(f.params(x), 0, 0, 4, out.data()).ok()));
  EXPECT_EQ(out, (std::vector<double>{401, 30, 502}));
}

TEST(CsrCpuKernels, EventScatterSkipsInactiveRows) {
  Fixture f;
  const std::vector<double> x{0, 0, 0, 2};
  std::vector<double> out(3, 0);
  ASSERT_TRUE((k::scatter<true>(f.params(x), 0, 0, 4, out.data()).ok()));
  EXPECT_EQ(out, (std::vector<double>{8, 0, 10}));
}

TEST(CsrCpuKernels, HomogeneousWeightUsesTheSingleValue) {
  Fixture f;
  f.weights = {0.5};
  const std::vector<double> x{1, 10, 100};
  auto p = f.params(x);
  p.homo = true;
  std::vector<double> out(4, -1);
  ASSERT_TRUE((k::gather<false, double>(p, out.data(), 0, 4).ok()));
  EXPECT_EQ(out, (std::vector<double>{50.5, 0, 5, 50.5}));
}

TEST(CsrCpuKernels, BatchedGatherUsesEachBatchRow) {
  Fixture f;
  const std::vector<double> x{1, 10, 100, 2, 20, 200};
  std::vector<double> out(8, -1);
  ASSERT_TRUE((k::gather<false, double>(f.params(x, 2), out.data(), 0, 8).ok()));
  EXPECT_EQ(out, (std::vector<double>{201, 0, 30, 504, 402, 0, 60, 1008}));
}

TEST(CsrCpuKernels, WeightGradIsOuterProductOnThePattern) {
  Fixture f;
  // Scatter form: dW[k] = x[row(k)] * g[col(k)].
  const std::vector<double> x{1, 5, 2, 3};
  const std::vector<double> g{10, 20, 30};
  std::vector<double> dw(5, -1);
  ASSERT_TRUE((k::weight_grad<true, double>(f.indptr.data(), f.indices.data(), x.data(), g.data(),
                                            4, 3, 1, 5, 0, 4, dw.data(), static_cast<double*>(nullptr))
                   .ok()));
  EXPECT_EQ(dw, (std::vector<double>{10, 30, 40, 30, 90}));
  std::vector<double> row_sums(4, -1);
  ASSERT_TRUE((k::weight_grad<true, double>(f.indptr.data(), f.indices.data(), x.data(), g.data(),
                                            4, 3, 1, 5, 0, 4, static_cast<double*>(nullptr),
                                            row_sums.data())
                   .ok()));
  EXPECT_EQ(row_sums, (std::vector<double>{40, 0, 40, 120}));
}

TEST(CsrCpuKernels, ReportsOutOfRangeIndexAndDecreasingIndptr) {
  Fixture f;
  const std::vector<double> x{1, 1, 1};
  std::vector<double> out(4);
  f.indices[3] = 3;
  auto status = k::gather<false, double>(f.params(x), out.data(), 0, 4);
  EXPECT_EQ(status.kind, k::Status::kIndexOutOfRange);
  EXPECT_EQ(status.pos, 3);
  f.indices[3] = 0;
  f.indptr = {0, 2, 1, 3, 5};
  status = k::gather<false, double>(f.params(x), out.data(), 0, 4);
  EXPECT_EQ(status.kind, k::Status::kDecreasingIndptr);
  EXPECT_EQ(status.pos, 1);
}

// Found by fuzzing: with a decreasing step in a later row, an earlier, increasing row can
// reach past nnz (here row 0 spans [0, 9) of 3 entries). The row is refused before any of its
// entries is read; ASan (scripts/sanitize.sh) would report the read otherwise.
TEST(CsrCpuKernels, RowsReachingPastNnzAreRefusedBeforeReading) {
  const std::vector<int32_t> indptr{0, 9, 3};
  const std::vector<int32_t> indices{0, 1, 2};
  const std::vector<double> weights{1, 2, 3};
  const std::vector<double> x{1, 1};
  k::Params<double, int32_t, double> p;
  p.indptr = indptr.data();
  p.indices = indices.data();
  p.weights = weights.data();
  p.x = x.data();
  p.n_rows = 2;
  p.n_cols = 3;
  p.nnz = 3;
  std::vector<double> out(3, 0);
  const k::Status scatter = k::scatter<true>(p, 0, 0, 2, out.data());
  EXPECT_EQ(scatter.kind, k::Status::kDecreasingIndptr);
  EXPECT_EQ(scatter.pos, 0);
  p.n_cols = 2;  // gather: x has n_cols entries
  std::vector<double> gathered(2, 0);
  EXPECT_EQ((k::gather<false, double>(p, gathered.data(), 0, 2).kind), k::Status::kDecreasingIndptr);
  std::vector<double> dw(3, 0);
  EXPECT_EQ((k::weight_grad<true, double>(indptr.data(), indices.data(), x.data(), x.data(), 2, 3, 1, 3, 0, 2,
                                          dw.data(), static_cast<double*>(nullptr))
                 .kind),
            k::Status::kDecreasingIndptr);
}

}  // namespace
