#include <brain/io/npz.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <torch/torch.h>

namespace brain::io {
namespace {

struct DtypeCode {
  at::ScalarType type;
  const char* descr;
};
constexpr std::array<DtypeCode, 9> kDtypes{{{at::kBool, "|b1"},
                                            {at::kByte, "|u1"},
                                            {at::kChar, "|i1"},
                                            {at::kShort, "<i2"},
                                            {at::kInt, "<i4"},
                                            {at::kLong, "<i8"},
                                            {at::kHalf, "<f2"},
                                            {at::kFloat, "<f4"},
                                            {at::kDouble, "<f8"}}};

// CRC-32 (ZIP's), continued from `crc` over n more bytes; start with crc32_update(0, ...).
uint32_t crc32_update(uint32_t crc, const void* data, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = crc ^ 0xFFFFFFFFu;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}
uint32_t crc32(const std::string& data) { return crc32_update(0, data.data(), data.size()); }

void put16(std::string& out, uint16_t v) { out.append(reinterpret_cast<const char*>(&v), 2); }
void put32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void put64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
uint64_t get64(const std::string& s, size_t at) { uint64_t v; std::memcpy(&v, s.data() + at, 8); return v; }
uint16_t get16(const std::string& s, size_t at) { uint16_t v; std::memcpy(&v, s.data() + at, 2); return v; }
uint32_t get32(const std::string& s, size_t at) { uint32_t v; std::memcpy(&v, s.data() + at, 4); return v; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, "cannot open '", path, "' for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  TORCH_CHECK(out, "cannot open '", path, "' for writing");
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  TORCH_CHECK(out.good(), "writing '", path, "' failed");
}

}  // namespace

namespace {

// The tensor as .npy stores it: on the CPU, contiguous, in a dtype numpy has.
at::Tensor npy_ready(const at::Tensor& tensor_in, const DtypeCode*& code) {
  at::Tensor t = tensor_in.detach().to(at::kCPU);
  if (t.scalar_type() == at::kBFloat16) t = t.to(at::kFloat);  // numpy has no bfloat16
  code = nullptr;
  for (const auto& c : kDtypes) {
    if (c.type == t.scalar_type()) code = &c;
  }
  TORCH_CHECK(code, "npy: unsupported dtype ", t.scalar_type());
  return t.contiguous();
}

// Magic, version, header length and header of a .npy file holding t.
std::string npy_header(const at::Tensor& t, const DtypeCode& code) {
  std::ostringstream shape;
  shape << "(";
  for (int64_t i = 0; i < t.dim(); ++i) shape << t.size(i) << (t.dim() == 1 || i + 1 < t.dim() ? "," : "");
  shape << ")";
  std::string header = std::string("{'descr': '") + code.descr + "', 'fortran_order': False, 'shape': " +
                       shape.str() + ", }";
  // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  put16(out, static_cast<uint16_t>(header.size()));
  return out + header;
}

}  // namespace

std::string to_npy_bytes(const at::Tensor& tensor_in) {
  const DtypeCode* code = nullptr;
  const at::Tensor t = npy_ready(tensor_in, code);
  std::string out = npy_header(t, *code);
  out.append(static_cast<const char*>(t.const_data_ptr()), t.nbytes());
  return out;
}

at::Tensor from_npy_bytes(const std::string& bytes) {
  TORCH_CHECK(bytes.size() >= 10 && bytes.compare(0, 6, "\x93NUMPY") == 0, "npy: not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = get16(bytes, 8);
    offset = 10;
  } else {
    header_len = get32(bytes, 8);
    offset = 12;
  }
  TORCH_CHECK(offset + header_len <= bytes.size(), "npy: truncated header");
  const std::string header = bytes.substr(offset, header_len);
  TORCH_CHECK(header.find("'fortran_order': False") != std::string::npos, "npy: Fortran order is not supported");
  const DtypeCode* code = nullptr;
  for (const auto& c : kDtypes) {
    if (header.find(std::string("'descr': '") + c.descr + "'") != std::string::npos) code = &c;
  }
  TORCH_CHECK(code, "npy: unsupported dtype in header ", header);
  const auto open = header.find('(', header.find("'shape'"));
  const auto close = header.find(')', open);
  std::vector<int64_t> shape;
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  std::string item;
  while (std::getline(dims, item, ',')) {
    if (item.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(item));
  }
  at::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(code->type));
  const size_t data = offset + header_len;
  TORCH_CHECK(bytes.size() - data == t.nbytes(), "npy: expected ", t.nbytes(), " bytes of data, found ", bytes.size() - data);
  if (t.nbytes() > 0) std::memcpy(t.data_ptr(), bytes.data() + data, t.nbytes());  // empty: data_ptr() is null
  return t;
}

void save_npy(const std::string& path, const at::Tensor& tensor) { write_file(path, to_npy_bytes(tensor)); }
at::Tensor load_npy(const std::string& path) { return from_npy_bytes(read_file(path)); }

