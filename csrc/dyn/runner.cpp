#include <brain/dyn/runner.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <brain/dist/dist.h>
#include <brain/dyn/delay.h>
#include <brain/dyn/fast.h>
#include <brain/info.h>
#include <brain/io/checkpoint.h>
#include <brain/io/npz.h>
#include <brain/models/neurons.h>

#include "csrc/dyn/progress.h"
#include "csrc/dyn/runner_parts.h"

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

// The guard's per-step sum of a small CPU state as a plain loop in double: a dispatched
// at::sum per state and step cost the module engine about 17% of COBA-4000's step time.
// False where at::sum should do it (a GPU, a large or strided state, another dtype).
template <typename T>
double sum_in_lanes(const T* p, int64_t n) {
  // Eight independent partial sums: no chain of dependent adds (the value is only tested for
  // being finite, so the order of the additions does not matter).
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) lane[l] += static_cast<double>(p[i + l]);
  }
  for (; i < n; ++i) lane[0] += static_cast<double>(p[i]);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

bool sum_small_cpu_state(const at::Tensor& state, double* out) {
  if (!state.is_cpu() || !state.is_contiguous() || state.numel() > (int64_t{1} << 16)) return false;
  double acc = 0;
  if (state.scalar_type() == at::kFloat) {
    acc = sum_in_lanes(state.const_data_ptr<float>(), state.numel());
  } else if (state.scalar_type() == at::kDouble) {
    acc = sum_in_lanes(state.const_data_ptr<double>(), state.numel());
  } else {
    return false;
  }
  *out = acc;
  return true;
}

using detail::Clock;
using detail::ProgressBar;

using detail::find_populations;
using detail::resolve;
using detail::Target;

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

