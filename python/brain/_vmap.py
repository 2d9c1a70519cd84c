"""Batching rules: how ``torch.vmap`` (and the torch.func transforms built on it: jacrev,
jacfwd, hessian, per-sample gradients) runs the brain ops.

Without a rule torch runs an op once per slice and warns that it is slow. Here the ops whose
batch dimension already exists take the vmapped dimension into it, in one call:
  - the CSR and JIT matmuls when only ``x`` is mapped (x ``[V, n]`` or ``[V, B, n]`` as
    ``[V * B, n]``), and their backward ops when only the gradient with respect to ``x`` is
    asked for (jacrev with respect to the input maps over the output's basis);
  - the LIF sequence ops, which are elementwise over the neurons: the mapped dimension becomes
    one more neuron dimension (and the spike op, elementwise; the factors of the forward-mode
    tangents are ops, which vmap maps itself);
  - the recurrent LIF forms and their backward ops when their connectivity is not mapped:
    their batch items are independent, so the mapped dimension becomes more items; a weight
    gradient per slice (per-sample gradients) is then made from each slice's current
    gradients, one matmul backward a slice.
The rest (mapped connectivity or weights, the Poisson draws, the
structure builders and checks, the plasticity updates) runs slice by slice, as torch's
fallback would, without its warning: each slice's result is the op's own, so the
rules change no value, only the number of calls (up to the rounding of the dense recurrent
form's matrix products, which BLAS may sum in another order for another batch size)."""

import torch


def _at(t, dim, i):
    return t if dim is None else t.select(dim, i)


def _front(t, dim, size):
    """t with the mapped dimension first (expanded when t is not mapped)."""
    return t.movedim(dim, 0) if dim is not None else t.expand(size, *t.shape)


def _slice_by_slice(op, info, in_dims, args):
    outs = [op(*[_at(a, d, i) if isinstance(a, torch.Tensor) else a for a, d in zip(args, in_dims)])
            for i in range(info.batch_size)]
    if outs[0] is None:  # an op that returns nothing (a check)
        return None, None
    if not isinstance(outs[0], tuple):
        return torch.stack(outs), 0
    stacked = tuple(None if first is None else torch.stack([o[k] for o in outs]) for k, first in enumerate(outs[0]))
    return stacked, tuple(None if s is None else 0 for s in stacked)


def _fold(t, dim, size):
    """The mapped x ``[V, n]`` or ``[V, B, n]`` as the op's batch ``[V * B, n]``, and how to unfold."""
    t = _front(t, dim, size)
    if t.dim() == 2:
        return t, lambda out: out
    lead = t.shape[:2]
    return t.reshape(lead[0] * lead[1], t.shape[-1]), lambda out: out.reshape(*lead, out.shape[-1])


def _matmul_rule(op, x_at, mapped_others):
    def rule(info, in_dims, *args):
        x_dim = in_dims[x_at]
        if x_dim is None or any(in_dims[i] is not None for i in mapped_others) or args[x_at].dim() not in (2, 3):
            return _slice_by_slice(op, info, in_dims, args)
        x, unfold = _fold(args[x_at], x_dim, info.batch_size)
        return unfold(op(*args[:x_at], x, *args[x_at + 1:])), 0
    return rule


def _backward_rule(op, g_at, x_at, mapped_others):
    """grad_x = A^T g reads g, and x only for its shape: mapped g (and x) fold into the batch.
    A weight gradient sums over the batch, so per slice it is one call a slice."""
    def rule(info, in_dims, *args):
        mask = args[-1]
        g_dim, x_dim = in_dims[g_at], in_dims[x_at]
        slice_dims = args[g_at].dim() - (g_dim is not None)
        if not mask[0] or mask[1] or any(in_dims[i] is not None for i in mapped_others) or slice_dims not in (1, 2):
            return _slice_by_slice(op, info, in_dims, args)
        if g_dim is None:  # the same grad_x for every slice
            out = op(*[_at(a, d, 0) if isinstance(a, torch.Tensor) else a for a, d in zip(args, in_dims)])
            return out, (None, None)
        g, unfold = _fold(args[g_at], g_dim, info.batch_size)
        x, _ = _fold(args[x_at], x_dim, info.batch_size)
        call = list(args)
        call[g_at], call[x_at] = g, x
        grad_x, grad_w = op(*call)
        return (unfold(grad_x), grad_w), (0, None)
    return rule


