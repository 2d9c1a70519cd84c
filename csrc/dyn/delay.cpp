#include <brain/dyn/delay.h>

#include <torch/torch.h>

namespace brain {

Delay::Delay(int64_t n, int64_t max_delay_steps, at::TensorOptions options)
    : DynamicalSystem("Delay"), n_(n), max_delay_(max_delay_steps), options_(options) {
  TORCH_CHECK(n >= 0, "Delay: size must be >= 0, got ", n);
  TORCH_CHECK(max_delay_steps >= 0, "Delay: max_delay_steps must be >= 0, got ", max_delay_steps);
}

void Delay::reset_own_state(int64_t batch_size) {
  std::vector<int64_t> shape{max_delay_ + 1};
  for (auto s : state_shape(n_)) shape.push_back(s);
  // Keep the device and dtype the module was moved to, if it was.
  const auto opts = has_state("history") ? state("history").options() : placed(options_);
  set_state("history", torch::zeros(shape, opts));
}

void Delay::reserve(int64_t max_delay_steps) {
  if (max_delay_steps <= max_delay_) return;
  if (has_state("history")) {
    const at::Tensor& history = state("history");
    // Construction time, not the simulation loop: one host read is fine here.
    TORCH_CHECK(!history.any().item<bool>(), "Delay: cannot grow a ring buffer of ", max_delay_,
                " steps to ", max_delay_steps, " once it holds values; add the readers with longer delays "
                "before the simulation starts");
    std::vector<int64_t> shape = history.sizes().vec();
    shape[0] = max_delay_steps + 1;
    set_state("history", torch::zeros(shape, history.options()));
  }
  max_delay_ = max_delay_steps;
}

SharedDelay shared_spike_delay(DynamicalSystem& source, int64_t n, int64_t delay_steps, at::TensorOptions options) {
  TORCH_CHECK(delay_steps >= 1, "shared_spike_delay: delay_steps must be >= 1, got ", delay_steps);
  // One buffer per stored dtype: float and bool spikes of different readers are stored alike,
  // but a float64 reader cannot share a float32 history.
  const std::string key = std::string("spike_delay/") + std::string(options.dtype().name());
  if (auto existing = std::dynamic_pointer_cast<Delay>(source.shared_module(key))) {
    TORCH_CHECK(existing->size() == n, "shared_spike_delay: the population's spike history holds ", existing->size(),
                " neurons, this reader expects ", n);
    existing->reserve(delay_steps);
    return {existing, false};
  }
  auto created = std::make_shared<Delay>(n, delay_steps, options);
  source.set_shared_module(key, created);
  return {created, true};
}

int64_t Delay::slot(int64_t step) const {
  const int64_t len = max_delay_ + 1;
  return ((step % len) + len) % len;
}

namespace {
// The ring slot of `step` ([1], on the clock's device) for a step being recorded for replay.
at::Tensor slot_on_device(const at::Tensor& clock, int64_t delay_steps, int64_t len) {
  return torch::remainder(clock - delay_steps, len).reshape({1});
}
}  // namespace

void Delay::push(const at::Tensor& value, int64_t step) {
  Context ctx;
  ctx.step = step;
  push(value, ctx);
}

void Delay::push(const at::Tensor& value, const Context& ctx) {
  const at::Tensor& history = state("history");
  TORCH_CHECK(value.sizes() == history.sizes().slice(1), "Delay.push: expected a value of shape ",
              history.sizes().slice(1), ", got ", value.sizes());
  const at::Tensor v = value.to(history.options());
  const bool replay = ctx.clock.defined();
  if (at::GradMode::is_enabled() && (v.requires_grad() || history.requires_grad())) {
    // Out of place, so earlier reads keep their autograd history (costs a copy of the buffer).
    const auto index = replay ? slot_on_device(ctx.clock, 0, max_delay_ + 1)
                              : torch::full({1}, slot(ctx.step), history.options().dtype(torch::kLong));
    set_state("history", history.index_copy(0, index, v.unsqueeze(0)));
  } else if (replay) {
    history.index_copy_(0, slot_on_device(ctx.clock, 0, max_delay_ + 1), v.unsqueeze(0));
  } else {
    history.select(0, slot(ctx.step)).copy_(v);
  }
}

at::Tensor Delay::read(int64_t delay_steps, int64_t step) const {
  Context ctx;
  ctx.step = step;
  return read(delay_steps, ctx);
}

at::Tensor Delay::read(int64_t delay_steps, const Context& ctx) const {
  TORCH_CHECK(delay_steps >= 0 && delay_steps <= max_delay_, "Delay.read: delay ", delay_steps,
              " steps is outside [0, ", max_delay_, "], the longest this buffer holds");
  const at::Tensor& history = state("history");
  if (ctx.clock.defined()) {
    return history.index_select(0, slot_on_device(ctx.clock, delay_steps, max_delay_ + 1)).squeeze(0);
  }
  return history.select(0, slot(ctx.step - delay_steps));
}

HeteroDelayCsr::HeteroDelayCsr(const at::Tensor& indptr, const at::Tensor& indices,
                               const at::Tensor& delays, int64_t n_pre, int64_t n_post,
                               int64_t max_delay_steps)
    : n_pre_(n_pre), n_post_(n_post), max_delay_(max_delay_steps) {
  TORCH_CHECK(indptr.dim() == 1 && indptr.size(0) == n_pre + 1, "HeteroDelayCsr: indptr must have n_pre + 1 = ",
              n_pre + 1, " entries, got ", indptr.sizes());
  TORCH_CHECK(delays.dim() == 1 && delays.size(0) == indices.size(0),
              "HeteroDelayCsr: delays must have one entry per synapse (", indices.size(0), "), got ",
              delays.sizes());
  if (delays.numel() > 0) {
    const auto lo = delays.min().item<int64_t>();
    const auto hi = delays.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi <= max_delay_steps, "HeteroDelayCsr: delays must lie in [0, ",
                max_delay_steps, "] steps, got [", lo, ", ", hi, "]");
  }
  const auto counts = (indptr.narrow(0, 1, n_pre) - indptr.narrow(0, 0, n_pre)).to(torch::kLong);
  pre_ = register_buffer("pre", torch::repeat_interleave(torch::arange(n_pre, counts.options()), counts));
  post_ = register_buffer("post", indices.to(torch::kLong));
  delays_ = register_buffer("delays", delays.to(torch::kLong));
}

