"""Typed, documented wrappers over ``torch.ops.brain.*`` (semantics: SPEC section 1).

Connectivity ``A`` of shape ``[n_rows, n_cols]`` is CSR: ``indptr`` ``[n_rows + 1]``,
``indices`` ``[nnz]`` (int32 or int64, same dtype), ``weights`` ``[nnz]`` or a scalar
(homogeneous). For a projection rows are presynaptic neurons, so the synaptic input is
``A.T @ spikes`` (``transpose=True``). Every function here is a dispatcher op: it works with
autograd, ``torch.compile(fullgraph=True)`` and TorchScript.
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
