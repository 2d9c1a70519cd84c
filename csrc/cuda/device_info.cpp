#include "csrc/cuda/device_info.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>

namespace brain::detail {

std::vector<CudaDeviceInfo> cuda_devices() {
  std::vector<CudaDeviceInfo> out;
  const int count = static_cast<int>(c10::cuda::device_count());
  for (int i = 0; i < count; ++i) {
    const cudaDeviceProp* prop = at::cuda::getDeviceProperties(i);
    CudaDeviceInfo d;
    d.index = i;
    d.name = prop->name;
    d.compute_major = prop->major;
    d.compute_minor = prop->minor;
    d.total_memory_bytes = static_cast<std::int64_t>(prop->totalGlobalMem);
    d.multiprocessors = prop->multiProcessorCount;
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace brain::detail
