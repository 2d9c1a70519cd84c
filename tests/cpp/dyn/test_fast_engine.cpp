// The fast engine against the module engine: the same network, inputs and monitors must give
// the same bits (spikes, potentials, conductances, final states), whatever the options.
#include <brain/brain.h>

#include <functional>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "csrc/dyn/fast_kernels.h"
#include "kernels/fastsim/cond_cpu.h"
#include "kernels/fastsim/fast_cpu.h"
#include "kernels/rng/poisson_draw.h"

namespace {

using brain::Engine;

brain::EINetSpec small_spec() {
  brain::EINetSpec s;
  s.n_exc = 480;
  s.n_inh = 120;
  s.p = 0.1;  // 60 synapses per neuron, like the benchmark's 80
  s.w_exc = 0.4;
  s.w_inh = 4.0;
  return s;
}

brain::RunnerOptions options_for(const brain::EINetSpec& spec, Engine engine) {
  brain::RunnerOptions opt;
  opt.engine = engine;
  opt.progress = 0;
  const auto drive = torch::tensor(spec.input_current);
  opt.inputs = {{"E.input", drive, false, brain::RunInput::Op::Set}, {"I.input", drive, false, brain::RunInput::Op::Set}};
  opt.monitors.push_back({"E.spike", std::nullopt, 1, "", at::kBool});
  opt.monitors.push_back({"I.spike", std::nullopt, 1, "", std::nullopt});
  opt.monitors.push_back({"E.V", torch::tensor({0, 5, 17, 400}), 1, "", std::nullopt});
  opt.monitors.push_back({"I2E.syn.g", torch::tensor({3, 9}), 2, "gi", std::nullopt});
  opt.monitors.push_back({"E2I.syn.g", std::nullopt, 3, "", at::kDouble});
  return opt;
}

void expect_same_bits(const at::Tensor& a, const at::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  ASSERT_EQ(a.scalar_type(), b.scalar_type()) << what;
  EXPECT_TRUE(torch::equal(a, b)) << what << ": max difference "
                                  << (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

struct Outcome {
  brain::RunResult result;
  std::map<std::string, at::Tensor> states;
};

// prepare: changes the built network (before reset_state()).
using Prepare = std::function<void(brain::DynSysGroup&)>;

Outcome simulate(const brain::EINetSpec& spec, Engine engine, int64_t steps, uint64_t seed = 3,
                 const Prepare& prepare = {}) {
  torch::NoGradGuard no_grad;
  auto net = brain::build_ei_network(spec, seed, c10::kCPU);
  if (prepare) prepare(*net);
  net->reset_state();
  brain::Runner runner(net, options_for(spec, engine));
  Outcome out{runner.run_steps(steps), {}};
  for (const auto& path : net->state_paths()) out.states[path] = net->find_state(path).clone();
  return out;
}

void expect_engines_agree(const brain::EINetSpec& spec, int64_t steps = 1500, const Prepare& prepare = {}) {
  const Outcome slow = simulate(spec, Engine::Modules, steps, 3, prepare);
  const Outcome fast = simulate(spec, Engine::Fast, steps, 3, prepare);
  EXPECT_EQ(slow.result.engine, "modules");
  EXPECT_EQ(fast.result.engine, "fast");
  const int64_t spikes = slow.result.spike_counts.at("E") + slow.result.spike_counts.at("I");
  EXPECT_GT(spikes, 200) << "the network must be active for the comparison to mean something";
  EXPECT_EQ(slow.result.spike_counts, fast.result.spike_counts);
  EXPECT_EQ(slow.result.order, fast.result.order);
  for (const auto& key : slow.result.order) {
    expect_same_bits(slow.result.values.at(key), fast.result.values.at(key), "monitor " + key);
    expect_same_bits(slow.result.times.at(key), fast.result.times.at(key), "times of " + key);
  }
  ASSERT_EQ(slow.states.size(), fast.states.size());
  for (const auto& [path, value] : slow.states) expect_same_bits(value, fast.states.at(path), "final state " + path);
}

// Runs `net` in chunks of steps, the fast engine and the module engine taking turns (fast
// first) on one clock, without monitors; returns the steps run.
int64_t run_taking_turns(const std::shared_ptr<brain::DynSysGroup>& net, const brain::EINetSpec& spec,
                         std::initializer_list<int64_t> chunks) {
  brain::RunnerOptions fast_opt = options_for(spec, Engine::Fast), slow_opt = options_for(spec, Engine::Modules);
  fast_opt.monitors.clear();
  slow_opt.monitors.clear();
  brain::Runner fast(net, fast_opt), slow(net, slow_opt);
  int64_t done = 0;
  bool use_fast = true;
  for (int64_t chunk : chunks) {
    brain::Runner& r = use_fast ? fast : slow;
    use_fast = !use_fast;
    r.context() = brain::Context{done * 0.1, 0.1, done, false, {}};
    r.run_steps(chunk);
    done += chunk;
  }
  return done;
}

TEST(FastEngine, CobaExpEulerMatchesModulesBitForBit) { expect_engines_agree(small_spec()); }

TEST(FastEngine, CobaForwardEulerMatches) {
  auto s = small_spec();
  s.method = "euler";
  expect_engines_agree(s);
}

TEST(FastEngine, CubaFloat64WithoutRefractorinessMatches) {
  auto s = small_spec();
  s.output = "cuba";
  s.dtype = "float64";
  s.w_exc = 1.6;
  s.w_inh = -9.0;
  s.neuron.tau_ref = 0.0;
  expect_engines_agree(s);
}

TEST(FastEngine, DelaysAndAttachedResetMatch) {
  auto s = small_spec();
  s.delay_ms = 1.5;
  s.neuron.detach_reset = false;
  expect_engines_agree(s);
}

TEST(FastEngine, JitConnectivityMatches) {
  auto s = small_spec();
  s.connectivity = "jit";
  s.delay_ms = 0.3;
  expect_engines_agree(s);
}

// A busy step: the fast delivery, whole or split by columns as over threads, gives the bits of
// the ops the module engine calls, which sum every target's arrivals in row order (the JIT op
// itself split over threads by column blocks).
TEST(FastEngine, DeliveryEqualsTheOpsOnABusyStep) {
  namespace fs = brain::kernels::fastsim;
  torch::manual_seed(5);
  const int64_t n_pre = 30000, n_post = 5000;
  const auto lengths = torch::randint(0, 41, {n_pre}, torch::kLong);
  const auto indptr = torch::cat({torch::zeros({1}, torch::kLong), lengths.cumsum(0)});
  const int64_t nnz = indptr[-1].item<int64_t>();
  const auto indices = torch::randint(0, n_post, {nnz}, torch::kLong);
  const auto weights = torch::rand({nnz});
  const auto x = torch::rand({n_pre}) < 0.6;
  const auto spikes_t = x.nonzero().reshape({-1}).to(torch::kInt);
  const int32_t* spikes = spikes_t.data_ptr<int32_t>();
  const int64_t n_spikes = spikes_t.numel();
  const int64_t* ip = indptr.data_ptr<int64_t>();
  const int64_t* ix = indices.data_ptr<int64_t>();
  const float* w = weights.data_ptr<float>();
  const int before = at::get_num_threads();
  at::set_num_threads(std::max(2, before));
  const at::Tensor op = brain::ops::event_csr_matmul(indptr, indices, weights, x, {n_pre, n_post}, true);
  at::set_num_threads(before);
  const bool sorted = fs::rows_sorted(ip, ix, n_pre);
  EXPECT_FALSE(sorted) << "random rows: the filtering split";
  for (int64_t parts : {1, 2, 7}) {
    std::vector<float> pending(n_post, 0.0f);
    for (int64_t i = 0; i < parts; ++i) {
      const int64_t lo = n_post * i / parts, hi = n_post * (i + 1) / parts;
      if (parts == 1) {
        fs::deliver_csr<float, int64_t>(ip, ix, w, 0.0f, spikes, n_spikes, pending.data());
      } else {
        fs::deliver_csr_columns<float, int64_t>(ip, ix, w, 0.0f, spikes, n_spikes, pending.data(), lo, hi, sorted);
      }
    }
    expect_same_bits(op, torch::from_blob(pending.data(), {n_post}, torch::kFloat), "CSR, " + std::to_string(parts) + " parts");
  }

  // JIT connectivity, the whole matrix and a window of columns (one rank's, in a distributed run).
  const int64_t n_cols = 3000;
  const double prob = 0.02;
  const auto wj = torch::tensor({0.5f, 0.2f});
  const auto xj = torch::rand({n_pre}) < 0.3;
  const auto spikes_j = xj.nonzero().reshape({-1}).to(torch::kInt);
  at::set_num_threads(std::max(2, before));
  const at::Tensor op_j = brain::ops::event_jitc_matmul(xj, wj, prob, 77, {n_pre, n_cols}, "normal", true);
  at::set_num_threads(before);
  namespace jitc = brain::kernels::jitc;
  const jitc::Spec spec = jitc::make_spec(prob, 77, n_pre, n_cols, jitc::Dist::kNormal);
  auto run_jit = [&](int64_t col_lo, int64_t col_hi, int64_t parts) {
    std::vector<float> pending(col_hi - col_lo, 0.0f);
    for (int64_t i = 0; i < parts; ++i) {
      const int64_t lo = col_lo + (col_hi - col_lo) * i / parts, hi = col_lo + (col_hi - col_lo) * (i + 1) / parts;
      fs::deliver_jit_columns<float>(spec, double(0.5f), double(0.2f), spikes_j.data_ptr<int32_t>(), spikes_j.numel(),
                                     pending.data(), col_lo, lo, hi);
    }
    return torch::from_blob(pending.data(), {col_hi - col_lo}, torch::kFloat).clone();
  };
  for (int64_t parts : {1, 3}) {
    expect_same_bits(op_j, run_jit(0, n_cols, parts), "JIT, " + std::to_string(parts) + " parts");
    expect_same_bits(op_j.narrow(0, 1000, 1500), run_jit(1000, 2500, parts), "JIT window");
  }
}

// Busy steps with the float op (which walks every stored entry) against the fast engine's
// deliveries split over threads: dense connections and a strong drive give targets many
// arrivals per step, whose sums (of one weight) round differently if grouped otherwise.
TEST(FastEngine, NonEventCsrBusyStepsMatch) {
  auto s = small_spec();
  s.n_exc = 3200;
  s.n_inh = 800;
  s.p = 0.1;
  s.event = false;
  s.w_exc = 0.37;
  s.w_inh = 3.3;
  s.input_current = 60;
  const int before = at::get_num_threads();
  at::set_num_threads(std::max(2, before));
  expect_engines_agree(s, 300);
  at::set_num_threads(before);
}

TEST(FastEngine, NonEventCsrMatches) {
  auto s = small_spec();
  s.event = false;
  expect_engines_agree(s, 600);
}

// Engines can take turns on one network: states (delay rings and refractory clocks included)
// are handed over exactly.
TEST(FastEngine, AlternatingEnginesEqualsOneEngine) {
  auto s = small_spec();
  s.delay_ms = 0.7;
  const Outcome whole = simulate(s, Engine::Modules, 900);
  torch::NoGradGuard no_grad;
  auto net = brain::build_ei_network(s, 3, c10::kCPU);
  net->reset_state();
  EXPECT_EQ(run_taking_turns(net, s, {250, 200, 150, 300}), 900);
  for (const auto& [path, value] : whole.states) expect_same_bits(value, net->find_state(path), "state " + path);
}

// At this size the population pass and the spike deliveries (split by target columns from
// about 50 spikes a step) go to threads: one thread or several, the module engine's bits.
TEST(FastEngine, ThreadCountDoesNotChangeResults) {
  for (const char* connectivity : {"csr", "jit"}) {
    SCOPED_TRACE(connectivity);
    auto s = small_spec();
    s.n_exc = 32000;
    s.n_inh = 8000;
    s.p = 0.002;
    s.connectivity = connectivity;
    const int before = at::get_num_threads();
    at::set_num_threads(1);
    const Outcome one = simulate(s, Engine::Fast, 300);
    at::set_num_threads(std::max(2, before));
    const Outcome many = simulate(s, Engine::Fast, 300);
    at::set_num_threads(1);
    const Outcome modules = simulate(s, Engine::Modules, 300);
    at::set_num_threads(before);
    EXPECT_GT(one.result.spike_counts.at("E"), 15000) << "the split needs busy steps";
    for (const auto& key : one.result.order) {
      expect_same_bits(one.result.values.at(key), many.result.values.at(key), "monitor " + key);
      expect_same_bits(modules.result.values.at(key), many.result.values.at(key), "monitor " + key + ", modules");
    }
  }
}

// Per-synapse delays with busy steps split over threads (the filed runs' column ranges, by
// bisection when rows are sorted and entry by entry when not): one thread's bits.
TEST(FastEngine, PerSynapseDelaysThreadCountDoesNotChangeResults) {
  for (const bool sorted : {true, false}) {
    SCOPED_TRACE(sorted ? "sorted rows" : "unsorted rows");
    auto s = small_spec();
    s.n_exc = 32000;
    s.n_inh = 8000;
    s.p = 0.002;
    auto run = [&](int threads) {
      torch::NoGradGuard no_grad;
      auto net = brain::build_ei_network(s, 3, c10::kCPU);
      torch::manual_seed(5);
      for (const auto& [name, child] : net->children()) {
        auto proj = std::dynamic_pointer_cast<brain::AlignPostProj>(child);
        if (!proj) continue;
        auto comm = std::static_pointer_cast<brain::CsrComm>(proj->comm());
        if (!sorted) {  // reverse every row's columns: the same matrix, its rows unsorted
          auto indptr = comm->indptr().to(torch::kLong), indices = comm->indices();
          auto reversed = indices.clone();
          for (int64_t i = 0; i + 1 < indptr.size(0); ++i) {
            const int64_t a = indptr[i].item<int64_t>(), b = indptr[i + 1].item<int64_t>();
            if (b > a) reversed.narrow(0, a, b - a).copy_(indices.narrow(0, a, b - a).flip(0));
          }
          indices.copy_(reversed);
        }
        proj->set_synapse_delays(torch::randint(0, 30, {comm->indices().numel()}));
      }
      net->reset_state();
      const int before = at::get_num_threads();
      at::set_num_threads(threads);
      brain::Runner runner(net, options_for(s, Engine::Fast));
      auto result = runner.run_steps(300);
      at::set_num_threads(before);
      return result;
    };
    const auto one = run(1);
    const auto many = run(std::max(2, at::get_num_threads()));
    EXPECT_EQ(one.engine, "fast");
    EXPECT_GT(one.spike_counts.at("E"), 15000) << "the split needs busy steps";
    for (const auto& key : one.order) {
      expect_same_bits(one.values.at(key), many.values.at(key), "monitor " + key);
    }
  }
}

// Per-step inputs (Set then Add, like the module runner applies them) reach the population.
TEST(FastEngine, PerStepAndAddedInputsMatch) {
  auto s = small_spec();
  s.input_current = 0;
  const int64_t steps = 400;
  auto run = [&](Engine engine) {
    torch::NoGradGuard no_grad;
    auto net = brain::build_ei_network(s, 5, c10::kCPU);
    net->reset_state();
    auto opt = options_for(s, engine);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    opt.inputs = {{"E.input", at::rand({steps, s.n_exc}, gen) * 40.0, true, brain::RunInput::Op::Set},
                  {"E.input", torch::tensor(2.5), false, brain::RunInput::Op::Add},
                  {"I.input", torch::full({s.n_inh}, 19.0), false, brain::RunInput::Op::Add}};
    brain::Runner runner(net, opt);
    return runner.run_steps(steps);
  };
  const auto slow = run(Engine::Modules);
  const auto fast = run(Engine::Fast);
  EXPECT_GT(slow.spike_counts.at("E"), 50);
  for (const auto& key : slow.order) expect_same_bits(slow.values.at(key), fast.values.at(key), key);
}

// Two projections delivering into one synapse (merged projections; int32 and int64 indices,
// one delayed) and a population without any input: arrivals are added in update order.
TEST(FastEngine, MergedProjectionsMatch) {
  auto run = [](Engine engine) {
    torch::NoGradGuard no_grad;
    const auto opts = at::TensorOptions(at::kFloat);
    auto net = std::make_shared<brain::DynSysGroup>("net");
    brain::LifParams lp;
    lp.tau_ref = 2.0;
    auto A = net->add("A", std::make_shared<brain::LIF>(300, lp, opts));
    auto B = net->add("B", std::make_shared<brain::LIF>(200, lp, opts));
    auto syn = std::make_shared<brain::Expon>(200, 4.0, opts);
    auto out = std::make_shared<brain::COBA>(0.0);
    const auto c1 = brain::fixed_prob(300, 200, 0.1, true, 21);
    const auto c2 = brain::fixed_prob(300, 200, 0.05, true, 22, c10::kCPU, at::kLong);
    auto w2 = torch::rand({c2.indices.numel()}, at::make_generator<at::CPUGeneratorImpl>(4)) * 0.3;
    net->add("AB1", std::make_shared<brain::AlignPostProj>(A, std::make_shared<brain::CsrComm>(c1, torch::tensor(0.2f)),
                                                          syn, out, B));
    net->add("AB2", std::make_shared<brain::AlignPostProj>(A, std::make_shared<brain::CsrComm>(c2, w2), syn, out, B, 4));
    A->set_V_initializer([](const std::vector<int64_t>& shape) {
      return at::rand(shape, at::make_generator<at::CPUGeneratorImpl>(8)) * 12.0 - 60.0;
    });
    net->reset_state();
    brain::RunnerOptions opt;
    opt.engine = engine;
    opt.progress = 0;
    opt.inputs = {{"A.input", torch::tensor(12.0), false, brain::RunInput::Op::Set}};
    opt.monitors = {{"B.V", std::nullopt, 1, "", std::nullopt}, {"AB1.syn.g", std::nullopt, 1, "", std::nullopt}};
    brain::Runner runner(net, opt);
    return runner.run_steps(700);
  };
  const auto slow = run(Engine::Modules);
  const auto fast = run(Engine::Fast);
  EXPECT_GT(slow.spike_counts.at("A"), 100);
  EXPECT_GT(slow.spike_counts.at("B"), 10);
  EXPECT_EQ(slow.spike_counts, fast.spike_counts);
  for (const auto& key : slow.order) expect_same_bits(slow.values.at(key), fast.values.at(key), key);
}

// Projections from one population with different delays share its spike history (one ring
// of the longest delay); the engines agree on it, also when they take turns.
TEST(FastEngine, SharedDelayHistoryMatches) {
  auto run = [](const std::vector<Engine>& engines) {
    torch::NoGradGuard no_grad;
    const auto opts = at::TensorOptions(at::kFloat);
    auto net = std::make_shared<brain::DynSysGroup>("net");
    brain::LifParams lp;
    lp.tau_ref = 2.0;
    auto A = net->add("A", std::make_shared<brain::LIF>(300, lp, opts));
    auto B = net->add("B", std::make_shared<brain::LIF>(200, lp, opts));
    auto C = net->add("C", std::make_shared<brain::LIF>(100, lp, opts));
    const auto cb = brain::fixed_prob(300, 200, 0.1, true, 31);
    const auto cc = brain::fixed_prob(300, 100, 0.1, true, 32);
    auto AB = std::make_shared<brain::AlignPostProj>(A, std::make_shared<brain::CsrComm>(cb, torch::tensor(0.3f)),
                                                     std::make_shared<brain::Expon>(200, 4.0, opts),
                                                     std::make_shared<brain::COBA>(0.0), B, 3);
    auto AC = std::make_shared<brain::AlignPostProj>(A, std::make_shared<brain::CsrComm>(cc, torch::tensor(0.3f)),
                                                     std::make_shared<brain::Expon>(100, 4.0, opts),
                                                     std::make_shared<brain::COBA>(0.0), C, 7);
    net->add("AC", AC);
    net->add("AB", AB);
    EXPECT_EQ(AB->delay(), AC->delay());
    A->set_V_initializer([](const std::vector<int64_t>& shape) {
      return at::rand(shape, at::make_generator<at::CPUGeneratorImpl>(9)) * 12.0 - 60.0;
    });
    net->reset_state();
    brain::RunnerOptions opt;
    opt.progress = 0;
    opt.inputs = {{"A.input", torch::tensor(12.0), false, brain::RunInput::Op::Set}};
    opt.monitors = {{"B.V", std::nullopt, 1, "", std::nullopt}, {"C.V", std::nullopt, 1, "", std::nullopt}};
    std::vector<brain::RunResult> parts;
    brain::Context clock;
    for (Engine engine : engines) {
      opt.engine = engine;
      brain::Runner runner(net, opt);
      runner.context() = clock;
      parts.push_back(runner.run_steps(150));
      clock = runner.context();
    }
    std::map<std::string, at::Tensor> joined;
    for (const auto& key : parts[0].order) {
      std::vector<at::Tensor> pieces;
      for (const auto& part : parts) pieces.push_back(part.values.at(key));
      joined[key] = torch::cat(pieces);
    }
    return joined;
  };
  const auto slow = run({Engine::Modules, Engine::Modules, Engine::Modules, Engine::Modules});
  const auto fast = run({Engine::Fast, Engine::Fast, Engine::Fast, Engine::Fast});
  const auto mixed = run({Engine::Fast, Engine::Modules, Engine::Fast, Engine::Modules});
  EXPECT_GT((slow.at("C.V") != slow.at("C.V")[0]).sum().item<int64_t>(), 0);
  for (const auto& [key, value] : slow) {
    expect_same_bits(value, fast.at(key), key);
    expect_same_bits(value, mixed.at(key), key + " (alternating)");
  }
}

TEST(FastEngine, AutoFallsBackAndSaysWhy) {
  torch::NoGradGuard no_grad;
  auto s = small_spec();
  auto net = brain::build_ei_network(s, 1, c10::kCPU);
  net->reset_state();
  auto opt = options_for(s, Engine::Auto);
  EXPECT_EQ(brain::fast_engine_unsupported(*net, opt), "");

  opt.monitors.push_back({"E.nonexistent", std::nullopt, 1, "", std::nullopt});
  EXPECT_NE(brain::fast_engine_unsupported(*net, opt).find("E.nonexistent"), std::string::npos);
  opt.monitors.pop_back();

  // A network whose states were never allocated.
  auto fresh = brain::build_ei_network(s, 1, c10::kCPU);
  EXPECT_NE(brain::fast_engine_unsupported(*fresh, opt).find("reset_state"), std::string::npos);

  // A model the engine does not compile: an ALIF population.
  auto other = std::make_shared<brain::DynSysGroup>("other");
  other->add("E", std::make_shared<brain::LIF>(10));
  other->add("X", std::make_shared<brain::ALIF>(10));
  other->reset_state();
  brain::RunnerOptions plain;
  plain.progress = 0;
  const std::string why = brain::fast_engine_unsupported(*other, plain);
  EXPECT_NE(why.find("'X'"), std::string::npos) << why;
  brain::Runner auto_runner(other, plain);
  EXPECT_EQ(auto_runner.run_steps(3).engine, "modules");
  plain.engine = Engine::Fast;
  brain::Runner fast_runner(other, plain);
  try {
    fast_runner.run_steps(3);
    FAIL() << "the fast engine must refuse an ALIF population";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'X'"), std::string::npos) << e.what();
  }
}

TEST(FastEngine, GradientsKeepTheModuleEngine) {
  auto s = small_spec();
  auto net = brain::build_ei_network(s, 1, c10::kCPU);
  net->reset_state();
  for (auto& p : net->parameters()) p.requires_grad_(true);
  auto opt = options_for(s, Engine::Auto);
  const std::string why = brain::fast_engine_unsupported(*net, opt);
  EXPECT_NE(why.find("gradient"), std::string::npos) << why;
  {
    torch::NoGradGuard no_grad;
    EXPECT_EQ(brain::fast_engine_unsupported(*net, opt), "");
  }
}

TEST(FastEngine, RejectsBatchesAndStdpOnSharedWeights) {
  torch::NoGradGuard no_grad;
  auto net = std::make_shared<brain::DynSysGroup>("net");
  auto A = net->add("A", std::make_shared<brain::LIF>(20));
  auto B = net->add("B", std::make_shared<brain::LIF>(20));
  const auto conn = brain::fixed_prob(20, 20, 0.3, true, 1);
  auto comm = std::make_shared<brain::CsrComm>(conn, torch::full({conn.indices.numel()}, 0.5f));
  auto proj = net->add("AB", std::make_shared<brain::AlignPostProj>(A, comm, std::make_shared<brain::Expon>(20, 5.0),
                                                                    std::make_shared<brain::CUBA>(), B));
  net->reset_state(3);
  brain::RunnerOptions opt;
  EXPECT_NE(brain::fast_engine_unsupported(*net, opt).find("batch"), std::string::npos);
  proj->add_stdp({});
  net->reset_state();
  EXPECT_EQ(brain::fast_engine_unsupported(*net, opt), "");
  // Another projection reading the plastic weights would see them change mid-step.
  auto twin = net->add("AB2", std::make_shared<brain::AlignPostProj>(A, comm, std::make_shared<brain::Expon>(20, 5.0),
                                                                     std::make_shared<brain::CUBA>(), B));
  net->reset_state();
  EXPECT_NE(brain::fast_engine_unsupported(*net, opt).find("'AB' has STDP on weights that 'AB2' reads"), std::string::npos)
      << brain::fast_engine_unsupported(*net, opt);
}

std::shared_ptr<brain::AlignPostProj> projection(brain::DynSysGroup& net, const std::string& name) {
  return std::dynamic_pointer_cast<brain::AlignPostProj>(net.find_system(name).shared_from_this());
}

// Tsodyks-Markram short-term plasticity on three of COBA's projections (facilitating and
// depressing, and depressing only), CSR and JIT, with and without delays, float32 and
// float64: the releases scale each spike's deliveries with the module engine's bits, and u and
// x end where its do.
TEST(FastEngine, ShortTermPlasticityMatchesTheModuleEngine) {
  const Prepare with_stp = [](brain::DynSysGroup& net) {
    projection(net, "E2E")->add_stp({0.2, 300.0, 150.0, true});
    projection(net, "E2I")->add_stp({0.5, 50.0, 400.0, false});
    projection(net, "I2E")->add_stp({0.1, 800.0, 100.0, true});
  };
  for (const char* connectivity : {"csr", "jit"}) {
    for (const double delay_ms : {0.0, 0.6}) {
      SCOPED_TRACE(std::string(connectivity) + ", delay " + std::to_string(delay_ms));
      auto s = small_spec();
      s.connectivity = connectivity;
      s.delay_ms = delay_ms;
      s.dtype = delay_ms > 0 ? "float64" : "float32";
      expect_engines_agree(s, 1200, with_stp);
      const Outcome fast = simulate(s, Engine::Fast, 300, 3, with_stp);
      EXPECT_LT(fast.states.at("E2I.stp.x").min().item<double>(), 0.9) << "releases must have depleted x";
      EXPECT_GT(fast.states.at("E2E.stp.u").max().item<double>(), 0.2) << "spikes must have facilitated u";
    }
  }
}

// `net` run by each engine in turn, steps_each steps each, on one clock: the monitors joined,
// the spike counts summed, the final states, and the parameter named `weights` (if any).
struct PlasticRun {
  std::map<std::string, at::Tensor> monitors, states;
  std::map<std::string, int64_t> spike_counts;
  at::Tensor weights;
  int64_t spikes = 0;  // of "E", where there is one
};

PlasticRun run_in_turns(const std::shared_ptr<brain::DynSysGroup>& net, brain::RunnerOptions opt,
                        const std::vector<Engine>& engines, int64_t steps_each, const std::string& weights = "") {
  torch::NoGradGuard no_grad;
  std::vector<brain::RunResult> parts;
  brain::Context clock;
  for (Engine engine : engines) {
    opt.engine = engine;
    brain::Runner runner(net, opt);
    runner.context() = clock;
    parts.push_back(runner.run_steps(steps_each));
    EXPECT_EQ(parts.back().engine, engine == Engine::Fast ? "fast" : "modules");
    clock = runner.context();
  }
  PlasticRun out;
  for (const auto& key : parts[0].order) {
    std::vector<at::Tensor> pieces;
    for (const auto& part : parts) pieces.push_back(part.values.at(key));
    out.monitors[key] = torch::cat(pieces);
  }
  for (const auto& part : parts) {
    for (const auto& [pop, n] : part.spike_counts) out.spike_counts[pop] += n;
  }
  if (out.spike_counts.count("E")) out.spikes = out.spike_counts.at("E");
  for (const auto& path : net->state_paths()) out.states[path] = net->find_state(path).clone();
  if (!weights.empty()) out.weights = net->named_parameters().find(weights)->clone();
  return out;
}

// The fast engine's Poisson draw (portable, and AVX2 with 8 pairs a Philox call) gives
// draw_row's spikes, the op's, for any start (odd or even), length and step (past 2^32), and
// per-neuron rates from 0 to always firing.
TEST(FastEngine, PoissonDrawVariantsGiveTheOpsBits) {
  namespace kr = brain::kernels::rng;
  std::vector<double> rates(1000);
  for (size_t j = 0; j < rates.size(); ++j) rates[j] = static_cast<double>((j * 7919) % 1000) * 20.0;  // 0 to 20 kHz
  std::vector<const brain::fastsim::PopulationKernels*> variants{&brain::fastsim::baseline::kKernels};
  if (brain::fastsim::avx2::kKernels.isa != nullptr && __builtin_cpu_supports("avx2")) {
    variants.push_back(&brain::fastsim::avx2::kKernels);
  }
  int64_t fired = 0;
  for (const uint64_t seed : {uint64_t{0}, uint64_t{17}, ~uint64_t{0}}) {
    const kr::PoissonKey key = kr::poisson_key(seed);
    for (const uint64_t step : {uint64_t{0}, uint64_t{12345}, (uint64_t{1} << 32) + 3}) {
      for (const int64_t offset : {int64_t{0}, int64_t{1}, int64_t{6}, int64_t{999}}) {
        for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{33}, int64_t{1000}}) {
          const int64_t len = std::min<int64_t>(n, 1000 - offset % 1000);
          std::vector<uint8_t> want(static_cast<size_t>(len) + 1, 7);
          kr::draw_row<double>(key, step, 0, offset, len, 0.1 / 1000.0, rates.data(), reinterpret_cast<bool*>(want.data()));
          for (const auto* v : variants) {
            std::vector<uint8_t> got(static_cast<size_t>(len) + 1, 7);
            v->poisson_row(key.k0, key.k1, step, offset, len, 0.1 / 1000.0, rates.data(), got.data());
            EXPECT_EQ(got, want) << v->isa << ", seed " << seed << ", step " << step << ", offset " << offset << ", n "
                                 << len;
          }
          for (int64_t j = 0; j < len; ++j) fired += want[static_cast<size_t>(j)];
        }
      }
    }
  }
  EXPECT_GT(fired, 1000) << "the draws must fire for the comparison to mean something";
  if (__builtin_cpu_supports("avx2")) {
    EXPECT_NE(brain::fastsim::avx2::kKernels.isa, nullptr) << "a CPU with AVX2 and no AVX2 draw to compare";
  }
}

// Poisson sources (PoissonGroup, drawn by the op's counter-based draw) driving two LIF
// populations through CSR and JIT connectivity, with a delay, with STP, per-neuron or one
// rate, a rate_input set before the run, float32 and float64, and a SpikeTimeGroup (a neuron
// scheduled twice in one step, spikes at step 0 and past the run) through a learning (STDP)
// projection: the fast engine draws and plays the same spikes (monitored too), the engines
// give the same bits, also taking turns.
std::shared_ptr<brain::DynSysGroup> poisson_driven(at::ScalarType dtype) {
  const auto opts = at::TensorOptions(dtype);
  auto net = std::make_shared<brain::DynSysGroup>("net");
  auto P = net->add("P", std::make_shared<brain::PoissonGroup>(
                             300, torch::rand({300}, at::make_generator<at::CPUGeneratorImpl>(6)) * 40.0, 17));
  auto Q = net->add("Q", std::make_shared<brain::PoissonGroup>(50, 25.0, 18));
  std::vector<int64_t> senders;
  std::vector<double> times;
  for (int64_t k = 0; k < 600; ++k) {
    senders.push_back((k * 7) % 20);
    times.push_back(static_cast<double>((k * 37) % 800) * 0.1);  // 0 to 79.9 ms; the runs take 75 ms
  }
  senders.push_back(senders[3]);
  times.push_back(times[3]);  // one neuron twice in one step
  auto S = net->add("S", std::make_shared<brain::SpikeTimeGroup>(20, senders, times));
  brain::LifParams lp;
  lp.tau_ref = 2.0;
  auto A = net->add("A", std::make_shared<brain::LIF>(400, lp, opts));
  auto B = net->add("B", std::make_shared<brain::LIF>(100, lp, opts));
  auto csr = [&](int64_t n_pre, int64_t n_post, double p, uint64_t seed, double w) {
    return std::make_shared<brain::CsrComm>(brain::fixed_prob(n_pre, n_post, p, true, seed), torch::tensor(w, opts));
  };
  auto P2A = net->add("P2A", std::make_shared<brain::AlignPostProj>(P, csr(300, 400, 0.1, 1, 0.25),
                                                                    std::make_shared<brain::Expon>(400, 5.0, opts),
                                                                    std::make_shared<brain::COBA>(0.0), A));
  P2A->add_stp({0.3, 100.0, 200.0, true});
  net->add("P2B", std::make_shared<brain::AlignPostProj>(
                      P, std::make_shared<brain::JitComm>(300, 100, 0.1, 3, torch::tensor(0.3, opts)),
                      std::make_shared<brain::Expon>(100, 5.0, opts), std::make_shared<brain::COBA>(0.0), B, 4));
  net->add("Q2B", std::make_shared<brain::AlignPostProj>(Q, csr(50, 100, 0.3, 2, 0.2),
                                                         std::make_shared<brain::Expon>(100, 3.0, opts),
                                                         std::make_shared<brain::COBA>(0.0), B, 2));
  const auto s_conn = brain::fixed_prob(20, 400, 0.3, true, 7);
  auto S2A = net->add("S2A", std::make_shared<brain::AlignPostProj>(
                                 S, std::make_shared<brain::CsrComm>(s_conn, torch::full({s_conn.indices.numel()}, 0.3, opts)),
                                 std::make_shared<brain::Expon>(400, 5.0, opts), std::make_shared<brain::COBA>(0.0), A, 1));
  brain::AlignPostProj::STDPParams rule;
  rule.A_plus = 0.05;
  rule.A_minus = 0.06;
  S2A->add_stdp(rule);
  net->add("A2B", std::make_shared<brain::AlignPostProj>(A, csr(400, 100, 0.1, 4, 0.1),
                                                         std::make_shared<brain::Expon>(100, 5.0, opts),
                                                         std::make_shared<brain::COBA>(0.0), B, 3));
  net->add("B2A", std::make_shared<brain::AlignPostProj>(B, csr(100, 400, 0.1, 5, 1.0),
                                                         std::make_shared<brain::Expon>(400, 10.0, opts),
                                                         std::make_shared<brain::COBA>(-80.0), A));
  if (dtype == at::kDouble) net->to(at::kDouble);  // the rates too
  net->reset_state();
  // A rate_input the first step adds (and then clears), as a Runner input or an upstream system would.
  P->assign_state("rate_input", torch::full({300}, 500.0, P->state("rate_input").options()));
  return net;
}

TEST(FastEngine, PoissonSourcesMatchTheModuleEngine) {
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    SCOPED_TRACE(c10::toString(dtype));
    auto run = [&](const std::vector<Engine>& engines) {
      brain::RunnerOptions opt;
      opt.progress = 0;
      opt.monitors = {{"P.spike", std::nullopt, 1, "", std::nullopt},
                      {"Q.spike", torch::tensor({0, 7, 49}), 2, "", at::kFloat},
                      {"P.rate_input", torch::tensor({0, 1}), 1, "", std::nullopt},
                      {"S.spike", std::nullopt, 1, "", std::nullopt},
                      {"A.V", std::nullopt, 1, "", std::nullopt},
                      {"B.spike", std::nullopt, 1, "", std::nullopt}};
      return run_in_turns(poisson_driven(dtype), opt, engines, 250, "S2A.comm.weights");
    };
    const PlasticRun slow = run({Engine::Modules, Engine::Modules, Engine::Modules});
    int64_t scheduled = 0;  // entries in the 750 steps run, each at a step of its own (but the repeat)
    for (int64_t k = 0; k < 600; ++k) scheduled += (k * 37) % 800 < 750;
    EXPECT_EQ(slow.monitors.at("S.spike").sum().item<int64_t>(), scheduled) << "every S spike of the 75 ms";
    EXPECT_GT((slow.weights != 0.3).sum().item<int64_t>(), 100) << "S2A must have learnt";
    const PlasticRun fast = run({Engine::Fast, Engine::Fast, Engine::Fast});
    const PlasticRun mixed = run({Engine::Modules, Engine::Fast, Engine::Modules});
    // About 20 Hz x 300 x 75 ms, plus the first step's 500 Hz.
    EXPECT_GT(slow.monitors.at("P.spike").sum().item<int64_t>(), 300);
    EXPECT_GT(slow.monitors.at("P.spike")[0].sum().item<int64_t>(), 5) << "the first step's rate_input";
    EXPECT_GT(slow.spike_counts.at("B"), 20);
    EXPECT_EQ(slow.spike_counts, fast.spike_counts);
    EXPECT_EQ(slow.spike_counts.count("P"), 0u) << "spike counts are the neuron groups'";
    for (const auto* other : {&fast, &mixed}) {
      for (const auto& [key, value] : slow.monitors) expect_same_bits(value, other->monitors.at(key), key);
      for (const auto& [path, value] : slow.states) expect_same_bits(value, other->states.at(path), "state " + path);
      expect_same_bits(slow.weights, other->weights, "S2A weights");
    }
  }
  // What stays on the module engine: inputs into the rates, and sources after a projection.
  torch::NoGradGuard no_grad;
  auto net = poisson_driven(at::kFloat);
  brain::RunnerOptions opt;
  EXPECT_EQ(brain::fast_engine_unsupported(*net, opt), "");
  opt.inputs = {{"P.rate_input", torch::tensor(5.0), false, brain::RunInput::Op::Add}};
  EXPECT_NE(brain::fast_engine_unsupported(*net, opt).find("goes to a PoissonGroup's rates"), std::string::npos);
  net->add("late", std::make_shared<brain::PoissonGroup>(5, 1.0, 1));
  net->reset_state();
  EXPECT_NE(brain::fast_engine_unsupported(*net, brain::RunnerOptions{}).find("is updated after a projection"),
            std::string::npos);
}

