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

struct RunConfig {
  std::string model = "ei_network";
  EINetSpec network;
  double duration_ms = 1000.0;
  double dt_ms = 0.1;
  uint64_t seed = 42;
  std::string device = "cpu";
  std::string engine = "auto";  // "auto", "fast" or "modules" (brain/dyn/runner.h)
  bool check_finite = true;     // stop when a state becomes NaN or Inf (RunnerOptions)
  bool monitor_spikes = true;
  std::vector<int64_t> voltage_neurons{0, 1, 2, 3, 4};  // of the excitatory population
  int64_t raster_neurons = 400;                         // per population, in the picture
};

// Parses and validates a configuration (JSON text). Fields left out keep their defaults;
// unknown fields are errors.
BRAIN_API RunConfig parse_run_config(const std::string& json_text);

}  // namespace brain
