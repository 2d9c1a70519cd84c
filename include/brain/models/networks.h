// Reference networks (models/), built in C++ from typed specs; models/*.json hold their
// configurations for `brain run`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <brain/csr.h>
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
  double delay_ms = 0.0;  // every synapse's delay, rounded to steps
  // Per-synapse delays in place of delay_ms (CSR connectivity): each synapse's delay drawn
  // uniformly from [delay_ms_low, delay_ms_high] and rounded to steps
  // (AlignPostProj::set_synapse_delays). The draw is a pure function of the seed, the pathway
  // and the synapse's global (row, column) (synapse_delay_steps), so a distributed rank's
  // shard holds the delays one process gives the same synapses.
  // JSON: "delay_ms": {"dist": "uniform", "low": ..., "high": ...}.
  bool delay_per_synapse = false;
  double delay_ms_low = 0.0, delay_ms_high = 0.0;
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

// Delays, in steps, for the synapses of `conn` (a block of columns starting at global column
// col_offset, as fixed_prob_columns builds; rows are global): synapse (i, j) gets
// round(min(high_ms, low_ms + (high_ms - low_ms) u) / dt_ms), u = m53(w0, w1) 2^-53 in [0, 1) from
// Philox4x32-10 with counter (i, j, 0x44454C41 "DELA", 0) and key splitmix64(seed ^ "DELAYS!!")
// (kernels/jitc/jitc_gen.h, kernels/rng/poisson_draw.h). A pure function of (seed, i, j): the
// same delays on every device and in every shard. int64 [nnz] on the CPU, in conn's order.
BRAIN_API at::Tensor synapse_delay_steps(const CsrMatrix& conn, int64_t col_offset, uint64_t seed, double low_ms,
                                         double high_ms, double dt_ms);

// The COBA-HH network (Brette et al. 2007, benchmark 3; Brian2's COBAHH example): 3200
// excitatory and 800 inhibitory Hodgkin-Huxley neurons with Traub-Miles channels
// (CondNeuGroup: NaChannelTM, KChannelTM, LeakChannel), random connections with probability p,
// exponential conductance synapses. No external drive: the random initial potentials and
// conductances start self-sustained activity. Units per membrane area: mV, ms, mS/cm^2,
// uF/cm^2 (the benchmark's 20000 um^2 cell: 6 nS -> 0.03 mS/cm^2, 67 nS -> 0.335 mS/cm^2).
// Children: "E", "I", then "E2E", "E2I", "I2E", "I2I"; a spike is an upward crossing of V_th.
struct CobaHHSpec {
  int64_t n_exc = 3200;
  int64_t n_inh = 800;
  double p = 0.02;
  double w_exc = 0.03, w_inh = 0.335;  // mS/cm^2 per spike
  double tau_exc = 5.0, tau_inh = 10.0;  // ms
  double E_exc = 0.0, E_inh = -80.0;     // mV
  double C = 1.0;                        // uF/cm^2
  double g_leak = 0.05, E_leak = -60.0;
  double g_Na = 100.0, E_Na = 50.0;
  double g_K = 30.0, E_K = -90.0;
  double V_T = -63.0;   // Traub-Miles shift
  double V_th = -20.0;  // spike detection
  // Initial state, each neuron independently (Brian2's example): V = E_leak + N(V_init_mean,
  // V_init_std), g_exc = N(g_exc_init_mean, ...std), g_inh = N(g_inh_init_mean, ...std).
  double V_init_mean = -5.0, V_init_std = 5.0;
  double g_exc_init_mean = 0.2, g_exc_init_std = 0.075;
  double g_inh_init_mean = 1.0, g_inh_init_std = 0.6;
  std::string connectivity = "csr";  // or "jit"
  std::string dtype = "float32";
};
BRAIN_API std::shared_ptr<DynSysGroup> build_coba_hh_network(const CobaHHSpec& spec, uint64_t seed, c10::Device device,
                                                            double dt_ms = 0.1);

