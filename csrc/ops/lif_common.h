// Internal: argument checks shared by every dispatch key of the fused LIF op family (CPU,
// CUDA, Meta), so each rejects bad input with the same message.
#pragma once

#include <string_view>

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include "kernels/lif/lif_seq.h"

namespace brain::ops::detail {

// The model constants of a lif_sequence call, checked: tau > 0, dt > 0, v_th > v_reset, all
// finite, method exp_euler|euler, a known surrogate with 0 or 7 parameters
// (alpha, beta, sigma, h, s, scale, width).
kernels::lif::LifConstants lif_constants(const char* op, double v_rest, double v_reset, double v_th,
                                         double R, double tau, double dt, std::string_view method,
                                         bool detach_reset, std::string_view surrogate,
                                         c10::ArrayRef<double> surrogate_params);

// input [T, ...] float32/float64; v0 = input's shape without T, same dtype and device.
void check_lif_tensors(const char* op, const at::Tensor& input, const at::Tensor& v0);

// The backward's tensors: v_pre and grad_spikes [T, ...], grad_v_last [...], one dtype/device.
void check_lif_backward_tensors(const char* op, const at::Tensor& grad_spikes,
                                const at::Tensor& grad_v_last, const at::Tensor& v_pre);

}  // namespace brain::ops::detail
