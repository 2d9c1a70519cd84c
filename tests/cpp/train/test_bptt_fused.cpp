// The fused LIF path of SpikingNet against its module path, gradients through sparse (CSR, JIT)
// recurrence with delays against a plain dense torch network, and memory-bounded BPTT
// (backward_recomputing) against the whole-window backward.
#include <brain/ops.h>
#include <brain/train/bptt.h>

#include <cmath>
#include <map>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using namespace brain::train;

SpikingNetOptions net_options(bool recurrent, const std::string& recurrence, int64_t delay, bool fused) {
  SpikingNetOptions o;
  o.n_in = 6;
  o.n_hidden = 40;
  o.n_out = 3;
  o.recurrent = recurrent;
  o.recurrence = recurrence;
  o.recurrent_prob = 0.3;
  o.recurrent_delay = delay;
  o.fused = fused;
  o.seed = 11;
  return o;
}

// Loss gradients of every parameter after one window; outputs in *out.
std::map<std::string, torch::Tensor> gradients(SpikingNet& net, const torch::Tensor& x, const torch::Tensor& y,
                                               torch::Tensor* out) {
  net.zero_grad();
  net.reset(x.size(1));
  *out = net.forward(x);
  losses::cross_entropy_mean_over_time()(*out, y).backward();
  std::map<std::string, torch::Tensor> g;
  for (const auto& item : net.named_parameters()) g[item.key()] = item.value().grad().clone();
  return g;
}

void expect_close(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b,
                  double rtol) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, ga] : a) {
    const auto& gb = b.at(name);
    const double scale = gb.abs().max().item<double>();
    EXPECT_GT(scale, 0.0) << name << " has no gradient";
    EXPECT_LE((ga - gb).abs().max().item<double>(), rtol * scale) << name;
  }
}

// The readouts of two runs with the same spikes. Not bit for bit: the readout (and input)
// Linear runs over the whole window in one and step by step or chunk by chunk in the other, and
// a GEMM's rounding depends on its row count (MKL on Intel Xeons picks other kernels); one
// spike more or less would move an output by a readout weight, orders above this tolerance.
void expect_same_spikes(const torch::Tensor& a, const torch::Tensor& b) {
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6)) << "max difference " << (a - b).abs().max().item<double>();
}

torch::Tensor drive(int64_t steps, int64_t batch, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::rand({steps, batch, 6}, gen) * 6.0;
}

TEST(SpikingNetFused, SpikesEqualTheModulePathAndGradientsAgree) {
  const auto x = drive(30, 5, 1);
  const auto y = torch::tensor({0, 1, 2, 1, 0}, torch::kLong);
  for (const auto& [recurrent, recurrence, delay] :
       std::vector<std::tuple<bool, std::string, int64_t>>{{false, "dense", 1}, {true, "dense", 1},
                                                           {true, "csr", 2}, {true, "jit", 3}}) {
    SpikingNet fused(net_options(recurrent, recurrence, delay, true));
    SpikingNet modules(net_options(recurrent, recurrence, delay, false));
    torch::Tensor out_fused, out_modules;
    const auto g_fused = gradients(fused, x, y, &out_fused);
    const auto g_modules = gradients(modules, x, y, &out_modules);
    SCOPED_TRACE(recurrence + (recurrent ? " recurrent" : " feed-forward"));
    expect_same_spikes(out_fused, out_modules);
    EXPECT_GT(fused.last_rate().item<double>(), 0.02);
    expect_close(g_fused, g_modules, 1e-5);
  }
}

