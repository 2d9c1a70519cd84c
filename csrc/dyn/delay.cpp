#include <brain/dyn/delay.h>

#include <algorithm>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <brain/ops.h>

namespace brain {

Delay::Delay(int64_t n, int64_t max_delay_steps, at::TensorOptions options)
    : DynamicalSystem("Delay"), n_(n), max_delay_(max_delay_steps), options_(options) {
  TORCH_CHECK(n >= 0, "Delay: size must be >= 0, got ", n);
  TORCH_CHECK(max_delay_steps >= 0, "Delay: max_delay_steps must be >= 0, got ", max_delay_steps);
}

void Delay::reset_own_state(int64_t batch_size) {
  std::vector<int64_t> shape{max_delay_ + 1};
  for (auto s : state_shape(n_)) shape.push_back(s);
  // Keep the device and dtype the module was moved to, if it was.
  const auto opts = has_state("history") ? state("history").options() : placed(options_);
  set_state("history", torch::zeros(shape, opts));
  slot_push_serial_.assign(static_cast<size_t>(max_delay_ + 1), 0);
}

int64_t Delay::slot_push_serial(int64_t slot) const {
  return slot >= 0 && slot < static_cast<int64_t>(slot_push_serial_.size()) ? slot_push_serial_[slot]
                                                                             : unplaced_push_serial_;
}

void Delay::reserve(int64_t max_delay_steps) {
  if (max_delay_steps <= max_delay_) return;
  if (has_state("history")) {
    const at::Tensor& history = state("history");
    // Construction time, not the simulation loop: one host read is fine here.
    TORCH_CHECK(!history.any().item<bool>(), "Delay: cannot grow a ring buffer of ", max_delay_,
                " steps to ", max_delay_steps, " once it holds values; add the readers with longer delays "
                "before the simulation starts");
    std::vector<int64_t> shape = history.sizes().vec();
    shape[0] = max_delay_steps + 1;
    set_state("history", torch::zeros(shape, history.options()));
    slot_push_serial_.assign(static_cast<size_t>(max_delay_steps + 1), 0);
  }
  max_delay_ = max_delay_steps;
}

SharedDelay shared_spike_delay(DynamicalSystem& source, int64_t n, int64_t delay_steps, at::TensorOptions options) {
  TORCH_CHECK(delay_steps >= 1, "shared_spike_delay: delay_steps must be >= 1, got ", delay_steps);
  // One buffer per stored dtype: float and bool spikes of different readers are stored alike,
  // but a float64 reader cannot share a float32 history.
  const std::string key = std::string("spike_delay/") + std::string(options.dtype().name());
  if (auto existing = std::dynamic_pointer_cast<Delay>(source.shared_module(key))) {
    TORCH_CHECK(existing->size() == n, "shared_spike_delay: the population's spike history holds ", existing->size(),
                " neurons, this reader expects ", n);
    existing->reserve(delay_steps);
    return {existing, false};
  }
  auto created = std::make_shared<Delay>(n, delay_steps, options);
  source.set_shared_module(key, created);
  return {created, true};
}

int64_t Delay::slot(int64_t step) const {
  const int64_t len = max_delay_ + 1;
  return ((step % len) + len) % len;
}

namespace {
// The ring slot of `step` ([1], on the clock's device) for a step being recorded for replay.
at::Tensor slot_on_device(const at::Tensor& clock, int64_t delay_steps, int64_t len) {
  return torch::remainder(clock - delay_steps, len).reshape({1});
}
}  // namespace

void Delay::push(const at::Tensor& value, int64_t step) {
  Context ctx;
  ctx.step = step;
  push(value, ctx);
}

void Delay::push(const at::Tensor& value, const Context& ctx) {
  const at::Tensor& history = state("history");
  TORCH_CHECK(value.sizes() == history.sizes().slice(1), "Delay.push: expected a value of shape ",
              history.sizes().slice(1), ", got ", value.sizes());
  const at::Tensor v = value.to(history.options());
  const bool replay = ctx.clock.defined();
  if (at::GradMode::is_enabled() && (v.requires_grad() || history.requires_grad())) {
    // Out of place, so earlier reads keep their autograd history (costs a copy of the buffer).
    const auto index = replay ? slot_on_device(ctx.clock, 0, max_delay_ + 1)
                              : torch::full({1}, slot(ctx.step), history.options().dtype(torch::kLong));
    set_state("history", history.index_copy(0, index, v.unsqueeze(0)));
  } else if (replay) {
    history.index_copy_(0, slot_on_device(ctx.clock, 0, max_delay_ + 1), v.unsqueeze(0));
    unplaced_push_serial_ = ++push_serial_;
  } else {
    history.select(0, slot(ctx.step)).copy_(v);
    const int64_t written = slot(ctx.step);
    if (written < static_cast<int64_t>(slot_push_serial_.size())) {
      slot_push_serial_[written] = ++push_serial_;
    } else {
      unplaced_push_serial_ = ++push_serial_;
    }
  }
}

at::Tensor Delay::read(int64_t delay_steps, int64_t step) const {
  Context ctx;
  ctx.step = step;
  return read(delay_steps, ctx);
}

at::Tensor Delay::read(int64_t delay_steps, const Context& ctx) const {
  TORCH_CHECK(delay_steps >= 0 && delay_steps <= max_delay_, "Delay.read: delay ", delay_steps,
              " steps is outside [0, ", max_delay_, "], the longest this buffer holds");
  const at::Tensor& history = state("history");
  if (ctx.clock.defined()) {
    return history.index_select(0, slot_on_device(ctx.clock, delay_steps, max_delay_ + 1)).squeeze(0);
  }
  const at::Tensor view = history.select(0, slot(ctx.step - delay_steps));
  // A history without gradient is written in place (push), so a view of it that a reader's
  // backward saves (the spikes, for its weights' gradient) would be overwritten before the
  // backward runs: while recording, hand out a copy.
  if (at::GradMode::is_enabled() && !history.requires_grad()) return view.clone();
  return view;
}

namespace {
// The entries of a CSR (rows non-decreasing, as CSR order gives them) split by delay: the
// stable permutation into groups (each group keeps the CSR order, so its rows stay
// non-decreasing and its row pointers are a cumulative count), and each group's CSR (int64, CPU).
struct ByDelay {
  at::Tensor order;
  std::vector<int64_t> delays;
  std::vector<at::Tensor> indptr, indices;
};

ByDelay group_by_delay(const at::Tensor& rows, const at::Tensor& cols, const at::Tensor& delays, int64_t n_pre) {
  ByDelay out;
  const auto [sorted, order] = delays.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  out.order = order;
  const auto unique = torch::unique_consecutive(sorted, false, true);
  const at::Tensor values = std::get<0>(unique), sizes = std::get<2>(unique);
  const at::Tensor group_rows = rows.index_select(0, order);
  const at::Tensor group_cols = cols.index_select(0, order);
  int64_t offset = 0;
  for (int64_t g = 0; g < values.numel(); ++g) {
    const int64_t size = sizes[g].item<int64_t>();
    at::Tensor ptr = torch::zeros({n_pre + 1}, rows.options());
    ptr.narrow(0, 1, n_pre).copy_(torch::bincount(group_rows.narrow(0, offset, size), {}, n_pre).cumsum(0));
    out.delays.push_back(values[g].item<int64_t>());
    out.indptr.push_back(ptr);
    out.indices.push_back(group_cols.narrow(0, offset, size));
    offset += size;
  }
  return out;
}
}  // namespace

HeteroDelayCsr::HeteroDelayCsr(const at::Tensor& indptr, const at::Tensor& indices,
                               const at::Tensor& delays, int64_t n_pre, int64_t n_post,
                               int64_t max_delay_steps, bool event)
    : n_pre_(n_pre), n_post_(n_post), max_delay_(max_delay_steps), event_(event) {
  TORCH_CHECK(n_pre >= 0 && n_post >= 0, "HeteroDelayCsr: n_pre and n_post must be >= 0, got ", n_pre, " and ",
              n_post);
  TORCH_CHECK(max_delay_steps >= 0, "HeteroDelayCsr: max_delay_steps must be >= 0, got ", max_delay_steps);
  TORCH_CHECK(indptr.dim() == 1 && indptr.size(0) == n_pre + 1, "HeteroDelayCsr: indptr must have n_pre + 1 = ",
              n_pre + 1, " entries, got ", indptr.sizes());
  TORCH_CHECK(indices.dim() == 1, "HeteroDelayCsr: indices must be 1-D, got ", indices.sizes());
  TORCH_CHECK(!delays.is_floating_point() && !delays.is_complex() && delays.scalar_type() != at::kBool,
              "HeteroDelayCsr: delays are whole steps (an integer tensor), got ", delays.scalar_type());
  TORCH_CHECK(delays.dim() == 1 && delays.size(0) == indices.size(0),
              "HeteroDelayCsr: delays must have one entry per synapse (", indices.size(0), "), got ",
              delays.sizes());
  // Construction, not the simulation loop: the connectivity is examined on the host once.
  const at::Tensor indptr_cpu = indptr.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor indices_cpu = indices.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor delays_cpu = delays.to(at::kCPU, at::kLong).contiguous();
  const int64_t nnz = indices.numel();
  TORCH_CHECK(indptr_cpu[0].item<int64_t>() == 0 && indptr_cpu[n_pre].item<int64_t>() == nnz,
              "HeteroDelayCsr: indptr must start at 0 and end at nnz = ", nnz);
  TORCH_CHECK(n_pre == 0 || (indptr_cpu.diff() >= 0).all().item<bool>(),
              "HeteroDelayCsr: indptr must be non-decreasing");
  if (nnz > 0) {
    const auto lo = delays_cpu.min().item<int64_t>();
    const auto hi = delays_cpu.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi <= max_delay_steps, "HeteroDelayCsr: delays must lie in [0, ", max_delay_steps,
                "] steps, got [", lo, ", ", hi, "]");
    TORCH_CHECK(indices_cpu.min().item<int64_t>() >= 0 && indices_cpu.max().item<int64_t>() < n_post,
                "HeteroDelayCsr: indices must lie in [0, ", n_post, ")");
  }
  const at::Tensor counts = indptr_cpu.diff();
  const at::Tensor rows_cpu = torch::repeat_interleave(torch::arange(n_pre, counts.options()), counts);

