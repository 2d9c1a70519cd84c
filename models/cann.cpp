// The CANN reference network: a ring attractor under a stimulus protocol (config:
// models/cann.json).
#include <brain/models/networks.h>

#include <cmath>
#include <optional>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <brain/models/rate_models.h>

namespace brain {

namespace {

double wrap_angle(double z) { return z - 2 * M_PI * std::floor((z + M_PI) / (2 * M_PI)); }  // onto [-pi, pi)

// The stimulus position at time t, or nullopt while the stimulus is off.
std::optional<double> stimulus_position(const CannSpec& spec, double t) {
  if (t < spec.stim_on || t >= spec.stim_off) return std::nullopt;
  return wrap_angle(spec.z0 + spec.speed * (t - spec.stim_on));
}

// Adds the protocol's input bump to the CANN's input; its position is a function of ctx.t only
// (no state), so a replayed or resumed run sees the same stimulus.
class CannStimulus : public DynamicalSystem {
 public:
  CannStimulus(std::shared_ptr<CANN1D> cann, CannSpec spec)
      : DynamicalSystem("CannStimulus"), cann_(std::move(cann)), spec_(std::move(spec)) {}

  void update(const Context& ctx) override {
    if (ctx.clock.defined()) return update_on_clock(ctx);
    const auto z = stimulus_position(spec_, ctx.t);
    set_state("active", torch::full_like(state("active"), z ? 1.0 : 0.0));
    if (!z) return;
    set_state("position", torch::full_like(state("position"), *z));
    const at::Tensor bump = cann_->stimulus(torch::full({}, *z, torch::kDouble));
    cann_->assign_state("input_u", cann_->state("input_u") + bump);
  }

  // Replayed steps compute the time and the position on the device, with the host's IEEE
  // operations (stimulus_position), and switch by masks instead of returning early.
  bool replayable() const override { return true; }

 private:
  void update_on_clock(const Context& ctx) {
    const at::Tensor t = ctx.clock.to(torch::kDouble) * ctx.dt;
    const at::Tensor on = (t >= spec_.stim_on).logical_and(t < spec_.stim_off);
    const at::Tensor z = spec_.z0 + spec_.speed * (t - spec_.stim_on);
    const at::Tensor wrapped = z - 2 * M_PI * torch::floor((z + M_PI) / (2 * M_PI));
    const at::Tensor& active = state("active");
    set_state("active", torch::where(on, torch::ones_like(active), torch::zeros_like(active)));
    const at::Tensor& position = state("position");
    set_state("position", torch::where(on, wrapped.to(position.scalar_type()).expand(position.sizes()), position));
    const at::Tensor& input = cann_->state("input_u");
    cann_->assign_state("input_u", torch::where(on, input + cann_->stimulus(wrapped), input));
  }

 public:

 protected:
  void reset_own_state(int64_t) override {
    const auto opts = cann_->features().options();
    set_state("position", torch::full(state_shape(1), wrap_angle(spec_.z0), opts));
    set_state("active", torch::zeros(state_shape(1), opts));
  }

 private:
  std::shared_ptr<CANN1D> cann_;
  CannSpec spec_;
};

// Reads the bump out after the CANN's step: where it is, how far from the stimulus, how high.
class BumpReadout : public DynamicalSystem {
 public:
  BumpReadout(std::shared_ptr<CANN1D> cann, std::shared_ptr<CannStimulus> stimulus)
      : DynamicalSystem("BumpReadout"), cann_(std::move(cann)), stimulus_(std::move(stimulus)) {}

  void update(const Context&) override {
    const at::Tensor& u = cann_->state("u");
    const at::Tensor position = cann_->decode(u).unsqueeze(-1);
    set_state("position", position);
    set_state("error", cann_->ring_distance(position - stimulus_->state("position")));
    set_state("height", std::get<0>(cann_->rates(u).max(-1, /*keepdim=*/true)));
  }
  bool replayable() const override { return true; }

 protected:
  void reset_own_state(int64_t) override {
    const auto opts = cann_->features().options();
    set_state("position", torch::zeros(state_shape(1), opts));
    set_state("error", torch::zeros(state_shape(1), opts));
    set_state("height", torch::zeros(state_shape(1), opts));
  }

 private:
  std::shared_ptr<CANN1D> cann_;
  std::shared_ptr<CannStimulus> stimulus_;
};

// Initial u ~ U(0, init_noise) from the seed (drawn on the CPU: the same on every device).
class NoisyCANN : public CANN1D {
 public:
  NoisyCANN(int64_t n, CANN1DParams p, at::TensorOptions o, double noise, uint64_t seed)
      : CANN1D(n, p, o), noise_(noise), seed_(seed) {}

 protected:
  void reset_own_state(int64_t batch_size) override {
    CANN1D::reset_own_state(batch_size);
    if (noise_ <= 0) return;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_);
    const at::Tensor& u = state("u");
    set_state("u", (at::rand(u.sizes(), gen, torch::kDouble) * noise_).to(u.options()));
  }

 private:
  double noise_;
  uint64_t seed_;
};

}  // namespace

std::shared_ptr<DynSysGroup> build_cann_network(const CannSpec& spec, uint64_t seed, c10::Device device) {
  TORCH_CHECK(spec.size > 0, "CANN network: size must be positive, got ", spec.size);
  TORCH_CHECK(spec.stim_off >= spec.stim_on, "CANN network: stim_off must be >= stim_on");
  TORCH_CHECK(spec.init_noise >= 0, "CANN network: init_noise must be >= 0");
  TORCH_CHECK(std::isfinite(spec.z0) && std::isfinite(spec.speed), "CANN network: z0 and speed must be finite");
  TORCH_CHECK(spec.dtype == "float32" || spec.dtype == "float64", "CANN network: dtype must be float32 or float64, got '",
              spec.dtype, "'");
  const auto options = at::TensorOptions(spec.dtype == "float64" ? at::kDouble : at::kFloat).device(device);
  CANN1DParams p;
  p.tau = spec.tau, p.k = spec.k, p.a = spec.a, p.A = spec.A, p.J0 = spec.J0, p.method = spec.method;
  auto net = std::make_shared<DynSysGroup>("CANN");
  auto cann = std::make_shared<NoisyCANN>(spec.size, p, options, spec.init_noise, seed);
  auto stimulus = net->add("stimulus", std::make_shared<CannStimulus>(cann, spec));
  net->add("cann", std::static_pointer_cast<CANN1D>(cann));
  net->add("bump", std::make_shared<BumpReadout>(cann, stimulus));
  return net;
}

}  // namespace brain
