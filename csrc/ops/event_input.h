// The ATen side of kernels/spike_byte.h: an input tensor's data as the CPU kernels read it.
#pragma once

#include <type_traits>

#include <ATen/core/Tensor.h>

#include "kernels/spike_byte.h"

namespace brain::ops::detail {

// x_t is the tensor's own scalar type, or kernels::SpikeByte for a bool tensor, whose bytes
// are read as "not zero" rather than as C++ bools (see kernels/spike_byte.h).
template <typename x_t>
const x_t* input_data(const at::Tensor& t) {
  if constexpr (std::is_same_v<x_t, kernels::SpikeByte>) {
    return reinterpret_cast<const kernels::SpikeByte*>(t.const_data_ptr<bool>());
  } else {
    return t.const_data_ptr<x_t>();
  }
}

}  // namespace brain::ops::detail
