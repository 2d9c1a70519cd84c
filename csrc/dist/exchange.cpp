// Spike exchange and monitor merging over any Collective (brain/dist/dist.h). Torch-light: the
// process group itself lives in csrc/dist/gloo/.
#include <brain/dist/dist.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <brain/config.h>

namespace brain::dist {

Block block_of(int64_t n, int rank, int world) {
  TORCH_CHECK(world >= 1 && rank >= 0 && rank < world, "block_of: rank ", rank, " of ", world, " processes");
  TORCH_CHECK(n >= 0, "block_of: n must be >= 0, got ", n);
  const int64_t base = n / world, extra = n % world;
  Block b;
  b.size = base + (rank < extra ? 1 : 0);
  b.offset = rank * base + std::min<int64_t>(rank, extra);
  return b;
}

bool launched_distributed() {
  const char* w = std::getenv("WORLD_SIZE");
  return w != nullptr && std::atoi(w) > 1;
}

bool available() { return BRAIN_WITH_DISTRIBUTED != 0; }

namespace {

using Clock = std::chrono::steady_clock;

int64_t words_for_bits(int64_t bits) { return (bits + 31) / 32; }

}  // namespace

int exchange_spikes(Collective& comm, const std::vector<int64_t>& global_sizes, const SpikeLists& local,
                    Encoding encoding, ExchangeStats& stats, SpikeLists& global, bool this_rank_failed) {
  const int world = comm.world_size(), me = comm.rank();
  const size_t K = local.size(), P = global_sizes.size();
  for (const auto& step : local) {
    TORCH_CHECK(step.size() == P, "exchange_spikes: ", step.size(), " populations given, ", P, " expected");
  }
  global.assign(K, std::vector<std::vector<int32_t>>(P));
  const auto start = Clock::now();
  stats.steps += static_cast<int64_t>(K);
  if (world == 1) {
    if (!this_rank_failed) global = local;
    return this_rank_failed ? 0 : -1;
  }
  stats.exchanges += 1;

  // Round 1: every rank's spike count per (step, population), so all agree on the layout,
  // whether it failed, and as many of its spikes (as indices) as the inline capacity holds.
  // A round is latency-bound: when every rank's spikes fit, there is no second one.
  const bool inline_allowed = encoding != Encoding::Masks;
  const int64_t capacity = inline_allowed ? stats.inline_words : 0;
  const int64_t header = static_cast<int64_t>(K * P) + 1;
  at::Tensor first = at::zeros({header + capacity}, at::kInt);
  int32_t* c = first.data_ptr<int32_t>();
  int64_t mine = 0;
  for (size_t k = 0; k < K; ++k) {
    for (size_t p = 0; p < P; ++p) {
      const int64_t n = this_rank_failed ? 0 : static_cast<int64_t>(local[k][p].size());
      c[k * P + p] = static_cast<int32_t>(n);
      if (n > 0 && mine + n <= capacity) {  // memcpy from an empty vector's null data() is undefined
        std::memcpy(c + header + mine, local[k][p].data(), static_cast<size_t>(n) * sizeof(int32_t));
      }
      mine += n;
    }
  }
  c[K * P] = this_rank_failed ? 1 : 0;
  const std::vector<at::Tensor> all_counts = comm.all_gather(first);
  stats.bytes_sent += first.numel() * 4;
  std::vector<const int32_t*> rc(world);
  for (int r = 0; r < world; ++r) rc[r] = all_counts[r].data_ptr<int32_t>();
  for (int r = 0; r < world; ++r) {
    if (rc[r][K * P] != 0) {
      stats.seconds += std::chrono::duration<double>(Clock::now() - start).count();
      return r;
    }
  }
  int64_t most_total = 0;
  for (int r = 0; r < world; ++r) {
    int64_t total = 0;
    for (size_t i = 0; i < K * P; ++i) total += rc[r][i];
    most_total = std::max(most_total, total);
  }
  // Every rank adapts the capacity from the same numbers, so they stay in agreement.
  if (inline_allowed) {
    if (most_total > stats.inline_words) {
      stats.inline_words = std::min<int64_t>(std::max<int64_t>(2 * most_total, 64), int64_t{1} << 16);
    } else if (8 * most_total < stats.inline_words && stats.inline_words > 64) {
      stats.inline_words /= 2;
    }
  }
  if (inline_allowed && most_total <= capacity) {
    for (int r = 0; r < world; ++r) {
      const int32_t* data = rc[r] + header;
      for (size_t i = 0; i < K * P; ++i) {
        const size_t p = i % P;
        const auto offset = static_cast<int32_t>(block_of(global_sizes[p], r, world).offset);
        auto& dst = global[i / P][p];
        for (int32_t j = 0; j < rc[r][i]; ++j) dst.push_back(offset + data[j]);
        data += rc[r][i];
      }
    }
    for (size_t i = 0; i < K * P; ++i) stats.index_messages += global[i / P][i % P].empty() ? 0 : 1;
    stats.inline_rounds += 1;
    stats.seconds += std::chrono::duration<double>(Clock::now() - start).count();
    return -1;
  }

  // Round 2: one message per (step, population) in one buffer, every rank's the same length:
  // the largest count as indices, or the largest block as a bit mask, whichever is smaller.
  std::vector<int64_t> words(K * P, 0), start_word(K * P, 0);
  std::vector<uint8_t> as_mask(K * P, 0);
  int64_t total = 0;
  for (size_t p = 0; p < P; ++p) {
    const int64_t mask_words = words_for_bits(block_of(global_sizes[p], 0, world).size);  // rank 0's is largest
    for (size_t k = 0; k < K; ++k) {
      const size_t i = k * P + p;
      int64_t most = 0;
      for (int r = 0; r < world; ++r) most = std::max<int64_t>(most, rc[r][i]);
      if (most == 0) continue;  // nobody spiked: nothing to send
      const bool mask = encoding == Encoding::Masks || (encoding == Encoding::Auto && mask_words < most);
      as_mask[i] = mask;
      words[i] = mask ? mask_words : most;
      start_word[i] = total;
      total += words[i];
      (mask ? stats.mask_messages : stats.index_messages) += 1;
    }
  }
  std::vector<at::Tensor> payloads;
  if (total > 0) {
    at::Tensor payload = at::zeros({total}, at::kInt);
    auto* out = reinterpret_cast<uint32_t*>(payload.data_ptr<int32_t>());
    for (size_t i = 0; i < K * P; ++i) {
      if (words[i] == 0) continue;
      const auto& list = local[i / P][i % P];
      uint32_t* msg = out + start_word[i];
      if (as_mask[i]) {
        for (int32_t s : list) msg[s >> 5] |= uint32_t{1} << (s & 31);
      } else if (!list.empty()) {
        std::memcpy(msg, list.data(), list.size() * sizeof(int32_t));
      }
    }
    payloads = comm.all_gather(payload);
    stats.bytes_sent += total * 4;
  }

  // Decode in rank order: global indices come out increasing, as one process lists them.
  for (size_t i = 0; i < K * P; ++i) {
    auto& dst = global[i / P][i % P];
    const size_t p = i % P;
    if (words[i] == 0) continue;
    int64_t n = 0;
    for (int r = 0; r < world; ++r) n += rc[r][i];
    dst.reserve(static_cast<size_t>(n));
    for (int r = 0; r < world; ++r) {
      const auto offset = static_cast<int32_t>(block_of(global_sizes[p], r, world).offset);
      const auto* msg = reinterpret_cast<const uint32_t*>(payloads[r].data_ptr<int32_t>()) + start_word[i];
      if (r == me) {  // our own spikes: no need to decode what we sent
        for (int32_t s : local[i / P][p]) dst.push_back(offset + s);
        continue;
      }
      if (as_mask[i]) {
        for (int64_t w = 0; w < words[i]; ++w) {
          for (uint32_t bits = msg[w]; bits != 0; bits &= bits - 1) {
            dst.push_back(offset + static_cast<int32_t>(w * 32 + __builtin_ctz(bits)));
          }
        }
      } else {
        for (int32_t j = 0; j < rc[r][i]; ++j) dst.push_back(offset + static_cast<int32_t>(msg[j]));
      }
    }
  }
  stats.seconds += std::chrono::duration<double>(Clock::now() - start).count();
  return -1;
}

at::Tensor gather_columns(Collective& comm, const at::Tensor& local, const std::vector<std::vector<int64_t>>& columns,
                          const std::vector<int64_t>& wanted, int root) {
  const int world = comm.world_size(), me = comm.rank();
  TORCH_CHECK(static_cast<int>(columns.size()) == world, "gather_columns: need the columns of all ", world, " ranks");
  TORCH_CHECK(local.dim() == 2 && local.size(1) == static_cast<int64_t>(columns[me].size()),
              "gather_columns: the local recording is ", local.sizes(), ", expected [samples, ", columns[me].size(), "]");
  std::unordered_map<int64_t, std::pair<int, int64_t>> where;  // global index -> (rank, column)
  int64_t widest = 0;
  for (int r = 0; r < world; ++r) {
    widest = std::max<int64_t>(widest, static_cast<int64_t>(columns[r].size()));
    for (size_t j = 0; j < columns[r].size(); ++j) where[columns[r][j]] = {r, static_cast<int64_t>(j)};
  }
  const int64_t samples = local.size(0);
  // Gloo reduces and gathers numbers, not bools: bools travel as bytes.
  const bool is_bool = local.scalar_type() == at::kBool;
  at::Tensor send = local.to(is_bool ? at::kByte : local.scalar_type()).contiguous();
  std::vector<at::Tensor> parts;
  if (samples * widest > 0) {
    at::Tensor padded = at::zeros({samples, widest}, send.options());
    padded.narrow(1, 0, send.size(1)).copy_(send);
    parts = comm.gather(padded, root);
  } else if (me == root) {
    parts.assign(world, at::zeros({samples, widest}, send.options()));
  }
  if (me != root) return at::Tensor();
  std::vector<int64_t> in_rank_order;
  for (const auto& cols : columns) in_rank_order.insert(in_rank_order.end(), cols.begin(), cols.end());
  if (in_rank_order == wanted) {  // e.g. a whole population: the blocks side by side
    std::vector<at::Tensor> blocks;
    for (int r = 0; r < world; ++r) blocks.push_back(parts[r].narrow(1, 0, static_cast<int64_t>(columns[r].size())));
    const at::Tensor merged = at::cat(blocks, 1);
    return is_bool ? merged.to(at::kBool) : merged;
  }
  at::Tensor merged = at::empty({samples, static_cast<int64_t>(wanted.size())}, send.options());
  for (size_t j = 0; j < wanted.size(); ++j) {
    const auto it = where.find(wanted[j]);
    TORCH_CHECK(it != where.end(), "gather_columns: no rank recorded global index ", wanted[j]);
    merged.select(1, static_cast<int64_t>(j)).copy_(parts[it->second.first].select(1, it->second.second));
  }
  return is_bool ? merged.to(at::kBool) : merged;
}

}  // namespace brain::dist

#if !BRAIN_WITH_DISTRIBUTED
namespace brain::dist {
std::shared_ptr<Collective> connect_from_env(std::chrono::milliseconds) {
  throw std::runtime_error(
      "distributed run: this libbrain was built without distributed support (the Gloo headers were missing at "
      "build time: run ./scripts/setup.sh, which installs libgloo-dev, and rebuild)");
}
}  // namespace brain::dist
#endif
