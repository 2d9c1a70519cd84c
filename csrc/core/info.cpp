#include <brain/info.h>

#include <algorithm>
#include <sstream>

#include <ATen/Context.h>
#include <ATen/Version.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/cuda.h>
#include <torch/version.h>

#if BRAIN_WITH_CUDA
#include "csrc/cuda/device_info.h"
#endif

namespace brain {

namespace {
constexpr const char* kNamespacePrefix = "brain::";

std::string stringify_int(long v) { return std::to_string(v); }
}  // namespace

std::string version() { return BRAIN_VERSION; }

std::string torch_runtime_version() {
  // libtorch has no version function; its build configuration string (the same text as
  // torch.__config__.show()) carries "TORCH_VERSION=x.y.z", compiled into libtorch_cpu.
  const std::string config = at::show_config();
  const std::string key = "TORCH_VERSION=";
  const auto pos = config.find(key);
  if (pos == std::string::npos) return "unknown";
  const auto begin = pos + key.size();
  const auto end = config.find_first_of(", \n", begin);
  return config.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

std::vector<OpInfo> registered_ops() {
  auto& dispatcher = c10::Dispatcher::singleton();
  std::vector<OpInfo> ops;
  for (const auto& name : dispatcher.getAllOpNames()) {
    if (name.name.rfind(kNamespacePrefix, 0) != 0) continue;
    auto handle = dispatcher.findSchema(name);
    if (!handle || !handle->hasSchema()) continue;
    std::ostringstream schema;
    schema << handle->schema();
    std::string full_name = name.name;
    if (!name.overload_name.empty()) full_name += "." + name.overload_name;
    ops.push_back({full_name, schema.str()});
  }
  std::sort(ops.begin(), ops.end(),
            [](const OpInfo& a, const OpInfo& b) { return a.name < b.name; });
  return ops;
}

BuildInfo build_info() {
  BuildInfo info;
  info.version = version();
  info.torch_build_version = stringify_int(TORCH_VERSION_MAJOR) + "." +
                             stringify_int(TORCH_VERSION_MINOR) + "." +
                             stringify_int(TORCH_VERSION_PATCH);
  info.torch_runtime_version = torch_runtime_version();
  info.with_cuda = BRAIN_WITH_CUDA != 0;
  info.cuda_available = torch::cuda::is_available();
  info.cuda_device_count = info.cuda_available ? static_cast<int>(torch::cuda::device_count()) : 0;
#if BRAIN_WITH_CUDA
  if (info.cuda_available) info.devices = detail::cuda_devices();
#endif
  info.ops = registered_ops();
  return info;
}

std::string format_build_info(const BuildInfo& info) {
  std::ostringstream out;
  out << "libbrain " << info.version << "\n";
  out << "  torch (built with):  " << info.torch_build_version << "\n";
  out << "  torch (running):     " << info.torch_runtime_version;
  if (info.torch_runtime_version != info.torch_build_version) out << "  (MISMATCH: rebuild libbrain)";
  out << "\n";
  out << "  CUDA kernels:        " << (info.with_cuda ? "compiled in" : "not compiled (CPU-only build)")
      << "\n";
  out << "  CUDA available:      " << (info.cuda_available ? "yes" : "no") << " ("
      << info.cuda_device_count << " device" << (info.cuda_device_count == 1 ? "" : "s") << ")\n";
  for (const auto& d : info.devices) {
    out << "    cuda:" << d.index << "  " << d.name << ", sm_" << d.compute_major << d.compute_minor
        << ", " << d.multiprocessors << " SMs, " << (d.total_memory_bytes >> 20) << " MiB\n";
  }
  out << "  operators (" << info.ops.size() << "):";
  if (info.ops.empty()) out << " none registered";
  out << "\n";
  for (const auto& op : info.ops) out << "    " << op.schema << "\n";
  return out.str();
}

}  // namespace brain