// COBA with STDP (Song, Miller & Abbott 2000) on a plastic E->E pathway next to the static
// ones, with and without a delay, int32 and int64 indices, float32 and float64: the fast
// engine updates the weights and the traces with the module engine's bits, also when the
// engines take turns, and on one thread or several.
struct PlasticCase {
  int64_t delay;
  at::ScalarType index_dtype, dtype;
  bool stp = false;  // short-term plasticity on the plastic pathway too
};

std::shared_ptr<brain::DynSysGroup> plastic_network(const PlasticCase& c, int64_t n_exc = 480, double p = 0.1) {
  auto spec = small_spec();
  spec.n_exc = n_exc;
  spec.n_inh = n_exc / 4;
  spec.p = p;
  spec.dtype = c.dtype == at::kDouble ? "float64" : "float32";
  auto net = brain::build_ei_network(spec, 3, c10::kCPU);
  auto E = std::dynamic_pointer_cast<brain::NeuronGroup>(net->find_system("E").shared_from_this());
  const auto opts = at::TensorOptions(c.dtype);
  const auto conn = brain::fixed_prob(n_exc, n_exc, p / 2, false, 41, c10::kCPU, c.index_dtype);
  const auto w = torch::rand({conn.indices.numel()}, at::make_generator<at::CPUGeneratorImpl>(5), opts) * 0.5;
  auto plastic = std::make_shared<brain::AlignPostProj>(E, std::make_shared<brain::CsrComm>(conn, w),
                                                        std::make_shared<brain::Expon>(n_exc, 5.0, opts),
                                                        std::make_shared<brain::COBA>(0.0), E, c.delay);
  brain::AlignPostProj::STDPParams rule;
  rule.A_plus = 0.05;
  rule.A_minus = 0.0525;
  rule.w_max = 0.6;
  plastic->add_stdp(rule);
  if (c.stp) plastic->add_stp({0.3, 200.0, 100.0, true});
  net->add("E2E_plastic", plastic);
  net->reset_state();
  return net;
}

