// Delays (SPEC section 3): a ring buffer of a population's recent values shared by every
// reader, each with its own delay in steps, and heterogeneous per-synapse delays for CSR
// projections. Gradients flow through both.
#pragma once

#include <cstdint>
#include <vector>

#include <brain/dyn/system.h>

namespace brain {

// History of an [n] (or [batch, n]) signal over the last max_delay + 1 steps, indexed by the
// step counter: push(x, step) stores x as the value of `step`; read(d, step) returns the
// value pushed at step - d (zeros before the first push). So a value pushed at step s is
// read with delay d at step s + d, exactly.
class BRAIN_API Delay : public DynamicalSystem {
 public:
  Delay(int64_t n, int64_t max_delay_steps, at::TensorOptions options = at::kFloat);

  void push(const at::Tensor& value, int64_t step);
  at::Tensor read(int64_t delay_steps, int64_t step) const;
  // The same at ctx's step: the slot is found on the device from ctx.clock when it is set
  // (a step being recorded for replay), from ctx.step otherwise.
  void push(const at::Tensor& value, const Context& ctx);
  at::Tensor read(int64_t delay_steps, const Context& ctx) const;
  bool replayable() const override { return true; }
  void update(const Context&) override {}

  int64_t size() const { return n_; }
  int64_t max_delay() const { return max_delay_; }

  // Makes room for delays up to max_delay_steps (never shrinks). Once values have been pushed
  // the ring cannot be re-laid without losing them, so growing a buffer that holds anything
  // but zeros is refused.
  void reserve(int64_t max_delay_steps);

  // For readers that keep something derived from the history (HeteroDelayCsr's lists of each
  // slot's spikes), to know what changed since they looked: every push written in place into
  // the history tensor has a serial number (it bumps that tensor's version by one); each slot
  // keeps the serial of its last push from a host step, and a push into a slot that only the
  // device knew (a step recorded for replay) is noted apart. A change of the history by
  // anything else shows as a version moved further than the pushes, or another tensor.
  int64_t push_serial() const { return push_serial_; }
  int64_t slot_push_serial(int64_t slot) const;
  int64_t unplaced_push_serial() const { return unplaced_push_serial_; }
  int64_t slot_of(int64_t step) const { return slot(step); }

 protected:
  void reset_own_state(int64_t batch_size) override;

 private:
  int64_t slot(int64_t step) const;
  int64_t n_, max_delay_;
  at::TensorOptions options_;
  int64_t push_serial_ = 0, unplaced_push_serial_ = 0;
  std::vector<int64_t> slot_push_serial_;
};

// The one ring buffer of `source`'s "spike" state (n neurons, stored with `options`' dtype)
// that every reader with a delay shares, as SPEC's "ring buffers per presynaptic population":
// projections from one population with delays of 2 and 5 steps hold one [6, n] history, not
// a [3, n] and a [6, n]. The first reader creates it (created = true): it owns the buffer
// (registers it as its child, so to(), reset_state() and checkpoints cover it once) and
// pushes into it each step; later readers only read. A reader with delay d >= 1 reads the
// slot of step - d, which this step's push never touches, so the order of readers within a
// step does not matter. The buffer grows to the longest delay asked for (Delay::reserve).
struct SharedDelay {
  std::shared_ptr<Delay> delay;
  bool created = false;
};
BRAIN_API SharedDelay shared_spike_delay(DynamicalSystem& source, int64_t n, int64_t delay_steps,
                                         at::TensorOptions options);

// Postsynaptic input of a CSR projection whose synapses have their own delays:
//   out[..., post] = sum over entries k of w_k * history(step - delay_k)[..., pre(k)]
// Connectivity rows are presynaptic. Delays are per entry, in steps, in [0, max_delay_steps];
// weights are one scalar ([] or [1]) or one per entry ([nnz], in the CSR's order). Gradients
// flow to the weights and through the history to the spikes pushed into it.
// Two ways to compute it, chosen at construction (grouped()):
//  - by delay: the entries are grouped by their delay, each group a CSR matrix of its own,
//    and every step each group reads its slot of the history through brain::event_csr_matmul
//    (event = true) or brain::csr_matmul. A step costs the synapses of the spikes arriving
//    (event) plus a pass over n_pre per distinct delay, so few distinct delays and sparse
//    firing are cheap. Chosen when the groups' row pointers take at most twice the entries'
//    memory: distinct delays * (n_pre + 1) <= 2 nnz.
//  - by synapse: every entry reads its own past, O(nnz) per step whatever fires (many
//    distinct delays, e.g. delays drawn from a continuous distribution on a fine dt).
// On the CPU, in float or double, when no gradient is recorded and no step is being recorded
// for replay, either way is one fused loop (by delay: one call for all the groups instead of an
// op per delay) that sums the same terms in the same order as the ops do, so both give the
// same bits; otherwise the ops, which autograd and replay follow. Event-driven (event = true),
// the fused loops keep a list of each slot's spikes (kept in step with the history's pushes,
// read again whenever anything else changed it) and visit only the rows listed: by delay, no
// pass over n_pre per distinct delay; by synapse, each delay's run of entries is entered at the
// spiking rows through a coarse index of its rows (at most half an entry per synapse), so a
// step costs the spikes in flight and the synapses they reach, not nnz.
class BRAIN_API HeteroDelayCsr : public torch::nn::Module {
 public:
  HeteroDelayCsr(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& delays,
                 int64_t n_pre, int64_t n_post, int64_t max_delay_steps, bool event = true);
  at::Tensor forward(const Delay& history, const at::Tensor& weights, int64_t step) const;
  // At ctx's step (ctx.step_value(): the device clock when a step is recorded for replay).
  at::Tensor forward(const Delay& history, const at::Tensor& weights, const Context& ctx) const;
  BRAIN_MOVES_FLOATING_TENSORS_ONLY

