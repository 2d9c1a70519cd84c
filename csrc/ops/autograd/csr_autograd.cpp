// Autograd kernels of the CSR matmuls. Both ops are the same linear map (SPEC section 1), so
// they share the registered backward op brain::_csr_matmul_backward, whose CPU/CUDA/Meta
// kernels compute d/dx (the matmul in the other orientation) and d/dweights. The backward op
// is differentiable too (double backward: gradient penalties, Hessian-vector products), by
// the identities at csr_backward_grads. Every one of them is bilinear, so their
// forward derivatives (jvp, jacfwd, hessian) are the ops again. Nodes are recorded as torch
// records its own operators' (op_node.h), so torch.func transforms run through them.
#include <array>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/TensorOperators.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/library.h>

#include "csrc/ops/autograd/op_node.h"

namespace brain::ops {
namespace {

using torch::autograd::variable_list;

using MatmulSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                             const at::Tensor&, c10::SymIntArrayRef, bool);
using BackwardSig = std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, c10::SymIntArrayRef, bool, std::array<bool, 2>);
using Shape = std::array<c10::SymInt, 2>;

template <bool kEvent>
c10::TypedOperatorHandle<MatmulSig>& matmul_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow(kEvent ? "brain::event_csr_matmul" : "brain::csr_matmul", "")
                       .typed<MatmulSig>();
  return op;
}

c10::TypedOperatorHandle<MatmulSig>& plain_matmul() { return matmul_op<false>(); }

c10::TypedOperatorHandle<BackwardSig>& backward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_csr_matmul_backward", "")
                       .typed<BackwardSig>();
  return op;
}

Shape shape_of(const std::vector<c10::IValue>& c) { return {c[0].toSymInt(), c[1].toSymInt()}; }

// The node of both matmuls. saved: indptr, indices, weights, x; constants: n_rows, n_cols,
// transpose. Differentiable inputs: x, weights.
variable_list csr_matmul_grads(const variable_list& saved, const std::vector<c10::IValue>& c,
                               const variable_list& grads, const std::vector<bool>& needs) {
  auto [grad_x, grad_w] = backward_op().call(grads[0], saved[0], saved[1], saved[2], saved[3], shape_of(c),
                                             c[2].toBool(), {needs[0], needs[1]});
  return {grad_x, grad_w};
}

// With A(w) the matrix of the weights w and "op" the forward's orientation (A, or A^T when
// transpose): grad_x = A(w)^{T-op} g and grad_w_k = sum_b g[b, out_k] x[b, in_k], linear in
// each of g, w and x. So with upstream (gx, gw):
//   d/dg = A(w)-op gx + A(gw)-op x,  d/dx = A(gw)^{T-op} g,  d/dw = grad_w of (g, x := gx).
// Each is one of the two ops again (called with autograd, so it differentiates further).
// saved: grad_out, indptr, indices, weights, x; constants: n_rows, n_cols, transpose, and the
// output mask (the upstream gradients come one per output asked for, grad_x then grad_w).
// Differentiable inputs: grad_out, weights, x.
variable_list csr_backward_grads(const variable_list& saved, const std::vector<c10::IValue>& c,
                                 const variable_list& grads, const std::vector<bool>& needs) {
  const at::Tensor &g = saved[0], &indptr = saved[1], &indices = saved[2], &weights = saved[3], &x = saved[4];
  const Shape s = shape_of(c);
  const bool transpose = c[2].toBool(), mask_x = c[3].toBool(), mask_w = c[4].toBool();
  const at::Tensor gx = mask_x ? grads[0] : at::Tensor();
  const at::Tensor gw = mask_w ? grads[mask_x ? 1 : 0] : at::Tensor();
  at::Tensor d_g, d_w, d_x;
  if (needs[0]) {
    if (gx.defined()) d_g = plain_matmul().call(indptr, indices, weights, gx, s, transpose);
    if (gw.defined()) d_g = sum_defined(d_g, plain_matmul().call(indptr, indices, gw, x, s, transpose));
  }
  if (needs[1] && gx.defined()) {
    d_w = std::get<1>(backward_op().call(g, indptr, indices, weights, gx, s, transpose, {false, true}));
  }
  if (needs[2] && gw.defined()) d_x = plain_matmul().call(indptr, indices, gw, g, s, !transpose);
  return {d_g, d_w, d_x};
}

