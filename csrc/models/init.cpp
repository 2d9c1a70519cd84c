#include <brain/models/init.h>

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace brain::init {

namespace {

at::Generator cpu_generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

std::pair<double, double> fans(at::IntArrayRef shape, const char* who) {
  TORCH_CHECK(shape.size() == 2, "init::", who, ": needs a [n_pre, n_post] shape, got ", shape);
  TORCH_CHECK(shape[0] > 0 && shape[1] > 0, "init::", who, ": sizes must be positive, got ", shape);
  return {static_cast<double>(shape[0]), static_cast<double>(shape[1])};
}

}  // namespace

at::Tensor constant(at::IntArrayRef shape, double value, at::TensorOptions options) {
  return torch::full(shape, value, options);
}

at::Tensor normal(at::IntArrayRef shape, double mean, double std, uint64_t seed, at::TensorOptions options) {
  TORCH_CHECK(std >= 0, "init::normal: std must be >= 0, got ", std);
  return at::normal(mean, std, shape, cpu_generator(seed), torch::kDouble).to(options);
}

at::Tensor uniform(at::IntArrayRef shape, double low, double high, uint64_t seed, at::TensorOptions options) {
  TORCH_CHECK(high >= low, "init::uniform: high (", high, ") must be >= low (", low, ")");
  return (at::rand(shape, cpu_generator(seed), torch::kDouble) * (high - low) + low).to(options);
}

at::Tensor truncated_normal(at::IntArrayRef shape, double mean, double std, double low, double high, uint64_t seed,
                            at::TensorOptions options) {
  TORCH_CHECK(std > 0, "init::truncated_normal: std must be positive, got ", std);
  TORCH_CHECK(high > low, "init::truncated_normal: high (", high, ") must be above low (", low, ")");
  auto cdf = [](double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); };
  const double a = cdf((low - mean) / std), b = cdf((high - mean) / std);
  TORCH_CHECK(b > a, "init::truncated_normal: [low, high] holds no probability mass for N(", mean, ", ", std, ")");
  const at::Tensor u = at::rand(shape, cpu_generator(seed), torch::kDouble) * (b - a) + a;
  const at::Tensor z = std::sqrt(2.0) * torch::erfinv(2 * u - 1);
  return (mean + std * z).clamp(low, high).to(options);
}

at::Tensor kaiming_normal(at::IntArrayRef shape, uint64_t seed, double gain, at::TensorOptions options) {
  const auto [fan_in, fan_out] = fans(shape, "kaiming_normal");
  return normal(shape, 0.0, gain / std::sqrt(fan_in), seed, options);
}

at::Tensor kaiming_uniform(at::IntArrayRef shape, uint64_t seed, double gain, at::TensorOptions options) {
  const auto [fan_in, fan_out] = fans(shape, "kaiming_uniform");
  const double bound = gain * std::sqrt(3.0 / fan_in);
  return uniform(shape, -bound, bound, seed, options);
}

at::Tensor xavier_normal(at::IntArrayRef shape, uint64_t seed, double gain, at::TensorOptions options) {
  const auto [fan_in, fan_out] = fans(shape, "xavier_normal");
  return normal(shape, 0.0, gain * std::sqrt(2.0 / (fan_in + fan_out)), seed, options);
}

at::Tensor xavier_uniform(at::IntArrayRef shape, uint64_t seed, double gain, at::TensorOptions options) {
  const auto [fan_in, fan_out] = fans(shape, "xavier_uniform");
  const double bound = gain * std::sqrt(6.0 / (fan_in + fan_out));
  return uniform(shape, -bound, bound, seed, options);
}

at::Tensor orthogonal(at::IntArrayRef shape, uint64_t seed, double gain, at::TensorOptions options) {
  fans(shape, "orthogonal");
  const int64_t rows = shape[0], cols = shape[1];
  // QR of a tall Gaussian matrix; fixing the signs by R's diagonal makes Q uniformly
  // distributed (Mezzadri 2007).
  at::Tensor g = at::normal(0.0, 1.0, {std::max(rows, cols), std::min(rows, cols)}, cpu_generator(seed), torch::kDouble);
  auto [q, r] = torch::linalg_qr(g);
  q = q * torch::sign(r.diagonal()).unsqueeze(0);
  if (rows < cols) q = q.t();
  return (gain * q).contiguous().to(options);
}

}  // namespace brain::init
