// Recorded, replayed steps (RunnerOptions::graphs): the module engine's replay path, run here
// in emulation (each replay re-runs its steps with the host clock shifted by 1000000007
// steps), must give the results of the op-by-op loop bit for bit. On a GPU the same path
// captures CUDA graphs (tests/python/test_replay_cuda.py, scripts/gpu-check.sh).
#include <brain/brain.h>

#include <cmath>
#include <cstdlib>
#include <limits>

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

// The monitor lists below name only the fields that matter (brain::Monitor is an aggregate with
// defaults for the rest), which -Wextra would report once per list.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

using brain::Context;
using brain::Graphs;
using brain::RunnerOptions;
using brain::RunResult;

namespace {

// Poisson and scheduled spikes into LIF (refractory) and AdEx (refractory) populations
// through AlignPost (shared delay ring, STP, CSR STDP) and AlignPre (AMPA, BioNMDA + Mg
// block, delays) projections, and an FHN rate model on per-step input.
std::shared_ptr<brain::DynSysGroup> mixed_network(bool with_stdp) {
  auto net = std::make_shared<brain::DynSysGroup>("net");
  auto in = net->add("in", std::make_shared<brain::PoissonGroup>(40, 150.0, 3));
  std::vector<int64_t> idx;
  std::vector<double> times;
  for (int k = 0; k < 60; ++k) {
    idx.push_back((k * 7) % 10);
    times.push_back(0.3 + 0.45 * k);
  }
  idx.push_back(2);  // neuron 2 scheduled twice in one step
  times.push_back(0.3 + 0.45 * 7);
  auto sched = net->add("sched", std::make_shared<brain::SpikeTimeGroup>(10, idx, times));
  brain::LifParams lp;
  lp.tau_ref = 2.0;
  auto E = net->add("E", std::make_shared<brain::LIF>(30, lp, torch::kDouble));
  brain::AdExParams ap;
  ap.tau_ref = 1.5;
  auto A = net->add("A", std::make_shared<brain::AdEx>(20, ap, torch::kDouble));
  auto fhn = net->add("fhn", std::make_shared<brain::FHN>(5));

  auto c_inE = std::make_shared<brain::CsrComm>(brain::fixed_prob(40, 30, 0.3, true, 5, c10::kCPU),
                                                torch::tensor(0.4, torch::kDouble));
  net->add("in2E", std::make_shared<brain::AlignPostProj>(in, c_inE, std::make_shared<brain::Expon>(30, 5.0, torch::kDouble),
                                                           std::make_shared<brain::COBA>(0.0), E, 3));
  auto c_inA = std::make_shared<brain::CsrComm>(brain::fixed_prob(40, 20, 0.3, true, 6, c10::kCPU),
                                                torch::tensor(2.0, torch::kDouble));
  net->add("in2A", std::make_shared<brain::AlignPostProj>(in, c_inA, std::make_shared<brain::Expon>(20, 3.0, torch::kDouble),
                                                           std::make_shared<brain::CUBA>(), A, 5));
  auto c_sE = std::make_shared<brain::CsrComm>(brain::fixed_prob(10, 30, 0.5, true, 7, c10::kCPU),
                                               torch::tensor(0.8, torch::kDouble));
  net->add("sched2E", std::make_shared<brain::AlignPreProj>(sched, std::make_shared<brain::Kinetic>(10, brain::Kinetic::ampa(), torch::kDouble),
                                                             c_sE, std::make_shared<brain::COBA>(0.0), E, 2));
  const auto c_EA_conn = brain::fixed_prob(30, 20, 0.4, true, 8, c10::kCPU);
  auto c_EA = std::make_shared<brain::CsrComm>(c_EA_conn, torch::full({c_EA_conn.indices.size(0)}, 0.5, torch::kDouble));
  auto E2A = net->add("E2A", std::make_shared<brain::AlignPostProj>(E, c_EA, std::make_shared<brain::Expon>(20, 4.0, torch::kDouble),
                                                                     std::make_shared<brain::CUBA>(), A, 1));
  E2A->add_stp({});
  if (with_stdp) E2A->add_stdp({});
  auto c_EAn = std::make_shared<brain::CsrComm>(brain::fixed_prob(30, 20, 0.2, true, 9, c10::kCPU),
                                                torch::tensor(0.05, torch::kDouble));
  net->add("E2A_nmda", std::make_shared<brain::AlignPreProj>(E, std::make_shared<brain::BioNMDA>(30, brain::BioNMDAParams{}, torch::kDouble),
                                                              c_EAn, std::make_shared<brain::MgBlock>(), A, 0));
  return net;
}

RunnerOptions mixed_options(Graphs graphs, int64_t steps) {
  RunnerOptions opt;
  opt.dt = 0.1;
  opt.progress = 0;
  opt.graphs = graphs;
  opt.chunk_steps = 7;  // flushes inside and between replays, rings that wrap
  opt.monitors = {{"E.V"},
                  {"E.spike", torch::tensor({0, 3, 7}), 2, "E3", torch::kBool},
                  {"A.V", std::nullopt, 3},
                  {"A.w"},
                  {"fhn.v"},
                  {"in2E.syn.g"},
                  {"E2A_nmda.syn.g", std::nullopt, 2}};
  auto gen = at::make_generator<at::CPUGeneratorImpl>(21);
  opt.inputs.push_back({"E.input", at::rand({steps, 30}, gen, torch::kDouble) * 30.0, true, brain::RunInput::Op::Add});
  opt.inputs.push_back({"A.input", torch::full({20}, 6.0, torch::kDouble), false, brain::RunInput::Op::Add});
  opt.inputs.push_back({"fhn.input_v", at::rand({steps / 2, 5}, gen, torch::kDouble), true, brain::RunInput::Op::Set});
  return opt;
}

void expect_same_results(const RunResult& a, const RunResult& b, const std::string& what) {
  ASSERT_EQ(a.order, b.order) << what;
  for (const auto& key : a.order) {
    EXPECT_TRUE(torch::equal(a.values.at(key), b.values.at(key))) << what << ": monitor " << key;
    EXPECT_TRUE(torch::equal(a.times.at(key), b.times.at(key))) << what << ": times of " << key;
  }
  EXPECT_EQ(a.spike_counts, b.spike_counts) << what;
  EXPECT_EQ(a.steps, b.steps) << what;
}

void expect_same_states(brain::DynamicalSystem& a, brain::DynamicalSystem& b) {
  for (const auto& path : a.state_paths()) {
    EXPECT_TRUE(torch::equal(a.find_state(path), b.find_state(path))) << "state " << path;
  }
}

// Weights (STDP changes them in place) and every other parameter and buffer.
void expect_same_parameters_and_buffers(brain::DynamicalSystem& a, brain::DynamicalSystem& b) {
  a.sync_buffers();
  b.sync_buffers();
  const auto pa = a.named_parameters(true), pb = b.named_parameters(true);
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << "parameter " << item.key();
  const auto ba = a.named_buffers(true), bb = b.named_buffers(true);
  ASSERT_EQ(ba.size(), bb.size());
  for (const auto& item : ba) EXPECT_TRUE(torch::equal(item.value(), bb[item.key()])) << "buffer " << item.key();
}

}  // namespace

