// Internal: the plan of CondNeuGroup's one-pass update (kernels/fastsim/cond_cpu.h), shared by
// the group itself and by the fast engine, which runs the same step inside its fused loop.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include <brain/models/channels.h>

#include "kernels/fastsim/cond_cpu.h"

namespace brain::detail {

struct CondPlan {
  std::vector<kernels::cond::Channel> channels;      // in the group's order
  std::vector<std::vector<std::string>> gate_names;  // per channel, its gate states in kernel order
  std::vector<std::vector<at::Tensor>> gates;        // per channel, those states (contiguous)

  // The kernel's view: gates read from `gates`, written to `out` (the same tensors to update
  // in place), float32 or float64 as T.
  template <typename T>
  kernels::cond::Group<T> group(const std::vector<std::vector<at::Tensor>>& out, double C, double V_th,
                                double dt) const;
};

// The names of a channel's gate states in the kernel's order (none for a leak or a channel
// the one-pass update does not know).
std::vector<std::string> cond_gate_names(const IonChannel& channel);

// The plan for the group's channels and states, or false when the one-pass update does not
// apply (a channel it does not know, a pool or an influx channel outside the group, more than
// kernels::cond::kMaxChannels channels, states not on the CPU, of another type or shape, or
// recording gradients).
bool plan_cond_group(const CondNeuGroup& group, const at::Tensor& V, const at::Tensor& I, CondPlan& plan);

}  // namespace brain::detail
