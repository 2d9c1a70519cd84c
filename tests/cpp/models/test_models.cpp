// Neuron and synapse models against analytic results, projections against a hand
// computation, the COBA network's rates, and config validation.
#include <brain/brain.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using brain::Context;

TEST(Surrogate, ForwardIsExactlyHeavisideAndBackwardUsesTheSurrogate) {
  const auto x = torch::tensor({-2.0, -0.1, 0.0, 0.1, 3.0}, torch::kDouble).requires_grad_();
  for (const char* name : {"sigmoid", "arctan", "piecewise_quadratic", "piecewise_exp", "soft_sign", "erf",
                           "inv_square", "gaussian", "multi_gaussian", "leaky_relu", "relu_grad"}) {
    const auto s = brain::Surrogate::named(name);
    const auto y = brain::spike_function(x, s);
    EXPECT_TRUE(torch::equal(y.detach(), torch::tensor({0.0, 0.0, 0.0, 1.0, 1.0}, torch::kDouble))) << name;
    const auto g = torch::autograd::grad({y.sum()}, {x})[0];
    EXPECT_TRUE(torch::allclose(g, brain::surrogate_grad(x.detach(), s))) << name;
    EXPECT_EQ(s.name(), std::string(name));
  }
  EXPECT_THROW(brain::Surrogate::named("tanh_typo"), c10::Error);
}

TEST(Surrogate, DerivativesHaveTheirPublishedValuesAtZero) {
  const auto zero = torch::zeros({1}, torch::kDouble);
  auto at0 = [&](const char* name) { return brain::surrogate_grad(zero, brain::Surrogate::named(name)).item<double>(); };
  EXPECT_NEAR(at0("sigmoid"), 1.0, 1e-12);  // alpha / 4 with alpha = 4
  EXPECT_NEAR(at0("arctan"), 0.5, 1e-12);
  EXPECT_NEAR(at0("piecewise_quadratic"), 1.0, 1e-12);
  EXPECT_NEAR(at0("piecewise_exp"), 0.5, 1e-12);
  EXPECT_NEAR(at0("soft_sign"), 0.5, 1e-12);
  EXPECT_NEAR(at0("erf"), 1.0 / std::sqrt(M_PI), 1e-12);
  EXPECT_NEAR(at0("inv_square"), 1.0, 1e-12);
  EXPECT_NEAR(at0("gaussian"), 1.0 / (std::sqrt(2 * M_PI) * 0.5), 1e-12);
  EXPECT_NEAR(at0("relu_grad"), 0.3, 1e-12);
  const auto minus1 = torch::full({1}, -1.0, torch::kDouble);
  EXPECT_NEAR(brain::surrogate_grad(minus1, brain::Surrogate::named("leaky_relu")).item<double>(), 0.1, 1e-12);
  // The normalised ones integrate to 1 over the real line (arctan's 1/x^2 tails leave
  // (2/pi) atan(30 pi) inside [-60, 60]).
  const auto xs = torch::linspace(-60, 60, 1'200'001, torch::kDouble);
  for (const char* name : {"sigmoid", "arctan", "piecewise_quadratic", "piecewise_exp", "soft_sign", "erf", "gaussian"}) {
    const double area = torch::trapezoid(brain::surrogate_grad(xs, brain::Surrogate::named(name)), xs).item<double>();
    const double inside = std::string(name) == "arctan" ? 2 / M_PI * std::atan(30 * M_PI)
                        : std::string(name) == "soft_sign" ? 60.0 / 61.0 : 1.0;
    EXPECT_NEAR(area, inside, 2e-4) << name;
  }
}

// Steps between spikes of a LIF neuron under a constant current.
double lif_isi_ms(double current, double tau_ref, double dt) {
  brain::LifParams p;
  p.tau_ref = tau_ref;
  brain::LIF lif(1, p, torch::kDouble);
  lif.reset_state();
  Context ctx;
  ctx.dt = dt;
  std::vector<int64_t> spikes;
  for (ctx.step = 0; ctx.step < static_cast<int64_t>(200 / dt) && spikes.size() < 3; ++ctx.step) {
    ctx.t = ctx.step * dt;
    lif.assign_state("input", torch::full({1}, current, torch::kDouble));
    lif.step(ctx);
    if (lif.state("spike").item<double>() > 0) spikes.push_back(ctx.step);
  }
  EXPECT_EQ(spikes.size(), 3u);
  return (spikes[2] - spikes[1]) * dt;
}

TEST(LIF, InterSpikeIntervalMatchesTheAnalyticValue) {
  // From V_reset, V(t) = V_inf - (V_inf - V_reset) e^{-t/tau}; it reaches V_th after
  // T = tau ln((V_inf - V_reset) / (V_inf - V_th)), V_inf = V_rest + R I.
  for (double current : {12.0, 20.0, 45.0}) {
    const double T = 20.0 * std::log(current / (current - 10.0));
    EXPECT_NEAR(lif_isi_ms(current, 0.0, 0.01), T, 0.011) << "I = " << current;
    // Refractoriness adds tau_ref (integration resumes tau_ref after the spike).
    EXPECT_NEAR(lif_isi_ms(current, 2.0, 0.01), T + 2.0 - 0.01, 0.011) << "I = " << current;
  }
  // Below rheobase (I <= V_th - V_rest) it never fires.
  brain::LIF quiet(1, {}, torch::kDouble);
  quiet.reset_state();
  Context ctx;
  for (ctx.step = 0; ctx.step < 2000; ++ctx.step) {
    quiet.assign_state("input", torch::full({1}, 9.9, torch::kDouble));
    quiet.step(ctx);
    ASSERT_EQ(quiet.state("spike").item<double>(), 0.0);
  }
  EXPECT_THROW(brain::LIF(1, brain::LifParams{-60, -50, -55, 20, 1, 0, {}, true}), c10::Error);
}

TEST(LIF, SpikesCarrySurrogateGradients) {
  brain::LIF lif(4, {}, torch::kDouble);
  lif.reset_state();
  auto drive = torch::tensor({5.0, 15.0, 25.0, 40.0}, torch::kDouble).requires_grad_();
  Context ctx;
  at::Tensor count = torch::zeros({4}, torch::kDouble);
  for (ctx.step = 0; ctx.step < 300; ++ctx.step) {
    lif.assign_state("input", drive * 1.0);
    lif.step(ctx);
    count = count + lif.state("spike");
  }
  count.sum().backward();
  EXPECT_GT(count[3].item<double>(), count[2].item<double>());
  EXPECT_GT(drive.grad().abs().sum().item<double>(), 0.0);  // gradient reached the input
}

// A model moved with to() before its first reset_state() must allocate its states where it was
// moved (SpikingNet moves to the GPU before its first batch); dtype stands in for the device.
TEST(States, FirstAllocatedAfterAMoveFollowTheMove) {
  brain::LIF lif(3, {}, at::kFloat);
  brain::Expon syn(3, 5.0, at::kFloat);
  brain::Delay delay(3, 2, at::kFloat);
  for (brain::DynamicalSystem* s : std::vector<brain::DynamicalSystem*>{&lif, &syn, &delay}) {
    s->to(torch::kDouble);
    s->reset_state(2);
  }
  EXPECT_EQ(lif.state("V").scalar_type(), torch::kDouble);
  EXPECT_EQ(lif.options().dtype(), torch::kDouble);
  EXPECT_EQ(syn.state("g").scalar_type(), torch::kDouble);
  EXPECT_EQ(delay.state("history").scalar_type(), torch::kDouble);
}

// to(dtype) moves the floating-point tensors only: torch's C++ Module::to turned the CSR
// indices and the refractory step counters into doubles, and the next step failed.
TEST(States, ToDtypeKeepsIntegerBuffersAndTheNetworkRuns) {
  torch::NoGradGuard no_grad;
  brain::EINetSpec spec;
  spec.n_exc = 40, spec.n_inh = 10, spec.delay_ms = 1.0;
  auto net = brain::build_ei_network(spec, 3, c10::kCPU);
  net->reset_state();
  net->to(torch::kDouble);
  int integer_buffers = 0;
  for (const auto& item : net->named_buffers()) {
    const bool integer = !at::isFloatingType(item.value().scalar_type());
    const std::string& name = item.key();
    if (name.find("indptr") != std::string::npos || name.find("indices") != std::string::npos ||
        name.find("last_spike_step") != std::string::npos) {
      EXPECT_TRUE(integer) << name;
      ++integer_buffers;
    } else {
      EXPECT_EQ(item.value().scalar_type(), torch::kDouble) << name;
    }
  }
  EXPECT_GE(integer_buffers, 8);
  brain::RunnerOptions opt;
  opt.progress = 0;
  EXPECT_NO_THROW(brain::Runner(net, opt).run_steps(20));
  EXPECT_EQ(net->find_state("E.V").scalar_type(), torch::kDouble);
}

TEST(Expon, DecaysExactlyAfterAnArrival) {
  brain::Expon syn(2, 5.0, torch::kDouble);
  syn.reset_state();
  Context ctx;
  ctx.dt = 0.1;
  syn.deliver(ctx, torch::tensor({1.0, 2.0}, torch::kDouble));
  for (int k = 1; k <= 100; ++k) {
    ctx.step = k;
    syn.step(ctx);
    ASSERT_NEAR(syn.g()[1].item<double>(), 2.0 * std::exp(-k * 0.1 / 5.0), 1e-12) << k;
  }
}

TEST(DualExpon, MatchesItsClosedFormAndPeaksAtOne) {
  const double tr = 1.0, td = 6.0, dt = 0.05;
  brain::DualExpon syn(1, tr, td, torch::kDouble);
  syn.reset_state();
  Context ctx;
  ctx.dt = dt;
  syn.deliver(ctx, torch::ones({1}, torch::kDouble));  // arrival at t = 0
  const double t_peak = td * tr / (td - tr) * std::log(td / tr);
  const double A = 1 / (std::exp(-t_peak / td) - std::exp(-t_peak / tr));
  double peak = 0;
  for (int k = 1; k <= 400; ++k) {
    ctx.step = k;
    syn.step(ctx);
    const double t = k * dt;
    ASSERT_NEAR(syn.g().item<double>(), A * (std::exp(-t / td) - std::exp(-t / tr)), 1e-12) << t;
    peak = std::max(peak, syn.g().item<double>());
  }
  EXPECT_NEAR(peak, 1.0, 1e-3);
  EXPECT_THROW(brain::DualExpon(1, 5.0, 2.0), c10::Error);
}

