#include <brain/models/synapses.h>

#include <cmath>
#include <limits>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <brain/dyn/integrators.h>
#include <brain/ops.h>

namespace brain {

void Synapse::deliver(const Context& ctx, const at::Tensor& input) {
  if (!delivered_at(ctx.step)) {
    advance(ctx);
    last_step_ = ctx.step;
  }
  arrive(input);
  delivered_g_ = state("g");
}

void Synapse::update(const Context& ctx) {
  if (!delivered_at(ctx.step)) {
    advance(ctx);
    last_step_ = ctx.step;
    delivered_g_ = state("g");
  }
}

void Synapse::bind_presynaptic(const DynamicalSystem* pre) {
  TORCH_CHECK(presynaptic_ == nullptr || presynaptic_ == pre, name(),
              ": this synapse already takes the spikes of another presynaptic population; projections share a "
              "presynaptic synapse only when they share the presynaptic population");
  presynaptic_ = pre;
}

Expon::Expon(int64_t n, double tau_ms, at::TensorOptions options, std::string method)
    : Synapse("Expon", n, options), tau_(tau_ms), euler_(method == "euler") {
  TORCH_CHECK(tau_ms > 0, "Expon: tau must be positive (ms), got ", tau_ms);
  TORCH_CHECK(method == "exp_euler" || method == "euler", "Expon: method must be exp_euler or euler, got '", method, "'");
}

void Expon::reset_own_state(int64_t) {
  const auto opts = has_state("g") ? state("g").options() : placed(options_);
  const auto shape = state_shape(n_);
  at::Tensor g = g_init_ ? g_init_(shape).to(opts) : torch::zeros(shape, opts);
  TORCH_CHECK(g.sizes().vec() == shape, "Expon: the g initializer returned ", g.sizes(), ", expected ", shape);
  set_state("g", g);
  restart_clock();
}

void Expon::advance(const Context& ctx) {
  const at::Tensor& g = state("g");
  set_state("g", euler_ ? g - g * (ctx.dt / tau_) : g * std::exp(-ctx.dt / tau_));
}

void Expon::arrive(const at::Tensor& input) { set_state("g", state("g") + input); }

DualExpon::DualExpon(int64_t n, double tau_rise_ms, double tau_decay_ms, at::TensorOptions options)
    : Synapse("DualExpon", n, options), tau_rise_(tau_rise_ms), tau_decay_(tau_decay_ms) {
  TORCH_CHECK(tau_rise_ms > 0 && tau_decay_ms > tau_rise_ms, "DualExpon: need 0 < tau_rise < tau_decay (ms), got ",
              tau_rise_ms, " and ", tau_decay_ms);
  const double t_peak = tau_decay_ * tau_rise_ / (tau_decay_ - tau_rise_) * std::log(tau_decay_ / tau_rise_);
  norm_ = 1.0 / (std::exp(-t_peak / tau_decay_) - std::exp(-t_peak / tau_rise_));
}

void DualExpon::reset_own_state(int64_t) {
  const auto opts = has_state("g") ? state("g").options() : placed(options_);
  set_state("g_decay", torch::zeros(state_shape(n_), opts));
  set_state("g_rise", torch::zeros(state_shape(n_), opts));
  set_state("g", torch::zeros(state_shape(n_), opts));
  restart_clock();
}

void DualExpon::advance(const Context& ctx) {
  set_state("g_decay", state("g_decay") * std::exp(-ctx.dt / tau_decay_));
  set_state("g_rise", state("g_rise") * std::exp(-ctx.dt / tau_rise_));
  set_state("g", norm_ * (state("g_decay") - state("g_rise")));
}

void DualExpon::arrive(const at::Tensor& input) {
  set_state("g_decay", state("g_decay") + input);
  set_state("g_rise", state("g_rise") + input);
  set_state("g", norm_ * (state("g_decay") - state("g_rise")));
}

Alpha::Alpha(int64_t n, double tau_ms, at::TensorOptions options) : Synapse("Alpha", n, options), tau_(tau_ms) {
  TORCH_CHECK(tau_ms > 0, "Alpha: tau must be positive (ms), got ", tau_ms);
}

void Alpha::reset_own_state(int64_t) {
  const auto opts = has_state("g") ? state("g").options() : placed(options_);
  set_state("h", torch::zeros(state_shape(n_), opts));
  set_state("g", torch::zeros(state_shape(n_), opts));
  restart_clock();
}

void Alpha::advance(const Context& ctx) {
  // Over a step h e^{t/tau} is constant, so g(t + dt) = e^{-dt/tau} (g + (e / tau) h dt) exactly.
  const double decay = std::exp(-ctx.dt / tau_);
  const at::Tensor& h = state("h");
  set_state("g", (state("g") + (M_E / tau_) * ctx.dt * h) * decay);
  set_state("h", h * decay);
}

void Alpha::arrive(const at::Tensor& input) { set_state("h", state("h") + input); }

namespace {

// The transmitter concentration over this step: T during the T_dur ms that follow a spike
// (the steps after it), 0 otherwise; like `like` in shape and dtype.
at::Tensor transmitter(const Context& ctx, const at::Tensor& last_spike_step, const at::Tensor& like, double T,
                       double T_dur) {
  const int64_t release_steps = std::llround(T_dur / ctx.dt);
  const at::Tensor since = ctx.step_value() - last_spike_step;
  return torch::where((since >= 1).logical_and(since <= release_steps), torch::full_like(like, T),
                      torch::zeros_like(like));
}

}  // namespace

Kinetic::Kinetic(int64_t n, KineticParams p, at::TensorOptions options, std::string name)
    : Synapse(std::move(name), n, options), p_(p) {
  TORCH_CHECK(p.alpha > 0 && p.beta > 0 && p.T >= 0 && p.T_dur >= 0,
              this->name(), ": alpha and beta must be positive, T and T_dur non-negative");
}

void Kinetic::reset_own_state(int64_t) {
  const auto opts = has_state("g") ? state("g").options() : placed(options_);
  set_state("g", torch::zeros(state_shape(n_), opts));
  set_state("last_spike_step", torch::full(state_shape(n_), -1'000'000'000, opts.dtype(torch::kLong)));
  restart_clock();
}

void Kinetic::advance(const Context& ctx) {
  step_ = ctx.step_value();
  const at::Tensor T = transmitter(ctx, state("last_spike_step"), state("g"), p_.T, p_.T_dur);
  // Exact for constant T: g -> g_inf + (g - g_inf) e^{-(alpha T + beta) dt}.
  const at::Tensor rate = p_.alpha * T + p_.beta;
  const at::Tensor g_inf = p_.alpha * T / rate;
  set_state("g", g_inf + (state("g") - g_inf) * torch::exp(-rate * ctx.dt));
}

void Kinetic::arrive(const at::Tensor& input) {
  set_state("last_spike_step", torch::where(input > 0, step_, state("last_spike_step")));
}

NMDA::NMDA(int64_t n, NMDAParams p, at::TensorOptions options) : Synapse("NMDA", n, options), p_(p) {
  TORCH_CHECK(p.tau_decay > 0 && p.tau_rise > 0 && p.a > 0, "NMDA: time constants and a must be positive");
}

void NMDA::reset_own_state(int64_t) {
  const auto opts = has_state("g") ? state("g").options() : placed(options_);
  set_state("g", torch::zeros(state_shape(n_), opts));
  set_state("x", torch::zeros(state_shape(n_), opts));
  restart_clock();
}

void NMDA::advance(const Context& ctx) {
  auto f = [this](const integrators::State& y, double) {
    const auto& g = y[0];
    const auto& x = y[1];
    return integrators::State{-g / p_.tau_decay + p_.a * x * (1 - g), -x / p_.tau_rise};
  };
  const auto next = integrators::rk4(f, {state("g"), state("x")}, ctx.t, ctx.dt);
  set_state("g", next[0]);
  set_state("x", next[1]);
}

void NMDA::arrive(const at::Tensor& input) { set_state("x", state("x") + input); }

BioNMDA::BioNMDA(int64_t n, BioNMDAParams p, at::TensorOptions options) : Synapse("BioNMDA", n, options), p_(p) {
  TORCH_CHECK(p.alpha1 > 0 && p.beta1 > 0 && p.alpha2 > 0 && p.beta2 > 0 && p.T >= 0 && p.T_dur >= 0,
              "BioNMDA: the rates must be positive, T and T_dur non-negative");
}

void BioNMDA::reset_own_state(int64_t) {
  const auto opts = has_state("g") ? state("g").options() : placed(options_);
  set_state("g", torch::zeros(state_shape(n_), opts));
  set_state("x", torch::zeros(state_shape(n_), opts));
  set_state("last_spike_step", torch::full(state_shape(n_), -1'000'000'000, opts.dtype(torch::kLong)));
  restart_clock();
}

void BioNMDA::advance(const Context& ctx) {
  step_ = ctx.step_value();
  const at::Tensor T = transmitter(ctx, state("last_spike_step"), state("g"), p_.T, p_.T_dur);
  auto f = [&](const integrators::State& y, double) {
    const auto& g = y[0];
    const auto& x = y[1];
    return integrators::State{p_.alpha1 * x * (1 - g) - p_.beta1 * g, p_.alpha2 * T * (1 - x) - p_.beta2 * x};
  };
  const auto next = integrators::rk4(f, {state("g"), state("x")}, ctx.t, ctx.dt);
  set_state("g", next[0]);
  set_state("x", next[1]);
}

void BioNMDA::arrive(const at::Tensor& input) {
  set_state("last_spike_step", torch::where(input > 0, step_, state("last_spike_step")));
}

at::Tensor MgBlock::current(const at::Tensor& g, const at::Tensor& V) const {
  return g * (E - V) / (1 + cc_Mg / beta * torch::exp(-alpha * V));
}

CsrComm::CsrComm(const CsrMatrix& conn, at::Tensor weights, bool event)
    : n_pre_(conn.n_rows), n_post_(conn.n_cols), event_(event) {
  TORCH_CHECK(conn.indptr.defined() && conn.indices.defined(), "CsrComm: the connectivity is empty");
  ops::validate_csr(conn.indptr, conn.indices, {conn.n_rows, conn.n_cols});
  indptr_ = register_buffer("indptr", conn.indptr);
  indices_ = register_buffer("indices", conn.indices);
  TORCH_CHECK(weights.dim() == 0 || weights.numel() == 1 || weights.numel() == conn.indices.numel(),
              "CsrComm: weights must be one value or one per synapse (", conn.indices.numel(), "), got ",
              weights.sizes());
  weights_ = register_parameter("weights", weights.to(conn.indptr.device()), /*requires_grad=*/weights.requires_grad());
}

at::Tensor CsrComm::forward(const at::Tensor& spikes) { return forward_with(spikes, weights_); }

at::Tensor CsrComm::forward_with(const at::Tensor& spikes, const at::Tensor& weights) const {
  TORCH_CHECK(weights.sizes() == weights_.sizes(), "CsrComm: weights in place of the module's must have its shape ",
              weights_.sizes(), ", got ", weights.sizes());
  const at::Tensor x = spikes.scalar_type() == at::kBool ? spikes : spikes.to(weights.scalar_type());
  return event_ ? ops::event_csr_matmul(indptr_, indices_, weights, x, {n_pre_, n_post_}, true)
                : ops::csr_matmul(indptr_, indices_, weights, x, {n_pre_, n_post_}, true);
}

JitComm::JitComm(int64_t n_pre, int64_t n_post, double prob, int64_t seed, at::Tensor weight,
                 std::string dist, bool event)
    : n_pre_(n_pre), n_post_(n_post), n_post_total_(n_post), prob_(prob), seed_(seed), dist_(std::move(dist)), event_(event) {
  // The CPU op checks everything (prob, sizes, dist, weight shape and values); run it once on
  // an empty batch so a bad configuration fails here, not as NaN at the first step on a GPU.
  TORCH_CHECK(weight.is_floating_point(), "JitComm: weight must be a floating tensor, got ", weight.scalar_type());
  weight_ = register_parameter("weight", weight, weight.requires_grad());
  {
    torch::NoGradGuard no_grad;
    const at::Tensor w = weight_.detach().to(at::kCPU, at::kDouble);
    ops::jitc_matmul(at::zeros({0, n_pre_}, w.options()), w, prob_, seed_, {n_pre_, n_post_}, dist_, true);
  }
}

std::shared_ptr<JitComm> JitComm::columns(int64_t n_pre, int64_t n_post_total, int64_t col_offset, int64_t n_post,
                                          double prob, int64_t seed, at::Tensor weight, std::string dist, bool event) {
  TORCH_CHECK(col_offset >= 0 && n_post >= 0 && col_offset + n_post <= n_post_total, "JitComm::columns: the window [",
              col_offset, ", ", col_offset + n_post, ") does not lie in [0, ", n_post_total, ")");
  auto comm = std::make_shared<JitComm>(n_pre, n_post_total, prob, seed, std::move(weight), std::move(dist), event);
  comm->n_post_ = n_post;
  comm->col_offset_ = col_offset;
  return comm;
}

at::Tensor JitComm::forward(const at::Tensor& spikes) { return forward_with(spikes, weight_); }

at::Tensor JitComm::forward_with(const at::Tensor& spikes, const at::Tensor& weight) const {
  TORCH_CHECK(weight.sizes() == weight_.sizes(), "JitComm: a weight in place of the module's must have its shape ",
              weight_.sizes(), ", got ", weight.sizes());
  const at::Tensor x = spikes.scalar_type() == at::kBool ? spikes : spikes.to(weight.scalar_type());
  const at::Tensor all = event_ ? ops::event_jitc_matmul(x, weight, prob_, seed_, {n_pre_, n_post_total_}, dist_, true)
                                : ops::jitc_matmul(x, weight, prob_, seed_, {n_pre_, n_post_total_}, dist_, true);
  return n_post_ == n_post_total_ ? all : all.narrow(-1, col_offset_, n_post_);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> JitComm::to_csr() const {
  torch::NoGradGuard no_grad;
  auto [indptr, indices, values] = ops::jitc_to_csr(weight_.detach(), prob_, seed_, {n_pre_, n_post_total_}, dist_);
  if (n_post_ == n_post_total_) return {indptr, indices, values};
  // The window's entries, renumbered from col_offset.
  const at::Tensor keep = (indices >= col_offset_) & (indices < col_offset_ + n_post_);
  const at::Tensor rows = torch::repeat_interleave(indptr.diff()).masked_select(keep);
  at::Tensor new_indptr = torch::zeros_like(indptr);
  new_indptr.narrow(0, 1, n_pre_).copy_(torch::bincount(rows, {}, n_pre_).cumsum(0).to(indptr.scalar_type()));
  return {new_indptr, indices.masked_select(keep) - col_offset_, values.masked_select(keep)};
}

DenseComm::DenseComm(at::Tensor weights) {
  TORCH_CHECK(weights.dim() == 2, "DenseComm: weights must be [n_pre, n_post], got ", weights.sizes());
  weights_ = register_parameter("weights", weights, weights.requires_grad());
}

at::Tensor DenseComm::forward(const at::Tensor& spikes) { return spikes.to(weights_.scalar_type()).matmul(weights_); }

OneToOne::OneToOne(int64_t n, at::Tensor weight) : n_(n) {
  TORCH_CHECK(weight.dim() == 0 || (weight.dim() == 1 && weight.size(0) == n), "OneToOne: weight must be a scalar or [",
              n, "], got ", weight.sizes());
  weight_ = register_parameter("weight", weight, weight.requires_grad());
}

at::Tensor OneToOne::forward(const at::Tensor& spikes) { return spikes.to(weight_.scalar_type()) * weight_; }

AllToAll::AllToAll(int64_t n_pre, int64_t n_post, at::Tensor weight, bool include_self)
    : n_pre_(n_pre), n_post_(n_post), include_self_(include_self) {
  TORCH_CHECK(weight.dim() == 0, "AllToAll: weight must be a scalar, got ", weight.sizes());
  TORCH_CHECK(include_self || n_pre == n_post, "AllToAll: excluding self-connections needs n_pre == n_post");
  weight_ = register_parameter("weight", weight, weight.requires_grad());
}

at::Tensor AllToAll::forward(const at::Tensor& spikes) {
  const at::Tensor s = spikes.to(weight_.scalar_type());
  at::Tensor total = s.sum(-1, /*keepdim=*/true);
  std::vector<int64_t> shape = s.sizes().vec();
  shape.back() = n_post_;
  at::Tensor out = total.expand(shape);
  if (!include_self_) out = out - s;
  return out * weight_;
}

GroupComm::GroupComm(at::Tensor pre_groups, at::Tensor post_groups, at::Tensor weights) {
  TORCH_CHECK(pre_groups.dim() == 1 && post_groups.dim() == 1, "GroupComm: pre_groups and post_groups must be 1-D, got ",
              pre_groups.sizes(), " and ", post_groups.sizes());
  TORCH_CHECK(!at::isFloatingType(pre_groups.scalar_type()) && !at::isFloatingType(post_groups.scalar_type()) &&
                  pre_groups.scalar_type() != at::kBool && post_groups.scalar_type() != at::kBool,
              "GroupComm: group labels must be integers");
  TORCH_CHECK(weights.dim() == 2, "GroupComm: weights must be [G_pre, G_post], got ", weights.sizes());
  TORCH_CHECK(at::isFloatingType(weights.scalar_type()), "GroupComm: weights must be floating point");
  // Labels are read once here, at construction, never in the simulation loop.
  const auto check = [](const at::Tensor& labels, int64_t groups, const char* what) {
    if (labels.numel() == 0) return;
    const auto lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < groups, "GroupComm: ", what, " labels must lie in [0, ", groups, "), got [", lo, ", ",
                hi, "]");
  };
  check(pre_groups, weights.size(0), "pre_groups");
  check(post_groups, weights.size(1), "post_groups");
  pre_groups_ = register_buffer("pre_groups", pre_groups.to(at::kLong).to(weights.device()));
  post_groups_ = register_buffer("post_groups", post_groups.to(at::kLong).to(weights.device()));
  weights_ = register_parameter("weights", weights, weights.requires_grad());
}

at::Tensor GroupComm::forward(const at::Tensor& spikes) {
  TORCH_CHECK(spikes.size(-1) == n_pre(), "GroupComm: expected ", n_pre(), " presynaptic neurons, got ", spikes.sizes());
  const at::Tensor s = spikes.to(weights_.scalar_type());
  std::vector<int64_t> shape = s.sizes().vec();
  shape.back() = weights_.size(0);
  const at::Tensor group_sums = torch::zeros(shape, s.options()).index_add_(-1, pre_groups_, s);
  return group_sums.matmul(weights_).index_select(-1, post_groups_);
}

AlignPostProj::AlignPostProj(std::shared_ptr<DynamicalSystem> pre, std::shared_ptr<Comm> comm,
                             std::shared_ptr<Synapse> syn, std::shared_ptr<SynOutput> out,
                             std::shared_ptr<NeuronGroup> post, int64_t delay_steps)
    : DynamicalSystem("AlignPostProj"),
      pre_(std::move(pre)),
      post_(std::move(post)),
      comm_(std::move(comm)),
      syn_(std::move(syn)),
      out_(std::move(out)),
      delay_steps_(delay_steps) {
  TORCH_CHECK(pre_ && post_ && comm_ && syn_ && out_, "AlignPostProj: pre, comm, syn, out and post are required");
  if (pre_->has_state("spike")) {
    const int64_t n_pre = pre_->state("spike").size(-1);
    TORCH_CHECK(comm_->n_pre() == n_pre, "AlignPostProj: the connectivity has ", comm_->n_pre(),
                " presynaptic neurons, the presynaptic population has ", n_pre);
  }
  TORCH_CHECK(comm_->n_post() == post_->size() && syn_->size() == post_->size(), "AlignPostProj: the connectivity (",
              comm_->n_post(), ") and the synapse (", syn_->size(), ") must match the postsynaptic population (",
              post_->size(), ")");
  TORCH_CHECK(delay_steps >= 0, "AlignPostProj: delay_steps must be >= 0, got ", delay_steps);
  register_module("comm", comm_);
  if (delay_steps_ > 0) {
    // Spikes are stored in the postsynaptic dtype, so float and bool spikes share one buffer;
    // so do all delayed projections from this population (one ring, the longest delay).
    auto shared = shared_spike_delay(*pre_, comm_->n_pre(), delay_steps_, post_->options());
    delay_ = shared.delay;
    pushes_delay_ = shared.created;
    if (pushes_delay_) add_child("delay", delay_);
  }
  // The first projection with this synapse owns its state; merged ones only deliver into it.
  const bool first = post_->add_current_once(syn_.get(), [s = syn_, o = out_](const at::Tensor& V) {
    return o->current(s->g(), V);
  });
  if (first) add_child("syn", syn_);
}

void AlignPostProj::update(const Context& ctx) {
  at::Tensor spikes = pre_->state("spike");
  if (synapse_delays_) {
    if (pushes_delay_ || pushes_for_zero_delays_) delay_->push(spikes, ctx);
    const auto& csr = static_cast<const CsrComm&>(*comm_);
    if (stp_) {
      stp_releases_->push(stp_->process(ctx, spikes), ctx);
      syn_->deliver(ctx, synapse_delays_->forward(*stp_releases_, csr.weights(), ctx));
    } else {
      syn_->deliver(ctx, synapse_delays_->forward(*delay_, csr.weights(), ctx));
    }
    if (stdp_) update_delayed_stdp(ctx, spikes);
    return;
  }
  if (delay_) {
    if (pushes_delay_) delay_->push(spikes, ctx);
    spikes = delay_->read(delay_steps_, ctx);
  }
  const at::Tensor arriving = spikes;
  if (stp_) spikes = stp_->process(ctx, spikes);
  syn_->deliver(ctx, comm_->forward(spikes));
  if (!stdp_) return;

  TORCH_CHECK(batch_size() == 0, "AlignPostProj: STDP updates one shared weight vector and needs unbatched states");
  const at::Tensor& post_spikes = post_->state("spike");
  const at::Tensor a_pre = state("stdp_pre_trace") * std::exp(-ctx.dt / stdp_->tau_plus);
  const at::Tensor a_post = state("stdp_post_trace") * std::exp(-ctx.dt / stdp_->tau_minus);
  {
    torch::NoGradGuard no_grad;  // plasticity is a rule, not a differentiable op here
    if (auto csr = std::dynamic_pointer_cast<CsrComm>(comm_)) {
      at::Tensor w = csr->weights();
      const at::Tensor pre_s = arriving.scalar_type() == at::kBool ? arriving : arriving.to(w.scalar_type());
      const at::Tensor post_s = post_spikes.scalar_type() == at::kBool ? post_spikes : post_spikes.to(w.scalar_type());
      ops::csr_update_on_pre_(w, csr->indptr(), csr->indices(), pre_s.detach(), a_post.to(w.scalar_type()),
                              -stdp_->A_minus, stdp_->w_min, stdp_->w_max);
      ops::csr_update_on_post_(w, csc_indptr_, csc_rows_, csc_perm_, post_s.detach(), a_pre.to(w.scalar_type()),
                               stdp_->A_plus, stdp_->w_min, stdp_->w_max);
    } else {
      // Dense W [n_pre, n_post]: the same rule on every synapse, rows of spiking presynaptic
      // neurons first, then columns of spiking postsynaptic ones; only the updated entries
      // are clipped, as on CSR. Masks instead of nonzero(): no host sync.
      at::Tensor w = std::static_pointer_cast<DenseComm>(comm_)->weights();
      const at::Tensor pre_s = arriving.detach().to(w.scalar_type());
      const at::Tensor post_s = post_spikes.detach().to(w.scalar_type());
      const at::Tensor rows = (pre_s != 0).unsqueeze(1);
      const at::Tensor depressed =
          (w - stdp_->A_minus * pre_s.unsqueeze(1) * a_post.to(w.scalar_type()).unsqueeze(0))
              .clamp(stdp_->w_min, stdp_->w_max);
      w.copy_(torch::where(rows, depressed, w));
      const at::Tensor cols = (post_s != 0).unsqueeze(0);
      const at::Tensor potentiated =
          (w + stdp_->A_plus * a_pre.to(w.scalar_type()).unsqueeze(1) * post_s.unsqueeze(0))
              .clamp(stdp_->w_min, stdp_->w_max);
      w.copy_(torch::where(cols, potentiated, w));
    }
  }
  set_state("stdp_pre_trace", a_pre + arriving.to(a_pre.scalar_type()));
  set_state("stdp_post_trace", a_post + post_spikes.to(a_post.scalar_type()));
}

namespace {

// STDP's fused CPU pass with per-synapse delays, in the weights' dtype: arrivals [La, n_pre]
// (the spike ring), traces [Lt, n_pre] (the presynaptic traces before each step's spikes),
// rows/delays per synapse in CSR order (int64), the CSR and its CSC view in index_t. The same
// terms as csr_update_on_pre_ then csr_update_on_post_ over one projection per delay, so the
// same bits. Rows and columns own disjoint synapses, so they run in parallel.
template <typename scalar_t, typename index_t>
void delayed_stdp_cpu(at::Tensor& weights, const at::Tensor& arrivals, const at::Tensor& traces, int64_t step,
                      int64_t longest, const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& delays,
                      const at::Tensor& csc_indptr, const at::Tensor& csc_rows, const at::Tensor& csc_perm,
                      const at::Tensor& post_spikes, const at::Tensor& post_trace, double A_minus, double A_plus,
                      double w_min, double w_max) {
  const int64_t n_pre = arrivals.size(1), n_post = post_spikes.size(0);
  const int64_t la = arrivals.size(0), lt = traces.size(0);
  const int64_t now_a = ((step % la) + la) % la, now_t = ((step % lt) + lt) % lt;
  const scalar_t* arr = arrivals.const_data_ptr<scalar_t>();
  const scalar_t* tr = traces.const_data_ptr<scalar_t>();
  const scalar_t* post = post_spikes.const_data_ptr<scalar_t>();
  const scalar_t* a_post = post_trace.const_data_ptr<scalar_t>();
  const index_t* ptr = indptr.const_data_ptr<index_t>();
  const index_t* idx = indices.const_data_ptr<index_t>();
  const index_t* cptr = csc_indptr.const_data_ptr<index_t>();
  const index_t* crow = csc_rows.const_data_ptr<index_t>();
  const index_t* perm = csc_perm.const_data_ptr<index_t>();
  const int64_t* d = delays.const_data_ptr<int64_t>();
  scalar_t* w = weights.data_ptr<scalar_t>();
  const auto lo = static_cast<scalar_t>(w_min), hi = static_cast<scalar_t>(w_max);
  const auto clip = [&](scalar_t v) { return v < lo ? lo : (v > hi ? hi : v); };
  const int64_t nnz = indices.numel();
  // A row none of whose spikes is still travelling has nothing arriving: where the window of
  // the longest delay is smaller than the synapses, find those rows first.
  std::vector<uint8_t> travelling;
  if ((longest + 1) * n_pre < nnz) {
    travelling.assign(static_cast<size_t>(n_pre), 0);
    for (int64_t back = 0; back <= longest; ++back) {
      int64_t slot = now_a - back;
      if (slot < 0) slot += la;
      const scalar_t* spikes = arr + slot * n_pre;
      for (int64_t i = 0; i < n_pre; ++i) travelling[i] |= spikes[i] != scalar_t(0);
    }
  }
  const auto scale_minus = static_cast<scalar_t>(-A_minus), scale_plus = static_cast<scalar_t>(A_plus);
  at::parallel_for(0, n_pre, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      if (!travelling.empty() && !travelling[i]) continue;
      for (int64_t k = ptr[i]; k < ptr[i + 1]; ++k) {
        int64_t slot = now_a - d[k];
        if (slot < 0) slot += la;
        const scalar_t v = arr[slot * n_pre + i];
        if (v == scalar_t(0)) continue;
        w[k] = clip(w[k] + scale_minus * v * a_post[idx[k]]);
      }
    }
  });
  at::parallel_for(0, n_post, 64, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      if (post[j] == scalar_t(0)) continue;
      const scalar_t factor = scale_plus * post[j];
      for (int64_t p = cptr[j]; p < cptr[j + 1]; ++p) {
        const int64_t k = perm[p];
        int64_t slot = now_t - d[k];
        if (slot < 0) slot += lt;
        w[k] = clip(w[k] + factor * tr[slot * n_pre + crow[p]]);
      }
    }
  });
}

}  // namespace

void AlignPostProj::update_delayed_stdp(const Context& ctx, const at::Tensor& spikes) {
  TORCH_CHECK(batch_size() == 0, "AlignPostProj: STDP updates one shared weight vector and needs unbatched states");
  const at::Tensor& post_spikes = post_->state("spike");
  const at::Tensor a_post = state("stdp_post_trace") * std::exp(-ctx.dt / stdp_->tau_minus);
  // The presynaptic trace before this step's spikes: what a synapse with delay d reads d steps on.
  const at::Tensor a_pre = state("stdp_pre_trace") * std::exp(-ctx.dt / stdp_->tau_plus);
  stdp_trace_history_->push(a_pre, ctx);
  {
    torch::NoGradGuard no_grad;  // plasticity is a rule, not a differentiable op here
    const auto csr = std::static_pointer_cast<CsrComm>(comm_);
    at::Tensor w = csr->weights();
    const auto type = w.scalar_type();
    const at::Tensor arrivals = delay_->state("history").detach().to(type);  // [La, n_pre]
    const at::Tensor& traces = stdp_trace_history_->state("history");      // [Lt, n_pre]
    const at::Tensor post_s = post_spikes.detach().to(type);
    const at::Tensor a_post_w = a_post.detach().to(type);
    const bool fused = !ctx.clock.defined() && w.device().is_cpu() && w.is_contiguous() &&
                       (type == at::kFloat || type == at::kDouble) &&
                       csr->indptr().scalar_type() == csr->indices().scalar_type();
    if (fused) {
      const at::Tensor arr = arrivals.contiguous(), tr = traces.detach().to(type).contiguous();
      const at::Tensor ptr = csr->indptr().contiguous(), idx = csr->indices().contiguous();
      const at::Tensor post_c = post_s.contiguous(), a_post_c = a_post_w.contiguous();
      const int64_t longest = synapse_delays_->max_delay();
      AT_DISPATCH_FLOATING_TYPES(type, "AlignPostProj.delayed_stdp", [&] {
        AT_DISPATCH_INDEX_TYPES(ptr.scalar_type(), "AlignPostProj.delayed_stdp", [&] {
          delayed_stdp_cpu<scalar_t, index_t>(w, arr, tr, ctx.step, longest, ptr, idx, stdp_delays_, csc_indptr_,
                                              csc_rows_, csc_perm_, post_c, a_post_c, stdp_->A_minus, stdp_->A_plus,
                                              stdp_->w_min, stdp_->w_max);
        });
      });
      // Written through its data pointer: say so, as the in-place ops do, so that what caches
      // the weights by version (HeteroDelayCsr's copy in delay order) sees them change.
      torch::autograd::impl::bump_version(w);
    } else {
      // Every synapse reads its own slot of either ring (the device clock when replaying).
      const at::Tensor now = ctx.step_value();
      const at::Tensor at_arrival =
          torch::remainder(now - stdp_delays_, arrivals.size(0)) * arrivals.size(1) + stdp_rows_;
      const at::Tensor arrived = arrivals.reshape({-1}).index_select(0, at_arrival);
      const at::Tensor idx = csr->indices();
      const at::Tensor depressed =
          (w + (-stdp_->A_minus) * arrived * a_post_w.index_select(0, idx)).clamp(stdp_->w_min, stdp_->w_max);
      at::Tensor updated = torch::where(arrived != 0, depressed, w);
      const at::Tensor at_trace = torch::remainder(now - stdp_delays_, traces.size(0)) * traces.size(1) + stdp_rows_;
      const at::Tensor pre_trace = traces.detach().to(type).reshape({-1}).index_select(0, at_trace);
      const at::Tensor post_k = post_s.index_select(0, idx);
      const at::Tensor potentiated = (updated + stdp_->A_plus * post_k * pre_trace).clamp(stdp_->w_min, stdp_->w_max);
      w.copy_(torch::where(post_k != 0, potentiated, updated));
    }
  }
  set_state("stdp_pre_trace", a_pre + spikes.detach().to(a_pre.scalar_type()));
  set_state("stdp_post_trace", a_post + post_spikes.detach().to(a_post.scalar_type()));
}

namespace {

// What set_synapse_delays checks for either projection, before anything changes: the CSR
// connectivity the delays are per synapse of, and their range (shortest, longest).
struct SynapseDelayRange {
  std::shared_ptr<CsrComm> csr;
  int64_t shortest = 0, longest = 0;
};
SynapseDelayRange check_synapse_delays(const char* who, const std::shared_ptr<Comm>& comm, int64_t uniform_delay,
                                       bool already_set, const at::Tensor& delay_steps) {
  TORCH_CHECK(!already_set, who, ": per-synapse delays were already set");
  SynapseDelayRange range;
  range.csr = std::dynamic_pointer_cast<CsrComm>(comm);
  TORCH_CHECK(range.csr, who, ": per-synapse delays need CSR connectivity (CsrComm), got ", comm->name());
  TORCH_CHECK(uniform_delay == 0, who, ": per-synapse delays replace the uniform delay_steps (", uniform_delay,
              "); build the projection with delay_steps = 0 and put the whole delay in each synapse's");
  const int64_t nnz = range.csr->indices().size(0);
  TORCH_CHECK(delay_steps.dim() == 1 && delay_steps.size(0) == nnz, who,
              ": delay_steps must have one delay per synapse ([", nnz, "]), got ", delay_steps.sizes());
  TORCH_CHECK(!delay_steps.is_floating_point() && delay_steps.scalar_type() != at::kBool && !delay_steps.is_complex(),
              who, ": delay_steps are whole steps (an integer tensor), got ", delay_steps.scalar_type(),
              "; convert delays in ms with (delays_ms / dt).round().long()");
  // Construction time: the longest delay sizes the ring, read once on the host.
  range.longest = nnz > 0 ? delay_steps.max().item<int64_t>() : 0;
  range.shortest = nnz > 0 ? delay_steps.min().item<int64_t>() : 0;
  TORCH_CHECK(range.shortest >= 0, who, ": delay_steps must be >= 0, got a synapse with ", range.shortest);
  return range;
}

}  // namespace

void AlignPostProj::set_synapse_delays(const at::Tensor& delay_steps) {
  const auto [csr, shortest, longest] =
      check_synapse_delays("AlignPostProj", comm_, delay_steps_, synapse_delays_ != nullptr, delay_steps);
  const int64_t ring = std::max<int64_t>(longest, 1);
  auto shared = shared_spike_delay(*pre_, comm_->n_pre(), ring, post_->options());
  delay_ = shared.delay;
  pushes_delay_ = shared.created;
  if (pushes_delay_) add_child("delay", delay_);
  // A synapse without delay reads this step's slot; when another projection owns the ring and
  // updates after this one, that slot still holds an old step's spikes: push them here too.
  pushes_for_zero_delays_ = !pushes_delay_ && shortest == 0;
  synapse_delays_ = std::make_shared<HeteroDelayCsr>(csr->indptr(), csr->indices(), delay_steps, comm_->n_pre(),
                                                     comm_->n_post(), ring, csr->event());
  register_module("synapse_delays", synapse_delays_);
  prepare_delayed_plasticity();
}

void AlignPostProj::prepare_delayed_plasticity() {
  if (!synapse_delays_) return;
  const int64_t ring = synapse_delays_->max_delay();
  if (stp_ && !stp_releases_) {
    stp_releases_ = add_child("stp_releases", std::make_shared<Delay>(comm_->n_pre(), ring, post_->options()));
  }
  if (stdp_ && !stdp_trace_history_) {
    const auto csr = std::static_pointer_cast<CsrComm>(comm_);
    stdp_trace_history_ =
        add_child("stdp_trace_history", std::make_shared<Delay>(comm_->n_pre(), ring, csr->weights().options()));
    // Construction time: on the host, then where the weights are.
    const at::Tensor counts = csr->indptr().to(at::kCPU, at::kLong).diff();
    const auto device = csr->indices().device();
    stdp_rows_ = register_buffer(
        "stdp_rows", torch::repeat_interleave(torch::arange(comm_->n_pre(), counts.options()), counts).to(device));
    stdp_delays_ = register_buffer("stdp_delays", synapse_delays_->delays().to(device));
  }
}

std::shared_ptr<STP> AlignPostProj::add_stp(STPParams params) {
  TORCH_CHECK(!stp_, "AlignPostProj: short-term plasticity was already added");
  stp_ = add_child("stp", std::make_shared<STP>(comm_->n_pre(), params, post_->options()));
  prepare_delayed_plasticity();
  return stp_;
}

void AlignPostProj::add_stdp(STDPParams params) {
  TORCH_CHECK(!stdp_, "AlignPostProj: STDP was already added");
  TORCH_CHECK(params.tau_plus > 0 && params.tau_minus > 0, "AlignPostProj: STDP time constants must be positive");
  TORCH_CHECK(params.w_min <= params.w_max, "AlignPostProj: STDP needs w_min <= w_max");
  if (std::dynamic_pointer_cast<DenseComm>(comm_)) {
    stdp_ = params;
    return;
  }
  auto csr = std::dynamic_pointer_cast<CsrComm>(comm_);
  TORCH_CHECK(csr, "AlignPostProj: STDP needs dense (DenseComm) or CSR (CsrComm) connectivity");
  TORCH_CHECK(csr->weights().dim() == 1 && csr->weights().size(0) == csr->indices().size(0),
              "AlignPostProj: STDP needs one weight per synapse, not a homogeneous weight");
  stdp_ = params;
  // The column view, built once, serves every postsynaptic update.
  std::tie(csc_indptr_, csc_rows_, csc_perm_) =
      ops::csr_to_csc(csr->indptr(), csr->indices(), {comm_->n_pre(), comm_->n_post()});
  register_buffer("csc_indptr", csc_indptr_);
  register_buffer("csc_rows", csc_rows_);
  register_buffer("csc_perm", csc_perm_);
  prepare_delayed_plasticity();
}

void AlignPostProj::reset_own_state(int64_t) {
  if (!stdp_) return;
  const auto dense = std::dynamic_pointer_cast<DenseComm>(comm_);
  const auto opts = dense ? dense->weights().options() : std::static_pointer_cast<CsrComm>(comm_)->weights().options();
  set_state("stdp_pre_trace", torch::zeros(state_shape(comm_->n_pre()), opts));
  set_state("stdp_post_trace", torch::zeros(state_shape(comm_->n_post()), opts));
}

AlignPreProj::AlignPreProj(std::shared_ptr<DynamicalSystem> pre, std::shared_ptr<Synapse> syn,
                           std::shared_ptr<Comm> comm, std::shared_ptr<SynOutput> out,
                           std::shared_ptr<NeuronGroup> post, int64_t delay_steps)
    : DynamicalSystem("AlignPreProj"),
      pre_(std::move(pre)),
      post_(std::move(post)),
      syn_(std::move(syn)),
      comm_(std::move(comm)),
      out_(std::move(out)),
      delay_steps_(delay_steps) {
  TORCH_CHECK(pre_ && post_ && comm_ && syn_ && out_, "AlignPreProj: pre, syn, comm, out and post are required");
  TORCH_CHECK(syn_->size() == comm_->n_pre(), "AlignPreProj: the synapse covers ", syn_->size(),
              " neurons but the connectivity has ", comm_->n_pre(), " presynaptic neurons");
  TORCH_CHECK(comm_->n_post() == post_->size(), "AlignPreProj: the connectivity has ", comm_->n_post(),
              " postsynaptic neurons, the population has ", post_->size());
  TORCH_CHECK(delay_steps >= 0, "AlignPreProj: delay_steps must be >= 0, got ", delay_steps);
  syn_->bind_presynaptic(pre_.get());
  register_module("comm", comm_);
  add_child("syn", syn_);
  if (delay_steps_ > 0) delay_ = add_child("delay", std::make_shared<Delay>(comm_->n_pre(), delay_steps_, post_->options()));
}

void AlignPreProj::reset_own_state(int64_t) {
  const auto opts = has_state("g_post") ? state("g_post").options() : post_->options();
  set_state("g_post", torch::zeros(state_shape(comm_->n_post()), opts));
  if (current_registered_) return;
  // The current reads this projection's live state (also after to() or load()); a weak
  // reference, so the population never keeps a deleted projection alive or dangling.
  std::weak_ptr<torch::nn::Module> self;
  try {
    self = shared_from_this();
  } catch (const std::bad_weak_ptr&) {
    TORCH_CHECK(false, "AlignPreProj must be created with std::make_shared");
  }
  post_->add_current([self, o = out_](const at::Tensor& V) {
    auto proj = self.lock();
    TORCH_CHECK(proj, "AlignPreProj: the projection feeding this population was destroyed");
    return o->current(static_cast<AlignPreProj&>(*proj).state("g_post"), V);
  });
  current_registered_ = true;
}

void AlignPreProj::update(const Context& ctx) {
  if (!syn_->delivered_at(ctx.step)) syn_->deliver(ctx, pre_->state("spike").to(syn_->g().scalar_type()));
  at::Tensor g = syn_->g();
  if (synapse_delays_) {
    delay_->push(g, ctx);
    const auto& csr = static_cast<const CsrComm&>(*comm_);
    set_state("g_post", synapse_delays_->forward(*delay_, csr.weights(), ctx));
    return;
  }
  if (delay_) {
    delay_->push(g, ctx);
    g = delay_->read(delay_steps_, ctx);
  }
  set_state("g_post", comm_->forward(g));
}

void AlignPreProj::set_synapse_delays(const at::Tensor& delay_steps) {
  const SynapseDelayRange range =
      check_synapse_delays("AlignPreProj", comm_, delay_steps_, synapse_delays_ != nullptr, delay_steps);
  // The ring is added as a child: a reset_state() that has run already would have left it empty.
  TORCH_CHECK(!has_state("g_post"), "AlignPreProj: set_synapse_delays must be called before reset_state()");
  // Delay 0 reads the value pushed this step (update pushes before it reads), so one slot will do.
  delay_ = add_child("delay", std::make_shared<Delay>(comm_->n_pre(), range.longest, post_->options()));
  // g is a value, not an event: every group reads a dense slot, so no event op.
  synapse_delays_ = std::make_shared<HeteroDelayCsr>(range.csr->indptr(), range.csr->indices(), delay_steps,
                                                     comm_->n_pre(), comm_->n_post(), range.longest, /*event=*/false);
  register_module("synapse_delays", synapse_delays_);
}

STP::STP(int64_t n, STPParams p, at::TensorOptions options) : DynamicalSystem("STP"), n_(n), p_(p), options_(options) {
  TORCH_CHECK(p.U > 0 && p.U <= 1, "STP: U must lie in (0, 1], got ", p.U);
  TORCH_CHECK(p.tau_d > 0 && (!p.facilitation || p.tau_f > 0), "STP: time constants must be positive");
}

void STP::reset_own_state(int64_t) {
  const auto opts = has_state("x") ? state("x").options() : placed(options_);
  set_state("u", torch::zeros(state_shape(n_), opts));
  set_state("x", torch::ones(state_shape(n_), opts));
}

void STP::update(const Context& ctx) { process(ctx, torch::zeros_like(state("x"))); }

at::Tensor STP::process(const Context& ctx, const at::Tensor& spikes_in) {
  const at::Tensor spikes = spikes_in.to(state("x").scalar_type());
  // Relax over the step, then apply this step's spikes.
  at::Tensor u = p_.facilitation ? state("u") * std::exp(-ctx.dt / p_.tau_f) : torch::zeros_like(state("u"));
  at::Tensor x = 1 - (1 - state("x")) * std::exp(-ctx.dt / p_.tau_d);
  const at::Tensor u_spike = u + p_.U * (1 - u);
  const at::Tensor release = u_spike * x;
  u = torch::where(spikes > 0, u_spike, u);
  x = x - release * spikes;
  set_state("u", u);
  set_state("x", x);
  return spikes * release;
}

CsrMatrix fixed_prob(int64_t n_pre, int64_t n_post, double prob, bool include_self, uint64_t seed, c10::Device device,
                     at::ScalarType index_dtype) {
  return fixed_prob_columns(n_pre, n_post, prob, include_self, seed, 0, n_post, device, index_dtype);
}

CsrMatrix fixed_prob_columns(int64_t n_pre, int64_t n_post, double prob, bool include_self, uint64_t seed, int64_t col_lo,
                             int64_t col_hi, c10::Device device, at::ScalarType index_dtype) {
  TORCH_CHECK(prob >= 0 && prob <= 1, "fixed_prob: prob must lie in [0, 1], got ", prob);
  TORCH_CHECK(n_pre >= 0 && n_post >= 0, "fixed_prob: sizes must be >= 0");
  TORCH_CHECK(0 <= col_lo && col_lo <= col_hi && col_hi <= n_post, "fixed_prob: the column window [", col_lo, ", ",
              col_hi, ") does not lie in [0, ", n_post, "]");
  TORCH_CHECK(include_self || n_pre == n_post, "fixed_prob: excluding self-connections needs n_pre == n_post");
  TORCH_CHECK(index_dtype == at::kInt || index_dtype == at::kLong, "fixed_prob: index_dtype must be int32 or int64, got ",
              index_dtype);
  // Built where it will be used, by the JIT generator's walk (jitc_pattern): parallel on
  // every device, the same bits on every device, and only the window's synapses are stored.
  const at::Tensor like = at::empty({0}, at::TensorOptions().dtype(at::kFloat).device(device));
  auto [indptr, indices] = ops::jitc_pattern(like, prob, static_cast<int64_t>(seed), {n_pre, n_post}, col_lo, col_hi,
                                             /*exclude_diagonal=*/!include_self);
  TORCH_CHECK(index_dtype == at::kLong || indices.numel() <= std::numeric_limits<int32_t>::max(), "fixed_prob: ",
              indices.numel(), " synapses do not fit int32 indices; ask for index_dtype int64");
  CsrMatrix m;
  m.indptr = indptr.to(index_dtype);
  m.indices = indices.to(index_dtype);
  m.n_rows = n_pre;
  m.n_cols = col_hi - col_lo;
  return m;
}

}  // namespace brain
