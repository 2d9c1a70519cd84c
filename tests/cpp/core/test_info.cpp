#include <brain/info.h>

#include <algorithm>
#include <regex>

#include <gtest/gtest.h>
#include <torch/library.h>

// A private op registered only in this test binary, so registered_ops() has something of
// ours to find whatever op families exist.
TORCH_LIBRARY_FRAGMENT(brain, m) { m.def("_info_test_probe(Tensor x, SymInt n=3) -> Tensor"); }

namespace {

TEST(Info, VersionIsSemverAndMatchesHeader) {
  EXPECT_EQ(brain::version(), BRAIN_VERSION);
  EXPECT_TRUE(std::regex_match(brain::version(), std::regex(R"(\d+\.\d+\.\d+)")))
      << brain::version();
}

TEST(Info, RuntimeTorchMatchesBuildTorch) {
  const auto info = brain::build_info();
  EXPECT_EQ(info.torch_build_version, BRAIN_TORCH_BUILD_VERSION);
  EXPECT_EQ(info.torch_runtime_version, info.torch_build_version);
}

TEST(Info, RegisteredOpsListsOnlyBrainNamespaceSorted) {
  const auto ops = brain::registered_ops();
  ASSERT_FALSE(ops.empty());
  for (const auto& op : ops) EXPECT_EQ(op.name.rfind("brain::", 0), 0u) << op.name;
  EXPECT_TRUE(std::is_sorted(ops.begin(), ops.end(),
                             [](const auto& a, const auto& b) { return a.name < b.name; }));
  const auto probe = std::find_if(ops.begin(), ops.end(),
                                  [](const auto& op) { return op.name == "brain::_info_test_probe"; });
  ASSERT_NE(probe, ops.end());
  EXPECT_EQ(probe->schema, "brain::_info_test_probe(Tensor x, SymInt n=3) -> Tensor");
}

TEST(Info, CudaFieldsAreConsistent) {
  const auto info = brain::build_info();
  EXPECT_EQ(info.with_cuda, BRAIN_WITH_CUDA != 0);
  if (!info.cuda_available) {
    EXPECT_EQ(info.cuda_device_count, 0);
  }
  if (info.with_cuda && info.cuda_available) {
    EXPECT_EQ(static_cast<int>(info.devices.size()), info.cuda_device_count);
  } else {
    EXPECT_TRUE(info.devices.empty());
  }
}

TEST(Info, ReportNamesVersionsAndEveryOp) {
  const auto info = brain::build_info();
  const auto text = brain::format_build_info(info);
  EXPECT_NE(text.find("libbrain " + info.version), std::string::npos);
  EXPECT_NE(text.find("torch (built with):  " + info.torch_build_version), std::string::npos);
  EXPECT_NE(text.find("operators (" + std::to_string(info.ops.size()) + ")"), std::string::npos);
  for (const auto& op : info.ops) EXPECT_NE(text.find(op.schema), std::string::npos) << op.name;
  EXPECT_EQ(text.find("MISMATCH"), std::string::npos);
}

}  // namespace
