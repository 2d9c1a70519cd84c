// Synapses, synaptic outputs, communication and projections (SPEC section 4).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include <brain/csr.h>
#include <brain/dyn/delay.h>
#include <brain/dyn/system.h>
#include <brain/models/neurons.h>

namespace brain {

// ---- Synaptic dynamics -----------------------------------------------------------------
// State "g" over n neurons (the postsynaptic population for AlignPost, the presynaptic one
// for AlignPre). deliver() relaxes the state over the step, once per step however many
// projections deliver into it (that is what merging relies on), then adds the input that
// arrived; update() alone relaxes with no input.
class BRAIN_API Synapse : public DynamicalSystem {
 public:
  Synapse(std::string name, int64_t n, at::TensorOptions options) : DynamicalSystem(std::move(name)), n_(n), options_(options) {}
  void deliver(const Context& ctx, const at::Tensor& input);
  void update(const Context& ctx) override;
  const at::Tensor& g() const { return state("g"); }
  int64_t size() const { return n_; }
  // Whether deliver() already ran in this step: AlignPre projections that share one
  // presynaptic synapse deliver the spikes once. The state must also be the one that delivery
  // left: after a checkpoint is loaded (or another engine wrote g) the same step number is a
  // new step, e.g. when a run is rewound to the step it last executed.
  bool delivered_at(int64_t step) const { return last_step_ == step && delivered_g_.is_same(state("g")); }
  // AlignPre sharing: the first projection binds its presynaptic system; another one with a
  // different presynaptic side is an error (its spikes would be mixed into foreign state).
  void bind_presynaptic(const DynamicalSystem* pre);

 protected:
  virtual void advance(const Context& ctx) = 0;       // relax over one step
  virtual void arrive(const at::Tensor& input) = 0;  // add what arrived this step
  // Subclasses call this from reset_own_state: the next delivery relaxes again.
  void restart_clock() {
    last_step_ = std::numeric_limits<int64_t>::min();
    delivered_g_ = at::Tensor();
  }
  int64_t n_;
  at::TensorOptions options_;

 private:
  int64_t last_step_ = std::numeric_limits<int64_t>::min();
  at::Tensor delivered_g_;  // g as the last deliver() or update() left it (a reference, not a copy)
  const DynamicalSystem* presynaptic_ = nullptr;
};

// Exponential decay: dg/dt = -g / tau, g += input on arrival; integrated exactly
// ("exp_euler") or by forward Euler ("euler").
class BRAIN_API Expon : public Synapse {
 public:
  bool replayable() const override { return true; }
  Expon(int64_t n, double tau_ms, at::TensorOptions options = at::kFloat, std::string method = "exp_euler");
  double tau() const { return tau_; }
  bool euler() const { return euler_; }
  // g at reset_state (default 0), given the state's shape; e.g. random initial conductances
  // as in the COBA-HH benchmark.
  void set_g_initializer(std::function<at::Tensor(const std::vector<int64_t>&)> init) { g_init_ = std::move(init); }
  bool has_g_initializer() const { return static_cast<bool>(g_init_); }

 protected:
  void advance(const Context& ctx) override;
  void arrive(const at::Tensor& input) override;
  void reset_own_state(int64_t batch_size) override;

 private:
  double tau_;
  bool euler_;
  std::function<at::Tensor(const std::vector<int64_t>&)> g_init_;
};

// Difference of exponentials, normalised so a unit arrival peaks at exactly 1:
//   g = A (g_d - g_r), g_d and g_r decaying with tau_decay and tau_rise, both += input;
//   peak at t_p = tau_d tau_r / (tau_d - tau_r) ln(tau_d / tau_r), A = 1 / (e^{-t_p/tau_d} - e^{-t_p/tau_r}).
// Integrated exactly.
class BRAIN_API DualExpon : public Synapse {
 public:
  bool replayable() const override { return true; }
  DualExpon(int64_t n, double tau_rise_ms, double tau_decay_ms, at::TensorOptions options = at::kFloat);

