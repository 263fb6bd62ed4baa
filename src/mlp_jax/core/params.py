"""Parameters: a tuple of dense `Layer`s, and the classic initialisation schemes.

A net with layer sizes ``[d0, d1, ..., dL]`` has ``L`` layers; layer ``l`` maps
``(batch, d_l) -> (batch, d_{l+1})`` as ``a @ w + b``. The params are a plain
tuple of NamedTuples, so `jax.tree`, `jax.jit` and optax take them as they are.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Sequence
from typing import NamedTuple, SupportsIndex

import jax
import jax.numpy as jnp

Array = jax.Array


class Layer(NamedTuple):
    """One dense layer: ``w`` of shape ``(d_in, d_out)``, ``b`` of shape ``(d_out,)``."""

    w: Array
    b: Array


Params = tuple[Layer, ...]

# The size limits `init_params` checks before it allocates anything. A layer size is one dimension of a
# weight matrix: an int32, as XLA's GPU kernels and the BLAS libraries index a dimension. The parameter
# count (weights and biases of every layer) is capped far below the 64-bit overflow of XLA's shape
# arithmetic, which aborts the whole process, and above what one device can hold (2**36 float32 values are
# 256 GiB), so no net that could train is refused; a net within the limits that does not fit in memory
# gets JAX's own RESOURCE_EXHAUSTED error.
MAX_LAYER_SIZE = 2**31 - 1
MAX_PARAMETERS = 2**36


def _normal(key: Array, shape: tuple[int, int], std: float, dtype) -> Array:
    return (std * jax.random.normal(key, shape, jnp.float32)).astype(dtype)


def _uniform(key: Array, shape: tuple[int, int], limit: float, dtype) -> Array:
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit).astype(dtype)


# Each scheme: (key, (fan_in, fan_out), dtype) -> w. Variance of w in brackets.
INITS: dict[str, Callable[[Array, tuple[int, int], object], Array]] = {
    "he_normal": lambda k, s, d: _normal(k, s, math.sqrt(2.0 / s[0]), d),  # [2 / fan_in]
    "he_uniform": lambda k, s, d: _uniform(k, s, math.sqrt(6.0 / s[0]), d),  # [2 / fan_in]
    "glorot_normal": lambda k, s, d: _normal(k, s, math.sqrt(2.0 / (s[0] + s[1])), d),  # [2 / (in + out)]
    "glorot_uniform": lambda k, s, d: _uniform(k, s, math.sqrt(6.0 / (s[0] + s[1])), d),
    "lecun_normal": lambda k, s, d: _normal(k, s, math.sqrt(1.0 / s[0]), d),  # [1 / fan_in]
    "lecun_uniform": lambda k, s, d: _uniform(k, s, math.sqrt(3.0 / s[0]), d),
}


def init_params(
    key: Array,
    layer_sizes: Sequence[int],
    *,
    init: str = "he_normal",
    dtype=jnp.float32,
) -> Params:
    """Random weights for an MLP with ``layer_sizes = [d_in, hidden..., d_out]``; biases are zero.

    Weights are drawn in float32 and cast to `dtype`, so a seed gives the same net in every dtype
    (up to rounding). Schemes: he_normal, he_uniform, glorot_normal, glorot_uniform,
    lecun_normal, lecun_uniform (variances 2/fan_in, 2/(fan_in+fan_out), 1/fan_in).

    Each size must be at most `MAX_LAYER_SIZE` (2**31 - 1) and the net's parameter count at most
    `MAX_PARAMETERS` (2**36); a ValueError naming the limit is raised before anything is allocated.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {sorted(INITS)}")
    sizes = check_layer_sizes(layer_sizes)
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    keys = jax.random.split(key, len(sizes) - 1)
    return tuple(
        Layer(w=INITS[init](k, (d_in, d_out), dtype), b=jnp.zeros((d_out,), dtype))
        for k, d_in, d_out in zip(keys, sizes[:-1], sizes[1:])
    )


