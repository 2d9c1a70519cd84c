// The dynamical-system core: systems, integrators, delays, inputs, the runner.
#pragma once

#include <brain/dyn/delay.h>
#include <brain/dyn/inputs.h>
#include <brain/dyn/integrators.h>
#include <brain/dyn/runner.h>
#include <brain/dyn/fast.h>
#include <brain/dyn/system.h>
#include <brain/io/npz.h>
