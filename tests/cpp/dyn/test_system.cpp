// Systems, composition, delays, inputs, the runner and .npz output.
#include <brain/csr.h>
#include <brain/dyn.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using brain::Context;

// tau dV/dt = -(V - V_rest) + I, integrated exactly; input current in state "I".
class Leaky : public brain::DynamicalSystem {
 public:
  explicit Leaky(int64_t n, double tau = 10.0) : DynamicalSystem("Leaky"), n_(n), tau_(tau) {}
  void update(const Context& ctx) override {
    const auto& v = state("V");
    set_state("V", brain::integrators::exp_euler_linear(v, torch::full_like(v, -1.0 / tau_),
                                                        (state("I") - 65.0) / tau_, ctx.dt));
    set_state("I", torch::zeros_like(state("I")));  // inputs last one step
  }

 protected:
  void reset_own_state(int64_t) override {
    set_state("V", torch::full(state_shape(n_), -65.0, torch::kDouble));
    set_state("I", torch::zeros(state_shape(n_), torch::kDouble));
  }

 private:
  int64_t n_;
  double tau_;
};

// Counts its steps and records the order in which systems were updated.
class Probe : public brain::DynamicalSystem {
 public:
  Probe(std::string tag, std::vector<std::string>* log) : DynamicalSystem("Probe"), tag_(std::move(tag)), log_(log) {}
  void update(const Context& ctx) override {
    log_->push_back(tag_);
    set_state("count", state("count") + 1);
  }

 protected:
  void reset_own_state(int64_t) override { set_state("count", torch::zeros(state_shape(1), torch::kLong)); }

 private:
  std::string tag_;
  std::vector<std::string>* log_;
};

TEST(System, DeepCompositionUpdatesInOrderAndFindsStatesByPath) {
  std::vector<std::string> log;
  auto root = std::make_shared<brain::DynSysGroup>("root");
  auto net = root->add("net", std::make_shared<brain::DynSysGroup>("net"));
  auto pop = net->add("pop", std::make_shared<brain::DynSysGroup>("pop"));
  pop->add("chan", std::make_shared<Probe>("chan", &log));
  pop->add("neu", std::make_shared<Probe>("neu", &log));
  net->add("proj", std::make_shared<Probe>("proj", &log));
  root->reset_state(4);
  EXPECT_EQ(root->state_paths(), (std::vector<std::string>{"net.pop.chan.count", "net.pop.neu.count", "net.proj.count"}));
  Context ctx;
  root->step(ctx);
  root->step(ctx);
  EXPECT_EQ(log, (std::vector<std::string>{"chan", "neu", "proj", "chan", "neu", "proj"}));
  EXPECT_EQ(root->find_state("net.pop.neu.count").sizes(), (std::vector<int64_t>{4, 1}));
  EXPECT_EQ(root->find_state("net.pop.neu.count")[0][0].item<int64_t>(), 2);
  // Buffers are what torch sees: named_buffers() lists every state.
  EXPECT_EQ(root->named_buffers().size(), 3u);
  try {
    root->find_state("net.pop.soma.V");
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no subsystem 'soma'; its subsystems are: chan, neu"), std::string::npos) << e.what();
  }
  try {
    root->find_state("net.proj.V");
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no state 'V'; its states are: count"), std::string::npos) << e.what();
  }
}

TEST(System, HooksRunAroundUpdate) {
  std::vector<std::string> log;
  auto p = std::make_shared<Probe>("update", &log);
  p->add_before_update([&](brain::DynamicalSystem&, const Context&) { log.push_back("before"); });
  p->add_after_update([&](brain::DynamicalSystem&, const Context&) { log.push_back("after"); });
  p->reset_state();
  p->step(Context{});
  EXPECT_EQ(log, (std::vector<std::string>{"before", "update", "after"}));
  EXPECT_THROW(p->reset_state(-1), c10::Error);
}

TEST(Delay, DeliversExactlyDStepsLaterToEveryReader) {
  brain::Delay delay(3, 5, torch::kDouble);
  delay.reset_state();
  for (int64_t step = 0; step < 12; ++step) {
    delay.push(torch::full({3}, static_cast<double>(step + 1)), step);
    for (int64_t d : {0, 1, 3, 5}) {
      const double want = step - d >= 0 ? static_cast<double>(step - d + 1) : 0.0;
      ASSERT_EQ(delay.read(d, step)[0].item<double>(), want) << "step " << step << " delay " << d;
    }
  }
  EXPECT_THROW(delay.read(6, 12), c10::Error);
  EXPECT_THROW(delay.push(torch::zeros({4}), 12), c10::Error);
}

