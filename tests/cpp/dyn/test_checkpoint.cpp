// Checkpoints: the file format refuses every truncation and bit flip, writes are atomic, and
// a run resumed from a checkpoint gives the monitors of a run that never stopped, bit for
// bit, on both engines. The finiteness guard names the state and the step.
#include <brain/brain.h>
#include <brain/io/checkpoint.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include <unistd.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

using brain::Engine;
namespace io = brain::io;

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("brain_ckpt_" + std::to_string(::getpid()) + "_" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

TEST(Checkpoint, Xxh64MatchesTheReferenceImplementation) {
  // Reference values from the xxhash package (Python bindings of Collet's C code).
  EXPECT_EQ(io::xxh64("", 0), 0xEF46DB3751D8E999ull);
  // An empty tensor's data pointer is null; under UBSan any offset from it fails the test.
  EXPECT_EQ(io::xxh64(nullptr, 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(io::xxh64("abc", 3), 0x44BC2CF5AD770999ull);
  std::vector<unsigned char> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>((i * 7 + 3) % 256);
  const std::pair<size_t, uint64_t> expected[] = {
      {3, 0x31d2363f52e564c9ull},  {4, 0x9bb64b7d66ee9fdaull},  {7, 0x9a7b149959ce60d8ull},
      {8, 0xdab99d95c6f90092ull},  {31, 0xa2aa5f33cc4a6119ull}, {32, 0x23c3c17ef790fd97ull},
      {33, 0x50a7cfc7ba588784ull}, {100, 0xa61f8d4c170fe531ull}, {1000, 0x5f235fa033f1a3fbull}};
  for (const auto& [n, h] : expected) EXPECT_EQ(io::xxh64(data.data(), n), h) << n << " bytes";
  EXPECT_EQ(io::xxh64(data.data(), data.size(), 12345), 0x365c39a0c5a4c88eull);
}

io::Checkpoint sample_checkpoint() {
  io::Checkpoint c;
  c.header = R"({"hello": "world"})";
  c.tensors.emplace_back("f32", torch::arange(6, torch::kFloat).reshape({2, 3}));
  c.tensors.emplace_back("f64_strided", torch::arange(12, torch::kDouble).reshape({3, 4}).t());
  c.tensors.emplace_back("i64_scalar", torch::tensor(7, torch::kLong));
  c.tensors.emplace_back("i32", torch::tensor({-1, 2, 3}, torch::kInt));
  c.tensors.emplace_back("bool", torch::tensor({true, false, true}));
  c.tensors.emplace_back("empty", torch::empty({0, 5}, torch::kFloat));
  c.tensors.emplace_back("half", torch::ones({4}, torch::kHalf));
  return c;
}

TEST(Checkpoint, RoundTripKeepsNamesDtypesShapesAndValues) {
  const io::Checkpoint c = sample_checkpoint();
  const std::string bytes = io::encode_checkpoint(c);
  const io::Checkpoint d = io::decode_checkpoint(bytes.data(), bytes.size(), "memory");
  EXPECT_EQ(d.header, c.header);
  ASSERT_EQ(d.tensors.size(), c.tensors.size());
  for (size_t i = 0; i < c.tensors.size(); ++i) {
    EXPECT_EQ(d.tensors[i].first, c.tensors[i].first);
    EXPECT_EQ(d.tensors[i].second.scalar_type(), c.tensors[i].second.scalar_type());
    EXPECT_EQ(d.tensors[i].second.sizes(), c.tensors[i].second.sizes());
    EXPECT_TRUE(torch::equal(d.tensors[i].second, c.tensors[i].second)) << c.tensors[i].first;
  }
  EXPECT_THROW(d.tensor("missing"), io::CheckpointError);
}

TEST(Checkpoint, EveryTruncationAndEveryBitFlipIsRefused) {
  const std::string bytes = io::encode_checkpoint(sample_checkpoint());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THROW(io::decode_checkpoint(bytes.data(), n, "cut"), io::CheckpointError) << "truncated to " << n;
  }
  std::string padded = bytes + "x";
  EXPECT_THROW(io::decode_checkpoint(padded.data(), padded.size(), "padded"), io::CheckpointError);
  std::string flipped = bytes;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      flipped[i] = static_cast<char>(bytes[i] ^ (1 << bit));
      EXPECT_THROW(io::decode_checkpoint(flipped.data(), flipped.size(), "flipped"), io::CheckpointError)
          << "byte " << i << " bit " << bit;
      flipped[i] = bytes[i];
    }
  }
}