namespace {

// The module engine over `steps` steps of a run (one segment between checkpoints).
RunResult run_modules(DynamicalSystem& system, const RunnerOptions& options, Context& ctx, int64_t steps,
                      const detail::Segment& segment) {
  // Without a gradient to record, no graph either: exponential Euler finds its slopes by
  // autograd, and under grad mode its states would chain every step's graph to the last.
  std::optional<at::NoGradGuard> no_grad;
  if (!detail::wants_gradient(system, options)) no_grad.emplace();
  std::vector<Recording> recs;
  for (const auto& m : options.monitors) {
    Recording r{&m, resolve(system, m.path), {}, {}, {}, {}};
    if (m.indices) r.indices = m.indices->to(system.find_state(m.path).device(), torch::kLong);
    recs.push_back(std::move(r));
  }
  // Inputs are moved to their state's device and dtype once, not every step.
  std::vector<Target> input_targets;
  std::vector<at::Tensor> input_values;
  for (const auto& in : options.inputs) {
    input_targets.push_back(resolve(system, in.path));
    const at::Tensor& s = system.find_state(in.path);
    input_values.push_back(in.value.to(s.device(), s.scalar_type()));
  }

  std::vector<std::pair<std::string, DynamicalSystem*>> populations;
  find_populations(system, "", populations);
  std::vector<at::Tensor> counts;  // on the device: summed without a host sync per step
  for (const auto& item : populations) {
    counts.push_back(torch::zeros({}, item.second->state("spike").options().dtype(torch::kDouble)));
  }

  // The finiteness guard: each step, the sum of every floating-point state goes into a
  // device-side slot (NaN or Inf anywhere makes the sum NaN or Inf); the slots are read once
  // per chunk of steps, with the monitors, and the first bad one names the state and the step.
  // Delay histories are left out: they hold copies of states pushed in earlier steps (guarded
  // where they were computed), and summing a whole ring every step would cost more than the
  // step itself with long delays (201 x 3200 values for COBA-4000 with 20 ms delays).
  struct Guarded {
    std::string path;
    Target target;
    at::Tensor sums;  // [chunk_steps] float64, on the state's device
  };
  std::vector<Guarded> guarded;
  if (options.check_finite) {
    for (const auto& path : system.state_paths()) {
      const at::Tensor s = system.find_state(path);
      const Target target = resolve(system, path);
      if (!s.is_floating_point() || dynamic_cast<const Delay*>(target.system)) continue;
      guarded.push_back({path, target, torch::zeros({options.chunk_steps}, s.options().dtype(torch::kDouble))});
    }
  }
  int64_t chunk_first_step = ctx.step;
  int64_t chunk_rows = 0;
  auto check_guard = [&] {
    if (chunk_rows == 0) return;
    int64_t first_row = chunk_rows;
    const std::string* first_path = nullptr;
    for (const auto& g : guarded) {
      const at::Tensor bad = torch::isfinite(g.sums.narrow(0, 0, chunk_rows)).logical_not();
      if (!bad.any().item<bool>()) continue;
      const int64_t row = bad.nonzero()[0][0].item<int64_t>();
      if (row < first_row) {
        first_row = row;
        first_path = &g.path;
      }
    }
    if (first_path) {
      const int64_t step = chunk_first_step + first_row;
      throw NonFiniteError(*first_path, step, step * ctx.dt);
    }
    chunk_first_step = ctx.step;
    chunk_rows = 0;
  };

  RunResult result;
  result.engine = "modules";
  result.dt = options.dt;
  result.t_start = ctx.t;
  const auto start = Clock::now();
  for (int64_t i = 0; i < steps; ++i) {
    for (size_t k = 0; k < options.inputs.size(); ++k) {
      const auto& in = options.inputs[k];
      auto& target = input_targets[k];
      const at::Tensor& cur = target.system->state(target.leaf);
      const at::Tensor& all = input_values[k];
      const at::Tensor v = in.per_step ? all[std::min<int64_t>(segment.offset + i, all.size(0) - 1)] : all;
      target.system->assign_state(target.leaf, in.op == RunInput::Op::Set ? v.expand(cur.sizes()).clone() : cur + v);
    }
    system.step(ctx);
    for (size_t p = 0; p < populations.size(); ++p) counts[p].add_(populations[p].second->state("spike").detach().sum());
    for (auto& g : guarded) {
      const at::Tensor& state = g.target.system->state(g.target.leaf);  // read, never differentiated
      if (!sum_small_cpu_state(state, g.sums.data_ptr<double>() + chunk_rows)) {
        at::Tensor slot = g.sums.select(0, chunk_rows);
        at::sum_out(slot, state.detach(), std::nullopt, false, torch::kDouble);
      }
    }
    for (auto& r : recs) {
      if (ctx.step % r.spec->every != 0) continue;
      at::Tensor s = r.target.system->state(r.target.leaf).detach();
      s = r.indices.defined() ? s.index_select(-1, r.indices) : s.clone();
      if (r.spec->dtype) s = s.to(*r.spec->dtype);
      r.chunk.push_back(s);
      r.times.push_back(ctx.t);
      if (static_cast<int64_t>(r.chunk.size()) >= options.chunk_steps) r.flush();
    }
    ctx.step += 1;
    ctx.t = ctx.step * ctx.dt;
    if (!guarded.empty() && ++chunk_rows == options.chunk_steps) check_guard();
    if (segment.bar) segment.bar->update(segment.offset + i + 1);
  }
  if (!guarded.empty()) check_guard();
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

// A monitor that sampled nothing in a segment comes back as an empty 1-D tensor.
bool is_empty_recording(const at::Tensor& t) { return t.dim() == 1 && t.numel() == 0; }

std::string shape_text(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

// A monitor's recording from its pieces (one per segment or record), empty pieces skipped.
at::Tensor join_pieces(const std::vector<at::Tensor>& pieces) {
  std::vector<at::Tensor> real;
  for (const auto& p : pieces) {
    if (!is_empty_recording(p)) real.push_back(p);
  }
  if (real.empty()) return pieces.empty() ? torch::empty({0}) : pieces.front();
  return real.size() == 1 ? real.front() : torch::cat(real, 0);
}

// The recordings of a run in progress live next to its checkpoint, in "<checkpoint>.rec":
// each checkpoint appends one record with what was recorded since the one before (fsync'ed
// before the checkpoint that counts it is renamed into place) and stores the file's valid
// length, so a checkpoint writes what is new instead of everything so far (which made long
// runs write O(T^2) bytes). On resume the file is read up to that length; a record appended
// by a run killed before its checkpoint landed is cut off by the next append.
struct RecordingsFile {
  std::map<std::string, size_t> values, times;  // pieces already saved, per monitor key
  uint64_t bytes = 0;
  int64_t records = 0;
  std::string source;  // the file a resumed run read (copied when it checkpoints elsewhere)
};

std::string recordings_path(const std::string& checkpoint_path) { return checkpoint_path + ".rec"; }

// Appends what `values` and `times` hold beyond `saved` to the recordings file of
// `checkpoint_path`; returns the "recordings" entry of the checkpoint's header.
nlohmann::json save_new_recordings(const std::string& checkpoint_path, const std::vector<Monitor>& monitors,
                                   std::map<std::string, std::vector<at::Tensor>>& values,
                                   std::map<std::string, std::vector<at::Tensor>>& times, RecordingsFile& saved) {
  const std::string file = recordings_path(checkpoint_path);
  if (!saved.source.empty() && saved.source != file && saved.bytes > 0) {
    // A resumed run checkpointing elsewhere: its new file starts with what the old one held.
    io::copy_record_prefix(saved.source, file, saved.bytes);
  }
  saved.source = file;
  io::Checkpoint record;
  record.header = "{}";
  for (const auto& m : monitors) {
    const auto& key = m.key();
    auto& v = values[key];
    auto& t = times[key];
    const size_t v0 = std::min(saved.values[key], v.size()), t0 = std::min(saved.times[key], t.size());
    record.tensors.emplace_back("monitor/" + key, join_pieces(std::vector<at::Tensor>(v.begin() + v0, v.end())));
    record.tensors.emplace_back("monitor_t/" + key, join_pieces(std::vector<at::Tensor>(t.begin() + t0, t.end())));
    saved.values[key] = v.size();
    saved.times[key] = t.size();
  }
  saved.bytes = io::append_record(file, saved.bytes, record);
  saved.records += 1;
  return {{"file", std::filesystem::path(file).filename().string()}, {"bytes", saved.bytes}, {"records", saved.records}};
}

// Reads the recordings a checkpoint at `checkpoint_path` counts (its header's "recordings")
// into per-key pieces.
void load_recordings(const std::string& checkpoint_path, const nlohmann::json& entry, const std::vector<Monitor>& monitors,
                     std::map<std::string, std::vector<at::Tensor>>& values,
                     std::map<std::string, std::vector<at::Tensor>>& times, RecordingsFile& saved) {
  const auto dir = std::filesystem::path(checkpoint_path).parent_path();
  const std::string file = (dir / entry.at("file").get<std::string>()).string();
  saved.bytes = entry.at("bytes").get<uint64_t>();
  saved.records = entry.at("records").get<int64_t>();
  const auto records = io::read_records(file, saved.bytes);
  if (static_cast<int64_t>(records.size()) != saved.records) {
    throw io::CheckpointError("the recordings file '" + file + "' holds " + std::to_string(records.size()) +
                              " records where the checkpoint counts " + std::to_string(saved.records));
  }
  for (const auto& m : monitors) {
    const auto& key = m.key();
    values[key].clear();
    times[key].clear();
    for (const auto& r : records) {
      if (!r.has("monitor/" + key) || !r.has("monitor_t/" + key)) {
        throw io::CheckpointError("the recordings file '" + file + "' has no recording of monitor '" + key + "'");
      }
      values[key].push_back(r.tensor("monitor/" + key));
      times[key].push_back(r.tensor("monitor_t/" + key));
    }
    saved.values[key] = values[key].size();
    saved.times[key] = times[key].size();
  }
  saved.source = file;
}

const char* kCheckpointFormat = "libbrain-runner";
constexpr int kCheckpointVersion = 1;

}  // namespace

NonFiniteError::NonFiniteError(const std::string& state, int64_t step, double t_ms)
    : std::runtime_error([&] {
        const auto dot = state.rfind('.');
        std::ostringstream m;
        m << "state '" << state << "'";
        if (dot != std::string::npos) {
          m << " (population '" << state.substr(0, dot) << "', variable '" << state.substr(dot + 1) << "')";
        }
        m << " became NaN or Inf at step " << step << " (t = " << t_ms
          << " ms); check the parameters, the inputs and dt, or turn the check off (check_finite)";
        return m.str();
      }()),
      state_(state),
      step_(step) {}

// A run in progress: what has been recorded and counted so far.
struct Runner::Progress {
  int64_t total = 0;
  int64_t done = 0;
  double t_start = 0;
  double wall_seconds = 0;
  std::string engine;
  int64_t replayed_steps = 0;
  std::string graphs;
  int64_t checkpoint_every = 0;  // of the run that wrote the checkpoint being resumed
  std::map<std::string, std::vector<at::Tensor>> values, times;  // CPU pieces per monitor key
  // Distributed runs with Partition::merge: what rank 0 has merged so far (values then hold
  // this rank's recordings since), and this rank's share of the spike counts (rank 0's
  // includes those of a resumed checkpoint).
  std::map<std::string, std::vector<at::Tensor>> merged;
  std::map<std::string, int64_t> spike_counts;

  void add(const RunResult& r) {
    for (const auto& key : r.order) {
      values[key].push_back(r.values.at(key));
      times[key].push_back(r.times.at(key));
    }
    for (const auto& [pop, n] : r.spike_counts) spike_counts[pop] += n;
    wall_seconds += r.wall_seconds;
    replayed_steps += r.replayed_steps;
    // The way steps ran: that of a segment that replayed, if any did.
    if (graphs.empty() || r.replayed_steps > 0) graphs = r.graphs;
    done += r.steps;
  }
  static at::Tensor joined(const std::vector<at::Tensor>& pieces) { return join_pieces(pieces); }
  // The recordings file next to the checkpoint (RecordingsFile): the pieces of values (or
  // merged) and times per key already in it, its valid length and record count, and the file
  // a resumed run read them from.
  RecordingsFile saved;
};

RunResult Runner::run_steps(int64_t steps) {
  TORCH_CHECK(steps > 0, "Runner.run_steps: the number of steps must be positive, got ", steps);
  validate();  // states may have been reset to another shape since construction
  Progress progress;
  progress.total = steps;
  progress.t_start = ctx_.t;
  return finish(progress);
}

RunResult Runner::finish(Progress& p) {
  bool fast = options_.engine == Engine::Fast ||
              (options_.engine == Engine::Auto && fast_engine_unsupported(*system_, options_).empty());
  if (options_.partition) {
    // One rank's share of a network: only the fast engine exchanges spikes between ranks.
    TORCH_CHECK(options_.engine != Engine::Modules, "Runner: a distributed run needs the fast engine, not 'modules'");
    const std::string why = fast_engine_unsupported(*system_, options_);
    TORCH_CHECK(why.empty(), "Runner: a distributed run needs the fast engine, which cannot run this network: ", why);
    TORCH_CHECK(options_.partition->merge || options_.checkpoint_path.empty() || options_.checkpoint_every == 0,
                "Runner: checkpoints of a distributed run need Partition::merge (the runner then merges the ",
                "ranks' recordings and writes checkpoints any number of processes can resume)");
    TORCH_CHECK(options_.partition->comm, "Runner: the partition has no process group");
    fast = true;
  }
  const bool merging = options_.partition && options_.partition->merge;
  const std::string engine = fast ? "fast" : "modules";
  if (p.engine.empty()) p.engine = engine;
  const bool checkpoints = !options_.checkpoint_path.empty() && options_.checkpoint_every > 0;
  ProgressBar bar(p.total, options_.progress == 1 || (options_.progress == -1 && isatty(fileno(stderr))), p.done);
  while (p.done < p.total) {
    int64_t n = p.total - p.done;
    if (checkpoints) n = std::min(n, options_.checkpoint_every - p.done % options_.checkpoint_every);
    const detail::Segment segment{p.done, &bar};
    int64_t graph_steps = 0;
    const std::string no_replay = fast ? "" : detail::replay_unsupported(*system_, options_, n, &graph_steps);
    if (fast) {
      p.add(detail::run_fast(*system_, options_, ctx_, n, segment));
    } else if (no_replay.empty()) {
      p.add(detail::run_modules_replayed(*system_, options_, ctx_, n, segment, graph_steps));
    } else {
      RunResult r = run_modules(*system_, options_, ctx_, n, segment);
      r.graphs = no_replay;
      p.add(r);
    }
    if (checkpoints && p.done % options_.checkpoint_every == 0) {
      if (merging) merge_recordings(p);
      write_checkpoint(options_.checkpoint_path, &p);
    }
  }
  if (merging) {
    merge_recordings(p);
    // The whole network's counts, on every rank.
    std::vector<double> mine;
    for (const auto& [pop, n] : p.spike_counts) mine.push_back(static_cast<double>(n));
    const at::Tensor total = options_.partition->comm->all_reduce_sum(torch::tensor(mine, torch::kFloat64));
    int64_t i = 0;
    for (auto& [pop, n] : p.spike_counts) n = std::llround(total[i++].item<double>());
  }
  const bool keeps_recordings = !merging || options_.partition->comm->rank() == 0;
  RunResult result;
  result.steps = p.total;
  result.dt = options_.dt;
  result.t_start = p.t_start;
  result.wall_seconds = p.wall_seconds;
  result.engine = p.engine == engine ? engine : p.engine + "+" + engine;
  result.spike_counts = p.spike_counts;
  result.replayed_steps = p.replayed_steps;
  result.graphs = p.graphs;
  for (const auto& m : options_.monitors) {
    const auto& key = m.key();
    result.order.push_back(key);
    result.values[key] = merging ? (keeps_recordings ? Progress::joined(p.merged[key]) : torch::empty({0}))
                                 : Progress::joined(p.values[key]);
    result.times[key] = Progress::joined(p.times[key]);
    if (!result.times[key].defined() || is_empty_recording(result.times[key])) {
      result.times[key] = torch::empty({0}, torch::kDouble);
    }
  }
  return result;
}

namespace {

// Everything a checkpoint must agree on with the system it is loaded into, one line per
// tensor: states, parameters and buffers (name, dtype, shape; integer buffers, which hold
// connectivity, also by content), monitors and dt.
std::vector<std::string> structure_of(DynamicalSystem& system, const RunnerOptions& options) {
  system.sync_buffers();
  std::vector<std::string> lines;
  const auto paths = system.state_paths();
  const std::set<std::string> states(paths.begin(), paths.end());
  for (const auto& path : paths) {
    const at::Tensor t = system.find_state(path);
    lines.push_back("state " + path + " " + c10::toString(t.scalar_type()) + " " + shape_text(t));
  }
  for (const auto& item : system.named_parameters()) {
    lines.push_back("parameter " + item.key() + " " + c10::toString(item.value().scalar_type()) + " " +
                    shape_text(item.value()));
  }
  for (const auto& item : system.named_buffers()) {
    if (states.count(item.key())) continue;
    const at::Tensor& t = item.value();
    std::string line = "buffer " + item.key() + " " + c10::toString(t.scalar_type()) + " " + shape_text(t);
    if (!t.is_floating_point() && t.scalar_type() != at::kBool) {
      const at::Tensor c = t.to(at::kCPU).contiguous();
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx",
                    static_cast<unsigned long long>(io::xxh64(c.data_ptr(), c.numel() * c.element_size())));
      line += std::string(" xxh64=") + hex;
    }
    lines.push_back(line);
  }
  for (const auto& m : options.monitors) {
    std::string line = "monitor " + m.key() + " <- " + m.path + " every " + std::to_string(m.every);
    if (m.dtype) line += std::string(" as ") + c10::toString(*m.dtype);
    if (m.indices) {
      const at::Tensor ix = m.indices->to(at::kCPU, at::kLong).contiguous();
      line += " indices " + std::to_string(ix.numel()) + ":" +
              std::to_string(io::xxh64(ix.data_ptr(), ix.numel() * sizeof(int64_t)));
    }
    lines.push_back(line);
  }
  std::ostringstream dt;
  dt.precision(17);
  dt << "dt " << options.dt;
  lines.push_back(dt.str());
  return lines;
}

bool keeps_in_checkpoint(const at::Tensor& t) { return t.is_floating_point() || t.scalar_type() == at::kBool; }

}  // namespace

void Runner::write_checkpoint(const std::string& path, Progress* progress) {
  if (options_.partition) {
    write_global_checkpoint(path, progress);
    return;
  }
  io::Checkpoint ck;
  nlohmann::json header = {{"format", kCheckpointFormat},
                           {"version", kCheckpointVersion},
                           {"libbrain", brain::version()},
                           {"identity", options_.identity},
                           {"batch_size", system_->batch_size()},
                           {"structure", structure_of(*system_, options_)}};
  ck.tensors.emplace_back("clock/step", torch::tensor({ctx_.step}, torch::kLong));
  ck.tensors.emplace_back("clock/t_dt", torch::tensor({ctx_.t, ctx_.dt}, torch::kDouble));
  const auto paths = system_->state_paths();
  const std::set<std::string> states(paths.begin(), paths.end());
  for (const auto& p : paths) ck.tensors.emplace_back("state/" + p, system_->find_state(p));
  for (const auto& item : system_->named_parameters()) ck.tensors.emplace_back("parameter/" + item.key(), item.value());
  for (const auto& item : system_->named_buffers()) {
    if (states.count(item.key()) || !keeps_in_checkpoint(item.value())) continue;
    ck.tensors.emplace_back("buffer/" + item.key(), item.value());
  }
  ck.tensors.emplace_back("rng/cpu", at::detail::getDefaultCPUGenerator().get_state());
  if (at::hasCUDA()) {
    for (c10::DeviceIndex d = 0; d < static_cast<c10::DeviceIndex>(torch::cuda::device_count()); ++d) {
      ck.tensors.emplace_back("rng/cuda" + std::to_string(d),
                              at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, d)).get_state());
    }
  }
  if (progress) {
    nlohmann::json counts = nlohmann::json::object();
    for (const auto& [pop, n] : progress->spike_counts) counts[pop] = n;
    header["run"] = {{"total_steps", progress->total},
                     {"done_steps", progress->done},
                     {"checkpoint_every", options_.checkpoint_every},
                     {"t_start_ms", progress->t_start},
                     {"wall_seconds", progress->wall_seconds},
                     {"engine", progress->engine},
                     {"spike_counts", counts}};
    header["run"]["recordings"] =
        save_new_recordings(path, options_.monitors, progress->values, progress->times, progress->saved);
  }
  ck.header = header.dump();
  io::write_checkpoint_file(path, ck);
}

