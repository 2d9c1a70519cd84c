// The fast engine (brain/dyn/fast.h): compiles a module tree into flat arrays and runs the
// fused CPU loops of kernels/fastsim/fast_cpu.h: LIF populations, and conductance-based ones
// (CondNeuGroup of built-in channels) through the group's own one-pass step.
#include <brain/dyn/fast.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <typeinfo>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <brain/dist/dist.h>
#include <brain/dyn/inputs.h>
#include <brain/models/channels.h>
#include <brain/models/neurons.h>
#include <brain/models/synapses.h>
#include <brain/ops.h>

#include "csrc/dyn/fast_kernels.h"
#include "csrc/dyn/progress.h"
#include "csrc/models/cond_plan.h"
#include "csrc/ops/jitc_common.h"
#include "kernels/fastsim/fast_cpu.h"
#include "kernels/rng/poisson_draw.h"

namespace brain {

namespace {

namespace fs = kernels::fastsim;

// Populations this large are split over threads, 16 blocks of fs::kBlock neurons at least
// per task; below, a fork costs more than it saves.
constexpr int64_t kParallelBlocks = 16;
constexpr int64_t kParallelNeurons = kParallelBlocks * fs::kBlock;
// A step's deliveries are split over threads from this much work (in CSR synapses; one
// JIT synapse, regenerated, costs kJitSynapseWork), into about kDeliveryTasksPerThread
// column ranges per thread, so a few busy projections still load every thread.
constexpr double kParallelDeliveryWork = 4096;
constexpr double kJitSynapseWork = 16;
constexpr int kDeliveryTasksPerThread = 2;
// Poisson draws per task (a Philox call draws two, in about 9 ns).
constexpr int64_t kParallelPoisson = 4096;

struct PopInfo {
  std::string path;
  DynamicalSystem* system;
  NeuronGroup* group = nullptr;  // a neuron population: one of lif and cond
  LIF* lif = nullptr;
  CondNeuGroup* cond = nullptr;
  PoissonGroup* poisson = nullptr;  // or a source of spikes (no group): Poisson
  SpikeTimeGroup* spike_times = nullptr;  // or scheduled
  bool source() const { return poisson || spike_times; }
  std::vector<int> receptors;  // in the order the population registered their currents
};

struct RecInfo {
  Expon* syn;
  AlignPostProj* owner = nullptr;  // the projection holding the synapse (and its output)
  std::string owner_path;
  int pop = -1;
  std::vector<int> projections;  // delivering into it, in update order
};

struct ProjInfo {
  std::string path;
  AlignPostProj* proj;
  int pre = -1, post = -1, receptor = -1;
};

struct Layout {
  std::vector<PopInfo> pops;
  std::vector<RecInfo> receptors;
  std::vector<ProjInfo> projections;
  at::ScalarType dtype = at::kFloat;

