// Internal: the subcommands of the `brain` tool and its exit codes.
#pragma once

#include <string>
#include <vector>

namespace brain::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

int run(const std::vector<std::string>& args);
int script(const std::vector<std::string>& args);
int analyze(const std::vector<std::string>& args);

}  // namespace brain::cli