TEST(Checkpoint, ErrorsSayWhatIsWrong) {
  const std::string bytes = io::encode_checkpoint(sample_checkpoint());
  auto message = [](const std::string& b) {
    try {
      io::decode_checkpoint(b.data(), b.size(), "ck.bin");
    } catch (const io::CheckpointError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(bytes.substr(0, bytes.size() - 1)).find("ck.bin"), std::string::npos);
  EXPECT_NE(message(bytes.substr(0, 100)).find("truncated"), std::string::npos);
  std::string corrupt = bytes;
  corrupt[40] ^= 1;
  EXPECT_NE(message(corrupt).find("checksum"), std::string::npos);
  EXPECT_NE(message("PK\x03\x04 this is a zip file, not a checkpoint").find("magic"), std::string::npos);
}

TEST(Checkpoint, WriteReplacesAtomicallyAndLeavesNoTemporary) {
  const std::string path = temp_path("state.ckpt");
  io::Checkpoint a;
  a.header = "{\"n\": 1}";
  a.tensors.emplace_back("x", torch::ones({3}));
  io::write_checkpoint_file(path, a);
  // A write killed half-way leaves a partial temporary; the good checkpoint is untouched.
  { std::ofstream(path + ".tmp") << "BRAINCKP garbage of a killed writer"; }
  EXPECT_EQ(io::read_checkpoint_file(path).header, a.header);
  io::Checkpoint b = a;
  b.header = "{\"n\": 2}";
  io::write_checkpoint_file(path, b);
  EXPECT_EQ(io::read_checkpoint_file(path).header, b.header);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_THROW(io::read_checkpoint_file(path + ".missing"), io::CheckpointError);
  EXPECT_THROW(io::read_checkpoint_file(std::filesystem::path(path).parent_path().string()), io::CheckpointError);
}

// ---- runs ----

brain::EINetSpec small_spec() {
  brain::EINetSpec s;
  s.n_exc = 240;
  s.n_inh = 60;
  s.p = 0.1;
  s.w_exc = 0.5;
  s.w_inh = 5.0;
  s.delay_ms = 0.3;  // a delay ring must survive the checkpoint too
  return s;
}

constexpr int64_t kSteps = 600;

// Per-step drive (so resumed segments must read the right rows) and monitors of every kind.
brain::RunnerOptions options_for(Engine engine, const at::Tensor& drive) {
  brain::RunnerOptions opt;
  opt.engine = engine;
  opt.progress = 0;
  opt.identity = "small-ei-v1";
  opt.inputs = {{"E.input", drive, true, brain::RunInput::Op::Set}, {"I.input", drive, true, brain::RunInput::Op::Set}};
  opt.monitors.push_back({"E.spike", std::nullopt, 1, "", at::kBool});
  opt.monitors.push_back({"E.V", torch::tensor({0, 5, 17}), 1, "", std::nullopt});
  opt.monitors.push_back({"I2E.syn.g", torch::tensor({3, 9}), 7, "gi", std::nullopt});
  opt.monitors.push_back({"I.V", std::nullopt, 250, "", std::nullopt});  // few samples; none in some segments
  return opt;
}

at::Tensor drive_for(int64_t steps) {
  return 20.0 + 2.0 * torch::sin(torch::arange(steps, torch::kFloat) / 37.0).unsqueeze(1);
}

std::shared_ptr<brain::DynSysGroup> network() {
  auto net = brain::build_ei_network(small_spec(), 11, c10::kCPU);
  net->reset_state();
  return net;
}

void expect_same_result(const brain::RunResult& a, const brain::RunResult& b) {
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.t_start, b.t_start);
  EXPECT_EQ(a.spike_counts, b.spike_counts);
  ASSERT_EQ(a.order, b.order);
  for (const auto& key : a.order) {
    ASSERT_EQ(a.values.at(key).sizes(), b.values.at(key).sizes()) << key;
    EXPECT_TRUE(torch::equal(a.values.at(key), b.values.at(key))) << key;
    EXPECT_TRUE(torch::equal(a.times.at(key), b.times.at(key))) << key;
  }
}

