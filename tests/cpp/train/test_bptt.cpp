// BPTT: a spiking classifier learns a rate-coded task; truncated BPTT, checkpoints, a readout
// trained by BPTT on reservoir states (the third arm of the Lorenz task), bad input.
#include <brain/io/checkpoint.h>
#include <brain/models/reservoir.h>
#include <brain/train/bptt.h>
#include <brain/train/datasets.h>

#include <cmath>
#include <filesystem>
#include <map>

#include <unistd.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using namespace brain::train;

// Two classes of Poisson spike trains over 20 channels: class c fires channels of its half
// at 40% per step and the others at 5%. [N, T, 20] float spikes, labels [N].
std::pair<torch::Tensor, torch::Tensor> rate_task(int64_t n, int64_t steps, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto labels = torch::randint(0, 2, {n}, gen, torch::kLong);
  auto rates = torch::full({n, 1, 20}, 0.05);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = labels[i].item<int64_t>();
    rates[i].narrow(1, c * 10, 10).fill_(0.4);
  }
  const auto spikes = (torch::rand({n, steps, 20}, gen) < rates).to(torch::kFloat);
  return {spikes, labels};
}

TEST(BPTT, SpikingClassifierLearnsARateCodedTask) {
  auto [x, y] = rate_task(256, 25, 1);
  auto [xt, yt] = rate_task(128, 25, 2);
  SpikingNetOptions o;
  o.n_in = 20;
  o.n_hidden = 32;
  o.n_out = 2;
  o.recurrent = true;
  auto net = std::make_shared<SpikingNet>(o);
  auto opt = std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(1e-2));
  BPTTOptions bo;
  bo.epochs = 8;
  bo.batch_size = 32;
  bo.progress = false;
  BPTT trainer(net, opt, losses::cross_entropy_mean_over_time(), bo);
  const auto before = trainer.evaluate(xt, yt);
  const auto history = trainer.fit(x, y, xt, yt);
  ASSERT_EQ(history.size(), 8u);
  EXPECT_LT(history.back().loss, history.front().loss);
  EXPECT_GE(history.back().eval_accuracy, 0.95) << "accuracy before training " << before.accuracy;
  EXPECT_GT(net->last_rate().item<double>(), 0.0);  // the hidden layer spikes
}

// The same recurrent LIF network written in plain torch (straight-through sigmoid surrogate,
// exponential-Euler LIF, reset without gradient): BPTT gradients agree to float32 rounding.
TEST(BPTT, GradientsMatchAPlainTorchImplementation) {
  SpikingNetOptions o;
  o.n_in = 6;
  o.n_hidden = 12;
  o.n_out = 3;
  o.recurrent = true;
  o.seed = 5;
  auto net = std::make_shared<SpikingNet>(o);
  torch::manual_seed(9);
  const auto x = torch::rand({15, 4, 6}) * 1.5;  // [T, B, n_in] currents
  const auto y = torch::randint(0, 3, {4}, torch::kLong);
  net->reset(4);
  losses::cross_entropy_mean_over_time()(net->forward(x), y).backward();

  auto params = net->named_parameters();
  std::map<std::string, torch::Tensor> p;
  for (const auto& item : params) p[item.key()] = item.value().detach().clone().requires_grad_();
  const double decay = std::exp(-o.dt / o.lif.tau), alpha = o.lif.surrogate.alpha;
  auto v = torch::zeros({4, 12});
  auto s = torch::zeros({4, 12});
  std::vector<torch::Tensor> outs;
  for (int64_t t = 0; t < 15; ++t) {
    const auto I = torch::nn::functional::linear(x[t], p["input.weight"], p["input.bias"]) +
                   torch::nn::functional::linear(s, p["recurrent.weight"]);
    const auto v_new = I + (v - I) * decay;
    const auto u = (v_new - 1.0) / 1.0;
    const auto soft = torch::sigmoid(alpha * u);
    s = soft + ((u > 0).to(torch::kFloat) - soft).detach();
    v = torch::where(s.detach() > 0, torch::zeros_like(v_new), v_new);
    outs.push_back(torch::nn::functional::linear(s, p["readout.weight"], p["readout.bias"]));
  }
  torch::nn::functional::cross_entropy(torch::stack(outs).mean(0), y).backward();
  for (const auto& item : params) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_TRUE(torch::allclose(item.value().grad(), p[item.key()].grad(), 1e-4, 1e-6)) << item.key();
  }
  EXPECT_GT(params["input.weight"].grad().abs().sum().item<double>(), 0.0);
}