at::Tensor HeteroDelayCsr::forward(const Delay& history, const at::Tensor& weights, int64_t step) const {
  Context ctx;
  ctx.step = step;
  return forward(history, weights, ctx);
}

at::Tensor HeteroDelayCsr::forward(const Delay& history, const at::Tensor& weights, const Context& ctx) const {
  TORCH_CHECK(history.size() == n_pre_, "HeteroDelayCsr: the delay buffer holds ", history.size(),
              " neurons, the projection has ", n_pre_, " presynaptic neurons");
  TORCH_CHECK(history.max_delay() >= max_delay_, "HeteroDelayCsr: the delay buffer holds ",
              history.max_delay(), " steps, the synapses need ", max_delay_);
  const at::Tensor& h = history.state("history");  // [D + 1, (B,) n_pre]
  const int64_t len = h.size(0);
  const at::Tensor slots = torch::remainder(ctx.step_value() - delays_, len);
  const at::Tensor flat = slots * n_pre_ + pre_;  // index into [D + 1, n_pre] flattened
  if (h.dim() == 2) {
    const at::Tensor values = h.reshape({-1}).index_select(0, flat);
    return torch::zeros({n_post_}, values.options()).index_add(0, post_, values * weights);
  }
  const at::Tensor hb = h.permute({1, 0, 2}).reshape({h.size(1), -1});  // [B, (D + 1) n_pre]
  const at::Tensor values = hb.index_select(1, flat);
  return torch::zeros({h.size(1), n_post_}, values.options()).index_add(1, post_, values * weights);
}

}  // namespace brain
