// .npz archives: streamed writes, ZIP64 past 4 GiB (forced here with a small limit), read
// back by libbrain and, where Python with numpy is installed, by numpy.load.
#include <brain/io/npz.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

std::vector<std::pair<std::string, at::Tensor>> sample() {
  return {{"spikes", torch::rand({50, 7}) < 0.3},
          {"V", torch::randn({50, 3}, torch::kDouble)},
          {"t", torch::arange(50, torch::kFloat)}};
}

void expect_round_trip(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& arrays) {
  const auto back = brain::io::load_npz(path);
  ASSERT_EQ(back.size(), arrays.size());
  for (size_t i = 0; i < arrays.size(); ++i) {
    EXPECT_EQ(back[i].first, arrays[i].first);
    EXPECT_TRUE(torch::equal(back[i].second, arrays[i].second)) << arrays[i].first;
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

bool numpy_reads(const std::string& path) {
  if (std::system("python3 -c 'import numpy' > /dev/null 2>&1") != 0) return true;  // nothing to ask
  const std::string cmd = "python3 -c \"import numpy, sys; d = numpy.load(sys.argv[1]); "
                          "assert sorted(d.files) == ['V', 'spikes', 't'], d.files; "
                          "assert d['spikes'].shape == (50, 7) and d['V'].dtype == numpy.float64\" " + path;
  return std::system(cmd.c_str()) == 0;
}

TEST(Npz, PlainArchiveRoundTripsAndNumpyReadsIt) {
  const std::string path = std::filesystem::temp_directory_path() / ("brain_npz_" + std::to_string(::getpid()) + ".npz");
  const auto arrays = sample();
  brain::io::save_npz(path, arrays);
  expect_round_trip(path, arrays);
  EXPECT_TRUE(numpy_reads(path));
  std::filesystem::remove(path);
}

TEST(Npz, Zip64RecordsRoundTripAndNumpyReadsThem) {
  const std::string path = std::filesystem::temp_directory_path() / ("brain_npz64_" + std::to_string(::getpid()) + ".npz");
  const auto arrays = sample();
  // Every size and offset counts as "past the limit": local and central ZIP64 fields and the
  // ZIP64 end records are all written.
  brain::io::detail::save_npz_zip64_above(path, arrays, 0);
  expect_round_trip(path, arrays);
  EXPECT_TRUE(numpy_reads(path));
  // With the limit in the middle, some entries need ZIP64 offsets only.
  brain::io::detail::save_npz_zip64_above(path, arrays, 1200);
  expect_round_trip(path, arrays);
  EXPECT_TRUE(numpy_reads(path));
  std::filesystem::remove(path);
}

}  // namespace
