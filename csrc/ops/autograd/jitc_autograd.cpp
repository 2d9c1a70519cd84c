// Autograd kernels of the JIT matmuls. Both ops are one linear map in x and in the weight
// parameters (SPEC section 1), so they share brain::_jitc_matmul_backward. prob and seed are
// not tensors, so they cannot be asked for gradients. The backward op is differentiable too
// (double backward: gradient penalties, Hessian-vector products), by the identities below;
// every map here is linear in each tensor, so the forward derivatives (jvp, jacfwd, hessian)
// are the ops again. Nodes are recorded as torch records its own operators' (op_node.h), so
// torch.func transforms run through them.
#include <array>
#include <string>
#include <vector>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/stack.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/library.h>

#include "csrc/ops/autograd/jitc_basis.h"
#include "csrc/ops/autograd/op_node.h"

namespace brain::ops {
namespace {

using torch::autograd::variable_list;

using MatmulSig = at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t,
                             c10::SymIntArrayRef, c10::string_view, bool);
using BackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                       const at::Tensor&, double, int64_t,
                                                       c10::SymIntArrayRef, c10::string_view,
                                                       bool, std::array<bool, 2>);
using MaterializeSig = at::Tensor(const at::Tensor&, double, int64_t, c10::SymIntArrayRef, c10::string_view);
using ToCsrSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, double, int64_t,
                                                                c10::SymIntArrayRef, c10::string_view);

// The generator's arguments. A node keeps them as its first constants (constants()), and its
// backward reads them back (Generator(constants)).
struct Generator {
  double prob;
  int64_t seed;
  std::array<c10::SymInt, 2> shape;
  std::string dist;

  Generator(double prob, int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist)
      : prob(prob), seed(seed), shape{shape[0], shape[1]}, dist(dist.data(), dist.size()) {}
  explicit Generator(const std::vector<c10::IValue>& c)
      : prob(c[0].toDouble()), seed(c[1].toInt()), shape{c[2].toSymInt(), c[3].toSymInt()}, dist(c[4].toStringRef()) {}

  std::vector<c10::IValue> constants() const { return {prob, seed, shape[0], shape[1], dist}; }
};
constexpr size_t kGeneratorConstants = 5;

template <bool kEvent>
c10::TypedOperatorHandle<MatmulSig>& matmul_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow(kEvent ? "brain::event_jitc_matmul" : "brain::jitc_matmul", "")
                       .typed<MatmulSig>();
  return op;
}

c10::TypedOperatorHandle<MatmulSig>& plain_matmul() { return matmul_op<false>(); }

c10::TypedOperatorHandle<BackwardSig>& backward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_jitc_matmul_backward", "")
                       .typed<BackwardSig>();
  return op;
}

c10::TypedOperatorHandle<MaterializeSig>& materialize_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::jitc_materialize", "")
                       .typed<MaterializeSig>();
  return op;
}

c10::TypedOperatorHandle<ToCsrSig>& to_csr_op() {
  static auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("brain::jitc_to_csr", "").typed<ToCsrSig>();
  return op;
}

// B(c) applied to x.
at::Tensor basis_matmul(const at::Tensor& x, const at::Tensor& coeff, const Generator& gen, bool transpose) {
  return basis_combination(coeff, gen.dist, [&](const at::Tensor& w) {
    return plain_matmul().call(x, w, gen.prob, gen.seed, gen.shape, gen.dist, transpose);
  });
}

// The gradient of <G, A(weight)> with respect to the weight parameters, given
// inner(params) = <G, A(params)> for a parameter vector the ops accept: gradient k is
// <G, B_k>. inner is built from torch ops on G, so the gradient differentiates again in G.
template <typename Inner>
at::Tensor basis_gradient(const at::Tensor& weight, const std::string& dist, Inner&& inner) {
  if (dist == "homo") return inner(basis_params(weight, {1.0})).reshape(weight.sizes());
  const at::Tensor second = inner(basis_params(weight, {0.0, 1.0}));  // <G, U M> or <G, Z M>
  const at::Tensor first = dist == "uniform" ? inner(basis_params(weight, {1.0, 1.0})) - second  // <G, (1 - U) M>
                                             : inner(basis_params(weight, {1.0, 0.0}));          // <G, M>
  return at::stack({first, second});
}

at::Tensor materialized(const Generator& gen, const at::Tensor& params) {
  return materialize_op().call(params, gen.prob, gen.seed, gen.shape, gen.dist);
}

at::Tensor csr_values(const Generator& gen, const at::Tensor& params) {
  return std::get<2>(to_csr_op().call(params, gen.prob, gen.seed, gen.shape, gen.dist));
}

