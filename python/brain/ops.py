"""Typed, documented wrappers over ``torch.ops.brain.*`` (semantics: SPEC section 1).

Connectivity ``A`` of shape ``[n_rows, n_cols]`` is CSR: ``indptr`` ``[n_rows + 1]``,
``indices`` ``[nnz]`` (int32 or int64, same dtype), ``weights`` ``[nnz]`` or a scalar
(homogeneous). For a projection rows are presynaptic neurons, so the synaptic input is
``A.T @ spikes`` (``transpose=True``). Every function here is a dispatcher op: it works with
autograd, ``torch.compile(fullgraph=True)``, TorchScript and the ``torch.func`` transforms
(grad, vjp, jacrev, jvp, jacfwd, hessian, vmap), to second order in every combination of
modes, the LIF ops included (their second derivatives are the plain loop's, differentiated
twice).
"""

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

__all__ = [
    "csr_matmul",
    "event_csr_matmul",
    "validate_csr",
    "csr_to_csc",
    "csr_from_coo",
    "csr_update_on_pre_",
    "csr_update_on_post_",
    "jitc_matmul",
    "event_jitc_matmul",
    "jitc_materialize",
    "jitc_to_csr",
    "jitc_pattern",
    "spike",
    "lif_sequence",
    "lif_recurrent_sequence",
    "lif_dense_recurrent_sequence",
    "lif_jit_recurrent_sequence",
    "poisson_spikes",
    "poisson_spikes_at",
]


def csr_matmul(indptr: Tensor, indices: Tensor, weights: Tensor, x: Tensor,
               shape: Sequence[int], transpose: bool = False) -> Tensor:
    """``A @ x`` (x ``[n_cols]`` or ``[B, n_cols]``) or, with ``transpose``, ``A.T @ x``
    (x ``[n_rows]`` or ``[B, n_rows]``). ``x`` has the weights' dtype or is bool.
    Differentiable with respect to ``weights`` and floating ``x``."""
    return torch.ops.brain.csr_matmul(indptr, indices, weights, x, list(shape), transpose)


def event_csr_matmul(indptr: Tensor, indices: Tensor, weights: Tensor, x: Tensor,
                     shape: Sequence[int], transpose: bool = False) -> Tensor:
    """The value of :func:`csr_matmul`, computed by visiting only the non-zero entries of
    ``x`` (bool or float events). With ``transpose=True`` (spikes of presynaptic neurons)
    its cost is active rows times row length rather than nnz."""
    return torch.ops.brain.event_csr_matmul(indptr, indices, weights, x, list(shape), transpose)


def validate_csr(indptr: Tensor, indices: Tensor, shape: Sequence[int]) -> None:
    """Checks the whole CSR structure and raises ``RuntimeError`` naming the first problem.
    Reads values back from the GPU: call it once on new connectivity, not every step."""
    torch.ops.brain.validate_csr(indptr, indices, list(shape))


def csr_to_csc(indptr: Tensor, indices: Tensor,
               shape: Sequence[int]) -> Tuple[Tensor, Tensor, Tensor]:
    """Returns ``(csc_indptr, csc_indices, perm)``: the column-major view of the same matrix,
    where ``csc_indices`` are rows and ``weights[perm]`` the weights in column order."""
    return torch.ops.brain.csr_to_csc(indptr, indices, list(shape))


def csr_from_coo(rows: Tensor, cols: Tensor,
                 shape: Sequence[int]) -> Tuple[Tensor, Tensor, Tensor]:
    """Sorts coordinates into CSR: returns ``(indptr, indices, perm)`` with
    ``indices == cols[perm]``; permute per-entry values with ``values[perm]``."""
    return torch.ops.brain.csr_from_coo(rows, cols, list(shape))


def csr_update_on_pre_(weights: Tensor, indptr: Tensor, indices: Tensor, pre_spikes: Tensor,
                       post_trace: Tensor, scale: float, w_min: Optional[float] = None,
                       w_max: Optional[float] = None) -> None:
    """In place, for every row ``i`` with a presynaptic spike and each entry ``k`` of it:
    ``weights[k] = clamp(weights[k] + scale * pre_spikes[i] * post_trace[indices[k]])``."""
    torch.ops.brain.csr_update_on_pre_(weights, indptr, indices, pre_spikes, post_trace,
                                       scale, w_min, w_max)


def csr_update_on_post_(weights: Tensor, csc_indptr: Tensor, csc_indices: Tensor, perm: Tensor,
                        post_spikes: Tensor, pre_trace: Tensor, scale: float,
                        w_min: Optional[float] = None, w_max: Optional[float] = None) -> None:
    """In place, for every column ``j`` with a postsynaptic spike and each entry of it (CSR
    position ``perm[p]``, row ``csc_indices[p]``, from :func:`csr_to_csc`):
    ``weights[perm[p]] = clamp(weights[perm[p]] + scale * post_spikes[j] * pre_trace[row])``."""
    torch.ops.brain.csr_update_on_post_(weights, csc_indptr, csc_indices, perm, post_spikes,
                                        pre_trace, scale, w_min, w_max)


