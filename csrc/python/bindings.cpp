// brain._C: the C++ classes that Python reaches directly (the ops are reached through
// torch.ops.brain, with no binding). python/brain/analysis.py wraps these in the documented
// Python API; Python callables become C++ Fields here.
#include <torch/python.h>

#include <pybind11/complex.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <brain/analysis/analysis.h>
#include <brain/analysis/models.h>

#include "csrc/python/bindings.h"

namespace py = pybind11;
namespace ba = brain::analysis;

namespace {

// The analysis runs with the GIL released (autograd refuses to run while it is held) and takes
// it back around every call into Python. The callable is shared, and released under the GIL,
// so that copies of the C++ function never touch Python reference counts without it.
std::shared_ptr<py::function> share(py::function fn) {
  return std::shared_ptr<py::function>(new py::function(std::move(fn)), [](py::function* p) {
    py::gil_scoped_acquire gil;
    delete p;
  });
}

// f(args) must return a list of tensors (the Python wrapper normalises what users return).
ba::Field wrap_field(py::function fn) {
  auto shared = share(std::move(fn));
  return [shared](const std::vector<at::Tensor>& args) {
    py::gil_scoped_acquire gil;
    return (*shared)(args).cast<std::vector<at::Tensor>>();
  };
}

std::function<at::Tensor(const at::Tensor&)> wrap_map(py::function fn) {
  auto shared = share(std::move(fn));
  return [shared](const at::Tensor& x) {
    py::gil_scoped_acquire gil;
    py::object r = (*shared)(x);
    TORCH_CHECK(THPVariable_Check(r.ptr()), "SlowPointFinder: the function must return a tensor");
    return r.cast<at::Tensor>();
  };
}

using release = py::call_guard<py::gil_scoped_release>;

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "libbrain's C++ classes (use brain.analysis and brain.models, not this module)";
  brain::python::bind_modules(m);
  brain::python::bind_neurons(m);

  py::class_<ba::Axis>(m, "Axis")
      .def(py::init([](std::string name, double lo, double hi, int64_t resolution) {
             return ba::Axis{std::move(name), lo, hi, resolution};
           }),
           py::arg("name"), py::arg("lo"), py::arg("hi"), py::arg("resolution") = 0)
      .def_readonly("name", &ba::Axis::name)
      .def_readonly("lo", &ba::Axis::lo)
      .def_readonly("hi", &ba::Axis::hi)
      .def_readonly("resolution", &ba::Axis::resolution);

  py::class_<ba::Param>(m, "Param")
      .def_static("fixed", &ba::Param::fixed)
      .def_static("range", &ba::Param::range, py::arg("name"), py::arg("lo"), py::arg("hi"), py::arg("resolution") = 0)
      .def_readonly("name", &ba::Param::name)
      .def_readonly("value", &ba::Param::value)
      .def_readonly("swept", &ba::Param::swept)
      .def_readonly("lo", &ba::Param::lo)
      .def_readonly("hi", &ba::Param::hi);

  py::class_<ba::Options>(m, "Options")
      .def(py::init<>())
      .def("set_device", [](ba::Options& o, const std::string& device) {
        o.tensor_options = o.tensor_options.device(c10::Device(device));
      })
      .def_readwrite("resolution", &ba::Options::resolution)
      .def_readwrite("max_candidates", &ba::Options::max_candidates)
      .def_readwrite("newton_iterations", &ba::Options::newton_iterations)
      .def_readwrite("tolerance", &ba::Options::tolerance)
      .def_readwrite("eig_tolerance", &ba::Options::eig_tolerance)
      .def_readwrite("unique_tolerance", &ba::Options::unique_tolerance)
      .def_readwrite("match_tolerance", &ba::Options::match_tolerance)
      .def_readwrite("bisection_steps", &ba::Options::bisection_steps);

  py::class_<ba::FixedPoint>(m, "FixedPoint")
      .def_readonly("x", &ba::FixedPoint::x)
      .def_readonly("params", &ba::FixedPoint::params)
      .def_readonly("jacobian", &ba::FixedPoint::jacobian)
      .def_readonly("eigenvalues", &ba::FixedPoint::eigenvalues)
      .def_readonly("stability", &ba::FixedPoint::stability)
      .def_readonly("residual", &ba::FixedPoint::residual);

  py::class_<ba::VectorFieldGrid>(m, "VectorFieldGrid")
      .def_readonly("axes", &ba::VectorFieldGrid::axes)
      .def_readonly("derivatives", &ba::VectorFieldGrid::derivatives)
      .def_readonly("skipped", &ba::VectorFieldGrid::skipped);

  py::class_<ba::Trajectory>(m, "Trajectory")
      .def_readonly("t", &ba::Trajectory::t)
      .def_readonly("values", &ba::Trajectory::values);

  py::class_<ba::LimitCycle>(m, "LimitCycle")
      .def_readonly("found", &ba::LimitCycle::found)
      .def_readonly("period", &ba::LimitCycle::period)
      .def_readonly("min", &ba::LimitCycle::min)
      .def_readonly("max", &ba::LimitCycle::max)
      .def_readonly("amplitude", &ba::LimitCycle::amplitude)
      .def_readonly("params", &ba::LimitCycle::params);

