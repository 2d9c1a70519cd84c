// Schemas, shared checks and C++ API of brain::lif_recurrent_sequence: the fused LIF op with
// its own spikes fed back through a CSR matrix after a delay (kernels/lif/lif_recurrent_cpu.h),
// and of its dense and JIT-connectivity forms. Kernels: csrc/ops/{cpu,cuda,meta,autograd}/
// lif_recurrent_*.cpp; the dense and JIT forms in csrc/ops/lif_recurrent_composite.cpp.
#include <brain/ops.h>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "csrc/ops/csr_common.h"
#include "csrc/ops/jitc_common.h"
#include "csrc/ops/lif_common.h"

TORCH_LIBRARY_FRAGMENT(brain, m) {
  m.def("lif_recurrent_sequence(Tensor drive, Tensor v0, Tensor history, Tensor indptr, Tensor indices, "
        "Tensor weights, float v_rest, float v_reset, float v_th, float R, float tau, float dt, "
        "str method=\"exp_euler\", bool detach_reset=True, str surrogate=\"sigmoid\", "
        "float[] surrogate_params=[]) -> (Tensor spikes, Tensor v_last)");
  // The forward that also returns v_pre [T, ...], the membrane before each threshold.
  m.def("_lif_recurrent_sequence_forward(Tensor drive, Tensor v0, Tensor history, Tensor indptr, "
        "Tensor indices, Tensor weights, float v_rest, float v_reset, float v_th, float R, float tau, "
        "float dt, str method, bool detach_reset, str surrogate, float[] surrogate_params) -> "
        "(Tensor spikes, Tensor v_last, Tensor v_pre)");
  // output_mask = [drive, v0, history, weights]; a gradient not asked for is undefined.
  m.def("_lif_recurrent_sequence_backward(Tensor grad_spikes, Tensor grad_v_last, Tensor v_pre, "
        "Tensor spikes, Tensor history, Tensor indptr, Tensor indices, Tensor weights, float v_rest, "
        "float v_reset, float v_th, float R, float tau, float dt, str method, bool detach_reset, "
        "str surrogate, float[] surrogate_params, bool[4] output_mask) -> "
        "(Tensor grad_drive, Tensor grad_v0, Tensor grad_history, Tensor grad_weights)");
  // The same layer with a dense recurrent matrix, stored as torch.nn.Linear stores its weight:
  // [n_post, n_pre], I_t = drive[t] + S_t @ weight^T. Kernels: csrc/ops/lif_recurrent_composite.cpp.
  m.def("lif_dense_recurrent_sequence(Tensor drive, Tensor v0, Tensor history, Tensor weight, float v_rest, "
        "float v_reset, float v_th, float R, float tau, float dt, str method=\"exp_euler\", "
        "bool detach_reset=True, str surrogate=\"sigmoid\", float[] surrogate_params=[]) -> "
        "(Tensor spikes, Tensor v_last)");
  m.def("_lif_dense_recurrent_sequence_forward(Tensor drive, Tensor v0, Tensor history, Tensor weight, "
        "float v_rest, float v_reset, float v_th, float R, float tau, float dt, str method, bool detach_reset, "
        "str surrogate, float[] surrogate_params) -> (Tensor spikes, Tensor v_last, Tensor v_pre)");
  m.def("_lif_dense_recurrent_sequence_backward(Tensor grad_spikes, Tensor grad_v_last, Tensor v_pre, "
        "Tensor spikes, Tensor history, Tensor weight, float v_rest, float v_reset, float v_th, float R, "
        "float tau, float dt, str method, bool detach_reset, str surrogate, float[] surrogate_params, "
        "bool[4] output_mask) -> (Tensor grad_drive, Tensor grad_v0, Tensor grad_history, Tensor grad_weight)");
  // The same layer with JIT connectivity (never stored): A [n, n], rows presynaptic, generated
  // from (prob, seed) as brain::event_jitc_matmul generates it; weight holds its parameters
  // (w, [low, high] or [mean, std] for dist homo, uniform, normal). I_t = drive[t] + A^T S_t.
  m.def("lif_jit_recurrent_sequence(Tensor drive, Tensor v0, Tensor history, Tensor weight, float prob, int seed, "
        "str dist, float v_rest, float v_reset, float v_th, float R, float tau, float dt, str method=\"exp_euler\", "
        "bool detach_reset=True, str surrogate=\"sigmoid\", float[] surrogate_params=[]) -> "
        "(Tensor spikes, Tensor v_last)");
  m.def("_lif_jit_recurrent_sequence_forward(Tensor drive, Tensor v0, Tensor history, Tensor weight, float prob, "
        "int seed, str dist, float v_rest, float v_reset, float v_th, float R, float tau, float dt, str method, "
        "bool detach_reset, str surrogate, float[] surrogate_params) -> (Tensor spikes, Tensor v_last, Tensor v_pre)");
  m.def("_lif_jit_recurrent_sequence_backward(Tensor grad_spikes, Tensor grad_v_last, Tensor v_pre, "
        "Tensor spikes, Tensor history, Tensor weight, float prob, int seed, str dist, float v_rest, float v_reset, "
        "float v_th, float R, float tau, float dt, str method, bool detach_reset, str surrogate, "
        "float[] surrogate_params, bool[4] output_mask) -> "
        "(Tensor grad_drive, Tensor grad_v0, Tensor grad_history, Tensor grad_weight)");
}

