// Small generated data sets for the reference tasks and tests.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include <brain/export.h>

namespace brain::data {

// The Lorenz (1963) system dx/dt = sigma (y - x), dy/dt = x (rho - z) - y, dz/dt = x y - beta z,
// integrated by RK4 with step dt from (1, 1, 1) after burn_in discarded steps: [steps, 3] float64.
struct LorenzParams {
  double sigma = 10.0, rho = 28.0, beta = 8.0 / 3.0;
};
BRAIN_API at::Tensor lorenz(int64_t steps, double dt = 0.01, int64_t burn_in = 1000, LorenzParams p = {});

// Evidence accumulation (after Morcos & Harvey 2016 and Bellec et al. 2020): `cues` cues,
// each on the left or the right, then a delay, then a recall period in which the network must
// report the side that had more cues. Input channels in four groups of channels_per_group:
// left cues, right cues, recall, background noise; a group fires as Poisson spikes at cue_rate
// while it is on (noise at noise_rate throughout). Each cue is on the sample's majority side
// with probability majority_prob; the label is then the side the realised cues favour (cues
// is odd, so there is no tie). Steps: cues * (cue_steps + gap_steps) + delay_steps +
// recall_steps.
struct EvidenceOptions {
  int64_t cues = 7;
  int64_t cue_steps = 4;
  int64_t gap_steps = 4;
  int64_t delay_steps = 10;
  int64_t recall_steps = 10;
  int64_t channels_per_group = 10;
  double cue_rate = 0.4;
  double noise_rate = 0.02;
  double majority_prob = 0.75;
};
struct EvidenceData {
  at::Tensor inputs;  // [N, T, 4 * channels_per_group] float 0/1 spikes
  at::Tensor labels;  // [N] int64: 0 left, 1 right
  at::Tensor left_cues;  // [N] int64, cues on the left
  int64_t recall_start = 0;  // first step of the recall period
};
BRAIN_API EvidenceData evidence_accumulation(int64_t n_samples, uint64_t seed, const EvidenceOptions& options = {});

}  // namespace brain::data
