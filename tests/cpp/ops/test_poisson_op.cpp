// brain::ops::poisson_spikes, the counter-based Poisson draw: firing statistics, independence
// of neurons, steps and batch items, the shard property, layout and thread independence, and
// bad input. The bit-level reference (an independent numpy Philox) is in
// tests/python/test_poisson_op.py.
#include <brain/ops.h>

#include <cmath>
#include <string>

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using brain::ops::poisson_spikes;

double fraction(const at::Tensor& spikes) { return spikes.to(torch::kFloat64).mean().item<double>(); }

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "(no error)";
}

TEST(PoissonOp, FiresWithProbabilityRateTimesDt) {
  const int64_t n = 200000;
  for (double rate : {10.0, 200.0, 5000.0, 9000.0}) {  // p = rate * 0.1 ms
    const double p = rate * 1e-4;
    const auto s = poisson_spikes(torch::full({n}, rate), 0.1, 42, 7);
    ASSERT_EQ(s.scalar_type(), torch::kBool);
    const double sigma = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(fraction(s), p, 5 * sigma) << "rate " << rate;
  }
  // Over many steps of one neuron as well (the step is part of the counter).
  int64_t count = 0;
  const auto r = torch::full({2}, 50.0);
  for (int64_t step = 0; step < 40000; ++step) count += poisson_spikes(r, 1.0, 3, step)[1].item<bool>();
  EXPECT_NEAR(count / 40000.0, 0.05, 5 * std::sqrt(0.05 * 0.95 / 40000));
}

TEST(PoissonOp, ZeroNegativeAndCertainRates) {
  EXPECT_FALSE(poisson_spikes(torch::zeros({10000}), 0.1, 1, 0).any().item<bool>());
  EXPECT_FALSE(poisson_spikes(torch::full({10000}, -50.0), 0.1, 1, 0).any().item<bool>());
  EXPECT_TRUE(poisson_spikes(torch::full({10000}, 1000.0), 1.0, 1, 0).all().item<bool>());  // p = 1
  EXPECT_TRUE(poisson_spikes(torch::full({10000}, 1e9), 1.0, 1, 0).all().item<bool>());
}

TEST(PoissonOp, NeuronsStepsAndBatchItemsAreIndependent) {
  const int64_t n = 100000;
  const double p = 0.3;
  const auto rates = torch::full({2, n}, p * 1000.0);
  const auto s = poisson_spikes(rates, 1.0, 11, 5).to(torch::kFloat64);
  const auto next = poisson_spikes(rates, 1.0, 11, 6).to(torch::kFloat64);
  const auto other_seed = poisson_spikes(rates, 1.0, 12, 5).to(torch::kFloat64);
  auto corr = [](const at::Tensor& a, const at::Tensor& b) {
    const auto x = a - a.mean(), y = b - b.mean();
    return ((x * y).mean() / (x.std(false) * y.std(false))).item<double>();
  };
  const double bound = 5.0 / std::sqrt(static_cast<double>(n) / 2);  // 5 sigma of a null correlation
  // The two neurons of one Philox call (even j and j + 1), neighbours across pairs, batch items,
  // consecutive steps and seeds.
  const auto even = s[0].slice(0, 0, n, 2), odd = s[0].slice(0, 1, n, 2);
  EXPECT_LT(std::abs(corr(even, odd)), bound);
  EXPECT_LT(std::abs(corr(odd.slice(0, 0, n / 2 - 1), even.slice(0, 1, n / 2))), bound);
  EXPECT_LT(std::abs(corr(s[0], s[1])), bound);
  EXPECT_LT(std::abs(corr(s[0], next[0])), bound);
  EXPECT_LT(std::abs(corr(s[0], other_seed[0])), bound);
  EXPECT_FALSE(torch::equal(s[0], s[1]));
}

TEST(PoissonOp, TheSameKeyDrawsTheSameSpikes) {
  const auto rates = torch::rand({3, 1000}) * 400;
  const auto a = poisson_spikes(rates, 0.5, 99, 123456789012LL);
  EXPECT_TRUE(torch::equal(a, poisson_spikes(rates.clone(), 0.5, 99, 123456789012LL)));
  // Steps beyond 2^32 use the counter's high word: they are not step mod 2^32.
  const auto r = torch::full({4000}, 500.0);
  EXPECT_FALSE(torch::equal(poisson_spikes(r, 1.0, 1, 5), poisson_spikes(r, 1.0, 1, (int64_t{1} << 32) + 5)));
  // Seeds are 64-bit: the high half counts.
  EXPECT_FALSE(torch::equal(poisson_spikes(r, 1.0, 1, 5), poisson_spikes(r, 1.0, 1 + (uint64_t{1} << 32), 5)));
}

