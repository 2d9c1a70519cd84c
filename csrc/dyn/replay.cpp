// The module engine with recorded, replayed steps (RunnerOptions::graphs): CUDA graphs on a
// GPU, or their emulation anywhere. Each step is the one runner.cpp takes (inputs, system
// step, spike counts, finiteness guard, monitors), written so that nothing in it depends on a
// host value that changes from step to step: the step index is the device tensor `clock`,
// which the step itself advances, and every per-step write goes to a device buffer at an
// index computed from it. The host keeps the same bookkeeping it would for eager steps (which
// steps sampled which monitor) and reads the buffers once per chunk.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include <torch/torch.h>

#include <brain/config.h>
#include <brain/dyn/fast.h>

#include "csrc/dyn/progress.h"
#include "csrc/dyn/runner_parts.h"
#include "csrc/dyn/step_graph.h"

namespace brain {

Graphs parse_graphs(const std::string& name) {
  if (name == "auto") return Graphs::Auto;
  if (name == "off") return Graphs::Off;
  if (name == "emulate") return Graphs::Emulate;
  TORCH_CHECK(false, "unknown graphs mode '", name, "'; expected auto, off or emulate");
}

const char* graphs_name(Graphs graphs) {
  switch (graphs) {
    case Graphs::Auto: return "auto";
    case Graphs::Off: return "off";
    case Graphs::Emulate: return "emulate";
  }
  return "?";
}

namespace detail {

namespace {

// An emulated replay shows systems a host clock this many steps off the true one: a prime, so
// no ring buffer length (up to 10^9 steps) divides it and hides a wrong slot.
constexpr int64_t kEmulatedClockShift = 1'000'000'007;

// Longest monitor period a graph may cover.
constexpr int64_t kMaxGraphSteps = 1024;

// For tests of the fallback: BRAIN_TEST_CAPTURE_FAULT=1 makes the capture fail. On CUDA it
// reads the clock back to the host after the first recorded step, a host sync, which CUDA
// refuses inside a capture: the failure a system that syncs would cause. In emulation the
// capture itself fails (it runs nothing either: replays run the recorded function).
bool capture_fault_requested() {
  const char* value = std::getenv("BRAIN_TEST_CAPTURE_FAULT");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

c10::Device device_of(DynamicalSystem& system) {
  for (const auto& path : system.state_paths()) return system.find_state(path).device();
  return c10::Device(c10::kCPU);
}

}  // namespace

std::string replay_unsupported(DynamicalSystem& system, const RunnerOptions& options, int64_t steps,
                               int64_t* graph_steps) {
  if (options.graphs == Graphs::Off) return "off";
  const c10::Device device = device_of(system);
  if (options.graphs == Graphs::Auto && !device.is_cuda()) return "not on a CUDA device";
#if !BRAIN_WITH_CUDA
  if (options.graphs == Graphs::Auto) return "this libbrain was built without CUDA";
#endif
  std::string not_replayable;
  if (!system.replayable_tree(&not_replayable)) return "not replayable: " + not_replayable;
  if (wants_gradient(system, options)) return "gradients are being recorded";
  TORCH_CHECK(options.graph_steps >= 0, "Runner: graph_steps must be >= 0, got ", options.graph_steps);
  int64_t period = 1;
  for (const auto& m : options.monitors) {
    period = std::lcm(period, m.every);
    if (period > kMaxGraphSteps) return "the monitors' sampling periods have no common multiple <= 1024 steps";
  }
  int64_t k = options.graph_steps;
  if (k == 0) {
    k = period * ((16 + period - 1) / period);
  } else {
    TORCH_CHECK(k % period == 0, "Runner: graph_steps (", k, ") must be a multiple of every monitor's every (",
                period, ")");
  }
  // One step before capture (warm-up), up to k - 1 to reach an aligned step, then at least
  // two replays, or recording a graph does not pay.
  if (steps < 3 * k) return "too few steps to replay (" + std::to_string(steps) + " < 3 x " + std::to_string(k) + ")";
  *graph_steps = k;
  return "";
}

namespace {

// A monitor recorded into a device ring of samples; sample s of the run (the step's index
// divided by `every`) goes to row s % rows.
struct RingMonitor {
  const Monitor* spec;
  Target target;
  at::Tensor indices;
  at::Tensor ring;
  std::vector<int64_t> pending;  // steps sampled since the last flush (host bookkeeping)
  std::vector<at::Tensor> host;  // flushed pieces, on the CPU
  std::vector<double> times;
};

struct GuardRing {
  std::string path;
  Target target;
  at::Tensor sums;  // [rows] float64: the state's sum after step s in row s % rows
};

}  // namespace

RunResult run_modules_replayed(DynamicalSystem& system, const RunnerOptions& options, Context& ctx, int64_t steps,
                               const Segment& segment, int64_t graph_steps) {
  at::NoGradGuard no_grad;  // as run_modules when no gradient is wanted (replay_unsupported checked)
  const int64_t K = graph_steps;
  const bool emulate = options.graphs == Graphs::Emulate;
  const c10::Device device = device_of(system);

  std::unique_ptr<StepGraph> graph;
#if BRAIN_WITH_CUDA
  if (!emulate) graph = make_cuda_step_graph(device);
#endif
  if (!graph) graph = std::make_unique<EmulatedStepGraph>();
  graph->begin();

  const auto index_options = at::TensorOptions(torch::kLong).device(device);
  const at::Tensor clock = torch::full({}, ctx.step, index_options);
  // The row of each per-step input is the step's index within the run.
  const int64_t run_first_step = ctx.step - segment.offset;

  std::vector<Target> input_targets;
  std::vector<at::Tensor> input_values;
  for (const auto& in : options.inputs) {
    input_targets.push_back(resolve(system, in.path));
    const at::Tensor& s = system.find_state(in.path);
    input_values.push_back(in.value.to(s.device(), s.scalar_type()));
  }

  // Between flushes at most chunk_steps - 1 + K steps go by (flushes come at step or replay
  // boundaries), which sizes the rings.
  const int64_t ring_steps = options.chunk_steps + K;
  std::vector<RingMonitor> monitors;
  for (const auto& m : options.monitors) {
    RingMonitor r{&m, resolve(system, m.path), {}, {}, {}, {}, {}};
    at::Tensor sample = system.find_state(m.path);
    if (m.indices) {
      r.indices = m.indices->to(sample.device(), torch::kLong);
      sample = sample.index_select(-1, r.indices);
    }
    std::vector<int64_t> shape{ring_steps / m.every + 2};
    for (auto d : sample.sizes()) shape.push_back(d);
    r.ring = torch::zeros(shape, sample.options().dtype(m.dtype.value_or(sample.scalar_type())));
    monitors.push_back(std::move(r));
  }

  std::vector<std::pair<std::string, DynamicalSystem*>> populations;
  find_populations(system, "", populations);
  std::vector<at::Tensor> counts;
  for (const auto& item : populations) {
    counts.push_back(torch::zeros({}, item.second->state("spike").options().dtype(torch::kDouble)));
  }

  std::vector<GuardRing> guarded;
  if (options.check_finite) {
    for (const auto& path : system.state_paths()) {
      const at::Tensor s = system.find_state(path);
      if (!s.is_floating_point()) continue;
      guarded.push_back({path, resolve(system, path), torch::zeros({ring_steps}, s.options().dtype(torch::kDouble))});
    }
  }
  std::vector<int64_t> guard_pending;  // steps whose sums are in the guard rings, unchecked

  // One step. `shown` is the host step the systems see (ctx.step, ctx.t): the true one for
  // steps run one by one, the capture's for recorded ones (shifted, when emulated). `phase`
  // is the true step modulo K (a recorded step's sampling decisions must hold at every replay).
  auto one_step = [&](int64_t shown, int64_t phase) {
    Context step_ctx = ctx;
    step_ctx.step = shown;
    step_ctx.t = static_cast<double>(shown) * ctx.dt;
    step_ctx.clock = clock;
    for (size_t k = 0; k < options.inputs.size(); ++k) {
      const auto& in = options.inputs[k];
      auto& target = input_targets[k];
      const at::Tensor& cur = target.system->state(target.leaf);
      const at::Tensor& all = input_values[k];
      at::Tensor v = all;
      if (in.per_step) {
        const at::Tensor row = (clock - run_first_step).clamp_max(all.size(0) - 1).reshape({1});
        v = all.index_select(0, row).squeeze(0);
      }
      target.system->assign_state(target.leaf, in.op == RunInput::Op::Set ? v.expand(cur.sizes()).clone() : cur + v);
    }
    system.step(step_ctx);
    for (size_t p = 0; p < populations.size(); ++p) counts[p].add_(populations[p].second->state("spike").sum());
    if (!guarded.empty()) {
      const at::Tensor row = torch::remainder(clock, ring_steps).reshape({1});  // every guard ring has ring_steps rows
      for (auto& g : guarded) {
        g.sums.index_copy_(0, row, g.target.system->state(g.target.leaf).sum(torch::kDouble).reshape({1}));
      }
    }
    for (auto& r : monitors) {
      if (phase % r.spec->every != 0) continue;
      at::Tensor s = r.target.system->state(r.target.leaf);
      if (r.indices.defined()) s = s.index_select(-1, r.indices);
      const at::Tensor row = torch::remainder(torch::div(clock, r.spec->every, "floor"), r.ring.size(0)).reshape({1});
      r.ring.index_copy_(0, row, s.to(r.ring.scalar_type()).unsqueeze(0));
    }
    clock.add_(1);
  };

  // What the host notes once a step has been queued (run, or replayed).
  int64_t since_flush = 0;
  auto note_step = [&](int64_t step) {
    for (auto& r : monitors) {
      if (step % r.spec->every == 0) r.pending.push_back(step);
    }
    if (!guarded.empty()) guard_pending.push_back(step);
    ++since_flush;
  };

  auto flush = [&] {
    // The guard first: a monitor read after a NaN would hold garbage anyway.
    if (!guard_pending.empty()) {
      std::vector<at::Tensor> sums;
      for (const auto& g : guarded) sums.push_back(g.sums.to(torch::kCPU));
      for (int64_t step : guard_pending) {
        for (size_t i = 0; i < guarded.size(); ++i) {
          const double v = sums[i].data_ptr<double>()[step % sums[i].size(0)];
          if (!std::isfinite(v)) throw NonFiniteError(guarded[i].path, step, static_cast<double>(step) * ctx.dt);
        }
      }
      guard_pending.clear();
    }
    for (auto& r : monitors) {
      if (r.pending.empty()) continue;
      std::vector<int64_t> rows;
      for (int64_t step : r.pending) {
        rows.push_back((step / r.spec->every) % r.ring.size(0));
        r.times.push_back(static_cast<double>(step) * ctx.dt);
      }
      const at::Tensor index = torch::tensor(rows, torch::kLong).to(r.ring.device());
      r.host.push_back(r.ring.index_select(0, index).to(torch::kCPU));
      r.pending.clear();
    }
    since_flush = 0;
  };
  auto maybe_flush = [&] {
    if (since_flush >= options.chunk_steps) flush();
  };

  RunResult result;
  result.engine = "modules";
  result.graphs = emulate ? "emulated" : "cuda";
  result.dt = options.dt;
  result.t_start = ctx.t;
  const auto start = Clock::now();
  int64_t done = 0;
  auto advance_host = [&](int64_t n) {
    ctx.step += n;
    ctx.t = static_cast<double>(ctx.step) * ctx.dt;
    done += n;
    if (segment.bar) segment.bar->update(segment.offset + done);
  };
  auto step_by_step = [&] {
    one_step(ctx.step, ctx.step % K);
    note_step(ctx.step);
    advance_host(1);
    maybe_flush();
  };

  // Warm-up (one step at least: caches systems build on first use are built before capture),
  // then up to the first step that is a multiple of K, so recorded sampling decisions repeat.
  do {
    step_by_step();
  } while (ctx.step % K != 0 && done < steps);

  if (steps - done >= K) {
    // The states the recording reads, as dense tensors of their own: each recorded sequence
    // ends by copying the states it produced into them, so every replay starts where the
    // last one ended. (A state that is an expanded view could not be copied into.)
    struct Slot {
      Target target;
      at::Tensor in;
    };
    std::vector<Slot> slots;
    for (const auto& path : system.state_paths()) {
      Slot s{resolve(system, path), {}};
      s.in = s.target.system->state(s.target.leaf).clone(at::MemoryFormat::Contiguous);
      s.target.system->assign_state(s.target.leaf, s.in);
      slots.push_back(std::move(s));
    }
    int64_t replay_first_step = ctx.step;  // read by the emulation at every replay
    const int64_t capture_step = ctx.step;
    bool captured = true;
    const bool inject_fault = capture_fault_requested();
    try {
      // The emulation's capture only keeps the function, so its fault comes before it.
      TORCH_CHECK(!(inject_fault && emulate), "capture fault injected by BRAIN_TEST_CAPTURE_FAULT");
      graph->capture([&] {
        const int64_t shown = emulate ? replay_first_step + kEmulatedClockShift : capture_step;
        for (int64_t i = 0; i < K; ++i) {
          one_step(shown + i, i);
          if (inject_fault && i == 0) (void)clock.item<int64_t>();
        }
        for (auto& s : slots) {
          const at::Tensor& out = s.target.system->state(s.target.leaf);
          if (!out.is_same(s.in)) {
            s.in.copy_(out);
            s.target.system->assign_state(s.target.leaf, s.in);
          }
        }
      });
    } catch (const std::exception& e) {
      // A capture runs nothing: the states before it are intact in the slots, the clock has
      // not moved, and the run goes on step by step, saying why.
      for (auto& s : slots) s.target.system->assign_state(s.target.leaf, s.in);
      const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
      result.graphs = std::string(emulate ? "emulated" : "CUDA") + " graph capture failed, steps ran one by one: " +
                      (c10_error ? c10_error->what_without_backtrace() : e.what());
      captured = false;
    }
    while (captured && steps - done >= K) {
      replay_first_step = ctx.step;
      graph->replay();
      for (int64_t i = 0; i < K; ++i) note_step(ctx.step + i);
      advance_host(K);
      result.replayed_steps += K;
      maybe_flush();
    }
  }
  while (done < steps) step_by_step();
  flush();
  graph->end();

  for (auto& r : monitors) {
    result.values[r.spec->key()] = r.host.empty() ? torch::empty({0}) : torch::cat(r.host, 0);
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

}  // namespace detail
}  // namespace brain
