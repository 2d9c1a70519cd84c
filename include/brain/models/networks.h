// Reference networks (models/), built in C++ from typed specs; models/*.json hold their
// configurations for `brain run`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <c10/core/Device.h>

#include <brain/dyn/system.h>
#include <brain/models/neurons.h>

namespace brain {

// The Vogels-Abbott E/I network (as in Brette et al. 2007 and the Brian2 benchmarks): an
// excitatory and an inhibitory LIF population, all four projections with connection
// probability p, exponential synapses, conductance-based (COBA) or current-based (CUBA)
// outputs. Children: "E", "I", then "E2E", "E2I", "I2E", "I2I".
struct EINetSpec {
  std::string output = "coba";  // "coba" or "cuba"
  int64_t n_exc = 3200;
  int64_t n_inh = 800;
  double p = 0.02;
  double w_exc = 0.6;     // COBA: conductance in units of the leak; CUBA: mV
  double w_inh = 6.7;     // CUBA: negative for inhibition
  double tau_exc = 5.0;   // ms
  double tau_inh = 10.0;  // ms
  double E_exc = 0.0;     // mV, COBA only
  double E_inh = -80.0;   // mV, COBA only
  double delay_ms = 0.0;
  LifParams neuron{-60.0, -60.0, -50.0, 20.0, 1.0, 5.0, {}, true};
  std::string V_init = "normal";  // "normal" (mean, std) or "uniform" (low, high)
  double V_init_a = -55.0;
  double V_init_b = 2.0;
  double input_current = 20.0;  // mV, constant drive of both populations (runner input)
  std::string dtype = "float32";
  bool event = true;  // event-driven propagation
  // "csr": stored synapses without autapses (fixed_prob); "jit": JIT connectivity regenerated
  // every step (JitComm; O(N) memory, autapses possible with probability p).
  std::string connectivity = "csr";
  std::string method = "exp_euler";  // neurons and synapses: "exp_euler" or "euler"
};

// Builds the network on `device`; connectivity and initial potentials depend only on seed.
BRAIN_API std::shared_ptr<DynSysGroup> build_ei_network(const EINetSpec& spec, uint64_t seed, c10::Device device,
                                                       double dt_ms = 0.1);

// One rank's share of that network, for a run split over `world` processes (brain/dist/dist.h):
// "E" and "I" hold the neurons dist::block_of gives the rank, the projections every synapse
// onto them from the whole presynaptic population (columns of the same CSR, or a window of the
// same JIT matrix). Initial potentials are drawn for the whole population and sliced, so the
// shares of all ranks make up build_ei_network's network exactly. Run it on the fast engine
// with RunnerOptions::partition. rank 0 of 1 is build_ei_network.
BRAIN_API std::shared_ptr<DynSysGroup> build_ei_network_shard(const EINetSpec& spec, uint64_t seed, c10::Device device,
                                                             double dt_ms, int rank, int world);

}  // namespace brain
