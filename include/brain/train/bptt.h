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
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/optimizer.h>

#include <brain/dist/dist.h>
#include <brain/export.h>
#include <brain/models/neurons.h>
#include <brain/models/synapses.h>
#include <brain/ops.h>

namespace brain::train {

// What BPTT trains: a module that maps an input sequence [T, B, ...] to outputs
// [T, B, n_out], carrying its state from one call to the next until reset.
class BRAIN_API SequenceModel : public torch::nn::Module {
 public:
  virtual void reset(int64_t batch_size) = 0;
  virtual at::Tensor forward(const at::Tensor& inputs) = 0;
  // Cuts the gradient history of the carried state (truncated BPTT).
  virtual void detach_state() {}
  // The carried state as tensors, and its restoration: what memory-bounded BPTT needs to
  // re-run a chunk of steps from where it started (see backward_recomputing). A model that
  // does not override them cannot be trained that way.
  virtual std::vector<at::Tensor> get_state() const;
  virtual void set_state(const std::vector<at::Tensor>& state);
  BRAIN_MOVES_FLOATING_TENSORS_ONLY
};

// Loss of outputs [T, B, n_out] against a batch of targets.
using LossFn = std::function<at::Tensor(const at::Tensor& outputs, const at::Tensor& targets)>;
namespace losses {
// Cross entropy of the time-averaged outputs (rate/count readout), targets [B] int64.
BRAIN_API LossFn cross_entropy_mean_over_time();
// Cross entropy of the last step's outputs, targets [B] int64.
BRAIN_API LossFn cross_entropy_last_step();
// Cross entropy of the outputs averaged over the last `steps` steps (a recall or decision
// period), targets [B] int64.
BRAIN_API LossFn cross_entropy_mean_over_last(int64_t steps);
// Mean squared error against per-step targets [T, B, n_out].
BRAIN_API LossFn mse();
}  // namespace losses

// A recurrent spiking network for BPTT: inputs [T, B, n_in] -> Linear -> LIF hidden layer
// (the library's LIF with its surrogate) with optional recurrence of the spikes -> Linear
// readout of the spikes at every step, [T, B, n_out].
struct SpikingNetOptions {
  int64_t n_in = 1, n_hidden = 64, n_out = 2;
  bool recurrent = false;
  // With recurrent: "dense" (a Linear map), "csr" (brain::event_csr_matmul over a
  // fixed-probability structure, one trainable weight per synapse) or "jit" (brain::
  // event_jitc_matmul, normal weights with trainable mean and std, never stored).
  std::string recurrence = "dense";
  double recurrent_prob = 0.1;     // csr, jit: connection probability
  int64_t recurrent_delay = 1;     // steps from a hidden spike to its recurrent input, >= 1
  double dt = 1.0;  // ms
  // Dimensionless LIF by default: rest and reset 0, threshold 1, tau 10 ms.
  LifParams lif{0.0, 0.0, 1.0, 10.0, 1.0, 0.0, {}, true, "exp_euler"};
  // The hidden layer through brain::ops::lif_sequence (one op over the window without
  // recurrence; with recurrence lif_dense_recurrent_sequence, lif_recurrent_sequence or
  // lif_jit_recurrent_sequence, one op over the window as well), which saves one tensor per
  // step for the backward; off, or with a refractory period, it steps the brain::LIF module.
  // Same spikes either way (on the CPU, bit for bit).
  bool fused = true;
  uint64_t seed = 0;
};
class BRAIN_API SpikingNet : public SequenceModel {
 public:
  explicit SpikingNet(SpikingNetOptions options);
  void reset(int64_t batch_size) override;
  at::Tensor forward(const at::Tensor& inputs) override;
  // forward with some parameters in place of the module's own, named as named_parameters()
  // names them ("input.weight", "recurrent.weights", "readout.bias"...), each of the replaced
  // one's shape: a functional call (torch.func.functional_call from Python). The network
  // computes with the given tensors, so gradients, and torch.func transforms mapping over
  // them (per-sample gradients, ensembles), reach them; its own parameters are not touched.
  at::Tensor forward_with(const at::Tensor& inputs, const std::map<std::string, at::Tensor>& parameters);
  void detach_state() override;
  // V, the step and the recurrent spike history (most recent first).
  std::vector<at::Tensor> get_state() const override;
  void set_state(const std::vector<at::Tensor>& state) override;
  // Mean firing probability per step over the last forward call (for rate regularisers).
  const at::Tensor& last_rate() const { return last_rate_; }
  const SpikingNetOptions& options() const { return o_; }
  // The sparse recurrent map of the hidden spikes (null for dense or no recurrence).
  const std::shared_ptr<Comm>& recurrent_comm() const { return recurrent_comm_; }

