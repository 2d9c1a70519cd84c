// Autograd kernels of brain::lif_recurrent_sequence and its dense and JIT forms
// brain::lif_dense_recurrent_sequence, brain::lif_jit_recurrent_sequence (the same scheme).
// For the CSR form: the forward runs
// brain::_lif_recurrent_sequence_forward and saves v_pre next to the spikes it returns, the
// history and the CSR matrix; the registered brain::_lif_recurrent_sequence_backward walks the
// window back in one call. Without a gradient to compute, nothing is saved. Nodes are recorded
// as torch records its own operators' (op_node.h), so torch.func's reverse-mode transforms run
// through them; forward mode is refused.
#include <array>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "csrc/ops/autograd/lif_model.h"
#include "csrc/ops/autograd/op_node.h"

namespace brain::ops {
namespace {

using torch::autograd::variable_list;

using SequenceSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                       const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                                       double, double, double, double, double, c10::string_view, bool,
                                                       c10::string_view, c10::ArrayRef<double>);
using ForwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    double, double, double, double, double, double, c10::string_view, bool, c10::string_view, c10::ArrayRef<double>);
using BackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, double, double, double, double, double, double, c10::string_view, bool,
    c10::string_view, c10::ArrayRef<double>, std::array<bool, 4>);


// Records the node of a recurrent form, in its forward op's kernel (as lif_autograd.cpp's, and
// for the same reason: under torch.func the outer transform levels see the forward op, which
// the public op calls with autograd when recording). The forward op ran below autograd and
// returned (spikes, v_last, v_pre); the backward op gets (grad_spikes, grad_v_last, v_pre, spikes,
// then `tensors`...) and the mask of the four differentiable inputs (drive, v0, history,
// weights). The spikes are saved as an output, so that under create_graph they carry this
// node's history into the backward op, which then refuses to be differentiated again
// (first_order_only.cpp).
void record_recurrent(const char* name, const std::vector<at::Tensor>& differentiable, const at::Tensor& spikes,
                      const at::Tensor& v_last, const at::Tensor& v_pre, const std::vector<at::Tensor>& tensors,
                      OpNode::Backward backward, std::vector<c10::IValue> constants) {
  // Grads are materialised (zeros) for an output the loss did not use.
  auto node = make_node(name, differentiable, backward, std::move(constants));
  attach(node, spikes);
  attach(node, v_last);
  node->save(v_pre);
  node->save(spikes, /*is_output=*/true);
  for (const at::Tensor& t : tensors) node->save(t);
}

std::array<bool, 4> mask_of(const std::vector<bool>& needs) { return {needs[0], needs[1], needs[2], needs[3]}; }

// saved: v_pre, spikes, history, indptr, indices, weights; constants: the LifModel's.
variable_list csr_grads(const variable_list& saved, const std::vector<c10::IValue>& c, const variable_list& grads,
                        const std::vector<bool>& needs) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_lif_recurrent_sequence_backward", "")
                       .typed<BackwardSig>();
  const LifModel m(c);
  auto [d, v, h, w] = op.call(grads[0], grads[1], saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], m.v_rest,
                              m.v_reset, m.v_th, m.R, m.tau, m.dt, m.method, m.detach_reset, m.surrogate, m.params,
                              mask_of(needs));
  return {d, v, h, w};
}

c10::TypedOperatorHandle<ForwardSig>& csr_forward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_lif_recurrent_sequence_forward", "")
                       .typed<ForwardSig>();
  return op;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_recurrent_sequence_forward_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& weights, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params) {
  refuse_forward_ad("brain::lif_recurrent_sequence", {drive, v0, history, weights});
  at::Tensor spikes, v_last, v_pre;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(spikes, v_last, v_pre) = csr_forward_op().call(drive, v0, history, indptr, indices, weights, v_rest,
                                                            v_reset, v_th, R, tau, dt, method, detach_reset,
                                                            surrogate, params);
  }
  if (!records_node({drive, v0, history, weights})) return {spikes, v_last, v_pre};
  record_recurrent("LifRecurrentSequenceBackward", {drive, v0, history, weights}, spikes, v_last, v_pre,
                   {history, indptr, indices, weights}, &csr_grads,
                   LifModel(v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params).constants());
  return {spikes, v_last, v_pre};
}

