// `brain run CONFIG.json`: builds a model from its JSON configuration, simulates it and writes
// monitors.npz, summary.json, raster.svg and traces.svg.
#include "csrc/cli/commands.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <brain/brain.h>
#include <brain/dist/dist.h>
#include <brain/io/checkpoint.h>
#include <brain/io/plot.h>
#include <brain/models/config.h>

namespace brain::cli {

namespace {

const char* kRunUsage =
    "usage: brain run CONFIG.json [--duration MS] [--device cpu|cuda] [--seed N] [--out DIR]\n"
    "                 [--checkpoint PATH [--checkpoint-every STEPS]] [--resume PATH]\n"
    "                 [--engine auto|fast|modules] [--progress|--no-progress] [--save-network]\n"
    "                 [--validate] [--no-check-finite] [--no-resource-check] [--deterministic]\n"
    "  --checkpoint        write the run in progress to PATH every STEPS steps (default 10000),\n"
    "                      atomically; the last one stays\n"
    "  --resume PATH       finish the run saved in PATH (same config and options), monitors\n"
    "                      identical to a run that never stopped; goes on checkpointing into\n"
    "                      PATH unless --checkpoint says otherwise\n"
    "  --engine            fast: fused loops (CPU); modules: every module's update(), op by op;\n"
    "                      auto (default): fast where the network allows it\n"
    "  --save-network      also write DIR/network.npz: every projection's CSR (<name>.indptr,\n"
    "                      <name>.indices, with per-synapse delays <name>.delay_steps) and\n"
    "                      the initial potentials (<pop>.V0)\n"
    "  --validate          check the config and the memory it needs, then stop (nothing runs)\n"
    "  --no-check-finite   do not stop when a state becomes NaN or Inf\n"
    "  --no-resource-check run even when the memory estimate exceeds what the device has\n"
    "  --deterministic     CUDA: bitwise reproducible sums (torch's deterministic algorithms;\n"
    "                      transposed CSR products gather by column, slower); refuses the ops\n"
    "                      that have no such path (JIT connectivity); CPU sums always are\n"
    "  --dist-timeout S    distributed runs: seconds a rank waits for the others before it\n"
    "                      stops with an error naming the ranks that died or hang (default 60)\n"
    "distributed: torchrun --nproc_per_node=N --no-python brain run CONFIG.json [...] splits\n"
    "  the network over N processes (Gloo); monitors are identical to one process's and rank 0\n"
    "  writes the outputs. --dist-encoding indices|masks|auto (default auto) picks how spikes\n"
    "  travel between ranks.\n"
    "exit codes: 0 done, 2 bad usage, config or checkpoint, 1 failure while running\n";

struct RunArgs {
  std::string config;
  std::optional<double> duration;
  std::optional<std::string> device;
  std::optional<std::string> engine;
  std::optional<uint64_t> seed;
  std::string out;
  std::string checkpoint;
  std::optional<int64_t> checkpoint_every;
  std::string resume;
  int progress = -1;
  bool save_network = false;
  bool validate_only = false;
  bool check_finite = true;
  bool resource_check = true;
  bool deterministic = false;
  double dist_timeout_s = 60;
  dist::Encoding dist_encoding = dist::Encoding::Auto;
};

// Returns an error message, or "" when the arguments are fine.
std::string parse_args(const std::vector<std::string>& args, RunArgs& a) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& k = args[i];
    auto value = [&](std::string& v) {
      if (i + 1 >= args.size()) return false;
      v = args[++i];
      return true;
    };
    std::string v;
    try {
      if (k == "--duration") {
        if (!value(v)) return "--duration needs a value in ms";
        size_t used = 0;
        a.duration = std::stod(v, &used);
        if (used != v.size() || !(*a.duration > 0) || !std::isfinite(*a.duration)) {
          return "--duration must be a positive number of ms, got '" + v + "'";
        }
      } else if (k == "--device") {
        if (!value(v) || (v != "cpu" && v != "cuda")) return "--device must be cpu or cuda";
        a.device = v;
      } else if (k == "--engine") {
        if (!value(v) || (v != "auto" && v != "fast" && v != "modules")) return "--engine must be auto, fast or modules";
        a.engine = v;
      } else if (k == "--seed") {
        if (!value(v)) return "--seed needs a value";
        size_t used = 0;
        const long long s = std::stoll(v, &used);
        if (used != v.size() || s < 0) return "--seed must be a non-negative integer, got '" + v + "'";
        a.seed = static_cast<uint64_t>(s);
      } else if (k == "--out") {
        if (!value(v) || v.empty()) return "--out needs a directory";
        a.out = v;
      } else if (k == "--checkpoint") {
        if (!value(v) || v.empty()) return "--checkpoint needs a file path";
        a.checkpoint = v;
      } else if (k == "--checkpoint-every") {
        if (!value(v)) return "--checkpoint-every needs a number of steps";
        size_t used = 0;
        const long long n = std::stoll(v, &used);
        if (used != v.size() || n <= 0) return "--checkpoint-every must be a positive number of steps, got '" + v + "'";
        a.checkpoint_every = n;
      } else if (k == "--resume") {
        if (!value(v) || v.empty()) return "--resume needs a checkpoint path";
        a.resume = v;
      } else if (k == "--progress") {
        a.progress = 1;
      } else if (k == "--no-progress") {
        a.progress = 0;
      } else if (k == "--save-network") {
        a.save_network = true;
      } else if (k == "--validate") {
        a.validate_only = true;
      } else if (k == "--no-check-finite") {
        a.check_finite = false;
      } else if (k == "--deterministic") {
        a.deterministic = true;
      } else if (k == "--no-resource-check") {
        a.resource_check = false;
      } else if (k == "--dist-timeout") {
        if (!value(v)) return "--dist-timeout needs a number of seconds";
        size_t used = 0;
        a.dist_timeout_s = std::stod(v, &used);
        if (used != v.size() || !(a.dist_timeout_s > 0) || !std::isfinite(a.dist_timeout_s)) {
          return "--dist-timeout must be a positive number of seconds, got '" + v + "'";
        }
      } else if (k == "--dist-encoding") {
        if (!value(v) || (v != "auto" && v != "indices" && v != "masks")) return "--dist-encoding must be auto, indices or masks";
        a.dist_encoding = v == "indices" ? dist::Encoding::Indices : v == "masks" ? dist::Encoding::Masks : dist::Encoding::Auto;
      } else if (!k.empty() && k[0] == '-') {
        return "unknown option '" + k + "'";
      } else if (a.config.empty()) {
        a.config = k;
      } else {
        return "unexpected argument '" + k + "'";
      }
    } catch (const std::exception&) {
      return "bad value '" + v + "' for " + k;
    }
  }
  if (a.config.empty()) return "missing CONFIG.json";
  if (a.checkpoint_every && a.checkpoint.empty()) return "--checkpoint-every needs --checkpoint PATH";
  return "";
}