 protected:
  void advance(const Context& ctx) override;
  void arrive(const at::Tensor& input) override;
  void reset_own_state(int64_t batch_size) override;

 private:
  double tau_rise_, tau_decay_, norm_;
};

// Alpha function: a unit arrival gives g(t) = (t / tau) e^{1 - t/tau}, peaking at 1 at t = tau.
// Two linear variables, dh/dt = -h/tau (h += input), dg/dt = (-g + e h)/tau, integrated exactly.
class BRAIN_API Alpha : public Synapse {
 public:
  bool replayable() const override { return true; }
  Alpha(int64_t n, double tau_ms, at::TensorOptions options = at::kFloat);

 protected:
  void advance(const Context& ctx) override;
  void arrive(const at::Tensor& input) override;
  void reset_own_state(int64_t batch_size) override;

 private:
  double tau_;
};

// Kinetic receptor (Destexhe, Mainen & Sejnowski 1994): a spike releases transmitter of
// concentration T for T_dur ms, and the open fraction follows
//   dg/dt = alpha T (1 - g) - beta g,
// integrated exactly (T is constant over a step). Nonlinear in g: use it with AlignPre
// (n = the presynaptic population). Defaults are AMPA's; ampa()/gaba_a() give both sets.
struct KineticParams {
  double alpha = 0.98;  // 1/(mM ms)
  double beta = 0.18;   // 1/ms
  double T = 0.5;       // mM
  double T_dur = 0.5;   // ms
};
class BRAIN_API Kinetic : public Synapse {
 public:
  bool replayable() const override { return true; }
  Kinetic(int64_t n, KineticParams p = {}, at::TensorOptions options = at::kFloat, std::string name = "AMPA");
  static KineticParams ampa() { return {0.98, 0.18, 0.5, 0.5}; }
  static KineticParams gaba_a() { return {0.53, 0.18, 1.0, 1.0}; }

 protected:
  void advance(const Context& ctx) override;
  void arrive(const at::Tensor& input) override;
  void reset_own_state(int64_t batch_size) override;

 private:
  KineticParams p_;
  at::Tensor step_;  // the step being delivered, ctx.step_value() (set by advance)
};

// NMDA (Jahr & Stevens; BrainPy's form):
//   dg/dt = -g / tau_decay + a x (1 - g),   dx/dt = -x / tau_rise,   x += input on arrival
// integrated with RK4 over each step. Pair it with MgBlock. Nonlinear: use AlignPre.
struct NMDAParams {
  double tau_decay = 100.0, tau_rise = 2.0, a = 0.5;
};
class BRAIN_API NMDA : public Synapse {
 public:
  bool replayable() const override { return true; }
  NMDA(int64_t n, NMDAParams p = {}, at::TensorOptions options = at::kFloat);

 protected:
  void advance(const Context& ctx) override;
  void arrive(const at::Tensor& input) override;
  void reset_own_state(int64_t batch_size) override;

 private:
  NMDAParams p_;
};

// NMDA with second-order receptor kinetics (BrainPy's BioNMDA, after Destexhe, Mainen &
// Sejnowski 1994): a spike releases transmitter T (mM) for T_dur ms, as in Kinetic, and
//   dx/dt = alpha2 T (1 - x) - beta2 x,   dg/dt = alpha1 x (1 - g) - beta1 g,
// integrated with RK4 over each step (T constant within it). g rises in a few ms and decays
// with ~1 / beta1 (100 ms). Pair it with MgBlock. Nonlinear: use AlignPre.
struct BioNMDAParams {
  double alpha1 = 2.0;   // 1/ms
  double beta1 = 0.01;   // 1/ms
  double alpha2 = 0.2;   // 1/(mM ms)
  double beta2 = 0.5;    // 1/ms
  double T = 1.0;        // mM
  double T_dur = 0.5;    // ms
};
class BRAIN_API BioNMDA : public Synapse {
 public:
  bool replayable() const override { return true; }
  BioNMDA(int64_t n, BioNMDAParams p = {}, at::TensorOptions options = at::kFloat);

