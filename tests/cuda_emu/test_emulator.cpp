// The CUDA emulator itself: indexing, barriers, warp intrinsics, launch limits, the failures
// it must report, and the half-type conversions the kernels' results depend on.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

namespace {

using cuda_emu::GuardedArray;
using cuda_emu::Launch;
using cuda_emu::Order;

constexpr Order kOrders[] = {Order::kForward, Order::kReverse, Order::kShuffled};

class EmulatorTest : public ::testing::TestWithParam<Order> {
 protected:
  void SetUp() override {
    cuda_emu::set_order(GetParam(), 7);
    (void)cudaGetLastError();
  }
  void TearDown() override { cuda_emu::set_order(Order::kForward); }
};

__global__ void write_coordinates(unsigned* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned per_block = blockDim.x * blockDim.y * blockDim.z;
  out[block * per_block + thread] += block * 1000 + thread + 1;
}

TEST_P(EmulatorTest, EveryThreadOfAThreeDimensionalGridRunsOnceWithItsCoordinates) {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  GuardedArray<unsigned> out(12 * 24, 0u);
  Launch("write_coordinates", grid, block).run(write_coordinates, out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess) << cuda_emu::last_failure();
  for (unsigned b = 0; b < 12; ++b) {
    for (unsigned t = 0; t < 24; ++t) ASSERT_EQ(out[b * 24 + t], b * 1000 + t + 1) << b << " " << t;
  }
}

template <bool kSync>
__global__ void reverse_in_shared(const int* in, int* out) {
  __shared__ int tile[128];
  tile[threadIdx.x] = in[blockIdx.x * 128 + threadIdx.x];
  if (kSync) __syncthreads();
  out[blockIdx.x * 128 + threadIdx.x] = tile[127 - threadIdx.x];
}

TEST_P(EmulatorTest, SyncthreadsOrdersSharedMemoryWritesBeforeReads) {
  std::vector<int> values(256);
  std::iota(values.begin(), values.end(), 0);
  GuardedArray<int> in(values), out(256, -1);
  Launch("reverse_in_shared<true>", 2, 128).run(reverse_in_shared<true>, in.data(), out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess) << cuda_emu::last_failure();
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < 128; ++t) ASSERT_EQ(out[b * 128 + t], b * 128 + 127 - t);
  }
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EMU_TEST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(EMU_TEST_TSAN)
#define EMU_TEST_TSAN 1
#endif

#if defined(EMU_TEST_TSAN)
// Under ThreadSanitizer the emulator reports what no barrier orders (see cuda_emu.cpp); a
// report makes the run fail, so the racy kernels run in a child process.
void expect_race_report(void (*launch)()) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        launch();
        std::exit(0);
      },
      [](int) { return true; }, "ThreadSanitizer: data race");
}
#endif

// The emulator must expose a kernel that forgets the barrier: a thread runs on until it
// synchronises, so it reads its neighbours' slots before they are written (and under
// ThreadSanitizer the unordered accesses are reported).
TEST(Emulator, AMissingSyncthreadsGivesWrongResults) {
  cuda_emu::set_order(Order::kForward);
  static const auto launch = [] {
    std::vector<int> values(128);
    std::iota(values.begin(), values.end(), 1000);
    GuardedArray<int> in(values), out(128, -1);
    Launch("reverse_in_shared<false>", 1, 128).run(reverse_in_shared<false>, in.data(), out.data());
    int wrong = 0;
    for (int t = 0; t < 128; ++t) wrong += out[t] != 1000 + 127 - t;
    return wrong;
  };
#if defined(EMU_TEST_TSAN)
  expect_race_report([] { launch(); });
#else
  EXPECT_GT(launch(), 0);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
#endif
}

#if defined(EMU_TEST_TSAN)
__global__ void every_thread_writes_one_address(int* out) { out[0] = static_cast<int>(threadIdx.x); }
__global__ void every_thread_adds_atomically(int* out) { atomicAdd(out, 1); }

TEST(EmulatorRaces, UnorderedWritesToOneAddressAreReportedAndAtomicsAreNot) {
  expect_race_report([] {
    GuardedArray<int> out(1, 0);
    Launch("every_thread_writes_one_address", 1, 64).run(every_thread_writes_one_address, out.data());
  });
  GuardedArray<int> out(1, 0);
  Launch("every_thread_adds_atomically", 2, 64).run(every_thread_adds_atomically, out.data());
  EXPECT_EQ(out[0], 128);  // and no report: the suite's run would fail
}
#endif

