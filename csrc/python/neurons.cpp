// brain._C: the point-neuron models, the other synapses and the input groups, for Python.
// Every neuron is constructed as Cls(n, dtype=..., device=..., method=..., **parameters)
// with the parameter names of its C++ Params struct (documented in
// include/brain/models/point_neurons.h); an unknown name is an error that lists the known ones.
#include <torch/python.h>

#include <pybind11/stl.h>

#include <brain/dyn/inputs.h>
#include <brain/models/channels.h>
#include <brain/models/point_neurons.h>
#include <brain/models/rate_models.h>
#include <brain/models/reservoir.h>
#include <brain/models/synapses.h>

#include "csrc/python/bindings.h"

namespace py = pybind11;

namespace brain::python {

at::TensorOptions tensor_options(const std::string& dtype, const std::string& device) {
  TORCH_CHECK(dtype == "float32" || dtype == "float64", "dtype must be 'float32' or 'float64', got '", dtype, "'");
  return at::TensorOptions(dtype == "float64" ? at::kDouble : at::kFloat).device(c10::Device(device));
}

namespace {

template <class P>
struct Fields {
  std::vector<std::pair<std::string, double P::*>> numbers;
  std::vector<std::pair<std::string, bool P::*>> flags;
};

template <class N, class P, class Base = NeuronGroup>
py::class_<N, Base, std::shared_ptr<N>> bind_neuron(py::module& m, const char* name, Fields<P> fields) {
  return py::class_<N, Base, std::shared_ptr<N>>(m, name)
      .def(py::init([fields, name](int64_t n, const std::string& dtype, const std::string& device,
                                   std::optional<std::string> method, py::kwargs kwargs) {
             P p;
             if (method) p.method = *method;
             for (const auto& item : kwargs) {
               const auto key = item.first.cast<std::string>();
               bool found = false;
               for (const auto& [field, ptr] : fields.numbers)
                 if (field == key) p.*ptr = item.second.cast<double>(), found = true;
               for (const auto& [field, ptr] : fields.flags)
                 if (field == key) p.*ptr = item.second.cast<bool>(), found = true;
               if (!found) {
                 std::string known;
                 for (const auto& f : fields.numbers) known += (known.empty() ? "" : ", ") + f.first;
                 for (const auto& f : fields.flags) known += ", " + f.first;
                 TORCH_CHECK(false, name, ": unknown parameter '", key, "'; its parameters are ", known,
                             " (and n, dtype, device, method)");
               }
             }
             return std::make_shared<N>(n, p, tensor_options(dtype, device));
           }),
           py::arg("n"), py::arg("dtype") = std::is_base_of_v<RateModel, N> ? "float64" : "float32", py::arg("device") = "cpu", py::arg("method") = py::none())
      .def_static("defaults", [fields] {
        P p;
        py::dict d;
        for (const auto& [field, ptr] : fields.numbers) d[py::str(field)] = p.*ptr;
        for (const auto& [field, ptr] : fields.flags) d[py::str(field)] = p.*ptr;
        d["method"] = p.method;
        return d;
      });
}

}  // namespace

void bind_neurons(py::module& m) {
  py::class_<ODENeuron, NeuronGroup, std::shared_ptr<ODENeuron>>(m, "ODENeuron");
  using E = ExpIFParams;
  bind_neuron<ExpIF, E>(m, "ExpIF", {{{"V_rest", &E::V_rest}, {"V_reset", &E::V_reset}, {"V_th", &E::V_th},
                                      {"V_T", &E::V_T}, {"delta_T", &E::delta_T}, {"R", &E::R}, {"tau", &E::tau},
                                      {"tau_ref", &E::tau_ref}}, {}});
  using A = AdExParams;
  bind_neuron<AdEx, A>(m, "AdEx", {{{"V_rest", &A::V_rest}, {"V_reset", &A::V_reset}, {"V_th", &A::V_th},
                                    {"V_T", &A::V_T}, {"delta_T", &A::delta_T}, {"a", &A::a}, {"b", &A::b},
                                    {"R", &A::R}, {"tau", &A::tau}, {"tau_w", &A::tau_w}, {"tau_ref", &A::tau_ref}},
                                   {}});
  using Q = QuaIFParams;
  bind_neuron<QuaIF, Q>(m, "QuaIF", {{{"V_rest", &Q::V_rest}, {"V_reset", &Q::V_reset}, {"V_th", &Q::V_th},
                                      {"V_c", &Q::V_c}, {"c", &Q::c}, {"R", &Q::R}, {"tau", &Q::tau},
                                      {"tau_ref", &Q::tau_ref}, {"a", &Q::a}, {"b", &Q::b}, {"tau_w", &Q::tau_w}},
                                     {{"adaptive", &Q::adaptive}}});
  using Z = IzhikevichParams;
  bind_neuron<Izhikevich, Z>(m, "Izhikevich", {{{"a", &Z::a}, {"b", &Z::b}, {"c", &Z::c}, {"d", &Z::d},
                                                {"V_th", &Z::V_th}, {"tau_ref", &Z::tau_ref}}, {}});
  using H = HHParams;
  bind_neuron<HH, H>(m, "HH", {{{"E_Na", &H::E_Na}, {"E_K", &H::E_K}, {"E_L", &H::E_L}, {"g_Na", &H::g_Na},
                                {"g_K", &H::g_K}, {"g_L", &H::g_L}, {"C", &H::C}, {"V_th", &H::V_th}}, {}});
  using L = ALIFParams;
  bind_neuron<ALIF, L>(m, "ALIF", {{{"V_rest", &L::V_rest}, {"V_reset", &L::V_reset}, {"V_th", &L::V_th},
                                    {"R", &L::R}, {"tau", &L::tau}, {"tau_a", &L::tau_a}, {"beta", &L::beta},
                                    {"tau_ref", &L::tau_ref}}, {}});
  using G = GIFParams;
  bind_neuron<GIF, G>(m, "GIF", {{{"V_rest", &G::V_rest}, {"V_reset", &G::V_reset}, {"V_th_inf", &G::V_th_inf},
                                  {"V_th_reset", &G::V_th_reset}, {"R", &G::R}, {"tau", &G::tau}, {"a", &G::a},
                                  {"b", &G::b}, {"k1", &G::k1}, {"k2", &G::k2}, {"R1", &G::R1}, {"R2", &G::R2},
                                  {"A1", &G::A1}, {"A2", &G::A2}, {"tau_ref", &G::tau_ref}}, {}});
  using M = MorrisLecarParams;
  bind_neuron<MorrisLecar, M>(m, "MorrisLecar",
                              {{{"V_Ca", &M::V_Ca}, {"g_Ca", &M::g_Ca}, {"V_K", &M::V_K}, {"g_K", &M::g_K},
                                {"V_leak", &M::V_leak}, {"g_leak", &M::g_leak}, {"C", &M::C}, {"V1", &M::V1},
                                {"V2", &M::V2}, {"V3", &M::V3}, {"V4", &M::V4}, {"phi", &M::phi}, {"V_th", &M::V_th}},
                               {}});
  using W = WangBuzsakiParams;
  bind_neuron<WangBuzsaki, W>(m, "WangBuzsaki",
                              {{{"E_Na", &W::E_Na}, {"E_K", &W::E_K}, {"E_L", &W::E_L}, {"g_Na", &W::g_Na},
                                {"g_K", &W::g_K}, {"g_L", &W::g_L}, {"C", &W::C}, {"phi", &W::phi}, {"V_th", &W::V_th}},
                               {}});

  py::class_<DualExpon, Synapse, std::shared_ptr<DualExpon>>(m, "DualExpon")
      .def(py::init([](int64_t n, double tau_rise, double tau_decay, const std::string& dtype, const std::string& device) {
             return std::make_shared<DualExpon>(n, tau_rise, tau_decay, tensor_options(dtype, device));
           }),
           py::arg("n"), py::arg("tau_rise"), py::arg("tau_decay"), py::arg("dtype") = "float32", py::arg("device") = "cpu");
  py::class_<Alpha, Synapse, std::shared_ptr<Alpha>>(m, "Alpha")
      .def(py::init([](int64_t n, double tau, const std::string& dtype, const std::string& device) {
             return std::make_shared<Alpha>(n, tau, tensor_options(dtype, device));
           }),
           py::arg("n"), py::arg("tau"), py::arg("dtype") = "float32", py::arg("device") = "cpu");
  py::class_<Kinetic, Synapse, std::shared_ptr<Kinetic>>(m, "Kinetic")
      .def(py::init([](int64_t n, const std::string& kind, std::optional<double> alpha, std::optional<double> beta,
                       std::optional<double> T, std::optional<double> T_dur, const std::string& dtype,
                       const std::string& device) {
             TORCH_CHECK(kind == "AMPA" || kind == "GABAa", "Kinetic: kind must be 'AMPA' or 'GABAa', got '", kind, "'");
             KineticParams p = kind == "AMPA" ? Kinetic::ampa() : Kinetic::gaba_a();
             if (alpha) p.alpha = *alpha;
             if (beta) p.beta = *beta;
             if (T) p.T = *T;
             if (T_dur) p.T_dur = *T_dur;
             return std::make_shared<Kinetic>(n, p, tensor_options(dtype, device), kind);
           }),
           py::arg("n"), py::arg("kind") = "AMPA", py::arg("alpha") = py::none(), py::arg("beta") = py::none(),
           py::arg("T") = py::none(), py::arg("T_dur") = py::none(), py::arg("dtype") = "float32",
           py::arg("device") = "cpu");
  py::class_<NMDA, Synapse, std::shared_ptr<NMDA>>(m, "NMDA")
      .def(py::init([](int64_t n, double tau_decay, double tau_rise, double a, const std::string& dtype,
                       const std::string& device) {
             NMDAParams p;
             p.tau_decay = tau_decay, p.tau_rise = tau_rise, p.a = a;
             return std::make_shared<NMDA>(n, p, tensor_options(dtype, device));
           }),
           py::arg("n"), py::arg("tau_decay") = 100.0, py::arg("tau_rise") = 2.0, py::arg("a") = 0.5,
           py::arg("dtype") = "float32", py::arg("device") = "cpu");
  py::class_<BioNMDA, Synapse, std::shared_ptr<BioNMDA>>(m, "BioNMDA")
      .def(py::init([](int64_t n, double alpha1, double beta1, double alpha2, double beta2, double T, double T_dur,
                       const std::string& dtype, const std::string& device) {
             return std::make_shared<BioNMDA>(n, BioNMDAParams{alpha1, beta1, alpha2, beta2, T, T_dur},
                                              tensor_options(dtype, device));
           }),
           py::arg("n"), py::arg("alpha1") = BioNMDAParams{}.alpha1, py::arg("beta1") = BioNMDAParams{}.beta1,
           py::arg("alpha2") = BioNMDAParams{}.alpha2, py::arg("beta2") = BioNMDAParams{}.beta2,
           py::arg("T") = BioNMDAParams{}.T, py::arg("T_dur") = BioNMDAParams{}.T_dur, py::arg("dtype") = "float32",
           py::arg("device") = "cpu");

  // Rate models: states named after their variables, inputs "input_<variable>".
  py::class_<RateModel, DynamicalSystem, std::shared_ptr<RateModel>>(m, "RateModel")
      .def("variables", &RateModel::variables)
      .def("size", &RateModel::size);
  using F = FHNParams;
  bind_neuron<FHN, F, RateModel>(m, "FHN", {{{"a", &F::a}, {"b", &F::b}, {"tau", &F::tau}}, {}});
  using WC = WilsonCowanParams;
  bind_neuron<WilsonCowan, WC, RateModel>(
      m, "WilsonCowan",
      {{{"tau_e", &WC::tau_e}, {"a_e", &WC::a_e}, {"theta_e", &WC::theta_e}, {"tau_i", &WC::tau_i}, {"a_i", &WC::a_i},
        {"theta_i", &WC::theta_i}, {"w_ee", &WC::w_ee}, {"w_ei", &WC::w_ei}, {"w_ie", &WC::w_ie}, {"w_ii", &WC::w_ii},
        {"r", &WC::r}},
       {}});
  using QM = QIFMeanFieldParams;
  bind_neuron<QIFMeanField, QM, RateModel>(
      m, "QIFMeanField", {{{"tau", &QM::tau}, {"eta", &QM::eta}, {"delta", &QM::delta}, {"J", &QM::J}}, {}});
  using SL = StuartLandauParams;
  bind_neuron<StuartLandau, SL, RateModel>(m, "StuartLandau", {{{"a", &SL::a}, {"w", &SL::w}}, {}});
  using TL = ThresholdLinearParams;
  bind_neuron<ThresholdLinear, TL, RateModel>(
      m, "ThresholdLinear",
      {{{"tau_e", &TL::tau_e}, {"tau_i", &TL::tau_i}, {"w_ee", &TL::w_ee}, {"w_ei", &TL::w_ei}, {"w_ie", &TL::w_ie},
        {"w_ii", &TL::w_ii}},
       {}});

  using CA = CANN1DParams;
  bind_neuron<CANN1D, CA, RateModel>(m, "CANN1D",
                                     {{{"tau", &CA::tau}, {"k", &CA::k}, {"a", &CA::a}, {"A", &CA::A}, {"J0", &CA::J0},
                                       {"z_min", &CA::z_min}, {"z_max", &CA::z_max}},
                                      {}})
      .def("features", &CANN1D::features)
      .def("stimulus", &CANN1D::stimulus, py::arg("positions"))
      .def("rates", &CANN1D::rates, py::arg("u"))
      .def("decode", &CANN1D::decode, py::arg("u"))
      .def("ring_distance", &CANN1D::ring_distance, py::arg("d"));

  // Echo-state reservoir.
  py::class_<Reservoir, DynamicalSystem, std::shared_ptr<Reservoir>>(m, "Reservoir")
      .def(py::init([](int64_t n_in, int64_t size, double spectral_radius, double leak, double input_scale,
                       double bias_scale, double density, const std::string& connectivity, int64_t seed,
                       const std::string& dtype, const std::string& device) {
             ReservoirParams p{n_in, size, spectral_radius, leak, input_scale, bias_scale, density, connectivity, seed};
             return std::make_shared<Reservoir>(p, tensor_options(dtype, device));
           }),
           py::arg("n_in") = 1, py::arg("size") = 500, py::arg("spectral_radius") = 0.9, py::arg("leak") = 1.0,
           py::arg("input_scale") = 1.0, py::arg("bias_scale") = 0.0, py::arg("density") = 1.0,
           py::arg("connectivity") = "dense", py::arg("seed") = 0, py::arg("dtype") = "float64",
           py::arg("device") = "cpu")
      .def("run", &Reservoir::run, py::arg("inputs"), py::call_guard<py::gil_scoped_release>())
      .def("set_input", &Reservoir::set_input, py::arg("u"))
      .def("recurrent_matrix", &Reservoir::recurrent_matrix)
      .def("size", &Reservoir::size);

  // Conductance-based neurons composed of ion channels (HH 1952 set).
  py::class_<IonChannel, DynamicalSystem, std::shared_ptr<IonChannel>>(m, "IonChannel");
  const auto channel = [](auto* tag, py::module& mod, const char* cls, double g, double E) {
    using C = std::remove_pointer_t<decltype(tag)>;
    py::class_<C, IonChannel, std::shared_ptr<C>>(mod, cls)
        .def(py::init([](int64_t n, double g, double E, const std::string& dtype, const std::string& device) {
               return std::make_shared<C>(n, g, E, tensor_options(dtype, device));
             }),
             py::arg("n"), py::arg("g") = g, py::arg("E") = E, py::arg("dtype") = "float64", py::arg("device") = "cpu");
  };
  channel(static_cast<LeakChannel*>(nullptr), m, "LeakChannel", 0.3, -54.387);
  channel(static_cast<NaChannelHH*>(nullptr), m, "NaChannelHH", 120.0, 50.0);
  channel(static_cast<KChannelHH*>(nullptr), m, "KChannelHH", 36.0, -77.0);
  const auto tm_channel = [](auto* tag, py::module& mod, const char* cls, double g, double E) {
    using C = std::remove_pointer_t<decltype(tag)>;
    py::class_<C, IonChannel, std::shared_ptr<C>>(mod, cls)
        .def(py::init([](int64_t n, double g, double E, double V_T, std::optional<double> V_rest, const std::string& dtype,
                         const std::string& device) {
               return std::make_shared<C>(n, g, E, V_T, tensor_options(dtype, device), V_rest);
             }),
             py::arg("n"), py::arg("g") = g, py::arg("E") = E, py::arg("V_T") = -63.0, py::arg("V_rest") = py::none(),
             py::arg("dtype") = "float64", py::arg("device") = "cpu");
  };
  tm_channel(static_cast<NaChannelTM*>(nullptr), m, "NaChannelTM", 100.0, 50.0);
  tm_channel(static_cast<KChannelTM*>(nullptr), m, "KChannelTM", 30.0, -90.0);
  py::class_<CaTChannel, IonChannel, std::shared_ptr<CaTChannel>>(m, "CaTChannel")
      .def(py::init([](int64_t n, double g, double E, double V_sh, double T, double V_init, const std::string& dtype,
                       const std::string& device) {
             return std::make_shared<CaTChannel>(n, CaTParams{g, E, V_sh, T, V_init}, tensor_options(dtype, device));
           }),
           py::arg("n"), py::arg("g") = CaTParams{}.g, py::arg("E") = CaTParams{}.E, py::arg("V_sh") = CaTParams{}.V_sh,
           py::arg("T") = CaTParams{}.T, py::arg("V_init") = CaTParams{}.V_init, py::arg("dtype") = "float64",
           py::arg("device") = "cpu")
      .def("p_inf", &CaTChannel::p_inf, py::arg("V"))
      .def("q_inf", &CaTChannel::q_inf, py::arg("V"))
      .def("tau_p", &CaTChannel::tau_p, py::arg("V"))
      .def("tau_q", &CaTChannel::tau_q, py::arg("V"));
  py::class_<HChannel, IonChannel, std::shared_ptr<HChannel>>(m, "HChannel")
      .def(py::init([](int64_t n, double g, double E, double phi, double V_init, const std::string& dtype,
                       const std::string& device) {
             return std::make_shared<HChannel>(n, HParams{g, E, phi, V_init}, tensor_options(dtype, device));
           }),
           py::arg("n"), py::arg("g") = HParams{}.g, py::arg("E") = HParams{}.E, py::arg("phi") = HParams{}.phi,
           py::arg("V_init") = HParams{}.V_init, py::arg("dtype") = "float64", py::arg("device") = "cpu")
      .def("p_inf", &HChannel::p_inf, py::arg("V"))
      .def("tau_p", &HChannel::tau_p, py::arg("V"));
  py::class_<CalciumPool, IonChannel, std::shared_ptr<CalciumPool>>(m, "CalciumPool")
      .def(py::init([](int64_t n, double depth, double tau, double Ca_rest, const std::string& dtype,
                       const std::string& device) {
             return std::make_shared<CalciumPool>(n, CalciumPoolParams{depth, tau, Ca_rest}, tensor_options(dtype, device));
           }),
           py::arg("n"), py::arg("depth") = CalciumPoolParams{}.depth, py::arg("tau") = CalciumPoolParams{}.tau,
           py::arg("Ca_rest") = CalciumPoolParams{}.Ca_rest, py::arg("dtype") = "float64", py::arg("device") = "cpu")
      .def("add_influx", &CalciumPool::add_influx, py::arg("channel"));
  py::class_<KCaChannel, IonChannel, std::shared_ptr<KCaChannel>>(m, "KCaChannel")
      .def(py::init([](int64_t n, std::shared_ptr<CalciumPool> pool, double g, double E, double alpha, double beta,
                       double hill, double phi, const std::string& dtype, const std::string& device) {
             return std::make_shared<KCaChannel>(n, std::move(pool), KCaParams{g, E, alpha, beta, hill, phi},
                                                 tensor_options(dtype, device));
           }),
           py::arg("n"), py::arg("pool"), py::arg("g") = KCaParams{}.g, py::arg("E") = KCaParams{}.E,
           py::arg("alpha") = KCaParams{}.alpha, py::arg("beta") = KCaParams{}.beta, py::arg("hill") = KCaParams{}.n,
           py::arg("phi") = KCaParams{}.phi, py::arg("dtype") = "float64", py::arg("device") = "cpu");
  py::class_<CondNeuGroup, NeuronGroup, std::shared_ptr<CondNeuGroup>>(m, "CondNeuGroup")
      .def(py::init([](int64_t n, double C, double V_th, double V_init, const std::string& dtype,
                       const std::string& device) {
             return std::make_shared<CondNeuGroup>(n, C, V_th, V_init, Surrogate{}, tensor_options(dtype, device));
           }),
           py::arg("n"), py::arg("C") = 1.0, py::arg("V_th") = 20.0, py::arg("V_init") = -65.0,
           py::arg("dtype") = "float64", py::arg("device") = "cpu")
      .def(
          "add_channel",
          [](CondNeuGroup& g, const std::string& name, std::shared_ptr<IonChannel> c) { return g.add_channel(name, c); },
          py::arg("name"), py::arg("channel"))
      .def("set_fused", &CondNeuGroup::set_fused, py::arg("on"))
      .def("takes_fused_step", &CondNeuGroup::takes_fused_step);

  py::class_<PoissonGroup, DynamicalSystem, std::shared_ptr<PoissonGroup>>(m, "PoissonGroup")
      .def(py::init<int64_t, double, uint64_t>(), py::arg("n"), py::arg("rate_hz"), py::arg("seed"))
      .def(py::init<int64_t, at::Tensor, uint64_t>(), py::arg("n"), py::arg("rates_hz"), py::arg("seed"))
      .def("size", &PoissonGroup::size);
  py::class_<SpikeTimeGroup, DynamicalSystem, std::shared_ptr<SpikeTimeGroup>>(m, "SpikeTimeGroup")
      .def(py::init<int64_t, const std::vector<int64_t>&, const std::vector<double>&>(), py::arg("n"),
           py::arg("indices"), py::arg("times_ms"))
      .def(py::init([](int64_t n, const at::Tensor& indices, const at::Tensor& times_ms) {
             TORCH_CHECK(indices.dim() == 1 && times_ms.dim() == 1, "SpikeTimeGroup: indices and times_ms must be 1-D, got ",
                         indices.sizes(), " and ", times_ms.sizes());
             TORCH_CHECK(!indices.is_floating_point() && indices.scalar_type() != at::kBool,
                         "SpikeTimeGroup: indices must be integers, got ", indices.scalar_type());
             const at::Tensor i = indices.to(at::kCPU, at::kLong).contiguous();
             const at::Tensor t = times_ms.to(at::kCPU, at::kDouble).contiguous();
             return std::make_shared<SpikeTimeGroup>(
                 n, std::vector<int64_t>(i.data_ptr<int64_t>(), i.data_ptr<int64_t>() + i.numel()),
                 std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel()));
           }),
           py::arg("n"), py::arg("indices"), py::arg("times_ms"))
      .def("size", &SpikeTimeGroup::size);
}

}  // namespace brain::python
