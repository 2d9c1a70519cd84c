#include <brain/train/datasets.h>

#include <array>

#include <torch/torch.h>

namespace brain::data {

at::Tensor lorenz(int64_t steps, double dt, int64_t burn_in, LorenzParams p) {
  TORCH_CHECK(steps >= 0 && burn_in >= 0, "lorenz: steps and burn_in must be >= 0");
  TORCH_CHECK(dt > 0, "lorenz: dt must be > 0, got ", dt);
  using V = std::array<double, 3>;
  // Scalar RK4 on doubles: the generic tensor integrators would cost ~100x more per step here.
  auto f = [&p](const V& y) {
    return V{p.sigma * (y[1] - y[0]), y[0] * (p.rho - y[2]) - y[1], y[0] * y[1] - p.beta * y[2]};
  };
  auto axpy = [](const V& y, double a, const V& k) { return V{y[0] + a * k[0], y[1] + a * k[1], y[2] + a * k[2]}; };
  auto rk4 = [&](const V& y) {
    const V k1 = f(y), k2 = f(axpy(y, dt / 2, k1)), k3 = f(axpy(y, dt / 2, k2)), k4 = f(axpy(y, dt, k3));
    V out;
    for (int i = 0; i < 3; ++i) out[i] = y[i] + dt / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
    return out;
  };
  V y{1.0, 1.0, 1.0};
  for (int64_t i = 0; i < burn_in; ++i) y = rk4(y);
  at::Tensor out = torch::empty({steps, 3}, at::kDouble);
  auto acc = out.accessor<double, 2>();
  for (int64_t i = 0; i < steps; ++i) {
    for (int k = 0; k < 3; ++k) acc[i][k] = y[static_cast<size_t>(k)];
    y = rk4(y);
  }
  return out;
}

}  // namespace brain::data
