// Point neurons against analytic rheobases and published behaviour.
#include <brain/brain.h>

#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using brain::Context;

// Spike steps of each neuron of `neuron` driven by constant currents (one per neuron).
std::vector<std::vector<int64_t>> drive(brain::NeuronGroup& neuron, const std::vector<double>& currents, double dt,
                                        double duration_ms) {
  torch::NoGradGuard no_grad;
  neuron.reset_state();
  const auto I = torch::tensor(currents, torch::kDouble);
  std::vector<std::vector<int64_t>> spikes(currents.size());
  Context ctx;
  ctx.dt = dt;
  const int64_t steps = std::llround(duration_ms / dt);
  for (ctx.step = 0; ctx.step < steps; ++ctx.step) {
    ctx.t = ctx.step * dt;
    neuron.assign_state("input", I);
    neuron.step(ctx);
    const auto s = neuron.state("spike").nonzero();
    for (int64_t k = 0; k < s.size(0); ++k) spikes[s[k][0].item<int64_t>()].push_back(ctx.step);
  }
  return spikes;
}

int64_t count_after(const std::vector<int64_t>& steps, int64_t from) {
  return std::count_if(steps.begin(), steps.end(), [&](int64_t s) { return s >= from; });
}

TEST(ExpIF, FiresExactlyAboveTheAnalyticRheobase) {
  // The resting fixed point vanishes at I_rh = V_T - V_rest - delta_T = 1.62.
  brain::ExpIF neuron(2, {}, torch::kDouble);
  const auto s = drive(neuron, {1.55, 1.70}, 0.05, 400);
  EXPECT_EQ(s[0].size(), 0u);
  EXPECT_GE(s[1].size(), 1u);
}

TEST(QuaIF, FiresExactlyAboveTheAnalyticRheobase) {
  // c (V - V_rest)(V - V_c) + I has a real root while I <= c (V_c - V_rest)^2 / 4 = 3.9375.
  brain::QuaIF neuron(2, {}, torch::kDouble);
  const auto s = drive(neuron, {3.85, 4.05}, 0.05, 600);
  EXPECT_EQ(s[0].size(), 0u);
  EXPECT_GE(s[1].size(), 1u);
}

std::vector<double> isis_ms(const std::vector<int64_t>& steps, double dt) {
  std::vector<double> out;
  for (size_t i = 1; i < steps.size(); ++i) out.push_back((steps[i] - steps[i - 1]) * dt);
  return out;
}

TEST(AdEx, AdaptsItsFiring) {
  brain::AdEx neuron(1, {}, torch::kDouble);
  const auto s = drive(neuron, {65.0}, 0.05, 500);
  const auto isi = isis_ms(s[0], 0.05);
  ASSERT_GE(isi.size(), 5u);
  EXPECT_GT(isi.back(), 1.15 * isi.front());  // spike-frequency adaptation from w
  brain::QuaIFParams ad;
  ad.adaptive = true;
  brain::QuaIF adq(1, ad, torch::kDouble);
  const auto isi_q = isis_ms(drive(adq, {20.0}, 0.05, 500)[0], 0.05);
  ASSERT_GE(isi_q.size(), 5u);
  EXPECT_GT(isi_q.back(), isi_q.front());
}

TEST(Izhikevich, ReproducesThePublishedFiringPatterns) {
  // Izhikevich (2003), Fig. 2: regular spiking adapts, fast spiking fires fast without
  // adaptation, chattering fires bursts.
  auto run = [](brain::IzhikevichParams p) {
    brain::Izhikevich neuron(1, p, torch::kDouble);
    return isis_ms(drive(neuron, {10.0}, 0.1, 1000)[0], 0.1);
  };
  const auto rs = run({0.02, 0.2, -65, 8});
  const auto fs = run({0.1, 0.2, -65, 2});
  const auto ch = run({0.02, 0.2, -50, 2});
  ASSERT_GE(rs.size(), 5u);
  EXPECT_GT(rs.back(), 1.5 * rs.front());                         // RS: adaptation (~24 -> ~45 ms)
  EXPECT_GT(fs.size(), 3 * rs.size());                           // FS: much faster
  EXPECT_LT(std::abs(fs.back() - fs[fs.size() / 2]), 0.1 * fs.back());  // FS: steady
  const double shortest = *std::min_element(ch.begin(), ch.end());
  const double longest = *std::max_element(ch.begin(), ch.end());
  EXPECT_LT(shortest, 10.0);  // CH: spikes within a burst...
  EXPECT_GT(longest, 3 * shortest);  // ...and pauses between bursts
}

