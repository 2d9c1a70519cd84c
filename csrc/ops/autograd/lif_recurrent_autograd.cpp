// Autograd kernels of brain::lif_recurrent_sequence and its dense and JIT forms
// brain::lif_dense_recurrent_sequence, brain::lif_jit_recurrent_sequence (the same scheme).
// For the CSR form: the forward runs brain::_lif_recurrent_sequence_forward and saves v_pre
// next to the spikes it returns, the history and the CSR matrix; the registered
// brain::_lif_recurrent_sequence_backward walks the window back in one call, and a gradient
// that will be differentiated again goes through the same recursion written with ops
// (lif_adjoint.h). Without a gradient to compute, nothing is saved. Nodes are recorded as torch
// records its own operators' (op_node.h), so torch.func's reverse-mode transforms run
// through them. Forward mode runs the tangents' recursion (lif_tangent.h) with the tangent of
// each step's current: d drive_t + A(dW)^T S_t + A(W)^T dS_t, S_t the spikes of `delay` steps
// earlier (the history for the first steps) and dS_t their tangent.
#include <algorithm>
#include <array>
#include <functional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/library.h>

#include "csrc/ops/autograd/jitc_basis.h"
#include "csrc/ops/autograd/lif_adjoint.h"
#include "csrc/ops/autograd/lif_model.h"
#include "csrc/ops/autograd/lif_tangent.h"
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
// then the saved tensors...) and the mask of the four differentiable inputs (drive, v0, history,
// weights). The spikes are saved as an output (save_recurrent), so that a gradient computed
// from them (the weights', through the recurrence) reaches the inputs when differentiated
// again. v_pre is an output too, as lif_sequence's is: gradients and tangents read it with this
// history, and only a second derivative asks for its gradient (so grads are not materialised:
// no zeros of its size).
std::shared_ptr<OpNode> record_recurrent(const char* name, const std::vector<at::Tensor>& differentiable,
                                         const at::Tensor& spikes, const at::Tensor& v_last, const at::Tensor& v_pre,
                                         OpNode::Backward backward, std::vector<c10::IValue> constants) {
  auto node = make_node(name, differentiable, backward, std::move(constants), /*materialize=*/false);
  attach(node, spikes);
  attach(node, v_last);
  attach(node, v_pre);
  return node;
}

// After the tangents are set (set_recurrent_tangents), so that the saved outputs keep them: a
// forward-over-reverse derivative (gradgradcheck's check_fwd_over_rev) reads them in the backward.
void save_recurrent(OpNode& node, const at::Tensor& spikes, const at::Tensor& v_pre,
                    const std::vector<at::Tensor>& tensors) {
  node.save(v_pre, /*is_output=*/true);
  node.save(spikes, /*is_output=*/true);
  for (const at::Tensor& t : tensors) node.save(t);
}

// The gradients of spikes and v_last, zeros for an output the loss did not use.
std::pair<at::Tensor, at::Tensor> output_grads(const variable_list& grads, const at::Tensor& v_pre) {
  return {grads[0].defined() ? grads[0] : at::zeros_like(v_pre),
          grads[1].defined() ? grads[1] : at::zeros(v_pre.sizes().slice(1), v_pre.options())};
}

// The recurrent forms' gradients written with ops (lif_adjoint.h), for a gradient that will be
// differentiated again. `adjoint` maps current gradients [rows, n] to their sources' gradients
// A(W) g (the transpose of the forward's product); `weight_grad` the window's current gradients
// and sources, both [rows, n], to the weights' gradient. saved: v_pre, spikes, history, then
// the form's tensors, `weights` the differentiable one.
struct RecurrentAdjoints {
  std::function<at::Tensor(const at::Tensor&)> adjoint;
  std::function<at::Tensor(const at::Tensor& current_grads, const at::Tensor& sources)> weight_grad;
};

bool differentiates_recurrent_gradient(const variable_list& saved, const at::Tensor& weights,
                                       const variable_list& grads) {
  return grads[2].defined() || gradient_is_differentiated({saved[0], saved[1], saved[2], weights, grads[0], grads[1]});
}

