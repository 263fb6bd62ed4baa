"""Losses by name: each is a pair, the per-example value (from optax) and its hand-written gradient
with respect to the logits, side by side.

``per_example(logits, y) -> (batch,)`` is example i's own loss term; ``grad_logits(logits, y) ->
(batch, out)`` is its derivative with respect to ``logits[i]``. The mean over the batch (or the
weighted mean with ``sample_weight``) is applied on top by `reduce` and `example_scale`, the same way
for every loss, so ``d mean / d logits = grad_logits * example_scale[:, None]``.

- ``mse``: mean over all elements of ``(logits - y) ** 2``; y of shape (batch, out).
- ``softmax_cross_entropy``: y integer labels (batch,) or probabilities (batch, out);
  ``-sum(y * log_softmax(logits))`` per example; gradient ``softmax(logits) * sum(y) - y``.
- ``sigmoid_binary_cross_entropy``: y in [0, 1] of shape (batch, out); the logistic loss, mean over
  outputs; gradient ``(sigmoid(logits) - y) / out``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array


class Loss(NamedTuple):
    per_example: Callable[[Array, Array], Array]  # (logits (B, out), y) -> (B,)
    grad_logits: Callable[[Array, Array], Array]  # (logits (B, out), y) -> (B, out)


def _mse(logits: Array, y: Array) -> Array:
    return optax.losses.squared_error(logits, y).mean(axis=-1)


def _mse_grad(logits: Array, y: Array) -> Array:
    return (2.0 / logits.shape[-1]) * (logits - y)


def _softmax_ce(logits: Array, y: Array) -> Array:
    if y.ndim == 1:  # integer labels
        return optax.losses.softmax_cross_entropy_with_integer_labels(logits, y)
    return optax.losses.softmax_cross_entropy(logits, y)


def _softmax_ce_grad(logits: Array, y: Array) -> Array:
    p = jax.nn.softmax(logits, axis=-1)
    if y.ndim == 1:  # integer labels: softmax - one_hot (an iota compare, fused; never materialised)
        return p - jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)
    return p * jnp.sum(y, axis=-1, keepdims=True) - y


def _sigmoid_bce(logits: Array, y: Array) -> Array:
    return optax.losses.sigmoid_binary_cross_entropy(logits, y).mean(axis=-1)


def _sigmoid_bce_grad(logits: Array, y: Array) -> Array:
    return (jax.nn.sigmoid(logits) - y) / logits.shape[-1]


BUILTIN: dict[str, Loss] = {
    "mse": Loss(_mse, _mse_grad),
    "softmax_cross_entropy": Loss(_softmax_ce, _softmax_ce_grad),
    "sigmoid_binary_cross_entropy": Loss(_sigmoid_bce, _sigmoid_bce_grad),
}

_REGISTRY: dict[str, Loss] = dict(BUILTIN)


def known_losses() -> list[str]:
    return sorted(_REGISTRY)


def get_loss(name: str) -> Loss:
    """The (per_example, grad_logits) pair registered under `name`; a ValueError listing the known names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; expected one of {known_losses()}") from None


def _concrete(a) -> np.ndarray | None:
    """`a` as a numpy array when its values are known now (not a tracer under jit), else None."""
    if isinstance(a, jax.core.Tracer):
        return None
    return np.asarray(a)


def prepare_targets(name: str, y, batch: int, out: int, dtype) -> Array:
    """Check `y` against what loss `name` expects and return it ready for use.

    Integer labels stay integer; everything else is cast to the params' `dtype`. Raises a
    ValueError or TypeError naming the expected and the given shape, dtype or value range.
    """
    y = jnp.asarray(y) if not isinstance(y, jax.Array) else y
    is_int = jnp.issubdtype(y.dtype, jnp.integer)
    if name == "softmax_cross_entropy" and y.ndim == 1:
        if not is_int:
            raise TypeError(
                f"softmax_cross_entropy with 1-D y expects integer labels of shape ({batch},), got dtype {y.dtype}"
            )
        if y.shape != (batch,):
            raise ValueError(f"integer labels must have shape ({batch},), got {y.shape}")
        values = _concrete(y)
        if values is not None and values.size and (values.min() < 0 or values.max() >= out):
            raise ValueError(
                f"integer labels must lie in [0, {out}) for {out} outputs, got values in "
                f"[{values.min()}, {values.max()}]"
            )
        return y
    if y.shape != (batch, out):
        hint = " or integer labels of shape ({},)".format(batch) if name == "softmax_cross_entropy" else ""
        raise ValueError(f"loss {name!r} expects y of shape ({batch}, {out}){hint}, got {y.shape}")
    if not (jnp.issubdtype(y.dtype, jnp.floating) or is_int or y.dtype == jnp.bool_):
        raise TypeError(f"y must be numeric, got dtype {y.dtype}")
    if name == "sigmoid_binary_cross_entropy":
        values = _concrete(y)
        if values is not None and values.size and (values.min() < 0 or values.max() > 1):
            raise ValueError(
                f"sigmoid_binary_cross_entropy expects y in [0, 1], got values in [{values.min()}, {values.max()}]"
            )
    return y.astype(dtype)


def prepare_sample_weight(sample_weight, batch: int, dtype) -> Array | None:
    """Check a (batch,) weight vector (non-negative, not all zero when concrete) and cast it to `dtype`."""
    if sample_weight is None:
        return None
    w = jnp.asarray(sample_weight)
    if w.shape != (batch,):
        raise ValueError(f"sample_weight must have shape ({batch},), got {w.shape}")
    values = _concrete(w)
    if values is not None and (values.min() < 0 or values.sum() <= 0 or not np.isfinite(values).all()):
        raise ValueError("sample_weight must be finite, non-negative and not all zero")
    return w.astype(dtype)


def example_scale(batch: int, sample_weight: Array | None, dtype) -> Array | float:
    """d(batch mean)/d(loss_i): ``1 / batch``, or ``w_i / sum(w)`` with weights. Shape () or (batch,)."""
    if sample_weight is None:
        return jnp.asarray(1.0 / batch, dtype)
    return sample_weight / jnp.sum(sample_weight)


def reduce(per_example: Array, sample_weight: Array | None) -> Array:
    """The batch mean of per-example losses, or their weighted mean ``sum(w * l) / sum(w)``."""
    if sample_weight is None:
        return jnp.mean(per_example)
    return jnp.sum(sample_weight * per_example) / jnp.sum(sample_weight)
