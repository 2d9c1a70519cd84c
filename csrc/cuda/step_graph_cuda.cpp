// The runner's CUDA graph (csrc/dyn/step_graph.h): at::cuda::CUDAGraph captured on a side
// stream, as CUDA requires (capture on the legacy default stream is refused), and replayed on
// that stream; events order it against the stream the run was started on.
#include <optional>

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

#include "csrc/dyn/step_graph.h"

namespace brain::detail {
namespace {

class CudaStepGraph final : public StepGraph {
 public:
  explicit CudaStepGraph(c10::Device device)
      : device_(device), side_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index())) {}

  void begin() override {
    const c10::cuda::CUDAGuard guard(device_);
    caller_ = c10::cuda::getCurrentCUDAStream(device_.index());
    at::cuda::CUDAEvent queued;
    queued.record(*caller_);
    queued.block(side_);
    stream_guard_.emplace(side_);
  }

  void capture(const std::function<void()>& steps) override {
    TORCH_CHECK(stream_guard_, "StepGraph: capture() outside begin() / end()");
    graph_.capture_begin();
    try {
      steps();
    } catch (...) {
      // End the capture so the stream is usable again; the error that stopped it is the news.
      try {
        graph_.capture_end();
      } catch (...) {
      }
      throw;
    }
    graph_.capture_end();
  }

  void replay() override { graph_.replay(); }

  void end() override {
    if (!stream_guard_) return;
    at::cuda::CUDAEvent done;
    done.record(side_);
    stream_guard_.reset();
    done.block(*caller_);
  }

  ~CudaStepGraph() override {
    try {
      end();
    } catch (...) {
    }
  }

 private:
  c10::Device device_;
  c10::cuda::CUDAStream side_;
  std::optional<c10::cuda::CUDAStream> caller_;
  std::optional<c10::cuda::CUDAStreamGuard> stream_guard_;
  at::cuda::CUDAGraph graph_;
};

}  // namespace

std::unique_ptr<StepGraph> make_cuda_step_graph(c10::Device device) {
  TORCH_CHECK(device.is_cuda(), "StepGraph: a CUDA graph needs a CUDA device, got ", device);
  return std::make_unique<CudaStepGraph>(device);
}

}  // namespace brain::detail
