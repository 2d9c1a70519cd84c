// Spiking neuron populations (SPEC section 4). Units: mV, ms; currents in mV (that is, R*I).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <brain/dyn/system.h>
#include <brain/models/surrogate.h>

namespace brain {

// A population of n neurons with a membrane potential "V", a spike output "spike" (0/1 in
// the state dtype, differentiable through the surrogate) and an external current "input"
// that is consumed every step (set it every step, e.g. with a runner input).
class BRAIN_API NeuronGroup : public DynamicalSystem {
 public:
  using CurrentFn = std::function<at::Tensor(const at::Tensor& V)>;

  NeuronGroup(std::string name, int64_t n, at::TensorOptions options);
  int64_t size() const { return n_; }
  at::TensorOptions options() const { return placed(options_); }

  // Synaptic outputs register how they turn the membrane potential into a current.
  void add_current(CurrentFn fn) { currents_.push_back(std::move(fn)); }
  // Registers fn under `key` once: false (and nothing added) when the key is already there,
  // which is how merged projections share one synaptic current.
  bool add_current_once(const void* key, CurrentFn fn);
  // "input" plus every registered current, evaluated at V.
  at::Tensor total_current(const at::Tensor& V) const;
  // The registered currents and the keys of those added with add_current_once, in order.
  size_t n_currents() const { return currents_.size(); }
  const std::vector<const void*>& current_keys() const { return current_keys_; }

  // Initial potential: a function of the state shape; default V_rest-like constant.
  void set_V_initializer(std::function<at::Tensor(const std::vector<int64_t>&)> init) { v_init_ = std::move(init); }

 protected:
  int64_t n_;
  at::TensorOptions options_;
  std::vector<CurrentFn> currents_;
  std::vector<const void*> current_keys_;
  std::function<at::Tensor(const std::vector<int64_t>&)> v_init_;
};

// Leaky integrate-and-fire, optionally refractory:
//   tau dV/dt = -(V - V_rest) + R I
// integrated exactly for the current held over the step ("exp_euler", the default) or by
// forward Euler ("euler", Brian2's method in the COBA benchmark); a spike when V > V_th, then
// V = V_reset and, for tau_ref > 0, V is held for round(tau_ref / dt) - 1 further steps
// (integration resumes round(tau_ref / dt) steps after the spike, as in Brian2).
struct LifParams {
  double V_rest = -60.0;   // mV
  double V_reset = -60.0;  // mV
  double V_th = -50.0;     // mV
  double tau = 20.0;       // ms
  double R = 1.0;          // input resistance (current units are mV / R)
  double tau_ref = 0.0;    // ms
  Surrogate surrogate;     // backward of the spike; applied to (V - V_th) / (V_th - V_reset)
  bool detach_reset = true;  // the reset carries no gradient (the usual choice for BPTT)
  std::string method = "exp_euler";  // or "euler"
};

class BRAIN_API LIF : public NeuronGroup {
 public:
  bool replayable() const override { return true; }
  LIF(int64_t n, LifParams params = {}, at::TensorOptions options = at::kFloat);
  void update(const Context& ctx) override;
  const LifParams& params() const { return p_; }

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  LifParams p_;
};

}  // namespace brain
