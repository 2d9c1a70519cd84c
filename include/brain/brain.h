// The umbrella header: everything public in libbrain.
#pragma once

#include <brain/config.h>
#include <brain/info.h>
#include <brain/csr.h>
#include <brain/dyn.h>
#include <brain/ops.h>