TEST(HH, RestsFiresRepetitivelyAboveTheKnownThresholdWithTheKnownRates) {
  brain::HHParams p;
  p.method = "rk4";
  brain::HH neuron(4, p, torch::kDouble);
  // 0: rest; 5: one spike then quiet (below the ~6.2 uA/cm^2 onset of repetitive firing);
  // 10 and 20: tonic firing at the classic ~68 and ~90 Hz.
  const double dt = 0.025;
  const auto s = drive(neuron, {0.0, 5.0, 10.0, 20.0}, dt, 400);
  const int64_t from = std::llround(100 / dt);
  EXPECT_EQ(s[0].size(), 0u);
  EXPECT_GE(s[1].size(), 1u);
  EXPECT_EQ(count_after(s[1], from), 0);
  const double f10 = count_after(s[2], from) / 0.3, f20 = count_after(s[3], from) / 0.3;
  EXPECT_GT(f10, 60);
  EXPECT_LT(f10, 76);
  EXPECT_GT(f20, 82);
  EXPECT_LT(f20, 100);
  std::printf("HH rates: 10 uA/cm^2 -> %.1f Hz, 20 -> %.1f Hz\n", f10, f20);
}

TEST(ALIF, ThresholdJumpsByBetaPerSpikeAndRelaxesWithTauA) {
  brain::ALIFParams p;
  brain::ALIF neuron(1, p, torch::kDouble);
  const double dt = 0.1;
  const auto s = drive(neuron, {20.0}, dt, 1000);
  ASSERT_GE(s[0].size(), 5u);
  // a is the spike train filtered by e^{-t/tau_a}: check it against the spike times.
  double a = 0;
  for (auto k : s[0]) a += std::exp(-(9999 - k) * dt / p.tau_a);
  EXPECT_NEAR(neuron.state("a").item<double>(), a, 1e-9);
  const auto isi = isis_ms(s[0], dt);
  EXPECT_GT(isi.back(), 1.3 * isi.front());  // the rising threshold slows firing
}

TEST(GIF, WithoutAdaptationFiresAtTheAnalyticLifPeriod) {
  // a = 0 and no spike currents: V_th stays at V_th_inf and V(t) = V_rest + R I (1 - e^{-t/tau}),
  // so every interval is the first step past T = tau ln(R I / (R I - (V_th_inf - V_rest))).
  brain::GIFParams p;
  brain::GIF neuron(1, p, torch::kDouble);
  const double dt = 0.1, I = 1.5;
  const double T = p.tau * std::log(p.R * I / (p.R * I - (p.V_th_inf - p.V_rest)));
  const int64_t period = static_cast<int64_t>(std::floor(T / dt)) + 1;
  const auto s = drive(neuron, {I}, dt, 300);
  ASSERT_GE(s[0].size(), 10u);
  EXPECT_EQ(s[0][0], period - 1);
  for (size_t k = 1; k < s[0].size(); ++k) EXPECT_EQ(s[0][k] - s[0][k - 1], period);
}

TEST(GIF, SpikeCurrentsAndThresholdFollowTheirClosedForms) {
  const double dt = 0.1;
  {
    // I2 jumps by A2 at each spike and decays with k2: the sum of kernels over the spikes.
    brain::GIFParams p;
    p.A2 = -0.3;
    brain::GIF neuron(1, p, torch::kDouble);
    torch::NoGradGuard no_grad;
    neuron.reset_state();
    Context ctx;
    ctx.dt = dt;
    std::vector<int64_t> spikes;
    double worst = 0;
    for (ctx.step = 0; ctx.step < 4000; ++ctx.step) {
      neuron.assign_state("input", torch::full({1}, 3.0, torch::kDouble));
      neuron.step(ctx);
      if (neuron.state("spike").item<double>() > 0) spikes.push_back(ctx.step);
      double want = 0;
      for (auto k : spikes) want += p.A2 * std::exp(-p.k2 * (ctx.step - k) * dt);
      worst = std::max(worst, std::abs(neuron.state("I2").item<double>() - want));
    }
    EXPECT_LT(worst, 1e-12);
    const auto isi = isis_ms(spikes, dt);
    ASSERT_GE(isi.size(), 5u);
    EXPECT_GT(isi.back(), 1.5 * isi.front());  // the inhibitory spike current adapts the firing
  }
  {
    // Subthreshold, u = V - V_rest = R I (1 - e^{-t/tau}) and w = V_th - V_th_inf obeys
    // w' = a u - b w:  w(t) = a R I [(1 - e^{-bt}) / b - (e^{-t/tau} - e^{-bt}) / (b - 1/tau)].
    brain::GIFParams p;
    p.a = 0.005;
    p.method = "rk4";
    brain::GIF neuron(1, p, torch::kDouble);
    const double I = 0.4;  // R I = 8 mV: V stays 12 mV below threshold
    const auto s = drive(neuron, {I}, dt, 200);
    EXPECT_TRUE(s[0].empty());
    const double t = 200, RI = p.R * I;
    const double w = p.a * RI * ((1 - std::exp(-p.b * t)) / p.b - (std::exp(-t / p.tau) - std::exp(-p.b * t)) / (p.b - 1 / p.tau));
    EXPECT_NEAR(neuron.state("V_th").item<double>(), p.V_th_inf + w, 1e-6);
    EXPECT_NEAR(neuron.state("V").item<double>(), p.V_rest + RI * (1 - std::exp(-t / p.tau)), 1e-6);
  }
  {
    // A threshold driven below V_th_reset is lifted back to it by the spike.
    brain::GIFParams p;
    p.a = -0.5;  // V_th reaches V at about -63 mV
    brain::GIF neuron(1, p, torch::kDouble);
    const auto s = drive(neuron, {1.5}, dt, 200);
    ASSERT_GE(s[0].size(), 1u);
    brain::GIF again(1, p, torch::kDouble);
    drive(again, {1.5}, dt, (s[0][0] + 1) * dt);
    EXPECT_EQ(again.state("V_th").item<double>(), p.V_th_reset);
    EXPECT_EQ(again.state("V").item<double>(), p.V_reset);
  }
}

