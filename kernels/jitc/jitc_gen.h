// The JIT-connectivity generator: the matrix A of brain::jitc_* ops, regenerated on the fly
// from (seed, prob, shape, dist) and never stored. Torch-free; the same source is compiled
// for the CPU and (as __host__ __device__ code) for CUDA, so both produce bit-identical A.
//
// ============================== The algorithm (normative) ==================================
// Everything below is a fixed sequence of IEEE-754 binary64 operations (+, -, *, /, sqrt,
// all round-to-nearest-even, never fused into FMAs) and 32/64-bit integer arithmetic, so it
// can be reimplemented exactly in any language (tests/python/jitc_reference.py does, in
// numpy, and is compared bit for bit with the library).
//
// 1. Random words. Philox4x32-10 (Salmon et al., SC'11; Random123's philox4x32_10) with
//    key (k0, k1) = (low 32 bits, high 32 bits) of the seed taken as uint64 (two's complement).
//    Round: (hi0, lo0) = M0 * c0, (hi1, lo1) = M1 * c2 (32x32 -> 64-bit products),
//    c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); between rounds k0 += W0, k1 += W1 (mod 2^32).
//    M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85; 10 rounds.
//    A pair of words (a, b) gives the 53-bit integer m53(a, b) = ((a << 32) | b) >> 11 and
//    the 52-bit integer m52(a, b) = ((a << 32) | b) >> 12.
//
// 2. log. det_log(u) for u in [2^-54, 1]: write u = m * 2^e with m in [1, 2) (exact, from the
//    bits); if m > sqrt(2) (the double 0x1.6a09e667f3bcdp+0) then m = m * 0.5, e = e + 1.
//    f = m - 1; s = f / (m + 1); z = s * s (z <= 0.0295); P = Horner over c_9 .. c_0
//    (c_k = the double nearest 1 / (2k + 1)): P = c_9; P = P * z + c_k for k = 8 .. 0.
//    det_log(u) = e * LN2 + (s + s) * P, LN2 = 0x1.62e42fefa39efp-1, evaluated as
//    ((double)e * LN2) + ((s + s) * P).
//    det_log1m(p) = log(1 - p) for p in (0, 1): if p >= 0.5, det_log(1 - p) (1 - p is exact);
//    else s = -p / (2 - p), z = s * s (z <= 1/9), P' = the same Horner over c_19 .. c_0,
//    result (s + s) * P'.
//
// 3. Which entries are non-zero. Columns are cut into blocks of B = 2^b columns, where b is
//    the smallest integer in [5, 24] with p * 2^b >= 32 (b = 24 if none): about 32 expected
//    entries per block, so that blocks are units of parallel work of a useful size. Block k
//    of row i spans columns [k * B, min((k + 1) * B, n_cols)). Its entries come from a
//    geometric-skipping walk over the stream of uniforms of (row i, block k):
//      call t = 0, 1, 2, ... gives words (w0, w1, w2, w3) = Philox(counter (i, k, t, 0));
//      the stream's uniforms are, in order, (m53(w0, w1) + 1) * 2^-53 and
//      (m53(w2, w3) + 1) * 2^-53 of call 0, then those of call 1, ...; each lies in (0, 1].
//    With R = 1 / det_log1m(p) (one division, computed once), the walk is
//      c = k * B
//      loop: u = next uniform; r = det_log(u) * R;
//            if r >= (c_end - c): stop;      // compared as doubles
//            c = c + floor(r); (i, c) is an entry; c = c + 1; if c >= c_end: stop
//    P(r >= s) = (1 - p)^s, so every column is non-zero independently with probability p.
//    For p = 1 no uniform is drawn and every column is an entry.
//    Consequences: A never depends on the thread layout, the device, the batch size, or on
//    transpose; and A of shape [n, m] is the top-left corner of A of any larger shape with the
//    same seed, prob and dist (a block's walk only stops earlier when n_cols is smaller).
//
// 4. Values, a stateless function of (seed, row i, column j): (w0, w1, w2, w3) =
//    Philox(counter (i, j, 0, 1)) — the last counter word keeps values apart from walks.
//      "homo":    w
//      "uniform": low + (high - low) * u,  u = m53(w0, w1) * 2^-53 in [0, 1)
//      "normal":  mean + std * z,  z = ndtri(v), v = (2 * m52(w0, w1) + 1) * 2^-53 in (0, 1),
//                 ndtri = Wichura's AS241 (PPND16) with det_log and IEEE sqrt; coefficients
//                 as the doubles in kAs241* below.
//    computed in double from the parameters (converted exactly from the op's dtype), then
//    rounded once to the op's dtype. The derivatives the ops use are those of the formulas:
//    d/dw = 1; d/dlow = 1 - u, d/dhigh = u; d/dmean = 1, d/dstd = z.
// ===========================================================================================
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/isa.h"

// The CPU walk's skips and the entries' variates in AVX2 lanes (walk_skips_avx2,
// entry_variates_avx2): host compilers for x86-64 only, not the host pass of nvcc (whose
// kernels walk on the device) nor the CUDA emulator's device code.
#if !defined(__CUDACC__) && defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BRAIN_JITC_AVX2_WALK 1
#include <immintrin.h>
#else
#define BRAIN_JITC_AVX2_WALK 0
#endif

#if defined(__CUDACC__)
#define BRAIN_HD __host__ __device__ __forceinline__
#else
#define BRAIN_HD inline
#endif

