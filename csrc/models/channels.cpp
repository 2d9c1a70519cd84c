#include <brain/models/channels.h>

#include <cmath>
#include <functional>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <brain/dyn/integrators.h>

#include "csrc/dyn/fast_kernels.h"
#include "csrc/models/cond_plan.h"
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
  const auto opts = has_state("m") ? state("m").options() : placed(options_);
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
  const auto opts = has_state("n") ? state("n").options() : placed(options_);
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
  const auto opts = has_state("m") ? state("m").options() : placed(options_);
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
  const auto opts = has_state("n") ? state("n").options() : placed(options_);
  set_state("n", initial_gate(V_rest_, state_shape(n_), opts, detail::tm_alpha_n, detail::tm_beta_n, V_T_));
}
at::Tensor KChannelTM::current(const at::Tensor& V) const { return -conductance() * (V - E_); }
at::Tensor KChannelTM::conductance() const { return g_ * state("n").pow(4); }
void KChannelTM::advance(const at::Tensor& V, const Context& ctx) {
  set_state("n", relax(state("n"), detail::tm_alpha_n(V, V_T_), detail::tm_beta_n(V, V_T_), ctx.dt));
}

// ---- Calcium, h and KCa channels ----

namespace {

// x -> x_inf + (x - x_inf) e^{-dt / tau}: exact for x_inf and tau held over the step.
at::Tensor relax_tau(const at::Tensor& x, const at::Tensor& x_inf, const at::Tensor& tau, double dt) {
  return x_inf + (x - x_inf) * torch::exp(-dt / tau);
}

// A steady-state gate of the state's shape, evaluated at the scalar V (or concentration) v.
at::Tensor steady_gate(const std::function<at::Tensor(const at::Tensor&)>& x_inf, double v,
                       const std::vector<int64_t>& shape, at::TensorOptions opts) {
  const double x = x_inf(torch::full({}, v, at::TensorOptions(at::kDouble))).item<double>();
  return torch::full(shape, x, opts);
}

}  // namespace

CaTChannel::CaTChannel(int64_t n, CaTParams p, at::TensorOptions options)
    : IonChannel("CaT", n, options),
      p_(p),
      phi_p_(std::pow(3.55, (p.T - 24) / 10)),
      phi_q_(std::pow(3.0, (p.T - 24) / 10)) {
  TORCH_CHECK(p.g >= 0, "CaTChannel: g must be >= 0, got ", p.g);
}
at::Tensor CaTChannel::p_inf(const at::Tensor& V) const { return torch::sigmoid((V + 59 - p_.V_sh) / 6.2); }
at::Tensor CaTChannel::q_inf(const at::Tensor& V) const { return torch::sigmoid(-(V + 83 - p_.V_sh) / 4); }
at::Tensor CaTChannel::tau_p(const at::Tensor& V) const {
  return (1 / (torch::exp(-(V + 132 - p_.V_sh) / 16.7) + torch::exp((V + 16.8 - p_.V_sh) / 18.2)) + 0.612) / phi_p_;
}
at::Tensor CaTChannel::tau_q(const at::Tensor& V) const {
  const at::Tensor u = V - p_.V_sh;
  // Each branch sees V clamped to its own side of -80 + V_sh, so the unused one cannot overflow.
  const at::Tensor below = torch::exp((torch::minimum(u, torch::full_like(u, -80)) + 467) / 66.6);
  const at::Tensor above = torch::exp(-(torch::maximum(u, torch::full_like(u, -80)) + 22) / 10.5) + 28;
  return torch::where(u < -80, below, above) / phi_q_;
}
void CaTChannel::reset_own_state(int64_t) {
  const auto opts = has_state("p") ? state("p").options() : placed(options_);
  set_state("p", steady_gate([this](const at::Tensor& V) { return p_inf(V); }, p_.V_init, state_shape(n_), opts));
  set_state("q", steady_gate([this](const at::Tensor& V) { return q_inf(V); }, p_.V_init, state_shape(n_), opts));
}
at::Tensor CaTChannel::conductance() const { return p_.g * state("p").pow(2) * state("q"); }
at::Tensor CaTChannel::current(const at::Tensor& V) const { return -conductance() * (V - p_.E); }
void CaTChannel::advance(const at::Tensor& V, const Context& ctx) {
  set_state("p", relax_tau(state("p"), p_inf(V), tau_p(V), ctx.dt));
  set_state("q", relax_tau(state("q"), q_inf(V), tau_q(V), ctx.dt));
}

IonChannel::Kinetics CaTChannel::kinetics() const {
  Kinetics k = Kinetics::of(Kinetics::CaT, p_.g, p_.E);
  k.V_sh = p_.V_sh;
  k.phi = phi_p_;
  k.phi_q = phi_q_;
  return k;
}

