// A CUDA emulator for testing the kernels in kernels/*.cu on a machine without a GPU.
//
// CI has no GPU, and a kernel that only compiles has never been checked. So the .cu files are
// also compiled as ordinary C++ against this header (tests/cuda_emu/CMakeLists.txt rewrites
// each `kernel<<<grid, block, shared, stream>>>(args)` into a call of cuda_emu::Launch) and
// their torch-free launchers are run on host memory: every CUDA thread of a block is a fiber
// (ucontext) with its own stack, blocks run one after another on the calling thread, and
// threads switch only at the points where CUDA threads synchronise (__syncthreads and the
// warp intrinsics). What this checks: the kernels' index arithmetic, grid-stride loops,
// launch configurations (grid and block limits), reductions and shuffles (lane masks, widths
// and source lanes), and that every thread a barrier or warp intrinsic waits for reaches it
// (a divergent barrier is reported as a launch failure naming the waiters, not a hang). What
// it cannot check: timing, memory ordering and races between threads that never synchronise,
// and anything of the host glue in csrc/ops/cuda/. It is a test of the kernels' logic, not a
// substitute for running them on the GPU machine.
//
// Device memory is host memory: the tests pass host pointers, allocated with
// cuda_emu::GuardedArray so that a read or write past the end of a buffer faults.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ---- Keywords ---------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
// A block's shared memory: one block runs at a time, so a function-local static is the block's.
#define __shared__ static

// ---- Built-in types and variables -------------------------------------------------------------
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};
constexpr int warpSize = 32;

// Set by the emulator to the running fiber's values before it resumes.
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
typedef enum cudaError cudaError_t;
typedef struct CUstream_st* cudaStream_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
// Device memory is host memory, and every stream is synchronous: plain copies.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t bytes, cudaStream_t stream = nullptr);

cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t error);

// ---- Half types (bit-exact round-to-nearest-even conversions) ---------------------------------
struct __half {
  unsigned short __x;
};
struct __nv_bfloat16 {
  unsigned short __x;
};

namespace cuda_emu {
// Rounds v to the nearest value of a binary format with kMantBits stored mantissa bits and
// kExpBits exponent bits (ties to even; overflow to infinity) and returns its encoding.
template <int kExpBits, int kMantBits>
unsigned short encode_small_float(double v) {
  constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  constexpr int kMinExp = 1 - kBias;  // of the normal numbers
  const unsigned short sign = std::signbit(v) ? static_cast<unsigned short>(1u << (kExpBits + kMantBits)) : 0;
  const unsigned short inf = static_cast<unsigned short>(((1u << kExpBits) - 1u) << kMantBits);
  if (std::isnan(v)) return static_cast<unsigned short>(sign | inf | (1u << (kMantBits - 1)));
  const double a = std::fabs(v);
  if (std::isinf(a)) return static_cast<unsigned short>(sign | inf);
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int exponent = e - 1;
  if (a == 0.0 || exponent < kMinExp) exponent = kMinExp;  // subnormal: the smallest exponent's spacing
  // Scaling by a power of two is exact; nearbyint rounds to even in the default mode.
  double q = std::nearbyint(std::ldexp(a, kMantBits - exponent));
  if (q >= std::ldexp(1.0, kMantBits + 1)) {  // rounded up to the next binade
    q = std::ldexp(q, -1);
    exponent += 1;
  }
  const auto mant = static_cast<unsigned>(q);
  if (mant < (1u << kMantBits)) return static_cast<unsigned short>(sign | mant);  // subnormal or zero
  if (exponent > kBias) return static_cast<unsigned short>(sign | inf);
  return static_cast<unsigned short>(sign | (static_cast<unsigned>(exponent + kBias) << kMantBits) |
                                     (mant - (1u << kMantBits)));
}

template <int kExpBits, int kMantBits>
float decode_small_float(unsigned short bits) {
  constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  const bool negative = (bits >> (kExpBits + kMantBits)) & 1u;
  const unsigned biased = (bits >> kMantBits) & ((1u << kExpBits) - 1u);
  const unsigned mant = bits & ((1u << kMantBits) - 1u);
  double v;
  if (biased == (1u << kExpBits) - 1u) {
    v = mant != 0 ? std::nan("") : INFINITY;
  } else if (biased == 0) {
    v = std::ldexp(static_cast<double>(mant), 1 - kBias - kMantBits);
  } else {
    v = std::ldexp(static_cast<double>(mant | (1u << kMantBits)), static_cast<int>(biased) - kBias - kMantBits);
  }
  return static_cast<float>(negative ? -v : v);
}
}  // namespace cuda_emu

