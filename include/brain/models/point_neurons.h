// Point-neuron models written as ODEs over named state variables (SPEC section 4). Units: mV,
// ms; currents as R*I in mV for the integrate-and-fire family, uA/cm^2 for HH.
//
// Every model integrates its variables with the chosen method (brain::integrators: euler,
// midpoint, heun, rk4, exp_euler), then emits spikes through the surrogate Heaviside and
// applies its reset. Parameter defaults are BrainPy's (and the cited papers').
#pragma once

#include <string>
#include <vector>

#include <brain/dyn/integrators.h>
#include <brain/models/neurons.h>

namespace brain {

class BRAIN_API ODENeuron : public NeuronGroup {
 public:
  ODENeuron(std::string name, int64_t n, std::vector<std::string> variables, std::string method, double tau_ref,
            Surrogate surrogate, at::TensorOptions options);
  void update(const Context& ctx) override;

 protected:
  // d/dt of the variables, in order, given the total input current.
  virtual integrators::State derivative(const integrators::State& y, double t, const at::Tensor& I) const = 0;
  // The argument of the spike's Heaviside (> 0 means a spike), from the new and old state.
  virtual at::Tensor spike_argument(const integrators::State& y_new, const integrators::State& y_old) const = 0;
  // Applies the reset where spike > 0 (spike is 0/1, differentiable).
  virtual void reset(integrators::State& y, const at::Tensor& spike) const {}
  virtual integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& opts) const = 0;

  void reset_own_state(int64_t batch_size) override;
  std::vector<std::string> variables_;
  integrators::Method method_;
  double tau_ref_;
  Surrogate surrogate_;
};

// Exponential integrate-and-fire (Fourcaud-Trocme et al. 2003):
//   tau dV/dt = -(V - V_rest) + delta_T exp((V - V_T) / delta_T) + R I
struct ExpIFParams {
  double V_rest = -65, V_reset = -68, V_th = -30, V_T = -59.9, delta_T = 3.48, R = 1, tau = 10, tau_ref = 0;
  std::string method = "exp_euler";
  Surrogate surrogate;
};
class BRAIN_API ExpIF : public ODENeuron {
 public:
  bool replayable() const override { return true; }
  ExpIF(int64_t n, ExpIFParams p = {}, at::TensorOptions options = at::kFloat);

 protected:
  integrators::State derivative(const integrators::State& y, double t, const at::Tensor& I) const override;
  at::Tensor spike_argument(const integrators::State& y, const integrators::State&) const override;
  void reset(integrators::State& y, const at::Tensor& spike) const override;
  integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& opts) const override;
  ExpIFParams p_;
};

// Adaptive exponential integrate-and-fire (Brette & Gerstner 2005):
//   tau dV/dt = -(V - V_rest) + delta_T exp((V - V_T) / delta_T) - R w + R I
//   tau_w dw/dt = a (V - V_rest) - w;   on a spike V = V_reset, w += b
struct AdExParams {
  double V_rest = -65, V_reset = -68, V_th = -30, V_T = -59.9, delta_T = 3.48, a = 1, b = 1, R = 1, tau = 10,
         tau_w = 30, tau_ref = 0;
  std::string method = "exp_euler";
  Surrogate surrogate;
};
class BRAIN_API AdEx : public ODENeuron {
 public:
  bool replayable() const override { return true; }
  AdEx(int64_t n, AdExParams p = {}, at::TensorOptions options = at::kFloat);

 protected:
  integrators::State derivative(const integrators::State& y, double t, const at::Tensor& I) const override;
  at::Tensor spike_argument(const integrators::State& y, const integrators::State&) const override;
  void reset(integrators::State& y, const at::Tensor& spike) const override;
  integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& opts) const override;
  AdExParams p_;
};

// Quadratic integrate-and-fire: tau dV/dt = c (V - V_rest)(V - V_c) + R I.
// With a_w > 0 or b_w > 0 it is the adaptive AdQuaIF:
//   tau dV/dt = c (V - V_rest)(V - V_c) - w + R I,  tau_w dw/dt = a (V - V_rest) - w, w += b.
struct QuaIFParams {
  double V_rest = -65, V_reset = -68, V_th = -30, V_c = -50, c = 0.07, R = 1, tau = 10, tau_ref = 0;
  bool adaptive = false;
  double a = 1, b = 0.1, tau_w = 10;  // AdQuaIF
  std::string method = "exp_euler";
  Surrogate surrogate;
};
class BRAIN_API QuaIF : public ODENeuron {
 public:
  bool replayable() const override { return true; }
  QuaIF(int64_t n, QuaIFParams p = {}, at::TensorOptions options = at::kFloat);

