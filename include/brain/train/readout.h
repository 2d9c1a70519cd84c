// Readout training without backpropagation (SPEC section 5): offline ridge regression on
// recorded states, and the online rules FORCE (recursive least squares) and LMS. A readout
// maps features r [..., n_features] (e.g. reservoir states) to outputs r W + b [..., n_out].
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <brain/export.h>

namespace brain::train {

struct RidgeSolution {
  at::Tensor weight;  // [n_features, n_out]
  at::Tensor bias;    // [n_out] (zeros when fit_bias = false)
};

// Solves min_W,b ||X W + b - Y||^2 + alpha ||W||^2 (the bias is not penalised) for
// X [..., n_features] and Y [..., n_out] with the same leading dimensions (flattened into
// samples, e.g. [T, B, F]). Computed in float64 from centred data, by a Cholesky solve of the
// regularised normal equations (primal when samples >= features, dual otherwise), never an
// explicit inverse; alpha = 0 or a singular system falls back to least squares (SVD-based
// lstsq). The result has X's dtype and device. alpha must be >= 0.
BRAIN_API RidgeSolution ridge(const at::Tensor& X, const at::Tensor& Y, double alpha = 1e-6,
                              bool fit_bias = true);

// A linear readout y = r W + b whose parameters are plain tensors (no autograd needed), fit
// offline (fit_ridge) or online (RLS / LMS below), or trained by gradient descent: weight and
// bias are registered parameters.
class BRAIN_API Readout : public torch::nn::Module {
 public:
  Readout(int64_t n_features, int64_t n_out, at::TensorOptions options = at::kDouble);
  at::Tensor forward(const at::Tensor& r) const;
  void fit_ridge(const at::Tensor& X, const at::Tensor& Y, double alpha = 1e-6);
  at::Tensor& weight() { return weight_; }
  at::Tensor& bias() { return bias_; }
  int64_t n_features() const { return n_features_; }
  int64_t n_out() const { return n_out_; }

 private:
  int64_t n_features_, n_out_;
  at::Tensor weight_, bias_;
};

// FORCE learning's rule (Sussillo & Abbott 2009): recursive least squares on a Readout. With
// P0 = I / alpha and forgetting = 1, after any sequence of updates the readout is exactly the
// ridge solution on all samples seen so far, with the bias penalised like the weights
// (checked by the tests); forgetting < 1 discounts old samples by that factor per update.
// Batch-aware: r [B, F] with targets y [B, O] is one exact block update (Woodbury), the same
// as B single-sample updates. Works in the readout's dtype (float64 recommended).
class BRAIN_API RLS {
 public:
  explicit RLS(Readout& readout, double alpha = 1.0, double forgetting = 1.0);
  // Updates the readout with features r [F] or [B, F] and targets y [O] or [B, O]; returns the
  // error (prediction - target) before the update, as FORCE uses it.
  at::Tensor update(const at::Tensor& r, const at::Tensor& y);
  const at::Tensor& P() const { return P_; }  // [F + 1, F + 1], the bias row/column last

 private:
  Readout& readout_;
  double forgetting_;
  at::Tensor P_;
};

// Least mean squares: W <- W - lr * r^T (r W + b - y) / B, b likewise. Returns the error
// before the update.
class BRAIN_API LMS {
 public:
  explicit LMS(Readout& readout, double lr = 1e-3);
  at::Tensor update(const at::Tensor& r, const at::Tensor& y);

 private:
  Readout& readout_;
  double lr_;
};

}  // namespace brain::train
