// NumPy .npy / .npz files, so results open with numpy.load (and torch.from_numpy).
// Written uncompressed (ZIP "stored"), in little-endian C order.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include <brain/export.h>

namespace brain::io {

// The .npy bytes of a tensor (bool, uint8, int8/16/32/64, float16/32/64). Other dtypes and
// non-CPU tensors are converted/copied first.
BRAIN_API std::string to_npy_bytes(const at::Tensor& tensor);
BRAIN_API at::Tensor from_npy_bytes(const std::string& bytes);

BRAIN_API void save_npy(const std::string& path, const at::Tensor& tensor);
BRAIN_API at::Tensor load_npy(const std::string& path);

// Arrays in order; each name becomes "<name>.npy" inside the archive. Streamed to
// "<path>.tmp" and renamed over path; ZIP64 where an array or the archive passes 4 GiB.
BRAIN_API void save_npz(const std::string& path,
                        const std::vector<std::pair<std::string, at::Tensor>>& arrays);
namespace detail {
// save_npz with ZIP64 records from `limit` bytes on (tests use a small one).
BRAIN_API void save_npz_zip64_above(const std::string& path,
                                    const std::vector<std::pair<std::string, at::Tensor>>& arrays, uint64_t limit);
}  // namespace detail
BRAIN_API std::vector<std::pair<std::string, at::Tensor>> load_npz(const std::string& path);

}  // namespace brain::io