# ---- JIT connectivity (SPEC section 2) ------------------------------------------------------
# ``A`` of shape ``[n_rows, n_cols]`` is regenerated from ``(seed, prob, shape, dist)`` on every
# call and never stored (the generator is specified in kernels/jitc/jitc_gen.h). Entries are
# non-zero with probability ``prob``, independently; values by ``dist`` from ``weight``:
# ``"homo"``: ``weight = w`` (shape ``[]`` or ``[1]``); ``"uniform"``: ``[low, high]``;
# ``"normal"``: ``[mean, std]``. The same arguments give the same ``A`` bit for bit on CPU and
# CUDA. Invalid values (``std < 0``, ``high < low``) raise on CPU and give NaN on CUDA.
# ``seed`` is taken modulo 2^64 (the generator's key is its uint64 value; a negative seed is
# its two's complement), as for the Poisson ops.


def jitc_matmul(x: Tensor, weight: Tensor, prob: float, seed: int, shape: Sequence[int],
                dist: str = "homo", transpose: bool = False) -> Tensor:
    """``A @ x`` (x ``[n_cols]`` or ``[B, n_cols]``) or, with ``transpose``, ``A.T @ x``
    (x ``[n_rows]`` or ``[B, n_rows]``). Differentiable with respect to ``x`` and
    ``weight``; ``prob`` and ``seed`` are plain numbers."""
    return torch.ops.brain.jitc_matmul(x, weight, float(prob), _signed_seed(seed), list(shape), dist,
                                       transpose)


def event_jitc_matmul(x: Tensor, weight: Tensor, prob: float, seed: int, shape: Sequence[int],
                      dist: str = "homo", transpose: bool = False) -> Tensor:
    """The value of :func:`jitc_matmul`, visiting only the non-zero entries of ``x`` (bool
    or float events): with ``transpose=True`` the cost is active rows x ``prob * n_cols``."""
    return torch.ops.brain.event_jitc_matmul(x, weight, float(prob), _signed_seed(seed), list(shape),
                                             dist, transpose)


def jitc_materialize(weight: Tensor, prob: float, seed: int, shape: Sequence[int],
                     dist: str = "homo") -> Tensor:
    """The dense ``A`` that :func:`jitc_matmul` uses, for tests and inspection."""
    return torch.ops.brain.jitc_materialize(weight, float(prob), _signed_seed(seed), list(shape), dist)


def jitc_to_csr(weight: Tensor, prob: float, seed: int, shape: Sequence[int],
                dist: str = "homo") -> Tuple[Tensor, Tensor, Tensor]:
    """The same ``A`` as CSR ``(indptr, indices, values)`` (int64 indices, columns sorted
    within rows), usable with :func:`csr_matmul`. Reads ``nnz`` back from the GPU: build once."""
    return torch.ops.brain.jitc_to_csr(weight, float(prob), _signed_seed(seed), list(shape), dist)


def jitc_pattern(like: Tensor, prob: float, seed: int, shape: Sequence[int], col_begin: int = 0,
                 col_end: Optional[int] = None, exclude_diagonal: bool = False) -> Tuple[Tensor, Tensor]:
    """The non-zero pattern of ``A`` (the same for every ``dist``; ``prob`` may be 0) as CSR
    ``(indptr, indices)`` of int64, restricted to columns ``[col_begin, col_end)`` and renumbered
    from ``col_begin``, without the diagonal when ``exclude_diagonal`` (square shapes only).
    Built on ``like``'s device (its values and dtype are not read); CPU and CUDA give the same
    bits. ``brain.models.fixed_prob`` is this pattern. Reads ``nnz`` back from the GPU."""
    return torch.ops.brain.jitc_pattern(like, float(prob), _signed_seed(seed), list(shape), int(col_begin),
                                        None if col_end is None else int(col_end), bool(exclude_diagonal))


SURROGATES = ("sigmoid", "arctan", "piecewise_quadratic", "piecewise_exp", "soft_sign", "erf", "inv_square",
              "gaussian", "multi_gaussian", "leaky_relu", "relu_grad")


