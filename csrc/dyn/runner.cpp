#include <brain/dyn/runner.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <brain/dyn/fast.h>
#include <brain/io/npz.h>
#include <brain/models/neurons.h>

#include "csrc/dyn/progress.h"

namespace brain {

Engine parse_engine(const std::string& name) {
  if (name == "auto") return Engine::Auto;
  if (name == "modules") return Engine::Modules;
  if (name == "fast") return Engine::Fast;
  TORCH_CHECK(false, "unknown engine '", name, "'; expected auto, modules or fast");
}

const char* engine_name(Engine engine) {
  switch (engine) {
    case Engine::Auto: return "auto";
    case Engine::Modules: return "modules";
    case Engine::Fast: return "fast";
  }
  return "?";
}

namespace {

using detail::Clock;
using detail::ProgressBar;

// Every neuron population below root with its path, for the spike counts.
void find_populations(DynamicalSystem& s, const std::string& path,
                      std::vector<std::pair<std::string, DynamicalSystem*>>& out) {
  if (dynamic_cast<NeuronGroup*>(&s) && s.has_state("spike")) out.emplace_back(path.empty() ? s.name() : path, &s);
  for (const auto& [name, child] : s.children()) find_populations(*child, path.empty() ? name : path + "." + name, out);
}

// A state resolved once per run, so the loop does no path parsing.
struct Target {
  DynamicalSystem* system;
  std::string leaf;
};

Target resolve(DynamicalSystem& root, const std::string& path) {
  const auto dot = path.rfind('.');
  if (dot == std::string::npos) return {&root, path};
  return {&root.find_system(path.substr(0, dot)), path.substr(dot + 1)};
}

// A monitor being recorded: device-side samples of the current chunk, CPU chunks so far.
struct Recording {
  const Monitor* spec;
  Target target;
  std::vector<at::Tensor> chunk;
  std::vector<at::Tensor> host;
  std::vector<double> times;
  at::Tensor indices;

