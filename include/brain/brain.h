// The umbrella header: everything public in libbrain.
#pragma once

#include <brain/config.h>
#include <brain/info.h>