// Wang (2002)'s decision-making network, in BrainPy's formulation: 1600 excitatory LIF neurons
// ("E": two selective pools A = [0, f N_E) and B = [f N_E, 2 f N_E), then the non-selective
// rest) and 400 inhibitory ones ("I"), all-to-all recurrent AMPA, NMDA (with Mg block) and
// GABA_A synapses, 2.4 kHz Poisson background through AMPA, and a stimulus to A and B of
// mean rates mu0 (1 +- c / 100) for coherence c (percent), redrawn with std stim_sigma every
// stim_interval ms, between stim_on and stim_off. Pool A wins on average for c > 0.
// Weights: within a selective pool w_plus, between pools and from the non-selective pool
// w_minus = 1 - f (w_plus - 1) / (1 - f); recurrent conductances scale with 1 / scale.
// Trials run as a batch: reset_state(B) with `coherence` holding B values (or one for all).
// Children: "input_E", "input_I" (Poisson, stimulus in input_E's rate), "stimulus", "E", "I",
// projections, and "rates" (state "rate" [..., 4]: the instantaneous rates of A, B, the
// non-selective pool and I, in Hz, for monitoring).
struct DecisionNetSpec {
  double scale = 1.0;  // 1600 * scale excitatory, 400 * scale inhibitory neurons
  double f = 0.15;
  double w_plus = 1.7;
  std::vector<double> coherence{25.6};  // percent; one per trial (batch), or one for all
  double mu0 = 40.0;                    // Hz
  double stim_sigma = 10.0;             // Hz
  double stim_interval = 50.0;          // ms
  double stim_on = 100.0, stim_off = 1100.0;  // ms
  double background_hz = 2400.0;
  double g_ext_E = 2.1, g_ext_I = 1.62;             // nS, AMPA from outside
  double g_EE_AMPA = 0.05, g_EI_AMPA = 0.04;        // nS, at scale 1
  double g_EE_NMDA = 0.165, g_EI_NMDA = 0.13;
  double g_IE_GABA = 1.3, g_II_GABA = 1.0;
  double delay_ms = 0.5;
  std::string dtype = "float32";
};
BRAIN_API std::shared_ptr<DynSysGroup> build_decision_network(const DecisionNetSpec& spec, uint64_t seed,
                                                             c10::Device device, double dt_ms = 0.1);

// A continuous attractor network on a ring (CANN1D: Wu, Hamaguchi & Amari 2008) under a
// stimulus protocol: an input bump of amplitude A at position z0 + speed (t - stim_on) (rad,
// wrapped onto [-pi, pi)) between stim_on and stim_off ms, nothing otherwise. A still
// stimulus switched off shows the bump that persists without input (working memory); a
// moving one shows smooth tracking with a lag. Children, in update order: "stimulus" (states
// "position" [..., 1], the last stimulus position, and "active", 1 while it is on; adds the
// input to the CANN's "input_u"), "cann" (CANN1D, state "u" [..., size]) and "bump" (states
// "position": the decoded bump position, "error": its ring distance to the stimulus
// position, and "height": the peak rate).
struct CannSpec {
  int64_t size = 512;
  double tau = 1.0, k = 8.1, a = 0.5, A = 10.0, J0 = 4.0;  // CANN1DParams
  double z0 = 0.0;        // rad
  double speed = 0.0;     // rad per ms
  double stim_on = 0.0;   // ms
  double stim_off = 1e9;  // ms
  double init_noise = 0.0;  // initial u ~ U(0, init_noise), drawn from the seed
  std::string method = "rk4";
  std::string dtype = "float64";
};
BRAIN_API std::shared_ptr<DynSysGroup> build_cann_network(const CannSpec& spec, uint64_t seed, c10::Device device);

// An echo-state network predicting the Lorenz system (the reservoir-computing task of the
// BrainPy papers): brain::data::lorenz sampled every lorenz_dt, each component normalised by
// the training part's mean and std, drives a Reservoir (n_in = 3); a linear readout fitted by
// ridge regression on the states after `washout` predicts the input `horizon` samples ahead.
// The first washout + train_steps samples train, the next test_steps test (the reservoir runs
// on through them). NRMSE = RMSE / std of the target, averaged over the three components.
struct EsnSpec {
  int64_t size = 500;
  double spectral_radius = 0.9, leak = 0.5, input_scale = 0.5, bias_scale = 0.0, density = 0.1;
  std::string connectivity = "dense";  // or "jit" (ReservoirParams)
  int64_t washout = 100, train_steps = 4000, test_steps = 1000, horizon = 5;
  double lorenz_dt = 0.02;
  double ridge_alpha = 1e-6;
  std::string dtype = "float64";
};
struct EsnResult {
  at::Tensor target, prediction;  // [test_steps, 3], normalised units
  at::Tensor states;              // [washout + train_steps + test_steps, record_units]
  double train_nrmse = 0, test_nrmse = 0;
  double persistence_nrmse = 0;   // predicting "no change" over the horizon, on the test part
  double reservoir_seconds = 0, fit_seconds = 0;
};
// Runs the task; records the first record_units reservoir units' states.
BRAIN_API EsnResult run_esn_lorenz(const EsnSpec& spec, uint64_t seed, c10::Device device, int64_t record_units = 0);

}  // namespace brain
