// Internal: argument checks shared by every dispatch key of the fused LIF op family (CPU,
// CUDA, Meta), so each rejects bad input with the same message.
#pragma once

#include <string_view>

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <brain/models/surrogate.h>

#include "kernels/lif/lif_seq.h"

namespace brain::ops::detail {

// The model constants of a lif_sequence call, checked: tau > 0, dt > 0, v_th > v_reset, all
// finite, method exp_euler|euler, a known surrogate with 0 or 7 parameters
// (alpha, beta, sigma, h, s, scale, width).
kernels::lif::LifConstants lif_constants(const char* op, double v_rest, double v_reset, double v_th,
                                         double R, double tau, double dt, std::string_view method,
                                         bool detach_reset, std::string_view surrogate,
                                         c10::ArrayRef<double> surrogate_params);

// The named surrogate with an op's 7 surrogate_params (alpha, beta, sigma, h, s, scale, width),
// or its published defaults when there are none; errors name `op`.
Surrogate checked_surrogate(const char* op, std::string_view surrogate, c10::ArrayRef<double> surrogate_params);

// v_th > v_reset.
void check_threshold(const char* op, double v_reset, double v_th);

// input [T, ...] float32/float64; v0 = input's shape without T, same dtype and device.
void check_lif_tensors(const char* op, const at::Tensor& input, const at::Tensor& v0);

// The backward's tensors: v_pre and grad_spikes [T, ...], grad_v_last [...], one dtype/device.
void check_lif_backward_tensors(const char* op, const at::Tensor& grad_spikes,
                                const at::Tensor& grad_v_last, const at::Tensor& v_pre);

}  // namespace brain::ops::detail

namespace brain::ops::detail {

// The tensors of a lif_recurrent_sequence call: drive [T, B, n] or [T, n] float32/float64;
// v0 its shape without T; history [d, ...] (d >= 1, the recurrent delay in steps) with v0's
// shape after d; a square [n, n] CSR structure (int32 or int64) and weights of drive's dtype,
// one per entry or a single one. One device. Returns whether the weights are homogeneous.
bool check_lif_recurrent_tensors(const char* op, const at::Tensor& drive, const at::Tensor& v0,
                                 const at::Tensor& history, const at::Tensor& indptr,
                                 const at::Tensor& indices, const at::Tensor& weights);

// The backward's tensors: those of the forward with v_pre in drive's place, grad_spikes and
// spikes matching v_pre, grad_v_last matching v0. Returns whether the weights are homogeneous.
bool check_lif_recurrent_backward_tensors(const char* op, const at::Tensor& grad_spikes,
                                          const at::Tensor& grad_v_last, const at::Tensor& v_pre,
                                          const at::Tensor& spikes, const at::Tensor& history,
                                          const at::Tensor& indptr, const at::Tensor& indices,
                                          const at::Tensor& weights);

// The dense form: weight [n, n] (post x pre, as torch.nn.Linear stores it) of drive's dtype
// and device instead of the CSR tensors.
void check_lif_dense_recurrent_tensors(const char* op, const at::Tensor& drive, const at::Tensor& v0,
                                       const at::Tensor& history, const at::Tensor& weight);
void check_lif_dense_recurrent_backward_tensors(const char* op, const at::Tensor& grad_spikes,
                                                const at::Tensor& grad_v_last, const at::Tensor& v_pre,
                                                const at::Tensor& spikes, const at::Tensor& history,
                                                const at::Tensor& weight);


// The JIT form: weight holds the parameters of a dist ("homo" w, "uniform" [low, high],
// "normal" [mean, std]) of drive's dtype and device, prob in (0, 1], A square [n, n].
void check_lif_jit_recurrent_tensors(const char* op, const at::Tensor& drive, const at::Tensor& v0,
                                     const at::Tensor& history, const at::Tensor& weight, double prob,
                                     std::string_view dist);
void check_lif_jit_recurrent_backward_tensors(const char* op, const at::Tensor& grad_spikes,
                                              const at::Tensor& grad_v_last, const at::Tensor& v_pre,
                                              const at::Tensor& spikes, const at::Tensor& history,
                                              const at::Tensor& weight, double prob, std::string_view dist);

}  // namespace brain::ops::detail