// What identifies a run's configuration in its checkpoints: the config as parsed, with the
// command line's overrides, less what does not change the results (device, engine, picture).
std::string config_identity(const std::string& text, const RunConfig& cfg) {
  nlohmann::json j = nlohmann::json::parse(text);
  if (j.contains("run")) {
    j["run"].erase("device");
    j["run"].erase("engine");
    j["run"].erase("graphs");
    j["run"].erase("check_finite");
  }
  if (j.contains("monitors")) j["monitors"].erase("raster_neurons");
  j["run"]["duration_ms"] = cfg.duration_ms;
  j["run"]["seed"] = cfg.seed;
  const std::string canonical = j.dump();  // keys sorted: nlohmann::json objects are ordered maps
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(io::xxh64(canonical.data(), canonical.size())));
  return std::string("config xxh64 ") + hex;
}

// Memory the run may use on `device`: available RAM, or the GPU's memory.
double available_memory(const std::string& device) {
  if (device == "cuda") {
    const auto info = brain::build_info();
    return info.devices.empty() ? 0.0 : 0.9 * static_cast<double>(info.devices.front().total_memory_bytes);
  }
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (meminfo >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024.0;
  }
  return std::numeric_limits<double>::infinity();  // unknown: do not refuse
}

std::string gb(double bytes) {
  std::ostringstream s;
  s.precision(3);
  s << bytes / 1e9 << " GB";
  return s.str();
}

// Stored synapses of CSR projections, the expected number of JIT ones (never stored), and
// those of all-to-all, pool-to-pool, dense and one-to-one couplings (computed, not stored).
int64_t count_synapses(torch::nn::Module& net) {
  double total = 0;
  for (const auto& module : net.modules()) {
    if (const auto csr = std::dynamic_pointer_cast<brain::CsrComm>(module)) {
      total += static_cast<double>(csr->indices().numel());
    } else if (const auto jit = std::dynamic_pointer_cast<brain::JitComm>(module)) {
      total += jit->prob() * static_cast<double>(jit->n_pre()) * static_cast<double>(jit->n_post());
    } else if (std::dynamic_pointer_cast<brain::AllToAll>(module) || std::dynamic_pointer_cast<brain::GroupComm>(module) ||
               std::dynamic_pointer_cast<brain::DenseComm>(module)) {
      const auto& comm = static_cast<const brain::Comm&>(*module);
      total += static_cast<double>(comm.n_pre()) * static_cast<double>(comm.n_post());
    } else if (const auto one = std::dynamic_pointer_cast<brain::OneToOne>(module)) {
      total += static_cast<double>(one->n_pre());
    }
  }
  return static_cast<int64_t>(std::llround(total));
}

// The process's peak resident memory (Linux: VmHWM), in MB; 0 where it cannot be read.
double peak_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0.0;
}

}  // namespace

