#include <brain/models/surrogate.h>

#include <cmath>

#include <torch/torch.h>

namespace brain {

namespace {

at::Tensor normal_pdf(const at::Tensor& x, double mu, double sigma) {
  return torch::exp(-(x - mu).square() / (2 * sigma * sigma)) / (std::sqrt(2 * M_PI) * sigma);
}

class SpikeFunction : public torch::autograd::Function<SpikeFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, Surrogate surrogate) {
    ctx->save_for_backward({x});
    ctx->saved_data["kind"] = static_cast<int64_t>(surrogate.kind);
    ctx->saved_data["alpha"] = surrogate.alpha;
    ctx->saved_data["beta"] = surrogate.beta;
    ctx->saved_data["sigma"] = surrogate.sigma;
    ctx->saved_data["h"] = surrogate.h;
    ctx->saved_data["s"] = surrogate.s;
    ctx->saved_data["scale"] = surrogate.scale;
    ctx->saved_data["width"] = surrogate.width;
    return (x > 0).to(x.scalar_type());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    Surrogate s;
    s.kind = static_cast<Surrogate::Kind>(ctx->saved_data["kind"].toInt());
    s.alpha = ctx->saved_data["alpha"].toDouble();
    s.beta = ctx->saved_data["beta"].toDouble();
    s.sigma = ctx->saved_data["sigma"].toDouble();
    s.h = ctx->saved_data["h"].toDouble();
    s.s = ctx->saved_data["s"].toDouble();
    s.scale = ctx->saved_data["scale"].toDouble();
    s.width = ctx->saved_data["width"].toDouble();
    const auto x = ctx->get_saved_variables()[0];
    return {grads[0] * surrogate_grad(x, s), at::Tensor()};
  }
};

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

at::Tensor spike_function(const at::Tensor& x, const Surrogate& surrogate) {
  return SpikeFunction::apply(x, surrogate);
}

}  // namespace brain
