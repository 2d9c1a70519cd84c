#include <brain/dyn/system.h>

#include <sstream>

#include <torch/torch.h>

namespace brain {

namespace {
std::string join(const std::vector<std::string>& items) {
  std::ostringstream out;
  for (size_t i = 0; i < items.size(); ++i) out << (i ? ", " : "") << items[i];
  return out.str();
}
}  // namespace

DynamicalSystem::DynamicalSystem(std::string name) : torch::nn::Module(std::move(name)) {}

void DynamicalSystem::reset_state(int64_t batch_size) {
  TORCH_CHECK(batch_size >= 0, name(), ".reset_state: batch_size must be >= 0, got ", batch_size);
  batch_size_ = batch_size;
  reset_own_state(batch_size);
  for (auto& [child_name, child] : children_) child->reset_state(batch_size);
}

void DynamicalSystem::step(const Context& ctx) {
  for (auto& hook : before_) hook(*this, ctx);
  update(ctx);
  for (auto& hook : after_) hook(*this, ctx);
}

std::shared_ptr<torch::nn::Module> DynamicalSystem::shared_module(const std::string& key) const {
  const auto it = shared_modules_.find(key);
  return it == shared_modules_.end() ? nullptr : it->second.lock();
}

void DynamicalSystem::set_shared_module(const std::string& key, const std::shared_ptr<torch::nn::Module>& module) {
  shared_modules_[key] = module;
}

at::Tensor Context::step_value() const {
  if (clock.defined()) return clock;
  at::Tensor value = at::scalar_tensor(step, at::kLong);
  value.unsafeGetTensorImpl()->set_wrapped_number(true);
  return value;
}

namespace {
bool replayable_below(const DynamicalSystem& s, const std::string& path, std::string* first_not) {
  if (!s.replayable() || s.has_hooks()) {
    if (first_not) {
      *first_not = (path.empty() ? s.name() : path + " (" + s.name() + ")") +
                   (s.has_hooks() ? " has hooks" : " does not declare itself replayable");
    }
    return false;
  }
  for (const auto& [name, child] : s.children()) {
    if (!replayable_below(*child, path.empty() ? name : path + "." + name, first_not)) return false;
  }
  return true;
}
}  // namespace

bool DynamicalSystem::replayable_tree(std::string* first_not) const {
  return replayable_below(*this, "", first_not);
}

void DynamicalSystem::update_children(const Context& ctx) {
  for (auto& [child_name, child] : children_) child->step(ctx);
}

std::vector<int64_t> DynamicalSystem::state_shape(int64_t n) const {
  if (batch_size_ > 0) return {batch_size_, n};
  return {n};
}

const at::Tensor& DynamicalSystem::set_state(const std::string& name, at::Tensor value) {
  auto it = states_.find(name);
  if (it == states_.end()) {
    state_order_.push_back(name);
    buffers_of_states_[name] = register_buffer(name, value.detach());
    it = states_.emplace(name, at::Tensor()).first;
  }
  it->second = std::move(value);
  return it->second;
}

void DynamicalSystem::sync_own_buffers() const {
  for (const auto& [name, value] : states_) {
    // set_data swaps what the buffer handle points at: O(1), and the buffer stays a
    // non-differentiable tensor even when the state carries an autograd history.
    at::Tensor buffer = buffers_of_states_.at(name);
    buffer.set_data(value.detach());
  }
}

void DynamicalSystem::sync_buffers() const {
  sync_own_buffers();
  for (const auto& [child_name, child] : children_) child->sync_buffers();
}

void DynamicalSystem::adopt_buffers() {
  for (auto& [name, value] : states_) value = buffers_of_states_.at(name);
}

void DynamicalSystem::save(torch::serialize::OutputArchive& archive) const {
  sync_buffers();
  torch::nn::Module::save(archive);
}

void DynamicalSystem::load(torch::serialize::InputArchive& archive) {
  torch::nn::Module::load(archive);  // loads children through their own load()
  adopt_buffers();
}

at::TensorOptions DynamicalSystem::placed(at::TensorOptions options) const {
  if (moved_device_) options = options.device(*moved_device_);
  if (moved_dtype_) options = options.dtype(*moved_dtype_);
  return options;
}

void move_module(torch::nn::Module& root, std::optional<torch::Device> device, std::optional<torch::Dtype> dtype,
                 bool non_blocking) {
  std::vector<DynamicalSystem*> systems;
  root.apply([&](torch::nn::Module& module) {
    if (auto* system = dynamic_cast<DynamicalSystem*>(&module)) {
      if (device) system->moved_device_ = device;
      if (dtype) system->moved_dtype_ = dtype;
      system->sync_own_buffers();
      systems.push_back(system);
    }
  });
  torch::NoGradGuard no_grad;
  auto move = [&](at::Tensor tensor) {
    if (!tensor.defined()) return;
    const bool convert = dtype && at::isFloatingType(tensor.scalar_type());
    const auto target_device = device ? *device : tensor.device();
    const auto target_dtype = convert ? *dtype : tensor.scalar_type();
    if (tensor.device() == target_device && tensor.scalar_type() == target_dtype) return;
    // set_data, as Module::to: every handle to the tensor (a module's member) sees the move.
    tensor.set_data(tensor.to(target_device, target_dtype, non_blocking));
  };
  for (const at::Tensor& p : root.parameters(/*recurse=*/true)) move(p);
  for (const at::Tensor& b : root.buffers(/*recurse=*/true)) move(b);
  for (DynamicalSystem* system : systems) system->adopt_buffers();
}

const at::Tensor& DynamicalSystem::state(const std::string& name) const {
  auto it = states_.find(name);
  TORCH_CHECK(it != states_.end(), this->name(), " has no state '", name, "'; its states are: ",
              state_order_.empty() ? std::string("(none)") : join(state_order_),
              ". Did you call reset_state()?");
  return it->second;
}

void DynamicalSystem::assign_state(const std::string& name, const at::Tensor& value) {
  const at::Tensor& current = state(name);
  TORCH_CHECK(value.sizes() == current.sizes(), this->name(), ".", name, ": expected shape ",
              current.sizes(), ", got ", value.sizes());
  set_state(name, value.to(current.options()));
}

DynamicalSystem& DynamicalSystem::find_system(const std::string& path) {
  if (path.empty()) return *this;
  const auto dot = path.find('.');
  const std::string head = path.substr(0, dot);
  for (auto& [child_name, child] : children_) {
    if (child_name == head) {
      return dot == std::string::npos ? *child : child->find_system(path.substr(dot + 1));
    }
  }
  std::vector<std::string> names;
  for (auto& [child_name, child] : children_) names.push_back(child_name);
  TORCH_CHECK(false, name(), " has no subsystem '", head, "'; its subsystems are: ",
              names.empty() ? std::string("(none)") : join(names));
}

at::Tensor DynamicalSystem::find_state(const std::string& path) const {
  const auto dot = path.rfind('.');
  if (dot == std::string::npos) return state(path);
  auto& self = const_cast<DynamicalSystem&>(*this);
  return self.find_system(path.substr(0, dot)).state(path.substr(dot + 1));
}

std::vector<std::string> DynamicalSystem::state_paths() const {
  std::vector<std::string> out = state_order_;
  for (const auto& [child_name, child] : children_) {
    for (const auto& p : child->state_paths()) out.push_back(child_name + "." + p);
  }
  return out;
}

}  // namespace brain
