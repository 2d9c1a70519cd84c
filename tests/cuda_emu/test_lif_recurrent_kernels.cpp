// The CUDA driver of brain::lif_recurrent_sequence (kernels/lif/lif_recurrent_kernels.cu: the
// step loops that compose the CSR and LIF kernels) under the emulator, against a naive
// reference of kernels/lif/lif_recurrent_cpu.h's math with a dense A. Weights, drives and
// spikes are multiples of 1/64, so every input current is exact whatever the order of the
// scatter's atomics: the forward (spikes, membranes) must equal the reference bit for bit, in
// the scatter form and in the deterministic gather form. The backward's gathers through A sum
// in the kernels' own order, so its gradients are compared to float rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "emu/cuda_emu.h"
#include "kernels/lif/lif_recurrent_cuda.h"

namespace {

namespace lif = brain::kernels::lif;
namespace kl = brain::kernels::lif::cuda;
using cuda_emu::GuardedArray;

struct Network {
  std::int64_t n = 0;
  std::vector<std::int64_t> indptr, indices;
  std::vector<double> weights;  // one per entry (the homogeneous case repeats the value)
  bool homo = false;
};

Network random_network(std::int64_t n, double p, bool homo, std::mt19937_64& rng) {
  Network net;
  net.n = n;
  net.homo = homo;
  std::bernoulli_distribution connect(p);
  std::uniform_int_distribution<int> w(-16, 24);
  net.indptr.push_back(0);
  const double homo_w = 0.25;
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      if (!connect(rng)) continue;
      net.indices.push_back(j);
      net.weights.push_back(homo ? homo_w : w(rng) / 64.0);
    }
    net.indptr.push_back(static_cast<std::int64_t>(net.indices.size()));
  }
  return net;
}

template <typename T>
struct Window {
  std::int64_t steps, batch, n, delay;
  std::vector<T> drive, history, spikes, v_pre, v_last;
};

// The forward of lif_recurrent_cpu.h, naively: I_t = drive[t] + A^T S_{t-d}, then one LIF step.
template <typename T>
void reference_forward(const lif::LifConstants& constants, const Network& net, Window<T>& w, const std::vector<T>& v0) {
  const lif::Typed<T> c(constants);
  const std::int64_t stride = w.batch * w.n;
  w.spikes.assign(static_cast<std::size_t>(w.steps * stride), T(0));
  w.v_pre.assign(w.spikes.size(), T(0));
  std::vector<T> u = v0;
  for (std::int64_t t = 0; t < w.steps; ++t) {
    const T* s = t < w.delay ? w.history.data() + t * stride : w.spikes.data() + (t - w.delay) * stride;
    for (std::int64_t b = 0; b < w.batch; ++b) {
      std::vector<T> current(w.drive.begin() + t * stride + b * w.n, w.drive.begin() + t * stride + (b + 1) * w.n);
      for (std::int64_t i = 0; i < net.n; ++i) {
        if (s[b * w.n + i] == T(0)) continue;
        for (std::int64_t k = net.indptr[i]; k < net.indptr[i + 1]; ++k) {
          current[net.indices[k]] += static_cast<T>(net.weights[k]) * s[b * w.n + i];  // exact: multiples of 1/64
        }
      }
      for (std::int64_t j = 0; j < w.n; ++j) {
        const std::int64_t m = b * w.n + j;
        const T v = c.integrate(u[m], current[j]);
        const bool spike = c.scaled(v) > T(0);
        w.v_pre[t * stride + m] = v;
        w.spikes[t * stride + m] = spike ? T(1) : T(0);
        u[m] = c.reset(v, spike);
      }
    }
  }
  w.v_last = u;
}

struct Gradients {
  std::vector<double> drive, history, v0, weights;
};