// The node of both matmuls. saved: x, weight; constants: the generator's, transpose.
variable_list jitc_matmul_grads(const variable_list& saved, const std::vector<c10::IValue>& c,
                                const variable_list& grads, const std::vector<bool>& needs) {
  const Generator gen(c);
  auto [grad_x, grad_w] = backward_op().call(grads[0], saved[0], saved[1], gen.prob, gen.seed, gen.shape, gen.dist,
                                             c[kGeneratorConstants].toBool(), {needs[0], needs[1]});
  return {grad_x, grad_w};
}

// grad_x = A(w)^{T-op} g and grad_w_k = <g, B_k-op x>, so with upstream (gx, gw):
//   d/dg = A(w)-op gx + B(gw)-op x,  d/dx = B(gw)^{T-op} g,  d/dw = <gx, dA/dw^{T-op} g>.
// saved: grad_out, x, weight; constants: the generator's, transpose and the output mask (the
// upstream gradients come one per output asked for, grad_x then grad_w).
variable_list jitc_backward_grads(const variable_list& saved, const std::vector<c10::IValue>& c,
                                  const variable_list& grads, const std::vector<bool>& needs) {
  const at::Tensor &g = saved[0], &x = saved[1], &weight = saved[2];
  const Generator gen(c);
  const bool transpose = c[kGeneratorConstants].toBool();
  const bool mask_x = c[kGeneratorConstants + 1].toBool(), mask_w = c[kGeneratorConstants + 2].toBool();
  const at::Tensor gx = mask_x ? grads[0] : at::Tensor();
  const at::Tensor gw = mask_w ? grads[mask_x ? 1 : 0] : at::Tensor();
  at::Tensor d_g, d_x, d_w;
  if (needs[0]) {
    if (gx.defined()) d_g = plain_matmul().call(gx, weight, gen.prob, gen.seed, gen.shape, gen.dist, transpose);
    if (gw.defined()) d_g = sum_defined(d_g, basis_matmul(x, gw, gen, transpose));
  }
  if (needs[1] && gw.defined()) d_x = basis_matmul(g, gw, gen, !transpose);
  if (needs[2] && gx.defined()) {
    d_w = std::get<1>(
        backward_op().call(gx, g, weight, gen.prob, gen.seed, gen.shape, gen.dist, !transpose, {false, true}));
  }
  return {d_g, d_x, d_w};
}

// The dense A(weight): d/dweight of <G, A> (basis_gradient). saved: weight.
variable_list jitc_materialize_grads(const variable_list& saved, const std::vector<c10::IValue>& c,
                                     const variable_list& grads, const std::vector<bool>&) {
  const Generator gen(c);
  const at::Tensor& g = grads[0];
  return {basis_gradient(saved[0], gen.dist,
                         [&](const at::Tensor& params) { return (g * materialized(gen, params)).sum(); })};
}

// The CSR values of A(weight), whose entries come in the same order for any parameters (the
// pattern depends on prob, seed and shape only). saved: weight.
variable_list jitc_to_csr_grads(const variable_list& saved, const std::vector<c10::IValue>& c,
                                const variable_list& grads, const std::vector<bool>&) {
  const at::Tensor& g = grads[0];
  if (!g.defined()) return {at::Tensor()};
  const Generator gen(c);
  return {basis_gradient(saved[0], gen.dist,
                         [&](const at::Tensor& params) { return (g * csr_values(gen, params)).sum(); })};
}

template <bool kEvent>
at::Tensor jitc_matmul_autograd(const at::Tensor& x, const at::Tensor& weight, double prob,
                                int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist,
                                bool transpose) {
  const Generator gen(prob, seed, shape, dist);
  std::shared_ptr<OpNode> node;
  if (records_node({x, weight})) {
    auto constants = gen.constants();
    constants.push_back(transpose);
    node = make_node(kEvent ? "EventJitcMatmulBackward" : "JitcMatmulBackward", {x, weight}, &jitc_matmul_grads,
                     std::move(constants));
    node->save(x);
    node->save(weight);
  }
  at::Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = matmul_op<kEvent>().call(x, weight, prob, seed, shape, dist, transpose);
  }
  if (node) attach(node, out);
  const at::Tensor x_t = x._fw_grad(0), w_t = weight._fw_grad(0);
  if (x_t.defined() || w_t.defined()) {
    // On the primals (torch's own formulas do the same): a tangent cannot carry a tangent.
    at::Tensor t;
    if (x_t.defined()) t = plain_matmul().call(x_t, weight._fw_primal(0), prob, seed, shape, dist, transpose);
    if (w_t.defined()) t = sum_defined(t, basis_matmul(x._fw_primal(0), w_t, gen, transpose));
    out._set_fw_grad(t, 0, false);
  }
  return out;
}