PlasticRun run_plastic(const PlasticCase& c, const std::vector<Engine>& engines, int64_t steps_each) {
  return run_in_turns(plastic_network(c), options_for(small_spec(), Engine::Modules), engines, steps_each,
                      "E2E_plastic.comm.weights");
}

TEST(FastEngine, StdpMatchesTheModuleEngine) {
  for (const PlasticCase& c : {PlasticCase{0, at::kInt, at::kFloat}, PlasticCase{7, at::kLong, at::kFloat},
                               PlasticCase{3, at::kInt, at::kDouble}, PlasticCase{4, at::kLong, at::kFloat, true}}) {
    SCOPED_TRACE("delay " + std::to_string(c.delay) + ", " + c10::toString(c.index_dtype) + ", " + c10::toString(c.dtype) +
                 (c.stp ? ", with STP" : ""));
    const auto slow = run_plastic(c, {Engine::Modules, Engine::Modules, Engine::Modules}, 300);
    const auto fast = run_plastic(c, {Engine::Fast, Engine::Fast, Engine::Fast}, 300);
    const auto mixed = run_plastic(c, {Engine::Fast, Engine::Modules, Engine::Fast}, 300);
    EXPECT_GT(slow.spikes, 500) << "the pathway must learn for the comparison to mean something";
    torch::NoGradGuard no_grad;
    const at::Tensor before = plastic_network(c)->named_parameters().find("E2E_plastic.comm.weights")->clone();
    const at::Tensor moved = (slow.weights != before);
    EXPECT_GT(moved.sum().item<int64_t>(), moved.numel() / 4) << "STDP must have changed many weights";
    EXPECT_GT((slow.weights == 0.0).sum().item<int64_t>() + (slow.weights == 0.6).sum().item<int64_t>(), 0)
        << "the clipping must have been reached";
    for (const auto* run : {&fast, &mixed}) {
      expect_same_bits(slow.weights, run->weights, "weights");
      for (const auto& [key, value] : slow.monitors) expect_same_bits(value, run->monitors.at(key), "monitor " + key);
      ASSERT_EQ(slow.states.size(), run->states.size());
      for (const auto& [path, value] : slow.states) expect_same_bits(value, run->states.at(path), "state " + path);
    }
  }
}

