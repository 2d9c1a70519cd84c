// Internal: a recorded sequence of steps that is replayed as a unit: a CUDA graph, or (for
// testing replayability without a GPU) an emulation that runs the recorded function again.
#pragma once

#include <functional>
#include <memory>

#include <c10/core/Device.h>

namespace brain::detail {

class StepGraph {
 public:
  virtual ~StepGraph() = default;
  // Records what `steps` enqueues. A CUDA graph runs none of it now: replay() runs it.
  virtual void capture(const std::function<void()>& steps) = 0;
  virtual void replay() = 0;
  // Everything the graph will run is ordered after what the caller's stream has queued, and
  // the caller's stream after everything it ran, between begin() and end().
  virtual void begin() {}
  virtual void end() {}
};

// Calls the function again at every replay.
class EmulatedStepGraph final : public StepGraph {
 public:
  void capture(const std::function<void()>& steps) override { steps_ = steps; }
  void replay() override { steps_(); }

 private:
  std::function<void()> steps_;
};

// A CUDA graph captured on a side stream of `device` (csrc/cuda/step_graph_cuda.cpp; CUDA
// builds only). Between begin() and end() the side stream is the current one, so the steps
// run before capture (warm-up: cuBLAS workspaces, lazily built caches) run where the graph
// is captured and replayed.
std::unique_ptr<StepGraph> make_cuda_step_graph(c10::Device device);

}  // namespace brain::detail
