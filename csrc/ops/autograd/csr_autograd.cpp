// Autograd kernels of the CSR matmuls. Both ops are the same linear map (SPEC section 1), so
// they share the registered backward op brain::_csr_matmul_backward, whose CPU/CUDA/Meta
// kernels compute d/dx (the matmul in the other orientation) and d/dweights.
#include <ATen/core/dispatch/Dispatcher.h>
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
}

}  // namespace brain::ops
