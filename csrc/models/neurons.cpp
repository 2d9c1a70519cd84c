#include <brain/models/neurons.h>

#include <cmath>

#include <torch/torch.h>

namespace brain {

NeuronGroup::NeuronGroup(std::string name, int64_t n, at::TensorOptions options)
    : DynamicalSystem(std::move(name)), n_(n), options_(options) {
  TORCH_CHECK(n >= 0, this->name(), ": the number of neurons must be >= 0, got ", n);
  TORCH_CHECK(options.dtype() == at::kFloat || options.dtype() == at::kDouble || options.dtype() == at::kHalf ||
                  options.dtype() == at::kBFloat16,
              this->name(), ": states need a floating dtype, got ", options.dtype());
}

at::Tensor NeuronGroup::total_current(const at::Tensor& V) const {
  at::Tensor total = state("input");
  for (const auto& fn : currents_) total = total + fn(V);
  return total;
}

bool NeuronGroup::add_current_once(const void* key, CurrentFn fn) {
  for (const void* k : current_keys_) {
    if (k == key) return false;
  }
  current_keys_.push_back(key);
  add_current(std::move(fn));
  return true;
}

LIF::LIF(int64_t n, LifParams params, at::TensorOptions options)
    : NeuronGroup("LIF", n, options), p_(params) {
  TORCH_CHECK(p_.tau > 0, "LIF: tau must be positive (ms), got ", p_.tau);
  TORCH_CHECK(p_.V_th > p_.V_reset, "LIF: V_th (", p_.V_th, ") must be above V_reset (", p_.V_reset, ")");
  TORCH_CHECK(p_.tau_ref >= 0, "LIF: tau_ref must be >= 0 (ms), got ", p_.tau_ref);
  TORCH_CHECK(p_.R > 0, "LIF: R must be positive, got ", p_.R);
  TORCH_CHECK(p_.method == "exp_euler" || p_.method == "euler", "LIF: method must be exp_euler or euler, got '",
              p_.method, "'");
}

void LIF::reset_own_state(int64_t) {
  // Keep the device the module was moved to, if any.
  const auto opts = has_state("V") ? state("V").options() : placed(options_);
  const auto shape = state_shape(n_);
  set_state("V", v_init_ ? v_init_(shape).to(opts) : torch::full(shape, p_.V_rest, opts));
  set_state("spike", torch::zeros(shape, opts));
  set_state("input", torch::zeros(shape, opts));
  if (p_.tau_ref > 0) set_state("last_spike_step", torch::full(shape, -1'000'000'000, opts.dtype(torch::kLong)));
}

void LIF::update(const Context& ctx) {
  const at::Tensor& V = state("V");
  const at::Tensor I = total_current(V);
  at::Tensor v_new;
  if (p_.method == "euler") {
    v_new = V + (-(V - p_.V_rest) + p_.R * I) * (ctx.dt / p_.tau);
  } else {
    // Exact for I constant over the step: V -> V_inf + (V - V_inf) e^{-dt/tau}.
    const double decay = std::exp(-ctx.dt / p_.tau);
    v_new = (p_.V_rest + p_.R * I) + (V - (p_.V_rest + p_.R * I)) * decay;
  }
  at::Tensor refractory;
  if (p_.tau_ref > 0) {
    const int64_t ref_steps = std::llround(p_.tau_ref / ctx.dt);
    refractory = (ctx.step_value() - state("last_spike_step")) < ref_steps;
    v_new = torch::where(refractory, V, v_new);
  }
  const at::Tensor spike = spike_function((v_new - p_.V_th) / (p_.V_th - p_.V_reset), p_.surrogate);
  at::Tensor v_after;
  if (p_.detach_reset) {
    v_after = torch::where(spike > 0, torch::full_like(v_new, p_.V_reset), v_new);
  } else {
    v_after = v_new + (p_.V_reset - v_new) * spike;
  }
  if (p_.tau_ref > 0) {
    set_state("last_spike_step", torch::where(spike > 0, ctx.step_value(), state("last_spike_step")));
  }
  set_state("V", v_after);
  set_state("spike", spike);
  set_state("input", torch::zeros_like(state("input")));
}

}  // namespace brain
