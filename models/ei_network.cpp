// The COBA / CUBA E/I network builder (configs: models/coba.json, models/cuba.json).
#include <brain/models/networks.h>

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <brain/models/synapses.h>

namespace brain {

std::shared_ptr<DynSysGroup> build_ei_network(const EINetSpec& spec, uint64_t seed, c10::Device device, double dt_ms) {
  TORCH_CHECK(spec.output == "coba" || spec.output == "cuba", "ei_network: output must be 'coba' or 'cuba', got '",
              spec.output, "'");
  TORCH_CHECK(spec.dtype == "float32" || spec.dtype == "float64", "ei_network: dtype must be float32 or float64, got '",
              spec.dtype, "'");
  TORCH_CHECK(spec.n_exc > 0 && spec.n_inh > 0, "ei_network: both populations need neurons");
  const auto options = at::TensorOptions(spec.dtype == "float64" ? at::kDouble : at::kFloat).device(device);
  auto net = std::make_shared<DynSysGroup>("EINet");
  LifParams neuron = spec.neuron;
  neuron.method = spec.method;
  auto E = net->add("E", std::make_shared<LIF>(spec.n_exc, neuron, options));
  auto I = net->add("I", std::make_shared<LIF>(spec.n_inh, neuron, options));

  // Initial potentials from their own generator: reproducible whatever else draws numbers.
  auto v_gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ 0x5eed'0001ull);
  // Runs at every reset_state(), long after this function returned: captures by value.
  auto init = [uniform = spec.V_init == "uniform", a = spec.V_init_a, b = spec.V_init_b, options,
               v_gen](const std::vector<int64_t>& shape) mutable {
    at::Tensor v = uniform ? at::rand(shape, v_gen, torch::kDouble) * (b - a) + a
                           : at::normal(a, b, shape, v_gen, torch::kDouble);
    return v.to(options);
  };
  E->set_V_initializer(init);
  I->set_V_initializer(init);

  const bool coba = spec.output == "coba";
  const int64_t delay_steps = std::llround(spec.delay_ms / dt_ms);
  struct Pathway {
    const char* name;
    std::shared_ptr<LIF> pre, post;
    double w, tau, E_rev;
    uint64_t salt;
  };
  const Pathway pathways[] = {{"E2E", E, E, spec.w_exc, spec.tau_exc, spec.E_exc, 1},
                              {"E2I", E, I, spec.w_exc, spec.tau_exc, spec.E_exc, 2},
                              {"I2E", I, E, spec.w_inh, spec.tau_inh, spec.E_inh, 3},
                              {"I2I", I, I, spec.w_inh, spec.tau_inh, spec.E_inh, 4}};
  for (const auto& pw : pathways) {
    const bool recurrent = pw.pre == pw.post;
    std::shared_ptr<Comm> comm;
    if (spec.connectivity == "jit") {
      comm = std::make_shared<JitComm>(pw.pre->size(), pw.post->size(), spec.p, static_cast<int64_t>(seed * 4 + pw.salt),
                                       torch::tensor(pw.w, options), "homo", spec.event);
    } else {
      const auto conn = fixed_prob(pw.pre->size(), pw.post->size(), spec.p, /*include_self=*/!recurrent,
                                   seed * 4 + pw.salt, device);
      comm = std::make_shared<CsrComm>(conn, torch::tensor(pw.w, options), spec.event);
    }
    auto syn = std::make_shared<Expon>(pw.post->size(), pw.tau, options, spec.method);
    std::shared_ptr<SynOutput> out = coba ? std::shared_ptr<SynOutput>(std::make_shared<COBA>(pw.E_rev))
                                          : std::shared_ptr<SynOutput>(std::make_shared<CUBA>());
    net->add(pw.name, std::make_shared<AlignPostProj>(pw.pre, comm, syn, out, pw.post, delay_steps));
  }
  return net;
}

}  // namespace brain