TEST(Delay, GradientsFlowThroughTheBuffer) {
  brain::Delay delay(2, 3, torch::kDouble);
  delay.reset_state();
  auto x = torch::tensor({1.0, 2.0}, torch::kDouble).requires_grad_();
  delay.push(x * 3, 0);
  delay.push(torch::zeros({2}, torch::kDouble), 1);
  delay.push(torch::zeros({2}, torch::kDouble), 2);
  (delay.read(2, 2) * torch::tensor({5.0, 7.0}, torch::kDouble)).sum().backward();
  EXPECT_TRUE(torch::equal(x.grad(), torch::tensor({15.0, 21.0}, torch::kDouble)));
}

TEST(Delay, HeterogeneousPerSynapseDelaysMatchANaiveSum) {
  // 3 pre, 2 post; synapses (pre, post, delay): (0,0,0) (0,1,2) (1,1,1) (2,0,3)
  const auto indptr = torch::tensor({0, 2, 3, 4});
  const auto indices = torch::tensor({0, 1, 1, 0});
  const auto delays = torch::tensor({0, 2, 1, 3});
  const auto w = torch::tensor({1.0, 10.0, 100.0, 1000.0}, torch::kDouble);
  for (int64_t batch : {0, 2}) {
    brain::Delay hist(3, 3, torch::kDouble);
    hist.reset_state(batch);
    brain::HeteroDelayCsr proj(indptr, indices, delays, 3, 2, 3);
    std::vector<at::Tensor> pushed;
    for (int64_t step = 0; step < 8; ++step) {
      auto v = torch::rand(batch ? std::vector<int64_t>{batch, 3} : std::vector<int64_t>{3}, torch::kDouble);
      hist.push(v, step);
      pushed.push_back(v);
      auto past = [&](int64_t d) { return step - d >= 0 ? pushed[step - d] : torch::zeros_like(v); };
      auto want = torch::stack({w[0] * past(0).select(-1, 0) + w[3] * past(3).select(-1, 2),
                                w[1] * past(2).select(-1, 0) + w[2] * past(1).select(-1, 1)}, -1);
      ASSERT_TRUE(torch::allclose(proj.forward(hist, w, step), want)) << "batch " << batch << " step " << step;
    }
  }
  EXPECT_THROW(brain::HeteroDelayCsr(indptr, indices, torch::tensor({0, 2, 1, 4}), 3, 2, 3), c10::Error);
  EXPECT_THROW(brain::HeteroDelayCsr(indptr, indices, torch::tensor({0, -1, 1, 2}), 3, 2, 3), c10::Error);
  EXPECT_THROW(brain::HeteroDelayCsr(indptr, indices, torch::tensor({0.0, 1.0, 1.0, 2.0}), 3, 2, 3), c10::Error);
  EXPECT_THROW(brain::HeteroDelayCsr(indptr, indices, torch::tensor({0, 1, 1}), 3, 2, 3), c10::Error);
  EXPECT_THROW(brain::HeteroDelayCsr(torch::tensor({0, 3, 2, 4}), indices, delays, 3, 2, 3), c10::Error);
  EXPECT_THROW(brain::HeteroDelayCsr(indptr, torch::tensor({0, 1, 2, 0}), delays, 3, 2, 3), c10::Error);
  brain::Delay hist(3, 3, torch::kDouble);
  hist.reset_state();
  brain::HeteroDelayCsr proj(indptr, indices, delays, 3, 2, 3);
  EXPECT_THROW(proj.forward(hist, torch::ones({3}, torch::kDouble), 0), c10::Error);  // neither [nnz] nor scalar
}

