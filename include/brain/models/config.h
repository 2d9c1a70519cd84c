// JSON configurations for `brain run` (models/*.json). Every field is validated; a problem
// raises ConfigError whose message starts with its JSON pointer, e.g.
//   /network/p: expected a number in [0, 1], got 1.5
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <brain/models/networks.h>

namespace brain {

class BRAIN_API ConfigError : public std::runtime_error {
 public:
  ConfigError(const std::string& path, const std::string& what)
      : std::runtime_error((path.empty() ? std::string("/") : path) + ": " + what), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// "model" picks the network (models/*.json): "ei_network" (COBA/CUBA, EINetSpec),
// "coba_hh" (CobaHHSpec), "decision_making" (Wang 2002, DecisionNetSpec, one trial of
// coherence network.coherence), "cann" (CannSpec) or "esn" (EsnSpec, the Lorenz task);
// "network" then holds that spec's fields. The rate models (cann, esn) have their own
// monitors; the esn's length is network.train_steps + test_steps, not run.duration_ms.
struct RunConfig {
  std::string model = "ei_network";
  EINetSpec network;
  CobaHHSpec coba_hh;
  DecisionNetSpec decision;
  CannSpec cann;
  EsnSpec esn;
  bool rate_model() const { return model == "cann" || model == "esn"; }
  // Size of the model's excitatory population "E" (voltage monitors index it); for the rate
  // models, their number of units, and 0 inhibitory.
  int64_t exc_size() const;
  int64_t inh_size() const;
  double duration_ms = 1000.0;
  double dt_ms = 0.1;
  uint64_t seed = 42;
  std::string device = "cpu";
  std::string engine = "auto";  // "auto", "fast" or "modules" (brain/dyn/runner.h)
  std::string graphs = "auto";  // CUDA graphs for the module engine: "auto", "off" or "emulate"
  bool check_finite = true;     // stop when a state becomes NaN or Inf (RunnerOptions)
  bool monitor_spikes = true;
  std::vector<int64_t> voltage_neurons{0, 1, 2, 3, 4};  // of the excitatory population
  int64_t raster_neurons = 400;                         // per population, in the picture
  int64_t activity_every = 10;  // cann: record u every so many steps (0: not at all)
  int64_t record_units = 20;    // esn: reservoir units whose states are written
};

// Parses and validates a configuration (JSON text). Fields left out keep their defaults;
// unknown fields are errors.
BRAIN_API RunConfig parse_run_config(const std::string& json_text);

// The memory a run of `config` needs, in bytes, estimated before anything is allocated
// (`brain run` refuses a run that does not fit, before building it). Deliberately generous.
struct MemoryEstimate {
  double connectivity = 0;  // stored synapses (CSR indices and row pointers)
  double build_peak = 0;    // temporaries while the largest projection is built
  double states = 0;        // neuron and synapse states, delay buffers
  double monitors = 0;      // recordings, and once more while they are gathered and written
  double total() const { return connectivity + build_peak + states + monitors; }
};
BRAIN_API MemoryEstimate estimate_run_memory(const RunConfig& config);

}  // namespace brain
