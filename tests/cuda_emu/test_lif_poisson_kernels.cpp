// The CUDA kernels of brain::lif_sequence (kernels/lif/lif_kernels.cu) and
// brain::poisson_spikes (kernels/rng/poisson_kernels.cu) under the emulator, against the CPU
// loops they share their math with: one thread per neuron (or pair of neurons) and no
// reductions, so the results must be equal bit for bit.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "emu/cuda_emu.h"
#include "kernels/lif/lif_cuda.h"
#include "kernels/rng/poisson_cuda.h"

namespace {

namespace lif = brain::kernels::lif;
namespace rng = brain::kernels::rng;
using cuda_emu::GuardedArray;

template <typename T>
std::vector<T> uniform(std::size_t n, double lo, double hi, std::mt19937_64& gen) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(d(gen));
  return v;
}

template <typename T>
void check_lif(const lif::LifConstants& c, std::int64_t steps, std::int64_t neurons, bool save, std::mt19937_64& gen) {
  SCOPED_TRACE(std::string(sizeof(T) == 8 ? "float64" : "float32") + " kind " + std::to_string(static_cast<int>(c.kind)) +
               (c.exp_euler ? " exp_euler" : " euler") + (c.detach_reset ? " detached" : "") +
               (save ? "" : " inference"));
  const auto tm = static_cast<std::size_t>(steps * neurons), m = static_cast<std::size_t>(neurons);
  GuardedArray<T> input(uniform<T>(tm, -0.5, 3.0, gen)), v0(uniform<T>(m, -0.2, 1.2, gen));
  GuardedArray<T> spikes(tm, T(-1)), v_last(m, T(-1)), v_pre(tm, T(-1));
  lif::cuda::ForwardArgs f;
  f.constants = c;
  f.is_double = sizeof(T) == 8;
  f.input = input.data();
  f.v0 = v0.data();
  f.spikes = spikes.data();
  f.v_last = v_last.data();
  f.v_pre = save ? v_pre.data() : nullptr;
  f.steps = steps;
  f.neurons = neurons;
  ASSERT_EQ(lif::cuda::launch_forward(f, nullptr), cudaSuccess) << cuda_emu::last_failure();
  std::vector<T> cpu_spikes(tm), cpu_v_last(m), cpu_v_pre(tm);
  lif::forward_cpu<T>(c, input.data(), v0.data(), cpu_spikes.data(), cpu_v_last.data(), cpu_v_pre.data(), steps,
                      neurons, 0, neurons);
  ASSERT_EQ(spikes.to_vector(), cpu_spikes);
  ASSERT_EQ(v_last.to_vector(), cpu_v_last);
  if (!save) {
    ASSERT_EQ(v_pre.to_vector(), std::vector<T>(tm, T(-1)));  // nothing saved
    return;
  }
  ASSERT_EQ(v_pre.to_vector(), cpu_v_pre);
  double fired = 0;
  for (T s : cpu_spikes) fired += static_cast<double>(s);
  ASSERT_GT(fired, 0.05 * static_cast<double>(tm));  // the surrogates below see both sides of threshold
  ASSERT_LT(fired, 0.95 * static_cast<double>(tm));

  GuardedArray<T> grad_spikes(uniform<T>(tm, -1.0, 1.0, gen)), grad_v_last(uniform<T>(m, -1.0, 1.0, gen));
  GuardedArray<T> grad_input(tm, T(0)), grad_v0(m, T(0));
  lif::cuda::BackwardArgs b;
  b.constants = c;
  b.is_double = f.is_double;
  b.grad_spikes = grad_spikes.data();
  b.grad_v_last = grad_v_last.data();
  b.v_pre = v_pre.data();
  b.grad_input = grad_input.data();
  b.grad_v0 = grad_v0.data();
  b.steps = steps;
  b.neurons = neurons;
  ASSERT_EQ(lif::cuda::launch_backward(b, nullptr), cudaSuccess) << cuda_emu::last_failure();
  std::vector<T> cpu_grad_input(tm), cpu_grad_v0(m);
  lif::backward_cpu<T>(c, grad_spikes.data(), grad_v_last.data(), cpu_v_pre.data(), cpu_grad_input.data(),
                       cpu_grad_v0.data(), steps, neurons, 0, neurons);
  ASSERT_EQ(grad_input.to_vector(), cpu_grad_input);
  ASSERT_EQ(grad_v0.to_vector(), cpu_grad_v0);
}

