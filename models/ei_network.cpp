// The COBA / CUBA E/I network builder (configs: models/coba.json, models/cuba.json).
#include <brain/models/networks.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <brain/dist/dist.h>
#include <brain/models/synapses.h>

#include "kernels/jitc/jitc_gen.h"
#include "kernels/rng/poisson_draw.h"

namespace brain {

at::Tensor synapse_delay_steps(const CsrMatrix& conn, int64_t col_offset, uint64_t seed, double low_ms, double high_ms,
                               double dt_ms) {
  TORCH_CHECK(dt_ms > 0, "synapse_delay_steps: dt_ms must be positive, got ", dt_ms);
  TORCH_CHECK(0 <= low_ms && low_ms <= high_ms, "synapse_delay_steps: need 0 <= low_ms <= high_ms, got [", low_ms, ", ",
              high_ms, "]");
  TORCH_CHECK(col_offset >= 0 && conn.n_rows < (int64_t{1} << 32) && col_offset + conn.n_cols <= (int64_t{1} << 32),
              "synapse_delay_steps: rows and global columns must lie below 2^32");
  namespace jitc = kernels::jitc;
  constexpr std::uint64_t kDelayDomain = 0x44454C4159532121ull;  // "DELAYS!!"
  constexpr std::uint32_t kDelayCounter = 0x44454C41u;            // "DELA"
  const std::uint64_t key = kernels::rng::splitmix64_finalize(seed ^ kDelayDomain);
  const auto k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  const at::Tensor indptr = conn.indptr.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor indices = conn.indices.to(at::kCPU, at::kLong).contiguous();
  const int64_t* ptr = indptr.data_ptr<int64_t>();
  const int64_t* col = indices.data_ptr<int64_t>();
  at::Tensor steps = at::empty({indices.numel()}, at::kLong);
  int64_t* out = steps.data_ptr<int64_t>();
  at::parallel_for(0, conn.n_rows, 256, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      for (int64_t k = ptr[i]; k < ptr[i + 1]; ++k) {
        const jitc::Words w = jitc::philox4x32_10(static_cast<std::uint32_t>(i),
                                                  static_cast<std::uint32_t>(col_offset + col[k]), kDelayCounter, 0u,
                                                  k0, k1);
        const double u = static_cast<double>(jitc::m53(w.w[0], w.w[1])) * jitc::kTwoPowMinus53;
        // At most high_ms even where the sum rounds up, so no delay exceeds round(high_ms / dt_ms),
        // the ring every rank reserves. Rounded half to even, as torch.round rounds delays
        // a user converts from ms.
        const double ms = std::min(high_ms, low_ms + (high_ms - low_ms) * u);
        out[k] = static_cast<int64_t>(std::nearbyint(ms / dt_ms));
      }
    }
  });
  return steps;
}

std::shared_ptr<DynSysGroup> build_ei_network(const EINetSpec& spec, uint64_t seed, c10::Device device, double dt_ms) {
  return build_ei_network_shard(spec, seed, device, dt_ms, 0, 1);
}

