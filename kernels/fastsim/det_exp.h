// Torch-free exp and expm1 made only of IEEE additions, multiplications and bit operations,
// with selects instead of branches. Why not libm: glibc's exp is a call the compiler cannot
// vectorize (without -ffast-math), and a conductance-based neuron spends most of its step in
// about ten of them. These inline into a loop over neurons, which the compiler vectorizes; the
// scalar and every vector width compute the same bits (as long as nothing is contracted into
// an FMA or reassociated, which the default flags guarantee). Accuracy against glibc, checked in
// tests/cpp/kernels/test_det_exp.cpp: exp within 1 ulp, expm1 within 2 ulp, float and double;
// overflow, underflow, infinities, NaN and signed zeros as libm.
//
// Method: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite: ln2 in two parts, so n * hi is exact);
// e^r - 1 by its Taylor series in Horner form (degree 13 in double, 8 in float); 2^n from its
// exponent bits, in two factors so that n may run past the normal exponent range.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels/isa.h"

// The loops that call these vectorize only once the calls are inlined, and GCC's heuristics
// decline that inside the large channel kernels ("call is cold").
#if defined(__GNUC__) || defined(__clang__)
#define BRAIN_VECTOR_INLINE inline __attribute__((always_inline))
#else
#define BRAIN_VECTOR_INLINE inline
#endif

namespace brain::kernels::detmath {

inline namespace BRAIN_KERNEL_ISA {

namespace detail {

template <typename To, typename From>
BRAIN_VECTOR_INLINE To bits_as(From from) {
  static_assert(sizeof(To) == sizeof(From));
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_bit_cast(To, from);
#else
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
#endif
}

template <typename T>
struct Consts;

template <>
struct Consts<double> {
  using Int = std::int64_t;
  static constexpr int kMantissaBits = 52, kBias = 1023;
  static constexpr double kLog2e = 1.4426950408889634;
  static constexpr double kLn2Hi = 6.93147180369123816490e-01;  // trailing 21 bits zero (fdlibm)
  static constexpr double kLn2Lo = 1.90821492927058770002e-10;
  static constexpr double kShifter = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  // Past these exp is inf / 0 and expm1 is inf / -1 (the first of e^x - 1 rounding to -1 is -38).
  static constexpr double kExpMax = 710.0, kExpMin = -746.0, kExpm1Min = -60.0;
  static constexpr int kExpm1Split = 53;  // 2^n - 1 is exact up to here
  static constexpr int kDegree = 13;
};

template <>
struct Consts<float> {
  using Int = std::int32_t;
  static constexpr int kMantissaBits = 23, kBias = 127;
  static constexpr float kLog2e = 1.44269504f;
  static constexpr float kLn2Hi = 0.693145751953125f;  // trailing 12 bits zero (cephes)
  static constexpr float kLn2Lo = 1.428606765330187e-06f;
  static constexpr float kShifter = 12582912.0f;  // 1.5 * 2^23
  static constexpr float kExpMax = 89.0f, kExpMin = -104.0f, kExpm1Min = -20.0f;
  static constexpr int kExpm1Split = 24;
  static constexpr int kDegree = 8;
};

// 1 / k! for k = 1 .. 13 (the float series uses the first 8, rounded to float).
constexpr double kInvFactorial[13] = {1.0,
                                      0.5,
                                      1.6666666666666666e-01,
                                      4.1666666666666664e-02,
                                      8.3333333333333332e-03,
                                      1.3888888888888889e-03,
                                      1.9841269841269841e-04,
                                      2.4801587301587302e-05,
                                      2.7557319223985893e-06,
                                      2.7557319223985888e-07,
                                      2.5052108385441720e-08,
                                      2.0876756987868100e-09,
                                      1.6059043836821613e-10};

// r (1/1! + r (1/2! + ... + r / K!)), written out (a loop here would be the innermost loop, and
// the loop over neurons around it would not vectorize).
template <typename T, std::size_t... k>
BRAIN_VECTOR_INLINE T series(T r, std::index_sequence<k...>) {
  constexpr std::size_t kLast = sizeof...(k);  // the degree minus one
  T q = static_cast<T>(kInvFactorial[kLast]);
  ((q = q * r + static_cast<T>(kInvFactorial[kLast - 1 - k])), ...);
  return q * r;
}

// x (clamped to [lo, hi], NaN taken to lo) = n ln2 + r; returns e^r - 1 and sets n.
template <typename T>
BRAIN_VECTOR_INLINE T reduce(T x, T lo, T hi, typename Consts<T>::Int& n) {
  using C = Consts<T>;
  T xc = x >= lo ? x : lo;
  xc = xc <= hi ? xc : hi;
  const T shifted = xc * C::kLog2e + C::kShifter;
  n = bits_as<typename C::Int>(shifted) - bits_as<typename C::Int>(C::kShifter);
  const T nf = shifted - C::kShifter;
  const T r = (xc - nf * C::kLn2Hi) - nf * C::kLn2Lo;
  return series<T>(r, std::make_index_sequence<C::kDegree - 1>{});
}

// 2^e for e in the normal exponent range.
template <typename T>
BRAIN_VECTOR_INLINE T pow2(typename Consts<T>::Int e) {
  using C = Consts<T>;
  using U = std::make_unsigned_t<typename C::Int>;
  return bits_as<T>(static_cast<typename C::Int>(static_cast<U>(e + C::kBias) << C::kMantissaBits));
}

// (1 + q) 2^n as (1 + q) 2^a 2^b with a = floor(n / 2), b = n - a: both normal for the n that
// reduce() gives (the bias keeps the shifted value non-negative: AVX2 has no 64-bit arithmetic
// shift).
template <typename T>
BRAIN_VECTOR_INLINE T scale(T q, typename Consts<T>::Int n) {
  using Int = typename Consts<T>::Int;
  constexpr Int kOffset = 2048;
  const Int a = static_cast<Int>(static_cast<std::make_unsigned_t<Int>>(n + kOffset) >> 1) - kOffset / 2;
  return ((T(1) + q) * pow2<T>(a)) * pow2<T>(n - a);
}

}  // namespace detail

// e^x.
template <typename T>
BRAIN_VECTOR_INLINE T exp(T x) {
  using C = detail::Consts<T>;
  typename C::Int n;
  const T q = detail::reduce(x, static_cast<T>(C::kExpMin), static_cast<T>(C::kExpMax), n);
  const T y = detail::scale(q, n);
  return x != x ? x : y;
}

// e^x - 1, accurate near 0.
template <typename T>
BRAIN_VECTOR_INLINE T expm1(T x) {
  using C = detail::Consts<T>;
  typename C::Int n;
  const T q = detail::reduce(x, static_cast<T>(C::kExpm1Min), static_cast<T>(C::kExpMax), n);
  // 2^n (1 + q) - 1 = 2^n q + (2^n - 1), with 2^n - 1 exact while n <= kExpm1Split; past it
  // 2^n (1 + q) is formed first (it may need the two factors) and 1 taken from it.
  const typename C::Int n_small = n <= C::kExpm1Split ? n : C::kExpm1Split;
  const T s = detail::pow2<T>(n_small);
  const T small = s * q + (s - T(1));
  const T y = n <= C::kExpm1Split ? small : detail::scale(q, n) - T(1);
  return x != x || x == T(0) ? x : y;  // NaN, and the sign of a zero, pass through
}

}  // namespace BRAIN_KERNEL_ISA

}  // namespace brain::kernels::detmath
