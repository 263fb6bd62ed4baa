"""Inverted dropout after each hidden activation: the rate's check and the masks.

With rate ``p`` and a PRNG key, hidden layer l's output ``a_{l+1} = phi(z_l)`` (B, d_{l+1}) becomes
``a_{l+1} * m_l``, where ``m_l`` holds ``1 / (1 - p)`` for a kept unit and 0 for a dropped one, each unit of
each example kept with probability ``1 - p``. The expected output is unchanged, so evaluation uses the net
as it is (no key, no dropout). The output layer is never dropped.

The masks depend only on the key, the rate, the batch size and the hidden widths, in the ``"batch"`` layout
(B, d), so `mlp_jax.forward`, `mlp_jax.loss` and the hand-written pass (`mlp_jax.backprop`, in any layout and
any number of batch parts) draw the same ones from the same key; the backward pass multiplies each delta by
the mask its forward pass used, which is the exact derivative of the masked net.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core.params import Params

Array = jax.Array


def check_dropout(rate, key) -> float:
    """The dropout rate in effect: `rate` as a float, or 0.0 when dropout is off (rate 0 or no key).

    `rate` must be a concrete number in [0, 1) (static under `jax.jit`); `key` None or one PRNG key
    (``jax.random.key(seed)``, or a legacy ``jax.random.PRNGKey(seed)`` of shape (2,) uint32). Raises
    ValueError or TypeError naming what was expected and what was given.
    """
    if isinstance(rate, jax.core.Tracer):
        raise TypeError(
            "dropout must be a concrete number in [0, 1), known when tracing (mark it static under jax.jit), "
            "got a traced value"
        )
    array = np.asarray(rate) if not isinstance(rate, (bool, np.bool_, str)) else None
    if array is None or array.ndim != 0 or array.dtype.kind not in "iuf":
        raise TypeError(f"dropout must be a number in [0, 1), got {rate!r}")
    value = float(array)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must be in [0, 1) (the probability of dropping a hidden unit), got {value}")
    if key is not None:
        _check_key(key)
    return 0.0 if key is None else value


def _check_key(key) -> None:
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ()
    legacy = dtype == jnp.uint32 and shape == (2,)
    if not (typed or legacy):
        raise TypeError(
            "dropout's key must be one PRNG key, jax.random.key(seed) (or jax.random.PRNGKey(seed)), got "
            + (f"{type(key).__name__} {key!r:.60}" if dtype is None else f"an array of shape {shape} and dtype {dtype}")
        )


def dropout_masks(params: Params, batch: int, rate: float, key: Array | None) -> tuple[Array, ...]:
    """One mask (batch, d_{l+1}) per hidden layer of `params`, in the params' dtype: ``1 / (1 - rate)``
    where the unit is kept, 0 where it is dropped; ``()`` when dropout is off. `rate` and `key` as
    `check_dropout` has passed them (rate 0.0 means off).

    Layer l draws uint32 bits from the l-th key split from `key` and keeps a unit where its bits fall
    below ``(1 - rate) * 2**32`` (comparing the bits skips their conversion to floats)."""
    if rate == 0.0 or key is None or len(params) < 2:
        return ()
    dtype = params[0].w.dtype
    keep = 1.0 - rate
    threshold = np.uint32(min(round(keep * 2.0**32), 2**32 - 1))
    scale, zero = jnp.asarray(1.0 / keep, dtype), jnp.zeros((), dtype)
    keys = jax.random.split(key, len(params) - 1)
    return tuple(
        jnp.where(jax.random.bits(keys[l], (batch, layer.w.shape[1]), jnp.uint32) < threshold, scale, zero)
        for l, layer in enumerate(params[:-1])
    )
