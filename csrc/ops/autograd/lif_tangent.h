// Forward-mode derivatives (jvp, jacfwd, torch.autograd.forward_ad) of the fused LIF ops, from
// the window's primal membrane v_pre [T, ...]. Differentiating the recursion of lif_seq.h with
// the spike's surrogate derivative (what reverse mode transposes), for t = 1 .. T:
//   dv_t = dv/du du_{t-1} + dv/dI dI_t        (dv/du = decay or 1 - dt/tau; dv/dI = R (1 - decay) or R dt/tau)
//   ds_t = ds_dv_t dv_t,   du_t = du_dv_t dv_t    (brain::_lif_tangent_coefficients)
// with du_0 the tangent of v0 and dI_t the tangent of step t's input current, which for the
// recurrent forms depends on the spikes' tangents of earlier steps. Written with ops, so it runs
// on every device and under every transform (jacfwd maps the tangents); one small group of
// elementwise ops per step, which forward mode accepts for its memory that does not grow with T.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <vector>

#include <ATen/core/Tensor.h>

#include "csrc/ops/autograd/lif_model.h"

namespace brain::ops {

struct LifTangents {
  at::Tensor spikes;  // [T, ...]
  at::Tensor v_last;  // [...]
  at::Tensor v_pre;   // [T, ...]
};

// The tangent of step t's input current given the spikes' tangents of steps before t (an
// undefined tensor is a zero tangent, for both).
using CurrentTangent = std::function<at::Tensor(int64_t t, const std::vector<at::Tensor>& spike_tangents)>;

// v0_tangent may be undefined (zero).
LifTangents lif_tangents(const LifModel& model, const at::Tensor& v_pre, const at::Tensor& v0_tangent,
                         const CurrentTangent& current);

// Whether any input carries a forward-mode tangent.
bool has_tangent(std::initializer_list<std::reference_wrapper<const at::Tensor>> inputs);

// Sets the outputs' tangents (those of v_pre only when it is defined).
void set_tangents(const LifTangents& tangents, const at::Tensor& spikes, const at::Tensor& v_last,
                  const at::Tensor& v_pre);

}  // namespace brain::ops