  // Counted before any group is built: by synapse is the choice where the groups would not fit.
  const int64_t groups = std::get<0>(torch::_unique(delays_cpu)).numel();
  grouped_ = groups * (n_pre + 1) <= 2 * nnz;

  const auto device = indices.device();
  if (!grouped_) {
    // In delay order (stably: CSR order within a delay), so that a step's reads of one slot of
    // the history come together, in row order.
    const auto [sorted, order] = delays_cpu.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
    order_ = register_buffer("order", order.to(device));
    pre_ = register_buffer("pre", rows_cpu.index_select(0, order).to(device));
    post_ = register_buffer("post", indices_cpu.index_select(0, order).to(device));
    delays_ = register_buffer("delays_upto" + std::to_string(max_delay_), sorted.to(device));
    return;
  }
  const ByDelay split = group_by_delay(rows_cpu, indices_cpu, delays_cpu, n_pre);
  order_ = register_buffer("order", split.order.to(device));
  for (int64_t g = 0; g < groups; ++g) {
    distinct_delays_.push_back(split.delays[g]);
    const std::string name = "_d" + std::to_string(split.delays[g]);
    group_indptr_.push_back(register_buffer("indptr" + name, split.indptr[g].to(device, indptr.scalar_type())));
    group_indices_.push_back(register_buffer("indices" + name, split.indices[g].to(device, indices.scalar_type())));
  }
}

