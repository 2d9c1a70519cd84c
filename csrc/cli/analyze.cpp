// `brain analyze CONFIG.json`: a phase plane or a bifurcation of a built-in model, from JSON
// (validated; errors name the JSON path), written as DIR/summary.json and DIR/figure.svg.
#include "csrc/cli/commands.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <brain/analysis/analysis.h>
#include <brain/analysis/models.h>
#include <brain/io/plot.h>
#include <brain/models/config.h>

namespace brain::cli {

namespace {

namespace ba = brain::analysis;
using nlohmann::json;

const char* kAnalyzeUsage =
    "usage: brain analyze CONFIG.json [--out DIR]\n"
    "  CONFIG.json: {\"model\": NAME, \"analysis\": \"phase_plane\" | \"bifurcation\",\n"
    "                \"variables\": {NAME: [lo, hi]}, \"params\": {NAME: value | [lo, hi]},\n"
    "                \"resolution\": N | {NAME: N}, \"trajectories\": [[x0, ...], ...],\n"
    "                \"duration\": T, \"dt\": DT, \"limit_cycles\": true|false}\n"
    "  writes DIR/summary.json (fixed points, stability, events) and DIR/figure.svg\n";

struct AnalyzeConfig {
  std::string model, analysis = "phase_plane";
  std::vector<ba::Axis> variables;
  std::vector<ba::Param> params;
  std::vector<std::vector<double>> trajectories;
  double duration = 100, dt = 0.01;
  bool limit_cycles = false;
};

std::string kind_of(const json& v) {
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  if (v.is_boolean()) return "a boolean";
  return "null";
}

double number(const json& v, const std::string& path) {
  if (!v.is_number()) throw ConfigError(path, "expected a number, got " + kind_of(v));
  const double x = v.get<double>();
  if (!std::isfinite(x)) throw ConfigError(path, "expected a finite number");
  return x;
}

std::pair<double, double> range(const json& v, const std::string& path) {
  if (!v.is_array() || v.size() != 2) throw ConfigError(path, "expected [lo, hi], got " + kind_of(v));
  const double lo = number(v[0], path + "/0"), hi = number(v[1], path + "/1");
  if (!(lo < hi)) throw ConfigError(path, "empty or inverted range; expected lo < hi");
  return {lo, hi};
}

AnalyzeConfig parse(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    throw ConfigError("", std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) throw ConfigError("", "expected an object");
  static const std::set<std::string> known{"model", "analysis", "variables", "params", "resolution", "trajectories",
                                           "duration", "dt", "limit_cycles"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key()))
      throw ConfigError("/" + it.key(), "unknown field; expected one of: model, analysis, variables, params, "
                                        "resolution, trajectories, duration, dt, limit_cycles");
  AnalyzeConfig c;
  if (!j.contains("model") || !j["model"].is_string()) throw ConfigError("/model", "expected a built-in model name");
  c.model = j["model"].get<std::string>();
  const ba::BuiltinModel* model = nullptr;
  std::string names;
  for (const auto& m : ba::builtin_models()) {
    if (m.name == c.model) model = &m;
    names += (names.empty() ? "" : ", ") + m.name;
  }
  if (!model) throw ConfigError("/model", "unknown model '" + c.model + "'; expected one of: " + names);
  if (j.contains("analysis")) {
    if (!j["analysis"].is_string() || (j["analysis"] != "phase_plane" && j["analysis"] != "bifurcation"))
      throw ConfigError("/analysis", "expected \"phase_plane\" or \"bifurcation\"");
    c.analysis = j["analysis"].get<std::string>();
  }
  c.variables = model->variables;
  if (j.contains("variables")) {
    if (!j["variables"].is_object()) throw ConfigError("/variables", "expected an object NAME: [lo, hi]");
    for (auto it = j["variables"].begin(); it != j["variables"].end(); ++it) {
      auto found = std::find_if(c.variables.begin(), c.variables.end(), [&](const ba::Axis& a) { return a.name == it.key(); });
      if (found == c.variables.end())
        throw ConfigError("/variables/" + it.key(), "model '" + c.model + "' has no such variable");
      std::tie(found->lo, found->hi) = range(it.value(), "/variables/" + it.key());
    }
  }
  for (const auto& [name, value] : model->params) c.params.push_back(ba::Param::fixed(name, value));
  if (j.contains("params")) {
    if (!j["params"].is_object()) throw ConfigError("/params", "expected an object NAME: value or [lo, hi]");
    for (auto it = j["params"].begin(); it != j["params"].end(); ++it) {
      const std::string path = "/params/" + it.key();
      auto found = std::find_if(c.params.begin(), c.params.end(), [&](const ba::Param& p) { return p.name == it.key(); });
      if (found == c.params.end()) throw ConfigError(path, "model '" + c.model + "' has no such parameter");
      if (it.value().is_array()) {
        const auto [lo, hi] = range(it.value(), path);
        *found = ba::Param::range(it.key(), lo, hi);
      } else {
        *found = ba::Param::fixed(it.key(), number(it.value(), path));
      }
    }
  }
  const auto swept = std::count_if(c.params.begin(), c.params.end(), [](const ba::Param& p) { return p.swept; });
  if (c.analysis == "phase_plane" && swept > 0)
    throw ConfigError("/params", "a phase plane holds every parameter at one value; give ranges only for a bifurcation");
  if (c.analysis == "bifurcation" && (swept < 1 || swept > 2))
    throw ConfigError("/params", "a bifurcation sweeps one or two parameters: give them as [lo, hi]");
  if (j.contains("resolution")) {
    const auto& r = j["resolution"];
    const auto check = [](const json& v, const std::string& path) {
      if (!v.is_number_integer() || v.get<int64_t>() < 2 || v.get<int64_t>() > 100000)
        throw ConfigError(path, "expected an integer in [2, 100000]");
      return v.get<int64_t>();
    };
    if (r.is_object()) {
      for (auto it = r.begin(); it != r.end(); ++it) {
        const std::string path = "/resolution/" + it.key();
        const int64_t n = check(it.value(), path);
        bool used = false;
        for (auto& a : c.variables)
          if (a.name == it.key()) a.resolution = n, used = true;
        for (auto& p : c.params)
          if (p.name == it.key() && p.swept) p.resolution = n, used = true;
        if (!used) throw ConfigError(path, "names neither a variable nor a swept parameter");
      }
    } else {
      const int64_t n = check(r, "/resolution");
      for (auto& a : c.variables) a.resolution = n;
      for (auto& p : c.params)
        if (p.swept) p.resolution = n;
    }
  }
  if (j.contains("trajectories")) {
    const auto& t = j["trajectories"];
    if (!t.is_array()) throw ConfigError("/trajectories", "expected an array of initial points");
    for (size_t i = 0; i < t.size(); ++i) {
      const std::string path = "/trajectories/" + std::to_string(i);
      if (!t[i].is_array() || t[i].size() != c.variables.size())
        throw ConfigError(path, "expected [" + std::to_string(c.variables.size()) + " values] (one per variable)");
      std::vector<double> x;
      for (size_t k = 0; k < t[i].size(); ++k) x.push_back(number(t[i][k], path + "/" + std::to_string(k)));
      c.trajectories.push_back(x);
    }
  }
  if (j.contains("duration")) {
    c.duration = number(j["duration"], "/duration");
    if (!(c.duration > 0)) throw ConfigError("/duration", "must be positive");
  }
  if (j.contains("dt")) {
    c.dt = number(j["dt"], "/dt");
    if (!(c.dt > 0)) throw ConfigError("/dt", "must be positive");
  }
  if (j.contains("limit_cycles")) {
    if (!j["limit_cycles"].is_boolean()) throw ConfigError("/limit_cycles", "expected true or false");
    c.limit_cycles = j["limit_cycles"].get<bool>();
  }
  return c;
}

json point_json(const ba::FixedPoint& p, const std::vector<ba::Axis>& vars, const std::vector<std::string>& params) {
  json j;
  for (size_t d = 0; d < vars.size(); ++d) j[vars[d].name] = p.x[d];
  for (size_t k = 0; k < params.size() && k < p.params.size(); ++k) j[params[k]] = p.params[k];
  j["stability"] = p.stability;
  json ev = json::array();
  for (const auto& e : p.eigenvalues) ev.push_back({e.real(), e.imag()});
  j["eigenvalues"] = ev;
  return j;
}

}  // namespace

