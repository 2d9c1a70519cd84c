#include <brain/io/npz.h>

#include <array>
#include <cstdint>
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

uint32_t crc32(const std::string& data) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char ch : data) c = table[(c ^ ch) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void put16(std::string& out, uint16_t v) { out.append(reinterpret_cast<const char*>(&v), 2); }
void put32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
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

std::string to_npy_bytes(const at::Tensor& tensor_in) {
  at::Tensor t = tensor_in.detach().to(at::kCPU);
  if (t.scalar_type() == at::kBFloat16) t = t.to(at::kFloat);  // numpy has no bfloat16
  const DtypeCode* code = nullptr;
  for (const auto& c : kDtypes) {
    if (c.type == t.scalar_type()) code = &c;
  }
  TORCH_CHECK(code, "npy: unsupported dtype ", t.scalar_type());
  t = t.contiguous();
  std::ostringstream shape;
  shape << "(";
  for (int64_t i = 0; i < t.dim(); ++i) shape << t.size(i) << (t.dim() == 1 || i + 1 < t.dim() ? "," : "");
  shape << ")";
  std::string header = std::string("{'descr': '") + code->descr + "', 'fortran_order': False, 'shape': " +
                       shape.str() + ", }";
  // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  put16(out, static_cast<uint16_t>(header.size()));
  out += header;
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
  std::memcpy(t.data_ptr(), bytes.data() + data, t.nbytes());
  return t;
}

void save_npy(const std::string& path, const at::Tensor& tensor) { write_file(path, to_npy_bytes(tensor)); }
at::Tensor load_npy(const std::string& path) { return from_npy_bytes(read_file(path)); }

void save_npz(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& arrays) {
  std::string zip, central;
  uint16_t count = 0;
  for (const auto& [name, tensor] : arrays) {
    const std::string file = name + ".npy";
    const std::string data = to_npy_bytes(tensor);
    TORCH_CHECK(data.size() < 0xFFFFFFFFull && zip.size() < 0xFFFFFFFFull,
                "npz: '", name, "' makes the archive larger than 4 GiB (ZIP64 is not written)");
    const uint32_t crc = crc32(data);
    const uint32_t local_offset = static_cast<uint32_t>(zip.size());
    // Local file header, "stored" (method 0).
    put32(zip, 0x04034b50); put16(zip, 20); put16(zip, 0); put16(zip, 0); put16(zip, 0); put16(zip, 0x21);
    put32(zip, crc); put32(zip, static_cast<uint32_t>(data.size())); put32(zip, static_cast<uint32_t>(data.size()));
    put16(zip, static_cast<uint16_t>(file.size())); put16(zip, 0);
    zip += file;
    zip += data;
    // Central directory entry.
    put32(central, 0x02014b50); put16(central, 20); put16(central, 20); put16(central, 0); put16(central, 0);
    put16(central, 0); put16(central, 0x21); put32(central, crc);
    put32(central, static_cast<uint32_t>(data.size())); put32(central, static_cast<uint32_t>(data.size()));
    put16(central, static_cast<uint16_t>(file.size())); put16(central, 0); put16(central, 0); put16(central, 0);
    put16(central, 0); put32(central, 0); put32(central, local_offset);
    central += file;
    ++count;
  }
  const uint32_t central_offset = static_cast<uint32_t>(zip.size());
  zip += central;
  put32(zip, 0x06054b50); put16(zip, 0); put16(zip, 0); put16(zip, count); put16(zip, count);
  put32(zip, static_cast<uint32_t>(central.size())); put32(zip, central_offset); put16(zip, 0);
  write_file(path, zip);
}

std::vector<std::pair<std::string, at::Tensor>> load_npz(const std::string& path) {
  const std::string zip = read_file(path);
  std::vector<std::pair<std::string, at::Tensor>> out;
  size_t pos = 0;
  while (pos + 30 <= zip.size() && get32(zip, pos) == 0x04034b50) {
    const uint16_t method = get16(zip, pos + 8);
    TORCH_CHECK(method == 0, "npz: '", path, "' holds compressed entries; only stored archives are read");
    const uint32_t size = get32(zip, pos + 18);
    const uint16_t name_len = get16(zip, pos + 26);
    const uint16_t extra_len = get16(zip, pos + 28);
    std::string name = zip.substr(pos + 30, name_len);
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
