// Autograd kernels of the CSR matmuls. Both ops are the same linear map (SPEC section 1), so
// they share the registered backward op brain::_csr_matmul_backward, whose CPU/CUDA/Meta
// kernels compute d/dx (the matmul in the other orientation) and d/dweights. The backward op
// is differentiable too (double backward: gradient penalties, Hessian-vector products), by
// the identities at CsrBackwardFunction::backward.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

namespace brain::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using MatmulSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                             const at::Tensor&, c10::SymIntArrayRef, bool);
using BackwardSig = std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, c10::SymIntArrayRef, bool, std::array<bool, 2>);

template <bool kEvent>
class CsrMatmulFunction : public torch::autograd::Function<CsrMatmulFunction<kEvent>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& indptr,
                            const at::Tensor& indices, const at::Tensor& weights,
                            const at::Tensor& x, c10::SymIntArrayRef shape, bool transpose) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow(kEvent ? "brain::event_csr_matmul" : "brain::csr_matmul", "")
                         .typed<MatmulSig>();
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = op.call(indptr, indices, weights, x, shape, transpose);
    }
    ctx->save_for_backward({indptr, indices, weights, x});
    ctx->saved_data["n_rows"] = shape[0];
    ctx->saved_data["n_cols"] = shape[1];
    ctx->saved_data["transpose"] = transpose;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::_csr_matmul_backward", "")
                         .typed<BackwardSig>();
    const auto saved = ctx->get_saved_variables();
    const std::array<c10::SymInt, 2> shape = {ctx->saved_data["n_rows"].toSymInt(),
                                              ctx->saved_data["n_cols"].toSymInt()};
    const std::array<bool, 2> mask = {ctx->needs_input_grad(3), ctx->needs_input_grad(2)};
    at::Tensor grad_x, grad_w;
    if (mask[0] || mask[1]) {
      std::tie(grad_x, grad_w) = op.call(grad_outputs[0], saved[0], saved[1], saved[2], saved[3],
                                         shape, ctx->saved_data["transpose"].toBool(), mask);
    }
    return {at::Tensor(), at::Tensor(), grad_w, grad_x, at::Tensor(), at::Tensor()};
  }
};

c10::TypedOperatorHandle<MatmulSig>& plain_matmul() {
  static auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("brain::csr_matmul", "").typed<MatmulSig>();
  return op;
}

c10::TypedOperatorHandle<BackwardSig>& backward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_csr_matmul_backward", "")
                       .typed<BackwardSig>();
  return op;
}

class CsrBackwardFunction : public torch::autograd::Function<CsrBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_out,
                               const at::Tensor& indptr, const at::Tensor& indices,
                               const at::Tensor& weights, const at::Tensor& x,
                               c10::SymIntArrayRef shape, bool transpose, std::array<bool, 2> mask) {
    at::Tensor grad_x, grad_w;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(grad_x, grad_w) =
          backward_op().call(grad_out, indptr, indices, weights, x, shape, transpose, mask);
    }
    // A custom Function cannot return undefined tensors: empty placeholders stand for the
    // outputs not asked for, and the wrapper below turns them back into undefined ones.
    if (!grad_x.defined()) grad_x = at::empty({0}, weights.options());
    if (!grad_w.defined()) grad_w = at::empty({0}, weights.options());
    ctx->saved_data["mask_x"] = mask[0];
    ctx->saved_data["mask_w"] = mask[1];
    ctx->save_for_backward({grad_out, indptr, indices, weights, x});
    ctx->saved_data["n_rows"] = shape[0];
    ctx->saved_data["n_cols"] = shape[1];
    ctx->saved_data["transpose"] = transpose;
    return {grad_x, grad_w};
  }

  // With A(w) the matrix of the weights w and "op" the forward's orientation (A, or A^T when
  // transpose): grad_x = A(w)^{T-op} g and grad_w_k = sum_b g[b, out_k] x[b, in_k], linear in
  // each of g, w and x. So with upstream (gx, gw):
  //   d/dg = A(w)-op gx + A(gw)-op x,  d/dx = A(gw)^{T-op} g,  d/dw = grad_w of (g, x := gx).
  // Each is one of the two ops again (called with autograd, so it differentiates further).
  static variable_list backward(AutogradContext* ctx, variable_list upstream) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& g = saved[0];
    const at::Tensor& indptr = saved[1];
    const at::Tensor& indices = saved[2];
    const at::Tensor& weights = saved[3];
    const at::Tensor& x = saved[4];
    const std::array<c10::SymInt, 2> shape = {ctx->saved_data["n_rows"].toSymInt(),
                                              ctx->saved_data["n_cols"].toSymInt()};
    const bool transpose = ctx->saved_data["transpose"].toBool();
    const at::Tensor gx = ctx->saved_data["mask_x"].toBool() ? upstream[0] : at::Tensor();
    const at::Tensor gw = ctx->saved_data["mask_w"].toBool() ? upstream[1] : at::Tensor();
    at::Tensor d_g, d_w, d_x;
    if (ctx->needs_input_grad(0)) {
      if (gx.defined()) d_g = plain_matmul().call(indptr, indices, weights, gx, shape, transpose);
      if (gw.defined()) {
        at::Tensor t = plain_matmul().call(indptr, indices, gw, x, shape, transpose);
        d_g = d_g.defined() ? d_g + t : t;
      }
    }
    if (ctx->needs_input_grad(3) && gx.defined()) {
      d_w = std::get<1>(backward_op().call(g, indptr, indices, weights, gx, shape, transpose, {false, true}));
    }
    if (ctx->needs_input_grad(4) && gw.defined()) {
      d_x = plain_matmul().call(indptr, indices, gw, g, shape, !transpose);
    }
    return {d_g, at::Tensor(), at::Tensor(), d_w, d_x, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> csr_matmul_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& indptr, const at::Tensor& indices,
    const at::Tensor& weights, const at::Tensor& x, c10::SymIntArrayRef shape, bool transpose,
    std::array<bool, 2> output_mask) {
  // A first-order backward runs without grad mode: no node to record, so none of a custom
  // Function's bookkeeping (about 10 us a call).
  if (!at::GradMode::is_enabled() || !(grad_out.requires_grad() || x.requires_grad() || weights.requires_grad())) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return backward_op().call(grad_out, indptr, indices, weights, x, shape, transpose, output_mask);
  }
  auto out = CsrBackwardFunction::apply(grad_out, indptr, indices, weights, x, shape, transpose,
                                        output_mask);
  return {output_mask[0] ? out[0] : at::Tensor(), output_mask[1] ? out[1] : at::Tensor()};
}

template <bool kEvent>
at::Tensor csr_matmul_autograd(const at::Tensor& indptr, const at::Tensor& indices,
                               const at::Tensor& weights, const at::Tensor& x,
                               c10::SymIntArrayRef shape, bool transpose) {
  return CsrMatmulFunction<kEvent>::apply(indptr, indices, weights, x, shape, transpose);
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, Autograd, m) {
  m.impl("csr_matmul", &csr_matmul_autograd<false>);
  m.impl("event_csr_matmul", &csr_matmul_autograd<true>);
  m.impl("_csr_matmul_backward", &csr_matmul_backward_autograd);
}

}  // namespace brain::ops
