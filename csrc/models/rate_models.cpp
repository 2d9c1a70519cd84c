#include <brain/models/rate_models.h>

#include <cmath>

#include <torch/torch.h>

#include "csrc/models/rate_fields.h"

namespace brain {

namespace bi = integrators;

RateModel::RateModel(std::string name, int64_t n, std::vector<std::string> variables, std::string method,
                     at::TensorOptions options)
    : DynamicalSystem(std::move(name)), n_(n), variables_(std::move(variables)), method_(bi::parse_method(method)),
      options_(options) {
  TORCH_CHECK(n >= 0, this->name(), ": n must be >= 0, got ", n);
}

bi::State RateModel::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  bi::State y;
  for (size_t i = 0; i < variables_.size(); ++i) y.push_back(torch::zeros(shape, o));
  return y;
}

void RateModel::reset_own_state(int64_t) {
  const auto opts = has_state(variables_[0]) ? state(variables_[0]).options() : placed(options_);
  const auto shape = state_shape(n_);
  const bi::State y0 = initial_state(shape, opts);
  for (size_t i = 0; i < variables_.size(); ++i) {
    set_state(variables_[i], y0[i]);
    set_state("input_" + variables_[i], torch::zeros(shape, opts));
  }
}

void RateModel::update(const Context& ctx) {
  bi::State y;
  for (const auto& v : variables_) y.push_back(state(v));
  const bi::State next = bi::step(method_, [this](const bi::State& s, double t) { return derivative(s, t); }, y, ctx.t, ctx.dt);
  for (size_t i = 0; i < variables_.size(); ++i) {
    set_state(variables_[i], next[i]);
    set_state("input_" + variables_[i], torch::zeros_like(next[i]));
  }
}

FHN::FHN(int64_t n, FHNParams p, at::TensorOptions o) : RateModel("FHN", n, {"v", "w"}, p.method, o), p_(p) {
  TORCH_CHECK(p.tau > 0, "FHN: tau must be positive");
}
bi::State FHN::derivative(const bi::State& y, double) const {
  return fields::fitzhugh_nagumo(y[0], y[1], p_.a, p_.b, p_.tau, input(0), input(1));
}

WilsonCowan::WilsonCowan(int64_t n, WilsonCowanParams p, at::TensorOptions o)
    : RateModel("WilsonCowan", n, {"e", "i"}, p.method, o), p_(p) {
  TORCH_CHECK(p.tau_e > 0 && p.tau_i > 0, "WilsonCowan: time constants must be positive");
}
bi::State WilsonCowan::derivative(const bi::State& y, double) const {
  return fields::wilson_cowan(y[0], y[1], p_.tau_e, p_.a_e, p_.theta_e, p_.tau_i, p_.a_i, p_.theta_i, p_.w_ee,
                              p_.w_ei, p_.w_ie, p_.w_ii, p_.r, input(0), input(1));
}

QIFMeanField::QIFMeanField(int64_t n, QIFMeanFieldParams p, at::TensorOptions o)
    : RateModel("QIFMeanField", n, {"r", "v"}, p.method, o), p_(p) {
  TORCH_CHECK(p.tau > 0 && p.delta > 0, "QIFMeanField: tau and delta must be positive");
}
bi::State QIFMeanField::derivative(const bi::State& y, double) const {
  return fields::qif_mean_field(y[0], y[1], p_.tau, p_.eta, p_.delta, p_.J, input(0), input(1));
}
bi::State QIFMeanField::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  return {torch::full(shape, 0.01, o), torch::full(shape, -2.0, o)};
}

StuartLandau::StuartLandau(int64_t n, StuartLandauParams p, at::TensorOptions o)
    : RateModel("StuartLandau", n, {"x", "y"}, p.method, o), p_(p) {}
bi::State StuartLandau::derivative(const bi::State& y, double) const {
  return fields::stuart_landau(y[0], y[1], p_.a, p_.w, input(0), input(1));
}
bi::State StuartLandau::initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const {
  return {torch::full(shape, 0.1, o), torch::zeros(shape, o)};
}

ThresholdLinear::ThresholdLinear(int64_t n, ThresholdLinearParams p, at::TensorOptions o)
    : RateModel("ThresholdLinear", n, {"e", "i"}, p.method, o), p_(p) {
  TORCH_CHECK(p.tau_e > 0 && p.tau_i > 0, "ThresholdLinear: time constants must be positive");
}
bi::State ThresholdLinear::derivative(const bi::State& y, double) const {
  const auto& e = y[0];
  const auto& i = y[1];
  return {(-e + torch::relu(p_.w_ee * e - p_.w_ei * i + input(0))) / p_.tau_e,
          (-i + torch::relu(p_.w_ie * e - p_.w_ii * i + input(1))) / p_.tau_i};
}

CANN1D::CANN1D(int64_t n, CANN1DParams p, at::TensorOptions o) : RateModel("CANN1D", n, {"u"}, p.method, o), p_(p) {
  TORCH_CHECK(n > 0, "CANN1D: n must be positive, got ", n);
  TORCH_CHECK(p.tau > 0 && p.a > 0, "CANN1D: tau and a must be positive");
  TORCH_CHECK(p.k >= 0, "CANN1D: k must be >= 0, got ", p.k);
  TORCH_CHECK(p.z_max > p.z_min, "CANN1D: z_max must exceed z_min");
  // n features spaced by range / n: the ring closes without a duplicated point.
  const double range = p.z_max - p.z_min;
  x_ = register_buffer("features", torch::arange(n, o) * (range / n) + p.z_min);
  const at::Tensor d = ring_distance(x_.unsqueeze(1) - x_.unsqueeze(0));
  J_ = register_buffer("coupling", p.J0 * torch::exp(-0.5 * (d / p.a).square()) / (std::sqrt(2 * M_PI) * p.a));
}

at::Tensor CANN1D::ring_distance(const at::Tensor& d) const {
  const double range = p_.z_max - p_.z_min;
  const at::Tensor m = torch::remainder(d, range);
  return torch::where(m > 0.5 * range, m - range, m);
}

at::Tensor CANN1D::stimulus(const at::Tensor& positions) const {
  const at::Tensor z = positions.to(x_.options()).unsqueeze(-1);
  return p_.A * torch::exp(-0.25 * (ring_distance(x_ - z) / p_.a).square());
}

at::Tensor CANN1D::rates(const at::Tensor& u) const {
  const at::Tensor u2 = u.square();
  return u2 / (1.0 + p_.k * u2.sum(-1, /*keepdim=*/true));
}

at::Tensor CANN1D::decode(const at::Tensor& u) const {
  const double range = p_.z_max - p_.z_min;
  const at::Tensor r = rates(u.to(x_.scalar_type()));
  const at::Tensor angle = (x_ - p_.z_min) * (2 * M_PI / range);
  const at::Tensor c = (r * torch::cos(angle)).sum(-1), s = (r * torch::sin(angle)).sum(-1);
  return torch::remainder(torch::atan2(s, c), 2 * M_PI) * (range / (2 * M_PI)) + p_.z_min;
}

bi::State CANN1D::derivative(const bi::State& y, double) const {
  const at::Tensor& u = y[0];
  const at::Tensor recurrent = rates(u).matmul(J_);  // J symmetric: r J = (J r)^T
  return {(-u + recurrent + input(0)) / p_.tau};
}

}  // namespace brain
