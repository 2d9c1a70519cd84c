// Small generated data sets for the reference tasks and tests.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include <brain/export.h>

namespace brain::data {

// The Lorenz (1963) system dx/dt = sigma (y - x), dy/dt = x (rho - z) - y, dz/dt = x y - beta z,
// integrated by RK4 with step dt from (1, 1, 1) after burn_in discarded steps: [steps, 3] float64.
struct LorenzParams {
  double sigma = 10.0, rho = 28.0, beta = 8.0 / 3.0;
};
BRAIN_API at::Tensor lorenz(int64_t steps, double dt = 0.01, int64_t burn_in = 1000, LorenzParams p = {});

}  // namespace brain::data
