// Wang (2002)'s decision-making network builder (BrainPy's formulation; config:
// models/decision_making.json).
#include <brain/models/networks.h>

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <brain/dyn/inputs.h>
#include <brain/models/synapses.h>

namespace brain {

namespace {

using inputs::mix_seed;

// Adds the stimulus of pools A and B to the excitatory Poisson input's rates. The rates of an
// interval are drawn from a generator keyed on (seed, interval), so a replayed or resumed run
// sees the same stimulus; one draw per trial (batch row) and pool.
class DecisionStimulus : public DynamicalSystem {
 public:
  DecisionStimulus(std::shared_ptr<PoissonGroup> target, at::Tensor pool_a, at::Tensor pool_b,
                   const DecisionNetSpec& spec, uint64_t seed)
      : DynamicalSystem("DecisionStimulus"), target_(std::move(target)), spec_(spec), seed_(seed) {
    pool_a_ = register_buffer("pool_a", pool_a);
    pool_b_ = register_buffer("pool_b", pool_b);
    coherence_ = register_buffer("coherence", torch::tensor(spec.coherence, torch::kDouble));
  }

  void update(const Context& ctx) override {
    if (ctx.clock.defined()) return update_on_clock(ctx);
    if (ctx.t < spec_.stim_on || ctx.t >= spec_.stim_off) return;
    const auto interval = static_cast<int64_t>(std::floor((ctx.t - spec_.stim_on) / spec_.stim_interval));
    if (interval != cached_interval_ || !cached_.defined()) {
      cached_ = per_neuron(interval_rates(interval));
      cached_interval_ = interval;
    }
    target_->assign_state("rate_input", target_->state("rate_input") + cached_);
  }

  // Replayed steps find the time and the interval from the clock, and the interval's rates in
  // a table of every interval built on the first such step (the runner's warm-up).
  bool replayable() const override { return true; }

 private:
  // The stimulus rates of pools A and B in one interval, [trials, 2], as pool_a_'s dtype.
  at::Tensor interval_rates(int64_t interval) const {
    const int64_t trials = std::max<int64_t>(1, batch_size());
    auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed_, static_cast<uint64_t>(interval)));
    const at::Tensor z = at::randn({trials, 2}, gen, torch::kDouble);
    const at::Tensor c = coherence_.to(torch::kCPU).expand({trials}) / 100.0;
    const at::Tensor mean = torch::stack({spec_.mu0 * (1 + c), spec_.mu0 * (1 - c)}, 1);
    return torch::clamp_min(mean + spec_.stim_sigma * z, 0.0).to(pool_a_.options());
  }

  // [trials, n_E] (or [n_E] unbatched): each pool's neurons get their pool's rate.
  at::Tensor per_neuron(const at::Tensor& rates) const {
    at::Tensor all = rates.select(1, 0).unsqueeze(1) * pool_a_ + rates.select(1, 1).unsqueeze(1) * pool_b_;
    return batch_size() > 0 ? all : all.squeeze(0);
  }

  void update_on_clock(const Context& ctx) {
    const auto intervals = static_cast<int64_t>(std::floor((spec_.stim_off - spec_.stim_on) / spec_.stim_interval)) + 1;
    if (!table_.defined() || table_.device() != pool_a_.device()) {
      std::vector<at::Tensor> rows;
      for (int64_t k = 0; k < intervals; ++k) rows.push_back(interval_rates(k));
      table_ = torch::stack(rows);  // [intervals, trials, 2]
    }
    // The same IEEE operations as the host's t = step * dt and floor((t - on) / interval).
    const at::Tensor t = ctx.clock.to(torch::kDouble) * ctx.dt;
    const at::Tensor on = (t >= spec_.stim_on).logical_and(t < spec_.stim_off);
    const at::Tensor interval =
        torch::floor((t - spec_.stim_on) / spec_.stim_interval).clamp(0, intervals - 1).to(torch::kLong).reshape({1});
    const at::Tensor& rate_input = target_->state("rate_input");
    const at::Tensor added = rate_input + per_neuron(table_.index_select(0, interval).squeeze(0));
    target_->assign_state("rate_input", torch::where(on, added, rate_input));
  }

 public:

 protected:
  void reset_own_state(int64_t batch_size) override {
    const int64_t trials = std::max<int64_t>(1, batch_size);
    TORCH_CHECK(coherence_.numel() == 1 || coherence_.numel() == trials, "decision network: ", coherence_.numel(),
                " coherence values for ", trials, " trials (reset_state's batch size); give one per trial or one "
                "for all");
    cached_ = at::Tensor();
    table_ = at::Tensor();  // its rows are per trial
  }

