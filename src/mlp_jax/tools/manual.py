"""`manual_loss`: the loss as a `jax.custom_vjp` whose backward rule is the hand-written backprop.

``jax.grad(manual_loss)``, optax and any JAX code that differentiates through it get the manual
gradient. The custom_vjp's forward rule is `mlp_jax.core.backprop.manual_forward` and its backward rule
`manual_backward`, the two halves of the manual pass; the cotangents for `params` and `x` come from it
(``dL/dx = delta_0 @ W_0.T``), those for float targets `y` and for `sample_weight`, which the hand-written pass
does not cover, from `jax.vjp` of the loss on the cached logits. Integer labels get no cotangent.
Reverse mode only (a `custom_vjp` has no forward-mode rule).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from mlp_jax.core.backprop import manual_backward, manual_forward
from mlp_jax.core.losses import get_loss, reduce
from mlp_jax.core.params import Params
from mlp_jax.core.validation import check_problem

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
    return manual_forward(params, x, y, activation, loss, sample_weight).value


def _forward(params, x, y, sample_weight, activation, loss):
    fwd = manual_forward(params, x, y, activation, loss, sample_weight)  # the batch layout, one part
    return fwd.value, (params, fwd, y, sample_weight)


def _backward(activation, loss, residuals, g):
    params, fwd, y, sample_weight = residuals
    result = manual_backward(params, fwd, y, activation, loss, sample_weight)  # scaled, as backprop has it
    dx = result.deltas[0] @ params[0].w.T  # (B, d_in)

    # y and sample_weight: the loss's own vjp on the cached logits (not part of the hand-written pass).
    float_y = jnp.issubdtype(y.dtype, jnp.floating)
    value_of = lambda y, w: reduce(get_loss(loss).per_example(fwd.logits, y), w)
    if float_y:
        _, vjp = jax.vjp(value_of, y, sample_weight)
        dy, dw = vjp(g)
    else:
        _, vjp = jax.vjp(lambda w: value_of(y, w), sample_weight)
        (dw,), dy = vjp(g), None
    scaled = jax.tree.map(lambda t: g * t, (result.grads, dx))
    return (*scaled, dy, dw)


_manual_loss.defvjp(_forward, _backward)