TEST(Replay, EmulatedReplayEqualsTheOpByOpLoop) {
  for (bool stdp : {false, true}) {
    SCOPED_TRACE(stdp ? "with STDP" : "without STDP");
    auto eager_net = mixed_network(stdp);
    auto replay_net = mixed_network(stdp);
    eager_net->reset_state();
    replay_net->reset_state();
    brain::Runner eager(eager_net, mixed_options(Graphs::Off, 100));
    brain::Runner replay(replay_net, mixed_options(Graphs::Emulate, 100));
    // Two runs: the second starts at step 100, not a multiple of the graph's 18 steps.
    std::map<std::string, int64_t> spikes;
    for (int run = 0; run < 2; ++run) {
      const RunResult e = eager.run_steps(100 - 39 * run);
      const RunResult r = replay.run_steps(100 - 39 * run);
      expect_same_results(e, r, "run " + std::to_string(run));
      EXPECT_EQ(e.graphs, "off");
      EXPECT_EQ(e.replayed_steps, 0);
      EXPECT_EQ(r.graphs, "emulated");
      EXPECT_GE(r.replayed_steps, 36);  // 2 x 18 at least
      EXPECT_EQ(r.replayed_steps % 18, 0) << "lcm(1, 2, 3) = 6, the least multiple >= 16 is 18";
      const std::string summary = r.summary_json();
      EXPECT_NE(summary.find("\"how\": \"emulated\""), std::string::npos) << summary;
      EXPECT_NE(summary.find("\"replayed_steps\": " + std::to_string(r.replayed_steps)), std::string::npos) << summary;
      for (const auto& [pop, n] : e.spike_counts) spikes[pop] += n;
    }
    expect_same_states(*eager_net, *replay_net);
    expect_same_parameters_and_buffers(*eager_net, *replay_net);
    // The activity the comparison rests on: spikes in both populations, delayed arrivals.
    EXPECT_GT(spikes["E"], 0);
    EXPECT_GT(spikes["A"], 0);
    EXPECT_GT(eager_net->find_state("in2E.syn.g").abs().max().item<double>(), 0.0);
    EXPECT_GT(eager_net->find_state("E2A_nmda.syn.g").abs().max().item<double>(), 0.0);
    if (stdp) {  // the rule moved the weights, so their equality above means something
      bool moved = false;
      for (const auto& item : eager_net->named_parameters(true)) {
        if (item.key().rfind("E2A.comm.", 0) == 0) moved |= !torch::equal(item.value(), torch::full_like(item.value(), 0.5));
      }
      for (const auto& item : eager_net->named_buffers(true)) {
        if (item.key().rfind("E2A.comm.weights", 0) == 0) {
          moved |= !torch::equal(item.value(), torch::full_like(item.value(), 0.5));
        }
      }
      EXPECT_TRUE(moved);
    }
  }
}