namespace {

// The global indices a monitor records, in order: what a checkpoint's monitor must agree on,
// whatever the number of processes.
std::vector<int64_t> monitor_columns(DynamicalSystem& system, const RunnerOptions& options, const Monitor& m) {
  if (options.partition && options.partition->merge) {
    const auto it = options.partition->monitor_columns.find(m.key());
    TORCH_CHECK(it != options.partition->monitor_columns.end(), "Runner: distributed run: Partition::monitor_columns ",
                "has no entry for monitor '", m.key(), "'");
    return it->second.wanted;
  }
  if (m.indices) {
    const at::Tensor ix = m.indices->to(at::kCPU, at::kLong).contiguous();
    return std::vector<int64_t>(ix.data_ptr<int64_t>(), ix.data_ptr<int64_t>() + ix.numel());
  }
  const at::Tensor state = system.find_state(m.path);
  std::vector<int64_t> all(static_cast<size_t>(state.dim() ? state.size(-1) : 1));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  return all;
}

// A distributed run's state in the layout of one process: split states gathered from every
// rank's block (on rank 0; undefined elsewhere), the others as this rank has them.
at::Tensor global_state(dist::Collective& comm, const at::Tensor& local, int64_t n_global) {
  const int world = comm.world_size();
  std::vector<std::vector<int64_t>> columns(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    const dist::Block b = dist::block_of(n_global, r, world);
    for (int64_t i = 0; i < b.size; ++i) columns[static_cast<size_t>(r)].push_back(b.offset + i);
  }
  std::vector<int64_t> wanted(static_cast<size_t>(n_global));
  for (int64_t i = 0; i < n_global; ++i) wanted[static_cast<size_t>(i)] = i;
  const at::Tensor rows = local.detach().to(at::kCPU).reshape({-1, local.size(-1)});
  const at::Tensor merged = dist::gather_columns(comm, rows, columns, wanted);
  if (!merged.defined()) return merged;
  std::vector<int64_t> shape = local.sizes().vec();
  shape.back() = n_global;
  return merged.reshape(shape);
}

}  // namespace

