#include <brain/io/checkpoint.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>

#include <ATen/ATen.h>

namespace brain::io {

namespace {

constexpr char kMagic[8] = {'B', 'R', 'A', 'I', 'N', 'C', 'K', 'P'};
constexpr char kEnd[8] = {'B', 'R', 'A', 'I', 'N', 'E', 'N', 'D'};
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kPrefix = 8 + 4 + 4 + 8;
constexpr std::size_t kSuffix = 8 + 8;
constexpr std::size_t kMaxNameBytes = 4096;
constexpr int kMaxDims = 16;

// The dtypes a checkpoint holds, with codes of its own (stable across torch versions).
constexpr std::pair<std::uint8_t, at::ScalarType> kTypes[] = {
    {1, at::kBool},  {2, at::kByte},  {3, at::kChar},     {4, at::kShort},  {5, at::kInt},
    {6, at::kLong},  {7, at::kHalf},  {8, at::kBFloat16}, {9, at::kFloat},  {10, at::kDouble},
};

std::uint8_t code_of(at::ScalarType t) {
  for (const auto& [code, type] : kTypes) {
    if (type == t) return code;
  }
  throw std::invalid_argument(std::string("checkpoint: cannot store tensors of dtype ") + c10::toString(t));
}

constexpr std::uint64_t P1 = 0x9E3779B185EBCA87ull, P2 = 0xC2B2AE3D27D4EB4Full, P3 = 0x165667B19E3779F9ull,
                        P4 = 0x85EBCA77C2B2AE63ull, P5 = 0x27D4EB2F165667C5ull;

inline std::uint64_t rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline std::uint64_t read64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline std::uint32_t read32(const unsigned char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline std::uint64_t round64(std::uint64_t acc, std::uint64_t input) { return rotl(acc + input * P2, 31) * P1; }
inline std::uint64_t merge64(std::uint64_t acc, std::uint64_t val) { return (acc ^ round64(0, val)) * P1 + P4; }

void put(std::string& out, const void* p, std::size_t n) { out.append(static_cast<const char*>(p), n); }
template <typename T>
void put_int(std::string& out, T v) {
  put(out, &v, sizeof v);
}

// Reads the payload with every length checked against what is left.
class Cursor {
 public:
  Cursor(const unsigned char* p, std::size_t n, const std::string& what) : p_(p), left_(n), what_(what) {}
  template <typename T>
  T get(const char* field) {
    T v;
    std::memcpy(&v, take(sizeof v, field), sizeof v);
    return v;
  }
  const unsigned char* take(std::size_t n, const char* field) {
    if (n > left_) fail(std::string("truncated (") + field + " runs past the end of the payload)");
    const unsigned char* at = p_;
    p_ += n;
    left_ -= n;
    return at;
  }
  std::size_t left() const { return left_; }
  [[noreturn]] void fail(const std::string& why) const {
    throw CheckpointError("checkpoint '" + what_ + "' is not usable: " + why);
  }

 private:
  const unsigned char* p_;
  std::size_t left_;
  const std::string& what_;
};

std::string errno_text() { return std::strerror(errno); }

// Reads up to `size` bytes (fewer at the end of the file) and returns how many; on an error
// closes fd and throws naming `what`.
std::size_t read_up_to(int fd, char* data, std::size_t size, const std::string& what) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = errno_text();
      ::close(fd);
      throw CheckpointError("cannot read " + what + ": " + why);
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

void write_all(int fd, const std::string& bytes, const std::string& path) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("checkpoint: cannot write '" + path + "': " + errno_text());
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed) {
  // Offsets, not pointer comparisons: an empty tensor hands us a null pointer, and null + 8 is
  // undefined even when it is only compared.
  const auto* bytes = static_cast<const unsigned char*>(data);
  std::size_t at = 0;
  std::uint64_t h;
  if (size >= 32) {
    std::uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
    do {
      v1 = round64(v1, read64(bytes + at));
      v2 = round64(v2, read64(bytes + at + 8));
      v3 = round64(v3, read64(bytes + at + 16));
      v4 = round64(v4, read64(bytes + at + 24));
      at += 32;
    } while (size - at >= 32);
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = merge64(h, v1);
    h = merge64(h, v2);
    h = merge64(h, v3);
    h = merge64(h, v4);
  } else {
    h = seed + P5;
  }
  h += static_cast<std::uint64_t>(size);
  for (; size - at >= 8; at += 8) h = rotl(h ^ round64(0, read64(bytes + at)), 27) * P1 + P4;
  if (size - at >= 4) {
    h = rotl(h ^ (static_cast<std::uint64_t>(read32(bytes + at)) * P1), 23) * P2 + P3;
    at += 4;
  }
  for (; at < size; ++at) h = rotl(h ^ (static_cast<std::uint64_t>(bytes[at]) * P5), 11) * P1;
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

bool Checkpoint::has(const std::string& name) const {
  for (const auto& item : tensors) {
    if (item.first == name) return true;
  }
  return false;
}

const at::Tensor& Checkpoint::tensor(const std::string& name) const {
  for (const auto& item : tensors) {
    if (item.first == name) return item.second;
  }
  throw CheckpointError("checkpoint has no tensor '" + name + "'");
}

std::string encode_checkpoint(const Checkpoint& checkpoint) {
  // Written in place (one copy of the data, not a payload and then the file): checkpoints
  // carry the monitors recorded so far, which can be most of a process's memory.
  std::size_t bytes = kPrefix + kSuffix + 16 + checkpoint.header.size();
  for (const auto& [name, tensor] : checkpoint.tensors) {
    bytes += 4 + name.size() + 2 + 8 * static_cast<std::size_t>(tensor.dim()) + 8 + tensor.numel() * tensor.element_size();
  }
  std::string out;
  out.reserve(bytes);
  put(out, kMagic, 8);
  put_int<std::uint32_t>(out, kVersion);
  put_int<std::uint32_t>(out, 0);
  put_int<std::uint64_t>(out, 0);  // the payload length, filled in below
  const std::size_t payload_start = out.size();
  put_int<std::uint64_t>(out, checkpoint.header.size());
  put(out, checkpoint.header.data(), checkpoint.header.size());
  put_int<std::uint64_t>(out, checkpoint.tensors.size());
  for (const auto& [name, tensor] : checkpoint.tensors) {
    if (name.empty() || name.size() > kMaxNameBytes) {
      throw std::invalid_argument("checkpoint: tensor names must have 1 to 4096 bytes, got '" + name + "'");
    }
    if (tensor.dim() > kMaxDims) throw std::invalid_argument("checkpoint: tensor '" + name + "' has more than 16 dimensions");
    const at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    put_int<std::uint32_t>(out, static_cast<std::uint32_t>(name.size()));
    put(out, name.data(), name.size());
    put_int<std::uint8_t>(out, code_of(t.scalar_type()));
    put_int<std::uint8_t>(out, static_cast<std::uint8_t>(t.dim()));
    for (const int64_t s : t.sizes()) put_int<std::uint64_t>(out, static_cast<std::uint64_t>(s));
    const std::size_t data_bytes = t.numel() * t.element_size();
    put_int<std::uint64_t>(out, data_bytes);
    if (data_bytes) put(out, t.data_ptr(), data_bytes);
  }
  const std::uint64_t payload_bytes = out.size() - payload_start;
  std::memcpy(&out[payload_start - 8], &payload_bytes, 8);
  put_int<std::uint64_t>(out, xxh64(out.data() + payload_start, payload_bytes));
  put(out, kEnd, 8);
  return out;
}

Checkpoint decode_checkpoint(const void* data, std::size_t size, const std::string& what) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  Cursor file(bytes, size, what);
  if (size < kPrefix + kSuffix) file.fail("too short to be a checkpoint (" + std::to_string(size) + " bytes)");
  if (std::memcmp(bytes, kMagic, 8) != 0) file.fail("not a libbrain checkpoint (bad magic)");
  file.take(8, "magic");
  const auto version = file.get<std::uint32_t>("version");
  if (version != kVersion) {
    file.fail("format version " + std::to_string(version) + ", this libbrain reads version " + std::to_string(kVersion));
  }
  if (file.get<std::uint32_t>("reserved") != 0) file.fail("reserved header field is not zero");
  const auto payload_bytes = file.get<std::uint64_t>("payload length");
  if (payload_bytes != size - kPrefix - kSuffix) {
    file.fail("truncated or padded: the header announces " + std::to_string(payload_bytes) + " payload bytes, the file has " +
              std::to_string(size - kPrefix - kSuffix));
  }
  const unsigned char* payload = file.take(payload_bytes, "payload");
  const auto stored = file.get<std::uint64_t>("checksum");
  if (std::memcmp(file.take(8, "end marker"), kEnd, 8) != 0) file.fail("bad end marker");
  if (xxh64(payload, payload_bytes) != stored) file.fail("checksum mismatch (the file is corrupt)");

  Cursor in(payload, payload_bytes, what);
  Checkpoint out;
  const auto header_bytes = in.get<std::uint64_t>("header length");
  const unsigned char* header = in.take(header_bytes, "header");
  out.header.assign(reinterpret_cast<const char*>(header), header_bytes);
  const auto count = in.get<std::uint64_t>("tensor count");
  // Every entry takes at least 4 + 1 + 1 + 1 + 8 bytes: an absurd count fails here, not in reserve().
  if (count > in.left() / 15) in.fail("tensor count " + std::to_string(count) + " exceeds what the payload can hold");
  out.tensors.reserve(count);
  for (std::uint64_t k = 0; k < count; ++k) {
    const auto name_bytes = in.get<std::uint32_t>("tensor name length");
    if (name_bytes == 0 || name_bytes > kMaxNameBytes) in.fail("tensor " + std::to_string(k) + " has a bad name length");
    std::string name(reinterpret_cast<const char*>(in.take(name_bytes, "tensor name")), name_bytes);
    const auto code = in.get<std::uint8_t>("dtype");
    std::optional<at::ScalarType> type;
    for (const auto& [c, t] : kTypes) {
      if (c == code) type = t;
    }
    if (!type) in.fail("tensor '" + name + "' has unknown dtype code " + std::to_string(code));
    const auto ndim = in.get<std::uint8_t>("ndim");
    if (ndim > kMaxDims) in.fail("tensor '" + name + "' has " + std::to_string(ndim) + " dimensions");
    std::vector<int64_t> sizes(ndim);
    std::uint64_t numel = 1;
    for (auto& s : sizes) {
      const auto d = in.get<std::uint64_t>("tensor size");
      if (d > static_cast<std::uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (d != 0 && numel > std::numeric_limits<std::uint64_t>::max() / d)) {
        in.fail("tensor '" + name + "' has an impossible shape");
      }
      numel *= d;
      s = static_cast<int64_t>(d);
    }
    const auto data_bytes = in.get<std::uint64_t>("tensor data length");
    const std::uint64_t element = c10::elementSize(*type);
    if (numel > std::numeric_limits<std::uint64_t>::max() / element || numel * element != data_bytes) {
      in.fail("tensor '" + name + "': " + std::to_string(data_bytes) + " data bytes do not match its shape");
    }
    const unsigned char* src = in.take(data_bytes, "tensor data");
    at::Tensor t = at::empty(sizes, at::TensorOptions().dtype(*type));
    if (data_bytes) std::memcpy(t.data_ptr(), src, data_bytes);
    out.tensors.emplace_back(std::move(name), std::move(t));
  }
  if (in.left() != 0) in.fail(std::to_string(in.left()) + " stray bytes after the last tensor");
  return out;
}

namespace {

// Fault injection for the crash tests (tests/python/test_reliability.py): with
// BRAIN_FAULT_KILL_IN_CHECKPOINT=N in the environment, the process SIGKILLs itself half-way
// through writing the N-th checkpoint file (from 1), the worst moment a power cut could pick.
void maybe_die_half_way(int fd, const std::string& bytes, const std::string& tmp) {
  static const long target = [] {
    const char* v = std::getenv("BRAIN_FAULT_KILL_IN_CHECKPOINT");
    return v ? std::strtol(v, nullptr, 10) : 0L;
  }();
  static long writes = 0;
  if (target <= 0 || ++writes != target) return;
  write_all(fd, bytes.substr(0, bytes.size() / 2), tmp);
  ::raise(SIGKILL);
}

}  // namespace

void write_checkpoint_file(const std::string& path, const Checkpoint& checkpoint) {
  const std::string bytes = encode_checkpoint(checkpoint);
  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("checkpoint: cannot create '" + tmp + "': " + errno_text());
  try {
    maybe_die_half_way(fd, bytes, tmp);
    write_all(fd, bytes, tmp);
    if (::fsync(fd) != 0) throw std::runtime_error("checkpoint: fsync of '" + tmp + "' failed: " + errno_text());
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw std::runtime_error("checkpoint: cannot close '" + tmp + "': " + errno_text());
  }
  // The rename is the commit point: before it <path> is the previous checkpoint, after it the new one.
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw std::runtime_error("checkpoint: cannot rename '" + tmp + "' to '" + path + "': " + why);
  }
  // Makes the rename itself durable; a failure here leaves a complete file, so it is not fatal.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

Checkpoint read_checkpoint_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError("cannot open checkpoint '" + path + "': " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw CheckpointError("checkpoint '" + path + "' is not a regular file");
  }
  std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
  const std::size_t done = read_up_to(fd, bytes.data(), bytes.size(), "checkpoint '" + path + "'");
  ::close(fd);
  bytes.resize(done);
  return decode_checkpoint(bytes.data(), bytes.size(), path);
}


namespace {

std::string read_prefix(const std::string& path, std::uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError("cannot open the recordings file '" + path + "': " + errno_text());
  std::string data(static_cast<std::size_t>(bytes), '\0');
  const std::size_t done = read_up_to(fd, data.data(), data.size(), "the recordings file '" + path + "'");
  ::close(fd);
  if (done < data.size()) {
    throw CheckpointError("the recordings file '" + path + "' is truncated: " + std::to_string(done) +
                          " bytes, the checkpoint counts " + std::to_string(bytes));
  }
  return data;
}

}  // namespace

std::uint64_t append_record(const std::string& path, std::uint64_t valid_bytes, const Checkpoint& record) {
  const std::string bytes = encode_checkpoint(record);
  const std::filesystem::path target(path);
  if (target.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(target.parent_path(), ec);
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("checkpoint: cannot open '" + path + "': " + errno_text());
  try {
    if (::ftruncate(fd, static_cast<off_t>(valid_bytes)) != 0) {
      throw std::runtime_error("checkpoint: cannot cut '" + path + "' to its valid length: " + errno_text());
    }
    if (::lseek(fd, static_cast<off_t>(valid_bytes), SEEK_SET) < 0) {
      throw std::runtime_error("checkpoint: cannot seek in '" + path + "': " + errno_text());
    }
    std::string framed;
    put_int<std::uint64_t>(framed, bytes.size());
    framed += bytes;
    write_all(fd, framed, path);
    if (::fsync(fd) != 0) throw std::runtime_error("checkpoint: fsync of '" + path + "' failed: " + errno_text());
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) throw std::runtime_error("checkpoint: cannot close '" + path + "': " + errno_text());
  return valid_bytes + sizeof(std::uint64_t) + bytes.size();
}

std::vector<Checkpoint> read_records(const std::string& path, std::uint64_t valid_bytes) {
  const std::string data = read_prefix(path, valid_bytes);
  std::vector<Checkpoint> records;
  std::size_t at = 0;
  while (at < data.size()) {
    if (data.size() - at < sizeof(std::uint64_t)) {
      throw CheckpointError("the recordings file '" + path + "' is damaged: a record's length is cut");
    }
    const std::uint64_t n = read64(reinterpret_cast<const unsigned char*>(data.data() + at));
    at += sizeof(std::uint64_t);
    if (n > data.size() - at) throw CheckpointError("the recordings file '" + path + "' is damaged: a record is cut");
    records.push_back(decode_checkpoint(data.data() + at, static_cast<std::size_t>(n), path));
    at += static_cast<std::size_t>(n);
  }
  return records;
}

void copy_record_prefix(const std::string& from, const std::string& to, std::uint64_t bytes) {
  const std::string data = read_prefix(from, bytes);
  const std::filesystem::path target(to);
  if (target.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(target.parent_path(), ec);
  }
  const std::string tmp = to + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("checkpoint: cannot create '" + tmp + "': " + errno_text());
  try {
    write_all(fd, data, tmp);
    if (::fsync(fd) != 0) throw std::runtime_error("checkpoint: fsync of '" + tmp + "' failed: " + errno_text());
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), to.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw std::runtime_error("checkpoint: cannot rename '" + tmp + "' to '" + to + "': " + why);
  }
}

}  // namespace brain::io