namespace brain::kernels::jitc {

enum class Dist : std::int8_t { kHomo = 0, kUniform = 1, kNormal = 2 };

// Rows and columns index 32-bit counter words.
constexpr std::int64_t kMaxDim = std::int64_t{1} << 32;
constexpr int kMinBlockShift = 5;
constexpr int kMaxBlockShift = 24;

// The generator's types, shared by every instruction-set variant of its functions (kernels/isa.h).
// Philox4x32-10's output block.
struct Words {
  std::uint32_t w[4];
};

// Everything a kernel needs to regenerate A; built on the host by make_spec.
struct Spec {
  std::uint32_t key0 = 0, key1 = 0;
  std::int64_t n_rows = 0, n_cols = 0;
  int block_shift = kMinBlockShift;
  std::int64_t n_blocks = 0;  // column blocks per row
  double inv_log1m_p = 0;     // 1 / det_log1m(prob); unused when dense
  bool dense = false;         // prob == 1
  Dist dist = Dist::kHomo;
  // CPU walks compute their skips in AVX2 lanes (the same bits; make_spec sets it where the CPU
  // has AVX2 and BRAIN_FAST_ISA is not "baseline"). Device code ignores it.
  bool avx2_walk = false;
};

// A window of A's non-zero pattern: columns [col_begin, col_end), renumbered from col_begin,
// without the diagonal (row == col, in A's numbering) when exclude_diagonal. What
// jitc_pattern materialises and fixed_prob builds connectivity from; a window of a pattern
// is the same window of the whole pattern, so ranks that each build their window make up
// the whole matrix.
struct Window {
  std::int64_t col_begin = 0, col_end = 0;
  bool exclude_diagonal = false;
};

inline namespace BRAIN_KERNEL_ISA {

// ---- IEEE arithmetic that is never contracted into FMAs ------------------------------------
// Device code uses the _rn intrinsics, which nvcc never fuses; host code is compiled with
// -ffp-contract=off (CMakeLists.txt), so a + b * c stays two roundings there too.
BRAIN_HD double dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
BRAIN_HD double dsub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
BRAIN_HD double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
BRAIN_HD double ddiv(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
BRAIN_HD double dsqrt(double a) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
BRAIN_HD double dfma_free(double a, double b, double c) { return dadd(dmul(a, b), c); }

BRAIN_HD std::uint64_t bits_of(double v) {
#if defined(__CUDA_ARCH__)
  return static_cast<std::uint64_t>(__double_as_longlong(v));
#else
  std::uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
#endif
}
BRAIN_HD double double_of(std::uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(b));
#else
  double v;
  std::memcpy(&v, &b, sizeof v);
  return v;
#endif
}

// ---- Philox4x32-10 -------------------------------------------------------------------------
BRAIN_HD Words philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2,
                             std::uint32_t c3, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * c2;
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  return Words{{c0, c1, c2, c3}};
}

BRAIN_HD std::uint64_t m53(std::uint32_t a, std::uint32_t b) {
  return ((static_cast<std::uint64_t>(a) << 32) | b) >> 11;
}
BRAIN_HD std::uint64_t m52(std::uint32_t a, std::uint32_t b) {
  return ((static_cast<std::uint64_t>(a) << 32) | b) >> 12;
}
constexpr double kTwoPowMinus53 = 0x1p-53;

// ---- Deterministic transcendental functions ------------------------------------------------
// P(z) = sum_k z^k / (2k + 1), k = 0..9, by Horner: enough for z <= 0.0295 (det_log).
BRAIN_HD double inv_odd_series10(double z) {
  double p = 0x1.af286bca1af28p-5;  // 1/19
  p = dfma_free(p, z, 0x1.e1e1e1e1e1e1ep-5);  // 1/17
  p = dfma_free(p, z, 0x1.1111111111111p-4);  // 1/15
  p = dfma_free(p, z, 0x1.3b13b13b13b14p-4);  // 1/13
  p = dfma_free(p, z, 0x1.745d1745d1746p-4);  // 1/11
  p = dfma_free(p, z, 0x1.c71c71c71c71cp-4);  // 1/9
  p = dfma_free(p, z, 0x1.2492492492492p-3);  // 1/7
  p = dfma_free(p, z, 0x1.999999999999ap-3);  // 1/5
  p = dfma_free(p, z, 0x1.5555555555555p-2);  // 1/3
  p = dfma_free(p, z, 1.0);
  return p;
}

// The same series to k = 19, for z <= 1/9 (det_log1m, once per op).
BRAIN_HD double inv_odd_series20(double z) {
  double p = 0x1.a41a41a41a41ap-6;  // 1/39
  p = dfma_free(p, z, 0x1.bacf914c1bad0p-6);  // 1/37
  p = dfma_free(p, z, 0x1.d41d41d41d41dp-6);  // 1/35
  p = dfma_free(p, z, 0x1.f07c1f07c1f08p-6);  // 1/33
  p = dfma_free(p, z, 0x1.0842108421084p-5);  // 1/31
  p = dfma_free(p, z, 0x1.1a7b9611a7b96p-5);  // 1/29
  p = dfma_free(p, z, 0x1.2f684bda12f68p-5);  // 1/27
  p = dfma_free(p, z, 0x1.47ae147ae147bp-5);  // 1/25
  p = dfma_free(p, z, 0x1.642c8590b2164p-5);  // 1/23
  p = dfma_free(p, z, 0x1.8618618618618p-5);  // 1/21
  p = dfma_free(p, z, 0x1.af286bca1af28p-5);  // 1/19
  p = dfma_free(p, z, 0x1.e1e1e1e1e1e1ep-5);  // 1/17
  p = dfma_free(p, z, 0x1.1111111111111p-4);  // 1/15
  p = dfma_free(p, z, 0x1.3b13b13b13b14p-4);  // 1/13
  p = dfma_free(p, z, 0x1.745d1745d1746p-4);  // 1/11
  p = dfma_free(p, z, 0x1.c71c71c71c71cp-4);  // 1/9
  p = dfma_free(p, z, 0x1.2492492492492p-3);  // 1/7
  p = dfma_free(p, z, 0x1.999999999999ap-3);  // 1/5
  p = dfma_free(p, z, 0x1.5555555555555p-2);  // 1/3
  p = dfma_free(p, z, 1.0);
  return p;
}

// Natural log of u in [2^-54, 1] (normal, positive), about 1 ulp.
BRAIN_HD double det_log(double u) {
  const std::uint64_t b = bits_of(u);
  int e = static_cast<int>((b >> 52) & 0x7ff) - 1023;
  double m = double_of((b & ((std::uint64_t{1} << 52) - 1)) | (std::uint64_t{1023} << 52));
  if (m > 0x1.6a09e667f3bcdp+0) {
    m = dmul(m, 0.5);
    e += 1;
  }
  const double s = ddiv(dsub(m, 1.0), dadd(m, 1.0));
  const double p = inv_odd_series10(dmul(s, s));
  return dadd(dmul(static_cast<double>(e), 0x1.62e42fefa39efp-1), dmul(dadd(s, s), p));
}

#if !defined(__CUDA_ARCH__)
// det_log of n values in place, n <= kMaxLogLanes, computed side by side: for each value the
// operations of det_log in its order (so the same bits; the test
// LogsInLanesEqualDetLogBitForBit), but the n Horner chains advance together, so a CPU
// overlaps them (and vectorises them where it can) instead of waiting on one chain's latency
// at a time. CPU only: a GPU thread walks one block.
constexpr int kMaxLogLanes = 8;
inline constexpr double kInvOdd10[10] = {
    0x1.af286bca1af28p-5, 0x1.e1e1e1e1e1e1ep-5, 0x1.1111111111111p-4, 0x1.3b13b13b13b14p-4,
    0x1.745d1745d1746p-4, 0x1.c71c71c71c71cp-4, 0x1.2492492492492p-3, 0x1.999999999999ap-3,
    0x1.5555555555555p-2, 1.0};  // inv_odd_series10's coefficients, 1/19 .. 1
inline void det_log_lanes(double* v, int n) {
  double e[kMaxLogLanes], s[kMaxLogLanes], z[kMaxLogLanes], p[kMaxLogLanes];
  for (int q = 0; q < n; ++q) {
    const std::uint64_t b = bits_of(v[q]);
    const int exponent = static_cast<int>((b >> 52) & 0x7ff) - 1023;
    const double m = double_of((b & ((std::uint64_t{1} << 52) - 1)) | (std::uint64_t{1023} << 52));
    const bool halve = m > 0x1.6a09e667f3bcdp+0;
    const double mh = halve ? dmul(m, 0.5) : m;
    e[q] = static_cast<double>(halve ? exponent + 1 : exponent);
    s[q] = ddiv(dsub(mh, 1.0), dadd(mh, 1.0));
    z[q] = dmul(s[q], s[q]);
    p[q] = kInvOdd10[0];
  }
  for (int k = 1; k < 10; ++k) {
    for (int q = 0; q < n; ++q) p[q] = dfma_free(p[q], z[q], kInvOdd10[k]);
  }
  for (int q = 0; q < n; ++q) v[q] = dadd(dmul(e[q], 0x1.62e42fefa39efp-1), dmul(dadd(s[q], s[q]), p[q]));
}

// The skips of a CPU walk are made kWalkCalls Philox calls at a time: r[2q] and r[2q + 1] from
// the two uniforms of call `call + q` (section 3's order), each det_log(u) * inv_log1m_p.
constexpr int kWalkCalls = 4;
constexpr int kWalkSkips = 2 * kWalkCalls;
inline void walk_skips_lanes(const Spec& s, std::uint32_t row, std::uint32_t block, std::uint32_t call,
                             double* r) {
  for (int q = 0; q < kWalkCalls; ++q) {
    const Words w = philox4x32_10(row, block, call + static_cast<std::uint32_t>(q), 0u, s.key0, s.key1);
    r[2 * q] = dmul(static_cast<double>(m53(w.w[0], w.w[1]) + 1), kTwoPowMinus53);
    r[2 * q + 1] = dmul(static_cast<double>(m53(w.w[2], w.w[3]) + 1), kTwoPowMinus53);
  }
  det_log_lanes(r, kWalkSkips);
  for (int q = 0; q < kWalkSkips; ++q) r[q] = dmul(r[q], s.inv_log1m_p);
}
#endif

#if BRAIN_JITC_AVX2_WALK
// walk_skips_lanes in AVX2: the four Philox calls side by side (one call per 64-bit lane, whose
// low 32 bits hold the counter word; _mm256_mul_epu32 reads only those), then det_log of four
// uniforms per register. The same IEEE operations on each lane as det_log (no FMA: these
// functions enable AVX2 only), so the same bits (test Avx2WalkSkipsEqualTheScalarSkips).
// Compiled into every x86-64 host object and called only where the CPU has AVX2 (avx2_walk).
#define BRAIN_JITC_AVX2 __attribute__((target("avx2"), always_inline)) inline

// Philox4x32-10 on four counters at once, one per 64-bit lane (its low 32 bits), in place.
BRAIN_JITC_AVX2 void philox_avx2(__m256i& c0, __m256i& c1, __m256i& c2, __m256i& c3, std::uint32_t k0,
                                 std::uint32_t k1) {
  const __m256i mul0 = _mm256_set1_epi64x(0xD2511F53u), mul1 = _mm256_set1_epi64x(0xCD9E8D57u);
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const __m256i p0 = _mm256_mul_epu32(c0, mul0);
    const __m256i p1 = _mm256_mul_epu32(c2, mul1);
    c0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1), _mm256_set1_epi64x(k0));
    c1 = p1;
    c2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3), _mm256_set1_epi64x(k1));
    c3 = p0;
  }
}

