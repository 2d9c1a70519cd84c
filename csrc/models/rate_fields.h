// The vector fields of the rate models, written once for both users: the models in
// rate_models.cpp (parameters are doubles) and the analysis tools' built-in models
// (csrc/analysis/builtin_models.cpp: parameters are tensors, swept in bifurcations).
#pragma once

#include <cmath>
#include <vector>

#include <ATen/ATen.h>

namespace brain::fields {

inline double exp_of(double x) { return std::exp(x); }
inline at::Tensor exp_of(const at::Tensor& x) { return at::exp(x); }

// FitzHugh-Nagumo: dv/dt = v - v^3/3 - w + I_v,  dw/dt = (v + a - b w) / tau + I_w.
template <class P>
std::vector<at::Tensor> fitzhugh_nagumo(const at::Tensor& v, const at::Tensor& w, const P& a, const P& b, const P& tau,
                                        const at::Tensor& I_v, const at::Tensor& I_w) {
  return {v - v.pow(3) / 3 - w + I_v, (v + a - b * w) / tau + I_w};
}

// Wilson-Cowan: tau de/dt = -e + (1 - r e) S(w_ee e - w_ei i + I_e), likewise for i, with
// S(x) = 1 / (1 + exp(-a (x - theta))) - 1 / (1 + exp(a theta)).
template <class P>
std::vector<at::Tensor> wilson_cowan(const at::Tensor& e, const at::Tensor& i, const P& tau_e, const P& a_e,
                                     const P& theta_e, const P& tau_i, const P& a_i, const P& theta_i, const P& w_ee,
                                     const P& w_ei, const P& w_ie, const P& w_ii, const P& r, const at::Tensor& I_e,
                                     const at::Tensor& I_i) {
  const auto S = [](const at::Tensor& x, const P& a, const P& theta) {
    return at::sigmoid(a * (x - theta)) - 1.0 / (1.0 + exp_of(a * theta));
  };
  return {(-e + (1 - r * e) * S(w_ee * e - w_ei * i + I_e, a_e, theta_e)) / tau_e,
          (-i + (1 - r * i) * S(w_ie * e - w_ii * i + I_i, a_i, theta_i)) / tau_i};
}

// Montbrio-Pazo-Roxin QIF mean field: tau dr/dt = delta / (pi tau) + 2 r v,
// tau dv/dt = v^2 + eta + J tau r + I - (pi tau r)^2.
template <class P>
std::vector<at::Tensor> qif_mean_field(const at::Tensor& r, const at::Tensor& v, const P& tau, const P& eta,
                                       const P& delta, const P& J, const at::Tensor& I_r, const at::Tensor& I_v) {
  const auto pi_tau = M_PI * tau;
  return {(delta / pi_tau + 2 * r * v) / tau + I_r, (v * v + eta + J * tau * r + I_v - (pi_tau * r).square()) / tau};
}

// Stuart-Landau: dx/dt = (a - x^2 - y^2) x - w y + I_x,  dy/dt = (a - x^2 - y^2) y + w x + I_y.
template <class P>
std::vector<at::Tensor> stuart_landau(const at::Tensor& x, const at::Tensor& y, const P& a, const P& w,
                                      const at::Tensor& I_x, const at::Tensor& I_y) {
  const auto g = a - x * x - y * y;
  return {g * x - w * y + I_x, g * y + w * x + I_y};
}

// Morris-Lecar: C dV/dt = -g_Ca M_inf (V - V_Ca) - g_K W (V - V_K) - g_leak (V - V_leak) + I,
// dW/dt = phi (W_inf - W) / tau_W.
template <class P>
std::vector<at::Tensor> morris_lecar(const at::Tensor& V, const at::Tensor& W, const P& V_Ca, const P& g_Ca,
                                     const P& V_K, const P& g_K, const P& V_leak, const P& g_leak, const P& C,
                                     const P& V1, const P& V2, const P& V3, const P& V4, const P& phi,
                                     const at::Tensor& I) {
  const auto M_inf = 0.5 * (1 + at::tanh((V - V1) / V2));
  const auto W_inf = 0.5 * (1 + at::tanh((V - V3) / V4));
  const auto tau_W = 1 / at::cosh((V - V3) / (2 * V4));
  const auto dV = (-g_Ca * M_inf * (V - V_Ca) - g_K * W * (V - V_K) - g_leak * (V - V_leak) + I) / C;
  return {dV, phi * (W_inf - W) / tau_W};
}

}  // namespace brain::fields
