// The CUDA emulator's scheduler: blocks run one at a time, each CUDA thread of a block is a
// fiber, and a fiber runs until it finishes or waits at a synchronisation point (see
// cuda_emu.h for what this checks and what it cannot).
#include "emu/cuda_emu.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUDA_EMU_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define CUDA_EMU_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(CUDA_EMU_ASAN)
#define CUDA_EMU_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(CUDA_EMU_TSAN)
#define CUDA_EMU_TSAN 1
#endif

// The sanitizers must be told when the stack changes under them.
#if defined(CUDA_EMU_ASAN)
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, std::size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, std::size_t* size_old);
}
#endif
// Under ThreadSanitizer each CUDA thread is a TSan fiber, and switching between fibers orders
// nothing (__tsan_switch_to_fiber_no_sync). What orders the threads of a block is what orders
// them on a GPU: a barrier or warp intrinsic releases each arriving thread's accesses and the
// threads leaving it acquire them. So an access pair from two threads of a block that no
// barrier separates, and that is not two atomics, is reported as a data race: a race check
// within each block, as compute-sanitizer's racecheck does for shared memory, here for global
// memory too. Blocks are ordered one after the other (a block's exits are acquired before the
// next block starts), so races between blocks are not reported. The emulator's own
// bookkeeping, which fibers and scheduler share, is hidden from TSan (IgnoreAccesses).
#if defined(CUDA_EMU_TSAN)
extern "C" {
void* __tsan_get_current_fiber();
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void AnnotateIgnoreReadsBegin(const char* file, int line);
void AnnotateIgnoreReadsEnd(const char* file, int line);
void AnnotateIgnoreWritesBegin(const char* file, int line);
void AnnotateIgnoreWritesEnd(const char* file, int line);
}
namespace {
constexpr unsigned kTsanNoSync = 1;  // __tsan_switch_to_fiber_no_sync
struct IgnoreAccesses {
  IgnoreAccesses() {
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
  }
  ~IgnoreAccesses() {
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  }
};
void tsan_release(void* sync) { __tsan_release(sync); }
void tsan_acquire(void* sync) { __tsan_acquire(sync); }
}  // namespace
#else
namespace {
struct IgnoreAccesses {
  IgnoreAccesses() {}  // (user-provided: an unused guard is not a warning)
};
void tsan_release(void*) {}
void tsan_acquire(void*) {}
}  // namespace
#endif

uint3 threadIdx{0, 0, 0};
uint3 blockIdx{0, 0, 0};
dim3 blockDim;
dim3 gridDim;