// The double of x <= 2^53 per lane, exactly. AVX2 has no 64-bit integer conversion; x's high 21
// and low 32 bits convert exactly (2^52 + bits, read as a double, minus 2^52), and
// hi * 2^32 + lo is exact up to 2^53.
BRAIN_JITC_AVX2 void exact_double_avx2(const __m256i& x, __m256d& d) {
  const __m256i two52_bits = _mm256_set1_epi64x(0x4330000000000000LL);
  const __m256d two52 = _mm256_set1_pd(0x1p52);
  const __m256d hi = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(x, 32), two52_bits)), two52);
  const __m256d lo = _mm256_sub_pd(
      _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(x, _mm256_set1_epi64x(0xffffffffLL)), two52_bits)), two52);
  d = _mm256_add_pd(_mm256_mul_pd(hi, _mm256_set1_pd(0x1p32)), lo);
}

// (m53(a, b) + 1) * 2^-53 per lane, from words in the low halves of a and b.
BRAIN_JITC_AVX2 void uniforms_avx2(const __m256i& a, const __m256i& b, __m256d& u) {
  const __m256i low32 = _mm256_set1_epi64x(0xffffffffLL);
  const __m256i m53_plus_1 = _mm256_add_epi64(_mm256_or_si256(_mm256_slli_epi64(_mm256_and_si256(a, low32), 21),
                                                              _mm256_srli_epi64(_mm256_and_si256(b, low32), 11)),
                                              _mm256_set1_epi64x(1));
  exact_double_avx2(m53_plus_1, u);
  u = _mm256_mul_pd(u, _mm256_set1_pd(kTwoPowMinus53));
}