namespace {

RunResult run_network(const std::shared_ptr<brain::DynSysGroup>& net, Graphs graphs, int64_t steps,
                      std::vector<brain::Monitor> monitors, std::vector<brain::RunInput> inputs = {}) {
  RunnerOptions opt;
  opt.progress = 0;
  opt.engine = brain::Engine::Modules;
  opt.graphs = graphs;
  opt.monitors = std::move(monitors);
  opt.inputs = std::move(inputs);
  return brain::Runner(net, opt).run_steps(steps);
}

}  // namespace

TEST(Replay, ReferenceNetworksReplayBitForBit) {
  brain::EINetSpec ei;
  ei.n_exc = 160;
  ei.n_inh = 40;
  ei.p = 0.1;
  ei.delay_ms = 0.3;
  brain::CobaHHSpec hh;
  hh.n_exc = 80;
  hh.n_inh = 20;
  hh.p = 0.1;
  for (const std::string which : {"coba", "cuba-jit", "coba-hh"}) {
    SCOPED_TRACE(which);
    RunResult out[2];
    std::shared_ptr<brain::DynSysGroup> nets[2];
    for (int k = 0; k < 2; ++k) {
      if (which == "coba-hh") {
        nets[k] = brain::build_coba_hh_network(hh, 4, c10::kCPU);
      } else {
        brain::EINetSpec spec = ei;
        if (which == "cuba-jit") {
          spec.output = "cuba";
          spec.w_exc = 1.6;
          spec.w_inh = -9.0;
          spec.connectivity = "jit";
        }
        nets[k] = brain::build_ei_network(spec, 4, c10::kCPU);
      }
      nets[k]->reset_state();
      std::vector<brain::RunInput> drive;
      if (which != "coba-hh") drive.push_back({"E.input", torch::tensor(20.0), false, brain::RunInput::Op::Add});
      if (which != "coba-hh") drive.push_back({"I.input", torch::tensor(20.0), false, brain::RunInput::Op::Add});
      out[k] = run_network(nets[k], k ? Graphs::Emulate : Graphs::Off, 300, {{"E.V"}, {"I.spike"}, {"E2I.syn.g"}}, drive);
    }
    EXPECT_GT(out[1].replayed_steps, 0);
    expect_same_results(out[0], out[1], which);
    expect_same_states(*nets[0], *nets[1]);
    EXPECT_GT(out[0].spike_counts.at("E") + out[0].spike_counts.at("I"), 0) << "a silent network proves little";
  }
}