TEST(MorrisLecar, RestsWithoutInputAndOscillatesUnderStrongDrive) {
  brain::MorrisLecar neuron(2, {}, torch::kDouble);
  const auto s = drive(neuron, {0.0, 150.0}, 0.05, 1000);
  EXPECT_EQ(s[0].size(), 0u);
  EXPECT_GE(count_after(s[1], std::llround(500 / 0.05)), 3);  // repetitive, not a transient
}

TEST(WangBuzsaki, TypeOneExcitabilityFiringRateGrowsFromLowValues) {
  brain::WangBuzsaki neuron(4, {}, torch::kDouble);
  const double dt = 0.05;
  const auto s = drive(neuron, {0.0, 0.5, 1.0, 3.0}, dt, 400);
  const int64_t from = std::llround(100 / dt);
  EXPECT_EQ(count_after(s[0], from), 0);
  const double f05 = count_after(s[1], from) / 0.3, f1 = count_after(s[2], from) / 0.3, f3 = count_after(s[3], from) / 0.3;
  EXPECT_GT(f05, 0.0);
  EXPECT_LT(f05, f1);
  EXPECT_LT(f1, f3);
  EXPECT_LT(f05, 60.0);  // type I: low rates close to threshold
  EXPECT_NEAR(f1, 60.0, 8.0);  // Wang & Buzsaki (1996), Fig. 1: about 60 Hz at 1 uA/cm^2
  std::printf("Wang-Buzsaki rates: 0.5 -> %.0f Hz, 1 -> %.0f Hz, 3 -> %.0f Hz\n", f05, f1, f3);
}

TEST(PointNeurons, IntegrationMethodIsValidated) {
  brain::ExpIFParams p;
  p.method = "leapfrog";
  EXPECT_THROW(brain::ExpIF(1, p), c10::Error);
}

}  // namespace

namespace {

TEST(CondNeuGroup, HodgkinHuxleyChannelsReproduceTheHHNeuron) {
  // The same cell composed from channels (channel -> neuron) against the monolithic HH model.
  brain::CondNeuGroup cell(3);
  cell.add_channel("Na", std::make_shared<brain::NaChannelHH>(3));
  cell.add_channel("K", std::make_shared<brain::KChannelHH>(3));
  cell.add_channel("L", std::make_shared<brain::LeakChannel>(3));
  brain::HHParams p;
  p.method = "rk4";
  brain::HH hh(3, p, torch::kDouble);
  const double dt = 0.02;
  const auto a = drive(cell, {0.0, 10.0, 20.0}, dt, 200);
  const auto b = drive(hh, {0.0, 10.0, 20.0}, dt, 200);
  EXPECT_EQ(a[0].size(), 0u);
  for (int i = 1; i < 3; ++i) {
    ASSERT_GE(a[i].size(), 10u);
    // Same number of spikes, and spike times within half a millisecond all along.
    EXPECT_EQ(a[i].size(), b[i].size()) << "I index " << i;
    for (size_t k = 0; k < std::min(a[i].size(), b[i].size()); ++k) {
      EXPECT_NEAR(a[i][k] * dt, b[i][k] * dt, 0.5) << "spike " << k;
    }
  }
  EXPECT_EQ(cell.state_paths(), (std::vector<std::string>{"V", "spike", "input", "Na.m", "Na.h", "K.n"}));
  brain::CondNeuGroup empty(1);
  empty.reset_state();
  EXPECT_THROW(empty.step(brain::Context{}), c10::Error);
}

}  // namespace