namespace {
cudaError_t g_last_error = cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind, cudaStream_t) {
  if (bytes != 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t bytes, cudaStream_t) {
  if (bytes != 0) std::memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_last_error; }
const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

namespace cuda_emu {
namespace {

using detail::WarpOp;

std::size_t page_bytes() {
  static const std::size_t bytes = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return bytes;
}

// A fiber stack with an inaccessible page below it, so an overflow faults.
class Stack {
 public:
  static constexpr std::size_t kBytes = 256 * 1024;
  Stack() {
    mapping_bytes_ = kBytes + page_bytes();
    mapping_ = mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping_ == MAP_FAILED) {
      std::fprintf(stderr, "cuda_emu: cannot map a fiber stack\n");
      std::abort();
    }
    mprotect(mapping_, page_bytes(), PROT_NONE);
  }
  ~Stack() { munmap(mapping_, mapping_bytes_); }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  void* bottom() const { return static_cast<char*>(mapping_) + page_bytes(); }

 private:
  void* mapping_ = nullptr;
  std::size_t mapping_bytes_ = 0;
};

struct Fiber {
  ucontext_t context;
  Stack* stack = nullptr;
  uint3 tid{0, 0, 0};
  unsigned linear = 0;
  bool done = false;
  bool started = false;
  // While waiting: the counter that must move past wait_generation, and what it waits at.
  const std::uint64_t* wait_counter = nullptr;
  std::uint64_t wait_generation = 0;
  int wait_op = -1;  // -1: __syncthreads, else a WarpOp
  unsigned wait_mask = 0;
#if defined(CUDA_EMU_ASAN)
  void* fake_stack = nullptr;
#endif
#if defined(CUDA_EMU_TSAN)
  void* tsan_fiber = nullptr;
#endif
};

struct WarpSync {
  unsigned mask = 0;
  WarpOp op = WarpOp::kShfl;
  int arrived = 0;
  std::uint64_t generation = 0;
  std::uint64_t slots[2][32] = {};  // by generation parity: see warp_exchange
  char tsan_sync[2] = {};            // the addresses that order the lanes, by generation parity
};

struct Block {
  std::vector<Fiber> fibers;
  unsigned n_threads = 0;
  std::uint64_t barrier_generation = 0;
  unsigned barrier_arrived = 0;
  char barrier_tsan_sync[2] = {};
  char exit_tsan_sync = 0;
  std::vector<std::deque<WarpSync>> warps;  // deque: waiters hold pointers into it
  Fiber* current = nullptr;
  ucontext_t scheduler;
  void (*body)(void*) = nullptr;
  void* body_context = nullptr;
  const char* kernel = "";
  bool failed = false;
#if defined(CUDA_EMU_ASAN)
  void* scheduler_fake_stack = nullptr;
  const void* scheduler_stack_bottom = nullptr;
  std::size_t scheduler_stack_size = 0;
#endif
#if defined(CUDA_EMU_TSAN)
  void* scheduler_tsan_fiber = nullptr;
#endif
};

Block* g_block = nullptr;
std::string g_last_failure;
std::vector<LaunchRecord> g_launches;
Order g_order = Order::kForward;
std::mt19937_64 g_rng{1};
std::vector<std::unique_ptr<Stack>> g_stacks;  // reused by every block

const char* op_name(int op) {
  switch (op) {
    case -1: return "__syncthreads";
    case static_cast<int>(WarpOp::kShfl): return "__shfl_sync";
    case static_cast<int>(WarpOp::kShflDown): return "__shfl_down_sync";
    case static_cast<int>(WarpOp::kShflUp): return "__shfl_up_sync";
    case static_cast<int>(WarpOp::kShflXor): return "__shfl_xor_sync";
    case static_cast<int>(WarpOp::kBallot): return "__ballot_sync";
    case static_cast<int>(WarpOp::kSyncWarp): return "__syncwarp";
  }
  return "?";
}

std::string describe_thread(const Fiber& f) {
  std::ostringstream s;
  s << "thread (" << f.tid.x << "," << f.tid.y << "," << f.tid.z << ") of block (" << blockIdx.x << ","
    << blockIdx.y << "," << blockIdx.z << ")";
  return s.str();
}

// Back to the scheduler from a fiber; returns when the scheduler resumes it (never when exiting).
void yield_to_scheduler(Fiber& f, bool exiting) {
  Block* b;
  {
    // Scoped, and ended before the switch: TSan's ignores belong to the fiber that is current.
    IgnoreAccesses ignore;
    b = g_block;
  }
#if defined(CUDA_EMU_ASAN)
  __sanitizer_start_switch_fiber(exiting ? nullptr : &f.fake_stack, b->scheduler_stack_bottom, b->scheduler_stack_size);
#endif
#if defined(CUDA_EMU_TSAN)
  void* scheduler_fiber;
  {
    IgnoreAccesses ignore;
    scheduler_fiber = b->scheduler_tsan_fiber;
  }
  if (exiting) tsan_release(&b->exit_tsan_sync);
  __tsan_switch_to_fiber(scheduler_fiber, kTsanNoSync);
#endif
  swapcontext(&f.context, &b->scheduler);
#if defined(CUDA_EMU_ASAN)
  __sanitizer_finish_switch_fiber(f.fake_stack, &b->scheduler_stack_bottom, &b->scheduler_stack_size);
#endif
  (void)exiting;
}

Fiber& current_fiber(const char* what) {
  if (g_block == nullptr || g_block->current == nullptr) {
    std::fprintf(stderr, "cuda_emu: %s called outside a kernel\n", what);
    std::abort();
  }
  return *g_block->current;
}

// Thrown through a fiber's kernel frames to end it once its launch has failed: the frames
// unwind on the fiber's own stack and fiber_main catches it.
struct Abandon {};

// Ends the launch as a failure; every fiber of the block then unwinds (run_block).
[[noreturn]] void fail(const std::string& message) {
  IgnoreAccesses ignore;
  Fiber& f = current_fiber("a failing check");
  if (!g_block->failed) {
    g_block->failed = true;
    g_last_failure = std::string(g_block->kernel) + ": " + describe_thread(f) + ": " + message;
  }
  throw Abandon{};
}

void wait_for(const std::uint64_t* counter, int op, unsigned mask) {
  Fiber& f = *g_block->current;
  f.wait_counter = counter;
  f.wait_generation = *counter;
  f.wait_op = op;
  f.wait_mask = mask;
  yield_to_scheduler(f, false);
  if (g_block->failed) throw Abandon{};
}

void fiber_main() {
  Block& b = *g_block;
#if defined(CUDA_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &b.scheduler_stack_bottom, &b.scheduler_stack_size);
#endif
  if (!b.failed) {
    try {
      b.body(b.body_context);
    } catch (const Abandon&) {
    }
  }
  Fiber* f;
  {
    IgnoreAccesses ignore;  // ended before the switch: TSan checks a fiber's ignores when it ends
    f = b.current;
    f->done = true;
  }
  yield_to_scheduler(*f, true);
}

void resume(Block& b, Fiber& f) {
  b.current = &f;
  threadIdx = f.tid;
#if defined(CUDA_EMU_ASAN)
  __sanitizer_start_switch_fiber(&b.scheduler_fake_stack, f.stack->bottom(), Stack::kBytes);
#endif
#if defined(CUDA_EMU_TSAN)
  // A thread's first start is ordered after the launch (its arguments, the host's writes).
  __tsan_switch_to_fiber(f.tsan_fiber, f.started ? kTsanNoSync : 0);
#endif
  f.started = true;
  swapcontext(&b.scheduler, &f.context);
#if defined(CUDA_EMU_ASAN)
  __sanitizer_finish_switch_fiber(b.scheduler_fake_stack, nullptr, nullptr);
#endif
  b.current = nullptr;
}

std::string describe_deadlock(const Block& b) {
  // Waiters grouped by what they wait at (and the warp and mask for warp intrinsics).
  std::map<std::string, unsigned> groups;
  unsigned exited = 0;
  for (const Fiber& f : b.fibers) {
    if (f.done) {
      ++exited;
      continue;
    }
    std::ostringstream key;
    key << op_name(f.wait_op);
    if (f.wait_op >= 0) {
      char mask[16];
      std::snprintf(mask, sizeof mask, "0x%08x", f.wait_mask);
      key << " (warp " << f.linear / 32 << ", mask " << mask << ")";
    }
    ++groups[key.str()];
  }
  std::ostringstream s;
  s << "deadlock in block (" << blockIdx.x << "," << blockIdx.y << "," << blockIdx.z << "): ";
  bool first = true;
  for (const auto& [what, n] : groups) {
    s << (first ? "" : "; ") << n << " thread(s) wait at " << what;
    first = false;
  }
  s << "; " << exited << " of " << b.n_threads << " thread(s) have exited";
  return s.str();
}

// Apart from run_block: getcontext returns twice, which would put run_block's locals at risk.
__attribute__((noinline)) void prepare_context(Fiber& f, Stack* stack) {
  f.stack = stack;
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = stack->bottom();
  f.context.uc_stack.ss_size = Stack::kBytes;
  f.context.uc_link = nullptr;
  makecontext(&f.context, fiber_main, 0);
}

void run_block(Block& b) {
  const unsigned n = b.n_threads;
  while (g_stacks.size() < n) g_stacks.push_back(std::make_unique<Stack>());
  b.fibers.assign(n, Fiber{});
  b.warps.assign((n + 31) / 32, {});
  b.barrier_generation = 0;
  b.barrier_arrived = 0;
#if defined(CUDA_EMU_TSAN)
  b.scheduler_tsan_fiber = __tsan_get_current_fiber();
#endif
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    f.linear = i;
    f.tid = uint3{i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
    prepare_context(f, g_stacks[i].get());
#if defined(CUDA_EMU_TSAN)
    f.tsan_fiber = __tsan_create_fiber(0);
#endif
  }
  std::vector<unsigned> order(n);
  std::iota(order.begin(), order.end(), 0u);
  if (g_order == Order::kReverse) std::reverse(order.begin(), order.end());
  unsigned live = n;
  while (live > 0 && !b.failed) {
    if (g_order == Order::kShuffled) std::shuffle(order.begin(), order.end(), g_rng);
    bool progressed = false;
    for (unsigned i : order) {
      Fiber& f = b.fibers[i];
      if (f.done || (f.wait_counter != nullptr && *f.wait_counter == f.wait_generation)) continue;
      f.wait_counter = nullptr;
      resume(b, f);
      progressed = true;
      if (f.done) --live;
      if (b.failed) break;
    }
    if (!progressed) {
      b.failed = true;
      g_last_failure = std::string(b.kernel) + ": " + describe_deadlock(b);
    }
  }
  // After a failure, the fibers still waiting (or not yet started) end: each resumes, sees the
  // failure and unwinds.
  if (b.failed) {
    for (Fiber& f : b.fibers) {
      if (!f.done) resume(b, f);
    }
  }
#if defined(CUDA_EMU_TSAN)
  for (Fiber& f : b.fibers) __tsan_destroy_fiber(f.tsan_fiber);
#endif
  tsan_acquire(&b.exit_tsan_sync);  // the next block (and the host) comes after this one
}

std::string check_config(dim3 grid, dim3 block, std::size_t shared_bytes) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  std::ostringstream s;
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
    s << "block (" << block.x << "," << block.y << "," << block.z
      << ") is outside CUDA's limits (1 to 1024 threads; x, y <= 1024, z <= 64)";
  } else if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 ||
             grid.z > 65535) {
    s << "grid (" << grid.x << "," << grid.y << "," << grid.z
      << ") is outside CUDA's limits (x in [1, 2^31 - 1]; y, z in [1, 65535])";
  } else if (shared_bytes > 48 * 1024) {
    s << shared_bytes << " bytes of dynamic shared memory without an opt-in (at most 49152)";
  }
  return s.str();
}

}  // namespace