at::Tensor HeteroDelayCsr::delays() const {
  if (!grouped_) {
    const at::Tensor in_order = delays_.to(at::kCPU, at::kLong);
    return torch::empty_like(in_order).index_put_({order_.to(at::kCPU)}, in_order);
  }
  at::Tensor by_group = torch::empty({order_.size(0)}, torch::kLong);
  int64_t offset = 0;
  for (size_t g = 0; g < distinct_delays_.size(); ++g) {
    const int64_t size = group_indices_[g].size(0);
    by_group.narrow(0, offset, size).fill_(distinct_delays_[g]);
    offset += size;
  }
  // order_[i] is the CSR position of the i-th entry in group order.
  return torch::empty_like(by_group).index_put_({order_.to(at::kCPU)}, by_group);
}

at::Tensor HeteroDelayCsr::forward(const Delay& history, const at::Tensor& weights, int64_t step) const {
  Context ctx;
  ctx.step = step;
  return forward(history, weights, ctx);
}

at::Tensor HeteroDelayCsr::forward(const Delay& history, const at::Tensor& weights, const Context& ctx) const {
  TORCH_CHECK(history.size() == n_pre_, "HeteroDelayCsr: the delay buffer holds ", history.size(),
              " neurons, the projection has ", n_pre_, " presynaptic neurons");
  TORCH_CHECK(history.max_delay() >= max_delay_, "HeteroDelayCsr: the delay buffer holds ",
              history.max_delay(), " steps, the synapses need ", max_delay_);
  TORCH_CHECK(weights.is_floating_point(), "HeteroDelayCsr: weights must be floating point, got ",
              weights.scalar_type());
  const int64_t nnz = this->nnz();
  TORCH_CHECK(weights.numel() == 1 ? weights.dim() <= 1 : (weights.dim() == 1 && weights.size(0) == nnz),
              "HeteroDelayCsr: weights must be one scalar ([] or [1]) or one per synapse ([", nnz, "]), got ",
              weights.sizes());
  return grouped_ ? forward_by_delay(history, weights, ctx) : forward_by_synapse(history, weights, ctx);
}

