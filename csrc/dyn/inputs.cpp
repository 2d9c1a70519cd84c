#include <brain/dyn/inputs.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <brain/ops.h>

namespace brain::inputs {

int64_t num_steps(double duration, double dt) {
  TORCH_CHECK(dt > 0 && std::isfinite(dt), "inputs: dt must be positive, got ", dt);
  TORCH_CHECK(duration > 0 && std::isfinite(duration), "inputs: duration must be positive, got ", duration);
  return static_cast<int64_t>(std::llround(duration / dt));
}

at::Tensor section_input(const std::vector<at::Tensor>& values, const std::vector<double>& durations,
                         double dt) {
  TORCH_CHECK(!values.empty() && values.size() == durations.size(), "section_input: need one duration per value, got ",
              values.size(), " values and ", durations.size(), " durations");
  std::vector<at::Tensor> parts;
  for (size_t i = 0; i < values.size(); ++i) {
    TORCH_CHECK(values[i].sizes() == values[0].sizes(), "section_input: value ", i, " has shape ",
                values[i].sizes(), ", value 0 has ", values[0].sizes());
    const int64_t steps = num_steps(durations[i], dt);
    std::vector<int64_t> shape{steps};
    for (auto s : values[i].sizes()) shape.push_back(s);
    parts.push_back(values[i].unsqueeze(0).expand(shape));
  }
  return torch::cat(parts, 0).contiguous();
}

at::Tensor constant_input(const at::Tensor& value, double duration, double dt) {
  return section_input({value}, {duration}, dt);
}

namespace {
at::Tensor step_times(double duration, double dt) {
  return torch::arange(num_steps(duration, dt), torch::kDouble) * dt;
}
at::Tensor window(const at::Tensor& t, double t_start, double t_end) {
  return (t >= t_start).logical_and(t < t_end);
}
}  // namespace

at::Tensor ramp_input(double c_start, double c_end, double duration, double dt, double t_start, double t_end) {
  if (t_end < 0) t_end = duration;
  TORCH_CHECK(t_end > t_start, "ramp_input: t_end (", t_end, ") must be after t_start (", t_start, ")");
  const at::Tensor t = step_times(duration, dt);
  const at::Tensor ramp = c_start + (c_end - c_start) * (t - t_start) / (t_end - t_start);
  return torch::where(window(t, t_start, t_end), ramp, torch::zeros_like(ramp));
}

at::Tensor sinusoidal_input(double amplitude, double frequency_hz, double duration, double dt,
                            double t_start, double t_end, bool bias) {
  if (t_end < 0) t_end = duration;
  TORCH_CHECK(frequency_hz >= 0, "sinusoidal_input: frequency must be >= 0, got ", frequency_hz);
  const at::Tensor t = step_times(duration, dt);
  at::Tensor wave = amplitude * torch::sin(2 * M_PI * frequency_hz * (t - t_start) / 1000.0);
  if (bias) wave = wave + amplitude;
  return torch::where(window(t, t_start, t_end), wave, torch::zeros_like(wave));
}

at::Tensor ou_process(double mean, double sigma, double tau, double duration, double dt, int64_t n,
                      uint64_t seed) {
  TORCH_CHECK(tau > 0, "ou_process: tau must be positive, got ", tau);
  TORCH_CHECK(sigma >= 0, "ou_process: sigma must be >= 0, got ", sigma);
  const at::Tensor dW = wiener_process(duration, dt, n, seed);
  const int64_t steps = dW.size(0);
  at::Tensor out = torch::empty({steps, n}, torch::kDouble);
  // Exact discretisation of the OU process (no Euler bias for any dt).
  const double decay = std::exp(-dt / tau);
  const double noise = sigma * std::sqrt(1 - decay * decay) / std::sqrt(dt);
  at::Tensor x = torch::full({n}, mean, torch::kDouble);
  for (int64_t s = 0; s < steps; ++s) {
    out[s] = x;
    x = mean + (x - mean) * decay + noise * dW[s];
  }
  return out.to(torch::kFloat);
}

at::Tensor wiener_process(double duration, double dt, int64_t n, uint64_t seed) {
  TORCH_CHECK(n >= 0, "wiener_process: n must be >= 0, got ", n);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::normal(0.0, std::sqrt(dt), {num_steps(duration, dt), n}, gen, torch::kDouble);
}

}  // namespace brain::inputs

