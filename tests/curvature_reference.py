"""Autodiff references for the curvature tests: everything from `jax.hessian` and `jax.jacrev` on a
flat parameter vector, and the loss Hessian with respect to the logits."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import mlp_jax as mj


class Reference(NamedTuple):
    hessian: jax.Array  # (P, P): d^2 L / d theta^2
    ggn: jax.Array  # (P, P): sum_n c_n J_n^T H_n J_n
    ggn_terms_diag: jax.Array  # (B, P): c_n diag(J_n^T H_n J_n)
    per_example_grads: jax.Array  # (B, P): grad l_n
    scale: jax.Array  # (B,): c_n
    grad: jax.Array  # (P,)


def flat(tree) -> jax.Array:
    return ravel_pytree(tree)[0]


@partial(jax.jit, static_argnames=("activation", "loss"))
def reference(params, x, y, activation: str, loss: str, sample_weight=None) -> Reference:
    """Compiled once per shape: eager dispatch of jax.hessian's many small ops is slower."""
    theta, unravel = ravel_pytree(params)

    def total(t):
        return mj.loss(unravel(t), x, y, activation=activation, loss=loss, sample_weight=sample_weight)

    def logits(t):
        return mj.forward(unravel(t), x, activation=activation)

    spec = mj.get_loss(loss)
    jac = jax.jacrev(logits)(theta)  # (B, out, P)
    loss_hessians = jax.vmap(jax.hessian(lambda f, t: spec.per_example(f[None], t[None])[0]))(logits(theta), y)
    batch = x.shape[0]
    c = jnp.full((batch,), 1.0 / batch, x.dtype) if sample_weight is None else sample_weight / jnp.sum(sample_weight)
    ggn = jnp.einsum("n,ncp,ncd,ndq->pq", c, jac, loss_hessians, jac)
    terms = jnp.einsum("n,ncp,ncd,ndp->np", c, jac, loss_hessians, jac)

    def one(xi, yi):
        return flat(jax.grad(lambda p: mj.loss(p, xi[None], yi[None], activation=activation, loss=loss))(params))

    per = jax.vmap(one)(x, y)
    return Reference(jax.hessian(total)(theta), ggn, terms, per, c, jax.grad(total)(theta))


def unflatten(params, vector):
    """A flat vector (P,) in params' structure."""
    return ravel_pytree(params)[1](vector)


def layer_blocks(params):
    """[(w_slice, b_slice)] of each layer in the flat vector (ravel_pytree order: w then b per layer)."""
    blocks, start = [], 0
    for layer in params:
        nw, nb = layer.w.size, layer.b.size
        blocks.append((slice(start, start + nw), slice(start + nw, start + nw + nb)))
        start += nw + nb
    return blocks