// Busy steps split the depression (by arriving rows) and the potentiation (by spiking
// columns) over threads: one thread's bits.
TEST(FastEngine, StdpThreadCountDoesNotChangeResults) {
  const PlasticCase c{2, at::kInt, at::kFloat};
  auto run = [&](int threads) {
    torch::NoGradGuard no_grad;
    auto net = plastic_network(c, 16000, 0.004);
    brain::RunnerOptions opt = options_for(small_spec(), Engine::Fast);
    const int before = at::get_num_threads();
    at::set_num_threads(threads);
    brain::Runner runner(net, opt);
    const auto result = runner.run_steps(150);
    at::set_num_threads(before);
    EXPECT_GT(result.spike_counts.at("E"), 20000) << "the split needs busy steps";
    return std::pair{net->named_parameters().find("E2E_plastic.comm.weights")->clone(),
                     net->find_state("E2E_plastic.stdp_pre_trace").clone()};
  };
  const auto one = run(1);
  const auto many = run(std::max(2, at::get_num_threads()));
  expect_same_bits(one.first, many.first, "weights");
  expect_same_bits(one.second, many.second, "presynaptic trace");
}

// Every synapse of the small COBA network gets a delay of its own (I2I's from 0 to 40 steps:
// delivered by synapse on the module engine; the others by delay group).
std::shared_ptr<brain::DynSysGroup> delayed_network(const brain::EINetSpec& spec) {
  auto net = brain::build_ei_network(spec, 3, c10::kCPU);
  torch::manual_seed(11);
  for (const auto& [name, child] : net->children()) {
    auto proj = std::dynamic_pointer_cast<brain::AlignPostProj>(child);
    if (!proj) continue;
    const int64_t nnz = std::static_pointer_cast<brain::CsrComm>(proj->comm())->indices().numel();
    proj->set_synapse_delays(name == "I2I" ? torch::randint(0, 41, {nnz}) : torch::randint(0, 4, {nnz}) * 5);
  }
  net->reset_state();
  return net;
}