// Both ways of computing the delivery (by delay group, by synapse), event-driven or not, with
// one weight per synapse or one for all, batched or not, equal the naive sum over synapses,
// and so do their gradients with respect to the weights and to the pushed values; without a
// gradient to record (the fused CPU loops), the same bits as the ops.
TEST(Delay, HeterogeneousDelaysByGroupAndBySynapseEqualTheNaiveSum) {
  torch::manual_seed(3);
  const int64_t n_pre = 20, n_post = 7, max_delay = 30, steps = 40;
  const auto mask = torch::rand({n_pre, n_post}, torch::kDouble) < 0.6;
  const auto dense = torch::where(mask, torch::ones({n_pre, n_post}, torch::kDouble), torch::zeros({}, torch::kDouble));
  const auto conn = brain::CsrMatrix::from_dense(dense, torch::kLong);
  const int64_t nnz = conn.indices.size(0);
  const auto rows = torch::repeat_interleave(torch::arange(n_pre), conn.indptr.diff());
  for (const bool few : {true, false}) {
    // Three distinct delays group; thirty-one do not (31 * 21 row pointers > 2 nnz).
    const auto delays = few ? torch::tensor({0, 2, 5}).index({torch::randint(3, {nnz})})
                            : torch::randint(0, max_delay + 1, {nnz});
    for (const bool event : {true, false}) {
      for (const bool homogeneous : {false, true}) {
        for (const int64_t batch : {0, 3}) {
         for (const bool differentiable : {true, false}) {
          brain::HeteroDelayCsr proj(conn.indptr.to(torch::kInt), conn.indices.to(torch::kInt), delays, n_pre, n_post,
                                     max_delay, event);
          EXPECT_EQ(proj.grouped(), few);
          if (few) EXPECT_EQ(proj.distinct_delays(), (std::vector<int64_t>{0, 2, 5}));
          brain::Delay hist(n_pre, max_delay, torch::kDouble);
          hist.reset_state(batch);
          const auto w = (homogeneous ? torch::tensor(0.7, torch::kDouble) : torch::randn({nnz}, torch::kDouble))
                             .requires_grad_(differentiable);
          std::vector<at::Tensor> pushed;
          at::Tensor ours = torch::zeros({}, torch::kDouble), want = torch::zeros({}, torch::kDouble);
          const auto shape = batch ? std::vector<int64_t>{batch, n_pre} : std::vector<int64_t>{n_pre};
          for (int64_t step = 0; step < steps; ++step) {
            // Spikes (0/1) and, every third step, arbitrary values: an event op skips only zeros.
            auto v = step % 3 ? (torch::rand(shape, torch::kDouble) < 0.2).to(torch::kDouble)
                              : torch::randn(shape, torch::kDouble);
            v.requires_grad_(differentiable);
            hist.push(v, step);
            pushed.push_back(v);
            const auto out = proj.forward(hist, w, step);
            // Naive: every synapse k reads the value of its row pushed delays[k] steps ago.
            std::vector<at::Tensor> per_synapse;
            for (int64_t k = 0; k < nnz; ++k) {
              const int64_t d = delays[k].item<int64_t>(), from = step - d;
              const at::Tensor x = from >= 0 ? pushed[from].select(-1, rows[k].item<int64_t>())
                                             : torch::zeros(batch ? std::vector<int64_t>{batch} : std::vector<int64_t>{},
                                                            torch::kDouble);
              per_synapse.push_back(x * (homogeneous ? w : w[k]));
            }
            const auto values = torch::stack(per_synapse, -1);  // [(B,) nnz]
            const auto expected =
                torch::zeros(out.sizes(), torch::kDouble).index_add(-1, conn.indices, values);
            ASSERT_TRUE(torch::allclose(out, expected, 1e-12, 1e-12))
                << "few " << few << " event " << event << " homogeneous " << homogeneous << " batch " << batch
                << " differentiable " << differentiable << " step " << step;
            if (!differentiable) {
              // Outside autograd the CPU takes a fused loop: the bits of the ops it replaces,
              // which weights that require a gradient make it take.
              const auto by_ops = proj.forward(hist, w.detach().clone().requires_grad_(), step).detach();
              ASSERT_TRUE(torch::equal(out, by_ops)) << "few " << few << " event " << event << " batch " << batch
                                                     << " step " << step;
              continue;
            }
            const auto probe = torch::randn(out.sizes(), torch::kDouble);
            ours = ours + (out * probe).sum();
            want = want + (expected * probe).sum();
          }
          if (!differentiable) continue;
          std::vector<at::Tensor> inputs{w};
          inputs.insert(inputs.end(), pushed.begin(), pushed.end());
          const auto g_ours = torch::autograd::grad({ours}, inputs);
          const auto g_want = torch::autograd::grad({want}, inputs);
          for (size_t i = 0; i < inputs.size(); ++i) {
            ASSERT_TRUE(torch::allclose(g_ours[i], g_want[i], 1e-10, 1e-12)) << "gradient " << i << " few " << few;
          }
         }
        }
      }
    }
  }
}

