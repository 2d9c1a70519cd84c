// Delays (SPEC section 3): a ring buffer of a population's recent values shared by every
// reader, each with its own delay in steps, and heterogeneous per-synapse delays for CSR
// projections. Gradients flow through both.
#pragma once

#include <cstdint>

#include <brain/dyn/system.h>

namespace brain {

// History of an [n] (or [batch, n]) signal over the last max_delay + 1 steps, indexed by the
// step counter: push(x, step) stores x as the value of `step`; read(d, step) returns the
// value pushed at step - d (zeros before the first push). So a value pushed at step s is
// read with delay d at step s + d, exactly.
class BRAIN_API Delay : public DynamicalSystem {
 public:
  Delay(int64_t n, int64_t max_delay_steps, at::TensorOptions options = at::kFloat);

  void push(const at::Tensor& value, int64_t step);
  at::Tensor read(int64_t delay_steps, int64_t step) const;
  // The same at ctx's step: the slot is found on the device from ctx.clock when it is set
  // (a step being recorded for replay), from ctx.step otherwise.
  void push(const at::Tensor& value, const Context& ctx);
  at::Tensor read(int64_t delay_steps, const Context& ctx) const;
  bool replayable() const override { return true; }
  void update(const Context&) override {}

  int64_t size() const { return n_; }
  int64_t max_delay() const { return max_delay_; }

  // Makes room for delays up to max_delay_steps (never shrinks). Once values have been pushed
  // the ring cannot be re-laid without losing them, so growing a buffer that holds anything
  // but zeros is refused.
  void reserve(int64_t max_delay_steps);

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  int64_t slot(int64_t step) const;
  int64_t n_, max_delay_;
  at::TensorOptions options_;
};

// The one ring buffer of `source`'s "spike" state (n neurons, stored with `options`' dtype)
// that every reader with a delay shares, as SPEC's "ring buffers per presynaptic population":
// projections from one population with delays of 2 and 5 steps hold one [6, n] history, not
// a [3, n] and a [6, n]. The first reader creates it (created = true): it owns the buffer
// (registers it as its child, so to(), reset_state() and checkpoints cover it once) and
// pushes into it each step; later readers only read. A reader with delay d >= 1 reads the
// slot of step - d, which this step's push never touches, so the order of readers within a
// step does not matter. The buffer grows to the longest delay asked for (Delay::reserve).
struct SharedDelay {
  std::shared_ptr<Delay> delay;
  bool created = false;
};
BRAIN_API SharedDelay shared_spike_delay(DynamicalSystem& source, int64_t n, int64_t delay_steps,
                                         at::TensorOptions options);

// Postsynaptic input of a CSR projection whose synapses have their own delays:
//   out[..., post] = sum over entries k of w_k * history(step - delay_k)[..., pre(k)]
// Connectivity rows are presynaptic. Delays are per entry, in steps, <= the Delay's maximum.
// The cost is O(nnz) per step (every synapse reads its own past), not event-driven.
class BRAIN_API HeteroDelayCsr : public torch::nn::Module {
 public:
  HeteroDelayCsr(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& delays,
                 int64_t n_pre, int64_t n_post, int64_t max_delay_steps);
  at::Tensor forward(const Delay& history, const at::Tensor& weights, int64_t step) const;
  // At ctx's step (ctx.step_value(): the device clock when a step is recorded for replay).
  at::Tensor forward(const Delay& history, const at::Tensor& weights, const Context& ctx) const;
  BRAIN_MOVES_FLOATING_TENSORS_ONLY

 private:
  at::Tensor pre_, post_, delays_;
  int64_t n_pre_, n_post_, max_delay_;
};

}  // namespace brain
