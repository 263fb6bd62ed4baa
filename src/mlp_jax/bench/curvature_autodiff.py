"""The autodiff formulations the curvature stage of `mlp-jax bench` times against mlp-jax's hand-written
curvature (`mlp_jax.bench.curvature`): for each quantity the fastest way we know to get it from JAX's own
transformations, without the hand-written backward pass.

- GGN diagonal, per-example GGN diagonal, KFAC/KFLR factors: one forward pass with a zero "tap" added to
  every pre-activation, then ``jax.vmap`` of its ``jax.vjp`` over columns: the C unit vectors of the
  logits (exact; the loss Hessian in the logits, ``jax.hessian`` per example, is applied to the result) or
  the sampled gradients of the loss in the logits (MC). The vjp at each tap is the column backpropagated
  to that layer's pre-activation, (K, B, d_out); squares and outer products of it and of the layer inputs
  give the quantities (einsum).
- sum of squared gradients, gradient variance, per-example gradient norms: ``jax.vmap(jax.grad)`` of
  each example's loss, in chunks of examples (``jax.lax.map``) so that a chunk's (k, P) per-example
  gradients stay within `CHUNK_BYTES`.
- GGN-vector product: ``jax.linearize`` of the logits, ``jax.jvp`` of ``jax.grad`` of the loss in the
  logits, and ``jax.linear_transpose`` of the linearization. Hessian-vector product: ``jax.jvp`` of
  ``jax.grad`` (forward over reverse).
- Hessian diagonal: ``jax.vmap`` of that Hessian-vector product over basis vectors, `DIAG_H_COLUMNS` of
  them per call; the whole diagonal takes ceil(P / columns) such calls (`diag_hessian_chunk` is one,
  which the bench times and scales, `diag_hessian_full` all).

All take ``(params, x, y, *, activation, loss)`` with no sample weights (the bench uses none), the loss
being `mlp_jax.loss`'s batch mean, with the conventions of `mlp_jax`'s own curvature functions. MC
labels: categorical for softmax cross-entropy, Bernoulli for sigmoid binary cross-entropy, Gaussian with
variance C/2 for mse (so that E[g g^T] is mse's Hessian 2/C I in the logits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from mlp_jax.core.activations import get_activation
from mlp_jax.core.losses import get_loss
from mlp_jax.core.params import Layer, Params

Array = jax.Array
CHUNK_BYTES = 2**28  # at most this many bytes of per-example gradients at a time
DIAG_H_COLUMNS = 64  # basis vectors per vmapped Hessian-vector product call


def _tapped(params: Params, x: Array, taps: Sequence[Array | float], activation: str) -> tuple[Array, list[Array]]:
    """The logits (B, C) with ``taps[l]`` (B, d_out) added to layer l's pre-activation, and every layer's
    input (B, d_in)."""
    phi = get_activation(activation).fn
    a, inputs = x, []
    for l, layer in enumerate(params):
        inputs.append(a)
        z = a @ layer.w + layer.b[None, :] + taps[l]
        a = phi(z) if l < len(params) - 1 else z
    return a, inputs


def _backpropagated(params: Params, x: Array, columns: Array, activation: str):
    """(logits (B, C), layer inputs, per layer the columns (K, B, C) of the logits' cotangent
    backpropagated to its pre-activation: (K, B, d_out)) by vmap over vjp."""
    taps = tuple(jnp.zeros((x.shape[0], layer.w.shape[1]), x.dtype) for layer in params)
    logits, vjp, inputs = jax.vjp(lambda t: _tapped(params, x, t, activation), taps, has_aux=True)
    (deltas,) = jax.vmap(vjp)(columns)
    return logits, inputs, deltas


def _example_loss(loss: str):
    per_example = get_loss(loss).per_example
    return lambda f, y: per_example(f[None], y[None])[0]


def _plain_logits(params: Params, x: Array, activation: str) -> Array:
    return _tapped(params, x, tuple(0.0 for _ in params), activation)[0]


def _sample_labels(key: Array, logits: Array, loss: str, samples: int) -> Array:
    """`samples` labels per example from the model's predictive distribution: (samples, B[, C])."""
    shape = (samples, *logits.shape)
    if loss == "softmax_cross_entropy":
        return jax.random.categorical(key, logits, axis=-1, shape=shape[:-1])
    if loss == "sigmoid_binary_cross_entropy":
        return jax.random.bernoulli(key, jnp.broadcast_to(jax.nn.sigmoid(logits), shape), shape).astype(logits.dtype)
    if loss == "mse":
        std = math.sqrt(logits.shape[-1] / 2)
        return logits[None] + std * jax.random.normal(key, shape, logits.dtype)
    raise ValueError(
        f"no MC sampling for loss {loss!r}; expected softmax_cross_entropy, sigmoid_binary_cross_entropy or mse"
    )


