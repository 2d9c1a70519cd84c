// `brain script MODULE.pt [--inputs IN.pt] [--out OUT.pt] [--method NAME]`: loads a TorchScript
// module saved from Python (torch.jit.save) with torch::jit::load -- its torch.ops.brain.* calls
// resolve to this library's operators -- calls a method on the inputs (a tensor, or a tuple or
// list of tensors, saved with torch.save), and writes the result with torch::jit::pickle_save, which
// Python reads back with torch.load.
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include "csrc/cli/commands.h"

namespace brain::cli {

namespace {

const char* kScriptUsage =
    "usage: brain script MODULE.pt [--inputs IN.pt] [--out OUT.pt] [--method forward]\n"
    "  IN.pt: torch.save of a tensor or a tuple/list of tensors (the method's arguments)\n"
    "  OUT.pt: the result, readable with torch.load (default: print a summary only)\n";

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open '" + path + "'");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<c10::IValue> as_arguments(const c10::IValue& v) {
  if (v.isTuple()) {
    const auto& elems = v.toTupleRef().elements();
    return std::vector<c10::IValue>(elems.begin(), elems.end());  // not {}: that would be an initializer list
  }
  if (v.isList()) {
    std::vector<c10::IValue> out;
    for (const auto& e : v.toListRef()) out.push_back(e);
    return out;
  }
  return {v};
}

void describe(std::ostream& os, const c10::IValue& v) {
  if (v.isTensor()) {
    os << "tensor " << v.toTensor().sizes() << " " << v.toTensor().scalar_type();
  } else if (v.isTuple()) {
    os << "tuple(";
    const auto& elems = v.toTupleRef().elements();
    for (size_t i = 0; i < elems.size(); ++i) {
      if (i) os << ", ";
      describe(os, elems[i]);
    }
    os << ")";
  } else {
    os << v.tagKind();
  }
}

}  // namespace

int script(const std::vector<std::string>& args) {
  std::string module_path, inputs_path, out_path, method = "forward";
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& dst) {
      if (i + 1 >= args.size()) return false;
      dst = args[++i];
      return true;
    };
    bool ok = true;
    if (a == "--inputs") ok = value(inputs_path);
    else if (a == "--out") ok = value(out_path);
    else if (a == "--method") ok = value(method);
    else if (!a.empty() && a[0] == '-') ok = false;
    else if (module_path.empty()) module_path = a;
    else ok = false;
    if (!ok) {
      std::cerr << "brain script: bad argument '" << a << "'\n\n" << kScriptUsage;
      return kExitUsage;
    }
  }
  if (module_path.empty()) {
    std::cerr << kScriptUsage;
    return kExitUsage;
  }
  torch::jit::Module module = torch::jit::load(module_path);
  module.eval();
  std::vector<c10::IValue> inputs;
  if (!inputs_path.empty()) inputs = as_arguments(torch::jit::pickle_load(read_file(inputs_path)));
  const auto fn = module.find_method(method);
  if (!fn) {
    std::cerr << "brain script: the module has no method '" << method << "'\n";
    return kExitUsage;
  }
  c10::IValue result;
  {
    torch::NoGradGuard no_grad;
    result = (*fn)(inputs);
  }
  std::cout << module_path << "." << method << " -> ";
  describe(std::cout, result);
  std::cout << "\n";
  if (!out_path.empty()) {
    const std::vector<char> bytes = torch::jit::pickle_save(result);
    std::ofstream out(out_path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write '" + out_path + "'");
  }
  return kExitOk;
}

}  // namespace brain::cli
