#include <brain/models/config.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

namespace brain {

namespace {

using nlohmann::json;

std::string describe(const json& v) {
  std::string s = v.dump();
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

// One JSON object being read: remembers the fields it consumed, so leftovers are reported.
class Reader {
 public:
  Reader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j_.is_object()) throw ConfigError(path_, "expected an object, got " + describe(j_));
  }

  const json* find(const std::string& key) {
    known_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }
  std::string at(const std::string& key) const { return path_ + "/" + key; }

  double number(const std::string& key, double fallback, double lo = -std::numeric_limits<double>::infinity(),
                double hi = std::numeric_limits<double>::infinity(), bool lo_open = false) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) throw ConfigError(at(key), "expected a number, got " + describe(*v));
    const double x = v->get<double>();
    if (x < lo || x > hi || (lo_open && x == lo)) {
      std::ostringstream range;
      range << (lo_open ? "(" : "[") << lo << ", " << hi << "]";
      throw ConfigError(at(key), "expected a number in " + range.str() + ", got " + describe(*v));
    }
    return x;
  }
  int64_t integer(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number_integer()) throw ConfigError(at(key), "expected an integer, got " + describe(*v));
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) {
      throw ConfigError(at(key), "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                     "], got " + describe(*v));
    }
    return x;
  }
  bool boolean(const std::string& key, bool fallback) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) throw ConfigError(at(key), "expected true or false, got " + describe(*v));
    return v->get<bool>();
  }
  std::string choice(const std::string& key, const std::string& fallback, const std::vector<std::string>& options) {
    const json* v = find(key);
    if (!v) return fallback;
    std::string all;
    for (const auto& o : options) all += (all.empty() ? "" : ", ") + o;
    if (!v->is_string()) throw ConfigError(at(key), "expected one of " + all + ", got " + describe(*v));
    const auto s = v->get<std::string>();
    for (const auto& o : options) {
      if (o == s) return s;
    }
    throw ConfigError(at(key), "expected one of " + all + ", got " + describe(*v));
  }

  void finish() const {
    for (const auto& item : j_.items()) {
      if (known_.count(item.key())) continue;
      std::string all;
      for (const auto& k : known_) all += (all.empty() ? "" : ", ") + k;
      throw ConfigError(at(item.key()), "unknown field; expected one of: " + all);
    }
  }

 private:
  const json& j_;
  std::string path_;
  std::set<std::string> known_;
};

void read_neuron(const json& j, const std::string& path, LifParams& p) {
  Reader r(j, path);
  p.V_rest = r.number("V_rest", p.V_rest);
  p.V_reset = r.number("V_reset", p.V_reset);
  p.V_th = r.number("V_th", p.V_th);
  p.tau = r.number("tau", p.tau, 0, 1e6, true);
  p.R = r.number("R", p.R, 0, 1e12, true);
  p.tau_ref = r.number("tau_ref", p.tau_ref, 0, 1e6);
  if (const json* s = r.find("surrogate")) {
    if (!s->is_string()) throw ConfigError(r.at("surrogate"), "expected a surrogate name, got " + describe(*s));
    try {
      p.surrogate = Surrogate::named(s->get<std::string>());
    } catch (const std::exception& e) {
      throw ConfigError(r.at("surrogate"), "unknown surrogate " + describe(*s));
    }
  }
  r.finish();
  if (p.V_th <= p.V_reset) throw ConfigError(path + "/V_th", "must be above V_reset");
}

// The connectivity generators (fixed_prob and JIT) count rows and columns in 32-bit words.
constexpr int64_t kMaxPopulation = (int64_t{1} << 32) - 1;