def _columns(params, x, y, activation: str, loss: str, method: str, key, mc_samples: int):
    """Layer inputs and, per layer, (D, T) of shape (K, B, d_out) with sum_k D T^T per example = the
    backpropagated loss Hessian of the batch mean loss: exact, D the unit columns backpropagated and T = H D;
    MC, D = T the sampled gradients backpropagated, scaled by 1 / sqrt(B K)."""
    n = x.shape[0]
    example = _example_loss(loss)
    if method == "exact":
        logits = jax.lax.stop_gradient(_plain_logits(params, x, activation))
        c = logits.shape[1]
        unit = jnp.broadcast_to(jnp.eye(c, dtype=x.dtype)[:, None, :], (c, n, c))
        _, inputs, deltas = _backpropagated(params, x, unit, activation)
        hess = jax.vmap(jax.hessian(example))(logits, y) / n  # (B, C, C)
        weighted = [jnp.einsum("bcd,dbj->cbj", hess, d) for d in deltas]
        return inputs, list(zip(deltas, weighted))
    logits = _plain_logits(params, x, activation)
    labels = _sample_labels(key, jax.lax.stop_gradient(logits), loss, mc_samples)
    grads = jax.vmap(jax.vmap(jax.grad(example)), in_axes=(None, 0))(logits, labels)  # (K, B, C)
    _, inputs, deltas = _backpropagated(params, x, grads / math.sqrt(n * mc_samples), activation)
    return inputs, [(d, d) for d in deltas]


def batch_diag_ggn(params, x, y, *, activation: str, loss: str, method: str = "exact", key=None, mc_samples=1):
    """Per-example terms of the GGN diagonal: params' structure, leading axis B. O(B P) memory."""
    inputs, cols = _columns(params, x, y, activation, loss, method, key, mc_samples)
    out = []
    for a, (d, t) in zip(inputs, cols):
        m = jnp.sum(d * t, axis=0)  # (B, d_out)
        out.append(Layer(jnp.einsum("bi,bj->bij", a * a, m), m))
    return tuple(out)


def diag_ggn(params, x, y, *, activation: str, loss: str, method: str = "exact", key=None, mc_samples=1):
    """The diagonal of the batch-mean loss's GGN, params' structure."""
    inputs, cols = _columns(params, x, y, activation, loss, method, key, mc_samples)
    out = []
    for a, (d, t) in zip(inputs, cols):
        m = jnp.sum(d * t, axis=0)  # (B, d_out)
        out.append(Layer((a * a).T @ m, jnp.sum(m, axis=0)))
    return tuple(out)


def kfac_factors(params, x, y, *, activation: str, loss: str, method: str = "exact", key=None, mc_samples=1):
    """Per layer (a (d_in, d_in) = batch mean of a_n a_n^T, g (d_out, d_out) = sum over n and columns of
    the backpropagated columns' outer products)."""
    inputs, cols = _columns(params, x, y, activation, loss, method, key, mc_samples)
    return tuple((a.T @ a / x.shape[0], jnp.einsum("kbi,kbj->ij", d, t)) for a, (d, t) in zip(inputs, cols))


