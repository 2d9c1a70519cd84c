// Dynamical systems: the base class of every model (channel, neuron, synapse, network) and
// the group that composes them to any depth (SPEC section 3).
//
// Step order, fixed so results compare with Brian2: within one step every system first
// integrates its state, then detects threshold crossings and resets, and projections then
// deliver this step's spikes (after their delays) into synaptic state. A DynSysGroup updates
// its children in the order they were added, so a network adds neurons before projections.
//
// State lives in tensors that are replaced (not modified in place) every step, which keeps
// them differentiable through time for BPTT. Each state is also registered as a buffer, and
// the buffers are brought up to date whenever torch looks at them through this class
// (module.to(device), torch::save, torch::load); call sync_buffers() before reading
// named_buffers() directly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <torch/nn/module.h>
#include <torch/serialize/archive.h>

#include <brain/export.h>

namespace brain {

// Moves every parameter and buffer below `root` (root included): to `device` when given, and
// to `dtype` when given for the floating-point ones only, as torch.nn.Module.to does in
// Python. torch's C++ Module::to converts every tensor, which would turn CSR indices, group
// labels and step counters into floats. Every DynamicalSystem below also records where its
// later states go. The to() overrides of libbrain's modules call it.
BRAIN_API void move_module(torch::nn::Module& root, std::optional<torch::Device> device,
                           std::optional<torch::Dtype> dtype, bool non_blocking = false);

// Module::to's three overloads, through move_module: in the class body of a libbrain module
// that holds integer tensors (or whose children may).
#define BRAIN_MOVES_FLOATING_TENSORS_ONLY                                                           \
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override {           \
    ::brain::move_module(*this, device, dtype, non_blocking);                                        \
  }                                                                                                  \
  void to(torch::Dtype dtype, bool non_blocking = false) override {                                  \
    ::brain::move_module(*this, std::nullopt, dtype, non_blocking);                                  \
  }                                                                                                  \
  void to(torch::Device device, bool non_blocking = false) override {                                \
    ::brain::move_module(*this, device, std::nullopt, non_blocking);                                 \
  }

// What every system sees during a step. Times are in milliseconds.
struct Context {
  double t = 0.0;       // time at the start of the current step
  double dt = 0.1;      // step size
  int64_t step = 0;     // index of the current step
  bool training = false;
  // Set while the step is being recorded for replay (a CUDA graph, see Runner): the index of
  // the current step as an int64 0-d tensor on the system's device, which the replayed graph
  // advances. `step` and `t` are then only the values at capture, baked into every replay, so
  // a replayable system takes the step from step_value() and never computes with `t`.
  at::Tensor clock;

  // The current step as a tensor operand: the clock when set, else `step` as a wrapped number
  // (a CPU scalar that ops take beside tensors on any device, like a C++ integer).
  at::Tensor step_value() const;
};

class BRAIN_API DynamicalSystem : public torch::nn::Module {
 public:
  using Hook = std::function<void(DynamicalSystem&, const Context&)>;

  explicit DynamicalSystem(std::string name = "DynamicalSystem");
  ~DynamicalSystem() override = default;

  // (Re)allocates the state of this system and all its children. batch_size = 0 means no
  // batch dimension; otherwise states get a leading dimension of that size.
  void reset_state(int64_t batch_size = 0);

  // One step: before-update hooks, update(), after-update hooks.
  void step(const Context& ctx);

  // The model's dynamics for one step; override in every concrete system.
  virtual void update(const Context& ctx) = 0;

  // Whether update() can be recorded once and replayed as is (a CUDA graph): it takes the
  // step from ctx.step_value(), not the host's ctx.step or ctx.t; it launches the same work
  // every step (no host decision that depends on the step or on data, no host sync, no copy
  // from the host); and whatever it carries from one step to the next lives in its states,
  // not in other tensors it holds. False unless a system says so: the built-in models do.
  // Systems with hooks are never replayed. replayable_tree() asks every system below too.
  virtual bool replayable() const { return false; }
  bool replayable_tree(std::string* first_not = nullptr) const;