TEST(PoissonOp, AShardDrawsItsShareOfTheWholePopulation) {
  const int64_t n = 1001;
  const auto rates = torch::rand({2, n}, torch::kFloat64) * 3000;
  const auto whole = poisson_spikes(rates, 0.1, 5, 17);
  for (int64_t begin : {0, 1, 2, 499, 500, 1000}) {
    for (int64_t end : {begin, begin + 1, begin + 2, n}) {
      if (end > n) continue;
      const auto part = poisson_spikes(rates.slice(1, begin, end), 0.1, 5, 17, begin);
      EXPECT_TRUE(torch::equal(part, whole.slice(1, begin, end))) << begin << ".." << end;
    }
  }
}

TEST(PoissonOp, LayoutDtypeAndThreadsDoNotChangeTheSpikes) {
  const int64_t n = 9000;  // more than one parallel block per row
  const auto rates = (torch::rand({n, 3}) * 2000).round();  // integers: exact in every dtype
  const auto expected = poisson_spikes(rates.t().contiguous(), 0.25, 8, 3);
  EXPECT_TRUE(torch::equal(poisson_spikes(rates.t(), 0.25, 8, 3), expected));  // non-contiguous
  EXPECT_TRUE(torch::equal(poisson_spikes(rates.t().to(torch::kFloat64), 0.25, 8, 3), expected));
  const auto bf16 = rates.t().contiguous().to(torch::kBFloat16);
  EXPECT_TRUE(torch::equal(poisson_spikes(bf16, 0.25, 8, 3), poisson_spikes(bf16.to(torch::kFloat), 0.25, 8, 3)));
  // Leading dimensions are batch items in row-major order.
  const auto r3 = rates.t().contiguous().reshape({3, 1, n});
  EXPECT_TRUE(torch::equal(poisson_spikes(r3, 0.25, 8, 3).reshape({3, n}), expected));
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const auto serial = poisson_spikes(rates.t().contiguous(), 0.25, 8, 3);
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(serial, expected));
}

TEST(PoissonOp, EmptyInputs) {
  EXPECT_EQ(poisson_spikes(torch::zeros({0}), 0.1, 1, 0).sizes(), (std::vector<int64_t>{0}));
  EXPECT_EQ(poisson_spikes(torch::zeros({0, 5}), 0.1, 1, 0).sizes(), (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(poisson_spikes(torch::zeros({4, 0}), 0.1, 1, 0).sizes(), (std::vector<int64_t>{4, 0}));
}

TEST(PoissonOp, MetaTensorsGiveTheShapeWithTheSameChecks) {
  const auto meta = torch::empty({7, 5}, torch::TensorOptions().device(torch::kMeta));
  const auto s = poisson_spikes(meta, 0.1, 1, 0);
  EXPECT_EQ(s.sizes(), meta.sizes());
  EXPECT_EQ(s.scalar_type(), torch::kBool);
  EXPECT_THROW(poisson_spikes(meta, -1.0, 1, 0), c10::Error);
  // Batch items index a 32-bit counter word; meta tensors make the check testable unallocated.
  const auto too_many = torch::empty({(int64_t{1} << 32) + 1, 1}, torch::TensorOptions().device(torch::kMeta));
  EXPECT_NE(error_of([&] { poisson_spikes(too_many, 0.1, 1, 0); }).find("at most 2^32 batch items"),
            std::string::npos);
  EXPECT_NO_THROW(poisson_spikes(torch::empty({int64_t{1} << 32, 1}, torch::TensorOptions().device(torch::kMeta)),
                                 0.1, 1, 0));
}

TEST(PoissonOp, BadInputNamesTheArgument) {
  const auto r = torch::full({4}, 10.0);
  EXPECT_NE(error_of([&] { poisson_spikes(torch::tensor(10.0), 0.1, 1, 0); }).find("rates must be [..., n]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { poisson_spikes(torch::ones({4}, torch::kLong), 0.1, 1, 0); }).find("floating"),
            std::string::npos);
  EXPECT_NE(error_of([&] { poisson_spikes(r, 0.0, 1, 0); }).find("dt must be > 0"), std::string::npos);
  EXPECT_NE(error_of([&] { poisson_spikes(r, std::nan(""), 1, 0); }).find("dt must be > 0"), std::string::npos);
  EXPECT_NE(error_of([&] { poisson_spikes(r, 0.1, 1, -1); }).find("step must be >= 0"), std::string::npos);
  EXPECT_NE(error_of([&] { poisson_spikes(r, 0.1, 1, 0, -2); }).find("offset"), std::string::npos);
  EXPECT_NE(error_of([&] { poisson_spikes(r, 0.1, 1, 0, (int64_t{1} << 32) - 3); }).find("2^32"),
            std::string::npos);
  EXPECT_NO_THROW(poisson_spikes(r, 0.1, 1, 0, (int64_t{1} << 32) - 4));
}

}  // namespace