inline __half __double2half(double v) { return __half{cuda_emu::encode_small_float<5, 10>(v)}; }
inline __half __float2half(float v) { return __double2half(v); }  // float -> double is exact
inline float __half2float(__half h) { return cuda_emu::decode_small_float<5, 10>(h.__x); }
inline __nv_bfloat16 __double2bfloat16(double v) { return __nv_bfloat16{cuda_emu::encode_small_float<8, 7>(v)}; }
inline __nv_bfloat16 __float2bfloat16(float v) { return __double2bfloat16(v); }
inline float __bfloat162float(__nv_bfloat16 h) { return cuda_emu::decode_small_float<8, 7>(h.__x); }

// ---- Arithmetic and bit intrinsics ------------------------------------------------------------
// The translated kernels are compiled with -ffp-contract=off, so each of these rounds once.
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline long long __double_as_longlong(double v) {
  long long b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}
inline double __longlong_as_double(long long b) {
  double v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
// Device code calls the math functions unqualified.
using std::isfinite;
using std::isinf;
using std::isnan;

// ---- Atomics ---------------------------------------------------------------------------------
// The overloads CUDA has (a template would also accept types a GPU has no atomicAdd for). They
// are relaxed atomic read-modify-writes, as on a GPU; under ThreadSanitizer they are the only
// accesses that two threads of a block may make to one address without a barrier between them.
namespace cuda_emu::detail {
template <typename T>
T atomic_fetch_add(T* p, T v) {
  if constexpr (std::is_integral_v<T>) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
  } else {
    T old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    T desired = old + v;
    while (!__atomic_compare_exchange(p, &old, &desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
      desired = old + v;
    }
    return old;
  }
}
}  // namespace cuda_emu::detail
inline int atomicAdd(int* p, int v) { return cuda_emu::detail::atomic_fetch_add(p, v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return cuda_emu::detail::atomic_fetch_add(p, v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return cuda_emu::detail::atomic_fetch_add(p, v);
}
inline float atomicAdd(float* p, float v) { return cuda_emu::detail::atomic_fetch_add(p, v); }
inline double atomicAdd(double* p, double v) { return cuda_emu::detail::atomic_fetch_add(p, v); }

// ---- Synchronisation and warp intrinsics ------------------------------------------------------
namespace cuda_emu::detail {
enum class WarpOp : int { kShfl, kShflDown, kShflUp, kShflXor, kBallot, kSyncWarp };
// Every lane in mask deposits bits and waits until all of them have; returns the bits that lane
// src_lane deposited (src_lane must be in mask), or, for kBallot, the mask of lanes whose bits
// were non-zero. A lane outside its own mask, a source lane outside the mask and lanes that
// meet different intrinsics under one mask are launch failures.
std::uint64_t warp_exchange(WarpOp op, unsigned mask, std::uint64_t bits, int src_lane);
void block_barrier();
void check_width(int width, const char* intrinsic);
unsigned lane_id();
}  // namespace cuda_emu::detail

inline void __syncthreads() { cuda_emu::detail::block_barrier(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  cuda_emu::detail::warp_exchange(cuda_emu::detail::WarpOp::kSyncWarp, mask, 0, -1);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return static_cast<unsigned>(
      cuda_emu::detail::warp_exchange(cuda_emu::detail::WarpOp::kBallot, mask, predicate != 0, -1));
}

namespace cuda_emu::detail {
template <typename T>
T shuffle(WarpOp op, unsigned mask, T var, int src_lane) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(std::uint64_t),
                "the emulator shuffles trivially copyable values of up to 8 bytes");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &var, sizeof(T));
  const std::uint64_t got = warp_exchange(op, mask, bits, src_lane);
  T out;
  std::memcpy(&out, &got, sizeof(T));
  return out;
}
}  // namespace cuda_emu::detail

// width splits the warp into segments of width lanes (a power of two <= 32); a lane reads
// within its own segment, as on the GPU.
template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  cuda_emu::detail::check_width(width, "__shfl_sync");
  const unsigned lane = cuda_emu::detail::lane_id();
  const int src = static_cast<int>(lane & ~static_cast<unsigned>(width - 1)) + (src_lane & (width - 1));
  return cuda_emu::detail::shuffle(cuda_emu::detail::WarpOp::kShfl, mask, var, src);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  cuda_emu::detail::check_width(width, "__shfl_down_sync");
  const unsigned lane = cuda_emu::detail::lane_id();
  const unsigned in_segment = lane & static_cast<unsigned>(width - 1);
  const int src = in_segment + delta < static_cast<unsigned>(width) ? static_cast<int>(lane + delta) : static_cast<int>(lane);
  return cuda_emu::detail::shuffle(cuda_emu::detail::WarpOp::kShflDown, mask, var, src);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  cuda_emu::detail::check_width(width, "__shfl_up_sync");
  const unsigned lane = cuda_emu::detail::lane_id();
  const unsigned in_segment = lane & static_cast<unsigned>(width - 1);
  const int src = in_segment >= delta ? static_cast<int>(lane - delta) : static_cast<int>(lane);
  return cuda_emu::detail::shuffle(cuda_emu::detail::WarpOp::kShflUp, mask, var, src);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  cuda_emu::detail::check_width(width, "__shfl_xor_sync");
  const unsigned lane = cuda_emu::detail::lane_id();
  const unsigned src = lane ^ static_cast<unsigned>(lane_mask);
  const bool same_segment = (src & ~static_cast<unsigned>(width - 1)) == (lane & ~static_cast<unsigned>(width - 1));
  return cuda_emu::detail::shuffle(cuda_emu::detail::WarpOp::kShflXor, mask, var,
                                   static_cast<int>(same_segment ? src : lane));
}

