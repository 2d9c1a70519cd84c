#include <brain/dyn/integrators.h>

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

namespace brain::integrators {

namespace {

// y + sum_i c_i * k_i, term by term over the state's tensors.
State axpy(const State& y, std::initializer_list<std::pair<double, const State*>> terms) {
  State out;
  out.reserve(y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    at::Tensor acc = y[i];
    for (const auto& [c, k] : terms) {
      if (c != 0.0) acc = acc + c * (*k)[i];
    }
    out.push_back(acc);
  }
  return out;
}

State checked_call(const Derivative& f, const State& y, double t) {
  State d = f(y, t);
  TORCH_CHECK(d.size() == y.size(), "integrator: the derivative function returned ", d.size(),
              " tensors for a state of ", y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    TORCH_CHECK(d[i].sizes() == y[i].sizes(), "integrator: derivative ", i, " has shape ",
                d[i].sizes(), " but the state has ", y[i].sizes());
  }
  return d;
}

void check_dt(double dt) { TORCH_CHECK(dt > 0 && std::isfinite(dt), "integrator: dt must be positive and finite, got ", dt); }

}  // namespace

Method parse_method(const std::string& name) {
  if (name == "euler") return Method::Euler;
  if (name == "midpoint" || name == "rk2") return Method::Midpoint;
  if (name == "heun") return Method::Heun;
  if (name == "rk4") return Method::RK4;
  if (name == "exp_euler" || name == "exponential_euler") return Method::ExpEuler;
  TORCH_CHECK(false, "unknown integration method '", name,
              "'; expected euler, midpoint (rk2), heun, rk4 or exp_euler");
}

std::string method_name(Method method) {
  switch (method) {
    case Method::Euler: return "euler";
    case Method::Midpoint: return "midpoint";
    case Method::Heun: return "heun";
    case Method::RK4: return "rk4";
    case Method::ExpEuler: return "exp_euler";
  }
  return "?";
}

State euler(const Derivative& f, const State& y, double t, double dt) {
  check_dt(dt);
  const State k1 = checked_call(f, y, t);
  return axpy(y, {{dt, &k1}});
}

State midpoint(const Derivative& f, const State& y, double t, double dt) {
  check_dt(dt);
  const State k1 = checked_call(f, y, t);
  const State k2 = checked_call(f, axpy(y, {{dt / 2, &k1}}), t + dt / 2);
  return axpy(y, {{dt, &k2}});
}

State heun(const Derivative& f, const State& y, double t, double dt) {
  check_dt(dt);
  const State k1 = checked_call(f, y, t);
  const State k2 = checked_call(f, axpy(y, {{dt, &k1}}), t + dt);
  return axpy(y, {{dt / 2, &k1}, {dt / 2, &k2}});
}

State rk4(const Derivative& f, const State& y, double t, double dt) {
  check_dt(dt);
  const State k1 = checked_call(f, y, t);
  const State k2 = checked_call(f, axpy(y, {{dt / 2, &k1}}), t + dt / 2);
  const State k3 = checked_call(f, axpy(y, {{dt / 2, &k2}}), t + dt / 2);
  const State k4 = checked_call(f, axpy(y, {{dt, &k3}}), t + dt);
  return axpy(y, {{dt / 6, &k1}, {dt / 3, &k2}, {dt / 3, &k3}, {dt / 6, &k4}});
}

at::Tensor exp_euler_linear(const at::Tensor& y, const at::Tensor& a, const at::Tensor& b,
                            double dt) {
  check_dt(dt);
  // y(t+dt) = y e^{a dt} + b (e^{a dt} - 1) / a, with (e^{x} - 1)/a -> dt as a -> 0.
  const at::Tensor ad = a * dt;
  const at::Tensor phi = torch::where(ad.abs() < 1e-12, torch::full_like(ad, dt), torch::expm1(ad) / a);
  return y * torch::exp(ad) + b * phi;
}

State exp_euler(const Derivative& f, const State& y, double t, double dt) {
  check_dt(dt);
  // a_i = d f_i / d y_i, element-wise, by autograd. When gradients are being recorded the
  // slope is itself differentiated (create_graph), so BPTT sees the exact derivative of the
  // discrete step, including through a's dependence on y and on f's parameters.
  const bool track = at::GradMode::is_enabled();
  State probe;
  for (const auto& yi : y) {
    probe.push_back(track && yi.requires_grad() ? yi : yi.detach().requires_grad_(yi.is_floating_point()));
  }
  State slopes;
  State fp;
  {
    torch::AutoGradMode enable(true);
    fp = checked_call(f, probe, t);
    for (size_t i = 0; i < y.size(); ++i) {
      if (!fp[i].requires_grad()) {  // f_i does not depend on any state: a = 0
        slopes.push_back(torch::zeros_like(y[i]));
        continue;
      }
      auto grads = torch::autograd::grad({fp[i]}, {probe[i]}, {torch::ones_like(fp[i])},
                                         /*retain_graph=*/true, /*create_graph=*/track,
                                         /*allow_unused=*/true);
      slopes.push_back(grads[0].defined() ? grads[0] : torch::zeros_like(y[i]));
    }
  }
  bool same_inputs = true;
  for (size_t i = 0; i < y.size(); ++i) same_inputs = same_inputs && probe[i].is_same(y[i]);
  const State fy = same_inputs ? fp : checked_call(f, y, t);
  if (!track) {
    for (auto& s : slopes) s = s.detach();
  }
  State out;
  for (size_t i = 0; i < y.size(); ++i) {
    const at::Tensor ad = slopes[i] * dt;
    const at::Tensor phi = torch::where(ad.abs() < 1e-12, torch::full_like(ad, dt), torch::expm1(ad) / slopes[i]);
    out.push_back(y[i] + phi * (track ? fy[i] : fy[i].detach()));
  }
  return out;
}

State step(Method method, const Derivative& f, const State& y, double t, double dt) {
  switch (method) {
    case Method::Euler: return euler(f, y, t, dt);
    case Method::Midpoint: return midpoint(f, y, t, dt);
    case Method::Heun: return heun(f, y, t, dt);
    case Method::RK4: return rk4(f, y, t, dt);
    case Method::ExpEuler: return exp_euler(f, y, t, dt);
  }
  TORCH_CHECK(false, "integrator: unknown method");
}

// ---- Dormand-Prince 5(4) ------------------------------------------------------------------

AdaptiveResult dopri5(const Derivative& f, const State& y0, double t0,
                      const std::vector<double>& t_eval, const AdaptiveOptions& opt) {
  TORCH_CHECK(opt.rtol > 0 && opt.atol >= 0, "dopri5: rtol must be > 0 and atol >= 0");
  TORCH_CHECK(opt.max_step > 0, "dopri5: max_step must be positive");
  for (size_t i = 0; i < t_eval.size(); ++i) {
    TORCH_CHECK(t_eval[i] >= (i ? t_eval[i - 1] : t0), "dopri5: t_eval must be non-decreasing and >= t0 (entry ", i, ")");
  }
  // Butcher tableau (Dormand & Prince 1980); b are the 5th-order weights, e = b - b*.
  static const double c2 = 1. / 5, c3 = 3. / 10, c4 = 4. / 5, c5 = 8. / 9;
  static const double a21 = 1. / 5;
  static const double a31 = 3. / 40, a32 = 9. / 40;
  static const double a41 = 44. / 45, a42 = -56. / 15, a43 = 32. / 9;
  static const double a51 = 19372. / 6561, a52 = -25360. / 2187, a53 = 64448. / 6561, a54 = -212. / 729;
  static const double a61 = 9017. / 3168, a62 = -355. / 33, a63 = 46732. / 5247, a64 = 49. / 176, a65 = -5103. / 18656;
  static const double b1 = 35. / 384, b3 = 500. / 1113, b4 = 125. / 192, b5 = -2187. / 6784, b6 = 11. / 84;
  static const double e1 = 71. / 57600, e3 = -71. / 16695, e4 = 71. / 1920, e5 = -17253. / 339200, e6 = 22. / 525, e7 = -1. / 40;

  AdaptiveResult result;
  State y = y0;
  double t = t0;
  State k1 = checked_call(f, y, t);
  double h = opt.first_step;
  if (h <= 0) {
    // Hairer's starting step: h = 0.01 * |y| / |f| in the error norm.
    double ny = 0, nf = 0;
    int64_t count = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      const auto scale = opt.atol + opt.rtol * y[i].abs();
      ny += (y[i] / scale).square().sum().item<double>();
      nf += (k1[i] / scale).square().sum().item<double>();
      count += y[i].numel();
    }
    ny = std::sqrt(ny / std::max<int64_t>(count, 1));
    nf = std::sqrt(nf / std::max<int64_t>(count, 1));
    h = (ny < 1e-5 || nf < 1e-5) ? 1e-6 : 0.01 * ny / nf;
  }
  h = std::min(h, opt.max_step);