 private:
  std::shared_ptr<PoissonGroup> target_;
  DecisionNetSpec spec_;
  uint64_t seed_;
  at::Tensor pool_a_, pool_b_, coherence_, cached_;
  int64_t cached_interval_ = -1;
  at::Tensor table_;  // replayed steps: every interval's rates, [intervals, trials, 2]
};

// The instantaneous rates (Hz) of the pools A, B, non-selective and of I, each step: state
// "rate" [..., 4], for monitors (a few numbers per step instead of every neuron's spikes).
class PoolRates : public DynamicalSystem {
 public:
  PoolRates(std::shared_ptr<NeuronGroup> E, std::shared_ptr<NeuronGroup> I, at::Tensor labels, at::Tensor pool_sizes)
      : DynamicalSystem("PoolRates"), E_(std::move(E)), I_(std::move(I)) {
    labels_ = register_buffer("labels", labels);
    sizes_ = register_buffer("pool_sizes", pool_sizes);
  }

  void update(const Context& ctx) override {
    const at::Tensor& sE = E_->state("spike");
    std::vector<int64_t> shape = sE.sizes().vec();
    shape.back() = 3;
    const at::Tensor pools = torch::zeros(shape, sE.options()).index_add_(-1, labels_, sE);
    const at::Tensor counts = torch::cat({pools, I_->state("spike").sum(-1, /*keepdim=*/true)}, -1);
    set_state("rate", counts / sizes_ * (1000.0 / ctx.dt));
  }
  bool replayable() const override { return true; }

 protected:
  void reset_own_state(int64_t) override { set_state("rate", torch::zeros(state_shape(4), E_->options())); }

 private:
  std::shared_ptr<NeuronGroup> E_, I_;
  at::Tensor labels_, sizes_;
};

}  // namespace