def spike(x: Tensor, surrogate: str = "sigmoid", surrogate_params: Sequence[float] = ()) -> Tensor:
    """The surrogate-gradient Heaviside the library's neurons spike with: ``(x > 0)`` in ``x``'s
    dtype forward, ``surrogate'(x) * grad`` backward (and ``surrogate'(x) * tangent`` in forward
    mode), for neurons of your own, e.g. ``spike((v - v_th) / (v_th - v_reset))``. ``surrogate``:
    one of :data:`SURROGATES` (``"super_spike"`` names ``"inv_square"``); ``surrogate_params``:
    none for its published defaults, or the 7 values ``alpha, beta, sigma, h, s, scale, width``
    (see ``brain/models/surrogate.h``). The surrogate derivative is written with torch ops, so a
    second derivative differentiates it (``hessian``, gradient penalties)."""
    return torch.ops.brain.spike(x, surrogate, [float(p) for p in surrogate_params])


def lif_sequence(input: Tensor, v0: Tensor, *, v_rest: float = 0.0, v_reset: float = 0.0,
                 v_th: float = 1.0, R: float = 1.0, tau: float = 10.0, dt: float = 1.0,
                 method: str = "exp_euler", detach_reset: bool = True, surrogate: str = "sigmoid",
                 surrogate_params: Sequence[float] = ()) -> Tuple[Tensor, Tensor]:
    """T steps of LIF neurons in one fused op: ``input`` ``[T, ...]`` (current per step),
    ``v0`` ``[...]`` -> ``(spikes [T, ...], v_last [...])``. Per step (``brain::LIF`` without
    refractoriness): exp_euler ``v = vinf + (u - vinf) exp(-dt/tau)``, ``vinf = v_rest + R I``
    (euler: ``v = u + (-(u - v_rest) + R I) dt/tau``); spike where ``v > v_th``; reset to
    ``v_reset``. The backward applies the surrogate (a ``brain`` surrogate name; 7 parameters
    ``alpha, beta, sigma, h, s, scale, width`` or none for its defaults) to
    ``(v - v_th) / (v_th - v_reset)`` and keeps only one ``[T, ...]`` tensor."""
    return torch.ops.brain.lif_sequence(input, v0, float(v_rest), float(v_reset), float(v_th), float(R),
                                        float(tau), float(dt), method, bool(detach_reset), surrogate,
                                        [float(p) for p in surrogate_params])


def lif_recurrent_sequence(drive: Tensor, v0: Tensor, history: Tensor, indptr: Tensor, indices: Tensor,
                           weights: Tensor, *, v_rest: float = 0.0, v_reset: float = 0.0, v_th: float = 1.0,
                           R: float = 1.0, tau: float = 10.0, dt: float = 1.0, method: str = "exp_euler",
                           detach_reset: bool = True, surrogate: str = "sigmoid",
                           surrogate_params: Sequence[float] = ()) -> Tuple[Tensor, Tensor]:
    """:func:`lif_sequence` for a recurrent layer in one op: the neurons' spikes of ``d`` steps
    earlier come back through the square CSR matrix ``A`` ``[n, n]`` (``indptr``, ``indices``,
    ``weights`` per synapse or one value; rows presynaptic). ``drive`` ``[T, B, n]`` (or
    ``[T, n]``) is the external current, ``v0`` ``[B, n]`` the membrane before the first step and
    ``history`` ``[d, B, n]`` the spikes of the ``d >= 1`` steps before the window, oldest first.
    Step ``t`` integrates ``drive[t] + A.T @ S_t`` with ``S_t = history[t]`` for ``t < d``, else
    ``spikes[t - d]``. Returns ``(spikes, v_last)``; the next window's history is the last ``d``
    steps of ``cat(history, spikes)``. Differentiable in ``drive``, ``v0``, ``history`` and
    ``weights``; on the CPU the spikes equal those of the op-by-op network bit for bit."""
    return torch.ops.brain.lif_recurrent_sequence(drive, v0, history, indptr, indices, weights, float(v_rest),
                                                  float(v_reset), float(v_th), float(R), float(tau), float(dt),
                                                  method, bool(detach_reset), surrogate,
                                                  [float(p) for p in surrogate_params])


def lif_dense_recurrent_sequence(drive: Tensor, v0: Tensor, history: Tensor, weight: Tensor, *,
                                 v_rest: float = 0.0, v_reset: float = 0.0, v_th: float = 1.0, R: float = 1.0,
                                 tau: float = 10.0, dt: float = 1.0, method: str = "exp_euler",
                                 detach_reset: bool = True, surrogate: str = "sigmoid",
                                 surrogate_params: Sequence[float] = ()) -> Tuple[Tensor, Tensor]:
    """:func:`lif_recurrent_sequence` with a dense recurrent matrix ``weight`` ``[n, n]``, stored
    as :class:`torch.nn.Linear` stores it (post x pre): step ``t`` integrates
    ``drive[t] + S_t @ weight.T``. One autograd node for the window; the weight gradient is one
    matrix product over all steps. Differentiable in ``drive``, ``v0``, ``history`` and
    ``weight``; the spikes equal those of Linear + add + :func:`lif_sequence` per step."""
    return torch.ops.brain.lif_dense_recurrent_sequence(drive, v0, history, weight, float(v_rest), float(v_reset),
                                                        float(v_th), float(R), float(tau), float(dt), method,
                                                        bool(detach_reset), surrogate,
                                                        [float(p) for p in surrogate_params])