std::shared_ptr<DynSysGroup> build_ei_network_shard(const EINetSpec& spec, uint64_t seed, c10::Device device, double dt_ms,
                                                    int rank, int world) {
  TORCH_CHECK(spec.output == "coba" || spec.output == "cuba", "ei_network: output must be 'coba' or 'cuba', got '",
              spec.output, "'");
  TORCH_CHECK(spec.dtype == "float32" || spec.dtype == "float64", "ei_network: dtype must be float32 or float64, got '",
              spec.dtype, "'");
  TORCH_CHECK(spec.n_exc > 0 && spec.n_inh > 0, "ei_network: both populations need neurons");
  const auto options = at::TensorOptions(spec.dtype == "float64" ? at::kDouble : at::kFloat).device(device);
  auto net = std::make_shared<DynSysGroup>("EINet");
  LifParams neuron = spec.neuron;
  neuron.method = spec.method;
  const dist::Block e_block = dist::block_of(spec.n_exc, rank, world), i_block = dist::block_of(spec.n_inh, rank, world);
  auto E = net->add("E", std::make_shared<LIF>(e_block.size, neuron, options));
  auto I = net->add("I", std::make_shared<LIF>(i_block.size, neuron, options));

  // Initial potentials from their own generator: reproducible whatever else draws numbers.
  auto v_gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ 0x5eed'0001ull);
  // Runs at every reset_state(), long after this function returned: captures by value.
  // A share draws the whole population's potentials, as one process does, and keeps its block.
  auto init = [uniform = spec.V_init == "uniform", a = spec.V_init_a, b = spec.V_init_b, options,
               v_gen](int64_t n_global, dist::Block block) mutable {
    return [=](const std::vector<int64_t>& shape) mutable {
      std::vector<int64_t> whole = shape;
      whole.back() = n_global;
      at::Tensor v = uniform ? at::rand(whole, v_gen, torch::kDouble) * (b - a) + a
                             : at::normal(a, b, whole, v_gen, torch::kDouble);
      return v.narrow(-1, block.offset, block.size).contiguous().to(options);
    };
  };
  E->set_V_initializer(init(spec.n_exc, e_block));
  I->set_V_initializer(init(spec.n_inh, i_block));

  const bool coba = spec.output == "coba";
  const int64_t delay_steps = std::llround(spec.delay_ms / dt_ms);
  if (spec.delay_per_synapse) {
    TORCH_CHECK(spec.connectivity == "csr", "ei_network: per-synapse delays need CSR connectivity");
    TORCH_CHECK(spec.delay_ms_low >= 0 && spec.delay_ms_high >= spec.delay_ms_low,
                "ei_network: per-synapse delays need 0 <= delay_ms_low <= delay_ms_high, got [", spec.delay_ms_low, ", ",
                spec.delay_ms_high, "]");
  }
  struct Pathway {
    const char* name;
    std::shared_ptr<LIF> pre, post;
    int64_t n_pre, n_post;  // in the whole network
    dist::Block post_block;
    double w, tau, E_rev;
    uint64_t salt;
  };
  const Pathway pathways[] = {{"E2E", E, E, spec.n_exc, spec.n_exc, e_block, spec.w_exc, spec.tau_exc, spec.E_exc, 1},
                              {"E2I", E, I, spec.n_exc, spec.n_inh, i_block, spec.w_exc, spec.tau_exc, spec.E_exc, 2},
                              {"I2E", I, E, spec.n_inh, spec.n_exc, e_block, spec.w_inh, spec.tau_inh, spec.E_inh, 3},
                              {"I2I", I, I, spec.n_inh, spec.n_inh, i_block, spec.w_inh, spec.tau_inh, spec.E_inh, 4}};
  for (const auto& pw : pathways) {
    const bool recurrent = pw.pre == pw.post;
    const int64_t lo = pw.post_block.offset, hi = lo + pw.post_block.size;
    std::shared_ptr<Comm> comm;
    std::optional<CsrMatrix> conn;
    if (spec.connectivity == "jit") {
      comm = JitComm::columns(pw.n_pre, pw.n_post, lo, hi - lo, spec.p, static_cast<int64_t>(seed * 4 + pw.salt),
                              torch::tensor(pw.w, options), "homo", spec.event);
    } else {
      conn = fixed_prob_columns(pw.n_pre, pw.n_post, spec.p, /*include_self=*/!recurrent, seed * 4 + pw.salt, lo, hi,
                                device);
      comm = std::make_shared<CsrComm>(*conn, torch::tensor(pw.w, options), spec.event);
    }
    auto syn = std::make_shared<Expon>(pw.post->size(), pw.tau, options, spec.method);
    std::shared_ptr<SynOutput> out = coba ? std::shared_ptr<SynOutput>(std::make_shared<COBA>(pw.E_rev))
                                          : std::shared_ptr<SynOutput>(std::make_shared<CUBA>());
    auto proj = net->add(pw.name, std::make_shared<AlignPostProj>(pw.pre, comm, syn, out, pw.post, delay_steps));
    if (spec.delay_per_synapse) {
      proj->set_synapse_delays(synapse_delay_steps(*conn, lo, seed * 4 + pw.salt, spec.delay_ms_low,
                                                   spec.delay_ms_high, dt_ms));
      // The ring holds the longest delay the draw can give, not the longest this shard drew:
      // every rank, and one process, then keep the same history (checkpoints hold one copy).
      proj->delay()->reserve(static_cast<int64_t>(std::nearbyint(spec.delay_ms_high / dt_ms)));
    }
  }
  return net;
}

}  // namespace brain