 protected:
  integrators::State derivative(const integrators::State& y, double t, const at::Tensor& I) const override;
  at::Tensor spike_argument(const integrators::State& y, const integrators::State&) const override;
  void reset(integrators::State& y, const at::Tensor& spike) const override;
  integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& opts) const override;
  QuaIFParams p_;
};

// Izhikevich (2003): dV/dt = 0.04 V^2 + 5 V + 140 - u + I,  du/dt = a (b V - u);
// on V >= V_th: V = c, u += d. The defaults are the regular-spiking cell.
struct IzhikevichParams {
  double a = 0.02, b = 0.2, c = -65, d = 8, V_th = 30, tau_ref = 0;
  std::string method = "euler";
  Surrogate surrogate;
};
class BRAIN_API Izhikevich : public ODENeuron {
 public:
  bool replayable() const override { return true; }
  Izhikevich(int64_t n, IzhikevichParams p = {}, at::TensorOptions options = at::kFloat);

 protected:
  integrators::State derivative(const integrators::State& y, double t, const at::Tensor& I) const override;
  at::Tensor spike_argument(const integrators::State& y, const integrators::State&) const override;
  void reset(integrators::State& y, const at::Tensor& spike) const override;
  integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& opts) const override;
  IzhikevichParams p_;
};

// Hodgkin-Huxley (1952), in the modern convention (rest near -65 mV; uA/cm^2, mS/cm^2):
//   C dV/dt = -g_Na m^3 h (V - E_Na) - g_K n^4 (V - E_K) - g_L (V - E_L) + I
// with the standard alpha/beta rates for m, h and n. A spike is an upward crossing of V_th;
// there is no reset.
struct HHParams {
  // g_L = 0.3 as in HH 1952 (E_L = -54.387 is what puts rest at -65 mV with it); BrainPy's
  // default of 0.03 makes the cell fire repetitively below the classic ~6.2 uA/cm^2 onset.
  double E_Na = 50, E_K = -77, E_L = -54.387, g_Na = 120, g_K = 36, g_L = 0.3, C = 1, V_th = 20;
  std::string method = "exp_euler";
  Surrogate surrogate;
};
class BRAIN_API HH : public ODENeuron {
 public:
  bool replayable() const override { return true; }
  HH(int64_t n, HHParams p = {}, at::TensorOptions options = at::kFloat);

 protected:
  integrators::State derivative(const integrators::State& y, double t, const at::Tensor& I) const override;
  at::Tensor spike_argument(const integrators::State& y_new, const integrators::State& y_old) const override;
  integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& opts) const override;
  HHParams p_;
};

// Adaptive LIF (Bellec et al. 2020, LSNN): the threshold rises by beta with every spike and
// relaxes with tau_a:  tau dV/dt = -(V - V_rest) + R I,  tau_a da/dt = -a;
// spike when V > V_th + beta a, then V = V_reset and a += 1.
struct ALIFParams {
  double V_rest = -70, V_reset = -70, V_th = -60, R = 1, tau = 20, tau_a = 200, beta = 1.6, tau_ref = 0;
  std::string method = "exp_euler";
  Surrogate surrogate;
};
class BRAIN_API ALIF : public ODENeuron {
 public:
  bool replayable() const override { return true; }
  ALIF(int64_t n, ALIFParams p = {}, at::TensorOptions options = at::kFloat);

 protected:
  integrators::State derivative(const integrators::State& y, double t, const at::Tensor& I) const override;
  at::Tensor spike_argument(const integrators::State& y, const integrators::State&) const override;
  void reset(integrators::State& y, const at::Tensor& spike) const override;
  integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& opts) const override;
  ALIFParams p_;
};