std::shared_ptr<DynSysGroup> build_decision_network(const DecisionNetSpec& spec, uint64_t seed, c10::Device device,
                                                    double dt_ms) {
  TORCH_CHECK(spec.scale > 0, "decision network: scale must be positive, got ", spec.scale);
  TORCH_CHECK(spec.f > 0 && spec.f < 0.5, "decision network: f must lie in (0, 0.5), got ", spec.f);
  TORCH_CHECK(!spec.coherence.empty(), "decision network: coherence needs at least one value");
  for (double c : spec.coherence) {
    TORCH_CHECK(c >= -100 && c <= 100, "decision network: coherence must lie in [-100, 100] percent, got ", c);
  }
  TORCH_CHECK(spec.stim_interval > 0 && spec.stim_sigma >= 0 && spec.mu0 >= 0 && spec.background_hz >= 0,
              "decision network: stim_interval must be positive; stim_sigma, mu0 and background_hz >= 0");
  TORCH_CHECK(spec.delay_ms >= 0, "decision network: delay_ms must be >= 0");
  TORCH_CHECK(spec.dtype == "float32" || spec.dtype == "float64",
              "decision network: dtype must be float32 or float64, got '", spec.dtype, "'");
  const auto options = at::TensorOptions(spec.dtype == "float64" ? at::kDouble : at::kFloat).device(device);
  const auto n_E = static_cast<int64_t>(std::llround(1600 * spec.scale));
  const auto n_I = static_cast<int64_t>(std::llround(400 * spec.scale));
  const auto n_pool = static_cast<int64_t>(std::llround(spec.f * static_cast<double>(n_E)));
  TORCH_CHECK(n_pool > 0 && n_I > 0, "decision network: scale ", spec.scale, " leaves a pool empty");
  const int64_t n_rest = n_E - 2 * n_pool;
  const double w_minus = 1.0 - spec.f * (spec.w_plus - 1.0) / (1.0 - spec.f);
  const int64_t delay = std::llround(spec.delay_ms / dt_ms);

  // Pool labels of E: 0 = A, 1 = B, 2 = non-selective.
  const at::Tensor labels = torch::cat({torch::zeros({n_pool}, torch::kLong), torch::ones({n_pool}, torch::kLong),
                                        torch::full({n_rest}, 2, torch::kLong)})
                                .to(device);
  const at::Tensor one_group_I = torch::zeros({n_I}, torch::kLong).to(device);

  auto input_E = std::make_shared<PoissonGroup>(n_E, spec.background_hz, mix_seed(seed, 1));
  auto input_I = std::make_shared<PoissonGroup>(n_I, spec.background_hz, mix_seed(seed, 2));
  input_E->to(device);
  input_I->to(device);
  const auto pool_mask = [&](int64_t label) { return labels.eq(label).to(at::kFloat); };
  auto net = std::make_shared<DynSysGroup>("DecisionMaking");
  // The stimulus first: the Poisson input reads its rates when it updates.
  net->add("stimulus", std::make_shared<DecisionStimulus>(input_E, pool_mask(0), pool_mask(1), spec, mix_seed(seed, 3)));
  net->add("input_E", input_E);
  net->add("input_I", input_I);

  LifParams pE;
  pE.V_rest = -70, pE.V_reset = -55, pE.V_th = -50, pE.tau = 20, pE.R = 0.04, pE.tau_ref = 2;
  LifParams pI = pE;
  pI.tau = 10, pI.R = 0.05, pI.tau_ref = 1;
  auto E = net->add("E", std::make_shared<LIF>(n_E, pE, options));
  auto I = net->add("I", std::make_shared<LIF>(n_I, pI, options));

  const auto scalar = [&](double w) { return torch::tensor(w, options); };
  const double s = spec.scale;
  const at::Tensor W_EE = torch::tensor({{spec.w_plus, w_minus, 1.0}, {w_minus, spec.w_plus, 1.0}, {w_minus, w_minus, 1.0}},
                                        options);
  const at::Tensor W_EI = torch::ones({3, 1}, options);

  // AMPA: one state per population, shared by the background and the recurrent projections.
  auto ampa_E = std::make_shared<Expon>(n_E, 2.0, options);
  auto ampa_I = std::make_shared<Expon>(n_I, 2.0, options);
  auto to_E_ampa = std::make_shared<COBA>(0.0), to_I_ampa = std::make_shared<COBA>(0.0);
  net->add("input2E", std::make_shared<AlignPostProj>(input_E, std::make_shared<OneToOne>(n_E, scalar(spec.g_ext_E)),
                                                      ampa_E, to_E_ampa, E));
  net->add("input2I", std::make_shared<AlignPostProj>(input_I, std::make_shared<OneToOne>(n_I, scalar(spec.g_ext_I)),
                                                      ampa_I, to_I_ampa, I));
  net->add("E2E_AMPA", std::make_shared<AlignPostProj>(
                           E, std::make_shared<GroupComm>(labels, labels, W_EE * (spec.g_EE_AMPA / s)), ampa_E,
                           to_E_ampa, E, delay));
  net->add("E2I_AMPA", std::make_shared<AlignPostProj>(
                           E, std::make_shared<GroupComm>(labels, one_group_I, W_EI * (spec.g_EI_AMPA / s)), ampa_I,
                           to_I_ampa, I, delay));
  // NMDA: saturating, so on the presynaptic side (AlignPre), one state of E for both targets.
  auto nmda = std::make_shared<NMDA>(n_E, NMDAParams{100.0, 2.0, 0.5}, options);
  net->add("E2E_NMDA", std::make_shared<AlignPreProj>(
                           E, nmda, std::make_shared<GroupComm>(labels, labels, W_EE * (spec.g_EE_NMDA / s)),
                           std::make_shared<MgBlock>(0.0, 1.0), E, delay));
  net->add("E2I_NMDA", std::make_shared<AlignPreProj>(
                           E, nmda, std::make_shared<GroupComm>(labels, one_group_I, W_EI * (spec.g_EI_NMDA / s)),
                           std::make_shared<MgBlock>(0.0, 1.0), I, delay));
  // GABA_A from I, all-to-all.
  net->add("I2E", std::make_shared<AlignPostProj>(I, std::make_shared<AllToAll>(n_I, n_E, scalar(spec.g_IE_GABA / s)),
                                                  std::make_shared<Expon>(n_E, 5.0, options),
                                                  std::make_shared<COBA>(-70.0), E, delay));
  net->add("I2I", std::make_shared<AlignPostProj>(I, std::make_shared<AllToAll>(n_I, n_I, scalar(spec.g_II_GABA / s)),
                                                  std::make_shared<Expon>(n_I, 5.0, options),
                                                  std::make_shared<COBA>(-70.0), I, delay));
  const at::Tensor sizes = torch::tensor({static_cast<double>(n_pool), static_cast<double>(n_pool),
                                          static_cast<double>(n_rest), static_cast<double>(n_I)},
                                         options);
  net->add("rates", std::make_shared<PoolRates>(E, I, labels, sizes));
  return net;
}

}  // namespace brain
