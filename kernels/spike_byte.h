// Bool events as every kernel reads them: SpikeByte, one byte, active when it is not zero.
//
// A bool tensor's byte can hold any value (a uint8 tensor viewed as bool, a buffer from numpy
// or another library), and torch reads every non-zero byte as true (c10::load<bool>). Reading
// such a byte as a C++ bool is undefined behaviour, and here it gave wrong sums without an
// error: a two-entry table indexed by the bool read past its end, and a conversion to float
// gave 85 for a byte of 85. So the glue hands bool data to the kernels as SpikeByte (the same
// layout), which has no conversions: each kernel family reads it through its own is_active and
// value functions (csr_cpu.h, jitc_cpu.h, cuda_common.cuh), and a kernel that did arithmetic
// on it directly would not compile.
#pragma once

namespace brain::kernels {

struct SpikeByte {
  unsigned char byte;
};
static_assert(sizeof(SpikeByte) == sizeof(bool) && alignof(SpikeByte) == alignof(bool),
              "SpikeByte must have bool's layout: the glue passes bool tensors' data as SpikeByte");

}  // namespace brain::kernels