def _lif_rule(op, time_major):
    """The LIF sequence ops are elementwise over the neurons: the mapped dimension becomes one
    more neuron dimension, right after T for [T, ...] tensors and first for [...] ones (expanded
    where a tensor is not mapped). Outputs [T, ...] come back mapped at 1, [...] ones at 0."""
    n = len(time_major)

    def rule(info, in_dims, *args):
        moved = []
        for t, d, major in zip(args[:n], in_dims[:n], time_major):
            at = 1 if major else 0
            moved.append(t.movedim(d, at) if d is not None
                         else t.unsqueeze(at).expand(*t.shape[:at], info.batch_size, *t.shape[at:]))
        outs = op(*moved, *args[n:])
        # Outputs led by T (spikes, v_pre, grad_input) have one dimension more than the state
        # (v0, grad_v_last: the second tensor).
        return outs, tuple(1 if o.dim() > moved[1].dim() else 0 for o in outs)
    return rule


def _recurrent_rule(op, majors, out_majors, connectivity, mask_at=None, weight_grad=None):
    """The recurrent LIF forms: the items of their batch are independent (each item's spikes
    feed only its own neurons), so when the connectivity is not mapped the mapped dimension
    joins the batch, in one call: after the leading T (or delay) dimension of the [T, ...] and
    [d, ...] tensors and first in the state's, as more items ([T, V * B, n]) or as the batch
    itself ([T, n] slices become [T, V, n]). majors[i]: whether tensor i leads with T or d. A
    mapped connectivity runs one call a slice. A weight gradient (output_mask[3] of the backward
    ops) sums over the batch, so it is not folded: the one folded call gives every slice's
    drive gradient (the gradient of each step's current), and weight_grad(args, g, sources)
    makes a slice's weight gradient from its current gradients and the spikes that fed those
    currents (both [rows, n]), one matmul-backward op a slice instead of a whole recurrent
    backward a slice (per-sample gradients)."""
    n = len(majors)

    def rule(info, in_dims, *args):
        if any(in_dims[i] is not None for i in connectivity):
            return _slice_by_slice(op, info, in_dims, args)
        per_slice_weight_grad = mask_at is not None and args[mask_at][3]
        if per_slice_weight_grad:
            if weight_grad is None:
                return _slice_by_slice(op, info, in_dims, args)
            mask = args[mask_at]
            args = list(args)
            args[mask_at] = [True, mask[1], mask[2], False]  # the drive's gradient: the currents'
        size = info.batch_size
        items = args[0].dim() - (in_dims[0] is not None) == 3  # slices [T, B, n], not [T, n]
        moved = []
        for t, d, major in zip(args[:n], in_dims[:n], majors):
            at = 1 if major else 0
            t = t.movedim(d, at) if d is not None else t.unsqueeze(at).expand(*t.shape[:at], size, *t.shape[at:])
            moved.append(t.flatten(at, at + 1) if items else t)
        outs, dims = [], []
        for out, major in zip(op(*moved, *args[n:]), out_majors):
            at = 1 if major else 0
            if out is not None and items:
                out = out.unflatten(at, (size, -1))
            outs.append(out)
            dims.append(None if out is None else at)
        if per_slice_weight_grad:
            spikes, history = moved[3], moved[4]
            steps, delay, width = spikes.shape[0], history.shape[0], spikes.shape[-1]
            sources = torch.cat([history[:min(delay, steps)], spikes[:max(steps - delay, 0)]])
            if items:
                sources = sources.unflatten(1, (size, -1))
            currents = outs[0]  # [T, V, (B,) n]
            outs[3] = torch.stack([weight_grad(args, currents[:, v].reshape(-1, width),
                                               sources[:, v].reshape(-1, width)) for v in range(size)])
            dims[3] = 0
            if not mask[0]:
                outs[0], dims[0] = None, None
        return tuple(outs), tuple(dims)
    return rule


# A slice's weight gradient from its current gradients g and their source spikes, both [rows, n],
# for each recurrent form (the backward ops' arguments: connectivity from position 5), as the
# fused backward computes it: the matmul's own backward op, or W's outer product for the dense
# form (weight [post, pre], the current is S W^T).
_RECURRENT_WEIGHT_GRADS = {
    "": lambda a, g, s: torch.ops.brain._csr_matmul_backward(g, a[5], a[6], a[7], s, [g.shape[-1]] * 2, True,
                                                             [False, True])[1],
    "dense_": lambda a, g, s: g.t() @ s,
    "jit_": lambda a, g, s: torch.ops.brain._jitc_matmul_backward(g, s, a[5], a[6], a[7], [g.shape[-1]] * 2, a[8],
                                                                  True, [False, True])[1],
}