// det_log(u) * inv_log1m_p per lane, in place.
BRAIN_JITC_AVX2 void skips_of_uniforms_avx2(__m256d& v, double inv_log1m_p) {
  const __m256i two52_bits = _mm256_set1_epi64x(0x4330000000000000LL);
  const __m256i bits = _mm256_castpd_si256(v);
  __m256i biased = _mm256_and_si256(_mm256_srli_epi64(bits, 52), _mm256_set1_epi64x(0x7ff));
  const __m256d m = _mm256_castsi256_pd(_mm256_or_si256(
      _mm256_and_si256(bits, _mm256_set1_epi64x((std::int64_t{1} << 52) - 1)), _mm256_set1_epi64x(std::int64_t{1023} << 52)));
  const __m256d halve = _mm256_cmp_pd(m, _mm256_set1_pd(0x1.6a09e667f3bcdp+0), _CMP_GT_OQ);
  const __m256d mh = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), halve);
  biased = _mm256_sub_epi64(biased, _mm256_castpd_si256(halve));  // the mask is -1: e + 1
  const __m256d e = _mm256_sub_pd(
      _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(biased, two52_bits)), _mm256_set1_pd(0x1p52)),
      _mm256_set1_pd(1023.0));
  const __m256d sv = _mm256_div_pd(_mm256_sub_pd(mh, _mm256_set1_pd(1.0)), _mm256_add_pd(mh, _mm256_set1_pd(1.0)));
  const __m256d z = _mm256_mul_pd(sv, sv);
  __m256d p = _mm256_set1_pd(kInvOdd10[0]);
  for (int k = 1; k < 10; ++k) p = _mm256_add_pd(_mm256_mul_pd(p, z), _mm256_set1_pd(kInvOdd10[k]));
  const __m256d log = _mm256_add_pd(_mm256_mul_pd(e, _mm256_set1_pd(0x1.62e42fefa39efp-1)),
                                    _mm256_mul_pd(_mm256_add_pd(sv, sv), p));
  v = _mm256_mul_pd(log, _mm256_set1_pd(inv_log1m_p));
}

// kSets * kWalkCalls calls' skips at once, in walk_skips_lanes's order. Sets are independent
// work for the core before the walk, which depends on every skip, consumes them: walking in
// one-set batches measured about 1.4x slower per entry than in batches sized by
// walk_skips_avx2_for.
template <int kSets>
__attribute__((target("avx2"))) void walk_skips_avx2(const Spec& s, std::uint32_t row, std::uint32_t block,
                                                    std::uint32_t call, double* r) {
  static_assert(kWalkCalls == 4, "one call per 64-bit lane of a 256-bit register");
  __m256i c0[kSets], c1[kSets], c2[kSets], c3[kSets];
  for (int k = 0; k < kSets; ++k) {
    const std::uint32_t first = call + 4u * static_cast<std::uint32_t>(k);  // mod 2^32, as the scalar walk
    c0[k] = _mm256_set1_epi64x(row);
    c1[k] = _mm256_set1_epi64x(block);
    c2[k] = _mm256_setr_epi64x(first, first + 1u, first + 2u, first + 3u);
    c3[k] = _mm256_setzero_si256();
  }
  for (int k = 0; k < kSets; ++k) philox_avx2(c0[k], c1[k], c2[k], c3[k], s.key0, s.key1);
  __m256d first[kSets], second[kSets];  // per call: the uniform of (w0, w1), then that of (w2, w3)
  for (int k = 0; k < kSets; ++k) {
    uniforms_avx2(c0[k], c1[k], first[k]);
    uniforms_avx2(c2[k], c3[k], second[k]);
  }
  for (int k = 0; k < kSets; ++k) {
    skips_of_uniforms_avx2(first[k], s.inv_log1m_p);
    skips_of_uniforms_avx2(second[k], s.inv_log1m_p);
  }
  for (int k = 0; k < kSets; ++k) {
    const __m256d calls02 = _mm256_unpacklo_pd(first[k], second[k]);  // f0 s0 f2 s2
    const __m256d calls13 = _mm256_unpackhi_pd(first[k], second[k]);  // f1 s1 f3 s3
    _mm256_storeu_pd(r + 8 * k, _mm256_permute2f128_pd(calls02, calls13, 0x20));
    _mm256_storeu_pd(r + 8 * k + 4, _mm256_permute2f128_pd(calls02, calls13, 0x31));
  }
}

