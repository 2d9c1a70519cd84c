// Internal: argument checks shared by every dispatch key of brain::poisson_spikes (CPU, CUDA,
// Meta), so each rejects bad input with the same message.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace brain::ops::detail {

// rates [..., n] floating (at least one dimension: the last indexes neurons); dt > 0 and
// finite; step >= 0; offset >= 0 with offset + n <= 2^32; at most 2^32 rows (batch items).
void check_poisson_args(const char* op, const at::Tensor& rates, double dt, int64_t step, int64_t offset);

// brain::poisson_spikes_at's step: one int64 value, on rates' device or the CPU.
void check_poisson_step_tensor(const char* op, const at::Tensor& rates, const at::Tensor& step);

}  // namespace brain::ops::detail