def _in_place_rule(op, name):
    """The plasticity ops update their weights (argument 0) in place, slice by slice: each
    slice of mapped weights gets its own slice's update. Shared (unmapped) weights with mapped
    spikes or traces are refused, as torch refuses an in-place op whose other arguments are
    mapped when self is not: the slices' updates would otherwise pile up on one tensor."""
    def rule(info, in_dims, *args):
        if in_dims[0] is None and any(d is not None for a, d in zip(args[1:], in_dims[1:])
                                      if isinstance(a, torch.Tensor)):
            raise RuntimeError(f"brain::{name}: under vmap the weights it updates in place must be mapped "
                               "whenever the spikes or traces are (one set of weights per slice)")
        return _slice_by_slice(op, info, in_dims, args)
    return rule


def register():
    ops = torch.ops.brain
    # csr_matmul(indptr, indices, weights, x, shape, transpose)
    for name in ("csr_matmul", "event_csr_matmul"):
        torch.library.register_vmap(f"brain::{name}", _matmul_rule(getattr(ops, name), 3, (0, 1, 2)))
    # _csr_matmul_backward(grad_out, indptr, indices, weights, x, shape, transpose, mask)
    torch.library.register_vmap("brain::_csr_matmul_backward",
                                _backward_rule(ops._csr_matmul_backward, 0, 4, (1, 2, 3)))
    # jitc_matmul(x, weight, prob, seed, shape, dist, transpose)
    for name in ("jitc_matmul", "event_jitc_matmul"):
        torch.library.register_vmap(f"brain::{name}", _matmul_rule(getattr(ops, name), 0, (1,)))
    # _jitc_matmul_backward(grad_out, x, weight, prob, seed, shape, dist, transpose, mask)
    torch.library.register_vmap("brain::_jitc_matmul_backward", _backward_rule(ops._jitc_matmul_backward, 0, 1, (2,)))
    # lif_sequence(input [T, ...], v0 [...]) -> (spikes [T, ...], v_last [...]);
    # _lif_sequence_forward adds v_pre [T, ...]; _lif_sequence_backward(grad_spikes [T, ...],
    # grad_v_last [...], v_pre [T, ...]) -> (grad_input [T, ...], grad_v0 [...]).
    for name, major in (("lif_sequence", (True, False)), ("_lif_sequence_forward", (True, False)),
                        ("_lif_sequence_backward", (True, False, True))):
        torch.library.register_vmap(f"brain::{name}", _lif_rule(getattr(ops, name), major))
    # spike(x [any shape]): elementwise, so the mapped dimension stays where it is.
    # (_lif_tangent_coefficients is made of ops, CompositeImplicitAutograd: vmap maps those.)
    torch.library.register_vmap("brain::spike",
                                lambda info, in_dims, x, *args: (ops.spike(x, *args), in_dims[0]))
    # The recurrent forms: (drive [T, ...], v0 [...], history [d, ...], connectivity...) ->
    # (spikes [T, ...], v_last [...], and for _forward v_pre [T, ...]); their backward ops
    # (grad_spikes, grad_v_last, v_pre, spikes, history, connectivity..., output_mask) ->
    # (grad_drive, grad_v0, grad_history, grad_weight). Connectivity: indptr, indices, weights
    # for CSR, the weight for the dense and JIT forms.
    for form, connectivity in (("", 3), ("dense_", 1), ("jit_", 1)):
        name = f"lif_{form}recurrent_sequence"
        for op_name, outs in ((name, (True, False)), (f"_{name}_forward", (True, False, True))):
            torch.library.register_vmap(f"brain::{op_name}",
                                        _recurrent_rule(getattr(ops, op_name), (True, False, True), outs,
                                                        range(3, 3 + connectivity)))
        backward = getattr(ops, f"_{name}_backward")
        torch.library.register_vmap(f"brain::_{name}_backward",
                                    _recurrent_rule(backward, (True, False, True, True, True),
                                                    (True, False, True, False), range(5, 5 + connectivity),
                                                    mask_at=-1, weight_grad=_RECURRENT_WEIGHT_GRADS[form]))
    for name in ("csr_update_on_pre_", "csr_update_on_post_"):
        torch.library.register_vmap(f"brain::{name}", _in_place_rule(getattr(ops, name), name))
    # The rest, one call a slice: the JIT matrices of mapped weights, the Poisson draws (a pure
    # function of rates, seed and step, so each slice draws what the op draws for it alone) and
    # the structure builders and checks.
    for name in ("jitc_materialize", "jitc_to_csr", "poisson_spikes", "poisson_spikes_at", "csr_from_coo",
                 "csr_to_csc", "validate_csr", "jitc_pattern"):
        op = getattr(ops, name)
        torch.library.register_vmap(f"brain::{name}",
                                    lambda info, in_dims, *args, op=op: _slice_by_slice(op, info, in_dims, args))