TEST(Alpha, MatchesItsClosedFormAndPeaksAtOneAtTau) {
  const double tau = 4.0, dt = 0.1;
  brain::Alpha syn(1, tau, torch::kDouble);
  syn.reset_state();
  Context ctx;
  ctx.dt = dt;
  syn.deliver(ctx, torch::ones({1}, torch::kDouble));
  for (int k = 1; k <= 300; ++k) {
    ctx.step = k;
    syn.step(ctx);
    const double t = k * dt;
    ASSERT_NEAR(syn.g().item<double>(), t / tau * std::exp(1 - t / tau), 1e-12) << t;
  }
}

TEST(Kinetic, AmpaFollowsTheClosedFormDuringAndAfterRelease) {
  const auto p = brain::Kinetic::ampa();
  const double dt = 0.05;
  brain::Kinetic syn(1, p, torch::kDouble);
  syn.reset_state();
  Context ctx;
  ctx.dt = dt;
  syn.deliver(ctx, torch::ones({1}, torch::kDouble));  // spike in step 0
  const double rate = p.alpha * p.T + p.beta, g_inf = p.alpha * p.T / rate;
  for (int k = 1; k <= 200; ++k) {
    ctx.step = k;
    ctx.t = k * dt;
    syn.deliver(ctx, torch::zeros({1}, torch::kDouble));
    const double t = k * dt;  // time since the release began
    const double want = t <= p.T_dur + 1e-12 ? g_inf * (1 - std::exp(-rate * t))
                                             : g_inf * (1 - std::exp(-rate * p.T_dur)) * std::exp(-p.beta * (t - p.T_dur));
    ASSERT_NEAR(syn.g().item<double>(), want, 1e-12) << "t = " << t;
  }
}

TEST(NMDA, RisesThenDecaysAndMgBlockMatchesJahrStevens) {
  brain::NMDA syn(1, {}, torch::kDouble);
  syn.reset_state();
  Context ctx;
  ctx.dt = 0.1;
  syn.deliver(ctx, torch::ones({1}, torch::kDouble));
  std::vector<double> g;
  for (int k = 1; k <= 3000; ++k) {
    ctx.step = k;
    ctx.t = k * 0.1;
    syn.deliver(ctx, torch::zeros({1}, torch::kDouble));
    g.push_back(syn.g().item<double>());
  }
  const auto peak = std::max_element(g.begin(), g.end()) - g.begin();
  EXPECT_GT(peak * 0.1, 2.0);   // rises over a few tau_rise...
  EXPECT_LT(peak * 0.1, 15.0);
  // ...then, once x has gone (tau_rise = 2 ms), decays with tau_decay: g(300) / g(200) = e^{-1}.
  EXPECT_NEAR(g[2999] / g[1999], std::exp(-1.0), 1e-4);
  const brain::MgBlock mg;
  const auto V = torch::tensor({-80.0, -40.0, 0.0}, torch::kDouble);
  const auto I = mg.current(torch::ones({3}, torch::kDouble), V);
  for (int i = 0; i < 3; ++i) {
    const double v = V[i].item<double>();
    EXPECT_NEAR(I[i].item<double>(), (0 - v) / (1 + 1.2 / 3.57 * std::exp(-0.062 * v)), 1e-12);
  }
}

TEST(AlignPost, DeliversDelayedSpikesThroughTheConnectivity) {
  // 4 Poisson inputs onto 3 neurons that never fire: g follows g <- g e^{-dt/tau} + A^T s(t - d).
  const auto dense = torch::tensor({{0.5, 0.0, 1.0}, {0.0, 2.0, 0.0}, {1.5, 0.0, 0.0}, {0.0, 0.25, 3.0}}, torch::kDouble);
  const auto conn = brain::CsrMatrix::from_dense(dense, torch::kInt);
  for (int64_t delay : {0, 3}) {
    auto net = std::make_shared<brain::DynSysGroup>("net");
    auto input = net->add("input", std::make_shared<brain::PoissonGroup>(4, 300.0, 11));
    brain::LifParams p;
    p.V_th = 1e9;  // silent
    auto post = net->add("post", std::make_shared<brain::LIF>(3, p, torch::kDouble));
    auto comm = std::make_shared<brain::CsrComm>(conn, conn.weights);
    auto syn = std::make_shared<brain::Expon>(3, 4.0, torch::kDouble);
    net->add("proj", std::make_shared<brain::AlignPostProj>(input, comm, syn, std::make_shared<brain::CUBA>(), post, delay));
    net->reset_state();
    Context ctx;
    ctx.dt = 0.5;
    std::vector<at::Tensor> spikes;
    at::Tensor g = torch::zeros({3}, torch::kDouble);
    for (ctx.step = 0; ctx.step < 60; ++ctx.step) {
      net->step(ctx);
      spikes.push_back(net->find_state("input.spike").to(torch::kDouble));
      const at::Tensor arriving = ctx.step >= delay ? spikes[ctx.step - delay] : torch::zeros({4}, torch::kDouble);
      g = g * std::exp(-0.5 / 4.0) + arriving.matmul(dense);
      ASSERT_TRUE(torch::allclose(net->find_state("proj.syn.g"), g)) << "delay " << delay << " step " << ctx.step;
    }
    EXPECT_GT(g.sum().item<double>(), 0.0);
  }
}

// Delayed projections from one population read one ring buffer (SPEC: ring buffers per
// presynaptic population), sized by the longest delay, whatever order they update in.
TEST(AlignPost, DelayedProjectionsFromOnePopulationShareOneHistory) {
  const auto dense = torch::tensor({{0.5, 0.0}, {0.0, 2.0}, {1.5, 0.0}, {0.0, 0.25}}, torch::kDouble);
  const auto conn = brain::CsrMatrix::from_dense(dense, torch::kInt);
  auto net = std::make_shared<brain::DynSysGroup>("net");
  auto input = net->add("input", std::make_shared<brain::PoissonGroup>(4, 300.0, 5));
  brain::LifParams p;
  p.V_th = 1e9;
  const std::vector<int64_t> delays{2, 5, 1};  // the first one created owns the buffer
  std::vector<std::shared_ptr<brain::AlignPostProj>> projs;
  for (size_t i = 0; i < delays.size(); ++i) {
    auto post = net->add("post" + std::to_string(i), std::make_shared<brain::LIF>(2, p, torch::kDouble));
    projs.push_back(std::make_shared<brain::AlignPostProj>(input, std::make_shared<brain::CsrComm>(conn, conn.weights),
                                                           std::make_shared<brain::Expon>(2, 4.0, torch::kDouble),
                                                           std::make_shared<brain::CUBA>(), post, delays[i]));
  }
  // Added in reverse: the readers update before the owner pushes.
  for (size_t i = delays.size(); i-- > 0;) net->add("proj" + std::to_string(i), projs[i]);
  ASSERT_EQ(projs[1]->delay(), projs[0]->delay());
  ASSERT_EQ(projs[2]->delay(), projs[0]->delay());
  EXPECT_EQ(projs[0]->delay()->max_delay(), 5);
  net->reset_state();
  int64_t histories = 0;
  for (const auto& path : net->state_paths()) histories += path.find("history") != std::string::npos;
  EXPECT_EQ(histories, 1);
  EXPECT_EQ(net->find_state("proj0.delay.history").sizes(), (std::vector<int64_t>{6, 4}));

  Context ctx;
  ctx.dt = 0.5;
  std::vector<at::Tensor> spikes;
  std::vector<at::Tensor> g(delays.size(), torch::zeros({2}, torch::kDouble));
  for (ctx.step = 0; ctx.step < 80; ++ctx.step) {
    net->step(ctx);
    spikes.push_back(net->find_state("input.spike").to(torch::kDouble));
    for (size_t i = 0; i < delays.size(); ++i) {
      const int64_t d = delays[i];
      const at::Tensor arriving = ctx.step >= d ? spikes[ctx.step - d] : torch::zeros({4}, torch::kDouble);
      g[i] = g[i] * std::exp(-0.5 / 4.0) + arriving.matmul(dense);
      ASSERT_TRUE(torch::allclose(net->find_state("proj" + std::to_string(i) + ".syn.g"), g[i]))
          << "delay " << d << " step " << ctx.step;
    }
  }
  EXPECT_GT(g[1].sum().item<double>(), 0.0);

  // Growing the ring now would scramble what it holds.
  try {
    auto post = std::make_shared<brain::LIF>(2, p, torch::kDouble);
    post->reset_state();
    brain::AlignPostProj late(input, std::make_shared<brain::CsrComm>(conn, conn.weights),
                              std::make_shared<brain::Expon>(2, 4.0, torch::kDouble), std::make_shared<brain::CUBA>(),
                              post, 9);
    FAIL() << "a longer delay was accepted after the simulation started";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("before the simulation starts"), std::string::npos) << e.what();
  }
  // A float32 reader gets a history of its own.
  auto post32 = std::make_shared<brain::LIF>(2, p, torch::kFloat);
  brain::AlignPostProj other(input, std::make_shared<brain::CsrComm>(conn, conn.weights.to(torch::kFloat)),
                             std::make_shared<brain::Expon>(2, 4.0, torch::kFloat), std::make_shared<brain::CUBA>(),
                             post32, 3);
  EXPECT_NE(other.delay(), projs[0]->delay());
}