// The fast engine delivers per-synapse delays group by group into one pending sum; the module
// engine sums each group apart, then the groups: the same arrivals, summed in another order,
// so float64 runs agree to rounding and spike alike.
TEST(FastEngine, PerSynapseDelaysMatchTheModuleEngine) {
  auto spec = small_spec();
  spec.dtype = "float64";
  std::vector<brain::RunResult> results;
  std::vector<std::shared_ptr<brain::DynSysGroup>> nets;
  for (const Engine engine : {Engine::Modules, Engine::Fast}) {
    torch::NoGradGuard no_grad;
    nets.push_back(delayed_network(spec));
    brain::Runner runner(nets.back(), options_for(spec, engine));
    results.push_back(runner.run_steps(1500));
  }
  EXPECT_EQ(results[0].engine, "modules");
  EXPECT_EQ(results[1].engine, "fast");
  EXPECT_GT(results[0].spike_counts.at("E") + results[0].spike_counts.at("I"), 200);
  EXPECT_EQ(results[0].spike_counts, results[1].spike_counts);
  for (const char* key : {"E.spike", "I.spike"}) {
    EXPECT_TRUE(torch::equal(results[0].values.at(key), results[1].values.at(key))) << key;
  }
  for (const char* key : {"E.V", "gi", "E2I.syn.g"}) {
    EXPECT_TRUE(torch::allclose(results[0].values.at(key), results[1].values.at(key), 1e-9, 1e-12)) << key;
  }
  for (const auto& path : nets[0]->state_paths()) {
    EXPECT_TRUE(torch::allclose(nets[0]->find_state(path).to(torch::kDouble), nets[1]->find_state(path).to(torch::kDouble),
                                1e-9, 1e-12))
        << path;
  }
  // Engines taking turns hand the spike ring over (its write-back and its reading).
  torch::NoGradGuard no_grad;
  auto net = delayed_network(spec);
  EXPECT_EQ(run_taking_turns(net, spec, {400, 300, 500, 300}), 1500);
  for (const auto& path : nets[0]->state_paths()) {
    EXPECT_TRUE(torch::allclose(nets[0]->find_state(path).to(torch::kDouble), net->find_state(path).to(torch::kDouble),
                                1e-9, 1e-12))
        << "taking turns: " << path;
  }
}

