// Spikes as a surrogate-gradient Heaviside (SPEC section 4): the forward pass is exactly
// H(x) = (x > 0) as 0/1 in x's dtype; the backward pass uses the derivative of a smooth
// stand-in, chosen per neuron population. x is usually (V - V_th) / (V_th - V_reset).
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

#include <brain/export.h>

namespace brain {

struct Surrogate {
  enum class Kind {
    Sigmoid,             // alpha * s(alpha x) (1 - s(alpha x)),           alpha = 4
    Arctan,              // alpha / 2 / (1 + (pi/2 alpha x)^2),            alpha = 1
    PiecewiseQuadratic,  // max(0, alpha - alpha^2 |x|),                   alpha = 1
    PiecewiseExp,        // alpha / 2 exp(-alpha |x|),                     alpha = 1
    SoftSign,            // alpha / (2 (1 + alpha |x|)^2),                 alpha = 1
    Erf,                 // alpha / sqrt(pi) exp(-(alpha x)^2),            alpha = 1
    InvSquare,           // 1 / (alpha |x| + 1)^2 (SuperSpike),            alpha = 100
    Gaussian,            // alpha N(x; 0, sigma),                          alpha = 1, sigma = 0.5
    MultiGaussian,       // scale [(1+h) N(0, s0) - h N(s0, s s0) - h N(-s0, s s0)], h = 0.15, s = 6, s0 = 0.5, scale = 0.5
    LeakyRelu,           // beta for x >= 0, alpha for x < 0,             alpha = 0.1, beta = 1
    ReluGrad,            // alpha max(width - |x|, 0),                     alpha = 0.3, width = 1
  };
  Kind kind = Kind::Sigmoid;
  double alpha = 4.0;
  double beta = 1.0;    // LeakyRelu's slope for x >= 0
  double sigma = 0.5;   // Gaussian, MultiGaussian
  double h = 0.15;      // MultiGaussian
  double s = 6.0;       // MultiGaussian
  double scale = 0.5;   // MultiGaussian
  double width = 1.0;   // ReluGrad

  // The kind with its published default parameters. Names: sigmoid, arctan,
  // piecewise_quadratic, piecewise_exp, soft_sign, erf, inv_square (or super_spike),
  // gaussian, multi_gaussian, leaky_relu, relu_grad.
  static Surrogate named(const std::string& name);
  std::string name() const;
};

// H(x) forward, surrogate'(x) * grad backward (surrogate'(x) * tangent in forward mode): the
// operator brain::spike, so it runs under torch.func's transforms too.
BRAIN_API at::Tensor spike_function(const at::Tensor& x, const Surrogate& surrogate = {});

// The surrogate derivative itself (what the backward multiplies by).
BRAIN_API at::Tensor surrogate_grad(const at::Tensor& x, const Surrogate& surrogate);

}  // namespace brain
