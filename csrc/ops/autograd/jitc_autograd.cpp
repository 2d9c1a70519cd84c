// Autograd kernels of the JIT matmuls. Both ops are one linear map in x and in the weight
// parameters (SPEC section 1), so they share brain::_jitc_matmul_backward. prob and seed are
// not tensors, so they cannot be asked for gradients. The backward op is differentiable too
// (double backward: gradient penalties, Hessian-vector products), by the identities below.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>
#include <c10/core/SymIntArrayRef.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

namespace brain::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using MatmulSig = at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t,
                             c10::SymIntArrayRef, c10::string_view, bool);
using BackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                       const at::Tensor&, double, int64_t,
                                                       c10::SymIntArrayRef, c10::string_view,
                                                       bool, std::array<bool, 2>);

template <bool kEvent>
class JitcMatmulFunction : public torch::autograd::Function<JitcMatmulFunction<kEvent>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            double prob, int64_t seed, c10::SymIntArrayRef shape,
                            c10::string_view dist, bool transpose) {
    static auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow(kEvent ? "brain::event_jitc_matmul" : "brain::jitc_matmul", "")
            .typed<MatmulSig>();
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = op.call(x, weight, prob, seed, shape, dist, transpose);
    }
    ctx->save_for_backward({x, weight});
    ctx->saved_data["prob"] = prob;
    ctx->saved_data["seed"] = seed;
    ctx->saved_data["n_rows"] = shape[0];
    ctx->saved_data["n_cols"] = shape[1];
    ctx->saved_data["dist"] = std::string(dist.data(), dist.size());
    ctx->saved_data["transpose"] = transpose;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("brain::_jitc_matmul_backward", "")
                         .typed<BackwardSig>();
    const auto saved = ctx->get_saved_variables();
    const std::array<c10::SymInt, 2> shape = {ctx->saved_data["n_rows"].toSymInt(),
                                              ctx->saved_data["n_cols"].toSymInt()};
    const std::array<bool, 2> mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1)};
    at::Tensor grad_x, grad_w;
    if (mask[0] || mask[1]) {
      const std::string dist = ctx->saved_data["dist"].toStringRef();
      std::tie(grad_x, grad_w) =
          op.call(grad_outputs[0], saved[0], saved[1], ctx->saved_data["prob"].toDouble(),
                  ctx->saved_data["seed"].toInt(), shape, dist,
                  ctx->saved_data["transpose"].toBool(), mask);
    }
    return {grad_x, grad_w, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

c10::TypedOperatorHandle<MatmulSig>& plain_matmul() {
  static auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("brain::jitc_matmul", "").typed<MatmulSig>();
  return op;
}

c10::TypedOperatorHandle<BackwardSig>& backward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("brain::_jitc_matmul_backward", "")
                       .typed<BackwardSig>();
  return op;
}

// A is linear in its parameters: A(c) = sum_k c_k B_k with bases B_k = dA/dparam_k (homo: M;
// uniform: (1-U)M, UM; normal: M, ZM). Returns B(c) applied to x, for any coefficients c
// shaped like weight, built from parameter vectors the op accepts (high >= low, std >= 0):
// uniform: c0 (1-U)M + c1 UM = c0 A(1, 1) + (c1 - c0) A(0, 1); normal: c0 A(1, 0) + c1 A(0, 1).
at::Tensor basis_matmul(const at::Tensor& x, const at::Tensor& coeff, double prob, int64_t seed,
                        c10::SymIntArrayRef shape, c10::string_view dist, bool transpose) {
  const auto c = coeff.reshape({-1});
  const auto opts = coeff.options().requires_grad(false);
  auto apply = [&](std::vector<double> params) {
    at::Tensor w = at::tensor(params, opts.dtype(at::kDouble)).to(coeff.scalar_type());
    if (params.size() == 1) w = w.reshape(coeff.sizes());
    return plain_matmul().call(x, w, prob, seed, shape, dist, transpose);
  };
  const std::string_view d(dist.data(), dist.size());
  if (d == "homo") return c[0] * apply({1.0});
  if (d == "uniform") return c[0] * apply({1.0, 1.0}) + (c[1] - c[0]) * apply({0.0, 1.0});
  return c[0] * apply({1.0, 0.0}) + c[1] * apply({0.0, 1.0});
}