std::tuple<at::Tensor, at::Tensor> lif_recurrent_sequence_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& weights, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params) {
  refuse_forward_ad("brain::lif_recurrent_sequence", {drive, v0, history, weights});
  if (!records_node({drive, v0, history, weights})) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::lif_recurrent_sequence", "")
                         .typed<SequenceSig>();
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(drive, v0, history, indptr, indices, weights, v_rest, v_reset, v_th, R, tau, dt, method,
                   detach_reset, surrogate, params);
  }
  auto [spikes, v_last, v_pre] = csr_forward_op().call(drive, v0, history, indptr, indices, weights, v_rest, v_reset,
                                                       v_th, R, tau, dt, method, detach_reset, surrogate, params);
  return {spikes, v_last};
}

// The dense form: weight [n, n] in the CSR tensors' place.
using DenseSequenceSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                            const at::Tensor&, double, double, double, double, double,
                                                            double, c10::string_view, bool, c10::string_view,
                                                            c10::ArrayRef<double>);
using DenseForwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double, double, double, double,
    double, c10::string_view, bool, c10::string_view, c10::ArrayRef<double>);
using DenseBackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    double, double, double, double, double, double, c10::string_view, bool, c10::string_view, c10::ArrayRef<double>,
    std::array<bool, 4>);

c10::TypedOperatorHandle<DenseForwardSig>& dense_forward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_lif_dense_recurrent_sequence_forward", "")
                       .typed<DenseForwardSig>();
  return op;
}

// saved: v_pre, spikes, history, weight; constants: the LifModel's.
variable_list dense_grads(const variable_list& saved, const std::vector<c10::IValue>& c, const variable_list& grads,
                          const std::vector<bool>& needs) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_lif_dense_recurrent_sequence_backward", "")
                       .typed<DenseBackwardSig>();
  const LifModel m(c);
  auto [d, v, h, w] = op.call(grads[0], grads[1], saved[0], saved[1], saved[2], saved[3], m.v_rest, m.v_reset, m.v_th,
                              m.R, m.tau, m.dt, m.method, m.detach_reset, m.surrogate, m.params, mask_of(needs));
  return {d, v, h, w};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_dense_recurrent_sequence_forward_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double v_rest,
    double v_reset, double v_th, double R, double tau, double dt, c10::string_view method, bool detach_reset,
    c10::string_view surrogate, c10::ArrayRef<double> params) {
  refuse_forward_ad("brain::lif_dense_recurrent_sequence", {drive, v0, history, weight});
  at::Tensor spikes, v_last, v_pre;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(spikes, v_last, v_pre) = dense_forward_op().call(drive, v0, history, weight, v_rest, v_reset, v_th, R,
                                                              tau, dt, method, detach_reset, surrogate, params);
  }
  if (!records_node({drive, v0, history, weight})) return {spikes, v_last, v_pre};
  record_recurrent("LifDenseRecurrentSequenceBackward", {drive, v0, history, weight}, spikes, v_last, v_pre,
                   {history, weight}, &dense_grads,
                   LifModel(v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params).constants());
  return {spikes, v_last, v_pre};
}

std::tuple<at::Tensor, at::Tensor> lif_dense_recurrent_sequence_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double v_rest,
    double v_reset, double v_th, double R, double tau, double dt, c10::string_view method, bool detach_reset,
    c10::string_view surrogate, c10::ArrayRef<double> params) {
  refuse_forward_ad("brain::lif_dense_recurrent_sequence", {drive, v0, history, weight});
  if (!records_node({drive, v0, history, weight})) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::lif_dense_recurrent_sequence", "")
                         .typed<DenseSequenceSig>();
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(drive, v0, history, weight, v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate,
                   params);
  }
  auto [spikes, v_last, v_pre] = dense_forward_op().call(drive, v0, history, weight, v_rest, v_reset, v_th, R, tau,
                                                         dt, method, detach_reset, surrogate, params);
  return {spikes, v_last};
}

// The JIT form: weight holds the connectivity's parameters; prob, seed and dist travel with
// the model constants.
using JitSequenceSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                          const at::Tensor&, double, int64_t, c10::string_view, double,
                                                          double, double, double, double, double, c10::string_view,
                                                          bool, c10::string_view, c10::ArrayRef<double>);
using JitForwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double, int64_t, c10::string_view,
    double, double, double, double, double, double, c10::string_view, bool, c10::string_view, c10::ArrayRef<double>);
using JitBackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    double, int64_t, c10::string_view, double, double, double, double, double, double, c10::string_view, bool,
    c10::string_view, c10::ArrayRef<double>, std::array<bool, 4>);

// saved: v_pre, spikes, history, weight; constants: the LifModel's, then prob, seed, dist.
variable_list jit_grads(const variable_list& saved, const std::vector<c10::IValue>& c, const variable_list& grads,
                        const std::vector<bool>& needs) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_lif_jit_recurrent_sequence_backward", "")
                       .typed<JitBackwardSig>();
  const LifModel m(c);
  const size_t k = LifModel::kConstants;
  auto [d, v, h, w] = op.call(grads[0], grads[1], saved[0], saved[1], saved[2], saved[3], c[k].toDouble(),
                              c[k + 1].toInt(), c[k + 2].toStringRef(), m.v_rest, m.v_reset, m.v_th, m.R, m.tau, m.dt,
                              m.method, m.detach_reset, m.surrogate, m.params, mask_of(needs));
  return {d, v, h, w};
}

c10::TypedOperatorHandle<JitForwardSig>& jit_forward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_lif_jit_recurrent_sequence_forward", "")
                       .typed<JitForwardSig>();
  return op;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_jit_recurrent_sequence_forward_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double prob,
    int64_t seed, c10::string_view dist, double v_rest, double v_reset, double v_th, double R, double tau, double dt,
    c10::string_view method, bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params) {
  refuse_forward_ad("brain::lif_jit_recurrent_sequence", {drive, v0, history, weight});
  at::Tensor spikes, v_last, v_pre;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(spikes, v_last, v_pre) = jit_forward_op().call(drive, v0, history, weight, prob, seed, dist, v_rest,
                                                            v_reset, v_th, R, tau, dt, method, detach_reset,
                                                            surrogate, params);
  }
  if (!records_node({drive, v0, history, weight})) return {spikes, v_last, v_pre};
  auto constants = LifModel(v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params).constants();
  constants.insert(constants.end(), {prob, seed, std::string(dist)});
  record_recurrent("LifJitRecurrentSequenceBackward", {drive, v0, history, weight}, spikes, v_last, v_pre,
                   {history, weight}, &jit_grads, std::move(constants));
  return {spikes, v_last, v_pre};
}

std::tuple<at::Tensor, at::Tensor> lif_jit_recurrent_sequence_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double prob,
    int64_t seed, c10::string_view dist, double v_rest, double v_reset, double v_th, double R, double tau, double dt,
    c10::string_view method, bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params) {
  refuse_forward_ad("brain::lif_jit_recurrent_sequence", {drive, v0, history, weight});
  if (!records_node({drive, v0, history, weight})) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::lif_jit_recurrent_sequence", "")
                         .typed<JitSequenceSig>();
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(drive, v0, history, weight, prob, seed, dist, v_rest, v_reset, v_th, R, tau, dt, method,
                   detach_reset, surrogate, params);
  }
  auto [spikes, v_last, v_pre] = jit_forward_op().call(drive, v0, history, weight, prob, seed, dist, v_rest, v_reset,
                                                       v_th, R, tau, dt, method, detach_reset, surrogate, params);
  return {spikes, v_last};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Autograd, m) {
  m.impl("lif_jit_recurrent_sequence", &lif_jit_recurrent_sequence_autograd);
  m.impl("lif_recurrent_sequence", &lif_recurrent_sequence_autograd);
  m.impl("lif_dense_recurrent_sequence", &lif_dense_recurrent_sequence_autograd);
  m.impl("_lif_recurrent_sequence_forward", &lif_recurrent_sequence_forward_autograd);
  m.impl("_lif_dense_recurrent_sequence_forward", &lif_dense_recurrent_sequence_forward_autograd);
  m.impl("_lif_jit_recurrent_sequence_forward", &lif_jit_recurrent_sequence_forward_autograd);
}

}  // namespace brain::ops
