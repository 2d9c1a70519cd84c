#include <brain/train/bptt.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <brain/io/checkpoint.h>
#include <brain/ops.h>

namespace brain::train {

namespace losses {

LossFn cross_entropy_mean_over_time() {
  return [](const at::Tensor& outputs, const at::Tensor& targets) {
    return torch::nn::functional::cross_entropy(outputs.mean(0), targets);
  };
}

LossFn cross_entropy_last_step() {
  return [](const at::Tensor& outputs, const at::Tensor& targets) {
    return torch::nn::functional::cross_entropy(outputs[-1], targets);
  };
}

LossFn cross_entropy_mean_over_last(int64_t steps) {
  TORCH_CHECK(steps > 0, "cross_entropy_mean_over_last: steps must be > 0, got ", steps);
  return [steps](const at::Tensor& outputs, const at::Tensor& targets) {
    const int64_t k = std::min(steps, outputs.size(0));
    return torch::nn::functional::cross_entropy(outputs.narrow(0, outputs.size(0) - k, k).mean(0), targets);
  };
}

LossFn mse() {
  return [](const at::Tensor& outputs, const at::Tensor& targets) {
    TORCH_CHECK(outputs.sizes() == targets.sizes(), "mse loss: outputs ", outputs.sizes(), " and targets ",
                targets.sizes(), " differ");
    return torch::mse_loss(outputs, targets);
  };
}

}  // namespace losses

std::vector<at::Tensor> SequenceModel::get_state() const {
  TORCH_CHECK(false, "this SequenceModel does not expose its state (get_state/set_state), so it cannot be ",
              "trained with recompute_chunk");
}

void SequenceModel::set_state(const std::vector<at::Tensor>&) {
  TORCH_CHECK(false, "this SequenceModel does not expose its state (get_state/set_state), so it cannot be ",
              "trained with recompute_chunk");
}

SpikingNet::SpikingNet(SpikingNetOptions options) : o_(std::move(options)) {
  TORCH_CHECK(o_.n_in > 0 && o_.n_hidden > 0 && o_.n_out > 0, "SpikingNet: sizes must be positive");
  TORCH_CHECK(o_.dt > 0, "SpikingNet: dt must be > 0");
  TORCH_CHECK(o_.recurrence == "dense" || o_.recurrence == "csr" || o_.recurrence == "jit",
              "SpikingNet: recurrence must be 'dense', 'csr' or 'jit', got '", o_.recurrence, "'");
  TORCH_CHECK(o_.recurrent_delay >= 1, "SpikingNet: recurrent_delay must be >= 1 step, got ", o_.recurrent_delay);
  TORCH_CHECK(o_.recurrence == "dense" || (o_.recurrent_prob > 0 && o_.recurrent_prob <= 1),
              "SpikingNet: recurrent_prob must be in (0, 1], got ", o_.recurrent_prob);
  torch::manual_seed(o_.seed);
  input_ = register_module("input", torch::nn::Linear(o_.n_in, o_.n_hidden));
  if (o_.recurrent) {
    const int64_t n = o_.n_hidden;
    // Sparse weights start with the variance of a dense Linear's default over the same fan-in.
    const double scale = 1.0 / std::sqrt(3.0 * std::max(1.0, o_.recurrent_prob * static_cast<double>(n)));
    if (o_.recurrence == "dense") {
      recurrent_dense_ = register_module("recurrent", torch::nn::Linear(torch::nn::LinearOptions(n, n).bias(false)));
    } else if (o_.recurrence == "csr") {
      const CsrMatrix conn = fixed_prob(n, n, o_.recurrent_prob, /*include_self=*/false, o_.seed + 1);
      at::Tensor w = torch::randn({conn.indices.numel()}) * scale;
      recurrent_comm_ = register_module("recurrent", std::make_shared<CsrComm>(conn, w.requires_grad_()));
    } else {
      at::Tensor w = torch::tensor({0.0, scale}, torch::kFloat);
      recurrent_comm_ = register_module(
          "recurrent", std::make_shared<JitComm>(n, n, o_.recurrent_prob, static_cast<int64_t>(o_.seed + 1),
                                                 w.requires_grad_(), "normal"));
    }
  }
  readout_ = register_module("readout", torch::nn::Linear(o_.n_hidden, o_.n_out));
  lif_ = register_module("lif", std::make_shared<LIF>(o_.n_hidden, o_.lif, at::kFloat));
}

bool SpikingNet::use_fused() const { return o_.fused && o_.lif.tau_ref <= 0; }

void SpikingNet::reset(int64_t batch_size) {
  TORCH_CHECK(batch_size > 0, "SpikingNet::reset: batch_size must be > 0");
  lif_->reset_state(batch_size);
  step_ = 0;
  history_.assign(static_cast<size_t>(o_.recurrent ? o_.recurrent_delay : 0), lif_->state("spike"));
}

// The LIF layer's constants for the fused ops.
ops::LifSequenceOptions SpikingNet::fused_options() const {
  ops::LifSequenceOptions lo;
  lo.v_rest = o_.lif.V_rest;
  lo.v_reset = o_.lif.V_reset;
  lo.v_th = o_.lif.V_th;
  lo.R = o_.lif.R;
  lo.tau = o_.lif.tau;
  lo.dt = o_.dt;
  lo.method = o_.lif.method;
  lo.detach_reset = o_.lif.detach_reset;
  lo.surrogate = o_.lif.surrogate.name();
  const Surrogate& sg = o_.lif.surrogate;
  lo.surrogate_params = {sg.alpha, sg.beta, sg.sigma, sg.h, sg.s, sg.scale, sg.width};
  return lo;
}

// One step of the hidden layer from its total input current; returns the spikes.
at::Tensor SpikingNet::hidden_step(const at::Tensor& current, const Context& ctx) {
  if (use_fused()) {
    auto [spikes, v_last] = ops::lif_sequence(current, lif_->state("V"), fused_options());
    lif_->assign_state("V", v_last);
    if (spikes.size(0) > 0) lif_->assign_state("spike", spikes[-1]);  // an empty window fires nothing
    return spikes;
  }
  lif_->assign_state("input", current);
  lif_->step(ctx);
  return lif_->state("spike");
}

at::Tensor SpikingNet::forward(const at::Tensor& inputs) {
  TORCH_CHECK(inputs.dim() == 3 && inputs.size(2) == o_.n_in, "SpikingNet: inputs must be [T, B, ", o_.n_in,
              "], got ", inputs.sizes());
  if (lif_->batch_size() != inputs.size(1)) reset(inputs.size(1));
  const int64_t steps = inputs.size(0);
  Context ctx;
  ctx.dt = o_.dt;
  ctx.training = is_training();
  // One matmul for the whole window's feed-forward input.
  const at::Tensor& input_weight = param("input.weight", input_->weight);
  const at::Tensor drive =
      torch::linear(inputs.to(input_weight.scalar_type()), input_weight, param("input.bias", input_->bias));
  if (!o_.recurrent && use_fused()) {
    // No recurrence: every step's input is known, so the whole window is one fused op.
    ctx.step = step_;
    const at::Tensor spikes = hidden_step(drive, ctx);
    step_ += steps;
    last_rate_ = steps > 0 ? spikes.mean() : torch::zeros({}, drive.options());
    return readout(spikes);
  }
  if (o_.recurrent && use_fused()) {
    // The whole window with its recurrence as one op: one autograd node instead of a dozen
    // per step, and on a GPU a few kernels per step instead of a launch-bound graph.
    const std::vector<at::Tensor> oldest_first(history_.rbegin(), history_.rend());
    const at::Tensor history = torch::stack(oldest_first).to(drive.scalar_type());
    at::Tensor spikes, v_last;
    if (recurrent_dense_) {
      std::tie(spikes, v_last) = ops::lif_dense_recurrent_sequence(drive, lif_->state("V"), history,
                                                                   param("recurrent.weight", recurrent_dense_->weight),
                                                                   fused_options());
    } else if (o_.recurrence == "csr") {
      const auto& csr = static_cast<const CsrComm&>(*recurrent_comm_);
      std::tie(spikes, v_last) = ops::lif_recurrent_sequence(drive, lif_->state("V"), history, csr.indptr(),
                                                             csr.indices(), param("recurrent.weights", csr.weights()),
                                                             fused_options());
    } else {
      const auto& jit = static_cast<const JitComm&>(*recurrent_comm_);
      std::tie(spikes, v_last) =
          ops::lif_jit_recurrent_sequence(drive, lif_->state("V"), history, param("recurrent.weight", jit.weight()),
                                          jit.prob(), jit.seed(), jit.dist(), fused_options());
    }
    lif_->assign_state("V", v_last);
    // The next window's history, most recent first: the last d steps of (history, spikes).
    // Copies, not views: a view would keep the whole window's spikes alive with the state,
    // e.g. once per chunk start in backward_recomputing.
    std::vector<at::Tensor> next;
    next.reserve(history_.size());
    for (int64_t k = 0; k < static_cast<int64_t>(history_.size()); ++k) {
      next.push_back(k < steps ? spikes[steps - 1 - k].clone() : history_[static_cast<size_t>(k - steps)]);
    }
    history_ = std::move(next);
    if (steps > 0) lif_->assign_state("spike", history_.front());
    step_ += steps;
    last_rate_ = steps > 0 ? spikes.mean() : torch::zeros({}, drive.options());
    return readout(spikes);
  }
  std::vector<at::Tensor> outputs;
  outputs.reserve(static_cast<size_t>(steps));
  at::Tensor rate_sum = torch::zeros({}, input_->weight.options());
  // unbind, not drive[t]: the backward of T separate selects would materialise a zero
  // [T, B, n] gradient per step, O(T^2) work and traffic.
  const std::vector<at::Tensor> drive_steps = drive.unbind(0);
  for (int64_t t = 0; t < steps; ++t) {
    at::Tensor current = drive_steps[static_cast<size_t>(t)];
    if (o_.recurrent) {
      const at::Tensor& delayed = history_.back();  // the spikes of recurrent_delay steps ago
      current = current + recurrent_current(delayed);
    }
    ctx.t = static_cast<double>(step_) * o_.dt;
    ctx.step = step_++;
    at::Tensor spikes = hidden_step(use_fused() ? current.unsqueeze(0) : current, ctx);
    if (use_fused()) spikes = spikes[0];
    if (o_.recurrent) {
      history_.pop_back();
      history_.insert(history_.begin(), spikes);
    }
    rate_sum = rate_sum + spikes.mean();
    outputs.push_back(readout(spikes));
  }
  last_rate_ = rate_sum / static_cast<double>(std::max<int64_t>(steps, 1));
  return steps > 0 ? torch::stack(outputs) : torch::zeros({0, inputs.size(1), o_.n_out}, drive.options());
}

at::Tensor SpikingNet::forward_with(const at::Tensor& inputs, const std::map<std::string, at::Tensor>& parameters) {
  const auto own = named_parameters(/*recurse=*/true);
  for (const auto& [name, tensor] : parameters) {
    const at::Tensor* mine = own.find(name);
    if (mine == nullptr) {
      std::string names;
      for (const auto& key : own.keys()) names += (names.empty() ? "" : ", ") + key;
      TORCH_CHECK(false, "SpikingNet::forward_with: no parameter '", name, "'; its parameters are ", names);
    }
    TORCH_CHECK(tensor.defined() && tensor.sizes() == mine->sizes(), "SpikingNet::forward_with: '", name,
                "' must have the shape of the parameter it replaces, ", mine->sizes(), ", got ",
                tensor.defined() ? tensor.sizes() : c10::IntArrayRef{});
  }
  replacements_ = &parameters;
  struct Restore {
    const std::map<std::string, at::Tensor>*& replacements;
    ~Restore() { replacements = nullptr; }
  } restore{replacements_};
  return forward(inputs);
}

const at::Tensor& SpikingNet::param(const char* name, const at::Tensor& own) const {
  if (replacements_ != nullptr) {
    const auto it = replacements_->find(name);
    if (it != replacements_->end()) return it->second;
  }
  return own;
}

at::Tensor SpikingNet::readout(const at::Tensor& spikes) const {
  return torch::linear(spikes, param("readout.weight", readout_->weight), param("readout.bias", readout_->bias));
}

// The module path's recurrent input: torch::nn::Linear's and the Comms' forward, with param().
at::Tensor SpikingNet::recurrent_current(const at::Tensor& delayed_spikes) const {
  if (recurrent_dense_) return torch::linear(delayed_spikes, param("recurrent.weight", recurrent_dense_->weight));
  if (o_.recurrence == "csr") {
    const auto& csr = static_cast<const CsrComm&>(*recurrent_comm_);
    return csr.forward_with(delayed_spikes, param("recurrent.weights", csr.weights()));
  }
  const auto& jit = static_cast<const JitComm&>(*recurrent_comm_);
  return jit.forward_with(delayed_spikes, param("recurrent.weight", jit.weight()));
}

void SpikingNet::detach_state() {
  for (const auto& name : {"V", "spike"}) lif_->assign_state(name, lif_->state(name).detach());
  for (auto& h : history_) h = h.detach();
}

std::vector<at::Tensor> SpikingNet::get_state() const {
  TORCH_CHECK(o_.lif.tau_ref <= 0, "SpikingNet::get_state: a refractory LIF layer's state is not exposed");
  std::vector<at::Tensor> state{lif_->state("V"), torch::tensor(step_, torch::kLong)};
  state.insert(state.end(), history_.begin(), history_.end());
  return state;
}

void SpikingNet::set_state(const std::vector<at::Tensor>& state) {
  TORCH_CHECK(state.size() == 2 + history_.size(), "SpikingNet::set_state: expected ", 2 + history_.size(),
              " tensors (V, step, ", history_.size(), " spike tensors), got ", state.size());
  TORCH_CHECK(state[0].sizes() == lif_->state("V").sizes(), "SpikingNet::set_state: V must be ",
              lif_->state("V").sizes(), ", got ", state[0].sizes());
  lif_->assign_state("V", state[0]);
  step_ = state[1].item<int64_t>();
  for (size_t i = 0; i < history_.size(); ++i) history_[i] = state[2 + i];
  lif_->assign_state("spike", history_.empty() ? torch::zeros_like(state[0]) : history_.front());
}

at::Tensor backward_recomputing(SequenceModel& model, const at::Tensor& inputs,
                                const std::function<at::Tensor(const at::Tensor&)>& loss_of_outputs, int64_t chunk,
                                at::Tensor* outputs) {
  TORCH_CHECK(chunk > 0, "backward_recomputing: chunk must be > 0 steps, got ", chunk);
  TORCH_CHECK(inputs.dim() >= 2, "backward_recomputing: inputs must be [T, B, ...], got ", inputs.sizes());
  const int64_t steps = inputs.size(0);
  std::vector<std::vector<at::Tensor>> starts;
  std::vector<at::Tensor> chunk_outputs;
  {
    torch::NoGradGuard no_grad;
    for (int64_t s = 0; s < steps; s += chunk) {
      starts.push_back(model.get_state());
      chunk_outputs.push_back(model.forward(inputs.narrow(0, s, std::min(chunk, steps - s))));
    }
  }
  const std::vector<at::Tensor> end_state = model.get_state();
  // d loss / d outputs, from the outputs alone.
  at::Tensor out = (chunk_outputs.empty() ? model.forward(inputs) : torch::cat(chunk_outputs)).detach().requires_grad_();
  at::Tensor loss = loss_of_outputs(out);
  TORCH_CHECK(loss.dim() == 0 || loss.numel() == 1, "backward_recomputing: the loss must be a scalar, got ",
              loss.sizes());
  if (loss.requires_grad()) {
    const at::Tensor grad_out = torch::autograd::grad({loss}, {out}, {}, /*retain_graph=*/false,
                                                      /*create_graph=*/false, /*allow_unused=*/true)[0];
    // The state's gradient flows from each chunk into the one before it.
    std::vector<at::Tensor> grad_state;
    for (int64_t c = static_cast<int64_t>(starts.size()) - 1; c >= 0; --c) {
      const int64_t s = c * chunk, w = std::min(chunk, steps - s);
      std::vector<at::Tensor> start;
      for (const at::Tensor& t : starts[static_cast<size_t>(c)]) {
        start.push_back(t.is_floating_point() ? t.detach().requires_grad_() : t);
      }
      model.set_state(start);
      const at::Tensor chunk_out = model.forward(inputs.narrow(0, s, w));
      std::vector<at::Tensor> roots{chunk_out}, grads{grad_out.defined() ? grad_out.narrow(0, s, w)
                                                                         : torch::zeros_like(chunk_out)};
      const std::vector<at::Tensor> chunk_end = model.get_state();
      for (size_t i = 0; i < grad_state.size(); ++i) {
        if (grad_state[i].defined() && chunk_end[i].requires_grad()) {
          roots.push_back(chunk_end[i]);
          grads.push_back(grad_state[i]);
        }
      }
      torch::autograd::backward(roots, grads);
      grad_state.assign(start.size(), at::Tensor());
      for (size_t i = 0; i < start.size(); ++i) {
        if (start[i].requires_grad()) grad_state[i] = start[i].grad();
      }
    }
  }
  model.set_state(end_state);
  if (outputs != nullptr) *outputs = out.detach();
  return loss.detach();
}

BPTT::BPTT(std::shared_ptr<SequenceModel> model, std::shared_ptr<torch::optim::Optimizer> optimizer, LossFn loss,
           BPTTOptions options)
    : model_(std::move(model)), optimizer_(std::move(optimizer)), loss_(std::move(loss)), o_(std::move(options)) {
  TORCH_CHECK(model_ && optimizer_ && loss_, "BPTT: model, optimizer and loss are required");
  TORCH_CHECK(o_.epochs >= 0 && o_.batch_size > 0 && o_.truncation >= 0, "BPTT: epochs >= 0, batch_size > 0 and ",
              "truncation >= 0 expected");
  TORCH_CHECK(o_.recompute_chunk >= 0, "BPTT: recompute_chunk must be >= 0 steps, got ", o_.recompute_chunk);
  TORCH_CHECK(o_.recompute_chunk == 0 || !o_.regularizer,
              "BPTT: a regularizer on the model's activity needs the whole window's graph; it cannot be combined ",
              "with recompute_chunk (memory-bounded BPTT)");
}

namespace {

// total += value, starting from the first value: running sums kept on the device.
void accumulate(at::Tensor& total, const at::Tensor& value) { total = total.defined() ? total + value : value; }

void check_data(const char* who, const at::Tensor& inputs, const at::Tensor& targets) {
  TORCH_CHECK(inputs.dim() >= 3, who, ": inputs must be [N, T, ...], got ", inputs.sizes());
  TORCH_CHECK(targets.dim() >= 1 && targets.size(0) == inputs.size(0), who,
              ": targets must have the same number of samples N = ", inputs.size(0), ", got ", targets.sizes());
}

bool is_classification(const at::Tensor& targets) {
  return targets.dim() == 1 && !targets.is_floating_point();
}

// [B, T, ...] sample-first -> [T, B, ...]; per-step targets likewise, class targets unchanged.
at::Tensor time_first(const at::Tensor& t) { return t.transpose(0, 1).contiguous(); }

}  // namespace

at::Tensor BPTT::class_scores(const at::Tensor& outputs) const {
  return o_.decision ? o_.decision(outputs) : outputs.mean(0);
}

EpochStats BPTT::evaluate(const at::Tensor& inputs, const at::Tensor& targets) {
  check_data("BPTT::evaluate", inputs, targets);
  torch::NoGradGuard no_grad;
  const bool was_training = model_->is_training();
  model_->eval();
  const bool classify = is_classification(targets);
  at::Tensor loss_total, correct_total;  // on the device, read once at the end (see fit)
  const int64_t n = inputs.size(0);
  // With several ranks, each evaluates its contiguous block of the samples.
  const dist::Block part = o_.comm ? dist::block_of(n, o_.comm->rank(), o_.comm->world_size()) : dist::Block{0, n};
  for (int64_t start = part.offset; start < part.offset + part.size; start += o_.batch_size) {
    const int64_t b = std::min(o_.batch_size, part.offset + part.size - start);
    const at::Tensor x = time_first(inputs.narrow(0, start, b));
    const at::Tensor y = classify ? targets.narrow(0, start, b) : time_first(targets.narrow(0, start, b));
    model_->reset(b);
    const at::Tensor out = model_->forward(x);
    accumulate(loss_total, loss_(out, y).to(torch::kFloat64) * static_cast<double>(b));
    if (classify) accumulate(correct_total, class_scores(out).argmax(1).eq(y).sum().to(torch::kFloat64));
  }
  model_->train(was_training);
  double loss_sum = loss_total.defined() ? loss_total.item<double>() : 0.0;
  double correct = correct_total.defined() ? correct_total.item<double>() : 0.0;
  if (o_.comm) {
    const at::Tensor total = o_.comm->all_reduce_sum(torch::tensor({loss_sum, correct}, torch::kFloat64));
    loss_sum = total[0].item<double>();
    correct = total[1].item<double>();
  }
  EpochStats s;
  s.loss = loss_sum / static_cast<double>(std::max<int64_t>(n, 1));
  s.accuracy = classify ? correct / static_cast<double>(std::max<int64_t>(n, 1)) : -1;
  return s;
}

namespace {

std::vector<at::Tensor> trainable(const torch::nn::Module& model) {
  std::vector<at::Tensor> out;
  for (const auto& p : model.parameters()) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}

// One flat CPU tensor of the given tensors (the collectives are on the CPU), and back.
at::Tensor flatten_to_cpu(const std::vector<at::Tensor>& parts) {
  std::vector<at::Tensor> flat;
  for (const auto& t : parts) flat.push_back(t.detach().to(torch::kCPU, torch::kFloat64).reshape(-1));
  return flat.empty() ? torch::zeros({0}, torch::kFloat64) : torch::cat(flat);
}

void unflatten_into(const at::Tensor& flat, std::vector<at::Tensor>& parts) {
  int64_t offset = 0;
  for (auto& t : parts) {
    t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

}  // namespace

void BPTT::check_same_on_every_rank(const at::Tensor& inputs, const at::Tensor& targets, int64_t first_epoch) {
  if (!o_.comm) return;
  const auto params = trainable(*model_);
  int64_t numel = 0;
  for (const auto& p : params) numel += p.numel();
  // What every rank must agree on, with the names an error shows.
  const std::vector<std::pair<const char*, double>> fields = {
      {"samples", static_cast<double>(inputs.size(0))},
      {"steps per sample", static_cast<double>(inputs.size(1))},
      {"input elements", static_cast<double>(inputs.numel())},
      {"target elements", static_cast<double>(targets.numel())},
      {"the sum of the inputs", inputs.to(torch::kFloat64).sum().item<double>()},
      {"the sum of the targets", targets.to(torch::kFloat64).sum().item<double>()},
      {"batch_size", static_cast<double>(o_.batch_size)},
      {"epochs", static_cast<double>(o_.epochs)},
      {"truncation", static_cast<double>(o_.truncation)},
      {"recompute_chunk", static_cast<double>(o_.recompute_chunk)},
      {"shuffle", static_cast<double>(o_.shuffle)},
      {"seed", static_cast<double>(o_.seed)},
      {"the first epoch (resume_from)", static_cast<double>(first_epoch)},
      {"trainable parameter tensors", static_cast<double>(params.size())},
      {"trainable parameter elements", static_cast<double>(numel)}};
  at::Tensor mine = torch::empty({static_cast<int64_t>(fields.size())}, torch::kFloat64);
  for (size_t i = 0; i < fields.size(); ++i) mine[static_cast<int64_t>(i)] = fields[i].second;
  const auto all = o_.comm->all_gather(mine);
  // Every rank sees every rank's values, so all of them refuse together instead of leaving
  // the others waiting in the next collective.
  for (size_t r = 1; r < all.size(); ++r) {
    for (size_t i = 0; i < fields.size(); ++i) {
      const double want = all[0][static_cast<int64_t>(i)].item<double>();
      const double got = all[r][static_cast<int64_t>(i)].item<double>();
      const bool same = got == want || (std::isnan(got) && std::isnan(want));
      TORCH_CHECK(same, "BPTT::fit (data-parallel): rank ", r, " has ", fields[i].first, " = ", got,
                  " where rank 0 has ", want, ". Every rank passes the same data, options and model: fit() ",
                  "splits each batch over the ranks itself");
    }
  }
}

void BPTT::copy_parameters_from_rank0() {
  if (!o_.comm) return;
  torch::NoGradGuard no_grad;
  auto params = trainable(*model_);
  at::Tensor flat = flatten_to_cpu(params);
  if (o_.comm->rank() != 0) flat.zero_();
  unflatten_into(o_.comm->all_reduce_sum(flat), params);
}

void BPTT::sum_gradients_over_ranks() {
  if (!o_.comm) return;
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (auto& p : trainable(*model_)) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  // One all-reduce for the whole model, summed in float64 so the order of the ranks' terms
  // hardly matters.
  unflatten_into(o_.comm->all_reduce_sum(flatten_to_cpu(grads)), grads);
}

std::vector<EpochStats> BPTT::fit(const at::Tensor& inputs, const at::Tensor& targets, const at::Tensor& eval_inputs,
                                  const at::Tensor& eval_targets) {
  check_data("BPTT::fit", inputs, targets);
  const bool classify = is_classification(targets);
  TORCH_CHECK(classify || targets.dim() >= 3, "BPTT::fit: targets must be class indices [N] (int64) or per-step "
              "values [N, T, n_out], got ", targets.sizes(), " ", targets.scalar_type());
  const int64_t n = inputs.size(0), steps = inputs.size(1);
  const int64_t window = o_.truncation > 0 ? o_.truncation : steps;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o_.seed);
  if (!o_.checkpoint_dir.empty() && rank() == 0) std::filesystem::create_directories(o_.checkpoint_dir);
  std::vector<EpochStats> history;
  int64_t first_epoch = 0;
  if (!o_.resume_from.empty()) first_epoch = load_training_checkpoint(o_.resume_from, gen, history) + 1;
  check_same_on_every_rank(inputs, targets, first_epoch);
  copy_parameters_from_rank0();
  const int world = o_.comm ? o_.comm->world_size() : 1;
  for (int64_t epoch = first_epoch; epoch < o_.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    model_->train();
    const at::Tensor order = o_.shuffle ? torch::randperm(n, gen, torch::kLong) : torch::arange(n, torch::kLong);
    // Sums kept on the loss's device and read once per epoch: an .item() per window would make
    // the host wait for the GPU every window.
    at::Tensor loss_total, correct_total;
    double loss_count = 0;
    for (int64_t start = 0; start < n; start += o_.batch_size) {
      const int64_t b = std::min(o_.batch_size, n - start);
      // This rank's block of the batch; its loss is weighted by the block's share, so the
      // gradients summed over the ranks are those of the whole batch's mean loss.
      const dist::Block part = dist::block_of(b, rank(), world);
      const double share = static_cast<double>(part.size) / static_cast<double>(b);
      const auto weighted = [share](const at::Tensor& loss) { return share == 1.0 ? loss : loss * share; };
      const at::Tensor idx = order.narrow(0, start + part.offset, part.size).to(inputs.device());
      const at::Tensor x = time_first(inputs.index_select(0, idx));
      const at::Tensor y_all = classify ? targets.index_select(0, idx) : time_first(targets.index_select(0, idx));
      if (part.size > 0) model_->reset(part.size);
      std::vector<at::Tensor> window_outputs;
      for (int64_t s = 0; s < steps; s += window) {
        const int64_t w = std::min(window, steps - s);
        const at::Tensor y = classify ? y_all : y_all.narrow(0, s, w);
        at::Tensor out;
        at::Tensor loss_value;  // float64, this rank's unweighted mean loss over its block
        optimizer_->zero_grad();
        // A rank whose block is empty (a batch smaller than the ranks) contributes zero
        // gradients but still takes part in the all-reduce and the step.
        if (part.size > 0 && o_.recompute_chunk > 0) {
          const auto loss_of = [&](const at::Tensor& outputs) { return weighted(loss_(outputs, y)); };
          loss_value = backward_recomputing(*model_, x.narrow(0, s, w), loss_of, o_.recompute_chunk, &out)
                           .detach()
                           .to(torch::kFloat64) /
                       share;
        } else if (part.size > 0) {
          out = model_->forward(x.narrow(0, s, w));
          at::Tensor loss = loss_(out, y);
          loss_value = loss.detach().to(torch::kFloat64);
          if (o_.regularizer) loss = loss + o_.regularizer();
          weighted(loss).backward();
        }
        sum_gradients_over_ranks();
        if (o_.grad_clip_norm > 0) torch::nn::utils::clip_grad_norm_(model_->parameters(), o_.grad_clip_norm);
        optimizer_->step();
        if (part.size > 0) model_->detach_state();
        if (part.size > 0) accumulate(loss_total, loss_value * static_cast<double>(part.size));
        loss_count += static_cast<double>(part.size);
        if (classify && part.size > 0) window_outputs.push_back(out.detach());
      }
      if (classify && part.size > 0) {
        accumulate(correct_total,
                   class_scores(torch::cat(window_outputs)).argmax(1).eq(y_all).sum().to(torch::kFloat64));
      }
    }
    double loss_sum = loss_total.defined() ? loss_total.item<double>() : 0.0;
    double correct = correct_total.defined() ? correct_total.item<double>() : 0.0;
    if (o_.comm) {
      const at::Tensor total =
          o_.comm->all_reduce_sum(torch::tensor({loss_sum, loss_count, correct}, torch::kFloat64));
      loss_sum = total[0].item<double>();
      loss_count = total[1].item<double>();
      correct = total[2].item<double>();
    }
    EpochStats st;
    st.epoch = epoch;
    st.loss = loss_sum / std::max(loss_count, 1.0);
    st.accuracy = classify ? correct / static_cast<double>(n) : -1;
    if (eval_inputs.defined() && eval_targets.defined()) {
      const auto ev = evaluate(eval_inputs, eval_targets);
      st.eval_loss = ev.loss;
      st.eval_accuracy = ev.accuracy;
    }
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    history.push_back(st);
    if (!o_.checkpoint_dir.empty() && rank() == 0) save_training_checkpoint(epoch, gen, history);
    if (o_.progress && rank() == 0) {
      std::printf("epoch %lld/%lld  loss %.4g", static_cast<long long>(epoch + 1), static_cast<long long>(o_.epochs),
                  st.loss);
      if (st.accuracy >= 0) std::printf("  acc %.1f%%", 100 * st.accuracy);
      if (st.eval_loss >= 0) std::printf("  eval loss %.4g", st.eval_loss);
      if (st.eval_accuracy >= 0) std::printf("  eval acc %.1f%%", 100 * st.eval_accuracy);
      std::printf("  (%.2f s)\n", st.seconds);
      std::fflush(stdout);
    }
    if (o_.on_epoch_end) o_.on_epoch_end(epoch);
  }
  return history;
}

namespace {

// One line per parameter: what a training checkpoint must agree on with the model.
std::vector<std::string> parameter_lines(const torch::nn::Module& model) {
  std::vector<std::string> lines;
  for (const auto& item : model.named_parameters()) {
    std::string shape;
    for (const int64_t d : item.value().sizes()) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    lines.push_back(item.key() + " " + c10::toString(item.value().scalar_type()) + " [" + shape + "]");
  }
  return lines;
}

std::string archive_bytes(const std::function<void(torch::serialize::OutputArchive&)>& save) {
  torch::serialize::OutputArchive archive;
  save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

at::Tensor bytes_tensor(const std::string& bytes) {
  at::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

// torch::save's format, written to a temporary and renamed, so a crash leaves no torn file.
void save_archive_atomically(const std::string& bytes, const std::filesystem::path& path) {
  const std::string tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    TORCH_CHECK(out.good(), "BPTT: cannot write '", tmp, "'");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

void BPTT::save_training_checkpoint(int64_t epoch, const at::Generator& gen, const std::vector<EpochStats>& history) {
  const auto base = std::filesystem::path(o_.checkpoint_dir);
  const std::string model = archive_bytes([&](auto& a) { model_->save(a); });
  const std::string optimizer = archive_bytes([&](auto& a) { optimizer_->save(a); });
  save_archive_atomically(model, base / ("model_" + std::to_string(epoch) + ".pt"));
  save_archive_atomically(optimizer, base / ("optimizer_" + std::to_string(epoch) + ".pt"));
  io::Checkpoint ck;
  nlohmann::json h = {{"format", "libbrain-bptt"},
                      {"version", 1},
                      {"epoch", epoch},
                      {"epochs", o_.epochs},
                      {"parameters", parameter_lines(*model_)}};
  nlohmann::json stats = nlohmann::json::array();
  for (const auto& st : history) {
    stats.push_back({st.epoch, st.loss, st.accuracy, st.eval_loss, st.eval_accuracy, st.seconds});
  }
  h["history"] = stats;
  ck.header = h.dump();
  ck.tensors.emplace_back("model", bytes_tensor(model));
  ck.tensors.emplace_back("optimizer", bytes_tensor(optimizer));
  ck.tensors.emplace_back("rng/shuffle", gen.get_state());
  ck.tensors.emplace_back("rng/cpu", at::detail::getDefaultCPUGenerator().get_state());
  io::write_checkpoint_file((base / "training.ckpt").string(), ck);
}

int64_t BPTT::load_training_checkpoint(const std::string& path, at::Generator& gen, std::vector<EpochStats>& history) {
  const io::Checkpoint ck = io::read_checkpoint_file(path);
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(ck.header);
    if (h.value("format", "") != "libbrain-bptt" || h.value("version", 0) != 1) {
      throw io::CheckpointError("checkpoint '" + path + "' is not a BPTT training checkpoint");
    }
    const auto saved = h.at("parameters").get<std::vector<std::string>>();
    const auto now = parameter_lines(*model_);
    if (saved != now) {
      size_t i = 0;
      while (i < saved.size() && i < now.size() && saved[i] == now[i]) ++i;
      throw io::CheckpointError("checkpoint '" + path + "' was made for another model: it has \"" +
                                (i < saved.size() ? saved[i] : "(nothing)") + "\" where the model has \"" +
                                (i < now.size() ? now[i] : "(nothing)") + "\"");
    }
  } catch (const nlohmann::json::exception&) {
    throw io::CheckpointError("checkpoint '" + path + "' has a malformed header");
  }
  auto load = [&](const char* name, const std::function<void(torch::serialize::InputArchive&)>& into) {
    const at::Tensor& bytes = ck.tensor(name);
    torch::serialize::InputArchive archive;
    try {
      archive.load_from(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel()));
      into(archive);
    } catch (const c10::Error& e) {
      throw io::CheckpointError("checkpoint '" + path + "': its " + name + " does not fit this one: " +
                                e.what_without_backtrace());
    }
  };
  load("model", [&](auto& a) { model_->load(a); });
  load("optimizer", [&](auto& a) { optimizer_->load(a); });
  gen.set_state(ck.tensor("rng/shuffle"));
  at::Generator cpu = at::detail::getDefaultCPUGenerator();
  cpu.set_state(ck.tensor("rng/cpu"));
  history.clear();
  for (const auto& row : h.at("history")) {
    EpochStats st;
    st.epoch = row.at(0).get<int64_t>();
    st.loss = row.at(1).get<double>();
    st.accuracy = row.at(2).get<double>();
    st.eval_loss = row.at(3).get<double>();
    st.eval_accuracy = row.at(4).get<double>();
    st.seconds = row.at(5).get<double>();
    history.push_back(st);
  }
  return h.at("epoch").get<int64_t>();
}

}  // namespace brain::train