// sum over synapses k of w_k * past[step - delays_k][..., pre_k], added at [..., post_k]: what
// per-synapse delays deliver at `step`, one synapse at a time (nothing before the first step).
at::Tensor naive_per_synapse_sum(const std::vector<at::Tensor>& past, int64_t step, const brain::CsrMatrix& conn,
                                 const at::Tensor& delays, const at::Tensor& w) {
  const auto rows = torch::repeat_interleave(torch::arange(conn.n_rows), conn.indptr.to(torch::kLong).diff());
  std::vector<int64_t> shape = past.at(step).sizes().vec();
  shape.back() = conn.n_cols;
  at::Tensor sum = torch::zeros(shape, torch::kDouble);
  for (int64_t k = 0; k < conn.indices.numel(); ++k) {
    const int64_t from = step - delays[k].item<int64_t>();
    if (from < 0) continue;
    sum.select(-1, conn.indices[k].item<int64_t>()) += w[k] * past[from].select(-1, rows[k].item<int64_t>());
  }
  return sum;
}

// Per-synapse delays: g follows g <- g e^{-dt/tau} + sum_k w_k s(t - d_k)[pre_k] e_{post_k},
// with the ring shared with a uniformly delayed projection from the same population (updating
// before or after it, which matters for the synapses without delay), by delay group or by
// synapse, and with the weights changed in place during the run.
TEST(AlignPost, PerSynapseDelaysDeliverEachSpikeAfterItsSynapsesDelay) {
  torch::manual_seed(1);
  const int64_t n_pre = 12, n_post = 5, steps = 120;
  const auto dense = torch::rand({n_pre, n_post}, torch::kDouble) * (torch::rand({n_pre, n_post}) < 0.5);
  const auto conn = brain::CsrMatrix::from_dense(dense, torch::kInt);
  const int64_t nnz = conn.indices.size(0);
  const double dt = 0.5, tau = 4.0;
  brain::LifParams silent;
  silent.V_th = 1e9;
  for (const bool few : {true, false}) {
    const auto delays = few ? torch::tensor({0, 3, 7}).index({torch::randint(3, {nnz})}) : torch::randint(0, 25, {nnz});
    for (const bool shared_first : {true, false}) {
      auto net = std::make_shared<brain::DynSysGroup>("net");
      auto input = net->add("input", std::make_shared<brain::PoissonGroup>(n_pre, 200.0, 7));
      auto post = net->add("post", std::make_shared<brain::LIF>(n_post, silent, torch::kDouble));
      auto other_post = net->add("other_post", std::make_shared<brain::LIF>(n_post, silent, torch::kDouble));
      auto comm = std::make_shared<brain::CsrComm>(conn, conn.weights.clone());
      auto proj = std::make_shared<brain::AlignPostProj>(input, comm, std::make_shared<brain::Expon>(n_post, tau, torch::kDouble),
                                                         std::make_shared<brain::CUBA>(), post);
      auto uniform = std::make_shared<brain::AlignPostProj>(
          input, std::make_shared<brain::CsrComm>(conn, conn.weights), std::make_shared<brain::Expon>(n_post, tau, torch::kDouble),
          std::make_shared<brain::CUBA>(), other_post, 2);  // owns the ring
      proj->set_synapse_delays(delays);
      ASSERT_EQ(proj->delay(), uniform->delay());
      EXPECT_EQ(proj->synapse_delays()->grouped(), few);
      // Updating first, the per-synapse reader finds this step's slot not yet pushed by the owner.
      if (shared_first) {
        net->add("delayed", proj);
        net->add("uniform", uniform);
      } else {
        net->add("uniform", uniform);
        net->add("delayed", proj);
      }
      net->reset_state();
      EXPECT_EQ(net->find_state("uniform.delay.history").size(0), delays.max().item<int64_t>() + 1);
      Context ctx;
      ctx.dt = dt;
      std::vector<at::Tensor> spikes;
      at::Tensor g = torch::zeros({n_post}, torch::kDouble);
      at::Tensor w = conn.weights.clone();
      for (ctx.step = 0; ctx.step < steps; ++ctx.step) {
        if (ctx.step == steps / 2) {
          torch::NoGradGuard no_grad;
          comm->weights().mul_(-3.0);  // a grouped delivery must not keep the old weights
          w.mul_(-3.0);
        }
        net->step(ctx);
        spikes.push_back(net->find_state("input.spike").to(torch::kDouble));
        g = g * std::exp(-dt / tau) + naive_per_synapse_sum(spikes, ctx.step, conn, delays, w);
        ASSERT_TRUE(torch::allclose(net->find_state("delayed.syn.g"), g, 1e-12, 1e-12))
            << "few " << few << " shared_first " << shared_first << " step " << ctx.step;
      }
      EXPECT_GT(g.abs().sum().item<double>(), 0.0);
    }
  }
}

// Gradients reach the per-synapse weights through the delays: one projection of type Projection
// with a delay per synapse equals, batched, the same synapses split into uniformly delayed
// projections, one per delay over that delay's synapses (the rest weighted by zero), sharing one
// Expon synapse of syn_size neurons. make(pre, syn, comm, out, post, delay_steps) builds one.
template <typename Projection, typename Make>
void expect_per_synapse_delays_equal_one_projection_per_delay(const at::Tensor& delays, int64_t syn_size, Make make) {
  const auto dense = torch::tensor({{0.5, 0.0, 1.0}, {0.0, 2.0, 0.0}, {1.5, 0.0, 0.0}, {0.0, 0.25, 3.0}}, torch::kDouble);
  const auto conn = brain::CsrMatrix::from_dense(dense, torch::kInt);
  ASSERT_EQ(delays.numel(), conn.indices.numel());
  brain::LifParams p;
  p.V_th = -55.0;
  auto build = [&](bool split, at::Tensor weights) {
    auto net = std::make_shared<brain::DynSysGroup>("net");
    auto input = net->add("input", std::make_shared<brain::PoissonGroup>(4, 400.0, 3));
    auto post = net->add("post", std::make_shared<brain::LIF>(3, p, torch::kDouble));
    auto syn = std::make_shared<brain::Expon>(syn_size, 4.0, torch::kDouble);
    auto out = std::make_shared<brain::CUBA>();
    if (!split) {
      std::shared_ptr<Projection> proj = make(input, syn, std::make_shared<brain::CsrComm>(conn, weights), out, post, 0);
      net->add("proj", proj);
      proj->set_synapse_delays(delays);
      return net;
    }
    const auto distinct = std::get<0>(torch::_unique(delays));
    for (int64_t i = 0; i < distinct.numel(); ++i) {
      const int64_t d = distinct[i].item<int64_t>();
      const auto keep = (delays == d).to(torch::kDouble);
      net->add("proj" + std::to_string(d), make(input, syn, std::make_shared<brain::CsrComm>(conn, weights * keep), out, post, d));
    }
    return net;
  };
  std::vector<at::Tensor> grads, outputs;
  for (const bool split : {true, false}) {
    const auto w = conn.weights.clone().requires_grad_();
    auto net = build(split, w);
    net->reset_state(2);
    Context ctx;
    ctx.dt = 0.5;
    at::Tensor loss = torch::zeros({}, torch::kDouble);
    for (ctx.step = 0; ctx.step < 80; ++ctx.step) {
      net->step(ctx);
      loss = loss + (net->find_state("post.V") * (ctx.step % 7 + 1)).sum();
    }
    outputs.push_back(loss.detach());
    grads.push_back(torch::autograd::grad({loss}, {w})[0]);
  }
  EXPECT_TRUE(torch::allclose(outputs[0], outputs[1], 1e-12, 1e-10));
  EXPECT_TRUE(torch::allclose(grads[0], grads[1], 1e-10, 1e-10)) << grads[0] << grads[1];
  EXPECT_GT(grads[0].abs().sum().item<double>(), 0.0);
}

TEST(AlignPost, PerSynapseDelaysCarryGradientsToTheWeights) {
  expect_per_synapse_delays_equal_one_projection_per_delay<brain::AlignPostProj>(
      torch::tensor({0, 3, 1, 3, 1, 0}), 3, [](auto pre, auto syn, auto comm, auto out, auto post, int64_t d) {
        return std::make_shared<brain::AlignPostProj>(pre, comm, syn, out, post, d);
      });
}

// Short-term plasticity with per-synapse delays: each synapse's release is its neuron's u x at
// emission, arriving d steps on, so it equals one STP projection per delay, outputs and
// gradients, with STP added before the delays; and added after them, the same run.
TEST(AlignPost, PerSynapseDelaysWithStpEqualOneProjectionPerDelay) {
  const brain::STPParams stp{0.2, 100.0, 50.0, true};
  const auto delays = torch::tensor({0, 3, 1, 3, 1, 0});
  expect_per_synapse_delays_equal_one_projection_per_delay<brain::AlignPostProj>(
      delays, 3, [&](auto pre, auto syn, auto comm, auto out, auto post, int64_t d) {
        auto proj = std::make_shared<brain::AlignPostProj>(pre, comm, syn, out, post, d);
        proj->add_stp(stp);
        return proj;
      });
  const auto conn = brain::CsrMatrix::from_dense(
      torch::tensor({{0.5, 0.0, 1.0}, {0.0, 2.0, 0.0}, {1.5, 0.0, 0.0}, {0.0, 0.25, 3.0}}, torch::kDouble), torch::kInt);
  std::vector<at::Tensor> g;
  for (const bool stp_first : {true, false}) {
    auto net = std::make_shared<brain::DynSysGroup>("net");
    auto input = net->add("input", std::make_shared<brain::PoissonGroup>(4, 400.0, 3));
    brain::LifParams silent;
    silent.V_th = 1e9;
    auto post = net->add("post", std::make_shared<brain::LIF>(3, silent, torch::kDouble));
    auto proj = net->add("proj", std::make_shared<brain::AlignPostProj>(
                                     input, std::make_shared<brain::CsrComm>(conn, conn.weights),
                                     std::make_shared<brain::Expon>(3, 4.0, torch::kDouble), std::make_shared<brain::CUBA>(), post));
    if (stp_first) proj->add_stp(stp);
    proj->set_synapse_delays(delays);
    if (!stp_first) proj->add_stp(stp);
    net->reset_state();
    Context ctx;
    ctx.dt = 0.5;
    at::Tensor sum = torch::zeros({3}, torch::kDouble);
    for (ctx.step = 0; ctx.step < 80; ++ctx.step) {
      net->step(ctx);
      sum += net->find_state("proj.syn.g");
    }
    g.push_back(sum);
  }
  EXPECT_TRUE(torch::equal(g[0], g[1]));
  EXPECT_GT(g[0].sum().item<double>(), 0.0);
}