// The backward of lif_recurrent_cpu.h, naively, in double from T's saved membranes.
template <typename T>
Gradients reference_backward(const lif::LifConstants& constants, const Network& net, const Window<T>& w,
                             const std::vector<T>& grad_spikes, const std::vector<T>& grad_v_last) {
  const lif::Typed<double> c(constants);
  const std::int64_t stride = w.batch * w.n;
  Gradients g;
  g.drive.assign(static_cast<std::size_t>(w.steps * stride), 0.0);
  g.history.assign(static_cast<std::size_t>(w.delay * stride), 0.0);
  g.weights.assign(net.indices.size(), 0.0);
  std::vector<double> through_a(static_cast<std::size_t>(w.steps * stride), 0.0);  // G_t, by the step of S
  std::vector<double> gu(grad_v_last.begin(), grad_v_last.end());
  for (std::int64_t t = w.steps - 1; t >= 0; --t) {
    for (std::int64_t m = 0; m < stride; ++m) {
      const double gs = static_cast<double>(grad_spikes[t * stride + m]) + (t + w.delay < w.steps ? through_a[t * stride + m] : 0.0);
      g.drive[t * stride + m] = lif::backward_step(c, static_cast<double>(w.v_pre[t * stride + m]), gs, gu[m]) * c.dv_dI;
    }
    for (std::int64_t b = 0; b < w.batch; ++b) {
      for (std::int64_t i = 0; i < net.n; ++i) {
        double sum = 0;
        for (std::int64_t k = net.indptr[i]; k < net.indptr[i + 1]; ++k) {
          sum += net.weights[k] * g.drive[t * stride + b * w.n + net.indices[k]];
        }
        if (t < w.delay) {
          g.history[t * stride + b * w.n + i] = sum;
        } else {
          through_a[(t - w.delay) * stride + b * w.n + i] = sum;
        }
        const T s = t < w.delay ? w.history[t * stride + b * w.n + i] : w.spikes[(t - w.delay) * stride + b * w.n + i];
        for (std::int64_t k = net.indptr[i]; k < net.indptr[i + 1]; ++k) {
          g.weights[k] += static_cast<double>(s) * g.drive[t * stride + b * w.n + net.indices[k]];
        }
      }
    }
  }
  g.v0 = gu;
  return g;
}

// |got - want| <= tol * (1 + |want|), elementwise.
template <typename T>
::testing::AssertionResult all_close(const std::vector<T>& got, const std::vector<double>& want, double tol) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "sizes " << got.size() << " and " << want.size();
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::fabs(static_cast<double>(got[i]) - want[i]) > tol * (1.0 + std::fabs(want[i]))) {
      return ::testing::AssertionFailure() << "element " << i << ": got " << got[i] << ", want " << want[i];
    }
  }
  return ::testing::AssertionSuccess();
}

template <typename T>
std::vector<T> multiples_of_64th(std::size_t n, int lo, int hi, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(d(rng) / 64.0);
  return v;
}