// ", N steps replayed from CUDA graphs" when any were (the summary says why not otherwise).
std::string graphs_note(const RunResult& r) {
  if (r.replayed_steps == 0) return "";
  return ", " + std::to_string(r.replayed_steps) + " steps replayed from " +
         (r.graphs == "cuda" ? std::string("CUDA graphs") : "emulated graphs");
}

// What every model's run shares: step, progress, engine, guards and checkpoints.
RunnerOptions runner_options(const RunConfig& cfg, const RunArgs& a, const std::string& identity, int progress) {
  RunnerOptions opt;
  opt.dt = cfg.dt_ms;
  opt.progress = progress;
  opt.engine = parse_engine(cfg.engine);
  opt.graphs = parse_graphs(cfg.graphs);
  opt.check_finite = cfg.check_finite;
  opt.identity = identity;
  if (!a.checkpoint.empty()) {
    opt.checkpoint_path = a.checkpoint;
    opt.checkpoint_every = a.checkpoint_every.value_or(10000);
  }
  return opt;
}

// Runs the configured duration, or finishes the run saved in --resume; false (with the reason
// printed) when that checkpoint cannot be resumed.
bool run_or_resume(Runner& runner, const RunArgs& a, const RunConfig& cfg, RunResult& r) {
  if (a.resume.empty()) {
    std::error_code ec;
    if (!a.checkpoint.empty() && std::filesystem::exists(a.checkpoint, ec)) {
      // Often a rerun after a crash that meant to continue: say so before the old one is gone.
      std::cerr << "brain run: note: " << a.checkpoint << " already exists; this fresh run replaces it at its first "
                << "checkpoint (--resume " << a.checkpoint << " continues the run it holds)\n";
    }
    r = runner.run(cfg.duration_ms);
    return true;
  }
  try {
    r = runner.resume(a.resume);
    return true;
  } catch (const io::CheckpointError& e) {
    std::cerr << "brain run: cannot resume: " << e.what() << "\n";
    return false;
  }
}