 protected:
  void advance(const Context& ctx) override;
  void arrive(const at::Tensor& input) override;
  void reset_own_state(int64_t batch_size) override;

 private:
  BioNMDAParams p_;
  at::Tensor step_;  // as Kinetic's
};

// ---- Synaptic outputs: conductance -> current ------------------------------------------
struct BRAIN_API SynOutput {
  virtual ~SynOutput() = default;
  virtual at::Tensor current(const at::Tensor& g, const at::Tensor& V) const = 0;
};
// Conductance-based: g (E - V), E in mV.
struct BRAIN_API COBA : SynOutput {
  explicit COBA(double E) : E(E) {}
  at::Tensor current(const at::Tensor& g, const at::Tensor& V) const override { return g * (E - V); }
  double E;
};
// Current-based: g itself.
struct BRAIN_API CUBA : SynOutput {
  at::Tensor current(const at::Tensor& g, const at::Tensor&) const override { return g; }
};

// Conductance with the voltage-dependent magnesium block of NMDA receptors (Jahr & Stevens
// 1990): g (E - V) / (1 + [Mg] / beta exp(-alpha V)), [Mg] in mM.
struct BRAIN_API MgBlock : SynOutput {
  explicit MgBlock(double E = 0.0, double cc_Mg = 1.2, double alpha = 0.062, double beta = 3.57)
      : E(E), cc_Mg(cc_Mg), alpha(alpha), beta(beta) {}
  at::Tensor current(const at::Tensor& g, const at::Tensor& V) const override;
  double E, cc_Mg, alpha, beta;
};

// ---- Communication: presynaptic spikes -> postsynaptic input ---------------------------
class BRAIN_API Comm : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& spikes) = 0;
  virtual int64_t n_pre() const = 0;
  virtual int64_t n_post() const = 0;
  BRAIN_MOVES_FLOATING_TENSORS_ONLY
};

// Sparse connectivity (rows presynaptic): input = A^T @ spikes, by brain::event_csr_matmul
// (event = true, the default) or brain::csr_matmul. weights: one per synapse or one value;
// a parameter, so it trains when given requires_grad.
class BRAIN_API CsrComm : public Comm {
 public:
  CsrComm(const CsrMatrix& conn, at::Tensor weights, bool event = true);
  at::Tensor forward(const at::Tensor& spikes) override;
  // forward with `weights` in place of the module's own (same shape): a functional call.
  at::Tensor forward_with(const at::Tensor& spikes, const at::Tensor& weights) const;
  int64_t n_pre() const override { return n_pre_; }
  int64_t n_post() const override { return n_post_; }
  const at::Tensor& weights() const { return weights_; }
  const at::Tensor& indptr() const { return indptr_; }
  const at::Tensor& indices() const { return indices_; }
  bool event() const { return event_; }

 private:
  at::Tensor indptr_, indices_, weights_;
  int64_t n_pre_, n_post_;
  bool event_;
};

// JIT connectivity (never stored; SPEC section 2): A [n_pre, n_post] with each synapse present
// with probability prob, regenerated from seed every step; input = A^T @ spikes by
// brain::event_jitc_matmul (event = true) or brain::jitc_matmul. weight: w for dist "homo",
// [low, high] for "uniform", [mean, std] for "normal"; a parameter (trainable when it
// requires grad). Memory is O(n_pre + n_post) however many synapses there are.
class BRAIN_API JitComm : public Comm {
 public:
  JitComm(int64_t n_pre, int64_t n_post, double prob, int64_t seed, at::Tensor weight,
          std::string dist = "homo", bool event = true);
  at::Tensor forward(const at::Tensor& spikes) override;
  // forward with `weight` in place of the module's own (same shape): a functional call.
  at::Tensor forward_with(const at::Tensor& spikes, const at::Tensor& weight) const;
  int64_t n_pre() const override { return n_pre_; }
  int64_t n_post() const override { return n_post_; }
  double prob() const { return prob_; }
  int64_t seed() const { return seed_; }
  const std::string& dist() const { return dist_; }
  const at::Tensor& weight() const { return weight_; }
  // The connectivity as CSR (indptr, indices, values), e.g. to inspect it or to switch to
  // CsrComm; reads nnz back from the GPU.
  std::tuple<at::Tensor, at::Tensor, at::Tensor> to_csr() const;