class JitcBackwardFunction : public torch::autograd::Function<JitcBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_out,
                               const at::Tensor& x, const at::Tensor& weight, double prob,
                               int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist,
                               bool transpose, std::array<bool, 2> mask) {
    at::Tensor grad_x, grad_w;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(grad_x, grad_w) =
          backward_op().call(grad_out, x, weight, prob, seed, shape, dist, transpose, mask);
    }
    // A custom Function cannot return undefined tensors: empty placeholders stand for the
    // outputs not asked for, and the wrapper below turns them back into undefined ones.
    if (!grad_x.defined()) grad_x = at::empty({0}, weight.options());
    if (!grad_w.defined()) grad_w = at::empty({0}, weight.options());
    ctx->saved_data["mask_x"] = mask[0];
    ctx->saved_data["mask_w"] = mask[1];
    ctx->save_for_backward({grad_out, x, weight});
    ctx->saved_data["prob"] = prob;
    ctx->saved_data["seed"] = seed;
    ctx->saved_data["n_rows"] = shape[0];
    ctx->saved_data["n_cols"] = shape[1];
    ctx->saved_data["dist"] = std::string(dist.data(), dist.size());
    ctx->saved_data["transpose"] = transpose;
    return {grad_x, grad_w};
  }

  // grad_x = A(w)^{T-op} g and grad_w_k = <g, B_k-op x>, so with upstream (gx, gw):
  //   d/dg = A(w)-op gx + B(gw)-op x,  d/dx = B(gw)^{T-op} g,  d/dw = <gx, dA/dw^{T-op} g>.
  static variable_list backward(AutogradContext* ctx, variable_list upstream) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& g = saved[0];
    const at::Tensor& x = saved[1];
    const at::Tensor& weight = saved[2];
    const double prob = ctx->saved_data["prob"].toDouble();
    const int64_t seed = ctx->saved_data["seed"].toInt();
    const std::array<c10::SymInt, 2> shape = {ctx->saved_data["n_rows"].toSymInt(),
                                              ctx->saved_data["n_cols"].toSymInt()};
    const std::string dist = ctx->saved_data["dist"].toStringRef();
    const bool transpose = ctx->saved_data["transpose"].toBool();
    const at::Tensor gx = ctx->saved_data["mask_x"].toBool() ? upstream[0] : at::Tensor();
    const at::Tensor gw = ctx->saved_data["mask_w"].toBool() ? upstream[1] : at::Tensor();
    at::Tensor d_g, d_x, d_w;
    if (ctx->needs_input_grad(0)) {
      if (gx.defined()) d_g = plain_matmul().call(gx, weight, prob, seed, shape, dist, transpose);
      if (gw.defined()) {
        at::Tensor t = basis_matmul(x, gw, prob, seed, shape, dist, transpose);
        d_g = d_g.defined() ? d_g + t : t;
      }
    }
    if (ctx->needs_input_grad(1) && gw.defined()) {
      d_x = basis_matmul(g, gw, prob, seed, shape, dist, !transpose);
    }
    if (ctx->needs_input_grad(2) && gx.defined()) {
      d_w = std::get<1>(backward_op().call(gx, g, weight, prob, seed, shape, dist, !transpose,
                                           {false, true}));
    }
    return {d_g, d_x, d_w, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> jitc_matmul_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight, double prob,
    int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist, bool transpose,
    std::array<bool, 2> output_mask) {
  // A first-order backward runs without grad mode: no node to record, so none of a custom
  // Function's bookkeeping (about 10 us a call).
  if (!at::GradMode::is_enabled() || !(grad_out.requires_grad() || x.requires_grad() || weight.requires_grad())) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return backward_op().call(grad_out, x, weight, prob, seed, shape, dist, transpose, output_mask);
  }
  auto out = JitcBackwardFunction::apply(grad_out, x, weight, prob, seed, shape, dist, transpose,
                                         output_mask);
  return {output_mask[0] ? out[0] : at::Tensor(), output_mask[1] ? out[1] : at::Tensor()};
}

// The gradient of <G, A(weight)> with respect to the weight parameters, given
// inner(params) = <G, A(params)> for a parameter vector the ops accept: A is linear in its
// parameters (basis_matmul's identities), so gradient k is <G, B_k> with B_k = dA/dparam_k.
// inner is built from torch ops on G, so the gradient differentiates again in G.
template <typename Inner>
at::Tensor basis_gradient(const at::Tensor& weight, c10::string_view dist, Inner&& inner) {
  const auto opts = weight.options().requires_grad(false);
  auto params = [&](std::vector<double> values) {
    at::Tensor w = at::tensor(values, opts.dtype(at::kDouble)).to(weight.scalar_type());
    return values.size() == 1 ? w.reshape(weight.sizes()) : w;
  };
  const std::string_view d(dist.data(), dist.size());
  if (d == "homo") return inner(params({1.0})).reshape(weight.sizes());
  const at::Tensor second = inner(params({0.0, 1.0}));  // <G, U M> or <G, Z M>
  const at::Tensor first = d == "uniform" ? inner(params({1.0, 1.0})) - second  // <G, (1 - U) M>
                                          : inner(params({1.0, 0.0}));          // <G, M>
  return at::stack({first, second});
}