namespace brain::ops {

namespace detail {

namespace {

// drive, v0 and history, shared by the CSR and dense forms.
void check_layer_tensors(const char* op, const at::Tensor& drive, const at::Tensor& v0, const at::Tensor& history) {
  TORCH_CHECK(drive.defined() && v0.defined() && history.defined(), op, ": every tensor argument is required");
  TORCH_CHECK(drive.dim() == 2 || drive.dim() == 3, op, ": drive must be [T, n] or [T, B, n] (time first), got ",
              drive.dim(), "-D");
  check_lif_tensors(op, drive, v0);
  TORCH_CHECK(history.dim() == drive.dim() && history.sym_sizes().slice(1) == drive.sym_sizes().slice(1), op,
              ": history must be [d, ", drive.sym_sizes().slice(1), "] (the spikes of the d steps before the "
              "window, oldest first), got ", history.sym_sizes());
  TORCH_CHECK(history.sym_size(0) >= 1, op,
              ": history must hold at least one step: its length is the recurrent delay d >= 1, got 0");
  TORCH_CHECK(history.scalar_type() == drive.scalar_type() && history.device() == drive.device(), op,
              ": history must have drive's dtype and device (", drive.scalar_type(), ", ", drive.device(), "), got ",
              history.scalar_type(), ", ", history.device());
}

void check_backward_extras(const char* op, const at::Tensor& grad_spikes, const at::Tensor& grad_v_last,
                           const at::Tensor& v_pre, const at::Tensor& spikes) {
  check_lif_backward_tensors(op, grad_spikes, grad_v_last, v_pre);
  TORCH_CHECK(spikes.defined() && spikes.scalar_type() == v_pre.scalar_type() && spikes.device() == v_pre.device() &&
                  spikes.sym_sizes() == v_pre.sym_sizes(),
              op, ": spikes must match v_pre (", v_pre.sym_sizes(), ", ", v_pre.scalar_type(), ")");
}

}  // namespace

bool check_lif_recurrent_tensors(const char* op, const at::Tensor& drive, const at::Tensor& v0,
                                 const at::Tensor& history, const at::Tensor& indptr,
                                 const at::Tensor& indices, const at::Tensor& weights) {
  check_layer_tensors(op, drive, v0, history);
  TORCH_CHECK(indptr.defined() && indices.defined() && weights.defined(), op, ": every tensor argument is required");
  TORCH_CHECK(weights.scalar_type() == drive.scalar_type(), op, ": weights must have drive's dtype ",
              drive.scalar_type(), ", got ", weights.scalar_type());
  const c10::SymInt n = drive.sym_size(-1);
  const auto g = check_csr_matmul_args(op, indptr, indices, weights, v0, {n, n}, /*transpose=*/true,
                                       /*allow_half=*/false);
  TORCH_CHECK(indptr.device() == drive.device(), op, ": the CSR tensors are on ", indptr.device(),
              " but drive on ", drive.device());
  return g.homo;
}

bool check_lif_recurrent_backward_tensors(const char* op, const at::Tensor& grad_spikes,
                                          const at::Tensor& grad_v_last, const at::Tensor& v_pre,
                                          const at::Tensor& spikes, const at::Tensor& history,
                                          const at::Tensor& indptr, const at::Tensor& indices,
                                          const at::Tensor& weights) {
  const bool homo = check_lif_recurrent_tensors(op, v_pre, grad_v_last, history, indptr, indices, weights);
  check_backward_extras(op, grad_spikes, grad_v_last, v_pre, spikes);
  return homo;
}

void check_lif_dense_recurrent_tensors(const char* op, const at::Tensor& drive, const at::Tensor& v0,
                                       const at::Tensor& history, const at::Tensor& weight) {
  check_layer_tensors(op, drive, v0, history);
  TORCH_CHECK(weight.defined(), op, ": every tensor argument is required");
  const c10::SymInt n = drive.sym_size(-1);
  TORCH_CHECK(weight.dim() == 2 && weight.sym_size(0) == n && weight.sym_size(1) == n, op,
              ": weight must be [n, n] = [", n, ", ", n, "] (post x pre, as torch.nn.Linear stores it), got ",
              weight.sym_sizes());
  TORCH_CHECK(weight.scalar_type() == drive.scalar_type() && weight.device() == drive.device(), op,
              ": weight must have drive's dtype and device (", drive.scalar_type(), ", ", drive.device(), "), got ",
              weight.scalar_type(), ", ", weight.device());
}

void check_lif_dense_recurrent_backward_tensors(const char* op, const at::Tensor& grad_spikes,
                                                const at::Tensor& grad_v_last, const at::Tensor& v_pre,
                                                const at::Tensor& spikes, const at::Tensor& history,
                                                const at::Tensor& weight) {
  check_lif_dense_recurrent_tensors(op, v_pre, grad_v_last, history, weight);
  check_backward_extras(op, grad_spikes, grad_v_last, v_pre, spikes);
}

void check_lif_jit_recurrent_tensors(const char* op, const at::Tensor& drive, const at::Tensor& v0,
                                     const at::Tensor& history, const at::Tensor& weight, double prob,
                                     std::string_view dist) {
  check_layer_tensors(op, drive, v0, history);
  TORCH_CHECK(weight.defined(), op, ": every tensor argument is required");
  const c10::SymInt n = drive.sym_size(-1);
  check_jitc_matrix_args(op, weight, prob, {n, n}, dist, /*allow_half=*/false);
  TORCH_CHECK(weight.scalar_type() == drive.scalar_type() && weight.device() == drive.device(), op,
              ": weight must have drive's dtype and device (", drive.scalar_type(), ", ", drive.device(), "), got ",
              weight.scalar_type(), ", ", weight.device());
}

void check_lif_jit_recurrent_backward_tensors(const char* op, const at::Tensor& grad_spikes,
                                              const at::Tensor& grad_v_last, const at::Tensor& v_pre,
                                              const at::Tensor& spikes, const at::Tensor& history,
                                              const at::Tensor& weight, double prob, std::string_view dist) {
  check_lif_jit_recurrent_tensors(op, v_pre, grad_v_last, history, weight, prob, dist);
  check_backward_extras(op, grad_spikes, grad_v_last, v_pre, spikes);
}

}  // namespace detail

std::tuple<at::Tensor, at::Tensor> lif_jit_recurrent_sequence(const at::Tensor& drive, const at::Tensor& v0,
                                                              const at::Tensor& history, const at::Tensor& weight,
                                                              double prob, int64_t seed, std::string_view dist,
                                                              const LifSequenceOptions& o) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::lif_jit_recurrent_sequence", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                           int64_t, c10::string_view, double, double, double, double, double, double,
                           c10::string_view, bool, c10::string_view, c10::ArrayRef<double>)>();
  return op.call(drive, v0, history, weight, prob, seed, c10::string_view(dist.data(), dist.size()), o.v_rest,
                 o.v_reset, o.v_th, o.R, o.tau, o.dt, o.method, o.detach_reset, o.surrogate, o.surrogate_params);
}

