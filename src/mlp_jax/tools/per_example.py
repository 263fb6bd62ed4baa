"""Per-example gradients from the hand-written pass, their norms, and a differentially private gradient.

The manual pass already holds, for every layer, each example's input row ``a_i`` (d_in,) and delta row
``delta_i = dl_i/dz_i`` (d_out,), where ``l_i`` is example i's own loss term. A dense layer's gradient of
``l_i`` is their outer product, and its squared norm factorises::

    dW_i = a_i outer delta_i                       (d_in, d_out)
    db_i = delta_i                                 (d_out,)
    ||dW_i||^2 + ||db_i||^2 = (||a_i||^2 + 1) * ||delta_i||^2

so the norms cost O(batch * width) memory, and a sum of per-example gradients scaled by ``c_i`` is
``a.T @ (c[:, None] * delta)``: clipping needs the norms, never the per-example gradients themselves.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from mlp_jax.core.activations import get_activation
from mlp_jax.core.backprop import manual_pass
from mlp_jax.core.losses import get_loss, reduce
from mlp_jax.core.params import Layer, Params

Array = jax.Array


def _manual_pass(params: Params, x, y, activation: str, loss: str, sample_weight=None):
    """Layer inputs (B, d_l), deltas of each example's own term (B, d_{l+1}), per-example losses (B,),
    and the prepared sample weight (or None)."""
    # Unscaled dlogits: row i is d l_i / d logits[i], so every delta row belongs to one example's term.
    result = manual_pass(params, x, y, activation, loss, sample_weight, layout="batch", batch_parts=1, scaled=False)
    return result.cache.inputs, result.deltas, result.per_example, result.sample_weight


def per_example_grads(params: Params, x: Array, y: Array, *, activation: str, loss: str) -> Params:
    """The gradient of each example's own loss term: params' structure with a leading batch axis,
    ``w`` (B, d_in, d_out) and ``b`` (B, d_out). Equals ``jax.vmap(jax.grad(mlp_jax.loss))`` over single
    examples; built from the manual pass's cached inputs and deltas."""
    inputs, deltas, _, _ = _manual_pass(params, x, y, activation, loss)
    return tuple(
        Layer(w=jnp.einsum("bi,bj->bij", a, delta), b=delta)  # (B, d_in, d_out), (B, d_out)
        for a, delta in zip(inputs, deltas)
    )


def _norms(inputs: tuple[Array, ...], deltas: tuple[Array, ...]) -> Array:
    squares = [
        (jnp.sum(a * a, axis=1) + 1) * jnp.sum(delta * delta, axis=1)  # (B,): ||dW_i||^2 + ||db_i||^2
        for a, delta in zip(inputs, deltas)
    ]
    return jnp.sqrt(sum(squares))


def per_example_grad_norms(params: Params, x: Array, y: Array, *, activation: str, loss: str) -> Array:
    """``(B,)``: the L2 norm of each example's full gradient (all layers, weights and biases), without
    materialising per-example gradients: memory O(batch * width)."""
    inputs, deltas, _, _ = _manual_pass(params, x, y, activation, loss)
    return _norms(inputs, deltas)


def dp_noise(key: Array, params: Params, std: float) -> Params:
    """Gaussian noise shaped like `params`: leaf j (in ``jax.tree.leaves`` order) is
    ``std * jax.random.normal(keys[j], shape, dtype)`` with ``keys = jax.random.split(key, num_leaves)``."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    noise = [std * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, noise)


def make_dp_gradient(
    *, activation: str, loss: str, clip_norm: float, noise_multiplier: float
) -> Callable[..., tuple[Array, Params]]:
    """A differentially private gradient source for `make_update`: ``grad(params, x, y,
    sample_weight=None, key) -> (loss_value, grads)``.

    Each example's gradient ``g_i`` is clipped to norm `clip_norm` (C) using `per_example_grad_norms`,
    the clipped gradients are summed, Gaussian noise of std ``noise_multiplier * C`` is added
    (`dp_noise` with `key`), and the result is divided by the batch size::

        grads = (sum_i w_i * min(1, C / ||g_i||) * g_i + N(0, (sigma C)^2)) / sum_i w_i

    with ``w_i = 1`` unless `sample_weight` is given (0/1 weights, as in the padded last batch of
    `make_train_epoch`, make it the mean over the real examples). ``loss_value`` is the ordinary
    (weighted) mean loss. `key` is required: pass it as the last argument of ``update``.
    """
    get_activation(activation), get_loss(loss)
    if not clip_norm > 0:
        raise ValueError(f"clip_norm must be > 0, got {clip_norm}")
    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")

    def dp_gradient(params: Params, x: Array, y: Array, sample_weight=None, key=None) -> tuple[Array, Params]:
        if key is None:
            raise ValueError(
                "the DP gradient needs a PRNG key for its noise: "
                "call update(params, opt_state, x, y, sample_weight, key)"
            )
        inputs, deltas, losses, weight = _manual_pass(params, x, y, activation, loss, sample_weight)
        norms = _norms(inputs, deltas)  # (B,)
        factor = clip_norm / jnp.maximum(norms, clip_norm)  # (B,): min(1, C / ||g_i||), 1 where g_i = 0
        count = jnp.asarray(x.shape[0], factor.dtype)
        if weight is not None:
            factor, count = factor * weight, jnp.sum(weight)
        clipped_sum = tuple(
            Layer(w=a.T @ (factor[:, None] * delta), b=jnp.sum(factor[:, None] * delta, axis=0))
            for a, delta in zip(inputs, deltas)
        )
        noise = dp_noise(key, params, noise_multiplier * clip_norm)
        grads = jax.tree.map(lambda g, n: (g + n) / count, clipped_sum, noise)
        return reduce(losses, weight), grads

    return dp_gradient
