// Weight initializers (SPEC section 4), seeded so a network is the same on every run and
// device (drawn on the CPU, then moved). Dense weight matrices are [n_pre, n_post], used as
// spikes @ W, so fan_in = n_pre and fan_out = n_post.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <brain/export.h>

namespace brain::init {

BRAIN_API at::Tensor constant(at::IntArrayRef shape, double value, at::TensorOptions options = at::kFloat);
BRAIN_API at::Tensor normal(at::IntArrayRef shape, double mean, double std, uint64_t seed,
                            at::TensorOptions options = at::kFloat);
BRAIN_API at::Tensor uniform(at::IntArrayRef shape, double low, double high, uint64_t seed,
                             at::TensorOptions options = at::kFloat);
// N(mean, std) conditioned on [low, high], sampled exactly by inverting the CDF.
BRAIN_API at::Tensor truncated_normal(at::IntArrayRef shape, double mean, double std, double low, double high,
                                      uint64_t seed, at::TensorOptions options = at::kFloat);
// He et al. 2015: std = gain / sqrt(fan_in) (normal) or bound = gain sqrt(3 / fan_in)
// (uniform); gain sqrt(2) suits ReLU-like units. shape = [n_pre, n_post].
BRAIN_API at::Tensor kaiming_normal(at::IntArrayRef shape, uint64_t seed, double gain = 1.4142135623730951,
                                    at::TensorOptions options = at::kFloat);
BRAIN_API at::Tensor kaiming_uniform(at::IntArrayRef shape, uint64_t seed, double gain = 1.4142135623730951,
                                     at::TensorOptions options = at::kFloat);
// Glorot & Bengio 2010: std = gain sqrt(2 / (fan_in + fan_out)), bound = gain sqrt(6 / (fan_in + fan_out)).
BRAIN_API at::Tensor xavier_normal(at::IntArrayRef shape, uint64_t seed, double gain = 1.0,
                                   at::TensorOptions options = at::kFloat);
BRAIN_API at::Tensor xavier_uniform(at::IntArrayRef shape, uint64_t seed, double gain = 1.0,
                                    at::TensorOptions options = at::kFloat);
// A (semi-)orthogonal [rows, cols] matrix times gain (Saxe et al. 2014): rows or columns,
// whichever are fewer, are orthonormal.
BRAIN_API at::Tensor orthogonal(at::IntArrayRef shape, uint64_t seed, double gain = 1.0,
                                at::TensorOptions options = at::kFloat);

}  // namespace brain::init