template <int kWidth>
__global__ void segment_sums(const float* in, float* out) {
  float v = in[blockIdx.x * blockDim.x + threadIdx.x];
  for (int offset = kWidth / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset, kWidth);
  if (threadIdx.x % kWidth == 0) out[(blockIdx.x * blockDim.x + threadIdx.x) / kWidth] = v;
}

// Groups of lanes that each synchronise only among themselves (as csr::cuda::group_sum does).
__global__ void group_masked_sums(const float* in, float* out) {
  constexpr unsigned kGroup = 8;
  const unsigned lane = threadIdx.x & 31u;
  const unsigned mask = ((1u << kGroup) - 1u) << (lane & ~(kGroup - 1u));
  float v = in[threadIdx.x];
  // Groups run different numbers of rounds: the emulator must not need the whole warp.
  const int rounds = 1 + static_cast<int>(lane / kGroup);
  for (int r = 0; r < rounds; ++r) {
    for (unsigned offset = kGroup / 2; offset > 0; offset /= 2) v += __shfl_down_sync(mask, v, offset, kGroup);
    v = __shfl_sync(mask, v, 0, kGroup);
  }
  out[threadIdx.x] = v;
}

TEST_P(EmulatorTest, ShuffleReductionsSumEachSegment) {
  std::vector<float> values(256);
  for (int i = 0; i < 256; ++i) values[i] = static_cast<float>(i % 17);
  GuardedArray<float> in(values), out32(8, 0.f), out8(32, 0.f);
  Launch("segment_sums<32>", 2, 128).run(segment_sums<32>, in.data(), out32.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess) << cuda_emu::last_failure();
  Launch("segment_sums<8>", 2, 128).run(segment_sums<8>, in.data(), out8.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess) << cuda_emu::last_failure();
  for (int s = 0; s < 8; ++s) {
    EXPECT_EQ(out32[s], std::accumulate(values.begin() + s * 32, values.begin() + s * 32 + 32, 0.f));
  }
  for (int s = 0; s < 32; ++s) {
    EXPECT_EQ(out8[s], std::accumulate(values.begin() + s * 8, values.begin() + s * 8 + 8, 0.f));
  }
}

TEST_P(EmulatorTest, MaskedGroupsOfAWarpSynchroniseIndependently) {
  std::vector<float> values(64);
  for (int i = 0; i < 64; ++i) values[i] = static_cast<float>(i);
  GuardedArray<float> in(values), out(64, 0.f);
  Launch("group_masked_sums", 1, 64).run(group_masked_sums, in.data(), out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess) << cuda_emu::last_failure();
  for (int i = 0; i < 64; ++i) {
    const int group = i / 8, rounds = 1 + (i % 32) / 8;
    float v = 0;
    for (int j = 0; j < 8; ++j) v += values[group * 8 + j];
    for (int r = 1; r < rounds; ++r) v *= 8;  // each later round sums 8 copies of the broadcast
    EXPECT_EQ(out[i], v) << i;
  }
}

__global__ void ballot_and_butterfly(const int* in, unsigned* ballots, int* maxima, int* active_sums) {
  const int v = in[threadIdx.x];
  const unsigned active = __ballot_sync(0xffffffffu, v % 3 == 0);
  int m = v;
  for (int bit = 16; bit > 0; bit /= 2) {
    const int other = __shfl_xor_sync(0xffffffffu, m, bit);
    m = other > m ? other : m;
  }
  if ((threadIdx.x & 31u) == 0) ballots[threadIdx.x / 32] = active;
  maxima[threadIdx.x] = m;
  // __ffs walks the ballot's lanes in order, as the CSR event scatter does.
  unsigned rest = active;
  int sum = 0;
  while (rest != 0u) {
    const int src = __ffs(static_cast<int>(rest)) - 1;
    rest &= rest - 1u;
    sum += __shfl_sync(0xffffffffu, v, src);
  }
  active_sums[threadIdx.x] = sum;
}

TEST_P(EmulatorTest, BallotAndXorShufflesSeeEveryLane) {
  std::vector<int> values(64);
  for (int i = 0; i < 64; ++i) values[i] = (i * 37) % 101;
  GuardedArray<int> in(values), maxima(64, 0), active_sums(64, 0);
  GuardedArray<unsigned> ballots(2, 0u);
  Launch("ballot_and_butterfly", 1, 64)
      .run(ballot_and_butterfly, in.data(), ballots.data(), maxima.data(), active_sums.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess) << cuda_emu::last_failure();
  for (int w = 0; w < 2; ++w) {
    unsigned expect = 0;
    int max = 0, sum = 0;
    for (int l = 0; l < 32; ++l) {
      if (values[w * 32 + l] % 3 == 0) {
        expect |= 1u << l;
        sum += values[w * 32 + l];
      }
      max = std::max(max, values[w * 32 + l]);
    }
    EXPECT_EQ(ballots[w], expect);
    for (int l = 0; l < 32; ++l) {
      EXPECT_EQ(maxima[w * 32 + l], max);
      EXPECT_EQ(active_sums[w * 32 + l], sum);
    }
  }
}

