// Torch-free one-neuron step of a conductance-based group (brain::CondNeuGroup) made of the
// built-in channels: every gate moves over the step with V held (exactly, as the op-by-op
// path), then V takes the exponential Euler step with the gates' total conductance. Used by
// CondNeuGroup's one-pass update (csrc/models/channels.cpp) and by the fast engine
// (csrc/dyn/fast_engine.cpp), so both compute the same bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace brain::kernels::cond {

enum class Kind : std::uint8_t { Leak, NaHH, KHH, NaTM, KTM, CaT, H, CaPool, KCa };

constexpr int kMaxChannels = 16;
// About ten transcendental functions per neuron: a thread per 256 neurons is worth it (COBA-HH
// at N = 1000 steps 20% faster than with 1024, measured on 2 cores).
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

// How many gates a kind keeps (their states, in this order: NaHH/NaTM m, h; KHH/KTM n; CaT p, q;
// H and KCa p; CaPool Ca).
inline int gate_count(Kind kind) {
  switch (kind) {
    case Kind::NaHH: case Kind::NaTM: case Kind::CaT: return 2;
    case Kind::KHH: case Kind::KTM: case Kind::H: case Kind::KCa: case Kind::CaPool: return 1;
    default: return 0;
  }
}

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

// Scalar twins of csrc/models/hh_rates.h: the same formulas, limits and thresholds.
template <typename T>
inline T x_over_expm1(T x, T s) {
  return std::abs(x) < T(1e-6) ? s : x / std::expm1(x / s);
}
template <typename T>
inline T exprel_rate(T x, T scale) {  // scale * x / (1 - exp(-x / 10))
  return std::abs(x) < T(1e-6) ? T(10) * scale : scale * x / (T(1) - std::exp(-x / T(10)));
}
template <typename T>
inline T relax(T x, T alpha, T beta, T dt) {
  const T rate = alpha + beta, inf = alpha / rate;
  return inf + (x - inf) * std::exp(-rate * dt);
}
template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// A channel's conductance from its gates (0 for a calcium pool, which carries no current).
template <typename T>
inline T conductance_of(const Channel& k, const T* x) {
  const T g = static_cast<T>(k.g);
  switch (k.kind) {
    case Kind::NaHH: case Kind::NaTM: return g * (x[0] * x[0] * x[0]) * x[1];
    case Kind::KHH: case Kind::KTM: return g * (x[0] * x[0] * x[0] * x[0]);
    case Kind::CaT: return g * (x[0] * x[0]) * x[1];
    case Kind::H: return g * x[0];
    case Kind::KCa: return g * (x[0] * x[0]);
    case Kind::CaPool: return T(0);
    default: return g;  // Leak
  }
}