void set_order(Order order, std::uint64_t seed) {
  g_order = order;
  g_rng.seed(seed);
}

const std::vector<LaunchRecord>& launches() { return g_launches; }
void clear_launches() { g_launches.clear(); }
const std::string& last_failure() { return g_last_failure; }

namespace detail {

unsigned lane_id() {
  IgnoreAccesses ignore;
  return current_fiber("a warp intrinsic").linear % 32;
}

void check_width(int width, const char* intrinsic) {
  IgnoreAccesses ignore;
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    fail(std::string(intrinsic) + " with width " + std::to_string(width) + ", not a power of two <= 32");
  }
}

void block_barrier() {
  IgnoreAccesses ignore;
  current_fiber("__syncthreads");
  Block& b = *g_block;
  char* sync = &b.barrier_tsan_sync[b.barrier_generation & 1u];
  tsan_release(sync);
  if (++b.barrier_arrived == b.n_threads) {
    b.barrier_arrived = 0;
    ++b.barrier_generation;
  } else {
    wait_for(&b.barrier_generation, -1, 0);
  }
  tsan_acquire(sync);
}

std::uint64_t warp_exchange(WarpOp op, unsigned mask, std::uint64_t bits, int src_lane) {
  IgnoreAccesses ignore;
  Fiber& f = current_fiber(op_name(static_cast<int>(op)));
  Block& b = *g_block;
  const unsigned lane = f.linear % 32, warp = f.linear / 32;
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x", mask);
  if (((mask >> lane) & 1u) == 0) {
    fail(std::string(op_name(static_cast<int>(op))) + " with mask " + hex + ", which leaves out the calling lane " +
         std::to_string(lane));
  }
  const unsigned lanes_in_warp = std::min(32u, b.n_threads - warp * 32);
  if (lanes_in_warp < 32 && (mask >> lanes_in_warp) != 0) {
    fail(std::string(op_name(static_cast<int>(op))) + " with mask " + hex + " in a warp of " +
         std::to_string(lanes_in_warp) + " lanes");
  }
  const bool reads_lane = op != WarpOp::kBallot && op != WarpOp::kSyncWarp;
  if (reads_lane && (src_lane < 0 || src_lane > 31 || ((mask >> src_lane) & 1u) == 0)) {
    fail(std::string(op_name(static_cast<int>(op))) + " reads lane " + std::to_string(src_lane) +
         ", which is not in its mask " + hex + " (the value would be undefined)");
  }
  std::deque<WarpSync>& syncs = b.warps[warp];
  auto it = std::find_if(syncs.begin(), syncs.end(), [&](const WarpSync& s) { return s.mask == mask; });
  if (it == syncs.end()) {
    syncs.emplace_back();
    it = std::prev(syncs.end());
    it->mask = mask;
  }
  WarpSync& s = *it;
  if (s.arrived == 0) {
    s.op = op;
  } else if (s.op != op) {
    fail(std::string(op_name(static_cast<int>(op))) + " with mask " + hex + " while other lanes of the mask wait at " +
         op_name(static_cast<int>(s.op)));
  }
  // A lane released from this generation may enter the next exchange (and write its slot)
  // before the others have read theirs; it cannot get two ahead, since the next generation
  // needs every lane. So two slot sets, by parity, suffice.
  const int parity = static_cast<int>(s.generation & 1u);
  s.slots[parity][lane] = bits;
  tsan_release(&s.tsan_sync[parity]);
  if (++s.arrived == __builtin_popcount(mask)) {
    s.arrived = 0;
    ++s.generation;
  } else {
    wait_for(&s.generation, static_cast<int>(op), mask);
  }
  tsan_acquire(&s.tsan_sync[parity]);
  if (op == WarpOp::kBallot) {
    std::uint64_t ballot = 0;
    for (unsigned l = 0; l < 32; ++l) {
      if (((mask >> l) & 1u) != 0 && s.slots[parity][l] != 0) ballot |= 1ull << l;
    }
    return ballot;
  }
  return reads_lane ? s.slots[parity][src_lane] : 0;
}