// Skips for the rest of a block's walk, whose remaining columns hold about `expected` more
// skips: as many sets as that will use, so that few are computed and not used. Returns how
// many skips it wrote to r (up to kMaxAvx2Skips).
constexpr int kMaxAvx2Skips = 4 * kWalkSkips;
__attribute__((target("avx2"))) inline int walk_skips_avx2_for(const Spec& s, std::uint32_t row,
                                                              std::uint32_t block, std::uint32_t call,
                                                              double expected, double* r) {
  if (expected >= 3 * kWalkSkips) {
    walk_skips_avx2<4>(s, row, block, call, r);
    return 4 * kWalkSkips;
  }
  if (expected >= kWalkSkips) {
    walk_skips_avx2<2>(s, row, block, call, r);
    return 2 * kWalkSkips;
  }
  walk_skips_avx2<1>(s, row, block, call, r);
  return kWalkSkips;
}

#undef BRAIN_JITC_AVX2
#endif

// log(1 - p) for p in (0, 1).
BRAIN_HD double det_log1m(double p) {
  if (p >= 0.5) return det_log(dsub(1.0, p));
  const double s = ddiv(-p, dsub(2.0, p));
  return dmul(dadd(s, s), inv_odd_series20(dmul(s, s)));
}

BRAIN_HD double horner8(double x, double c0, double c1, double c2, double c3, double c4,
                        double c5, double c6, double c7) {
  double p = c7;
  p = dfma_free(p, x, c6);
  p = dfma_free(p, x, c5);
  p = dfma_free(p, x, c4);
  p = dfma_free(p, x, c3);
  p = dfma_free(p, x, c2);
  p = dfma_free(p, x, c1);
  p = dfma_free(p, x, c0);
  return p;
}

// Inverse of the standard normal CDF for v in (0, 1): Wichura (1988), AS241 PPND16 (~1e-16).
// kAs241A..F, lowest degree first (decimal values: R's qnorm.c):
//  A: 3.387132872796366608, 133.14166789178437745, 1971.5909503065514427,
//     13731.693765509461125, 45921.953931549871457, 67265.770927008700853,
//     33430.575583588128105, 2509.0809287301226727
//  B: 1, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077,
//     21213.794301586595867, 39307.89580009271061, 28729.085735721942674, 5226.495278852545925
//  C: 1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055,
//     3.64784832476320460504, 1.27045825245236838258, .24178072517745061177,
//     .0227238449892691845833, 7.7454501427834140764e-4
//  D: 1, 2.05319162663775882187, 1.6763848301838038494, .68976733498510000455,
//     .14810397642748007459, .0151986665636164571966, 5.475938084995344946e-4,
//     1.05075007164441684324e-9
//  E: 6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358,
//     .29656057182850489123, .026532189526576123093, .0012426609473880784386,
//     2.71155556874348757815e-5, 2.01033439929228813265e-7
//  F: 1, .59983220655588793769, .13692988092273580531, .0148753612908506148525,
//     7.868691311456132591e-4, 1.8463183175100546818e-5, 1.4215117583164458887e-7,
//     2.04426310338993978564e-15
BRAIN_HD double det_ndtri(double v) {
  const double q = dsub(v, 0.5);
  if (q <= 0.425 && q >= -0.425) {
    const double r = dsub(0.180625, dmul(q, q));
    const double num = horner8(r, 0x1.b18d91e9eef75p+1, 0x1.0a4888b1a436ep+7, 0x1.ece5d2213c0ccp+10,
                               0x1.ad1d8cd4ee71dp+13, 0x1.66c3e869b752ap+15, 0x1.06c1c55b78f20p+16,
                               0x1.052d26b2e45e4p+15, 0x1.39a296f7d925ep+11);
    const double den = horner8(r, 1.0, 0x1.5281b386e1ab5p+5, 0x1.5797efdc8b3f7p+9,
                               0x1.512322e75c89fp+12, 0x1.4b772d5d65266p+14, 0x1.3317caa64f4bep+15,
                               0x1.c0e457cb1ae76p+14, 0x1.46a7eca984a16p+12);
    return ddiv(dmul(q, num), den);
  }
  double r = q < 0 ? v : dsub(1.0, v);
  r = dsqrt(-det_log(r));
  double val;
  if (r <= 5.0) {
    r = dsub(r, 1.6);
    const double num = horner8(r, 0x1.6c665fde9526ap+0, 0x1.2857748cab19bp+2, 0x1.713f71462256ap+2,
                               0x1.d2ecb1a3d02c4p+1, 0x1.453cc085375b2p+0, 0x1.ef2abb9b85c37p-3,
                               0x1.744eb6c45ec67p-6, 0x1.9615ac0b7ace9p-11);
    const double den = horner8(r, 1.0, 0x1.06cefbb46a449p+1, 0x1.ad278e6526633p+0,
                               0x1.61292f23385c9p-1, 0x1.2f5123394f040p-3, 0x1.f207a7eab17bfp-7,
                               0x1.1f18cbfdf2728p-11, 0x1.20d3f686439e4p-30);
    val = ddiv(num, den);
  } else {
    r = dsub(r, 5.0);
    const double num = horner8(r, 0x1.aa1b1c13ee526p+2, 0x1.5daea6e875003p+2, 0x1.c8ea6461fa445p+0,
                               0x1.2fad9315255cfp-2, 0x1.b2b41193b4ee7p-6, 0x1.45c1908425345p-10,
                               0x1.c6ec6cc59e02ap-16, 0x1.afb74d693bf93p-23);
    const double den = horner8(r, 1.0, 0x1.331d34fc7d77fp-1, 0x1.186eb183443fbp-3,
                               0x1.e76f93215462ap-7, 0x1.9c8bc979dc5d7p-11, 0x1.35c2c496374bfp-16,
                               0x1.31446f740b9e0p-23, 0x1.269bff1f8c190p-49);
    val = ddiv(num, den);
  }
  return q < 0 ? -val : val;
}