// The fused event delivery keeps lists of each slot's spikes and updates those that pushes
// wrote; whatever else changes the history (an in-place write that is not a push, a push whose
// slot only the device clock knew, another tensor in its place, two writes for one push) makes
// it read the history again: by delay group and by synapse, batched or not, it gives the ops'
// bits at every step, and two deliveries reading one history keep their own lists.
TEST(Delay, FusedEventDeliveryFollowsEveryChangeOfTheHistory) {
  torch::manual_seed(5);
  const int64_t n_pre = 16, n_post = 6, max_delay = 12;
  const auto dense = (torch::rand({n_pre, n_post}, torch::kDouble) < 0.5).to(torch::kDouble);
  const auto conn = brain::CsrMatrix::from_dense(dense, torch::kLong);
  const int64_t nnz = conn.indices.size(0);
  const auto few = torch::tensor({1, 4}).index({torch::randint(2, {nnz})});
  const auto many = torch::randint(0, max_delay + 1, {nnz});
  for (const int64_t batch : {0, 2}) {
    brain::HeteroDelayCsr grouped(conn.indptr, conn.indices, few, n_pre, n_post, max_delay);
    brain::HeteroDelayCsr by_synapse(conn.indptr, conn.indices, many, n_pre, n_post, max_delay);
    ASSERT_TRUE(grouped.grouped() && !by_synapse.grouped());
    brain::Delay hist(n_pre, max_delay, torch::kDouble);
    hist.reset_state(batch);
    const auto w = torch::randn({nnz}, torch::kDouble);
    const auto shape = batch ? std::vector<int64_t>{batch, n_pre} : std::vector<int64_t>{n_pre};
    auto spikes = [&] { return (torch::rand(shape, torch::kDouble) < 0.3).to(torch::kDouble); };
    int64_t checked = 0;
    auto check = [&](int64_t step, const char* after) {
      for (const auto* proj : {&grouped, &by_synapse}) {
        const auto fused = proj->forward(hist, w, step);
        const auto by_ops = proj->forward(hist, w.clone().requires_grad_(), step).detach();
        ASSERT_TRUE(torch::equal(fused, by_ops)) << after << " batch " << batch << " step " << step << " grouped "
                                                 << proj->grouped();
        checked += fused.abs().sum().item<double>() > 0;
      }
    };
    int64_t step = 0;
    for (; step < 20; ++step) {
      hist.push(spikes(), step);
      check(step, "a push");
      check(step, "nothing");
    }
    hist.state("history").select(0, hist.slot_of(step - 3)).copy_(spikes());
    check(step - 1, "an in-place write");
    Context replayed;
    replayed.step = step + 1000;  // what a replay shows; the slot is the clock's
    replayed.clock = torch::full({}, step, torch::kLong);
    hist.push(spikes(), replayed);
    check(step, "a push placed by the clock");
    ++step;
    hist.assign_state("history", (torch::rand_like(hist.state("history")) < 0.3).to(torch::kDouble));
    hist.push(spikes(), step);
    check(step, "another tensor");
    ++step;
    hist.state("history").select(0, hist.slot_of(step - 5)).mul_(0);
    hist.push(spikes(), step);
    check(step, "a write and a push");
    for (++step; step < 40; ++step) {
      hist.push(spikes(), step);
      check(step, "pushes after");
    }
    EXPECT_GT(checked, 60);
  }
}

// Outside autograd the grouped delivery keeps the weights it gathered into delay order; an
// in-place change of the weights (an optimizer step, a copy_) is seen at the next step.
TEST(Delay, GroupedDeliverySeesInPlaceWeightChanges) {
  const auto indptr = torch::tensor({0, 2, 4});
  const auto indices = torch::tensor({0, 1, 0, 1});
  brain::HeteroDelayCsr proj(indptr, indices, torch::tensor({1, 0, 0, 1}), 2, 2, 1);
  ASSERT_TRUE(proj.grouped());
  brain::Delay hist(2, 1, torch::kDouble);
  hist.reset_state();
  auto w = torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kDouble);
  hist.push(torch::ones({2}, torch::kDouble), 0);
  hist.push(torch::ones({2}, torch::kDouble), 1);
  EXPECT_TRUE(torch::equal(proj.forward(hist, w, 1), torch::tensor({4.0, 6.0}, torch::kDouble)));
  w.mul_(10);
  EXPECT_TRUE(torch::equal(proj.forward(hist, w, 1), torch::tensor({40.0, 60.0}, torch::kDouble)));
  w.copy_(torch::tensor({1.0, 0.0, 0.0, 0.0}, torch::kDouble));
  EXPECT_TRUE(torch::equal(proj.forward(hist, w, 1), torch::tensor({1.0, 0.0}, torch::kDouble)));
  EXPECT_TRUE(torch::equal(proj.forward(hist, torch::tensor({0.0, 0.0, 0.0, 5.0}, torch::kDouble), 1),
                           torch::tensor({0.0, 5.0}, torch::kDouble)));
}