  int pop_of(const DynamicalSystem* s) const {
    for (size_t i = 0; i < pops.size(); ++i) {
      if (pops[i].system == s) return static_cast<int>(i);
    }
    return -1;
  }
  int receptor_of(const DynamicalSystem* s) const {
    for (size_t i = 0; i < receptors.size(); ++i) {
      if (receptors[i].syn == s) return static_cast<int>(i);
    }
    return -1;
  }
};

std::string join_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

bool has_child(const DynamicalSystem& s, const std::string& name) {
  for (const auto& [child_name, child] : s.children()) {
    if (child_name == name) return true;
  }
  return false;
}

std::string describe(const DynamicalSystem& s, const std::string& path) {
  return "'" + (path.empty() ? std::string("the root") : path) + "' (" + s.name() + ")";
}

// Checks one tensor state: CPU, unbatched dtype, no gradient wanted.
std::string check_state(const at::Tensor& t, const std::string& what, at::ScalarType dtype) {
  if (!t.device().is_cpu()) return what + " is on " + t.device().str() + "; the fast engine runs on the CPU";
  if (t.scalar_type() != dtype) {
    return what + " is " + std::string(c10::toString(t.scalar_type())) + ", the network's states are " +
           std::string(c10::toString(dtype));
  }
  return "";
}

std::string walk(DynamicalSystem& s, const std::string& path, Layout& L) {
  if (s.has_hooks()) return describe(s, path) + " has before/after-update hooks";
  if (typeid(s) == typeid(DynSysGroup)) {
    for (const auto& [name, child] : s.children()) {
      if (auto why = walk(*child, join_path(path, name), L); !why.empty()) return why;
    }
    return "";
  }
  if (typeid(s) == typeid(LIF)) {
    if (!L.projections.empty()) {
      return describe(s, path) + " is updated after a projection; the fast engine needs every population first";
    }
    auto* lif = static_cast<LIF*>(&s);
    L.pops.push_back({path, lif, lif, lif, nullptr, nullptr, nullptr, {}});
    return "";
  }
  if (typeid(s) == typeid(CondNeuGroup)) {
    if (!L.projections.empty()) {
      return describe(s, path) + " is updated after a projection; the fast engine needs every population first";
    }
    auto* cond = static_cast<CondNeuGroup*>(&s);
    if (!cond->fused()) return describe(s, path) + " has its one-pass update switched off";
    for (const auto& [name, child] : s.children()) {
      if (child->has_hooks()) return describe(*child, join_path(path, name)) + " has before/after-update hooks";
      if (!dynamic_cast<IonChannel*>(child.get())) {
        return describe(*child, join_path(path, name)) + " is not an ion channel of its group";
      }
    }
    L.pops.push_back({path, cond, cond, nullptr, cond, nullptr, nullptr, {}});
    return "";
  }
  if (typeid(s) == typeid(PoissonGroup)) {
    if (!L.projections.empty()) {
      return describe(s, path) + " is updated after a projection; the fast engine needs every population first";
    }
    L.pops.push_back({path, &s, nullptr, nullptr, nullptr, static_cast<PoissonGroup*>(&s), nullptr, {}});
    return "";
  }
  if (typeid(s) == typeid(SpikeTimeGroup)) {
    if (!L.projections.empty()) {
      return describe(s, path) + " is updated after a projection; the fast engine needs every population first";
    }
    L.pops.push_back({path, &s, nullptr, nullptr, nullptr, nullptr, static_cast<SpikeTimeGroup*>(&s), {}});
    return "";
  }
  if (typeid(s) == typeid(AlignPostProj)) {
    auto* proj = static_cast<AlignPostProj*>(&s);
    if (typeid(*proj->syn()) != typeid(Expon)) return describe(s, path) + " has a " + proj->syn()->name() + " synapse, not Expon";
    const SynOutput& out = *proj->output();
    if (typeid(out) != typeid(COBA) && typeid(out) != typeid(CUBA)) return describe(s, path) + " has an output other than COBA or CUBA";
    const Comm& comm = *proj->comm();
    if (typeid(comm) != typeid(CsrComm) && typeid(comm) != typeid(JitComm)) {
      return describe(s, path) + " has connectivity other than CsrComm or JitComm";
    }
    ProjInfo info{path, proj};
    info.pre = L.pop_of(proj->pre().get());
    info.post = L.pop_of(proj->post().get());
    if (info.pre < 0 || info.post < 0) {
      return describe(s, path) + " connects a population that is not a LIF, CondNeuGroup, PoissonGroup or " +
             "SpikeTimeGroup population of this network";
    }
    int r = L.receptor_of(proj->syn().get());
    if (r < 0) {
      r = static_cast<int>(L.receptors.size());
      L.receptors.push_back(RecInfo{static_cast<Expon*>(proj->syn().get()), nullptr, "", -1, {}});
      L.receptors.back().pop = info.post;
    }
    if (has_child(*proj, "syn")) {
      L.receptors[r].owner = proj;
      L.receptors[r].owner_path = path;
    }
    info.receptor = r;
    L.receptors[r].projections.push_back(static_cast<int>(L.projections.size()));
    L.projections.push_back(std::move(info));
    return "";
  }
  return describe(s, path) +
         " is not a model the fast engine compiles (LIF, CondNeuGroup, PoissonGroup, SpikeTimeGroup, AlignPostProj, "
         "DynSysGroup)";
}

std::string analyse(DynamicalSystem& root, Layout& L) {
  if (auto why = walk(root, "", L); !why.empty()) return why;
  const PopInfo* first_group = nullptr;
  for (const auto& pop : L.pops) {
    if (!pop.system->has_state(pop.source() ? "spike" : "V")) return "'" + pop.path + "' has no state yet (call reset_state())";
    if (pop.group && !first_group) first_group = &pop;
  }
  if (!first_group) return "the network has no LIF or CondNeuGroup population";
  for (const auto& rc : L.receptors) {
    if (!rc.syn->has_state("g")) return "a synapse of '" + L.pops[rc.pop].path + "' has no state yet (call reset_state())";
  }
  L.dtype = first_group->group->state("V").scalar_type();
  if (L.dtype != at::kFloat && L.dtype != at::kDouble) {
    return "the states are " + std::string(c10::toString(L.dtype)) + "; the fast engine runs float32 and float64";
  }
  for (auto& pop : L.pops) {
    if (pop.poisson) {
      // Drawn by the op's own counter-based draw (kernels/rng/poisson_draw.h): the same spikes.
      const PoissonGroup& source = *pop.poisson;
      if (source.batch_size() != 0) return "'" + pop.path + "' has a batch dimension; the fast engine runs unbatched states";
      if (auto why = check_state(source.state("spike"), "'" + pop.path + ".spike'", at::kBool); !why.empty()) return why;
      const at::Tensor& rates = source.rates();
      const at::Tensor& extra = source.state("rate_input");
      if (!rates.device().is_cpu() || !extra.device().is_cpu()) return "'" + pop.path + "' is not on the CPU";
      if (!at::isFloatingType(rates.scalar_type()) || !at::isFloatingType(extra.scalar_type())) {
        return "'" + pop.path + "' has rates of " + std::string(c10::toString(rates.scalar_type())) + " and a rate_input of " +
               std::string(c10::toString(extra.scalar_type()));
      }
      continue;
    }
    if (pop.spike_times) {
      const SpikeTimeGroup& source = *pop.spike_times;
      if (source.batch_size() != 0) return "'" + pop.path + "' has a batch dimension; the fast engine runs unbatched states";
      if (!source.state("spike").device().is_cpu()) return "'" + pop.path + "' is not on the CPU";
      continue;
    }
    const NeuronGroup& group = *pop.group;
    if (group.batch_size() != 0) return "'" + pop.path + "' has a batch dimension; the fast engine runs unbatched states";
    for (const char* st : {"V", "spike", "input"}) {
      if (auto why = check_state(group.state(st), "'" + pop.path + "." + st + "'", L.dtype); !why.empty()) return why;
    }
    if (pop.cond) {
      detail::CondPlan plan;
      at::NoGradGuard no_grad;  // gradients are refused on their own (wants_gradient)
      if (!detail::plan_cond_group(*pop.cond, group.state("V"), group.state("input"), plan)) {
        return "'" + pop.path + "' does not take CondNeuGroup's one-pass update (takes_fused_step(): a channel it " +
               "does not know, a pool or influx channel outside the group, or gates of another type or shape)";
      }
    }
    if (pop.lif && pop.lif->params().tau_ref > 0) {
      const LIF& lif = *pop.lif;
      if (auto why = check_state(lif.state("last_spike_step"), "'" + pop.path + ".last_spike_step'", at::kLong);
          !why.empty()) {
        return why;
      }
    }
    if (group.n_currents() != group.current_keys().size()) {
      return "'" + pop.path + "' has currents that do not come from a projection of this network";
    }
    for (const void* key : group.current_keys()) {
      const int r = L.receptor_of(static_cast<const DynamicalSystem*>(static_cast<const Synapse*>(key)));
      if (r < 0 || L.receptors[r].pop != L.pop_of(&group)) {
        return "'" + pop.path + "' has a synaptic current from outside this network";
      }
      pop.receptors.push_back(r);
    }
  }
  for (const auto& rc : L.receptors) {
    if (!rc.owner) return "a synapse of '" + L.pops[rc.pop].path + "' belongs to no projection of this network";
    if (auto why = check_state(rc.syn->state("g"), "'" + rc.owner_path + ".syn.g'", L.dtype); !why.empty()) return why;
  }
  for (const auto& pj : L.projections) {
    const Comm& comm = *pj.proj->comm();
    const at::Tensor& w = typeid(comm) == typeid(CsrComm) ? static_cast<const CsrComm&>(comm).weights()
                                                           : static_cast<const JitComm&>(comm).weight();
    if (auto why = check_state(w, "the weights of '" + pj.path + "'", L.dtype); !why.empty()) return why;
    if (pj.proj->has_stp()) {
      for (const char* st : {"u", "x"}) {
        if (!pj.proj->stp()->has_state(st)) return "'" + pj.path + "' has no state yet (call reset_state())";
        if (auto why = check_state(pj.proj->stp()->state(st), "'" + pj.path + ".stp." + st + "'", L.dtype); !why.empty()) {
          return why;
        }
      }
    }
    for (const auto& ring : {pj.proj->stp_release_history(), pj.proj->stdp_trace_history()}) {
      if (ring && (!ring->has_state("history") || !ring->state("history").device().is_cpu())) {
        return "a plasticity ring of '" + pj.path + "' is not on the CPU (call reset_state())";
      }
    }
    if (pj.proj->has_stdp()) {
      // STDP changes the weights after the step's deliveries, projection by projection, as the
      // module engine does; that order only matters for weights another projection reads.
      for (const auto& other : L.projections) {
        if (&other == &pj || typeid(*other.proj->comm()) != typeid(CsrComm)) continue;
        if (static_cast<const CsrComm&>(*other.proj->comm()).weights().is_alias_of(w)) {
          return "'" + pj.path + "' has STDP on weights that '" + other.path + "' reads as well";
        }
      }
      for (const char* st : {"stdp_pre_trace", "stdp_post_trace"}) {
        if (!pj.proj->has_state(st)) return "'" + pj.path + "' has no state yet (call reset_state())";
        if (auto why = check_state(pj.proj->state(st), "'" + pj.path + "." + st + "'", L.dtype); !why.empty()) return why;
      }
    }
    if (typeid(comm) == typeid(CsrComm)) {
      const auto& csr = static_cast<const CsrComm&>(comm);
      if (!csr.indptr().device().is_cpu()) return "the connectivity of '" + pj.path + "' is not on the CPU";
    }
    if (pj.proj->delay() && !pj.proj->delay()->state("history").device().is_cpu()) {
      return "the delay buffer of '" + pj.path + "' is not on the CPU";
    }
  }
  return "";
}

// Where a monitor or an input points in the compiled network.
struct Place {
  enum Kind { kPopV, kPopSpike, kPopInput, kPopLast, kReceptorG, kGate } kind;
  int index;
  int channel = -1, gate = -1;  // kGate: which channel of population `index`, which of its gates
};

// The channel of a CondNeuGroup population that `sys` is, and which of its gates `leaf` names.
bool gate_place(const Layout& L, const DynamicalSystem* sys, const std::string& leaf, Place& out) {
  for (size_t p = 0; p < L.pops.size(); ++p) {
    if (!L.pops[p].cond) continue;
    const auto& channels = L.pops[p].cond->channels();
    for (size_t c = 0; c < channels.size(); ++c) {
      if (channels[c].get() != sys) continue;
      const auto names = detail::cond_gate_names(*channels[c]);
      for (size_t g = 0; g < names.size(); ++g) {
        if (names[g] == leaf) {
          out = {Place::kGate, static_cast<int>(p), static_cast<int>(c), static_cast<int>(g)};
          return true;
        }
      }
    }
  }
  return false;
}

std::string place_of(DynamicalSystem& root, const Layout& L, const std::string& path, Place& out) {
  const auto dot = path.rfind('.');
  DynamicalSystem* sys = &root;
  std::string leaf = path;
  if (dot != std::string::npos) {
    try {
      sys = &root.find_system(path.substr(0, dot));
    } catch (const std::exception&) {
      return "'" + path + "' is not a state of the network";
    }
    leaf = path.substr(dot + 1);
  }
  if (const int p = L.pop_of(sys); p >= 0) {
    out.index = p;
    if (L.pops[p].source()) {
      if (leaf == "spike") out.kind = Place::kPopSpike;
      else if (leaf == "rate_input" && L.pops[p].poisson) out.kind = Place::kPopInput;  // zero after every step
      else return "'" + path + "' is not a state the fast engine records";
      return "";
    }
    if (leaf == "V") out.kind = Place::kPopV;
    else if (leaf == "spike") out.kind = Place::kPopSpike;
    else if (leaf == "input") out.kind = Place::kPopInput;
    else if (leaf == "last_spike_step" && L.pops[p].lif && L.pops[p].lif->params().tau_ref > 0) out.kind = Place::kPopLast;
    else return "'" + path + "' is not a state the fast engine records";
    return "";
  }
  if (const int r = L.receptor_of(sys); r >= 0 && leaf == "g") {
    out = {Place::kReceptorG, r};
    return "";
  }
  if (gate_place(L, sys, leaf, out)) return "";
  return "'" + path + "' is not a state the fast engine records";
}

}  // namespace

bool detail::wants_gradient(DynamicalSystem& root, const RunnerOptions& options) {
  if (!at::GradMode::is_enabled()) return false;
  for (const auto& in : options.inputs) {
    if (in.value.defined() && in.value.requires_grad()) return true;
  }
  for (const auto& p : root.parameters()) {
    if (p.requires_grad()) return true;
  }
  for (const auto& path : root.state_paths()) {
    if (root.find_state(path).requires_grad()) return true;
  }
  return false;
}

namespace {

std::string unsupported(DynamicalSystem& root, const RunnerOptions& options, Layout& L) {
  if (auto why = analyse(root, L); !why.empty()) return why;
  for (const auto& pj : L.projections) {
    if (options.partition && L.pops[static_cast<size_t>(pj.pre)].source()) {
      return "'" + pj.path + "' comes from a " + L.pops[static_cast<size_t>(pj.pre)].system->name() +
             ", which distributed runs do not take";
    }
    // A rank holds its columns of the weights, and a distributed checkpoint holds states only.
    if (options.partition && pj.proj->has_stdp()) return "'" + pj.path + "' has STDP, which distributed runs do not take";
    if (options.partition && pj.proj->has_stp()) {
      return "'" + pj.path + "' has short-term plasticity, which distributed runs do not take";
    }
  }
  if (detail::wants_gradient(root, options)) return "gradients are being recorded (the fast engine does not differentiate)";
  for (const auto& m : options.monitors) {
    Place place{};
    if (auto why = place_of(root, L, m.path, place); !why.empty()) return "monitor " + why;
  }
  for (const auto& in : options.inputs) {
    Place place{};
    if (auto why = place_of(root, L, in.path, place); !why.empty() || place.kind != Place::kPopInput) {
      return "input '" + in.path + "' does not go to a population's input";
    }
    if (L.pops[static_cast<size_t>(place.index)].poisson) return "input '" + in.path + "' goes to a PoissonGroup's rates";
  }
  return "";
}

// ---- The run ------------------------------------------------------------------------------

template <typename T>
struct Projection {
  const ProjInfo* info;
  std::vector<T> pending;
  // CSR
  bool jit = false;
  at::Tensor indptr, indices;  // int32 or int64, both alike
  const T* weights = nullptr;  // null: homogeneous
  T w = 0;
  // JIT
  kernels::jitc::Spec spec;
  double a = 0, b = 0;
  int64_t col_lo = 0, col_hi = 0;  // the columns this process owns (all but in a distributed run)
  // Delay: ring of spike lists, slot(step) = step mod (D + 1) as brain::Delay, with D the
  // longest delay of the population's shared history (>= this projection's delay)
  int64_t delay = 0;
  std::vector<std::vector<int32_t>> ring;
  double fanout = 0;  // mean synapses per presynaptic neuron: the work of one spike
  bool sorted = false;  // CSR: every row's columns non-decreasing (fs::rows_sorted)
  // The spikes this step delivers
  const int32_t* now = nullptr;
  int64_t n_now = 0;
  // Per-synapse delays, as Brian2's spike queue: each row's synapses sorted by delay (stably, so
  // columns keep their order within a delay) into runs of one delay; a spike at step s files
  // each run of its row under step s + delay, and a step delivers the runs filed under it, in
  // the order they were filed. The module engine sums each delay group's arrivals apart and
  // then the groups, so the two engines agree to rounding here, not bit for bit.
  bool queued = false;
  at::Tensor q_columns, q_weights;  // [nnz] in the sorted order (indices' type); weights undefined: w
  // Run r is run_entry[r] = first << kRunLengthBits | length: the sorted entries
  // [first, first + length), all of delay run_delay[r] (a longer stretch of one delay is cut
  // into several runs); row i's runs are [run_ptr[i], run_ptr[i + 1]). 12 bytes a run, at most
  // one run per synapse. The queue holds the entries themselves, so delivering a run reads its
  // columns and nothing else: with many delays nearly every synapse is a run of its own.
  static constexpr int kRunLengthBits = 24;
  static constexpr int64_t kRunLengthMask = (int64_t{1} << kRunLengthBits) - 1;
  std::vector<int64_t> run_ptr, run_entry;
  std::vector<int32_t> run_delay;
  int64_t shortest = std::numeric_limits<int64_t>::max();  // the shortest delay (none: no synapses)
  // Per ring slot: the runs filed under it, and their synapses (with STP, each run's release).
  std::vector<std::vector<int64_t>> queue;
  std::vector<std::vector<T>> queue_release;
  std::vector<int64_t> queue_synapses;
  const std::vector<int64_t>* arriving = nullptr;
  const std::vector<T>* arriving_release = nullptr;
  // Plasticity with per-synapse delays, as AlignPostProj keeps it (set_synapse_delays): STP's
  // releases of each step's spikes and STDP's presynaptic traces before each step's spikes, in
  // rings of their own (their Delay's slots), and the queue's weights learning in place
  // (q_weights), with each queue entry's synapse in the CSR (q_order) and back (q_position).
  std::vector<T> release_ring, trace_ring;
  int64_t release_len = 0, trace_len = 0, n_rows = 0;
  std::vector<int64_t> q_order, q_position;
  const int64_t* csr_delays = nullptr;  // [nnz], the CSR's order
  at::Tensor csr_delays_tensor;
  static int64_t wrap(int64_t step, int64_t len) { return ((step % len) + len) % len; }
  int64_t arriving_synapses = 0;
  void add_run(int64_t first, int64_t length, int64_t delay) {
    for (; length > 0; first += kRunLengthMask, length -= kRunLengthMask) {
      run_entry.push_back(first << kRunLengthBits | std::min(length, kRunLengthMask));
      run_delay.push_back(static_cast<int32_t>(delay));
    }
  }
  void file(const int32_t* spikes, int64_t n_spikes, int64_t step, int64_t not_before) {
    // Slots from the step's by one comparison (a delay is below the ring's length), not a
    // division per run.
    const auto len = static_cast<int64_t>(queue.size());
    const int64_t base = static_cast<int64_t>(slot(step));
    const int64_t earliest = not_before - step;  // runs of shorter delays are due before not_before
    const int64_t* entry = run_entry.data();
    const int32_t* delay_of = run_delay.data();
    // STP: the releases of the step's spikes (their ring row holds the step while a run of it
    // is still to be filed: the ring spans the longest delay).
    const T* released = stp ? release_ring.data() + wrap(step, release_len) * n_rows : nullptr;
    for (int64_t s = 0; s < n_spikes; ++s) {
      const int64_t row = spikes[s];
      for (int64_t r = run_ptr[static_cast<size_t>(row)]; r < run_ptr[static_cast<size_t>(row) + 1]; ++r) {
        const int64_t d = delay_of[r];
        if (d < earliest) continue;
        int64_t q = base + d;
        if (q >= len) q -= len;
        queue[static_cast<size_t>(q)].push_back(entry[r]);
        if (released) queue_release[static_cast<size_t>(q)].push_back(released[row]);
        queue_synapses[static_cast<size_t>(q)] += entry[r] & kRunLengthMask;
      }
    }
  }
  size_t slot(int64_t step) const {
    const auto len = static_cast<int64_t>(ring.size());
    return static_cast<size_t>(((step % len) + len) % len);
  }
  double work() const {
    if (queued) return static_cast<double>(arriving_synapses);
    return static_cast<double>(n_now) * fanout * (jit ? kJitSynapseWork : 1.0);
  }
  bool idle() const { return queued ? arriving_synapses == 0 : n_now == 0; }
  // STDP (AlignPostProj::add_stdp): the traces, updated here and written back at the end, and
  // the weights, changed in place as the module engine's csr_update_on_pre_/_post_ do.
  bool plastic = false;
  at::Tensor pre_trace, post_trace, csc_indptr, csc_rows, csc_perm;
  T* plastic_weights = nullptr;
  T pre_decay = 0, post_decay = 0, depression = 0, potentiation = 0, w_min = 0, w_max = 0;
  // Short-term plasticity (AlignPostProj::add_stp): the presynaptic u and x, updated here and
  // written back at the end, and the step's releases u x of the spikes arriving, which scale
  // their deliveries (null without STP).
  bool stp = false, facilitation = false;
  at::Tensor stp_u, stp_x;
  std::vector<T> release;
  const T* scale = nullptr;
  T u_decay = 0, x_decay = 0, U = 0;
  // The columns a delivery may split: the targets' indices (CSR) or the rank's columns (JIT).
  int64_t first_column() const { return jit ? col_lo : 0; }
  int64_t end_column() const { return jit ? col_hi : static_cast<int64_t>(pending.size()); }
};

// One CSR matrix's deliveries of `spikes` (int32 or int64 indices, both alike).
template <typename T>
void deliver_csr_any(const at::Tensor& indptr, const at::Tensor& indices, const T* weights, T w, const int32_t* spikes,
                     int64_t n_spikes, T* pending, bool whole, int64_t lo, int64_t hi, bool sorted, const T* scale) {
  auto csr = [&](auto index_type) {
    using index_t = decltype(index_type);
    const index_t* ptr = indptr.template data_ptr<index_t>();
    const index_t* idx = indices.template data_ptr<index_t>();
    if (whole) {
      fs::deliver_csr<T, index_t>(ptr, idx, weights, w, spikes, n_spikes, pending, scale);
    } else {
      fs::deliver_csr_columns<T, index_t>(ptr, idx, weights, w, spikes, n_spikes, pending, lo, hi, sorted, scale);
    }
  };
  indptr.scalar_type() == at::kInt ? csr(int32_t{}) : csr(int64_t{});
}

// Delivers this step's spikes of pj to the targets in columns [lo, hi) (whole: all of them,
// without the per-row search of a column range). Tasks with disjoint ranges run in parallel,
// and every target sums its arrivals in spike order, as the module engine's ops do, so the
// bits are theirs whatever the split (per-synapse delays: in the order they were filed, the
// same whatever the split).
template <typename T>
void deliver(Projection<T>& pj, bool whole, int64_t lo, int64_t hi) {
  T* pending = pj.pending.data();
  if (pj.queued) {
    const T* weights = pj.q_weights.defined() ? pj.q_weights.template data_ptr<T>() : nullptr;
    auto ranges = [&](auto index_type) {
      using index_t = decltype(index_type);
      const index_t* columns = pj.q_columns.template data_ptr<index_t>();
      const T* releases = pj.stp ? pj.arriving_release->data() : nullptr;
      for (size_t r = 0; r < pj.arriving->size(); ++r) {
        const int64_t run = (*pj.arriving)[r];
        const T release = releases ? releases[r] : T(1);  // the scatter's w * x
        int64_t k = run >> Projection<T>::kRunLengthBits;
        int64_t end = k + (run & Projection<T>::kRunLengthMask);
        if (!whole && pj.sorted) {  // a run's columns are sorted: its part of [lo, hi) by bisection
          const index_t* first = kernels::csr::first_at_least(columns + k, columns + end, lo);
          k = first - columns;
          end = kernels::csr::first_at_least(first, columns + end, hi) - columns;
        }
        for (; k < end; ++k) {
          const int64_t c = columns[k];
          if (whole || pj.sorted || (c >= lo && c < hi)) {
            const T v = weights ? weights[k] : pj.w;
            pending[c] += releases ? v * release : v;
          }
        }
      }
    };
    pj.q_columns.scalar_type() == at::kInt ? ranges(int32_t{}) : ranges(int64_t{});
    return;
  }
  if (pj.n_now == 0) return;
  if (pj.jit) {
    if (whole) {
      fs::deliver_jit<T>(pj.spec, pj.a, pj.b, pj.now, pj.n_now, pending, pj.col_lo, pj.col_hi, pj.scale);
    } else {
      fs::deliver_jit_columns<T>(pj.spec, pj.a, pj.b, pj.now, pj.n_now, pending, pj.col_lo, lo, hi, pj.scale);
    }
    return;
  }
  deliver_csr_any<T>(pj.indptr, pj.indices, pj.weights, pj.w, pj.now, pj.n_now, pending, whole, lo, hi, pj.sorted,
                     pj.scale);
}

template <typename T>
T clip(T v, T lo, T hi) {
  if (v < lo) v = lo;
  if (v > hi) v = hi;
  return v;
}

// One step of pj's short-term plasticity, before the step's deliveries, in STP::process's
// arithmetic: every presynaptic neuron relaxes; the spikes (those arriving now; with
// per-synapse delays, those emitted now) take their release u x (u after its jump) into
// release[neuron], which scales what they deliver, and spend it.
template <typename T>
void stp_step(Projection<T>& pj, const int32_t* spikes, int64_t n_spikes, T* release) {
  T* u = pj.stp_u.template mutable_data_ptr<T>();
  T* x = pj.stp_x.template mutable_data_ptr<T>();
  const int64_t n = pj.stp_u.numel();
  for (int64_t i = 0; i < n; ++i) {
    u[i] = pj.facilitation ? u[i] * pj.u_decay : T(0);
    x[i] = T(1) - (T(1) - x[i]) * pj.x_decay;
  }
  for (int64_t s = 0; s < n_spikes; ++s) {
    const int64_t i = spikes[s];
    const T jumped = u[i] + (T(1) - u[i]) * pj.U;
    release[i] = jumped * x[i];
    u[i] = jumped;
    x[i] = x[i] - release[i];
  }
}

// One step of pj's STDP, after the step's deliveries, in the module engine's order and
// arithmetic (AlignPostProj::update): both traces decay; the synapses of the rows whose spikes
// arrived now are depressed by the postsynaptic trace, then those of the columns that spiked
// now are potentiated by the presynaptic trace (each pass touches a synapse at most once, so
// it may be split over threads); then the traces take the step's spikes.
template <typename T>
void stdp_step(Projection<T>& pj, const int32_t* post_spikes, int64_t n_post_spikes) {
  T* a_pre = pj.pre_trace.template mutable_data_ptr<T>();
  T* a_post = pj.post_trace.template mutable_data_ptr<T>();
  const int64_t n_pre = pj.pre_trace.numel(), n_post = pj.post_trace.numel();
  for (int64_t i = 0; i < n_pre; ++i) a_pre[i] = a_pre[i] * pj.pre_decay;
  for (int64_t j = 0; j < n_post; ++j) a_post[j] = a_post[j] * pj.post_decay;
  T* w = pj.plastic_weights;
  const T lo = pj.w_min, hi = pj.w_max;
  const int64_t nnz = pj.indices.numel();
  // Threads from kParallelDeliveryWork synapses on, as the deliveries.
  auto grain = [&](int64_t owners) {
    const double per_owner = static_cast<double>(nnz) / static_cast<double>(std::max<int64_t>(1, owners));
    return std::max<int64_t>(1, static_cast<int64_t>(kParallelDeliveryWork / std::max(1.0, per_owner)));
  };
  auto passes = [&](auto index_type) {
    using index_t = decltype(index_type);
    const index_t* ptr = pj.indptr.template const_data_ptr<index_t>();
    const index_t* cols = pj.indices.template const_data_ptr<index_t>();
    const index_t* cptr = pj.csc_indptr.template const_data_ptr<index_t>();
    const index_t* rows = pj.csc_rows.template const_data_ptr<index_t>();
    const index_t* perm = pj.csc_perm.template const_data_ptr<index_t>();
    const int32_t* arrived = pj.now;
    at::parallel_for(0, pj.n_now, grain(n_pre), [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t i = arrived[s];
        for (int64_t e = ptr[i]; e < ptr[i + 1]; ++e) w[e] = clip<T>(w[e] + pj.depression * a_post[cols[e]], lo, hi);
      }
    });
    at::parallel_for(0, n_post_spikes, grain(n_post), [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t j = post_spikes[s];
        for (int64_t e = cptr[j]; e < cptr[j + 1]; ++e) {
          const int64_t k = perm[e];
          w[k] = clip<T>(w[k] + pj.potentiation * a_pre[rows[e]], lo, hi);
        }
      }
    });
  };
  pj.indptr.scalar_type() == at::kInt ? passes(int32_t{}) : passes(int64_t{});
  for (int64_t s = 0; s < pj.n_now; ++s) a_pre[pj.now[s]] = a_pre[pj.now[s]] + T(1);
  for (int64_t s = 0; s < n_post_spikes; ++s) a_post[post_spikes[s]] = a_post[post_spikes[s]] + T(1);
}

