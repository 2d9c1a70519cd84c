// Schemas, shared checks and C++ API of the fused LIF op family (kernels/lif/lif_seq.h).
// Kernels: csrc/ops/{cpu,cuda,meta,autograd}/lif_*.cpp.
#include <brain/ops.h>

#include <cmath>
#include <string>

#include <ATen/TensorOperators.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <brain/models/surrogate.h>

#include "csrc/ops/lif_common.h"

TORCH_LIBRARY_FRAGMENT(brain, m) {
  m.def("lif_sequence(Tensor input, Tensor v0, float v_rest, float v_reset, float v_th, float R, "
        "float tau, float dt, str method=\"exp_euler\", bool detach_reset=True, "
        "str surrogate=\"sigmoid\", float[] surrogate_params=[]) -> (Tensor spikes, Tensor v_last)");
  // The forward that also returns what the backward needs: v_pre, the membrane before each
  // threshold, [T, ...].
  m.def("_lif_sequence_forward(Tensor input, Tensor v0, float v_rest, float v_reset, float v_th, "
        "float R, float tau, float dt, str method, bool detach_reset, str surrogate, "
        "float[] surrogate_params) -> (Tensor spikes, Tensor v_last, Tensor v_pre)");
  m.def("_lif_sequence_backward(Tensor grad_spikes, Tensor grad_v_last, Tensor v_pre, float v_rest, "
        "float v_reset, float v_th, float R, float tau, float dt, str method, bool detach_reset, "
        "str surrogate, float[] surrogate_params) -> (Tensor grad_input, Tensor grad_v0)");
  // The per-step factors of the fused LIF ops' forward-mode derivatives (csrc/ops/autograd/
  // lif_tangent.h), from the membrane before each threshold: ds_dv = surrogate'(x) / (v_th - v_reset)
  // and du_dv, the reset's derivative. Elementwise; first order only (its Autograd kernel).
  m.def("_lif_tangent_coefficients(Tensor v_pre, float v_reset, float v_th, bool detach_reset, str surrogate, "
        "float[] surrogate_params) -> (Tensor ds_dv, Tensor du_dv)");
}

namespace brain::ops {

namespace detail {

Surrogate checked_surrogate(const char* op, std::string_view surrogate, c10::ArrayRef<double> surrogate_params) {
  TORCH_CHECK(surrogate_params.empty() || surrogate_params.size() == 7, op,
              ": surrogate_params must be empty (the surrogate's defaults) or hold 7 values "
              "(alpha, beta, sigma, h, s, scale, width), got ", surrogate_params.size());
  for (double p : surrogate_params) TORCH_CHECK(std::isfinite(p), op, ": surrogate_params must be finite");
  Surrogate s = Surrogate::named(std::string(surrogate));
  if (!surrogate_params.empty()) {
    s.alpha = surrogate_params[0];
    s.beta = surrogate_params[1];
    s.sigma = surrogate_params[2];
    s.h = surrogate_params[3];
    s.s = surrogate_params[4];
    s.scale = surrogate_params[5];
    s.width = surrogate_params[6];
  }
  return s;
}

void check_threshold(const char* op, double v_reset, double v_th) {
  TORCH_CHECK(v_th > v_reset, op, ": v_th (", v_th, ") must be above v_reset (", v_reset, ")");
}

kernels::lif::LifConstants lif_constants(const char* op, double v_rest, double v_reset, double v_th,
                                         double R, double tau, double dt, std::string_view method,
                                         bool detach_reset, std::string_view surrogate,
                                         c10::ArrayRef<double> surrogate_params) {
  TORCH_CHECK(std::isfinite(v_rest) && std::isfinite(v_reset) && std::isfinite(v_th) && std::isfinite(R),
              op, ": v_rest, v_reset, v_th and R must be finite");
  TORCH_CHECK(std::isfinite(tau) && tau > 0, op, ": tau must be > 0 (ms), got ", tau);
  TORCH_CHECK(std::isfinite(dt) && dt > 0, op, ": dt must be > 0 (ms), got ", dt);
  check_threshold(op, v_reset, v_th);
  TORCH_CHECK(method == "exp_euler" || method == "euler", op, ": method must be 'exp_euler' or 'euler', got '",
              method, "'");
  const Surrogate s = checked_surrogate(op, surrogate, surrogate_params);
  kernels::lif::LifConstants c;
  c.v_rest = v_rest;
  c.v_reset = v_reset;
  c.v_th = v_th;
  c.R = R;
  c.exp_euler = method == "exp_euler";
  c.decay = std::exp(-dt / tau);
  c.dt_over_tau = dt / tau;
  c.detach_reset = detach_reset;
  c.kind = static_cast<kernels::lif::SurrogateKind>(static_cast<int>(s.kind));
  c.alpha = s.alpha;
  c.beta = s.beta;
  c.sigma = s.sigma;
  c.h = s.h;
  c.s = s.s;
  c.scale = s.scale;
  c.width = s.width;
  return c;
}

void check_lif_tensors(const char* op, const at::Tensor& input, const at::Tensor& v0) {
  TORCH_CHECK(input.defined() && v0.defined(), op, ": input and v0 are required");
  TORCH_CHECK(input.dim() >= 1, op, ": input must be [T, ...] (time first), got a 0-d tensor");
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble, op,
              ": input must be float32 or float64, got ", input.scalar_type());
  TORCH_CHECK(v0.scalar_type() == input.scalar_type(), op, ": v0 must have input's dtype ",
              input.scalar_type(), ", got ", v0.scalar_type());
  TORCH_CHECK(v0.device() == input.device(), op, ": v0 is on ", v0.device(), " but input on ", input.device());
  TORCH_CHECK(v0.sym_sizes() == input.sym_sizes().slice(1), op,
              ": v0 must have input's shape without the time dimension, ", input.sym_sizes().slice(1),
              ", got ", v0.sym_sizes());
}

void check_lif_backward_tensors(const char* op, const at::Tensor& grad_spikes, const at::Tensor& grad_v_last,
                                const at::Tensor& v_pre) {
  check_lif_tensors(op, v_pre, grad_v_last);
  TORCH_CHECK(grad_spikes.scalar_type() == v_pre.scalar_type() && grad_spikes.device() == v_pre.device() &&
                  grad_spikes.sym_sizes() == v_pre.sym_sizes(),
              op, ": grad_spikes must match v_pre (", v_pre.sym_sizes(), ", ", v_pre.scalar_type(), ")");
}

}  // namespace detail

