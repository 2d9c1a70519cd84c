#include <brain/models/point_neurons.h>

#include <torch/torch.h>

#include "csrc/models/hh_rates.h"
#include "csrc/models/rate_fields.h"

namespace brain {

namespace bi = integrators;

ODENeuron::ODENeuron(std::string name, int64_t n, std::vector<std::string> variables, std::string method,
                     double tau_ref, Surrogate surrogate, at::TensorOptions options)
    : NeuronGroup(std::move(name), n, options),
      variables_(std::move(variables)),
      method_(bi::parse_method(method)),
      tau_ref_(tau_ref),
      surrogate_(surrogate) {
  TORCH_CHECK(tau_ref >= 0, this->name(), ": tau_ref must be >= 0 (ms), got ", tau_ref);
}

void ODENeuron::reset_own_state(int64_t) {
  const auto opts = has_state(variables_[0]) ? state(variables_[0]).options() : placed(options_);
  const auto shape = state_shape(n_);
  bi::State y0 = initial_state(shape, opts);
  if (v_init_) y0[0] = v_init_(shape).to(opts);
  for (size_t i = 0; i < variables_.size(); ++i) set_state(variables_[i], y0[i]);
  set_state("spike", torch::zeros(shape, opts));
  set_state("input", torch::zeros(shape, opts));
  if (tau_ref_ > 0) set_state("last_spike_step", torch::full(shape, -1'000'000'000, opts.dtype(torch::kLong)));
}

void ODENeuron::update(const Context& ctx) {
  bi::State y;
  for (const auto& v : variables_) y.push_back(state(v));
  // The input current is held over the step; synaptic currents are evaluated at the step's V.
  const at::Tensor I = total_current(y[0]);
  auto f = [&](const bi::State& s, double t) { return derivative(s, t, I); };
  bi::State y_new = bi::step(method_, f, y, ctx.t, ctx.dt);
  at::Tensor refractory;
  if (tau_ref_ > 0) {
    refractory = (ctx.step_value() - state("last_spike_step")) < std::llround(tau_ref_ / ctx.dt);
    y_new[0] = torch::where(refractory, y[0], y_new[0]);
  }
  const at::Tensor spike = spike_function(spike_argument(y_new, y), surrogate_);
  reset(y_new, spike);
  if (tau_ref_ > 0) {
    set_state("last_spike_step", torch::where(spike > 0, ctx.step_value(), state("last_spike_step")));
  }
  for (size_t i = 0; i < variables_.size(); ++i) set_state(variables_[i], y_new[i]);
  set_state("spike", spike);
  set_state("input", torch::zeros_like(state("input")));
}

namespace {
// Reset a variable to `value` where the neuron spiked (no gradient through the reset).
at::Tensor reset_to(const at::Tensor& v, const at::Tensor& spike, double value) {
  return torch::where(spike > 0, torch::full_like(v, value), v);
}
}  // namespace

// ---- ExpIF ----
ExpIF::ExpIF(int64_t n, ExpIFParams p, at::TensorOptions options)
    : ODENeuron("ExpIF", n, {"V"}, p.method, p.tau_ref, p.surrogate, options), p_(p) {
  TORCH_CHECK(p.tau > 0 && p.delta_T > 0, "ExpIF: tau and delta_T must be positive");
}
bi::State ExpIF::derivative(const bi::State& y, double, const at::Tensor& I) const {
  const auto& V = y[0];
  return {(-(V - p_.V_rest) + p_.delta_T * torch::exp((V - p_.V_T) / p_.delta_T) + p_.R * I) / p_.tau};
}
at::Tensor ExpIF::spike_argument(const bi::State& y, const bi::State&) const { return (y[0] - p_.V_th) / (p_.V_th - p_.V_reset); }
void ExpIF::reset(bi::State& y, const at::Tensor& spike) const { y[0] = reset_to(y[0], spike, p_.V_reset); }
bi::State ExpIF::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  return {torch::full(shape, p_.V_rest, o)};
}

// ---- AdEx ----
AdEx::AdEx(int64_t n, AdExParams p, at::TensorOptions options)
    : ODENeuron("AdEx", n, {"V", "w"}, p.method, p.tau_ref, p.surrogate, options), p_(p) {
  TORCH_CHECK(p.tau > 0 && p.tau_w > 0 && p.delta_T > 0, "AdEx: tau, tau_w and delta_T must be positive");
}
bi::State AdEx::derivative(const bi::State& y, double, const at::Tensor& I) const {
  const auto& V = y[0];
  const auto& w = y[1];
  return {(-(V - p_.V_rest) + p_.delta_T * torch::exp((V - p_.V_T) / p_.delta_T) - p_.R * w + p_.R * I) / p_.tau,
          (p_.a * (V - p_.V_rest) - w) / p_.tau_w};
}
at::Tensor AdEx::spike_argument(const bi::State& y, const bi::State&) const { return (y[0] - p_.V_th) / (p_.V_th - p_.V_reset); }
void AdEx::reset(bi::State& y, const at::Tensor& spike) const {
  y[0] = reset_to(y[0], spike, p_.V_reset);
  y[1] = y[1] + p_.b * spike.detach();
}
bi::State AdEx::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  return {torch::full(shape, p_.V_rest, o), torch::zeros(shape, o)};
}

// ---- QuaIF / AdQuaIF ----
QuaIF::QuaIF(int64_t n, QuaIFParams p, at::TensorOptions options)
    : ODENeuron(p.adaptive ? "AdQuaIF" : "QuaIF", n, p.adaptive ? std::vector<std::string>{"V", "w"} : std::vector<std::string>{"V"},
                p.method, p.tau_ref, p.surrogate, options),
      p_(p) {
  TORCH_CHECK(p.tau > 0 && (!p.adaptive || p.tau_w > 0), "QuaIF: tau (and tau_w) must be positive");
}
bi::State QuaIF::derivative(const bi::State& y, double, const at::Tensor& I) const {
  const auto& V = y[0];
  at::Tensor drive = p_.c * (V - p_.V_rest) * (V - p_.V_c) + p_.R * I;
  if (!p_.adaptive) return {drive / p_.tau};
  const auto& w = y[1];
  return {(drive - w) / p_.tau, (p_.a * (V - p_.V_rest) - w) / p_.tau_w};
}
at::Tensor QuaIF::spike_argument(const bi::State& y, const bi::State&) const { return (y[0] - p_.V_th) / (p_.V_th - p_.V_reset); }
void QuaIF::reset(bi::State& y, const at::Tensor& spike) const {
  y[0] = reset_to(y[0], spike, p_.V_reset);
  if (p_.adaptive) y[1] = y[1] + p_.b * spike.detach();
}
bi::State QuaIF::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  if (!p_.adaptive) return {torch::full(shape, p_.V_rest, o)};
  return {torch::full(shape, p_.V_rest, o), torch::zeros(shape, o)};
}