  // Columns [col_offset, col_offset + n_post) of the JIT matrix [n_pre, n_post_total] with this
  // seed: one rank's postsynaptic neurons in a distributed run (brain/dist/dist.h). The fast
  // engine generates only the column blocks that overlap the window; forward() computes the
  // whole product and keeps the window (O(n_post_total) memory per step).
  static std::shared_ptr<JitComm> columns(int64_t n_pre, int64_t n_post_total, int64_t col_offset, int64_t n_post,
                                          double prob, int64_t seed, at::Tensor weight, std::string dist = "homo",
                                          bool event = true);
  int64_t col_offset() const { return col_offset_; }
  int64_t n_post_total() const { return n_post_total_; }

 private:
  int64_t n_pre_, n_post_;
  int64_t col_offset_ = 0, n_post_total_ = 0;
  double prob_;
  int64_t seed_;
  std::string dist_;
  bool event_;
  at::Tensor weight_;
};

// Dense weights W [n_pre, n_post]: input = spikes @ W.
class BRAIN_API DenseComm : public Comm {
 public:
  explicit DenseComm(at::Tensor weights);
  at::Tensor forward(const at::Tensor& spikes) override;
  int64_t n_pre() const override { return weights_.size(0); }
  int64_t n_post() const override { return weights_.size(1); }
  const at::Tensor& weights() const { return weights_; }

 private:
  at::Tensor weights_;
};

// input[i] = w * spikes[i] (w scalar or [n]).
class BRAIN_API OneToOne : public Comm {
 public:
  OneToOne(int64_t n, at::Tensor weight);
  at::Tensor forward(const at::Tensor& spikes) override;
  int64_t n_pre() const override { return n_; }
  int64_t n_post() const override { return n_; }

 private:
  int64_t n_;
  at::Tensor weight_;
};

// Every presynaptic neuron to every postsynaptic one with one weight w (optionally without
// self-connections for a population onto itself): input[j] = w * (sum(spikes) - [no self] spikes[j]).
class BRAIN_API AllToAll : public Comm {
 public:
  AllToAll(int64_t n_pre, int64_t n_post, at::Tensor weight, bool include_self = true);
  at::Tensor forward(const at::Tensor& spikes) override;
  int64_t n_pre() const override { return n_pre_; }
  int64_t n_post() const override { return n_post_; }

 private:
  int64_t n_pre_, n_post_;
  at::Tensor weight_;
  bool include_self_;
};

// All-to-all between labelled groups: presynaptic neuron i belongs to group pre_groups[i],
// postsynaptic neuron j to post_groups[j], and w_ij = weights[pre_groups[i], post_groups[j]]
// (self-connections included). input[j] = sum_g weights[g, post_groups[j]] * (sum of spikes in
// group g): O(n_pre + n_post + G_pre G_post) per step however dense the coupling (e.g. the
// selective and non-selective pools of Wang 2002). weights [G_pre, G_post] is a parameter.
class BRAIN_API GroupComm : public Comm {
 public:
  GroupComm(at::Tensor pre_groups, at::Tensor post_groups, at::Tensor weights);
  at::Tensor forward(const at::Tensor& spikes) override;
  int64_t n_pre() const override { return pre_groups_.numel(); }
  int64_t n_post() const override { return post_groups_.numel(); }
  const at::Tensor& weights() const { return weights_; }

 private:
  at::Tensor pre_groups_, post_groups_, weights_;
};

