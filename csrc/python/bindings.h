// Internal: the parts of brain._C, one translation unit each.
#pragma once

#include <pybind11/pybind11.h>

namespace brain::python {

void bind_modules(pybind11::module& m);  // modules.cpp: networks, runner, trainers
void bind_neurons(pybind11::module& m);  // neurons.cpp: point neurons, synapses, inputs

}  // namespace brain::python