using MaterializeSig = at::Tensor(const at::Tensor&, double, int64_t, c10::SymIntArrayRef, c10::string_view);
using ToCsrSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, double, int64_t,
                                                                c10::SymIntArrayRef, c10::string_view);

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

void save_generator(AutogradContext* ctx, double prob, int64_t seed, c10::SymIntArrayRef shape,
                    c10::string_view dist) {
  ctx->saved_data["prob"] = prob;
  ctx->saved_data["seed"] = seed;
  ctx->saved_data["n_rows"] = shape[0];
  ctx->saved_data["n_cols"] = shape[1];
  ctx->saved_data["dist"] = std::string(dist.data(), dist.size());
}

// What save_generator kept.
struct SavedGenerator {
  double prob;
  int64_t seed;
  std::array<c10::SymInt, 2> shape;
  std::string dist;
};

SavedGenerator load_generator(AutogradContext* ctx) {
  return {ctx->saved_data["prob"].toDouble(), ctx->saved_data["seed"].toInt(),
          {ctx->saved_data["n_rows"].toSymInt(), ctx->saved_data["n_cols"].toSymInt()},
          ctx->saved_data["dist"].toStringRef()};
}

// The dense A(weight), as a function of the weight: d/dweight of <G, A> (basis_gradient).
class JitcMaterializeFunction : public torch::autograd::Function<JitcMaterializeFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& weight, double prob, int64_t seed,
                            c10::SymIntArrayRef shape, c10::string_view dist) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = materialize_op().call(weight, prob, seed, shape, dist);
    }
    ctx->save_for_backward({weight});
    save_generator(ctx, prob, seed, shape, dist);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor weight = ctx->get_saved_variables()[0];
    const SavedGenerator gen = load_generator(ctx);
    const at::Tensor& g = grads[0];
    at::Tensor grad_w = basis_gradient(weight, gen.dist, [&](const at::Tensor& params) {
      return (g * materialize_op().call(params, gen.prob, gen.seed, gen.shape, gen.dist)).sum();
    });
    return {grad_w, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// The CSR copy of A(weight): its values are differentiable in the weight (the pattern is not).
class JitcToCsrFunction : public torch::autograd::Function<JitcToCsrFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& weight, double prob, int64_t seed,
                               c10::SymIntArrayRef shape, c10::string_view dist) {
    at::Tensor indptr, indices, values;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(indptr, indices, values) = to_csr_op().call(weight, prob, seed, shape, dist);
    }
    ctx->mark_non_differentiable({indptr, indices});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({weight});
    save_generator(ctx, prob, seed, shape, dist);
    return {indptr, indices, values};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& g = grads[2];
    if (!g.defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    const at::Tensor weight = ctx->get_saved_variables()[0];
    const SavedGenerator gen = load_generator(ctx);
    // The basis values come in the same entry order as the forward's (the pattern depends on
    // prob, seed and shape only).
    at::Tensor grad_w = basis_gradient(weight, gen.dist, [&](const at::Tensor& params) {
      return (g * std::get<2>(to_csr_op().call(params, gen.prob, gen.seed, gen.shape, gen.dist))).sum();
    });
    return {grad_w, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor jitc_materialize_autograd(const at::Tensor& weight, double prob, int64_t seed,
                                     c10::SymIntArrayRef shape, c10::string_view dist) {
  return JitcMaterializeFunction::apply(weight, prob, seed, shape, dist);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> jitc_to_csr_autograd(const at::Tensor& weight, double prob,
                                                                    int64_t seed, c10::SymIntArrayRef shape,
                                                                    c10::string_view dist) {
  auto out = JitcToCsrFunction::apply(weight, prob, seed, shape, dist);
  return {out[0], out[1], out[2]};
}

template <bool kEvent>
at::Tensor jitc_matmul_autograd(const at::Tensor& x, const at::Tensor& weight, double prob,
                                int64_t seed, c10::SymIntArrayRef shape, c10::string_view dist,
                                bool transpose) {
  return JitcMatmulFunction<kEvent>::apply(x, weight, prob, seed, shape, dist, transpose);
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