TEST(BPTT, TruncatedWindowsCheckpointsAndRegularizer) {
  auto [x, y] = rate_task(64, 30, 3);
  SpikingNetOptions o;
  o.n_in = 20;
  o.n_hidden = 16;
  auto net = std::make_shared<SpikingNet>(o);
  auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.05));
  const auto dir = std::filesystem::temp_directory_path() / "brain_bptt_ckpt";
  std::filesystem::remove_all(dir);
  BPTTOptions bo;
  bo.epochs = 2;
  bo.batch_size = 16;
  bo.truncation = 10;  // three windows per sequence
  bo.grad_clip_norm = 1.0;
  bo.checkpoint_dir = dir.string();
  bo.progress = false;
  int64_t epochs_seen = 0;
  bo.on_epoch_end = [&](int64_t) { ++epochs_seen; };
  bo.regularizer = [net] { return 0.1 * (net->last_rate() - 0.05).pow(2); };
  BPTT trainer(net, opt, losses::cross_entropy_mean_over_time(), bo);
  const auto history = trainer.fit(x, y);
  EXPECT_EQ(epochs_seen, 2);
  EXPECT_TRUE(std::isfinite(history.back().loss));
  EXPECT_TRUE(std::filesystem::exists(dir / "model_1.pt"));
  EXPECT_TRUE(std::filesystem::exists(dir / "optimizer_1.pt"));
  // The checkpoint restores the parameters.
  auto copy = std::make_shared<SpikingNet>(o);
  torch::serialize::InputArchive archive;
  archive.load_from((dir / "model_1.pt").string());
  copy->load(archive);
  EXPECT_TRUE(torch::equal(copy->named_parameters()["readout.weight"], net->named_parameters()["readout.weight"]));
  std::filesystem::remove_all(dir);
}

// Training killed after epoch 2 of 4 and resumed from training.ckpt ends with the parameters
// and history of a training that never stopped (Adam's moments and the shuffling included).
TEST(BPTT, ResumedTrainingEqualsUninterruptedTraining) {
  const auto data = rate_task(64, 20, 5);  // not a structured binding: the lambda captures it
  const torch::Tensor& x = data.first;
  const torch::Tensor& y = data.second;
  SpikingNetOptions o;
  o.n_in = 20;
  o.n_hidden = 16;
  o.recurrent = true;
  o.seed = 3;
  auto train = [&](int64_t epochs, const std::filesystem::path& dir, const std::string& resume) {
    auto net = std::make_shared<SpikingNet>(o);
    auto opt = std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(1e-2));
    BPTTOptions bo;
    bo.epochs = epochs;
    bo.batch_size = 16;
    bo.seed = 9;
    bo.progress = false;
    bo.checkpoint_dir = dir.string();
    bo.resume_from = resume;
    BPTT trainer(net, opt, losses::cross_entropy_mean_over_time(), bo);
    auto history = trainer.fit(x, y);
    return std::make_pair(net, history);
  };
  const auto base = std::filesystem::temp_directory_path() / ("brain_bptt_resume_" + std::to_string(::getpid()));
  std::filesystem::remove_all(base);
  const auto [straight, straight_history] = train(4, base / "straight", "");
  train(2, base / "killed", "");  // stands for a run killed after its second epoch
  const auto [resumed, resumed_history] = train(4, base / "resumed", (base / "killed" / "training.ckpt").string());
  ASSERT_EQ(resumed_history.size(), 4u);
  for (size_t e = 0; e < 4; ++e) EXPECT_EQ(resumed_history[e].loss, straight_history[e].loss) << "epoch " << e;
  for (const auto& item : straight->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), resumed->named_parameters()[item.key()])) << item.key();
  }
  // A model of another shape does not load it.
  SpikingNetOptions other = o;
  other.n_hidden = 17;
  auto net = std::make_shared<SpikingNet>(other);
  auto opt = std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(1e-2));
  BPTTOptions bo;
  bo.epochs = 3;
  bo.progress = false;
  bo.resume_from = (base / "killed" / "training.ckpt").string();
  BPTT trainer(net, opt, losses::cross_entropy_mean_over_time(), bo);
  EXPECT_THROW(trainer.fit(x, y), brain::io::CheckpointError);
  std::filesystem::remove_all(base);
}