// ---- Short-term plasticity (Tsodyks-Markram) ---------------------------------------------
// Per presynaptic neuron: utilisation u (facilitation, decays to 0 with tau_f) and resources
// x (depression, recover to 1 with tau_d). On a spike, u <- u + U (1 - u), the release
// u x scales that spike, then x <- x - u x. Starting from u = 0, x = 1, the first spike
// releases U (Tsodyks, Pawelzik & Markram 1998). Between spikes both relax exactly.
// STD alone: tau_f -> 0, i.e. set facilitation = false (u is U at every spike).
struct STPParams {
  double U = 0.15;
  double tau_f = 1500.0;  // ms
  double tau_d = 200.0;   // ms
  bool facilitation = true;
};
class BRAIN_API STP : public DynamicalSystem {
 public:
  bool replayable() const override { return true; }
  STP(int64_t n, STPParams p = {}, at::TensorOptions options = at::kFloat);
  // Advances one step and returns spikes scaled by their release (u x).
  at::Tensor process(const Context& ctx, const at::Tensor& spikes);
  void update(const Context& ctx) override;
  const STPParams& params() const { return p_; }

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  int64_t n_;
  STPParams p_;
  at::TensorOptions options_;
};

// ---- Projections -----------------------------------------------------------------------
// AlignPost: the synaptic state lives on the postsynaptic side (valid for linear synapses,
// O(n_post) memory). Each step, after the neurons: the presynaptic spikes of delay_steps
// steps ago go through comm into syn; the postsynaptic neurons read out->current(g, V) on
// their next update. The presynaptic side is any system with a "spike" state of
// comm->n_pre() neurons (a neuron group, a Poisson or spike-time group).
//
// Merging: projections given the same syn and out objects onto one population share that
// synaptic state: it relaxes once per step, every projection adds its input, and the
// population sees one current (the first projection owns the state). For the same linear
// synapse this equals separate synapses, with one state instead of many.
class BRAIN_API AlignPostProj : public DynamicalSystem {
 public:
  bool replayable() const override { return true; }
  AlignPostProj(std::shared_ptr<DynamicalSystem> pre, std::shared_ptr<Comm> comm, std::shared_ptr<Synapse> syn,
                std::shared_ptr<SynOutput> out, std::shared_ptr<NeuronGroup> post, int64_t delay_steps = 0);
  void update(const Context& ctx) override;

  // Short-term plasticity on the presynaptic spikes (after the delay). Returns it.
  std::shared_ptr<STP> add_stp(STPParams params);

  // Pair-based additive STDP (Song, Miller & Abbott 2000) on the weights: traces
  // a_pre (tau_plus) and a_post (tau_minus) jump by 1 on spikes. Each step, after delivery:
  // a presynaptic spike depresses its synapses by A_minus * a_post, a postsynaptic spike
  // potentiates its synapses by A_plus * a_pre (both clipped to [w_min, w_max]), then the
  // traces take this step's spikes, so a pre and post spike in the same step change nothing.
  // Needs a CsrComm with one weight per synapse (event-driven: O(active synapses)) or a
  // DenseComm (every synapse of the [n_pre, n_post] matrix; O(n_pre n_post) per step).
  struct STDPParams {
    double tau_plus = 20.0, tau_minus = 20.0;  // ms
    double A_plus = 0.01, A_minus = 0.0105;
    double w_min = 0.0, w_max = 1.0;
  };
  void add_stdp(STDPParams params);