  py::class_<ba::BifurcationEvent>(m, "BifurcationEvent")
      .def_readonly("kind", &ba::BifurcationEvent::kind)
      .def_readonly("params", &ba::BifurcationEvent::params)
      .def_readonly("x", &ba::BifurcationEvent::x);

  py::class_<ba::BifurcationResult>(m, "BifurcationResult")
      .def_readonly("param_names", &ba::BifurcationResult::param_names)
      .def_readonly("points", &ba::BifurcationResult::points)
      .def_readonly("events", &ba::BifurcationResult::events)
      .def_readonly("skipped", &ba::BifurcationResult::skipped);

  py::class_<ba::PhasePlane>(m, "PhasePlane")
      .def(py::init([](py::function f, std::vector<ba::Axis> v, std::vector<ba::Param> p, ba::Options o) {
        return ba::PhasePlane(wrap_field(std::move(f)), std::move(v), std::move(p), o);
      }))
      .def("vector_field", &ba::PhasePlane::vector_field, release())
      .def("nullclines", &ba::PhasePlane::nullclines, release())
      .def("fixed_points", &ba::PhasePlane::fixed_points, release())
      .def("trajectory", &ba::PhasePlane::trajectory, release())
      .def("limit_cycles", &ba::PhasePlane::limit_cycles, release())
      .def("skipped_points", &ba::PhasePlane::skipped_points, release());

  py::class_<ba::Bifurcation>(m, "Bifurcation")
      .def(py::init([](py::function f, std::vector<ba::Axis> v, std::vector<ba::Param> p, ba::Options o) {
        return ba::Bifurcation(wrap_field(std::move(f)), std::move(v), std::move(p), o);
      }))
      .def("compute", &ba::Bifurcation::compute, release())
      .def("limit_cycles", &ba::Bifurcation::limit_cycles, release());

  py::class_<ba::FastSlow>(m, "FastSlow")
      .def(py::init([](py::function f, std::vector<ba::Axis> fast, std::vector<ba::Axis> slow,
                       std::vector<ba::Param> p, ba::Options o) {
        return ba::FastSlow(wrap_field(std::move(f)), std::move(fast), std::move(slow), std::move(p), o);
      }))
      .def("compute", &ba::FastSlow::compute, release())
      .def("trajectory", &ba::FastSlow::trajectory, release());

  py::class_<ba::SlowPointOptions>(m, "SlowPointOptions")
      .def(py::init<>())
      .def_readwrite("discrete", &ba::SlowPointOptions::discrete)
      .def_readwrite("optimizer", &ba::SlowPointOptions::optimizer)
      .def_readwrite("lr", &ba::SlowPointOptions::lr)
      .def_readwrite("max_steps", &ba::SlowPointOptions::max_steps)
      .def_readwrite("tolerance", &ba::SlowPointOptions::tolerance)
      .def_readwrite("check_every", &ba::SlowPointOptions::check_every)
      .def_readwrite("unique_tolerance", &ba::SlowPointOptions::unique_tolerance)
      .def_readwrite("outlier_threshold", &ba::SlowPointOptions::outlier_threshold)
      .def_readwrite("verbose", &ba::SlowPointOptions::verbose);

  py::class_<ba::SlowPoints>(m, "SlowPoints")
      .def_readonly("points", &ba::SlowPoints::points)
      .def_readonly("losses", &ba::SlowPoints::losses)
      .def_readonly("jacobians", &ba::SlowPoints::jacobians)
      .def_readonly("eigenvalues", &ba::SlowPoints::eigenvalues)
      .def_readonly("right_vectors", &ba::SlowPoints::right_vectors)
      .def_readonly("left_vectors", &ba::SlowPoints::left_vectors)
      .def_readonly("all_losses", &ba::SlowPoints::all_losses)
      .def_readonly("steps", &ba::SlowPoints::steps)
      .def_readonly("kept_after_loss", &ba::SlowPoints::kept_after_loss)
      .def_readonly("kept_after_unique", &ba::SlowPoints::kept_after_unique)
      .def_readonly("kept_after_outliers", &ba::SlowPoints::kept_after_outliers);

  py::class_<ba::SlowPointFinder>(m, "SlowPointFinder")
      .def(py::init([](py::function f, ba::SlowPointOptions o) { return ba::SlowPointFinder(wrap_map(std::move(f)), o); }))
      .def("find", &ba::SlowPointFinder::find, release())
      .def("loss", &ba::SlowPointFinder::loss, release())
      .def("jacobians", &ba::SlowPointFinder::jacobians, release());

  m.def("classify", &ba::classify, py::arg("jacobian"), py::arg("eig_tolerance") = 1e-4);
  m.def("builtin_models", [] {
    py::list out;
    for (const auto& b : ba::builtin_models()) {
      py::dict d;
      d["name"] = b.name;
      d["description"] = b.description;
      d["variables"] = b.variables;
      d["params"] = b.params;
      d["field"] = b.field;
      out.append(d);
    }
    return out;
  });
}