TEST(BPTT, RejectsMismatchedData) {
  SpikingNetOptions o;
  o.n_in = 20;
  auto net = std::make_shared<SpikingNet>(o);
  auto opt = std::make_shared<torch::optim::Adam>(net->parameters());
  BPTTOptions bo;
  bo.progress = false;
  BPTT trainer(net, opt, losses::cross_entropy_mean_over_time(), bo);
  EXPECT_THROW(trainer.fit(torch::zeros({4, 10, 20}), torch::zeros({5}, torch::kLong)), c10::Error);
  EXPECT_THROW(trainer.fit(torch::zeros({4, 20}), torch::zeros({4}, torch::kLong)), c10::Error);
  EXPECT_THROW(trainer.fit(torch::zeros({4, 10, 20}), torch::zeros({4, 2})), c10::Error);
}

// A readout on fixed reservoir states, trained by BPTT with Adam: the third arm of the
// Lorenz 5-step-ahead task (ridge and FORCE are in test_readout.cpp). Documented bound: MSE
// <= 1e-2 on standardized data after 300 epochs (1500 Adam steps).
class ReadoutOnStates : public SequenceModel {
 public:
  ReadoutOnStates(int64_t f, int64_t o) : linear_(register_module("linear", torch::nn::Linear(f, o))) {}
  void reset(int64_t) override {}
  at::Tensor forward(const at::Tensor& states) override { return linear_->forward(states); }

 private:
  torch::nn::Linear linear_;
};

TEST(LorenzESN, BpttOnTheReadoutReachesItsBound) {
  auto s = brain::data::lorenz(2505, 0.02);
  s = (s - s.narrow(0, 0, 2000).mean(0)) / s.narrow(0, 0, 2000).std(0);
  brain::ReservoirParams p;
  p.n_in = 3;
  p.size = 200;
  p.leak = 0.5;
  p.input_scale = 0.5;
  p.density = 0.1;
  p.seed = 7;
  brain::Reservoir esn(p);
  esn.reset_state(0);
  const auto states = esn.run(s.narrow(0, 0, 2500)).to(torch::kFloat);  // [2500, 200]
  const auto targets = s.narrow(0, 5, 2500).to(torch::kFloat);
  // Training: steps 100..1999 cut into 19 sequences of 100 steps; test: steps 2000..2499.
  const auto x = states.narrow(0, 100, 1900).reshape({19, 100, 200});
  const auto y = targets.narrow(0, 100, 1900).reshape({19, 100, 3});
  auto model = std::make_shared<ReadoutOnStates>(200, 3);
  auto opt = std::make_shared<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(1e-2));
  BPTTOptions bo;
  bo.epochs = 300;
  bo.batch_size = 4;
  bo.progress = false;
  BPTT trainer(model, opt, losses::mse(), bo);
  trainer.fit(x, y);
  const auto test = trainer.evaluate(states.narrow(0, 2000, 500).unsqueeze(0), targets.narrow(0, 2000, 500).unsqueeze(0));
  std::cout << "Lorenz 5-step ESN, readout by BPTT (Adam): test MSE " << test.loss << "\n";
  EXPECT_LE(test.loss, 1e-2);
}

}  // namespace
