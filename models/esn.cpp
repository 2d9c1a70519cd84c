// The echo-state reference network: Lorenz prediction by a reservoir and a ridge readout
// (config: models/esn.json).
#include <brain/models/networks.h>

#include <chrono>

#include <torch/torch.h>

#include <brain/models/reservoir.h>
#include <brain/train/datasets.h>
#include <brain/train/readout.h>

namespace brain {

namespace {

// RMSE over time divided by the target's std, per component, then averaged.
double nrmse(const at::Tensor& prediction, const at::Tensor& target) {
  const at::Tensor rmse = (prediction - target).square().mean(0).sqrt();
  return (rmse / target.std(0)).mean().item<double>();
}

}  // namespace

EsnResult run_esn_lorenz(const EsnSpec& spec, uint64_t seed, c10::Device device, int64_t record_units) {
  TORCH_CHECK(spec.size > 0, "ESN: size must be positive, got ", spec.size);
  TORCH_CHECK(spec.washout >= 0 && spec.train_steps > 0 && spec.test_steps > 1 && spec.horizon >= 1,
              "ESN: washout must be >= 0, train_steps > 0, test_steps > 1 and horizon >= 1");
  TORCH_CHECK(spec.lorenz_dt > 0, "ESN: lorenz_dt must be positive, got ", spec.lorenz_dt);
  TORCH_CHECK(record_units >= 0 && record_units <= spec.size, "ESN: record_units must lie in [0, ", spec.size, "], got ",
              record_units);
  TORCH_CHECK(spec.dtype == "float32" || spec.dtype == "float64", "ESN: dtype must be float32 or float64, got '",
              spec.dtype, "'");
  const auto options = at::TensorOptions(spec.dtype == "float64" ? at::kDouble : at::kFloat).device(device);
  const int64_t fit_end = spec.washout + spec.train_steps, total = fit_end + spec.test_steps;

  // Inputs u(0..total-1) and targets u(h..total-1+h), normalised by the training part.
  at::Tensor series = data::lorenz(total + spec.horizon, spec.lorenz_dt);
  const at::Tensor train = series.narrow(0, 0, fit_end);
  series = ((series - train.mean(0)) / train.std(0)).to(options);
  const at::Tensor inputs = series.narrow(0, 0, total);
  const at::Tensor targets = series.narrow(0, spec.horizon, total);

  ReservoirParams p;
  p.n_in = 3;
  p.size = spec.size;
  p.spectral_radius = spec.spectral_radius;
  p.leak = spec.leak;
  p.input_scale = spec.input_scale;
  p.bias_scale = spec.bias_scale;
  p.density = spec.density;
  p.connectivity = spec.connectivity;
  p.seed = static_cast<int64_t>(seed & 0x7fffffffffffffffULL);
  Reservoir esn(p, options);
  esn.reset_state(0);
  torch::NoGradGuard no_grad;
  auto t0 = std::chrono::steady_clock::now();
  const at::Tensor states = esn.run(inputs);  // [total, size]
  EsnResult r;
  r.reservoir_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  t0 = std::chrono::steady_clock::now();
  train::Readout readout(spec.size, 3, options);
  readout.fit_ridge(states.narrow(0, spec.washout, spec.train_steps), targets.narrow(0, spec.washout, spec.train_steps),
                    spec.ridge_alpha);
  r.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const at::Tensor train_pred = readout.forward(states.narrow(0, spec.washout, spec.train_steps));
  r.train_nrmse = nrmse(train_pred.to(torch::kDouble), targets.narrow(0, spec.washout, spec.train_steps).to(torch::kDouble));
  r.prediction = readout.forward(states.narrow(0, fit_end, spec.test_steps)).to(torch::kCPU, torch::kDouble);
  r.target = targets.narrow(0, fit_end, spec.test_steps).to(torch::kCPU, torch::kDouble);
  r.test_nrmse = nrmse(r.prediction, r.target);
  r.persistence_nrmse = nrmse(inputs.narrow(0, fit_end, spec.test_steps).to(torch::kCPU, torch::kDouble), r.target);
  r.states = states.narrow(1, 0, record_units).to(torch::kCPU);
  return r;
}

}  // namespace brain