namespace {

// Written with ops (CompositeImplicitAutograd: every device, and autograd and forward mode
// through them), from brain::surrogate_grad, the derivative lif_seq.h's backward uses. With
// x = (v - v_th) / (v_th - v_reset) and the spike s = (x > 0) (NaN: no spike, as the kernels
// decide):
//   ds/dv = surrogate'(x) / (v_th - v_reset)
//   du/dv = detach_reset ? 1 - s : (1 - s) + (v_reset - v) ds/dv     (u: the membrane after the reset)
// Differentiated again (the LIF ops' second derivatives), these are the module path's: s is
// brain::spike, whose derivative is the surrogate's, where the reset uses it (detach_reset
// false); with detach_reset the reset is a comparison, as brain::LIF's torch::where.
std::tuple<at::Tensor, at::Tensor> lif_tangent_coefficients(const at::Tensor& v_pre, double v_reset, double v_th,
                                                            bool detach_reset, c10::string_view surrogate,
                                                            c10::ArrayRef<double> params) {
  static auto spike_op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("brain::spike", "")
                             .typed<at::Tensor(const at::Tensor&, c10::string_view, c10::ArrayRef<double>)>();
  const char* op = "brain::_lif_tangent_coefficients";
  TORCH_CHECK(v_pre.scalar_type() == at::kFloat || v_pre.scalar_type() == at::kDouble, op,
              ": v_pre must be float32 or float64, got ", v_pre.scalar_type());
  TORCH_CHECK(std::isfinite(v_reset) && std::isfinite(v_th), op, ": v_reset and v_th must be finite");
  detail::check_threshold(op, v_reset, v_th);
  const Surrogate s = detail::checked_surrogate(op, surrogate, params);
  const double denom = v_th - v_reset;
  const at::Tensor x = (v_pre - v_th) / denom;
  const at::Tensor ds_dv = surrogate_grad(x, s) / denom;
  if (detach_reset) return {ds_dv, (x > 0).logical_not().to(v_pre.scalar_type())};
  return {ds_dv, 1 - spike_op.call(x, surrogate, params) + (v_reset - v_pre) * ds_dv};
}

}  // namespace

TORCH_LIBRARY_IMPL(brain, CompositeImplicitAutograd, m) {
  m.impl("_lif_tangent_coefficients", &lif_tangent_coefficients);
}

std::tuple<at::Tensor, at::Tensor> lif_sequence(const at::Tensor& input, const at::Tensor& v0,
                                                const LifSequenceOptions& o) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::lif_sequence", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, double, double, double, double, double,
                           double, c10::string_view, bool, c10::string_view, c10::ArrayRef<double>)>();
  return op.call(input, v0, o.v_rest, o.v_reset, o.v_th, o.R, o.tau, o.dt, o.method, o.detach_reset,
                 o.surrogate, o.surrogate_params);
}

}  // namespace brain::ops