std::vector<std::string> Runner::global_structure() {
  std::map<std::string, std::string> split;
  if (options_.partition) split = detail::per_neuron_states(*system_, options_);
  std::vector<std::string> lines;
  for (const auto& path : system_->state_paths()) {
    const at::Tensor t = system_->find_state(path);
    std::vector<int64_t> shape = t.sizes().vec();
    if (const auto it = split.find(path); it != split.end()) shape.back() = options_.partition->global_sizes.at(it->second);
    std::string text = "[";
    for (size_t d = 0; d < shape.size(); ++d) text += (d ? ", " : "") + std::to_string(shape[d]);
    lines.push_back("state " + path + " " + c10::toString(t.scalar_type()) + " " + text + "]");
  }
  for (const auto& m : options_.monitors) {
    const auto cols = monitor_columns(*system_, options_, m);
    std::string line = "monitor " + m.key() + " <- " + m.path + " every " + std::to_string(m.every);
    if (m.dtype) line += std::string(" as ") + c10::toString(*m.dtype);
    line += " columns " + std::to_string(cols.size()) + ":" +
            std::to_string(io::xxh64(cols.data(), cols.size() * sizeof(int64_t)));
    lines.push_back(line);
  }
  std::ostringstream dt;
  dt.precision(17);
  dt << "dt " << options_.dt;
  lines.push_back(dt.str());
  return lines;
}

