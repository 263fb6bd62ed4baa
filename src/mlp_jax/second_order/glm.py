"""The network linearized at its weights: Jacobians and the GGN of a SUMMED negative log-likelihood, from
the hand-written pass. What the Laplace approximation is built from.

The likelihoods are laplace-torch's. "classification": the softmax cross-entropy summed over examples,
``-log p(y_n | f_n)``, whose Hessian in the logits is ``H_n = diag(p_n) - p_n p_n^T``. "regression": the
Gaussian with unit noise, ``0.5 ||f_n - y_n||^2`` (the constant and ``sigma_noise`` are applied by the
posterior), ``H_n = I``. The GGN is ``G = sum_n J_n^T H_n J_n`` with ``J_n = d f_n / d theta``.

A factor ``S_n`` (out, K) with ``S_n S_n^T = H_n`` goes back through the network as a delta does
(`mlp_jax.tools.curvature_pass.backprop_columns`), giving each layer's ``Gamma_l`` (B, K, d_{l+1}); then
``J_n^T S_n`` for ``W_l`` is ``a_l outer Gamma_l`` and for ``b_l`` is ``Gamma_l``. Sending the identity back
gives the Jacobian itself (K = out). The flat order of a Jacobian's columns is `jax.flatten_util.ravel_pytree`'s
order of the params: each layer's w (d_in, d_out) row-major, then its b.

No jax.grad / jvp / vjp / jacrev is used here; the tests compare against them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlp_jax.core.backprop import ForwardCache, forward_with_cache
from mlp_jax.core.losses import get_loss
from mlp_jax.core.params import Layer, Params
from mlp_jax.tools.curvature import KFACFactors
from mlp_jax.tools.curvature_pass import backprop_columns, column_outer
from mlp_jax.tools.loss_factors import exact_factor

Array = jax.Array

LIKELIHOODS = ("classification", "regression")
SUBSETS = ("all", "last_layer")
STRUCTURES = ("diag", "kron", "full")
# The library's loss whose targets each likelihood takes (for validating y).
TARGET_LOSS = {"classification": "softmax_cross_entropy", "regression": "mse"}


def subset_net(params: Params, x: Array, activation: str, subset: str) -> tuple[Params, Array]:
    """The layers a posterior is over and their input: all of `params` and x, or the last layer and the
    last hidden layer's output (its "features", (B, d_last))."""
    if subset == "all" or len(params) == 1:
        return params, x
    return params[-1:], forward_with_cache(params, x, activation, "batch").inputs[-1]


def nll_factor(likelihood: str, logits: Array, y: Array) -> Array:
    """(B, out, out): ``S_n`` with ``S_n S_n^T = H_n``, the Hessian of the likelihood's ``-log p`` in the
    logits (the identity for regression)."""
    if likelihood == "classification":
        return exact_factor("softmax_cross_entropy", logits, y)[0]
    batch, out = logits.shape
    return jnp.broadcast_to(jnp.eye(out, dtype=logits.dtype), (batch, out, out))


def summed_nll(likelihood: str, logits: Array, y: Array, mask: Array) -> Array:
    """(): ``sum_n mask_n (-log p(y_n | f_n))``: the cross-entropy, or ``0.5 ||f_n - y_n||^2``."""
    if likelihood == "classification":
        per_example = get_loss("softmax_cross_entropy").per_example(logits, y)
    else:
        per_example = 0.5 * jnp.sum((logits - y) ** 2, axis=-1)
    return jnp.sum(mask * per_example)


def jacobian_columns(cache: ForwardCache, gammas: list[Array]) -> Array:
    """(B, K, P): the columns ``J_n^T S_n`` over every parameter, in ravel_pytree order."""
    batch, k = gammas[0].shape[:2]
    parts = []
    for a, gamma in zip(cache.inputs, gammas):
        parts.append(jnp.einsum("bi,bkj->bkij", a, gamma).reshape(batch, k, -1))
        parts.append(gamma)
    return jnp.concatenate(parts, axis=-1)


def output_jacobian(net: Params, x: Array, activation: str) -> tuple[Array, ForwardCache, list[Array]]:
    """The logits (B, out), the forward cache and every layer's ``Gamma_l = d f / d z_l`` (B, out, d_{l+1}):
    the Jacobian in factored form."""
    cache = forward_with_cache(net, x, activation, "batch")
    batch, out = cache.logits.shape
    eye = jnp.broadcast_to(jnp.eye(out, dtype=cache.logits.dtype), (batch, out, out))
    return cache.logits, cache, backprop_columns(net, cache, eye, activation)


def summed_ggn(
    net: Params, x: Array, y: Array, mask: Array, *, activation: str, likelihood: str, structure: str, n_data: int
) -> tuple[Array, object]:
    """``(sum_n -log p, GGN)`` over the rows of mask 1, in the form `structure` names: "diag" a params-shaped
    diagonal; "kron" a `KFACFactors` per layer with laplace-torch's normalization: ``a`` the mean over the
    `n_data` examples of the whole data set (so chunks add up), ``g`` the sum; "full" the (P, P) matrix."""
    cache = forward_with_cache(net, x, activation, "batch")
    factor = nll_factor(likelihood, cache.logits, y) * mask[:, None, None]
    gammas = backprop_columns(net, cache, factor, activation)  # (B, K, d_{l+1}) per layer; 0 on padding
    value = summed_nll(likelihood, cache.logits, y, mask)
    if structure == "diag":
        squares = [jnp.sum(g * g, axis=1) for g in gammas]  # (B, d_{l+1})
        return value, tuple(Layer(w=(a * a).T @ s, b=jnp.sum(s, axis=0)) for a, s in zip(cache.inputs, squares))
    if structure == "kron":
        return value, tuple(
            KFACFactors(a=(a * mask[:, None]).T @ a / n_data, g=column_outer(g, None))
            for a, g in zip(cache.inputs, gammas)
        )
    columns = jacobian_columns(cache, gammas)
    flat = columns.reshape(-1, columns.shape[-1])  # (B K, P)
    return value, flat.T @ flat
