#include <brain/train/datasets.h>

#include <array>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace brain::data {

at::Tensor lorenz(int64_t steps, double dt, int64_t burn_in, LorenzParams p) {
  TORCH_CHECK(steps >= 0 && burn_in >= 0, "lorenz: steps and burn_in must be >= 0");
  TORCH_CHECK(dt > 0, "lorenz: dt must be > 0, got ", dt);
  using V = std::array<double, 3>;
  // Scalar RK4 on doubles: the generic tensor integrators would cost ~100x more per step here.
  auto f = [&p](const V& y) {
    return V{p.sigma * (y[1] - y[0]), y[0] * (p.rho - y[2]) - y[1], y[0] * y[1] - p.beta * y[2]};
  };
  auto axpy = [](const V& y, double a, const V& k) { return V{y[0] + a * k[0], y[1] + a * k[1], y[2] + a * k[2]}; };
  auto rk4 = [&](const V& y) {
    const V k1 = f(y), k2 = f(axpy(y, dt / 2, k1)), k3 = f(axpy(y, dt / 2, k2)), k4 = f(axpy(y, dt, k3));
    V out;
    for (int i = 0; i < 3; ++i) out[i] = y[i] + dt / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
    return out;
  };
  V y{1.0, 1.0, 1.0};
  for (int64_t i = 0; i < burn_in; ++i) y = rk4(y);
  at::Tensor out = torch::empty({steps, 3}, at::kDouble);
  auto acc = out.accessor<double, 2>();
  for (int64_t i = 0; i < steps; ++i) {
    for (int k = 0; k < 3; ++k) acc[i][k] = y[static_cast<size_t>(k)];
    y = rk4(y);
  }
  return out;
}

EvidenceData evidence_accumulation(int64_t n_samples, uint64_t seed, const EvidenceOptions& o) {
  TORCH_CHECK(n_samples >= 0, "evidence_accumulation: n_samples must be >= 0, got ", n_samples);
  TORCH_CHECK(o.cues > 0 && o.cues % 2 == 1, "evidence_accumulation: cues must be odd and positive (no ties), got ",
              o.cues);
  TORCH_CHECK(o.cue_steps > 0 && o.gap_steps >= 0 && o.delay_steps >= 0 && o.recall_steps > 0 &&
                  o.channels_per_group > 0,
              "evidence_accumulation: cue_steps, recall_steps and channels_per_group must be > 0, gap_steps and "
              "delay_steps >= 0");
  TORCH_CHECK(o.cue_rate >= 0 && o.cue_rate <= 1 && o.noise_rate >= 0 && o.noise_rate <= 1 &&
                  o.majority_prob >= 0.5 && o.majority_prob <= 1,
              "evidence_accumulation: cue_rate and noise_rate must be in [0, 1], majority_prob in [0.5, 1]");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const int64_t period = o.cue_steps + o.gap_steps;
  const int64_t recall_start = o.cues * period + o.delay_steps;
  const int64_t steps = recall_start + o.recall_steps;
  const int64_t g = o.channels_per_group;
  // Which groups are on at each step: [N, T, 4].
  at::Tensor on = torch::zeros({n_samples, steps, 4});
  const at::Tensor majority = torch::randint(0, 2, {n_samples}, gen, torch::kLong);
  const at::Tensor with_majority = torch::rand({n_samples, o.cues}, gen) < o.majority_prob;
  // side 1 = right: the majority side, or the other one.
  const at::Tensor side = torch::where(with_majority, majority.unsqueeze(1), 1 - majority.unsqueeze(1));
  for (int64_t c = 0; c < o.cues; ++c) {
    const at::Tensor right = side.select(1, c).to(torch::kFloat).unsqueeze(1);  // [N, 1]
    at::Tensor window = on.narrow(1, c * period, o.cue_steps);
    window.select(2, 0).copy_((1 - right).expand({n_samples, o.cue_steps}));
    window.select(2, 1).copy_(right.expand({n_samples, o.cue_steps}));
  }
  on.narrow(1, recall_start, o.recall_steps).select(2, 2).fill_(1);
  const at::Tensor rate = (on * o.cue_rate).repeat_interleave(g, 2);  // [N, T, 4 g]
  rate.narrow(2, 3 * g, g).fill_(o.noise_rate);
  EvidenceData d;
  d.inputs = (torch::rand({n_samples, steps, 4 * g}, gen) < rate).to(torch::kFloat);
  const at::Tensor right_cues = side.sum(1);
  d.left_cues = o.cues - right_cues;
  d.labels = (right_cues * 2 > o.cues).to(torch::kLong);
  d.recall_start = recall_start;
  return d;
}

}  // namespace brain::data