namespace detail {

void save_npz_zip64_above(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& arrays,
                          uint64_t limit) {
  // Streamed to a temporary and renamed over `path`: no second copy of the recordings in
  // memory, and a crash while writing never leaves a truncated archive under the real name.
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  TORCH_CHECK(out, "cannot open '", tmp, "' for writing");
  uint64_t offset = 0;
  auto write = [&](const void* p, size_t n) {
    out.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
    offset += n;
  };
  std::string central;
  uint64_t count = 0;
  for (const auto& [name, tensor] : arrays) {
    const std::string file = name + ".npy";
    const DtypeCode* code = nullptr;
    const at::Tensor t = npy_ready(tensor, code);
    const std::string header = npy_header(t, *code);
    const uint64_t size = header.size() + t.nbytes();
    const uint32_t crc = crc32_update(crc32_update(0, header.data(), header.size()), t.const_data_ptr(), t.nbytes());
    // ZIP64 (sizes or offsets past 4 GiB) only where needed, as Python's zipfile writes it.
    const bool big = size >= limit;
    const bool far = offset >= limit;
    const uint16_t needed = big || far ? 45 : 20;
    std::string local;
    put32(local, 0x04034b50); put16(local, needed); put16(local, 0); put16(local, 0); put16(local, 0); put16(local, 0x21);
    put32(local, crc);
    put32(local, big ? 0xFFFFFFFFu : static_cast<uint32_t>(size));
    put32(local, big ? 0xFFFFFFFFu : static_cast<uint32_t>(size));
    put16(local, static_cast<uint16_t>(file.size())); put16(local, big ? 20 : 0);
    local += file;
    if (big) {
      put16(local, 0x0001); put16(local, 16); put64(local, size); put64(local, size);
    }
    const uint64_t local_offset = offset;
    write(local.data(), local.size());
    write(header.data(), header.size());
    write(t.const_data_ptr(), t.nbytes());
    TORCH_CHECK(out.good(), "writing '", tmp, "' failed (disk full?)");

    const uint16_t extra = static_cast<uint16_t>((big ? 16 : 0) + (far ? 8 : 0));
    put32(central, 0x02014b50); put16(central, needed); put16(central, needed); put16(central, 0); put16(central, 0);
    put16(central, 0); put16(central, 0x21); put32(central, crc);
    put32(central, big ? 0xFFFFFFFFu : static_cast<uint32_t>(size));
    put32(central, big ? 0xFFFFFFFFu : static_cast<uint32_t>(size));
    put16(central, static_cast<uint16_t>(file.size())); put16(central, extra ? extra + 4 : 0); put16(central, 0);
    put16(central, 0); put16(central, 0); put32(central, 0);
    put32(central, far ? 0xFFFFFFFFu : static_cast<uint32_t>(local_offset));
    central += file;
    if (extra) {
      put16(central, 0x0001); put16(central, extra);
      if (big) { put64(central, size); put64(central, size); }
      if (far) put64(central, local_offset);
    }
    ++count;
  }
  const uint64_t central_offset = offset;
  write(central.data(), central.size());
  std::string end;
  if (count >= 0xFFFF || central_offset >= limit || central.size() >= limit) {
    const uint64_t zip64_end = offset;
    put32(end, 0x06064b50); put64(end, 44); put16(end, 45); put16(end, 45); put32(end, 0); put32(end, 0);
    put64(end, count); put64(end, count); put64(end, central.size()); put64(end, central_offset);
    put32(end, 0x07064b50); put32(end, 0); put64(end, zip64_end); put32(end, 1);
    put32(end, 0x06054b50); put16(end, 0); put16(end, 0); put16(end, 0xFFFF); put16(end, 0xFFFF);
    put32(end, 0xFFFFFFFFu); put32(end, 0xFFFFFFFFu); put16(end, 0);
  } else {
    put32(end, 0x06054b50); put16(end, 0); put16(end, 0);
    put16(end, static_cast<uint16_t>(count)); put16(end, static_cast<uint16_t>(count));
    put32(end, static_cast<uint32_t>(central.size())); put32(end, static_cast<uint32_t>(central_offset)); put16(end, 0);
  }
  write(end.data(), end.size());
  out.close();
  TORCH_CHECK(!out.fail(), "writing '", tmp, "' failed (disk full?)");
  TORCH_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '", tmp, "' to '", path, "'");
}

}  // namespace detail

void save_npz(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& arrays) {
  detail::save_npz_zip64_above(path, arrays, 0xFFFFFFFFull);
}

std::vector<std::pair<std::string, at::Tensor>> load_npz(const std::string& path) {
  const std::string zip = read_file(path);
  std::vector<std::pair<std::string, at::Tensor>> out;
  size_t pos = 0;
  while (pos + 30 <= zip.size() && get32(zip, pos) == 0x04034b50) {
    const uint16_t method = get16(zip, pos + 8);
    TORCH_CHECK(method == 0, "npz: '", path, "' holds compressed entries; only stored archives are read");
    uint64_t size = get32(zip, pos + 18);
    const uint16_t name_len = get16(zip, pos + 26);
    const uint16_t extra_len = get16(zip, pos + 28);
    TORCH_CHECK(pos + 30 + name_len + extra_len <= zip.size(), "npz: '", path, "' is truncated");
    std::string name = zip.substr(pos + 30, name_len);
    if (size == 0xFFFFFFFFu) {  // ZIP64: the size is in the extra field
      size_t e = pos + 30 + name_len;
      const size_t e_end = e + extra_len;
      bool found = false;
      while (e + 4 <= e_end) {
        const uint16_t id = get16(zip, e), len = get16(zip, e + 2);
        if (id == 0x0001 && len >= 8 && e + 4 + 8 <= e_end) {
          size = get64(zip, e + 4);
          found = true;
          break;
        }
        e += 4 + len;
      }
      TORCH_CHECK(found, "npz: '", path, "': entry '", name, "' has no ZIP64 size");
    }
    const size_t data = pos + 30 + name_len + extra_len;
    TORCH_CHECK(data + size <= zip.size(), "npz: '", path, "' is truncated");
    const std::string bytes = zip.substr(data, size);
    TORCH_CHECK(crc32(bytes) == get32(zip, pos + 14), "npz: checksum mismatch for '", name, "' in '", path, "'");
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0) name.resize(name.size() - 4);
    out.emplace_back(name, from_npy_bytes(bytes));
    pos = data + size;
  }
  return out;
}

}  // namespace brain::io