int analyze(const std::vector<std::string>& args) {
  std::string config_path, out_dir;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--out" && i + 1 < args.size()) {
      out_dir = args[++i];
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::cout << kAnalyzeUsage;
      return kExitOk;
    } else if (config_path.empty() && args[i].rfind("--", 0) != 0) {
      config_path = args[i];
    } else {
      std::cerr << "brain analyze: unexpected argument '" << args[i] << "'\n" << kAnalyzeUsage;
      return kExitUsage;
    }
  }
  if (config_path.empty()) {
    std::cerr << kAnalyzeUsage;
    return kExitUsage;
  }
  std::ifstream in(config_path);
  if (!in) {
    std::cerr << "brain analyze: cannot read " << config_path << "\n";
    return kExitUsage;
  }
  std::stringstream text;
  text << in.rdbuf();
  AnalyzeConfig c;
  try {
    c = parse(text.str());
  } catch (const ConfigError& e) {
    std::cerr << "brain analyze: " << config_path << ": " << e.what() << "\n";
    return kExitUsage;
  }
  if (out_dir.empty()) out_dir = "out/analyze_" + c.model;
  std::filesystem::create_directories(out_dir);

  const auto& model = ba::builtin_model(c.model);
  json summary{{"model", c.model}, {"analysis", c.analysis}};
  std::vector<io::XYSeries> series;
  const auto& v0 = c.variables[0];
  std::string title = c.model + ": ", x_label, y_label;
  double x0, x1, y0, y1;
  if (c.analysis == "phase_plane") {
    ba::PhasePlane pp(model.field, c.variables, c.params);
    const auto fps = pp.fixed_points();
    json points = json::array();
    for (const auto& p : fps) points.push_back(point_json(p, c.variables, {}));
    summary["fixed_points"] = points;
    summary["skipped_grid_points"] = pp.skipped_points();
    for (const auto& p : c.params) title += p.name + "=" + std::to_string(p.value) + " ";
    if (c.variables.size() >= 2) {
      const auto nc = pp.nullclines();
      const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c"};
      for (size_t i = 0; i < nc.size() && i < 3; ++i) {
        const auto pts = nc[i].cpu().contiguous();
        std::vector<double> xs(pts.size(0)), ys(pts.size(0));
        for (int64_t k = 0; k < pts.size(0); ++k) xs[k] = pts[k][0].item<double>(), ys[k] = pts[k][1].item<double>();
        series.push_back({c.variables[i].name + " nullcline", xs, ys, colours[i], "dots"});
      }
      if (!c.trajectories.empty()) {
        std::vector<double> flat;
        for (const auto& t : c.trajectories) flat.insert(flat.end(), t.begin(), t.end());
        const auto init = at::tensor(flat, at::kDouble).view({(int64_t)c.trajectories.size(), (int64_t)c.variables.size()});
        const auto traj = pp.trajectory(init, c.duration, c.dt);
        json trajs = json::array();
        for (int64_t b = 0; b < init.size(0); ++b) {
          const auto v = traj.values.select(1, b).cpu().contiguous();
          std::vector<double> xs(v.size(0)), ys(v.size(0));
          for (int64_t k = 0; k < v.size(0); ++k) xs[k] = v[k][0].item<double>(), ys[k] = v[k][1].item<double>();
          series.push_back({b == 0 ? "trajectory" : "", xs, ys, "#2ca02c", "line"});
          trajs.push_back({{"initial", c.trajectories[b]}, {"final", {xs.back(), ys.back()}}});
        }
        summary["trajectories"] = trajs;
      }
      std::vector<double> sx, sy, ux, uy;
      for (const auto& p : fps) (ba::is_stable(p.stability) ? sx : ux).push_back(p.x[0]),
                                (ba::is_stable(p.stability) ? sy : uy).push_back(p.x[1]);
      series.push_back({"stable", sx, sy, "black", "filled"});
      series.push_back({"unstable", ux, uy, "black", "open"});
      x_label = v0.name, y_label = c.variables[1].name;
      x0 = v0.lo, x1 = v0.hi, y0 = c.variables[1].lo, y1 = c.variables[1].hi;
    } else {
      const auto grid = pp.vector_field();
      const auto xs_t = grid.axes[0].cpu().contiguous(), fs_t = grid.derivatives[0].cpu().contiguous();
      std::vector<double> xs(xs_t.data_ptr<double>(), xs_t.data_ptr<double>() + xs_t.numel());
      std::vector<double> fs(fs_t.data_ptr<double>(), fs_t.data_ptr<double>() + fs_t.numel());
      series.push_back({"d" + v0.name + "/dt", xs, fs, "", "line"});
      std::vector<double> sx, ux;
      for (const auto& p : fps) (ba::is_stable(p.stability) ? sx : ux).push_back(p.x[0]);
      series.push_back({"stable", sx, std::vector<double>(sx.size(), 0.0), "black", "filled"});
      series.push_back({"unstable", ux, std::vector<double>(ux.size(), 0.0), "black", "open"});
      const auto finite = fs_t.isfinite();
      const double lo = fs_t.masked_select(finite).min().item<double>(), hi = fs_t.masked_select(finite).max().item<double>();
      x_label = v0.name, y_label = "d" + v0.name + "/dt";
      x0 = v0.lo, x1 = v0.hi, y0 = std::min(lo, -1e-9), y1 = std::max(hi, 1e-9);
    }
  } else {
    ba::Bifurcation bif(model.field, c.variables, c.params);
    const auto r = bif.compute();
    json points = json::array(), events = json::array();
    for (const auto& p : r.points) points.push_back(point_json(p, c.variables, r.param_names));
    for (const auto& e : r.events) {
      json ej{{"kind", e.kind}};
      for (size_t k = 0; k < r.param_names.size(); ++k) ej[r.param_names[k]] = e.params[k];
      for (size_t d = 0; d < c.variables.size(); ++d) ej[c.variables[d].name] = e.x[d];
      events.push_back(ej);
    }
    summary["parameters"] = r.param_names;
    summary["fixed_points"] = points;
    summary["events"] = events;
    summary["skipped_grid_points"] = r.skipped;
    const auto& p0 = *std::find_if(c.params.begin(), c.params.end(), [&](const ba::Param& p) { return p.name == r.param_names[0]; });
    title += "bifurcation in " + r.param_names[0];
    if (r.param_names.size() == 1) {
      std::vector<double> sx, sy, ux, uy;
      for (const auto& p : r.points) (ba::is_stable(p.stability) ? sx : ux).push_back(p.params[0]),
                                      (ba::is_stable(p.stability) ? sy : uy).push_back(p.x[0]);
      series.push_back({"stable", sx, sy, "black", "dots"});
      series.push_back({"unstable", ux, uy, "#d62728", "dots"});
      std::vector<double> ex, ey;
      for (const auto& e : r.events) ex.push_back(e.params[0]), ey.push_back(e.x[0]);
      series.push_back({"events", ex, ey, "#9467bd", "open"});
      if (c.limit_cycles) {
        const auto cycles = bif.limit_cycles(r, c.duration, c.dt);
        json cj = json::array();
        std::vector<double> cx, cy;
        for (const auto& cy_ : cycles) {
          if (!cy_.found) continue;
          cj.push_back({{r.param_names[0], cy_.params[0]}, {"period", cy_.period}, {"min", cy_.min}, {"max", cy_.max}});
          cx.push_back(cy_.params[0]), cy.push_back(cy_.min[0]);
          cx.push_back(cy_.params[0]), cy.push_back(cy_.max[0]);
        }
        summary["limit_cycles"] = cj;
        series.push_back({"limit cycle min/max", cx, cy, "#1f77b4", "dots"});
      }
      x_label = r.param_names[0], y_label = v0.name;
      x0 = p0.lo, x1 = p0.hi, y0 = v0.lo, y1 = v0.hi;
    } else {
      const auto& p1 = *std::find_if(c.params.begin(), c.params.end(), [&](const ba::Param& p) { return p.name == r.param_names[1]; });
      for (const std::string kind : {"saddle-node", "hopf"}) {
        std::vector<double> ex, ey;
        for (const auto& e : r.events)
          if (e.kind == kind) ex.push_back(e.params[0]), ey.push_back(e.params[1]);
        series.push_back({kind, ex, ey, kind == "hopf" ? "#2ca02c" : "#9467bd", "dots"});
      }
      title += " and " + r.param_names[1];
      x_label = r.param_names[0], y_label = r.param_names[1];
      x0 = p0.lo, x1 = p0.hi, y0 = p1.lo, y1 = p1.hi;
    }
  }
  io::write_text(out_dir + "/summary.json", summary.dump(2) + "\n");
  io::write_text(out_dir + "/figure.svg", io::xy_svg(series, x0, x1, y0, y1, title, x_label, y_label));
  std::cout << "brain analyze: " << c.model << " (" << c.analysis << ")\n";
  if (summary.contains("events"))
    for (const auto& e : summary["events"]) std::cout << "  event: " << e.dump() << "\n";
  else
    for (const auto& p : summary["fixed_points"]) std::cout << "  fixed point: " << p.dump() << "\n";
  std::cout << "  wrote " << out_dir << "/summary.json and " << out_dir << "/figure.svg\n";
  return kExitOk;
}

}  // namespace brain::cli