std::tuple<at::Tensor, at::Tensor> lif_dense_recurrent_sequence(const at::Tensor& drive, const at::Tensor& v0,
                                                                const at::Tensor& history, const at::Tensor& weight,
                                                                const LifSequenceOptions& o) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::lif_dense_recurrent_sequence", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double,
                           double, double, double, double, c10::string_view, bool, c10::string_view,
                           c10::ArrayRef<double>)>();
  return op.call(drive, v0, history, weight, o.v_rest, o.v_reset, o.v_th, o.R, o.tau, o.dt, o.method, o.detach_reset,
                 o.surrogate, o.surrogate_params);
}

std::tuple<at::Tensor, at::Tensor> lif_recurrent_sequence(const at::Tensor& drive, const at::Tensor& v0,
                                                          const at::Tensor& history, const at::Tensor& indptr,
                                                          const at::Tensor& indices, const at::Tensor& weights,
                                                          const LifSequenceOptions& o) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::lif_recurrent_sequence", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const at::Tensor&, const at::Tensor&, double, double, double, double, double, double,
                           c10::string_view, bool, c10::string_view, c10::ArrayRef<double>)>();
  return op.call(drive, v0, history, indptr, indices, weights, o.v_rest, o.v_reset, o.v_th, o.R, o.tau, o.dt,
                 o.method, o.detach_reset, o.surrogate, o.surrogate_params);
}

}  // namespace brain::ops