void read_network(const json& j, const std::string& path, EINetSpec& n) {
  Reader r(j, path);
  n.output = r.choice("output", n.output, {"coba", "cuba"});
  n.n_exc = r.integer("n_exc", n.n_exc, 1, kMaxPopulation);
  n.n_inh = r.integer("n_inh", n.n_inh, 1, kMaxPopulation);
  n.p = r.number("p", n.p, 0, 1);
  n.connectivity = r.choice("connectivity", n.connectivity, {"csr", "jit"});
  if (n.connectivity == "jit" && n.p <= 0) throw ConfigError(r.at("p"), "JIT connectivity needs p > 0");
  n.w_exc = r.number("w_exc", n.w_exc);
  n.w_inh = r.number("w_inh", n.w_inh);
  n.tau_exc = r.number("tau_exc", n.tau_exc, 0, 1e6, true);
  n.tau_inh = r.number("tau_inh", n.tau_inh, 0, 1e6, true);
  n.E_exc = r.number("E_exc", n.E_exc);
  n.E_inh = r.number("E_inh", n.E_inh);
  if (const json* v = r.find("delay_ms"); v && v->is_object()) {
    // A delay per synapse, drawn uniformly in [low, high] ms.
    Reader d(*v, r.at("delay_ms"));
    d.choice("dist", "uniform", {"uniform"});
    n.delay_per_synapse = true;
    n.delay_ms_low = d.number("low", 0.0, 0, 1e4);
    n.delay_ms_high = d.number("high", n.delay_ms_low, 0, 1e4);
    d.finish();
    if (n.delay_ms_high < n.delay_ms_low) throw ConfigError(r.at("delay_ms") + "/high", "must be >= low");
    if (n.connectivity != "csr") {
      throw ConfigError(r.at("delay_ms"), "per-synapse delays need stored synapses (\"connectivity\": \"csr\")");
    }
    n.delay_ms = 0.0;
  } else {
    n.delay_ms = r.number("delay_ms", n.delay_ms, 0, 1e4);
  }
  if (const json* v = r.find("neuron")) read_neuron(*v, r.at("neuron"), n.neuron);
  if (const json* v = r.find("V_init")) {
    Reader vi(*v, r.at("V_init"));
    n.V_init = vi.choice("dist", "normal", {"normal", "uniform"});
    if (n.V_init == "normal") {
      n.V_init_a = vi.number("mean", -55.0);
      n.V_init_b = vi.number("std", 2.0, 0, 1e6);
    } else {
      n.V_init_a = vi.number("low", -60.0);
      n.V_init_b = vi.number("high", -50.0);
      if (n.V_init_b < n.V_init_a) throw ConfigError(vi.at("high"), "must be >= low");
    }
    vi.finish();
  }
  n.input_current = r.number("input_current", n.input_current);
  n.dtype = r.choice("dtype", n.dtype, {"float32", "float64"});
  n.event = r.boolean("event", n.event);
  n.method = r.choice("method", n.method, {"exp_euler", "euler"});
  r.finish();
}

void read_coba_hh(const json& j, const std::string& path, CobaHHSpec& n) {
  Reader r(j, path);
  n.n_exc = r.integer("n_exc", n.n_exc, 1, kMaxPopulation);
  n.n_inh = r.integer("n_inh", n.n_inh, 1, kMaxPopulation);
  n.p = r.number("p", n.p, 0, 1);
  n.connectivity = r.choice("connectivity", n.connectivity, {"csr", "jit"});
  if (n.connectivity == "jit" && n.p <= 0) throw ConfigError(r.at("p"), "JIT connectivity needs p > 0");
  n.w_exc = r.number("w_exc", n.w_exc);
  n.w_inh = r.number("w_inh", n.w_inh);
  n.tau_exc = r.number("tau_exc", n.tau_exc, 0, 1e6, true);
  n.tau_inh = r.number("tau_inh", n.tau_inh, 0, 1e6, true);
  n.E_exc = r.number("E_exc", n.E_exc);
  n.E_inh = r.number("E_inh", n.E_inh);
  n.C = r.number("C", n.C, 0, 1e6, true);
  n.g_leak = r.number("g_leak", n.g_leak, 0, 1e6);
  n.E_leak = r.number("E_leak", n.E_leak);
  n.g_Na = r.number("g_Na", n.g_Na, 0, 1e6);
  n.E_Na = r.number("E_Na", n.E_Na);
  n.g_K = r.number("g_K", n.g_K, 0, 1e6);
  n.E_K = r.number("E_K", n.E_K);
  n.V_T = r.number("V_T", n.V_T);
  n.V_th = r.number("V_th", n.V_th);
  if (const json* v = r.find("V_init")) {
    Reader vi(*v, r.at("V_init"));
    n.V_init_mean = vi.number("mean_above_E_leak", n.V_init_mean);
    n.V_init_std = vi.number("std", n.V_init_std, 0, 1e6);
    vi.finish();
  }
  if (const json* v = r.find("g_init")) {
    Reader gi(*v, r.at("g_init"));
    n.g_exc_init_mean = gi.number("exc_mean", n.g_exc_init_mean);
    n.g_exc_init_std = gi.number("exc_std", n.g_exc_init_std, 0, 1e6);
    n.g_inh_init_mean = gi.number("inh_mean", n.g_inh_init_mean);
    n.g_inh_init_std = gi.number("inh_std", n.g_inh_init_std, 0, 1e6);
    gi.finish();
  }
  n.dtype = r.choice("dtype", n.dtype, {"float32", "float64"});
  r.finish();
}