namespace {

// out[(b,) post[k]] += h[(step - delays[k]) mod L, (b,) pre[k]] * w[k] over the entries in
// their (delay) order, in one pass without temporaries: the same products, added to each
// target in the same order, as forward_by_synapse's index_select, multiply and index_add, so
// the same bits.
// Each batch item is summed by one thread, so the result does not depend on the thread count.
template <typename scalar_t>
void deliver_by_synapse_cpu(const at::Tensor& h, const at::Tensor& w, const at::Tensor& pre, const at::Tensor& post,
                            const at::Tensor& delays, int64_t step, at::Tensor& out) {
  const int64_t len = h.size(0), batch = h.dim() == 3 ? h.size(1) : 1, n_pre = h.size(-1);
  const int64_t n_post = out.size(-1), nnz = pre.numel();
  const int64_t now = ((step % len) + len) % len;
  const scalar_t* hp = h.const_data_ptr<scalar_t>();
  const scalar_t* wp = w.const_data_ptr<scalar_t>();
  const bool one_weight = w.numel() == 1;
  const int64_t* from = pre.const_data_ptr<int64_t>();
  const int64_t* to = post.const_data_ptr<int64_t>();
  const int64_t* d = delays.const_data_ptr<int64_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      scalar_t* target = op + b * n_post;
      for (int64_t k = 0; k < nnz; ++k) {
        int64_t slot = now - d[k];  // a delay is below len: one comparison, not a division
        if (slot < 0) slot += len;
        target[to[k]] += hp[(slot * batch + b) * n_pre + from[k]] * (one_weight ? wp[0] : wp[k]);
      }
    }
  });
}

