// brain._C: the model library's modules, runner and spiking network for Python. The modules
// are bound with torch's own module bindings (parameters, buffers, children, train/eval, to),
// and python/brain/models.py wraps them in torch.nn.cpp.ModuleWrapper, so they are ordinary
// torch.nn.Modules whose parameters torch.optim updates in place.
#include <torch/python.h>

#include <pybind11/stl.h>

#include <brain/dyn/fast.h>
#include <brain/dyn/runner.h>
#include <brain/dyn/system.h>
#include <brain/io/checkpoint.h>
#include <brain/models/networks.h>
#include <brain/models/neurons.h>
#include <brain/models/synapses.h>
#include <brain/train/bptt.h>
#include <brain/train/datasets.h>
#include <brain/train/readout.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "csrc/python/bindings.h"

namespace py = pybind11;

namespace brain::python {

namespace {
// The distinct delays of a projection's per-synapse delays when delivered by delay group; None
// when delivered by synapse or without them.
template <typename Projection>
py::object synapse_delay_groups(const Projection& p) {
  if (!p.has_synapse_delays() || !p.synapse_delays()->grouped()) return py::none();
  return py::cast(p.synapse_delays()->distinct_delays());
}
}  // namespace

void bind_modules(py::module& m) {
  using DS = DynamicalSystem;
  using release = py::call_guard<py::gil_scoped_release>;

  torch::python::add_module_bindings(py::class_<DS, torch::nn::Module, std::shared_ptr<DS>>(m, "DynamicalSystem"))
      .def("reset_state", &DS::reset_state, py::arg("batch_size") = 0)
      .def("find_state", &DS::find_state, py::arg("path"))
      .def("assign_state", &DS::assign_state, py::arg("name"), py::arg("value"))
      .def("has_state", &DS::has_state)
      .def("dynamical_name", [](const DS& s) { return s.name(); });
  // The names of a module's own state buffers (none unless it is a DynamicalSystem), for the
  // Python wrapper's state_dict, which leaves a run's states out as torch leaves out
  // non-persistent buffers. Takes any module: torch's module dicts hand children over as
  // plain torch::nn::Module objects.
  m.def("own_state_names", [](const std::shared_ptr<torch::nn::Module>& module) {
    std::vector<std::string> names;
    if (const auto ds = std::dynamic_pointer_cast<DS>(module)) {
      for (const std::string& path : ds->state_paths()) {
        if (path.find('.') == std::string::npos) names.push_back(path);
      }
    }
    return names;
  });
  py::class_<DynSysGroup, DS, std::shared_ptr<DynSysGroup>>(m, "DynSysGroup")
      .def(py::init<std::string>(), py::arg("name") = "DynSysGroup")
      .def(
          "add", [](DynSysGroup& g, const std::string& name, std::shared_ptr<DS> child) { return g.add(name, child); },
          py::arg("name"), py::arg("child"));

  // Building blocks: neurons, synapses, outputs, communication, projections.
  py::class_<NeuronGroup, DS, std::shared_ptr<NeuronGroup>>(m, "NeuronGroup")
      .def("size", &NeuronGroup::size)
      .def(
          "set_V_init",
          [](NeuronGroup& n, at::Tensor V) {
            n.set_V_initializer([V](const std::vector<int64_t>& shape) { return V.expand(shape).clone(); });
          },
          py::arg("V"));
  py::class_<LIF, NeuronGroup, std::shared_ptr<LIF>>(m, "LIF")
      .def(py::init([](int64_t n, double V_rest, double V_reset, double V_th, double tau, double R,
                                     double tau_ref, const std::string& method, const std::string& dtype,
                                     const std::string& device) {
             LifParams p;
             p.V_rest = V_rest, p.V_reset = V_reset, p.V_th = V_th, p.tau = tau, p.R = R, p.tau_ref = tau_ref;
             p.method = method;
             return std::make_shared<LIF>(n, p, tensor_options(dtype, device));
           }),
           py::arg("n"), py::arg("V_rest") = -60.0, py::arg("V_reset") = -60.0, py::arg("V_th") = -50.0,
           py::arg("tau") = 20.0, py::arg("R") = 1.0, py::arg("tau_ref") = 0.0, py::arg("method") = "exp_euler",
           py::arg("dtype") = "float32", py::arg("device") = "cpu");
  py::class_<Synapse, DS, std::shared_ptr<Synapse>>(m, "Synapse").def("size", &Synapse::size);
  py::class_<Expon, Synapse, std::shared_ptr<Expon>>(m, "Expon")
      .def(py::init([](int64_t n, double tau, const std::string& method, const std::string& dtype,
                                     const std::string& device) {
             return std::make_shared<Expon>(n, tau, tensor_options(dtype, device), method);
           }),
           py::arg("n"), py::arg("tau"), py::arg("method") = "exp_euler", py::arg("dtype") = "float32",
           py::arg("device") = "cpu")
      .def(
          "set_g_init",
          [](Expon& e, at::Tensor g) {
            e.set_g_initializer([g](const std::vector<int64_t>& shape) { return g.expand(shape).clone(); });
          },
          py::arg("g"));
  py::class_<SynOutput, std::shared_ptr<SynOutput>>(m, "SynOutput")
      .def("current", &SynOutput::current, py::arg("g"), py::arg("V"));
  py::class_<COBA, SynOutput, std::shared_ptr<COBA>>(m, "COBA").def(py::init<double>(), py::arg("E"));
  py::class_<CUBA, SynOutput, std::shared_ptr<CUBA>>(m, "CUBA").def(py::init<>());
  py::class_<MgBlock, SynOutput, std::shared_ptr<MgBlock>>(m, "MgBlock")
      .def(py::init<double, double, double, double>(), py::arg("E") = 0.0, py::arg("cc_Mg") = 1.2,
           py::arg("alpha") = 0.062, py::arg("beta") = 3.57);
  torch::python::add_module_bindings(py::class_<Comm, torch::nn::Module, std::shared_ptr<Comm>>(m, "Comm"))
      .def("forward", &Comm::forward, py::arg("spikes"))
      .def("n_pre", &Comm::n_pre)
      .def("n_post", &Comm::n_post);
  py::class_<CsrComm, Comm, std::shared_ptr<CsrComm>>(m, "CsrComm")
      .def(py::init([](at::Tensor indptr, at::Tensor indices, at::Tensor weights, int64_t n_pre, int64_t n_post,
                       bool event) {
             CsrMatrix c{std::move(indptr), std::move(indices), {}, n_pre, n_post};
             return std::make_shared<CsrComm>(c, std::move(weights), event);
           }),
           py::arg("indptr"), py::arg("indices"), py::arg("weights"), py::arg("n_pre"), py::arg("n_post"),
           py::arg("event") = true);
  py::class_<JitComm, Comm, std::shared_ptr<JitComm>>(m, "JitComm")
      .def(py::init<int64_t, int64_t, double, int64_t, at::Tensor, std::string, bool>(), py::arg("n_pre"),
           py::arg("n_post"), py::arg("prob"), py::arg("seed"), py::arg("weight"), py::arg("dist") = "homo",
           py::arg("event") = true);
  py::class_<DenseComm, Comm, std::shared_ptr<DenseComm>>(m, "DenseComm")
      .def(py::init<at::Tensor>(), py::arg("weights"));
  py::class_<OneToOne, Comm, std::shared_ptr<OneToOne>>(m, "OneToOne")
      .def(py::init<int64_t, at::Tensor>(), py::arg("n"), py::arg("weight"));
  py::class_<AllToAll, Comm, std::shared_ptr<AllToAll>>(m, "AllToAll")
      .def(py::init<int64_t, int64_t, at::Tensor, bool>(), py::arg("n_pre"), py::arg("n_post"), py::arg("weight"),
           py::arg("include_self") = true);
  py::class_<GroupComm, Comm, std::shared_ptr<GroupComm>>(m, "GroupComm")
      .def(py::init<at::Tensor, at::Tensor, at::Tensor>(), py::arg("pre_groups"), py::arg("post_groups"),
           py::arg("weights"));
  m.def(
      "fixed_prob",
      [](int64_t n_pre, int64_t n_post, double prob, bool include_self, uint64_t seed, const std::string& device) {
        const auto c = fixed_prob(n_pre, n_post, prob, include_self, seed, c10::Device(device));
        return std::make_pair(c.indptr, c.indices);
      },
      py::arg("n_pre"), py::arg("n_post"), py::arg("prob"), py::arg("include_self"), py::arg("seed"),
      py::arg("device") = "cpu");
  py::class_<AlignPostProj, DS, std::shared_ptr<AlignPostProj>>(m, "AlignPostProj")
      .def(py::init<std::shared_ptr<DS>, std::shared_ptr<Comm>, std::shared_ptr<Synapse>, std::shared_ptr<SynOutput>,
                    std::shared_ptr<NeuronGroup>, int64_t>(),
           py::arg("pre"), py::arg("comm"), py::arg("syn"), py::arg("out"), py::arg("post"), py::arg("delay_steps") = 0)
      .def(
          "add_stp",
          [](AlignPostProj& p, double U, double tau_f, double tau_d, bool facilitation) {
            return std::static_pointer_cast<DS>(p.add_stp(STPParams{U, tau_f, tau_d, facilitation}));
          },
          py::arg("U") = 0.15, py::arg("tau_f") = 1500.0, py::arg("tau_d") = 200.0, py::arg("facilitation") = true)
      .def(
          "add_stdp",
          [](AlignPostProj& p, double tau_plus, double tau_minus, double A_plus, double A_minus, double w_min,
             double w_max) { p.add_stdp({tau_plus, tau_minus, A_plus, A_minus, w_min, w_max}); },
          py::arg("tau_plus") = 20.0, py::arg("tau_minus") = 20.0, py::arg("A_plus") = 0.01,
          py::arg("A_minus") = 0.0105, py::arg("w_min") = 0.0, py::arg("w_max") = 1.0)
      .def("set_synapse_delays", &AlignPostProj::set_synapse_delays, py::arg("delay_steps"))
      .def("has_synapse_delays", &AlignPostProj::has_synapse_delays)
      .def("synapse_delay_groups", &synapse_delay_groups<AlignPostProj>);
  py::class_<AlignPreProj, DS, std::shared_ptr<AlignPreProj>>(m, "AlignPreProj")
      .def(py::init<std::shared_ptr<DS>, std::shared_ptr<Synapse>, std::shared_ptr<Comm>, std::shared_ptr<SynOutput>,
                    std::shared_ptr<NeuronGroup>, int64_t>(),
           py::arg("pre"), py::arg("syn"), py::arg("comm"), py::arg("out"), py::arg("post"), py::arg("delay_steps") = 0)
      .def("set_synapse_delays", &AlignPreProj::set_synapse_delays, py::arg("delay_steps"))
      .def("has_synapse_delays", &AlignPreProj::has_synapse_delays)
      .def("synapse_delay_groups", &synapse_delay_groups<AlignPreProj>);

  py::class_<EINetSpec>(m, "EINetSpec")
      .def(py::init<>())
      .def_readwrite("output", &EINetSpec::output)
      .def_readwrite("n_exc", &EINetSpec::n_exc)
      .def_readwrite("n_inh", &EINetSpec::n_inh)
      .def_readwrite("p", &EINetSpec::p)
      .def_readwrite("w_exc", &EINetSpec::w_exc)
      .def_readwrite("w_inh", &EINetSpec::w_inh)
      .def_readwrite("tau_exc", &EINetSpec::tau_exc)
      .def_readwrite("tau_inh", &EINetSpec::tau_inh)
      .def_readwrite("E_exc", &EINetSpec::E_exc)
      .def_readwrite("E_inh", &EINetSpec::E_inh)
      .def_readwrite("delay_ms", &EINetSpec::delay_ms)
      .def_readwrite("delay_per_synapse", &EINetSpec::delay_per_synapse)
      .def_readwrite("delay_ms_low", &EINetSpec::delay_ms_low)
      .def_readwrite("delay_ms_high", &EINetSpec::delay_ms_high)
      .def_readwrite("V_init", &EINetSpec::V_init)
      .def_readwrite("V_init_a", &EINetSpec::V_init_a)
      .def_readwrite("V_init_b", &EINetSpec::V_init_b)
      .def_readwrite("input_current", &EINetSpec::input_current)
      .def_readwrite("dtype", &EINetSpec::dtype)
      .def_readwrite("event", &EINetSpec::event)
      .def_readwrite("connectivity", &EINetSpec::connectivity)
      .def_readwrite("method", &EINetSpec::method);
  m.def(
      "build_ei_network",
      [](const EINetSpec& spec, uint64_t seed, const std::string& device, double dt) {
        return std::static_pointer_cast<DynSysGroup>(build_ei_network(spec, seed, c10::Device(device), dt));
      },
      py::arg("spec"), py::arg("seed"), py::arg("device"), py::arg("dt"));

  py::class_<CobaHHSpec>(m, "CobaHHSpec")
      .def(py::init<>())
      .def_readwrite("n_exc", &CobaHHSpec::n_exc)
      .def_readwrite("n_inh", &CobaHHSpec::n_inh)
      .def_readwrite("p", &CobaHHSpec::p)
      .def_readwrite("w_exc", &CobaHHSpec::w_exc)
      .def_readwrite("w_inh", &CobaHHSpec::w_inh)
      .def_readwrite("tau_exc", &CobaHHSpec::tau_exc)
      .def_readwrite("tau_inh", &CobaHHSpec::tau_inh)
      .def_readwrite("E_exc", &CobaHHSpec::E_exc)
      .def_readwrite("E_inh", &CobaHHSpec::E_inh)
      .def_readwrite("C", &CobaHHSpec::C)
      .def_readwrite("g_leak", &CobaHHSpec::g_leak)
      .def_readwrite("E_leak", &CobaHHSpec::E_leak)
      .def_readwrite("g_Na", &CobaHHSpec::g_Na)
      .def_readwrite("E_Na", &CobaHHSpec::E_Na)
      .def_readwrite("g_K", &CobaHHSpec::g_K)
      .def_readwrite("E_K", &CobaHHSpec::E_K)
      .def_readwrite("V_T", &CobaHHSpec::V_T)
      .def_readwrite("V_th", &CobaHHSpec::V_th)
      .def_readwrite("V_init_mean", &CobaHHSpec::V_init_mean)
      .def_readwrite("V_init_std", &CobaHHSpec::V_init_std)
      .def_readwrite("g_exc_init_mean", &CobaHHSpec::g_exc_init_mean)
      .def_readwrite("g_exc_init_std", &CobaHHSpec::g_exc_init_std)
      .def_readwrite("g_inh_init_mean", &CobaHHSpec::g_inh_init_mean)
      .def_readwrite("g_inh_init_std", &CobaHHSpec::g_inh_init_std)
      .def_readwrite("connectivity", &CobaHHSpec::connectivity)
      .def_readwrite("dtype", &CobaHHSpec::dtype);
  m.def(
      "build_coba_hh_network",
      [](const CobaHHSpec& spec, uint64_t seed, const std::string& device, double dt) {
        return std::static_pointer_cast<DynSysGroup>(build_coba_hh_network(spec, seed, c10::Device(device), dt));
      },
      py::arg("spec"), py::arg("seed"), py::arg("device"), py::arg("dt"));
  py::class_<DecisionNetSpec>(m, "DecisionNetSpec")
      .def(py::init<>())
      .def_readwrite("scale", &DecisionNetSpec::scale)
      .def_readwrite("f", &DecisionNetSpec::f)
      .def_readwrite("w_plus", &DecisionNetSpec::w_plus)
      .def_readwrite("coherence", &DecisionNetSpec::coherence)
      .def_readwrite("mu0", &DecisionNetSpec::mu0)
      .def_readwrite("stim_sigma", &DecisionNetSpec::stim_sigma)
      .def_readwrite("stim_interval", &DecisionNetSpec::stim_interval)
      .def_readwrite("stim_on", &DecisionNetSpec::stim_on)
      .def_readwrite("stim_off", &DecisionNetSpec::stim_off)
      .def_readwrite("background_hz", &DecisionNetSpec::background_hz)
      .def_readwrite("g_ext_E", &DecisionNetSpec::g_ext_E)
      .def_readwrite("g_ext_I", &DecisionNetSpec::g_ext_I)
      .def_readwrite("g_EE_AMPA", &DecisionNetSpec::g_EE_AMPA)
      .def_readwrite("g_EI_AMPA", &DecisionNetSpec::g_EI_AMPA)
      .def_readwrite("g_EE_NMDA", &DecisionNetSpec::g_EE_NMDA)
      .def_readwrite("g_EI_NMDA", &DecisionNetSpec::g_EI_NMDA)
      .def_readwrite("g_IE_GABA", &DecisionNetSpec::g_IE_GABA)
      .def_readwrite("g_II_GABA", &DecisionNetSpec::g_II_GABA)
      .def_readwrite("delay_ms", &DecisionNetSpec::delay_ms)
      .def_readwrite("dtype", &DecisionNetSpec::dtype);
  m.def(
      "build_decision_network",
      [](const DecisionNetSpec& spec, uint64_t seed, const std::string& device, double dt) {
        return std::static_pointer_cast<DynSysGroup>(build_decision_network(spec, seed, c10::Device(device), dt));
      },
      py::arg("spec"), py::arg("seed"), py::arg("device"), py::arg("dt"));

  py::class_<CannSpec>(m, "CannSpec")
      .def(py::init<>())
      .def_readwrite("size", &CannSpec::size)
      .def_readwrite("tau", &CannSpec::tau)
      .def_readwrite("k", &CannSpec::k)
      .def_readwrite("a", &CannSpec::a)
      .def_readwrite("A", &CannSpec::A)
      .def_readwrite("J0", &CannSpec::J0)
      .def_readwrite("z0", &CannSpec::z0)
      .def_readwrite("speed", &CannSpec::speed)
      .def_readwrite("stim_on", &CannSpec::stim_on)
      .def_readwrite("stim_off", &CannSpec::stim_off)
      .def_readwrite("init_noise", &CannSpec::init_noise)
      .def_readwrite("method", &CannSpec::method)
      .def_readwrite("dtype", &CannSpec::dtype);
  m.def(
      "build_cann_network",
      [](const CannSpec& spec, uint64_t seed, const std::string& device) {
        return std::static_pointer_cast<DynSysGroup>(build_cann_network(spec, seed, c10::Device(device)));
      },
      py::arg("spec"), py::arg("seed"), py::arg("device"));
  py::class_<EsnSpec>(m, "EsnSpec")
      .def(py::init<>())
      .def_readwrite("size", &EsnSpec::size)
      .def_readwrite("spectral_radius", &EsnSpec::spectral_radius)
      .def_readwrite("leak", &EsnSpec::leak)
      .def_readwrite("input_scale", &EsnSpec::input_scale)
      .def_readwrite("bias_scale", &EsnSpec::bias_scale)
      .def_readwrite("density", &EsnSpec::density)
      .def_readwrite("connectivity", &EsnSpec::connectivity)
      .def_readwrite("washout", &EsnSpec::washout)
      .def_readwrite("train_steps", &EsnSpec::train_steps)
      .def_readwrite("test_steps", &EsnSpec::test_steps)
      .def_readwrite("horizon", &EsnSpec::horizon)
      .def_readwrite("lorenz_dt", &EsnSpec::lorenz_dt)
      .def_readwrite("ridge_alpha", &EsnSpec::ridge_alpha)
      .def_readwrite("dtype", &EsnSpec::dtype);
  m.def(
      "run_esn_lorenz",
      [](const EsnSpec& spec, uint64_t seed, const std::string& device, int64_t record_units) {
        EsnResult r;
        {
          py::gil_scoped_release release;
          r = run_esn_lorenz(spec, seed, c10::Device(device), record_units);
        }
        py::dict d;
        d["target"] = r.target;
        d["prediction"] = r.prediction;
        d["states"] = r.states;
        d["train_nrmse"] = r.train_nrmse;
        d["test_nrmse"] = r.test_nrmse;
        d["persistence_nrmse"] = r.persistence_nrmse;
        d["reservoir_seconds"] = r.reservoir_seconds;
        d["fit_seconds"] = r.fit_seconds;
        return d;
      },
      py::arg("spec"), py::arg("seed"), py::arg("device"), py::arg("record_units") = 0);

  py::class_<Monitor>(m, "Monitor")
      .def(py::init([](std::string path, std::optional<at::Tensor> indices, int64_t every, std::string name,
                       std::optional<at::ScalarType> dtype) {
             return Monitor{std::move(path), std::move(indices), every, std::move(name), dtype};
           }),
           py::arg("path"), py::arg("indices") = py::none(), py::arg("every") = 1, py::arg("name") = "",
           py::arg("dtype") = py::none());
  py::class_<RunInput>(m, "RunInput")
      .def(py::init([](std::string path, at::Tensor value, bool per_step, bool add) {
             return RunInput{std::move(path), std::move(value), per_step, add ? RunInput::Op::Add : RunInput::Op::Set};
           }),
           py::arg("path"), py::arg("value"), py::arg("per_step") = false, py::arg("add") = true);
  py::class_<RunnerOptions>(m, "RunnerOptions")
      .def(py::init<>())
      .def_readwrite("dt", &RunnerOptions::dt)
      .def_readwrite("monitors", &RunnerOptions::monitors)
      .def_readwrite("inputs", &RunnerOptions::inputs)
      .def_readwrite("progress", &RunnerOptions::progress)
      .def_readwrite("chunk_steps", &RunnerOptions::chunk_steps)
      .def_readwrite("checkpoint_path", &RunnerOptions::checkpoint_path)
      .def_readwrite("checkpoint_every", &RunnerOptions::checkpoint_every)
      .def_readwrite("identity", &RunnerOptions::identity)
      .def_readwrite("check_finite", &RunnerOptions::check_finite)
      .def_property(
          "engine", [](const RunnerOptions& o) { return std::string(engine_name(o.engine)); },
          [](RunnerOptions& o, const std::string& name) { o.engine = parse_engine(name); })
      .def_property(
          "graphs", [](const RunnerOptions& o) { return std::string(graphs_name(o.graphs)); },
          [](RunnerOptions& o, const std::string& name) { o.graphs = parse_graphs(name); })
      .def_readwrite("graph_steps", &RunnerOptions::graph_steps)
      .def("set_device", [](RunnerOptions& o, const std::string& d) { o.device = c10::Device(d); });
  py::class_<RunResult>(m, "RunResult")
      .def_readonly("steps", &RunResult::steps)
      .def_readonly("dt", &RunResult::dt)
      .def_readonly("t_start", &RunResult::t_start)
      .def_readonly("wall_seconds", &RunResult::wall_seconds)
      .def_readonly("replayed_steps", &RunResult::replayed_steps)
      .def_readonly("graphs", &RunResult::graphs)
      .def_readonly("values", &RunResult::values)
      .def_readonly("times", &RunResult::times)
      .def_readonly("order", &RunResult::order)
      .def_readonly("engine", &RunResult::engine)
      .def_readonly("spike_counts", &RunResult::spike_counts)
      .def("save", &RunResult::save, py::arg("directory"))
      .def("summary_json", &RunResult::summary_json);
  py::class_<Runner>(m, "Runner")
      .def(py::init<std::shared_ptr<DS>, RunnerOptions>())
      .def("run", &Runner::run, py::arg("duration_ms"), release())
      .def("run_steps", &Runner::run_steps, py::arg("steps"), release())
      .def("resume", &Runner::resume, py::arg("path"), release())
      .def("save_checkpoint", &Runner::save_checkpoint, py::arg("path"), release())
      .def("load_checkpoint", &Runner::load_checkpoint, py::arg("path"), release())
      .def("time", [](Runner& r) { return r.context().t; });
  py::register_exception<NonFiniteError>(m, "NonFiniteError", PyExc_FloatingPointError);
  py::register_exception<io::CheckpointError>(m, "CheckpointError", PyExc_ValueError);
  m.def(
      "fast_engine_unsupported",
      [](const std::shared_ptr<DS>& system, const RunnerOptions& options) { return fast_engine_unsupported(*system, options); },
      py::arg("system"), py::arg("options"));

  py::class_<train::SpikingNetOptions>(m, "SpikingNetOptions")
      .def(py::init<>())
      .def_readwrite("n_in", &train::SpikingNetOptions::n_in)
      .def_readwrite("n_hidden", &train::SpikingNetOptions::n_hidden)
      .def_readwrite("n_out", &train::SpikingNetOptions::n_out)
      .def_readwrite("recurrent", &train::SpikingNetOptions::recurrent)
      .def_readwrite("recurrence", &train::SpikingNetOptions::recurrence)
      .def_readwrite("recurrent_prob", &train::SpikingNetOptions::recurrent_prob)
      .def_readwrite("recurrent_delay", &train::SpikingNetOptions::recurrent_delay)
      .def_readwrite("fused", &train::SpikingNetOptions::fused)
      .def_readwrite("dt", &train::SpikingNetOptions::dt)
      .def_readwrite("seed", &train::SpikingNetOptions::seed)
      .def_property(
          "tau", [](const train::SpikingNetOptions& o) { return o.lif.tau; },
          [](train::SpikingNetOptions& o, double v) { o.lif.tau = v; })
      .def_property(
          "V_th", [](const train::SpikingNetOptions& o) { return o.lif.V_th; },
          [](train::SpikingNetOptions& o, double v) { o.lif.V_th = v; });
  torch::python::add_module_bindings(
      py::class_<train::SpikingNet, torch::nn::Module, std::shared_ptr<train::SpikingNet>>(m, "SpikingNet"))
      .def(py::init<train::SpikingNetOptions>())
      .def("reset", &train::SpikingNet::reset, py::arg("batch_size"))
      .def("forward", &train::SpikingNet::forward, py::arg("inputs"), release())
      .def("forward_with", &train::SpikingNet::forward_with, py::arg("inputs"), py::arg("parameters"), release())
      .def("detach_state", &train::SpikingNet::detach_state)
      .def("last_rate", &train::SpikingNet::last_rate);

  // Trainers: ridge, FORCE (RLS), LMS readouts, and the C++ BPTT loop.
  m.def(
      "ridge",
      [](const at::Tensor& X, const at::Tensor& Y, double alpha, bool fit_bias) {
        const auto r = train::ridge(X, Y, alpha, fit_bias);
        return std::make_pair(r.weight, r.bias);
      },
      py::arg("X"), py::arg("Y"), py::arg("alpha") = 1e-6, py::arg("fit_bias") = true, release());
  torch::python::add_module_bindings(
      py::class_<train::Readout, torch::nn::Module, std::shared_ptr<train::Readout>>(m, "Readout"))
      .def(py::init([](int64_t n_features, int64_t n_out, const std::string& dtype,
                                     const std::string& device) {
             return std::make_shared<train::Readout>(n_features, n_out, tensor_options(dtype, device));
           }),
           py::arg("n_features"), py::arg("n_out"), py::arg("dtype") = "float64", py::arg("device") = "cpu")
      .def("forward", &train::Readout::forward, py::arg("r"))
      .def("fit_ridge", &train::Readout::fit_ridge, py::arg("X"), py::arg("Y"), py::arg("alpha") = 1e-6, release());
  py::class_<train::RLS>(m, "RLS")
      .def(py::init<train::Readout&, double, double>(), py::arg("readout"), py::arg("alpha") = 1.0,
           py::arg("forgetting") = 1.0, py::keep_alive<1, 2>())
      .def("update", &train::RLS::update, py::arg("r"), py::arg("y"))
      .def("P", &train::RLS::P);
  py::class_<train::LMS>(m, "LMS")
      .def(py::init<train::Readout&, double>(), py::arg("readout"), py::arg("lr") = 1e-3, py::keep_alive<1, 2>())
      .def("update", &train::LMS::update, py::arg("r"), py::arg("y"));

  py::class_<data::EvidenceOptions>(m, "EvidenceOptions")
      .def(py::init<>())
      .def_readwrite("cues", &data::EvidenceOptions::cues)
      .def_readwrite("cue_steps", &data::EvidenceOptions::cue_steps)
      .def_readwrite("gap_steps", &data::EvidenceOptions::gap_steps)
      .def_readwrite("delay_steps", &data::EvidenceOptions::delay_steps)
      .def_readwrite("recall_steps", &data::EvidenceOptions::recall_steps)
      .def_readwrite("channels_per_group", &data::EvidenceOptions::channels_per_group)
      .def_readwrite("cue_rate", &data::EvidenceOptions::cue_rate)
      .def_readwrite("noise_rate", &data::EvidenceOptions::noise_rate)
      .def_readwrite("majority_prob", &data::EvidenceOptions::majority_prob);
  m.def(
      "evidence_accumulation",
      [](int64_t n, uint64_t seed, const data::EvidenceOptions& o) {
        const auto d = data::evidence_accumulation(n, seed, o);
        return py::make_tuple(d.inputs, d.labels, d.left_cues, d.recall_start);
      },
      py::arg("n_samples"), py::arg("seed"), py::arg("options"));
  py::class_<train::BPTTOptions>(m, "BPTTOptions")
      .def(py::init<>())
      .def_readwrite("epochs", &train::BPTTOptions::epochs)
      .def_readwrite("batch_size", &train::BPTTOptions::batch_size)
      .def_readwrite("shuffle", &train::BPTTOptions::shuffle)
      .def_readwrite("seed", &train::BPTTOptions::seed)
      .def_readwrite("truncation", &train::BPTTOptions::truncation)
      .def_readwrite("grad_clip_norm", &train::BPTTOptions::grad_clip_norm)
      .def_readwrite("progress", &train::BPTTOptions::progress)
      .def_readwrite("checkpoint_dir", &train::BPTTOptions::checkpoint_dir)
      .def_readwrite("resume_from", &train::BPTTOptions::resume_from)
      .def_readwrite("recompute_chunk", &train::BPTTOptions::recompute_chunk)
      // Data-parallel training over the processes torchrun started (see BPTTOptions::comm).
      .def(
          "connect_from_env",
          [](train::BPTTOptions& o, double timeout_s) {
            TORCH_CHECK(timeout_s > 0, "dist_timeout must be > 0 seconds, got ", timeout_s);
            o.comm = dist::connect_from_env(std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
          },
          py::arg("timeout_s"), release())
      .def_property_readonly("world_size", [](const train::BPTTOptions& o) { return o.comm ? o.comm->world_size() : 1; })
      .def_property_readonly("rank", [](const train::BPTTOptions& o) { return o.comm ? o.comm->rank() : 0; })
      .def_property(
          "decision_last_steps", [](const train::BPTTOptions&) { return py::none(); },
          [](train::BPTTOptions& o, int64_t k) {
            TORCH_CHECK(k > 0, "decision_last_steps must be > 0, got ", k);
            o.decision = [k](const at::Tensor& out) {
              const int64_t n = std::min(k, out.size(0));
              return out.narrow(0, out.size(0) - n, n).mean(0);
            };
          });
  m.def(
      "backward_recomputing",
      [](std::shared_ptr<train::SpikingNet> model, const at::Tensor& inputs, py::function loss_fn, int64_t chunk) {
        // The loss is Python: called back with the GIL, everything else runs without it.
        const std::function<at::Tensor(const at::Tensor&)> loss_of = [&](const at::Tensor& out) {
          py::gil_scoped_acquire gil;
          return loss_fn(out).cast<at::Tensor>();
        };
        at::Tensor loss, outputs;
        {
          py::gil_scoped_release no_gil;
          loss = train::backward_recomputing(*model, inputs, loss_of, chunk, &outputs);
        }
        return std::make_pair(loss, outputs);
      },
      py::arg("model"), py::arg("inputs"), py::arg("loss_fn"), py::arg("chunk"));
  py::class_<train::EpochStats>(m, "EpochStats")
      .def_readonly("epoch", &train::EpochStats::epoch)
      .def_readonly("loss", &train::EpochStats::loss)
      .def_readonly("accuracy", &train::EpochStats::accuracy)
      .def_readonly("eval_loss", &train::EpochStats::eval_loss)
      .def_readonly("eval_accuracy", &train::EpochStats::eval_accuracy)
      .def_readonly("seconds", &train::EpochStats::seconds);
  m.def(
      "bptt_fit",
      [](std::shared_ptr<train::SpikingNet> model, const std::string& optimizer, double lr, const std::string& loss,
         const train::BPTTOptions& options, const at::Tensor& inputs, const at::Tensor& targets,
         const std::optional<at::Tensor>& eval_inputs, const std::optional<at::Tensor>& eval_targets) {
        std::shared_ptr<torch::optim::Optimizer> opt;
        if (optimizer == "adam") opt = std::make_shared<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(lr));
        else if (optimizer == "adamw") opt = std::make_shared<torch::optim::AdamW>(model->parameters(), torch::optim::AdamWOptions(lr));
        else if (optimizer == "sgd") opt = std::make_shared<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(lr).momentum(0.9));
        else TORCH_CHECK(false, "BPTT: optimizer must be 'adam', 'adamw' or 'sgd', got '", optimizer, "'");
        train::LossFn fn;
        if (loss == "ce_mean") fn = train::losses::cross_entropy_mean_over_time();
        else if (loss == "ce_last") fn = train::losses::cross_entropy_last_step();
        else if (loss == "mse") fn = train::losses::mse();
        else if (loss.rfind("ce_last_", 0) == 0) fn = train::losses::cross_entropy_mean_over_last(std::stoll(loss.substr(8)));
        else TORCH_CHECK(false, "BPTT: loss must be 'ce_mean', 'ce_last', 'ce_last_<steps>' or 'mse', got '", loss, "'");
        train::BPTT trainer(model, opt, fn, options);
        return trainer.fit(inputs, targets, eval_inputs.value_or(at::Tensor()), eval_targets.value_or(at::Tensor()));
      },
      py::arg("model"), py::arg("optimizer"), py::arg("lr"), py::arg("loss"), py::arg("options"), py::arg("inputs"),
      py::arg("targets"), py::arg("eval_inputs") = py::none(), py::arg("eval_targets") = py::none(), release());
}

}  // namespace brain::python
