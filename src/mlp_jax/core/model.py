"""The pure forward pass and the loss: ``logits = forward(params, x)``, ``loss(params, x, y)``."""

from __future__ import annotations

import jax

from mlp_jax.core.activations import get_activation
from mlp_jax.core.losses import get_loss, reduce
from mlp_jax.core.matmul import dot
from mlp_jax.core.params import Params
from mlp_jax.core.validation import check_inputs, check_problem

Array = jax.Array


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