// The event form of deliver_by_synapse_cpu: each run of one delay (entries run_start[g] to
// run_start[g + 1], rows non-decreasing) visits only the rows listed in its slot. A row's
// entries are found from the run's coarse row index (block_start[g * blocks + b]: the run's
// first entry of a row >= b << shift), then a few steps forward: a step costs the spikes in
// flight plus the synapses they reach, instead of every synapse. The nonzero terms are the
// loop's, in its order, so the same bits (the skipped terms add zero).
template <typename scalar_t>
void deliver_by_synapse_events_cpu(const at::Tensor& h, const at::Tensor& w, const at::Tensor& pre,
                                   const at::Tensor& post, const std::vector<int64_t>& run_delay,
                                   const std::vector<int64_t>& block_start, int64_t shift,
                                   const std::vector<std::vector<int64_t>>& lists, int64_t step, at::Tensor& out) {
  const int64_t blocks = static_cast<int64_t>(block_start.size() / std::max<size_t>(run_delay.size(), 1));
  const int64_t len = h.size(0), batch = h.dim() == 3 ? h.size(1) : 1, n_pre = h.size(-1);
  const int64_t n_post = out.size(-1);
  const int64_t now = ((step % len) + len) % len;
  const scalar_t* hp = h.const_data_ptr<scalar_t>();
  const scalar_t* wp = w.const_data_ptr<scalar_t>();
  const bool one_weight = w.numel() == 1;
  const int64_t* from = pre.const_data_ptr<int64_t>();
  const int64_t* to = post.const_data_ptr<int64_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      scalar_t* target = op + b * n_post;
      for (size_t g = 0; g < run_delay.size(); ++g) {
        int64_t slot = now - run_delay[g];
        if (slot < 0) slot += len;
        const auto& rows = lists[static_cast<size_t>(slot * batch + b)];
        if (rows.empty()) continue;
        const scalar_t* values = hp + (slot * batch + b) * n_pre;
        const int64_t* index = block_start.data() + g * blocks;
        const int64_t* end = from + index[blocks - 1];  // the last block's start is the run's end
        const int64_t* at = from + index[0];
        for (const int64_t i : rows) {
          at = std::max(at, from + index[i >> shift]);
          while (at < end && *at < i) ++at;
          for (; at < end && *at == i; ++at) {
            const int64_t k = at - from;
            target[to[k]] += values[i] * (one_weight ? wp[0] : wp[k]);
          }
          if (at == end) break;
        }
      }
    }
  });
}

// The same over the delay groups' CSR matrices, as forward_by_delay's ops compute it: group g
// scatters the rows of its slot of the history into a zeroed buffer, row by row (an event
// delivery skips the rows whose value is zero, as the event op does), and the buffers are
// added to the output group by group; in one call instead of an op per delay. Weights: one,
// or one per entry in the groups' order.
// With the slots' spike lists (event delivery), a group visits the rows listed in its slot
// instead of testing every row: the same rows, in the same order.
template <typename scalar_t, typename index_t>
void deliver_by_delay_cpu(const at::Tensor& h, const at::Tensor& w, const std::vector<at::Tensor>& indptr,
                          const std::vector<at::Tensor>& indices, const std::vector<int64_t>& delays, int64_t step,
                          bool event, const std::vector<std::vector<int64_t>>* lists, at::Tensor& out) {
  const int64_t len = h.size(0), batch = h.dim() == 3 ? h.size(1) : 1, n_pre = h.size(-1);
  const int64_t n_post = out.size(-1);
  const int64_t now = ((step % len) + len) % len;
  const scalar_t* hp = h.const_data_ptr<scalar_t>();
  const scalar_t* wp = w.const_data_ptr<scalar_t>();
  const bool one_weight = w.numel() == 1;
  scalar_t* op = out.data_ptr<scalar_t>();
  at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
    std::vector<scalar_t> group_sum(static_cast<size_t>(n_post));
    for (int64_t b = b0; b < b1; ++b) {
      scalar_t* target = op + b * n_post;
      int64_t offset = 0;
      for (size_t g = 0; g < delays.size(); ++g) {
        int64_t slot = now - delays[g];
        if (slot < 0) slot += len;
        const scalar_t* values = hp + (slot * batch + b) * n_pre;
        const index_t* ptr = indptr[g].const_data_ptr<index_t>();
        const index_t* idx = indices[g].const_data_ptr<index_t>();
        const scalar_t* wg = one_weight ? wp : wp + offset;
        // The first group's sum is the output itself (it starts at zero), as the ops keep it.
        scalar_t* sum = g == 0 ? target : group_sum.data();
        if (g > 0) std::fill(group_sum.begin(), group_sum.end(), scalar_t(0));
        if (lists != nullptr) {
          for (const int64_t i : (*lists)[static_cast<size_t>(slot * batch + b)]) {
            const scalar_t v = values[i];
            for (int64_t k = ptr[i]; k < ptr[i + 1]; ++k) sum[idx[k]] += (one_weight ? wg[0] : wg[k]) * v;
          }
        } else {
          for (int64_t i = 0; i < n_pre; ++i) {
            const scalar_t v = values[i];
            if (event && v == scalar_t(0)) continue;
            for (int64_t k = ptr[i]; k < ptr[i + 1]; ++k) sum[idx[k]] += (one_weight ? wg[0] : wg[k]) * v;
          }
        }
        if (g > 0) {
          for (int64_t j = 0; j < n_post; ++j) target[j] += group_sum[static_cast<size_t>(j)];
        }
        offset += indices[g].numel();
      }
    }
  });
}

