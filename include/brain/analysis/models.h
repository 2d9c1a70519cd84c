// Built-in vector fields for the analysis tools and `brain analyze` (SPEC sections 4 and 5).
// Every parameter is a tensor argument, so any of them can be swept in a bifurcation.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <brain/analysis/analysis.h>
#include <brain/export.h>

namespace brain::analysis {

struct BuiltinModel {
  std::string name;
  std::string description;
  std::vector<Axis> variables;                         // names and default ranges
  std::vector<std::pair<std::string, double>> params;  // names and default values
  Field field;                                         // variables, then params, in these orders
};

// fitzhugh_nagumo (v, w; a, b, tau, I), wilson_cowan (e, i; ..., I_e, I_i),
// qif_mean_field (r, v; tau, eta, delta, J, I), stuart_landau (x, y; a, w),
// qif_normal_form (x; I: dx/dt = x^2 + I), morris_lecar (V, W; ..., I),
// decision_making (s1, s2; Wong & Wang 2006 reduced model, time in ms; mu0, coherence, ...),
// hodgkin_huxley (V, m, h, n; E_Na, E_K, E_L, g_Na, g_K, g_L, C, I) and its fast subsystem
// hh_fast (V, m; h, n, then the same parameters).
BRAIN_API const std::vector<BuiltinModel>& builtin_models();
// Throws naming the known models when `name` is not one of them.
BRAIN_API const BuiltinModel& builtin_model(const std::string& name);

}  // namespace brain::analysis