// Plasticity with per-synapse delays (0-3 ms): a learning E->E pathway (STDP, with STP too or
// not) and STP on E->I added after its delays. The fast engine files each spike's release with
// its runs and learns on the queue's copy of the weights, keeping the module engine's rings of
// releases and presynaptic traces; as for delays alone the two sum arrivals in another order,
// so float64 runs agree to rounding and spike alike, also taking turns.
std::shared_ptr<brain::DynSysGroup> delayed_plastic_network(bool stp_on_plastic) {
  auto spec = small_spec();
  spec.dtype = "float64";
  auto net = brain::build_ei_network(spec, 3, c10::kCPU);
  auto E = std::dynamic_pointer_cast<brain::NeuronGroup>(net->find_system("E").shared_from_this());
  const auto opts = at::TensorOptions(at::kDouble);
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(12);
  const auto conn = brain::fixed_prob(spec.n_exc, spec.n_exc, 0.05, false, 41);
  auto plastic = std::make_shared<brain::AlignPostProj>(
      E, std::make_shared<brain::CsrComm>(conn, torch::rand({conn.indices.numel()}, gen, opts) * 0.5),
      std::make_shared<brain::Expon>(spec.n_exc, 5.0, opts), std::make_shared<brain::COBA>(0.0), E);
  brain::AlignPostProj::STDPParams rule;
  rule.A_plus = 0.05;
  rule.A_minus = 0.0525;
  rule.w_max = 0.6;
  plastic->add_stdp(rule);
  if (stp_on_plastic) plastic->add_stp({0.3, 200.0, 100.0, true});
  plastic->set_synapse_delays(torch::randint(0, 31, {conn.indices.numel()}, gen));
  auto E2I = projection(*net, "E2I");
  E2I->set_synapse_delays(torch::randint(0, 4, {std::static_pointer_cast<brain::CsrComm>(E2I->comm())->indices().numel()},
                                         gen) * 5);
  E2I->add_stp({0.2, 300.0, 150.0, true});
  net->add("E2E_plastic", plastic);
  net->reset_state();
  return net;
}