  for (double target : t_eval) {
    while (t < target) {
      TORCH_CHECK(result.accepted_steps + result.rejected_steps < opt.max_steps,
                  "dopri5: more than max_steps = ", opt.max_steps, " steps before t = ", target);
      const bool last = t + h >= target;
      const double hs = last ? target - t : h;
      const State k2 = checked_call(f, axpy(y, {{hs * a21, &k1}}), t + c2 * hs);
      const State k3 = checked_call(f, axpy(y, {{hs * a31, &k1}, {hs * a32, &k2}}), t + c3 * hs);
      const State k4 = checked_call(f, axpy(y, {{hs * a41, &k1}, {hs * a42, &k2}, {hs * a43, &k3}}), t + c4 * hs);
      const State k5 = checked_call(f, axpy(y, {{hs * a51, &k1}, {hs * a52, &k2}, {hs * a53, &k3}, {hs * a54, &k4}}), t + c5 * hs);
      const State k6 = checked_call(f, axpy(y, {{hs * a61, &k1}, {hs * a62, &k2}, {hs * a63, &k3}, {hs * a64, &k4}, {hs * a65, &k5}}), t + hs);
      const State y_new = axpy(y, {{hs * b1, &k1}, {hs * b3, &k3}, {hs * b4, &k4}, {hs * b5, &k5}, {hs * b6, &k6}});
      const State k7 = checked_call(f, y_new, t + hs);  // first-same-as-last
      double err2 = 0;
      int64_t count = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        const at::Tensor err = hs * (e1 * k1[i] + e3 * k3[i] + e4 * k4[i] + e5 * k5[i] + e6 * k6[i] + e7 * k7[i]);
        const at::Tensor scale = opt.atol + opt.rtol * torch::maximum(y[i].abs(), y_new[i].abs());
        err2 += (err / scale).square().sum().item<double>();
        count += y[i].numel();
      }
      const double err = std::sqrt(err2 / std::max<int64_t>(count, 1));
      TORCH_CHECK(std::isfinite(err), "dopri5: the solution became non-finite at t = ", t);
      const double factor = err == 0 ? 5.0 : std::clamp(0.9 * std::pow(err, -0.2), 0.2, 5.0);
      if (err <= 1.0) {
        t = last ? target : t + hs;
        y = y_new;
        k1 = k7;
        ++result.accepted_steps;
        if (!last) h = std::min(hs * factor, opt.max_step);
      } else {
        ++result.rejected_steps;
        h = hs * std::max(0.2, factor);
        TORCH_CHECK(h > 1e-14 * std::max(1.0, std::abs(t)), "dopri5: step size underflow at t = ", t);
      }
    }
    result.t.push_back(target);
    result.y.push_back(y);
  }
  return result;
}