def check_layer_sizes(layer_sizes: Sequence[int]) -> list[int]:
    """`layer_sizes` as a list of ints; a ValueError unless it holds at least two positive integers within
    the limits (`check_size_limits`)."""
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least 2 entries (input and output), got {sizes}")
    ints = [_as_int(size) for size in sizes]
    checked = [size for size in ints if size is not None and size >= 1]
    if len(checked) != len(sizes):
        raise ValueError(f"layer_sizes must be positive integers, got {sizes}")
    check_size_limits(checked)
    return checked


def check_size_limits(sizes: Sequence[int], what: str = "layer_sizes") -> None:
    """A ValueError naming the limit unless every size is at most `MAX_LAYER_SIZE` and the parameters of the
    layers between consecutive sizes number at most `MAX_PARAMETERS`. `sizes` may be part of a net (the
    hidden widths alone): its count is then a lower bound of the whole net's."""
    for i, size in enumerate(sizes):
        if size > MAX_LAYER_SIZE:
            raise ValueError(
                f"{what}[{i}] = {size} is over the limit of {MAX_LAYER_SIZE} units per layer "
                "(MAX_LAYER_SIZE, 2**31 - 1)"
            )
    count = parameter_count(sizes)
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"{what} {list(sizes)} make {count} parameters, over the limit of {MAX_PARAMETERS} (MAX_PARAMETERS, 2**36)"
        )


def parameter_count(sizes: Sequence[int]) -> int:
    """The number of weights and biases of a net with layer sizes `sizes`: ``sum(d_in * d_out + d_out)``."""
    return sum(d_in * d_out + d_out for d_in, d_out in itertools.pairwise(sizes))


def _as_int(size: object) -> int | None:
    """An int or a numpy int as an int; None for anything else (bools, floats, strings)."""
    if isinstance(size, bool) or not isinstance(size, SupportsIndex):
        return None
    try:
        return operator.index(size)
    except TypeError:  # an array of more than one element
        return None


def layer_sizes(params: Params) -> list[int]:
    """``[d_in, hidden..., d_out]`` of a (validated) params tuple."""
    return [params[0].w.shape[0]] + [layer.w.shape[1] for layer in params]


def check_params(params: Params) -> jnp.dtype:
    """Raise a clear error unless `params` is a non-empty tuple of chaining Layers of one float dtype.

    Returns the common dtype.
    """
    if not isinstance(params, (tuple, list)) or len(params) == 0:
        raise TypeError(f"params must be a non-empty tuple of Layer(w, b), got {type(params).__name__}")
    dtypes = set()
    for i, layer in enumerate(params):
        if not (isinstance(layer, tuple) and len(layer) == 2):
            raise TypeError(f"params[{i}] must be a Layer(w, b), got {type(layer).__name__}")
        w, b = layer
        if getattr(w, "ndim", None) != 2:
            raise ValueError(f"params[{i}].w must be 2-D (in, out), got shape {getattr(w, 'shape', None)}")
        if getattr(b, "ndim", None) != 1 or b.shape[0] != w.shape[1]:
            raise ValueError(
                f"params[{i}].b must have shape ({w.shape[1]},) to match w {tuple(w.shape)}, "
                f"got {getattr(b, 'shape', None)}"
            )
        if i > 0 and params[i - 1].w.shape[1] != w.shape[0]:
            raise ValueError(
                f"params do not chain: layer {i - 1} has out={params[i - 1].w.shape[1]} "
                f"but layer {i} has in={w.shape[0]}"
            )
        for name, leaf in (("w", w), ("b", b)):
            if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer) and leaf.is_deleted():
                raise RuntimeError(
                    f"params[{i}].{name} was donated to a training step and is gone: make_update, "
                    "make_fused_update and make_train_epoch donate their inputs; use the params they return "
                    "(state.params for a TrainState)"
                )
        dtypes.update({jnp.dtype(w.dtype), jnp.dtype(b.dtype)})
    if len(dtypes) != 1:
        raise TypeError(f"params have mixed dtypes {sorted(str(d) for d in dtypes)}; expected one float dtype")
    (dtype,) = dtypes
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"params must be floating point, got {dtype}")
    return dtype