// ---- Izhikevich ----
Izhikevich::Izhikevich(int64_t n, IzhikevichParams p, at::TensorOptions options)
    : ODENeuron("Izhikevich", n, {"V", "u"}, p.method, p.tau_ref, p.surrogate, options), p_(p) {}
bi::State Izhikevich::derivative(const bi::State& y, double, const at::Tensor& I) const {
  const auto& V = y[0];
  const auto& u = y[1];
  return {0.04 * V * V + 5 * V + 140 - u + I, p_.a * (p_.b * V - u)};
}
at::Tensor Izhikevich::spike_argument(const bi::State& y, const bi::State&) const {
  // V >= V_th spikes; the Heaviside is strict, so shift by a hair.
  return (y[0] - p_.V_th) / (p_.V_th - p_.c) + 1e-12;
}
void Izhikevich::reset(bi::State& y, const at::Tensor& spike) const {
  y[0] = reset_to(y[0], spike, p_.c);
  y[1] = y[1] + p_.d * spike.detach();
}
bi::State Izhikevich::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  return {torch::full(shape, -65.0, o), torch::full(shape, p_.b * -65.0, o)};
}

// ---- Hodgkin-Huxley ----
using detail::exprel_rate;

HH::HH(int64_t n, HHParams p, at::TensorOptions options)
    : ODENeuron("HH", n, {"V", "m", "h", "n"}, p.method, 0.0, p.surrogate, options), p_(p) {
  TORCH_CHECK(p.C > 0, "HH: C must be positive");
}
bi::State HH::derivative(const bi::State& y, double, const at::Tensor& I) const {
  const auto& V = y[0];
  const auto& m = y[1];
  const auto& h = y[2];
  const auto& n = y[3];
  const auto alpha_m = detail::hh_alpha_m(V), beta_m = detail::hh_beta_m(V);
  const auto alpha_h = detail::hh_alpha_h(V), beta_h = detail::hh_beta_h(V);
  const auto alpha_n = detail::hh_alpha_n(V), beta_n = detail::hh_beta_n(V);
  const auto i_na = p_.g_Na * m.pow(3) * h * (V - p_.E_Na);
  const auto i_k = p_.g_K * n.pow(4) * (V - p_.E_K);
  const auto i_l = p_.g_L * (V - p_.E_L);
  return {(-i_na - i_k - i_l + I) / p_.C, alpha_m * (1 - m) - beta_m * m, alpha_h * (1 - h) - beta_h * h,
          alpha_n * (1 - n) - beta_n * n};
}
at::Tensor HH::spike_argument(const bi::State& y_new, const bi::State& y_old) const {
  // Upward crossing: above threshold now, below before.
  return torch::minimum(y_new[0] - p_.V_th, p_.V_th - y_old[0]);
}
bi::State HH::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  // The resting steady state at V = -65 mV.
  return {torch::full(shape, -65.0, o), torch::full(shape, 0.0529, o), torch::full(shape, 0.5961, o),
          torch::full(shape, 0.3177, o)};
}