template <typename F>
void expect_error_saying(F&& f, const std::string& words) {
  try {
    f();
    FAIL() << "accepted; expected an error saying " << words;
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

TEST(AlignPost, PerSynapseDelaysRefuseWhatTheyCannotDo) {
  const auto conn = brain::CsrMatrix::from_dense(torch::eye(3, torch::kDouble), torch::kInt);
  auto input = std::make_shared<brain::PoissonGroup>(3, 10.0, 1);
  auto post = std::make_shared<brain::LIF>(3, brain::LifParams{}, torch::kDouble);
  auto make = [&](int64_t delay, std::shared_ptr<brain::Comm> comm = nullptr) {
    return std::make_shared<brain::AlignPostProj>(
        input, comm ? comm : std::make_shared<brain::CsrComm>(conn, conn.weights),
        std::make_shared<brain::Expon>(3, 4.0, torch::kDouble), std::make_shared<brain::CUBA>(), post, delay);
  };
  const auto delays = torch::tensor({1, 2, 0});
  expect_error_saying([&] { make(0)->set_synapse_delays(torch::tensor({1.0, 2.0, 0.0})); }, "integer tensor");
  expect_error_saying([&] { make(0)->set_synapse_delays(torch::tensor({1, 2})); }, "one delay per synapse ([3])");
  expect_error_saying([&] { make(0)->set_synapse_delays(torch::tensor({1, -2, 0})); }, ">= 0");
  expect_error_saying([&] { make(2)->set_synapse_delays(delays); }, "replace the uniform delay_steps");
  expect_error_saying([&] { make(0, std::make_shared<brain::DenseComm>(torch::eye(3, torch::kDouble)))->set_synapse_delays(delays); },
               "need CSR connectivity");
  expect_error_saying([&] { make(0, std::make_shared<brain::CsrComm>(conn, conn.weights))->set_synapse_delays(delays.to(torch::kBool)); },
               "integer tensor");
  expect_error_saying([&] {
    auto proj = make(0);
    proj->set_synapse_delays(delays);
    proj->set_synapse_delays(delays);
  }, "already set");
  // STDP learns one shared weight vector, which a batch of independent runs cannot share.
  expect_error_saying([&] {
    auto net = std::make_shared<brain::DynSysGroup>("net");
    auto own_input = net->add("input", std::make_shared<brain::PoissonGroup>(3, 10.0, 1));
    auto own_post = net->add("post", std::make_shared<brain::LIF>(3, brain::LifParams{}, torch::kDouble));
    auto proj = net->add("proj", std::make_shared<brain::AlignPostProj>(
                                     own_input, std::make_shared<brain::CsrComm>(conn, torch::full({3}, 0.5, torch::kDouble)),
                                     std::make_shared<brain::Expon>(3, 4.0, torch::kDouble), std::make_shared<brain::CUBA>(),
                                     own_post));
    proj->set_synapse_delays(delays);
    proj->add_stdp({});
    net->reset_state(2);
    Context ctx;
    ctx.dt = 0.1;
    net->step(ctx);
  }, "needs unbatched states");
}

// AlignPre with per-synapse delays: g_post[post_k] = sum_k w_k g(t - d_k)[pre_k], where g is
// the presynaptic synapse's state (here NMDA, nonlinear in the spikes), by delay group or by
// synapse, batched, and with the weights changed in place during the run.
TEST(AlignPre, PerSynapseDelaysCarryThePresynapticStateAlongEachSynapse) {
  torch::manual_seed(2);
  const int64_t n_pre = 10, n_post = 4, steps = 100, batch = 2;
  const auto dense = torch::rand({n_pre, n_post}, torch::kDouble) * (torch::rand({n_pre, n_post}) < 0.6);
  const auto conn = brain::CsrMatrix::from_dense(dense, torch::kLong);
  const int64_t nnz = conn.indices.size(0);
  brain::LifParams silent;
  silent.V_th = 1e9;
  for (const bool few : {true, false}) {
    const auto delays = few ? torch::tensor({0, 2, 9}).index({torch::randint(3, {nnz})}) : torch::randint(0, 30, {nnz});
    auto net = std::make_shared<brain::DynSysGroup>("net");
    auto input = net->add("input", std::make_shared<brain::PoissonGroup>(n_pre, 150.0, 5));
    auto post = net->add("post", std::make_shared<brain::LIF>(n_post, silent, torch::kDouble));
    auto comm = std::make_shared<brain::CsrComm>(conn, conn.weights.clone());
    auto proj = net->add("proj", std::make_shared<brain::AlignPreProj>(
                                     input, std::make_shared<brain::NMDA>(n_pre, brain::NMDAParams{}, torch::kDouble),
                                     comm, std::make_shared<brain::MgBlock>(), post));
    proj->set_synapse_delays(delays);
    EXPECT_EQ(proj->synapse_delays()->grouped(), few);
    net->reset_state(batch);
    EXPECT_EQ(net->find_state("proj.delay.history").sizes(),
              (std::vector<int64_t>{delays.max().item<int64_t>() + 1, batch, n_pre}));
    Context ctx;
    ctx.dt = 0.25;
    std::vector<at::Tensor> g;  // the presynaptic state, step by step
    at::Tensor w = conn.weights.clone();
    for (ctx.step = 0; ctx.step < steps; ++ctx.step) {
      if (ctx.step == steps / 2) {
        torch::NoGradGuard no_grad;
        comm->weights().mul_(-2.0);  // a grouped delivery must not keep the old weights
        w.mul_(-2.0);
      }
      net->step(ctx);
      g.push_back(net->find_state("proj.syn.g").clone());
      const at::Tensor expected = naive_per_synapse_sum(g, ctx.step, conn, delays, w);
      ASSERT_TRUE(torch::allclose(net->find_state("proj.g_post"), expected, 1e-12, 1e-12))
          << "few " << few << " step " << ctx.step;
    }
    EXPECT_GT(g.back().abs().sum().item<double>(), 0.0);
    EXPECT_FALSE(torch::equal(g.back()[0], g.back()[1]));  // the batch rows drew their own spikes
  }
}

// Through AlignPre the gradients also pass the history of the presynaptic state.
TEST(AlignPre, PerSynapseDelaysEqualOneUniformProjectionPerDelay) {
  expect_per_synapse_delays_equal_one_projection_per_delay<brain::AlignPreProj>(
      torch::tensor({0, 4, 1, 4, 1, 0}, torch::kInt), 4, [](auto pre, auto syn, auto comm, auto out, auto post, int64_t d) {
        return std::make_shared<brain::AlignPreProj>(pre, syn, comm, out, post, d);
      });
}

TEST(AlignPre, PerSynapseDelaysRefuseWhatTheyCannotDo) {
  const auto conn = brain::CsrMatrix::from_dense(torch::eye(3, torch::kDouble), torch::kInt);
  auto input = std::make_shared<brain::PoissonGroup>(3, 10.0, 1);
  auto post = std::make_shared<brain::LIF>(3, brain::LifParams{}, torch::kDouble);
  auto make = [&](int64_t delay, std::shared_ptr<brain::Comm> comm = nullptr) {
    return std::make_shared<brain::AlignPreProj>(input, std::make_shared<brain::Expon>(3, 4.0, torch::kDouble),
                                                 comm ? comm : std::make_shared<brain::CsrComm>(conn, conn.weights),
                                                 std::make_shared<brain::CUBA>(), post, delay);
  };
  const auto delays = torch::tensor({1, 2, 0});
  expect_error_saying([&] { make(0)->set_synapse_delays(torch::tensor({1.0, 2.0, 0.0})); }, "AlignPreProj: delay_steps are whole steps");
  expect_error_saying([&] { make(0)->set_synapse_delays(torch::tensor({1, 2})); }, "one delay per synapse ([3])");
  expect_error_saying([&] { make(0)->set_synapse_delays(torch::tensor({1, -2, 0})); }, ">= 0");
  expect_error_saying([&] { make(2)->set_synapse_delays(delays); }, "replace the uniform delay_steps");
  expect_error_saying([&] { make(0, std::make_shared<brain::DenseComm>(torch::eye(3, torch::kDouble)))->set_synapse_delays(delays); },
               "need CSR connectivity");
  expect_error_saying([&] {
    auto proj = make(0);
    proj->reset_state();
    proj->set_synapse_delays(delays);
  }, "before reset_state()");
  expect_error_saying([&] {
    auto proj = make(0);
    proj->set_synapse_delays(delays);
    proj->set_synapse_delays(delays);
  }, "already set");
}

// A shared history allocated but still empty grows in place; a reader of another size is refused.
TEST(Delay, SharedHistoryGrowsBeforeTheRunAndChecksItsReaders) {
  auto source = std::make_shared<brain::PoissonGroup>(4, 100.0, 3);
  const auto first = brain::shared_spike_delay(*source, 4, 2, torch::kDouble);
  ASSERT_TRUE(first.created);
  first.delay->reset_state(3);
  EXPECT_EQ(first.delay->state("history").sizes(), (std::vector<int64_t>{3, 3, 4}));
  const auto second = brain::shared_spike_delay(*source, 4, 6, torch::kDouble);
  EXPECT_FALSE(second.created);
  EXPECT_EQ(second.delay, first.delay);
  EXPECT_EQ(first.delay->state("history").sizes(), (std::vector<int64_t>{7, 3, 4}));
  EXPECT_EQ(first.delay->state("history").scalar_type(), torch::kDouble);
  try {
    brain::shared_spike_delay(*source, 5, 1, torch::kDouble);
    FAIL() << "a reader of 5 neurons shared a history of 4";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds 4 neurons"), std::string::npos) << e.what();
  }
  EXPECT_THROW(brain::shared_spike_delay(*source, 4, 0, torch::kDouble), c10::Error);
}

TEST(STP, ReleasesFollowTheTsodyksMarkramRecursion) {
  for (bool facilitation : {true, false}) {
    brain::STPParams p{0.2, 100.0, 50.0, facilitation};
    brain::STP stp(1, p, torch::kDouble);
    stp.reset_state();
    Context ctx;
    ctx.dt = 0.5;
    const std::vector<int64_t> spike_steps{0, 20, 30, 40, 50, 300};
    double u = 0, x = 1;  // the recursion of Tsodyks, Pawelzik & Markram (1998), by hand
    int64_t last = 0;
    size_t next = 0;
    for (ctx.step = 0; ctx.step <= 300; ++ctx.step) {
      const bool spike = next < spike_steps.size() && spike_steps[next] == ctx.step;
      const auto out = stp.process(ctx, torch::full({1}, spike ? 1.0 : 0.0, torch::kDouble));
      if (!spike) {
        ASSERT_EQ(out.item<double>(), 0.0);
        continue;
      }
      const double gap = (ctx.step - last) * ctx.dt;
      const double u_minus = facilitation ? u * std::exp(-gap / p.tau_f) : 0.0;
      const double x_minus = 1 - (1 - x) * std::exp(-gap / p.tau_d);
      u = u_minus + p.U * (1 - u_minus);
      const double release = u * x_minus;
      x = x_minus - release;
      last = ctx.step;
      ++next;
      ASSERT_NEAR(out.item<double>(), release, 1e-12) << "spike at step " << ctx.step;
    }
  }
}

// A population whose spikes follow a script (for plasticity tests).
class Scripted : public brain::NeuronGroup {
 public:
  Scripted(int64_t n, std::vector<std::vector<int64_t>> steps)
      : NeuronGroup("Scripted", n, torch::kDouble), steps_(std::move(steps)) {}
  void update(const Context& ctx) override {
    auto s = torch::zeros({n_}, torch::kDouble);
    for (int64_t i = 0; i < n_; ++i) {
      for (auto k : steps_[i]) {
        if (k == ctx.step) s[i] = 1.0;
      }
    }
    set_state("spike", s);
  }

 protected:
  void reset_own_state(int64_t) override {
    set_state("V", torch::zeros({n_}, torch::kDouble));
    set_state("spike", torch::zeros({n_}, torch::kDouble));
    set_state("input", torch::zeros({n_}, torch::kDouble));
  }

 private:
  std::vector<std::vector<int64_t>> steps_;
};

TEST(STDP, WeightChangeIsTheSongMillerAbbottPairSum) {
  const std::vector<int64_t> pre_steps{10, 120, 200, 260}, post_steps{30, 100, 205, 250};
  const double dt = 0.1, w0 = 0.5;
  brain::AlignPostProj::STDPParams p;  // tau 20 ms, A+ 0.01, A- 0.0105, w in [0, 1]
  auto pre = std::make_shared<Scripted>(1, std::vector<std::vector<int64_t>>{pre_steps});
  auto post = std::make_shared<Scripted>(1, std::vector<std::vector<int64_t>>{post_steps});
  const auto conn = brain::CsrMatrix::from_dense(torch::ones({1, 1}, torch::kDouble), torch::kLong);
  auto comm = std::make_shared<brain::CsrComm>(conn, torch::full({1}, w0, torch::kDouble));
  auto net = std::make_shared<brain::DynSysGroup>("net");
  net->add("pre", pre);
  net->add("post", post);
  auto proj = net->add("proj", std::make_shared<brain::AlignPostProj>(pre, comm, std::make_shared<brain::Expon>(1, 5.0, torch::kDouble),
                                                                       std::make_shared<brain::CUBA>(), post));
  proj->add_stdp(p);
  net->reset_state();
  Context ctx;
  ctx.dt = dt;
  for (ctx.step = 0; ctx.step < 300; ++ctx.step) net->step(ctx);
  // Every pre-before-post pair potentiates by A+ e^{-dt_pair / tau+}; every post-before-pre
  // pair depresses by A- e^{-dt_pair / tau-} (all pairs, additive).
  double want = w0;
  for (auto tj : post_steps) {
    for (auto ti : pre_steps) {
      if (ti < tj) want += p.A_plus * std::exp(-(tj - ti) * dt / p.tau_plus);
      if (tj < ti) want -= p.A_minus * std::exp(-(ti - tj) * dt / p.tau_minus);
    }
  }
  EXPECT_NEAR(comm->weights().item<double>(), want, 1e-12);
  EXPECT_NE(want, w0);

  // Clipping: a huge A+ saturates at w_max.
  auto comm2 = std::make_shared<brain::CsrComm>(conn, torch::full({1}, w0, torch::kDouble));
  auto net2 = std::make_shared<brain::DynSysGroup>("net");
  auto pre2 = net2->add("pre", std::make_shared<Scripted>(1, std::vector<std::vector<int64_t>>{{1}}));
  auto post2 = net2->add("post", std::make_shared<Scripted>(1, std::vector<std::vector<int64_t>>{{5}}));
  auto proj2 = net2->add("proj", std::make_shared<brain::AlignPostProj>(pre2, comm2, std::make_shared<brain::Expon>(1, 5.0, torch::kDouble),
                                                                         std::make_shared<brain::CUBA>(), post2));
  brain::AlignPostProj::STDPParams big;
  big.A_plus = 10;
  proj2->add_stdp(big);
  net2->reset_state();
  for (ctx.step = 0; ctx.step < 10; ++ctx.step) net2->step(ctx);
  EXPECT_EQ(comm2->weights().item<double>(), 1.0);
  // A homogeneous weight cannot learn per synapse.
  auto homo = std::make_shared<brain::CsrComm>(conn, torch::tensor(0.5, torch::kDouble));
  brain::AlignPostProj bad(pre2, homo, std::make_shared<brain::Expon>(1, 5.0, torch::kDouble), std::make_shared<brain::CUBA>(), post2);
  EXPECT_THROW(bad.add_stdp(big), c10::Error);
}

TEST(STDP, DenseWeightsLearnExactlyLikeCsrWeights) {
  // Every synapse of a 5 x 4 matrix, stored densely and as CSR, under the same spike trains
  // (pairs in the same step included), with weights that hit both clipping bounds.
  const std::vector<std::vector<int64_t>> pre_steps{{3, 40, 41, 90}, {10, 60}, {}, {5, 6, 7, 70, 120}, {30, 31}};
  const std::vector<std::vector<int64_t>> post_steps{{8, 60}, {41, 100}, {5, 30, 31, 32}, {}};
  brain::AlignPostProj::STDPParams p;
  p.A_plus = 0.2;
  p.A_minus = 0.25;
  p.w_min = 0.1;
  p.w_max = 0.9;
  // Fixed, not random: whether a bound is reached must not depend on the global generator.
  const auto w0 = torch::linspace(0.15, 0.85, 20, torch::kDouble).view({5, 4});
  auto run = [&](std::shared_ptr<brain::Comm> comm) {
    auto net = std::make_shared<brain::DynSysGroup>("net");
    auto pre = net->add("pre", std::make_shared<Scripted>(5, pre_steps));
    auto post = net->add("post", std::make_shared<Scripted>(4, post_steps));
    auto proj = net->add("proj", std::make_shared<brain::AlignPostProj>(
                                     pre, comm, std::make_shared<brain::Expon>(4, 5.0, torch::kDouble),
                                     std::make_shared<brain::CUBA>(), post));
    proj->add_stdp(p);
    net->reset_state();
    Context ctx;
    ctx.dt = 0.5;
    for (ctx.step = 0; ctx.step < 150; ++ctx.step) net->step(ctx);
  };
  auto dense = std::make_shared<brain::DenseComm>(w0.clone());
  run(dense);
  const auto conn = brain::CsrMatrix::from_dense(torch::ones({5, 4}, torch::kDouble), torch::kLong);
  auto csr = std::make_shared<brain::CsrComm>(conn, w0.clone().flatten());
  run(csr);
  EXPECT_TRUE(torch::allclose(dense->weights(), csr->weights().view({5, 4}), 0, 1e-14));
  EXPECT_FALSE(torch::allclose(dense->weights(), w0));
  EXPECT_NEAR(dense->weights().max().item<double>(), p.w_max, 1e-12);
  EXPECT_NEAR(dense->weights().min().item<double>(), p.w_min, 1e-12);
  // Presynaptic neuron 2 never spiked: its trace is 0, so its synapses never change.
  EXPECT_TRUE(torch::equal(dense->weights()[2], w0[2]));
  // Other connectivity cannot learn.
  auto one = std::make_shared<brain::OneToOne>(4, torch::tensor(0.5, torch::kDouble));
  auto a = std::make_shared<Scripted>(4, post_steps);
  auto b = std::make_shared<Scripted>(4, post_steps);
  brain::AlignPostProj bad(a, one, std::make_shared<brain::Expon>(4, 5.0, torch::kDouble), std::make_shared<brain::CUBA>(), b);
  EXPECT_THROW(bad.add_stdp(p), c10::Error);
}

// STDP with per-synapse delays, against the pair sum: a synapse of delay d sees its presynaptic
// spikes d steps late, so every pair is the undelayed pair with the presynaptic time shifted
// by d. One presynaptic neuron onto two postsynaptic ones with the same train, delays 0 and
// 25 steps; through the fused CPU pass and through the tensor ops (a step clock, as replay).
TEST(STDP, PerSynapseDelaysShiftEachPairByTheSynapsesDelay) {
  const std::vector<int64_t> pre_steps{10, 120, 200, 260}, post_steps{30, 100, 205, 250, 290};
  const std::vector<int64_t> delays{0, 25};
  const double dt = 0.1, w0 = 0.5;
  brain::AlignPostProj::STDPParams p;
  const auto conn = brain::CsrMatrix::from_dense(torch::ones({1, 2}, torch::kDouble), torch::kLong);
  for (const bool clock : {false, true}) {
    auto net = std::make_shared<brain::DynSysGroup>("net");
    auto pre = net->add("pre", std::make_shared<Scripted>(1, std::vector<std::vector<int64_t>>{pre_steps}));
    auto post = net->add("post", std::make_shared<Scripted>(2, std::vector<std::vector<int64_t>>{post_steps, post_steps}));
    auto comm = std::make_shared<brain::CsrComm>(conn, torch::full({2}, w0, torch::kDouble));
    auto proj = net->add("proj", std::make_shared<brain::AlignPostProj>(
                                     pre, comm, std::make_shared<brain::Expon>(2, 5.0, torch::kDouble),
                                     std::make_shared<brain::CUBA>(), post));
    proj->set_synapse_delays(torch::tensor(delays));
    proj->add_stdp(p);
    net->reset_state();
    Context ctx;
    ctx.dt = dt;
    for (ctx.step = 0; ctx.step < 320; ++ctx.step) {
      if (clock) ctx.clock = torch::full({}, ctx.step, torch::kLong);
      net->step(ctx);
    }
    for (int64_t k = 0; k < 2; ++k) {
      double want = w0;
      for (auto tj : post_steps) {
        for (auto emitted : pre_steps) {
          const int64_t ti = emitted + delays[k];
          if (ti < tj) want += p.A_plus * std::exp(-(tj - ti) * dt / p.tau_plus);
          if (tj < ti) want -= p.A_minus * std::exp(-(ti - tj) * dt / p.tau_minus);
        }
      }
      EXPECT_NEAR(comm->weights()[k].item<double>(), want, 1e-12) << "synapse " << k << " clock " << clock;
    }
    EXPECT_NE(comm->weights()[0].item<double>(), comm->weights()[1].item<double>());
  }
}

// The synapses of `conn` whose delay is d, as a CSR of their own (the CSR's order kept), and
// where they sit in conn.
std::pair<brain::CsrMatrix, at::Tensor> synapses_with_delay(const brain::CsrMatrix& conn, const at::Tensor& delays,
                                                            int64_t d) {
  const auto rows = torch::repeat_interleave(torch::arange(conn.n_rows), conn.indptr.to(torch::kLong).diff());
  const auto where = (delays == d).nonzero().flatten();
  auto sub = brain::CsrMatrix::from_coo(rows.index_select(0, where), conn.indices.to(torch::kLong).index_select(0, where),
                                       conn.weights.index_select(0, where), conn.n_rows, conn.n_cols);
  sub.indptr = sub.indptr.to(conn.indptr.scalar_type());
  sub.indices = sub.indices.to(conn.indices.scalar_type());
  return {sub, where};
}

// STDP on a projection with a delay per synapse learns what one uniformly delayed projection
// per delay learns over that delay's synapses, to the bit (the fused pass) or to rounding (the
// tensor ops, under a step clock), and delivers what they deliver with the weights learnt so
// far (into one shared synapse): random spike trains with pairs in one step, weights that
// reach both bounds, few delays (by group) and many (by synapse), and STDP added before or
// after the delays.
TEST(STDP, PerSynapseDelaysLearnAsOneProjectionPerDelay) {
  torch::manual_seed(4);
  // 8 x 40 at 60%: with few delays the window of the longest is smaller than the synapses, so
  // the fused pass first finds the rows with spikes in flight.
  const int64_t n_pre = 8, n_post = 40, steps = 300;
  auto train = [&](int64_t n, double p_fire) {
    std::vector<std::vector<int64_t>> steps_of(n);
    const auto fired = torch::rand({steps, n}) < p_fire;
    for (int64_t s = 0; s < steps; ++s)
      for (int64_t i = 0; i < n; ++i)
        if (fired[s][i].item<bool>()) steps_of[i].push_back(s);
    return steps_of;
  };
  const auto pre_steps = train(n_pre, 0.04), post_steps = train(n_post, 0.05);
  const auto dense = torch::linspace(0.15, 0.85, n_pre * n_post, torch::kDouble).view({n_pre, n_post}) *
                     (torch::rand({n_pre, n_post}) < 0.6);
  const auto conn = brain::CsrMatrix::from_dense(dense, torch::kInt);
  const int64_t nnz = conn.indices.numel();
  brain::AlignPostProj::STDPParams p;
  p.A_plus = 0.2;
  p.A_minus = 0.25;
  p.w_min = 0.1;
  p.w_max = 0.9;
  auto network = [&](auto&& add_projections) {
    auto net = std::make_shared<brain::DynSysGroup>("net");
    auto pre = net->add("pre", std::make_shared<Scripted>(n_pre, pre_steps));
    auto post = net->add("post", std::make_shared<Scripted>(n_post, post_steps));
    add_projections(*net, pre, post);
    net->reset_state();
    return net;
  };
  // The synaptic conductance summed over the run.
  auto run = [&](brain::DynSysGroup& net, const brain::Synapse& syn, bool clock) {
    Context ctx;
    ctx.dt = 0.5;
    at::Tensor g = torch::zeros({n_post}, torch::kDouble);
    for (ctx.step = 0; ctx.step < steps; ++ctx.step) {
      if (clock) ctx.clock = torch::full({}, ctx.step, torch::kLong);
      net.step(ctx);
      g += syn.state("g");
    }
    return g;
  };
  for (const bool few : {true, false}) {
    const auto delays = few ? torch::tensor({0, 3, 7}).index({torch::randint(3, {nnz})}) : torch::randint(0, 60, {nnz});
    // One projection per delay, each over its own synapses.
    at::Tensor split = conn.weights.clone();
    std::vector<std::pair<std::shared_ptr<brain::CsrComm>, at::Tensor>> parts;
    auto syn = std::make_shared<brain::Expon>(n_post, 5.0, torch::kDouble);
    auto reference = network([&](brain::DynSysGroup& net, auto pre, auto post) {
      auto out = std::make_shared<brain::CUBA>();
      const auto distinct = std::get<0>(torch::_unique(delays));
      for (int64_t g = 0; g < distinct.numel(); ++g) {
        const int64_t d = distinct[g].item<int64_t>();
        auto [sub, where] = synapses_with_delay(conn, delays, d);
        auto comm = std::make_shared<brain::CsrComm>(sub, sub.weights.clone());
        auto proj = net.add("proj" + std::to_string(d), std::make_shared<brain::AlignPostProj>(pre, comm, syn, out, post, d));
        proj->add_stdp(p);
        parts.emplace_back(comm, where);
      }
    });
    const at::Tensor g_reference = run(*reference, *syn, false);
    EXPECT_GT(g_reference.sum().item<double>(), 0.0);
    for (const auto& [comm, where] : parts) split.index_put_({where}, comm->weights());
    EXPECT_NEAR(split.max().item<double>(), p.w_max, 1e-12);
    EXPECT_NEAR(split.min().item<double>(), p.w_min, 1e-12);
    for (const bool stdp_first : {true, false}) {
      for (const bool clock : {false, true}) {
        std::shared_ptr<brain::AlignPostProj> proj;
        auto own_syn = std::make_shared<brain::Expon>(n_post, 5.0, torch::kDouble);
        auto comm = std::make_shared<brain::CsrComm>(conn, conn.weights.clone());
        auto net = network([&](brain::DynSysGroup& net, auto pre, auto post) {
          proj = net.add("proj", std::make_shared<brain::AlignPostProj>(pre, comm, own_syn, std::make_shared<brain::CUBA>(), post));
          if (stdp_first) proj->add_stdp(p);
          proj->set_synapse_delays(delays);
          if (!stdp_first) proj->add_stdp(p);
        });
        EXPECT_EQ(proj->synapse_delays()->grouped(), few);
        const at::Tensor g = run(*net, *own_syn, clock);
        EXPECT_TRUE(torch::allclose(g, g_reference, 1e-12, 1e-12)) << "few " << few << " clock " << clock;
        if (clock) {
          EXPECT_TRUE(torch::allclose(comm->weights(), split, 0, 1e-14)) << "few " << few;
        } else {
          EXPECT_TRUE(torch::equal(comm->weights(), split)) << "few " << few << "\n" << comm->weights() - split;
        }
      }
    }
  }
}

// Two Poisson inputs onto a silent LIF population through CSR projections, built three ways.
std::shared_ptr<brain::DynSysGroup> two_input_net(const std::string& how, int64_t delay) {
  auto net = std::make_shared<brain::DynSysGroup>("net");
  auto in1 = net->add("in1", std::make_shared<brain::PoissonGroup>(30, 200.0, 1));
  auto in2 = net->add("in2", std::make_shared<brain::PoissonGroup>(20, 300.0, 2));
  brain::LifParams p;
  p.V_th = 1e9;
  auto post = net->add("post", std::make_shared<brain::LIF>(10, p, torch::kDouble));
  auto c1 = std::make_shared<brain::CsrComm>(brain::fixed_prob(30, 10, 0.3, true, 5, c10::kCPU), torch::tensor(0.02, torch::kDouble));
  auto c2 = std::make_shared<brain::CsrComm>(brain::fixed_prob(20, 10, 0.4, true, 6, c10::kCPU), torch::tensor(0.03, torch::kDouble));
  auto out = std::make_shared<brain::COBA>(0.0);
  if (how == "separate") {
    net->add("p1", std::make_shared<brain::AlignPostProj>(in1, c1, std::make_shared<brain::Expon>(10, 5.0, torch::kDouble), out, post, delay));
    net->add("p2", std::make_shared<brain::AlignPostProj>(in2, c2, std::make_shared<brain::Expon>(10, 5.0, torch::kDouble), out, post, delay));
  } else if (how == "merged") {
    auto shared = std::make_shared<brain::Expon>(10, 5.0, torch::kDouble);
    net->add("p1", std::make_shared<brain::AlignPostProj>(in1, c1, shared, out, post, delay));
    net->add("p2", std::make_shared<brain::AlignPostProj>(in2, c2, shared, out, post, delay));
  } else {  // align_pre
    net->add("p1", std::make_shared<brain::AlignPreProj>(in1, std::make_shared<brain::Expon>(30, 5.0, torch::kDouble), c1, out, post, delay));
    net->add("p2", std::make_shared<brain::AlignPreProj>(in2, std::make_shared<brain::Expon>(20, 5.0, torch::kDouble), c2, out, post, delay));
  }
  return net;
}

TEST(Projections, MergedAlignPostAndAlignPreEqualSeparateAlignPost) {
  for (int64_t delay : {0, 4}) {
    std::map<std::string, at::Tensor> V;
    for (const std::string how : {"separate", "merged", "align_pre"}) {
      auto net = two_input_net(how, delay);
      net->reset_state();
      brain::RunnerOptions opt;
      opt.progress = 0;
      opt.monitors = {{"post.V"}};
      V[how] = brain::Runner(net, opt).run(50.0).values.at("post.V");
    }
    EXPECT_GT((V["separate"] - V["separate"][0]).abs().max().item<double>(), 1.0);  // the inputs moved V
    EXPECT_TRUE(torch::allclose(V["merged"], V["separate"], 1e-12, 1e-9)) << "delay " << delay;
    EXPECT_TRUE(torch::allclose(V["align_pre"], V["separate"], 1e-12, 1e-9)) << "delay " << delay;
  }
  // Merging keeps one synaptic state: the second projection has no "syn" of its own.
  auto merged = two_input_net("merged", 0);
  merged->reset_state();
  EXPECT_NO_THROW(merged->find_state("p1.syn.g"));
  EXPECT_THROW(merged->find_state("p2.syn.g"), c10::Error);
}

TEST(Connectivity, FixedProbIsExactBernoulliWithoutSelfLoops) {
  const auto m = brain::fixed_prob(2000, 2000, 0.05, /*include_self=*/false, 3);
  brain::ops::validate_csr(m.indptr, m.indices, {2000, 2000});
  const double n = 2000.0 * 1999.0;
  const double expected = 0.05 * n, sd = std::sqrt(n * 0.05 * 0.95);
  EXPECT_NEAR(static_cast<double>(m.indices.numel()), expected, 4 * sd);
  auto counts = (m.indptr.narrow(0, 1, 2000) - m.indptr.narrow(0, 0, 2000)).to(torch::kLong);
  const auto rows = torch::repeat_interleave(torch::arange(2000), counts);
  EXPECT_EQ((rows == m.indices.to(torch::kLong)).sum().item<int64_t>(), 0);
  // Same seed, same matrix; another seed, another.
  EXPECT_TRUE(torch::equal(brain::fixed_prob(2000, 2000, 0.05, false, 3).indices, m.indices));
  EXPECT_FALSE(torch::equal(brain::fixed_prob(2000, 2000, 0.05, false, 4).indptr, m.indptr));
  EXPECT_THROW(brain::fixed_prob(10, 10, 1.5, true, 0), c10::Error);
  // Row lengths are Binomial(n, p): mean n p, variance n p (1 - p).
  const auto big = brain::fixed_prob(4000, 1000, 0.03, true, 9);
  const auto len = (big.indptr.narrow(0, 1, 4000) - big.indptr.narrow(0, 0, 4000)).to(torch::kDouble);
  EXPECT_NEAR(len.mean().item<double>(), 30.0, 0.5);
  EXPECT_NEAR(len.var().item<double>(), 1000 * 0.03 * 0.97, 0.1 * 29.1);
  // Every column is equally likely: no column far from its expected 120 hits.
  const auto hits = torch::bincount(big.indices.to(torch::kLong), {}, 1000).to(torch::kDouble);
  EXPECT_LT((hits - 120.0).abs().max().item<double>(), 6 * std::sqrt(120.0));
  // Columns increase along each row and never repeat.
  brain::ops::validate_csr(big.indptr, big.indices, {4000, 1000});
  const auto dense = brain::CsrMatrix{big.indptr, big.indices, torch::ones({big.indices.numel()}), 4000, 1000}.to_dense();
  EXPECT_EQ(dense.max().item<double>(), 1.0);
  // p = 1 without self-connections is the complete graph.
  EXPECT_EQ(brain::fixed_prob(50, 50, 1.0, false, 0).indices.numel(), 50 * 49);
  EXPECT_EQ(brain::fixed_prob(50, 60, 0.0, true, 0).indices.numel(), 0);
}

TEST(Connectivity, FixedProbIsTheJitPatternLessItsDiagonal) {
  torch::NoGradGuard no_grad;
  const int64_t n = 300;
  const auto dense = brain::ops::jitc_materialize(torch::tensor(1.0), 0.08, 21, {n, n}) != 0;
  auto as_dense = [&](const brain::CsrMatrix& m) {
    return brain::CsrMatrix{m.indptr, m.indices, torch::ones({m.indices.numel()}), m.n_rows, m.n_cols}.to_dense() != 0;
  };
  EXPECT_TRUE(torch::equal(as_dense(brain::fixed_prob(n, n, 0.08, true, 21)), dense));
  const auto without = brain::fixed_prob(n, n, 0.08, false, 21, c10::kCPU, at::kLong);
  EXPECT_EQ(without.indices.scalar_type(), at::kLong);
  EXPECT_EQ(without.indptr.scalar_type(), at::kLong);
  EXPECT_TRUE(torch::equal(as_dense(without), dense.logical_and(torch::eye(n) == 0)));
  // A window is built without the rest: its columns of the whole, renumbered.
  const auto window = brain::fixed_prob_columns(n, n, 0.08, false, 21, 70, 190);
  EXPECT_TRUE(torch::equal(as_dense(window), dense.logical_and(torch::eye(n) == 0).narrow(1, 70, 120)));
  EXPECT_THROW(brain::fixed_prob(10, 10, 0.5, true, 0, c10::kCPU, at::kFloat), c10::Error);
}

TEST(EINetwork, CobaFiresInThePhysiologicalRange) {
  torch::NoGradGuard no_grad;
  auto net = brain::build_ei_network(brain::EINetSpec{}, 42, c10::kCPU);
  net->reset_state();
  brain::RunnerOptions opt;
  opt.progress = 0;
  const auto drive = torch::tensor(20.0);
  opt.inputs = {{"E.input", drive, false, brain::RunInput::Op::Set}, {"I.input", drive, false, brain::RunInput::Op::Set}};
  opt.monitors = {{"E.spike", std::nullopt, 1, "", at::kBool}, {"I.spike", std::nullopt, 1, "", at::kBool}};
  const auto r = brain::Runner(net, opt).run(300.0);
  for (const char* pop : {"E.spike", "I.spike"}) {
    // Skip the first 50 ms of transient.
    const auto s = r.values.at(pop).narrow(0, 500, 2500);
    const double rate = s.sum().item<double>() / (s.size(1) * 0.25);
    EXPECT_GT(rate, 10.0) << pop;
    EXPECT_LT(rate, 40.0) << pop;
  }
}

// The message of the ConfigError that parsing `text` raises, or "no error".
std::string config_error_of(const std::string& text) {
  try {
    brain::parse_run_config(text);
  } catch (const brain::ConfigError& e) {
    return std::string(e.what());
  }
  return std::string("no error");
}

TEST(Config, ShippedConfigsParse) {
  const auto read = [](const char* file) {
    std::ifstream in(std::string(BRAIN_SOURCE_DIR) + "/models/" + file);
    std::stringstream text;
    text << in.rdbuf();
    return brain::parse_run_config(text.str());
  };
  for (const char* file : {"coba.json", "cuba.json"}) {
    const auto cfg = read(file);
    EXPECT_EQ(cfg.network.n_exc, 3200) << file;
  }
  const auto hh = read("coba_hh.json");
  EXPECT_EQ(hh.model, "coba_hh");
  EXPECT_EQ(hh.exc_size(), 3200);
  EXPECT_DOUBLE_EQ(hh.coba_hh.w_inh, 0.335);
  EXPECT_DOUBLE_EQ(hh.coba_hh.g_inh_init_std, 0.6);
  const auto dm = read("decision_making.json");
  EXPECT_EQ(dm.model, "decision_making");
  EXPECT_EQ(dm.exc_size(), 1600);
  EXPECT_EQ(dm.inh_size(), 400);
  EXPECT_EQ(dm.decision.coherence, std::vector<double>{25.6});
  EXPECT_DOUBLE_EQ(dm.decision.stim_on, 300.0);
  const auto cann = read("cann.json");
  EXPECT_EQ(cann.model, "cann");
  EXPECT_TRUE(cann.rate_model());
  EXPECT_EQ(cann.exc_size(), 512);
  EXPECT_EQ(cann.inh_size(), 0);
  EXPECT_DOUBLE_EQ(cann.cann.speed, 0.01);
  EXPECT_EQ(cann.activity_every, 20);
  EXPECT_FALSE(cann.monitor_spikes);
  EXPECT_TRUE(cann.voltage_neurons.empty());
  const auto esn = read("esn.json");
  EXPECT_EQ(esn.model, "esn");
  EXPECT_EQ(esn.esn.size, 500);
  EXPECT_EQ(esn.esn.horizon, 5);
  EXPECT_EQ(esn.record_units, 20);
  EXPECT_GT(brain::estimate_run_memory(esn).total(), 500.0 * 500 * 8);
}

TEST(Config, OtherModelsAreValidatedWithTheirOwnFields) {
  const auto error_of = config_error_of;
  EXPECT_EQ(error_of(R"({"model": "coba_hh", "network": {"g_Na": -1}})"),
            "/network/g_Na: expected a number in [0, 1e+06], got -1");
  EXPECT_EQ(error_of(R"({"model": "coba_hh", "network": {"output": "coba"}})").rfind("/network/output: unknown field", 0),
            0u);
  EXPECT_EQ(error_of(R"({"model": "coba_hh", "network": {"g_init": {"exc_sd": 1}}})")
                .rfind("/network/g_init/exc_sd: unknown field", 0),
            0u);
  EXPECT_EQ(error_of(R"({"model": "decision_making", "network": {"coherence": 120}})"),
            "/network/coherence: expected a number in [-100, 100], got 120");
  EXPECT_EQ(error_of(R"({"model": "decision_making", "network": {"stim_on": 500, "stim_off": 100}})"),
            "/network/stim_off: must be >= stim_on");
  EXPECT_EQ(error_of(R"({"model": "decision_making", "network": {"scale": 0.0001}})"),
            "/network/scale: leaves a population or a selective pool empty");
  EXPECT_EQ(error_of(R"({"model": "decision_making", "monitors": {"voltage_neurons": [1600]}})"),
            "/monitors/voltage_neurons/0: neuron 1600 is outside the excitatory population [0, 1600)");
  EXPECT_EQ(error_of(R"({"model": "hopfield"})"),
            "/model: expected one of ei_network, coba_hh, decision_making, cann, esn, got \"hopfield\"");
  EXPECT_EQ(error_of(R"({"model": "cann", "network": {"a": 0}})"), "/network/a: expected a number in (0, 1000], got 0");
  EXPECT_EQ(error_of(R"({"model": "cann", "network": {"stim_on": 50, "stim_off": 10}})"),
            "/network/stim_off: must be >= stim_on");
  EXPECT_EQ(error_of(R"({"model": "cann", "monitors": {"spikes": true}})").rfind("/monitors/spikes: unknown field", 0), 0u);
  EXPECT_EQ(error_of(R"({"model": "cann", "monitors": {"activity_every": -1}})").rfind("/monitors/activity_every:", 0),
            0u);
  EXPECT_EQ(error_of(R"({"model": "esn", "network": {"leak": 1.5}})"), "/network/leak: expected a number in (0, 1], got 1.5");
  EXPECT_EQ(error_of(R"({"model": "esn", "network": {"connectivity": "csr"}})"),
            "/network/connectivity: expected one of dense, jit, got \"csr\"");
  EXPECT_EQ(error_of(R"({"model": "esn", "run": {"duration_ms": 100}})").rfind("/run/duration_ms: not used by the esn", 0),
            0u);
  EXPECT_EQ(error_of(R"({"model": "esn", "network": {"size": 10}, "monitors": {"record_units": 11}})"),
            "/monitors/record_units: expected an integer in [0, 10], got 11");
  // Default traces beyond a small population are dropped, not an error.
  EXPECT_EQ(brain::parse_run_config(R"({"model": "coba_hh", "network": {"n_exc": 3, "n_inh": 1}})").voltage_neurons,
            (std::vector<int64_t>{0, 1, 2}));
}

TEST(Config, ErrorsNameTheJsonPath) {
  const auto error_of = config_error_of;
  EXPECT_EQ(error_of(R"({"network": {"p": 1.5}})"), "/network/p: expected a number in [0, 1], got 1.5");
  EXPECT_EQ(error_of(R"({"network": {"n_exc": "many"}})"), "/network/n_exc: expected an integer, got \"many\"");
  EXPECT_EQ(error_of(R"({"network": {"n_inh": 4294967296}})"),
            "/network/n_inh: expected an integer in [1, 4294967295], got 4294967296");
  EXPECT_EQ(error_of(R"({"network": {"neuron": {"tau": 0}}})"), "/network/neuron/tau: expected a number in (0, 1e+06], got 0");
  EXPECT_EQ(error_of(R"({"network": {"output": "cobra"}})"), "/network/output: expected one of coba, cuba, got \"cobra\"");
  EXPECT_EQ(error_of(R"({"run": {"dt_ms": -1}})").rfind("/run/dt_ms: expected a number in (0", 0), 0u);
  EXPECT_EQ(error_of(R"({"monitors": {"voltage_neurons": [0, 5000]}})"),
            "/monitors/voltage_neurons/1: neuron 5000 is outside the excitatory population [0, 3200)");
  EXPECT_EQ(error_of(R"({"network": {"tau_ex": 5}})").rfind("/network/tau_ex: unknown field; expected one of:", 0), 0u);
  EXPECT_EQ(error_of(R"({"netwrk": {}})").rfind("/netwrk: unknown field", 0), 0u);
  EXPECT_EQ(error_of(R"({"network": {"neuron": {"V_th": -70}}})"), "/network/neuron/V_th: must be above V_reset");
  EXPECT_EQ(error_of("[1, 2]"), "/: expected an object, got [1,2]");
  EXPECT_EQ(error_of("{\"network\": ").rfind("/: not valid JSON", 0), 0u);
  EXPECT_EQ(error_of(R"({"network": {"delay_ms": {"dist": "normal"}}})"),
            "/network/delay_ms/dist: expected one of uniform, got \"normal\"");
  EXPECT_EQ(error_of(R"({"network": {"delay_ms": {"low": 2, "high": 1}}})"), "/network/delay_ms/high: must be >= low");
  EXPECT_EQ(error_of(R"({"network": {"connectivity": "jit", "delay_ms": {"low": 0, "high": 1}}})"),
            "/network/delay_ms: per-synapse delays need stored synapses (\"connectivity\": \"csr\")");
  EXPECT_EQ(error_of(R"({"network": {"delay_ms": {"low": 0, "hi": 1}}})").rfind("/network/delay_ms/hi: unknown field", 0),
            0u);
}

// "delay_ms": {"dist": "uniform", "low", "high"} gives every synapse its own delay, drawn
// uniformly in that range and rounded to steps, the same for every build of the same seed and
// for every shard of a distributed run: a rank's synapses have the delays one process gives them.
TEST(Config, PerSynapseDelaysAreDrawnInTheirRange) {
  const auto cfg = brain::parse_run_config(
      R"({"network": {"n_exc": 400, "n_inh": 100, "p": 0.05, "delay_ms": {"dist": "uniform", "low": 0.5, "high": 3.0}},
          "run": {"dt_ms": 0.1}})");
  ASSERT_TRUE(cfg.network.delay_per_synapse);
  EXPECT_EQ(cfg.network.delay_ms_low, 0.5);
  EXPECT_EQ(cfg.network.delay_ms_high, 3.0);
  auto net = brain::build_ei_network(cfg.network, 7, c10::kCPU, 0.1);
  auto again = brain::build_ei_network(cfg.network, 7, c10::kCPU, 0.1);
  for (const char* name : {"E2E", "E2I", "I2E", "I2I"}) {
    const auto proj = std::dynamic_pointer_cast<brain::AlignPostProj>(net->named_children()[name]);
    ASSERT_TRUE(proj && proj->has_synapse_delays()) << name;
    const auto delays = proj->synapse_delays()->delays();
    EXPECT_EQ(delays.min().item<int64_t>(), 5) << name;
    EXPECT_EQ(delays.max().item<int64_t>(), 30) << name;
    EXPECT_GT(std::get<0>(torch::_unique(delays)).numel(), 20) << name;
    // Uniform in [0.5, 3.0] ms: steps 6 to 29 each with probability 1/25, 5 and 30 with 1/50.
    const double mean = delays.to(torch::kDouble).mean().item<double>();
    EXPECT_NEAR(mean, 17.5, 4 * 7.2 / std::sqrt(static_cast<double>(delays.numel()))) << name;
    const auto counts = torch::bincount(delays, {}, 31).to(torch::kDouble);
    EXPECT_NEAR(counts[5].item<double>() / counts[17].item<double>(), 0.5, 0.25) << name;
    const auto other = std::dynamic_pointer_cast<brain::AlignPostProj>(again->named_children()[name]);
    EXPECT_TRUE(torch::equal(other->synapse_delays()->delays(), delays)) << name;
    EXPECT_EQ(proj->delay()->max_delay(), 30) << name;  // the longest the draw can give
  }
  // Each synapse's delay as a dense [n_pre, n_post] matrix (delay + 1; 0: no synapse).
  auto delay_matrix = [](const brain::AlignPostProj& proj) {
    const auto& csr = static_cast<const brain::CsrComm&>(*proj.comm());
    const brain::CsrMatrix m{csr.indptr(), csr.indices(), proj.synapse_delays()->delays().to(torch::kDouble) + 1,
                             csr.n_pre(), csr.n_post()};
    return m.to_dense();
  };
  for (const int world : {2, 3}) {
    std::map<std::string, std::vector<at::Tensor>> blocks;
    for (int rank = 0; rank < world; ++rank) {
      auto shard = brain::build_ei_network_shard(cfg.network, 7, c10::kCPU, 0.1, rank, world);
      for (const char* name : {"E2E", "E2I", "I2E", "I2I"}) {
        const auto proj = std::dynamic_pointer_cast<brain::AlignPostProj>(shard->named_children()[name]);
        ASSERT_TRUE(proj && proj->has_synapse_delays()) << name;
        EXPECT_EQ(proj->delay()->max_delay(), 30) << name << " rank " << rank;
        blocks[name].push_back(delay_matrix(*proj));
      }
    }
    for (const char* name : {"E2E", "E2I", "I2E", "I2I"}) {
      const auto whole = delay_matrix(*std::dynamic_pointer_cast<brain::AlignPostProj>(net->named_children()[name]));
      EXPECT_TRUE(torch::equal(torch::cat(blocks[name], 1), whole)) << name << " on " << world << " processes";
    }
  }
  const brain::CsrMatrix one = brain::CsrMatrix::from_dense(torch::ones({2, 2}), torch::kInt);
  EXPECT_THROW(brain::synapse_delay_steps(one, 0, 1, 2.0, 1.0, 0.1), c10::Error);
  EXPECT_THROW(brain::synapse_delay_steps(one, 0, 1, 0.0, 1.0, 0.0), c10::Error);
  // The draw is keyed on 32-bit (row, global column): a shard past 2^32 columns is refused.
  expect_error_saying([&] { brain::synapse_delay_steps(one, (int64_t{1} << 32) - 1, 1, 0.0, 1.0, 0.1); },
                      "rows and global columns must lie below 2^32");
  expect_error_saying([&] { brain::synapse_delay_steps(one, -1, 1, 0.0, 1.0, 0.1); }, "below 2^32");
  EXPECT_NO_THROW(brain::synapse_delay_steps(one, (int64_t{1} << 32) - 2, 1, 0.0, 1.0, 0.1));
  EXPECT_TRUE(torch::equal(brain::synapse_delay_steps(one, 0, 1, 0.5, 0.5, 0.1), torch::full({4}, 5, torch::kLong)));
}

}  // namespace
