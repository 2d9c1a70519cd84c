// The CUDA emulator's stand-in for <cuda_runtime_api.h> (see tests/cuda_emu/README.md).
#pragma once
#include "emu/cuda_emu.h"