// A grouped delivery loaded (torch::load) from one with the same delays on other synapses
// delivers as the saved one: the groups' sizes, the order and its cached weights follow.
TEST(Delay, GroupedDeliveryLoadsAnotherAssignmentOfTheSameDelays) {
  const auto indptr = torch::tensor({0, 3, 6});
  const auto indices = torch::tensor({0, 1, 2, 0, 1, 2});
  brain::HeteroDelayCsr saved(indptr, indices, torch::tensor({0, 0, 0, 0, 0, 2}), 2, 3, 2);
  brain::HeteroDelayCsr loaded(indptr, indices, torch::tensor({2, 2, 2, 0, 2, 2}), 2, 3, 2);
  ASSERT_TRUE(saved.grouped() && loaded.grouped());
  brain::Delay hist(2, 2, torch::kDouble);
  hist.reset_state();
  hist.push(torch::tensor({1.0, 10.0}, torch::kDouble), 0);
  hist.push(torch::tensor({0.0, 0.0}, torch::kDouble), 1);
  hist.push(torch::tensor({100.0, 1000.0}, torch::kDouble), 2);
  const auto w = torch::arange(1.0, 7.0, torch::kDouble);
  const auto want = saved.forward(hist, w, 2);
  EXPECT_FALSE(torch::equal(loaded.forward(hist, w, 2), want));  // and its weights are now cached
  std::stringstream stream;
  {
    torch::serialize::OutputArchive archive;
    saved.save(archive);
    archive.save_to(stream);
  }
  torch::serialize::InputArchive archive;
  archive.load_from(stream);
  loaded.load(archive);
  EXPECT_TRUE(torch::equal(loaded.forward(hist, w, 2), want)) << loaded.forward(hist, w, 2) << want;
}

TEST(Inputs, WaveformsHaveTheRightValuesAndLengths) {
  namespace in = brain::inputs;
  const auto sec = in::section_input({torch::tensor(0.0), torch::tensor(1.0), torch::tensor(0.0)}, {10, 20, 5}, 0.5);
  ASSERT_EQ(sec.size(0), 70);
  EXPECT_EQ(sec.sum().item<double>(), 40.0);
  EXPECT_EQ(sec[20].item<double>(), 1.0);
  EXPECT_EQ(sec[19].item<double>(), 0.0);
  const auto ramp = in::ramp_input(0, 10, 100, 1.0, 20, 70);
  EXPECT_EQ(ramp[19].item<double>(), 0.0);
  EXPECT_NEAR(ramp[45].item<double>(), 5.0, 1e-12);
  EXPECT_EQ(ramp[70].item<double>(), 0.0);
  const auto sine = in::sinusoidal_input(2.0, 10.0, 200, 0.1);  // 10 Hz: period 100 ms
  EXPECT_NEAR(sine[250].item<double>(), 2.0, 1e-9);            // t = 25 ms, a quarter period
  EXPECT_GE(in::sinusoidal_input(2.0, 10.0, 200, 0.1, 0, -1, true).min().item<double>(), -1e-12);
  const auto ou = in::ou_process(1.0, 0.5, 5.0, 20000, 0.5, 20, 42);
  EXPECT_NEAR(ou.mean().item<double>(), 1.0, 0.05);
  EXPECT_NEAR(ou.std().item<double>(), 0.5, 0.05);
  const auto dW = in::wiener_process(1000, 0.1, 100, 1);
  EXPECT_NEAR(dW.var().item<double>(), 0.1, 0.005);
  EXPECT_THROW(in::section_input({torch::tensor(1.0)}, {1, 2}, 0.1), c10::Error);
  EXPECT_THROW(in::constant_input(torch::tensor(1.0), -5, 0.1), c10::Error);
}