__global__ void count_with_atomics(unsigned* counter, double* sum) {
  atomicAdd(counter, 1u);
  atomicAdd(sum, 0.5);
}

TEST_P(EmulatorTest, AtomicsCountEveryThread) {
  GuardedArray<unsigned> counter(1, 0u);
  GuardedArray<double> sum(1, 0.0);
  Launch("count_with_atomics", dim3(5, 3), 96).run(count_with_atomics, counter.data(), sum.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(counter[0], 5u * 3u * 96u);
  EXPECT_EQ(sum[0], 5 * 3 * 96 * 0.5);
}

INSTANTIATE_TEST_SUITE_P(Orders, EmulatorTest, ::testing::ValuesIn(kOrders),
                         [](const auto& info) { return std::string(cuda_emu::order_name(info.param)); });

// ---- Failures the emulator must report ---------------------------------------------------------

__global__ void barrier_after_early_return(int* out) {
  if (threadIdx.x >= 100) return;
  out[threadIdx.x] = 1;
  __syncthreads();
}

__global__ void shuffle_leaving_out_odd_lanes(int* out) {
  out[threadIdx.x] = __shfl_sync(0x55555555u, static_cast<int>(threadIdx.x), 0);
}

__global__ void shuffle_from_outside_the_mask(int* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, static_cast<int>(threadIdx.x), 20);
}

__global__ void shuffle_under_a_branch(int* out) {
  // Half the warp skips the shuffle that the full mask says all 32 lanes take part in.
  if (threadIdx.x % 2 == 0) out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1, 1);
}

__global__ void different_intrinsics_under_one_mask(int* out) {
  if (threadIdx.x < 16) {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
  } else {
    out[threadIdx.x] = static_cast<int>(__ballot_sync(0xffffffffu, 1));
  }
}