  // Heterogeneous delays: one delay per synapse of the CsrComm, in steps (an integer tensor
  // [nnz], the CSR's order), in place of the uniform delay_steps (which must be 0). A spike
  // of presynaptic neuron i at step s reaches synapse k, of row i, at step s + delays[k], as a
  // uniform delay would. The history of pre's spikes is the one ring the other delayed
  // projections from pre read (sized by the longest delay); the delivery is HeteroDelayCsr's
  // (by delay group, event-driven when the CsrComm is, or per synapse; see delay.h), with the
  // CsrComm's weights, so gradients reach them. Call before reset_state().
  // STP and STDP act on a spike's arrival, which these delays make per synapse; both are
  // functions of the presynaptic train shifted by the synapse's delay, so they are kept per
  // presynaptic neuron and read d steps late, as one projection per delay would see them:
  //  - STP: the releases u x of pre's neurons go into a ring of their own (sized by the
  //    longest delay), which the synapses read in place of the spikes.
  //  - STDP: a ring of the presynaptic traces (before each step's spikes) gives synapse k at
  //    step s the trace of the spikes that have arrived at it; a spike emitted at s - d_k
  //    depresses synapse k at s (by A_minus * a_post then), and a postsynaptic spike
  //    potentiates it by A_plus times that trace. The state is O(n_pre) per step of delay,
  //    not O(nnz). On the CPU outside replay one fused pass visits the synapses of the rows
  //    that fired within the longest delay and of the postsynaptic neurons that fire; else
  //    tensor ops over every synapse (no host sync).
  // Either may be added before or after the delays.
  void set_synapse_delays(const at::Tensor& delay_steps);
  bool has_synapse_delays() const { return synapse_delays_ != nullptr; }
  const std::shared_ptr<HeteroDelayCsr>& synapse_delays() const { return synapse_delays_; }
  // With per-synapse delays: the rings of STP's releases and of STDP's presynaptic traces
  // (null without that plasticity), for engines that compile a network.
  const std::shared_ptr<Delay>& stp_release_history() const { return stp_releases_; }
  const std::shared_ptr<Delay>& stdp_trace_history() const { return stdp_trace_history_; }

  // The parts, for engines that compile a network (dyn/fast.h).
  const std::shared_ptr<DynamicalSystem>& pre() const { return pre_; }
  const std::shared_ptr<NeuronGroup>& post() const { return post_; }
  const std::shared_ptr<Comm>& comm() const { return comm_; }
  const std::shared_ptr<Synapse>& syn() const { return syn_; }
  const std::shared_ptr<SynOutput>& output() const { return out_; }
  // The presynaptic spike history, shared with the other delayed projections from pre: it
  // may hold more than delay_steps() + 1 steps.
  const std::shared_ptr<Delay>& delay() const { return delay_; }
  int64_t delay_steps() const { return delay_steps_; }
  bool has_stp() const { return stp_ != nullptr; }
  const std::shared_ptr<STP>& stp() const { return stp_; }
  bool has_stdp() const { return stdp_.has_value(); }
  const STDPParams& stdp_params() const {
    TORCH_CHECK(stdp_, "AlignPostProj: no STDP was added");
    return *stdp_;
  }

 private:
  std::shared_ptr<DynamicalSystem> pre_;
  std::shared_ptr<NeuronGroup> post_;
  std::shared_ptr<Comm> comm_;
  std::shared_ptr<Synapse> syn_;
  std::shared_ptr<SynOutput> out_;
  std::shared_ptr<Delay> delay_;  // shared by the delayed projections from pre (shared_spike_delay)
  bool pushes_delay_ = false;     // this projection created it, owns it and pushes into it
  int64_t delay_steps_;
  void reset_own_state(int64_t batch_size) override;
  std::shared_ptr<STP> stp_;
  std::optional<STDPParams> stdp_;
  at::Tensor csc_indptr_, csc_rows_, csc_perm_;
  std::shared_ptr<HeteroDelayCsr> synapse_delays_;
  bool pushes_for_zero_delays_ = false;  // reads this step's slot of a ring another projection pushes
  // Plasticity with per-synapse delays (set_synapse_delays): STP's releases and STDP's
  // presynaptic traces, each a ring read d_k steps late; each synapse's row and delay in the
  // CSR's order.
  std::shared_ptr<Delay> stp_releases_, stdp_trace_history_;
  at::Tensor stdp_rows_, stdp_delays_;
  void prepare_delayed_plasticity();
  void update_delayed_stdp(const Context& ctx, const at::Tensor& spikes);
};

