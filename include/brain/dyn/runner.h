// The runner (SPEC section 5): simulates a system for a duration or a number of steps with
// monitors, inputs and a progress bar, and returns the recordings as tensors (and writes
// them as .npz plus a JSON summary).
//
// Each step: inputs are applied to their target states, the system is stepped (see the step
// order in dyn/system.h), then monitors record. Time advances by dt per step and carries on
// across successive run() calls. Monitors are recorded on the system's device and copied to
// the CPU in chunks of `chunk_steps` samples: the only host synchronisation in the loop.
//
// Two engines run the same step (dyn/fast.h): "modules" calls every system's update(), op by
// op, and is differentiable; "fast" compiles networks of LIF populations and exponential
// synapses (CSR or JIT connectivity, delays) into fused loops over raw memory, with the same
// results, spike for spike. Engine::Auto takes the fast one when the network and the
// monitors allow it and no gradient is being recorded.
//
// CUDA graphs: on a GPU the module engine records its steps once in a CUDA graph and replays
// it, so the host no longer launches every op of every step (RunnerOptions::graphs). The
// clock a replayed step needs is then a device tensor (Context::clock) that the graph itself
// advances; monitors, the finiteness guard and spike counts write into device buffers at
// indices computed from it, and are read in chunks as before. A graph covers a multiple of
// every monitor's `every` steps; the steps before the first aligned one, and any left over at
// the end, run one by one through the same device-clock code.
//
// Reliability: with checkpoint_path and checkpoint_every set, the run in progress (every state,
// parameter and buffer that can change, the generators, the clock, the monitors recorded so
// far) is written every checkpoint_every steps, atomically (brain/io/checkpoint.h); resume()
// continues a run killed at any moment and returns monitors bit-identical to those of a run
// that never stopped. With check_finite, a floating-point state that becomes NaN or Inf stops
// the run with a NonFiniteError naming the state and the step; the module engine checks
// device-side sums each step and reads them once per chunk (no per-step host sync), the fast
// engine checks inside its fused pass.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <brain/dyn/system.h>

namespace brain {

namespace dist {
struct Partition;  // brain/dist/dist.h
}

struct Monitor {
  std::string path;                  // a state path, e.g. "E.V" or "E.spike"
  std::optional<at::Tensor> indices; // record only these neurons (last dimension)
  int64_t every = 1;                 // record every k-th step
  std::string name;                  // key of the recording; defaults to path
  std::optional<at::ScalarType> dtype;  // store samples as this type (e.g. spikes as kBool)
  const std::string& key() const { return name.empty() ? path : name; }
};

struct RunInput {
  enum class Op { Set, Add };
  std::string path;  // target state
  at::Tensor value;  // broadcastable to the state, or [T, ...] when per_step: row t at the runner's
                     // step t (counted from its first run); past row T - 1 the last row holds
  bool per_step = false;
  Op op = Op::Add;
};

enum class Engine { Auto, Modules, Fast };

// Auto: record and replay CUDA graphs when the system is on a CUDA device, every system in it
// is replayable (DynamicalSystem::replayable), no gradient is recorded and the monitors'
// periods allow it. Off: never. Emulate: the same replay path on any device without a graph;
// every "replay" runs its steps again with the host's ctx.step and ctx.t off by 1000000007
// steps, so a system that computes with them instead of the clock goes visibly wrong. That is
// how replayability is tested where no GPU is.
enum class Graphs { Auto, Off, Emulate };
BRAIN_API Graphs parse_graphs(const std::string& name);  // "auto" | "off" | "emulate"
BRAIN_API const char* graphs_name(Graphs graphs);
BRAIN_API Engine parse_engine(const std::string& name);  // "auto" | "modules" | "fast"
BRAIN_API const char* engine_name(Engine engine);

struct RunnerOptions {
  double dt = 0.1;  // ms
  Engine engine = Engine::Auto;
  std::vector<Monitor> monitors;
  std::vector<RunInput> inputs;
  // Progress bar on stderr: -1 when stderr is a terminal, 0 never, 1 always.
  int progress = -1;
  int64_t chunk_steps = 1000;
  // Move the system (and inputs) to this device before running; absent: where it is.
  std::optional<c10::Device> device;
  // Checkpoints of a run in progress, every checkpoint_every steps (0: none) into
  // checkpoint_path; the last one stays after the run.
  std::string checkpoint_path;
  int64_t checkpoint_every = 0;
  // What the system was built from (e.g. a hash of its configuration): a checkpoint made
  // with another identity is refused.
  std::string identity;
  // Stop with NonFiniteError when a floating-point state becomes NaN or Inf.
  bool check_finite = true;
  // This process runs one rank's share of a network split over several (brain/dist/dist.h):
  // its populations hold the neurons the rank owns, its projections every synapse onto them
  // from the whole presynaptic population. Runs on the fast engine only; monitors and spike
  // counts cover this rank's neurons, or the whole network's with Partition::merge, which
  // also allows checkpoints (in a layout any number of processes resumes).
  std::shared_ptr<dist::Partition> partition;
  // CUDA graphs for the module engine (see Graphs), and the steps one graph covers: 0 picks
  // the least multiple of every monitor's `every` that is at least 16.
  Graphs graphs = Graphs::Auto;
  int64_t graph_steps = 0;
};

// A floating-point state became NaN or Inf during a run (RunnerOptions::check_finite).
class BRAIN_API NonFiniteError : public std::runtime_error {
 public:
  NonFiniteError(const std::string& state, int64_t step, double t_ms);
  const std::string& state() const { return state_; }  // its path, e.g. "E.V"
  int64_t step() const { return step_; }                // the step after which it was found

