// Echo-state network reservoir (Jaeger 2001; the ESN of the BrainPy papers):
//   x <- (1 - leak) x + leak * tanh(u W_in + A^T x + b)
// with x [N] (or [B, N]) the rate state, u the input, W_in [n_in, N] ~ U(-input_scale,
// input_scale), b ~ U(-bias_scale, bias_scale), and the recurrent matrix A [N, N] (row =
// presynaptic) with connection probability `density` and normal weights scaled to the given
// spectral radius:
//   "dense": stored; its eigenvalues are computed once and A is rescaled exactly;
//   "jit":   never stored (brain::jitc_matmul, dist "normal"), std = spectral_radius /
//            sqrt(N * density), which gives that spectral radius for large N (circular law).
// Train a readout on its states with brain::train (ridge, RLS/FORCE, LMS) or by BPTT (the
// step is differentiable in the input and in W_in; A is fixed).
// States: "x", and "input" ([n_in] or [B, n_in], zero after reset_state), which set_input or
// a Runner input on "<name>.input" sets; being a state, the input is also what a recorded
// (CUDA-graph) step reads, so the reservoir replays (RunnerOptions::graphs).
#pragma once

#include <cstdint>
#include <string>

#include <brain/dyn/system.h>

namespace brain {

struct ReservoirParams {
  int64_t n_in = 1;
  int64_t size = 500;
  double spectral_radius = 0.9;
  double leak = 1.0;          // in (0, 1]
  double input_scale = 1.0;
  double bias_scale = 0.0;
  double density = 1.0;       // recurrent connection probability, (0, 1]
  std::string connectivity = "dense";  // "dense" or "jit"
  int64_t seed = 0;
};

class BRAIN_API Reservoir : public DynamicalSystem {
 public:
  explicit Reservoir(ReservoirParams p, at::TensorOptions options = at::kDouble);
  // One step with the input held in state "input"; state "x".
  void update(const Context& ctx) override;
  bool replayable() const override { return true; }
  // Sets state "input" to u, broadcast to its shape (call reset_state first).
  void set_input(const at::Tensor& u);
  // Runs a whole input sequence u [T, n_in] or [T, B, n_in] from the current state (call
  // reset_state first) and returns the states [T, N] or [T, B, N].
  at::Tensor run(const at::Tensor& inputs);
  // The recurrent input A^T x for a state x [N] or [B, N].
  at::Tensor recurrent(const at::Tensor& x) const;
  const ReservoirParams& params() const { return p_; }
  int64_t size() const { return p_.size; }
  const at::Tensor& input_weight() const { return w_in_; }
  // The dense recurrent matrix (materialized for "jit"), [N, N] with rows presynaptic.
  at::Tensor recurrent_matrix() const;

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  at::Tensor step_state(const at::Tensor& x, const at::Tensor& u) const;
  ReservoirParams p_;
  at::TensorOptions options_;
  at::Tensor w_in_, bias_, w_rec_;  // w_rec_: dense A, or undefined for "jit"
  at::Tensor jit_weight_;           // [mean 0, std] for "jit"
};

}  // namespace brain