// ---- ALIF ----
ALIF::ALIF(int64_t n, ALIFParams p, at::TensorOptions options)
    : ODENeuron("ALIF", n, {"V", "a"}, p.method, p.tau_ref, p.surrogate, options), p_(p) {
  TORCH_CHECK(p.tau > 0 && p.tau_a > 0, "ALIF: tau and tau_a must be positive");
  TORCH_CHECK(p.V_th > p.V_reset, "ALIF: V_th must be above V_reset");
}
bi::State ALIF::derivative(const bi::State& y, double, const at::Tensor& I) const {
  return {(-(y[0] - p_.V_rest) + p_.R * I) / p_.tau, -y[1] / p_.tau_a};
}
at::Tensor ALIF::spike_argument(const bi::State& y, const bi::State&) const {
  return (y[0] - (p_.V_th + p_.beta * y[1])) / (p_.V_th - p_.V_reset);
}
void ALIF::reset(bi::State& y, const at::Tensor& spike) const {
  y[0] = reset_to(y[0], spike, p_.V_reset);
  y[1] = y[1] + spike.detach();
}
bi::State ALIF::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  return {torch::full(shape, p_.V_rest, o), torch::zeros(shape, o)};
}

// ---- GIF ----
GIF::GIF(int64_t n, GIFParams p, at::TensorOptions options)
    : ODENeuron("GIF", n, {"V", "I1", "I2", "V_th"}, p.method, p.tau_ref, p.surrogate, options), p_(p) {
  TORCH_CHECK(p.tau > 0 && p.k1 > 0 && p.k2 > 0 && p.b >= 0, "GIF: tau, k1 and k2 must be positive and b >= 0");
  TORCH_CHECK(p.V_th_inf > p.V_reset, "GIF: V_th_inf must be above V_reset");
}
bi::State GIF::derivative(const bi::State& y, double, const at::Tensor& I) const {
  const auto& V = y[0];
  return {(-(V - p_.V_rest) + p_.R * (y[1] + y[2] + I)) / p_.tau, -p_.k1 * y[1], -p_.k2 * y[2],
          p_.a * (V - p_.V_rest) - p_.b * (y[3] - p_.V_th_inf)};
}
at::Tensor GIF::spike_argument(const bi::State& y, const bi::State&) const {
  return (y[0] - y[3]) / (p_.V_th_inf - p_.V_reset);
}
void GIF::reset(bi::State& y, const at::Tensor& spike) const {
  const at::Tensor fired = spike.detach() > 0;
  y[0] = reset_to(y[0], spike, p_.V_reset);
  y[1] = torch::where(fired, p_.R1 * y[1] + p_.A1, y[1]);
  y[2] = torch::where(fired, p_.R2 * y[2] + p_.A2, y[2]);
  y[3] = torch::where(fired, torch::clamp_min(y[3], p_.V_th_reset), y[3]);
}
bi::State GIF::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  return {torch::full(shape, p_.V_rest, o), torch::zeros(shape, o), torch::zeros(shape, o),
          torch::full(shape, p_.V_th_inf, o)};
}

