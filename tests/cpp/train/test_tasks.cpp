// The evidence-accumulation reference task: the generator's structure, and a recurrent spiking
// network trained by BPTT that reports the side with more cues after a delay.
#include <brain/train/bptt.h>
#include <brain/train/datasets.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using namespace brain;

TEST(EvidenceAccumulation, InputsFollowTheCuesAndLabelsTheMajority) {
  data::EvidenceOptions o;
  o.cue_rate = 1.0;  // every channel of an active group fires: the structure is visible exactly
  o.noise_rate = 0.0;
  const auto d = data::evidence_accumulation(200, 3, o);
  const int64_t period = o.cue_steps + o.gap_steps, g = o.channels_per_group;
  ASSERT_EQ(d.recall_start, o.cues * period + o.delay_steps);
  ASSERT_EQ(d.inputs.sizes(), (std::vector<int64_t>{200, d.recall_start + o.recall_steps, 4 * g}));
  const auto group_on = d.inputs.view({200, -1, 4, g}).amax(3);  // [N, T, 4]
  // Left cues counted from the inputs: cue c occupies steps [c period, c period + cue_steps).
  const auto left_on = group_on.select(2, 0).view({200, -1}).narrow(1, 0, o.cues * period).view({200, o.cues, period});
  const auto right_on = group_on.select(2, 1).view({200, -1}).narrow(1, 0, o.cues * period).view({200, o.cues, period});
  EXPECT_TRUE(torch::equal(left_on.narrow(2, 0, 1).squeeze(2).sum(1).to(torch::kLong), d.left_cues));
  EXPECT_TRUE(torch::equal((left_on + right_on).narrow(2, 0, o.cue_steps), torch::ones({200, o.cues, o.cue_steps})));
  EXPECT_EQ((left_on + right_on).narrow(2, o.cue_steps, o.gap_steps).sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::equal(d.labels, (d.left_cues * 2 < o.cues).to(torch::kLong)));
  // Recall only in the recall period, cues never there.
  EXPECT_EQ(group_on.select(2, 2).narrow(1, 0, d.recall_start).sum().item<double>(), 0.0);
  EXPECT_EQ(group_on.select(2, 2).narrow(1, d.recall_start, o.recall_steps).mean().item<double>(), 1.0);
  EXPECT_EQ(group_on.narrow(1, o.cues * period, o.delay_steps + o.recall_steps).narrow(2, 0, 2).sum().item<double>(), 0.0);
  // Both classes, and samples where the minority side got cues too.
  const double right = d.labels.to(torch::kFloat).mean().item<double>();
  EXPECT_GT(right, 0.35);
  EXPECT_LT(right, 0.65);
  EXPECT_GT(((d.left_cues > 0) & (d.left_cues < o.cues)).sum().item<int64_t>(), 100);
  o.cues = 4;
  EXPECT_THROW(data::evidence_accumulation(10, 0, o), c10::Error);
}

TEST(EvidenceAccumulation, RecurrentSpikingNetworkLearnsIt) {
  const auto train = data::evidence_accumulation(768, 1);
  const auto test = data::evidence_accumulation(256, 2);
  const int64_t recall = train.inputs.size(1) - train.recall_start;
  train::SpikingNetOptions o;
  o.n_in = train.inputs.size(2);
  o.n_hidden = 128;
  o.n_out = 2;
  o.recurrent = true;
  o.lif.tau = 20.0;
  auto net = std::make_shared<train::SpikingNet>(o);
  auto opt = std::make_shared<torch::optim::Adam>(net->parameters(), torch::optim::AdamOptions(1e-2));
  train::BPTTOptions bo;
  bo.epochs = 10;
  bo.batch_size = 32;
  bo.progress = false;
  bo.decision = [recall](const at::Tensor& out) { return out.narrow(0, out.size(0) - recall, recall).mean(0); };
  train::BPTT trainer(net, opt, train::losses::cross_entropy_mean_over_last(recall), bo);
  const auto before = trainer.evaluate(test.inputs, test.labels);
  const auto history = trainer.fit(train.inputs, train.labels, test.inputs, test.labels);
  std::printf("evidence accumulation: test accuracy %.1f%% (before training %.1f%%)\n",
              100 * history.back().eval_accuracy, 100 * before.accuracy);
  EXPECT_GE(history.back().eval_accuracy, 0.9);
  EXPECT_LT(before.accuracy, 0.7);
}

}  // namespace