// One step of pj's STDP with per-synapse delays, after the step's deliveries, in the module
// engine's order and arithmetic (AlignPostProj::update_delayed_stdp): both traces decay and
// the presynaptic one, before this step's spikes, goes into its ring; the synapses whose spike
// arrives now (the runs the queue delivers) are depressed by the postsynaptic trace; the
// synapses of the columns that spiked are potentiated by the presynaptic trace of their row as
// it was their delay ago; the traces take the spikes emitted now. The queue's weights learn in
// place, each pass touching a synapse at most once (so it may be split over threads).
template <typename T>
void delayed_stdp_step(Projection<T>& pj, const int32_t* pre_spikes, int64_t n_pre_spikes, const int32_t* post_spikes,
                       int64_t n_post_spikes, int64_t step) {
  T* a_pre = pj.pre_trace.template mutable_data_ptr<T>();
  T* a_post = pj.post_trace.template mutable_data_ptr<T>();
  const int64_t n_pre = pj.pre_trace.numel(), n_post = pj.post_trace.numel();
  for (int64_t i = 0; i < n_pre; ++i) a_pre[i] = a_pre[i] * pj.pre_decay;
  for (int64_t j = 0; j < n_post; ++j) a_post[j] = a_post[j] * pj.post_decay;
  const T* traces = pj.trace_ring.data();
  std::copy(a_pre, a_pre + n_pre, pj.trace_ring.data() + Projection<T>::wrap(step, pj.trace_len) * n_pre);
  T* w = pj.q_weights.template mutable_data_ptr<T>();
  const T lo = pj.w_min, hi = pj.w_max;
  const int64_t nnz = pj.q_weights.numel();
  const auto& runs = *pj.arriving;
  const auto n_runs = static_cast<int64_t>(runs.size());
  const int64_t run_grain = std::max<int64_t>(
      1, static_cast<int64_t>(static_cast<double>(n_runs) * kParallelDeliveryWork /
                              std::max(1.0, static_cast<double>(pj.arriving_synapses))));
  const int64_t column_grain = std::max<int64_t>(
      1, static_cast<int64_t>(kParallelDeliveryWork * static_cast<double>(n_post) / std::max<double>(1, nnz)));
  auto passes = [&](auto index_type) {
    using index_t = decltype(index_type);
    const index_t* cols = pj.q_columns.template const_data_ptr<index_t>();
    at::parallel_for(0, n_runs, run_grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t run = runs[static_cast<size_t>(r)];
        const int64_t k0 = run >> Projection<T>::kRunLengthBits, k1 = k0 + (run & Projection<T>::kRunLengthMask);
        for (int64_t k = k0; k < k1; ++k) w[k] = clip<T>(w[k] + pj.depression * a_post[cols[k]], lo, hi);
      }
    });
    const index_t* cptr = pj.csc_indptr.template const_data_ptr<index_t>();
    const index_t* rows = pj.csc_rows.template const_data_ptr<index_t>();
    const index_t* perm = pj.csc_perm.template const_data_ptr<index_t>();
    at::parallel_for(0, n_post_spikes, column_grain, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t j = post_spikes[s];
        for (int64_t e = cptr[j]; e < cptr[j + 1]; ++e) {
          const int64_t k = perm[e];
          const int64_t slot = Projection<T>::wrap(step - pj.csr_delays[k], pj.trace_len);
          T& wq = w[pj.q_position[static_cast<size_t>(k)]];
          wq = clip<T>(wq + pj.potentiation * traces[slot * n_pre + static_cast<int64_t>(rows[e])], lo, hi);
        }
      }
    });
  };
  pj.q_columns.scalar_type() == at::kInt ? passes(int32_t{}) : passes(int64_t{});
  for (int64_t s = 0; s < n_pre_spikes; ++s) a_pre[pre_spikes[s]] = a_pre[pre_spikes[s]] + T(1);
  for (int64_t s = 0; s < n_post_spikes; ++s) a_post[post_spikes[s]] = a_post[post_spikes[s]] + T(1);
}

