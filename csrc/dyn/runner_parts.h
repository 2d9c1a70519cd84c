// Internal: what the runner's two module-engine loops share (runner.cpp steps op by op,
// replay.cpp records steps for replay).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <brain/dyn/fast.h>
#include <brain/dyn/runner.h>
#include <brain/dyn/system.h>
#include <brain/models/neurons.h>

namespace brain::detail {

// A state resolved once per run, so the loop does no path parsing.
struct Target {
  DynamicalSystem* system;
  std::string leaf;
};

inline Target resolve(DynamicalSystem& root, const std::string& path) {
  const auto dot = path.rfind('.');
  if (dot == std::string::npos) return {&root, path};
  return {&root.find_system(path.substr(0, dot)), path.substr(dot + 1)};
}

// Every neuron population below root with its path, for the spike counts.
inline void find_populations(DynamicalSystem& s, const std::string& path,
                             std::vector<std::pair<std::string, DynamicalSystem*>>& out) {
  if (dynamic_cast<NeuronGroup*>(&s) && s.has_state("spike")) out.emplace_back(path.empty() ? s.name() : path, &s);
  for (const auto& [name, child] : s.children()) find_populations(*child, path.empty() ? name : path + "." + name, out);
}

// Why the module engine's steps of `system` cannot be recorded and replayed with `options`
// (RunnerOptions::graphs) over a segment of `steps` steps; "" when they can. *graph_steps is
// set to the steps one graph covers.
std::string replay_unsupported(DynamicalSystem& system, const RunnerOptions& options, int64_t steps,
                               int64_t* graph_steps);

// The module engine over `steps` steps with recorded, replayed steps (replay.cpp); the same
// results as run_modules, which runs when replay_unsupported says why not.
RunResult run_modules_replayed(DynamicalSystem& system, const RunnerOptions& options, Context& ctx, int64_t steps,
                               const Segment& segment, int64_t graph_steps);

}  // namespace brain::detail