class Resume : public ::testing::TestWithParam<Engine> {};

TEST_P(Resume, FromTheLastCheckpointOfARunGivesTheSameMonitors) {
  torch::NoGradGuard no_grad;
  const at::Tensor drive = drive_for(kSteps);
  auto reference_net = network();
  brain::Runner reference(reference_net, options_for(GetParam(), drive));
  const brain::RunResult expected = reference.run_steps(kSteps);
  EXPECT_GT(expected.spike_counts.at("E"), 100);

  const std::string path = temp_path("run.ckpt");
  auto opt = options_for(GetParam(), drive);
  opt.checkpoint_path = path;
  opt.checkpoint_every = 70;  // checkpoints at 70, ..., 560; the run ends at 600
  auto first_net = network();
  expect_same_result(brain::Runner(first_net, opt).run_steps(kSteps), expected);

  auto resumed_net = network();
  brain::Runner resumed(resumed_net, opt);
  expect_same_result(resumed.resume(path), expected);
  for (const auto& p : reference_net->state_paths()) {
    EXPECT_TRUE(torch::equal(resumed_net->find_state(p), reference_net->find_state(p))) << p;
  }
}

TEST_P(Resume, AfterACrashMidRunGivesTheSameMonitors) {
  torch::NoGradGuard no_grad;
  const at::Tensor drive = drive_for(kSteps);
  brain::Runner reference(network(), options_for(GetParam(), drive));
  const brain::RunResult expected = reference.run_steps(kSteps);

  // The first attempt dies at step 250 (a NaN in its input stops it); its last checkpoint
  // is the one of step 210.
  const std::string path = temp_path("run.ckpt");
  at::Tensor poisoned = drive.clone();
  poisoned[250] = std::numeric_limits<float>::quiet_NaN();
  auto crashing = options_for(GetParam(), poisoned);
  crashing.checkpoint_path = path;
  crashing.checkpoint_every = 70;
  EXPECT_THROW(brain::Runner(network(), crashing).run_steps(kSteps), brain::NonFiniteError);

  auto opt = options_for(GetParam(), drive);
  opt.checkpoint_path = path;
  opt.checkpoint_every = 70;
  brain::Runner resumed(network(), opt);
  expect_same_result(resumed.resume(path), expected);
  // Resuming again from the last checkpoint (560) gives the same again.
  expect_same_result(brain::Runner(network(), opt).resume(path), expected);
}

INSTANTIATE_TEST_SUITE_P(Engines, Resume, ::testing::Values(Engine::Modules, Engine::Fast),
                         [](const auto& info) { return std::string(brain::engine_name(info.param)); });

TEST(Checkpoint, SaveAndLoadBetweenRunsContinuesTheSimulation) {
  torch::NoGradGuard no_grad;
  const at::Tensor drive = drive_for(200);
  brain::Runner straight(network(), options_for(Engine::Modules, drive));
  straight.run_steps(200);
  const brain::RunResult expected = straight.run_steps(200);

  const std::string path = temp_path("between.ckpt");
  brain::Runner first(network(), options_for(Engine::Modules, drive));
  first.run_steps(200);
  first.save_checkpoint(path);
  brain::Runner second(network(), options_for(Engine::Modules, drive));
  second.load_checkpoint(path);
  EXPECT_DOUBLE_EQ(second.context().t, 20.0);
  expect_same_result(second.run_steps(200), expected);
  // A between-runs checkpoint holds no run to finish.
  EXPECT_THROW(brain::Runner(network(), options_for(Engine::Modules, drive)).resume(path), io::CheckpointError);
}

