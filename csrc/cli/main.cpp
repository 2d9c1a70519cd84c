// The `brain` command-line tool. Exit codes: 0 success, 2 bad usage, 1 failure while running.
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <brain/dist/dist.h>

#include <brain/brain.h>

#include "csrc/cli/commands.h"

namespace {

using brain::cli::kExitFailure;
using brain::cli::kExitOk;
using brain::cli::kExitUsage;

const char* kUsage =
    "usage: brain <command> [options]\n"
    "\n"
    "commands:\n"
    "  run CONFIG.json [--duration MS] [--device cpu|cuda] [--seed N] [--out DIR]\n"
    "                  [--checkpoint PATH --checkpoint-every STEPS] [--resume PATH]\n"
    "                  simulate a model (e.g. models/coba.json); writes monitors.npz,\n"
    "                  summary.json, raster.svg and traces.svg into DIR (default out/<name>);\n"
    "                  brain run --help for every option\n"
    "  script MODULE.pt [--inputs IN.pt] [--out OUT.pt] [--method NAME]\n"
    "                  run a TorchScript module saved from Python (torch.jit.save) in C++;\n"
    "                  inputs and result in torch.save format\n"
    "  analyze CONFIG.json [--out DIR]\n"
    "                  phase plane or bifurcation of a built-in model (e.g.\n"
    "                  models/analysis_fhn_bifurcation.json); writes summary.json and figure.svg\n"
    "  info [--json]   version, torch versions, CUDA devices and registered operators\n"
    "  version         print the libbrain version\n"
    "  help            show this message\n";

nlohmann::json to_json(const brain::BuildInfo& info) {
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& d : info.devices) {
    devices.push_back({{"index", d.index},
                       {"name", d.name},
                       {"compute_capability", std::to_string(d.compute_major) + "." +
                                                  std::to_string(d.compute_minor)},
                       {"multiprocessors", d.multiprocessors},
                       {"total_memory_bytes", d.total_memory_bytes}});
  }
  nlohmann::json ops = nlohmann::json::array();
  for (const auto& op : info.ops) ops.push_back({{"name", op.name}, {"schema", op.schema}});
  return {{"version", info.version},
          {"torch_build_version", info.torch_build_version},
          {"torch_runtime_version", info.torch_runtime_version},
          {"with_cuda", info.with_cuda},
          {"cuda_available", info.cuda_available},
          {"cuda_device_count", info.cuda_device_count},
          {"distributed", brain::dist::available()},
          {"devices", devices},
          {"ops", ops}};
}

int cmd_info(const std::vector<std::string>& args) {
  bool as_json = false;
  for (const auto& a : args) {
    if (a == "--json") {
      as_json = true;
    } else {
      std::cerr << "brain info: unknown option '" << a << "'\n\n" << kUsage;
      return kExitUsage;
    }
  }
  const auto info = brain::build_info();
  if (as_json) {
    std::cout << to_json(info).dump(2) << "\n";
  } else {
    std::cout << brain::format_build_info(info);
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  const std::string command = args.front();
  args.erase(args.begin());
  try {
    if (command == "info") return cmd_info(args);
    if (command == "run") return brain::cli::run(args);
    if (command == "script") return brain::cli::script(args);
    if (command == "analyze") return brain::cli::analyze(args);
    if (command == "version" || command == "--version") {
      std::cout << brain::version() << "\n";
      return kExitOk;
    }
    if (command == "help" || command == "--help" || command == "-h") {
      std::cout << kUsage;
      return kExitOk;
    }
    std::cerr << "brain: unknown command '" << command << "'\n\n" << kUsage;
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "brain " << command << ": error: " << e.what() << "\n";
    return kExitFailure;
  }
}
