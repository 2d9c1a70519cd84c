// The Collective of brain/dist/dist.h on torch.distributed's Gloo process group (c10d), set up
// from torchrun's environment as torch.distributed's env:// initialisation does. Compiled only
// when the Gloo headers are present (CMake: BRAIN_DISTRIBUTED); libtorch_cpu has the code.
#include <brain/dist/dist.h>

#include <chrono>
#include <cstdlib>
#include <sstream>
#include <thread>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace brain::dist {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    throw std::runtime_error(std::string("distributed run: the environment variable ") + name +
                             " is not set (start the processes with torchrun, which sets RANK, WORLD_SIZE, "
                             "MASTER_ADDR and MASTER_PORT)");
  }
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0) throw std::runtime_error(std::string("distributed run: ") + name + "='" + v + "' is not a number");
  return static_cast<int>(x);
}

class GlooCollective final : public Collective {
 public:
  GlooCollective(c10::intrusive_ptr<c10d::Store> store, int rank, int world, std::chrono::milliseconds timeout,
                 std::string where, bool hosts_store)
      : store_(std::move(store)), rank_(rank), world_(world), timeout_(timeout), where_(std::move(where)),
        hosts_store_(hosts_store) {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const std::string iface = env_or("GLOO_SOCKET_IFNAME", "");
    options->devices.push_back(iface.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                             : c10d::ProcessGroupGloo::createDeviceForInterface(iface));
    pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, rank, world, options);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string describe() const override {
    return "gloo, " + std::to_string(world_) + " processes (store " + where_ + ")";
  }

  std::vector<at::Tensor> all_gather(const at::Tensor& t) override {
    std::vector<at::Tensor> in{t.contiguous()};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < world_; ++r) out[0].push_back(at::empty_like(in[0]));
    run("all_gather", [&] { return pg_->allgather(out, in); });
    return out[0];
  }

  std::vector<at::Tensor> gather(const at::Tensor& t, int root) override {
    std::vector<at::Tensor> in{t.contiguous()};
    std::vector<std::vector<at::Tensor>> out;
    if (rank_ == root) {
      out.resize(1);
      for (int r = 0; r < world_; ++r) out[0].push_back(at::empty_like(in[0]));
    }
    c10d::GatherOptions opts;
    opts.rootRank = root;
    run("gather", [&] { return pg_->gather(out, in, opts); });
    return rank_ == root ? out[0] : std::vector<at::Tensor>{};
  }

  at::Tensor all_reduce_sum(const at::Tensor& t) override {
    std::vector<at::Tensor> io{t.contiguous().clone()};
    run("all_reduce", [&] { return pg_->allreduce(io); });
    return io[0];
  }

  void barrier() override {
    run("barrier", [&] { return pg_->barrier(); });
  }

 private:
  template <typename F>
  void run(const char* what, F&& start) {
    try {
      auto work = start();
      work->wait(timeout_);
    } catch (const std::exception& e) {
      throw CommError(std::string("distributed run: rank ") + std::to_string(rank_) + ": " + what + " failed: " +
                      first_line(e.what()) + "\n  " + diagnose());
    }
  }

  static std::string first_line(const std::string& s) {
    const auto nl = s.find('\n');
    return nl == std::string::npos ? s : s.substr(0, nl);
  }

  // After a failed collective: every rank still alive checks in through the store; those that
  // do not within a few seconds are named.
  std::string diagnose() {
    std::vector<int> silent;
    bool checked = false;
    try {
      const std::string round = std::to_string(store_->add("brain/failures/" + std::to_string(rank_), 1));
      store_->set("brain/alive/" + round + "/" + std::to_string(rank_), std::vector<uint8_t>{1});
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
      for (;;) {
        std::vector<int> now;
        for (int r = 0; r < world_; ++r) {
          if (!store_->check({"brain/alive/" + round + "/" + std::to_string(r)})) now.push_back(r);
        }
        silent = now;
        checked = true;
        if (silent.empty() || std::chrono::steady_clock::now() > until) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      // The rank hosting the store lingers, so the others can finish their own check.
      if (hosts_store_) std::this_thread::sleep_for(std::chrono::seconds(1));
    } catch (const std::exception&) {
      // The store went away while checking: what was seen before still stands.
      if (!checked) {
        return "the rendezvous store at " + where_ + " is gone too: the process that hosted it (rank 0, or the "
               "torchrun agent) has died";
      }
    }
    if (silent.empty()) return "every rank is still alive: a peer closed its connection (see its own error)";
    std::ostringstream s;
    s << (silent.size() == 1 ? "rank " : "ranks ");
    for (size_t i = 0; i < silent.size(); ++i) s << (i ? ", " : "") << silent[i];
    s << (silent.size() == 1 ? " has" : " have") << " died or hangs (no answer within 3 s)";
    return s.str();
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
  int rank_, world_;
  std::chrono::milliseconds timeout_;
  std::string where_;
  bool hosts_store_ = false;
};

}  // namespace

std::shared_ptr<Collective> connect_from_env(std::chrono::milliseconds timeout) {
  const int rank = env_int("RANK");
  const int world = env_int("WORLD_SIZE");
  if (world < 1 || rank >= world) {
    throw std::runtime_error("distributed run: RANK=" + std::to_string(rank) + " is not below WORLD_SIZE=" +
                             std::to_string(world));
  }
  const std::string host = env_or("MASTER_ADDR", "127.0.0.1");
  const int port = env_int("MASTER_PORT");
  // Under torchrun the launcher's agent already serves a store at MASTER_ADDR:MASTER_PORT;
  // otherwise rank 0 serves it, as torch.distributed's env:// does.
  const bool agent_store = env_or("TORCHELASTIC_USE_AGENT_STORE", "") == "True";
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(port);
  so.isServer = !agent_store && rank == 0;
  so.numWorkers = agent_store ? std::nullopt : std::optional<std::size_t>(world);
  so.waitWorkers = !agent_store;
  so.multiTenant = agent_store;
  so.timeout = timeout;
  const std::string where = host + ":" + std::to_string(port);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(host, so);
  } catch (const std::exception& e) {
    throw CommError("distributed run: rank " + std::to_string(rank) + " cannot reach the rendezvous store at " + where +
                    ": " + e.what());
  }
  // One namespace per launch attempt, so a restarted job never reads its predecessor's keys.
  const std::string prefix = "brain/attempt_" + env_or("TORCHELASTIC_RESTART_COUNT", "0");
  auto scoped = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
  try {
    return std::make_shared<GlooCollective>(scoped, rank, world, timeout, where, so.isServer);
  } catch (const std::exception& e) {
    throw CommError("distributed run: rank " + std::to_string(rank) + " could not join the process group at " + where +
                    ": " + e.what());
  }
}

}  // namespace brain::dist