namespace brain {

namespace inputs {
uint64_t mix_seed(uint64_t seed, uint64_t k) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (k + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace inputs

PoissonGroup::PoissonGroup(int64_t n, at::Tensor rates_hz, uint64_t seed)
    : DynamicalSystem("PoissonGroup"), n_(n), seed_(seed) {
  TORCH_CHECK(n >= 0, "PoissonGroup: n must be >= 0, got ", n);
  TORCH_CHECK(rates_hz.dim() == 0 || (rates_hz.dim() == 1 && rates_hz.size(0) == n),
              "PoissonGroup: rates must be a scalar or have n = ", n, " entries, got ", rates_hz.sizes());
  TORCH_CHECK(at::isFloatingType(rates_hz.scalar_type()) || at::isIntegralType(rates_hz.scalar_type(), false),
              "PoissonGroup: rates must be real numbers (Hz), got ", rates_hz.scalar_type());
  // Checked once here, at construction, so the step never has to look at values.
  TORCH_CHECK(rates_hz.numel() == 0 || torch::isfinite(rates_hz).all().item<bool>(),
              "PoissonGroup: rates must be finite");
  TORCH_CHECK(rates_hz.numel() == 0 || (rates_hz >= 0).all().item<bool>(), "PoissonGroup: rates must be >= 0 Hz");
  rates_ = register_buffer("rates", rates_hz.to(torch::kFloat));
}

PoissonGroup::PoissonGroup(int64_t n, double rate_hz, uint64_t seed)
    : PoissonGroup(n, torch::tensor(rate_hz), seed) {}

void PoissonGroup::reset_own_state(int64_t) {
  set_state("spike", torch::zeros(state_shape(n_), rates_.options().dtype(torch::kBool)));
  set_state("rate_input", torch::zeros(state_shape(n_), rates_.options().dtype(torch::kFloat)));
}

void PoissonGroup::update(const Context& ctx) {
  // Drawn on the state's device by the counter-based op, keyed on (seed, step, neuron): the
  // same spikes on every device, no host copy per step, and nothing to carry through resume.
  const at::Tensor& extra = state("rate_input");
  set_state("spike", ctx.clock.defined() ? ops::poisson_spikes_at(rates_ + extra, ctx.dt, seed_, ctx.clock)
                                         : ops::poisson_spikes(rates_ + extra, ctx.dt, seed_, ctx.step));
  set_state("rate_input", torch::zeros_like(extra));
}

SpikeTimeGroup::SpikeTimeGroup(int64_t n, const std::vector<int64_t>& indices, const std::vector<double>& times_ms)
    : DynamicalSystem("SpikeTimeGroup"), n_(n), indices_(indices), times_(times_ms) {
  TORCH_CHECK(indices.size() == times_ms.size(), "SpikeTimeGroup: need one time per index, got ",
              indices.size(), " indices and ", times_ms.size(), " times");
  for (size_t k = 0; k < indices.size(); ++k) {
    TORCH_CHECK(indices[k] >= 0 && indices[k] < n, "SpikeTimeGroup: indices[", k, "] = ", indices[k],
                " is outside [0, ", n, ")");
    TORCH_CHECK(times_ms[k] >= 0 && std::isfinite(times_ms[k]), "SpikeTimeGroup: times[", k, "] = ",
                times_ms[k], " must be a finite time >= 0");
  }
}

void SpikeTimeGroup::reset_own_state(int64_t) {
  const auto opts = has_state("spike") ? state("spike").options() : at::TensorOptions(torch::kBool);
  set_state("spike", torch::zeros(state_shape(n_), opts));
}

void SpikeTimeGroup::sort_schedule(double dt) {
  if (schedule_dt_ == dt && sorted_steps_.size() == times_.size()) return;
  std::vector<int64_t> steps(times_.size());
  for (size_t k = 0; k < times_.size(); ++k) steps[k] = std::llround(times_[k] / dt);
  std::vector<size_t> order(times_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return steps[a] < steps[b]; });
  sorted_steps_.resize(order.size());
  sorted_indices_.resize(order.size());
  most_in_one_step_ = 0;
  for (size_t k = 0, run = 0; k < order.size(); ++k) {
    sorted_steps_[k] = steps[order[k]];
    sorted_indices_[k] = indices_[order[k]];
    run = (k > 0 && sorted_steps_[k] == sorted_steps_[k - 1]) ? run + 1 : 1;
    most_in_one_step_ = std::max<int64_t>(most_in_one_step_, static_cast<int64_t>(run));
  }
  schedule_dt_ = dt;
}

void SpikeTimeGroup::update(const Context& ctx) {
  const auto& spike = state("spike");
  sort_schedule(ctx.dt);
  if (ctx.clock.defined()) {
    if (!device_steps_.defined() || device_dt_ != ctx.dt || device_steps_.device() != spike.device()) {
      const auto on_device = at::TensorOptions(torch::kLong).device(spike.device());
      device_steps_ = torch::tensor(sorted_steps_, torch::kLong).to(on_device);
      device_indices_ = torch::tensor(sorted_indices_, torch::kLong).to(on_device);
      device_window_ = torch::arange(most_in_one_step_, on_device);
      device_dt_ = ctx.dt;
    }
    if (sorted_steps_.empty()) {
      set_state("spike", torch::zeros_like(spike));
      return;
    }
    // The entries of this step are the window after the first one not before the clock; those
    // past the schedule's end or of a later step count for nothing.
    const int64_t last = static_cast<int64_t>(sorted_steps_.size()) - 1;
    const at::Tensor first = torch::searchsorted(device_steps_, ctx.clock.reshape({1}).to(torch::kLong));
    const at::Tensor at = (first + device_window_).clamp_max(last);
    const at::Tensor due = device_steps_.index_select(0, at).eq(ctx.clock).to(torch::kLong);
    // A neuron may be scheduled twice in one step: count, then threshold (no racing writes).
    const at::Tensor firing =
        torch::zeros({n_}, due.options()).index_add_(0, device_indices_.index_select(0, at), due) > 0;
    set_state("spike", firing.to(spike.scalar_type()).expand(spike.sizes()).clone());
    return;
  }
  // On the host, so finding this step's spikes needs no device sync.
  const auto [begin, end] = std::equal_range(sorted_steps_.begin(), sorted_steps_.end(), ctx.step);
  at::Tensor next = torch::zeros_like(spike);
  if (begin != end) {
    const auto from = sorted_indices_.begin() + (begin - sorted_steps_.begin());
    const std::vector<int64_t> firing(from, from + (end - begin));
    const auto idx = torch::tensor(firing, torch::kLong).to(spike.device(), /*non_blocking=*/true);
    next.index_fill_(-1, idx, true);
  }
  set_state("spike", next);
}

InputSequence::InputSequence(at::Tensor values) : DynamicalSystem("InputSequence") {
  TORCH_CHECK(values.dim() >= 1 && values.size(0) > 0, "InputSequence: values must be [T, ...] with T > 0, got ",
              values.sizes());
  values_ = register_buffer("values", values);
}

void InputSequence::reset_own_state(int64_t batch_size) {
  at::Tensor first = values_[0];
  if (batch_size > 0) first = first.unsqueeze(0).expand([&] {
    std::vector<int64_t> s{batch_size};
    for (auto d : first.sizes()) s.push_back(d);
    return s;
  }());
  set_state("value", first.clone());
}

void InputSequence::update(const Context& ctx) {
  at::Tensor v;
  if (ctx.clock.defined()) {
    const at::Tensor row = ctx.clock.clamp_max(values_.size(0) - 1).reshape({1});
    v = values_.index_select(0, row).squeeze(0);
  } else {
    v = values_[std::min<int64_t>(ctx.step, values_.size(0) - 1)];
  }
  if (batch_size() > 0) v = v.unsqueeze(0).expand(state("value").sizes());
  set_state("value", v);
}

}  // namespace brain
