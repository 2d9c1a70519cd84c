// The C++ API of the CSR ops, through the dispatcher: values, autograd and errors.
#include <functional>

#include <brain/csr.h>
#include <brain/ops.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "csrc/ops/csr_common.h"

namespace {

brain::CsrMatrix example() {
  // [[1, 0, 2], [0, 0, 0], [0, 3, 0], [4, 0, 5]]
  auto dense = torch::tensor({{1., 0., 2.}, {0., 0., 0.}, {0., 3., 0.}, {4., 0., 5.}},
                             torch::kFloat64);
  return brain::CsrMatrix::from_dense(dense, torch::kInt32);
}

TEST(CsrOps, FromDenseRoundTripsAndMatmulMatchesDense) {
  const auto a = example();
  EXPECT_EQ(a.indptr.scalar_type(), torch::kInt32);
  EXPECT_TRUE(torch::equal(a.indptr, torch::tensor({0, 2, 2, 3, 5}, torch::kInt32)));
  const auto dense = a.to_dense();
  const auto x = torch::tensor({1., 10., 100.}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(brain::ops::csr_matmul(a.indptr, a.indices, a.weights, x, {4, 3}),
                              dense.matmul(x)));
  const auto spikes = torch::tensor({true, false, false, true});
  EXPECT_TRUE(torch::allclose(
      brain::ops::event_csr_matmul(a.indptr, a.indices, a.weights, spikes, {4, 3}, true),
      dense.t().matmul(spikes.to(torch::kFloat64))));
}

TEST(CsrOps, AutogradThroughTheCppApi) {
  auto a = example();
  auto w = a.weights.clone().requires_grad_();
  auto x = torch::tensor({1., 2., 3., 4.}, torch::kFloat64).requires_grad_();
  auto y = brain::ops::csr_matmul(a.indptr, a.indices, w, x, {4, 3}, /*transpose=*/true);
  y.sum().backward();
  // d(sum A^T x)/dx_i = row sum of A; d/dw_k = x[row(k)].
  EXPECT_TRUE(torch::allclose(x.grad(), torch::tensor({3., 0., 3., 9.}, torch::kFloat64)));
  EXPECT_TRUE(torch::allclose(w.grad(), torch::tensor({1., 1., 3., 4., 4.}, torch::kFloat64)));
}

TEST(CsrOps, DoubleBackwardThroughTheCppApi) {
  // y = A(w) x; the gradient penalty |dL/dx|^2 of L = sum(y^2) is differentiated again, the
  // same on the dense matrix.
  const auto a = example();
  const auto x0 = torch::tensor({1., -2., 0.5}, torch::kFloat64);
  auto penalty_grads = [&](const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& f) {
    auto w = a.weights.clone().requires_grad_();
    auto x = x0.clone().requires_grad_();
    const auto gx = torch::autograd::grad({f(w, x).square().sum()}, {x}, {}, true, true)[0];
    return torch::autograd::grad({gx.square().sum()}, {w, x});
  };
  const auto got = penalty_grads([&](const torch::Tensor& w, const torch::Tensor& x) {
    return brain::ops::csr_matmul(a.indptr, a.indices, w, x, {4, 3});
  });
  const auto rows = torch::tensor({0, 0, 2, 3, 3}, torch::kLong);
  const auto want = penalty_grads([&](const torch::Tensor& w, const torch::Tensor& x) {
    auto dense = torch::zeros({4, 3}, torch::kFloat64).index_put({rows, a.indices.to(torch::kLong)}, w);
    return dense.matmul(x);
  });
  EXPECT_TRUE(torch::allclose(got[0], want[0]));
  EXPECT_TRUE(torch::allclose(got[1], want[1]));
}

TEST(CsrOps, PlasticityBumpsTheVersionLikeAnInPlaceOp) {
  const auto a = example();
  auto w = a.weights.clone().requires_grad_();
  const auto x = torch::tensor({1., 2., 3.}, torch::kFloat64);
  const auto y = brain::ops::csr_matmul(a.indptr, a.indices, w, x, {4, 3});  // saves w
  {
    torch::NoGradGuard no_grad;
    brain::ops::csr_update_on_pre_(w, a.indptr, a.indices, torch::tensor({true, false, false, true}),
                                   torch::ones({3}, torch::kFloat64), 0.1, std::nullopt, std::nullopt);
  }
  EXPECT_EQ(w._version(), 1u);
  EXPECT_THROW(y.sum().backward(), c10::Error);  // "modified by an inplace operation"
  // With grad mode on, an update of weights that require grad is refused.
  EXPECT_THROW(brain::ops::csr_update_on_pre_(w, a.indptr, a.indices, torch::tensor({true, false, false, true}),
                                              torch::ones({3}, torch::kFloat64), 0.1, std::nullopt, std::nullopt),
               c10::Error);
}

TEST(CsrOps, BadInputThrowsNamingTheArgument) {
  const auto a = example();
  const auto x = torch::ones({3}, torch::kFloat64);
  EXPECT_THROW(
      {
        try {
          brain::ops::csr_matmul(a.indptr, a.indices, a.weights, torch::ones({5}, torch::kFloat64),
                                 {4, 3});
        } catch (const c10::Error& e) {
          EXPECT_NE(std::string(e.what()).find("x's last dimension must be n_cols = 3"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      c10::Error);
  auto bad = a.indices.clone();
  bad[0] = 7;
  EXPECT_THROW(brain::ops::csr_matmul(a.indptr, bad, a.weights, x, {4, 3}), c10::Error);
  EXPECT_THROW(brain::ops::validate_csr(a.indptr, bad, {4, 3}), c10::Error);
  EXPECT_NO_THROW(brain::ops::validate_csr(a.indptr, a.indices, {4, 3}));
}

TEST(CsrOps, CscViewAndPostUpdate) {
  const auto a = example();
  auto [csc_indptr, csc_rows, perm] = brain::ops::csr_to_csc(a.indptr, a.indices, {4, 3});
  EXPECT_TRUE(torch::equal(csc_indptr, torch::tensor({0, 2, 3, 5}, torch::kInt32)));
  EXPECT_TRUE(torch::equal(csc_rows, torch::tensor({0, 3, 2, 0, 3}, torch::kInt32)));
  EXPECT_TRUE(torch::equal(a.weights.index_select(0, perm),
                           torch::tensor({1., 4., 3., 2., 5.}, torch::kFloat64)));
  auto w = a.weights.clone();
  // Column 2 spikes: entries (0, 2) and (3, 2) move by 0.5 * pre_trace[row], capped at 5.
  brain::ops::csr_update_on_post_(w, csc_indptr, csc_rows, perm,
                                  torch::tensor({false, false, true}),
                                  torch::tensor({2., 0., 0., 4.}, torch::kFloat64), 0.5,
                                  std::nullopt, 5.0);
  EXPECT_TRUE(torch::equal(w, torch::tensor({1., 3., 3., 4., 5.}, torch::kFloat64)));
}

// The deterministic-mode path of the CUDA transposed ops is device-generic ATen code over the
// non-transposed op; here it runs on the CPU against a float64 dense reference.
TEST(CsrOps, TransposedProductByColumnGatherMatchesDense) {
  torch::manual_seed(3);
  for (const auto index_dtype : {torch::kInt32, torch::kInt64}) {
    for (const int64_t n_rows : {0, 1, 37}) {
      for (const int64_t n_cols : {0, 1, 23}) {
        const auto dense = torch::rand({n_rows, n_cols}, torch::kFloat64)
                               .mul_(torch::rand({n_rows, n_cols}, torch::kFloat64).lt(0.3));
        const auto a = brain::CsrMatrix::from_dense(dense, index_dtype);
        const auto x = torch::randn({4, n_rows}, torch::kFloat64);
        const auto spikes = torch::rand({4, n_rows}).lt(0.4);
        for (const bool event : {false, true}) {
          const auto xin = event ? spikes : x;
          const auto want = xin.to(torch::kFloat64).matmul(dense);
          const auto got = brain::ops::detail::csr_transposed_matmul_by_gather(
              a.indptr, a.indices, a.weights, false, xin, n_rows, n_cols, event);
          ASSERT_EQ(got.sizes(), want.sizes());
          EXPECT_TRUE(torch::allclose(got, want, 1e-12, 1e-12)) << n_rows << "x" << n_cols;
          const auto one = brain::ops::detail::csr_transposed_matmul_by_gather(
              a.indptr, a.indices, a.weights, false, xin[1], n_rows, n_cols, event);
          EXPECT_TRUE(torch::allclose(one, want[1], 1e-12, 1e-12));
          // One weight for every entry (homogeneous connectivity).
          const auto homo = brain::ops::detail::csr_transposed_matmul_by_gather(
              a.indptr, a.indices, torch::tensor(0.5, torch::kFloat64), true, xin, n_rows,
              n_cols, event);
          const auto pattern = dense.ne(0).to(torch::kFloat64);
          EXPECT_TRUE(torch::allclose(homo, xin.to(torch::kFloat64).matmul(pattern) * 0.5, 1e-12, 1e-12));
        }
      }
    }
  }
}

TEST(CsrOps, TransposedProductByColumnGatherSkipsOutOfRangeEntries) {
  // Rows 0: cols {1, 9}, row 1: cols {-2, 2}; columns 9 and -2 lie outside [0, 3).
  const auto indptr = torch::tensor({0, 2, 4}, torch::kInt64);
  const auto indices = torch::tensor({1, 9, -2, 2}, torch::kInt64);
  const auto weights = torch::tensor({1., 2., 3., 4.}, torch::kFloat64);
  const auto x = torch::tensor({10., 100.}, torch::kFloat64);
  const auto got = brain::ops::detail::csr_transposed_matmul_by_gather(indptr, indices, weights,
                                                                       false, x, 2, 3, false);
  EXPECT_TRUE(torch::equal(got, torch::tensor({0., 10., 400.}, torch::kFloat64))) << got;
  // indptr ending short of nnz: the entry past it has no row and adds nothing.
  const auto short_ptr = torch::tensor({0, 1, 3}, torch::kInt64);
  const auto got_short = brain::ops::detail::csr_transposed_matmul_by_gather(
      short_ptr, torch::tensor({0, 1, 2, 2}, torch::kInt64), weights, false, x, 2, 3, false);
  EXPECT_TRUE(torch::equal(got_short, torch::tensor({10., 200., 300.}, torch::kFloat64))) << got_short;
}

}  // namespace
