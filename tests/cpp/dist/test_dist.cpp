// Distributed runs without processes: ranks are threads sharing an in-memory Collective, so
// the partitioning, the spike exchange (both encodings, failures) and the fast engine's
// partitioned loop are checked against one process here; tests/python/test_distributed.py
// does the same through torchrun and Gloo.
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <brain/brain.h>
#include <brain/dist/dist.h>
#include <brain/models/networks.h>
#include <brain/train/bptt.h>

#include <ATen/CPUGeneratorImpl.h>

namespace {

using namespace brain;

// All ranks deposit a tensor; when the last arrives, everyone gets all of them.
class ThreadGroup {
 public:
  explicit ThreadGroup(int world) : world_(world), slots_(world) {}
  std::vector<at::Tensor> exchange(int rank, const at::Tensor& t) {
    std::unique_lock<std::mutex> lock(mutex_);
    const int64_t generation = generation_;
    slots_[rank] = t.clone();
    if (++arrived_ == world_) {
      result_ = slots_;
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
    return result_;
  }
  int world() const { return world_; }

 private:
  int world_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
  std::vector<at::Tensor> slots_, result_;
};

class ThreadCollective final : public dist::Collective {
 public:
  ThreadCollective(std::shared_ptr<ThreadGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int world_size() const override { return group_->world(); }
  std::string describe() const override { return "threads"; }
  std::vector<at::Tensor> all_gather(const at::Tensor& t) override {
    const auto all = group_->exchange(rank_, t);
    for (const auto& x : all) {
      if (!x.sizes().equals(t.sizes()) || x.scalar_type() != t.scalar_type()) {
        throw dist::CommError("all_gather: ranks gave different shapes");  // what Gloo would refuse
      }
    }
    return all;
  }
  std::vector<at::Tensor> gather(const at::Tensor& t, int root) override {
    auto all = all_gather(t);
    return rank_ == root ? all : std::vector<at::Tensor>{};
  }
  at::Tensor all_reduce_sum(const at::Tensor& t) override {
    at::Tensor sum = at::zeros_like(t);
    for (const auto& x : all_gather(t)) sum += x;
    return sum;
  }
  void barrier() override { all_gather(at::zeros({1})); }

 private:
  std::shared_ptr<ThreadGroup> group_;
  int rank_;
};

// Runs f(rank, collective) on `world` threads; rethrows the first failure. (A rank that throws
// before its collectives leaves the others waiting, as a crashed process would: tests keep
// everything that can throw inside the ranks' own try blocks.)
void on_ranks(int world, const std::function<void(int, dist::Collective&)>& f) {
  auto group = std::make_shared<ThreadGroup>(world);
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(world);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      ThreadCollective comm(group, r);
      try {
        f(r, comm);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

TEST(Dist, BlocksCoverThePopulationInOrderAndDifferByAtMostOne) {
  for (int world : {1, 2, 3, 4, 7}) {
    for (int64_t n : {0, 1, 5, 6, 7, 100, 3201}) {
      int64_t next = 0, smallest = n, largest = 0;
      for (int r = 0; r < world; ++r) {
        const dist::Block b = dist::block_of(n, r, world);
        EXPECT_EQ(b.offset, next) << n << " over " << world;
        next += b.size;
        smallest = std::min(smallest, b.size);
        largest = std::max(largest, b.size);
        if (r > 0) {
          EXPECT_LE(b.size, dist::block_of(n, r - 1, world).size);  // larger blocks first
        }
      }
      EXPECT_EQ(next, n);
      EXPECT_LE(largest - smallest, 1);
    }
  }
  EXPECT_THROW(dist::block_of(10, 2, 2), c10::Error);
  EXPECT_THROW(dist::block_of(-1, 0, 2), c10::Error);
}

// Random spikes per (step, population) and rank, from very sparse to every neuron.
dist::SpikeLists random_local(const std::vector<int64_t>& sizes, int rank, int world, int steps, uint64_t seed) {
  std::mt19937_64 rng(seed * 100 + rank);
  dist::SpikeLists local(steps, std::vector<std::vector<int32_t>>(sizes.size()));
  const double rates[] = {0.0, 0.02, 0.3, 1.0};
  for (int k = 0; k < steps; ++k) {
    for (size_t p = 0; p < sizes.size(); ++p) {
      const int64_t n = dist::block_of(sizes[p], rank, world).size;
      const double rate = rates[(k + p) % 4];
      for (int64_t i = 0; i < n; ++i) {
        if (std::uniform_real_distribution<double>(0, 1)(rng) < rate) local[k][p].push_back(static_cast<int32_t>(i));
      }
    }
  }
  return local;
}

TEST(Dist, ExchangeGivesEveryRankTheGlobalSpikesInOrderWithEitherEncoding) {
  const int world = 3, steps = 8;
  const std::vector<int64_t> sizes{70, 5, 1000};
  // What one process would list: every rank's spikes shifted by its block's offset.
  dist::SpikeLists expected(steps, std::vector<std::vector<int32_t>>(sizes.size()));
  for (int r = 0; r < world; ++r) {
    const auto local = random_local(sizes, r, world, steps, 7);
    for (int k = 0; k < steps; ++k) {
      for (size_t p = 0; p < sizes.size(); ++p) {
        for (int32_t s : local[k][p]) expected[k][p].push_back(static_cast<int32_t>(dist::block_of(sizes[p], r, world).offset) + s);
      }
    }
  }
  for (auto encoding : {dist::Encoding::Auto, dist::Encoding::Indices, dist::Encoding::Masks}) {
    std::vector<dist::ExchangeStats> stats(world);
    on_ranks(world, [&](int rank, dist::Collective& comm) {
      dist::SpikeLists global;
      const int failed = dist::exchange_spikes(comm, sizes, random_local(sizes, rank, world, steps, 7), encoding,
                                               stats[rank], global);
      EXPECT_EQ(failed, -1);
      EXPECT_EQ(global, expected) << "rank " << rank;
    });
    EXPECT_EQ(stats[0].exchanges, 1);
    EXPECT_EQ(stats[0].steps, steps);
    if (encoding == dist::Encoding::Indices) {
      EXPECT_EQ(stats[0].mask_messages, 0);
    }
    if (encoding == dist::Encoding::Masks) {
      EXPECT_EQ(stats[0].index_messages, 0);
    }
    if (encoding == dist::Encoding::Auto) {
      // Every neuron firing travels as a mask, a sparse step as indices.
      EXPECT_GT(stats[0].mask_messages, 0);
      EXPECT_GT(stats[0].index_messages, 0);
    }
  }
}

TEST(Dist, SparseSpikesTravelInOneRoundAndTheCapacityFollowsTheLoad) {
  const std::vector<int64_t> sizes{3000};
  on_ranks(2, [&](int rank, dist::Collective& comm) {
    dist::ExchangeStats stats;
    dist::SpikeLists local(1, std::vector<std::vector<int32_t>>(1)), global;
    for (int32_t i = 0; i < 10; ++i) local[0][0].push_back(3 * i + rank);
    EXPECT_EQ(dist::exchange_spikes(comm, sizes, local, dist::Encoding::Auto, stats, global), -1);
    EXPECT_EQ(stats.inline_rounds, 1);
    EXPECT_EQ(global[0][0].size(), 20u);
    EXPECT_EQ(global[0][0][10], 1501);  // rank 1's first spike, local 1, after rank 0's ten
    // A burst overflows the first round: a second one carries it, and the capacity grows.
    local[0][0].clear();
    for (int32_t i = 0; i < 1000; ++i) local[0][0].push_back(i);
    EXPECT_EQ(dist::exchange_spikes(comm, sizes, local, dist::Encoding::Auto, stats, global), -1);
    EXPECT_EQ(stats.inline_rounds, 1);
    EXPECT_EQ(global[0][0].size(), 2000u);
    EXPECT_EQ(global[0][0][1000], 1500);
    EXPECT_EQ(stats.inline_words, 2000);
    EXPECT_EQ(dist::exchange_spikes(comm, sizes, local, dist::Encoding::Auto, stats, global), -1);
    EXPECT_EQ(stats.inline_rounds, 2);
  });
}

TEST(Dist, AFailedRankIsReportedToAllAndNothingIsExchanged) {
  on_ranks(4, [&](int rank, dist::Collective& comm) {
    dist::ExchangeStats stats;
    dist::SpikeLists global;
    const auto local = random_local({40}, rank, 4, 2, 3);
    EXPECT_EQ(dist::exchange_spikes(comm, {40}, local, dist::Encoding::Auto, stats, global, rank == 2 || rank == 3), 2);
    // The next round works again: the ranks stayed in step.
    EXPECT_EQ(dist::exchange_spikes(comm, {40}, local, dist::Encoding::Auto, stats, global), -1);
  });
}

TEST(Dist, GatherColumnsMergesRecordingsInTheWantedOrder) {
  const std::vector<std::vector<int64_t>> columns{{0, 1, 2}, {5}, {}};
  on_ranks(3, [&](int rank, dist::Collective& comm) {
    at::Tensor local = at::empty({4, static_cast<int64_t>(columns[rank].size())}, at::kDouble);
    for (size_t j = 0; j < columns[rank].size(); ++j) local.select(1, j).fill_(static_cast<double>(columns[rank][j]));
    local = local + at::arange(4, at::kDouble).unsqueeze(1) * 100;
    const at::Tensor merged = dist::gather_columns(comm, local, columns, {5, 0, 2, 1});
    const at::Tensor spikes = dist::gather_columns(comm, local > 100, columns, {0, 1, 2, 5});  // blocks in order
    if (rank != 0) {
      EXPECT_FALSE(merged.defined());
      EXPECT_FALSE(spikes.defined());
      return;
    }
    const at::Tensor steps = at::arange(4, at::kDouble).unsqueeze(1) * 100;
    EXPECT_TRUE(at::equal(merged, at::tensor({5.0, 0.0, 2.0, 1.0}).unsqueeze(0) + steps));
    EXPECT_EQ(spikes.scalar_type(), at::kBool);
    EXPECT_TRUE(at::equal(spikes, (at::tensor({0.0, 1.0, 2.0, 5.0}).unsqueeze(0) + steps) > 100));
  });
}

TEST(Dist, ColumnWindowsOfStoredAndJitConnectivityAreSlicesOfTheWhole) {
  torch::NoGradGuard no_grad;
  const CsrMatrix whole = fixed_prob(300, 200, 0.1, /*include_self=*/true, 11);
  const at::Tensor dense = at::zeros({300, 200}, at::kInt);
  {
    const auto ip = whole.indptr.to(at::kLong), ix = whole.indices.to(at::kLong);
    for (int64_t i = 0; i < 300; ++i) {
      for (int64_t e = ip[i].item<int64_t>(); e < ip[i + 1].item<int64_t>(); ++e) dense[i][ix[e].item<int64_t>()] = 1;
    }
  }
  for (auto [lo, hi] : {std::pair<int64_t, int64_t>{0, 200}, {0, 67}, {67, 134}, {150, 200}, {100, 100}}) {
    const CsrMatrix part = fixed_prob_columns(300, 200, 0.1, true, 11, lo, hi);
    ASSERT_EQ(part.n_cols, hi - lo);
    at::Tensor d = at::zeros({300, hi - lo}, at::kInt);
    const auto ip = part.indptr.to(at::kLong), ix = part.indices.to(at::kLong);
    for (int64_t i = 0; i < 300; ++i) {
      for (int64_t e = ip[i].item<int64_t>(); e < ip[i + 1].item<int64_t>(); ++e) d[i][ix[e].item<int64_t>()] = 1;
    }
    EXPECT_TRUE(at::equal(d, dense.narrow(1, lo, hi - lo))) << lo << ".." << hi;
  }
  EXPECT_THROW(fixed_prob_columns(10, 10, 0.1, true, 1, 5, 11), c10::Error);

  const at::Tensor spikes = at::rand({300}) < 0.3;
  auto full = std::make_shared<JitComm>(300, 200, 0.1, 5, at::tensor(0.5));
  const at::Tensor all = full->forward(spikes);
  auto [fp, fi, fv] = full->to_csr();
  for (auto [lo, hi] : {std::pair<int64_t, int64_t>{0, 67}, {67, 200}}) {
    auto part = JitComm::columns(300, 200, lo, hi - lo, 0.1, 5, at::tensor(0.5));
    EXPECT_TRUE(at::allclose(part->forward(spikes), all.narrow(0, lo, hi - lo)));
    auto [pp, pi, pv] = part->to_csr();
    const at::Tensor rows = torch::repeat_interleave(fp.diff());
    const at::Tensor keep = (fi >= lo) & (fi < hi);
    EXPECT_TRUE(at::equal(pi, fi.masked_select(keep) - lo));
    EXPECT_TRUE(at::equal(torch::repeat_interleave(pp.diff()), rows.masked_select(keep)));
  }
}

// The whole network on one process against its shares on `world` threads.
void expect_partitioned_run_matches(const EINetSpec& spec, int world, dist::Encoding encoding) {
  torch::NoGradGuard no_grad;
  const double dt = 0.1;
  const int64_t steps = 300;
  auto options_for = [&] {
    RunnerOptions opt;
    opt.dt = dt;
    opt.engine = Engine::Fast;
    opt.progress = 0;
    opt.inputs = {{"E.input", at::tensor(20.0), false, RunInput::Op::Set}, {"I.input", at::tensor(20.0), false, RunInput::Op::Set}};
    opt.monitors = {{"E.spike", std::nullopt, 1, "", at::kBool}, {"I.spike", std::nullopt, 1, "", at::kBool},
                    {"E.V", std::nullopt, 1, "", std::nullopt}};
    return opt;
  };
  auto single = build_ei_network(spec, 9, c10::kCPU, dt);
  single->reset_state();
  const RunResult want = Runner(single, options_for()).run_steps(steps);

  std::vector<RunResult> got(world);
  std::vector<dist::ExchangeStats> stats(world);
  on_ranks(world, [&](int rank, dist::Collective& comm) {
    auto net = build_ei_network_shard(spec, 9, c10::kCPU, dt, rank, world);
    net->reset_state();
    RunnerOptions opt = options_for();
    auto part = std::make_shared<dist::Partition>();
    part->comm = std::shared_ptr<dist::Collective>(&comm, [](dist::Collective*) {});
    part->global_sizes = {{"E", spec.n_exc}, {"I", spec.n_inh}};
    part->encoding = encoding;
    opt.partition = part;
    got[rank] = Runner(net, opt).run_steps(steps);
    stats[rank] = part->stats;
  });
  for (const char* key : {"E.spike", "I.spike", "E.V"}) {
    std::vector<at::Tensor> parts;
    for (int r = 0; r < world; ++r) parts.push_back(got[r].values.at(key));
    EXPECT_TRUE(at::equal(at::cat(parts, 1), want.values.at(key))) << key << " over " << world;
  }
  int64_t e_spikes = 0;
  for (int r = 0; r < world; ++r) e_spikes += got[r].spike_counts.at("E");
  EXPECT_EQ(e_spikes, want.spike_counts.at("E"));
  EXPECT_GT(e_spikes, 0);
  const int64_t window = std::max<int64_t>(1, std::llround(spec.delay_ms / dt));
  EXPECT_EQ(stats[0].steps, steps);
  EXPECT_EQ(stats[0].exchanges, world > 1 ? (steps + window - 1) / window : 0);
}

EINetSpec small_net(const std::string& connectivity, double delay_ms) {
  EINetSpec spec;
  spec.n_exc = 401;  // blocks of unequal sizes
  spec.n_inh = 99;
  spec.p = 0.1;
  spec.connectivity = connectivity;
  spec.delay_ms = delay_ms;
  return spec;
}

TEST(Dist, PartitionedRunsEqualOneProcessBitForBit) {
  for (const char* conn : {"csr", "jit"}) {
    for (double delay : {0.0, 0.5}) {  // exchanges every step, and once every 5 steps
      for (int world : {2, 3}) {
        SCOPED_TRACE(std::string(conn) + ", delay " + std::to_string(delay) + " ms, " + std::to_string(world) + " ranks");
        expect_partitioned_run_matches(small_net(conn, delay), world, dist::Encoding::Auto);
      }
    }
  }
  expect_partitioned_run_matches(small_net("csr", 0.0), 2, dist::Encoding::Masks);
  expect_partitioned_run_matches(small_net("csr", 0.3), 4, dist::Encoding::Indices);
}

TEST(Dist, ANonFiniteStateOnOneRankStopsEveryRank) {
  torch::NoGradGuard no_grad;
  EINetSpec spec = small_net("csr", 0.5);
  std::vector<std::string> errors(3);
  on_ranks(3, [&](int rank, dist::Collective& comm) {
    auto net = build_ei_network_shard(spec, 9, c10::kCPU, 0.1, rank, 3);
    net->reset_state();
    if (rank == 1) net->find_system("E").assign_state("V", net->find_state("E.V").clone().fill_(std::nan("")));
    RunnerOptions opt;
    opt.engine = Engine::Fast;
    opt.progress = 0;
    auto part = std::make_shared<dist::Partition>();
    part->comm = std::shared_ptr<dist::Collective>(&comm, [](dist::Collective*) {});
    part->global_sizes = {{"E", spec.n_exc}, {"I", spec.n_inh}};
    opt.partition = part;
    try {
      Runner(net, opt).run_steps(50);
    } catch (const NonFiniteError& e) {
      errors[rank] = e.state();
    }
  });
  EXPECT_EQ(errors[1], "E.V");
  EXPECT_EQ(errors[0], "a state on rank 1");
  EXPECT_EQ(errors[2], "a state on rank 1");
}

// With Partition::merge the runner merges the recordings on rank 0 and sums the spike counts;
// its checkpoints hold the network as one process does, so 3 ranks' checkpoint is finished
// by 2 ranks, and by one process, with the recordings of a run that never stopped.
TEST(Dist, MergedRunsCheckpointOnThreeRanksAndResumeOnTwoOrOne) {
  torch::NoGradGuard no_grad;
  const EINetSpec spec = small_net("csr", 0.5);
  const int64_t steps = 300;
  auto options_for = [&](int world) {
    RunnerOptions opt;
    opt.engine = Engine::Fast;
    opt.progress = 0;
    opt.inputs = {{"E.input", at::tensor(20.0), false, RunInput::Op::Set}, {"I.input", at::tensor(20.0), false, RunInput::Op::Set}};
    opt.monitors = {{"E.spike", std::nullopt, 1, "", at::kBool}, {"I.V", std::nullopt, 2, "", std::nullopt}};
    if (world > 0) {
      auto part = std::make_shared<dist::Partition>();
      part->global_sizes = {{"E", spec.n_exc}, {"I", spec.n_inh}};
      part->merge = true;
      for (const auto& [key, n] : {std::pair<std::string, int64_t>{"E.spike", spec.n_exc}, {"I.V", spec.n_inh}}) {
        auto& cols = part->monitor_columns[key];
        for (int r = 0; r < world; ++r) {
          const dist::Block b = dist::block_of(n, r, world);
          cols.columns.emplace_back();
          for (int64_t i = 0; i < b.size; ++i) cols.columns.back().push_back(b.offset + i);
        }
        for (int64_t i = 0; i < n; ++i) cols.wanted.push_back(i);
      }
      opt.partition = part;
    }
    return opt;
  };
  auto single = build_ei_network(spec, 9, c10::kCPU, 0.1);
  single->reset_state();
  const RunResult want = Runner(single, options_for(0)).run_steps(steps);

  const std::string ckpt = ::testing::TempDir() + "/merged_run.ckpt";
  std::filesystem::remove(ckpt);
  // Splits the network over `world` threads; every rank runs, or resumes from the checkpoint.
  auto on_threads = [&](int world, bool resume) {
    std::vector<RunResult> got(world);
    on_ranks(world, [&](int rank, dist::Collective& comm) {
      auto net = build_ei_network_shard(spec, 9, c10::kCPU, 0.1, rank, world);
      net->reset_state();
      RunnerOptions opt = options_for(world);
      opt.partition->comm = std::shared_ptr<dist::Collective>(&comm, [](dist::Collective*) {});
      if (!resume) {
        opt.checkpoint_path = ckpt;
        opt.checkpoint_every = 110;  // the last at step 220
      }
      Runner runner(net, opt);
      got[rank] = resume ? runner.resume(ckpt) : runner.run_steps(steps);
    });
    return got;
  };
  auto expect_as_one_process = [&](const std::vector<RunResult>& got, const char* what) {
    for (const char* key : {"E.spike", "I.V"}) {
      EXPECT_TRUE(at::equal(got[0].values.at(key), want.values.at(key))) << what << ": " << key;
      EXPECT_TRUE(at::equal(got[0].times.at(key), want.times.at(key))) << what << ": " << key;
      for (size_t r = 1; r < got.size(); ++r) EXPECT_EQ(got[r].values.at(key).numel(), 0) << what << ": rank " << r;
    }
    for (const auto& g : got) EXPECT_EQ(g.spike_counts.at("E"), want.spike_counts.at("E")) << what;
  };
  expect_as_one_process(on_threads(3, false), "3 ranks with checkpoints");
  ASSERT_TRUE(std::filesystem::exists(ckpt));
  expect_as_one_process(on_threads(2, true), "resumed on 2 ranks");
  auto one = build_ei_network(spec, 9, c10::kCPU, 0.1);
  one->reset_state();
  const RunResult resumed = Runner(one, options_for(0)).resume(ckpt);
  for (const char* key : {"E.spike", "I.V"}) EXPECT_TRUE(at::equal(resumed.values.at(key), want.values.at(key))) << key;
  EXPECT_GT(want.spike_counts.at("E"), 0);
}

TEST(Dist, PartitionedRunsRefuseWhatTheyCannotDo) {
  auto net = build_ei_network_shard(small_net("csr", 0.0), 9, c10::kCPU, 0.1, 0, 2);
  net->reset_state();
  RunnerOptions opt;
  opt.progress = 0;
  auto part = std::make_shared<dist::Partition>();
  part->comm = std::make_shared<ThreadCollective>(std::make_shared<ThreadGroup>(2), 0);
  part->global_sizes = {{"E", 401}, {"I", 99}};
  opt.partition = part;
  opt.engine = Engine::Modules;
  EXPECT_THROW(Runner(net, opt).run_steps(1), c10::Error);
  opt.engine = Engine::Fast;
  part->global_sizes = {{"E", 400}, {"I", 99}};  // not the size this rank's block was cut from
  try {
    Runner(net, opt).run_steps(1);
    FAIL() << "a wrong global size was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("owns"), std::string::npos) << e.what();
  }
}

// ---- data-parallel BPTT (BPTTOptions::comm) ------------------------------------------------

struct ClassTask {
  at::Tensor inputs, targets;
};

// Inputs strong enough that the hidden layer spikes, so every parameter gets a gradient.
ClassTask small_task(int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return {torch::rand({n, 12, 6}, gen) * 4.0, torch::randint(0, 3, {n}, gen, torch::kLong)};
}

std::shared_ptr<train::SpikingNet> small_spiking_net(uint64_t seed) {
  train::SpikingNetOptions o;
  o.n_in = 6;
  o.n_hidden = 24;
  o.n_out = 3;
  o.recurrent = true;
  o.seed = seed;
  torch::manual_seed(seed);
  return std::make_shared<train::SpikingNet>(o);
}

struct FitResult {
  std::vector<at::Tensor> parameters;
  std::vector<train::EpochStats> history;
};

FitResult fit_on(const std::shared_ptr<train::SpikingNet>& net, const ClassTask& data, const ClassTask& eval,
                 train::BPTTOptions bo, const std::shared_ptr<dist::Collective>& comm) {
  bo.comm = comm;
  // Plain SGD: a gradient off by a factor would show in the step (Adam would normalise it away).
  auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.2));
  train::BPTT trainer(net, opt, train::losses::cross_entropy_mean_over_time(), bo);
  FitResult r;
  r.history = trainer.fit(data.inputs, data.targets, eval.inputs, eval.targets);
  for (const auto& p : net->parameters()) r.parameters.push_back(p.detach().clone());
  return r;
}

// A collective that forwards to the test's thread group, shared by pointer with BPTT.
class SharedThreadCollective final : public dist::Collective {
 public:
  explicit SharedThreadCollective(dist::Collective& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  std::string describe() const override { return inner_.describe(); }
  std::vector<at::Tensor> all_gather(const at::Tensor& t) override { return inner_.all_gather(t); }
  std::vector<at::Tensor> gather(const at::Tensor& t, int root) override { return inner_.gather(t, root); }
  at::Tensor all_reduce_sum(const at::Tensor& t) override { return inner_.all_reduce_sum(t); }
  void barrier() override { inner_.barrier(); }

 private:
  dist::Collective& inner_;
};

// Batches of 4 over 10 samples: the last batch of 2 leaves a rank of 3 with nothing, which
// must still take the step.
class DataParallelBPTT : public ::testing::TestWithParam<std::tuple<int, int64_t, int64_t>> {};

TEST_P(DataParallelBPTT, EveryRankTakesTheStepOfTheCombinedBatch) {
  const auto [world, truncation, recompute_chunk] = GetParam();
  const ClassTask data = small_task(10, 1), eval = small_task(7, 2);
  train::BPTTOptions bo;
  bo.epochs = 3;
  bo.batch_size = 4;
  bo.progress = false;
  bo.truncation = truncation;
  bo.recompute_chunk = recompute_chunk;
  const auto reference = small_spiking_net(0);
  const FitResult want = fit_on(reference, data, eval, bo, nullptr);
  ASSERT_GT(reference->last_rate().item<double>(), 0.01);  // the hidden layer spikes: every weight learns

  // Every rank starts from other weights: rank 0's are copied to all before training. (Built
  // here: torch's default generator is shared by the rank threads.)
  std::vector<std::shared_ptr<train::SpikingNet>> nets;
  for (int r = 0; r < world; ++r) nets.push_back(small_spiking_net(static_cast<uint64_t>(r)));
  std::vector<FitResult> got(world);
  on_ranks(world, [&](int rank, dist::Collective& comm) {
    got[rank] = fit_on(nets[rank], data, eval, bo, std::make_shared<SharedThreadCollective>(comm));
  });
  for (int r = 0; r < world; ++r) {
    ASSERT_EQ(got[r].parameters.size(), want.parameters.size());
    for (size_t i = 0; i < want.parameters.size(); ++i) {
      // The same step as one process, up to the order of the gradient sums.
      EXPECT_TRUE(torch::allclose(got[r].parameters[i], want.parameters[i], 1e-4, 1e-5))
          << "rank " << r << " parameter " << i << ": max difference "
          << (got[r].parameters[i] - want.parameters[i]).abs().max().item<double>();
      // And exactly the same parameters on every rank.
      EXPECT_TRUE(torch::equal(got[r].parameters[i], got[0].parameters[i])) << "rank " << r << " parameter " << i;
    }
    ASSERT_EQ(got[r].history.size(), want.history.size());
    for (size_t e = 0; e < want.history.size(); ++e) {
      EXPECT_NEAR(got[r].history[e].loss, want.history[e].loss, 1e-4) << "rank " << r << " epoch " << e;
      EXPECT_DOUBLE_EQ(got[r].history[e].accuracy, want.history[e].accuracy) << "rank " << r << " epoch " << e;
      EXPECT_NEAR(got[r].history[e].eval_loss, want.history[e].eval_loss, 1e-4) << "rank " << r << " epoch " << e;
      EXPECT_DOUBLE_EQ(got[r].history[e].eval_accuracy, want.history[e].eval_accuracy) << "rank " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(RanksAndWindows, DataParallelBPTT,
                         ::testing::Values(std::make_tuple(2, int64_t{0}, int64_t{0}),
                                           std::make_tuple(3, int64_t{0}, int64_t{0}),
                                           std::make_tuple(2, int64_t{5}, int64_t{0}),
                                           std::make_tuple(3, int64_t{0}, int64_t{4})));

TEST(DataParallelBPTTErrors, RanksWithDifferentDataAllRefuseNamingTheRank) {
  std::vector<std::string> errors(2);
  const std::vector<std::shared_ptr<train::SpikingNet>> nets{small_spiking_net(0), small_spiking_net(1)};
  on_ranks(2, [&](int rank, dist::Collective& comm) {
    const ClassTask data = small_task(rank == 0 ? 10 : 8, 1);
    train::BPTTOptions bo;
    bo.epochs = 1;
    bo.progress = false;
    try {
      fit_on(nets[rank], data, data, bo, std::make_shared<SharedThreadCollective>(comm));
    } catch (const c10::Error& e) {
      errors[rank] = e.what_without_backtrace();
    }
  });
  for (const auto& e : errors) {
    EXPECT_NE(e.find("rank 1 has samples = 8 where rank 0 has 10"), std::string::npos) << e;
  }
}

}  // namespace