// ---- Morris-Lecar ----
MorrisLecar::MorrisLecar(int64_t n, MorrisLecarParams p, at::TensorOptions options)
    : ODENeuron("MorrisLecar", n, {"V", "W"}, p.method, 0.0, p.surrogate, options), p_(p) {
  TORCH_CHECK(p.C > 0 && p.phi > 0, "MorrisLecar: C and phi must be positive");
}
bi::State MorrisLecar::derivative(const bi::State& y, double, const at::Tensor& I) const {
  return fields::morris_lecar(y[0], y[1], p_.V_Ca, p_.g_Ca, p_.V_K, p_.g_K, p_.V_leak, p_.g_leak, p_.C, p_.V1, p_.V2,
                              p_.V3, p_.V4, p_.phi, I);
}
at::Tensor MorrisLecar::spike_argument(const bi::State& y_new, const bi::State& y_old) const {
  return torch::minimum(y_new[0] - p_.V_th, p_.V_th - y_old[0]);
}
bi::State MorrisLecar::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  return {torch::full(shape, -60.9, o), torch::full(shape, 0.015, o)};  // near the resting state
}

// ---- Wang-Buzsaki ----
WangBuzsaki::WangBuzsaki(int64_t n, WangBuzsakiParams p, at::TensorOptions options)
    : ODENeuron("WangBuzsaki", n, {"V", "h", "n"}, p.method, 0.0, p.surrogate, options), p_(p) {
  TORCH_CHECK(p.C > 0 && p.phi > 0, "WangBuzsaki: C and phi must be positive");
}
bi::State WangBuzsaki::derivative(const bi::State& y, double, const at::Tensor& I) const {
  const auto& V = y[0];
  const auto& h = y[1];
  const auto& n = y[2];
  const auto alpha_m = exprel_rate(V + 35, 0.1), beta_m = 4 * torch::exp(-(V + 60) / 18);
  const auto m_inf = alpha_m / (alpha_m + beta_m);
  const auto alpha_h = 0.07 * torch::exp(-(V + 58) / 20), beta_h = 1 / (torch::exp(-0.1 * (V + 28)) + 1);
  const auto alpha_n = exprel_rate(V + 34, 0.01), beta_n = 0.125 * torch::exp(-(V + 44) / 80);
  const auto dV = (-p_.g_Na * m_inf.pow(3) * h * (V - p_.E_Na) - p_.g_K * n.pow(4) * (V - p_.E_K) -
                   p_.g_L * (V - p_.E_L) + I) / p_.C;
  return {dV, p_.phi * (alpha_h * (1 - h) - beta_h * h), p_.phi * (alpha_n * (1 - n) - beta_n * n)};
}
at::Tensor WangBuzsaki::spike_argument(const bi::State& y_new, const bi::State& y_old) const {
  return torch::minimum(y_new[0] - p_.V_th, p_.V_th - y_old[0]);
}
bi::State WangBuzsaki::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  return {torch::full(shape, -64.0, o), torch::full(shape, 0.78, o), torch::full(shape, 0.09, o)};
}

}  // namespace brain