// ---- The matrix ----------------------------------------------------------------------------
inline int block_shift_for(double prob) {
  int b = kMinBlockShift;
  while (b < kMaxBlockShift && std::ldexp(prob, b) < 32.0) ++b;
  return b;
}

// prob in (0, 1], 0 <= n_rows, n_cols < kMaxDim (the ops check these first).
inline Spec make_spec(double prob, std::int64_t seed, std::int64_t n_rows, std::int64_t n_cols,
                      Dist dist) {
  Spec s;
  const auto useed = static_cast<std::uint64_t>(seed);
  s.key0 = static_cast<std::uint32_t>(useed);
  s.key1 = static_cast<std::uint32_t>(useed >> 32);
  s.n_rows = n_rows;
  s.n_cols = n_cols;
  s.block_shift = block_shift_for(prob);
  const std::int64_t block = std::int64_t{1} << s.block_shift;
  s.n_blocks = (n_cols + block - 1) / block;
  s.dense = prob >= 1.0;
  s.inv_log1m_p = s.dense ? 0.0 : 1.0 / det_log1m(prob);
  s.dist = dist;
#if BRAIN_JITC_AVX2_WALK
  s.avx2_walk = cpu_runs_avx2();
#endif
  return s;
}

// f(col) for the walk below; an f that returns bool ends the walk by returning true (a caller
// looking for one column stops once past it).
template <typename F>
BRAIN_HD bool visit_and_stop(F& f, std::int64_t col) {
  if constexpr (std::is_same_v<decltype(f(col)), bool>) {
    return f(col);
  } else {
    f(col);
    return false;
  }
}

// Calls f(col) for each non-zero column of A in block `block` of row `row`, in increasing
// order. Returns after the block's last entry (or once f returns true, see visit_and_stop).
template <typename F>
BRAIN_HD void for_each_in_block(const Spec& s, std::int64_t row, std::int64_t block, F&& f) {
  const std::int64_t start = block << s.block_shift;
  std::int64_t end = start + (std::int64_t{1} << s.block_shift);
  if (end > s.n_cols) end = s.n_cols;
  std::int64_t c = start;
  if (s.dense) {
    for (; c < end; ++c) {
      if (visit_and_stop(f, c)) return;
    }
    return;
  }
  if (c >= end) return;
  const auto r32 = static_cast<std::uint32_t>(row);
  const auto b32 = static_cast<std::uint32_t>(block);
  std::uint32_t call = 0;
#if !defined(__CUDA_ARCH__)
  // On a CPU the skips are computed in batches of Philox calls before the walk uses them: a
  // skip is a 10-term Horner chain, and many independent chains keep the core's units busy
  // where two left it waiting on each chain's latency. The same uniforms and skips, used in the
  // same order, so the same entries; the skips of a batch past the block's last entry are
  // computed and not used.
  //
  // take_skip moves the walk by one skip, and says whether the walk is over.
  auto take_skip = [&](double r) {
    if (r >= static_cast<double>(end - c)) return true;
    c += static_cast<std::int64_t>(r);  // r >= 0, so truncation is floor
    if (visit_and_stop(f, c)) return true;
    return ++c >= end;
  };
#if BRAIN_JITC_AVX2_WALK
  if (s.avx2_walk) {
    // AVX2 makes a batch cheap enough to walk the whole block in batches, sized to what
    // remains: about (end - c) * -log(1 - p) entries.
    const double entries_per_column = -1.0 / s.inv_log1m_p;
    double r[kMaxAvx2Skips];
    for (;;) {
      const int n = walk_skips_avx2_for(s, r32, b32, call, static_cast<double>(end - c) * entries_per_column + 1.0, r);
      for (int q = 0; q < n; ++q) {
        if (take_skip(r[q])) return;
      }
      call += static_cast<std::uint32_t>(n / 2);
    }
  }
#endif
  double r[kWalkSkips];
  // Without it, batches while about kWalkCalls entries' worth of columns remain, then a call at
  // a time.
  const double many_columns = kWalkCalls * -s.inv_log1m_p;
  while (static_cast<double>(end - c) >= many_columns) {
    walk_skips_lanes(s, r32, b32, call, r);
    for (int q = 0; q < kWalkSkips; ++q) {
      if (take_skip(r[q])) return;
    }
    call += kWalkCalls;
  }
#endif
  // Both uniforms of a Philox call are turned into skips together: two independent log
  // chains give the CPU (and GPU) instruction-level parallelism. The values and their order
  // are those of the specification; at most one skip per block is computed and not used.
  for (;; ++call) {
    const Words w = philox4x32_10(r32, b32, call, 0u, s.key0, s.key1);
    const double u0 = dmul(static_cast<double>(m53(w.w[0], w.w[1]) + 1), kTwoPowMinus53);
    const double u1 = dmul(static_cast<double>(m53(w.w[2], w.w[3]) + 1), kTwoPowMinus53);
    const double r0 = dmul(det_log(u0), s.inv_log1m_p);
    const double r1 = dmul(det_log(u1), s.inv_log1m_p);
    if (r0 >= static_cast<double>(end - c)) return;
    c += static_cast<std::int64_t>(r0);  // r >= 0, so truncation is floor
    if (visit_and_stop(f, c)) return;
    if (++c >= end) return;
    if (r1 >= static_cast<double>(end - c)) return;
    c += static_cast<std::int64_t>(r1);
    if (visit_and_stop(f, c)) return;
    if (++c >= end) return;
  }
}