void read_decision(const json& j, const std::string& path, DecisionNetSpec& n) {
  Reader r(j, path);
  n.scale = r.number("scale", n.scale, 0, 1e4, true);
  n.f = r.number("f", n.f, 0, 0.5, true);
  if (n.f >= 0.5) throw ConfigError(r.at("f"), "must be below 0.5 (two selective pools)");
  if (std::llround(n.f * std::llround(1600 * n.scale)) < 1 || std::llround(400 * n.scale) < 1) {
    throw ConfigError(r.at("scale"), "leaves a population or a selective pool empty");
  }
  n.w_plus = r.number("w_plus", n.w_plus, 0, 1e3);
  n.coherence = {r.number("coherence", n.coherence.front(), -100, 100)};
  n.mu0 = r.number("mu0", n.mu0, 0, 1e5);
  n.stim_sigma = r.number("stim_sigma", n.stim_sigma, 0, 1e5);
  n.stim_interval = r.number("stim_interval", n.stim_interval, 0, 1e9, true);
  n.stim_on = r.number("stim_on", n.stim_on, 0, 1e9);
  n.stim_off = r.number("stim_off", n.stim_off, 0, 1e9);
  if (n.stim_off < n.stim_on) throw ConfigError(r.at("stim_off"), "must be >= stim_on");
  n.background_hz = r.number("background_hz", n.background_hz, 0, 1e6);
  n.g_ext_E = r.number("g_ext_E", n.g_ext_E, 0, 1e6);
  n.g_ext_I = r.number("g_ext_I", n.g_ext_I, 0, 1e6);
  n.g_EE_AMPA = r.number("g_EE_AMPA", n.g_EE_AMPA, 0, 1e6);
  n.g_EI_AMPA = r.number("g_EI_AMPA", n.g_EI_AMPA, 0, 1e6);
  n.g_EE_NMDA = r.number("g_EE_NMDA", n.g_EE_NMDA, 0, 1e6);
  n.g_EI_NMDA = r.number("g_EI_NMDA", n.g_EI_NMDA, 0, 1e6);
  n.g_IE_GABA = r.number("g_IE_GABA", n.g_IE_GABA, 0, 1e6);
  n.g_II_GABA = r.number("g_II_GABA", n.g_II_GABA, 0, 1e6);
  n.delay_ms = r.number("delay_ms", n.delay_ms, 0, 1e4);
  n.dtype = r.choice("dtype", n.dtype, {"float32", "float64"});
  r.finish();
}

void read_cann(const json& j, const std::string& path, CannSpec& n) {
  Reader r(j, path);
  n.size = r.integer("size", n.size, 1, int64_t{1} << 20);
  n.tau = r.number("tau", n.tau, 0, 1e6, true);
  n.k = r.number("k", n.k, 0, 1e6);
  n.a = r.number("a", n.a, 0, 1e3, true);
  n.A = r.number("A", n.A, -1e6, 1e6);
  n.J0 = r.number("J0", n.J0, -1e6, 1e6);
  n.z0 = r.number("z0", n.z0, -1e6, 1e6);
  n.speed = r.number("speed", n.speed, -1e3, 1e3);
  n.stim_on = r.number("stim_on", n.stim_on, 0, 1e12);
  n.stim_off = r.number("stim_off", n.stim_off, 0, 1e12);
  if (n.stim_off < n.stim_on) throw ConfigError(r.at("stim_off"), "must be >= stim_on");
  n.init_noise = r.number("init_noise", n.init_noise, 0, 1e6);
  n.method = r.choice("method", n.method, {"euler", "midpoint", "heun", "rk4"});
  n.dtype = r.choice("dtype", n.dtype, {"float32", "float64"});
  r.finish();
}

