"""The hand-written backward pass: the chain rule, layer by layer, on the forward pass's cache.

For layer l with input ``a_{l}`` (B, d_l), pre-activation ``z_l = a_l @ W_l + b_l`` (B, d_{l+1}) and
``delta_l = dL/dz_l``::

    delta_{L-1} = dL/dlogits                          (the loss's hand-written gradient)
    dW_l        = a_l.T @ delta_l                     (d_l, d_{l+1})
    db_l        = sum_batch delta_l                   (d_{l+1},)
    delta_{l-1} = (delta_l @ W_l.T) * phi'(z_{l-1})   (B, d_l)

No jax.grad, jax.vjp, jax.jvp or jax.linearize is used here; tests compare it against them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .activations import get_activation
from .losses import get_loss, reduce, reduce_grad
from .model import check_problem
from .params import Layer, Params

Array = jax.Array


class ForwardCache(NamedTuple):
    """What the backward pass needs from the forward pass."""

    inputs: tuple[Array, ...]  # input of every layer: inputs[0] = x, inputs[l] = phi(z_{l-1}); (B, d_l)
    pre_activations: tuple[Array, ...]  # z of every hidden layer; (B, d_{l+1})
    logits: Array  # (B, d_out)


def forward_with_cache(params: Params, x: Array, activation: str) -> ForwardCache:
    """The forward pass, keeping every layer's input and every hidden pre-activation."""
    phi = get_activation(activation).fn
    inputs, pre_activations = [x], []
    for layer in params[:-1]:
        z = inputs[-1] @ layer.w + layer.b[None, :]  # (B, d_out)
        pre_activations.append(z)
        inputs.append(phi(z))
    logits = inputs[-1] @ params[-1].w + params[-1].b[None, :]
    return ForwardCache(tuple(inputs), tuple(pre_activations), logits)


def backward(
    params: Params, cache: ForwardCache, dlogits: Array, activation: str
) -> tuple[Params, tuple[Array, ...]]:
    """Gradients of every layer and the deltas ``dL/dz_l`` (B, d_{l+1}) from ``dL/dlogits`` (B, d_out)."""
    dphi = get_activation(activation).derivative
    grads: list[Layer] = []
    deltas: list[Array] = []
    delta = dlogits  # (B, d_out)
    for l in reversed(range(len(params))):
        a_prev = cache.inputs[l]  # (B, d_in)
        deltas.append(delta)
        grads.append(Layer(w=a_prev.T @ delta, b=jnp.sum(delta, axis=0)))  # (d_in, d_out), (d_out,)
        if l > 0:
            delta = (delta @ params[l].w.T) * dphi(cache.pre_activations[l - 1])  # (B, d_in)
    return tuple(reversed(grads)), tuple(reversed(deltas))


def backprop(
    params: Params,
    x: Array,
    y: Array,
    activation: str = "relu",
    loss: str = "mse",
    sample_weight: Array | None = None,
) -> tuple[Array, Params]:
    """``(loss_value, grads)`` by the hand-written chain rule; grads has the structure, shapes and dtypes
    of params. Agrees with ``jax.value_and_grad(mlp_jax.loss)``."""
    spec = get_loss(loss)
    x, y, sample_weight, _ = check_problem(params, x, y, activation, loss, sample_weight)
    cache = forward_with_cache(params, x, activation)
    value = reduce(spec.per_example(cache.logits, y), sample_weight)
    dlogits = reduce_grad(spec.grad_logits(cache.logits, y), sample_weight)  # (B, d_out)
    grads, _ = backward(params, cache, dlogits, activation)
    return value, grads