// ---- Launches ---------------------------------------------------------------------------------
namespace cuda_emu {

// How the scheduler orders the threads of a block between synchronisation points (and the
// blocks of a grid). Kernels must not depend on it; running a test under several orders
// shows when one does.
enum class Order { kForward, kReverse, kShuffled };
void set_order(Order order, std::uint64_t seed = 1);
inline const char* order_name(Order order) {
  return order == Order::kForward ? "Forward" : order == Order::kReverse ? "Reverse" : "Shuffled";
}
// For GoogleTest's names of parameterised tests.
inline void PrintTo(Order order, std::ostream* os) { *os << order_name(order); }

struct LaunchRecord {
  std::string kernel;  // the launch expression as written in the .cu file
  dim3 grid, block;
};
// Every launch since the last clear_launches(), in order (kept so that tests can check which
// kernel and configuration a launcher chose).
const std::vector<LaunchRecord>& launches();
void clear_launches();
// Why the last failed launch failed ("" after a successful one).
const std::string& last_failure();

namespace detail {
void run_grid(const char* kernel, dim3 grid, dim3 block, std::size_t shared_bytes, void (*body)(void*), void* context);
}

// What `kernel<<<grid, block, shared, stream>>>(args...)` becomes. The kernel runs to
// completion before run returns (every stream is synchronous here).
class Launch {
 public:
  Launch(const char* kernel, dim3 grid, dim3 block, std::size_t shared_bytes = 0, cudaStream_t stream = nullptr)
      : kernel_(kernel), grid_(grid), block_(block), shared_bytes_(shared_bytes) {
    (void)stream;
  }

  template <typename... Params, typename... Args>
  void run(void (*kernel)(Params...), Args&&... args) const {
    static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
    // Arguments are converted to the parameter types once, as a launch copies them to the device.
    struct Context {
      void (*kernel)(Params...);
      std::tuple<std::decay_t<Params>...> args;
    } context{kernel, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
    detail::run_grid(kernel_, grid_, block_, shared_bytes_, [](void* c) {
      auto* ctx = static_cast<Context*>(c);
      std::apply(ctx->kernel, ctx->args);
    }, &context);
  }

 private:
  const char* kernel_;
  dim3 grid_, block_;
  std::size_t shared_bytes_;
};

// ---- Test buffers -----------------------------------------------------------------------------
// A host array standing in for device memory, placed so that its last element ends at a page
// that may not be read or written: a kernel that runs past the end faults at once instead of
// corrupting the heap (under AddressSanitizer the plain heap does the same and better).
class GuardedBytes {
 public:
  explicit GuardedBytes(std::size_t bytes);
  ~GuardedBytes();
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;
  void* data() const { return data_; }

 private:
  void* mapping_ = nullptr;
  std::size_t mapping_bytes_ = 0;
  void* data_ = nullptr;
};

template <typename T>
class GuardedArray {
  static_assert(std::is_trivially_copyable_v<T>, "device buffers hold trivially copyable values");

 public:
  explicit GuardedArray(std::size_t n, T fill = T{}) : bytes_(n * sizeof(T)), n_(n) {
    for (std::size_t i = 0; i < n; ++i) data()[i] = fill;
  }
  explicit GuardedArray(const std::vector<T>& values) : GuardedArray(values.size()) {
    if (!values.empty()) std::memcpy(data(), values.data(), values.size() * sizeof(T));
  }
  T* data() const { return static_cast<T*>(bytes_.data()); }
  std::size_t size() const { return n_; }
  T& operator[](std::size_t i) const { return data()[i]; }
  std::vector<T> to_vector() const { return std::vector<T>(data(), data() + n_); }

 private:
  GuardedBytes bytes_;
  std::size_t n_;
};

}  // namespace cuda_emu