HChannel::HChannel(int64_t n, HParams p, at::TensorOptions options) : IonChannel("H", n, options), p_(p) {
  TORCH_CHECK(p.g >= 0, "HChannel: g must be >= 0, got ", p.g);
  TORCH_CHECK(p.phi > 0, "HChannel: phi must be positive, got ", p.phi);
}
at::Tensor HChannel::p_inf(const at::Tensor& V) const { return torch::sigmoid(-(V + 75) / 5.5); }
at::Tensor HChannel::tau_p(const at::Tensor& V) const {
  return 1 / (torch::exp(-0.086 * V - 14.59) + torch::exp(0.0701 * V - 1.87)) / p_.phi;
}
void HChannel::reset_own_state(int64_t) {
  const auto opts = has_state("p") ? state("p").options() : placed(options_);
  set_state("p", steady_gate([this](const at::Tensor& V) { return p_inf(V); }, p_.V_init, state_shape(n_), opts));
}
at::Tensor HChannel::conductance() const { return p_.g * state("p"); }
at::Tensor HChannel::current(const at::Tensor& V) const { return -conductance() * (V - p_.E); }
void HChannel::advance(const at::Tensor& V, const Context& ctx) {
  set_state("p", relax_tau(state("p"), p_inf(V), tau_p(V), ctx.dt));
}

IonChannel::Kinetics HChannel::kinetics() const {
  Kinetics k = Kinetics::of(Kinetics::H, p_.g, p_.E);
  k.phi = p_.phi;
  return k;
}

CalciumPool::CalciumPool(int64_t n, CalciumPoolParams p, at::TensorOptions options)
    : IonChannel("CalciumPool", n, options), p_(p) {
  TORCH_CHECK(p.depth > 0 && p.tau > 0, "CalciumPool: depth and tau must be positive");
  TORCH_CHECK(p.Ca_rest >= 0, "CalciumPool: Ca_rest must be >= 0 (mM), got ", p.Ca_rest);
}
void CalciumPool::add_influx(std::shared_ptr<IonChannel> channel) {
  TORCH_CHECK(channel, "CalciumPool: null channel");
  TORCH_CHECK(channel.get() != this, "CalciumPool: a pool cannot feed itself");
  influx_.push_back(std::move(channel));
}
void CalciumPool::reset_own_state(int64_t) {
  const auto opts = has_state("Ca") ? state("Ca").options() : placed(options_);
  set_state("Ca", torch::full(state_shape(n_), p_.Ca_rest, opts));
}
at::Tensor CalciumPool::current(const at::Tensor& V) const { return torch::zeros_like(V); }
at::Tensor CalciumPool::conductance() const { return at::zeros({}, at::TensorOptions(at::kDouble)); }
void CalciumPool::advance(const at::Tensor& V, const Context& ctx) {
  constexpr double kFaraday = 96485.33212;  // C/mol
  at::Tensor inward = torch::zeros_like(state("Ca"));
  for (const auto& ch : influx_) inward = inward + ch->current(V);
  // uA/cm^2 over a shell of `depth` um: 10 I / (2 F depth) mM/ms.
  const at::Tensor drive = torch::clamp_min(inward * (10.0 / (2 * kFaraday * p_.depth)), 0);
  const at::Tensor Ca_inf = p_.Ca_rest + p_.tau * drive;
  set_state("Ca", Ca_inf + (state("Ca") - Ca_inf) * std::exp(-ctx.dt / p_.tau));
}

IonChannel::Kinetics CalciumPool::kinetics() const {
  Kinetics k = Kinetics::of(Kinetics::CaPool, 0, 0);
  k.depth = p_.depth;
  k.tau = p_.tau;
  k.Ca_rest = p_.Ca_rest;
  for (const auto& ch : influx_) k.influx.push_back(ch.get());
  return k;
}

