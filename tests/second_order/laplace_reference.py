"""Dense autodiff references for the Laplace tests: the GGN of the summed negative log-likelihood from
`jax.jacrev` of the logits on a flat parameter vector, and the posterior quantities from dense matrices."""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import mlp_jax as mj


class Dense(NamedTuple):
    ggn: jax.Array  # (P, P): sum_n J_n^T H_n J_n
    nll: jax.Array  # (): the cross-entropy sum, or 0.5 sum ||f - y||^2
    theta: jax.Array  # (P,): the subset's weights
    inputs: tuple  # every subset layer's input (N, d_l)


def subset_and_inputs(params, x, activation, subset):
    if subset == "all" or len(params) == 1:
        return params, x
    hidden = mj.forward(params[:-1], x, activation=activation)  # the last hidden layer's pre-activation
    return params[-1:], mj.get_activation(activation).fn(hidden)


@partial(jax.jit, static_argnames=("activation", "likelihood", "subset"))
def dense(params, x, y, activation, likelihood, subset) -> Dense:
    net, inputs = subset_and_inputs(params, x, activation, subset)
    theta, unravel = ravel_pytree(net)
    logits_of = lambda t: mj.forward(unravel(t), inputs, activation=activation)
    jac = jax.jacrev(logits_of)(theta)  # (N, out, P)
    logits = logits_of(theta)
    if likelihood == "classification":
        p = jax.nn.softmax(logits)
        h = jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]
        nll = -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
    else:
        h = jnp.broadcast_to(jnp.eye(logits.shape[1]), (logits.shape[0],) + 2 * logits.shape[1:])
        nll = 0.5 * jnp.sum((logits - y) ** 2)
    ggn = jnp.einsum("nkp,nkm,nmq->pq", jac, h, jac)
    return Dense(ggn, nll, theta, mj.forward_with_cache(net, inputs, activation).inputs)


def blocks(net):
    """[(w_slice, b_slice)] per layer in ravel_pytree order."""
    out, start = [], 0
    for layer in net:
        nw, nb = layer.w.size, layer.b.size
        out.append((slice(start, start + nw), slice(start + nw, start + nw + nb)))
        start += nw + nb
    return out


def curvature_matrix(ref: Dense, net, structure, n):
    """The (P, P) matrix that `structure` approximates the GGN with, laplace-torch's way."""
    if structure == "full":
        return ref.ggn
    if structure == "diag":
        return jnp.diag(jnp.diag(ref.ggn))
    out = jnp.zeros_like(ref.ggn)
    for (w, b), a in zip(blocks(net), ref.inputs):
        g = ref.ggn[b, b]
        out = out.at[w, w].set(jnp.kron(a.T @ a / n, g)).at[b, b].set(g)
    return out


def log_marginal_likelihood(ref: Dense, curvature, likelihood, n, out, delta, sigma):
    """laplace-torch's formula with dense matrices."""
    p = ref.theta.size
    loglik = -ref.nll / sigma**2
    if likelihood == "regression":
        loglik = loglik - n * out * math.log(sigma * math.sqrt(2 * math.pi))
    precision = curvature / sigma**2 + delta * jnp.eye(p)
    logdet = jnp.linalg.slogdet(precision)[1]
    return loglik - 0.5 * (logdet - p * math.log(delta) + delta * ref.theta @ ref.theta)


@partial(jax.jit, static_argnames=("activation", "subset"))
def jacobian_at(params, x, activation, subset):
    net, inputs = subset_and_inputs(params, x, activation, subset)
    theta, unravel = ravel_pytree(net)
    logits_of = lambda t: mj.forward(unravel(t), inputs, activation=activation)
    return logits_of(theta), jax.jacrev(logits_of)(theta)