// A distributed run (options.partition) refuses what it cannot shard or checkpoint: STDP
// (each rank holds its columns of the weights; distributed checkpoints hold states only), STP,
// and Poisson or spike-time sources; each says which projection and why.
TEST(FastEngine, DistributedRunsRefusePlasticityAndSources) {
  torch::NoGradGuard no_grad;
  brain::RunnerOptions opt;
  opt.partition = std::make_shared<brain::dist::Partition>();
  EXPECT_EQ(brain::fast_engine_unsupported(*plastic_network({0, at::kInt, at::kFloat}), opt),
            "'E2E_plastic' has STDP, which distributed runs do not take");
  auto net = brain::build_ei_network(small_spec(), 3, c10::kCPU);
  projection(*net, "E2I")->add_stp({});
  net->reset_state();
  EXPECT_EQ(brain::fast_engine_unsupported(*net, opt), "'E2I' has short-term plasticity, which distributed runs do not take");
  EXPECT_EQ(brain::fast_engine_unsupported(*poisson_driven(at::kFloat), opt),
            "'P2A' comes from a PoissonGroup, which distributed runs do not take");
  EXPECT_EQ(brain::fast_engine_unsupported(*net, brain::RunnerOptions{}), "") << "the same network, one process";
}

TEST(FastEngine, PerSynapseDelaysWithPlasticityMatchTheModuleEngine) {
  for (const bool stp_on_plastic : {false, true}) {
    SCOPED_TRACE(stp_on_plastic ? "STDP and STP" : "STDP");
    auto run = [&](const std::vector<Engine>& engines) {
      return run_in_turns(delayed_plastic_network(stp_on_plastic), options_for(small_spec(), Engine::Modules), engines,
                          400, "E2E_plastic.comm.weights");
    };
    const auto slow = run({Engine::Modules, Engine::Modules, Engine::Modules});
    const auto fast = run({Engine::Fast, Engine::Fast, Engine::Fast});
    const auto mixed = run({Engine::Fast, Engine::Modules, Engine::Fast});
    EXPECT_GT(slow.spikes, 1000);
    torch::NoGradGuard no_grad;
    const at::Tensor before = delayed_plastic_network(stp_on_plastic)->named_parameters().find("E2E_plastic.comm.weights")->clone();
    EXPECT_GT((slow.weights != before).sum().item<int64_t>(), before.numel() / 4) << "STDP must have changed many weights";
    EXPECT_LT(slow.states.at("E2I.stp.x").min().item<double>(), 0.9) << "releases must have depleted x";
    for (const auto* other : {&fast, &mixed}) {
      for (const char* key : {"E.spike", "I.spike"}) {
        EXPECT_TRUE(torch::equal(slow.monitors.at(key), other->monitors.at(key))) << key;
      }
      EXPECT_TRUE(torch::allclose(slow.weights, other->weights, 1e-9, 1e-12)) << "weights";
      for (const auto& [path, value] : slow.states) {
        EXPECT_TRUE(torch::allclose(value.to(torch::kDouble), other->states.at(path).to(torch::kDouble), 1e-9, 1e-12)) << path;
      }
    }
  }
}

// ---- Conductance-based populations (CondNeuGroup) -------------------------------------------

struct NetRun {
  brain::RunResult result;
  std::map<std::string, at::Tensor> states;
};

// Runs a freshly built network on `engine` and keeps its monitors and final states.
NetRun run_network(const std::function<std::shared_ptr<brain::DynSysGroup>()>& build, brain::RunnerOptions opt,
                Engine engine, int64_t steps) {
  torch::NoGradGuard no_grad;
  auto net = build();
  net->reset_state();
  opt.engine = engine;
  opt.progress = 0;
  brain::Runner runner(net, opt);
  NetRun out{runner.run_steps(steps), {}};
  for (const auto& path : net->state_paths()) out.states[path] = net->find_state(path).clone();
  return out;
}

void expect_runs_equal(const NetRun& slow, const NetRun& fast) {
  EXPECT_EQ(slow.result.engine, "modules");
  EXPECT_EQ(fast.result.engine, "fast");
  EXPECT_EQ(slow.result.spike_counts, fast.result.spike_counts);
  ASSERT_EQ(slow.result.order, fast.result.order);
  for (const auto& key : slow.result.order) {
    expect_same_bits(slow.result.values.at(key), fast.result.values.at(key), "monitor " + key);
  }
  ASSERT_EQ(slow.states.size(), fast.states.size());
  for (const auto& [path, value] : slow.states) expect_same_bits(value, fast.states.at(path), "final state " + path);
}

brain::RunnerOptions coba_hh_monitors() {
  brain::RunnerOptions opt;
  opt.monitors.push_back({"E.spike", std::nullopt, 1, "", at::kBool});
  opt.monitors.push_back({"I.spike", std::nullopt, 1, "", std::nullopt});
  opt.monitors.push_back({"E.V", torch::tensor({0, 7, 399}), 1, "", std::nullopt});
  opt.monitors.push_back({"E.Na.m", torch::tensor({0, 7}), 1, "", std::nullopt});
  opt.monitors.push_back({"I.Na.h", std::nullopt, 4, "", at::kDouble});
  opt.monitors.push_back({"E.K.n", torch::tensor({3}), 2, "", std::nullopt});
  opt.monitors.push_back({"I2E.syn.g", torch::tensor({1, 2}), 1, "", std::nullopt});
  return opt;
}

// COBA-HH (Traub-Miles Na and K, leak; Expon COBA synapses): the fast engine steps each group
// with CondNeuGroup's own one-pass update, so monitors, gates and final states are the same bits.
class FastEngineCobaHH : public ::testing::TestWithParam<std::string> {};

TEST_P(FastEngineCobaHH, MatchesModulesBitForBit) {
  brain::CobaHHSpec spec;
  spec.n_exc = 400;
  spec.n_inh = 100;
  spec.p = 0.16;  // 80 synapses per neuron, as the benchmark
  spec.dtype = GetParam();
  auto build = [&] { return brain::build_coba_hh_network(spec, 5, c10::kCPU); };
  const NetRun slow = run_network(build, coba_hh_monitors(), Engine::Modules, 1500);
  const NetRun fast = run_network(build, coba_hh_monitors(), Engine::Fast, 1500);
  EXPECT_GT(slow.result.spike_counts.at("E"), 300) << "the network must be active for the comparison to mean something";
  EXPECT_GT(slow.result.spike_counts.at("I"), 50);
  expect_runs_equal(slow, fast);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FastEngineCobaHH, ::testing::Values("float32", "float64"));

TEST(FastEngine, CobaHHJitConnectivityMatches) {
  brain::CobaHHSpec spec;
  spec.n_exc = 400;
  spec.n_inh = 100;
  spec.p = 0.16;
  spec.connectivity = "jit";
  auto build = [&] { return brain::build_coba_hh_network(spec, 6, c10::kCPU); };
  const NetRun slow = run_network(build, coba_hh_monitors(), Engine::Modules, 800);
  const NetRun fast = run_network(build, coba_hh_monitors(), Engine::Fast, 800);
  EXPECT_GT(slow.result.spike_counts.at("E"), 100);
  expect_runs_equal(slow, fast);
}

