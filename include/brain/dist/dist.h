// Distributed simulation (issue: many processes and many machines): a network split over
// processes that torchrun starts, talking through torch.distributed's process groups (Gloo on
// the CPU).
//
// Partitioning: every population of N neurons is cut into contiguous blocks, one per rank
// (block_of); a rank owns its neurons' states and every synapse onto them, built on the rank
// from global indices (build_ei_network_shard in brain/models/networks.h), so no rank holds
// the whole connectivity. Each step, every rank updates its neurons; the spikes are then
// exchanged (exchange_spikes) so that each rank delivers every presynaptic spike of the
// network onto its own postsynaptic neurons. With a minimum delay of d >= 1 steps over all
// projections, ranks exchange once every d steps (NEST's scheme): a spike emitted at step s
// is delivered at step s + d at the earliest, by which time its window has been exchanged.
//
// Results do not depend on the number of processes: random numbers are drawn as on one
// process (keyed on seeds and global indices) and sliced, the global spike list of a
// population is its ranks' lists concatenated in rank order (ascending global indices, the
// order one process visits them in), and every postsynaptic sum runs over the presynaptic
// spikes in that order. tests/python/test_distributed.py checks bit-identical monitors on 1,
// 2 and 4 processes.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include <brain/export.h>

namespace brain::dist {

// The neurons [offset, offset + size) of a population of n that rank `rank` of `world` owns:
// contiguous blocks whose sizes differ by at most one, the larger ones first.
struct Block {
  int64_t offset = 0;
  int64_t size = 0;
};
BRAIN_API Block block_of(int64_t n, int rank, int world);

// A collective operation failed: a peer died, hung past the timeout or closed its end.
class BRAIN_API CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The collectives a distributed run needs, over a process group. Every rank calls each one
// in the same order with tensors of the same shape and dtype. Failures raise CommError.
class BRAIN_API Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string describe() const = 0;  // e.g. "gloo, 4 processes (127.0.0.1:29500)"
  // Every rank's contiguous CPU tensor, in rank order.
  virtual std::vector<at::Tensor> all_gather(const at::Tensor& t) = 0;
  // Every rank's tensor on `root` (in rank order); an empty list on the other ranks.
  virtual std::vector<at::Tensor> gather(const at::Tensor& t, int root) = 0;
  // Elementwise sum over ranks, returned on every rank.
  virtual at::Tensor all_reduce_sum(const at::Tensor& t) = 0;
  virtual void barrier() = 0;
};

// The process group torchrun describes in the environment (RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT; TORCHELASTIC_USE_AGENT_STORE: the launcher hosts the rendezvous store), as
// torch.distributed's env:// initialisation reads it. `timeout` bounds every collective and
// the rendezvous: a rank that died or hangs makes the others fail with CommError within it.
// Throws std::runtime_error with what is missing when the environment is incomplete, or
// when libbrain was built without distributed support.
BRAIN_API std::shared_ptr<Collective> connect_from_env(std::chrono::milliseconds timeout);

// Whether torchrun (or a user) asked for more than one process: WORLD_SIZE > 1.
BRAIN_API bool launched_distributed();
// Whether this libbrain can run distributed (it was built with the Gloo headers).
BRAIN_API bool available();

// How spikes travel in an exchange: compacted global indices or bit masks, whichever is
// smaller for that population and step (Auto), or one of them always (to test both).
enum class Encoding { Auto, Indices, Masks };

struct ExchangeStats {
  int64_t exchanges = 0;       // exchanges (each one all-gather, or two when spikes overflow the first)
  int64_t inline_rounds = 0;   // exchanges done in one all-gather
  int64_t inline_words = 64;   // spikes the first all-gather carries; adapted alike on every rank
  int64_t steps = 0;           // steps exchanged
  int64_t bytes_sent = 0;      // by this rank, counts and payloads
  int64_t index_messages = 0;  // (population, step) pairs sent as indices
  int64_t mask_messages = 0;   // ... and as bit masks
  double seconds = 0;          // wall time in the collectives
};

// One exchange. The first all-gather carries every rank's spike counts, a failure flag and,
// up to an adaptive capacity, the spikes themselves as indices; only when some rank's spikes
// do not fit does a second one follow, in the layout all ranks derive from the counts.
// global_sizes[p]: neurons of population p in the whole network.
// local[k][p]: the spikes of population p at the round's k-th step on this rank, as local
// indices in increasing order. Fills global[k][p]: every rank's spikes as global indices, in
// increasing order. All ranks call it with the same number of steps and populations. A rank
// whose run failed (a NaN, say) still takes part, with this_rank_failed: then nothing is
// exchanged and every rank learns it. Returns the lowest failed rank, or -1.
using SpikeLists = std::vector<std::vector<std::vector<int32_t>>>;  // [step][population][spike]
BRAIN_API int exchange_spikes(Collective& comm, const std::vector<int64_t>& global_sizes, const SpikeLists& local,
                              Encoding encoding, ExchangeStats& stats, SpikeLists& global, bool this_rank_failed = false);

// A run of one rank's share of a network (RunnerOptions::partition). The fast engine looks up
// each population's global size by its path, reads its block from the rank, and exchanges
// spikes through `comm`.
struct Partition {
  std::shared_ptr<Collective> comm;
  std::map<std::string, int64_t> global_sizes;  // by population path, e.g. {"E": 3200}
  Encoding encoding = Encoding::Auto;
  ExchangeStats stats;  // accumulated over the runs that use this partition

  // With `merge`, the Runner returns what one process would: each monitor's recordings merged
  // on rank 0 (gather_columns; an empty tensor on the other ranks) and the spike counts of the
  // whole network on every rank. It can then also write checkpoints, in a layout that does
  // not depend on the number of processes: states and recordings as one process holds them,
  // written by rank 0; any number of processes (one included) resumes them. Without it,
  // recordings and counts cover this rank's neurons, and checkpoints are refused.
  bool merge = false;
  // Per monitor key: the global indices each rank records (columns[r], in its recording's
  // order) and the global indices of the merged recording, in order.
  struct MonitorColumns {
    std::vector<std::vector<int64_t>> columns;
    std::vector<int64_t> wanted;
  };
  std::map<std::string, MonitorColumns> monitor_columns;
};

// Monitors recorded on each rank for the neurons it owns, merged on `root` in the global
// order. local: [samples, columns this rank recorded]; columns[r]: the global indices rank r
// recorded, in its order; wanted: the global indices of the merged recording, in order (each
// recorded by exactly one rank). Returns the merged [samples, wanted.size()] on root, an
// undefined tensor elsewhere.
BRAIN_API at::Tensor gather_columns(Collective& comm, const at::Tensor& local,
                                    const std::vector<std::vector<int64_t>>& columns,
                                    const std::vector<int64_t>& wanted, int root = 0);

}  // namespace brain::dist
