// The C++ API of the JIT-connectivity ops and JitComm, through the dispatcher: values,
// autograd and errors.
#include <brain/models/synapses.h>
#include <brain/ops.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

TEST(JitcOps, MatmulsUseTheMaterializedMatrix) {
  const auto w = torch::tensor({-1.0, 2.0}, torch::kFloat64);
  const auto a = brain::ops::jitc_materialize(w, 0.2, 5, {30, 40}, "uniform");
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{30, 40}));
  const double density = (a != 0).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(density, 0.2, 0.05);
  const auto x = torch::randn({3, 40}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(brain::ops::jitc_matmul(x, w, 0.2, 5, {30, 40}, "uniform"),
                              x.matmul(a.t())));
  const auto spikes = torch::rand({30}) < 0.3;
  EXPECT_TRUE(torch::allclose(
      brain::ops::event_jitc_matmul(spikes, w, 0.2, 5, {30, 40}, "uniform", true),
      spikes.to(torch::kFloat64).matmul(a)));
  const auto [indptr, indices, values] = brain::ops::jitc_to_csr(w, 0.2, 5, {30, 40}, "uniform");
  EXPECT_EQ(indptr[-1].item<int64_t>(), (a != 0).sum().item<int64_t>());
  EXPECT_TRUE(torch::allclose(brain::ops::csr_matmul(indptr, indices, values, x, {30, 40}),
                              x.matmul(a.t())));
}

TEST(JitcOps, GradientsFlowToXAndTheWeightParameters) {
  const auto w = torch::tensor({0.5}, torch::kFloat64).requires_grad_();
  const auto x = torch::randn({20}, torch::kFloat64).requires_grad_();
  const auto y = brain::ops::jitc_matmul(x, w, 0.3, 1, {10, 20});
  y.sum().backward();
  const auto mask = brain::ops::jitc_materialize(torch::tensor({1.0}, torch::kFloat64), 0.3, 1, {10, 20});
  EXPECT_TRUE(torch::allclose(x.grad(), 0.5 * mask.sum(0)));
  EXPECT_TRUE(torch::allclose(w.grad(), (mask.matmul(x.detach())).sum().reshape({1})));
}

TEST(JitcOps, BadInputNamesTheArgument) {
  const auto w = torch::tensor({1.0});
  try {
    brain::ops::jitc_matmul(torch::ones({8}), w, 0.0, 0, {4, 8});
    FAIL() << "prob = 0 accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("prob must be in (0, 1], got 0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(brain::ops::jitc_matmul(torch::ones({8}), w, 0.5, 0, {4, 8}, "cauchy"), c10::Error);
  EXPECT_THROW(brain::ops::jitc_matmul(torch::ones({7}), w, 0.5, 0, {4, 8}), c10::Error);
  EXPECT_THROW(brain::ops::jitc_materialize(torch::tensor({0.0, -1.0}), 0.5, 0, {4, 8}, "normal"),
               c10::Error);
}

TEST(JitComm, ProjectsSpikesThroughTheRegeneratedMatrix) {
  auto comm = std::make_shared<brain::JitComm>(50, 30, 0.1, 9, torch::tensor({0.0, 1.0}), "normal");
  const auto spikes = torch::rand({50}) < 0.2;
  const auto a = brain::ops::jitc_materialize(torch::tensor({0.0, 1.0}), 0.1, 9, {50, 30}, "normal");
  EXPECT_TRUE(torch::allclose(comm->forward(spikes), spikes.to(torch::kFloat32).matmul(a), 1e-5, 1e-5));
  EXPECT_EQ(comm->n_pre(), 50);
  EXPECT_EQ(comm->n_post(), 30);
  EXPECT_EQ(comm->parameters().size(), 1u);
  const auto [indptr, indices, values] = comm->to_csr();
  EXPECT_EQ(indptr.size(0), 51);
  EXPECT_THROW(brain::JitComm(50, 30, 1.5, 9, torch::tensor(1.0)), c10::Error);
  EXPECT_THROW(brain::JitComm(50, 30, 0.1, 9, torch::tensor({0.0, -1.0}), "normal"), c10::Error);
}

}  // namespace
