// Shared machinery of the analysis tools: validated evaluation of a Field on point batches,
// batched Newton refinement, grid candidates and the fixed-point pipeline.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include <brain/analysis/analysis.h>

namespace brain::analysis::detail {

// Checks names (non-empty, unique across variables and parameters), ranges (finite, lo < hi)
// and resolutions (>= 2 where given). `what` prefixes the messages ("PhasePlane2D").
void validate(const std::string& what, const std::vector<Axis>& variables, const std::vector<Param>& params);

int64_t default_resolution(const Options& options, int64_t dimension);

// f at points X [M, D] with parameter columns P [M, Q]: [M, D]. Checks the number and shapes
// of the outputs; non-finite values are returned as they are.
at::Tensor evaluate(const Field& f, const at::Tensor& X, const at::Tensor& P);

struct Refined {
  at::Tensor x;          // [M, D]
  at::Tensor residual;   // [M], max_i |f_i|
  at::Tensor converged;  // [M] bool
};
// Damped (Levenberg-Marquardt with a tiny damping, backtracking) Newton iterations on
// f(x, P) = 0 from X0, row by row.
Refined newton(const Field& f, const at::Tensor& X0, const at::Tensor& P, const Options& options);

// The fixed points of f for every row of P ([G, Q]: one parameter combination per row), within
// the variables' ranges. Grid candidates (local minima of |f|^2 and cells where every f_i
// changes sign) refined by newton(), de-duplicated, with Jacobian, eigenvalues and stability.
// `skipped` counts grid points where f was not finite.
std::vector<std::vector<FixedPoint>> fixed_points(const Field& f, const std::vector<Axis>& variables,
                                                  const at::Tensor& P, const Options& options,
                                                  int64_t* skipped);

// Fills jacobian, eigenvalues and stability of points at X [M, D], P [M, Q].
void characterise(const Field& f, const at::Tensor& X, const at::Tensor& P, const Options& options,
                  std::vector<FixedPoint>& points);

// Parameter columns [M, Q] with every fixed parameter at its value.
at::Tensor fixed_param_columns(const std::vector<Param>& params, int64_t rows, const at::TensorOptions& o);

// Integrates f from initial [B, D] (parameters P [B, Q]) and returns the trajectory.
Trajectory integrate(const Field& f, const at::Tensor& initial, const at::Tensor& P, double duration, double dt,
                     const std::string& method, int64_t record_every = 1);

// Detects a periodic orbit in values [T, D] (times t [T]) of one trajectory.
LimitCycle detect_cycle(const at::Tensor& t, const at::Tensor& values);

std::string join_names(const std::vector<Axis>& variables);

}  // namespace brain::analysis::detail