variable_list recurrent_grads_with_ops(const LifModel& m, const variable_list& saved, const at::Tensor& weights,
                                       const variable_list& grads, const std::vector<bool>& needs,
                                       const RecurrentAdjoints& a) {
  const at::Tensor &v_pre = saved[0], &spikes = saved[1], &history = saved[2];
  const int64_t steps = v_pre.size(0), delay = history.size(0), n = v_pre.size(-1);
  const auto adjoint = [&](const at::Tensor& g) { return a.adjoint(g.reshape({-1, n})).reshape(g.sizes()); };
  // Step t's spikes reach the current of step t + delay.
  const RecurrentSpikeGrad recurrent = [&](int64_t t, const std::vector<at::Tensor>& current) {
    return t + delay < steps ? adjoint(current[static_cast<size_t>(t + delay)]) : at::Tensor();
  };
  const LifAdjoint g = lif_adjoint(m, v_pre, grads[0], grads[1], grads[2], recurrent);
  const int64_t from_history = std::min(delay, steps);
  at::Tensor d_history, d_weights;
  if (needs[2]) {
    d_history = at::zeros_like(history);
    if (from_history > 0) {
      d_history = at::cat({adjoint(g.current.narrow(0, 0, from_history)),
                           d_history.narrow(0, from_history, delay - from_history)});
    }
  }
  if (needs[3]) {
    if (steps == 0) {
      d_weights = at::zeros_like(weights);
    } else {
      const at::Tensor sources = at::cat({history.narrow(0, 0, from_history),
                                          spikes.narrow(0, 0, std::max<int64_t>(steps - delay, 0))});
      d_weights = a.weight_grad(g.current.reshape({-1, n}), sources.reshape({-1, n}));
    }
  }
  return {needs[0] ? g.current : at::Tensor(), needs[1] ? g.v0 : at::Tensor(), d_history, d_weights};
}

// A(W)^T x for x [..., n] (a step's spikes or their tangent), and A(dW)^T of [rows, n] spikes for
// the weights' tangent dW (undefined when the weights have none).
struct RecurrentProducts {
  std::function<at::Tensor(const at::Tensor&)> product;
  std::function<at::Tensor(const at::Tensor&)> weight_tangent_product;
};

// After the node (so that the tangents read v_pre with its history). drive, v0, history are the
// op's inputs; spikes and v_pre its primal outputs.
void set_recurrent_tangents(const LifModel& model, const at::Tensor& drive, const at::Tensor& v0,
                            const at::Tensor& history, const at::Tensor& spikes, const at::Tensor& v_last,
                            const at::Tensor& v_pre, const RecurrentProducts& products) {
  const at::Tensor d_drive = drive._fw_grad(0), d_history = history._fw_grad(0);
  const int64_t steps = v_pre.size(0), delay = history.size(0), n = v_pre.size(-1);
  // A(dW)^T S_t for every step at once: the sources are known before the window runs.
  at::Tensor weight_part;
  if (products.weight_tangent_product && steps > 0) {
    const at::Tensor sources =
        at::cat({history._fw_primal(0).narrow(0, 0, std::min(delay, steps)),
                 spikes.narrow(0, 0, std::max<int64_t>(steps - delay, 0))});
    weight_part = products.weight_tangent_product(sources.reshape({-1, n})).reshape(v_pre.sizes());
  }
  // unbind, not select per step (lif_tangent.cpp says why); an empty list: no tangent.
  const auto steps_of = [](const at::Tensor& x) { return x.defined() ? x.unbind(0) : std::vector<at::Tensor>(); };
  const std::vector<at::Tensor> d_drive_t = steps_of(d_drive), weight_part_t = steps_of(weight_part),
                                d_history_t = steps_of(d_history);
  const CurrentTangent current = [&](int64_t t, const std::vector<at::Tensor>& ds) {
    const size_t i = static_cast<size_t>(t);
    at::Tensor di = d_drive_t.empty() ? at::Tensor() : d_drive_t[i];
    if (!weight_part_t.empty()) di = sum_defined(di, weight_part_t[i]);
    const at::Tensor source = t < delay ? (d_history_t.empty() ? at::Tensor() : d_history_t[i])
                                        : ds[static_cast<size_t>(t - delay)];
    if (source.defined()) di = sum_defined(di, products.product(source));
    return di;
  };
  set_tangents(lif_tangents(model, v_pre, v0._fw_grad(0), current), spikes, v_last, v_pre);
}

using CsrMatmulSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                c10::SymIntArrayRef, bool);
using JitcMatmulSig = at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t, c10::SymIntArrayRef,
                                 c10::string_view, bool);

template <bool kEvent>
c10::TypedOperatorHandle<CsrMatmulSig>& csr_matmul_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow(kEvent ? "brain::event_csr_matmul" : "brain::csr_matmul", "")
                       .typed<CsrMatmulSig>();
  return op;
}

template <bool kEvent>
c10::TypedOperatorHandle<JitcMatmulSig>& jitc_matmul_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow(kEvent ? "brain::event_jitc_matmul" : "brain::jitc_matmul", "")
                       .typed<JitcMatmulSig>();
  return op;
}

using CsrMatmulBackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&, c10::SymIntArrayRef, bool,
                                                                 std::array<bool, 2>);
using JitcMatmulBackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&, double, int64_t,
                                                                 c10::SymIntArrayRef, c10::string_view, bool,
                                                                 std::array<bool, 2>);

c10::TypedOperatorHandle<CsrMatmulBackwardSig>& csr_matmul_backward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_csr_matmul_backward", "")
                       .typed<CsrMatmulBackwardSig>();
  return op;
}

c10::TypedOperatorHandle<JitcMatmulBackwardSig>& jitc_matmul_backward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_jitc_matmul_backward", "")
                       .typed<JitcMatmulBackwardSig>();
  return op;
}

std::array<bool, 4> mask_of(const std::vector<bool>& needs) { return {needs[0], needs[1], needs[2], needs[3]}; }

// saved: v_pre, spikes, history, indptr, indices, weights; constants: the LifModel's.
variable_list csr_grads(const variable_list& saved, const std::vector<c10::IValue>& c, const variable_list& grads,
                        const std::vector<bool>& needs) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_lif_recurrent_sequence_backward", "")
                       .typed<BackwardSig>();
  const LifModel m(c);
  if (differentiates_recurrent_gradient(saved, saved[5], grads)) {
    const at::Tensor &indptr = saved[3], &indices = saved[4], &weights = saved[5];
    const int64_t n = saved[0].size(-1);
    const std::array<c10::SymInt, 2> shape{n, n};
    RecurrentAdjoints a;
    a.adjoint = [&](const at::Tensor& g) {
      return csr_matmul_op<false>().call(indptr, indices, weights, g, shape, /*transpose=*/false);
    };
    a.weight_grad = [&](const at::Tensor& g, const at::Tensor& sources) {
      return std::get<1>(csr_matmul_backward_op().call(g, indptr, indices, weights, sources, shape,
                                                       /*transpose=*/true, {false, true}));
    };
    return recurrent_grads_with_ops(m, saved, weights, grads, needs, a);
  }
  const auto [g_spikes, g_v_last] = output_grads(grads, saved[0]);
  auto [d, v, h, w] = op.call(g_spikes, g_v_last, saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], m.v_rest,
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
  at::Tensor spikes, v_last, v_pre;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(spikes, v_last, v_pre) = csr_forward_op().call(drive, v0, history, indptr, indices, weights, v_rest,
                                                            v_reset, v_th, R, tau, dt, method, detach_reset,
                                                            surrogate, params);
  }
  const LifModel model(v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  std::shared_ptr<OpNode> node;
  if (records_node({drive, v0, history, weights})) {
    node = record_recurrent("LifRecurrentSequenceBackward", {drive, v0, history, weights}, spikes, v_last, v_pre,
                            &csr_grads, model.constants());
  }
  if (has_tangent({drive, v0, history, weights})) {
    const int64_t n = drive.size(-1);
    const std::array<c10::SymInt, 2> shape{n, n};
    const at::Tensor w = weights._fw_primal(0), dw = weights._fw_grad(0);
    RecurrentProducts products;
    products.product = [&](const at::Tensor& x) {
      return csr_matmul_op<false>().call(indptr, indices, w, x, shape, /*transpose=*/true);
    };
    if (dw.defined()) {
      products.weight_tangent_product = [&](const at::Tensor& sources) {
        return csr_matmul_op<true>().call(indptr, indices, dw, sources, shape, /*transpose=*/true);
      };
    }
    set_recurrent_tangents(model, drive, v0, history, spikes, v_last, v_pre, products);
  }
  if (node) save_recurrent(*node, spikes, v_pre, {history, indptr, indices, weights});
  return {spikes, v_last, v_pre};
}

