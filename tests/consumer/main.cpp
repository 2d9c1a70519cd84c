#include <cmath>
#include <cstdio>
#include <string>

#include <ATen/ATen.h>
#include <brain/brain.h>

// A model defined outside libbrain: the module layer's virtual interface must work across
// the installed library boundary.
class Decay : public brain::DynamicalSystem {
 public:
  Decay() : DynamicalSystem("Decay") {}
  void update(const brain::Context& ctx) override {
    set_state("x", brain::integrators::exp_euler_linear(state("x"), at::full({2}, -0.1, at::kDouble),
                                                        at::zeros({2}, at::kDouble), ctx.dt));
  }

 protected:
  void reset_own_state(int64_t) override { set_state("x", at::ones(state_shape(2), at::kDouble)); }
};

int main() {
  const std::string got = brain::version();
  if (got != EXPECTED_BRAIN_VERSION || got != BRAIN_VERSION) {
    std::fprintf(stderr, "version mismatch: library %s, header %s, expected %s\n", got.c_str(),
                 BRAIN_VERSION, EXPECTED_BRAIN_VERSION);
    return 1;
  }
  const auto info = brain::build_info();
  if (info.torch_runtime_version != info.torch_build_version) {
    std::fprintf(stderr, "torch mismatch: built %s, running %s\n",
                 info.torch_build_version.c_str(), info.torch_runtime_version.c_str());
    return 1;
  }
  // An operator through the dispatcher: A^T @ spikes for A = [[0, 2], [3, 0]].
  const auto y = brain::ops::event_csr_matmul(at::tensor({0, 1, 2}), at::tensor({1, 0}),
                                              at::tensor({2.0, 3.0}), at::ones({2}, at::kBool),
                                              {2, 2}, /*transpose=*/true);
  if (!at::equal(y, at::tensor({3.0, 2.0}))) {
    std::fprintf(stderr, "event_csr_matmul gave the wrong result\n");
    return 1;
  }
  // A simulation with the runner: x(t) = e^{-0.1 t} after 10 ms.
  auto model = std::make_shared<Decay>();
  model->reset_state();
  brain::RunnerOptions options;
  options.dt = 0.5;
  options.progress = 0;
  options.monitors = {{"x"}};
  const auto result = brain::Runner(model, options).run(10.0);
  const double x = result.values.at("x")[-1][0].item<double>();
  if (result.steps != 20 || std::abs(x - std::exp(-1.0)) > 1e-12) {
    std::fprintf(stderr, "runner: %lld steps, x = %.15f\n", static_cast<long long>(result.steps), x);
    return 1;
  }
  std::printf("consumer OK: libbrain %s on torch %s, %zu operators\n", got.c_str(),
              info.torch_runtime_version.c_str(), info.ops.size());
  return 0;
}