  bool grouped() const { return grouped_; }
  // The distinct delays (steps, increasing), one per group; empty when not grouped().
  const std::vector<int64_t>& distinct_delays() const { return distinct_delays_; }
  int64_t max_delay() const { return max_delay_; }
  int64_t nnz() const { return (grouped_ ? order_ : delays_).size(0); }

  // Each synapse's delay in the CSR's order (int64, on the CPU), for engines that compile the
  // projection (dyn/fast.h), whichever way forward() delivers.
  at::Tensor delays() const;

 private:
  at::Tensor forward_by_synapse(const Delay& history, const at::Tensor& weights, const Context& ctx) const;
  at::Tensor forward_by_delay(const Delay& history, const at::Tensor& weights, const Context& ctx) const;
  // Per-entry weights in the groups' order. Outside autograd and outside replay recording the
  // gathered copy is kept until the weights or the order change (same tensors, data and
  // version counters: an optimizer step, a copy_, a load_state_dict or torch::load).
  at::Tensor weights_by_delay(const at::Tensor& weights, const Context& ctx) const;

  int64_t n_pre_, n_post_, max_delay_;
  bool event_, grouped_;
  // The fused CPU event delivery's view of the history: for each slot (and batch item) the
  // presynaptic rows with a nonzero value, in increasing order, kept in step with the history
  // by its push serials (Delay::push_serial) and rebuilt whole when something else changed it.
  // The tensor is held so that no other one can take its place unseen.
  struct SpikeLists {
    at::Tensor history;
    int64_t version = -1, serial = -1;
    std::vector<std::vector<int64_t>> rows;  // [slot * batch + b]
  };
  mutable SpikeLists lists_;
  const SpikeLists& spike_lists(const Delay& history) const;
  // By synapse, for the event delivery: the delay of each run of entries of one delay (delays_
  // is sorted) and a coarse index of each run's rows, blocks of 2^shift rows; rebuilt when the
  // entries change (a load_state_dict).
  void index_runs() const;
  mutable std::vector<int64_t> run_delay_, run_block_start_;
  mutable int64_t run_block_shift_ = 0;
  mutable const void* runs_delays_data_ = nullptr;
  mutable const void* runs_pre_data_ = nullptr;
  mutable int64_t runs_delays_version_ = -1, runs_pre_version_ = -1;
  // What the loop needs on the host is in the buffers' names, so a state_dict of other delays
  // fails to load by name instead of loading under this module's delays: by delay, each
  // group's CSR is "indptr_d<delay>" / "indices_d<delay>"; by synapse, each entry's row
  // "pre", column "post" and delay "delays_upto<max_delay>". Either way the entries are in
  // delay order (stable: CSR order within a delay) and "order" is that permutation of the CSR.
  std::vector<int64_t> distinct_delays_;
  at::Tensor order_;
  std::vector<at::Tensor> group_indptr_, group_indices_;
  at::Tensor pre_, post_, delays_;
  mutable at::Tensor cached_from_, cached_sorted_;
  mutable const void* cached_data_ = nullptr;
  mutable const void* cached_order_data_ = nullptr;
  mutable int64_t cached_version_ = -1, cached_order_version_ = -1;
};

}  // namespace brain
