// Schemas and C++ API of the CSR operator family. Kernels: csrc/ops/{cpu,cuda,meta,autograd}/.
#include <brain/ops.h>

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(brain, m) {
  m.def("csr_matmul(Tensor indptr, Tensor indices, Tensor weights, Tensor x, SymInt[2] shape, "
        "bool transpose=False) -> Tensor");
  m.def("event_csr_matmul(Tensor indptr, Tensor indices, Tensor weights, Tensor x, "
        "SymInt[2] shape, bool transpose=False) -> Tensor");
  // Gradients of both matmuls (they are the same linear map): output_mask = [x, weights].
  m.def("_csr_matmul_backward(Tensor grad_out, Tensor indptr, Tensor indices, Tensor weights, "
        "Tensor x, SymInt[2] shape, bool transpose, bool[2] output_mask) -> (Tensor, Tensor)");
  m.def("validate_csr(Tensor indptr, Tensor indices, SymInt[2] shape) -> ()");
  m.def("csr_to_csc(Tensor indptr, Tensor indices, SymInt[2] shape) -> "
        "(Tensor csc_indptr, Tensor csc_indices, Tensor perm)");
  m.def("csr_update_on_pre_(Tensor(a!) weights, Tensor indptr, Tensor indices, "
        "Tensor pre_spikes, Tensor post_trace, float scale, float? w_min=None, "
        "float? w_max=None) -> ()");
  m.def("csr_update_on_post_(Tensor(a!) weights, Tensor csc_indptr, Tensor csc_indices, "
        "Tensor perm, Tensor post_spikes, Tensor pre_trace, float scale, float? w_min=None, "
        "float? w_max=None) -> ()");
}

namespace brain::ops {

namespace {

using MatmulSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                             const at::Tensor&, c10::SymIntArrayRef, bool);

c10::TypedOperatorHandle<MatmulSig>& matmul_handle(bool event) {
  static auto plain = c10::Dispatcher::singleton()
                          .findSchemaOrThrow("brain::csr_matmul", "")
                          .typed<MatmulSig>();
  static auto evented = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("brain::event_csr_matmul", "")
                            .typed<MatmulSig>();
  return event ? evented : plain;
}

c10::SymIntArrayRef as_sym(at::IntArrayRef shape) { return c10::fromIntArrayRefSlow(shape); }

}  // namespace

at::Tensor csr_matmul(const at::Tensor& indptr, const at::Tensor& indices,
                      const at::Tensor& weights, const at::Tensor& x, at::IntArrayRef shape,
                      bool transpose) {
  return matmul_handle(false).call(indptr, indices, weights, x, as_sym(shape), transpose);
}

at::Tensor event_csr_matmul(const at::Tensor& indptr, const at::Tensor& indices,
                            const at::Tensor& weights, const at::Tensor& x,
                            at::IntArrayRef shape, bool transpose) {
  return matmul_handle(true).call(indptr, indices, weights, x, as_sym(shape), transpose);
}

void validate_csr(const at::Tensor& indptr, const at::Tensor& indices, at::IntArrayRef shape) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::validate_csr", "")
                       .typed<void(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef)>();
  op.call(indptr, indices, as_sym(shape));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_to_csc(const at::Tensor& indptr,
                                                           const at::Tensor& indices,
                                                           at::IntArrayRef shape) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::csr_to_csc", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef)>();
  return op.call(indptr, indices, as_sym(shape));
}

void csr_update_on_pre_(at::Tensor& weights, const at::Tensor& indptr, const at::Tensor& indices,
                        const at::Tensor& pre_spikes, const at::Tensor& post_trace, double scale,
                        std::optional<double> w_min, std::optional<double> w_max) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::csr_update_on_pre_", "")
                       .typed<void(at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   const at::Tensor&, const at::Tensor&, double,
                                   std::optional<double>, std::optional<double>)>();
  op.call(weights, indptr, indices, pre_spikes, post_trace, scale, w_min, w_max);
}

void csr_update_on_post_(at::Tensor& weights, const at::Tensor& csc_indptr,
                         const at::Tensor& csc_indices, const at::Tensor& perm,
                         const at::Tensor& post_spikes, const at::Tensor& pre_trace, double scale,
                         std::optional<double> w_min, std::optional<double> w_max) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::csr_update_on_post_", "")
                       .typed<void(at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   double, std::optional<double>, std::optional<double>)>();
  op.call(weights, csc_indptr, csc_indices, perm, post_spikes, pre_trace, scale, w_min, w_max);
}

}  // namespace brain::ops