struct DeliveryTask {
  int proj;
  int64_t lo, hi;  // columns
  double work;
};

// Splits the step's deliveries into about n_tasks tasks of similar work: each projection's
// columns into a share of the tasks proportional to its work, JIT ranges on whole blocks.
template <typename T>
void split_deliveries(const std::vector<Projection<T>>& projs, double work, int n_tasks,
                      std::vector<DeliveryTask>& tasks) {
  tasks.clear();
  for (size_t j = 0; j < projs.size(); ++j) {
    const Projection<T>& pj = projs[j];
    if (pj.idle()) continue;
    const int64_t lo = pj.first_column(), hi = pj.end_column();
    if (hi <= lo) continue;
    // Units of the split: columns, or JIT blocks (a block is walked as a whole).
    const int shift = pj.jit ? pj.spec.block_shift : 0;
    const int64_t unit_lo = lo >> shift, unit_hi = ((hi - 1) >> shift) + 1;
    const int64_t share = static_cast<int64_t>(std::lround(pj.work() / work * n_tasks));
    const int64_t parts = std::clamp<int64_t>(share, 1, unit_hi - unit_lo);
    for (int64_t i = 0; i < parts; ++i) {
      const int64_t u0 = unit_lo + (unit_hi - unit_lo) * i / parts;
      const int64_t u1 = unit_lo + (unit_hi - unit_lo) * (i + 1) / parts;
      const int64_t c0 = std::max(lo, u0 << shift), c1 = std::min(hi, u1 << shift);
      tasks.push_back({static_cast<int>(j), c0, c1, pj.work() * static_cast<double>(c1 - c0) / static_cast<double>(hi - lo)});
    }
  }
  std::stable_sort(tasks.begin(), tasks.end(), [](const DeliveryTask& x, const DeliveryTask& y) { return x.work > y.work; });
}

template <typename T>
struct Population {
  const PopInfo* info;
  at::Tensor V, last, input0;
  std::vector<int32_t> since;  // the kernel's saturated steps-since-spike; `last` stays exact
  std::vector<uint8_t> spiked;
  std::vector<int32_t> spikes;
  int64_t n_spikes = 0;
  int64_t count = 0;
  // A distributed run: this rank owns a block of the n_global neurons, and projections deliver
  // `global`, every rank's spikes of the step (global indices); otherwise `spikes`.
  int64_t n_global = 0;
  std::vector<int32_t> global;
  std::vector<fs::Receptor<T>> receptors;
  fs::LifPop<T> k;
  // A CondNeuGroup: its channels' plan, whose gates are copies updated in place and written
  // back at the end like V.
  bool cond = false;
  detail::CondPlan plan;
  kernels::cond::Group<T> grp;
  // Inputs into this population, in the runner's order; drives for the first and later steps.
  std::vector<std::pair<const RunInput*, at::Tensor>> inputs;
  bool per_step = false;
  at::Tensor drive_first, drive_rest, drive_now;
  // A PoissonGroup: its rates, one per neuron, for the first step (plus the "rate_input" the
  // run starts with, as PoissonGroup::update adds it, in the rates' dtype) and for the rest;
  // held as double, which the draw compares in.
  bool poisson = false;
  kernels::rng::PoissonKey key{};
  // A SpikeTimeGroup: its schedule sorted by step (the group's own), and the spike state's dtype.
  bool scheduled = false;
  const std::vector<int64_t>* schedule_steps = nullptr;
  const std::vector<int64_t>* schedule_indices = nullptr;
  at::ScalarType spike_type = at::kBool;
  std::vector<double> rates_first, rates_rest;
};

template <typename T>
struct Receptor {
  const RecInfo* info;
  at::Tensor g_decayed;
  std::vector<T*> pending;
};

