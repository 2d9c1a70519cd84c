#include <brain/models/channels.h>

#include <cmath>
#include <functional>

#include <ATen/Parallel.h>
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
  Kinetics k{Kinetics::CaT, p_.g, p_.E, 0};
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
  Kinetics k{Kinetics::H, p_.g, p_.E, 0};
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
  Kinetics k{Kinetics::CaPool, 0, 0, 0};
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
  Kinetics k{Kinetics::KCa, p_.g, p_.E, 0};
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

namespace {

// Scalar twins of hh_rates.h, for the fused pass: the same formulas, limits and thresholds.
template <typename T>
T x_over_expm1(T x, T s) {
  return std::abs(x) < T(1e-6) ? s : x / std::expm1(x / s);
}
template <typename T>
T exprel_rate(T x, T scale) {  // scale * x / (1 - exp(-x / 10))
  return std::abs(x) < T(1e-6) ? T(10) * scale : scale * x / (T(1) - std::exp(-x / T(10)));
}
template <typename T>
T relax_scalar(T x, T alpha, T beta, T dt) {
  const T rate = alpha + beta, inf = alpha / rate;
  return inf + (x - inf) * std::exp(-rate * dt);
}

struct FusedChannel {
  IonChannel::Kinetics k;
  std::vector<at::Tensor> gates_in, gates_out;  // contiguous, in gate_names order
  int pool = -1;            // KCa: its pool's index among the group's channels
  std::vector<int> influx;  // CaPool: the indices of the channels that feed it
};

// The state names of a kind's gates, in the order the fused pass keeps them.
std::vector<const char*> gate_names(IonChannel::Kinetics::Kind kind) {
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

constexpr int kMaxFusedChannels = 16;

template <typename T>
struct GatePointers {
  const IonChannel::Kinetics* k;
  const FusedChannel* f;
  const T* in[2] = {nullptr, nullptr};
  T* out[2] = {nullptr, nullptr};
};

template <typename T>
T sigmoid_scalar(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// A channel's conductance from its gates (0 for a calcium pool, which carries no current).
template <typename T>
T conductance_of(const IonChannel::Kinetics& k, const T* x) {
  using K = IonChannel::Kinetics;
  const T g = static_cast<T>(k.g);
  switch (k.kind) {
    case K::NaHH: case K::NaTM: return g * (x[0] * x[0] * x[0]) * x[1];
    case K::KHH: case K::KTM: return g * (x[0] * x[0] * x[0] * x[0]);
    case K::CaT: return g * (x[0] * x[0]) * x[1];
    case K::H: return g * x[0];
    case K::KCa: return g * (x[0] * x[0]);
    case K::CaPool: return T(0);
    default: return g;  // Leak
  }
}

template <typename T>
void fused_cond_step(int64_t n, const T* V, const T* I, T* V_out, T* spike_out, std::vector<FusedChannel>& fused,
                     double C, double V_th, double dt_d) {
  using K = IonChannel::Kinetics;
  const T dt = static_cast<T>(dt_d), c = static_cast<T>(C), th = static_cast<T>(V_th);
  std::vector<GatePointers<T>> chans;
  for (auto& f : fused) {
    GatePointers<T> p{&f.k, &f};
    for (size_t g = 0; g < f.gates_in.size(); ++g) {
      p.in[g] = f.gates_in[g].data_ptr<T>();
      p.out[g] = f.gates_out[g].data_ptr<T>();
    }
    chans.push_back(p);
  }
  const int n_chans = static_cast<int>(chans.size());
  // ~10 transcendental functions per neuron: a thread per 256 neurons is worth it (COBA-HH at
  // N = 1000 steps 20% faster than with 1024, measured on 2 cores).
  at::parallel_for(0, n, 256, [&](int64_t lo, int64_t hi) {
    // Each channel's gates as the op-by-op path sees them when it reaches that channel: the
    // old values until the channel has moved, the new ones after (a pool reads the current
    // of its influx channels, a KCa channel its pool's [Ca], in whichever state they are).
    T now[kMaxFusedChannels][2];
    for (int64_t i = lo; i < hi; ++i) {
      const T v = V[i];
      for (int ch = 0; ch < n_chans; ++ch) {
        for (int g = 0; g < 2; ++g) now[ch][g] = chans[ch].in[g] ? chans[ch].in[g][i] : T(0);
      }
      T G = 0, current = 0;
      for (int ci = 0; ci < n_chans; ++ci) {
        const auto& ch = chans[ci];
        const K& k = *ch.k;
        const T VT = static_cast<T>(k.V_T);
        T* x = now[ci];
        switch (k.kind) {
          case K::NaHH:
            x[0] = relax_scalar(x[0], exprel_rate(v + T(40), T(0.1)), T(4) * std::exp(-(v + T(65)) / T(18)), dt);
            x[1] = relax_scalar(x[1], T(0.07) * std::exp(-(v + T(65)) / T(20)),
                                T(1) / (T(1) + std::exp(-(v + T(35)) / T(10))), dt);
            break;
          case K::KHH:
            x[0] = relax_scalar(x[0], exprel_rate(v + T(55), T(0.01)), T(0.125) * std::exp(-(v + T(65)) / T(80)), dt);
            break;
          case K::NaTM:
            x[0] = relax_scalar(x[0], T(0.32) * x_over_expm1(T(13) - v + VT, T(4)),
                                T(0.28) * x_over_expm1(v - VT - T(40), T(5)), dt);
            x[1] = relax_scalar(x[1], T(0.128) * std::exp((T(17) - v + VT) / T(18)),
                                T(4) / (T(1) + std::exp((T(40) - v + VT) / T(5))), dt);
            break;
          case K::KTM:
            x[0] = relax_scalar(x[0], T(0.032) * x_over_expm1(T(15) - v + VT, T(5)),
                                T(0.5) * std::exp((T(10) - v + VT) / T(40)), dt);
            break;
          case K::CaT: {
            const T sh = static_cast<T>(k.V_sh);
            const T p_inf = sigmoid_scalar((v + T(59) - sh) / T(6.2));
            const T tau_p = (T(1) / (std::exp(-(v + T(132) - sh) / T(16.7)) + std::exp((v + T(16.8) - sh) / T(18.2))) +
                             T(0.612)) / static_cast<T>(k.phi);
            const T q_inf = sigmoid_scalar(-(v + T(83) - sh) / T(4));
            const T u = v - sh;
            const T tau_q = (u < T(-80) ? std::exp((u + T(467)) / T(66.6)) : std::exp(-(u + T(22)) / T(10.5)) + T(28)) /
                            static_cast<T>(k.phi_q);
            x[0] = p_inf + (x[0] - p_inf) * std::exp(-dt / tau_p);
            x[1] = q_inf + (x[1] - q_inf) * std::exp(-dt / tau_q);
            break;
          }
          case K::H: {
            const T p_inf = sigmoid_scalar(-(v + T(75)) / T(5.5));
            const T tau = T(1) / (std::exp(T(-0.086) * v - T(14.59)) + std::exp(T(0.0701) * v - T(1.87))) /
                          static_cast<T>(k.phi);
            x[0] = p_inf + (x[0] - p_inf) * std::exp(-dt / tau);
            break;
          }
          case K::CaPool: {
            constexpr double kFaraday = 96485.33212;  // C/mol, as CalciumPool::advance
            T inward = 0;
            for (const int j : ch.f->influx) {
              inward = inward + -conductance_of(*chans[j].k, now[j]) * (v - static_cast<T>(chans[j].k->E));
            }
            T drive = inward * static_cast<T>(10.0 / (2 * kFaraday * k.depth));
            drive = drive < T(0) ? T(0) : drive;
            const T Ca_inf = static_cast<T>(k.Ca_rest) + static_cast<T>(k.tau) * drive;
            x[0] = Ca_inf + (x[0] - Ca_inf) * static_cast<T>(std::exp(-dt_d / k.tau));
            break;
          }
          case K::KCa: {
            const T a = static_cast<T>(k.alpha) * std::pow(now[ch.f->pool][0], static_cast<T>(k.hill));
            x[0] = relax_scalar(x[0], static_cast<T>(k.phi) * a, static_cast<T>(k.phi * k.beta), dt);
            break;
          }
          default:  // Leak
            break;
        }
        for (int g = 0; g < 2; ++g) {
          if (ch.out[g]) ch.out[g][i] = x[g];
        }
        if (k.kind == K::CaPool) continue;
        const T cond = conductance_of(k, x);
        G += cond;
        current -= cond * (v - static_cast<T>(k.E));
      }
      const T a = -G / c, ad = a * dt;
      const T phi = std::abs(ad) < T(1e-12) ? dt : std::expm1(ad) / a;
      const T v_new = v + phi * ((I[i] + current) / c);
      V_out[i] = v_new;
      spike_out[i] = std::min(v_new - th, th - v) > T(0) ? T(1) : T(0);
    }
  });
}

}  // namespace

namespace {

// The one-pass update's plan for these channels and states, or false when it does not apply
// (a channel it does not know, a pool or an influx channel outside the group, a state on a
// GPU, of another type or recording gradients): then the group updates op by op.
bool plan_fused(const std::vector<std::shared_ptr<IonChannel>>& channels, const at::Tensor& V, const at::Tensor& I,
                std::vector<FusedChannel>& plan) {
  if (!V.device().is_cpu() || (V.scalar_type() != at::kFloat && V.scalar_type() != at::kDouble)) return false;
  if (at::GradMode::is_enabled() && (V.requires_grad() || I.requires_grad())) return false;
  if (channels.size() > static_cast<size_t>(kMaxFusedChannels)) return false;
  const auto index_of = [&channels](const IonChannel* ch) {
    for (size_t c = 0; c < channels.size(); ++c) {
      if (channels[c].get() == ch) return static_cast<int>(c);
    }
    return -1;
  };
  plan.clear();
  for (const auto& ch : channels) {
    FusedChannel f{ch->kinetics(), {}, {}, -1, {}};
    if (f.k.kind == IonChannel::Kinetics::None) return false;
    if (f.k.kind == IonChannel::Kinetics::KCa) {
      f.pool = index_of(f.k.pool);
      if (f.pool < 0) return false;
    }
    for (const IonChannel* source : f.k.influx) {
      const int j = index_of(source);
      if (j < 0 || channels[j]->kinetics().kind == IonChannel::Kinetics::CaPool) return false;
      f.influx.push_back(j);
    }
    for (const char* g : gate_names(f.k.kind)) {
      const at::Tensor& x = ch->state(g);
      if (x.device() != V.device() || x.scalar_type() != V.scalar_type() || x.sizes() != V.sizes() ||
          (at::GradMode::is_enabled() && x.requires_grad())) {
        return false;
      }
      f.gates_in.push_back(x.contiguous());
    }
    plan.push_back(std::move(f));
  }
  return true;
}

}  // namespace

bool CondNeuGroup::takes_fused_step() const {
  if (!fused_ || channels_.empty() || !has_state("V")) return false;
  std::vector<FusedChannel> plan;
  return plan_fused(channels_, state("V"), state("input"), plan);
}

// One pass over the neurons for channels it knows, on the CPU, when nothing records gradients.
bool CondNeuGroup::fused_update(const at::Tensor& V, const at::Tensor& I, const Context& ctx) {
  std::vector<FusedChannel> chans;
  if (!plan_fused(channels_, V, I, chans)) return false;
  for (auto& f : chans) {
    for (const auto& x : f.gates_in) f.gates_out.push_back(at::empty_like(x));
  }
  const at::Tensor Vc = V.contiguous(), Ic = I.to(V.scalar_type()).expand(V.sizes()).contiguous();
  at::Tensor V_new = at::empty_like(Vc), spike = at::empty_like(Vc);
  AT_DISPATCH_FLOATING_TYPES(V.scalar_type(), "CondNeuGroup fused step", [&] {
    fused_cond_step<scalar_t>(Vc.numel(), Vc.data_ptr<scalar_t>(), Ic.data_ptr<scalar_t>(), V_new.data_ptr<scalar_t>(),
                              spike.data_ptr<scalar_t>(), chans, C_, V_th_, ctx.dt);
  });
  for (size_t c = 0; c < channels_.size(); ++c) {
    const auto names = gate_names(chans[c].k.kind);
    for (size_t g = 0; g < names.size(); ++g) channels_[c]->assign_state(names[g], chans[c].gates_out[g]);
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
