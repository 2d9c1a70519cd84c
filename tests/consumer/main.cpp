#include <cstdio>
#include <string>

#include <ATen/ATen.h>
#include <brain/brain.h>

int main() {
  const std::string got = brain::version();
  if (got != EXPECTED_BRAIN_VERSION || got != BRAIN_VERSION) {
    std::fprintf(stderr, "version mismatch: library %s, header %s, expected %s\n", got.c_str(),
                 BRAIN_VERSION, EXPECTED_BRAIN_VERSION);
    return 1;
  }
  const auto info = brain::build_info();
  if (info.torch_runtime_version != info.torch_build_version) {
    std::fprintf(stderr, "torch mismatch: built %s, running %s\n",
                 info.torch_build_version.c_str(), info.torch_runtime_version.c_str());
    return 1;
  }
  // Torch itself must be usable through brain::brain's link interface.
  const double sum = at::arange(1, 5, at::kDouble).sum().item<double>();
  if (sum != 10.0) {
    std::fprintf(stderr, "torch computed %f, expected 10\n", sum);
    return 1;
  }
  std::printf("consumer OK: libbrain %s on torch %s, %zu operators\n", got.c_str(),
              info.torch_runtime_version.c_str(), info.ops.size());
  return 0;
}
