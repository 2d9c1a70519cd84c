#include <brain/models/channels.h>

#include <torch/torch.h>

#include <brain/dyn/integrators.h>

#include "csrc/models/hh_rates.h"

namespace brain {

namespace {

// x -> x_inf + (x - x_inf) e^{-dt (alpha + beta)}: exact for V held over the step.
at::Tensor relax(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& beta, double dt) {
  const at::Tensor rate = alpha + beta;
  const at::Tensor x_inf = alpha / rate;
  return x_inf + (x - x_inf) * torch::exp(-rate * dt);
}

}  // namespace

LeakChannel::LeakChannel(int64_t n, double g, double E, at::TensorOptions options)
    : IonChannel("Leak", n, options), g_(g), E_(E) {
  TORCH_CHECK(g >= 0, "LeakChannel: g must be >= 0, got ", g);
}
at::Tensor LeakChannel::current(const at::Tensor& V) const { return -g_ * (V - E_); }
at::Tensor LeakChannel::conductance() const { return at::scalar_tensor(g_, at::TensorOptions(at::kDouble)); }

NaChannelHH::NaChannelHH(int64_t n, double g, double E, at::TensorOptions options)
    : IonChannel("NaHH", n, options), g_(g), E_(E) {
  TORCH_CHECK(g >= 0, "NaChannelHH: g must be >= 0, got ", g);
}
void NaChannelHH::reset_own_state(int64_t) {
  const auto opts = has_state("m") ? state("m").options() : options_;
  set_state("m", torch::full(state_shape(n_), 0.0529, opts));  // resting values at -65 mV
  set_state("h", torch::full(state_shape(n_), 0.5961, opts));
}
at::Tensor NaChannelHH::current(const at::Tensor& V) const { return -conductance() * (V - E_); }
at::Tensor NaChannelHH::conductance() const { return g_ * state("m").pow(3) * state("h"); }
void NaChannelHH::advance(const at::Tensor& V, const Context& ctx) {
  set_state("m", relax(state("m"), detail::hh_alpha_m(V), detail::hh_beta_m(V), ctx.dt));
  set_state("h", relax(state("h"), detail::hh_alpha_h(V), detail::hh_beta_h(V), ctx.dt));
}

KChannelHH::KChannelHH(int64_t n, double g, double E, at::TensorOptions options)
    : IonChannel("KHH", n, options), g_(g), E_(E) {
  TORCH_CHECK(g >= 0, "KChannelHH: g must be >= 0, got ", g);
}
void KChannelHH::reset_own_state(int64_t) {
  const auto opts = has_state("n") ? state("n").options() : options_;
  set_state("n", torch::full(state_shape(n_), 0.3177, opts));
}
at::Tensor KChannelHH::current(const at::Tensor& V) const { return -conductance() * (V - E_); }
at::Tensor KChannelHH::conductance() const { return g_ * state("n").pow(4); }
void KChannelHH::advance(const at::Tensor& V, const Context& ctx) {
  set_state("n", relax(state("n"), detail::hh_alpha_n(V), detail::hh_beta_n(V), ctx.dt));
}

namespace {

// alpha / (alpha + beta) at V_rest, or 0 without one.
at::Tensor initial_gate(const std::optional<double>& V_rest, const std::vector<int64_t>& shape, at::TensorOptions opts,
                        at::Tensor (*alpha)(const at::Tensor&, double), at::Tensor (*beta)(const at::Tensor&, double),
                        double VT) {
  if (!V_rest) return torch::zeros(shape, opts);
  const at::Tensor V = torch::full({}, *V_rest, opts.dtype(at::kDouble));
  const double x = (alpha(V, VT) / (alpha(V, VT) + beta(V, VT))).item<double>();
  return torch::full(shape, x, opts);
}

}  // namespace

NaChannelTM::NaChannelTM(int64_t n, double g, double E, double V_T, at::TensorOptions options, std::optional<double> V_rest)
    : IonChannel("NaTM", n, options), g_(g), E_(E), V_T_(V_T), V_rest_(V_rest) {
  TORCH_CHECK(g >= 0, "NaChannelTM: g must be >= 0, got ", g);
}
void NaChannelTM::reset_own_state(int64_t) {
  const auto opts = has_state("m") ? state("m").options() : options_;
  set_state("m", initial_gate(V_rest_, state_shape(n_), opts, detail::tm_alpha_m, detail::tm_beta_m, V_T_));
  set_state("h", initial_gate(V_rest_, state_shape(n_), opts, detail::tm_alpha_h, detail::tm_beta_h, V_T_));
}
at::Tensor NaChannelTM::current(const at::Tensor& V) const { return -conductance() * (V - E_); }
at::Tensor NaChannelTM::conductance() const { return g_ * state("m").pow(3) * state("h"); }
void NaChannelTM::advance(const at::Tensor& V, const Context& ctx) {
  set_state("m", relax(state("m"), detail::tm_alpha_m(V, V_T_), detail::tm_beta_m(V, V_T_), ctx.dt));
  set_state("h", relax(state("h"), detail::tm_alpha_h(V, V_T_), detail::tm_beta_h(V, V_T_), ctx.dt));
}

KChannelTM::KChannelTM(int64_t n, double g, double E, double V_T, at::TensorOptions options, std::optional<double> V_rest)
    : IonChannel("KTM", n, options), g_(g), E_(E), V_T_(V_T), V_rest_(V_rest) {
  TORCH_CHECK(g >= 0, "KChannelTM: g must be >= 0, got ", g);
}
void KChannelTM::reset_own_state(int64_t) {
  const auto opts = has_state("n") ? state("n").options() : options_;
  set_state("n", initial_gate(V_rest_, state_shape(n_), opts, detail::tm_alpha_n, detail::tm_beta_n, V_T_));
}
at::Tensor KChannelTM::current(const at::Tensor& V) const { return -conductance() * (V - E_); }
at::Tensor KChannelTM::conductance() const { return g_ * state("n").pow(4); }
void KChannelTM::advance(const at::Tensor& V, const Context& ctx) {
  set_state("n", relax(state("n"), detail::tm_alpha_n(V, V_T_), detail::tm_beta_n(V, V_T_), ctx.dt));
}

CondNeuGroup::CondNeuGroup(int64_t n, double C, double V_th, double V_init, Surrogate surrogate, at::TensorOptions options)
    : NeuronGroup("CondNeuGroup", n, options), C_(C), V_th_(V_th), V_init_(V_init), surrogate_(surrogate) {
  TORCH_CHECK(C > 0, "CondNeuGroup: C must be positive, got ", C);
}

void CondNeuGroup::reset_own_state(int64_t) {
  const auto opts = has_state("V") ? state("V").options() : options_;
  const auto shape = state_shape(n_);
  set_state("V", v_init_ ? v_init_(shape).to(opts) : torch::full(shape, V_init_, opts));
  set_state("spike", torch::zeros(shape, opts));
  set_state("input", torch::zeros(shape, opts));
}

void CondNeuGroup::update(const Context& ctx) {
  TORCH_CHECK(!channels_.empty(), "CondNeuGroup: no ion channels were added");
  const at::Tensor V = state("V");
  const at::Tensor I = total_current(V);  // external and synaptic, held over the step
  for (auto& ch : channels_) ch->advance(V, ctx);
  // Channel currents linear in V (all built-in ones): exponential Euler with the exact slope
  // -G / C, the same step exp_euler takes after finding that slope by autograd.
  at::Tensor G;
  for (const auto& ch : channels_) {
    const at::Tensor g = ch->conductance();
    if (!g.defined()) {
      G = at::Tensor();
      break;
    }
    G = G.defined() ? G + g : g;
  }
  at::Tensor V_new;
  if (G.defined()) {
    at::Tensor total = I;
    for (const auto& ch : channels_) total = total + ch->current(V);
    const at::Tensor a = (-G / C_).to(V.scalar_type());
    const at::Tensor ad = a * ctx.dt;
    const at::Tensor phi = at::where(ad.abs() < 1e-12, at::full_like(ad, ctx.dt), at::expm1(ad) / a);
    V_new = V + phi * (total / C_);
  } else {
    auto f = [&](const integrators::State& y, double) {
      at::Tensor total = I;
      for (const auto& ch : channels_) total = total + ch->current(y[0]);
      return integrators::State{total / C_};
    };
    V_new = integrators::exp_euler(f, {V}, ctx.t, ctx.dt)[0];
  }
  set_state("spike", spike_function(torch::minimum(V_new - V_th_, V_th_ - V), surrogate_));
  set_state("V", V_new);
  set_state("input", torch::zeros_like(state("input")));
}

}  // namespace brain
