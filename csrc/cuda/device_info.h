// Internal: CUDA device properties, compiled only into CUDA builds.
#pragma once

#include <vector>

#include <brain/info.h>

namespace brain::detail {
std::vector<CudaDeviceInfo> cuda_devices();
}