void run_grid(const char* kernel, dim3 grid, dim3 block, std::size_t shared_bytes, void (*body)(void*),
              void* context) {
  IgnoreAccesses ignore;  // the scheduler's side of the bookkeeping (kernels run on the fibers)
  g_launches.push_back(LaunchRecord{kernel, grid, block});
  g_last_failure.clear();
  const std::string bad_config = check_config(grid, block, shared_bytes);
  if (!bad_config.empty()) {
    g_last_failure = std::string(kernel) + ": " + bad_config;
    g_last_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (g_block != nullptr) {
    std::fprintf(stderr, "cuda_emu: %s launched from inside a kernel\n", kernel);
    std::abort();
  }
  gridDim = grid;
  blockDim = block;
  std::vector<uint3> blocks;
  blocks.reserve(static_cast<std::size_t>(grid.x) * grid.y * grid.z);
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) blocks.push_back(uint3{x, y, z});
    }
  }
  if (g_order == Order::kReverse) std::reverse(blocks.begin(), blocks.end());
  if (g_order == Order::kShuffled) std::shuffle(blocks.begin(), blocks.end(), g_rng);
  Block b;
  b.n_threads = block.x * block.y * block.z;
  b.body = body;
  b.body_context = context;
  b.kernel = kernel;
  g_block = &b;
  for (const uint3& id : blocks) {
    blockIdx = id;
    run_block(b);
    if (b.failed) break;
  }
  g_block = nullptr;
  if (b.failed) g_last_error = cudaErrorLaunchFailure;
}

}  // namespace detail

GuardedBytes::GuardedBytes(std::size_t bytes) {
  const std::size_t page = page_bytes();
  const std::size_t data_pages = (bytes + page - 1) / page;
  mapping_bytes_ = (data_pages + 1) * page;
  mapping_ = mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping_ == MAP_FAILED) {
    std::fprintf(stderr, "cuda_emu: cannot map %zu bytes\n", bytes);
    std::abort();
  }
  char* guard = static_cast<char*>(mapping_) + data_pages * page;
  mprotect(guard, page, PROT_NONE);
  data_ = guard - bytes;
}

GuardedBytes::~GuardedBytes() { munmap(mapping_, mapping_bytes_); }

}  // namespace cuda_emu
