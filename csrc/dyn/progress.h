// Internal: the progress bar both runner engines draw on stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>

namespace brain::detail {

using Clock = std::chrono::steady_clock;

class ProgressBar {
 public:
  // initial: steps already done when the bar starts (a resumed run); the rate counts the rest.
  ProgressBar(int64_t total, bool enabled, int64_t initial = 0)
      : total_(total), initial_(initial), enabled_(enabled && total > 0), start_(Clock::now()) {}

  void update(int64_t done) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(done - initial_) / elapsed : 0;
    const double eta = rate > 0 ? (total_ - done) / rate : 0;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * done / total_);
    std::fprintf(stderr, "\r[%.*s%.*s] %3d%% %lld/%lld steps, %.0f steps/s, ETA %.1fs ", filled,
                 "##############################", kWidth - filled, "------------------------------",
                 static_cast<int>(100 * done / total_), static_cast<long long>(done),
                 static_cast<long long>(total_), rate, eta);
    if (done == total_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  int64_t total_;
  int64_t initial_;
  bool enabled_;
  Clock::time_point start_, last_;
};

}  // namespace brain::detail