TEST(Inputs, PoissonRateAndReplayability) {
  auto p = std::make_shared<brain::PoissonGroup>(1000, 50.0, 9);
  p->reset_state();
  Context ctx;
  ctx.dt = 1.0;
  int64_t spikes = 0;
  std::vector<at::Tensor> first;
  for (ctx.step = 0; ctx.step < 200; ++ctx.step) {
    p->step(ctx);
    spikes += p->state("spike").sum().item<int64_t>();
    first.push_back(p->state("spike"));
  }
  // 1000 neurons x 0.2 s x 50 Hz = 10000 expected spikes.
  EXPECT_NEAR(static_cast<double>(spikes), 10000.0, 400.0);
  ctx.step = 123;  // the same step draws the same spikes
  p->step(ctx);
  EXPECT_TRUE(torch::equal(p->state("spike"), first[123]));
  // Rates are checked once, when the group is made, so the step never reads values back.
  EXPECT_THROW(brain::PoissonGroup(3, torch::tensor({1.0, -2.0, 3.0}), 1), c10::Error);
  EXPECT_THROW(brain::PoissonGroup(2, torch::tensor({1.0, std::nan("")}), 1), c10::Error);
  EXPECT_THROW(brain::PoissonGroup(2, torch::tensor({true, false}), 1), c10::Error);
  EXPECT_NO_THROW(brain::PoissonGroup(2, torch::tensor({0, 5}), 1));
}

TEST(Inputs, SpikeTimeGroupFiresInTheRightSteps) {
  brain::SpikeTimeGroup g(4, {0, 3, 3}, {0.0, 1.0, 2.5});
  g.reset_state();
  Context ctx;
  ctx.dt = 0.5;
  std::vector<std::vector<int64_t>> fired;
  for (ctx.step = 0; ctx.step < 7; ++ctx.step) {
    g.step(ctx);
    const auto nz = g.state("spike").nonzero().flatten();
    fired.emplace_back(nz.data_ptr<int64_t>(), nz.data_ptr<int64_t>() + nz.numel());
  }
  EXPECT_EQ(fired, (std::vector<std::vector<int64_t>>{{0}, {}, {3}, {}, {}, {3}, {}}));
  EXPECT_THROW(brain::SpikeTimeGroup(4, {4}, {1.0}), c10::Error);
}

// An unsorted schedule with many entries per step (a neuron twice in one step too), looked up
// on the host and on the device clock (replay), against a scan of the whole schedule: before
// the first entry, through it and past the last; then at another dt, which re-sorts it; and
// an empty schedule.
TEST(Inputs, SpikeTimeGroupLooksUpLongSchedulesByStep) {
  torch::manual_seed(3);
  const int64_t n = 20, entries = 600;
  const auto idx_t = torch::randint(n, {entries}, torch::kLong);
  const auto times_t = torch::rand({entries}, torch::kDouble) * 40.0 + 2.0;
  std::vector<int64_t> idx(idx_t.data_ptr<int64_t>(), idx_t.data_ptr<int64_t>() + entries);
  std::vector<double> times(times_t.data_ptr<double>(), times_t.data_ptr<double>() + entries);
  idx.push_back(idx[0]);  // the first entry's neuron again, in its step
  times.push_back(times[0]);
  brain::SpikeTimeGroup g(n, idx, times);
  brain::SpikeTimeGroup empty(n, {}, {});
  g.reset_state();
  empty.reset_state();
  int64_t total = 0;
  for (const double dt : {0.5, 0.25, 0.5}) {
    for (const bool clock : {false, true}) {
      Context ctx;
      ctx.dt = dt;
      for (ctx.step = 0; ctx.step < static_cast<int64_t>(45.0 / dt); ++ctx.step) {
        if (clock) ctx.clock = torch::full({}, ctx.step, torch::kLong);
        g.step(ctx);
        empty.step(ctx);
        at::Tensor want = torch::zeros({n}, torch::kBool);
        for (size_t k = 0; k < times.size(); ++k) {
          if (std::llround(times[k] / dt) == ctx.step) want[idx[k]] = true;
        }
        ASSERT_TRUE(torch::equal(g.state("spike"), want)) << "dt " << dt << " clock " << clock << " step " << ctx.step;
        ASSERT_FALSE(empty.state("spike").any().item<bool>());
        total += want.sum().item<int64_t>();
      }
    }
  }
  EXPECT_GT(total, 6 * 400);
}

std::shared_ptr<brain::DynSysGroup> leaky_net(int64_t n) {
  auto net = std::make_shared<brain::DynSysGroup>("net");
  net->add("E", std::make_shared<Leaky>(n));
  return net;
}