// ---- SDE ----------------------------------------------------------------------------------

SdeMethod parse_sde_method(const std::string& name) {
  if (name == "euler_maruyama" || name == "em" || name == "euler") return SdeMethod::EulerMaruyama;
  if (name == "milstein") return SdeMethod::Milstein;
  TORCH_CHECK(false, "unknown SDE method '", name, "'; expected euler_maruyama or milstein");
}

State wiener_increments(const State& y, double dt, Noise noise, bool batched,
                        std::optional<at::Generator> generator) {
  State dW;
  const double sd = std::sqrt(dt);
  for (const auto& yi : y) {
    std::vector<int64_t> size;
    if (noise == Noise::Diagonal) {
      size = yi.sizes().vec();
    } else if (batched && yi.dim() >= 1) {
      size = {yi.size(0)};
    }
    dW.push_back(at::normal(0.0, sd, size, generator, yi.options()));
  }
  return dW;
}

State sde_step(SdeMethod method, const Derivative& f, const Derivative& g, const State& y,
               double t, double dt, Noise noise, std::optional<at::Generator> generator,
               const State* dW_in) {
  check_dt(dt);
  const bool batched = !y.empty() && y[0].dim() >= 2;
  const State dW = dW_in ? *dW_in : wiener_increments(y, dt, noise, batched, generator);
  TORCH_CHECK(dW.size() == y.size(), "sde_step: ", dW.size(), " Wiener increments for ", y.size(), " states");
  // Scalar noise on a batched state: one dW per batch row, broadcast over the rest.
  auto shaped = [&](const at::Tensor& d, const at::Tensor& yi) {
    if (noise == Noise::Scalar && d.dim() == 1 && yi.dim() >= 2) {
      std::vector<int64_t> view(yi.dim(), 1);
      view[0] = d.size(0);
      return d.view(view);
    }
    return d;
  };
  const State fy = checked_call(f, y, t);
  State gy;
  State dg;  // element-wise d g_i / d y_i for Milstein
  if (method == SdeMethod::Milstein) {
    State probe;
    for (const auto& yi : y) probe.push_back(yi.detach().requires_grad_(true));
    torch::AutoGradMode enable(true);
    const State gp = checked_call(g, probe, t);
    for (size_t i = 0; i < y.size(); ++i) {
      if (!gp[i].requires_grad()) {
        dg.push_back(torch::zeros_like(y[i]));
        continue;
      }
      auto grads = torch::autograd::grad({gp[i]}, {probe[i]}, {torch::ones_like(gp[i])}, true, false, true);
      dg.push_back(grads[0].defined() ? grads[0] : torch::zeros_like(y[i]));
    }
  }
  gy = checked_call(g, y, t);
  State out;
  for (size_t i = 0; i < y.size(); ++i) {
    const at::Tensor d = shaped(dW[i], y[i]);
    at::Tensor next = y[i] + fy[i] * dt + gy[i] * d;
    if (method == SdeMethod::Milstein) next = next + 0.5 * gy[i] * dg[i] * (d * d - dt);
    out.push_back(next);
  }
  return out;
}

}  // namespace brain::integrators
