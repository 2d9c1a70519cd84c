#include <brain/models/surrogate.h>

#include <array>
#include <cmath>

#include <torch/torch.h>

namespace brain {

namespace {

at::Tensor normal_pdf(const at::Tensor& x, double mu, double sigma) {
  return torch::exp(-(x - mu).square() / (2 * sigma * sigma)) / (std::sqrt(2 * M_PI) * sigma);
}

}  // namespace

Surrogate Surrogate::named(const std::string& name) {
  Surrogate s;
  if (name == "sigmoid") { s.kind = Kind::Sigmoid; s.alpha = 4.0; }
  else if (name == "arctan") { s.kind = Kind::Arctan; s.alpha = 1.0; }
  else if (name == "piecewise_quadratic") { s.kind = Kind::PiecewiseQuadratic; s.alpha = 1.0; }
  else if (name == "piecewise_exp") { s.kind = Kind::PiecewiseExp; s.alpha = 1.0; }
  else if (name == "soft_sign") { s.kind = Kind::SoftSign; s.alpha = 1.0; }
  else if (name == "erf") { s.kind = Kind::Erf; s.alpha = 1.0; }
  else if (name == "inv_square" || name == "super_spike") { s.kind = Kind::InvSquare; s.alpha = 100.0; }
  else if (name == "gaussian") { s.kind = Kind::Gaussian; s.alpha = 1.0; }
  else if (name == "multi_gaussian") { s.kind = Kind::MultiGaussian; }
  else if (name == "leaky_relu") { s.kind = Kind::LeakyRelu; s.alpha = 0.1; s.beta = 1.0; }
  else if (name == "relu_grad") { s.kind = Kind::ReluGrad; s.alpha = 0.3; s.width = 1.0; }
  else {
    TORCH_CHECK(false, "unknown surrogate '", name, "'; expected sigmoid, arctan, piecewise_quadratic, "
                "piecewise_exp, soft_sign, erf, inv_square, gaussian, multi_gaussian, leaky_relu or relu_grad");
  }
  return s;
}

std::string Surrogate::name() const {
  switch (kind) {
    case Kind::Sigmoid: return "sigmoid";
    case Kind::Arctan: return "arctan";
    case Kind::PiecewiseQuadratic: return "piecewise_quadratic";
    case Kind::PiecewiseExp: return "piecewise_exp";
    case Kind::SoftSign: return "soft_sign";
    case Kind::Erf: return "erf";
    case Kind::InvSquare: return "inv_square";
    case Kind::Gaussian: return "gaussian";
    case Kind::MultiGaussian: return "multi_gaussian";
    case Kind::LeakyRelu: return "leaky_relu";
    case Kind::ReluGrad: return "relu_grad";
  }
  return "?";
}

at::Tensor surrogate_grad(const at::Tensor& x, const Surrogate& s) {
  const double a = s.alpha;
  switch (s.kind) {
    case Surrogate::Kind::Sigmoid: {
      const auto sg = torch::sigmoid(a * x);
      return a * sg * (1 - sg);
    }
    case Surrogate::Kind::Arctan: return (a / 2) / (1 + (M_PI / 2 * a * x).square());
    case Surrogate::Kind::PiecewiseQuadratic: return torch::clamp_min(a - a * a * x.abs(), 0.0);
    case Surrogate::Kind::PiecewiseExp: return (a / 2) * torch::exp(-a * x.abs());
    case Surrogate::Kind::SoftSign: return a / (2 * (1 + a * x.abs()).square());
    case Surrogate::Kind::Erf: return (a / std::sqrt(M_PI)) * torch::exp(-(a * x).square());
    case Surrogate::Kind::InvSquare: return 1 / (a * x.abs() + 1).square();
    case Surrogate::Kind::Gaussian: return a * normal_pdf(x, 0, s.sigma);
    case Surrogate::Kind::MultiGaussian:
      return s.scale * ((1 + s.h) * normal_pdf(x, 0, s.sigma) - s.h * normal_pdf(x, s.sigma, s.s * s.sigma) -
                        s.h * normal_pdf(x, -s.sigma, s.s * s.sigma));
    case Surrogate::Kind::LeakyRelu: return torch::where(x >= 0, torch::full_like(x, s.beta), torch::full_like(x, a));
    case Surrogate::Kind::ReluGrad: return a * torch::clamp_min(s.width - x.abs(), 0.0);
  }
  TORCH_CHECK(false, "surrogate_grad: unknown kind");
}

// The operator brain::spike (csrc/ops/spike.cpp), so that the modules' spikes run under
// torch.func and forward-mode AD as the fused ops do.
at::Tensor spike_function(const at::Tensor& x, const Surrogate& surrogate) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::spike", "")
                       .typed<at::Tensor(const at::Tensor&, c10::string_view, c10::ArrayRef<double>)>();
  const std::array<double, 7> params{surrogate.alpha, surrogate.beta, surrogate.sigma, surrogate.h,
                                     surrogate.s,     surrogate.scale, surrogate.width};
  return op.call(x, surrogate.name(), params);
}

}  // namespace brain