TEST(Runner, MonitorsEqualAHandWrittenLoop) {
  auto net = leaky_net(5);
  net->reset_state();
  const auto drive = torch::linspace(0, 30, 5, torch::kDouble);
  brain::RunnerOptions opt;
  opt.dt = 0.5;
  opt.progress = 0;
  opt.chunk_steps = 7;  // several chunks
  opt.monitors = {{"E.V", std::nullopt, 1}, {"E.V", torch::tensor({1, 4}), 3, "E.V.sub"}};
  opt.inputs = {{"E.I", drive, false, brain::RunInput::Op::Add}};
  brain::Runner runner(net, opt);
  const auto r = runner.run(20.0);
  ASSERT_EQ(r.steps, 40);

  auto ref = leaky_net(5);
  ref->reset_state();
  auto& e = ref->find_system("E");
  Context ctx;
  ctx.dt = 0.5;
  std::vector<at::Tensor> want;
  for (int64_t s = 0; s < 40; ++s) {
    ctx.step = s;
    ctx.t = s * 0.5;
    e.assign_state("I", e.state("I") + drive);
    ref->step(ctx);
    want.push_back(ref->find_state("E.V"));
  }
  const auto all = torch::stack(want);
  EXPECT_TRUE(torch::equal(r.values.at("E.V"), all));
  EXPECT_TRUE(torch::equal(r.values.at("E.V.sub"), all.index({torch::indexing::Slice(0, 40, 3)}).index_select(1, torch::tensor({1, 4}))));
  EXPECT_EQ(r.times.at("E.V.sub")[1].item<double>(), 1.5);
  EXPECT_EQ(r.times.at("E.V").size(0), 40);
  EXPECT_EQ(runner.context().step, 40);
  EXPECT_DOUBLE_EQ(runner.context().t, 20.0);
}

TEST(Runner, FullRecordingMatchesAndContinuesAcrossRuns) {
  auto net = leaky_net(3);
  net->reset_state();
  brain::RunnerOptions opt;
  opt.progress = 0;
  opt.monitors = {{"E.V", std::nullopt, 1}};
  opt.inputs = {{"E.I", torch::full({3}, 20.0, torch::kDouble), false, brain::RunInput::Op::Set}};
  brain::Runner runner(net, opt);
  const auto a = runner.run(5.0);
  const auto b = runner.run(5.0);
  EXPECT_EQ(a.values.at("E.V").size(0), 50);
  EXPECT_DOUBLE_EQ(b.t_start, 5.0);
  // V relaxes towards -45 mV under I = 20: monotone, never past it.
  const auto v = torch::cat({a.values.at("E.V"), b.values.at("E.V")}).select(1, 0);
  EXPECT_TRUE((v.diff() > 0).all().item<bool>());
  EXPECT_LT(v[-1].item<double>(), -45.0);
  const double exact = -45.0 + (-65.0 + 45.0) * std::exp(-10.0 / 10.0);
  EXPECT_NEAR(v[-1].item<double>(), exact, 1e-9);
}

TEST(Runner, BatchRunEqualsSeparateRuns) {
  const auto drives = torch::tensor({{5.0, 0.0}, {15.0, 1.0}, {30.0, 2.0}}, torch::kDouble);
  auto batched = leaky_net(2);
  batched->reset_state(3);
  brain::RunnerOptions opt;
  opt.progress = 0;
  opt.monitors = {{"E.V", std::nullopt, 1}};
  opt.inputs = {{"E.I", drives, false, brain::RunInput::Op::Set}};
  const auto rb = brain::Runner(batched, opt).run(3.0);
  for (int64_t b = 0; b < 3; ++b) {
    auto single = leaky_net(2);
    single->reset_state();
    auto o = opt;
    o.inputs = {{"E.I", drives[b], false, brain::RunInput::Op::Set}};
    const auto rs = brain::Runner(single, o).run(3.0);
    EXPECT_TRUE(torch::equal(rb.values.at("E.V").select(1, b), rs.values.at("E.V"))) << "batch item " << b;
  }
}

TEST(Runner, SaveLoadRestoresASimulationThatContinuesBitIdentically) {
  auto make = [] {
    auto net = std::make_shared<brain::DynSysGroup>("net");
    net->add("input", std::make_shared<brain::PoissonGroup>(6, 200.0, 5));
    net->add("E", std::make_shared<Leaky>(6));
    return net;
  };
  brain::RunnerOptions opt;
  opt.progress = 0;
  opt.monitors = {{"E.V", std::nullopt, 1}};
  auto drive = [](std::shared_ptr<brain::DynSysGroup> net) {
    net->find_system("E").add_before_update([net](brain::DynamicalSystem& e, const Context&) {
      e.assign_state("I", net->find_state("input.spike").to(torch::kDouble) * 40.0);
    });
  };
  auto a = make();
  drive(a);
  a->reset_state();
  brain::Runner ra(a, opt);
  ra.run(10.0);
  const auto path = (std::filesystem::temp_directory_path() / "brain_resume_test.pt").string();
  torch::save(std::static_pointer_cast<torch::nn::Module>(a), path);
  const auto uninterrupted = ra.run(10.0);

  auto b = make();
  drive(b);
  b->reset_state();
  auto module = std::static_pointer_cast<torch::nn::Module>(b);
  torch::load(module, path);
  brain::Runner rb(b, opt);
  rb.context() = Context{10.0, opt.dt, 100, false, {}};
  const auto resumed = rb.run(10.0);
  EXPECT_TRUE(torch::equal(resumed.values.at("E.V"), uninterrupted.values.at("E.V")));
  EXPECT_GT(uninterrupted.values.at("E.V").max().item<double>(), -65.0);  // the input did drive it
  std::filesystem::remove(path);
}