def lif_jit_recurrent_sequence(drive: Tensor, v0: Tensor, history: Tensor, weight: Tensor, prob: float, seed: int,
                               dist: str = "homo", *, v_rest: float = 0.0, v_reset: float = 0.0, v_th: float = 1.0,
                               R: float = 1.0, tau: float = 10.0, dt: float = 1.0, method: str = "exp_euler",
                               detach_reset: bool = True, surrogate: str = "sigmoid",
                               surrogate_params: Sequence[float] = ()) -> Tuple[Tensor, Tensor]:
    """:func:`lif_recurrent_sequence` with JIT connectivity (never stored): ``A`` ``[n, n]``,
    rows presynaptic, each synapse present with probability ``prob`` and generated from
    ``seed`` exactly as :func:`event_jitc_matmul` generates it; ``weight`` holds the parameters
    of ``dist`` (``w``, ``[low, high]`` or ``[mean, std]`` for ``"homo"``, ``"uniform"``,
    ``"normal"``). Step ``t`` integrates ``drive[t] + A^T S_t``. One autograd node for the
    window; the weight parameters' gradient is one pass over the matrix. Differentiable in
    ``drive``, ``v0``, ``history`` and ``weight``; the spikes equal those of event_jitc_matmul
    + add + :func:`lif_sequence` per step."""
    return torch.ops.brain.lif_jit_recurrent_sequence(drive, v0, history, weight, float(prob), _signed_seed(seed),
                                                      dist, float(v_rest), float(v_reset), float(v_th), float(R),
                                                      float(tau), float(dt), method, bool(detach_reset), surrogate,
                                                      [float(p) for p in surrogate_params])


def poisson_spikes(rates: Tensor, dt: float, seed: int, step: int, offset: int = 0) -> Tensor:
    """One step of independent Poisson spike trains: ``rates`` ``[..., n]`` in Hz (leading
    dimensions are batch items), ``dt`` in ms -> bool ``[..., n]``, neuron ``j`` firing with
    probability ``rates[..., j] * dt / 1000``. Counter-based: each draw is a function of
    ``(seed, step, batch item, offset + j)`` only (kernels/rng/poisson_draw.h), so CPU and CUDA
    draw the same spikes, nothing is carried between steps, and a block of neurons starting
    at global index ``offset`` draws exactly its share of the whole population's spikes.
    ``seed`` is taken modulo 2^64 (a negative value is its two's complement)."""
    return torch.ops.brain.poisson_spikes(rates, float(dt), _signed_seed(seed), int(step), int(offset))


def poisson_spikes_at(rates: Tensor, dt: float, seed: int, step: Tensor, offset: int = 0) -> Tensor:
    """:func:`poisson_spikes` with the step read from ``step``, a one-element int64 tensor on
    ``rates``' device (or the CPU), when the kernel runs: no host sync, and a CUDA graph that
    captured the draw replays it at whatever step the tensor holds then. A CPU step must be
    >= 0; a negative one on the GPU (which cannot be checked without a sync) draws as
    step + 2^64."""
    return torch.ops.brain.poisson_spikes_at(rates, float(dt), _signed_seed(seed), step, int(offset))


def _signed_seed(seed: int) -> int:
    # The schema's int is signed 64-bit: a seed >= 2^63 travels as its two's complement.
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return seed - (1 << 64) if seed >= 1 << 63 else seed


@torch.library.register_fake("brain::jitc_pattern")
def _jitc_pattern_fake(like, prob, seed, shape, col_begin=0, col_end=None, exclude_diagonal=False):
    nnz = torch.library.get_ctx().new_dynamic_size()
    return (like.new_empty((shape[0] + 1,), dtype=torch.int64),
            like.new_empty((nnz,), dtype=torch.int64))


@torch.library.register_fake("brain::jitc_to_csr")
def _jitc_to_csr_fake(weight, prob, seed, shape, dist="homo"):
    # nnz is data-dependent: an unbacked size, as torch.nonzero's fake does.
    nnz = torch.library.get_ctx().new_dynamic_size()
    n_rows = shape[0]
    return (weight.new_empty((n_rows + 1,), dtype=torch.int64),
            weight.new_empty((nnz,), dtype=torch.int64),
            weight.new_empty((nnz,)))
