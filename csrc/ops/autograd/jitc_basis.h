// The JIT matrix A(params) is linear in its weight parameters (homo w; uniform low, high;
// normal mean, std), so a gradient or a tangent of them, which the ops would refuse as
// parameters (high < low, std < 0), acts through parameter vectors the ops accept. Shared by
// the JIT matmuls' autograd kernels and the recurrent JIT LIF form's tangents.
#pragma once

#include <string>
#include <vector>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/full.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/stack.h>

namespace brain::ops {

// A parameter vector the ops accept (high >= low, std >= 0), shaped like `like` when it has
// one value (homo weights are [] or [1]). Built by ops, not by writing into a new tensor's
// memory: under torch.func a factory's result is a wrapper, which has none.
inline at::Tensor basis_params(const at::Tensor& like, std::vector<double> values) {
  const auto opts = like.options().requires_grad(false);
  if (values.size() == 1) return at::full(like.sizes(), values[0], opts);
  return at::stack({at::scalar_tensor(values[0], opts), at::scalar_tensor(values[1], opts)});
}

// A is linear in its parameters: A(c) = sum_k c_k B_k with bases B_k = dA/dparam_k (homo: M;
// uniform: (1-U)M, UM; normal: M, ZM). Returns sum_k c_k f(B_k) for any coefficients c shaped
// like the weight (a gradient or a tangent, which the ops would refuse as parameters), given
// f(params) for parameter vectors the ops accept: uniform: c0 (1-U)M + c1 UM = c0 A(1, 1) +
// (c1 - c0) A(0, 1); normal: c0 A(1, 0) + c1 A(0, 1). f must be linear in A.
template <typename F>
at::Tensor basis_combination(const at::Tensor& coeff, const std::string& dist, F&& f) {
  const auto c = coeff.reshape({-1});
  if (dist == "homo") return c[0] * f(basis_params(coeff, {1.0}));
  if (dist == "uniform") return c[0] * f(basis_params(coeff, {1.0, 1.0})) + (c[1] - c[0]) * f(basis_params(coeff, {0.0, 1.0}));
  return c[0] * f(basis_params(coeff, {1.0, 0.0})) + c[1] * f(basis_params(coeff, {0.0, 1.0}));
}

}  // namespace brain::ops
