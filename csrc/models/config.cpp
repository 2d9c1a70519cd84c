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

void read_network(const json& j, const std::string& path, EINetSpec& n) {
  Reader r(j, path);
  n.output = r.choice("output", n.output, {"coba", "cuba"});
  n.n_exc = r.integer("n_exc", n.n_exc, 1, int64_t{1} << 40);
  n.n_inh = r.integer("n_inh", n.n_inh, 1, int64_t{1} << 40);
  n.p = r.number("p", n.p, 0, 1);
  n.connectivity = r.choice("connectivity", n.connectivity, {"csr", "jit"});
  if (n.connectivity == "jit" && n.p <= 0) throw ConfigError(r.at("p"), "JIT connectivity needs p > 0");
  n.w_exc = r.number("w_exc", n.w_exc);
  n.w_inh = r.number("w_inh", n.w_inh);
  n.tau_exc = r.number("tau_exc", n.tau_exc, 0, 1e6, true);
  n.tau_inh = r.number("tau_inh", n.tau_inh, 0, 1e6, true);
  n.E_exc = r.number("E_exc", n.E_exc);
  n.E_inh = r.number("E_inh", n.E_inh);
  n.delay_ms = r.number("delay_ms", n.delay_ms, 0, 1e4);
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

}  // namespace

RunConfig parse_run_config(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999 (found by fuzzing)
    throw ConfigError("", std::string("not valid JSON (") + e.what() + ")");
  }
  RunConfig c;
  Reader root(j, "");
  c.model = root.choice("model", c.model, {"ei_network"});
  if (const json* v = root.find("network")) read_network(*v, "/network", c.network);
  if (const json* v = root.find("run")) {
    Reader r(*v, "/run");
    c.duration_ms = r.number("duration_ms", c.duration_ms, 0, 1e9, true);
    c.dt_ms = r.number("dt_ms", c.dt_ms, 0, 1e3, true);
    c.seed = static_cast<uint64_t>(r.integer("seed", static_cast<int64_t>(c.seed), 0, std::numeric_limits<int64_t>::max()));
    c.device = r.choice("device", c.device, {"cpu", "cuda"});
    c.engine = r.choice("engine", c.engine, {"auto", "fast", "modules"});
    c.check_finite = r.boolean("check_finite", c.check_finite);
    r.finish();
  }
  if (const json* v = root.find("monitors")) {
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
        if (idx < 0 || idx >= c.network.n_exc) {
          throw ConfigError(p, "neuron " + std::to_string(idx) + " is outside the excitatory population [0, " +
                                   std::to_string(c.network.n_exc) + ")");
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
  const EINetSpec& n = cfg.network;
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
  const double delay_rows = std::ceil(n.delay_ms / cfg.dt_ms) + 1;
  e.states = (ne + ni) * (value_bytes * 4 + 8) + 2 * (ne + ni) * value_bytes + 2 * delay_rows * (ne + ni) * value_bytes;
  const double steps = cfg.duration_ms / cfg.dt_ms;
  const double per_step =
      static_cast<double>(cfg.voltage_neurons.size()) * value_bytes + 8 + (cfg.monitor_spikes ? ne + ni : 0);
  e.monitors = 2 * steps * per_step;
  return e;
}

}  // namespace brain