// The backward op's kernel: differentiable by jitc_backward_grads.
std::tuple<at::Tensor, at::Tensor> jitc_matmul_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight, double prob,
    int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist, bool transpose,
    std::array<bool, 2> output_mask) {
  const Generator gen(prob, seed, shape, dist);
  std::shared_ptr<OpNode> node;
  if (records_node({grad_out, x, weight})) {
    auto constants = gen.constants();
    constants.insert(constants.end(), {transpose, output_mask[0], output_mask[1]});
    node = make_node("JitcMatmulBackwardBackward", {grad_out, x, weight}, &jitc_backward_grads, std::move(constants),
                     /*materialize=*/false);
    for (const at::Tensor* t : {&grad_out, &x, &weight}) node->save(*t);
  }
  at::Tensor grad_x, grad_w;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(grad_x, grad_w) = backward_op().call(grad_out, x, weight, prob, seed, shape, dist, transpose, output_mask);
  }
  if (node) {
    if (grad_x.defined()) attach(node, grad_x);
    if (grad_w.defined()) attach(node, grad_w);
  }
  // grad_x is linear in g and in w; grad_w in g and in x (it does not depend on w).
  const at::Tensor g_t = grad_out._fw_grad(0), x_t = x._fw_grad(0), w_t = weight._fw_grad(0);
  if (g_t.defined() || x_t.defined() || w_t.defined()) {
    const at::Tensor g_p = grad_out._fw_primal(0), x_p = x._fw_primal(0), w_p = weight._fw_primal(0);
    auto backward = [&](const at::Tensor& g, const at::Tensor& x, std::array<bool, 2> mask) {
      return backward_op().call(g, x, w_p, prob, seed, shape, dist, transpose, mask);
    };
    if (grad_x.defined() && (g_t.defined() || w_t.defined())) {
      at::Tensor t;
      if (g_t.defined()) t = std::get<0>(backward(g_t, x_p, {true, false}));
      if (w_t.defined()) t = sum_defined(t, basis_matmul(g_p, w_t, gen, !transpose));
      grad_x._set_fw_grad(t, 0, false);
    }
    if (grad_w.defined() && (g_t.defined() || x_t.defined())) {
      at::Tensor t;
      if (g_t.defined()) t = std::get<1>(backward(g_t, x_p, {false, true}));
      if (x_t.defined()) t = sum_defined(t, std::get<1>(backward(g_p, x_t, {false, true})));
      grad_w._set_fw_grad(t, 0, false);
    }
  }
  return {grad_x, grad_w};
}

at::Tensor jitc_materialize_autograd(const at::Tensor& weight, double prob, int64_t seed,
                                     c10::SymIntArrayRef shape, c10::string_view dist) {
  const Generator gen(prob, seed, shape, dist);
  std::shared_ptr<OpNode> node;
  if (records_node({weight})) {
    node = make_node("JitcMaterializeBackward", {weight}, &jitc_materialize_grads, gen.constants());
    node->save(weight);
  }
  at::Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = materialize_op().call(weight, prob, seed, shape, dist);
  }
  if (node) attach(node, out);
  if (const at::Tensor w_t = weight._fw_grad(0); w_t.defined()) {
    out._set_fw_grad(basis_combination(w_t, gen.dist, [&](const at::Tensor& params) { return materialized(gen, params); }),
                     0, false);
  }
  return out;
}

// The CSR copy of A(weight): its values are differentiable in the weight (the pattern is not).
std::tuple<at::Tensor, at::Tensor, at::Tensor> jitc_to_csr_autograd(const at::Tensor& weight, double prob,
                                                                    int64_t seed, c10::SymIntArrayRef shape,
                                                                    c10::string_view dist) {
  const Generator gen(prob, seed, shape, dist);
  std::shared_ptr<OpNode> node;
  if (records_node({weight})) {
    node = make_node("JitcToCsrBackward", {weight}, &jitc_to_csr_grads, gen.constants(), /*materialize=*/false);
    node->save(weight);
  }
  at::Tensor indptr, indices, vals;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(indptr, indices, vals) = to_csr_op().call(weight, prob, seed, shape, dist);
  }
  if (node) attach(node, vals);
  if (const at::Tensor w_t = weight._fw_grad(0); w_t.defined()) {
    vals._set_fw_grad(basis_combination(w_t, gen.dist, [&](const at::Tensor& params) { return csr_values(gen, params); }),
                      0, false);
  }
  return {indptr, indices, vals};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Autograd, m) {
  m.impl("jitc_matmul", &jitc_matmul_autograd<false>);
  m.impl("event_jitc_matmul", &jitc_matmul_autograd<true>);
  m.impl("_jitc_matmul_backward", &jitc_matmul_backward_autograd);
  m.impl("jitc_materialize", &jitc_materialize_autograd);
  m.impl("jitc_to_csr", &jitc_to_csr_autograd);
}

}  // namespace brain::ops
