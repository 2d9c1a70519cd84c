// Backward nodes recorded the way torch records its own operators' (the generated VariableType
// kernels: collect_next_edges, SavedVariable, set_history), not through
// torch::autograd::Function. torch.func's transforms (grad, vjp, jacrev, hessian, and vmap of
// them) refuse custom C++ Functions outright, because a Function runs its forward with grad
// mode off and so cannot take part in nested transform levels; a kernel that records like
// torch's operators redispatches below autograd instead, so each level records its own node,
// as it does for torch's operators.
//
// A node's backward is a plain function of its saved tensors and its constants (shape, flags,
// model parameters, as IValues), with no state of its own: compiled autograd
// (torch._dynamo's compiled_autograd) keys its graph cache on the constants and calls the
// same function on a later node with equal ones, as it does for a custom Function's node.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/core/ivalue.h>
#include <c10/core/DeviceGuard.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/csrc/autograd/variable_info.h>
#include <torch/csrc/dynamo/compiled_autograd.h>

namespace brain::ops {

class OpNode : public torch::autograd::Node {
 public:
  // saved: the tensors save()d, in order; constants: as given to make_node; grads: one per
  // output attach()ed, in order (zeros for an output the loss did not use, unless the node was
  // made with materialize = false); needs[i]: whether the gradient of differentiable input i
  // is wanted. Returns one gradient per differentiable input (undefined where not wanted).
  using Backward = torch::autograd::variable_list (*)(const torch::autograd::variable_list& saved,
                                                      const std::vector<c10::IValue>& constants,
                                                      const torch::autograd::variable_list& grads,
                                                      const std::vector<bool>& needs);

  OpNode(std::string name, const std::vector<at::Tensor>& differentiable_inputs, Backward backward,
         std::vector<c10::IValue> constants, bool materialize)
      : Node(torch::autograd::collect_next_edges(differentiable_inputs)),
        name_(std::move(name)),
        backward_(backward),
        constants_(std::move(constants)),
        materialize_(materialize) {}

  std::string name() const override { return name_; }

  // Inputs and other tensors may be saved before or after the outputs are attached, outputs
  // after (SavedVariable keeps an output's node weakly, so it does not keep its own graph alive).
  void save(const at::Tensor& t, bool is_output = false) {
    saved_.emplace_back(t, is_output);
    is_output_.push_back(is_output);
  }

  void add_output(const at::Tensor& out) {
    torch::autograd::set_history(out, shared_from_this());
    output_info_.emplace_back(out);
  }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    std::vector<bool> needs(num_outputs());
    bool any = false;
    for (size_t i = 0; i < needs.size(); ++i) any |= needs[i] = task_should_compute_output(i);
    if (!any) return torch::autograd::variable_list(num_outputs());
    return run(backward_, unpack_saved(), constants_, std::move(grads), needs, materialize_, output_info_);
  }

  void release_variables() override {
    for (auto& s : saved_) s.reset_data();
  }

  void compiled_args(torch::dynamo::autograd::CompiledNodeArgs& args) const override {
    args.collect(name_);
    for (const c10::IValue& c : constants_) args.collect(c);
    for (size_t i = 0; i < saved_.size(); ++i) args.collect(saved_[i], is_output_[i]);
    args.collect(materialize_);
    args.collect(output_info_);
  }