// Outside autograd and replay recording, on the CPU in float or double: the fused loops above.
bool fused_cpu_delivery(const at::Tensor& stored, const at::Tensor& weights, const at::Tensor& buffer,
                        const Context& ctx) {
  const bool recorded = at::GradMode::is_enabled() && (weights.requires_grad() || stored.requires_grad());
  return !recorded && !ctx.clock.defined() && stored.device().is_cpu() && weights.device().is_cpu() &&
         buffer.device().is_cpu() && (weights.scalar_type() == at::kFloat || weights.scalar_type() == at::kDouble);
}

}  // namespace

void HeteroDelayCsr::index_runs() const {
  const bool current = runs_delays_data_ == delays_.const_data_ptr() && runs_delays_version_ == delays_._version() &&
                       runs_pre_data_ == pre_.const_data_ptr() && runs_pre_version_ == pre_._version();
  if (current) return;
  const int64_t nnz = delays_.numel();
  const int64_t* d = delays_.const_data_ptr<int64_t>();
  const int64_t* rows = pre_.const_data_ptr<int64_t>();
  std::vector<int64_t> run_start;
  run_delay_.clear();
  for (int64_t k = 0; k < nnz; ++k) {
    if (k == 0 || d[k] != d[k - 1]) {
      run_delay_.push_back(d[k]);
      run_start.push_back(k);
    }
  }
  run_start.push_back(nnz);
  // Blocks of 2^shift rows, as fine as an index of at most half an entry per synapse allows.
  const int64_t runs = static_cast<int64_t>(run_delay_.size());
  run_block_shift_ = 0;
  while (run_block_shift_ < 62 && runs * ((n_pre_ >> run_block_shift_) + 2) > std::max<int64_t>(nnz / 2, 1)) {
    ++run_block_shift_;
  }
  // Per run: the first entry of each block, then the run's end (so blocks + 1 values).
  const int64_t blocks = (n_pre_ >> run_block_shift_) + 2;
  run_block_start_.assign(static_cast<size_t>(runs * blocks), 0);
  for (int64_t g = 0; g < runs; ++g) {
    int64_t k = run_start[g];
    for (int64_t b = 0; b + 1 < blocks; ++b) {
      while (k < run_start[g + 1] && rows[k] < (b << run_block_shift_)) ++k;
      run_block_start_[g * blocks + b] = k;
    }
    run_block_start_[g * blocks + blocks - 1] = run_start[g + 1];
  }
  runs_delays_data_ = delays_.const_data_ptr();
  runs_delays_version_ = delays_._version();
  runs_pre_data_ = pre_.const_data_ptr();
  runs_pre_version_ = pre_._version();
}