TEST(EmulatorFailures, ABarrierThatSomeThreadsNeverReachIsADeadlockNamingTheWaiters) {
  GuardedArray<int> out(128, 0);
  Launch("barrier_after_early_return", 1, 128).run(barrier_after_early_return, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  const std::string why = cuda_emu::last_failure();
  EXPECT_NE(why.find("barrier_after_early_return: deadlock in block (0,0,0)"), std::string::npos) << why;
  EXPECT_NE(why.find("100 thread(s) wait at __syncthreads"), std::string::npos) << why;
  EXPECT_NE(why.find("28 of 128 thread(s) have exited"), std::string::npos) << why;
}

TEST(EmulatorFailures, AShuffleWhoseMaskLeavesOutTheCallerFails) {
  GuardedArray<int> out(32, 0);
  Launch("shuffle_leaving_out_odd_lanes", 1, 32).run(shuffle_leaving_out_odd_lanes, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_NE(cuda_emu::last_failure().find("which leaves out the calling lane 1"), std::string::npos)
      << cuda_emu::last_failure();
}

TEST(EmulatorFailures, AShuffleFromALaneOutsideTheMaskFails) {
  GuardedArray<int> out(32, 0);
  Launch("shuffle_from_outside_the_mask", 1, 32).run(shuffle_from_outside_the_mask, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_NE(cuda_emu::last_failure().find("reads lane 20, which is not in its mask 0x0000ffff"), std::string::npos)
      << cuda_emu::last_failure();
}

TEST(EmulatorFailures, AFullMaskShuffleUnderABranchIsADeadlock) {
  GuardedArray<int> out(32, 0);
  Launch("shuffle_under_a_branch", 1, 32).run(shuffle_under_a_branch, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_NE(cuda_emu::last_failure().find("16 thread(s) wait at __shfl_down_sync (warp 0, mask 0xffffffff)"),
            std::string::npos)
      << cuda_emu::last_failure();
}

TEST(EmulatorFailures, LanesMeetingDifferentIntrinsicsFail) {
  cuda_emu::set_order(Order::kForward);
  GuardedArray<int> out(32, 0);
  Launch("different_intrinsics_under_one_mask", 1, 32).run(different_intrinsics_under_one_mask, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_NE(cuda_emu::last_failure().find("__ballot_sync with mask 0xffffffff while other lanes of the mask wait at "
                                          "__shfl_sync"),
            std::string::npos)
      << cuda_emu::last_failure();
}

TEST(EmulatorFailures, LaunchesOutsideCudasLimitsAreInvalidConfigurations) {
  GuardedArray<unsigned> out(1, 0u);
  Launch("write_coordinates", 1, 2048).run(write_coordinates, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_NE(cuda_emu::last_failure().find("block (2048,1,1) is outside CUDA's limits"), std::string::npos);
  Launch("write_coordinates", dim3(1, 70000), 32).run(write_coordinates, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  Launch("write_coordinates", 0, 32).run(write_coordinates, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(out[0], 0u);  // nothing ran
}

TEST(EmulatorFailures, ALaunchAfterAFailureRunsNormallyAndLaunchesAreLogged) {
  GuardedArray<int> bad(128, 0);
  Launch("barrier_after_early_return", 1, 128).run(barrier_after_early_return, bad.data());
  ASSERT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  cuda_emu::clear_launches();
  GuardedArray<unsigned> out(64, 0u);
  Launch("write_coordinates", 2, 32).run(write_coordinates, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cuda_emu::last_failure(), "");
  EXPECT_EQ(out[63], 1000u + 31u + 1u);
  ASSERT_EQ(cuda_emu::launches().size(), 1u);
  EXPECT_EQ(cuda_emu::launches()[0].kernel, "write_coordinates");
  EXPECT_EQ(cuda_emu::launches()[0].grid.x, 2u);
  EXPECT_EQ(cuda_emu::launches()[0].block.x, 32u);
}

TEST(EmulatorFailures, GuardedArraysFaultPastTheirEnd) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  GuardedArray<float> a(1000, 1.f);
  a[999] = 2.f;  // the last element is fine
  EXPECT_DEATH({ a.data()[1000] = 3.f; }, "");
}

// ---- Half types ---------------------------------------------------------------------------------

TEST(EmulatorHalf, KnownEncodingsAndTiesToEven) {
  EXPECT_EQ(__float2half(1.0f).__x, 0x3c00);
  EXPECT_EQ(__float2half(-2.0f).__x, 0xc000);
  EXPECT_EQ(__float2half(65504.0f).__x, 0x7bff);
  EXPECT_EQ(__float2half(65519.0f).__x, 0x7bff);
  EXPECT_EQ(__float2half(65520.0f).__x, 0x7c00);  // the tie above the largest half rounds to infinity
  EXPECT_EQ(__double2half(0x1p-24).__x, 0x0001);
  EXPECT_EQ(__double2half(0x1p-25).__x, 0x0000);      // tie between 0 and the smallest subnormal: even
  EXPECT_EQ(__double2half(0x1.8p-24).__x, 0x0002);    // tie between 1 and 2 subnormal steps: even
  EXPECT_EQ(__double2half(1.0 + 0x1p-11).__x, 0x3c00);  // tie: even
  EXPECT_EQ(__double2half(1.0 + 0x1.8p-10).__x, 0x3c02);
  EXPECT_EQ(__double2half(0x1.ffcp-15).__x, 0x0400);  // rounds up into the normals
  // double -> half directly, not through float: 1 + 2^-11 + 2^-40 rounds up, while rounding
  // to float first would land on the tie and round to even.
  EXPECT_EQ(__double2half(1.0 + 0x1p-11 + 0x1p-40).__x, 0x3c01);
  EXPECT_EQ(__float2bfloat16(1.0f).__x, 0x3f80);
  EXPECT_EQ(__float2bfloat16(1.0f + 0x1p-8f).__x, 0x3f80);
  EXPECT_EQ(__float2bfloat16(1.0f + 0x1.8p-7f).__x, 0x3f82);
  EXPECT_EQ(__float2bfloat16(-0.0f).__x, 0x8000);
  EXPECT_TRUE(std::isnan(__half2float(__float2half(NAN))));
  EXPECT_EQ(__bfloat162float(__nv_bfloat16{0x0001}), 0x1p-133f);
}

TEST(EmulatorHalf, EveryEncodingRoundTrips) {
  for (unsigned bits = 0; bits < 65536; ++bits) {
    const auto b = static_cast<unsigned short>(bits);
    const float h = __half2float(__half{b});
    const float bf = __bfloat162float(__nv_bfloat16{b});
    if (!std::isnan(h)) {
      ASSERT_EQ(__float2half(h).__x, b) << bits;
    }
    if (!std::isnan(bf)) {
      ASSERT_EQ(__float2bfloat16(bf).__x, b) << bits;
    }
  }
}

}  // namespace