template <bool kEvent>
at::Tensor csr_matmul_autograd(const at::Tensor& indptr, const at::Tensor& indices,
                               const at::Tensor& weights, const at::Tensor& x,
                               c10::SymIntArrayRef shape, bool transpose) {
  std::shared_ptr<OpNode> node;
  if (records_node({weights, x})) {
    node = make_node(kEvent ? "EventCsrMatmulBackward" : "CsrMatmulBackward", {x, weights}, &csr_matmul_grads,
                     {shape[0], shape[1], transpose});
    for (const at::Tensor* t : {&indptr, &indices, &weights, &x}) node->save(*t);
  }
  at::Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = matmul_op<kEvent>().call(indptr, indices, weights, x, shape, transpose);
  }
  if (node) attach(node, out);
  // Linear in x and in the weights: the tangent is the op on each input's tangent.
  const at::Tensor x_t = x._fw_grad(0), w_t = weights._fw_grad(0);
  if (x_t.defined() || w_t.defined()) {
    // On the primals (torch's own formulas do the same): a tangent cannot carry a tangent.
    at::Tensor t;
    if (x_t.defined()) t = plain_matmul().call(indptr, indices, weights._fw_primal(0), x_t, shape, transpose);
    if (w_t.defined()) t = sum_defined(t, plain_matmul().call(indptr, indices, w_t, x._fw_primal(0), shape, transpose));
    out._set_fw_grad(t, 0, false);
  }
  return out;
}

// The backward op's kernel: differentiable by csr_backward_grads.
std::tuple<at::Tensor, at::Tensor> csr_matmul_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& indptr, const at::Tensor& indices,
    const at::Tensor& weights, const at::Tensor& x, c10::SymIntArrayRef shape, bool transpose,
    std::array<bool, 2> output_mask) {
  const Shape s{shape[0], shape[1]};
  std::shared_ptr<OpNode> node;
  if (records_node({grad_out, weights, x})) {
    node = make_node("CsrMatmulBackwardBackward", {grad_out, weights, x}, &csr_backward_grads,
                     {shape[0], shape[1], transpose, output_mask[0], output_mask[1]}, /*materialize=*/false);
    for (const at::Tensor* t : {&grad_out, &indptr, &indices, &weights, &x}) node->save(*t);
  }
  at::Tensor grad_x, grad_w;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(grad_x, grad_w) = backward_op().call(grad_out, indptr, indices, weights, x, shape, transpose, output_mask);
  }
  if (node) {
    if (grad_x.defined()) attach(node, grad_x);
    if (grad_w.defined()) attach(node, grad_w);
  }
  // Bilinear: grad_x in (g, w), grad_w in (g, x).
  const at::Tensor g_t = grad_out._fw_grad(0), w_t = weights._fw_grad(0), x_t = x._fw_grad(0);
  if (g_t.defined() || w_t.defined() || x_t.defined()) {
    const at::Tensor g_p = grad_out._fw_primal(0), w_p = weights._fw_primal(0), x_p = x._fw_primal(0);
    if (grad_x.defined() && (g_t.defined() || w_t.defined())) {
      at::Tensor t;
      if (g_t.defined()) t = std::get<0>(backward_op().call(g_t, indptr, indices, w_p, x_p, s, transpose, {true, false}));
      if (w_t.defined()) {
        t = sum_defined(t, std::get<0>(backward_op().call(g_p, indptr, indices, w_t, x_p, s, transpose, {true, false})));
      }
      grad_x._set_fw_grad(t, 0, false);
    }
    if (grad_w.defined() && (g_t.defined() || x_t.defined())) {
      at::Tensor t;
      if (g_t.defined()) t = std::get<1>(backward_op().call(g_t, indptr, indices, w_p, x_p, s, transpose, {false, true}));
      if (x_t.defined()) {
        t = sum_defined(t, std::get<1>(backward_op().call(g_p, indptr, indices, w_p, x_t, s, transpose, {false, true})));
      }
      grad_w._set_fw_grad(t, 0, false);
    }
  }
  return {grad_x, grad_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Autograd, m) {
  m.impl("csr_matmul", &csr_matmul_autograd<false>);
  m.impl("event_csr_matmul", &csr_matmul_autograd<true>);
  m.impl("_csr_matmul_backward", &csr_matmul_backward_autograd);
}

}  // namespace brain::ops