 private:
  bool use_fused() const;
  ops::LifSequenceOptions fused_options() const;
  at::Tensor hidden_step(const at::Tensor& current, const Context& ctx);
  // The parameter `name`: forward_with's replacement, or `own`.
  const at::Tensor& param(const char* name, const at::Tensor& own) const;
  at::Tensor readout(const at::Tensor& spikes) const;
  at::Tensor recurrent_current(const at::Tensor& delayed_spikes) const;
  SpikingNetOptions o_;
  const std::map<std::string, at::Tensor>* replacements_ = nullptr;  // during forward_with
  torch::nn::Linear input_{nullptr}, recurrent_dense_{nullptr}, readout_{nullptr};
  std::shared_ptr<Comm> recurrent_comm_;
  std::shared_ptr<LIF> lif_;
  int64_t step_ = 0;
  std::vector<at::Tensor> history_;  // recurrent_delay last spike tensors, most recent first
  at::Tensor last_rate_;
};

// One window's forward and backward with memory bounded by `chunk` steps instead of the
// window's length: a first pass without a graph keeps the model state at every chunk start
// and the outputs; the loss's gradient with respect to the outputs is then pushed back one
// chunk at a time, re-running each chunk from its saved state and carrying the state's
// gradient into the chunk before. Parameter gradients accumulate (equal to the whole-window
// backward up to summation order); memory is O(window / chunk) states + O(chunk) steps of
// activations. Returns the loss (without graph) and, when asked, the outputs [T, B, n_out];
// the model is left in its state after the window.
BRAIN_API at::Tensor backward_recomputing(SequenceModel& model, const at::Tensor& inputs,
                                          const std::function<at::Tensor(const at::Tensor&)>& loss_of_outputs,
                                          int64_t chunk, at::Tensor* outputs = nullptr);

struct BPTTOptions {
  int64_t epochs = 10;
  int64_t batch_size = 32;
  bool shuffle = true;
  uint64_t seed = 0;               // shuffling
  int64_t truncation = 0;          // steps per truncated-BPTT window; 0 = whole sequences
  // Memory-bounded BPTT: > 0 re-runs each window in chunks of this many steps in the backward
  // (backward_recomputing), so memory grows with window / chunk, not with the window. The
  // gradients are those of the plain backward; about one extra forward per step. A regularizer
  // on the model's activity cannot be split that way and is refused.
  int64_t recompute_chunk = 0;
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
  // Class scores [B, n_out] from outputs [T, B, n_out] for the accuracy; unset: the mean over
  // time. E.g. the mean over a recall period, to match cross_entropy_mean_over_last.
  std::function<at::Tensor(const at::Tensor&)> decision;
  // Data-parallel training (the C++ counterpart of torch's DistributedDataParallel): every
  // rank of `comm` calls fit() with the same data, options and model architecture. Rank 0's
  // parameters are copied to every rank first; each batch is cut into contiguous blocks, one
  // per rank (dist::block_of), each rank back-propagates its block with its loss weighted by
  // the block's share of the batch, and one all-reduce sums the gradients, so every rank
  // takes the step of the whole batch and the parameters stay equal. The training and
  // evaluation statistics are those of all the data, on every rank; rank 0 alone prints and
  // writes checkpoints (every rank can resume from them). A regularizer is averaged over the
  // ranks' blocks, weighted by their sizes. Null: one process.
  std::shared_ptr<dist::Collective> comm;
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
  // Loss and (for class targets) accuracy, without gradients. With options.comm, every rank
  // calls it with the same data, evaluates its block of the samples and gets the statistics
  // of all of them.
  EpochStats evaluate(const at::Tensor& inputs, const at::Tensor& targets);

 private:
  at::Tensor class_scores(const at::Tensor& outputs) const;
  // Data-parallel helpers (no-ops without options.comm).
  int rank() const { return o_.comm ? o_.comm->rank() : 0; }
  void check_same_on_every_rank(const at::Tensor& inputs, const at::Tensor& targets, int64_t first_epoch);
  void copy_parameters_from_rank0();
  void sum_gradients_over_ranks();
  void save_training_checkpoint(int64_t epoch, const at::Generator& gen, const std::vector<EpochStats>& history);
  // Restores model, optimizer, generators and history; returns the saved epoch.
  int64_t load_training_checkpoint(const std::string& path, at::Generator& gen, std::vector<EpochStats>& history);
  std::shared_ptr<SequenceModel> model_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  LossFn loss_;
  BPTTOptions o_;
};

}  // namespace brain::train
