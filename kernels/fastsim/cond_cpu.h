// Torch-free step of a conductance-based group (brain::CondNeuGroup) made of the built-in
// channels, over a block of neurons: every gate moves over the step with V held (exactly, as the op-by-op
// path), then V takes the exponential Euler step with the gates' total conductance. Used by
// CondNeuGroup's one-pass update (csrc/models/channels.cpp) and by the fast engine
// (csrc/dyn/fast_engine.cpp), so both compute the same bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/fastsim/det_exp.h"
#include "kernels/isa.h"

namespace brain::kernels::cond {

enum class Kind : std::uint8_t { Leak, NaHH, KHH, NaTM, KTM, CaT, H, CaPool, KCa };

constexpr int kMaxChannels = 16;
// About ten exps per neuron and step, vectorized: a thread per 256 neurons still pays (COBA-HH
// at N = 1000 steps 1.3x faster than with 1024, and 128 is no faster; measured on 2 cores).
constexpr std::int64_t kNeuronsPerThread = 256;

// One channel's parameters (brain::IonChannel::Kinetics, with the pool and the influx channels
// as indices among the group's channels).
struct Channel {
  Kind kind = Kind::Leak;
  double g = 0, E = 0, V_T = 0;
  double V_sh = 0, phi = 1, phi_q = 1;        // CaT; phi also H and KCa
  double alpha = 0, beta = 0, hill = 0;       // KCa
  double depth = 0, tau = 0, Ca_rest = 0;     // CaPool
  int pool = -1;                              // KCa: its pool
  int n_influx = 0;                           // CaPool: the channels whose current flows in
  int influx[kMaxChannels] = {};
};

// A group's channels and where their gates live. in and out may be the same arrays (each
// neuron reads its gates before it writes them).
template <typename T>
struct Group {
  int n_channels = 0;
  Channel channels[kMaxChannels];
  const T* in[kMaxChannels][2] = {};
  T* out[kMaxChannels][2] = {};
  double C = 1, V_th = 0, dt = 0;
};

inline namespace BRAIN_KERNEL_ISA {

// How many gates a kind keeps (their states, in this order: NaHH/NaTM m, h; KHH/KTM n; CaT p, q;
// H and KCa p; CaPool Ca).
inline int gate_count(Kind kind) {
  switch (kind) {
    case Kind::NaHH: case Kind::NaTM: case Kind::CaT: return 2;
    case Kind::KHH: case Kind::KTM: case Kind::H: case Kind::KCa: case Kind::CaPool: return 1;
    default: return 0;
  }
}

// Scalar twins of csrc/models/hh_rates.h: the same formulas, limits and thresholds. exp and
// expm1 are detmath's (kernels/fastsim/det_exp.h), which vectorize and give the same bits in
// every build of this kernel.
template <typename T>
BRAIN_VECTOR_INLINE T x_over_expm1(T x, T s) {
  return std::abs(x) < T(1e-6) ? s : x / detmath::expm1(x / s);
}
template <typename T>
BRAIN_VECTOR_INLINE T exprel_rate(T x, T scale) {  // scale * x / (1 - exp(-x / 10))
  return std::abs(x) < T(1e-6) ? T(10) * scale : scale * x / (T(1) - detmath::exp(-x / T(10)));
}
template <typename T>
BRAIN_VECTOR_INLINE T relax(T x, T alpha, T beta, T dt) {
  const T rate = alpha + beta, inf = alpha / rate;
  return inf + (x - inf) * detmath::exp(-rate * dt);
}
template <typename T>
BRAIN_VECTOR_INLINE T sigmoid(T x) {
  return T(1) / (T(1) + detmath::exp(-x));
}

// Neurons per block of step_block: its per-gate scratch (16 channels x 2 gates) stays in L1.
constexpr int kLanes = 64;

// Adds channel k's conductance, from its gates x0 and x1, to G and its current to current, for
// m neurons at potentials v (for a calcium pool, which carries no current: nothing).
template <typename T>
BRAIN_VECTOR_INLINE void add_current(const Channel& k, const T* x0, const T* x1, const T* v, int m, T* G, T* current) {
  const T g = static_cast<T>(k.g), E = static_cast<T>(k.E);
#define BRAIN_COND_ADD(conductance)               \
  for (int j = 0; j < m; ++j) {                   \
    const T cond = (conductance);                 \
    G[j] += cond;                                 \
    current[j] -= cond * (v[j] - E);              \
  }
  switch (k.kind) {
    case Kind::NaHH: case Kind::NaTM: BRAIN_COND_ADD(g * (x0[j] * x0[j] * x0[j]) * x1[j]) break;
    case Kind::KHH: case Kind::KTM: BRAIN_COND_ADD(g * (x0[j] * x0[j] * x0[j] * x0[j])) break;
    case Kind::CaT: BRAIN_COND_ADD(g * (x0[j] * x0[j]) * x1[j]) break;
    case Kind::H: BRAIN_COND_ADD(g * x0[j]) break;
    case Kind::KCa: BRAIN_COND_ADD(g * (x0[j] * x0[j])) break;
    case Kind::CaPool: break;
    default: BRAIN_COND_ADD(g) break;  // Leak
  }
#undef BRAIN_COND_ADD
}

// Neurons [i0, i0 + m) (m <= kLanes) over one step from V = v with the current I held: moves and
// stores their gates and writes the new V to v_new. Each channel sees the others' gates as the
// op-by-op path does when it reaches that channel: the old values until a channel has moved,
// the new ones after (a pool reads the current of its influx channels, a KCa channel its
// pool's [Ca], in whichever state they are). Channel by channel over the block, so that each
// loop runs one channel's formulas over neurons and vectorizes; every neuron's arithmetic is
// the same whatever the block, so any split of a population gives the same bits.
template <typename T>
inline void step_block(const Group<T>& grp, std::int64_t i0, int m, const T* v, const T* I, T* v_new) {
  const T dt = static_cast<T>(grp.dt), c = static_cast<T>(grp.C);
  const int n_chans = grp.n_channels;
  T now[kMaxChannels][2][kLanes];
  for (int ch = 0; ch < n_chans; ++ch) {
    for (int g = 0; g < gate_count(grp.channels[ch].kind); ++g) {
      const T* in = grp.in[ch][g] + i0;
      for (int j = 0; j < m; ++j) now[ch][g][j] = in[j];
    }
  }
  T G[kLanes], current[kLanes];
  for (int j = 0; j < m; ++j) G[j] = T(0), current[j] = T(0);
  for (int ci = 0; ci < n_chans; ++ci) {
    const Channel& k = grp.channels[ci];
    const T VT = static_cast<T>(k.V_T);
    T* x0 = now[ci][0];
    T* x1 = now[ci][1];
    switch (k.kind) {
      case Kind::NaHH:
        for (int j = 0; j < m; ++j) {
          x0[j] = relax(x0[j], exprel_rate(v[j] + T(40), T(0.1)), T(4) * detmath::exp(-(v[j] + T(65)) / T(18)), dt);
          x1[j] = relax(x1[j], T(0.07) * detmath::exp(-(v[j] + T(65)) / T(20)),
                        T(1) / (T(1) + detmath::exp(-(v[j] + T(35)) / T(10))), dt);
        }
        break;
      case Kind::KHH:
        for (int j = 0; j < m; ++j) {
          x0[j] = relax(x0[j], exprel_rate(v[j] + T(55), T(0.01)), T(0.125) * detmath::exp(-(v[j] + T(65)) / T(80)),
                        dt);
        }
        break;
      case Kind::NaTM:
        for (int j = 0; j < m; ++j) {
          x0[j] = relax(x0[j], T(0.32) * x_over_expm1(T(13) - v[j] + VT, T(4)),
                        T(0.28) * x_over_expm1(v[j] - VT - T(40), T(5)), dt);
          x1[j] = relax(x1[j], T(0.128) * detmath::exp((T(17) - v[j] + VT) / T(18)),
                        T(4) / (T(1) + detmath::exp((T(40) - v[j] + VT) / T(5))), dt);
        }
        break;
      case Kind::KTM:
        for (int j = 0; j < m; ++j) {
          x0[j] = relax(x0[j], T(0.032) * x_over_expm1(T(15) - v[j] + VT, T(5)),
                        T(0.5) * detmath::exp((T(10) - v[j] + VT) / T(40)), dt);
        }
        break;
      case Kind::CaT: {
        const T sh = static_cast<T>(k.V_sh), phi = static_cast<T>(k.phi), phi_q = static_cast<T>(k.phi_q);
        for (int j = 0; j < m; ++j) {
          const T p_inf = sigmoid((v[j] + T(59) - sh) / T(6.2));
          const T tau_p = (T(1) / (detmath::exp(-(v[j] + T(132) - sh) / T(16.7)) +
                                   detmath::exp((v[j] + T(16.8) - sh) / T(18.2))) +
                           T(0.612)) /
                          phi;
          const T q_inf = sigmoid(-(v[j] + T(83) - sh) / T(4));
          const T u = v[j] - sh;
          // One exp of the branch's argument: e^((u + 467) / 66.6) below -80 mV, else
          // e^(-(u + 22) / 10.5) + 28.
          const bool low = u < T(-80);
          const T e = detmath::exp(low ? (u + T(467)) / T(66.6) : -(u + T(22)) / T(10.5));
          const T tau_q = (low ? e : e + T(28)) / phi_q;
          x0[j] = p_inf + (x0[j] - p_inf) * detmath::exp(-dt / tau_p);
          x1[j] = q_inf + (x1[j] - q_inf) * detmath::exp(-dt / tau_q);
        }
        break;
      }
      case Kind::H: {
        const T phi = static_cast<T>(k.phi);
        for (int j = 0; j < m; ++j) {
          const T p_inf = sigmoid(-(v[j] + T(75)) / T(5.5));
          const T tau =
              T(1) / (detmath::exp(T(-0.086) * v[j] - T(14.59)) + detmath::exp(T(0.0701) * v[j] - T(1.87))) / phi;
          x0[j] = p_inf + (x0[j] - p_inf) * detmath::exp(-dt / tau);
        }
        break;
      }
      case Kind::CaPool: {
        constexpr double kFaraday = 96485.33212;  // C/mol, as CalciumPool::advance
        T inward[kLanes];
        for (int j = 0; j < m; ++j) inward[j] = T(0);
        for (int f = 0; f < k.n_influx; ++f) {
          const int src = k.influx[f];
          T G_src[kLanes], inward_src[kLanes];  // -g (v - E) of the influx channel
          for (int j = 0; j < m; ++j) G_src[j] = T(0), inward_src[j] = T(0);
          add_current(grp.channels[src], now[src][0], now[src][1], v, m, G_src, inward_src);
          for (int j = 0; j < m; ++j) inward[j] = inward[j] + inward_src[j];
        }
        const T per_charge = static_cast<T>(10.0 / (2 * kFaraday * k.depth));
        const T Ca_rest = static_cast<T>(k.Ca_rest), tau = static_cast<T>(k.tau);
        const T decay = static_cast<T>(std::exp(-grp.dt / k.tau));
        for (int j = 0; j < m; ++j) {
          T drive = inward[j] * per_charge;
          drive = drive < T(0) ? T(0) : drive;
          const T Ca_inf = Ca_rest + tau * drive;
          x0[j] = Ca_inf + (x0[j] - Ca_inf) * decay;
        }
        break;
      }
      case Kind::KCa: {
        const T alpha = static_cast<T>(k.alpha), hill = static_cast<T>(k.hill);
        const T phi = static_cast<T>(k.phi), beta = static_cast<T>(k.phi * k.beta);
        const T* Ca = now[k.pool][0];
        for (int j = 0; j < m; ++j) x0[j] = relax(x0[j], phi * (alpha * std::pow(Ca[j], hill)), beta, dt);
        break;
      }
      default:  // Leak
        break;
    }
    for (int g = 0; g < gate_count(k.kind); ++g) {
      T* out = grp.out[ci][g] + i0;
      for (int j = 0; j < m; ++j) out[j] = now[ci][g][j];
    }
    add_current(k, x0, x1, v, m, G, current);
  }
  for (int j = 0; j < m; ++j) {
    const T a = -G[j] / c, ad = a * dt;
    const T phi = std::abs(ad) < T(1e-12) ? dt : detmath::expm1(ad) / a;
    v_new[j] = v[j] + phi * ((I[j] + current[j]) / c);
  }
}

// The spike of a step from v to v_new: an upward crossing of V_th.
template <typename T>
inline bool crossed(T v, T v_new, T th) {
  return std::min(v_new - th, th - v) > T(0);
}

}  // namespace BRAIN_KERNEL_ISA

}  // namespace brain::kernels::cond
