"""How the hand-written pass computes its matmuls: the layout of the activations, and the kernel of
each dot. Autodiff differentiates one fixed forward pass; a hand-written backward pass is free to
choose both. These choices follow side-by-side timings on XLA:CPU (``benchmarks/experiments/layouts.py``;
the figures are in docs/benchmarks.md).

- **Tiny dots** (``M * K * N <= TINY_DOT``) are a broadcast multiply and a sum instead of a
  ``dot_general``. XLA fuses them with their neighbours, so a tiny net's whole step becomes a few
  loop kernels instead of a dozen library calls.
- **Layout.** ``"batch"``: activations (B, d), as `mlp_jax.forward` has them. ``"feature"``:
  activations (d, B). XLA:CPU sends a dot to its fast library (YNNPACK) only when the lhs contracts
  its last axis; in the batch layout the weight gradient ``a.T @ delta`` contracts the batch axis of
  both operands and goes to Eigen instead, which is slower per dot and runs beside the delta dot on
  the same cores. In the feature layout every dot has the fast form (forward ``W.T @ a`` with
  ``W.T`` materialised, delta ``W @ delta``, weight gradient ``a @ delta.T``), for the price of
  transposing ``x`` and each ``W`` once per step. That pays on wide layers and large batches and
  costs on small ones, so ``"auto"`` picks it only on the CPU, in float32, for batch >= 1024 and
  every hidden width >= 512.
- **Batch parts.** The pass can cut the batch into parts, each with its own forward and backward
  chain of dots, meeting only in the loss head (the logits are joined) and in the weight gradients
  (summed). XLA:CPU then runs one part's elementwise kernels (bias + ReLU, masks, bias sums) beside
  the other part's matmuls instead of between two matmuls of one chain. That pays on large batches of
  wide layers and not on smaller ones, so ``"auto"`` uses two parts in the feature layout from batch
  4096 on, in a single-device process only (on a sharded batch, a part would gather rows from several
  devices).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

TINY_DOT = 4096  # M * K * N at or below which a dot is a broadcast multiply and a sum
LAYOUTS = ("auto", "batch", "feature")
FEATURE_MIN_BATCH = 1024
FEATURE_MIN_WIDTH = 512
PARTS_MIN_BATCH = 4096  # "auto" cuts the batch in two from here on (feature layout)


def dot(a: Array, b: Array, contract_a: int, contract_b: int) -> Array:
    """The 2-D matmul contracting axis `contract_a` of `a` with axis `contract_b` of `b`: (M, N), where
    M is `a`'s other axis and N is `b`'s. Tiny ones are a broadcast multiply and a sum."""
    m, k = a.shape[1 - contract_a], a.shape[contract_a]
    n = b.shape[1 - contract_b]
    if m * k * n <= TINY_DOT:
        a_mk = a if contract_a == 1 else a.T  # (M, K)
        b_kn = b if contract_b == 0 else b.T  # (K, N)
        return jnp.sum(a_mk[:, :, None] * b_kn[None, :, :], axis=1)
    return lax.dot_general(a, b, (((contract_a,), (contract_b,)), ((), ())))


def materialize(tree):
    """The same arrays, computed here (an optimization barrier): keeps XLA from folding a transpose
    back into the dot that reads it, which would undo the layout choice."""
    return lax.optimization_barrier(tree)


def choose_layout(layout: str, sizes: Sequence[int], batch: int, dtype) -> str:
    """``"batch"`` or ``"feature"`` for `layout` (one of `LAYOUTS`), a net of layer `sizes`
    [d_in, hidden..., d_out], a batch of `batch` examples and parameters of `dtype`."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {list(LAYOUTS)}")
    if layout != "auto":
        return layout
    hidden = sizes[1:-1]
    wide = bool(hidden) and min(hidden) >= FEATURE_MIN_WIDTH and batch >= FEATURE_MIN_BATCH
    on_cpu = jax.default_backend() == "cpu"
    return "feature" if wide and on_cpu and jnp.dtype(dtype) == jnp.float32 else "batch"


def choose_batch_parts(batch_parts: int | str, layout: str, batch: int) -> int:
    """How many parts a batch of `batch` examples is cut into: `batch_parts` (an int in [1, batch]), or
    for ``"auto"`` two in the ``"feature"`` layout from `PARTS_MIN_BATCH` on in a one-device process,
    else one."""
    if isinstance(batch_parts, str) and batch_parts == "auto":
        return 2 if layout == "feature" and batch >= PARTS_MIN_BATCH and jax.device_count() == 1 else 1
    try:
        parts = None if isinstance(batch_parts, (bool, str)) else operator.index(batch_parts)  # int, numpy int
    except TypeError:
        parts = None
    if parts is None or not 1 <= parts <= max(batch, 1):
        raise ValueError(
            f"batch_parts must be 'auto' or an int in [1, batch={batch}] (a static argument "
            f"under jit), got {batch_parts!r}"
        )
    return parts


def batch_bounds(batch: int, parts: int) -> list[tuple[int, int]]:
    """(start, stop) of each of `parts` contiguous, near-equal slices of range(batch)."""
    edges = [batch * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(edges))