TEST(Replay, BatchedRunsReplay) {
  auto build = [] {
    auto net = std::make_shared<brain::DynSysGroup>("net");
    auto in = net->add("in", std::make_shared<brain::PoissonGroup>(50, 400.0, 12));
    brain::LifParams lp;
    lp.tau_ref = 1.0;
    auto post = net->add("post", std::make_shared<brain::LIF>(25, lp, torch::kFloat));
    auto comm = std::make_shared<brain::CsrComm>(brain::fixed_prob(50, 25, 0.4, true, 13, c10::kCPU), torch::tensor(1.5f));
    net->add("proj", std::make_shared<brain::AlignPostProj>(in, comm, std::make_shared<brain::Expon>(25, 5.0),
                                                             std::make_shared<brain::COBA>(0.0), post, 4));
    net->reset_state(3);
    return net;
  };
  auto a = build(), b = build();
  const at::Tensor drive = torch::linspace(5.0, 15.0, 3).reshape({3, 1});
  const RunResult e = run_network(a, Graphs::Off, 120, {{"post.V"}, {"in.spike", std::nullopt, 4}},
                                  {{"post.input", drive, false, brain::RunInput::Op::Add}});
  const RunResult r = run_network(b, Graphs::Emulate, 120, {{"post.V"}, {"in.spike", std::nullopt, 4}},
                                  {{"post.input", drive, false, brain::RunInput::Op::Add}});
  EXPECT_GT(r.replayed_steps, 0);
  expect_same_results(e, r, "batch of 3");
  EXPECT_EQ(e.values.at("post.V").sizes(), (std::vector<int64_t>{120, 3, 25}));
  EXPECT_GT(e.spike_counts.at("post"), 0);
}

namespace {

// Claims to be replayable but computes with the host's step: what the emulation must catch.
class HostClockCounter : public brain::DynamicalSystem {
 public:
  HostClockCounter() : DynamicalSystem("HostClockCounter") {}
  void update(const Context& ctx) override { set_state("x", state("x") + static_cast<double>(ctx.step % 5)); }
  bool replayable() const override { return replayable_; }
  bool replayable_ = true;

 protected:
  void reset_own_state(int64_t) override { set_state("x", torch::zeros({2}, torch::kDouble)); }
};

// Replayable, turns NaN at step 40 (read from the clock).
class NaNAtForty : public brain::DynamicalSystem {
 public:
  NaNAtForty() : DynamicalSystem("NaNAtForty") {}
  void update(const Context& ctx) override {
    const at::Tensor next = state("x") + 1.0;
    set_state("x", torch::where(ctx.step_value() == 40, torch::full_like(next, std::nan("")), next));
  }
  bool replayable() const override { return true; }

 protected:
  void reset_own_state(int64_t) override { set_state("x", torch::zeros({3}, torch::kDouble)); }
};

}  // namespace

