// brain._C: the model library's modules, runner and spiking network for Python. The modules
// are bound with torch's own module bindings (parameters, buffers, children, train/eval, to),
// and python/brain/models.py wraps them in torch.nn.cpp.ModuleWrapper, so they are ordinary
// torch.nn.Modules whose parameters torch.optim updates in place.
#include <torch/python.h>

#include <pybind11/stl.h>

#include <brain/dyn/runner.h>
#include <brain/dyn/system.h>
#include <brain/models/networks.h>
#include <brain/train/bptt.h>

#include "csrc/python/bindings.h"

namespace py = pybind11;

namespace brain::python {

void bind_modules(py::module& m) {
  using DS = DynamicalSystem;
  using release = py::call_guard<py::gil_scoped_release>;

  torch::python::add_module_bindings(py::class_<DS, torch::nn::Module, std::shared_ptr<DS>>(m, "DynamicalSystem"))
      .def("reset_state", &DS::reset_state, py::arg("batch_size") = 0)
      .def("find_state", &DS::find_state, py::arg("path"))
      .def("assign_state", &DS::assign_state, py::arg("name"), py::arg("value"))
      .def("has_state", &DS::has_state)
      .def("dynamical_name", [](const DS& s) { return s.name(); });
  py::class_<DynSysGroup, DS, std::shared_ptr<DynSysGroup>>(m, "DynSysGroup");

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
      .def("set_device", [](RunnerOptions& o, const std::string& d) { o.device = c10::Device(d); });
  py::class_<RunResult>(m, "RunResult")
      .def_readonly("steps", &RunResult::steps)
      .def_readonly("dt", &RunResult::dt)
      .def_readonly("t_start", &RunResult::t_start)
      .def_readonly("wall_seconds", &RunResult::wall_seconds)
      .def_readonly("values", &RunResult::values)
      .def_readonly("times", &RunResult::times)
      .def_readonly("order", &RunResult::order)
      .def("save", &RunResult::save, py::arg("directory"))
      .def("summary_json", &RunResult::summary_json);
  py::class_<Runner>(m, "Runner")
      .def(py::init<std::shared_ptr<DS>, RunnerOptions>())
      .def("run", &Runner::run, py::arg("duration_ms"), release())
      .def("run_steps", &Runner::run_steps, py::arg("steps"), release())
      .def("time", [](Runner& r) { return r.context().t; });

  py::class_<train::SpikingNetOptions>(m, "SpikingNetOptions")
      .def(py::init<>())
      .def_readwrite("n_in", &train::SpikingNetOptions::n_in)
      .def_readwrite("n_hidden", &train::SpikingNetOptions::n_hidden)
      .def_readwrite("n_out", &train::SpikingNetOptions::n_out)
      .def_readwrite("recurrent", &train::SpikingNetOptions::recurrent)
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
      .def("detach_state", &train::SpikingNet::detach_state)
      .def("last_rate", &train::SpikingNet::last_rate);
}

}  // namespace brain::python