// AlignPre: the synaptic state lives on the presynaptic side (any synapse, also nonlinear
// ones; O(n_pre) memory). Each step, after the neurons: syn (over the presynaptic neurons)
// takes this step's spikes; its g, delay_steps steps old, goes through comm to the
// postsynaptic side, state "g_post", which the neurons read as out->current(g_post, V).
// Create it with std::make_shared (the population's current refers back to it weakly).
// Merging: projections from one presynaptic population given the same syn object share that
// state (e.g. one NMDA state of E feeding both E and I); the spikes arrive in it once per step.
class BRAIN_API AlignPreProj : public DynamicalSystem {
 public:
  bool replayable() const override { return true; }
  AlignPreProj(std::shared_ptr<DynamicalSystem> pre, std::shared_ptr<Synapse> syn, std::shared_ptr<Comm> comm,
               std::shared_ptr<SynOutput> out, std::shared_ptr<NeuronGroup> post, int64_t delay_steps = 0);
  void update(const Context& ctx) override;

  // Heterogeneous delays: one delay per synapse of the CsrComm, in steps (an integer tensor
  // [nnz], the CSR's order), in place of the uniform delay_steps (which must be 0):
  //   g_post[post_k] = sum over synapses k of w_k * g[pre_k] as it was delays[k] steps ago,
  // the presynaptic state's value travelling along each synapse's axon, as a uniform delay
  // moves it. The projection keeps the history of g over the longest delay (its own ring: g
  // is this synapse's state, not the population's spikes); delivery is HeteroDelayCsr's (by
  // delay group through brain::csr_matmul, or per synapse; see delay.h) with the CsrComm's
  // weights, so gradients reach them and, through the history, the synapse and the spikes.
  // Call before reset_state().
  void set_synapse_delays(const at::Tensor& delay_steps);
  bool has_synapse_delays() const { return synapse_delays_ != nullptr; }
  const std::shared_ptr<HeteroDelayCsr>& synapse_delays() const { return synapse_delays_; }

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  std::shared_ptr<DynamicalSystem> pre_;
  std::shared_ptr<NeuronGroup> post_;
  std::shared_ptr<Synapse> syn_;
  std::shared_ptr<Comm> comm_;
  std::shared_ptr<SynOutput> out_;
  std::shared_ptr<Delay> delay_;
  int64_t delay_steps_;
  bool current_registered_ = false;
  std::shared_ptr<HeteroDelayCsr> synapse_delays_;
};

// ---- Connectivity ----------------------------------------------------------------------
// Each (pre, post) pair connected independently with probability prob; without
// self-connections when include_self is false (for a population onto itself). The matrix is
// the non-zero pattern of the JIT-connectivity matrix with the same (prob, seed, shape)
// (kernels/jitc/jitc_gen.h, minus the diagonal when include_self is false), so a CsrComm built
// from it and a JitComm with the same seed hold the same synapses. It is built on `device` by
// brain::ops::jitc_pattern (exact Bernoulli by geometric skipping, O(connections), in parallel;
// on CUDA one host sync to learn the synapse count); every device builds the same bits. Rows
// are sorted with increasing columns. Sizes below 2^32.
BRAIN_API CsrMatrix fixed_prob(int64_t n_pre, int64_t n_post, double prob, bool include_self, uint64_t seed,
                               c10::Device device = c10::kCPU, at::ScalarType index_dtype = at::kInt);
// Columns [col_lo, col_hi) of fixed_prob's matrix with the same arguments, renumbered from 0
// (n_pre x (col_hi - col_lo)): one rank's postsynaptic neurons in a distributed run. Only the
// column blocks that meet the window are walked and only the window's synapses are stored.
BRAIN_API CsrMatrix fixed_prob_columns(int64_t n_pre, int64_t n_post, double prob, bool include_self, uint64_t seed,
                                       int64_t col_lo, int64_t col_hi, c10::Device device = c10::kCPU,
                                       at::ScalarType index_dtype = at::kInt);

}  // namespace brain