def _per_example_sums(params, x, y, activation: str, loss: str):
    """(sum_n g_n, sum_n g_n^2 elementwise, |g_n| (B,)) of the per-example gradients g_n = grad l_n, by
    ``jax.vmap(jax.grad)`` over chunks of examples (``jax.lax.map``)."""
    example = _example_loss(loss)
    grad = jax.grad(lambda p, xn, yn: example(_plain_logits(p, xn[None], activation)[0], yn))
    n = x.shape[0]
    per_example_bytes = sum(leaf.size for leaf in jax.tree.leaves(params)) * x.dtype.itemsize
    k = max(d for d in range(1, n + 1) if n % d == 0 and (d == 1 or d * per_example_bytes <= CHUNK_BYTES))

    def chunk(xy):
        g = jax.vmap(grad, in_axes=(None, 0, 0))(params, *xy)
        sq_norm = sum(jnp.sum(leaf.reshape(k, -1) ** 2, axis=1) for leaf in jax.tree.leaves(g))
        return jax.tree.map(lambda v: jnp.sum(v, 0), g), jax.tree.map(lambda v: jnp.sum(v * v, 0), g), sq_norm

    xs, ys = x.reshape(n // k, k, *x.shape[1:]), y.reshape(n // k, k, *y.shape[1:])
    sums, squares, norms = jax.lax.map(chunk, (xs, ys))
    total = lambda tree: jax.tree.map(lambda v: jnp.sum(v, 0), tree)
    return total(sums), total(squares), jnp.sqrt(norms.reshape(n))


def sum_grad_squared(params, x, y, *, activation: str, loss: str):
    """sum_n (grad l_n / N)^2 elementwise."""
    n = x.shape[0]
    return jax.tree.map(lambda s: s / n**2, _per_example_sums(params, x, y, activation, loss)[1])


def grad_variance(params, x, y, *, activation: str, loss: str):
    """mean_n (grad l_n - mean_n grad l_n)^2 elementwise, as mean of squares minus square of the mean."""
    n = x.shape[0]
    sums, squares, _ = _per_example_sums(params, x, y, activation, loss)
    return jax.tree.map(lambda s, q: q / n - (s / n) ** 2, sums, squares)


def per_example_grad_norms(params, x, y, *, activation: str, loss: str):
    """|grad l_n| for every example, (B,)."""
    return _per_example_sums(params, x, y, activation, loss)[2]


def first_order(params, x, y, *, activation: str, loss: str) -> dict[str, Any]:
    """The three first-order quantities from one vmap(grad) pass (what ``backprop_with`` returns with them)."""
    n = x.shape[0]
    sums, squares, norms = _per_example_sums(params, x, y, activation, loss)
    return {
        "sum_grad_squared": jax.tree.map(lambda s: s / n**2, squares),
        "grad_variance": jax.tree.map(lambda s, q: q / n - (s / n) ** 2, sums, squares),
        "per_example_grad_norms": norms,
    }


def _mean_loss(params, x, y, activation: str, loss: str) -> Array:
    return jnp.mean(get_loss(loss).per_example(_plain_logits(params, x, activation), y))


def hessian_vector_product(params, x, y, v, *, activation: str, loss: str):
    """H v by forward over reverse: ``jax.jvp`` of ``jax.grad``."""
    grad = jax.grad(lambda p: _mean_loss(p, x, y, activation, loss))
    return jax.jvp(grad, (params,), (v,))[1]


def ggn_vector_product(params, x, y, v, *, activation: str, loss: str):
    """G v = J^T H_f J v: linearize the logits, jvp of the loss gradient in the logits, transpose."""
    logits, jvp = jax.linearize(lambda p: _plain_logits(p, x, activation), params)
    grad_f = jax.grad(lambda f: jnp.mean(get_loss(loss).per_example(f, y)))
    hjv = jax.jvp(grad_f, (logits,), (jvp(v),))[1]
    (gv,) = jax.linear_transpose(jvp, params)(hjv)
    return gv


def _flat_hvp(params, x, y, activation: str, loss: str):
    flat, unravel = ravel_pytree(params)
    grad = jax.grad(lambda p: _mean_loss(unravel(p), x, y, activation, loss))
    return flat, unravel, lambda e: jax.jvp(grad, (flat,), (e,))[1]


def diag_hessian_chunk(params, x, y, start, *, activation: str, loss: str, columns: int = DIAG_H_COLUMNS) -> Array:
    """Hessian diagonal entries start .. start + columns - 1 of the flattened params (ravel_pytree order),
    by vmap of the Hessian-vector product over those basis vectors: (columns,)."""
    flat, _, hvp = _flat_hvp(params, x, y, activation, loss)
    index = start + jnp.arange(columns)
    basis = jax.nn.one_hot(index, flat.size, dtype=flat.dtype)
    return jnp.sum(jax.vmap(hvp)(basis) * basis, axis=1)


def diag_hessian_full(params, x, y, *, activation: str, loss: str, columns: int = DIAG_H_COLUMNS):
    """The whole Hessian diagonal (params' structure): `diag_hessian_chunk` over every chunk of columns."""
    flat, unravel, _ = _flat_hvp(params, x, y, activation, loss)
    count = -(-flat.size // columns)
    starts = columns * jnp.arange(count)
    entries = jax.lax.map(
        lambda s: diag_hessian_chunk(params, x, y, s, activation=activation, loss=loss, columns=columns), starts
    )
    return unravel(entries.reshape(-1)[: flat.size])