  void add_before_update(Hook hook) { before_.push_back(std::move(hook)); }
  void add_after_update(Hook hook) { after_.push_back(std::move(hook)); }
  bool has_hooks() const { return !before_.empty() || !after_.empty(); }

  int64_t batch_size() const { return batch_size_; }

  // This system's own state, by name (throws naming the known states if absent).
  const at::Tensor& state(const std::string& name) const;
  bool has_state(const std::string& name) const { return states_.count(name) > 0; }
  // Replaces a state (e.g. to inject an input); the shape must match the current one.
  void assign_state(const std::string& name, const at::Tensor& value);
  // A state anywhere below this system by dotted path ("E.V", "net.exc.syn.g").
  at::Tensor find_state(const std::string& path) const;
  DynamicalSystem& find_system(const std::string& path);
  // Every state path below this system, in registration order.
  std::vector<std::string> state_paths() const;

  // Copies the current states into the registered buffers (cheap: no data is copied).
  void sync_buffers() const;

  // torch::nn::Module hooks, overridden to keep states and buffers one and the same.
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
  BRAIN_MOVES_FLOATING_TENSORS_ONLY

  // Modules that several readers of this system's output share, by key: e.g. the one ring
  // buffer of this population's spikes that every delayed projection from it reads
  // (brain/dyn/delay.h). Held weakly; the reader that created one owns it.
  std::shared_ptr<torch::nn::Module> shared_module(const std::string& key) const;
  void set_shared_module(const std::string& key, const std::shared_ptr<torch::nn::Module>& module);

  // Systems added with add_child, in update order.
  const std::vector<std::pair<std::string, std::shared_ptr<DynamicalSystem>>>& children() const {
    return children_;
  }

 protected:
  // Allocate this system's own states (children are reset by reset_state). Called with the
  // batch size; use state_shape(n) for the shape of an n-element state.
  virtual void reset_own_state(int64_t batch_size) {}

  // Registers or replaces a state tensor (a buffer). Returns the stored handle.
  const at::Tensor& set_state(const std::string& name, at::Tensor value);

  // [n] without batch, [batch, n] with.
  std::vector<int64_t> state_shape(int64_t n) const;

  // `options` on the device and with the dtype the module was last moved to with to(), if
  // any: states allocated for the first time after a move must land there too.
  at::TensorOptions placed(at::TensorOptions options) const;

  template <typename T>
  std::shared_ptr<T> add_child(const std::string& name, std::shared_ptr<T> child) {
    register_module(name, child);
    children_.emplace_back(name, child);
    return child;
  }

  // Updates every child in order; what DynSysGroup::update does.
  void update_children(const Context& ctx);

 private:
  friend void move_module(torch::nn::Module&, std::optional<torch::Device>, std::optional<torch::Dtype>, bool);
  void sync_own_buffers() const;  // sync_buffers without the children
  void adopt_buffers();  // states := buffers, after torch changed the buffers
  std::unordered_map<std::string, at::Tensor> states_;
  std::unordered_map<std::string, at::Tensor> buffers_of_states_;  // the registered handles
  std::vector<std::string> state_order_;
  std::vector<std::pair<std::string, std::shared_ptr<DynamicalSystem>>> children_;
  std::vector<Hook> before_, after_;
  std::unordered_map<std::string, std::weak_ptr<torch::nn::Module>> shared_modules_;
  int64_t batch_size_ = 0;
  std::optional<torch::Device> moved_device_;
  std::optional<torch::Dtype> moved_dtype_;
};

// A system made of other systems, updated in the order they are added.
class BRAIN_API DynSysGroup : public DynamicalSystem {
 public:
  explicit DynSysGroup(std::string name = "DynSysGroup") : DynamicalSystem(std::move(name)) {}

  template <typename T>
  std::shared_ptr<T> add(const std::string& name, std::shared_ptr<T> child) {
    return add_child(name, std::move(child));
  }

  void update(const Context& ctx) override { update_children(ctx); }
  bool replayable() const override { return true; }  // its children decide (replayable_tree)
};

}  // namespace brain