std::tuple<at::Tensor, at::Tensor> lif_recurrent_sequence_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& weights, double v_rest, double v_reset, double v_th, double R,
    double tau, double dt, c10::string_view method, bool detach_reset, c10::string_view surrogate,
    c10::ArrayRef<double> params) {
  if (!records_node({drive, v0, history, weights}) && !has_tangent({drive, v0, history, weights})) {
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
  if (differentiates_recurrent_gradient(saved, saved[3], grads)) {
    // weight [post, pre]: the current is S W^T.
    const at::Tensor& weight = saved[3];
    RecurrentAdjoints a;
    a.adjoint = [&](const at::Tensor& g) { return at::matmul(g, weight); };
    a.weight_grad = [](const at::Tensor& g, const at::Tensor& sources) { return at::matmul(g.t(), sources); };
    return recurrent_grads_with_ops(m, saved, weight, grads, needs, a);
  }
  const auto [g_spikes, g_v_last] = output_grads(grads, saved[0]);
  auto [d, v, h, w] = op.call(g_spikes, g_v_last, saved[0], saved[1], saved[2], saved[3], m.v_rest, m.v_reset, m.v_th,
                              m.R, m.tau, m.dt, m.method, m.detach_reset, m.surrogate, m.params, mask_of(needs));
  return {d, v, h, w};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lif_dense_recurrent_sequence_forward_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double v_rest,
    double v_reset, double v_th, double R, double tau, double dt, c10::string_view method, bool detach_reset,
    c10::string_view surrogate, c10::ArrayRef<double> params) {
  at::Tensor spikes, v_last, v_pre;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(spikes, v_last, v_pre) = dense_forward_op().call(drive, v0, history, weight, v_rest, v_reset, v_th, R,
                                                              tau, dt, method, detach_reset, surrogate, params);
  }
  const LifModel model(v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  std::shared_ptr<OpNode> node;
  if (records_node({drive, v0, history, weight})) {
    node = record_recurrent("LifDenseRecurrentSequenceBackward", {drive, v0, history, weight}, spikes, v_last, v_pre,
                            &dense_grads, model.constants());
  }
  if (has_tangent({drive, v0, history, weight})) {
    // weight is [post, pre], as torch.nn.Linear stores it: the current is S W^T.
    const at::Tensor w_t = weight._fw_primal(0).t(), dw = weight._fw_grad(0);
    RecurrentProducts products;
    products.product = [&](const at::Tensor& x) { return at::matmul(x, w_t); };
    if (dw.defined()) {
      products.weight_tangent_product = [&](const at::Tensor& sources) { return at::matmul(sources, dw.t()); };
    }
    set_recurrent_tangents(model, drive, v0, history, spikes, v_last, v_pre, products);
  }
  if (node) save_recurrent(*node, spikes, v_pre, {history, weight});
  return {spikes, v_last, v_pre};
}

std::tuple<at::Tensor, at::Tensor> lif_dense_recurrent_sequence_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double v_rest,
    double v_reset, double v_th, double R, double tau, double dt, c10::string_view method, bool detach_reset,
    c10::string_view surrogate, c10::ArrayRef<double> params) {
  if (!records_node({drive, v0, history, weight}) && !has_tangent({drive, v0, history, weight})) {
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
  if (differentiates_recurrent_gradient(saved, saved[3], grads)) {
    const at::Tensor& weight = saved[3];
    const int64_t n = saved[0].size(-1);
    const std::array<c10::SymInt, 2> shape{n, n};
    const double prob = c[k].toDouble();
    const int64_t seed = c[k + 1].toInt();
    const std::string dist = c[k + 2].toStringRef();
    RecurrentAdjoints a;
    a.adjoint = [&](const at::Tensor& g) {
      return jitc_matmul_op<false>().call(g, weight, prob, seed, shape, dist, /*transpose=*/false);
    };
    a.weight_grad = [&](const at::Tensor& g, const at::Tensor& sources) {
      return std::get<1>(jitc_matmul_backward_op().call(g, sources, weight, prob, seed, shape, dist,
                                                        /*transpose=*/true, {false, true}));
    };
    return recurrent_grads_with_ops(m, saved, weight, grads, needs, a);
  }
  const auto [g_spikes, g_v_last] = output_grads(grads, saved[0]);
  auto [d, v, h, w] = op.call(g_spikes, g_v_last, saved[0], saved[1], saved[2], saved[3], c[k].toDouble(),
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
  at::Tensor spikes, v_last, v_pre;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(spikes, v_last, v_pre) = jit_forward_op().call(drive, v0, history, weight, prob, seed, dist, v_rest,
                                                            v_reset, v_th, R, tau, dt, method, detach_reset,
                                                            surrogate, params);
  }
  const LifModel model(v_rest, v_reset, v_th, R, tau, dt, method, detach_reset, surrogate, params);
  std::shared_ptr<OpNode> node;
  if (records_node({drive, v0, history, weight})) {
    auto constants = model.constants();
    constants.insert(constants.end(), {prob, seed, std::string(dist)});
    node = record_recurrent("LifJitRecurrentSequenceBackward", {drive, v0, history, weight}, spikes, v_last, v_pre,
                            &jit_grads, std::move(constants));
  }
  if (has_tangent({drive, v0, history, weight})) {
    const int64_t n = drive.size(-1);
    const std::array<c10::SymInt, 2> shape{n, n};
    const std::string dist_name(dist);
    const at::Tensor w = weight._fw_primal(0), dw = weight._fw_grad(0);
    RecurrentProducts products;
    // JitComm's product, A^T S (the forward's).
    products.product = [&](const at::Tensor& x) {
      return jitc_matmul_op<false>().call(x, w, prob, seed, shape, dist_name, /*transpose=*/true);
    };
    if (dw.defined()) {
      products.weight_tangent_product = [&](const at::Tensor& sources) {
        return basis_combination(dw, dist_name, [&](const at::Tensor& basis) {
          return jitc_matmul_op<true>().call(sources, basis, prob, seed, shape, dist_name, /*transpose=*/true);
        });
      };
    }
    set_recurrent_tangents(model, drive, v0, history, spikes, v_last, v_pre, products);
  }
  if (node) save_recurrent(*node, spikes, v_pre, {history, weight});
  return {spikes, v_last, v_pre};
}

std::tuple<at::Tensor, at::Tensor> lif_jit_recurrent_sequence_autograd(
    const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history, const at::Tensor& weight, double prob,
    int64_t seed, c10::string_view dist, double v_rest, double v_reset, double v_th, double R, double tau, double dt,
    c10::string_view method, bool detach_reset, c10::string_view surrogate, c10::ArrayRef<double> params) {
  if (!records_node({drive, v0, history, weight}) && !has_tangent({drive, v0, history, weight})) {
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