void read_esn(const json& j, const std::string& path, EsnSpec& n) {
  Reader r(j, path);
  n.size = r.integer("size", n.size, 1, int64_t{1} << 20);
  n.spectral_radius = r.number("spectral_radius", n.spectral_radius, 0, 1e3, true);
  n.leak = r.number("leak", n.leak, 0, 1, true);
  n.input_scale = r.number("input_scale", n.input_scale, 0, 1e6);
  n.bias_scale = r.number("bias_scale", n.bias_scale, 0, 1e6);
  n.density = r.number("density", n.density, 0, 1, true);
  n.connectivity = r.choice("connectivity", n.connectivity, {"dense", "jit"});
  n.washout = r.integer("washout", n.washout, 0, int64_t{1} << 30);
  n.train_steps = r.integer("train_steps", n.train_steps, 1, int64_t{1} << 30);
  n.test_steps = r.integer("test_steps", n.test_steps, 2, int64_t{1} << 30);
  n.horizon = r.integer("horizon", n.horizon, 1, int64_t{1} << 20);
  n.lorenz_dt = r.number("lorenz_dt", n.lorenz_dt, 0, 1, true);
  n.ridge_alpha = r.number("ridge_alpha", n.ridge_alpha, 0, 1e12);
  n.dtype = r.choice("dtype", n.dtype, {"float32", "float64"});
  r.finish();
}

}  // namespace

int64_t RunConfig::exc_size() const {
  if (model == "cann") return cann.size;
  if (model == "esn") return esn.size;
  if (model == "coba_hh") return coba_hh.n_exc;
  if (model == "decision_making") return std::llround(1600 * decision.scale);
  return network.n_exc;
}

int64_t RunConfig::inh_size() const {
  if (rate_model()) return 0;
  if (model == "coba_hh") return coba_hh.n_inh;
  if (model == "decision_making") return std::llround(400 * decision.scale);
  return network.n_inh;
}

RunConfig parse_run_config(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999 (found by fuzzing)
    throw ConfigError("", std::string("not valid JSON (") + e.what() + ")");
  }
  RunConfig c;
  Reader root(j, "");
  c.model = root.choice("model", c.model, {"ei_network", "coba_hh", "decision_making", "cann", "esn"});
  if (const json* v = root.find("network")) {
    if (c.model == "coba_hh") read_coba_hh(*v, "/network", c.coba_hh);
    else if (c.model == "cann") read_cann(*v, "/network", c.cann);
    else if (c.model == "esn") read_esn(*v, "/network", c.esn);
    else if (c.model == "decision_making") read_decision(*v, "/network", c.decision);
    else read_network(*v, "/network", c.network);
  }
  // The default traces (neurons 0-4) of a population smaller than that: those it has.
  c.voltage_neurons.erase(std::remove_if(c.voltage_neurons.begin(), c.voltage_neurons.end(),
                                         [&](int64_t i) { return i >= c.exc_size(); }),
                          c.voltage_neurons.end());
  if (c.rate_model()) {  // no spikes, no membrane potentials
    c.monitor_spikes = false;
    c.voltage_neurons.clear();
    c.record_units = std::min(c.record_units, c.esn.size);
  }
  if (const json* v = root.find("run")) {
    Reader r(*v, "/run");
    if (c.model == "esn") {
      for (const char* key : {"duration_ms", "dt_ms", "engine", "graphs", "check_finite"}) {
        if (v->contains(key)) {
          throw ConfigError(r.at(key), "not used by the esn model: it runs network.washout + train_steps + "
                                       "test_steps samples of the Lorenz system, spaced network.lorenz_dt");
        }
      }
    }
    c.duration_ms = r.number("duration_ms", c.duration_ms, 0, 1e9, true);
    c.dt_ms = r.number("dt_ms", c.dt_ms, 0, 1e3, true);
    c.seed = static_cast<uint64_t>(r.integer("seed", static_cast<int64_t>(c.seed), 0, std::numeric_limits<int64_t>::max()));
    c.device = r.choice("device", c.device, {"cpu", "cuda"});
    c.engine = r.choice("engine", c.engine, {"auto", "fast", "modules"});
    c.graphs = r.choice("graphs", c.graphs, {"auto", "off", "emulate"});
    c.check_finite = r.boolean("check_finite", c.check_finite);
    r.finish();
  }
  if (const json* v = root.find("monitors"); v && c.rate_model()) {
    Reader m(*v, "/monitors");
    if (c.model == "cann") c.activity_every = m.integer("activity_every", c.activity_every, 0, int64_t{1} << 30);
    else c.record_units = m.integer("record_units", c.record_units, 0, c.esn.size);
    m.finish();
  } else if (v) {
    Reader m(*v, "/monitors");
    c.monitor_spikes = m.boolean("spikes", c.monitor_spikes);
    if (const json* vn = m.find("voltage_neurons")) {
      if (!vn->is_array()) throw ConfigError(m.at("voltage_neurons"), "expected an array of neuron indices");
      c.voltage_neurons.clear();
      for (size_t i = 0; i < vn->size(); ++i) {
        const auto& e = (*vn)[i];
        const std::string p = m.at("voltage_neurons") + "/" + std::to_string(i);
        if (!e.is_number_integer()) throw ConfigError(p, "expected a neuron index, got " + describe(e));
        const int64_t idx = e.get<int64_t>();
        if (idx < 0 || idx >= c.exc_size()) {
          throw ConfigError(p, "neuron " + std::to_string(idx) + " is outside the excitatory population [0, " +
                                   std::to_string(c.exc_size()) + ")");
        }
        c.voltage_neurons.push_back(idx);
      }
    }
    c.raster_neurons = m.integer("raster_neurons", c.raster_neurons, 0, int64_t{1} << 40);
    m.finish();
  }
  root.finish();
  return c;
}

