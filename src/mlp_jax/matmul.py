"""How the hand-written pass computes its matmuls: the layout of the activations, and the kernel of
each dot. Autodiff differentiates one fixed forward pass; a hand-written backward pass is free to
choose both, and these choices were measured on XLA:CPU (``benchmarks/experiments/layouts.py``).

- **Tiny dots** (``M * K * N <= TINY_DOT``) are a broadcast multiply and a sum instead of a
  ``dot_general``. XLA fuses them with their neighbours, so a tiny net's whole step becomes a few
  loop kernels instead of a dozen library calls: the 2-8-1 XOR net runs ~6x more fused steps/s.
- **Layout.** ``"batch"``: activations (B, d), as `mlp_jax.forward` has them. ``"feature"``:
  activations (d, B). XLA:CPU sends a dot to its fast library (YNNPACK) only when the lhs contracts
  its last axis; in the batch layout the weight gradient ``a.T @ delta`` contracts the batch axis of
  both operands and goes to Eigen instead, which was 15-25 % slower per dot and runs beside the delta
  dot on the same cores. In the feature layout every dot has the fast form (forward ``W.T @ a`` with
  ``W.T`` materialised, delta ``W @ delta``, weight gradient ``a @ delta.T``), for the price of
  transposing ``x`` and each ``W`` once per step. That pays on wide layers and large batches and
  costs on small ones, so ``"auto"`` picks it only on the CPU, in float32, for batch >= 1024 and
  every hidden width >= 512.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

TINY_DOT = 4096  # M * K * N at or below which a dot is a broadcast multiply and a sum
LAYOUTS = ("auto", "batch", "feature")
FEATURE_MIN_BATCH = 1024
FEATURE_MIN_WIDTH = 512


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
