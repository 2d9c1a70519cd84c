// Internal: the parts of brain._C, one translation unit each.
#pragma once

#include <pybind11/pybind11.h>

namespace brain::python {

void bind_modules(pybind11::module& m);

}  // namespace brain::python