// The rate models (cann, esn): no spikes; their own outputs and summaries.
int run_rate_model(const RunConfig& cfg, const RunArgs& a, const std::string& identity, const MemoryEstimate& need,
                   double have) {
  const bool esn = cfg.model == "esn";
  const std::string label = esn ? "Echo-state network (Lorenz)" : "CANN";
  std::string refused;
  if (dist::launched_distributed()) refused = "distributed runs are";
  else if (a.save_network) refused = "--save-network is";
  else if (esn && (!a.checkpoint.empty() || !a.resume.empty())) refused = "--checkpoint and --resume are";
  else if (esn && a.duration) refused = "--duration is (the length is network.washout + train_steps + test_steps)";
  else if (esn && a.engine) refused = "--engine is";
  if (!refused.empty()) {
    std::cerr << "brain run: " << refused << " not supported for the " << cfg.model << " model\n";
    return kExitUsage;
  }
  const int64_t units = cfg.exc_size();
  if (a.validate_only) {
    std::cout << a.config << ": valid; " << label << " of " << units << " units";
    if (esn) std::cout << ", " << cfg.esn.washout + cfg.esn.train_steps + cfg.esn.test_steps << " samples";
    else std::cout << ", " << cfg.duration_ms << " ms";
    std::cout << " on " << cfg.device << "; estimated memory " << gb(need.total()) << " of " << gb(have)
              << " available; " << identity << "\n";
    return kExitOk;
  }
  const c10::Device device(cfg.device == "cuda" ? c10::kCUDA : c10::kCPU);
  torch::NoGradGuard no_grad;
  std::filesystem::create_directories(a.out);
  nlohmann::json summary;
  summary["model"] = label + " (" + a.config + ")";
  summary["device"] = cfg.device;
  summary["seed"] = cfg.seed;
  summary["units"] = units;
  summary["config_identity"] = identity;
  summary["estimated_memory_bytes"] = need.total();
  summary["deterministic"] = a.deterministic;

  if (esn) {
    const auto& s = cfg.esn;
    std::cerr << label << ": " << s.size << " units (" << s.connectivity << " recurrent weights, density "
              << s.density << "), predicting " << s.horizon << " samples ahead\n";
    const EsnResult r = run_esn_lorenz(s, cfg.seed, device, cfg.record_units);
    io::save_npz(a.out + "/monitors.npz", {{"target", r.target},
                                            {"prediction", r.prediction},
                                            {"states", r.states},
                                            {"t", torch::arange(r.target.size(0), torch::kDouble) * s.lorenz_dt}});
    summary["samples"] = s.washout + s.train_steps + s.test_steps;
    summary["train_nrmse"] = r.train_nrmse;
    summary["test_nrmse"] = r.test_nrmse;
    summary["persistence_nrmse"] = r.persistence_nrmse;
    summary["reservoir_seconds"] = r.reservoir_seconds;
    summary["fit_seconds"] = r.fit_seconds;
    summary["peak_rss_mb"] = peak_rss_mb();
    io::write_text(a.out + "/summary.json", summary.dump(2) + "\n");
    // The test part of x(t): target and prediction against Lorenz time.
    io::XYSeries target{"target x", {}, {}, "#333333", "line"}, pred{"prediction x", {}, {}, "#d62728", "line"};
    const auto ta = r.target.accessor<double, 2>();
    const auto pa = r.prediction.accessor<double, 2>();
    double lo = 0, hi = 0;
    for (int64_t i = 0; i < r.target.size(0); ++i) {
      const double t = i * s.lorenz_dt;
      target.x.push_back(t), target.y.push_back(ta[i][0]);
      pred.x.push_back(t), pred.y.push_back(pa[i][0]);
      lo = std::min({lo, ta[i][0], pa[i][0]}), hi = std::max({hi, ta[i][0], pa[i][0]});
    }
    const double pad = 0.05 * (hi - lo + 1e-9);
    io::write_text(a.out + "/prediction.svg",
                   io::xy_svg({target, pred}, 0, std::max(1, static_cast<int>(r.target.size(0)) - 1) * s.lorenz_dt,
                              lo - pad, hi + pad, label + ": test set, " + std::to_string(s.horizon) + " samples ahead",
                              "Lorenz time", "x (normalised)"));
    std::cout << label << ", " << s.size << " units, " << cfg.device << "\n";
    std::cout << "  reservoir " << r.reservoir_seconds << " s, ridge fit " << r.fit_seconds << " s\n";
    std::cout << "  NRMSE: train " << r.train_nrmse << ", test " << r.test_nrmse << " (predicting no change: "
              << r.persistence_nrmse << ")\n";
    std::cout << "  outputs: " << a.out << "/{monitors.npz, summary.json, prediction.svg}\n";
    return kExitOk;
  }

  const auto& s = cfg.cann;
  const auto t_build = std::chrono::steady_clock::now();
  auto net = build_cann_network(s, cfg.seed, device);
  net->reset_state();
  const double build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_build).count();
  RunnerOptions opt = runner_options(cfg, a, identity, a.progress);
  for (const char* key : {"stimulus.position", "stimulus.active", "bump.position", "bump.error", "bump.height"}) {
    opt.monitors.push_back({key, std::nullopt, 1, "", std::nullopt});
  }
  if (cfg.activity_every > 0) opt.monitors.push_back({"cann.u", std::nullopt, cfg.activity_every, "", std::nullopt});
  std::cerr << label << ": " << s.size << " units on a ring, built in " << build_s << " s on " << cfg.device << "\n";
  Runner runner(net, opt);
  RunResult r;
  if (!run_or_resume(runner, a, cfg, r)) return kExitUsage;
  r.save(a.out);
  const double sim_s = r.steps * r.dt / 1000.0;
  nlohmann::json run_summary = nlohmann::json::parse(r.summary_json());
  run_summary.update(summary);
  summary = run_summary;
  summary["build_seconds"] = build_s;
  summary["seconds_per_simulated_second"] = r.wall_seconds / sim_s;
  summary["peak_rss_mb"] = peak_rss_mb();
  // Tracking: the error while the stimulus is on, after 20 tau for the bump to form.
  const at::Tensor t = r.times.at("bump.error").to(torch::kDouble);
  const at::Tensor err = r.values.at("bump.error").to(torch::kDouble).flatten();
  const at::Tensor height = r.values.at("bump.height").to(torch::kDouble).flatten();
  const at::Tensor pos = r.values.at("bump.position").to(torch::kDouble).flatten();
  const at::Tensor active = r.values.at("stimulus.active").to(torch::kDouble).flatten() > 0;
  const at::Tensor settled = (t >= s.stim_on + 20 * s.tau) & active;
  nlohmann::json tracking = nullptr, memory = nullptr;
  if (settled.any().item<bool>()) {
    const at::Tensor e = err.masked_select(settled).abs();
    tracking = {{"mean_abs_error_rad", e.mean().item<double>()},
                {"max_abs_error_rad", e.max().item<double>()},
                {"speed_rad_per_ms", s.speed}};
    summary["tracking"] = tracking;
  }
  // Persistence: is the bump still there, and where, after the stimulus went off?
  const at::Tensor off = (t >= s.stim_off).nonzero().flatten();
  if (off.numel() > 1) {
    const int64_t i0 = off[0].item<int64_t>(), i1 = t.size(0) - 1;
    const double h0 = height[std::max<int64_t>(i0 - 1, 0)].item<double>(), h1 = height[i1].item<double>();
    const double drift = std::remainder(pos[i1].item<double>() - pos[std::max<int64_t>(i0 - 1, 0)].item<double>(), 2 * M_PI);
    memory = {{"height_at_stim_off", h0}, {"height_at_end", h1}, {"persists", h1 > 0.5 * h0 && h0 > 0},
              {"drift_rad", drift}, {"over_ms", (i1 - i0 + 1) * r.dt}};
    summary["persistence"] = memory;
  }
  io::write_text(a.out + "/summary.json", summary.dump(2) + "\n");
  if (cfg.activity_every > 0) {
    io::write_text(a.out + "/activity.svg",
                   io::heatmap_svg(r.values.at("cann.u").reshape({-1, s.size}), r.t_start, r.dt * cfg.activity_every,
                                   -M_PI, M_PI, label + ": activity u over the ring", "preferred position (rad)"));
  }
  io::XYSeries stim{"stimulus", {}, {}, "#333333", "dots"}, bump{"bump (decoded)", {}, {}, "#d62728", "dots"};
  const auto sp = r.values.at("stimulus.position").to(torch::kDouble).flatten();
  const int64_t stride = std::max<int64_t>(1, t.size(0) / 3000);
  const auto act = active.to(torch::kDouble);
  for (int64_t i = 0; i < t.size(0); i += stride) {
    const double ti = t[i].item<double>(), zi = sp[i].item<double>();
    if (act[i].item<double>() > 0) stim.x.push_back(ti), stim.y.push_back(zi);
    bump.x.push_back(ti), bump.y.push_back(pos[i].item<double>());
  }
  io::write_text(a.out + "/positions.svg",
                 io::xy_svg({stim, bump}, r.t_start, r.t_start + std::max<int64_t>(r.steps, 1) * r.dt, -M_PI, M_PI,
                            label + ": stimulus and bump positions", "time (ms)", "position (rad)"));
  std::cout << label << ", " << s.size << " units, " << cfg.device << "\n";
  std::cout << "  simulated " << r.steps * r.dt << " ms in " << r.wall_seconds << " s (" << r.wall_seconds / sim_s
            << " s per simulated second, " << r.engine << " engine" << graphs_note(r) << "), build " << build_s << " s\n";
  if (!tracking.is_null()) {
    std::cout << "  tracking: mean |error| " << tracking["mean_abs_error_rad"].get<double>() << " rad at speed "
              << s.speed << " rad/ms\n";
  }
  if (!memory.is_null()) {
    std::cout << "  after the stimulus: the bump " << (memory["persists"].get<bool>() ? "persists" : "decays")
              << " (height " << memory["height_at_stim_off"].get<double>() << " -> "
              << memory["height_at_end"].get<double>() << ", drift " << memory["drift_rad"].get<double>() << " rad over "
              << memory["over_ms"].get<double>() << " ms)\n";
  }
  std::cout << "  outputs: " << a.out << "/{monitors.npz, summary.json, positions.svg"
            << (cfg.activity_every > 0 ? ", activity.svg" : "") << "}\n";
  return kExitOk;
}