// The column blocks that intersect the window: [window_first_block, window_end_block).
BRAIN_HD std::int64_t window_first_block(const Spec& s, const Window& w) {
  return w.col_begin >> s.block_shift;
}
BRAIN_HD std::int64_t window_end_block(const Spec& s, const Window& w) {
  if (w.col_end <= w.col_begin) return window_first_block(s, w);
  return ((w.col_end - 1) >> s.block_shift) + 1;
}

// Calls f(col - col_begin) for each entry of row `row` in block `block` that the window keeps,
// in increasing order.
template <typename F>
BRAIN_HD void for_each_in_window_block(const Spec& s, const Window& w, std::int64_t row,
                                       std::int64_t block, F&& f) {
  for_each_in_block(s, row, block, [&](std::int64_t col) {
    if (col < w.col_begin || col >= w.col_end) return;
    if (w.exclude_diagonal && col == row) return;
    f(col - w.col_begin);
  });
}

// The value's random part of entry (row, col): u in [0, 1) for uniform, z for normal,
// 0 for homo (unused).
BRAIN_HD double entry_variate(const Spec& s, std::int64_t row, std::int64_t col) {
  if (s.dist == Dist::kHomo) return 0.0;
  const Words w = philox4x32_10(static_cast<std::uint32_t>(row), static_cast<std::uint32_t>(col),
                                0u, 1u, s.key0, s.key1);
  if (s.dist == Dist::kUniform) return dmul(static_cast<double>(m53(w.w[0], w.w[1])), kTwoPowMinus53);
  const double v = dmul(static_cast<double>(2 * m52(w.w[0], w.w[1]) + 1), kTwoPowMinus53);
  return det_ndtri(v);
}

#if BRAIN_JITC_AVX2_WALK
// entry_variate for four columns at a time in AVX2 (the same bits; test
// Avx2VariatesEqualEntryVariate), for the CPU loops that take an entry's value with its column.
#define BRAIN_JITC_AVX2 __attribute__((target("avx2"), always_inline)) inline

// horner8 per lane: c[7], then p * x + c[k] for k = 6 .. 0, never fused.
BRAIN_JITC_AVX2 void horner8_avx2(const __m256d& x, const double* c, __m256d& p) {
  p = _mm256_set1_pd(c[7]);
  for (int k = 6; k >= 0; --k) p = _mm256_add_pd(_mm256_mul_pd(p, x), _mm256_set1_pd(c[k]));
}

// det_ndtri per lane: the central branch in lanes, the tails (about 15% of values) in lanes when
// any lane needs them, and the far tails (r > 5, v below about 1e-11) one lane at a time.
// The same operations per lane as det_ndtri, so the same bits.
__attribute__((target("avx2"))) inline void ndtri_avx2(const double* v_in, double* z_out) {
  static constexpr double kA[8] = {0x1.b18d91e9eef75p+1, 0x1.0a4888b1a436ep+7, 0x1.ece5d2213c0ccp+10,
                                   0x1.ad1d8cd4ee71dp+13, 0x1.66c3e869b752ap+15, 0x1.06c1c55b78f20p+16,
                                   0x1.052d26b2e45e4p+15, 0x1.39a296f7d925ep+11};
  static constexpr double kB[8] = {1.0, 0x1.5281b386e1ab5p+5, 0x1.5797efdc8b3f7p+9, 0x1.512322e75c89fp+12,
                                   0x1.4b772d5d65266p+14, 0x1.3317caa64f4bep+15, 0x1.c0e457cb1ae76p+14,
                                   0x1.46a7eca984a16p+12};
  static constexpr double kC[8] = {0x1.6c665fde9526ap+0, 0x1.2857748cab19bp+2, 0x1.713f71462256ap+2,
                                   0x1.d2ecb1a3d02c4p+1, 0x1.453cc085375b2p+0, 0x1.ef2abb9b85c37p-3,
                                   0x1.744eb6c45ec67p-6, 0x1.9615ac0b7ace9p-11};
  static constexpr double kD[8] = {1.0, 0x1.06cefbb46a449p+1, 0x1.ad278e6526633p+0, 0x1.61292f23385c9p-1,
                                   0x1.2f5123394f040p-3, 0x1.f207a7eab17bfp-7, 0x1.1f18cbfdf2728p-11,
                                   0x1.20d3f686439e4p-30};
  const __m256d v = _mm256_loadu_pd(v_in);
  double v_copy[4];  // z_out may be v_in
  _mm256_storeu_pd(v_copy, v);
  const __m256d q = _mm256_sub_pd(v, _mm256_set1_pd(0.5));
  const __m256d central = _mm256_and_pd(_mm256_cmp_pd(q, _mm256_set1_pd(0.425), _CMP_LE_OQ),
                                        _mm256_cmp_pd(q, _mm256_set1_pd(-0.425), _CMP_GE_OQ));
  const __m256d r = _mm256_sub_pd(_mm256_set1_pd(0.180625), _mm256_mul_pd(q, q));
  __m256d num, den;
  horner8_avx2(r, kA, num);
  horner8_avx2(r, kB, den);
  __m256d z = _mm256_div_pd(_mm256_mul_pd(q, num), den);
  if (_mm256_movemask_pd(central) != 0xF) {
    const __m256d negative = _mm256_cmp_pd(q, _mm256_setzero_pd(), _CMP_LT_OQ);
    __m256d t = _mm256_blendv_pd(_mm256_sub_pd(_mm256_set1_pd(1.0), v), v, negative);
    skips_of_uniforms_avx2(t, 1.0);  // det_log(t) * 1.0, which is det_log(t)
    t = _mm256_sqrt_pd(_mm256_xor_pd(t, _mm256_set1_pd(-0.0)));
    const __m256d t_shift = _mm256_sub_pd(t, _mm256_set1_pd(1.6));
    horner8_avx2(t_shift, kC, num);
    horner8_avx2(t_shift, kD, den);
    const __m256d tail = _mm256_xor_pd(_mm256_div_pd(num, den), _mm256_and_pd(negative, _mm256_set1_pd(-0.0)));
    z = _mm256_blendv_pd(tail, z, central);
    _mm256_storeu_pd(z_out, z);
    const int far = _mm256_movemask_pd(_mm256_andnot_pd(central, _mm256_cmp_pd(t, _mm256_set1_pd(5.0), _CMP_GT_OQ)));
    for (int lane = 0; lane < 4; ++lane) {
      if (far & (1 << lane)) z_out[lane] = det_ndtri(v_copy[lane]);
    }
    return;
  }
  _mm256_storeu_pd(z_out, z);
}

