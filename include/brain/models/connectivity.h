// Connectivity generators (SPEC section 4). Each returns a CsrMatrix (rows presynaptic,
// columns increasing within a row, no weights) built on the CPU from `seed` and moved to
// `device`, so a seed gives the same network on every device. fixed_prob, the generator of
// large random networks, lives in synapses.h and is built on the device itself.
#pragma once

#include <cstdint>

#include <brain/csr.h>
#include <c10/core/Device.h>

namespace brain::connect {

// Neuron i to neuron i.
BRAIN_API CsrMatrix one_to_one(int64_t n, c10::Device device = c10::kCPU, at::ScalarType index_dtype = at::kInt);

// Every pre to every post (without i -> i when include_self is false; needs n_pre == n_post).
BRAIN_API CsrMatrix all_to_all(int64_t n_pre, int64_t n_post, bool include_self = true, c10::Device device = c10::kCPU,
                               at::ScalarType index_dtype = at::kInt);

// Fixed out-degree: every presynaptic neuron to exactly k distinct postsynaptic ones, chosen
// uniformly (Floyd's sampling, O(n_pre k)).
BRAIN_API CsrMatrix fixed_post_num(int64_t n_pre, int64_t n_post, int64_t k, bool include_self, uint64_t seed,
                                   c10::Device device = c10::kCPU, at::ScalarType index_dtype = at::kInt);

// Fixed in-degree: every postsynaptic neuron from exactly k distinct presynaptic ones.
BRAIN_API CsrMatrix fixed_pre_num(int64_t n_pre, int64_t n_post, int64_t k, bool include_self, uint64_t seed,
                                  c10::Device device = c10::kCPU, at::ScalarType index_dtype = at::kInt);

// Neurons on a height x width grid (row-major index), one population onto itself: i -> j
// with probability p_max exp(-d^2 / (2 sigma^2)), d the Euclidean grid distance (shortest
// way round when periodic).
BRAIN_API CsrMatrix gaussian_prob(int64_t height, int64_t width, double sigma, double p_max, bool periodic,
                                  bool include_self, uint64_t seed, c10::Device device = c10::kCPU,
                                  at::ScalarType index_dtype = at::kInt);

// Grid neighbourhoods: every cell to the cells within Chebyshev distance `radius`
// (radius 1: the eight neighbours) or, with manhattan, Manhattan distance (radius 1: four).
BRAIN_API CsrMatrix grid(int64_t height, int64_t width, int64_t radius, bool manhattan, bool periodic,
                         bool include_self = false, c10::Device device = c10::kCPU,
                         at::ScalarType index_dtype = at::kInt);

// Watts-Strogatz small world on a directed ring: every neuron to its k nearest successors
// and k nearest predecessors; each of these edges is rewired with probability p to a
// uniformly chosen target that is neither the neuron itself nor already connected.
BRAIN_API CsrMatrix small_world(int64_t n, int64_t k, double p, uint64_t seed, c10::Device device = c10::kCPU,
                                at::ScalarType index_dtype = at::kInt);

}  // namespace brain::connect
