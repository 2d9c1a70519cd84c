// Replays the fuzzers' corpora (tests/fuzz/corpus/: seeds, and every finding turned into a
// regression input) through the fuzz targets in the normal suite, so what a fuzzer once found
// stays fixed on every build, with or without clang.
#include <filesystem>
#include <fstream>
#include <iterator>

#include <gtest/gtest.h>

#include "tests/fuzz/targets.h"

namespace {

void replay(const std::string& target, void (*fn)(const uint8_t*, size_t)) {
  const auto dir = std::filesystem::path(BRAIN_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / target;
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    SCOPED_TRACE(entry.path().string());
    fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());  // aborts on a finding
    ++files;
  }
  EXPECT_GT(files, 0);
}

TEST(FuzzCorpus, ConfigLoader) { replay("config", brain::fuzz::config); }
TEST(FuzzCorpus, OperatorArguments) { replay("ops", brain::fuzz::ops); }
TEST(FuzzCorpus, CheckpointReader) { replay("checkpoint", brain::fuzz::checkpoint); }

}  // namespace
