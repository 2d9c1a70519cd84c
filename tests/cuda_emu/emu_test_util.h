// Shared by the emulated-kernel tests: element types as the CUDA launchers name them, random
// data, and the tolerance of a float sum.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/csr/csr_cuda.h"
#include "kernels/spike_byte.h"

namespace emu_test {

using brain::kernels::SpikeByte;
using brain::kernels::csr::cuda::Dtype;

template <typename T>
constexpr Dtype dtype_of() {
  if constexpr (std::is_same_v<T, float>) return Dtype::kFloat32;
  if constexpr (std::is_same_v<T, double>) return Dtype::kFloat64;
  if constexpr (std::is_same_v<T, __half>) return Dtype::kFloat16;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return Dtype::kBFloat16;
}

template <typename T>
double to_double(T v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __half2float(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else if constexpr (std::is_same_v<T, SpikeByte>) {
    return v.byte != 0 ? 1.0 : 0.0;
  } else {
    return static_cast<double>(v);
  }
}

template <typename T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __double2half(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __double2bfloat16(v);
  } else {
    return static_cast<T>(v);
  }
}

// The kernels accumulate float and half types in float, double in double.
template <typename T>
constexpr double sum_epsilon() {
  return std::is_same_v<T, double> ? 0x1p-52 : 0x1p-23;
}
// The spacing of the result type, where the result is rounded to it.
template <typename T>
constexpr double store_epsilon() {
  if constexpr (std::is_same_v<T, __half>) return 0x1p-10;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return 0x1p-7;
  return sum_epsilon<T>();
}

template <typename T>
std::string type_name() {
  if constexpr (std::is_same_v<T, float>) return "float32";
  if constexpr (std::is_same_v<T, double>) return "float64";
  if constexpr (std::is_same_v<T, __half>) return "float16";
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return "bfloat16";
}

// Values in [-1, 1) on a grid of 1/64, exact in every type here.
template <typename T>
std::vector<T> random_values(std::size_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> d(-64, 63);
  std::vector<T> v(n);
  for (auto& e : v) e = from_double<T>(d(rng) / 64.0);
  return v;
}

// x with a fraction `active` of non-zero entries; for SpikeByte the bytes of active entries are
// any non-zero value (a bool tensor may hold 85 or 255), inactive ones 0.
template <typename T>
std::vector<T> random_input(std::size_t n, double active, std::mt19937_64& rng) {
  std::bernoulli_distribution on(active);
  std::uniform_int_distribution<int> byte(1, 255);
  std::vector<T> v(n);
  if constexpr (std::is_same_v<T, SpikeByte>) {
    for (auto& e : v) e = SpikeByte{static_cast<unsigned char>(on(rng) ? byte(rng) : 0)};
  } else {
    std::uniform_int_distribution<int> d(1, 64);
    for (auto& e : v) e = from_double<T>(on(rng) ? (byte(rng) % 2 ? 1 : -1) * d(rng) / 64.0 : 0.0);
  }
  return v;
}

// |got - want| within what a sum of terms whose magnitudes add up to `magnitude` can round to
// when accumulated in float (or double) and stored in T.
template <typename T>
::testing::AssertionResult close(double got, double want, double magnitude, std::size_t terms) {
  const double tol = sum_epsilon<T>() * magnitude * static_cast<double>(terms + 2) + store_epsilon<T>() * std::fabs(want) +
                     1e-300;
  if (std::fabs(got - want) <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want << " (tolerance " << tol << ")";
}

}  // namespace emu_test
