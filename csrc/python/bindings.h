// Internal: the parts of brain._C, one translation unit each.
#pragma once

#include <string>

#include <c10/core/TensorOptions.h>
#include <pybind11/pybind11.h>

namespace brain::python {

// "float32" or "float64" on a device given by name: how Python constructors take options.
at::TensorOptions tensor_options(const std::string& dtype, const std::string& device);

void bind_modules(pybind11::module& m);  // modules.cpp: networks, runner, trainers
void bind_neurons(pybind11::module& m);  // neurons.cpp: point neurons, synapses, inputs

}  // namespace brain::python
