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
    enum Kind { None, Leak, NaHH, KHH, NaTM, KTM, CaT, H, CaPool, KCa } kind = None;
    double g = 0, E = 0, V_T = 0;
    // CaT: V_sh, phi (p) and phi_q; H and KCa: phi; KCa: alpha, beta, hill and its pool;
    // CaPool: depth, tau, Ca_rest and the channels whose current flows in.
    double V_sh = 0, phi = 1, phi_q = 1;
    double alpha = 0, beta = 0, hill = 0;
    double depth = 0, tau = 0, Ca_rest = 0;
    const IonChannel* pool = nullptr;
    std::vector<const IonChannel*> influx;

    static Kinetics of(Kind kind, double g, double E, double V_T = 0) {
      Kinetics k;
      k.kind = kind, k.g = g, k.E = E, k.V_T = V_T;
      return k;
    }
  };
  virtual Kinetics kinetics() const { return {}; }
  void update(const Context&) override {}  // driven by its CondNeuGroup
  int64_t size() const { return n_; }

 protected:
  int64_t n_;
  at::TensorOptions options_;
};

// Leak: -g (V - E).
class BRAIN_API LeakChannel : public IonChannel {
 public:
  bool replayable() const override { return true; }
  LeakChannel(int64_t n, double g = 0.3, double E = -54.387, at::TensorOptions options = at::kDouble);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  Kinetics kinetics() const override { return Kinetics::of(Kinetics::Leak, g_, E_); }

 private:
  double g_, E_;
};

// Hodgkin-Huxley 1952 sodium: -g m^3 h (V - E), standard rates (modern convention).
class BRAIN_API NaChannelHH : public IonChannel {
 public:
  bool replayable() const override { return true; }
  NaChannelHH(int64_t n, double g = 120, double E = 50, at::TensorOptions options = at::kDouble);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  Kinetics kinetics() const override { return Kinetics::of(Kinetics::NaHH, g_, E_); }
  void advance(const at::Tensor& V, const Context& ctx) override;

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  double g_, E_;
};

// Hodgkin-Huxley 1952 delayed-rectifier potassium: -g n^4 (V - E).
class BRAIN_API KChannelHH : public IonChannel {
 public:
  bool replayable() const override { return true; }
  KChannelHH(int64_t n, double g = 36, double E = -77, at::TensorOptions options = at::kDouble);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  Kinetics kinetics() const override { return Kinetics::of(Kinetics::KHH, g_, E_); }
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
  bool replayable() const override { return true; }
  NaChannelTM(int64_t n, double g = 100, double E = 50, double V_T = -63, at::TensorOptions options = at::kDouble,
              std::optional<double> V_rest = std::nullopt);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  Kinetics kinetics() const override { return Kinetics::of(Kinetics::NaTM, g_, E_, V_T_); }
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
  bool replayable() const override { return true; }
  KChannelTM(int64_t n, double g = 30, double E = -90, double V_T = -63, at::TensorOptions options = at::kDouble,
             std::optional<double> V_rest = std::nullopt);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  Kinetics kinetics() const override { return Kinetics::of(Kinetics::KTM, g_, E_, V_T_); }
  void advance(const at::Tensor& V, const Context& ctx) override;

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  double g_, E_, V_T_;
  std::optional<double> V_rest_;
};

// ---- Calcium, calcium-activated potassium and h channels -------------------------------
// Their gates relax as dx/dt = (x_inf(V) - x) / tau_x(V) and are moved exactly over a step
// with V (and [Ca]) held, like the alpha/beta gates above. They start at their steady state
// at V_init (and the pool's resting [Ca]). The CPU one-pass update knows them too, as long as
// a pool's influx channels and a KCa channel's pool belong to the same CondNeuGroup.

// Low-threshold T-type calcium current (Huguenard & McCormick 1992; BrainPy's ICaT_HM1992):
//   I = -g p^2 q (V - E),
//   p_inf = 1 / (1 + exp(-(V + 59 - V_sh) / 6.2)),
//   tau_p = (1 / (exp(-(V + 132 - V_sh) / 16.7) + exp((V + 16.8 - V_sh) / 18.2)) + 0.612) / phi_p,
//   q_inf = 1 / (1 + exp((V + 83 - V_sh) / 4)),
//   tau_q = exp((V + 467 - V_sh) / 66.6) / phi_q          for V < -80 + V_sh,
//           (exp(-(V + 22 - V_sh) / 10.5) + 28) / phi_q   otherwise,
// phi_p = 3.55^((T - 24) / 10), phi_q = 3^((T - 24) / 10) at temperature T (Celsius). E is a
// fixed calcium reversal potential (mV). Feed a CalciumPool with it to drive KCaChannel.
struct CaTParams {
  double g = 2.0;     // mS/cm^2
  double E = 120.0;   // mV
  double V_sh = -3.0; // mV, shift of the kinetics
  double T = 36.0;    // Celsius
  double V_init = -65.0;
};
class BRAIN_API CaTChannel : public IonChannel {
 public:
  bool replayable() const override { return true; }
  CaTChannel(int64_t n, CaTParams p = {}, at::TensorOptions options = at::kDouble);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  void advance(const at::Tensor& V, const Context& ctx) override;
  // Steady states and time constants (ms) at V, for analysis and tests.
  at::Tensor p_inf(const at::Tensor& V) const;
  at::Tensor q_inf(const at::Tensor& V) const;
  at::Tensor tau_p(const at::Tensor& V) const;
  at::Tensor tau_q(const at::Tensor& V) const;
  Kinetics kinetics() const override;

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  CaTParams p_;
  double phi_p_, phi_q_;
};