// entry_variate(s, row, cols[i]) for i < n into out, for n a multiple of 4 (uniform or normal).
__attribute__((target("avx2"))) inline void entry_variates_avx2(const Spec& s, std::uint32_t row,
                                                               const std::int64_t* cols, int n, double* out) {
  for (int i = 0; i < n; i += 4) {
    __m256i c0 = _mm256_set1_epi64x(row);
    __m256i c1 = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(cols + i)),
                                  _mm256_set1_epi64x(0xffffffffLL));  // the column's 32-bit counter word
    __m256i c2 = _mm256_setzero_si256(), c3 = _mm256_set1_epi64x(1);
    philox_avx2(c0, c1, c2, c3, s.key0, s.key1);
    const __m256i w0 = _mm256_and_si256(c0, _mm256_set1_epi64x(0xffffffffLL));
    const __m256i w1 = _mm256_and_si256(c1, _mm256_set1_epi64x(0xffffffffLL));
    __m256d d;
    if (s.dist == Dist::kUniform) {
      exact_double_avx2(_mm256_or_si256(_mm256_slli_epi64(w0, 21), _mm256_srli_epi64(w1, 11)), d);  // m53
      _mm256_storeu_pd(out + i, _mm256_mul_pd(d, _mm256_set1_pd(kTwoPowMinus53)));
    } else {
      const __m256i m52 = _mm256_or_si256(_mm256_slli_epi64(w0, 20), _mm256_srli_epi64(w1, 12));
      exact_double_avx2(_mm256_or_si256(_mm256_slli_epi64(m52, 1), _mm256_set1_epi64x(1)), d);  // 2 * m52 + 1
      _mm256_storeu_pd(out + i, _mm256_mul_pd(d, _mm256_set1_pd(kTwoPowMinus53)));
      ndtri_avx2(out + i, out + i);
    }
  }
}
#undef BRAIN_JITC_AVX2
#endif

#if !defined(__CUDA_ARCH__)
// entry_variate(s, row, cols[i]) for i < n into out (in AVX2 lanes where avx2_walk). cols and
// out have room for n rounded up to 4: the padding lanes are computed and not used. CPU only.
inline void entry_variates(const Spec& s, std::int64_t row, std::int64_t* cols, int n, double* out) {
#if BRAIN_JITC_AVX2_WALK
  if (s.avx2_walk) {
    const int padded = (n + 3) & ~3;
    for (int i = n; i < padded; ++i) cols[i] = cols[0];
    entry_variates_avx2(s, static_cast<std::uint32_t>(row), cols, padded, out);
    return;
  }
#endif
  for (int i = 0; i < n; ++i) out[i] = entry_variate(s, row, cols[i]);
}

// f(col, variate) for the entries of block `block` of row `row` in increasing order, as
// for_each_in_block with entry_variate(s, row, col); the variates are computed kVariateBatch
// at a time (entry_variates). CPU only.
constexpr int kVariateBatch = 32;
template <typename F>
void for_each_variate_in_block(const Spec& s, std::int64_t row, std::int64_t block, F&& f) {
  if (s.dist == Dist::kHomo) {
    for_each_in_block(s, row, block, [&](std::int64_t col) { f(col, 0.0); });
    return;
  }
  std::int64_t cols[kVariateBatch + 3];
  double variates[kVariateBatch + 3];
  int n = 0;
  auto flush = [&] {
    entry_variates(s, row, cols, n, variates);
    for (int i = 0; i < n; ++i) f(cols[i], variates[i]);
    n = 0;
  };
  for_each_in_block(s, row, block, [&](std::int64_t col) {
    cols[n++] = col;
    if (n == kVariateBatch) flush();
  });
  if (n > 0) flush();
}
#endif

// The value of an entry from its variate and the parameters (a, b) = (w, -), (low, high) or
// (mean, std), in double; callers round it once to their dtype.
BRAIN_HD double entry_value(Dist dist, double variate, double a, double b) {
  switch (dist) {
    case Dist::kHomo:
      return a;
    case Dist::kUniform:
      return dadd(a, dmul(dsub(b, a), variate));
    default:
      return dadd(a, dmul(b, variate));
  }
}

// d value / d (a, b) for the same entry.
BRAIN_HD void entry_basis(Dist dist, double variate, double* d_a, double* d_b) {
  switch (dist) {
    case Dist::kHomo:
      *d_a = 1.0;
      *d_b = 0.0;
      return;
    case Dist::kUniform:
      *d_a = dsub(1.0, variate);
      *d_b = variate;
      return;
    default:
      *d_a = 1.0;
      *d_b = variate;
      return;
  }
}

// Number of parameters in the weight tensor for a distribution.
constexpr int num_params(Dist d) { return d == Dist::kHomo ? 1 : 2; }

}  // namespace BRAIN_KERNEL_ISA

}  // namespace brain::kernels::jitc