// Generalized integrate-and-fire (Mihalas & Niebur 2009), BrainPy's form: two spike-induced
// currents and an adaptive threshold,
//   dI1/dt = -k1 I1,  dI2/dt = -k2 I2,
//   tau dV/dt = -(V - V_rest) + R (I1 + I2 + I),
//   dV_th/dt = a (V - V_rest) - b (V_th - V_th_inf);
// spike when V > V_th, then I1 = R1 I1 + A1, I2 = R2 I2 + A2, V = V_reset and
// V_th = max(V_th_reset, V_th). V_th starts at V_th_inf. Table 1 of the paper gives the
// parameters of its twenty firing patterns (tonic, adapting, bursting, rebound, ...).
struct GIFParams {
  double V_rest = -70, V_reset = -70, V_th_inf = -50, V_th_reset = -60, R = 20, tau = 20, a = 0, b = 0.01;
  double k1 = 0.2, k2 = 0.02, R1 = 0, R2 = 1, A1 = 0, A2 = 0, tau_ref = 0;
  std::string method = "exp_euler";
  Surrogate surrogate;
};
class BRAIN_API GIF : public ODENeuron {
 public:
  bool replayable() const override { return true; }
  GIF(int64_t n, GIFParams p = {}, at::TensorOptions options = at::kFloat);

 protected:
  integrators::State derivative(const integrators::State& y, double t, const at::Tensor& I) const override;
  at::Tensor spike_argument(const integrators::State& y, const integrators::State&) const override;
  void reset(integrators::State& y, const at::Tensor& spike) const override;
  integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& opts) const override;
  GIFParams p_;
};

// Morris-Lecar (1981), in Rinzel & Ermentrout's parameters (uA/cm^2, mS/cm^2, uF/cm^2):
//   C dV/dt = -g_Ca M_inf (V - V_Ca) - g_K W (V - V_K) - g_leak (V - V_leak) + I
//   dW/dt = phi (W_inf - W) / tau_W,  M_inf = (1 + tanh((V - V1) / V2)) / 2,
//   W_inf = (1 + tanh((V - V3) / V4)) / 2,  tau_W = 1 / cosh((V - V3) / (2 V4)).
// A spike is an upward crossing of V_th.
struct MorrisLecarParams {
  double V_Ca = 130, g_Ca = 4.4, V_K = -84, g_K = 8, V_leak = -60, g_leak = 2, C = 20;
  double V1 = -1.2, V2 = 18, V3 = 2, V4 = 30, phi = 0.04, V_th = 10;
  std::string method = "rk4";
  Surrogate surrogate;
};
class BRAIN_API MorrisLecar : public ODENeuron {
 public:
  bool replayable() const override { return true; }
  MorrisLecar(int64_t n, MorrisLecarParams p = {}, at::TensorOptions options = at::kFloat);

 protected:
  integrators::State derivative(const integrators::State& y, double t, const at::Tensor& I) const override;
  at::Tensor spike_argument(const integrators::State& y_new, const integrators::State& y_old) const override;
  integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& opts) const override;
  MorrisLecarParams p_;
};

// Wang-Buzsaki (1996) fast-spiking interneuron (type I excitability):
//   C dV/dt = -g_Na m_inf^3 h (V - E_Na) - g_K n^4 (V - E_K) - g_L (V - E_L) + I
//   dh/dt = phi (alpha_h (1 - h) - beta_h h),  dn/dt = phi (alpha_n (1 - n) - beta_n n)
// with the paper's rate functions. A spike is an upward crossing of V_th.
struct WangBuzsakiParams {
  double E_Na = 55, E_K = -90, E_L = -65, g_Na = 35, g_K = 9, g_L = 0.1, C = 1, phi = 5, V_th = 0;
  std::string method = "rk4";
  Surrogate surrogate;
};
class BRAIN_API WangBuzsaki : public ODENeuron {
 public:
  bool replayable() const override { return true; }
  WangBuzsaki(int64_t n, WangBuzsakiParams p = {}, at::TensorOptions options = at::kFloat);

 protected:
  integrators::State derivative(const integrators::State& y, double t, const at::Tensor& I) const override;
  at::Tensor spike_argument(const integrators::State& y_new, const integrators::State& y_old) const override;
  integrators::State initial_state(const std::vector<int64_t>& shape, const at::TensorOptions& opts) const override;
  WangBuzsakiParams p_;
};

}  // namespace brain