  void flush() {
    if (chunk.empty()) return;
    host.push_back(torch::stack(chunk).to(torch::kCPU));
    chunk.clear();
  }
};

}  // namespace

Runner::Runner(std::shared_ptr<DynamicalSystem> system, RunnerOptions options)
    : system_(std::move(system)), options_(std::move(options)) {
  TORCH_CHECK(system_, "Runner: the system is null");
  TORCH_CHECK(options_.dt > 0 && std::isfinite(options_.dt), "Runner: dt must be positive, got ", options_.dt);
  TORCH_CHECK(options_.chunk_steps > 0, "Runner: chunk_steps must be positive, got ", options_.chunk_steps);
  ctx_.dt = options_.dt;
  if (options_.device) system_->to(*options_.device);
  validate();
}

static bool broadcasts_to(c10::IntArrayRef from, c10::IntArrayRef to) {
  if (from.size() > to.size()) return false;
  for (size_t i = 0; i < from.size(); ++i) {
    const int64_t f = from[from.size() - 1 - i];
    if (f != 1 && f != to[to.size() - 1 - i]) return false;
  }
  return true;
}

void Runner::validate() {
  std::set<std::string> keys;
  for (const auto& m : options_.monitors) {
    TORCH_CHECK(keys.insert(m.key()).second, "Runner: two monitors are named '", m.key(),
                "'; give one of them a distinct name");
    TORCH_CHECK(m.every > 0, "Runner: monitor '", m.path, "': every must be positive, got ", m.every);
    const at::Tensor s = system_->find_state(m.path);  // throws naming the known states
    if (m.indices) {
      TORCH_CHECK(m.indices->dim() == 1 && !m.indices->is_floating_point(), "Runner: monitor '", m.path,
                  "': indices must be a 1-D integer tensor");
      if (m.indices->numel() > 0) {
        const auto lo = m.indices->min().item<int64_t>();
        const auto hi = m.indices->max().item<int64_t>();
        TORCH_CHECK(s.dim() >= 1 && lo >= 0 && hi < s.size(-1), "Runner: monitor '", m.path, "': indices must lie in [0, ",
                    s.dim() ? s.size(-1) : 0, "), got [", lo, ", ", hi, "]");
      }
    }
  }
  for (const auto& in : options_.inputs) {
    const at::Tensor s = system_->find_state(in.path);
    TORCH_CHECK(in.value.defined(), "Runner: input '", in.path, "' has no value");
    const at::Tensor sample = in.per_step ? in.value[0] : in.value;
    TORCH_CHECK(!in.per_step || in.value.dim() >= 1, "Runner: per-step input '", in.path, "' must be [T, ...]");
    TORCH_CHECK(broadcasts_to(sample.sizes(), s.sizes()), "Runner: input '", in.path, "' of shape ", sample.sizes(),
                " does not broadcast to the state's shape ", s.sizes());
  }
}

RunResult Runner::run(double duration_ms) {
  TORCH_CHECK(duration_ms > 0 && std::isfinite(duration_ms), "Runner.run: duration must be positive, got ", duration_ms);
  return run_steps(static_cast<int64_t>(std::llround(duration_ms / options_.dt)));
}

RunResult Runner::run_steps(int64_t steps) {
  TORCH_CHECK(steps > 0, "Runner.run_steps: the number of steps must be positive, got ", steps);
  validate();  // states may have been reset to another shape since construction
  if (options_.engine == Engine::Fast ||
      (options_.engine == Engine::Auto && fast_engine_unsupported(*system_, options_).empty())) {
    return detail::run_fast(*system_, options_, ctx_, steps);
  }
  std::vector<Recording> recs;
  for (const auto& m : options_.monitors) {
    Recording r{&m, resolve(*system_, m.path), {}, {}, {}, {}};
    if (m.indices) r.indices = m.indices->to(system_->find_state(m.path).device(), torch::kLong);
    recs.push_back(std::move(r));
  }
  // Inputs are moved to their state's device and dtype once, not every step.
  std::vector<Target> input_targets;
  std::vector<at::Tensor> input_values;
  for (const auto& in : options_.inputs) {
    input_targets.push_back(resolve(*system_, in.path));
    const at::Tensor& s = system_->find_state(in.path);
    input_values.push_back(in.value.to(s.device(), s.scalar_type()));
  }

  std::vector<std::pair<std::string, DynamicalSystem*>> populations;
  find_populations(*system_, "", populations);
  std::vector<at::Tensor> counts;  // on the device: summed without a host sync per step
  for (const auto& item : populations) {
    counts.push_back(torch::zeros({}, item.second->state("spike").options().dtype(torch::kDouble)));
  }

  RunResult result;
  result.engine = "modules";
  result.dt = options_.dt;
  result.t_start = ctx_.t;
  ProgressBar bar(steps, options_.progress == 1 || (options_.progress == -1 && isatty(fileno(stderr))));
  const auto start = Clock::now();
  for (int64_t i = 0; i < steps; ++i) {
    for (size_t k = 0; k < options_.inputs.size(); ++k) {
      const auto& in = options_.inputs[k];
      auto& target = input_targets[k];
      const at::Tensor& cur = target.system->state(target.leaf);
      const at::Tensor& all = input_values[k];
      const at::Tensor v = in.per_step ? all[std::min<int64_t>(i, all.size(0) - 1)] : all;
      target.system->assign_state(target.leaf, in.op == RunInput::Op::Set ? v.expand(cur.sizes()).clone() : cur + v);
    }
    system_->step(ctx_);
    for (size_t p = 0; p < populations.size(); ++p) counts[p].add_(populations[p].second->state("spike").detach().sum());
    for (auto& r : recs) {
      if (ctx_.step % r.spec->every != 0) continue;
      at::Tensor s = r.target.system->state(r.target.leaf).detach();
      s = r.indices.defined() ? s.index_select(-1, r.indices) : s.clone();
      if (r.spec->dtype) s = s.to(*r.spec->dtype);
      r.chunk.push_back(s);
      r.times.push_back(ctx_.t);
      if (static_cast<int64_t>(r.chunk.size()) >= options_.chunk_steps) r.flush();
    }
    ctx_.step += 1;
    ctx_.t = ctx_.step * ctx_.dt;
    bar.update(i + 1);
  }
  for (auto& r : recs) {
    r.flush();
    const at::Tensor values = r.host.empty() ? torch::empty({0}) : torch::cat(r.host, 0);
    result.values[r.spec->key()] = values;
    result.times[r.spec->key()] = torch::tensor(r.times, torch::kDouble);
    result.order.push_back(r.spec->key());
  }
  result.steps = steps;
  result.wall_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (size_t p = 0; p < populations.size(); ++p) {
    result.spike_counts[populations[p].first] = std::llround(counts[p].item<double>());
  }
  return result;
}

std::string RunResult::summary_json() const {
  nlohmann::json monitors = nlohmann::json::object();
  const double duration_s = steps * dt / 1000.0;
  for (const auto& path : order) {
    const at::Tensor& v = values.at(path);
    nlohmann::json m = {{"shape", v.sizes().vec()}, {"dtype", std::string(c10::toString(v.scalar_type()))}};
    if (v.numel() > 0) {
      if (v.scalar_type() == at::kBool) {
        // Spikes: mean firing rate over recorded samples and neurons.
        const double count = v.sum().item<double>();
        const double samples = static_cast<double>(v.numel());
        const double every = times.at(path).numel() > 1 ? (times.at(path)[1].item<double>() - times.at(path)[0].item<double>()) : dt;
        m["spike_count"] = count;
        m["mean_rate_hz"] = count / samples / (every / 1000.0);
      } else {
        const at::Tensor d = v.to(torch::kDouble);
        m["mean"] = d.mean().item<double>();
        m["min"] = d.min().item<double>();
        m["max"] = d.max().item<double>();
      }
    }
    monitors[path] = m;
  }
  nlohmann::json j = {{"steps", steps},
                      {"dt_ms", dt},
                      {"t_start_ms", t_start},
                      {"duration_ms", steps * dt},
                      {"wall_seconds", wall_seconds},
                      {"realtime_factor", wall_seconds > 0 ? duration_s / wall_seconds : 0.0},
                      {"engine", engine},
                      {"monitors", monitors}};
  if (!spike_counts.empty()) {
    nlohmann::json counts = nlohmann::json::object();
    for (const auto& [pop, count] : spike_counts) counts[pop] = count;
    j["spike_counts"] = counts;
  }
  return j.dump(2);
}

void RunResult::save(const std::string& dir) const {
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, at::Tensor>> arrays;
  for (const auto& path : order) {
    arrays.emplace_back(path, values.at(path));
    arrays.emplace_back(path + ".t", times.at(path));
  }
  io::save_npz((std::filesystem::path(dir) / "monitors.npz").string(), arrays);
  std::ofstream out(std::filesystem::path(dir) / "summary.json");
  TORCH_CHECK(out, "cannot write ", dir, "/summary.json");
  out << summary_json() << "\n";
}

}  // namespace brain
