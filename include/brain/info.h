// What this libbrain is and what it runs on: versions, CUDA devices and registered operators.
// Torch-free on purpose, so any translation unit may include it cheaply.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <brain/config.h>
#include <brain/export.h>

namespace brain {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  std::int64_t total_memory_bytes = 0;
  int multiprocessors = 0;
};

// One operator in the `brain::` namespace of the Torch dispatcher.
struct OpInfo {
  std::string name;    // e.g. "brain::csr_matmul"
  std::string schema;  // the full function schema, as torch prints it
};

struct BuildInfo {
  std::string version;                // libbrain's version (BRAIN_VERSION)
  std::string torch_build_version;    // the torch headers it was compiled against
  std::string torch_runtime_version;  // the libtorch loaded in this process
  bool with_cuda = false;             // CUDA kernels compiled in
  bool cuda_available = false;        // torch sees a usable CUDA driver and device now
  int cuda_device_count = 0;
  std::vector<CudaDeviceInfo> devices;  // filled only when with_cuda && cuda_available
  std::vector<OpInfo> ops;              // sorted by name
};

BRAIN_API std::string version();

// The version the loaded libtorch reports about itself ("2.11.0"), read from its build
// configuration, which can differ from the headers libbrain was compiled with.
BRAIN_API std::string torch_runtime_version();

// Operators registered under the `brain` namespace, sorted by name.
BRAIN_API std::vector<OpInfo> registered_ops();

BRAIN_API BuildInfo build_info();

// Human-readable multi-line report (what `brain info` prints).
BRAIN_API std::string format_build_info(const BuildInfo& info);

}  // namespace brain