// Second order from C++: a gradient penalty on the input (|dL/dx|^2, differentiated again by
// backward) through the fused ops equals the module path's, whose spikes are brain::spike.
TEST(SpikingNetFused, GradientPenaltyEqualsTheModulePaths) {
  const auto y = torch::tensor({0, 1, 2, 1, 0}, torch::kLong);
  for (const auto& [recurrent, recurrence, delay] :
       std::vector<std::tuple<bool, std::string, int64_t>>{{false, "dense", 1}, {true, "dense", 1},
                                                           {true, "csr", 2}, {true, "jit", 3}}) {
    SCOPED_TRACE(recurrence + (recurrent ? " recurrent" : " feed-forward"));
    std::vector<std::map<std::string, torch::Tensor>> grads;
    for (bool fused : {true, false}) {
      SpikingNet net(net_options(recurrent, recurrence, delay, fused));
      net.to(torch::kFloat64);
      const auto x = drive(20, 5, 1).to(torch::kFloat64).requires_grad_();
      net.reset(x.size(1));
      const auto loss = losses::cross_entropy_mean_over_time()(net.forward(x), y);
      const auto g_x = torch::autograd::grad({loss}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
      net.zero_grad();
      g_x.square().sum().backward();
      std::map<std::string, torch::Tensor> g;
      for (const auto& item : net.named_parameters()) g[item.key()] = item.value().grad().clone();
      grads.push_back(g);
    }
    expect_close(grads[0], grads[1], 1e-8);
  }
}

// forward_with: the network computes with the given parameters (the output of a network holding
// them, gradients reaching them), leaves its own alone, and names what it cannot use.
TEST(SpikingNet, ForwardWithGivenParameters) {
  for (const auto& [recurrent, recurrence, fused] :
       std::vector<std::tuple<bool, std::string, bool>>{{false, "dense", true}, {true, "dense", false},
                                                        {true, "csr", true}, {true, "csr", false},
                                                        {true, "jit", true}, {true, "jit", false}}) {
    SCOPED_TRACE(recurrence + (recurrent ? " recurrent" : " feed-forward") + (fused ? " fused" : " modules"));
    SpikingNet net(net_options(recurrent, recurrence, 2, fused)), twin(net_options(recurrent, recurrence, 2, fused));
    const auto x = drive(20, 4, 3);
    std::map<std::string, torch::Tensor> given;
    {
      torch::NoGradGuard no_grad;
      for (const auto& item : net.named_parameters()) {
        given[item.key()] = (item.value() * 1.25).requires_grad_();
        twin.named_parameters()[item.key()].copy_(item.value() * 1.25);
      }
    }
    net.reset(4);
    const auto own = net.forward(x);
    net.reset(4);
    const auto out = net.forward_with(x, given);
    twin.reset(4);
    EXPECT_TRUE(torch::equal(out, twin.forward(x)));
    EXPECT_FALSE(torch::equal(out, own));
    out.square().sum().backward();
    for (const auto& item : net.named_parameters()) {
      EXPECT_FALSE(item.value().grad().defined()) << item.key();
      EXPECT_GT(given.at(item.key()).grad().abs().sum().item<double>(), 0.0) << item.key();
    }
    net.reset(4);
    EXPECT_TRUE(torch::equal(net.forward(x), own));
  }
  SpikingNet net(net_options(true, "csr", 1, true));
  net.reset(2);
  EXPECT_THROW(
      {
        try {
          net.forward_with(drive(5, 2, 1), {{"readout.wieght", torch::zeros({3, 40})}});
        } catch (const c10::Error& e) {
          EXPECT_NE(std::string(e.what()).find("no parameter 'readout.wieght'; its parameters are input.weight"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      c10::Error);
  EXPECT_THROW(net.forward_with(drive(5, 2, 1), {{"readout.weight", torch::zeros({3, 39})}}), c10::Error);
  // The Comms' own forward_with, for C++ callers: weights of another shape are refused by name.
  const auto spikes = torch::zeros({2, 40});
  const auto& csr = static_cast<const brain::CsrComm&>(*net.recurrent_comm());
  EXPECT_THROW(csr.forward_with(spikes, torch::zeros({csr.weights().numel() + 1})), c10::Error);
  EXPECT_TRUE(torch::equal(csr.forward_with(spikes, csr.weights()), torch::zeros({2, 40})));
  SpikingNet jit_net(net_options(true, "jit", 1, true));
  const auto& jit = static_cast<const brain::JitComm&>(*jit_net.recurrent_comm());
  EXPECT_THROW(jit.forward_with(spikes, torch::zeros({3})), c10::Error);
}

// The recurrent layer's op (from C++, int32 indices, float32) against the per-step network it
// replaces: event_csr_matmul of the delayed spikes, the sum, one lif_sequence step.
TEST(LifRecurrentSequence, EqualsTheOpByOpNetworkBitForBit) {
  const int64_t steps = 35, batch = 3, n = 50, delay = 2;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto conn = brain::fixed_prob(n, n, 0.2, /*include_self=*/false, 3);
  const auto indptr = conn.indptr.to(torch::kInt), indices = conn.indices.to(torch::kInt);
  const auto weights = torch::randn({indices.numel()}, gen) * 0.6;
  const auto drive = torch::rand({steps, batch, n}, gen) * 2.5;
  const auto v0 = torch::rand({batch, n}, gen);
  const auto history = (torch::rand({delay, batch, n}, gen) < 0.2).to(torch::kFloat);
  brain::ops::LifSequenceOptions lo;
  lo.tau = 8.0;
  const auto [spikes, v_last] = brain::ops::lif_recurrent_sequence(drive, v0, history, indptr, indices, weights, lo);
  std::vector<torch::Tensor> line(history.unbind(0)), by_op;
  torch::Tensor u = v0;
  for (int64_t t = 0; t < steps; ++t) {
    const auto rec = brain::ops::event_csr_matmul(indptr, indices, weights, line[t], {n, n}, true);
    auto [s, v] = brain::ops::lif_sequence((drive[t] + rec).unsqueeze(0), u, lo);
    u = v;
    line.push_back(s[0]);
    by_op.push_back(s[0]);
  }
  const double rate = spikes.mean().item<double>();
  EXPECT_GT(rate, 0.02);
  EXPECT_LT(rate, 0.5);
  EXPECT_TRUE(torch::equal(spikes, torch::stack(by_op)));
  EXPECT_TRUE(torch::equal(v_last, u));
}

// The JIT form against the per-step network it replaces (JitComm's event_jitc_matmul of the
// delayed spikes, the sum, one lif_sequence step), for each weight distribution; and its
// weight parameters' gradient (one walk over A per window) against the per-step graph's.
TEST(LifJitRecurrentSequence, EqualsTheOpByOpNetworkBitForBitAndGradientsAgree) {
  const int64_t steps = 30, batch = 3, n = 60, delay = 2, seed = 5;
  const double prob = 0.15;
  for (const auto& [dist, params] : std::vector<std::pair<std::string, std::vector<float>>>{
           {"homo", {0.4f}}, {"uniform", {-0.5f, 0.9f}}, {"normal", {0.1f, 0.5f}}}) {
    SCOPED_TRACE(dist);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
    const auto weight = torch::tensor(params).requires_grad_();
    const auto drive = (torch::rand({steps, batch, n}, gen) * 2.5).requires_grad_();
    const auto v0 = torch::rand({batch, n}, gen);
    const auto history = (torch::rand({delay, batch, n}, gen) < 0.2).to(torch::kFloat);
    brain::ops::LifSequenceOptions lo;
    lo.tau = 8.0;
    const auto [spikes, v_last] =
        brain::ops::lif_jit_recurrent_sequence(drive, v0, history, weight, prob, seed, dist, lo);
    std::vector<torch::Tensor> line(history.unbind(0)), by_op;
    torch::Tensor u = v0;
    for (int64_t t = 0; t < steps; ++t) {
      const auto rec = brain::ops::event_jitc_matmul(line[t], weight, prob, seed, {n, n}, dist, true);
      auto [s, v] = brain::ops::lif_sequence((drive[t] + rec).unsqueeze(0), u, lo);
      u = v;
      line.push_back(s[0]);
      by_op.push_back(s[0]);
    }
    const auto by_op_spikes = torch::stack(by_op);
    const double rate = spikes.mean().item<double>();
    EXPECT_GT(rate, 0.02);
    EXPECT_LT(rate, 0.5);
    EXPECT_TRUE(torch::equal(spikes, by_op_spikes));
    EXPECT_TRUE(torch::equal(v_last, u));
    auto gen_loss = at::make_generator<at::CPUGeneratorImpl>(4);
    const auto ws = torch::randn(spikes.sizes(), gen_loss), wv = torch::randn(v_last.sizes(), gen_loss);
    const auto fused_grads =
        torch::autograd::grad({(spikes * ws).sum() + (v_last * wv).sum()}, {drive, weight});
    const auto by_op_grads = torch::autograd::grad({(by_op_spikes * ws).sum() + (u * wv).sum()}, {drive, weight});
    for (size_t i = 0; i < 2; ++i) {
      const double scale = by_op_grads[i].abs().max().item<double>();
      EXPECT_GT(scale, 0.0) << i;
      EXPECT_LE((fused_grads[i] - by_op_grads[i]).abs().max().item<double>(), 1e-4 * scale) << i;
    }
  }
}

// Recurrence through event CSR or JIT connectivity with a delay of 2 steps, against the same
// network written in plain torch with the dense recurrent matrix and a list as the delay line.
TEST(SpikingNetFused, GradientsThroughSparseRecurrenceAndDelaysMatchADenseTorchNetwork) {
  for (const std::string recurrence : {"csr", "jit"}) {
    SCOPED_TRACE(recurrence);
    const int64_t delay = 2, n = 40, steps = 25, batch = 4;
    SpikingNet net(net_options(true, recurrence, delay, true));
    const auto x = drive(steps, batch, 2);
    const auto y = torch::tensor({2, 0, 1, 1}, torch::kLong);
    torch::Tensor out;
    const auto g = gradients(net, x, y, &out);

    std::map<std::string, torch::Tensor> p;
    for (const auto& item : net.named_parameters()) p[item.key()] = item.value().detach().clone().requires_grad_();
    torch::Tensor A;  // [pre, post], differentiable in the recurrent parameters
    if (recurrence == "csr") {
      auto comm = std::dynamic_pointer_cast<brain::CsrComm>(net.recurrent_comm());
      const auto rows = torch::repeat_interleave(comm->indptr().diff().to(torch::kLong));
      A = torch::zeros({n, n}).index_put({rows, comm->indices().to(torch::kLong)}, p["recurrent.weights"], true);
    } else {
      auto comm = std::dynamic_pointer_cast<brain::JitComm>(net.recurrent_comm());
      const auto mask = brain::ops::jitc_materialize(torch::tensor({1.0f, 0.0f}), comm->prob(), comm->seed(), {n, n}, "normal");
      const auto z = brain::ops::jitc_materialize(torch::tensor({0.0f, 1.0f}), comm->prob(), comm->seed(), {n, n}, "normal");
      A = mask * p["recurrent.weight"][0] + z * p["recurrent.weight"][1];
    }
    const double decay = std::exp(-1.0 / 10.0), alpha = 4.0;
    auto v = torch::zeros({batch, n});
    std::vector<torch::Tensor> line(delay, torch::zeros({batch, n}));  // line[k]: spikes k + 1 steps ago
    std::vector<torch::Tensor> outs;
    for (int64_t t = 0; t < steps; ++t) {
      const auto I = torch::nn::functional::linear(x[t], p["input.weight"], p["input.bias"]) + line.back().matmul(A);
      const auto v_new = I + (v - I) * decay;
      const auto soft = torch::sigmoid(alpha * (v_new - 1.0));
      const auto s = soft + ((v_new > 1.0).to(torch::kFloat) - soft).detach();
      v = torch::where(s.detach() > 0, torch::zeros_like(v_new), v_new);
      line.pop_back();
      line.insert(line.begin(), s);
      outs.push_back(torch::nn::functional::linear(s, p["readout.weight"], p["readout.bias"]));
    }
    const auto plain_out = torch::stack(outs);
    EXPECT_TRUE(torch::allclose(out, plain_out, 1e-5, 1e-6));
    torch::nn::functional::cross_entropy(plain_out.mean(0), y).backward();
    std::map<std::string, torch::Tensor> g_plain;
    for (auto& [name, t] : p) g_plain[name] = t.grad();
    expect_close(g, g_plain, 1e-4);
  }
}

TEST(BackwardRecomputing, GivesTheWholeWindowGradientsAndEndState) {
  const auto x = drive(53, 4, 3);
  const auto y = torch::tensor({1, 0, 2, 2}, torch::kLong);
  const auto loss_of = [&](const torch::Tensor& out) { return losses::cross_entropy_mean_over_time()(out, y); };
  for (const auto& [recurrent, recurrence, delay] :
       std::vector<std::tuple<bool, std::string, int64_t>>{{false, "dense", 1}, {true, "dense", 1},
                                                           {true, "csr", 3}, {true, "jit", 2}}) {
    SCOPED_TRACE(recurrence + (recurrent ? " recurrent" : " feed-forward"));
    for (const int64_t chunk : {1, 7, 53, 100}) {
      SpikingNet whole(net_options(recurrent, recurrence, delay, true));
      SpikingNet chunked(net_options(recurrent, recurrence, delay, true));
      torch::Tensor out_whole, out_chunked;
      const auto g_whole = gradients(whole, x, y, &out_whole);
      chunked.reset(4);
      const auto loss = backward_recomputing(chunked, x, loss_of, chunk, &out_chunked);
      expect_same_spikes(out_whole, out_chunked);
      EXPECT_NEAR(loss.item<double>(), loss_of(out_whole).item<double>(), 1e-7);
      std::map<std::string, torch::Tensor> g_chunked;
      for (const auto& item : chunked.named_parameters()) g_chunked[item.key()] = item.value().grad();
      expect_close(g_chunked, g_whole, 1e-5);
      // The model goes on from the end of the window, as after a plain forward.
      const auto a = whole.get_state(), b = chunked.get_state();
      ASSERT_EQ(a.size(), b.size());
      for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-5, 1e-4)) << "state " << i << ", chunk " << chunk;
      }
    }
  }
}

TEST(BackwardRecomputing, TrainsLikeThePlainTrainer) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const auto x = torch::rand({48, 40, 6}, gen) * 6.0;
  const auto y = torch::randint(0, 3, {48}, gen, torch::kLong);
  std::vector<std::vector<EpochStats>> runs;
  for (const int64_t chunk : {0, 9}) {
    auto net = std::make_shared<SpikingNet>(net_options(true, "csr", 2, true));
    auto opt = std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(1e-2));
    BPTTOptions bo;
    bo.epochs = 3;
    bo.batch_size = 16;
    bo.truncation = 20;
    bo.recompute_chunk = chunk;
    bo.progress = false;
    runs.push_back(BPTT(net, opt, losses::cross_entropy_mean_over_time(), bo).fit(x, y));
  }
  for (size_t e = 0; e < 3; ++e) {
    EXPECT_NEAR(runs[0][e].loss, runs[1][e].loss, 1e-4 * std::abs(runs[0][e].loss)) << "epoch " << e;
    EXPECT_EQ(runs[0][e].accuracy, runs[1][e].accuracy);
  }
}

