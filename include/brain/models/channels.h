// Conductance-based neurons composed of ion channels (SPEC section 4): channel -> neuron.
//
// CondNeuGroup: C dV/dt = sum_channels I_ch(V) + I. Each step, every channel first moves its
// gating variables over the step with V held at its start value (exactly, for the
// alpha/beta channels here), then V is integrated with the gates at the step's end
// (exponential Euler): a first-order splitting, as in BrainPy. A spike is an upward
// crossing of V_th. Units: mV, ms, uA/cm^2, mS/cm^2, uF/cm^2.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <brain/models/neurons.h>

namespace brain {

class BRAIN_API IonChannel : public DynamicalSystem {
 public:
  IonChannel(std::string name, int64_t n, at::TensorOptions options)
      : DynamicalSystem(std::move(name)), n_(n), options_(options) {}
  // Current into the cell at V (e.g. -g (V - E)).
  virtual at::Tensor current(const at::Tensor& V) const = 0;
  // Moves the gating variables over one step with V held.
  virtual void advance(const at::Tensor& V, const Context& ctx) {}
  // For a current linear in V at fixed gates, -d current / dV (the channel's conductance);
  // undefined otherwise. When every channel of a CondNeuGroup gives one, the group integrates
  // V with this exact slope instead of differentiating the currents by autograd each step.
  virtual at::Tensor conductance() const { return {}; }
  // Built-in channels describe their kinetics, so a CondNeuGroup made of them can update all
  // gates and V in one pass over the neurons on the CPU when no gradient is recorded (the same
  // step as the op-by-op path, to rounding). kind: none for channels it does not know.
  struct Kinetics {
    enum Kind { None, Leak, NaHH, KHH, NaTM, KTM } kind = None;
    double g = 0, E = 0, V_T = 0;
  };
  virtual Kinetics kinetics() const { return {}; }
  void update(const Context&) override {}  // driven by its CondNeuGroup

 protected:
  int64_t n_;
  at::TensorOptions options_;
};

// Leak: -g (V - E).
class BRAIN_API LeakChannel : public IonChannel {
 public:
  LeakChannel(int64_t n, double g = 0.3, double E = -54.387, at::TensorOptions options = at::kDouble);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  Kinetics kinetics() const override { return {Kinetics::Leak, g_, E_, 0}; }

 private:
  double g_, E_;
};

// Hodgkin-Huxley 1952 sodium: -g m^3 h (V - E), standard rates (modern convention).
class BRAIN_API NaChannelHH : public IonChannel {
 public:
  NaChannelHH(int64_t n, double g = 120, double E = 50, at::TensorOptions options = at::kDouble);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  Kinetics kinetics() const override { return {Kinetics::NaHH, g_, E_, 0}; }
  void advance(const at::Tensor& V, const Context& ctx) override;

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  double g_, E_;
};

// Hodgkin-Huxley 1952 delayed-rectifier potassium: -g n^4 (V - E).
class BRAIN_API KChannelHH : public IonChannel {
 public:
  KChannelHH(int64_t n, double g = 36, double E = -77, at::TensorOptions options = at::kDouble);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  Kinetics kinetics() const override { return {Kinetics::KHH, g_, E_, 0}; }
  void advance(const at::Tensor& V, const Context& ctx) override;

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  double g_, E_;
};

// Traub-Miles sodium (Traub & Miles 1991, as in Brette et al. 2007's COBA-HH benchmark):
// -g m^3 h (V - E), the HH kinetics shifted by V_T. Gates start at 0 (Brian2's and BrainPy's
// COBA-HH benchmarks), or at their steady state at V_rest when given one.
class BRAIN_API NaChannelTM : public IonChannel {
 public:
  NaChannelTM(int64_t n, double g = 100, double E = 50, double V_T = -63, at::TensorOptions options = at::kDouble,
              std::optional<double> V_rest = std::nullopt);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  Kinetics kinetics() const override { return {Kinetics::NaTM, g_, E_, V_T_}; }
  void advance(const at::Tensor& V, const Context& ctx) override;

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  double g_, E_, V_T_;
  std::optional<double> V_rest_;
};

// Traub-Miles delayed-rectifier potassium: -g n^4 (V - E), shifted by V_T like NaChannelTM.
class BRAIN_API KChannelTM : public IonChannel {
 public:
  KChannelTM(int64_t n, double g = 30, double E = -90, double V_T = -63, at::TensorOptions options = at::kDouble,
             std::optional<double> V_rest = std::nullopt);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  Kinetics kinetics() const override { return {Kinetics::KTM, g_, E_, V_T_}; }
  void advance(const at::Tensor& V, const Context& ctx) override;

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  double g_, E_, V_T_;
  std::optional<double> V_rest_;
};

class BRAIN_API CondNeuGroup : public NeuronGroup {
 public:
  CondNeuGroup(int64_t n, double C = 1.0, double V_th = 20.0, double V_init = -65.0, Surrogate surrogate = {},
               at::TensorOptions options = at::kDouble);
  template <typename T>
  std::shared_ptr<T> add_channel(const std::string& name, std::shared_ptr<T> channel) {
    TORCH_CHECK(channel, "CondNeuGroup: null channel '", name, "'");
    channels_.push_back(channel);
    return add_child(name, std::move(channel));
  }
  void update(const Context& ctx) override;
  // The one-pass CPU update (on by default); off: always op by op (to compare the two).
  void set_fused(bool on) { fused_ = on; }

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  bool fused_ = true;
  bool fused_update(const at::Tensor& V, const at::Tensor& I, const Context& ctx);
  double C_, V_th_, V_init_;
  Surrogate surrogate_;
  std::vector<std::shared_ptr<IonChannel>> channels_;
};

}  // namespace brain