int run(const std::vector<std::string>& args) {
  for (const auto& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::cout << kRunUsage;
      return kExitOk;
    }
  }
  RunArgs a;
  if (const std::string err = parse_args(args, a); !err.empty()) {
    std::cerr << "brain run: " << err << "\n" << kRunUsage;
    return kExitUsage;
  }
  std::ifstream in(a.config);
  if (!in) {
    std::cerr << "brain run: cannot read '" << a.config << "'\n";
    return kExitUsage;
  }
  std::stringstream text;
  text << in.rdbuf();
  RunConfig cfg;
  try {
    cfg = parse_run_config(text.str());
  } catch (const ConfigError& e) {
    std::cerr << "brain run: " << a.config << ": " << e.what() << "\n";
    return kExitUsage;
  }
  if (a.duration) cfg.duration_ms = *a.duration;
  if (a.device) cfg.device = *a.device;
  if (a.seed) cfg.seed = *a.seed;
  if (a.engine) cfg.engine = *a.engine;
  if (!a.check_finite) cfg.check_finite = false;
  if (a.out.empty()) a.out = "out/" + std::filesystem::path(a.config).stem().string();
  if (a.deterministic) {
    // cuBLAS reads this when it creates its handle, so it must be set before the first matmul.
    setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
    at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  }
  if (cfg.device == "cuda" && !torch::cuda::is_available()) {
    std::cerr << "brain run: --device cuda, but no CUDA device is available here\n";
    return kExitUsage;
  }
  const std::string identity = config_identity(text.str(), cfg);
  const MemoryEstimate need = estimate_run_memory(cfg);
  const double have = available_memory(cfg.device);
  if (cfg.rate_model()) {
    if (a.resource_check && need.total() > have) {
      std::cerr << "brain run: " << a.config << ": this run needs about " << gb(need.total()) << ", more than the "
                << gb(have) << " available on " << cfg.device << "; --no-resource-check runs it anyway.\n";
      return kExitUsage;
    }
    return run_rate_model(cfg, a, identity, need, have);
  }
  const std::string label = cfg.model == "coba_hh"           ? "COBA-HH"
                            : cfg.model == "decision_making" ? "Wang 2002 decision-making"
                            : cfg.network.output == "coba"   ? "COBA E/I"
                                                             : "CUBA E/I";
  const int64_t n_exc = cfg.exc_size(), n_inh = cfg.inh_size();
  if (a.resource_check && need.total() > have) {
    std::cerr << "brain run: " << a.config << ": this run needs about " << gb(need.total()) << " (connectivity "
              << gb(need.connectivity + need.build_peak) << ", monitors " << gb(need.monitors) << ", states "
              << gb(need.states) << "), more than the " << gb(have) << " available on " << cfg.device << ".\n"
              << "  Try JIT connectivity (\"network\": {\"connectivity\": \"jit\"}: no synapse stored), fewer "
                 "monitors (\"monitors\": {\"spikes\": false, \"voltage_neurons\": []}) or a shorter duration; "
                 "--no-resource-check runs it anyway.\n";
    return kExitUsage;
  }
  if (a.validate_only) {
    std::cout << a.config << ": valid; " << label << " network of " << n_exc + n_inh << " neurons, " << cfg.duration_ms << " ms on " << cfg.device << "; estimated memory "
              << gb(need.total()) << " of " << gb(have) << " available; " << identity << "\n";
    return kExitOk;
  }
  const c10::Device device(cfg.device == "cuda" ? c10::kCUDA : c10::kCPU);
  torch::NoGradGuard no_grad;  // simulation: no autograd bookkeeping

  // A distributed run (torchrun): this process simulates its rank's share of the network.
  std::shared_ptr<dist::Collective> comm;
  if (dist::launched_distributed()) {
    std::string refused;
    if (a.save_network) refused = "--save-network is";
    else if (cfg.device != "cpu") refused = "--device cuda (NCCL) is";
    else if (cfg.engine == "modules") refused = "the modules engine is";
    else if (cfg.model != "ei_network") refused = "models other than ei_network are";
    if (!refused.empty()) {
      std::cerr << "brain run: " << refused << " not supported in distributed runs yet\n";
      return kExitUsage;
    }
    try {
      comm = dist::connect_from_env(std::chrono::milliseconds(static_cast<int64_t>(a.dist_timeout_s * 1000)));
    } catch (const std::exception& e) {
      std::cerr << "brain run: " << e.what() << "\n";
      return kExitFailure;
    }
  }
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->world_size() : 1;
  const bool leader = rank == 0;

  const auto t_build = std::chrono::steady_clock::now();
  std::shared_ptr<DynSysGroup> net;
  if (cfg.model == "coba_hh") net = build_coba_hh_network(cfg.coba_hh, cfg.seed, device, cfg.dt_ms);
  else if (cfg.model == "decision_making") net = build_decision_network(cfg.decision, cfg.seed, device, cfg.dt_ms);
  else net = build_ei_network_shard(cfg.network, cfg.seed, device, cfg.dt_ms, rank, world);
  net->reset_state();
  const double build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_build).count();
  int64_t synapses = count_synapses(*net);
  if (a.save_network) {
    std::filesystem::create_directories(a.out);
    std::vector<std::pair<std::string, at::Tensor>> arrays;
    for (const auto& item : net->named_buffers()) {
      const auto& key = item.key();  // e.g. "E2I.comm.indptr"
      for (const char* field : {".comm.indptr", ".comm.indices"}) {
        const std::string f(field);
        if (key.size() > f.size() && key.compare(key.size() - f.size(), f.size(), f) == 0) {
          arrays.emplace_back(key.substr(0, key.size() - f.size()) + f.substr(5), item.value());
        }
      }
    }
    for (const auto& [name, child] : net->children()) {
      const auto proj = std::dynamic_pointer_cast<AlignPostProj>(child);
      if (proj && proj->has_synapse_delays()) arrays.emplace_back(name + ".delay_steps", proj->synapse_delays()->delays());
    }
    arrays.emplace_back("E.V0", net->find_state("E.V"));
    arrays.emplace_back("I.V0", net->find_state("I.V"));
    io::save_npz(a.out + "/network.npz", arrays);
  }

  RunnerOptions opt = runner_options(cfg, a, identity, leader ? a.progress : 0);
  if (cfg.model == "ei_network" && cfg.network.input_current != 0) {
    const auto drive = torch::tensor(cfg.network.input_current);
    opt.inputs = {{"E.input", drive, false, RunInput::Op::Set}, {"I.input", drive, false, RunInput::Op::Set}};
  }
  // In a distributed run each rank records its own neurons: columns[key][r] are the global
  // indices rank r records, wanted[key] those of the merged recording, in order.
  std::map<std::string, std::vector<std::vector<int64_t>>> columns;
  std::map<std::string, std::vector<int64_t>> wanted;
  if (cfg.monitor_spikes) {
    opt.monitors.push_back({"E.spike", std::nullopt, 1, "", at::kBool});
    opt.monitors.push_back({"I.spike", std::nullopt, 1, "", at::kBool});
    for (const auto& [key, n] : {std::pair<std::string, int64_t>{"E.spike", n_exc}, {"I.spike", n_inh}}) {
      for (int r = 0; r < world; ++r) {
        const dist::Block b = dist::block_of(n, r, world);
        std::vector<int64_t> idx;
        for (int64_t i = 0; i < b.size; ++i) idx.push_back(b.offset + i);
        columns[key].push_back(idx);
      }
      for (int64_t i = 0; i < n; ++i) wanted[key].push_back(i);
    }
  }
  if (!cfg.voltage_neurons.empty()) {
    for (int r = 0; r < world; ++r) {
      const dist::Block b = dist::block_of(n_exc, r, world);
      std::vector<int64_t> owned;
      for (int64_t i : cfg.voltage_neurons) {
        if (i >= b.offset && i < b.offset + b.size) owned.push_back(i);
      }
      columns["E.V"].push_back(owned);
    }
    wanted["E.V"] = cfg.voltage_neurons;
    std::vector<int64_t> local;  // this rank's recorded neurons, as indices into its block
    for (int64_t i : columns["E.V"][rank]) local.push_back(i - dist::block_of(n_exc, rank, world).offset);
    opt.monitors.push_back({"E.V", torch::tensor(local, torch::kLong), 1, "", std::nullopt});
  }
  // The pools' rates (A, B, non-selective, I), four numbers per step.
  if (cfg.model == "decision_making") opt.monitors.push_back({"rates.rate", std::nullopt, 1, "", std::nullopt});
  if (comm) {
    auto part = std::make_shared<dist::Partition>();
    part->comm = comm;
    part->global_sizes = {{"E", n_exc}, {"I", n_inh}};
    part->encoding = a.dist_encoding;
    // The runner merges the recordings on rank 0 and writes checkpoints any number of
    // processes can resume.
    part->merge = true;
    for (const auto& m : opt.monitors) part->monitor_columns[m.key()] = {columns.at(m.key()), wanted.at(m.key())};
    opt.partition = part;
    try {
      synapses = comm->all_reduce_sum(torch::tensor({synapses}, torch::kLong))[0].item<int64_t>();
    } catch (const dist::CommError& e) {
      std::cerr << "brain run: " << e.what() << "\n";
      return kExitFailure;
    }
  }
  if (leader) {
    std::cerr << label << " network: " << n_exc << " + " << n_inh
              << (cfg.model == "coba_hh" ? " Hodgkin-Huxley" : " LIF") << " neurons, " << synapses
              << (cfg.model == "decision_making" ? " synapses (all-to-all by pools, none stored)" : " synapses")
              << ", built in " << build_s << " s on " << cfg.device;
    if (comm) std::cerr << ", split over " << comm->describe();
    std::cerr << "\n";
  }
  if (opt.engine == Engine::Fast || comm) {
    if (const std::string why = fast_engine_unsupported(*net, opt); !why.empty()) {
      std::cerr << "brain run: the fast engine cannot run this network: " << why << "\n";
      return kExitUsage;
    }
  }
  Runner runner(net, opt);
  RunResult r;
  nlohmann::json distributed = nullptr;
  try {
    if (!run_or_resume(runner, a, cfg, r)) return kExitUsage;
    if (comm) {
      // The runner merged the recordings on rank 0 and summed the spike counts.
      const auto& st = opt.partition->stats;
      double slowest = 0, most_in_exchange = 0;
      for (const auto& t : comm->all_gather(torch::tensor({r.wall_seconds, st.seconds}, torch::kDouble))) {
        slowest = std::max(slowest, t[0].item<double>());
        most_in_exchange = std::max(most_in_exchange, t[1].item<double>());
      }
      r.wall_seconds = slowest;
      distributed = {{"processes", world},
                     {"backend", comm->describe()},
                     {"exchange_every_steps", st.exchanges > 0 ? st.steps / st.exchanges : 0},
                     {"exchanges", st.exchanges},
                     {"exchanges_in_one_round", st.inline_rounds},
                     {"bytes_sent_by_rank0", st.bytes_sent},
                     {"bytes_per_step_by_rank0", st.steps > 0 ? static_cast<double>(st.bytes_sent) / st.steps : 0.0},
                     {"messages_as_indices", st.index_messages},
                     {"messages_as_masks", st.mask_messages},
                     {"exchange_seconds_slowest_rank", most_in_exchange}};
    }
  } catch (const dist::CommError& e) {
    std::cerr << "brain run: " << e.what() << "\n";
    return kExitFailure;
  }
  if (!leader) return kExitOk;

  std::filesystem::create_directories(a.out);
  r.save(a.out);
  nlohmann::json summary = nlohmann::json::parse(r.summary_json());
  const double sim_s = r.steps * r.dt / 1000.0;
  nlohmann::json rates = nlohmann::json::object();
  for (const auto& [pop, n] : {std::pair<const char*, int64_t>{"E", n_exc}, {"I", n_inh}}) {
    rates[pop] = static_cast<double>(r.spike_counts.at(pop)) / (static_cast<double>(n) * sim_s);
  }
  summary["model"] = label + " (" + a.config + ")";
  summary["device"] = cfg.device;
  summary["seed"] = cfg.seed;
  summary["neurons"] = n_exc + n_inh;
  summary["synapses"] = synapses;
  summary["build_seconds"] = build_s;
  summary["seconds_per_simulated_second"] = r.wall_seconds / sim_s;
  summary["peak_rss_mb"] = peak_rss_mb();
  summary["config_identity"] = identity;
  summary["estimated_memory_bytes"] = need.total();
  summary["deterministic"] = a.deterministic;
  if (!a.resume.empty()) summary["resumed_from"] = a.resume;
  if (!opt.checkpoint_path.empty()) summary["checkpoint"] = {{"path", opt.checkpoint_path}, {"every_steps", opt.checkpoint_every}};
  summary["rates_hz"] = rates;
  if (!distributed.is_null()) summary["distributed"] = distributed;
  nlohmann::json decision = nullptr;
  if (cfg.model == "decision_making") {
    // The choice: the selective pool with the higher rate over the last 200 ms of the run.
    const at::Tensor pools = r.values.at("rates.rate");
    const int64_t tail = std::min<int64_t>(pools.size(0), std::llround(200.0 / r.dt));
    const at::Tensor mean = pools.narrow(0, pools.size(0) - tail, tail).to(torch::kDouble).mean(0);
    decision = {{"coherence_percent", cfg.decision.coherence.front()},
                {"rate_A_hz", mean[0].item<double>()},
                {"rate_B_hz", mean[1].item<double>()},
                {"rate_nonselective_hz", mean[2].item<double>()},
                {"rate_I_hz", mean[3].item<double>()},
                {"choice", mean[0].item<double>() >= mean[1].item<double>() ? "A" : "B"},
                {"over_last_ms", static_cast<double>(tail) * r.dt}};
    summary["decision"] = decision;
  }
  io::write_text(a.out + "/summary.json", summary.dump(2) + "\n");

  if (cfg.monitor_spikes) {
    auto head = [&](const at::Tensor& s, int64_t n) { return s.narrow(1, 0, std::min<int64_t>(n, s.size(1))); };
    io::write_text(a.out + "/raster.svg",
                   io::raster_svg({{"E", head(r.values.at("E.spike"), cfg.raster_neurons), "#1f77b4"},
                                   {"I", head(r.values.at("I.spike"), cfg.raster_neurons), "#d62728"}},
                                  r.t_start, r.dt, label + " network: spike raster"));
  }
  if (!cfg.voltage_neurons.empty()) {
    std::vector<std::string> names;
    for (auto i : cfg.voltage_neurons) names.push_back("E[" + std::to_string(i) + "]");
    io::write_text(a.out + "/traces.svg", io::traces_svg(r.times.at("E.V"), r.values.at("E.V"), names,
                                                         label + " network: membrane potential", "V (mV)"));
  }

  std::cout << label << " network, " << n_exc + n_inh << " neurons, " << synapses << " synapses, " << cfg.device
            << "\n";
  std::cout << "  simulated " << r.steps * r.dt << " ms in " << r.wall_seconds << " s ("
            << r.wall_seconds / sim_s << " s per simulated second, " << r.engine << " engine" << graphs_note(r) << "), build " << build_s
            << " s\n";
  if (comm) {
    std::cout << "  split over " << world << " processes: " << distributed["exchanges"].get<int64_t>()
              << " spike exchanges, " << distributed["bytes_per_step_by_rank0"].get<double>()
              << " bytes per step sent by rank 0, " << distributed["exchange_seconds_slowest_rank"].get<double>()
              << " s in exchanges (slowest rank)\n";
  }
  std::cout << "  rates: E " << rates["E"].get<double>() << " Hz, I " << rates["I"].get<double>() << " Hz\n";
  if (!decision.is_null()) {
    std::cout << "  decision (coherence " << decision["coherence_percent"].get<double>() << "%): pool "
              << decision["choice"].get<std::string>() << " (A " << decision["rate_A_hz"].get<double>() << " Hz, B "
              << decision["rate_B_hz"].get<double>() << " Hz over the last " << decision["over_last_ms"].get<double>()
              << " ms)\n";
  }
  std::cout << "  outputs: " << a.out << "/{monitors.npz, summary.json"
            << (cfg.monitor_spikes ? ", raster.svg" : "") << (cfg.voltage_neurons.empty() ? "" : ", traces.svg") << "}\n";
  return kExitOk;
}

}  // namespace brain::cli