TEST(LifEmu, ForwardAndBackwardEqualTheCpuLoopsForEverySurrogate) {
  cuda_emu::set_order(cuda_emu::Order::kShuffled, 5);
  std::mt19937_64 gen(31);
  const lif::SurrogateKind kinds[] = {
      lif::SurrogateKind::kSigmoid,       lif::SurrogateKind::kArctan,   lif::SurrogateKind::kPiecewiseQuadratic,
      lif::SurrogateKind::kPiecewiseExp,  lif::SurrogateKind::kSoftSign, lif::SurrogateKind::kErf,
      lif::SurrogateKind::kInvSquare,     lif::SurrogateKind::kGaussian, lif::SurrogateKind::kMultiGaussian,
      lif::SurrogateKind::kLeakyRelu,     lif::SurrogateKind::kReluGrad};
  for (lif::SurrogateKind kind : kinds) {
    for (bool exp_euler : {true, false}) {
      lif::LifConstants c;
      c.v_rest = 0.0;
      c.v_reset = -0.1;
      c.v_th = 1.0;
      c.R = 1.0;
      c.decay = 0.9;
      c.dt_over_tau = 0.1;
      c.exp_euler = exp_euler;
      c.detach_reset = kind != lif::SurrogateKind::kArctan;
      c.kind = kind;
      check_lif<float>(c, 12, 700, true, gen);  // 3 blocks, the last one partial
      check_lif<double>(c, 5, 300, true, gen);
    }
  }
  lif::LifConstants c;
  c.decay = 0.8;
  check_lif<float>(c, 4, 513, false, gen);
  cuda_emu::set_order(cuda_emu::Order::kForward);
}

template <typename T>
void check_poisson(std::int64_t batch, std::int64_t neurons, std::int64_t offset, bool step_on_device, std::mt19937_64& gen) {
  SCOPED_TRACE(std::string(sizeof(T) == 8 ? "float64" : "float32") + " batch " + std::to_string(batch) + " neurons " +
               std::to_string(neurons) + " offset " + std::to_string(offset) + (step_on_device ? " device step" : ""));
  const rng::PoissonKey key = rng::poisson_key(20261206);
  const std::uint64_t step = (std::uint64_t{3} << 32) + 17;  // both halves of the step's counter words
  const double scale = 0.1 / 1000.0;
  const auto n = static_cast<std::size_t>(batch * neurons);
  GuardedArray<T> rates(uniform<T>(n, 0.0, 3000.0, gen));
  GuardedArray<bool> spikes(n, false);
  GuardedArray<std::int64_t> device_step(1, static_cast<std::int64_t>(step));
  rng::cuda::PoissonArgs a;
  a.key = key;
  a.step = step_on_device ? 999 : step;  // the device copy must win when it is given
  a.step_on_device = step_on_device ? device_step.data() : nullptr;
  a.scale = scale;
  a.is_double = sizeof(T) == 8;
  a.rates = rates.data();
  a.spikes = spikes.data();
  a.batch = batch;
  a.neurons = neurons;
  a.offset = offset;
  ASSERT_EQ(rng::cuda::launch_poisson(a, nullptr), cudaSuccess) << cuda_emu::last_failure();
  std::vector<char> want(n);
  std::size_t fired = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    bool row[4096];
    ASSERT_LE(neurons, 4096);
    rng::draw_row<T>(key, step, static_cast<std::uint32_t>(b), offset, neurons, scale, rates.data() + b * neurons, row);
    for (std::int64_t j = 0; j < neurons; ++j) {
      want[b * neurons + j] = row[j];
      fired += row[j];
    }
  }
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(spikes[i], static_cast<bool>(want[i])) << "neuron " << i;
  if (n > 100) {
    EXPECT_GT(fired, 0u);
    EXPECT_LT(fired, n);
  }
}

TEST(PoissonEmu, DrawsEqualTheCpuRowsForEveryOffsetParity) {
  cuda_emu::set_order(cuda_emu::Order::kReverse);
  std::mt19937_64 gen(32);
  for (std::int64_t offset : {0, 1, 6, 1001}) {
    for (std::int64_t neurons : {1, 2, 7, 600}) {
      check_poisson<float>(3, neurons, offset, false, gen);
      check_poisson<double>(2, neurons, offset, true, gen);
    }
  }
  cuda_emu::set_order(cuda_emu::Order::kForward);
}

}  // namespace