struct Stateless : SequenceModel {
  void reset(int64_t) override {}
  torch::Tensor forward(const torch::Tensor& x) override { return x; }
};

TEST(BackwardRecomputing, RefusesWhatItCannotSplit) {
  Stateless model;
  const auto x = torch::rand({5, 2, 3});
  const auto loss_of = [](const torch::Tensor& out) { return out.sum(); };
  EXPECT_THROW(
      {
        try {
          backward_recomputing(model, x, loss_of, 2);
        } catch (const c10::Error& e) {
          EXPECT_NE(std::string(e.what()).find("does not expose its state"), std::string::npos);
          throw;
        }
      },
      c10::Error);
  SpikingNet net(net_options(false, "dense", 1, true));
  net.reset(2);
  EXPECT_THROW(backward_recomputing(net, torch::rand({5, 2, 6}), loss_of, 0), c10::Error);
  auto shared = std::make_shared<SpikingNet>(net_options(false, "dense", 1, true));
  auto opt = std::make_shared<torch::optim::SGD>(shared->parameters(), torch::optim::SGDOptions(0.1));
  BPTTOptions bo;
  bo.recompute_chunk = 4;
  bo.regularizer = [] { return torch::zeros({}); };
  EXPECT_THROW(BPTT(shared, opt, losses::mse(), bo), c10::Error);
  for (const auto& bad : {net_options(true, "sparse", 1, true), net_options(true, "csr", 0, true)}) {
    EXPECT_THROW(SpikingNet{bad}, c10::Error);
  }
}

}  // namespace