template <typename T>
void check_window(const Network& net, std::int64_t steps, std::int64_t batch, std::int64_t delay, bool deterministic,
                  bool index64, std::mt19937_64& rng) {
  SCOPED_TRACE(std::string(sizeof(T) == 8 ? "float64" : "float32") + (net.homo ? " homo" : "") +
               (deterministic ? " deterministic" : " scatter") + (index64 ? " int64" : " int32") + " steps " +
               std::to_string(steps) + " batch " + std::to_string(batch) + " delay " + std::to_string(delay));
  lif::LifConstants c;
  c.v_rest = 0.0;
  c.v_reset = 0.0;
  c.v_th = 1.0;
  c.R = 1.0;
  c.decay = 0.875;
  c.exp_euler = true;
  c.detach_reset = !deterministic;  // both resets, over the cases
  c.kind = lif::SurrogateKind::kSigmoid;
  const std::int64_t n = net.n, stride = batch * n;
  Window<T> w{steps, batch, n, delay, {}, {}, {}, {}, {}};
  w.drive = multiples_of_64th<T>(static_cast<std::size_t>(steps * stride), -20, 200, rng);
  w.history.resize(static_cast<std::size_t>(delay * stride));
  std::bernoulli_distribution fired(0.2);
  for (auto& s : w.history) s = fired(rng) ? T(1) : T(0);
  const std::vector<T> v0 = multiples_of_64th<T>(static_cast<std::size_t>(stride), 0, 60, rng);
  reference_forward(c, net, w, v0);

  std::vector<std::int32_t> indptr32(net.indptr.begin(), net.indptr.end()), indices32(net.indices.begin(), net.indices.end());
  GuardedArray<std::int64_t> indptr64(net.indptr), indices64(net.indices);
  GuardedArray<std::int32_t> indptr32d(indptr32), indices32d(indices32);
  std::vector<T> weight_values;
  for (double x : net.weights) weight_values.push_back(static_cast<T>(x));
  if (net.homo) weight_values.assign(1, static_cast<T>(net.weights.empty() ? 0.25 : net.weights[0]));
  GuardedArray<T> weights(weight_values);
  kl::RecurrentMatrix a;
  a.indptr = index64 ? static_cast<const void*>(indptr64.data()) : indptr32d.data();
  a.indices = index64 ? static_cast<const void*>(indices64.data()) : indices32d.data();
  a.index64 = index64;
  a.weights = weights.data();
  a.homo = net.homo;
  a.nnz = static_cast<std::int64_t>(net.indices.size());

  // A^T column-sorted (rows ascending within a column), int64, one weight per entry: what
  // the glue's csc_for_gather builds.
  std::vector<std::int64_t> t_indptr(static_cast<std::size_t>(n + 1), 0), t_rows(net.indices.size());
  std::vector<T> t_weights(net.indices.size());
  for (std::int64_t j : net.indices) ++t_indptr[j + 1];
  for (std::int64_t j = 0; j < n; ++j) t_indptr[j + 1] += t_indptr[j];
  std::vector<std::int64_t> fill(t_indptr.begin(), t_indptr.end() - 1);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t k = net.indptr[i]; k < net.indptr[i + 1]; ++k) {
      const std::int64_t e = fill[net.indices[k]]++;
      t_rows[e] = i;
      t_weights[e] = static_cast<T>(net.weights[k]);
    }
  }
  GuardedArray<std::int64_t> t_indptr_d(t_indptr), t_rows_d(t_rows);
  GuardedArray<T> t_weights_d(t_weights);

  GuardedArray<T> drive(w.drive), history(w.history), spikes(w.drive.size(), T(-1)), v_pre(w.drive.size(), T(-1));
  GuardedArray<T> u0(v0), u1(v0.size(), T(-1)), current(v0.size()), rec(v0.size());
  kl::RecurrentForwardArgs f;
  f.constants = c;
  f.is_double = sizeof(T) == 8;
  f.steps = steps;
  f.batch = batch;
  f.n = n;
  f.delay = delay;
  f.drive = drive.data();
  f.history = history.data();
  f.a = a;
  f.deterministic = deterministic;
  f.a_t = kl::RecurrentMatrix{t_indptr_d.data(), t_rows_d.data(), true, t_weights_d.data(), false, a.nnz};
  f.rec = rec.data();
  f.current = current.data();
  f.spikes = spikes.data();
  f.v_pre = v_pre.data();
  f.u[0] = u0.data();
  f.u[1] = u1.data();
  f.num_sms = 2;
  ASSERT_EQ(kl::launch_recurrent_forward(f, nullptr), cudaSuccess) << cuda_emu::last_failure();
  ASSERT_EQ(spikes.to_vector(), w.spikes);
  ASSERT_EQ(v_pre.to_vector(), w.v_pre);
  ASSERT_EQ((steps % 2 == 0 ? u0 : u1).to_vector(), w.v_last);
  double fired_total = 0;
  for (T s : w.spikes) fired_total += static_cast<double>(s);
  ASSERT_GT(fired_total, 0.02 * static_cast<double>(w.spikes.size()));  // the recurrence carries spikes
  ASSERT_LT(fired_total, 0.9 * static_cast<double>(w.spikes.size()));

  std::uniform_real_distribution<double> grad(-1.0, 1.0);
  std::vector<T> grad_spikes(w.drive.size()), grad_v_last(v0.size());
  for (auto& e : grad_spikes) e = static_cast<T>(grad(rng));
  for (auto& e : grad_v_last) e = static_cast<T>(grad(rng));
  const Gradients want = reference_backward(c, net, w, grad_spikes, grad_v_last);
  const std::int64_t slots = std::min(delay, std::max<std::int64_t>(steps - delay, 0));
  GuardedArray<T> grad_spikes_d(grad_spikes), v_pre_d(w.v_pre), spikes_d(w.spikes);
  GuardedArray<T> grad_drive(w.drive.size(), T(0)), grad_history(w.history.size(), T(0));
  GuardedArray<T> pending(static_cast<std::size_t>(slots * stride), T(0)), gs_sum(v0.size());
  GuardedArray<T> gu0(grad_v_last), gu1(v0.size(), T(0)), dw(net.indices.size(), T(0));
  kl::RecurrentBackwardArgs b;
  b.constants = c;
  b.is_double = f.is_double;
  b.steps = steps;
  b.batch = batch;
  b.n = n;
  b.delay = delay;
  b.grad_spikes = grad_spikes_d.data();
  b.v_pre = v_pre_d.data();
  b.spikes = spikes_d.data();
  b.history = history.data();
  b.a = a;
  b.grad_drive = grad_drive.data();
  b.grad_history = grad_history.data();
  b.pending = pending.data();
  b.grad_spikes_sum = gs_sum.data();
  b.gu[0] = gu0.data();
  b.gu[1] = gu1.data();
  b.grad_weights = dw.data();
  b.num_sms = 2;
  ASSERT_EQ(kl::launch_recurrent_backward(b, nullptr), cudaSuccess) << cuda_emu::last_failure();
  const double tol = sizeof(T) == 8 ? 1e-12 : 2e-5;
  EXPECT_TRUE(all_close(grad_drive.to_vector(), want.drive, tol));
  EXPECT_TRUE(all_close(grad_history.to_vector(), want.history, tol));
  EXPECT_TRUE(all_close((steps % 2 == 0 ? gu0 : gu1).to_vector(), want.v0, tol));
  // Each entry's gradient sums over the window's steps and items: scale the tolerance.
  EXPECT_TRUE(all_close(dw.to_vector(), want.weights, tol * static_cast<double>(steps * batch)));
}