// A LIF population drives thalamic cells (HH spikes with T-type calcium, a calcium pool, KCa
// and h channels, the pool before its influx channel in one of the groups) through a delayed
// CSR projection; the thalamic cells excite each other. float64.
std::shared_ptr<brain::DynSysGroup> mixed_network() {
  const auto opts = at::TensorOptions(at::kDouble);
  auto net = std::make_shared<brain::DynSysGroup>("mixed");
  brain::LifParams lp;
  lp.tau_ref = 2.0;
  auto L = net->add("L", std::make_shared<brain::LIF>(200, lp, opts));
  L->set_V_initializer([](const std::vector<int64_t>& shape) {
    return at::rand(shape, at::make_generator<at::CPUGeneratorImpl>(3), at::kDouble) * 12.0 - 60.0;
  });
  auto thalamic = [&](const char* name, int64_t n, bool pool_first) {
    auto pop = std::make_shared<brain::CondNeuGroup>(n, 1.0, -20.0, -65.0, brain::Surrogate{}, opts);
    pop->add_channel("Na", std::make_shared<brain::NaChannelHH>(n, 120.0, 50.0, opts));
    pop->add_channel("K", std::make_shared<brain::KChannelHH>(n, 36.0, -77.0, opts));
    pop->add_channel("leak", std::make_shared<brain::LeakChannel>(n, 0.3, -54.387, opts));
    brain::CaTParams cat_p;
    auto cat = std::make_shared<brain::CaTChannel>(n, cat_p, opts);
    brain::CalciumPoolParams pool_p;
    pool_p.depth = 0.1;
    auto pool = std::make_shared<brain::CalciumPool>(n, pool_p, opts);
    pool->add_influx(cat);
    auto kca = std::make_shared<brain::KCaChannel>(n, pool, brain::KCaParams{}, opts);
    if (pool_first) {
      pop->add_channel("KCa", kca);
      pop->add_channel("Ca", pool);
      pop->add_channel("CaT", cat);
    } else {
      pop->add_channel("CaT", cat);
      pop->add_channel("Ca", pool);
      pop->add_channel("KCa", kca);
    }
    pop->add_channel("H", std::make_shared<brain::HChannel>(n, brain::HParams{}, opts));
    pop->set_V_initializer([n](const std::vector<int64_t>&) { return torch::linspace(-80.0, -55.0, n, at::kDouble); });
    return net->add(name, pop);
  };
  auto T1 = thalamic("T1", 120, false);
  auto T2 = thalamic("T2", 80, true);
  auto csr = [](int64_t pre, int64_t post, double p, uint64_t seed, double w) {
    return std::make_shared<brain::CsrComm>(brain::fixed_prob(pre, post, p, true, seed), torch::tensor(w, at::kDouble));
  };
  net->add("LT1", std::make_shared<brain::AlignPostProj>(L, csr(200, 120, 0.1, 41, 0.05),
                                                         std::make_shared<brain::Expon>(120, 5.0, opts),
                                                         std::make_shared<brain::COBA>(0.0), T1, 5));
  net->add("T1T2", std::make_shared<brain::AlignPostProj>(T1, csr(120, 80, 0.1, 42, 0.1),
                                                          std::make_shared<brain::Expon>(80, 5.0, opts),
                                                          std::make_shared<brain::COBA>(0.0), T2));
  net->add("T2T1", std::make_shared<brain::AlignPostProj>(T2, csr(80, 120, 0.1, 43, 2.0),
                                                          std::make_shared<brain::Expon>(120, 8.0, opts),
                                                          std::make_shared<brain::CUBA>(), T1));
  return net;
}

TEST(FastEngine, LifDrivingThalamicCellsMatches) {
  brain::RunnerOptions opt;
  opt.dt = 0.025;
  opt.inputs = {{"L.input", torch::tensor(13.0), false, brain::RunInput::Op::Set},
                {"T2.input", torch::linspace(-4.0, 8.0, 80, at::kDouble), false, brain::RunInput::Op::Set}};
  opt.monitors = {{"T1.V", torch::tensor({0, 60, 119}), 1, "", std::nullopt},
                  {"T2.spike", std::nullopt, 1, "", std::nullopt},
                  {"T1.Ca.Ca", torch::tensor({5, 50}), 1, "", std::nullopt},
                  {"T2.KCa.p", std::nullopt, 10, "", std::nullopt},
                  {"T2.CaT.q", torch::tensor({0}), 1, "", std::nullopt},
                  {"T1.H.p", torch::tensor({1}), 1, "", std::nullopt},
                  {"T1T2.syn.g", torch::tensor({3}), 1, "", std::nullopt}};
  const NetRun slow = run_network(mixed_network, opt, Engine::Modules, 4000);
  const NetRun fast = run_network(mixed_network, opt, Engine::Fast, 4000);
  EXPECT_GT(slow.result.spike_counts.at("L"), 100);
  EXPECT_GT(slow.result.spike_counts.at("T1"), 20);
  EXPECT_GT(slow.result.spike_counts.at("T2"), 20);
  EXPECT_GT(slow.result.values.at("T1.Ca.Ca").max().item<double>(), 10 * 2.4e-4);  // calcium path exercised
  expect_runs_equal(slow, fast);
}

// Conductance-based groups take a thread per 256 neurons: any split gives the same bits.
TEST(FastEngine, CobaHHThreadCountDoesNotChangeResults) {
  brain::CobaHHSpec spec;
  spec.n_exc = 1600;
  spec.n_inh = 400;
  spec.p = 0.04;
  auto run = [&](int threads) {
    const int before = at::get_num_threads();
    at::set_num_threads(threads);
    auto build = [&] { return brain::build_coba_hh_network(spec, 8, c10::kCPU); };
    NetRun r = run_network(build, coba_hh_monitors(), Engine::Fast, 400);
    at::set_num_threads(before);
    return r;
  };
  const NetRun one = run(1);
  const NetRun two = run(2);
  EXPECT_GT(one.result.spike_counts.at("E"), 100);
  for (const auto& key : one.result.order) {
    expect_same_bits(one.result.values.at(key), two.result.values.at(key), "monitor " + key);
  }
}

TEST(FastEngine, CondGroupsItCannotStepKeepTheModuleEngine) {
  torch::NoGradGuard no_grad;
  brain::CobaHHSpec spec;
  spec.n_exc = 40;
  spec.n_inh = 10;
  auto net = brain::build_coba_hh_network(spec, 1, c10::kCPU);
  net->reset_state();
  brain::RunnerOptions opt;
  opt.progress = 0;
  EXPECT_EQ(brain::fast_engine_unsupported(*net, opt), "");
  opt.monitors = {{"E.Na.x", std::nullopt, 1, "", std::nullopt}};
  EXPECT_NE(brain::fast_engine_unsupported(*net, opt).find("E.Na.x"), std::string::npos);
  opt.monitors.clear();

  // A hook on a channel would not run inside the fused pass.
  auto& sodium = net->find_system("E.Na");
  sodium.add_before_update([](brain::DynamicalSystem&, const brain::Context&) {});
  std::string why = brain::fast_engine_unsupported(*net, opt);
  EXPECT_NE(why.find("'E.Na'"), std::string::npos) << why;
  EXPECT_NE(why.find("hooks"), std::string::npos) << why;
  net = brain::build_coba_hh_network(spec, 1, c10::kCPU);
  net->reset_state();

  static_cast<brain::CondNeuGroup&>(net->find_system("I")).set_fused(false);
  why = brain::fast_engine_unsupported(*net, opt);
  EXPECT_NE(why.find("'I'"), std::string::npos) << why;
  EXPECT_NE(why.find("switched off"), std::string::npos) << why;

  // A KCa channel whose pool is not in the group: the group steps op by op, so does the network.
  auto other = std::make_shared<brain::DynSysGroup>("other");
  auto pool = std::make_shared<brain::CalciumPool>(4);
  auto group = other->add("n", std::make_shared<brain::CondNeuGroup>(4));
  group->add_channel("L", std::make_shared<brain::LeakChannel>(4));
  group->add_channel("KCa", std::make_shared<brain::KCaChannel>(4, pool));
  pool->reset_state();
  other->reset_state();
  why = brain::fast_engine_unsupported(*other, opt);
  EXPECT_NE(why.find("'n'"), std::string::npos) << why;
  EXPECT_NE(why.find("one-pass"), std::string::npos) << why;
  brain::Runner runner(other, opt);
  EXPECT_EQ(runner.run_steps(3).engine, "modules");

  // A pool fed more often than the kernel's influx list holds (the same channel added again
  // and again) steps op by op instead of writing past that list.
  auto crowded = std::make_shared<brain::DynSysGroup>("crowded");
  auto cells = crowded->add("n", std::make_shared<brain::CondNeuGroup>(4));
  auto cat = cells->add_channel("CaT", std::make_shared<brain::CaTChannel>(4));
  auto fed = std::make_shared<brain::CalciumPool>(4);
  for (int i = 0; i <= brain::kernels::cond::kMaxChannels; ++i) fed->add_influx(cat);
  cells->add_channel("Ca", fed);
  crowded->reset_state();
  EXPECT_FALSE(cells->takes_fused_step());
  why = brain::fast_engine_unsupported(*crowded, opt);
  EXPECT_NE(why.find("one-pass"), std::string::npos) << why;
  brain::Runner crowded_runner(crowded, opt);
  EXPECT_EQ(crowded_runner.run_steps(3).engine, "modules");
}

}  // namespace
