// Rate and oscillator models (SPEC section 4): populations described by a few continuous
// variables. Each exposes its vector field, derivative(y, t), which the analysis tools
// (phase plane, bifurcation) use directly; update() integrates it (rk4 by default).
// External inputs are states named "input_<variable>" (consumed every step).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include <brain/dyn/integrators.h>
#include <brain/dyn/system.h>

namespace brain {

class BRAIN_API RateModel : public DynamicalSystem {
 public:
  RateModel(std::string name, int64_t n, std::vector<std::string> variables, std::string method,
            at::TensorOptions options);
  // d/dt of the variables (in order) at y, with the current external inputs.
  virtual integrators::State derivative(const integrators::State& y, double t) const = 0;
  void update(const Context& ctx) override;
  const std::vector<std::string>& variables() const { return variables_; }
  int64_t size() const { return n_; }

 protected:
  virtual integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const;
  void reset_own_state(int64_t batch_size) override;
  at::Tensor input(size_t i) const { return state("input_" + variables_[i]); }
  int64_t n_;
  std::vector<std::string> variables_;
  integrators::Method method_;
  at::TensorOptions options_;
};

// FitzHugh-Nagumo: dv/dt = v - v^3/3 - w + I,  tau dw/dt = v + a - b w.
struct FHNParams {
  double a = 0.7, b = 0.8, tau = 12.5;
  std::string method = "rk4";
};
class BRAIN_API FHN : public RateModel {
 public:
  bool replayable() const override { return true; }
  FHN(int64_t n, FHNParams p = {}, at::TensorOptions options = at::kDouble);
  integrators::State derivative(const integrators::State& y, double t) const override;

 private:
  FHNParams p_;
};

// Wilson-Cowan (1972), excitatory e and inhibitory i populations:
//   tau_e de/dt = -e + (1 - r e) S_e(w_ee e - w_ei i + I_e)
//   tau_i di/dt = -i + (1 - r i) S_i(w_ie e - w_ii i + I_i)
//   S(x) = 1 / (1 + exp(-a (x - theta))) - 1 / (1 + exp(a theta))
struct WilsonCowanParams {
  double tau_e = 1, a_e = 1.2, theta_e = 2.8, tau_i = 1, a_i = 1, theta_i = 4;
  double w_ee = 12, w_ei = 4, w_ie = 13, w_ii = 11, r = 1;
  std::string method = "rk4";
};
class BRAIN_API WilsonCowan : public RateModel {
 public:
  bool replayable() const override { return true; }
  WilsonCowan(int64_t n, WilsonCowanParams p = {}, at::TensorOptions options = at::kDouble);
  integrators::State derivative(const integrators::State& y, double t) const override;

 private:
  WilsonCowanParams p_;
};

// Mean field of quadratic integrate-and-fire neurons (Montbrio, Pazo & Roxin 2015):
//   tau dr/dt = delta / (pi tau) + 2 r v
//   tau dv/dt = v^2 + eta + J tau r + I - (pi tau r)^2
struct QIFMeanFieldParams {
  double tau = 1, eta = -5, delta = 1, J = 15;
  std::string method = "rk4";
};
class BRAIN_API QIFMeanField : public RateModel {
 public:
  bool replayable() const override { return true; }
  QIFMeanField(int64_t n, QIFMeanFieldParams p = {}, at::TensorOptions options = at::kDouble);
  integrators::State derivative(const integrators::State& y, double t) const override;

 protected:
  integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const override;

 private:
  QIFMeanFieldParams p_;
};

// Stuart-Landau oscillator (Hopf normal form): with r^2 = x^2 + y^2,
//   dx/dt = (a - r^2) x - w y + I_x,  dy/dt = (a - r^2) y + w x + I_y
// For a > 0 a limit cycle of radius sqrt(a) and angular frequency w (rad/ms).
struct StuartLandauParams {
  double a = 0.25, w = 0.2;
  std::string method = "rk4";
};
class BRAIN_API StuartLandau : public RateModel {
 public:
  bool replayable() const override { return true; }
  StuartLandau(int64_t n, StuartLandauParams p = {}, at::TensorOptions options = at::kDouble);
  integrators::State derivative(const integrators::State& y, double t) const override;

 protected:
  integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& o) const override;

 private:
  StuartLandauParams p_;
};

// Threshold-linear E/I rates: tau_e de/dt = -e + [w_ee e - w_ei i + I_e]_+,
//                             tau_i di/dt = -i + [w_ie e - w_ii i + I_i]_+
struct ThresholdLinearParams {
  double tau_e = 2e-2 * 1000, tau_i = 1e-2 * 1000;  // ms
  double w_ee = 0.5, w_ei = 0.5, w_ie = 0.5, w_ii = 0.5;
  std::string method = "rk4";
};
class BRAIN_API ThresholdLinear : public RateModel {
 public:
  bool replayable() const override { return true; }
  ThresholdLinear(int64_t n, ThresholdLinearParams p = {}, at::TensorOptions options = at::kDouble);
  integrators::State derivative(const integrators::State& y, double t) const override;

 private:
  ThresholdLinearParams p_;
};

// Continuous attractor neural network on a ring (Wu, Hamaguchi & Amari 2008; BrainPy's CANN1D):
// n neurons with preferred features x_i evenly spaced on [z_min, z_max) (periodic),
//   tau du/dt = -u + sum_j J(x_i, x_j) r_j + I_ext,   r = u^2 / (1 + k sum_j u_j^2),
//   J(x, x') = J0 / (sqrt(2 pi) a) exp(-d(x, x')^2 / (2 a^2)),  d the distance on the ring.
// It holds a stationary bump of activity anywhere on the ring and tracks a moving input
// stimulus(z) = A exp(-d(x, z)^2 / (4 a^2)). Variable "u", input "input_u"; the recurrent
// input is a dense [n, n] product (n up to a few thousand).
struct CANN1DParams {
  double tau = 1.0;  // ms
  double k = 8.1;    // global inhibition
  double a = 0.5;    // width of the excitatory coupling (feature units)
  double A = 10.0;   // stimulus amplitude
  double J0 = 4.0;   // coupling strength
  double z_min = -M_PI, z_max = M_PI;
  std::string method = "rk4";
};
class BRAIN_API CANN1D : public RateModel {
 public:
  bool replayable() const override { return true; }
  CANN1D(int64_t n, CANN1DParams p = {}, at::TensorOptions options = at::kDouble);
  integrators::State derivative(const integrators::State& y, double t) const override;
  // The preferred features x [n].
  const at::Tensor& features() const { return x_; }
  // Periodic distance on the ring, in (-range/2, range/2].
  at::Tensor ring_distance(const at::Tensor& d) const;
  // The external input for stimulus positions z (any shape S): [*S, n].
  at::Tensor stimulus(const at::Tensor& positions) const;
  // Firing rates r for u ([..., n]).
  at::Tensor rates(const at::Tensor& u) const;
  // The bump's position from u ([..., n] -> [...]): the circular mean of the features weighted
  // by r (population vector), on the ring's range.
  at::Tensor decode(const at::Tensor& u) const;

 private:
  CANN1DParams p_;
  at::Tensor x_, J_;
};

}  // namespace brain