const HeteroDelayCsr::SpikeLists& HeteroDelayCsr::spike_lists(const Delay& history) const {
  const at::Tensor& stored = history.state("history");
  const int64_t len = stored.size(0), batch = stored.dim() == 3 ? stored.size(1) : 1, n = stored.size(-1);
  const int64_t version = stored._version(), serial = history.push_serial();
  // Only pushes since the last look: each moved the version by one, and each knew its slot.
  const bool only_pushes = lists_.history.defined() && lists_.history.is_same(stored) &&
                           version - lists_.version == serial - lists_.serial &&
                           history.unplaced_push_serial() <= lists_.serial &&
                           lists_.rows.size() == static_cast<size_t>(len * batch);
  if (!only_pushes) lists_.rows.assign(static_cast<size_t>(len * batch), {});
  const at::Tensor c = stored.contiguous();
  for (int64_t slot = 0; slot < len; ++slot) {
    if (only_pushes && history.slot_push_serial(slot) <= lists_.serial) continue;
    AT_DISPATCH_ALL_TYPES_AND3(at::kBool, at::kHalf, at::kBFloat16, c.scalar_type(), "HeteroDelayCsr.spike_lists", [&] {
      for (int64_t b = 0; b < batch; ++b) {
        const scalar_t* values = c.const_data_ptr<scalar_t>() + (slot * batch + b) * n;
        auto& rows = lists_.rows[static_cast<size_t>(slot * batch + b)];
        rows.clear();
        for (int64_t i = 0; i < n; ++i) {
          if (values[i] != scalar_t(0)) rows.push_back(i);
        }
      }
    });
  }
  lists_.history = stored;
  lists_.version = version;
  lists_.serial = serial;
  return lists_;
}

at::Tensor HeteroDelayCsr::forward_by_synapse(const Delay& history, const at::Tensor& weights,
                                              const Context& ctx) const {
  const at::Tensor& stored = history.state("history");  // [D + 1, (B,) n_pre]
  const at::Tensor h = stored.to(weights.scalar_type());
  const int64_t len = h.size(0);
  if (fused_cpu_delivery(stored, weights, pre_, ctx)) {
    std::vector<int64_t> shape = h.sizes().slice(1).vec();
    shape.back() = n_post_;
    at::Tensor out = torch::zeros(shape, h.options());
    const at::Tensor hc = h.contiguous(), wc = weights_by_delay(weights, ctx).contiguous();
    if (event_) {
      index_runs();
      const auto& lists = spike_lists(history).rows;
      AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "HeteroDelayCsr.by_synapse", [&] {
        deliver_by_synapse_events_cpu<scalar_t>(hc, wc, pre_, post_, run_delay_, run_block_start_, run_block_shift_,
                                                lists, ctx.step, out);
      });
      return out;
    }
    AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "HeteroDelayCsr.by_synapse", [&] {
      deliver_by_synapse_cpu<scalar_t>(hc, wc, pre_, post_, delays_, ctx.step, out);
    });
    return out;
  }
  const at::Tensor slots = torch::remainder(ctx.step_value() - delays_, len);
  const at::Tensor flat = slots * n_pre_ + pre_;  // index into [D + 1, n_pre] flattened
  const at::Tensor w = weights.numel() == 1 ? weights.reshape({}) : weights_by_delay(weights, ctx);
  if (h.dim() == 2) {
    const at::Tensor values = h.reshape({-1}).index_select(0, flat);
    return torch::zeros({n_post_}, values.options()).index_add(0, post_, values * w);
  }
  const at::Tensor hb = h.permute({1, 0, 2}).reshape({h.size(1), -1});  // [B, (D + 1) n_pre]
  const at::Tensor values = hb.index_select(1, flat);
  return torch::zeros({h.size(1), n_post_}, values.options()).index_add(1, post_, values * w);
}