// The runner applies inputs to the "input" state before each step; the LIF update zeroes it.
at::Tensor fold_inputs(at::Tensor base, const std::vector<std::pair<const RunInput*, at::Tensor>>& inputs, int64_t i) {
  at::Tensor cur = base;
  for (const auto& [in, all] : inputs) {
    const at::Tensor v = in->per_step ? all[std::min<int64_t>(i, all.size(0) - 1)] : all;
    cur = in->op == RunInput::Op::Set ? v.expand(cur.sizes()).clone() : cur + v;
  }
  return cur.contiguous();
}

// The state path of the first non-finite value of a population the pass flagged: its V, or
// the conductance of one of its receptors.
template <typename T>
std::string nonfinite_state(const Layout& L, const Population<T>& pop) {
  auto bad = [](const T* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(x[i])) return true;
    }
    return false;
  };
  if (bad(pop.k.V, pop.k.n)) return pop.info->path + ".V";
  for (size_t r = 0; r < pop.receptors.size(); ++r) {
    if (bad(pop.receptors[r].g_decayed, pop.k.n)) return L.receptors[pop.info->receptors[r]].owner_path + ".syn.g";
  }
  return pop.info->path + ".V";
}

// Writes one monitor sample (a row of the recording) per call.
using Writer = std::function<void(int64_t row)>;

