// Training by backpropagation through time with surrogate gradients (SPEC section 5): any
// torch::optim optimizer, sequence losses, batching and shuffling, evaluation, truncated
// BPTT, gradient clipping, per-epoch checkpoints and a progress line per epoch.
//
// Data are sample-first: inputs [N, T, ...] and targets [N] (class indices, for the
// classification losses) or [N, T, n_out] (per-step regression targets). Batches are fed to
// the model time-first, [T, B, ...], as the simulator steps through time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/optimizer.h>

#include <brain/export.h>
#include <brain/models/neurons.h>

namespace brain::train {

// What BPTT trains: a module that maps an input sequence [T, B, ...] to outputs
// [T, B, n_out], carrying its state from one call to the next until reset.
class BRAIN_API SequenceModel : public torch::nn::Module {
 public:
  virtual void reset(int64_t batch_size) = 0;
  virtual at::Tensor forward(const at::Tensor& inputs) = 0;
  // Cuts the gradient history of the carried state (truncated BPTT).
  virtual void detach_state() {}
};

// Loss of outputs [T, B, n_out] against a batch of targets.
using LossFn = std::function<at::Tensor(const at::Tensor& outputs, const at::Tensor& targets)>;
namespace losses {
// Cross entropy of the time-averaged outputs (rate/count readout), targets [B] int64.
BRAIN_API LossFn cross_entropy_mean_over_time();
// Cross entropy of the last step's outputs, targets [B] int64.
BRAIN_API LossFn cross_entropy_last_step();
// Mean squared error against per-step targets [T, B, n_out].
BRAIN_API LossFn mse();
}  // namespace losses

// A recurrent spiking network for BPTT: inputs [T, B, n_in] -> Linear -> LIF hidden layer
// (the library's brain::LIF with its surrogate) with optional Linear recurrence of the spikes
// -> Linear readout of the spikes at every step, [T, B, n_out].
struct SpikingNetOptions {
  int64_t n_in = 1, n_hidden = 64, n_out = 2;
  bool recurrent = false;
  double dt = 1.0;  // ms
  // Dimensionless LIF by default: rest and reset 0, threshold 1, tau 10 ms.
  LifParams lif{0.0, 0.0, 1.0, 10.0, 1.0, 0.0, {}, true, "exp_euler"};
  uint64_t seed = 0;
};
class BRAIN_API SpikingNet : public SequenceModel {
 public:
  explicit SpikingNet(SpikingNetOptions options);
  void reset(int64_t batch_size) override;
  at::Tensor forward(const at::Tensor& inputs) override;
  void detach_state() override;
  // Mean firing probability per step over the last forward call (for rate regularisers).
  const at::Tensor& last_rate() const { return last_rate_; }

 private:
  SpikingNetOptions o_;
  torch::nn::Linear input_{nullptr}, recurrent_{nullptr}, readout_{nullptr};
  std::shared_ptr<LIF> lif_;
  int64_t step_ = 0;
  at::Tensor last_rate_;
};

struct BPTTOptions {
  int64_t epochs = 10;
  int64_t batch_size = 32;
  bool shuffle = true;
  uint64_t seed = 0;               // shuffling
  int64_t truncation = 0;          // steps per truncated-BPTT window; 0 = whole sequences
  double grad_clip_norm = 0.0;     // 0 = no clipping
  bool progress = true;            // one line per epoch on stdout
  // When set, after every epoch: model_<epoch>.pt and optimizer_<epoch>.pt (torch::load reads
  // them) and training.ckpt, the whole training state (model, optimizer, shuffling generator,
  // epoch, history) in one checksummed file, all written atomically.
  std::string checkpoint_dir;
  // A training.ckpt to continue from: fit() starts at the epoch after the saved one and its
  // parameters end up as those of a training that never stopped (CPU).
  std::string resume_from;
  // Added to the loss each window, e.g. a firing-rate penalty on the model.
  std::function<at::Tensor()> regularizer;
  // Called after each epoch with the epoch index (e.g. to step a learning-rate scheduler).
  std::function<void(int64_t)> on_epoch_end;
};

struct EpochStats {
  int64_t epoch = 0;
  double loss = 0;                 // mean training loss
  double accuracy = -1;            // training accuracy (classification), else -1
  double eval_loss = -1, eval_accuracy = -1;  // -1 without evaluation data
  double seconds = 0;
};

class BRAIN_API BPTT {
 public:
  BPTT(std::shared_ptr<SequenceModel> model, std::shared_ptr<torch::optim::Optimizer> optimizer, LossFn loss,
       BPTTOptions options = {});
  std::vector<EpochStats> fit(const at::Tensor& inputs, const at::Tensor& targets,
                              const at::Tensor& eval_inputs = {}, const at::Tensor& eval_targets = {});
  // Loss and (for class targets) accuracy, without gradients.
  EpochStats evaluate(const at::Tensor& inputs, const at::Tensor& targets);

 private:
  void save_training_checkpoint(int64_t epoch, const at::Generator& gen, const std::vector<EpochStats>& history);
  // Restores model, optimizer, generators and history; returns the saved epoch.
  int64_t load_training_checkpoint(const std::string& path, at::Generator& gen, std::vector<EpochStats>& history);
  std::shared_ptr<SequenceModel> model_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  LossFn loss_;
  BPTTOptions o_;
};

}  // namespace brain::train