  torch::autograd::variable_list apply_with_saved(const torch::autograd::variable_list& inputs,
                                                  torch::dynamo::autograd::SwapSavedVariables& saved) override {
    using torch::dynamo::autograd::PackedArgs;
    for (auto& s : saved_) saved.before(s);
    for (auto& c : constants_) saved.before(c);
    saved.before(output_info_);

    PackedArgs packed;
    packed.pack(unpack_saved());
    packed.pack(static_cast<int64_t>(constants_.size()));
    for (const c10::IValue& c : constants_) packed.pack(c);
    std::vector<bool> needs(num_outputs());
    for (size_t i = 0; i < needs.size(); ++i) needs[i] = task_should_compute_output(i);
    packed.pack(needs);
    packed.pack(materialize_);
    packed.pack(output_info_);
    const std::vector<c10::IValue> args = std::move(packed).vec();
    std::vector<at::TypePtr> schema;
    schema.reserve(args.size());
    for (const c10::IValue& v : args) schema.push_back(v.isTensor() ? at::TensorType::get() : v.type());

    const Backward backward = backward_;
    const auto& compiler = torch::dynamo::autograd::getPyCompilerInterface();
    const std::string fn_name = compiler->bind_function(
        saved.get_py_compiler(), name_,
        [backward](const torch::autograd::variable_list& grads, const std::vector<c10::IValue>& packed_args) {
          PackedArgs p(packed_args);
          auto tensors = p.unpack<std::vector<at::Tensor>>();
          std::vector<c10::IValue> constants(p.unpack<int64_t>());
          for (auto& c : constants) c = p.unpack<c10::IValue>();
          auto needs = p.unpack<std::vector<bool>>();
          const bool materialize = p.unpack<bool>();
          auto output_info = p.unpack<std::vector<torch::autograd::VariableInfo>>();
          return run(backward, tensors, constants, torch::autograd::variable_list(grads), needs, materialize,
                     output_info);
        },
        schema, /*is_custom_function=*/true, /*is_traceable=*/false);
    auto output_metadata = torch::dynamo::autograd::IValuePacker<std::vector<std::optional<torch::autograd::InputMetadata>>>::pack(
        torch::dynamo::autograd::get_input_metadata(next_edges()));
    auto results = compiler->call_function(saved.get_py_compiler(), "apply_functional", fn_name, inputs, args,
                                           output_metadata);

    for (auto& s : saved_) saved.after(s);
    for (auto& c : constants_) saved.after(c);
    saved.after(output_info_);
    return results;
  }

 private:
  torch::autograd::variable_list unpack_saved() {
    torch::autograd::variable_list tensors;
    tensors.reserve(saved_.size());
    for (size_t i = 0; i < saved_.size(); ++i) {
      tensors.push_back(saved_[i].unpack(is_output_[i] ? shared_from_this() : nullptr));
    }
    return tensors;
  }

  static torch::autograd::variable_list run(Backward backward, const torch::autograd::variable_list& saved,
                                            const std::vector<c10::IValue>& constants,
                                            torch::autograd::variable_list grads, const std::vector<bool>& needs,
                                            bool materialize,
                                            const std::vector<torch::autograd::VariableInfo>& output_info) {
    if (materialize) {
      at::OptionalDeviceGuard device_guard;
      for (size_t i = 0; i < grads.size(); ++i) {
        if (!grads[i].defined()) grads[i] = output_info[i].zeros(device_guard);
      }
    }
    torch::autograd::variable_list result = backward(saved, constants, grads, needs);
    result.resize(needs.size());
    for (size_t i = 0; i < needs.size(); ++i) {
      if (!needs[i]) result[i] = at::Tensor();
    }
    return result;
  }

  std::string name_;
  Backward backward_;
  std::vector<c10::IValue> constants_;
  bool materialize_;
  std::vector<torch::autograd::SavedVariable> saved_;
  std::vector<bool> is_output_;
  std::vector<torch::autograd::VariableInfo> output_info_;
};

// Whether a call records a node: grad mode is on and a differentiable input requires grad.
inline bool records_node(std::initializer_list<std::reference_wrapper<const at::Tensor>> inputs) {
  if (!at::GradMode::is_enabled()) return false;
  for (const at::Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

inline std::shared_ptr<OpNode> make_node(std::string name, const std::vector<at::Tensor>& differentiable_inputs,
                                         OpNode::Backward backward, std::vector<c10::IValue> constants,
                                         bool materialize = true) {
  return std::shared_ptr<OpNode>(
      new OpNode(std::move(name), differentiable_inputs, backward, std::move(constants), materialize),
      torch::autograd::deleteNode);
}

// a + b, where an undefined tensor stands for zero (a gradient not computed).
inline at::Tensor sum_defined(const at::Tensor& a, const at::Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return a + b;
}

// Makes `out` the next differentiable output of `node`.
inline void attach(const std::shared_ptr<OpNode>& node, const at::Tensor& out) { node->add_output(out); }

}  // namespace brain::ops