template <typename T>
RunResult run_typed(DynamicalSystem& root, const Layout& L, const RunnerOptions& options, Context& ctx, int64_t steps,
                    const detail::Segment& segment) {
  const double dt = options.dt;
  const at::TensorOptions fopt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);

  std::vector<Receptor<T>> recs(L.receptors.size());
  std::vector<Projection<T>> projs(L.projections.size());
  std::vector<Population<T>> pops(L.pops.size());

  for (size_t p = 0; p < L.pops.size(); ++p) {
    const PopInfo& info = L.pops[p];
    Population<T>& pop = pops[p];
    pop.info = &info;
    if (info.poisson) {
      const PoissonGroup& source = *info.poisson;
      const int64_t n = source.size();
      TORCH_CHECK(n < (int64_t{1} << 31), "fast engine: '", info.path, "' has ", n, " neurons; at most 2^31 - 1");
      pop.poisson = true;
      pop.key = kernels::rng::poisson_key(source.seed());
      // rates_ + rate_input in their dtype, as the module engine adds them (+ 0 after the first
      // step), then widened exactly to double.
      const at::Tensor extra = source.state("rate_input").detach();
      const at::Tensor first = (source.rates() + extra).to(at::kDouble).contiguous();
      const at::Tensor rest = (source.rates() + at::zeros_like(extra)).to(at::kDouble).contiguous();
      TORCH_CHECK(first.numel() == n && rest.numel() == n, "fast engine: the rates of '", info.path, "' have ",
                  first.numel(), " entries for ", n, " neurons");
      pop.rates_first.assign(first.const_data_ptr<double>(), first.const_data_ptr<double>() + n);
      pop.rates_rest.assign(rest.const_data_ptr<double>(), rest.const_data_ptr<double>() + n);
      pop.spiked.assign(static_cast<size_t>(n), 0);
      pop.spikes.assign(static_cast<size_t>(n), 0);
      pop.k.n = n;
      pop.k.spiked = pop.spiked.data();
      continue;
    }
    if (info.spike_times) {
      SpikeTimeGroup& source = *info.spike_times;
      const int64_t n = source.size();
      TORCH_CHECK(n < (int64_t{1} << 31), "fast engine: '", info.path, "' has ", n, " neurons; at most 2^31 - 1");
      pop.scheduled = true;
      const auto schedule = source.schedule(ctx.dt);
      pop.schedule_steps = &schedule.steps;
      pop.schedule_indices = &schedule.indices;
      pop.spike_type = source.state("spike").scalar_type();
      pop.spiked.assign(static_cast<size_t>(n), 0);
      pop.spikes.assign(static_cast<size_t>(n), 0);
      pop.k.n = n;
      pop.k.spiked = pop.spiked.data();
      continue;
    }
    const NeuronGroup& group = *info.group;
    const int64_t n = group.size();
    TORCH_CHECK(n < (int64_t{1} << 31), "fast engine: '", info.path, "' has ", n, " neurons; at most 2^31 - 1");
    pop.V = group.state("V").detach().contiguous().clone();
    pop.input0 = group.state("input").detach().contiguous();
    pop.spiked.assign(static_cast<size_t>(n), 0);
    pop.spikes.assign(static_cast<size_t>(n), 0);
    auto& k = pop.k;
    k.n = n;
    k.V = pop.V.template data_ptr<T>();
    k.spiked = pop.spiked.data();
    if (info.cond) {
      const CondNeuGroup& cond = *info.cond;
      TORCH_CHECK(detail::plan_cond_group(cond, pop.V, pop.input0, pop.plan), "fast engine: '", info.path,
                  "' no longer takes the one-pass update");
      pop.cond = true;
      for (auto& channel_gates : pop.plan.gates) {
        for (auto& x : channel_gates) x = x.detach().clone();  // updated in place by the pass
      }
      pop.grp = pop.plan.template group<T>(pop.plan.gates, cond.C(), cond.V_th(), dt);
      continue;
    }
    const LIF& lif = *info.lif;
    const LifParams& lp = lif.params();
    if (lp.tau_ref > 0) {
      pop.last = lif.state("last_spike_step").detach().contiguous().clone();
      const int64_t ref_steps = std::min<int64_t>(std::llround(lp.tau_ref / dt), int64_t{1} << 30);
      k.ref_steps = static_cast<int32_t>(ref_steps);
      const int64_t* last = pop.last.template data_ptr<int64_t>();
      pop.since.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        pop.since[static_cast<size_t>(i)] =
            static_cast<int32_t>(std::clamp<int64_t>(ctx.step - last[i], -(int64_t{1} << 30), ref_steps));
      }
      k.since_spike = pop.since.data();
    }
    k.euler = lp.method == "euler";
    k.V_rest = static_cast<T>(lp.V_rest);
    k.R = static_cast<T>(lp.R);
    k.V_th = static_cast<T>(lp.V_th);
    k.V_reset = static_cast<T>(lp.V_reset);
    k.factor = static_cast<T>(k.euler ? dt / lp.tau : std::exp(-dt / lp.tau));
    k.threshold_scale = static_cast<T>(lp.V_th - lp.V_reset);
    k.detach_reset = lp.detach_reset;
  }
  // A distributed run: each population is this rank's block of a larger one; connectivity
  // comes from the whole presynaptic population.
  dist::Partition* part = options.partition.get();
  std::vector<int64_t> global_sizes;
  for (auto& pop : pops) {
    pop.n_global = pop.k.n;
    if (part) {
      const auto it = part->global_sizes.find(pop.info->path);
      TORCH_CHECK(it != part->global_sizes.end(), "fast engine: the partition does not say how large population '",
                  pop.info->path, "' is in the whole network");
      TORCH_CHECK(part->comm, "fast engine: the partition has no process group");
      const dist::Block block = dist::block_of(it->second, part->comm->rank(), part->comm->world_size());
      TORCH_CHECK(block.size == pop.k.n, "fast engine: population '", pop.info->path, "' has ", pop.k.n,
                  " neurons, but rank ", part->comm->rank(), " owns ", block.size, " of its ", it->second);
      TORCH_CHECK(it->second < (int64_t{1} << 31), "fast engine: '", pop.info->path, "' has ", it->second,
                  " neurons; at most 2^31 - 1");
      pop.n_global = it->second;
    }
    global_sizes.push_back(pop.n_global);
  }
  for (const auto& info : L.projections) {
    TORCH_CHECK(info.proj->comm()->n_pre() == pops[info.pre].n_global, "fast engine: '", info.path, "' connects ",
                info.proj->comm()->n_pre(), " presynaptic neurons, its population has ", pops[info.pre].n_global,
                part ? " in the whole network" : "");
  }
  for (size_t j = 0; j < L.projections.size(); ++j) {
    const ProjInfo& info = L.projections[j];
    Projection<T>& pj = projs[j];
    pj.info = &info;
    pj.pending.assign(static_cast<size_t>(L.pops[info.post].group->size()), T(0));
    const Comm& comm = *info.proj->comm();
    if (typeid(comm) == typeid(CsrComm)) {
      const auto& csr = static_cast<const CsrComm&>(comm);
      // The module engine checks every index as it goes; here the structure is checked once.
      ops::validate_csr(csr.indptr(), csr.indices(), {csr.n_pre(), csr.n_post()});
      pj.indptr = csr.indptr().contiguous();  // validate_csr: int32 or int64, both alike
      pj.indices = csr.indices().contiguous();
      pj.fanout = static_cast<double>(csr.indices().numel()) / static_cast<double>(std::max<int64_t>(1, csr.n_pre()));
      pj.sorted = pj.indptr.scalar_type() == at::kInt
                      ? fs::rows_sorted(pj.indptr.template data_ptr<int32_t>(), pj.indices.template data_ptr<int32_t>(),
                                        csr.n_pre())
                      : fs::rows_sorted(pj.indptr.template data_ptr<int64_t>(), pj.indices.template data_ptr<int64_t>(),
                                        csr.n_pre());
      const at::Tensor w = csr.weights().detach();
      if (w.numel() == 1) {
        pj.w = w.reshape({-1})[0].template item<T>();
      } else {
        pj.weights = w.data_ptr<T>();  // a parameter: contiguous 1-D
        TORCH_CHECK(w.is_contiguous(), "fast engine: the weights of '", info.path, "' are not contiguous");
      }
    } else {
      const auto& jit = static_cast<const JitComm&>(comm);
      pj.jit = true;
      const auto dist = ops::detail::parse_dist("fast engine", jit.dist());
      std::tie(pj.a, pj.b) = ops::detail::read_weight_params_cpu("fast engine", jit.weight().detach(), dist);
      pj.spec = kernels::jitc::make_spec(jit.prob(), jit.seed(), jit.n_pre(), jit.n_post_total(), dist);
      pj.col_lo = jit.col_offset();
      pj.col_hi = jit.col_offset() + jit.n_post();
      pj.fanout = jit.prob() * static_cast<double>(jit.n_post());
    }
    if (info.proj->has_stdp()) {
      const AlignPostProj& proj = *info.proj;
      const auto& rule = proj.stdp_params();
      const auto& csr = static_cast<const CsrComm&>(comm);
      pj.plastic = true;
      pj.plastic_weights = csr.weights().detach().template mutable_data_ptr<T>();  // contiguous: checked above
      pj.pre_trace = proj.state("stdp_pre_trace").detach().contiguous().clone();
      pj.post_trace = proj.state("stdp_post_trace").detach().contiguous().clone();
      TORCH_CHECK(pj.pre_trace.numel() == csr.n_pre() && pj.post_trace.numel() == csr.n_post(), "fast engine: the STDP ",
                  "traces of '", info.path, "' do not match its connectivity (call reset_state())");
      const auto own = proj.named_buffers(/*recurse=*/false);
      for (auto [name, out] : {std::pair{"csc_indptr", &pj.csc_indptr}, {"csc_rows", &pj.csc_rows}, {"csc_perm", &pj.csc_perm}}) {
        const at::Tensor* t = own.find(name);
        TORCH_CHECK(t && t->device().is_cpu() && t->scalar_type() == pj.indptr.scalar_type(), "fast engine: '", info.path,
                    "' has no CPU column view '", name, "' of its connectivity");
        *out = t->contiguous();
      }
      // The module engine's arithmetic: the traces decay by a factor in their dtype, the rule's
      // constants are cast to it (csr_update_on_pre_/_post_).
      pj.pre_decay = static_cast<T>(std::exp(-ctx.dt / rule.tau_plus));
      pj.post_decay = static_cast<T>(std::exp(-ctx.dt / rule.tau_minus));
      pj.depression = static_cast<T>(-rule.A_minus);
      pj.potentiation = static_cast<T>(rule.A_plus);
      pj.w_min = static_cast<T>(rule.w_min);
      pj.w_max = static_cast<T>(rule.w_max);
    }
    if (info.proj->has_stp()) {
      const STP& stp = *info.proj->stp();
      const STPParams& rule = stp.params();
      pj.stp = true;
      pj.facilitation = rule.facilitation;
      pj.stp_u = stp.state("u").detach().contiguous().clone();
      pj.stp_x = stp.state("x").detach().contiguous().clone();
      TORCH_CHECK(pj.stp_u.numel() == comm.n_pre() && pj.stp_x.numel() == comm.n_pre(), "fast engine: the short-term ",
                  "plasticity of '", info.path, "' does not match its connectivity (call reset_state())");
      pj.release.assign(static_cast<size_t>(comm.n_pre()), T(0));
      pj.scale = pj.release.data();
      // STP::process's arithmetic: decay factors and U in the states' dtype.
      pj.u_decay = rule.facilitation ? static_cast<T>(std::exp(-ctx.dt / rule.tau_f)) : T(0);
      pj.x_decay = static_cast<T>(std::exp(-ctx.dt / rule.tau_d));
      pj.U = static_cast<T>(rule.U);
    }
    pj.delay = info.proj->delay_steps();
    if (info.proj->has_synapse_delays()) {
      const auto& csr = static_cast<const CsrComm&>(comm);
      const int64_t n_pre = csr.n_pre();
      const at::Tensor delays = info.proj->synapse_delays()->delays();
      const int64_t* d = delays.data_ptr<int64_t>();
      const at::Tensor indptr = pj.indptr.to(at::kLong);
      const int64_t* ptr = indptr.data_ptr<int64_t>();
      std::vector<int64_t> order(static_cast<size_t>(delays.numel()));
      pj.run_ptr.assign(static_cast<size_t>(n_pre + 1), 0);
      for (int64_t i = 0; i < n_pre; ++i) {
        const auto first = order.begin() + ptr[i], last = order.begin() + ptr[i + 1];
        std::iota(first, last, ptr[i]);
        std::stable_sort(first, last, [&](int64_t a, int64_t b) { return d[a] < d[b]; });
        for (int64_t k = ptr[i], end = k; k < ptr[i + 1]; k = end) {
          while (end < ptr[i + 1] && d[order[end]] == d[order[k]]) ++end;
          pj.add_run(k, end - k, d[order[k]]);
        }
        pj.run_ptr[static_cast<size_t>(i + 1)] = static_cast<int64_t>(pj.run_delay.size());
      }
      TORCH_CHECK(delays.numel() < (int64_t{1} << (63 - Projection<T>::kRunLengthBits)), "fast engine: '", info.path,
                  "' has too many synapses for its spike queue");
      if (delays.numel() > 0) pj.shortest = delays.min().item<int64_t>();
      const at::Tensor permutation = torch::tensor(order, torch::kLong);
      pj.q_columns = pj.indices.index_select(0, permutation).contiguous();
      const at::Tensor w = csr.weights().detach();
      if (w.numel() != 1) pj.q_weights = w.index_select(0, permutation).contiguous();
      pj.queued = true;
      pj.delay = info.proj->delay()->max_delay();  // the ring: the population's shared history
      pj.n_rows = n_pre;
      const auto own_ring = [&](const std::shared_ptr<Delay>& delay, std::vector<T>& ring, int64_t& len) {
        const at::Tensor h = delay->state("history").detach().to(fopt.dtype().toScalarType()).contiguous();
        TORCH_CHECK(h.dim() == 2 && h.size(1) == n_pre, "fast engine: a plasticity ring of '", info.path, "' is ",
                    h.sizes(), " for ", n_pre, " presynaptic neurons");
        len = h.size(0);
        ring.assign(h.const_data_ptr<T>(), h.const_data_ptr<T>() + h.numel());
      };
      if (pj.stp) own_ring(info.proj->stp_release_history(), pj.release_ring, pj.release_len);
      if (pj.plastic) {
        own_ring(info.proj->stdp_trace_history(), pj.trace_ring, pj.trace_len);
        pj.q_order = std::move(order);
        pj.q_position.resize(pj.q_order.size());
        for (size_t q = 0; q < pj.q_order.size(); ++q) pj.q_position[static_cast<size_t>(pj.q_order[q])] = static_cast<int64_t>(q);
        pj.csr_delays_tensor = delays.contiguous();
        pj.csr_delays = pj.csr_delays_tensor.template const_data_ptr<int64_t>();
      }
    }
    if (pj.delay > 0) {
      const at::Tensor history = info.proj->delay()->state("history").detach();
      pj.ring.resize(static_cast<size_t>(history.size(0)));
      for (int64_t s = 0; s < history.size(0); ++s) {
        const at::Tensor idx = history[s].nonzero().reshape({-1}).to(at::kInt);
        pj.ring[static_cast<size_t>(s)].assign(idx.data_ptr<int32_t>(), idx.data_ptr<int32_t>() + idx.numel());
      }
    }
  }
  for (size_t r = 0; r < L.receptors.size(); ++r) {
    const RecInfo& info = L.receptors[r];
    Receptor<T>& rc = recs[r];
    rc.info = &info;
    rc.g_decayed = info.syn->state("g").detach().contiguous().clone();
    for (int j : info.projections) rc.pending.push_back(projs[j].pending.data());
  }
  for (size_t p = 0; p < pops.size(); ++p) {
    Population<T>& pop = pops[p];
    for (int r : L.pops[p].receptors) {
      const RecInfo& info = L.receptors[r];
      fs::Receptor<T> k;
      k.g_decayed = recs[r].g_decayed.template data_ptr<T>();
      k.pending = recs[r].pending.data();
      k.n_pending = static_cast<int>(recs[r].pending.size());
      k.euler = info.syn->euler();
      k.factor = static_cast<T>(k.euler ? dt / info.syn->tau() : std::exp(-dt / info.syn->tau()));
      const SynOutput& out = *info.owner->output();
      k.coba = typeid(out) == typeid(COBA);
      if (k.coba) k.E = static_cast<T>(static_cast<const COBA&>(out).E);
      pop.receptors.push_back(k);
    }
    pop.k.receptors = pop.receptors.data();
    pop.k.n_receptors = static_cast<int>(pop.receptors.size());
  }

  // Inputs, converted once like the module runner does.
  for (const auto& in : options.inputs) {
    Place place{};
    TORCH_CHECK(place_of(root, L, in.path, place).empty(), "fast engine: input '", in.path, "'");
    Population<T>& pop = pops[place.index];
    pop.inputs.emplace_back(&in, in.value.to(at::kCPU, fopt.dtype().toScalarType()));
    pop.per_step = pop.per_step || in.per_step;
  }
  for (auto& pop : pops) {
    if (pop.poisson || pop.scheduled) continue;
    const at::Tensor zeros = at::zeros_like(pop.V);
    pop.drive_first = fold_inputs(pop.input0, pop.inputs, 0);
    pop.drive_rest = fold_inputs(zeros, pop.inputs, 1);
  }

  // Monitors: recordings allocated up front, filled in place.
  RunResult result;
  result.engine = "fast";
  result.dt = dt;
  result.t_start = ctx.t;
  std::vector<Writer> writers;
  std::vector<int64_t> every;
  std::vector<at::Tensor> recordings;
  std::vector<std::vector<double>> times(options.monitors.size());
  for (const auto& m : options.monitors) {
    Place place{};
    TORCH_CHECK(place_of(root, L, m.path, place).empty(), "fast engine: monitor '", m.path, "'");
    int64_t samples = 0;
    for (int64_t i = 0; i < steps; ++i) samples += (ctx.step + i) % m.every == 0;
    const bool is_pop = place.kind != Place::kReceptorG;
    const int64_t n = is_pop ? pops[place.index].k.n : L.pops[L.receptors[place.index].pop].group->size();
    std::vector<int64_t> idx;
    if (m.indices) {
      const at::Tensor ix = m.indices->to(at::kCPU, at::kLong).contiguous();
      idx.assign(ix.data_ptr<int64_t>(), ix.data_ptr<int64_t>() + ix.numel());
    } else {
      for (int64_t i = 0; i < n; ++i) idx.push_back(i);
    }
    // The state's own dtype, as the module engine records it.
    at::ScalarType state_type = place.kind == Place::kPopLast ? at::kLong : fopt.dtype().toScalarType();
    if (is_pop && L.pops[static_cast<size_t>(place.index)].source()) {
      const DynamicalSystem& source = *L.pops[static_cast<size_t>(place.index)].system;
      state_type = source.state(place.kind == Place::kPopSpike ? "spike" : "rate_input").scalar_type();
    }
    const at::ScalarType out_type = m.dtype.value_or(state_type);
    // Zeroed, not just allocated: the pages are touched here rather than inside the timed loop.
    at::Tensor rec = samples > 0 ? at::zeros({samples, static_cast<int64_t>(idx.size())}, at::TensorOptions().dtype(out_type))
                                 : at::empty({0});
    recordings.push_back(rec);
    every.push_back(m.every);
    if (samples == 0) {
      writers.emplace_back([](int64_t) {});
      continue;
    }
    Population<T>* pop = is_pop ? &pops[place.index] : nullptr;
    Receptor<T>* rc = is_pop ? nullptr : &recs[place.index];
    AT_DISPATCH_ALL_TYPES_AND3(at::kBool, at::kHalf, at::kBFloat16, out_type, "fast_monitor", [&] {
      auto* base = rec.data_ptr<scalar_t>();
      const int64_t width = static_cast<int64_t>(idx.size());
      switch (place.kind) {
        case Place::kPopV:
          writers.emplace_back([=](int64_t row) {
            const T* V = pop->k.V;
            for (int64_t c = 0; c < width; ++c) base[row * width + c] = static_cast<scalar_t>(V[idx[c]]);
          });
          break;
        case Place::kPopSpike:
          writers.emplace_back([=, all = !m.indices.has_value()](int64_t row) {
            const uint8_t* s = pop->spiked.data();
            if constexpr (std::is_same_v<scalar_t, bool>) {
              if (all) {  // flags are 0/1 bytes, as bool is stored
                std::memcpy(base + row * width, s, static_cast<size_t>(width));
                return;
              }
            }
            for (int64_t c = 0; c < width; ++c) base[row * width + c] = static_cast<scalar_t>(static_cast<T>(s[idx[c]]));
          });
          break;
        case Place::kPopInput:
          writers.emplace_back([=](int64_t row) {
            for (int64_t c = 0; c < width; ++c) base[row * width + c] = static_cast<scalar_t>(T(0));
          });
          break;
        case Place::kPopLast:
          writers.emplace_back([=](int64_t row) {
            const int64_t* last = pop->last.template data_ptr<int64_t>();
            for (int64_t c = 0; c < width; ++c) base[row * width + c] = static_cast<scalar_t>(last[idx[c]]);
          });
          break;
        case Place::kGate:
          writers.emplace_back([=, x = pop->plan.gates[place.channel][place.gate].template data_ptr<T>()](int64_t row) {
            for (int64_t c = 0; c < width; ++c) base[row * width + c] = static_cast<scalar_t>(x[idx[c]]);
          });
          break;
        case Place::kReceptorG:
          writers.emplace_back([=](int64_t row) {
            const T* gd = rc->g_decayed.template data_ptr<T>();
            for (int64_t c = 0; c < width; ++c) {
              T g = gd[idx[c]];
              for (T* pend : rc->pending) g = g + pend[idx[c]];
              base[row * width + c] = static_cast<scalar_t>(g);
            }
          });
          break;
      }
    });
  }
  std::vector<int64_t> rows(options.monitors.size(), 0);

  const fastsim::KernelsOf<T>& pass = fastsim::population_kernels().of<T>();
  // Ranks exchange spikes once every `window` steps: the smallest delay, so a spike always
  // arrives before a delivery needs it; every step when a projection has none.
  int64_t window = std::numeric_limits<int64_t>::max();
  bool any_queued = false;
  for (const auto& pj : projs) {
    window = std::min<int64_t>(window, std::max<int64_t>(1, pj.queued ? pj.shortest : pj.delay));
    any_queued = any_queued || pj.queued;
  }
  if (projs.empty()) window = 1;
  if (part && any_queued) {
    // Per-synapse delays: each rank holds other synapses, so the shortest delay of the whole
    // network is agreed on (every rank built the same projections, so all of them ask).
    for (const at::Tensor& w : part->comm->all_gather(torch::tensor({window}, torch::kLong))) {
      window = std::min(window, w.item<int64_t>());
    }
  }
  dist::SpikeLists window_local, window_global;
  std::vector<int64_t> window_steps;
  std::atomic<int> nonfinite{0};  // raised by the population pass; read once per population and step
  for (auto& pop : pops) pop.k.nonfinite = options.check_finite ? &nonfinite : nullptr;
  std::string failure;
  std::vector<DeliveryTask> tasks;
  const auto start = detail::Clock::now();
  const int64_t first_step = ctx.step;
  // The spike queues of per-synapse delays, from the spike history handed over: what the
  // spikes of the last steps still owe from this step on, filed in the order of their steps.
  for (auto& pj : projs) {
    if (!pj.queued) continue;
    pj.queue.assign(pj.ring.size(), {});
    pj.queue_release.assign(pj.ring.size(), {});
    pj.queue_synapses.assign(pj.ring.size(), 0);
    for (int64_t s = first_step - static_cast<int64_t>(pj.ring.size()) + 1; s < first_step; ++s) {
      const auto& list = pj.ring[pj.slot(s)];
      pj.file(list.data(), static_cast<int64_t>(list.size()), s, first_step);
    }
  }
  for (int64_t i = 0; i < steps; ++i) {
    // A rank that failed keeps taking part in the exchanges until the next one tells the
    // others; the clock stays at the failure.
    if (!failure.empty() && !part) break;
    const int64_t step = ctx.step;
    for (auto& pop : pops) {
      if (!failure.empty()) break;
      if (pop.poisson) {
        // Any split gives the same bits: a draw depends on (seed, step, neuron) only (the
        // variant with AVX2 draws 8 pairs at once, the same bits again).
        const double* rates = (i == 0 ? pop.rates_first : pop.rates_rest).data();
        const double scale = dt / 1000.0;  // the op's: p = rate * (dt / 1000)
        at::parallel_for(0, pop.k.n, kParallelPoisson, [&](int64_t j0, int64_t j1) {
          fastsim::population_kernels().poisson_row(pop.key.k0, pop.key.k1, static_cast<uint64_t>(step), j0, j1 - j0,
                                                    scale, rates + j0, pop.spiked.data() + j0);
        });
        pop.n_spikes = fs::compact_spikes(pop.spiked.data(), pop.k.n, pop.spikes.data());
        continue;
      }
      if (pop.scheduled) {
        // SpikeTimeGroup::update's host path: this step's entries of the sorted schedule (a
        // neuron scheduled twice fires once).
        for (int64_t s = 0; s < pop.n_spikes; ++s) pop.spiked[static_cast<size_t>(pop.spikes[static_cast<size_t>(s)])] = 0;
        const auto& steps_of = *pop.schedule_steps;
        const auto [begin, end] = std::equal_range(steps_of.begin(), steps_of.end(), step);
        for (auto e = begin; e != end; ++e) {
          pop.spiked[static_cast<size_t>((*pop.schedule_indices)[static_cast<size_t>(e - steps_of.begin())])] = 1;
        }
        pop.n_spikes = fs::compact_spikes(pop.spiked.data(), pop.k.n, pop.spikes.data());
        continue;
      }
      if (pop.per_step) {
        pop.drive_now = fold_inputs(i == 0 ? pop.input0 : at::zeros_like(pop.V), pop.inputs, segment.offset + i);
        pop.k.drive = pop.drive_now.template data_ptr<T>();
      } else {
        pop.k.drive = (i == 0 ? pop.drive_first : pop.drive_rest).template data_ptr<T>();
      }
      const fs::LifPop<T>& k = pop.k;
      if (pop.cond) {
        at::parallel_for(0, k.n, kernels::cond::kNeuronsPerThread, [&](int64_t b, int64_t e) { pass.cond_step(k, pop.grp, b, e); });
      } else if (k.n >= kParallelNeurons) {
        const int64_t blocks = (k.n + fs::kBlock - 1) / fs::kBlock;
        at::parallel_for(0, blocks, kParallelBlocks, [&](int64_t b0, int64_t b1) {
          pass.lif_step(k, step, b0 * fs::kBlock, std::min(k.n, b1 * fs::kBlock));
        });
      } else {
        pass.lif_step(k, step, 0, k.n);
      }
      if (nonfinite.load(std::memory_order_relaxed)) {
        failure = nonfinite_state(L, pop);
        break;
      }
      pop.n_spikes = fs::compact_spikes(pop.spiked.data(), k.n, pop.spikes.data());
      pop.count += pop.n_spikes;
      if (pop.last.defined()) {
        int64_t* last = pop.last.template data_ptr<int64_t>();
        for (int64_t s = 0; s < pop.n_spikes; ++s) last[pop.spikes[static_cast<size_t>(s)]] = step;
      }
    }
    if (part) {
      // This step's local spikes join the window; at its end (or the segment's) all ranks swap
      // them, with any failure, and fill the delay rings with global lists. The windows are
      // aligned on absolute steps, so ranks with the same segments always meet.
      window_local.emplace_back(pops.size());
      for (size_t p = 0; p < pops.size(); ++p) {
        if (failure.empty()) window_local.back()[p].assign(pops[p].spikes.data(), pops[p].spikes.data() + pops[p].n_spikes);
      }
      window_steps.push_back(first_step + i);
      if ((first_step + i + 1) % window == 0 || i + 1 == steps) {
        const int failed = dist::exchange_spikes(*part->comm, global_sizes, window_local, part->encoding, part->stats,
                                                 window_global, !failure.empty());
        if (failed >= 0) {
          if (failure.empty()) failure = "a state on rank " + std::to_string(failed);
          break;
        }
        for (auto& pj : projs) {
          if (pj.delay == 0) continue;
          for (size_t k = 0; k < window_steps.size(); ++k) {
            auto& list = pj.ring[pj.slot(window_steps[k])];
            list = window_global[k][pj.info->pre];
            // The window's spikes, in the order of their steps as one process files them: none
            // is due before this step, as the window is no longer than the shortest delay.
            if (pj.queued) pj.file(list.data(), static_cast<int64_t>(list.size()), window_steps[k], step);
          }
        }
        for (size_t p = 0; p < pops.size(); ++p) pops[p].global = std::move(window_global.back()[p]);
        window_local.clear();
        window_steps.clear();
      }
    }
    if (!failure.empty()) continue;
    // Each projection's spikes of this step: its presynaptic population's (every rank's in a
    // distributed run) or, delayed, those its ring kept.
    double work = 0;
    for (auto& pj : projs) {
      const Population<T>& pre = pops[pj.info->pre];
      if (pj.delay > 0 && !part) pj.ring[pj.slot(step)].assign(pre.spikes.data(), pre.spikes.data() + pre.n_spikes);
      pj.now = part ? pre.global.data() : pre.spikes.data();
      pj.n_now = part ? static_cast<int64_t>(pre.global.size()) : pre.n_spikes;
      if (pj.queued) {
        if (pj.stp) {
          // The releases of the spikes emitted now, into their ring row (zero elsewhere, as the
          // module engine pushes spikes * release), before they are filed.
          T* row = pj.release_ring.data() + Projection<T>::wrap(step, pj.release_len) * pj.n_rows;
          std::fill(row, row + pj.n_rows, T(0));
          stp_step<T>(pj, pre.spikes.data(), pre.n_spikes, row);
        }
        if (!part) pj.file(pre.spikes.data(), pre.n_spikes, step, step);  // distributed: filed at the exchange
        pj.arriving = &pj.queue[pj.slot(step)];
        pj.arriving_release = &pj.queue_release[pj.slot(step)];
        pj.arriving_synapses = pj.queue_synapses[pj.slot(step)];
      } else {
        if (pj.delay > 0) {
          const auto& list = pj.ring[pj.slot(step - pj.delay)];
          pj.now = list.data();
          pj.n_now = static_cast<int64_t>(list.size());
        }
        if (pj.stp) stp_step<T>(pj, pj.now, pj.n_now, pj.release.data());
      }
      work += pj.work();
    }
    const int threads = at::get_num_threads();
    if (threads > 1 && work >= kParallelDeliveryWork) {
      split_deliveries(projs, work, threads * kDeliveryTasksPerThread, tasks);
      // Each thread takes the next task, the largest first, until none is left: a static split
      // of unequal tasks (a small network's JIT blocks) would leave threads waiting.
      std::atomic<size_t> next{0};
      at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
        for (size_t t = next.fetch_add(1, std::memory_order_relaxed); t < tasks.size();
             t = next.fetch_add(1, std::memory_order_relaxed)) {
          deliver(projs[static_cast<size_t>(tasks[t].proj)], false, tasks[t].lo, tasks[t].hi);
        }
      });
    } else {
      for (auto& pj : projs) deliver(pj, true, pj.first_column(), pj.end_column());
    }
    for (auto& pj : projs) {
      if (!pj.queued) continue;
      // STDP reads the step's arrivals first.
      if (pj.plastic) {
        const Population<T>& post = pops[pj.info->post];
        const Population<T>& pre = pops[pj.info->pre];
        delayed_stdp_step<T>(pj, pre.spikes.data(), pre.n_spikes, post.spikes.data(), post.n_spikes, step);
      }
      pj.queue[pj.slot(step)].clear();
      pj.queue_release[pj.slot(step)].clear();
      pj.queue_synapses[pj.slot(step)] = 0;
    }
    for (auto& pj : projs) {
      if (!pj.plastic || pj.queued) continue;
      const Population<T>& post = pops[pj.info->post];
      stdp_step<T>(pj, post.spikes.data(), post.n_spikes);
    }
    for (size_t m = 0; m < writers.size(); ++m) {
      if (step % every[m] != 0) continue;
      writers[m](rows[m]++);
      times[m].push_back(ctx.t);
    }
    ctx.step += 1;
    ctx.t = ctx.step * ctx.dt;
    if (segment.bar) segment.bar->update(segment.offset + i + 1);
  }
  result.wall_seconds = std::chrono::duration<double>(detail::Clock::now() - start).count();
  result.steps = steps;
  const int64_t failed_step = ctx.step;

  // Write the state back, so the module engine (or the next run) carries on from here.
  for (auto& pop : pops) {
    if (pop.poisson) {
      at::Tensor spike = at::empty({pop.k.n}, at::kBool);
      std::memcpy(spike.mutable_data_ptr<bool>(), pop.spiked.data(), static_cast<size_t>(pop.k.n));
      pop.info->poisson->assign_state("spike", spike);
      const at::Tensor& extra = pop.info->poisson->state("rate_input");
      if (steps > 0) pop.info->poisson->assign_state("rate_input", at::zeros_like(extra));
      continue;  // the module engine counts the spikes of neuron groups only
    }
    if (pop.scheduled) {
      at::Tensor spike = at::empty({pop.k.n}, at::kBool);
      std::memcpy(spike.mutable_data_ptr<bool>(), pop.spiked.data(), static_cast<size_t>(pop.k.n));
      pop.info->spike_times->assign_state("spike", spike.to(pop.spike_type));
      continue;
    }
    NeuronGroup& group = *pop.info->group;
    group.assign_state("V", pop.V);
    at::Tensor spike = at::empty({pop.k.n}, fopt);
    T* s = spike.data_ptr<T>();
    for (int64_t i = 0; i < pop.k.n; ++i) s[i] = static_cast<T>(pop.spiked[static_cast<size_t>(i)]);
    group.assign_state("spike", spike);
    group.assign_state("input", at::zeros_like(pop.V));
    if (pop.last.defined()) group.assign_state("last_spike_step", pop.last);
    if (pop.cond) {
      const auto& channels = pop.info->cond->channels();
      for (size_t c = 0; c < channels.size(); ++c) {
        for (size_t g = 0; g < pop.plan.gates[c].size(); ++g) {
          channels[c]->assign_state(pop.plan.gate_names[c][g], pop.plan.gates[c][g]);
        }
      }
    }
    result.spike_counts[pop.info->path] = pop.count;
  }
  for (auto& rc : recs) {
    T* gd = rc.g_decayed.template data_ptr<T>();
    const int64_t n = rc.g_decayed.numel();
    for (T* pend : rc.pending) {
      for (int64_t i = 0; i < n; ++i) gd[i] = gd[i] + pend[i];
    }
    rc.info->syn->assign_state("g", rc.g_decayed);
  }
  for (auto& pj : projs) {
    if (pj.delay == 0) continue;
    const int64_t n_pre = pops[pj.info->pre].n_global;
    // Every projection sharing the history wrote the same spikes into its ring: the last
    // write-back stands for all.
    at::Tensor history = at::zeros({static_cast<int64_t>(pj.ring.size()), n_pre}, fopt);
    T* h = history.data_ptr<T>();
    for (size_t s = 0; s < pj.ring.size(); ++s) {
      for (int32_t idx : pj.ring[s]) h[static_cast<int64_t>(s) * n_pre + idx] = T(1);
    }
    pj.info->proj->delay()->assign_state("history", history);
  }
  for (auto& pj : projs) {
    if (!pj.stp) continue;
    pj.info->proj->stp()->assign_state("u", pj.stp_u);
    pj.info->proj->stp()->assign_state("x", pj.stp_x);
  }
  for (auto& pj : projs) {
    if (!pj.queued || !(pj.stp || pj.plastic)) continue;
    const AlignPostProj& proj = *pj.info->proj;
    const auto ring_back = [&](const std::shared_ptr<Delay>& delay, const std::vector<T>& ring, int64_t len) {
      const at::Tensor h = at::empty({len, pj.n_rows}, fopt);
      std::copy(ring.begin(), ring.end(), h.mutable_data_ptr<T>());
      delay->assign_state("history", h.to(delay->state("history").scalar_type()));
    };
    if (pj.stp) ring_back(proj.stp_release_history(), pj.release_ring, pj.release_len);
    if (pj.plastic) {
      ring_back(proj.stdp_trace_history(), pj.trace_ring, pj.trace_len);
      const T* learnt = pj.q_weights.template const_data_ptr<T>();
      for (size_t q = 0; q < pj.q_order.size(); ++q) pj.plastic_weights[pj.q_order[q]] = learnt[q];
    }
  }
  for (auto& pj : projs) {
    if (!pj.plastic) continue;
    pj.info->proj->assign_state("stdp_pre_trace", pj.pre_trace);
    pj.info->proj->assign_state("stdp_post_trace", pj.post_trace);
    // The weights were written in place, outside autograd's view.
    torch::autograd::impl::bump_version(static_cast<const CsrComm&>(*pj.info->proj->comm()).weights());
  }
  for (size_t m = 0; m < options.monitors.size(); ++m) {
    const auto& key = options.monitors[m].key();
    result.values[key] = recordings[m];
    result.times[key] = torch::tensor(times[m], torch::kDouble);
    result.order.push_back(key);
  }
  // The state was written back first, so the caller can look at it.
  if (!failure.empty()) throw NonFiniteError(failure, failed_step, failed_step * ctx.dt);
  return result;
}

}  // namespace

