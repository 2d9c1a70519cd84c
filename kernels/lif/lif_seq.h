// Fused multi-step LIF with a surrogate-gradient backward (brain::lif_sequence), torch-free so
// the same element math runs in the CPU loops here and in the CUDA kernels (lif_kernels.cu).
//
// Every neuron m (a column of the [T, M] input) is independent. With u_0 = v0[m]:
//   v_t  = integrate(u_{t-1}, I_t)                 the membrane before the threshold
//            exp_euler: vinf = v_rest + R I;  v_t = vinf + (u - vinf) * decay,  decay = e^{-dt/tau}
//            euler:     v_t = u + (-(u - v_rest) + R I) * (dt / tau)
//   x_t  = (v_t - v_th) / (v_th - v_reset);  s_t = (x_t > 0)          the spike, 0 or 1
//   u_t  = detach_reset ? (s_t ? v_reset : v_t) : v_t + (v_reset - v_t) * s_t
// outputs spikes s_t and v_last = u_T. Each expression rounds in the same order as brain::LIF's
// tensor ops, so the spikes equal the unfused module's bit for bit.
//
// The backward needs only v_t (saved as v_pre [T, M]); spikes are recomputed from it. With
// gu = dL/du_T = grad_v_last, for t = T .. 1:
//   gs  = grad_spikes_t (+ gu (v_reset - v_t) when the reset is differentiated)
//   gv  = (detach_reset ? (s_t ? 0 : gu) : gu (1 - s_t)) + gs * surrogate'(x_t) / (v_th - v_reset)
//   grad_input_t = gv * dv/dI   (R (1 - decay), or R dt/tau)
//   gu  = gv * dv/du            (decay, or 1 - dt/tau)
// and grad_v0 = gu. The surrogate derivatives are those of brain::surrogate_grad.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define BRAIN_LIF_HD __host__ __device__ __forceinline__
#else
#define BRAIN_LIF_HD inline
#endif

namespace brain::kernels::lif {

// Same order as brain::Surrogate::Kind.
enum class SurrogateKind : std::int32_t {
  kSigmoid = 0, kArctan, kPiecewiseQuadratic, kPiecewiseExp, kSoftSign, kErf, kInvSquare,
  kGaussian, kMultiGaussian, kLeakyRelu, kReluGrad
};

// Model constants, in double; the loops cast them to the data's type as ATen casts scalars.
struct LifConstants {
  double v_rest = 0, v_reset = 0, v_th = 1, R = 1;
  double decay = 0;        // exp(-dt / tau), exp_euler
  double dt_over_tau = 0;  // euler
  bool exp_euler = true;
  bool detach_reset = true;
  SurrogateKind kind = SurrogateKind::kSigmoid;
  double alpha = 4, beta = 1, sigma = 0.5, h = 0.15, s = 6, scale = 0.5, width = 1;
};

template <typename T>
struct Typed {
  T v_rest, v_reset, v_th, R, decay, dt_over_tau, denom, dv_du, dv_dI;
  bool exp_euler, detach_reset;
  SurrogateKind kind;
  T alpha, beta, sigma, h, s, scale, width;

  BRAIN_LIF_HD explicit Typed(const LifConstants& c)
      : v_rest(T(c.v_rest)), v_reset(T(c.v_reset)), v_th(T(c.v_th)), R(T(c.R)), decay(T(c.decay)),
        dt_over_tau(T(c.dt_over_tau)), denom(T(c.v_th - c.v_reset)),
        dv_du(T(c.exp_euler ? c.decay : 1.0 - c.dt_over_tau)),
        dv_dI(T(c.exp_euler ? c.R * (1.0 - c.decay) : c.R * c.dt_over_tau)),
        exp_euler(c.exp_euler), detach_reset(c.detach_reset), kind(c.kind), alpha(T(c.alpha)),
        beta(T(c.beta)), sigma(T(c.sigma)), h(T(c.h)), s(T(c.s)), scale(T(c.scale)),
        width(T(c.width)) {}