KCaChannel::KCaChannel(int64_t n, std::shared_ptr<CalciumPool> pool, KCaParams p, at::TensorOptions options)
    : IonChannel("KCa", n, options), pool_(std::move(pool)), p_(p) {
  TORCH_CHECK(pool_, "KCaChannel: needs a CalciumPool");
  TORCH_CHECK(pool_->size() == n, "KCaChannel: the pool has ", pool_->size(), " neurons, the channel ", n);
  TORCH_CHECK(p.g >= 0 && p.alpha > 0 && p.beta > 0 && p.phi > 0 && p.n > 0,
              "KCaChannel: g must be >= 0 and alpha, beta, phi, n positive");
}
void KCaChannel::reset_own_state(int64_t) {
  const auto opts = has_state("p") ? state("p").options() : placed(options_);
  const double a = p_.alpha * std::pow(pool_->params().Ca_rest, p_.n);
  set_state("p", torch::full(state_shape(n_), a / (a + p_.beta), opts));
}
at::Tensor KCaChannel::conductance() const { return p_.g * state("p").pow(2); }
at::Tensor KCaChannel::current(const at::Tensor& V) const { return -conductance() * (V - p_.E); }
void KCaChannel::advance(const at::Tensor&, const Context& ctx) {
  const at::Tensor a = p_.alpha * pool_->concentration().pow(p_.n);
  set_state("p", relax(state("p"), p_.phi * a, torch::full_like(a, p_.phi * p_.beta), ctx.dt));
}

IonChannel::Kinetics KCaChannel::kinetics() const {
  Kinetics k = Kinetics::of(Kinetics::KCa, p_.g, p_.E);
  k.phi = p_.phi;
  k.alpha = p_.alpha;
  k.beta = p_.beta;
  k.hill = p_.n;
  k.pool = pool_.get();
  return k;
}

CondNeuGroup::CondNeuGroup(int64_t n, double C, double V_th, double V_init, Surrogate surrogate, at::TensorOptions options)
    : NeuronGroup("CondNeuGroup", n, options), C_(C), V_th_(V_th), V_init_(V_init), surrogate_(surrogate) {
  TORCH_CHECK(C > 0, "CondNeuGroup: C must be positive, got ", C);
}

void CondNeuGroup::reset_own_state(int64_t) {
  const auto opts = has_state("V") ? state("V").options() : placed(options_);
  const auto shape = state_shape(n_);
  set_state("V", v_init_ ? v_init_(shape).to(opts) : torch::full(shape, V_init_, opts));
  set_state("spike", torch::zeros(shape, opts));
  set_state("input", torch::zeros(shape, opts));
}

namespace detail {

namespace {

// The state names of a kind's gates, in the order the one-pass kernel keeps them.
std::vector<std::string> gate_names(IonChannel::Kinetics::Kind kind) {
  using K = IonChannel::Kinetics;
  switch (kind) {
    case K::NaHH: case K::NaTM: return {"m", "h"};
    case K::KHH: case K::KTM: return {"n"};
    case K::CaT: return {"p", "q"};
    case K::H: case K::KCa: return {"p"};
    case K::CaPool: return {"Ca"};
    default: return {};
  }
}

kernels::cond::Kind kernel_kind(IonChannel::Kinetics::Kind kind) {
  using K = IonChannel::Kinetics;
  using C = kernels::cond::Kind;
  switch (kind) {
    case K::NaHH: return C::NaHH;
    case K::KHH: return C::KHH;
    case K::NaTM: return C::NaTM;
    case K::KTM: return C::KTM;
    case K::CaT: return C::CaT;
    case K::H: return C::H;
    case K::CaPool: return C::CaPool;
    case K::KCa: return C::KCa;
    default: return C::Leak;
  }
}

template <typename T>
void one_pass_step(int64_t n, const T* V, const T* I, T* V_out, T* spike_out, const kernels::cond::Group<T>& grp) {
  const auto one_pass = fastsim::population_kernels().of<T>().cond_one_pass;
  at::parallel_for(0, n, kernels::cond::kNeuronsPerThread,
                   [&](int64_t lo, int64_t hi) { one_pass(grp, lo, hi, V, I, V_out, spike_out); });
}

}  // namespace

std::vector<std::string> cond_gate_names(const IonChannel& channel) { return gate_names(channel.kinetics().kind); }

bool plan_cond_group(const CondNeuGroup& group, const at::Tensor& V, const at::Tensor& I, CondPlan& plan) {
  const auto& channels = group.channels();
  if (!V.device().is_cpu() || (V.scalar_type() != at::kFloat && V.scalar_type() != at::kDouble)) return false;
  if (at::GradMode::is_enabled() && (V.requires_grad() || I.requires_grad())) return false;
  if (channels.empty() || channels.size() > static_cast<size_t>(kernels::cond::kMaxChannels)) return false;
  const auto index_of = [&channels](const IonChannel* ch) {
    for (size_t c = 0; c < channels.size(); ++c) {
      if (channels[c].get() == ch) return static_cast<int>(c);
    }
    return -1;
  };
  plan = CondPlan{};
  for (const auto& ch : channels) {
    const IonChannel::Kinetics k = ch->kinetics();
    if (k.kind == IonChannel::Kinetics::None) return false;
    kernels::cond::Channel c;
    c.kind = kernel_kind(k.kind);
    c.g = k.g, c.E = k.E, c.V_T = k.V_T;
    c.V_sh = k.V_sh, c.phi = k.phi, c.phi_q = k.phi_q;
    c.alpha = k.alpha, c.beta = k.beta, c.hill = k.hill;
    c.depth = k.depth, c.tau = k.tau, c.Ca_rest = k.Ca_rest;
    if (k.kind == IonChannel::Kinetics::KCa) {
      c.pool = index_of(k.pool);
      if (c.pool < 0) return false;
    }
    for (const IonChannel* source : k.influx) {
      const int j = index_of(source);
      if (j < 0 || channels[j]->kinetics().kind == IonChannel::Kinetics::CaPool) return false;
      if (c.n_influx == kernels::cond::kMaxChannels) return false;  // the kernel's fixed list is full
      c.influx[c.n_influx++] = j;
    }
    std::vector<at::Tensor> gates;
    const auto names = gate_names(k.kind);
    for (const auto& g : names) {
      const at::Tensor& x = ch->state(g);
      if (x.device() != V.device() || x.scalar_type() != V.scalar_type() || x.sizes() != V.sizes() ||
          (at::GradMode::is_enabled() && x.requires_grad())) {
        return false;
      }
      gates.push_back(x.contiguous());
    }
    plan.channels.push_back(c);
    plan.gate_names.push_back(names);
    plan.gates.push_back(std::move(gates));
  }
  return true;
}

template <typename T>
kernels::cond::Group<T> CondPlan::group(const std::vector<std::vector<at::Tensor>>& out, double C, double V_th,
                                        double dt) const {
  kernels::cond::Group<T> grp;
  grp.n_channels = static_cast<int>(channels.size());
  for (size_t c = 0; c < channels.size(); ++c) {
    grp.channels[c] = channels[c];
    for (size_t g = 0; g < gates[c].size(); ++g) {
      grp.in[c][g] = gates[c][g].data_ptr<T>();
      grp.out[c][g] = out[c][g].data_ptr<T>();
    }
  }
  grp.C = C, grp.V_th = V_th, grp.dt = dt;
  return grp;
}
template kernels::cond::Group<float> CondPlan::group<float>(const std::vector<std::vector<at::Tensor>>&, double, double,
                                                            double) const;
template kernels::cond::Group<double> CondPlan::group<double>(const std::vector<std::vector<at::Tensor>>&, double,
                                                              double, double) const;

}  // namespace detail

