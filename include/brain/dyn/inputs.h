// Inputs (SPEC section 3): current waveforms as [T, ...] tensors (one row per step, as
// BrainPy's inputs module), and input populations that are dynamical systems with a "spike"
// or "value" state. Times in ms, rates in Hz, frequencies in Hz.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include <brain/dyn/system.h>

namespace brain::inputs {

// Steps in [0, duration): round(duration / dt), checked positive.
BRAIN_API int64_t num_steps(double duration, double dt);

// values[i] held for durations[i] each, one after another: [sum(steps_i), ...value shape].
// Values may be scalars or tensors of one shape.
BRAIN_API at::Tensor section_input(const std::vector<at::Tensor>& values,
                                   const std::vector<double>& durations, double dt);
BRAIN_API at::Tensor constant_input(const at::Tensor& value, double duration, double dt);

// Linear ramp from c_start at t_start to c_end at t_end, zero outside: [T].
BRAIN_API at::Tensor ramp_input(double c_start, double c_end, double duration, double dt,
                                double t_start = 0.0, double t_end = -1.0);

// amplitude * sin(2 pi f t) in [t_start, t_end), zero outside; with bias the wave is shifted
// up by its amplitude (never negative): [T].
BRAIN_API at::Tensor sinusoidal_input(double amplitude, double frequency_hz, double duration,
                                      double dt, double t_start = 0.0, double t_end = -1.0,
                                      bool bias = false);

// Ornstein-Uhlenbeck current: dx = (mean - x) / tau dt + sigma sqrt(2 / tau) dW, x(0) = mean,
// so its stationary std is sigma; n independent processes: [T, n].
BRAIN_API at::Tensor ou_process(double mean, double sigma, double tau, double duration,
                                double dt, int64_t n, uint64_t seed);

// Standard Wiener increments N(0, dt): [T, n].
BRAIN_API at::Tensor wiener_process(double duration, double dt, int64_t n, uint64_t seed);

// A well-mixed 64-bit key from (seed, k) (the splitmix64 finaliser): the seed of the
// generator for step or interval k, so draws need no generator state carried through a run.
BRAIN_API uint64_t mix_seed(uint64_t seed, uint64_t k);

}  // namespace brain::inputs

namespace brain {

// n independent Poisson spike trains. State "spike" (bool, [n] or [batch, n]): in each step a
// neuron fires with probability rate * dt. Each draw is a function of (seed, step, batch item,
// neuron) (brain::ops::poisson_spikes), not of a generator's running state: a resumed or
// replayed run draws the same spikes, on the CPU and CUDA alike, with no host copy. State
// "rate_input" (Hz, like a neuron's "input") is added to the rates for one step and then
// cleared: a time-varying stimulus (Runner inputs, or a system updated before this one).
class BRAIN_API PoissonGroup : public DynamicalSystem {
 public:
  PoissonGroup(int64_t n, at::Tensor rates_hz, uint64_t seed);
  PoissonGroup(int64_t n, double rate_hz, uint64_t seed);
  void update(const Context& ctx) override;
  bool replayable() const override { return true; }
  int64_t size() const { return n_; }
  // float32 Hz, a scalar or one per neuron; the seed of the draws.
  const at::Tensor& rates() const { return rates_; }
  uint64_t seed() const { return seed_; }

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  int64_t n_;
  at::Tensor rates_;
  uint64_t seed_;
};

// Neurons firing at given times: neuron indices[k] spikes in the step containing times[k]
// (step = round(time / dt)). State "spike" (bool). The schedule is sorted by step once per dt,
// so a step costs a binary search plus its own spikes however long the schedule is (a
// recorded input of millions of spikes plays back as fast as a short one): on the host for a
// step run by itself; for a step recorded for replay (ctx.clock set), on the device, through
// a window of the most spikes any one step has after the clock's first entry (no host sync).
class BRAIN_API SpikeTimeGroup : public DynamicalSystem {
 public:
  SpikeTimeGroup(int64_t n, const std::vector<int64_t>& indices, const std::vector<double>& times_ms);
  void update(const Context& ctx) override;
  bool replayable() const override { return true; }
  int64_t size() const { return n_; }
  // The schedule sorted by step for dt (stably: a step's entries in the order given), entry
  // by entry: what update() reads, for engines that compile a network (dyn/fast.h).
  struct Schedule {
    const std::vector<int64_t>& steps;
    const std::vector<int64_t>& indices;
  };
  Schedule schedule(double dt) {
    sort_schedule(dt);
    return {sorted_steps_, sorted_indices_};
  }

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  int64_t n_;
  std::vector<int64_t> indices_;
  std::vector<double> times_;
  // The schedule in step order for dt = schedule_dt_ (built on the first step with that dt).
  void sort_schedule(double dt);
  std::vector<int64_t> sorted_steps_, sorted_indices_;
  int64_t most_in_one_step_ = 0;
  double schedule_dt_ = 0;
  // The same on the device, for replayed steps: built on the first such step (the runner runs
  // one before it captures) for that dt and device, constant after.
  at::Tensor device_steps_, device_indices_, device_window_;
  double device_dt_ = 0;
};

// Plays back a recorded input, one row per step: state "value" = values[step] (the last row
// is held after the end). values is [T, ...]; batch runs broadcast it over the batch.
class BRAIN_API InputSequence : public DynamicalSystem {
 public:
  explicit InputSequence(at::Tensor values);
  void update(const Context& ctx) override;
  bool replayable() const override { return true; }

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  at::Tensor values_;
};

}  // namespace brain