void Runner::merge_recordings(Progress& p) {
  dist::Collective& comm = *options_.partition->comm;
  for (const auto& m : options_.monitors) {
    const auto& key = m.key();
    const auto it = options_.partition->monitor_columns.find(key);
    TORCH_CHECK(it != options_.partition->monitor_columns.end(), "Runner: distributed run: Partition::monitor_columns ",
                "has no entry for monitor '", key, "'");
    at::Tensor local = Progress::joined(p.values[key]);
    p.values[key].clear();
    // Every rank sampled the same steps: all skip together, or all gather.
    if (is_empty_recording(local) || local.size(0) == 0) continue;
    TORCH_CHECK(local.dim() == 2, "Runner: distributed run: monitor '", key, "' records ", local.sizes(),
                "; only [samples, neurons] recordings merge");
    at::Tensor merged = dist::gather_columns(comm, local, it->second.columns, it->second.wanted);
    if (merged.defined()) p.merged[key].push_back(merged);
  }
}

void Runner::write_global_checkpoint(const std::string& path, Progress* progress) {
  TORCH_CHECK(options_.partition->merge, "Runner: checkpoints of a distributed run need Partition::merge");
  dist::Collective& comm = *options_.partition->comm;
  const bool root = comm.rank() == 0;
  const auto split = detail::per_neuron_states(*system_, options_);
  io::Checkpoint ck;
  nlohmann::json header = {{"format", kCheckpointFormat},
                           {"version", kCheckpointVersion},
                           {"libbrain", brain::version()},
                           {"identity", options_.identity},
                           {"batch_size", system_->batch_size()},
                           {"layout", "global"},
                           {"written_by_processes", comm.world_size()},
                           {"structure", global_structure()}};
  ck.tensors.emplace_back("clock/step", torch::tensor({ctx_.step}, torch::kLong));
  ck.tensors.emplace_back("clock/t_dt", torch::tensor({ctx_.t, ctx_.dt}, torch::kDouble));
  uint64_t replicated_hash = 0;
  std::string first_replicated;
  for (const auto& p : system_->state_paths()) {
    const at::Tensor t = system_->find_state(p);
    if (const auto it = split.find(p); it != split.end()) {
      const at::Tensor g = global_state(comm, t, options_.partition->global_sizes.at(it->second));
      if (root) ck.tensors.emplace_back("state/" + p, g);
    } else {
      // The same on every rank (delay lines of whole populations): checked, then rank 0's.
      const at::Tensor c = t.detach().to(at::kCPU).contiguous();
      replicated_hash = io::xxh64(c.data_ptr(), c.numel() * c.element_size(), replicated_hash);
      if (first_replicated.empty()) first_replicated = p;
      if (root) ck.tensors.emplace_back("state/" + p, c);
    }
  }
  const auto hashes = comm.all_gather(torch::tensor({static_cast<int64_t>(replicated_hash)}, torch::kLong));
  for (size_t r = 1; r < hashes.size(); ++r) {
    TORCH_CHECK(hashes[r].item<int64_t>() == hashes[0].item<int64_t>(), "Runner: distributed checkpoint: rank ", r,
                " holds other values than rank 0 in the states every rank shares (", first_replicated,
                ", ...): the ranks have diverged");
  }
  ck.tensors.emplace_back("rng/cpu", at::detail::getDefaultCPUGenerator().get_state());
  if (progress) {
    std::vector<double> mine;
    for (const auto& [pop, n] : progress->spike_counts) mine.push_back(static_cast<double>(n));
    const at::Tensor total = comm.all_reduce_sum(torch::tensor(mine, torch::kFloat64));
    nlohmann::json counts = nlohmann::json::object();
    int64_t i = 0;
    for (const auto& [pop, n] : progress->spike_counts) counts[pop] = std::llround(total[i++].item<double>());
    header["run"] = {{"total_steps", progress->total},
                     {"done_steps", progress->done},
                     {"checkpoint_every", options_.checkpoint_every},
                     {"t_start_ms", progress->t_start},
                     {"wall_seconds", progress->wall_seconds},
                     {"engine", progress->engine},
                     {"spike_counts", counts}};
  }
  // Rank 0 writes; every rank learns whether it could, so none runs on past a lost checkpoint.
  std::string error;
  if (root) {
    try {
      if (progress) {
        header["run"]["recordings"] =
            save_new_recordings(path, options_.monitors, progress->merged, progress->times, progress->saved);
      }
      ck.header = header.dump();
      io::write_checkpoint_file(path, ck);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  const bool failed = comm.all_reduce_sum(torch::tensor({error.empty() ? 0 : 1}, torch::kLong)).item<int64_t>() > 0;
  if (failed) {
    throw io::CheckpointError(root ? error : "rank 0 could not write the checkpoint '" + path + "' (see its error)");
  }
}

void Runner::read_checkpoint(const std::string& path, Progress* progress) {
  const io::Checkpoint ck = io::read_checkpoint_file(path);
  auto refuse = [&](const std::string& why) { throw io::CheckpointError("checkpoint '" + path + "' " + why); };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(ck.header);
  } catch (const std::exception&) {
    refuse("has a header that is not JSON");
  }
  if (!header.is_object() || header.value("format", "") != kCheckpointFormat) {
    refuse("is not a runner checkpoint (format \"" +
           (header.is_object() ? header.value("format", std::string("?")) : std::string("?")) + "\")");
  }
  // What the local and the global layouts read alike.
  auto check_structure = [&](const std::vector<std::string>& now) {
    const auto saved = header.at("structure").get<std::vector<std::string>>();
    for (size_t i = 0; i < std::max(saved.size(), now.size()); ++i) {
      const std::string a = i < saved.size() ? saved[i] : "(nothing)";
      const std::string b = i < now.size() ? now[i] : "(nothing)";
      if (a != b) refuse("does not match this system: it has \"" + a + "\" where the system has \"" + b + "\"");
    }
  };
  auto check_present = [&](const std::vector<std::string>& needed) {
    for (const auto& name : needed) {
      if (!ck.has(name)) refuse("has no tensor '" + name + "'");
    }
  };
  auto assign_state_at = [&](const std::string& p, const at::Tensor& value) {
    const at::Tensor cur = system_->find_state(p);
    const auto dot = p.rfind('.');
    DynamicalSystem& owner = dot == std::string::npos ? *system_ : system_->find_system(p.substr(0, dot));
    owner.assign_state(dot == std::string::npos ? p : p.substr(dot + 1), value.to(cur.device()));
  };
  auto restore_clock_and_run = [&]() {
    at::Generator cpu_gen = at::detail::getDefaultCPUGenerator();  // a handle: sets the global one
    cpu_gen.set_state(ck.tensor("rng/cpu"));
    ctx_.step = ck.tensor("clock/step").item<int64_t>();
    ctx_.t = ck.tensor("clock/t_dt")[0].item<double>();
    if (!progress) return;
    const auto& run = header.at("run");
    progress->total = run.at("total_steps").get<int64_t>();
    progress->done = run.at("done_steps").get<int64_t>();
    progress->t_start = run.at("t_start_ms").get<double>();
    progress->wall_seconds = run.at("wall_seconds").get<double>();
    progress->engine = run.at("engine").get<std::string>();
    progress->checkpoint_every = run.at("checkpoint_every").get<int64_t>();
    if (progress->total <= 0 || progress->done < 0 || progress->done > progress->total) refuse("has an impossible step count");
  };
  try {
    if (header.at("version").get<int>() != kCheckpointVersion) refuse("has runner format version " + header.at("version").dump());
    const std::string identity = header.at("identity").get<std::string>();
    if (identity != options_.identity) {
      refuse("was made for a different configuration (identity '" + identity + "', this run's is '" + options_.identity +
             "')");
    }
    if (header.at("batch_size").get<int64_t>() != system_->batch_size()) {
      refuse("was made with batch size " + header.at("batch_size").dump() + ", the system has " +
             std::to_string(system_->batch_size()));
    }
    const bool global = header.value("layout", std::string()) == "global";
    if (options_.partition && !global) {
      refuse("was written by one process, in a layout only one process resumes; a distributed run resumes the "
             "checkpoints of distributed runs (of any number of processes)");
    }
    if (global) {
      // A distributed run's checkpoint: states and recordings as one process holds them. Each
      // rank takes its block of the split states; the connectivity is rebuilt from the
      // configuration (the identity says it is the same one).
      check_structure(global_structure());
      if (progress && !header.contains("run")) refuse("holds no run in progress");
      const auto paths = system_->state_paths();
      std::vector<std::string> needed{"clock/step", "clock/t_dt", "rng/cpu"};
      for (const auto& p : paths) needed.push_back("state/" + p);
      check_present(needed);
      const int rank = options_.partition ? options_.partition->comm->rank() : 0;
      // Rank 0 (or the one process) holds the recordings; the others record their own. Read
      // before anything is assigned.
      std::map<std::string, std::vector<at::Tensor>> rec_values, rec_times;
      RecordingsFile rec_saved;
      if (progress && rank == 0) {
        load_recordings(path, header.at("run").at("recordings"), options_.monitors, rec_values, rec_times, rec_saved);
      }
      std::map<std::string, std::string> split;
      if (options_.partition) split = detail::per_neuron_states(*system_, options_);
      const int world = options_.partition ? options_.partition->comm->world_size() : 1;
      torch::NoGradGuard no_grad;
      for (const auto& p : paths) {
        at::Tensor value = ck.tensor("state/" + p);
        if (const auto it = split.find(p); it != split.end()) {
          const dist::Block b = dist::block_of(value.size(-1), rank, world);
          value = value.narrow(-1, b.offset, b.size).contiguous();
        }
        assign_state_at(p, value);
      }
      restore_clock_and_run();
      if (progress) {
        const auto& run = header.at("run");
        // The whole network's counts go to rank 0's share; every rank has every population.
        for (const auto& [pop, n] : run.at("spike_counts").items()) progress->spike_counts[pop] = rank == 0 ? n.get<int64_t>() : 0;
        const bool merging = options_.partition && options_.partition->merge;
        if (rank == 0) {
          (merging ? progress->merged : progress->values) = std::move(rec_values);
          progress->times = std::move(rec_times);
          progress->saved = std::move(rec_saved);
        }
      }
      return;
    }
    check_structure(structure_of(*system_, options_));
    const bool in_progress = header.contains("run");
    if (progress && !in_progress) refuse("holds no run in progress (written by save_checkpoint; use load_checkpoint)");

    const auto paths = system_->state_paths();
    const std::set<std::string> states(paths.begin(), paths.end());
    // Every tensor that will be read must be there before anything is assigned, so a refused
    // checkpoint never leaves the system half loaded.
    std::vector<std::string> needed{"clock/step", "clock/t_dt", "rng/cpu"};
    for (const auto& p : paths) needed.push_back("state/" + p);
    for (const auto& item : system_->named_parameters()) needed.push_back("parameter/" + item.key());
    for (const auto& item : system_->named_buffers()) {
      if (!states.count(item.key()) && keeps_in_checkpoint(item.value())) needed.push_back("buffer/" + item.key());
    }
    const bool embedded = progress && !header.at("run").contains("recordings");  // written before record files
    if (embedded) {
      for (const auto& m : options_.monitors) {
        needed.push_back("monitor/" + m.key());
        needed.push_back("monitor_t/" + m.key());
      }
    }
    check_present(needed);

    // The recordings too, before anything is assigned.
    std::map<std::string, std::vector<at::Tensor>> rec_values, rec_times;
    RecordingsFile rec_saved;
    if (progress && !embedded) {
      load_recordings(path, header.at("run").at("recordings"), options_.monitors, rec_values, rec_times, rec_saved);
    }

    // Everything checked: now the system is changed.
    torch::NoGradGuard no_grad;
    for (const auto& p : paths) assign_state_at(p, ck.tensor("state/" + p));
    for (auto& item : system_->named_parameters()) item.value().copy_(ck.tensor("parameter/" + item.key()));
    for (auto& item : system_->named_buffers()) {
      if (states.count(item.key()) || !keeps_in_checkpoint(item.value())) continue;
      item.value().copy_(ck.tensor("buffer/" + item.key()));
    }
    if (at::hasCUDA()) {
      for (c10::DeviceIndex d = 0; d < static_cast<c10::DeviceIndex>(torch::cuda::device_count()); ++d) {
        const std::string key = "rng/cuda" + std::to_string(d);
        if (!ck.has(key)) continue;
        at::Generator gen = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, d));
        gen.set_state(ck.tensor(key));
      }
    }
    restore_clock_and_run();
    if (progress) {
      const auto& run = header.at("run");
      for (const auto& [pop, n] : run.at("spike_counts").items()) progress->spike_counts[pop] = n.get<int64_t>();
      if (embedded) {
        for (const auto& m : options_.monitors) {
          progress->values[m.key()] = {ck.tensor("monitor/" + m.key())};
          progress->times[m.key()] = {ck.tensor("monitor_t/" + m.key())};
        }
      } else {
        progress->values = std::move(rec_values);
        progress->times = std::move(rec_times);
        progress->saved = std::move(rec_saved);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    refuse(std::string("has a malformed header: ") + e.what());
  }
}

RunResult Runner::resume(const std::string& path) {
  validate();
  Progress progress;
  read_checkpoint(path, &progress);
  // Without checkpoint options of its own, the resumed run goes on checkpointing as before.
  if (options_.checkpoint_path.empty() && progress.checkpoint_every > 0) {
    options_.checkpoint_path = path;
    options_.checkpoint_every = progress.checkpoint_every;
  }
  return finish(progress);
}

void Runner::save_checkpoint(const std::string& path) { write_checkpoint(path, nullptr); }

void Runner::load_checkpoint(const std::string& path) {
  validate();
  read_checkpoint(path, nullptr);
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
        const double count = static_cast<double>(v.count_nonzero().item<int64_t>());  // sum() would copy to int64
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
  if (!graphs.empty()) j["graphs"] = {{"how", graphs}, {"replayed_steps", replayed_steps}};
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