  BRAIN_LIF_HD T integrate(T u, T input) const {
    if (exp_euler) {
      const T vinf = v_rest + R * input;
      return vinf + (u - vinf) * decay;
    }
    return u + (-(u - v_rest) + R * input) * dt_over_tau;
  }
  BRAIN_LIF_HD T scaled(T v) const { return (v - v_th) / denom; }
  BRAIN_LIF_HD T reset(T v, bool spike) const {
    if (detach_reset) return spike ? v_reset : v;
    return v + (v_reset - v) * (spike ? T(1) : T(0));
  }
};

template <typename T>
BRAIN_LIF_HD T normal_pdf(T x, T mu, T sigma) {
  using std::exp;
  const T kSqrt2Pi = T(2.5066282746310002);
  return exp(-(x - mu) * (x - mu) / (T(2) * sigma * sigma)) / (kSqrt2Pi * sigma);
}

template <typename T>
BRAIN_LIF_HD T surrogate_derivative(const Typed<T>& c, T x) {
  using std::exp;
  using std::fabs;
  const T a = c.alpha;
  switch (c.kind) {
    case SurrogateKind::kSigmoid: {
      const T sg = T(1) / (T(1) + exp(-(a * x)));
      return a * sg * (T(1) - sg);
    }
    case SurrogateKind::kArctan: {
      const T y = T(1.5707963267948966) * a * x;
      return (a / T(2)) / (T(1) + y * y);
    }
    case SurrogateKind::kPiecewiseQuadratic: {
      const T y = a - a * a * fabs(x);
      return y > T(0) ? y : T(0);
    }
    case SurrogateKind::kPiecewiseExp: return (a / T(2)) * exp(-a * fabs(x));
    case SurrogateKind::kSoftSign: {
      const T y = T(1) + a * fabs(x);
      return a / (T(2) * y * y);
    }
    case SurrogateKind::kErf: return (a / T(1.7724538509055159)) * exp(-(a * x) * (a * x));
    case SurrogateKind::kInvSquare: {
      const T y = a * fabs(x) + T(1);
      return T(1) / (y * y);
    }
    case SurrogateKind::kGaussian: return a * normal_pdf(x, T(0), c.sigma);
    case SurrogateKind::kMultiGaussian:
      return c.scale * ((T(1) + c.h) * normal_pdf(x, T(0), c.sigma) -
                        c.h * normal_pdf(x, c.sigma, c.s * c.sigma) -
                        c.h * normal_pdf(x, -c.sigma, c.s * c.sigma));
    case SurrogateKind::kLeakyRelu: return x >= T(0) ? c.beta : a;
    case SurrogateKind::kReluGrad: {
      const T y = c.width - fabs(x);
      return a * (y > T(0) ? y : T(0));
    }
  }
  return T(0);
}

// One backward step for one neuron: returns gv (dL/dv_t) and updates gu to dL/du_{t-1}.
template <typename T>
BRAIN_LIF_HD T backward_step(const Typed<T>& c, T v, T grad_spike, T& gu) {
  const T x = c.scaled(v);
  const bool spike = x > T(0);
  T gs = grad_spike;
  // Both resets pass gu where there was no spike; the differentiated one also sends it
  // through the spike's surrogate (du/ds = v_reset - v, spike or not).
  T gv = spike ? T(0) : gu;
  if (!c.detach_reset) gs += gu * (c.v_reset - v);
  gv += gs * surrogate_derivative(c, x) / c.denom;
  gu = gv * c.dv_du;
  return gv;
}

// CPU loops over neurons [begin, end) of a [T, M] problem (row-major, contiguous). v_pre may
// be null (inference: nothing saved).
template <typename T>
void forward_cpu(const LifConstants& constants, const T* input, const T* v0, T* spikes, T* v_last,
                 T* v_pre, std::int64_t T_steps, std::int64_t M, std::int64_t begin, std::int64_t end) {
  const Typed<T> c(constants);
  constexpr std::int64_t kBlock = 256;
  T u[kBlock];
  for (std::int64_t b0 = begin; b0 < end; b0 += kBlock) {
    const std::int64_t n = (end - b0) < kBlock ? (end - b0) : kBlock;
    for (std::int64_t j = 0; j < n; ++j) u[j] = v0[b0 + j];
    for (std::int64_t t = 0; t < T_steps; ++t) {
      const std::int64_t row = t * M + b0;
      for (std::int64_t j = 0; j < n; ++j) {
        const T v = c.integrate(u[j], input[row + j]);
        const bool spike = c.scaled(v) > T(0);
        if (v_pre != nullptr) v_pre[row + j] = v;
        spikes[row + j] = spike ? T(1) : T(0);
        u[j] = c.reset(v, spike);
      }
    }
    for (std::int64_t j = 0; j < n; ++j) v_last[b0 + j] = u[j];
  }
}

// grad_spikes [T, M] and grad_v_last [M] (zeros where the loss does not use an output).
template <typename T>
void backward_cpu(const LifConstants& constants, const T* grad_spikes, const T* grad_v_last,
                  const T* v_pre, T* grad_input, T* grad_v0, std::int64_t T_steps, std::int64_t M,
                  std::int64_t begin, std::int64_t end) {
  const Typed<T> c(constants);
  constexpr std::int64_t kBlock = 256;
  T gu[kBlock];
  for (std::int64_t b0 = begin; b0 < end; b0 += kBlock) {
    const std::int64_t n = (end - b0) < kBlock ? (end - b0) : kBlock;
    for (std::int64_t j = 0; j < n; ++j) gu[j] = grad_v_last[b0 + j];
    for (std::int64_t t = T_steps - 1; t >= 0; --t) {
      const std::int64_t row = t * M + b0;
      for (std::int64_t j = 0; j < n; ++j) {
        const T gv = backward_step(c, v_pre[row + j], grad_spikes[row + j], gu[j]);
        grad_input[row + j] = gv * c.dv_dI;
      }
    }
    for (std::int64_t j = 0; j < n; ++j) grad_v0[b0 + j] = gu[j];
  }
}

}  // namespace brain::kernels::lif
