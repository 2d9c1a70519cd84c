// The fast simulation engine (issue: fast simulation): runs a network of built-in models
// without the dispatcher and the allocator in the loop. It compiles the module tree once per
// run into flat arrays and fused loops (kernels/fastsim/fast_cpu.h): one pass over memory per
// population and step for synaptic arrivals, currents, membrane update, refractoriness,
// threshold, reset and synaptic decay; spikes compacted into index lists; event-driven
// delivery through stored (CSR) or regenerated (JIT) connectivity; uniform delays as rings of
// spike lists, per-synapse delays as a spike queue (each row's synapses sorted by delay into
// runs, a spike filing its row's runs under the steps they arrive at).
// States are read from the modules before the run and written back after it, so a network can
// alternate between engines, and the results are those of the module engine, spike for spike
// and bit for bit (tests/cpp/dyn/test_fast_engine.cpp) -- except with per-synapse delays, whose
// arrivals the module engine sums delay group by delay group: equal to rounding there.
//
// What it compiles (anything else runs on the module engine, Engine::Auto says why):
//   - DynSysGroup trees (no hooks) whose neuron populations are all updated before their
//     projections, as every reference network is built;
//   - LIF populations (exp_euler or euler, refractory or not, either reset), and CondNeuGroup
//     populations that take their one-pass update (built-in channels, the pool and influx
//     channels of a KCa channel in the group, one-pass update not switched off), stepped by
//     that same update (kernels/fastsim/cond_cpu.h) with the synaptic input formed as for LIF;
//   - PoissonGroup sources, drawn by brain::poisson_spikes' counter-based draw (the same
//     spikes; its "rate_input" at the start of a run counts for the first step, as in
//     PoissonGroup::update; Runner inputs into it keep the module engine), outside distributed
//     runs; and SpikeTimeGroup sources (the group's schedule sorted by step, each step's
//     entries found by bisection, as its update does on the host);
//   - AlignPostProj projections with an Expon synapse, COBA or CUBA output, CsrComm or JitComm
//     connectivity (any weights, event or not) and any uniform delay, or per-synapse delays
//     (CsrComm; in a distributed run the ranks exchange once per window of the shortest delay
//     of the whole network and file each window's spikes in step order); outside distributed
//     runs, Tsodyks-Markram STP (CSR or JIT: each spike's deliveries scaled by its release;
//     with per-synapse delays the release is filed with the spike's runs) and pair-based STDP
//     (CSR with one weight per synapse, weights nobody else reads: updated in place after the
//     step's deliveries; with per-synapse delays on the queue's copy of the weights, the
//     presynaptic traces kept in the projection's ring);
//   - unbatched float32 or float64 states on the CPU, no gradient being recorded;
//   - runner inputs into "<population>.input" (constant or per step) and monitors of
//     "<population>.{V,spike,input,last_spike_step}" ("<source>.spike", "<poisson>.rate_input"), the gates of a CondNeuGroup's channels
//     ("<population>.<channel>.<gate>") and "<projection>.syn.g".
// The CPU loop uses every thread torch uses for LIF populations of 32k neurons and more and
// takes a thread per 256 neurons of a conductance-based one; its results do not depend on the
// thread count.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <brain/dyn/runner.h>
#include <brain/dyn/system.h>

namespace brain {

// Why the fast engine cannot run `system` with `options`; "" when it can.
BRAIN_API std::string fast_engine_unsupported(DynamicalSystem& system, const RunnerOptions& options);

namespace detail {
class ProgressBar;
// Whether a run of `root` records gradients: grad mode on, and a parameter, a state or one of
// the runner's inputs wants one.
bool wants_gradient(DynamicalSystem& root, const RunnerOptions& options);
// A run goes in segments, between checkpoints. offset: the index within the run of the
// segment's first step (per-step inputs read that row); bar: counts the steps of the run.
struct Segment {
  int64_t offset = 0;
  ProgressBar* bar = nullptr;
};
// The fast engine's run loop (Runner::run_steps calls it); advances ctx like the runner.
RunResult run_fast(DynamicalSystem& system, const RunnerOptions& options, Context& ctx, int64_t steps,
                   const Segment& segment);
// For a network the fast engine runs: the states that hold one value per neuron of a
// population (its neuron and channel states, the conductances of the synapses onto it), by state path, with
// that population's path. These are what a distributed run splits into blocks; the others
// (delay lines over whole presynaptic populations) are the same on every rank.
std::map<std::string, std::string> per_neuron_states(DynamicalSystem& system, const RunnerOptions& options);
}  // namespace detail

}  // namespace brain