TEST(Runner, BadInputIsRejectedWithClearErrors) {
  auto net = leaky_net(3);
  net->reset_state();
  brain::RunnerOptions opt;
  opt.progress = 0;
  auto expect_error = [&](brain::RunnerOptions o, const std::string& fragment, double duration = 1.0) {
    try {
      brain::Runner(net, o).run(duration);
      FAIL() << "expected an error containing: " << fragment;
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  auto o = opt;
  o.dt = 0;
  expect_error(o, "dt must be positive");
  expect_error(opt, "duration must be positive", -1.0);
  o = opt;
  o.monitors = {{"E.W", std::nullopt, 1}};
  expect_error(o, "has no state 'W'; its states are: V, I");
  o = opt;
  o.monitors = {{"E.V", torch::tensor({0, 3}), 1}};
  expect_error(o, "indices must lie in [0, 3)");
  o = opt;
  o.inputs = {{"E.I", torch::ones({4}, torch::kDouble), false, brain::RunInput::Op::Add}};
  expect_error(o, "does not broadcast to the state's shape [3]");
  o = opt;
  o.monitors = {{"E.V", std::nullopt, 1}, {"E.V", std::nullopt, 2}};
  expect_error(o, "two monitors are named 'E.V'");
}

TEST(Runner, ResultsSaveAsNpzAndJson) {
  auto net = leaky_net(4);
  net->reset_state();
  brain::RunnerOptions opt;
  opt.progress = 0;
  opt.monitors = {{"E.V", std::nullopt, 2}};
  const auto r = brain::Runner(net, opt).run(2.0);
  const auto dir = (std::filesystem::temp_directory_path() / "brain_runner_save_test").string();
  r.save(dir);
  const auto arrays = brain::io::load_npz(dir + "/monitors.npz");
  ASSERT_EQ(arrays.size(), 2u);
  EXPECT_EQ(arrays[0].first, "E.V");
  EXPECT_TRUE(torch::equal(arrays[0].second, r.values.at("E.V")));
  EXPECT_EQ(arrays[1].first, "E.V.t");
  EXPECT_TRUE(std::filesystem::exists(dir + "/summary.json"));
  EXPECT_NE(r.summary_json().find("\"steps\": 20"), std::string::npos);
  // numpy reads the archive, when python3 with numpy is around.
  if (std::system("python3 -c 'import numpy' 2>/dev/null") == 0) {
    const std::string cmd = "python3 -c \"import numpy as np; d = np.load('" + dir +
                            "/monitors.npz'); assert d['E.V'].shape == (10, 4), d['E.V'].shape; "
                            "assert abs(d['E.V.t'][1] - 0.2) < 1e-12\"";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
  }
  std::filesystem::remove_all(dir);
}

TEST(Npz, RoundTripsEveryDtype) {
  const auto path = (std::filesystem::temp_directory_path() / "brain_npz_test.npz").string();
  std::vector<std::pair<std::string, at::Tensor>> arrays = {
      {"b", torch::tensor({true, false, true})},
      {"i32", torch::arange(6, torch::kInt).reshape({2, 3})},
      {"i64", torch::tensor(int64_t{-7})},
      {"f32", torch::randn({3, 1, 2})},
      {"f64", torch::randn({0, 4}, torch::kDouble)},
      {"strided", torch::randn({4, 5}).t()}};
  brain::io::save_npz(path, arrays);
  const auto back = brain::io::load_npz(path);
  ASSERT_EQ(back.size(), arrays.size());
  for (size_t i = 0; i < arrays.size(); ++i) {
    EXPECT_EQ(back[i].first, arrays[i].first);
    EXPECT_TRUE(torch::equal(back[i].second, arrays[i].second)) << arrays[i].first;
  }
  std::filesystem::remove(path);
}

}  // namespace
