// Internal: argument checks and output geometry shared by every dispatch key of the
// JIT-connectivity op family (CPU, CUDA, Meta), so each key rejects bad input alike.
#pragma once

#include <optional>
#include <string_view>

#include <ATen/core/Tensor.h>
#include <c10/core/SymInt.h>
#include <c10/util/ArrayRef.h>

#include "kernels/jitc/jitc_gen.h"

namespace brain::ops::detail {

struct JitcGeometry {
  c10::SymInt n_rows, n_cols;
  c10::SymInt n_in, n_out;  // x's last dim and the output's last dim
  c10::SymInt batch;        // 1 for 1-D x
  bool batched = false;
  kernels::jitc::Dist dist = kernels::jitc::Dist::kHomo;
};

// "homo" | "uniform" | "normal", else an error listing them.
kernels::jitc::Dist parse_dist(const char* op, std::string_view dist);

// prob in (0, 1], shape [n_rows, n_cols] with 0 <= n < 2^32, weight's dtype and shape for
// dist ([] or [1] for homo, [2] otherwise). Values are not read (see check_weight_values).
// Returns the rows and cols and the distribution.
JitcGeometry check_jitc_matrix_args(const char* op, const at::Tensor& weight, double prob,
                                    c10::SymIntArrayRef shape, std::string_view dist,
                                    bool allow_half);

// The above plus x ([n_in] or [B, n_in], bool or weight's dtype, weight's device).
JitcGeometry check_jitc_matmul_args(const char* op, const at::Tensor& x, const at::Tensor& weight,
                                    double prob, c10::SymIntArrayRef shape, std::string_view dist,
                                    bool transpose, bool allow_half);

// jitc_pattern's arguments: prob in [0, 1] (0: no entries), the shape as above, the window
// 0 <= col_begin <= col_end <= n_cols (col_end defaults to n_cols), and exclude_diagonal only
// for a square shape. Returns the generator's spec (meaningless when empty) and the window;
// empty is set when the pattern has no entries to walk.
struct JitcPatternPlan {
  kernels::jitc::Spec spec;
  kernels::jitc::Window window;
  bool empty = false;
};
JitcPatternPlan check_jitc_pattern_args(const char* op, double prob, int64_t seed,
                                        c10::SymIntArrayRef shape, int64_t col_begin,
                                        std::optional<int64_t> col_end, bool exclude_diagonal);

c10::SymDimVector jitc_output_sizes(const JitcGeometry& g);

// CPU tensors only: std >= 0 (normal), high >= low (uniform), finite parameters.
// Returns the parameters as doubles (a, b).
std::pair<double, double> read_weight_params_cpu(const char* op, const at::Tensor& weight,
                                                 kernels::jitc::Dist dist);

// CPU: jitc_matmul (event: event_jitc_matmul) with its checks and its result bit for bit,
// reading A from indptr, indices and values, jitc_to_csr's output for the same weight, prob,
// seed, shape and dist, instead of generating it: for a caller that multiplies by the same A
// many times (the recurrent LIF op's steps). Defined in csrc/ops/cpu/jitc_cpu.cpp.
at::Tensor jitc_matmul_with_csr_cpu(const char* op, bool event, const at::Tensor& x, const at::Tensor& weight,
                                    double prob, int64_t seed, int64_t n_rows, int64_t n_cols, std::string_view dist,
                                    bool transpose, const at::Tensor& indptr, const at::Tensor& indices,
                                    const at::Tensor& values);

}  // namespace brain::ops::detail