TEST(Replay, TheEmulationCatchesASystemThatReadsTheHostClock) {
  auto wrong = std::make_shared<brain::DynSysGroup>("net");
  auto counter = wrong->add("c", std::make_shared<HostClockCounter>());
  wrong->reset_state();
  const RunResult off = run_network(wrong, Graphs::Off, 64, {{"c.x"}});
  wrong->reset_state();
  const RunResult emulated = run_network(wrong, Graphs::Emulate, 64, {{"c.x"}});
  EXPECT_GT(emulated.replayed_steps, 0);
  EXPECT_FALSE(torch::equal(off.values.at("c.x"), emulated.values.at("c.x")))
      << "the shifted host clock must change what a host-clock reader computes";

  // Honest about it: not replayed, and the result says why.
  counter->replayable_ = false;
  wrong->reset_state();
  const RunResult declined = run_network(wrong, Graphs::Emulate, 64, {{"c.x"}});
  EXPECT_EQ(declined.replayed_steps, 0);
  EXPECT_NE(declined.graphs.find("c (HostClockCounter) does not declare itself replayable"), std::string::npos)
      << declined.graphs;
  EXPECT_TRUE(torch::equal(off.values.at("c.x"), declined.values.at("c.x")));

  // Hooks are host code the graph would not run again.
  counter->replayable_ = true;
  counter->add_after_update([](brain::DynamicalSystem&, const Context&) {});
  wrong->reset_state();
  EXPECT_NE(run_network(wrong, Graphs::Emulate, 64, {{"c.x"}}).graphs.find("has hooks"), std::string::npos);
}