bool CondNeuGroup::takes_fused_step() const {
  if (!fused_ || !has_state("V")) return false;
  detail::CondPlan plan;
  return detail::plan_cond_group(*this, state("V"), state("input"), plan);
}

// One pass over the neurons for channels it knows, on the CPU, when nothing records gradients.
bool CondNeuGroup::fused_update(const at::Tensor& V, const at::Tensor& I, const Context& ctx) {
  detail::CondPlan plan;
  if (!detail::plan_cond_group(*this, V, I, plan)) return false;
  std::vector<std::vector<at::Tensor>> out(plan.gates.size());
  for (size_t c = 0; c < plan.gates.size(); ++c) {
    for (const auto& x : plan.gates[c]) out[c].push_back(at::empty_like(x));
  }
  const at::Tensor Vc = V.contiguous(), Ic = I.to(V.scalar_type()).expand(V.sizes()).contiguous();
  at::Tensor V_new = at::empty_like(Vc), spike = at::empty_like(Vc);
  AT_DISPATCH_FLOATING_TYPES(V.scalar_type(), "CondNeuGroup fused step", [&] {
    detail::one_pass_step<scalar_t>(Vc.numel(), Vc.data_ptr<scalar_t>(), Ic.data_ptr<scalar_t>(),
                                    V_new.data_ptr<scalar_t>(), spike.data_ptr<scalar_t>(),
                                    plan.group<scalar_t>(out, C_, V_th_, ctx.dt));
  });
  for (size_t c = 0; c < channels_.size(); ++c) {
    for (size_t g = 0; g < plan.gate_names[c].size(); ++g) channels_[c]->assign_state(plan.gate_names[c][g], out[c][g]);
  }
  set_state("spike", spike);
  set_state("V", V_new);
  set_state("input", torch::zeros_like(state("input")));
  return true;
}

void CondNeuGroup::update(const Context& ctx) {
  TORCH_CHECK(!channels_.empty(), "CondNeuGroup: no ion channels were added");
  const at::Tensor V = state("V");
  const at::Tensor I = total_current(V);  // external and synaptic, held over the step
  if (fused_ && fused_update(V, I, ctx)) return;
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
