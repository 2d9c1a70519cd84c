// Checkpoint files: a JSON header and named tensors in one file, written atomically and
// checked on reading, so a crash at any moment leaves either the previous good checkpoint or
// the new one, never a torn file that loads.
//
// Layout (little-endian):
//   "BRAINCKP"  u32 format version (1)  u32 0  u64 payload bytes
//   payload:    u64 header bytes, header (JSON text, UTF-8)
//               u64 tensor count, then per tensor:
//                 u32 name bytes, name, u8 dtype code, u8 ndim, u64 sizes[ndim], u64 data bytes,
//                 data (C order)
//   u64 XXH64(payload, seed 0)  "BRAINEND"
// Writing goes to "<path>.tmp", which is flushed, fsync'ed and renamed over <path>; the
// directory is fsync'ed after the rename. Reading checks the magic, the version, every
// length against the bytes that are there, and the checksum before anything is parsed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include <brain/export.h>

namespace brain::io {

// A checkpoint that cannot be used: missing, truncated, corrupt or made for something else.
class BRAIN_API CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Checkpoint {
  std::string header;  // JSON text
  std::vector<std::pair<std::string, at::Tensor>> tensors;

  // The tensor called name; throws CheckpointError naming it when absent.
  const at::Tensor& tensor(const std::string& name) const;
  bool has(const std::string& name) const;
};

// The file's bytes (tensors are copied to contiguous CPU memory first).
BRAIN_API std::string encode_checkpoint(const Checkpoint& checkpoint);
// Parses bytes from encode_checkpoint; `what` names the source in errors (a path).
BRAIN_API Checkpoint decode_checkpoint(const void* data, std::size_t size, const std::string& what);

// Atomic replace of `path` (see above). Throws std::runtime_error on I/O failure, in which
// case whatever was at `path` before is untouched.
BRAIN_API void write_checkpoint_file(const std::string& path, const Checkpoint& checkpoint);
BRAIN_API Checkpoint read_checkpoint_file(const std::string& path);

// Record files: what a run in progress appends at each checkpoint (its new recordings), so a
// checkpoint writes what is new instead of everything so far. A record is a u64 length and
// encode_checkpoint's bytes (with their own checksum). The checkpoint that counts a record
// stores the file's valid length; whatever follows it (a record of a run killed before its
// checkpoint was renamed into place) is cut off by the next append.
//
// Cuts `path` to `valid_bytes`, appends one record, flushes and fsyncs; returns the new valid
// length. Throws std::runtime_error on I/O failure.
BRAIN_API std::uint64_t append_record(const std::string& path, std::uint64_t valid_bytes, const Checkpoint& record);
// The records in the first `valid_bytes` bytes of `path`; CheckpointError naming the file when
// it is missing, shorter or damaged.
BRAIN_API std::vector<Checkpoint> read_records(const std::string& path, std::uint64_t valid_bytes);
// Copies the first `bytes` bytes of `from` to `to` (atomically, through "<to>.tmp").
BRAIN_API void copy_record_prefix(const std::string& from, const std::string& to, std::uint64_t bytes);

// XXH64 (Collet's xxHash, 64-bit), the checksum of the format; also used to fingerprint
// connectivity.
BRAIN_API std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed = 0);

}  // namespace brain::io