at::Tensor HeteroDelayCsr::weights_by_delay(const at::Tensor& weights, const Context& ctx) const {
  if (weights.numel() == 1) return weights;  // one weight for every synapse
  const bool recorded = at::GradMode::is_enabled() && weights.requires_grad();
  if (recorded || ctx.clock.defined()) return weights.index_select(0, order_);
  if (cached_from_.defined() && cached_from_.is_same(weights) && cached_data_ == weights.const_data_ptr() &&
      cached_version_ == weights._version() && cached_order_data_ == order_.const_data_ptr() &&
      cached_order_version_ == order_._version() && cached_sorted_.device() == weights.device() &&
      cached_sorted_.scalar_type() == weights.scalar_type()) {
    return cached_sorted_;
  }
  cached_sorted_ = weights.detach().index_select(0, order_);
  cached_from_ = weights;
  cached_data_ = weights.const_data_ptr();
  cached_version_ = weights._version();
  cached_order_data_ = order_.const_data_ptr();
  cached_order_version_ = order_._version();
  return cached_sorted_;
}

at::Tensor HeteroDelayCsr::forward_by_delay(const Delay& history, const at::Tensor& weights,
                                            const Context& ctx) const {
  const at::Tensor w = weights_by_delay(weights, ctx);
  const at::Tensor& stored = history.state("history");
  const bool same_index_types =
      group_indices_.empty() || group_indices_[0].scalar_type() == group_indptr_[0].scalar_type();
  if (same_index_types && fused_cpu_delivery(stored, weights, order_, ctx)) {
    const at::Tensor h = stored.to(weights.scalar_type()).contiguous();
    std::vector<int64_t> shape = h.sizes().slice(1).vec();
    shape.back() = n_post_;
    at::Tensor out = torch::zeros(shape, h.options());
    const at::Tensor wc = w.contiguous();
    const std::vector<std::vector<int64_t>>* lists = event_ ? &spike_lists(history).rows : nullptr;
    AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "HeteroDelayCsr.by_delay", [&] {
      if (group_indices_.empty() || group_indices_[0].scalar_type() == at::kLong) {
        deliver_by_delay_cpu<scalar_t, int64_t>(h, wc, group_indptr_, group_indices_, distinct_delays_, ctx.step, event_,
                                                lists, out);
      } else {
        deliver_by_delay_cpu<scalar_t, int32_t>(h, wc, group_indptr_, group_indices_, distinct_delays_, ctx.step, event_,
                                                lists, out);
      }
    });
    return out;
  }
  const bool per_synapse = weights.numel() != 1;
  at::Tensor out;
  int64_t offset = 0;  // from the groups' sizes, which a torch::load may have changed with the entries
  for (size_t g = 0; g < distinct_delays_.size(); ++g) {
    at::Tensor x = history.read(distinct_delays_[g], ctx);
    if (x.scalar_type() != at::kBool) x = x.to(weights.scalar_type());
    const int64_t size = group_indices_[g].size(0);
    const at::Tensor wg = per_synapse ? w.narrow(0, offset, size) : w;
    offset += size;
    at::Tensor y = event_ ? ops::event_csr_matmul(group_indptr_[g], group_indices_[g], wg, x, {n_pre_, n_post_}, true)
                          : ops::csr_matmul(group_indptr_[g], group_indices_[g], wg, x, {n_pre_, n_post_}, true);
    // The matmuls' backward never reads their output, so the sum may grow in place.
    out = out.defined() ? out.add_(y) : y;
  }
  if (!out.defined()) {
    const at::Tensor& h = history.state("history");
    std::vector<int64_t> shape = h.sizes().slice(1).vec();
    shape.back() = n_post_;
    out = torch::zeros(shape, h.options().dtype(weights.scalar_type()));
  }
  return out;
}

}  // namespace brain