TEST(LifRecurrentEmu, WindowsEqualTheReferenceInScatterAndDeterministicForms) {
  cuda_emu::set_order(cuda_emu::Order::kShuffled, 9);
  std::mt19937_64 rng(41);
  const Network net = random_network(90, 0.08, false, rng);
  const Network homo = random_network(70, 0.1, true, rng);
  for (bool deterministic : {false, true}) {
    check_window<float>(net, 12, 2, 3, deterministic, false, rng);
    check_window<double>(net, 9, 1, 1, deterministic, true, rng);
    check_window<float>(homo, 8, 3, 5, deterministic, true, rng);  // more delay than steps - delay
    check_window<double>(homo, 4, 2, 6, deterministic, false, rng);  // delay longer than the window
  }
  cuda_emu::set_order(cuda_emu::Order::kForward);
}

TEST(LifRecurrentEmu, EmptyWindowsLaunchNothing) {
  kl::RecurrentForwardArgs f;
  f.steps = 0;
  f.n = 10;
  cuda_emu::clear_launches();
  EXPECT_EQ(kl::launch_recurrent_forward(f, nullptr), cudaSuccess);
  kl::RecurrentBackwardArgs b;
  b.steps = 5;
  b.n = 0;
  EXPECT_EQ(kl::launch_recurrent_backward(b, nullptr), cudaSuccess);
  EXPECT_TRUE(cuda_emu::launches().empty());
}

}  // namespace
