"""The pure forward pass and the loss: ``logits = forward(params, x)``, ``loss(params, x, y)``, with optional
inverted dropout after each hidden activation (`mlp_jax.core.dropout`)."""

from __future__ import annotations

import jax

from mlp_jax.core.activations import get_activation
from mlp_jax.core.dropout import check_dropout, dropout_masks
from mlp_jax.core.losses import get_loss, reduce
from mlp_jax.core.matmul import dot
from mlp_jax.core.params import Params
from mlp_jax.core.validation import check_inputs, check_problem

Array = jax.Array


def forward(
    params: Params, x: Array, activation: str = "relu", *, dropout: float = 0.0, key: Array | None = None
) -> Array:
    """Logits ``(batch, d_out)`` for inputs ``x`` ``(batch, d_in)``: the activation after every hidden
    layer, the output layer linear. With ``dropout=rate`` in [0, 1) and a PRNG `key`, each hidden unit's
    output is dropped with probability `rate` and the kept ones scaled by ``1 / (1 - rate)`` (inverted
    dropout); off when the rate is 0 or `key` is None."""
    x, _ = check_inputs(params, x)
    return _logits(params, x, activation, dropout, key)


def _logits(params: Params, x: Array, activation: str, dropout: float, key: Array | None) -> Array:
    """`forward` on checked params and x (checked once, not again for `loss`)."""
    phi = get_activation(activation).fn
    masks = dropout_masks(params, x.shape[0], check_dropout(dropout, key), key)
    a = x
    for l, layer in enumerate(params[:-1]):
        a = phi(dot(a, layer.w, 1, 0) + layer.b[None, :])  # (B, d_out)
        if masks:
            a = a * masks[l]
    return dot(a, params[-1].w, 1, 0) + params[-1].b[None, :]


def loss(
    params: Params,
    x: Array,
    y: Array,
    activation: str = "relu",
    loss: str = "mse",
    sample_weight: Array | None = None,
    *,
    dropout: float = 0.0,
    key: Array | None = None,
) -> Array:
    """Scalar loss: the mean over the batch of each example's loss term (weighted mean with
    `sample_weight` of shape (batch,)). See `mlp_jax.core.losses` for the exact definitions. `dropout`
    and `key` as for `forward`."""
    x, y, sample_weight, _ = check_problem(params, x, y, activation, loss, sample_weight)
    logits = _logits(params, x, activation, dropout, key)
    return reduce(get_loss(loss).per_example(logits, y), sample_weight)
