"""The pure forward pass and the loss: ``logits = forward(params, x)``, ``loss(params, x, y)``."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlp_jax.core.activations import get_activation
from mlp_jax.core.losses import get_loss, prepare_sample_weight, prepare_targets, reduce
from mlp_jax.core.matmul import dot
from mlp_jax.core.params import Params, check_params

Array = jax.Array


def check_inputs(params: Params, x) -> tuple[Array, jnp.dtype]:
    """Validate params and ``x`` (batch, d_in) together; return x as a JAX array and the params dtype."""
    dtype = check_params(params)
    x = x if isinstance(x, jax.Array) else jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (batch, {params[0].w.shape[0]}), got shape {x.shape}")
    if x.shape[1] != params[0].w.shape[0]:
        raise ValueError(
            f"x has {x.shape[1]} features but the first layer expects {params[0].w.shape[0]} "
            f"(x shape {x.shape}, w shape {params[0].w.shape})"
        )
    if x.dtype != dtype:
        raise TypeError(f"x has dtype {x.dtype} but params are {dtype}; cast x with x.astype({dtype.name!r})")
    return x, dtype


class Checked(NamedTuple):
    """Validated inputs of a loss: x (B, d_in), y ready for the loss, weights (B,) or None."""

    x: Array
    y: Array
    sample_weight: Array | None
    dtype: jnp.dtype


def check_problem(params: Params, x, y, activation: str, loss: str, sample_weight=None) -> Checked:
    """Validate names, params, x, y and sample_weight together; raise a clear error before any work."""
    get_loss(loss), get_activation(activation)
    x, dtype = check_inputs(params, x)
    batch, out = x.shape[0], params[-1].w.shape[1]
    if batch == 0:
        raise ValueError(f"x must hold at least one example (the loss is a mean over the batch), got shape {x.shape}")
    y = prepare_targets(loss, y, batch, out, dtype)
    return Checked(x, y, prepare_sample_weight(sample_weight, batch, dtype), dtype)


def forward(params: Params, x: Array, activation: str = "relu") -> Array:
    """Logits ``(batch, d_out)`` for inputs ``x`` ``(batch, d_in)``: the activation after every hidden
    layer, the output layer linear."""
    phi = get_activation(activation).fn
    x, _ = check_inputs(params, x)
    a = x
    for layer in params[:-1]:
        a = phi(dot(a, layer.w, 1, 0) + layer.b[None, :])  # (B, d_out)
    return dot(a, params[-1].w, 1, 0) + params[-1].b[None, :]


def loss(
    params: Params,
    x: Array,
    y: Array,
    activation: str = "relu",
    loss: str = "mse",
    sample_weight: Array | None = None,
) -> Array:
    """Scalar loss: the mean over the batch of each example's loss term (weighted mean with
    `sample_weight` of shape (batch,)). See `mlp_jax.core.losses` for the exact definitions."""
    x, y, sample_weight, _ = check_problem(params, x, y, activation, loss, sample_weight)
    logits = forward(params, x, activation)
    return reduce(get_loss(loss).per_example(logits, y), sample_weight)
