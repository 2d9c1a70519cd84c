// Schemas and C++ API of the JIT-connectivity operator family (SPEC section 2; the generator
// is specified in kernels/jitc/jitc_gen.h). Kernels: csrc/ops/{cpu,cuda,meta,autograd}/.
#include <brain/ops.h>

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(brain, m) {
  m.def("jitc_matmul(Tensor x, Tensor weight, float prob, int seed, SymInt[2] shape, "
        "str dist=\"homo\", bool transpose=False) -> Tensor");
  m.def("event_jitc_matmul(Tensor x, Tensor weight, float prob, int seed, SymInt[2] shape, "
        "str dist=\"homo\", bool transpose=False) -> Tensor");
  // Gradients of both matmuls (one linear map): output_mask = [x, weight].
  m.def("_jitc_matmul_backward(Tensor grad_out, Tensor x, Tensor weight, float prob, int seed, "
        "SymInt[2] shape, str dist, bool transpose, bool[2] output_mask) -> (Tensor, Tensor)");
  m.def("jitc_materialize(Tensor weight, float prob, int seed, SymInt[2] shape, "
        "str dist=\"homo\") -> Tensor");
  // nnz is known only after generating: the one op of the family with a data-dependent size
  // (a construction step, like validate_csr; its fake kernel lives in python/brain).
  m.def("jitc_to_csr(Tensor weight, float prob, int seed, SymInt[2] shape, "
        "str dist=\"homo\") -> (Tensor indptr, Tensor indices, Tensor values)");
  // The non-zero pattern of a window of columns, on like's device (like's values and dtype
  // are not read): the device-side connectivity builder behind fixed_prob. Data-dependent nnz.
  m.def("jitc_pattern(Tensor like, float prob, int seed, SymInt[2] shape, int col_begin=0, "
        "int? col_end=None, bool exclude_diagonal=False) -> (Tensor indptr, Tensor indices)");
}

namespace brain::ops {

namespace {

using JitcMatmulSig = at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t,
                                 c10::SymIntArrayRef, c10::string_view, bool);

c10::SymIntArrayRef as_sym(at::IntArrayRef shape) { return c10::fromIntArrayRefSlow(shape); }

}  // namespace

at::Tensor jitc_matmul(const at::Tensor& x, const at::Tensor& weight, double prob, int64_t seed,
                       at::IntArrayRef shape, std::string_view dist, bool transpose) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::jitc_matmul", "")
                       .typed<JitcMatmulSig>();
  return op.call(x, weight, prob, seed, as_sym(shape), c10::string_view(dist.data(), dist.size()),
                 transpose);
}

at::Tensor event_jitc_matmul(const at::Tensor& x, const at::Tensor& weight, double prob,
                             int64_t seed, at::IntArrayRef shape, std::string_view dist,
                             bool transpose) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::event_jitc_matmul", "")
                       .typed<JitcMatmulSig>();
  return op.call(x, weight, prob, seed, as_sym(shape), c10::string_view(dist.data(), dist.size()),
                 transpose);
}

at::Tensor jitc_materialize(const at::Tensor& weight, double prob, int64_t seed,
                            at::IntArrayRef shape, std::string_view dist) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::jitc_materialize", "")
                       .typed<at::Tensor(const at::Tensor&, double, int64_t, c10::SymIntArrayRef,
                                         c10::string_view)>();
  return op.call(weight, prob, seed, as_sym(shape), c10::string_view(dist.data(), dist.size()));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> jitc_to_csr(const at::Tensor& weight, double prob,
                                                           int64_t seed, at::IntArrayRef shape,
                                                           std::string_view dist) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::jitc_to_csr", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, double, int64_t, c10::SymIntArrayRef,
                           c10::string_view)>();
  return op.call(weight, prob, seed, as_sym(shape), c10::string_view(dist.data(), dist.size()));
}

std::tuple<at::Tensor, at::Tensor> jitc_pattern(const at::Tensor& like, double prob, int64_t seed,
                                                at::IntArrayRef shape, int64_t col_begin, int64_t col_end,
                                                bool exclude_diagonal) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::jitc_pattern", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, int64_t,
                                                                 c10::SymIntArrayRef, int64_t,
                                                                 std::optional<int64_t>, bool)>();
  const std::optional<int64_t> end = col_end < 0 ? std::nullopt : std::optional<int64_t>(col_end);
  return op.call(like, prob, seed, as_sym(shape), col_begin, end, exclude_diagonal);
}

}  // namespace brain::ops
