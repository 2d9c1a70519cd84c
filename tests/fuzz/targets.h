// Fuzz targets, shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.cpp, built with clang
// by scripts/fuzz.sh) and by the regression test that replays the corpora in the normal
// suite (tests/cpp/core/test_fuzz_corpus.cpp). Each target accepts any bytes: input that is
// rejected with the documented error is fine; a crash, a sanitizer report, another exception
// or a wrong answer (checked against an independent reference) is a finding, and aborts.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include <torch/torch.h>

#include <brain/dyn/runner.h>
#include <brain/io/checkpoint.h>
#include <brain/models/config.h>
#include <brain/models/networks.h>
#include <brain/ops.h>

namespace brain::fuzz {

[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "FUZZ FINDING: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// Reads the input as a stream of small numbers; past the end it yields zeros.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  uint8_t u8() { return i_ < n_ ? p_[i_++] : 0; }
  int8_t i8() { return static_cast<int8_t>(u8()); }
  uint32_t u32() {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v = (v << 8) | u8();
    return v;
  }
  double f64() {
    uint64_t bits = (static_cast<uint64_t>(u32()) << 32) | u32();
    double v;
    std::memcpy(&v, &bits, 8);
    return v;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t i_ = 0;
};

// ---- the JSON config loader: parse and build, no run ---------------------------------------
// Whatever parse_run_config accepts must build: the loader, not the builder, rejects configs.
inline void config(const uint8_t* data, size_t size) {
  RunConfig cfg;
  try {
    cfg = parse_run_config(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const ConfigError& e) {
    if (e.what()[0] != '/') finding(std::string("ConfigError without a JSON path: ") + e.what());
    return;
  }
  // `brain run` refuses what does not fit; the fuzzer's budget is small.
  if (estimate_run_memory(cfg).total() > 64e6) return;
  try {
    torch::NoGradGuard no_grad;
    auto net = build_ei_network(cfg.network, cfg.seed, c10::kCPU, cfg.dt_ms);
    net->reset_state();
  } catch (const std::exception& e) {
    finding(std::string("a config the loader accepted does not build: ") + e.what());
  }
}

// ---- the operators' argument validation (CPU), with a dense reference for what passes ------
inline void check_close(const at::Tensor& got, const at::Tensor& want, const char* op) {
  if (got.sizes() != want.sizes()) finding(std::string(op) + ": output shape differs from the reference");
  if (!torch::allclose(got.to(torch::kDouble), want.to(torch::kDouble), 1e-4, 1e-4, /*equal_nan=*/true)) {
    finding(std::string(op) + ": output differs from the dense reference");
  }
}

inline void csr_ops(Bytes& in) {
  const uint8_t flags = in.u8();
  const bool transpose = flags & 1, event = flags & 2, int32 = flags & 4, f64 = flags & 8;
  const bool batched = flags & 16, bool_x = flags & 32, per_entry = flags & 64;
  const int64_t rows = in.u8() % 9, cols = in.u8() % 9;
  const int64_t indptr_len = rows + 1 + (in.u8() % 5 == 0 ? in.i8() % 2 : 0);
  std::vector<int64_t> indptr(static_cast<size_t>(std::max<int64_t>(indptr_len, 1)));
  int64_t acc = 0;
  for (auto& v : indptr) {
    const int8_t step = in.i8();
    acc += step % 4 == 0 && step < 0 ? step % 3 : std::abs(step % 3);  // mostly monotone, sometimes not
    v = &v == indptr.data() && step % 7 != 0 ? 0 : acc;
  }
  const int64_t nnz = indptr.empty() ? 0 : std::max<int64_t>(0, indptr.back() + (in.u8() % 6 == 0 ? in.i8() % 2 : 0));
  std::vector<int64_t> indices(static_cast<size_t>(nnz));
  for (auto& v : indices) v = in.i8() % (cols + 2);
  const auto itype = int32 ? torch::kInt : torch::kLong;
  const auto ftype = f64 ? torch::kDouble : torch::kFloat;
  const at::Tensor ip = torch::tensor(indptr, torch::kLong).to(itype);
  const at::Tensor ix = torch::tensor(indices, torch::kLong).to(itype);
  const int64_t wlen = per_entry ? nnz + (in.u8() % 6 == 0 ? 1 : 0) : 1;
  const at::Tensor w = torch::randn({wlen}, torch::TensorOptions().dtype(ftype));
  const int64_t n_in = (transpose ? rows : cols) + (in.u8() % 8 == 0 ? 1 : 0);
  const int64_t batch = in.u8() % 3 + 1;
  at::Tensor x = batched ? torch::randn({batch, n_in}, ftype) : torch::randn({n_in}, ftype);
  if (bool_x) x = x > 0;
  // Bool events whose true bytes are not 1 (a uint8 tensor viewed as bool): torch, and so the
  // dense reference below, reads any non-zero byte as true; so must the op.
  if (bool_x && (flags & 128)) x = x.to(torch::kByte).mul(1 + (rows * 37 + cols * 11) % 255).view(torch::kBool);
  // What SPEC section 1 calls valid, decided independently of the op. The ops check the
  // ends of indptr and the operands on every call, and the rows they visit as they visit them
  // (validate_csr checks everything, once): the event scatter (event, transpose) visits only
  // the rows of active events, so only those must be valid for it. With nothing to compute
  // (an empty output) every op checks the whole structure.
  const bool sparse_visit = event && transpose && cols > 0;
  std::vector<bool> visited(static_cast<size_t>(std::max<int64_t>(rows, 0)), true);
  if (sparse_visit && n_in == rows) {
    const at::Tensor active = (batched ? x.to(torch::kDouble).abs().sum(0) : x.to(torch::kDouble).abs()) != 0;
    for (int64_t r = 0; r < rows; ++r) visited[static_cast<size_t>(r)] = active[r].item<bool>();
  }
  bool valid = static_cast<int64_t>(indptr.size()) == rows + 1 && indptr.front() == 0 && indptr.back() == nnz &&
               n_in == (transpose ? rows : cols) && (!per_entry || wlen == nnz || wlen == 1);  // [1]: homogeneous
  for (int64_t r = 0; valid && r < rows; ++r) {
    if (!visited[static_cast<size_t>(r)]) continue;
    const int64_t k0 = indptr[static_cast<size_t>(r)], k1 = indptr[static_cast<size_t>(r) + 1];
    valid = k0 <= k1 && k0 >= 0 && k1 <= nnz;
    for (int64_t k = k0; valid && k < k1; ++k) {
      valid = indices[static_cast<size_t>(k)] >= 0 && indices[static_cast<size_t>(k)] < cols;
    }
  }
  if (!sparse_visit) {
    for (const int64_t c : indices) valid = valid && c >= 0 && c < cols;
  }
  at::Tensor y;
  try {
    y = event ? ops::event_csr_matmul(ip, ix, per_entry ? w : w.reshape({}), x, {rows, cols}, transpose)
              : ops::csr_matmul(ip, ix, per_entry ? w : w.reshape({}), x, {rows, cols}, transpose);
  } catch (const c10::Error& e) {
    if (valid) finding(std::string("csr op rejected valid input: ") + e.what_without_backtrace());
    return;  // rejected with a message: what validation is for
  }
  if (!valid) finding("csr op accepted an invalid CSR structure or operand");
  at::Tensor dense = torch::zeros({rows, cols}, torch::kDouble);
  for (int64_t r = 0; r < rows; ++r) {
    if (!visited[static_cast<size_t>(r)]) continue;  // x is 0 there: contributes nothing
    for (int64_t k = indptr[static_cast<size_t>(r)]; k < indptr[static_cast<size_t>(r) + 1]; ++k) {
      dense[r][indices[static_cast<size_t>(k)]] += (per_entry && wlen == nnz ? w[k] : w[0]).to(torch::kDouble);
    }
  }
  const at::Tensor a = transpose ? dense.t() : dense;
  const at::Tensor xd = x.to(torch::kDouble);
  check_close(y, batched ? torch::matmul(xd, a.t()) : torch::mv(a, xd), event ? "event_csr_matmul" : "csr_matmul");
}

inline void jitc_ops(Bytes& in) {
  const uint8_t flags = in.u8();
  const bool transpose = flags & 1, event = flags & 2, f64 = flags & 4, batched = flags & 8;
  const char* dists[] = {"homo", "uniform", "normal", "lognormal"};
  const std::string dist = dists[(flags >> 4) % 4];
  const double probs[] = {0.0, 0.1, 0.5, 1.0, -0.2, 1.5, std::nan(""), 1e-300};
  const double prob = probs[in.u8() % 8];
  const int64_t rows = in.u8() % 40 - 2, cols = in.u8() % 40 - 2;
  const int64_t seed = static_cast<int64_t>(in.u32()) - (int64_t{1} << 31);
  const auto ftype = f64 ? torch::kDouble : torch::kFloat;
  std::vector<double> params(in.u8() % 4);
  for (auto& p : params) {
    const uint8_t k = in.u8();
    p = k % 5 == 0 ? in.f64() : (static_cast<double>(k % 9) - 4.0) / 2.0;  // sometimes anything, NaN included
  }
  const at::Tensor weight = torch::tensor(params, torch::kDouble).to(ftype);
  const int64_t n_in = std::max<int64_t>(0, (transpose ? rows : cols) + (in.u8() % 8 == 0 ? 1 : 0));
  at::Tensor x = batched ? torch::randn({in.u8() % 3 + 1, n_in}, ftype) : torch::randn({n_in}, ftype);
  if (flags & 64) x = x > 0;
  if (flags & 128) x = (x > 0).to(torch::kByte).mul(1 + (rows * 37 + cols * 11 + 255) % 255).view(torch::kBool);
  at::Tensor y;
  try {
    y = event ? ops::event_jitc_matmul(x, weight, prob, seed, {rows, cols}, dist, transpose)
              : ops::jitc_matmul(x, weight, prob, seed, {rows, cols}, dist, transpose);
  } catch (const c10::Error&) {
    return;
  }
  at::Tensor a;
  try {
    a = ops::jitc_materialize(weight, prob, seed, {rows, cols}, dist).to(torch::kDouble);
  } catch (const c10::Error& e) {
    finding(std::string("jitc_matmul accepted what jitc_materialize rejects: ") + e.what_without_backtrace());
  }
  if (transpose) a = a.t();
  const at::Tensor xd = x.to(torch::kDouble);
  check_close(y, batched ? torch::matmul(xd, a.t()) : torch::mv(a, xd), "jitc_matmul");
}

inline void ops(const uint8_t* data, size_t size) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(static_cast<uint64_t>(size));  // x and weights: the same for the same input
  Bytes in(data, size);
  if (in.u8() % 2 == 0) {
    csr_ops(in);
  } else {
    jitc_ops(in);
  }
}

// ---- the checkpoint reader ------------------------------------------------------------------
// Mode 0: the bytes as a file. Mode 1: the bytes as a payload, framed with a valid checksum,
// so the fuzzer gets past it to the parser. Mode 2: as 1, then loaded into a small network's
// runner, which must refuse it with CheckpointError unless it is a checkpoint of that network.
inline std::string framed(const uint8_t* payload, size_t n) {
  std::string out("BRAINCKP", 8);
  const uint32_t version = 1, reserved = 0;
  const uint64_t len = n, sum = io::xxh64(payload, n);
  out.append(reinterpret_cast<const char*>(&version), 4);
  out.append(reinterpret_cast<const char*>(&reserved), 4);
  out.append(reinterpret_cast<const char*>(&len), 8);
  out.append(reinterpret_cast<const char*>(payload), n);
  out.append(reinterpret_cast<const char*>(&sum), 8);
  out.append("BRAINEND", 8);
  return out;
}

inline void checkpoint(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const int mode = data[0] % 3;
  const std::string bytes = mode == 0 ? std::string(reinterpret_cast<const char*>(data + 1), size - 1)
                                      : framed(data + 1, size - 1);
  io::Checkpoint ck;
  try {
    ck = io::decode_checkpoint(bytes.data(), bytes.size(), "fuzz");
  } catch (const io::CheckpointError&) {
    return;
  }
  // What decodes re-encodes to the same bytes.
  if (io::encode_checkpoint(ck) != bytes) finding("a decoded checkpoint does not re-encode to its bytes");
  if (mode != 2) return;
  static const std::string path = (std::filesystem::temp_directory_path() /
                                   ("brain_fuzz_" + std::to_string(::getpid()) + ".ckpt")).string();
  io::write_checkpoint_file(path, ck);
  torch::NoGradGuard no_grad;
  EINetSpec spec;
  spec.n_exc = 8;
  spec.n_inh = 2;
  spec.p = 0.5;
  auto net = build_ei_network(spec, 1, c10::kCPU);
  net->reset_state();
  RunnerOptions opt;
  opt.progress = 0;
  opt.monitors.push_back({"E.V", std::nullopt, 1, "", std::nullopt});
  Runner runner(net, opt);
  try {
    runner.resume(path);
  } catch (const io::CheckpointError&) {
  } catch (const c10::Error&) {
  }
}

}  // namespace brain::fuzz