TEST(Replay, WhyStepsAreNotReplayed) {
  auto net = mixed_network(false);
  net->reset_state();
  RunnerOptions opt = mixed_options(Graphs::Auto, 100);
  EXPECT_EQ(brain::Runner(net, opt).run_steps(100).graphs, "not on a CUDA device");
  opt.graphs = Graphs::Emulate;
  EXPECT_EQ(brain::Runner(net, opt).run_steps(53).graphs, "too few steps to replay (53 < 3 x 18)");
  opt.monitors[0].every = 1031;  // a prime: lcm(1031, 2, 3) > 1024
  EXPECT_NE(brain::Runner(net, opt).run_steps(100).graphs.find("no common multiple"), std::string::npos);
  opt.monitors[0].every = 1;
  opt.graph_steps = 20;  // not a multiple of 3
  EXPECT_THROW(
      {
        try {
          brain::Runner(net, opt).run_steps(100);
        } catch (const c10::Error& e) {
          EXPECT_NE(std::string(e.what()).find("graph_steps (20) must be a multiple of every monitor's every (6)"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      c10::Error);
  opt.graph_steps = 12;
  const RunResult r = brain::Runner(net, opt).run_steps(100);
  EXPECT_EQ(r.replayed_steps % 12, 0);
  EXPECT_GE(r.replayed_steps, 84);
  // Gradients: the op-by-op loop records them, replays do not.
  auto grad_net = mixed_network(false);
  grad_net->reset_state();
  for (auto& p : grad_net->parameters()) p.requires_grad_(true);
  opt.graph_steps = 0;
  EXPECT_EQ(brain::Runner(grad_net, opt).run_steps(60).graphs, "gradients are being recorded");
  EXPECT_EQ(brain::parse_graphs("emulate"), Graphs::Emulate);
  EXPECT_STREQ(brain::graphs_name(Graphs::Off), "off");
  EXPECT_THROW(brain::parse_graphs("on"), c10::Error);
}

TEST(Replay, TheFinitenessGuardNamesTheStepInReplayedSteps) {
  for (Graphs graphs : {Graphs::Off, Graphs::Emulate}) {
    for (int64_t chunk : {5, 1000}) {
      auto net = std::make_shared<brain::DynSysGroup>("net");
      net->add("n", std::make_shared<NaNAtForty>());
      net->reset_state();
      RunnerOptions opt;
      opt.progress = 0;
      opt.graphs = graphs;
      opt.chunk_steps = chunk;
      opt.monitors = {{"n.x"}};
      try {
        brain::Runner(net, opt).run_steps(100);
        ADD_FAILURE() << "no NonFiniteError";
      } catch (const brain::NonFiniteError& e) {
        EXPECT_EQ(e.step(), 40) << brain::graphs_name(graphs) << ", chunk " << chunk;
        EXPECT_EQ(e.state(), "n.x");
      }
    }
  }
}

TEST(Replay, PoissonDrawAtATensorStepEqualsTheIntegerStep) {
  const at::Tensor rates = torch::linspace(0.0, 900.0, 37, torch::kFloat).reshape({1, 37}).expand({2, 37});
  for (int64_t step : {int64_t{0}, int64_t{5}, int64_t{1} << 33}) {
    for (int64_t offset : {0, 3}) {
      const at::Tensor a = brain::ops::poisson_spikes(rates, 0.5, 99, step, offset);
      EXPECT_TRUE(torch::equal(a, brain::ops::poisson_spikes_at(rates, 0.5, 99, torch::tensor(step), offset)));
      EXPECT_TRUE(torch::equal(a, brain::ops::poisson_spikes_at(rates, 0.5, 99, torch::tensor({step}), offset)));
    }
  }
  auto error_of = [&](const at::Tensor& step) {
    try {
      brain::ops::poisson_spikes_at(rates, 0.5, 99, step);
    } catch (const c10::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of(torch::tensor(-1)).find("step must be >= 0"), std::string::npos);
  EXPECT_NE(error_of(torch::tensor(1.0)).find("step must be an int64 tensor"), std::string::npos);
  EXPECT_NE(error_of(torch::tensor({1, 2})).find("step must hold one value"), std::string::npos);
  EXPECT_NE(error_of(at::Tensor()).find("step is required"), std::string::npos);
  EXPECT_NE(error_of(torch::tensor(3).to(c10::kMeta)).find("step must be on rates' device (cpu) or the CPU"),
            std::string::npos)
      << error_of(torch::tensor(3).to(c10::kMeta));
  const at::Tensor meta = brain::ops::poisson_spikes_at(rates.to(c10::kMeta), 0.5, 99, torch::tensor(3).to(c10::kMeta));
  EXPECT_EQ(meta.sizes(), rates.sizes());
  EXPECT_EQ(meta.scalar_type(), at::kBool);
}

TEST(Replay, DelayAndInputsReadTheClock) {
  // Delay: a value pushed at step s is read with delay d at step s + d, through the clock.
  brain::Delay delay(3, 4, at::kDouble);
  delay.reset_state();
  Context ctx;
  for (int64_t s = 0; s < 12; ++s) {
    ctx.clock = torch::tensor(s);
    ctx.step = 777;  // wrong on purpose: the clock decides
    delay.push(torch::full({3}, static_cast<double>(s)), ctx);
    for (int64_t d = 0; d <= 4; ++d) {
      const double want = s - d >= 0 ? static_cast<double>(s - d) : 0.0;
      EXPECT_TRUE(torch::equal(delay.read(d, ctx), torch::full({3}, want, torch::kDouble))) << "s " << s << " d " << d;
    }
  }
  // InputSequence holds its last row past the end.
  brain::InputSequence seq(torch::arange(4, torch::kDouble).reshape({4, 1}));
  seq.reset_state();
  for (int64_t s : {0, 2, 3, 9}) {
    ctx.clock = torch::tensor(s);
    seq.update(ctx);
    EXPECT_EQ(seq.state("value").item<double>(), static_cast<double>(std::min<int64_t>(s, 3)));
  }
}

TEST(Replay, TheDecisionAndCannNetworksReplayTheirStimuliFromTheClock) {
  // Decision making: two trials, the stimulus switching on, redrawn and off within the run.
  brain::DecisionNetSpec dm;
  dm.scale = 0.1;
  dm.coherence = {0.0, 51.2};
  dm.stim_on = 2.05;  // not on a step boundary
  dm.stim_interval = 3.0;
  dm.stim_off = 33.0;
  dm.background_hz = 0.0;
  dm.mu0 = 3000.0;
  RunResult out[2];
  std::shared_ptr<brain::DynSysGroup> nets[2];
  for (int k = 0; k < 2; ++k) {
    nets[k] = brain::build_decision_network(dm, 5, c10::kCPU);
    nets[k]->reset_state(2);
    out[k] = run_network(nets[k], k ? Graphs::Emulate : Graphs::Off, 400,
                         {{"rates.rate"}, {"input_E.spike", std::nullopt, 4}});
  }
  EXPECT_EQ(out[1].graphs, "emulated");
  EXPECT_GT(out[1].replayed_steps, 0);
  expect_same_results(out[0], out[1], "decision");
  expect_same_states(*nets[0], *nets[1]);
  // Without background, the input spikes are the stimulus's alone: none before 2.05 ms (step
  // 21) and from 33 ms (step 330; samples every 4 steps), many in between.
  const at::Tensor input = out[0].values.at("input_E.spike").to(torch::kLong);
  EXPECT_EQ(input.narrow(0, 0, 6).sum().item<int64_t>(), 0);
  EXPECT_GT(input.narrow(0, 6, 77).sum().item<int64_t>(), 100);
  EXPECT_EQ(input.narrow(0, 83, 17).sum().item<int64_t>(), 0);

  // CANN: a moving stimulus that wraps around the ring, switched off halfway.
  brain::CannSpec cs;
  cs.size = 64;
  cs.z0 = 3.0;
  cs.speed = 0.05;
  cs.stim_on = 1.0;
  cs.stim_off = 6.3;
  for (int k = 0; k < 2; ++k) {
    nets[k] = brain::build_cann_network(cs, 5, c10::kCPU);
    nets[k]->reset_state();
    out[k] = run_network(nets[k], k ? Graphs::Emulate : Graphs::Off, 120,
                         {{"stimulus.position"}, {"stimulus.active"}, {"bump.position"}, {"cann.u", std::nullopt, 3}});
  }
  EXPECT_GT(out[1].replayed_steps, 0);
  expect_same_results(out[0], out[1], "cann");
  expect_same_states(*nets[0], *nets[1]);
  const at::Tensor active = out[0].values.at("stimulus.active");
  EXPECT_GT(active.sum().item<double>(), 0);
  EXPECT_LT(active.sum().item<double>(), active.numel());
  // The stimulus crossed +pi: positions on both sides of the ring.
  const at::Tensor z = out[0].values.at("stimulus.position");
  EXPECT_GT(z.max().item<double>(), 3.0);
  EXPECT_LT(z.min().item<double>(), -2.5);
}

TEST(Replay, AFailedCapturePutsTheStatesBackAndRunsStepByStep) {
  // BRAIN_TEST_CAPTURE_FAULT=1 fails the capture (csrc/dyn/replay.cpp); in emulation, before
  // any recorded step has run, as a failed CUDA capture has run none. The run must go on one
  // step at a time from the states the capture started with: the op-by-op results, with STDP
  // moving weights in place, and the reason in `graphs`.
  auto eager_net = mixed_network(true);
  auto failed_net = mixed_network(true);
  eager_net->reset_state();
  failed_net->reset_state();
  const RunResult eager = brain::Runner(eager_net, mixed_options(Graphs::Off, 100)).run_steps(100);
  ASSERT_EQ(setenv("BRAIN_TEST_CAPTURE_FAULT", "1", 1), 0);
  RunResult failed;
  try {
    failed = brain::Runner(failed_net, mixed_options(Graphs::Emulate, 100)).run_steps(100);
  } catch (...) {
    unsetenv("BRAIN_TEST_CAPTURE_FAULT");
    throw;
  }
  unsetenv("BRAIN_TEST_CAPTURE_FAULT");
  EXPECT_EQ(failed.graphs,
            "emulated graph capture failed, steps ran one by one: capture fault injected by BRAIN_TEST_CAPTURE_FAULT");
  EXPECT_EQ(failed.replayed_steps, 0);
  expect_same_results(eager, failed, "after a failed capture");
  expect_same_states(*eager_net, *failed_net);
  expect_same_parameters_and_buffers(*eager_net, *failed_net);
  EXPECT_GT(eager.spike_counts.at("E"), 0);
  // Without the variable the same runner replays again.
  const RunResult again = brain::Runner(failed_net, mixed_options(Graphs::Emulate, 100)).run_steps(100);
  EXPECT_EQ(again.graphs, "emulated");
  EXPECT_GT(again.replayed_steps, 0);
}

TEST(Replay, AReservoirDrivenStepByStepReplaysItsInputFromTheClock) {
  // The input is a state ("res.input") that a per-step Runner input sets, so recorded steps
  // read it through the clock; with a batch, dense and JIT recurrence alike.
  for (const std::string connectivity : {"dense", "jit"}) {
    SCOPED_TRACE(connectivity);
    brain::ReservoirParams p;
    p.n_in = 3;
    p.size = 80;
    p.density = 0.3;
    p.leak = 0.7;
    p.bias_scale = 0.1;
    p.connectivity = connectivity;
    p.seed = 4;
    const int64_t steps = 120, batch = 2;
    const at::Tensor u = torch::randn({steps, batch, p.n_in}, torch::kDouble);
    RunResult out[2];
    std::shared_ptr<brain::Reservoir> res[2];
    for (int k = 0; k < 2; ++k) {
      auto net = std::make_shared<brain::DynSysGroup>("net");
      res[k] = net->add("res", std::make_shared<brain::Reservoir>(p));
      net->reset_state(batch);
      brain::RunInput in;
      in.path = "res.input";
      in.value = u;
      in.per_step = true;
      in.op = brain::RunInput::Op::Set;
      out[k] = run_network(net, k ? Graphs::Emulate : Graphs::Off, steps, {{"res.x"}}, {in});
    }
    EXPECT_GT(out[1].replayed_steps, 0) << out[1].graphs;
    expect_same_results(out[0], out[1], connectivity);
    // And both are the reservoir's own sequence run.
    brain::Reservoir alone(p);
    alone.reset_state(batch);
    EXPECT_TRUE(torch::equal(out[0].values.at("res.x"), alone.run(u)));
    EXPECT_GT(out[0].values.at("res.x").abs().max().item<double>(), 0.1) << "a silent reservoir proves little";
  }
  // set_input broadcasts to the state and names the shape it wanted.
  brain::ReservoirParams p;
  p.n_in = 2;
  p.size = 10;
  brain::Reservoir r(p);
  EXPECT_THROW(r.set_input(torch::ones({2})), c10::Error);  // before reset_state
  r.reset_state(3);
  r.set_input(torch::ones({2}));
  EXPECT_TRUE(torch::equal(r.state("input"), torch::ones({3, 2}, torch::kDouble)));
  try {
    r.set_input(torch::ones({4, 2}));
    FAIL() << "a batch of 4 inputs for 3 items was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("broadcast to the state input [3, 2], got [4, 2]"), std::string::npos)
        << e.what();
  }
}

TEST(Replay, RunsThatWantAGradientKeepItAndOthersBuildNoGraph) {
  // An input that wants a gradient: the op-by-op loop records it (no replay), and the final
  // state is differentiable with respect to it.
  auto net = std::make_shared<brain::DynSysGroup>("net");
  net->add("A", std::make_shared<brain::AdEx>(4, brain::AdExParams{}, torch::kDouble));
  net->reset_state();
  RunnerOptions opt;
  opt.progress = 0;
  opt.graphs = Graphs::Emulate;
  const at::Tensor drive = torch::full({60, 4}, 5.0, torch::kDouble).requires_grad_(true);
  opt.inputs = {{"A.input", drive, true, brain::RunInput::Op::Add}};
  const RunResult r = brain::Runner(net, opt).run_steps(60);
  EXPECT_EQ(r.graphs, "gradients are being recorded");
  const at::Tensor V = net->find_state("A.V");
  ASSERT_TRUE(V.requires_grad());
  V.sum().backward();
  ASSERT_TRUE(drive.grad().defined());
  EXPECT_GT(drive.grad().abs().sum().item<double>(), 0.0);

  // Without one, exponential Euler's autograd slopes leave no graph behind in the states (they
  // used to chain every step's graph to the last, op by op).
  for (Graphs graphs : {Graphs::Off, Graphs::Emulate}) {
    net->reset_state();
    opt.graphs = graphs;
    opt.inputs = {{"A.input", torch::full({4}, 5.0, torch::kDouble), false, brain::RunInput::Op::Add}};
    brain::Runner(net, opt).run_steps(60);
    EXPECT_FALSE(net->find_state("A.V").requires_grad()) << brain::graphs_name(graphs);
    EXPECT_FALSE(net->find_state("A.w").requires_grad()) << brain::graphs_name(graphs);
  }
}
