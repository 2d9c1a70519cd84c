// The COBA / CUBA E/I network builder (configs: models/coba.json, models/cuba.json).
#include <brain/models/networks.h>

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <brain/dist/dist.h>
#include <brain/models/synapses.h>

namespace brain {

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
    TORCH_CHECK(world == 1, "ei_network: per-synapse delays are not supported in distributed runs yet");
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
    if (spec.connectivity == "jit") {
      comm = JitComm::columns(pw.n_pre, pw.n_post, lo, hi - lo, spec.p, static_cast<int64_t>(seed * 4 + pw.salt),
                              torch::tensor(pw.w, options), "homo", spec.event);
    } else {
      const auto conn = fixed_prob_columns(pw.n_pre, pw.n_post, spec.p, /*include_self=*/!recurrent, seed * 4 + pw.salt,
                                           lo, hi, device);
      comm = std::make_shared<CsrComm>(conn, torch::tensor(pw.w, options), spec.event);
    }
    auto syn = std::make_shared<Expon>(pw.post->size(), pw.tau, options, spec.method);
    std::shared_ptr<SynOutput> out = coba ? std::shared_ptr<SynOutput>(std::make_shared<COBA>(pw.E_rev))
                                          : std::shared_ptr<SynOutput>(std::make_shared<CUBA>());
    auto proj = net->add(pw.name, std::make_shared<AlignPostProj>(pw.pre, comm, syn, out, pw.post, delay_steps));
    if (spec.delay_per_synapse) {
      // Drawn on the CPU from a generator of the pathway's own: the same delays on every device.
      const int64_t nnz = std::static_pointer_cast<CsrComm>(comm)->indices().numel();
      auto gen = at::make_generator<at::CPUGeneratorImpl>((seed * 4 + pw.salt) ^ 0xde1a'7000'0000ull);
      const at::Tensor ms = at::rand({nnz}, gen, torch::kDouble) * (spec.delay_ms_high - spec.delay_ms_low) +
                            spec.delay_ms_low;
      proj->set_synapse_delays((ms / dt_ms).round().to(torch::kLong));
    }
  }
  return net;
}

}  // namespace brain