std::string fast_engine_unsupported(DynamicalSystem& system, const RunnerOptions& options) {
  Layout L;
  return unsupported(system, options, L);
}

namespace detail {

RunResult run_fast(DynamicalSystem& system, const RunnerOptions& options, Context& ctx, int64_t steps,
                   const Segment& segment) {
  Layout L;
  const std::string why = unsupported(system, options, L);
  TORCH_CHECK(why.empty(), "Runner: the fast engine cannot run this network: ", why,
              " (engine \"auto\" runs it on the module engine)");
  at::NoGradGuard no_grad;
  return L.dtype == at::kDouble ? run_typed<double>(system, L, options, ctx, steps, segment)
                                : run_typed<float>(system, L, options, ctx, steps, segment);
}

std::map<std::string, std::string> per_neuron_states(DynamicalSystem& system, const RunnerOptions& options) {
  Layout L;
  const std::string why = unsupported(system, options, L);
  TORCH_CHECK(why.empty(), "Runner: the fast engine cannot run this network: ", why);
  std::map<std::string, std::string> out;
  const auto under = [](const std::string& path, const std::string& prefix) {
    return path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 &&
           path.find('.', prefix.size()) == std::string::npos;
  };
  for (const auto& path : system.state_paths()) {
    for (const auto& pop : L.pops) {
      if (under(path, pop.path + ".")) out[path] = pop.path;
      if (pop.cond) {
        for (const auto& [name, channel] : pop.cond->children()) {
          if (under(path, pop.path + "." + name + ".")) out[path] = pop.path;
        }
      }
    }
    for (const auto& rec : L.receptors) {
      if (under(path, rec.owner_path + ".syn.")) out[path] = L.pops[static_cast<size_t>(rec.pop)].path;
    }
  }
  return out;
}

}  // namespace detail

}  // namespace brain
