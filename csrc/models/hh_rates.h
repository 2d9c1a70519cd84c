// Internal: the Hodgkin-Huxley 1952 gating rates (modern convention, rest near -65 mV), in
// 1/ms, shared by the HH neuron, the HH ion channels and Wang-Buzsaki's exprel form.
#pragma once

#include <ATen/ATen.h>

namespace brain::detail {

// scale * x / (1 - exp(-x / 10)), with its limit 10 * scale at x = 0.
inline at::Tensor exprel_rate(const at::Tensor& x, double scale) {
  const auto small = x.abs() < 1e-6;
  const auto safe = at::where(small, at::ones_like(x), x);
  return at::where(small, at::full_like(x, 10 * scale), scale * safe / (1 - at::exp(-safe / 10)));
}

inline at::Tensor hh_alpha_m(const at::Tensor& V) { return exprel_rate(V + 40, 0.1); }
inline at::Tensor hh_beta_m(const at::Tensor& V) { return 4 * at::exp(-(V + 65) / 18); }
inline at::Tensor hh_alpha_h(const at::Tensor& V) { return 0.07 * at::exp(-(V + 65) / 20); }
inline at::Tensor hh_beta_h(const at::Tensor& V) { return 1 / (1 + at::exp(-(V + 35) / 10)); }
inline at::Tensor hh_alpha_n(const at::Tensor& V) { return exprel_rate(V + 55, 0.01); }
inline at::Tensor hh_beta_n(const at::Tensor& V) { return 0.125 * at::exp(-(V + 65) / 80); }

// x / (exp(x / s) - 1), with its limit s at x = 0.
inline at::Tensor x_over_expm1(const at::Tensor& x, double s) {
  const auto small = x.abs() < 1e-6;
  const auto safe = at::where(small, at::ones_like(x), x);
  return at::where(small, at::full_like(x, s), safe / at::expm1(safe / s));
}

// Traub & Miles (1991) rates as in Brette et al. (2007) benchmark 3 (Brian2's COBAHH):
// the HH kinetics shifted by V_T (-63 mV there).
inline at::Tensor tm_alpha_m(const at::Tensor& V, double VT) { return 0.32 * x_over_expm1(13 - V + VT, 4); }
inline at::Tensor tm_beta_m(const at::Tensor& V, double VT) { return 0.28 * x_over_expm1(V - VT - 40, 5); }
inline at::Tensor tm_alpha_h(const at::Tensor& V, double VT) { return 0.128 * at::exp((17 - V + VT) / 18); }
inline at::Tensor tm_beta_h(const at::Tensor& V, double VT) { return 4 / (1 + at::exp((40 - V + VT) / 5)); }
inline at::Tensor tm_alpha_n(const at::Tensor& V, double VT) { return 0.032 * x_over_expm1(15 - V + VT, 5); }
inline at::Tensor tm_beta_n(const at::Tensor& V, double VT) { return 0.5 * at::exp((10 - V + VT) / 40); }

}  // namespace brain::detail