// Neuron i over one step from V = v with the current I held: moves and stores its gates,
// returns the new V. Each channel sees the others' gates as the op-by-op path does when it
// reaches that channel: the old values until a channel has moved, the new ones after (a pool
// reads the current of its influx channels, a KCa channel its pool's [Ca], in whichever state
// they are).
template <typename T>
inline T step_neuron(const Group<T>& grp, std::int64_t i, T v, T I) {
  const T dt = static_cast<T>(grp.dt), c = static_cast<T>(grp.C);
  const int n_chans = grp.n_channels;
  T now[kMaxChannels][2];
  for (int ch = 0; ch < n_chans; ++ch) {
    for (int g = 0; g < 2; ++g) now[ch][g] = grp.in[ch][g] ? grp.in[ch][g][i] : T(0);
  }
  T G = 0, current = 0;
  for (int ci = 0; ci < n_chans; ++ci) {
    const Channel& k = grp.channels[ci];
    const T VT = static_cast<T>(k.V_T);
    T* x = now[ci];
    switch (k.kind) {
      case Kind::NaHH:
        x[0] = relax(x[0], exprel_rate(v + T(40), T(0.1)), T(4) * std::exp(-(v + T(65)) / T(18)), dt);
        x[1] = relax(x[1], T(0.07) * std::exp(-(v + T(65)) / T(20)), T(1) / (T(1) + std::exp(-(v + T(35)) / T(10))),
                     dt);
        break;
      case Kind::KHH:
        x[0] = relax(x[0], exprel_rate(v + T(55), T(0.01)), T(0.125) * std::exp(-(v + T(65)) / T(80)), dt);
        break;
      case Kind::NaTM:
        x[0] = relax(x[0], T(0.32) * x_over_expm1(T(13) - v + VT, T(4)), T(0.28) * x_over_expm1(v - VT - T(40), T(5)),
                     dt);
        x[1] = relax(x[1], T(0.128) * std::exp((T(17) - v + VT) / T(18)),
                     T(4) / (T(1) + std::exp((T(40) - v + VT) / T(5))), dt);
        break;
      case Kind::KTM:
        x[0] = relax(x[0], T(0.032) * x_over_expm1(T(15) - v + VT, T(5)), T(0.5) * std::exp((T(10) - v + VT) / T(40)),
                     dt);
        break;
      case Kind::CaT: {
        const T sh = static_cast<T>(k.V_sh);
        const T p_inf = sigmoid((v + T(59) - sh) / T(6.2));
        const T tau_p =
            (T(1) / (std::exp(-(v + T(132) - sh) / T(16.7)) + std::exp((v + T(16.8) - sh) / T(18.2))) + T(0.612)) /
            static_cast<T>(k.phi);
        const T q_inf = sigmoid(-(v + T(83) - sh) / T(4));
        const T u = v - sh;
        const T tau_q =
            (u < T(-80) ? std::exp((u + T(467)) / T(66.6)) : std::exp(-(u + T(22)) / T(10.5)) + T(28)) /
            static_cast<T>(k.phi_q);
        x[0] = p_inf + (x[0] - p_inf) * std::exp(-dt / tau_p);
        x[1] = q_inf + (x[1] - q_inf) * std::exp(-dt / tau_q);
        break;
      }
      case Kind::H: {
        const T p_inf = sigmoid(-(v + T(75)) / T(5.5));
        const T tau =
            T(1) / (std::exp(T(-0.086) * v - T(14.59)) + std::exp(T(0.0701) * v - T(1.87))) / static_cast<T>(k.phi);
        x[0] = p_inf + (x[0] - p_inf) * std::exp(-dt / tau);
        break;
      }
      case Kind::CaPool: {
        constexpr double kFaraday = 96485.33212;  // C/mol, as CalciumPool::advance
        T inward = 0;
        for (int f = 0; f < k.n_influx; ++f) {
          const int j = k.influx[f];
          inward = inward + -conductance_of(grp.channels[j], now[j]) * (v - static_cast<T>(grp.channels[j].E));
        }
        T drive = inward * static_cast<T>(10.0 / (2 * kFaraday * k.depth));
        drive = drive < T(0) ? T(0) : drive;
        const T Ca_inf = static_cast<T>(k.Ca_rest) + static_cast<T>(k.tau) * drive;
        x[0] = Ca_inf + (x[0] - Ca_inf) * static_cast<T>(std::exp(-grp.dt / k.tau));
        break;
      }
      case Kind::KCa: {
        const T a = static_cast<T>(k.alpha) * std::pow(now[k.pool][0], static_cast<T>(k.hill));
        x[0] = relax(x[0], static_cast<T>(k.phi) * a, static_cast<T>(k.phi * k.beta), dt);
        break;
      }
      default:  // Leak
        break;
    }
    for (int g = 0; g < 2; ++g) {
      if (grp.out[ci][g]) grp.out[ci][g][i] = x[g];
    }
    if (k.kind == Kind::CaPool) continue;
    const T cond = conductance_of(k, x);
    G += cond;
    current -= cond * (v - static_cast<T>(k.E));
  }
  const T a = -G / c, ad = a * dt;
  const T phi = std::abs(ad) < T(1e-12) ? dt : std::expm1(ad) / a;
  return v + phi * ((I + current) / c);
}

// The spike of a step from v to v_new: an upward crossing of V_th.
template <typename T>
inline bool crossed(T v, T v_new, T th) {
  return std::min(v_new - th, th - v) > T(0);
}

}  // namespace brain::kernels::cond