// Hyperpolarization-activated cation current I_h (Huguenard & McCormick 1992):
//   I = -g p (V - E),  p_inf = 1 / (1 + exp((V + 75) / 5.5)),
//   tau_p = 1 / (exp(-0.086 V - 14.59) + exp(0.0701 V - 1.87)) / phi.
// It opens below rest and depolarizes: the sag and rebound after hyperpolarizing steps.
struct HParams {
  double g = 0.04;    // mS/cm^2
  double E = -43.0;   // mV
  double phi = 1.0;   // temperature factor on the rates
  double V_init = -65.0;
};
class BRAIN_API HChannel : public IonChannel {
 public:
  bool replayable() const override { return true; }
  HChannel(int64_t n, HParams p = {}, at::TensorOptions options = at::kDouble);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  void advance(const at::Tensor& V, const Context& ctx) override;
  at::Tensor p_inf(const at::Tensor& V) const;
  at::Tensor tau_p(const at::Tensor& V) const;
  Kinetics kinetics() const override;

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  HParams p_;
};

// Intracellular calcium in a shell under the membrane (Destexhe et al. 1993), state "Ca" (mM):
//   d[Ca]/dt = max(0, 10 I_Ca / (2 F depth)) + (Ca_rest - [Ca]) / tau,
// I_Ca (uA/cm^2, positive inward) the summed current of the channels added with
// add_influx, F = 96485.33 C/mol, depth in um (the factor 10 makes it mM/ms); the max is the
// pump's rectification (calcium is not pumped in). Moved exactly over the step with V and
// the currents held. It carries no current itself: add it to the CondNeuGroup after its
// calcium channels and before the channels that read [Ca], so those see this step's value.
struct CalciumPoolParams {
  double depth = 1.0;      // um
  double tau = 5.0;        // ms
  double Ca_rest = 2.4e-4; // mM
};
class BRAIN_API CalciumPool : public IonChannel {
 public:
  bool replayable() const override { return true; }
  CalciumPool(int64_t n, CalciumPoolParams p = {}, at::TensorOptions options = at::kDouble);
  // A channel whose current() is calcium flowing in (a CaTChannel, or any IonChannel).
  void add_influx(std::shared_ptr<IonChannel> channel);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  void advance(const at::Tensor& V, const Context& ctx) override;
  const at::Tensor& concentration() const { return state("Ca"); }
  const CalciumPoolParams& params() const { return p_; }
  Kinetics kinetics() const override;

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  CalciumPoolParams p_;
  std::vector<std::shared_ptr<IonChannel>> influx_;
};

// Calcium-activated potassium (after-hyperpolarization) current (Destexhe et al. 1994;
// BrainPy's IAHP_De1994): I = -g p^2 (V - E), with [Ca] from a CalciumPool,
//   dp/dt = phi (alpha [Ca]^n (1 - p) - beta p):
//   p_inf = alpha [Ca]^n / (alpha [Ca]^n + beta), tau_p = 1 / (phi (alpha [Ca]^n + beta)).
// Calcium let in by spikes opens it, which slows firing (spike-frequency adaptation).
struct KCaParams {
  double g = 10.0;      // mS/cm^2
  double E = -95.0;     // mV
  double alpha = 48.0;  // 1/(ms mM^n)
  double beta = 0.09;   // 1/ms
  double n = 2.0;       // Hill exponent
  double phi = 1.0;
};
class BRAIN_API KCaChannel : public IonChannel {
 public:
  bool replayable() const override { return true; }
  KCaChannel(int64_t n, std::shared_ptr<CalciumPool> pool, KCaParams p = {}, at::TensorOptions options = at::kDouble);
  at::Tensor current(const at::Tensor& V) const override;
  at::Tensor conductance() const override;
  void advance(const at::Tensor& V, const Context& ctx) override;
  Kinetics kinetics() const override;

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  std::shared_ptr<CalciumPool> pool_;
  KCaParams p_;
};

class BRAIN_API CondNeuGroup : public NeuronGroup {
 public:
  bool replayable() const override { return true; }
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
  // Whether update() takes the one-pass path with the channels and states it has now (built-in
  // channels only, a KCa channel's pool and a pool's influx channels in this group, CPU
  // float32/float64 states, no gradient recorded).
  bool takes_fused_step() const;
  bool fused() const { return fused_; }
  const std::vector<std::shared_ptr<IonChannel>>& channels() const { return channels_; }
  double C() const { return C_; }
  double V_th() const { return V_th_; }

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