// Loading a checkpoint into the system that wrote it rewinds it, also to the step it last
// executed: synapses that relax once per step must not take the replayed step as done.
TEST(Checkpoint, LoadingRewindsTheSameSystemEvenToItsLastStep) {
  torch::NoGradGuard no_grad;
  const at::Tensor drive = drive_for(200);
  const std::string path = temp_path("rewind.ckpt");
  brain::Runner runner(network(), options_for(Engine::Modules, drive));
  runner.run_steps(200);
  runner.save_checkpoint(path);
  for (int64_t steps : {1, 40}) {
    const brain::RunResult first = runner.run_steps(steps);
    runner.load_checkpoint(path);
    expect_same_result(runner.run_steps(steps), first);
    runner.load_checkpoint(path);
  }
}

std::string refusal(const std::function<void()>& f) {
  try {
    f();
  } catch (const io::CheckpointError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(Checkpoint, CheckpointsOfSomethingElseAreRefused) {
  torch::NoGradGuard no_grad;
  const at::Tensor drive = drive_for(100);
  const std::string path = temp_path("other.ckpt");
  auto opt = options_for(Engine::Modules, drive);
  opt.checkpoint_path = path;
  opt.checkpoint_every = 50;
  brain::Runner(network(), opt).run_steps(100);

  auto other_identity = opt;
  other_identity.identity = "another-config";
  EXPECT_NE(refusal([&] { brain::Runner(network(), other_identity).resume(path); }).find("different configuration"),
            std::string::npos);

  brain::EINetSpec bigger = small_spec();
  bigger.n_exc += 1;
  auto big_net = brain::build_ei_network(bigger, 11, c10::kCPU);
  big_net->reset_state();
  EXPECT_NE(refusal([&] { brain::Runner(big_net, opt).resume(path); }).find("does not match this system"),
            std::string::npos);

  // Same sizes, other connectivity (another seed): caught by the connectivity's hash.
  auto rewired = brain::build_ei_network(small_spec(), 12, c10::kCPU);
  rewired->reset_state();
  EXPECT_NE(refusal([&] { brain::Runner(rewired, opt).resume(path); }).find("xxh64"), std::string::npos);

  auto other_monitors = opt;
  other_monitors.monitors.pop_back();
  EXPECT_NE(refusal([&] { brain::Runner(network(), other_monitors).resume(path); }).find("monitor"), std::string::npos);

  // A refused checkpoint leaves the system as it was.
  auto net = network();
  const at::Tensor V0 = net->find_state("E.V").clone();
  EXPECT_NE(refusal([&] { brain::Runner(net, other_identity).resume(path); }), "accepted");
  EXPECT_TRUE(torch::equal(net->find_state("E.V"), V0));
}

class Guard : public ::testing::TestWithParam<Engine> {};

TEST_P(Guard, NaNInAnInputIsFoundAndNamed) {
  torch::NoGradGuard no_grad;
  at::Tensor drive = drive_for(kSteps);
  drive[137] = std::numeric_limits<float>::infinity() * 0;  // NaN
  auto opt = options_for(GetParam(), drive);
  opt.chunk_steps = 100;  // the module engine reads its sums per chunk: the step is exact anyway
  try {
    brain::Runner(network(), opt).run_steps(kSteps);
    FAIL() << "no error";
  } catch (const brain::NonFiniteError& e) {
    EXPECT_EQ(e.state(), "E.V");
    EXPECT_EQ(e.step(), 137);
    EXPECT_NE(std::string(e.what()).find("population 'E', variable 'V'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("step 137"), std::string::npos) << e.what();
  }
  opt.check_finite = false;
  EXPECT_NO_THROW(brain::Runner(network(), opt).run_steps(kSteps));
}

TEST_P(Guard, InfInAConductanceIsFoundAndNamed) {
  torch::NoGradGuard no_grad;
  auto net = network();
  // Only the E->I conductance onto one I neuron; I's V follows one step later.
  at::Tensor g = net->find_state("E2I.syn.g").clone();
  g[4] = std::numeric_limits<float>::infinity();
  net->find_system("E2I.syn").assign_state("g", g);
  auto opt = options_for(GetParam(), drive_for(kSteps));
  try {
    brain::Runner(net, opt).run_steps(kSteps);
    FAIL() << "no error";
  } catch (const brain::NonFiniteError& e) {
    EXPECT_EQ(e.step(), 0);
    EXPECT_TRUE(e.state() == "I.V" || e.state() == "E2I.syn.g") << e.state();
  }
}

// The module engine sums small CPU states itself and leaves large ones to at::sum: both
// paths, in both floating types, with the NaN in the last element (past any 8-wide block).
TEST(Guard, ModuleEngineFindsNaNInSmallAndLargeStates) {
  torch::NoGradGuard no_grad;
  for (const int64_t n : {int64_t{13}, int64_t{70'001}}) {
    for (const auto dtype : {at::kFloat, at::kDouble}) {
      auto lif = std::make_shared<brain::LIF>(n, brain::LifParams{}, dtype);
      lif->reset_state();
      at::Tensor V = lif->state("V").clone();
      V[n - 1] = std::numeric_limits<double>::quiet_NaN();
      lif->assign_state("V", V);
      brain::RunnerOptions opt;
      opt.engine = Engine::Modules;
      opt.progress = 0;
      try {
        brain::Runner(lif, opt).run_steps(5);
        ADD_FAILURE() << "no error for n = " << n << ", " << dtype;
      } catch (const brain::NonFiniteError& e) {
        EXPECT_EQ(e.state(), "V");
        EXPECT_EQ(e.step(), 0);
      }
    }
  }
}

// Delay histories hold copies of states pushed in earlier steps and are not summed themselves:
// a bad value that no synapse carries (neuron 3 has none) never matters; one that a synapse
// carries is found where it arrives (the synapse's conductance), at that step.
TEST(Guard, ModuleEngineFindsBadDelayedValuesWhereTheyArrive) {
  torch::NoGradGuard no_grad;
  for (const int64_t bad_neuron : {3, 0}) {
    auto net = std::make_shared<brain::DynSysGroup>("net");
    auto input = net->add("input", std::make_shared<brain::PoissonGroup>(4, 0.0, 1));
    auto post = net->add("post", std::make_shared<brain::LIF>(2, brain::LifParams{}, torch::kDouble));
    at::Tensor dense = torch::ones({4, 2}, torch::kDouble);
    dense[3] = 0.0;
    const auto conn = brain::CsrMatrix::from_dense(dense, torch::kInt);
    net->add("proj", std::make_shared<brain::AlignPostProj>(input, std::make_shared<brain::CsrComm>(conn, conn.weights),
                                                            std::make_shared<brain::Expon>(2, 5.0, torch::kDouble),
                                                            std::make_shared<brain::CUBA>(), post, 3));
    net->reset_state();
    // Step s reads slot (s - 3) mod 4: slot 2 at step 1.
    at::Tensor history = net->find_state("proj.delay.history").clone();
    history[2][bad_neuron] = std::numeric_limits<double>::quiet_NaN();
    net->find_system("proj.delay").assign_state("history", history);
    brain::RunnerOptions opt;
    opt.engine = Engine::Modules;
    opt.progress = 0;
    if (bad_neuron == 3) {
      EXPECT_NO_THROW(brain::Runner(net, opt).run_steps(10));
      EXPECT_TRUE(torch::isfinite(net->find_state("proj.syn.g")).all().item<bool>());
      continue;
    }
    try {
      brain::Runner(net, opt).run_steps(10);
      ADD_FAILURE() << "no error";
    } catch (const brain::NonFiniteError& e) {
      EXPECT_EQ(e.state(), "proj.syn.g");
      EXPECT_EQ(e.step(), 1);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, Guard, ::testing::Values(Engine::Modules, Engine::Fast),
                         [](const auto& info) { return std::string(brain::engine_name(info.param)); });

}  // namespace