 private:
  std::string state_;
  int64_t step_;
};

struct RunResult {
  int64_t steps = 0;
  double dt = 0;
  double t_start = 0;       // ms, time at the first step of this run
  double wall_seconds = 0;  // the loop alone
  // Per monitor key: the recording [samples, ...] on the CPU, and the sample times (ms).
  std::map<std::string, at::Tensor> values;
  std::map<std::string, at::Tensor> times;
  std::vector<std::string> order;  // monitor keys as given
  std::string engine;              // "modules" or "fast": the one that ran
  // Steps run by replaying a recorded graph (CUDA or emulated), and how the steps ran: "cuda"
  // or "emulated" when graphs were replayed, else why not (e.g. "off", "not on a CUDA device").
  int64_t replayed_steps = 0;
  std::string graphs;
  // Spikes emitted during the run by every neuron population (by path), monitored or not.
  std::map<std::string, int64_t> spike_counts;

  // <dir>/monitors.npz (arrays "<key>" and "<key>.t") and <dir>/summary.json.
  void save(const std::string& dir) const;
  std::string summary_json() const;
};

class BRAIN_API Runner {
 public:
  Runner(std::shared_ptr<DynamicalSystem> system, RunnerOptions options);

  RunResult run(double duration_ms);
  RunResult run_steps(int64_t steps);

  // Finishes the run saved in a checkpoint that run()/run_steps() wrote (the process may have
  // been killed at any point since) and returns the result of the whole run, monitors
  // bit-identical to a run that never stopped (on the CPU). The system must be built as it
  // was (same identity, same states, parameters and connectivity) and the runner's monitors
  // must be the same; anything else is refused with io::CheckpointError. Without a
  // checkpoint_path of its own, the runner goes on writing checkpoints into `path` as often
  // as the interrupted run did.
  RunResult resume(const std::string& path);

  // Between runs: saves or restores the state of the system, its generators and the clock.
  void save_checkpoint(const std::string& path);
  void load_checkpoint(const std::string& path);

  // The clock carried across run() calls; set it to continue a restored simulation.
  Context& context() { return ctx_; }
  DynamicalSystem& system() { return *system_; }

 private:
  struct Progress;
  void validate();
  RunResult finish(Progress& progress);
  void write_checkpoint(const std::string& path, Progress* progress);
  void read_checkpoint(const std::string& path, Progress* progress);
  // Distributed runs with Partition::merge: recordings merged on rank 0 as they go, and
  // checkpoints in the global layout (the states and recordings of one process).
  void merge_recordings(Progress& progress);
  void write_global_checkpoint(const std::string& path, Progress* progress);
  std::vector<std::string> global_structure();
  std::shared_ptr<DynamicalSystem> system_;
  RunnerOptions options_;
  Context ctx_;
};

}  // namespace brain
