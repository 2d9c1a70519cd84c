// Each surrogate's backward is the derivative of a smoothed step: checked against central
// finite differences of that smoothed forward, written out independently here (issue 8).
#include <cmath>
#include <functional>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <brain/models/surrogate.h>

namespace {

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

TEST(Surrogate, BackwardIsTheDerivativeOfASmoothedStep) {
  const double pi = std::acos(-1.0);
  struct Case {
    std::string name;
    std::function<double(double, const brain::Surrogate&)> smooth;  // a primitive of the surrogate
    std::vector<double> kinks;                                      // where the primitive is not C^2
  };
  const std::vector<Case> cases = {
      {"sigmoid", [](double x, const brain::Surrogate& s) { return 1 / (1 + std::exp(-s.alpha * x)); }, {}},
      {"arctan", [pi](double x, const brain::Surrogate& s) { return std::atan(pi / 2 * s.alpha * x) / pi + 0.5; }, {}},
      {"piecewise_quadratic",
       [](double x, const brain::Surrogate& s) {
         const double w = 1 / s.alpha;
         if (x <= -w) return 0.0;
         if (x >= w) return 1.0;
         return s.alpha * x - s.alpha * s.alpha * x * std::abs(x) / 2 + 0.5;
       },
       {0.0, -1.0, 1.0}},
      {"piecewise_exp",
       [](double x, const brain::Surrogate& s) {
         return x < 0 ? 0.5 * std::exp(s.alpha * x) : 1 - 0.5 * std::exp(-s.alpha * x);
       },
       {0.0}},
      {"soft_sign", [](double x, const brain::Surrogate& s) { return 0.5 * (s.alpha * x / (1 + s.alpha * std::abs(x)) + 1); }, {0.0}},
      {"erf", [](double x, const brain::Surrogate& s) { return 0.5 * (1 + std::erf(s.alpha * x)); }, {}},
      {"inv_square",
       [](double x, const brain::Surrogate& s) {
         return (x < 0 ? -1.0 : 1.0) * (1 - 1 / (s.alpha * std::abs(x) + 1)) / s.alpha;
       },
       {0.0}},
      {"gaussian", [](double x, const brain::Surrogate& s) { return s.alpha * normal_cdf(x / s.sigma); }, {}},
      {"multi_gaussian",
       [](double x, const brain::Surrogate& s) {
         const double s0 = s.sigma, wide = s.s * s0;
         return s.scale * ((1 + s.h) * normal_cdf(x / s0) - s.h * normal_cdf((x - s0) / wide) -
                           s.h * normal_cdf((x + s0) / wide));
       },
       {}},
      {"leaky_relu", [](double x, const brain::Surrogate& s) { return x >= 0 ? s.beta * x : s.alpha * x; }, {0.0}},
      {"relu_grad",
       [](double x, const brain::Surrogate& s) {
         const double w = s.width, c = std::max(-w, std::min(w, x));
         return s.alpha * (w * c - c * std::abs(c) / 2);
       },
       {0.0, -1.0, 1.0}},
  };
  for (const auto& c : cases) {
    const auto sur = brain::Surrogate::named(c.name);
    auto xs = torch::linspace(-3, 3, 1201, torch::kDouble);
    // Stay away from kinks (also at +-1/alpha and +-width, scaled below) where the
    // finite difference straddles two pieces.
    std::vector<double> kinks;
    for (double k : c.kinks) {
      kinks.push_back(c.name == "piecewise_quadratic" ? k / sur.alpha : (c.name == "relu_grad" ? k * sur.width : k));
    }
    auto keep = torch::ones({xs.size(0)}, torch::kBool);
    for (double k : kinks) keep &= (xs - k).abs() > 1e-3;
    xs = xs.masked_select(keep).requires_grad_();
    brain::spike_function(xs, sur).sum().backward();
    const auto grad = xs.grad();
    const auto x = xs.detach();
    const double h = 1e-6;
    for (int64_t i = 0; i < x.size(0); ++i) {
      const double xi = x[i].item<double>();
      const double fd = (c.smooth(xi + h, sur) - c.smooth(xi - h, sur)) / (2 * h);
      ASSERT_NEAR(grad[i].item<double>(), fd, 1e-5 * std::max(1.0, std::abs(fd))) << c.name << " at x = " << xi;
    }
  }
}

}  // namespace
