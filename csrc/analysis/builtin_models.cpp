#include <brain/analysis/models.h>

#include <ATen/ATen.h>

#include <brain/models/point_neurons.h>
#include <brain/models/rate_models.h>

#include "csrc/models/hh_rates.h"
#include "csrc/models/rate_fields.h"

namespace brain::analysis {

namespace {

using Args = std::vector<at::Tensor>;

std::vector<BuiltinModel> make_models() {
  std::vector<BuiltinModel> m;
  const FHNParams fhn;
  m.push_back({"fitzhugh_nagumo", "FitzHugh-Nagumo: dv/dt = v - v^3/3 - w + I, tau dw/dt = v + a - b w",
               {{"v", -3, 3}, {"w", -1.5, 3}},
               {{"a", fhn.a}, {"b", fhn.b}, {"tau", fhn.tau}, {"I", 0.0}},
               [](const Args& x) {
                 return fields::fitzhugh_nagumo(x[0], x[1], x[2], x[3], x[4], x[5], at::zeros({}, x[0].options()));
               }});
  const WilsonCowanParams wc;
  m.push_back({"wilson_cowan", "Wilson-Cowan excitatory/inhibitory rates (1972)",
               {{"e", -0.2, 1}, {"i", -0.2, 1}},
               {{"tau_e", wc.tau_e}, {"a_e", wc.a_e}, {"theta_e", wc.theta_e}, {"tau_i", wc.tau_i}, {"a_i", wc.a_i},
                {"theta_i", wc.theta_i}, {"w_ee", wc.w_ee}, {"w_ei", wc.w_ei}, {"w_ie", wc.w_ie}, {"w_ii", wc.w_ii},
                {"r", wc.r}, {"I_e", 0.0}, {"I_i", 0.0}},
               [](const Args& x) {
                 return fields::wilson_cowan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11],
                                             x[12], x[13], x[14]);
               }});
  const QIFMeanFieldParams qif;
  m.push_back({"qif_mean_field", "Montbrio-Pazo-Roxin mean field of QIF neurons (rate r, mean voltage v)",
               {{"r", 0, 3}, {"v", -4, 2}},
               {{"tau", qif.tau}, {"eta", qif.eta}, {"delta", qif.delta}, {"J", qif.J}, {"I", 0.0}},
               [](const Args& x) {
                 return fields::qif_mean_field(x[0], x[1], x[2], x[3], x[4], x[5], at::zeros({}, x[0].options()), x[6]);
               }});
  const StuartLandauParams sl;
  m.push_back({"stuart_landau", "Stuart-Landau oscillator (Hopf normal form): limit cycle of radius sqrt(a) for a > 0",
               {{"x", -2, 2}, {"y", -2, 2}},
               {{"a", sl.a}, {"w", sl.w}},
               [](const Args& x) {
                 const auto zero = at::zeros({}, x[0].options());
                 return fields::stuart_landau(x[0], x[1], x[2], x[3], zero, zero);
               }});
  m.push_back({"qif_normal_form", "saddle-node normal form dx/dt = x^2 + I", {{"x", -3, 3}}, {{"I", -1.0}},
               [](const Args& x) { return Args{x[0] * x[0] + x[1]}; }});
  const MorrisLecarParams ml;
  m.push_back({"morris_lecar", "Morris-Lecar (Rinzel & Ermentrout parameters), V in mV, time in ms",
               {{"V", -80, 60}, {"W", -0.1, 1}},
               {{"V_Ca", ml.V_Ca}, {"g_Ca", ml.g_Ca}, {"V_K", ml.V_K}, {"g_K", ml.g_K}, {"V_leak", ml.V_leak},
                {"g_leak", ml.g_leak}, {"C", ml.C}, {"V1", ml.V1}, {"V2", ml.V2}, {"V3", ml.V3}, {"V4", ml.V4},
                {"phi", ml.phi}, {"I", 0.0}},
               [](const Args& x) {
                 return fields::morris_lecar(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11],
                                             x[12], x[13], x[14]);
               }});
  // Wong & Wang (2006), the two-variable reduction of the decision-making network: NMDA
  // gating s1, s2 of the two selective populations, time in ms, currents in nA.
  //   x1 = J_same s1 - J_cross s2 + I_0 + J_ext mu0 (1 + coherence / 100), x2 likewise,
  //   H(x) = (a x - b) / (1 - exp(-d (a x - b)))  (Hz),
  //   ds_i/dt = -s_i / tau_s + (1 - s_i) gamma H(x_i) / 1000.
  m.push_back({"decision_making", "Wong & Wang (2006) reduced decision-making model (s1, s2), time in ms",
               {{"s1", 0, 1}, {"s2", 0, 1}},
               {{"mu0", 30.0}, {"coherence", 0.0}, {"J_same", 0.2609}, {"J_cross", 0.0497}, {"I_0", 0.3255},
                {"J_ext", 5.2e-4}, {"a", 270.0}, {"b", 108.0}, {"d", 0.154}, {"tau_s", 100.0}, {"gamma", 0.641}},
               [](const Args& x) {
                 const auto &s1 = x[0], &s2 = x[1], &mu0 = x[2], &c = x[3], &Js = x[4], &Jc = x[5], &I0 = x[6],
                            &Je = x[7], &a = x[8], &b = x[9], &d = x[10], &tau = x[11], &gamma = x[12];
                 const auto H = [&](const at::Tensor& in) {
                   const auto u = a * in - b;
                   return u / -at::expm1(-d * u);
                 };
                 const auto x1 = Js * s1 - Jc * s2 + I0 + Je * mu0 * (1 + c / 100);
                 const auto x2 = Js * s2 - Jc * s1 + I0 + Je * mu0 * (1 - c / 100);
                 return Args{-s1 / tau + (1 - s1) * gamma * H(x1) / 1000, -s2 / tau + (1 - s2) * gamma * H(x2) / 1000};
               }});
  // Hodgkin-Huxley 1952 (rest near -65 mV), and its fast subsystem: V and m, with the slow
  // gates h and n held as parameters (their resting values by default).
  const HHParams hh;
  const auto hh_current = [](const at::Tensor& V, const at::Tensor& m, const at::Tensor& h, const at::Tensor& n,
                             const Args& p) {  // p: E_Na, E_K, E_L, g_Na, g_K, g_L, C, I
    return (-p[3] * m.pow(3) * h * (V - p[0]) - p[4] * n.pow(4) * (V - p[1]) - p[5] * (V - p[2]) + p[7]) / p[6];
  };
  const auto gate = [](const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& beta) {
    return alpha * (1 - x) - beta * x;
  };
  const std::vector<std::pair<std::string, double>> hh_params{{"E_Na", hh.E_Na}, {"E_K", hh.E_K}, {"E_L", hh.E_L},
                                                              {"g_Na", hh.g_Na}, {"g_K", hh.g_K}, {"g_L", hh.g_L},
                                                              {"C", hh.C},       {"I", 0.0}};
  m.push_back({"hodgkin_huxley", "Hodgkin-Huxley 1952 (V in mV, time in ms, rest near -65 mV)",
               {{"V", -90, 60}, {"m", 0, 1}, {"h", 0, 1}, {"n", 0, 1}},
               hh_params,
               [hh_current, gate](const Args& x) {
                 const auto &V = x[0], &mm = x[1], &h = x[2], &n = x[3];
                 const Args p(x.begin() + 4, x.end());
                 return Args{hh_current(V, mm, h, n, p), gate(mm, detail::hh_alpha_m(V), detail::hh_beta_m(V)),
                             gate(h, detail::hh_alpha_h(V), detail::hh_beta_h(V)),
                             gate(n, detail::hh_alpha_n(V), detail::hh_beta_n(V))};
               }});
  auto fast_params = hh_params;
  fast_params.insert(fast_params.begin(), {{"h", 0.5961}, {"n", 0.3177}});
  m.push_back({"hh_fast", "Hodgkin-Huxley fast subsystem (V, m) with the slow gates h, n as parameters",
               {{"V", -90, 60}, {"m", -0.05, 1.05}},
               fast_params,
               [hh_current, gate](const Args& x) {
                 const auto &V = x[0], &mm = x[1], &h = x[2], &n = x[3];
                 const Args p(x.begin() + 4, x.end());
                 return Args{hh_current(V, mm, h, n, p), gate(mm, detail::hh_alpha_m(V), detail::hh_beta_m(V))};
               }});
  return m;
}

}  // namespace

const std::vector<BuiltinModel>& builtin_models() {
  static const std::vector<BuiltinModel> models = make_models();
  return models;
}

const BuiltinModel& builtin_model(const std::string& name) {
  std::string known;
  for (const auto& m : builtin_models()) {
    if (m.name == name) return m;
    known += (known.empty() ? "" : ", ") + m.name;
  }
  TORCH_CHECK(false, "unknown built-in model '", name, "'; known models: ", known);
}

}  // namespace brain::analysis
