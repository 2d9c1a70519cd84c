#include <brain/models/reservoir.h>

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <brain/ops.h>

namespace brain {

Reservoir::Reservoir(ReservoirParams p, at::TensorOptions options)
    : DynamicalSystem("Reservoir"), p_(std::move(p)), options_(options) {
  TORCH_CHECK(p_.n_in > 0 && p_.size > 0, "Reservoir: n_in and size must be positive, got ", p_.n_in, " and ",
              p_.size);
  TORCH_CHECK(p_.spectral_radius >= 0, "Reservoir: spectral_radius must be >= 0, got ", p_.spectral_radius);
  TORCH_CHECK(p_.leak > 0 && p_.leak <= 1, "Reservoir: leak must be in (0, 1], got ", p_.leak);
  TORCH_CHECK(p_.density > 0 && p_.density <= 1, "Reservoir: density must be in (0, 1], got ", p_.density);
  TORCH_CHECK(p_.connectivity == "dense" || p_.connectivity == "jit",
              "Reservoir: connectivity must be \"dense\" or \"jit\", got \"", p_.connectivity, "\"");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(p_.seed));
  const auto cpu = options_.device(at::kCPU);
  w_in_ = register_parameter(
      "input_weight", ((torch::rand({p_.n_in, p_.size}, gen, cpu.dtype(at::kDouble)) * 2 - 1) * p_.input_scale).to(options_),
      false);
  bias_ = register_buffer("bias",
                          ((torch::rand({p_.size}, gen, cpu.dtype(at::kDouble)) * 2 - 1) * p_.bias_scale).to(options_));
  if (p_.connectivity == "dense") {
    at::Tensor a = torch::randn({p_.size, p_.size}, gen, cpu.dtype(at::kDouble));
    if (p_.density < 1) a = a * (torch::rand({p_.size, p_.size}, gen, cpu.dtype(at::kDouble)) < p_.density);
    const double radius = torch::linalg_eigvals(a).abs().max().item<double>();
    if (radius > 0) a = a * (p_.spectral_radius / radius);
    w_rec_ = register_buffer("recurrent_weight", a.to(options_));
  } else {
    const double std = p_.spectral_radius / std::sqrt(static_cast<double>(p_.size) * p_.density);
    jit_weight_ = register_buffer("jit_weight", torch::tensor({0.0, std}, options_));
  }
}

void Reservoir::reset_own_state(int64_t batch_size) {
  set_state("x", torch::zeros(state_shape(p_.size), options_.device(w_in_.device())));
  set_state("input", torch::zeros(state_shape(p_.n_in), options_.device(w_in_.device())));
}

void Reservoir::set_input(const at::Tensor& u) {
  TORCH_CHECK(has_state("input"), "Reservoir: set_input before reset_state (the input is a state)");
  const at::Tensor& current = state("input");
  TORCH_CHECK(u.dim() <= current.dim() && u.size(-1) == p_.n_in &&
                  (u.dim() < 2 || u.size(0) == 1 || u.size(0) == current.size(0)),
              "Reservoir: input must be [", p_.n_in, "] or broadcast to the state input ", current.sizes(), ", got ",
              u.sizes());
  assign_state("input", u.to(current.options()).expand(current.sizes()).contiguous());
}

at::Tensor Reservoir::recurrent(const at::Tensor& x) const {
  if (w_rec_.defined()) return x.matmul(w_rec_);
  return ops::jitc_matmul(x, jit_weight_, p_.density, p_.seed, {p_.size, p_.size}, "normal", /*transpose=*/true);
}

at::Tensor Reservoir::recurrent_matrix() const {
  if (w_rec_.defined()) return w_rec_;
  return ops::jitc_materialize(jit_weight_, p_.density, p_.seed, {p_.size, p_.size}, "normal");
}

at::Tensor Reservoir::step_state(const at::Tensor& x, const at::Tensor& u) const {
  at::Tensor drive = recurrent(x) + bias_;
  if (u.defined()) drive = drive + u.to(w_in_.scalar_type()).matmul(w_in_);
  const at::Tensor next = torch::tanh(drive);
  return p_.leak == 1.0 ? next : (1 - p_.leak) * x + p_.leak * next;
}

// Reads only states and parameters (never ctx.t or the host step): a recorded step replays.
void Reservoir::update(const Context&) { assign_state("x", step_state(state("x"), state("input"))); }

at::Tensor Reservoir::run(const at::Tensor& inputs) {
  TORCH_CHECK(inputs.dim() == 2 || inputs.dim() == 3, "Reservoir::run: inputs must be [T, n_in] or [T, B, n_in], got ",
              inputs.sizes());
  TORCH_CHECK(inputs.size(-1) == p_.n_in, "Reservoir::run: inputs must end in n_in = ", p_.n_in, ", got ",
              inputs.sizes());
  const int64_t batch = inputs.dim() == 3 ? inputs.size(1) : 0;
  if (!has_state("x") || batch_size() != batch) reset_state(batch);
  std::vector<at::Tensor> states;
  states.reserve(static_cast<size_t>(inputs.size(0)));
  at::Tensor x = state("x");
  for (int64_t t = 0; t < inputs.size(0); ++t) {
    x = step_state(x, inputs[t]);
    states.push_back(x);
  }
  assign_state("x", x);
  return torch::stack(states);
}

}  // namespace brain
