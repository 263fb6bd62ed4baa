"""`manual_loss`: the loss as a `jax.custom_vjp` whose backward rule is the hand-written backprop.

``jax.grad(manual_loss)``, optax and any JAX code that differentiates through it get the manual
gradient. The cotangents for `params` and `x` come from `mlp_jax.core.backprop.backward` (``dL/dx =
delta_0 @ W_0.T``); those for float targets `y` and for `sample_weight`, which the hand-written pass
does not cover, from `jax.vjp` of the loss on the cached logits. Integer labels get no cotangent.
Reverse mode only (a `custom_vjp` has no forward-mode rule).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from mlp_jax.core.backprop import backward, forward_with_cache
from mlp_jax.core.losses import get_loss, reduce, scaled_grad_logits
from mlp_jax.core.model import check_problem
from mlp_jax.core.params import Params

Array = jax.Array


def manual_loss(
    params: Params,
    x: Array,
    y: Array,
    activation: str = "relu",
    loss: str = "mse",
    sample_weight: Array | None = None,
) -> Array:
    """Same value and arguments as `mlp_jax.loss`; differentiated by the hand-written backprop."""
    x, y, sample_weight, _ = check_problem(params, x, y, activation, loss, sample_weight)
    return _manual_loss(params, x, y, sample_weight, activation, loss)


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _manual_loss(params, x, y, sample_weight, activation: str, loss: str) -> Array:
    return _forward(params, x, y, sample_weight, activation, loss)[0]


def _forward(params, x, y, sample_weight, activation, loss):
    cache = forward_with_cache(params, x, activation)
    value = reduce(get_loss(loss).per_example(cache.logits, y), sample_weight)
    return value, (params, cache, y, sample_weight)


def _backward(activation, loss, residuals, g):
    params, cache, y, sample_weight = residuals
    spec = get_loss(loss)
    dlogits = scaled_grad_logits(spec, cache.logits, y, sample_weight)  # (B, d_out), as backprop has it
    grads, deltas = backward(params, cache, dlogits, activation)
    dx = deltas[0] @ params[0].w.T  # (B, d_in)

    # y and sample_weight: the loss's own vjp on the cached logits (not part of the hand-written pass).
    float_y = jnp.issubdtype(y.dtype, jnp.floating)
    value_of = lambda y, w: reduce(spec.per_example(cache.logits, y), w)
    if float_y:
        _, vjp = jax.vjp(value_of, y, sample_weight)
        dy, dw = vjp(g)
    else:
        _, vjp = jax.vjp(lambda w: value_of(y, w), sample_weight)
        (dw,), dy = vjp(g), None
    scaled = jax.tree.map(lambda t: g * t, (grads, dx))
    return (*scaled, dy, dw)


_manual_loss.defvjp(_forward, _backward)