MemoryEstimate estimate_run_memory(const RunConfig& cfg) {
  if (cfg.model == "cann") {  // the dense [n, n] coupling; u and RK4's stages; the recordings
    const double n = static_cast<double>(cfg.cann.size), bytes = cfg.cann.dtype == "float64" ? 8 : 4;
    const double steps = cfg.duration_ms / cfg.dt_ms;
    MemoryEstimate e;
    e.connectivity = n * n * bytes;
    e.states = 12 * n * bytes;
    e.monitors = 2 * (steps * 4 * bytes + (cfg.activity_every > 0 ? steps / cfg.activity_every * n * bytes : 0));
    return e;
  }
  if (cfg.model == "esn") {  // A (dense) or nothing (jit); every state, kept for the fit
    const double n = static_cast<double>(cfg.esn.size), bytes = cfg.esn.dtype == "float64" ? 8 : 4;
    const double samples = static_cast<double>(cfg.esn.washout + cfg.esn.train_steps + cfg.esn.test_steps);
    MemoryEstimate e;
    e.connectivity = cfg.esn.connectivity == "dense" ? 2 * n * n * bytes : 0;
    e.build_peak = cfg.esn.connectivity == "dense" ? 3 * n * n * 16 : 0;  // eigenvalues, complex
    e.states = 2 * samples * n * bytes + 2 * n * n * 8;  // states, and the ridge normal equations
    e.monitors = samples * static_cast<double>(cfg.record_units) * bytes;
    return e;
  }
  EINetSpec n = cfg.network;
  double state_factor = 1;  // states per neuron relative to the LIF network's
  if (cfg.model == "coba_hh") {  // the same projections; three gates more per neuron
    n.n_exc = cfg.coba_hh.n_exc, n.n_inh = cfg.coba_hh.n_inh, n.p = cfg.coba_hh.p;
    n.connectivity = cfg.coba_hh.connectivity, n.dtype = cfg.coba_hh.dtype, n.delay_ms = 0;
    state_factor = 2;
  } else if (cfg.model == "decision_making") {  // all-to-all by pools: no stored synapses
    n.n_exc = cfg.exc_size(), n.n_inh = cfg.inh_size(), n.p = 0;
    n.connectivity = "jit", n.dtype = cfg.decision.dtype, n.delay_ms = cfg.decision.delay_ms;
    state_factor = 4;  // AMPA, NMDA (two states), GABA, Poisson inputs
  }
  MemoryEstimate e;
  const double ne = static_cast<double>(n.n_exc), ni = static_cast<double>(n.n_inh);
  const double value_bytes = n.dtype == "float64" ? 8 : 4;
  if (n.connectivity == "csr") {
    const std::pair<double, double> pathways[] = {{ne, ne}, {ne, ni}, {ni, ne}, {ni, ni}};
    double largest = 0;
    for (const auto& [pre, post] : pathways) {
      const double nnz = pre * post * n.p;
      e.connectivity += nnz * 8 + (pre + 1) * 8;  // int64 indices and indptr; weights are one value
      largest = std::max(largest, nnz + pre);
    }
    e.build_peak = largest * 24;  // per-row lists, row and column tensors (int64) while building
  }
  const double delay_rows = std::ceil((n.delay_per_synapse ? n.delay_ms_high : n.delay_ms) / cfg.dt_ms) + 1;
  e.states = state_factor * ((ne + ni) * (value_bytes * 4 + 8) + 2 * (ne + ni) * value_bytes) +
             delay_rows * (ne + ni) * value_bytes;  // one spike history per population, shared
  const double steps = cfg.duration_ms / cfg.dt_ms;
  const double per_step =
      static_cast<double>(cfg.voltage_neurons.size()) * value_bytes + 8 + (cfg.monitor_spikes ? ne + ni : 0);
  e.monitors = 2 * steps * per_step;
  return e;
}

}  // namespace brain
