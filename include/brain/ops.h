// The C++ API of libbrain's operators. Every function goes through the Torch dispatcher
// (the same path as torch.ops.brain.* in Python), so autograd, Meta/fake tensors and the
// CPU/CUDA kernels are all picked there. Semantics: ../shared/SPEC.md section 1.
//
// Connectivity is a matrix A of shape [n_rows, n_cols] = shape in CSR form:
//   indptr  [n_rows + 1], int32 or int64, non-decreasing, indptr[0] = 0, indptr[n_rows] = nnz
//   indices [nnz], same dtype as indptr, column of each stored entry, in [0, n_cols)
//   weights [nnz] (one per entry) or a scalar [] / [1] (homogeneous), float32/float64
//           (float16/bfloat16 on CUDA)
// For a projection, rows are presynaptic and columns postsynaptic neurons, so the synaptic
// input is A^T @ spikes (transpose = true). Duplicate (row, column) entries add up.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <brain/export.h>

namespace brain::ops {

// y = A @ x (transpose = false; x [n_cols] or [B, n_cols] -> y [n_rows] or [B, n_rows]) or
// y = A^T @ x (transpose = true; x [n_rows] or [B, n_rows] -> y [n_cols] or [B, n_cols]).
// x has the weights' dtype, or is bool (0/1). Differentiable in weights and (float) x.
BRAIN_API at::Tensor csr_matmul(const at::Tensor& indptr, const at::Tensor& indices,
                                const at::Tensor& weights, const at::Tensor& x,
                                at::IntArrayRef shape, bool transpose = false);

// The same value as csr_matmul, computed by visiting only the non-zero entries of x (bool or
// float events). With transpose = true its cost is (active rows) x (row length), not nnz.
BRAIN_API at::Tensor event_csr_matmul(const at::Tensor& indptr, const at::Tensor& indices,
                                      const at::Tensor& weights, const at::Tensor& x,
                                      at::IntArrayRef shape, bool transpose = false);

// Checks the CSR structure fully (lengths, dtypes, devices, monotone indptr, indptr[0] = 0,
// indptr[n_rows] = nnz, every index in range) and throws c10::Error naming the problem.
// Reads values back to the host on CUDA: call it once on new connectivity, not per step.
// The CUDA kernels skip out-of-range entries instead of writing out of bounds.
BRAIN_API void validate_csr(const at::Tensor& indptr, const at::Tensor& indices,
                            at::IntArrayRef shape);

// CSC view of a CSR matrix: (csc_indptr [n_cols + 1], csc_indices [nnz] = the row of each
// entry, perm [nnz] = the CSR position of each CSC entry), so that weights.index_select(0,
// perm) are the weights in column order. Within a column, entries keep their row order.
BRAIN_API std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_to_csc(const at::Tensor& indptr,
                                                                     const at::Tensor& indices,
                                                                     at::IntArrayRef shape);

// Plasticity, in place on per-entry weights (what STDP needs):
// on presynaptic events, for every row i with pre_spikes[i] != 0 and every entry k of it,
//   weights[k] = clamp(weights[k] + scale * pre_spikes[i] * post_trace[indices[k]], w_min, w_max)
BRAIN_API void csr_update_on_pre_(at::Tensor& weights, const at::Tensor& indptr,
                                  const at::Tensor& indices, const at::Tensor& pre_spikes,
                                  const at::Tensor& post_trace, double scale,
                                  std::optional<double> w_min = std::nullopt,
                                  std::optional<double> w_max = std::nullopt);

// on postsynaptic events, through the CSC view from csr_to_csc: for every column j with
// post_spikes[j] != 0 and every entry p of it (CSR position k = perm[p], row i = csc_indices[p]),
//   weights[k] = clamp(weights[k] + scale * post_spikes[j] * pre_trace[i], w_min, w_max)
BRAIN_API void csr_update_on_post_(at::Tensor& weights, const at::Tensor& csc_indptr,
                                   const at::Tensor& csc_indices, const at::Tensor& perm,
                                   const at::Tensor& post_spikes, const at::Tensor& pre_trace,
                                   double scale, std::optional<double> w_min = std::nullopt,
                                   std::optional<double> w_max = std::nullopt);

// ---- JIT connectivity (SPEC section 2) -----------------------------------------------------
// A of shape [n_rows, n_cols] = shape is never stored: it is regenerated from
// (seed, prob, shape, dist) on every call by the generator specified in
// kernels/jitc/jitc_gen.h. Each entry is non-zero with probability prob, independently; its
// value is drawn from dist given weight:
//   "homo"    weight = w ([] or [1]):     every non-zero entry is w
//   "uniform" weight = [low, high]:       low + (high - low) * U[0, 1)
//   "normal"  weight = [mean, std]:       mean + std * N(0, 1)
// The same arguments give the same A (bit for bit) on CPU and CUDA, for 1-D and batched x,
// for transpose true and false and for any thread count; memory is O(n_rows + n_cols).
// Invalid parameter values (std < 0, high < low, non-finite) raise on CPU; CUDA kernels
// cannot raise without a host sync, so there they produce NaN outputs instead.

// y = A @ x (x [n_cols] or [B, n_cols]) or, with transpose, A^T @ x (x [n_rows] or
// [B, n_rows]). x is bool or has weight's dtype. Differentiable in x and weight.
BRAIN_API at::Tensor jitc_matmul(const at::Tensor& x, const at::Tensor& weight, double prob,
                                 int64_t seed, at::IntArrayRef shape,
                                 std::string_view dist = "homo", bool transpose = false);

// The value of jitc_matmul, visiting only the non-zero entries of x: with transpose = true
// (presynaptic spikes) the cost is (active rows) x (prob * n_cols).
BRAIN_API at::Tensor event_jitc_matmul(const at::Tensor& x, const at::Tensor& weight,
                                       double prob, int64_t seed, at::IntArrayRef shape,
                                       std::string_view dist = "homo", bool transpose = false);

// The dense A the two ops above use, [n_rows, n_cols] in weight's dtype (for tests and
// inspection; not differentiable).
BRAIN_API at::Tensor jitc_materialize(const at::Tensor& weight, double prob, int64_t seed,
                                      at::IntArrayRef shape, std::string_view dist = "homo");

// The same A as CSR: (indptr [n_rows + 1] int64, indices [nnz] int64 sorted within rows,
// values [nnz] in weight's dtype). nnz is data-dependent: on CUDA this reads it back (a host
// sync), so build once, not per step. Not differentiable.
BRAIN_API std::tuple<at::Tensor, at::Tensor, at::Tensor> jitc_to_csr(
    const at::Tensor& weight, double prob, int64_t seed, at::IntArrayRef shape,
    std::string_view dist = "homo");

// A's non-zero pattern alone (any dist gives the same pattern; prob may be 0 here), restricted
// to columns [col_begin, col_end) (col_end < 0: n_cols) and renumbered from col_begin, without
// the diagonal when exclude_diagonal (square shapes only), built on like's device (like's
// values and dtype are not read): (indptr [n_rows + 1] int64, indices [nnz] int64, increasing
// within rows). The windows of disjoint column ranges make up the whole pattern, and CPU and
// CUDA build the same bits. On CUDA nnz is read back (a host sync). Not differentiable.
BRAIN_API std::tuple<at::Tensor, at::Tensor> jitc_pattern(const at::Tensor& like, double prob, int64_t seed,
                                                          at::IntArrayRef shape, int64_t col_begin = 0,
                                                          int64_t col_end = -1, bool exclude_diagonal = false);

// ---- Fused LIF (training) ------------------------------------------------------------------
// T steps of leaky integrate-and-fire neurons in one op, with the surrogate gradient applied
// inside the backward, which keeps only the membrane before each threshold (one [T, ...]
// tensor). Semantics, step by step, are those of brain::LIF without refractoriness (its
// spikes are equal bit for bit on the CPU); the update is written out in
// kernels/lif/lif_seq.h. input [T, ...] is the current of every step (R * input is in mV),
// v0 [...] the membrane before the first step; returns spikes [T, ...] (0/1 in input's dtype)
// and the membrane after the last step (and its reset). Differentiable in input and v0.
struct LifSequenceOptions {
  double v_rest = 0.0, v_reset = 0.0, v_th = 1.0, R = 1.0;
  double tau = 10.0, dt = 1.0;  // ms
  std::string method = "exp_euler";  // or "euler"
  bool detach_reset = true;
  // A brain::Surrogate name; surrogate_params empty for its defaults, else 7 values:
  // alpha, beta, sigma, h, s, scale, width.
  std::string surrogate = "sigmoid";
  std::vector<double> surrogate_params;
};
BRAIN_API std::tuple<at::Tensor, at::Tensor> lif_sequence(const at::Tensor& input, const at::Tensor& v0,
                                                          const LifSequenceOptions& options = {});

// lif_sequence with recurrence: the neurons' own spikes of d steps earlier reach them through
// a square CSR matrix A [n, n] (rows presynaptic, as CsrComm stores a projection), so the
// whole window of a recurrent layer is one op (one autograd node, a handful of kernels per
// step on CUDA instead of a graph of small ops). drive [T, B, n] or [T, n] is the external
// current, v0 [B, n] the membrane before the first step, history [d, B, n] the spikes of the
// d >= 1 steps before the window, oldest first (zeros at the start of a sequence). Step t:
//   I_t = drive[t] + A^T S_t,  S_t = t < d ? history[t] : spikes[t - d]
// then the LIF update of lif_sequence. Returns (spikes [T, B, n], v_last [B, n]); the next
// window's history is the last d steps of cat(history, spikes). The sum is the event scatter
// of event_csr_matmul (active rows only), so on the CPU the spikes equal those of the op-by-op
// network (event_csr_matmul + add + lif_sequence per step) bit for bit; on CUDA the scatter
// adds atomically, or, under torch.use_deterministic_algorithms, gathers in a fixed order.
// Differentiable in drive, v0, history and weights (per synapse or homogeneous); the backward
// keeps v_pre [T, B, n] and reads the spikes the forward returned.
BRAIN_API std::tuple<at::Tensor, at::Tensor> lif_recurrent_sequence(const at::Tensor& drive, const at::Tensor& v0,
                                                                    const at::Tensor& history,
                                                                    const at::Tensor& indptr,
                                                                    const at::Tensor& indices,
                                                                    const at::Tensor& weights,
                                                                    const LifSequenceOptions& options = {});
// The same layer with a dense recurrent matrix: weight [n, n] as torch::nn::Linear stores it
// (post x pre), I_t = drive[t] + S_t weight^T. Written once for every device from matmul and
// lif_sequence's one-step kernels (one matmul, one add and one LIF step per step forward; the
// weight gradient is one GEMM over the window), so its spikes equal the op-by-op network's
// (Linear + add + lif_sequence per step) on every device. Differentiable in drive, v0,
// history and weight.
BRAIN_API std::tuple<at::Tensor, at::Tensor> lif_dense_recurrent_sequence(const at::Tensor& drive,
                                                                          const at::Tensor& v0,
                                                                          const at::Tensor& history,
                                                                          const at::Tensor& weight,
                                                                          const LifSequenceOptions& options = {});
// The same layer with JIT connectivity (SPEC section 2; never stored): A [n, n], rows
// presynaptic, each synapse present with probability prob and regenerated from seed exactly as
// event_jitc_matmul generates it (JitComm's matrix); weight holds dist's parameters (w for
// "homo", [low, high] for "uniform", [mean, std] for "normal"). I_t = drive[t] + A^T S_t.
// Written once for every device from event_jitc_matmul, jitc_matmul and lif_sequence's
// one-step kernels, so its spikes equal the op-by-op network's (JitComm + add + lif_sequence
// per step) on every device. The weight parameters' gradient is one pass over the matrix per
// call (the window's steps as one batch), not one per step. Differentiable in drive, v0,
// history and weight.
BRAIN_API std::tuple<at::Tensor, at::Tensor> lif_jit_recurrent_sequence(const at::Tensor& drive,
                                                                        const at::Tensor& v0,
                                                                        const at::Tensor& history,
                                                                        const at::Tensor& weight, double prob,
                                                                        int64_t seed, std::string_view dist,
                                                                        const LifSequenceOptions& options = {});

// ---- Counter-based Poisson draws -----------------------------------------------------------
// One step of independent Poisson spike trains: spikes[..., j] fires with probability
// rates[..., j] * dt / 1000 (rates in Hz, dt in ms; a rate <= 0 never fires). Each draw is a
// pure function of (seed, step, batch item, offset + j), written out in
// kernels/rng/poisson_draw.h: no generator state is carried, CPU and CUDA draw the same
// spikes, and neurons offset .. offset + n - 1 of a larger population (a shard) draw exactly
// their spikes in the whole. rates [..., n] floating (leading dimensions are batch items);
// returns bool of rates' shape. Not differentiable.
BRAIN_API at::Tensor poisson_spikes(const at::Tensor& rates_hz, double dt, uint64_t seed, int64_t step,
                                    int64_t offset = 0);
// The same draw with the step read from `step`, a one-element int64 tensor, when the kernel
// runs: on rates' device it costs no host sync, and a CUDA graph that captured the draw
// replays it at whatever step the tensor then holds. A step on the CPU must be >= 0; one on
// the GPU cannot be checked without a sync, and a negative value there draws as step + 2^64.
BRAIN_API at::Tensor poisson_spikes_at(const at::Tensor& rates_hz, double dt, uint64_t seed, const at::Tensor& step,
                                       int64_t offset = 0);

}  // namespace brain::ops
