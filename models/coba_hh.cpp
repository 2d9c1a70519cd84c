// The COBA-HH network builder (Brette et al. 2007 benchmark 3; config: models/coba_hh.json).
#include <brain/models/networks.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <brain/models/channels.h>
#include <brain/models/synapses.h>

namespace brain {

namespace {

// Normal draws from a generator seeded afresh at every reset_state, in double precision, then
// converted: the initial state depends only on the seed (not on the dtype, the device or how
// often the network was reset).
std::function<at::Tensor(const std::vector<int64_t>&)> normal_init(uint64_t seed, double mean, double std,
                                                                   at::TensorOptions options) {
  return [seed, mean, std, options](const std::vector<int64_t>& shape) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    return at::normal(mean, std, shape, gen, torch::kDouble).to(options);
  };
}

}  // namespace

std::shared_ptr<DynSysGroup> build_coba_hh_network(const CobaHHSpec& spec, uint64_t seed, c10::Device device,
                                                   double dt_ms) {
  TORCH_CHECK(spec.n_exc > 0 && spec.n_inh > 0, "coba_hh: both populations need neurons");
  TORCH_CHECK(spec.p >= 0 && spec.p <= 1, "coba_hh: p must lie in [0, 1], got ", spec.p);
  TORCH_CHECK(spec.dtype == "float32" || spec.dtype == "float64", "coba_hh: dtype must be float32 or float64, got '",
              spec.dtype, "'");
  TORCH_CHECK(spec.connectivity == "csr" || spec.connectivity == "jit",
              "coba_hh: connectivity must be 'csr' or 'jit', got '", spec.connectivity, "'");
  TORCH_CHECK(spec.tau_exc > 0 && spec.tau_inh > 0 && spec.C > 0, "coba_hh: time constants and C must be positive");
  (void)dt_ms;  // no delays: the network does not depend on the step size
  const auto options = at::TensorOptions(spec.dtype == "float64" ? at::kDouble : at::kFloat).device(device);
  const uint64_t init_seed = seed ^ 0xc0ba'4400ull;

  auto net = std::make_shared<DynSysGroup>("COBAHH");
  auto population = [&](const char* name, int64_t n, uint64_t salt) {
    auto pop = std::make_shared<CondNeuGroup>(n, spec.C, spec.V_th, spec.E_leak, Surrogate{}, options);
    pop->add_channel("Na", std::make_shared<NaChannelTM>(n, spec.g_Na, spec.E_Na, spec.V_T, options));
    pop->add_channel("K", std::make_shared<KChannelTM>(n, spec.g_K, spec.E_K, spec.V_T, options));
    pop->add_channel("leak", std::make_shared<LeakChannel>(n, spec.g_leak, spec.E_leak, options));
    pop->set_V_initializer(normal_init(init_seed + salt, spec.E_leak + spec.V_init_mean, spec.V_init_std, options));
    return net->add(name, pop);
  };
  auto E = population("E", spec.n_exc, 0);
  auto I = population("I", spec.n_inh, 1);

  struct Pathway {
    const char* name;
    std::shared_ptr<CondNeuGroup> pre, post;
    double w, tau, E_rev, g_mean, g_std;
    uint64_t salt;
  };
  const Pathway pathways[] = {
      {"E2E", E, E, spec.w_exc, spec.tau_exc, spec.E_exc, spec.g_exc_init_mean, spec.g_exc_init_std, 1},
      {"E2I", E, I, spec.w_exc, spec.tau_exc, spec.E_exc, spec.g_exc_init_mean, spec.g_exc_init_std, 2},
      {"I2E", I, E, spec.w_inh, spec.tau_inh, spec.E_inh, spec.g_inh_init_mean, spec.g_inh_init_std, 3},
      {"I2I", I, I, spec.w_inh, spec.tau_inh, spec.E_inh, spec.g_inh_init_mean, spec.g_inh_init_std, 4}};
  for (const auto& pw : pathways) {
    std::shared_ptr<Comm> comm;
    const int64_t conn_seed = static_cast<int64_t>(seed * 4 + pw.salt);
    if (spec.connectivity == "jit") {
      comm = std::make_shared<JitComm>(pw.pre->size(), pw.post->size(), spec.p, conn_seed, torch::tensor(pw.w, options));
    } else {
      const auto conn = fixed_prob(pw.pre->size(), pw.post->size(), spec.p, /*include_self=*/pw.pre != pw.post,
                                   static_cast<uint64_t>(conn_seed), device);
      comm = std::make_shared<CsrComm>(conn, torch::tensor(pw.w, options));
    }
    auto syn = std::make_shared<Expon>(pw.post->size(), pw.tau, options);
    syn->set_g_initializer(normal_init(init_seed + 1 + pw.salt, pw.g_mean, pw.g_std, options));
    net->add(pw.name, std::make_shared<AlignPostProj>(pw.pre, comm, syn, std::make_shared<COBA>(pw.E_rev), pw.post));
  }
  return net;
}

}  // namespace brain
