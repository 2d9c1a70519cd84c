// Numerical integrators over tensors, usable on any user derivative function (SPEC section 3).
//
// A state is a list of tensors y = {y_0, y_1, ...} (e.g. {V, w}); f(y, t) returns their time
// derivatives in the same order and shapes. Times and dt share the user's unit (the
// library's models use milliseconds).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <brain/export.h>

namespace brain::integrators {

using State = std::vector<at::Tensor>;
using Derivative = std::function<State(const State& y, double t)>;

enum class Method {
  Euler,     // order 1
  Midpoint,  // explicit midpoint, "rk2", order 2
  Heun,      // Heun's trapezoidal RK2, order 2
  RK4,       // classical Runge-Kutta, order 4
  ExpEuler,  // exponential Euler: exact for linear decay, the default for built-in models;
             // order 1 in general, 2 for autonomous element-wise equations
};

// "euler", "midpoint" (or "rk2"), "heun", "rk4", "exp_euler" (or "exponential_euler").
BRAIN_API Method parse_method(const std::string& name);
BRAIN_API std::string method_name(Method method);

// One step of y' = f(y, t) from t to t + dt.
BRAIN_API State step(Method method, const Derivative& f, const State& y, double t, double dt);

BRAIN_API State euler(const Derivative& f, const State& y, double t, double dt);
BRAIN_API State midpoint(const Derivative& f, const State& y, double t, double dt);
BRAIN_API State heun(const Derivative& f, const State& y, double t, double dt);
BRAIN_API State rk4(const Derivative& f, const State& y, double t, double dt);

// Exponential Euler for element-wise systems (y_i' depends on y_i and on other variables,
// not on other elements of y_i): with a = d(f_i)/d(y_i) (taken by autograd, element by
// element) y_i <- y_i + (exp(a dt) - 1) / a * f_i(y). Exact when f_i is linear in y_i.
BRAIN_API State exp_euler(const Derivative& f, const State& y, double t, double dt);

// The closed form for y' = a * y + b with a, b constant over the step: exact.
BRAIN_API at::Tensor exp_euler_linear(const at::Tensor& y, const at::Tensor& a,
                                      const at::Tensor& b, double dt);

// ---- Adaptive Dormand-Prince 5(4) for standalone systems ----------------------------------
struct AdaptiveOptions {
  double rtol = 1e-6;
  double atol = 1e-9;
  double first_step = 0.0;  // 0: chosen from the initial derivative
  double max_step = std::numeric_limits<double>::infinity();
  int64_t max_steps = 1'000'000;
};

struct AdaptiveResult {
  std::vector<double> t;  // the requested output times
  std::vector<State> y;   // the solution at each of them
  int64_t accepted_steps = 0;
  int64_t rejected_steps = 0;
};

// Integrates from (t0, y0) and reports y at every time in t_eval (non-decreasing, >= t0),
// stepping exactly onto each of them. Errors are controlled per element with
// |err| <= atol + rtol * max(|y|, |y_new|) (RMS over all elements of all tensors).
BRAIN_API AdaptiveResult dopri5(const Derivative& f, const State& y0, double t0,
                                const std::vector<double>& t_eval,
                                const AdaptiveOptions& options = {});

// ---- Stochastic differential equations (Ito) ----------------------------------------------
// dy = f(y, t) dt + g(y, t) dW.
enum class Noise {
  Diagonal,  // vector Wiener: an independent dW for every element, g has y's shape
  Scalar,    // one scalar dW shared by all elements (per batch row if batched), g has y's shape
};

enum class SdeMethod { EulerMaruyama, Milstein };

BRAIN_API SdeMethod parse_sde_method(const std::string& name);  // "euler_maruyama"/"em", "milstein"

// One Ito step. The Wiener increments are N(0, dt) drawn from `generator` (the default
// generator of y's device when absent); pass dW to supply them yourself (one tensor per
// state, shaped like the state for Diagonal noise, like state.select(-1, 0) for Scalar
// noise on batched states, or a scalar otherwise).
// Milstein adds 0.5 g dg/dy (dW^2 - dt), with dg/dy taken element-wise by autograd: strong
// order 1 for diagonal and scalar noise.
BRAIN_API State sde_step(SdeMethod method, const Derivative& f, const Derivative& g,
                         const State& y, double t, double dt, Noise noise,
                         std::optional<at::Generator> generator = std::nullopt,
                         const State* dW = nullptr);

// The Wiener increments sde_step would draw (exposed so tests and callers can reuse them).
BRAIN_API State wiener_increments(const State& y, double dt, Noise noise, bool batched,
                                  std::optional<at::Generator> generator = std::nullopt);

}  // namespace brain::integrators
